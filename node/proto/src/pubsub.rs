//! Glue between the node and the sans-IO gossip core (`soak-gossip`): the dialable gossip peer
//! id, the wire codec of gossip messages and the bounded per-topic subscriber buffer behind
//! `GET /v1/topics/{topic}/received`.

use std::fmt;
use std::net::SocketAddr;
use std::time::{Duration, Instant};

use serde::{Deserialize, Serialize};
use soak_gossip::{Delivery, Message};

use crate::PeerId;
use crate::ring::{SeqRing, Sequenced};

/// Most topics one node may be subscribed to at once (admin-driven, bounded anyway).
pub const MAX_TOPICS: usize = 256;
/// Most gossip frames held per peer while a connection to it is being dialed.
pub const PENDING_PER_PEER: usize = 256;

/// A gossip peer: the node's peer id plus the QUIC address it advertised, so that peers learned
/// through gossip shuffles (never met before) can be dialed. Equality and order use the id
/// only: the same node seen with two addresses is one peer. The address is a hint; the node's
/// own address book wins when it knows the peer.
#[derive(Clone, Copy, Serialize, Deserialize)]
pub struct GossipPeer {
    /// Peer id (sha256 of the identity key; the transport authenticates it).
    pub id: PeerId,
    /// Advertised QUIC listen address, if it is routable.
    pub addr: Option<SocketAddr>,
}

impl GossipPeer {
    /// A peer with an address hint (unspecified or port-0 addresses are dropped).
    pub fn new(id: PeerId, addr: Option<SocketAddr>) -> GossipPeer {
        GossipPeer {
            id,
            addr: addr.filter(|a| usable(*a)),
        }
    }
}

/// Whether an address can be dialed at all.
pub fn usable(a: SocketAddr) -> bool {
    !a.ip().is_unspecified() && a.port() != 0
}

impl PartialEq for GossipPeer {
    fn eq(&self, other: &Self) -> bool {
        self.id == other.id
    }
}
impl Eq for GossipPeer {}
impl PartialOrd for GossipPeer {
    fn partial_cmp(&self, other: &Self) -> Option<std::cmp::Ordering> {
        Some(self.cmp(other))
    }
}
impl Ord for GossipPeer {
    fn cmp(&self, other: &Self) -> std::cmp::Ordering {
        self.id.cmp(&other.id)
    }
}
impl fmt::Debug for GossipPeer {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{:?}", self.id)
    }
}
impl fmt::Display for GossipPeer {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}", self.id)
    }
}

/// A gossip message as the node sends it.
pub type GossipMessage = Message<GossipPeer>;

/// Encode a gossip message for `Frame::Gossip`.
pub fn encode(msg: &GossipMessage) -> Option<Vec<u8>> {
    postcard::to_stdvec(msg).ok()
}

/// Decode the body of a `Frame::Gossip` (never panics; trailing bytes are refused).
pub fn decode(bytes: &[u8]) -> Option<GossipMessage> {
    match postcard::take_from_bytes::<GossipMessage>(bytes) {
        Ok((msg, [])) => Some(msg),
        _ => None,
    }
}

/// One delivered message held for the local application.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Received {
    /// Sequence number within this topic and process instance (first is 1).
    pub seq: u64,
    /// Message id (`origin-epoch-seq`).
    pub msg_id: String,
    /// Publisher peer id.
    pub origin: PeerId,
    /// Hops travelled (0 = published here).
    pub hops: u16,
    /// Payload size.
    pub size: usize,
    /// Origin's publish time, unix ms.
    pub published_at_ms: u64,
    /// Delivery time here, monotonic (for retention; the API shows it as unix ms).
    pub at: Instant,
}

/// The bounded buffer between the gossip core and the application of one topic.
///
/// Same retention rule as the DM inbox, plus a consume cursor: reading a page with
/// `after = X` tells the node the application has everything up to `X`. When the buffer is full,
/// its oldest item is evicted only if it was consumed or is older than the retention period;
/// otherwise the new delivery is dropped and counted (`gossip_subscriber_dropped_total`). So an
/// application that stops draining loses the newest messages, never ones it has not seen yet
/// that are younger than the retention, and sequence numbers never have holes.
#[derive(Debug)]
pub struct Subscriber {
    ring: SeqRing<Received>,
    /// Deliveries dropped because the buffer was full.
    pub dropped: u64,
}

