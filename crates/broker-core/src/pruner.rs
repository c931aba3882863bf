//! The task that applies the retention rules in the background, and keeps the engine's copy of
//! the horizons and the database size up to date.
//!
//! Each round visits the events a rule governs and prunes each in steps of at most
//! [`PRUNE_STEP`] versions: one short storage call at a time, so that commits never wait long
//! behind it. An event is visited again the next round while it holds versions kept only for
//! the idempotency window, once it has new versions, and otherwise now and then (see
//! `revisit_after`), since versions may have aged out.

use std::collections::HashMap;
use std::sync::Arc;
use std::time::{Duration, Instant};

use crate::clock::now_millis;
use crate::erased::DynStorage;
use crate::horizons::Horizons;
use crate::metrics::Metrics;
use crate::retention::{RetentionRule, rule_for};
use crate::state::State;

/// The most versions one storage call prunes.
pub(crate) const PRUNE_STEP: usize = 256;

/// How often the horizons and the size are read from the storage when no rule is set: other
/// nodes sharing the database may prune.
const REFRESH_INTERVAL: Duration = Duration::from_secs(5);

/// An event as the last round left it: its latest id then, and when it was visited.
struct Visit {
    latest: u64,
    at: Instant,
}

/// Runs until the task is aborted (when the broker closes).
pub(crate) async fn run(
    storage: Arc<dyn DynStorage>,
    state: Arc<State>,
    horizons: Arc<Horizons>,
    metrics: Arc<Metrics>,
    rules: Arc<[RetentionRule]>,
    interval: Duration,
) {
    let interval = if rules.is_empty() { REFRESH_INTERVAL } else { interval };
    let mut ticks = tokio::time::interval(interval);
    ticks.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    let mut visits: HashMap<Box<str>, Visit> = HashMap::new();
    let mut failing = false;
    loop {
        ticks.tick().await;
        let round =
            prune_round(&*storage, &state, &horizons, &metrics, &rules, interval, &mut visits)
                .await;
        match round {
            Ok(()) if failing => {
                tracing::info!("pruning works again");
                failing = false;
            }
            Ok(()) => {}
            Err(error) if !failing => {
                tracing::warn!(%error, "pruning failed; it is tried again every round");
                failing = true;
            }
            Err(_) => {}
        }
        horizons.end();
        match storage.horizons().await {
            Ok(now) => horizons.replace(now),
            Err(error) => tracing::debug!(%error, "the horizons could not be read"),
        }
        if let Ok(Some(bytes)) = storage.size().await {
            metrics.database_bytes.set(bytes as f64);
        }
    }
}

async fn prune_round(
    storage: &dyn DynStorage,
    state: &State,
    horizons: &Horizons,
    metrics: &Metrics,
    rules: &[RetentionRule],
    interval: Duration,
    visits: &mut HashMap<Box<str>, Visit>,
) -> Result<(), broker_storage::StorageError> {
    if rules.is_empty() {
        return Ok(());
    }
    for (event, latest) in state.latest_ids() {
        let Some(rule) = rule_for(rules, &event) else { continue };
        if let Some(visit) = visits.get(&event)
            && visit.latest == latest
            && visit.at.elapsed() < revisit_after(rule, interval)
        {
            continue;
        }
        horizons.begin(&event, latest);
        let done = loop {
            let pruned = storage.prune(&event, rule.retention(now_millis()), PRUNE_STEP).await?;
            metrics.pruned.increment(pruned.removed as u64);
            if !pruned.more {
                break true;
            }
            if pruned.removed < PRUNE_STEP {
                // Versions kept for the idempotency window: the next round tries again.
                break false;
            }
            // Let inserts and reads run between two steps.
            tokio::task::yield_now().await;
        };
        if done {
            visits.insert(event, Visit { latest, at: Instant::now() });
        } else {
            visits.remove(&event);
        }
    }
    Ok(())
}

/// How long after a visit that left nothing to prune an event without new versions is visited
/// again: under a rule that bounds age, versions that were young then may have aged out since.
/// Every 60 rounds, or a tenth of the age bound if sooner (at least a second).
fn revisit_after(rule: &RetentionRule, interval: Duration) -> Duration {
    let age = rule.kept_age().map(|age| (age / 10).max(Duration::from_secs(1)));
    (interval * 60).min(age.unwrap_or(Duration::MAX))
}
