//! The node's protocol state machine: membership (HyParView-like active/passive views, peer
//! exchange, ping RTT, reconnect backoff, connection tie-breaking) and acknowledged direct
//! messages (ACK timeout, one duplicate-safe retry, dedupe, inbox, rate limit).
//!
//! Entry type: [`Core`]. Feed it [`Input`]s with [`Core::handle`] and expired timers with
//! [`Core::handle_timeout`]; drain [`Output`]s with [`Core::poll_output`]. It never does IO,
//! never reads a clock and draws randomness only from the seeded RNG it was given.

use std::cmp::Reverse;
use std::collections::{BTreeMap, BinaryHeap, HashMap, VecDeque};
use std::net::SocketAddr;
use std::time::{Duration, Instant};

use rand::SeedableRng;
use rand::rngs::StdRng;
use rand::seq::{IndexedRandom, SliceRandom};
use sha2::{Digest, Sha256};
use soak_api::counters as c;
use soak_api::{Direction, DmOutcome, DmPath, PeerState};

use crate::inbox::{Dedupe, Inbox, InboxEntry, Seen, TokenBucket};
use crate::wire::{AckStatus, Frame, PeerAddr};
use crate::{PeerId, RequestId};

/// Shell-assigned id of one QUIC connection.
pub type ConnId = u64;
/// Shell-assigned id of one DM send operation (one API call).
pub type OpId = u64;

/// Attempts per DM: the first send plus one duplicate-safe retry.
pub const MAX_ATTEMPTS: u32 = 2;
/// Dial failures after which an active peer is demoted to the passive view.
const DEMOTE_AFTER_FAILURES: u32 = 4;
/// Dial failures after which an unconnected peer is forgotten.
const FORGET_AFTER_FAILURES: u32 = 8;

/// Core settings (the node's tunables, as durations; defaults match the node's defaults).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CoreConfig {
    /// Maintenance tick.
    pub tick: Duration,
    /// Deadline for a dial (QUIC + hello).
    pub connect_timeout: Duration,
    /// Target active view size.
    pub active_view: usize,
    /// Passive view bound.
    pub passive_view: usize,
    /// Entries per peer exchange.
    pub shuffle_len: usize,
    /// Idle time after which a non-active connection is closed.
    pub on_demand_idle: Duration,
    /// Reconnect backoff base.
    pub backoff_base: Duration,
    /// Reconnect backoff cap.
    pub backoff_max: Duration,
    /// Inbox capacity.
    pub inbox_capacity: usize,
    /// Inbox retention.
    pub inbox_retention: Duration,
    /// Dedupe capacity.
    pub dedupe_capacity: usize,
    /// Dedupe TTL.
    pub dedupe_ttl: Duration,
    /// Inbound DMs per second per peer.
    pub rate_per_sec: u64,
    /// Inbound DM burst per peer.
    pub rate_burst: u64,
    /// DMs awaiting an ACK before new ones are shed.
    pub max_pending_dms: usize,
}

impl Default for CoreConfig {
    fn default() -> Self {
        let ms = Duration::from_millis;
        CoreConfig {
            tick: ms(1_000),
            connect_timeout: ms(5_000),
            active_view: 8,
            passive_view: 256,
            shuffle_len: 64,
            on_demand_idle: ms(60_000),
            backoff_base: ms(250),
            backoff_max: ms(30_000),
            inbox_capacity: 10_000,
            inbox_retention: ms(600_000),
            dedupe_capacity: 100_000,
            dedupe_ttl: ms(600_000),
            rate_per_sec: 2_000,
            rate_burst: 4_000,
            max_pending_dms: 10_000,
        }
    }
}

/// Why the core asks to close a connection.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum CloseReason {
    /// Another connection to the same peer won.
    Replaced,
    /// A non-active connection went unused.
    Idle,
    /// The peer is ourselves.
    SelfConnection,
}

/// Inputs from the shell.
#[derive(Debug, Clone)]
pub enum Input {
    /// A connection finished QUIC + hello; `addr` is the peer's advertised listen address.
    ConnectionUp {
        /// Authenticated peer id.
        peer: PeerId,
        /// Connection id.
        conn: ConnId,
        /// Peer listen address.
        addr: SocketAddr,
        /// Who dialed.
        direction: Direction,
        /// Peer's process instance (from its hello).
        instance: u64,
    },
    /// A connection closed.
    ConnectionDown {
        /// Peer.
        peer: PeerId,
        /// Connection id.
        conn: ConnId,
    },
    /// A dial we asked for failed or timed out.
    DialFailed {
        /// Expected peer, if known.
        peer: Option<PeerId>,
        /// Address dialed.
        addr: SocketAddr,
    },
    /// A decoded frame from a peer.
    Frame {
        /// Sender.
        peer: PeerId,
        /// Connection it arrived on.
        conn: ConnId,
        /// The frame.
        frame: Frame,
    },
    /// The API asks to send a DM.
    SendDm {
        /// Operation id to report the outcome under.
        op: OpId,
        /// Receiver.
        to: PeerId,
        /// Request id.
        request_id: RequestId,
        /// Payload.
        payload: Vec<u8>,
        /// ACK timeout per attempt.
        timeout: Duration,
    },
}

/// Final result of one DM operation.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DmDone {
    /// Operation id.
    pub op: OpId,
    /// Outcome.
    pub outcome: DmOutcome,
    /// Path.
    pub path: DmPath,
    /// Attempts made.
    pub attempts: u32,
    /// Detail for non-acked outcomes.
    pub error: Option<String>,
}

/// Outputs for the shell.
#[derive(Debug, Clone, PartialEq)]
pub enum Output {
    /// Send a frame on a connection.
    Send {
        /// Connection.
        conn: ConnId,
        /// Frame.
        frame: Frame,
    },
    /// Dial an address, pinning `peer` when known.
    Dial {
        /// Expected peer id.
        peer: Option<PeerId>,
        /// Address.
        addr: SocketAddr,
    },
    /// Close a connection.
    Close {
        /// Connection.
        conn: ConnId,
        /// Why.
        reason: CloseReason,
    },
    /// A DM operation finished.
    DmDone(DmDone),
}

/// Where a gossip frame can be sent (see [`Core::gossip_route`]).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum GossipRoute {
    /// On this established connection.
    Conn(ConnId),
    /// A dial is under way: hold the frame until `ConnectionUp` or `DialFailed`.
    Dialing,
    /// No address known (or ourselves): the send fails.
    Unreachable,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
enum Timer {
    Tick,
    AckTimeout { op: OpId, attempt: u32 },
    ConnectDeadline { op: OpId, attempt: u32 },
}

#[derive(Debug, Clone, Copy)]
struct Conn {
    id: ConnId,
    direction: Direction,
    instance: u64,
}

