//! The journal read back at open: the versions a crash left only in it are stored, a torn last
//! record is dropped, and damage, another database's journal or a gap are refused.
//!
//! A crash cannot be staged inside this process (redb's file lock outlives a forgotten handle),
//! so each test closes a store cleanly, then writes the journal that a crash would have left, with
//! the journal's own writer. The end-to-end tests kill the real server for the same path.

use std::os::unix::fs::FileExt;
use std::path::{Path, PathBuf};

use broker_storage::{NewVersion, Storage, StorageError, Uuid, Version};

use super::{assert_holds, fill, open, temp_dir};
use crate::journal::{self, Journal, Record};

/// A store at `path` holding three versions, closed: its journal is gone.
async fn closed_store(path: &Path) -> (Uuid, Vec<Version>) {
    let store = open(path).await;
    let stored = fill(&store, &["a", "b"], 3, 3).await;
    let database_id = store.database_id();
    store.close().await.expect("close");
    assert!(!journal::path_of(path).exists(), "a clean close removes the journal");
    (database_id, stored)
}

fn version(id: u64, event: &str) -> Version {
    Version { id, event: event.into(), timestamp: 10 + id, data: format!("[{id}]") }
}

/// Writes one record of `versions` (each with its key) to `journal`; returns where it starts.
fn write(journal: &mut Journal, versions: &[(Version, Option<&str>)]) -> u64 {
    let start = journal::HEADER_LEN + journal.pending();
    let mut record = Record::with_capacity(64);
    for (v, key) in versions {
        record.push(v.id, v.timestamp, &v.event, &v.data, *key);
    }
    let record = record.finish(journal.generation());
    journal.write(&record).expect("write the record");
    journal.advance(record.len());
    start
}

/// The journal of the closed database `database_id` at `path`, as a crash after its last durable
/// commit at `durable` leaves it.
fn journal_of(path: &Path, database_id: Uuid, durable: u64) -> (Journal, PathBuf) {
    let journal_path = journal::path_of(path);
    let (journal, replay) = Journal::open(&journal_path, database_id, durable).expect("journal");
    assert!(replay.is_empty(), "a new journal holds nothing");
    (journal, journal_path)
}

async fn open_fails_as_damaged(path: &Path, reason: &str) {
    match crate::RedbStorage::open(path).await {
        Err(StorageError::Corrupt(message)) => {
            assert!(message.contains("journal"), "names the journal: {message}");
            assert!(message.contains(reason), "says {reason:?}: {message}");
        }
        other => panic!("a damaged journal must be refused: {other:?}"),
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn versions_only_in_the_journal_are_stored_when_the_database_opens() {
    let dir = temp_dir();
    let path = dir.path().join("broker.redb");
    let (database_id, mut expected) = closed_store(&path).await;
    let (mut journal, _) = journal_of(&path, database_id, 3);
    // Already durable in the file: skipped.
    write(&mut journal, &[(expected[2].clone(), None)]);
    write(&mut journal, &[(version(4, "a"), Some("k")), (version(5, "c"), None)]);
    write(&mut journal, &[(version(6, "a"), None)]);
    drop(journal);
    let report = crate::RedbStorage::check(&path).await.expect("check");
    assert!(report.is_clean(), "{report}");
    assert_eq!((report.last_id, report.journal_versions), (3, 3), "{report}");
    assert!(report.to_string().contains("3 more in its journal"), "{report}");

    let store = open(&path).await;
    expected.extend([version(4, "a"), version(5, "c"), version(6, "a")]);
    assert_holds(&store, &expected).await;
    // The key came back with its version: a retry returns it.
    let retry = NewVersion::new("a", 20, "[4]").with_idempotency_key("k");
    assert_eq!(store.append(vec![retry]).await.expect("retry"), [version(4, "a")]);
    let next = store.append(vec![NewVersion::new("b", 30, "1")]).await.expect("append");
    assert_eq!(next[0].id, 7, "ids continue after the replayed ones");
    store.close().await.expect("close");
    expected.push(next[0].clone());
    assert_holds(&open(&path).await, &expected).await;
}

#[tokio::test(flavor = "multi_thread")]
async fn a_torn_last_record_is_dropped() {
    let dir = temp_dir();
    let path = dir.path().join("broker.redb");
    let (database_id, mut expected) = closed_store(&path).await;
    let (mut journal, journal_path) = journal_of(&path, database_id, 3);
    write(&mut journal, &[(version(4, "a"), None)]);
    let torn = write(&mut journal, &[(version(5, "a"), None), (version(6, "b"), None)]);
    drop(journal);
    // The crash came while the last record was written: its end never reached the disk.
    let file = std::fs::OpenOptions::new().write(true).open(&journal_path).expect("open");
    file.write_all_at(&[0; 40], torn + 30).expect("tear the record");

    let store = open(&path).await;
    expected.push(version(4, "a"));
    assert_holds(&store, &expected).await;
}

#[tokio::test(flavor = "multi_thread")]
async fn a_damaged_record_followed_by_another_is_refused() {
    let dir = temp_dir();
    let path = dir.path().join("broker.redb");
    let (database_id, _) = closed_store(&path).await;
    let (mut journal, journal_path) = journal_of(&path, database_id, 3);
    let first = write(&mut journal, &[(version(4, "a"), None)]);
    write(&mut journal, &[(version(5, "a"), None)]);
    drop(journal);
    let file = std::fs::OpenOptions::new().write(true).open(&journal_path).expect("open");
    file.write_all_at(b"X", first + 30).expect("damage the first record");

    let report = crate::RedbStorage::check(&path).await.expect("check");
    let problem = report.problem.expect("check finds the damage");
    assert!(problem.contains("journal") && problem.contains("checksum"), "{problem}");
    open_fails_as_damaged(&path, "fails its checksum").await;
}

#[tokio::test(flavor = "multi_thread")]
async fn a_journal_of_another_database_or_with_a_gap_is_refused() {
    let dir = temp_dir();
    let path = dir.path().join("broker.redb");
    let (database_id, _) = closed_store(&path).await;

    let (mut journal, journal_path) = journal_of(&path, Uuid::new_v4(), 3);
    write(&mut journal, &[(version(4, "a"), None)]);
    drop(journal);
    open_fails_as_damaged(&path, "belongs to database").await;

    std::fs::remove_file(&journal_path).expect("remove the journal");
    let (mut journal, _) = journal_of(&path, database_id, 3);
    write(&mut journal, &[(version(9, "a"), None)]);
    drop(journal);
    open_fails_as_damaged(&path, "resume at id 9").await;
}

#[tokio::test(flavor = "multi_thread")]
async fn records_of_a_generation_before_the_last_checkpoint_are_not_replayed() {
    let dir = temp_dir();
    let path = dir.path().join("broker.redb");
    let (database_id, expected) = closed_store(&path).await;
    let (mut journal, _) = journal_of(&path, database_id, 3);
    write(&mut journal, &[(version(4, "a"), None)]);
    // A checkpoint that the database's durable end does not reflect is impossible; this one
    // stands for a journal whose old records were left behind by the restart.
    journal.restart().expect("restart");
    drop(journal);

    let store = open(&path).await;
    assert_holds(&store, &expected).await;
}
