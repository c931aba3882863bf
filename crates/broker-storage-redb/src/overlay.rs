//! Write-behind: the versions acknowledged but not yet in redb's tables.
//!
//! An append is durable once its journal record is synced (`journal.rs`). Writing its rows into
//! redb's B-trees and committing them is what the append used to wait for next; it now goes to
//! this overlay instead, and a later **apply** round (`ops::apply`) writes many batches' rows in
//! one redb transaction, off the append's path: the commit's fixed cost is paid once per round,
//! not once per batch, and the B-tree pages a round touches are written once.
//!
//! Every read joins what redb holds with what the overlay holds (`join`), so a version is visible
//! from the moment it is acknowledged.
//!
//! # Invariants
//!
//! - The overlay holds a suffix of the log: every version with an id above the last one applied
//!   to redb, in id order. A round applies a prefix of it, then removes that prefix, so redb and
//!   the overlay together always hold every acknowledged version.
//! - Every version in the overlay is in a record of the journal's current or previous
//!   generation: a checkpoint applies the overlay up to the end of the generation it settles
//!   before its durable commit, and the journal drops that generation only after the commit.
//! - A read copies from the overlay *before* it opens its redb read transaction. A version that a
//!   round applies in between is then in both, and read once (`join` keeps one); a version
//!   missing from the copy was appended after it, and is newer than everything the copy holds.

use std::collections::{HashMap, VecDeque};
use std::sync::{Arc, Mutex, MutexGuard, PoisonError};

use broker_storage::Version;

/// The versions, or bytes of events and data, waiting in the overlay that start a round, in a
/// task of its own. A round's transaction costs about as much again as its rows (opening the
/// tables, the pages of each B-tree's path it rewrites): rounds of a thousand versions pay it a
/// quarter as often as rounds of 256, and are still short enough not to be felt in the latency
/// of the appends beside them.
pub(crate) const ROUND_AT: (usize, usize) = (1024, 1024 * 1024);
/// The most versions one round writes into redb.
pub(crate) const ROUND_MAX: usize = 8 * 1024;
/// Past this many versions, or bytes, waiting in the overlay, an append applies them itself
/// before it goes on: a store whose rounds fall behind holds appends back rather than grow.
pub(crate) const FULL_AT: (usize, usize) = (16 * 1024, 16 * 1024 * 1024);

/// A batch's versions as they wait in the overlay, with the idempotency key of each.
#[derive(Debug)]
pub(crate) struct Pending {
    /// Shared with the tails, to which the append handed them.
    pub(crate) versions: Arc<[Version]>,
    pub(crate) keys: Vec<Option<String>>,
}

/// The versions acknowledged but not applied to redb, and the round that applies them.
pub(crate) struct Overlay {
    state: Mutex<State>,
    /// Held through a whole round, so that rounds apply one after the other, each a prefix of
    /// what the overlay holds.
    round: Mutex<()>,
}

#[derive(Default)]
struct State {
    /// The batches, in id order.
    batches: VecDeque<Arc<Pending>>,
    /// The versions they hold.
    len: usize,
    /// The bytes of their events and data.
    bytes: usize,
    /// The id of each idempotency key among them.
    keys: HashMap<String, u64>,
    /// The newest id of each event among them.
    latest: HashMap<Arc<str>, u64>,
    /// The last id given to a version: the overlay's last, or redb's when the overlay is empty.
    last_id: u64,
    /// Whether an apply task is scheduled or running.
    scheduled: bool,
}

impl Overlay {
    /// An empty overlay over a database whose last id is `last_id`.
    pub(crate) fn new(last_id: u64) -> Overlay {
        Overlay { state: Mutex::new(State { last_id, ..State::default() }), round: Mutex::new(()) }
    }

    /// The last id given to a version: the next append continues after it.
    pub(crate) fn last_id(&self) -> u64 {
        self.lock().last_id
    }

    /// The versions waiting to be applied.
    #[cfg(test)]
    pub(crate) fn len(&self) -> usize {
        self.lock().len
    }

