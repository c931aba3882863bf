//! What a prune keeps of an event's history, and what it did.

/// What [`Storage::prune`](crate::Storage::prune) keeps of one event's history.
///
/// A version may be removed when either bound leaves it out: it is not among the newest
/// `keep_last` versions of its event, or its timestamp is before `keep_since`. A bound that is
/// `None` keeps everything. Whatever the bounds, the latest version of the event is kept, and so
/// is every version stored within the backend's idempotency window (measured from its timestamp
/// to the backend's clock), so that a retry still finds the version its first try stored.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Retention {
    /// Keep at most this many of the event's newest versions (0 keeps the latest all the same).
    pub keep_last: Option<u64>,
    /// Keep no version whose timestamp (milliseconds since the Unix epoch) is before this.
    pub keep_since: Option<u64>,
}

impl Retention {
    /// Keeps only the newest `count` versions.
    pub fn last(count: u64) -> Retention {
        Retention { keep_last: Some(count), keep_since: None }
    }

    /// Keeps only the versions whose timestamp is `timestamp` or later.
    pub fn since(timestamp: u64) -> Retention {
        Retention { keep_last: None, keep_since: Some(timestamp) }
    }

    /// Whether it keeps every version, so that pruning under it removes nothing.
    pub fn keeps_everything(&self) -> bool {
        self.keep_last.is_none() && self.keep_since.is_none()
    }

    /// Whether it lets go of a version with `newer` versions of its event after it and stored at
    /// `timestamp`, not counting the latest version and the idempotency window, which the backend
    /// keeps whatever this says.
    pub fn releases(&self, newer: u64, timestamp: u64) -> bool {
        self.keep_last.is_some_and(|keep| newer >= keep)
            || self.keep_since.is_some_and(|since| timestamp < since)
    }
}

/// What one [`Storage::prune`](crate::Storage::prune) call did.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Pruned {
    /// How many versions it removed.
    pub removed: usize,
    /// Whether versions the retention lets go of remain: the call stopped at its `limit` (then
    /// `removed` is the limit, and the next call goes on at once), or at a version kept for the
    /// idempotency window (which a call after the window has passed removes).
    pub more: bool,
}

/// How far back the stored history of one event reaches, once some of it was pruned.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Horizon {
    /// The event name.
    pub event: String,
    /// The greatest id of a version of `event` that was pruned. Every version of the event with
    /// an id up to this one is gone; every one with a greater id is still stored.
    pub pruned_through: u64,
}
