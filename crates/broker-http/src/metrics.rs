//! The transport's metrics, through the `metrics` facade.
//!
//! Handles for the per-frame counters are registered once per [`App`](crate::App): a delivery
//! only adds to an atomic, and an event stream adds once per write, not once per frame.

use std::time::Duration;

use metrics::{Counter, Gauge, Histogram, counter, gauge, histogram};

pub(crate) struct HttpMetrics {
    frames_sent: Counter,
    bytes_sent: Counter,
    pub(crate) connections_open: Gauge,
    pub(crate) connections_refused: Counter,
    insert_seconds: Histogram,
}

impl HttpMetrics {
    pub(crate) fn register() -> HttpMetrics {
        metrics::describe_counter!("broker_sse_frames_sent_total", "Event frames written.");
        metrics::describe_counter!("broker_sse_bytes_sent_total", "Event stream bytes written.");
        metrics::describe_counter!(
            "broker_sse_streams_ended_total",
            "Event streams that ended, by cause: client_gone, shutdown, broker_closed."
        );
        metrics::describe_gauge!("broker_connections_open", "Open client connections.");
        metrics::describe_counter!(
            "broker_connections_refused_total",
            "Connections refused with 503 because too many were open."
        );
        metrics::describe_counter!(
            "broker_connections_closed_total",
            "Connections closed, by cause: closed, header_timeout, write_timeout, error."
        );
        metrics::describe_counter!("broker_http_requests_total", "Requests, by route and status.");
        metrics::describe_histogram!(
            "broker_insert_request_seconds",
            metrics::Unit::Seconds,
            "Time from an insert request to its answer, commit included."
        );
        HttpMetrics {
            frames_sent: counter!("broker_sse_frames_sent_total"),
            bytes_sent: counter!("broker_sse_bytes_sent_total"),
            connections_open: gauge!("broker_connections_open"),
            connections_refused: counter!("broker_connections_refused_total"),
            insert_seconds: histogram!("broker_insert_request_seconds"),
        }
    }

    pub(crate) fn sent(&self, frames: u64, bytes: usize) {
        self.frames_sent.increment(frames);
        self.bytes_sent.increment(bytes as u64);
    }

    pub(crate) fn insert_answered(&self, elapsed: Duration) {
        self.insert_seconds.record(elapsed);
    }

    pub(crate) fn request(route: &'static str, status: http::StatusCode) {
        counter!("broker_http_requests_total", "route" => route, "status" => status.as_u16().to_string())
            .increment(1);
    }

    pub(crate) fn stream_ended(cause: &'static str) {
        counter!("broker_sse_streams_ended_total", "cause" => cause).increment(1);
    }

    pub(crate) fn connection_closed(cause: &'static str) {
        counter!("broker_connections_closed_total", "cause" => cause).increment(1);
    }
}
