//! The engine's error type.

use std::sync::Arc;

use broker_storage::StorageError;

/// Why an engine operation failed.
#[derive(Debug, Clone, thiserror::Error)]
#[non_exhaustive]
pub enum Error {
    /// The event name is empty, too long, or contains a control character.
    #[error("invalid event name: {0}")]
    InvalidEventName(String),
    /// The data is not valid JSON.
    #[error("invalid JSON data: {0}")]
    InvalidData(String),
    /// The idempotency key is empty, too long, or holds a character other than visible ASCII.
    #[error("invalid idempotency key: {0}")]
    InvalidIdempotencyKey(String),
    /// The idempotency key was used within its window for another insert, of another event or
    /// other data: the version it stored is `id`, of `event`. Nothing was stored.
    #[error(
        "the idempotency key was already used for version {id} of event {event:?}, with other \
         data; a retry must send the same event and data, and a new insert a new key"
    )]
    IdempotencyKeyReused {
        /// The version stored under the key.
        id: u64,
        /// Its event.
        event: String,
    },
    /// An insert of several versions holds more than `max`, the most one commit holds
    /// ([`Config::max_batch`](crate::Config::max_batch)); nothing was stored.
    #[error(
        "an insert holds at most {max} versions, the most one commit stores; nothing was stored"
    )]
    TooManyVersions {
        /// The most versions one insert may hold.
        max: usize,
    },
    /// A state of the past was asked for that needs versions of `event` that were pruned: its
    /// versions up to `pruned_through` are gone, and its state is known from `oldest_kept` on.
    #[error(
        "the history of event {event:?} was pruned through version {pruned_through}: its state \
         is known from version {oldest_kept} on"
    )]
    Pruned {
        /// The event.
        event: String,
        /// The greatest id pruned of it.
        pruned_through: u64,
        /// The id of its oldest version kept: the first point whose state is known.
        oldest_kept: u64,
    },
    /// The broker was closed with [`Broker::close`](crate::Broker::close); nothing was stored.
    #[error("the broker is closed")]
    Closed,
    /// The storage backend failed. For an insert, nothing of it was stored.
    ///
    /// One commit serves a whole batch of inserts, so the same error is shared by each of them.
    #[error(transparent)]
    Storage(#[from] Arc<StorageError>),
}

impl From<StorageError> for Error {
    fn from(error: StorageError) -> Error {
        match error {
            StorageError::Closed => Error::Closed,
            error => Error::Storage(Arc::new(error)),
        }
    }
}
