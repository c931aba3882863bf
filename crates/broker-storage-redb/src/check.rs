//! [`RedbStorage::check`](crate::RedbStorage::check): a full check of a database file that is
//! not in use. Runs on a blocking thread.

use std::collections::HashMap;
use std::fmt;
use std::path::{Path, PathBuf};

use broker_storage::{StorageError, Uuid};
use redb::{
    Database, Key, ReadOnlyTable, ReadTransaction, ReadableDatabase, ReadableTable,
    ReadableTableMetadata, TableDefinition, TableError, Value,
};

use crate::RedbOptions;
use crate::blocks::{self, BLOCKS, Reader};
use crate::error::{Fault, catching, from_open, from_redb};
use crate::index;
use crate::journal::{self, Journal};
use crate::schema::{self, COUNTS, EVENT_IDS, HORIZONS, KEY_TIMES, KEYS, LATEST, META};

/// What [`RedbStorage::check`](crate::RedbStorage::check) found in a database file.
///
/// The counts cover what was read before the first problem, so they are complete when there is
/// none.
#[derive(Clone, Debug, PartialEq, Eq)]
#[non_exhaustive]
pub struct CheckReport {
    /// The file that was checked.
    pub path: PathBuf,
    /// The database identity, when it could be read.
    pub database_id: Option<Uuid>,
    /// The number of versions read.
    pub versions: u64,
    /// The number of distinct events read (rows of the latest-version index).
    pub events: u64,
    /// The id of the last version read, 0 when none was.
    pub last_id: u64,
    /// The number of idempotency keys read, each naming the version stored under it.
    pub keys: u64,
    /// The number of events some versions of which were pruned (rows of the horizons table).
    pub pruned_events: u64,
    /// The versions the file's journal holds beyond its last id: acknowledged versions that a
    /// crash kept out of the file, which the next start stores into it.
    pub journal_versions: u64,
    /// The first problem found, or `None` when the file is clean.
    pub problem: Option<String>,
}

impl CheckReport {
    /// Whether the check found no problem.
    pub fn is_clean(&self) -> bool {
        self.problem.is_none()
    }
}

impl fmt::Display for CheckReport {
    /// One line: the file, clean or damaged and why, and the counts.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}: ", self.path.display())?;
        match &self.problem {
            None => f.write_str("clean,")?,
            Some(problem) => write!(f, "damaged: {problem}; before it, read")?,
        }
        write!(
            f,
            " {} versions of {} events, last id {}, {} idempotency keys",
            self.versions, self.events, self.last_id, self.keys
        )?;
        if self.pruned_events > 0 {
            write!(f, ", {} events pruned", self.pruned_events)?;
        }
        if self.journal_versions > 0 {
            write!(f, ", {} more in its journal, stored at the next start", self.journal_versions)?;
        }
        match self.database_id {
            Some(database_id) => write!(f, ", database {}", database_id.simple()),
            None => f.write_str(", no database identity"),
        }
    }
}

/// Checks the file at `path`: redb's integrity check, then every row of every table, decoded and
/// matched against the others.
///
/// # Errors
///
/// [`StorageError::Backend`] when the file cannot be checked at all: it is missing, cannot be
/// read, is open (in this process or another), or has a storage format version this build does
/// not read. Damage is not an error: it is the report's `problem`.
pub(crate) fn run(path: &Path) -> Result<CheckReport, StorageError> {
    let mut report = CheckReport {
        path: path.to_path_buf(),
        database_id: None,
        versions: 0,
        events: 0,
        last_id: 0,
        keys: 0,
        pruned_events: 0,
        journal_versions: 0,
        problem: None,
    };
    // redb's open would report a missing file too, but not in these words.
    std::fs::metadata(path).map_err(|error| {
        StorageError::backend(format!("cannot check {}: {error}", path.display()))
    })?;
    let opened = catching(false, || {
        let mut builder = Database::builder();
        builder.set_cache_size(RedbOptions::DEFAULT_CACHE_SIZE);
        builder.open(path).map_err(|error| Fault::from(from_open(path, error)))
    });
    let mut database = match opened {
        Ok(database) => database,
        Err(fault) => return found(report, "it cannot be opened", fault),
    };
    // redb verifies the checksum of every page of the committed trees. It repairs what it can,
    // which may roll the file back to its previous commit: that too is a problem to report.
    match catching(false, || database.check_integrity().map_err(from_redb)) {
        Ok(true) => {}
        Ok(false) => {
            report.problem = Some(
                "redb's integrity check found damage and repaired the file; its last commit \
                 may have been rolled back"
                    .to_owned(),
            );
        }
        Err(fault) => return found(report, "redb's integrity check failed", fault),
    }
    let scanned = catching(false, || scan(&database, path, &mut report));
    if let Err(error) = database.close() {
        tracing::debug!(path = %path.display(), %error, "closing a checked database");
    }
    if let Err(fault) = scanned {
        return found(report, "reading it failed", fault);
    }
    let Some(database_id) = report.database_id else { return Ok(report) };
    match Journal::inspect(&journal::path_of(path), database_id, report.last_id) {
        Ok(entries) => report.journal_versions = entries.len() as u64,
        Err(error) => return found(report, "reading its journal failed", error.into()),
    }
    Ok(report)
}

