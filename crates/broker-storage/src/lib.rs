//! The storage layer of the broker: the [`Storage`] trait every backend implements, the records it
//! stores, an in-memory backend, and a conformance suite that checks a backend against every
//! contract the trait documents.
//!
//! # Layout
//!
//! - `version.rs`: [`NewVersion`] (what a publisher hands in) and [`Version`] (what was stored).
//! - `retention.rs`: [`Retention`] (what a prune keeps), [`Pruned`] and [`Horizon`] (what it did).
//! - `storage.rs`: the [`Storage`] trait and its contracts.
//! - `tail.rs`: [`Tail`], the stream of committed versions a store delivers, and [`LocalTails`],
//!   which serves the tails of a store whose writers all run in this process.
//! - `writer_thread.rs`: [`mark_writer_thread`] and [`on_writer_thread`], which tell a store
//!   that the thread calling it is an engine's writer of its own, which it may block, and
//!   [`run_blocking`], which runs blocking work there or on Tokio's blocking pool.
//! - `error.rs`: [`StorageError`], the one error type every backend maps its failures into.
//! - `memory.rs`: [`MemoryStorage`], a backend that keeps everything in memory.
//! - `conformance.rs`: [`conformance::run`], the suite a backend's tests call.
//!
//! # Example
//!
//! ```
//! use broker_storage::{MemoryStorage, NewVersion, Storage};
//!
//! # tokio::runtime::Runtime::new().unwrap().block_on(async {
//! let store = MemoryStorage::new();
//! let stored = store
//!     .append(vec![NewVersion::new("user", 1_700_000_000_000, r#"{"name":"Rusty"}"#)])
//!     .await?;
//! assert_eq!(stored[0].id, 1);
//! assert_eq!(store.history("user", 0, 10).await?, stored);
//! # Ok::<(), broker_storage::StorageError>(())
//! # }).unwrap();
//! ```

pub mod conformance;
mod error;
mod memory;
mod retention;
mod storage;
mod tail;
mod version;
mod writer_thread;

pub use error::StorageError;
pub use memory::MemoryStorage;
pub use retention::{Horizon, Pruned, Retention};
pub use storage::Storage;
pub use tail::{LocalTails, Tail};
pub use uuid::Uuid;
pub use version::{NewVersion, Version};
pub use writer_thread::{mark_writer_thread, on_writer_thread, run_blocking};

/// How long a backend remembers an idempotency key unless it is told otherwise: two minutes, from
/// the timestamp of the version stored under it. See [`Storage::append`].
pub const DEFAULT_IDEMPOTENCY_WINDOW: std::time::Duration = std::time::Duration::from_secs(120);
