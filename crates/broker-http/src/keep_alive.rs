//! The keep-alive loop of a publisher's connection: `POST /insert` after `POST /insert`, served
//! without hyper.
//!
//! Publishers send one insert after another on one connection, and hyper's machinery per
//! request (a boxed service future, its buffers and dispatcher, the body's channel, the socket
//! wrappers on every read and write) costs a large part of what the server spends on an insert.
//! So a connection that opens with a plain insert is served here: each head is checked where it
//! lies in the connection's one buffer, with httparse, and taken out of it without a copy. An
//! insert whose body is in the buffer too, as a publisher's usually is, is answered from those
//! bytes by `buffered_insert.rs`; any other by the same [`handle`] as every request, its body
//! read from the buffer as the route asks for it (`socket_body.rs`). Either answer goes out in
//! one write. The buffers live as long as the connection and are reused.
//!
//! A request that is not a plain insert (another route or method, a chunked body, `Expect`,
//! HTTP/1.0, an upgrade, a malformed or oversized head) ends the loop at its first byte: the
//! connection goes to hyper with the bytes read put back in front of the socket, and hyper
//! answers it and whatever follows, as it would have from the start.
//!
//! The limits are hyper's: the next head must be in within `header_read_timeout` of the previous
//! answer (idle time included, as hyper 1 counts it), the route applies the body timeout, a write
//! blocked for `write_timeout` fails (`StallGuard`), and the connection closes after an answer
//! when the client asked for it, when part of the body was left unread (413, 401, 408...), or
//! when shutdown began; an idle connection closes at once on shutdown. Closing lingers
//! (`Linger`), so that an early answer reaches a client still sending.

use std::future::{Future, poll_fn};
use std::io;
use std::pin::Pin;
use std::task::{Context, Poll};
use std::time::Duration;

use bytes::{Bytes, BytesMut};
use http::header::{CONNECTION, CONTENT_LENGTH, EXPECT, TRANSFER_ENCODING, UPGRADE};
use http::{Request, Response};
use http_body::Body as _;
use http_body_util::BodyExt;
use tokio::io::{AsyncRead, AsyncWrite, AsyncWriteExt};
use tokio::time::{Instant, Sleep, sleep};
use tokio_util::sync::WaitForCancellationFuture;

use crate::buffered_insert::{self, Answer, Prepared};
use crate::head::{self, Headers, MAX_REQUEST_HEAD, Parsed};
use crate::linger::Linger;
use crate::metrics::CloseCause;
use crate::socket_body::{BodyEnd, SocketBody};
use crate::stall::StallGuard;
use crate::{App, Body, handle};

/// The start of every request served here.
pub(crate) const PREFIX: &[u8] = b"POST /insert";
/// The most capacity a connection's read or write buffer keeps between requests. A large body
/// or answer grows a buffer for its own request; a publisher that waits for its next insert
/// then holds no more than this.
const KEPT_CAPACITY: usize = 16 * 1024;
/// The capacity buffers start with: a typical insert's head and body, or its answer.
const INITIAL_CAPACITY: usize = 512;

/// What a plain insert's head, at the start of the buffer, says about its body and its
/// connection. The head itself is read once the loop takes its bytes out of the buffer.
pub(crate) struct Insert {
    /// The bytes the head takes at the start of the buffer.
    head_len: usize,
    content_length: u64,
    /// The client asked to close the connection after this request.
    close: bool,
    /// What the head says, read for `buffered_insert.rs` when it serves the request: the body
    /// is in the buffer too, and nothing in the head is only `handle`'s to read.
    buffered: Option<Prepared>,
}

/// What the bytes at the start of a connection's buffer are, to this loop.
pub(crate) enum Next {
    /// A plain insert, head complete.
    Insert(Insert),
    /// Anything else, or something malformed: hyper's to answer.
    Other,
    /// The start of a head that may be a plain insert: more bytes are needed.
    More,
}

/// How the loop ended.
pub(crate) enum Outcome {
    /// The connection is closed, for this reason.
    Closed(CloseCause),
    /// The buffer starts with a request for hyper; nothing of it was consumed.
    Hyper,
}

