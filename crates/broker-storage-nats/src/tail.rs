//! The tail: an ordered consumer of the whole stream from the id after the one asked for,
//! delivering what it has in batches.
//!
//! An ordered consumer is ephemeral, unacknowledged, and delivers the stream in sequence order;
//! the client recreates it by itself when it misses a message or a heartbeat. A failure it does
//! not recover from (the connection lost for longer, a stream leader that changed) ends the
//! consumer, and the tail then creates a new one after the last sequence it delivered, waiting
//! longer between attempts while they fail, until the store is closed. So a tail never ends on
//! its own while the store is open, except after a message it cannot decode.
//!
//! A consumer only delivers what the stream has committed, which with the documented server
//! settings (`sync_interval: always`) is on disk on a majority of the replicas.

use std::sync::Arc;
use std::time::Duration;

use async_nats::jetstream::consumer::DeliverPolicy;
use async_nats::jetstream::consumer::pull::{Ordered, OrderedConfig};
use broker_storage::{StorageError, Tail, Version};
use futures_util::{FutureExt as _, StreamExt as _};

use crate::record;
use crate::shared::Shared;
use crate::subject;

/// The most versions in one batch of a tail: what the consumer has at hand, up to this many.
const TAIL_BATCH: usize = 512;

/// The longest wait between two attempts to create a consumer.
const MAX_BACKOFF: Duration = Duration::from_secs(5);

/// How long a consumer may deliver nothing while the store knows of a later version (one it
/// appended, or read) before it is taken for stuck and replaced. A consumer whose server lost
/// its quorum, or went away, can sit silent for tens of seconds before the client notices; the
/// versions behind it would reach nobody meanwhile, and the inserts waiting for them would wait.
const STALL: Duration = Duration::from_secs(2);

/// The tail of the store behind `shared` after `after`.
pub(crate) fn tail(shared: Arc<Shared>, after: u64) -> Tail {
    Tail::new(async_stream::stream! {
        let mut position = after;
        let mut backoff = Duration::from_millis(100);
        loop {
            let patience = shared.options.request_timeout * 2;
            let opened = tokio::select! {
                () = shared.closed.cancelled() => return,
                opened = tokio::time::timeout(patience, open(&shared, position)) => opened,
            };
            let mut messages = match opened {
                Ok(Ok(messages)) => messages,
                Ok(Err(error)) => {
                    tracing::warn!(%error, position, "cannot follow the NATS stream; trying again");
                    tokio::select! {
                        () = shared.closed.cancelled() => return,
                        () = tokio::time::sleep(backoff) => {}
                    }
                    backoff = (backoff * 2).min(MAX_BACKOFF);
                    continue;
                }
                Err(_) => {
                    // The attempt itself took its time: no wait before the next.
                    tracing::warn!(position, "no answer creating a consumer of the NATS stream");
                    continue;
                }
            };
            backoff = Duration::from_millis(100);
            loop {
                let first = tokio::select! {
                    () = shared.closed.cancelled() => return,
                    next = messages.next() => next,
                    () = stuck(&shared, position) => {
                        tracing::warn!(
                            position,
                            seen = shared.seen(),
                            "the stream's consumer delivers nothing while later versions exist; \
                             replacing it"
                        );
                        break;
                    }
                };
                let mut batch = Vec::new();
                let mut failed = match first {
                    Some(Ok(message)) => match take(&shared, message, &mut position) {
                        Ok(version) => {
                            batch.extend(version);
                            false
                        }
                        Err(error) => {
                            yield Err(error);
                            return;
                        }
                    },
                    Some(Err(error)) => {
                        tracing::warn!(%error, position, "lost the stream's consumer; resuming");
                        true
                    }
                    None => true,
                };
                // Then whatever else the consumer holds already, without waiting for more.
                while !failed && batch.len() < TAIL_BATCH {
                    match messages.next().now_or_never() {
                        Some(Some(Ok(message))) => match take(&shared, message, &mut position) {
                            Ok(version) => batch.extend(version),
                            Err(error) => {
                                yield Err(error);
                                return;
                            }
                        },
                        Some(Some(Err(error))) => {
                            tracing::warn!(%error, position, "lost the consumer; resuming");
                            failed = true;
                        }
                        Some(None) => failed = true,
                        None => break,
                    }
                }
                if let Some(last) = batch.last() {
                    shared.saw(last.id);
                    yield Ok(batch);
                }
                if failed {
                    break;
                }
            }
        }
    })
}

/// Returns once the store has known of a version after `position` for [`STALL`] without the
/// consumer delivering it; never while the tail is up to date.
async fn stuck(shared: &Shared, position: u64) {
    let mut behind_since = None;
    loop {
        tokio::time::sleep(STALL / 4).await;
        if shared.seen() <= position {
            behind_since = None;
        } else if behind_since.get_or_insert_with(tokio::time::Instant::now).elapsed() >= STALL {
            return;
        }
    }
}

/// An ordered consumer of every subject of the stream from `position + 1`.
async fn open(shared: &Shared, position: u64) -> Result<Ordered, StorageError> {
    let stream = &shared.options.stream;
    let config = OrderedConfig {
        filter_subject: subject::all(stream),
        deliver_policy: DeliverPolicy::ByStartSequence { start_sequence: position + 1 },
        ..OrderedConfig::default()
    };
    let context = async_nats::jetstream::new(shared.client.clone());
    let consumer = context
        .create_consumer_on_stream(config, stream)
        .await
        .map_err(|error| StorageError::Unavailable(format!("creating a consumer: {error}")))?;
    consumer
        .messages()
        .await
        .map_err(|error| StorageError::Unavailable(format!("consuming the stream: {error}")))
}

/// The version `message` holds, unless the tail delivered it already or it is pruned (a
/// replica that has not applied a purge may deliver it); moves `position` past it.
fn take(
    shared: &Shared,
    message: async_nats::jetstream::Message,
    position: &mut u64,
) -> Result<Option<Version>, StorageError> {
    let sequence = message
        .info()
        .map_err(|error| {
            StorageError::backend(format!("a consumer message without info: {error}"))
        })?
        .stream_sequence;
    if sequence <= *position {
        return Ok(None);
    }
    let timestamp = message
        .headers
        .as_ref()
        .and_then(|headers| headers.get(record::TIMESTAMP))
        .map(|value| value.as_str().to_owned());
    let version = record::version(
        &shared.options.stream,
        sequence,
        message.subject.as_str(),
        timestamp.as_deref(),
        &message.payload,
    )?;
    *position = sequence;
    Ok((version.id > shared.pruned_through(&version.event)).then_some(version))
}
