//! The accept loop: connections, their limits, and graceful shutdown.

use std::convert::Infallible;
use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;
use std::time::{Duration, Instant};

use http::{Request, Response};
use hyper::body::Incoming;
use hyper::server::conn::http1;
use hyper::service::Service;
use hyper_util::rt::{TokioIo, TokioTimer};
use hyper_util::server::graceful::GracefulShutdown;
use tokio::io::{AsyncRead, AsyncWrite, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::Semaphore;

use crate::metrics::HttpMetrics;
use crate::{App, Body, direct, handle};

/// How long the accept loop pauses after a failed accept, such as running out of file
/// descriptors, before it tries again; connections already open are served meanwhile.
const ACCEPT_BACKOFF: Duration = Duration::from_millis(100);
/// The largest request head (request line and headers) accepted, in bytes.
const MAX_REQUEST_HEAD: usize = 64 * 1024;
/// The least time between two log lines about failed accepts.
const ACCEPT_LOG_INTERVAL: Duration = Duration::from_secs(10);

/// Serves `app` on `listener` until `shutdown` completes, then shuts down gracefully.
///
/// Shutdown stops accepting, ends every event stream, lets requests in flight (inserts waiting
/// for their commit among them) finish, and gives up on connections still open after the
/// configured deadline. It does not close the broker: the caller does that afterwards, once
/// nothing can insert any more.
pub async fn serve(listener: TcpListener, app: App, shutdown: impl Future<Output = ()>) {
    let http = http_builder(&app);
    let graceful = GracefulShutdown::new();
    // Connections beyond this many are told to come back later rather than queued.
    let permits = Arc::new(Semaphore::new(app.config().max_connections));
    let mut last_accept_error: Option<Instant> = None;
    // Once `shutdown` completes the server drains for the configured delay: `/readyz` answers
    // 503, so that load balancers stop sending new clients, while everything is served as usual.
    let draining = app.clone();
    let stop = async move {
        shutdown.await;
        draining.begin_draining();
        let delay = draining.config().drain_delay;
        if !delay.is_zero() {
            tracing::info!(?delay, "draining: /readyz answers 503, still serving");
            tokio::time::sleep(delay).await;
        }
    };
    tokio::pin!(stop);
    loop {
        let accepted = tokio::select! {
            accepted = listener.accept() => accepted,
            () = &mut stop => break,
        };
        let (stream, peer) = match accepted {
            Ok(accepted) => accepted,
            Err(error) => {
                if last_accept_error.is_none_or(|at| at.elapsed() >= ACCEPT_LOG_INTERVAL) {
                    tracing::warn!(%error, "accepting connections failed; backing off");
                    last_accept_error = Some(Instant::now());
                }
                tokio::time::sleep(ACCEPT_BACKOFF).await;
                continue;
            }
        };
        let Ok(permit) = permits.clone().try_acquire_owned() else {
            app.metrics().connections_refused.increment(1);
            tokio::spawn(refuse_busy(stream));
            continue;
        };
        // Frames are written whole; waiting to fill segments only adds latency.
        let _ = stream.set_nodelay(true);
        let (app, http, watcher) = (app.clone(), http.clone(), graceful.watcher());
        let open = app.metrics().connections_open.clone();
        open.increment(1);
        tokio::spawn(async move {
            tracing::debug!(%peer, "connection opened");
            let cause = direct::serve_socket(&app, &http, watcher, stream).await;
            tracing::debug!(%peer, cause, "connection closed");
            HttpMetrics::connection_closed(cause);
            open.decrement(1);
            drop(permit);
        });
    }
    drop(listener);
    tracing::info!(connections = graceful.count(), "shutting down: no longer accepting");
    app.begin_shutdown();
    let deadline = app.config().shutdown_timeout;
    if tokio::time::timeout(deadline, graceful.shutdown()).await.is_err() {
        tracing::warn!(?deadline, "connections still open at the shutdown deadline; closing them");
    }
}

/// Why a connection ended with `error`, for metrics.
pub(crate) fn close_cause(error: &hyper::Error) -> &'static str {
    if error.is_timeout() {
        return "header_timeout";
    }
    let io =
        std::error::Error::source(error).and_then(|source| source.downcast_ref::<std::io::Error>());
    match io.map(std::io::Error::kind) {
        Some(std::io::ErrorKind::TimedOut) => "write_timeout",
        _ => "error",
    }
}

/// The HTTP/1.1 settings every connection is served with.
pub(crate) fn http_builder(app: &App) -> http1::Builder {
    let mut http = http1::Builder::new();
    http.timer(TokioTimer::new())
        .header_read_timeout(app.config().header_read_timeout)
        // Request heads beyond this are answered 431; the broker's own requests are small, and
        // hyper's default (about 400 KiB) would let each connection hold that much.
        .max_buf_size(MAX_REQUEST_HEAD);
    http
}

/// Serves the requests of one connection with [`handle`].
pub(crate) fn serve_connection<I>(
    http: &http1::Builder,
    app: &App,
    io: I,
) -> http1::Connection<TokioIo<I>, Handler>
where
    I: AsyncRead + AsyncWrite + Unpin + Send + 'static,
{
    http.serve_connection(TokioIo::new(io), Handler(app.clone()))
}

/// The hyper service of a connection: every request goes to [`handle`].
pub(crate) struct Handler(App);

impl Service<Request<Incoming>> for Handler {
    type Response = Response<Body>;
    type Error = Infallible;
    type Future = Pin<Box<dyn Future<Output = Result<Response<Body>, Infallible>> + Send>>;

    fn call(&self, request: Request<Incoming>) -> Self::Future {
        let app = self.0.clone();
        Box::pin(async move { Ok(handle(&app, request).await) })
    }
}

/// Answers a connection over the limit with `503` and closes it, without reading its request.
async fn refuse_busy(mut stream: TcpStream) {
    const BODY: &str = r#"{"error":"unavailable","message":"too many connections; retry later"}"#;
    let response = format!(
        "HTTP/1.1 503 Service Unavailable\r\ncontent-type: application/json\r\n\
         retry-after: 1\r\nconnection: close\r\ncontent-length: {}\r\n\r\n{BODY}",
        BODY.len()
    );
    let _ =
        tokio::time::timeout(Duration::from_secs(1), stream.write_all(response.as_bytes())).await;
    let _ = stream.shutdown().await;
}