    /// The id of the first version waiting to be applied, if any.
    pub(crate) fn first_id(&self) -> Option<u64> {
        let state = self.lock();
        state.batches.front().and_then(|batch| batch.versions.first()).map(|version| version.id)
    }

    /// Whether the overlay holds so much that an append must apply it before it goes on.
    pub(crate) fn full(&self) -> bool {
        self.lock().at_least(FULL_AT)
    }

    /// Adds the batch `pending`, whose record is synced: its versions are acknowledged, and
    /// visible to every read from now on.
    pub(crate) fn push(&self, pending: Pending) {
        if pending.versions.is_empty() {
            return;
        }
        let mut state = self.lock();
        for (version, key) in pending.versions.iter().zip(&pending.keys) {
            if let Some(key) = key {
                state.keys.insert(key.clone(), version.id);
            }
            // An event already waiting is updated in place: no key to copy.
            match state.latest.get_mut(&*version.event) {
                Some(id) => *id = version.id,
                None => {
                    state.latest.insert(version.event.clone(), version.id);
                }
            }
        }
        if let Some(last) = pending.versions.last() {
            state.last_id = last.id;
        }
        state.len += pending.versions.len();
        state.bytes += size(&pending);
        state.batches.push_back(Arc::new(pending));
    }

    /// The version the overlay holds that was stored under idempotency `key`.
    pub(crate) fn keyed(&self, key: &str) -> Option<Version> {
        let state = self.lock();
        let &id = state.keys.get(key)?;
        find(&state.batches, id).cloned()
    }

    /// Marks an apply task as scheduled when none is and the overlay holds enough for a round
    /// ([`ROUND_AT`]): whether the caller must start one.
    pub(crate) fn schedule(&self) -> bool {
        let mut state = self.lock();
        let start = !state.scheduled && state.at_least(ROUND_AT);
        state.scheduled |= start;
        start
    }

    /// Ends the apply task, unless the overlay still holds enough for a round and `go_on`:
    /// whether it ended. Checked under the same lock as [`schedule`](Overlay::schedule), so that
    /// no batch is left waiting for a task that just ended.
    pub(crate) fn unschedule(&self, go_on: bool) -> bool {
        let mut state = self.lock();
        let done = !go_on || !state.at_least(ROUND_AT);
        if done {
            state.scheduled = false;
        }
        done
    }

    /// Runs one round: `apply` writes up to `max` versions from the front of the overlay into
    /// redb, and they leave the overlay once it returns `Ok`. Returns how many were applied.
    pub(crate) fn apply_round<E>(
        &self,
        max: usize,
        apply: impl FnOnce(&[Arc<Pending>]) -> Result<(), E>,
    ) -> Result<usize, E> {
        let _round = self.round.lock().unwrap_or_else(PoisonError::into_inner);
        let batches: Vec<Arc<Pending>> = {
            let state = self.lock();
            let mut len = 0;
            state
                .batches
                .iter()
                .take_while(|batch| {
                    let take = len == 0 || len + batch.versions.len() <= max;
                    len += batch.versions.len();
                    take
                })
                .cloned()
                .collect()
        };
        if batches.is_empty() {
            return Ok(0);
        }
        apply(&batches)?;
        let mut state = self.lock();
        let mut applied = 0;
        for _ in 0..batches.len() {
            let Some(batch) = state.batches.pop_front() else { break };
            applied += batch.versions.len();
            state.bytes -= size(&batch);
            for (version, key) in batch.versions.iter().zip(&batch.keys) {
                if let Some(key) = key
                    && state.keys.get(key) == Some(&version.id)
                {
                    state.keys.remove(key);
                }
                if state.latest.get(&version.event) == Some(&version.id) {
                    state.latest.remove(&version.event);
                }
            }
        }
        state.len -= applied;
        Ok(applied)
    }

    /// Forgets every version, once a reopened store has stored them all (the journal held them),
    /// and continues after `last_id`.
    pub(crate) fn reset(&self, last_id: u64) {
        let mut state = self.lock();
        let scheduled = state.scheduled;
        *state = State { last_id, scheduled, ..State::default() };
    }

