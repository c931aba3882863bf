//! The streams of one HTTP/2 connection, each a task of its own: the watchdog that gives up on
//! a stream whose client opens no flow-control window for it, and the count of open streams
//! that tells when the connection is idle.
//!
//! hyper serves each stream in a task it hands to the connection's executor, [`Streams`]: the
//! task calls the route, then copies the response body into h2. It takes the next chunk of
//! the body only once h2 has room for the last one, which it has only while the client's
//! flow-control windows, the stream's and the connection's, are open. A client that opens no
//! window therefore stops the body without a write ever blocking: `StallGuard` on the socket
//! sees nothing, and the task would wait forever, holding its subscription and its permit.
//!
//! So every response body is a [`WatchedBody`], which tells its stream's task, through a
//! task-local, when it hands a chunk over ("waiting") and when it is polled again, which hyper
//! does only after h2 took that chunk. Each task runs inside [`Watched`], which arms a timer of
//! `write_timeout` while its stream waits (no timer otherwise) and, when it fires, drops the
//! stream's task: h2 resets the stream (`RST_STREAM` with `CANCEL`) and forgets its buffered
//! data, and the body, its subscription and its permit are dropped with the task; the broker
//! counts it in `broker_http2_stream_write_timeouts_total`. When every open stream of the
//! connection is waiting, the client reads nothing at all (the connection's window is closed):
//! [`Streams::stalled`] then tells the connection to close, counted as a write timeout.
//!
//! What one stream holds meanwhile is bounded: hyper holds one chunk (an event stream coalesces
//! at most 64 KiB into one), and h2 buffers at most `max_send_buf_size` plus one chunk.

use std::future::Future;
use std::pin::Pin;
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex, PoisonError};
use std::task::{Context, Poll, ready};
use std::time::Duration;

use bytes::Buf;
use http_body::{Body, Frame, SizeHint};
use metrics::Counter;
use tokio::sync::Notify;
use tokio::task::futures::TaskLocalFuture;
use tokio::time::{Instant, Sleep, sleep};

tokio::task_local! {
    /// The stream whose task is being polled: its response body reports to it.
    static STREAM: Arc<Stream>;
}

/// The streams of one connection, and hyper's executor for them. Clones share everything.
#[derive(Clone)]
pub(crate) struct Streams(Arc<Shared>);

struct Shared {
    write_timeout: Duration,
    /// Counts the streams given up on alone.
    timeouts: Counter,
    /// Open streams, and since when none has been.
    open: Mutex<Open>,
    /// Open streams that are waiting for a window.
    waiting: AtomicUsize,
    /// Told when every open stream stalled: the connection is to close.
    stalled: Notify,
}

struct Open {
    streams: usize,
    /// When the last stream ended, or the connection began; `None` while a stream is open.
    idle_since: Option<Instant>,
}

impl Streams {
    /// The streams of a new connection, given up on after `write_timeout` without a window;
    /// those given up on alone are counted in `timeouts`.
    pub(crate) fn new(write_timeout: Duration, timeouts: Counter) -> Streams {
        Streams(Arc::new(Shared {
            write_timeout,
            timeouts,
            open: Mutex::new(Open { streams: 0, idle_since: Some(Instant::now()) }),
            waiting: AtomicUsize::new(0),
            stalled: Notify::new(),
        }))
    }

    /// How long the connection has had no open stream; `None` while it has one.
    pub(crate) fn idle_for(&self) -> Option<Duration> {
        self.0.open().idle_since.map(|since| since.elapsed())
    }

    /// Completes once every open stream stalled.
    pub(crate) async fn stalled(&self) {
        self.0.stalled.notified().await;
    }
}

impl Shared {
    fn open(&self) -> std::sync::MutexGuard<'_, Open> {
        // The counts stay consistent whatever panicked while they were held: each update is
        // one statement.
        self.open.lock().unwrap_or_else(PoisonError::into_inner)
    }

    /// Gives up on `stream`, which waited for the write timeout: alone, or with the whole
    /// connection when every open stream waits.
    fn give_up(&self) {
        let open = self.open().streams;
        if self.waiting.load(Ordering::Relaxed) >= open {
            tracing::debug!(open, "every HTTP/2 stream stalled; closing the connection");
            self.stalled.notify_one();
        } else {
            tracing::debug!("an HTTP/2 stream got no window for the write timeout; resetting it");
            self.timeouts.increment(1);
        }
    }
}

