//! [`Tail`]: the stream of committed versions a store delivers, and [`LocalTails`], the tails of
//! a store whose every writer runs in this process.

use std::future::Future;
use std::pin::Pin;
use std::sync::{Arc, Mutex, MutexGuard};
use std::task::{Context, Poll};

use futures_util::Stream;
use futures_util::stream::BoxStream;
use tokio::sync::mpsc;

use crate::{StorageError, Version};

/// The versions a store commits after a given id, in id order; see
/// [`Storage::tail`](crate::Storage::tail) for the contract.
///
/// A backend builds it from any stream of batches with [`Tail::new`].
pub struct Tail {
    batches: BoxStream<'static, Result<Vec<Version>, StorageError>>,
}

impl Tail {
    /// A tail that delivers what `batches` yields.
    pub fn new(
        batches: impl Stream<Item = Result<Vec<Version>, StorageError>> + Send + 'static,
    ) -> Tail {
        Tail { batches: Box::pin(batches) }
    }

    /// A tail that has ended: what a closed store hands out.
    pub fn ended() -> Tail {
        Tail::new(futures_util::stream::empty())
    }

    /// The next batch of committed versions; `None` once the store is closed.
    pub async fn next(&mut self) -> Option<Result<Vec<Version>, StorageError>> {
        futures_util::StreamExt::next(&mut self.batches).await
    }
}

impl Stream for Tail {
    type Item = Result<Vec<Version>, StorageError>;

    fn poll_next(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Option<Self::Item>> {
        self.batches.as_mut().poll_next(cx)
    }
}

impl std::fmt::Debug for Tail {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Tail").finish_non_exhaustive()
    }
}

/// How many stored versions a tail reads at a time while it catches up.
const CATCH_UP_PAGE: usize = 512;

/// The tails of a store whose appends all run in this process (a local file, memory): the
/// backend hands every committed batch to [`publish`](LocalTails::publish), and each tail gets
/// it without reading storage again.
///
/// A batch is shared by every tail, not cloned for each: a tail clones the versions it delivers
/// when its reader takes them (which copies no text: see [`Version`]), so that the backend's
/// append, which publishes under the lock that orders its commits, clones nothing (see
/// [`publish_shared`](LocalTails::publish_shared)).
///
/// A tail that starts behind the last committed id first reads what it missed from storage, in
/// pages, then delivers the batches published since it started, skipping what it already read.
#[derive(Debug)]
pub struct LocalTails {
    inner: Mutex<Inner>,
}

#[derive(Debug)]
struct Inner {
    /// The last id published; tails started now read up to it from storage.
    last_id: u64,
    /// One sender per live tail; dropped when its tail is, or when the store closes.
    senders: Vec<mpsc::UnboundedSender<Arc<[Version]>>>,
    closed: bool,
}

impl LocalTails {
    /// The tails of a store whose last committed id is `last_id`.
    pub fn new(last_id: u64) -> LocalTails {
        LocalTails { inner: Mutex::new(Inner { last_id, senders: Vec::new(), closed: false }) }
    }

