//! [`RedbStorage`]: the [`Storage`] trait over a redb file, with every redb call moved to tokio's
//! blocking pool (or made on an engine's writer thread), and the reopening of a database that
//! failed.

use std::fmt;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, MutexGuard, PoisonError};

use broker_storage::{
    Horizon, LocalTails, NewVersion, Pruned, Retention, Storage, StorageError, Tail, Uuid, Version,
};
use redb::{Database, ReadTransaction, ReadableDatabase};
use tokio::sync::RwLock;
use tokio::task;

use crate::backup::{self, BackupReport};
use crate::check::{self, CheckReport};
use crate::error::{Fault, catching, from_join, from_redb, in_file};
use crate::health::{Access, Admission, Health};
use crate::journal::{self, Checkpoint, Journal};
use crate::overlay::{self, Overlay, ROUND_MAX};
use crate::space::{self, Space};
use crate::{RedbOptions, open, ops, retention};

/// A [`Storage`] kept in one redb file.
///
/// Every redb call (opening, reading, committing) blocks, so each runs on tokio's blocking pool
/// with [`tokio::task::spawn_blocking`], except on a thread marked with
/// [`broker_storage::mark_writer_thread`], where it runs on the calling thread: an engine's
/// writer then saves two wake-ups per append. The methods must be called inside a tokio runtime.
///
/// Appends are durable: when [`append`](Storage::append) returns `Ok`, the batch is on disk. Each
/// batch is written as one record to the journal beside the file (`<file>.wal`) and synced, and
/// its versions wait in memory, where every read finds them, until a round writes many batches'
/// rows into redb in one commit without a sync of its own; a checkpoint (a durable redb commit)
/// every second or 2 MiB of records, run beside the appends while they write the journal's other
/// half, makes the journal's older records redundant, and opening the store after a crash
/// stores what the journal holds beyond the file. [`close`](Storage::close)
/// checkpoints and deletes the journal: a store closed cleanly is its one file. The journal
/// belongs with the file: copy or move both while the store is not closed cleanly. Appends may
/// run from many tasks at once; they are written one at a time, and each batch reaches the
/// [`tail`](Storage::tail)s before the next one is written. Only this
/// store writes to its file (redb locks it), so its tails see every version.
/// [`close`](Storage::close) waits for the operations in flight, then ends the tails and releases
/// the file, which can then be opened again right away. Dropping an open store also releases it
/// and ends its tails, but blocks the dropping thread while redb closes the file.
///
/// # Failures
///
/// - Before each commit the free space of the database's file system is checked against
///   [`RedbOptions::min_free_space`]; below it, the append fails with [`StorageError::Full`] and
///   writes nothing.
/// - When redb itself fails with an I/O error (a full device among them), it refuses every write
///   until the file is reopened. The store then marks the database failed and reopens it by
///   itself on the next call, and at most once per [`RedbOptions::reopen_interval`] after that.
///   Until then appends fail at once with the error that failed the database, and reads are
///   answered while redb can still answer them. A reopen checks that the file is the same
///   database and still holds every acknowledged version; ids continue after the last one.
/// - After the device filled up under a commit, appends fail with [`StorageError::Full`] before
///   writing anything until its free space grows, so that a disk that stays full costs one
///   `statvfs` per append, not a failed commit and a reopen.
/// - Damage redb finds in the file, or panics on, is [`StorageError::Corrupt`], naming the file;
///   the panic does not escape. Rust's default panic hook still prints it to standard error.
pub struct RedbStorage {
    shared: Arc<Shared>,
}

