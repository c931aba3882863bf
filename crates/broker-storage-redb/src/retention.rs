//! Retention: removing the oldest versions of one event, in short write transactions, reading the
//! horizons that leaves, and reading the state of the log at a past id, which must skip what was
//! removed. `store.rs` runs these on tokio's blocking pool.
//!
//! A prune commits without durability, like an append: its removals and its horizon are in one
//! transaction, so a crash keeps both or undoes both, and the journal's next checkpoint makes them
//! durable. The journal never needs to know: it replays only versions above the file's last id,
//! and a prune never removes that one (it is the latest of its event). The space the removed rows
//! took is reused by later commits once a durable commit (a checkpoint) has followed the prune.

use std::time::{Duration, SystemTime, UNIX_EPOCH};

use broker_storage::{Horizon, Pruned, Retention, StorageError, Version};
use redb::{Database, Durability, ReadTransaction, ReadableDatabase, ReadableTable};

use crate::blocks::{self, BLOCKS, Reader};
use crate::counts;
use crate::error::{Fault, from_redb, from_redb_write};
use crate::index;
use crate::schema::{COUNTS, EVENT_IDS, HORIZONS, LATEST};

/// The most versions one write transaction removes. A prune of more takes several, each of which
/// an append may follow, so that an append never waits long behind a large prune. Each removal
/// reads its version and rewrites its block: a transaction of this many takes a few
/// milliseconds.
const PER_TRANSACTION: usize = 1024;

/// Removes up to `limit` of the oldest versions of `event` that `retention` lets go of, in
/// transactions of at most [`PER_TRANSACTION`] removals, and never its latest version nor one
/// stamped less than `window` before the clock.
///
/// After an error, the transactions that committed stay: their horizon covers what they removed.
pub(crate) fn prune(
    db: &Database,
    window: Duration,
    event: &str,
    retention: Retention,
    limit: usize,
) -> Result<Pruned, Fault> {
    if retention.keeps_everything() {
        return Ok(Pruned::default());
    }
    let mut removed = 0;
    loop {
        let bound = (limit - removed).min(PER_TRANSACTION);
        let step = prune_once(db, window, event, retention, bound)?;
        removed += step.removed;
        // Another transaction only when this one stopped at its own bound, not at a version it
        // keeps (by the retention, or for the idempotency window).
        if !step.more || step.removed < bound || removed == limit {
            return Ok(Pruned { removed, more: step.more });
        }
    }
}

/// One transaction of [`prune`]: walks the event's ids oldest first, stops at the first version
/// it must keep, or after `limit`, and removes those before it. Reads at most `limit + 1` ids,
/// whatever the size of the event.
fn prune_once(
    db: &Database,
    window: Duration,
    event: &str,
    retention: Retention,
    limit: usize,
) -> Result<Pruned, Fault> {
    let young = window_start(window);
    let mut txn = db.begin_write().map_err(from_redb_write)?;
    txn.set_durability(Durability::None).map_err(from_redb_write)?;
    let pruned = {
        let latest = txn.open_table(LATEST).map_err(from_redb_write)?;
        let newest = latest.get(event).map_err(from_redb_write)?.map(|row| row.value());
        // An event never stored: nothing to remove, nothing to commit.
        let Some(newest) = newest else { return Ok(Pruned::default()) };
        let mut event_ids = txn.open_table(EVENT_IDS).map_err(from_redb_write)?;
        let mut log = txn.open_table(BLOCKS).map_err(from_redb_write)?;
        let mut counts = txn.open_table(COUNTS).map_err(from_redb_write)?;
        let count = counts::get(&counts, &event_ids, event)?;

        let mut removed: Vec<u64> = Vec::new();
        let mut more = false;
        let oldest = index::after(&event_ids, event, 0, limit.saturating_add(1), from_redb_write)?;
        let mut versions = Reader::new(&log, from_redb_write);
        for id in oldest {
            if id >= newest {
                break;
            }
            let version = versions.lookup(id, "event_ids")?;
            let (owner, timestamp) = (&*version.event, version.timestamp);
            if owner != event {
                return Err(corrupt(format!(
                    "event_ids files version {id} under {event:?}, but it belongs to {owner:?}"
                )));
            }
            let newer = count.saturating_sub(removed.len() as u64 + 1);
            if !retention.releases(newer, timestamp) {
                break;
            }
            // Past the limit, or kept for the idempotency window: left for a later call.
            if removed.len() == limit || timestamp >= young {
                more = true;
                break;
            }
            removed.push(id);
        }
        drop(versions);
        let Some(&through) = removed.last() else { return Ok(Pruned { removed: 0, more }) };
        blocks::remove(&mut log, &removed)?;
        index::remove_through(&mut event_ids, event, through)?;
        counts::set(&mut counts, event, count - removed.len() as u64, newest)?;
        let mut horizons = txn.open_table(HORIZONS).map_err(from_redb_write)?;
        horizons.insert(event, through).map_err(from_redb_write)?;
        Pruned { removed: removed.len(), more }
    };
    txn.commit().map_err(from_redb_write)?;
    Ok(pruned)
}

/// Every pruned event with the greatest id pruned of it: the `horizons` table.
pub(crate) fn horizons(db: &Database) -> Result<Vec<Horizon>, Fault> {
    let txn = db.begin_read().map_err(from_redb)?;
    let horizons = txn.open_table(HORIZONS).map_err(from_redb)?;
    let mut found = Vec::new();
    for entry in horizons.iter().map_err(from_redb)? {
        let (event, through) = entry.map_err(from_redb)?;
        found.push(Horizon { event: event.value().to_owned(), pruned_through: through.value() });
    }
    Ok(found)
}

/// The newest version with an id up to `at` of every event that has one, in id order: per event,
/// its `latest` row, or its last id up to `at` in `event_ids` when that is older, and one
/// block read.
pub(crate) fn latest_at(txn: &ReadTransaction, at: u64) -> Result<Vec<Version>, Fault> {
    let latest = txn.open_table(LATEST).map_err(from_redb)?;
    let event_ids = txn.open_table(EVENT_IDS).map_err(from_redb)?;
    let log = txn.open_table(BLOCKS).map_err(from_redb)?;
    let mut versions = Reader::new(&log, from_redb);
    let mut found = Vec::new();
    for entry in latest.iter().map_err(from_redb)? {
        let (event, newest) = entry.map_err(from_redb)?;
        let (event, newest) = (event.value(), newest.value());
        let (id, table) = if newest <= at {
            (newest, "latest")
        } else {
            match index::last_up_to(&event_ids, event, at, from_redb)? {
                Some(id) => (id, "event_ids"),
                // No version of the event up to `at` is stored: it came later, or they were pruned.
                None => continue,
            }
        };
        found.push(versions.lookup(id, table)?);
    }
    found.sort_unstable_by_key(|version| version.id);
    Ok(found)
}

/// The oldest timestamp that is within `window` of the clock now: a prune keeps every version
/// stamped at or after it, so that a retry still finds it.
pub(crate) fn window_start(window: Duration) -> u64 {
    let now = SystemTime::now().duration_since(UNIX_EPOCH).unwrap_or_default();
    let start = now.saturating_sub(window);
    u64::try_from(start.as_millis()).unwrap_or(u64::MAX)
}

fn corrupt(message: String) -> Fault {
    StorageError::Corrupt(message).into()
}
