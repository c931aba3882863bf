//! The NATS JetStream storage on a real three-node cluster: the settings a stream must have, reads that never go back in time while a replica is behind, and two servers with
//! `--nats` as one database. `failover.rs`: appends and tails while servers die; `logins.rs`:
//! credentials and TLS. The conformance suite runs in the crate's own tests, on a cluster of
//! three as well.

mod failover;
mod logins;

use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::{Duration, Instant};

use broker_storage::{NewVersion, Storage, Version};
use broker_storage_nats::{NatsOptions, NatsStorage};

use crate::support::{NODES, NatsCluster, Server, Sse, ids};

/// Stream names made unique within this test binary: each store of the conformance suite starts
/// on an empty stream of its own.
static STREAMS: AtomicUsize = AtomicUsize::new(0);

fn fresh_stream(what: &str) -> String {
    format!("{what}_{}", STREAMS.fetch_add(1, Ordering::Relaxed))
}

/// Options for `stream` on the servers `urls` (comma-separated), three replicas.
fn options(urls: &str, stream: &str) -> NatsOptions {
    let mut options = NatsOptions::default();
    options.servers = urls.split(',').map(str::to_owned).collect();
    options.stream = stream.to_owned();
    options
}

async fn connect(urls: &str, stream: &str) -> NatsStorage {
    NatsStorage::connect(options(urls, stream))
        .await
        .unwrap_or_else(|error| panic!("connect to stream {stream} at {urls}: {error}"))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_stream_with_other_settings_is_refused_with_what_to_change() {
    let cluster = NatsCluster::start().await;
    let stream = fresh_stream("settings");
    connect(&cluster.urls(), &stream).await.close().await.expect("close");
    let mut one_replica = options(&cluster.urls(), &stream);
    one_replica.replicas = 1;
    let error = NatsStorage::connect(one_replica).await.expect_err("another replica count");
    assert!(error.to_string().contains("--nats-replicas 3"), "{error}");

    // A stream made by hand, without deny_delete and with an age limit, is never used.
    let config = serde_json::json!({
        "name": "handmade", "subjects": ["handmade.>"], "num_replicas": 3,
        "max_age": 3_600_000_000_000u64,
        "metadata": { "broker_database_id": "6a2f41a3-c54c-4ce8-b2d2-0324e1c32e22" },
    });
    let subject = "$JS.API.STREAM.CREATE.handmade";
    let created = cluster.api_request(0, subject, config.to_string().as_bytes()).await;
    assert_eq!(created["config"]["name"], "handmade", "{created}");
    let error = NatsStorage::connect(options(&cluster.urls(), "handmade"))
        .await
        .expect_err("a stream that deletes versions");
    assert!(error.to_string().contains("--deny-delete"), "{error}");
}

/// Two servers started with the same `--nats` servers and stream are one database: what is
/// inserted through one is streamed and audited through the other, and a retry with the same
/// `Idempotency-Key` through either stores nothing.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn two_servers_on_one_stream_share_the_database() {
    let cluster = NatsCluster::start().await;
    let urls = cluster.urls();
    let stream = fresh_stream("servers");
    let args = ["--nats", urls.as_str(), "--nats-stream", stream.as_str()];
    let first = Server::start_with(&args, &[]).await;
    let second = Server::start_with(&args, &[]).await;
    assert_eq!(first.health().await.database_id, second.health().await.database_id);

    let mut events = Sse::snapshot(&second).await;
    let inserted = first.insert("user", serde_json::json!({ "name": "Rusty" })).await;
    let event = events.next_event().await;
    assert_eq!((&*event.event, event.id), ("user", inserted.id), "streamed by the other");
    assert_eq!(
        ids(&second.audit("user").await),
        ids(std::slice::from_ref(&inserted)),
        "audited by the other"
    );

    let headers = [("content-type", "application/json"), ("idempotency-key", "order-1")];
    let body = br#"{"event":"order","data":1}"#;
    let stored = first.request("POST", "/insert", &headers, Some(body.to_vec())).await;
    let retried = second.request("POST", "/insert", &headers, Some(body.to_vec())).await;
    assert_eq!((stored.status, retried.status), (201, 201), "{stored} {retried}");
    assert_eq!(stored.json(), retried.json(), "the retry is answered with the stored version");
    assert_eq!(second.audit("order").await.len(), 1, "and stores nothing");

    // The copy of a stream is for the NATS tools to make.
    let backup = first.get("/backup").await;
    assert!(backup.body.contains("nats stream backup"), "{backup}");
}

