//! A bounded ring of items with monotonically increasing sequence numbers, read by cursor
//! (`after = SEQ`): the one buffer behind the DM inbox and every topic's subscriber buffer.

use std::collections::VecDeque;
use std::time::{Duration, Instant};

/// What the ring needs to know of an item: its sequence number and when it was stored.
pub trait Sequenced {
    /// The sequence number the ring assigned.
    fn seq(&self) -> u64;
    /// When it was stored (for retention).
    fn stored_at(&self) -> Instant;
}

/// Bounded ring with retention: when full, the oldest item is evicted only if the reader has
/// consumed it or it is older than the retention period; otherwise the push is refused, so a
/// reader that has not caught up never silently loses an item younger than the retention, and
/// sequence numbers never have holes.
#[derive(Debug)]
pub struct SeqRing<T> {
    items: VecDeque<T>,
    capacity: usize,
    retention: Duration,
    last_seq: u64,
    consumed: u64,
}

impl<T: Sequenced + Clone> SeqRing<T> {
    /// A new empty ring (capacity at least 1).
    pub fn new(capacity: usize, retention: Duration) -> SeqRing<T> {
        SeqRing {
            items: VecDeque::new(),
            capacity: capacity.max(1),
            retention,
            last_seq: 0,
            consumed: 0,
        }
    }

    /// Stores the item `build` makes for the next sequence number; `None` when the ring is
    /// full of unconsumed items younger than the retention (nothing is stored then).
    pub fn push_with(&mut self, now: Instant, build: impl FnOnce(u64) -> T) -> Option<u64> {
        if self.items.len() >= self.capacity {
            let evictable = self.items.front().is_some_and(|old| {
                old.seq() <= self.consumed
                    || now.saturating_duration_since(old.stored_at()) >= self.retention
            });
            if !evictable {
                return None;
            }
            self.items.pop_front();
        }
        self.last_seq += 1;
        self.items.push_back(build(self.last_seq));
        Some(self.last_seq)
    }

    /// Items with `seq > after`, at most `limit`, and the `next` cursor. The cursor never
    /// moves backwards: with nothing after `after` (even `after` past the end), `next` is
    /// `after`.
    pub fn page(&self, after: u64, limit: usize) -> (Vec<T>, u64) {
        // seqs are contiguous in the ring: index of the first item with seq > after.
        let first_seq = self.items.front().map_or(self.last_seq + 1, Sequenced::seq);
        let skip = after.saturating_add(1).saturating_sub(first_seq) as usize;
        let items: Vec<T> = self.items.iter().skip(skip).take(limit).cloned().collect();
        let next = items.last().map_or(after, Sequenced::seq);
        (items, next)
    }

    /// The reader has everything up to `seq`: those items may be evicted when the ring is full.
    pub fn consume_through(&mut self, seq: u64) {
        self.consumed = self.consumed.max(seq.min(self.last_seq));
    }

    /// Items held.
    pub fn len(&self) -> usize {
        self.items.len()
    }

    /// Whether empty.
    pub fn is_empty(&self) -> bool {
        self.items.is_empty()
    }
}
