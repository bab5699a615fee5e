//! The transient-connection manager: the one owner of connections that are not established
//! yet — inbound handshakes and outbound dials — with a budget per direction and a deadline
//! (the authentication timeout) for each.
//!
//! A transient connection is **reserved** ([`Transients::try_reserve`]) before any work starts,
//! then either **promoted** ([`Transients::promote`]: it authenticated in time), **dropped**
//! ([`Transients::drop`]: it failed) or **expired** ([`Transients::expire_due`]: its deadline
//! passed first). Every transition is idempotent — reserving a key that is already pending
//! returns its slot, promoting or dropping a slot twice changes nothing the second time, and a
//! slot that expired can no longer be promoted — so a late or duplicated event from the IO side
//! can never resurrect a connection or count twice. Every transition is counted.

use std::cmp::Reverse;
use std::collections::{BTreeMap, BinaryHeap, HashMap, VecDeque};
use std::net::SocketAddr;
use std::time::{Duration, Instant};

use soak_api::Direction;

use crate::PeerId;

/// Id of one transient connection (never reused within a process).
pub type Slot = u64;

/// How many finished slots are remembered for idempotent answers.
const FINISHED_MEMORY: usize = 4096;

/// What a transient connection is for; one pending reservation per key.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum TransientKey {
    /// A handshake a remote started with us: its address and an id of the attempt (the shell
    /// derives it from the client's original destination connection id), so a repeated report
    /// of one attempt is recognised while distinct attempts from one address are not merged.
    Inbound {
        /// Remote address.
        remote: SocketAddr,
        /// Connection attempt id.
        attempt: u64,
    },
    /// A dial we started, by address and the peer id we pin (if any).
    Outbound {
        /// Address dialed.
        addr: SocketAddr,
        /// Pinned peer id.
        peer: Option<PeerId>,
    },
}

impl TransientKey {
    /// Which way the connection goes.
    pub fn direction(&self) -> Direction {
        match self {
            TransientKey::Inbound { .. } => Direction::Inbound,
            TransientKey::Outbound { .. } => Direction::Outbound,
        }
    }

    /// The remote address.
    pub fn addr(&self) -> SocketAddr {
        match self {
            TransientKey::Inbound { remote, .. } => *remote,
            TransientKey::Outbound { addr, .. } => *addr,
        }
    }
}

/// Budget and deadline.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct TransientConfig {
    /// Most inbound handshakes pending at once.
    pub max_inbound: usize,
    /// Most outbound dials pending at once.
    pub max_outbound: usize,
    /// How long a transient connection may take to authenticate.
    pub ttl: Duration,
}

/// One pending transient connection.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Pending {
    /// What it is for.
    pub key: TransientKey,
    /// When it was reserved.
    pub reserved_at: Instant,
    /// When it expires.
    pub deadline: Instant,
}

/// A successful reservation.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Reserved {
    /// A new slot: start the work.
    New(Slot),
    /// The key is already pending under this slot: nothing new to start.
    Existing(Slot),
}

/// A refused reservation.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum Refused {
    /// The direction's budget is spent.
    #[error("too many pending {0:?} connections")]
    Budget(Direction),
}

/// How a slot ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Fate {
    /// Promoted to an established connection.
    Promoted,
    /// Dropped (failed).
    Dropped,
    /// Its deadline passed.
    Expired,
}

/// Answer of [`Transients::promote`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Promotion {
    /// Promoted now.
    Promoted(Pending),
    /// Not pending (any more): it already ended this way.
    Finished(Fate),
    /// Never reserved here (or long forgotten).
    Unknown,
}

/// Transition counters.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct TransientStats {
    /// Inbound reservations made.
    pub reserved_inbound: u64,
    /// Outbound reservations made.
    pub reserved_outbound: u64,
    /// Reservations of a key already pending (answered with its slot).
    pub reserved_again: u64,
    /// Reservations refused for budget.
    pub refused: u64,
    /// Promotions.
    pub promoted: u64,
    /// Drops.
    pub dropped: u64,
    /// Expiries (authentication timeouts).
    pub expired: u64,
}

/// The manager. See the module docs.
#[derive(Debug)]
pub struct Transients {
    cfg: TransientConfig,
    next: Slot,
    pending: BTreeMap<Slot, Pending>,
    by_key: HashMap<TransientKey, Slot>,
    deadlines: BinaryHeap<Reverse<(Instant, Slot)>>,
    finished: HashMap<Slot, Fate>,
    finished_order: VecDeque<Slot>,
    inbound: usize,
    outbound: usize,
    stats: TransientStats,
}

impl Transients {
    /// An empty manager.
    pub fn new(cfg: TransientConfig) -> Transients {
        Transients {
            cfg,
            next: 1,
            pending: BTreeMap::new(),
            by_key: HashMap::new(),
            deadlines: BinaryHeap::new(),
            finished: HashMap::new(),
            finished_order: VecDeque::new(),
            inbound: 0,
            outbound: 0,
            stats: TransientStats::default(),
        }
    }

