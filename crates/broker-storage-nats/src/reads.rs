//! Reads: batched direct gets, answered by any replica of the stream, checked so that they never
//! go back in time.
//!
//! A replica may be behind the leader. It still holds the log as it was at some point, so
//! whatever it answers was true then: it may leave out the newest versions, and, where
//! versions were pruned, still hold some that the leader has purged. The store remembers the
//! highest sequence it has seen (see [`Shared::saw`]), and each read checks that its answer
//! covers it:
//!
//! - `since` filters on every subject, so the end of batch tells how far the replica's log
//!   reaches: the last sequence of the batch plus the matching messages after it. Purges leave
//!   holes in the sequences, which only make the log reach further than that sum, and never
//!   remove the stream's last message (an event's latest version is never pruned): a batch
//!   with nothing pending after it ends at the replica's last sequence.
//! - `history` filters on one subject, whose end of batch says nothing of the rest of the log.
//!   A page that holds fewer than `limit` versions and does not reach the high mark is checked
//!   with the stream leader: the leader's next version of the event after the page must be
//!   newer than the mark, or missing.
//! - `latest` and `latest_at` are multi-subject gets; see `snapshot.rs`.
//!
//! Versions a replica still holds after a purge are left out by the horizons the store knows
//! (see [`Shared::drop_pruned`]): `history` starts after its event's horizon, and every other
//! read drops what is at or below one.
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
use crate::record::{self, RawMessage};
use crate::shared::Shared;
use crate::subject;

/// The most messages asked for in one direct get.
pub(crate) const MAX_DIRECT_BATCH: usize = 1000;

/// About the most bytes of messages asked for in one direct get: the replica stops after the
/// message that reaches it, and the read asks for the rest in another. Versions of up to a
/// megabyte would otherwise make a batch of a thousand a gigabyte in memory at once.
pub(crate) const MAX_DIRECT_BYTES: usize = 4 * 1024 * 1024;

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
    // Every version up to the horizon is gone, though a replica may still hold some.
    let after = after.max(shared.pruned_through(event));
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

/// What [`pages`] read: the versions, and the end of the last batch, if a batch came, as its
/// last sequence and the matching messages it left out.
type Pages = (Vec<Version>, Option<(u64, u64)>);

/// Up to `limit` versions matching `filter` after `after`, leaving out the pruned ones, in as
/// many direct gets as it takes (a replica may cut a batch short); `None` when no replica
/// answered.
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
            Answer::Batch(mut versions, eob) => {
                end = Some((eob.last_sequence, eob.num_pending));
                let Some(last) = versions.last() else { break };
                position = last.id;
                shared.drop_pruned(&mut versions);
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
pub(crate) async fn leader_get(
    shared: &Shared,
    request: Value,
) -> Result<Option<RawMessage>, StorageError> {
    leader_get_from(shared, &shared.options.stream, request).await
}

/// [`leader_get`] from the stream `stream`.
pub(crate) async fn leader_get_from(
    shared: &Shared,
    stream: &str,
    request: Value,
) -> Result<Option<RawMessage>, StorageError> {
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
pub(crate) async fn direct_get(
    shared: &Shared,
    request: &Value,
) -> Result<Answer<Version>, StorageError> {
    let options = &shared.options;
    let prefix = &options.stream;
    direct::get(&shared.client, prefix, request, options.request_timeout, |message| {
        record::from_direct(prefix, message)
    })
    .await
}

/// Runs `read` with the store's high mark until it answers, or the retry timeout runs out, and
/// raises the mark to the last id it returns.
pub(crate) async fn retrying<F, Fut>(
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
