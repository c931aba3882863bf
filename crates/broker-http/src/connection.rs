//! One connection, from its first bytes to its close: which path serves it, and the answer to a
//! connection over the limit.
//!
//! The first bytes of every connection are read here. One that opens with an event stream
//! request (`GET /events`, HTTP/1.1, no body) has its head parsed here, is answered by the same
//! [`handle`] as every other request (routing, authorization, CORS and errors are not
//! duplicated), and its response is written straight to the socket by `direct.rs`. One that opens
//! with a plain insert (`POST /insert`, HTTP/1.1, with `Content-Length`) is served by the
//! keep-alive loop of `keep_alive.rs`, until a request comes that is not a plain insert. One that
//! opens with the HTTP/2 preface (h2c with prior knowledge) is served by `h2.rs`. Every other
//! connection, and the rest of one the loop gives up, goes to hyper's HTTP/1.1, with the bytes
//! already read put back in front of the socket.

use std::io;
use std::time::Duration;

use bytes::BytesMut;
use http::Version;
use http::header::{CONTENT_LENGTH, TRANSFER_ENCODING};
use hyper::server::conn::http1;
use hyper_util::server::graceful::Watcher;
use tokio::io::{AsyncRead, AsyncWrite, AsyncWriteExt};
use tokio::time::timeout;

use crate::head::{self, Head, MAX_REQUEST_HEAD, Parsed};
use crate::keep_alive::{self, Insert, Next, Outcome};
use crate::linger::Linger;
use crate::metrics::CloseCause;
use crate::rewind::Rewind;
use crate::stall::StallGuard;
use crate::{App, direct, h2, h2_frames, handle, hyper_conn, router};

/// The start of every event stream request served directly.
const EVENTS: &[u8] = b"GET /events";
/// How long a connection over the limit is given to send its request head: with it, the `503`
/// carries the CORS headers its origin needs; without it, the answer goes out all the same.
const REFUSAL_HEAD_WAIT: Duration = Duration::from_millis(500);
/// How long writing the `503` may take.
const REFUSAL_WRITE_TIMEOUT: Duration = Duration::from_secs(1);
/// How much of the HTTP/2 preface tells an HTTP/2 client over the limit from an HTTP/1.1 one:
/// its request line, `PRI * HTTP/2.0`.
const PREFACE_START: usize = 14;

/// Serves one connection, directly or through hyper, and says why it closed.
///
/// `stream` is a TCP socket, or the TLS stream over one once its handshake is done: every path
/// serves both alike.
pub(crate) async fn serve<S>(
    app: &App,
    http: &http1::Builder,
    graceful: Watcher,
    mut stream: S,
) -> CloseCause
where
    S: AsyncRead + AsyncWrite + Unpin + Send + 'static,
{
    let config = app.config();
    let mut buffer = BytesMut::with_capacity(512);
    let started = timeout(config.header_read_timeout, read_start(app, &mut stream, &mut buffer));
    let head = match started.await {
        Err(_) => return CloseCause::HeaderTimeout,
        Ok(Err(_)) => return CloseCause::Error,
        Ok(Ok(Start::Closed)) => return CloseCause::Closed,
        Ok(Ok(Start::Direct(head))) => head,
        Ok(Ok(Start::Inserts(insert))) => {
            // Boxed, once per connection: the loop holds `handle`'s future inline, and inline
            // here it would make every connection's task that large, event streams included.
            // The `graceful` watcher lives on meanwhile, so that shutdown waits for the loop.
            let served = Box::pin(keep_alive::serve(app, &mut stream, &mut buffer, *insert));
            return match served.await {
                Outcome::Closed(cause) => cause,
                Outcome::Hyper => to_hyper(app, http, graceful, buffer, stream).await,
            };
        }
        Ok(Ok(Start::Hyper)) => return to_hyper(app, http, graceful, buffer, stream).await,
        Ok(Ok(Start::H2)) => {
            // Boxed, like hyper's HTTP/1.1 connection state, and for the same reason.
            let io = Rewind::new(buffer.freeze(), stream);
            return Box::pin(h2::serve(app, io, graceful)).await;
        }
    };
    drop(buffer);
    // Boxed: every route's future is inline in `handle`'s, inserts' body timeout among them, and
    // inline it would make every event stream's task that much larger for as long as it lives.
    let response = Box::pin(handle(app, *head)).await;
    match direct::write_response(&mut stream, response, config.write_timeout).await {
        Ok(cause) => cause,
        Err(error) if error.kind() == io::ErrorKind::TimedOut => CloseCause::WriteTimeout,
        Err(_) => CloseCause::Error,
    }
}

