//! The tables of a store's redb file, and the identity written into it when it is created.
//!
//! A store is one redb file holding eight tables:
//!
//! - `blocks`: the id of the last version written into a block (`u64`) → the block, a few
//!   kilobytes of versions in id order, each with its event, timestamp and data (`blocks.rs`).
//!   The log itself; `since` is a range scan over it, a version is found in the first block keyed
//!   at or above its id, and the last id of the last block is the last id handed out.
//! - `event_ids`: `(event, first)` as `(&str, u64)` → the ids of a run of `event`'s versions,
//!   from `first` on, as little-endian `u64`s (`index.rs`). The index behind `history`. redb
//!   compares tuple keys element by element, so the range from `(event, 0)` to
//!   `(event, u64::MAX)` holds exactly the runs of `event`: `"username"` sorts after every
//!   `("user", _)`.
//! - `latest`: event (`&str`) → id (`u64`) of its newest version. `latest()` reads this table and
//!   one block per event, never the whole log.
//! - `keys`: idempotency key (`&str`) → `(id, timestamp)` as `(u64, u64)`: the version stored
//!   under the key, and its timestamp, from which the idempotency window is measured.
//! - `key_times`: `(timestamp, key)` as `(u64, &str)` → `()`. The keys of `keys` by the timestamp
//!   they were stored at, oldest first, so that an append finds the expired ones without reading
//!   the rest, and prunes a few of them.
//! - `counts`: event (`&str`) → `(count, through)` as `(u64, u64)`: how many versions of the
//!   event with an id up to `through` are stored, as its last prune counted them. A prune needs
//!   the count to tell how many versions are newer than the one it looks at, and redb can only
//!   count a range by reading it: a prune counts the row's plus the event's keys above `through`,
//!   and writes the row back. Appends never write it.
//! - `horizons`: event (`&str`) → id (`u64`): the greatest id pruned of each event that was
//!   pruned. Every version of the event up to it is gone, every later one is stored.
//! - `meta`: name (`&str`) → bytes. `database_id` holds the 16 bytes of the database's UUID,
//!   `format_version` the little-endian `u64` [`FORMAT_VERSION`] of this layout.
//!
//! Every round writes its versions as new blocks into `blocks`, one run per event into
//! `event_ids`, and overwrites one row of `latest` per event, all in its single transaction, so
//! the three always agree. A version stored
//! under an idempotency key also writes its row of `keys` and `key_times` in that transaction
//! (replacing the rows of an expired use of the key), so those two always agree as well, and
//! every id in `keys` names a version in `blocks`, unless that version was pruned: a prune
//! removes only versions whose timestamp is older than the idempotency window by the clock, so
//! an append treats a key whose version is gone, and that is that old, as expired.
//!
//! A prune removes a prefix of one event's ids from `event_ids` and their versions from
//! `blocks`, never the event's latest version, and in the same transaction lowers its `counts`
//! row and raises its `horizons` row to the greatest id removed. So every row of `latest` names a
//! stored version, the last id in `blocks` is still the last id handed out (it is the latest of
//! its event), and a hole in the ids is always at or below some horizon.
//!
//! `keys` and `key_times` came after the first files of format 1 were written, and did not change
//! the format version: a file without them is whole (no version in it was stored under a key), and
//! opening it creates them empty; a build that predates them ignores them, and what it appends
//! without keys leaves them consistent. The format version changes only when a build could
//! misread a file.
//!
//! `counts` and `horizons` came later still, also in format 1, for the same reasons: a file
//! without them has pruned nothing (opening it creates them empty, and each event is counted at
//! its first prune); a build that predates them can still read a pruned file, and what it
//! appends (versions above every `through`) leaves both true.
//!
//! Format 2 replaced the table `by_event`, `(event, id)` → `()` with a row per version, by
//! `event_ids`, with a row per run: a round of many versions of one event writes one row instead
//! of one each. Opening a file of format 1 for writing upgrades it, in one durable transaction
//! (`upgrade_index`); a build of format 1 refuses a file of format 2.
//!
//! Format 3 replaced the table `versions`, id → `(event, timestamp, data)` with a row per version,
//! by `blocks`: a round of a few dozen versions writes a block or two instead of a row each, and
//! the B-tree inserts of those rows were the largest part of a round's work. Opening a file of
//! format 2 (or 1) for writing upgrades it in one durable transaction too (`upgrade_log`), then
//! compacts the file, which held both logs (`open.rs`); a build of format 2 refuses a file of
//! format 3.