/// Classifies the bytes at the start of `buffer`.
pub(crate) fn classify(app: &App, buffer: &[u8]) -> Next {
    if !head::may_start_with(buffer, PREFIX) {
        return Next::Other;
    }
    if buffer.len() < PREFIX.len() {
        return Next::More;
    }
    match head::scan(buffer, |head, len| Insert::of(app, head, len, buffer)) {
        Parsed::Complete { head, .. } => Next::Insert(head),
        Parsed::Invalid => Next::Other,
        Parsed::Partial if buffer.len() >= MAX_REQUEST_HEAD => Next::Other,
        Parsed::Partial => Next::More,
    }
}

impl Insert {
    /// The head httparse read, if it is a plain insert: `POST /insert` over HTTP/1.1 with one
    /// `Content-Length`, and without `Transfer-Encoding`, `Expect` or `Upgrade`, whose handling
    /// is hyper's, in no more than [`MAX_REQUEST_HEAD`] bytes.
    ///
    /// `buffer` holds the head, then what has been read after it.
    fn of(
        app: &App,
        head: &httparse::Request<'_, '_>,
        head_len: usize,
        buffer: &[u8],
    ) -> Option<Insert> {
        // hyper answers a head over the limit with `431`; it is served there.
        if head_len > MAX_REQUEST_HEAD {
            return None;
        }
        let path = head.path?;
        let plain = head.method == Some("POST")
            && path.split_once('?').map_or(path, |(path, _)| path) == "/insert"
            && head.version == Some(1)
            && [TRANSFER_ENCODING, EXPECT, UPGRADE]
                .iter()
                .all(|name| head.headers.line(name).is_none());
        if !plain {
            return None;
        }
        let content_length = content_length(head.headers.lines(&CONTENT_LENGTH))?;
        let close = wants_close(head.headers.lines(&CONNECTION));
        // A body over the limit is refused by the route, before it is read.
        let body_len =
            usize::try_from(content_length).ok().filter(|&len| len <= app.config().max_body);
        let whole = body_len.and_then(|len| head_len.checked_add(len));
        let buffered = whole
            .filter(|&whole| whole <= buffer.len())
            .and_then(|_| buffered_insert::prepare(app, head, &buffer[..head_len]));
        Some(Insert { head_len, content_length, close, buffered })
    }
}

/// The one `Content-Length` among `values`, digits only; `None` for none, several, or a
/// malformed one, which hyper answers.
fn content_length<'a>(mut values: impl Iterator<Item = &'a [u8]>) -> Option<u64> {
    let digits = values.next()?;
    if values.next().is_some() {
        return None;
    }
    if digits.is_empty() || digits.len() > 19 || !digits.iter().all(u8::is_ascii_digit) {
        return None;
    }
    std::str::from_utf8(digits).ok()?.parse().ok()
}

/// Whether any of the `Connection` header's `values` carries the `close` option.
fn wants_close<'a>(mut values: impl Iterator<Item = &'a [u8]>) -> bool {
    values.any(|value| {
        value
            .split(|&byte| byte == b',')
            .any(|option| option.trim_ascii().eq_ignore_ascii_case(b"close"))
    })
}

