//! [`Broker`]: the handle through which everything reaches the engine.

use std::sync::{Arc, Mutex};
use std::time::Duration;

use broker_storage::{NewVersion, Storage, Uuid, Version};
use tokio::sync::mpsc::error::TrySendError;
use tokio::sync::{mpsc, oneshot};

use crate::config::Config;
use crate::erased::DynStorage;
use crate::feed;
use crate::horizons::Horizons;
use crate::item::{Insert, Versions};
use crate::key::{validate_idempotency_key, version_key};
use crate::metrics::Metrics;
use crate::name::validate_event_name;
use crate::options::SubscribeOptions;
use crate::past::{At, state_at};
use crate::pruner;
use crate::shared::Shared;
use crate::state::State;
use crate::storage_health::{self, StorageHealth};
use crate::subscription::Subscription;
use crate::writer;
use crate::{Entry, Error, Json};

/// A running broker: insert versions, subscribe to them, read an event's history.
///
/// Cloning is cheap and every clone is the same broker. It needs a Tokio runtime: opening it
/// spawns its tasks, and the thread that commits inserts.
#[derive(Clone)]
pub struct Broker {
    shared: Arc<Shared>,
}

impl Broker {
    /// Opens a broker on `storage`, loading the latest version of every event into memory.
    ///
    /// # Panics
    ///
    /// Outside a Tokio runtime.
    pub async fn open<S: Storage>(storage: S, config: Config) -> Result<Broker, Error> {
        let latest = storage.latest().await?;
        let horizons = Arc::new(Horizons::new(storage.horizons().await?));
        // The live channel's overflow policy, in entries and in bytes, is written in `State::new`.
        let latest = latest.into_iter().map(Entry::new);
        let state = Arc::new(State::new(latest, config.live_capacity, config.live_bytes));
        let storage: Arc<dyn DynStorage> = Arc::new(storage);
        // Back-pressure: when `queue_capacity` inserts wait for a commit, `insert` waits for room
        // rather than growing the queue without bound.
        let (sender, queue) = mpsc::channel(config.queue_capacity);
        let metrics = Arc::new(Metrics::register());
        let health = Arc::new(StorageHealth::new());
        // The snapshot is consistent, so a tail after its last id misses nothing committed since.
        let (acknowledge, acknowledgements) = mpsc::unbounded_channel();
        let (drained_sender, drained) = oneshot::channel();
        let feed = tokio::spawn(feed::run(
            storage.clone(),
            state.clone(),
            health.clone(),
            state.last_id(),
            acknowledgements,
            drained_sender,
        ));
        let writer = writer::spawn(
            storage.clone(),
            metrics.clone(),
            health.clone(),
            queue,
            acknowledge,
            config.clone(),
            state.newest_timestamp(),
        )?;
        let watch = tokio::spawn(storage_health::watch(storage.clone(), health.clone()));
        let pruner = tokio::spawn(pruner::run(
            storage.clone(),
            state.clone(),
            horizons.clone(),
            metrics.clone(),
            config.retention.clone().into(),
            config.prune_interval,
        ));
        tracing::info!(
            database_id = %storage.database_id(),
            events = state.event_count(),
            last_id = state.last_id(),
            "broker opened"
        );
        Ok(Broker {
            shared: Arc::new(Shared {
                database_id: storage.database_id(),
                storage,
                state,
                metrics,
                config,
                inserts: Mutex::new(Some(sender)),
                writer: Mutex::new(Some(writer)),
                feed: Mutex::new(Some((feed, drained))),
                health,
                watch,
                horizons,
                pruner,
            }),
        })
    }

    /// Stores a new version of `event` and publishes it to subscribers.
    ///
    /// Returns once the version is durably committed, with its id and timestamp. Concurrent
    /// inserts share commits, and their ids follow the order in which they were committed.
    /// If the future is dropped after the insert was queued, the version is still committed.
    pub async fn insert(
        &self,
        event: impl Into<Arc<str>>,
        data: Json,
    ) -> Result<Arc<Entry>, Error> {
        self.insert_keyed(event.into(), data, None).await
    }

    /// Stores a new version of `event` as [`insert`](Broker::insert) does, unless an insert with
    /// the same idempotency `key` was stored within the storage's idempotency window: then it
    /// stores nothing and returns the version stored then, with its id, on every node of a
    /// shared log. A client that did not learn the outcome of an insert retries with the same
    /// key, and so stores its version once.
    ///
    /// A key is 1 to 255 characters of visible ASCII. A key reused for another event or other
    /// data within the window is refused with [`Error::IdempotencyKeyReused`].
    pub async fn insert_idempotent(
        &self,
        event: impl Into<Arc<str>>,
        data: Json,
        key: impl Into<String>,
    ) -> Result<Arc<Entry>, Error> {
        let key = key.into();
        validate_idempotency_key(&key)?;
        self.insert_keyed(event.into(), data, Some(key)).await
    }

