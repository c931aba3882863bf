//! [`Json`]: event data, validated and compacted once, on the way in.

use std::borrow::Cow;
use std::fmt;
use std::sync::Arc;

use serde_json::value::RawValue;

use crate::Error;

/// Event data: valid JSON text, compacted to a single line.
///
/// Compaction removes the white space between tokens and nothing else, so numbers, string escapes
/// and key order come out exactly as they went in. Because JSON strings cannot hold a raw line
/// break, the compacted text never contains one either: it always fits on one SSE `data:` line.
///
/// The text is shared, not copied, by the version it becomes and everything that holds that
/// version (the storage's memory, the subscribers' entries).
#[derive(Clone, PartialEq, Eq, Hash)]
pub struct Json(Arc<str>);

impl Json {
    /// Validates `text` as JSON and compacts it.
    pub fn parse(text: &str) -> Result<Json, Error> {
        let raw: &RawValue =
            serde_json::from_str(text).map_err(|error| Error::InvalidData(error.to_string()))?;
        Json::from_raw(raw)
    }

    /// Compacts JSON that serde has already validated, refusing lone surrogate escapes, which
    /// serde lets through.
    pub fn from_raw(raw: &RawValue) -> Result<Json, Error> {
        Ok(Json(compact(raw.get())?.into()))
    }

    /// The compact JSON text.
    pub fn as_str(&self) -> &str {
        &self.0
    }

    /// The compact JSON text, as an owned `String`.
    pub fn into_string(self) -> String {
        self.0.to_string()
    }

    /// Takes the compact JSON text, shared.
    pub fn into_shared(self) -> Arc<str> {
        self.0
    }
}

impl From<&serde_json::Value> for Json {
    fn from(value: &serde_json::Value) -> Json {
        // `Value`'s `Display` writes compact JSON and cannot fail.
        Json(value.to_string().into())
    }
}

impl From<serde_json::Value> for Json {
    fn from(value: serde_json::Value) -> Json {
        Json::from(&value)
    }
}

impl fmt::Debug for Json {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

impl fmt::Display for Json {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

/// Removes insignificant white space from JSON text that serde has validated, and refuses a
/// string escape that names half of a UTF-16 surrogate pair alone (`"\ud800"`): such text is
/// valid JSON grammar, but no Unicode string, and strict parsers (I-JSON, RFC 7493) refuse it.
/// `json` without white space between its tokens: the same text, borrowed, when it has none.
fn compact(json: &str) -> Result<Cow<'_, str>, Error> {
    let bytes = json.as_bytes();
    let mut out = String::new();
    // The text from `kept` to `at` is copied as it is, in one piece, when white space or the end
    // comes: data without white space is copied once, whole.
    let mut kept = 0;
    let mut at = 0;
    while let Some(&byte) = bytes.get(at) {
        match byte {
            b'"' => at = string_end(bytes, at + 1)?,
            b' ' | b'\t' | b'\n' | b'\r' => {
                if out.capacity() == 0 {
                    out.reserve_exact(json.len());
                }
                // Every cut is at an ASCII byte, so each piece is whole UTF-8.
                out.push_str(&json[kept..at]);
                at += 1;
                kept = at;
            }
            _ => at += 1,
        }
    }
    if kept == 0 {
        return Ok(Cow::Borrowed(json));
    }
    out.push_str(&json[kept..]);
    Ok(Cow::Owned(out))
}

/// The index just past the closing quote of the string whose contents start at `at`, checking
/// that every `\u` escape of a surrogate is one half of a pair.
fn string_end(bytes: &[u8], mut at: usize) -> Result<usize, Error> {
    let unterminated = || Error::InvalidData("unterminated string".into());
    loop {
        // Strings are most of most data: skipped to their next quote or escape at once.
        at += memchr::memchr2(b'"', b'\\', bytes.get(at..).ok_or_else(unterminated)?)
            .ok_or_else(unterminated)?;
        match bytes[at..] {
            [b'"', ..] => return Ok(at + 1),
            [b'\\', b'u', ..] => {
                let unit = utf16_escape(bytes, at)?;
                at += 6;
                if (0xDC00..0xE000).contains(&unit) {
                    return Err(lone_surrogate(unit));
                }
                if (0xD800..0xDC00).contains(&unit) {
                    let low = bytes.get(at..at + 2) == Some(b"\\u")
                        && (0xDC00..0xE000).contains(&utf16_escape(bytes, at)?);
                    if !low {
                        return Err(lone_surrogate(unit));
                    }
                    at += 6;
                }
            }
            _ => at += 2,
        }
    }
}

/// The code unit of the `\uXXXX` escape at `at`.
fn utf16_escape(bytes: &[u8], at: usize) -> Result<u32, Error> {
    let hex = bytes.get(at + 2..at + 6).and_then(|hex| std::str::from_utf8(hex).ok());
    hex.and_then(|hex| u32::from_str_radix(hex, 16).ok())
        .ok_or_else(|| Error::InvalidData("malformed \\u escape".into()))
}

fn lone_surrogate(unit: u32) -> Error {
    Error::InvalidData(format!(
        "the string escape \\u{unit:04x} is half of a UTF-16 surrogate pair without its other \
         half; it stands for no character"
    ))
}

#[cfg(test)]
mod tests {
    use super::Json;

    fn check(input: &str, expected: &str) {
        assert_eq!(Json::parse(input).expect("valid JSON").as_str(), expected);
    }

    #[test]
    fn compaction_removes_white_space_between_tokens_only() {
        check("{ \"a\" : [ 1 ,\n 2 ]\r\n,\t\"b\": \"x y\\\" z\" }", r#"{"a":[1,2],"b":"x y\" z"}"#);
        check(" \"\\\\\" ", r#""\\""#);
        check("18446744073709551616000", "18446744073709551616000");
        check("1.0e+2", "1.0e+2");
        check("\"line\\nbreak\"", r#""line\nbreak""#);
        check("\"\u{2028} 🦀 \"", "\"\u{2028} 🦀 \"");
        check(" [ \"é\" , \"\\\\\\\"\" ,\"\\u00e9 \"] ", r#"["é","\\\"","\u00e9 "]"#);
        check("\"\\\\\"", r#""\\""#);
    }

    #[test]
    fn surrogate_pairs_pass_and_lone_halves_are_refused() {
        check(r#"["\ud83e\udd80", "\u00e9\\ud800"]"#, r#"["\ud83e\udd80","\u00e9\\ud800"]"#);
        for input in [r#""\ud800""#, r#""\udc00""#, r#""\ud800\u0041""#, r#"{"a\ud83e":1}"#] {
            let error = Json::parse(input).expect_err(input);
            assert!(error.to_string().contains("surrogate"), "{input}: {error}");
        }
    }

    #[test]
    fn invalid_json_is_rejected() {
        for input in ["", "{", "{\"a\":}", "nul", "\"raw\nline\"", "1 2"] {
            assert!(Json::parse(input).is_err(), "{input:?} must be rejected");
        }
    }
}
