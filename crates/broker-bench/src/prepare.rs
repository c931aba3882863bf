//! Fills a redb store with many versions directly through the storage crate, in large
//! batches: the database of the restart and past scenarios, in seconds rather than the hours a
//! million HTTP inserts would take.

use std::path::Path;
use std::time::{Duration, Instant};

use broker_storage::{NewVersion, Storage};
use broker_storage_redb::RedbStorage;

use crate::payload::{self, Stamp};

/// Versions per commit.
const BATCH: u64 = 50_000;

/// Appends `versions` versions spread round-robin over `events` events (`e00000`, `e00001`, …),
/// each with a `payload`-byte benchmark payload, to the store at `path`.
///
/// The `n`-th version appended (from 0) is of event [`event`]`(n % events)` and stamped `n`
/// milliseconds after the first, which is stamped `versions` milliseconds before the call: every
/// version has its own time, all of them in the past, so a past state can be asked for by time
/// as well as by id. On a fresh store the `n`-th version gets the id `n + 1`.
pub(crate) async fn fill(
    path: &Path,
    versions: u64,
    events: u64,
    payload: usize,
) -> anyhow::Result<Duration> {
    let started = Instant::now();
    let store = RedbStorage::open(path).await?;
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |since| since.as_millis() as u64);
    let first = now.saturating_sub(versions);
    let mut done = 0;
    let mut data = Vec::with_capacity(payload + 64);
    while done < versions {
        let count = BATCH.min(versions - done);
        let batch = (done..done + count)
            .map(|n| {
                data.clear();
                payload::build(&mut data, Stamp { publisher: 0, seq: n + 1, sent_ns: 0 }, payload);
                let data = String::from_utf8_lossy(&data).into_owned();
                NewVersion::new(event(n % events.max(1)), first + n, data)
            })
            .collect();
        store.append(batch).await?;
        done += count;
        eprintln!("  prepare: {done} of {versions} versions");
    }
    store.close().await?;
    Ok(started.elapsed())
}

/// The name of the `index`-th event of a prepared store.
pub(crate) fn event(index: u64) -> String {
    format!("e{index:05}")
}