#[derive(Debug)]
struct Peer {
    addr: Option<SocketAddr>,
    conn: Option<Conn>,
    last_direction: Direction,
    dialing: bool,
    failures: u32,
    next_dial: Instant,
    active: bool,
    srtt: Option<Duration>,
    ping: Option<(u64, Instant)>,
    last_recv: Option<Instant>,
    last_used: Instant,
    bucket: TokenBucket,
    ever_connected: bool,
}

impl Peer {
    fn new(addr: Option<SocketAddr>, burst: u64, now: Instant) -> Peer {
        Peer {
            addr,
            conn: None,
            last_direction: Direction::Outbound,
            dialing: false,
            failures: 0,
            next_dial: now,
            active: false,
            srtt: None,
            ping: None,
            last_recv: None,
            last_used: now,
            bucket: TokenBucket::new(burst, now),
            ever_connected: false,
        }
    }
}

#[derive(Debug)]
struct BootstrapEntry {
    peer: Option<PeerId>,
    addr: SocketAddr,
    dialing: bool,
    failures: u32,
    next_dial: Instant,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum DmState {
    AwaitingConn,
    AwaitingAck,
}

#[derive(Debug)]
struct PendingDm {
    to: PeerId,
    request_id: RequestId,
    payload: Vec<u8>,
    timeout: Duration,
    attempts: u32,
    state: DmState,
}

/// One peer as seen by diagnostics.
#[derive(Debug, Clone, PartialEq)]
pub struct PeerView {
    /// Peer id.
    pub peer: PeerId,
    /// Listen address, if known.
    pub addr: Option<SocketAddr>,
    /// State.
    pub state: PeerState,
    /// Direction of the current (or last) connection.
    pub direction: Direction,
    /// In the active view.
    pub active: bool,
    /// Smoothed RTT.
    pub rtt: Option<Duration>,
    /// Time since last frame received.
    pub idle: Option<Duration>,
    /// Failed dials since last success.
    pub failed_attempts: u32,
    /// Current connection.
    pub conn: Option<ConnId>,
}

/// Sizes for gauges.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct Counts {
    /// Established peers.
    pub established: usize,
    /// Peers being dialed.
    pub pending: usize,
    /// Active view size.
    pub active: usize,
    /// Passive view size (known, not active).
    pub passive: usize,
    /// Inbox depth.
    pub inbox: usize,
    /// DMs awaiting an ACK or a connection.
    pub pending_dms: usize,
    /// Dedupe cache entries.
    pub dedupe: usize,
}

/// The protocol state machine. See the module docs.
#[derive(Debug)]
pub struct Core {
    me: PeerId,
    cfg: CoreConfig,
    rng: StdRng,
    peers: BTreeMap<PeerId, Peer>,
    bootstrap: Vec<BootstrapEntry>,
    pending: HashMap<OpId, PendingDm>,
    waiting_ack: HashMap<(PeerId, RequestId), Vec<OpId>>,
    inbox: Inbox,
    dedupe: Dedupe,
    timers: BinaryHeap<Reverse<(Instant, Timer)>>,
    out: VecDeque<Output>,
    stats: BTreeMap<&'static str, u64>,
    next_nonce: u64,
    /// Until then the node stays out of the mesh: no ticks' work, no dials.
    hold_until: Option<Instant>,
    held: bool,
}

impl Core {
    /// A new core; the first maintenance tick fires at `now`.
    pub fn new(
        me: PeerId,
        cfg: CoreConfig,
        bootstrap: Vec<(Option<PeerId>, SocketAddr)>,
        seed: u64,
        now: Instant,
    ) -> Core {
        let mut core = Core {
            me,
            inbox: Inbox::new(cfg.inbox_capacity, cfg.inbox_retention),
            dedupe: Dedupe::new(cfg.dedupe_capacity, cfg.dedupe_ttl),
            cfg,
            rng: StdRng::seed_from_u64(seed),
            peers: BTreeMap::new(),
            bootstrap: bootstrap
                .into_iter()
                .map(|(peer, addr)| BootstrapEntry {
                    peer,
                    addr,
                    dialing: false,
                    failures: 0,
                    next_dial: now,
                })
                .collect(),
            pending: HashMap::new(),
            waiting_ack: HashMap::new(),
            timers: BinaryHeap::new(),
            out: VecDeque::new(),
            stats: BTreeMap::new(),
            next_nonce: 1,
            hold_until: None,
            held: false,
        };
        core.timer(now, Timer::Tick);
        core
    }

    /// Stay out of the mesh until `at`: no dials and no maintenance before it (the test hook
    /// `--test-rejoin-delay-ms`; the shell refuses inbound connections meanwhile).
    pub fn hold_until(&mut self, at: Instant) {
        self.hold_until = Some(at);
        self.held = true;
    }

    /// This node's id.
    pub fn me(&self) -> PeerId {
        self.me
    }

    /// Next output, if any.
    pub fn poll_output(&mut self) -> Option<Output> {
        self.out.pop_front()
    }

    /// When [`Core::handle_timeout`] should next be called.
    pub fn next_timeout(&self) -> Option<Instant> {
        self.timers.peek().map(|Reverse((at, _))| *at)
    }

    /// Counter increments since the last call (names from [`soak_api::counters`] and more).
    pub fn drain_stats(&mut self) -> impl Iterator<Item = (&'static str, u64)> + use<> {
        std::mem::take(&mut self.stats).into_iter()
    }

    /// Inbox page.
    pub fn inbox_page(&self, after: u64, limit: usize) -> (Vec<InboxEntry>, u64) {
        self.inbox.page(after, limit)
    }

    /// Sizes for gauges.
    pub fn counts(&self) -> Counts {
        let mut k = Counts {
            inbox: self.inbox.len(),
            pending_dms: self.pending.len(),
            dedupe: self.dedupe.len(),
            ..Counts::default()
        };
        for p in self.peers.values() {
            if p.conn.is_some() {
                k.established += 1;
            } else if p.dialing {
                k.pending += 1;
            }
            if p.active {
                k.active += 1;
            } else {
                k.passive += 1;
            }
        }
        k.pending += self
            .bootstrap
            .iter()
            .filter(|b| b.dialing && b.peer.is_none())
            .count();
        k
    }

    /// Every known peer, for diagnostics.
    pub fn peer_views(&self, now: Instant) -> Vec<PeerView> {
        self.peers
            .iter()
            .map(|(id, p)| PeerView {
                peer: *id,
                addr: p.addr,
                state: if p.conn.is_some() {
                    PeerState::Established
                } else if p.dialing {
                    PeerState::Pending
                } else {
                    PeerState::Backoff
                },
                direction: p.conn.map_or(p.last_direction, |c| c.direction),
                active: p.active,
                rtt: p.srtt,
                idle: p.last_recv.map(|t| now.saturating_duration_since(t)),
                failed_attempts: p.failures,
                conn: p.conn.map(|c| c.id),
            })
            .collect()
    }

    // ---- gossip routing (the pub/sub layer lives in the shell) ---------------------------

