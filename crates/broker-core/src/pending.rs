//! [`Pending`]: the inserts the writer has taken from its queue and not yet committed, and how
//! each commit's batch is cut from them.
//!
//! A commit holds at most [`max_batch`](crate::Config::max_batch) versions: the most the
//! storage stores atomically (a NATS JetStream batch holds 1000 messages). An insert of several
//! versions is never split over two commits, since that would make it visible half-stored: one
//! that does not fit in the rest of a batch waits for the next commit, where it goes first, so
//! that inserts are committed in the order they were queued.

use std::collections::VecDeque;

use crate::item::Insert;

/// Inserts taken from the queue, oldest first, with their versions counted.
pub(crate) struct Pending {
    inserts: VecDeque<Insert>,
    /// The versions of every insert in `inserts`.
    versions: usize,
    max_batch: usize,
}

impl Pending {
    /// No inserts, and batches of at most `max_batch` versions (at least one).
    pub(crate) fn new(max_batch: usize) -> Pending {
        Pending { inserts: VecDeque::new(), versions: 0, max_batch: max_batch.max(1) }
    }

    pub(crate) fn is_empty(&self) -> bool {
        self.inserts.is_empty()
    }

    /// Whether the next batch may still take more from the queue: not once the inserts held
    /// already fill it. This also bounds what is held to one batch and one insert more.
    pub(crate) fn has_room(&self) -> bool {
        self.versions < self.max_batch
    }

    /// Adds `insert`, the newest.
    pub(crate) fn push(&mut self, insert: Insert) {
        self.versions += insert.len();
        self.inserts.push_back(insert);
    }

    /// Moves the next batch into `batch`: the oldest inserts whose versions, together, are at
    /// most `max_batch`. The first one always goes, even alone over the limit, so that nothing
    /// waits forever; the broker refuses such inserts before queueing them.
    pub(crate) fn next_batch(&mut self, batch: &mut Vec<Insert>) {
        let mut versions = 0;
        while let Some(oldest) = self.inserts.front() {
            let len = oldest.len();
            if versions > 0 && versions + len > self.max_batch {
                break;
            }
            versions += len;
            self.versions -= len;
            batch.extend(self.inserts.pop_front());
        }
    }
}

#[cfg(test)]
mod tests {
    use std::time::Instant;

    use broker_storage::NewVersion;
    use tokio::sync::oneshot;

    use super::Pending;
    use crate::item::{Insert, Versions};

    /// An insert of `len` versions (a single insert for 0), each of the event `name`.
    fn insert(name: &str, len: usize) -> Insert {
        let new = || NewVersion::new(name, 0, "1");
        let versions = if len == 0 {
            Versions::One(new(), oneshot::channel().0)
        } else {
            Versions::Many((0..len).map(|_| new()).collect(), oneshot::channel().0)
        };
        Insert { versions, queued: Instant::now() }
    }

    /// The batches cut from inserts of `sizes` (0 for a single insert) with `max_batch`, each
    /// as the sizes of its inserts.
    fn batches(max_batch: usize, sizes: &[usize]) -> Vec<Vec<usize>> {
        let mut pending = Pending::new(max_batch);
        for (index, &len) in sizes.iter().enumerate() {
            pending.push(insert(&index.to_string(), len));
        }
        let mut cut = Vec::new();
        while !pending.is_empty() {
            let mut batch = Vec::new();
            pending.next_batch(&mut batch);
            let names: Vec<usize> = batch
                .iter()
                .map(|insert| match &insert.versions {
                    Versions::One(new, _) => new.event.parse().expect("a number"),
                    Versions::Many(news, _) => news[0].event.parse().expect("a number"),
                })
                .collect();
            // Inserts come out whole and in the order they were pushed.
            assert!(names.windows(2).all(|pair| pair[0] + 1 == pair[1]), "{names:?}");
            cut.push(batch.iter().map(Insert::len).collect());
        }
        cut
    }

    #[test]
    fn batches_count_versions_never_split_an_insert_and_carry_the_rest_over() {
        let check = |max_batch, sizes: &[usize], expected: &[&[usize]]| {
            let expected: Vec<Vec<usize>> = expected.iter().map(|batch| batch.to_vec()).collect();
            assert_eq!(batches(max_batch, sizes), expected, "max_batch {max_batch}, {sizes:?}");
        };
        // Single inserts fill a batch one version each.
        check(3, &[0, 0, 0, 0, 0], &[&[1, 1, 1], &[1, 1]]);
        // An array that does not fit in the rest of a batch goes first in the next one.
        check(10, &[0, 0, 9, 0], &[&[1, 1], &[9, 1]]);
        check(10, &[4, 4, 4, 4], &[&[4, 4], &[4, 4]]);
        // An array of exactly max_batch versions fills a commit alone.
        check(10, &[0, 10, 0], &[&[1], &[10], &[1]]);
        check(10, &[10, 10], &[&[10], &[10]]);
        check(1000, &[999, 2, 0, 0], &[&[999], &[2, 1, 1]]);
        // An insert over the limit, which the broker refuses before queueing, still goes alone.
        check(10, &[0, 11, 0], &[&[1], &[11], &[1]]);
    }

    #[test]
    fn room_is_counted_in_versions() {
        let mut pending = Pending::new(10);
        assert!(pending.has_room());
        pending.push(insert("a", 9));
        assert!(pending.has_room(), "9 of 10 versions");
        pending.push(insert("b", 0));
        assert!(!pending.has_room(), "10 of 10 versions");
        let mut batch = Vec::new();
        pending.next_batch(&mut batch);
        assert_eq!(batch.len(), 2);
        assert!(pending.is_empty() && pending.has_room());
    }
}
