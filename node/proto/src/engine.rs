//! The node's protocol engine: the membership/DM [`Core`] and the gossip core
//! ([`soak_gossip::State`]) composed, with the policy that joins them — the part that used to
//! live in the IO shell:
//!
//! - **frames held until a peer connects**: gossip for a known but unconnected peer waits
//!   (bounded per peer) while the core dials it, and is released on `ConnectionUp` or failed on
//!   `DialFailed`;
//! - **the send-outcome feedback loop**: outcomes known at once (no address, hold overflow) are
//!   fed back to the gossip core in bounded rounds; an outbound queue the shell found full comes
//!   back as [`Input::QueueFull`] carrying the round of the frame it refused;
//! - **rejoining empty topics**: every [`REJOIN_INTERVAL`] a topic whose view is empty is joined
//!   again through the current contacts (covers subscriptions that raced);
//! - the per-topic subscriber buffers, the gossip timers and the inbound-backlog report.
//!
//! Entry type: [`Engine`]. Like the cores it composes it never does IO, never reads a clock
//! (time comes in as `now`, wall time as [`Engine::sync_wall`]) and draws randomness only from
//! seeded RNGs.

use std::cmp::Reverse;
use std::collections::{BTreeMap, BTreeSet, BinaryHeap, HashMap, VecDeque};
use std::net::SocketAddr;
use std::time::{Duration, Instant};

use rand::rngs::StdRng;
use soak_api::counters as c;
use soak_gossip::{
    CommandError, InEvent, OutEvent, SendOutcome, State as GossipState, Timer as GossipTimer,
    TopicEvent, TopicId, TopicSnapshot,
};

use crate::PeerId;
use crate::bans::Ban;
use crate::core::{self, CloseReason, ConnId, Core, CoreConfig, DmDone, GossipRoute};
use crate::inbox::InboxEntry;
use crate::pubsub::{self, GossipMessage, GossipPeer, MAX_TOPICS, PENDING_PER_PEER, Subscriber};
use crate::transient::Slot;
use crate::wire::{Frame, LEN_PREFIX};

/// Every this often, topics whose active view is empty are re-joined through current contacts.
pub const REJOIN_INTERVAL: Duration = Duration::from_secs(1);
/// How often the shell reports the connections' path RTTs ([`Input::PathRtts`]).
pub const PATH_RTT_INTERVAL: Duration = Duration::from_secs(1);
/// Most follow-up rounds (send outcomes feeding the gossip core) from one input; a safety bound.
pub const GOSSIP_ROUNDS: u8 = 64;

/// Counters the engine adds beyond the core's.
pub mod stats {
    /// Gossip messages too large for one frame (not sent).
    pub const GOSSIP_OVERSIZED: &str = "gossip_oversized_total";
    /// Gossip outputs dropped at the follow-up bound ([`super::GOSSIP_ROUNDS`]).
    pub const GOSSIP_FEEDBACK_DROPPED: &str = "gossip_feedback_dropped_total";
}

/// Engine settings.
#[derive(Debug, Clone)]
pub struct EngineConfig {
    /// The membership/DM core.
    pub core: CoreConfig,
    /// The gossip core.
    pub gossip: soak_gossip::Config,
    /// Subscriber buffer capacity per topic.
    pub topic_buffer_capacity: usize,
    /// Subscriber buffer retention.
    pub topic_buffer_retention: Duration,
    /// Largest frame body (a bigger gossip message is not sent).
    pub max_frame: usize,
}

/// Inputs from the shell.
#[derive(Debug, Clone)]
pub enum Input {
    /// An input of the membership/DM core (connections, dials, frames, DM requests).
    Core(core::Input),
    /// A decoded gossip message from `peer`; `arrived` is when the shell took its frame off the
    /// connection (the time since is the node's own inbound backlog).
    Gossip {
        /// Sender.
        peer: PeerId,
        /// The message.
        msg: GossipMessage,
        /// Arrival, if known.
        arrived: Option<Instant>,
    },
    /// Gossip frames to `peer` that missed their send deadline (one entry per frame).
    SendTimeouts {
        /// The peer.
        peer: PeerId,
        /// The topic of each frame.
        topics: Vec<TopicId>,
    },
    /// The shell could not queue a gossip [`Output::Transmit`] (its outbound queue was full).
    QueueFull(GossipTag),
    /// The transport's current round-trip time to connected peers (QUIC's smoothed path RTT
    /// of each peer's current connection), reported about every [`PATH_RTT_INTERVAL`]; it
    /// feeds the gossip core's slow-peer detector ([`soak_gossip::InEvent::PeerRtt`]).
    PathRtts(Vec<(PeerId, Duration)>),
}

