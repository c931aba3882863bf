//! `latest` and `latest_at`: the latest version of every event, now or as of an id, read with
//! multi-subject gets (`multi_last`) that any replica answers.
//!
//! The whole stream is asked for at once first. The server answers a multi-subject get for at
//! most 1,024 subjects and refuses more (`413`); the snapshot is then read in groups of the
//! buckets of `subject.rs`, halved until each group is answered, every group as of one sequence
//! (`up_to_seq`). A replica whose log does not reach that sequence answers "no results" to such
//! a request rather than a stale snapshot, but so would a replica that is up to date for a group
//! that holds no event; so every group also names an **anchor**, the subject of an event with a
//! version at or below that sequence, and "no results" then only means a replica behind.
//!
//! - `latest` checks that the whole-stream answer reflects the store's mark (see `reads.rs`);
//!   its groups are read as of the stream's last sequence, as the leader tells it, anchored on
//!   the subject of the last message, which is never pruned.
//! - `latest_at(at)`, for an `at` at or past the mark, is `latest` when the answer does not go
//!   past `at`. Otherwise it is read as of `at` itself (or the stream's last sequence, if that
//!   is earlier), which only a replica whose log reaches that far answers: so the answer holds
//!   every version up to `at` that the store has seen. The anchor is then the subject of the
//!   stream's first message, from the leader; when that is past `at`, nothing up to `at` is
//!   left, and the state is empty.
//!
//! An event whose versions up to `at` were all pruned has none left there, and is left out. A
//! replica that has not applied the purge yet still returns one; it is at or below the event's
//! horizon, and dropped (see [`Shared::drop_pruned`]).

use broker_storage::{StorageError, Version};
use serde_json::json;

use crate::direct::Answer;
use crate::reads::{MAX_DIRECT_BYTES, direct_get, leader_get, retrying};
use crate::shared::Shared;
use crate::subject;

/// The latest version of every event, in id order.
pub(crate) async fn latest(shared: &Shared) -> Result<Vec<Version>, StorageError> {
    retrying(shared, "latest", |known| latest_once(shared, known)).await
}

/// The latest version with an id at most `at` of every event, in id order.
pub(crate) async fn latest_at(shared: &Shared, at: u64) -> Result<Vec<Version>, StorageError> {
    // Ids start at 1; and `up_to_seq` 0 would ask for the state now.
    if at == 0 {
        return Ok(Vec::new());
    }
    retrying(shared, "latest_at", |known| async move {
        let Some(mut versions) = latest_at_once(shared, at, known).await? else {
            return Ok(None);
        };
        shared.drop_pruned(&mut versions);
        Ok(Some(versions))
    })
    .await
}

/// One try at `latest`: `None` when an answer did not cover `known`.
async fn latest_once(shared: &Shared, known: u64) -> Result<Option<Vec<Version>>, StorageError> {
    let all = subject::all(&shared.options.stream);
    match multi_last(shared, std::slice::from_ref(&all), None).await? {
        Multi::Versions(versions, reflects) => return Ok((reflects >= known).then_some(versions)),
        // An empty stream is only an answer for a store that has seen nothing.
        Multi::NotFound => return Ok((known == 0).then(Vec::new)),
        Multi::Unanswered => return Ok(None),
        Multi::TooManyResults => {}
    }
    let Some(last) = leader_get(shared, json!({ "last_by_subj": all })).await? else {
        return Ok(None);
    };
    if last.seq < known {
        return Ok(None);
    }
    groups(shared, last.seq, &last.subject).await
}

/// One try at `latest_at(at)`: `None` when an answer did not cover `known`.
async fn latest_at_once(
    shared: &Shared,
    at: u64,
    known: u64,
) -> Result<Option<Vec<Version>>, StorageError> {
    let all = subject::all(&shared.options.stream);
    if at >= known {
        match multi_last(shared, std::slice::from_ref(&all), None).await? {
            Multi::Versions(versions, reflects) if reflects <= at => {
                return Ok((reflects >= known).then_some(versions));
            }
            // The replica's log goes past `at`, or holds too many events for one get.
            Multi::Versions(..) | Multi::TooManyResults => {}
            Multi::NotFound => return Ok((known == 0).then(Vec::new)),
            Multi::Unanswered => return Ok(None),
        }
        // A state as of a sequence past the stream's last is refused; the last message is the
        // anchor, since its event's latest version up to it is itself.
        let Some(last) = leader_get(shared, json!({ "last_by_subj": all })).await? else {
            return Ok(None);
        };
        if last.seq <= at {
            return as_of(shared, last.seq, Some(last.subject)).await;
        }
    }
    as_of(shared, at, None).await
}

