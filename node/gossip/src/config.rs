//! Protocol configuration: every cap that keeps per-node state bounded lives here, with the
//! timeouts of repair, anti-entropy and cooling. The defaults are what the simulator proves
//! (see `docs/gossip.md` for why each value is what it is).

use std::time::Duration;

use serde::{Deserialize, Serialize};

/// Bounds on what a received message may contain (checked before anything else).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Limits {
    /// Largest payload accepted and published, bytes.
    pub max_payload: usize,
    /// Largest hop count accepted.
    pub max_hops: usize,
    /// Largest random-walk ttl accepted.
    pub max_ttl: usize,
    /// Most peers in a shuffle or shuffle reply.
    pub max_shuffle_peers: usize,
    /// Most entries in one IHAVE.
    pub max_ihave_entries: usize,
    /// Most ids in one IWANT.
    pub max_iwant_ids: usize,
    /// Most streams in one anti-entropy digest.
    pub max_digest_entries: usize,
    /// Most gaps listed per digest entry.
    pub max_digest_gaps: usize,
}

impl Default for Limits {
    fn default() -> Self {
        Self {
            max_payload: 256 * 1024,
            max_hops: 1024,
            max_ttl: 16,
            max_shuffle_peers: 32,
            max_ihave_entries: 512,
            max_iwant_ids: 256,
            max_digest_entries: 128,
            max_digest_gaps: 256,
        }
    }
}

/// Configuration of one [`crate::State`] (the same for every topic).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Config {
    // --- membership (HyParView-like, per topic) ---
    /// Active view size: the neighbors we hold links to. Eager and lazy sets are subsets.
    pub active_cap: usize,
    /// Passive view size: known peers to repair the active view from.
    pub passive_cap: usize,
    /// Active random walk length of joins and shuffles.
    pub active_walk: u8,
    /// Walk length at which a forwarded join is also put into the passive view.
    pub passive_walk: u8,
    /// Active-view peers included in a shuffle.
    pub shuffle_active: usize,
    /// Passive-view peers included in a shuffle.
    pub shuffle_passive: usize,
    /// How often a shuffle is started.
    pub shuffle_interval: Duration,
    /// Membership maintenance tick: refill the active view, expire caches, lift cooling.
    pub maintenance_interval: Duration,
    /// How long a low-priority neighbor request may stay unanswered.
    pub neighbor_timeout: Duration,
    /// Most bootstrap peers remembered (used to rejoin when both views run empty).
    pub bootstrap_cap: usize,

    // --- dissemination (PlumTree) ---
    /// A new neighbor starts as an eager (tree) peer only while the node has fewer eager peers
    /// than this; otherwise it starts lazy (IHAVE only) and joins the tree when a GRAFT or a
    /// first copy makes it eager. `active_cap` or more: every new neighbor is eager (the
    /// PlumTree paper's flood of the first message).
    pub fresh_eager: usize,
    /// IHAVEs are batched per peer and flushed after this delay.
    pub ihave_interval: Duration,
    /// Floor of the wait between the first IHAVE of a missing message and the first GRAFT,
    /// for a node on the tree (one with an eager peer; a node with none asks at once). The
    /// actual wait is learned: `1.25 ·` the largest recent lag of an eager copy behind its
    /// first IHAVE (late ones, after a repair, included) — per stream for publishers already
    /// heard, per topic for new ones — within `[graft_timeout_1, graft_timeout_max]`, so a
    /// tree path slower than a lazy shortcut is not mistaken for a broken one.
    pub graft_timeout_1: Duration,
    /// Cap of the learned graft wait (see `graft_timeout_1`).
    pub graft_timeout_max: Duration,
    /// The learned graft wait for a publisher not heard yet, before the topic's tree has
    /// been measured; samples take it from there (see `graft_timeout_1`).
    pub graft_timeout_initial: Duration,
    /// Wait at least this long for a grafted / IWANTed peer to deliver before asking the next
    /// announcer. The actual wait is adaptive per peer: `srtt + 4·rttvar` of the peer's measured
    /// repair round trips (TCP's RTO), never below this floor.
    pub graft_timeout_2: Duration,
    /// Cap of the adaptive repair wait (see `graft_timeout_2`).
    pub repair_timeout_max: Duration,
    /// Repair wait for a peer with no measured round trip yet (TCP's initial RTO, scaled to
    /// overlay links): a first request to an unmeasured peer is not given up on after the
    /// floor, which would ask a second announcer and take two copies.
    pub repair_timeout_initial: Duration,
    /// A peer asked for a message (GRAFT / IWANT) has broken its promise when its copy has not
    /// reached us this long after the request (or twice its adaptive repair wait, if longer).
    /// Only scoring waits this long; the next announcer is asked after the repair wait.
    pub promise_timeout: Duration,
    /// When a lazy peer announces a message in this many fewer hops than it reached us
    /// eagerly, swap the two links (PlumTree's tree optimisation). 0 disables.
    pub optimization_threshold: u16,
    /// Most missing messages tracked (announced but not received).
    pub missing_cap: usize,

    // --- message cache ---
    /// How long a received message stays available for repair and anti-entropy.
    pub cache_ttl: Duration,
    /// Most messages cached per topic.
    pub cache_cap: usize,
    /// Most payload bytes cached per topic.
    pub cache_bytes: usize,
    /// Most (origin, epoch) streams tracked per topic for dedupe and anti-entropy.
    pub streams_cap: usize,
    /// Most out-of-order sequence numbers remembered per stream; beyond it the oldest gap is
    /// given up.
    pub stream_window: usize,

    // --- anti-entropy ---
    /// How often a node exchanges a digest with one random neighbor.
    pub ae_interval: Duration,
    /// A message is offered by anti-entropy only once it has been cached this long, so
    /// messages still travelling the tree are not sent twice.
    pub ae_min_age: Duration,
    /// Most payloads sent in answer to one digest.
    pub ae_max_push: usize,

    // --- scoring and cooling ---
    /// Half-life of score components.
    pub score_half_life: Duration,
    /// Broken promises of one peer within this span are one piece of evidence against it
    /// (they usually share one cause, e.g. one burst of IWANTs that all went unanswered), so
    /// cooling a peer needs misbehaviour repeated over several such spans.
    pub promise_episode: Duration,
    /// Longest a repair wait's end is put off because of the node's own inbound backlog
    /// ([`crate::InEvent::InboundBacklog`]); past it the promise is judged whatever the backlog
    /// (keeps every missing entry's life bounded).
    pub backlog_defer_max: Duration,
    /// Below this score an eager peer is demoted to lazy.
    pub demote_below: f64,
    /// Below this score a peer is suppressed (cooled).
    pub suppress_below: f64,
    /// First suppression lasts this long; each further strike doubles it.
    pub suppress_base: Duration,
    /// Longest suppression.
    pub suppress_max: Duration,
    /// A suppression entry (its strikes) is forgotten after this long without a new strike.
    pub strike_forget: Duration,
    /// Most suppression entries per topic.
    pub suppress_cap: usize,

    // --- slow-peer detection (latency) ---
    /// A neighbor is judged slow when its round-trip time ([`crate::InEvent::PeerRtt`], the
    /// transport's path RTT) is at least this many times the median RTT of the node's other
    /// peers (relative: a node whose own path is slow sees every peer slow and judges none) …
    pub slow_rtt_ratio: f64,
    /// … and at least this much above that median (absolute: a fast mesh's small spread, or
    /// a far but steady peer, is never slow).
    pub slow_rtt_excess: Duration,
    /// Other peers with a fresh RTT the comparison needs; with fewer there is no verdict.
    pub slow_min_peers: usize,
    /// Added to the peer's decayed `slowness` score component at every maintenance tick that
    /// judges it slow (about 3 ticks demote, 4 suppress). 0 turns the detector off.
    pub slow_penalty: f64,
    /// An RTT not reported again within this long is not used (no verdict on that peer).
    pub rtt_fresh: Duration,

    /// Bounds on received messages.
    pub limits: Limits,
}

