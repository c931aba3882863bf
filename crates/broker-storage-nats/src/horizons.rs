//! The horizons of pruned events, kept in NATS beside the stream, so that every broker sharing
//! the stream reads the same ones.
//!
//! They live in a JetStream key-value bucket, `<stream>_horizons`: the stream
//! `KV_<stream>_horizons`, with the subjects `$KV.<stream>_horizons.<key>` and one message per
//! key, as the NATS tools expect (`nats kv ls <stream>_horizons` lists them). The key of an event
//! is its subject without the stream's prefix (`<bucket>.<token>`, see `subject.rs`); the value
//! is the greatest id pruned of it, in decimal. The client library's key-value API is not built
//! into this crate, and the little it would do is written here with the requests the rest of the
//! crate uses.
//!
//! A horizon only moves forward. It is written with `Nats-Expected-Last-Subject-Sequence` set to
//! the revision it was read at, from the bucket's leader: of two brokers pruning one event at
//! once, the one that read an older revision reads it again, and never moves the horizon back.
//!
//! Every horizon is read with batched direct gets over the whole bucket, which holds one
//! message per pruned event: the cost is that of the events pruned, whatever the size of the
//! stream.

use std::collections::HashMap;
use std::time::Duration;

use async_nats::{HeaderMap, Message};
use broker_storage::StorageError;
use bytes::Bytes;
use serde_json::{Value, json};
use tokio::time::Instant;

use crate::api::{self, ApiError, codes};
use crate::direct::{self, Answer};
use crate::options::NatsOptions;
use crate::reads::{self, MAX_DIRECT_BATCH};
use crate::record;
use crate::shared::Shared;
use crate::stream;
use crate::subject;

/// The name of the horizons bucket of the stream `stream`.
fn bucket(stream: &str) -> String {
    format!("{stream}_horizons")
}

/// The JetStream stream that holds the bucket.
fn bucket_stream(stream: &str) -> String {
    format!("KV_{}", bucket(stream))
}

/// The subject of `event`'s horizon.
fn key_subject(stream: &str, event: &str) -> String {
    format!("$KV.{}.{}", bucket(stream), subject::key(event))
}

/// Finds or creates the horizons bucket of `options`' stream, and checks that it keeps every
/// horizon: a bucket whose horizons could expire or be deleted would let one go back.
pub(crate) async fn open(
    client: &async_nats::Client,
    options: &NatsOptions,
) -> Result<(), StorageError> {
    let name = bucket_stream(&options.stream);
    let info = match stream::info(client, &name, options.request_timeout).await {
        Ok(info) => info,
        Err(ApiError::Api(error)) if error.err_code == codes::STREAM_NOT_FOUND => {
            stream::create_or_find(client, options, &name, &config(options)).await?
        }
        Err(error) => return Err(error.into_storage(&format!("stream info of {name}"))),
    };
    check(&info["config"], &options.stream)
}

/// The configuration of a new bucket: what `nats kv add` makes, with the stream's replicas,
/// no history, and nothing that expires.
fn config(options: &NatsOptions) -> Value {
    let bucket = bucket(&options.stream);
    json!({
        "name": bucket_stream(&options.stream),
        "subjects": [format!("$KV.{bucket}.>")],
        "retention": "limits",
        "storage": "file",
        "num_replicas": options.replicas,
        "discard": "new",
        "max_msgs": -1,
        "max_bytes": -1,
        "max_age": 0,
        "max_msgs_per_subject": 1,
        "max_msg_size": -1,
        "duplicate_window": Duration::from_secs(120).as_nanos() as u64,
        "deny_delete": true,
        "deny_purge": false,
        "allow_direct": true,
        "allow_rollup_hdrs": true,
    })
}

/// Refuses a bucket that could lose a horizon.
fn check(config: &Value, stream: &str) -> Result<(), StorageError> {
    let name = bucket_stream(stream);
    let expected = format!("$KV.{}.>", bucket(stream));
    let subjects: Vec<&str> =
        config["subjects"].as_array().into_iter().flatten().filter_map(Value::as_str).collect();
    if subjects != [expected.as_str()] {
        return Err(StorageError::backend(format!(
            "stream {name}, which holds the horizons of stream {stream}, has the subjects \
             {subjects:?} instead of {expected:?}"
        )));
    }
    if config["max_age"].as_i64().unwrap_or(0) > 0
        || !config["allow_direct"].as_bool().unwrap_or(false)
    {
        return Err(StorageError::backend(format!(
            "stream {name}, which holds the horizons of stream {stream}, must keep them for \
             ever (max_age 0) and allow direct gets"
        )));
    }
    Ok(())
}

/// Whether the bucket exists: made at connection with pruning on, or by another broker since.
async fn exists(shared: &Shared) -> Result<bool, StorageError> {
    use std::sync::atomic::Ordering;
    if shared.horizons_bucket.load(Ordering::Acquire) {
        return Ok(true);
    }
    let name = bucket_stream(&shared.options.stream);
    match stream::info(&shared.client, &name, shared.options.request_timeout).await {
        Ok(_) => {
            shared.horizons_bucket.store(true, Ordering::Release);
            Ok(true)
        }
        Err(ApiError::Api(error)) if error.err_code == codes::STREAM_NOT_FOUND => Ok(false),
        Err(error) => Err(error.into_storage(&format!("stream info of {name}"))),
    }
}

/// Every horizon: those of the bucket, and those this store knows, which a replica of the
/// bucket that is behind may not hold yet. The store learns those it did not know.
pub(crate) async fn all(shared: &Shared) -> Result<HashMap<String, u64>, StorageError> {
    if exists(shared).await? {
        for (event, id) in read_bucket(shared).await? {
            shared.pruned(&event, id);
        }
    }
    Ok(shared.horizons())
}

