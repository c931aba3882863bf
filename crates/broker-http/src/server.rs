//! The accept loop: connections, their limits, and graceful shutdown.

use std::future::Future;
use std::sync::Arc;
use std::time::{Duration, Instant};

use hyper::server::conn::http1;
use hyper_util::server::graceful::{GracefulShutdown, Watcher};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::Semaphore;

use crate::metrics::{CloseCause, HttpMetrics};
use crate::tls::{self, Tls};
use crate::{App, connection, h2, hyper_conn};

/// How long the accept loop pauses after a failed accept, such as running out of file
/// descriptors, before it tries again; connections already open are served meanwhile.
const ACCEPT_BACKOFF: Duration = Duration::from_millis(100);
/// The most connections over the limit that are being answered `503` at once; beyond it, they
/// are closed at once, so that refusing a flood never holds more than this many descriptors.
const MAX_REFUSING: usize = 256;
/// The least time between two log lines about failed accepts.
const ACCEPT_LOG_INTERVAL: Duration = Duration::from_secs(10);
/// How long a connection over the limit may take over its TLS handshake before it is closed
/// without an answer.
const REFUSAL_HANDSHAKE_TIMEOUT: Duration = Duration::from_secs(1);
/// How long the refusal of a connection over the limit may take in all, over TLS: the
/// handshake, the head, the answer and the lingering close.
const REFUSAL_TIMEOUT: Duration = Duration::from_secs(5);

/// Serves `app` on `listener` until `shutdown` completes, then shuts down gracefully.
///
/// An app with a certificate ([`App::with_tls`]) serves HTTPS: every connection is a TLS one,
/// and the certificate is reloaded whenever its files change, for as long as this runs.
///
/// Shutdown stops accepting, ends every event stream, lets requests in flight (inserts waiting
/// for their commit among them) finish, and gives up on connections still open after the
/// configured deadline. It does not close the broker: the caller does that afterwards, once
/// nothing can insert any more.
pub async fn serve(listener: TcpListener, app: App, shutdown: impl Future<Output = ()>) {
    let http = hyper_conn::builder(&app);
    let graceful = GracefulShutdown::new();
    // Connections beyond this many are told to come back later rather than queued.
    let permits = Arc::new(Semaphore::new(app.config().max_connections));
    let refusals = Arc::new(Semaphore::new(MAX_REFUSING));
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
    let watch = app.tls().map(|tls| tokio::spawn(tls::watch(tls.clone())));
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
            if let Ok(refusal) = refusals.clone().try_acquire_owned() {
                let app = app.clone();
                tokio::spawn(async move {
                    refuse(app, stream).await;
                    drop(refusal);
                });
            }
            continue;
        };
        // Frames are written whole; waiting to fill segments only adds latency.
        let _ = stream.set_nodelay(true);
        let (app, http, watcher) = (app.clone(), http.clone(), graceful.watcher());
        let open = app.metrics().connections_open.clone();
        open.increment(1);
        tokio::spawn(async move {
            tracing::debug!(%peer, "connection opened");
            let cause = serve_connection(&app, &http, watcher, stream).await;
            tracing::debug!(%peer, cause = cause.as_str(), "connection closed");
            HttpMetrics::connection_closed(cause);
            open.decrement(1);
            drop(permit);
        });
    }
    drop(listener);
    if let Some(watch) = watch {
        watch.abort();
    }
    tracing::info!(connections = graceful.count(), "shutting down: no longer accepting");
    app.begin_shutdown();
    let deadline = app.config().shutdown_timeout;
    if tokio::time::timeout(deadline, graceful.shutdown()).await.is_err() {
        tracing::warn!(?deadline, "connections still open at the shutdown deadline; closing them");
    }
}

/// Serves one accepted connection: over TLS once its handshake is done, when the app serves
/// HTTPS; directly otherwise.
async fn serve_connection(
    app: &App,
    http: &http1::Builder,
    watcher: Watcher,
    stream: TcpStream,
) -> CloseCause {
    match app.tls() {
        None => connection::serve(app, http, watcher, stream).await,
        // Boxed: a TLS connection's state (rustls's session, the handshake) inline here would
        // make every connection's task that much larger, plain ones included.
        Some(tls) => Box::pin(serve_tls(app, http, watcher, tls, stream)).await,
    }
}

/// Serves one connection over TLS, the handshake within the header timeout.
async fn serve_tls(
    app: &App,
    http: &http1::Builder,
    watcher: Watcher,
    tls: &Tls,
    stream: TcpStream,
) -> CloseCause {
    match tls.accept(stream, app.config().header_read_timeout).await {
        // HTTP/2 when the client chose it by ALPN (browsers do), HTTP/1.1 otherwise.
        Ok(stream) if tls::alpn_protocol(&stream) == Some(b"h2") => {
            Box::pin(h2::serve(app, stream, watcher)).await
        }
        Ok(stream) => connection::serve(app, http, watcher, stream).await,
        Err(cause) => cause,
    }
}

/// Answers a connection over the limit with `503`, over TLS when the app serves HTTPS, within
/// [`REFUSAL_TIMEOUT`] in all.
async fn refuse(app: App, stream: TcpStream) {
    let Some(tls) = app.tls().cloned() else {
        return connection::refuse(app, stream).await;
    };
    let refused = async {
        if let Ok(stream) = tls.accept(stream, REFUSAL_HANDSHAKE_TIMEOUT).await {
            connection::refuse(app, stream).await;
        }
    };
    let _ = tokio::time::timeout(REFUSAL_TIMEOUT, refused).await;
}
