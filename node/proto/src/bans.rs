//! Automatic bans: a peer (or, before it has authenticated, an address) with `threshold`
//! failures within `window` is banned for `duration`. Failures are bad frames, handshake
//! failures, rate-limit violations and authentication timeouts. Banned peers are refused early;
//! expired bans are cleaned by [`Bans::expire`] (the core's tick). Bounded: at most
//! [`MAX_SUBJECTS`] subjects are tracked and [`MAX_BANS`] bans held.

use std::collections::{BTreeMap, VecDeque};
use std::fmt;
use std::net::SocketAddr;
use std::time::{Duration, Instant};

use crate::PeerId;

/// Most subjects whose failures are tracked at once.
pub const MAX_SUBJECTS: usize = 4096;
/// Most bans held at once.
pub const MAX_BANS: usize = 4096;

/// Ban settings.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct BanConfig {
    /// Failures within `window` that ban.
    pub threshold: u32,
    /// The period failures are counted over.
    pub window: Duration,
    /// How long a ban lasts.
    pub duration: Duration,
}

impl Default for BanConfig {
    fn default() -> Self {
        BanConfig {
            threshold: 10,
            window: Duration::from_secs(60),
            duration: Duration::from_secs(300),
        }
    }
}

/// What failed.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub enum Failure {
    /// A frame that could not be decoded (or was too large).
    BadFrame,
    /// A handshake that failed (TLS, identity, hello).
    Handshake,
    /// A DM over the per-peer rate limit.
    RateLimit,
    /// A handshake not finished within the authentication timeout.
    AuthTimeout,
}

impl fmt::Display for Failure {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Failure::BadFrame => "bad_frame",
            Failure::Handshake => "handshake_failure",
            Failure::RateLimit => "rate_limit",
            Failure::AuthTimeout => "auth_timeout",
        })
    }
}

/// Who failed: an authenticated peer, or an address that never authenticated.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum Subject {
    /// A peer id (proven by its handshake).
    Peer(PeerId),
    /// A remote address (the failure happened before the peer was known).
    Addr(SocketAddr),
}

impl fmt::Display for Subject {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Subject::Peer(p) => write!(f, "{p}"),
            Subject::Addr(a) => write!(f, "{a}"),
        }
    }
}

impl std::str::FromStr for Subject {
    type Err = String;

    /// A 64-hex-char peer id or a socket address.
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        if let Ok(p) = s.parse::<PeerId>() {
            return Ok(Subject::Peer(p));
        }
        s.parse::<SocketAddr>()
            .map(Subject::Addr)
            .map_err(|_| format!("{s:?} is neither a peer id nor an ip:port address"))
    }
}

/// One ban.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Ban {
    /// Who.
    pub subject: Subject,
    /// The subject's remote address when it was banned (refused early too), if known.
    pub addr: Option<SocketAddr>,
    /// When the ban started.
    pub since: Instant,
    /// When it ends.
    pub until: Instant,
    /// Failures within the window that triggered it.
    pub failures: u32,
    /// The failure that tipped it.
    pub last: Failure,
}

#[derive(Debug, Default)]
struct Record {
    failures: VecDeque<Instant>,
    addr: Option<SocketAddr>,
}

/// The ban list and the failure records behind it. See the module docs.
#[derive(Debug)]
pub struct Bans {
    cfg: BanConfig,
    records: BTreeMap<Subject, Record>,
    bans: BTreeMap<Subject, Ban>,
}

impl Bans {
    /// An empty list.
    pub fn new(cfg: BanConfig) -> Bans {
        Bans {
            cfg: BanConfig {
                threshold: cfg.threshold.max(1),
                ..cfg
            },
            records: BTreeMap::new(),
            bans: BTreeMap::new(),
        }
    }

    /// The settings.
    pub fn config(&self) -> BanConfig {
        self.cfg
    }