    /// Where a gossip frame for `peer` can go right now. A known but unconnected peer (or an
    /// unknown one with a usable address hint, added to the address book while it has room) is
    /// dialed; the shell holds the frame until the connection is up or the dial fails.
    pub fn gossip_route(
        &mut self,
        peer: PeerId,
        hint: Option<SocketAddr>,
        now: Instant,
    ) -> GossipRoute {
        if peer == self.me {
            return GossipRoute::Unreachable;
        }
        let bound = self.cfg.active_view + self.cfg.passive_view;
        let len = self.peers.len();
        let burst = self.cfg.rate_burst;
        let hint = hint.filter(|a| !a.ip().is_unspecified() && a.port() != 0);
        match self.peers.get_mut(&peer) {
            Some(p) => {
                p.last_used = now;
                if let Some(c) = p.conn {
                    return GossipRoute::Conn(c.id);
                }
                if p.addr.is_none() {
                    p.addr = hint;
                }
            }
            None => match hint {
                Some(addr) if len < bound => {
                    self.peers.insert(peer, Peer::new(Some(addr), burst, now));
                }
                _ => return GossipRoute::Unreachable,
            },
        }
        self.ensure_dial(peer);
        match self.peers.get(&peer) {
            Some(p) if p.dialing => GossipRoute::Dialing,
            _ => GossipRoute::Unreachable,
        }
    }

    /// A valid gossip message arrived from `peer`: the connection is in use.
    pub fn note_gossip(&mut self, peer: PeerId, now: Instant) {
        if let Some(p) = self.peers.get_mut(&peer) {
            p.last_recv = Some(now);
            p.last_used = now;
        }
    }

    /// The current connection to `peer`, if any.
    pub fn conn_of(&self, peer: PeerId) -> Option<ConnId> {
        self.peers.get(&peer).and_then(|p| p.conn).map(|c| c.id)
    }

    /// Whether a dial to `peer` is under way.
    pub fn dialing(&self, peer: PeerId) -> bool {
        self.peers.get(&peer).is_some_and(|p| p.dialing)
    }

    /// The listen address of `peer`, if known.
    pub fn addr_of(&self, peer: PeerId) -> Option<SocketAddr> {
        self.peers.get(&peer).and_then(|p| p.addr)
    }

    /// Connected peers first (in random order), then known unconnected ones with an address:
    /// the contacts a new topic subscription joins through.
    pub fn contacts(&mut self) -> Vec<(PeerId, Option<SocketAddr>)> {
        let mut connected: Vec<(PeerId, Option<SocketAddr>)> = Vec::new();
        let mut known: Vec<(PeerId, Option<SocketAddr>)> = Vec::new();
        for (id, p) in &self.peers {
            if p.conn.is_some() {
                connected.push((*id, p.addr));
            } else if p.addr.is_some() && p.failures < DEMOTE_AFTER_FAILURES {
                known.push((*id, p.addr));
            }
        }
        connected.shuffle(&mut self.rng);
        known.shuffle(&mut self.rng);
        connected.extend(known);
        connected
    }

    fn count(&mut self, name: &'static str) {
        *self.stats.entry(name).or_default() += 1;
    }

    fn timer(&mut self, at: Instant, t: Timer) {
        self.timers.push(Reverse((at, t)));
    }

    fn send(&mut self, conn: ConnId, frame: Frame) {
        self.out.push_back(Output::Send { conn, frame });
    }

    fn backoff(&mut self, failures: u32) -> Duration {
        let exp = failures.saturating_sub(1).min(16);
        let base = self.cfg.backoff_base.saturating_mul(1u32 << exp);
        let capped = base.min(self.cfg.backoff_max);
        // Up to 25% jitter so a fleet does not reconnect in lockstep.
        let jitter_ms = capped.as_millis() as u64 / 4;
        let jitter = if jitter_ms > 0 {
            Duration::from_millis(rand::Rng::random_range(&mut self.rng, 0..=jitter_ms))
        } else {
            Duration::ZERO
        };
        capped + jitter
    }

    /// Process expired timers.
    pub fn handle_timeout(&mut self, now: Instant) {
        while let Some(Reverse((at, t))) = self.timers.peek().copied() {
            if at > now {
                break;
            }
            self.timers.pop();
            match t {
                Timer::Tick => self.tick(now),
                Timer::AckTimeout { op, attempt } => self.ack_timeout(op, attempt, now),
                Timer::ConnectDeadline { op, attempt } => self.connect_deadline(op, attempt),
            }
        }
    }

    /// Process one input.
    pub fn handle(&mut self, input: Input, now: Instant) {
        match input {
            Input::ConnectionUp {
                peer,
                conn,
                addr,
                direction,
                instance,
            } => self.connection_up(peer, conn, addr, direction, instance, now),
            Input::ConnectionDown { peer, conn } => self.connection_down(peer, conn, now),
            Input::DialFailed { peer, addr } => self.dial_failed(peer, addr, now),
            Input::Frame { peer, conn, frame } => self.frame(peer, conn, frame, now),
            Input::SendDm {
                op,
                to,
                request_id,
                payload,
                timeout,
            } => self.send_dm(op, to, request_id, payload, timeout, now),
        }
    }

    // ---- membership -------------------------------------------------------------------

    fn connection_up(
        &mut self,
        peer: PeerId,
        conn: ConnId,
        addr: SocketAddr,
        direction: Direction,
        instance: u64,
        now: Instant,
    ) {
        for b in &mut self.bootstrap {
            if b.addr == addr || b.peer == Some(peer) {
                b.dialing = false;
                b.failures = 0;
                b.peer = Some(peer);
            }
        }
        if peer == self.me {
            self.out.push_back(Output::Close {
                conn,
                reason: CloseReason::SelfConnection,
            });
            return;
        }
        self.count(c::CONNECTIONS_ESTABLISHED);
        let me = self.me;
        let burst = self.cfg.rate_burst;
        let active_count = self.peers.values().filter(|p| p.active).count();
        let active_view = self.cfg.active_view;
        let entry = self
            .peers
            .entry(peer)
            .or_insert_with(|| Peer::new(Some(addr), burst, now));
        entry.addr = Some(addr);
        if direction == Direction::Outbound {
            entry.dialing = false;
        }
        let new = Conn {
            id: conn,
            direction,
            instance,
        };
        if let Some(cur) = entry.conn {
            let dialer = |d: Direction| if d == Direction::Outbound { me } else { peer };
            // Newest wins (a reconnect, or the peer restarted); for two live connections in
            // opposite directions from the same peer process (simultaneous dial) both sides
            // keep the one dialed by the smaller peer id, so they agree without talking.
            let new_wins = cur.instance != instance
                || cur.direction == direction
                || dialer(direction) < dialer(cur.direction);
            let loser = if new_wins { cur.id } else { conn };
            self.out.push_back(Output::Close {
                conn: loser,
                reason: CloseReason::Replaced,
            });
            *self.stats.entry(c::CONNECTIONS_REPLACED).or_default() += 1;
            if !new_wins {
                return;
            }
        }
        let entry = match self.peers.get_mut(&peer) {
            Some(e) => e,
            None => return,
        };
        entry.conn = Some(new);
        entry.last_direction = direction;
        entry.failures = 0;
        entry.ever_connected = true;
        entry.last_recv = Some(now);
        entry.last_used = now;
        entry.ping = None;
        if !entry.active && active_count < active_view {
            entry.active = true;
        }
        let sample = self.sample(Some(peer));
        self.send(
            conn,
            Frame::PeerExchange {
                peers: sample,
                reply: true,
            },
        );
        // Flush DMs that were waiting for this connection.
        let waiting: Vec<OpId> = self
            .pending
            .iter()
            .filter(|(_, d)| d.to == peer && d.state == DmState::AwaitingConn)
            .map(|(op, _)| *op)
            .collect();
        for op in waiting {
            self.transmit_dm(op, conn, now);
        }
    }

