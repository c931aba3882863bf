//! [`FloodGuard`]: closes an HTTP/2 connection whose client sends control frames faster than
//! any client needs to.
//!
//! A client can ask for work without sending a request: every SETTINGS and PING is answered
//! with an acknowledgement, and a stream opened and reset at once (rapid reset,
//! CVE-2023-44487) costs a call of the route without counting against the concurrent streams.
//! h2 bounds what it buffers for them: it writes one acknowledgement before it reads the next
//! frame, so a client that reads nothing only fills its socket, which `StallGuard` then times
//! out; and it answers more than `max_pending_accept_reset_streams` streams reset before they
//! were accepted with GOAWAY. Nothing in h2 limits their rate, though: a client that reads its
//! acknowledgements, or resets each stream just after the server started it, is served at
//! whatever rate it sends.
//!
//! So the guard reads the head of every frame the client sends, and spends one token for each
//! frame that asks for work without carrying a request: SETTINGS and PING (not their
//! acknowledgements), RST_STREAM, PRIORITY, and frames of types h2 ignores. The bucket holds
//! [`BURST`] tokens and earns [`PER_SECOND`] a second. A client that empties it has its
//! connection closed: the guard writes a GOAWAY with `ENHANCE_YOUR_CALM` between two of h2's
//! frames (when h2 is in the middle of one, the socket is full and the client would not read
//! it anyway), hands h2 nothing more, and shuts the socket down, lingering (`Linger`), so
//! that the GOAWAY is read rather than reset. It then fails h2's read, which ends the
//! connection; [`FloodGuard::flooded`] tells why.

use std::io::{self, IoSlice};
use std::pin::Pin;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::task::{Context, Poll, ready};
use std::time::Duration;

use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};
use tokio::time::Instant;

use crate::h2_frames::{
    ACK, CONTINUATION, ENHANCE_YOUR_CALM, FrameHead, HEADERS, PING, PRIORITY, RST_STREAM, SETTINGS,
    Scanner, go_away,
};

/// The most control frames a client may send at once: more than a page that cancels every
/// one of its streams (256 by default) a few times over.
pub(crate) const BURST: u32 = 1_000;
/// The control frames a client earns back each second.
pub(crate) const PER_SECOND: u32 = 100;

/// An HTTP/2 connection's socket that closes it when its client floods it with control frames;
/// see the module docs.
pub(crate) struct FloodGuard<T> {
    inner: T,
    incoming: Scanner,
    outgoing: Scanner,
    budget: Budget,
    /// The greatest stream id the client opened: the GOAWAY's last stream.
    last_stream: u32,
    /// Set once the connection is being closed for a flood.
    closing: Option<Closing>,
    flooded: Arc<AtomicBool>,
}

/// The steps of closing a flooded connection.
#[derive(Clone, Copy)]
enum Closing {
    /// Writing the GOAWAY frame; this much of it is written.
    GoAway([u8; 17], usize),
    Flush,
    /// Shutting the socket down, lingering.
    Shutdown,
}

impl<T> FloodGuard<T> {
    pub(crate) fn new(inner: T) -> FloodGuard<T> {
        FloodGuard {
            inner,
            incoming: Scanner::client(),
            outgoing: Scanner::server(),
            budget: Budget { tokens: BURST, earned_until: Instant::now() },
            last_stream: 0,
            closing: None,
            flooded: Arc::new(AtomicBool::new(false)),
        }
    }

    /// Set once the guard closes the connection for a flood.
    pub(crate) fn flooded(&self) -> Arc<AtomicBool> {
        self.flooded.clone()
    }
}

/// Whether `head` asks the server for work without carrying a request.
fn costs(head: &FrameHead) -> bool {
    match head.kind {
        SETTINGS | PING => head.flags & ACK == 0,
        RST_STREAM | PRIORITY => true,
        kind => kind > CONTINUATION,
    }
}

/// A token bucket, refilled as time passes.
struct Budget {
    tokens: u32,
    /// The time up to which tokens were earned.
    earned_until: Instant,
}

