//! Membership: admitting and dialing transient connections, promoting them, the inbound cap
//! and eviction, bans, reconnect backoff, peer exchange and the maintenance tick.

use std::net::SocketAddr;
use std::time::{Duration, Instant};

use rand::seq::{IndexedRandom, SliceRandom};
use soak_api::{Direction, counters as c};

use super::{
    CloseReason, Conn, ConnId, Core, DEMOTE_AFTER_FAILURES, FORGET_AFTER_FAILURES, GossipRoute,
    ON_DEMAND_PING_TICKS, OpId, Output, Peer, Refusal, Timer, stats,
};
use crate::PeerId;
use crate::bans::{Failure, Subject};
use crate::transient::{Promotion, Reserved, Slot, TransientKey};
use crate::wire::{Frame, PeerAddr, cap_reason};

impl Core {
    /// Decide on a new inbound handshake from `remote` (connection attempt `attempt`): a
    /// transient slot to run it under, or why not. Banned addresses are refused here, before
    /// any cryptography.
    pub fn admit_inbound(
        &mut self,
        remote: SocketAddr,
        attempt: u64,
        now: Instant,
    ) -> Result<Slot, Refusal> {
        if self.held(now) {
            return Err(Refusal::Held);
        }
        if self.bans.is_banned_addr(remote, now) {
            self.count(stats::BANNED_REFUSALS);
            return Err(Refusal::Banned);
        }
        match self
            .transients
            .try_reserve(TransientKey::Inbound { remote, attempt }, now)
        {
            Ok(Reserved::New(slot)) => Ok(slot),
            Ok(Reserved::Existing(_)) => Err(Refusal::Duplicate),
            Err(_) => {
                self.count(stats::HANDSHAKES_REFUSED);
                Err(Refusal::Budget)
            }
        }
    }

    /// Reserve an outbound dial the shell starts on its own (tools and tests); the core's own
    /// dials come out as [`Output::Dial`]. `None` when the outbound budget is spent.
    pub fn reserve_outbound(
        &mut self,
        peer: Option<PeerId>,
        addr: SocketAddr,
        now: Instant,
    ) -> Option<Slot> {
        match self
            .transients
            .try_reserve(TransientKey::Outbound { addr, peer }, now)
        {
            Ok(Reserved::New(s) | Reserved::Existing(s)) => Some(s),
            Err(_) => None,
        }
    }

    /// Transient slots whose authentication timeout passed: abandoned, and counted.
    pub(super) fn expire_transients(&mut self, now: Instant) {
        for (slot, p) in self.transients.expire_due(now) {
            self.out.push_back(Output::Abort { slot });
            match p.key {
                TransientKey::Inbound { remote, .. } => {
                    self.count(c::AUTH_TIMEOUTS);
                    self.failure(
                        Subject::Addr(remote),
                        Some(remote),
                        Failure::AuthTimeout,
                        now,
                    );
                }
                TransientKey::Outbound { addr, peer } => {
                    self.count(stats::DIAL_FAILURES);
                    self.dial_failed(peer, addr, now);
                }
            }
        }
    }

    pub(super) fn handshake_failed(
        &mut self,
        slot: Slot,
        remote: SocketAddr,
        peer: Option<PeerId>,
        now: Instant,
    ) {
        if self.transients.drop(slot).is_none() {
            return; // already expired (counted then)
        }
        self.count(c::HANDSHAKE_FAILURES);
        let subject = peer.map_or(Subject::Addr(remote), Subject::Peer);
        self.failure(subject, Some(remote), Failure::Handshake, now);
    }

    pub(super) fn bad_frame(&mut self, peer: PeerId, conn: ConnId, now: Instant) {
        let remote = self
            .peers
            .get(&peer)
            .and_then(|p| p.conn)
            .filter(|c| c.id == conn)
            .map(|c| c.remote);
        self.failure(Subject::Peer(peer), remote, Failure::BadFrame, now);
    }

    /// Whether `addr` is the address of a peer that authenticated before: failures of a
    /// known node before it proves itself again (a handshake timing out through a partition)
    /// are network trouble, not abuse, and never ban it.
    fn known_node_at(&self, addr: SocketAddr) -> bool {
        self.peers.values().any(|p| {
            p.ever_connected && (p.addr == Some(addr) || p.conn.is_some_and(|c| c.remote == addr))
        })
    }

