//! Tests of [`NatsStorage`] against real `nats-server` processes: the conformance suite with
//! pruning on, on a cluster of three, and, on one server, what pruning needs of the stream,
//! horizons shared by every store of a stream, a prune cut short, and reads across purged
//! sequences.

mod server;

use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Duration;

use broker_storage::{Horizon, NewVersion, Pruned, Retention, Storage, Version, conformance};

use self::server::NatsServers;
use crate::{NatsOptions, NatsStorage};

/// Stream names made unique within this test binary.
static STREAMS: AtomicUsize = AtomicUsize::new(0);

fn fresh_stream(what: &str) -> String {
    format!("{what}_{}", STREAMS.fetch_add(1, Ordering::Relaxed))
}

async fn connect(options: NatsOptions) -> NatsStorage {
    let stream = options.stream.clone();
    NatsStorage::connect(options)
        .await
        .unwrap_or_else(|error| panic!("connect to stream {stream}: {error}"))
}

async fn append(store: &NatsStorage, batch: Vec<NewVersion>) -> Vec<Version> {
    store.append(batch).await.expect("append")
}

/// `count` versions of `event`, with timestamps far in the past so that the idempotency
/// window keeps none of them from being pruned.
fn versions(event: &str, count: u64) -> Vec<NewVersion> {
    (0..count).map(|n| NewVersion::new(event, 1_000 + n, n.to_string())).collect()
}

/// On a cluster of three, as deployed: reads may then be answered by a replica that is behind,
/// on appends as on purges.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn nats_storage_passes_the_conformance_suite() {
    let server = NatsServers::cluster().await;
    conformance::run(|| connect(server.options(&fresh_stream("conformance")))).await;
    let server = &server;
    conformance::run_shared(move || async move {
        let options = server.options(&fresh_stream("shared"));
        (connect(options.clone()).await, connect(options).await)
    })
    .await;
}

proptest::proptest! {
    #![proptest_config(proptest::prelude::ProptestConfig::with_cases(8))]

    /// The state at any id, across appends and prunes, is what a brute-force model says.
    #[test]
    fn time_travel_matches_a_model(steps in conformance::strategy::steps()) {
        let runtime = tokio::runtime::Builder::new_multi_thread()
            .worker_threads(2)
            .enable_all()
            .build()
            .expect("runtime");
        let server = NatsServers::single();
        runtime.block_on(async {
            let store = connect(server.options(&fresh_stream("model"))).await;
            conformance::check_steps(&store, &steps).await;
            store.close().await.expect("close");
        });
    }
}

/// Without pruning on, a stream forbids purges, `prune` says what it needs, and that stream can
/// never be pruned; a stream made for pruning is refused without it.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn pruning_is_an_option_of_the_stream() {
    let server = NatsServers::single();
    let mut options = server.options(&fresh_stream("plain"));
    options.prune = false;
    let plain = connect(options.clone()).await;
    append(&plain, versions("a", 3)).await;
    let error = plain.prune("a", Retention::last(1), 10).await.expect_err("pruning is off");
    assert!(error.to_string().contains("NatsOptions::prune"), "{error}");
    assert_eq!(plain.horizons().await.expect("horizons"), [], "nothing was ever pruned");
    assert_eq!(plain.history("a", 0, 10).await.expect("history").len(), 3, "nothing was removed");
    options.prune = true;
    let error = NatsStorage::connect(options).await.expect_err("a stream that forbids purges");
    assert!(error.to_string().contains("NATS never lifts"), "{error}");

    let pruning = server.options(&fresh_stream("pruning"));
    connect(pruning.clone()).await.close().await.expect("close");
    let error = NatsStorage::connect(NatsOptions { prune: false, ..pruning })
        .await
        .expect_err("a stream that allows purges, opened without pruning");
    assert!(error.to_string().contains("--retain"), "{error}");
}

/// Horizons live in NATS: a store on the same stream sees those another recorded, and a store
/// opened without pruning reads them too.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn horizons_are_shared_by_every_store_of_the_stream() {
    let server = NatsServers::single();
    let options = server.options(&fresh_stream("horizons"));
    let first = connect(options.clone()).await;
    let second = connect(options.clone()).await;
    let a = append(&first, versions("a", 4)).await;
    let pruned = first.prune("a", Retention::last(1), 10).await.expect("prune");
    assert_eq!(pruned, Pruned { removed: 3, more: false });
    let horizon = Horizon { event: "a".into(), pruned_through: a[2].id };
    assert_eq!(second.horizons().await.expect("horizons"), std::slice::from_ref(&horizon));
    assert_eq!(second.history("a", 0, 10).await.expect("history"), a[3..]);
    first.close().await.expect("close");
    second.close().await.expect("close");
    let reopened = connect(options).await;
    assert_eq!(reopened.horizons().await.expect("horizons"), [horizon], "they outlive stores");
}

