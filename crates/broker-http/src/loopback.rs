//! Tests over real sockets: a server on a loopback port, running the real accept loop
//! ([`serve`](crate::serve)) on the in-memory backend, and a client that reads its answers one by
//! one, as an HTTP/1.1 client does on a kept-alive connection.

use std::net::SocketAddr;
use std::time::{Duration, Instant};

use broker_core::{Broker, Config};
use broker_storage::MemoryStorage;
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt};
use tokio::net::TcpStream;
use tokio::sync::oneshot;
use tokio::task::JoinHandle;

use crate::{App, HttpConfig};

/// How long any one answer or close may take before the test fails.
pub(crate) const PATIENCE: Duration = Duration::from_secs(10);

/// A server on a loopback port.
pub(crate) struct Server {
    pub(crate) addr: SocketAddr,
    stop: Option<oneshot::Sender<()>>,
    /// The accept loop, which ends once shutdown is done.
    pub(crate) served: JoinHandle<()>,
}

impl Server {
    pub(crate) async fn start(config: HttpConfig) -> Server {
        let broker = Broker::open(MemoryStorage::new(), Config::default()).await.expect("open");
        Server::serve(App::new(broker, config)).await
    }

    /// Serves `app`, a broker and settings of the test's own making.
    pub(crate) async fn serve(app: App) -> Server {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.expect("bind");
        let addr = listener.local_addr().expect("address");
        let (stop, stopped) = oneshot::channel::<()>();
        let served = tokio::spawn(crate::serve(listener, app, async {
            let _ = stopped.await;
        }));
        Server { addr, stop: Some(stop), served }
    }

    pub(crate) async fn connect(&self) -> Client {
        let stream = TcpStream::connect(self.addr).await.expect("connect");
        Client { stream, buffer: Vec::new() }
    }

    /// Begins the graceful shutdown.
    pub(crate) fn shut_down(&mut self) {
        let _ = self.stop.take().expect("not shut down yet").send(());
    }
}

/// A response as the client reads it.
#[derive(Debug)]
pub(crate) struct Reply {
    pub(crate) status: u16,
    /// Names in lower case.
    pub(crate) headers: Vec<(String, String)>,
    pub(crate) body: String,
}

impl Reply {
    pub(crate) fn header(&self, name: &str) -> Option<&str> {
        self.headers.iter().find(|(key, _)| key == name).map(|(_, value)| value.as_str())
    }

    /// Whether the server said it closes the connection after this answer.
    pub(crate) fn closes(&self) -> bool {
        self.header("connection").is_some_and(|value| value.eq_ignore_ascii_case("close"))
    }

    pub(crate) fn json(&self) -> serde_json::Value {
        serde_json::from_str(&self.body).expect("a JSON body")
    }
}

/// One client connection, reading responses one after the other: over TCP, or over TLS
/// (`S` is then a TLS stream).
pub(crate) struct Client<S = TcpStream> {
    pub(crate) stream: S,
    buffer: Vec<u8>,
}

impl<S: AsyncRead + AsyncWrite + Unpin> Client<S> {
    /// A client on `stream`, connected already.
    pub(crate) fn over(stream: S) -> Client<S> {
        Client { stream, buffer: Vec::new() }
    }

    pub(crate) async fn send(&mut self, bytes: &[u8]) {
        self.stream.write_all(bytes).await.expect("send");
    }

    /// The next response; `None` if the connection closed first.
    pub(crate) async fn reply(&mut self) -> Option<Reply> {
        tokio::time::timeout(PATIENCE, self.read_reply()).await.expect("an answer in time")
    }

    async fn read_reply(&mut self) -> Option<Reply> {
        loop {
            // Interim answers (`100 Continue`) are skipped, as clients do.
            while let Some(reply) = self.parse() {
                if reply.status != 100 {
                    return Some(reply);
                }
            }
            if !self.fill().await {
                return None;
            }
        }
    }

    /// Takes one whole response off the buffer, if it holds one.
    fn parse(&mut self) -> Option<Reply> {
        let mut headers = [httparse::EMPTY_HEADER; 32];
        let mut response = httparse::Response::new(&mut headers);
        let httparse::Status::Complete(head_len) =
            response.parse(&self.buffer).expect("a well-formed response head")
        else {
            return None;
        };
        let status = response.code.expect("a status");
        let headers: Vec<(String, String)> = response
            .headers
            .iter()
            .map(|header| {
                let value = String::from_utf8_lossy(header.value).into_owned();
                (header.name.to_ascii_lowercase(), value)
            })
            .collect();
        let length = headers
            .iter()
            .find(|(name, _)| name == "content-length")
            .map_or(0, |(_, value)| value.parse().expect("a numeric Content-Length"));
        if self.buffer.len() < head_len + length {
            return None;
        }
        let body = String::from_utf8(self.buffer[head_len..head_len + length].to_vec());
        self.buffer.drain(..head_len + length);
        Some(Reply { status, headers, body: body.expect("a UTF-8 body") })
    }

    /// Reads more; `false` at the end of the stream (a reset counts as one).
    async fn fill(&mut self) -> bool {
        let mut chunk = [0; 16 * 1024];
        match self.stream.read(&mut chunk).await {
            Ok(0) => false,
            Ok(n) => {
                self.buffer.extend_from_slice(&chunk[..n]);
                true
            }
            // Over TLS, a close without the `close_notify` alert is an unexpected end.
            Err(error) => {
                let ends = [std::io::ErrorKind::ConnectionReset, std::io::ErrorKind::UnexpectedEof];
                assert!(ends.contains(&error.kind()), "read: {error}");
                false
            }
        }
    }

    /// Waits for the server to close the connection, with nothing more said, and returns how
    /// long that took.
    pub(crate) async fn closed(&mut self) -> Duration {
        let started = Instant::now();
        let read = tokio::time::timeout(PATIENCE, self.fill()).await;
        assert_eq!(read.ok(), Some(false), "the server closes the connection");
        assert!(
            self.buffer.is_empty(),
            "nothing more: {:?}",
            String::from_utf8_lossy(&self.buffer)
        );
        started.elapsed()
    }

    /// Reads until the bytes received hold `text`, and returns them all, taking them off the
    /// buffer: for a response that does not end, such as an event stream.
    pub(crate) async fn read_until(&mut self, text: &str) -> String {
        let read = async {
            while !String::from_utf8_lossy(&self.buffer).contains(text) {
                assert!(self.fill().await, "the connection closed before {text:?}");
            }
        };
        tokio::time::timeout(PATIENCE, read).await.unwrap_or_else(|_| {
            panic!("no {text:?} in time: {:?}", String::from_utf8_lossy(&self.buffer))
        });
        String::from_utf8_lossy(&std::mem::take(&mut self.buffer)).into_owned()
    }
}

impl Client {
    /// Whether the connection is still open after `wait`.
    pub(crate) async fn open_after(&mut self, wait: Duration) -> bool {
        let mut byte = [0; 1];
        tokio::time::timeout(wait, self.stream.peek(&mut byte)).await.is_err()
    }
}
