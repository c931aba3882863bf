//! The blocking work of each storage operation: one redb transaction each. `store.rs` runs these
//! on tokio's blocking pool, never on an async thread, and catches the panics redb raises on
//! damaged data.

use std::collections::HashMap;
use std::sync::Arc;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use broker_storage::{NewVersion, StorageError, Version};
use redb::{
    Database, Durability, ReadTransaction, ReadableDatabase, ReadableTable, Table, WriteTransaction,
};

use crate::blocks::{self, BLOCKS, Blocks, Reader, Row};
use crate::error::{Fault, from_io, from_redb, from_redb_write};
use crate::index::{self, EventIds};
use crate::journal::{self, Checkpoint, Journal, Record, WriteError};
use crate::overlay::{Overlay, Pending, ROUND_MAX};
use crate::retention;
use crate::schema::{EVENT_IDS, KEY_TIMES, KEYS, LATEST};
use crate::space::{self, Space};

/// What an append returns: the version for each new version of the batch, in batch order, and
/// the versions it stored.
#[derive(Debug)]
pub(crate) struct Appended {
    /// One per new version, in batch order: the version it became, or the version stored under
    /// its idempotency key.
    pub(crate) versions: Vec<Version>,
    /// The versions the batch stored, each once, in id order: what the tails have not seen yet.
    /// Shared with the overlay, which holds them until a round writes their rows.
    pub(crate) stored: Arc<[Version]>,
}

/// Expired idempotency keys deleted per batch a round writes, beyond twice the keys the round
/// stores. Twice as many as come in, so that the expired ones go faster than new ones arrive; a
/// few more, so that a store no longer given keys still empties its tables.
const PRUNE_EXTRA: usize = 32;

/// Stores `batch` once `space` has found enough free space for it: its record is written to
/// `journal` and synced, and its versions go to the `overlay`, which reads join from then on; a
/// later round writes their rows into redb (`apply`). When a checkpoint is due, the journal
/// switches to its next generation, and the caller runs the checkpoint of the one before
/// ([`Journal::take_checkpoint`], [`settle`]); the append runs a checkpoint itself only when the
/// last one has not settled and the record does not fit, or disk space runs short. A new version
/// whose idempotency key was stored less than `window` before its timestamp is not stored: the
/// version stored under the key comes back.
///
/// Ids continue from the overlay's last id. Appends run one at a time (the journal is held), so
/// two batches never take the same ids, and a batch whose record is not written takes none.
pub(crate) fn append(
    db: &Database,
    space: &Space,
    window: Duration,
    batch: Vec<NewVersion>,
    journal: &mut Journal,
    overlay: &Overlay,
) -> Result<Appended, Fault> {
    let len = journal::record_len(
        batch.iter().map(|new| (&*new.event, &*new.data, new.idempotency_key.as_deref())),
    );
    // Before anything is written, so that a refused batch writes nothing at all.
    let free = space.check(space::needed_for(len))?;
    // A checkpoint writes what the journal holds into redb's file: it comes early while that
    // fits twice over, rather than fail for lack of space later.
    let short = free.is_some_and(|free| space::needed_for(journal.pending() + len) > free / 2);
    if short {
        checkpoint(db, journal, overlay, window)?;
    } else if journal.checkpoint_due(len) {
        if journal.can_switch(len) {
            // Every version so far is in the generation the switch closes.
            journal.switch(overlay.last_id()).map_err(|error| Fault::new(error, true))?;
        } else if !journal.fits(len) {
            // The last checkpoint is still running, and the record has no room beside it.
            checkpoint(db, journal, overlay, window)?;
        }
    }
    // Rounds that fall behind hold appends back a round at a time, not all at once.
    while overlay.full() {
        overlay.apply_round(ROUND_MAX, |batches| apply(db, window, batches))?;
    }
    let mut originals = originals(db, overlay, window, &batch)?.into_iter();
    let after = overlay.last_id();
    let mut id = after;
    let mut record = Record::with_capacity(usize::try_from(len).unwrap_or(usize::MAX));
    let mut stored = Vec::with_capacity(batch.len());
    let mut keys = Vec::with_capacity(batch.len());
    let mut appended: Vec<Version> = Vec::with_capacity(batch.len());
    // Keys used earlier in this batch, with where their version is in `appended`.
    let mut in_batch: HashMap<String, usize> = HashMap::new();
    for new in batch {
        if let Some(original) = originals.next().flatten() {
            appended.push(original);
            continue;
        }
        if let Some(&earlier) = new.idempotency_key.as_ref().and_then(|key| in_batch.get(key)) {
            appended.push(appended[earlier].clone());
            continue;
        }
        id = id.checked_add(1).ok_or_else(|| StorageError::backend("version ids are exhausted"))?;
        let key = new.idempotency_key.clone();
        record.push(id, new.timestamp, &new.event, &new.data, key.as_deref());
        if let Some(key) = &key {
            in_batch.insert(key.clone(), appended.len());
        }
        let version = new.with_id(id);
        stored.push(version.clone());
        keys.push(key);
        appended.push(version);
    }
    let appended = Appended { versions: appended, stored: stored.into() };
    if record.is_empty() {
        // Every version came back under its key.
        return Ok(appended);
    }
    let record = record.finish(journal.generation());
    journal.write(&record).map_err(|error| match error {
        WriteError::NotWritten(error) => Fault::new(from_io(error), false),
        WriteError::Unknown(error) => unknown(error),
    })?;
    journal.advance(record.len());
    overlay.push(Pending { versions: Arc::clone(&appended.stored), keys });
    Ok(appended)
}

