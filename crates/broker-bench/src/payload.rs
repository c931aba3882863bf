//! The data a publisher sends: who sent it, its sequence number and when, padded to size.
//!
//! `{"p":3,"s":17,"t":123456789,"x":"xxxx"}`: publisher, sequence number (from 1, per
//! publisher), send time (`CLOCK_MONOTONIC` nanoseconds, see `clock.rs`) and padding. The keys are
//! in alphabetical order and the JSON is compact, so a server that re-serialises the data
//! (broker 0.2.0 sorts keys) sends back the same bytes. Publisher 0 is the warm-up insert that
//! every subscriber receives first, which tells that it is registered.

use std::io::Write as _;

/// The publisher id of the warm-up insert.
pub(crate) const WARMUP: u32 = 0;

/// Who sent a payload, which one it was, and when.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) struct Stamp {
    pub(crate) publisher: u32,
    pub(crate) seq: u64,
    pub(crate) sent_ns: u64,
}

/// Writes the payload of `stamp` into `out`, padded to at least `size` bytes.
pub(crate) fn build(out: &mut Vec<u8>, stamp: Stamp, size: usize) {
    let start = out.len();
    // Writing into a Vec cannot fail.
    let _ =
        write!(out, r#"{{"p":{},"s":{},"t":{},"x":""#, stamp.publisher, stamp.seq, stamp.sent_ns);
    let pad = size.saturating_sub(out.len() - start + 2);
    out.resize(out.len() + pad, b'x');
    out.extend_from_slice(b"\"}");
}

/// Reads the stamp back from a payload, as received in a `data:` line.
pub(crate) fn parse(data: &[u8]) -> Option<Stamp> {
    Some(Stamp {
        publisher: u32::try_from(field(data, b"\"p\":")?).ok()?,
        seq: field(data, b"\"s\":")?,
        sent_ns: field(data, b"\"t\":")?,
    })
}

/// The unsigned integer after `key`.
fn field(data: &[u8], key: &[u8]) -> Option<u64> {
    let at = crate::http::find(data, key)? + key.len();
    let digits = data[at..].iter().take_while(|byte| byte.is_ascii_digit());
    let mut value: u64 = 0;
    let mut any = false;
    for &digit in digits {
        value = value.checked_mul(10)?.checked_add(u64::from(digit - b'0'))?;
        any = true;
    }
    any.then_some(value)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn payloads_have_the_size_asked_and_read_back() {
        let stamp = Stamp { publisher: 12, seq: 345, sent_ns: 6_789_012_345 };
        for size in [0, 10, 60, 100, 1000] {
            let mut out = b"prefix".to_vec();
            build(&mut out, stamp, size);
            let payload = &out[6..];
            assert!(payload.len() >= size && (size < 60 || payload.len() == size), "{size}");
            assert_eq!(parse(payload), Some(stamp));
            let value: serde_json::Value = serde_json::from_slice(payload).expect("valid JSON");
            assert_eq!(value["s"], 345);
        }
        assert_eq!(parse(b"{\"p\":1}"), None);
    }
}
