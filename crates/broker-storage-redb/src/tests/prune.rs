//! Pruning in the file: the state at any id against a model, removals and horizons across a
//! clean close and a crash, files written before pruning, keys whose version was pruned, and what
//! `check` says of a pruned file and of damage to it.

use std::collections::HashMap;
use std::path::Path;
use std::time::Duration;

use broker_storage::conformance::{self, strategy};
use broker_storage::{Horizon, NewVersion, Pruned, Retention, Storage, Version};
use redb::{Database, WriteTransaction};

use super::{assert_holds, fill, open, temp_dir};
use crate::RedbStorage;
use crate::blocks::{self, BLOCKS, Row};
use crate::journal;
use crate::schema::{COUNTS, HORIZONS, KEYS, LATEST};

/// Asserts that `store` holds exactly the versions of `stored` that its horizons do not cover,
/// and returns the horizons, sorted by event.
async fn assert_pruned_as_horizons_say(store: &RedbStorage, stored: &[Version]) -> Vec<Horizon> {
    let mut horizons = store.horizons().await.expect("horizons");
    horizons.sort_by(|a, b| a.event.cmp(&b.event));
    let through: HashMap<&str, u64> =
        horizons.iter().map(|horizon| (&*horizon.event, horizon.pruned_through)).collect();
    let kept: Vec<Version> = stored
        .iter()
        .filter(|version| through.get(&*version.event).is_none_or(|&h| version.id > h))
        .cloned()
        .collect();
    assert_holds(store, &kept).await;
    horizons
}

/// Asserts that the closed file at `path` passes `check`, reporting `pruned_events`.
async fn assert_clean(path: &Path, pruned_events: u64) {
    let report = RedbStorage::check(path).await.expect("check");
    assert!(report.is_clean(), "{report}");
    assert_eq!(report.pruned_events, pruned_events, "{report}");
}

/// Copies the file of an open store and its journal to `to`, as a crash of the process leaves
/// them: redb writes its header only at a durable commit (a checkpoint), so the copy opens at the
/// last one, and its journal holds the appends since.
fn crash_copy(from: &Path, to: &Path) {
    std::fs::copy(from, to).expect("copy the database");
    std::fs::copy(journal::path_of(from), journal::path_of(to)).expect("copy the journal");
}

