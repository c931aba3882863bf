//! [`Shared`]: what a store's operations and its tails share.

use std::collections::HashMap;
use std::sync::Mutex;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::time::Duration;

use broker_storage::Version;
use tokio_util::sync::CancellationToken;

use crate::options::NatsOptions;

/// What the store's operations and tails share.
pub(crate) struct Shared {
    pub(crate) client: async_nats::Client,
    pub(crate) options: NatsOptions,
    /// The idempotency window that applies: the longer of the stream's `duplicate_window` and
    /// the configured one, so that a prune never removes a version a retry may still find.
    pub(crate) idempotency_window: Duration,
    /// The highest sequence this store has seen: acknowledged by an append, delivered by a
    /// tail, returned by a read, or the stream's last when the store connected. Reads cover it
    /// (see `reads.rs`).
    pub(crate) seen: AtomicU64,
    /// The horizons this store knows: those it recorded, and those it read from the horizons
    /// bucket. A replica that has not yet applied a purge still answers with the versions it
    /// removed; reads leave out every version at or below its event's horizon here, so that
    /// none comes back once this store's `prune` or `horizons` said it was gone.
    horizons: Mutex<HashMap<String, u64>>,
    /// Set once the horizons bucket is known to exist: made at connection with pruning on,
    /// found later by `horizons` otherwise.
    pub(crate) horizons_bucket: AtomicBool,
    /// Cancelled by `close`: ends the tails and refuses every later call.
    pub(crate) closed: CancellationToken,
}

impl Shared {
    /// What a store shares once connected: the stream's last sequence `last` is the first mark.
    pub(crate) fn new(
        client: async_nats::Client,
        options: NatsOptions,
        idempotency_window: Duration,
        last: u64,
    ) -> Shared {
        let horizons_bucket = AtomicBool::new(options.prune);
        Shared {
            client,
            options,
            idempotency_window,
            seen: AtomicU64::new(last),
            horizons: Mutex::default(),
            horizons_bucket,
            closed: CancellationToken::new(),
        }
    }

    /// The highest sequence this store has seen.
    pub(crate) fn seen(&self) -> u64 {
        self.seen.load(Ordering::Acquire)
    }

    /// Records that this store has seen `sequence`.
    pub(crate) fn saw(&self, sequence: u64) {
        self.seen.fetch_max(sequence, Ordering::AcqRel);
    }

    /// The greatest id of `event` this store knows to be pruned, 0 for none.
    pub(crate) fn pruned_through(&self, event: &str) -> u64 {
        self.known_horizons().get(event).copied().unwrap_or(0)
    }

    /// Records that `event` is pruned through `id`; a horizon only moves forward.
    pub(crate) fn pruned(&self, event: &str, id: u64) {
        let mut horizons = self.known_horizons();
        let horizon = horizons.entry(event.to_owned()).or_default();
        *horizon = (*horizon).max(id);
    }

    /// Every horizon this store knows.
    pub(crate) fn horizons(&self) -> HashMap<String, u64> {
        self.known_horizons().clone()
    }

    /// Removes from `versions` those at or below their event's horizon.
    pub(crate) fn drop_pruned(&self, versions: &mut Vec<Version>) {
        let horizons = self.known_horizons();
        if !horizons.is_empty() {
            versions.retain(|version| {
                horizons.get(&*version.event).is_none_or(|&horizon| version.id > horizon)
            });
        }
    }

    fn known_horizons(&self) -> std::sync::MutexGuard<'_, HashMap<String, u64>> {
        // A poisoned lock means a panic while it was held; every change above is a single
        // insert that leaves the map whole, so its data is still right.
        self.horizons.lock().unwrap_or_else(|poison| poison.into_inner())
    }
}
