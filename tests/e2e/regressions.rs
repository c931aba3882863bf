//! Regression tests, each named after a bug of the original `broker` crate that this rewrite
//! fixes.

use std::collections::BTreeSet;
use std::time::Duration;

use futures_util::StreamExt;
use serde_json::json;

use crate::support::{Server, Sse, Version, ids};

#[tokio::test]
async fn subscriber_connected_to_an_empty_broker_receives_later_inserts() {
    let server = Server::start().await;
    let mut sse = Sse::snapshot(&server).await;
    sse.expect_no_frame(Duration::from_millis(200)).await;
    let first = server.insert("first", json!("hello")).await;
    let second = server.insert("second", json!("world")).await;
    assert_eq!(ids(&sse.events(2).await), ids(&[first, second]));
}

#[tokio::test]
async fn each_update_arrives_once_with_many_events() {
    let server = Server::start().await;
    for i in 0..50 {
        server.insert(&format!("event-{i}"), json!(i)).await;
    }
    let mut first = Sse::snapshot(&server).await;
    let mut second = Sse::snapshot(&server).await;
    for sse in [&mut first, &mut second] {
        let names: Vec<_> = sse.events(50).await.into_iter().map(|event| event.event).collect();
        let expected: Vec<_> = (0..50).map(|i| format!("event-{i}")).collect();
        assert_eq!(names, expected, "the snapshot holds each event once");
    }
    let mut updates = Vec::new();
    for i in (0..50).step_by(5) {
        updates.push(server.insert(&format!("event-{i}"), json!(i + 100)).await);
    }
    for sse in [&mut first, &mut second] {
        assert_eq!(ids(&sse.events(updates.len()).await), ids(&updates));
        sse.expect_no_event(Duration::from_millis(300)).await;
    }
}

#[tokio::test]
async fn subscribing_with_over_a_hundred_events_works_and_inserts_keep_working() {
    let server = Server::start().await;
    let inserts = futures_util::stream::iter(0..500)
        .map(|i| {
            let server = &server;
            async move { server.insert(&format!("many-{i:03}"), json!(i)).await }
        })
        .buffer_unordered(16);
    let mut inserted: Vec<Version> = inserts.collect().await;
    inserted.sort_by_key(|version| version.id);

    let mut everything = Sse::snapshot(&server).await;
    assert_eq!(ids(&everything.events(500).await), ids(&inserted));
    let query: Vec<_> = (0..150).map(|i| format!("event=many-{i:03}")).collect();
    let (mut filtered, _) =
        Sse::subscribe(&server, &format!("/events?{}", query.join("&")), &[]).await;
    let mut expected: Vec<_> = inserted.iter().filter(|v| v.event.as_str() < "many-150").collect();
    expected.sort_by_key(|version| version.id);
    let got: Vec<_> = filtered.events(150).await.iter().map(|event| event.id).collect();
    assert_eq!(got, expected.iter().map(|version| version.id).collect::<Vec<_>>());

    let after = server.insert("many-007", json!("after")).await;
    let also = server.insert("many-499", json!("after")).await;
    assert_eq!(ids(&everything.events(2).await), ids(&[after.clone(), also]));
    assert_eq!(ids(&filtered.events(1).await), ids(&[after]));
    filtered.expect_no_event(Duration::from_millis(200)).await;
}

#[tokio::test]
async fn two_inserts_in_the_same_millisecond_both_appear_in_the_audit_log() {
    let server = Server::start().await;
    let inserts = futures_util::stream::iter(0..200)
        .map(|i| {
            let server = &server;
            async move { server.insert("same", json!(i)).await }
        })
        .buffer_unordered(32);
    let inserted: Vec<Version> = inserts.collect().await;
    let timestamps: BTreeSet<u64> = inserted.iter().map(|version| version.timestamp).collect();
    assert!(timestamps.len() < inserted.len(), "some inserts share a millisecond");
    let ids: BTreeSet<u64> = inserted.iter().map(|version| version.id).collect();
    assert_eq!(ids.len(), inserted.len(), "every insert has its own id");

    let audit = server.audit("same").await;
    assert_eq!(audit.iter().map(|version| version.id).collect::<BTreeSet<_>>(), ids);
    let data: BTreeSet<i64> = audit.iter().map(|v| v.data().as_i64().expect("an int")).collect();
    assert_eq!(data, (0..200).collect(), "every version's data is kept");
}

#[tokio::test]
async fn audit_of_user_does_not_return_username() {
    let server = Server::start().await;
    let names = ["user", "username", "users", "user_v_1", "User", "use", "user/profile", "user "];
    for name in names {
        server.insert(name, json!(name)).await;
        server.insert(name, json!(name)).await;
    }
    for name in names {
        let audit = server.audit(name).await;
        let events: Vec<_> = audit.iter().map(|version| version.event.as_str()).collect();
        assert_eq!(events, [name, name], "the audit of {name:?}");
    }
    assert!(server.audit("us").await.is_empty());
    assert!(server.audit("user_v").await.is_empty());
}