impl Budget {
    /// Spends a token; `false` when there is none left.
    fn spend(&mut self) -> bool {
        let now = Instant::now();
        let per_token = Duration::from_secs(1) / PER_SECOND;
        let earned = now.duration_since(self.earned_until).as_nanos() / per_token.as_nanos();
        if earned > 0 {
            let earned = u32::try_from(earned).unwrap_or(u32::MAX);
            self.tokens = self.tokens.saturating_add(earned).min(BURST);
            self.earned_until =
                if self.tokens == BURST { now } else { self.earned_until + per_token * earned };
        }
        let Some(left) = self.tokens.checked_sub(1) else { return false };
        self.tokens = left;
        true
    }
}

impl<T: AsyncRead + AsyncWrite + Unpin> FloodGuard<T> {
    /// Goes on closing the connection; ends with the error that ends h2's connection.
    fn poll_close(&mut self, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        loop {
            match self.closing {
                Some(Closing::GoAway(frame, written)) if written < frame.len() => {
                    let n = ready!(Pin::new(&mut self.inner).poll_write(cx, &frame[written..]))?;
                    if n == 0 {
                        return Poll::Ready(Err(io::ErrorKind::WriteZero.into()));
                    }
                    self.closing = Some(Closing::GoAway(frame, written + n));
                }
                Some(Closing::GoAway(..)) => self.closing = Some(Closing::Flush),
                Some(Closing::Flush) => {
                    ready!(Pin::new(&mut self.inner).poll_flush(cx))?;
                    self.closing = Some(Closing::Shutdown);
                }
                Some(Closing::Shutdown) | None => {
                    ready!(Pin::new(&mut self.inner).poll_shutdown(cx))?;
                    return Poll::Ready(Err(io::Error::other("too many HTTP/2 control frames")));
                }
            }
        }
    }
}

impl<T: AsyncRead + AsyncWrite + Unpin> AsyncRead for FloodGuard<T> {
    fn poll_read(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        let this = self.get_mut();
        if this.closing.is_none() {
            let before = buf.filled().len();
            ready!(Pin::new(&mut this.inner).poll_read(cx, buf))?;
            let (budget, last_stream) = (&mut this.budget, &mut this.last_stream);
            let mut flooded = false;
            this.incoming.feed(&buf.filled()[before..], |head| {
                if head.kind == HEADERS {
                    *last_stream = (*last_stream).max(head.stream);
                }
                if costs(&head) && !budget.spend() {
                    flooded = true;
                }
            });
            if !flooded {
                return Poll::Ready(Ok(()));
            }
            // h2 is not handed what came with the flood: the connection is closing.
            buf.set_filled(before);
            this.flooded.store(true, Ordering::Relaxed);
            tracing::debug!("closing an HTTP/2 connection that sent too many control frames");
            this.closing = Some(if this.outgoing.at_boundary() {
                Closing::GoAway(go_away(this.last_stream, ENHANCE_YOUR_CALM), 0)
            } else {
                Closing::Flush
            });
        }
        this.poll_close(cx)
    }
}

impl<T: AsyncRead + AsyncWrite + Unpin> AsyncWrite for FloodGuard<T> {
    fn poll_write(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<io::Result<usize>> {
        let this = self.get_mut();
        if this.closing.is_some() {
            // Whatever h2 still writes is dropped: the GOAWAY is the last frame.
            return Poll::Ready(Ok(buf.len()));
        }
        let written = ready!(Pin::new(&mut this.inner).poll_write(cx, buf))?;
        this.outgoing.feed(&buf[..written], |_| {});
        Poll::Ready(Ok(written))
    }

    fn poll_write_vectored(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        bufs: &[IoSlice<'_>],
    ) -> Poll<io::Result<usize>> {
        let this = self.get_mut();
        if this.closing.is_some() {
            return Poll::Ready(Ok(bufs.iter().map(|buf| buf.len()).sum()));
        }
        let written = ready!(Pin::new(&mut this.inner).poll_write_vectored(cx, bufs))?;
        let mut left = written;
        for buf in bufs {
            let part = left.min(buf.len());
            this.outgoing.feed(&buf[..part], |_| {});
            left -= part;
        }
        Poll::Ready(Ok(written))
    }

    fn is_write_vectored(&self) -> bool {
        self.inner.is_write_vectored()
    }

    fn poll_flush(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        let this = self.get_mut();
        if this.closing.is_some() {
            return Poll::Ready(Ok(()));
        }
        Pin::new(&mut this.inner).poll_flush(cx)
    }

    fn poll_shutdown(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.get_mut().inner).poll_shutdown(cx)
    }
}

#[cfg(test)]
mod tests {
    use std::sync::atomic::Ordering;
    use std::time::Duration;

