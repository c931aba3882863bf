//! Resuming an event stream with `Last-Event-ID` or `?lastEventId=`: a replay of what came
//! after, then live, with no gap and no duplicate; and the snapshot for ids that cannot resume.

use std::time::Duration;

use serde_json::json;

use crate::support::{Server, Sse, Start, Version, ids};

/// How a client names the position it resumes from.
#[derive(Clone, Copy, Debug)]
enum Via {
    Header,
    Query,
}

/// Opens `/events` (with `query`, `&`-joined, which may be empty) resuming from `last_event_id`.
async fn resume(server: &Server, via: Via, query: &str, last_event_id: &str) -> (Sse, Start) {
    match via {
        Via::Header => {
            let path =
                if query.is_empty() { "/events".to_string() } else { format!("/events?{query}") };
            Sse::subscribe(server, &path, &[("Last-Event-ID", last_event_id)]).await
        }
        Via::Query => {
            let id = crate::support::encode(last_event_id);
            let path = if query.is_empty() {
                format!("/events?lastEventId={id}")
            } else {
                format!("/events?{query}&lastEventId={id}")
            };
            Sse::subscribe(server, &path, &[]).await
        }
    }
}

fn assert_resumed(start: &Start) {
    assert_eq!(start.comment, "resumed", "the first comment after retry:");
    assert_eq!(start.header.as_deref(), Some("resumed"), "the Broker-Start header");
}

fn assert_snapshot(start: &Start, last_event_id: &str) {
    assert_eq!(start.comment, "snapshot", "the first comment when resuming from {last_event_id:?}");
    assert_eq!(start.header.as_deref(), Some("snapshot"), "Broker-Start for {last_event_id:?}");
    let unknown = Some(("unknown_id".to_string(), "unknown_id".to_string()));
    assert_eq!(start.reason, unknown, "the reason, header and comment, for {last_event_id:?}");
}

async fn insert_all(server: &Server, events: &[&str]) -> Vec<Version> {
    let mut inserted = Vec::new();
    for (i, event) in events.iter().enumerate() {
        inserted.push(server.insert(event, json!(i)).await);
    }
    inserted
}

#[tokio::test]
async fn resuming_replays_every_version_after_the_id_then_goes_live() {
    for via in [Via::Header, Via::Query] {
        let server = Server::start().await;
        let inserted = insert_all(&server, &["a", "b", "a", "c", "b", "a"]).await;
        let database = server.health().await.database_id;
        let (mut sse, start) =
            resume(&server, via, "", &format!("{}@{database}", inserted[1].id)).await;
        assert_resumed(&start);
        // Every version after the id, not only the latest of each event.
        assert_eq!(ids(&sse.events(4).await), ids(&inserted[2..]), "{via:?}");
        let live = server.insert("b", json!("live")).await;
        assert_eq!(ids(&sse.events(1).await), ids(&[live]), "{via:?}");
        sse.expect_no_frame(Duration::from_millis(300)).await;
    }
}

#[tokio::test]
async fn resuming_with_an_event_filter_replays_only_those_events() {
    let server = Server::start().await;
    let inserted = insert_all(&server, &["a", "b", "a", "c", "b", "a", "c"]).await;
    let last_event_id = format!("{}@{}", inserted[0].id, server.health().await.database_id);
    let (mut sse, start) = resume(&server, Via::Query, "event=a&event=c", &last_event_id).await;
    assert_resumed(&start);
    let expected = [&inserted[2], &inserted[3], &inserted[5], &inserted[6]];
    let expected: Vec<_> = expected.iter().map(|v| (v.event.clone(), v.id)).collect();
    assert_eq!(ids(&sse.events(4).await), expected);
    sse.expect_no_frame(Duration::from_millis(300)).await;
}

#[tokio::test]
async fn resuming_from_the_last_id_sends_nothing_until_the_next_insert() {
    let server = Server::start().await;
    let inserted = insert_all(&server, &["a", "b"]).await;
    let last_event_id = format!("{}@{}", inserted[1].id, server.health().await.database_id);
    let (mut sse, start) = resume(&server, Via::Header, "", &last_event_id).await;
    assert_resumed(&start);
    sse.expect_no_frame(Duration::from_millis(300)).await;
    let live = server.insert("a", json!("live")).await;
    assert_eq!(ids(&sse.events(1).await), ids(&[live]));
}