    fn connection_down(&mut self, peer: PeerId, conn: ConnId, now: Instant) {
        let backoff = self.backoff(1);
        let Some(p) = self.peers.get_mut(&peer) else {
            return;
        };
        if p.conn.map(|c| c.id) != Some(conn) {
            return; // a replaced connection closing: nothing changes
        }
        p.conn = None;
        p.ping = None;
        if p.active {
            p.next_dial = now + backoff;
        }
    }

    fn dial_failed(&mut self, peer: Option<PeerId>, addr: SocketAddr, now: Instant) {
        let mut bootstrap_failures = Vec::new();
        for (i, b) in self.bootstrap.iter_mut().enumerate() {
            if b.addr == addr && (peer.is_none() || b.peer.is_none() || b.peer == peer) {
                b.dialing = false;
                b.failures += 1;
                bootstrap_failures.push((i, b.failures));
            }
        }
        for (i, failures) in bootstrap_failures {
            let d = self.backoff(failures);
            if let Some(b) = self.bootstrap.get_mut(i) {
                b.next_dial = now + d;
            }
        }
        let Some(peer) = peer else { return };
        let failures = match self.peers.get_mut(&peer) {
            Some(p) if p.conn.is_none() => {
                p.dialing = false;
                p.failures += 1;
                p.failures
            }
            Some(p) => {
                p.dialing = false;
                return;
            }
            None => return,
        };
        let d = self.backoff(failures);
        if let Some(p) = self.peers.get_mut(&peer) {
            p.next_dial = now + d;
            if failures >= DEMOTE_AFTER_FAILURES {
                p.active = false;
            }
        }
        let waiting: Vec<OpId> = self
            .pending
            .iter()
            .filter(|(_, d)| d.to == peer && d.state == DmState::AwaitingConn)
            .map(|(op, _)| *op)
            .collect();
        for op in waiting {
            self.finish(
                op,
                DmOutcome::Unreachable,
                Some(format!("could not connect to {peer} at {addr}")),
            );
        }
    }

    fn frame(&mut self, peer: PeerId, arrived_on: ConnId, frame: Frame, now: Instant) {
        // Answers go on the peer's current connection: a frame may arrive on a connection that
        // just lost a tie-break and is draining, and would be closed under the answer.
        let conn = self
            .peers
            .get(&peer)
            .and_then(|p| p.conn)
            .map_or(arrived_on, |c| c.id);
        if let Some(p) = self.peers.get_mut(&peer) {
            p.last_recv = Some(now);
        } else if !matches!(frame, Frame::Gossip(_)) {
            // Frames can only come from authenticated connections the core was told about;
            // anything else is a race with a close and is dropped.
            return;
        }
        match frame {
            Frame::Hello { .. } => {}
            Frame::Ping { nonce } => self.send(conn, Frame::Pong { nonce }),
            Frame::Pong { nonce } => {
                if let Some(p) = self.peers.get_mut(&peer)
                    && let Some((n, sent)) = p.ping
                    && n == nonce
                {
                    let sample = now.saturating_duration_since(sent);
                    p.srtt = Some(match p.srtt {
                        None => sample,
                        Some(s) => (s * 7 + sample) / 8,
                    });
                    p.ping = None;
                }
            }
            Frame::PeerExchange { peers, reply } => {
                self.merge(peers, now);
                if reply {
                    let sample = self.sample(Some(peer));
                    self.send(
                        conn,
                        Frame::PeerExchange {
                            peers: sample,
                            reply: false,
                        },
                    );
                }
            }
            Frame::Dm {
                request_id,
                payload,
            } => {
                if let Some(p) = self.peers.get_mut(&peer) {
                    p.last_used = now;
                }
                let status = self.receive_dm(peer, request_id, &payload, now);
                self.send(conn, Frame::DmAck { request_id, status });
            }
            Frame::DmAck { request_id, status } => {
                let ops = self
                    .waiting_ack
                    .remove(&(peer, request_id))
                    .unwrap_or_default();
                for op in ops {
                    let still_waiting = self
                        .pending
                        .get(&op)
                        .is_some_and(|d| d.state == DmState::AwaitingAck);
                    if !still_waiting {
                        continue;
                    }
                    let (outcome, error) = match status {
                        AckStatus::Delivered | AckStatus::Duplicate => (DmOutcome::Acked, None),
                        AckStatus::Busy => (DmOutcome::Busy, Some("receiver inbox full".into())),
                        AckStatus::Conflict => (
                            DmOutcome::Rejected,
                            Some("request id already used with a different payload".into()),
                        ),
                        AckStatus::Load => {
                            (DmOutcome::Load, Some("receiver rate limit exceeded".into()))
                        }
                    };
                    self.finish(op, outcome, error);
                }
            }
            // Gossip is routed by the engine before it reaches this core.
            Frame::Gossip(_) => {}
        }
    }

    /// Merge a peer exchange into the address book (bounded).
    fn merge(&mut self, peers: Vec<PeerAddr>, now: Instant) {
        let bound = self.cfg.active_view + self.cfg.passive_view;
        let burst = self.cfg.rate_burst;
        for pa in peers.into_iter().take(self.cfg.shuffle_len) {
            if pa.id == self.me {
                continue;
            }
            let Ok(addr) = pa.addr.parse::<SocketAddr>() else {
                continue;
            };
            if addr.ip().is_unspecified() || addr.port() == 0 {
                continue;
            }
            let len = self.peers.len();
            match self.peers.get_mut(&pa.id) {
                Some(p) if p.conn.is_none() && !p.dialing && p.addr != Some(addr) => {
                    p.addr = Some(addr);
                    p.failures = 0;
                    p.next_dial = now;
                }
                Some(_) => {}
                None if len < bound => {
                    self.peers.insert(pa.id, Peer::new(Some(addr), burst, now));
                }
                None => {}
            }
        }
    }

