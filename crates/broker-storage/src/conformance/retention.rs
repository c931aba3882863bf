//! The checks of pruning and of reading the past: [`Storage::prune`], [`Storage::horizons`] and
//! [`Storage::latest_at`], against a model of the log kept beside the store.

use std::collections::BTreeMap;

use super::{append, new};
use crate::{Horizon, NewVersion, Pruned, Retention, Storage, StorageError, Version};

/// One step of [`check_steps`]: a batch appended, or one event pruned.
#[derive(Clone, Debug)]
pub enum Step {
    /// Appends a batch of versions, each given as the event (`e0`, `e1`, …, by its number) and
    /// its timestamp.
    Append(Vec<(u8, u64)>),
    /// Prunes one event.
    Prune {
        /// The event, by its number.
        event: u8,
        /// What to keep.
        retention: Retention,
        /// The most versions the call may remove.
        limit: usize,
    },
}

/// Runs `steps` against `store`, which must be empty, and after each one checks every read of
/// the past against a model of the log: [`latest_at`](Storage::latest_at) at every id (and
/// before the first, and after the last), [`latest`](Storage::latest),
/// [`horizons`](Storage::horizons), every event's [`history`](Storage::history), and what each
/// [`prune`](Storage::prune) reports.
///
/// Timestamps should be far in the past (a few thousand milliseconds since the epoch), so that
/// the idempotency window keeps nothing from being pruned.
///
/// # Panics
///
/// When the store and the model disagree; the message says on what.
pub async fn check_steps<S: Storage>(store: &S, steps: &[Step]) {
    let mut model = Model::default();
    for (index, step) in steps.iter().enumerate() {
        match step {
            Step::Append(batch) => {
                let batch: Vec<NewVersion> = batch
                    .iter()
                    .map(|&(event, timestamp)| new(&name(event), timestamp, &index.to_string()))
                    .collect();
                model.stored.extend(append(store, batch).await);
            }
            Step::Prune { event, retention, limit } => {
                let event = name(*event);
                let pruned = store.prune(&event, *retention, *limit).await.expect("prune");
                let expected = model.prune(&event, *retention, *limit);
                assert_eq!(
                    pruned, expected,
                    "step {index}: prune({event:?}, {retention:?}, {limit})"
                );
            }
        }
        model.check(store, &format!("after step {index} ({step:?})")).await;
    }
}

fn name(event: u8) -> String {
    format!("e{event}")
}

/// What the store must hold: every version stored and not pruned, and the horizons.
#[derive(Default)]
struct Model {
    stored: Vec<Version>,
    horizons: BTreeMap<String, u64>,
}

impl Model {
    fn history(&self, event: &str) -> Vec<Version> {
        self.stored.iter().filter(|version| &*version.event == event).cloned().collect()
    }

    fn prune(&mut self, event: &str, retention: Retention, limit: usize) -> Pruned {
        let history = self.history(event);
        let mut removed = Vec::new();
        let mut more = false;
        for (index, version) in history.iter().enumerate().take(history.len().saturating_sub(1)) {
            let newer = (history.len() - index - 1) as u64;
            if !retention.releases(newer, version.timestamp) {
                break;
            }
            if removed.len() == limit {
                more = true;
                break;
            }
            removed.push(version.id);
        }
        if let Some(&last) = removed.last() {
            self.horizons.insert(event.to_owned(), last);
        }
        self.stored.retain(|version| !removed.contains(&version.id));
        Pruned { removed: removed.len(), more }
    }

    fn latest_at(&self, at: u64) -> Vec<Version> {
        let mut latest: BTreeMap<&str, &Version> = BTreeMap::new();
        for version in self.stored.iter().filter(|version| version.id <= at) {
            latest.insert(&version.event, version);
        }
        let mut latest: Vec<Version> = latest.into_values().cloned().collect();
        latest.sort_by_key(|version| version.id);
        latest
    }

