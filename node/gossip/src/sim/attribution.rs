//! Where redundant payloads come from: the simulator watches every message a node sends and
//! receives and files each payload copy a node receives under one cause, so a change to the
//! protocol can be judged by which redundancy it removes (`docs/gossip.md`, "Redundancy by
//! cause").
//!
//! The first copy of a message at a node is a delivery (filed by how it came: eager push,
//! repair, anti-entropy). Every further copy is redundant and filed by why it was sent:
//! - an eager push is filed by why the link (sender → receiver) was eager at that moment —
//!   a **fresh** link (eager since the neighbor came up and never pruned: the flood over a new
//!   tree), a **parent** link (the sender made the receiver eager because the receiver had
//!   pushed it a new message: the tree's other direction), a **grafted** link (made eager by a
//!   GRAFT that repaired a missing message) or an **optimized** link (the tree optimisation's
//!   GRAFT) — unless the receiver had already asked for the message (GRAFT or IWANT), in which
//!   case the copy is filed as **after repair**: the repair wait ended too early;
//! - a repair answer (to a GRAFT or to an IWANT) that lost the race against another copy;
//! - a detour (a copy pushed along the tree by a node that got it by repair) that met the
//!   tree's own copy;
//! - an anti-entropy push of a message the receiver already had.
//!
//! The tracker mirrors the core's link state from the messages it can see (NeighborUp/Down,
//! Demoted/Suppressed, GRAFT, PRUNE, new payloads) rather than reading the core's internals, so
//! it measures the protocol from the outside, like a packet capture would.

use std::collections::HashMap;

use serde::Serialize;

use super::network::SimPeer;
use crate::{Body, MsgId, PushKind, TopicEvent};

/// Payload copies received, split by how they came and, for redundant ones, by cause.
/// Counts only grow; the scenario takes differences per round.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize)]
pub struct Redundancy {
    /// Every payload copy received by any node (what the RMR numerator counts).
    pub copies: u64,
    /// First copies that came by eager push.
    pub new_eager: u64,
    /// First copies that came as a GRAFT / IWANT answer.
    pub new_repair: u64,
    /// First copies that came by anti-entropy.
    pub new_ae: u64,
    /// First copies that came as a detour (pushed along the tree after a repair).
    pub new_detour: u64,
    /// Redundant eager pushes on a link eager since the neighbor came up (never pruned).
    pub eager_fresh: u64,
    /// Redundant eager pushes on a link made eager because the receiver had pushed the
    /// sender a new message.
    pub eager_parent: u64,
    /// Redundant eager pushes on a link made eager by a repair GRAFT.
    pub eager_grafted: u64,
    /// Redundant eager pushes on a link made eager by the tree optimisation.
    pub eager_optimized: u64,
    /// Redundant eager pushes whose receiver had already asked for the message (GRAFT or
    /// IWANT): the repair wait ended before the tree delivered.
    pub eager_after_repair: u64,
    /// Redundant eager pushes on a link the tracker did not see become eager.
    pub eager_other: u64,
    /// GRAFT answers that arrived after another copy.
    pub repair_graft: u64,
    /// IWANT answers that arrived after another copy.
    pub repair_iwant: u64,
    /// Detours (copies pushed along the tree by a node that got them by repair) that met
    /// another copy.
    pub detour: u64,
    /// Anti-entropy pushes of a message the receiver already had.
    pub anti_entropy: u64,
}

impl Redundancy {
    /// Redundant copies (every copy that was not a delivery).
    pub fn redundant(&self) -> u64 {
        self.eager_fresh
            + self.eager_parent
            + self.eager_grafted
            + self.eager_optimized
            + self.eager_after_repair
            + self.eager_other
            + self.repair_graft
            + self.repair_iwant
            + self.detour
            + self.anti_entropy
    }

