//! [`StorageHealth`]: whether the storage takes writes, as the engine last found out, and the
//! watch that finds out when a failing backend recovers.
//!
//! A failing backend (a full disk, a lost connection) fails every commit. The engine records the
//! first failure and logs it once, not once per insert; a gauge says so to metrics, and the
//! transport's readiness check reads it. While failing, a watch asks the backend every
//! [`PROBE_INTERVAL`] whether it would take a write again ([`Storage::writable`]), so that the
//! broker learns of a recovery even when no insert arrives to try, which is what happens once a
//! load balancer stops sending traffic to a node that says it is not ready.
//!
//! [`Storage::writable`]: broker_storage::Storage::writable

use std::sync::{Arc, Mutex, MutexGuard};
use std::time::{Duration, Instant};

use broker_storage::StorageError;
use metrics::{Gauge, gauge};

use crate::erased::DynStorage;
use crate::metrics::STORAGE_FAILING;

/// How often a failing backend is asked whether it takes writes again.
pub(crate) const PROBE_INTERVAL: Duration = Duration::from_secs(1);

/// The engine's record of whether its storage takes writes.
pub(crate) struct StorageHealth {
    failure: Mutex<Option<Failure>>,
    gauge: Gauge,
}

struct Failure {
    since: Instant,
    message: String,
}

impl StorageHealth {
    pub(crate) fn new() -> StorageHealth {
        let gauge = gauge!(STORAGE_FAILING);
        gauge.set(0.0);
        StorageHealth { failure: Mutex::new(None), gauge }
    }

    fn lock(&self) -> MutexGuard<'_, Option<Failure>> {
        // The value is replaced whole; a panic cannot leave it half-written.
        self.failure.lock().unwrap_or_else(|poison| poison.into_inner())
    }

    /// Records that a write failed with `error`; the first failure of a run is logged.
    pub(crate) fn failed(&self, error: &StorageError) {
        if matches!(error, StorageError::Closed) {
            return;
        }
        let mut failure = self.lock();
        match &mut *failure {
            Some(failure) => failure.message = error.to_string(),
            None => {
                tracing::error!(%error, "storage is failing: inserts are refused until it recovers");
                self.gauge.set(1.0);
                *failure = Some(Failure { since: Instant::now(), message: error.to_string() });
            }
        }
    }

    /// Records that the storage takes writes; a recovery is logged.
    pub(crate) fn succeeded(&self) {
        let mut failure = self.lock();
        if let Some(ended) = failure.take() {
            self.gauge.set(0.0);
            tracing::info!(after = ?ended.since.elapsed(), "storage recovered: inserts are taken again");
        }
    }

    /// Why the storage refuses writes, if it does.
    pub(crate) fn failure(&self) -> Option<String> {
        self.lock().as_ref().map(|failure| failure.message.clone())
    }
}

/// Asks a failing `storage` every [`PROBE_INTERVAL`] whether it takes writes again, for as long
/// as the task runs (the broker aborts it on close).
pub(crate) async fn watch(storage: Arc<dyn DynStorage>, health: Arc<StorageHealth>) {
    let mut ticks = tokio::time::interval(PROBE_INTERVAL);
    ticks.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        ticks.tick().await;
        if health.failure().is_none() {
            continue;
        }
        match storage.writable().await {
            Ok(()) => health.succeeded(),
            Err(error) => health.failed(&error),
        }
    }
}
