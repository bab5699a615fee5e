//! Frames from peers, and acknowledged direct messages: sending (with discovery of receivers
//! the node does not know yet), ACK timeouts and the retry, and the receiver side (rate limit,
//! dedupe, inbox).

use std::collections::BTreeSet;
use std::net::SocketAddr;
use std::time::{Duration, Instant};

use sha2::{Digest, Sha256};
use soak_api::{DmOutcome, DmPath, counters as c};

use super::{ConnId, Core, DmDone, DmState, OpId, Output, PendingDm, Timer, stats};
use crate::bans::{Failure, Subject};
use crate::inbox::Seen;
use crate::wire::{AckStatus, Frame, cap_reason};
use crate::{PeerId, RequestId};

impl Core {
    pub(super) fn frame(&mut self, peer: PeerId, arrived_on: ConnId, frame: Frame, now: Instant) {
        // Answers go on the peer's current connection: a frame may arrive on a connection that
        // just lost a tie-break and is draining, and would be closed under the answer.
        let conn = self
            .peers
            .get(&peer)
            .and_then(|p| p.conn)
            .map_or(arrived_on, |c| c.id);
        match self.peers.get_mut(&peer) {
            Some(p) => p.last_recv = Some(now),
            // Frames can only come from authenticated connections the core was told about;
            // anything else is a race with a close and is dropped.
            None => return,
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
                match self.receive_dm(peer, request_id, &payload, now) {
                    AckStatus::Load => {
                        // ERR_LOAD names the DM and says why; the violation is a failure of
                        // the sender (enough of them ban it).
                        self.count(stats::ERR_LOAD_SENT);
                        let reason = format!(
                            "rate limit exceeded: {} DMs/s per peer, burst {}",
                            self.cfg.rate_per_sec, self.cfg.rate_burst
                        );
                        self.send(
                            conn,
                            Frame::Load {
                                request_id: Some(request_id),
                                reason: cap_reason(&reason),
                            },
                        );
                        let remote = self.peers.get(&peer).and_then(|p| p.conn).map(|c| c.remote);
                        self.failure(Subject::Peer(peer), remote, Failure::RateLimit, now);
                    }
                    status => self.send(conn, Frame::DmAck { request_id, status }),
                }
            }
            Frame::DmAck { request_id, status } => {
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
                self.answered(peer, request_id, outcome, error, now);
            }
            Frame::Load { request_id, reason } => {
                // Never a failure of the peer: it told us it is shedding load.
                self.count(stats::ERR_LOAD_RECEIVED);
                let reason = cap_reason(&reason);
                match request_id {
                    Some(id) => self.answered(
                        peer,
                        id,
                        DmOutcome::Load,
                        Some(format!("receiver shed it (ERR_LOAD): {reason}")),
                        now,
                    ),
                    None => self.shed_by(peer, now),
                }
            }
            Frame::FindPeer { peer: target } => {
                let addr = (target != peer)
                    .then(|| self.peers.get(&target).and_then(|p| p.addr))
                    .flatten()
                    .map(|a| a.to_string());
                self.send(conn, Frame::PeerFound { peer: target, addr });
            }
            Frame::PeerFound { peer: target, addr } => {
                let addr = addr.and_then(|a| a.parse::<SocketAddr>().ok());
                match addr {
                    Some(addr) if self.discovery.contains_key(&target) => {
                        self.merge(
                            vec![crate::wire::PeerAddr {
                                id: target,
                                addr: addr.to_string(),
                            }],
                            now,
                        );
                    }
                    _ => self.not_found(target, peer, now),
                }
            }
            // Gossip is routed by the engine before it reaches this core.
            Frame::Gossip(_) => {}
        }
    }

    /// The receiver's answer to a DM we sent.
    fn answered(
        &mut self,
        peer: PeerId,
        request_id: RequestId,
        outcome: DmOutcome,
        error: Option<String>,
        now: Instant,
    ) {
        let ops = self
            .waiting_ack
            .remove(&(peer, request_id))
            .unwrap_or_default();
        for op in ops {
            let still_waiting = self
                .pending
                .get(&op)
                .is_some_and(|d| d.state == DmState::Ack);
            if still_waiting {
                self.finish(op, outcome, error.clone(), now);
            }
        }
    }

    pub(super) fn send_dm(
        &mut self,
        op: OpId,
        to: PeerId,
        request_id: RequestId,
        payload: Vec<u8>,
        timeout: Duration,
        now: Instant,
    ) {
        self.count(c::DM_SENT);
        let done = |outcome, path, attempts, error: Option<String>| {
            Output::DmDone(DmDone {
                op,
                outcome,
                path,
                attempts,
                error,
                elapsed: Duration::ZERO,
            })
        };
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
            self.out
                .push_back(done(outcome, DmPath::Loopback, 1, error));
            return;
        }
        if self.pending.len() >= self.cfg.max_pending_dms {
            self.count(c::LOAD_SHED);
            self.out.push_back(done(
                DmOutcome::Load,
                DmPath::None,
                0,
                Some("too many direct messages awaiting an ack".into()),
            ));
            return;
        }
        if self.bans.is_banned(Subject::Peer(to), now) {
            self.count(c::DM_UNREACHABLE);
            self.out.push_back(done(
                DmOutcome::Unreachable,
                DmPath::None,
                0,
                Some(format!("peer {to} is banned")),
            ));
            return;
        }
        let (conn, known) = match self.peers.get(&to) {
            Some(p) => (p.conn.map(|c| c.id), p.addr.is_some() || p.conn.is_some()),
            None => (None, false),
        };
        let state = if known { DmState::Conn } else { DmState::Addr };
        if !known && !self.start_discovery(to, now) {
            // Nobody to ask and nothing on its way that could tell us: fail fast.
            self.count(c::DM_UNREACHABLE);
            self.out.push_back(done(
                DmOutcome::Unreachable,
                DmPath::None,
                0,
                Some(format!(
                    "unknown peer {to}: no address known and no neighbour to ask"
                )),
            ));
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
                state,
                started: now,
            },
        );
        self.waiting_ack
            .entry((to, request_id))
            .or_default()
            .push(op);
        match (state, conn) {
            (DmState::Addr, _) => {
                self.timer(now + timeout, Timer::DiscoveryDeadline { op });
            }
            (_, Some(conn)) => self.transmit_dm(op, conn, now),
            (_, None) => {
                self.ensure_dial(to, now);
                self.timer(
                    now + self.cfg.connect_timeout,
                    Timer::ConnectDeadline { op, attempt: 1 },
                );
            }
        }
    }

    /// Ask every connected peer for `target`'s address (once per target while a DM waits);
    /// false when nothing could ever answer (no connection and no dial under way).
    fn start_discovery(&mut self, target: PeerId, now: Instant) -> bool {
        let dialing = self.transients.pending_outbound() > 0;
        if self.discovery.contains_key(&target) {
            return true;
        }
        let connected: Vec<(PeerId, ConnId)> = self
            .peers
            .iter()
            .filter_map(|(id, p)| p.conn.map(|c| (*id, c.id)))
            .collect();
        if connected.is_empty() && !dialing && !self.held(now) {
            return false;
        }
        let mut asked = BTreeSet::new();
        for (peer, conn) in connected {
            asked.insert(peer);
            self.count(stats::DISCOVERY_QUERIES);
            self.send(conn, Frame::FindPeer { peer: target });
        }
        self.discovery.insert(target, asked);
        true
    }

    /// `by` does not know `target`. Once every neighbour asked said so and no dial is under
    /// way, DMs waiting for `target` fail fast instead of waiting out their budget.
    fn not_found(&mut self, target: PeerId, by: PeerId, now: Instant) {
        let Some(asked) = self.discovery.get_mut(&target) else {
            return;
        };
        asked.remove(&by);
        if !asked.is_empty() || self.transients.pending_outbound() > 0 {
            return;
        }
        self.discovery.remove(&target);
        let ops: Vec<OpId> = self
            .pending
            .iter()
            .filter(|(_, d)| d.to == target && d.state == DmState::Addr)
            .map(|(op, _)| *op)
            .collect();
        for op in ops {
            self.finish(
                op,
                DmOutcome::Unreachable,
                Some(format!(
                    "unknown peer {target}: no neighbour knows its address"
                )),
                now,
            );
        }
    }

    /// `peer` has an address (or a connection) now: DMs that waited for it go on.
    pub(super) fn discovered(&mut self, peer: PeerId, now: Instant) {
        if self.discovery.remove(&peer).is_none() {
            return;
        }
        let ops: Vec<OpId> = self
            .pending
            .iter()
            .filter(|(_, d)| d.to == peer && d.state == DmState::Addr)
            .map(|(op, _)| *op)
            .collect();
        if ops.is_empty() {
            return;
        }
        self.count(stats::DISCOVERED);
        let conn = self.conn_of(peer);
        for op in ops {
            if let Some(d) = self.pending.get_mut(&op) {
                d.state = DmState::Conn;
            }
            match conn {
                Some(conn) => self.transmit_dm(op, conn, now),
                None => {
                    self.ensure_dial(peer, now);
                    self.timer(
                        now + self.cfg.connect_timeout,
                        Timer::ConnectDeadline { op, attempt: 1 },
                    );
                }
            }
        }
    }

    pub(super) fn discovery_deadline(&mut self, op: OpId, now: Instant) {
        let Some(d) = self.pending.get(&op) else {
            return;
        };
        if d.state != DmState::Addr {
            return;
        }
        let (to, budget) = (d.to, d.timeout);
        self.finish(
            op,
            DmOutcome::Unreachable,
            Some(format!(
                "unknown peer {to}: no address known within {} ms",
                budget.as_millis()
            )),
            now,
        );
        let still = self
            .pending
            .values()
            .any(|d| d.to == to && d.state == DmState::Addr);
        if !still {
            self.discovery.remove(&to);
        }
    }

    pub(super) fn transmit_dm(&mut self, op: OpId, conn: ConnId, now: Instant) {
        let Some(d) = self.pending.get_mut(&op) else {
            return;
        };
        d.state = DmState::Ack;
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

    pub(super) fn ack_timeout(&mut self, op: OpId, attempt: u32, now: Instant) {
        let Some(d) = self.pending.get_mut(&op) else {
            return;
        };
        if d.attempts != attempt || d.state != DmState::Ack {
            return;
        }
        let to = d.to;
        self.count(c::DM_ACK_TIMEOUTS);
        if attempt >= super::MAX_ATTEMPTS {
            self.finish(
                op,
                DmOutcome::Timeout,
                Some(format!("no ack after {attempt} attempts")),
                now,
            );
            return;
        }
        let Some(d) = self.pending.get_mut(&op) else {
            return;
        };
        d.attempts += 1;
        d.state = DmState::Conn;
        let attempt = d.attempts;
        self.count(c::DM_RETRIES);
        match self.conn_of(to) {
            Some(conn) => self.transmit_dm(op, conn, now),
            None => {
                self.ensure_dial(to, now);
                self.timer(
                    now + self.cfg.connect_timeout,
                    Timer::ConnectDeadline { op, attempt },
                );
            }
        }
    }

    pub(super) fn connect_deadline(&mut self, op: OpId, attempt: u32, now: Instant) {
        let waiting = self
            .pending
            .get(&op)
            .is_some_and(|d| d.attempts == attempt && d.state == DmState::Conn);
        if waiting {
            self.finish(
                op,
                DmOutcome::Unreachable,
                Some("no connection within the connect timeout".into()),
                now,
            );
        }
    }

    pub(super) fn finish(
        &mut self,
        op: OpId,
        outcome: DmOutcome,
        error: Option<String>,
        now: Instant,
    ) {
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
        let path = if d.state == DmState::Ack || outcome != DmOutcome::Unreachable {
            DmPath::Direct
        } else {
            DmPath::None
        };
        self.out.push_back(Output::DmDone(DmDone {
            op,
            outcome,
            path,
            attempts: if d.state == DmState::Addr {
                0
            } else {
                d.attempts
            },
            error,
            elapsed: now.saturating_duration_since(d.started),
        }));
    }

    /// Receiver side: rate limit, dedupe, inbox. Decides the ACK status.
    pub(super) fn receive_dm(
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
