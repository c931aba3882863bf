//! Files of the earlier storage formats are upgraded when a store opens them: format 1, whose
//! index held a row per version in `by_event`, and format 2, whose log held a row per version in
//! `versions`. Every view reads as before, with the versions the journal held, the file then
//! checks clean as format 3, and `check` asks for the upgrade rather than misreading it.

use std::path::Path;

use broker_storage::{NewVersion, Retention, Storage, StorageError, Uuid, Version};
use redb::{Database, ReadableDatabase, TableDefinition, TableHandle, WriteTransaction};

use super::{assert_holds, open, temp_dir};
use crate::index::{self, RUN_MAX};
use crate::journal::{self, Journal, Record};
use crate::{CheckReport, RedbStorage};

const META: TableDefinition<'static, &str, &[u8]> = TableDefinition::new("meta");
const VERSIONS: TableDefinition<'static, u64, (&str, u64, &str)> = TableDefinition::new("versions");
const BY_EVENT: TableDefinition<'static, (&str, u64), ()> = TableDefinition::new("by_event");
const LATEST: TableDefinition<'static, &str, u64> = TableDefinition::new("latest");
const EVENT_IDS: TableDefinition<'static, (&str, u64), &[u8]> = TableDefinition::new("event_ids");
const HORIZONS: TableDefinition<'static, &str, u64> = TableDefinition::new("horizons");

/// Writes at `path` the file a build of format `format` (1 or 2) wrote for `versions`, durably,
/// and returns its database identity: the meta, `versions` and `latest` tables the two formats
/// share, and then what `index` writes, the format's own index.
fn write_old_format(
    path: &Path,
    format: u64,
    versions: &[Version],
    index: impl FnOnce(&WriteTransaction),
) -> Uuid {
    let database_id = Uuid::new_v4();
    let db = Database::create(path).expect("create the file");
    let txn = db.begin_write().expect("begin");
    {
        let mut meta = txn.open_table(META).expect("meta");
        meta.insert("database_id", database_id.as_bytes().as_slice()).expect("id");
        meta.insert("format_version", format.to_le_bytes().as_slice()).expect("format");
        let mut rows = txn.open_table(VERSIONS).expect("versions");
        let mut latest = txn.open_table(LATEST).expect("latest");
        for Version { id, event, timestamp, data } in versions {
            rows.insert(id, (&**event, *timestamp, &**data)).expect("row");
            latest.insert(&**event, id).expect("latest");
        }
    }
    index(&txn);
    txn.commit().expect("commit");
    database_id
}

/// Writes at `path` the file a build of format 1 wrote for `versions`: its index has a row per
/// version.
fn write_format_one(path: &Path, versions: &[Version]) -> Uuid {
    write_old_format(path, 1, versions, |txn| {
        let mut by_event = txn.open_table(BY_EVENT).expect("by_event");
        for Version { id, event, .. } in versions {
            by_event.insert((&**event, *id), ()).expect("index");
        }
    })
}

/// Writes at `path` the file a build of format 2 wrote for `versions`, of which those of the
/// event `pruned.0` up to `pruned.1` were pruned: its index has a row per run.
fn write_format_two(path: &Path, versions: &[Version], pruned: (&str, u64)) -> Uuid {
    write_old_format(path, 2, versions, |txn| {
        let mut event_ids = txn.open_table(EVENT_IDS).expect("event_ids");
        index::add(&mut event_ids, versions.iter().map(|v| (&*v.event, v.id))).expect("index");
        txn.open_table(HORIZONS).expect("horizons").insert(pruned.0, pruned.1).expect("horizon");
    })
}

/// Writes, into the journal of the database at `path`, a record of `versions`: what a crash left
/// beyond the file's end.
fn journal_holds(path: &Path, database_id: Uuid, end: u64, versions: &[Version]) {
    let (mut journal, _) =
        Journal::open(&journal::path_of(path), database_id, end).expect("journal");
    let mut record = Record::with_capacity(64);
    for v in versions {
        record.push(v.id, v.timestamp, &v.event, &v.data, None);
    }
    let record = record.finish(journal.generation());
    journal.write(&record).expect("write the record");
}

/// The names of the tables in the file at `path`.
fn tables(path: &Path) -> Vec<String> {
    let db = Database::open(path).expect("open the file");
    let txn = db.begin_read().expect("read");
    txn.list_tables().expect("tables").map(|table| table.name().to_owned()).collect()
}

/// Asserts that `check` refuses the file at `path`, of format `format`, and asks for a start.
async fn assert_check_asks_for_upgrade(path: &Path, format: u64) {
    let report = RedbStorage::check(path).await.expect_err("check refuses an old format");
    assert!(
        matches!(&report, StorageError::Backend(_))
            && report.to_string().contains(&format!("format version {format}")),
        "{report}"
    );
    assert!(report.to_string().contains("start the broker on it once"), "{report}");
}

