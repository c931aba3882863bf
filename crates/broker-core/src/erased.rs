//! Type erasure for [`Storage`], so that [`Broker`](crate::Broker) is one concrete type whatever
//! backend it runs on.
//!
//! The trait's methods return `impl Future`, which cannot be called through `dyn`; this private
//! mirror boxes each future instead. One allocation per storage call is nothing beside the call.

use std::future::Future;
use std::pin::Pin;

use broker_storage::{
    Horizon, NewVersion, Pruned, Retention, Storage, StorageError, Tail, Uuid, Version,
};

type BoxFuture<'a, T> = Pin<Box<dyn Future<Output = T> + Send + 'a>>;
type Versions = Result<Vec<Version>, StorageError>;

pub(crate) trait DynStorage: Send + Sync + 'static {
    fn database_id(&self) -> Uuid;
    fn append(&self, batch: Vec<NewVersion>) -> BoxFuture<'_, Versions>;
    fn history<'a>(&'a self, event: &'a str, after: u64, limit: usize) -> BoxFuture<'a, Versions>;
    fn since(&self, after: u64, limit: usize) -> BoxFuture<'_, Versions>;
    fn tail(&self, after: u64) -> Tail;
    fn latest_at(&self, at: u64) -> BoxFuture<'_, Versions>;
    fn prune<'a>(
        &'a self,
        event: &'a str,
        retention: Retention,
        limit: usize,
    ) -> BoxFuture<'a, Result<Pruned, StorageError>>;
    fn horizons(&self) -> BoxFuture<'_, Result<Vec<Horizon>, StorageError>>;
    fn size(&self) -> BoxFuture<'_, Result<Option<u64>, StorageError>>;
    fn writable(&self) -> BoxFuture<'_, Result<(), StorageError>>;
    fn close(&self) -> BoxFuture<'_, Result<(), StorageError>>;
}

impl<S: Storage> DynStorage for S {
    fn database_id(&self) -> Uuid {
        Storage::database_id(self)
    }

    fn append(&self, batch: Vec<NewVersion>) -> BoxFuture<'_, Versions> {
        Box::pin(Storage::append(self, batch))
    }

    fn history<'a>(&'a self, event: &'a str, after: u64, limit: usize) -> BoxFuture<'a, Versions> {
        Box::pin(Storage::history(self, event, after, limit))
    }

    fn since(&self, after: u64, limit: usize) -> BoxFuture<'_, Versions> {
        Box::pin(Storage::since(self, after, limit))
    }

    fn tail(&self, after: u64) -> Tail {
        Storage::tail(self, after)
    }

    fn latest_at(&self, at: u64) -> BoxFuture<'_, Versions> {
        Box::pin(Storage::latest_at(self, at))
    }

    fn prune<'a>(
        &'a self,
        event: &'a str,
        retention: Retention,
        limit: usize,
    ) -> BoxFuture<'a, Result<Pruned, StorageError>> {
        Box::pin(Storage::prune(self, event, retention, limit))
    }

    fn horizons(&self) -> BoxFuture<'_, Result<Vec<Horizon>, StorageError>> {
        Box::pin(Storage::horizons(self))
    }

    fn size(&self) -> BoxFuture<'_, Result<Option<u64>, StorageError>> {
        Box::pin(Storage::size(self))
    }

    fn writable(&self) -> BoxFuture<'_, Result<(), StorageError>> {
        Box::pin(Storage::writable(self))
    }

    fn close(&self) -> BoxFuture<'_, Result<(), StorageError>> {
        Box::pin(Storage::close(self))
    }
}
