//! The journal read back at open: the versions a crash left only in it are stored, from both
//! generations while a checkpoint runs and from a journal of the previous format, a torn last
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
    Version { id, event: event.into(), timestamp: 10 + id, data: format!("[{id}]").into() }
}

/// Writes one record of `versions` (each with its key) to `journal`; returns where it starts.
fn write(journal: &mut Journal, versions: &[(Version, Option<&str>)]) -> u64 {
    let start = journal.end();
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

#[tokio::test(flavor = "multi_thread")]
async fn versions_of_a_generation_whose_checkpoint_did_not_commit_are_replayed() {
    let dir = temp_dir();
    let path = dir.path().join("broker.redb");
    let (database_id, mut expected) = closed_store(&path).await;
    let (mut journal, _) = journal_of(&path, database_id, 3);
    write(&mut journal, &[(version(4, "a"), None)]);
    // A checkpoint is due: the next records go to the next generation while it runs.
    journal.switch(4).expect("switch");
    assert!(!journal.can_switch(64), "no switch before the checkpoint settles");
    write(&mut journal, &[(version(5, "b"), None), (version(6, "a"), Some("k"))]);
    // The crash comes before the checkpoint's durable commit.
    drop(journal);
    let report = crate::RedbStorage::check(&path).await.expect("check");
    assert!(report.is_clean() && report.journal_versions == 3, "{report}");

    let store = open(&path).await;
    expected.extend([version(4, "a"), version(5, "b"), version(6, "a")]);
    assert_holds(&store, &expected).await;
    let retry = NewVersion::new("a", 30, "[6]").with_idempotency_key("k");
    assert_eq!(store.append(vec![retry]).await.expect("retry"), [version(6, "a")]);
}

#[tokio::test(flavor = "multi_thread")]
async fn a_settled_generation_is_written_over_and_not_replayed() {
    let dir = temp_dir();
    let path = dir.path().join("broker.redb");
    let (database_id, mut expected) = closed_store(&path).await;
    let (mut journal, _) = journal_of(&path, database_id, 3);
    // Generation 1, in the low half, holds only what the database holds durably.
    let low = write(&mut journal, &[(expected[2].clone(), None)]);
    journal.switch(3).expect("switch to the high half");
    let high = write(&mut journal, &[(version(4, "a"), None)]);
    assert!(high > low + 1024 * 1024, "the next generation is in the other half: {high}");
    let checkpoint = journal.take_checkpoint().expect("the first generation's checkpoint");
    assert_eq!(journal.take_checkpoint(), None, "a checkpoint is handed out once");
    journal.settle(checkpoint, true);
    assert!(journal.can_switch(64), "a settled generation may be written over");
    write(&mut journal, &[(version(5, "b"), None)]);
    journal.switch(5).expect("switch back to the low half");
    let again = write(&mut journal, &[(version(6, "c"), None)]);
    assert_eq!(again, low, "the low half is written over from its start");
    drop(journal);

    let store = open(&path).await;
    expected.extend([version(4, "a"), version(5, "b"), version(6, "c")]);
    assert_holds(&store, &expected).await;
}

#[tokio::test(flavor = "multi_thread")]
async fn a_journal_of_the_previous_format_is_replayed() {
    let dir = temp_dir();
    let path = dir.path().join("broker.redb");
    let (database_id, mut expected) = closed_store(&path).await;
    // Format 1: one generation, from the end of the header, which names no other.
    let mut header = Vec::new();
    header.extend_from_slice(b"BRKRWAL\0");
    header.extend_from_slice(&1_u32.to_le_bytes());
    header.extend_from_slice(&0_u32.to_le_bytes());
    header.extend_from_slice(database_id.as_bytes());
    header.extend_from_slice(&7_u64.to_le_bytes());
    let crc = crc32fast::hash(&header);
    header.extend_from_slice(&crc.to_le_bytes());
    let mut record = Record::with_capacity(64);
    record.push(4, 14, "a", "[4]", None);
    record.push(5, 15, "b", "[5]", Some("k"));
    let mut file = vec![0; 64 * 1024];
    file[..header.len()].copy_from_slice(&header);
    let record = record.finish(7);
    let start = journal::HEADER_LEN as usize;
    file[start..start + record.len()].copy_from_slice(&record);
    std::fs::write(journal::path_of(&path), file).expect("write the journal");

    let store = open(&path).await;
    expected.extend([version(4, "a"), version(5, "b")]);
    assert_holds(&store, &expected).await;
    let next = store.append(vec![NewVersion::new("c", 30, "1")]).await.expect("append");
    assert_eq!(next[0].id, 6, "ids continue after the replayed ones");
}

/// Appends go on while the checkpoints of the journal's generations run beside them, and a crash
/// at any moment keeps every acknowledged version: each image taken between appends opens
/// holding exactly the versions acknowledged before it.
#[tokio::test(flavor = "multi_thread")]
async fn a_crash_while_checkpoints_run_beside_appends_loses_nothing() {
    let dir = temp_dir();
    let path = dir.path().join("broker.redb");
    let store = open(&path).await;
    let data = format!("\"{}\"", "x".repeat(2_000));
    let mut acknowledged: Vec<Version> = Vec::new();
    let mut images = Vec::new();
    // About 10 MB of records: generations switch every 2 MiB, in both halves in turn.
    for n in 0..100 {
        let batch = (0..50).map(|i| NewVersion::new(["a", "b"][i % 2], n, data.clone()));
        acknowledged.extend(store.append(batch.collect()).await.expect("append"));
        if n % 7 == 3 {
            let image = dir.path().join(format!("image-{n}.redb"));
            store.crash_image(&image).await;
            images.push((image, acknowledged.len()));
        }
    }
    store.close().await.expect("close");

    for (image, count) in images {
        let report = crate::RedbStorage::check(&image).await.expect("check");
        assert!(report.is_clean(), "{report}");
        let store = open(&image).await;
        assert_holds(&store, &acknowledged[..count]).await;
        store.close().await.expect("close");
    }
}
