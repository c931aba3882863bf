//! What clients see when part of a deployment fails, as SCALING.md's "What failover looks like"
//! describes it: the stream's leader killed under inserts, a broker node killed under its
//! subscribers, and the NATS quorum lost and regained.

use std::collections::HashSet;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::time::{Duration, Instant};

use futures_util::future::join_all;
use serde_json::json;

use super::{Deployment, EVENT_TIMEOUT, assert_increasing, event_ids};
use crate::support::{Event, Feed, INSERT_BOUND, Reply, Server, Version};

/// How long an insert may be retried through an election or a recovered quorum.
const RETRY_WINDOW: Duration = Duration::from_secs(60);

/// How long a subscriber may see no event while the stream cannot store.
const QUIET: Duration = Duration::from_secs(120);

/// The event inserted last, which tells the subscribers that nothing follows.
const END: &str = "end";

/// The error code and `Retry-After` of a 503 that SCALING.md allows while the stream cannot
/// store; panics on any other answer.
fn unavailable(reply: &Reply) -> (String, u64) {
    assert_eq!(reply.status, 503, "{reply}");
    let code = reply.json()["error"].as_str().unwrap_or_default().to_owned();
    assert!(code == "storage_unavailable" || code == "unknown_outcome", "{reply}");
    let retry_after = reply.header("retry-after").and_then(|value| value.parse().ok());
    (code, retry_after.unwrap_or_else(|| panic!("a 503 without Retry-After: {reply}")))
}

/// What became of one insert retried under one `Idempotency-Key` until it was stored.
#[derive(Debug)]
struct Outcome {
    key: String,
    id: u64,
    /// How many 503s came before the 201, and whether one was `unknown_outcome`.
    unavailable: usize,
    unknown: bool,
    /// The longest wait for one answer.
    slowest: Duration,
}

/// Inserts `{"key": key}` as `event` on `node`, retrying on 503 with the same key after its
/// `Retry-After` (at most a second), until a 201; panics if that takes longer than `within`.
async fn insert_retrying(node: &Server, event: &str, key: &str, within: Duration) -> Outcome {
    let started = Instant::now();
    let data = json!({ "key": key });
    let mut outcome = Outcome {
        key: key.to_owned(),
        id: 0,
        unavailable: 0,
        unknown: false,
        slowest: Duration::ZERO,
    };
    loop {
        let (reply, took) = node.insert_once(event, &data, key).await;
        outcome.slowest = outcome.slowest.max(took);
        if reply.status == 201 {
            let version: Version = serde_json::from_str(&reply.body).expect("a version");
            assert_eq!(version.data(), data, "the version stored under {key}");
            outcome.id = version.id;
            return outcome;
        }
        let (code, retry_after) = unavailable(&reply);
        outcome.unavailable += 1;
        outcome.unknown |= code == "unknown_outcome";
        assert!(
            started.elapsed() < within,
            "the insert under {key} still answers {reply} after {within:?}; log:\n{}",
            node.log()
        );
        tokio::time::sleep(Duration::from_secs(retry_after).min(Duration::from_secs(1))).await;
    }
}

/// Every event of `feed` until the one named `last`, which is left out; panics if the stream
/// ends first or goes quiet for `quiet`.
async fn events_until(feed: &mut Feed, last: &str, quiet: Duration) -> Vec<Event> {
    let mut events = Vec::new();
    loop {
        let event = feed.next_event(quiet).await;
        let event = event.unwrap_or_else(|| panic!("the stream ended after {events:?}"));
        if event.event == last {
            return events;
        }
        events.push(event);
    }
}

/// Every version of each of `events`, in id order, read from `node`'s audit.
async fn audited(node: &Server, events: &[String]) -> Vec<Version> {
    let mut all = Vec::new();
    for event in events {
        all.extend(node.audit(event).await);
    }
    all.sort_by_key(|version| version.id);
    all
}

/// Checks that every acknowledged insert of `outcomes` is in `audit` exactly once, at the id it
/// was acknowledged with, and that no key was stored twice, even one answered `unknown_outcome`.
fn assert_stored_once(audit: &[Version], outcomes: &[Outcome]) {
    let keys: Vec<String> = audit
        .iter()
        .map(|version| version.data()["key"].as_str().expect("a key").to_owned())
        .collect();
    let unique: HashSet<&String> = keys.iter().collect();
    assert_eq!(unique.len(), keys.len(), "a key stored twice: {keys:?}");
    for outcome in outcomes {
        let stored: Vec<u64> = audit
            .iter()
            .filter(|version| version.data()["key"] == outcome.key.as_str())
            .map(|version| version.id)
            .collect();
        assert_eq!(stored, [outcome.id], "{outcome:?} in the audit");
    }
}