    use tokio::io::{AsyncReadExt, AsyncWriteExt, duplex};

    use super::*;
    use crate::h2_frames::PREFACE;
    use crate::h2_frames::tests::frame;

    /// Sends `frames` through a guard and reads what reaches the server's side: the bytes, and
    /// whether the read ended with the flood error.
    async fn server_reads(frames: &[Vec<u8>]) -> (usize, bool, Vec<u8>) {
        let (server, mut client) = duplex(1 << 20);
        let mut guard = FloodGuard::new(server);
        let flooded = guard.flooded();
        let mut sent = PREFACE.to_vec();
        frames.iter().for_each(|frame| sent.extend_from_slice(frame));
        client.write_all(&sent).await.expect("send");
        let mut received = Vec::new();
        let mut buf = [0; 4096];
        let ended_with_error = loop {
            match tokio::time::timeout(Duration::from_millis(100), guard.read(&mut buf)).await {
                Ok(Ok(0)) | Err(_) => break false,
                Ok(Ok(n)) => received.extend_from_slice(&buf[..n]),
                Ok(Err(_)) => break true,
            }
        };
        assert_eq!(flooded.load(Ordering::Relaxed), ended_with_error);
        drop(guard);
        let mut answer = Vec::new();
        client.read_to_end(&mut answer).await.expect("read the answer");
        (received.len(), ended_with_error, answer)
    }

    #[tokio::test(start_paused = true)]
    async fn a_burst_of_control_frames_passes_and_one_more_closes_with_goaway() {
        let ping = frame(PING, 0, 0, &[0; 8]);
        let burst = vec![ping.clone(); BURST as usize];
        let (read, flooded, answer) = server_reads(&burst).await;
        assert_eq!((read, flooded), (PREFACE.len() + burst.len() * ping.len(), false));
        assert!(answer.is_empty());

        let mut flood = vec![frame(HEADERS, 0x5, 1, b"x"), frame(HEADERS, 0x5, 9, b"x")];
        flood.extend(vec![ping.clone(); BURST as usize + 1]);
        let (_, flooded, answer) = server_reads(&flood).await;
        assert!(flooded);
        assert_eq!(answer, go_away(9, ENHANCE_YOUR_CALM), "the last stream the client opened");
    }

    #[tokio::test(start_paused = true)]
    async fn acknowledgements_and_requests_cost_nothing_and_tokens_come_back() {
        let mut frames = vec![frame(SETTINGS, ACK, 0, &[]); 5000];
        frames.extend(vec![frame(HEADERS, 0x5, 1, b"x"); 5000]);
        let (_, flooded, _) = server_reads(&frames).await;
        assert!(!flooded);

        let mut budget = Budget { tokens: BURST, earned_until: Instant::now() };
        assert!((0..BURST).all(|_| budget.spend()));
        assert!(!budget.spend());
        tokio::time::advance(Duration::from_secs(1)).await;
        assert!((0..PER_SECOND).all(|_| budget.spend()));
        assert!(!budget.spend());
        // A bucket left full for long holds no more than it can.
        tokio::time::advance(Duration::from_secs(3600)).await;
        assert!((0..BURST).all(|_| budget.spend()));
        assert!(!budget.spend());
    }
}
