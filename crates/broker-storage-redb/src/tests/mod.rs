//! Tests of [`RedbStorage`] against real redb files: the conformance suite, and what a single
//! process cannot show through the trait alone (restarts, identities, locking, bad files), then,
//! in submodules, idempotency keys in the file, the overlay of versions not yet in redb's tables,
//! and faults: a full disk, damaged files, and backups; and the upgrade of a file of the previous
//! format.

mod backup;
mod damage;
mod full_disk;
mod journal;
mod keys;
mod overlay;
mod prune;
mod reuse;
mod tmpfs;
mod upgrade;

use std::path::{Path, PathBuf};
use std::time::Duration;

use broker_storage::{NewVersion, Storage, StorageError, Tail, Version, conformance};
use rand::rngs::StdRng;
use rand::{Rng, SeedableRng};
use tempfile::TempDir;

use crate::RedbStorage;

fn temp_dir() -> TempDir {
    TempDir::new().expect("create a temporary directory")
}

async fn open(path: &Path) -> RedbStorage {
    RedbStorage::open(path).await.expect("open the store")
}

/// `count` versions cycling over `events`, in batches of `batch`.
async fn fill(store: &RedbStorage, events: &[&str], count: usize, batch: usize) -> Vec<Version> {
    let mut stored = Vec::with_capacity(count);
    let all: Vec<NewVersion> = (0..count)
        .map(|n| NewVersion::new(events[n % events.len()], n as u64, n.to_string()))
        .collect();
    for chunk in all.chunks(batch) {
        stored.extend(store.append(chunk.to_vec()).await.expect("append"));
    }
    stored
}

/// Asserts that `store` holds exactly `expected`, in every view: the log, the history of each
/// event in it, and the latest versions. Ids must be strictly increasing.
async fn assert_holds(store: &RedbStorage, expected: &[Version]) {
    assert!(expected.windows(2).all(|w| w[0].id < w[1].id), "ids strictly increase");
    let log = store.since(0, usize::MAX).await.expect("since");
    // Not `assert_eq!`: the lists are long, and a difference is found below anyway.
    assert!(log == expected, "the log holds exactly the expected versions");
    let events: std::collections::BTreeSet<&str> = expected.iter().map(|v| &*v.event).collect();
    let mut latest = Vec::new();
    for event in events {
        let history = store.history(event, 0, usize::MAX).await.expect("history");
        let of_event: Vec<&Version> = expected.iter().filter(|v| *v.event == *event).collect();
        assert!(history.iter().eq(of_event.iter().copied()), "the history of {event:?} is whole");
        latest.extend(of_event.last().copied().cloned());
    }
    latest.sort_unstable_by_key(|version| version.id);
    assert_eq!(store.latest().await.expect("latest"), latest, "latest is the newest of each");
}