use std::path::Path;

use broker_storage::{StorageError, Uuid, Version};
use redb::{
    Database, Durability, ReadTransaction, ReadableTable, ReadableTableMetadata, Table,
    TableDefinition, WriteTransaction,
};

use crate::blocks::{self, BLOCKS, Row};
use crate::error::{Fault, from_redb, from_redb_write};
use crate::index;

/// The log of formats 1 and 2, a row per version, which an upgrade replaces with [`BLOCKS`].
const VERSIONS: TableDefinition<'static, u64, (&str, u64, &str)> = TableDefinition::new("versions");

/// The ids of each event's versions, in runs (`index.rs`).
pub(crate) const EVENT_IDS: TableDefinition<'static, (&str, u64), &[u8]> =
    TableDefinition::new("event_ids");

/// The index of format 1, a row per version, which an upgrade replaces with [`EVENT_IDS`].
const BY_EVENT: TableDefinition<'static, (&str, u64), ()> = TableDefinition::new("by_event");

/// The id of the newest version of each event.
pub(crate) const LATEST: TableDefinition<'static, &str, u64> = TableDefinition::new("latest");

/// The version stored under each idempotency key, and its timestamp.
pub(crate) const KEYS: TableDefinition<'static, &str, (u64, u64)> = TableDefinition::new("keys");

/// The idempotency keys by the timestamp of their version, to find the expired ones.
pub(crate) const KEY_TIMES: TableDefinition<'static, (u64, &str), ()> =
    TableDefinition::new("key_times");

/// How many versions of each event are stored, and the id of the newest one counted.
pub(crate) const COUNTS: TableDefinition<'static, &str, (u64, u64)> =
    TableDefinition::new("counts");

/// The greatest id pruned of each event that was pruned.
pub(crate) const HORIZONS: TableDefinition<'static, &str, u64> = TableDefinition::new("horizons");

/// The database's identity and the version of this layout.
pub(crate) const META: TableDefinition<'static, &str, &[u8]> = TableDefinition::new("meta");

/// The version of the layout described above. A file of format 1 or 2 is upgraded when it is
/// opened; one of any other is refused.
pub(crate) const FORMAT_VERSION: u64 = 3;

/// The first format, with a row per version in `by_event`.
const FORMAT_ONE: u64 = 1;

/// The format before this one, with a row per version in `versions`.
const FORMAT_TWO: u64 = 2;

/// The versions an upgrade reads from `versions` before it writes them as blocks.
const UPGRADE_CHUNK: usize = 4096;

const DATABASE_ID_KEY: &str = "database_id";
const FORMAT_VERSION_KEY: &str = "format_version";

/// What identifies a database and where its log ends: read when it is opened, and again when it
/// is reopened after a failure, to be sure it is the same file with nothing acknowledged missing.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) struct Identity {
    pub(crate) database_id: Uuid,
    /// The last id in `blocks`, 0 when it is empty.
    pub(crate) last_id: u64,
}