    /// Copies with `copy` what a read needs from the overlay, and opens the read transaction
    /// with `open` before any round can remove a version from the overlay or any append add one:
    /// the copy and the transaction then hold the log as of one moment between them.
    pub(crate) fn read<C, T, E>(
        &self,
        copy: impl FnOnce(View<'_>) -> C,
        open: impl FnOnce() -> Result<T, E>,
    ) -> Result<(C, T), E> {
        let state = self.lock();
        let copied = copy(View(&state));
        let opened = open()?;
        Ok((copied, opened))
    }

    fn lock(&self) -> MutexGuard<'_, State> {
        self.state.lock().unwrap_or_else(PoisonError::into_inner)
    }
}

impl State {
    /// Whether the overlay holds at least `versions` versions or `bytes` bytes.
    fn at_least(&self, (versions, bytes): (usize, usize)) -> bool {
        self.len > 0 && (self.len >= versions || self.bytes >= bytes)
    }
}

/// The bytes of the events and data of `batch`.
fn size(batch: &Pending) -> usize {
    batch.versions.iter().map(|version| version.event.len() + version.data.len()).sum()
}

/// The overlay as one read sees it.
pub(crate) struct View<'a>(&'a State);

impl View<'_> {
    /// Up to `limit` versions with ids above `after` (and of `event`, if given), in id order.
    pub(crate) fn since(self, event: Option<&str>, after: u64, limit: usize) -> Vec<Version> {
        let state = self.0;
        state
            .batches
            .iter()
            .filter(|batch| batch.versions.last().is_some_and(|last| last.id > after))
            .flat_map(|batch| batch.versions.iter())
            .filter(|version| version.id > after && event.is_none_or(|e| *version.event == *e))
            .take(limit)
            .cloned()
            .collect()
    }

    /// The newest version with an id up to `at` of every event the overlay holds one of.
    pub(crate) fn latest_at(self, at: u64) -> Vec<Version> {
        let state = self.0;
        if state.batches.back().and_then(|batch| batch.versions.last()).is_some_and(|v| v.id <= at)
        {
            // Everything is up to `at`: the newest of each event is known.
            return state
                .latest
                .values()
                .filter_map(|&id| find(&state.batches, id).cloned())
                .collect();
        }
        let mut newest: HashMap<&str, &Version> = HashMap::new();
        for version in state.batches.iter().flat_map(|batch| batch.versions.iter()) {
            if version.id > at {
                break;
            }
            newest.insert(&version.event, version);
        }
        newest.into_values().cloned().collect()
    }
}

/// The version `id` among `batches`.
fn find(batches: &VecDeque<Arc<Pending>>, id: u64) -> Option<&Version> {
    let index = batches.partition_point(|batch| batch.versions.last().is_some_and(|v| v.id < id));
    let batch = batches.get(index)?;
    let at = batch.versions.binary_search_by_key(&id, |version| version.id).ok()?;
    batch.versions.get(at)
}

/// A page of versions in id order: `stored`, read from redb with the same `limit` after
/// `copied` was copied from the overlay, then what of `copied` comes after it. When redb filled
/// the page, the overlay's versions all come after it.
pub(crate) fn join(mut stored: Vec<Version>, copied: Vec<Version>, limit: usize) -> Vec<Version> {
    if stored.len() >= limit {
        return stored;
    }
    let last = stored.last().map_or(0, |version| version.id);
    let room = limit - stored.len();
    stored.extend(copied.into_iter().filter(|version| version.id > last).take(room));
    stored
}

/// The newest version of each event, in id order, from `stored`, read from redb after `copied`
/// was copied from the overlay.
pub(crate) fn join_latest(stored: Vec<Version>, copied: Vec<Version>) -> Vec<Version> {
    if copied.is_empty() {
        return stored;
    }
    let mut newest: HashMap<Arc<str>, Version> = HashMap::with_capacity(stored.len());
    for version in stored.into_iter().chain(copied) {
        match newest.get(&version.event) {
            Some(kept) if kept.id >= version.id => {}
            _ => {
                newest.insert(version.event.clone(), version);
            }
        }
    }
    let mut found: Vec<Version> = newest.into_values().collect();
    found.sort_unstable_by_key(|version| version.id);
    found
}