impl<F> hyper::rt::Executor<F> for Streams
where
    F: Future<Output = ()> + Send + 'static,
{
    fn execute(&self, task: F) {
        let stream = Arc::new(Stream {
            shared: self.0.clone(),
            handed: AtomicU64::new(0),
            waiting: AtomicU64::new(0),
        });
        {
            let mut open = self.0.open();
            open.streams += 1;
            open.idle_since = None;
        }
        let task = Box::pin(STREAM.scope(stream.clone(), task));
        tokio::spawn(Watched { task, stream, deadline: None });
    }
}

/// One stream, as its body reports to its task.
struct Stream {
    shared: Arc<Shared>,
    /// Chunks the body handed over so far.
    handed: AtomicU64,
    /// The number of the chunk h2 has no room for yet, or 0 when none waits.
    waiting: AtomicU64,
}

impl Stream {
    /// The body handed over a chunk.
    fn handed(&self) {
        let chunk = self.handed.fetch_add(1, Ordering::Relaxed) + 1;
        if self.waiting.swap(chunk, Ordering::Relaxed) == 0 {
            self.shared.waiting.fetch_add(1, Ordering::Relaxed);
        }
    }

    /// The body is polled: h2 took the chunk handed over last.
    fn polled(&self) {
        if self.waiting.swap(0, Ordering::Relaxed) != 0 {
            self.shared.waiting.fetch_sub(1, Ordering::Relaxed);
        }
    }
}

/// A stream's task, given up on when it waits for a window for the write timeout.
struct Watched<F: Future> {
    task: Pin<Box<TaskLocalFuture<Arc<Stream>, F>>>,
    stream: Arc<Stream>,
    /// While a chunk waits: its number, and when the wait ends.
    deadline: Option<(u64, Pin<Box<Sleep>>)>,
}

impl<F: Future<Output = ()>> Future for Watched<F> {
    type Output = ();

    fn poll(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<()> {
        let this = self.get_mut();
        if this.task.as_mut().poll(cx).is_ready() {
            return Poll::Ready(());
        }
        let chunk = this.stream.waiting.load(Ordering::Relaxed);
        if chunk == 0 {
            this.deadline = None;
            return Poll::Pending;
        }
        let deadline = match &mut this.deadline {
            Some((waiting, deadline)) if *waiting == chunk => deadline,
            other => {
                let timeout = this.stream.shared.write_timeout;
                &mut other.insert((chunk, Box::pin(sleep(timeout)))).1
            }
        };
        ready!(deadline.as_mut().poll(cx));
        this.stream.shared.give_up();
        // Dropping the task resets the stream.
        Poll::Ready(())
    }
}

impl<F: Future> Drop for Watched<F> {
    fn drop(&mut self) {
        self.stream.polled();
        let mut open = self.stream.shared.open();
        open.streams -= 1;
        if open.streams == 0 {
            open.idle_since = Some(Instant::now());
        }
    }
}

/// A response body that tells its stream's task when it hands a chunk over and when it is
/// polled again; see the module docs.
pub(crate) struct WatchedBody<B>(B);

impl<B> WatchedBody<B> {
    pub(crate) fn new(body: B) -> WatchedBody<B> {
        WatchedBody(body)
    }
}

impl<B: Body + Unpin> Body for WatchedBody<B> {
    type Data = B::Data;
    type Error = B::Error;

    fn poll_frame(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<B::Data>, B::Error>>> {
        // Outside a stream's task (a test polling the body itself) there is nothing to tell.
        let _ = STREAM.try_with(|stream| stream.polled());
        let frame = ready!(Pin::new(&mut self.get_mut().0).poll_frame(cx));
        if let Some(Ok(frame)) = &frame
            && frame.data_ref().is_some_and(Buf::has_remaining)
        {
            let _ = STREAM.try_with(|stream| stream.handed());
        }
        Poll::Ready(frame)
    }

    fn is_end_stream(&self) -> bool {
        self.0.is_end_stream()
    }

    fn size_hint(&self) -> SizeHint {
        self.0.size_hint()
    }
}