/// What a gossip frame on its way out belongs to, so its fate can be fed back.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct GossipTag {
    /// Receiver.
    pub peer: PeerId,
    /// Topic.
    pub topic: TopicId,
    /// Follow-up round that produced the frame (see [`GOSSIP_ROUNDS`]).
    pub round: u8,
}

/// Which latency an [`Output::Latency`] measures.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Latency {
    /// A DM from its request to its acknowledgement (dial and retry included).
    DmAck,
    /// A gossip message from its publication (origin's wall clock) to its first delivery here.
    GossipDelivery,
}

/// Outputs for the shell.
#[derive(Debug, Clone, PartialEq)]
pub enum Output {
    /// Queue these bytes (a length-prefixed frame) on the connection's outbound queue.
    Transmit {
        /// Connection.
        conn: ConnId,
        /// Encoded frame.
        bytes: Vec<u8>,
        /// For gossip frames: whose and which topic (report a full queue as
        /// [`Input::QueueFull`]).
        gossip: Option<GossipTag>,
    },
    /// Start reading an admitted connection (see [`core::Output::Start`]).
    Start {
        /// Connection.
        conn: ConnId,
    },
    /// Dial an address, pinning `peer` when known, under a transient slot.
    Dial {
        /// Transient slot (report the result with it).
        slot: Slot,
        /// Expected peer id.
        peer: Option<PeerId>,
        /// Address.
        addr: SocketAddr,
    },
    /// Abandon the handshake of a transient slot (authentication timeout).
    Abort {
        /// The slot.
        slot: Slot,
    },
    /// A ban was imposed (for logs).
    Banned(Ban),
    /// Close a connection.
    Close {
        /// Connection.
        conn: ConnId,
        /// Why.
        reason: CloseReason,
    },
    /// A DM operation finished.
    DmDone(DmDone),
    /// Something notable happened on a topic (for logs).
    Topic(TopicId, TopicEvent<GossipPeer>),
    /// One latency observation.
    Latency(Latency, Duration),
}

/// Why a topic operation was refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum TopicError {
    /// The node is not subscribed to the topic.
    #[error("not subscribed to topic {0}")]
    NotSubscribed(String),
    /// Subscribing would exceed [`MAX_TOPICS`].
    #[error("already subscribed to {MAX_TOPICS} topics")]
    TooManyTopics,
    /// Payload above the configured maximum.
    #[error("payload of {len} bytes exceeds {max} bytes")]
    PayloadTooLarge {
        /// Payload length.
        len: usize,
        /// The bound.
        max: usize,
    },
}

impl From<CommandError> for TopicError {
    fn from(e: CommandError) -> Self {
        match e {
            CommandError::NotSubscribed(t) => TopicError::NotSubscribed(t.to_string()),
            CommandError::PayloadTooLarge { len, max } => TopicError::PayloadTooLarge { len, max },
        }
    }
}

/// One delivered topic message as the API shows it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ReceivedItem {
    /// The stored delivery.
    pub item: pubsub::Received,
    /// When it was delivered here, unix ms (from the wall clock of [`Engine::sync_wall`]).
    pub received_at_ms: u64,
}

/// Sizes for gauges.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct EngineCounts {
    /// Topics subscribed.
    pub topics: usize,
    /// Messages held in subscriber buffers.
    pub buffered: usize,
    /// Gossip frames held while their peer is dialed.
    pub held: usize,
}

type TimerHeap = BinaryHeap<Reverse<(Instant, u64, GossipTimer<GossipPeer>)>>;