    /// A sample of known addresses for a peer exchange, excluding `to`. The receiver learns our
    /// own address from the connection itself.
    fn sample(&mut self, to: Option<PeerId>) -> Vec<PeerAddr> {
        let mut all: Vec<PeerAddr> = self
            .peers
            .iter()
            .filter(|(id, p)| Some(**id) != to && p.failures < DEMOTE_AFTER_FAILURES)
            .filter_map(|(id, p)| {
                p.addr.map(|a| PeerAddr {
                    id: *id,
                    addr: a.to_string(),
                })
            })
            .collect();
        all.shuffle(&mut self.rng);
        all.truncate(self.cfg.shuffle_len);
        all
    }

    fn ensure_dial(&mut self, peer: PeerId) {
        let Some(p) = self.peers.get_mut(&peer) else {
            return;
        };
        if p.conn.is_some() || p.dialing || self.held {
            return;
        }
        let Some(addr) = p.addr else { return };
        let reconnect = p.ever_connected || p.failures > 0;
        p.dialing = true;
        self.out.push_back(Output::Dial {
            peer: Some(peer),
            addr,
        });
        if reconnect {
            self.count(c::RECONNECT_ATTEMPTS);
        }
    }

    fn tick(&mut self, now: Instant) {
        if let Some(until) = self.hold_until {
            if now < until {
                self.timer(until.min(now + self.cfg.tick), Timer::Tick);
                return;
            }
            self.hold_until = None;
            self.held = false;
        }
        self.timer(now + self.cfg.tick, Timer::Tick);
        self.dedupe.expire(now);

        // Bootstrap while we have no established peer.
        let established = self.peers.values().filter(|p| p.conn.is_some()).count();
        if established == 0 {
            let mut dials = Vec::new();
            for b in &mut self.bootstrap {
                if !b.dialing && b.next_dial <= now {
                    b.dialing = true;
                    dials.push((b.peer, b.addr, b.failures > 0));
                }
            }
            for (peer, addr, retry) in dials {
                if retry {
                    self.count(c::RECONNECT_ATTEMPTS);
                }
                self.out.push_back(Output::Dial { peer, addr });
            }
        }

        // Ping every connected peer; close idle on-demand connections.
        let mut pings = Vec::new();
        let mut closes = Vec::new();
        for p in self.peers.values_mut() {
            let Some(conn) = p.conn else { continue };
            if !p.active && now.saturating_duration_since(p.last_used) > self.cfg.on_demand_idle {
                closes.push(conn.id);
                continue;
            }
            let nonce = self.next_nonce;
            self.next_nonce += 1;
            p.ping = Some((nonce, now));
            pings.push((conn.id, nonce));
        }
        for (conn, nonce) in pings {
            self.send(conn, Frame::Ping { nonce });
        }
        for conn in closes {
            self.out.push_back(Output::Close {
                conn,
                reason: CloseReason::Idle,
            });
        }

        // Keep the active view full: promote passive peers, preferring connected ones.
        let mut active = self.peers.values().filter(|p| p.active).count();
        if active < self.cfg.active_view {
            let mut connected: Vec<PeerId> = Vec::new();
            let mut dialable: Vec<PeerId> = Vec::new();
            for (id, p) in &self.peers {
                if p.active || p.addr.is_none() {
                    continue;
                }
                if p.conn.is_some() {
                    connected.push(*id);
                } else if p.next_dial <= now && p.failures < DEMOTE_AFTER_FAILURES {
                    dialable.push(*id);
                }
            }
            dialable.shuffle(&mut self.rng);
            for id in connected.into_iter().chain(dialable) {
                if active >= self.cfg.active_view {
                    break;
                }
                if let Some(p) = self.peers.get_mut(&id) {
                    p.active = true;
                    active += 1;
                }
            }
        }
        let redial: Vec<PeerId> = self
            .peers
            .iter()
            .filter(|(_, p)| p.active && p.conn.is_none() && !p.dialing && p.next_dial <= now)
            .map(|(id, _)| *id)
            .collect();
        for id in redial {
            self.ensure_dial(id);
        }

        // Shuffle with one random connected peer.
        let connected: Vec<(PeerId, ConnId)> = self
            .peers
            .iter()
            .filter_map(|(id, p)| p.conn.map(|c| (*id, c.id)))
            .collect();
        if let Some((id, conn)) = connected.choose(&mut self.rng).copied() {
            let sample = self.sample(Some(id));
            self.send(
                conn,
                Frame::PeerExchange {
                    peers: sample,
                    reply: true,
                },
            );
        }

        // Forget hopeless peers, then bound the passive view.
        let busy: Vec<PeerId> = self.pending.values().map(|d| d.to).collect();
        self.peers.retain(|id, p| {
            p.conn.is_some() || p.dialing || p.failures < FORGET_AFTER_FAILURES || busy.contains(id)
        });
        let passive: Vec<(u32, PeerId)> = self
            .peers
            .iter()
            .filter(|(_, p)| !p.active && p.conn.is_none() && !p.dialing)
            .map(|(id, p)| (p.failures, *id))
            .collect();
        if passive.len() > self.cfg.passive_view {
            let excess = passive.len() - self.cfg.passive_view;
            let mut passive = passive;
            passive.sort_by_key(|e| std::cmp::Reverse(e.0));
            for (_, id) in passive.into_iter().take(excess) {
                if !busy.contains(&id) {
                    self.peers.remove(&id);
                }
            }
        }
    }

    // ---- direct messages --------------------------------------------------------------

    fn send_dm(
        &mut self,
        op: OpId,
        to: PeerId,
        request_id: RequestId,
        payload: Vec<u8>,
        timeout: Duration,
        now: Instant,
    ) {
        self.count(c::DM_SENT);
        if to == self.me {
            let status = self.receive_dm(to, request_id, &payload, now);
            let (outcome, error) = match status {
                AckStatus::Delivered | AckStatus::Duplicate => (DmOutcome::Acked, None),
                AckStatus::Busy => (DmOutcome::Busy, Some("inbox full".to_string())),
                AckStatus::Conflict => (
                    DmOutcome::Rejected,
                    Some("request id already used with a different payload".to_string()),
                ),
                AckStatus::Load => (DmOutcome::Load, Some("rate limit exceeded".to_string())),
            };
            if outcome == DmOutcome::Acked {
                self.count(c::DM_ACKED);
            }
            self.out.push_back(Output::DmDone(DmDone {
                op,
                outcome,
                path: DmPath::Loopback,
                attempts: 1,
                error,
            }));
            return;
        }
        if self.pending.len() >= self.cfg.max_pending_dms {
            self.count(c::LOAD_SHED);
            self.out.push_back(Output::DmDone(DmDone {
                op,
                outcome: DmOutcome::Load,
                path: DmPath::None,
                attempts: 0,
                error: Some("too many direct messages awaiting an ack".into()),
            }));
            return;
        }
        let (conn, known) = match self.peers.get(&to) {
            Some(p) => (p.conn.map(|c| c.id), p.addr.is_some() || p.conn.is_some()),
            None => (None, false),
        };
        if !known {
            self.count(c::DM_UNREACHABLE);
            self.out.push_back(Output::DmDone(DmDone {
                op,
                outcome: DmOutcome::Unreachable,
                path: DmPath::None,
                attempts: 0,
                error: Some(format!("unknown peer {to}: no address known")),
            }));
            return;
        }
        self.pending.insert(
            op,
            PendingDm {
                to,
                request_id,
                payload,
                timeout,
                attempts: 1,
                state: DmState::AwaitingConn,
            },
        );
        self.waiting_ack
            .entry((to, request_id))
            .or_default()
            .push(op);
        match conn {
            Some(conn) => self.transmit_dm(op, conn, now),
            None => {
                self.ensure_dial(to);
                self.timer(
                    now + self.cfg.connect_timeout,
                    Timer::ConnectDeadline { op, attempt: 1 },
                );
            }
        }
    }

