//! The broker's engine: insert-only publish/subscribe over any [`Storage`] backend.
//!
//! Publishers [`insert`](Broker::insert) immutable versions of named events, one at a time or
//! several together ([`insert_many`](Broker::insert_many), all or nothing, in one commit). Each
//! version is committed durably, given an id that orders it after every version before it, and
//! published.
//! A [`Subscription`] first receives the latest version of every event it follows (or, when it
//! resumes, every version after the last one it received), then every new version as it commits.
//! [`audit`](Broker::audit) reads the whole history of one event, page by page.
//!
//! The engine does no I/O except through the storage trait: no sockets, no HTTP, no files. A
//! transport, such as the `broker-http` crate, serves it to the network.
//!
//! # Layout
//!
//! Modules import only modules listed before them, so the engine reads from the bottom up, and
//! only this file re-exports.
//!
//! - `error.rs`: [`Error`], the one error type.
//! - `name.rs`, `json.rs`, `key.rs`: validation of event names, data and idempotency keys, and
//!   the keys of the versions of an insert of several.
//! - `entry.rs`: [`Entry`], a committed version shared by every subscriber.
//! - `clock.rs`: the wall clock in milliseconds, the unit of timestamps.
//! - `filter.rs`: which events a subscription follows.
//! - `retention.rs`: [`RetentionRule`], which events keep how much history.
//! - `metrics.rs`: the engine's metrics; [`metrics`] names them for the embedding program.
//! - `erased.rs`: the storage trait behind one concrete type.
//! - `config.rs`: [`Config`], the tuning a broker is opened with.
//! - `options.rs`: [`SubscribeOptions`], what to follow and where to start.
//! - `window.rs`: the strong references behind the live channel, bounded in entries and bytes.
//! - `horizons.rs`: how far back each event's history reaches, copied from the storage.
//! - `past.rs`: [`At`], and the state of the log at a past point, from the storage's index.
//! - `state.rs`: the latest version of every event, the live channel and its window, in memory.
//! - `pruner.rs`: the task that prunes by the retention rules and refreshes the horizons.
//! - `storage_health.rs`: whether the storage takes writes, and the watch for its recovery.
//! - `item.rs`: what one insert queues for the writer (one version or several), and its answer.
//! - `pending.rs`: the inserts taken from the queue, cut into batches of at most `max_batch`
//!   versions without splitting an insert.
//! - `feed.rs`: the task that feeds what the storage's tail delivers into the state and the live
//!   channel, and answers each insert once its version is there.
//! - `writer.rs`: the thread that commits inserts in batches (group commit).
//! - `shared.rs`: the engine's parts that the handle and every subscription hold together.
//! - `subscription.rs`: [`Subscription`], start, catch-up and slow-consumer policy.
//! - `broker.rs`: [`Broker`], the handle, on top of everything else.
//!
//! # Example
//!
//! ```
//! use broker_core::{Broker, Config, Json, SubscribeOptions};
//! use broker_storage::MemoryStorage;
//!
//! # tokio::runtime::Runtime::new().unwrap().block_on(async {
//! let broker = Broker::open(MemoryStorage::new(), Config::default()).await?;
//! broker.insert("user", Json::parse(r#"{"name": "Rusty"}"#)?).await?;
//!
//! let mut subscription = broker.subscribe(SubscribeOptions::new());
//! let first = subscription.next().await.expect("the snapshot holds the latest user");
//! assert_eq!((first.event(), first.data()), ("user", r#"{"name":"Rusty"}"#));
//!
//! broker.insert("user", Json::parse(r#"{"name": "Ferris"}"#)?).await?;
//! assert_eq!(subscription.next().await.expect("live").data(), r#"{"name":"Ferris"}"#);
//!
//! let history = broker.audit("user", 0, 100).await?;
//! assert_eq!(history.len(), 2);
//! broker.close().await?;
//! # Ok::<(), broker_core::Error>(())
//! # }).unwrap();
//! ```
//!
//! [`Storage`]: broker_storage::Storage

mod broker;
mod clock;
mod config;
mod entry;
mod erased;
mod error;
mod feed;
mod filter;
mod horizons;
mod item;
mod json;
mod key;
pub mod metrics;
mod name;
mod options;
mod past;
mod pending;
mod pruner;
mod retention;
mod shared;
mod state;
mod storage_health;
mod subscription;
#[cfg(test)]
mod tests;
#[cfg(test)]
mod tests_many;
#[cfg(test)]
mod tests_retention;
mod window;
mod writer;

pub use broker::Broker;
pub use broker_storage::{StorageError, Uuid, Version};
pub use config::Config;
pub use entry::Entry;
pub use error::Error;
pub use json::Json;
pub use name::{DEFAULT_MAX_EVENT_NAME_LEN, validate_event_name};
pub use options::SubscribeOptions;
pub use past::At;
pub use retention::RetentionRule;
pub use subscription::Subscription;
