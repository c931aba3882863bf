//! Requests to the JetStream API and how their failures map into [`StorageError`].
//!
//! The API answers in JSON, with an `error` object (`code`, `err_code`, `description`) when it
//! refuses. A request that finds no server listening is answered at once with a "no responders"
//! status: nothing was done, so it is [`StorageError::Unavailable`]. A request with no answer in
//! time may or may not have been acted on: [`ApiError::Timeout`] leaves that to the caller.

use std::time::Duration;

use async_nats::{Client, HeaderMap, StatusCode};
use broker_storage::StorageError;
use bytes::Bytes;
use serde_json::Value;

/// Why a request to the API failed.
#[derive(Debug)]
pub(crate) enum ApiError {
    /// No answer in time; the request may have been acted on.
    Timeout,
    /// The API refused, or nothing could be sent: nothing was done.
    Refused(StorageError),
    /// The API answered with this error.
    Api(JsError),
}

/// An error object of the JetStream API.
#[derive(Debug, Clone, serde::Deserialize)]
pub(crate) struct JsError {
    #[serde(default)]
    pub(crate) code: u16,
    #[serde(default)]
    pub(crate) err_code: u16,
    #[serde(default)]
    pub(crate) description: String,
}

/// Error codes of the API this crate acts on.
pub(crate) mod codes {
    /// The stream does not exist.
    pub(crate) const STREAM_NOT_FOUND: u16 = 10059;
    /// A stream of that name exists with another configuration.
    pub(crate) const STREAM_NAME_IN_USE: u16 = 10058;
    /// No message matches a get.
    pub(crate) const NO_MESSAGE_FOUND: u16 = 10037;
    /// A publish's `Nats-Expected-Last-Sequence` did not match.
    pub(crate) const WRONG_LAST_SEQUENCE: u16 = 10071;
    /// An atomic batch holds a message id the stream has already stored.
    pub(crate) const BATCH_DUPLICATE_MSG_ID: u16 = 10201;
    /// Stream limits reached with the discard policy `new`, or the servers' storage is full.
    pub(crate) const FULL: [u16; 4] = [10077, 10078, 10047, 10023];
    /// Refusals that stored nothing and pass: an atomic batch cut short by a change of stream
    /// leader (its state lives on the leader), and too many atomic batches open at once.
    pub(crate) const TRANSIENT: [u16; 2] = [10176, 10210];
}

impl JsError {
    /// The storage error this API error stands for, when the request did nothing.
    pub(crate) fn into_storage(self) -> StorageError {
        let message = format!("{} (error {})", self.description, self.err_code);
        if codes::FULL.contains(&self.err_code) {
            StorageError::Full(message)
        } else if self.code >= 500 || codes::TRANSIENT.contains(&self.err_code) {
            // A server-side refusal (no leader, no quorum, JetStream not ready) is temporary.
            StorageError::Unavailable(message)
        } else {
            StorageError::backend(message)
        }
    }
}

impl ApiError {
    /// The storage error for a read or a request that changes nothing: a timeout says only that
    /// the cluster did not answer.
    pub(crate) fn into_storage(self, what: &str) -> StorageError {
        match self {
            ApiError::Timeout => StorageError::Unavailable(format!(
                "{what}: no answer from the NATS servers in time"
            )),
            ApiError::Refused(error) => error,
            ApiError::Api(error) => error.into_storage(),
        }
    }
}

/// A "no responders" answer: nothing listens on the subject, so nothing was done.
pub(crate) fn no_responders(subject: &str) -> StorageError {
    StorageError::Unavailable(format!(
        "nothing answers on {subject}: JetStream or the stream is not available on the servers"
    ))
}

/// Sends `payload` to `subject` and waits up to `timeout` for one answer.
pub(crate) async fn request(
    client: &Client,
    subject: String,
    headers: Option<HeaderMap>,
    payload: Bytes,
    timeout: Duration,
) -> Result<async_nats::Message, ApiError> {
    if client.connection_state() != async_nats::connection::State::Connected {
        return Err(ApiError::Refused(StorageError::Unavailable(
            "not connected to any NATS server".into(),
        )));
    }
    let inbox = client.new_inbox();
    let mut answers = client
        .subscribe(inbox.clone())
        .await
        .map_err(|error| ApiError::Refused(StorageError::Unavailable(error.to_string())))?;
    let sent = match headers {
        Some(headers) => {
            client.publish_with_reply_and_headers(subject.clone(), inbox, headers, payload).await
        }
        None => client.publish_with_reply(subject.clone(), inbox, payload).await,
    };
    sent.map_err(|error| ApiError::Refused(StorageError::Unavailable(error.to_string())))?;
    use futures_util::StreamExt as _;
    match tokio::time::timeout(timeout, answers.next()).await {
        Ok(Some(message)) if message.status == Some(StatusCode::NO_RESPONDERS) => {
            Err(ApiError::Refused(no_responders(&subject)))
        }
        Ok(Some(message)) => Ok(message),
        Ok(None) => Err(ApiError::Timeout),
        Err(_) => Err(ApiError::Timeout),
    }
}

/// [`request`] to an API subject that answers in JSON; an `error` object becomes
/// [`ApiError::Api`].
pub(crate) async fn request_json(
    client: &Client,
    subject: String,
    body: &Value,
    timeout: Duration,
) -> Result<Value, ApiError> {
    let payload = Bytes::from(body.to_string());
    let answer = request(client, subject, None, payload, timeout).await?;
    parse(&answer.payload)
}

/// The JSON of an API answer, or its error.
pub(crate) fn parse(payload: &[u8]) -> Result<Value, ApiError> {
    let value: Value = serde_json::from_slice(payload).map_err(|error| {
        ApiError::Refused(StorageError::backend(format!("the JetStream API answered: {error}")))
    })?;
    match value.get("error") {
        Some(error) => {
            Err(ApiError::Api(serde_json::from_value(error.clone()).unwrap_or_else(|_| JsError {
                code: 0,
                err_code: 0,
                description: error.to_string(),
            })))
        }
        None => Ok(value),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn api_errors_map_by_code() {
        let error = |code, err_code| JsError { code, err_code, description: "d".into() };
        assert!(matches!(error(503, 10008).into_storage(), StorageError::Unavailable(_)));
        assert!(matches!(error(400, 10078).into_storage(), StorageError::Full(_)));
        assert!(matches!(error(400, 10176).into_storage(), StorageError::Unavailable(_)));
        assert!(matches!(error(429, 10210).into_storage(), StorageError::Unavailable(_)));
        assert!(matches!(error(400, 10003).into_storage(), StorageError::Backend(_)));
        let answer = br#"{"error":{"code":400,"err_code":10201,"description":"dup"},"seq":0}"#;
        match parse(answer) {
            Err(ApiError::Api(error)) => assert_eq!(error.err_code, codes::BATCH_DUPLICATE_MSG_ID),
            other => panic!("{other:?}"),
        }
    }
}
