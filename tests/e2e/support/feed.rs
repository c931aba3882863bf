//! [`Feed`]: a lean `GET /events` client for any address, a broker node or a proxy in front of
//! several, that tells a stream that ended (its node died) from one that is only quiet, so that
//! a test can follow subscribers from a node that dies to the node they resume on.

use std::net::SocketAddr;
use std::time::Duration;

use tokio::io::AsyncWriteExt;
use tokio::net::TcpStream;
use tokio::time::Instant;

use super::frame::{Event, Frame, Parser};
use super::raw::{Framing, Head, read_head, read_more};

/// How long connecting and reading the start of a stream may take.
const OPEN_TIMEOUT: Duration = Duration::from_secs(20);

/// The deadline passed before a frame came.
struct Elapsed;

/// An open event stream, its start read.
pub struct Feed {
    /// The response head.
    pub head: Head,
    /// The start comment: `snapshot` or `resumed`.
    pub start: String,
    stream: TcpStream,
    framing: Framing,
    raw: Vec<u8>,
    parser: Parser,
    ended: bool,
}

impl Feed {
    /// Opens `GET /events` on `addr`, resuming after `last_event_id` if given, checks that it is
    /// an event stream and reads its `retry:` and start comment.
    pub async fn open(addr: SocketAddr, last_event_id: Option<&str>) -> Feed {
        let mut request = format!("GET /events HTTP/1.1\r\nHost: {addr}\r\n");
        request.push_str("Accept: text/event-stream\r\n");
        if let Some(id) = last_event_id {
            request.push_str(&format!("Last-Event-ID: {id}\r\n"));
        }
        request.push_str("\r\n");
        let open = async {
            let mut stream = TcpStream::connect(addr).await.expect("connect");
            stream.write_all(request.as_bytes()).await.expect("send the request");
            let mut raw = Vec::new();
            let head = read_head(&mut stream, &mut raw).await.expect("a response head");
            assert_eq!(head.status, 200, "GET /events on {addr}: {head:?}");
            let content_type = head.header("content-type").unwrap_or_default();
            assert!(content_type.starts_with("text/event-stream"), "{head:?}");
            let framing = head.framing();
            let mut feed = Feed {
                head,
                start: String::new(),
                stream,
                framing,
                raw,
                parser: Parser::default(),
                ended: false,
            };
            match feed.next_frame(Instant::now() + OPEN_TIMEOUT).await {
                Some(Frame::Retry(_)) => {}
                other => panic!("the stream starts with {other:?}, not retry:"),
            }
            feed.start = match feed.next_frame(Instant::now() + OPEN_TIMEOUT).await {
                Some(Frame::Comment(comment)) => comment,
                other => panic!("the line after retry: is {other:?}, not a comment"),
            };
            if feed.head.header("broker-start-reason").is_some() {
                // A snapshot instead of a resume says why in a second comment.
                match feed.next_frame(Instant::now() + OPEN_TIMEOUT).await {
                    Some(Frame::Comment(_)) => {}
                    other => panic!("the line after the start comment is {other:?}"),
                }
            }
            feed
        };
        tokio::time::timeout(OPEN_TIMEOUT, open)
            .await
            .unwrap_or_else(|_| panic!("no event stream from {addr} within {OPEN_TIMEOUT:?}"))
    }

    /// The next event, skipping heartbeats; `None` once the stream has ended. Panics if nothing
    /// arrives within `timeout`, or on a frame that is neither.
    pub async fn next_event(&mut self, timeout: Duration) -> Option<Event> {
        let deadline = Instant::now() + timeout;
        loop {
            match self.next_frame(deadline).await? {
                Frame::Event(event) => return Some(event),
                Frame::Comment(comment) if comment.is_empty() => {}
                other => panic!("expected an event, got {other:?}"),
            }
        }
    }

    /// The next `n` events; panics if the stream ends first or an event is late.
    pub async fn events(&mut self, n: usize, timeout: Duration) -> Vec<Event> {
        let mut events = Vec::with_capacity(n);
        while events.len() < n {
            let event = self.next_event(timeout).await;
            events.push(event.unwrap_or_else(|| {
                panic!("the stream ended after {} of {n} events", events.len())
            }));
        }
        events
    }

    /// Every event until the stream ends, which it must within `timeout`.
    pub async fn until_end(&mut self, timeout: Duration) -> Vec<Event> {
        let deadline = Instant::now() + timeout;
        let mut events = Vec::new();
        while let Some(event) = self.next_event(deadline - Instant::now()).await {
            events.push(event);
        }
        events
    }

    /// Checks that no event arrives for `duration` and the stream stays open; heartbeats may.
    pub async fn expect_quiet(&mut self, duration: Duration) {
        let deadline = Instant::now() + duration;
        loop {
            match self.poll_frame(deadline).await {
                Ok(Some(Frame::Comment(comment))) if comment.is_empty() => {}
                Ok(other) => panic!("expected nothing for {duration:?}, got {other:?}"),
                Err(Elapsed) => return,
            }
        }
    }

    /// The next frame, `None` at the end of the stream; panics at `deadline`.
    async fn next_frame(&mut self, deadline: Instant) -> Option<Frame> {
        self.poll_frame(deadline).await.unwrap_or_else(|Elapsed| panic!("no frame in time"))
    }

    async fn poll_frame(&mut self, deadline: Instant) -> Result<Option<Frame>, Elapsed> {
        loop {
            if let Some(frame) = self.parser.next_frame(self.ended) {
                return Ok(Some(frame));
            }
            if self.ended {
                return Ok(None);
            }
            if self.framing.decode(&mut self.raw, self.parser.input()) {
                self.ended = true;
                continue;
            }
            if self.parser.has_new_input() {
                continue;
            }
            let read =
                tokio::time::timeout_at(deadline, read_more(&mut self.stream, &mut self.raw));
            match read.await {
                Err(_) => return Err(Elapsed),
                Ok(Ok(true)) => {}
                // Closed or reset: a node killed under its subscribers does either.
                Ok(Ok(false)) | Ok(Err(_)) => {
                    self.framing.decode(&mut self.raw, self.parser.input());
                    self.ended = true;
                }
            }
        }
    }
}
