//! `POST /insert`: parse, validate, commit, answer with the stored version.

use std::borrow::Cow;

use broker_auth::Access;
use broker_core::Json;
use bytes::Bytes;
use http::{HeaderMap, Request, Response, StatusCode, header};
use http_body::Body as HttpBody;
use http_body_util::{BodyExt, LengthLimitError, Limited};
use serde::Deserialize;
use serde_json::value::RawValue;

use crate::App;
use crate::body::{Body, json_response};
use crate::error::ApiError;
use crate::json::write_version;

/// The body of an insert. Unknown fields are refused so that a misspelt field is an error, not
/// silently ignored data.
#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct InsertRequest<'a> {
    #[serde(borrow)]
    event: Cow<'a, str>,
    #[serde(borrow)]
    data: &'a RawValue,
}

pub(crate) async fn insert<B>(
    app: &App,
    access: &Access,
    request: Request<B>,
) -> Result<Response<Body>, ApiError>
where
    B: HttpBody<Data = Bytes>,
    B::Error: std::error::Error + Send + Sync + 'static,
{
    check_content_type(request.headers())?;
    let idempotency_key = idempotency_key(request.headers())?;
    let config = app.config();
    let body = tokio::time::timeout(config.body_timeout, read_body(request, config.max_body))
        .await
        .map_err(|_| ApiError::BodyTimeout(config.body_timeout))??;
    let parsed = parse(&body)?;
    access.may_insert(&parsed.event)?;
    let data = Json::from_raw(parsed.data)?;
    let broker = app.broker();
    let entry = match idempotency_key {
        Some(key) => broker.insert_idempotent(parsed.event, data, key).await?,
        None => broker.insert(parsed.event, data).await?,
    };
    let mut out = Vec::with_capacity(64 + entry.data().len() + entry.event().len());
    write_version(&mut out, entry.version());
    Ok(json_response(StatusCode::CREATED, out))
}

/// The `Idempotency-Key` header, if the request has one; more than one is an error, since which
/// one the client meant cannot be known.
fn idempotency_key(headers: &HeaderMap) -> Result<Option<String>, ApiError> {
    let mut values = headers.get_all("idempotency-key").iter();
    let Some(value) = values.next() else { return Ok(None) };
    if values.next().is_some() {
        return Err(ApiError::InvalidIdempotencyKey("send one Idempotency-Key header".into()));
    }
    let key = value.to_str().map_err(|_| {
        ApiError::InvalidIdempotencyKey("the Idempotency-Key must be visible ASCII".into())
    })?;
    // RFC 9110 allows a quoted string; the key is what is inside the quotes.
    let key = key.strip_prefix('"').and_then(|k| k.strip_suffix('"')).unwrap_or(key);
    Ok(Some(key.to_owned()))
}

/// Accepts `application/json` in UTF-8 (with or without `charset=utf-8`), sent as it is: another
/// charset or a content coding such as gzip would be stored as bytes the broker cannot read, so
/// both are refused rather than ignored.
fn check_content_type(headers: &HeaderMap) -> Result<(), ApiError> {
    let refused = |message: String| Err(ApiError::UnsupportedMediaType(message));
    let content_type = headers.get(header::CONTENT_TYPE).and_then(|value| value.to_str().ok());
    let mut parts = content_type.unwrap_or_default().split(';');
    let essence = parts.next().unwrap_or_default().trim();
    if !essence.eq_ignore_ascii_case("application/json") {
        return refused("the body must be sent with `Content-Type: application/json`".into());
    }
    for parameter in parts {
        let Some((name, value)) = parameter.split_once('=') else { continue };
        let value = value.trim().trim_matches('"');
        if name.trim().eq_ignore_ascii_case("charset") && !value.eq_ignore_ascii_case("utf-8") {
            return refused(format!("the body must be UTF-8 JSON, not charset={value}"));
        }
    }
    for value in headers.get_all(header::CONTENT_ENCODING) {
        let mut codings = value.to_str().unwrap_or("?").split(',').map(str::trim);
        if let Some(coding) = codings.find(|c| !c.eq_ignore_ascii_case("identity")) {
            return refused(format!(
                "the body must be sent uncompressed; Content-Encoding {coding} is not accepted"
            ));
        }
    }
    Ok(())
}

/// Reads the whole body, refusing one larger than `max` without reading past the limit.
async fn read_body<B>(request: Request<B>, max: usize) -> Result<Bytes, ApiError>
where
    B: HttpBody<Data = Bytes>,
    B::Error: std::error::Error + Send + Sync + 'static,
{
    let declared = request.headers().get(header::CONTENT_LENGTH);
    let declared = declared.and_then(|len| len.to_str().ok()?.parse::<u64>().ok());
    if declared.is_some_and(|len| len > max as u64) {
        return Err(ApiError::PayloadTooLarge(max));
    }
    match Limited::new(request.into_body(), max).collect().await {
        Ok(collected) => Ok(collected.to_bytes()),
        Err(error) if error.is::<LengthLimitError>() => Err(ApiError::PayloadTooLarge(max)),
        Err(error) => Err(ApiError::BadBody(error.to_string())),
    }
}

/// Parses the body, telling malformed JSON apart from well-formed JSON with wrong fields, and
/// naming the field in the latter case.
fn parse(body: &[u8]) -> Result<InsertRequest<'_>, ApiError> {
    // Serde would also read a struct from an array; only an object is a valid body.
    let first = body.iter().find(|byte| !byte.is_ascii_whitespace());
    if first.is_some_and(|&byte| byte != b'{')
        && serde_json::from_slice::<serde::de::IgnoredAny>(body).is_ok()
    {
        return Err(ApiError::InvalidField(
            "the body must be an object with `event` and `data`".into(),
        ));
    }
    let mut deserializer = serde_json::Deserializer::from_slice(body);
    let parsed: InsertRequest<'_> =
        serde_path_to_error::deserialize(&mut deserializer).map_err(|error| {
            let path = error.path().to_string();
            let inner = error.into_inner();
            if inner.is_data() {
                ApiError::InvalidField(if path == "." {
                    inner.to_string()
                } else {
                    format!("{path}: {inner}")
                })
            } else {
                ApiError::MalformedJson(format!("the body is not valid JSON: {inner}"))
            }
        })?;
    deserializer
        .end()
        .map_err(|error| ApiError::MalformedJson(format!("the body is not valid JSON: {error}")))?;
    Ok(parsed)
}

#[cfg(test)]
mod tests {
    use super::parse;

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
        check("[1]", "invalid_field", "must be an object");
    }

    #[test]
    fn escaped_event_names_are_decoded() {
        let parsed = parse(br#"{"event":"a\u0062","data":{ "x" : 1 }}"#).expect("valid");
        assert_eq!(parsed.event, "ab");
        assert_eq!(parsed.data.get(), r#"{ "x" : 1 }"#);
    }
}
