//! Write-behind: acknowledged versions wait in the overlay before a round writes them into redb's
//! tables. Every read must see them all the same, before, during and after the rounds, and a
//! crash must lose none of them.

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

use broker_storage::{NewVersion, Storage, Version};

use super::{assert_holds, fill, open, temp_dir};
use crate::RedbStorage;
use crate::overlay::{FULL_AT, ROUND_AT};

/// Waits until the overlay of `store` holds fewer versions than a round starts at.
async fn applied(store: &RedbStorage) {
    let deadline = Instant::now() + Duration::from_secs(10);
    while store.overlay_len() >= ROUND_AT.0 {
        assert!(Instant::now() < deadline, "the rounds never caught up");
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn acknowledged_versions_are_read_alike_before_and_after_rounds_write_them_into_redb() {
    let dir = temp_dir();
    let path = dir.path().join("broker.redb");
    let store = open(&path).await;

    // Fewer than a round starts at: they are all in the overlay only.
    let mut stored = fill(&store, &["a", "b", "c"], 240, 30).await;
    assert_eq!(store.overlay_len(), 240, "no round ran yet");
    assert_holds(&store, &stored).await;
    let past = store.latest_at(150).await.expect("latest_at");
    assert_eq!(past.iter().map(|v| v.id).collect::<Vec<_>>(), [148, 149, 150]);

    // Enough to start rounds: some in redb, the rest in the overlay.
    stored.extend(fill(&store, &["a", "b", "d"], 5_000, 50).await);
    applied(&store).await;
    assert!(store.overlay_len() < 5_240, "rounds moved versions into redb");
    assert_holds(&store, &stored).await;
    let past = store.latest_at(150).await.expect("latest_at");
    assert_eq!(past.iter().map(|v| v.id).collect::<Vec<_>>(), [148, 149, 150]);

    // What the overlay held at the crash is in the journal.
    drop(store);
    let store = open(&path).await;
    assert_eq!(store.overlay_len(), 0, "a reopened store has stored the journal's versions");
    assert_holds(&store, &stored).await;
    store.close().await.expect("close");
    let store = open(&path).await;
    assert_holds(&store, &stored).await;
    store.close().await.expect("close");
}

#[tokio::test(flavor = "multi_thread")]
async fn reads_racing_the_rounds_see_every_version_once_and_no_gap() {
    let dir = temp_dir();
    let store = Arc::new(open(&dir.path().join("broker.redb")).await);
    let acknowledged = Arc::new(AtomicU64::new(0));

    let writer = {
        let (store, acknowledged) = (Arc::clone(&store), Arc::clone(&acknowledged));
        tokio::spawn(async move {
            for round in 0..200u64 {
                // 48 a batch, a multiple of the 3 events: each event's ids are 3 apart.
                let batch = (0..48)
                    .map(|n| NewVersion::new(["a", "b", "c"][n % 3], round, n.to_string()))
                    .collect();
                let stored = store.append(batch).await.expect("append");
                let last = stored.last().expect("a version").id;
                acknowledged.store(last, Ordering::Release);
            }
        })
    };
    let mut reads = 0;
    while !writer.is_finished() || reads == 0 {
        let before = acknowledged.load(Ordering::Acquire);
        let log = store.since(0, usize::MAX).await.expect("since");
        let ids: Vec<u64> = log.iter().map(|version| version.id).collect();
        assert!(ids.iter().copied().eq(1..=ids.len() as u64), "the log has no gap or repeat");
        assert!(ids.len() as u64 >= before, "every acknowledged version is read");
        let latest = store.latest().await.expect("latest");
        assert!(latest.len() == 3 || (before == 0 && latest.is_empty()), "{latest:?}");
        let history = store.history("b", 0, usize::MAX).await.expect("history");
        assert!(history.windows(2).all(|w| w[1].id == w[0].id + 3), "b's history has no gap");
        reads += 1;
    }
    writer.await.expect("the writer");
    let log: Vec<Version> = store.since(0, usize::MAX).await.expect("since");
    assert_eq!(log.len(), 9_600);
    assert!(reads > 1, "reads ran while the rounds did");
    store.close().await.expect("close");
}

#[tokio::test(flavor = "multi_thread")]
async fn appends_faster_than_the_rounds_are_held_back_and_the_overlay_stays_bounded() {
    let dir = temp_dir();
    let path = dir.path().join("broker.redb");
    let store = open(&path).await;
    const BATCH: usize = 2_000;
    let mut most = 0;
    let mut stored = Vec::new();
    for round in 0..40 {
        let batch = (0..BATCH).map(|n| NewVersion::new(["a", "b"][n % 2], round, n.to_string()));
        stored.extend(store.append(batch.collect()).await.expect("append"));
        most = most.max(store.overlay_len());
    }
    println!("the overlay held at most {most} versions after an append");
    assert!(most <= FULL_AT.0 + BATCH, "the overlay grew to {most} versions");
    assert_holds(&store, &stored).await;
    store.close().await.expect("close");
}