/// The composed protocol state machine. See the module docs.
#[derive(Debug)]
pub struct Engine {
    core: Core,
    gossip: GossipState<GossipPeer, StdRng>,
    cfg: EngineConfig,
    gossip_timers: TimerHeap,
    timer_seq: u64,
    subscribers: BTreeMap<TopicId, Subscriber>,
    /// Gossip frames held while a connection to the peer is dialed (bounded per peer).
    held: HashMap<PeerId, VecDeque<(TopicId, Vec<u8>)>>,
    next_rejoin: Instant,
    /// When the latest gossip frame handed to the gossip core reached this node.
    last_arrived: Instant,
    started: Instant,
    /// Wall clock anchor: (monotonic, unix ms) at the last [`Engine::sync_wall`].
    wall: (Instant, u64),
    out: VecDeque<Output>,
    stats: BTreeMap<&'static str, u64>,
}

impl Engine {
    /// A new engine. `started` is the origin of the gossip core's clock; `wall_ms` the unix
    /// time at `started`.
    pub fn new(
        core: Core,
        cfg: EngineConfig,
        my_addr: Option<SocketAddr>,
        gossip_rng: StdRng,
        started: Instant,
        wall_ms: u64,
    ) -> Engine {
        let me = GossipPeer::new(core.me(), my_addr);
        Engine {
            gossip: GossipState::new(me, cfg.gossip.clone(), gossip_rng),
            core,
            cfg,
            gossip_timers: BinaryHeap::new(),
            timer_seq: 0,
            subscribers: BTreeMap::new(),
            held: HashMap::new(),
            next_rejoin: started,
            last_arrived: started,
            started,
            wall: (started, wall_ms),
            out: VecDeque::new(),
            stats: BTreeMap::new(),
        }
    }

    /// The membership/DM core (read-only: counts, peer views, addresses).
    pub fn core(&self) -> &Core {
        &self.core
    }

    /// The membership/DM core, for inputs that bypass the engine's policy.
    pub fn core_mut(&mut self) -> &mut Core {
        &mut self.core
    }

    /// Re-anchor wall time (unix ms at `now`); used for delivery timestamps and latencies.
    pub fn sync_wall(&mut self, now: Instant, wall_ms: u64) {
        self.wall = (now, wall_ms);
    }

    fn wall_ms(&self, now: Instant) -> u64 {
        let (at, ms) = self.wall;
        if now >= at {
            ms.saturating_add(now.duration_since(at).as_millis() as u64)
        } else {
            ms.saturating_sub(at.duration_since(now).as_millis() as u64)
        }
    }

    /// Monotonic time as the gossip core sees it.
    fn gnow(&self, now: Instant) -> Duration {
        now.saturating_duration_since(self.started)
    }

    fn gpeer(&self, peer: PeerId) -> GossipPeer {
        GossipPeer::new(peer, self.core.addr_of(peer))
    }

    fn count(&mut self, name: &'static str, n: u64) {
        *self.stats.entry(name).or_default() += n;
    }

    /// When [`Engine::handle_timeout`] should next be called.
    pub fn next_timeout(&self) -> Option<Instant> {
        [
            self.core.next_timeout(),
            self.gossip_timers.peek().map(|Reverse((at, _, _))| *at),
            (!self.subscribers.is_empty()).then_some(self.next_rejoin),
        ]
        .into_iter()
        .flatten()
        .min()
    }

    /// Counter increments since the last call (the core's and the engine's).
    pub fn drain_stats(&mut self) -> impl Iterator<Item = (&'static str, u64)> + use<> {
        let mut all = std::mem::take(&mut self.stats);
        for (name, n) in self.core.drain_stats() {
            *all.entry(name).or_default() += n;
        }
        all.into_iter()
    }

    /// Next output, if any.
    pub fn poll_output(&mut self) -> Option<Output> {
        if let Some(o) = self.out.pop_front() {
            return Some(o);
        }
        Some(match self.core.poll_output()? {
            core::Output::Send { conn, frame } => Output::Transmit {
                conn,
                bytes: frame.encode(),
                gossip: None,
            },
            core::Output::Dial { slot, peer, addr } => Output::Dial { slot, peer, addr },
            core::Output::Start { conn } => Output::Start { conn },
            core::Output::Abort { slot } => Output::Abort { slot },
            core::Output::Close { conn, reason } => Output::Close { conn, reason },
            core::Output::DmDone(done) => {
                if done.outcome == soak_api::DmOutcome::Acked
                    && done.path == soak_api::DmPath::Direct
                {
                    self.out
                        .push_back(Output::Latency(Latency::DmAck, done.elapsed));
                }
                Output::DmDone(done)
            }
            core::Output::Banned(ban) => Output::Banned(ban),
        })
    }

