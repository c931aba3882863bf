//! A file of storage format 1, whose index held a row per version in `by_event`, is upgraded when
//! a store opens it: every view reads as before, with the versions its journal held, the file
//! then checks clean as format 2, and `check` asks for the upgrade rather than misreading it.

use std::path::Path;

use broker_storage::{NewVersion, Retention, Storage, StorageError, Uuid, Version};
use redb::{Database, ReadableDatabase, TableDefinition, TableHandle};

use super::{assert_holds, open, temp_dir};
use crate::RedbStorage;
use crate::index::RUN_MAX;
use crate::journal::{self, Journal, Record};

const META: TableDefinition<'static, &str, &[u8]> = TableDefinition::new("meta");
const VERSIONS: TableDefinition<'static, u64, (&str, u64, &str)> = TableDefinition::new("versions");
const BY_EVENT: TableDefinition<'static, (&str, u64), ()> = TableDefinition::new("by_event");
const LATEST: TableDefinition<'static, &str, u64> = TableDefinition::new("latest");

/// Writes at `path` the file a build of format 1 wrote for `versions`, durably, and returns its
/// database identity.
fn write_format_one(path: &Path, versions: &[Version]) -> Uuid {
    let database_id = Uuid::new_v4();
    let db = Database::create(path).expect("create the file");
    let txn = db.begin_write().expect("begin");
    {
        let mut meta = txn.open_table(META).expect("meta");
        meta.insert("database_id", database_id.as_bytes().as_slice()).expect("id");
        meta.insert("format_version", 1_u64.to_le_bytes().as_slice()).expect("format");
        let mut rows = txn.open_table(VERSIONS).expect("versions");
        let mut by_event = txn.open_table(BY_EVENT).expect("by_event");
        let mut latest = txn.open_table(LATEST).expect("latest");
        for Version { id, event, timestamp, data } in versions {
            rows.insert(id, (event.as_str(), *timestamp, data.as_str())).expect("row");
            by_event.insert((event.as_str(), *id), ()).expect("index");
            latest.insert(event.as_str(), id).expect("latest");
        }
    }
    txn.commit().expect("commit");
    database_id
}

fn version(id: u64, event: &str) -> Version {
    Version { id, event: event.into(), timestamp: 10 + id, data: format!("[{id}]") }
}

#[tokio::test(flavor = "multi_thread")]
async fn a_file_of_format_one_is_upgraded_when_opened_and_reads_as_before() {
    let dir = temp_dir();
    let path = dir.path().join("broker.redb");
    // More versions of one event in a row than a run holds, and events interleaved.
    let events = |id: u64| match id {
        ..=5000 => "a",
        _ => ["a", "b", "ab", "c"][id as usize % 4],
    };
    let mut expected: Vec<Version> = (1..=5200).map(|id| version(id, events(id))).collect();
    const { assert!(5000 > RUN_MAX) };
    let database_id = write_format_one(&path, &expected);
    let report = RedbStorage::check(&path).await.expect_err("check refuses format 1");
    assert!(
        matches!(&report, StorageError::Backend(_))
            && report.to_string().contains("format version 1"),
        "{report}"
    );
    assert!(report.to_string().contains("start the broker on it once"), "{report}");
    // A crash left two versions in the journal, beyond the file's end.
    let (mut journal, _) =
        Journal::open(&journal::path_of(&path), database_id, 5200).expect("journal");
    let mut record = Record::with_capacity(64);
    for v in [version(5201, "b"), version(5202, "d")] {
        record.push(v.id, v.timestamp, &v.event, &v.data, None);
        expected.push(v);
    }
    let record = record.finish(journal.generation());
    journal.write(&record).expect("write the record");
    drop(journal);

    let store = open(&path).await;
    assert_eq!(store.database_id(), database_id, "the upgrade keeps the identity");
    assert_holds(&store, &expected).await;
    assert_eq!(store.history("a", 4990, 3).await.expect("history").len(), 3);
    let at = store.latest_at(5000).await.expect("latest_at");
    assert_eq!(at, [version(5000, "a")], "time travel reads the upgraded index");
    let pruned = store.prune("a", Retention::last(10), usize::MAX).await.expect("prune");
    assert_eq!(pruned.removed, 5050 - 10, "a prune counts and removes the upgraded runs");
    expected.retain(|v| v.event != "a" || v.id >= 5164);
    let next = store.append(vec![NewVersion::new("a", 1, "1")]).await.expect("append");
    expected.extend(next);
    assert_holds(&store, &expected).await;
    store.close().await.expect("close");

    let report = RedbStorage::check(&path).await.expect("check");
    assert!(report.is_clean(), "{report}");
    assert_eq!(report.versions, expected.len() as u64, "{report}");
    let db = Database::open(&path).expect("open the file");
    let tables: Vec<String> = db
        .begin_read()
        .expect("read")
        .list_tables()
        .expect("tables")
        .map(|table| table.name().to_owned())
        .collect();
    assert!(!tables.iter().any(|name| name == "by_event"), "by_event is gone: {tables:?}");
    assert!(tables.iter().any(|name| name == "event_ids"), "{tables:?}");
}
