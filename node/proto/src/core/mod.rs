//! The node's protocol state machine: membership (HyParView-like active/passive views, peer
//! exchange, ping RTT, reconnect backoff, connection tie-breaking, the inbound connection cap),
//! the transient connections on their way in or out ([`crate::transient`]), automatic bans
//! ([`crate::bans`]), ERR_LOAD, and acknowledged direct messages (discovery of unknown peers
//! within the request's budget, ACK timeout, one duplicate-safe retry, dedupe, inbox, rate
//! limit).
//!
//! Entry type: [`Core`]. Feed it [`Input`]s with [`Core::handle`] and expired timers with
//! [`Core::handle_timeout`]; drain [`Output`]s with [`Core::poll_output`]. It never does IO,
//! never reads a clock and draws randomness only from the seeded RNG it was given.

mod dm;
mod membership;
#[cfg(test)]
mod tests;

use std::cmp::Reverse;
use std::collections::{BTreeMap, BTreeSet, BinaryHeap, HashMap, VecDeque};
use std::net::SocketAddr;
use std::time::{Duration, Instant};

use rand::SeedableRng;
use rand::rngs::StdRng;
use soak_api::{Direction, DmOutcome, DmPath, PeerState};

use crate::bans::{Ban, BanConfig, Bans, Subject};
use crate::inbox::{Dedupe, Inbox, InboxEntry, TokenBucket};
use crate::transient::{Slot, TransientConfig, TransientStats, Transients};
use crate::wire::Frame;
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
/// An on-demand (non-active-view) connection is pinged once every this many ticks (its RTT
/// stays known; active-view peers are pinged every tick).
const ON_DEMAND_PING_TICKS: u64 = 15;

/// Counter names the core reports beyond [`soak_api::counters`].
pub mod stats {
    /// Dials that failed or timed out.
    pub const DIAL_FAILURES: &str = "dial_failures_total";
    /// Inbound handshakes refused because the pending-inbound budget was spent.
    pub const HANDSHAKES_REFUSED: &str = "handshakes_refused_total";
    /// Failures recorded against a peer or address (bad frames, handshake failures, rate-limit
    /// violations, authentication timeouts).
    pub const PEER_FAILURES: &str = "peer_failures_total";
    /// Bans imposed.
    pub const BANS: &str = "bans_total";
    /// Connections, handshakes and dials refused because the peer or address is banned.
    pub const BANNED_REFUSALS: &str = "banned_refusals_total";
    /// Bans that ended (expired or lifted).
    pub const BANS_ENDED: &str = "bans_ended_total";
    /// ERR_LOAD frames sent.
    pub const ERR_LOAD_SENT: &str = "err_load_sent_total";
    /// ERR_LOAD frames received (never counted as a failure).
    pub const ERR_LOAD_RECEIVED: &str = "err_load_received_total";
    /// Authenticated inbound connections refused at the inbound cap.
    pub const INBOUND_LIMIT_REFUSALS: &str = "inbound_limit_refusals_total";
    /// Inbound connections closed to make room for a preferred peer.
    pub const INBOUND_EVICTIONS: &str = "inbound_evictions_total";
    /// Connections that authenticated after their transient slot had expired (closed).
    pub const LATE_AUTHENTICATIONS: &str = "late_authentications_total";
    /// Discovery questions sent for DMs to unknown peers.
    pub const DISCOVERY_QUERIES: &str = "dm_discovery_queries_total";
    /// Unknown DM receivers whose address was discovered in time.
    pub const DISCOVERED: &str = "dm_discovered_total";

    /// Every name above.
    pub const ALL: [&str; 13] = [
        DIAL_FAILURES,
        HANDSHAKES_REFUSED,
        PEER_FAILURES,
        BANS,
        BANNED_REFUSALS,
        BANS_ENDED,
        ERR_LOAD_SENT,
        ERR_LOAD_RECEIVED,
        INBOUND_LIMIT_REFUSALS,
        INBOUND_EVICTIONS,
        LATE_AUTHENTICATIONS,
        DISCOVERY_QUERIES,
        DISCOVERED,
    ];
}

