//! [`Subscription`]: one subscriber's ordered view of the broker.
//!
//! A subscription starts either with a snapshot (the latest entry of every event it follows) or
//! with a replay from storage of everything committed after a given id, and then goes live. Both
//! starts take a receiver on the live channel at the same moment they fix the id they bring the
//! subscriber up to, under the state lock, so the seam between start and live has no gap and no
//! duplicate.
//!
//! Slow subscribers: the live channel is a ring shared by all subscribers, bounded in entries,
//! whose slots point to entries that a window keeps in memory, bounded in entries and bytes (see
//! `State::new`). A subscriber that falls further behind than either holds is not waited for:
//! it finds its next slot overwritten (it lagged the ring) or its entry gone (it lagged the
//! window). When it next reads, it is brought to the current state instead: it receives the
//! latest entry of each event it follows that is newer than the last entry it received, in id
//! order, and then goes on live. It may so skip intermediate versions of an event (they stay in
//! the audit log), but it ends with the latest version of every event it follows and never
//! receives a version of an event older than one it already has. A subscriber that keeps up
//! misses nothing, whatever the window's budget: the window keeps every entry at least until the
//! commit after it has been sent (see `Window::new`).

use std::collections::VecDeque;
use std::sync::{Arc, Weak};

use tokio::sync::broadcast::{self, error::RecvError, error::TryRecvError};

use crate::Entry;
use crate::filter::Filter;
use crate::options::SubscribeOptions;
use crate::shared::Shared;
use crate::state::{Joined, Start};

/// How many versions a replay reads from storage at a time; this bounds the memory a replaying
/// subscriber holds.
const REPLAY_PAGE: usize = 512;

/// A subscriber's stream of entries, in commit order; see the module docs for the guarantees.
///
/// Dropping it unsubscribes.
pub struct Subscription {
    shared: Arc<Shared>,
    filter: Filter,
    /// Entries to deliver before anything else: a snapshot or a page of replay.
    queue: VecDeque<Arc<Entry>>,
    /// While replaying: the last id replayed so far and the id the replay ends at.
    replay: Option<(u64, u64)>,
    /// `None` once the broker is closed.
    receiver: Option<broadcast::Receiver<Weak<Entry>>>,
    /// Live entries up to this id were delivered by the snapshot or the replay already.
    caught_up_to: u64,
    /// The id of the last entry delivered; 0 before the first.
    last_delivered: u64,
    resumed: bool,
    /// When it was asked to resume but versions after that point were pruned: the greatest id
    /// pruned among the events it follows.
    pruned: Option<u64>,
}

impl Subscription {
    pub(crate) fn new(shared: Arc<Shared>, options: SubscribeOptions) -> Subscription {
        shared.metrics.subscribers.add();
        let filter = options.filter;
        let state = &shared.state;
        // Versions after the resume point that were pruned cannot be replayed: such a
        // subscriber starts over from a snapshot, and is told why.
        let pruned = options.resume_after.and_then(|after| shared.horizons.above(after, &filter));
        let (joined, replay, after) = match options.resume_after.filter(|_| pruned.is_none()) {
            Some(after) => {
                let joined = state.join(Start::LiveOnly, &filter);
                if after <= joined.last_id {
                    let replay = (after < joined.last_id).then_some((after, joined.last_id));
                    (joined, replay, Some(after))
                } else {
                    (state.join(Start::Snapshot { after: 0 }, &filter), None, None)
                }
            }
            None => (state.join(Start::Snapshot { after: 0 }, &filter), None, None),
        };
        let Joined { snapshot, last_id, receiver } = joined;
        Subscription {
            filter,
            queue: snapshot,
            replay,
            receiver,
            caught_up_to: last_id,
            last_delivered: after.unwrap_or(0),
            resumed: after.is_some(),
            pruned,
            shared,
        }
    }

    /// Whether this subscription started with a replay after the id it was asked to resume
    /// after; `false` when it started with a snapshot.
    pub fn resumed(&self) -> bool {
        self.resumed
    }

    /// When this subscription was asked to resume, but started with a snapshot because versions
    /// it would have replayed were pruned by the retention rules: the greatest id pruned among
    /// the events it follows. `None` otherwise.
    pub fn pruned_through(&self) -> Option<u64> {
        self.pruned
    }

    /// The id of the last entry this subscription delivered; 0 before the first.
    pub fn last_delivered(&self) -> u64 {
        self.last_delivered
    }