/// A prune that raised its horizon and failed before its purge left versions below the
/// horizon; the next prune of the event removes them first, and counts only what is above.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_prune_cut_short_is_finished_by_the_next() {
    let server = NatsServers::single();
    let stream = fresh_stream("cut");
    let store = connect(server.options(&stream)).await;
    let a = append(&store, versions("a", 5)).await;
    // What a crashed prune leaves: the horizon of `a` over its first two versions, no purge.
    let client = async_nats::connect(server.url()).await.expect("connect a plain client");
    let key = format!("$KV.{stream}_horizons.{}", crate::subject::key("a"));
    let ack = client.request(key, a[1].id.to_string().into()).await.expect("write the horizon");
    assert!(!String::from_utf8_lossy(&ack.payload).contains("error"), "{ack:?}");
    let pruned = store.prune("a", Retention::last(2), 10).await.expect("prune");
    assert_eq!(pruned, Pruned { removed: 1, more: false }, "three versions above the horizon");
    assert_eq!(store.history("a", 0, 10).await.expect("history"), a[3..]);
    let since = store.since(0, 10).await.expect("since");
    assert_eq!(since, a[3..], "what the first prune left is gone");
    let horizon = Horizon { event: "a".into(), pruned_through: a[2].id };
    assert_eq!(store.horizons().await.expect("horizons"), [horizon]);
}

/// Reads and tails across purged sequences: a read that starts or ends in a purged range, a
/// batch that steps over one, a tail that starts before one. They go through a store that did
/// not prune, which knows no horizon to leave versions out by: the stream itself has the holes.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn reads_step_over_purged_sequences() {
    let server = NatsServers::single();
    let options = server.options(&fresh_stream("gaps"));
    let pruner = connect(options.clone()).await;
    // a b a b a b a b: pruning `a` down to its latest leaves holes at 1, 3, 5.
    let batch = (0..8).map(|n| NewVersion::new(["a", "b"][n % 2], 1_000, n.to_string())).collect();
    let all = append(&pruner, batch).await;
    pruner.prune("a", Retention::last(1), 10).await.expect("prune");
    let store = connect(options).await;
    let kept: Vec<Version> =
        all.iter().filter(|v| &*v.event == "b" || v.id == all[6].id).cloned().collect();
    for after in 0..=all[7].id {
        let expected: Vec<Version> = kept.iter().filter(|v| v.id > after).cloned().collect();
        assert_eq!(store.since(after, 100).await.expect("since"), expected, "since({after})");
        let page: Vec<Version> = expected.iter().take(2).cloned().collect();
        assert_eq!(store.since(after, 2).await.expect("since"), page, "since({after}, 2)");
    }
    assert_eq!(store.history("a", 0, 10).await.expect("history"), [all[6].clone()]);
    assert_eq!(store.history("a", all[0].id, 10).await.expect("history"), [all[6].clone()]);
    // Up to 1, 3 and 5, nothing is left of `a`; `b` is as it was.
    for (at, expected) in [(1, vec![]), (3, vec![all[1].clone()]), (5, vec![all[3].clone()])] {
        let at = all[at - 1].id;
        assert_eq!(store.latest_at(at).await.expect("latest_at"), expected, "latest_at({at})");
    }
    let mut tail = store.tail(0);
    let mut delivered = Vec::new();
    while delivered.len() < kept.len() {
        let batch = tokio::time::timeout(Duration::from_secs(20), tail.next())
            .await
            .expect("the tail delivers in time")
            .expect("the tail goes on")
            .expect("the tail reads");
        delivered.extend(batch);
    }
    assert_eq!(delivered, kept, "a tail steps over the purged versions");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn size_is_the_bytes_of_the_stream() {
    let server = NatsServers::single();
    let store = connect(server.options(&fresh_stream("size"))).await;
    let empty = store.size().await.expect("size").expect("a stream knows its size");
    append(&store, vec![NewVersion::new("a", 1, format!("\"{}\"", "x".repeat(10_000)))]).await;
    let full = store.size().await.expect("size").expect("a stream knows its size");
    assert!(full >= empty + 10_000, "{empty} bytes, then {full} after 10 kB");
}