/// A follower killed while versions are appended, then restarted, catches up for seconds, and
/// meanwhile answers direct gets from its stale replica. A store that reads only through it must
/// still see every version it knows of: here, every version the stream held when it connected.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn reads_never_go_back_in_time_while_a_replica_catches_up() {
    let mut cluster = NatsCluster::start().await;
    let stream = fresh_stream("lagging");
    connect(&cluster.urls(), &stream).await.close().await.expect("close");
    let leader = cluster.stream_leader(&stream).await;
    let follower = (0..NODES).find(|&i| i != leader).expect("three nodes");
    let writer = connect(&cluster.url(leader), &stream).await;
    cluster.kill(follower).await;
    let data = format!("\"{}\"", "x".repeat(500));
    let mut acknowledged: Vec<Version> = Vec::new();
    for batch in 0..20 {
        let versions = (0..1000)
            .map(|n| NewVersion::new(format!("e{}", n % 7), batch, data.clone()))
            .collect();
        acknowledged.extend(writer.append(versions).await.expect("append with a quorum"));
    }
    let last = acknowledged.last().expect("versions were appended").clone();

    // The store connects to the follower as soon as it listens, and reads while it catches up;
    // `restart` returns once the follower has caught up.
    let url = cluster.url(follower);
    let caught_up = std::sync::atomic::AtomicBool::new(false);
    let restart = async {
        cluster.restart(follower).await;
        caught_up.store(true, Ordering::Release);
    };
    let read = async {
        let started = Instant::now();
        let reader = loop {
            match NatsStorage::connect(options(&url, &stream)).await {
                Ok(reader) => break reader,
                // Until the restarted node listens.
                Err(_) if started.elapsed() < Duration::from_secs(30) => {
                    tokio::time::sleep(Duration::from_millis(20)).await;
                }
                Err(error) => panic!("connect to the restarted follower: {error}"),
            }
        };
        let mut reads = 0;
        while !caught_up.load(Ordering::Acquire) || reads < 10 {
            let since = reader.since(last.id - 100, 1_000).await.expect("since");
            assert_eq!(since.len(), 100, "read {reads}: since misses acknowledged versions");
            let latest = reader.latest().await.expect("latest");
            assert!(latest.contains(&last), "read {reads}: latest misses {}", last.id);
            let history = reader.history(&last.event, last.id - 50, 1_000).await.expect("history");
            assert_eq!(history.last(), Some(&last), "read {reads}: history misses {}", last.id);
            reads += 1;
        }
        reader.close().await.expect("close");
    };
    tokio::join!(restart, read);
    writer.close().await.expect("close");
}

/// More events than one multi-subject get answers for (1,024) are read in groups, as one
/// consistent snapshot.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn latest_covers_more_events_than_one_multi_subject_get() {
    let cluster = NatsCluster::start().await;
    let store = connect(&cluster.urls(), &fresh_stream("many")).await;
    let mut expected = Vec::new();
    for batch in 0..3 {
        let versions = (0..1000)
            .map(|n| NewVersion::new(format!("event-{batch}-{n}"), batch, "0".to_owned()))
            .collect();
        expected.extend(store.append(versions).await.expect("append"));
    }
    let newer = store
        .append(vec![NewVersion::new("event-0-7", 9, "1"), NewVersion::new("event-2-0", 9, "1")])
        .await
        .expect("append");
    expected.retain(|version| &*version.event != "event-0-7" && &*version.event != "event-2-0");
    expected.extend(newer);
    assert_eq!(
        store.latest().await.expect("latest"),
        expected,
        "one version per event, in id order"
    );
    store.close().await.expect("close");
}

/// Reads of large versions come in several batches, each a few megabytes: every version is
/// still read once, in order.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn reads_of_large_versions_come_whole() {
    let cluster = NatsCluster::start().await;
    let store = connect(&cluster.urls(), &fresh_stream("large")).await;
    let data = |n: usize| format!("\"{}\"", n.to_string().repeat(500_000 / n.to_string().len()));
    let mut stored = Vec::new();
    for batch in 0..3 {
        let versions = (0..10)
            .map(|i| NewVersion::new(format!("e{i}"), batch, data(batch as usize * 10 + i + 1)));
        stored.extend(store.append(versions.collect()).await.expect("append"));
    }
    assert_eq!(store.since(0, 100).await.expect("since"), stored, "since reads every version");
    let history: Vec<Version> = stored.iter().filter(|v| &*v.event == "e1").cloned().collect();
    assert_eq!(store.history("e1", 0, 100).await.expect("history"), history);
    assert_eq!(store.latest().await.expect("latest"), stored[20..], "the last of each event");
    store.close().await.expect("close");
}

/// `--retain` over NATS: the stream's own purge removes what the rules let go of, and every node
/// sharing the stream sees the horizon: in its audit, its resumes and its past states.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn retention_on_a_shared_stream_is_seen_by_every_node() {
    let cluster = NatsCluster::start().await;
    let urls = cluster.urls();
    let stream = fresh_stream("retained");
    let args = [
        "--nats",
        urls.as_str(),
        "--nats-stream",
        stream.as_str(),
        "--retain",
        "cursor=2",
        "--idempotency-window",
        "12s",
    ];
    let pruning = Server::start_with(&args, &[]).await;
    let other = Server::start_with(&args, &[]).await;
    let mut cursor = Vec::new();
    for n in 0..6 {
        cursor.push(pruning.insert("cursor", serde_json::json!(n)).await);
        other.insert("form", serde_json::json!(n)).await;
    }
    // Pruning spares versions younger than the idempotency window, at least 12 s on NATS.
    let deadline = Instant::now() + Duration::from_secs(40);
    while other.audit("cursor").await.len() > 2 {
        assert!(Instant::now() < deadline, "cursor was not pruned: {}", pruning.log());
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    assert_eq!(ids(&other.audit("cursor").await), ids(&cursor[4..]), "the newest two stay");
    assert_eq!(other.audit("form").await.len(), 6, "an event no rule matches keeps everything");
    let horizon = cursor[3].id.to_string();
    let deadline = Instant::now() + Duration::from_secs(15);
    // The other node learns the horizon from the stream's bucket within a few seconds.
    while other.get("/audit/cursor").await.header("broker-pruned-through") != Some(&*horizon) {
        assert!(Instant::now() < deadline, "the other node never saw the horizon");
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    let gone = other.get(&format!("/snapshot?at={}", cursor[1].id)).await;
    gone.expect_error(410, "pruned");
    assert_eq!(gone.json()["oldest_kept"], serde_json::json!(cursor[4].id), "{gone}");

    let database = other.health().await.database_id;
    let resume_at = format!("{}@{database}", cursor[0].id);
    let (_, start) = Sse::subscribe(&other, "/events", &[("Last-Event-ID", &resume_at)]).await;
    assert_eq!(start.reason.map(|(reason, _)| reason).as_deref(), Some("pruned"));
}
