//! The simulated network: a seeded discrete-event queue over many [`State`]s.

use std::{cmp::Ordering, collections::BinaryHeap, time::Duration};

use rand::{Rng, SeedableRng, rngs::StdRng};
use serde::{Deserialize, Serialize};

use super::attribution::{Attribution, LinkCause, Redundancy};
use crate::{
    Config, InEvent, Message, MsgId, OutEvent, SendOutcome, State, Timer, TopicId, state::TimerKind,
};

/// Peer id of a simulated node: its index.
pub type SimPeer = u32;

/// Network model.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct NetConfig {
    /// Per-link one-way latency lower bound (each link draws a fixed latency in range).
    pub latency_min: Duration,
    /// Per-link one-way latency upper bound.
    pub latency_max: Duration,
    /// Probability that one message is lost (silently, like a reset stream).
    pub loss: f64,
    /// When a send cannot get through (partition, full slow-consumer queue), the sender hears
    /// `SendOutcome::Timeout` after this long — the node's per-peer send deadline.
    pub send_deadline: Duration,
    /// Service time per message of a slow consumer.
    pub slow_service: Duration,
    /// Inbound queue of a slow consumer, in messages; beyond it sends time out.
    pub slow_queue: usize,
    /// Protocol configuration of every node.
    pub proto: Config,
}

impl Default for NetConfig {
    fn default() -> Self {
        Self {
            latency_min: Duration::from_millis(10),
            latency_max: Duration::from_millis(50),
            loss: 0.0,
            send_deadline: Duration::from_millis(500),
            slow_service: Duration::from_millis(20),
            slow_queue: 64,
            proto: Config::default(),
        }
    }
}

/// A message handed to a node's subscriber, as the scenario sees it.
#[derive(Debug, Clone)]
pub struct Delivered {
    /// The node.
    pub node: SimPeer,
    /// The message.
    pub id: MsgId<SimPeer>,
    /// Hops travelled.
    pub hops: u16,
    /// Virtual time of delivery.
    pub at: Duration,
}

#[derive(Debug)]
enum Ev {
    Arrive {
        to: SimPeer,
        from: SimPeer,
        msg: Message<SimPeer>,
        link: Option<LinkCause>,
    },
    Process {
        to: SimPeer,
        from: SimPeer,
        msg: Message<SimPeer>,
        link: Option<LinkCause>,
    },
    Timer {
        node: SimPeer,
        timer: Timer<SimPeer>,
    },
    PeerDown {
        node: SimPeer,
        peer: SimPeer,
    },
    Outcome {
        node: SimPeer,
        peer: SimPeer,
        topic: TopicId,
        outcome: SendOutcome,
    },
}

#[derive(Debug)]
struct Queued {
    at: Duration,
    seq: u64,
    ev: Ev,
}

impl PartialEq for Queued {
    fn eq(&self, other: &Self) -> bool {
        (self.at, self.seq) == (other.at, other.seq)
    }
}
impl Eq for Queued {}
impl PartialOrd for Queued {
    fn partial_cmp(&self, other: &Self) -> Option<Ordering> {
        Some(self.cmp(other))
    }
}
impl Ord for Queued {
    // Reversed: BinaryHeap is a max-heap, we want the earliest (then first-queued) event.
    fn cmp(&self, other: &Self) -> Ordering {
        (other.at, other.seq).cmp(&(self.at, self.seq))
    }
}

/// One simulated node.
#[derive(Debug)]
pub struct SimNode {
    /// Its gossip state.
    pub state: State<SimPeer, StdRng>,
    /// False once removed (churn).
    pub alive: bool,
    /// Slow consumer: processes one message per `slow_service`, queue bounded.
    pub slow: bool,
    busy_until: Duration,
    /// Partition group.
    pub group: u8,
    /// Extra delay of everything this node sends (like the node's own delay impairment).
    pub delay: Duration,
}

/// Seeded discrete-event simulation of a swarm on one topic.
#[derive(Debug)]
pub struct Network {
    config: NetConfig,
    seed: u64,
    time: Duration,
    nodes: Vec<SimNode>,
    queue: BinaryHeap<Queued>,
    seq: u64,
    rng: StdRng,
    partitioned: bool,
    events: u64,
    /// Deliveries since the last drain.
    pub deliveries: Vec<Delivered>,
    /// Messages dropped by loss, partition or full slow-consumer queues.
    pub dropped: u64,
    attr: Attribution,
}

