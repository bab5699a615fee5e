//! Wire types: what one node sends another. All of it is `serde`, so the node can put a
//! [`Message`] on the wire with postcard (or anything else) without knowing its shape.
//!
//! Everything received is untrusted: [`Message::validate`] checks every bound before the state
//! machine looks at it, and the state machine itself never indexes or unwraps on peer data.

use std::{fmt, sync::Arc};

use serde::{Deserialize, Serialize};

use crate::config::Limits;

/// Longest accepted topic name, in bytes.
pub const MAX_TOPIC_LEN: usize = 256;

/// Name of a topic. Cheap to clone (shared string).
///
/// A valid topic is 1..=[`MAX_TOPIC_LEN`] bytes of UTF-8 without control characters; the
/// deserializer enforces this too, so a peer cannot smuggle an invalid name in.
#[derive(Clone, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
#[serde(try_from = "String", into = "String")]
pub struct TopicId(Arc<str>);

impl TopicId {
    /// Validates and wraps a topic name.
    pub fn new(name: impl AsRef<str>) -> Result<Self, InvalidTopic> {
        let name = name.as_ref();
        if name.is_empty() {
            return Err(InvalidTopic::Empty);
        }
        if name.len() > MAX_TOPIC_LEN {
            return Err(InvalidTopic::TooLong(name.len()));
        }
        if name.chars().any(char::is_control) {
            return Err(InvalidTopic::ControlCharacter);
        }
        Ok(Self(Arc::from(name)))
    }

    /// The topic name.
    pub fn as_str(&self) -> &str {
        &self.0
    }
}

impl fmt::Debug for TopicId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{:?}", &*self.0)
    }
}

impl fmt::Display for TopicId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

impl TryFrom<String> for TopicId {
    type Error = InvalidTopic;
    fn try_from(value: String) -> Result<Self, Self::Error> {
        Self::new(value)
    }
}

impl From<TopicId> for String {
    fn from(value: TopicId) -> Self {
        value.0.to_string()
    }
}

/// Why a topic name was rejected.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum InvalidTopic {
    /// The name is empty.
    #[error("topic name is empty")]
    Empty,
    /// The name is longer than [`MAX_TOPIC_LEN`] bytes.
    #[error("topic name is {0} bytes, more than {MAX_TOPIC_LEN}")]
    TooLong(usize),
    /// The name contains a control character.
    #[error("topic name contains a control character")]
    ControlCharacter,
}

/// Unique id of one published message: who published it, which instance of that publisher
/// (`epoch`, drawn at random when the [`crate::State`] is created, so a restarted node never
/// reuses an id) and its sequence number within (topic, origin, epoch), starting at 1.
///
/// Identical payloads published twice get two ids. The per-stream sequence is what
/// anti-entropy compares: "my high-water mark for (origin, epoch) is 41, I lack 17 and 23".
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
pub struct MsgId<PI> {
    /// The publisher.
    pub origin: PI,
    /// Random id of the publisher's process instance.
    pub epoch: u64,
    /// Sequence number within (topic, origin, epoch), from 1.
    pub seq: u64,
}

impl<PI: fmt::Display> fmt::Display for MsgId<PI> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}-{:016x}-{}", self.origin, self.epoch, self.seq)
    }
}

/// One message between two nodes: a topic and what is said about it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Message<PI> {
    /// The topic this message belongs to.
    pub topic: TopicId,
    /// What it says.
    pub body: Body<PI>,
}

/// How a payload travelled; decides what a duplicate means.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
pub enum PushKind {
    /// Pushed along the eager tree. A duplicate means a redundant tree edge: PRUNE it.
    Eager,
    /// Sent in answer to a GRAFT or IWANT.
    Repair,
    /// Sent by anti-entropy to fill a gap. Duplicates are not the tree's fault.
    AntiEntropy,
    /// Pushed along the eager tree by a node that did not get it from the tree (it got it by
    /// repair, anti-entropy or another detour). Such a copy can meet the tree's own copy
    /// anywhere on a healthy tree, so a duplicate of it (or after it) is no reason to prune.
    Detour,
}

