//! Where a request carries its token, and who the request is as far as authorization goes.
//!
//! What a token allows is `broker-auth`'s business; this module only finds the token: in the
//! `Authorization: Bearer` header, the configured cookie (for `EventSource`, which cannot set
//! headers), or the `access_token` query parameter. Errors follow RFC 6750: `401` with
//! `WWW-Authenticate` for a missing or invalid token, `403` for a valid token without the scope
//! (see `error.rs`).

use broker_auth::{Access, Verifier};
use headers::{Cookie, HeaderMapExt};
use http::{HeaderMap, Uri, header};

use crate::error::ApiError;

/// The query parameter a token may be sent in.
const QUERY_PARAMETER: &str = "access_token";

/// Finds and verifies the request's token, if authorization is configured.
pub(crate) fn access(
    verifier: Option<&Verifier>,
    headers: &HeaderMap,
    uri: &Uri,
) -> Result<Access, ApiError> {
    let Some(verifier) = verifier else { return Ok(Access::Open) };
    let token = find_token(verifier.cookie_name(), headers, uri)?;
    Ok(verifier.access(token.as_deref())?)
}

/// The token in the `Authorization` header, the cookie or the query, in that order.
fn find_token(
    cookie: Option<&str>,
    headers: &HeaderMap,
    uri: &Uri,
) -> Result<Option<String>, ApiError> {
    if let Some(value) = headers.get(header::AUTHORIZATION) {
        let value = value.to_str().unwrap_or_default();
        let token = value
            .split_once(' ')
            .filter(|(scheme, _)| scheme.eq_ignore_ascii_case("bearer"))
            .map(|(_, token)| token.trim())
            .filter(|token| !token.is_empty());
        return match token {
            Some(token) => Ok(Some(token.to_owned())),
            None => Err(ApiError::InvalidToken(
                "the Authorization header must be `Bearer <token>`".into(),
            )),
        };
    }
    let cookie = cookie.and_then(|name| {
        headers.typed_get::<Cookie>().and_then(|cookies| cookies.get(name).map(str::to_owned))
    });
    if cookie.is_some() {
        return Ok(cookie);
    }
    let query = uri.query().unwrap_or_default().as_bytes();
    Ok(form_urlencoded::parse(query)
        .find(|(key, _)| key == QUERY_PARAMETER)
        .map(|(_, token)| token.into_owned()))
}
