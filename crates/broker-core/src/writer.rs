//! The writer task: the only caller of [`Storage::append`](broker_storage::Storage::append).
//!
//! Inserts queue up in a channel while a commit is in flight; the next commit takes all of them
//! at once (group commit). Under light load a batch is one insert and costs one commit, as it
//! must; under heavy load one fsync serves up to `max_batch` inserts. Nothing waits for a batch
//! to fill: the batch size follows the load by itself.

use std::sync::Arc;
use std::time::{Instant, SystemTime, UNIX_EPOCH};

use broker_storage::{NewVersion, StorageError, Version};
use tokio::sync::{mpsc, oneshot};

use crate::erased::DynStorage;
use crate::metrics::Metrics;
use crate::state::State;
use crate::storage_health::StorageHealth;
use crate::{Entry, Error, Json};

/// One insert waiting for its commit.
pub(crate) struct Insert {
    pub(crate) event: String,
    pub(crate) data: Json,
    pub(crate) reply: oneshot::Sender<Result<Arc<Entry>, Error>>,
}

/// Commits queued inserts in batches until every sender of `queue` is gone and the queue is
/// empty, publishing each committed entry and acknowledging its insert, in commit order.
pub(crate) async fn run(
    storage: Arc<dyn DynStorage>,
    state: Arc<State>,
    metrics: Arc<Metrics>,
    health: Arc<StorageHealth>,
    mut queue: mpsc::Receiver<Insert>,
    max_batch: usize,
) {
    let mut inserts = Vec::with_capacity(max_batch);
    let mut last_timestamp = 0;
    while queue.recv_many(&mut inserts, max_batch).await > 0 {
        // Timestamps never go backwards in commit order, even if the wall clock does.
        last_timestamp = now_millis().max(last_timestamp);
        let (batch, replies): (Vec<NewVersion>, Vec<_>) = inserts
            .drain(..)
            .map(|insert| {
                let new = NewVersion::new(insert.event, last_timestamp, insert.data.into_string());
                (new, insert.reply)
            })
            .unzip();
        let len = batch.len();
        let started = Instant::now();
        let result = storage.append(batch).await.map_err(Error::from).and_then(|versions| {
            check_ids(state.last_id(), len, &versions)?;
            Ok(versions.into_iter().map(|version| Arc::new(Entry::new(version))).collect())
        });
        match result {
            Ok(entries) => {
                let entries: Vec<Arc<Entry>> = entries;
                health.succeeded();
                metrics.commit_seconds.record(started.elapsed());
                metrics.batch_size.record(len as f64);
                metrics.inserts.increment(len as u64);
                // Recorded before the acknowledgements, so that an inserter that subscribes once
                // acknowledged finds its version in the snapshot; sent to live subscribers after
                // them, so that an acknowledgement never waits for every subscriber's wake-up.
                let live = state.record(&entries);
                tracing::trace!(batch = len, last_id = entries.last().map(|e| e.id()), "committed");
                for (entry, reply) in entries.iter().zip(replies) {
                    // The inserter may have gone away; its version is stored all the same.
                    let _ = reply.send(Ok(entry.clone()));
                }
                if let Some(live) = live {
                    for entry in &entries {
                        // An error only means that nobody is subscribed right now.
                        let _ = live.send(Arc::downgrade(entry));
                    }
                }
                // Only now, once every entry was sent while this task held it, may the window
                // take them over and let older ones go; see `Window::new`.
                state.keep(entries);
            }
            Err(error) => {
                // The storage's health logs the first failure of a run; each batch only here.
                tracing::debug!(%error, batch = len, "commit failed; the batch was not stored");
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

/// Guards the engine's ordering against a backend that breaks the id contract: publishing such a
/// batch would send subscribers versions out of order.
fn check_ids(last_id: u64, len: usize, versions: &[Version]) -> Result<(), Error> {
    let increasing = versions.iter().try_fold(last_id, |last, v| (v.id > last).then_some(v.id));
    if versions.len() != len || increasing.is_none() {
        let error = StorageError::Corrupt(format!(
            "the backend answered a batch of {len} with ids {:?}, not {len} ids above {last_id}",
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