    /// Record one failure of `subject` (seen at `addr`); returns the ban when this failure
    /// reached the threshold. Failures of an already banned subject are not recorded.
    pub fn record(
        &mut self,
        subject: Subject,
        addr: Option<SocketAddr>,
        failure: Failure,
        now: Instant,
    ) -> Option<Ban> {
        if self.is_banned(subject, now) {
            return None;
        }
        if !self.records.contains_key(&subject) && self.records.len() >= MAX_SUBJECTS {
            self.prune(now);
            if self.records.len() >= MAX_SUBJECTS {
                // Still full of live records: forget the one whose last failure is oldest.
                let oldest = self
                    .records
                    .iter()
                    .min_by_key(|(_, r)| r.failures.back().copied())
                    .map(|(s, _)| *s);
                if let Some(s) = oldest {
                    self.records.remove(&s);
                }
            }
        }
        let window = self.cfg.window;
        let threshold = self.cfg.threshold as usize;
        let r = self.records.entry(subject).or_default();
        if addr.is_some() {
            r.addr = addr;
        }
        while r
            .failures
            .front()
            .is_some_and(|t| now.saturating_duration_since(*t) >= window)
        {
            r.failures.pop_front();
        }
        r.failures.push_back(now);
        if r.failures.len() < threshold {
            return None;
        }
        let failures = r.failures.len() as u32;
        let addr = r.addr;
        self.records.remove(&subject);
        if self.bans.len() >= MAX_BANS {
            self.expire(now);
            if self.bans.len() >= MAX_BANS {
                // Make room: the ban that ends first goes.
                let first = self
                    .bans
                    .values()
                    .min_by_key(|b| b.until)
                    .map(|b| b.subject);
                if let Some(s) = first {
                    self.bans.remove(&s);
                }
            }
        }
        let ban = Ban {
            subject,
            addr,
            since: now,
            until: now + self.cfg.duration,
            failures,
            last: failure,
        };
        self.bans.insert(subject, ban);
        Some(ban)
    }

    /// Forget the failures of `subject` (it proved itself, e.g. an address that authenticated).
    pub fn forgive(&mut self, subject: Subject) {
        self.records.remove(&subject);
    }

    /// Whether `subject` is banned at `now`.
    pub fn is_banned(&self, subject: Subject, now: Instant) -> bool {
        self.bans.get(&subject).is_some_and(|b| b.until > now)
    }

    /// Whether a connection from `addr` is refused: the address is banned, or a banned peer was
    /// last seen there.
    pub fn is_banned_addr(&self, addr: SocketAddr, now: Instant) -> bool {
        self.is_banned(Subject::Addr(addr), now)
            || self
                .bans
                .values()
                .any(|b| b.addr == Some(addr) && b.until > now)
    }

    /// Drop expired bans and stale failure records; returns how many bans ended.
    pub fn expire(&mut self, now: Instant) -> usize {
        let before = self.bans.len();
        self.bans.retain(|_, b| b.until > now);
        self.prune(now);
        before - self.bans.len()
    }

    fn prune(&mut self, now: Instant) {
        let window = self.cfg.window;
        self.records.retain(|_, r| {
            r.failures
                .back()
                .is_some_and(|t| now.saturating_duration_since(*t) < window)
        });
    }

    /// Lift the ban of `subject`; false when it was not banned.
    pub fn lift(&mut self, subject: Subject) -> bool {
        self.records.remove(&subject);
        self.bans.remove(&subject).is_some()
    }

    /// Lift every ban; returns how many.
    pub fn lift_all(&mut self) -> usize {
        let n = self.bans.len();
        self.bans.clear();
        self.records.clear();
        n
    }

    /// Bans in force at `now`.
    pub fn list(&self, now: Instant) -> Vec<Ban> {
        self.bans
            .values()
            .filter(|b| b.until > now)
            .copied()
            .collect()
    }

