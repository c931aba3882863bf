//! Opening a store's file: the first time, when it may be created, and again after a failure,
//! when it must be the same database with nothing acknowledged missing. Runs on a blocking
//! thread.

use std::path::Path;

use broker_storage::{StorageError, Uuid};
use redb::{Database, ReadableDatabase};

use crate::error::{Fault, catching, damaged, from_open, from_redb};
use crate::journal::{self, Journal};
use crate::schema::{self, Identity};
use crate::{RedbOptions, ops};

/// Creates the parent directory and the file if needed, opens it, and reads or writes its
/// identity.
///
/// # Errors
///
/// [`StorageError::Corrupt`] with one line naming the file when redb finds it damaged, or
/// panics on it; [`StorageError::Backend`] when it cannot be created, reached or locked.
pub(crate) fn create(
    path: &Path,
    options: &RedbOptions,
) -> Result<(Database, Identity, Journal), StorageError> {
    if let Some(parent) = path.parent().filter(|parent| !parent.as_os_str().is_empty()) {
        std::fs::create_dir_all(parent).map_err(|error| {
            StorageError::backend(format!(
                "cannot create the directory of {}: {error}",
                path.display()
            ))
        })?;
    }
    open_checked(path, || {
        let mut database = builder(options).create(path).map_err(|error| from_open(path, error))?;
        let (identity, upgraded) = schema::identify(&database, path)?;
        if upgraded {
            compact(&mut database, path);
        }
        let (journal, identity) = recover(&database, path, identity)?;
        Ok((database, identity, journal))
    })
}

/// Opens the existing file again after a failure, and checks that it is the database
/// `database_id` and still holds every version up to `acknowledged`.
///
/// Never creates the file: one that vanished is an error, not a fresh empty database. Writes
/// only what the journal holds beyond the file's durable end, and the journal's header, so that
/// a disk that is still full does not stop the reopen.
///
/// Returns the identity read back. Its last id may exceed `acknowledged`: a commit that reported
/// an I/O error may still have reached the disk (the error came after the write that made it
/// durable), and its versions then stay, with ids that later appends continue after.
pub(crate) fn reopen(
    path: &Path,
    options: &RedbOptions,
    database_id: Uuid,
    acknowledged: u64,
) -> Result<(Database, Identity, Journal), StorageError> {
    let (database, identity, journal) = open_checked(path, || {
        let database = builder(options).open(path).map_err(|error| from_open(path, error))?;
        let txn = database.begin_read().map_err(from_redb)?;
        let identity = schema::stored_identity(&txn, path)?;
        drop(txn);
        let (journal, identity) = recover(&database, path, identity)?;
        Ok((database, identity, journal))
    })?;
    if identity.database_id != database_id {
        return Err(damaged(
            path,
            &format!(
                "it now holds database {}, not {database_id}: the file was replaced",
                identity.database_id
            ),
        ));
    }
    if identity.last_id < acknowledged {
        return Err(damaged(
            path,
            &format!(
                "it ends at version {}, before the acknowledged version {acknowledged}",
                identity.last_id
            ),
        ));
    }
    Ok((database, identity, journal))
}

/// Opens the journal of the database just opened, stores the versions it holds beyond the
/// database's durable end (a crash lost them from redb), and starts the journal's next
/// generation. Returns the journal and the identity with the last id after the replay.
fn recover(
    database: &Database,
    path: &Path,
    mut identity: Identity,
) -> Result<(Journal, Identity), Fault> {
    let (mut journal, replay) =
        Journal::open(&journal::path_of(path), identity.database_id, identity.last_id)?;
    if let Some(last) = replay.last() {
        ops::replay(database, &replay)?;
        tracing::info!(
            path = %path.display(),
            versions = replay.len(),
            last_id = last.version.id,
            "stored the versions the journal held beyond the database"
        );
        identity.last_id = last.version.id;
    }
    journal.restart()?;
    Ok((journal, identity))
}

/// Gives back to the file system the pages an upgrade freed, which would otherwise stay in the
/// file until appends reuse them: an upgrade writes the log anew beside the old one. A failure
/// leaves the file as it was, only larger, and is logged.
fn compact(database: &mut Database, path: &Path) {
    let before = std::fs::metadata(path).map(|metadata| metadata.len()).ok();
    match database.compact() {
        Ok(_) => {
            let after = std::fs::metadata(path).map(|metadata| metadata.len()).ok();
            tracing::info!(path = %path.display(), ?before, ?after, "compacted the upgraded file");
        }
        Err(error) => {
            tracing::warn!(path = %path.display(), %error, "could not compact the upgraded file");
        }
    }
}

/// redb's builder with this store's options.
fn builder(options: &RedbOptions) -> redb::Builder {
    let mut builder = Database::builder();
    builder.set_cache_size(options.cache_size);
    builder
}

/// Runs `open`, turning damage it meets, whether reported or a panic, into one line that names
/// the file and says what to do.
fn open_checked(
    path: &Path,
    open: impl FnOnce() -> Result<(Database, Identity, Journal), Fault>,
) -> Result<(Database, Identity, Journal), StorageError> {
    // Nothing outlives a failed open, so a panic needs no reopen.
    catching(false, open).map_err(|fault| match fault.error {
        StorageError::Corrupt(message) => damaged(path, &message),
        error => error,
    })
}
