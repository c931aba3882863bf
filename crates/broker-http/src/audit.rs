//! `GET /audit/{event}`: an event's whole history, or one page of it.

use broker_auth::Access;
use http::{HeaderValue, Response, StatusCode, header};
use percent_encoding::{NON_ALPHANUMERIC, percent_decode_str, utf8_percent_encode};

use std::convert::Infallible;

use broker_core::Version;
use bytes::Bytes;
use http_body::Frame;
use http_body_util::{BodyExt, StreamBody};

use crate::App;
use crate::body::{Body, json_response, json_stream_response};
use crate::error::ApiError;
use crate::json::{CHUNK, write_version, write_versions};

/// The most versions one page may hold.
const MAX_LIMIT: usize = 1000;
/// Versions read from the storage at a time for a whole history.
const STREAM_PAGE: usize = 1000;

/// Answers for the event whose percent-encoded name is `encoded` (the path after `/audit/`).
pub(crate) async fn audit(
    app: &App,
    access: &Access,
    encoded: &str,
    query: Option<&str>,
) -> Result<Response<Body>, ApiError> {
    let event = percent_decode_str(encoded).decode_utf8().map_err(|_| {
        ApiError::InvalidEventName("the event name is not percent-encoded UTF-8".into())
    })?;
    access.may_audit(&event)?;
    let (after, limit) = parse_query(query)?;
    let Some(limit) = limit else {
        // The first page is read before answering, so that a failure gets its own status.
        let first = app.broker().audit(&event, after, STREAM_PAGE).await?;
        let pruned_through = app.broker().pruned_through(&event);
        let mut response = json_stream_response(whole_history(app, event.into_owned(), first));
        add_horizon(&mut response, pruned_through);
        return Ok(response);
    };
    let versions = app.broker().audit(&event, after, limit).await?;

    let mut out = Vec::with_capacity(versions.iter().map(|v| v.data.len() + 64).sum::<usize>() + 2);
    write_versions(&mut out, &versions);
    let mut response = json_response(StatusCode::OK, out);
    add_horizon(&mut response, app.broker().pruned_through(&event));
    if let Some(last) = versions.last().filter(|_| versions.len() == limit) {
        let next = format!(
            "</audit/{}?after={}&limit={limit}>; rel=\"next\"",
            utf8_percent_encode(&event, NON_ALPHANUMERIC),
            last.id
        );
        // Every byte of `next` is ASCII: the name is percent-encoded.
        let next = HeaderValue::from_str(&next).expect("a percent-encoded link is a header value");
        response.headers_mut().insert(header::LINK, next);
    }
    Ok(response)
}

/// The rest of an event's history after `first`, its first page, as one JSON array read from
/// the storage a page at a time: memory stays bounded by a page, however long the history.
///
/// A page that fails once the answer has begun ends the body without closing the array, so
/// that the client's parser fails rather than take a partial history for the whole.
fn whole_history(app: &App, event: String, first: Vec<Version>) -> Body {
    let broker = app.broker().clone();
    let chunks = async_stream::stream! {
        let mut out = Vec::with_capacity(2 * CHUNK);
        out.push(b'[');
        let mut page = first;
        let mut written = false;
        loop {
            for version in &page {
                if std::mem::replace(&mut written, true) {
                    out.push(b',');
                }
                write_version(&mut out, version);
                if out.len() >= CHUNK {
                    yield Ok::<_, Infallible>(Frame::data(Bytes::from(std::mem::take(&mut out))));
                }
            }
            let Some(last) = page.last().filter(|_| page.len() == STREAM_PAGE) else { break };
            match broker.audit(&event, last.id, STREAM_PAGE).await {
                Ok(next) => page = next,
                Err(error) => {
                    tracing::warn!(%error, "an audit stream failed after it began");
                    yield Ok(Frame::data(Bytes::from(out)));
                    return;
                }
            }
        }
        out.push(b']');
        yield Ok(Frame::data(Bytes::from(out)));
    };
    StreamBody::new(chunks).boxed_unsync()
}

/// Tells the client, in `Broker-Pruned-Through`, how far the retention rules pruned the event:
/// its versions up to that id are gone.
fn add_horizon(response: &mut Response<Body>, pruned_through: Option<u64>) {
    if let Some(through) = pruned_through {
        response.headers_mut().insert("broker-pruned-through", HeaderValue::from(through));
    }
}

/// `after` (0 by default) and `limit` (`None`: the whole history).
fn parse_query(query: Option<&str>) -> Result<(u64, Option<usize>), ApiError> {
    let mut after = 0;
    let mut limit = None;
    for (key, value) in form_urlencoded::parse(query.unwrap_or_default().as_bytes()) {
        match &*key {
            "after" => {
                after = value.parse().map_err(|_| {
                    ApiError::InvalidQuery(format!("after: {value:?} is not a version id"))
                })?;
            }
            "limit" => {
                let valid = value.parse().ok().filter(|limit| (1..=MAX_LIMIT).contains(limit));
                limit = Some(valid.ok_or_else(|| {
                    ApiError::InvalidQuery(format!(
                        "limit: {value:?} is not a number from 1 to {MAX_LIMIT}"
                    ))
                })?);
            }
            _ => {}
        }
    }
    Ok((after, limit))
}

#[cfg(test)]
mod tests {
    use super::parse_query;

    #[test]
    fn query_defaults_and_bounds() {
        assert_eq!(parse_query(None).expect("valid"), (0, None));
        assert_eq!(parse_query(Some("after=7&limit=1000&x=y")).expect("valid"), (7, Some(1000)));
        for bad in ["after=-1", "after=x", "limit=0", "limit=1001", "limit=", "after="] {
            assert!(parse_query(Some(bad)).is_err(), "{bad:?} must be refused");
        }
    }
}
