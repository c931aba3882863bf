//! [`SqliteStorage`]: the broker's storage trait over one SQLite file.
//!
//! Schema: one `versions` table whose integer primary key is the version id (SQLite's rowid,
//! which `AUTOINCREMENT` keeps from ever being reused), an index on `(event, id)` for exact-name
//! history pages, a `latest` table for the snapshot, an `idempotency_keys` table (indexed by
//! time, to prune the expired ones), a `horizons` table (how far each pruned event was pruned;
//! the SQL of pruning is in `sqlite/retention.rs`) and a `meta` row holding the database's
//! identity.
//!
//! Its tails come from [`LocalTails`]: one `SqliteStorage` is the only writer of its file, and
//! hands each committed batch to them.

use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex, Weak};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use broker_storage::{
    DEFAULT_IDEMPOTENCY_WINDOW, Horizon, LocalTails, NewVersion, Pruned, Retention, Storage,
    StorageError, Tail, Uuid, Version,
};
use rusqlite::{Connection, OptionalExtension, Transaction, params};

mod retention;

const SCHEMA: &str = "
    PRAGMA journal_mode = WAL;
    PRAGMA synchronous = FULL;
    CREATE TABLE IF NOT EXISTS versions (
        id INTEGER PRIMARY KEY AUTOINCREMENT,
        event TEXT NOT NULL,
        timestamp INTEGER NOT NULL,
        data TEXT NOT NULL
    );
    CREATE INDEX IF NOT EXISTS versions_by_event ON versions (event, id);
    CREATE TABLE IF NOT EXISTS latest (event TEXT PRIMARY KEY, id INTEGER NOT NULL);
    CREATE TABLE IF NOT EXISTS meta (key TEXT PRIMARY KEY, value BLOB NOT NULL);
    CREATE TABLE IF NOT EXISTS idempotency_keys (
        key TEXT PRIMARY KEY,
        id INTEGER NOT NULL,
        timestamp INTEGER NOT NULL
    );
    CREATE INDEX IF NOT EXISTS idempotency_keys_by_time ON idempotency_keys (timestamp);
    CREATE TABLE IF NOT EXISTS horizons (
        event TEXT PRIMARY KEY,
        pruned_through INTEGER NOT NULL
    );
";

/// Expired idempotency keys deleted per append, beyond twice the keys it stores: more go than
/// come, so the table holds about one window's keys.
const PRUNE_EXTRA: usize = 32;

/// The connection, shared with the blocking tasks; `None` once closed.
type Shared = Arc<Mutex<Option<Connection>>>;

/// A [`Storage`] in one SQLite file, with every SQLite call on Tokio's blocking pool.
///
/// Open one per file and share it (in an `Arc`) rather than opening the file twice: its tails
/// see only the versions appended through it.
pub struct SqliteStorage {
    /// The database file, whose size (with its write-ahead log) is the store's.
    path: PathBuf,
    database_id: Uuid,
    /// How long an idempotency key is remembered, from its version's timestamp.
    idempotency_window: Duration,
    /// `None` once closed. SQLite connections are not shared between threads, so calls take
    /// turns; a real deployment could keep a pool of readers beside the one writer.
    connection: Shared,
    /// Fed by `append` under the connection's lock, which orders commits, so that tails receive
    /// batches in id order.
    tails: Arc<LocalTails>,
}

impl SqliteStorage {
    /// Opens or creates the store at `path`.
    pub async fn open(path: impl AsRef<Path>) -> Result<SqliteStorage, StorageError> {
        let path = path.as_ref().to_path_buf();
        tokio::task::spawn_blocking(move || {
            let connection = Connection::open(&path).map_err(backend)?;
            // On a file written before pruning, this adds the `horizons` table.
            connection.execute_batch(SCHEMA).map_err(backend)?;
            let stored: Option<Vec<u8>> = connection
                .query_row("SELECT value FROM meta WHERE key = 'database_id'", [], |row| row.get(0))
                .optional()
                .map_err(backend)?;
            let database_id = match stored {
                Some(bytes) => Uuid::from_slice(&bytes)
                    .map_err(|error| StorageError::Corrupt(format!("database id: {error}")))?,
                None => {
                    let id = Uuid::new_v4();
                    connection
                        .execute(
                            "INSERT INTO meta (key, value) VALUES ('database_id', ?1)",
                            params![id.as_bytes().as_slice()],
                        )
                        .map_err(backend)?;
                    id
                }
            };
            let last_id: i64 = connection
                .query_row("SELECT COALESCE(MAX(id), 0) FROM versions", [], |row| row.get(0))
                .map_err(backend)?;
            Ok(SqliteStorage {
                path,
                database_id,
                idempotency_window: DEFAULT_IDEMPOTENCY_WINDOW,
                connection: Arc::new(Mutex::new(Some(connection))),
                tails: Arc::new(LocalTails::new(last_id as u64)),
            })
        })
        .await
        .map_err(backend)?
    }

