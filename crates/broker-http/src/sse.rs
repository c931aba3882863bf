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

/// The first bytes of every stream: the reconnection delay, and a comment saying whether the
/// stream starts with a snapshot or resumes.
pub(crate) fn prelude(retry: Duration, resumed: bool) -> Bytes {
    let mut prelude = String::with_capacity(32);
    let start = if resumed { "resumed" } else { "snapshot" };
    // Writing into a `String` cannot fail.
    let _ = write!(prelude, "retry: {}\n: {start}\n\n", retry.as_millis());
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
        assert_eq!(&prelude(Duration::from_secs(3), false)[..], b"retry: 3000\n: snapshot\n\n");
        assert_eq!(&prelude(Duration::from_millis(250), true)[..], b"retry: 250\n: resumed\n\n");
    }
}
