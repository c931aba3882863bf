//! The names of the engine's metrics, for a program that configures its recorder by name (for
//! example, to give a histogram its buckets).
//!
//! The engine reports through the `metrics` facade: the program that embeds it chooses the
//! recorder (the server exports Prometheus text), or none, which costs nothing. Each name is
//! defined here once and used both to describe and to register its metric.

use std::sync::atomic::{AtomicUsize, Ordering};

use ::metrics::{Counter, Gauge, Histogram, Unit, counter, gauge, histogram};

/// Counter: versions committed, counted when their commit returns.
pub const INSERTS: &str = "broker_inserts_total";

/// Counter: versions whose commit failed, or that were refused before it, so that none of them
/// was stored.
pub const INSERT_FAILURES: &str = "broker_insert_failures_total";

/// Histogram: versions per commit, one sample per successful commit. Its count is the number of
/// commits and its sum the number of versions they held (an insert of several versions counts
/// each).
pub const COMMIT_BATCH_SIZE: &str = "broker_commit_batch_size";

/// Histogram, in seconds: how long one durable commit took, from the call to the storage
/// backend until it answered.
pub const COMMIT_SECONDS: &str = "broker_commit_seconds";

/// Gauge: 1 while the storage refuses writes (the last commit failed, and the backend has not
/// said it takes writes again since) or damage was found in its data, 0 otherwise.
pub const STORAGE_FAILING: &str = "broker_storage_failing";

/// Gauge: subscriptions that exist now.
pub const SUBSCRIBERS: &str = "broker_subscribers";

/// Counter: subscribers that fell behind the live ring and were brought up to date from the
/// latest versions.
pub const SUBSCRIBER_CATCH_UPS: &str = "broker_subscriber_catch_ups_total";

/// Counter: versions removed by the retention rules.
pub const VERSIONS_PRUNED: &str = "broker_versions_pruned_total";

/// Gauge, in bytes: what the database takes where it is kept (a file and its journal, a
/// stream), as the storage last said; absent when the backend cannot tell.
pub const DATABASE_BYTES: &str = "broker_database_bytes";

/// The engine's metric handles.
///
/// They are registered once, when the broker opens, so that the hot paths only add to an atomic:
/// no name lookup per insert or per delivery.
pub(crate) struct Metrics {
    /// See [`INSERTS`].
    pub(crate) inserts: Counter,
    /// See [`INSERT_FAILURES`].
    pub(crate) insert_failures: Counter,
    /// See [`COMMIT_BATCH_SIZE`].
    pub(crate) batch_size: Histogram,
    /// See [`COMMIT_SECONDS`].
    pub(crate) commit_seconds: Histogram,
    /// See [`SUBSCRIBERS`].
    pub(crate) subscribers: SubscriberCount,
    /// See [`SUBSCRIBER_CATCH_UPS`].
    pub(crate) catch_ups: Counter,
    /// See [`VERSIONS_PRUNED`].
    pub(crate) pruned: Counter,
    /// See [`DATABASE_BYTES`].
    pub(crate) database_bytes: Gauge,
}

impl Metrics {
    pub(crate) fn register() -> Metrics {
        ::metrics::describe_counter!(INSERTS, "Versions committed.");
        ::metrics::describe_counter!(
            INSERT_FAILURES,
            "Versions whose commit failed, or that were refused before it."
        );
        ::metrics::describe_histogram!(COMMIT_BATCH_SIZE, "Versions per commit.");
        ::metrics::describe_histogram!(
            COMMIT_SECONDS,
            Unit::Seconds,
            "Time one durable commit took."
        );
        ::metrics::describe_gauge!(SUBSCRIBERS, "Subscriptions that exist now.");
        ::metrics::describe_gauge!(
            STORAGE_FAILING,
            "1 while the storage refuses writes or its data is damaged, 0 otherwise."
        );
        ::metrics::describe_counter!(
            SUBSCRIBER_CATCH_UPS,
            "Subscribers that fell behind the live ring and were brought up to date."
        );
        ::metrics::describe_counter!(VERSIONS_PRUNED, "Versions removed by the retention rules.");
        ::metrics::describe_gauge!(
            DATABASE_BYTES,
            Unit::Bytes,
            "What the database takes where it is kept, as the storage last said."
        );
        Metrics {
            inserts: counter!(INSERTS),
            insert_failures: counter!(INSERT_FAILURES),
            batch_size: histogram!(COMMIT_BATCH_SIZE),
            commit_seconds: histogram!(COMMIT_SECONDS),
            subscribers: SubscriberCount { count: AtomicUsize::new(0), gauge: gauge!(SUBSCRIBERS) },
            catch_ups: counter!(SUBSCRIBER_CATCH_UPS),
            pruned: counter!(VERSIONS_PRUNED),
            database_bytes: gauge!(DATABASE_BYTES),
        }
    }
}

/// How many subscriptions exist: the one count that both the broker's answer and the
/// [`SUBSCRIBERS`] gauge come from.
///
/// Only [`add`](SubscriberCount::add) and [`remove`](SubscriberCount::remove) change it, and each
/// moves the count and the gauge by the same step, so the two cannot drift apart.
pub(crate) struct SubscriberCount {
    count: AtomicUsize,
    gauge: Gauge,
}

impl SubscriberCount {
    /// Counts one more subscription.
    pub(crate) fn add(&self) {
        self.count.fetch_add(1, Ordering::Relaxed);
        self.gauge.increment(1);
    }

    /// Counts one subscription fewer; called once for every [`add`](SubscriberCount::add).
    pub(crate) fn remove(&self) {
        self.count.fetch_sub(1, Ordering::Relaxed);
        self.gauge.decrement(1);
    }

    /// The subscriptions that exist now.
    pub(crate) fn get(&self) -> usize {
        self.count.load(Ordering::Relaxed)
    }
}
