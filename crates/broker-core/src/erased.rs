//! Type erasure for [`Storage`], so that [`Broker`](crate::Broker) is one concrete type whatever
//! backend it runs on.
//!
//! The trait's methods return `impl Future`, which cannot be called through `dyn`; this private
//! mirror boxes each future instead. One allocation per storage call is nothing beside the call.

use std::future::Future;
use std::pin::Pin;

use broker_storage::{NewVersion, Storage, StorageError, Tail, Uuid, Version};

type BoxFuture<'a, T> = Pin<Box<dyn Future<Output = T> + Send + 'a>>;
type Versions = Result<Vec<Version>, StorageError>;

pub(crate) trait DynStorage: Send + Sync + 'static {
    fn database_id(&self) -> Uuid;
    fn append(&self, batch: Vec<NewVersion>) -> BoxFuture<'_, Versions>;
    fn history<'a>(&'a self, event: &'a str, after: u64, limit: usize) -> BoxFuture<'a, Versions>;
    fn since(&self, after: u64, limit: usize) -> BoxFuture<'_, Versions>;
    fn tail(&self, after: u64) -> Tail;
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

    fn writable(&self) -> BoxFuture<'_, Result<(), StorageError>> {
        Box::pin(Storage::writable(self))
    }

    fn close(&self) -> BoxFuture<'_, Result<(), StorageError>> {
        Box::pin(Storage::close(self))
    }
}
