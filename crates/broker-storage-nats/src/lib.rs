//! The NATS JetStream backend of the broker's [`Storage`](broker_storage::Storage) trait: every
//! version in one replicated stream, which any number of brokers share as one database.
//!
//! Each version is a message of the stream: its subject names the event, its payload is the
//! data, a header holds the timestamp, and its stream sequence is the version's id. The stream
//! is created on first use with the settings that keep every version (see `stream.rs`). The
//! servers should write every message to disk before acknowledging it: the documented
//! deployments set `jetstream { sync_interval: always }`, since JetStream otherwise syncs only
//! every two minutes, and a version acknowledged in between could be lost with a machine.
//!
//! The idempotency window is the stream's `duplicate_window`: the servers remember each
//! message id for that long after they stored it, which for the engine's versions is within
//! moments of their timestamp. Every version is published with a message id, its idempotency
//! key or a fresh one, so that the store's own retries of a lost answer are never stored twice.
//!
//! Pruning is an option ([`NatsOptions::prune`]): it removes old versions with the stream's own
//! purge, which the stream must then allow, and keeps each pruned event's horizon in a
//! key-value bucket beside the stream, which every broker on the stream reads.
//!
//! # Layout
//!
//! - `store.rs`: [`NatsStorage`], the trait's implementation: connecting, and each operation
//!   bounded in time; `shared.rs`: what the operations share, the high mark of what the store
//!   has seen (which reads must cover) among it.
//! - `options.rs`: [`NatsOptions`] and [`Credentials`].
//! - `stream.rs`: creating the stream, and the start-up checks of its settings.
//! - `append.rs`: atomic batch publishes with message ids, their retries, and telling retries
//!   from new versions.
//! - `reads.rs`: `history` and `since` through batched direct gets, read again when a replica
//!   that is behind answers; `snapshot.rs`: `latest` and `latest_at`, through multi-subject
//!   gets; `direct.rs`: the direct get request itself.
//! - `prune.rs`: pruning with purges; `horizons.rs`: the horizons bucket.
//! - `tail.rs`: tails, as ordered consumers that resume by themselves.
//! - `subject.rs`: event names as subjects; `record.rs`: versions as messages.
//! - `api.rs`: requests to the JetStream API and how its errors map into
//!   [`StorageError`](broker_storage::StorageError).
//!
//! # Example
//!
//! ```no_run
//! use broker_storage::{NewVersion, Storage};
//! use broker_storage_nats::{NatsOptions, NatsStorage};
//!
//! # #[tokio::main]
//! # async fn main() -> Result<(), broker_storage::StorageError> {
//! let mut options = NatsOptions::default();
//! options.servers = vec!["nats://127.0.0.1:4222".into()];
//! options.replicas = 1;
//! let store = NatsStorage::connect(options).await?;
//! let stored = store
//!     .append(vec![NewVersion::new("user", 1_700_000_000_000, r#"{"name":"Rusty"}"#)])
//!     .await?;
//! assert_eq!(store.history("user", 0, 10).await?, stored);
//! store.close().await?;
//! # Ok(())
//! # }
//! ```

mod api;
mod append;
mod direct;
mod horizons;
mod options;
mod prune;
mod reads;
mod record;
mod shared;
mod snapshot;
mod store;
mod stream;
mod subject;
mod tail;

#[cfg(test)]
mod tests;

pub use options::{Credentials, NatsOptions};
pub use store::NatsStorage;
