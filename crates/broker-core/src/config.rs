//! [`Config`]: the tuning a broker is opened with.

use crate::name::DEFAULT_MAX_EVENT_NAME_LEN;

/// Tuning of a [`Broker`](crate::Broker); [`Config::default`] suits most uses.
#[derive(Clone, Debug)]
#[non_exhaustive]
pub struct Config {
    /// The longest event name accepted, in bytes.
    pub max_event_name_len: usize,
    /// How many entries the live channel holds for subscribers that are behind; one that falls
    /// further behind catches up from the latest versions instead (see
    /// [`Subscription`](crate::Subscription)).
    pub live_capacity: usize,
    /// The most inserts one commit takes.
    pub max_batch: usize,
    /// How many inserts may wait for a commit before `insert` itself waits for room.
    pub queue_capacity: usize,
}

impl Default for Config {
    fn default() -> Config {
        Config {
            max_event_name_len: DEFAULT_MAX_EVENT_NAME_LEN,
            live_capacity: 4096,
            max_batch: 1024,
            queue_capacity: 16 * 1024,
        }
    }
}