/// What the store's blocking tasks share with it.
struct Shared {
    /// The file, for messages and reopening.
    path: PathBuf,
    options: RedbOptions,
    /// Read from the file when it was opened; it never changes.
    database_id: Uuid,
    /// The highest id committed and handed to the tails: a reopened file must still hold it.
    acknowledged: AtomicU64,
    /// The journal of the open database, which every append writes: taken around each write and
    /// its delivery to the overlay and the tails, so that ids are given, and batches delivered,
    /// in one order. Held on a blocking thread only, never across an await. `None` once closed.
    journal: Mutex<Option<Journal>>,
    /// The versions acknowledged and not yet written into redb's tables: every read joins them.
    overlay: Overlay,
    /// The tails of this store. They live as long as the store, across reopens, and end when it
    /// is closed or dropped.
    tails: LocalTails,
    space: Space,
    health: Health,
    /// The open database.
    ///
    /// Each operation moves an owned read guard into its blocking task, so the guard lives exactly
    /// as long as the redb work, even if the caller drops the operation's future. `close` and a
    /// reopen take the write guard, which therefore waits for every operation in flight; they are
    /// the only places that take the database out.
    slot: Arc<RwLock<Slot>>,
}

/// The database behind a store.
enum Slot {
    Open(Database),
    /// Closed to be reopened after a failure, and the reopen failed; the next attempt may
    /// succeed.
    Lost,
    /// Closed with [`Storage::close`], for good.
    Closed,
}

impl RedbStorage {
    /// Opens the store in the redb file at `path` with the default [`RedbOptions`], creating the
    /// file and its parent directory if they are missing.
    ///
    /// # Errors
    ///
    /// As for [`open_with`](RedbStorage::open_with).
    pub async fn open(path: impl AsRef<Path>) -> Result<RedbStorage, StorageError> {
        RedbStorage::open_with(path, RedbOptions::default()).await
    }

    /// Opens the store in the redb file at `path`, creating the file and its parent directory if
    /// they are missing.
    ///
    /// A new file gets a fresh database identity and the current format version; an existing one
    /// has them read back. Opening reads a few pages, never the whole file (but redb reads all of
    /// it to recover a file that was not closed cleanly).
    ///
    /// # Errors
    ///
    /// [`StorageError::Corrupt`], in one line that names the file, says it is damaged and
    /// advises to [`check`](RedbStorage::check) it and restore a backup, when the file is not a
    /// redb database or redb finds it damaged (or panics on it). [`StorageError::Backend`], with
    /// a message naming `path`, when the directory or file cannot be created, it is already open
    /// (in this process or another: redb locks it), or it was written with another storage
    /// format version; for a file already open, the backend error is an [`std::io::Error`] of
    /// kind [`ResourceBusy`](std::io::ErrorKind::ResourceBusy). [`StorageError::Full`] when a
    /// new file cannot be written for lack of space.
    pub async fn open_with(
        path: impl AsRef<Path>,
        options: RedbOptions,
    ) -> Result<RedbStorage, StorageError> {
        let path = path.as_ref().to_path_buf();
        let (task_path, task_options) = (path.clone(), options.clone());
        let (database, identity, journal) =
            task::spawn_blocking(move || open::create(&task_path, &task_options))
                .await
                .map_err(from_join)??;
        tracing::info!(
            path = %path.display(),
            database_id = %identity.database_id,
            last_id = identity.last_id,
            "opened redb storage"
        );
        Ok(RedbStorage {
            shared: Arc::new(Shared {
                space: Space::new(&path, options.min_free_space),
                health: Health::new(options.reopen_interval),
                path,
                options,
                database_id: identity.database_id,
                acknowledged: AtomicU64::new(identity.last_id),
                overlay: Overlay::new(identity.last_id),
                journal: Mutex::new(Some(journal)),
                tails: LocalTails::new(identity.last_id),
                slot: Arc::new(RwLock::new(Slot::Open(database))),
            }),
        })
    }

