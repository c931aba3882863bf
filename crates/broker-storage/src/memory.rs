//! A backend that keeps every version in memory: for tests, examples and embedding where
//! durability is not wanted. Everything is lost when it is dropped.

use std::collections::HashMap;
use std::sync::{Mutex, MutexGuard};

use uuid::Uuid;

use crate::{NewVersion, Storage, StorageError, Version};

/// A [`Storage`] that keeps everything in memory.
///
/// "Durable" here means "for the life of this value": the backend is exact in every other
/// contract of the trait, and passes the conformance suite.
#[derive(Debug)]
pub struct MemoryStorage {
    database_id: Uuid,
    state: Mutex<State>,
}

#[derive(Debug, Default)]
struct State {
    closed: bool,
    /// Every version in id order. Ids are dense, so the version with id `n` is at `n - 1`.
    log: Vec<Version>,
    /// For each event, the ids of its versions in id order.
    by_event: HashMap<String, Vec<u64>>,
}

impl MemoryStorage {
    /// An empty store with a fresh database identity.
    pub fn new() -> MemoryStorage {
        MemoryStorage { database_id: Uuid::new_v4(), state: Mutex::default() }
    }

    /// Locks the state, failing once the store is closed.
    fn open_state(&self) -> Result<MutexGuard<'_, State>, StorageError> {
        // A poisoned lock means a panic happened while the state was borrowed; every mutation
        // below completes without panicking, so the data behind it is still consistent.
        let state = self.state.lock().unwrap_or_else(|poison| poison.into_inner());
        if state.closed { Err(StorageError::Closed) } else { Ok(state) }
    }
}

impl Default for MemoryStorage {
    fn default() -> MemoryStorage {
        MemoryStorage::new()
    }
}

impl State {
    fn version(&self, id: u64) -> &Version {
        &self.log[(id - 1) as usize]
    }
}

impl Storage for MemoryStorage {
    fn database_id(&self) -> Uuid {
        self.database_id
    }

    async fn append(&self, batch: Vec<NewVersion>) -> Result<Vec<Version>, StorageError> {
        let mut state = self.open_state()?;
        let mut stored = Vec::with_capacity(batch.len());
        for new in batch {
            let id = state.log.len() as u64 + 1;
            let version = new.with_id(id);
            state.by_event.entry(version.event.clone()).or_default().push(id);
            state.log.push(version.clone());
            stored.push(version);
        }
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
        let state = self.open_state()?;
        let start = usize::try_from(after).unwrap_or(usize::MAX).min(state.log.len());
        Ok(state.log[start..].iter().take(limit).cloned().collect())
    }

    async fn close(&self) -> Result<(), StorageError> {
        let mut state = self.state.lock().unwrap_or_else(|poison| poison.into_inner());
        state.closed = true;
        Ok(())
    }
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
}
