//! The broker's HTTP transport: routes, Server-Sent Events, CORS, limits and errors, on hyper,
//! over HTTP/1.1 and HTTP/2.
//!
//! This is the only crate that knows HTTP and SSE. It serves a [`Broker`] from `broker-core`:
//! [`handle`] answers one request (tests call it without a socket), and [`serve`] runs the accept
//! loop until a shutdown future completes. Tokens are verified by `broker-auth`'s `Verifier`
//! (set in [`HttpConfig::auth`]); `GET /metrics` serves whatever the renderer given to
//! [`App::with_metrics`] returns, so the transport depends on no metrics exporter, and
//! `GET /backup` sends the copy of the database that the function given to
//! [`App::with_backup`] writes, so it depends on no database either. Given a certificate
//! ([`App::with_tls`], a [`Tls`]), it serves HTTPS on rustls, reloading the certificate without
//! dropping a connection.
//!
//! # Features
//!
//! - `public-key` (default): RS256, ES256 and EdDSA tokens besides HS256, by turning on
//!   `broker-auth`'s feature of the same name. Without it, HS256 alone, and far fewer crates.
//!
//! # Layout
//!
//! Modules depend on those listed before them, never on those after:
//!
//! - `config.rs`, `body.rs`, `error.rs`, `metrics.rs`, `head.rs`: leaf types: [`HttpConfig`],
//!   [`Body`], [`ApiError`] (with how `broker-auth`'s refusals become one), metric names and the
//!   typed causes they are labelled with, and the bytes of HTTP/1.1 heads with the one limit on
//!   request heads.
//! - `auth.rs`: where a request's token is found; what it allows is `broker-auth`'s business.
//! - `sse.rs`: event stream framing; `json.rs`: JSON bodies; `cors.rs`: CORS headers;
//!   `insert_body.rs`: the body of an insert, one version or an array of them.
//! - `insert.rs`, `events.rs`, `audit.rs`, `backup.rs`: one route each; `backup.rs` also has
//!   [`Backup`], the function that writes the copies it sends.
//! - `router.rs`: [`handle`], routing, methods, and the CORS headers (over TLS, HSTS too) on
//!   every response.
//! - `stall.rs`, `rewind.rs`, `linger.rs`: socket wrappers: the guard that drops connections
//!   whose peer stopped reading, the bytes already read put back in front of the socket, and
//!   the close that lets an early answer reach a client still sending.
//! - `socket_body.rs`: the body of a request served without hyper, read from the connection as
//!   the route asks for it.
//! - `tls.rs`: [`Tls`], the certificate and key, reloaded from their files, and each
//!   connection's TLS handshake.
//! - `direct.rs`: responses written straight to the socket: event streams, refusals.
//! - `keep_alive.rs`: publishers' connections, `POST /insert` after `POST /insert`, served
//!   without hyper until a request comes that hyper must answer; `buffered_insert.rs`: those
//!   inserts whose whole request is in the buffer, answered from its bytes.
//! - `h2_frames.rs`: HTTP/2 frame heads as bytes; `h2_flood.rs`: the socket wrapper that closes a
//!   connection flooding the server with control frames; `h2_streams.rs`: each HTTP/2 stream
//!   as a task, and the watchdog that resets one whose client opens no flow-control window.
//! - `hyper_conn.rs`: connections served by hyper over HTTP/1.1; `h2.rs`: over HTTP/2.
//! - `connection.rs`: one connection: which path serves it, and refusals.
//! - `server.rs`: [`serve`], the accept loop, connection limits, graceful shutdown.
//!
//! # Example
//!
//! ```
//! use broker_core::{Broker, Config};
//! use broker_http::{App, HttpConfig};
//! use broker_storage::MemoryStorage;
//!
//! # tokio::runtime::Runtime::new().unwrap().block_on(async {
//! let broker = Broker::open(MemoryStorage::new(), Config::default()).await?;
//! let app = App::new(broker.clone(), HttpConfig::default());
//! let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.expect("bind");
//! let shutdown = tokio::time::sleep(std::time::Duration::from_millis(10));
//! broker_http::serve(listener, app, shutdown).await;
//! broker.close().await?;
//! # Ok::<(), broker_core::Error>(())
//! # }).unwrap();
//! ```