/// Prunes `event` of `store` down to its last 10 versions, which must remove `removed` of them,
/// every one below `kept_from`, and appends one more; asserts that the store then holds
/// `expected` so changed, and that the file, closed, checks clean with all of them. Returns the
/// check's report.
async fn prune_append_and_check(
    store: RedbStorage,
    path: &Path,
    mut expected: Vec<Version>,
    (event, removed, kept_from): (&str, usize, u64),
) -> CheckReport {
    let pruned = store.prune(event, Retention::last(10), usize::MAX).await.expect("prune");
    assert_eq!(pruned.removed, removed);
    expected.retain(|v| *v.event != *event || v.id >= kept_from);
    let next = store.append(vec![NewVersion::new("a", 1, "1")]).await.expect("append");
    expected.extend(next);
    assert_holds(&store, &expected).await;
    store.close().await.expect("close");

    let report = RedbStorage::check(path).await.expect("check");
    assert!(report.is_clean(), "{report}");
    assert_eq!(report.versions, expected.len() as u64, "{report}");
    report
}

fn version(id: u64, event: &str) -> Version {
    Version { id, event: event.into(), timestamp: 10 + id, data: format!("[{id}]").into() }
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
    assert_check_asks_for_upgrade(&path, 1).await;
    // A crash left two versions in the journal, beyond the file's end.
    let crashed = [version(5201, "b"), version(5202, "d")];
    journal_holds(&path, database_id, 5200, &crashed);
    expected.extend(crashed);

    let store = open(&path).await;
    assert_eq!(store.database_id(), database_id, "the upgrade keeps the identity");
    assert_holds(&store, &expected).await;
    assert_eq!(store.history("a", 4990, 3).await.expect("history").len(), 3);
    let at = store.latest_at(5000).await.expect("latest_at");
    assert_eq!(at, [version(5000, "a")], "time travel reads the upgraded index");
    // A prune counts and removes the upgraded runs.
    prune_append_and_check(store, &path, expected, ("a", 5050 - 10, 5164)).await;
    let tables = tables(&path);
    assert!(!tables.iter().any(|name| name == "by_event"), "by_event is gone: {tables:?}");
    assert!(!tables.iter().any(|name| name == "versions"), "versions is gone: {tables:?}");
    assert!(tables.iter().any(|name| name == "event_ids"), "{tables:?}");
}

#[tokio::test(flavor = "multi_thread")]
async fn a_file_of_format_two_is_upgraded_when_opened_and_reads_as_before() {
    let dir = temp_dir();
    let path = dir.path().join("broker.redb");
    // Events interleaved, long data that spans pages, and a pruned stretch of "a": ids 1 to 400
    // are gone, a hole that the blocks must skip.
    let event = |id: u64| ["a", "b", "ab", "c"][id as usize % 4];
    let mut expected: Vec<Version> = (1..=3000)
        .map(|id| {
            let mut v = version(id, event(id));
            if id % 500 == 0 {
                v.data = format!("\"{}\"", "x".repeat(20_000)).into();
            }
            v
        })
        .filter(|v| &*v.event != "a" || v.id > 400)
        .collect();
    let database_id = write_format_two(&path, &expected, ("a", 400));
    let size = || std::fs::metadata(&path).expect("the file's size").len();
    let written = size();
    assert_check_asks_for_upgrade(&path, 2).await;
    let crashed = [version(3001, "b"), version(3002, "d")];
    journal_holds(&path, database_id, 3000, &crashed);
    expected.extend(crashed);

    let store = open(&path).await;
    // The log was written anew beside the old one, which doubled the file; compacted, it gives
    // the old one's pages back, but for what the replay of the journal then adds.
    let upgraded = size();
    assert!(
        upgraded < written * 3 / 2,
        "the upgraded file takes {upgraded} bytes, {written} before"
    );
    assert_eq!(store.database_id(), database_id, "the upgrade keeps the identity");
    assert_holds(&store, &expected).await;
    assert_eq!(store.since(2990, 3).await.expect("since"), expected[expected.len() - 12..][..3]);
    let at = store.latest_at(404).await.expect("latest_at");
    let of = |id: u64| expected.iter().find(|v| v.id == id).expect("stored").clone();
    assert_eq!(at, [of(401), of(402), of(403), of(404)], "time travel reads the upgraded log");
    // A prune removes versions from the upgraded blocks.
    let report = prune_append_and_check(store, &path, expected, ("b", 751 - 10, 2965)).await;
    assert_eq!(report.last_id, 3003, "{report}");
    let tables = tables(&path);
    assert!(!tables.iter().any(|name| name == "versions"), "versions is gone: {tables:?}");
    assert!(tables.iter().any(|name| name == "blocks"), "{tables:?}");
}