    /// Checks the redb file at `path`, which must not be in use, and reports what it holds and
    /// the first problem found.
    ///
    /// The check runs redb's integrity check, which verifies the checksum of every page, then
    /// reads every table in full, decodes every record, and matches the indexes against the log.
    /// It reads the whole file. redb's check repairs what it can, and a repair may roll the file
    /// back to its previous commit (the report then names the problem): check a copy if the file
    /// must stay untouched.
    ///
    /// # Errors
    ///
    /// Damage is not an error: it is the report's [`problem`](CheckReport::problem).
    /// [`StorageError::Backend`] when the file cannot be checked at all: it is missing or
    /// unreadable, in use (in this process or another: then, as for
    /// [`open_with`](RedbStorage::open_with), an [`std::io::Error`] of kind
    /// [`ResourceBusy`](std::io::ErrorKind::ResourceBusy)), or written with a storage format
    /// version this build does not read.
    pub async fn check(path: impl AsRef<Path>) -> Result<CheckReport, StorageError> {
        let path = path.as_ref().to_path_buf();
        task::spawn_blocking(move || check::run(&path)).await.map_err(from_join)?
    }

    /// Writes a consistent copy of this store to a new redb file at `to`, while it keeps serving.
    ///
    /// The copy is read in one read transaction: an append that commits during the backup is
    /// either wholly in it or not at all. It keeps this store's database identity, so the ids
    /// clients resume from stay valid on a store restored from it, and its idempotency keys, so
    /// that a retry against the restored store is still recognized; it opens with
    /// [`open`](RedbStorage::open) and passes [`check`](RedbStorage::check). Appends go on
    /// meanwhile, but [`close`](Storage::close) waits for the backup to finish, and redb cannot
    /// reuse the pages the backup still reads, so the file may grow while it runs.
    ///
    /// # Errors
    ///
    /// [`StorageError::Backend`] when `to` exists (a backup never overwrites a file), its
    /// directory does not, or it cannot be created or written; [`StorageError::Full`] when its
    /// file system fills up; [`StorageError::Corrupt`] when this store's data is damaged;
    /// [`StorageError::Closed`] after `close`. A failed backup removes the file it started.
    pub async fn backup(&self, to: impl AsRef<Path>) -> Result<BackupReport, StorageError> {
        let to = to.as_ref().to_path_buf();
        // Everything acknowledged before the call goes into redb's tables first: the copy reads
        // them alone. What is acknowledged meanwhile may wait in the overlay, and the copy holds
        // the log up to some point of the call.
        self.run(Access::Write, |shared, database| {
            ops::drain(database, &shared.overlay, shared.options.idempotency_window)
        })
        .await?;
        self.run(Access::Read, move |shared, database| {
            let txn = database.begin_read().map_err(from_redb)?;
            backup::write(txn, &to, &shared.options, shared.database_id)
        })
        .await?
    }

    /// Runs `work` on the open database on the blocking pool, after reopening it if it failed
    /// and a reopen is due; fails with [`StorageError::Closed`] once closed.
    ///
    /// On an engine's writer thread ([`broker_storage::on_writer_thread`]) `work` runs on the
    /// calling thread instead: an append waits for its record's write anyway, and the hand-off
    /// to the pool and back would add two wake-ups to every commit.
    async fn run<T, F>(&self, access: Access, work: F) -> Result<T, StorageError>
    where
        T: Send + 'static,
        F: FnOnce(&Shared, &Database) -> Result<T, Fault> + Send + 'static,
    {
        match self.shared.health.admit(access) {
            Admission::Go => {}
            Admission::Refuse(error) => return Err(error),
            Admission::Reopen => {
                if let Err(error) = self.reopen().await {
                    // A read may still be answered from the old handle, if the attempt left it.
                    if access == Access::Write || matches!(error, StorageError::Closed) {
                        return Err(error);
                    }
                }
            }
        }
        let guard = Arc::clone(&self.shared.slot).read_owned().await;
        let shared = Arc::clone(&self.shared);
        broker_storage::run_blocking(move || {
            let database = match &*guard {
                Slot::Open(database) => database,
                Slot::Closed => return Err(StorageError::Closed),
                Slot::Lost => return Err(shared.refusal(access)),
            };
            // A write that panics leaves redb's allocator state to be rebuilt: reopen.
            catching(access == Access::Write, || work(&shared, database))
                .map_err(|fault| shared.failed(access, fault))
        })
        .await
        .map_err(from_join)?
    }

