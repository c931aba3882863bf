//! [`Window`]: what keeps the most recent live entries in memory, bounded in entries and bytes.
//!
//! The live channel is a ring of `Weak<Entry>` (see `State::new`): a slot that a subscriber has
//! not read yet does not keep its entry alive. The window holds the strong references of the
//! most recent entries instead, and only as many as its bounds allow. When it lets an entry go,
//! the entry's data is freed (unless it is still the latest version of its event, which the
//! latest-version map keeps), even though the slots of stalled subscribers still point to it; a
//! subscriber that then reads such a slot finds the entry gone and catches up from the latest
//! versions, as one that fell behind the ring does.
//!
//! So the memory the live channel pins is bounded by the window, whatever the number of
//! subscribers and however far behind they are: about `max_bytes`, or the last batch when a
//! single batch is larger, and at most `max_entries` entries besides the last batch.

use std::collections::VecDeque;
use std::sync::Arc;

use crate::Entry;

/// The strong references of the most recent entries sent live, oldest first.
pub(crate) struct Window {
    entries: VecDeque<Arc<Entry>>,
    /// The sum of [`Entry::size`] over `entries`.
    bytes: usize,
    max_entries: usize,
    max_bytes: usize,
}

impl Window {
    /// An empty window that keeps, besides the last batch, at most `max_entries` entries, and
    /// lets the oldest go while it holds more than `max_bytes`.
    ///
    /// Why an entry sent live is still there for every subscriber that keeps up:
    ///
    /// - The writer sends a batch while it holds the batch's strong references itself, and hands
    ///   them to the window before it lets go of them ([`keep`](Window::keep)). The window never
    ///   evicts the batch it is given, only entries given before it. So an entry lives at least
    ///   until the next batch has been committed and sent: a subscriber that reads each entry
    ///   before the commit after it always finds it, however small `max_bytes` is.
    /// - Beyond that, an entry lives while it is among the newest `max_entries` entries before
    ///   the last batch and the window, last batch included, holds at most `max_bytes`. With
    ///   `max_entries` equal to the ring's capacity, the window covers every slot the ring still
    ///   holds, so a subscriber that has not lagged the ring finds every entry it has yet to
    ///   read, unless those entries are more than `max_bytes` together; being that far behind
    ///   is what lagging in bytes means, and it is handled like lagging the ring.
    pub(crate) fn new(max_entries: usize, max_bytes: usize) -> Window {
        Window { entries: VecDeque::new(), bytes: 0, max_entries, max_bytes }
    }

    /// Keeps `batch`, the entries just sent live, then lets the oldest entries before it go
    /// while more than `max_entries` of them are kept or the window holds more than
    /// `max_bytes`.
    ///
    /// The entries let go are dropped here: this runs in the writer, outside the state lock,
    /// so freeing their data delays no subscriber.
    pub(crate) fn keep(&mut self, batch: Vec<Arc<Entry>>) {
        let mut older = self.entries.len();
        for entry in batch {
            self.bytes += entry.size();
            self.entries.push_back(entry);
        }
        while older > 0 && (older > self.max_entries || self.bytes > self.max_bytes) {
            // `older > 0` entries come before the batch, so the front is one of them.
            let Some(evicted) = self.entries.pop_front() else { break };
            self.bytes -= evicted.size();
            older -= 1;
        }
    }

    /// The bytes the window holds: the sum of [`Entry::size`] over its entries.
    #[cfg(test)]
    pub(crate) fn bytes(&self) -> usize {
        self.bytes
    }

    /// How many entries the window holds.
    #[cfg(test)]
    pub(crate) fn len(&self) -> usize {
        self.entries.len()
    }
}

#[cfg(test)]
mod tests {
    use std::sync::Arc;

    use broker_storage::NewVersion;

    use super::Window;
    use crate::Entry;

    /// Entries with ids `ids`, each with `size` bytes of event name and data together.
    fn batch(ids: std::ops::RangeInclusive<u64>, size: usize) -> Vec<Arc<Entry>> {
        let data = "1".repeat(size - 1);
        ids.map(|id| Arc::new(Entry::new(NewVersion::new("e", 0, data.as_str()).with_id(id))))
            .collect()
    }

    /// Keeps each batch of `sizes` (ids counted from 1) in a window of `max_entries` and
    /// `max_bytes`, and checks the ids it holds after each.
    fn check(max_entries: usize, max_bytes: usize, batches: &[(usize, usize)], kept: &[&[u64]]) {
        let mut window = Window::new(max_entries, max_bytes);
        let mut next = 1;
        for (&(len, size), expected) in batches.iter().zip(kept) {
            let entries = batch(next..=next + len as u64 - 1, size);
            next += len as u64;
            window.keep(entries);
            let ids: Vec<u64> = window.entries.iter().map(|entry| entry.id()).collect();
            assert_eq!(ids, *expected, "after the batch of {len} × {size} bytes");
            let bytes: usize = window.entries.iter().map(|entry| entry.size()).sum();
            assert_eq!(window.bytes(), bytes, "the byte count follows the entries");
            assert_eq!(window.len(), ids.len());
        }
    }

    #[test]
    fn the_entry_bound_counts_the_entries_before_the_last_batch() {
        check(
            2,
            usize::MAX,
            &[(1, 10), (1, 10), (1, 10), (3, 10)],
            &[&[1], &[1, 2], &[1, 2, 3], &[2, 3, 4, 5, 6]],
        );
    }

    #[test]
    fn the_byte_bound_lets_the_oldest_go_first() {
        check(
            100,
            30,
            &[(2, 10), (1, 10), (1, 10), (1, 25)],
            &[&[1, 2], &[1, 2, 3], &[2, 3, 4], &[5]],
        );
    }

    #[test]
    fn the_last_batch_is_kept_whatever_its_size() {
        check(1, 1, &[(3, 50), (1, 50), (2, 5)], &[&[1, 2, 3], &[4], &[5, 6]]);
    }
}
