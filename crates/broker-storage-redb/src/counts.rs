//! The `counts` table: how many versions of each event a prune last counted, so that the next
//! one counts only what was appended since. redb counts a range only by reading every key in
//! it, which for an event with a million versions is far more than a prune step may cost; and
//! appends, the hot path, write nothing here.
//!
//! A row is `(count, through)`: the event has `count` stored versions with an id up to
//! `through`. Appends only add versions above the event's latest, and prunes remove versions
//! below it and write the row in the same transaction, so a row stays true; the event's count is
//! the row's plus its ids in `event_ids` above `through`. An event without a row (never pruned, or
//! in a file written before this table) is counted whole at its first prune.

use redb::{ReadableTable, Table};

use crate::error::{Fault, from_redb_write};
use crate::index;

/// The `counts` table, open in a write transaction.
pub(crate) type Counts<'txn> = Table<'txn, &'static str, (u64, u64)>;

/// The number of stored versions of `event`: its row's count, plus its ids in `event_ids` above
/// the row's `through` (all of them without a row), which a prune then writes back.
pub(crate) fn get(
    counts: &Counts<'_>,
    event_ids: &impl ReadableTable<(&'static str, u64), &'static [u8]>,
    event: &str,
) -> Result<u64, Fault> {
    let row = counts.get(event).map_err(from_redb_write)?.map(|row| row.value());
    let (count, through) = row.unwrap_or((0, 0));
    Ok(count + index::count_after(event_ids, event, through, from_redb_write)?)
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