    fn lock(&self) -> MutexGuard<'_, Inner> {
        // Every mutation below completes without panicking: a poisoned lock guards sound data.
        self.inner.lock().unwrap_or_else(|poison| poison.into_inner())
    }

    /// Hands a committed batch to every tail.
    ///
    /// The backend calls it once per committed batch, in commit order, after the commit is
    /// durable and before the next batch commits (under the lock that orders its commits), so
    /// that tails see ids in order.
    pub fn publish(&self, batch: &[Version]) {
        if !batch.is_empty() {
            self.publish_shared(batch.into());
        }
    }

    /// [`publish`](LocalTails::publish) for a batch the backend already holds shared, such as
    /// one it also keeps in memory itself: no version is copied here.
    pub fn publish_shared(&self, batch: Arc<[Version]>) {
        let Some(last) = batch.last() else { return };
        let mut inner = self.lock();
        inner.last_id = inner.last_id.max(last.id);
        inner.senders.retain(|sender| sender.send(Arc::clone(&batch)).is_ok());
    }

    /// Ends every tail, once it has delivered what was published before; later tails end at once.
    pub fn close(&self) {
        let mut inner = self.lock();
        inner.closed = true;
        inner.senders.clear();
    }

    /// A tail from `after`. `read(after, limit)` reads stored versions as
    /// [`Storage::since`](crate::Storage::since) does; it serves the catch-up, if the tail starts
    /// behind the last published id.
    pub fn tail<R, Fut>(&self, after: u64, mut read: R) -> Tail
    where
        R: FnMut(u64, usize) -> Fut + Send + 'static,
        Fut: Future<Output = Result<Vec<Version>, StorageError>> + Send,
    {
        let (sender, mut receiver) = mpsc::unbounded_channel();
        let caught_up_to = {
            let mut inner = self.lock();
            if inner.closed {
                return Tail::ended();
            }
            inner.senders.push(sender);
            inner.last_id
        };
        Tail::new(async_stream::stream! {
            let mut position = after;
            // What was committed before the tail started: from storage, up to `caught_up_to`.
            while position < caught_up_to {
                match read(position, CATCH_UP_PAGE).await {
                    Ok(page) => {
                        let page: Vec<Version> =
                            page.into_iter().filter(|v| v.id <= caught_up_to).collect();
                        let Some(last) = page.last() else { break };
                        position = last.id;
                        yield Ok(page);
                    }
                    Err(error) => {
                        yield Err(error);
                        return;
                    }
                }
            }
            // Then what was published since, which may overlap what was read.
            while let Some(batch) = receiver.recv().await {
                let batch: Vec<Version> =
                    batch.iter().filter(|v| v.id > position).cloned().collect();
                if let Some(last) = batch.last() {
                    position = last.id;
                    yield Ok(batch);
                }
            }
        })
    }
}

#[cfg(test)]
mod tests {
    use std::sync::Arc;

    use super::LocalTails;
    use crate::{StorageError, Version};

    fn version(id: u64) -> Version {
        Version { id, event: "e".into(), timestamp: 1, data: format!("{id}").into() }
    }

    async fn nothing_stored(_: u64, _: usize) -> Result<Vec<Version>, StorageError> {
        Ok(Vec::new())
    }

    /// Every tail delivers a shared batch whole and in order, as a copied one, and the batch
    /// the backend keeps is not touched by what the tails do with theirs.
    #[tokio::test]
    async fn a_shared_batch_reaches_every_tail_once_in_order() {
        let tails = LocalTails::new(0);
        let mut first = tails.tail(0, nothing_stored);
        let mut second = tails.tail(0, nothing_stored);
        let kept: Arc<[Version]> = vec![version(1), version(2), version(3)].into();
        tails.publish_shared(Arc::clone(&kept));
        tails.publish(&[version(4)]);
        tails.close();
        for tail in [&mut first, &mut second] {
            let mut ids = Vec::new();
            while let Some(batch) = tail.next().await {
                let batch = batch.expect("a published batch");
                ids.extend(batch.into_iter().map(|version| version.id));
            }
            assert_eq!(ids, [1, 2, 3, 4]);
        }
        assert_eq!(kept.iter().map(|version| &*version.data).collect::<Vec<_>>(), ["1", "2", "3"]);
        assert_eq!(Arc::strong_count(&kept), 1, "the tails hold no share of it once ended");
    }

    /// A tail that started after a batch was published skips what it already read from storage.
    #[tokio::test]
    async fn a_tail_started_later_skips_the_shared_versions_it_read() {
        let tails = LocalTails::new(0);
        tails.publish_shared(vec![version(1), version(2)].into());
        let mut tail =
            tails.tail(1, |after, _| async move { Ok((after + 1..=2).map(version).collect()) });
        tails.publish_shared(vec![version(2), version(3)].into());
        tails.close();
        let mut ids = Vec::new();
        while let Some(batch) = tail.next().await {
            ids.extend(batch.expect("a batch").into_iter().map(|version| version.id));
        }
        assert_eq!(ids, [2, 3]);
    }
}
