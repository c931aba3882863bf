//! [`Window`]: what keeps the live entries that subscribers have yet to read in memory, bounded
//! in entries and bytes.
//!
//! The live channel is a ring of `Weak<Entry>` (see `State::new`): a slot that a subscriber has
//! not read yet does not keep its entry alive. The window holds the strong references instead,
//! of the most recent entries only, and only as many as its bounds allow. When it lets an entry
//! go, the entry's data is freed (unless it is still the latest version of its event, which the
//! latest-version map keeps, or a subscriber is delivering it), even though the slots of stalled
//! subscribers still point to it; a subscriber that then reads such a slot finds the entry gone
//! and catches up from the latest versions, as one that fell behind the ring does.
//!
//! So the memory the live channel pins is bounded by the window, whatever the number of
//! subscribers and however far behind they are: about `max_bytes`, or the last batch when a
//! single batch is larger, and at most `max_entries` entries besides the last batch.
//!
//! The window also lets go, oldest first, of the entries that no slot points to any more: the
//! ring drops a slot's `Weak` once every subscriber has read it (or when nobody was subscribed
//! to receive it, or when the ring overwrites it), and no new `Weak` of an entry is made after
//! it was sent. Once an entry has none, no subscriber can read it live any more, so keeping it
//! would only hold memory. Subscribers read in order, so those entries are the oldest.

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
    /// - Letting go of the entries no slot points to never takes one from a subscriber: a
    ///   subscriber reading a slot holds a `Weak` of its own until it has upgraded it.
    pub(crate) fn new(max_entries: usize, max_bytes: usize) -> Window {
        Window { entries: VecDeque::new(), bytes: 0, max_entries, max_bytes }
    }

    /// Keeps `batch`, the entries just sent live, then lets go of the entries that no slot
    /// points to any more, and of the oldest entries before the batch while more than
    /// `max_entries` of them are kept or the window holds more than `max_bytes`.
    ///
    /// The entries let go are dropped here: this runs outside the state lock, so freeing their
    /// data delays no subscriber's start.
    pub(crate) fn keep(&mut self, batch: Vec<Arc<Entry>>) {
        let batch_len = batch.len();
        for entry in batch {
            self.bytes += entry.size();
            self.entries.push_back(entry);
        }
        self.release_read();
        let mut older = self.entries.len().saturating_sub(batch_len);
        while older > 0 && (older > self.max_entries || self.bytes > self.max_bytes) {
            self.pop_oldest();
            older -= 1;
        }
    }

    /// The entry with `id`, if the window holds it.
    pub(crate) fn find(&self, id: u64) -> Option<Arc<Entry>> {
        // Entries arrive in id order.
        let index = self.entries.binary_search_by_key(&id, |entry| entry.id()).ok()?;
        Some(self.entries[index].clone())
    }

    /// Lets go of the oldest entries that no slot of the live ring points to any more.
    ///
    /// Called after each batch and when a subscription ends, so that memory that only a
    /// subscriber now gone was holding is given back without waiting for the next commit.
    pub(crate) fn release_read(&mut self) {
        // The engine makes no `Weak` of an entry after sending it, and a reader's own `Weak` is
        // cloned from a slot's, so once an entry has none no slot or reader can point to it
        // again: a count of zero is final. A `Weak` made by anyone else only keeps it longer.
        while self.entries.front().is_some_and(|entry| Arc::weak_count(entry) == 0) {
            self.pop_oldest();
        }
    }

    fn pop_oldest(&mut self) {
        if let Some(entry) = self.entries.pop_front() {
            self.bytes -= entry.size();
        }
    }

    /// The bytes the window holds: the sum of [`Entry::size`] over its entries.
    #[cfg(test)]
    pub(crate) fn bytes(&self) -> usize {
        self.bytes
    }
}

#[cfg(test)]
mod tests {
    use std::sync::{Arc, Weak};

    use broker_storage::NewVersion;

    use super::Window;
    use crate::Entry;

    /// Entries with ids `ids`, each with `size` bytes of event name and data together.
    fn batch(ids: std::ops::RangeInclusive<u64>, size: usize) -> Vec<Arc<Entry>> {
        let data = "1".repeat(size - 1);
        ids.map(|id| Arc::new(Entry::new(NewVersion::new("e", 0, data.as_str()).with_id(id))))
            .collect()
    }

    /// The ids the window holds, after checking that its byte count matches them.
    fn ids(window: &Window) -> Vec<u64> {
        let bytes: usize = window.entries.iter().map(|entry| entry.size()).sum();
        assert_eq!(window.bytes(), bytes, "the byte count follows the entries");
        window.entries.iter().map(|entry| entry.id()).collect()
    }

    /// Keeps batches of `(entries, bytes each)` (ids counted from 1) in a window of
    /// `max_entries` and `max_bytes` while a stalled subscriber has a slot for every entry, and
    /// checks the ids the window holds after each batch.
    fn check(max_entries: usize, max_bytes: usize, batches: &[(usize, usize)], kept: &[&[u64]]) {
        let mut window = Window::new(max_entries, max_bytes);
        let mut slots: Vec<Weak<Entry>> = Vec::new();
        let mut next = 1;
        for (&(len, size), expected) in batches.iter().zip(kept) {
            let entries = batch(next..=next + len as u64 - 1, size);
            next += len as u64;
            slots.extend(entries.iter().map(Arc::downgrade));
            window.keep(entries);
            assert_eq!(ids(&window), *expected, "after the batch of {len} × {size} bytes");
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

    #[test]
    fn entries_no_slot_points_to_are_let_go_oldest_first() {
        let mut window = Window::new(100, usize::MAX);
        window.keep(batch(1..=2, 10));
        assert_eq!(ids(&window), [0; 0], "nobody was subscribed to read them");

        let entries = batch(3..=6, 10);
        let mut slots: Vec<Option<Weak<Entry>>> =
            entries.iter().map(|entry| Some(Arc::downgrade(entry))).collect();
        window.keep(entries);
        assert_eq!(ids(&window), [3, 4, 5, 6]);
        // Every subscriber read 4 and 5, but 3 is still to be read: 4 and 5 stay behind it.
        slots[1] = None;
        slots[2] = None;
        window.release_read();
        assert_eq!(ids(&window), [3, 4, 5, 6]);
        slots[0] = None;
        window.release_read();
        assert_eq!(ids(&window), [6]);
        drop(slots);
        window.release_read();
        assert_eq!(ids(&window), [0; 0]);
    }
}
