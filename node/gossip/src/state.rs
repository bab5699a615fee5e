//! The per-node state machine: [`State::handle`] takes an [`InEvent`] and the current time and
//! yields [`OutEvent`]s. No IO, no clock, no global randomness.

use std::{
    collections::{BTreeMap, BTreeSet},
    fmt::Debug,
    time::Duration,
};

use rand::Rng;
use serde::{Deserialize, Serialize};

use crate::{
    config::Config,
    diag::TopicSnapshot,
    proto::{Body, Message, MsgId, TopicId},
    score::{PathRtt, Rtt},
    stats::Counters,
    topic::{Ctx, Topic},
};

/// The node's own inbound backlog as the node reports it ([`InEvent::InboundBacklog`]): the
/// arrival time of the oldest message still queued, `None` when nothing is queued.
#[derive(Debug, Clone, Copy, Default)]
struct Backlog {
    queued_since: Option<Duration>,
    /// Queueing delay of the latest message handed to the core.
    lag: Duration,
}

impl Backlog {
    /// A message that reached the node at `arrived` was handed to the core. The inbound path is
    /// first in, first out, so whatever is still queued arrived no earlier.
    fn note(&mut self, arrived: Duration, now: Duration) {
        self.lag = now.saturating_sub(arrived);
        if let Some(q) = &mut self.queued_since {
            *q = (*q).max(arrived);
        }
    }

    /// Everything that reached the node before the returned time has been handed to the core.
    fn watermark(&self, now: Duration) -> Duration {
        self.queued_since.map_or(now, |q| q.min(now))
    }
}

/// What a peer id must be: ordered (deterministic iteration), cloneable, printable and
/// serializable (it travels inside messages). The node uses a dialable id — e.g. a struct of
/// its hex peer id and address — the simulator uses `u32`.
pub trait PeerId: Ord + Clone + Debug + Serialize + for<'de> Deserialize<'de> {}
impl<T: Ord + Clone + Debug + Serialize + for<'de> Deserialize<'de>> PeerId for T {}

/// Input to [`State::handle`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum InEvent<PI> {
    /// A decoded message arrived from a peer (the transport authenticated `from`).
    RecvMessage(PI, Message<PI>),
    /// Like `RecvMessage`, for a message that reached the node at the given time (≤ `now`,
    /// same clock) and then waited in the node's own inbound path (receive queue, decoder,
    /// actor). The difference is local backlog: the core keeps it out of the peers' round
    /// trips and does not judge a peer's promise while an answer may still be queued here.
    RecvMessageAt(PI, Message<PI>, Duration),
    /// The node's inbound path right now: `Some(t)` — messages are still queued there (received
    /// but not handed to the core yet), the oldest reached the node at `t`; `None` — nothing is
    /// queued. A repair wait that ended after `t` is not judged (no promise broken, nobody asked
    /// again) until the backlog has moved past its end — the awaited copy may be in the queue.
    /// Report it before expired timers; a node that never reports it has no backlog.
    InboundBacklog(Option<Duration>),
    /// The transport's current round-trip time to a connected peer (e.g. QUIC's smoothed
    /// path RTT), reported about once a second for every connection. It feeds the slow-peer
    /// detector (see [`Config::slow_rtt_ratio`]); a node that never reports it has none.
    PeerRtt(PI, Duration),
    /// A local command for a topic.
    Command(TopicId, Command<PI>),
    /// A timer asked for with [`OutEvent::ScheduleTimer`] expired.
    TimerExpired(Timer<PI>),
    /// The transport lost the peer (connection closed, dial failed): drop it from every view.
    PeerDown(PI),
    /// What became of a [`OutEvent::SendMessage`] of `topic` to the peer. `Timeout` and
    /// `Failed` must be reported (they drive scoring); `Delivered` is optional.
    SendOutcome(PI, TopicId, SendOutcome),
}

/// Local commands.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Command<PI> {
    /// Join the topic (no-op if joined), using these peers as contacts.
    Subscribe(Vec<PI>),
    /// Leave the topic: neighbors are told, state is dropped.
    Unsubscribe,
    /// Publish a payload. Prefer [`State::publish`], which also returns the id.
    Publish {
        /// Application payload.
        payload: Vec<u8>,
        /// Publish time, unix milliseconds, carried to every receiver.
        published_at_ms: u64,
    },
}

/// Result of a send the node attempted on behalf of the core.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub enum SendOutcome {
    /// The frame was written to the peer's stream.
    Delivered,
    /// The per-peer outbound queue was full past its deadline, or the write stalled.
    Timeout,
    /// The connection failed.
    Failed,
}

