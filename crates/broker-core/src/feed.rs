//! The feed task: the one path by which committed versions reach the engine's memory and its
//! subscribers, whoever wrote them.
//!
//! It reads the storage's [`Tail`](broker_storage::Tail), which delivers every committed version
//! in id order: this broker's own and, on a shared log, those of every other node. Each batch
//! becomes the latest of its events, then goes out on the live channel. The writer does not
//! publish what it commits; it hands the feed its acknowledgements instead, and the feed answers
//! an insert once the tail has delivered its versions (every one of an insert of several), so
//! that an inserter that then subscribes to this broker finds them (read-your-writes), on every
//! backend alike.

use std::collections::VecDeque;
use std::sync::Arc;
use std::time::Duration;

use tokio::sync::{mpsc, oneshot};
use tokio::time::Instant;

use crate::Entry;
use crate::erased::DynStorage;
use crate::item::Answer;
use crate::state::State;
use crate::storage_health::StorageHealth;

/// How long the feed waits before it starts a new tail after one failed.
const RETAIL_DELAY: Duration = Duration::from_secs(1);

/// How long an acknowledgement waits for the tail before it is answered all the same. Its
/// versions are durably stored, so the inserter is told so, rather than kept waiting on a tail
/// that lags (a backend that lost and regained its quorum, say); only the guarantee that this
/// node already publishes them is lost, and the tail delivers them when it catches up.
const ACK_PATIENCE: Duration = Duration::from_secs(5);

/// A committed batch's answers, held until the tail has delivered every version in it.
pub(crate) struct Acknowledgement {
    /// The highest id among the batch's versions: the last id of every insert in it, those of
    /// several versions included, is at most this.
    pub(crate) up_to: u64,
    pub(crate) answers: Vec<Answer>,
    /// When the commit returned.
    pub(crate) committed: Instant,
}

impl Acknowledgement {
    /// Answers each insert with the entries its subscribers share: those of `published`, the
    /// batch that the feed published last, or those the engine still holds, or new ones.
    fn answer(self, state: &State, published: &[Arc<Entry>]) {
        for answer in self.answers {
            answer.send(state, published);
        }
    }
}

/// Feeds what the storage's tail delivers after `position` into `state` until the storage is
/// closed, answering each acknowledgement from `acknowledgements` once the tail has passed it.
///
/// `drained` fires once the writer has gone (its sender is dropped) and every acknowledgement it
/// sent is answered: closing waits for it before it closes the storage, which ends the tail.
pub(crate) async fn run(
    storage: Arc<dyn DynStorage>,
    state: Arc<State>,
    health: Arc<StorageHealth>,
    mut position: u64,
    mut acknowledgements: mpsc::UnboundedReceiver<Acknowledgement>,
    drained: oneshot::Sender<()>,
) {
    let mut tail = storage.tail(position);
    let mut waiting: VecDeque<Acknowledgement> = VecDeque::new();
    // The entries of the last batch the tail delivered, until the acknowledgement that covers
    // them is answered: it usually comes just after, and answers with them rather than look
    // each one up (or make it anew, once the window has let it go).
    let mut published: Vec<Arc<Entry>> = Vec::new();
    let mut writer_gone = false;
    let mut drained = Some(drained);
    loop {
        if writer_gone
            && waiting.is_empty()
            && let Some(drained) = drained.take()
        {
            let _ = drained.send(());
        }
        tokio::select! {
            // Acknowledgements first: one that the tail has passed already is answered at once,
            // while its entries are still in the window, before a later batch may push them out.
            biased;
            acknowledgement = acknowledgements.recv(), if !writer_gone => match acknowledgement {
                Some(acknowledgement) if acknowledgement.up_to <= position => {
                    let covered = published.last().is_some_and(|last| acknowledgement.up_to >= last.id());
                    acknowledgement.answer(&state, &published);
                    if covered {
                        published.clear();
                    }
                }
                Some(acknowledgement) => waiting.push_back(acknowledgement),
                None => writer_gone = true,
            },
            () = overdue(waiting.front()) => {
                if let Some(late) = waiting.pop_front() {
                    tracing::warn!(
                        up_to = late.up_to,
                        tail_at = position,
                        "the storage's tail is behind; answering a committed insert without it"
                    );
                    late.answer(&state, &published);
                }
            }
            batch = tail.next() => match batch {
                Some(Ok(versions)) => {
                    let entries: Vec<Arc<Entry>> =
                        versions.into_iter().map(|version| Arc::new(Entry::new(version))).collect();
                    let Some(last) = entries.last() else { continue };
                    position = position.max(last.id());
                    publish(&state, &entries, || {
                        // Ids of one writer increase, so its acknowledgements wait in id order.
                        while waiting.front().is_some_and(|a| a.up_to <= position) {
                            waiting.pop_front().into_iter().for_each(|a| a.answer(&state, &entries));
                        }
                    });
                    published = entries;
                }
                Some(Err(error)) => {
                    health.failed(&error);
                    tracing::warn!(%error, after = position, "the storage's tail failed; starting a new one");
                    tokio::time::sleep(RETAIL_DELAY).await;
                    tail = storage.tail(position);
                }
                None => break,
            },
        }
    }
    // The storage is closed. What is still waiting was committed: it is answered as stored.
    waiting.into_iter().for_each(|acknowledgement| acknowledgement.answer(&state, &published));
    while let Ok(acknowledgement) = acknowledgements.try_recv() {
        acknowledgement.answer(&state, &published);
    }
    if let Some(drained) = drained.take() {
        let _ = drained.send(());
    }
}

/// Returns once `oldest` has waited for the tail for [`ACK_PATIENCE`]; never without one.
async fn overdue(oldest: Option<&Acknowledgement>) {
    match oldest {
        Some(oldest) => tokio::time::sleep_until(oldest.committed + ACK_PATIENCE).await,
        None => std::future::pending().await,
    }
}

/// Makes `entries` the latest of their events, runs `acknowledge`, then sends them live.
///
/// Recorded before the acknowledgements, so that an inserter that subscribes once acknowledged
/// finds its version in the snapshot; sent to live subscribers after them, so that an
/// acknowledgement never waits for every subscriber's wake-up.
fn publish(state: &State, entries: &[Arc<Entry>], acknowledge: impl FnOnce()) {
    let live = state.record(entries);
    tracing::trace!(batch = entries.len(), last_id = entries.last().map(|e| e.id()), "published");
    acknowledge();
    if let Some(live) = live {
        for entry in entries {
            // An error only means that nobody is subscribed right now.
            let _ = live.send(Arc::downgrade(entry));
        }
    }
    // Only now, once every entry was sent while this task held it, may the window take them
    // over and let older ones go; see `Window::new`.
    state.keep(entries.to_vec());
}
