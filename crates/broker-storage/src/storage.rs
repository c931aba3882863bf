//! The trait every storage backend implements.

use std::future::Future;
use std::sync::Arc;

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
/// of them that holds for every backend; a backend that passes it can be handed to the engine.
///
/// # Errors
///
/// Every method lists the [`StorageError`] variants it may return. All of them return
/// [`StorageError::Closed`] after [`close`](Storage::close) and [`StorageError::Backend`] for a
/// failure that fits no other variant. A failed call never leaves a partial effect behind, and a
/// backend whose engine can recover from a failure (a full disk that has been freed, an I/O error
/// that has passed) does so by itself: a later call may succeed without the store being closed
/// and reopened.
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
    ///
    /// # Errors
    ///
    /// [`StorageError::Full`] when there is no room for the batch;
    /// [`StorageError::Corrupt`] when data the append has to read (such as the last id) is
    /// damaged; [`StorageError::Backend`] or [`StorageError::Closed`] otherwise. In every case
    /// none of the batch is visible.
    fn append(
        &self,
        batch: Vec<NewVersion>,
    ) -> impl Future<Output = Result<Vec<Version>, StorageError>> + Send;

    /// The latest version of every event, ordered by id, oldest first.
    ///
    /// This is the snapshot a new subscriber receives. Backends must answer it without reading
    /// every stored version: its cost is proportional to the number of distinct events.
    ///
    /// # Errors
    ///
    /// [`StorageError::Corrupt`] when stored data is damaged, [`StorageError::Backend`] when it
    /// cannot be read, [`StorageError::Closed`] after `close`. Never [`StorageError::Full`].
    fn latest(&self) -> impl Future<Output = Result<Vec<Version>, StorageError>> + Send;

    /// Versions of exactly `event` (byte-wise equal name; no prefix or pattern matching) whose id
    /// is greater than `after`, oldest first, at most `limit` of them.
    ///
    /// Paging with `after` set to the last id of the previous page visits every version of the
    /// event once. An event that was never stored gives an empty list.
    ///
    /// # Errors
    ///
    /// As for [`latest`](Storage::latest): [`StorageError::Corrupt`], [`StorageError::Backend`],
    /// [`StorageError::Closed`]; never [`StorageError::Full`]. "Nothing stored" is `Ok` with an
    /// empty list, never an error.
    fn history(
        &self,
        event: &str,
        after: u64,
        limit: usize,
    ) -> impl Future<Output = Result<Vec<Version>, StorageError>> + Send;

    /// Versions of every event whose id is greater than `after`, in id order, at most `limit`.
    ///
    /// This is the replay a reconnecting subscriber receives.
    ///
    /// # Errors
    ///
    /// As for [`latest`](Storage::latest): [`StorageError::Corrupt`], [`StorageError::Backend`],
    /// [`StorageError::Closed`]; never [`StorageError::Full`].
    fn since(
        &self,
        after: u64,
        limit: usize,
    ) -> impl Future<Output = Result<Vec<Version>, StorageError>> + Send;

    /// Whether an append would be attempted now: `Ok` when the backend is ready to take writes,
    /// the error an append would fail with otherwise. It stores nothing.
    ///
    /// The engine asks this while appends are failing, to learn when the backend has recovered
    /// (space freed, a connection back) without storing anything to find out. A backend that
    /// recovers by itself may use the call to try (reopening a file, reconnecting). The default
    /// says yes: a backend that cannot tell is found out by its next append.
    ///
    /// # Errors
    ///
    /// What the next append would fail with, such as [`StorageError::Full`]; once closed, a
    /// backend may answer [`StorageError::Closed`].
    fn writable(&self) -> impl Future<Output = Result<(), StorageError>> + Send {
        std::future::ready(Ok(()))
    }

    /// Flushes and releases the backend.
    ///
    /// Every later call of any method returns [`StorageError::Closed`]; closing twice is not an
    /// error.
    ///
    /// # Errors
    ///
    /// [`StorageError::Backend`] when the backend fails to flush or release its resources; the
    /// store is closed all the same.
    fn close(&self) -> impl Future<Output = Result<(), StorageError>> + Send;
}

/// A shared store is a store: every method forwards to the one behind the [`Arc`], the
/// defaulted [`writable`](Storage::writable) included, so the backend's own answer is kept.
///
/// The engine takes its store by value. A program that also needs the store itself, to call
/// methods the trait does not have (a backend's own backup, say), hands the engine an
/// `Arc<S>` and keeps a clone. Closing through either closes the one store.
impl<S: Storage + ?Sized> Storage for Arc<S> {
    fn database_id(&self) -> Uuid {
        (**self).database_id()
    }

    fn append(
        &self,
        batch: Vec<NewVersion>,
    ) -> impl Future<Output = Result<Vec<Version>, StorageError>> + Send {
        (**self).append(batch)
    }

    fn latest(&self) -> impl Future<Output = Result<Vec<Version>, StorageError>> + Send {
        (**self).latest()
    }

    fn history(
        &self,
        event: &str,
        after: u64,
        limit: usize,
    ) -> impl Future<Output = Result<Vec<Version>, StorageError>> + Send {
        (**self).history(event, after, limit)
    }

    fn since(
        &self,
        after: u64,
        limit: usize,
    ) -> impl Future<Output = Result<Vec<Version>, StorageError>> + Send {
        (**self).since(after, limit)
    }

    fn writable(&self) -> impl Future<Output = Result<(), StorageError>> + Send {
        (**self).writable()
    }

    fn close(&self) -> impl Future<Output = Result<(), StorageError>> + Send {
        (**self).close()
    }
}
