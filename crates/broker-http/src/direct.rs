//! Event streams served straight on the socket, without hyper.
//!
//! An event stream is most of what a broker's connections are, and it is write-only and endless:
//! once its response head is out, all a connection does is write frames. hyper keeps two 8 KiB
//! buffers per connection for that (one to read, one to write), more than everything else a
//! subscriber costs together. So the accept loop looks at the first bytes of every connection:
//! one that opens with `GET /events` has its request head read here, answered by the same
//! [`handle`] as every other request (routing, authorization, CORS and errors are not
//! duplicated), and its response is written here: the head once, then each frame of the body as
//! one chunk, with no buffer of ours in between. Every other connection, and an event stream
//! this module does not take (HTTP/1.0, a request with a body), goes to hyper with the bytes
//! already read put back in front of the socket.
//!
//! A direct stream ends when its body ends (shutdown, broker closed, token expired: the chunked
//! terminator is written), when the client closes its side or sends more than a request's worth
//! of bytes, or when a write stays blocked for the write timeout.

use std::io::{self, IoSlice};
use std::pin::Pin;
use std::task::{Context, Poll};
use std::time::SystemTime;

use bytes::{Buf, Bytes};
use headers::HeaderMapExt;
use http::header::{CONNECTION, CONTENT_LENGTH, TRANSFER_ENCODING};
use http::{HeaderMap, HeaderName, HeaderValue, Method, Request, Response, Version};
use http_body_util::{BodyExt, Empty};
use hyper_util::server::graceful::Watcher;
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt, ReadBuf};
use tokio::net::TcpStream;
use tokio::time::timeout;

use crate::server::serve_connection;
use crate::stall::StallGuard;
use crate::{App, Body, handle};

/// The start of every request this module serves.
const PREFIX: &[u8] = b"GET /events";
/// The largest request head read here; a larger one goes to hyper, which answers it.
const MAX_HEAD: usize = 16 * 1024;
/// The most headers a request read here may have.
const MAX_HEADERS: usize = 64;
/// What a client may send after its request on a direct stream before it is disconnected:
/// nothing is ever read from it, so anything more is abuse.
const MAX_TRAILING: usize = 64 * 1024;

/// Serves one connection, directly or through hyper, and says why it closed.
pub(crate) async fn serve_socket(
    app: &App,
    http: &hyper::server::conn::http1::Builder,
    graceful: Watcher,
    mut stream: TcpStream,
) -> &'static str {
    let mut head = Vec::with_capacity(512);
    let started = timeout(app.config().header_read_timeout, read_head(&mut stream, &mut head));
    let request = match started.await {
        Err(_) => return "header_timeout",
        Ok(Err(_)) => return "error",
        Ok(Ok(Start::Closed)) => return "closed",
        Ok(Ok(Start::Direct(request))) => request,
        Ok(Ok(Start::Hyper)) => {
            let io = StallGuard::new(Rewind::new(head, stream), app.config().write_timeout);
            // Boxed: hyper's connection state is large, and inline it would make every
            // connection's task that large, event streams included.
            let connection = Box::pin(graceful.watch(serve_connection(http, app, io)));
            return match connection.await {
                Ok(()) => "closed",
                Err(error) => crate::server::close_cause(&error),
            };
        }
    };
    drop(head);
    let response = handle(app, *request).await;
    match write_response(app, &mut stream, response).await {
        Ok(cause) => cause,
        Err(error) if error.kind() == io::ErrorKind::TimedOut => "write_timeout",
        Err(_) => "error",
    }
}

/// How a connection starts.
enum Start {
    /// With an event stream request this module serves.
    Direct(Box<Request<Empty<Bytes>>>),
    /// With anything else: hand the connection, and the bytes read, to hyper.
    Hyper,
    /// With nothing: the client closed the connection.
    Closed,
}