    /// This store, remembering idempotency keys for `window` rather than the default.
    pub fn with_idempotency_window(self, window: Duration) -> SqliteStorage {
        SqliteStorage { idempotency_window: window, ..self }
    }

    /// Runs `work` with the connection, never on an async worker.
    async fn with<T, F>(&self, work: F) -> Result<T, StorageError>
    where
        T: Send + 'static,
        F: FnOnce(&mut Connection) -> rusqlite::Result<T> + Send + 'static,
    {
        with(Arc::clone(&self.connection), work).await
    }
}

/// Runs `work` with `connection` on the blocking pool, or on the calling thread when that is an
/// engine's writer thread, which a store may block: the engine's appends then skip the hand-off
/// to the pool and the wake-up after it.
async fn with<T, F>(connection: Shared, work: F) -> Result<T, StorageError>
where
    T: Send + 'static,
    F: FnOnce(&mut Connection) -> rusqlite::Result<T> + Send + 'static,
{
    let blocking = move || {
        let mut guard = connection.lock().unwrap_or_else(|poison| poison.into_inner());
        let connection = guard.as_mut().ok_or(StorageError::Closed)?;
        work(connection).map_err(backend)
    };
    broker_storage::run_blocking(blocking).await.map_err(backend)?
}

/// Up to `limit` versions after `after`, in id order.
fn since(connection: &Connection, after: u64, limit: usize) -> rusqlite::Result<Vec<Version>> {
    let mut statement = connection.prepare_cached(
        "SELECT id, event, timestamp, data FROM versions WHERE id > ?1 ORDER BY id LIMIT ?2",
    )?;
    statement.query_map(params![sql_int(after), sql_int(limit)], version)?.collect()
}

/// The version stored under `new`'s idempotency key less than `window` before its timestamp.
fn stored_under_key(
    transaction: &Transaction<'_>,
    new: &NewVersion,
    window: Duration,
) -> rusqlite::Result<Option<Version>> {
    let Some(key) = &new.idempotency_key else { return Ok(None) };
    let stored = transaction
        .query_row(
            "SELECT v.id, v.event, v.timestamp, v.data FROM idempotency_keys k
             JOIN versions v ON v.id = k.id WHERE k.key = ?1",
            params![key],
            version,
        )
        .optional()?;
    Ok(stored.filter(|stored| {
        u128::from(new.timestamp.saturating_sub(stored.timestamp)) < window.as_millis()
    }))
}

/// Deletes up to `limit` keys that expired by the newest timestamp of the batch, but never past
/// the clock, so that one version stamped far ahead does not expire every key at once.
fn prune(
    transaction: &Transaction<'_>,
    newest: u64,
    window: Duration,
    limit: usize,
) -> rusqlite::Result<()> {
    let now = SystemTime::now().duration_since(UNIX_EPOCH).map_or(0, |now| now.as_millis());
    let horizon = u128::from(newest).min(now);
    // Expired: stored at or before `horizon - window`.
    let Some(expired_by) = horizon.checked_sub(window.as_millis()) else { return Ok(()) };
    transaction.execute(
        "DELETE FROM idempotency_keys WHERE key IN
         (SELECT key FROM idempotency_keys WHERE timestamp <= ?1 ORDER BY timestamp LIMIT ?2)",
        params![sql_int(expired_by), sql_int(limit)],
    )?;
    Ok(())
}

/// The length of the file at `path`, 0 when there is none (SQLite removes its log on close).
fn file_len(path: &PathBuf) -> u64 {
    std::fs::metadata(path).map_or(0, |metadata| metadata.len())
}

fn backend(error: impl std::error::Error + Send + Sync + 'static) -> StorageError {
    StorageError::backend(error)
}

fn version(row: &rusqlite::Row<'_>) -> rusqlite::Result<Version> {
    let id: i64 = row.get(0)?;
    let timestamp: i64 = row.get(2)?;
    // Timestamps are stored as the bits of the `u64`, so that every value round-trips.
    Ok(Version {
        id: id as u64,
        event: row.get(1)?,
        timestamp: timestamp as u64,
        data: row.get(3)?,
    })
}

