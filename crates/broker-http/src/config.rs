//! [`HttpConfig`]: everything the transport can be told.

use std::fmt;
use std::str::FromStr;
use std::time::Duration;

use broker_auth::Verifier;
use http::HeaderValue;

/// Which origins browsers may call the broker from.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum AllowOrigin {
    /// Any origin: `Access-Control-Allow-Origin: *`.
    Any,
    /// Only these origins, each echoed back when a request comes from it.
    List(Vec<HeaderValue>),
}

impl FromStr for AllowOrigin {
    type Err = InvalidOrigin;

    /// Parses `*`, or a comma-separated list of origins (`scheme://host[:port]`).
    fn from_str(text: &str) -> Result<AllowOrigin, InvalidOrigin> {
        let text = text.trim();
        if text == "*" {
            return Ok(AllowOrigin::Any);
        }
        let mut origins = Vec::new();
        for origin in text.split(',').map(str::trim) {
            let well_formed = origin.split_once("://").is_some_and(|(scheme, host)| {
                !scheme.is_empty() && !host.is_empty() && !host.contains('/')
            });
            if origin == "*" || !well_formed {
                return Err(InvalidOrigin(format!(
                    "{origin:?} is not an origin; use `*` alone, or origins like \
                     `https://app.example` or `http://localhost:3000` separated by commas"
                )));
            }
            let value = HeaderValue::from_str(origin).map_err(|_| {
                InvalidOrigin(format!("{origin:?} has characters an origin cannot have"))
            })?;
            origins.push(value);
        }
        Ok(AllowOrigin::List(origins))
    }
}

impl fmt::Display for AllowOrigin {
    /// `*`, or the origins separated by commas: what [`AllowOrigin::from_str`] reads back.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            AllowOrigin::Any => f.write_str("*"),
            AllowOrigin::List(origins) => {
                for (index, origin) in origins.iter().enumerate() {
                    let separator = if index == 0 { "" } else { "," };
                    write!(f, "{separator}{}", String::from_utf8_lossy(origin.as_bytes()))?;
                }
                Ok(())
            }
        }
    }
}

/// Why a text is not a list of allowed origins; the message says how to write one.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
#[error("{0}")]
pub struct InvalidOrigin(String);

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
    /// The most versions one `POST /insert` of an array may hold; more get `413`. An array is
    /// stored in one commit, so the engine's [`max_batch`](broker_core::Config::max_batch)
    /// caps it too: the smaller of the two is the limit. The whole body stays within
    /// [`max_body`](HttpConfig::max_body). Default: 1,000, what one atomic batch of a NATS
    /// JetStream stream holds.
    pub max_bulk: usize,
    /// The most connections served at once, event streams included; more get `503` with
    /// `Retry-After`. Default: 10,000; see [`HttpConfig::fit_open_files`].
    pub max_connections: usize,
    /// The most event streams served at once; more get `503` with `Retry-After`. Kept below
    /// `max_connections`, so that a full house of subscribers still leaves connections for
    /// inserts, audits and health checks. Default: 9,000; see [`HttpConfig::fit_open_files`].
    pub max_subscribers: usize,
    /// How long a client may take to send its request headers. Default: 10 s.
    pub header_read_timeout: Duration,
    /// How long a client may take to send a request body, from the end of its headers; one that
    /// takes longer gets `408` and is disconnected, so that stalled uploads cannot hold
    /// connections. With the default body limit this asks for at least 100 KiB/s. Default: 10 s.
    pub body_timeout: Duration,
    /// How long a write may stay blocked because the client reads nothing before the connection
    /// is closed. An event stream client reconnects and resumes. Default: 30 s.
    pub write_timeout: Duration,
    /// The most streams one HTTP/2 connection may have open at once; the client is told so, and
    /// a stream beyond it is refused (`REFUSED_STREAM`) while the others go on. Default: 256.
    pub h2_max_concurrent_streams: u32,
    /// Token authorization; `None` leaves the broker open to anyone who can reach it.
    /// Default: `None`.
    pub auth: Option<Verifier>,
    /// Whether `GET /` serves the live demo page. Default: no.
    pub demo: bool,
    /// The HSTS policy: with it, every response of an app that serves HTTPS
    /// ([`App::with_tls`](crate::App::with_tls)), errors included, carries
    /// `Strict-Transport-Security: max-age=<seconds>`, and browsers then reach the host over
    /// HTTPS alone for that long. `Some(Duration::ZERO)` tells them to forget the policy. It is
    /// never sent over plain HTTP, where RFC 6797 forbids it. Default: `None`, no header.
    pub hsts: Option<Duration>,
    /// How long the server goes on serving after it is told to shut down, with `/readyz`
    /// answering 503, so that load balancers move new clients elsewhere first. Default: 0.
    pub drain_delay: Duration,
    /// How long shutdown waits for open connections before it gives up on them. Default: 10 s.
    pub shutdown_timeout: Duration,
}

