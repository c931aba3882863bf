//! The transport's metrics, through the `metrics` facade: their names, the typed causes they are
//! labelled with, and the handles that record them.
//!
//! Every name and label value is written once, here. Handles for the per-frame counters are
//! registered once per [`App`](crate::App): a delivery only adds to an atomic, and an event
//! stream adds once per write, not once per frame.
//!
//! The insert latency histogram is the transport's own ([`LatencyHistogram`]), not the
//! recorder's: a recorder's histogram keeps every sample until its next upkeep, an allocation
//! now and then on every publisher's path, where fixed buckets cost three atomic additions. It
//! is rendered after the recorder's metrics, in `GET /metrics`.

use std::fmt::Write as _;
use std::sync::OnceLock;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use metrics::{Counter, Gauge, counter, gauge};

/// Event frames written.
pub(crate) const SSE_FRAMES_SENT: &str = "broker_sse_frames_sent_total";
/// Event stream bytes written.
pub(crate) const SSE_BYTES_SENT: &str = "broker_sse_bytes_sent_total";
/// Event streams that ended, labelled `cause` with a [`StreamEnd`].
pub(crate) const SSE_STREAMS_ENDED: &str = "broker_sse_streams_ended_total";
/// Open client connections.
pub(crate) const CONNECTIONS_OPEN: &str = "broker_connections_open";
/// Connections refused with `503` because too many were open.
pub(crate) const CONNECTIONS_REFUSED: &str = "broker_connections_refused_total";
/// Connections closed, labelled `cause` with a [`CloseCause`].
pub(crate) const CONNECTIONS_CLOSED: &str = "broker_connections_closed_total";
/// HTTP/2 streams reset because the client opened no flow-control window for them within the
/// write timeout.
pub(crate) const H2_STREAM_WRITE_TIMEOUTS: &str = "broker_http2_stream_write_timeouts_total";
/// Requests answered, labelled `route` and `status`.
pub(crate) const HTTP_REQUESTS: &str = "broker_http_requests_total";
/// Seconds from an insert request to its answer, commit included.
pub(crate) const INSERT_REQUEST_SECONDS: &str = "broker_insert_request_seconds";
/// The upper bounds of the insert latency histogram's buckets, in microseconds: those of every
/// latency histogram the server's recorder keeps.
const INSERT_BUCKETS_MICROS: [u64; 13] = [
    500, 1_000, 2_500, 5_000, 10_000, 25_000, 50_000, 100_000, 250_000, 500_000, 1_000_000,
    2_500_000, 5_000_000,
];
/// The `route` label of `POST /insert`.
pub(crate) const INSERT_ROUTE: &str = "insert";

