//! HTTP/1.1 heads as bytes: the one limit on request heads, reading a request head the transport
//! parses itself, and writing the response heads that it writes itself.
//!
//! hyper parses and writes the heads of every other request; every path takes its limits from
//! here, so that a request is refused the same way whichever path reads it.

use std::borrow::Borrow;
use std::cell::RefCell;
use std::io;
use std::mem::MaybeUninit;
use std::ops::Range;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use bytes::{BufMut, Bytes, BytesMut};
use headers::Header;
use http::header::DATE;
use http::{HeaderMap, HeaderName, HeaderValue, Request, Response, StatusCode, Uri, Version};
use http_body_util::Empty;
use tokio::io::{AsyncRead, AsyncReadExt};

/// The largest request head (request line and headers) accepted, in bytes; a larger one is
/// answered `431`. The broker's own requests are small, and hyper's default (about 400 KiB)
/// would let each connection hold that much.
pub(crate) const MAX_REQUEST_HEAD: usize = 64 * 1024;
/// The most header lines a request may have.
pub(crate) const MAX_HEADERS: usize = 100;

/// The header that makes an insert safe to retry, which `http` does not name.
pub(crate) const IDEMPOTENCY_KEY: HeaderName = HeaderName::from_static("idempotency-key");

/// A request head read by the transport itself, with no body.
pub(crate) type Head = Request<Empty<Bytes>>;

/// What the bytes read so far hold.
pub(crate) enum Parsed<T = Box<Head>> {
    /// A whole head, read as a `T`, which took the first `len` bytes.
    Complete { head: T, len: usize },
    /// The start of a head: more bytes are needed.
    Partial,
    /// Not a well-formed HTTP/1.x request head, or not one `read` accepts.
    Invalid,
}

/// Whether `bytes` may be the start of a request that begins with `prefix`: they start with
/// it, or they are a start of it.
pub(crate) fn may_start_with(bytes: &[u8], prefix: &[u8]) -> bool {
    let len = bytes.len().min(prefix.len());
    bytes[..len] == prefix[..len]
}

/// Parses the request head at the start of `bytes`.
///
/// The head is a copy: it keeps no more than its own bytes, and none of the connection's buffer.
pub(crate) fn parse(bytes: &[u8]) -> Parsed {
    scan(bytes, |parsed, len| {
        // One copy of the head, which the URI and every header value share: one allocation, not
        // one per value.
        build(parsed, bytes, Bytes::copy_from_slice(&bytes[..len])).map(Box::new)
    })
}

/// Parses the request head at the start of `bytes` with httparse, and reads a whole one with
/// `read`, given its length; a head `read` refuses is [`Parsed::Invalid`].
pub(crate) fn scan<T>(
    bytes: &[u8],
    read: impl FnOnce(&httparse::Request<'_, '_>, usize) -> Option<T>,
) -> Parsed<T> {
    // Left uninitialized: httparse fills what it reads, and a head has a few lines of the
    // hundred allowed.
    let mut headers = [const { MaybeUninit::uninit() }; MAX_HEADERS];
    let mut parsed = httparse::Request::new(&mut []);
    match parsed.parse_with_uninit_headers(bytes, &mut headers) {
        Ok(httparse::Status::Complete(len)) => {
            read(&parsed, len).map_or(Parsed::Invalid, |head| Parsed::Complete { head, len })
        }
        Ok(httparse::Status::Partial) => Parsed::Partial,
        Err(_) => Parsed::Invalid,
    }
}

/// The head that is the whole of `bytes`, whose URI and header values share `bytes` instead of
/// copying them; `None` if it is not a well-formed head.
pub(crate) fn parse_whole(bytes: &Bytes) -> Option<Head> {
    match scan(bytes, |parsed, len| {
        build(parsed, bytes, bytes.clone()).filter(|_| len == bytes.len())
    }) {
        Parsed::Complete { head, .. } => Some(head),
        Parsed::Partial | Parsed::Invalid => None,
    }
}

/// The head httparse read from `bytes`, with its URI and header values taken from `shared`, which
/// holds the same bytes as the start of `bytes`.
fn build(parsed: &httparse::Request<'_, '_>, bytes: &[u8], shared: Bytes) -> Option<Head> {
    let part = |slice: &[u8]| shared.slice(place(bytes, slice));
    let mut head = Request::new(Empty::new());
    *head.method_mut() = parsed.method?.parse().ok()?;
    *head.uri_mut() = Uri::from_maybe_shared(part(parsed.path?.as_bytes())).ok()?;
    *head.version_mut() =
        if parsed.version == Some(1) { Version::HTTP_11 } else { Version::HTTP_10 };
    let map = head.headers_mut();
    map.reserve(parsed.headers.len());
    for header in parsed.headers.iter() {
        let name = HeaderName::from_bytes(header.name.as_bytes()).ok()?;
        map.append(name, HeaderValue::from_maybe_shared(part(header.value)).ok()?);
    }
    Some(head)
}

