//! Batched direct gets: one request to `$JS.API.DIRECT.GET.<stream>`, answered by any replica
//! of the stream with a series of messages closed by an end-of-batch status. Each message is
//! decoded by the caller: a version of the database's stream, or a horizon of the horizons
//! bucket.
//!
//! async-nats has no call for them, so the request goes out by hand: a reply inbox, the request,
//! then every message until the closing `204 EOB`, whose headers say how many matching messages
//! the batch left out (`Nats-Num-Pending`), the last sequence it covered (`Nats-Last-Sequence`),
//! and for a multi-subject get the point of the stream it reflects (`Nats-UpTo-Sequence`).
//! Each message must arrive within the request timeout of the one before, so a replica that
//! stops answering mid-batch costs one timeout, never a hang.

use std::time::Duration;

use async_nats::{Client, Message, StatusCode};
use broker_storage::StorageError;
use futures_util::StreamExt as _;
use serde_json::Value;

/// What a batched direct get answered.
#[derive(Debug)]
pub(crate) enum Answer<T> {
    /// Some messages, decoded, and the end of the batch.
    Batch(Vec<T>, EndOfBatch),
    /// No message matches (`404`).
    NotFound,
    /// A multi-subject get matched more subjects than the server answers for at once (`413`).
    TooManyResults,
    /// No answer in time from the replica the request went to, or no replica listening: right
    /// after the stream is created, or while its replicas restart. Worth asking again.
    Unanswered,
}

/// The closing status of a batch.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct EndOfBatch {
    /// Matching messages after the batch that it left out.
    pub(crate) num_pending: u64,
    /// The sequence the batch ends at.
    pub(crate) last_sequence: u64,
    /// For a multi-subject get: the stream sequence the answer reflects.
    pub(crate) up_to_sequence: Option<u64>,
}

/// Sends `request` (a direct get request's JSON) to the stream `stream` and reads the batch,
/// each message through `decode`.
pub(crate) async fn get<T>(
    client: &Client,
    stream: &str,
    request: &Value,
    timeout: Duration,
    decode: impl Fn(&Message) -> Result<T, StorageError>,
) -> Result<Answer<T>, StorageError> {
    let subject = format!("$JS.API.DIRECT.GET.{stream}");
    let inbox = client.new_inbox();
    let unavailable = |error: &dyn std::fmt::Display| StorageError::Unavailable(error.to_string());
    let mut answers = client.subscribe(inbox.clone()).await.map_err(|e| unavailable(&e))?;
    client
        .publish_with_reply(subject.clone(), inbox, request.to_string().into())
        .await
        .map_err(|e| unavailable(&e))?;
    let mut decoded = Vec::new();
    loop {
        let message = match tokio::time::timeout(timeout, answers.next()).await {
            Ok(Some(message)) => message,
            Ok(None) | Err(_) => return Ok(Answer::Unanswered),
        };
        match message.status {
            None | Some(StatusCode::OK) => decoded.push(decode(&message)?),
            Some(StatusCode::NO_RESPONDERS) => return Ok(Answer::Unanswered),
            Some(status) => {
                return match status.as_u16() {
                    204 => Ok(Answer::Batch(decoded, end_of_batch(&message)?)),
                    // A 404 after some messages is a batch cut short: the replica lost what it
                    // was reading. Asking again is the answer.
                    404 if decoded.is_empty() => Ok(Answer::NotFound),
                    404 => Ok(Answer::Unanswered),
                    413 => Ok(Answer::TooManyResults),
                    code => Err(StorageError::backend(format!(
                        "a direct get of stream {stream} answered {code} {}",
                        message.description.as_deref().unwrap_or("")
                    ))),
                };
            }
        }
    }
}

/// The headers of the closing `204 EOB` status.
fn end_of_batch(message: &async_nats::Message) -> Result<EndOfBatch, StorageError> {
    let number = |name: &str| {
        message
            .headers
            .as_ref()
            .and_then(|headers| headers.get(name))
            .and_then(|value| value.as_str().trim().parse::<u64>().ok())
    };
    let missing = |name: &str| {
        StorageError::backend(format!("a direct get's end of batch has no {name} header"))
    };
    Ok(EndOfBatch {
        num_pending: number("Nats-Num-Pending").ok_or_else(|| missing("Nats-Num-Pending"))?,
        last_sequence: number("Nats-Last-Sequence").ok_or_else(|| missing("Nats-Last-Sequence"))?,
        up_to_sequence: number("Nats-UpTo-Sequence"),
    })
}