/// A timer the core asked for. Opaque to the node: store it, feed it back when due.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord)]
pub struct Timer<PI> {
    pub(crate) topic: TopicId,
    pub(crate) kind: TimerKind<PI>,
}

impl<PI> Timer<PI> {
    /// The topic the timer belongs to.
    pub fn topic(&self) -> &TopicId {
        &self.topic
    }
}

#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord)]
pub(crate) enum TimerKind<PI> {
    Maintenance,
    AntiEntropy,
    FlushIHave,
    Missing(MsgId<PI>),
    /// The promise of a peer asked for a message (GRAFT / IWANT) is due.
    Promise(MsgId<PI>, PI),
}

/// A message handed to the local subscriber (first copy only).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Delivery<PI> {
    /// Unique id.
    pub id: MsgId<PI>,
    /// The peer we got it from (`None`: published here).
    pub from: Option<PI>,
    /// Hops travelled (0 = published here).
    pub hops: u16,
    /// When the origin published it, unix milliseconds.
    pub published_at_ms: u64,
    /// Application payload.
    pub payload: Vec<u8>,
}

/// Notable changes, for logs and diagnostics.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum TopicEvent<PI> {
    /// A peer entered the topic's active view.
    NeighborUp(PI),
    /// A peer left the topic's active view.
    NeighborDown(PI),
    /// A peer was cooled for `duration` (`strikes` in a row).
    Suppressed {
        /// The peer.
        peer: PI,
        /// How long.
        duration: Duration,
        /// Strike count.
        strikes: u32,
    },
    /// A suppression lapsed; the peer is usable again.
    Recovered(PI),
    /// An eager peer was demoted to lazy because of its score.
    Demoted(PI),
}

/// Output of [`State::handle`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum OutEvent<PI> {
    /// Send this message to the peer (dial it if needed). Report timeouts/failures back with
    /// [`InEvent::SendOutcome`].
    SendMessage(PI, Message<PI>),
    /// Call [`State::handle`] with [`InEvent::TimerExpired`] after this delay.
    ScheduleTimer(Duration, Timer<PI>),
    /// Hand a message to the local subscriber of the topic.
    Deliver(TopicId, Delivery<PI>),
    /// The peer is in no topic's active view any more; the node may close the connection.
    DisconnectPeer(PI),
    /// Something notable happened on a topic.
    Event(TopicId, TopicEvent<PI>),
}

/// Why a command failed.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum CommandError {
    /// Publish on a topic we are not subscribed to.
    #[error("not subscribed to topic {0}")]
    NotSubscribed(TopicId),
    /// Payload above [`crate::Limits::max_payload`].
    #[error("payload of {len} bytes exceeds {max}")]
    PayloadTooLarge {
        /// Payload length.
        len: usize,
        /// The bound.
        max: usize,
    },
}

/// Most peers with a transport round-trip time remembered.
const PATH_RTT_CAP: usize = 1024;

/// The gossip state of one node, all topics.
#[derive(Debug)]
pub struct State<PI, R> {
    me: PI,
    epoch: u64,
    config: Config,
    rng: R,
    topics: BTreeMap<TopicId, Topic<PI>>,
    /// Repair round-trip estimates per peer (bounded in `topic::rtt_sample`).
    rtts: BTreeMap<PI, Rtt>,
    /// Transport round-trip times per peer ([`InEvent::PeerRtt`]; bounded by [`PATH_RTT_CAP`]).
    path_rtts: BTreeMap<PI, PathRtt>,
    backlog: Backlog,
    /// Counters of topics we left, plus node-level rejects, so totals stay monotonic.
    retired: Counters,
    out: Vec<OutEvent<PI>>,
    dropped: Vec<PI>,
}

impl<PI: PeerId, R: Rng> State<PI, R> {
    /// A node with id `me`. `rng` is the only source of randomness (seed it for replays); the
    /// publisher epoch is drawn from it.
    pub fn new(me: PI, config: Config, mut rng: R) -> Self {
        let epoch = rng.random();
        Self {
            me,
            epoch,
            config,
            rng,
            topics: BTreeMap::new(),
            rtts: BTreeMap::new(),
            path_rtts: BTreeMap::new(),
            backlog: Backlog::default(),
            retired: Counters::default(),
            out: Vec::new(),
            dropped: Vec::new(),
        }
    }

    /// Our peer id.
    pub fn me(&self) -> &PI {
        &self.me
    }

    /// The random epoch stamped on our message ids.
    pub fn epoch(&self) -> u64 {
        self.epoch
    }