/// A published message as it travels.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Gossip<PI> {
    /// Unique id.
    pub id: MsgId<PI>,
    /// Links travelled including the one it arrives on (1 = straight from the origin).
    pub hops: u16,
    /// How it travelled.
    pub kind: PushKind,
    /// When the origin published it, unix milliseconds (origin clock).
    pub published_at_ms: u64,
    /// Application payload.
    pub payload: Vec<u8>,
}

/// One entry of an IHAVE: "I have this message; it reached me in `hops` hops".
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct IHaveEntry<PI> {
    /// The announced message.
    pub id: MsgId<PI>,
    /// Hops it took to reach the announcer (0 = the announcer published it).
    pub hops: u16,
}

/// One per-stream entry of an anti-entropy digest.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct AeEntry<PI> {
    /// Publisher.
    pub origin: PI,
    /// Publisher instance.
    pub epoch: u64,
    /// Highest sequence number the sender has.
    pub high: u64,
    /// Sequence numbers below `high` the sender lacks (bounded, lowest first).
    pub missing: Vec<u64>,
}

/// What a [`Message`] says. Membership (HyParView-like), dissemination (PlumTree) and
/// anti-entropy share one enum so the node needs only one frame type per topic.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub enum Body<PI> {
    /// A new node asks to join the topic's overlay through us.
    Join,
    /// A join random walk: `peer` wants neighbors; `ttl` hops left.
    ForwardJoin {
        /// The joining node.
        peer: PI,
        /// Remaining walk length.
        ttl: u8,
    },
    /// Request to become active-view neighbors. High priority is granted even when full.
    Neighbor {
        /// The requester has no neighbors at all.
        high_priority: bool,
    },
    /// Answer to [`Body::Neighbor`].
    NeighborReply {
        /// Whether the receiver of the request added the requester to its active view.
        accepted: bool,
    },
    /// The sender dropped us from its active view (`alive`: it keeps us as passive peer).
    Disconnect {
        /// False when the sender is leaving the topic.
        alive: bool,
    },
    /// Passive-view exchange random walk started by `origin`.
    Shuffle {
        /// The node that started the walk; the reply goes straight to it.
        origin: PI,
        /// A sample of the origin's views.
        peers: Vec<PI>,
        /// Remaining walk length.
        ttl: u8,
    },
    /// Answer to [`Body::Shuffle`]: a sample of the receiver's passive view.
    ShuffleReply {
        /// The sample.
        peers: Vec<PI>,
    },
    /// A published message.
    Gossip(Gossip<PI>),
    /// Lazy announcement of messages (batched).
    IHave(Vec<IHaveEntry<PI>>),
    /// Request for cached messages, without changing the tree.
    IWant(Vec<MsgId<PI>>),
    /// "Make me your eager peer" (and send me `id` if given): PlumTree tree repair.
    Graft {
        /// The message that was missing, if any.
        id: Option<MsgId<PI>>,
    },
    /// "Stop pushing to me eagerly": a redundant tree edge.
    Prune,
    /// Anti-entropy: the sender's per-stream high-water marks and gaps.
    AeDigest {
        /// Per-stream state (bounded).
        entries: Vec<AeEntry<PI>>,
        /// True when `entries` lists every stream the sender knows, so a stream absent from
        /// it is one the sender has never seen.
        complete: bool,
        /// True when this digest answers one (no answer expected).
        reply: bool,
    },
}

/// Coarse kind of a message, for counters and diagnostics.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum Kind {
    /// A payload pushed along the eager tree.
    Eager,
    /// A payload sent in answer to a GRAFT or IWANT.
    Repair,
    /// A payload sent by anti-entropy.
    AePayload,
    /// A payload pushed along the tree after a repair ([`PushKind::Detour`]).
    Detour,
    /// IHAVE.
    IHave,
    /// IWANT.
    IWant,
    /// GRAFT.
    Graft,
    /// PRUNE.
    Prune,
    /// Anti-entropy digest.
    AeDigest,
    /// Membership: join, forward-join, neighbor, disconnect, shuffle.
    Membership,
}

