//! Idempotency keys: which keys a client may choose, and the keys an insert of several versions
//! stores each of its versions under.

use crate::Error;

/// The longest idempotency key accepted, in bytes.
const MAX_IDEMPOTENCY_KEY_LEN: usize = 255;

/// Checks that `key` can be an idempotency key: 1 to 255 bytes of visible ASCII, without spaces.
pub(crate) fn validate_idempotency_key(key: &str) -> Result<(), Error> {
    let invalid = |why: &str| Err(Error::InvalidIdempotencyKey(why.to_owned()));
    if key.is_empty() {
        return invalid("it is empty");
    }
    if key.len() > MAX_IDEMPOTENCY_KEY_LEN {
        return invalid(&format!("it is longer than {MAX_IDEMPOTENCY_KEY_LEN} bytes"));
    }
    if !key.bytes().all(|byte| byte.is_ascii_graphic()) {
        return invalid("it may hold only visible ASCII characters, without spaces");
    }
    Ok(())
}

/// The key version `index` of an insert of `len` versions is stored under, when the insert
/// carries `key`: `"{key} {index}/{len}"`.
///
/// The storage remembers a key per version, so an insert of several versions gives each one a
/// key of its own, made from the client's. A retry of the same insert makes the same keys, and
/// so gets back every version it stored, or none if they were not stored, since the versions of
/// one insert are committed together, with one timestamp, and expire together. The space keeps
/// these keys apart from every key a client can choose (visible ASCII without spaces), so a
/// single insert's key never names a version of an insert of several. The length is part of
/// the key: an insert of another length under the same key makes other keys, and is stored as
/// a new insert.
pub(crate) fn version_key(key: &str, index: usize, len: usize) -> String {
    format!("{key} {index}/{len}")
}

#[cfg(test)]
mod tests {
    use super::{validate_idempotency_key, version_key};

    #[test]
    fn version_keys_are_never_keys_a_client_may_choose() {
        assert_eq!(version_key("order-17", 3, 10), "order-17 3/10");
        for (key, index, len) in [("k", 0, 1), ("k#0/1", 0, 2), (&*"x".repeat(255), 999, 1000)] {
            validate_idempotency_key(key).expect("a client's key");
            let made = version_key(key, index, len);
            assert!(validate_idempotency_key(&made).is_err(), "{made:?} is a client's key");
        }
    }
}
