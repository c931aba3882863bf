//! The SQL of pruning and of reading the past: [`latest_at`], [`prune`] and [`horizons`], each
//! run by [`SqliteStorage`](super::SqliteStorage) with its connection on the blocking pool.
//!
//! A prune deletes a prefix of one event's versions, found through the `(event, id)` index, and
//! records the event's horizon in the `horizons` table in the same transaction. SQLite puts the
//! pages it frees on its free list, and later inserts take them from there.

use std::time::{Duration, SystemTime, UNIX_EPOCH};

use broker_storage::{Horizon, Pruned, Retention, Version};
use rusqlite::{Connection, OptionalExtension, params};

use super::{sql_int, version};

/// The newest version with an id up to `at` of every event that has one, in id order: one
/// index lookup per event (the greatest id of the event up to `at`), never a scan of the log.
pub(super) fn latest_at(connection: &Connection, at: u64) -> rusqlite::Result<Vec<Version>> {
    let mut statement = connection.prepare_cached(
        "SELECT v.id, v.event, v.timestamp, v.data FROM latest l
         JOIN versions v ON v.id =
            (SELECT MAX(id) FROM versions WHERE event = l.event AND id <= ?1)
         ORDER BY v.id",
    )?;
    statement.query_map(params![sql_int(at)], version)?.collect()
}

/// Deletes up to `limit` of the oldest versions of `event` that `retention` lets go of, never its
/// latest version nor one stamped less than `window` before the clock, and moves its horizon to
/// the greatest id deleted, in one transaction.
pub(super) fn prune(
    connection: &mut Connection,
    event: &str,
    retention: Retention,
    limit: usize,
    window: Duration,
) -> rusqlite::Result<Pruned> {
    let young = window_start(window);
    let transaction = connection.transaction()?;
    let newest: Option<i64> = transaction
        .query_row("SELECT id FROM latest WHERE event = ?1", params![event], |row| row.get(0))
        .optional()?;
    let Some(newest) = newest else { return Ok(Pruned::default()) };
    // How many versions are newer than each candidate. Counting reads the whole index range of
    // the event; a backend for very long histories keeps a count per event instead, as the redb
    // one does.
    let count: i64 = transaction.query_row(
        "SELECT COUNT(*) FROM versions WHERE event = ?1",
        params![event],
        |row| row.get(0),
    )?;
    // The candidates, oldest first: one more than `limit`, to tell whether more are left.
    let candidates: Vec<(i64, u64)> = {
        let mut statement = transaction.prepare_cached(
            "SELECT id, timestamp FROM versions WHERE event = ?1 AND id < ?2 ORDER BY id LIMIT ?3",
        )?;
        let rows = statement.query_map(
            params![event, newest, sql_int(limit.saturating_add(1))],
            // Timestamps are stored as the bits of the `u64`.
            |row| Ok((row.get(0)?, row.get::<_, i64>(1)? as u64)),
        )?;
        rows.collect::<rusqlite::Result<_>>()?
    };
    let mut removed = 0;
    let mut more = false;
    for (index, &(_, timestamp)) in candidates.iter().enumerate() {
        let newer = (count as u64).saturating_sub(index as u64 + 1);
        if !retention.releases(newer, timestamp) {
            break;
        }
        // Past the limit, or kept for the idempotency window: left for a later call.
        if removed == limit || timestamp >= young {
            more = true;
            break;
        }
        removed += 1;
    }
    if removed > 0 {
        let through = candidates[removed - 1].0;
        transaction.execute(
            "DELETE FROM versions WHERE event = ?1 AND id <= ?2",
            params![event, through],
        )?;
        transaction.execute(
            "INSERT INTO horizons (event, pruned_through) VALUES (?1, ?2)
             ON CONFLICT (event) DO UPDATE SET pruned_through = excluded.pruned_through",
            params![event, through],
        )?;
        transaction.commit()?;
    }
    Ok(Pruned { removed, more })
}

/// Every pruned event, with the greatest id pruned of it.
pub(super) fn horizons(connection: &Connection) -> rusqlite::Result<Vec<Horizon>> {
    let mut statement = connection.prepare_cached("SELECT event, pruned_through FROM horizons")?;
    let rows = statement.query_map([], |row| {
        let pruned_through: i64 = row.get(1)?;
        Ok(Horizon { event: row.get(0)?, pruned_through: pruned_through as u64 })
    })?;
    rows.collect()
}

/// The oldest timestamp within `window` of the clock: a prune keeps every version stamped at or
/// after it, so that a retry still finds the version its first try stored.
fn window_start(window: Duration) -> u64 {
    let now = SystemTime::now().duration_since(UNIX_EPOCH).unwrap_or_default();
    u64::try_from(now.saturating_sub(window).as_millis()).unwrap_or(u64::MAX)
}
