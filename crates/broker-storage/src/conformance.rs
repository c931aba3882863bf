//! A conformance suite for [`Storage`] backends.
//!
//! Every contract documented on the trait has a check here. A backend's own tests call [`run`]
//! with a function that creates a fresh, empty store; each check gets a store of its own. A check
//! that fails panics with a message naming the broken contract, so it reads like any failing
//! test.
//!
//! ```
//! # tokio::runtime::Runtime::new().unwrap().block_on(async {
//! use broker_storage::{conformance, MemoryStorage};
//!
//! conformance::run(|| async { MemoryStorage::new() }).await;
//! # });
//! ```
//!
//! A backend whose database several stores can open at once (a replicated log, a server) also
//! calls [`run_shared`], with a function that opens two stores on one fresh database: it checks
//! that writers interleave and that every store's tail sees every writer's versions.
//!
//! What the suite cannot see from inside one process, that an acknowledged batch survives a
//! crash, is for the backend's own tests to show with a real restart.

use std::collections::HashSet;
use std::future::Future;
use std::time::Duration;

use futures_util::future::join_all;

use crate::{NewVersion, Storage, StorageError, Tail, Version};

mod retention;
mod shared;

#[cfg(any(test, feature = "proptest"))]
pub use retention::strategy;
pub use retention::{Step, check_steps};

/// How long a tail may take to deliver a committed version before a check fails.
const TAIL_PATIENCE: Duration = Duration::from_secs(20);

/// Runs every check against fresh stores made by `fresh`, and closes each store afterwards.
///
/// # Panics
///
/// When the backend breaks a contract of [`Storage`]; the message says which.
pub async fn run<S, F, Fut>(mut fresh: F)
where
    S: Storage,
    F: FnMut() -> Fut,
    Fut: Future<Output = S>,
{
    check(&mut fresh, empty_store_has_nothing).await;
    check(&mut fresh, append_gives_increasing_ids_in_batch_order).await;
    check(&mut fresh, ids_keep_increasing_across_batches).await;
    check(&mut fresh, empty_batch_stores_nothing).await;
    check(&mut fresh, fields_round_trip_exactly).await;
    check(&mut fresh, same_event_same_timestamp_keeps_both).await;
    check(&mut fresh, history_matches_the_exact_name_only).await;
    check(&mut fresh, history_pages_visit_every_version_once).await;
    check(&mut fresh, latest_has_one_version_per_event_in_id_order).await;
    check(&mut fresh, since_replays_every_event_in_id_order).await;
    check(&mut fresh, concurrent_appends_get_distinct_ids).await;
    check(&mut fresh, database_ids_are_stable_and_distinct).await;
    check(&mut fresh, tail_delivers_stored_then_new_versions_once_in_id_order).await;
    check(&mut fresh, tail_sees_concurrent_writers_once_each).await;
    check(&mut fresh, idempotency_key_returns_the_original_version).await;
    check(&mut fresh, closed_store_refuses_every_call).await;
    check(&mut fresh, retention::prune_removes_the_oldest_and_keeps_the_latest).await;
    check(&mut fresh, retention::prune_stops_at_its_limit).await;
    check(&mut fresh, retention::prune_by_time_keeps_younger_versions).await;
    check(&mut fresh, retention::prune_spares_the_idempotency_window).await;
    check(&mut fresh, retention::time_travel_matches_a_model).await;
    check(&mut fresh, retention::a_closed_store_refuses_the_past).await;
}

/// Runs the checks of a shared log against pairs of stores made by `fresh_pair`: two stores
/// opened on one fresh, empty database, as two processes would.
///
/// # Panics
///
/// When the pair breaks a contract of [`Storage`] about several writers; the message says which.
pub async fn run_shared<S, F, Fut>(mut fresh_pair: F)
where
    S: Storage,
    F: FnMut() -> Fut,
    Fut: Future<Output = (S, S)>,
{
    let (first, second) = fresh_pair().await;
    shared::two_writers_interleave_and_each_tail_sees_both(first, second).await;
    let (first, second) = fresh_pair().await;
    shared::a_retry_through_another_store_returns_the_original(first, second).await;
}

async fn check<S, F, Fut, C, CFut>(fresh: &mut F, check: C)
where
    S: Storage,
    F: FnMut() -> Fut,
    Fut: Future<Output = S>,
    C: FnOnce(S, S) -> CFut,
    CFut: Future<Output = ()>,
{
    let store = fresh().await;
    let other = fresh().await;
    check(store, other).await;
}

fn new(event: &str, timestamp: u64, data: &str) -> NewVersion {
    NewVersion::new(event, timestamp, data)
}