/// Declares a label enum whose every value is spelled once, in its `as_str`, and listed in `ALL`
/// so that the metric's description names them all.
macro_rules! causes {
    ($(#[$meta:meta])* $name:ident { $($(#[$vmeta:meta])* $variant:ident => $text:literal,)+ }) => {
        $(#[$meta])*
        #[derive(Clone, Copy, Debug, PartialEq, Eq)]
        pub(crate) enum $name {
            $($(#[$vmeta])* $variant,)+
        }

        impl $name {
            /// Every value, in the order the description lists them.
            pub(crate) const ALL: &[$name] = &[$($name::$variant,)+];

            /// The label value.
            pub(crate) fn as_str(self) -> &'static str {
                match self {
                    $($name::$variant => $text,)+
                }
            }
        }

        impl std::fmt::Display for $name {
            fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
                f.write_str(self.as_str())
            }
        }
    };
}

causes! {
    /// Why an event stream ended.
    StreamEnd {
        /// The client closed its connection or stopped reading.
        ClientGone => "client_gone",
        /// The server began to shut down.
        Shutdown => "shutdown",
        /// The broker was closed.
        BrokerClosed => "broker_closed",
        /// The token the stream was opened with expired.
        TokenExpired => "token_expired",
    }
}

causes! {
    /// Why a connection closed.
    CloseCause {
        /// The client or the server closed it in the ordinary way.
        Closed => "closed",
        /// The client took longer than the header timeout to send its request head.
        HeaderTimeout => "header_timeout",
        /// A write stayed blocked for the write timeout: the client read nothing.
        WriteTimeout => "write_timeout",
        /// The connection failed: a reset, malformed input, or too much unread input.
        Error => "error",
        /// The TLS handshake failed, or did not finish within the header timeout.
        TlsHandshake => "tls_handshake",
        /// An HTTP/2 client abused the protocol (rapid reset, floods of control frames): the
        /// server sent GOAWAY with `ENHANCE_YOUR_CALM` and closed it.
        H2Abuse => "h2_abuse",
    }
}

/// `"a, b, c"`: the values of a label, for a metric's description.
fn listed<T: Copy>(all: &[T], as_str: impl Fn(T) -> &'static str) -> String {
    all.iter().map(|&value| as_str(value)).collect::<Vec<_>>().join(", ")
}

pub(crate) struct HttpMetrics {
    frames_sent: Counter,
    bytes_sent: Counter,
    pub(crate) connections_open: Gauge,
    pub(crate) connections_refused: Counter,
    pub(crate) h2_stream_write_timeouts: Counter,
    insert_seconds: LatencyHistogram,
    /// Requests counted with the labels of a stored insert, which every publisher's request
    /// takes: looked up in the registry once, when the first one is counted.
    inserts_stored: OnceLock<Counter>,
}

impl HttpMetrics {
    pub(crate) fn register() -> HttpMetrics {
        metrics::describe_counter!(SSE_FRAMES_SENT, "Event frames written.");
        metrics::describe_counter!(SSE_BYTES_SENT, "Event stream bytes written.");
        metrics::describe_counter!(
            SSE_STREAMS_ENDED,
            format!(
                "Event streams that ended, by cause: {}.",
                listed(StreamEnd::ALL, StreamEnd::as_str)
            )
        );
        metrics::describe_gauge!(CONNECTIONS_OPEN, "Open client connections.");
        metrics::describe_counter!(
            CONNECTIONS_REFUSED,
            "Connections refused with 503 because too many were open."
        );
        metrics::describe_counter!(
            CONNECTIONS_CLOSED,
            format!(
                "Connections closed, by cause: {}.",
                listed(CloseCause::ALL, CloseCause::as_str)
            )
        );
        metrics::describe_counter!(
            H2_STREAM_WRITE_TIMEOUTS,
            "HTTP/2 streams reset because the client opened no flow-control window for them \
             within the write timeout; a connection whose every stream stalls is closed instead \
             (cause write_timeout)."
        );
        metrics::describe_counter!(HTTP_REQUESTS, "Requests, by route and status.");
        HttpMetrics {
            frames_sent: counter!(SSE_FRAMES_SENT),
            bytes_sent: counter!(SSE_BYTES_SENT),
            connections_open: gauge!(CONNECTIONS_OPEN),
            connections_refused: counter!(CONNECTIONS_REFUSED),
            h2_stream_write_timeouts: counter!(H2_STREAM_WRITE_TIMEOUTS),
            insert_seconds: LatencyHistogram::default(),
            inserts_stored: OnceLock::new(),
        }
    }

    pub(crate) fn sent(&self, frames: u64, bytes: usize) {
        self.frames_sent.increment(frames);
        self.bytes_sent.increment(bytes as u64);
    }

    pub(crate) fn insert_answered(&self, elapsed: Duration) {
        self.insert_seconds.record(elapsed);
    }

    /// Appends the metrics the transport keeps itself to `text`, a Prometheus text exposition.
    pub(crate) fn render_own(&self, text: &mut String) {
        if !text.is_empty() && !text.ends_with('\n') {
            text.push('\n');
        }
        self.insert_seconds.render(
            INSERT_REQUEST_SECONDS,
            "Time from an insert request to its answer, commit included.",
            text,
        );
    }

    /// Counts a request to `route` answered with `status`.
    pub(crate) fn request(&self, route: &'static str, status: http::StatusCode) {
        if route == INSERT_ROUTE && status == http::StatusCode::CREATED {
            let stored = || counter!(HTTP_REQUESTS, "route" => INSERT_ROUTE, "status" => "201");
            self.inserts_stored.get_or_init(stored).increment(1);
            return;
        }
        // The statuses the broker answers with name themselves without an allocation.
        let status: metrics::SharedString = match status.as_u16() {
            200 => "200".into(),
            201 => "201".into(),
            204 => "204".into(),
            400 => "400".into(),
            401 => "401".into(),
            403 => "403".into(),
            404 => "404".into(),
            413 => "413".into(),
            422 => "422".into(),
            503 => "503".into(),
            other => other.to_string().into(),
        };
        counter!(HTTP_REQUESTS, "route" => route, "status" => status).increment(1);
    }

    pub(crate) fn stream_ended(cause: StreamEnd) {
        counter!(SSE_STREAMS_ENDED, "cause" => cause.as_str()).increment(1);
    }

    pub(crate) fn connection_closed(cause: CloseCause) {
        counter!(CONNECTIONS_CLOSED, "cause" => cause.as_str()).increment(1);
    }
}

/// A Prometheus histogram of durations, with the buckets of [`INSERT_BUCKETS_MICROS`] and one
/// for anything longer: a sample adds to its bucket, the count and the sum.
#[derive(Default)]
struct LatencyHistogram {
    /// Samples per bucket, not cumulative; the last is for samples above every bound.
    buckets: [AtomicU64; INSERT_BUCKETS_MICROS.len() + 1],
    sum_nanos: AtomicU64,
}

impl LatencyHistogram {
    fn record(&self, elapsed: Duration) {
        let nanos = u64::try_from(elapsed.as_nanos()).unwrap_or(u64::MAX);
        // A bound is inclusive (`le`): a sample equal to it is in its bucket.
        let bucket = INSERT_BUCKETS_MICROS.partition_point(|&bound| bound * 1_000 < nanos);
        self.buckets[bucket].fetch_add(1, Ordering::Relaxed);
        self.sum_nanos.fetch_add(nanos, Ordering::Relaxed);
    }

    /// Appends the histogram as `name`, in the Prometheus text format.
    ///
    /// The count is the buckets' total, so that `+Inf` and `_count` agree even while samples
    /// are being recorded; the sum may lag them by the samples in flight.
    fn render(&self, name: &str, help: &str, text: &mut String) {
        let _ = writeln!(text, "# HELP {name} {help}\n# TYPE {name} histogram");
        let mut count = 0;
        for (bucket, bound) in self.buckets.iter().zip(INSERT_BUCKETS_MICROS) {
            count += bucket.load(Ordering::Relaxed);
            let le = bound as f64 / 1e6;
            let _ = writeln!(text, "{name}_bucket{{le=\"{le}\"}} {count}");
        }
        count += self.buckets[INSERT_BUCKETS_MICROS.len()].load(Ordering::Relaxed);
        let sum = self.sum_nanos.load(Ordering::Relaxed) as f64 / 1e9;
        let _ = writeln!(text, "{name}_bucket{{le=\"+Inf\"}} {count}");
        let _ = writeln!(text, "{name}_sum {sum}\n{name}_count {count}");
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn label_values_are_distinct_and_listed() {
        let streams: Vec<_> = StreamEnd::ALL.iter().map(|cause| cause.as_str()).collect();
        assert_eq!(streams, ["client_gone", "shutdown", "broker_closed", "token_expired"]);
        let closes: Vec<_> = CloseCause::ALL.iter().map(|cause| cause.as_str()).collect();
        assert_eq!(
            closes,
            ["closed", "header_timeout", "write_timeout", "error", "tls_handshake", "h2_abuse"]
        );
        assert_eq!(listed(CloseCause::ALL, CloseCause::as_str), closes.join(", "));
    }

    #[test]
    fn insert_latencies_render_as_a_cumulative_prometheus_histogram() {
        let histogram = LatencyHistogram::default();
        for nanos in [100_000, 500_000, 500_001, 3_000_000, 7_000_000_000] {
            histogram.record(Duration::from_nanos(nanos));
        }
        let mut text = String::from("before\n");
        histogram.render("h_seconds", "Help.", &mut text);
        let lines: Vec<&str> = text.lines().collect();
        assert_eq!(
            lines[..4],
            [
                "before",
                "# HELP h_seconds Help.",
                "# TYPE h_seconds histogram",
                "h_seconds_bucket{le=\"0.0005\"} 2"
            ]
        );
        assert!(lines.contains(&"h_seconds_bucket{le=\"0.001\"} 3"), "{text}");
        assert!(lines.contains(&"h_seconds_bucket{le=\"0.0025\"} 3"), "{text}");
        assert!(lines.contains(&"h_seconds_bucket{le=\"0.005\"} 4"), "{text}");
        assert!(lines.contains(&"h_seconds_bucket{le=\"5\"} 4"), "{text}");
        assert!(lines.contains(&"h_seconds_bucket{le=\"+Inf\"} 5"), "{text}");
        assert!(lines.contains(&"h_seconds_count 5"), "{text}");
        let sum: f64 = text
            .lines()
            .find_map(|line| line.strip_prefix("h_seconds_sum "))
            .and_then(|sum| sum.parse().ok())
            .expect("a sum");
        assert!((sum - 7.004_100_001).abs() < 1e-9, "{sum}");
        assert_eq!(lines.len(), 1 + 2 + 14 + 2);
    }
}
