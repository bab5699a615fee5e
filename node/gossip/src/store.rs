//! Bounded per-topic memory of messages: the payload cache (TTL + count + bytes caps) that
//! serves repair and anti-entropy, and the per-stream sequence index that dedupes and tells
//! anti-entropy what is missing.

use std::{
    collections::{BTreeMap, BTreeSet, VecDeque},
    time::Duration,
};

use crate::{
    proto::{MsgId, PushKind},
    score::TreeLag,
};

/// One cached message.
#[derive(Debug, Clone)]
pub(crate) struct Cached<PI> {
    pub payload: Vec<u8>,
    /// Hops it took to reach us (0 = we published it).
    pub hops: u16,
    pub published_at_ms: u64,
    pub received_at: Duration,
    /// Who gave it to us first (`None` = we published it).
    pub from: Option<PI>,
    pub kind: PushKind,
}

/// Payload cache: FIFO by arrival, evicted by TTL, count and bytes.
#[derive(Debug)]
pub(crate) struct Cache<PI> {
    entries: BTreeMap<MsgId<PI>, Cached<PI>>,
    order: VecDeque<(Duration, MsgId<PI>)>,
    bytes: usize,
}

impl<PI: Ord + Clone> Cache<PI> {
    pub fn new() -> Self {
        Self {
            entries: BTreeMap::new(),
            order: VecDeque::new(),
            bytes: 0,
        }
    }

    pub fn len(&self) -> usize {
        self.entries.len()
    }

    pub fn get(&self, id: &MsgId<PI>) -> Option<&Cached<PI>> {
        self.entries.get(id)
    }

    pub fn insert(&mut self, id: MsgId<PI>, entry: Cached<PI>, cap: usize, cap_bytes: usize) {
        if self.entries.contains_key(&id) {
            return;
        }
        let size = entry.payload.len();
        while !self.order.is_empty() && (self.entries.len() >= cap || self.bytes + size > cap_bytes)
        {
            self.pop_oldest();
        }
        if cap == 0 || size > cap_bytes {
            return;
        }
        self.bytes += size;
        self.order.push_back((entry.received_at, id.clone()));
        self.entries.insert(id, entry);
    }

    fn pop_oldest(&mut self) {
        if let Some((_, id)) = self.order.pop_front()
            && let Some(old) = self.entries.remove(&id)
        {
            self.bytes = self.bytes.saturating_sub(old.payload.len());
        }
    }

    /// Drops everything cached longer than `ttl`.
    pub fn expire(&mut self, now: Duration, ttl: Duration) {
        while let Some((at, _)) = self.order.front() {
            if at.saturating_add(ttl) > now {
                break;
            }
            self.pop_oldest();
        }
    }

    /// Cached messages of one stream with `seq >= from`, in sequence order.
    pub fn stream_from<'a>(
        &'a self,
        origin: &PI,
        epoch: u64,
        from: u64,
    ) -> impl Iterator<Item = (&'a MsgId<PI>, &'a Cached<PI>)> + 'a {
        let lo = MsgId {
            origin: origin.clone(),
            epoch,
            seq: from,
        };
        let hi = MsgId {
            origin: origin.clone(),
            epoch,
            seq: u64::MAX,
        };
        self.entries.range(lo..=hi)
    }

    /// Records a shorter path to a cached message (after a tree optimisation).
    pub fn update_path(&mut self, id: &MsgId<PI>, from: PI, hops: u16) {
        if let Some(c) = self.entries.get_mut(id) {
            c.from = Some(from);
            c.hops = hops;
        }
    }
}

/// What we know of one (origin, epoch) stream: every seq `<= contiguous` was received, plus
/// the out-of-order ones in `above`.
#[derive(Debug, Clone)]
pub(crate) struct Stream {
    pub contiguous: u64,
    pub above: BTreeSet<u64>,
    pub touched: Duration,
    /// How late this publisher's messages come down the tree behind their first IHAVE (the
    /// learned graft wait for it).
    pub lag: TreeLag,
}

