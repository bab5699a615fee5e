//! Receiver-side DM state: the bounded inbox ring, the TTL dedupe cache and the per-peer
//! token bucket. All take `now` from the caller.

use std::collections::{HashMap, VecDeque};
use std::time::{Duration, Instant};

use crate::ring::{SeqRing, Sequenced};
use crate::{PeerId, RequestId};

/// One stored direct message.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct InboxEntry {
    /// Monotonic sequence number (first is 1).
    pub seq: u64,
    /// Sender.
    pub from: PeerId,
    /// Request id.
    pub request_id: RequestId,
    /// Payload size.
    pub size: usize,
    /// When stored.
    pub at: Instant,
}

impl Sequenced for InboxEntry {
    fn seq(&self) -> u64 {
        self.seq
    }
    fn stored_at(&self) -> Instant {
        self.at
    }
}

/// Bounded ring of delivered DMs with monotonically increasing sequence numbers.
///
/// When full, the oldest item is evicted only if it is older than the retention period;
/// otherwise the push is refused (the sender hears "busy"), so a reader that has not caught up
/// yet never silently loses messages younger than the retention. (Reading never consumes: any
/// number of readers may page the inbox.)
#[derive(Debug)]
pub struct Inbox {
    ring: SeqRing<InboxEntry>,
}

impl Inbox {
    /// A new empty inbox.
    pub fn new(capacity: usize, retention: Duration) -> Inbox {
        Inbox {
            ring: SeqRing::new(capacity, retention),
        }
    }

    /// Store a message; `None` when full of retained items.
    pub fn push(
        &mut self,
        from: PeerId,
        request_id: RequestId,
        size: usize,
        now: Instant,
    ) -> Option<u64> {
        self.ring.push_with(now, |seq| InboxEntry {
            seq,
            from,
            request_id,
            size,
            at: now,
        })
    }

    /// Items with `seq > after`, at most `limit`; returns them and the `next` cursor.
    pub fn page(&self, after: u64, limit: usize) -> (Vec<InboxEntry>, u64) {
        self.ring.page(after, limit)
    }

    /// Messages currently stored.
    pub fn len(&self) -> usize {
        self.ring.len()
    }

    /// Whether empty.
    pub fn is_empty(&self) -> bool {
        self.ring.is_empty()
    }
}

/// Result of looking a DM up in the dedupe cache.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Seen {
    /// Never seen (or expired).
    New,
    /// Seen with the same payload.
    Duplicate,
    /// Seen with a different payload.
    Conflict,
}

/// Bounded TTL cache of delivered DMs keyed by (sender, request id), remembering the payload
/// hash so a retry with the same payload is recognised and a different payload is refused.
#[derive(Debug)]
pub struct Dedupe {
    map: HashMap<(PeerId, RequestId), ([u8; 32], Instant)>,
    order: VecDeque<(PeerId, RequestId, Instant)>,
    capacity: usize,
    ttl: Duration,
}

impl Dedupe {
    /// A new empty cache.
    pub fn new(capacity: usize, ttl: Duration) -> Dedupe {
        Dedupe {
            map: HashMap::new(),
            order: VecDeque::new(),
            capacity: capacity.max(1),
            ttl,
        }
    }

    /// Look up without inserting.
    pub fn check(&mut self, from: PeerId, id: RequestId, hash: &[u8; 32], now: Instant) -> Seen {
        self.expire(now);
        match self.map.get(&(from, id)) {
            None => Seen::New,
            Some((h, _)) if h == hash => Seen::Duplicate,
            Some(_) => Seen::Conflict,
        }
    }

    /// Remember a delivered DM.
    pub fn insert(&mut self, from: PeerId, id: RequestId, hash: [u8; 32], now: Instant) {
        self.expire(now);
        while self.map.len() >= self.capacity {
            match self.order.pop_front() {
                Some((p, r, at)) => {
                    if self.map.get(&(p, r)).is_some_and(|(_, t)| *t == at) {
                        self.map.remove(&(p, r));
                    }
                }
                None => break,
            }
        }
        self.map.insert((from, id), (hash, now));
        self.order.push_back((from, id, now));
    }