impl Default for Config {
    fn default() -> Self {
        Self {
            active_cap: 6,
            passive_cap: 30,
            active_walk: 6,
            passive_walk: 3,
            shuffle_active: 3,
            shuffle_passive: 4,
            shuffle_interval: Duration::from_secs(10),
            maintenance_interval: Duration::from_secs(1),
            neighbor_timeout: Duration::from_secs(2),
            bootstrap_cap: 16,
            fresh_eager: 0,
            ihave_interval: Duration::from_millis(10),
            graft_timeout_1: Duration::from_millis(80),
            graft_timeout_max: Duration::from_secs(1),
            graft_timeout_initial: Duration::from_millis(400),
            graft_timeout_2: Duration::from_millis(60),
            repair_timeout_initial: Duration::from_millis(250),
            repair_timeout_max: Duration::from_secs(1),
            promise_timeout: Duration::from_secs(1),
            optimization_threshold: 0,
            missing_cap: 1024,
            cache_ttl: Duration::from_secs(120),
            cache_cap: 8192,
            cache_bytes: 32 * 1024 * 1024,
            streams_cap: 1024,
            stream_window: 4096,
            ae_interval: Duration::from_secs(1),
            ae_min_age: Duration::from_secs(1),
            ae_max_push: 32,
            score_half_life: Duration::from_secs(10),
            promise_episode: Duration::from_millis(500),
            backlog_defer_max: Duration::from_secs(5),
            demote_below: 0.5,
            suppress_below: -1.0,
            suppress_base: Duration::from_secs(1),
            suppress_max: Duration::from_secs(60),
            strike_forget: Duration::from_secs(120),
            suppress_cap: 64,
            slow_rtt_ratio: 4.0,
            slow_rtt_excess: Duration::from_millis(500),
            slow_min_peers: 2,
            slow_penalty: 1.0,
            rtt_fresh: Duration::from_secs(5),
            limits: Limits::default(),
        }
    }
}