impl Stream {
    pub fn high(&self) -> u64 {
        self.above.last().copied().unwrap_or(0).max(self.contiguous)
    }

    /// Sequence numbers below `high` that we lack, lowest first, at most `limit`.
    pub fn gaps(&self, limit: usize) -> Vec<u64> {
        let mut gaps = Vec::new();
        let mut next = self.contiguous.saturating_add(1);
        for &have in &self.above {
            while next < have && gaps.len() < limit {
                gaps.push(next);
                next += 1;
            }
            if gaps.len() >= limit {
                break;
            }
            next = have.saturating_add(1);
        }
        gaps
    }

    pub fn contains(&self, seq: u64) -> bool {
        seq <= self.contiguous || self.above.contains(&seq)
    }
}

/// Per-stream sequence index: dedupe without remembering every id, and the input of
/// anti-entropy digests. Bounded by a stream count (least recently touched evicted) and a
/// per-stream out-of-order window.
#[derive(Debug)]
pub(crate) struct Streams<PI> {
    streams: BTreeMap<(PI, u64), Stream>,
}

impl<PI: Ord + Clone> Streams<PI> {
    pub fn new() -> Self {
        Self {
            streams: BTreeMap::new(),
        }
    }

    pub fn len(&self) -> usize {
        self.streams.len()
    }

    pub fn contains(&self, id: &MsgId<PI>) -> bool {
        // Borrowed tuple lookup needs an owned key; streams are few, ids clone cheaply.
        self.streams
            .get(&(id.origin.clone(), id.epoch))
            .is_some_and(|s| s.contains(id.seq))
    }

    #[cfg(test)]
    pub fn get(&self, origin: &PI, epoch: u64) -> Option<&Stream> {
        self.streams.get(&(origin.clone(), epoch))
    }

    pub fn iter(&self) -> impl Iterator<Item = (&(PI, u64), &Stream)> {
        self.streams.iter()
    }

    /// The learned tree lag of `id`'s stream if it delivered since `since`; `None` for a
    /// publisher not heard yet or not lately (the tree may have changed since).
    pub fn lag(&self, id: &MsgId<PI>, since: Duration) -> Option<&TreeLag> {
        self.streams
            .get(&(id.origin.clone(), id.epoch))
            .filter(|s| s.touched >= since)
            .map(|s| &s.lag)
    }

    /// A tree-lag sample for `id`'s stream (ignored for an unknown stream).
    pub fn lag_sample(&mut self, id: &MsgId<PI>, sample: Duration) {
        if let Some(s) = self.streams.get_mut(&(id.origin.clone(), id.epoch)) {
            s.lag.sample(sample);
        }
    }

