//! The redb backend of the broker's [`Storage`](broker_storage::Storage) trait: every version in
//! one local file, committed durably, readable by event name and by id.
//!
//! # Layout
//!
//! - `store.rs`: [`RedbStorage`], the trait's implementation, which moves every redb call off the
//!   async threads and guards the open database until [`close`](broker_storage::Storage::close).
//! - `ops.rs`: the blocking work of each operation, one redb transaction each.
//! - `schema.rs`: the tables of the file and its identity, documented there.
//! - `error.rs`: how redb's errors map into [`StorageError`](broker_storage::StorageError).
//!
//! # Example
//!
//! ```
//! use broker_storage::{NewVersion, Storage};
//! use broker_storage_redb::RedbStorage;
//!
//! # tokio::runtime::Runtime::new().unwrap().block_on(async {
//! let dir = tempfile::tempdir()?;
//! let store = RedbStorage::open(dir.path().join("broker.redb")).await?;
//! let stored = store
//!     .append(vec![NewVersion::new("user", 1_700_000_000_000, r#"{"name":"Rusty"}"#)])
//!     .await?;
//! assert_eq!(stored[0].id, 1);
//! assert_eq!(store.history("user", 0, 10).await?, stored);
//! store.close().await?;
//! # Ok::<(), Box<dyn std::error::Error>>(())
//! # }).unwrap();
//! ```

mod error;
mod ops;
mod schema;
mod store;
#[cfg(test)]
mod tests;

pub use store::RedbStorage;
