//! The server's life: health, restarts on the same data, graceful shutdown on SIGTERM and
//! SIGINT, and noticing subscribers that go away.

use std::collections::BTreeSet;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Duration;

use futures_util::StreamExt;
use serde_json::json;

use crate::support::{Frame, Server, Sse, Version, ids};

#[tokio::test]
async fn healthz_reports_status_database_id_last_id_and_subscribers() {
    let server = Server::start().await;
    let health = server.health().await;
    assert_eq!(health.status, "ok");
    let hex = health.database_id.bytes().all(|b| matches!(b, b'0'..=b'9' | b'a'..=b'f'));
    assert!(health.database_id.len() == 32 && hex, "database_id {:?}", health.database_id);
    assert_eq!((health.last_id, health.subscribers), (0, 0));

    server.insert("a", json!(1)).await;
    let last = server.insert("b", json!(2)).await;
    let sse = Sse::snapshot(&server).await;
    server.wait_for_subscribers(1, Duration::from_secs(5)).await;
    let health = server.health().await;
    assert_eq!(health.last_id, last.id);
    assert_eq!(health.subscribers, 1);
    drop(sse);
}

async fn audit_all(server: &Server) -> Vec<Vec<Version>> {
    let mut all = Vec::new();
    for event in ["a", "b", "c"] {
        all.push(server.audit(event).await);
    }
    all
}

#[tokio::test]
async fn data_survives_a_restart() {
    let mut server = Server::start().await;
    let mut last = 0;
    for (i, event) in ["a", "b", "a", "c", "a", "b"].iter().enumerate() {
        last = server.insert(event, json!({"i": i, "text": "é 🦀"})).await.id;
    }
    let before = audit_all(&server).await;
    let snapshot_before = Sse::snapshot(&server).await.events(3).await;
    let health_before = server.health().await;

    server.restart().await;
    assert!(server.data_path().is_file());
    assert_eq!(audit_all(&server).await, before, "the audit log after a restart");
    let snapshot_after = Sse::snapshot(&server).await.events(3).await;
    assert_eq!(snapshot_after, snapshot_before, "the snapshot after a restart");
    let health = server.health().await;
    assert_eq!(health.database_id, health_before.database_id);
    assert_eq!(health.last_id, last);
    let next = server.insert("a", json!("after")).await;
    assert!(next.id > last, "id {} after a restart at {last}", next.id);
}

#[tokio::test]
async fn sigterm_and_sigint_end_open_streams_and_exit_zero_before_the_shutdown_timeout() {
    for signal in ["TERM", "INT"] {
        let mut server = Server::start_with(&["--shutdown-timeout", "10s"], &[]).await;
        server.insert("a", json!(1)).await;
        let mut sse = Sse::snapshot(&server).await;
        sse.next_event().await;
        let mut filtered = Sse::open(&server, "/events?event=a", &[]).await;
        filtered.start().await;
        filtered.next_event().await;
        server.wait_for_subscribers(2, Duration::from_secs(5)).await;

        let exit = server.stop(signal).await;
        assert_eq!(exit.status.code(), Some(0), "SIG{signal}: {}", server.log());
        assert!(exit.elapsed < Duration::from_secs(5), "SIG{signal} took {:?}", exit.elapsed);
        assert_eq!(exit.stdout_rest, "", "stdout holds only the listening line");
        for stream in [&mut sse, &mut filtered] {
            let rest = stream.until_end(Duration::from_secs(5)).await;
            assert!(rest.iter().all(|frame| !matches!(frame, Frame::Event(_))), "{rest:?}");
            assert!(stream.ended_cleanly(), "SIG{signal} ends the stream with its last chunk");
        }
    }
}