    /// Records `id`; false when it was already known (a duplicate).
    pub fn insert(&mut self, id: &MsgId<PI>, now: Duration, cap: usize, window: usize) -> bool {
        let key = (id.origin.clone(), id.epoch);
        if !self.streams.contains_key(&key) && self.streams.len() >= cap.max(1) {
            // Evict the least recently touched stream. O(cap), only when a new stream appears.
            if let Some(oldest) = self
                .streams
                .iter()
                .min_by_key(|(_, s)| s.touched)
                .map(|(k, _)| k.clone())
            {
                self.streams.remove(&oldest);
            }
        }
        let stream = self.streams.entry(key).or_insert_with(|| Stream {
            contiguous: 0,
            above: BTreeSet::new(),
            touched: now,
            lag: TreeLag::default(),
        });
        if stream.contains(id.seq) {
            return false;
        }
        stream.touched = now;
        if id.seq == stream.contiguous.saturating_add(1) {
            stream.contiguous = id.seq;
        } else {
            stream.above.insert(id.seq);
            if stream.above.len() > window.max(1) {
                // Give up the oldest gap: everything up to the lowest out-of-order seq counts
                // as seen. Bounded memory beats perfect recall of ancient gaps.
                if let Some(lowest) = stream.above.pop_first() {
                    stream.contiguous = lowest;
                }
            }
        }
        while let Some(&next) = stream.above.first() {
            if next == stream.contiguous.saturating_add(1) || next <= stream.contiguous {
                stream.above.pop_first();
                stream.contiguous = stream.contiguous.max(next);
            } else {
                break;
            }
        }
        true
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn id(seq: u64) -> MsgId<u32> {
        MsgId {
            origin: 7,
            epoch: 1,
            seq,
        }
    }

    fn cached(at_ms: u64, size: usize) -> Cached<u32> {
        Cached {
            payload: vec![0; size],
            hops: 1,
            published_at_ms: 0,
            received_at: Duration::from_millis(at_ms),
            from: Some(1),
            kind: PushKind::Eager,
        }
    }

    #[test]
    fn cache_expires_by_ttl_and_respects_caps() {
        let mut cache = Cache::new();
        for seq in 1..=10 {
            cache.insert(id(seq), cached(seq * 100, 10), 4, 1000);
        }
        assert_eq!(cache.len(), 4, "count cap");
        assert!(cache.get(&id(6)).is_none());
        assert!(cache.get(&id(7)).is_some());
        cache.expire(Duration::from_millis(900 + 500), Duration::from_millis(500));
        assert!(
            cache.get(&id(9)).is_none(),
            "cached at 900, ttl 500: gone at 1400"
        );
        assert!(cache.get(&id(10)).is_some());

        let mut small = Cache::new();
        small.insert(id(1), cached(0, 60), 100, 100);
        small.insert(id(2), cached(0, 60), 100, 100);
        assert_eq!(small.len(), 1, "byte cap evicts the oldest");
        assert!(small.get(&id(2)).is_some());
        small.insert(id(3), cached(0, 500), 100, 100);
        assert!(
            small.get(&id(3)).is_none(),
            "larger than the whole cache: not cached"
        );
    }

    #[test]
    fn streams_dedupe_and_report_gaps() {
        let mut s = Streams::new();
        let now = Duration::ZERO;
        assert!(s.insert(&id(1), now, 10, 100));
        assert!(!s.insert(&id(1), now, 10, 100));
        assert!(s.insert(&id(4), now, 10, 100));
        assert!(s.insert(&id(6), now, 10, 100));
        let st = s.get(&7, 1).cloned();
        let st = st.as_ref();
        assert_eq!(st.map(Stream::high), Some(6));
        assert_eq!(st.map(|x| x.gaps(10)), Some(vec![2, 3, 5]));
        assert_eq!(st.map(|x| x.gaps(2)), Some(vec![2, 3]));
        assert!(s.insert(&id(2), now, 10, 100));
        assert!(s.insert(&id(3), now, 10, 100));
        assert_eq!(s.get(&7, 1).map(|x| x.contiguous), Some(4));
        assert!(s.insert(&id(5), now, 10, 100));
        assert_eq!(s.get(&7, 1).map(|x| x.contiguous), Some(6));
        assert!(s.get(&7, 1).is_some_and(|x| x.above.is_empty()));
    }

    #[test]
    fn streams_stay_bounded() {
        let mut s = Streams::new();
        for origin in 0..50u32 {
            let id = MsgId {
                origin,
                epoch: 0,
                seq: 1,
            };
            s.insert(&id, Duration::from_millis(u64::from(origin)), 8, 4);
        }
        assert_eq!(s.len(), 8);
        // window: far-out-of-order seqs give up the oldest gap instead of growing
        for seq in (10..1000).step_by(10) {
            s.insert(&id(seq), Duration::ZERO, 100, 4);
        }
        assert!(s.get(&7, 1).is_some_and(|x| x.above.len() <= 4));
        // u64::MAX never overflows
        assert!(s.insert(&id(u64::MAX), Duration::ZERO, 100, 4));
        assert!(!s.insert(&id(u64::MAX), Duration::ZERO, 100, 4));
    }
}
