//! [`H2`]: an HTTP/2 client on the `h2` crate, over h2c with prior knowledge: requests read
//! whole ([`H2Reply`]), and event streams read frame by frame ([`H2Events`]).

use std::time::Duration;

use bytes::Bytes;
use h2::RecvStream;
use h2::client::{Builder, SendRequest};
use http::{HeaderMap, Method, Request, Response};
use serde_json::Value;
use tokio::net::TcpStream;
use tokio::task::JoinHandle;
use tokio::time::Instant;

use super::Server;
use super::frame::{Event, Frame, Parser};

/// How long an answer, a frame or a close the test expects may take.
pub const H2_TIMEOUT: Duration = Duration::from_secs(10);

/// One HTTP/2 connection to the server.
pub struct H2 {
    send: SendRequest<Bytes>,
    /// The task that drives the connection; it ends when the connection does.
    connection: JoinHandle<Result<(), h2::Error>>,
    authority: String,
}

/// A response read whole.
#[derive(Debug)]
pub struct H2Reply {
    pub status: u16,
    pub headers: HeaderMap,
    pub body: String,
}

impl H2Reply {
    /// The value of header `name`, if it has one that is text.
    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers.get(name).and_then(|value| value.to_str().ok())
    }

    pub fn json(&self) -> Value {
        serde_json::from_str(&self.body).unwrap_or_else(|_| panic!("a JSON body: {self:?}"))
    }
}

impl H2 {
    /// Connects with h2's default settings.
    pub async fn connect(server: &Server) -> H2 {
        H2::connect_with(server, &Builder::new()).await
    }

    /// Connects with `builder`'s settings (windows, frame sizes).
    pub async fn connect_with(server: &Server, builder: &Builder) -> H2 {
        let tcp = TcpStream::connect(server.addr()).await.expect("connect");
        let (send, connection) = builder.handshake(tcp).await.expect("an HTTP/2 handshake");
        let connection = tokio::spawn(connection);
        H2 { send, connection, authority: server.addr().to_string() }
    }

    /// The handle that opens streams, for a request sent piece by piece.
    pub fn sender(&self) -> SendRequest<Bytes> {
        self.send.clone()
    }

    /// Sends a request, with `body` if given, and returns the response head with its body
    /// stream; `Err` when the server refused or reset the stream.
    pub async fn send(
        &mut self,
        method: &str,
        path: &str,
        headers: &[(&str, &str)],
        body: Option<&[u8]>,
    ) -> Result<Response<RecvStream>, h2::Error> {
        let mut request = Request::builder()
            .method(Method::from_bytes(method.as_bytes()).expect("a method"))
            .uri(format!("http://{}{path}", self.authority));
        for (name, value) in headers {
            request = request.header(*name, *value);
        }
        let request = request.body(()).expect("a request");
        let mut send = self.send.clone().ready().await?;
        let (response, mut stream) = send.send_request(request, body.is_none())?;
        if let Some(body) = body {
            stream.send_data(Bytes::copy_from_slice(body), true)?;
        }
        tokio::time::timeout(H2_TIMEOUT, response).await.expect("an answer in time")
    }

    /// `method path` with `headers` and `body`, read whole; `Err` when the stream was refused
    /// or reset.
    pub async fn exchange(
        &mut self,
        method: &str,
        path: &str,
        headers: &[(&str, &str)],
        body: Option<&[u8]>,
    ) -> Result<H2Reply, h2::Error> {
        let response = self.send(method, path, headers, body).await?;
        let (parts, body) = response.into_parts();
        let body = read_body(body).await?;
        let body = String::from_utf8(body.to_vec()).expect("a UTF-8 body");
        Ok(H2Reply { status: parts.status.as_u16(), headers: parts.headers, body })
    }

    /// `GET path`, read whole.
    pub async fn get(&mut self, path: &str) -> H2Reply {
        self.exchange("GET", path, &[], None).await.unwrap_or_else(|e| panic!("GET {path}: {e}"))
    }

