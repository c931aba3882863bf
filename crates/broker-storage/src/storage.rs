//! The trait every storage backend implements.

use std::future::Future;

use uuid::Uuid;

use crate::{NewVersion, StorageError, Version};

/// An append-only, durable log of event versions, with an index by event name.
///
/// The broker's engine is the only writer: it calls [`append`](Storage::append) from one task,
/// one batch at a time, and reads concurrently from many tasks. Every method is `async` so that a
/// network-backed store does not block the runtime; a backend whose engine blocks (a local
/// database file) must move that work off the async threads itself, for example with
/// `tokio::task::spawn_blocking`.
///
/// Each method states its contract. [`conformance::run`](crate::conformance::run) checks every one
/// of them; a backend that passes it can be handed to the engine.
pub trait Storage: Send + Sync + 'static {
    /// The identity of this database, created with it and never changed afterwards.
    ///
    /// Two databases never share an identity, so a version id read from one is never mistaken for
    /// a position in another, even one created at the same path after the first was wiped.
    fn database_id(&self) -> Uuid;

    /// Stores `batch` durably and atomically, and returns the stored versions in batch order.
    ///
    /// - The backend gives each version an id: the first is greater than every id this database
    ///   ever returned, and each next one is greater than the one before. Ids start at 1.
    /// - `event`, `timestamp` and `data` come back exactly as given.
    /// - When the future returns `Ok`, the whole batch survives a crash of the process or the
    ///   machine. When it returns `Err`, none of the batch is visible, now or after a restart.
    /// - An empty batch returns an empty list and stores nothing.
    fn append(
        &self,
        batch: Vec<NewVersion>,
    ) -> impl Future<Output = Result<Vec<Version>, StorageError>> + Send;

    /// The latest version of every event, ordered by id, oldest first.
    ///
    /// This is the snapshot a new subscriber receives. Backends must answer it without reading
    /// every stored version: its cost is proportional to the number of distinct events.
    fn latest(&self) -> impl Future<Output = Result<Vec<Version>, StorageError>> + Send;

    /// Versions of exactly `event` (byte-wise equal name; no prefix or pattern matching) whose id
    /// is greater than `after`, oldest first, at most `limit` of them.
    ///
    /// Paging with `after` set to the last id of the previous page visits every version of the
    /// event once. An event that was never stored gives an empty list.
    fn history(
        &self,
        event: &str,
        after: u64,
        limit: usize,
    ) -> impl Future<Output = Result<Vec<Version>, StorageError>> + Send;

    /// Versions of every event whose id is greater than `after`, in id order, at most `limit`.
    ///
    /// This is the replay a reconnecting subscriber receives.
    fn since(
        &self,
        after: u64,
        limit: usize,
    ) -> impl Future<Output = Result<Vec<Version>, StorageError>> + Send;

    /// Flushes and releases the backend.
    ///
    /// Every later call of any method returns [`StorageError::Closed`]; closing twice is not an
    /// error.
    fn close(&self) -> impl Future<Output = Result<(), StorageError>> + Send;
}