    /// Drop expired entries.
    pub fn expire(&mut self, now: Instant) {
        while let Some((p, r, at)) = self.order.front().copied() {
            if now.saturating_duration_since(at) < self.ttl {
                break;
            }
            self.order.pop_front();
            if self.map.get(&(p, r)).is_some_and(|(_, t)| *t == at) {
                self.map.remove(&(p, r));
            }
        }
    }

    /// Entries held.
    pub fn len(&self) -> usize {
        self.map.len()
    }

    /// Whether empty.
    pub fn is_empty(&self) -> bool {
        self.map.is_empty()
    }
}

/// A token bucket.
#[derive(Debug, Clone)]
pub struct TokenBucket {
    tokens: f64,
    last: Instant,
}

impl TokenBucket {
    /// A full bucket.
    pub fn new(burst: u64, now: Instant) -> TokenBucket {
        TokenBucket {
            tokens: burst as f64,
            last: now,
        }
    }

    /// Take one token if available.
    pub fn take(&mut self, rate_per_sec: u64, burst: u64, now: Instant) -> bool {
        let dt = now.saturating_duration_since(self.last).as_secs_f64();
        self.last = now;
        self.tokens = (self.tokens + dt * rate_per_sec as f64).min(burst as f64);
        if self.tokens >= 1.0 {
            self.tokens -= 1.0;
            true
        } else {
            false
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const A: PeerId = PeerId([1; 32]);

    #[test]
    fn inbox_is_a_bounded_ring_with_monotonic_seq() {
        let t0 = Instant::now();
        let mut inbox = Inbox::new(2, Duration::from_secs(10));
        assert_eq!(inbox.push(A, [1; 16], 1, t0), Some(1));
        assert_eq!(inbox.push(A, [2; 16], 1, t0), Some(2));
        // Full of retained items: busy.
        assert_eq!(inbox.push(A, [3; 16], 1, t0 + Duration::from_secs(1)), None);
        // After retention the oldest is evicted and seq keeps increasing.
        assert_eq!(
            inbox.push(A, [3; 16], 1, t0 + Duration::from_secs(11)),
            Some(3)
        );
        let (items, next) = inbox.page(0, 10);
        assert_eq!(items.iter().map(|e| e.seq).collect::<Vec<_>>(), vec![2, 3]);
        assert_eq!(next, 3);
        let (items, next) = inbox.page(2, 10);
        assert_eq!(items.len(), 1);
        assert_eq!(next, 3);
        let (items, next) = inbox.page(3, 10);
        assert!(items.is_empty());
        assert_eq!(next, 3);
        // A cursor past the end never moves backwards.
        let (items, next) = inbox.page(1000, 10);
        assert!(items.is_empty());
        assert_eq!(next, 1000);
        let (items, _) = inbox.page(0, 1);
        assert_eq!(items[0].seq, 2);
    }

    #[test]
    fn dedupe_detects_duplicates_conflicts_and_expires() {
        let t0 = Instant::now();
        let mut d = Dedupe::new(2, Duration::from_secs(5));
        assert_eq!(d.check(A, [1; 16], &[7; 32], t0), Seen::New);
        d.insert(A, [1; 16], [7; 32], t0);
        assert_eq!(d.check(A, [1; 16], &[7; 32], t0), Seen::Duplicate);
        assert_eq!(d.check(A, [1; 16], &[8; 32], t0), Seen::Conflict);
        assert_eq!(
            d.check(A, [1; 16], &[7; 32], t0 + Duration::from_secs(6)),
            Seen::New
        );
        // Capacity bound evicts the oldest.
        d.insert(A, [1; 16], [7; 32], t0);
        d.insert(A, [2; 16], [7; 32], t0);
        d.insert(A, [3; 16], [7; 32], t0);
        assert_eq!(d.len(), 2);
        assert_eq!(d.check(A, [1; 16], &[7; 32], t0), Seen::New);
    }

    #[test]
    fn token_bucket_limits_and_refills() {
        let t0 = Instant::now();
        let mut b = TokenBucket::new(2, t0);
        assert!(b.take(1, 2, t0));
        assert!(b.take(1, 2, t0));
        assert!(!b.take(1, 2, t0));
        assert!(b.take(1, 2, t0 + Duration::from_secs(1)));
    }
}
