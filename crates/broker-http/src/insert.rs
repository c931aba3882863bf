//! `POST /insert`: parse, validate, commit, answer with the stored version, or with the stored
//! versions of an array, which are stored together or not at all.

use broker_auth::Access;
use broker_core::{Json, validate_event_name};
use bytes::{Bytes, BytesMut};
use http::{Request, Response, StatusCode, header};
use http_body::Body as HttpBody;
use http_body_util::BodyExt;

use crate::App;
use crate::body::{Body, json_response};
use crate::error::ApiError;
use crate::head::{self, Headers, IDEMPOTENCY_KEY};
use crate::insert_body::{InsertBody, InsertRequest, parse};
use crate::json::{write_version, write_versions};

pub(crate) async fn insert<B>(
    app: &App,
    access: &Access,
    request: Request<B>,
) -> Result<Response<Body>, ApiError>
where
    B: HttpBody<Data = Bytes>,
    B::Error: std::error::Error + Send + Sync + 'static,
{
    let idempotency_key = check_head(request.headers())?;
    let config = app.config();
    let body = tokio::time::timeout(config.body_timeout, read_body(request, config.max_body))
        .await
        .map_err(|_| ApiError::BodyTimeout(config.body_timeout))??;
    let mut answer = Vec::new();
    store(app, access, &body, idempotency_key, &mut answer).await?;
    Ok(json_response(StatusCode::CREATED, answer))
}

/// Checks what an insert's head says about its body (`Content-Type`, `Content-Encoding`) before
/// the body is read, and returns its `Idempotency-Key`, if it has one.
pub(crate) fn check_head(headers: &(impl Headers + ?Sized)) -> Result<Option<String>, ApiError> {
    check_content_type(headers)?;
    idempotency_key(headers)
}

/// Stores what `body` asks for, as far as `access` allows it, and writes the answer's JSON into
/// `out`, which it clears first: the stored version, or the array of the stored versions.
pub(crate) async fn store(
    app: &App,
    access: &Access,
    body: &[u8],
    idempotency_key: Option<String>,
    out: &mut Vec<u8>,
) -> Result<(), ApiError> {
    let parsed = match parse(body)? {
        InsertBody::One(parsed) => parsed,
        InsertBody::Many(elements) => {
            return insert_many(app, access, elements, idempotency_key, out).await;
        }
    };
    access.may_insert(&parsed.event)?;
    let data = Json::from_raw(parsed.data)?;
    let broker = app.broker();
    let entry = match idempotency_key {
        Some(key) => broker.insert_idempotent(parsed.event, data, key).await?,
        None => broker.insert(parsed.event, data).await?,
    };
    out.clear();
    out.reserve(64 + entry.data().len() + entry.event().len());
    write_version(out, entry.version());
    Ok(())
}

/// Stores the versions of an array body in one commit, all or nothing, and answers them as an
/// array in the same order.
///
/// Every element is checked before anything is stored, in the order a single insert is: the
/// array's shape and size, then the token's scope for every element, then every event name and
/// data. The first element refused refuses the whole array, with an error that names its index.
async fn insert_many(
    app: &App,
    access: &Access,
    elements: Vec<InsertRequest<'_>>,
    idempotency_key: Option<String>,
    out: &mut Vec<u8>,
) -> Result<(), ApiError> {
    if elements.is_empty() {
        return Err(ApiError::EmptyArray);
    }
    let broker = app.broker();
    let limit = app.config().max_bulk.min(broker.config().max_batch);
    if elements.len() > limit {
        return Err(ApiError::TooManyVersions(limit));
    }
    for (index, element) in elements.iter().enumerate() {
        access.may_insert(&element.event).map_err(|refusal| at(index, "", refusal.into()))?;
    }
    let max_name = broker.config().max_event_name_len;
    let mut versions = Vec::with_capacity(elements.len());
    let mut size = 2;
    for (index, element) in elements.into_iter().enumerate() {
        validate_event_name(&element.event, max_name)
            .map_err(|error| at(index, ".event", error.into()))?;
        let data =
            Json::from_raw(element.data).map_err(|error| at(index, ".data", error.into()))?;
        size += 64 + element.event.len() + data.as_str().len();
        versions.push((element.event, data));
    }
    let entries = broker.insert_many(versions, idempotency_key.as_deref()).await?;
    out.clear();
    out.reserve(size);
    write_versions(out, entries.iter().map(|entry| entry.version()));
    Ok(())
}

