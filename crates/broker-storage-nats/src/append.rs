//! Appends: each batch goes to the stream as one atomic batch publish, every message carrying a
//! message id, so that a batch is stored whole or not at all and a retry is never stored twice.
//!
//! # Idempotency within atomic batches
//!
//! The server takes `Nats-Msg-Id` inside an atomic batch, but a batch holding an id it has seen
//! within its duplicate window is refused whole (error 10201), without saying which id nor the
//! sequence it was stored at. So a refused batch is followed by a probe of each of its ids: a
//! publish of that id with `Nats-Expected-Last-Sequence` set to a sequence the stream can never
//! have. The server checks duplicates first: an id it knows is answered `duplicate` with the
//! sequence of the original, an id it does not know fails the expectation, and neither stores
//! anything. The batch is then sent again without the duplicates, and the originals are read
//! back from the stream leader, so that a retry returns the stored version with its own event,
//! timestamp and data. A batch of one version is a plain publish, which the server answers with
//! the original's sequence itself.
//!
//! Batches hold at most [`MAX_BATCH`] messages, the server's limit. A longer batch is sent in
//! parts, and is then atomic only part by part: a failure after the first part was stored is
//! reported as [`StorageError::OutcomeUnknown`].
//!
//! # Failures and retries
//!
//! An answer that says nothing was done (no responders, no leader, a refusal) is final and
//! mapped at once. A request with no answer in time may have been stored, so it is sent again
//! with the same message ids, and a new batch id, until
//! [`NatsOptions::retry_timeout`](crate::NatsOptions::retry_timeout) runs out; then the append
//! answers
//! [`StorageError::OutcomeUnknown`]. After such a timeout, a refusal no longer proves that
//! nothing was stored, so it is retried the same way.

use std::collections::HashMap;
use std::time::Duration;

use async_nats::{HeaderMap, StatusCode};
use broker_storage::{NewVersion, StorageError, Version};
use bytes::Bytes;
use futures_util::StreamExt as _;
use tokio::time::Instant;

use crate::api::{self, ApiError, JsError, codes};
use crate::reads;
use crate::record;
use crate::shared::Shared;
use crate::subject;

/// The most messages in one atomic batch: the server refuses more.
pub(crate) const MAX_BATCH: usize = 1000;

/// How many times a batch is probed for duplicates before the append gives up: each probe
/// removes the ids it finds, so a second one is needed only when a concurrent retry stored one
/// of the remaining ids meanwhile.
const MAX_PROBES: usize = 4;

/// Where a version of the batch ended up.
#[derive(Clone, Copy, Debug)]
enum Stored {
    /// Stored by this append at this sequence.
    New(u64),
    /// Stored earlier under the same message id, at this sequence.
    Original(u64),
}

/// Why one publish attempt failed.
#[derive(Debug)]
enum Failure {
    /// No answer in time: the attempt may have been stored.
    Timeout,
    /// The batch holds a message id the stream already has; nothing was stored.
    Duplicates,
    /// The server refused, or nothing was sent; nothing was stored.
    Refused(StorageError),
}

/// Stores `batch`; see the module documentation.
pub(crate) async fn append(
    shared: &Shared,
    batch: Vec<NewVersion>,
) -> Result<Vec<Version>, StorageError> {
    if batch.is_empty() {
        return Ok(Vec::new());
    }
    let deadline = Instant::now() + shared.options.retry_timeout;
    let ids: Vec<String> = batch.iter().map(record::msg_id).collect();
    // The first version of each message id; a later one with the same id is answered with it.
    let mut first: HashMap<&str, usize> = HashMap::new();
    let mut unique = Vec::new();
    for (index, id) in ids.iter().enumerate() {
        first.entry(id.as_str()).or_insert_with(|| {
            unique.push(index);
            index
        });
    }
    let mut stored = HashMap::new();
    for (part, chunk) in unique.chunks(MAX_BATCH).enumerate() {
        match publish(shared, &batch, &ids, chunk, deadline).await {
            Ok(outcome) => stored.extend(outcome),
            Err(error) if part > 0 => {
                return Err(StorageError::OutcomeUnknown(format!(
                    "the batch of {} versions was sent in parts of {MAX_BATCH} and the first \
                     {} were stored, but then: {error}",
                    unique.len(),
                    part * MAX_BATCH
                )));
            }
            Err(error) => return Err(error),
        }
    }
    // From here on, a failure comes after this append stored what it did: it is no longer a
    // failure that stored nothing.
    let stored_some = stored.values().any(|outcome| matches!(outcome, Stored::New(_)));
    let after_storing = |error: StorageError| {
        if stored_some {
            StorageError::OutcomeUnknown(format!(
                "the batch was stored, but an original version it repeats cannot be read: {error}"
            ))
        } else {
            error
        }
    };
    let mut versions: Vec<Version> = Vec::with_capacity(batch.len());
    let mut originals: HashMap<u64, Version> = HashMap::new();
    for (index, new) in batch.into_iter().enumerate() {
        // Every id of the batch was entered above.
        let owner = first[ids[index].as_str()];
        let version = if owner < index {
            versions[owner].clone()
        } else {
            match stored.get(&index) {
                Some(Stored::New(sequence)) => new.with_id(*sequence),
                Some(Stored::Original(sequence)) => match originals.get(sequence) {
                    Some(version) => version.clone(),
                    None => {
                        let version =
                            reads::by_sequence(shared, *sequence).await.map_err(after_storing)?;
                        originals.insert(*sequence, version.clone());
                        version
                    }
                },
                None => {
                    return Err(after_storing(StorageError::backend(
                        "an acknowledged batch left a version without a sequence",
                    )));
                }
            }
        };
        versions.push(version);
    }
    if let Some(last) = versions.iter().map(|version| version.id).max() {
        shared.saw(last);
    }
    Ok(versions)
}

