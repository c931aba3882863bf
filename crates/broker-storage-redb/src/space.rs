//! Free space on the file system that holds the database: the guard checked before each commit.
//!
//! The guard refuses an append in three cases: less than the configured minimum is free, less
//! than the append itself may need, or the device filled up under a commit and no space has been
//! freed since. The last keeps a store whose disk is full from retrying commits that would fail
//! again: each failed commit leaves redb unusable until the file is reopened, and reopening a file
//! that was not closed cleanly reads all of it.
//!
//! The second matters even with the minimum off. The journal makes an append durable before redb
//! holds it durably; should redb then run out of space, the versions are safe in the journal, but
//! the reopen that follows must write them into redb before the database can be read again, which
//! a full disk does not allow. So an append is only attempted while its rows fit with room to
//! spare.

use std::path::{Path, PathBuf};
use std::sync::Mutex;

use broker_storage::StorageError;
use nix::sys::statvfs::statvfs;

/// Reads the free space of the database's directory, and refuses appends when it is short.
#[derive(Debug)]
pub(crate) struct Space {
    /// The directory holding the database file: its file system is the one that fills up.
    dir: PathBuf,
    /// The minimum in bytes; 0 when the guard is off.
    min_free: u64,
    /// The free space measured when a commit last failed for lack of space, until more is free.
    filled_at: Mutex<Option<u64>>,
}

impl Space {
    /// The guard for the database file at `path`, keeping `min_free` bytes free.
    pub(crate) fn new(path: &Path, min_free: u64) -> Space {
        let dir = match path.parent() {
            Some(parent) if !parent.as_os_str().is_empty() => parent.to_path_buf(),
            // A bare file name lives in the working directory.
            _ => PathBuf::from("."),
        };
        Space { dir, min_free, filled_at: Mutex::new(None) }
    }

    /// The bytes available to unprivileged users on the directory's file system, or `None` when
    /// the file system cannot say.
    ///
    /// One `statvfs` call: a few microseconds, where the commit it precedes waits for `fsync`.
    fn available(&self) -> Option<u64> {
        match statvfs(&self.dir) {
            // Both are C integer types, already `u64` on 64-bit Linux but narrower on some other
            // platforms: the conversions are there for those.
            #[allow(clippy::useless_conversion)]
            Ok(stats) => Some(
                u64::from(stats.blocks_available())
                    .saturating_mul(u64::from(stats.fragment_size())),
            ),
            Err(error) => {
                tracing::warn!(dir = %self.dir.display(), %error, "cannot read the free space");
                None
            }
        }
    }

    /// Records that a commit failed because the device is full, with the free space now.
    pub(crate) fn filled_up(&self) {
        let free = self.available();
        *self.filled_at.lock().unwrap_or_else(|poison| poison.into_inner()) = free;
    }

    /// Fails with [`StorageError::Full`] when less than the minimum is free, less than `needed`
    /// bytes (what the write about to start may take; 0 for none), or when the device filled up
    /// and nothing has been freed since. One `statvfs` call, when any applies. The message does
    /// not name the file; the caller does.
    ///
    /// Returns the free space it read, if it read it.
    ///
    /// A file system that cannot report its free space is let through: the guard is there to
    /// stop before redb runs out of space, and redb reports a full disk by itself.
    pub(crate) fn check(&self, needed: u64) -> Result<Option<u64>, StorageError> {
        let mut filled_at = self.filled_at.lock().unwrap_or_else(|poison| poison.into_inner());
        if self.min_free == 0 && needed == 0 && filled_at.is_none() {
            return Ok(None);
        }
        let Some(free) = self.available() else { return Ok(None) };
        if let Some(before) = *filled_at {
            if free <= before {
                return Err(StorageError::Full(format!(
                    "its file system filled up, and no space has been freed since ({} free)",
                    mebibytes(free)
                )));
            }
            *filled_at = None;
        }
        if free < self.min_free {
            return Err(StorageError::Full(format!(
                "its file system has {} free, below the minimum of {} kept free",
                mebibytes(free),
                mebibytes(self.min_free)
            )));
        }
        if free < needed {
            // As if the device had filled up: every append is refused, a small one too, until
            // space is freed, rather than let appends through and refuse them by their size.
            *filled_at = Some(free);
            return Err(StorageError::Full(format!(
                "its file system has {} free, less than the {} this append may need",
                mebibytes(free),
                mebibytes(needed)
            )));
        }
        Ok(Some(free))
    }
}

/// What an append whose journal record takes `record` bytes may need on disk: its rows in redb's
/// three tables, with their pages, and a margin for the pages a commit rewrites.
pub(crate) fn needed_for(record: u64) -> u64 {
    const MARGIN: u64 = 1024 * 1024;
    record.saturating_mul(4).saturating_add(MARGIN)
}

/// `bytes` in MiB with one decimal, rounded down, so that a free space just below the minimum
/// does not print as equal to it.
fn mebibytes(bytes: u64) -> String {
    let tenths = bytes.saturating_mul(10) / (1024 * 1024);
    format!("{}.{} MiB", tenths / 10, tenths % 10)
}