/// Reads until the first bytes rule out an event stream request, or until its whole head is in.
async fn read_head(stream: &mut TcpStream, head: &mut Vec<u8>) -> io::Result<Start> {
    loop {
        let len = head.len().min(PREFIX.len());
        if head[..len] != PREFIX[..len] {
            return Ok(Start::Hyper);
        }
        if head.len() >= PREFIX.len() {
            match parse(head) {
                Parsed::Complete(request) => return Ok(Start::Direct(request)),
                Parsed::Other => return Ok(Start::Hyper),
                Parsed::Partial if head.len() >= MAX_HEAD => return Ok(Start::Hyper),
                Parsed::Partial => {}
            }
        }
        if head.spare_capacity_mut().is_empty() {
            head.reserve(head.capacity());
        }
        if stream.read_buf(head).await? == 0 {
            // A partial request that ends is hyper's to answer; no bytes at all is a clean close.
            return Ok(if head.is_empty() { Start::Closed } else { Start::Hyper });
        }
    }
}

enum Parsed {
    Complete(Box<Request<Empty<Bytes>>>),
    Partial,
    /// Not a request this module serves: malformed, HTTP/1.0, with a body, or another path.
    Other,
}

fn parse(bytes: &[u8]) -> Parsed {
    let mut headers = [httparse::EMPTY_HEADER; MAX_HEADERS];
    let mut parsed = httparse::Request::new(&mut headers);
    let len = match parsed.parse(bytes) {
        Ok(httparse::Status::Complete(len)) => len,
        Ok(httparse::Status::Partial) => return Parsed::Partial,
        Err(_) => return Parsed::Other,
    };
    let path = parsed.path.unwrap_or_default();
    let is_events = path == "/events" || path.starts_with("/events?");
    // Bytes after the head would be a body or a pipelined request: hyper handles those.
    if !is_events || parsed.version != Some(1) || len != bytes.len() {
        return Parsed::Other;
    }
    let mut request = Request::new(Empty::new());
    *request.method_mut() = Method::GET;
    *request.version_mut() = Version::HTTP_11;
    let Ok(uri) = path.parse() else { return Parsed::Other };
    *request.uri_mut() = uri;
    let map = request.headers_mut();
    for header in parsed.headers.iter() {
        let (Ok(name), Ok(value)) =
            (HeaderName::from_bytes(header.name.as_bytes()), HeaderValue::from_bytes(header.value))
        else {
            return Parsed::Other;
        };
        map.append(name, value);
    }
    if map.contains_key(CONTENT_LENGTH) || map.contains_key(TRANSFER_ENCODING) {
        return Parsed::Other;
    }
    Parsed::Complete(Box::new(request))
}

/// Writes `response`: an event stream chunk by chunk until it ends, anything else whole, after
/// which the connection closes.
async fn write_response(
    app: &App,
    stream: &mut TcpStream,
    mut response: Response<Body>,
) -> io::Result<&'static str> {
    let write_timeout = app.config().write_timeout;
    let streaming = response.headers().get(http::header::CONTENT_TYPE)
        == Some(&HeaderValue::from_static("text/event-stream"));
    let headers = response.headers_mut();
    headers.typed_insert(headers::Date::from(SystemTime::now()));
    if streaming {
        headers.insert(TRANSFER_ENCODING, HeaderValue::from_static("chunked"));
    } else {
        // An error answer (401, 403, 400...): whole, then the connection closes.
        let body = std::mem::replace(response.body_mut(), Empty::new().boxed_unsync());
        let body = body.collect().await.map(|collected| collected.to_bytes()).unwrap_or_default();
        let headers = response.headers_mut();
        headers.insert(CONTENT_LENGTH, HeaderValue::from(body.len()));
        headers.insert(CONNECTION, HeaderValue::from_static("close"));
        let mut whole = Buf::chain(encode_head(&response), body);
        let mut writer = StallGuard::new(&mut *stream, write_timeout);
        writer.write_all_buf(&mut whole).await?;
        return Ok("closed");
    }
    let (mut reader, writer) = stream.split();
    // Frames are written as they come; the guard fails a write that stays blocked, and costs no
    // timer while writes flow.
    let mut writer = StallGuard::new(writer, write_timeout);
    let head = encode_head(&response);
    // Only the body lives on: the head's header map would cost an idle subscriber more than the
    // rest of its state.
    let mut body = response.into_body();
    writer.write_all(&head).await?;
    drop(head);
    let mut trailing = [0; 512];
    let mut trailing_len = 0;
    loop {
        tokio::select! {
            frame = body.frame() => {
                let Some(Ok(frame)) = frame else {
                    writer.write_all(b"0\r\n\r\n").await?;
                    return Ok("closed");
                };
                if let Ok(data) = frame.into_data() {
                    write_chunk(&mut writer, data).await?;
                }
            }
            read = reader.read(&mut trailing) => {
                match read? {
                    0 => return Ok("closed"),
                    n => {
                        trailing_len += n;
                        if trailing_len > MAX_TRAILING {
                            return Ok("error");
                        }
                    }
                }
            }
        }
    }
}