/// Publishes the versions `chunk` (indices into `batch`) atomically, retrying as the module
/// documentation says, and returns where each one was stored.
async fn publish(
    shared: &Shared,
    batch: &[NewVersion],
    ids: &[String],
    chunk: &[usize],
    deadline: Instant,
) -> Result<Vec<(usize, Stored)>, StorageError> {
    let mut pending = chunk.to_vec();
    let mut outcome = Vec::with_capacity(chunk.len());
    let mut probes = 0;
    // Set once an attempt went unanswered: it may yet be stored.
    let mut uncertain = false;
    let mut backoff = Duration::from_millis(50);
    loop {
        if pending.is_empty() {
            return Ok(outcome);
        }
        if shared.closed.is_cancelled() {
            return Err(StorageError::Closed);
        }
        let attempt = if let [index] = pending[..] {
            publish_one(shared, &batch[index], &ids[index]).await
        } else {
            publish_atomic(shared, batch, ids, &pending).await
        };
        // What refused the attempt, or `None` when it went unanswered.
        let refused = match attempt {
            Ok(Stored::New(first)) => {
                outcome.extend(pending.iter().zip(first..).map(|(&i, seq)| (i, Stored::New(seq))));
                return Ok(outcome);
            }
            Ok(Stored::Original(sequence)) => {
                outcome.push((pending[0], Stored::Original(sequence)));
                return Ok(outcome);
            }
            Err(Failure::Duplicates) if probes < MAX_PROBES => {
                probes += 1;
                let mut remaining = Vec::with_capacity(pending.len());
                for &index in &pending {
                    match probe(shared, &batch[index], &ids[index], deadline).await? {
                        Some(sequence) => outcome.push((index, Stored::Original(sequence))),
                        None => remaining.push(index),
                    }
                }
                pending = remaining;
                continue;
            }
            Err(Failure::Duplicates) => Some(StorageError::backend(
                "the batch kept meeting duplicate message ids stored by other writers",
            )),
            Err(Failure::Timeout) => None,
            Err(Failure::Refused(error)) => Some(error),
        };
        match refused {
            None => uncertain = true,
            Some(error) if !uncertain => return Err(error),
            Some(StorageError::Unavailable(reason)) => {
                tracing::debug!(reason, "retrying an append whose first attempt went unanswered");
            }
            Some(error) => {
                return Err(StorageError::OutcomeUnknown(format!(
                    "an attempt went unanswered, and the retry failed: {error}"
                )));
            }
        }
        if Instant::now() + backoff >= deadline {
            return Err(StorageError::OutcomeUnknown(format!(
                "the NATS servers did not acknowledge the append within {:?}",
                shared.options.retry_timeout
            )));
        }
        tokio::time::sleep(backoff).await;
        backoff = (backoff * 2).min(Duration::from_secs(1));
    }
}

/// Publishes one version with a plain publish.
async fn publish_one(shared: &Shared, new: &NewVersion, id: &str) -> Result<Stored, Failure> {
    let subject = subject::encode(&shared.options.stream, &new.event);
    let headers = record::headers(new, id);
    let payload = Bytes::copy_from_slice(new.data.as_bytes());
    let answer = api::request(
        &shared.client,
        subject,
        Some(headers),
        payload,
        shared.options.request_timeout,
    )
    .await;
    match answer {
        Ok(message) => ack(&message.payload, 1),
        Err(ApiError::Timeout) => Err(Failure::Timeout),
        Err(ApiError::Refused(error)) => Err(Failure::Refused(error)),
        Err(ApiError::Api(error)) => Err(refusal(error)),
    }
}

