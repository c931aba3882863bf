//! `GET /events` with authorization on: a token's `events` scope filters the snapshot, the
//! replay and the live stream down to the bytes; anonymous clients get only the public events;
//! a stream ends when its token expires.

use std::time::Duration;

use serde_json::json;

use super::{Wire, admin_insert, bearer, claims, get, now_secs, sign, start};
use crate::support::{Frame, Server, Sse, now_ms};

/// Names a client limited to `orders.*` must never receive, each chosen so that no allowed name
/// contains it: the raw bytes can be searched for them.
const FORBIDDEN: [&str; 5] = ["secret", "payments.card", "order.x", "users", "forbidden-data"];

/// Inserts a version of each forbidden event, with data that is itself forbidden text.
async fn insert_forbidden(server: &Server) {
    for event in &FORBIDDEN[..4] {
        admin_insert(server, event, json!({"marker": "forbidden-data"})).await;
    }
}

#[tokio::test]
async fn a_token_limited_to_orders_receives_nothing_else_in_snapshot_replay_or_live() {
    let server = start(&[]).await;
    let database = server.health().await.database_id;
    let first = admin_insert(&server, "orders.a", json!(1)).await;
    insert_forbidden(&server).await;
    admin_insert(&server, "orders.b", json!(2)).await;
    insert_forbidden(&server).await;
    admin_insert(&server, "orders.a", json!(3)).await;
    let token = bearer(&sign(&claims(&[], &["orders.*"], &[])));
    let authorization = [("authorization", token.as_str())];

    // Snapshot: the latest version of each allowed event, in id order, then live.
    let mut snapshot = Wire::open(&server, "/events", &authorization).await;
    assert!(snapshot.head().contains("broker-start: snapshot"), "{}", snapshot.head());
    admin_insert(&server, "orders.end1", json!(4)).await;
    assert_eq!(snapshot.events_until("orders.end1").await, ["orders.b", "orders.a", "orders.end1"]);

    // Replay: every allowed version after the first, whatever was committed between them.
    let last_event_id = format!("{first}@{database}");
    let resume = [("authorization", token.as_str()), ("last-event-id", &last_event_id)];
    let mut replay = Wire::open(&server, "/events", &resume).await;
    assert!(replay.head().contains("broker-start: resumed"), "{}", replay.head());
    admin_insert(&server, "orders.end2", json!(5)).await;
    let replayed = replay.events_until("orders.end2").await;
    assert_eq!(replayed, ["orders.b", "orders.a", "orders.end1", "orders.end2"]);

    // Live: forbidden versions interleaved with allowed ones, on both streams.
    insert_forbidden(&server).await;
    admin_insert(&server, "orders.c", json!(6)).await;
    insert_forbidden(&server).await;
    admin_insert(&server, "orders.end3", json!(7)).await;
    assert_eq!(
        snapshot.events_until("orders.end3").await,
        ["orders.end2", "orders.c", "orders.end3"]
    );
    assert_eq!(replay.events_until("orders.end3").await, ["orders.c", "orders.end3"]);
    for wire in [&snapshot, &replay] {
        wire.assert_never_carried(&FORBIDDEN);
    }
}

#[tokio::test]
async fn event_query_for_an_event_the_token_may_not_receive_is_403() {
    let server = start(&[]).await;
    admin_insert(&server, "secret", json!(1)).await;
    let token = sign(&claims(&["*"], &["orders.*"], &["*"]));
    for path in
        ["/events?event=secret", "/events?event=orders.a&event=secret", "/events?event=orders"]
    {
        get(&server, path, Some(&token)).await.expect_insufficient_scope();
    }
    let authorization = bearer(&token);
    let mut allowed =
        Wire::open(&server, "/events?event=orders.a", &[("authorization", &authorization)]).await;
    admin_insert(&server, "orders.b", json!(2)).await;
    admin_insert(&server, "orders.a", json!(3)).await;
    assert_eq!(allowed.events_until("orders.a").await, ["orders.a"]);
}