/// The state as of `up_to`, a sequence the stream's log reaches, from a replica whose log
/// reaches it too. `anchor` is the subject of an event with a version at or below `up_to`; when
/// it is not given and one is needed, the subject of the stream's first message is.
async fn as_of(
    shared: &Shared,
    up_to: u64,
    anchor: Option<String>,
) -> Result<Option<Vec<Version>>, StorageError> {
    let all = subject::all(&shared.options.stream);
    let too_many = match multi_last(shared, std::slice::from_ref(&all), Some(up_to)).await? {
        Multi::Versions(versions, reflects) if reflects == up_to => return Ok(Some(versions)),
        Multi::Versions(..) | Multi::Unanswered => return Ok(None),
        // Nothing is left up to `up_to`, or the replica is behind: the anchor tells.
        Multi::NotFound => false,
        Multi::TooManyResults => true,
    };
    let anchor = match anchor {
        Some(anchor) => anchor,
        None => match leader_get(shared, json!({ "next_by_subj": all, "seq": 1 })).await? {
            Some(first) if first.seq <= up_to => first.subject,
            // Every message up to `up_to` was pruned, or none was ever stored.
            _ => return Ok(Some(Vec::new())),
        },
    };
    // With an anchor, "no results" for the whole stream is a replica behind.
    if !too_many {
        return Ok(None);
    }
    groups(shared, up_to, &anchor).await
}

/// The state as of `up_to` read in groups of buckets, each with `anchor`; see the module
/// documentation. `None` when a replica behind answered.
async fn groups(
    shared: &Shared,
    up_to: u64,
    anchor: &str,
) -> Result<Option<Vec<Version>>, StorageError> {
    let prefix = &shared.options.stream;
    let half = subject::BUCKETS / 2;
    let mut groups = vec![(0, half), (half, subject::BUCKETS)];
    let mut versions = Vec::new();
    while let Some((start, end)) = groups.pop() {
        let mut filters: Vec<String> =
            (start..end).map(|bucket| subject::bucket_filter(prefix, bucket)).collect();
        filters.push(anchor.to_owned());
        match multi_last(shared, &filters, Some(up_to)).await? {
            Multi::Versions(group, reflects) if reflects == up_to => versions.extend(group),
            Multi::Versions(..) | Multi::NotFound | Multi::Unanswered => return Ok(None),
            Multi::TooManyResults if end - start == 1 => {
                return Err(StorageError::backend(format!(
                    "more than 1,024 events fall into bucket {start:02x} of stream {prefix}, \
                     more than a multi-subject get answers for"
                )));
            }
            Multi::TooManyResults => {
                let middle = start + (end - start) / 2;
                groups.push((start, middle));
                groups.push((middle, end));
            }
        }
    }
    // The anchor's version came with every group.
    versions.sort_by_key(|version| version.id);
    versions.dedup_by_key(|version| version.id);
    Ok(Some(versions))
}

/// What a multi-subject get answered.
enum Multi {
    /// The latest version of each matching subject, and the sequence the answer reflects.
    Versions(Vec<Version>, u64),
    /// No subject matches, or the replica's log does not reach `up_to_seq`.
    NotFound,
    /// More than 1,024 subjects match.
    TooManyResults,
    /// No replica answered.
    Unanswered,
}

/// A multi-subject get of `filters`, as of `up_to` when given, in as many batches as the replica
/// cuts it into, each later batch pinned to the sequence the first reflected.
async fn multi_last(
    shared: &Shared,
    filters: &[String],
    up_to: Option<u64>,
) -> Result<Multi, StorageError> {
    let mut versions = Vec::new();
    let mut pinned = up_to;
    let mut from = 0;
    loop {
        let mut request = json!({ "multi_last": filters, "max_bytes": MAX_DIRECT_BYTES });
        if let Some(pinned) = pinned {
            request["up_to_seq"] = json!(pinned);
        }
        if from > 0 {
            request["seq"] = json!(from);
        }
        match direct_get(shared, &request).await? {
            Answer::Batch(batch, end) => {
                let reflects = end.up_to_sequence.unwrap_or(end.last_sequence);
                if pinned.is_some_and(|pinned| reflects != pinned) {
                    return Ok(Multi::Unanswered);
                }
                pinned = Some(reflects);
                versions.extend(batch);
                if end.num_pending == 0 {
                    return Ok(Multi::Versions(versions, reflects));
                }
                from = end.last_sequence + 1;
            }
            Answer::NotFound if from == 0 => return Ok(Multi::NotFound),
            Answer::NotFound | Answer::Unanswered => return Ok(Multi::Unanswered),
            Answer::TooManyResults => return Ok(Multi::TooManyResults),
        }
    }
}