/// Publishes the versions `pending` as one atomic batch.
async fn publish_atomic(
    shared: &Shared,
    batch: &[NewVersion],
    ids: &[String],
    pending: &[usize],
) -> Result<Stored, Failure> {
    let client = &shared.client;
    if client.connection_state() != async_nats::connection::State::Connected {
        return Err(Failure::Refused(StorageError::Unavailable(
            "not connected to any NATS server".into(),
        )));
    }
    let unsent = |error: &dyn std::fmt::Display| {
        // A batch is stored only once its commit message arrives, so a batch that was not sent
        // whole is never stored.
        Failure::Refused(StorageError::Unavailable(format!("cannot send the batch: {error}")))
    };
    let inbox = client.new_inbox();
    let mut answers = client.subscribe(inbox.clone()).await.map_err(|e| unsent(&e))?;
    let batch_id = uuid::Uuid::new_v4().simple().to_string();
    let last = pending.len() - 1;
    for (position, &index) in pending.iter().enumerate() {
        let new = &batch[index];
        let subject = subject::encode(&shared.options.stream, &new.event);
        let mut headers: HeaderMap = record::headers(new, &ids[index]);
        headers.insert("Nats-Batch-Id", batch_id.as_str());
        headers.insert("Nats-Batch-Sequence", (position + 1).to_string().as_str());
        let payload = Bytes::copy_from_slice(new.data.as_bytes());
        // The first message asks for an answer so that a refusal of the whole batch (no
        // responders, atomic batches not allowed) comes back at once; the commit asks for the
        // acknowledgement.
        let sent = if position == last {
            headers.insert("Nats-Batch-Commit", "1");
            client.publish_with_reply_and_headers(subject, inbox.clone(), headers, payload).await
        } else if position == 0 {
            client.publish_with_reply_and_headers(subject, inbox.clone(), headers, payload).await
        } else {
            client.publish_with_headers(subject, headers, payload).await
        };
        sent.map_err(|e| unsent(&e))?;
    }
    let deadline = Instant::now() + shared.options.request_timeout;
    loop {
        let message = match tokio::time::timeout_at(deadline, answers.next()).await {
            Ok(Some(message)) => message,
            Ok(None) | Err(_) => return Err(Failure::Timeout),
        };
        if message.status == Some(StatusCode::NO_RESPONDERS) {
            return Err(Failure::Refused(api::no_responders(&message.subject)));
        }
        // The server answers each message that asks before the commit with an empty message.
        if message.payload.is_empty() {
            continue;
        }
        return ack(&message.payload, pending.len());
    }
}

/// Whether `new`'s message id `id` is one the stream has stored, and at which sequence; see the
/// module documentation. Stores nothing.
async fn probe(
    shared: &Shared,
    new: &NewVersion,
    id: &str,
    deadline: Instant,
) -> Result<Option<u64>, StorageError> {
    let subject = subject::encode(&shared.options.stream, &new.event);
    loop {
        let mut headers = HeaderMap::new();
        headers.insert(record::MSG_ID, id);
        headers.insert("Nats-Expected-Last-Sequence", u64::MAX.to_string().as_str());
        let answer = api::request(
            &shared.client,
            subject.clone(),
            Some(headers),
            Bytes::new(),
            shared.options.request_timeout,
        )
        .await;
        let failure = match answer.and_then(|message| api::parse(&message.payload)) {
            Ok(value) => match (value["duplicate"].as_bool(), value["seq"].as_u64()) {
                (Some(true), Some(sequence)) => return Ok(Some(sequence)),
                _ => {
                    return Err(StorageError::backend(format!(
                        "a probe for message id {id} was answered {value}"
                    )));
                }
            },
            Err(ApiError::Api(error)) if error.err_code == codes::WRONG_LAST_SEQUENCE => {
                return Ok(None);
            }
            Err(ApiError::Api(error)) => error.into_storage().to_string(),
            Err(ApiError::Refused(error)) => error.to_string(),
            Err(ApiError::Timeout) => "no answer in time".to_owned(),
        };
        if Instant::now() >= deadline {
            return Err(StorageError::OutcomeUnknown(format!(
                "a batch met stored message ids, and they could not be looked up: {failure}"
            )));
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

/// The outcome a publish acknowledgement reports for `count` messages.
fn ack(payload: &[u8], count: usize) -> Result<Stored, Failure> {
    let value = match api::parse(payload) {
        Ok(value) => value,
        Err(ApiError::Api(error)) => return Err(refusal(error)),
        Err(ApiError::Refused(error)) => return Err(Failure::Refused(error)),
        Err(ApiError::Timeout) => return Err(Failure::Timeout),
    };
    let Some(sequence) = value["seq"].as_u64() else {
        return Err(Failure::Refused(StorageError::backend(format!(
            "a publish acknowledgement without a sequence: {value}"
        ))));
    };
    if value["duplicate"].as_bool() == Some(true) {
        return Ok(Stored::Original(sequence));
    }
    let acknowledged = value["count"].as_u64().unwrap_or(1) as usize;
    if acknowledged != count || sequence < count as u64 {
        return Err(Failure::Refused(StorageError::backend(format!(
            "a batch of {count} was acknowledged as {acknowledged} messages ending at {sequence}"
        ))));
    }
    Ok(Stored::New(sequence + 1 - count as u64))
}

/// What an error answer to a publish means.
fn refusal(error: JsError) -> Failure {
    if error.err_code == codes::BATCH_DUPLICATE_MSG_ID {
        Failure::Duplicates
    } else {
        Failure::Refused(error.into_storage())
    }
}
