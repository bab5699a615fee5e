//! Node-level impairments (fault injection without root): per-peer delay, jitter, loss and
//! partition applied to the node's own UDP datagrams. Every impairment carries an expiry and
//! disappears by itself, so a crashed orchestrator cannot leave a node impaired forever.

use std::collections::HashMap;
use std::net::SocketAddr;
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex, OnceLock};
use std::time::{Duration, Instant};

use quinn::AsyncUdpSocket;
use quinn::udp::Transmit;

use crate::proto::PeerId;

/// Longest accepted impairment lifetime.
pub const MAX_EXPIRY: Duration = Duration::from_secs(24 * 3600);
/// Largest accepted delay or jitter.
pub const MAX_DELAY: Duration = Duration::from_secs(10);
/// Most impairments held at once.
pub const MAX_RULES: usize = 256;

#[derive(Debug, Clone)]
struct Rule {
    id: String,
    peer: Option<PeerId>,
    delay: Duration,
    jitter: Duration,
    loss: f64,
    partition: bool,
    one_way: bool,
    expires_at: Instant,
}

/// What to do with an outgoing datagram.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SendVerdict {
    /// Send now.
    Pass,
    /// Drop silently.
    Drop,
    /// Taken over: it will be sent later.
    Delayed,
}

/// Why an impairment was refused.
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum ImpairError {
    /// Field out of range.
    #[error("{0}")]
    Invalid(String),
    /// Too many impairments.
    #[error("too many impairments (max {MAX_RULES})")]
    TooMany,
    /// No impairment with that id.
    #[error("no impairment with id {0:?}")]
    NotFound(String),
}

/// Longest accepted impairment id.
pub const MAX_ID_LEN: usize = 64;

fn valid_id(id: &str) -> bool {
    !id.is_empty()
        && id.len() <= MAX_ID_LEN
        && id
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'_' | b'.' | b':' | b'-'))
}

/// The shared impairment table, consulted by the socket wrapper.
#[derive(Default)]
pub struct Impairments {
    rules: Mutex<Vec<Rule>>,
    count: AtomicUsize,
    addrs: Mutex<HashMap<SocketAddr, PeerId>>,
    socket: OnceLock<Arc<dyn AsyncUdpSocket>>,
    next_id: AtomicUsize,
    dropped: AtomicU64,
    delayed: AtomicU64,
    /// Test-only (`--test-ignore-impairments`): accept and list impairments but never apply
    /// them — a fault that does nothing, so the orchestrator's effectiveness checks can be
    /// tested against a real node.
    ignore: bool,
}

impl std::fmt::Debug for Impairments {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Impairments")
            .field("count", &self.count.load(Ordering::Relaxed))
            .finish_non_exhaustive()
    }
}

impl Impairments {
    /// A table that accepts and lists impairments but never applies them (test-only).
    pub fn ignoring() -> Self {
        Impairments {
            ignore: true,
            ..Impairments::default()
        }
    }

    /// The raw socket used to send delayed datagrams.
    pub fn attach_socket(&self, socket: Arc<dyn AsyncUdpSocket>) {
        let _ = self.socket.set(socket);
    }

    /// Remember which peer lives at a UDP address.
    pub fn set_peer_addr(&self, peer: PeerId, addr: SocketAddr) {
        if let Ok(mut m) = self.addrs.lock() {
            if m.len() > 100_000 {
                m.clear(); // bounded: a cache, refilled by the next connections
            }
            m.insert(addr, peer);
        }
    }

    /// Add an impairment, or replace the one with the same id (a renewal); returns its id.
    pub fn add(&self, imp: &soak_api::Impairment, now: Instant) -> Result<String, ImpairError> {
        if let Some(id) = &imp.id
            && !valid_id(id)
        {
            return Err(ImpairError::Invalid(format!(
                "id must be 1–{MAX_ID_LEN} of [A-Za-z0-9_.:-]"
            )));
        }
        if imp.one_way && !imp.partition {
            return Err(ImpairError::Invalid(
                "one_way applies to partitions only".into(),
            ));
        }
        let peer = match &imp.peer {
            Some(p) => Some(
                p.parse::<PeerId>()
                    .map_err(|e| ImpairError::Invalid(format!("peer: {e}")))?,
            ),
            None => None,
        };
        if !(0.0..=1.0).contains(&imp.loss) || imp.loss.is_nan() {
            return Err(ImpairError::Invalid("loss must be within 0..=1".into()));
        }
        let expires = Duration::from_millis(imp.expires_in_ms);
        if expires.is_zero() || expires > MAX_EXPIRY {
            return Err(ImpairError::Invalid(format!(
                "expires_in_ms must be within 1..={}",
                MAX_EXPIRY.as_millis()
            )));
        }
        let delay = Duration::from_millis(imp.delay_ms);
        let jitter = Duration::from_millis(imp.jitter_ms);
        if delay > MAX_DELAY || jitter > MAX_DELAY {
            return Err(ImpairError::Invalid(format!(
                "delay_ms and jitter_ms must be at most {}",
                MAX_DELAY.as_millis()
            )));
        }
        let mut rules = self.rules.lock().map_err(|_| ImpairError::TooMany)?;
        rules.retain(|r| r.expires_at > now);
        let id = match &imp.id {
            Some(id) => id.clone(),
            None => loop {
                let id = format!("imp-{}", self.next_id.fetch_add(1, Ordering::Relaxed) + 1);
                if !rules.iter().any(|r| r.id == id) {
                    break id;
                }
            },
        };
        let rule = Rule {
            id: id.clone(),
            peer,
            delay,
            jitter,
            // -0.0 is 0: listed as 0.0 and never consulted as a loss.
            loss: if imp.loss == 0.0 { 0.0 } else { imp.loss },
            partition: imp.partition,
            one_way: imp.one_way,
            expires_at: now + expires,
        };
        if let Some(existing) = rules.iter_mut().find(|r| r.id == id) {
            *existing = rule;
        } else {
            if rules.len() >= MAX_RULES {
                return Err(ImpairError::TooMany);
            }
            rules.push(rule);
        }
        self.count.store(rules.len(), Ordering::Relaxed);
        Ok(id)
    }