async fn append<S: Storage>(store: &S, batch: Vec<NewVersion>) -> Vec<Version> {
    let len = batch.len();
    let stored = store.append(batch).await.expect("append failed");
    assert_eq!(stored.len(), len, "append must return one version per new version");
    stored
}

async fn empty_store_has_nothing<S: Storage>(store: S, _: S) {
    assert_eq!(store.latest().await.expect("latest"), [], "a new store has no latest versions");
    assert_eq!(store.since(0, 100).await.expect("since"), [], "a new store replays nothing");
    assert_eq!(
        store.history("a", 0, 100).await.expect("history"),
        [],
        "a new store has no history"
    );
    store.writable().await.expect("a new store takes writes");
}

async fn append_gives_increasing_ids_in_batch_order<S: Storage>(store: S, _: S) {
    let batch = vec![new("a", 1, "1"), new("b", 1, "2"), new("a", 2, "3")];
    let stored = append(&store, batch.clone()).await;
    assert!(stored[0].id >= 1, "ids start at 1");
    assert!(
        stored.windows(2).all(|w| w[0].id < w[1].id),
        "ids increase in batch order: {stored:?}"
    );
    for (new, version) in batch.into_iter().zip(&stored) {
        assert_eq!(new.with_id(version.id), *version, "append returns versions in batch order");
    }
}

async fn ids_keep_increasing_across_batches<S: Storage>(store: S, _: S) {
    let mut last = 0;
    for round in 0..5 {
        let stored = append(&store, vec![new("a", round, "null"), new("b", round, "null")]).await;
        assert!(
            stored[0].id > last,
            "a batch's first id {} follows the last id {last}",
            stored[0].id
        );
        last = stored[1].id;
    }
}

async fn empty_batch_stores_nothing<S: Storage>(store: S, _: S) {
    assert_eq!(append(&store, Vec::new()).await, [], "an empty batch returns nothing");
    assert_eq!(store.since(0, 100).await.expect("since"), [], "an empty batch stores nothing");
    let stored = append(&store, vec![new("a", 1, "1")]).await;
    assert_eq!(store.since(0, 100).await.expect("since"), stored);
}

