//! The NATS JetStream storage on a real three-node cluster: every contract of the storage trait
//! (the conformance suite, for one store and for two sharing a stream), reads that never go back
//! in time while a replica is behind, and appends that fail within a bound, never silently,
//! while the stream's leader is killed.

use std::collections::{HashMap, HashSet};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::{Duration, Instant};

use broker_storage::{NewVersion, Storage, StorageError, Version, conformance};
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

/// Sends `signal` (`STOP`, `CONT`) to a node's process.
fn signal(cluster: &NatsCluster, node: usize, signal: &str) {
    let pid = cluster.pid(node).to_string();
    let status = std::process::Command::new("kill")
        .args([&format!("-{signal}"), &pid])
        .status()
        .expect("run kill");
    assert!(status.success(), "kill -{signal} {pid} failed");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn nats_storage_passes_the_conformance_suite() {
    let cluster = NatsCluster::start().await;
    let urls = cluster.urls();
    conformance::run(|| {
        let urls = urls.clone();
        async move { connect(&urls, &fresh_stream("conformance")).await }
    })
    .await;
    conformance::run_shared(|| {
        let urls = urls.clone();
        async move {
            let stream = fresh_stream("shared");
            let first = connect(&urls, &stream).await;
            let second = connect(&urls, &stream).await;
            (first, second)
        }
    })
    .await;
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
    let created =
        cluster.request(0, "$JS.API.STREAM.CREATE.handmade", config.to_string().as_bytes()).await;
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
    assert_eq!((event.event.as_str(), event.id), ("user", inserted.id), "streamed by the other");
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

/// A follower stopped while versions are appended comes back behind, and answers direct gets
/// from its own replica while it catches up. A store that reads through it right away must
/// still see every version it knows of: here, every version the stream held when it connected.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn reads_never_go_back_in_time_while_a_replica_catches_up() {
    let cluster = NatsCluster::start().await;
    let stream = fresh_stream("lagging");
    let leader_url = {
        let store = connect(&cluster.urls(), &stream).await;
        store.close().await.expect("close");
        cluster.url(cluster.stream_leader(&stream).await)
    };
    let leader = cluster.stream_leader(&stream).await;
    let follower = (0..NODES).find(|&i| i != leader).expect("three nodes");
    let writer = connect(&leader_url, &stream).await;

    for round in 0..3 {
        signal(&cluster, follower, "STOP");
        let mut acknowledged: Vec<Version> = Vec::new();
        for batch in 0..20 {
            let versions = (0..50)
                .map(|n| {
                    let event = format!("e{}", n % 7);
                    NewVersion::new(event, 1_000 + batch, format!("\"{round}-{batch}-{n}\""))
                })
                .collect();
            acknowledged.extend(writer.append(versions).await.expect("append with a quorum"));
        }
        signal(&cluster, follower, "CONT");

        // Straight away, a store that reads only through the follower.
        let reader = connect(&cluster.url(follower), &stream).await;
        let last = acknowledged.last().expect("versions were appended").clone();
        for _ in 0..10 {
            let since = reader.since(0, 1_000_000).await.expect("since");
            assert!(
                since.last().is_some_and(|version| version.id >= last.id),
                "round {round}: since(0) ends at {:?}, before the acknowledged {}",
                since.last().map(|version| version.id),
                last.id
            );
            let latest = reader.latest().await.expect("latest");
            assert!(
                latest.contains(&last),
                "round {round}: latest misses the acknowledged {}",
                last.id
            );
            let history = reader.history(&last.event, 0, 1_000_000).await.expect("history");
            assert_eq!(history.last(), Some(&last), "round {round}: history misses {}", last.id);
            let page = reader.since(last.id - 10, 100).await.expect("since");
            assert_eq!(page.first().map(|v| v.id), Some(last.id - 9), "round {round}");
        }
        let tail = reader.since(0, 1_000_000).await.expect("since");
        let ids: HashSet<u64> = tail.iter().map(|version| version.id).collect();
        assert!(acknowledged.iter().all(|version| ids.contains(&version.id)), "round {round}");
        reader.close().await.expect("close");
    }
    writer.close().await.expect("close");
}

/// What one append during the leader's death ended in.
enum Outcome {
    Stored(Vec<Version>),
    Unavailable,
    Unknown,
}

/// The batch writer `w` appends in round `n`: one version in even rounds, three (an atomic
/// batch) in odd ones, each with an idempotency key and its key as its data.
fn batch(w: usize, n: u64) -> Vec<NewVersion> {
    let len = if n.is_multiple_of(2) { 1 } else { 3 };
    (0..len)
        .map(|i| {
            let key = format!("w{w}-{n}-{i}");
            NewVersion::new("failover", n, format!("\"{key}\"")).with_idempotency_key(key)
        })
        .collect()
}

/// The store is connected to the stream leader alone, which is then killed: the appends in
/// flight lose their connection and their answers, and the client reconnects to a survivor.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn appends_while_the_leader_is_killed_fail_within_a_bound_and_never_silently() {
    let mut cluster = NatsCluster::start().await;
    let stream = fresh_stream("failover");
    connect(&cluster.urls(), &stream).await.close().await.expect("close");
    let leader = cluster.stream_leader(&stream).await;
    let store = std::sync::Arc::new(connect(&cluster.url(leader), &stream).await);
    let bound = NatsOptions::DEFAULT_RETRY_TIMEOUT + NatsOptions::DEFAULT_REQUEST_TIMEOUT * 3;

    let writers: Vec<_> = (0..4)
        .map(|w| {
            let store = std::sync::Arc::clone(&store);
            tokio::spawn(async move {
                let mut outcomes = Vec::new();
                let started = Instant::now();
                let mut n = 0;
                while started.elapsed() < Duration::from_secs(15) {
                    let began = Instant::now();
                    let outcome = match store.append(batch(w, n)).await {
                        Ok(stored) => Outcome::Stored(stored),
                        Err(StorageError::Unavailable(_)) => Outcome::Unavailable,
                        Err(StorageError::OutcomeUnknown(_)) => Outcome::Unknown,
                        Err(error) => panic!("append {w}-{n} failed with {error}"),
                    };
                    let took = began.elapsed();
                    assert!(took < bound, "append {w}-{n} took {took:?}, more than {bound:?}");
                    outcomes.push((n, outcome));
                    n += 1;
                    tokio::time::sleep(Duration::from_millis(10)).await;
                }
                (w, outcomes)
            })
        })
        .collect();
    tokio::time::sleep(Duration::from_secs(3)).await;
    cluster.kill(leader).await;
    let mut outcomes = Vec::new();
    for writer in writers {
        outcomes.push(writer.await.expect("a writer"));
    }
    cluster.restart(leader).await;

    let stored = store.since(0, 1_000_000).await.expect("since after the failover");
    let by_data: HashMap<&str, &Version> =
        stored.iter().map(|version| (version.data.as_str(), version)).collect();
    assert_eq!(by_data.len(), stored.len(), "no version is stored twice");
    let (mut acknowledged, mut unavailable, mut unknown) = (0, 0, 0);
    for (w, outcomes) in &outcomes {
        for (n, outcome) in outcomes {
            let sent = batch(*w, *n);
            let found: Vec<Option<&&Version>> =
                sent.iter().map(|new| by_data.get(new.data.as_str())).collect();
            match outcome {
                Outcome::Stored(versions) => {
                    acknowledged += 1;
                    let expected: Vec<Option<&Version>> = versions.iter().map(Some).collect();
                    let found: Vec<Option<&Version>> =
                        found.into_iter().map(|v| v.copied()).collect();
                    assert_eq!(
                        found, expected,
                        "acknowledged append {w}-{n} is stored as returned"
                    );
                }
                Outcome::Unavailable => {
                    unavailable += 1;
                    assert!(found.iter().all(Option::is_none), "{w}-{n} failed, yet was stored");
                }
                Outcome::Unknown => {
                    unknown += 1;
                    // All or nothing, and a retry with the same keys settles it.
                    assert!(
                        found.iter().all(Option::is_some) || found.iter().all(Option::is_none),
                        "{w}-{n} was stored in part"
                    );
                    let settled = store.append(sent).await.expect("a retry after the failover");
                    for (version, found) in settled.iter().zip(&found) {
                        if let Some(found) = found {
                            assert_eq!(version, **found, "{w}-{n}: the retry returns the original");
                        }
                    }
                }
            }
        }
    }
    assert!(acknowledged > 0, "appends succeed around the failover");
    let after = store.since(0, 1_000_000).await.expect("since after the retries");
    let data: HashSet<&str> = after.iter().map(|version| version.data.as_str()).collect();
    assert_eq!(
        data.len(),
        after.len(),
        "no retry stored a version twice ({acknowledged} acknowledged, {unavailable} \
         unavailable, {unknown} unknown)"
    );
    store.close().await.expect("close");
}

