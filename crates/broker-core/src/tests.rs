//! Behaviour of the engine as an embedding program sees it, on the in-memory backend.

use std::collections::HashMap;
use std::sync::Arc;
use std::time::Duration;

use broker_storage::MemoryStorage;

use crate::{Broker, Config, Entry, Error, Json, SubscribeOptions, Subscription};

async fn broker() -> Broker {
    broker_with(Config::default()).await
}

async fn broker_with(config: Config) -> Broker {
    Broker::open(MemoryStorage::new(), config).await.expect("open")
}

async fn insert(broker: &Broker, event: &str, data: &str) -> Arc<Entry> {
    broker.insert(event, Json::parse(data).expect("valid JSON")).await.expect("insert")
}

async fn next(subscription: &mut Subscription) -> Arc<Entry> {
    tokio::time::timeout(Duration::from_secs(5), subscription.next())
        .await
        .expect("an entry within 5 s")
        .expect("the subscription is open")
}

fn pending(subscription: &mut Subscription) -> Vec<(String, String)> {
    std::iter::from_fn(|| subscription.try_next())
        .map(|entry| (entry.event().to_owned(), entry.data().to_owned()))
        .collect()
}

fn pairs(items: &[(&str, &str)]) -> Vec<(String, String)> {
    items.iter().map(|(event, data)| (event.to_string(), data.to_string())).collect()
}