    /// `POST /insert` of `body` (JSON text), read whole.
    pub async fn insert(&mut self, body: &str) -> H2Reply {
        let json = [("content-type", "application/json")];
        let reply = self.exchange("POST", "/insert", &json, Some(body.as_bytes())).await;
        reply.unwrap_or_else(|e| panic!("POST /insert: {e}"))
    }

    /// Waits for the connection to end, for at most `within`; `None` if it is still open then,
    /// else how it ended.
    pub async fn ended_within(&mut self, within: Duration) -> Option<Result<(), h2::Error>> {
        let ended = tokio::time::timeout(within, &mut self.connection).await.ok()?;
        Some(ended.expect("the connection task does not panic"))
    }
}

/// Reads a body to its end, giving the window back as it goes.
pub async fn read_body(mut body: RecvStream) -> Result<Bytes, h2::Error> {
    let mut whole = Vec::new();
    let reading = async {
        while let Some(data) = body.data().await {
            let data = data?;
            let _ = body.flow_control().release_capacity(data.len());
            whole.extend_from_slice(&data);
        }
        Ok::<_, h2::Error>(())
    };
    tokio::time::timeout(H2_TIMEOUT, reading).await.expect("the whole body in time")?;
    Ok(Bytes::from(whole))
}

/// An event stream over HTTP/2, read frame by frame.
pub struct H2Events {
    pub status: u16,
    pub headers: HeaderMap,
    body: RecvStream,
    parser: Parser,
    /// How the body ended, once it has: `Ok` with END_STREAM, `Err` with a reset.
    pub ended: Option<Result<(), h2::Error>>,
}

impl H2Events {
    /// Opens `GET path` with `headers` on `client`.
    pub async fn open(client: &mut H2, path: &str, headers: &[(&str, &str)]) -> H2Events {
        let response = client.send("GET", path, headers, None).await;
        let (parts, body) = response.unwrap_or_else(|e| panic!("GET {path}: {e}")).into_parts();
        let (status, headers) = (parts.status.as_u16(), parts.headers);
        H2Events { status, headers, body, parser: Parser::default(), ended: None }
    }

    /// The next frame, within `timeout`: `Ok(None)` once the stream has ended, `Err(())` if
    /// nothing came in time.
    pub async fn next_frame(&mut self, timeout: Duration) -> Result<Option<Frame>, ()> {
        let deadline = Instant::now() + timeout;
        loop {
            if let Some(frame) = self.parser.next_frame(self.ended.is_some()) {
                return Ok(Some(frame));
            }
            if self.ended.is_some() {
                return Ok(None);
            }
            match tokio::time::timeout_at(deadline, self.body.data()).await {
                Err(_) => return Err(()),
                Ok(None) => self.ended = Some(Ok(())),
                Ok(Some(Err(error))) => self.ended = Some(Err(error)),
                Ok(Some(Ok(data))) => {
                    let _ = self.body.flow_control().release_capacity(data.len());
                    self.parser.input().extend_from_slice(&data);
                }
            }
        }
    }

    /// The next event, skipping comments and `retry:`; panics if none comes in time.
    pub async fn next_event(&mut self) -> Event {
        loop {
            match self.next_frame(H2_TIMEOUT).await {
                Ok(Some(Frame::Event(event))) => return event,
                Ok(Some(_)) => {}
                Ok(None) => panic!("the stream ended ({:?}) before an event", self.ended),
                Err(()) => panic!("no event within {H2_TIMEOUT:?}"),
            }
        }
    }

    /// Every frame until the stream ends, which must happen within `timeout`.
    pub async fn until_end(&mut self, timeout: Duration) -> Vec<Frame> {
        let deadline = Instant::now() + timeout;
        let mut frames = Vec::new();
        loop {
            let left = deadline.saturating_duration_since(Instant::now());
            match self.next_frame(left).await {
                Ok(Some(frame)) => frames.push(frame),
                Ok(None) => return frames,
                Err(()) => panic!("the stream did not end within {timeout:?}: {frames:?}"),
            }
        }
    }
}