    async fn check<S: Storage>(&self, store: &S, what: &str) {
        let last = self.stored.iter().map(|version| version.id).max().unwrap_or(0);
        let mut points: Vec<u64> = self.stored.iter().map(|version| version.id).collect();
        points.extend([0, last + 1, u64::MAX]);
        points.extend(self.horizons.values().copied());
        for at in points {
            let found = store.latest_at(at).await.expect("latest_at");
            assert_eq!(found, self.latest_at(at), "{what}: latest_at({at})");
        }
        assert_eq!(
            store.latest().await.expect("latest"),
            self.latest_at(u64::MAX),
            "{what}: latest"
        );
        let mut horizons: Vec<Horizon> = store.horizons().await.expect("horizons");
        horizons.sort_by(|a, b| a.event.cmp(&b.event));
        let expected: Vec<Horizon> = self
            .horizons
            .iter()
            .map(|(event, &id)| Horizon { event: event.clone(), pruned_through: id })
            .collect();
        assert_eq!(horizons, expected, "{what}: horizons");
        for event in (0..4).map(name) {
            let history = store.history(&event, 0, 10_000).await.expect("history");
            assert_eq!(history, self.history(&event), "{what}: history({event:?})");
        }
        assert_eq!(store.since(0, 10_000).await.expect("since"), self.stored, "{what}: since(0)");
    }
}

/// A small generator, so that the suite's random runs are the same on every backend and every
/// run, and need no dependency.
struct Rng(u64);

impl Rng {
    fn below(&mut self, bound: u64) -> u64 {
        // xorshift64*: plenty for picking steps.
        self.0 ^= self.0 >> 12;
        self.0 ^= self.0 << 25;
        self.0 ^= self.0 >> 27;
        self.0.wrapping_mul(0x2545_F491_4F6C_DD1D) % bound
    }
}

/// Random steps over four events, from `seed`: appends of 1 to 4 versions with increasing
/// timestamps, and prunes by count, by time, both, or neither.
pub(super) fn random_steps(seed: u64, count: usize) -> Vec<Step> {
    let mut rng = Rng(seed | 1);
    let mut clock = 1_000;
    (0..count)
        .map(|_| {
            if rng.below(3) > 0 {
                let len = 1 + rng.below(4);
                Step::Append(
                    (0..len)
                        .map(|_| {
                            clock += rng.below(3);
                            (rng.below(4) as u8, clock)
                        })
                        .collect(),
                )
            } else {
                let keep_last = (rng.below(2) == 0).then(|| rng.below(4));
                let keep_since = (rng.below(2) == 0).then(|| clock.saturating_sub(rng.below(20)));
                Step::Prune {
                    event: rng.below(4) as u8,
                    retention: Retention { keep_last, keep_since },
                    limit: 1 + rng.below(3) as usize,
                }
            }
        })
        .collect()
}

pub(super) async fn time_travel_matches_a_model<S: Storage>(store: S, other: S) {
    check_steps(&store, &random_steps(0x5EED, 40)).await;
    check_steps(&other, &random_steps(0xB0A7, 40)).await;
}

pub(super) async fn prune_removes_the_oldest_and_keeps_the_latest<S: Storage>(store: S, _: S) {
    let a = append(&store, (0..5).map(|n| new("a", 1_000 + n, &n.to_string())).collect()).await;
    let b = append(&store, vec![new("b", 1_000, "0")]).await;
    let pruned = store.prune("a", Retention::last(2), 100).await.expect("prune");
    assert_eq!(pruned, Pruned { removed: 3, more: false }, "keep_last 2 of 5 removes 3");
    assert_eq!(store.history("a", 0, 10).await.expect("history"), a[3..], "the newest 2 stay");
    let horizon = Horizon { event: "a".into(), pruned_through: a[2].id };
    assert_eq!(store.horizons().await.expect("horizons"), [horizon], "the horizon is kept");
    let everything = Retention { keep_last: Some(0), keep_since: Some(u64::MAX) };
    assert_eq!(
        store.prune("b", everything, 100).await.expect("prune"),
        Pruned::default(),
        "an event's latest version is never pruned"
    );
    let pruned = store.prune("a", everything, 100).await.expect("prune");
    assert_eq!(pruned.removed, 1, "all but the latest go");
    assert_eq!(store.history("a", 0, 10).await.expect("history"), a[4..]);
    assert_eq!(store.latest().await.expect("latest"), [a[4].clone(), b[0].clone()]);
    assert_eq!(
        store.prune("never stored", everything, 100).await.expect("prune"),
        Pruned::default(),
        "an event never stored has nothing to prune"
    );
    let since = store.since(0, 100).await.expect("since");
    assert_eq!(since, [a[4].clone(), b[0].clone()], "a replay skips pruned versions");
}

