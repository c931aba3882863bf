//! [`HttpConfig`]: everything the transport can be told.

use std::time::Duration;

use http::HeaderValue;

use crate::auth::AuthConfig;

/// Which origins browsers may call the broker from.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum AllowOrigin {
    /// Any origin: `Access-Control-Allow-Origin: *`.
    Any,
    /// Only these origins, each echoed back when a request comes from it.
    List(Vec<HeaderValue>),
}

/// Settings of the HTTP transport; [`HttpConfig::default`] gives the documented defaults.
#[derive(Clone, Debug)]
#[non_exhaustive]
pub struct HttpConfig {
    /// Origins allowed by CORS. Default: any.
    pub allow_origin: AllowOrigin,
    /// How often an idle event stream gets a heartbeat comment. Default: 15 s.
    pub heartbeat: Duration,
    /// The reconnection delay sent to event stream clients as `retry:`. Default: 3 s.
    pub retry: Duration,
    /// The largest request body accepted, in bytes. Default: 1 MiB.
    pub max_body: usize,
    /// The most connections served at once; more get `503` with `Retry-After`. Default: 10,000.
    pub max_connections: usize,
    /// How long a client may take to send its request headers. Default: 10 s.
    pub header_read_timeout: Duration,
    /// How long a write may stay blocked because the client reads nothing before the connection
    /// is closed. An event stream client reconnects and resumes. Default: 30 s.
    pub write_timeout: Duration,
    /// Token authorization; `None` leaves the broker open to anyone who can reach it.
    /// Default: `None`.
    pub auth: Option<AuthConfig>,
    /// Whether `GET /` serves the live demo page. Default: no.
    pub demo: bool,
    /// How long the server goes on serving after it is told to shut down, with `/readyz`
    /// answering 503, so that load balancers move new clients elsewhere first. Default: 0.
    pub drain_delay: Duration,
    /// How long shutdown waits for open connections before it gives up on them. Default: 10 s.
    pub shutdown_timeout: Duration,
}

impl Default for HttpConfig {
    fn default() -> HttpConfig {
        HttpConfig {
            allow_origin: AllowOrigin::Any,
            heartbeat: Duration::from_secs(15),
            retry: Duration::from_secs(3),
            max_body: 1024 * 1024,
            max_connections: 10_000,
            header_read_timeout: Duration::from_secs(10),
            write_timeout: Duration::from_secs(30),
            drain_delay: Duration::ZERO,
            shutdown_timeout: Duration::from_secs(10),
            auth: None,
            demo: false,
        }
    }
}
