//! [`ApiError`]: every way a request can fail, as the client sees it.

use std::time::Duration;

use broker_auth::Refusal;
use broker_core::{Error as CoreError, StorageError};
use headers::{HeaderMapExt, RetryAfter};
use http::{HeaderValue, Method, StatusCode, header};

use crate::body::{Body, json_response};

/// A request that failed: a status, a stable code and a message, sent as a JSON body.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum ApiError {
    /// The body is not JSON.
    #[error("{0}")]
    MalformedJson(String),
    /// A field of the body is missing, of the wrong type, or unknown; the message names it.
    #[error("{0}")]
    InvalidField(String),
    /// The event name is empty, too long, or contains a control character.
    #[error("{0}")]
    InvalidEventName(String),
    /// An HTTP/1.1 request came without the `Host` header that RFC 9112 requires.
    #[error("an HTTP/1.1 request must have a Host header")]
    MissingHost,
    /// A query parameter is malformed.
    #[error("{0}")]
    InvalidQuery(String),
    /// No route has this path.
    #[error("no route for {0}")]
    NotFound(String),
    /// The route exists but not with this method.
    #[error("{method} is not allowed here; use {}", allow_list(.allow))]
    MethodNotAllowed {
        /// The method of the request.
        method: Method,
        /// The methods the route allows.
        allow: &'static [Method],
    },
    /// The body is larger than the configured limit.
    #[error("the body is larger than the limit of {0} bytes")]
    PayloadTooLarge(usize),
    /// The body of `/insert` is an empty array: there is nothing to store.
    #[error("the array is empty: send at least one version")]
    EmptyArray,
    /// The body of `/insert` is an array of more versions than one insert may hold, the limit.
    #[error(
        "the array holds more than {0} versions, the most one insert may hold; nothing was stored"
    )]
    TooManyVersions(usize),
    /// The body of `/insert` is not `application/json` in UTF-8, or is sent with a content
    /// coding (compressed); the message says which.
    #[error("{0}")]
    UnsupportedMediaType(String),
    /// The request body could not be read.
    #[error("the request body could not be read: {0}")]
    BadBody(String),
    /// Authorization is configured and the request has no token.
    #[error("this request needs a token: send `Authorization: Bearer <token>`")]
    MissingToken,
    /// The token could not be verified; the message says why.
    #[error("{0}")]
    InvalidToken(String),
    /// The token is valid but does not allow this request.
    #[error("{0}")]
    InsufficientScope(String),
    /// The broker is shutting down.
    #[error("the broker is shutting down; nothing was stored")]
    Unavailable,
    /// The server has as many connections open as it may; the request was not read.
    #[error("too many connections; retry later")]
    TooManyConnections,
    /// The server has as many event streams open as it may.
    #[error("too many event streams; retry later")]
    TooManySubscribers,
    /// The request body did not arrive within the body timeout.
    #[error("the request body did not arrive within {0:?}")]
    BodyTimeout(Duration),
    /// The `Idempotency-Key` header is malformed; the message says how.
    #[error("invalid Idempotency-Key: {0}")]
    InvalidIdempotencyKey(String),
    /// The `Idempotency-Key` was used within its window for another insert; the message names
    /// the version stored under it.
    #[error("{0}")]
    IdempotencyKeyReused(String),
    /// The database failed.
    #[error("the database failed; an insert answered so stored nothing; retry later")]
    Storage,
    /// The database cannot take requests now (a replicated log without a leader or a quorum);
    /// nothing was stored.
    #[error("the database is unavailable: {0}; nothing was stored; retry later")]
    StorageUnavailable(String),
    /// The database did not say whether the insert was stored.
    #[error(
        "the database did not confirm the insert in time, and it may or may not have been \
         stored; retry with the same Idempotency-Key to store it exactly once"
    )]
    UnknownOutcome,
    /// The database has no space left (or less than the configured minimum).
    #[error("the database has no space left; nothing was stored; retry later")]
    StorageFull,
    /// The stored data is damaged.
    #[error("the stored data is damaged; the database must be checked and restored from a backup")]
    StorageCorrupt,
    /// A copy of the database for `GET /backup` could not be written or read; the message says
    /// why.
    #[error("the backup could not be made: {0}")]
    BackupFailed(String),
    /// A past state (`GET /snapshot?at=`) needs versions of an event that the retention rules
    /// pruned.
    #[error(
        "the state asked for needs versions of event {event:?} that were pruned (through id \
         {pruned_through}); its state is known from id {oldest_kept} on"
    )]
    Pruned {
        /// The event, one the client may read.
        event: String,
        /// The greatest id pruned of it.
        pruned_through: u64,
        /// Its oldest version kept: the earliest `at` whose state is known.
        oldest_kept: u64,
    },
}

