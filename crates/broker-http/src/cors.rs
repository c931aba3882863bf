//! Cross-origin resource sharing: the headers that let pages on other origins use the broker.

use headers::HeaderMapExt;
use headers::{AccessControlAllowHeaders, AccessControlAllowMethods, AccessControlMaxAge};
use http::{HeaderMap, HeaderName, HeaderValue, Method, Response, StatusCode, header};
use std::time::Duration;

use crate::AllowOrigin;
use crate::body::{Body, empty_response};
use crate::head::IDEMPOTENCY_KEY;

/// Headers a page may send: the body type of inserts, bearer tokens, the resume position of
/// event streams, and the key that makes an insert safe to retry.
const ALLOWED_HEADERS: [HeaderName; 4] = [
    header::CONTENT_TYPE,
    header::AUTHORIZATION,
    HeaderName::from_static("last-event-id"),
    IDEMPOTENCY_KEY,
];

impl AllowOrigin {
    /// The CORS header lines of the answer to a request from `origin`.
    ///
    /// A listed origin is echoed back with `Vary: Origin` (the answer depends on it); an origin
    /// that is not listed gets no `Access-Control-Allow-Origin`, so the browser keeps the response
    /// from the page.
    ///
    /// With `credentials` (tokens in cookies), an allowed origin also gets
    /// `Access-Control-Allow-Credentials: true`. Browsers refuse credentials with `*`, so the
    /// server's configuration refuses that combination at start-up.
    pub(crate) fn lines(
        &self,
        origin: Option<&HeaderValue>,
        credentials: bool,
    ) -> impl Iterator<Item = (HeaderName, HeaderValue)> {
        let mut lines = [None, None, None];
        match self {
            AllowOrigin::Any => {
                lines[0] =
                    Some((header::ACCESS_CONTROL_ALLOW_ORIGIN, HeaderValue::from_static("*")));
            }
            AllowOrigin::List(allowed) => {
                lines[0] = Some((header::VARY, HeaderValue::from_static("origin")));
                if let Some(origin) = origin.filter(|origin| allowed.contains(origin)) {
                    lines[1] = Some((header::ACCESS_CONTROL_ALLOW_ORIGIN, origin.clone()));
                    if credentials {
                        let allow = HeaderValue::from_static("true");
                        lines[2] = Some((header::ACCESS_CONTROL_ALLOW_CREDENTIALS, allow));
                    }
                }
            }
        }
        let expose =
            (header::ACCESS_CONTROL_EXPOSE_HEADERS, HeaderValue::from_static("link, broker-start"));
        lines.into_iter().flatten().chain([expose])
    }
}

/// The answer to an `OPTIONS` request on a route that allows `allow`.
pub(crate) fn preflight(request: &HeaderMap, allow: &'static [Method]) -> Response<Body> {
    let mut response = empty_response(StatusCode::NO_CONTENT);
    let headers = response.headers_mut();
    headers.typed_insert(allow.iter().cloned().collect::<headers::Allow>());
    if request.contains_key(header::ACCESS_CONTROL_REQUEST_METHOD) {
        headers.typed_insert(allow.iter().cloned().collect::<AccessControlAllowMethods>());
        headers.typed_insert(ALLOWED_HEADERS.into_iter().collect::<AccessControlAllowHeaders>());
        headers.typed_insert(AccessControlMaxAge::from(Duration::from_secs(24 * 60 * 60)));
    }
    response
}