    async fn insert_keyed(
        &self,
        event: Arc<str>,
        data: Json,
        idempotency_key: Option<String>,
    ) -> Result<Arc<Entry>, Error> {
        validate_event_name(&event, self.shared.config.max_event_name_len)?;
        let (reply, committed) = oneshot::channel();
        // The writer gives the version its timestamp when it commits it.
        let mut new = NewVersion::new(event, 0, data.into_shared());
        new.idempotency_key = idempotency_key;
        self.queue(Versions::One(new, reply)).await?;
        // The writer answers every insert it takes before it exits.
        committed.await.map_err(|_| Error::Closed)?
    }

    /// Stores several versions atomically, in one commit, and publishes them; returns them in
    /// the order given.
    ///
    /// - **All or nothing.** Either every version is stored, or none is: an invalid event name
    ///   refuses the whole insert before anything is queued, and a failed commit stores none of
    ///   it. The versions are never split over two commits.
    /// - **Together, in order.** Their ids increase in the order given, and no version of
    ///   another insert, of this broker or of another node of a shared log, is committed between
    ///   two of them. Other inserts may share their commit, before or after them.
    /// - **Idempotency.** With an idempotency `key` (1 to 255 characters of visible ASCII),
    ///   a retry of the same versions within the storage's idempotency window stores nothing and
    ///   returns the versions stored then, with their ids. A key reused for versions of which
    ///   any differs (event or data), with as many versions, is refused with
    ///   [`Error::IdempotencyKeyReused`], naming the version stored under it, and stores
    ///   nothing. The key names an insert of this many versions only: reused for an insert of
    ///   another length, or for a single insert ([`insert_idempotent`](Broker::insert_idempotent)),
    ///   it does not match, and that insert is stored as a new one.
    ///
    /// Returns once every version is durably committed, and published by this broker. No
    /// versions stores nothing and returns an empty list. More than
    /// [`Config::max_batch`] versions, the most one commit holds, is refused with
    /// [`Error::TooManyVersions`]. If the future is dropped after the insert was queued, the
    /// versions are still committed.
    pub async fn insert_many<E: Into<Arc<str>>>(
        &self,
        versions: impl IntoIterator<Item = (E, Json)>,
        idempotency_key: Option<&str>,
    ) -> Result<Vec<Arc<Entry>>, Error> {
        if let Some(key) = idempotency_key {
            validate_idempotency_key(key)?;
        }
        let config = &self.shared.config;
        let mut news = Vec::new();
        for (index, (event, data)) in versions.into_iter().enumerate() {
            if index == config.max_batch {
                return Err(Error::TooManyVersions { max: config.max_batch });
            }
            let event = event.into();
            validate_event_name(&event, config.max_event_name_len).map_err(
                |error| match error {
                    Error::InvalidEventName(reason) => {
                        Error::InvalidEventName(format!("version {index}: {reason}"))
                    }
                    error => error,
                },
            )?;
            // The writer gives the versions their timestamp when it commits them.
            news.push(NewVersion::new(event, 0, data.into_shared()));
        }
        if news.is_empty() {
            return Ok(Vec::new());
        }
        if let Some(key) = idempotency_key {
            let len = news.len();
            for (index, new) in news.iter_mut().enumerate() {
                new.idempotency_key = Some(version_key(key, index, len));
            }
        }
        let (reply, committed) = oneshot::channel();
        self.queue(Versions::Many(news, reply)).await?;
        // The writer answers every insert it takes before it exits.
        committed.await.map_err(|_| Error::Closed)?
    }

    /// Hands `versions` to the writer, waiting for room in its queue.
    async fn queue(&self, versions: Versions) -> Result<(), Error> {
        let insert = Insert { versions, queued: std::time::Instant::now() };
        // Usually there is room: the insert goes in under the lock, without a sender of its
        // own. Otherwise it waits for room with a clone, outside the lock.
        let (queue, insert) = {
            let queue = lock(&self.shared.inserts);
            let queue = queue.as_ref().ok_or(Error::Closed)?;
            match queue.try_send(insert) {
                Ok(()) => return Ok(()),
                Err(TrySendError::Closed(_)) => return Err(Error::Closed),
                Err(TrySendError::Full(insert)) => (queue.clone(), insert),
            }
        };
        queue.send(insert).await.map_err(|_| Error::Closed)
    }

    /// Waits until this broker has published every version up to `id`, at most for `patience`;
    /// returns whether it has.
    ///
    /// On a shared log, a version committed through another node reaches this one a moment
    /// later. A client that resumes here from an id it read on another node calls this first,
    /// so that the id is known here and the subscription resumes after it rather than starting
    /// over from a snapshot. An id that no node has given out is never reached.
    pub async fn wait_for(&self, id: u64, patience: Duration) -> bool {
        self.shared.state.reached(id, patience).await
    }

    /// Subscribes to committed versions; see [`Subscription`] for what arrives in which order.
    pub fn subscribe(&self, options: SubscribeOptions) -> Subscription {
        Subscription::new(self.shared.clone(), options)
    }

