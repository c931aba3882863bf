//! `GET /snapshot`: the latest version of every event as JSON, or the state at a past id or
//! time; `410 pruned` for a state retention no longer holds; and `GET /audit` without `limit`
//! streaming a whole history.

use std::time::Duration;

use serde_json::{Value, json};

use crate::auth::{bearer, claims, sign};
use crate::support::{Server, Version, encode, ids};

pub fn versions(server_reply: &crate::support::Reply) -> Vec<Version> {
    assert_eq!(server_reply.status, 200, "{server_reply}");
    assert!(
        server_reply.header("content-type").unwrap_or_default().starts_with("application/json"),
        "{server_reply}"
    );
    serde_json::from_str(&server_reply.body).expect("a list of versions")
}

/// RFC 3339 of a time in milliseconds since the epoch, as a client would write it.
fn rfc3339(millis: u64) -> String {
    let time = time::OffsetDateTime::from_unix_timestamp_nanos(i128::from(millis) * 1_000_000)
        .expect("a time");
    time.format(&time::format_description::well_known::Rfc3339).expect("formatted")
}

#[tokio::test]
async fn the_snapshot_is_the_latest_version_of_every_event_in_id_order() {
    let server = Server::start().await;
    assert_eq!(versions(&server.get("/snapshot").await), [], "nothing stored yet");
    let a1 = server.insert("a", json!(1)).await;
    let b1 = server.insert("b", json!({"x": [1, 2]})).await;
    let a2 = server.insert("a", json!(2)).await;
    let c1 = server.insert("c d/é", json!(null)).await;
    assert_eq!(versions(&server.get("/snapshot").await), [b1.clone(), a2.clone(), c1.clone()]);
    let only = format!("/snapshot?event=a&event={}", encode("c d/é"));
    assert_eq!(versions(&server.get(&only).await), [a2.clone(), c1.clone()], "?event= filters");
    assert_eq!(versions(&server.get("/snapshot?event=zzz").await), []);

    assert_eq!(
        versions(&server.get(&format!("/snapshot?at={}", a1.id)).await),
        std::slice::from_ref(&a1)
    );
    assert_eq!(
        versions(&server.get(&format!("/snapshot?at={}", a2.id)).await),
        [b1.clone(), a2.clone()],
        "the state once a2 was committed"
    );
    assert_eq!(versions(&server.get("/snapshot?at=0").await), []);
    let at_b = format!("/snapshot?at={}&event=b", c1.id);
    assert_eq!(versions(&server.get(&at_b).await), std::slice::from_ref(&b1));
}

#[tokio::test]
async fn the_state_at_a_time_is_what_a_subscriber_had_then() {
    let server = Server::start().await;
    let a1 = server.insert("a", json!(1)).await;
    let b1 = server.insert("b", json!(1)).await;
    tokio::time::sleep(Duration::from_millis(30)).await;
    let a2 = server.insert("a", json!(2)).await;
    assert!(a2.timestamp > b1.timestamp, "timestamps {} and {}", b1.timestamp, a2.timestamp);
    let at = |millis: u64| format!("/snapshot?at={}", encode(&rfc3339(millis)));
    assert_eq!(versions(&server.get(&at(b1.timestamp)).await), [a1.clone(), b1.clone()]);
    assert_eq!(versions(&server.get(&at(a2.timestamp - 1)).await), [a1.clone(), b1.clone()]);
    assert_eq!(versions(&server.get(&at(a2.timestamp)).await), [b1.clone(), a2.clone()]);
    assert_eq!(versions(&server.get(&at(a1.timestamp - 1)).await), [], "before the first");
    // An offset names the same moment.
    let offset =
        time::OffsetDateTime::from_unix_timestamp_nanos(i128::from(b1.timestamp) * 1_000_000)
            .expect("a time")
            .to_offset(time::UtcOffset::from_hms(5, 30, 0).expect("an offset"));
    let offset = offset.format(&time::format_description::well_known::Rfc3339).expect("formatted");
    assert!(offset.ends_with("+05:30"), "{offset}");
    let path = format!("/snapshot?at={}", encode(&offset));
    assert_eq!(versions(&server.get(&path).await), [a1, b1]);
}

