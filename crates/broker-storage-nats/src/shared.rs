//! [`Shared`]: what a store's operations and its tails share.

use std::sync::atomic::{AtomicU64, Ordering};

use tokio_util::sync::CancellationToken;

use crate::options::NatsOptions;

/// What the store's operations and tails share.
pub(crate) struct Shared {
    pub(crate) client: async_nats::Client,
    pub(crate) options: NatsOptions,
    /// The highest sequence this store has seen: acknowledged by an append, delivered by a
    /// tail, returned by a read, or the stream's last when the store connected. Reads cover it
    /// (see `reads.rs`).
    pub(crate) seen: AtomicU64,
    /// Cancelled by `close`: ends the tails and refuses every later call.
    pub(crate) closed: CancellationToken,
}

impl Shared {
    /// The highest sequence this store has seen.
    pub(crate) fn seen(&self) -> u64 {
        self.seen.load(Ordering::Acquire)
    }

    /// Records that this store has seen `sequence`.
    pub(crate) fn saw(&self, sequence: u64) {
        self.seen.fetch_max(sequence, Ordering::AcqRel);
    }
}
