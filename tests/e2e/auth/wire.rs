//! [`Wire`]: an event stream read as the raw bytes that cross the socket, so that a test can
//! check that an event's name or data was never sent at all, in any frame, comment or chunk.

use std::time::Duration;

use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;
use tokio::time::Instant;

use crate::support::Server;

/// How long one wait for the stream may take.
const WAIT: Duration = Duration::from_secs(10);

/// An open `GET /events` connection and every byte it has received, head included.
pub struct Wire {
    stream: TcpStream,
    path: String,
    received: Vec<u8>,
    /// The response head, in lower case.
    head: String,
    /// Where the frames not yet returned by [`Wire::events_until`] begin: always a `\n`, the
    /// end of the head or of the last frame returned, so that every frame after it starts
    /// after a line break.
    read_to: usize,
}

impl Wire {
    /// Sends `GET path` with `headers`, reads the head and checks that it is `200`.
    pub async fn open(server: &Server, path: &str, headers: &[(&str, &str)]) -> Wire {
        let mut request = format!("GET {path} HTTP/1.1\r\nHost: {}\r\n", server.addr());
        request.push_str("Accept: text/event-stream\r\n");
        for (name, value) in headers {
            request.push_str(&format!("{name}: {value}\r\n"));
        }
        request.push_str("\r\n");
        let connect = TcpStream::connect(server.addr());
        let mut stream =
            tokio::time::timeout(WAIT, connect).await.expect("connect in time").expect("connect");
        stream.write_all(request.as_bytes()).await.expect("send the request");
        let mut wire = Wire {
            stream,
            path: path.to_string(),
            received: Vec::new(),
            head: String::new(),
            read_to: 0,
        };
        let end = wire.read_until(|bytes| find(bytes, b"\r\n\r\n")).await;
        wire.head = String::from_utf8_lossy(&wire.received[..end]).to_ascii_lowercase();
        assert!(wire.head.starts_with("http/1.1 200 "), "GET {path}: {}", wire.head);
        // The last `\n` of the blank line that ends the head.
        wire.read_to = end + 3;
        wire
    }

    /// The response head, status line and headers, in lower case.
    pub fn head(&self) -> &str {
        &self.head
    }

    /// Reads until the frame of event `last` has arrived whole, and returns the names of the
    /// events sent since the previous call (or the head), in order, `last` included.
    pub async fn events_until(&mut self, last: &str) -> Vec<String> {
        let marker = format!("\nevent: {last}\n");
        let end = self
            .read_until(|bytes| {
                let at = find(bytes, marker.as_bytes())?;
                let blank = find(&bytes[at + 1..], b"\n\n")?;
                Some(at + 1 + blank + 1)
            })
            .await;
        let text = String::from_utf8_lossy(&self.received[self.read_to..=end]);
        let names = text
            .lines()
            .filter_map(|line| line.strip_prefix("event: "))
            .map(str::to_string)
            .collect();
        self.read_to = end;
        names
    }

    /// Checks that none of `forbidden` appears anywhere in what the stream has sent.
    pub fn assert_never_carried(&self, forbidden: &[&str]) {
        for text in forbidden {
            assert!(
                find(&self.received, text.as_bytes()).is_none(),
                "GET {} sent {text:?}:\n{}",
                self.path,
                String::from_utf8_lossy(&self.received)
            );
        }
    }

    /// Reads until `found` finds something in the bytes after `read_to`; returns its position
    /// in all of `received`.
    async fn read_until(&mut self, found: impl Fn(&[u8]) -> Option<usize>) -> usize {
        let deadline = Instant::now() + WAIT;
        loop {
            if let Some(at) = found(&self.received[self.read_to..]) {
                return self.read_to + at;
            }
            let mut chunk = [0; 16 * 1024];
            let read = tokio::time::timeout_at(deadline, self.stream.read(&mut chunk)).await;
            let unread = || String::from_utf8_lossy(&self.received[self.read_to..]).into_owned();
            let n = match read {
                Ok(Ok(n)) => n,
                Ok(Err(error)) => {
                    panic!("GET {}: reading failed ({error}) after {}", self.path, unread())
                }
                Err(_) => panic!("GET {}: waited {WAIT:?}; received {:?}", self.path, unread()),
            };
            assert!(n > 0, "GET {}: the stream ended; received {:?}", self.path, unread());
            self.received.extend_from_slice(&chunk[..n]);
        }
    }
}

fn find(haystack: &[u8], needle: &[u8]) -> Option<usize> {
    haystack.windows(needle.len()).position(|window| window == needle)
}
