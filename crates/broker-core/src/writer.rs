//! The writer task: the only caller of [`Storage::append`](broker_storage::Storage::append).
//!
//! Inserts queue up in a channel while a commit is in flight; the next commit takes all of them
//! at once (group commit). Under light load a batch is one insert and costs one commit, as it
//! must; under heavy load one fsync serves up to `max_batch` inserts. Nothing waits for a batch
//! to fill: the batch size follows the load by itself.
//!
//! The writer publishes nothing: the storage's tail delivers what it committed to the feed task
//! (`feed.rs`), which answers each insert once its version is in memory.

use std::sync::Arc;
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use broker_storage::{NewVersion, StorageError, Version};
use tokio::sync::mpsc;

use crate::erased::DynStorage;
use crate::feed::{Acknowledgement, Reply};
use crate::metrics::Metrics;
use crate::storage_health::StorageHealth;
use crate::{Error, Json};

/// One insert waiting for its commit.
pub(crate) struct Insert {
    pub(crate) event: String,
    pub(crate) data: Json,
    pub(crate) idempotency_key: Option<String>,
    pub(crate) reply: Reply,
    /// When it was queued.
    pub(crate) queued: Instant,
}

/// Commits queued inserts in batches until every sender of `queue` is gone and the queue is
/// empty, handing each committed batch's answers to the feed.
pub(crate) async fn run(
    storage: Arc<dyn DynStorage>,
    metrics: Arc<Metrics>,
    health: Arc<StorageHealth>,
    mut queue: mpsc::Receiver<Insert>,
    feed: mpsc::UnboundedSender<Acknowledgement>,
    max_batch: usize,
    queue_timeout: Duration,
) {
    let mut inserts = Vec::with_capacity(max_batch);
    let mut last_timestamp = 0;
    while queue.recv_many(&mut inserts, max_batch).await > 0 {
        refuse_stale(&mut inserts, queue_timeout, &metrics);
        if inserts.is_empty() {
            continue;
        }
        // Timestamps never go backwards in commit order, even if the wall clock does.
        last_timestamp = now_millis().max(last_timestamp);
        let (batch, replies): (Vec<NewVersion>, Vec<_>) = inserts
            .drain(..)
            .map(|insert| {
                let mut new =
                    NewVersion::new(insert.event, last_timestamp, insert.data.into_string());
                new.idempotency_key = insert.idempotency_key;
                (new, insert.reply)
            })
            .unzip();
        let len = batch.len();
        let started = Instant::now();
        // What each insert asked for, to tell a reused idempotency key from a retry.
        let asked: Vec<(String, String)> = batch
            .iter()
            .map(|new| match new.idempotency_key {
                Some(_) => (new.event.clone(), new.data.clone()),
                None => (String::new(), String::new()),
            })
            .collect();
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
                let replies = replies
                    .into_iter()
                    .zip(versions)
                    .zip(asked)
                    .map(|((reply, version), (event, data))| {
                        let reused =
                            !event.is_empty() && (version.event != event || version.data != data);
                        let result = if reused {
                            Err(Error::IdempotencyKeyReused {
                                id: version.id,
                                event: version.event,
                            })
                        } else {
                            Ok(version)
                        };
                        (reply, result)
                    })
                    .collect();
                // The feed answers once the tail has delivered `up_to`; it outlives the writer.
                let committed = tokio::time::Instant::now();
                let _ = feed.send(Acknowledgement { up_to, replies, committed });
            }
            Err(error) => {
                // The storage's health logs the first failure of a run; each batch only here.
                tracing::debug!(%error, batch = len, "commit failed");
                if let Error::Storage(error) = &error {
                    health.failed(error);
                }
                metrics.insert_failures.increment(len as u64);
                for reply in replies {
                    let _ = reply.send(Err(error.clone()));
                }
            }
        }
    }
}

/// Answers the inserts that waited longer than `timeout` for their commit to start with
/// [`StorageError::Unavailable`], and keeps the others: nothing of theirs was sent.
fn refuse_stale(inserts: &mut Vec<Insert>, timeout: Duration, metrics: &Metrics) {
    if inserts.iter().all(|insert| insert.queued.elapsed() <= timeout) {
        return;
    }
    let (stale, fresh): (Vec<Insert>, Vec<Insert>) =
        inserts.drain(..).partition(|insert| insert.queued.elapsed() > timeout);
    *inserts = fresh;
    let error = Error::from(StorageError::Unavailable(format!(
        "the database did not take the insert within {timeout:?}; nothing was stored"
    )));
    tracing::debug!(refused = stale.len(), "inserts waited too long for a commit");
    metrics.insert_failures.increment(stale.len() as u64);
    for insert in stale {
        let _ = insert.reply.send(Err(error.clone()));
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

fn now_millis() -> u64 {
    // A clock before 1970 is a broken clock; 0 keeps timestamps well-defined if it happens.
    SystemTime::now().duration_since(UNIX_EPOCH).map_or(0, |d| d.as_millis() as u64)
}
