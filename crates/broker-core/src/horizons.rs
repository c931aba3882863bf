//! [`Horizons`]: how far back each event's stored history reaches, in memory.
//!
//! The storage is the authority ([`Storage::horizons`](broker_storage::Storage::horizons)); this
//! copy answers the questions asked per request without a storage call: may a subscriber resume
//! after an id, or were versions it would need pruned? It is refreshed from the storage after
//! every round of pruning, and while an event is being pruned it counts as pruned through the
//! version before its latest, so that a subscriber who resumes meanwhile is never told a replay
//! is complete when it is not.

use std::collections::HashMap;
use std::sync::{Mutex, MutexGuard};

use broker_storage::Horizon;

use crate::filter::Filter;

#[derive(Default)]
pub(crate) struct Horizons {
    inner: Mutex<Inner>,
}

#[derive(Default)]
struct Inner {
    /// The greatest id pruned of each event, as the storage last said.
    pruned: HashMap<Box<str>, u64>,
    /// The event being pruned now, and the greatest id that may be pruned of it.
    pruning: Option<(Box<str>, u64)>,
}

impl Horizons {
    pub(crate) fn new(horizons: Vec<Horizon>) -> Horizons {
        let horizons_now = Horizons::default();
        horizons_now.replace(horizons);
        horizons_now
    }

    fn lock(&self) -> MutexGuard<'_, Inner> {
        // Every change below is one assignment; a poisoned lock still guards consistent data.
        self.inner.lock().unwrap_or_else(|poison| poison.into_inner())
    }

    /// Takes the storage's horizons as they are now.
    pub(crate) fn replace(&self, horizons: Vec<Horizon>) {
        let pruned = horizons
            .into_iter()
            .map(|horizon| (horizon.event.into_boxed_str(), horizon.pruned_through))
            .collect();
        self.lock().pruned = pruned;
    }

    /// Says that `event`, whose latest version is `latest`, is being pruned from now until the
    /// next [`replace`](Horizons::replace) or `begin`.
    pub(crate) fn begin(&self, event: &str, latest: u64) {
        self.lock().pruning = Some((event.into(), latest.saturating_sub(1)));
    }

    /// Says that no event is being pruned any more.
    pub(crate) fn end(&self) {
        self.lock().pruning = None;
    }

    /// The greatest id pruned of `event`, if any was.
    pub(crate) fn get(&self, event: &str) -> Option<u64> {
        self.lock().pruned.get(event).copied()
    }

    /// The greatest id above `after` that may have been pruned of an event `filter` follows:
    /// `None` when every version after `after` of those events is still stored.
    pub(crate) fn above(&self, after: u64, filter: &Filter) -> Option<u64> {
        let inner = self.lock();
        let pruning = inner.pruning.iter().map(|(event, id)| (&**event, *id));
        let above = |(event, id): (&str, u64)| (id > after && filter.matches(event)).then_some(id);
        match filter.names() {
            // A few named events: look them up rather than go through every pruned event.
            Some(names) => names
                .iter()
                .filter_map(|name| Some((&**name, *inner.pruned.get(name)?)))
                .chain(pruning)
                .filter_map(above)
                .max(),
            None => inner
                .pruned
                .iter()
                .map(|(event, &id)| (&**event, id))
                .chain(pruning)
                .filter_map(above)
                .max(),
        }
    }
}
