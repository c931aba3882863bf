//! `Idempotency-Key` on `POST /insert`: a retry returns the first version, across a restart; a
//! key reused for other data, or a malformed key, is refused and stores nothing.

use serde_json::Value;

use std::time::Duration;

use crate::support::{Reply, Server, Sse};

async fn keyed(server: &Server, key: &str, body: &str) -> Reply {
    let headers = [("content-type", "application/json"), ("idempotency-key", key)];
    server.request("POST", "/insert", &headers, Some(body.as_bytes().to_vec())).await
}

fn version(reply: &Reply) -> Value {
    assert_eq!(reply.status, 201, "a keyed insert or its retry answers 201: {reply}");
    reply.json()
}

#[tokio::test]
async fn a_retry_with_the_same_key_returns_the_first_version_and_stores_nothing() {
    let mut server = Server::start().await;
    let body = r#"{"event":"order","data":{"id":1842,"state":"paid"}}"#;
    let first = version(&keyed(&server, "order-1842-paid", body).await);
    let mut sse = Sse::snapshot(&server).await;
    assert_eq!(sse.next_event().await.id, first["id"].as_u64().expect("id"));

    // The same request again, as a client that lost the answer sends it: quoted this time.
    let retry = version(&keyed(&server, "\"order-1842-paid\"", body).await);
    assert_eq!(retry, first, "the retry answers the first version, timestamp included");
    // A new key stores a new version, which is the next one subscribers see: the retry sent
    // them nothing.
    let other = version(&keyed(&server, "order-1843-paid", body).await);
    assert!(other["id"].as_u64() > first["id"].as_u64());
    assert_eq!(sse.next_event().await.id, other["id"].as_u64().expect("id"), "no duplicate frame");
    assert_eq!(server.audit("order").await.len(), 2, "the retry stored nothing");

    // Keys outlive a restart: a client that retries after the server came back stores nothing.
    drop(sse);
    server.restart().await;
    let after_restart = version(&keyed(&server, "order-1842-paid", body).await);
    assert_eq!(after_restart, first, "the key is remembered across a restart");
    assert_eq!(server.audit("order").await.len(), 2);
}

#[tokio::test]
async fn a_key_reused_for_other_data_is_refused_with_422_naming_the_first_version() {
    let server = Server::start().await;
    let first = version(&keyed(&server, "k-1", r#"{"event":"a","data":1}"#).await);
    let id = first["id"].as_u64().expect("id");
    for body in [r#"{"event":"a","data":2}"#, r#"{"event":"b","data":1}"#] {
        let reply = keyed(&server, "k-1", body).await;
        let message = reply.expect_error(422, "idempotency_key_reused");
        assert!(message.contains(&format!("version {id}")), "names the version: {message}");
    }
    assert_eq!(server.audit("a").await.len(), 1);
    assert_eq!(server.audit("b").await.len(), 0, "nothing was stored");
}

#[tokio::test]
async fn malformed_keys_are_refused_with_400() {
    let server = Server::start().await;
    let body = r#"{"event":"a","data":1}"#;
    let long = "k".repeat(256);
    for key in ["", "with space", &long] {
        let reply = keyed(&server, key, body).await;
        reply.expect_error(400, "invalid_idempotency_key");
    }
    let headers = [
        ("content-type", "application/json"),
        ("idempotency-key", "one"),
        ("idempotency-key", "two"),
    ];
    let twice = server.request("POST", "/insert", &headers, Some(body.as_bytes().to_vec())).await;
    twice.expect_error(400, "invalid_idempotency_key");
    assert_eq!(server.audit("a").await.len(), 0, "nothing was stored");
}

#[tokio::test]
async fn concurrent_retries_store_one_version() {
    let server = Server::start().await;
    let body = r#"{"event":"payment","data":{"amount":5}}"#;
    let tries = (0..16).map(|_| keyed(&server, "payment-77", body));
    let replies = futures_util::future::join_all(tries).await;
    let ids: std::collections::BTreeSet<u64> =
        replies.iter().map(|reply| version(reply)["id"].as_u64().expect("id")).collect();
    assert_eq!(ids.len(), 1, "16 concurrent tries with one key share one version: {ids:?}");
    assert_eq!(server.audit("payment").await.len(), 1);
}

#[tokio::test]
async fn a_key_is_forgotten_after_the_idempotency_window() {
    let server = Server::start_with(&["--idempotency-window", "1s"], &[]).await;
    let body = r#"{"event":"tick","data":1}"#;
    let first = version(&keyed(&server, "tick-1", body).await);
    let within = version(&keyed(&server, "tick-1", body).await);
    assert_eq!(within, first, "within the window the key names the first version");
    tokio::time::sleep(Duration::from_millis(1_200)).await;
    let after = version(&keyed(&server, "tick-1", body).await);
    assert!(after["id"].as_u64() > first["id"].as_u64(), "after it, the key stores anew");
    assert_eq!(server.audit("tick").await.len(), 2);
}
