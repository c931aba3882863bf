//! How a version is laid out in a message of the stream: the subject names the event (see
//! `subject.rs`), the payload is the data, and headers carry the rest.
//!
//! - `Broker-Timestamp`: the version's timestamp, in decimal milliseconds. The stream's own time
//!   of a message is when the server stored it, not when the engine accepted the version.
//! - `Nats-Msg-Id`: the key the server deduplicates retries by (see [`msg_id`]).
//!
//! The id of a version is the message's stream sequence.

use async_nats::HeaderMap;
use base64::Engine as _;
use base64::engine::general_purpose::{STANDARD, URL_SAFE_NO_PAD};
use broker_storage::{NewVersion, StorageError, Version};

use crate::subject;

/// The header holding a version's timestamp.
pub(crate) const TIMESTAMP: &str = "Broker-Timestamp";
/// The header the server deduplicates publishes by.
pub(crate) const MSG_ID: &str = "Nats-Msg-Id";
/// The header a direct get names the stored message's sequence in.
pub(crate) const SEQUENCE: &str = "Nats-Sequence";
/// The header a direct get names the stored message's subject in.
pub(crate) const SUBJECT: &str = "Nats-Subject";

/// The message id a version is published with.
///
/// A version with an idempotency key gets `k:` and the key, so that a retry through any store of
/// the database is recognised; a key that a header value cannot hold as it is (control
/// characters, non-ASCII text, spaces at either end, which header parsers trim) gets `b:` and
/// its base64url encoding instead. A version without one gets `g:` and a fresh UUID, made once
/// per call to `append`, so that the store's own retries of that call are recognised too. The
/// prefixes keep the three kinds apart.
pub(crate) fn msg_id(version: &NewVersion) -> String {
    match &version.idempotency_key {
        Some(key) if is_plain_header_value(key) => format!("k:{key}"),
        Some(key) => format!("b:{}", URL_SAFE_NO_PAD.encode(key)),
        None => format!("g:{}", uuid::Uuid::new_v4()),
    }
}

fn is_plain_header_value(value: &str) -> bool {
    !value.is_empty()
        && value.bytes().all(|byte| byte.is_ascii_graphic() || byte == b' ')
        && !value.starts_with(' ')
        && !value.ends_with(' ')
}

/// The headers of a version's message.
pub(crate) fn headers(version: &NewVersion, msg_id: &str) -> HeaderMap {
    let mut headers = HeaderMap::new();
    headers.insert(TIMESTAMP, version.timestamp.to_string().as_str());
    headers.insert(MSG_ID, msg_id);
    headers
}

/// The version a stored message holds: its sequence, its subject, its headers and its payload.
///
/// # Errors
///
/// [`StorageError::Corrupt`] when the message is not one this crate wrote: a subject that does
/// not decode, a missing or malformed timestamp, a payload that is not UTF-8.
pub(crate) fn version(
    prefix: &str,
    sequence: u64,
    subject: &str,
    timestamp: Option<&str>,
    payload: &[u8],
) -> Result<Version, StorageError> {
    let corrupt = |what: &str| {
        StorageError::Corrupt(format!("message {sequence} on subject {subject:?}: {what}"))
    };
    let event = subject::decode(prefix, subject).ok_or_else(|| corrupt("not an event subject"))?;
    let timestamp = timestamp
        .ok_or_else(|| corrupt("no Broker-Timestamp header"))?
        .trim()
        .parse::<u64>()
        .map_err(|_| corrupt("Broker-Timestamp is not a number of milliseconds"))?;
    let data = std::str::from_utf8(payload).map_err(|_| corrupt("the data is not UTF-8"))?;
    Ok(Version { id: sequence, event: event.into(), timestamp, data: data.into() })
}

/// The version a direct get answered with: a message whose headers name its sequence and
/// subject.
pub(crate) fn from_direct(
    prefix: &str,
    message: &async_nats::Message,
) -> Result<Version, StorageError> {
    let headers = message.headers.as_ref();
    let get = |name: &str| headers.and_then(|h| h.get(name)).map(|value| value.as_str());
    let sequence = get(SEQUENCE)
        .and_then(|value| value.parse::<u64>().ok())
        .ok_or_else(|| StorageError::backend("a direct get answered without a sequence"))?;
    let subject = get(SUBJECT)
        .ok_or_else(|| StorageError::backend("a direct get answered without a subject"))?;
    version(prefix, sequence, subject, get(TIMESTAMP), &message.payload)
}

/// A stored message as `$JS.API.STREAM.MSG.GET` returns it: headers and data in base64.
#[derive(Debug, serde::Deserialize)]
pub(crate) struct RawMessage {
    pub(crate) subject: String,
    pub(crate) seq: u64,
    #[serde(default)]
    pub(crate) hdrs: Option<String>,
    #[serde(default)]
    pub(crate) data: Option<String>,
}