/// Records `fault` as the report's problem when it is damage, or fails the check with it.
fn found(mut report: CheckReport, what: &str, fault: Fault) -> Result<CheckReport, StorageError> {
    match fault.error {
        StorageError::Corrupt(message) => {
            report.problem.get_or_insert(format!("{what}: {message}"));
            Ok(report)
        }
        error => Err(error),
    }
}

/// Reads every table in one read transaction, decoding every row, and checks that the indexes
/// match the log: `event_ids` holds every version once under its own event, in runs that do
/// not overlap, `latest` holds the
/// newest version of every event, and each idempotency key names a stored version, at that
/// version's timestamp, once in `keys` and once in `key_times`. Where versions were pruned, every
/// hole in the ids lies at or below a horizon, no version of a pruned event is left at or below
/// its horizon, its latest version is above it, and a key may name a version that is gone only
/// at or below a horizon; a row of `counts` must count its event's versions up to its `through`.
fn scan(database: &Database, path: &Path, report: &mut CheckReport) -> Result<(), Fault> {
    let txn = database.begin_read().map_err(from_redb)?;
    let meta = txn.open_table(META).map_err(from_redb)?;
    report.database_id = schema::read_identity(&meta, path)?;
    if report.database_id.is_none() {
        return Err(corrupt("it has no database identity".to_owned()));
    }

    // A file written before pruning has no horizons: nothing was pruned from it.
    let mut horizons: HashMap<String, u64> = HashMap::new();
    if let Some(table) = optional(&txn, HORIZONS)? {
        for entry in table.iter().map_err(from_redb)? {
            let (event, through) = entry.map_err(from_redb)?;
            horizons.insert(event.value().to_owned(), through.value());
        }
    }
    report.pruned_events = horizons.len() as u64;
    // Every id up to this one may have been pruned.
    let pruned_through = horizons.values().copied().max().unwrap_or(0);

    let log = txn.open_table(BLOCKS).map_err(from_redb)?;
    // The newest id of each event, which `latest` must name.
    let mut newest: HashMap<String, u64> = HashMap::new();
    // The key of the block before, the greatest id it may hold.
    let mut previous = 0;
    for entry in log.iter().map_err(from_redb)? {
        let (key, block) = entry.map_err(from_redb)?;
        let key = key.value();
        let rows = blocks::rows(key, block.value());
        if rows.first() <= previous {
            return Err(corrupt(format!(
                "blocks has a block from id {} to {key}, within the one ending at {previous}",
                rows.first()
            )));
        }
        previous = key;
        // Decoding the block checks that it holds a version, that its ids increase up to its key,
        // and that its events and data are whole UTF-8 strings.
        for row in rows {
            let row = row?;
            let id = row.id;
            // Ids are handed out without holes; only a prune leaves them.
            if id - 1 > report.last_id && id - 1 > pruned_through {
                return Err(corrupt(format!(
                    "versions {} to {} are missing, and no horizon says they were pruned",
                    report.last_id + 1,
                    id - 1
                )));
            }
            newest.insert(row.event.to_owned(), id);
            report.versions += 1;
            report.last_id = id;
        }
    }
    let mut versions = Reader::new(&log, from_redb);

    let event_ids = txn.open_table(EVENT_IDS).map_err(from_redb)?;
    let mut indexed = 0;
    // The ids of each event's versions, in order.
    let mut counted: HashMap<String, Vec<u64>> = HashMap::new();
    for entry in event_ids.iter().map_err(from_redb)? {
        let (key, run) = entry.map_err(from_redb)?;
        let (event, first) = key.value();
        let ids = index::decode(event, first, run.value())?;
        let of_event = counted.entry(event.to_owned()).or_default();
        if let Some(&last) = of_event.last().filter(|&&last| last >= first) {
            return Err(corrupt(format!(
                "event_ids has a run of {event:?} from {first}, within the one ending at {last}"
            )));
        }
        for id in ids {
            if let Some(&through) = horizons.get(event)
                && id <= through
            {
                return Err(corrupt(format!(
                    "version {id} of {event:?} is stored, yet its horizon says it was pruned \
                     (through {through})"
                )));
            }
            match versions.get(id)? {
                Some(version) if *version.event == *event => {
                    indexed += 1;
                    of_event.push(id);
                }
                Some(version) => {
                    return Err(corrupt(format!(
                        "event_ids files version {id} under {event:?}, but it belongs to {:?}",
                        version.event
                    )));
                }
                None => {
                    return Err(corrupt(format!("event_ids names version {id}, which is missing")));
                }
            }
        }
    }
    if indexed != report.versions {
        return Err(corrupt(format!(
            "event_ids holds {indexed} ids for {} versions",
            report.versions
        )));
    }

    let latest = txn.open_table(LATEST).map_err(from_redb)?;
    for entry in latest.iter().map_err(from_redb)? {
        let (event, id) = entry.map_err(from_redb)?;
        let (event, id) = (event.value(), id.value());
        match newest.get(event) {
            Some(&newest) if newest == id => report.events += 1,
            Some(&newest) => {
                return Err(corrupt(format!(
                    "latest names version {id} for {event:?}, whose newest version is {newest}"
                )));
            }
            None => {
                return Err(corrupt(format!(
                    "latest names version {id} for {event:?}, which has no versions"
                )));
            }
        }
    }
    if report.events != newest.len() as u64 {
        return Err(corrupt(format!(
            "latest holds {} events, and the versions belong to {}",
            report.events,
            newest.len()
        )));
    }

    // A prune keeps the latest version of its event, so a pruned event still has one; that it
    // lies above the horizon was checked with `event_ids`.
    for (event, through) in &horizons {
        if !newest.contains_key(event) {
            return Err(corrupt(format!("{event:?} has a horizon ({through}) but no versions")));
        }
    }
    if let Some(counts) = optional(&txn, COUNTS)? {
        for entry in counts.iter().map_err(from_redb)? {
            let (event, row) = entry.map_err(from_redb)?;
            let (event, (count, through)) = (event.value(), row.value());
            if !newest.contains_key(event) {
                return Err(corrupt(format!(
                    "counts has a row for {event:?}, which has no versions"
                )));
            }
            // Versions appended since the last prune are above `through`, and not in the row.
            let ids = counted.get(event).map_or(&[][..], Vec::as_slice);
            let stored = ids.partition_point(|&id| id <= through) as u64;
            if count != stored {
                return Err(corrupt(format!(
                    "counts gives {event:?} {count} versions up to {through}, and it has {stored}"
                )));
            }
        }
    }

    let (keys, key_times) = match (optional(&txn, KEYS)?, optional(&txn, KEY_TIMES)?) {
        (Some(keys), Some(key_times)) => (keys, key_times),
        // A file written before the idempotency tables has neither: it holds no keys.
        (None, None) => return Ok(()),
        _ => return Err(corrupt("it has only one of keys and key_times".to_owned())),
    };
    for entry in keys.iter().map_err(from_redb)? {
        let (key, row) = entry.map_err(from_redb)?;
        let (key, (id, stored_at)) = (key.value(), row.value());
        match versions.get(id)? {
            Some(version) if version.timestamp == stored_at => {}
            Some(version) => {
                return Err(corrupt(format!(
                    "keys gives key {key:?} the time {stored_at}, but its version {id} has the \
                     timestamp {}",
                    version.timestamp
                )));
            }
            // Pruned, long after the key's window: the next appends delete the key.
            None if id <= pruned_through => {}
            None => {
                return Err(corrupt(format!(
                    "keys names version {id} for key {key:?}, which is missing"
                )));
            }
        }
        if key_times.get((stored_at, key)).map_err(from_redb)?.is_none() {
            return Err(corrupt(format!("key_times lacks key {key:?} at {stored_at}")));
        }
        report.keys += 1;
    }
    let timed = key_times.len().map_err(from_redb)?;
    if timed != report.keys {
        return Err(corrupt(format!("key_times holds {timed} keys, and keys {}", report.keys)));
    }
    Ok(())
}

/// The table `definition`, or `None` when the file does not have it.
fn optional<K: Key + 'static, V: Value + 'static>(
    txn: &ReadTransaction,
    definition: TableDefinition<'_, K, V>,
) -> Result<Option<ReadOnlyTable<K, V>>, Fault> {
    match txn.open_table(definition) {
        Ok(table) => Ok(Some(table)),
        Err(TableError::TableDoesNotExist(_)) => Ok(None),
        Err(error) => Err(from_redb(error)),
    }
}

fn corrupt(message: String) -> Fault {
    StorageError::Corrupt(message).into()
}