    /// Remove the impairment with `id`.
    pub fn remove(&self, id: &str) -> Result<(), ImpairError> {
        let Ok(mut rules) = self.rules.lock() else {
            return Err(ImpairError::NotFound(id.to_owned()));
        };
        let before = rules.len();
        rules.retain(|r| r.id != id);
        self.count.store(rules.len(), Ordering::Relaxed);
        if rules.len() == before {
            return Err(ImpairError::NotFound(id.to_owned()));
        }
        Ok(())
    }

    /// Remove every impairment.
    pub fn clear(&self) {
        if let Ok(mut rules) = self.rules.lock() {
            rules.clear();
        }
        self.count.store(0, Ordering::Relaxed);
    }

    /// Active impairments with their remaining lifetime.
    pub fn list(&self, now: Instant) -> Vec<soak_api::Impairment> {
        let Ok(mut rules) = self.rules.lock() else {
            return Vec::new();
        };
        rules.retain(|r| r.expires_at > now);
        self.count.store(rules.len(), Ordering::Relaxed);
        rules
            .iter()
            .map(|r| soak_api::Impairment {
                id: Some(r.id.clone()),
                peer: r.peer.map(|p| p.to_string()),
                delay_ms: r.delay.as_millis() as u64,
                jitter_ms: r.jitter.as_millis() as u64,
                loss: r.loss,
                partition: r.partition,
                one_way: r.one_way,
                expires_in_ms: r.expires_at.saturating_duration_since(now).as_millis() as u64,
            })
            .collect()
    }

    fn matching(&self, addr: SocketAddr) -> Vec<Rule> {
        if self.ignore || self.count.load(Ordering::Relaxed) == 0 {
            return Vec::new();
        }
        let now = Instant::now();
        let peer = self.addrs.lock().ok().and_then(|m| m.get(&addr).copied());
        let Ok(mut rules) = self.rules.lock() else {
            return Vec::new();
        };
        rules.retain(|r| r.expires_at > now);
        self.count.store(rules.len(), Ordering::Relaxed);
        rules
            .iter()
            .filter(|r| r.peer.is_none() || (peer.is_some() && r.peer == peer))
            .cloned()
            .collect()
    }

    /// Datagrams dropped and delayed by impairments so far (the effect, as the node saw it).
    pub fn effect_counts(&self) -> (u64, u64) {
        (
            self.dropped.load(Ordering::Relaxed),
            self.delayed.load(Ordering::Relaxed),
        )
    }

    /// Whether an incoming datagram from `addr` is dropped (partition).
    pub fn drop_incoming(&self, addr: SocketAddr) -> bool {
        let drop = self
            .matching(addr)
            .iter()
            .any(|r| r.partition && !r.one_way);
        if drop {
            self.dropped.fetch_add(1, Ordering::Relaxed);
        }
        drop
    }