/// `error`, refusing element `index` of an array, with its message prefixed by where it is:
/// `[3].event: …`.
fn at(index: usize, field: &str, error: ApiError) -> ApiError {
    let place = |message: String| format!("[{index}]{field}: {message}");
    match error {
        ApiError::InvalidEventName(message) => ApiError::InvalidEventName(place(message)),
        ApiError::MalformedJson(message) => ApiError::MalformedJson(place(message)),
        ApiError::InvalidField(message) => ApiError::InvalidField(place(message)),
        ApiError::InsufficientScope(message) => ApiError::InsufficientScope(place(message)),
        error => error,
    }
}

/// The `Idempotency-Key` header, if the request has one; more than one is an error, since which
/// one the client meant cannot be known.
fn idempotency_key(headers: &(impl Headers + ?Sized)) -> Result<Option<String>, ApiError> {
    let name = IDEMPOTENCY_KEY;
    let mut values = headers.lines(&name);
    let Some(value) = values.next() else { return Ok(None) };
    if values.next().is_some() {
        return Err(ApiError::InvalidIdempotencyKey("send one Idempotency-Key header".into()));
    }
    let key = head::visible_ascii(value).ok_or_else(|| {
        ApiError::InvalidIdempotencyKey("the Idempotency-Key must be visible ASCII".into())
    })?;
    // RFC 9110 allows a quoted string; the key is what is inside the quotes.
    let key = key.strip_prefix('"').and_then(|k| k.strip_suffix('"')).unwrap_or(key);
    Ok(Some(key.to_owned()))
}

/// Accepts `application/json` in UTF-8 (with or without `charset=utf-8`), sent as it is: another
/// charset or a content coding such as gzip would be stored as bytes the broker cannot read, so
/// both are refused rather than ignored.
fn check_content_type(headers: &(impl Headers + ?Sized)) -> Result<(), ApiError> {
    let refused = |message: String| Err(ApiError::UnsupportedMediaType(message));
    let content_type = headers.line(&header::CONTENT_TYPE).and_then(head::visible_ascii);
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
    for value in headers.lines(&header::CONTENT_ENCODING) {
        let mut codings = head::visible_ascii(value).unwrap_or("?").split(',').map(str::trim);
        if let Some(coding) = codings.find(|c| !c.eq_ignore_ascii_case("identity")) {
            return refused(format!(
                "the body must be sent uncompressed; Content-Encoding {coding} is not accepted"
            ));
        }
    }
    Ok(())
}

/// Reads the whole body, refusing one larger than `max` without reading past the limit.
///
/// A body that comes in one piece, as a publisher's usually does, is that piece, neither copied
/// nor gathered in a list.
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
    let mut body = std::pin::pin!(request.into_body());
    // The body while it is one chunk; once a second comes, the copy they are gathered in.
    let mut first = Bytes::new();
    let mut gathered: Option<BytesMut> = None;
    let mut len = 0;
    while let Some(frame) = body.frame().await {
        let frame = frame.map_err(|error| ApiError::BadBody(error.to_string()))?;
        // Trailers, which an insert does not read.
        let Ok(data) = frame.into_data() else { continue };
        len += data.len();
        if len > max {
            return Err(ApiError::PayloadTooLarge(max));
        }
        match &mut gathered {
            Some(gathered) => gathered.extend_from_slice(&data),
            None if first.is_empty() => first = data,
            None => {
                let mut both = BytesMut::with_capacity(len);
                both.extend_from_slice(&first);
                both.extend_from_slice(&data);
                gathered = Some(both);
            }
        }
    }
    Ok(gathered.map_or(first, BytesMut::freeze))
}

#[cfg(test)]
mod tests {
    use std::convert::Infallible;

    use bytes::Bytes;
    use http::Request;
    use http_body::Frame;
    use http_body_util::StreamBody;

    use super::read_body;
    use crate::error::ApiError;

    /// Reads a body that comes in `chunks`, with the limit `max`.
    async fn read(chunks: &[&'static str], max: usize) -> Result<Bytes, ApiError> {
        let frames =
            chunks.iter().map(|chunk| Ok::<_, Infallible>(Frame::data(Bytes::from(*chunk))));
        let body = StreamBody::new(futures_util::stream::iter(frames.collect::<Vec<_>>()));
        read_body(Request::new(body), max).await
    }

    #[tokio::test]
    async fn bodies_in_one_chunk_or_many_are_read_whole_up_to_the_limit() {
        assert_eq!(read(&["abcdef"], 6).await.ok(), Some(Bytes::from("abcdef")));
        assert_eq!(read(&["", "ab", "", "cd", "ef"], 6).await.ok(), Some(Bytes::from("abcdef")));
        assert_eq!(read(&[], 6).await.ok(), Some(Bytes::new()));
        for chunks in [&["abcdefg"][..], &["ab", "cd", "efg"], &["abcdef", "g"]] {
            let refused = read(chunks, 6).await;
            assert!(matches!(refused, Err(ApiError::PayloadTooLarge(6))), "{chunks:?}");
        }
    }
}