/// SQLite integers are signed; ids and limits beyond `i64::MAX` are clamped.
fn sql_int(n: impl TryInto<i64>) -> i64 {
    n.try_into().unwrap_or(i64::MAX)
}

impl Storage for SqliteStorage {
    fn database_id(&self) -> Uuid {
        self.database_id
    }

    async fn append(&self, batch: Vec<NewVersion>) -> Result<Vec<Version>, StorageError> {
        let (tails, window) = (Arc::clone(&self.tails), self.idempotency_window);
        self.with(move |connection| {
            // One transaction per batch: committed whole with `synchronous = FULL`, or not at all.
            let transaction = connection.transaction()?;
            let newest = batch.iter().map(|new| new.timestamp).max();
            let mut returned = Vec::with_capacity(batch.len());
            // What the tails have not seen: the versions this batch stores.
            let mut stored = Vec::with_capacity(batch.len());
            let mut keyed = 0;
            for new in batch {
                if let Some(original) = stored_under_key(&transaction, &new, window)? {
                    returned.push(original);
                    continue;
                }
                transaction.execute(
                    "INSERT INTO versions (event, timestamp, data) VALUES (?1, ?2, ?3)",
                    params![new.event, new.timestamp as i64, new.data],
                )?;
                let id = transaction.last_insert_rowid() as u64;
                transaction.execute(
                    "INSERT INTO latest (event, id) VALUES (?1, ?2)
                     ON CONFLICT (event) DO UPDATE SET id = excluded.id",
                    params![new.event, sql_int(id)],
                )?;
                if let Some(key) = &new.idempotency_key {
                    // Replaces an expired use of the key.
                    transaction.execute(
                        "INSERT INTO idempotency_keys (key, id, timestamp) VALUES (?1, ?2, ?3)
                         ON CONFLICT (key) DO UPDATE SET id = excluded.id,
                         timestamp = excluded.timestamp",
                        params![key, sql_int(id), new.timestamp as i64],
                    )?;
                    keyed += 1;
                }
                let version = new.with_id(id);
                stored.push(version.clone());
                returned.push(version);
            }
            if let Some(newest) = newest {
                prune(&transaction, newest, window, 2 * keyed + PRUNE_EXTRA)?;
            }
            transaction.commit()?;
            // Still under the connection's lock: no other batch commits before the tails have
            // this one.
            tails.publish(&stored);
            Ok(returned)
        })
        .await
    }

    async fn latest(&self) -> Result<Vec<Version>, StorageError> {
        self.with(|connection| {
            let mut statement = connection.prepare(
                "SELECT v.id, v.event, v.timestamp, v.data FROM latest l
                 JOIN versions v ON v.id = l.id ORDER BY v.id",
            )?;
            statement.query_map([], version)?.collect()
        })
        .await
    }

    async fn history(
        &self,
        event: &str,
        after: u64,
        limit: usize,
    ) -> Result<Vec<Version>, StorageError> {
        let event = event.to_owned();
        self.with(move |connection| {
            let mut statement = connection.prepare(
                "SELECT id, event, timestamp, data FROM versions
                 WHERE event = ?1 AND id > ?2 ORDER BY id LIMIT ?3",
            )?;
            let rows =
                statement.query_map(params![event, sql_int(after), sql_int(limit)], version)?;
            rows.collect()
        })
        .await
    }

    async fn since(&self, after: u64, limit: usize) -> Result<Vec<Version>, StorageError> {
        self.with(move |connection| since(connection, after, limit)).await
    }

    async fn latest_at(&self, at: u64) -> Result<Vec<Version>, StorageError> {
        self.with(move |connection| retention::latest_at(connection, at)).await
    }

    async fn prune(
        &self,
        event: &str,
        retention: Retention,
        limit: usize,
    ) -> Result<Pruned, StorageError> {
        let (event, window) = (event.to_owned(), self.idempotency_window);
        self.with(move |connection| retention::prune(connection, &event, retention, limit, window))
            .await
    }

    async fn horizons(&self) -> Result<Vec<Horizon>, StorageError> {
        self.with(|connection| retention::horizons(connection)).await
    }

    /// The database file and its write-ahead log.
    async fn size(&self) -> Result<Option<u64>, StorageError> {
        let mut log = self.path.clone().into_os_string();
        log.push("-wal");
        let files = [self.path.clone(), PathBuf::from(log)];
        // Through the connection, so that a closed store says so.
        let size = self.with(move |_| Ok(files.iter().map(file_len).sum::<u64>())).await?;
        Ok(Some(size))
    }