    /// `self − before`, field by field.
    pub fn since(&self, before: &Redundancy) -> Redundancy {
        Redundancy {
            copies: self.copies - before.copies,
            new_eager: self.new_eager - before.new_eager,
            new_repair: self.new_repair - before.new_repair,
            new_ae: self.new_ae - before.new_ae,
            new_detour: self.new_detour - before.new_detour,
            eager_fresh: self.eager_fresh - before.eager_fresh,
            eager_parent: self.eager_parent - before.eager_parent,
            eager_grafted: self.eager_grafted - before.eager_grafted,
            eager_optimized: self.eager_optimized - before.eager_optimized,
            eager_after_repair: self.eager_after_repair - before.eager_after_repair,
            eager_other: self.eager_other - before.eager_other,
            repair_graft: self.repair_graft - before.repair_graft,
            repair_iwant: self.repair_iwant - before.repair_iwant,
            detour: self.detour - before.detour,
            anti_entropy: self.anti_entropy - before.anti_entropy,
        }
    }

    /// `self + other`, field by field.
    pub fn plus(&self, other: &Redundancy) -> Redundancy {
        Redundancy {
            copies: self.copies + other.copies,
            new_eager: self.new_eager + other.new_eager,
            new_repair: self.new_repair + other.new_repair,
            new_ae: self.new_ae + other.new_ae,
            new_detour: self.new_detour + other.new_detour,
            eager_fresh: self.eager_fresh + other.eager_fresh,
            eager_parent: self.eager_parent + other.eager_parent,
            eager_grafted: self.eager_grafted + other.eager_grafted,
            eager_optimized: self.eager_optimized + other.eager_optimized,
            eager_after_repair: self.eager_after_repair + other.eager_after_repair,
            eager_other: self.eager_other + other.eager_other,
            repair_graft: self.repair_graft + other.repair_graft,
            repair_iwant: self.repair_iwant + other.repair_iwant,
            detour: self.detour + other.detour,
            anti_entropy: self.anti_entropy + other.anti_entropy,
        }
    }

    /// The redundant counts as (name, count), in field order (for ratios and tables).
    pub fn causes(&self) -> [(&'static str, u64); 10] {
        [
            ("eager_fresh", self.eager_fresh),
            ("eager_parent", self.eager_parent),
            ("eager_grafted", self.eager_grafted),
            ("eager_optimized", self.eager_optimized),
            ("eager_after_repair", self.eager_after_repair),
            ("eager_other", self.eager_other),
            ("repair_graft", self.repair_graft),
            ("repair_iwant", self.repair_iwant),
            ("detour", self.detour),
            ("anti_entropy", self.anti_entropy),
        ]
    }
}

/// Why a directed link (pusher → receiver) was eager, as the tracker saw it become so; taken
/// when an eager push is sent and carried with it (by the time it arrives, the sender may
/// already have pruned the link because the receiver's copy crossed it on the way).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum LinkCause {
    Fresh,
    Parent,
    Grafted,
    Optimized,
}

/// What a node asked for, per message.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Asked {
    Graft,
    IWant,
}

/// The tracker (one per simulated network).
#[derive(Debug, Default)]
pub(crate) struct Attribution {
    /// Eager directed links (pusher, receiver) and why they became eager.
    links: HashMap<(SimPeer, SimPeer), LinkCause>,
    /// Per message: which nodes have it (delivered or published).
    have: HashMap<MsgId<SimPeer>, Vec<bool>>,
    /// (node, message) → the last request the node sent for it.
    asked: HashMap<(SimPeer, MsgId<SimPeer>), Asked>,
    pub counts: Redundancy,
    peers: usize,
}

impl Attribution {
    pub fn new(peers: usize) -> Self {
        Self {
            peers,
            ..Self::default()
        }
    }

    fn has(&self, node: SimPeer, id: &MsgId<SimPeer>) -> bool {
        self.have
            .get(id)
            .and_then(|v| v.get(node as usize))
            .copied()
            .unwrap_or(false)
    }

