//! The response body type, and constructors for the common responses.

use std::convert::Infallible;

use bytes::Bytes;
use http::{HeaderValue, Response, StatusCode, header};
use http_body_util::{BodyExt, Empty, Full, combinators::UnsyncBoxBody};

/// The body of every response: a full buffer, or an endless event stream.
pub type Body = UnsyncBoxBody<Bytes, Infallible>;

/// Marks a response whose body is an endless event stream, in its extensions: the connection
/// writes such a body chunk by chunk as it comes, and every other body whole.
#[derive(Clone, Copy, Debug)]
pub(crate) struct EventStream;

/// Whether `response` carries an event stream.
pub(crate) fn is_event_stream<B>(response: &Response<B>) -> bool {
    response.extensions().get::<EventStream>().is_some()
}

/// A response with a JSON body.
pub(crate) fn json_response(status: StatusCode, json: impl Into<Bytes>) -> Response<Body> {
    let mut response = Response::new(Full::new(json.into()).boxed_unsync());
    *response.status_mut() = status;
    response
        .headers_mut()
        .insert(header::CONTENT_TYPE, HeaderValue::from_static("application/json"));
    response
}

/// A `200` response with a JSON `body` that is sent as it is produced.
pub(crate) fn json_stream_response(body: Body) -> Response<Body> {
    let mut response = Response::new(body);
    *response.status_mut() = StatusCode::OK;
    response
        .headers_mut()
        .insert(header::CONTENT_TYPE, HeaderValue::from_static("application/json"));
    response
}

/// A response without a body.
pub(crate) fn empty_response(status: StatusCode) -> Response<Body> {
    let mut response = Response::new(Empty::new().boxed_unsync());
    *response.status_mut() = status;
    response
}
