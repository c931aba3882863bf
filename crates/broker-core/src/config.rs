//! [`Config`]: the tuning a broker is opened with.

use std::time::Duration;

use crate::name::DEFAULT_MAX_EVENT_NAME_LEN;
use crate::retention::RetentionRule;

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
    /// How many bytes of event names and data the live channel keeps for subscribers that are
    /// behind; one that falls further behind catches up from the latest versions instead, as
    /// when it falls more than [`live_capacity`](Config::live_capacity) entries behind.
    ///
    /// This bounds the memory that subscribers who stop reading can pin, whatever their
    /// number: without it, [`live_capacity`](Config::live_capacity) versions of the largest
    /// size accepted could stay in memory for as long as one subscriber is stalled. Only
    /// versions that some subscriber has yet to read are kept, and the versions last sent are
    /// kept until the next commit even past this budget, so that a subscriber that keeps up
    /// never misses one. The transport's cached encoding of a version is not counted, so the
    /// memory held is up to about twice this.
    ///
    /// The default, 64 MiB, leaves the entry count as the bound for versions of up to 16 KiB on
    /// average (4,096 of them fit), so that ordinary traffic behaves as with no byte budget,
    /// while 64 versions of 1 MiB, for example, are all that stalled subscribers can hold.
    pub live_bytes: usize,
    /// The most versions one commit takes: at most what the storage stores atomically. An
    /// insert of several versions is never split over two commits, so this is also the most
    /// versions one [`insert_many`](crate::Broker::insert_many) may hold.
    ///
    /// The default, 4,096, as many as the live window holds, lets arrays of a thousand share a
    /// commit, and its sync, four at a time.
    pub max_batch: usize,
    /// How many inserts may wait for a commit before `insert` itself waits for room.
    pub queue_capacity: usize,
    /// How long an insert may wait for its commit to start. One that waited longer, behind a
    /// commit the storage is slow to answer (a replicated log electing a leader, a stalled
    /// disk), is refused with [`StorageError::Unavailable`](broker_storage::StorageError) without
    /// being sent, so that an inserter gets an answer in bounded time: this, plus the time the
    /// backend takes to answer one append.
    pub queue_timeout: Duration,
    /// How much history each event keeps: the first rule that matches an event governs it, and
    /// an event no rule matches keeps every version (the default: no rules). A background task
    /// prunes what the rules let go of, a bounded step at a time; see [`RetentionRule`].
    pub retention: Vec<RetentionRule>,
    /// How often the retention rules are applied.
    pub prune_interval: Duration,
}

impl Default for Config {
    fn default() -> Config {
        Config {
            max_event_name_len: DEFAULT_MAX_EVENT_NAME_LEN,
            live_capacity: 4096,
            live_bytes: 64 * 1024 * 1024,
            max_batch: 4096,
            queue_capacity: 16 * 1024,
            queue_timeout: Duration::from_secs(5),
            retention: Vec::new(),
            prune_interval: Duration::from_secs(1),
        }
    }
}
