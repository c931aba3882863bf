//! How an event name becomes a subject of the stream, and back.
//!
//! A version of event `name` is stored under `<prefix>.<bucket>.<token>`:
//!
//! - `<prefix>` is the stream's name, so that two streams' subjects never overlap.
//! - `<token>` is the name in base64url without padding. Event names may hold any character,
//!   `.`, `*`, `>` and spaces included, which a subject token cannot; base64url's alphabet is
//!   safe in a token and decodes to exactly the bytes given. The empty name, whose encoding is
//!   empty, is the token `_`: no base64 text is one character long, so it is never ambiguous.
//! - `<bucket>` is two hex digits of a fixed hash of the name. The latest version of every event
//!   is read with a multi-subject get, which the server answers for at most 1,024 subjects at a
//!   time; buckets let such a read be split into filters that each match fewer events.
//!
//! The hash is FNV-1a, written out here rather than taken from a library, because the subjects
//! of a stream must never change between versions of the broker.

use base64::Engine as _;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;

/// How many buckets event names are spread over: two hex digits.
pub(crate) const BUCKETS: usize = 256;

/// The token of the empty event name.
const EMPTY: &str = "_";

/// The subject a version of `event` is published to in the stream with subject prefix `prefix`.
pub(crate) fn encode(prefix: &str, event: &str) -> String {
    format!("{prefix}.{}", key(event))
}

/// The event name of a subject made by [`encode`] with the same prefix, or `None` when the
/// subject is not one: another prefix, a bucket that does not match the name, or a token that is
/// not base64url of UTF-8 text.
pub(crate) fn decode(prefix: &str, subject: &str) -> Option<String> {
    from_key(subject.strip_prefix(prefix)?.strip_prefix('.')?)
}

/// The subject of `event` without the stream's prefix, `<bucket>.<token>`: what names the event
/// wherever the prefix is another, such as the keys of the horizons (see `horizons.rs`).
pub(crate) fn key(event: &str) -> String {
    let token = if event.is_empty() { EMPTY.to_owned() } else { URL_SAFE_NO_PAD.encode(event) };
    format!("{:02x}.{token}", bucket(event))
}

/// The event name of a key made by [`key`], or `None` when it is not one.
pub(crate) fn from_key(key: &str) -> Option<String> {
    let (bucket_hex, token) = key.split_once('.')?;
    let event = if token == EMPTY {
        String::new()
    } else {
        String::from_utf8(URL_SAFE_NO_PAD.decode(token).ok()?).ok()?
    };
    (bucket_hex == format!("{:02x}", bucket(&event))).then_some(event)
}

/// The filter that matches every version in the stream.
pub(crate) fn all(prefix: &str) -> String {
    format!("{prefix}.>")
}

/// The filter that matches every version of the events in bucket `bucket`.
pub(crate) fn bucket_filter(prefix: &str, bucket: usize) -> String {
    format!("{prefix}.{bucket:02x}.>")
}

/// The bucket of `event`: the low byte of its 64-bit FNV-1a hash.
fn bucket(event: &str) -> usize {
    const OFFSET: u64 = 0xcbf2_9ce4_8422_2325;
    const PRIME: u64 = 0x0000_0100_0000_01b3;
    let hash =
        event.bytes().fold(OFFSET, |hash, byte| (hash ^ u64::from(byte)).wrapping_mul(PRIME));
    (hash % BUCKETS as u64) as usize
}

#[cfg(test)]
mod tests {
    use proptest::prelude::*;

    use super::*;

    fn check(event: &str) {
        let subject = encode("broker", event);
        let tokens: Vec<&str> = subject.split('.').collect();
        assert_eq!(tokens.len(), 3, "{event:?} makes exactly three tokens: {subject}");
        assert!(
            tokens.iter().all(|token| !token.is_empty()
                && token.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_')),
            "{event:?} makes a subject of safe tokens: {subject}"
        );
        assert_eq!(decode("broker", &subject).as_deref(), Some(event), "{subject} round-trips");
        assert_eq!(from_key(&key(event)).as_deref(), Some(event), "its key round-trips");
    }

    #[test]
    fn names_round_trip() {
        for event in ["user", "", "a.b", "*", ">", "a b", " ", "naïve café/🦀 :id", "\0\r\n", "_"]
        {
            check(event);
        }
    }

    #[test]
    fn the_hash_is_fixed() {
        // These values are part of every stream written so far: they must never change.
        assert_eq!(encode("broker", "user"), "broker.f2.dXNlcg");
        assert_eq!(encode("broker", ""), "broker.25._");
    }

    #[test]
    fn foreign_subjects_are_not_names() {
        let subject = encode("broker", "user");
        assert_eq!(decode("other", &subject), None, "another prefix");
        assert_eq!(decode("broke", &subject), None, "a prefix of the prefix");
        assert_eq!(decode("broker", "broker.00.dXNlcg"), None, "a bucket that does not match");
        assert_eq!(decode("broker", "broker.f2.d*"), None, "not base64url");
        assert_eq!(decode("broker", "broker.f2"), None, "no name token");
        assert_eq!(decode("broker", &encode("broker", "a").replace('.', "")), None);
    }

    #[test]
    fn filters_match_the_subjects() {
        assert_eq!(all("broker"), "broker.>");
        let subject = encode("broker", "user");
        assert!(subject.starts_with(bucket_filter("broker", 0xf2).trim_end_matches('>')));
    }

    proptest! {
        #[test]
        fn any_name_round_trips(event in any::<String>()) {
            check(&event);
        }
    }
}
