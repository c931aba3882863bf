//! A real full disk: a small tmpfs filled by appends, then freed, with the same store serving
//! throughout; and the free-space guard, which stops before the disk is full.

use std::path::Path;
use std::time::{Duration, Instant};

use broker_storage::{NewVersion, Storage, StorageError, Version};

use super::tmpfs::Tmpfs;
use super::{assert_ends, assert_holds, read_tail};
use crate::{RedbOptions, RedbStorage};

const EVENTS: [&str; 3] = ["a", "b", "c"];

/// Options for a test on a tmpfs: a guard of `min_free_space`, and quick reopens.
fn options(min_free_space: u64) -> RedbOptions {
    RedbOptions {
        min_free_space,
        reopen_interval: Duration::from_millis(100),
        ..RedbOptions::default()
    }
}

/// A batch of 20 versions of about 1 KiB each, numbered from `first`.
fn batch(first: usize) -> Vec<NewVersion> {
    (first..first + 20)
        .map(|n| NewVersion::new(EVENTS[n % 3], n as u64, format!("\"{n:0>1000}\"")))
        .collect()
}

/// Appends batches until one fails, and returns its error; every acknowledged version is added
/// to `acknowledged`.
async fn append_until_failure(
    store: &RedbStorage,
    acknowledged: &mut Vec<Version>,
) -> StorageError {
    loop {
        match store.append(batch(acknowledged.len())).await {
            Ok(stored) => acknowledged.extend(stored),
            Err(error) => return error,
        }
        assert!(acknowledged.len() < 200_000, "16 MiB never filled up");
    }
}

/// Appends the batch numbered from `first` once appends succeed again after space was freed;
/// until then they may fail only as full.
async fn append_once_resumed(store: &RedbStorage, first: usize) -> Vec<Version> {
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        match store.append(batch(first)).await {
            Ok(stored) => return stored,
            Err(error) => {
                assert!(matches!(error, StorageError::Full(_)), "only Full until then: {error:?}");
                assert!(Instant::now() < deadline, "appends never resumed after space was freed");
                tokio::time::sleep(Duration::from_millis(50)).await;
            }
        }
    }
}

/// Writes a file of `size` bytes, which takes that much space on a tmpfs.
fn write_file(path: &Path, size: usize) -> std::io::Result<()> {
    std::fs::write(path, vec![1_u8; size])
}

#[tokio::test(flavor = "multi_thread")]
async fn a_full_disk_fails_appends_as_full_until_space_is_freed_without_reopening_from_outside() {
    let tmpfs = Tmpfs::mount("16m");
    let filler = tmpfs.path().join("filler");
    write_file(&filler, 2 * 1024 * 1024).expect("write the filler file");
    let path = tmpfs.path().join("broker.redb");
    let store = RedbStorage::open_with(&path, options(0)).await.expect("open");

    let mut acknowledged = Vec::new();
    let error = append_until_failure(&store, &mut acknowledged).await;
    assert!(!acknowledged.is_empty(), "some appends fit");
    match &error {
        StorageError::Full(message) => {
            assert!(message.contains(&path.display().to_string()), "names the file: {message}");
        }
        error => panic!("a full disk fails the append as Full: {error:?}"),
    }

    // The disk is still full: appends keep failing as Full, and everything acknowledged reads
    // back (the store reopens the database by itself for that).
    for _ in 0..3 {
        let error = store.append(batch(0)).await.expect_err("the disk is still full");
        assert!(matches!(error, StorageError::Full(_)), "still Full: {error:?}");
    }
    assert_holds(&store, &acknowledged).await;

    std::fs::remove_file(&filler).expect("free space");
    let resumed = append_once_resumed(&store, acknowledged.len()).await;
    let last = acknowledged.last().expect("versions were acknowledged").id;
    assert!(resumed[0].id > last, "ids continue: {} after {last}", resumed[0].id);
    acknowledged.extend(resumed);
    for _ in 0..10 {
        acknowledged.extend(store.append(batch(acknowledged.len())).await.expect("append"));
    }
    assert_holds(&store, &acknowledged).await;

    // And it is all on disk.
    store.close().await.expect("close");
    let reopened = RedbStorage::open_with(&path, options(0)).await.expect("reopen");
    assert_holds(&reopened, &acknowledged).await;
    reopened.close().await.expect("close");
}

#[tokio::test(flavor = "multi_thread")]
async fn the_free_space_guard_refuses_appends_before_the_disk_is_full() {
    let tmpfs = Tmpfs::mount("16m");
    let path = tmpfs.path().join("broker.redb");

    // A minimum above everything the tmpfs holds (16 MiB, 8 of them the store's journal): the
    // first append is refused, and writes nothing.
    let store = RedbStorage::open_with(&path, options(32 * 1024 * 1024)).await.expect("open");
    let error = store.append(batch(0)).await.expect_err("below the minimum");
    match &error {
        StorageError::Full(message) => assert!(message.contains("below the minimum"), "{message}"),
        error => panic!("the guard fails the append as Full: {error:?}"),
    }
    assert_eq!(store.since(0, 10).await.expect("since"), [], "a refused append writes nothing");
    store.close().await.expect("close");

    // A minimum of 4 MiB: appends stop with room to spare, and resume as soon as space is freed.
    let filler = tmpfs.path().join("filler");
    write_file(&filler, 2 * 1024 * 1024).expect("write the filler file");
    let store = RedbStorage::open_with(&path, options(4 * 1024 * 1024)).await.expect("open");
    let mut acknowledged = Vec::new();
    let error = append_until_failure(&store, &mut acknowledged).await;
    assert!(
        matches!(&error, StorageError::Full(m) if m.contains("below the minimum")),
        "{error:?}"
    );
    let spare = tmpfs.path().join("spare");
    write_file(&spare, 3 * 1024 * 1024).expect("the disk is not full: 3 MiB more fit");
    std::fs::remove_file(&spare).expect("remove the spare file");
    assert_holds(&store, &acknowledged).await;

    std::fs::remove_file(&filler).expect("free space");
    acknowledged.extend(store.append(batch(acknowledged.len())).await.expect("append resumes"));
    assert_holds(&store, &acknowledged).await;
    store.close().await.expect("close");
}

#[tokio::test(flavor = "multi_thread")]
async fn a_tail_started_before_the_disk_filled_delivers_every_version_across_the_reopen() {
    let tmpfs = Tmpfs::mount("16m");
    let filler = tmpfs.path().join("filler");
    write_file(&filler, 2 * 1024 * 1024).expect("write the filler file");
    let path = tmpfs.path().join("broker.redb");
    let store = RedbStorage::open_with(&path, options(0)).await.expect("open");
    let mut tail = store.tail(0);

    let mut acknowledged = Vec::new();
    let error = append_until_failure(&store, &mut acknowledged).await;
    assert!(matches!(error, StorageError::Full(_)), "the disk filled up: {error:?}");
    // Past the reopen interval, the next call reopens the file, which is still full.
    tokio::time::sleep(Duration::from_millis(200)).await;
    assert_holds(&store, &acknowledged).await;
    std::fs::remove_file(&filler).expect("free space");
    acknowledged.extend(append_once_resumed(&store, acknowledged.len()).await);
    acknowledged.extend(store.append(batch(acknowledged.len())).await.expect("append"));

    let delivered = read_tail(&mut tail, acknowledged.len()).await;
    assert!(delivered == acknowledged, "the tail delivers every version once, in id order");
    let mut late = store.tail(0);
    assert!(read_tail(&mut late, acknowledged.len()).await == acknowledged, "so does a new one");
    store.close().await.expect("close");
    assert_ends(tail).await;
}
