//! Embedding the engine: a program of its own that inserts, subscribes and reads the audit log
//! through `broker-core`, with no HTTP server at all.
//!
//! Run it with `cargo run -p broker-examples --example embed`.

use broker_core::{Broker, Config, Json, SubscribeOptions};
use broker_storage::MemoryStorage;
use serde_json::json;

#[tokio::main]
async fn main() -> Result<(), broker_core::Error> {
    // Any `Storage` will do: the in-memory backend here, `RedbStorage` for a durable file.
    let broker = Broker::open(MemoryStorage::new(), Config::default()).await?;
    broker.insert("user", Json::from(json!({ "name": "Rusty" }))).await?;

    // A subscriber following only `user` starts with its latest version, then goes live.
    let mut users = broker.subscribe(SubscribeOptions::new().events(["user"]));
    let watcher = tokio::spawn(async move {
        let mut seen = Vec::new();
        while let Some(entry) = users.next().await {
            println!("subscriber: #{} {} {}", entry.id(), entry.event(), entry.data());
            seen.push(entry.data().to_owned());
            if seen.len() == 3 {
                break;
            }
        }
        seen
    });

    broker.insert("cart", Json::from(json!({ "items": 2 }))).await?;
    broker.insert("user", Json::from(json!({ "name": "Ferris" }))).await?;
    let stored = broker.insert("user", Json::parse(r#"{"name": "Corro"}"#)?).await?;
    println!("inserted: #{} at {} ms", stored.id(), stored.timestamp());

    let seen = watcher.await.expect("the subscriber task finished");
    assert_eq!(seen, [r#"{"name":"Rusty"}"#, r#"{"name":"Ferris"}"#, r#"{"name":"Corro"}"#]);

    for version in broker.audit("user", 0, 100).await? {
        println!("audit: #{} {} {}", version.id, version.event, version.data);
    }
    broker.close().await
}