#[tokio::test]
async fn anonymous_subscribers_receive_only_the_public_events() {
    let server = start(&["--public-events", "news.*,status"]).await;
    for (event, data) in [("news.a", 1), ("secret", 2), ("status", 3), ("users", 4), ("news.b", 5)]
    {
        admin_insert(&server, event, json!(data)).await;
    }
    let mut anonymous = Wire::open(&server, "/events", &[]).await;
    assert_eq!(anonymous.events_until("news.b").await, ["news.a", "status", "news.b"]);
    for (event, data) in [("secret", 6), ("status", 7), ("users", 8), ("news.end", 9)] {
        admin_insert(&server, event, json!(data)).await;
    }
    assert_eq!(anonymous.events_until("news.end").await, ["status", "news.end"]);
    anonymous.assert_never_carried(&["secret", "users"]);

    let mut one = Wire::open(&server, "/events?event=news.a", &[]).await;
    assert_eq!(one.events_until("news.a").await, ["news.a"]);
    // Without a token, asking for a non-public event is a request for a token.
    for path in ["/events?event=secret", "/events?event=news.a&event=secret"] {
        get(&server, path, None).await.expect_missing_token();
    }
    // Anonymous clients may only subscribe: nothing else is public.
    get(&server, "/audit/news.a", None).await.expect_missing_token();
    super::insert(&server, None, "news.c", json!(10)).await.expect_missing_token();
    // A token that may not receive an event is refused it, public or not.
    let token = sign(&claims(&[], &["orders.*"], &[]));
    get(&server, "/events?event=secret", Some(&token)).await.expect_insufficient_scope();
}

#[tokio::test]
async fn anonymous_subscribers_are_401_without_public_events() {
    let server = start(&[]).await;
    for path in ["/events", "/events?event=news.a"] {
        get(&server, path, None).await.expect_missing_token();
    }
}

#[tokio::test]
async fn a_stream_ends_cleanly_when_its_token_expires() {
    let server = start(&[]).await;
    // Two to three seconds ahead: long enough to see the stream work first.
    let exp = now_secs() + 3;
    let token = sign(&super::with(claims(&[], &["*"], &[]), "exp", json!(exp)));
    let authorization = bearer(&token);
    let (mut sse, _) =
        Sse::subscribe(&server, "/events", &[("authorization", &authorization)]).await;
    let id = admin_insert(&server, "orders.a", json!(1)).await;
    assert_eq!(sse.next_event().await.id, id, "the stream works until the token expires");
    let frames = sse.until_end(Duration::from_secs(10)).await;
    let ended = now_ms();
    let exp_ms = exp * 1000;
    assert!(sse.ended_cleanly(), "the stream was cut, not ended: {frames:?}");
    assert!(frames.iter().all(|frame| matches!(frame, Frame::Comment(_))), "{frames:?}");
    // The server ends the stream at `exp`; the client sees it a little later.
    assert!(ended + 100 >= exp_ms, "ended {} ms before the token expired", exp_ms - ended);
    assert!(ended <= exp_ms + 3000, "ended {} ms after the token expired", ended - exp_ms);
}

#[tokio::test]
async fn a_token_is_refused_from_its_exp_second_on() {
    // A stream ends at `exp`; a client that reconnects at once with the same token must be
    // refused (RFC 7519, section 4.1.4: on or after `exp`, a token must not be accepted), not
    // served a stream that ends as soon as it starts.
    let server = start(&[]).await;
    let exp = now_secs();
    let token = sign(&super::with(claims(&["*"], &["*"], &[]), "exp", json!(exp)));
    let events = get(&server, "/events", Some(&token)).await;
    assert_eq!(events.status, 401, "GET /events with exp = now ({exp}): {events:?}");
    events.expect_invalid_token();
    let inserted = super::insert(&server, Some(&token), "orders.a", json!(1)).await;
    assert_eq!(inserted.status, 401, "POST /insert with exp = now ({exp}): {inserted:?}");
    inserted.expect_invalid_token();
}