    fn transmit_dm(&mut self, op: OpId, conn: ConnId, now: Instant) {
        let Some(d) = self.pending.get_mut(&op) else {
            return;
        };
        d.state = DmState::AwaitingAck;
        let frame = Frame::Dm {
            request_id: d.request_id,
            payload: d.payload.clone(),
        };
        let (attempt, timeout, to) = (d.attempts, d.timeout, d.to);
        if let Some(p) = self.peers.get_mut(&to) {
            p.last_used = now;
        }
        self.send(conn, frame);
        self.timer(now + timeout, Timer::AckTimeout { op, attempt });
    }

    fn ack_timeout(&mut self, op: OpId, attempt: u32, now: Instant) {
        let Some(d) = self.pending.get_mut(&op) else {
            return;
        };
        if d.attempts != attempt || d.state != DmState::AwaitingAck {
            return;
        }
        let to = d.to;
        *self.stats.entry(c::DM_ACK_TIMEOUTS).or_default() += 1;
        if attempt >= MAX_ATTEMPTS {
            self.finish(
                op,
                DmOutcome::Timeout,
                Some(format!("no ack after {attempt} attempts")),
            );
            return;
        }
        d.attempts += 1;
        d.state = DmState::AwaitingConn;
        let attempt = d.attempts;
        self.count(c::DM_RETRIES);
        match self.peers.get(&to).and_then(|p| p.conn) {
            Some(conn) => self.transmit_dm(op, conn.id, now),
            None => {
                self.ensure_dial(to);
                self.timer(
                    now + self.cfg.connect_timeout,
                    Timer::ConnectDeadline { op, attempt },
                );
            }
        }
    }

    fn connect_deadline(&mut self, op: OpId, attempt: u32) {
        let waiting = self
            .pending
            .get(&op)
            .is_some_and(|d| d.attempts == attempt && d.state == DmState::AwaitingConn);
        if waiting {
            self.finish(
                op,
                DmOutcome::Unreachable,
                Some("no connection within the connect timeout".into()),
            );
        }
    }

    fn finish(&mut self, op: OpId, outcome: DmOutcome, error: Option<String>) {
        let Some(d) = self.pending.remove(&op) else {
            return;
        };
        let key = (d.to, d.request_id);
        if let Some(ops) = self.waiting_ack.get_mut(&key) {
            ops.retain(|o| *o != op);
            if ops.is_empty() {
                self.waiting_ack.remove(&key);
            }
        }
        match outcome {
            DmOutcome::Acked => self.count(c::DM_ACKED),
            DmOutcome::Unreachable => self.count(c::DM_UNREACHABLE),
            _ => {}
        }
        let path = if d.state == DmState::AwaitingAck || outcome != DmOutcome::Unreachable {
            DmPath::Direct
        } else {
            DmPath::None
        };
        self.out.push_back(Output::DmDone(DmDone {
            op,
            outcome,
            path,
            attempts: d.attempts,
            error,
        }));
    }

