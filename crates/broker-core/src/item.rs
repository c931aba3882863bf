//! What one insert puts in the writer's queue, and how it is answered once committed.
//!
//! An insert holds one version ([`Broker::insert`](crate::Broker::insert)) or several that are
//! stored together ([`Broker::insert_many`](crate::Broker::insert_many)). The single version
//! keeps a variant of its own, so that the most common insert costs no list and no extra
//! allocation on its way to the storage.

use std::sync::Arc;
use std::time::Instant;

use broker_storage::{NewVersion, Version};
use tokio::sync::oneshot;

use crate::state::State;
use crate::{Entry, Error};

/// The answer a single insert waits for.
pub(crate) type OneReply = oneshot::Sender<Result<Arc<Entry>, Error>>;
/// The answer an insert of several versions waits for: one entry per version, in order.
pub(crate) type ManyReply = oneshot::Sender<Result<Vec<Arc<Entry>>, Error>>;

/// One insert waiting for its commit.
pub(crate) struct Insert {
    pub(crate) versions: Versions,
    /// When it was queued.
    pub(crate) queued: Instant,
}

/// The versions of one insert, with the channel its answer goes back on.
pub(crate) enum Versions {
    /// One version.
    One(NewVersion, OneReply),
    /// Several versions, committed together or not at all, and never split over two commits.
    Many(Vec<NewVersion>, ManyReply),
}

impl Insert {
    /// How many versions the insert holds: what it takes of a commit's
    /// [`max_batch`](crate::Config::max_batch).
    pub(crate) fn len(&self) -> usize {
        match &self.versions {
            Versions::One(..) => 1,
            Versions::Many(versions, _) => versions.len(),
        }
    }

    /// Answers the insert with `error` without committing it.
    pub(crate) fn refuse(self, error: Error) {
        match self.versions {
            Versions::One(_, reply) => Reply::One(reply).fail(error),
            Versions::Many(_, reply) => Reply::Many(reply).fail(error),
        }
    }
}

/// Where the answer of an insert goes, once its versions are out in a batch.
pub(crate) enum Reply {
    One(OneReply),
    Many(ManyReply),
}

impl Reply {
    /// Answers the insert with `error`: none of its versions was stored.
    pub(crate) fn fail(self, error: Error) {
        // The inserter may have gone away; nothing was stored either way.
        match self {
            Reply::One(reply) => {
                let _ = reply.send(Err(error));
            }
            Reply::Many(reply) => {
                let _ = reply.send(Err(error));
            }
        }
    }
}

/// The outcome of one committed insert, held until the storage's tail has delivered it.
pub(crate) enum Answer {
    One(OneReply, Result<Version, Error>),
    Many(ManyReply, Result<Vec<Version>, Error>),
}

impl Answer {
    /// Answers the insert with the entries its subscribers share: from `published`, a batch the
    /// feed published last (in id order), or from what the engine still holds, or new ones.
    pub(crate) fn send(self, state: &State, published: &[Arc<Entry>]) {
        let entry = |version: Version| {
            let id = version.id;
            match published.binary_search_by_key(&id, |entry| entry.id()) {
                Ok(index) => published[index].clone(),
                Err(_) => state.find(id).unwrap_or_else(|| Arc::new(Entry::new(version))),
            }
        };
        // The inserter may have gone away; its versions are stored all the same.
        match self {
            Answer::One(reply, result) => {
                let _ = reply.send(result.map(entry));
            }
            Answer::Many(reply, result) => {
                let _ =
                    reply.send(result.map(|versions| versions.into_iter().map(entry).collect()));
            }
        }
    }
}
