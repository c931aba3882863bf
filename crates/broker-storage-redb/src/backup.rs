//! [`RedbStorage::backup`](crate::RedbStorage::backup): a consistent copy of a running store in a
//! new file. Runs on a blocking thread, under the store's read guard.

use std::collections::HashMap;
use std::fs::{File, OpenOptions};
use std::io;
use std::path::{Path, PathBuf};

use broker_storage::{StorageError, Uuid};
use redb::backends::FileBackend;
use redb::{Database, Durability, ReadTransaction, ReadableTable};

use crate::RedbOptions;
use crate::blocks::{self, BLOCKS};
use crate::error::{Fault, from_redb, in_file};
use crate::index;
use crate::schema::{self, COUNTS, EVENT_IDS, HORIZONS, KEY_TIMES, KEYS, LATEST, META};

/// What [`RedbStorage::backup`](crate::RedbStorage::backup) wrote.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
#[non_exhaustive]
pub struct BackupReport {
    /// The number of versions in the copy.
    pub versions: u64,
    /// The id of the last version in the copy, 0 when it holds none. The copy holds exactly the
    /// versions of the store up to this id.
    pub last_id: u64,
}

/// Versions (or keys) copied per write transaction of the copy, give or take a block. A
/// transaction keeps its dirty pages until it commits; committing every so many rows bounds that
/// memory whatever the store's size.
const ROWS_PER_COMMIT: usize = 10_000;

/// Copies what the store holds as of the read transaction `txn` into a new redb file at `to`, with
/// the identity `database_id`.
///
/// The outer error is a failure of the source, which the store handles like that of any read
/// (it may have to be reopened); the inner one a failure of the copy, which leaves the store as
/// it was.
pub(crate) fn write(
    txn: ReadTransaction,
    to: &Path,
    options: &RedbOptions,
    database_id: Uuid,
) -> Result<Result<BackupReport, StorageError>, Fault> {
    match copy(&txn, to, options, database_id) {
        Ok(report) => Ok(Ok(report)),
        Err(Side::Source(fault)) => Err(fault),
        Err(Side::Copy(error)) => Ok(Err(error)),
    }
}

/// Which file a failure of the copy came from.
enum Side {
    Source(Fault),
    Copy(StorageError),
}

