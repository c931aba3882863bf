//! How redb's failures become [`StorageError`]s, and which of them leave the open database
//! unusable until it is reopened. redb types never appear in the public API: each error is
//! mapped here, at the edge of the crate.

use std::any::Any;
use std::io;
use std::panic::{AssertUnwindSafe, catch_unwind};
use std::path::Path;

use broker_storage::StorageError;
use tokio::task::JoinError;

/// A failed operation: the error for the caller, and whether the open database must be reopened
/// before it can serve again.
#[derive(Debug)]
pub(crate) struct Fault {
    pub(crate) error: StorageError,
    /// redb latches its first I/O error and then fails every write (and every read that misses
    /// its cache) with "previous I/O error" until the database is closed and opened again.
    pub(crate) reopen: bool,
    /// The device ran out of space (not a quota): retrying is pointless until more is free.
    pub(crate) device_full: bool,
}

impl Fault {
    /// A fault that leaves the database usable, or not when `reopen` is set.
    pub(crate) fn new(error: StorageError, reopen: bool) -> Fault {
        Fault { error, reopen, device_full: false }
    }
}

impl From<StorageError> for Fault {
    /// An error found by this crate's own checks, which leave the database as it was.
    fn from(error: StorageError) -> Fault {
        Fault::new(error, false)
    }
}

/// Maps any redb error, and tells whether it broke the open database.
///
/// - A full device or quota becomes [`StorageError::Full`]; other I/O errors
///   [`StorageError::Backend`]. Both latch redb's failed state, so both ask for a reopen.
/// - Corruption redb detects becomes [`StorageError::Corrupt`]. redb also reports a discarded
///   allocator state (left by a failed commit) as corruption, and that one only a reopen clears,
///   so a corruption found while writing asks for a reopen too; see [`from_redb_write`].
/// - Everything else becomes [`StorageError::Backend`].
pub(crate) fn from_redb(error: impl Into<redb::Error>) -> Fault {
    match error.into() {
        redb::Error::Io(error) => {
            let device_full = error.kind() == io::ErrorKind::StorageFull;
            Fault { error: from_io(error), reopen: true, device_full }
        }
        redb::Error::PreviousIo | redb::Error::LockPoisoned(_) | redb::Error::DatabaseClosed => {
            Fault::new(
                StorageError::backend(
                    "the database failed earlier and is unusable until it is reopened",
                ),
                true,
            )
        }
        redb::Error::Corrupted(message) => {
            Fault::new(StorageError::Corrupt(format!("redb: {message}")), false)
        }
        error => Fault::new(StorageError::backend(error), false),
    }
}

/// [`from_redb`] for the calls of a write transaction. A corruption asks for a reopen too: a
/// failed commit leaves redb's allocator state discarded, which redb reports as a corruption on
/// every later write until the database is reopened.
pub(crate) fn from_redb_write(error: impl Into<redb::Error>) -> Fault {
    let mut fault = from_redb(error);
    if matches!(fault.error, StorageError::Corrupt(_)) {
        fault.reopen = true;
    }
    fault
}

/// Maps an I/O error: out of space is [`StorageError::Full`], anything else a backend failure.
pub(crate) fn from_io(error: io::Error) -> StorageError {
    match error.kind() {
        io::ErrorKind::StorageFull | io::ErrorKind::QuotaExceeded => {
            StorageError::Full(error.to_string())
        }
        _ => StorageError::backend(error),
    }
}

/// Runs `work`, turning a panic inside it into a [`Fault`] with [`from_panic`]'s error.
///
/// `reopen` says whether a panic leaves the database to be reopened: a write transaction that
/// unwinds leaves redb's allocator state to be rebuilt, a read leaves nothing behind.
///
/// Unwind safety: on a panic, everything `work` borrowed from redb is dropped or, for the open
/// database, reopened when `reopen` is set; this crate keeps no state of its own that a panic
/// could leave half-updated.
pub(crate) fn catching<T>(
    reopen: bool,
    work: impl FnOnce() -> Result<T, Fault>,
) -> Result<T, Fault> {
    catch_unwind(AssertUnwindSafe(work))
        .unwrap_or_else(|payload| Err(Fault::new(from_panic(&*payload), reopen)))
}