#[tokio::test]
async fn a_state_before_the_horizon_is_gone_naming_the_event_and_where_its_history_starts() {
    let server = Server::start_with(&["--idempotency-window=300ms", "--retain", "a=1"], &[]).await;
    let a1 = server.insert("a", json!(1)).await;
    let b1 = server.insert("b", json!(1)).await;
    let a2 = server.insert("a", json!(2)).await;
    let deadline = std::time::Instant::now() + Duration::from_secs(15);
    while server.audit("a").await.len() > 1 {
        assert!(std::time::Instant::now() < deadline, "a was not pruned: {}", server.log());
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    for at in [b1.id.to_string(), a1.id.to_string(), encode(&rfc3339(b1.timestamp))] {
        let reply = server.get(&format!("/snapshot?at={at}")).await;
        let message = reply.expect_error(410, "pruned");
        assert!(message.contains(&a2.id.to_string()), "the message names the horizon: {message}");
        let body = reply.json();
        assert_eq!(body["event"], json!("a"), "{body}");
        assert_eq!(body["oldest_kept"], json!(a2.id), "{body}");
        assert_eq!(body["pruned_through"], json!(a1.id), "{body}");
    }
    let only_b = format!("/snapshot?at={}&event=b", b1.id);
    assert_eq!(versions(&server.get(&only_b).await), std::slice::from_ref(&b1), "b lost nothing");
    let at_horizon = format!("/snapshot?at={}", a2.id);
    assert_eq!(versions(&server.get(&at_horizon).await), [b1, a2]);
}

#[tokio::test]
async fn a_bad_at_is_an_invalid_query() {
    let server = Server::start().await;
    for at in
        ["", "-1", "x", "1.5", "2026-11-30", "99999999999999999999999", "2026-13-01T00:00:00Z"]
    {
        let path = format!("/snapshot?at={}", encode(at));
        let message = server.get(&path).await.expect_error(400, "invalid_query");
        assert!(message.contains("at"), "GET {path}: {message}");
    }
    let message = server.get("/snapshot?event=").await.expect_error(400, "invalid_query");
    assert!(message.contains("event"), "{message}");
}

#[tokio::test]
async fn the_snapshot_never_names_an_event_the_token_may_not_read() {
    let server = Server::start_with(&[], &[("BROKER_JWT_SECRET", crate::auth::SECRET)]).await;
    let admin = bearer(&crate::auth::admin());
    for event in ["public.a", "secret"] {
        let body = json!({"event": event, "data": 1}).to_string();
        let headers = [("Authorization", admin.as_str()), ("content-type", "application/json")];
        let reply = server.request("POST", "/insert", &headers, Some(body.into_bytes())).await;
        assert_eq!(reply.status, 201, "{reply}");
    }
    let reader = bearer(&sign(&claims(&[], &["public.*"], &[])));
    let auth = [("Authorization", reader.as_str())];
    for path in ["/snapshot", "/snapshot?at=99"] {
        let reply = server.request("GET", path, &auth, None).await;
        let events: Vec<String> = versions(&reply).into_iter().map(|v| v.event).collect();
        assert_eq!(events, ["public.a"], "GET {path}");
    }
    let reply = server.request("GET", "/snapshot?event=secret", &auth, None).await;
    reply.expect_error(403, "insufficient_scope");
    server.get("/snapshot").await.expect_error(401, "missing_token");
}

#[tokio::test]
async fn an_audit_without_limit_is_the_whole_history_streamed() {
    let server = Server::start().await;
    let mut inserted = Vec::new();
    for round in 0..10 {
        let array: Vec<Value> =
            (0..1000).map(|i| json!({"event": "long", "data": {"round": round, "i": i}})).collect();
        let reply = server.post_insert(&Value::from(array).to_string()).await;
        assert_eq!(reply.status, 201, "{reply}");
        inserted.extend(serde_json::from_str::<Vec<Version>>(&reply.body).expect("versions"));
        server.insert("other", json!(round)).await;
    }
    let reply = server.get("/audit/long").await;
    assert_eq!(reply.header("link"), None, "the whole history needs no next page");
    let all = versions(&reply);
    assert_eq!(all.len(), 10_000);
    assert_eq!(ids(&all), ids(&inserted), "every version once, oldest first");
    let after = format!("/audit/long?after={}", inserted[9_499].id);
    assert_eq!(ids(&versions(&server.get(&after).await)), ids(&inserted[9_500..]));
    let page = server.get("/audit/long?limit=100").await;
    assert_eq!(ids(&versions(&page)), ids(&inserted[..100]), "with limit, one page");
    assert!(page.next_link().is_some(), "and a link to the next");
}

/// The snapshot of 10,000 events, 20 MB of JSON, is written as it is encoded: the server's peak
/// memory grows by far less than the answer, and the answer has no `Content-Length`.
#[tokio::test]
async fn a_snapshot_of_ten_thousand_events_is_streamed_with_bounded_memory() {
    const MIB: u64 = 1024 * 1024;
    let server = Server::start_with(&["--max-body", "4194304"], &[]).await;
    let data = "x".repeat(2000);
    let mut inserted = Vec::new();
    for round in 0..10 {
        let array: Vec<Value> =
            (0..1000).map(|i| json!({"event": format!("e{round}.{i}"), "data": data})).collect();
        let reply = server.post_insert(&Value::from(array).to_string()).await;
        assert_eq!(reply.status, 201, "{reply}");
        inserted.extend(serde_json::from_str::<Vec<Version>>(&reply.body).expect("versions"));
    }
    let before = crate::memory::status(&server, "VmHWM");
    let reply = server.get("/snapshot").await;
    let peak = crate::memory::status(&server, "VmHWM");
    assert_eq!(reply.header("content-length"), None, "streamed, not sent whole");
    let snapshot = versions(&reply);
    assert_eq!(ids(&snapshot), ids(&inserted), "every event once, in id order");
    let grown = peak.saturating_sub(before);
    println!(
        "a {} MiB snapshot raised the peak memory by {} KiB",
        reply.body.len() as u64 / MIB,
        grown / 1024
    );
    assert!(reply.body.len() as u64 > 19 * MIB, "{} bytes", reply.body.len());
    assert!(
        grown < 4 * MIB,
        "the peak grew by {grown} bytes for a {} byte answer",
        reply.body.len()
    );
}
