//! The state of the log at a past point: [`At`], and the reads that answer it from the storage's
//! per-event index.

use std::time::SystemTime;

use broker_storage::Version;

use crate::Error;
use crate::clock::millis_at;
use crate::erased::DynStorage;
use crate::filter::Filter;

/// A point of the log, for [`Broker::snapshot_at`](crate::Broker::snapshot_at).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum At {
    /// Once the version with this id was committed (an id never given out stands for the point
    /// after every version below it).
    Id(u64),
    /// At this moment: once every version stamped at or before it was committed.
    Time(SystemTime),
}

/// The latest version at or before `at` of every event `filter` follows, in id order.
///
/// # Errors
///
/// [`Error::Pruned`] when an event the filter follows has pruned versions and none kept at or
/// before the point, so that its state then is not known; storage errors as they come.
pub(crate) async fn state_at(
    storage: &dyn DynStorage,
    at: At,
    last_id: u64,
    filter: &Filter,
) -> Result<Vec<Version>, Error> {
    let at = match at {
        At::Id(id) => id,
        At::Time(time) => id_at_time(storage, millis_at(time), last_id).await?,
    };
    let mut state = storage.latest_at(at).await?;
    state.retain(|version| filter.matches(&version.event));
    // An event pruned at least once whose state at `at` is missing: either the version that was
    // its latest then is gone, or it did not exist yet, and the two cannot be told apart.
    let mut unknown = storage.horizons().await?;
    unknown.retain(|horizon| {
        filter.matches(&horizon.event)
            && !state.iter().any(|version| *version.event == *horizon.event)
    });
    if let Some(horizon) = unknown.into_iter().max_by_key(|horizon| horizon.pruned_through) {
        let oldest = storage.history(&horizon.event, horizon.pruned_through, 1).await?;
        return Err(Error::Pruned {
            oldest_kept: oldest.first().map_or(horizon.pruned_through + 1, |version| version.id),
            event: horizon.event,
            pruned_through: horizon.pruned_through,
        });
    }
    Ok(state)
}

/// The greatest id of a stored version stamped at or before `timestamp`, up to `last_id`; 0 when
/// there is none.
///
/// Timestamps never decrease in id order (the writer sees to it), so a binary search over ids
/// finds it, each probe a read of the first version from an id on: a few dozen index lookups,
/// whatever the size of the log. Pruned versions are skipped, so the answer may be an earlier
/// id; the state there then misses the pruned event, which [`state_at`] reports.
async fn id_at_time(storage: &dyn DynStorage, timestamp: u64, last_id: u64) -> Result<u64, Error> {
    // The answer is at least `low`, 0 or a stored id stamped at or before `timestamp`, and
    // below `high`.
    let mut low = 0;
    let mut high = last_id.saturating_add(1);
    while high - low > 1 {
        let middle = low + (high - low) / 2;
        // The first stored version from `middle` on: when it is in range and early enough, the
        // answer is at least its id; otherwise no stored id from `middle` to `high` is.
        match storage.since(middle - 1, 1).await?.first() {
            Some(version) if version.id < high && version.timestamp <= timestamp => {
                low = version.id;
            }
            _ => high = middle,
        }
    }
    Ok(low)
}
