//! HTTP/1.1 heads as bytes: the one limit on request heads, reading a request head the transport
//! parses itself, and writing the response heads that it writes itself.
//!
//! hyper parses and writes the heads of every other request; both paths take their limits from
//! here, so that a request is refused the same way whichever path reads it.

use std::time::{Duration, SystemTime};

use bytes::{Bytes, BytesMut};
use headers::HeaderMapExt;
use http::{HeaderName, HeaderValue, Request, Response, Version};
use http_body_util::Empty;
use tokio::io::{AsyncRead, AsyncReadExt};

/// The largest request head (request line and headers) accepted, in bytes; a larger one is
/// answered `431`. The broker's own requests are small, and hyper's default (about 400 KiB)
/// would let each connection hold that much.
pub(crate) const MAX_REQUEST_HEAD: usize = 64 * 1024;
/// The most header lines a request may have.
pub(crate) const MAX_HEADERS: usize = 100;

/// A request head read by the transport itself, with no body.
pub(crate) type Head = Request<Empty<Bytes>>;

/// What the bytes read so far hold.
pub(crate) enum Parsed {
    /// A whole head, which took the first `len` bytes.
    Complete { head: Box<Head>, len: usize },
    /// The start of a head: more bytes are needed.
    Partial,
    /// Not a well-formed HTTP/1.x request head.
    Invalid,
}

/// Parses the request head at the start of `bytes`.
pub(crate) fn parse(bytes: &[u8]) -> Parsed {
    let mut headers = [httparse::EMPTY_HEADER; MAX_HEADERS];
    let mut parsed = httparse::Request::new(&mut headers);
    let len = match parsed.parse(bytes) {
        Ok(httparse::Status::Complete(len)) => len,
        Ok(httparse::Status::Partial) => return Parsed::Partial,
        Err(_) => return Parsed::Invalid,
    };
    let mut head = Request::new(Empty::new());
    let (Some(method), Some(path)) = (parsed.method, parsed.path) else { return Parsed::Invalid };
    let (Ok(method), Ok(uri)) = (method.parse(), path.parse()) else { return Parsed::Invalid };
    *head.method_mut() = method;
    *head.uri_mut() = uri;
    *head.version_mut() =
        if parsed.version == Some(1) { Version::HTTP_11 } else { Version::HTTP_10 };
    let map = head.headers_mut();
    for header in parsed.headers.iter() {
        let (Ok(name), Ok(value)) =
            (HeaderName::from_bytes(header.name.as_bytes()), HeaderValue::from_bytes(header.value))
        else {
            return Parsed::Invalid;
        };
        map.append(name, value);
    }
    Parsed::Complete { head: Box::new(head), len }
}

/// Reads from `io` into `buffer` until it holds a whole head, for at most `within`.
///
/// Returns `None` when the time runs out, the peer closes, the bytes are not a request, or the
/// head would exceed [`MAX_REQUEST_HEAD`]: the caller then answers without one.
pub(crate) async fn read(
    io: &mut (impl AsyncRead + Unpin),
    buffer: &mut BytesMut,
    within: Duration,
) -> Option<Box<Head>> {
    let reading = async {
        loop {
            match parse(buffer) {
                Parsed::Complete { head, .. } => return Some(head),
                Parsed::Invalid => return None,
                Parsed::Partial if buffer.len() >= MAX_REQUEST_HEAD => return None,
                Parsed::Partial => {}
            }
            buffer.reserve(1024);
            match io.read_buf(buffer).await {
                Ok(0) | Err(_) => return None,
                Ok(_) => {}
            }
        }
    };
    tokio::time::timeout(within, reading).await.ok().flatten()
}

/// The status line and headers of `response`, with `Date` added, as HTTP/1.1 bytes.
pub(crate) fn encode<B>(response: &mut Response<B>) -> Bytes {
    response.headers_mut().typed_insert(headers::Date::from(SystemTime::now()));
    let mut head = Vec::with_capacity(512);
    let status = response.status();
    head.extend_from_slice(b"HTTP/1.1 ");
    head.extend_from_slice(status.as_str().as_bytes());
    head.push(b' ');
    head.extend_from_slice(status.canonical_reason().unwrap_or("Unknown").as_bytes());
    head.extend_from_slice(b"\r\n");
    for (name, value) in response.headers() {
        head.extend_from_slice(name.as_str().as_bytes());
        head.extend_from_slice(b": ");
        head.extend_from_slice(value.as_bytes());
        head.extend_from_slice(b"\r\n");
    }
    head.extend_from_slice(b"\r\n");
    Bytes::from(head)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn heads_parse_whole_partial_or_not_at_all() {
        let bytes = b"GET /events?x=1 HTTP/1.1\r\nHost: a\r\nOrigin: http://o\r\n\r\nrest";
        let Parsed::Complete { head, len } = parse(bytes) else { panic!("a whole head") };
        assert_eq!(len, bytes.len() - 4);
        assert_eq!(head.uri().path(), "/events");
        assert_eq!(head.version(), Version::HTTP_11);
        assert_eq!(head.headers()["origin"], "http://o");
        assert!(matches!(parse(b"GET /events HTTP/1.1\r\nHost"), Parsed::Partial));
        assert!(matches!(parse(b"\x00\x01 nonsense\r\n\r\n"), Parsed::Invalid));
        let Parsed::Complete { head, .. } = parse(b"GET / HTTP/1.0\r\n\r\n") else { panic!() };
        assert_eq!(head.version(), Version::HTTP_10);
    }

    #[test]
    fn response_heads_carry_status_headers_and_date() {
        let mut response = Response::new(());
        *response.status_mut() = http::StatusCode::SERVICE_UNAVAILABLE;
        response.headers_mut().insert("retry-after", HeaderValue::from_static("1"));
        let text = String::from_utf8(encode(&mut response).to_vec()).expect("ASCII");
        assert!(text.starts_with("HTTP/1.1 503 Service Unavailable\r\n"), "{text}");
        assert!(text.contains("\r\nretry-after: 1\r\n"), "{text}");
        assert!(text.contains("\r\ndate: "), "{text}");
        assert!(text.ends_with("\r\n\r\n"), "{text}");
    }
}