    /// Decide the fate of an outgoing datagram; delayed ones are re-sent by a timer task.
    pub fn on_send(&self, t: &Transmit<'_>) -> SendVerdict {
        let rules = self.matching(t.destination);
        if rules.is_empty() {
            return SendVerdict::Pass;
        }
        let mut delay = Duration::ZERO;
        for r in &rules {
            if r.partition || (r.loss > 0.0 && rand::random::<f64>() < r.loss) {
                self.dropped.fetch_add(1, Ordering::Relaxed);
                return SendVerdict::Drop;
            }
            let jitter = if r.jitter.is_zero() {
                Duration::ZERO
            } else {
                Duration::from_micros(rand::random_range(0..=r.jitter.as_micros() as u64))
            };
            delay = delay.max(r.delay + jitter);
        }
        if delay.is_zero() {
            return SendVerdict::Pass;
        }
        let (Some(socket), Ok(handle)) = (
            self.socket.get().cloned(),
            tokio::runtime::Handle::try_current(),
        ) else {
            return SendVerdict::Pass;
        };
        self.delayed.fetch_add(1, Ordering::Relaxed);
        let contents = t.contents.to_vec();
        let (destination, ecn, segment_size, src_ip) =
            (t.destination, t.ecn, t.segment_size, t.src_ip);
        handle.spawn(async move {
            tokio::time::sleep(delay).await;
            let t = Transmit {
                destination,
                ecn,
                contents: &contents,
                segment_size,
                src_ip,
            };
            // A full socket buffer drops the datagram, as a congested link would.
            let _ = socket.try_send(&t);
        });
        SendVerdict::Delayed
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn imp(expires_in_ms: u64) -> soak_api::Impairment {
        soak_api::Impairment {
            id: None,
            peer: None,
            delay_ms: 0,
            jitter_ms: 0,
            loss: 0.0,
            partition: true,
            one_way: false,
            expires_in_ms,
        }
    }

    #[test]
    fn impairments_expire_by_themselves() {
        let t = Impairments::default();
        let now = Instant::now();
        t.add(&imp(1000), now).unwrap();
        assert_eq!(t.list(now).len(), 1);
        assert!(t.list(now + Duration::from_millis(1001)).is_empty());
    }

    #[test]
    fn invalid_impairments_are_refused() {
        let t = Impairments::default();
        let now = Instant::now();
        assert!(t.add(&imp(0), now).is_err());
        let mut bad = imp(10);
        bad.loss = 1.5;
        assert!(t.add(&bad, now).is_err());
        bad = imp(10);
        bad.peer = Some("zz".into());
        assert!(t.add(&bad, now).is_err());
    }

    #[test]
    fn posting_an_existing_id_renews_instead_of_adding() {
        let t = Impairments::default();
        let now = Instant::now();
        let mut a = imp(1000);
        a.id = Some("fault-1".into());
        assert_eq!(t.add(&a, now).unwrap(), "fault-1");
        a.expires_in_ms = 5000;
        t.add(&a, now + Duration::from_millis(900)).unwrap();
        let listed = t.list(now + Duration::from_millis(1500));
        assert_eq!(listed.len(), 1, "renewed, not duplicated");
        assert_eq!(listed[0].id.as_deref(), Some("fault-1"));
        assert!(listed[0].expires_in_ms > 4000);
    }

    #[test]
    fn removing_by_id_leaves_the_others() {
        let t = Impairments::default();
        let now = Instant::now();
        let first = t.add(&imp(1000), now).unwrap();
        let second = t.add(&imp(1000), now).unwrap();
        assert_ne!(first, second);
        t.remove(&first).unwrap();
        let left = t.list(now);
        assert_eq!(left.len(), 1);
        assert_eq!(left[0].id.as_deref(), Some(second.as_str()));
        assert_eq!(t.remove(&first), Err(ImpairError::NotFound(first)));
    }

    #[test]
    fn bad_ids_and_one_way_without_partition_are_refused() {
        let t = Impairments::default();
        let now = Instant::now();
        let mut bad = imp(10);
        bad.id = Some("has space".into());
        assert!(t.add(&bad, now).is_err());
        bad.id = Some("x".repeat(65));
        assert!(t.add(&bad, now).is_err());
        let mut one_way_delay = imp(10);
        one_way_delay.partition = false;
        one_way_delay.one_way = true;
        assert!(t.add(&one_way_delay, now).is_err());
    }

    #[test]
    fn negative_zero_loss_is_zero() {
        let t = Impairments::default();
        let now = Instant::now();
        let mut z = imp(1000);
        z.partition = false;
        z.loss = -0.0;
        t.add(&z, now).unwrap();
        let listed = t.list(now);
        assert!(listed[0].loss == 0.0 && listed[0].loss.is_sign_positive());
        assert_eq!(
            serde_json::to_value(&listed[0]).unwrap()["loss"],
            serde_json::json!(0.0)
        );
    }

    #[test]
    fn an_ignoring_table_lists_but_never_matches() {
        let t = Impairments::ignoring();
        let now = Instant::now();
        t.add(&imp(10_000), now).unwrap();
        assert_eq!(t.list(now).len(), 1);
        let addr: SocketAddr = "127.0.0.1:9".parse().unwrap();
        assert!(!t.drop_incoming(addr));
    }

    #[test]
    fn a_one_way_partition_keeps_incoming_datagrams() {
        let t = Impairments::default();
        let now = Instant::now();
        let mut cut = imp(10_000);
        cut.one_way = true;
        t.add(&cut, now).unwrap();
        let addr: SocketAddr = "127.0.0.1:9".parse().unwrap();
        assert!(!t.drop_incoming(addr));
        let both = imp(10_000);
        t.add(&both, now).unwrap();
        assert!(t.drop_incoming(addr));
    }
}