    /// Record one failure; ban when it reaches the threshold.
    pub(super) fn failure(
        &mut self,
        subject: Subject,
        addr: Option<SocketAddr>,
        failure: Failure,
        now: Instant,
    ) {
        if let Subject::Addr(a) = subject
            && self.known_node_at(a)
        {
            return;
        }
        self.count(stats::PEER_FAILURES);
        let Some(ban) = self.bans.record(subject, addr, failure, now) else {
            return;
        };
        self.count(stats::BANS);
        self.out.push_back(Output::Banned(ban));
        if let Subject::Peer(peer) = subject
            && let Some(p) = self.peers.get_mut(&peer)
        {
            p.active = false;
            if let Some(conn) = p.conn.take() {
                p.ping = None;
                self.out.push_back(Output::Close {
                    conn: conn.id,
                    reason: CloseReason::Banned,
                });
            }
        }
    }

    fn banned_peer(&self, peer: PeerId, now: Instant) -> bool {
        self.bans.is_banned(Subject::Peer(peer), now)
    }

    /// Peers the operator named: pinned bootstrap peers. They get in past the inbound cap.
    fn preferred(&self, peer: PeerId) -> bool {
        self.bootstrap.iter().any(|b| b.peer == Some(peer))
    }

    /// The inbound connection to give up for a preferred newcomer: a non-preferred one, outside
    /// the active view if there is one, least recently used.
    fn eviction_victim(&self, except: PeerId) -> Option<(PeerId, ConnId)> {
        self.peers
            .iter()
            .filter(|(id, _)| **id != except && !self.preferred(**id))
            .filter_map(|(id, p)| {
                p.conn
                    .filter(|c| c.direction == Direction::Inbound)
                    .map(|c| (p.active, p.last_used, *id, c.id))
            })
            .min()
            .map(|(_, _, id, conn)| (id, conn))
    }

    /// ERR_LOAD on `conn`, then close it.
    fn shed(&mut self, conn: ConnId, reason: String, close: CloseReason) {
        self.count(stats::ERR_LOAD_SENT);
        self.send(
            conn,
            Frame::Load {
                request_id: None,
                reason: cap_reason(&reason),
            },
        );
        self.out.push_back(Output::Close {
            conn,
            reason: close,
        });
    }

    pub(super) fn connection_up(
        &mut self,
        slot: Slot,
        peer: PeerId,
        new: Conn,
        addr: SocketAddr,
        now: Instant,
    ) {
        let conn = new.id;
        // The authentication timeout is enforced by the transient manager: a connection whose
        // slot expired (or was never reserved) is not admitted, however far it got.
        if !matches!(self.transients.promote(slot), Promotion::Promoted(_)) {
            self.count(stats::LATE_AUTHENTICATIONS);
            self.out.push_back(Output::Close {
                conn,
                reason: CloseReason::Expired,
            });
            return;
        }
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
        if self.banned_peer(peer, now) || self.bans.is_banned_addr(new.remote, now) {
            self.count(stats::BANNED_REFUSALS);
            if let Some(p) = self.peers.get_mut(&peer)
                && new.direction == Direction::Outbound
            {
                p.dialing = false;
            }
            self.out.push_back(Output::Close {
                conn,
                reason: CloseReason::Banned,
            });
            return;
        }
        if new.direction == Direction::Inbound {
            // It proved itself: earlier unauthenticated failures from there are forgiven.
            self.bans.forgive(Subject::Addr(new.remote));
            let replacing = self.peers.get(&peer).is_some_and(|p| p.conn.is_some());
            let inbound = self
                .peers
                .values()
                .filter(|p| p.conn.is_some_and(|c| c.direction == Direction::Inbound))
                .count();
            if !replacing && inbound >= self.cfg.max_inbound_peers {
                let cap = self.cfg.max_inbound_peers;
                match self
                    .preferred(peer)
                    .then(|| self.eviction_victim(peer))
                    .flatten()
                {
                    Some((victim, victim_conn)) => {
                        self.count(stats::INBOUND_EVICTIONS);
                        if let Some(v) = self.peers.get_mut(&victim) {
                            v.conn = None;
                            v.ping = None;
                        }
                        self.shed(
                            victim_conn,
                            format!(
                                "evicted: inbound connection limit ({cap}) reached and a preferred peer connected"
                            ),
                            CloseReason::Evicted,
                        );
                    }
                    None => {
                        self.count(stats::INBOUND_LIMIT_REFUSALS);
                        self.shed(
                            conn,
                            format!("inbound connection limit ({cap}) reached"),
                            CloseReason::LimitReached,
                        );
                        return;
                    }
                }
            }
        }
        // Admitted: read it (a tie-break loser too, so frames in flight on it are not lost).
        self.out.push_back(Output::Start { conn });
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
        if new.direction == Direction::Outbound {
            entry.dialing = false;
        }
        if let Some(cur) = entry.conn {
            let dialer = |d: Direction| if d == Direction::Outbound { me } else { peer };
            // Newest wins (a reconnect, or the peer restarted); for two live connections in
            // opposite directions from the same peer process (simultaneous dial) both sides
            // keep the one dialed by the smaller peer id, so they agree without talking.
            let new_wins = cur.instance != new.instance
                || cur.direction == new.direction
                || dialer(new.direction) < dialer(cur.direction);
            let loser = if new_wins { cur.id } else { conn };
            self.out.push_back(Output::Close {
                conn: loser,
                reason: CloseReason::Replaced,
            });
            self.count(c::CONNECTIONS_REPLACED);
            if !new_wins {
                return;
            }
        }
        let Some(entry) = self.peers.get_mut(&peer) else {
            return;
        };
        entry.conn = Some(new);
        entry.last_direction = new.direction;
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
        // Ask the newcomer about receivers of DMs we are still discovering.
        let looking: Vec<PeerId> = self.discovery.keys().copied().collect();
        for target in looking {
            if target == peer {
                continue;
            }
            if let Some(asked) = self.discovery.get_mut(&target) {
                asked.insert(peer);
            }
            self.count(stats::DISCOVERY_QUERIES);
            self.send(conn, Frame::FindPeer { peer: target });
        }
        self.discovered(peer, now);
        // Flush DMs that were waiting for this connection.
        let waiting: Vec<OpId> = self
            .pending
            .iter()
            .filter(|(_, d)| d.to == peer && d.state == super::DmState::Conn)
            .map(|(op, _)| *op)
            .collect();
        for op in waiting {
            self.transmit_dm(op, conn, now);
        }
    }

