//! [`RedbStorage`]: the [`Storage`] trait over a redb file, with every redb call moved to tokio's
//! blocking pool.

use std::fmt;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use broker_storage::{NewVersion, Storage, StorageError, Uuid, Version};
use redb::Database;
use tokio::sync::RwLock;
use tokio::task;

use crate::error::{from_join, from_open};
use crate::{ops, schema};

/// A [`Storage`] kept in one redb file.
///
/// Every redb call (opening, reading, committing) blocks, so each runs on tokio's blocking pool
/// with [`tokio::task::spawn_blocking`]; the methods must be called inside a tokio runtime.
///
/// Appends commit with immediate durability: when [`append`](Storage::append) returns `Ok`, the
/// batch is on disk. [`close`](Storage::close) waits for the operations in flight, then releases
/// the file, which can then be opened again right away. Dropping an open store also releases it,
/// but blocks the dropping thread while redb closes the file.
pub struct RedbStorage {
    /// The file, for messages.
    path: PathBuf,
    /// Read from the file when it was opened; it never changes.
    database_id: Uuid,
    /// The open database, or `None` once closed.
    ///
    /// Each operation moves an owned read guard into its blocking task, so the guard lives exactly
    /// as long as the redb work, even if the caller drops the operation's future. `close` takes
    /// the write guard, which therefore waits for every operation in flight, and is the only place
    /// that takes the database out.
    database: Arc<RwLock<Option<Database>>>,
}

impl RedbStorage {
    /// Opens the store in the redb file at `path`, creating the file and its parent directory if
    /// they are missing.
    ///
    /// A new file gets a fresh database identity and the current format version; an existing one
    /// has them read back.
    ///
    /// # Errors
    ///
    /// [`StorageError::Backend`], with a message naming `path`, when the directory or file cannot
    /// be created, the file is not a redb database, it is already open (in this process or
    /// another: redb locks it), or it was written with another storage format version.
    /// [`StorageError::Corrupt`] when its identity cannot be read.
    pub async fn open(path: impl AsRef<Path>) -> Result<RedbStorage, StorageError> {
        let path = path.as_ref().to_path_buf();
        let task_path = path.clone();
        let (database, database_id) =
            task::spawn_blocking(move || open_file(&task_path)).await.map_err(from_join)??;
        tracing::info!(path = %path.display(), %database_id, "opened redb storage");
        Ok(RedbStorage { path, database_id, database: Arc::new(RwLock::new(Some(database))) })
    }

    /// Runs `work` on the open database on the blocking pool, or fails with
    /// [`StorageError::Closed`].
    async fn run<T, F>(&self, work: F) -> Result<T, StorageError>
    where
        T: Send + 'static,
        F: FnOnce(&Database) -> Result<T, StorageError> + Send + 'static,
    {
        let guard = Arc::clone(&self.database).read_owned().await;
        if guard.is_none() {
            return Err(StorageError::Closed);
        }
        task::spawn_blocking(move || match guard.as_ref() {
            Some(database) => work(database),
            None => Err(StorageError::Closed),
        })
        .await
        .map_err(from_join)?
    }
}

/// Creates the parent directory and the file if needed, opens it, and reads or writes its
/// identity.
fn open_file(path: &Path) -> Result<(Database, Uuid), StorageError> {
    if let Some(parent) = path.parent().filter(|parent| !parent.as_os_str().is_empty()) {
        std::fs::create_dir_all(parent).map_err(|error| {
            StorageError::backend(format!(
                "cannot create the directory of {}: {error}",
                path.display()
            ))
        })?;
    }
    let database = Database::create(path).map_err(|error| from_open(path, error))?;
    let database_id = schema::identify(&database, path)?;
    Ok((database, database_id))
}

impl fmt::Debug for RedbStorage {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("RedbStorage")
            .field("path", &self.path)
            .field("database_id", &self.database_id)
            .finish_non_exhaustive()
    }
}

impl Storage for RedbStorage {
    fn database_id(&self) -> Uuid {
        self.database_id
    }

    async fn append(&self, batch: Vec<NewVersion>) -> Result<Vec<Version>, StorageError> {
        if batch.is_empty() {
            // Nothing to store, but a closed store still refuses the call.
            return match *self.database.read().await {
                Some(_) => Ok(Vec::new()),
                None => Err(StorageError::Closed),
            };
        }
        self.run(move |database| ops::append(database, batch)).await
    }

    async fn latest(&self) -> Result<Vec<Version>, StorageError> {
        self.run(ops::latest).await
    }

    async fn history(
        &self,
        event: &str,
        after: u64,
        limit: usize,
    ) -> Result<Vec<Version>, StorageError> {
        let event = event.to_owned();
        self.run(move |database| ops::history(database, &event, after, limit)).await
    }

    async fn since(&self, after: u64, limit: usize) -> Result<Vec<Version>, StorageError> {
        self.run(move |database| ops::since(database, after, limit)).await
    }

    async fn close(&self) -> Result<(), StorageError> {
        // Waits for every operation in flight: each holds a read guard until its work is done.
        let Some(database) = self.database.write().await.take() else { return Ok(()) };
        task::spawn_blocking(move || database.close())
            .await
            .map_err(from_join)?
            .map_err(crate::error::from_redb)?;
        tracing::info!(path = %self.path.display(), "closed redb storage");
        Ok(())
    }
}
