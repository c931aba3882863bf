//! The `counts` table: how many versions of each event are stored, kept by appends and prunes so
//! that a prune learns an event's count from one row. redb counts a range only by reading every
//! key in it, which for an event with a million versions is far more than a prune step may cost.
//!
//! A row is `(count, through)`: the count is right while `through` is the event's `latest` id.
//! An append that finds its event's row current moves both on; a row left behind (by a build
//! that did not keep this table, or by a file written before it) stays stale until a prune
//! counts the event once, from `by_event`, and writes the row back current.

use std::ops::Bound;

use redb::{ReadableTable, Table};

use crate::error::{Fault, from_redb_write};

/// The `counts` table, open in a write transaction.
pub(crate) type Counts<'txn> = Table<'txn, &'static str, (u64, u64)>;

/// Records that a batch stored `added` versions of `event`, the newest of them `newest`, where
/// the event's newest version was `before` (`None` for an event new to the file).
///
/// A current row stays current. A stale or missing row of an event the file already held is
/// left as it is: its count is unknown, and the next prune of the event counts it.
pub(crate) fn add(
    counts: &mut Counts<'_>,
    event: &str,
    before: Option<u64>,
    added: u64,
    newest: u64,
) -> Result<(), Fault> {
    let count = match before {
        None => added,
        Some(before) => match counts.get(event).map_err(from_redb_write)?.map(|row| row.value()) {
            Some((count, through)) if through == before => count + added,
            _ => return Ok(()),
        },
    };
    counts.insert(event, (count, newest)).map_err(from_redb_write)?;
    Ok(())
}

/// The number of stored versions of `event`, whose newest version is `newest`: its row when
/// current, or else counted from `by_event` and written back, which reads the event's whole
/// index once.
pub(crate) fn get(
    counts: &mut Counts<'_>,
    by_event: &impl ReadableTable<(&'static str, u64), ()>,
    event: &str,
    newest: u64,
) -> Result<u64, Fault> {
    if let Some((count, through)) = counts.get(event).map_err(from_redb_write)?.map(|r| r.value())
        && through == newest
    {
        return Ok(count);
    }
    let range = (Bound::Included((event, 0)), Bound::Included((event, u64::MAX)));
    let mut count = 0;
    for entry in by_event.range(range).map_err(from_redb_write)? {
        entry.map_err(from_redb_write)?;
        count += 1;
    }
    set(counts, event, count, newest)?;
    Ok(count)
}

/// Records that `count` versions of `event` are stored, the newest of them `newest`.
pub(crate) fn set(
    counts: &mut Counts<'_>,
    event: &str,
    count: u64,
    newest: u64,
) -> Result<(), Fault> {
    counts.insert(event, (count, newest)).map_err(from_redb_write)?;
    Ok(())
}
