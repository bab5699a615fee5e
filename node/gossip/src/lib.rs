//! `soak-gossip`: the sans-IO pub/sub core of `soak-node` and a deterministic simulator over it.
//!
//! Entry type: [`State`] — one node's gossip state for all its topics. It is a pure state
//! machine in the style of iroh-gossip's `proto`: the caller feeds it [`InEvent`]s (received
//! messages, commands, expired timers, peer loss, send outcomes) together with the current
//! time, and it answers with [`OutEvent`]s (messages to send, timers to arm, deliveries to the
//! local subscriber, peers to disconnect, notable events). Randomness comes from an RNG the
//! caller passes in; iteration order is deterministic (`BTreeMap`/`BTreeSet`) — so the same
//! seed and inputs always give the same outputs.
//!
//! Per topic the core runs:
//! - **membership** — a HyParView-like bounded active view (links) and passive view
//!   (repair candidates) with join / forward-join / neighbor / disconnect / shuffle;
//! - **dissemination** — PlumTree: eager push along a tree inside the active view, batched
//!   lazy IHAVE to the rest, GRAFT/IWANT repair on timeout, PRUNE on duplicates; links start
//!   lazy (the first message builds the tree through GRAFTs instead of flooding it), the graft
//!   wait is learned from how late the tree's copies follow their IHAVEs, and a graft the tree
//!   did not need is undone;
//! - **anti-entropy** — periodic per-stream high-water-mark digests with a random neighbor,
//!   answered from a bounded TTL cache, so gaps (e.g. after a partition) are filled;
//! - **scoring and cooling** — decayed per-(topic, peer) score from send health, timeouts
//!   and broken IWANT promises, and from latency: a neighbor whose transport RTT
//!   ([`InEvent::PeerRtt`]) stands far above the node's other peers' is judged slow at every
//!   maintenance tick; demotion eager → lazy, suppression with exponential backoff, recovery
//!   on lapse and on verified inbound traffic (not while still slow).
//!
//! Every per-node structure is capped by [`Config`]; `docs/gossip.md` lists the caps and how
//! the node shell drives this crate. The simulator lives in [`sim`] (feature `sim`, on by
//! default).
#![warn(missing_docs)]

mod config;
mod diag;
mod proto;
mod score;
mod state;
mod stats;
mod store;
mod topic;

#[cfg(feature = "sim")]
pub mod sim;
#[cfg(test)]
mod tests;

pub use config::{Config, Limits};
pub use diag::{PeerScoreSnapshot, Sizes, SuppressionSnapshot, TopicSnapshot};
pub use proto::{
    AeEntry, Body, Gossip, IHaveEntry, InvalidTopic, Kind, MAX_TOPIC_LEN, Message, MsgId, PushKind,
    TopicId, Violation,
};
pub use score::{Cause, Score, Suppression};
pub use state::{
    Command, CommandError, Delivery, InEvent, OutEvent, PeerId, SendOutcome, State, Timer,
    TopicEvent,
};
pub use stats::Counters;