/// Where `slice`, a part of a head that httparse handed out, lies in `bytes`, the head it read.
pub(crate) fn place(bytes: &[u8], slice: &[u8]) -> Range<usize> {
    let start = slice.as_ptr().addr() - bytes.as_ptr().addr();
    debug_assert!(start + slice.len() <= bytes.len(), "a slice of the head");
    start..start + slice.len()
}

/// A request's header lines, as hyper read them (a `HeaderMap`) or as the transport did (with
/// httparse): what a route reads of them, it reads through this, whichever path serves it.
pub(crate) trait Headers {
    /// The values of every line named `name`, in order.
    fn lines<'a>(&'a self, name: &'a HeaderName) -> impl Iterator<Item = &'a [u8]>;

    /// The value of the first line named `name`.
    fn line<'a>(&'a self, name: &'a HeaderName) -> Option<&'a [u8]> {
        self.lines(name).next()
    }
}

impl Headers for HeaderMap {
    fn lines<'a>(&'a self, name: &'a HeaderName) -> impl Iterator<Item = &'a [u8]> {
        self.get_all(name).into_iter().map(HeaderValue::as_bytes)
    }
}

impl Headers for [httparse::Header<'_>] {
    fn lines<'a>(&'a self, name: &'a HeaderName) -> impl Iterator<Item = &'a [u8]> {
        // The name's text is looked up once, not once per line.
        let name = name.as_str();
        let named = move |header: &&httparse::Header<'_>| header.name.eq_ignore_ascii_case(name);
        self.iter().filter(named).map(|header| header.value)
    }
}

/// A header value as text, when it is visible ASCII (and tabs), as `HeaderValue::to_str` reads
/// one.
pub(crate) fn visible_ascii(value: &[u8]) -> Option<&str> {
    let visible = value.iter().all(|&byte| byte == b'\t' || (0x20..0x7f).contains(&byte));
    std::str::from_utf8(value).ok().filter(|_| visible)
}

/// The least room a read of a head is given: enough for a typical insert, head and body, so
/// that it takes one read.
const READ_ROOM: usize = 512;

