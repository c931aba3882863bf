//! The checks of [`run_shared`](super::run_shared): two stores on one database, as two processes
//! would open it.

use std::collections::HashSet;

use super::{append, assert_batches_in_one_piece, new, read_tail};
use crate::Storage;

pub(super) async fn two_writers_interleave_and_each_tail_sees_both<S: Storage>(
    first: S,
    second: S,
) {
    assert_eq!(first.database_id(), second.database_id(), "stores on one database share its id");
    let mut first_tail = first.tail(0);
    let mut second_tail = second.tail(0);
    let mut expected = Vec::new();
    let mut batches = Vec::new();
    for round in 0..10 {
        let (a, b) = tokio::join!(
            first.append(vec![new("first", round, &round.to_string())]),
            second.append(vec![new("second", round, &round.to_string()), new("both", round, "0")]),
        );
        batches.push(a.expect("append through the first store"));
        batches.push(b.expect("append through the second store"));
    }
    assert_batches_in_one_piece(&batches, "two writers");
    expected.extend(batches.into_iter().flatten());
    expected.sort_by_key(|version| version.id);
    let ids: HashSet<u64> = expected.iter().map(|version| version.id).collect();
    assert_eq!(ids.len(), 30, "two writers never get the same id");
    assert_eq!(read_tail(&mut first_tail, 30, "the first store's tail").await, expected);
    assert_eq!(read_tail(&mut second_tail, 30, "the second store's tail").await, expected);
    // Reads through either store see what its tail delivered.
    assert_eq!(first.since(0, 100).await.expect("since"), expected, "since through the first");
    assert_eq!(second.since(0, 100).await.expect("since"), expected, "since through the second");
    let latest = second.latest().await.expect("latest");
    assert_eq!(latest.last(), expected.last(), "latest through the second store is up to date");
    first.close().await.expect("close");
    second.close().await.expect("close");
}

pub(super) async fn a_retry_through_another_store_returns_the_original<S: Storage>(
    first: S,
    second: S,
) {
    let stored = append(&first, vec![new("a", 1_000, "1").with_idempotency_key("shared")]).await;
    let retried = append(&second, vec![new("a", 1_500, "1").with_idempotency_key("shared")]).await;
    assert_eq!(retried, stored, "a retry through another store returns the original version");
    assert_eq!(second.since(0, 10).await.expect("since"), stored, "and stores nothing");
    first.close().await.expect("close");
    second.close().await.expect("close");
}
