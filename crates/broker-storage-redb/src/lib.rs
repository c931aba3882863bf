//! The redb backend of the broker's [`Storage`](broker_storage::Storage) trait: every version in
//! one local file, committed durably, readable by event name and by id, and able to survive a
//! full disk, I/O errors and damaged files.
//!
//! # Layout
//!
//! - `store.rs`: [`RedbStorage`], the trait's implementation, which moves every redb call off the
//!   async threads, guards the open database until [`close`](broker_storage::Storage::close),
//!   reopens it after a failure, and hands each commit to the tails.
//! - `options.rs`: [`RedbOptions`], the free-space minimum, cache size, reopen interval and
//!   idempotency window.
//! - `health.rs`: whether the database failed, and when it may be reopened.
//! - `open.rs`: opening the file, first and after a failure.
//! - `ops.rs`: the blocking work of each operation, one redb transaction each; `retention.rs`
//!   that of a prune (in short transactions), of the horizons and of the state at a past id, and
//!   `counts.rs` the per-event counts a prune reads.
//! - `space.rs`: the free-space guard.
//! - `check.rs` and `backup.rs`: [`RedbStorage::check`] ([`CheckReport`]) and
//!   [`RedbStorage::backup`] ([`BackupReport`]).
//! - `schema.rs`: the tables of the file and its identity, documented there, and the upgrade of
//!   files of earlier formats; `blocks.rs` the log's table, blocks of versions in id order, and
//!   `index.rs` the runs of each event's ids.
//! - `error.rs`: how redb's errors and panics map into
//!   [`StorageError`](broker_storage::StorageError).
//!
//! # Example
//!
//! ```
//! use broker_storage::{NewVersion, Storage};
//! use broker_storage_redb::{RedbOptions, RedbStorage};
//!
//! # tokio::runtime::Runtime::new().unwrap().block_on(async {
//! let dir = tempfile::tempdir()?;
//! let mut options = RedbOptions::default();
//! options.cache_size = 16 * 1024 * 1024;
//! let store = RedbStorage::open_with(dir.path().join("broker.redb"), options).await?;
//! let stored = store
//!     .append(vec![NewVersion::new("user", 1_700_000_000_000, r#"{"name":"Rusty"}"#)])
//!     .await?;
//! assert_eq!(stored[0].id, 1);
//! assert_eq!(store.history("user", 0, 10).await?, stored);
//!
//! let backup = dir.path().join("backup.redb");
//! store.backup(&backup).await?;
//! store.close().await?;
//! assert!(RedbStorage::check(&backup).await?.is_clean());
//! # Ok::<(), Box<dyn std::error::Error>>(())
//! # }).unwrap();
//! ```

mod backup;
mod blocks;
mod check;
mod counts;
mod error;
mod health;
mod index;
mod journal;
mod open;
mod ops;
mod options;
mod overlay;
mod retention;
mod schema;
mod space;
mod store;
#[cfg(test)]
mod tests;

pub use backup::BackupReport;
pub use check::CheckReport;
pub use options::RedbOptions;
pub use store::RedbStorage;
