//! The wall clock, in the unit versions carry.

use std::time::{Duration, SystemTime, UNIX_EPOCH};

/// Milliseconds since the Unix epoch.
pub(crate) fn now_millis() -> u64 {
    // A clock before 1970 is a broken clock; 0 keeps timestamps well-defined if it happens.
    SystemTime::now().duration_since(UNIX_EPOCH).map_or(0, millis)
}

/// Milliseconds since the Unix epoch at `time`, 0 before it.
pub(crate) fn millis_at(time: SystemTime) -> u64 {
    time.duration_since(UNIX_EPOCH).map_or(0, millis)
}

fn millis(duration: Duration) -> u64 {
    u64::try_from(duration.as_millis()).unwrap_or(u64::MAX)
}
