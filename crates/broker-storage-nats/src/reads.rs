//! Reads: batched direct gets, answered by any replica of the stream, checked so that they never
//! go back in time.
//!
//! A replica may be behind the leader. It still holds an exact prefix of the log (the log is
//! append-only, and sequences have no holes since nothing can be deleted), so whatever it
//! answers is true; it may only leave out the newest versions. The store remembers the highest
//! sequence it has seen (see [`Shared::saw`]), and each read checks that its answer covers it:
//!
//! - `since` filters on every subject, so the end of batch tells how far the replica's log
//!   reaches: the last sequence of the batch plus the matching messages after it.
//! - `latest` is a multi-subject get, whose end of batch names the sequence it reflects.
//! - `history` filters on one subject, whose end of batch says nothing of the rest of the log.
//!   A page that holds fewer than `limit` versions and does not reach the high mark is checked
//!   with the stream leader: the leader's next version of the event after the page must be
//!   newer than the mark, or missing.
//!
//! An answer that does not cover the mark, and a request that no replica answered, are asked
//! for again, until
//! [`NatsOptions::retry_timeout`](crate::NatsOptions::retry_timeout); a replica that stays behind
//! that long makes the read fail as [`StorageError::Unavailable`].

use std::time::Duration;

use broker_storage::{StorageError, Version};
use serde_json::{Value, json};
use tokio::time::Instant;

use crate::api::{self, ApiError, codes};
use crate::direct::{self, Answer};
use crate::record::RawMessage;
use crate::shared::Shared;
use crate::subject;

/// The most messages asked for in one direct get.
const MAX_DIRECT_BATCH: usize = 1000;

/// About the most bytes of messages asked for in one direct get: the replica stops after the
/// message that reaches it, and the read asks for the rest in another. Versions of up to a
/// megabyte would otherwise make a batch of a thousand a gigabyte in memory at once.
const MAX_DIRECT_BYTES: usize = 4 * 1024 * 1024;

/// Versions of every event after `after`, at most `limit`.
pub(crate) async fn since(
    shared: &Shared,
    after: u64,
    limit: usize,
) -> Result<Vec<Version>, StorageError> {
    let filter = &subject::all(&shared.options.stream);
    retrying(shared, "since", |known| async move {
        let Some((page, end)) = pages(shared, filter, after, limit).await? else {
            return Ok(None);
        };
        Ok(since_covers(page.len(), limit, after, end, known).then_some(page))
    })
    .await
}

/// Whether a page of `since(after, limit)` of `len` versions, whose last batch ended as `end`,
/// holds every version up to the mark `known` that it should.
///
/// A full page is a true prefix of what follows `after`, whatever the replica missed after it.
/// A short one must come from a replica whose log reaches the mark: every message matches the
/// filter of `since`, so the log ends at the last sequence of the batch plus the messages
/// pending after it; and an empty answer reaches only `after`.
fn since_covers(len: usize, limit: usize, after: u64, end: Option<(u64, u64)>, known: u64) -> bool {
    let reach = end.map_or(after, |(last, pending)| last.saturating_add(pending));
    len == limit || reach >= known
}

/// Versions of `event` after `after`, at most `limit`.
pub(crate) async fn history(
    shared: &Shared,
    event: &str,
    after: u64,
    limit: usize,
) -> Result<Vec<Version>, StorageError> {
    let filter = &subject::encode(&shared.options.stream, event);
    retrying(shared, "history", |known| {
        async move {
            let Some((page, end)) = pages(shared, filter, after, limit).await? else {
                return Ok(None);
            };
            let reach = end.map_or(after, |(last, _)| last.max(after));
            if page.len() == limit || reach >= known {
                return Ok(Some(page));
            }
            // The replica may have missed versions of this event up to the mark: ask the leader
            // for the next one after the page.
            let next =
                leader_get(shared, json!({ "next_by_subj": filter, "seq": reach + 1 })).await?;
            Ok(match next {
                Some(next) if next.seq <= known => None,
                _ => Some(page),
            })
        }
    })
    .await
}

/// The latest version of every event, in id order.
pub(crate) async fn latest(shared: &Shared) -> Result<Vec<Version>, StorageError> {
    retrying(shared, "latest", |known| latest_once(shared, known)).await
}

