//! Inserts of several versions ([`Broker::insert_many`]), on the in-memory backend: stored
//! together or not at all, never split over two commits, in order, and retried by one key.

use std::sync::{Arc, Mutex};
use std::time::Duration;

use broker_storage::{
    Horizon, MemoryStorage, NewVersion, Pruned, Retention, Storage, StorageError, Tail, Uuid,
    Version,
};
use tokio::sync::Semaphore;

use crate::{Broker, Config, Entry, Error, Json, SubscribeOptions};

fn json(text: &str) -> Json {
    Json::parse(text).expect("valid JSON")
}

/// `len` versions of `event`, whose data count from 0.
fn versions(event: &str, len: usize) -> Vec<(String, Json)> {
    (0..len).map(|n| (event.to_owned(), json(&n.to_string()))).collect()
}

fn ids(entries: &[Arc<Entry>]) -> Vec<u64> {
    entries.iter().map(|entry| entry.id()).collect()
}

/// The in-memory store, which records the events of every batch appended to it and holds each
/// append until the test lets it through, so that a test can queue inserts behind a commit and
/// see how the writer cuts them into batches.
#[derive(Clone)]
struct Recorded {
    store: Arc<MemoryStorage>,
    batches: Arc<Mutex<Vec<Vec<String>>>>,
    /// For each append, whether it came from a writer thread, which the store may block.
    on_writer_thread: Arc<Mutex<Vec<bool>>>,
    /// One permit per append let through.
    gate: Arc<Semaphore>,
}

impl Recorded {
    fn new() -> Recorded {
        let store = Arc::new(MemoryStorage::new());
        let gate = Arc::new(Semaphore::new(0));
        Recorded { store, batches: Arc::default(), on_writer_thread: Arc::default(), gate }
    }

    fn batches(&self) -> Vec<Vec<String>> {
        self.batches.lock().expect("not poisoned").clone()
    }
}

impl Storage for Recorded {
    fn database_id(&self) -> Uuid {
        self.store.database_id()
    }

    async fn append(&self, batch: Vec<NewVersion>) -> Result<Vec<Version>, StorageError> {
        let events = batch.iter().map(|new| new.event.to_string()).collect();
        self.batches.lock().expect("not poisoned").push(events);
        let on_writer_thread = broker_storage::on_writer_thread();
        self.on_writer_thread.lock().expect("not poisoned").push(on_writer_thread);
        self.gate.acquire().await.expect("the gate is never closed").forget();
        self.store.append(batch).await
    }

    fn tail(&self, after: u64) -> Tail {
        self.store.tail(after)
    }

    async fn latest(&self) -> Result<Vec<Version>, StorageError> {
        self.store.latest().await
    }

    async fn history(
        &self,
        event: &str,
        after: u64,
        limit: usize,
    ) -> Result<Vec<Version>, StorageError> {
        self.store.history(event, after, limit).await
    }

    async fn since(&self, after: u64, limit: usize) -> Result<Vec<Version>, StorageError> {
        self.store.since(after, limit).await
    }

    async fn latest_at(&self, at: u64) -> Result<Vec<Version>, StorageError> {
        self.store.latest_at(at).await
    }

    async fn prune(
        &self,
        event: &str,
        retention: Retention,
        limit: usize,
    ) -> Result<Pruned, StorageError> {
        self.store.prune(event, retention, limit).await
    }

    async fn horizons(&self) -> Result<Vec<Horizon>, StorageError> {
        self.store.horizons().await
    }

    async fn close(&self) -> Result<(), StorageError> {
        self.store.close().await
    }
}

/// The redb backend writes its journal on the calling thread when that is a writer thread, and
/// hands the write to the blocking pool otherwise: the engine must append from one.
#[tokio::test]
async fn every_append_comes_from_a_writer_thread_and_no_task_is_one() {
    let storage = Recorded::new();
    storage.gate.add_permits(100);
    let broker = Broker::open(storage.clone(), Config::default()).await.expect("open");
    broker.insert("a", json("1")).await.expect("insert");
    broker.insert_many(versions("b", 3), None).await.expect("insert_many");
    let appends = storage.on_writer_thread.lock().expect("not poisoned").clone();
    assert_eq!(appends, [true, true], "both commits appended from the writer thread");
    let on_a_task = tokio::spawn(async { broker_storage::on_writer_thread() }).await;
    assert!(!on_a_task.expect("join"), "a task of the runtime may not block");
    broker.close().await.expect("close");
}

