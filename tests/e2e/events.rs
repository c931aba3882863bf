//! `GET /events`: headers, the start, the snapshot, live frames, heartbeats and filtering.

use std::collections::BTreeMap;
use std::time::Duration;

use eventsource_stream::Eventsource;
use futures_util::StreamExt;
use serde_json::json;
use tokio::time::Instant;

use crate::support::{Frame, Server, Sse, Version, ids};

/// How many versions the slow subscriber falls behind by: more than the broker's live buffer
/// (4096 versions) and the socket buffers hold together.
const VERSIONS: usize = 6000;

/// Inserts `(event, data)` pairs in order.
async fn insert_all(server: &Server, versions: &[(&str, i64)]) -> Vec<Version> {
    let mut inserted = Vec::new();
    for (event, data) in versions {
        inserted.push(server.insert(event, json!(data)).await);
    }
    inserted
}

/// The `(event, id)` of the versions at `positions`.
fn pick(versions: &[Version], positions: &[usize]) -> Vec<(String, u64)> {
    positions.iter().map(|&i| (versions[i].event.clone(), versions[i].id)).collect()
}

#[tokio::test]
async fn event_stream_has_sse_and_cors_headers() {
    let server = Server::start().await;
    let sse = Sse::open(&server, "/events", &[("Origin", "https://app.example")]).await;
    let head = &sse.head;
    let content_type = head.header("content-type").unwrap_or_default();
    assert!(content_type.starts_with("text/event-stream"), "{head:?}");
    assert_eq!(head.header("cache-control"), Some("no-cache"), "{head:?}");
    assert_eq!(head.header("x-accel-buffering"), Some("no"), "{head:?}");
    assert_eq!(head.header("access-control-allow-origin"), Some("*"), "{head:?}");
}

#[tokio::test]
async fn stream_starts_with_the_configured_retry_then_the_start_comment() {
    for (args, retry) in
        [(&[][..], 3000), (&["--retry", "1500ms"][..], 1500), (&["--retry", "2s"], 2000)]
    {
        let server = Server::start_with(args, &[]).await;
        let (_, start) = Sse::subscribe(&server, "/events", &[]).await;
        assert_eq!(start.retry, retry, "retry: with {args:?}");
        assert_eq!(start.comment, "snapshot");
        assert_eq!(start.header.as_deref(), Some("snapshot"), "Broker-Start header");
    }
}

#[tokio::test]
async fn snapshot_is_the_latest_version_of_each_event_in_id_order() {
    let server = Server::start().await;
    let inserted =
        insert_all(&server, &[("a", 1), ("b", 1), ("a", 2), ("c", 1), ("b", 2), ("d", 1)]).await;
    let mut sse = Sse::snapshot(&server).await;
    let snapshot = sse.events(4).await;
    assert_eq!(ids(&snapshot), pick(&inserted, &[2, 3, 4, 5]));
    let data: Vec<_> = snapshot.iter().map(|event| event.json()).collect();
    assert_eq!(data, [json!(2), json!(1), json!(2), json!(1)]);
    sse.expect_no_frame(Duration::from_millis(300)).await;
}

#[tokio::test]
async fn live_versions_follow_the_snapshot_in_commit_order() {
    let server = Server::start().await;
    server.insert("a", json!(0)).await;
    let mut sse = Sse::snapshot(&server).await;
    assert_eq!(sse.next_event().await.json(), json!(0));
    let inserted = insert_all(&server, &[("b", 1), ("a", 2), ("b", 3), ("c", 4)]).await;
    let live = sse.events(4).await;
    assert_eq!(ids(&live), ids(&inserted));
    let keys: Vec<_> = inserted.iter().map(Version::key).collect();
    assert_eq!(live.iter().map(|event| event.key()).collect::<Vec<_>>(), keys);
    sse.expect_no_frame(Duration::from_millis(300)).await;
}

#[tokio::test]
async fn every_frame_has_event_id_with_database_and_one_compact_data_line() {
    let server = Server::start().await;
    let database = server.health().await.database_id;
    let pretty = "{\n  \"text\": \"two\\nlines \\r and \u{2028}\",\n  \"list\": [ 1,\n 2 ]\n}";
    server.insert_raw("pretty", pretty).await;
    let mut sse = Sse::snapshot(&server).await;
    // The client checks the shape of every frame; this one is also compared field by field.
    let event = sse.next_event().await;
    assert_eq!(event.event, "pretty");
    assert_eq!(event.last_event_id(), format!("1@{database}"));
    assert_eq!(event.data, "{\"text\":\"two\\nlines \\r and \u{2028}\",\"list\":[1,2]}");
    server.insert_raw("pretty", pretty).await;
    assert_eq!(sse.next_event().await.last_event_id(), format!("2@{database}"));
}