/// For each version of `batch`, the version stored under its idempotency key within `window`
/// before its timestamp, if any; empty when no version of the batch has a key.
///
/// The overlay is asked first, redb after: a version applied in between is in redb by then.
fn originals(
    db: &Database,
    overlay: &Overlay,
    window: Duration,
    batch: &[NewVersion],
) -> Result<Vec<Option<Version>>, Fault> {
    if batch.iter().all(|new| new.idempotency_key.is_none()) {
        return Ok(Vec::new());
    }
    let mut found: Vec<Option<Version>> = batch
        .iter()
        .map(|new| {
            let key = new.idempotency_key.as_deref()?;
            overlay.keyed(key).filter(|original| within(window, original.timestamp, new.timestamp))
        })
        .collect();
    // A batch of retries whose originals all wait in the overlay has nothing to read in redb.
    if batch.iter().zip(&found).all(|(new, found)| new.idempotency_key.is_none() || found.is_some())
    {
        return Ok(found);
    }
    let txn = db.begin_read().map_err(from_redb)?;
    let keys = txn.open_table(KEYS).map_err(from_redb)?;
    let log = txn.open_table(BLOCKS).map_err(from_redb)?;
    let mut versions = Reader::new(&log, from_redb);
    for (new, found) in batch.iter().zip(&mut found) {
        let Some(key) = new.idempotency_key.as_deref().filter(|_| found.is_none()) else {
            continue;
        };
        let Some((id, stored_at)) = keys.get(key).map_err(from_redb)?.map(|row| row.value()) else {
            continue;
        };
        if !within(window, stored_at, new.timestamp) {
            continue;
        }
        // A prune removes only versions older than the window by the clock, so a missing
        // version that young is damage.
        if stored_at < retention::window_start(window) {
            *found = versions.get(id)?;
        } else {
            *found = Some(versions.lookup(id, "keys")?);
        }
    }
    Ok(found)
}

/// Writes the rows of `batches`, taken from the front of the overlay, in one transaction
/// committed without durability (the journal holds them until the next checkpoint), and deletes
/// expired idempotency keys.
pub(crate) fn apply(
    db: &Database,
    window: Duration,
    batches: &[Arc<Pending>],
) -> Result<(), Fault> {
    let mut txn = db.begin_write().map_err(from_redb_write)?;
    txn.set_durability(Durability::None).map_err(from_redb_write)?;
    {
        let mut tables = Tables::open(&txn)?;
        let mut keyed = 0;
        for batch in batches {
            for (version, key) in batch.versions.iter().zip(&batch.keys) {
                if let Some(key) = key {
                    tables.key(version.id, version.timestamp, key)?;
                    keyed += 1;
                }
            }
        }
        let versions = || batches.iter().flat_map(|batch| batch.versions.iter());
        tables.store(versions())?;
        if let Some(horizon) = horizon(versions().map(|version| version.timestamp)) {
            tables.prune(window, horizon, 2 * keyed + PRUNE_EXTRA * batches.len())?;
        }
    }
    txn.commit().map_err(from_redb_write)
}

