//! [`RedbOptions`]: the settings a store is opened with.

use std::time::Duration;

use broker_storage::DEFAULT_IDEMPOTENCY_WINDOW;

/// How [`RedbStorage::open_with`](crate::RedbStorage::open_with) opens and runs a store.
///
/// Start from [`RedbOptions::default`] and change the fields you need:
///
/// ```
/// use broker_storage_redb::RedbOptions;
///
/// let mut options = RedbOptions::default();
/// options.min_free_space = 256 * 1024 * 1024;
/// assert_eq!(options.cache_size, RedbOptions::DEFAULT_CACHE_SIZE);
/// ```
#[derive(Clone, Debug, PartialEq, Eq)]
#[non_exhaustive]
pub struct RedbOptions {
    /// The free space, in bytes, that must remain on the file system holding the database for an
    /// append to be attempted; 0 turns the check off. Default:
    /// [`DEFAULT_MIN_FREE_SPACE`](Self::DEFAULT_MIN_FREE_SPACE).
    ///
    /// Before each commit the store reads the space available to unprivileged users on the
    /// database's directory (`statvfs`, one system call per commit, far cheaper than the commit's
    /// `fsync`). Below this minimum, the append fails with
    /// [`StorageError::Full`](broker_storage::StorageError::Full) without writing anything.
    pub min_free_space: u64,
    /// The memory, in bytes, redb may use to cache pages of the file and buffer the pages of a
    /// commit. Default: [`DEFAULT_CACHE_SIZE`](Self::DEFAULT_CACHE_SIZE).
    pub cache_size: usize,
    /// The least time between two attempts to reopen the database after an I/O error. Default:
    /// [`DEFAULT_REOPEN_INTERVAL`](Self::DEFAULT_REOPEN_INTERVAL).
    ///
    /// After an I/O error redb refuses every write until the file is reopened, so the store
    /// reopens it on a later call; this bounds what a failure that persists (a disk still full)
    /// costs: one attempt per interval, not one per call.
    pub reopen_interval: Duration,
    /// How long an idempotency key names the version stored under it, measured from that
    /// version's timestamp. Default: [`DEFAULT_IDEMPOTENCY_WINDOW`].
    ///
    /// A retry with the same key within the window returns that version and stores nothing
    /// (see [`Storage::append`](broker_storage::Storage::append)); after it, the key stores a
    /// new version. Expired keys are deleted a few at a time by later appends, so the file keeps
    /// about one row per key used within the window, however many were used before.
    pub idempotency_window: Duration,
}

impl RedbOptions {
    /// 16 MiB. A guard that refuses appends cleanly, before the file system is full, spares the
    /// failure that follows when redb itself runs out of space mid-commit: redb then refuses
    /// every write until the file is reopened, and reopening a file that was not closed cleanly
    /// reads all of it to rebuild its allocation state. 16 MiB holds several commits of even
    /// large batches, leaves the rest of the system a little room (logs, a shell to free space
    /// from), and is too little to matter on any disk a broker is deployed to. It also stops the
    /// broker before the blocks a file system reserves for root, since the reading is of the
    /// space available to unprivileged users.
    pub const DEFAULT_MIN_FREE_SPACE: u64 = 16 * 1024 * 1024;

    /// 64 MiB. redb's own default is 1 GiB, which lets a broker's memory grow toward a gigabyte
    /// as its file grows, for little gain: appends touch only the right edge of each table, and
    /// reads of recent history and the latest versions stay within a small working set.
    pub const DEFAULT_CACHE_SIZE: usize = 64 * 1024 * 1024;

    /// One second: short enough that appends resume soon after space is freed, long enough that
    /// a store that keeps failing spends little time reopening.
    pub const DEFAULT_REOPEN_INTERVAL: Duration = Duration::from_secs(1);
}

impl Default for RedbOptions {
    fn default() -> RedbOptions {
        RedbOptions {
            min_free_space: RedbOptions::DEFAULT_MIN_FREE_SPACE,
            cache_size: RedbOptions::DEFAULT_CACHE_SIZE,
            reopen_interval: RedbOptions::DEFAULT_REOPEN_INTERVAL,
            idempotency_window: DEFAULT_IDEMPOTENCY_WINDOW,
        }
    }
}