/// One try at `latest`: `None` when an answer did not cover `known`.
///
/// The whole stream is asked for at once first. The server answers a multi-subject get for at
/// most 1,024 subjects and refuses more (`413`); the snapshot is then read in groups of the
/// buckets of `subject.rs`, halved until each group is answered, every group as of one
/// sequence: the stream's last when the read began, as the leader tells it. A replica whose log
/// does not reach that sequence answers "no results" to such a request rather than a stale
/// snapshot, but so would a replica that is up to date for a group that holds no event; so
/// every group also names the subject of the message at that sequence, whose last version
/// there is that message, and "no results" then only means a replica behind.
async fn latest_once(shared: &Shared, known: u64) -> Result<Option<Vec<Version>>, StorageError> {
    let prefix = &shared.options.stream;
    match multi_last(shared, &[subject::all(prefix)], None).await? {
        Multi::Versions(versions, reflects) => return Ok((reflects >= known).then_some(versions)),
        // An empty stream is only an answer for a store that has seen nothing.
        Multi::NotFound => return Ok((known == 0).then(Vec::new)),
        Multi::Unanswered => return Ok(None),
        Multi::TooManyResults => {}
    }
    let Some(last) = leader_get(shared, json!({ "last_by_subj": subject::all(prefix) })).await?
    else {
        return Ok(None);
    };
    let (up_to, anchor) = (last.seq, last.subject);
    if up_to < known {
        return Ok(None);
    }
    let half = subject::BUCKETS / 2;
    let mut groups = vec![(0, half), (half, subject::BUCKETS)];
    let mut versions = Vec::new();
    while let Some((start, end)) = groups.pop() {
        let mut filters: Vec<String> =
            (start..end).map(|bucket| subject::bucket_filter(prefix, bucket)).collect();
        filters.push(anchor.clone());
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

/// What [`pages`] read: the versions, and the end of the last batch, if a batch came, as its
/// last sequence and the matching messages it left out.
type Pages = (Vec<Version>, Option<(u64, u64)>);

/// Up to `limit` messages matching `filter` after `after`, in as many direct gets as it takes
/// (a replica may cut a batch short); `None` when no replica answered.
async fn pages(
    shared: &Shared,
    filter: &str,
    after: u64,
    limit: usize,
) -> Result<Option<Pages>, StorageError> {
    let mut page: Vec<Version> = Vec::new();
    let mut end = None;
    let mut position = after;
    while page.len() < limit && position < u64::MAX {
        let batch = (limit - page.len()).min(MAX_DIRECT_BATCH);
        let request = json!({
            "next_by_subj": filter,
            "seq": position + 1,
            "batch": batch,
            "max_bytes": MAX_DIRECT_BYTES,
        });
        match direct_get(shared, &request).await? {
            Answer::Batch(versions, eob) => {
                end = Some((eob.last_sequence, eob.num_pending));
                let Some(last) = versions.last() else { break };
                position = last.id;
                page.extend(versions);
                if eob.num_pending == 0 {
                    break;
                }
            }
            Answer::NotFound => break,
            Answer::Unanswered => return Ok(None),
            Answer::TooManyResults => {
                return Err(StorageError::backend("a direct get by subject answered 413"));
            }
        }
    }
    Ok(Some((page, end)))
}

/// The version stored at `sequence`, read from the stream leader, which has every acknowledged
/// version.
pub(crate) async fn by_sequence(shared: &Shared, sequence: u64) -> Result<Version, StorageError> {
    match leader_get(shared, json!({ "seq": sequence })).await? {
        Some(message) => message.version(&shared.options.stream),
        None => Err(StorageError::backend(format!(
            "the stream leader has no message {sequence}, which it acknowledged"
        ))),
    }
}

/// A `$JS.API.STREAM.MSG.GET` request, which the stream leader answers; `None` when no message
/// matches.
async fn leader_get(shared: &Shared, request: Value) -> Result<Option<RawMessage>, StorageError> {
    let stream = &shared.options.stream;
    let subject = format!("$JS.API.STREAM.MSG.GET.{stream}");
    match api::request_json(&shared.client, subject, &request, shared.options.request_timeout).await
    {
        Ok(answer) => serde_json::from_value(answer["message"].clone())
            .map(Some)
            .map_err(|error| StorageError::backend(format!("a message get answered: {error}"))),
        Err(ApiError::Api(error)) if error.err_code == codes::NO_MESSAGE_FOUND => Ok(None),
        Err(error) => Err(error.into_storage(&format!("reading stream {stream} from its leader"))),
    }
}

/// A direct get of this store's stream.
async fn direct_get(shared: &Shared, request: &Value) -> Result<Answer, StorageError> {
    let options = &shared.options;
    direct::get(&shared.client, &options.stream, &options.stream, request, options.request_timeout)
        .await
}

/// Runs `read` with the store's high mark until it answers, or the retry timeout runs out, and
/// raises the mark to the last id it returns.
async fn retrying<F, Fut>(
    shared: &Shared,
    what: &str,
    mut read: F,
) -> Result<Vec<Version>, StorageError>
where
    F: FnMut(u64) -> Fut,
    Fut: std::future::Future<Output = Result<Option<Vec<Version>>, StorageError>>,
{
    let deadline = Instant::now() + shared.options.retry_timeout;
    let mut backoff = Duration::from_millis(10);
    loop {
        if shared.closed.is_cancelled() {
            return Err(StorageError::Closed);
        }
        let known = shared.seen();
        if let Some(versions) = read(known).await? {
            if let Some(last) = versions.iter().map(|version| version.id).max() {
                shared.saw(last);
            }
            return Ok(versions);
        }
        tracing::debug!(what, known, "no replica answered, or one from behind; reading again");
        if Instant::now() + backoff >= deadline {
            return Err(StorageError::Unavailable(format!(
                "{what}: for {:?}, no replica of the stream answered, or only replicas behind \
                 sequence {known}, which this store has seen",
                shared.options.retry_timeout
            )));
        }
        tokio::time::sleep(backoff).await;
        backoff = (backoff * 2).min(Duration::from_millis(500));
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn since_pages_cover_the_mark_only_from_a_replica_that_reaches_it() {
        let check = |len, limit, after, end, known, expected: bool| {
            let covers = since_covers(len, limit, after, end, known);
            assert_eq!(covers, expected, "{len} of {limit} after {after}, {end:?}, mark {known}");
        };
        // Up to date: the last batch ends at 20 with nothing after it, the mark is 20.
        check(10, 100, 10, Some((20, 0)), 20, true);
        // The replica's log ends at 15: versions 16 to 20 are missing.
        check(5, 100, 10, Some((15, 0)), 20, false);
        // Cut short by the replica, which has more after it: its log reaches 25.
        check(5, 100, 10, Some((15, 10)), 20, true);
        // A full page is right even from a replica that is behind.
        check(100, 100, 0, Some((100, 0)), 500, true);
        // Nothing after 10 on the replica, but the store has seen 12.
        check(0, 100, 10, None, 12, false);
        check(0, 100, 12, None, 12, true);
        check(0, 0, 0, None, 12, true);
    }
}
