//! The blocking work of each storage operation: one redb transaction each. `store.rs` runs these
//! on tokio's blocking pool, never on an async thread, and catches the panics redb raises on
//! damaged data.

use std::borrow::Cow;
use std::ops::Bound;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use broker_storage::{NewVersion, StorageError, Version};
use redb::{Database, Durability, ReadableDatabase, ReadableTable, Table};

use crate::error::{Fault, from_redb, from_redb_write};
use crate::schema::{self, BY_EVENT, KEY_TIMES, KEYS, LATEST, VERSIONS};
use crate::space::Space;

/// What an append returns: the version for each new version of the batch, in batch order, and
/// where the log ended before it.
#[derive(Debug)]
pub(crate) struct Appended {
    /// One per new version, in batch order: the version it became, or the version stored under
    /// its idempotency key.
    pub(crate) versions: Vec<Version>,
    /// The last id in `versions` before the batch: every version the batch stored has a greater
    /// one, and every version that came back under a key a smaller or equal one, unless the key
    /// was used earlier in the same batch.
    pub(crate) after: u64,
}

impl Appended {
    /// The versions the batch stored, each once, in id order: what the tails have not seen yet.
    pub(crate) fn stored(&self) -> Cow<'_, [Version]> {
        // Stored versions have increasing ids above `after`; a version returned under a key has
        // an older id, or repeats the id of the version just stored under that key.
        let mut last = self.after;
        let fresh = |version: &Version, last: &mut u64| {
            let fresh = version.id > *last;
            *last = (*last).max(version.id);
            fresh
        };
        if self.versions.iter().all(|version| fresh(version, &mut last)) {
            return Cow::Borrowed(&self.versions);
        }
        let mut last = self.after;
        Cow::Owned(self.versions.iter().filter(|v| fresh(v, &mut last)).cloned().collect())
    }
}

/// Expired idempotency keys deleted per append, beyond twice the keys the append stores. Twice
/// as many as come in, so that the expired ones go faster than new ones arrive; a few more, so
/// that a store no longer given keys still empties its tables.
const PRUNE_EXTRA: usize = 32;

/// Stores `batch` in one write transaction, committed with [`Durability::Immediate`], once `space`
/// has found enough free space for it. A new version whose idempotency key was stored less than
/// `window` before its timestamp is not stored: the version stored under the key comes back.
///
/// Ids continue from the last key of `versions`, read inside the write transaction: redb runs one
/// write transaction at a time, so two batches never read the same last id, and a batch that fails
/// to commit leaves nothing behind to skip or reuse.
pub(crate) fn append(
    db: &Database,
    space: &Space,
    window: Duration,
    batch: Vec<NewVersion>,
) -> Result<Appended, Fault> {
    // Before the transaction, so that a refused batch writes nothing at all.
    space.check()?;
    let horizon = horizon(&batch);
    let mut txn = db.begin_write().map_err(from_redb_write)?;
    txn.set_durability(Durability::Immediate).map_err(from_redb_write)?;
    let appended = {
        let mut versions = txn.open_table(VERSIONS).map_err(from_redb_write)?;
        let mut by_event = txn.open_table(BY_EVENT).map_err(from_redb_write)?;
        let mut latest = txn.open_table(LATEST).map_err(from_redb_write)?;
        let mut keys = txn.open_table(KEYS).map_err(from_redb_write)?;
        let mut key_times = txn.open_table(KEY_TIMES).map_err(from_redb_write)?;
        let after = versions.last().map_err(from_redb_write)?.map_or(0, |(id, _)| id.value());
        let mut id = after;
        let mut keyed = 0;
        let mut appended = Vec::with_capacity(batch.len());
        for new in batch {
            if let Some(key) = new.idempotency_key.as_deref() {
                let previous = keys.get(key).map_err(from_redb_write)?.map(|row| row.value());
                if let Some((stored_id, stored_at)) = previous {
                    if within(window, stored_at, new.timestamp) {
                        appended.push(lookup(&versions, stored_id, "keys", from_redb_write)?);
                        continue;
                    }
                    // Expired: the key is free for this version.
                    key_times.remove((stored_at, key)).map_err(from_redb_write)?;
                }
            }
            id = id
                .checked_add(1)
                .ok_or_else(|| StorageError::backend("version ids are exhausted"))?;
            let event = new.event.as_str();
            versions
                .insert(id, (event, new.timestamp, new.data.as_str()))
                .map_err(from_redb_write)?;
            by_event.insert((event, id), ()).map_err(from_redb_write)?;
            latest.insert(event, id).map_err(from_redb_write)?;
            if let Some(key) = new.idempotency_key.as_deref() {
                keys.insert(key, (id, new.timestamp)).map_err(from_redb_write)?;
                key_times.insert((new.timestamp, key), ()).map_err(from_redb_write)?;
                keyed += 1;
            }
            appended.push(new.with_id(id));
        }
        if let Some(horizon) = horizon {
            prune(&mut keys, &mut key_times, window, horizon, 2 * keyed + PRUNE_EXTRA)?;
        }
        Appended { versions: appended, after }
    };
    // Dropping `txn` on any error above aborts it, so a failed batch leaves no trace.
    txn.commit().map_err(from_redb_write)?;
    Ok(appended)
}