/// Maps a blocking task that did not return: it panicked outside [`catching`], or the runtime is
/// shutting down. What it was doing is not visible: redb aborts the transaction of a panicking
/// thread.
pub(crate) fn from_join(error: JoinError) -> StorageError {
    if error.is_panic() { from_panic(&*error.into_panic()) } else { StorageError::backend(error) }
}

/// Maps a panic caught on a blocking thread while redb read or wrote the file.
///
/// redb trusts what it reads back from its own file, and some damage makes it panic (an index
/// out of bounds, a failed internal assertion, a string that is not UTF-8) rather than return an
/// error. The file is then damaged: nothing else this crate does can panic.
pub(crate) fn from_panic(payload: &(dyn Any + Send)) -> StorageError {
    StorageError::Corrupt(format!("redb failed on damaged data: {}", panic_message(payload)))
}

/// The message a panic was raised with, when it was a string.
fn panic_message(payload: &(dyn Any + Send)) -> &str {
    if let Some(message) = payload.downcast_ref::<&str>() {
        message
    } else if let Some(message) = payload.downcast_ref::<String>() {
        message
    } else {
        "a panic without a message"
    }
}

/// Names the file in the message of an error that concerns its contents: a corruption or a full
/// device is reported by redb without saying which file it was.
pub(crate) fn in_file(path: &Path, error: StorageError) -> StorageError {
    match error {
        StorageError::Corrupt(message) => {
            StorageError::Corrupt(format!("{}: {message}", path.display()))
        }
        StorageError::Full(message) => StorageError::Full(format!("{}: {message}", path.display())),
        error => error,
    }
}

/// Maps a failure to open the file at `path`, naming the file, since redb's own message does not.
///
/// A file redb cannot make sense of (a damaged header, a failed checksum, data that is not a
/// database at all) is [`StorageError::Corrupt`] with redb's reason alone, for the caller to wrap
/// with [`damaged`]; a file that cannot be reached, locked or grown is [`StorageError::Backend`]
/// or [`StorageError::Full`]. A file locked by another open database is a backend error holding
/// an [`io::Error`] of kind [`io::ErrorKind::ResourceBusy`].
pub(crate) fn from_open(path: &Path, error: redb::DatabaseError) -> StorageError {
    let display = path.display();
    match error {
        // An I/O error of its own kind, so that a caller can tell "in use" from other failures
        // (and suggest a backup instead) without reading the message.
        redb::DatabaseError::DatabaseAlreadyOpen => StorageError::backend(io::Error::new(
            io::ErrorKind::ResourceBusy,
            format!("cannot open {display}: the file is already open, in this process or another"),
        )),
        redb::DatabaseError::Storage(redb::StorageError::Corrupted(message)) => {
            StorageError::Corrupt(format!("redb: {message}"))
        }
        redb::DatabaseError::Storage(redb::StorageError::Io(error))
            if error.kind() == io::ErrorKind::InvalidData =>
        {
            StorageError::Corrupt(error.to_string())
        }
        redb::DatabaseError::Storage(redb::StorageError::Io(error))
            if matches!(
                error.kind(),
                io::ErrorKind::StorageFull | io::ErrorKind::QuotaExceeded
            ) =>
        {
            StorageError::Full(format!("cannot open {display}: {error}"))
        }
        error => {
            StorageError::backend(format!("cannot open {display} as a redb database: {error}"))
        }
    }
}

/// The one-line report of a database file that cannot be read: which file, what is wrong with
/// it, and what to do.
pub(crate) fn damaged(path: &Path, detail: &str) -> StorageError {
    StorageError::Corrupt(format!(
        "the database file {} is damaged ({detail}); check it, and restore it from a backup if \
         the check finds a problem",
        path.display()
    ))
}