    /// Reserve a slot for `key`, deadline `now + ttl`. Idempotent per pending key.
    pub fn try_reserve(&mut self, key: TransientKey, now: Instant) -> Result<Reserved, Refused> {
        if let Some(slot) = self.by_key.get(&key) {
            self.stats.reserved_again += 1;
            return Ok(Reserved::Existing(*slot));
        }
        let direction = key.direction();
        let (used, max) = match direction {
            Direction::Inbound => (self.inbound, self.cfg.max_inbound),
            Direction::Outbound => (self.outbound, self.cfg.max_outbound),
        };
        if used >= max {
            self.stats.refused += 1;
            return Err(Refused::Budget(direction));
        }
        let slot = self.next;
        self.next += 1;
        let deadline = now + self.cfg.ttl;
        self.pending.insert(
            slot,
            Pending {
                key,
                reserved_at: now,
                deadline,
            },
        );
        self.by_key.insert(key, slot);
        self.deadlines.push(Reverse((deadline, slot)));
        match direction {
            Direction::Inbound => {
                self.inbound += 1;
                self.stats.reserved_inbound += 1;
            }
            Direction::Outbound => {
                self.outbound += 1;
                self.stats.reserved_outbound += 1;
            }
        }
        Ok(Reserved::New(slot))
    }

    /// The slot authenticated: it leaves the manager. Idempotent.
    pub fn promote(&mut self, slot: Slot) -> Promotion {
        match self.finish(slot, Fate::Promoted) {
            Some(p) => {
                self.stats.promoted += 1;
                Promotion::Promoted(p)
            }
            None => self.finished_fate(slot),
        }
    }

    /// The slot failed: it leaves the manager. Returns it when it was still pending.
    pub fn drop(&mut self, slot: Slot) -> Option<Pending> {
        let p = self.finish(slot, Fate::Dropped)?;
        self.stats.dropped += 1;
        Some(p)
    }

    /// Every pending slot whose deadline is at or before `now`, removed.
    pub fn expire_due(&mut self, now: Instant) -> Vec<(Slot, Pending)> {
        let mut out = Vec::new();
        while let Some(Reverse((at, slot))) = self.deadlines.peek().copied() {
            if at > now {
                break;
            }
            self.deadlines.pop();
            if let Some(p) = self.finish(slot, Fate::Expired) {
                self.stats.expired += 1;
                out.push((slot, p));
            }
        }
        out
    }

    /// When [`Transients::expire_due`] should next run. May be earlier than the earliest
    /// pending deadline (a slot that ended since is skipped there), never later.
    pub fn next_deadline(&self) -> Option<Instant> {
        self.deadlines.peek().map(|Reverse((at, _))| *at)
    }

    /// A pending slot.
    pub fn get(&self, slot: Slot) -> Option<&Pending> {
        self.pending.get(&slot)
    }

    /// Pending inbound handshakes.
    pub fn pending_inbound(&self) -> usize {
        self.inbound
    }

    /// Pending outbound dials.
    pub fn pending_outbound(&self) -> usize {
        self.outbound
    }

    /// Whether an outbound dial is pending to `addr` (any pin).
    pub fn dialing_addr(&self, addr: SocketAddr) -> bool {
        self.pending
            .values()
            .any(|p| matches!(p.key, TransientKey::Outbound { addr: a, .. } if a == addr))
    }

    /// Transition counters since start.
    pub fn stats(&self) -> TransientStats {
        self.stats
    }

    fn finish(&mut self, slot: Slot, fate: Fate) -> Option<Pending> {
        let p = self.pending.remove(&slot)?;
        self.by_key.remove(&p.key);
        match p.key.direction() {
            Direction::Inbound => self.inbound -= 1,
            Direction::Outbound => self.outbound -= 1,
        }
        self.finished.insert(slot, fate);
        self.finished_order.push_back(slot);
        while self.finished_order.len() > FINISHED_MEMORY {
            if let Some(old) = self.finished_order.pop_front() {
                self.finished.remove(&old);
            }
        }
        Some(p)
    }