impl TransientStats {
    /// The transition counters by name (monotonic).
    pub fn named(&self) -> [(&'static str, u64); 7] {
        [
            ("transient_reserved_inbound_total", self.reserved_inbound),
            ("transient_reserved_outbound_total", self.reserved_outbound),
            ("transient_reserved_again_total", self.reserved_again),
            ("transient_refused_total", self.refused),
            ("transient_promoted_total", self.promoted),
            ("transient_dropped_total", self.dropped),
            ("transient_expired_total", self.expired),
        ]
    }
}

/// Core settings (the node's tunables, as durations; defaults match the node's defaults).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CoreConfig {
    /// Maintenance tick.
    pub tick: Duration,
    /// Deadline for a handshake (QUIC + hello), inbound and outbound: the transient TTL.
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
    /// Most authenticated inbound connections.
    pub max_inbound_peers: usize,
    /// Most inbound handshakes in flight.
    pub max_pending_inbound: usize,
    /// Most outbound dials in flight.
    pub max_pending_outbound: usize,
    /// Automatic bans.
    pub bans: BanConfig,
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
            max_inbound_peers: 256,
            max_pending_inbound: 256,
            max_pending_outbound: 256,
            bans: BanConfig::default(),
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
    /// The peer (or its address) is banned.
    Banned,
    /// It authenticated after its transient slot expired (authentication timeout).
    Expired,
    /// The inbound connection cap is reached (ERR_LOAD was sent first).
    LimitReached,
    /// Closed to make room for a preferred peer (ERR_LOAD was sent first).
    Evicted,
}

impl CloseReason {
    /// Whether the connection is cut at once rather than drained (its frames are unwanted).
    pub fn immediate(self) -> bool {
        matches!(
            self,
            CloseReason::SelfConnection | CloseReason::Banned | CloseReason::Expired
        )
    }
}