/// Descriptors a process keeps back from connections for everything else it opens: the
/// database, the listener, log files, the runtime's own.
pub const FILE_RESERVE: usize = 64;

impl HttpConfig {
    /// Sets the connection limits that fit a process allowed to open `open_files` descriptors:
    /// all but [`FILE_RESERVE`] for connections, and nine in ten of those for event streams.
    ///
    /// A limit beyond what the process can open does not refuse anyone: the kernel keeps the
    /// connections past it queued, unanswered, until a client gives up.
    pub fn fit_open_files(&mut self, open_files: usize) {
        self.limit_connections(open_files.saturating_sub(FILE_RESERVE));
    }

    /// Sets `max_connections` to `connections` (at least one), and `max_subscribers` to nine in
    /// ten of them (at least one).
    pub fn limit_connections(&mut self, connections: usize) {
        self.max_connections = connections.max(1);
        self.max_subscribers = (self.max_connections - self.max_connections / 10).max(1);
    }
}

impl Default for HttpConfig {
    fn default() -> HttpConfig {
        let mut config = HttpConfig {
            allow_origin: AllowOrigin::Any,
            heartbeat: Duration::from_secs(15),
            retry: Duration::from_secs(3),
            max_body: 1024 * 1024,
            max_bulk: 1000,
            max_connections: 0,
            max_subscribers: 0,
            header_read_timeout: Duration::from_secs(10),
            body_timeout: Duration::from_secs(10),
            write_timeout: Duration::from_secs(30),
            h2_max_concurrent_streams: 256,
            drain_delay: Duration::ZERO,
            shutdown_timeout: Duration::from_secs(10),
            auth: None,
            demo: false,
            hsts: None,
        };
        config.fit_open_files(10_000 + FILE_RESERVE);
        config
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn limits_fit_the_open_file_limit_and_leave_room_beside_subscribers() {
        let mut config = HttpConfig::default();
        assert_eq!((config.max_connections, config.max_subscribers), (10_000, 9_000));
        config.fit_open_files(20_000);
        assert_eq!((config.max_connections, config.max_subscribers), (19_936, 17_943));
        config.fit_open_files(10);
        assert_eq!((config.max_connections, config.max_subscribers), (1, 1));
        config.limit_connections(5);
        assert_eq!((config.max_connections, config.max_subscribers), (5, 5));
    }

    #[test]
    fn allow_origin_is_any_or_a_list_of_origins() {
        assert_eq!("*".parse(), Ok(AllowOrigin::Any));
        let list = "https://a.example, http://localhost:3000".parse::<AllowOrigin>();
        let expected = AllowOrigin::List(vec![
            HeaderValue::from_static("https://a.example"),
            HeaderValue::from_static("http://localhost:3000"),
        ]);
        assert_eq!(list, Ok(expected.clone()));
        assert_eq!(expected.to_string().parse(), Ok(expected));
        for bad in ["", "a.example", "https://a.example/", "*,https://a.example", "https://"] {
            assert!(bad.parse::<AllowOrigin>().is_err(), "{bad:?} must be refused");
        }
    }
}
