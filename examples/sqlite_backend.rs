//! A storage backend written from scratch, `SqliteStorage` (in `src/sqlite.rs`), proved by the
//! conformance suite and then used to run the engine.
//!
//! Run it with `cargo run -p broker-examples --example sqlite_backend`.

use broker_core::{Broker, Config, Json, SubscribeOptions};
use broker_examples::SqliteStorage;
use broker_storage::conformance;
use serde_json::json;

#[tokio::main]
async fn main() -> Result<(), Box<dyn std::error::Error>> {
    let dir = tempfile::tempdir()?;

    // First prove the backend keeps every contract of the trait.
    let mut count = 0;
    conformance::run(|| {
        count += 1;
        let path = dir.path().join(format!("conformance-{count}.sqlite"));
        async move { SqliteStorage::open(path).await.expect("open a fresh store") }
    })
    .await;
    println!("conformance suite: passed");

    // Then use it: the engine neither knows nor cares which backend it runs on.
    let path = dir.path().join("broker.sqlite");
    let broker = Broker::open(SqliteStorage::open(&path).await?, Config::default()).await?;
    broker.insert("temperature", Json::from(json!({ "celsius": 21.5 }))).await?;
    broker.insert("temperature", Json::from(json!({ "celsius": 22.0 }))).await?;
    broker.close().await?;

    // Reopened, the store still has both versions and the same identity.
    let broker = Broker::open(SqliteStorage::open(&path).await?, Config::default()).await?;
    let history = broker.audit("temperature", 0, 10).await?;
    assert_eq!(history.len(), 2);
    let mut snapshot = broker.subscribe(SubscribeOptions::new());
    let latest = snapshot.try_next().expect("the snapshot holds the latest temperature");
    println!("after reopening: latest #{} {} {}", latest.id(), latest.event(), latest.data());
    assert_eq!(latest.data(), r#"{"celsius":22.0}"#);
    broker.close().await?;
    Ok(())
}