/// Inputs from the shell.
#[derive(Debug, Clone)]
pub enum Input {
    /// A transient connection finished QUIC + hello; `addr` is the peer's advertised listen
    /// address, `remote` the address the connection comes from.
    ConnectionUp {
        /// The transient slot it was reserved under.
        slot: Slot,
        /// Authenticated peer id.
        peer: PeerId,
        /// Connection id.
        conn: ConnId,
        /// Peer listen address.
        addr: SocketAddr,
        /// Remote address of the connection.
        remote: SocketAddr,
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
    /// A dial we asked for failed.
    DialFailed {
        /// Its transient slot.
        slot: Slot,
        /// Expected peer, if known.
        peer: Option<PeerId>,
        /// Address dialed.
        addr: SocketAddr,
    },
    /// An inbound handshake failed (TLS, identity or hello).
    HandshakeFailed {
        /// Its transient slot.
        slot: Slot,
        /// Where it came from.
        remote: SocketAddr,
        /// The peer id, when its certificate was seen.
        peer: Option<PeerId>,
    },
    /// A frame from the peer could not be decoded, or was too large.
    BadFrame {
        /// Sender.
        peer: PeerId,
        /// Connection it arrived on.
        conn: ConnId,
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
        /// ACK timeout per attempt; also the budget for discovering an unknown receiver.
        timeout: Duration,
    },
    /// A bootstrap host name now resolves to `addrs` (replacing what it resolved to before).
    BootstrapResolved {
        /// Index of the entry in the configured bootstrap list.
        source: usize,
        /// Pinned peer id of the entry.
        peer: Option<PeerId>,
        /// Its addresses now.
        addrs: Vec<SocketAddr>,
    },
}

/// Why [`Core::admit_inbound`] refused a new inbound handshake.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum Refusal {
    /// The node stays out of the mesh for now (test hook `--test-rejoin-delay-ms`).
    #[error("staying out of the mesh (rejoin delay)")]
    Held,
    /// The address (or the peer last seen there) is banned.
    #[error("banned")]
    Banned,
    /// Too many inbound handshakes pending.
    #[error("too many pending inbound handshakes")]
    Budget,
    /// A handshake from this address is already pending.
    #[error("a handshake from this address is already pending")]
    Duplicate,
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
    /// From the request to the outcome.
    pub elapsed: Duration,
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
    /// Start reading a connection reported by [`Input::ConnectionUp`]: it was admitted. A
    /// connection never started is only ever closed.
    Start {
        /// Connection.
        conn: ConnId,
    },
    /// Dial an address, pinning `peer` when known, under this transient slot.
    Dial {
        /// Transient slot (report the result with it).
        slot: Slot,
        /// Expected peer id.
        peer: Option<PeerId>,
        /// Address.
        addr: SocketAddr,
    },
    /// Abandon the handshake of a transient slot (its authentication timeout passed).
    Abort {
        /// The slot.
        slot: Slot,
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
    /// A ban was imposed (for logs).
    Banned(Ban),
}

/// Where a gossip frame can be sent (see [`Core::gossip_route`]).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum GossipRoute {
    /// On this established connection.
    Conn(ConnId),
    /// A dial is under way: hold the frame until `ConnectionUp` or `DialFailed`.
    Dialing,
    /// No address known (or ourselves, or banned): the send fails.
    Unreachable,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
enum Timer {
    Tick,
    AckTimeout { op: OpId, attempt: u32 },
    ConnectDeadline { op: OpId, attempt: u32 },
    DiscoveryDeadline { op: OpId },
}

#[derive(Debug, Clone, Copy)]
struct Conn {
    id: ConnId,
    direction: Direction,
    instance: u64,
    remote: SocketAddr,
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
    /// Index in the configured bootstrap list (a host name may resolve to several entries).
    source: usize,
    peer: Option<PeerId>,
    addr: SocketAddr,
    dialing: bool,
    failures: u32,
    next_dial: Instant,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
/// What a pending DM waits for.
enum DmState {
    /// An address: the receiver is unknown; neighbours were asked, membership may bring it.
    Addr,
    /// A connection to the receiver.
    Conn,
    /// The receiver's acknowledgement.
    Ack,
}

#[derive(Debug)]
struct PendingDm {
    to: PeerId,
    request_id: RequestId,
    payload: Vec<u8>,
    timeout: Duration,
    attempts: u32,
    state: DmState,
    started: Instant,
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
    /// Of them, connected inbound.
    pub inbound: usize,
    /// Transient connections (inbound handshakes + outbound dials) pending.
    pub pending: usize,
    /// Inbound handshakes pending.
    pub pending_inbound: usize,
    /// Outbound dials pending.
    pub pending_outbound: usize,
    /// Active view size.
    pub active: usize,
    /// Passive view size (known, not active).
    pub passive: usize,
    /// Inbox depth.
    pub inbox: usize,
    /// DMs awaiting an ACK, a connection or discovery.
    pub pending_dms: usize,
    /// Dedupe cache entries.
    pub dedupe: usize,
    /// Bans in force.
    pub bans: usize,
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
    /// Unknown DM receivers → neighbours asked about them that have not answered yet.
    discovery: BTreeMap<PeerId, BTreeSet<PeerId>>,
    inbox: Inbox,
    dedupe: Dedupe,
    transients: Transients,
    bans: Bans,
    timers: BinaryHeap<Reverse<(Instant, Timer)>>,
    out: VecDeque<Output>,
    stats: BTreeMap<&'static str, u64>,
    next_nonce: u64,
    /// Maintenance ticks so far (spreads the pings of on-demand connections over ticks).
    ticks: u64,
    /// Until then the node stays out of the mesh: no maintenance, no dials, no inbound.
    hold_until: Option<Instant>,
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
            transients: Transients::new(TransientConfig {
                max_inbound: cfg.max_pending_inbound,
                max_outbound: cfg.max_pending_outbound,
                ttl: cfg.connect_timeout,
            }),
            bans: Bans::new(cfg.bans),
            cfg,
            rng: StdRng::seed_from_u64(seed),
            peers: BTreeMap::new(),
            bootstrap: bootstrap
                .into_iter()
                .enumerate()
                .map(|(source, (peer, addr))| BootstrapEntry {
                    source,
                    peer,
                    addr,
                    dialing: false,
                    failures: 0,
                    next_dial: now,
                })
                .collect(),
            pending: HashMap::new(),
            waiting_ack: HashMap::new(),
            discovery: BTreeMap::new(),
            timers: BinaryHeap::new(),
            out: VecDeque::new(),
            stats: BTreeMap::new(),
            next_nonce: 1,
            ticks: 0,
            hold_until: None,
        };
        core.timer(now, Timer::Tick);
        core
    }

    /// Stay out of the mesh until `at`: no maintenance, no dials and no inbound handshakes
    /// before it (the test hook `--test-rejoin-delay-ms`).
    pub fn hold_until(&mut self, at: Instant) {
        self.hold_until = Some(at);
    }

