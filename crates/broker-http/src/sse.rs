//! Server-Sent Events framing: the only place that knows the bytes of the event stream.
//!
//! A version becomes one frame:
//!
//! ```text
//! event: <name>
//! id: <id>@<database>
//! data: <compact JSON>
//!
//! ```
//!
//! The engine guarantees that neither the name nor the data holds a line break (names refuse
//! control characters, data is compact JSON), so each field stays on its own line and no input
//! can add a field to a frame.

use std::fmt::Write as _;
use std::time::Duration;

use broker_core::{Uuid, Version};
use bytes::{BufMut, Bytes, BytesMut};

/// The comment that keeps an idle stream alive through proxies and client timeouts.
pub(crate) const HEARTBEAT: &[u8] = b":\n\n";

/// Encodes `version` as one SSE frame of the database `database`.
pub(crate) fn encode(version: &Version, database: &Uuid) -> Bytes {
    let mut id = itoa::Buffer::new();
    let id = id.format(version.id);
    let len = 24 + version.event.len() + id.len() + 33 + version.data.len();
    let mut frame = BytesMut::with_capacity(len);
    frame.put_slice(b"event: ");
    frame.put_slice(version.event.as_bytes());
    frame.put_slice(b"\nid: ");
    frame.put_slice(id.as_bytes());
    frame.put_u8(b'@');
    frame.put_slice(database.simple().encode_lower(&mut Uuid::encode_buffer()).as_bytes());
    frame.put_slice(b"\ndata: ");
    frame.put_slice(version.data.as_bytes());
    frame.put_slice(b"\n\n");
    frame.freeze()
}

/// How a stream starts, as the client is told in the `Broker-Start` header and in the prelude's
/// comment.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Start {
    /// With the latest version of every event the subscriber follows; when the client asked to
    /// resume, why it could not.
    Snapshot(Option<Reason>),
    /// With every version after the one the client last received.
    Resumed,
}

/// Why a client that asked to resume gets a snapshot instead, as the `Broker-Start-Reason`
/// header and a second comment of the prelude say.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Reason {
    /// The id is malformed, of another database, or was never given out.
    UnknownId,
    /// Versions after the id were pruned by the retention rules, through this id.
    Pruned(u64),
}

impl Start {
    /// The word the client is told.
    pub(crate) fn as_str(self) -> &'static str {
        match self {
            Start::Snapshot(_) => "snapshot",
            Start::Resumed => "resumed",
        }
    }
}

impl Reason {
    /// The word the client is told.
    pub(crate) fn as_str(self) -> &'static str {
        match self {
            Reason::UnknownId => "unknown_id",
            Reason::Pruned(_) => "pruned",
        }
    }
}

/// The first bytes of every stream: the reconnection delay, a comment saying how the stream
/// starts and, for a snapshot instead of a resume, one saying why.
pub(crate) fn prelude(retry: Duration, start: Start) -> Bytes {
    let mut prelude = String::with_capacity(48);
    // Writing into a `String` cannot fail.
    let _ = write!(prelude, "retry: {}\n: {}\n", retry.as_millis(), start.as_str());
    let _ = match start {
        Start::Snapshot(Some(Reason::UnknownId)) => writeln!(prelude, ": unknown_id"),
        Start::Snapshot(Some(Reason::Pruned(through))) => {
            writeln!(prelude, ": pruned through {through}")
        }
        Start::Snapshot(None) | Start::Resumed => Ok(()),
    };
    prelude.push('\n');
    Bytes::from(prelude)
}