/// Asserts that opening `path` fails with a backend error whose message names the file and
/// contains `reason`.
async fn check_open_fails(path: &Path, reason: &str) {
    match RedbStorage::open(path).await {
        Err(error @ StorageError::Backend(_)) => {
            let message = error.to_string();
            assert!(message.contains(&path.display().to_string()), "names the path: {message}");
            assert!(message.contains(reason), "says {reason:?}: {message}");
        }
        other => panic!("opening {} should fail with a backend error: {other:?}", path.display()),
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn redb_storage_passes_the_conformance_suite() {
    let dir = temp_dir();
    let mut count = 0;
    conformance::run(|| {
        count += 1;
        let path = dir.path().join(format!("store-{count}.redb"));
        async move { open(&path).await }
    })
    .await;
}

/// The same suite with every call made from an engine's writer thread, where the store does its
/// blocking work on the calling thread rather than on the blocking pool.
#[test]
fn redb_storage_passes_the_conformance_suite_on_a_writer_thread() {
    let runtime = tokio::runtime::Builder::new_multi_thread().enable_all().build();
    let runtime = runtime.expect("build a runtime");
    let handle = runtime.handle().clone();
    let dir = temp_dir();
    let writer = std::thread::spawn(move || {
        broker_storage::mark_writer_thread();
        let mut count = 0;
        handle.block_on(conformance::run(|| {
            count += 1;
            let path = dir.path().join(format!("store-{count}.redb"));
            async move { open(&path).await }
        }));
    });
    writer.join().expect("the suite passes on a writer thread");
}

#[tokio::test(flavor = "multi_thread")]
async fn two_handles_on_one_store_share_its_log() {
    let dir = temp_dir();
    let mut count = 0;
    conformance::run_shared(|| {
        count += 1;
        let path = dir.path().join(format!("shared-{count}.redb"));
        async move {
            let store = std::sync::Arc::new(open(&path).await);
            (std::sync::Arc::clone(&store), store)
        }
    })
    .await;
}

/// Reads `tail` until it has delivered `count` versions, or fails after a while.
async fn read_tail(tail: &mut Tail, count: usize) -> Vec<Version> {
    let mut delivered = Vec::new();
    while delivered.len() < count {
        match tokio::time::timeout(Duration::from_secs(20), tail.next()).await {
            Ok(Some(batch)) => delivered.extend(batch.expect("the tail goes on")),
            Ok(None) => panic!("the tail ended after {} of {count} versions", delivered.len()),
            Err(_) => panic!("the tail delivered {} of {count} versions", delivered.len()),
        }
    }
    delivered
}

/// Asserts that `tail` ends soon.
async fn assert_ends(mut tail: Tail) {
    let next = tokio::time::timeout(Duration::from_secs(20), tail.next()).await;
    assert!(matches!(next, Ok(None)), "the tail ends: {next:?}");
}

#[tokio::test(flavor = "multi_thread")]
async fn a_store_dropped_without_close_ends_its_tails_and_releases_the_file() {
    let dir = temp_dir();
    let path = dir.path().join("broker.redb");
    let store = open(&path).await;
    let stored = fill(&store, &["a"], 3, 3).await;
    let (mut caught_up, behind) = (store.tail(0), store.tail(0));
    assert_eq!(read_tail(&mut caught_up, 3).await, stored);
    drop(store);
    assert_ends(caught_up).await;
    assert_ends(behind).await;
    open(&path).await.close().await.expect("the file was released");
}

#[tokio::test(flavor = "multi_thread")]
async fn data_survives_close_and_reopen() {
    let dir = temp_dir();
    // A missing parent directory is created.
    let path = dir.path().join("nested").join("broker.redb");
    let store = open(&path).await;
    let stored = fill(&store, &["a", "b", "c"], 50, 7).await;
    let before = (
        store.database_id(),
        store.latest().await.expect("latest"),
        store.history("b", 0, 100).await.expect("history"),
        store.since(0, 100).await.expect("since"),
    );
    assert_eq!(before.3, stored);
    store.close().await.expect("close");

    let store = open(&path).await;
    let after = (
        store.database_id(),
        store.latest().await.expect("latest"),
        store.history("b", 0, 100).await.expect("history"),
        store.since(0, 100).await.expect("since"),
    );
    assert_eq!(after, before, "identity, latest, history and the log survive a reopen");
    let last = stored.last().expect("versions were stored").id;
    let next = store.append(vec![NewVersion::new("a", 1, "1")]).await.expect("append");
    assert!(next[0].id > last, "ids continue after a reopen: {} after {last}", next[0].id);
    store.close().await.expect("close");
}

#[tokio::test(flavor = "multi_thread")]
async fn every_database_has_its_own_identity() {
    let dir = temp_dir();
    let (first_path, second_path) = (dir.path().join("first.redb"), dir.path().join("second.redb"));
    let first = open(&first_path).await;
    let second = open(&second_path).await;
    assert_ne!(first.database_id(), second.database_id(), "two files, two identities");

    let wiped = first.database_id();
    first.close().await.expect("close");
    std::fs::remove_file(&first_path).expect("wipe the file");
    let recreated = open(&first_path).await;
    assert_ne!(recreated.database_id(), wiped, "a wiped and recreated file gets a new identity");
    assert_eq!(recreated.since(0, 10).await.expect("since"), [], "and starts empty");
}

#[tokio::test(flavor = "multi_thread")]
async fn opening_a_file_that_is_not_a_database_says_it_is_damaged_and_names_it() {
    let dir = temp_dir();
    // Fixed-seed noise: the same bytes on every run.
    let mut noise = StdRng::seed_from_u64(0x2545_f491_4f6c_dd1d);
    let noise: Vec<u8> = (0..64 * 1024).map(|_| noise.random()).collect();
    for (name, contents) in [("noise.redb", noise), ("text.redb", b"not a database\n".to_vec())] {
        let path = dir.path().join(name);
        std::fs::write(&path, contents).expect("write the file");
        match RedbStorage::open(&path).await {
            Err(StorageError::Corrupt(message)) => {
                assert!(message.contains(&path.display().to_string()), "names the path: {message}");
                assert!(message.contains("is damaged"), "says it is damaged: {message}");
                assert!(!message.contains('\n'), "in one line: {message}");
            }
            other => panic!("opening {name} should fail as corrupt: {other:?}"),
        }
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn a_file_open_in_this_process_cannot_be_opened_again_until_closed() {
    let dir = temp_dir();
    let path = dir.path().join("broker.redb");
    let store = open(&path).await;
    // redb locks the file with open-file-description locks, which conflict within one process too.
    check_open_fails(&path, "already open").await;
    let check = RedbStorage::check(&path).await.expect_err("a file in use cannot be checked");
    assert!(check.to_string().contains("already open"), "says why: {check}");
    // Callers tell "in use" from other failures by the kind, not the message.
    let busy = match &check {
        StorageError::Backend(error) => error.downcast_ref::<std::io::Error>().map(|e| e.kind()),
        _ => None,
    };
    assert_eq!(busy, Some(std::io::ErrorKind::ResourceBusy), "in use is ResourceBusy: {check:?}");
    store.close().await.expect("close");
    let reopened = open(&path).await;
    assert_eq!(reopened.database_id(), store.database_id(), "close released the file");
}

#[tokio::test(flavor = "multi_thread")]
async fn an_unknown_format_version_is_refused() {
    let dir = temp_dir();
    let path = dir.path().join("broker.redb");
    open(&path).await.close().await.expect("close");
    crate::schema::force_format_version(&path, 99);
    check_open_fails(&path, "format version 99").await;
}

#[tokio::test(flavor = "multi_thread")]
async fn latest_does_not_depend_on_the_number_of_versions() {
    let dir = temp_dir();
    let store = open(&dir.path().join("broker.redb")).await;
    let stored = fill(&store, &["a", "b", "c"], 20_000, 1_000).await;
    let latest = store.latest().await.expect("latest");
    assert_eq!(latest, stored[stored.len() - 3..], "one version per event, the newest of each");
}

#[tokio::test(flavor = "multi_thread")]
async fn close_waits_for_appends_in_flight() {
    let dir = temp_dir();
    let path: PathBuf = dir.path().join("broker.redb");
    let store = std::sync::Arc::new(open(&path).await);
    let appends: Vec<_> = (0..8)
        .map(|n| {
            let store = std::sync::Arc::clone(&store);
            tokio::spawn(async move { store.append(vec![NewVersion::new("a", n, "0")]).await })
        })
        .collect();
    store.close().await.expect("close");
    let mut acknowledged = Vec::new();
    for append in appends {
        match append.await.expect("append task") {
            Ok(stored) => acknowledged.extend(stored),
            Err(StorageError::Closed) => {}
            Err(error) => panic!("an append racing close fails only with Closed: {error:?}"),
        }
    }
    acknowledged.sort_unstable_by_key(|version| version.id);
    let reopened = open(&path).await;
    assert_eq!(
        reopened.since(0, 100).await.expect("since"),
        acknowledged,
        "every acknowledged append, and nothing else, is stored"
    );
}
