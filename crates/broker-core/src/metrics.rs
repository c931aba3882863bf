//! The engine's metrics, through the `metrics` facade: the program that embeds the engine
//! chooses the recorder (the server exports Prometheus text), or none, which costs nothing.
//!
//! Handles are registered once, when the broker opens, so that the hot paths only add to an
//! atomic: no name lookup per insert or per delivery.

use metrics::{Counter, Gauge, Histogram, counter, gauge, histogram};

pub(crate) struct Metrics {
    /// Versions committed.
    pub(crate) inserts: Counter,
    /// Inserts whose commit failed.
    pub(crate) insert_failures: Counter,
    /// Inserts per commit.
    pub(crate) batch_size: Histogram,
    /// Seconds one commit took.
    pub(crate) commit_seconds: Histogram,
    /// Subscriptions that exist now.
    pub(crate) subscribers: Gauge,
    /// Subscribers that fell behind the live ring and were brought up to date.
    pub(crate) catch_ups: Counter,
}

impl Metrics {
    pub(crate) fn register() -> Metrics {
        metrics::describe_counter!("broker_inserts_total", "Versions committed.");
        metrics::describe_counter!("broker_insert_failures_total", "Inserts whose commit failed.");
        metrics::describe_histogram!("broker_commit_batch_size", "Inserts per commit.");
        metrics::describe_histogram!(
            "broker_commit_seconds",
            metrics::Unit::Seconds,
            "Time one durable commit took."
        );
        metrics::describe_gauge!("broker_subscribers", "Subscriptions that exist now.");
        metrics::describe_counter!(
            "broker_subscriber_catch_ups_total",
            "Subscribers that fell behind the live ring and were brought up to date."
        );
        Metrics {
            inserts: counter!("broker_inserts_total"),
            insert_failures: counter!("broker_insert_failures_total"),
            batch_size: histogram!("broker_commit_batch_size"),
            commit_seconds: histogram!("broker_commit_seconds"),
            subscribers: gauge!("broker_subscribers"),
            catch_ups: counter!("broker_subscriber_catch_ups_total"),
        }
    }
}
