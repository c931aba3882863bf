//! The writer: the only caller of [`Storage::append`](broker_storage::Storage::append).
//!
//! Inserts queue up in a channel while a commit is in flight; the next commit takes all of them
//! at once (group commit). Under light load a batch is one insert and costs one commit, as it
//! must; under heavy load one fsync serves up to `max_batch` versions. Nothing waits for a batch
//! to fill: the batch size follows the load by itself. The writer only yields its thread's CPU
//! once before it cuts each batch, so that on a saturated server the connections that wait for
//! that CPU add their inserts first.
//!
//! An insert may hold several versions, which are committed together: `pending.rs` cuts the
//! batches, counting versions, never splitting an insert, and carrying one that does not fit
//! over to the next commit.
//!
//! The writer publishes nothing: the storage's tail delivers what it committed to the feed task
//! (`feed.rs`), which answers each insert once its versions are in memory.
//!
//! The writer is a thread of its own, not a task: it drives its futures with
//! [`Handle::block_on`](tokio::runtime::Handle::block_on) and is marked as a writer thread
//! ([`broker_storage::mark_writer_thread`]), so that a store whose append is blocking work (the
//! redb backend's journal write) does it right there. As a task it handed each append to a
//! blocking thread and waited to be woken again, two wake-ups per commit that each waited for a
//! CPU while the workers served connections: at 64 publishers a commit took twice as long as its
//! write.

use std::sync::Arc;
use std::time::{Duration, Instant};

use broker_storage::{NewVersion, StorageError, Version};
use tokio::runtime::Handle;
use tokio::sync::{mpsc, oneshot};

use crate::Error;
use crate::clock::now_millis;
use crate::config::Config;
use crate::erased::DynStorage;
use crate::feed::Acknowledgement;
use crate::item::{Answer, Insert, Reply, Versions};
use crate::metrics::Metrics;
use crate::pending::Pending;
use crate::storage_health::StorageHealth;

/// The writer's thread, to wait for its end.
pub(crate) struct WriterThread {
    finished: oneshot::Receiver<()>,
}

impl WriterThread {
    /// Waits until the writer has answered every insert it took and ended: `false` if it
    /// panicked instead.
    pub(crate) async fn join(self) -> bool {
        self.finished.await.is_ok()
    }
}

/// Starts the writer (see [`run`]) on a writer thread of its own, on the runtime of the caller.
///
/// # Panics
///
/// Outside a Tokio runtime.
pub(crate) fn spawn(
    storage: Arc<dyn DynStorage>,
    metrics: Arc<Metrics>,
    health: Arc<StorageHealth>,
    queue: mpsc::Receiver<Insert>,
    feed: mpsc::UnboundedSender<Acknowledgement>,
    config: Config,
    last_timestamp: u64,
) -> Result<WriterThread, Error> {
    let runtime = Handle::current();
    let (finished, finished_receiver) = oneshot::channel();
    let writer = run(storage, metrics, health, queue, feed, config, last_timestamp);
    std::thread::Builder::new()
        .name("broker-writer".into())
        .spawn(move || {
            broker_storage::mark_writer_thread();
            runtime.block_on(writer);
            // Dropped unsent if the writer panicked.
            let _ = finished.send(());
        })
        .map_err(|error| {
            let why = format!("cannot start the writer thread: {error}");
            Error::Storage(Arc::new(StorageError::backend(why)))
        })?;
    Ok(WriterThread { finished: finished_receiver })
}

/// Commits queued inserts in batches until every sender of `queue` is gone and the queue is
/// empty, handing each committed batch's answers to the feed.
async fn run(
    storage: Arc<dyn DynStorage>,
    metrics: Arc<Metrics>,
    health: Arc<StorageHealth>,
    mut queue: mpsc::Receiver<Insert>,
    feed: mpsc::UnboundedSender<Acknowledgement>,
    config: Config,
    mut last_timestamp: u64,
) {
    let Config { max_batch, queue_timeout, .. } = config;
    let mut received = Vec::with_capacity(max_batch);
    let mut pending = Pending::new(max_batch);
    let mut inserts = Vec::with_capacity(max_batch);
    loop {
        if pending.is_empty() {
            // Nothing is carried over from the last commit: wait for the next insert.
            if queue.recv_many(&mut received, max_batch).await == 0 {
                break;
            }
            received.drain(..).for_each(|insert| pending.push(insert));
        }
        if pending.has_room() {
            // The thread yields its CPU once before it cuts the batch. Where the runtime's
            // workers wait for that CPU, they read and parse inserts that then join this batch:
            // a saturated server makes fewer, larger commits, and each journal write costs tens
            // of µs of kernel time however small. Where nothing waits, it goes on at once.
            std::thread::yield_now();
        }
        // Take what else is queued, without waiting, while the next batch may hold more.
        while pending.has_room()
            && let Ok(insert) = queue.try_recv()
        {
            pending.push(insert);
        }
        pending.next_batch(&mut inserts);
        refuse_stale(&mut inserts, queue_timeout, &metrics);
        if inserts.is_empty() {
            continue;
        }
        // Timestamps never go backwards in commit order, even if the wall clock does, nor across
        // a restart (`last_timestamp` starts at the newest stored), so that a time names a
        // point of the log.
        last_timestamp = now_millis().max(last_timestamp);
        let commit = Commit::new(&mut inserts, last_timestamp);
        commit.run(&*storage, &metrics, &health, &feed).await;
    }
}

