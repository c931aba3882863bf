//! Support code for the examples: [`SqliteStorage`], a storage backend written from scratch.
//!
//! It shows what a custom backend takes: implement the four reads and writes of
//! [`Storage`](broker_storage::Storage) with their contracts, keep blocking work off the async
//! threads, and run [`broker_storage::conformance::run`] in its tests to prove it.

mod sqlite;

pub use sqlite::SqliteStorage;