    pub(super) fn connection_down(&mut self, peer: PeerId, conn: ConnId, now: Instant) {
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
            p.next_dial = p.next_dial.max(now + backoff);
        }
    }

    /// ERR_LOAD without a DM: the peer sheds our connection. Not a failure: back off from it
    /// (and from the bootstrap entries naming it) without counting one.
    pub(super) fn shed_by(&mut self, peer: PeerId, now: Instant) {
        let wait = self
            .cfg
            .backoff_base
            .saturating_mul(8)
            .min(self.cfg.backoff_max)
            .max(Duration::from_millis(500));
        if let Some(p) = self.peers.get_mut(&peer) {
            p.next_dial = now + wait;
        }
        for b in &mut self.bootstrap {
            if b.peer == Some(peer) {
                b.next_dial = now + wait;
            }
        }
    }

    pub(super) fn dial_failed(&mut self, peer: Option<PeerId>, addr: SocketAddr, now: Instant) {
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
            .filter(|(_, d)| d.to == peer && d.state == super::DmState::Conn)
            .map(|(op, _)| *op)
            .collect();
        for op in waiting {
            self.finish(
                op,
                soak_api::DmOutcome::Unreachable,
                Some(format!("could not connect to {peer} at {addr}")),
                now,
            );
        }
    }

    /// Merge a peer exchange into the address book (bounded).
    pub(super) fn merge(&mut self, peers: Vec<PeerAddr>, now: Instant) {
        let bound = self.cfg.active_view + self.cfg.passive_view;
        let burst = self.cfg.rate_burst;
        let mut learned = Vec::new();
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
            let wanted = self.discovery.contains_key(&pa.id);
            match self.peers.get_mut(&pa.id) {
                Some(p) if p.conn.is_none() && !p.dialing && p.addr != Some(addr) => {
                    p.addr = Some(addr);
                    p.failures = 0;
                    p.next_dial = now;
                    learned.push(pa.id);
                }
                Some(_) => {}
                // A DM waits for this one: room is made past the bound.
                None if len < bound || wanted => {
                    self.peers.insert(pa.id, Peer::new(Some(addr), burst, now));
                    learned.push(pa.id);
                }
                None => {}
            }
        }
        for peer in learned {
            self.discovered(peer, now);
        }
    }

    /// A sample of known addresses for a peer exchange, excluding `to`. The receiver learns our
    /// own address from the connection itself.
    pub(super) fn sample(&mut self, to: Option<PeerId>) -> Vec<PeerAddr> {
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

    /// Dial `peer` unless connected, dialing, banned, held, or the outbound budget is spent
    /// (then the tick retries).
    pub(super) fn ensure_dial(&mut self, peer: PeerId, now: Instant) {
        if self.held(now) || self.banned_peer(peer, now) {
            return;
        }
        let Some(p) = self.peers.get_mut(&peer) else {
            return;
        };
        if p.conn.is_some() || p.dialing {
            return;
        }
        let Some(addr) = p.addr else { return };
        let key = TransientKey::Outbound {
            addr,
            peer: Some(peer),
        };
        let slot = match self.transients.try_reserve(key, now) {
            Ok(Reserved::New(slot)) => slot,
            Ok(Reserved::Existing(_)) => {
                p.dialing = true;
                return;
            }
            Err(_) => return,
        };
        let reconnect = p.ever_connected || p.failures > 0;
        p.dialing = true;
        self.out.push_back(Output::Dial {
            slot,
            peer: Some(peer),
            addr,
        });
        if reconnect {
            self.count(c::RECONNECT_ATTEMPTS);
        }
    }

    /// A bootstrap host name resolved: its entries become `addrs` (state kept for addresses
    /// that stay).
    pub(super) fn bootstrap_resolved(
        &mut self,
        source: usize,
        peer: Option<PeerId>,
        addrs: Vec<SocketAddr>,
        now: Instant,
    ) {
        self.bootstrap
            .retain(|b| b.source != source || addrs.contains(&b.addr));
        for addr in addrs {
            let known = self
                .bootstrap
                .iter()
                .any(|b| b.source == source && b.addr == addr);
            if !known {
                self.bootstrap.push(super::BootstrapEntry {
                    source,
                    peer,
                    addr,
                    dialing: false,
                    failures: 0,
                    next_dial: now,
                });
            }
        }
    }

    pub(super) fn tick(&mut self, now: Instant) {
        if let Some(until) = self.hold_until {
            if now < until {
                self.timer(until.min(now + self.cfg.tick), Timer::Tick);
                return;
            }
            self.hold_until = None;
        }
        self.timer(now + self.cfg.tick, Timer::Tick);
        self.dedupe.expire(now);
        let ended = self.bans.expire(now);
        self.add(stats::BANS_ENDED, ended as u64);

        // Bootstrap while we have no established peer.
        let established = self.peers.values().filter(|p| p.conn.is_some()).count();
        if established == 0 {
            let mut dials = Vec::new();
            for b in &mut self.bootstrap {
                let banned = b
                    .peer
                    .is_some_and(|p| self.bans.is_banned(Subject::Peer(p), now));
                if !b.dialing && b.next_dial <= now && !banned {
                    let key = TransientKey::Outbound {
                        addr: b.addr,
                        peer: b.peer,
                    };
                    if let Ok(Reserved::New(slot)) = self.transients.try_reserve(key, now) {
                        b.dialing = true;
                        dials.push((slot, b.peer, b.addr, b.failures > 0));
                    }
                }
            }
            for (slot, peer, addr, retry) in dials {
                if retry {
                    self.count(c::RECONNECT_ATTEMPTS);
                }
                self.out.push_back(Output::Dial { slot, peer, addr });
            }
        }

        // Ping every active-view peer each tick, and every on-demand connection once every
        // `ON_DEMAND_PING_TICKS` ticks (spread over the ticks by connection id); close idle
        // on-demand connections. A node DMing a whole fleet holds a connection to every peer:
        // pinging each of them every tick made a 100-node local mesh spend both cores of its
        // host on pings alone (≈ 400 frames/s per node), with no gain — liveness is QUIC's
        // keep-alive and idle timeout; the ping only measures RTT.
        self.ticks = self.ticks.wrapping_add(1);
        let mut pings = Vec::new();
        let mut closes = Vec::new();
        for p in self.peers.values_mut() {
            let Some(conn) = p.conn else { continue };
            if !p.active && now.saturating_duration_since(p.last_used) > self.cfg.on_demand_idle {
                closes.push(conn.id);
                continue;
            }
            if !p.active && (self.ticks.wrapping_add(conn.id)) % ON_DEMAND_PING_TICKS != 0 {
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
                if p.active || p.addr.is_none() || self.bans.is_banned(Subject::Peer(*id), now) {
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
            self.ensure_dial(id, now);
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

    // ---- gossip routing (the pub/sub layer lives in the engine) ---------------------------

    /// Where a gossip frame for `peer` can go right now. A known but unconnected peer (or an
    /// unknown one with a usable address hint, added to the address book while it has room) is
    /// dialed; the engine holds the frame until the connection is up or the dial fails.
    pub fn gossip_route(
        &mut self,
        peer: PeerId,
        hint: Option<SocketAddr>,
        now: Instant,
    ) -> GossipRoute {
        if peer == self.me || self.banned_peer(peer, now) {
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
        self.ensure_dial(peer, now);
        match self.peers.get(&peer) {
            Some(p) if p.dialing => GossipRoute::Dialing,
            _ => GossipRoute::Unreachable,
        }
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
}
