//! Pruning: the oldest versions of one event that a retention lets go of are removed with the
//! stream's own purge, once the event's horizon covers them.
//!
//! A purge with a subject filter and a sequence (`$JS.API.STREAM.PURGE.<stream>` with `filter`
//! and `seq`) removes every message of that subject below the sequence, in one step of the
//! stream's replicated log. A prune of an event:
//!
//! 1. reads the event's horizon from the leader of the horizons bucket (see `horizons.rs`), and
//!    purges below it again if the stream's leader still holds a version there: a prune that
//!    raised the horizon and failed before its purge left it;
//! 2. reads the event's oldest versions after the horizon as `history` does (never going back
//!    in time), at most `limit + 1` of them, then how many versions of the event the stream's
//!    leader holds;
//! 3. walks them oldest first, as the contract says, and stops at the event's latest version,
//!    at the first one the retention keeps or that is within the idempotency window of the
//!    clock, and at `limit` ([`cut`]);
//! 4. raises the horizon to the last version it removes, then purges below the next sequence.
//!
//! The count is read after the versions: an append meanwhile can only make it larger, by a
//! version that is newer, and another broker's prune meanwhile only smaller. So a version is
//! never taken to have more newer versions than it has, and `keep_last` and the latest version
//! are kept whatever runs at the same time. The purge is bounded by a sequence, so it never
//! touches a version appended after the versions were read.

use std::time::Duration;

use broker_storage::{Pruned, Retention, StorageError, Version};
use serde_json::json;
use tokio::time::Instant;

use crate::api::{self, ApiError};
use crate::horizons;
use crate::reads;
use crate::shared::Shared;
use crate::subject;

/// Removes the oldest versions of `event` that `retention` lets go of, at most `limit`; see the
/// module documentation.
pub(crate) async fn prune(
    shared: &Shared,
    event: &str,
    retention: Retention,
    limit: usize,
) -> Result<Pruned, StorageError> {
    let stream = &shared.options.stream;
    if !shared.options.prune {
        return Err(StorageError::backend(format!(
            "retention needs pruning on (NatsOptions::prune, --retain): stream {stream} was \
             opened without it, and the versions of {event:?} stay"
        )));
    }
    if retention.keeps_everything() {
        return Ok(Pruned::default());
    }
    let subject = subject::encode(stream, event);
    let horizon = horizons::of(shared, event).await?;
    finish_earlier_purge(shared, &subject, horizon).await?;
    let versions = reads::history(shared, event, horizon, limit.saturating_add(1)).await?;
    if versions.is_empty() {
        return Ok(Pruned::default());
    }
    let count = count(shared, &subject).await?;
    let window_start = now_millis().saturating_sub(millis(shared.idempotency_window));
    let (removed, more) = cut(&versions, count, retention, limit, window_start);
    if removed > 0 {
        let through = versions[removed - 1].id;
        horizons::raise(shared, event, through).await?;
        purge(shared, &subject, through + 1).await?;
    }
    Ok(Pruned { removed, more })
}

/// How many of `versions`, the oldest of an event that has `count` versions, may be removed
/// under `retention` and `limit`, and whether more could be once those are: the walk of the
/// contract of [`Storage::prune`](broker_storage::Storage::prune), over versions whose
/// timestamp is before `window_start` only.
///
/// When every version read may go and the event has more than were read (appended since),
/// there may be more to remove.
fn cut(
    versions: &[Version],
    count: u64,
    retention: Retention,
    limit: usize,
    window_start: u64,
) -> (usize, bool) {
    let mut removed = 0;
    for (index, version) in versions.iter().enumerate() {
        let newer = count.saturating_sub(index as u64 + 1);
        if newer == 0 || !retention.releases(newer, version.timestamp) {
            return (removed, false);
        }
        // Past the limit, or kept for the idempotency window: left for a later call.
        if removed == limit || version.timestamp >= window_start {
            return (removed, true);
        }
        removed += 1;
    }
    (removed, true)
}

/// Purges what the stream's leader still holds of `subject` at or below `horizon`: a prune
/// that raised the horizon and then failed before its purge left it.
async fn finish_earlier_purge(
    shared: &Shared,
    subject: &str,
    horizon: u64,
) -> Result<(), StorageError> {
    if horizon == 0 {
        return Ok(());
    }
    let first = reads::leader_get(shared, json!({ "next_by_subj": subject, "seq": 1 })).await?;
    if first.is_some_and(|first| first.seq <= horizon) {
        tracing::info!(subject, horizon, "purging what an earlier prune left below its horizon");
        purge(shared, subject, horizon + 1).await?;
    }
    Ok(())
}

