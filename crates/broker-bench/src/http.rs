//! Just enough HTTP/1.1 for a load generator: response heads and the three ways a body can be
//! framed (length, chunks, until close).
//!
//! A full client would cost more per delivery than the servers under test spend on it; these
//! are byte scanners over the connection's own buffer, with no allocation per response.

/// What the load generator needs from a response head.
#[derive(Clone, Debug, PartialEq, Eq)]
pub(crate) struct ResponseHead {
    pub(crate) status: u16,
    pub(crate) framing: Framing,
    /// The server will close the connection after this response.
    pub(crate) close: bool,
}

/// How the body of a response is delimited.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Framing {
    Length(usize),
    Chunked,
    UntilClose,
}

/// Parses a response head at the start of `buf`: `Ok(None)` while it is incomplete, otherwise
/// the head and its length in bytes.
pub(crate) fn parse_head(buf: &[u8]) -> Result<Option<(ResponseHead, usize)>, String> {
    let Some(end) = find(buf, b"\r\n\r\n") else {
        if buf.len() > 64 * 1024 {
            return Err("response head longer than 64 KiB".into());
        }
        return Ok(None);
    };
    let head = std::str::from_utf8(&buf[..end]).map_err(|_| "response head is not UTF-8")?;
    let mut lines = head.split("\r\n");
    let status_line = lines.next().unwrap_or_default();
    let status = status_line
        .strip_prefix("HTTP/1.")
        .and_then(|rest| rest.get(2..5))
        .and_then(|code| code.parse().ok())
        .ok_or_else(|| format!("malformed status line {status_line:?}"))?;
    let mut length = None;
    let mut chunked = false;
    let mut close = status_line.starts_with("HTTP/1.0");
    for line in lines {
        let Some((name, value)) = line.split_once(':') else { continue };
        let value = value.trim();
        if name.eq_ignore_ascii_case("content-length") {
            length = Some(value.parse().map_err(|_| format!("bad content-length {value:?}"))?);
        } else if name.eq_ignore_ascii_case("transfer-encoding") {
            chunked = value.to_ascii_lowercase().contains("chunked");
        } else if name.eq_ignore_ascii_case("connection") {
            close = value.eq_ignore_ascii_case("close");
        }
    }
    let framing = match (chunked, length) {
        (true, _) => Framing::Chunked,
        (false, Some(length)) => Framing::Length(length),
        // Responses that never have a body.
        (false, None) if status == 204 || status == 304 => Framing::Length(0),
        (false, None) => Framing::UntilClose,
    };
    Ok(Some((ResponseHead { status, framing, close }, end + 4)))
}

/// The first position of `needle` in `haystack`.
pub(crate) fn find(haystack: &[u8], needle: &[u8]) -> Option<usize> {
    haystack.windows(needle.len()).position(|window| window == needle)
}

/// Decodes a chunked body incrementally, whatever the segment boundaries.
#[derive(Debug, Default)]
pub(crate) struct Dechunker {
    state: ChunkState,
}

#[derive(Debug, Default, PartialEq, Eq)]
enum ChunkState {
    /// Before a chunk-size line.
    #[default]
    Size,
    /// Inside a chunk, with this many bytes left.
    Data(usize),
    /// After a chunk's data, before its CRLF.
    DataEnd,
    /// After the last chunk, before the final CRLF (trailers are not expected).
    Trailer,
    Done,
}

impl Dechunker {
    /// Appends the body bytes held in `input` to `out`, and returns how many input bytes were
    /// used; the rest (an incomplete size line) must be offered again with more bytes.
    pub(crate) fn decode(&mut self, input: &[u8], out: &mut Vec<u8>) -> Result<usize, String> {
        let mut at = 0;
        loop {
            let rest = &input[at..];
            match self.state {
                ChunkState::Size => {
                    let Some(eol) = find(rest, b"\r\n") else { return Ok(at) };
                    let line = std::str::from_utf8(&rest[..eol]).map_err(|_| "bad chunk size")?;
                    let hex = line.split(';').next().unwrap_or_default().trim();
                    let size = usize::from_str_radix(hex, 16)
                        .map_err(|_| format!("bad chunk size {line:?}"))?;
                    at += eol + 2;
                    self.state =
                        if size == 0 { ChunkState::Trailer } else { ChunkState::Data(size) };
                }
                ChunkState::Data(left) => {
                    if rest.is_empty() {
                        return Ok(at);
                    }
                    let take = left.min(rest.len());
                    out.extend_from_slice(&rest[..take]);
                    at += take;
                    self.state = if take == left {
                        ChunkState::DataEnd
                    } else {
                        ChunkState::Data(left - take)
                    };
                }
                ChunkState::DataEnd | ChunkState::Trailer => {
                    if rest.len() < 2 {
                        return Ok(at);
                    }
                    if &rest[..2] != b"\r\n" {
                        return Err("chunk not followed by CRLF".into());
                    }
                    at += 2;
                    self.state = if self.state == ChunkState::Trailer {
                        ChunkState::Done
                    } else {
                        ChunkState::Size
                    };
                }
                ChunkState::Done => return Ok(at),
            }
        }
    }

    /// The last chunk and the end of the body have been read.
    pub(crate) fn is_done(&self) -> bool {
        self.state == ChunkState::Done
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn heads_give_status_framing_and_close() {
        let check = |head: &str, expected: Option<(u16, Framing, bool)>| {
            let parsed = parse_head(head.as_bytes()).expect("well formed");
            let got = parsed.map(|(head, len)| {
                assert_eq!(len, head_len(&head, len));
                (head.status, head.framing, head.close)
            });
            assert_eq!(got, expected, "{head:?}");
        };
        fn head_len(_: &ResponseHead, len: usize) -> usize {
            len
        }
        check(
            "HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n",
            Some((200, Framing::Chunked, false)),
        );
        check(
            "HTTP/1.1 201 Created\r\ncontent-length: 12\r\n\r\nbody",
            Some((201, Framing::Length(12), false)),
        );
        check(
            "HTTP/1.1 200 OK\r\nconnection: close\r\n\r\n",
            Some((200, Framing::UntilClose, true)),
        );
        check("HTTP/1.0 200 OK\r\n\r\n", Some((200, Framing::UntilClose, true)));
        check("HTTP/1.1 200 OK\r\nContent-Le", None);
        assert!(parse_head(b"SSH-2.0\r\n\r\n").is_err());
    }

    #[test]
    fn chunks_decode_across_any_split() {
        let wire = b"5\r\nhello\r\n7;ext=1\r\n, world\r\n0\r\n\r\n";
        for split in 0..wire.len() {
            let mut decoder = Dechunker::default();
            let mut out = Vec::new();
            let mut pending = wire[..split].to_vec();
            let used = decoder.decode(&pending, &mut out).expect("valid");
            pending.drain(..used);
            pending.extend_from_slice(&wire[split..]);
            let used = decoder.decode(&pending, &mut out).expect("valid");
            assert_eq!(used, pending.len(), "split at {split}");
            assert_eq!(out, b"hello, world");
            assert!(decoder.is_done());
        }
    }
}