impl ApiError {
    /// The HTTP status of the error.
    pub fn status(&self) -> StatusCode {
        match self {
            ApiError::MalformedJson(_)
            | ApiError::InvalidField(_)
            | ApiError::InvalidEventName(_)
            | ApiError::InvalidQuery(_)
            | ApiError::MissingHost
            | ApiError::InvalidIdempotencyKey(_)
            | ApiError::EmptyArray
            | ApiError::BadBody(_) => StatusCode::BAD_REQUEST,
            ApiError::IdempotencyKeyReused(_) => StatusCode::UNPROCESSABLE_ENTITY,
            ApiError::MissingToken | ApiError::InvalidToken(_) => StatusCode::UNAUTHORIZED,
            ApiError::InsufficientScope(_) => StatusCode::FORBIDDEN,
            ApiError::NotFound(_) => StatusCode::NOT_FOUND,
            ApiError::MethodNotAllowed { .. } => StatusCode::METHOD_NOT_ALLOWED,
            ApiError::PayloadTooLarge(_) | ApiError::TooManyVersions(_) => {
                StatusCode::PAYLOAD_TOO_LARGE
            }
            ApiError::UnsupportedMediaType(_) => StatusCode::UNSUPPORTED_MEDIA_TYPE,
            ApiError::Unavailable
            | ApiError::TooManyConnections
            | ApiError::TooManySubscribers
            | ApiError::StorageUnavailable(_)
            | ApiError::UnknownOutcome => StatusCode::SERVICE_UNAVAILABLE,
            ApiError::BodyTimeout(_) => StatusCode::REQUEST_TIMEOUT,
            ApiError::Storage | ApiError::StorageCorrupt | ApiError::BackupFailed(_) => {
                StatusCode::INTERNAL_SERVER_ERROR
            }
            ApiError::StorageFull => StatusCode::INSUFFICIENT_STORAGE,
            ApiError::Pruned { .. } => StatusCode::GONE,
        }
    }

    /// The stable, machine-readable code of the error.
    pub fn code(&self) -> &'static str {
        match self {
            ApiError::MalformedJson(_) => "malformed_json",
            ApiError::InvalidField(_) => "invalid_field",
            ApiError::InvalidEventName(_) => "invalid_event_name",
            ApiError::InvalidQuery(_) => "invalid_query",
            ApiError::MissingHost => "missing_host",
            ApiError::BadBody(_) => "bad_body",
            ApiError::MissingToken => "missing_token",
            ApiError::InvalidToken(_) => "invalid_token",
            ApiError::InsufficientScope(_) => "insufficient_scope",
            ApiError::NotFound(_) => "not_found",
            ApiError::MethodNotAllowed { .. } => "method_not_allowed",
            ApiError::PayloadTooLarge(_) => "payload_too_large",
            ApiError::EmptyArray => "empty_array",
            ApiError::TooManyVersions(_) => "too_many_versions",
            ApiError::UnsupportedMediaType(_) => "unsupported_media_type",
            ApiError::Unavailable | ApiError::TooManyConnections | ApiError::TooManySubscribers => {
                "unavailable"
            }
            ApiError::BodyTimeout(_) => "body_timeout",
            ApiError::InvalidIdempotencyKey(_) => "invalid_idempotency_key",
            ApiError::IdempotencyKeyReused(_) => "idempotency_key_reused",
            ApiError::Storage => "storage_error",
            ApiError::StorageUnavailable(_) => "storage_unavailable",
            ApiError::UnknownOutcome => "unknown_outcome",
            ApiError::StorageFull => "storage_full",
            ApiError::StorageCorrupt => "storage_corrupt",
            ApiError::BackupFailed(_) => "backup_failed",
            ApiError::Pruned { .. } => "pruned",
        }
    }

    /// The response that tells the client about the error.
    pub(crate) fn into_response(self) -> http::Response<Body> {
        let mut body = serde_json::json!({ "error": self.code(), "message": self.to_string() });
        if let ApiError::Pruned { event, pruned_through, oldest_kept } = &self {
            body["event"] = event.as_str().into();
            body["pruned_through"] = (*pruned_through).into();
            body["oldest_kept"] = (*oldest_kept).into();
        }
        let mut response = json_response(self.status(), body.to_string());
        let headers = response.headers_mut();
        match &self {
            ApiError::MethodNotAllowed { allow, .. } => {
                headers.typed_insert(allow.iter().cloned().collect::<headers::Allow>());
            }
            ApiError::Unavailable
            | ApiError::TooManyConnections
            | ApiError::TooManySubscribers
            | ApiError::UnknownOutcome
            | ApiError::StorageUnavailable(_) => {
                // A replicated log elects a new leader within seconds; a retry soon is right.
                headers.typed_insert(RetryAfter::delay(Duration::from_secs(1)));
            }
            ApiError::StorageFull | ApiError::Storage => {
                // The engine retries the storage every second; space takes an operator longer.
                headers.typed_insert(RetryAfter::delay(Duration::from_secs(5)));
            }
            ApiError::MissingToken => {
                headers.insert(header::WWW_AUTHENTICATE, HeaderValue::from_static(REALM));
            }
            ApiError::InvalidToken(reason) => {
                let challenge = format!(
                    "{REALM}, error=\"invalid_token\", error_description=\"{}\"",
                    quotable(reason)
                );
                // `quotable` leaves only visible ASCII and spaces, which a header value allows.
                let value = HeaderValue::from_str(&challenge)
                    .unwrap_or_else(|_| HeaderValue::from_static(REALM));
                headers.insert(header::WWW_AUTHENTICATE, value);
            }
            ApiError::InsufficientScope(_) => {
                let challenge = "Bearer realm=\"broker\", error=\"insufficient_scope\"";
                headers.insert(header::WWW_AUTHENTICATE, HeaderValue::from_static(challenge));
            }
            ApiError::UnsupportedMediaType(_) => {
                // RFC 9110, 12.5.3: the codings the server accepts; only the body as it is.
                headers.insert(header::ACCEPT_ENCODING, HeaderValue::from_static("identity"));
            }
            ApiError::PayloadTooLarge(_) | ApiError::BodyTimeout(_) => {
                // The rest of the body is not read, so the connection cannot be reused.
                headers.insert(header::CONNECTION, http::HeaderValue::from_static("close"));
            }
            _ => {}
        }
        response
    }
}

