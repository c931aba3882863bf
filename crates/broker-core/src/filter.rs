//! [`Filter`]: which events a subscription follows.
//!
//! The snapshot, the replay and the live channel all ask the same filter, so a subscriber sees
//! the same set of events whichever way an entry reaches it.

use std::collections::HashSet;
use std::sync::Arc;

/// A test on an event name, such as the transport's check of what a subscriber may read.
pub(crate) type EventPredicate = dyn Fn(&str) -> bool + Send + Sync;

/// Which events a subscription follows: those named, if any are, that `allow` accepts, if set.
///
/// The default follows every event.
#[derive(Clone, Default)]
pub(crate) struct Filter {
    names: Option<HashSet<Box<str>>>,
    allow: Option<Arc<EventPredicate>>,
}

impl Filter {
    /// Adds `names` to the events followed; the first call turns "every event" into "only these".
    pub(crate) fn add_names(&mut self, names: impl IntoIterator<Item = Box<str>>) {
        self.names.get_or_insert_with(HashSet::new).extend(names);
    }

    /// Replaces the predicate every followed event must also pass.
    pub(crate) fn set_allow(&mut self, allow: Arc<EventPredicate>) {
        self.allow = Some(allow);
    }

    /// The events named, or `None` when the filter is not limited to a set of names.
    pub(crate) fn names(&self) -> Option<&HashSet<Box<str>>> {
        self.names.as_ref()
    }

    /// Whether a predicate was set with [`set_allow`](Filter::set_allow).
    pub(crate) fn has_allow(&self) -> bool {
        self.allow.is_some()
    }

    /// Whether the subscription follows `event`.
    ///
    /// Called for every entry a subscriber reads, so it stays small enough to inline.
    #[inline]
    pub(crate) fn matches(&self, event: &str) -> bool {
        self.names.as_ref().is_none_or(|names| names.contains(event))
            && self.allow.as_ref().is_none_or(|allow| allow(event))
    }
}