/// Regression: a subscriber that connected while there were no events was never registered.
#[tokio::test]
async fn subscriber_of_an_empty_broker_receives_later_inserts() {
    let broker = broker().await;
    let mut subscription = broker.subscribe(SubscribeOptions::new());
    insert(&broker, "user", r#"{"name":"Rusty"}"#).await;
    let entry = next(&mut subscription).await;
    assert_eq!((entry.event(), entry.data()), ("user", r#"{"name":"Rusty"}"#));
}

/// Regression: with N latest events, every later update reached a subscriber N times.
#[tokio::test]
async fn each_update_arrives_once_whatever_the_number_of_events() {
    let broker = broker().await;
    for n in 0..5 {
        insert(&broker, &format!("event-{n}"), "0").await;
    }
    let mut subscription = broker.subscribe(SubscribeOptions::new());
    assert_eq!(pending(&mut subscription).len(), 5, "the snapshot holds each event once");
    insert(&broker, "event-2", "1").await;
    assert_eq!(next(&mut subscription).await.data(), "1");
    assert_eq!(pending(&mut subscription), [], "the update arrived exactly once");
}

/// Regression: with more than about 100 latest events, subscribing panicked.
#[tokio::test]
async fn snapshot_of_thousands_of_events_arrives_in_commit_order() {
    let broker = broker().await;
    for n in 0..3000 {
        insert(&broker, &format!("event-{n}"), &n.to_string()).await;
    }
    let mut subscription = broker.subscribe(SubscribeOptions::new());
    let snapshot: Vec<u64> =
        std::iter::from_fn(|| subscription.try_next()).map(|e| e.id()).collect();
    assert_eq!(snapshot, (1..=3000).collect::<Vec<_>>());
    insert(&broker, "event-7", "\"new\"").await;
    assert_eq!(next(&mut subscription).await.id(), 3001);
}

#[tokio::test]
async fn snapshot_holds_only_the_latest_version_of_each_event() {
    let broker = broker().await;
    insert(&broker, "a", "1").await;
    insert(&broker, "b", "1").await;
    insert(&broker, "a", "2").await;
    let mut subscription = broker.subscribe(SubscribeOptions::new());
    assert_eq!(pending(&mut subscription), pairs(&[("b", "1"), ("a", "2")]));
}

#[tokio::test]
async fn inserts_racing_a_new_subscriber_arrive_once_and_in_order() {
    let broker = broker().await;
    let writer = {
        let broker = broker.clone();
        tokio::spawn(async move {
            for n in 0..2000 {
                insert(&broker, &format!("e{}", n % 7), &n.to_string()).await;
            }
        })
    };
    let mut subscriptions = Vec::new();
    for _ in 0..20 {
        subscriptions.push(broker.subscribe(SubscribeOptions::new()));
        tokio::task::yield_now().await;
    }
    writer.await.expect("writer");
    for mut subscription in subscriptions {
        let mut last_id = 0;
        let mut latest = HashMap::new();
        while let Some(entry) = subscription.try_next() {
            assert!(entry.id() > last_id, "ids arrive strictly increasing, no duplicate");
            last_id = entry.id();
            latest.insert(entry.event().to_owned(), entry.data().to_owned());
        }
        assert_eq!(last_id, 2000, "the subscriber got up to the last insert");
        for n in 1993..2000 {
            assert_eq!(latest[&format!("e{}", n % 7)], n.to_string(), "latest of each event");
        }
    }
}

#[tokio::test]
async fn slow_subscriber_catches_up_to_the_latest_of_every_event_without_going_back() {
    let broker = broker_with(Config { live_capacity: 4, ..Config::default() }).await;
    insert(&broker, "a", "0").await;
    let mut slow = broker.subscribe(SubscribeOptions::new());
    let mut fast = broker.subscribe(SubscribeOptions::new());
    assert_eq!(next(&mut slow).await.data(), "0");
    assert_eq!(pending(&mut fast).len(), 1);
    for n in 1..=100 {
        insert(&broker, ["a", "b", "c"][n % 3], &n.to_string()).await;
        assert_eq!(next(&mut fast).await.data(), n.to_string(), "a reader is never held back");
    }
    let caught_up = pending(&mut slow);
    assert_eq!(caught_up, pairs(&[("c", "98"), ("a", "99"), ("b", "100")]));
    insert(&broker, "a", "101").await;
    assert_eq!(next(&mut slow).await.data(), "101", "after catching up it is live again");
}

/// JSON text of about `size` bytes that names version `n`.
fn large(n: usize, size: usize) -> String {
    format!("\"{n}:{}\"", "x".repeat(size))
}

/// The bytes of event names and data of the `entries` that the broker still holds: those with
/// a strong reference besides the test's own.
fn held(entries: &[Arc<Entry>]) -> usize {
    entries.iter().filter(|entry| Arc::strong_count(entry) > 1).map(|entry| entry.size()).sum()
}

#[tokio::test]
async fn a_stalled_subscriber_pins_at_most_the_byte_budget_then_catches_up_without_going_back() {
    const BUDGET: usize = 64 * 1024;
    const SIZE: usize = 4 * 1024;
    let broker = broker_with(Config { live_bytes: BUDGET, ..Config::default() }).await;
    for event in ["a", "b", "c"] {
        insert(&broker, event, "0").await;
    }
    let mut stalled = broker.subscribe(SubscribeOptions::new());
    let mut reading = broker.subscribe(SubscribeOptions::new());
    let had: Vec<u64> = std::iter::from_fn(|| stalled.try_next()).map(|e| e.id()).collect();
    assert_eq!(pending(&mut reading).len(), 3);

    // 200 versions of 4 KiB, 800 KiB in all, well within the ring's 4,096 entries: only the
    // byte budget can let them go while `stalled` has a slot for each.
    let mut inserted = Vec::new();
    for n in 1..=200 {
        let entry = insert(&broker, ["a", "b", "c"][n % 3], &large(n, SIZE)).await;
        let read = next(&mut reading).await;
        assert_eq!(read.id(), entry.id(), "a subscriber that reads is never held back");
        inserted.push(entry);
    }
    let held = held(&inserted);
    assert!(held <= BUDGET, "the broker holds {held} bytes of the versions, over {BUDGET}");
    assert!(held > BUDGET - 2 * SIZE, "it holds only {held} bytes: the window keeps its budget");

    // The test's own references would keep every version readable: let them go.
    let latest: Vec<u64> = inserted[197..].iter().map(|e| e.id()).collect();
    drop(inserted);
    let caught_up: Vec<u64> = std::iter::from_fn(|| stalled.try_next()).map(|e| e.id()).collect();
    assert_eq!(caught_up, latest, "the latest version of each event, in commit order");
    assert!(caught_up.iter().all(|&id| id > had[2]), "never back in time");
    insert(&broker, "a", "\"live\"").await;
    assert_eq!(next(&mut stalled).await.data(), "\"live\"", "after catching up it is live again");
}

#[tokio::test]
async fn versions_nobody_has_left_to_read_are_let_go() {
    const SIZE: usize = 4 * 1024;
    let broker = broker().await;
    let mut inserted = Vec::new();
    for n in 0..10 {
        inserted.push(insert(&broker, "a", &large(n, SIZE)).await);
    }
    assert_eq!(held(&inserted[..9]), 0, "with nobody subscribed only the latest is held");

    let mut reading = broker.subscribe(SubscribeOptions::new());
    let stalled = broker.subscribe(SubscribeOptions::new());
    assert_eq!(pending(&mut reading).len(), 1);
    for n in 10..20 {
        inserted.push(insert(&broker, "a", &large(n, SIZE)).await);
        next(&mut reading).await;
    }
    let unread: usize = inserted[10..19].iter().map(|entry| entry.size()).sum();
    assert_eq!(held(&inserted[10..19]), unread, "held for the subscriber that has yet to read");
    drop(stalled);
    assert_eq!(held(&inserted[..19]), 0, "let go with the only subscriber that had not read them");
}

#[tokio::test]
async fn a_subscriber_that_keeps_up_gets_every_version_once_whatever_the_byte_budget() {
    let broker = broker_with(Config { live_bytes: 1, ..Config::default() }).await;
    let mut subscription = broker.subscribe(SubscribeOptions::new());
    for round in 0..20 {
        // Four versions of one event in one insert commit as one batch; only the last is then
        // the latest version, so the window alone keeps the other three, each far over the
        // budget, until the subscriber reads them.
        let data = Json::parse(&large(round, 16 * 1024)).expect("valid JSON");
        let stored = broker.insert_many(vec![("a", data); 4], None).await.expect("insert_many");
        for id in stored.iter().map(|entry| entry.id()) {
            assert_eq!(next(&mut subscription).await.id(), id, "round {round}");
        }
        assert_eq!(pending(&mut subscription), [], "round {round}: each version arrived once");
    }
}

#[tokio::test]
async fn resume_replays_everything_after_the_id_then_goes_live() {
    let broker = broker().await;
    let mut ids = Vec::new();
    for n in 0..1500 {
        ids.push(insert(&broker, ["a", "b"][n % 2], &n.to_string()).await.id());
    }
    let mut subscription = broker.subscribe(SubscribeOptions::new().resume_after(ids[9]));
    assert!(subscription.resumed());
    for expected in &ids[10..] {
        assert_eq!(next(&mut subscription).await.id(), *expected);
    }
    insert(&broker, "a", "\"live\"").await;
    assert_eq!(next(&mut subscription).await.data(), "\"live\"");
    assert_eq!(pending(&mut subscription), [], "no duplicate at the seam");
}

#[tokio::test]
async fn resume_after_an_unknown_id_starts_with_a_snapshot() {
    let broker = broker().await;
    insert(&broker, "a", "1").await;
    insert(&broker, "a", "2").await;
    let mut subscription = broker.subscribe(SubscribeOptions::new().resume_after(99));
    assert!(!subscription.resumed());
    assert_eq!(pending(&mut subscription), pairs(&[("a", "2")]));
    let mut current = broker.subscribe(SubscribeOptions::new().resume_after(2));
    assert!(current.resumed());
    assert_eq!(pending(&mut current), [], "nothing to replay after the last id");
}

#[tokio::test]
async fn filtered_subscription_sees_only_its_events() {
    let broker = broker().await;
    for (event, data) in [("a", "1"), ("b", "1"), ("c", "1"), ("a", "2")] {
        insert(&broker, event, data).await;
    }
    let mut snapshot = broker.subscribe(SubscribeOptions::new().events(["a", "c"]));
    let mut replay = broker.subscribe(SubscribeOptions::new().events(["b"]).resume_after(0));
    assert_eq!(pending(&mut snapshot), pairs(&[("c", "1"), ("a", "2")]));
    assert_eq!(next(&mut replay).await.data(), "1");
    insert(&broker, "b", "2").await;
    insert(&broker, "c", "2").await;
    assert_eq!(next(&mut snapshot).await.data(), "2");
    assert_eq!(next(&mut replay).await.data(), "2");
    assert_eq!(pending(&mut snapshot), [], "b is not followed");
}

#[tokio::test]
async fn subscriber_count_follows_subscriptions() {
    let broker = broker().await;
    let subscriptions: Vec<_> =
        (0..10).map(|_| broker.subscribe(SubscribeOptions::new())).collect();
    assert_eq!(broker.subscriber_count(), 10);
    drop(subscriptions);
    assert_eq!(broker.subscriber_count(), 0);
}

#[tokio::test]
async fn invalid_event_names_are_refused_and_nothing_is_stored() {
    let broker = broker().await;
    for name in ["", "a\nid: 5", "nul\0"] {
        let result = broker.insert(name, Json::parse("1").expect("valid")).await;
        assert!(matches!(result, Err(Error::InvalidEventName(_))), "{name:?}: {result:?}");
    }
    assert_eq!(broker.last_id(), 0);
}

#[tokio::test]
async fn close_commits_queued_inserts_and_ends_subscriptions() {
    let broker = broker().await;
    let mut subscription = broker.subscribe(SubscribeOptions::new());
    let inserts: Vec<_> = (0..200)
        .map(|n| {
            let broker = broker.clone();
            tokio::spawn(async move { broker.insert("a", Json::from(serde_json::json!(n))).await })
        })
        .collect();
    tokio::task::yield_now().await;
    broker.close().await.expect("close");
    let mut acknowledged = 0;
    for insert in inserts {
        match insert.await.expect("task") {
            Ok(_) => acknowledged += 1,
            Err(Error::Closed) => {}
            Err(error) => panic!("unexpected error {error}"),
        }
    }
    let mut delivered = 0;
    while subscription.next().await.is_some() {
        delivered += 1;
    }
    assert_eq!(delivered, acknowledged, "every acknowledged insert was published, then the end");
    let late = broker.insert("a", Json::parse("1").expect("valid")).await;
    assert!(matches!(late, Err(Error::Closed)), "{late:?}");
}

#[tokio::test]
async fn allow_predicate_hides_refused_events_everywhere() {
    let broker = broker().await;
    for (event, data) in [("orders.a", "1"), ("secret", "1"), ("orders.b", "1")] {
        insert(&broker, event, data).await;
    }
    let allowed = |event: &str| event.starts_with("orders.");
    let mut snapshot = broker.subscribe(SubscribeOptions::new().allow(allowed));
    let mut replay = broker.subscribe(SubscribeOptions::new().allow(allowed).resume_after(0));
    let mut named =
        broker.subscribe(SubscribeOptions::new().events(["secret", "orders.b"]).allow(allowed));
    assert_eq!(pending(&mut snapshot), pairs(&[("orders.a", "1"), ("orders.b", "1")]));
    assert_eq!(next(&mut replay).await.event(), "orders.a");
    assert_eq!(next(&mut replay).await.event(), "orders.b");
    assert_eq!(pending(&mut named), pairs(&[("orders.b", "1")]));
    insert(&broker, "secret", "2").await;
    insert(&broker, "orders.b", "2").await;
    for subscription in [&mut snapshot, &mut replay, &mut named] {
        let entry = next(subscription).await;
        assert_eq!((entry.event(), entry.data()), ("orders.b", "2"), "secret is never delivered");
    }
}

/// Two brokers over one shared log, as two nodes over a replicated store.
async fn two_nodes() -> (Broker, Broker) {
    let store = Arc::new(MemoryStorage::new());
    let first = Broker::open(store.clone(), Config::default()).await.expect("open the first");
    let second = Broker::open(store, Config::default()).await.expect("open the second");
    (first, second)
}

#[tokio::test]
async fn every_node_publishes_every_nodes_inserts_once_in_id_order() {
    let (first, second) = two_nodes().await;
    let mut on_first = first.subscribe(SubscribeOptions::new());
    let mut on_second = second.subscribe(SubscribeOptions::new());
    let mut inserted = Vec::new();
    for n in 0..20 {
        let node = if n % 3 == 0 { &second } else { &first };
        inserted.push(insert(node, ["a", "b"][n % 2], &n.to_string()).await.id());
    }
    for subscription in [&mut on_first, &mut on_second] {
        let mut received = Vec::new();
        for _ in 0..20 {
            received.push(next(subscription).await.id());
        }
        assert_eq!(received, inserted, "each node delivers both nodes' versions in id order");
        assert!(subscription.try_next().is_none(), "and nothing twice");
    }
    assert_eq!(first.last_id(), second.last_id());
}

#[tokio::test]
async fn an_acknowledged_insert_is_in_the_snapshot_of_the_node_that_took_it() {
    let (first, second) = two_nodes().await;
    for n in 0..50 {
        let (node, other) = if n % 2 == 0 { (&first, &second) } else { (&second, &first) };
        let entry = insert(node, "counter", &n.to_string()).await;
        let mut subscription = node.subscribe(SubscribeOptions::new());
        let snapshot = next(&mut subscription).await;
        assert_eq!(snapshot.id(), entry.id(), "read-your-writes on the node that acknowledged");
        // The other node learns of it through the tail, soon.
        let mut elsewhere = other.subscribe(SubscribeOptions::new().resume_after(entry.id() - 1));
        assert_eq!(next(&mut elsewhere).await.id(), entry.id(), "and every other node too");
    }
}

#[tokio::test]
async fn a_retry_with_the_same_key_returns_the_first_version_on_any_node() {
    let (first, second) = two_nodes().await;
    let data = || Json::parse(r#"{"n":1}"#).expect("valid JSON");
    let stored = first.insert_idempotent("order", data(), "key-1").await.expect("insert");
    let retried = second.insert_idempotent("order", data(), "key-1").await.expect("retry");
    assert_eq!(retried.id(), stored.id(), "the retry answers the first version");
    assert_eq!(second.audit("order", 0, 10).await.expect("audit").len(), 1, "stored once");

    let other = Json::parse(r#"{"n":2}"#).expect("valid JSON");
    let reused = first.insert_idempotent("order", other, "key-1").await;
    assert!(
        matches!(reused, Err(Error::IdempotencyKeyReused { id, .. }) if id == stored.id()),
        "a key reused for other data is refused: {reused:?}"
    );
    for key in ["", "with space", "é", &"k".repeat(256)] {
        let refused = first.insert_idempotent("order", data(), key).await;
        assert!(matches!(refused, Err(Error::InvalidIdempotencyKey(_))), "{key:?}: {refused:?}");
    }
    assert_eq!(first.audit("order", 0, 10).await.expect("audit").len(), 1, "nothing stored");
}

#[tokio::test]
async fn waiting_for_an_id_returns_once_it_is_published_and_not_for_an_unknown_one() {
    let broker = broker().await;
    let patience = Duration::from_millis(200);
    assert!(broker.wait_for(0, patience).await, "0 is always reached");
    let later = {
        let broker = broker.clone();
        tokio::spawn(async move { broker.wait_for(3, Duration::from_secs(5)).await })
    };
    for n in 0..3 {
        insert(&broker, "a", &n.to_string()).await;
    }
    assert!(later.await.expect("join"), "id 3 is reached once it is published");
    assert!(!broker.wait_for(1_000, patience).await, "an id never given out is not reached");
}

/// An insert that waited longer than `queue_timeout` for its commit to start is refused as
/// unavailable, and nothing of it is stored; one taken in time is stored.
#[tokio::test]
async fn an_insert_that_waited_past_the_queue_timeout_is_refused_and_not_stored() {
    let refusing = broker_with(Config { queue_timeout: Duration::ZERO, ..Config::default() }).await;
    let refused = refusing.insert("late", Json::parse("1").expect("valid JSON")).await;
    assert!(
        matches!(&refused, Err(Error::Storage(error))
            if matches!(**error, broker_storage::StorageError::Unavailable(_))),
        "{refused:?}"
    );
    assert!(refusing.audit("late", 0, 10).await.expect("audit").is_empty(), "nothing stored");

    let patient =
        broker_with(Config { queue_timeout: Duration::from_secs(60), ..Config::default() }).await;
    insert(&patient, "late", "1").await;
    assert_eq!(patient.audit("late", 0, 10).await.expect("audit").len(), 1);
}
