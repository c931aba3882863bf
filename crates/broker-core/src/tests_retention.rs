//! Retention and the state of the past, as an embedding program sees them, on the in-memory
//! backend.

use std::time::{Duration, SystemTime};

use broker_storage::MemoryStorage;

use crate::{At, Broker, Config, Error, Json, RetentionRule, SubscribeOptions};

/// A broker that prunes every 20 ms by `rules`, on a store whose idempotency window (which
/// pruning spares) is 1 ms.
async fn broker_keeping(rules: Vec<RetentionRule>) -> Broker {
    let config =
        Config { retention: rules, prune_interval: Duration::from_millis(20), ..Config::default() };
    let store = MemoryStorage::with_idempotency_window(Duration::from_millis(1));
    Broker::open(store, config).await.expect("open")
}

async fn insert(broker: &Broker, event: &str, data: &str) -> u64 {
    broker.insert(event, Json::parse(data).expect("JSON")).await.expect("insert").id()
}

fn ids(versions: &[broker_storage::Version]) -> Vec<u64> {
    versions.iter().map(|version| version.id).collect()
}

/// Waits until `event`'s history holds `count` versions, at most 5 s.
async fn wait_for_history(broker: &Broker, event: &str, count: usize) -> Vec<u64> {
    let deadline = tokio::time::Instant::now() + Duration::from_secs(5);
    loop {
        let history = ids(&broker.audit(event, 0, 1000).await.expect("audit"));
        if history.len() == count || tokio::time::Instant::now() > deadline {
            return history;
        }
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
}

fn glob(prefix: &'static str) -> impl Fn(&str) -> bool + Send + Sync + 'static {
    move |name: &str| name.starts_with(prefix)
}

#[tokio::test]
async fn the_first_matching_rule_prunes_and_other_events_keep_everything() {
    let broker = broker_keeping(vec![
        RetentionRule::new("metrics.cpu", |name| name == "metrics.cpu").keep_last(1),
        RetentionRule::new("metrics.*", glob("metrics.")).keep_last(3),
    ])
    .await;
    let mut cpu = Vec::new();
    let mut disk = Vec::new();
    let mut form = Vec::new();
    for n in 0..8 {
        cpu.push(insert(&broker, "metrics.cpu", &n.to_string()).await);
        disk.push(insert(&broker, "metrics.disk", &n.to_string()).await);
        form.push(insert(&broker, "form", &n.to_string()).await);
    }
    assert_eq!(wait_for_history(&broker, "metrics.cpu", 1).await, cpu[7..]);
    assert_eq!(wait_for_history(&broker, "metrics.disk", 3).await, disk[5..]);
    assert_eq!(wait_for_history(&broker, "form", 8).await, form, "unmatched events keep all");
    tokio::time::sleep(Duration::from_millis(60)).await;
    assert_eq!(broker.pruned_through("metrics.cpu"), Some(cpu[6]));
    assert_eq!(broker.pruned_through("metrics.disk"), Some(disk[4]));
    assert_eq!(broker.pruned_through("form"), None);
    let snapshot: Vec<u64> =
        broker.snapshot(&SubscribeOptions::new()).iter().map(|e| e.id()).collect();
    assert_eq!(snapshot, [cpu[7], disk[7], form[7]], "the latest of every event is kept");
}

#[tokio::test]
async fn an_age_bound_prunes_old_versions_but_never_the_latest() {
    let broker =
        broker_keeping(vec![RetentionRule::new("*", |_| true).max_age(Duration::from_millis(100))])
            .await;
    let old = [insert(&broker, "a", "1").await, insert(&broker, "a", "2").await];
    let lone = insert(&broker, "b", "1").await;
    tokio::time::sleep(Duration::from_millis(150)).await;
    let young = insert(&broker, "a", "3").await;
    assert_eq!(wait_for_history(&broker, "a", 1).await, [young], "versions over 100 ms go");
    assert_eq!(wait_for_history(&broker, "b", 1).await, [lone], "a latest version stays");
    assert!(broker.pruned_through("a").is_some_and(|id| id >= old[1]));
}

#[tokio::test]
async fn a_subscriber_resuming_before_the_horizon_starts_over_from_a_snapshot() {
    let broker =
        broker_keeping(vec![RetentionRule::new("pruned", |name| name == "pruned").keep_last(1)])
            .await;
    let first = insert(&broker, "pruned", "1").await;
    insert(&broker, "kept", "1").await;
    insert(&broker, "pruned", "2").await;
    let last = insert(&broker, "pruned", "3").await;
    wait_for_history(&broker, "pruned", 1).await;
    tokio::time::sleep(Duration::from_millis(60)).await;

    let mut resumed = broker.subscribe(SubscribeOptions::new().resume_after(first));
    assert!(!resumed.resumed(), "versions after the resume point are gone");
    assert_eq!(resumed.pruned_through(), Some(last - 1), "and the subscriber is told why");
    let snapshot: Vec<String> =
        std::iter::from_fn(|| resumed.try_next()).map(|e| e.data().to_owned()).collect();
    assert_eq!(snapshot, ["1", "3"], "the snapshot: kept, then pruned's latest");

    let only_kept = SubscribeOptions::new().events(["kept"]).resume_after(first);
    let only_kept = broker.subscribe(only_kept);
    assert!(only_kept.resumed(), "an event that lost nothing resumes as usual");
    assert_eq!(only_kept.pruned_through(), None);
    let recent = broker.subscribe(SubscribeOptions::new().resume_after(last - 1));
    assert!(recent.resumed(), "a resume point after the horizon replays");
}

#[tokio::test]
async fn the_state_at_an_id_or_a_time_is_each_events_latest_then() {
    let broker = broker_keeping(Vec::new()).await;
    let a1 = insert(&broker, "a", "1").await;
    let b1 = insert(&broker, "b", "1").await;
    tokio::time::sleep(Duration::from_millis(20)).await;
    let between = SystemTime::now();
    tokio::time::sleep(Duration::from_millis(20)).await;
    let a2 = insert(&broker, "a", "2").await;
    let c1 = insert(&broker, "c", "1").await;
    let all = SubscribeOptions::new();
    let at = |at| broker.snapshot_at(at, &all);
    assert_eq!(ids(&at(At::Id(0)).await.expect("at")), [] as [u64; 0], "nothing before the first");
    assert_eq!(ids(&at(At::Id(a1)).await.expect("at")), [a1]);
    assert_eq!(ids(&at(At::Id(b1)).await.expect("at")), [a1, b1]);
    assert_eq!(ids(&at(At::Id(a2)).await.expect("at")), [b1, a2]);
    assert_eq!(ids(&at(At::Id(u64::MAX)).await.expect("at")), [b1, a2, c1]);
    assert_eq!(ids(&at(At::Time(between)).await.expect("at")), [a1, b1], "a time between");
    let long_ago = SystemTime::UNIX_EPOCH + Duration::from_secs(1);
    assert_eq!(ids(&at(At::Time(long_ago)).await.expect("at")), [] as [u64; 0]);
    assert_eq!(ids(&at(At::Time(SystemTime::now())).await.expect("at")), [b1, a2, c1]);
    let only_a = SubscribeOptions::new().events(["a"]);
    assert_eq!(ids(&broker.snapshot_at(At::Id(c1), &only_a).await.expect("at")), [a2]);
}

#[tokio::test]
async fn the_state_before_the_horizon_is_refused_naming_the_event_and_the_oldest_kept() {
    let broker =
        broker_keeping(vec![RetentionRule::new("a", |name| name == "a").keep_last(1)]).await;
    let a1 = insert(&broker, "a", "1").await;
    let b1 = insert(&broker, "b", "1").await;
    let a2 = insert(&broker, "a", "2").await;
    wait_for_history(&broker, "a", 1).await;
    let all = SubscribeOptions::new();
    match broker.snapshot_at(At::Id(b1), &all).await {
        Err(Error::Pruned { event, pruned_through, oldest_kept }) => {
            assert_eq!((event.as_str(), pruned_through, oldest_kept), ("a", a1, a2));
        }
        other => panic!("the state at {b1} needs a pruned version of a: {other:?}"),
    }
    let only_b = SubscribeOptions::new().events(["b"]);
    let state = broker.snapshot_at(At::Id(b1), &only_b).await.expect("b lost nothing");
    assert_eq!(ids(&state), [b1]);
    let hidden = SubscribeOptions::new().allow(|event| event != "a");
    assert_eq!(ids(&broker.snapshot_at(At::Id(b1), &hidden).await.expect("at")), [b1]);
    assert_eq!(ids(&broker.snapshot_at(At::Id(a2), &all).await.expect("at")), [b1, a2]);
}