/// Reads the identity of the database in `db`, or writes a fresh one with the format version if
/// the file is new. Creates every table, so that readers never meet a missing one.
///
/// Upgrades a file of an earlier format, and says so: its old tables' pages are free then, and
/// the caller may compact the file.
///
/// `path` only names the file in the message of a format version this build cannot read.
pub(crate) fn identify(db: &Database, path: &Path) -> Result<(Identity, bool), Fault> {
    let mut txn = db.begin_write().map_err(from_redb_write)?;
    txn.set_durability(Durability::Immediate).map_err(from_redb_write)?;
    let mut upgraded = false;
    let identity = {
        let mut meta = txn.open_table(META).map_err(from_redb_write)?;
        txn.open_table(BLOCKS).map_err(from_redb_write)?;
        txn.open_table(EVENT_IDS).map_err(from_redb_write)?;
        txn.open_table(LATEST).map_err(from_redb_write)?;
        // A file written before the idempotency tables gets them here, empty.
        txn.open_table(KEYS).map_err(from_redb_write)?;
        txn.open_table(KEY_TIMES).map_err(from_redb_write)?;
        // And one written before pruning gets these.
        txn.open_table(COUNTS).map_err(from_redb_write)?;
        txn.open_table(HORIZONS).map_err(from_redb_write)?;
        let database_id = match read_stored(&meta, path)? {
            Some((database_id, format @ (FORMAT_ONE | FORMAT_TWO))) => {
                if format == FORMAT_ONE {
                    upgrade_index(&txn, path)?;
                }
                upgrade_log(&txn, path, format)?;
                write_identity(&mut meta, database_id)?;
                upgraded = true;
                database_id
            }
            Some((database_id, _)) => database_id,
            None if !txn
                .open_table(BLOCKS)
                .map_err(from_redb_write)?
                .is_empty()
                .map_err(from_redb_write)? =>
            {
                return Err(corrupt("it holds versions but no database identity"));
            }
            None => {
                let database_id = Uuid::new_v4();
                write_identity(&mut meta, database_id)?;
                database_id
            }
        };
        let last_id =
            blocks::last_id(&txn.open_table(BLOCKS).map_err(from_redb_write)?, from_redb_write)?;
        Identity { database_id, last_id }
    };
    txn.commit().map_err(from_redb_write)?;
    Ok((identity, upgraded))
}

/// Reads the identity of a database that already has one, without writing: on a disk that
/// filled up, a reopen must not need a commit to succeed.
pub(crate) fn stored_identity(txn: &ReadTransaction, path: &Path) -> Result<Identity, Fault> {
    let meta = txn.open_table(META).map_err(from_redb)?;
    let last_id = blocks::last_id(&txn.open_table(BLOCKS).map_err(from_redb)?, from_redb)?;
    match read_identity(&meta, path)? {
        Some(database_id) => Ok(Identity { database_id, last_id }),
        None => Err(corrupt("it has no database identity")),
    }
}

/// The identity recorded in `meta`, or `None` when the table is empty (a new file). A file of
/// format 1 or 2, which only [`identify`] upgrades, is refused.
pub(crate) fn read_identity(
    meta: &impl ReadableTable<&'static str, &'static [u8]>,
    path: &Path,
) -> Result<Option<Uuid>, Fault> {
    match read_stored(meta, path)? {
        Some((_, format @ (FORMAT_ONE | FORMAT_TWO))) => Err(StorageError::backend(format!(
            "{} has storage format version {format}, which this build upgrades to \
             {FORMAT_VERSION} when it opens the file: start the broker on it once",
            path.display()
        ))
        .into()),
        stored => Ok(stored.map(|(database_id, _)| database_id)),
    }
}

/// The identity and format version recorded in `meta`, the format one this build reads (1, 2 or
/// 3), or `None` when the table is empty (a new file).
fn read_stored(
    meta: &impl ReadableTable<&'static str, &'static [u8]>,
    path: &Path,
) -> Result<Option<(Uuid, u64)>, Fault> {
    let format = meta.get(FORMAT_VERSION_KEY).map_err(from_redb)?;
    let database_id = meta.get(DATABASE_ID_KEY).map_err(from_redb)?;
    let (format, database_id) = match (format, database_id) {
        (None, None) => return Ok(None),
        (Some(format), Some(database_id)) => (format, database_id),
        _ => {
            return Err(corrupt(
                "it holds only half of its identity (database id and format version)",
            ));
        }
    };
    let format = <[u8; 8]>::try_from(format.value())
        .map(u64::from_le_bytes)
        .map_err(|_| corrupt("the format version is not 8 bytes long"))?;
    if !matches!(format, FORMAT_ONE | FORMAT_TWO | FORMAT_VERSION) {
        return Err(StorageError::backend(format!(
            "{} has storage format version {format}, and this build reads only versions \
             {FORMAT_ONE} to {FORMAT_VERSION}",
            path.display()
        ))
        .into());
    }
    let database_id = <[u8; 16]>::try_from(database_id.value())
        .map(Uuid::from_bytes)
        .map_err(|_| corrupt("the database id is not 16 bytes long"))?;
    if database_id.is_nil() {
        return Err(corrupt("the database id is nil"));
    }
    Ok(Some((database_id, format)))
}

