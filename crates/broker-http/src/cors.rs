//! Cross-origin resource sharing: the headers that let pages on other origins use the broker.

use headers::{AccessControlAllowHeaders, AccessControlAllowMethods, AccessControlMaxAge};
use headers::{HeaderMapExt, Vary};
use http::{HeaderMap, HeaderName, HeaderValue, Method, Response, StatusCode, header};
use std::time::Duration;

use crate::AllowOrigin;
use crate::body::{Body, empty_response};
use crate::insert::IDEMPOTENCY_KEY;

/// Headers a page may send: the body type of inserts, bearer tokens, the resume position of
/// event streams, and the key that makes an insert safe to retry.
const ALLOWED_HEADERS: [HeaderName; 4] = [
    header::CONTENT_TYPE,
    header::AUTHORIZATION,
    HeaderName::from_static("last-event-id"),
    IDEMPOTENCY_KEY,
];

impl AllowOrigin {
    /// Adds the CORS headers for a request from `origin` to `response`.
    ///
    /// A listed origin is echoed back with `Vary: Origin` (the answer depends on it); an origin
    /// that is not listed gets no `Access-Control-Allow-Origin`, so the browser keeps the response
    /// from the page.
    ///
    /// With `credentials` (tokens in cookies), an allowed origin also gets
    /// `Access-Control-Allow-Credentials: true`. Browsers refuse credentials with `*`, so the
    /// server's configuration refuses that combination at start-up.
    pub(crate) fn apply(
        &self,
        origin: Option<&HeaderValue>,
        credentials: bool,
        response: &mut Response<Body>,
    ) {
        let headers = response.headers_mut();
        match self {
            AllowOrigin::Any => {
                headers.insert(header::ACCESS_CONTROL_ALLOW_ORIGIN, HeaderValue::from_static("*"));
            }
            AllowOrigin::List(allowed) => {
                headers.typed_insert(Vary::from_iter([header::ORIGIN]));
                if let Some(origin) = origin.filter(|origin| allowed.contains(origin)) {
                    headers.insert(header::ACCESS_CONTROL_ALLOW_ORIGIN, origin.clone());
                    if credentials {
                        headers.insert(
                            header::ACCESS_CONTROL_ALLOW_CREDENTIALS,
                            HeaderValue::from_static("true"),
                        );
                    }
                }
            }
        }
        headers.insert(
            header::ACCESS_CONTROL_EXPOSE_HEADERS,
            HeaderValue::from_static("link, broker-start"),
        );
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