    fn held(&self, now: Instant) -> bool {
        self.hold_until.is_some_and(|until| now < until)
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
        let timer = self.timers.peek().map(|Reverse((at, _))| *at);
        match (timer, self.transients.next_deadline()) {
            (Some(a), Some(b)) => Some(a.min(b)),
            (a, b) => a.or(b),
        }
    }

    /// Counter increments since the last call (names from [`soak_api::counters`] and
    /// [`stats`]).
    pub fn drain_stats(&mut self) -> impl Iterator<Item = (&'static str, u64)> + use<> {
        std::mem::take(&mut self.stats).into_iter()
    }

    /// The transient-connection manager's transition counters (monotonic).
    pub fn transient_stats(&self) -> TransientStats {
        self.transients.stats()
    }

    /// Inbox page.
    pub fn inbox_page(&self, after: u64, limit: usize) -> (Vec<InboxEntry>, u64) {
        self.inbox.page(after, limit)
    }

    /// Bans in force.
    pub fn bans(&self, now: Instant) -> Vec<Ban> {
        self.bans.list(now)
    }

    /// Lift the ban of `subject` (`None`: every ban); returns how many were lifted.
    pub fn lift_bans(&mut self, subject: Option<Subject>) -> usize {
        let n = match subject {
            Some(s) => usize::from(self.bans.lift(s)),
            None => self.bans.lift_all(),
        };
        self.add(stats::BANS_ENDED, n as u64);
        n
    }

    /// Sizes for gauges.
    pub fn counts(&self, now: Instant) -> Counts {
        let mut k = Counts {
            inbox: self.inbox.len(),
            pending_dms: self.pending.len(),
            dedupe: self.dedupe.len(),
            pending_inbound: self.transients.pending_inbound(),
            pending_outbound: self.transients.pending_outbound(),
            bans: self.bans.list(now).len(),
            ..Counts::default()
        };
        k.pending = k.pending_inbound + k.pending_outbound;
        for p in self.peers.values() {
            if let Some(c) = p.conn {
                k.established += 1;
                if c.direction == Direction::Inbound {
                    k.inbound += 1;
                }
            }
            if p.active {
                k.active += 1;
            } else {
                k.passive += 1;
            }
        }
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

    fn count(&mut self, name: &'static str) {
        self.add(name, 1);
    }

    fn add(&mut self, name: &'static str, n: u64) {
        if n > 0 {
            *self.stats.entry(name).or_default() += n;
        }
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

    /// Process expired timers and transient connections whose authentication timeout passed.
    pub fn handle_timeout(&mut self, now: Instant) {
        self.expire_transients(now);
        while let Some(Reverse((at, t))) = self.timers.peek().copied() {
            if at > now {
                break;
            }
            self.timers.pop();
            match t {
                Timer::Tick => self.tick(now),
                Timer::AckTimeout { op, attempt } => self.ack_timeout(op, attempt, now),
                Timer::ConnectDeadline { op, attempt } => self.connect_deadline(op, attempt, now),
                Timer::DiscoveryDeadline { op } => self.discovery_deadline(op, now),
            }
        }
    }

    /// Process one input.
    pub fn handle(&mut self, input: Input, now: Instant) {
        match input {
            Input::ConnectionUp {
                slot,
                peer,
                conn,
                addr,
                remote,
                direction,
                instance,
            } => self.connection_up(
                slot,
                peer,
                Conn {
                    id: conn,
                    direction,
                    instance,
                    remote,
                },
                addr,
                now,
            ),
            Input::ConnectionDown { peer, conn } => self.connection_down(peer, conn, now),
            Input::DialFailed { slot, peer, addr } => {
                // Idempotent: a dial that already expired was handled then.
                if self.transients.drop(slot).is_some() {
                    self.count(stats::DIAL_FAILURES);
                    self.dial_failed(peer, addr, now);
                }
            }
            Input::HandshakeFailed { slot, remote, peer } => {
                self.handshake_failed(slot, remote, peer, now)
            }
            Input::BadFrame { peer, conn } => self.bad_frame(peer, conn, now),
            Input::Frame { peer, conn, frame } => self.frame(peer, conn, frame, now),
            Input::SendDm {
                op,
                to,
                request_id,
                payload,
                timeout,
            } => self.send_dm(op, to, request_id, payload, timeout, now),
            Input::BootstrapResolved {
                source,
                peer,
                addrs,
            } => self.bootstrap_resolved(source, peer, addrs, now),
        }
    }
}
