//! Connections served over HTTP/2 by hyper: every route, event streams included, answered by
//! the same [`handle`] as over HTTP/1.1.
//!
//! [`serve`] takes any byte stream that speaks HTTP/2 from its first byte: a plain TCP
//! connection that opened with the preface (h2c with prior knowledge, told apart in
//! `connection.rs`), or a TLS stream whose handshake chose `h2` by ALPN. The limits of HTTP/1.1
//! hold the same way:
//!
//! - a write blocked for `write_timeout` fails the connection (`StallGuard` on the socket), and
//!   a stream the client opens no flow-control window for is reset after `write_timeout`, or
//!   the connection closed when every stream is in that state (`h2_streams.rs`);
//! - a connection with no open stream for `header_read_timeout` is told to go away (GOAWAY),
//!   and closed if it is still open after as long again, as hyper closes an idle HTTP/1.1
//!   connection;
//! - at most `h2_max_concurrent_streams` streams at once (h2 refuses the others with
//!   `REFUSED_STREAM`), a header list of at most `MAX_REQUEST_HEAD` bytes (h2 answers a larger
//!   one `431` and resets its stream), and h2's own limits against abuse (streams reset before
//!   they were accepted, resets h2 sent for a client's errors, CONTINUATION and empty DATA
//!   floods), each answered with GOAWAY and `ENHANCE_YOUR_CALM`;
//! - control frames beyond a budget close the connection (`h2_flood.rs`).
//!
//! A connection closed for abuse is counted with the cause `h2_abuse`.

use std::convert::Infallible;
use std::future::Future;
use std::pin::Pin;
use std::sync::atomic::Ordering;

use http::{Request, Response};
use hyper::body::Incoming;
use hyper::server::conn::http2;
use hyper::service::Service;
use hyper_util::rt::{TokioIo, TokioTimer};
use hyper_util::server::graceful::Watcher;
use tokio::io::{AsyncRead, AsyncWrite};
use tokio::time::{Instant, sleep};

use crate::h2_flood::FloodGuard;
use crate::h2_streams::{Streams, WatchedBody};
use crate::head::MAX_REQUEST_HEAD;
use crate::linger::Linger;
use crate::metrics::CloseCause;
use crate::stall::StallGuard;
use crate::{App, Body, handle, hyper_conn};

pub(crate) use crate::h2_frames::PREFACE;

/// The most response data h2 buffers for one stream beyond what the client's window lets it
/// send: as much as one coalesced write of an event stream.
const MAX_SEND_BUF: usize = 64 * 1024;
/// The most streams a client may reset before the server accepted them, all at once; more is
/// the rapid reset attack, answered with GOAWAY. h2's own default.
const MAX_PENDING_ACCEPT_RESETS: usize = 20;
/// The most streams the server may reset for a client's protocol errors over a connection's
/// life; more is answered with GOAWAY.
const MAX_LOCAL_ERROR_RESETS: usize = 256;

/// The HTTP/2 settings of one connection, whose streams run on `streams`.
fn builder(app: &App, streams: Streams) -> http2::Builder<Streams> {
    let config = app.config();
    let mut http = http2::Builder::new(streams);
    http.timer(TokioTimer::new())
        .max_concurrent_streams(config.h2_max_concurrent_streams)
        .max_header_list_size(u32::try_from(MAX_REQUEST_HEAD).unwrap_or(u32::MAX))
        .max_send_buf_size(MAX_SEND_BUF)
        .max_pending_accept_reset_streams(MAX_PENDING_ACCEPT_RESETS)
        .max_local_error_reset_streams(MAX_LOCAL_ERROR_RESETS);
    http
}

/// Serves one connection that speaks HTTP/2 from its first byte, until it closes, and says why
/// it closed. `graceful` is held until then, so that shutdown waits for it.
pub(crate) async fn serve<I>(app: &App, io: I, graceful: Watcher) -> CloseCause
where
    I: AsyncRead + AsyncWrite + Unpin + Send + 'static,
{
    let _graceful = graceful;
    let config = app.config();
    let streams =
        Streams::new(config.write_timeout, app.metrics().h2_stream_write_timeouts.clone());
    // h2 shuts the socket down when it is done with it: lingering lets its last frames (a
    // GOAWAY) reach a client that is still sending.
    let io = FloodGuard::new(Linger::new(StallGuard::new(io, config.write_timeout)));
    let flooded = io.flooded();
    let connection =
        builder(app, streams.clone()).serve_connection(TokioIo::new(io), Handler(app.clone()));
    tokio::pin!(connection);
    let shutdown = app.shutdown_token();
    let idle_timeout = config.header_read_timeout;
    let idle = sleep(idle_timeout);
    tokio::pin!(idle);
    let mut going_away = false;
    let mut was_idle = false;
    let result = loop {
        tokio::select! {
            result = connection.as_mut() => break result,
            () = shutdown.cancelled(), if !going_away => {
                // Event streams end by themselves on shutdown; GOAWAY lets every other request
                // in flight finish, and refuses new ones.
                going_away = true;
                connection.as_mut().graceful_shutdown();
            }
            () = streams.stalled() => return CloseCause::WriteTimeout,
            () = idle.as_mut() => match streams.idle_for() {
                Some(idle_for) if idle_for >= idle_timeout => {
                    if was_idle {
                        return CloseCause::HeaderTimeout;
                    }
                    was_idle = true;
                    going_away = true;
                    connection.as_mut().graceful_shutdown();
                    idle.as_mut().reset(Instant::now() + idle_timeout);
                }
                Some(idle_for) => idle.as_mut().reset(Instant::now() + idle_timeout - idle_for),
                None => idle.as_mut().reset(Instant::now() + idle_timeout),
            },
        }
    };
    if flooded.load(Ordering::Relaxed) {
        return CloseCause::H2Abuse;
    }
    match result {
        Ok(()) if was_idle => CloseCause::HeaderTimeout,
        Ok(()) => CloseCause::Closed,
        Err(error) => close_cause(&error),
    }
}

/// Why hyper ended an HTTP/2 connection with `error`: a GOAWAY h2 sent for abuse, or what
/// ends an HTTP/1.1 connection.
fn close_cause(error: &hyper::Error) -> CloseCause {
    let h2 =
        std::error::Error::source(error).and_then(|source| source.downcast_ref::<::h2::Error>());
    if h2.and_then(::h2::Error::reason) == Some(::h2::Reason::ENHANCE_YOUR_CALM) {
        return CloseCause::H2Abuse;
    }
    hyper_conn::close_cause(error)
}

/// The hyper service of an HTTP/2 connection: every request goes to [`handle`], and every
/// response body is watched for stalls.
struct Handler(App);

impl Service<Request<Incoming>> for Handler {
    type Response = Response<WatchedBody<Body>>;
    type Error = Infallible;
    type Future = Pin<Box<dyn Future<Output = Result<Self::Response, Infallible>> + Send>>;

    fn call(&self, request: Request<Incoming>) -> Self::Future {
        let app = self.0.clone();
        Box::pin(async move { Ok(handle(&app, request).await.map(WatchedBody::new)) })
    }
}