impl From<CoreError> for ApiError {
    fn from(error: CoreError) -> ApiError {
        match error {
            CoreError::InvalidEventName(reason) => ApiError::InvalidEventName(reason),
            CoreError::InvalidData(reason) => ApiError::MalformedJson(reason),
            CoreError::Closed => ApiError::Unavailable,
            CoreError::InvalidIdempotencyKey(reason) => ApiError::InvalidIdempotencyKey(reason),
            CoreError::TooManyVersions { max } => ApiError::TooManyVersions(max),
            CoreError::Pruned { event, pruned_through, oldest_kept } => {
                ApiError::Pruned { event, pruned_through, oldest_kept }
            }
            error @ CoreError::IdempotencyKeyReused { .. } => {
                ApiError::IdempotencyKeyReused(error.to_string())
            }
            // The engine logs the first failure of a failing storage: one line, not one per
            // request.
            CoreError::Storage(error) => match &*error {
                StorageError::Full(_) => ApiError::StorageFull,
                StorageError::Corrupt(_) => ApiError::StorageCorrupt,
                StorageError::Closed => ApiError::Unavailable,
                StorageError::Unavailable(reason) => ApiError::StorageUnavailable(reason.clone()),
                StorageError::OutcomeUnknown(_) => ApiError::UnknownOutcome,
                _ => {
                    tracing::debug!(%error, "request failed in the storage");
                    ApiError::Storage
                }
            },
            error => {
                tracing::error!(%error, "request failed in the engine");
                ApiError::Storage
            }
        }
    }
}

impl From<Refusal> for ApiError {
    fn from(refusal: Refusal) -> ApiError {
        match refusal {
            Refusal::MissingToken => ApiError::MissingToken,
            Refusal::InvalidToken(reason) => ApiError::InvalidToken(reason),
            Refusal::InsufficientScope(message) => ApiError::InsufficientScope(message),
        }
    }
}

/// The challenge of every `401`, as RFC 6750 has it.
const REALM: &str = "Bearer realm=\"broker\"";

/// `text` fit for an RFC 7230 quoted string: visible ASCII and spaces, no quote or backslash.
fn quotable(text: &str) -> String {
    text.chars()
        .map(|c| match c {
            '"' | '\\' => '\'',
            ' '..='~' => c,
            _ => '?',
        })
        .collect()
}

fn allow_list(methods: &[Method]) -> String {
    methods.iter().map(Method::as_str).collect::<Vec<_>>().join(", ")
}

#[cfg(test)]
mod tests {
    use std::sync::Arc;

    use super::*;

    #[test]
    fn storage_failures_are_told_apart() {
        let check = |error: StorageError, status: u16, code: &str| {
            let api = ApiError::from(CoreError::Storage(Arc::new(error)));
            assert_eq!((api.status().as_u16(), api.code()), (status, code), "{api}");
        };
        check(StorageError::Full("no space left".into()), 507, "storage_full");
        check(StorageError::Corrupt("bad page".into()), 500, "storage_corrupt");
        check(StorageError::backend("i/o error"), 500, "storage_error");
        check(StorageError::Closed, 503, "unavailable");
        check(StorageError::Unavailable("no leader".into()), 503, "storage_unavailable");
        check(StorageError::OutcomeUnknown("timed out".into()), 503, "unknown_outcome");
        let damaged = ApiError::StorageCorrupt.to_string();
        assert!(!damaged.contains("nothing was stored"), "reads fail this way too: {damaged}");
    }
}
