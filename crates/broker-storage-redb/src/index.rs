//! The `event_ids` table: the ids of each event's versions, in **runs**. A row is keyed by the
//! event and the first id of its run, and holds the run's ids, increasing, as little-endian
//! `u64`s:
//!
//! ```text
//! (event, first) → first, id, id, ...      every id of the row belongs to `event`
//! ```
//!
//! A round writes one run per event it holds (per [`RUN_MAX`] ids), so an array of a thousand
//! versions of one event costs one row here, where a row per version cost a B-tree insert each.
//! The runs of one event never overlap: each ends below the next one's first id, so reading an
//! event's ids in order is a range scan that starts at the run holding the first id wanted.

use std::collections::HashMap;
use std::ops::Bound;

use broker_storage::StorageError;
use redb::{ReadableTable, Table};

use crate::error::{Fault, from_redb_write};

/// The most ids one row holds: 32 KiB of them.
pub(crate) const RUN_MAX: usize = 4096;

/// The `event_ids` table, open in a write transaction.
pub(crate) type EventIds<'txn> = Table<'txn, (&'static str, u64), &'static [u8]>;

/// Adds the ids of `versions`, each an event and an id, given in id order above every id the
/// table holds for their events: one run per event, split every [`RUN_MAX`] ids.
pub(crate) fn add<'a>(
    table: &mut EventIds<'_>,
    versions: impl Iterator<Item = (&'a str, u64)>,
) -> Result<(), Fault> {
    for (event, ids) in by_event(versions) {
        write(table, event, &ids)?;
    }
    Ok(())
}

/// The ids of `versions`, each an event and an id, by event, in the order given.
pub(crate) fn by_event<'a>(
    versions: impl Iterator<Item = (&'a str, u64)>,
) -> HashMap<&'a str, Vec<u64>> {
    let mut runs: HashMap<&str, Vec<u64>> = HashMap::new();
    for (event, id) in versions {
        runs.entry(event).or_default().push(id);
    }
    runs
}

/// Writes `ids` of `event`, increasing and above every id the table holds for it, as runs of at
/// most [`RUN_MAX`].
pub(crate) fn write(table: &mut EventIds<'_>, event: &str, ids: &[u64]) -> Result<(), Fault> {
    for run in ids.chunks(RUN_MAX) {
        table.insert((event, run[0]), encode(run).as_slice()).map_err(from_redb_write)?;
    }
    Ok(())
}

/// Up to `limit` ids of `event` above `after`, in order.
pub(crate) fn after(
    table: &impl ReadableTable<(&'static str, u64), &'static [u8]>,
    event: &str,
    after: u64,
    limit: usize,
    map: fn(redb::StorageError) -> Fault,
) -> Result<Vec<u64>, Fault> {
    let mut found = Vec::new();
    if limit == 0 {
        return Ok(found);
    }
    visit_after(table, event, after, map, |ids| {
        let wanted = limit - found.len();
        found.extend(ids.iter().take(wanted));
        found.len() < limit
    })?;
    Ok(found)
}

/// How many ids of `event` are above `after`.
pub(crate) fn count_after(
    table: &impl ReadableTable<(&'static str, u64), &'static [u8]>,
    event: &str,
    after: u64,
    map: fn(redb::StorageError) -> Fault,
) -> Result<u64, Fault> {
    let mut count = 0;
    visit_after(table, event, after, map, |ids| {
        count += ids.len() as u64;
        true
    })?;
    Ok(count)
}

/// The greatest id of `event` up to `at`, if it has one.
pub(crate) fn last_up_to(
    table: &impl ReadableTable<(&'static str, u64), &'static [u8]>,
    event: &str,
    at: u64,
    map: fn(redb::StorageError) -> Fault,
) -> Result<Option<u64>, Fault> {
    let range = (Bound::Included((event, 0)), Bound::Included((event, at)));
    let Some(entry) = table.range(range).map_err(map)?.next_back() else { return Ok(None) };
    let (key, value) = entry.map_err(map)?;
    let ids = decode(event, key.value().1, value.value())?;
    Ok(ids.iter().rev().copied().find(|&id| id <= at))
}

/// Removes the ids of `event` up to `through`: the runs that end there or before, and the start
/// of the run that holds it, which is written again from its first id kept.
pub(crate) fn remove_through(
    table: &mut EventIds<'_>,
    event: &str,
    through: u64,
) -> Result<(), Fault> {
    let range = (Bound::Included((event, 0)), Bound::Included((event, through)));
    let mut runs = Vec::new();
    for entry in table.range(range).map_err(from_redb_write)? {
        let (key, value) = entry.map_err(from_redb_write)?;
        let first = key.value().1;
        runs.push((first, decode(event, first, value.value())?));
    }
    for (first, ids) in runs {
        table.remove((event, first)).map_err(from_redb_write)?;
        let kept = &ids[ids.partition_point(|&id| id <= through)..];
        if let Some(&first) = kept.first() {
            table.insert((event, first), encode(kept).as_slice()).map_err(from_redb_write)?;
        }
    }
    Ok(())
}

/// The ids of the run of `event` whose first id is `first`, from its row's bytes, checked: a
/// whole number of ids, increasing, the first one the key's.
pub(crate) fn decode(event: &str, first: u64, bytes: &[u8]) -> Result<Vec<u64>, Fault> {
    let damaged = |why: &str| -> Fault {
        StorageError::Corrupt(format!("event_ids holds a run of {event:?} at {first} that {why}"))
            .into()
    };
    if bytes.is_empty() || !bytes.len().is_multiple_of(8) {
        return Err(damaged(&format!("is {} bytes long", bytes.len())));
    }
    let ids: Vec<u64> = bytes
        .chunks_exact(8)
        .map(|id| u64::from_le_bytes(id.try_into().unwrap_or_default()))
        .collect();
    if ids[0] != first {
        return Err(damaged(&format!("starts at {}", ids[0])));
    }
    if !ids.is_sorted_by(|a, b| a < b) {
        return Err(damaged("is not in increasing order"));
    }
    Ok(ids)
}

/// Calls `visit` with the ids of `event` above `after`, a run at a time in order, while it
/// returns `true`.
fn visit_after(
    table: &impl ReadableTable<(&'static str, u64), &'static [u8]>,
    event: &str,
    after: u64,
    map: fn(redb::StorageError) -> Fault,
    mut visit: impl FnMut(&[u64]) -> bool,
) -> Result<(), Fault> {
    let Some(next) = after.checked_add(1) else { return Ok(()) };
    // The run that starts at or before `after` may hold ids above it.
    let before = (Bound::Included((event, 0)), Bound::Included((event, after)));
    if let Some(entry) = table.range(before).map_err(map)?.next_back() {
        let (key, value) = entry.map_err(map)?;
        let ids = decode(event, key.value().1, value.value())?;
        let above = &ids[ids.partition_point(|&id| id <= after)..];
        if !above.is_empty() && !visit(above) {
            return Ok(());
        }
    }
    let rest = (Bound::Included((event, next)), Bound::Included((event, u64::MAX)));
    for entry in table.range(rest).map_err(map)? {
        let (key, value) = entry.map_err(map)?;
        if !visit(&decode(event, key.value().1, value.value())?) {
            break;
        }
    }
    Ok(())
}

fn encode(ids: &[u64]) -> Vec<u8> {
    ids.iter().flat_map(|id| id.to_le_bytes()).collect()
}