    /// The next entry, waiting for one to be committed if need be.
    ///
    /// Returns `None` once the broker is closed and everything committed before has been
    /// delivered. Cancel-safe: dropping the future loses nothing.
    pub async fn next(&mut self) -> Option<Arc<Entry>> {
        loop {
            if let Some(entry) = self.pop_queued() {
                return Some(entry);
            }
            if let Some((after, until)) = self.replay {
                self.replay_page(after, until).await;
                continue;
            }
            let result = self.receiver.as_mut()?.recv().await;
            match result {
                Ok(entry) => {
                    if let Some(entry) = self.accept_live(entry) {
                        return Some(entry);
                    }
                }
                Err(RecvError::Lagged(missed)) => self.catch_up(Behind::Ring(missed)),
                Err(RecvError::Closed) => self.receiver = None,
            }
        }
    }

    /// The next entry if one is ready now, without waiting; lets a transport put several entries
    /// into one write.
    pub fn try_next(&mut self) -> Option<Arc<Entry>> {
        loop {
            if let Some(entry) = self.pop_queued() {
                return Some(entry);
            }
            if self.replay.is_some() {
                return None;
            }
            match self.receiver.as_mut()?.try_recv() {
                Ok(entry) => {
                    if let Some(entry) = self.accept_live(entry) {
                        return Some(entry);
                    }
                }
                Err(TryRecvError::Lagged(missed)) => self.catch_up(Behind::Ring(missed)),
                Err(TryRecvError::Closed) => self.receiver = None,
                Err(TryRecvError::Empty) => return None,
            }
        }
    }

    fn pop_queued(&mut self) -> Option<Arc<Entry>> {
        let entry = self.queue.pop_front()?;
        self.last_delivered = entry.id();
        Some(entry)
    }

    fn follows(&self, entry: &Entry) -> bool {
        self.filter.matches(entry.event())
    }

    /// The entry of a live slot, if this subscription is to deliver it.
    ///
    /// A slot whose entry the window let go of means that this subscriber fell further behind
    /// than the window: it catches up instead, and the entries that brings are queued.
    fn accept_live(&mut self, slot: Weak<Entry>) -> Option<Arc<Entry>> {
        let Some(entry) = slot.upgrade() else {
            self.catch_up(Behind::Window);
            return None;
        };
        if entry.id() <= self.caught_up_to || !self.follows(&entry) {
            return None;
        }
        self.last_delivered = entry.id();
        Some(entry)
    }

    /// Reads the next page of a replay into the queue.
    async fn replay_page(&mut self, after: u64, until: u64) {
        match self.shared.storage.since(after, REPLAY_PAGE).await {
            Ok(page) => {
                let last = page.last().map_or(until, |version| version.id.min(until));
                self.replay = (last < until).then_some((last, until));
                let page = page.into_iter().filter(|version| version.id <= until);
                let entries = page.map(|version| Arc::new(Entry::new(version)));
                let followed: Vec<_> = entries.filter(|entry| self.follows(entry)).collect();
                self.queue.extend(followed);
            }
            Err(error) => {
                // The subscriber cannot get every version, but it can still get the latest
                // version of every event, which is all the slow-consumer policy promises.
                tracing::warn!(%error, after, "replay failed; catching up from the latest versions");
                self.shared.health.failed(&error);
                self.replay = None;
                self.catch_up(Behind::Replay);
            }
        }
    }

    /// Brings a subscriber that fell behind to the current state; see the module docs.
    fn catch_up(&mut self, behind: Behind) {
        let last_delivered = self.last_delivered;
        match behind {
            Behind::Ring(missed) => {
                tracing::debug!(missed, last_delivered, "subscriber lagged the live ring");
            }
            Behind::Window => tracing::debug!(last_delivered, "subscriber lagged the live window"),
            // The failure was logged as a warning where it happened.
            Behind::Replay => {}
        }
        self.shared.metrics.catch_ups.increment(1);
        let Joined { snapshot, last_id, receiver } =
            self.shared.state.join(Start::Snapshot { after: self.last_delivered }, &self.filter);
        self.queue = snapshot;
        self.caught_up_to = last_id;
        self.receiver = receiver;
    }
}

/// Why a subscriber catches up from the latest versions.
enum Behind {
    /// It fell this many entries behind the live ring.
    Ring(u64),
    /// The window let go of an entry it had yet to read.
    Window,
    /// Its replay from storage failed.
    Replay,
}

impl Drop for Subscription {
    fn drop(&mut self) {
        self.shared.metrics.subscribers.remove();
        // Dropping the receiver marks its unread slots read; what nobody else has left to read
        // is then freed now rather than at the next commit.
        if self.receiver.take().is_some() {
            self.shared.state.release_read();
        }
    }
}