    /// Versions of exactly `event` with an id greater than `after`, oldest first, at most `limit`.
    ///
    /// Page through a long history by passing the last id of one page as the next `after`.
    pub async fn audit(
        &self,
        event: &str,
        after: u64,
        limit: usize,
    ) -> Result<Vec<Version>, Error> {
        validate_event_name(event, self.shared.config.max_event_name_len)?;
        let history = self.shared.storage.history(event, after, limit).await;
        if let Err(error) = &history {
            self.shared.health.failed(error);
        }
        Ok(history?)
    }

    /// The latest version of every event `options` follows (its resume point is ignored), in id
    /// order: what a new subscriber's snapshot holds, read from memory.
    pub fn snapshot(&self, options: &SubscribeOptions) -> Vec<Arc<Entry>> {
        self.shared.state.snapshot(&options.filter).into()
    }

    /// The state of every event `options` follows (its resume point is ignored) as it was at
    /// `at`: the latest version at or before it of each event that had one, in id order.
    ///
    /// Read from the storage's per-event index: its cost grows with the number of events, not
    /// with the length of their histories.
    ///
    /// # Errors
    ///
    /// [`Error::Pruned`] when that state needs a version of a followed event that the retention
    /// rules removed (naming the event and from which id its state is known); storage errors
    /// otherwise.
    pub async fn snapshot_at(
        &self,
        at: At,
        options: &SubscribeOptions,
    ) -> Result<Vec<Version>, Error> {
        let last_id = self.last_id();
        let state = state_at(&*self.shared.storage, at, last_id, &options.filter).await;
        if let Err(Error::Storage(error)) = &state {
            self.shared.health.failed(error);
        }
        state
    }

    /// The greatest id pruned of `event` by the retention rules, if any was: the event's
    /// versions up to it are gone, every later one is kept.
    pub fn pruned_through(&self, event: &str) -> Option<u64> {
        self.shared.horizons.get(event)
    }

    /// The id of the last committed version; 0 if there is none.
    pub fn last_id(&self) -> u64 {
        self.shared.state.last_id()
    }

    /// The identity of the database this broker stores into.
    pub fn database_id(&self) -> Uuid {
        self.shared.database_id
    }

    /// How many [`Subscription`]s exist right now.
    pub fn subscriber_count(&self) -> usize {
        self.shared.metrics.subscribers.get()
    }

    /// Why the storage cannot be relied on, if it cannot: the last commit failed (a full disk,
    /// a lost connection) and the backend has not said it takes writes again since, in which
    /// case inserts fail meanwhile and the broker finds out by itself when it recovers; or a
    /// read found the stored data damaged, which lasts until the broker is restarted.
    pub fn storage_failure(&self) -> Option<String> {
        self.shared.health.failure()
    }

    /// Whether [`close`](Broker::close) was called: inserts are refused from then on.
    pub fn is_closed(&self) -> bool {
        lock(&self.shared.inserts).is_none()
    }

    /// The configuration the broker was opened with.
    pub fn config(&self) -> &Config {
        &self.shared.config
    }

    /// Closes the broker: refuses new inserts, commits and acknowledges every insert already
    /// queued, ends every subscription once it has received what was committed, and closes the
    /// storage. Closing twice is not an error.
    pub async fn close(&self) -> Result<(), Error> {
        drop(lock(&self.shared.inserts).take());
        let writer = lock(&self.shared.writer).take();
        if let Some(writer) = writer {
            // The writer exits once the queue is empty and no insert holds a sender any more.
            if !writer.join().await {
                tracing::error!("the writer thread panicked");
            }
        }
        let feed = lock(&self.shared.feed).take();
        let feed = match feed {
            Some((feed, drained)) => {
                // Every committed insert is published and answered before the storage closes.
                if tokio::time::timeout(CLOSE_PATIENCE, drained).await.is_err() {
                    tracing::warn!("the storage's tail did not deliver every committed insert");
                }
                Some(feed)
            }
            None => None,
        };
        self.shared.state.close();
        self.shared.watch.abort();
        self.shared.pruner.abort();
        let closed = self.shared.storage.close().await;
        if let Some(feed) = feed {
            // Closing the storage ends its tail, and so the feed.
            match tokio::time::timeout(CLOSE_PATIENCE, feed).await {
                Ok(Err(error)) => tracing::error!(%error, "the feed task failed"),
                Ok(Ok(())) => {}
                Err(_) => tracing::warn!("the storage's tail did not end when it was closed"),
            }
        }
        match closed {
            Ok(()) | Err(broker_storage::StorageError::Closed) => Ok(()),
            Err(error) => Err(error.into()),
        }
    }
}

/// How long closing waits for the storage's tail, first to deliver what was committed, then to
/// end once the storage is closed.
const CLOSE_PATIENCE: Duration = Duration::from_secs(10);

fn lock<T>(mutex: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    // The guarded values are replaced whole, never left half-updated by a panic.
    mutex.lock().unwrap_or_else(|poison| poison.into_inner())
}
