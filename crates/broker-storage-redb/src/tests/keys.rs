//! Idempotency keys in the file: kept across a reopen and in a backup, pruned once expired, found
//! by `check` when they name a missing version, and added to files written before them.

use std::path::Path;
use std::time::Duration;

use broker_storage::{NewVersion, Storage, Version};
use redb::{Database, ReadableDatabase, ReadableTableMetadata};

use super::{open, temp_dir};
use crate::schema::{KEY_TIMES, KEYS};
use crate::{RedbOptions, RedbStorage};

fn keyed(event: &str, timestamp: u64, key: &str) -> NewVersion {
    NewVersion::new(event, timestamp, "1").with_idempotency_key(key)
}

async fn append(store: &RedbStorage, batch: Vec<NewVersion>) -> Vec<Version> {
    store.append(batch).await.expect("append")
}

/// The rows of `keys` and of `key_times` in the closed file at `path`.
fn key_rows(path: &Path) -> (u64, u64) {
    let db = Database::open(path).expect("open the closed file");
    let txn = db.begin_read().expect("begin a read");
    let keys = txn.open_table(KEYS).expect("open keys").len().expect("count keys");
    let times = txn.open_table(KEY_TIMES).expect("open key_times").len().expect("count times");
    (keys, times)
}

#[tokio::test(flavor = "multi_thread")]
async fn a_retry_after_a_reopen_still_returns_the_original() {
    let dir = temp_dir();
    let path = dir.path().join("broker.redb");
    let store = open(&path).await;
    let first = append(&store, vec![keyed("a", 1_000, "k")]).await;
    store.close().await.expect("close");

    let store = open(&path).await;
    let retry =
        append(&store, vec![keyed("a", 2_000, "k"), NewVersion::new("b", 2_000, "2")]).await;
    assert_eq!(retry[0], first[0], "the key survives the reopen");
    assert!(retry[1].id > first[0].id, "the other version is stored");
    assert_eq!(store.since(0, 10).await.expect("since").len(), 2, "nothing stored twice");
    store.close().await.expect("close");
}

#[tokio::test(flavor = "multi_thread")]
async fn expired_keys_are_pruned_by_later_appends() {
    let dir = temp_dir();
    let path = dir.path().join("broker.redb");
    let window = Duration::from_secs(60);
    let options = RedbOptions { idempotency_window: window, ..RedbOptions::default() };
    let store = RedbStorage::open_with(&path, options.clone()).await.expect("open");
    // 500 keys, all used at second 1.
    for chunk in 0..5 {
        let batch = (0..100).map(|n| keyed("a", 1_000, &format!("k{}", chunk * 100 + n))).collect();
        append(&store, batch).await;
    }
    store.close().await.expect("close");
    assert_eq!(key_rows(&path), (500, 500), "every key is remembered within the window");

    // Within the window nothing expires, and a key used again keeps its first version.
    let store = RedbStorage::open_with(&path, options.clone()).await.expect("open");
    let within = append(&store, vec![keyed("a", 60_999, "k0")]).await;
    assert_eq!(within[0].id, 1, "59.999 s later the key still names the first version");
    store.close().await.expect("close");
    assert_eq!(key_rows(&path), (500, 500), "nothing expired yet");

    // A minute later, each append deletes a bounded number of the expired keys.
    let store = RedbStorage::open_with(&path, options.clone()).await.expect("open");
    append(&store, vec![NewVersion::new("b", 61_000, "0")]).await;
    store.close().await.expect("close");
    let (keys, times) = key_rows(&path);
    assert!(keys < 500 && keys > 0, "one append prunes some keys, not all: {keys} left");
    assert_eq!(keys, times, "keys and key_times agree");

    let store = RedbStorage::open_with(&path, options).await.expect("open");
    let reused = append(&store, vec![keyed("a", 61_000, "k499")]).await;
    assert!(reused[0].id > 500, "an expired key stores a new version");
    for _ in 0..20 {
        append(&store, vec![NewVersion::new("b", 61_000, "0")]).await;
    }
    store.close().await.expect("close");
    assert_eq!(key_rows(&path), (1, 1), "only the key used within the window is left");
    let check = RedbStorage::check(&path).await.expect("check");
    assert!(check.is_clean(), "{check}");
    assert_eq!(check.keys, 1, "{check}");
}

#[tokio::test(flavor = "multi_thread")]
async fn a_file_written_before_idempotency_keys_opens_and_takes_them() {
    let dir = temp_dir();
    let path = dir.path().join("broker.redb");
    let store = open(&path).await;
    let old = append(&store, vec![NewVersion::new("a", 1_000, "1")]).await;
    store.close().await.expect("close");
    // What a build before the idempotency tables left behind: the same file without them.
    {
        let db = Database::create(&path).expect("open the closed file");
        let txn = db.begin_write().expect("begin a write");
        txn.delete_table(KEYS).expect("delete keys");
        txn.delete_table(KEY_TIMES).expect("delete key_times");
        txn.commit().expect("commit");
    }
    let check = RedbStorage::check(&path).await.expect("check");
    assert!(check.is_clean(), "a file without keys is clean: {check}");

    let store = open(&path).await;
    assert_eq!(store.since(0, 10).await.expect("since"), old, "what it held reads back");
    let first = append(&store, vec![keyed("a", 2_000, "k")]).await;
    let retry = append(&store, vec![keyed("a", 3_000, "k")]).await;
    assert_eq!(retry, first, "and it remembers keys from then on");
    store.close().await.expect("close");
    assert!(RedbStorage::check(&path).await.expect("check").is_clean());
}

#[tokio::test(flavor = "multi_thread")]
async fn a_backup_keeps_the_keys() {
    let dir = temp_dir();
    let store = open(&dir.path().join("broker.redb")).await;
    let first = append(&store, vec![keyed("a", 1_000, "k"), keyed("b", 1_000, "l")]).await;
    let backup = dir.path().join("copy.redb");
    store.backup(&backup).await.expect("backup");
    store.close().await.expect("close");
    let check = RedbStorage::check(&backup).await.expect("check");
    assert!(check.is_clean() && check.keys == 2, "{check}");

    let copy = open(&backup).await;
    let retry = append(&copy, vec![keyed("b", 2_000, "l"), keyed("a", 2_000, "k")]).await;
    assert_eq!(retry, [first[1].clone(), first[0].clone()], "a retry against the copy");
    copy.close().await.expect("close");
}

#[tokio::test(flavor = "multi_thread")]
async fn check_finds_a_key_that_names_a_missing_version() {
    let dir = temp_dir();
    let path = dir.path().join("broker.redb");
    let store = open(&path).await;
    append(&store, vec![keyed("a", 1_000, "k")]).await;
    store.close().await.expect("close");
    {
        let db = Database::create(&path).expect("open the closed file");
        let txn = db.begin_write().expect("begin a write");
        txn.open_table(KEYS).expect("open keys").insert("k", (99, 1_000)).expect("insert");
        txn.commit().expect("commit");
    }
    let check = RedbStorage::check(&path).await.expect("check");
    let problem = check.problem.expect("a problem");
    assert!(problem.contains("keys names version 99"), "{problem}");
}
