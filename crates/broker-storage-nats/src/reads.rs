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
use crate::store::Shared;
use crate::subject;

/// The most messages asked for in one direct get.
const MAX_DIRECT_BATCH: usize = 1000;

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
        // Every message matches the filter, so the replica's log ends at the batch's last
        // sequence plus what is pending after it.
        let reach = end.map_or(after, |(last, pending)| last.saturating_add(pending));
        Ok((page.len() == limit || reach >= known).then_some(page))
    })
    .await
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
/// The whole stream is asked for first. The server answers a multi-subject get for at most
/// 1,024 subjects and refuses more (`413`); the request is then split into halves of the
/// buckets of `subject.rs`, down to single buckets, each answered as of the sequence the first
/// answer reflected, so that together they are one consistent snapshot.
async fn latest_once(shared: &Shared, known: u64) -> Result<Option<Vec<Version>>, StorageError> {
    let prefix = &shared.options.stream;
    let mut groups: Vec<Option<(usize, usize)>> = vec![None];
    let mut up_to: Option<u64> = None;
    let mut versions = Vec::new();
    while let Some(group) = groups.pop() {
        let filters: Vec<String> = match group {
            None => vec![subject::all(prefix)],
            Some((start, end)) => (start..end).map(|b| subject::bucket_filter(prefix, b)).collect(),
        };
        let mut from = 1;
        loop {
            let mut request = json!({ "multi_last": filters, "seq": from });
            if let Some(up_to) = up_to {
                request["up_to_seq"] = json!(up_to);
            }
            match direct_get(shared, &request).await? {
                Answer::Batch(batch, end) => {
                    let reflects = end.up_to_sequence.unwrap_or(end.last_sequence);
                    if reflects < known || up_to.is_some_and(|up_to| reflects < up_to) {
                        return Ok(None);
                    }
                    up_to.get_or_insert(reflects);
                    versions.extend(batch);
                    if end.num_pending == 0 {
                        break;
                    }
                    from = end.last_sequence + 1;
                }
                // Nothing stored under these subjects, or nothing at all yet; an empty stream
                // is only an answer for a store that has seen nothing.
                Answer::NotFound if up_to.is_some() || known == 0 => break,
                Answer::NotFound | Answer::Unanswered => return Ok(None),
                Answer::TooManyResults => {
                    let (start, end) = group.unwrap_or((0, subject::BUCKETS));
                    if end - start == 1 {
                        return Err(StorageError::backend(format!(
                            "more than 1,024 events fall into bucket {start:02x} of stream \
                             {prefix}, more than a multi-subject get answers for"
                        )));
                    }
                    let middle = start + (end - start) / 2;
                    groups.push(Some((start, middle)));
                    groups.push(Some((middle, end)));
                    break;
                }
            }
        }
    }
    versions.sort_by_key(|version| version.id);
    Ok(Some(versions))
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
        let request = json!({ "next_by_subj": filter, "seq": position + 1, "batch": batch });
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