/// Upgrades the index of a file of format 1 in `txn`: its row per version, `by_event`, becomes
/// runs in `event_ids`, each of the consecutive ids of one event (up to [`index::RUN_MAX`]), and
/// `by_event` is deleted. The caller then upgrades the log ([`upgrade_log`]) and writes the new
/// format version, in the same transaction.
fn upgrade_index(txn: &WriteTransaction, path: &Path) -> Result<(), Fault> {
    let mut indexed = 0_u64;
    {
        let by_event = txn.open_table(BY_EVENT).map_err(from_redb_write)?;
        let mut event_ids = txn.open_table(EVENT_IDS).map_err(from_redb_write)?;
        let mut run: Option<(String, Vec<u64>)> = None;
        for entry in by_event.iter().map_err(from_redb_write)? {
            let (key, _) = entry.map_err(from_redb_write)?;
            let (event, id) = key.value();
            indexed += 1;
            match &mut run {
                Some((of, ids)) if of == event && ids.len() < index::RUN_MAX => ids.push(id),
                _ => {
                    if let Some((of, ids)) = run.replace((event.to_owned(), vec![id])) {
                        index::write(&mut event_ids, &of, &ids)?;
                    }
                }
            }
        }
        if let Some((of, ids)) = run {
            index::write(&mut event_ids, &of, &ids)?;
        }
    }
    txn.delete_table(BY_EVENT).map_err(from_redb_write)?;
    tracing::info!(
        path = %path.display(),
        versions = indexed,
        "upgraded the index of the file from storage format {FORMAT_ONE}"
    );
    Ok(())
}

/// Upgrades the log of a file of format `format` (1 or 2) in `txn`: its row per version in
/// `versions` becomes blocks in `blocks`, and `versions` is deleted. The caller then writes the
/// new format version in the same transaction.
fn upgrade_log(txn: &WriteTransaction, path: &Path, format: u64) -> Result<(), Fault> {
    let mut moved = 0_u64;
    {
        let versions = txn.open_table(VERSIONS).map_err(from_redb_write)?;
        let mut log = txn.open_table(BLOCKS).map_err(from_redb_write)?;
        let mut chunk: Vec<Version> = Vec::with_capacity(UPGRADE_CHUNK);
        let mut write = |chunk: &mut Vec<Version>| {
            blocks::append(&mut log, chunk.iter().map(Row::of))?;
            moved += chunk.len() as u64;
            chunk.clear();
            Ok::<_, Fault>(())
        };
        for entry in versions.iter().map_err(from_redb_write)? {
            let (id, row) = entry.map_err(from_redb_write)?;
            let (event, timestamp, data) = row.value();
            let (event, data) = (event.into(), data.into());
            chunk.push(Version { id: id.value(), event, timestamp, data });
            if chunk.len() == UPGRADE_CHUNK {
                write(&mut chunk)?;
            }
        }
        write(&mut chunk)?;
    }
    txn.delete_table(VERSIONS).map_err(from_redb_write)?;
    tracing::info!(
        path = %path.display(),
        versions = moved,
        "upgraded the file from storage format {format} to {FORMAT_VERSION}"
    );
    Ok(())
}

/// Records `database_id` and the current format version in `meta`: for a new database, and for
/// a backup, which keeps the identity of the database it copies.
pub(crate) fn write_identity(
    meta: &mut Table<'_, &str, &[u8]>,
    database_id: Uuid,
) -> Result<(), Fault> {
    meta.insert(DATABASE_ID_KEY, database_id.as_bytes().as_slice()).map_err(from_redb_write)?;
    meta.insert(FORMAT_VERSION_KEY, FORMAT_VERSION.to_le_bytes().as_slice())
        .map_err(from_redb_write)?;
    Ok(())
}

/// A damaged identity. The caller names the file.
fn corrupt(what: &str) -> Fault {
    StorageError::Corrupt(what.to_owned()).into()
}

/// Writes `format_version` into the `meta` table of the redb file at `path`, for tests of files
/// written by another build.
#[cfg(test)]
pub(crate) fn force_format_version(path: &Path, format_version: u64) {
    let db = Database::create(path).expect("open the test database");
    let txn = db.begin_write().expect("begin a write");
    {
        let mut meta = txn.open_table(META).expect("open meta");
        meta.insert(FORMAT_VERSION_KEY, format_version.to_le_bytes().as_slice())
            .expect("write the format version");
    }
    txn.commit().expect("commit");
}
