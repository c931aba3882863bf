//! [`SocketBody`]: the body of a request served on the keep-alive loop, read from the connection
//! as the route asks for it.
//!
//! The route reads a body the same way whichever path serves the request: `insert.rs` refuses a
//! declared length over the limit before reading a byte, applies the body timeout while it reads,
//! and leaves the body unread when it refuses the request for another reason. So the body is not
//! read ahead: it is what the connection already holds, then the socket, until the length the
//! head declared. Afterwards, [`SocketBody::finish`] says whether the connection can go on to its
//! next request.

use std::io;
use std::pin::Pin;
use std::task::{Context, Poll, ready};

use bytes::{Buf, BufMut, Bytes, BytesMut};
use http_body::{Body, Frame, SizeHint};
use tokio::io::AsyncRead;
use tokio_util::io::poll_read_buf;

/// The most read from the socket at once for a body: a large body arrives in pieces of this size
/// rather than in one allocation of its declared length.
const READ_CHUNK: usize = 64 * 1024;

/// The `Content-Length` bytes after a request head: first those already in the connection's
/// buffer, then those read from the socket into it. Bytes past the body stay in the buffer: they
/// are the next request's.
pub(crate) struct SocketBody<'a, R> {
    buffer: &'a mut BytesMut,
    io: &'a mut R,
    /// Body bytes not yet handed out.
    remaining: u64,
    /// Set when the socket failed or ended inside the body.
    failed: bool,
}

/// How a request body stands once the request is answered.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum BodyEnd {
    /// Every byte of it was consumed: the next request starts at the buffer's start.
    Consumed,
    /// Part of it is still to come, which nothing waits for: the connection closes after the
    /// answer.
    Unread,
    /// The socket failed or ended inside it.
    Failed,
}

impl<'a, R: AsyncRead + Unpin> SocketBody<'a, R> {
    pub(crate) fn new(buffer: &'a mut BytesMut, io: &'a mut R, len: u64) -> SocketBody<'a, R> {
        SocketBody { buffer, io, remaining: len, failed: false }
    }

    /// Discards what the route left of the body among the bytes already read, as hyper does, and
    /// says whether all of it is gone. Nothing more is read: a body the route did not want is
    /// not waited for.
    pub(crate) fn finish(self) -> BodyEnd {
        if self.failed {
            return BodyEnd::Failed;
        }
        let buffered = usize::try_from(self.remaining).unwrap_or(usize::MAX).min(self.buffer.len());
        self.buffer.advance(buffered);
        if self.remaining == buffered as u64 { BodyEnd::Consumed } else { BodyEnd::Unread }
    }
}

impl<R: AsyncRead + Unpin> Body for SocketBody<'_, R> {
    type Data = Bytes;
    type Error = io::Error;

    fn poll_frame(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<io::Result<Frame<Bytes>>>> {
        let this = self.get_mut();
        if this.remaining == 0 {
            return Poll::Ready(None);
        }
        if this.failed {
            return Poll::Ready(Some(Err(io::ErrorKind::UnexpectedEof.into())));
        }
        if this.buffer.is_empty() {
            // No more than the body: the next request's head is read on its own, with its
            // own limit.
            let want = usize::try_from(this.remaining).unwrap_or(usize::MAX).min(READ_CHUNK);
            this.buffer.reserve(want);
            let mut room = (&mut *this.buffer).limit(want);
            let read = ready!(poll_read_buf(Pin::new(&mut *this.io), cx, &mut room));
            match read {
                Ok(0) => {
                    this.failed = true;
                    return Poll::Ready(Some(Err(io::Error::new(
                        io::ErrorKind::UnexpectedEof,
                        "the connection ended inside the body",
                    ))));
                }
                Ok(_) => {}
                Err(error) => {
                    this.failed = true;
                    return Poll::Ready(Some(Err(error)));
                }
            }
        }
        let take = usize::try_from(this.remaining).unwrap_or(usize::MAX).min(this.buffer.len());
        this.remaining -= take as u64;
        // Split off, not copied: the body shares the buffer's memory, which the buffer takes
        // back for the next request once the route has dropped the body.
        Poll::Ready(Some(Ok(Frame::data(this.buffer.split_to(take).freeze()))))
    }

    fn is_end_stream(&self) -> bool {
        self.remaining == 0
    }

    fn size_hint(&self) -> SizeHint {
        SizeHint::with_exact(self.remaining)
    }
}

#[cfg(test)]
mod tests {
    use http_body_util::BodyExt;
    use tokio::io::{AsyncWriteExt, duplex};

    use super::*;

    /// What the route read of a body, if it read it: the bytes, or the kind of error.
    type Read<'a> = Option<Result<&'a [u8], io::ErrorKind>>;

    /// A body of `len` bytes after a head, with `buffered` already read and `sent` still in the
    /// socket (which the peer then closes): what the route reads of it if it reads it, what is
    /// left in the buffer for the next request, and how the body ended.
    async fn check(
        len: u64,
        buffered: &[u8],
        sent: &[u8],
        route_reads: bool,
        expected: (Read<'_>, &[u8], BodyEnd),
    ) {
        let (mut ours, mut theirs) = duplex(1024);
        theirs.write_all(sent).await.expect("write");
        drop(theirs);
        let mut buffer = BytesMut::from(buffered);
        let mut body = SocketBody::new(&mut buffer, &mut ours, len);
        let read = if route_reads {
            let collected = (&mut body).collect().await;
            Some(collected.map(|collected| collected.to_bytes()).map_err(|error| error.kind()))
        } else {
            None
        };
        let end = body.finish();
        let read = read.as_ref().map(|read| read.as_deref().map_err(|kind| *kind));
        let actual = (read, &buffer[..], end);
        assert_eq!(actual, expected, "{len} bytes, {buffered:?} read, {sent:?} to come");
    }

    #[tokio::test]
    async fn a_body_is_its_declared_length_and_what_follows_is_the_next_request() {
        // Whole in what was read with the head, the next request behind it.
        check(5, b"helloGET /", b"", true, (Some(Ok(b"hello")), b"GET /", BodyEnd::Consumed)).await;
        // Partly still in the socket: only the body is read from it.
        check(5, b"he", b"lloGET /", true, (Some(Ok(b"hello")), b"", BodyEnd::Consumed)).await;
        check(0, b"GET /", b"", true, (Some(Ok(b"")), b"GET /", BodyEnd::Consumed)).await;
        // The peer closes inside it: the route reads an error, and the connection is done.
        check(
            5,
            b"he",
            b"l",
            true,
            (Some(Err(io::ErrorKind::UnexpectedEof)), b"", BodyEnd::Failed),
        )
        .await;
        // A route that answers without reading: what was read of the body is dropped, and the
        // rest is not waited for.
        check(5, b"helloGET /", b"", false, (None, b"GET /", BodyEnd::Consumed)).await;
        check(5, b"he", b"llo", false, (None, b"", BodyEnd::Unread)).await;
    }
}
