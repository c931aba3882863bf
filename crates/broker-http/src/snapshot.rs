//! `GET /snapshot`: the latest version of every event, or the state at a past point, as JSON.

use std::sync::Arc;
use std::time::SystemTime;

use broker_auth::Access;
use broker_core::{At, Entry, SubscribeOptions, Version};
use http::Response;

use crate::App;
use crate::auth::{follow, restrict};
use crate::body::{Body, json_stream_response};
use crate::error::ApiError;
use crate::json::versions_body;

pub(crate) async fn snapshot(
    app: &App,
    access: &Access,
    query: Option<&str>,
) -> Result<Response<Body>, ApiError> {
    let mut options = SubscribeOptions::new();
    let mut at = None;
    for (key, value) in form_urlencoded::parse(query.unwrap_or_default().as_bytes()) {
        match &*key {
            "event" => {
                options =
                    follow(access, options, &value, app.broker().config().max_event_name_len)?;
            }
            "at" => at = Some(parse_at(&value)?),
            _ => {}
        }
    }
    options = restrict(access, options)?;
    let body = match at {
        None => {
            versions_body(app.broker().snapshot(&options), |entry: &Arc<Entry>| entry.version())
        }
        Some(at) => {
            let versions = app.broker().snapshot_at(at, &options).await?;
            versions_body(versions, |version: &Version| version)
        }
    };
    Ok(json_stream_response(body))
}

/// `at`: a version id, or an RFC 3339 time such as `2026-11-30T10:03:00Z`.
fn parse_at(value: &str) -> Result<At, ApiError> {
    if !value.is_empty() && value.bytes().all(|byte| byte.is_ascii_digit()) {
        return value.parse().map(At::Id).map_err(|_| {
            ApiError::InvalidQuery(format!("at: {value:?} is larger than any version id"))
        });
    }
    let time = time::OffsetDateTime::parse(value, &time::format_description::well_known::Rfc3339)
        .map_err(|error| {
        ApiError::InvalidQuery(format!(
            "at: {value:?} is neither a version id nor an RFC 3339 time such as \
                 2026-11-30T10:03:00Z ({error})"
        ))
    })?;
    Ok(At::Time(SystemTime::from(time)))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn at_is_an_id_or_an_rfc_3339_time() {
        assert_eq!(parse_at("42").expect("an id"), At::Id(42));
        let time = parse_at("1970-01-01T00:00:10+00:00").expect("a time");
        assert_eq!(time, At::Time(SystemTime::UNIX_EPOCH + std::time::Duration::from_secs(10)));
        let offset = parse_at("1970-01-01T02:00:10.5+02:00").expect("a time with an offset");
        assert_eq!(
            offset,
            At::Time(SystemTime::UNIX_EPOCH + std::time::Duration::from_millis(10_500))
        );
        for bad in ["", "-1", "x", "99999999999999999999999", "2026-11-30", "10:03"] {
            assert!(parse_at(bad).is_err(), "{bad:?} must be refused");
        }
    }
}