fn copy(
    txn: &ReadTransaction,
    to: &Path,
    options: &RedbOptions,
    database_id: Uuid,
) -> Result<BackupReport, Side> {
    let file = create_new(to).map_err(Side::Copy)?;
    // Declared before the database, so dropped after it: a failed copy (even one that panics)
    // leaves no partial file behind.
    let partial = Partial(Some(to.to_path_buf()));
    let backend = FileBackend::new(file).map_err(|error| target(to, error))?;
    let copy = Database::builder()
        .set_cache_size(options.cache_size)
        .create_with_backend(backend)
        .map_err(|error| target(to, error))?;

    let log = txn.open_table(BLOCKS).map_err(source)?;
    let mut rows = log.iter().map_err(source)?;
    let mut report = BackupReport { versions: 0, last_id: 0 };
    // Each event's count and newest id, for the copy's `counts`, so that its first prune of an
    // event need not count it.
    let mut counts: HashMap<String, (u64, u64)> = HashMap::new();
    let mut done = false;
    while !done {
        // Durable only at the end: the identity written last makes the copy usable, and a crash
        // before it leaves a file that `open` refuses and `check` reports.
        let mut write = copy.begin_write().map_err(|error| target(to, error))?;
        write.set_durability(Durability::None).map_err(|error| target(to, error))?;
        {
            let mut copy_blocks = write.open_table(BLOCKS).map_err(|error| target(to, error))?;
            let mut event_ids = write.open_table(EVENT_IDS).map_err(|error| target(to, error))?;
            let mut latest = write.open_table(LATEST).map_err(|error| target(to, error))?;
            let mut indexed: Vec<(String, u64)> = Vec::new();
            while indexed.len() < ROWS_PER_COMMIT {
                let Some(entry) = rows.next() else {
                    done = true;
                    break;
                };
                let (key, block) = entry.map_err(source)?;
                // A block is copied as it is; the indexes are rebuilt from its versions as an
                // append builds them: in id order, so `latest` ends with the newest version of
                // each event.
                for row in blocks::rows(key.value(), block.value()) {
                    let row = row.map_err(Side::Source)?;
                    indexed.push((row.event.to_owned(), row.id));
                    latest.insert(row.event, row.id).map_err(|error| target(to, error))?;
                    let (count, newest) = counts.entry(row.event.to_owned()).or_default();
                    (*count, *newest) = (*count + 1, row.id);
                    report.versions += 1;
                    report.last_id = row.id;
                }
                copy_blocks
                    .insert(key.value(), block.value())
                    .map_err(|error| target(to, error))?;
            }
            let ids = indexed.iter().map(|(event, id)| (event.as_str(), *id));
            index::add(&mut event_ids, ids)
                .map_err(|fault| Side::Copy(copy_error(to, fault.error)))?;
        }
        write.commit().map_err(|error| target(to, error))?;
    }

    // The idempotency keys too, so that a retry against a store restored from the copy, within
    // the window, still returns the version the first try stored.
    let keys = txn.open_table(KEYS).map_err(source)?;
    let mut rows = keys.iter().map_err(source)?;
    let mut done = false;
    while !done {
        let mut write = copy.begin_write().map_err(|error| target(to, error))?;
        write.set_durability(Durability::None).map_err(|error| target(to, error))?;
        {
            let mut copy_keys = write.open_table(KEYS).map_err(|error| target(to, error))?;
            let mut key_times = write.open_table(KEY_TIMES).map_err(|error| target(to, error))?;
            for _ in 0..ROWS_PER_COMMIT {
                let Some(entry) = rows.next() else {
                    done = true;
                    break;
                };
                let (key, row) = entry.map_err(source)?;
                let (key, (id, stored_at)) = (key.value(), row.value());
                copy_keys.insert(key, (id, stored_at)).map_err(|error| target(to, error))?;
                key_times.insert((stored_at, key), ()).map_err(|error| target(to, error))?;
            }
        }
        write.commit().map_err(|error| target(to, error))?;
    }

    // The horizons, which say how far back each pruned event's history reaches, and the counts:
    // a row per event each, few enough for one transaction.
    let horizons = txn.open_table(HORIZONS).map_err(source)?;
    let mut write = copy.begin_write().map_err(|error| target(to, error))?;
    write.set_durability(Durability::Immediate).map_err(|error| target(to, error))?;
    {
        let mut copy_horizons = write.open_table(HORIZONS).map_err(|error| target(to, error))?;
        for entry in horizons.iter().map_err(source)? {
            let (event, through) = entry.map_err(source)?;
            copy_horizons
                .insert(event.value(), through.value())
                .map_err(|error| target(to, error))?;
        }
        let mut copy_counts = write.open_table(COUNTS).map_err(|error| target(to, error))?;
        for (event, row) in &counts {
            copy_counts.insert(event.as_str(), *row).map_err(|error| target(to, error))?;
        }
        let mut meta = write.open_table(META).map_err(|error| target(to, error))?;
        schema::write_identity(&mut meta, database_id)
            .map_err(|fault| Side::Copy(copy_error(to, fault.error)))?;
    }
    write.commit().map_err(|error| target(to, error))?;
    copy.close().map_err(|error| target(to, error))?;
    sync_directory(to).map_err(|error| target(to, error))?;
    partial.keep();
    Ok(report)
}

/// A failure of the store's own file.
fn source(error: impl Into<redb::Error>) -> Side {
    Side::Source(from_redb(error))
}

/// A failure of the copy at `to`.
fn target(to: &Path, error: impl Into<redb::Error>) -> Side {
    Side::Copy(copy_error(to, from_redb(error).error))
}

/// Creates the file of the copy, refusing to overwrite one that exists.
fn create_new(to: &Path) -> Result<File, StorageError> {
    OpenOptions::new().read(true).write(true).create_new(true).open(to).map_err(|error| match error
        .kind()
    {
        io::ErrorKind::AlreadyExists => StorageError::backend(format!(
            "cannot back up to {}: the file exists, and a backup never overwrites one",
            to.display()
        )),
        _ => copy_error(to, crate::error::from_io(error)),
    })
}

/// Makes the new file's directory entry durable, so that a backup that returned `Ok` survives a
/// crash of the machine.
fn sync_directory(to: &Path) -> io::Result<()> {
    let dir = match to.parent() {
        Some(parent) if !parent.as_os_str().is_empty() => parent,
        _ => Path::new("."),
    };
    File::open(dir)?.sync_all()
}

/// Names the copy in a failure to write it. Its file is new, so nothing in it can be damaged: a
/// corruption redb reports there is a failure of the copy like any other.
fn copy_error(to: &Path, error: StorageError) -> StorageError {
    match error {
        StorageError::Full(_) => in_file(to, error),
        error => {
            StorageError::backend(format!("cannot write the backup {}: {error}", to.display()))
        }
    }
}

/// The file of a copy in progress, removed unless the copy completes.
struct Partial(Option<PathBuf>);

impl Partial {
    fn keep(mut self) {
        self.0 = None;
    }
}

impl Drop for Partial {
    fn drop(&mut self) {
        if let Some(path) = self.0.take()
            && let Err(error) = std::fs::remove_file(&path)
        {
            tracing::warn!(path = %path.display(), %error, "cannot remove a failed backup");
        }
    }
}
