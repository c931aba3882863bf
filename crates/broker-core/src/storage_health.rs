//! [`StorageHealth`]: whether the storage takes writes, as the engine last found out, and the
//! watch that finds out when a failing backend recovers.
//!
//! A failing backend (a full disk, a lost connection) fails every commit. The engine records the
//! first failure and logs it once, not once per insert; a gauge says so to metrics, and the
//! transport's readiness check reads it. A watch asks the backend every [`PROBE_INTERVAL`]
//! whether it would take a write ([`Storage::writable`]), so that the broker learns of a failure
//! before an insert runs into it, and of a recovery even when no insert arrives to try, which is
//! what happens once a load balancer stops sending traffic to a node that says it is not ready.
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
    state: Mutex<State>,
    gauge: Gauge,
}

#[derive(Default)]
struct State {
    /// The failure the storage has not recovered from.
    failing: Option<Failure>,
    /// Damage found in the stored data. It does not heal by itself: it stays until the broker
    /// is restarted on a checked or restored file.
    damaged: Option<String>,
}

struct Failure {
    since: Instant,
    message: String,
}

impl StorageHealth {
    pub(crate) fn new() -> StorageHealth {
        let gauge = gauge!(STORAGE_FAILING);
        gauge.set(0.0);
        StorageHealth { state: Mutex::new(State::default()), gauge }
    }

    fn lock(&self) -> MutexGuard<'_, State> {
        // Each field is replaced whole; a panic cannot leave one half-written.
        self.state.lock().unwrap_or_else(|poison| poison.into_inner())
    }

    /// Records that a storage call failed with `error`: a failed write starts (or goes on with)
    /// a failure, and damage is remembered for good. The first of each is logged.
    pub(crate) fn failed(&self, error: &StorageError) {
        let mut state = self.lock();
        if let StorageError::Corrupt(message) = error {
            if state.damaged.is_none() {
                tracing::error!(%error, "the stored data is damaged: check the database");
                self.gauge.set(1.0);
                state.damaged = Some(message.clone());
            }
            return;
        }
        if matches!(error, StorageError::Closed) {
            return;
        }
        match &mut state.failing {
            Some(failure) => failure.message = error.to_string(),
            None => {
                tracing::error!(%error, "storage is failing: inserts are refused until it recovers");
                self.gauge.set(1.0);
                state.failing = Some(Failure { since: Instant::now(), message: error.to_string() });
            }
        }
    }

    /// Records that the storage takes writes; a recovery is logged.
    pub(crate) fn succeeded(&self) {
        let mut state = self.lock();
        if let Some(ended) = state.failing.take() {
            if state.damaged.is_none() {
                self.gauge.set(0.0);
            }
            tracing::info!(after = ?ended.since.elapsed(), "storage recovered: inserts are taken again");
        }
    }

    /// Why the storage cannot be relied on, if it cannot: damage found in its data, or the
    /// failure that makes it refuse writes.
    pub(crate) fn failure(&self) -> Option<String> {
        let state = self.lock();
        let damaged =
            state.damaged.as_ref().map(|message| format!("stored data is damaged: {message}"));
        damaged.or_else(|| state.failing.as_ref().map(|failure| failure.message.clone()))
    }

    /// Whether a write failed and the storage has not taken one since.
    fn is_failing(&self) -> bool {
        self.lock().failing.is_some()
    }
}

/// Asks `storage` every [`PROBE_INTERVAL`] whether it takes writes, for as long as the task runs
/// (the broker aborts it on close): a failing one, to learn when it recovers; a sound one too,
/// so that a node that takes no inserts still learns that its storage fails (a lost quorum, a
/// disk below its reserve) and says so on its readiness check before a client finds out.
pub(crate) async fn watch(storage: Arc<dyn DynStorage>, health: Arc<StorageHealth>) {
    let mut ticks = tokio::time::interval(PROBE_INTERVAL);
    ticks.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        ticks.tick().await;
        match storage.writable().await {
            Ok(()) if health.is_failing() => health.succeeded(),
            Ok(()) => {}
            Err(error) => health.failed(&error),
        }
    }
}
