//! Where a request carries its token, and who the request is as far as authorization goes.
//!
//! What a token allows is `broker-auth`'s business; this module only finds the token: in the
//! `Authorization: Bearer` header, the configured cookie (for `EventSource`, which cannot set
//! headers), or the `access_token` query parameter. Errors follow RFC 6750: `401` with
//! `WWW-Authenticate` for a missing or invalid token, `403` for a valid token without the scope
//! (see `error.rs`).

use broker_auth::{Access, Verifier};
use broker_core::{SubscribeOptions, validate_event_name};
use headers::{Cookie, HeaderMapExt};
use http::{HeaderMap, Uri, header};

use crate::error::ApiError;
use crate::head;

/// The query parameter a token may be sent in.
const QUERY_PARAMETER: &str = "access_token";

/// Adds `event`, named by `?event=`, to what `options` follow, once it is a valid name of at most
/// `max_len` bytes that `access` may subscribe to.
pub(crate) fn follow(
    access: &Access,
    options: SubscribeOptions,
    event: &str,
    max_len: usize,
) -> Result<SubscribeOptions, ApiError> {
    validate_event_name(event, max_len)
        .map_err(|error| ApiError::InvalidQuery(format!("event: {error}")))?;
    access.may_subscribe(event)?;
    Ok(options.events([event]))
}

/// Limits `options` to what `access` may read, for an event stream or a snapshot: a client
/// with no token reads only the public events, and with none public it needs a token.
pub(crate) fn restrict(
    access: &Access,
    options: SubscribeOptions,
) -> Result<SubscribeOptions, ApiError> {
    match access {
        Access::Open => Ok(options),
        Access::Anonymous(public) if public.is_empty() => Err(ApiError::MissingToken),
        access => {
            let access = access.clone();
            Ok(options.allow(move |event| access.may_receive(event)))
        }
    }
}

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

/// [`access`] for a request whose `Authorization` header is `authorization`, when that header
/// settles it: authorization is off, or the header is there (a token in it is the only one read).
/// `None` when the token may be in a cookie or the query, which only [`access`] reads.
pub(crate) fn access_by_header(
    verifier: Option<&Verifier>,
    authorization: Option<&[u8]>,
) -> Option<Result<Access, ApiError>> {
    let Some(verifier) = verifier else { return Some(Ok(Access::Open)) };
    let token = authorization.map(bearer)?;
    Some(token.and_then(|token| Ok(verifier.access(Some(token))?)))
}

/// The token of an `Authorization: Bearer <token>` header's value.
fn bearer(value: &[u8]) -> Result<&str, ApiError> {
    let value = head::visible_ascii(value).unwrap_or_default();
    let token = value
        .split_once(' ')
        .filter(|(scheme, _)| scheme.eq_ignore_ascii_case("bearer"))
        .map(|(_, token)| token.trim())
        .filter(|token| !token.is_empty());
    token.ok_or_else(|| {
        ApiError::InvalidToken("the Authorization header must be `Bearer <token>`".into())
    })
}

/// The token in the `Authorization` header, the cookie or the query, in that order.
fn find_token(
    cookie: Option<&str>,
    headers: &HeaderMap,
    uri: &Uri,
) -> Result<Option<String>, ApiError> {
    if let Some(value) = headers.get(header::AUTHORIZATION) {
        return bearer(value.as_bytes()).map(|token| Some(token.to_owned()));
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

#[cfg(test)]
mod tests {
    use broker_auth::{Access, Claims, Scopes, SigningKey, Verifier};
    use http::{HeaderMap, HeaderValue, Uri};

    use super::access;

    const SECRET: &[u8] = b"a transport test secret of 32 bytes or more";

    /// A token signed with `secret`, whose subject says where the test put it.
    fn token(secret: &[u8], sub: &str) -> String {
        let claims = Claims {
            sub: Some(sub.into()),
            exp: 4_102_444_800, // 2100-01-01
            nbf: None,
            iat: None,
            aud: None,
            iss: None,
            broker: Scopes::default(),
        };
        SigningKey::hs256(secret).sign(&claims).expect("sign")
    }

    /// Checks who a request with `headers` to `uri` is: the subject of its token, `anonymous`,
    /// or the code of the error it is answered with.
    fn check(verifier: &Verifier, headers: &[(&'static str, &str)], uri: &str, expected: &str) {
        let mut map = HeaderMap::new();
        for &(name, value) in headers {
            map.append(name, HeaderValue::from_str(value).expect("a header value"));
        }
        let uri: Uri = uri.parse().expect("a URI");
        let who = match access(Some(verifier), &map, &uri) {
            Ok(Access::Token(claims)) => claims.sub.unwrap_or_default(),
            Ok(Access::Anonymous(_)) => "anonymous".into(),
            Ok(Access::Open) => "open".into(),
            Err(error) => error.code().into(),
        };
        assert_eq!(who, expected, "{headers:?} {uri}");
    }

    #[test]
    fn tokens_are_found_in_the_header_then_the_cookie_then_the_query() {
        let verifier = Verifier::hs256(SECRET).cookie("t");
        let header = format!("Bearer {}", token(SECRET, "header"));
        let cookie = format!("other=1; t={}", token(SECRET, "cookie"));
        let query = format!("/events?access_token={}", token(SECRET, "query"));
        let (header, cookie) = (("authorization", &*header), ("cookie", &*cookie));
        check(&verifier, &[header, cookie], &query, "header");
        check(&verifier, &[cookie], &query, "cookie");
        check(&verifier, &[], &query, "query");
        check(&verifier, &[], "/events", "anonymous");
        // Without a cookie name, cookies are not read.
        check(&Verifier::hs256(SECRET), &[cookie], "/events", "anonymous");
        for bad in ["Basic x", "Bearer ", "Bearer"] {
            check(&verifier, &[("authorization", bad)], &query, "invalid_token");
        }
        let forged = format!("Bearer {}", token(b"another secret", "forged"));
        check(&verifier, &[("authorization", &forged)], "/events", "invalid_token");
    }
}
