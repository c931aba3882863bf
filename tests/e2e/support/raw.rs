//! HTTP/1.1 by hand over a [`TcpStream`]: send exact bytes, read the status line, the headers and
//! the body (plain, with a length, or chunked), for what an ordinary client would not send.

use std::net::SocketAddr;
use std::time::Duration;

use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

/// How long a raw exchange may take.
const RAW_TIMEOUT: Duration = Duration::from_secs(10);

/// A response head: status and headers, names in lower case, in the order received.
#[derive(Debug)]
pub struct Head {
    /// The status code.
    pub status: u16,
    /// Header names (lower case) and values.
    pub headers: Vec<(String, String)>,
}

impl Head {
    /// The first value of header `name` (any case).
    pub fn header(&self, name: &str) -> Option<&str> {
        let name = name.to_ascii_lowercase();
        self.headers.iter().find(|(key, _)| *key == name).map(|(_, value)| value.as_str())
    }

    /// Every comma-separated item of every `name` header, trimmed and in lower case.
    pub fn header_list(&self, name: &str) -> Vec<String> {
        let name = name.to_ascii_lowercase();
        self.headers
            .iter()
            .filter(|(key, _)| *key == name)
            .flat_map(|(_, value)| value.split(','))
            .map(|item| item.trim().to_ascii_lowercase())
            .filter(|item| !item.is_empty())
            .collect()
    }

    /// How the body that follows this head is delimited.
    pub fn framing(&self) -> Framing {
        let chunked =
            self.header_list("transfer-encoding").iter().any(|coding| coding == "chunked");
        if chunked {
            Framing::Chunked(Chunked::default())
        } else if let Some(length) = self.header("content-length") {
            Framing::Length(length.parse().expect("a numeric Content-Length"))
        } else {
            Framing::Close
        }
    }
}

/// A whole response read by [`exchange`].
#[derive(Debug)]
pub struct RawReply {
    /// The status and headers.
    pub head: Head,
    /// The decoded body.
    pub body: Vec<u8>,
}

impl RawReply {
    /// The body as text.
    pub fn text(&self) -> String {
        String::from_utf8(self.body.clone()).expect("the body is UTF-8")
    }
}

/// Sends `request` as is (it should say `Connection: close`) and reads the response to its end.
pub async fn exchange(addr: SocketAddr, request: &[u8]) -> RawReply {
    tokio::time::timeout(RAW_TIMEOUT, async {
        let mut stream = TcpStream::connect(addr).await.expect("connect");
        // The server may answer and close before it has read everything, as for a body over the
        // limit; what it answered is what the test checks.
        let _ = stream.write_all(request).await;
        let mut buffer = Vec::new();
        let head = read_head(&mut stream, &mut buffer).await.expect("a response head");
        let mut body = Vec::new();
        let mut framing = head.framing();
        loop {
            if framing.decode(&mut buffer, &mut body) {
                break;
            }
            match read_more(&mut stream, &mut buffer).await {
                Ok(true) => {}
                Ok(false) if matches!(framing, Framing::Close) => break,
                Ok(false) => panic!("the connection closed inside the body"),
                Err(error) => panic!("reading the body failed: {error}"),
            }
        }
        RawReply { head, body }
    })
    .await
    .expect("the raw exchange finishes in time")
}

/// Reads a response head from `stream`, leaving what follows it in `buffer`. `None` if the
/// connection closed first.
pub async fn read_head(stream: &mut TcpStream, buffer: &mut Vec<u8>) -> Option<Head> {
    let end = loop {
        if let Some(end) = find(buffer, b"\r\n\r\n") {
            break end;
        }
        if !read_more(stream, buffer).await.ok()? {
            return None;
        }
    };
    let head = String::from_utf8(buffer[..end].to_vec()).expect("the head is text");
    buffer.drain(..end + 4);
    let mut lines = head.split("\r\n");
    let status_line = lines.next().expect("a status line");
    let mut parts = status_line.splitn(3, ' ');
    assert_eq!(parts.next(), Some("HTTP/1.1"), "status line {status_line:?}");
    let status = parts.next().and_then(|code| code.parse().ok()).expect("a status code");
    let headers = lines
        .map(|line| {
            let (name, value) = line.split_once(':').expect("a header line has a colon");
            (name.trim().to_ascii_lowercase(), value.trim().to_string())
        })
        .collect();
    Some(Head { status, headers })
}

/// Appends what the socket has to `buffer`; `false` at the end of the stream.
pub async fn read_more(stream: &mut TcpStream, buffer: &mut Vec<u8>) -> std::io::Result<bool> {
    let mut chunk = [0; 16 * 1024];
    let n = stream.read(&mut chunk).await?;
    buffer.extend_from_slice(&chunk[..n]);
    Ok(n > 0)
}

fn find(haystack: &[u8], needle: &[u8]) -> Option<usize> {
    haystack.windows(needle.len()).position(|window| window == needle)
}

/// How a response body ends.
#[derive(Debug)]
pub enum Framing {
    /// `Transfer-Encoding: chunked`.
    Chunked(Chunked),
    /// `Content-Length`: this many bytes are still to come.
    Length(usize),
    /// At the end of the connection.
    Close,
}

/// Where a chunked decoder is.
#[derive(Debug, Default)]
pub enum Chunked {
    /// Before a chunk-size line.
    #[default]
    Size,
    /// Inside a chunk, with this many bytes still to come.
    Data(usize),
    /// After a chunk's data, before its CRLF.
    DataEnd,
    /// After the last chunk.
    Done,
}

impl Framing {
    /// Moves the body bytes in `raw` to `out`, decoded; `true` once the body is complete.
    pub fn decode(&mut self, raw: &mut Vec<u8>, out: &mut Vec<u8>) -> bool {
        match self {
            Framing::Close => {
                out.append(raw);
                false
            }
            Framing::Length(remaining) => {
                let n = (*remaining).min(raw.len());
                out.extend(raw.drain(..n));
                *remaining -= n;
                *remaining == 0
            }
            Framing::Chunked(state) => loop {
                match state {
                    Chunked::Size => {
                        let Some(end) = find(raw, b"\r\n") else { return false };
                        let line = String::from_utf8(raw[..end].to_vec()).expect("a size line");
                        let size = line.split(';').next().unwrap_or_default().trim();
                        let size = usize::from_str_radix(size, 16).expect("a hex chunk size");
                        raw.drain(..end + 2);
                        *state = if size == 0 { Chunked::Done } else { Chunked::Data(size) };
                    }
                    Chunked::Data(remaining) => {
                        let n = (*remaining).min(raw.len());
                        out.extend(raw.drain(..n));
                        *remaining -= n;
                        if *remaining > 0 {
                            return false;
                        }
                        *state = Chunked::DataEnd;
                    }
                    Chunked::DataEnd => {
                        if raw.len() < 2 {
                            return false;
                        }
                        assert_eq!(&raw[..2], b"\r\n", "a chunk ends with CRLF");
                        raw.drain(..2);
                        *state = Chunked::Size;
                    }
                    // Trailers, if any, are of no interest.
                    Chunked::Done => return true,
                }
            },
        }
    }
}