    fn finished_fate(&self, slot: Slot) -> Promotion {
        match self.finished.get(&slot) {
            Some(fate) => Promotion::Finished(*fate),
            None => Promotion::Unknown,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const TTL: Duration = Duration::from_millis(500);

    fn manager(max_inbound: usize, max_outbound: usize) -> Transients {
        Transients::new(TransientConfig {
            max_inbound,
            max_outbound,
            ttl: TTL,
        })
    }

    fn inbound(port: u16) -> TransientKey {
        TransientKey::Inbound {
            remote: SocketAddr::from(([127, 0, 0, 1], port)),
            attempt: 1,
        }
    }

    fn outbound(port: u16) -> TransientKey {
        TransientKey::Outbound {
            addr: SocketAddr::from(([127, 0, 0, 1], port)),
            peer: None,
        }
    }

    fn new_slot(r: Result<Reserved, Refused>) -> Slot {
        match r {
            Ok(Reserved::New(s)) => s,
            other => panic!("expected a new slot, got {other:?}"),
        }
    }

    #[test]
    fn the_budget_caps_each_direction_separately() {
        let t0 = Instant::now();
        let mut m = manager(2, 1);
        new_slot(m.try_reserve(inbound(1), t0));
        new_slot(m.try_reserve(inbound(2), t0));
        assert_eq!(
            m.try_reserve(inbound(3), t0),
            Err(Refused::Budget(Direction::Inbound))
        );
        // Outbound has its own budget.
        let out = new_slot(m.try_reserve(outbound(1), t0));
        assert_eq!(
            m.try_reserve(outbound(2), t0),
            Err(Refused::Budget(Direction::Outbound))
        );
        assert_eq!((m.pending_inbound(), m.pending_outbound()), (2, 1));
        // A finished slot frees its budget.
        assert!(m.drop(out).is_some());
        new_slot(m.try_reserve(outbound(2), t0));
        let s = m.stats();
        assert_eq!(
            (
                s.reserved_inbound,
                s.reserved_outbound,
                s.refused,
                s.dropped
            ),
            (2, 2, 2, 1)
        );
    }

    #[test]
    fn reserving_a_pending_key_again_returns_its_slot() {
        let t0 = Instant::now();
        let mut m = manager(4, 4);
        let a = new_slot(m.try_reserve(inbound(1), t0));
        assert_eq!(m.try_reserve(inbound(1), t0), Ok(Reserved::Existing(a)));
        assert_eq!(m.pending_inbound(), 1, "no second reservation");
        assert_eq!(m.stats().reserved_again, 1);
        // Once finished, the key can be reserved anew (a new slot).
        assert!(matches!(m.promote(a), Promotion::Promoted(_)));
        let b = new_slot(m.try_reserve(inbound(1), t0));
        assert_ne!(a, b);
    }

    #[test]
    fn promotion_is_idempotent_and_counted_once() {
        let t0 = Instant::now();
        let mut m = manager(4, 4);
        let a = new_slot(m.try_reserve(outbound(1), t0));
        assert!(matches!(m.promote(a), Promotion::Promoted(p) if p.key == outbound(1)));
        assert_eq!(m.promote(a), Promotion::Finished(Fate::Promoted));
        assert_eq!(m.drop(a), None, "a promoted slot cannot be dropped");
        assert_eq!(m.stats().promoted, 1);
        assert_eq!(m.stats().dropped, 0);
        assert_eq!(m.promote(999), Promotion::Unknown);
        assert_eq!(m.pending_outbound(), 0);
    }

    #[test]
    fn ttl_expiry_removes_the_slot_and_a_late_promotion_is_refused() {
        let t0 = Instant::now();
        let mut m = manager(4, 4);
        let a = new_slot(m.try_reserve(inbound(1), t0));
        let b = new_slot(m.try_reserve(inbound(2), t0 + Duration::from_millis(200)));
        assert_eq!(m.next_deadline(), Some(t0 + TTL));
        assert!(m.expire_due(t0 + TTL - Duration::from_millis(1)).is_empty());
        let gone = m.expire_due(t0 + TTL);
        assert_eq!(gone.len(), 1);
        assert_eq!(gone[0].0, a);
        // The authentication finished too late: refused, not resurrected.
        assert_eq!(m.promote(a), Promotion::Finished(Fate::Expired));
        assert_eq!(m.pending_inbound(), 1);
        assert_eq!(
            m.next_deadline(),
            Some(t0 + Duration::from_millis(200) + TTL)
        );
        // A promoted slot never expires.
        assert!(matches!(m.promote(b), Promotion::Promoted(_)));
        assert!(m.expire_due(t0 + Duration::from_secs(10)).is_empty());
        let s = m.stats();
        assert_eq!((s.expired, s.promoted), (1, 1));
    }

    #[test]
    fn interleaved_reserve_promote_and_drop_keep_the_books_balanced() {
        // Many "concurrent" transients in a fixed interleaving: every reservation ends exactly
        // once, however the events for it arrive (twice, late, or never).
        let t0 = Instant::now();
        let mut m = manager(8, 8);
        let mut slots = Vec::new();
        for i in 0..16u16 {
            let key = if i % 2 == 0 { inbound(i) } else { outbound(i) };
            if let Ok(Reserved::New(s)) = m.try_reserve(key, t0 + Duration::from_millis(i.into())) {
                slots.push(s);
            }
        }
        assert_eq!(slots.len(), 16);
        for (i, s) in slots.iter().enumerate() {
            match i % 4 {
                0 => {
                    m.promote(*s);
                    m.promote(*s);
                }
                1 => {
                    m.drop(*s);
                    m.promote(*s);
                }
                2 => {
                    m.drop(*s);
                    m.drop(*s);
                }
                _ => {} // left to expire
            }
        }
        let expired = m.expire_due(t0 + Duration::from_secs(1));
        assert_eq!(expired.len(), 4);
        let s = m.stats();
        assert_eq!(s.promoted + s.dropped + s.expired, 16);
        assert_eq!((s.promoted, s.dropped, s.expired), (4, 8, 4));
        assert_eq!((m.pending_inbound(), m.pending_outbound()), (0, 0));
        // Stale deadlines of slots that ended early are skipped and cleared.
        assert!(m.expire_due(t0 + Duration::from_secs(2)).is_empty());
        assert_eq!(m.next_deadline(), None);
    }
}
