//! A full disk, for real: the database on a small tmpfs that the test mounts (it needs root, as
//! CI has). Inserts that find no space get `507 storage_full`, `/readyz` and a metric say why in
//! one log line, open streams stay open, and once space is freed the broker takes inserts again
//! by itself, with nothing acknowledged lost, and shuts down cleanly.

use std::time::Duration;

use serde_json::json;
use tokio::time::Instant;

use crate::support::{Server, Sse, Tmpfs, fill};

async fn readiness(server: &Server) -> (u16, serde_json::Value) {
    let reply = server.get("/readyz").await;
    (reply.status, serde_json::from_str(&reply.body).expect("readiness is JSON"))
}

#[tokio::test]
async fn a_full_disk_gets_507_and_the_broker_recovers_by_itself_once_space_is_freed() {
    let disk = Tmpfs::mount("20m");
    let filler = disk.path("filler");
    fill(&filler, 4 * 1024 * 1024);
    let data = disk.path("broker.redb");
    let data = data.to_str().expect("a UTF-8 path");
    let mut server = Server::start_with(&["--data", data, "--min-free-space", "0"], &[]).await;
    let mut stream = Sse::snapshot(&server).await;

    // Insert 8 KiB versions until the disk is full.
    let payload = "x".repeat(8 * 1024);
    let mut acknowledged = Vec::new();
    let refused = loop {
        let body = json!({ "event": "doc", "data": { "n": acknowledged.len(), "pad": payload } });
        let reply = server.post_insert(&body.to_string()).await;
        if reply.status != 201 {
            break reply;
        }
        acknowledged.push(reply.json()["id"].as_u64().expect("an id"));
        assert!(acknowledged.len() < 5000, "20 MiB never filled up");
    };
    assert_eq!(refused.status, 507, "{refused}");
    assert_eq!(refused.json()["error"], "storage_full", "{refused}");
    assert!(refused.header("retry-after").is_some(), "{refused}");
    assert!(acknowledged.len() > 100, "only {} inserts fit", acknowledged.len());
    // Further inserts are refused the same way, quickly, and logged once.
    for _ in 0..20 {
        let reply = server.post_insert(r#"{"event":"doc","data":0}"#).await;
        assert_eq!((reply.status, reply.json()["error"].clone()), (507, json!("storage_full")));
    }
    let (status, body) = readiness(&server).await;
    assert_eq!((status, &body["status"]), (503, &json!("storage_failing")), "{body}");
    assert!(body["reason"].as_str().is_some_and(|reason| !reason.is_empty()), "{body}");
    assert_eq!(server.metrics().await.value("broker_storage_failing"), 1.0);
    let failing_lines = server.log().matches("storage is failing").count();
    assert_eq!(failing_lines, 1, "one log line says why:\n{}", server.log());
    assert_eq!(server.health().await.subscribers, 1, "the open stream stays open");

    // Free space: the broker notices by itself, without an insert to try.
    std::fs::remove_file(&filler).expect("free the filler's space");
    let freed = Instant::now();
    while readiness(&server).await.0 != 200 {
        assert!(freed.elapsed() < Duration::from_secs(10), "not ready 10 s after space was freed");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    let recovered_in = freed.elapsed();
    eprintln!("ready again {recovered_in:?} after space was freed");
    assert_eq!(server.metrics().await.value("broker_storage_failing"), 0.0);
    let last = server.insert("doc", json!("after")).await;
    assert!(last.id > *acknowledged.last().expect("some"), "ids go on increasing");
    acknowledged.push(last.id);
    // The stream that was open all along receives the new version.
    let events = stream.events(acknowledged.len()).await;
    let streamed: Vec<u64> = events.iter().map(|event| event.id).collect();
    assert_eq!(streamed, acknowledged, "the stream open all along has every version, once");

    // A clean stop, and every acknowledged version is still there after it.
    server.restart().await;
    let stored: Vec<u64> = server.audit("doc").await.iter().map(|version| version.id).collect();
    assert_eq!(stored, acknowledged, "every acknowledged version, once, at its id");
    let exit = server.stop("TERM").await;
    assert!(exit.status.success(), "SIGTERM exits 0: {}", server.log());
}

#[tokio::test]
async fn the_free_space_guard_refuses_inserts_before_the_disk_is_full() {
    let disk = Tmpfs::mount("16m");
    let data = disk.path("broker.redb");
    let data = data.to_str().expect("a UTF-8 path");
    let mut server = Server::start_with(&["--data", data, "--min-free-space", "64MiB"], &[]).await;
    let reply = server.post_insert(r#"{"event":"doc","data":1}"#).await;
    assert_eq!((reply.status, reply.json()["error"].clone()), (507, json!("storage_full")));
    assert!(reply.body.contains("no space left"), "{reply}");
    assert_eq!(server.health().await.last_id, 0, "nothing was stored");
    assert!(server.log().contains("below the minimum"), "the log says why:\n{}", server.log());
    let exit = server.stop("TERM").await;
    assert!(exit.status.success(), "SIGTERM exits 0: {}", server.log());
}
