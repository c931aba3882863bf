//! The broker's HTTP transport: routes, Server-Sent Events, CORS, limits and errors, on hyper.
//!
//! This is the only crate that knows HTTP and SSE. It serves a [`Broker`] from `broker-core`:
//! [`handle`] answers one request (tests call it without a socket), and [`serve`] runs the accept
//! loop until a shutdown future completes.
//!
//! # Layout
//!
//! Modules depend on those listed before them, never on those after:
//!
//! - `config.rs`, `body.rs`, `error.rs`, `metrics.rs`, `head.rs`: leaf types: [`HttpConfig`],
//!   [`Body`], [`ApiError`], metric names and the typed causes they are labelled with, and the
//!   bytes of HTTP/1.1 heads with the one limit on request heads.
//! - `auth.rs`: where a request's token is found; what it allows is `broker-auth`'s business.
//! - `sse.rs`: event stream framing; `json.rs`: JSON bodies; `cors.rs`: CORS headers.
//! - `insert.rs`, `events.rs`, `audit.rs`: one route each.
//! - `router.rs`: [`handle`], routing, methods, and the CORS headers on every response.
//! - `stall.rs`, `rewind.rs`: socket wrappers: the guard that drops connections whose peer
//!   stopped reading, and the bytes already read put back in front of the socket.
//! - `direct.rs`: responses written straight to the socket: event streams, refusals.
//! - `hyper_conn.rs`: connections served by hyper.
//! - `connection.rs`: one connection: which of the two paths serves it, and refusals.
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
mod body;
mod config;
mod connection;
mod cors;
mod direct;
mod error;
mod events;
mod head;
mod hyper_conn;
mod insert;
mod json;
mod metrics;
#[cfg(test)]
mod raw_requests;
mod rewind;
mod router;
mod server;
mod sse;
mod stall;

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};

use broker_core::Broker;
use metrics_exporter_prometheus::PrometheusHandle;
use tokio_util::sync::CancellationToken;

use crate::metrics::HttpMetrics;

pub use body::Body;
pub use config::{AllowOrigin, HttpConfig, InvalidOrigin};
pub use error::ApiError;
pub use router::handle;
pub use server::serve;

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
    prometheus: Option<PrometheusHandle>,
    /// Cancelled when shutdown begins; every event stream ends on it.
    shutdown: CancellationToken,
    /// Set when the server starts draining: `/readyz` answers 503 from then on.
    draining: AtomicBool,
}

impl App {
    /// Serves `broker` with `config`, without a `/metrics` route.
    pub fn new(broker: Broker, config: HttpConfig) -> App {
        App::with_prometheus(broker, config, None)
    }

    /// Serves `broker` with `config`, and `GET /metrics` from `prometheus` when given.
    ///
    /// Metrics are recorded through the `metrics` facade: install the recorder behind
    /// `prometheus` before opening the broker and creating the app, or they record nothing.
    pub fn with_prometheus(
        broker: Broker,
        config: HttpConfig,
        prometheus: Option<PrometheusHandle>,
    ) -> App {
        let metrics = HttpMetrics::register();
        let shutdown = CancellationToken::new();
        let draining = AtomicBool::new(false);
        App { inner: Arc::new(Inner { broker, config, metrics, prometheus, shutdown, draining }) }
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
        self.inner.shutdown.cancel();
    }

    /// Whether the app serves new work: not shutting down, and its broker open.
    pub fn is_ready(&self) -> bool {
        !self.inner.draining.load(Ordering::Relaxed)
            && !self.inner.shutdown.is_cancelled()
            && !self.inner.broker.is_closed()
    }

    /// Makes [`is_ready`](App::is_ready) false, while serving on as before.
    pub fn begin_draining(&self) {
        self.inner.draining.store(true, Ordering::Relaxed);
    }

    pub(crate) fn shutdown_token(&self) -> &CancellationToken {
        &self.inner.shutdown
    }

    pub(crate) fn metrics(&self) -> &HttpMetrics {
        &self.inner.metrics
    }

    /// The handle that renders `GET /metrics`, if metrics are enabled.
    pub fn prometheus(&self) -> Option<&PrometheusHandle> {
        self.inner.prometheus.as_ref()
    }
}