mod audit;
mod auth;
mod backup;
mod body;
mod buffered_insert;
mod config;
mod connection;
mod cors;
mod direct;
mod error;
mod events;
mod h2;
mod h2_flood;
mod h2_frames;
mod h2_streams;
mod head;
mod hyper_conn;
mod insert;
mod insert_body;
mod json;
mod keep_alive;
mod linger;
#[cfg(test)]
mod loopback;
mod metrics;
#[cfg(test)]
mod raw_requests;
mod rewind;
mod router;
mod server;
mod snapshot;
mod socket_body;
mod sse;
mod stall;
mod tls;

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, OnceLock};

use broker_core::Broker;
use http::HeaderValue;
use tokio::sync::{OwnedSemaphorePermit, Semaphore};
use tokio_util::sync::CancellationToken;

use crate::metrics::HttpMetrics;

pub use backup::Backup;
pub use body::Body;
pub use config::{AllowOrigin, FILE_RESERVE, HttpConfig, InvalidOrigin};
pub use error::ApiError;
pub use router::handle;
pub use server::serve;
pub use tls::{Tls, TlsError};

/// Renders `GET /metrics` from whatever recorder the program installed: the transport knows no
/// recorder, it only calls this.
type MetricsRenderer = Box<dyn Fn() -> String + Send + Sync>;

/// What every request is served with: the broker and the transport's settings.
///
/// Cloning is cheap; clones share everything, including shutdown.
#[derive(Clone)]
pub struct App {
    inner: Arc<Inner>,
}

struct Inner {
    broker: Broker,
    config: HttpConfig,
    metrics: HttpMetrics,
    /// Renders `GET /metrics`; without it the route answers 404.
    render_metrics: Option<MetricsRenderer>,
    /// Writes the copies `GET /backup` sends; without it the route answers 404. Set at most
    /// once, by [`App::with_backup`].
    backup: OnceLock<Backup>,
    /// The certificate every connection is served with over TLS; without it, plain HTTP. Set
    /// at most once, by [`App::with_tls`].
    tls: OnceLock<Tls>,
    /// The `Strict-Transport-Security` value of every response over TLS, from
    /// `HttpConfig::hsts`.
    hsts: Option<HeaderValue>,
    /// Cancelled when shutdown begins; every event stream ends on it.
    shutdown: CancellationToken,
    /// Set when shutdown begins, before `shutdown` is cancelled.
    shutting_down: AtomicBool,
    /// Set when the server starts draining: `/readyz` answers 503 from then on.
    draining: AtomicBool,
    /// One permit per event stream, `max_subscribers` in all; a stream holds its permit until
    /// its body is dropped.
    subscribers: Arc<Semaphore>,
}

impl App {
    /// Serves `broker` with `config`, without a `/metrics` route.
    pub fn new(broker: Broker, config: HttpConfig) -> App {
        App::build(broker, config, None)
    }

    /// Serves `broker` with `config`, and `GET /metrics` with what `render` returns: every
    /// metric in the Prometheus text format (version 0.0.4), such as `move || handle.render()`
    /// for a `metrics-exporter-prometheus` handle. It is called once per request to the route.
    ///
    /// Metrics are recorded through the `metrics` facade: install the recorder that `render`
    /// reads before opening the broker and creating the app, or they record nothing. One is not:
    /// the histogram of insert latencies, `broker_insert_request_seconds`, which the transport
    /// keeps itself and appends to what `render` returns.
    pub fn with_metrics(
        broker: Broker,
        config: HttpConfig,
        render: impl Fn() -> String + Send + Sync + 'static,
    ) -> App {
        App::build(broker, config, Some(Box::new(render)))
    }