/// Applies everything the overlay holds.
pub(crate) fn drain(db: &Database, overlay: &Overlay, window: Duration) -> Result<(), Fault> {
    while overlay.apply_round(usize::MAX, |batches| apply(db, window, batches))? > 0 {}
    Ok(())
}

/// Applies everything the overlay holds and commits everything redb holds durably, then starts
/// the journal's next generation afresh: the records of the current and previous ones are in the
/// database from then on. Runs with the journal held, so no append comes in between.
pub(crate) fn checkpoint(
    db: &Database,
    journal: &mut Journal,
    overlay: &Overlay,
    window: Duration,
) -> Result<(), Fault> {
    drain(db, overlay, window)?;
    commit_durably(db)?;
    // A journal whose header may not say what this one holds must be read again: reopen.
    journal.restart().map_err(|error| Fault::new(error, true))
}

/// Runs the checkpoint of the journal's previous generation: applies the overlay up to
/// `checkpoint.through` and commits everything redb holds durably. Runs beside the appends, which
/// go on writing the journal's next generation meanwhile; the caller then
/// [`settle`](Journal::settle)s the generation.
pub(crate) fn settle(
    db: &Database,
    overlay: &Overlay,
    window: Duration,
    checkpoint: Checkpoint,
) -> Result<(), Fault> {
    while overlay.first_id().is_some_and(|first| first <= checkpoint.through) {
        overlay.apply_round(ROUND_MAX, |batches| apply(db, window, batches))?;
    }
    commit_durably(db)
}

/// Commits, durably, every transaction redb has committed without durability.
fn commit_durably(db: &Database) -> Result<(), Fault> {
    let mut txn = db.begin_write().map_err(from_redb_write)?;
    txn.set_durability(Durability::Immediate).map_err(from_redb_write)?;
    txn.commit().map_err(from_redb_write)
}

/// Stores the versions a journal holds beyond the database's durable end, as the appends that
/// wrote them did, in one durable commit.
pub(crate) fn replay(db: &Database, entries: &[journal::Entry]) -> Result<(), Fault> {
    let mut txn = db.begin_write().map_err(from_redb_write)?;
    txn.set_durability(Durability::Immediate).map_err(from_redb_write)?;
    {
        let mut tables = Tables::open(&txn)?;
        for journal::Entry { version, key } in entries {
            if let Some(key) = key {
                tables.key(version.id, version.timestamp, key)?;
            }
        }
        tables.store(entries.iter().map(|entry| &entry.version))?;
    }
    txn.commit().map_err(from_redb_write)
}

/// The tables an append writes, open in its transaction.
struct Tables<'txn> {
    blocks: Blocks<'txn>,
    event_ids: EventIds<'txn>,
    latest: Table<'txn, &'static str, u64>,
    keys: Table<'txn, &'static str, (u64, u64)>,
    key_times: Table<'txn, (u64, &'static str), ()>,
}

impl<'txn> Tables<'txn> {
    fn open(txn: &'txn WriteTransaction) -> Result<Tables<'txn>, Fault> {
        Ok(Tables {
            blocks: txn.open_table(BLOCKS).map_err(from_redb_write)?,
            event_ids: txn.open_table(EVENT_IDS).map_err(from_redb_write)?,
            latest: txn.open_table(LATEST).map_err(from_redb_write)?,
            keys: txn.open_table(KEYS).map_err(from_redb_write)?,
            key_times: txn.open_table(KEY_TIMES).map_err(from_redb_write)?,
        })
    }

    /// Writes the rows of idempotency key `key`, under which version `id` stamped `timestamp` was
    /// stored: they replace those of an expired use of the key.
    fn key(&mut self, id: u64, timestamp: u64, key: &str) -> Result<(), Fault> {
        let previous = self.keys.insert(key, (id, timestamp)).map_err(from_redb_write)?;
        if let Some((_, stored_at)) = previous.map(|row| row.value()) {
            self.key_times.remove((stored_at, key)).map_err(from_redb_write)?;
        }
        self.key_times.insert((timestamp, key), ()).map_err(from_redb_write)?;
        Ok(())
    }

    /// Writes `stored`, the versions a round stored, in id order: as new blocks, and per event, a
    /// run of its ids in `event_ids` and its `latest` row, the last of them. One write of each per
    /// block or per event rather than per version, since a round often holds many versions, of
    /// few events.
    fn store<'a>(
        &mut self,
        stored: impl Iterator<Item = &'a Version> + Clone,
    ) -> Result<(), Fault> {
        blocks::append(&mut self.blocks, stored.clone().map(Row::of))?;
        let runs = index::by_event(stored.map(|version| (&*version.event, version.id)));
        for (event, ids) in runs {
            index::write(&mut self.event_ids, event, &ids)?;
            if let Some(&newest) = ids.last() {
                self.latest.insert(event, newest).map_err(from_redb_write)?;
            }
        }
        Ok(())
    }

