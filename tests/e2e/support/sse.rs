//! [`Sse`]: an event-stream client over a raw TCP connection, reading frames one at a time with
//! a deadline for each wait.

use std::fmt;
use std::time::Duration;

use tokio::io::AsyncWriteExt;
use tokio::net::{TcpSocket, TcpStream};
use tokio::time::Instant;

use super::Server;
use super::frame::{Event, Frame, Parser};
use super::raw::{Framing, Head, read_head, read_more};

/// How long a frame the test expects may take to arrive.
pub const FRAME_TIMEOUT: Duration = Duration::from_secs(10);

/// What `next` found before its deadline.
#[derive(Debug)]
enum Next {
    Frame(Frame),
    Timeout,
    End,
}

/// How a stream began: its `retry:` and whether it resumed or sent a snapshot.
#[derive(Debug, PartialEq)]
pub struct Start {
    /// The `retry:` value, in milliseconds.
    pub retry: u64,
    /// `snapshot` or `resumed`: the first comment.
    pub comment: String,
    /// The `Broker-Start` header.
    pub header: Option<String>,
    /// For a snapshot instead of a resume, why: the `Broker-Start-Reason` header and the
    /// second comment (`unknown_id`, or `pruned through <id>`).
    pub reason: Option<(String, String)>,
}

/// An open `GET /events` stream. Dropping it closes the connection.
pub struct Sse {
    /// The response head.
    pub head: Head,
    stream: TcpStream,
    framing: Framing,
    /// Received bytes not yet decoded from the transfer coding.
    raw: Vec<u8>,
    /// Decoded bytes on their way to becoming frames.
    parser: Parser,
    /// Whether the body has ended (or the connection closed).
    ended: bool,
    /// Whether it ended as the transfer coding says a body ends, not by a cut connection.
    ended_cleanly: bool,
}

impl Sse {
    /// Opens `GET path` (path and query) with extra request headers, and reads the head.
    pub async fn connect(server: &Server, path: &str, headers: &[(&str, &str)]) -> Sse {
        Sse::connect_with(server, path, headers, None).await
    }

    /// Opens `GET /events` on a socket whose receive buffer is `bytes` small, so that a client
    /// that stops reading soon leaves the server unable to write, and checks the start.
    pub async fn slow_reader(server: &Server, bytes: u32) -> Sse {
        let mut sse = Sse::connect_with(server, "/events", &[], Some(bytes)).await;
        assert_eq!(sse.head.status, 200, "GET /events: {:?}", sse.head);
        sse.start().await;
        sse
    }

    async fn connect_with(
        server: &Server,
        path: &str,
        headers: &[(&str, &str)],
        receive_buffer: Option<u32>,
    ) -> Sse {
        let mut request = format!("GET {path} HTTP/1.1\r\nHost: {}\r\n", server.addr());
        request.push_str("Accept: text/event-stream\r\n");
        for (name, value) in headers {
            request.push_str(&format!("{name}: {value}\r\n"));
        }
        request.push_str("\r\n");
        let connect = async {
            let socket = TcpSocket::new_v4().expect("a socket");
            if let Some(bytes) = receive_buffer {
                socket.set_recv_buffer_size(bytes).expect("set SO_RCVBUF");
            }
            let mut stream = socket.connect(server.addr()).await.expect("connect");
            stream.write_all(request.as_bytes()).await.expect("send the request");
            let mut raw = Vec::new();
            let head = read_head(&mut stream, &mut raw).await.expect("a response head");
            (stream, raw, head)
        };
        let (stream, raw, head) = tokio::time::timeout(FRAME_TIMEOUT, connect)
            .await
            .unwrap_or_else(|_| panic!("no response head to GET {path} in {FRAME_TIMEOUT:?}"));
        let framing = head.framing();
        Sse {
            head,
            stream,
            framing,
            raw,
            parser: Parser::default(),
            ended: false,
            ended_cleanly: false,
        }
    }

    /// Opens `GET path` and checks that it is an event stream.
    pub async fn open(server: &Server, path: &str, headers: &[(&str, &str)]) -> Sse {
        let sse = Sse::connect(server, path, headers).await;
        assert_eq!(sse.head.status, 200, "GET {path}: {:?}", sse.head);
        let content_type = sse.head.header("content-type").unwrap_or_default();
        assert!(content_type.starts_with("text/event-stream"), "GET {path}: {:?}", sse.head);
        sse
    }

    /// Opens `GET path` and reads the start: `retry:` and the `: snapshot` or `: resumed` comment.
    pub async fn subscribe(server: &Server, path: &str, headers: &[(&str, &str)]) -> (Sse, Start) {
        let mut sse = Sse::open(server, path, headers).await;
        let start = sse.start().await;
        (sse, start)
    }

    /// Opens `/events` and checks that it starts with a snapshot.
    pub async fn snapshot(server: &Server) -> Sse {
        let (sse, start) = Sse::subscribe(server, "/events", &[]).await;
        assert_eq!(start.comment, "snapshot", "a new subscriber gets a snapshot");
        sse
    }