impl RawMessage {
    /// The version this message holds.
    pub(crate) fn version(&self, prefix: &str) -> Result<Version, StorageError> {
        let corrupt = |what: &str| {
            StorageError::Corrupt(format!(
                "message {} on subject {:?}: {what}",
                self.seq, self.subject
            ))
        };
        let headers = match &self.hdrs {
            Some(hdrs) => STANDARD.decode(hdrs).map_err(|_| corrupt("headers are not base64"))?,
            None => Vec::new(),
        };
        let data = self.data()?;
        let timestamp = header_value(&headers, TIMESTAMP);
        version(prefix, self.seq, &self.subject, timestamp.as_deref(), &data)
    }

    /// The message's data.
    pub(crate) fn data(&self) -> Result<Vec<u8>, StorageError> {
        match &self.data {
            Some(data) => STANDARD.decode(data).map_err(|_| {
                StorageError::Corrupt(format!(
                    "message {} on subject {:?}: data is not base64",
                    self.seq, self.subject
                ))
            }),
            None => Ok(Vec::new()),
        }
    }
}

/// The value of header `name` in a raw header block (`NATS/1.0\r\nName: value\r\n...\r\n\r\n`),
/// matched without regard to case; the first one when it is repeated.
pub(crate) fn header_value(block: &[u8], name: &str) -> Option<String> {
    let text = std::str::from_utf8(block).ok()?;
    let mut lines = text.split("\r\n");
    if !lines.next()?.starts_with("NATS/") {
        return None;
    }
    lines.take_while(|line| !line.is_empty()).find_map(|line| {
        let (key, value) = line.split_once(':')?;
        key.trim().eq_ignore_ascii_case(name).then(|| value.trim().to_owned())
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn check_header(block: &str, name: &str, expected: Option<&str>) {
        assert_eq!(header_value(block.as_bytes(), name).as_deref(), expected, "{block:?} {name}");
    }

    #[test]
    fn headers_are_parsed_from_a_raw_block() {
        let block = "NATS/1.0\r\nNats-Msg-Id: k1\r\nBroker-Timestamp: 5\r\n\r\n";
        check_header(block, "Broker-Timestamp", Some("5"));
        check_header(block, "broker-timestamp", Some("5"));
        check_header(block, "Nats-Msg-Id", Some("k1"));
        check_header(block, "Missing", None);
        check_header("NATS/1.0\r\nA: 1\r\nA: 2\r\n\r\n", "A", Some("1"));
        check_header("NATS/1.0 404 Not Found\r\n\r\n", "A", None);
        check_header("HTTP/1.1\r\nA: 1\r\n\r\n", "A", None);
        check_header("NATS/1.0\r\n\r\nA: 1\r\n", "A", None);
    }

    #[test]
    fn a_stored_message_becomes_its_version() {
        let subject = subject::encode("broker", "a.b c");
        let raw = RawMessage {
            subject: subject.clone(),
            seq: 7,
            hdrs: Some(
                STANDARD.encode("NATS/1.0\r\nBroker-Timestamp: 18446744073709551615\r\n\r\n"),
            ),
            data: Some(STANDARD.encode(r#"{"x":1}"#)),
        };
        let expected = Version {
            id: 7,
            event: "a.b c".into(),
            timestamp: u64::MAX,
            data: r#"{"x":1}"#.into(),
        };
        assert_eq!(raw.version("broker").expect("a valid message"), expected);
        let empty = RawMessage { hdrs: None, ..raw };
        assert!(matches!(empty.version("broker"), Err(StorageError::Corrupt(_))), "no timestamp");
    }

    #[test]
    fn damaged_messages_are_corrupt() {
        let subject = subject::encode("broker", "a");
        for (subject, timestamp, payload) in [
            ("other.00.YQ", Some("1"), &b"1"[..]),
            (subject.as_str(), None, b"1"),
            (subject.as_str(), Some("-1"), b"1"),
            (subject.as_str(), Some("1"), b"\xff"),
        ] {
            let result = version("broker", 1, subject, timestamp, payload);
            assert!(matches!(result, Err(StorageError::Corrupt(_))), "{subject} {timestamp:?}");
        }
    }

    #[test]
    fn msg_ids_keep_keys_and_generated_ids_apart() {
        let keyed = |key: &str| msg_id(&NewVersion::new("a", 1, "1").with_idempotency_key(key));
        assert_eq!(keyed("order-17"), "k:order-17");
        assert_eq!(keyed("two words"), "k:two words");
        assert_eq!(keyed(" padded"), format!("b:{}", URL_SAFE_NO_PAD.encode(" padded")));
        assert_eq!(
            keyed("line\r\nbreak"),
            format!("b:{}", URL_SAFE_NO_PAD.encode("line\r\nbreak"))
        );
        assert_eq!(keyed("café"), format!("b:{}", URL_SAFE_NO_PAD.encode("café")));
        let generated = msg_id(&NewVersion::new("a", 1, "1"));
        assert!(generated.starts_with("g:"), "{generated}");
        assert_ne!(generated, msg_id(&NewVersion::new("a", 1, "1")), "one fresh id per version");
    }
}