    /// Deletes up to `limit` keys that expired by `horizon`, oldest first: a range read at the
    /// start of `key_times`, which stops at the first key still within the window.
    fn prune(&mut self, window: Duration, horizon: u64, limit: usize) -> Result<(), Fault> {
        let mut expired = Vec::new();
        for entry in self.key_times.iter().map_err(from_redb_write)?.take(limit) {
            let (key, _) = entry.map_err(from_redb_write)?;
            let (stored_at, key) = key.value();
            if within(window, stored_at, horizon) {
                break;
            }
            expired.push((stored_at, key.to_owned()));
        }
        for (stored_at, key) in &expired {
            self.key_times.remove((*stored_at, key.as_str())).map_err(from_redb_write)?;
            let current =
                self.keys.get(key.as_str()).map_err(from_redb_write)?.map(|row| row.value());
            // `keys` names this use of the key, unless the tables disagree; then the newer row
            // stays.
            if current.is_some_and(|(_, at)| at == *stored_at) {
                self.keys.remove(key.as_str()).map_err(from_redb_write)?;
            }
        }
        Ok(())
    }
}

/// A batch whose record may or may not have reached the journal: only a retry with the same
/// idempotency keys can tell. The journal is read again, with the database, before the next
/// append.
fn unknown(error: std::io::Error) -> Fault {
    let error = StorageError::OutcomeUnknown(format!(
        "the journal failed ({error}) and may or may not hold the batch"
    ));
    Fault::new(error, true)
}

/// Whether a key stored at `stored_at` still holds for a version stamped `timestamp`: the same
/// rule as [`MemoryStorage`](broker_storage::MemoryStorage)'s, so that every backend agrees.
fn within(window: Duration, stored_at: u64, timestamp: u64) -> bool {
    u128::from(timestamp.saturating_sub(stored_at)) < window.as_millis()
}

/// The time against which a round prunes expired keys: the newest of its `timestamps`, but never
/// past the clock, so that one version stamped far in the future does not expire every key at
/// once. `None` for an empty round.
fn horizon(timestamps: impl Iterator<Item = u64>) -> Option<u64> {
    let newest = timestamps.max()?;
    let now = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |since| u64::try_from(since.as_millis()).unwrap_or(u64::MAX));
    Some(newest.min(now))
}

/// Up to `limit` versions of exactly `event` with ids above `after`: a range scan of the event's
/// runs in `event_ids`, from the one holding the first id wanted.
pub(crate) fn history(
    txn: &ReadTransaction,
    event: &str,
    after: u64,
    limit: usize,
) -> Result<Vec<Version>, Fault> {
    if limit == 0 || after == u64::MAX {
        return Ok(Vec::new());
    }
    let event_ids = txn.open_table(EVENT_IDS).map_err(from_redb)?;
    let log = txn.open_table(BLOCKS).map_err(from_redb)?;
    let mut versions = Reader::new(&log, from_redb);
    let ids = index::after(&event_ids, event, after, limit, from_redb)?;
    ids.into_iter().map(|id| versions.lookup(id, "event_ids")).collect()
}

/// Up to `limit` versions with ids above `after`, in id order: a range scan of `blocks`.
pub(crate) fn since(
    txn: &ReadTransaction,
    after: u64,
    limit: usize,
) -> Result<Vec<Version>, Fault> {
    let log = txn.open_table(BLOCKS).map_err(from_redb)?;
    blocks::since(&log, after, limit, from_redb)
}