#[tokio::test]
async fn the_seam_between_replay_and_live_has_no_gap_and_no_duplicate() {
    let server = Server::start().await;
    let first = insert_all(&server, &["seam"; 20]).await;
    let database = server.health().await.database_id;
    // Inserts go on while the subscribers connect, so the seam falls somewhere among them.
    let (later, (mut resumed, mut snapshot)) = tokio::join!(
        async {
            let mut later = Vec::new();
            for i in 0..200 {
                later.push(server.insert("seam", json!(i)).await);
            }
            later
        },
        async {
            tokio::time::sleep(Duration::from_millis(20)).await;
            let last_event_id = format!("{}@{database}", first[9].id);
            let (resumed, start) = resume(&server, Via::Header, "", &last_event_id).await;
            assert_resumed(&start);
            (resumed, Sse::snapshot(&server).await)
        }
    );
    let all: Vec<u64> = first.iter().chain(&later).map(|version| version.id).collect();
    let got: Vec<u64> = resumed.events(all.len() - 10).await.iter().map(|e| e.id).collect();
    assert_eq!(got, all[10..], "the resumed stream");
    // The snapshot holds the one event's latest version at connect time; live follows it.
    let from = snapshot.next_event().await.id;
    let position = all.iter().position(|&id| id == from).expect("the snapshot id was inserted");
    let got: Vec<u64> =
        snapshot.events(all.len() - position - 1).await.iter().map(|e| e.id).collect();
    assert_eq!(got, all[position + 1..], "the live stream after the snapshot");
    resumed.expect_no_frame(Duration::from_millis(200)).await;
    snapshot.expect_no_frame(Duration::from_millis(200)).await;
}

#[tokio::test]
async fn resuming_works_across_a_restart() {
    let mut server = Server::start().await;
    let before = insert_all(&server, &["a", "b", "c"]).await;
    let database = server.health().await.database_id;
    let mut sse = Sse::snapshot(&server).await;
    let seen = sse.events(2).await;
    drop(sse);
    server.restart().await;
    let after = insert_all(&server, &["a", "d"]).await;
    let (mut sse, start) = resume(&server, Via::Header, "", &seen[1].last_event_id()).await;
    assert_resumed(&start);
    assert_eq!(seen[1].database, database);
    let expected: Vec<Version> = before.into_iter().skip(2).chain(after).collect();
    assert_eq!(ids(&sse.events(3).await), ids(&expected));
    sse.expect_no_frame(Duration::from_millis(300)).await;
}

#[tokio::test]
async fn ids_that_cannot_resume_get_the_snapshot() {
    let server = Server::start().await;
    let other = Server::start().await;
    let inserted = insert_all(&server, &["a", "b", "a"]).await;
    other.insert("a", json!("other")).await;
    let database = server.health().await.database_id;
    let other_database = other.health().await.database_id;
    assert_ne!(database, other_database, "every database has its own identity");
    let snapshot = ids(&inserted[1..]);
    let cases = [
        format!("1@{other_database}"),
        "1@0f8fad5bd9cb469fa16570867728950e".to_string(),
        format!("99@{database}"),
        format!("{}@{database}", u64::MAX),
        format!("18446744073709551616@{database}"),
        format!("-1@{database}"),
        format!("x@{database}"),
        format!("@{database}"),
        format!("1@{}", &database[..31]),
        format!("1@{database}0"),
        format!("1@{database}@{database}"),
        "1".to_string(),
        "1@".to_string(),
        "garbage".to_string(),
    ];
    for via in [Via::Header, Via::Query] {
        for last_event_id in &cases {
            let (mut sse, start) = resume(&server, via, "", last_event_id).await;
            assert_snapshot(&start, last_event_id);
            assert_eq!(ids(&sse.events(2).await), snapshot, "{via:?} {last_event_id:?}");
            sse.expect_no_frame(Duration::from_millis(50)).await;
        }
    }
}
