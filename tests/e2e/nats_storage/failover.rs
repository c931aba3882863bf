//! Appends and tails while NATS servers die: every append ends within a bound, as stored,
//! unavailable (nothing stored) or unknown (settled by a retry with the same keys), never with a
//! version lost or stored twice; a tail resumes by itself.

use std::collections::{HashMap, HashSet};
use std::time::{Duration, Instant};

use broker_storage::{NewVersion, Storage, StorageError, Version};
use broker_storage_nats::{NatsOptions, NatsStorage};

use super::{connect, fresh_stream};
use crate::support::{NODES, NatsCluster};

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

/// Appends `new` through `store`, again while it answers `Unavailable` (nothing was stored): a
/// server that is not the stream's leader may not route the stream's subjects for a moment after
/// the stream is created. Fails after 30 s.
async fn append_once_available(store: &NatsStorage, new: NewVersion) -> Vec<Version> {
    let started = Instant::now();
    loop {
        match store.append(vec![new.clone()]).await {
            Err(StorageError::Unavailable(_)) if started.elapsed() < Duration::from_secs(30) => {
                tokio::time::sleep(Duration::from_millis(100)).await;
            }
            result => return result.expect("append"),
        }
    }
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
        stored.iter().map(|version| (&*version.data, version)).collect();
    assert_eq!(by_data.len(), stored.len(), "no version is stored twice");
    let (mut acknowledged, mut unavailable, mut unknown) = (0, 0, 0);
    for (w, outcomes) in &outcomes {
        for (n, outcome) in outcomes {
            let sent = batch(*w, *n);
            let found: Vec<Option<&&Version>> =
                sent.iter().map(|new| by_data.get(&*new.data)).collect();
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
    let data: HashSet<&str> = after.iter().map(|version| &*version.data).collect();
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

/// A tail whose connection goes with a killed stream leader resumes by itself, on another node,
/// after the last version it delivered: every acknowledged version once, in id order.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_tail_resumes_by_itself_when_its_server_is_killed() {
    let mut cluster = NatsCluster::start().await;
    let stream = fresh_stream("tail");
    connect(&cluster.urls(), &stream).await.close().await.expect("close");
    let leader = cluster.stream_leader(&stream).await;
    let follower = connect(&cluster.url((leader + 1) % NODES), &stream).await;
    let tailing = connect(&cluster.url(leader), &stream).await;
    let mut tail = tailing.tail(0);

    let mut acknowledged = Vec::new();
    for n in 0..10 {
        acknowledged.extend(append_once_available(&follower, NewVersion::new("t", n, "0")).await);
    }
    cluster.kill(leader).await;
    let started = Instant::now();
    let mut n = 10;
    while acknowledged.len() < 20 {
        assert!(started.elapsed() < Duration::from_secs(30), "no new leader to append to");
        if let Ok(stored) = follower.append(vec![NewVersion::new("t", n, "1")]).await {
            acknowledged.extend(stored);
            n += 1;
        }
    }

    let mut delivered: Vec<Version> = Vec::new();
    while delivered.len() < acknowledged.len() {
        match tokio::time::timeout(Duration::from_secs(30), tail.next()).await {
            Ok(Some(Ok(batch))) => delivered.extend(batch),
            other => panic!("the tail stopped after {} versions: {other:?}", delivered.len()),
        }
    }
    assert_eq!(delivered, acknowledged, "every acknowledged version, once, in id order");
    tailing.close().await.expect("close");
    assert!(
        matches!(tokio::time::timeout(Duration::from_secs(10), tail.next()).await, Ok(None)),
        "the tail ends once its store is closed"
    );
    follower.close().await.expect("close");
}
