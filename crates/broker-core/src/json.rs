//! [`Json`]: event data, validated and compacted once, on the way in.

use std::fmt;

use serde_json::value::RawValue;

use crate::Error;

/// Event data: valid JSON text, compacted to a single line.
///
/// Compaction removes the white space between tokens and nothing else, so numbers, string escapes
/// and key order come out exactly as they went in. Because JSON strings cannot hold a raw line
/// break, the compacted text never contains one either: it always fits on one SSE `data:` line.
#[derive(Clone, PartialEq, Eq, Hash)]
pub struct Json(Box<str>);

impl Json {
    /// Validates `text` as JSON and compacts it.
    pub fn parse(text: &str) -> Result<Json, Error> {
        let raw: &RawValue =
            serde_json::from_str(text).map_err(|error| Error::InvalidData(error.to_string()))?;
        Ok(Json::from_raw(raw))
    }

    /// Compacts JSON that serde has already validated.
    pub fn from_raw(raw: &RawValue) -> Json {
        Json(compact(raw.get()).into_boxed_str())
    }

    /// The compact JSON text.
    pub fn as_str(&self) -> &str {
        &self.0
    }

    /// Takes the compact JSON text.
    pub fn into_string(self) -> String {
        self.0.into_string()
    }
}

impl From<&serde_json::Value> for Json {
    fn from(value: &serde_json::Value) -> Json {
        // `Value`'s `Display` writes compact JSON and cannot fail.
        Json(value.to_string().into_boxed_str())
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

/// Removes insignificant white space from valid JSON text.
fn compact(json: &str) -> String {
    let mut out = String::with_capacity(json.len());
    let mut in_string = false;
    let mut escaped = false;
    for c in json.chars() {
        if in_string {
            out.push(c);
            if escaped {
                escaped = false;
            } else if c == '\\' {
                escaped = true;
            } else if c == '"' {
                in_string = false;
            }
        } else if c == '"' {
            in_string = true;
            out.push(c);
        } else if !matches!(c, ' ' | '\t' | '\n' | '\r') {
            out.push(c);
        }
    }
    out
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
    }

    #[test]
    fn invalid_json_is_rejected() {
        for input in ["", "{", "{\"a\":}", "nul", "\"raw\nline\"", "1 2"] {
            assert!(Json::parse(input).is_err(), "{input:?} must be rejected");
        }
    }
}