#[tokio::test]
async fn heartbeat_comments_arrive_at_the_configured_interval() {
    let server = Server::start_with(&["--heartbeat", "200ms"], &[]).await;
    let mut sse = Sse::snapshot(&server).await;
    let start = Instant::now();
    let frames = sse.frames_until(start + Duration::from_millis(1500)).await;
    for (_, frame) in &frames {
        assert_eq!(frame, &Frame::Comment(String::new()), "a heartbeat is an empty comment");
    }
    // 7 heartbeats are due in 1.5 s; the bounds allow for a busy machine.
    assert!((4..=12).contains(&frames.len()), "{} heartbeats in 1.5 s", frames.len());
    let mut last = start;
    for (at, _) in &frames {
        assert!(at.duration_since(last) < Duration::from_millis(800), "a gap of {:?}", *at - last);
        last = *at;
    }
}

#[tokio::test]
async fn no_heartbeat_arrives_before_the_interval() {
    let server = Server::start().await;
    let mut sse = Sse::snapshot(&server).await;
    sse.expect_no_frame(Duration::from_secs(1)).await;
}

#[tokio::test]
async fn event_filter_applies_to_the_snapshot_and_live() {
    let server = Server::start().await;
    insert_all(&server, &[("a", 1), ("b", 1), ("c", 1), ("d", 1), ("ab", 1)]).await;
    let (mut sse, _) = Sse::subscribe(&server, "/events?event=a&event=c", &[]).await;
    let snapshot = sse.events(2).await;
    assert_eq!(ids(&snapshot), [("a".to_string(), 1), ("c".to_string(), 3)]);
    let inserted =
        insert_all(&server, &[("b", 2), ("c", 2), ("A", 2), ("a", 2), ("d", 2), ("ab", 2)]).await;
    let live = sse.events(2).await;
    assert_eq!(ids(&live), pick(&inserted, &[1, 3]));
    sse.expect_no_event(Duration::from_millis(300)).await;
}

#[tokio::test]
async fn event_filter_names_are_percent_decoded() {
    let server = Server::start().await;
    let names = ["order/created", "café 🦀", "a&b=c", "plus+sign"];
    for name in names {
        server.insert(name, json!(name)).await;
    }
    for name in names {
        let path = format!("/events?event={}", crate::support::encode(name));
        let (mut sse, _) = Sse::subscribe(&server, &path, &[]).await;
        let event = sse.next_event().await;
        assert_eq!(event.event, name, "GET {path}");
        sse.expect_no_event(Duration::from_millis(100)).await;
    }
}

#[tokio::test]
async fn a_standard_eventsource_parser_reads_the_same_events() {
    let server = Server::start().await;
    let inserted = insert_all(&server, &[("a", 1), ("b", 2), ("a", 3)]).await;
    let database = server.health().await.database_id;
    let response = reqwest::Client::builder()
        .no_proxy()
        .build()
        .expect("client")
        .get(server.url("/events"))
        .send()
        .await
        .expect("GET /events");
    let mut stream = response.bytes_stream().eventsource();
    let mut received = Vec::new();
    while received.len() < 2 {
        let next = tokio::time::timeout(Duration::from_secs(10), stream.next()).await;
        let event = next.expect("an event in time").expect("the stream goes on").expect("parses");
        received.push((event.event, event.id, event.data));
    }
    let expected: Vec<_> = [&inserted[1], &inserted[2]]
        .iter()
        .map(|v| (v.event.clone(), format!("{}@{database}", v.id), v.data.get().to_string()))
        .collect();
    assert_eq!(received, expected);
}

#[tokio::test]
async fn a_slow_subscriber_ends_with_the_latest_version_of_each_event_and_never_goes_back() {
    // The write timeout is long enough that the server does not drop the stalled subscriber
    // while the versions are inserted, even on a slow machine.
    let server = Server::start_with(&["--write-timeout", "120s"], &[]).await;
    // A fixed receive window and no reading while thousands of 4 KiB versions are inserted: the
    // socket buffers fill, the server falls further behind than its live buffer holds, and has
    // to bring the subscriber to the current state when it reads again.
    let mut sse = Sse::slow_reader(&server, 64 * 1024).await;
    let pad = "x".repeat(4096);
    let inserts = futures_util::stream::iter(0..VERSIONS)
        .map(|i| {
            let (server, pad) = (&server, &pad);
            async move { server.insert(["a", "b", "c"][i % 3], json!({"i": i, "pad": pad})).await }
        })
        .buffer_unordered(64);
    let inserted: Vec<Version> = inserts.collect().await;
    let mut latest = BTreeMap::new();
    for version in &inserted {
        let id = latest.entry(version.event.clone()).or_insert(0);
        *id = version.id.max(*id);
    }
    let mut last_seen = BTreeMap::new();
    let mut last_id = 0;
    let mut received = 0;
    while last_seen != latest {
        let event = sse.next_event().await;
        received += 1;
        assert!(event.id > last_id, "id {} after {last_id}", event.id);
        last_id = event.id;
        let previous = last_seen.insert(event.event.clone(), event.id);
        assert!(previous < Some(event.id), "{} went back to {}", event.event, event.id);
    }
    eprintln!("the slow subscriber received {received} of {VERSIONS} versions");
    sse.expect_no_event(Duration::from_millis(200)).await;
}