/// Inserts that find the queue full wait for room, and are all stored, once each: the first
/// commit waits at the gate while 300 inserts race for a queue of one.
#[tokio::test]
async fn inserts_beyond_the_queue_capacity_wait_for_room_and_are_all_stored() {
    let storage = Recorded::new();
    let config = Config { queue_capacity: 1, ..Config::default() };
    let broker = Broker::open(storage.clone(), config).await.expect("open");
    let inserts: Vec<_> = (0..300)
        .map(|n| {
            let broker = broker.clone();
            tokio::spawn(async move { broker.insert(format!("e{}", n % 7), json("1")).await })
        })
        .collect();
    // Every insert has tried to queue once each task has had its turn.
    tokio::time::sleep(Duration::from_millis(50)).await;
    storage.gate.add_permits(1_000);
    let mut ids = Vec::new();
    for insert in inserts {
        ids.push(insert.await.expect("the insert's task").expect("insert").id());
    }
    ids.sort_unstable();
    assert_eq!(ids, (1..=300).collect::<Vec<u64>>());
    broker.close().await.expect("close");
}

#[tokio::test]
async fn versions_are_stored_in_order_with_increasing_ids_and_published_before_the_answer() {
    let broker = Broker::open(MemoryStorage::new(), Config::default()).await.expect("open");
    broker.insert("before", json("0")).await.expect("insert");
    let given = [("a", "1"), ("b", "2"), ("a", "3")];
    let stored = broker
        .insert_many(given.iter().map(|(event, data)| (*event, json(data))), None)
        .await
        .expect("insert_many");
    let answered: Vec<(&str, &str)> = stored.iter().map(|e| (e.event(), e.data())).collect();
    assert_eq!(answered, given, "the versions come back in the order given");
    assert_eq!(ids(&stored), [2, 3, 4], "with increasing ids, after every earlier version");
    // Answered once published: a subscriber that starts now finds the last one in its snapshot.
    let mut subscription = broker.subscribe(SubscribeOptions::new());
    let snapshot: Vec<u64> =
        std::iter::from_fn(|| subscription.try_next()).map(|e| e.id()).collect();
    assert_eq!(snapshot, [1, 3, 4], "the latest before, b and a");
    assert!(
        broker.insert_many(Vec::<(String, Json)>::new(), None).await.expect("empty").is_empty()
    );
    assert_eq!(broker.last_id(), 4, "no versions store nothing");
}

#[tokio::test]
async fn an_invalid_name_or_too_many_versions_refuse_the_whole_insert() {
    let config = Config { max_batch: 10, ..Config::default() };
    let broker = Broker::open(MemoryStorage::new(), config).await.expect("open");
    let mut given = versions("ok", 5);
    given[3].0 = "bad\nname".to_owned();
    let refused = broker.insert_many(given, None).await;
    assert!(
        matches!(&refused, Err(Error::InvalidEventName(reason)) if reason.starts_with("version 3:")),
        "the error names the version: {refused:?}"
    );
    let refused = broker.insert_many(versions("ok", 11), None).await;
    assert!(matches!(refused, Err(Error::TooManyVersions { max: 10 })), "{refused:?}");
    assert_eq!(broker.last_id(), 0, "nothing was stored");
    let stored = broker.insert_many(versions("ok", 10), None).await.expect("max_batch fits");
    assert_eq!(ids(&stored), (1..=10).collect::<Vec<_>>());
}

#[tokio::test]
async fn the_writer_counts_versions_never_splits_an_insert_and_carries_the_rest_over() {
    let storage = Recorded::new();
    let config = Config { max_batch: 10, ..Config::default() };
    let broker = Broker::open(storage.clone(), config).await.expect("open");
    // The first commit waits at the gate while the others queue up behind it.
    let first = tokio::spawn({
        let broker = broker.clone();
        async move { broker.insert("first", json("0")).await }
    });
    while storage.batches().is_empty() {
        tokio::task::yield_now().await;
    }
    let queued: Vec<_> = [("a", 4), ("b", 4), ("c", 4), ("d", 1)]
        .into_iter()
        .map(|(event, len)| {
            let broker = broker.clone();
            tokio::spawn(async move { broker.insert_many(versions(event, len), None).await })
        })
        .collect();
    // Every insert is in the queue once each task has had its turn.
    tokio::time::sleep(Duration::from_millis(50)).await;
    storage.gate.add_permits(100);
    first.await.expect("join").expect("the first insert");
    let mut answered = Vec::new();
    for insert in queued {
        answered.push(insert.await.expect("join").expect("insert_many"));
    }
    let batches = storage.batches();
    assert_eq!(batches[0], ["first"]);
    // 13 versions queued behind the first commit, in batches of at most 10: two commits, each
    // insert whole in one of them.
    assert_eq!(batches.len(), 3, "{batches:?}");
    for batch in &batches[1..] {
        assert!(batch.len() <= 10, "a commit holds at most max_batch versions: {batches:?}");
    }
    for (event, len) in [("a", 4), ("b", 4), ("c", 4), ("d", 1)] {
        let holding: Vec<usize> = batches
            .iter()
            .map(|batch| batch.iter().filter(|e| *e == event).count())
            .filter(|&count| count > 0)
            .collect();
        assert_eq!(holding, [len], "{event} is in one commit, whole: {batches:?}");
    }
    for entries in &answered {
        let ids = ids(entries);
        let contiguous = ids.windows(2).all(|pair| pair[0] + 1 == pair[1]);
        assert!(contiguous, "no other version between an insert's versions: {ids:?}");
    }
}