proptest::proptest! {
    #![proptest_config(proptest::prelude::ProptestConfig::with_cases(32))]

    /// The state at any id, across appends and prunes, is what a brute-force model says, and the
    /// file left behind is clean.
    #[test]
    fn time_travel_matches_a_model(steps in strategy::steps()) {
        let runtime = tokio::runtime::Builder::new_multi_thread()
            .worker_threads(1)
            .enable_all()
            .build()
            .expect("runtime");
        runtime.block_on(async {
            let dir = temp_dir();
            let path = dir.path().join("broker.redb");
            let store = open(&path).await;
            conformance::check_steps(&store, &steps).await;
            let pruned = store.horizons().await.expect("horizons").len() as u64;
            store.close().await.expect("close");
            assert_clean(&path, pruned).await;
        });
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn pruning_survives_close_and_reopen() {
    let dir = temp_dir();
    let path = dir.path().join("broker.redb");
    let store = open(&path).await;
    let stored = fill(&store, &["a", "b"], 100, 10).await;
    let pruned = store.prune("a", Retention::last(5), usize::MAX).await.expect("prune");
    assert_eq!(pruned, Pruned { removed: 45, more: false });
    let before = assert_pruned_as_horizons_say(&store, &stored).await;
    assert_eq!(before, [Horizon { event: "a".into(), pruned_through: stored[88].id }]);
    store.close().await.expect("close");
    assert_clean(&path, 1).await;

    let store = open(&path).await;
    assert_eq!(assert_pruned_as_horizons_say(&store, &stored).await, before, "horizons persist");
    // The count persists too: one more version of "a" makes one more to prune.
    store.append(vec![NewVersion::new("a", 200, "late")]).await.expect("append");
    let pruned = store.prune("a", Retention::last(5), usize::MAX).await.expect("prune");
    assert_eq!(pruned.removed, 1, "5 of 6 are kept");
    let backup = dir.path().join("backup.redb");
    store.backup(&backup).await.expect("backup");
    store.close().await.expect("close");
    assert_clean(&path, 1).await;

    assert_clean(&backup, 1).await;
    let copy = open(&backup).await;
    let horizons = copy.horizons().await.expect("horizons");
    assert_eq!(horizons, [Horizon { event: "a".into(), pruned_through: stored[90].id }]);
    let pruned = copy.prune("a", Retention::last(4), usize::MAX).await.expect("prune");
    assert_eq!(pruned.removed, 1, "a backup keeps the counts");
    copy.close().await.expect("close");
}

#[tokio::test(flavor = "multi_thread")]
async fn a_crash_keeps_a_prune_with_its_horizon_or_undoes_both() {
    let dir = temp_dir();
    let path = dir.path().join("broker.redb");
    let store = open(&path).await;
    let mut stored = fill(&store, &["a", "b"], 200, 20).await;
    let pruned = store.prune("a", Retention::last(10), usize::MAX).await.expect("prune");
    assert_eq!(pruned.removed, 90);
    // Whether a checkpoint came after the prune depends on the clock: either way, the removals
    // and the horizon agree.
    let early = dir.path().join("early.redb");
    crash_copy(&path, &early);
    // A second later, the next append starts the journal's next generation and the checkpoint
    // of the one before, which makes the prune durable; its own version is then only in the
    // journal.
    tokio::time::sleep(Duration::from_millis(1_100)).await;
    stored.extend(store.append(vec![NewVersion::new("b", 500, "late")]).await.expect("append"));
    store.checkpointed().await;
    let late = dir.path().join("late.redb");
    crash_copy(&path, &late);
    store.close().await.expect("close");

    let image = open(&early).await;
    let horizons = assert_pruned_as_horizons_say(&image, &stored[..200]).await;
    println!("after a crash right after the prune, the horizons are {horizons:?}");
    image.close().await.expect("close");
    assert_clean(&early, horizons.len() as u64).await;

    let report = RedbStorage::check(&late).await.expect("check");
    assert!(report.is_clean() && report.journal_versions == 1, "{report}");
    let image = open(&late).await;
    let horizons = assert_pruned_as_horizons_say(&image, &stored).await;
    let through = stored[178].id;
    assert_eq!(horizons, [Horizon { event: "a".into(), pruned_through: through }], "durable");
    // The count came back with the removals: a prune goes on from where it stood.
    let pruned = image.prune("a", Retention::last(9), usize::MAX).await.expect("prune");
    assert_eq!(pruned.removed, 1);
    image.close().await.expect("close");
    assert_clean(&late, 1).await;
}

/// Runs `edit` on the closed file at `path` in one committed write transaction.
fn edit(path: &Path, edit: impl FnOnce(&WriteTransaction)) {
    let db = Database::create(path).expect("open the closed file");
    let txn = db.begin_write().expect("begin a write");
    edit(&txn);
    txn.commit().expect("commit");
}

#[tokio::test(flavor = "multi_thread")]
async fn a_file_written_before_pruning_counts_each_event_at_its_first_prune() {
    let dir = temp_dir();
    let path = dir.path().join("broker.redb");
    let store = open(&path).await;
    let stored = fill(&store, &["a"], 10, 10).await;
    store.close().await.expect("close");
    // What a build before pruning left behind: the same file without its tables.
    edit(&path, |txn| {
        txn.delete_table(COUNTS).expect("delete counts");
        txn.delete_table(HORIZONS).expect("delete horizons");
    });
    assert_clean(&path, 0).await;

    let store = open(&path).await;
    let pruned = store.prune("a", Retention::last(3), usize::MAX).await.expect("prune");
    assert_eq!(pruned.removed, 7, "the event is counted");
    assert_eq!(store.history("a", 0, 10).await.expect("history"), stored[7..]);
    store.close().await.expect("close");
    assert_clean(&path, 1).await;

    // Versions appended after a prune are counted by the next one, above the row's `through`.
    let store = open(&path).await;
    let later = fill(&store, &["a"], 4, 4).await;
    let pruned = store.prune("a", Retention::last(2), usize::MAX).await.expect("prune");
    assert_eq!(pruned.removed, 5, "3 left by the first prune and 4 appended since, less 2");
    assert_eq!(store.history("a", 0, 10).await.expect("history"), later[2..]);
    store.close().await.expect("close");
    assert_clean(&path, 1).await;
}

#[tokio::test(flavor = "multi_thread")]
async fn a_retry_whose_version_was_pruned_stores_a_new_version() {
    let dir = temp_dir();
    let path = dir.path().join("broker.redb");
    let keyed = |timestamp| NewVersion::new("a", timestamp, "1").with_idempotency_key("k");
    let store = open(&path).await;
    let first = store.append(vec![keyed(1_000)]).await.expect("append");
    store.append(vec![NewVersion::new("a", 1_001, "2")]).await.expect("append");
    // Stamped long before the clock's window, so it may go, though its key is still there.
    let pruned = store.prune("a", Retention::last(1), 10).await.expect("prune");
    assert_eq!(pruned.removed, 1);
    store.close().await.expect("close");
    assert_clean(&path, 1).await;

    let store = open(&path).await;
    let retry = store.append(vec![keyed(1_500)]).await.expect("a retry is not an error");
    assert!(retry[0].id > first[0].id, "the key's version is gone: a new one is stored");
    store.close().await.expect("close");
    assert_clean(&path, 1).await;
}

/// Damage done to a closed file, in a write transaction.
type Damage = fn(&WriteTransaction);

/// A pruned file with `a` at ids 1 to 10, pruned through 7, and `b` at 11.
async fn pruned_file(path: &Path) {
    let store = open(path).await;
    fill(&store, &["a"], 10, 10).await;
    fill(&store, &["b"], 1, 1).await;
    store.prune("a", Retention::last(3), usize::MAX).await.expect("prune");
    store.close().await.expect("close");
}

#[tokio::test(flavor = "multi_thread")]
async fn check_finds_damage_to_a_pruned_file() {
    let dir = temp_dir();
    let pristine = dir.path().join("pristine.redb");
    pruned_file(&pristine).await;
    assert_clean(&pristine, 1).await;

    let damage: [(&str, Damage); 6] = [
        ("yet its horizon says it was pruned", |txn| {
            txn.open_table(HORIZONS).expect("horizons").insert("a", 8).expect("insert");
        }),
        ("versions 1 to 7 are missing, and no horizon says", |txn| {
            txn.open_table(HORIZONS).expect("horizons").remove("a").expect("remove");
        }),
        ("counts gives \"a\" 5 versions up to 10, and it has 3", |txn| {
            txn.open_table(COUNTS).expect("counts").insert("a", (5, 10)).expect("insert");
        }),
        // A key may name a version pruned long ago, never one above every horizon.
        ("keys names version 99 for key \"k\", which is missing", |txn| {
            txn.open_table(KEYS).expect("keys").insert("k", (99, 8)).expect("insert");
        }),
        ("\"c\" has a horizon (3) but no versions", |txn| {
            txn.open_table(HORIZONS).expect("horizons").insert("c", 3).expect("insert");
        }),
        // A block of its own for version 8, which the block written from 1 to 10 holds too.
        ("within the one ending at 8", |txn| {
            let row = Row { id: 8, timestamp: 8, event: "a", data: "8" };
            let mut table = txn.open_table(BLOCKS).expect("blocks");
            blocks::append(&mut table, [row]).expect("append");
        }),
    ];
    for (index, (problem, damage)) in damage.into_iter().enumerate() {
        let path = dir.path().join(format!("damaged-{index}.redb"));
        std::fs::copy(&pristine, &path).expect("copy");
        edit(&path, damage);
        let report = RedbStorage::check(&path).await.expect("check");
        let found = report.problem.unwrap_or_default();
        assert!(found.contains(problem), "expected {problem:?}, found {found:?}");
    }
    // And the one thing a prune never does: remove an event's latest version.
    let path = dir.path().join("no-latest.redb");
    std::fs::copy(&pristine, &path).expect("copy");
    edit(&path, |txn| {
        txn.open_table(LATEST).expect("latest").insert("a", 5).expect("insert");
    });
    let report = RedbStorage::check(&path).await.expect("check");
    assert!(report.problem.is_some_and(|p| p.contains("latest names version 5")));
}