    /// The configuration.
    pub fn config(&self) -> &Config {
        &self.config
    }

    /// Handles one input at time `now` (any monotonic clock; only differences matter) and
    /// returns what to do. The iterator borrows the state: drain it before the next call.
    pub fn handle(
        &mut self,
        event: InEvent<PI>,
        now: Duration,
    ) -> std::vec::Drain<'_, OutEvent<PI>> {
        match event {
            InEvent::RecvMessage(from, message) => self.recv(from, message, now, now),
            InEvent::RecvMessageAt(from, message, arrived) => {
                self.recv(from, message, arrived.min(now), now);
            }
            InEvent::InboundBacklog(queued_since) => {
                self.backlog.queued_since = queued_since;
            }
            InEvent::PeerRtt(peer, rtt) => self.path_rtt(peer, rtt, now),
            InEvent::Command(topic, command) => match command {
                Command::Subscribe(bootstrap) => self.subscribe(topic, bootstrap, now),
                Command::Unsubscribe => self.unsubscribe(&topic, now),
                Command::Publish {
                    payload,
                    published_at_ms,
                } => {
                    // The error is visible as "nothing happened" here; callers that need it
                    // use `publish`, which returns it.
                    let _ = self.publish(&topic, payload, published_at_ms, now);
                }
            },
            InEvent::TimerExpired(timer) => {
                let topic_id = timer.topic.clone();
                self.with_topic(&topic_id, now, |t, ctx| t.on_timer(ctx, timer.kind));
            }
            InEvent::PeerDown(peer) => {
                self.rtts.remove(&peer);
                self.path_rtts.remove(&peer);
                let ids: Vec<TopicId> = self.topics.keys().cloned().collect();
                for id in ids {
                    self.with_topic(&id, now, |t, ctx| t.on_peer_down(ctx, &peer));
                }
            }
            InEvent::SendOutcome(peer, topic, outcome) => {
                self.with_topic(&topic, now, |t, ctx| t.on_send_outcome(ctx, &peer, outcome));
            }
        }
        self.emit_disconnects();
        self.out.drain(..)
    }

    /// Events queued by [`State::publish`], [`State::subscribe`] or [`State::unsubscribe`]
    /// called directly.
    pub fn drain(&mut self) -> std::vec::Drain<'_, OutEvent<PI>> {
        self.emit_disconnects();
        self.out.drain(..)
    }

    /// Joins `topic` (no-op when joined, except that new contacts are tried). Outputs are
    /// queued; take them with [`State::drain`].
    pub fn subscribe(&mut self, topic: TopicId, bootstrap: Vec<PI>, now: Duration) {
        if !self.topics.contains_key(&topic) {
            let t = Topic::new(topic.clone());
            self.topics.insert(topic.clone(), t);
            self.with_topic(&topic, now, |t, ctx| t.start(ctx));
        }
        self.with_topic(&topic, now, |t, ctx| t.join(ctx, bootstrap));
    }

    /// Leaves `topic`: neighbors get a `Disconnect`, state is dropped (its counters are kept
    /// in the totals).
    pub fn unsubscribe(&mut self, topic: &TopicId, now: Duration) {
        self.with_topic(topic, now, |t, ctx| t.leave(ctx));
        if let Some(t) = self.topics.remove(topic) {
            self.retired.add(t.counters());
        }
    }

    /// Publishes `payload` on `topic` and returns its unique id. Outputs are queued; take them
    /// with [`State::drain`].
    pub fn publish(
        &mut self,
        topic: &TopicId,
        payload: Vec<u8>,
        published_at_ms: u64,
        now: Duration,
    ) -> Result<MsgId<PI>, CommandError> {
        if payload.len() > self.config.limits.max_payload {
            return Err(CommandError::PayloadTooLarge {
                len: payload.len(),
                max: self.config.limits.max_payload,
            });
        }
        self.with_topic(topic, now, |t, ctx| {
            t.publish(ctx, payload, published_at_ms)
        })
        .ok_or_else(|| CommandError::NotSubscribed(topic.clone()))
    }

    fn path_rtt(&mut self, peer: PI, rtt: Duration, now: Duration) {
        if peer == self.me {
            return;
        }
        match self.path_rtts.get_mut(&peer) {
            Some(r) => r.sample(rtt, now),
            None => {
                while self.path_rtts.len() >= PATH_RTT_CAP {
                    // Bounded: forget the stalest report.
                    let Some(stalest) = self
                        .path_rtts
                        .iter()
                        .min_by_key(|(_, r)| r.at)
                        .map(|(p, _)| p.clone())
                    else {
                        break;
                    };
                    self.path_rtts.remove(&stalest);
                }
                self.path_rtts.insert(peer, PathRtt::first(rtt, now));
            }
        }
    }

    fn recv(&mut self, from: PI, message: Message<PI>, arrived: Duration, now: Duration) {
        self.backlog.note(arrived, now);
        if from == self.me {
            self.retired.invalid_messages += 1;
            return;
        }
        if message.validate(&self.config.limits).is_err() {
            match self.topics.get_mut(&message.topic) {
                Some(t) => t.counters_mut().invalid_messages += 1,
                None => self.retired.invalid_messages += 1,
            }
            return;
        }
        let Message { topic, body } = message;
        if !self.topics.contains_key(&topic) {
            self.retired.unknown_topic += 1;
            // Tell peers that think we are in the topic that we are not, so they drop us;
            // never answer a Disconnect (no ping-pong between two non-members).
            if !matches!(body, Body::Disconnect { .. } | Body::NeighborReply { .. }) {
                self.out.push(OutEvent::SendMessage(
                    from,
                    Message {
                        topic,
                        body: Body::Disconnect { alive: false },
                    },
                ));
            }
            return;
        }
        self.with_topic_at(&topic, arrived, now, |t, ctx| {
            t.on_message(ctx, from, body);
        });
    }

    fn with_topic<T>(
        &mut self,
        topic: &TopicId,
        now: Duration,
        f: impl FnOnce(&mut Topic<PI>, &mut Ctx<'_, PI, R>) -> T,
    ) -> Option<T> {
        self.with_topic_at(topic, now, now, f)
    }

    fn with_topic_at<T>(
        &mut self,
        topic: &TopicId,
        arrived: Duration,
        now: Duration,
        f: impl FnOnce(&mut Topic<PI>, &mut Ctx<'_, PI, R>) -> T,
    ) -> Option<T> {
        let t = self.topics.get_mut(topic)?;
        let mut ctx = Ctx {
            me: &self.me,
            epoch: self.epoch,
            now,
            config: &self.config,
            arrived,
            watermark: self.backlog.watermark(now),
            lag: self.backlog.lag,
            rtts: &mut self.rtts,
            path_rtts: &self.path_rtts,
            rng: &mut self.rng,
            out: &mut self.out,
            dropped: &mut self.dropped,
        };
        Some(f(t, &mut ctx))
    }

    fn emit_disconnects(&mut self) {
        if self.dropped.is_empty() {
            return;
        }
        let dropped: BTreeSet<PI> = self.dropped.drain(..).collect();
        for peer in dropped {
            if !self.topics.values().any(|t| t.is_active(&peer)) {
                self.out.push(OutEvent::DisconnectPeer(peer));
            }
        }
    }

    /// Topics we are subscribed to.
    pub fn topics(&self) -> impl Iterator<Item = &TopicId> {
        self.topics.keys()
    }

    /// Whether we are subscribed to `topic`.
    pub fn is_subscribed(&self, topic: &TopicId) -> bool {
        self.topics.contains_key(topic)
    }

    /// Counters of one topic.
    pub fn topic_counters(&self, topic: &TopicId) -> Option<Counters> {
        self.topics.get(topic).map(|t| *t.counters())
    }

    /// Counters summed over all topics, including topics already left and node-level rejects.
    pub fn counters(&self) -> Counters {
        let mut total = self.retired;
        for t in self.topics.values() {
            total.add(t.counters());
        }
        total
    }

    /// A diagnostic snapshot of one topic at `now` (views, scores, suppressions, sizes).
    pub fn snapshot(&self, topic: &TopicId, now: Duration) -> Option<TopicSnapshot<PI>> {
        self.topics
            .get(topic)
            .map(|t| t.snapshot(now, &self.config))
    }

    /// Snapshots of every topic.
    pub fn snapshots(&self, now: Duration) -> Vec<TopicSnapshot<PI>> {
        self.topics
            .values()
            .map(|t| t.snapshot(now, &self.config))
            .collect()
    }

    /// Peers in the active view of `topic`.
    pub fn active_view(&self, topic: &TopicId) -> Vec<PI> {
        self.topics
            .get(topic)
            .map(|t| t.active().cloned().collect())
            .unwrap_or_default()
    }

    /// Cheap size summary of one topic (for the simulator's per-node bounds).
    pub fn sizes(&self, topic: &TopicId) -> Option<crate::diag::Sizes> {
        self.topics.get(topic).map(|t| t.sizes())
    }
}
