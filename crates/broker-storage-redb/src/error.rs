//! How redb's failures become [`StorageError`]s. redb types never appear in the public API: each
//! error is mapped here, at the edge of the crate.

use std::path::Path;

use broker_storage::StorageError;
use tokio::task::JoinError;

/// Maps any redb error: corruption redb detects becomes [`StorageError::Corrupt`], everything
/// else [`StorageError::Backend`].
pub(crate) fn from_redb(error: impl Into<redb::Error>) -> StorageError {
    match error.into() {
        redb::Error::Corrupted(message) => StorageError::Corrupt(message),
        error => StorageError::backend(error),
    }
}

/// Maps a failure to open the file at `path`, naming the file, since redb's own message does not.
pub(crate) fn from_open(path: &Path, error: redb::DatabaseError) -> StorageError {
    let path = path.display();
    StorageError::backend(match error {
        redb::DatabaseError::DatabaseAlreadyOpen => {
            format!("cannot open {path}: the file is already open, in this process or another")
        }
        error => format!("cannot open {path} as a redb database: {error}"),
    })
}

/// Maps a blocking task that did not return: it panicked, or the runtime is shutting down. What
/// it was doing is not visible: redb aborts the transaction of a panicking thread.
pub(crate) fn from_join(error: JoinError) -> StorageError {
    StorageError::backend(error)
}
