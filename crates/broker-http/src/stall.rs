//! [`StallGuard`]: fails a connection whose peer stops reading.
//!
//! The event stream of a client that stops reading fills the kernel's socket buffer, then
//! hyper's write buffer, and then nothing moves: the subscriber holds its connection and buffers
//! for nothing. The guard wraps the socket and starts a deadline when a write cannot proceed (or
//! a flush or a shutdown, which write too over TLS); any write that proceeds clears it, and a
//! write still blocked at the deadline fails with `TimedOut`, which makes hyper close the
//! connection. A connection that merely has nothing to send never arms the deadline, so idle
//! subscribers are unaffected.
//!
//! The deadline is a timer owned by the connection and polled by the connection's own task: no
//! extra task, and no timer at all while writes flow.

use std::io;
use std::pin::Pin;
use std::task::{Context, Poll, ready};
use std::time::Duration;

use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};
use tokio::time::{Sleep, sleep};

/// An I/O object whose writes fail once they have been blocked for `timeout`.
pub(crate) struct StallGuard<T> {
    inner: T,
    timeout: Duration,
    /// Armed while a write is blocked; `None` while writes flow.
    deadline: Option<Pin<Box<Sleep>>>,
}

impl<T> StallGuard<T> {
    pub(crate) fn new(inner: T, timeout: Duration) -> StallGuard<T> {
        StallGuard { inner, timeout, deadline: None }
    }

    /// Records the outcome of a write attempt: progress disarms the deadline, a block arms it
    /// (once) and fails when it has passed.
    fn check<R>(
        &mut self,
        cx: &mut Context<'_>,
        result: Poll<io::Result<R>>,
    ) -> Poll<io::Result<R>> {
        if result.is_ready() {
            self.deadline = None;
            return result;
        }
        let timeout = self.timeout;
        let deadline = self.deadline.get_or_insert_with(|| Box::pin(sleep(timeout)));
        ready!(deadline.as_mut().poll(cx));
        Poll::Ready(Err(io::Error::new(
            io::ErrorKind::TimedOut,
            format!("the peer read nothing for {timeout:?}"),
        )))
    }
}

impl<T: AsyncRead + Unpin> AsyncRead for StallGuard<T> {
    fn poll_read(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        Pin::new(&mut self.inner).poll_read(cx, buf)
    }
}

impl<T: AsyncWrite + Unpin> AsyncWrite for StallGuard<T> {
    fn poll_write(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<io::Result<usize>> {
        let result = Pin::new(&mut self.inner).poll_write(cx, buf);
        self.check(cx, result)
    }

    fn poll_write_vectored(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        bufs: &[io::IoSlice<'_>],
    ) -> Poll<io::Result<usize>> {
        let result = Pin::new(&mut self.inner).poll_write_vectored(cx, bufs);
        self.check(cx, result)
    }

    fn is_write_vectored(&self) -> bool {
        self.inner.is_write_vectored()
    }

    fn poll_flush(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        // A plain socket flushes at once whatever its peer does; a TLS stream writes out the
        // bytes it holds, which stays blocked while the peer reads nothing, as a write does.
        let result = Pin::new(&mut self.inner).poll_flush(cx);
        self.check(cx, result)
    }

    fn poll_shutdown(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        // A TLS stream's shutdown writes its `close_notify` alert first.
        let result = Pin::new(&mut self.inner).poll_shutdown(cx);
        self.check(cx, result)
    }
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use tokio::io::{AsyncReadExt, AsyncWriteExt, duplex};

    use super::StallGuard;

    #[tokio::test(start_paused = true)]
    async fn blocked_writes_fail_at_the_deadline_and_flowing_writes_never_do() {
        let (ours, mut theirs) = duplex(16);
        let mut guarded = StallGuard::new(ours, Duration::from_secs(30));
        // Writes that the peer keeps reading never time out, however long it all takes.
        for _ in 0..10 {
            guarded.write_all(&[7; 16]).await.expect("the peer reads");
            tokio::time::sleep(Duration::from_secs(20)).await;
            let mut buf = [0; 16];
            theirs.read_exact(&mut buf).await.expect("read");
        }
        // A peer that stops reading: the buffer fills and the write fails at the deadline.
        let started = tokio::time::Instant::now();
        let error = guarded.write_all(&[7; 64]).await.expect_err("the write is stalled");
        assert_eq!(error.kind(), std::io::ErrorKind::TimedOut);
        assert_eq!(started.elapsed(), Duration::from_secs(30));
    }
}