/// Reads more of a request head from `io` into `buffer`, which must hold less than
/// [`MAX_REQUEST_HEAD`] bytes: it grows as the head does, but never past that limit.
///
/// Each read is given at least [`READ_ROOM`] bytes of room. Between requests the buffer is
/// empty, and the room comes from its own allocation again (the requests read before have
/// moved its start forward); otherwise a request that came when a few bytes were left would
/// take one read for those bytes and another for the rest.
///
/// A head that does not fit in the limit is refused. When the bytes are handed to hyper, a
/// buffer held at the limit is also what makes hyper refuse it: given more at once, hyper takes
/// a larger head in.
pub(crate) async fn read_more(
    io: &mut (impl AsyncRead + Unpin),
    buffer: &mut BytesMut,
) -> io::Result<usize> {
    if buffer.capacity() - buffer.len() < READ_ROOM {
        buffer.reserve(buffer.len().max(READ_ROOM));
    }
    let room = MAX_REQUEST_HEAD.saturating_sub(buffer.len());
    debug_assert!(room > 0, "a buffer at the limit holds a head that is refused");
    io.read_buf(&mut (&mut *buffer).limit(room)).await
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
pub(crate) fn encode<B>(response: &Response<B>) -> Bytes {
    let mut head = Vec::with_capacity(512);
    encode_into(response.status(), response.headers(), None, false, &mut head);
    Bytes::from(head)
}

/// Appends to `out` the status line and `headers` as HTTP/1.1, then `Date` (unless `headers` has
/// one), `Content-Length` when given, `Connection: close` when `close`, and the empty line.
pub(crate) fn encode_into<N: Borrow<HeaderName>, V: Borrow<HeaderValue>>(
    status: StatusCode,
    headers: impl IntoIterator<Item = (N, V)>,
    content_length: Option<usize>,
    close: bool,
    out: &mut Vec<u8>,
) {
    let dated = encode_start(status, headers, out);
    encode_end(dated, content_length, close, out);
}

/// Appends to `out` the status line and `headers` as HTTP/1.1: the part of a head that
/// [`encode_end`] finishes. Returns whether `headers` has a `Date`.
pub(crate) fn encode_start<N: Borrow<HeaderName>, V: Borrow<HeaderValue>>(
    status: StatusCode,
    headers: impl IntoIterator<Item = (N, V)>,
    out: &mut Vec<u8>,
) -> bool {
    out.extend_from_slice(b"HTTP/1.1 ");
    out.extend_from_slice(status.as_str().as_bytes());
    out.push(b' ');
    out.extend_from_slice(status.canonical_reason().unwrap_or("Unknown").as_bytes());
    out.extend_from_slice(b"\r\n");
    let mut dated = false;
    for (name, value) in headers {
        let (name, value) = (name.borrow(), value.borrow());
        dated |= name == DATE;
        out.extend_from_slice(name.as_str().as_bytes());
        out.extend_from_slice(b": ");
        out.extend_from_slice(value.as_bytes());
        out.extend_from_slice(b"\r\n");
    }
    dated
}

/// Appends to `out` the end of a head that [`encode_start`] began: `Date` (unless `dated`),
/// `Content-Length` when given, `Connection: close` when `close`, and the empty line.
pub(crate) fn encode_end(
    dated: bool,
    content_length: Option<usize>,
    close: bool,
    out: &mut Vec<u8>,
) {
    if !dated {
        out.extend_from_slice(b"date: ");
        with_date(|date| out.extend_from_slice(date));
        out.extend_from_slice(b"\r\n");
    }
    if let Some(len) = content_length {
        out.extend_from_slice(b"content-length: ");
        out.extend_from_slice(itoa::Buffer::new().format(len).as_bytes());
        out.extend_from_slice(b"\r\n");
    }
    if close {
        out.extend_from_slice(b"connection: close\r\n");
    }
    out.extend_from_slice(b"\r\n");
}

/// Calls `write` with the `Date` value of this second. An HTTP date has a resolution of one
/// second, so each thread formats it once a second, not once a response.
fn with_date(write: impl FnOnce(&[u8])) {
    thread_local! {
        /// The second since the epoch, and its date.
        static DATE_CACHE: RefCell<(u64, HeaderValue)> =
            const { RefCell::new((0, HeaderValue::from_static(""))) };
    }
    let now = SystemTime::now();
    let second = now.duration_since(UNIX_EPOCH).map_or(0, |since| since.as_secs());
    DATE_CACHE.with_borrow_mut(|(cached, date)| {
        if *cached != second || date.is_empty() {
            let mut values = Vec::with_capacity(1);
            headers::Date::from(now).encode(&mut values);
            if let Some(value) = values.pop() {
                (*cached, *date) = (second, value);
            }
        }
        write(date.as_bytes());
    });
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

    /// A publisher's requests, one after another on one connection, each take one read: the
    /// room the requests read before took is given back to the next one.
    #[tokio::test]
    async fn each_request_of_a_connection_is_read_whole_in_one_read() {
        use bytes::Buf;
        use tokio::io::AsyncWriteExt;
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.expect("bind");
        let mut client = tokio::net::TcpStream::connect(listener.local_addr().expect("address"))
            .await
            .expect("connect");
        let (mut server, _) = listener.accept().await.expect("accept");
        let body = format!("{{\"event\":\"e\",\"data\":\"{}\"}}", "x".repeat(200));
        let request = format!(
            "POST /insert HTTP/1.1\r\nHost: a\r\nContent-Length: {}\r\n\r\n{body}",
            body.len()
        );
        assert!(request.len() > 256 && request.len() < READ_ROOM, "{}", request.len());
        let mut buffer = BytesMut::with_capacity(READ_ROOM);
        for _ in 0..10 {
            client.write_all(request.as_bytes()).await.expect("send");
            let read = read_more(&mut server, &mut buffer).await.expect("read");
            assert_eq!(read, request.len(), "the request came in one piece and was read in one");
            buffer.advance(read);
        }
    }

    #[test]
    fn response_heads_carry_status_headers_and_date() {
        let mut response = Response::new(());
        *response.status_mut() = http::StatusCode::SERVICE_UNAVAILABLE;
        response.headers_mut().insert("retry-after", HeaderValue::from_static("1"));
        let text = String::from_utf8(encode(&response).to_vec()).expect("ASCII");
        assert!(text.starts_with("HTTP/1.1 503 Service Unavailable\r\n"), "{text}");
        assert!(text.contains("\r\nretry-after: 1\r\n"), "{text}");
        assert!(text.contains("\r\ndate: "), "{text}");
        assert!(text.ends_with("\r\n\r\n"), "{text}");

        // Framing is written after the headers, and a `Date` of the response's own is kept.
        response
            .headers_mut()
            .insert(DATE, HeaderValue::from_static("Sun, 06 Nov 1994 08:49:37 GMT"));
        let mut out = b"before".to_vec();
        encode_into(response.status(), response.headers(), Some(42), true, &mut out);
        let text = String::from_utf8(out).expect("ASCII");
        assert!(text.starts_with("beforeHTTP/1.1 503 Service Unavailable\r\n"), "{text}");
        assert!(text.ends_with("\r\ncontent-length: 42\r\nconnection: close\r\n\r\n"), "{text}");
        assert_eq!(text.matches("date: ").count(), 1, "{text}");
        assert!(text.contains("\r\ndate: Sun, 06 Nov 1994 08:49:37 GMT\r\n"), "{text}");
    }
}