    /// Process one input.
    pub fn handle(&mut self, input: Input, now: Instant) {
        match input {
            // Undecoded gossip handed over whole: decoded here (shells normally decode off
            // their main loop and send `Input::Gossip`).
            Input::Core(core::Input::Frame {
                peer,
                frame: Frame::Gossip(bytes),
                ..
            }) => match pubsub::decode(&bytes) {
                Some(msg) => self.on_gossip_message(peer, msg, None, now),
                None => self.count(c::INVALID_FRAMES, 1),
            },
            Input::Core(input) => {
                let touched = match &input {
                    core::Input::ConnectionUp { peer, .. } => Some(*peer),
                    core::Input::DialFailed { peer, .. } => *peer,
                    _ => None,
                };
                self.core.handle(input, now);
                if let Some(peer) = touched {
                    self.flush_held(peer, now);
                }
            }
            Input::Gossip { peer, msg, arrived } => {
                if let Some(at) = arrived {
                    self.last_arrived = self.last_arrived.max(at);
                }
                self.on_gossip_message(peer, msg, arrived, now);
            }
            Input::SendTimeouts { peer, topics } => {
                let gp = self.gpeer(peer);
                for topic in topics {
                    self.gossip_step(
                        InEvent::SendOutcome(gp, topic, SendOutcome::Timeout),
                        now,
                        0,
                    );
                }
            }
            Input::PathRtts(rtts) => {
                for (peer, rtt) in rtts {
                    let gp = self.gpeer(peer);
                    self.gossip_step(InEvent::PeerRtt(gp, rtt), now, 0);
                }
            }
            Input::QueueFull(tag) => {
                let gp = self.gpeer(tag.peer);
                let round = tag.round.saturating_add(1);
                self.gossip_step(
                    InEvent::SendOutcome(gp, tag.topic, SendOutcome::Timeout),
                    now,
                    round,
                );
            }
        }
    }

    /// Process expired timers. `inbound_busy`: frames still wait in the node's inbound path
    /// (receive queue, decoders, the channel to the engine's owner) — reported to the gossip
    /// core before its timers, so it does not judge a repair whose answer may be queued here.
    pub fn handle_timeout(&mut self, now: Instant, inbound_busy: bool) {
        self.core.handle_timeout(now);
        // Dials that timed out: their held frames fail.
        let stuck: Vec<PeerId> = self
            .held
            .keys()
            .filter(|p| !self.core.dialing(**p) && self.core.conn_of(**p).is_none())
            .copied()
            .collect();
        for peer in stuck {
            self.flush_held(peer, now);
        }
        let mut due = Vec::new();
        while let Some(Reverse((at, _, _))) = self.gossip_timers.peek() {
            if *at > now {
                break;
            }
            if let Some(Reverse((_, _, timer))) = self.gossip_timers.pop() {
                due.push(timer);
            }
        }
        if !due.is_empty() {
            // First in, first out: what is queued arrived no earlier than the last frame
            // handed over.
            let since = inbound_busy.then(|| self.gnow(self.last_arrived));
            self.gossip_step(InEvent::InboundBacklog(since), now, 0);
        }
        for timer in due {
            self.gossip_step(InEvent::TimerExpired(timer), now, 0);
        }
        if !self.subscribers.is_empty() && now >= self.next_rejoin {
            self.next_rejoin = now + REJOIN_INTERVAL;
            self.rejoin_empty_topics(now);
        }
    }

    // ---- topics ---------------------------------------------------------------------------

    /// Whether the node is subscribed to `topic`.
    pub fn is_subscribed(&self, topic: &TopicId) -> bool {
        self.subscribers.contains_key(topic)
    }

    /// Subscribe; `Ok(true)` when newly subscribed, `Ok(false)` when already.
    pub fn subscribe(&mut self, topic: TopicId, now: Instant) -> Result<bool, TopicError> {
        if self.subscribers.contains_key(&topic) {
            return Ok(false);
        }
        if self.subscribers.len() >= MAX_TOPICS {
            return Err(TopicError::TooManyTopics);
        }
        self.subscribers.insert(
            topic.clone(),
            Subscriber::new(
                self.cfg.topic_buffer_capacity,
                self.cfg.topic_buffer_retention,
            ),
        );
        let contacts = self.contacts();
        self.gossip.subscribe(topic, contacts, self.gnow(now));
        let out: Vec<_> = self.gossip.drain().collect();
        self.gossip_outputs(out, now, 0);
        Ok(true)
    }

