//! Support code for the examples: [`SqliteStorage`], a storage backend written from scratch.
//!
//! It shows what a custom backend takes: implement the reads, writes, prunes and tail of
//! [`Storage`](broker_storage::Storage) with their contracts (idempotency keys included; a store
//! whose only writer is this process serves its tails with
//! [`LocalTails`](broker_storage::LocalTails)), keep blocking work off the async threads, and run
//! [`broker_storage::conformance::run`] in its tests to prove it.

mod sqlite;

pub use sqlite::SqliteStorage;