/// Serves `first`, at the start of `buffer`, and the plain inserts that follow it on `stream`.
///
/// Returns when the connection closed, or when the buffer starts with a request that hyper must
/// serve.
pub(crate) async fn serve<S>(
    app: &App,
    stream: &mut S,
    buffer: &mut BytesMut,
    first: Insert,
) -> Outcome
where
    S: AsyncRead + AsyncWrite + Unpin,
{
    let config = app.config();
    let mut shutdown = Shutdown::new(app);
    // One timer for the connection. It is not moved for each request: when it goes off, it is
    // set again to the deadline of the last answer, if that is later (see `next`).
    let deadline = sleep(config.header_read_timeout);
    tokio::pin!(deadline);
    // The answers' bytes. Back-pressure is the socket's: one answer is written whole before the
    // next request is read, so this holds one answer at most.
    let mut out = Vec::with_capacity(INITIAL_CAPACITY);
    // The body of an answer from `buffered_insert.rs`, and the start of its head.
    let mut json = Vec::with_capacity(INITIAL_CAPACITY);
    let created = buffered_insert::Created::new(app);
    let mut insert = first;
    loop {
        let Insert { head_len, content_length, close, buffered } = insert;
        let (answer, end) = match buffered {
            Some(prepared) => {
                // The whole request is in the buffer: `Insert::of` checked it.
                let len = head_len + usize::try_from(content_length).unwrap_or(usize::MAX);
                let request = buffer.split_to(len).freeze();
                let answer =
                    buffered_insert::answer(app, prepared, &request, head_len, &mut json).await;
                (answer, BodyEnd::Consumed)
            }
            None => {
                // The head shares the buffer's memory, as the body does, which the buffer takes
                // back for the next request once both are dropped.
                let bytes = buffer.split_to(head_len).freeze();
                let Some(head) = head::parse_whole(&bytes) else {
                    // httparse took it, the `http` types did not (a byte a header value may not
                    // hold): hyper answers it, from the same bytes.
                    put_back(buffer, &bytes);
                    return Outcome::Hyper;
                };
                drop(bytes);
                let mut body = SocketBody::new(&mut *buffer, &mut *stream, content_length);
                let (parts, _) = head.into_parts();
                let response = handle(app, Request::from_parts(parts, &mut body)).await;
                (Answer::Other(response), body.finish())
            }
        };
        // Checked once the answer is known: a request in flight when shutdown begins is
        // answered, and the connection then closes.
        let keep_alive = !close && end == BodyEnd::Consumed && !app.is_shutting_down();
        let written = match answer {
            Answer::Stored(stored) => {
                stored.encode(app, &created, keep_alive, &json, &mut out);
                send(stream, &out, config.write_timeout).await
            }
            Answer::Other(response) => {
                write(stream, response, keep_alive, &mut out, config.write_timeout).await
            }
        };
        if let Err(error) = written {
            return Outcome::Closed(write_failure(&error));
        }
        if !keep_alive {
            // Lingering lets an answer given before the body was read (413, 408) reach a client
            // still sending it, rather than be destroyed by the reset its unread bytes cause.
            // The guard bounds the shutdown, which writes over TLS (its `close_notify`).
            let stream = StallGuard::new(&mut *stream, config.write_timeout);
            let _ = Linger::new(stream).shutdown().await;
            let cause = if end == BodyEnd::Failed { CloseCause::Error } else { CloseCause::Closed };
            return Outcome::Closed(cause);
        }
        for kept in [&mut out, &mut json] {
            if kept.capacity() > KEPT_CAPACITY {
                *kept = Vec::with_capacity(INITIAL_CAPACITY);
            }
        }
        if buffer.is_empty() && buffer.capacity() > KEPT_CAPACITY {
            *buffer = BytesMut::with_capacity(INITIAL_CAPACITY);
        }
        let idle_until = Instant::now() + config.header_read_timeout;
        insert = match next(app, stream, buffer, deadline.as_mut(), idle_until, &mut shutdown).await
        {
            Ok(insert) => insert,
            Err(outcome) => return outcome,
        };
    }
}

/// Puts `head` back in front of what `buffer` holds.
fn put_back(buffer: &mut BytesMut, head: &[u8]) {
    let mut whole = BytesMut::with_capacity(head.len() + buffer.len());
    whole.extend_from_slice(head);
    whole.extend_from_slice(buffer);
    *buffer = whole;
}

/// The start of shutdown, as the loop waits for it between requests.
///
/// The token's own future locks the token each time it is polled, twice per request here, and
/// every connection's task polls the same token. This one polls it once, to be woken by it, and
/// from then on reads the app's flag, which is set before the token wakes anyone.
struct Shutdown<'a> {
    cancelled: Pin<Box<WaitForCancellationFuture<'a>>>,
    /// Whether `cancelled` was polled, and holds the task's waker.
    registered: bool,
}