    /// Writes what the overlay holds into redb, a round at a time, until less than a round
    /// waits. Runs as a task of its own, started by an append.
    async fn apply(&self) {
        loop {
            let round = self
                .run(Access::Write, |shared, database| {
                    let window = shared.options.idempotency_window;
                    shared
                        .overlay
                        .apply_round(ROUND_MAX, |batches| ops::apply(database, window, batches))
                })
                .await;
            if let Err(error) = &round {
                // The store's health has it, and the next call reopens the file; the journal
                // holds what the overlay does.
                tracing::debug!(%error, "applying acknowledged versions to redb failed");
            }
            if self.shared.overlay.unschedule(round.is_ok()) {
                return;
            }
        }
    }

    /// Runs the checkpoint of the journal's previous generation, beside the appends, and reports
    /// it to the journal. Runs as a task of its own, started by the append that handed it out.
    async fn settle(&self, checkpoint: Checkpoint) {
        let settled = self
            .run(Access::Write, move |shared, database| {
                let window = shared.options.idempotency_window;
                let committed = ops::settle(database, &shared.overlay, window, checkpoint);
                if let Some(journal) = shared.lock_journal().as_mut() {
                    journal.settle(checkpoint, committed.is_ok());
                }
                committed
            })
            .await;
        if let Err(error) = &settled {
            // The store's health has it, and the next call reopens the file; both generations
            // stay in the journal meanwhile. A checkpoint refused before it ran is handed out
            // again by the next append.
            tracing::debug!(%error, "a checkpoint of the journal failed");
            let shared = Arc::clone(&self.shared);
            let release = task::spawn_blocking(move || {
                if let Some(journal) = shared.lock_journal().as_mut() {
                    journal.settle(checkpoint, false);
                }
            });
            if let Err(error) = release.await {
                tracing::debug!(%error, "a failed checkpoint could not be released");
            }
        }
    }

    /// Waits until no generation of the journal waits for its checkpoint.
    #[cfg(test)]
    pub(crate) async fn checkpointed(&self) {
        for _ in 0..10_000 {
            if self.shared.lock_journal().as_ref().is_none_or(Journal::settled) {
                return;
            }
            tokio::time::sleep(std::time::Duration::from_millis(1)).await;
        }
        panic!("the journal's checkpoint did not settle in 10 s");
    }

    /// Copies the store's file and journal to `to` (and its journal's path) as a crash at this
    /// moment leaves them: no append, no redb commit and no journal switch comes while they are
    /// copied.
    #[cfg(test)]
    pub(crate) async fn crash_image(&self, to: &Path) {
        let to = to.to_path_buf();
        let copied = self.run(Access::Write, move |shared, database| {
            let _journal = shared.lock_journal();
            let txn = database.begin_write().map_err(crate::error::from_redb_write)?;
            std::fs::copy(&shared.path, &to).expect("copy the database");
            std::fs::copy(journal::path_of(&shared.path), journal::path_of(&to))
                .expect("copy the journal");
            txn.abort().map_err(crate::error::from_redb_write)
        });
        copied.await.expect("copy the store");
    }

    /// Writes every version waiting in the overlay into redb's tables.
    #[cfg(test)]
    pub(crate) async fn apply_all(&self) {
        let window = self.shared.options.idempotency_window;
        let applied =
            self.run(Access::Write, move |shared, db| ops::drain(db, &shared.overlay, window));
        applied.await.expect("apply the overlay");
    }

    /// The versions waiting in the overlay.
    #[cfg(test)]
    pub(crate) fn overlay_len(&self) -> usize {
        self.shared.overlay.len()
    }

    /// Reopens the failed database, holding the write guard so that no operation runs meanwhile.
    async fn reopen(&self) -> Result<(), StorageError> {
        let mut slot = Arc::clone(&self.shared.slot).write_owned().await;
        let shared = Arc::clone(&self.shared);
        // The guard moves into the task, so a caller that gives up does not leave the slot half
        // replaced.
        task::spawn_blocking(move || shared.reopen(&mut slot)).await.map_err(from_join)?
    }
}