/// One batch on its way to the storage: the versions in queue order, and for each insert how
/// many of them are its own and where its answer goes.
struct Commit {
    batch: Vec<NewVersion>,
    replies: Vec<(Reply, usize)>,
    /// What each version asked for when it carries an idempotency key, to tell a retry from a
    /// key reused for something else; empty strings for a version without a key.
    asked: Vec<Option<(Arc<str>, Arc<str>)>>,
}

impl Commit {
    /// Takes every insert of `inserts`, and gives their versions `timestamp`.
    fn new(inserts: &mut Vec<Insert>, timestamp: u64) -> Commit {
        let mut batch = Vec::with_capacity(inserts.iter().map(Insert::len).sum());
        let mut replies = Vec::with_capacity(inserts.len());
        for insert in inserts.drain(..) {
            match insert.versions {
                Versions::One(new, reply) => {
                    batch.push(new);
                    replies.push((Reply::One(reply), 1));
                }
                Versions::Many(news, reply) => {
                    replies.push((Reply::Many(reply), news.len()));
                    batch.extend(news);
                }
            }
        }
        for new in &mut batch {
            new.timestamp = timestamp;
        }
        let asked = batch
            .iter()
            .map(|new| new.idempotency_key.as_ref().map(|_| (new.event.clone(), new.data.clone())))
            .collect();
        Commit { batch, replies, asked }
    }

    /// Appends the batch and hands its answers to the feed, or answers every insert with the
    /// error.
    async fn run(
        self,
        storage: &dyn DynStorage,
        metrics: &Metrics,
        health: &StorageHealth,
        feed: &mpsc::UnboundedSender<Acknowledgement>,
    ) {
        let Commit { batch, replies, asked } = self;
        let len = batch.len();
        let started = std::time::Instant::now();
        let result = storage.append(batch).await.map_err(Error::from).and_then(|versions| {
            check_len(len, &versions)?;
            Ok(versions)
        });
        match result {
            Ok(versions) => {
                health.succeeded();
                metrics.commit_seconds.record(started.elapsed());
                metrics.batch_size.record(len as f64);
                metrics.inserts.increment(len as u64);
                let up_to = versions.iter().map(|version| version.id).max().unwrap_or(0);
                tracing::trace!(batch = len, up_to, "committed");
                let mut versions = versions.into_iter().zip(asked);
                let answers = replies
                    .into_iter()
                    .map(|(reply, len)| match reply {
                        Reply::One(reply) => {
                            let (version, asked) =
                                versions.next().expect("check_len: a version for each one sent");
                            Answer::One(reply, answer(version, &asked))
                        }
                        Reply::Many(reply) => {
                            let result = versions
                                .by_ref()
                                .take(len)
                                .map(|(version, asked)| answer(version, &asked))
                                .collect();
                            Answer::Many(reply, result)
                        }
                    })
                    .collect();
                // The feed answers once the tail has delivered `up_to`; it outlives the writer.
                let committed = tokio::time::Instant::now();
                let _ = feed.send(Acknowledgement { up_to, answers, committed });
            }
            Err(error) => {
                // The storage's health logs the first failure of a run; each batch only here.
                tracing::debug!(%error, batch = len, "commit failed");
                if let Error::Storage(error) = &error {
                    health.failed(error);
                }
                metrics.insert_failures.increment(len as u64);
                for (reply, _) in replies {
                    reply.fail(error.clone());
                }
            }
        }
    }
}

/// The answer for `version`, stored for a version that asked for `(event, data)` with an
/// idempotency key (`None` without one): a version stored earlier under the same key with
/// another event or other data means that the key was reused for something else.
///
/// Collected into an insert of several versions, the first such refusal answers the whole
/// insert: all its versions carry keys made from one key, so they are all retries or all new.
fn answer(version: Version, asked: &Option<(Arc<str>, Arc<str>)>) -> Result<Version, Error> {
    let reused = asked
        .as_ref()
        .is_some_and(|(event, data)| version.event != *event || version.data != *data);
    if reused {
        let event = version.event.to_string();
        return Err(Error::IdempotencyKeyReused { id: version.id, event });
    }
    Ok(version)
}

/// Answers the inserts that waited longer than `timeout` for their commit to start with
/// [`StorageError::Unavailable`], and keeps the others: nothing of theirs was sent.
fn refuse_stale(inserts: &mut Vec<Insert>, timeout: Duration, metrics: &Metrics) {
    // One reading of the clock for the batch, not one per insert.
    let now = Instant::now();
    let is_stale = |insert: &Insert| now.saturating_duration_since(insert.queued) > timeout;
    if !inserts.iter().any(is_stale) {
        return;
    }
    let (stale, fresh): (Vec<Insert>, Vec<Insert>) = inserts.drain(..).partition(is_stale);
    *inserts = fresh;
    let error = Error::from(StorageError::Unavailable(format!(
        "the database did not take the insert within {timeout:?}; nothing was stored"
    )));
    let versions: usize = stale.iter().map(Insert::len).sum();
    tracing::debug!(refused = stale.len(), versions, "inserts waited too long for a commit");
    metrics.insert_failures.increment(versions as u64);
    for insert in stale {
        insert.refuse(error.clone());
    }
}

/// Guards the engine against a backend that breaks the append contract: answering an insert with
/// another insert's version.
fn check_len(len: usize, versions: &[Version]) -> Result<(), Error> {
    if versions.len() != len || versions.iter().any(|version| version.id == 0) {
        let error = StorageError::Corrupt(format!(
            "the backend answered a batch of {len} with ids {:?}, not {len} ids from 1 up",
            versions.iter().map(|v| v.id).collect::<Vec<_>>()
        ));
        return Err(error.into());
    }
    Ok(())
}