    /// Reads the first two frames: the `retry:` field and the start comment.
    pub async fn start(&mut self) -> Start {
        let retry = match self.next_frame(FRAME_TIMEOUT).await {
            Frame::Retry(retry) => retry,
            other => panic!("the stream starts with {other:?}, not retry:"),
        };
        let comment = match self.next_frame(FRAME_TIMEOUT).await {
            Frame::Comment(comment) => comment,
            other => panic!("the line after retry: is {other:?}, not a comment"),
        };
        assert!(
            comment == "snapshot" || comment == "resumed",
            "the start comment is {comment:?}, not snapshot or resumed"
        );
        let header = self.head.header("broker-start").map(str::to_string);
        let reason = match self.head.header("broker-start-reason").map(str::to_string) {
            Some(reason) => match self.next_frame(FRAME_TIMEOUT).await {
                Frame::Comment(comment) => Some((reason, comment)),
                other => panic!("the line after the start comment is {other:?}, not the reason"),
            },
            None => None,
        };
        Start { retry, comment, header, reason }
    }

    /// The next frame; panics if none arrives within `timeout` or the stream ends.
    pub async fn next_frame(&mut self, timeout: Duration) -> Frame {
        match self.next(Instant::now() + timeout).await {
            Next::Frame(frame) => frame,
            Next::Timeout => panic!("no frame within {timeout:?}"),
            Next::End => panic!("the stream ended while a frame was expected"),
        }
    }

    /// The next event, skipping heartbeat comments; panics on anything else, on a timeout and at
    /// the end of the stream.
    pub async fn next_event(&mut self) -> Event {
        loop {
            match self.next_frame(FRAME_TIMEOUT).await {
                Frame::Event(event) => return event,
                Frame::Comment(comment) if comment.is_empty() => {}
                other => panic!("expected an event, got {other:?}"),
            }
        }
    }

    /// The next `n` events, skipping heartbeat comments.
    pub async fn events(&mut self, n: usize) -> Vec<Event> {
        let mut events = Vec::with_capacity(n);
        for _ in 0..n {
            events.push(self.next_event().await);
        }
        events
    }

    /// Checks that nothing at all arrives for `duration`.
    pub async fn expect_no_frame(&mut self, duration: Duration) {
        match self.next(Instant::now() + duration).await {
            Next::Timeout => {}
            Next::Frame(frame) => panic!("expected nothing for {duration:?}, got {frame:?}"),
            Next::End => panic!("expected nothing for {duration:?}, the stream ended"),
        }
    }

    /// Checks that no event arrives for `duration`; heartbeat comments may.
    pub async fn expect_no_event(&mut self, duration: Duration) {
        let deadline = Instant::now() + duration;
        loop {
            match self.next(deadline).await {
                Next::Timeout => return,
                Next::Frame(Frame::Comment(comment)) if comment.is_empty() => {}
                Next::Frame(frame) => panic!("expected no event for {duration:?}, got {frame:?}"),
                Next::End => panic!("expected no event for {duration:?}, the stream ended"),
            }
        }
    }

    /// Reads frames until the stream ends, within `timeout`, and returns them.
    pub async fn until_end(&mut self, timeout: Duration) -> Vec<Frame> {
        let deadline = Instant::now() + timeout;
        let mut frames = Vec::new();
        loop {
            match self.next(deadline).await {
                Next::Frame(frame) => frames.push(frame),
                Next::End => return frames,
                Next::Timeout => panic!("the stream did not end within {timeout:?}: {frames:?}"),
            }
        }
    }

    /// Every frame that arrives before `deadline`, paired with when it arrived.
    pub async fn frames_until(&mut self, deadline: Instant) -> Vec<(Instant, Frame)> {
        let mut frames = Vec::new();
        loop {
            match self.next(deadline).await {
                Next::Frame(frame) => frames.push((Instant::now(), frame)),
                Next::Timeout => return frames,
                Next::End => panic!("the stream ended early: {frames:?}"),
            }
        }
    }

    /// Whether the stream, once ended, ended as its transfer coding says a body ends (the last
    /// chunk) rather than by the connection being cut.
    pub fn ended_cleanly(&self) -> bool {
        self.ended_cleanly
    }

    async fn next(&mut self, deadline: Instant) -> Next {
        loop {
            if let Some(frame) = self.parser.next_frame(self.ended) {
                return Next::Frame(frame);
            }
            if self.ended {
                self.parser.assert_empty();
                return Next::End;
            }
            if self.framing.decode(&mut self.raw, self.parser.input()) {
                self.ended = true;
                self.ended_cleanly = true;
                continue;
            }
            if self.parser.has_new_input() {
                continue;
            }
            let read =
                tokio::time::timeout_at(deadline, read_more(&mut self.stream, &mut self.raw));
            match read.await {
                Err(_) => return Next::Timeout,
                Ok(Ok(true)) => {}
                // The server closed the connection; a reset after it closed is an end too.
                Ok(Ok(false)) | Ok(Err(_)) => {
                    self.framing.decode(&mut self.raw, self.parser.input());
                    self.ended = true;
                    self.ended_cleanly = matches!(self.framing, Framing::Close);
                }
            }
        }
    }
}
impl fmt::Debug for Sse {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Sse").field("head", &self.head).finish_non_exhaustive()
    }
}
