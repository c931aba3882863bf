//! [`Linger`]: a socket whose shutdown waits for the peer's input to end, as nginx's lingering
//! close does.
//!
//! A server that answers early (413, 415, 431, 503) closes with the rest of the request unread.
//! The kernel answers unread input on a closed socket with a reset, and a reset can destroy the
//! answer in the client's receive buffer before a client that writes its whole request first gets
//! to read it. So shutting down a `Linger` ends the sending side, then reads and discards what the
//! client still sends, for at most [`LINGER`] and [`LINGER_BYTES`], until the client closes too
//! or sends nothing for [`LINGER_IDLE`].
//! hyper shuts its connections down this way when it is done with them; the direct path does the
//! same after an early answer.
//!
//! While the connection is open it costs nothing: the timer exists only during the shutdown.

use std::io::{self, IoSlice};
use std::pin::Pin;
use std::task::{Context, Poll, ready};
use std::time::Duration;

use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};
use tokio::time::{Instant, Sleep, sleep};

/// The longest a closing connection waits for its peer's input to end.
pub(crate) const LINGER: Duration = Duration::from_secs(2);
/// How long a closing connection waits for the next of its peer's bytes: a peer that sends
/// nothing more (a stalled body, say) releases the connection this soon.
pub(crate) const LINGER_IDLE: Duration = Duration::from_millis(500);
/// The most a closing connection reads and discards.
pub(crate) const LINGER_BYTES: usize = 8 * 1024 * 1024;

/// An I/O object whose shutdown lingers; see the module docs.
pub(crate) struct Linger<T> {
    inner: T,
    /// Set once the shutdown began.
    closing: Option<Closing>,
}

struct Closing {
    /// Whether the sending side is shut down yet.
    sent_fin: bool,
    /// Bytes that may still be discarded.
    left: usize,
    /// When the lingering ends whatever the peer does.
    ends: Instant,
    /// The next deadline: [`LINGER_IDLE`] after the last bytes, at most `ends`.
    deadline: Pin<Box<Sleep>>,
}

impl<T> Linger<T> {
    pub(crate) fn new(inner: T) -> Linger<T> {
        Linger { inner, closing: None }
    }
}

impl<T: AsyncRead + Unpin> AsyncRead for Linger<T> {
    fn poll_read(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        Pin::new(&mut self.inner).poll_read(cx, buf)
    }
}

impl<T: AsyncRead + AsyncWrite + Unpin> AsyncWrite for Linger<T> {
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

    fn poll_shutdown(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        let this = self.get_mut();
        let closing = this.closing.get_or_insert_with(|| Closing {
            sent_fin: false,
            left: LINGER_BYTES,
            ends: Instant::now() + LINGER,
            deadline: Box::pin(sleep(LINGER_IDLE)),
        });
        if !closing.sent_fin {
            ready!(Pin::new(&mut this.inner).poll_shutdown(cx))?;
            closing.sent_fin = true;
        }
        let mut discard = [0; 4096];
        loop {
            if closing.left == 0 || closing.deadline.as_mut().poll(cx).is_ready() {
                return Poll::Ready(Ok(()));
            }
            let mut buf = ReadBuf::new(&mut discard);
            match ready!(Pin::new(&mut this.inner).poll_read(cx, &mut buf)) {
                // The peer closed too, or the connection failed: nothing more to wait for.
                Ok(()) if buf.filled().is_empty() => return Poll::Ready(Ok(())),
                Err(_) => return Poll::Ready(Ok(())),
                Ok(()) => {
                    closing.left = closing.left.saturating_sub(buf.filled().len());
                    let next = (Instant::now() + LINGER_IDLE).min(closing.ends);
                    closing.deadline.as_mut().reset(next);
                }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use tokio::io::{AsyncReadExt, AsyncWriteExt, duplex};

    use super::{LINGER, LINGER_IDLE, Linger};

    #[tokio::test(start_paused = true)]
    async fn shutdown_discards_input_until_the_peer_closes_or_the_time_is_up() {
        let (ours, mut theirs) = duplex(64);
        let mut ours = Linger::new(ours);
        ours.write_all(b"answer").await.expect("write");
        let client = tokio::spawn(async move {
            // The client sends more than the pipe holds, then reads the answer, then closes.
            theirs.write_all(&[1; 1000]).await.expect("the server discards what it sends");
            let mut answer = Vec::new();
            theirs.read_to_end(&mut answer).await.expect("read");
            answer
        });
        ours.shutdown().await.expect("shutdown");
        assert_eq!(client.await.expect("client"), b"answer");

        // A peer that neither sends nor closes holds the shutdown for the idle time.
        let (ours, _theirs) = duplex(64);
        let started = tokio::time::Instant::now();
        Linger::new(ours).shutdown().await.expect("shutdown");
        assert_eq!(started.elapsed(), LINGER_IDLE);

        // A peer that sends a byte now and then holds it for the linger time at most.
        let (ours, mut theirs) = duplex(64);
        let trickle = tokio::spawn(async move {
            while theirs.write_all(b"x").await.is_ok() {
                tokio::time::sleep(Duration::from_millis(100)).await;
            }
        });
        let started = tokio::time::Instant::now();
        Linger::new(ours).shutdown().await.expect("shutdown");
        assert_eq!(started.elapsed(), LINGER);
        trickle.abort();
    }
}