async fn fields_round_trip_exactly<S: Storage>(store: S, _: S) {
    let batch = vec![
        new("user", 1_700_000_000_123, r#"{"name":"Rusty","n":18446744073709551615}"#),
        new("naïve café/🦀 :id", u64::MAX, r#""line\nbreak \u0000 \"quoted\"""#),
        new(" leading space", 0, "[1.5e300,-0.0,true,null]"),
        new("big", 7, &format!("\"{}\"", "x".repeat(300_000))),
    ];
    let stored = append(&store, batch.clone()).await;
    for (new, version) in batch.iter().zip(&stored) {
        let history = store.history(&new.event, 0, 10).await.expect("history");
        assert_eq!(
            history,
            std::slice::from_ref(version),
            "history returns the version exactly as appended"
        );
    }
    assert_eq!(store.since(0, 10).await.expect("since"), stored, "since returns exact versions");
}

/// Regression: an audit log keyed by event name and timestamp kept one of two versions inserted
/// in the same second.
async fn same_event_same_timestamp_keeps_both<S: Storage>(store: S, _: S) {
    let stored = append(&store, vec![new("a", 5, "1"), new("a", 5, "2")]).await;
    assert_eq!(store.history("a", 0, 10).await.expect("history"), stored, "both versions are kept");
}

/// Regression: an audit log found by prefix scan returned the versions of `username` for `user`.
async fn history_matches_the_exact_name_only<S: Storage>(store: S, _: S) {
    let names = ["user", "username", "use", "users", "User", "user ", "usera"];
    let stored = append(&store, names.iter().map(|name| new(name, 1, "0")).collect()).await;
    for (name, version) in names.iter().zip(&stored) {
        let history = store.history(name, 0, 100).await.expect("history");
        assert_eq!(
            history,
            std::slice::from_ref(version),
            "history({name:?}) holds only that event"
        );
    }
    assert_eq!(store.history("us", 0, 100).await.expect("history"), [], "no prefix matching");
}

async fn history_pages_visit_every_version_once<S: Storage>(store: S, _: S) {
    let mut expected = Vec::new();
    for round in 0..7 {
        let batch = (0..5).map(|i| new(if i % 2 == 0 { "a" } else { "b" }, round, "0")).collect();
        expected.extend(append(&store, batch).await.into_iter().filter(|v| &*v.event == "a"));
    }
    let mut seen = Vec::new();
    let mut after = 0;
    loop {
        let page = store.history("a", after, 4).await.expect("history");
        assert!(page.len() <= 4, "history returns at most `limit` versions");
        let Some(last) = page.last() else { break };
        after = last.id;
        seen.extend(page);
    }
    assert_eq!(seen, expected, "pages of history visit every version once, oldest first");
    assert_eq!(store.history("a", 0, 0).await.expect("history"), [], "limit 0 returns nothing");
    let last = expected.last().expect("versions were appended").id;
    assert_eq!(store.history("a", last, 10).await.expect("history"), [], "nothing after the last");
}

async fn latest_has_one_version_per_event_in_id_order<S: Storage>(store: S, _: S) {
    let first = append(&store, vec![new("a", 1, "1"), new("b", 1, "1"), new("c", 1, "1")]).await;
    let second = append(&store, vec![new("a", 2, "2"), new("c", 2, "2"), new("a", 3, "3")]).await;
    let latest = store.latest().await.expect("latest");
    let expected = vec![first[1].clone(), second[1].clone(), second[2].clone()];
    assert_eq!(latest, expected, "latest holds the newest version of each event, in id order");
}

async fn since_replays_every_event_in_id_order<S: Storage>(store: S, _: S) {
    let mut all = append(&store, vec![new("a", 1, "1"), new("b", 1, "2")]).await;
    all.extend(append(&store, vec![new("a", 2, "3"), new("c", 2, "4"), new("b", 3, "5")]).await);
    for (index, version) in all.iter().enumerate() {
        let replay = store.since(version.id, 100).await.expect("since");
        assert_eq!(replay, all[index + 1..], "since({}) replays everything after it", version.id);
    }
    assert_eq!(store.since(0, 2).await.expect("since"), all[..2], "since honours `limit`");
    assert_eq!(store.since(u64::MAX, 10).await.expect("since"), [], "nothing after an unknown id");
}

async fn concurrent_appends_get_distinct_ids<S: Storage>(store: S, _: S) {
    let appends =
        (0..16).map(|n| store.append(vec![new("a", n, &n.to_string()), new("b", n, "0")]));
    let results: Vec<Vec<Version>> = join_all(appends)
        .await
        .into_iter()
        .map(|stored| stored.expect("concurrent append"))
        .collect();
    let mut seen = HashSet::new();
    for stored in &results {
        assert!(stored[0].id < stored[1].id, "ids increase within a batch");
        assert!(stored.iter().all(|v| seen.insert(v.id)), "ids are unique across batches");
    }
    assert_batches_in_one_piece(&results, "concurrent appends");
    let replay = store.since(0, 100).await.expect("since");
    assert_eq!(replay.len(), 32, "every concurrent append is stored");
    assert!(replay.windows(2).all(|w| w[0].id < w[1].id), "since is in id order");
}

/// Checks that no id of one batch of `batches` falls between the first and last ids of another.
fn assert_batches_in_one_piece(batches: &[Vec<Version>], what: &str) {
    for batch in batches {
        let (Some(first), Some(last)) = (batch.first(), batch.last()) else { continue };
        let inside = batches
            .iter()
            .filter(|other| !std::ptr::eq(*other, batch))
            .flatten()
            .find(|version| first.id < version.id && version.id < last.id);
        if let Some(inside) = inside {
            panic!(
                "{what}: id {} of another append is between the ids {} and {} of one batch, \
                 which must be stored in one piece",
                inside.id, first.id, last.id
            );
        }
    }
}

async fn database_ids_are_stable_and_distinct<S: Storage>(store: S, other: S) {
    let id = store.database_id();
    assert!(!id.is_nil(), "a database identity is never nil");
    append(&store, vec![new("a", 1, "1")]).await;
    assert_eq!(store.database_id(), id, "a database identity never changes");
    assert_ne!(other.database_id(), id, "two databases never share an identity");
}

/// Reads `tail` until it has delivered `count` versions, checking that ids increase.
async fn read_tail(tail: &mut Tail, count: usize, what: &str) -> Vec<Version> {
    let mut seen: Vec<Version> = Vec::new();
    while seen.len() < count {
        let batch = match tokio::time::timeout(TAIL_PATIENCE, tail.next()).await {
            Ok(Some(Ok(batch))) => batch,
            Ok(Some(Err(error))) => panic!("{what}: the tail failed: {error}"),
            Ok(None) => panic!("{what}: the tail ended after {} of {count} versions", seen.len()),
            Err(_) => panic!("{what}: the tail delivered {} of {count} versions", seen.len()),
        };
        assert!(!batch.is_empty(), "{what}: a tail never delivers an empty batch");
        for version in batch {
            if let Some(last) = seen.last() {
                assert!(
                    version.id > last.id,
                    "{what}: tail ids increase: {} then {}",
                    last.id,
                    version.id
                );
            }
            seen.push(version);
        }
    }
    assert_eq!(seen.len(), count, "{what}: the tail delivered more versions than were stored");
    seen
}

async fn tail_delivers_stored_then_new_versions_once_in_id_order<S: Storage>(store: S, _: S) {
    let before = append(&store, vec![new("a", 1, "1"), new("b", 1, "2"), new("a", 2, "3")]).await;
    let mut from_start = store.tail(0);
    let mut from_middle = store.tail(before[0].id);
    assert_eq!(read_tail(&mut from_start, 3, "tail(0)").await, before, "stored versions first");
    assert_eq!(
        read_tail(&mut from_middle, 2, "tail(first id)").await,
        before[1..],
        "a tail starts after the id it is given"
    );
    let after = append(&store, vec![new("c", 3, "4"), new("a", 3, "5")]).await;
    assert_eq!(read_tail(&mut from_start, 2, "tail(0)").await, after, "then each new version");
    assert_eq!(read_tail(&mut from_middle, 2, "tail(first id)").await, after);
    let mut from_end = store.tail(after[1].id);
    let last = append(&store, vec![new("d", 4, "6")]).await;
    assert_eq!(read_tail(&mut from_end, 1, "tail(last id)").await, last, "nothing old, then new");
}

async fn tail_sees_concurrent_writers_once_each<S: Storage>(store: S, _: S) {
    let mut tail = store.tail(0);
    let writer = |name: &'static str| {
        let store = &store;
        async move {
            let mut stored = Vec::new();
            for n in 0..10 {
                stored.extend(append(store, vec![new(name, n, &n.to_string())]).await);
            }
            stored
        }
    };
    let (first, second) = tokio::join!(writer("first"), writer("second"));
    let delivered = read_tail(&mut tail, 20, "a tail over two writers").await;
    let mut expected: Vec<Version> = first.into_iter().chain(second).collect();
    expected.sort_by_key(|version| version.id);
    assert_eq!(delivered, expected, "the tail delivers both writers' versions once, in id order");
}

async fn idempotency_key_returns_the_original_version<S: Storage>(store: S, _: S) {
    let keyed = |event: &str, timestamp: u64, data: &str, key: &str| {
        new(event, timestamp, data).with_idempotency_key(key)
    };
    let first = append(&store, vec![keyed("a", 1_000, "1", "k1"), new("b", 1_000, "2")]).await;
    // A retry a second later, beside a new version with a new key, and its own retry in the batch.
    let retry = append(
        &store,
        vec![
            keyed("a", 2_000, "1", "k1"),
            keyed("c", 2_000, "3", "k2"),
            keyed("c", 2_000, "3", "k2"),
        ],
    )
    .await;
    assert_eq!(retry[0], first[0], "a retry with the same key returns the version it stored");
    assert!(retry[1].id > first[1].id, "a new key stores a new version");
    assert_eq!(retry[2], retry[1], "a key repeated in one batch stores one version");
    let all = store.since(0, 100).await.expect("since");
    assert_eq!(all, [first[0].clone(), first[1].clone(), retry[1].clone()], "nothing stored twice");
    // A version without a key is never taken for a retry.
    let unkeyed = append(&store, vec![new("b", 3_000, "2")]).await;
    assert!(unkeyed[0].id > retry[1].id, "versions without a key are always stored");
}

async fn closed_store_refuses_every_call<S: Storage>(store: S, _: S) {
    let open_tail = store.tail(0);
    append(&store, vec![new("a", 1, "1")]).await;
    store.close().await.expect("close");
    store.close().await.expect("closing twice is not an error");
    let closed = |result: Result<Vec<Version>, StorageError>, call: &str| {
        assert!(matches!(result, Err(StorageError::Closed)), "{call} after close: {result:?}");
    };
    closed(store.append(vec![new("a", 2, "2")]).await, "append");
    closed(store.latest().await, "latest");
    closed(store.history("a", 0, 10).await, "history");
    closed(store.since(0, 10).await, "since");
    let ends = |mut tail: Tail, which: &'static str| async move {
        loop {
            match tokio::time::timeout(TAIL_PATIENCE, tail.next()).await {
                Ok(None) => break,
                Ok(Some(_)) => continue,
                Err(_) => panic!("{which} does not end once the store is closed"),
            }
        }
    };
    ends(open_tail, "a tail started before close").await;
    ends(store.tail(0), "a tail started after close").await;
}
