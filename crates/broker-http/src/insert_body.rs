//! The body of `POST /insert`: one version as an object, or several as an array of such objects,
//! parsed in one pass with errors that name the field, and in an array the element's index
//! (`[3].event`).

use std::borrow::Cow;
use std::fmt;

use serde::de::value::MapAccessDeserializer;
use serde::de::{Deserialize, Deserializer, IgnoredAny, MapAccess, Visitor};
use serde_json::value::RawValue;

use crate::error::ApiError;

/// What every version in the body must be.
const SHAPE: &str = "an object with `event` and `data`";

/// One version to insert. Unknown fields are refused so that a misspelt field is an error, not
/// silently ignored data.
#[derive(serde::Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct InsertRequest<'a> {
    #[serde(borrow)]
    pub(crate) event: Cow<'a, str>,
    #[serde(borrow)]
    pub(crate) data: &'a RawValue,
}

/// What the body asks for.
pub(crate) enum InsertBody<'a> {
    /// One version: `{"event": …, "data": …}`.
    One(InsertRequest<'a>),
    /// Several versions, to be stored together: `[{"event": …, "data": …}, …]`.
    Many(Vec<InsertRequest<'a>>),
}

/// Parses the body, telling malformed JSON apart from well-formed JSON with wrong fields, and
/// naming the field in the latter case.
pub(crate) fn parse(body: &[u8]) -> Result<InsertBody<'_>, ApiError> {
    match body.iter().find(|byte| !byte.is_ascii_whitespace()) {
        Some(b'{') => whole(body).map(InsertBody::One),
        Some(b'[') => {
            let elements: Vec<Element<'_>> = whole(body)?;
            Ok(InsertBody::Many(elements.into_iter().map(|element| element.0).collect()))
        }
        _ => {
            // Malformed JSON is told as such; well-formed JSON of another shape is refused.
            whole::<IgnoredAny>(body)?;
            Err(ApiError::InvalidField(format!(
                "the body must be {SHAPE}, or an array of such objects"
            )))
        }
    }
}

/// Reads `body` whole as a `T`.
///
/// A body is read once without tracking where the reader is, which costs a good share of the
/// parse of a large array; only a body that fails is read again with the tracking, for a message
/// that names the field.
fn whole<'a, T: Deserialize<'a>>(body: &'a [u8]) -> Result<T, ApiError> {
    let mut deserializer = serde_json::Deserializer::from_slice(body);
    if let Ok(parsed) = T::deserialize(&mut deserializer)
        && deserializer.end().is_ok()
    {
        return Ok(parsed);
    }
    let mut deserializer = serde_json::Deserializer::from_slice(body);
    let parsed: T = serde_path_to_error::deserialize(&mut deserializer).map_err(|error| {
        let path = error.path().to_string();
        let inner = error.into_inner();
        if inner.is_data() {
            let message = if path == "." { inner.to_string() } else { format!("{path}: {inner}") };
            return ApiError::InvalidField(message);
        }
        // Where the text stops being JSON, the path past an array's index says little (a key
        // not read yet is `?`): the index, and the line and column, say where.
        match path.split('.').next().filter(|index| index.starts_with('[')) {
            Some(index) => {
                ApiError::MalformedJson(format!("the body is not valid JSON: {index}: {inner}"))
            }
            None => ApiError::MalformedJson(format!("the body is not valid JSON: {inner}")),
        }
    })?;
    deserializer
        .end()
        .map_err(|error| ApiError::MalformedJson(format!("the body is not valid JSON: {error}")))?;
    Ok(parsed)
}

/// An element of an array body: an [`InsertRequest`] read from an object only, since serde
/// would also read a struct from an array of its fields.
struct Element<'a>(InsertRequest<'a>);

impl<'de> Deserialize<'de> for Element<'de> {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Element<'de>, D::Error> {
        deserializer.deserialize_map(ElementVisitor)
    }
}

struct ElementVisitor;

impl<'de> Visitor<'de> for ElementVisitor {
    type Value = Element<'de>;

    fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(SHAPE)
    }

    fn visit_map<M: MapAccess<'de>>(self, map: M) -> Result<Element<'de>, M::Error> {
        InsertRequest::deserialize(MapAccessDeserializer::new(map)).map(Element)
    }
}

#[cfg(test)]
mod tests {
    use super::{InsertBody, parse};

    fn check(body: &str, expected_code: &str, expected_in_message: &str) {
        let error = parse(body.as_bytes()).err().unwrap_or_else(|| panic!("{body:?} must fail"));
        assert_eq!(error.code(), expected_code, "{body:?}: {error}");
        let message = error.to_string();
        assert!(message.contains(expected_in_message), "{body:?}: {message:?}");
    }

    #[test]
    fn bad_bodies_are_told_apart_and_name_the_field() {
        check("{", "malformed_json", "not valid JSON");
        check("", "malformed_json", "not valid JSON");
        check(r#"{"event":"a","data":1} x"#, "malformed_json", "trailing");
        check(r#"{"data":1}"#, "invalid_field", "missing field `event`");
        check(r#"{"event":"a"}"#, "invalid_field", "missing field `data`");
        check(r#"{"event":5,"data":1}"#, "invalid_field", "event: invalid type");
        check(r#"{"event":"a","data":1,"extra":2}"#, "invalid_field", "unknown field `extra`");
        check("1", "invalid_field", "must be an object");
        check(r#""x""#, "invalid_field", "or an array of such objects");
    }

    #[test]
    fn bad_elements_of_an_array_are_named_by_their_index() {
        let ok = r#"{"event":"a","data":1}"#;
        check(
            &format!("[{ok},{ok},{ok},{{\"data\":1}}]"),
            "invalid_field",
            "[3]: missing field `event`",
        );
        check(
            &format!("[{ok},{{\"event\":5,\"data\":1}}]"),
            "invalid_field",
            "[1].event: invalid type",
        );
        check(
            &format!("[{ok},{{\"event\":\"a\",\"data\":1,\"x\":0}}]"),
            "invalid_field",
            "[1].x: unknown field `x`",
        );
        check(
            &format!("[{ok},1]"),
            "invalid_field",
            "[1]: invalid type: integer `1`, expected an object",
        );
        check(&format!("[{ok},[\"a\",1]]"), "invalid_field", "[1]: invalid type: sequence");
        check(
            &format!("[{ok},{{\"event\":\"a\",\"data\":1,\"event\":\"b\"}}]"),
            "invalid_field",
            "[1]: duplicate field",
        );
        check(&format!("[{ok},{{\"event\":\"a\",\"data\":"), "malformed_json", "JSON: [1]: EOF");
        check(&format!("[{ok},{ok},{{\"event\":\"a\""), "malformed_json", "JSON: [2]: EOF");
        check(&format!("[{ok},{{\"event\":\"a\",\"data\":nul}}]"), "malformed_json", "JSON: [1]: ");
        check(r#"{"event":"a","data":nul}"#, "malformed_json", "not valid JSON: expected ident");
        check(&format!("[{ok}] x"), "malformed_json", "trailing");
    }

    #[test]
    fn objects_and_arrays_of_them_are_read_with_escapes_decoded_and_data_verbatim() {
        let Ok(InsertBody::One(one)) = parse(br#"{"event":"a\u0062","data":{ "x" : 1 }}"#) else {
            panic!("one version");
        };
        assert_eq!((&*one.event, one.data.get()), ("ab", r#"{ "x" : 1 }"#));
        let Ok(InsertBody::Many(many)) =
            parse(br#" [ {"data":[1, 2],"event":"x"}, {"event":"y","data":null} ] "#)
        else {
            panic!("an array");
        };
        let read: Vec<(&str, &str)> = many.iter().map(|r| (&*r.event, r.data.get())).collect();
        assert_eq!(read, [("x", "[1, 2]"), ("y", "null")]);
        assert!(matches!(parse(b"[]"), Ok(InsertBody::Many(empty)) if empty.is_empty()));
    }
}
