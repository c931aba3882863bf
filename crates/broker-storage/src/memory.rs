//! A backend that keeps every version in memory: for tests, examples and embedding where
//! durability is not wanted. Everything is lost when it is dropped.

use std::collections::{BTreeMap, HashMap};
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::Duration;

use uuid::Uuid;

use crate::{
    DEFAULT_IDEMPOTENCY_WINDOW, Horizon, LocalTails, NewVersion, Pruned, Retention, Storage,
    StorageError, Tail, Version,
};

/// A [`Storage`] that keeps everything in memory.
///
/// "Durable" here means "for the life of this value": the backend is exact in every other
/// contract of the trait, and passes the conformance suite.
#[derive(Debug)]
pub struct MemoryStorage {
    database_id: Uuid,
    /// How long an idempotency key is remembered, from its version's timestamp.
    idempotency_window: Duration,
    /// Shared with the tails, which read it to catch up.
    state: Arc<Mutex<State>>,
    tails: LocalTails,
}

#[derive(Debug, Default)]
struct State {
    closed: bool,
    /// Every stored version, by id.
    log: BTreeMap<u64, Version>,
    /// The id of the last version stored; pruning never lowers it.
    last_id: u64,
    /// For each event, the ids of its stored versions in id order.
    by_event: HashMap<Arc<str>, Vec<u64>>,
    /// The id stored under each idempotency key.
    keys: HashMap<String, u64>,
    /// For each pruned event, the greatest id pruned of it.
    horizons: HashMap<String, u64>,
}

impl MemoryStorage {
    /// An empty store with a fresh database identity, and the default idempotency window.
    pub fn new() -> MemoryStorage {
        MemoryStorage::with_idempotency_window(DEFAULT_IDEMPOTENCY_WINDOW)
    }

    /// An empty store that remembers idempotency keys for `window`.
    pub fn with_idempotency_window(window: Duration) -> MemoryStorage {
        MemoryStorage {
            database_id: Uuid::new_v4(),
            idempotency_window: window,
            state: Arc::default(),
            tails: LocalTails::new(0),
        }
    }

    /// Locks the state, failing once the store is closed.
    fn open_state(&self) -> Result<MutexGuard<'_, State>, StorageError> {
        lock_open(&self.state)
    }
}

/// Locks `state`, failing once the store is closed.
fn lock_open(state: &Mutex<State>) -> Result<MutexGuard<'_, State>, StorageError> {
    // A poisoned lock means a panic happened while the state was borrowed; every mutation
    // below completes without panicking, so the data behind it is still consistent.
    let state = state.lock().unwrap_or_else(|poison| poison.into_inner());
    if state.closed { Err(StorageError::Closed) } else { Ok(state) }
}

impl Default for MemoryStorage {
    fn default() -> MemoryStorage {
        MemoryStorage::new()
    }
}

impl State {
    fn version(&self, id: u64) -> &Version {
        &self.log[&id]
    }

    /// The version stored under `new`'s idempotency key within `window` of its timestamp.
    fn stored_under_key(&self, new: &NewVersion, window: Duration) -> Option<&Version> {
        let id = *self.keys.get(new.idempotency_key.as_deref()?)?;
        // A version is pruned only once its key's window has passed, so this finds it within.
        let stored = self.log.get(&id)?;
        let age = new.timestamp.saturating_sub(stored.timestamp);
        (u128::from(age) < window.as_millis()).then_some(stored)
    }

    fn since(&self, after: u64, limit: usize) -> Vec<Version> {
        let start = after.saturating_add(1);
        self.log.range(start..).take(limit).map(|(_, version)| version.clone()).collect()
    }
}

impl Storage for MemoryStorage {
    fn database_id(&self) -> Uuid {
        self.database_id
    }

    async fn append(&self, batch: Vec<NewVersion>) -> Result<Vec<Version>, StorageError> {
        let mut state = self.open_state()?;
        let mut stored = Vec::with_capacity(batch.len());
        let mut added = Vec::with_capacity(batch.len());
        for new in batch {
            if let Some(original) = state.stored_under_key(&new, self.idempotency_window) {
                stored.push(original.clone());
                continue;
            }
            state.last_id += 1;
            let id = state.last_id;
            if let Some(key) = &new.idempotency_key {
                state.keys.insert(key.clone(), id);
            }
            let version = new.with_id(id);
            state.by_event.entry(version.event.clone()).or_default().push(id);
            state.log.insert(id, version.clone());
            added.push(version.clone());
            stored.push(version);
        }
        // Under the state lock, so that batches reach the tails in id order.
        self.tails.publish(&added);
        Ok(stored)
    }

    async fn latest(&self) -> Result<Vec<Version>, StorageError> {
        let state = self.open_state()?;
        let mut latest: Vec<Version> = state
            .by_event
            .values()
            .filter_map(|ids| ids.last())
            .map(|&id| state.version(id).clone())
            .collect();
        latest.sort_unstable_by_key(|version| version.id);
        Ok(latest)
    }