    fn build(broker: Broker, config: HttpConfig, render_metrics: Option<MetricsRenderer>) -> App {
        let metrics = HttpMetrics::register();
        let shutdown = CancellationToken::new();
        let draining = AtomicBool::new(false);
        let subscribers = Arc::new(Semaphore::new(config.max_subscribers));
        let backup = OnceLock::new();
        let tls = OnceLock::new();
        let hsts = config.hsts.map(|max_age| {
            HeaderValue::from_str(&format!("max-age={}", max_age.as_secs()))
                .expect("digits are a valid header value")
        });
        let inner = Inner {
            broker,
            config,
            metrics,
            render_metrics,
            backup,
            tls,
            hsts,
            shutdown,
            shutting_down: AtomicBool::new(false),
            draining,
            subscribers,
        };
        App { inner: Arc::new(inner) }
    }

    /// Serves `GET /backup` too: each request gets a copy of the database that `backup`
    /// writes, sent as `application/octet-stream` to a client whose token may read every event
    /// (the audit pattern `*`). Without it, the route answers 404.
    ///
    /// Clones share everything, this included; it can be set once, and a second call keeps the
    /// first function (and logs a warning).
    pub fn with_backup(self, backup: Backup) -> App {
        if self.inner.backup.set(backup).is_err() {
            tracing::warn!("a backup function was set already; the first one stays");
        }
        self
    }

    /// Serves HTTPS with `tls`, on the same listener: every connection starts with a TLS
    /// handshake (TLS 1.2 or 1.3), which must finish within the header timeout, and is then
    /// served as over plain TCP. [`serve`] also reloads the certificate whenever its files
    /// change; [`Tls::reload`] reloads it at once. With `HttpConfig::hsts` set, every response
    /// carries `Strict-Transport-Security`.
    ///
    /// Clones share everything, this included; it can be set once, and a second call keeps the
    /// first certificate (and logs a warning).
    pub fn with_tls(self, tls: Tls) -> App {
        if self.inner.tls.set(tls).is_err() {
            tracing::warn!("a TLS certificate was set already; the first one stays");
        }
        self
    }

    /// The certificate the app serves HTTPS with, if it does.
    pub fn tls(&self) -> Option<&Tls> {
        self.inner.tls.get()
    }

    /// The broker served.
    pub fn broker(&self) -> &Broker {
        &self.inner.broker
    }

    /// The transport's settings.
    pub fn config(&self) -> &HttpConfig {
        &self.inner.config
    }

    /// Ends every event stream, now and as soon as a new one starts.
    pub fn begin_shutdown(&self) {
        // Set first: whoever the token wakes reads the flag.
        self.inner.shutting_down.store(true, Ordering::Release);
        self.inner.shutdown.cancel();
    }

    /// Whether shutdown has begun: an atomic read, where the token's own check takes a lock.
    pub(crate) fn is_shutting_down(&self) -> bool {
        self.inner.shutting_down.load(Ordering::Acquire)
    }

    /// Whether the app serves new work: not shutting down, and its broker open.
    pub fn is_ready(&self) -> bool {
        !self.inner.draining.load(Ordering::Relaxed)
            && !self.is_shutting_down()
            && !self.inner.broker.is_closed()
    }

    /// Makes [`is_ready`](App::is_ready) false, while serving on as before.
    pub fn begin_draining(&self) {
        self.inner.draining.store(true, Ordering::Relaxed);
    }

    pub(crate) fn shutdown_token(&self) -> &CancellationToken {
        &self.inner.shutdown
    }

    /// A permit for one more event stream, if fewer than `max_subscribers` are open.
    pub(crate) fn subscriber_permit(&self) -> Option<OwnedSemaphorePermit> {
        self.inner.subscribers.clone().try_acquire_owned().ok()
    }

    pub(crate) fn metrics(&self) -> &HttpMetrics {
        &self.inner.metrics
    }

    /// The `Strict-Transport-Security` header's value, when the app serves HTTPS with a policy.
    pub(crate) fn hsts(&self) -> Option<&HeaderValue> {
        self.tls().and(self.inner.hsts.as_ref())
    }

    /// What writes the copies of `GET /backup`, if anything does.
    pub(crate) fn backup(&self) -> Option<&Backup> {
        self.inner.backup.get()
    }

    /// The text of `GET /metrics`, or `None` when no renderer was given.
    pub(crate) fn render_metrics(&self) -> Option<String> {
        self.inner.render_metrics.as_ref().map(|render| render())
    }
}
