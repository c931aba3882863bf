//! The trait every storage backend implements.

use std::future::Future;
use std::sync::Arc;

use uuid::Uuid;

use crate::{Horizon, NewVersion, Pruned, Retention, StorageError, Tail, Version};

/// An append-only, durable log of event versions, with an index by event name, that every writer
/// of the database shares.
///
/// Several engines may append at once: tasks of one process sharing a store, or processes on
/// several machines whose stores open the same database (a replicated log). Each engine learns of
/// every committed version, its own and the others', through a [`tail`](Storage::tail), in id
/// order. Reads run concurrently from many tasks. Every method is `async` so that a
/// network-backed store does not block the runtime; a backend whose engine blocks (a local
/// database file) must move that work off the async threads itself, for example with
/// `tokio::task::spawn_blocking`, except on a thread marked with
/// [`mark_writer_thread`](crate::mark_writer_thread): an engine's writer of its own, which it may
/// block. [`run_blocking`](crate::run_blocking) does either, as the calling thread allows.
///
/// **Reads never go back in time.** A read through a store reflects at least every version that
/// an append through that store acknowledged and that a tail of that store delivered. A
/// replicated backend that may answer a read from a replica that is behind must notice it and
/// read again (from the leader, or once the replica has caught up), since a subscriber that
/// resumes from an id its tail delivered would otherwise miss versions without knowing.
///
/// Each method states its contract. [`conformance::run`](crate::conformance::run) checks every one
/// of them that holds for every backend; a backend that passes it can be handed to the engine.
///
/// # Errors
///
/// Every method lists the [`StorageError`] variants it may return. All of them return
/// [`StorageError::Closed`] after [`close`](Storage::close) and [`StorageError::Backend`] for a
/// failure that fits no other variant. A failed call never leaves a partial effect behind (except
/// [`StorageError::OutcomeUnknown`], which says it cannot tell), and a backend whose engine can
/// recover from a failure (a full disk that has been freed, an I/O error that has passed, a lost
/// leader) does so by itself: a later call may succeed without the store being closed and
/// reopened.
pub trait Storage: Send + Sync + 'static {
    /// The identity of this database, created with it and never changed afterwards.
    ///
    /// Two databases never share an identity, so a version id read from one is never mistaken for
    /// a position in another, even one created at the same path after the first was wiped. Every
    /// store that opens the same shared database reports the same identity.
    fn database_id(&self) -> Uuid;

    /// Stores `batch` durably and atomically, and returns the stored versions in batch order.
    ///
    /// - The backend gives each new version an id: greater than the id of every version
    ///   committed before the batch, by any writer, and each next one greater than the one before.
    ///   Ids start at 1 but need not be contiguous: another writer's versions, or a failed batch,
    ///   may leave holes.
    /// - The batch is stored in one piece: no version of another append, through this store or
    ///   any other of the database, gets an id between two ids of the batch. The engine relies on
    ///   it to keep the versions of one insert together.
    /// - `event`, `timestamp` and `data` come back exactly as given.
    /// - **Idempotency.** A new version whose [`idempotency_key`](NewVersion::idempotency_key)
    ///   equals the key of a version this database stored within its idempotency window (earlier
    ///   in the batch included) is not stored: the version stored under that key comes back in
    ///   its place, with its own id, event, timestamp and data. The window is the backend's
    ///   setting and is measured from that version's `timestamp`; after it, the key may be
    ///   reused. A batch's other versions are stored as usual.
    /// - When the future returns `Ok`, the whole batch survives a crash of the process or the
    ///   machine. When it returns `Err`, none of the batch is visible, now or after a restart,
    ///   except after [`StorageError::OutcomeUnknown`].
    /// - An empty batch returns an empty list and stores nothing.
    ///
    /// # Errors
    ///
    /// [`StorageError::Full`] when there is no room for the batch;
    /// [`StorageError::Unavailable`] when the backend cannot take writes now (no leader, no
    /// quorum); [`StorageError::Corrupt`] when data the append has to read (such as the last id)
    /// is damaged; [`StorageError::Backend`] or [`StorageError::Closed`] otherwise. In every
    /// case none of the batch is visible. [`StorageError::OutcomeUnknown`] when the backend sent
    /// the batch but cannot tell whether it was stored: any of it may be, and may become visible
    /// later; a retry with the same idempotency keys settles it.
    fn append(
        &self,
        batch: Vec<NewVersion>,
    ) -> impl Future<Output = Result<Vec<Version>, StorageError>> + Send;

    /// Every version committed with an id greater than `after`, by any writer of the database,
    /// each exactly once, in id order, in batches of the backend's choosing; those stored
    /// already first, then each new one as it commits.
    ///
    /// This is how an engine learns of versions, its own included: it starts a tail from the
    /// last id of [`latest`](Storage::latest) and publishes what the tail delivers. An append
    /// acknowledged by this store is delivered by its tails soon after, without waiting for
    /// another append; a version is never delivered before it is durably committed.
    ///
    /// The tail ends (yields `None`) once the store is closed. A backend that loses its
    /// connection resumes the tail by itself where it stopped; an `Err` item means the tail
    /// cannot go on (the data it has to read is damaged, say), and it ends after it. A caller
    /// may then start a new tail after the last id it received.
    fn tail(&self, after: u64) -> Tail;
    /// The latest version of every event, ordered by id, oldest first.
    ///
    /// This is the snapshot a new subscriber receives. Backends must answer it without reading
    /// every stored version: its cost is proportional to the number of distinct events. It is
    /// consistent: it is the state of the log at one point, so the last id it holds is the last
    /// id committed at that point, and a tail started after it misses nothing.
    ///
    /// # Errors
    ///
    /// [`StorageError::Corrupt`] when stored data is damaged, [`StorageError::Unavailable`] when
    /// the backend cannot answer now, [`StorageError::Backend`] when it cannot be read,
    /// [`StorageError::Closed`] after `close`. Never [`StorageError::Full`] nor
    /// [`StorageError::OutcomeUnknown`].
    fn latest(&self) -> impl Future<Output = Result<Vec<Version>, StorageError>> + Send;

    /// Versions of exactly `event` (byte-wise equal name; no prefix or pattern matching) whose id
    /// is greater than `after`, oldest first, at most `limit` of them.
    ///
    /// Paging with `after` set to the last id of the previous page visits every version of the
    /// event once. An event that was never stored gives an empty list.
    ///
    /// # Errors
    ///
    /// As for [`latest`](Storage::latest). "Nothing stored" is `Ok` with an
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
    /// As for [`latest`](Storage::latest).
    fn since(
        &self,
        after: u64,
        limit: usize,
    ) -> impl Future<Output = Result<Vec<Version>, StorageError>> + Send;

    /// The latest version with an id at most `at` of every event that has one, ordered by id,
    /// oldest first: the state of the log as it was once `at` was committed.
    ///
    /// An event whose versions up to `at` were all pruned is left out, as if it did not exist
    /// then; [`horizons`](Storage::horizons) tells the two apart. Like
    /// [`latest`](Storage::latest), which it equals for `at = u64::MAX`, it is answered without
    /// reading every stored version: its cost is proportional to the number of distinct events.
    ///
    /// # Errors
    ///
    /// As for [`latest`](Storage::latest).
    fn latest_at(&self, at: u64)
    -> impl Future<Output = Result<Vec<Version>, StorageError>> + Send;

    /// Removes the oldest versions of exactly `event` that `retention` lets go of, oldest first,
    /// at most `limit` of them, and records the event's [`Horizon`].
    ///
    /// - Only a prefix of the event's history is removed: the call stops at the first version
    ///   `retention` keeps, so every version of the event newer than one still stored is still
    ///   stored.
    /// - The latest version of the event is never removed, so [`latest`](Storage::latest) is the
    ///   same before and after.
    /// - A version stored within the idempotency window (measured from its timestamp to the
    ///   backend's clock) is never removed, so a retry still finds its original.
    /// - Once the call returns `Ok`, [`horizons`](Storage::horizons) names the event with the
    ///   greatest id removed, and no read returns a removed version. Removal need not be durable,
    ///   but the horizon always covers what is removed: after a crash the removed versions may be
    ///   back with the horizon as it was before, or the horizon may stay ahead of versions still
    ///   there, never the other way round.
    /// - [`Pruned::more`] says whether versions the retention lets go of remain: ones past
    ///   `limit`, or ones kept for the idempotency window.
    /// - An event never stored, or one with nothing to remove, gives `Pruned::default()`.
    ///
    /// The space the removed versions took is reused by later appends, or given back.
    ///
    /// # Errors
    ///
    /// As for [`append`](Storage::append), except `OutcomeUnknown`: after an `Err` some of the
    /// versions may have been removed, and the horizon already covers them.
    fn prune(
        &self,
        event: &str,
        retention: Retention,
        limit: usize,
    ) -> impl Future<Output = Result<Pruned, StorageError>> + Send;

    /// Every event some versions of which were pruned, through any store of the database, with
    /// the greatest id pruned of each, in no particular order.
    ///
    /// Its cost is proportional to the number of events that were pruned.
    ///
    /// # Errors
    ///
    /// As for [`latest`](Storage::latest).
    fn horizons(&self) -> impl Future<Output = Result<Vec<Horizon>, StorageError>> + Send;

    /// How many bytes the database takes where it is kept (a file and its journal, a stream),
    /// or `None` when the backend cannot tell. The default says `None`.
    ///
    /// # Errors
    ///
    /// As for [`latest`](Storage::latest).
    fn size(&self) -> impl Future<Output = Result<Option<u64>, StorageError>> + Send {
        std::future::ready(Ok(None))
    }

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

    fn tail(&self, after: u64) -> Tail {
        (**self).tail(after)
    }

    fn latest_at(
        &self,
        at: u64,
    ) -> impl Future<Output = Result<Vec<Version>, StorageError>> + Send {
        (**self).latest_at(at)
    }

    fn prune(
        &self,
        event: &str,
        retention: Retention,
        limit: usize,
    ) -> impl Future<Output = Result<Pruned, StorageError>> + Send {
        (**self).prune(event, retention, limit)
    }

    fn horizons(&self) -> impl Future<Output = Result<Vec<Horizon>, StorageError>> + Send {
        (**self).horizons()
    }

    fn size(&self) -> impl Future<Output = Result<Option<u64>, StorageError>> + Send {
        (**self).size()
    }

    fn writable(&self) -> impl Future<Output = Result<(), StorageError>> + Send {
        (**self).writable()
    }

    fn close(&self) -> impl Future<Output = Result<(), StorageError>> + Send {
        (**self).close()
    }
}