#[tokio::test]
async fn concurrent_inserts_of_several_versions_reach_subscribers_whole_and_in_order() {
    let broker = Broker::open(MemoryStorage::new(), Config::default()).await.expect("open");
    let mut subscription = broker.subscribe(SubscribeOptions::new());
    let inserts: Vec<_> = (0..20)
        .map(|n| {
            let broker = broker.clone();
            tokio::spawn(async move {
                if n % 4 == 0 {
                    vec![broker.insert(format!("single-{n}"), json("0")).await.expect("insert")]
                } else {
                    broker
                        .insert_many(versions(&format!("many-{n}"), 50), None)
                        .await
                        .expect("many")
                }
            })
        })
        .collect();
    let mut total = 0;
    for insert in inserts {
        total += insert.await.expect("join").len();
    }
    let mut received = Vec::new();
    for _ in 0..total {
        let entry = tokio::time::timeout(Duration::from_secs(5), subscription.next())
            .await
            .expect("an entry within 5 s")
            .expect("open");
        received.push(entry);
    }
    assert!(received.windows(2).all(|pair| pair[0].id() < pair[1].id()), "in id order, once");
    // Each insert's versions arrive one after the other, in the order given.
    let mut runs: Vec<(String, Vec<String>)> = Vec::new();
    for entry in &received {
        match runs.last_mut() {
            Some((event, data)) if event == entry.event() => data.push(entry.data().to_owned()),
            _ => runs.push((entry.event().to_owned(), vec![entry.data().to_owned()])),
        }
    }
    assert_eq!(runs.len(), 20, "each insert arrives as one run: {runs:?}");
    for (event, data) in runs {
        let expected = if event.starts_with("single") { 1 } else { 50 };
        let given: Vec<String> = (0..expected).map(|n| n.to_string()).collect();
        assert_eq!(data, given, "{event}");
    }
}

#[tokio::test]
async fn one_key_retries_the_whole_insert_and_a_changed_version_is_refused() {
    let broker = Broker::open(MemoryStorage::new(), Config::default()).await.expect("open");
    let first = broker.insert_many(versions("order", 3), Some("batch-1")).await.expect("first");
    let retry = broker.insert_many(versions("order", 3), Some("batch-1")).await.expect("retry");
    assert_eq!(ids(&retry), ids(&first), "the retry answers the versions stored then");
    assert_eq!(broker.last_id(), 3, "and stores nothing");

    let mut changed = versions("order", 3);
    changed[1].1 = json("\"other\"");
    let refused = broker.insert_many(changed, Some("batch-1")).await;
    assert!(
        matches!(refused, Err(Error::IdempotencyKeyReused { id: 2, .. })),
        "a changed version is refused, naming the version stored under its key: {refused:?}"
    );
    assert_eq!(broker.last_id(), 3, "nothing was stored");

    // The key names an insert of three versions: another length, or a single insert, makes
    // other keys and is stored anew, as documented.
    let shorter = broker.insert_many(versions("order", 2), Some("batch-1")).await.expect("two");
    assert_eq!(ids(&shorter), [4, 5]);
    let single = broker.insert_idempotent("order", json("0"), "batch-1").await.expect("single");
    assert_eq!(single.id(), 6);
    let refused = broker.insert_many(versions("order", 3), Some("with space")).await;
    assert!(matches!(refused, Err(Error::InvalidIdempotencyKey(_))), "{refused:?}");
}

/// In a batch that holds runs of one event, the last version of each run becomes the latest of
/// its event; the answers are the very entries subscribers receive, not copies.
#[tokio::test]
async fn the_last_of_a_run_of_one_event_is_its_latest_and_answers_share_the_entries() {
    let broker = Broker::open(MemoryStorage::new(), Config::default()).await.expect("open");
    let mut live = broker.subscribe(SubscribeOptions::new());
    let given = [("a", "1"), ("a", "2"), ("b", "3"), ("b", "4"), ("a", "5"), ("c", "6")];
    let stored = broker
        .insert_many(given.iter().map(|(event, data)| (*event, json(data))), None)
        .await
        .expect("insert_many");
    assert_eq!(ids(&stored), [1, 2, 3, 4, 5, 6]);
    let snapshot: Vec<(String, String)> = broker
        .snapshot(&SubscribeOptions::new())
        .iter()
        .map(|entry| (entry.event().to_owned(), entry.data().to_owned()))
        .collect();
    let latest = [("b", "4"), ("a", "5"), ("c", "6")].map(|(e, d)| (e.to_owned(), d.to_owned()));
    assert_eq!(snapshot, latest, "the last of each run, in id order");
    for answered in &stored {
        let received = tokio::time::timeout(std::time::Duration::from_secs(5), live.next())
            .await
            .expect("an entry within 5 s")
            .expect("open");
        assert!(Arc::ptr_eq(answered, &received), "entry {} is shared", answered.id());
    }
}
