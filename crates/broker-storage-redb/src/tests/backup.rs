//! Backups of a running store: consistent under concurrent appends, with the same identity, and
//! never over an existing file.

use std::sync::Arc;

use broker_storage::{NewVersion, Storage, StorageError};

use super::{assert_holds, fill, open, temp_dir};

#[tokio::test(flavor = "multi_thread")]
async fn a_backup_taken_during_appends_holds_a_prefix_of_them_and_opens_with_the_same_identity() {
    let dir = temp_dir();
    let store = Arc::new(open(&dir.path().join("broker.redb")).await);
    let mut acknowledged = fill(&store, &["a", "b", "c", "d"], 30_000, 500).await;
    let before = acknowledged.len();

    let appender = {
        let store = Arc::clone(&store);
        tokio::spawn(async move {
            let mut stored = Vec::new();
            for n in 0..300_u64 {
                let batch = (0..10).map(|i| NewVersion::new(["a", "e"][i % 2], n, "0")).collect();
                stored.extend(store.append(batch).await.expect("append during the backup"));
            }
            stored
        })
    };
    let backup = dir.path().join("backups").join("copy.redb");
    std::fs::create_dir_all(backup.parent().expect("a parent")).expect("create the directory");
    let report = store.backup(&backup).await.expect("backup");
    acknowledged.extend(appender.await.expect("the appender"));
    acknowledged.sort_unstable_by_key(|version| version.id);

    let copied = usize::try_from(report.versions).expect("fits");
    assert!(copied >= before, "the copy holds everything acknowledged before it started");
    assert_eq!(report.last_id, acknowledged[copied - 1].id, "the report names the copy's end");
    let check = crate::RedbStorage::check(&backup).await.expect("check the copy");
    assert!(check.is_clean(), "the copy passes check: {check}");
    assert_eq!(check.versions, report.versions);

    let copy = open(&backup).await;
    assert_eq!(copy.database_id(), store.database_id(), "the copy keeps the database identity");
    assert_holds(&copy, &acknowledged[..copied]).await;
    let next = copy.append(vec![NewVersion::new("a", 1, "1")]).await.expect("append to the copy");
    assert!(next[0].id > report.last_id, "ids continue in the copy");
    copy.close().await.expect("close the copy");

    assert_holds(&store, &acknowledged).await;
    store.close().await.expect("close");
}

#[tokio::test(flavor = "multi_thread")]
async fn a_backup_never_overwrites_a_file_and_leaves_none_behind_when_it_fails() {
    let dir = temp_dir();
    let store = open(&dir.path().join("broker.redb")).await;
    fill(&store, &["a"], 10, 5).await;

    let existing = dir.path().join("existing.redb");
    std::fs::write(&existing, "keep me").expect("write a file");
    match store.backup(&existing).await {
        Err(StorageError::Backend(error)) => {
            assert!(error.to_string().contains("exists"), "says why: {error}");
        }
        other => panic!("a backup over an existing file is refused: {other:?}"),
    }
    assert_eq!(std::fs::read(&existing).expect("read"), b"keep me", "the file is untouched");

    let missing_dir = dir.path().join("missing").join("copy.redb");
    assert!(store.backup(&missing_dir).await.is_err(), "no directory, no backup");
    assert!(!missing_dir.exists());

    let empty = open(&dir.path().join("empty.redb")).await;
    let empty_copy = dir.path().join("empty-copy.redb");
    let report = empty.backup(&empty_copy).await.expect("back up an empty store");
    assert_eq!((report.versions, report.last_id), (0, 0));
    empty.close().await.expect("close");
    let copy = open(&empty_copy).await;
    assert_eq!(copy.database_id(), empty.database_id());
    assert_eq!(copy.since(0, 10).await.expect("since"), []);

    store.close().await.expect("close");
    let closed = store.backup(dir.path().join("late.redb")).await;
    assert!(matches!(closed, Err(StorageError::Closed)), "a closed store backs up nothing");
}