    /// Contacts a subscription joins through (connected peers first).
    pub fn contact_count(&mut self) -> usize {
        self.core.contacts().len()
    }

    /// Leave `topic` (its subscriber buffer is dropped).
    pub fn unsubscribe(&mut self, topic: &TopicId, now: Instant) -> Result<(), TopicError> {
        if self.subscribers.remove(topic).is_none() {
            return Err(TopicError::NotSubscribed(topic.to_string()));
        }
        self.gossip.unsubscribe(topic, self.gnow(now));
        let out: Vec<_> = self.gossip.drain().collect();
        self.gossip_outputs(out, now, 0);
        Ok(())
    }

    /// Publish on `topic`; returns the message id.
    pub fn publish(
        &mut self,
        topic: &TopicId,
        payload: Vec<u8>,
        now: Instant,
    ) -> Result<String, TopicError> {
        if !self.subscribers.contains_key(topic) {
            return Err(TopicError::NotSubscribed(topic.to_string()));
        }
        let wall = self.wall_ms(now);
        let r = self.gossip.publish(topic, payload, wall, self.gnow(now));
        let out: Vec<_> = self.gossip.drain().collect();
        self.gossip_outputs(out, now, 0);
        r.map(|id| id.to_string()).map_err(TopicError::from)
    }

    /// A page of the topic's subscriber buffer (items with `seq > after`); marks everything up
    /// to `after` consumed.
    pub fn received(
        &mut self,
        topic: &TopicId,
        after: u64,
        limit: usize,
        now: Instant,
    ) -> Result<(Vec<ReceivedItem>, u64), TopicError> {
        let wall = self.wall_ms(now);
        let sub = self
            .subscribers
            .get_mut(topic)
            .ok_or_else(|| TopicError::NotSubscribed(topic.to_string()))?;
        let (items, next) = sub.page(after, limit);
        let items = items
            .into_iter()
            .map(|item| ReceivedItem {
                received_at_ms: wall
                    .saturating_sub(now.saturating_duration_since(item.at).as_millis() as u64),
                item,
            })
            .collect();
        Ok((items, next))
    }

    /// Inbox page, with each item's wall-clock arrival (unix ms).
    pub fn inbox_page(
        &self,
        after: u64,
        limit: usize,
        now: Instant,
    ) -> (Vec<(InboxEntry, u64)>, u64) {
        let wall = self.wall_ms(now);
        let (items, next) = self.core.inbox_page(after, limit);
        let items = items
            .into_iter()
            .map(|e| {
                let at =
                    wall.saturating_sub(now.saturating_duration_since(e.at).as_millis() as u64);
                (e, at)
            })
            .collect();
        (items, next)
    }

    /// Per-topic snapshots for diagnostics.
    pub fn snapshots(&self, now: Instant) -> Vec<TopicSnapshot<GossipPeer>> {
        self.gossip.snapshots(self.gnow(now))
    }

    /// The gossip core's counters by name.
    pub fn gossip_counters(&self) -> Vec<(&'static str, u64)> {
        self.gossip.counters().named()
    }

    /// Sizes for gauges.
    pub fn counts(&self) -> EngineCounts {
        EngineCounts {
            topics: self.subscribers.len(),
            buffered: self.subscribers.values().map(Subscriber::len).sum(),
            held: self.held.values().map(VecDeque::len).sum(),
        }
    }

    // ---- composition policy ---------------------------------------------------------------

    fn contacts(&mut self) -> Vec<GossipPeer> {
        self.core
            .contacts()
            .into_iter()
            .map(|(id, addr)| GossipPeer::new(id, addr))
            .collect()
    }

    fn rejoin_empty_topics(&mut self, now: Instant) {
        let empty: Vec<TopicId> = self
            .subscribers
            .keys()
            .filter(|t| self.gossip.active_view(t).is_empty())
            .cloned()
            .collect();
        if empty.is_empty() {
            return;
        }
        let contacts = self.contacts();
        if contacts.is_empty() {
            return;
        }
        let gnow = self.gnow(now);
        for topic in empty {
            self.gossip.subscribe(topic, contacts.clone(), gnow);
        }
        let out: Vec<_> = self.gossip.drain().collect();
        self.gossip_outputs(out, now, 0);
    }

