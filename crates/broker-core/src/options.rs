//! [`SubscribeOptions`]: what a subscription follows and where it starts.

use std::fmt;
use std::sync::Arc;

use crate::filter::Filter;

/// What to subscribe to and where to start; built with [`SubscribeOptions::new`].
#[derive(Clone, Default)]
pub struct SubscribeOptions {
    pub(crate) filter: Filter,
    pub(crate) resume_after: Option<u64>,
}

impl fmt::Debug for SubscribeOptions {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("SubscribeOptions")
            .field("events", &self.filter.names())
            .field("allow", &self.filter.has_allow().then_some("<predicate>"))
            .field("resume_after", &self.resume_after)
            .finish()
    }
}

impl SubscribeOptions {
    /// Every event, starting with a snapshot of the latest version of each.
    pub fn new() -> SubscribeOptions {
        SubscribeOptions::default()
    }

    /// Follows only these events, in the snapshot, the replay and live. Calling it again adds
    /// to the set.
    pub fn events<I, S>(mut self, events: I) -> SubscribeOptions
    where
        I: IntoIterator<Item = S>,
        S: Into<Box<str>>,
    {
        self.filter.add_names(events.into_iter().map(Into::into));
        self
    }

    /// Follows only the events whose names `allow` accepts, in the snapshot, the replay and
    /// live; combined with [`events`](SubscribeOptions::events), an event must pass both.
    ///
    /// This is how a transport limits a subscriber to what it may read: an event `allow`
    /// refuses is never delivered, not even its name. Calling it again replaces the predicate.
    pub fn allow(
        mut self,
        allow: impl Fn(&str) -> bool + Send + Sync + 'static,
    ) -> SubscribeOptions {
        self.filter.set_allow(Arc::new(allow));
        self
    }

    /// Starts with every version committed after `id` instead of a snapshot, as a subscriber that
    /// reconnects after receiving `id`.
    ///
    /// An `id` this database never gave out falls back to a snapshot;
    /// [`Subscription::resumed`](crate::Subscription::resumed) tells which start the
    /// subscription got.
    pub fn resume_after(mut self, id: u64) -> SubscribeOptions {
        self.resume_after = Some(id);
        self
    }
}
