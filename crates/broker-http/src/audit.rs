//! `GET /audit/{event}`: one page of an event's history.

use broker_auth::Access;
use http::{HeaderValue, Response, StatusCode, header};
use percent_encoding::{NON_ALPHANUMERIC, percent_decode_str, utf8_percent_encode};

use crate::App;
use crate::body::{Body, json_response};
use crate::error::ApiError;
use crate::json::write_versions;

/// Versions per page when the client does not say.
const DEFAULT_LIMIT: usize = 100;
/// The most versions one page may hold, so one request never loads a whole long history.
const MAX_LIMIT: usize = 1000;

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
    let versions = app.broker().audit(&event, after, limit).await?;

    let mut out = Vec::with_capacity(versions.iter().map(|v| v.data.len() + 64).sum::<usize>() + 2);
    write_versions(&mut out, &versions);
    let mut response = json_response(StatusCode::OK, out);
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

fn parse_query(query: Option<&str>) -> Result<(u64, usize), ApiError> {
    let mut after = 0;
    let mut limit = DEFAULT_LIMIT;
    for (key, value) in form_urlencoded::parse(query.unwrap_or_default().as_bytes()) {
        match &*key {
            "after" => {
                after = value.parse().map_err(|_| {
                    ApiError::InvalidQuery(format!("after: {value:?} is not a version id"))
                })?;
            }
            "limit" => {
                limit =
                    value.parse().ok().filter(|limit| (1..=MAX_LIMIT).contains(limit)).ok_or_else(
                        || {
                            ApiError::InvalidQuery(format!(
                                "limit: {value:?} is not a number from 1 to {MAX_LIMIT}"
                            ))
                        },
                    )?;
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
        assert_eq!(parse_query(None).expect("valid"), (0, 100));
        assert_eq!(parse_query(Some("after=7&limit=1000&x=y")).expect("valid"), (7, 1000));
        for bad in ["after=-1", "after=x", "limit=0", "limit=1001", "limit=", "after="] {
            assert!(parse_query(Some(bad)).is_err(), "{bad:?} must be refused");
        }
    }
}