#[tokio::test]
async fn inserts_acknowledged_before_shutdown_survive_it() {
    let mut server = Server::start().await;
    let client = reqwest::Client::builder().no_proxy().build().expect("client");
    let url = server.url("/insert");
    let answered = AtomicUsize::new(0);
    let inserts = futures_util::stream::iter(0..3000)
        .map(|i| {
            let (client, url, answered) = (&client, &url, &answered);
            async move {
                let body = format!(r#"{{"event":"flight","data":{i}}}"#);
                let sent = client
                    .post(url.as_str())
                    .header("content-type", "application/json")
                    .body(body)
                    .send()
                    .await;
                answered.fetch_add(1, Ordering::Relaxed);
                match sent {
                    Ok(response) => {
                        Some((i, response.status().as_u16(), response.text().await.ok()))
                    }
                    Err(_) => None,
                }
            }
        })
        .buffer_unordered(32)
        .collect::<Vec<_>>();
    // The signal comes once inserts are flowing, with 32 of them in flight at any time.
    let stop = async {
        while answered.load(Ordering::Relaxed) < 100 {
            tokio::time::sleep(Duration::from_millis(2)).await;
        }
        server.stop("TERM").await
    };
    let (results, exit) = tokio::join!(inserts, stop);
    assert_eq!(exit.status.code(), Some(0), "SIGTERM during inserts");

    let mut acknowledged = BTreeSet::new();
    let mut refused = BTreeSet::new();
    for (i, status, body) in results.into_iter().flatten() {
        match status {
            201 => {
                let version: Version = serde_json::from_str(&body.unwrap_or_default())
                    .unwrap_or_else(|e| panic!("insert {i} got 201 without a version: {e}"));
                assert_eq!(version.data(), json!(i));
                acknowledged.insert(i);
            }
            503 => {
                refused.insert(i);
            }
            other => panic!("insert {i} during shutdown got {other}: {body:?}"),
        }
    }
    assert!(!acknowledged.is_empty(), "some inserts went through before the signal");
    eprintln!("{} inserts acknowledged, {} refused with 503", acknowledged.len(), refused.len());

    server.start_again().await;
    let stored: BTreeSet<i64> = server
        .audit("flight")
        .await
        .iter()
        .map(|version| version.data().as_i64().expect("an int"))
        .collect();
    let acknowledged: BTreeSet<i64> = acknowledged.into_iter().collect();
    assert!(stored.is_superset(&acknowledged), "an acknowledged insert was lost");
    let refused: BTreeSet<i64> = refused.into_iter().collect();
    assert!(stored.is_disjoint(&refused), "an insert answered 503 was stored");
}

#[tokio::test]
async fn subscriber_count_returns_to_zero_after_clients_disconnect() {
    let server = Server::start_with(&["--heartbeat", "200ms"], &[]).await;
    let first = server.insert("a", json!(1)).await;
    let last_event_id = format!("{}@{}", first.id, server.health().await.database_id);
    let streams = vec![
        Sse::snapshot(&server).await,
        Sse::subscribe(&server, "/events?event=a&event=b", &[]).await.0,
        Sse::subscribe(&server, "/events", &[("Last-Event-ID", &last_event_id)]).await.0,
    ];
    server.wait_for_subscribers(3, Duration::from_secs(5)).await;
    drop(streams);
    server.wait_for_subscribers(0, Duration::from_secs(3)).await;
    // The broker goes on serving new subscribers.
    let mut sse = Sse::snapshot(&server).await;
    assert_eq!(ids(&sse.events(1).await), ids(&[first]));
}

#[tokio::test]
async fn a_client_that_disconnects_is_noticed_within_a_couple_of_heartbeats() {
    let server = Server::start_with(&["--heartbeat", "400ms"], &[]).await;
    let staying = Sse::snapshot(&server).await;
    let leaving = Sse::snapshot(&server).await;
    server.wait_for_subscribers(2, Duration::from_secs(5)).await;
    drop(leaving);
    // Two heartbeats are 800 ms; the bound leaves room for a busy machine.
    let noticed = server.wait_for_subscribers(1, Duration::from_millis(2000)).await;
    eprintln!("a disconnect was noticed after {noticed:?}");
    drop(staying);
}