pub(super) async fn prune_stops_at_its_limit<S: Storage>(store: S, _: S) {
    let a = append(&store, (0..6).map(|n| new("a", 1_000 + n, "0")).collect()).await;
    let step = store.prune("a", Retention::last(1), 2).await.expect("prune");
    assert_eq!(step, Pruned { removed: 2, more: true }, "a step removes at most `limit`");
    let step = store.prune("a", Retention::last(1), 2).await.expect("prune");
    assert_eq!(step, Pruned { removed: 2, more: true });
    let step = store.prune("a", Retention::last(1), 2).await.expect("prune");
    assert_eq!(step, Pruned { removed: 1, more: false }, "the last step says nothing is left");
    assert_eq!(store.history("a", 0, 10).await.expect("history"), a[5..]);
}

pub(super) async fn prune_by_time_keeps_younger_versions<S: Storage>(store: S, _: S) {
    let a = append(&store, (0..4).map(|n| new("a", 1_000 * (n + 1), "0")).collect()).await;
    let pruned = store.prune("a", Retention::since(2_500), 100).await.expect("prune");
    assert_eq!(pruned.removed, 2, "versions stored before 2,500 go");
    assert_eq!(store.history("a", 0, 10).await.expect("history"), a[2..]);
    let both = Retention { keep_last: Some(1), keep_since: Some(0) };
    assert_eq!(store.prune("a", both, 100).await.expect("prune").removed, 1, "either bound prunes");
}

pub(super) async fn prune_spares_the_idempotency_window<S: Storage>(store: S, _: S) {
    let now = std::time::UNIX_EPOCH.elapsed().expect("a clock after 1970").as_millis() as u64;
    let keyed = |n: u64| new("a", now, &n.to_string()).with_idempotency_key(format!("k{n}"));
    let stored = append(&store, (0..3).map(keyed).collect()).await;
    let pruned = store.prune("a", Retention::last(1), 100).await.expect("prune");
    let kept = Pruned { removed: 0, more: true };
    assert_eq!(pruned, kept, "versions within the idempotency window stay, and are left to do");
    assert_eq!(
        store.append(vec![keyed(0)]).await.expect("retry"),
        stored[..1],
        "a retry finds them"
    );
}

pub(super) async fn a_closed_store_refuses_the_past<S: Storage>(store: S, _: S) {
    store.close().await.expect("close");
    let latest_at = store.latest_at(1).await;
    assert!(matches!(latest_at, Err(StorageError::Closed)), "latest_at after close: {latest_at:?}");
    let prune = store.prune("a", Retention::last(1), 1).await;
    assert!(matches!(prune, Err(StorageError::Closed)), "prune after close: {prune:?}");
    let horizons = store.horizons().await;
    assert!(matches!(horizons, Err(StorageError::Closed)), "horizons after close: {horizons:?}");
}

/// Random [`Step`]s for a backend's own property tests (the `proptest` feature).
#[cfg(any(test, feature = "proptest"))]
pub mod strategy {
    use proptest::prelude::*;

    use super::Step;
    use crate::Retention;

    /// Up to 40 steps over four events, timestamps from 1,000 ms and increasing: appends of 1 to
    /// 4 versions, and prunes by count, by time, both or neither, with limits of 1 to 3.
    pub fn steps() -> impl Strategy<Value = Vec<Step>> {
        let step = prop_oneof![
            2 => proptest::collection::vec((0u8..4, 0u64..3), 1..5).prop_map(Step::Append),
            1 => (0u8..4, proptest::option::of(0u64..4), proptest::option::of(0u64..60), 1usize..4)
                .prop_map(|(event, keep_last, keep_since, limit)| Step::Prune {
                    event,
                    retention: Retention { keep_last, keep_since },
                    limit,
                }),
        ];
        proptest::collection::vec(step, 1..40).prop_map(|mut steps| {
            // Timestamps come as increments; make them a clock from 1,000, and `keep_since`
            // relative to it.
            let mut clock = 1_000;
            for step in &mut steps {
                match step {
                    Step::Append(batch) => {
                        for (_, timestamp) in batch {
                            clock += *timestamp;
                            *timestamp = clock;
                        }
                    }
                    Step::Prune { retention, .. } => {
                        retention.keep_since =
                            retention.keep_since.map(|back| clock - back.min(clock));
                    }
                }
            }
            steps
        })
    }
}