/// Whether a key stored at `stored_at` still holds for a version stamped `timestamp`: the same
/// rule as [`MemoryStorage`](broker_storage::MemoryStorage)'s, so that every backend agrees.
fn within(window: Duration, stored_at: u64, timestamp: u64) -> bool {
    u128::from(timestamp.saturating_sub(stored_at)) < window.as_millis()
}

/// The time against which this batch prunes expired keys: its newest timestamp, but never past
/// the clock, so that one version stamped far in the future does not expire every key at once.
/// `None` for an empty batch.
fn horizon(batch: &[NewVersion]) -> Option<u64> {
    let newest = batch.iter().map(|new| new.timestamp).max()?;
    let now = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |since| u64::try_from(since.as_millis()).unwrap_or(u64::MAX));
    Some(newest.min(now))
}

/// Deletes up to `limit` keys that expired by `horizon`, oldest first: a range read at the start
/// of `key_times`, which stops at the first key still within the window.
fn prune(
    keys: &mut Table<'_, &str, (u64, u64)>,
    key_times: &mut Table<'_, (u64, &str), ()>,
    window: Duration,
    horizon: u64,
    limit: usize,
) -> Result<(), Fault> {
    let mut expired = Vec::new();
    for entry in key_times.iter().map_err(from_redb_write)?.take(limit) {
        let (key, _) = entry.map_err(from_redb_write)?;
        let (stored_at, key) = key.value();
        if within(window, stored_at, horizon) {
            break;
        }
        expired.push((stored_at, key.to_owned()));
    }
    for (stored_at, key) in &expired {
        key_times.remove((*stored_at, key.as_str())).map_err(from_redb_write)?;
        let current = keys.get(key.as_str()).map_err(from_redb_write)?.map(|row| row.value());
        // `keys` names this use of the key, unless the files disagree; then the newer row stays.
        if current.is_some_and(|(_, at)| at == *stored_at) {
            keys.remove(key.as_str()).map_err(from_redb_write)?;
        }
    }
    Ok(())
}

/// The newest version of every event, in id order: one `latest` row and one `versions` lookup per
/// event.
pub(crate) fn latest(db: &Database) -> Result<Vec<Version>, Fault> {
    let txn = db.begin_read().map_err(from_redb)?;
    let latest = txn.open_table(LATEST).map_err(from_redb)?;
    let versions = txn.open_table(VERSIONS).map_err(from_redb)?;
    let mut found = Vec::new();
    for entry in latest.iter().map_err(from_redb)? {
        let (event, id) = entry.map_err(from_redb)?;
        let version = lookup(&versions, id.value(), "latest", from_redb)?;
        if version.event != event.value() {
            return Err(StorageError::Corrupt(format!(
                "latest names version {} for event {:?}, which belongs to {:?}",
                version.id,
                event.value(),
                version.event
            ))
            .into());
        }
        found.push(version);
    }
    found.sort_unstable_by_key(|version| version.id);
    Ok(found)
}

/// Up to `limit` versions of exactly `event` with ids above `after`: a range scan of `by_event`
/// that starts and ends inside `event`'s own keys.
pub(crate) fn history(
    db: &Database,
    event: &str,
    after: u64,
    limit: usize,
) -> Result<Vec<Version>, Fault> {
    if limit == 0 || after == u64::MAX {
        return Ok(Vec::new());
    }
    let txn = db.begin_read().map_err(from_redb)?;
    let by_event = txn.open_table(BY_EVENT).map_err(from_redb)?;
    let versions = txn.open_table(VERSIONS).map_err(from_redb)?;
    let range = (Bound::Excluded((event, after)), Bound::Included((event, u64::MAX)));
    let mut found = Vec::new();
    for entry in by_event.range(range).map_err(from_redb)?.take(limit) {
        let (key, _) = entry.map_err(from_redb)?;
        let (_, id) = key.value();
        found.push(lookup(&versions, id, "by_event", from_redb)?);
    }
    Ok(found)
}

/// Up to `limit` versions with ids above `after`, in id order: a range scan of `versions`.
pub(crate) fn since(db: &Database, after: u64, limit: usize) -> Result<Vec<Version>, Fault> {
    let Some(first) = after.checked_add(1) else { return Ok(Vec::new()) };
    let txn = db.begin_read().map_err(from_redb)?;
    let versions = txn.open_table(VERSIONS).map_err(from_redb)?;
    let mut found = Vec::new();
    for entry in versions.range(first..).map_err(from_redb)?.take(limit) {
        let (id, row) = entry.map_err(from_redb)?;
        found.push(schema::version(id.value(), row.value()));
    }
    Ok(found)
}

/// The version `id`, which the index `table` says exists; `map` maps redb's errors as the
/// transaction reading it requires.
fn lookup(
    versions: &impl ReadableTable<u64, (&'static str, u64, &'static str)>,
    id: u64,
    table: &str,
    map: fn(redb::StorageError) -> Fault,
) -> Result<Version, Fault> {
    match versions.get(id).map_err(map)? {
        Some(row) => Ok(schema::version(id, row.value())),
        None => {
            Err(StorageError::Corrupt(format!("{table} names version {id}, which is missing"))
                .into())
        }
    }
}
