//! The error every backend maps its own failures into.

use std::error::Error as StdError;

/// Why a storage operation failed.
///
/// Backends map their own error types into these variants; no backend type leaks through the
/// [`Storage`](crate::Storage) trait.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum StorageError {
    /// The backend could not read or write: an I/O error, a database engine error, a lost network
    /// connection. Nothing of the failed operation is visible afterwards.
    #[error("storage backend failed: {0}")]
    Backend(#[source] Box<dyn StdError + Send + Sync + 'static>),
    /// Data read back from the backend does not decode into the records that were written.
    #[error("stored data is corrupt: {0}")]
    Corrupt(String),
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