    /// A gossip message for the core; `arrived` is when the shell took its frame off the
    /// connection.
    fn on_gossip_message(
        &mut self,
        peer: PeerId,
        msg: GossipMessage,
        arrived: Option<Instant>,
        now: Instant,
    ) {
        self.core.note_gossip(peer, now);
        let from = self.gpeer(peer);
        let input = match arrived {
            Some(at) => InEvent::RecvMessageAt(from, msg, self.gnow(at)),
            None => InEvent::RecvMessage(from, msg),
        };
        self.gossip_step(input, now, 0);
    }

    /// Feeds one input to the gossip core (at follow-up `round`) and carries out what it asks.
    fn gossip_step(&mut self, input: InEvent<GossipPeer>, now: Instant, round: u8) {
        let gnow = self.gnow(now);
        let out: Vec<_> = self.gossip.handle(input, gnow).collect();
        self.gossip_outputs(out, now, round);
    }

    /// Carries out gossip outputs; send outcomes known at once (unreachable, hold overflow) are
    /// fed back, in bounded rounds.
    fn gossip_outputs(&mut self, out: Vec<OutEvent<GossipPeer>>, now: Instant, round: u8) {
        let gnow = self.gnow(now);
        let mut batch = out;
        let mut round = round;
        loop {
            if round >= GOSSIP_ROUNDS {
                if !batch.is_empty() {
                    self.count(stats::GOSSIP_FEEDBACK_DROPPED, batch.len() as u64);
                }
                return;
            }
            let mut follow = Vec::new();
            for ev in batch.drain(..) {
                match ev {
                    OutEvent::SendMessage(to, msg) => {
                        if let Some(outcome) = self.gossip_send(to, &msg, now, round) {
                            follow.push(InEvent::SendOutcome(to, msg.topic, outcome));
                        }
                    }
                    OutEvent::ScheduleTimer(after, timer) => {
                        self.timer_seq += 1;
                        self.gossip_timers
                            .push(Reverse((now + after, self.timer_seq, timer)));
                    }
                    OutEvent::Deliver(topic, delivery) => self.deliver(topic, &delivery, now),
                    OutEvent::DisconnectPeer(_) => {}
                    OutEvent::Event(topic, ev) => self.out.push_back(Output::Topic(topic, ev)),
                }
            }
            if follow.is_empty() {
                return;
            }
            round += 1;
            for input in follow {
                batch.extend(self.gossip.handle(input, gnow));
            }
        }
    }

    fn deliver(&mut self, topic: TopicId, d: &soak_gossip::Delivery<GossipPeer>, now: Instant) {
        let Some(sub) = self.subscribers.get_mut(&topic) else {
            return;
        };
        if !sub.push(d, now) {
            self.count(c::GOSSIP_SUBSCRIBER_DROPPED, 1);
        }
        if d.hops > 0 {
            let ms = self.wall_ms(now).saturating_sub(d.published_at_ms);
            self.out.push_back(Output::Latency(
                Latency::GossipDelivery,
                Duration::from_millis(ms),
            ));
        }
    }

    /// Sends one gossip message: on the peer's connection, held while the peer is dialed
    /// (overflow → `Timeout`), `Failed` when unreachable. `None` when the outcome is not known
    /// yet.
    fn gossip_send(
        &mut self,
        to: GossipPeer,
        msg: &GossipMessage,
        now: Instant,
        round: u8,
    ) -> Option<SendOutcome> {
        let Some(body) = pubsub::encode(msg) else {
            return Some(SendOutcome::Failed);
        };
        let bytes = Frame::Gossip(body).encode();
        if bytes.len() > self.cfg.max_frame + LEN_PREFIX {
            self.count(stats::GOSSIP_OVERSIZED, 1);
            return None;
        }
        match self.core.gossip_route(to.id, to.addr, now) {
            GossipRoute::Conn(conn) => {
                self.out.push_back(Output::Transmit {
                    conn,
                    bytes,
                    gossip: Some(GossipTag {
                        peer: to.id,
                        topic: msg.topic.clone(),
                        round,
                    }),
                });
                None
            }
            GossipRoute::Dialing => {
                let q = self.held.entry(to.id).or_default();
                if q.len() >= PENDING_PER_PEER {
                    self.count(c::PEER_SEND_TIMEOUTS, 1);
                    return Some(SendOutcome::Timeout);
                }
                q.push_back((msg.topic.clone(), bytes));
                None
            }
            GossipRoute::Unreachable => Some(SendOutcome::Failed),
        }
    }