/// Parses an SSE id as written by [`encode`]: `<id>@<database>`.
///
/// Returns the position when the id is well formed and belongs to `database`; anything else (a
/// malformed id, or one from another database) is no position here.
pub(crate) fn parse_id(text: &str, database: &Uuid) -> Option<u64> {
    let (id, owner) = text.trim().split_once('@')?;
    let owner = Uuid::try_parse(owner).ok()?;
    if owner != *database || id.starts_with('+') {
        return None;
    }
    id.parse().ok()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn version(id: u64, event: &str, data: &str) -> Version {
        Version { id, event: event.into(), timestamp: 0, data: data.into() }
    }

    fn check_frame(version: Version, expected: &str) {
        let database = Uuid::from_u128(0x0f8fad5b_d9cb_469f_a165_70867728950e);
        assert_eq!(String::from_utf8(encode(&version, &database).to_vec()).unwrap(), expected);
    }

    #[test]
    fn frames_carry_event_id_and_data_lines() {
        check_frame(
            version(42, "user", r#"{"name":"Rusty"}"#),
            "event: user\nid: 42@0f8fad5bd9cb469fa16570867728950e\ndata: {\"name\":\"Rusty\"}\n\n",
        );
        check_frame(
            version(u64::MAX, " spaced: 🦀", "null"),
            "event:  spaced: 🦀\nid: 18446744073709551615@0f8fad5bd9cb469fa16570867728950e\n\
             data: null\n\n",
        );
        check_frame(
            version(0, "a", "0"),
            "event: a\nid: 0@0f8fad5bd9cb469fa16570867728950e\ndata: 0\n\n",
        );
    }

    #[test]
    fn ids_resolve_only_in_their_own_database() {
        let database = Uuid::from_u128(7);
        let own = format!("12@{}", database.simple());
        assert_eq!(parse_id(&own, &database), Some(12));
        assert_eq!(parse_id(&format!(" {own} "), &database), Some(12));
        for other in [
            format!("12@{}", Uuid::from_u128(8).simple()),
            "12".to_owned(),
            format!("x@{}", database.simple()),
            format!("+12@{}", database.simple()),
            format!("-1@{}", database.simple()),
            format!("99999999999999999999@{}", database.simple()),
            String::new(),
        ] {
            assert_eq!(parse_id(&other, &database), None, "{other:?}");
        }
    }

    #[test]
    fn prelude_sets_retry_and_says_how_the_stream_starts() {
        let snapshot = prelude(Duration::from_secs(3), Start::Snapshot(None));
        assert_eq!(&snapshot[..], b"retry: 3000\n: snapshot\n\n");
        let unknown = prelude(Duration::from_secs(3), Start::Snapshot(Some(Reason::UnknownId)));
        assert_eq!(&unknown[..], b"retry: 3000\n: snapshot\n: unknown_id\n\n");
        let pruned = prelude(Duration::from_secs(3), Start::Snapshot(Some(Reason::Pruned(41))));
        assert_eq!(&pruned[..], b"retry: 3000\n: snapshot\n: pruned through 41\n\n");
        let resumed = prelude(Duration::from_millis(250), Start::Resumed);
        assert_eq!(&resumed[..], b"retry: 250\n: resumed\n\n");
    }

    mod properties {
        use broker_core::{Json, validate_event_name};
        use eventsource_stream::Eventsource;
        use futures_util::{FutureExt, StreamExt};
        use proptest::prelude::*;
        use serde_json::Value;

        use super::*;

        /// Any JSON value, with strings drawn from all of Unicode (line breaks included).
        fn json() -> impl Strategy<Value = Value> {
            let leaf = prop_oneof![
                Just(Value::Null),
                any::<bool>().prop_map(Value::Bool),
                any::<i64>().prop_map(Value::from),
                any::<u64>().prop_map(Value::from),
                any::<f64>().prop_filter("finite", |f| f.is_finite()).prop_map(Value::from),
                any::<String>().prop_map(Value::String),
            ];
            leaf.prop_recursive(4, 32, 6, |inner| {
                prop_oneof![
                    prop::collection::vec(inner.clone(), 0..6).prop_map(Value::Array),
                    prop::collection::btree_map(any::<String>(), inner, 0..6)
                        .prop_map(|map| Value::Object(map.into_iter().collect())),
                ]
            })
        }

        /// Names the broker accepts, biased towards the characters SSE gives meaning to.
        fn accepted_name() -> impl Strategy<Value = String> {
            prop_oneof![
                any::<String>(),
                "[ :a-z\u{2028}\u{feff}\u{85}\r\n\0]{1,12}",
                Just(" leading".to_owned()),
                Just("data: x".to_owned()),
            ]
            .prop_filter("accepted by the engine", |name| validate_event_name(name, 256).is_ok())
        }

        fn parse(bytes: Bytes) -> Vec<eventsource_stream::Event> {
            let stream = futures_util::stream::iter([Ok::<_, std::convert::Infallible>(bytes)]);
            let events = stream.eventsource().collect::<Vec<_>>().now_or_never().expect("ready");
            events.into_iter().map(|event| event.expect("the frame parses")).collect()
        }

        proptest! {
            #[test]
            fn frames_read_back_as_exactly_their_event_id_and_data(
                name in accepted_name(),
                value in json(),
                id in any::<u64>(),
                database in any::<u128>(),
            ) {
                let database = Uuid::from_u128(database);
                let data = Json::from(&value);
                let frame = encode(&version(id, &name, data.as_str()), &database);
                let events = parse(frame);
                prop_assert_eq!(events.len(), 1, "one frame is one event");
                let event = &events[0];
                prop_assert_eq!(&event.event, &name);
                prop_assert_eq!(parse_id(&event.id, &database), Some(id));
                prop_assert_eq!(event.retry, None);
                prop_assert_eq!(&event.data, data.as_str());
                let read_back: Value = serde_json::from_str(&event.data).expect("data is JSON");
                prop_assert_eq!(read_back, value);
            }
        }
    }
}