impl Shared {
    /// What `copy` takes from the overlay, and a read transaction of `database` that holds the
    /// log as of the same moment: the two halves of every read, for the `overlay::join`s.
    fn read<C>(
        &self,
        database: &Database,
        copy: impl FnOnce(overlay::View<'_>) -> C,
    ) -> Result<(C, ReadTransaction), Fault> {
        self.overlay.read(copy, || database.begin_read().map_err(from_redb))
    }

    /// The journal, held while a batch commits. A panic under the lock (redb's, on damaged data)
    /// leaves the journal where it was before that batch's record, and asks for a reopen, which
    /// reads the journal again.
    fn lock_journal(&self) -> MutexGuard<'_, Option<Journal>> {
        self.journal.lock().unwrap_or_else(PoisonError::into_inner)
    }

    /// Turns the fault of an operation into its error, naming the file, and records the failure
    /// when the database must be reopened.
    fn failed(&self, access: Access, fault: Fault) -> StorageError {
        if fault.device_full {
            self.space.filled_up();
        }
        let error = in_file(&self.path, fault.error);
        if fault.reopen { self.health.fail(access, error) } else { error }
    }

    /// The error of a call that finds the database lost by a failed reopen.
    fn refusal(&self, access: Access) -> StorageError {
        self.health.refusal(access).unwrap_or_else(|| {
            StorageError::backend(format!("{} is not open after a failure", self.path.display()))
        })
    }

    /// Closes the failed database and opens its file again. Runs on a blocking thread, with the
    /// write guard held.
    ///
    /// After a full device, the reopen does not wait for space to be freed: it writes little, and
    /// gives reads a handle that works again (if it fails, the next attempt comes an interval
    /// later). The space guard keeps appends from failing the new handle until space is freed.
    fn reopen(&self, slot: &mut Slot) -> Result<(), StorageError> {
        if matches!(slot, Slot::Closed) {
            return Err(StorageError::Closed);
        }
        if let Slot::Open(database) = std::mem::replace(slot, Slot::Lost) {
            // Closing releases the file lock the reopen needs. redb reports the failure it
            // latched again, which is known already.
            if let Err(error) = database.close() {
                tracing::debug!(error = %from_redb(error).error, "closed the failed database");
            }
        }
        let acknowledged = self.acknowledged.load(Ordering::Acquire);
        match open::reopen(&self.path, &self.options, self.database_id, acknowledged) {
            Ok((database, identity, journal)) => {
                // The reopened file holds everything the journal held, the overlay included.
                self.overlay.reset(identity.last_id);
                *self.lock_journal() = Some(journal);
                if identity.last_id > acknowledged {
                    tracing::warn!(
                        path = %self.path.display(),
                        acknowledged,
                        last_id = identity.last_id,
                        "a commit that reported a failure reached the disk; its versions are kept"
                    );
                    if let Err(error) = self.deliver_recovered(&database, acknowledged) {
                        tracing::warn!(
                            path = %self.path.display(),
                            %error,
                            "cannot read the versions of a commit that reported a failure"
                        );
                        self.health.reopen_failed(&error);
                        return Err(error);
                    }
                }
                *slot = Slot::Open(database);
                self.health.recovered();
                tracing::info!(path = %self.path.display(), "reopened redb storage after failing");
                Ok(())
            }
            Err(error) => {
                tracing::warn!(path = %self.path.display(), %error, "cannot reopen redb storage");
                self.health.reopen_failed(&error);
                Err(error)
            }
        }
    }

    /// Hands the tails the versions after `acknowledged` found in a reopened file: a commit
    /// that reported a failure, yet reached the disk, which no tail has seen.
    ///
    /// Runs with the write guard held, so no append commits meanwhile and the tails still
    /// receive ids in order.
    fn deliver_recovered(
        &self,
        database: &Database,
        acknowledged: u64,
    ) -> Result<(), StorageError> {
        /// Versions read at a time.
        const PAGE: usize = 512;
        let mut after = acknowledged;
        loop {
            let page = catching(false, || {
                ops::since(&database.begin_read().map_err(from_redb)?, after, PAGE)
            })
            .map_err(|fault| in_file(&self.path, fault.error))?;
            let Some(last) = page.last() else { return Ok(()) };
            after = last.id;
            self.tails.publish(&page);
            // A reopen that fails later starts after what was delivered.
            self.acknowledged.fetch_max(after, Ordering::AcqRel);
        }
    }
}