    /// A connection came up (or a dial failed): release or fail the frames held for the peer.
    fn flush_held(&mut self, peer: PeerId, now: Instant) {
        if !self.held.contains_key(&peer) {
            return;
        }
        if let Some(conn) = self.core.conn_of(peer) {
            let held = self.held.remove(&peer).unwrap_or_default();
            for (topic, bytes) in held {
                self.out.push_back(Output::Transmit {
                    conn,
                    bytes,
                    gossip: Some(GossipTag {
                        peer,
                        topic,
                        round: 0,
                    }),
                });
            }
        } else if !self.core.dialing(peer) {
            let held = self.held.remove(&peer).unwrap_or_default();
            let topics: BTreeSet<TopicId> = held.into_iter().map(|(t, _)| t).collect();
            let gp = self.gpeer(peer);
            for topic in topics {
                self.gossip_step(InEvent::SendOutcome(gp, topic, SendOutcome::Failed), now, 0);
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use std::net::SocketAddr;

    use rand::SeedableRng;
    use soak_api::Direction;

    use super::*;

    const ME: PeerId = PeerId([1; 32]);
    const PEER: PeerId = PeerId([2; 32]);

    fn addr(port: u16) -> SocketAddr {
        SocketAddr::from(([127, 0, 0, 1], port))
    }

    fn engine(now: Instant) -> Engine {
        let cfg = EngineConfig {
            core: CoreConfig::default(),
            gossip: soak_gossip::Config::default(),
            topic_buffer_capacity: 16,
            topic_buffer_retention: Duration::from_secs(60),
            max_frame: 65_536,
        };
        let core = Core::new(ME, cfg.core.clone(), vec![], 1, now);
        Engine::new(core, cfg, Some(addr(1)), StdRng::seed_from_u64(7), now, 0)
    }

    fn drain(e: &mut Engine) -> Vec<Output> {
        std::iter::from_fn(|| e.poll_output()).collect()
    }

    fn topic() -> TopicId {
        TopicId::new("t").unwrap()
    }

    fn gossip_counter(e: &Engine, name: &str) -> u64 {
        e.gossip_counters()
            .into_iter()
            .find(|(n, _)| *n == name)
            .map_or(0, |(_, v)| v)
    }

    /// Connect PEER (inbound) as connection `conn`.
    fn connect(e: &mut Engine, conn: ConnId, now: Instant) {
        let slot = e.core_mut().admit_inbound(addr(2), conn, now).unwrap();
        e.handle(
            Input::Core(core::Input::ConnectionUp {
                slot,
                peer: PEER,
                conn,
                addr: addr(2),
                remote: addr(2),
                direction: Direction::Inbound,
                instance: 1,
            }),
            now,
        );
    }

    fn gossip_to(outs: &[Output], c: ConnId) -> usize {
        outs.iter()
            .filter(|o| matches!(o, Output::Transmit { conn, gossip: Some(t), .. } if *conn == c && t.peer == PEER))
            .count()
    }

    #[test]
    fn gossip_goes_on_the_peers_connection_once_it_is_up() {
        let now = Instant::now();
        let mut e = engine(now);
        // A gossip peer met through a shuffle: known only by its address hint.
        let msg = GossipMessage {
            topic: topic(),
            body: soak_gossip::Body::Join,
        };
        e.subscribe(topic(), now).unwrap();
        drain(&mut e);
        e.handle(
            Input::Gossip {
                peer: PEER,
                msg,
                arrived: Some(now),
            },
            now,
        );
        // Not connected and no address known: nothing can go to PEER yet.
        let outs = drain(&mut e);
        assert_eq!(gossip_to(&outs, 5), 0);
        connect(&mut e, 5, now);
        let outs = drain(&mut e);
        assert!(outs.contains(&Output::Start { conn: 5 }));
        // Once up, gossip for PEER goes on its connection: a new neighbor starts lazy, so the
        // publish is announced to it by the IHAVE batch flushed after `ihave_interval`.
        e.publish(&topic(), b"x".to_vec(), now).unwrap();
        let mut outs = drain(&mut e);
        e.handle_timeout(now + Duration::from_millis(50), false);
        outs.extend(drain(&mut e));
        assert!(gossip_to(&outs, 5) >= 1, "{outs:?}");
    }

    #[test]
    fn held_frames_fail_when_the_dial_fails_and_flush_when_it_succeeds() {
        let now = Instant::now();
        let mut e = engine(now);
        e.subscribe(topic(), now).unwrap();
        drain(&mut e);
        // PEER is in the address book, unconnected: gossip for it dials and is held.
        connect(&mut e, 5, now);
        e.handle(
            Input::Core(core::Input::ConnectionDown {
                peer: PEER,
                conn: 5,
            }),
            now,
        );
        drain(&mut e);
        let gp = GossipPeer::new(PEER, Some(addr(2)));
        e.gossip_step(
            InEvent::Command(topic(), soak_gossip::Command::Subscribe(vec![gp])),
            now,
            0,
        );
        let outs = drain(&mut e);
        let slot = outs
            .iter()
            .find_map(|o| match o {
                Output::Dial {
                    slot,
                    peer: Some(PEER),
                    ..
                } => Some(*slot),
                _ => None,
            })
            .expect("the peer is dialed");
        assert_eq!(
            gossip_to(&outs, 5),
            0,
            "held, not sent on the dead connection"
        );
        assert!(e.counts().held >= 1);
        // The dial fails: the held frames are reported Failed to the gossip core.
        let before = gossip_counter(&e, "gossip_send_failures_total");
        e.handle(
            Input::Core(core::Input::DialFailed {
                slot,
                peer: Some(PEER),
                addr: addr(2),
            }),
            now,
        );
        assert_eq!(e.counts().held, 0);
        assert!(gossip_counter(&e, "gossip_send_failures_total") > before);
    }

    #[test]
    fn a_full_outbound_queue_feeds_back_as_a_timeout_and_the_rounds_are_bounded() {
        let now = Instant::now();
        let mut e = engine(now);
        connect(&mut e, 5, now);
        e.subscribe(topic(), now).unwrap();
        let outs = drain(&mut e);
        let tag = outs
            .iter()
            .find_map(|o| match o {
                Output::Transmit {
                    gossip: Some(t), ..
                } => Some(t.clone()),
                _ => None,
            })
            .expect("a join to the connected peer");
        assert_eq!(tag.round, 0);
        let before = gossip_counter(&e, "gossip_send_timeouts_total");
        e.handle(Input::QueueFull(tag.clone()), now);
        assert_eq!(gossip_counter(&e, "gossip_send_timeouts_total"), before + 1);
        // Whatever the timeout provokes is tagged with the next round.
        for o in drain(&mut e) {
            if let Output::Transmit {
                gossip: Some(t), ..
            } = o
            {
                assert_eq!(t.round, 1);
            }
        }
        // At the bound the outcome is still reported (scoring stays right) but nothing it
        // provokes is carried out: the loop cannot run away.
        let last = GossipTag {
            round: GOSSIP_ROUNDS - 1,
            ..tag
        };
        let before = gossip_counter(&e, "gossip_send_timeouts_total");
        e.handle(Input::QueueFull(last), now);
        assert_eq!(gossip_counter(&e, "gossip_send_timeouts_total"), before + 1);
        assert!(!drain(&mut e).iter().any(|o| matches!(
            o,
            Output::Transmit {
                gossip: Some(_),
                ..
            }
        )));
    }

    #[test]
    fn a_topic_with_an_empty_view_is_joined_again_once_a_contact_exists() {
        let now = Instant::now();
        let mut e = engine(now);
        // Subscribed with nobody to join through.
        e.subscribe(topic(), now).unwrap();
        drain(&mut e);
        connect(&mut e, 5, now);
        drain(&mut e);
        assert!(e.next_timeout().is_some_and(|t| t <= now + REJOIN_INTERVAL));
        e.handle_timeout(now + REJOIN_INTERVAL, false);
        let outs = drain(&mut e);
        assert!(gossip_to(&outs, 5) >= 1, "no rejoin sent: {outs:?}");
    }
}
