//! [`SqliteStorage`]: the broker's storage trait over one SQLite file.
//!
//! Schema: one `versions` table whose integer primary key is the version id (SQLite's rowid,
//! which `AUTOINCREMENT` keeps from ever being reused), an index on `(event, id)` for exact-name
//! history pages, a `latest` table for the snapshot, and a `meta` row holding the database's
//! identity.

use std::path::Path;
use std::sync::{Arc, Mutex};

use broker_storage::{NewVersion, Storage, StorageError, Uuid, Version};
use rusqlite::{Connection, OptionalExtension, params};

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
";

/// A [`Storage`] in one SQLite file, with every SQLite call on Tokio's blocking pool.
pub struct SqliteStorage {
    database_id: Uuid,
    /// `None` once closed. SQLite connections are not shared between threads, so calls take
    /// turns; a real deployment could keep a pool of readers beside the one writer.
    connection: Arc<Mutex<Option<Connection>>>,
}

impl SqliteStorage {
    /// Opens or creates the store at `path`.
    pub async fn open(path: impl AsRef<Path>) -> Result<SqliteStorage, StorageError> {
        let path = path.as_ref().to_path_buf();
        tokio::task::spawn_blocking(move || {
            let connection = Connection::open(&path).map_err(backend)?;
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
            Ok(SqliteStorage { database_id, connection: Arc::new(Mutex::new(Some(connection))) })
        })
        .await
        .map_err(backend)?
    }

    /// Runs `work` with the connection on the blocking pool.
    async fn with<T, F>(&self, work: F) -> Result<T, StorageError>
    where
        T: Send + 'static,
        F: FnOnce(&mut Connection) -> rusqlite::Result<T> + Send + 'static,
    {
        let connection = self.connection.clone();
        tokio::task::spawn_blocking(move || {
            let mut guard = connection.lock().unwrap_or_else(|poison| poison.into_inner());
            let connection = guard.as_mut().ok_or(StorageError::Closed)?;
            work(connection).map_err(backend)
        })
        .await
        .map_err(backend)?
    }
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
        self.with(move |connection| {
            // One transaction per batch: committed whole with `synchronous = FULL`, or not at all.
            let transaction = connection.transaction()?;
            let mut stored = Vec::with_capacity(batch.len());
            for new in batch {
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
                stored.push(new.with_id(id));
            }
            transaction.commit()?;
            Ok(stored)
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
        self.with(move |connection| {
            let mut statement = connection.prepare(
                "SELECT id, event, timestamp, data FROM versions WHERE id > ?1 ORDER BY id LIMIT ?2",
            )?;
            statement.query_map(params![sql_int(after), sql_int(limit)], version)?.collect()
        })
        .await
    }

    async fn close(&self) -> Result<(), StorageError> {
        let connection = self.connection.clone();
        tokio::task::spawn_blocking(move || {
            let taken = connection.lock().unwrap_or_else(|poison| poison.into_inner()).take();
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
}