/// Polls `done` every 50 ms until it holds; panics after `timeout` with `what`.
async fn wait_until(what: &str, timeout: Duration, mut done: impl FnMut() -> bool) {
    let started = Instant::now();
    while !done() {
        assert!(started.elapsed() < timeout, "{what} did not happen within {timeout:?}");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

/// Polls `/readyz` on `node` until it answers `status` with the status `code`, for at most
/// [`INSERT_BOUND`].
async fn readyz_until(node: &Server, status: &str, code: u16) {
    let started = Instant::now();
    loop {
        let reply = node.get("/readyz").await;
        if reply.status == code && reply.json()["status"] == status {
            return;
        }
        assert!(started.elapsed() < INSERT_BOUND, "/readyz still answers {reply}, not {status}");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

/// Eight writers, four on each node, insert under keys of their own and retry on 503 while the
/// stream's leader is killed and elected anew: every insert acknowledged is stored once at its
/// id, none is stored twice, none waits for an answer past [`INSERT_BOUND`], and subscribers on
/// both nodes receive every version in one order without their streams ending.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn killing_the_stream_leader_under_inserts_stores_each_once_and_streams_go_on() {
    const WRITERS: usize = 8;
    let Deployment { mut cluster, a, b, stream } = Deployment::start("leader_killed").await;
    let mut on_a = Feed::open(a.addr(), None).await;
    let mut on_b = Feed::open(b.addr(), None).await;
    let stop = AtomicBool::new(false);
    let acknowledged = AtomicUsize::new(0);

    let writers = (0..WRITERS).map(|w| {
        let (node, stop, acknowledged) = (if w % 2 == 0 { &a } else { &b }, &stop, &acknowledged);
        async move {
            let mut outcomes = Vec::new();
            while !stop.load(Ordering::Relaxed) {
                let key = format!("w{w}-{}", outcomes.len());
                outcomes.push(insert_retrying(node, &format!("w{w}"), &key, RETRY_WINDOW).await);
                acknowledged.fetch_add(1, Ordering::Relaxed);
            }
            outcomes
        }
    });
    let subscribers = async {
        tokio::join!(events_until(&mut on_a, END, QUIET), events_until(&mut on_b, END, QUIET))
    };
    let inserts = async {
        let fault = async {
            wait_until("40 inserts", RETRY_WINDOW, || acknowledged.load(Ordering::Relaxed) >= 40)
                .await;
            let leader = cluster.stream_leader(&stream).await;
            cluster.kill(leader).await;
            let killed = Instant::now();
            let before = acknowledged.load(Ordering::Relaxed);
            wait_until("40 inserts after the leader was killed", RETRY_WINDOW, || {
                acknowledged.load(Ordering::Relaxed) >= before + 40
            })
            .await;
            stop.store(true, Ordering::Relaxed);
            (leader, killed.elapsed())
        };
        let (outcomes, (leader, recovery)) = tokio::join!(join_all(writers), fault);
        cluster.restart(leader).await;
        let end = insert_retrying(&a, END, END, RETRY_WINDOW).await;
        (outcomes.into_iter().flatten().collect::<Vec<_>>(), recovery, end)
    };
    let ((outcomes, recovery, end), (on_a, on_b)) = tokio::join!(inserts, subscribers);

    let events: Vec<String> = (0..WRITERS).map(|w| format!("w{w}")).collect();
    let audit = audited(&a, &events).await;
    assert_eq!(audit, audited(&b, &events).await, "one history on both nodes");
    assert_stored_once(&audit, &outcomes);
    let audit_ids: Vec<u64> = audit.iter().map(|version| version.id).collect();
    assert!(audit_ids.iter().all(|&id| id < end.id), "the end is last");
    for (name, events) in [("A", &on_a), ("B", &on_b)] {
        assert_eq!(event_ids(events), audit_ids, "the subscriber on {name}");
    }
    let refused: usize = outcomes.iter().map(|outcome| outcome.unavailable).sum();
    let unknown = outcomes.iter().filter(|outcome| outcome.unknown).count();
    let slowest = outcomes.iter().map(|outcome| outcome.slowest).max().unwrap_or_default();
    eprintln!(
        "leader killed: {} inserts, {refused} answers 503, {unknown} keys answered \
         unknown_outcome, slowest answer {slowest:?}, 40 inserts {recovery:?} after the kill",
        outcomes.len()
    );
}

/// Subscribers of A, killed with SIGKILL, reconnect to B with the last id they read and
/// receive exactly what follows it, while inserts go on through B.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn subscribers_of_a_killed_node_resume_exactly_on_the_other() {
    const SUBSCRIBERS: usize = 20;
    let Deployment { cluster: _cluster, mut a, b, .. } = Deployment::start("node_killed").await;
    let feeds = join_all((0..SUBSCRIBERS).map(|_| Feed::open(a.addr(), None))).await;
    let stop = AtomicBool::new(false);
    let acknowledged = AtomicUsize::new(0);

    // Each version is of its own event, so that nothing a subscriber receives depends on how
    // fast it reads.
    let inserter = async {
        let mut ids = Vec::new();
        while !stop.load(Ordering::Relaxed) {
            let event = format!("tick-{}", ids.len());
            ids.push(insert_retrying(&b, &event, &event, RETRY_WINDOW).await.id);
            acknowledged.store(ids.len(), Ordering::Relaxed);
        }
        let end = insert_retrying(&b, END, END, RETRY_WINDOW).await;
        (ids, end)
    };
    let fault = async {
        wait_until("20 inserts", RETRY_WINDOW, || acknowledged.load(Ordering::Relaxed) >= 20).await;
        a.signal("KILL");
        wait_until("40 more inserts", RETRY_WINDOW, || acknowledged.load(Ordering::Relaxed) >= 60)
            .await;
        stop.store(true, Ordering::Relaxed);
    };
    let (b_addr, a_addr) = (b.addr(), a.addr());
    let subscribers = join_all(feeds.into_iter().map(|mut feed| async move {
        let mut events = Vec::new();
        while let Some(event) = feed.next_event(EVENT_TIMEOUT).await {
            events.push(event);
        }
        let last = events.last().map(|event| event.last_event_id());
        let mut resumed = Feed::open(b_addr, last.as_deref()).await;
        if last.is_some() {
            assert_eq!(resumed.start, "resumed", "from {last:?}: {:?}", resumed.head);
            assert_eq!(resumed.head.header("broker-start"), Some("resumed"));
        }
        let before = events.len();
        events.extend(events_until(&mut resumed, END, EVENT_TIMEOUT).await);
        (before, events)
    }));
    let ((ids, _end), (), subscribers) = tokio::join!(inserter, fault, subscribers);
    let exit = a.wait_for_exit("KILL").await;
    assert!(!exit.status.success(), "A was killed: {exit:?}");

    assert_increasing(&ids, "acknowledged ids");
    for (i, (before, events)) in subscribers.iter().enumerate() {
        assert_eq!(event_ids(events), ids, "subscriber {i} of {a_addr}, {before} read before");
    }
}

/// With two of the three NATS servers stopped, inserts on both nodes answer 503 within the
/// bound and `/readyz` says the storage is failing, while event streams stay open; once one
/// server is back, inserts succeed by themselves, retries of the unknown outcomes store once,
/// and the streams carry on with everything.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn losing_the_nats_quorum_answers_503_and_recovers_by_itself() {
    let Deployment { mut cluster, a, b, .. } = Deployment::start("quorum_lost").await;
    let mut on_a = Feed::open(a.addr(), None).await;
    let mut on_b = Feed::open(b.addr(), None).await;
    let mut outcomes = vec![insert_retrying(&a, "q", "before", RETRY_WINDOW).await];

    cluster.stop(1).await;
    cluster.stop(2).await;
    let mut refused = Vec::new();
    for n in 0..4 {
        let node = if n % 2 == 0 { &a } else { &b };
        let key = format!("lost-{n}");
        let (reply, took) = node.insert_once("q", &json!({ "key": key }), &key).await;
        let (code, _) = unavailable(&reply);
        refused.push((key, code, took));
    }
    for node in [&a, &b] {
        readyz_until(node, "storage_failing", 503).await;
    }

    cluster.restart(1).await;
    let started = Instant::now();
    outcomes.push(insert_retrying(&b, "q", "after", RETRY_WINDOW).await);
    let recovered = started.elapsed();
    let stored = audited(&b, &["q".to_owned()]).await;
    for (key, code, _) in &refused {
        let found = stored.iter().any(|version| version.data()["key"] == key.as_str());
        assert!(code == "unknown_outcome" || !found, "{key} was answered {code}, yet stored");
    }
    for (key, _, _) in &refused {
        outcomes.push(insert_retrying(&a, "q", key, RETRY_WINDOW).await);
    }
    for node in [&a, &b] {
        readyz_until(node, "ready", 200).await;
    }
    insert_retrying(&b, END, END, RETRY_WINDOW).await;

    let audit = audited(&a, &["q".to_owned()]).await;
    assert_stored_once(&audit, &outcomes);
    let audit_ids: Vec<u64> = audit.iter().map(|version| version.id).collect();
    for (name, feed) in [("A", &mut on_a), ("B", &mut on_b)] {
        let events = events_until(feed, END, QUIET).await;
        assert_eq!(event_ids(&events), audit_ids, "the subscriber on {name} stayed and got all");
    }
    eprintln!("quorum lost: answers {refused:?}; the first insert after took {recovered:?}");
}

/// A node that takes no insert while the NATS quorum is lost must still say so on `/readyz`, so
/// that a load balancer's health check stops sending it clients that would insert.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_idle_node_reports_a_lost_quorum_on_readyz() {
    let Deployment { mut cluster, a, b, .. } = Deployment::start("idle_readyz").await;
    insert_retrying(&a, "q", "before", RETRY_WINDOW).await;
    cluster.stop(1).await;
    cluster.stop(2).await;
    for node in [&a, &b] {
        readyz_until(node, "storage_failing", 503).await;
    }
}