/// Every horizon the bucket holds, read with batched direct gets from any replica, asked again
/// while none answers, until the retry timeout.
async fn read_bucket(shared: &Shared) -> Result<Vec<(String, u64)>, StorageError> {
    let options = &shared.options;
    let name = bucket_stream(&options.stream);
    let filter = format!("$KV.{}.>", bucket(&options.stream));
    let deadline = Instant::now() + options.retry_timeout;
    let mut horizons = Vec::new();
    let mut position = 0;
    loop {
        let request =
            json!({ "next_by_subj": filter, "seq": position + 1, "batch": MAX_DIRECT_BATCH });
        let answer =
            direct::get(&shared.client, &name, &request, options.request_timeout, |message| {
                decode(&options.stream, message)
            })
            .await?;
        match answer {
            Answer::Batch(batch, end) => {
                let Some(&(_, _, last)) = batch.last() else { return Ok(horizons) };
                position = last;
                horizons.extend(batch.into_iter().map(|(event, id, _)| (event, id)));
                if end.num_pending == 0 {
                    return Ok(horizons);
                }
            }
            Answer::NotFound => return Ok(horizons),
            Answer::Unanswered if Instant::now() < deadline => {
                tokio::time::sleep(Duration::from_millis(100)).await;
            }
            Answer::Unanswered | Answer::TooManyResults => {
                return Err(StorageError::Unavailable(format!(
                    "no replica of stream {name} answered for the horizons"
                )));
            }
        }
    }
}

/// The event, the horizon and the sequence of a message of the bucket.
fn decode(stream: &str, message: &Message) -> Result<(String, u64, u64), StorageError> {
    let headers = message.headers.as_ref();
    let get = |name: &str| headers.and_then(|h| h.get(name)).map(|value| value.as_str().to_owned());
    let sequence = get(record::SEQUENCE).and_then(|value| value.parse::<u64>().ok());
    let subject = get(record::SUBJECT).unwrap_or_default();
    let prefix = format!("$KV.{}.", bucket(stream));
    let event = subject.strip_prefix(&prefix).and_then(subject::from_key);
    let id = std::str::from_utf8(&message.payload).ok().and_then(|text| text.trim().parse().ok());
    match (event, id, sequence) {
        (Some(event), Some(id), Some(sequence)) => Ok((event, id, sequence)),
        _ => Err(StorageError::Corrupt(format!(
            "the horizon on subject {subject:?} of stream {} is not an event's id",
            bucket_stream(stream)
        ))),
    }
}

/// `event`'s horizon as the bucket's leader holds it, or as this store knows it if that is
/// further: 0 for an event never pruned.
pub(crate) async fn of(shared: &Shared, event: &str) -> Result<u64, StorageError> {
    let stored = stored(shared, event).await?.map_or(0, |(id, _)| id);
    Ok(stored.max(shared.pruned_through(event)))
}

/// `event`'s horizon in the bucket and its revision, read from the bucket's leader.
async fn stored(shared: &Shared, event: &str) -> Result<Option<(u64, u64)>, StorageError> {
    let name = bucket_stream(&shared.options.stream);
    let subject = key_subject(&shared.options.stream, event);
    let Some(message) =
        reads::leader_get_from(shared, &name, json!({ "last_by_subj": subject })).await?
    else {
        return Ok(None);
    };
    let data = message.data()?;
    match std::str::from_utf8(&data).ok().and_then(|text| text.trim().parse::<u64>().ok()) {
        Some(id) => Ok(Some((id, message.seq))),
        None => Err(corrupt(&name, &format!("message {} is not an id", message.seq))),
    }
}

/// Raises `event`'s horizon in the bucket to `id`, unless it is there already, and records it
/// in the store.
///
/// # Errors
///
/// [`StorageError::Unavailable`] when the bucket's leader does not answer, or the write kept
/// meeting other writers', until the retry timeout: the horizon may then be raised or not, and
/// nothing was removed.
pub(crate) async fn raise(shared: &Shared, event: &str, id: u64) -> Result<(), StorageError> {
    let options = &shared.options;
    let subject = key_subject(&options.stream, event);
    let deadline = Instant::now() + options.retry_timeout;
    loop {
        let revision = match stored(shared, event).await? {
            Some((stored, _)) if stored >= id => {
                shared.pruned(event, stored);
                return Ok(());
            }
            Some((_, revision)) => revision,
            None => 0,
        };
        let mut headers = HeaderMap::new();
        headers.insert("Nats-Expected-Last-Subject-Sequence", revision.to_string().as_str());
        let answer = api::request(
            &shared.client,
            subject.clone(),
            Some(headers),
            Bytes::from(id.to_string()),
            options.request_timeout,
        )
        .await
        .and_then(|message| api::parse(&message.payload));
        let failure = match answer {
            Ok(_) => {
                shared.pruned(event, id);
                return Ok(());
            }
            // Another writer moved it meanwhile, or an unanswered write of ours did: read again.
            Err(ApiError::Api(error)) if error.err_code == codes::WRONG_LAST_SEQUENCE => {
                "another writer kept moving it"
            }
            Err(ApiError::Timeout) => "no answer in time",
            Err(ApiError::Api(error)) => return Err(error.into_storage()),
            Err(ApiError::Refused(error)) => return Err(error),
        };
        if Instant::now() >= deadline {
            return Err(StorageError::Unavailable(format!(
                "the horizon of {event:?} in bucket {} could not be raised to {id}: {failure}",
                bucket(&options.stream)
            )));
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

fn corrupt(name: &str, what: &dyn std::fmt::Display) -> StorageError {
    StorageError::Corrupt(format!("a horizon in stream {name}: {what}"))
}