/// Writes one chunk of the chunked transfer coding: size line, data, line end, in one vectored
/// write when the socket takes it all.
async fn write_chunk(writer: &mut (impl AsyncWrite + Unpin), data: Bytes) -> io::Result<()> {
    let mut size = [0; 18];
    let size = chunk_size_line(data.len(), &mut size);
    let mut chunk = Buf::chain(size, data).chain(&b"\r\n"[..]);
    while chunk.has_remaining() {
        let mut slices = [IoSlice::new(&[]); 3];
        let count = chunk.chunks_vectored(&mut slices);
        let written = writer.write_vectored(&slices[..count]).await?;
        if written == 0 {
            return Err(io::ErrorKind::WriteZero.into());
        }
        chunk.advance(written);
    }
    Ok(())
}

/// Writes `len` in hexadecimal followed by CRLF into `out`, and returns that part of it.
fn chunk_size_line(len: usize, out: &mut [u8; 18]) -> &[u8] {
    const DIGITS: &[u8; 16] = b"0123456789abcdef";
    let mut start = 16;
    let mut rest = len;
    loop {
        start -= 1;
        out[start] = DIGITS[rest % 16];
        rest /= 16;
        if rest == 0 {
            break;
        }
    }
    out[16] = b'\r';
    out[17] = b'\n';
    &out[start..]
}

/// The status line and headers of `response`.
fn encode_head(response: &Response<Body>) -> Bytes {
    let mut head = Vec::with_capacity(512);
    let status = response.status();
    head.extend_from_slice(b"HTTP/1.1 ");
    head.extend_from_slice(status.as_str().as_bytes());
    head.push(b' ');
    head.extend_from_slice(status.canonical_reason().unwrap_or("Unknown").as_bytes());
    head.extend_from_slice(b"\r\n");
    write_headers(&mut head, response.headers());
    head.extend_from_slice(b"\r\n");
    Bytes::from(head)
}

fn write_headers(out: &mut Vec<u8>, headers: &HeaderMap) {
    for (name, value) in headers {
        out.extend_from_slice(name.as_str().as_bytes());
        out.extend_from_slice(b": ");
        out.extend_from_slice(value.as_bytes());
        out.extend_from_slice(b"\r\n");
    }
}

/// An I/O object that first reads back bytes already read from it.
pub(crate) struct Rewind<T> {
    prefix: Bytes,
    inner: T,
}

impl<T> Rewind<T> {
    fn new(prefix: Vec<u8>, inner: T) -> Rewind<T> {
        Rewind { prefix: Bytes::from(prefix), inner }
    }
}

impl<T: AsyncRead + Unpin> AsyncRead for Rewind<T> {
    fn poll_read(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        if self.prefix.has_remaining() {
            let len = self.prefix.len().min(buf.remaining());
            buf.put_slice(&self.prefix[..len]);
            self.prefix.advance(len);
            return Poll::Ready(Ok(()));
        }
        Pin::new(&mut self.inner).poll_read(cx, buf)
    }
}

impl<T: AsyncWrite + Unpin> AsyncWrite for Rewind<T> {
    fn poll_write(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<io::Result<usize>> {
        Pin::new(&mut self.inner).poll_write(cx, buf)
    }

    fn poll_write_vectored(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        bufs: &[IoSlice<'_>],
    ) -> Poll<io::Result<usize>> {
        Pin::new(&mut self.inner).poll_write_vectored(cx, bufs)
    }

    fn is_write_vectored(&self) -> bool {
        self.inner.is_write_vectored()
    }

    fn poll_flush(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.inner).poll_flush(cx)
    }

    fn poll_shutdown(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.inner).poll_shutdown(cx)
    }
}
