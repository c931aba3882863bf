//! The in-memory side of the engine: the latest entry of every event, the live channel, and the
//! window that keeps the live channel's recent entries in memory.
//!
//! The latest entries and the live channel live under one lock so that a subscriber can take a
//! snapshot and join the live channel atomically: every entry is either in the snapshot or
//! arrives live, never both, never neither.

use std::collections::{BTreeMap, HashMap, VecDeque};
use std::sync::{Arc, Mutex, MutexGuard, Weak};

use tokio::sync::{broadcast, watch};

use crate::Entry;
use crate::filter::Filter;
use crate::window::Window;

pub(crate) struct State {
    inner: Mutex<Inner>,
    /// The strong references behind the live channel's slots. Apart from the `inner` lock, so
    /// that freeing the entries the window lets go of never holds up a subscriber's start: only
    /// the writer, once per batch, and a subscription that ends take this one.
    window: Mutex<Window>,
    /// The id of the last recorded entry, for those who wait until the state reaches an id.
    position: watch::Sender<u64>,
}

struct Inner {
    /// The latest entry of every event, by id, so that a snapshot comes out in commit order.
    by_id: BTreeMap<u64, Arc<Entry>>,
    /// The id of the latest entry of every event.
    by_event: HashMap<Box<str>, u64>,
    /// The id of the last committed entry; 0 before the first.
    last_id: u64,
    /// The live channel; `None` once the broker is closed, which ends every subscription.
    live: Option<broadcast::Sender<Weak<Entry>>>,
}

/// What a subscriber needs to start: the entries it must be sent first, the id they bring it up
/// to, and a receiver that delivers everything committed after that id.
pub(crate) struct Joined {
    pub(crate) snapshot: VecDeque<Arc<Entry>>,
    pub(crate) last_id: u64,
    pub(crate) receiver: Option<broadcast::Receiver<Weak<Entry>>>,
}

/// What a subscriber is sent before the live channel, chosen when it joins.
#[derive(Clone, Copy, Debug)]
pub(crate) enum Start {
    /// The latest entry of every followed event whose id is greater than `after`, in id order.
    Snapshot {
        /// The id of the last entry the subscriber already has; 0 for none.
        after: u64,
    },
    /// Nothing: the subscriber reads what it missed from storage (a replay) and takes only the
    /// live receiver and the id the live channel starts after.
    LiveOnly,
}

impl State {
    /// Builds the state from the latest versions in storage.
    ///
    /// The live channel is a ring of `capacity` slots shared by all subscribers, so publishing
    /// never waits for a subscriber and the ring's size does not grow with their number. A
    /// subscriber that falls more than `capacity` entries behind is not waited for: it notices
    /// it lagged and catches up from the latest-version map instead (see `Subscription`).
    ///
    /// A slot holds a `Weak<Entry>`, not the entry: a stalled subscriber's unread slots would
    /// otherwise keep `capacity` versions of any size in memory. The window keeps the strong
    /// references of the most recent entries, at most `capacity` besides the last batch and
    /// about `bytes` of them (see `Window::new` for why every subscriber that keeps up still
    /// finds each entry there). A subscriber whose slot no longer upgrades has fallen further
    /// behind than the window, and catches up exactly as one that lagged the ring.
    pub(crate) fn new(
        latest: impl IntoIterator<Item = Entry>,
        capacity: usize,
        bytes: usize,
    ) -> State {
        let mut inner = Inner {
            by_id: BTreeMap::new(),
            by_event: HashMap::new(),
            last_id: 0,
            live: Some(broadcast::channel(capacity).0),
        };
        for entry in latest {
            inner.record(Arc::new(entry));
        }
        State {
            position: watch::Sender::new(inner.last_id),
            inner: Mutex::new(inner),
            window: Mutex::new(Window::new(capacity, bytes)),
        }
    }

