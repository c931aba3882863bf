//! The space a prune frees is reused: a file whose history was pruned takes a second round of
//! appends into the pages the first round left, where one never pruned grows by the whole round.
//!
//! `cargo test -p broker-storage-redb reuse -- --nocapture` prints the sizes.

use broker_storage::{NewVersion, Retention, Storage};

use super::{open, temp_dir};
use crate::RedbStorage;

/// Versions per round, all of one event, of about 1 KiB each.
const ROUND: usize = 20_000;
const BATCH: usize = 500;

/// Appends a round of versions to `store`, numbered from `first`.
async fn round(store: &RedbStorage, first: usize) {
    let data = "x".repeat(1_000);
    for start in (first..first + ROUND).step_by(BATCH) {
        let batch =
            (start..start + BATCH).map(|n| NewVersion::new("a", n as u64, format!("{n}{data}")));
        store.append(batch.collect()).await.expect("append");
    }
    // Every version in redb's tables, not some still waiting beside them.
    store.apply_all().await;
}

async fn size(store: &RedbStorage) -> u64 {
    store.size().await.expect("size").expect("a redb store knows its size")
}

/// The size of a store after one round, after pruning it (or not) down to 10 versions, and after
/// a second round.
async fn sizes(prune: bool) -> [u64; 3] {
    let dir = temp_dir();
    let store = open(&dir.path().join("broker.redb")).await;
    round(&store, 0).await;
    let first = size(&store).await;
    if prune {
        while store.prune("a", Retention::last(10), 1_000).await.expect("prune").more {}
        assert_eq!(store.history("a", 0, 100).await.expect("history").len(), 10);
    }
    let pruned = size(&store).await;
    round(&store, ROUND).await;
    let second = size(&store).await;
    store.close().await.expect("close");
    [first, pruned, second]
}

#[tokio::test(flavor = "multi_thread")]
async fn pruned_space_is_reused_by_later_appends() {
    let mib = |bytes: u64| bytes as f64 / (1024.0 * 1024.0);
    let kept = sizes(false).await;
    let pruned = sizes(true).await;
    for (what, [first, after_prune, second]) in [("never pruned", kept), ("pruned", pruned)] {
        println!(
            "{what}: {:.1} MiB after {ROUND} versions, {:.1} MiB after the prune, {:.1} MiB \
             after {ROUND} more",
            mib(first),
            mib(after_prune),
            mib(second)
        );
    }
    let grown = |[first, _, second]: [u64; 3]| second.saturating_sub(first);
    assert!(
        grown(kept) > 15 * 1024 * 1024,
        "a second round of 20 MB grows a file never pruned: by {:.1} MiB",
        mib(grown(kept))
    );
    assert!(
        grown(pruned) * 4 < grown(kept),
        "the second round fits mostly in the pages the prune freed: the file grew by {:.1} MiB, \
         and by {:.1} MiB unpruned",
        mib(grown(pruned)),
        mib(grown(kept))
    );
}
