//! The blocking work of each storage operation: one redb transaction each. `store.rs` runs these
//! on tokio's blocking pool, never on an async thread, and catches the panics redb raises on
//! damaged data.

use std::ops::Bound;

use broker_storage::{NewVersion, StorageError, Version};
use redb::{Database, Durability, ReadOnlyTable, ReadableDatabase, ReadableTable};

use crate::error::{Fault, from_redb, from_redb_write};
use crate::schema::{self, BY_EVENT, LATEST, VERSIONS};
use crate::space::Space;

/// Stores `batch` in one write transaction, committed with [`Durability::Immediate`], once `space`
/// has found enough free space for it.
///
/// Ids continue from the last key of `versions`, read inside the write transaction: redb runs one
/// write transaction at a time, so two batches never read the same last id, and a batch that fails
/// to commit leaves nothing behind to skip or reuse.
pub(crate) fn append(
    db: &Database,
    space: &Space,
    batch: Vec<NewVersion>,
) -> Result<Vec<Version>, Fault> {
    // Before the transaction, so that a refused batch writes nothing at all.
    space.check()?;
    let mut txn = db.begin_write().map_err(from_redb_write)?;
    txn.set_durability(Durability::Immediate).map_err(from_redb_write)?;
    let stored = {
        let mut versions = txn.open_table(VERSIONS).map_err(from_redb_write)?;
        let mut by_event = txn.open_table(BY_EVENT).map_err(from_redb_write)?;
        let mut latest = txn.open_table(LATEST).map_err(from_redb_write)?;
        let mut id = versions.last().map_err(from_redb_write)?.map_or(0, |(id, _)| id.value());
        let mut stored = Vec::with_capacity(batch.len());
        for new in batch {
            id = id
                .checked_add(1)
                .ok_or_else(|| StorageError::backend("version ids are exhausted"))?;
            let event = new.event.as_str();
            versions
                .insert(id, (event, new.timestamp, new.data.as_str()))
                .map_err(from_redb_write)?;
            by_event.insert((event, id), ()).map_err(from_redb_write)?;
            latest.insert(event, id).map_err(from_redb_write)?;
            stored.push(new.with_id(id));
        }
        stored
    };
    // Dropping `txn` on any error above aborts it, so a failed batch leaves no trace.
    txn.commit().map_err(from_redb_write)?;
    Ok(stored)
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
        let version = lookup(&versions, id.value(), "latest")?;
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
        found.push(lookup(&versions, id, "by_event")?);
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

/// The version `id`, which the index `table` says exists.
fn lookup(
    versions: &ReadOnlyTable<u64, (&str, u64, &str)>,
    id: u64,
    table: &str,
) -> Result<Version, Fault> {
    match versions.get(id).map_err(from_redb)? {
        Some(row) => Ok(schema::version(id, row.value())),
        None => {
            Err(StorageError::Corrupt(format!("{table} names version {id}, which is missing"))
                .into())
        }
    }
}