/// splitmix64: a fixed, fast hash for per-link latencies and per-node seeds.
pub(crate) fn mix(mut x: u64) -> u64 {
    x = x.wrapping_add(0x9E37_79B9_7F4A_7C15);
    x = (x ^ (x >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
    x = (x ^ (x >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
    x ^ (x >> 31)
}

impl Network {
    /// A network of `peers` nodes (not yet subscribed to anything).
    pub fn new(peers: usize, config: NetConfig, seed: u64) -> Self {
        let nodes = (0..peers)
            .map(|i| {
                let rng = StdRng::seed_from_u64(mix(seed ^ mix(i as u64)));
                SimNode {
                    state: State::new(i as SimPeer, config.proto.clone(), rng),
                    alive: true,
                    slow: false,
                    busy_until: Duration::ZERO,
                    group: 0,
                    delay: Duration::ZERO,
                }
            })
            .collect();
        Self {
            config,
            seed,
            time: Duration::ZERO,
            nodes,
            queue: BinaryHeap::new(),
            seq: 0,
            rng: StdRng::seed_from_u64(mix(seed)),
            partitioned: false,
            events: 0,
            deliveries: Vec::new(),
            dropped: 0,
            attr: Attribution::new(peers),
        }
    }

    /// Payload copies received so far, by how they came and, when redundant, by cause.
    pub fn redundancy(&self) -> Redundancy {
        self.attr.counts
    }

    /// Current virtual time.
    pub fn now(&self) -> Duration {
        self.time
    }

    /// Events processed so far.
    pub fn events(&self) -> u64 {
        self.events
    }

    /// The nodes.
    pub fn nodes(&self) -> &[SimNode] {
        &self.nodes
    }

    /// The network's own RNG (for scenario choices).
    pub fn rng(&mut self) -> &mut StdRng {
        &mut self.rng
    }

    /// The seed.
    pub fn seed(&self) -> u64 {
        self.seed
    }

    /// Latency of the link between two nodes: fixed per link, uniform in the configured range.
    pub fn latency(&self, a: SimPeer, b: SimPeer) -> Duration {
        let (lo, hi) = (a.min(b) as u64, a.max(b) as u64);
        let h = mix(self.seed ^ mix((lo << 32) | hi));
        let min = self.config.latency_min.as_micros() as u64;
        let max = self.config.latency_max.as_micros() as u64;
        let span = max.saturating_sub(min);
        let us = if span == 0 { min } else { min + h % (span + 1) };
        Duration::from_micros(us)
    }

    fn push(&mut self, at: Duration, ev: Ev) {
        self.seq += 1;
        self.queue.push(Queued {
            at,
            seq: self.seq,
            ev,
        });
    }

    /// Subscribes a node to a topic with contacts.
    pub fn subscribe(&mut self, node: SimPeer, topic: &TopicId, bootstrap: Vec<SimPeer>) {
        let now = self.time;
        let Some(n) = self.nodes.get_mut(node as usize) else {
            return;
        };
        n.state.subscribe(topic.clone(), bootstrap, now);
        let out: Vec<_> = n.state.drain().collect();
        self.dispatch(node, out);
    }

    /// Publishes from a node; returns the id (None if the node is dead or not subscribed).
    pub fn publish(
        &mut self,
        node: SimPeer,
        topic: &TopicId,
        payload: Vec<u8>,
    ) -> Option<MsgId<SimPeer>> {
        let now = self.time;
        let n = self.nodes.get_mut(node as usize)?;
        if !n.alive {
            return None;
        }
        let at_ms = u64::try_from(now.as_millis()).unwrap_or(u64::MAX);
        let id = n.state.publish(topic, payload, at_ms, now).ok()?;
        let out: Vec<_> = n.state.drain().collect();
        self.dispatch(node, out);
        Some(id)
    }

    /// Round trip between two nodes as their transport would measure it: both links' latency
    /// plus both ends' extra send delay.
    pub fn rtt(&self, a: SimPeer, b: SimPeer) -> Duration {
        let delay = |n: SimPeer| {
            self.nodes
                .get(n as usize)
                .map_or(Duration::ZERO, |n| n.delay)
        };
        self.latency(a, b) * 2 + delay(a) + delay(b)
    }

    /// Delays everything `node` sends by `delay` (0 removes it): a high-latency peer.
    pub fn set_delay(&mut self, node: SimPeer, delay: Duration) {
        if let Some(n) = self.nodes.get_mut(node as usize) {
            n.delay = delay;
        }
    }

    /// Before a node's maintenance tick on `topic`: its transport's RTT to every neighbor
    /// ([`InEvent::PeerRtt`]), as a node shell reports it about once a second.
    fn report_rtts(&mut self, node: SimPeer, topic: &TopicId) {
        let Some(n) = self.nodes.get(node as usize) else {
            return;
        };
        let peers = n.state.active_view(topic);
        for peer in peers {
            let rtt = self.rtt(node, peer);
            self.feed(node, InEvent::PeerRtt(peer, rtt));
        }
    }

    /// Marks a node as a slow consumer.
    pub fn set_slow(&mut self, node: SimPeer, slow: bool) {
        if let Some(n) = self.nodes.get_mut(node as usize) {
            n.slow = slow;
        }
    }

    /// Crashes a node: it stops processing; every node holding it in an active view hears
    /// `PeerDown` after the link latency (connection loss), sends to it fail.
    pub fn remove(&mut self, node: SimPeer, topic: &TopicId) {
        let Some(n) = self.nodes.get_mut(node as usize) else {
            return;
        };
        if !n.alive {
            return;
        }
        n.alive = false;
        let holders: Vec<SimPeer> = self
            .nodes
            .iter()
            .enumerate()
            .filter(|(_, o)| o.alive && o.state.active_view(topic).contains(&node))
            .map(|(i, _)| i as SimPeer)
            .collect();
        for h in holders {
            let at = self.time + self.latency(h, node);
            self.push(
                at,
                Ev::PeerDown {
                    node: h,
                    peer: node,
                },
            );
        }
    }

    /// Splits the network: messages between different groups are dropped and their senders
    /// hear a send timeout.
    pub fn partition(&mut self, groups: &[u8]) {
        for (n, g) in self.nodes.iter_mut().zip(groups) {
            n.group = *g;
        }
        self.partitioned = true;
    }

    /// Ends the partition.
    pub fn heal(&mut self) {
        self.partitioned = false;
    }

    fn cut(&self, a: SimPeer, b: SimPeer) -> bool {
        self.partitioned
            && self.nodes.get(a as usize).map(|n| n.group)
                != self.nodes.get(b as usize).map(|n| n.group)
    }

    fn dispatch(&mut self, from: SimPeer, out: Vec<OutEvent<SimPeer>>) {
        let now = self.time;
        for ev in out {
            match ev {
                OutEvent::SendMessage(to, msg) => {
                    let link = self.attr.sent(from, to, &msg.body);
                    let Some(target) = self.nodes.get(to as usize) else {
                        continue;
                    };
                    if !target.alive {
                        let at = now + self.latency(from, to);
                        self.push(
                            at,
                            Ev::Outcome {
                                node: from,
                                peer: to,
                                topic: msg.topic,
                                outcome: SendOutcome::Failed,
                            },
                        );
                    } else if self.cut(from, to) {
                        self.dropped += 1;
                        let at = now + self.config.send_deadline;
                        self.push(
                            at,
                            Ev::Outcome {
                                node: from,
                                peer: to,
                                topic: msg.topic,
                                outcome: SendOutcome::Timeout,
                            },
                        );
                    } else if self.config.loss > 0.0
                        && self.rng.random_bool(self.config.loss.min(1.0))
                    {
                        self.dropped += 1;
                    } else {
                        let delay = self
                            .nodes
                            .get(from as usize)
                            .map_or(Duration::ZERO, |n| n.delay);
                        let at = now + self.latency(from, to) + delay;
                        self.push(
                            at,
                            Ev::Arrive {
                                to,
                                from,
                                msg,
                                link,
                            },
                        );
                    }
                }
                OutEvent::ScheduleTimer(delay, timer) => {
                    self.push(now + delay, Ev::Timer { node: from, timer });
                }
                OutEvent::Deliver(_, d) => {
                    self.attr.delivered(from, &d.id);
                    self.deliveries.push(Delivered {
                        node: from,
                        id: d.id,
                        hops: d.hops,
                        at: now,
                    });
                }
                OutEvent::Event(_, event) => self.attr.event(from, &event),
                OutEvent::DisconnectPeer(_) => {}
            }
        }
    }

    fn feed(&mut self, node: SimPeer, event: InEvent<SimPeer>) {
        let now = self.time;
        let Some(n) = self.nodes.get_mut(node as usize) else {
            return;
        };
        if !n.alive {
            return;
        }
        let out: Vec<_> = n.state.handle(event, now).collect();
        self.dispatch(node, out);
    }

    /// Hands a message to a live node, filing a payload copy first.
    fn receive(
        &mut self,
        to: SimPeer,
        from: SimPeer,
        msg: Message<SimPeer>,
        link: Option<LinkCause>,
    ) {
        if self.nodes.get(to as usize).is_some_and(|n| n.alive) {
            self.attr.received(to, from, &msg.body, link);
        }
        self.feed(to, InEvent::RecvMessage(from, msg));
    }

    /// Time of the next queued event.
    pub fn next_at(&self) -> Option<Duration> {
        self.queue.peek().map(|q| q.at)
    }

    /// Processes the next event if it is due at or before `until`; false when none is.
    pub fn step(&mut self, until: Duration) -> bool {
        match self.queue.peek() {
            Some(q) if q.at <= until => {}
            _ => return false,
        }
        let Some(Queued { at, ev, .. }) = self.queue.pop() else {
            return false;
        };
        self.time = self.time.max(at);
        self.events += 1;
        match ev {
            Ev::Arrive {
                to,
                from,
                msg,
                link,
            } => {
                let Some(n) = self.nodes.get_mut(to as usize) else {
                    return true;
                };
                if !n.alive {
                    let at = self.time + self.latency(from, to);
                    self.push(
                        at,
                        Ev::Outcome {
                            node: from,
                            peer: to,
                            topic: msg.topic,
                            outcome: SendOutcome::Failed,
                        },
                    );
                } else if n.slow {
                    let service = self.config.slow_service;
                    let backlog = n.busy_until.saturating_sub(self.time);
                    if backlog >= service.saturating_mul(self.config.slow_queue as u32) {
                        self.dropped += 1;
                        let at = self.time + self.config.send_deadline;
                        self.push(
                            at,
                            Ev::Outcome {
                                node: from,
                                peer: to,
                                topic: msg.topic,
                                outcome: SendOutcome::Timeout,
                            },
                        );
                    } else {
                        n.busy_until = n.busy_until.max(self.time) + service;
                        let done = n.busy_until;
                        self.push(
                            done,
                            Ev::Process {
                                to,
                                from,
                                msg,
                                link,
                            },
                        );
                    }
                } else {
                    self.receive(to, from, msg, link);
                }
            }
            Ev::Process {
                to,
                from,
                msg,
                link,
            } => self.receive(to, from, msg, link),
            Ev::Timer { node, timer } => {
                if timer.kind == TimerKind::Maintenance {
                    let topic = timer.topic.clone();
                    self.report_rtts(node, &topic);
                }
                self.feed(node, InEvent::TimerExpired(timer));
            }
            Ev::PeerDown { node, peer } => self.feed(node, InEvent::PeerDown(peer)),
            Ev::Outcome {
                node,
                peer,
                topic,
                outcome,
            } => self.feed(node, InEvent::SendOutcome(peer, topic, outcome)),
        }
        true
    }

    /// Runs every event due up to `until`, then sets the clock to `until`. Returns false if the
    /// event budget `max_events` ran out first.
    pub fn run_until(&mut self, until: Duration, max_events: u64) -> bool {
        while self.step(until) {
            if self.events >= max_events {
                return false;
            }
        }
        self.time = self.time.max(until);
        true
    }
}