    /// Receiver side: rate limit, dedupe, inbox. Decides the ACK status.
    fn receive_dm(
        &mut self,
        from: PeerId,
        request_id: RequestId,
        payload: &[u8],
        now: Instant,
    ) -> AckStatus {
        if from != self.me {
            let (rate, burst) = (self.cfg.rate_per_sec, self.cfg.rate_burst);
            let allowed = self
                .peers
                .get_mut(&from)
                .is_none_or(|p| p.bucket.take(rate, burst, now));
            if !allowed {
                self.count(c::LOAD_SHED);
                return AckStatus::Load;
            }
        }
        let hash: [u8; 32] = Sha256::digest(payload).into();
        match self.dedupe.check(from, request_id, &hash, now) {
            Seen::Duplicate => {
                self.count(c::DM_DUPLICATES);
                AckStatus::Duplicate
            }
            Seen::Conflict => {
                self.count(c::DM_CONFLICTS);
                AckStatus::Conflict
            }
            Seen::New => match self.inbox.push(from, request_id, payload.len(), now) {
                None => {
                    self.count(c::DM_BUSY);
                    AckStatus::Busy
                }
                Some(_) => {
                    self.dedupe.insert(from, request_id, hash, now);
                    self.count(c::DM_DELIVERED);
                    AckStatus::Delivered
                }
            },
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const A: PeerId = PeerId([1; 32]);
    const B: PeerId = PeerId([2; 32]);

    fn cfg() -> CoreConfig {
        CoreConfig::default()
    }

    fn addr(port: u16) -> SocketAddr {
        SocketAddr::from(([127, 0, 0, 1], port))
    }

    /// Two cores joined by an in-memory "connection"; frames are delivered instantly unless
    /// the link is cut.
    struct Pair {
        a: Core,
        b: Core,
        now: Instant,
        cut: bool,
        done: Vec<(PeerId, DmDone)>,
        dials: Vec<(PeerId, Option<PeerId>, SocketAddr)>,
        closes: Vec<(PeerId, ConnId)>,
    }

    impl Pair {
        fn new(cfg: CoreConfig) -> Pair {
            let now = Instant::now();
            Pair {
                a: Core::new(A, cfg.clone(), vec![], 1, now),
                b: Core::new(B, cfg, vec![], 2, now),
                now,
                cut: false,
                done: vec![],
                dials: vec![],
                closes: vec![],
            }
        }

        fn core(&mut self, id: PeerId) -> &mut Core {
            if id == A { &mut self.a } else { &mut self.b }
        }

        fn connect(&mut self, conn: ConnId, dialer: PeerId) {
            let (d, l) = if dialer == A { (A, B) } else { (B, A) };
            let port = |p: PeerId| if p == A { 1 } else { 2 };
            let now = self.now;
            self.core(d).handle(
                Input::ConnectionUp {
                    peer: l,
                    conn,
                    addr: addr(port(l)),
                    direction: Direction::Outbound,
                    instance: 1,
                },
                now,
            );
            self.core(l).handle(
                Input::ConnectionUp {
                    peer: d,
                    conn,
                    addr: addr(port(d)),
                    direction: Direction::Inbound,
                    instance: 1,
                },
                now,
            );
        }

        /// Deliver outputs until quiet.
        fn pump(&mut self) {
            for _ in 0..1000 {
                let mut moved = false;
                for (me, other) in [(A, B), (B, A)] {
                    while let Some(o) = self.core(me).poll_output() {
                        moved = true;
                        match o {
                            Output::Send { conn, frame } => {
                                if !self.cut {
                                    let now = self.now;
                                    self.core(other).handle(
                                        Input::Frame {
                                            peer: me,
                                            conn,
                                            frame,
                                        },
                                        now,
                                    );
                                }
                            }
                            Output::DmDone(d) => self.done.push((me, d)),
                            Output::Dial { peer, addr } => self.dials.push((me, peer, addr)),
                            Output::Close { conn, .. } => self.closes.push((me, conn)),
                        }
                    }
                }
                if !moved {
                    return;
                }
            }
            panic!("pump did not settle");
        }

        fn advance(&mut self, d: Duration) {
            self.now += d;
            let now = self.now;
            self.a.handle_timeout(now);
            self.b.handle_timeout(now);
            self.pump();
        }

        fn dm(&mut self, op: OpId, from: PeerId, to: PeerId, id: u8, payload: &[u8]) {
            let now = self.now;
            self.core(from).handle(
                Input::SendDm {
                    op,
                    to,
                    request_id: [id; 16],
                    payload: payload.to_vec(),
                    timeout: Duration::from_millis(500),
                },
                now,
            );
            self.pump();
        }

        fn outcome(&self, op: OpId) -> Option<&DmDone> {
            self.done.iter().map(|(_, d)| d).find(|d| d.op == op)
        }
    }

    fn stats(core: &mut Core) -> BTreeMap<&'static str, u64> {
        core.drain_stats().collect()
    }

    #[test]
    fn dm_is_acked_and_stored_once() {
        let mut p = Pair::new(cfg());
        p.connect(10, A);
        p.pump();
        p.dm(1, A, B, 7, b"hello");
        assert_eq!(p.outcome(1).map(|d| d.outcome), Some(DmOutcome::Acked));
        assert_eq!(p.outcome(1).map(|d| d.path), Some(DmPath::Direct));
        // Duplicate-safe retry with the same id and payload: acked, not stored again.
        p.dm(2, A, B, 7, b"hello");
        assert_eq!(p.outcome(2).map(|d| d.outcome), Some(DmOutcome::Acked));
        // Same id, different payload: rejected.
        p.dm(3, A, B, 7, b"other");
        assert_eq!(p.outcome(3).map(|d| d.outcome), Some(DmOutcome::Rejected));
        let (items, _) = p.b.inbox_page(0, 100);
        assert_eq!(items.len(), 1);
        assert_eq!(items[0].from, A);
        let s = stats(&mut p.b);
        assert_eq!(s.get(c::DM_DELIVERED), Some(&1));
        assert_eq!(s.get(c::DM_DUPLICATES), Some(&1));
        assert_eq!(s.get(c::DM_CONFLICTS), Some(&1));
        let s = stats(&mut p.a);
        assert_eq!(s.get(c::DM_SENT), Some(&3));
        assert_eq!(s.get(c::DM_ACKED), Some(&2));
    }

    #[test]
    fn self_dm_is_local_delivery() {
        let mut p = Pair::new(cfg());
        p.dm(1, A, A, 1, b"me");
        let d = p.outcome(1).cloned().unwrap();
        assert_eq!((d.outcome, d.path), (DmOutcome::Acked, DmPath::Loopback));
        assert_eq!(p.a.inbox_page(0, 10).0.len(), 1);
    }

    #[test]
    fn lost_ack_retries_once_then_times_out_without_double_delivery() {
        let mut p = Pair::new(cfg());
        p.connect(10, A);
        p.pump();
        p.cut = true;
        p.dm(1, A, B, 1, b"x");
        assert!(p.outcome(1).is_none());
        p.advance(Duration::from_millis(501));
        assert!(p.outcome(1).is_none(), "first timeout triggers a retry");
        p.advance(Duration::from_millis(501));
        let d = p.outcome(1).cloned().unwrap();
        assert_eq!((d.outcome, d.attempts), (DmOutcome::Timeout, 2));
        let s = stats(&mut p.a);
        assert_eq!(s.get(c::DM_ACK_TIMEOUTS), Some(&2));
        assert_eq!(s.get(c::DM_RETRIES), Some(&1));
    }

    #[test]
    fn retry_after_lost_ack_is_deduplicated() {
        let mut p = Pair::new(cfg());
        p.connect(10, A);
        p.pump();
        // Deliver the DM but lose the ACK: run A's send, hand the frame to B, drop B's ACK.
        let now = p.now;
        p.a.handle(
            Input::SendDm {
                op: 1,
                to: B,
                request_id: [5; 16],
                payload: b"x".to_vec(),
                timeout: Duration::from_millis(500),
            },
            now,
        );
        while let Some(o) = p.a.poll_output() {
            if let Output::Send { conn, frame } = o {
                p.b.handle(
                    Input::Frame {
                        peer: A,
                        conn,
                        frame,
                    },
                    now,
                );
            }
        }
        while p.b.poll_output().is_some() {}
        // Retry after the ACK timeout reaches B again: re-ACKed as a duplicate.
        p.advance(Duration::from_millis(501));
        let d = p.outcome(1).cloned().unwrap();
        assert_eq!((d.outcome, d.attempts), (DmOutcome::Acked, 2));
        assert_eq!(p.b.inbox_page(0, 10).0.len(), 1);
        assert_eq!(stats(&mut p.b).get(c::DM_DUPLICATES), Some(&1));
    }

    #[test]
    fn unknown_peer_is_unreachable() {
        let mut p = Pair::new(cfg());
        p.dm(1, A, B, 1, b"x");
        let d = p.outcome(1).cloned().unwrap();
        assert_eq!((d.outcome, d.path), (DmOutcome::Unreachable, DmPath::None));
        assert!(d.error.unwrap().contains("unknown peer"));
    }

    #[test]
    fn full_inbox_answers_busy() {
        let mut config = cfg();
        config.inbox_capacity = 1;
        let mut p = Pair::new(config);
        p.connect(10, A);
        p.pump();
        p.dm(1, A, B, 1, b"x");
        p.dm(2, A, B, 2, b"y");
        assert_eq!(p.outcome(2).map(|d| d.outcome), Some(DmOutcome::Busy));
        assert_eq!(stats(&mut p.b).get(c::DM_BUSY), Some(&1));
    }

    #[test]
    fn rate_limit_sheds_with_load() {
        let mut config = cfg();
        config.rate_burst = 2;
        config.rate_per_sec = 1;
        let mut p = Pair::new(config);
        p.connect(10, A);
        p.pump();
        for i in 1..=3 {
            p.dm(i as u64, A, B, i, b"x");
        }
        assert_eq!(p.outcome(3).map(|d| d.outcome), Some(DmOutcome::Load));
        assert_eq!(stats(&mut p.b).get(c::LOAD_SHED), Some(&1));
    }

    #[test]
    fn dm_to_known_unconnected_peer_dials_on_demand() {
        let mut p = Pair::new(cfg());
        p.connect(10, A);
        p.pump();
        // Connection drops; A still knows B's address.
        let now = p.now;
        p.a.handle(Input::ConnectionDown { peer: B, conn: 10 }, now);
        p.b.handle(Input::ConnectionDown { peer: A, conn: 10 }, now);
        p.dm(1, A, B, 1, b"x");
        assert!(
            p.dials
                .iter()
                .any(|(me, peer, _)| *me == A && *peer == Some(B))
        );
        p.connect(11, A);
        p.pump();
        assert_eq!(p.outcome(1).map(|d| d.outcome), Some(DmOutcome::Acked));
    }

    #[test]
    fn failed_dial_makes_pending_dm_unreachable_and_backs_off() {
        let mut p = Pair::new(cfg());
        p.connect(10, A);
        p.pump();
        let now = p.now;
        p.a.handle(Input::ConnectionDown { peer: B, conn: 10 }, now);
        p.dm(1, A, B, 1, b"x");
        p.a.handle(
            Input::DialFailed {
                peer: Some(B),
                addr: addr(2),
            },
            now,
        );
        p.pump();
        assert_eq!(
            p.outcome(1).map(|d| d.outcome),
            Some(DmOutcome::Unreachable)
        );
        let v = p.a.peer_views(now);
        assert_eq!(v[0].state, PeerState::Backoff);
        assert_eq!(v[0].failed_attempts, 1);
        // No redial before the backoff elapses, a redial after.
        p.dials.clear();
        p.advance(Duration::from_millis(1));
        assert!(p.dials.is_empty());
        p.advance(Duration::from_secs(2));
        assert!(
            p.dials
                .iter()
                .any(|(me, peer, _)| *me == A && *peer == Some(B))
        );
    }

    #[test]
    fn simultaneous_dials_keep_the_same_connection_on_both_sides() {
        let mut p = Pair::new(cfg());
        p.connect(10, A); // dialed by A (smaller id)
        p.connect(20, B); // dialed by B
        p.pump();
        // Both sides close 20 and keep 10.
        assert!(p.closes.contains(&(A, 20)));
        assert!(p.closes.contains(&(B, 20)));
        assert!(!p.closes.iter().any(|(_, c)| *c == 10));
        assert_eq!(p.a.peer_views(p.now)[0].conn, Some(10));
        assert_eq!(p.b.peer_views(p.now)[0].conn, Some(10));
    }

    #[test]
    fn reconnect_in_the_same_direction_newest_wins() {
        let mut p = Pair::new(cfg());
        p.connect(10, B);
        p.connect(11, B);
        p.pump();
        assert!(p.closes.contains(&(A, 10)));
        assert_eq!(p.a.peer_views(p.now)[0].conn, Some(11));
        assert_eq!(stats(&mut p.a).get(c::CONNECTIONS_REPLACED), Some(&1));
    }

    #[test]
    fn ping_measures_rtt() {
        let mut p = Pair::new(cfg());
        p.connect(10, A);
        p.pump();
        p.cut = true;
        p.advance(Duration::from_secs(1)); // tick sends pings, dropped
        p.cut = false;
        // Next tick: ping delivered instantly, so RTT is zero but known.
        p.advance(Duration::from_secs(1));
        assert!(p.a.peer_views(p.now)[0].rtt.is_some());
    }

    #[test]
    fn peer_exchange_spreads_addresses() {
        let c = PeerId([3; 32]);
        let mut p = Pair::new(cfg());
        let now = p.now;
        p.b.handle(
            Input::ConnectionUp {
                peer: c,
                conn: 99,
                addr: addr(3),
                direction: Direction::Outbound,
                instance: 1,
            },
            now,
        );
        while p.b.poll_output().is_some() {}
        p.connect(10, A);
        p.pump();
        assert!(p.a.peer_views(now).iter().any(|v| v.peer == c));
    }

    #[test]
    fn bootstrap_dials_until_connected() {
        let now = Instant::now();
        let mut core = Core::new(A, cfg(), vec![(None, addr(9))], 1, now);
        core.handle_timeout(now);
        let outs: Vec<Output> = std::iter::from_fn(|| core.poll_output()).collect();
        assert!(outs.contains(&Output::Dial {
            peer: None,
            addr: addr(9)
        }));
        core.handle(
            Input::DialFailed {
                peer: None,
                addr: addr(9),
            },
            now,
        );
        core.handle_timeout(now + Duration::from_secs(5));
        let outs: Vec<Output> = std::iter::from_fn(|| core.poll_output()).collect();
        assert!(outs.iter().any(|o| matches!(o, Output::Dial { .. })));
        assert_eq!(
            core.drain_stats()
                .collect::<BTreeMap<_, _>>()
                .get(c::RECONNECT_ATTEMPTS),
            Some(&1)
        );
    }

    #[test]
    fn gossip_route_uses_the_connection_dials_known_and_hinted_peers_and_refuses_the_rest() {
        let now = Instant::now();
        let mut core = Core::new(A, cfg(), vec![], 1, now);
        let c = PeerId([3; 32]);
        // Ourselves and an unknown peer without an address: unreachable.
        assert_eq!(
            core.gossip_route(A, Some(addr(1)), now),
            GossipRoute::Unreachable
        );
        assert_eq!(core.gossip_route(c, None, now), GossipRoute::Unreachable);
        assert_eq!(
            core.gossip_route(c, Some("0.0.0.0:9".parse().unwrap()), now),
            GossipRoute::Unreachable
        );
        // An unknown peer with a usable hint is added and dialed (once).
        assert_eq!(
            core.gossip_route(c, Some(addr(9)), now),
            GossipRoute::Dialing
        );
        assert_eq!(
            core.gossip_route(c, Some(addr(9)), now),
            GossipRoute::Dialing
        );
        let dials: Vec<Output> = std::iter::from_fn(|| core.poll_output())
            .filter(|o| matches!(o, Output::Dial { .. }))
            .collect();
        assert_eq!(
            dials,
            [Output::Dial {
                peer: Some(c),
                addr: addr(9)
            }]
        );
        assert!(core.dialing(c));
        // Connected: the connection; the address book's address wins over a hint.
        core.handle(
            Input::ConnectionUp {
                peer: c,
                conn: 7,
                addr: addr(10),
                direction: Direction::Outbound,
                instance: 1,
            },
            now,
        );
        assert_eq!(
            core.gossip_route(c, Some(addr(11)), now),
            GossipRoute::Conn(7)
        );
        assert_eq!(core.conn_of(c), Some(7));
        assert_eq!(core.addr_of(c), Some(addr(10)));
        assert_eq!(core.contacts().first().map(|p| p.0), Some(c));
    }
}