    /// `node` delivered (or published) `id`.
    pub fn delivered(&mut self, node: SimPeer, id: &MsgId<SimPeer>) {
        let peers = self.peers;
        let v = self
            .have
            .entry(id.clone())
            .or_insert_with(|| vec![false; peers]);
        if let Some(slot) = v.get_mut(node as usize) {
            *slot = true;
        }
    }

    /// `node` emitted a topic event.
    pub fn event(&mut self, node: SimPeer, event: &TopicEvent<SimPeer>) {
        match event {
            TopicEvent::NeighborUp(p) => {
                self.links.insert((node, *p), LinkCause::Fresh);
            }
            TopicEvent::NeighborDown(p)
            | TopicEvent::Demoted(p)
            | TopicEvent::Suppressed { peer: p, .. } => {
                self.links.remove(&(node, *p));
            }
            TopicEvent::Recovered(_) => {}
        }
    }

    /// `from` sends `body` to `to`. For an eager push, returns why the link was eager; the
    /// network hands that back to [`Attribution::received`].
    pub fn sent(&mut self, from: SimPeer, to: SimPeer, body: &Body<SimPeer>) -> Option<LinkCause> {
        match body {
            Body::Gossip(g) if g.kind == PushKind::Eager => {
                return self.links.get(&(from, to)).copied();
            }
            Body::Prune => {
                self.links.remove(&(from, to));
            }
            Body::Graft { id } => {
                let cause = if id.is_some() {
                    LinkCause::Grafted
                } else {
                    LinkCause::Optimized
                };
                self.links.insert((from, to), cause);
                if let Some(id) = id {
                    self.asked.insert((from, id.clone()), Asked::Graft);
                }
            }
            Body::IWant(ids) => {
                for id in ids {
                    self.asked.insert((from, id.clone()), Asked::IWant);
                }
            }
            _ => {}
        }
        None
    }

    /// `to` is about to process `body` from `from`: file a payload copy, and note link changes
    /// the receiver makes on its side.
    /// `link` is what [`Attribution::sent`] returned for this message.
    pub fn received(
        &mut self,
        to: SimPeer,
        from: SimPeer,
        body: &Body<SimPeer>,
        link: Option<LinkCause>,
    ) {
        match body {
            Body::Gossip(g) => {
                self.counts.copies += 1;
                let dup = self.has(to, &g.id);
                let c = &mut self.counts;
                match (g.kind, dup) {
                    (PushKind::Eager | PushKind::Repair | PushKind::Detour, false) => {
                        match g.kind {
                            PushKind::Eager => c.new_eager += 1,
                            PushKind::Repair => c.new_repair += 1,
                            _ => c.new_detour += 1,
                        }
                        // The receiver makes whoever pushed it a new message eager (unless it
                        // already was).
                        self.links.entry((to, from)).or_insert(LinkCause::Parent);
                    }
                    (PushKind::AntiEntropy, false) => c.new_ae += 1,
                    (PushKind::Eager, true) => {
                        if self.asked.contains_key(&(to, g.id.clone())) {
                            c.eager_after_repair += 1;
                        } else {
                            match link {
                                Some(LinkCause::Fresh) => c.eager_fresh += 1,
                                Some(LinkCause::Parent) => c.eager_parent += 1,
                                Some(LinkCause::Grafted) => c.eager_grafted += 1,
                                Some(LinkCause::Optimized) => c.eager_optimized += 1,
                                None => c.eager_other += 1,
                            }
                        }
                    }
                    (PushKind::Repair, true) => match self.asked.get(&(to, g.id.clone())) {
                        Some(Asked::IWant) => c.repair_iwant += 1,
                        _ => c.repair_graft += 1,
                    },
                    (PushKind::Detour, true) => c.detour += 1,
                    (PushKind::AntiEntropy, true) => c.anti_entropy += 1,
                }
            }
            Body::Prune => {
                self.links.remove(&(to, from));
            }
            Body::Graft { id } => {
                let cause = if id.is_some() {
                    LinkCause::Grafted
                } else {
                    LinkCause::Optimized
                };
                self.links.insert((to, from), cause);
            }
            _ => {}
        }
    }
}
