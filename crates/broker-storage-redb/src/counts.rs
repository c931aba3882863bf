//! The `counts` table: how many versions of each event a prune last counted, so that the next
//! one counts only what was appended since. redb counts a range only by reading every key in
//! it, which for an event with a million versions is far more than a prune step may cost; and
//! appends, the hot path, write nothing here.
//!
//! A row is `(count, through)`: the event has `count` stored versions with an id up to
//! `through`. Appends only add versions above the event's latest, and prunes remove versions
//! below it and write the row in the same transaction, so a row stays true; the event's count is
//! the row's plus its `by_event` keys above `through`. An event without a row (never pruned, or
//! in a file written before this table) is counted whole at its first prune.

use std::ops::Bound;

use redb::{ReadableTable, Table};

use crate::error::{Fault, from_redb_write};

/// The `counts` table, open in a write transaction.
pub(crate) type Counts<'txn> = Table<'txn, &'static str, (u64, u64)>;

/// The number of stored versions of `event`: its row's count, plus its `by_event` keys above
/// the row's `through` (all of them without a row), which a prune then writes back.
pub(crate) fn get(
    counts: &Counts<'_>,
    by_event: &impl ReadableTable<(&'static str, u64), ()>,
    event: &str,
) -> Result<u64, Fault> {
    let row = counts.get(event).map_err(from_redb_write)?.map(|row| row.value());
    let (mut count, through) = row.map_or((0, None), |(count, through)| (count, Some(through)));
    let from =
        through.map_or(Bound::Included((event, 0)), |through| Bound::Excluded((event, through)));
    let range = (from, Bound::Included((event, u64::MAX)));
    for entry in by_event.range(range).map_err(from_redb_write)? {
        entry.map_err(from_redb_write)?;
        count += 1;
    }
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