/// Hands the connection to hyper at a request boundary, with `buffer`, the bytes already read
/// from it, put back in front of the socket.
async fn to_hyper<S>(
    app: &App,
    http: &http1::Builder,
    graceful: Watcher,
    buffer: BytesMut,
    stream: S,
) -> CloseCause
where
    S: AsyncRead + AsyncWrite + Unpin + Send + 'static,
{
    let io = Rewind::new(buffer.freeze(), stream);
    // hyper shuts the connection down when it is done with it: lingering then lets an early
    // answer (413, 415) reach a client that is still sending its body.
    let io = Linger::new(StallGuard::new(io, app.config().write_timeout));
    // Boxed: hyper's connection state is large, and inline it would make every connection's task
    // that large, event streams included.
    let connection = Box::pin(graceful.watch(hyper_conn::serve(http, app, io)));
    match connection.await {
        Ok(()) => CloseCause::Closed,
        Err(error) => hyper_conn::close_cause(&error),
    }
}

/// Answers a connection over the limit with `503` and `Retry-After`, and closes it so that the
/// client reads the answer rather than a reset.
pub(crate) async fn refuse<S>(app: App, mut stream: S)
where
    S: AsyncRead + AsyncWrite + Unpin,
{
    let mut buffer = BytesMut::with_capacity(1024);
    let head = head::read(&mut stream, &mut buffer, REFUSAL_HEAD_WAIT).await;
    let mut stream = Linger::new(stream);
    if buffer.starts_with(&h2_frames::PREFACE[..PREFACE_START]) {
        // An HTTP/2 client cannot read an HTTP/1.1 answer: the server's preface (an empty
        // SETTINGS), then GOAWAY saying that none of its streams was processed.
        let mut refusal = h2_frames::settings().to_vec();
        refusal.extend_from_slice(&h2_frames::go_away(0, h2_frames::REFUSED_STREAM));
        let written = timeout(REFUSAL_WRITE_TIMEOUT, stream.write_all(&refusal)).await;
        if matches!(written, Ok(Ok(()))) {
            let _ = timeout(REFUSAL_WRITE_TIMEOUT, stream.shutdown()).await;
        }
        return;
    }
    let response = router::refuse_busy(&app, head.as_deref());
    if direct::write_whole(&mut stream, response, REFUSAL_WRITE_TIMEOUT).await.is_ok() {
        let _ = stream.shutdown().await;
    }
}

/// How a connection starts.
enum Start {
    /// With an event stream request served directly.
    Direct(Box<Head>),
    /// With a plain insert, at the start of the buffer: the keep-alive loop serves it.
    ///
    /// Boxed: the connection's task holds a `Start` while it serves it, event streams included,
    /// and an insert read for `buffered_insert.rs` is larger than the rest of it.
    Inserts(Box<Insert>),
    /// With anything else: hand the connection, and the bytes read, to hyper.
    Hyper,
    /// With the HTTP/2 preface: hand the connection, and the bytes read, to `h2.rs`.
    H2,
    /// With nothing: the client closed the connection.
    Closed,
}

/// Reads until the first bytes rule out a request served directly, or until its whole head is
/// in.
async fn read_start(
    app: &App,
    stream: &mut (impl AsyncRead + Unpin),
    buffer: &mut BytesMut,
) -> io::Result<Start> {
    loop {
        if let Some(start) = classify(app, buffer) {
            return Ok(start);
        }
        if head::read_more(stream, buffer).await? == 0 {
            // A partial request that ends is hyper's to answer; no bytes at all is a clean close.
            return Ok(if buffer.is_empty() { Start::Closed } else { Start::Hyper });
        }
    }
}

/// How a connection whose first bytes are `buffer` starts, or `None` while more are needed.
fn classify(app: &App, buffer: &[u8]) -> Option<Start> {
    if head::may_start_with(buffer, h2::PREFACE) {
        return (buffer.len() >= h2::PREFACE.len()).then_some(Start::H2);
    }
    if !head::may_start_with(buffer, EVENTS) {
        return match keep_alive::classify(app, buffer) {
            Next::Insert(insert) => Some(Start::Inserts(Box::new(insert))),
            Next::Other => Some(Start::Hyper),
            Next::More => None,
        };
    }
    if buffer.len() < EVENTS.len() {
        return None;
    }
    match head::parse(buffer) {
        Parsed::Complete { head, len } if is_direct(&head, len == buffer.len()) => {
            Some(Start::Direct(head))
        }
        Parsed::Complete { .. } | Parsed::Invalid => Some(Start::Hyper),
        // hyper answers a head over the limit with `431`.
        Parsed::Partial if buffer.len() >= MAX_REQUEST_HEAD => Some(Start::Hyper),
        Parsed::Partial => None,
    }
}

/// Whether a request that starts with [`EVENTS`] is served directly: an event stream request of
/// HTTP/1.1 with nothing after its head, neither a body nor a pipelined request. hyper handles
/// the others.
fn is_direct(head: &Head, whole: bool) -> bool {
    let path = head.uri().path();
    whole
        && path == "/events"
        && head.version() == Version::HTTP_11
        && !head.headers().contains_key(CONTENT_LENGTH)
        && !head.headers().contains_key(TRANSFER_ENCODING)
}