/// How many versions of `subject` the stream's leader holds.
async fn count(shared: &Shared, subject: &str) -> Result<u64, StorageError> {
    let stream = &shared.options.stream;
    let info = api::request_json(
        &shared.client,
        format!("$JS.API.STREAM.INFO.{stream}"),
        &json!({ "subjects_filter": subject }),
        shared.options.request_timeout,
    )
    .await
    .map_err(|error| error.into_storage(&format!("counting the versions of {subject}")))?;
    Ok(info["state"]["subjects"][subject].as_u64().unwrap_or(0))
}

/// Removes every message of `subject` below the sequence `below`, asking again while the leader
/// does not answer (a purge done twice removes nothing more), until the retry timeout.
async fn purge(shared: &Shared, subject: &str, below: u64) -> Result<(), StorageError> {
    let options = &shared.options;
    let stream = &options.stream;
    let deadline = Instant::now() + options.retry_timeout;
    loop {
        let answer = api::request_json(
            &shared.client,
            format!("$JS.API.STREAM.PURGE.{stream}"),
            &json!({ "filter": subject, "seq": below }),
            options.request_timeout,
        )
        .await;
        let failure = match answer {
            Ok(answer) if answer["success"].as_bool() == Some(true) => return Ok(()),
            Ok(answer) => StorageError::backend(format!("a purge of {subject} answered {answer}")),
            Err(ApiError::Timeout) if Instant::now() < deadline => {
                tokio::time::sleep(Duration::from_millis(100)).await;
                continue;
            }
            Err(error) => error.into_storage(&format!("purging {subject} in stream {stream}")),
        };
        // The horizon covers what this purge would have removed; the next prune of the event
        // purges it again.
        return Err(failure);
    }
}

/// Milliseconds since the Unix epoch, by the system clock.
fn now_millis() -> u64 {
    millis(std::time::UNIX_EPOCH.elapsed().unwrap_or_default())
}

fn millis(duration: Duration) -> u64 {
    u64::try_from(duration.as_millis()).unwrap_or(u64::MAX)
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Checks the cut of versions with `timestamps`, oldest first, of an event with `count`
    /// versions, against `expected` (removed, more), with the window starting at 100.
    fn check(
        timestamps: &[u64],
        count: u64,
        retention: Retention,
        limit: usize,
        expected: (usize, bool),
    ) {
        let versions: Vec<Version> = timestamps
            .iter()
            .enumerate()
            .map(|(index, &timestamp)| Version {
                id: index as u64 * 2 + 1,
                event: "a".into(),
                timestamp,
                data: "0".into(),
            })
            .collect();
        let cut = cut(&versions, count, retention, limit, 100);
        assert_eq!(cut, expected, "{timestamps:?} of {count}, {retention:?}, limit {limit}");
    }

    #[test]
    fn the_cut_follows_the_contract() {
        let all = Retention { keep_last: Some(0), keep_since: Some(u64::MAX) };
        // Keep the last 2 of 5: 3 go.
        check(&[1, 2, 3, 4, 5], 5, Retention::last(2), 100, (3, false));
        // At most `limit`, and more remain.
        check(&[1, 2, 3], 5, Retention::last(2), 2, (2, true));
        check(&[1, 2, 3], 5, Retention::last(3), 2, (2, false));
        // The latest stays whatever the retention says.
        check(&[1, 2, 3], 3, all, 100, (2, false));
        check(&[1], 1, all, 100, (0, false));
        // By time: stop at the first version kept.
        check(&[1, 2, 30, 4], 4, Retention::since(10), 100, (2, false));
        // The idempotency window keeps versions from 100 on, for a later call.
        check(&[1, 99, 100, 101], 10, all, 100, (2, true));
        // A limit of 0 removes nothing, and says whether there is something to remove.
        check(&[1, 2], 2, all, 0, (0, true));
        check(&[1, 2], 2, Retention::last(5), 0, (0, false));
        // Versions appended after the read: all of those read may go, and maybe more.
        check(&[1, 2], 4, Retention::last(1), 100, (2, true));
    }
}