    fn lock(&self) -> MutexGuard<'_, Inner> {
        // Nothing panics while the lock is held, so a poisoned lock still guards consistent data.
        self.inner.lock().unwrap_or_else(|poison| poison.into_inner())
    }

    /// Makes committed entries the latest of their events, and returns the live channel to send
    /// them on, if it is still open.
    ///
    /// Recording and sending are two steps so that neither the state lock nor the inserters'
    /// acknowledgements wait for the send, which wakes every live subscriber. The seam stays
    /// exact: a subscriber that joins between the two has the entries in its snapshot and
    /// `last_id`, and skips them when they then arrive live.
    ///
    /// The caller sends each entry as a `Weak` while it still holds the entries, then hands them
    /// to [`keep`](State::keep).
    pub(crate) fn record(&self, entries: &[Arc<Entry>]) -> Option<broadcast::Sender<Weak<Entry>>> {
        let mut inner = self.lock();
        for (index, entry) in entries.iter().enumerate() {
            // An entry followed by one of its event is not the latest of that event once the
            // batch is recorded: only the last of each run is (an array often holds one event).
            let superseded =
                entries.get(index + 1).is_some_and(|next| next.event() == entry.event());
            if !superseded {
                inner.record(entry.clone());
            }
        }
        self.position.send_replace(inner.last_id);
        inner.live.clone()
    }

    /// Waits until an entry with `id` or a greater one is recorded; `false` if that did not
    /// happen within `patience`.
    pub(crate) async fn reached(&self, id: u64, patience: std::time::Duration) -> bool {
        let mut position = self.position.subscribe();
        let reached = position.wait_for(|&position| position >= id);
        matches!(tokio::time::timeout(patience, reached).await, Ok(Ok(_)))
    }

    /// Keeps a batch just sent live in the window, letting go of older entries that no
    /// subscriber has left to read or that are past its bounds.
    pub(crate) fn keep(&self, batch: Vec<Arc<Entry>>) {
        self.window().keep(batch);
    }

    /// Lets go of the entries of the window that no subscriber has left to read; called when a
    /// subscription ends, so that what only it was behind on is freed at once.
    pub(crate) fn release_read(&self) {
        self.window().release_read();
    }

    fn window(&self) -> MutexGuard<'_, Window> {
        // Nothing panics while the lock is held, so a poisoned lock still guards consistent data.
        self.window.lock().unwrap_or_else(|poison| poison.into_inner())
    }

    /// A receiver for everything committed from now on, the id of the last entry committed
    /// before it, and the entries `start` asks for, all read under one lock.
    pub(crate) fn join(&self, start: Start, filter: &Filter) -> Joined {
        let inner = self.lock();
        let snapshot = match start {
            Start::Snapshot { after } => inner.snapshot(after, filter),
            Start::LiveOnly => VecDeque::new(),
        };
        Joined {
            snapshot,
            last_id: inner.last_id,
            receiver: inner.live.as_ref().map(broadcast::Sender::subscribe),
        }
    }

    /// The entry with `id`, if it is still in memory: the latest of its event, or in the window.
    pub(crate) fn find(&self, id: u64) -> Option<Arc<Entry>> {
        if let Some(entry) = self.lock().by_id.get(&id) {
            return Some(entry.clone());
        }
        self.window().find(id)
    }

    /// The id of the last committed entry; 0 before the first.
    pub(crate) fn last_id(&self) -> u64 {
        self.lock().last_id
    }

    /// Every event and the id of its latest entry.
    pub(crate) fn latest_ids(&self) -> Vec<(Box<str>, u64)> {
        self.lock().by_event.iter().map(|(event, &id)| (event.clone(), id)).collect()
    }

    /// The latest entry of every event that `filter` matches, in id order.
    pub(crate) fn snapshot(&self, filter: &Filter) -> VecDeque<Arc<Entry>> {
        self.lock().snapshot(0, filter)
    }

    /// The newest timestamp of the latest entries; 0 when there is none.
    pub(crate) fn newest_timestamp(&self) -> u64 {
        self.lock().by_id.values().map(|entry| entry.timestamp()).max().unwrap_or(0)
    }

    /// How many events have a version.
    pub(crate) fn event_count(&self) -> usize {
        self.lock().by_event.len()
    }

    /// Closes the live channel: subscriptions end once they have received what was sent before.
    pub(crate) fn close(&self) {
        self.lock().live = None;
    }
}

impl Inner {
    /// The latest entry of every event that `filter` matches whose id is greater than `after`,
    /// in id order.
    fn snapshot(&self, after: u64, filter: &Filter) -> VecDeque<Arc<Entry>> {
        match filter.names() {
            None => self
                .by_id
                .range(after + 1..)
                .filter(|(_, entry)| filter.matches(entry.event()))
                .map(|(_, entry)| entry.clone())
                .collect(),
            Some(names) => {
                // A few named events out of many: look them up rather than scan every event.
                let mut ids: Vec<u64> = names
                    .iter()
                    .filter(|name| filter.matches(name))
                    .filter_map(|name| self.by_event.get(name).copied())
                    .filter(|&id| id > after)
                    .collect();
                ids.sort_unstable();
                // Every id in `by_event` is a key of `by_id`: `record` updates the two together.
                ids.iter().map(|id| self.by_id[id].clone()).collect()
            }
        }
    }

    fn record(&mut self, entry: Arc<Entry>) {
        let id = entry.id();
        match self.by_event.get_mut(entry.event()) {
            Some(latest) => {
                self.by_id.remove(latest);
                *latest = id;
            }
            None => {
                self.by_event.insert(entry.event().into(), id);
            }
        }
        self.by_id.insert(id, entry);
        self.last_id = self.last_id.max(id);
    }
}