    async fn history(
        &self,
        event: &str,
        after: u64,
        limit: usize,
    ) -> Result<Vec<Version>, StorageError> {
        let state = self.open_state()?;
        let Some(ids) = state.by_event.get(event) else { return Ok(Vec::new()) };
        let start = ids.partition_point(|&id| id <= after);
        Ok(ids[start..].iter().take(limit).map(|&id| state.version(id).clone()).collect())
    }

    async fn since(&self, after: u64, limit: usize) -> Result<Vec<Version>, StorageError> {
        Ok(self.open_state()?.since(after, limit))
    }

    async fn latest_at(&self, at: u64) -> Result<Vec<Version>, StorageError> {
        let state = self.open_state()?;
        let mut latest: Vec<Version> = state
            .by_event
            .values()
            .filter_map(|ids| ids[..ids.partition_point(|&id| id <= at)].last())
            .map(|&id| state.version(id).clone())
            .collect();
        latest.sort_unstable_by_key(|version| version.id);
        Ok(latest)
    }

    async fn prune(
        &self,
        event: &str,
        retention: Retention,
        limit: usize,
    ) -> Result<Pruned, StorageError> {
        let mut state = self.open_state()?;
        let state = &mut *state;
        let Some(ids) = state.by_event.get_mut(event) else { return Ok(Pruned::default()) };
        let window_start = now_millis().saturating_sub(millis(self.idempotency_window));
        let prunable = ids.len().saturating_sub(1);
        let mut removed = 0;
        let mut more = false;
        for (index, &id) in ids[..prunable].iter().enumerate() {
            let version = &state.log[&id];
            let newer = (ids.len() - index - 1) as u64;
            if !retention.releases(newer, version.timestamp) {
                break;
            }
            if removed == limit || version.timestamp >= window_start {
                more = true;
                break;
            }
            removed += 1;
        }
        for id in ids.drain(..removed) {
            state.log.remove(&id);
            state.horizons.insert(event.to_owned(), id);
        }
        Ok(Pruned { removed, more })
    }

    async fn horizons(&self) -> Result<Vec<Horizon>, StorageError> {
        let state = self.open_state()?;
        Ok(state
            .horizons
            .iter()
            .map(|(event, &id)| Horizon { event: event.clone(), pruned_through: id })
            .collect())
    }

    fn tail(&self, after: u64) -> Tail {
        let state = Arc::clone(&self.state);
        self.tails.tail(after, move |after, limit| {
            let page = lock_open(&state).map(|state| state.since(after, limit));
            std::future::ready(page)
        })
    }

    async fn close(&self) -> Result<(), StorageError> {
        let mut state = self.state.lock().unwrap_or_else(|poison| poison.into_inner());
        state.closed = true;
        self.tails.close();
        Ok(())
    }
}

/// Milliseconds since the Unix epoch, by the system clock.
fn now_millis() -> u64 {
    let since_epoch = std::time::UNIX_EPOCH.elapsed().unwrap_or_default();
    millis(since_epoch)
}

fn millis(duration: Duration) -> u64 {
    u64::try_from(duration.as_millis()).unwrap_or(u64::MAX)
}

#[cfg(test)]
mod tests {
    use super::MemoryStorage;

    #[tokio::test]
    async fn memory_storage_passes_the_conformance_suite() {
        crate::conformance::run(|| async { MemoryStorage::new() }).await;
    }

    #[tokio::test]
    async fn a_shared_store_passes_the_conformance_suite() {
        crate::conformance::run(|| async { std::sync::Arc::new(MemoryStorage::new()) }).await;
    }

    #[tokio::test]
    async fn two_handles_on_one_store_share_its_log() {
        crate::conformance::run_shared(|| async {
            let store = std::sync::Arc::new(MemoryStorage::new());
            (store.clone(), store)
        })
        .await;
    }

    #[tokio::test]
    async fn keys_are_forgotten_after_the_window() {
        use crate::{NewVersion, Storage};
        let store = MemoryStorage::with_idempotency_window(std::time::Duration::from_secs(60));
        let keyed = |timestamp| NewVersion::new("a", timestamp, "1").with_idempotency_key("k");
        let first = store.append(vec![keyed(1_000)]).await.expect("append");
        let within = store.append(vec![keyed(60_999)]).await.expect("append");
        assert_eq!(within, first, "59.999 s later the key still names the first version");
        let after = store.append(vec![keyed(61_000)]).await.expect("append");
        assert!(after[0].id > first[0].id, "60 s later the key stores a new version");
    }

    proptest::proptest! {
        #![proptest_config(proptest::prelude::ProptestConfig::with_cases(64))]

        /// The state at any id, across appends and prunes, is what a brute-force model says.
        #[test]
        fn time_travel_matches_a_model(steps in crate::conformance::strategy::steps()) {
            let runtime = tokio::runtime::Builder::new_current_thread().build().expect("runtime");
            runtime.block_on(crate::conformance::check_steps(&MemoryStorage::new(), &steps));
        }
    }
}