impl<PI> Body<PI> {
    /// The coarse kind of this message.
    pub fn kind(&self) -> Kind {
        match self {
            Body::Gossip(g) => match g.kind {
                PushKind::Eager => Kind::Eager,
                PushKind::Repair => Kind::Repair,
                PushKind::AntiEntropy => Kind::AePayload,
                PushKind::Detour => Kind::Detour,
            },
            Body::IHave(_) => Kind::IHave,
            Body::IWant(_) => Kind::IWant,
            Body::Graft { .. } => Kind::Graft,
            Body::Prune => Kind::Prune,
            Body::AeDigest { .. } => Kind::AeDigest,
            Body::Join
            | Body::ForwardJoin { .. }
            | Body::Neighbor { .. }
            | Body::NeighborReply { .. }
            | Body::Disconnect { .. }
            | Body::Shuffle { .. }
            | Body::ShuffleReply { .. } => Kind::Membership,
        }
    }
}

/// Why a received message was rejected.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum Violation {
    /// A list in the message is longer than its bound.
    #[error("{what} has {len} entries, more than {max}")]
    TooMany {
        /// Which list.
        what: &'static str,
        /// Its length.
        len: usize,
        /// The bound.
        max: usize,
    },
    /// Payload larger than the configured maximum.
    #[error("payload of {len} bytes exceeds {max}")]
    PayloadTooLarge {
        /// Payload length.
        len: usize,
        /// The bound.
        max: usize,
    },
    /// A field holds a value no honest peer sends.
    #[error("invalid {0}")]
    InvalidField(&'static str),
    /// The message claims to come from ourselves.
    #[error("message from our own peer id")]
    FromSelf,
}

fn bound(what: &'static str, len: usize, max: usize) -> Result<(), Violation> {
    if len > max {
        Err(Violation::TooMany { what, len, max })
    } else {
        Ok(())
    }
}

impl<PI> Message<PI> {
    /// Checks every bound of a received message. The state machine calls this first; the node
    /// may call it too, e.g. to count rejects before queueing.
    pub fn validate(&self, limits: &Limits) -> Result<(), Violation> {
        match &self.body {
            Body::Join
            | Body::Neighbor { .. }
            | Body::NeighborReply { .. }
            | Body::Disconnect { .. }
            | Body::Prune => Ok(()),
            Body::ForwardJoin { ttl, .. } => {
                if usize::from(*ttl) > limits.max_ttl {
                    return Err(Violation::InvalidField("forward-join ttl"));
                }
                Ok(())
            }
            Body::Shuffle { peers, ttl, .. } => {
                if usize::from(*ttl) > limits.max_ttl {
                    return Err(Violation::InvalidField("shuffle ttl"));
                }
                bound("shuffle peers", peers.len(), limits.max_shuffle_peers)
            }
            Body::ShuffleReply { peers } => {
                bound("shuffle-reply peers", peers.len(), limits.max_shuffle_peers)
            }
            Body::Gossip(g) => {
                if g.payload.len() > limits.max_payload {
                    return Err(Violation::PayloadTooLarge {
                        len: g.payload.len(),
                        max: limits.max_payload,
                    });
                }
                if g.id.seq == 0 {
                    return Err(Violation::InvalidField("sequence number 0"));
                }
                if g.hops == 0 || usize::from(g.hops) > limits.max_hops {
                    return Err(Violation::InvalidField("hop count"));
                }
                Ok(())
            }
            Body::IHave(entries) => {
                bound("ihave entries", entries.len(), limits.max_ihave_entries)?;
                if entries.iter().any(|e| e.id.seq == 0) {
                    return Err(Violation::InvalidField("sequence number 0"));
                }
                Ok(())
            }
            Body::IWant(ids) => bound("iwant ids", ids.len(), limits.max_iwant_ids),
            Body::Graft { .. } => Ok(()),
            Body::AeDigest { entries, .. } => {
                bound("digest entries", entries.len(), limits.max_digest_entries)?;
                for e in entries {
                    bound("digest gaps", e.missing.len(), limits.max_digest_gaps)?;
                }
                Ok(())
            }
        }
    }
}