impl Shared {
    /// Commits the database durably, deletes its journal, which then holds nothing the file
    /// lacks, and closes it: a database closed cleanly is its one file. Runs on a blocking
    /// thread, after the last operation.
    fn close(&self, database: Database) -> Result<(), StorageError> {
        if let Some(mut journal) = self.lock_journal().take() {
            let window = self.options.idempotency_window;
            catching(true, || ops::checkpoint(&database, &mut journal, &self.overlay, window))
                .map_err(|fault| in_file(&self.path, fault.error))?;
            journal.remove()?;
        }
        database.close().map_err(|error| in_file(&self.path, from_redb(error).error))
    }
}

impl fmt::Debug for RedbStorage {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("RedbStorage")
            .field("path", &self.shared.path)
            .field("database_id", &self.shared.database_id)
            .field("options", &self.shared.options)
            .finish_non_exhaustive()
    }
}

impl Storage for RedbStorage {
    fn database_id(&self) -> Uuid {
        self.shared.database_id
    }

    async fn append(&self, batch: Vec<NewVersion>) -> Result<Vec<Version>, StorageError> {
        if batch.is_empty() {
            // Nothing to store, but a closed store still refuses the call.
            return match *self.shared.slot.read().await {
                Slot::Closed => Err(StorageError::Closed),
                Slot::Open(_) | Slot::Lost => Ok(Vec::new()),
            };
        }
        let appended = self
            .run(Access::Write, move |shared, database| {
                let mut journal = shared.lock_journal();
                let Some(journal) = journal.as_mut() else {
                    return Err(StorageError::Closed.into());
                };
                let window = shared.options.idempotency_window;
                let overlay = &shared.overlay;
                let appended =
                    ops::append(database, &shared.space, window, batch, journal, overlay)?;
                // A generation this append closed, or one whose checkpoint failed, is settled
                // off the appends' path.
                let checkpoint = journal.take_checkpoint();
                if let Some(last) = appended.stored.last() {
                    shared.acknowledged.fetch_max(last.id, Ordering::AcqRel);
                    shared.tails.publish_shared(Arc::clone(&appended.stored));
                }
                Ok((appended.versions, checkpoint))
            })
            .await;
        if self.shared.overlay.schedule() {
            let store = RedbStorage { shared: Arc::clone(&self.shared) };
            tokio::spawn(async move { store.apply().await });
        }
        let (versions, checkpoint) = appended?;
        if let Some(checkpoint) = checkpoint {
            let store = RedbStorage { shared: Arc::clone(&self.shared) };
            tokio::spawn(async move { store.settle(checkpoint).await });
        }
        Ok(versions)
    }