impl<'a> Shutdown<'a> {
    fn new(app: &'a App) -> Shutdown<'a> {
        Shutdown { cancelled: Box::pin(app.shutdown_token().cancelled()), registered: false }
    }

    /// Ready once shutdown has begun; otherwise the task is woken when it begins.
    fn poll_begun(&mut self, app: &App, cx: &mut Context<'_>) -> Poll<()> {
        if app.is_shutting_down() {
            return Poll::Ready(());
        }
        if self.registered {
            // A task's waker stays the same: the one `cancelled` holds still wakes this task.
            return Poll::Pending;
        }
        self.registered = true;
        self.cancelled.as_mut().poll(cx)
    }
}

/// Reads until the buffer starts with a whole plain insert head, or with anything else, by
/// `idle_until`.
///
/// `deadline` is the connection's timer, which may still be set to the deadline of an earlier
/// request: when it goes off before `idle_until`, it is set to it, so that a publisher's
/// connection moves its timer once per header timeout rather than once per request.
async fn next(
    app: &App,
    stream: &mut (impl AsyncRead + Unpin),
    buffer: &mut BytesMut,
    mut deadline: Pin<&mut Sleep>,
    idle_until: Instant,
    shutdown: &mut Shutdown<'_>,
) -> Result<Insert, Outcome> {
    loop {
        match classify(app, buffer) {
            Next::Insert(insert) => return Ok(insert),
            Next::Other => return Err(Outcome::Hyper),
            Next::More => {}
        }
        tokio::select! {
            biased;
            // An idle connection, or one whose next head is not in yet, closes at once, as hyper
            // closes a connection between requests.
            () = poll_fn(|cx| shutdown.poll_begun(app, cx)) => {
                return Err(Outcome::Closed(CloseCause::Closed));
            }
            // Bytes that are in count even if the deadline passed meanwhile, as in hyper, which
            // parses what it read before it looks at its timer.
            read = head::read_more(stream, buffer) => match read {
                Ok(0) if buffer.is_empty() => return Err(Outcome::Closed(CloseCause::Closed)),
                // A partial request that ends is hyper's to answer, as at the connection's start.
                Ok(0) => return Err(Outcome::Hyper),
                Ok(_) => {}
                Err(_) => return Err(Outcome::Closed(CloseCause::Error)),
            },
            // As in hyper: no answer, the connection just closes.
            () = &mut deadline => {
                if deadline.deadline() >= idle_until {
                    return Err(Outcome::Closed(CloseCause::HeaderTimeout));
                }
                deadline.as_mut().reset(idle_until);
            }
        }
    }
}

/// Writes `response` whole, in one write: head with `Content-Length` (and `Connection: close`
/// unless `keep_alive`), then body, and flushes it (a TLS stream holds written bytes back until
/// then).
async fn write(
    stream: &mut (impl AsyncWrite + Unpin),
    response: Response<Body>,
    keep_alive: bool,
    out: &mut Vec<u8>,
    write_timeout: Duration,
) -> io::Result<()> {
    let (parts, body) = response.into_parts();
    let body = whole(body).await;
    out.clear();
    head::encode_into(parts.status, &parts.headers, Some(body.len()), !keep_alive, out);
    out.extend_from_slice(&body);
    send(stream, out, write_timeout).await
}

/// Writes `bytes` whole, and flushes them (a TLS stream holds written bytes back until then).
async fn send(
    stream: &mut (impl AsyncWrite + Unpin),
    bytes: &[u8],
    write_timeout: Duration,
) -> io::Result<()> {
    let mut stream = StallGuard::new(&mut *stream, write_timeout);
    stream.write_all(bytes).await?;
    stream.flush().await
}

/// The bytes of a whole body. Only inserts are served here, whose answers (the stored version, or
/// an error) are one buffer: reading them never waits, and takes no allocation for one frame.
async fn whole(mut body: Body) -> Bytes {
    let first = match body.frame().await {
        Some(Ok(frame)) => frame.into_data().unwrap_or_default(),
        _ => return Bytes::new(),
    };
    if body.is_end_stream() {
        return first;
    }
    let rest = body.collect().await.map(|collected| collected.to_bytes()).unwrap_or_default();
    [first, rest].concat().into()
}

/// The close cause of a failed write.
fn write_failure(error: &io::Error) -> CloseCause {
    if error.kind() == io::ErrorKind::TimedOut {
        CloseCause::WriteTimeout
    } else {
        CloseCause::Error
    }
}

#[cfg(test)]
#[path = "keep_alive_tests.rs"]
mod tests;