    fn tail(&self, after: u64) -> Tail {
        // Weak, so that a tail does not keep the file open after the store is dropped.
        let connection: Weak<_> = Arc::downgrade(&self.connection);
        self.tails.tail(after, move |after, limit| {
            let connection = connection.upgrade();
            async move {
                let Some(connection) = connection else { return Ok(Vec::new()) };
                match with(connection, move |connection| since(connection, after, limit)).await {
                    // An empty page ends the catch-up; the closed tails then end the tail.
                    Err(StorageError::Closed) => Ok(Vec::new()),
                    page => page,
                }
            }
        })
    }

    async fn close(&self) -> Result<(), StorageError> {
        let (connection, tails) = (Arc::clone(&self.connection), Arc::clone(&self.tails));
        tokio::task::spawn_blocking(move || {
            let taken = connection.lock().unwrap_or_else(|poison| poison.into_inner()).take();
            // Every append has handed its batch to the tails by now: they end after it.
            tails.close();
            match taken {
                Some(connection) => connection.close().map_err(|(_, error)| backend(error)),
                None => Ok(()),
            }
        })
        .await
        .map_err(backend)?
    }
}

#[cfg(test)]
mod tests {
    use std::sync::atomic::{AtomicUsize, Ordering};

    use super::SqliteStorage;

    #[tokio::test(flavor = "multi_thread")]
    async fn sqlite_storage_passes_the_conformance_suite() {
        let dir = tempfile::tempdir().expect("tempdir");
        let count = AtomicUsize::new(0);
        broker_storage::conformance::run(|| {
            let path = dir.path().join(format!("{}.sqlite", count.fetch_add(1, Ordering::Relaxed)));
            async move { SqliteStorage::open(path).await.expect("open") }
        })
        .await;
    }

    #[tokio::test(flavor = "multi_thread")]
    async fn two_handles_on_one_store_share_its_log() {
        let dir = tempfile::tempdir().expect("tempdir");
        let count = AtomicUsize::new(0);
        broker_storage::conformance::run_shared(|| {
            let path = dir.path().join(format!("{}.sqlite", count.fetch_add(1, Ordering::Relaxed)));
            async move {
                let store = std::sync::Arc::new(SqliteStorage::open(path).await.expect("open"));
                (std::sync::Arc::clone(&store), store)
            }
        })
        .await;
    }

    #[tokio::test(flavor = "multi_thread")]
    async fn keys_survive_a_reopen_and_expire_after_the_window() {
        use std::time::Duration;

        use broker_storage::{NewVersion, Storage};

        let dir = tempfile::tempdir().expect("tempdir");
        let path = dir.path().join("keys.sqlite");
        let keyed = |timestamp| NewVersion::new("a", timestamp, "1").with_idempotency_key("k");
        let open = || async {
            let store = SqliteStorage::open(&path).await.expect("open");
            store.with_idempotency_window(Duration::from_secs(60))
        };
        let store = open().await;
        let first = store.append(vec![keyed(1_000)]).await.expect("append");
        store.close().await.expect("close");
        let store = open().await;
        let retry = store.append(vec![keyed(60_999)]).await.expect("append");
        assert_eq!(retry, first, "the key survives a reopen, within the window");
        let after = store.append(vec![keyed(61_000)]).await.expect("append");
        assert!(after[0].id > first[0].id, "after the window the key stores a new version");
        store.close().await.expect("close");
    }

    #[tokio::test(flavor = "multi_thread")]
    async fn a_prune_survives_a_reopen() {
        use broker_storage::{Horizon, NewVersion, Retention, Storage};

        let dir = tempfile::tempdir().expect("tempdir");
        let path = dir.path().join("pruned.sqlite");
        let store = SqliteStorage::open(&path).await.expect("open");
        let batch = (0..5).map(|n| NewVersion::new("a", 1_000 + n, n.to_string())).collect();
        let stored = store.append(batch).await.expect("append");
        let pruned = store.prune("a", Retention::last(2), 10).await.expect("prune");
        assert_eq!(pruned.removed, 3);
        assert!(store.size().await.expect("size").is_some_and(|size| size > 0), "a file's size");
        store.close().await.expect("close");

        let store = SqliteStorage::open(&path).await.expect("open");
        let horizon = Horizon { event: "a".into(), pruned_through: stored[2].id };
        assert_eq!(store.horizons().await.expect("horizons"), [horizon]);
        assert_eq!(store.history("a", 0, 10).await.expect("history"), stored[3..]);
        store.close().await.expect("close");
    }
}