    async fn latest(&self) -> Result<Vec<Version>, StorageError> {
        self.run(Access::Read, |shared, database| {
            let (copied, txn) = shared.read(database, |overlay| overlay.latest_at(u64::MAX))?;
            Ok(overlay::join_latest(retention::latest_at(&txn, u64::MAX)?, copied))
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
        self.run(Access::Read, move |shared, database| {
            let (copied, txn) =
                shared.read(database, |overlay| overlay.since(Some(&event), after, limit))?;
            Ok(overlay::join(ops::history(&txn, &event, after, limit)?, copied, limit))
        })
        .await
    }

    async fn since(&self, after: u64, limit: usize) -> Result<Vec<Version>, StorageError> {
        self.run(Access::Read, move |shared, database| {
            let (copied, txn) =
                shared.read(database, |overlay| overlay.since(None, after, limit))?;
            Ok(overlay::join(ops::since(&txn, after, limit)?, copied, limit))
        })
        .await
    }

    async fn latest_at(&self, at: u64) -> Result<Vec<Version>, StorageError> {
        self.run(Access::Read, move |shared, database| {
            let (copied, txn) = shared.read(database, |overlay| overlay.latest_at(at))?;
            Ok(overlay::join_latest(retention::latest_at(&txn, at)?, copied))
        })
        .await
    }

    /// Removes in transactions of at most 1,024 versions, each committed without durability (so
    /// a crash may undo the last few, with their horizon); the journal's next checkpoint makes
    /// them durable, and lets later appends reuse their space. Refused with
    /// [`StorageError::Full`] when an append of nothing would be: a prune writes a few pages too.
    async fn prune(
        &self,
        event: &str,
        retention: Retention,
        limit: usize,
    ) -> Result<Pruned, StorageError> {
        let event = event.to_owned();
        self.run(Access::Write, move |shared, database| {
            shared.space.check(space::needed_for(0))?;
            let window = shared.options.idempotency_window;
            // A prune counts the versions redb holds: the overlay's first.
            ops::drain(database, &shared.overlay, window)?;
            retention::prune(database, window, &event, retention, limit)
        })
        .await
    }

    async fn horizons(&self) -> Result<Vec<Horizon>, StorageError> {
        self.run(Access::Read, |_, database| retention::horizons(database)).await
    }

    /// The lengths of the database file and of its journal.
    async fn size(&self) -> Result<Option<u64>, StorageError> {
        self.run(Access::Read, |shared, _| {
            let mut size = 0;
            for path in [shared.path.clone(), journal::path_of(&shared.path)] {
                match std::fs::metadata(&path) {
                    Ok(metadata) => size += metadata.len(),
                    // A store closed cleanly has no journal; an open one always has.
                    Err(error) if error.kind() == std::io::ErrorKind::NotFound => {}
                    Err(error) => return Err(crate::error::from_io(error).into()),
                }
            }
            Ok(Some(size))
        })
        .await
    }

    fn tail(&self, after: u64) -> Tail {
        // Weak, so that a tail does not keep the store, and with it the file and the tails
        // themselves, alive: a store dropped without `close` still ends its tails.
        let shared = Arc::downgrade(&self.shared);
        self.shared.tails.tail(after, move |after, limit| {
            let store = shared.upgrade().map(|shared| RedbStorage { shared });
            async move {
                let Some(store) = store else { return Ok(Vec::new()) };
                match store.since(after, limit).await {
                    // An empty page stops the catch-up; the closed tails then end the tail, as
                    // the trait says, rather than with an error.
                    Err(StorageError::Closed) => Ok(Vec::new()),
                    page => page,
                }
            }
        })
    }

    async fn writable(&self) -> Result<(), StorageError> {
        match self.shared.health.admit(Access::Write) {
            Admission::Go => {}
            Admission::Refuse(error) => return Err(error),
            Admission::Reopen => self.reopen().await?,
        }
        if matches!(*self.shared.slot.read().await, Slot::Closed) {
            return Err(StorageError::Closed);
        }
        let shared = Arc::clone(&self.shared);
        task::spawn_blocking(move || {
            // Room for a small append: what the engine's next insert needs at least.
            let needed = space::needed_for(0);
            shared.space.check(needed).map(drop).map_err(|error| in_file(&shared.path, error))
        })
        .await
        .map_err(from_join)?
    }

    async fn close(&self) -> Result<(), StorageError> {
        // Waits for every operation in flight: each holds a read guard until its work is done.
        let previous = std::mem::replace(&mut *self.shared.slot.write().await, Slot::Closed);
        // Every append has handed its batch to the tails by now: they end after delivering it.
        self.shared.tails.close();
        let Slot::Open(database) = previous else { return Ok(()) };
        let shared = Arc::clone(&self.shared);
        task::spawn_blocking(move || shared.close(database)).await.map_err(from_join)??;
        tracing::info!(path = %self.shared.path.display(), "closed redb storage");
        Ok(())
    }
}