impl Sequenced for Received {
    fn seq(&self) -> u64 {
        self.seq
    }
    fn stored_at(&self) -> Instant {
        self.at
    }
}

impl Subscriber {
    /// A new empty buffer.
    pub fn new(capacity: usize, retention: Duration) -> Subscriber {
        Subscriber {
            ring: SeqRing::new(capacity, retention),
            dropped: 0,
        }
    }

    /// Store one delivery; false when it was dropped (buffer full of unconsumed, retained items).
    pub fn push(&mut self, d: &Delivery<GossipPeer>, now: Instant) -> bool {
        let stored = self.ring.push_with(now, |seq| Received {
            seq,
            msg_id: format!("{}", d.id),
            origin: d.id.origin.id,
            hops: d.hops,
            size: d.payload.len(),
            published_at_ms: d.published_at_ms,
            at: now,
        });
        if stored.is_none() {
            self.dropped += 1;
        }
        stored.is_some()
    }

    /// Items with `seq > after`, at most `limit`, and the `next` cursor. Marks everything up to
    /// `after` as consumed.
    pub fn page(&mut self, after: u64, limit: usize) -> (Vec<Received>, u64) {
        self.ring.consume_through(after);
        self.ring.page(after, limit)
    }

    /// Items held.
    pub fn len(&self) -> usize {
        self.ring.len()
    }

    /// Whether empty.
    pub fn is_empty(&self) -> bool {
        self.ring.is_empty()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use soak_gossip::MsgId;
    use soak_gossip::TopicId;

    fn delivery(seq: u64) -> Delivery<GossipPeer> {
        let p = GossipPeer::new(PeerId([7; 32]), None);
        Delivery {
            id: MsgId {
                origin: p,
                epoch: 1,
                seq,
            },
            from: None,
            hops: 0,
            published_at_ms: 0,
            payload: vec![1, 2, 3],
        }
    }

    #[test]
    fn peers_compare_by_id_only() {
        let a = GossipPeer::new(PeerId([1; 32]), Some("127.0.0.1:5".parse().unwrap()));
        let b = GossipPeer::new(PeerId([1; 32]), None);
        assert_eq!(a, b);
        assert!(
            GossipPeer::new(PeerId([1; 32]), Some("0.0.0.0:5".parse().unwrap()))
                .addr
                .is_none()
        );
    }

    #[test]
    fn codec_round_trips_and_refuses_garbage() {
        let p = GossipPeer::new(PeerId([1; 32]), Some("127.0.0.1:5".parse().unwrap()));
        let msg = GossipMessage {
            topic: TopicId::new("t").unwrap(),
            body: soak_gossip::Body::Shuffle {
                origin: p,
                peers: vec![p],
                ttl: 3,
            },
        };
        let bytes = encode(&msg).unwrap();
        assert_eq!(decode(&bytes), Some(msg));
        let mut longer = bytes.clone();
        longer.push(0);
        assert_eq!(decode(&longer), None);
        for n in 0..bytes.len() {
            let _ = decode(&bytes[..n]);
        }
    }

    #[test]
    fn full_buffer_drops_new_until_consumed_or_expired() {
        let t0 = Instant::now();
        let mut s = Subscriber::new(2, Duration::from_secs(10));
        assert!(s.push(&delivery(1), t0));
        assert!(s.push(&delivery(2), t0));
        assert!(!s.push(&delivery(3), t0), "full of unconsumed items");
        assert_eq!(s.dropped, 1);
        // Consuming seq 1 frees its slot.
        let (items, next) = s.page(1, 10);
        assert_eq!((items.len(), next), (1, 2));
        assert!(s.push(&delivery(4), t0));
        assert_eq!(
            s.page(0, 10).0.iter().map(|r| r.seq).collect::<Vec<_>>(),
            [2, 3]
        );
        // Retention: old items are evictable even unconsumed.
        assert!(s.push(&delivery(5), t0 + Duration::from_secs(11)));
        assert_eq!(s.len(), 2);
    }
}
