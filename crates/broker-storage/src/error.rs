//! The error every backend maps its own failures into.

use std::error::Error as StdError;

/// Why a storage operation failed.
///
/// Backends map their own error types into these variants; no backend type leaks through the
/// [`Storage`](crate::Storage) trait. Each variant states what the caller may rely on after it;
/// the trait's methods say which of them each one can return.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum StorageError {
    /// The backend could not read or write: an I/O error, a database engine error, a lost network
    /// connection. Nothing of the failed operation is visible afterwards.
    ///
    /// The message includes the backend's, and the backend error is not also its `source()`, so
    /// that a report of the whole chain names each cause once. A caller that needs the backend
    /// error's type matches on the variant and downcasts the box.
    #[error("storage backend failed: {0}")]
    Backend(Box<dyn StdError + Send + Sync + 'static>),
    /// There is no room to store the batch: the device or the quota is full, or the free space
    /// left is below a minimum the backend keeps in reserve. The message says which, and names
    /// the place that is full.
    ///
    /// Nothing of the failed operation is visible, now or after a restart. The condition is
    /// temporary: the store stays open, what was stored before stays readable, and appends
    /// succeed again once space is freed, without closing and reopening the store. Only writes
    /// return it; a read never does.
    #[error("storage is full: {0}")]
    Full(String),
    /// Stored data is damaged: it does not decode into the records that were written, the
    /// database engine found a failed checksum or an inconsistent structure, or the file is not
    /// a database at all. The message names what is damaged.
    ///
    /// Retrying does not help; the data has to be checked and, if need be, restored from a
    /// backup. A read that returns it may succeed for other events or ranges, whose data is
    /// intact.
    #[error("stored data is corrupt: {0}")]
    Corrupt(String),
    /// The backend cannot take the operation now, and did nothing: a replicated log that has
    /// no leader or no quorum, a server that refused the request before acting on it. The
    /// message says what is missing.
    ///
    /// Nothing of the failed operation is visible, now or later. The condition is temporary: a
    /// retry succeeds once the backend is back, without the store being reopened.
    #[error("storage is unavailable: {0}")]
    Unavailable(String),
    /// An append was sent but its outcome cannot be known: the backend did not answer in time
    /// after the request left, and retrying with the same ids did not settle it. Some or all of
    /// the batch may have been stored, and may become visible later.
    ///
    /// Only [`Storage::append`](crate::Storage::append) returns it. A publisher that retries with
    /// the same idempotency keys within the idempotency window gets the versions that were
    /// stored, and stores the rest, never a version twice.
    #[error("the outcome of the append is unknown: {0}")]
    OutcomeUnknown(String),
    /// The storage was closed with [`Storage::close`](crate::Storage::close).
    #[error("storage is closed")]
    Closed,
}

impl StorageError {
    /// Wraps any backend error as [`StorageError::Backend`].
    pub fn backend(error: impl Into<Box<dyn StdError + Send + Sync + 'static>>) -> StorageError {
        StorageError::Backend(error.into())
    }
}
