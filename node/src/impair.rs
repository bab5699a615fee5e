//! Node-level impairments (fault injection without root): per-peer delay, jitter, loss and
//! partition applied to the node's own UDP datagrams. Every impairment carries an expiry and
//! disappears by itself, so a crashed orchestrator cannot leave a node impaired forever.

use std::collections::HashMap;
use std::net::SocketAddr;
use std::sync::atomic::{AtomicUsize, Ordering};
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
    peer: Option<PeerId>,
    delay: Duration,
    jitter: Duration,
    loss: f64,
    partition: bool,
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
}

/// The shared impairment table, consulted by the socket wrapper.
#[derive(Default)]
pub struct Impairments {
    rules: Mutex<Vec<Rule>>,
    count: AtomicUsize,
    addrs: Mutex<HashMap<SocketAddr, PeerId>>,
    socket: OnceLock<Arc<dyn AsyncUdpSocket>>,
}

impl std::fmt::Debug for Impairments {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Impairments")
            .field("count", &self.count.load(Ordering::Relaxed))
            .finish_non_exhaustive()
    }
}

impl Impairments {
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

    /// Add an impairment.
    pub fn add(&self, imp: &soak_api::Impairment, now: Instant) -> Result<(), ImpairError> {
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
        if rules.len() >= MAX_RULES {
            return Err(ImpairError::TooMany);
        }
        rules.push(Rule {
            peer,
            delay,
            jitter,
            loss: imp.loss,
            partition: imp.partition,
            expires_at: now + expires,
        });
        self.count.store(rules.len(), Ordering::Relaxed);
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
                peer: r.peer.map(|p| p.to_string()),
                delay_ms: r.delay.as_millis() as u64,
                jitter_ms: r.jitter.as_millis() as u64,
                loss: r.loss,
                partition: r.partition,
                expires_in_ms: r.expires_at.saturating_duration_since(now).as_millis() as u64,
            })
            .collect()
    }

    fn matching(&self, addr: SocketAddr) -> Vec<Rule> {
        if self.count.load(Ordering::Relaxed) == 0 {
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

    /// Whether an incoming datagram from `addr` is dropped (partition).
    pub fn drop_incoming(&self, addr: SocketAddr) -> bool {
        self.matching(addr).iter().any(|r| r.partition)
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
            peer: None,
            delay_ms: 0,
            jitter_ms: 0,
            loss: 0.0,
            partition: true,
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
}
