//! Whether the open database is usable, and when a failed one may be reopened.
//!
//! redb latches its first I/O error: from then on it refuses every write, and every read that
//! misses its cache, until the database is closed and opened again. The store records that here
//! and reopens the file on a later call. This module decides which call: at most one attempt per
//! [`reopen_interval`](crate::RedbOptions::reopen_interval), so that a failure that persists costs
//! one reopen per interval rather than one per call.

use std::sync::{Mutex, MutexGuard};
use std::time::{Duration, Instant};

use broker_storage::StorageError;

/// What a call is about to do; a failed database refuses writes but lets reads try.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Access {
    /// `latest`, `history`, `since`, `backup`: answered from the old handle while it still can
    /// (redb keeps serving pages from its cache), since refusing them would gain nothing.
    Read,
    /// `append`: refused at once while the database is failed, since redb would refuse it too.
    Write,
}

/// What a call should do before touching the database.
#[derive(Debug)]
pub(crate) enum Admission {
    /// The database is usable, or the call is a read and may try it.
    Go,
    /// Fail with this error, without touching the database.
    Refuse(StorageError),
    /// Reopen the database first: this call won the attempt of this interval.
    Reopen,
}

/// The failure state of one store, behind a mutex that is never held across an await or a
/// blocking call.
#[derive(Debug)]
pub(crate) struct Health {
    interval: Duration,
    state: Mutex<State>,
}

#[derive(Debug, Default)]
struct State {
    /// The failure the database has not yet recovered from.
    failure: Option<Failure>,
    /// When the last reopen was attempted, which the next one waits an interval after.
    last_attempt: Option<Instant>,
}

#[derive(Debug)]
struct Failure {
    kind: Kind,
    /// The message of the error that failed the database, file name included.
    message: String,
}

/// The variant of the error that failed the database, to rebuild it for each refused call.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Kind {
    Full,
    Corrupt,
    Backend,
}

impl Health {
    /// A healthy database that waits `interval` between two reopen attempts.
    pub(crate) fn new(interval: Duration) -> Health {
        Health { interval, state: Mutex::default() }
    }

    fn lock(&self) -> MutexGuard<'_, State> {
        // Nothing panics while the lock is held, so a poisoned lock still holds a whole state.
        self.state.lock().unwrap_or_else(|poison| poison.into_inner())
    }

    /// Decides what a call with `access` does first.
    pub(crate) fn admit(&self, access: Access) -> Admission {
        let mut state = self.lock();
        let Some(failure) = &state.failure else { return Admission::Go };
        let now = Instant::now();
        let due = state.last_attempt.is_none_or(|last| now >= last + self.interval);
        if due {
            // Claimed before the reopen starts, so that the calls arriving meanwhile are refused
            // at once instead of queueing behind it.
            state.last_attempt = Some(now);
            return Admission::Reopen;
        }
        match access {
            Access::Read => Admission::Go,
            Access::Write => Admission::Refuse(failure.error(access)),
        }
    }

    /// Records that the database failed with `error` and must be reopened, and returns the error
    /// for the failing call.
    ///
    /// The first failure is kept until the database recovers: the errors of the calls that meet
    /// the failed database after it ("previous I/O error") say less than it does.
    pub(crate) fn fail(&self, access: Access, error: StorageError) -> StorageError {
        {
            let mut state = self.lock();
            if let Some(failure) = &state.failure {
                return failure.error(access);
            }
            state.failure = Some(Failure::new(&error));
        }
        tracing::warn!(%error, "storage failed; the database will be reopened");
        error
    }

    /// Replaces the recorded failure with the one that made a reopen attempt fail.
    pub(crate) fn reopen_failed(&self, error: &StorageError) {
        self.lock().failure = Some(Failure::new(error));
    }

    /// The error for a call refused because the database is failed, or `None` when it is not.
    pub(crate) fn refusal(&self, access: Access) -> Option<StorageError> {
        self.lock().failure.as_ref().map(|failure| failure.error(access))
    }

    /// Records that the database was reopened and is usable again.
    pub(crate) fn recovered(&self) {
        self.lock().failure = None;
    }
}

impl Failure {
    fn new(error: &StorageError) -> Failure {
        let (kind, message) = match error {
            StorageError::Full(message) => (Kind::Full, message.clone()),
            StorageError::Corrupt(message) => (Kind::Corrupt, message.clone()),
            StorageError::Backend(source) => (Kind::Backend, source.to_string()),
            error => (Kind::Backend, error.to_string()),
        };
        Failure { kind, message }
    }

    /// The error a call with `access` gets while the database is failed.
    ///
    /// A read never reports a full disk ([`StorageError::Full`] is for writes): it gets a backend
    /// error that says why the database cannot be read.
    fn error(&self, access: Access) -> StorageError {
        match (self.kind, access) {
            (Kind::Full, Access::Write) => StorageError::Full(self.message.clone()),
            (Kind::Corrupt, _) => StorageError::Corrupt(self.message.clone()),
            _ => StorageError::backend(format!(
                "the database is unusable until it is reopened, after: {}",
                self.message
            )),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn full() -> StorageError {
        StorageError::Full("broker.redb: no space left on device".to_owned())
    }

    #[test]
    fn a_failed_database_refuses_writes_and_lets_reads_try_until_the_next_attempt() {
        let health = Health::new(Duration::from_secs(3600));
        assert!(matches!(health.admit(Access::Write), Admission::Go));
        let error = health.fail(Access::Write, full());
        assert!(matches!(error, StorageError::Full(_)), "{error:?}");
        // The first call after a failure reopens; the next ones wait for the interval.
        assert!(matches!(health.admit(Access::Read), Admission::Reopen));
        assert!(matches!(health.admit(Access::Write), Admission::Refuse(StorageError::Full(_))));
        assert!(matches!(health.admit(Access::Read), Admission::Go));
        assert!(
            matches!(health.refusal(Access::Read), Some(StorageError::Backend(_))),
            "a read never reports a full disk"
        );
        health.recovered();
        assert!(matches!(health.admit(Access::Write), Admission::Go));
        assert!(health.refusal(Access::Write).is_none());
    }

    #[test]
    fn the_first_failure_is_kept_until_recovery() {
        let health = Health::new(Duration::from_secs(3600));
        health.fail(Access::Write, full());
        let later = health.fail(Access::Read, StorageError::backend("previous I/O error"));
        assert!(matches!(later, StorageError::Backend(_)), "reads never get Full: {later:?}");
        let later = health.fail(Access::Write, StorageError::backend("previous I/O error"));
        assert!(matches!(later, StorageError::Full(_)), "the first failure is kept: {later:?}");
    }

    #[test]
    fn reopen_attempts_are_one_per_interval() {
        let health = Health::new(Duration::ZERO);
        health.fail(Access::Write, full());
        assert!(matches!(health.admit(Access::Read), Admission::Reopen));
        health.reopen_failed(&StorageError::Corrupt("damaged".to_owned()));
        assert!(matches!(health.admit(Access::Write), Admission::Reopen));

        let health = Health::new(Duration::from_secs(3600));
        health.fail(Access::Write, full());
        assert!(matches!(health.admit(Access::Write), Admission::Reopen));
        health.recovered();
        // A new failure soon after a reopen waits for the interval.
        health.fail(Access::Write, full());
        assert!(matches!(health.admit(Access::Write), Admission::Refuse(_)));
        assert!(matches!(health.admit(Access::Read), Admission::Go));
    }
}