    /// Subjects with failures on record (for tests and gauges).
    pub fn tracked(&self) -> usize {
        self.records.len()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn cfg() -> BanConfig {
        BanConfig {
            threshold: 3,
            window: Duration::from_secs(10),
            duration: Duration::from_secs(60),
        }
    }

    const P: Subject = Subject::Peer(PeerId([5; 32]));

    fn addr(port: u16) -> SocketAddr {
        SocketAddr::from(([127, 0, 0, 1], port))
    }

    #[test]
    fn threshold_failures_within_the_window_ban_for_the_duration() {
        let t0 = Instant::now();
        let mut b = Bans::new(cfg());
        let s = Duration::from_secs;
        assert!(b.record(P, Some(addr(9)), Failure::BadFrame, t0).is_none());
        assert!(b.record(P, None, Failure::RateLimit, t0 + s(1)).is_none());
        let ban = b
            .record(P, None, Failure::BadFrame, t0 + s(2))
            .expect("third failure bans");
        assert_eq!(ban.failures, 3);
        assert_eq!(ban.last, Failure::BadFrame);
        assert_eq!(ban.addr, Some(addr(9)));
        assert!(b.is_banned(P, t0 + s(2)));
        assert!(
            b.is_banned_addr(addr(9), t0 + s(3)),
            "its address is refused too"
        );
        assert!(!b.is_banned_addr(addr(10), t0 + s(3)));
        assert_eq!(b.list(t0 + s(3)).len(), 1);
        // Failures while banned are not recorded.
        assert!(b.record(P, None, Failure::BadFrame, t0 + s(3)).is_none());
        // Ends by itself; the tick cleans it.
        assert!(b.is_banned(P, t0 + s(61)));
        assert!(!b.is_banned(P, t0 + s(62)));
        assert_eq!(b.expire(t0 + s(62)), 1);
        assert!(b.list(t0 + s(62)).is_empty());
    }

    #[test]
    fn failures_outside_the_window_do_not_add_up() {
        let t0 = Instant::now();
        let mut b = Bans::new(cfg());
        for i in 0..10u64 {
            // One failure every 6 s: never three within 10 s.
            let at = t0 + Duration::from_secs(6 * i);
            assert!(b.record(P, None, Failure::AuthTimeout, at).is_none(), "{i}");
        }
        assert!(!b.is_banned(P, t0 + Duration::from_secs(60)));
        // Stale records are pruned by the tick.
        b.expire(t0 + Duration::from_secs(200));
        assert_eq!(b.tracked(), 0);
    }

    #[test]
    fn lifting_and_forgiving() {
        let t0 = Instant::now();
        let mut b = Bans::new(cfg());
        let a = Subject::Addr(addr(7));
        for _ in 0..3 {
            b.record(a, None, Failure::Handshake, t0);
        }
        assert!(b.is_banned_addr(addr(7), t0));
        assert!(b.lift(a));
        assert!(!b.lift(a), "lifting twice reports not banned");
        assert!(!b.is_banned_addr(addr(7), t0));
        // Forgiven failures start over.
        b.record(a, None, Failure::Handshake, t0);
        b.record(a, None, Failure::Handshake, t0);
        b.forgive(a);
        assert!(b.record(a, None, Failure::Handshake, t0).is_none());
        for _ in 0..3 {
            b.record(P, None, Failure::BadFrame, t0);
        }
        assert_eq!(b.lift_all(), 1);
    }

    #[test]
    fn subjects_parse_from_peer_ids_and_addresses() {
        let id = "ab".repeat(32);
        assert!(matches!(id.parse::<Subject>(), Ok(Subject::Peer(_))));
        assert_eq!("127.0.0.1:5".parse::<Subject>(), Ok(Subject::Addr(addr(5))));
        assert!("nonsense".parse::<Subject>().is_err());
        assert_eq!(Subject::Addr(addr(5)).to_string(), "127.0.0.1:5");
    }

    #[test]
    fn tracking_is_bounded() {
        let t0 = Instant::now();
        let mut b = Bans::new(cfg());
        for i in 0..(MAX_SUBJECTS as u32 + 100) {
            let a = SocketAddr::from(([10, (i >> 16) as u8, (i >> 8) as u8, i as u8], 1));
            b.record(Subject::Addr(a), None, Failure::AuthTimeout, t0);
        }
        assert!(b.tracked() <= MAX_SUBJECTS);
    }
}