/// With two of three nodes down the stream has no quorum: an append fails within the bound, as
/// unavailable or unknown, and once the nodes are back a retry with the same key stores the
/// version once.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_append_without_a_quorum_fails_within_a_bound_and_a_retry_settles_it() {
    let mut cluster = NatsCluster::start().await;
    let stream = fresh_stream("quorum");
    connect(&cluster.urls(), &stream).await.close().await.expect("close");
    let survivor = cluster.stream_leader(&stream).await;
    let store = connect(&cluster.url(survivor), &stream).await;
    let before = store.append(vec![NewVersion::new("a", 1, "1")]).await.expect("append");
    for i in (0..NODES).filter(|&i| i != survivor) {
        cluster.kill(i).await;
    }
    let bound = NatsOptions::DEFAULT_RETRY_TIMEOUT + NatsOptions::DEFAULT_REQUEST_TIMEOUT * 3;
    let new = NewVersion::new("a", 2, "2").with_idempotency_key("no-quorum");
    let began = Instant::now();
    let result = store.append(vec![new.clone()]).await;
    let took = began.elapsed();
    assert!(
        matches!(result, Err(StorageError::Unavailable(_) | StorageError::OutcomeUnknown(_))),
        "an append without a quorum: {result:?}"
    );
    assert!(took < bound, "the append took {took:?}, more than {bound:?}");
    // The survivor goes on calling itself leader for a while; writable says no once it has not
    // heard from its followers for a few seconds.
    let mut writable = store.writable().await;
    let asked = Instant::now();
    while writable.is_ok() && asked.elapsed() < Duration::from_secs(10) {
        tokio::time::sleep(Duration::from_millis(200)).await;
        writable = store.writable().await;
    }
    assert!(matches!(writable, Err(StorageError::Unavailable(_))), "writable: {writable:?}");

    for i in (0..NODES).filter(|&i| i != survivor) {
        cluster.restart(i).await;
    }
    cluster.stream_leader(&stream).await;
    let retried = store.append(vec![new]).await.expect("the retry once the quorum is back");
    let all = store.since(0, 100).await.expect("since");
    assert_eq!(all, [before[0].clone(), retried[0].clone()], "the version is stored once");
    store.close().await.expect("close");
}
