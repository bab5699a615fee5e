//! The actor: the one task that owns the [`Engine`] and the live connections. It turns
//! [`NetEvent`]s and API [`Command`]s into engine inputs and carries out the engine's outputs
//! (queue frames, dial, close, answer DMs) without ever awaiting a bounded channel.

use std::collections::{HashMap, VecDeque};
use std::sync::Arc;
use std::sync::atomic::Ordering;
use std::time::{Duration, Instant};

use soak_api::Direction;
use soak_api::{InboxItem, InboxPage, ReceivedItem, ReceivedPage, counters as c};
use soak_proto::PeerId;
use soak_proto::core::{self, CloseReason, ConnId, DmDone, OpId};
use soak_proto::engine::{self, Engine, Output, TopicError};
use soak_proto::transient::Slot;
use tokio::sync::{mpsc, oneshot};
use tokio::task::AbortHandle;
use tracing::{debug, info, warn};

use super::conns::{
    self, CLOSE_BANNED, CLOSE_EVICTED, CLOSE_EXPIRED, CLOSE_IDLE, CLOSE_LIMIT, CLOSE_REPLACED,
    CLOSE_SELF, CLOSE_SHUTDOWN, ConnCtx, Established, NetEvent, OutFrame,
};
use super::{Command, unix_ms};
use crate::metrics::extra;

pub(super) struct ConnEntry {
    pub(super) connection: quinn::Connection,
    pub(super) out: mpsc::Sender<OutFrame>,
}

pub(super) struct Actor {
    pub(super) engine: Engine,
    pub(super) ctx: Arc<ConnCtx>,
    pub(super) conns: HashMap<ConnId, ConnEntry>,
    /// Receive streams of connections reported up but not admitted (started) yet.
    staged: HashMap<ConnId, (PeerId, quinn::RecvStream)>,
    /// Handshake tasks by transient slot (aborted when the core expires the slot).
    handshakes: HashMap<Slot, AbortHandle>,
    next_conn: ConnId,
    ops: HashMap<OpId, oneshot::Sender<DmDone>>,
    next_op: OpId,
    high_water: usize,
    drain_grace: Duration,
    draining: VecDeque<(Instant, ConnId)>,
}

impl Actor {
    pub(super) fn new(engine: Engine, ctx: Arc<ConnCtx>) -> Actor {
        let t = &ctx.shared.settings.tuning;
        Actor {
            high_water: (t.outbound_queue as usize * 3 / 4).max(1),
            drain_grace: Duration::from_millis(t.send_deadline_ms).max(Duration::from_secs(1)),
            engine,
            ctx,
            conns: HashMap::new(),
            staged: HashMap::new(),
            handshakes: HashMap::new(),
            next_conn: 1,
            ops: HashMap::new(),
            next_op: 1,
            draining: VecDeque::new(),
        }
    }

    pub(super) async fn run(
        mut self,
        mut cmd_rx: mpsc::Receiver<Command>,
        mut net_rx: mpsc::Receiver<NetEvent>,
    ) {
        let mut rtt_tick = tokio::time::interval(engine::PATH_RTT_INTERVAL);
        rtt_tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        loop {
            let deadline = self.engine.next_timeout();
            let sleep = async {
                match deadline {
                    Some(at) => tokio::time::sleep_until(at.into()).await,
                    None => std::future::pending().await,
                }
            };
            tokio::select! {
                ev = net_rx.recv() => {
                    if let Some(ev) = ev { self.on_net(ev) }
                }
                cmd = cmd_rx.recv() => match cmd {
                    Some(Command::Shutdown) | None => break,
                    Some(cmd) => self.on_command(cmd),
                },
                () = sleep => self.on_timeout(Instant::now(), net_rx.len()),
                _ = rtt_tick.tick() => self.report_path_rtts(Instant::now()),
            }
            self.drain();
        }
        for entry in self.conns.values() {
            entry.connection.close(CLOSE_SHUTDOWN.into(), b"shutdown");
        }
        self.ctx.endpoint.close(CLOSE_SHUTDOWN.into(), b"shutdown");
        self.ctx
            .shared
            .quic_listening
            .store(false, Ordering::Relaxed);
        info!("node main loop stopped");
    }

    /// QUIC's smoothed RTT of every peer's current connection, for the gossip core's
    /// slow-peer detector.
    fn report_path_rtts(&mut self, now: Instant) {
        let rtts: Vec<(PeerId, Duration)> = self
            .engine
            .core()
            .peer_views(now)
            .into_iter()
            .filter_map(|v| {
                let entry = self.conns.get(&v.conn?)?;
                Some((v.peer, entry.connection.rtt()))
            })
            .collect();
        if !rtts.is_empty() {
            self.engine.handle(engine::Input::PathRtts(rtts), now);
        }
    }

    fn on_timeout(&mut self, now: Instant, net_queued: usize) {
        self.engine.sync_wall(now, unix_ms());
        // Frames still waiting in our inbound path (receive queue, dispatcher workers, the
        // channel to this actor): a repair answer may be sitting there.
        let shared = &self.ctx.shared;
        let pump = self.ctx.pump_tx.max_capacity() - self.ctx.pump_tx.capacity();
        let busy =
            pump > 0 || net_queued > 0 || shared.dispatcher_inflight.load(Ordering::Relaxed) > 0;
        self.engine.handle_timeout(now, busy);
    }

    fn on_net(&mut self, ev: NetEvent) {
        let now = Instant::now();
        let input = match ev {
            NetEvent::Incoming(incoming) => {
                let remote = incoming.remote_address();
                let attempt = {
                    use std::hash::{BuildHasher, BuildHasherDefault};
                    BuildHasherDefault::<std::collections::hash_map::DefaultHasher>::default()
                        .hash_one(&incoming.orig_dst_cid()[..])
                };
                match self.engine.core_mut().admit_inbound(remote, attempt, now) {
                    Ok(slot) => {
                        let task = tokio::spawn(conns::inbound(self.ctx.clone(), slot, incoming));
                        self.handshakes.insert(slot, task.abort_handle());
                    }
                    Err(why) => {
                        debug!(%remote, %why, "inbound connection refused");
                        incoming.refuse();
                    }
                }
                return;
            }
            NetEvent::Up {
                slot,
                direction,
                est,
            } => {
                self.handshakes.remove(&slot);
                self.up(slot, direction, *est)
            }
            NetEvent::HandshakeFailed {
                slot,
                direction,
                addr,
                peer,
            } => {
                self.handshakes.remove(&slot);
                match direction {
                    Direction::Inbound => core::Input::HandshakeFailed {
                        slot,
                        remote: addr,
                        peer,
                    },
                    Direction::Outbound => core::Input::DialFailed { slot, peer, addr },
                }
            }
            NetEvent::BadFrame { peer, conn } => core::Input::BadFrame { peer, conn },
            NetEvent::BootstrapResolved {
                source,
                peer,
                addrs,
            } => core::Input::BootstrapResolved {
                source,
                peer,
                addrs,
            },
            NetEvent::Down { peer, conn } => {
                // Keep the writer for a grace period: frames of this connection may still sit
                // in the recv pump (Down overtakes them), and their answers fall back to the
                // connection they came on when the peer has no other one yet.
                self.draining.push_back((now + self.drain_grace, conn));
                core::Input::ConnectionDown { peer, conn }
            }
            NetEvent::Frame { peer, conn, frame } => core::Input::Frame { peer, conn, frame },
            NetEvent::Gossip { peer, msg, arrived } => {
                self.engine.handle(
                    engine::Input::Gossip {
                        peer,
                        msg,
                        arrived: Some(arrived),
                    },
                    now,
                );
                return;
            }
            NetEvent::SendTimeouts { peer, topics } => {
                self.engine
                    .handle(engine::Input::SendTimeouts { peer, topics }, now);
                return;
            }
        };
        self.engine.handle(engine::Input::Core(input), now);
    }

    /// A handshake finished: the writer starts at once (it only sends what the core queues),
    /// the reader waits in `staged` until the core admits the connection.
    fn up(&mut self, slot: Slot, direction: Direction, est: Established) -> core::Input {
        let conn = self.next_conn;
        self.next_conn += 1;
        let t = &self.ctx.shared.settings.tuning;
        let (out, out_rx) = mpsc::channel(t.outbound_queue as usize);
        tokio::spawn(conns::writer(
            est.send,
            out_rx,
            Duration::from_millis(t.send_deadline_ms),
            self.ctx.clone(),
            est.peer,
            est.connection.clone(),
        ));
        self.staged.insert(conn, (est.peer, est.recv));
        self.conns.insert(
            conn,
            ConnEntry {
                connection: est.connection,
                out,
            },
        );
        core::Input::ConnectionUp {
            slot,
            peer: est.peer,
            conn,
            addr: est.addr,
            remote: est.remote,
            direction,
            instance: est.instance,
        }
    }

    fn on_command(&mut self, cmd: Command) {
        let now = Instant::now();
        match cmd {
            Command::Dm {
                to,
                request_id,
                payload,
                timeout,
                reply,
            } => {
                let op = self.next_op;
                self.next_op += 1;
                self.ops.insert(op, reply);
                self.engine.handle(
                    engine::Input::Core(core::Input::SendDm {
                        op,
                        to,
                        request_id,
                        payload,
                        timeout,
                    }),
                    now,
                );
            }
            Command::Inbox {
                after,
                limit,
                reply,
            } => {
                self.engine.sync_wall(now, unix_ms());
                let (items, next) = self.engine.inbox_page(after, limit, now);
                let items = items
                    .into_iter()
                    .map(|(e, received_at_ms)| InboxItem {
                        seq: e.seq,
                        from: e.from.to_string(),
                        request_id: hex::encode(e.request_id),
                        size: e.size,
                        received_at_ms,
                    })
                    .collect();
                let _ = reply.send(InboxPage { next, items });
            }
            Command::Diagnostics { reply } => {
                self.drain();
                let _ = reply.send(self.diagnostics());
            }
            Command::Alive { reply } => {
                let _ = reply.send(());
            }
            Command::Subscribe { topic, reply } => {
                let contacts = self.engine.contact_count();
                let result = self.engine.subscribe(topic.clone(), now);
                if result == Ok(true) {
                    info!(%topic, contacts, "subscribed");
                }
                let _ = reply.send(result);
            }
            Command::Unsubscribe { topic, reply } => {
                let result = self.engine.unsubscribe(&topic, now);
                if result.is_ok() {
                    info!(%topic, "unsubscribed");
                }
                let _ = reply.send(result);
            }
            Command::Publish {
                topic,
                payload,
                reply,
            } => {
                self.engine.sync_wall(now, unix_ms());
                let _ = reply.send(self.engine.publish(&topic, payload, now));
            }
            Command::Received {
                topic,
                after,
                limit,
                reply,
            } => {
                self.engine.sync_wall(now, unix_ms());
                let result =
                    self.engine
                        .received(&topic, after, limit, now)
                        .map(|(items, next)| ReceivedPage {
                            next,
                            items: items
                                .into_iter()
                                .map(|r| ReceivedItem {
                                    seq: r.item.seq,
                                    msg_id: r.item.msg_id,
                                    origin: r.item.origin.to_string(),
                                    hops: u32::from(r.item.hops),
                                    size: r.item.size,
                                    published_at_ms: r.item.published_at_ms,
                                    received_at_ms: r.received_at_ms,
                                })
                                .collect(),
                        });
                let _ = reply.send(result);
            }
            Command::Stall { topic, for_, reply } => {
                let result = if self.engine.is_subscribed(&topic) {
                    self.ctx.shared.stalls.set(topic.clone(), for_, now);
                    info!(%topic, ?for_, "topic delivery path stalled");
                    Ok(())
                } else {
                    Err(TopicError::NotSubscribed(topic.to_string()))
                };
                let _ = reply.send(result);
            }
            Command::Bans { reply } => {
                let bans = self.engine.core().bans(now);
                let _ = reply.send(bans.iter().map(|b| super::diag::api_ban(b, now)).collect());
            }
            Command::LiftBans { subject, reply } => {
                let n = self.engine.core_mut().lift_bans(subject);
                if n > 0 {
                    info!(lifted = n, subject = ?subject.map(|s| s.to_string()), "bans lifted");
                }
                let _ = reply.send(n);
            }
            Command::Shutdown => {}
        }
    }

    fn send_deadline(&self) -> Duration {
        Duration::from_millis(self.ctx.shared.settings.tuning.send_deadline_ms)
    }

    /// Carries out everything the engine asked for; never awaits.
    pub(super) fn drain(&mut self) {
        let now = Instant::now();
        while let Some((at, conn)) = self.draining.front().copied() {
            if at > now {
                break;
            }
            self.draining.pop_front();
            self.conns.remove(&conn);
        }
        let shared = self.ctx.shared.clone();
        let metrics = &shared.metrics;
        while let Some(out) = self.engine.poll_output() {
            match out {
                Output::Transmit {
                    conn,
                    bytes,
                    gossip,
                } => {
                    let Some(out) = self.conns.get(&conn).map(|e| e.out.clone()) else {
                        continue;
                    };
                    let frame = OutFrame {
                        bytes,
                        gossip,
                        deadline: now + self.send_deadline(),
                    };
                    if let Some(tag) = self.push_frame(frame, &out) {
                        self.engine.handle(engine::Input::QueueFull(tag), now);
                    }
                }
                Output::Dial { slot, peer, addr } => {
                    let task = tokio::spawn(conns::dial(self.ctx.clone(), slot, peer, addr));
                    self.handshakes.insert(slot, task.abort_handle());
                }
                Output::Abort { slot } => {
                    // Dropping the task drops its half-open connection with it.
                    if let Some(task) = self.handshakes.remove(&slot) {
                        task.abort();
                    }
                }
                Output::Start { conn } => {
                    if let (Some((peer, recv)), Some(entry)) =
                        (self.staged.remove(&conn), self.conns.get(&conn))
                    {
                        tokio::spawn(conns::reader(
                            recv,
                            peer,
                            conn,
                            self.ctx.clone(),
                            entry.connection.clone(),
                        ));
                    }
                }
                Output::Banned(ban) => warn!(
                    subject = %ban.subject,
                    addr = ?ban.addr,
                    failures = ban.failures,
                    last = %ban.last,
                    for_ms = ban.until.saturating_duration_since(ban.since).as_millis() as u64,
                    "banned"
                ),
                Output::Close { conn, reason } => self.close(conn, reason),
                Output::DmDone(done) => {
                    if let Some(reply) = self.ops.remove(&done.op) {
                        let _ = reply.send(done);
                    }
                }
                Output::Topic(topic, ev) => log_topic_event(&topic, ev),
                Output::Latency(kind, d) => {
                    let name = match kind {
                        engine::Latency::DmAck => soak_api::histograms::DM_ACK_LATENCY,
                        engine::Latency::GossipDelivery => {
                            soak_api::histograms::GOSSIP_DELIVERY_LATENCY
                        }
                    };
                    metrics.observe(name, d.as_secs_f64());
                }
            }
        }
        for (name, n) in self.engine.drain_stats() {
            metrics.add(name, n);
        }
        shared.established.store(
            self.engine.core().counts(now).established,
            Ordering::Relaxed,
        );
    }

    fn close(&mut self, conn: ConnId, reason: CloseReason) {
        self.staged.remove(&conn);
        let Some(entry) = self.conns.remove(&conn) else {
            return;
        };
        let (code, why): (u32, &'static [u8]) = match reason {
            CloseReason::Replaced => (CLOSE_REPLACED, b"replaced by a newer connection"),
            CloseReason::Idle => (CLOSE_IDLE, b"idle"),
            CloseReason::SelfConnection => (CLOSE_SELF, b"self connection"),
            CloseReason::Banned => (CLOSE_BANNED, b"banned"),
            CloseReason::Expired => (CLOSE_EXPIRED, b"authentication timeout"),
            CloseReason::LimitReached => (CLOSE_LIMIT, b"connection limit"),
            CloseReason::Evicted => (CLOSE_EVICTED, b"evicted"),
        };
        if reason.immediate() {
            entry.connection.close(code.into(), why);
            return;
        }
        // Drain instead of cutting: dropping the queue's sender lets the writer flush what is
        // queued and finish its stream; the peer's reader then sees the end and closes. Frames
        // already in flight on a connection that lost a tie-break are therefore not lost. The
        // timer is the backstop for a peer that never reads.
        let ConnEntry { connection, out } = entry;
        drop(out);
        let grace = self.drain_grace;
        tokio::spawn(async move {
            tokio::time::sleep(grace).await;
            connection.close(code.into(), why);
        });
    }

    /// Try-push one frame on a connection's outbound queue; the actor never waits. A full
    /// queue is a send timeout; for a gossip frame its tag comes back, to be fed to the engine.
    fn push_frame(
        &self,
        frame: OutFrame,
        out: &mpsc::Sender<OutFrame>,
    ) -> Option<engine::GossipTag> {
        let metrics = &self.ctx.shared.metrics;
        match out.try_send(frame) {
            Ok(()) => {
                metrics.inc(extra::FRAMES_SENT);
                let depth = out.max_capacity() - out.capacity();
                if depth == self.high_water {
                    metrics.inc(c::OUTBOUND_HIGH_WATER);
                }
                None
            }
            Err(mpsc::error::TrySendError::Full(frame)) => {
                metrics.inc(c::PEER_SEND_TIMEOUTS);
                frame.gossip
            }
            // The connection is going away; its Down follows and later sends redial.
            Err(mpsc::error::TrySendError::Closed(_)) => None,
        }
    }
}

fn log_topic_event(
    topic: &soak_gossip::TopicId,
    ev: soak_gossip::TopicEvent<crate::pubsub::GossipPeer>,
) {
    use soak_gossip::TopicEvent;
    match ev {
        TopicEvent::Suppressed {
            peer,
            duration,
            strikes,
        } => info!(%topic, ?peer, ?duration, strikes, "gossip: peer suppressed"),
        TopicEvent::Recovered(peer) => info!(%topic, ?peer, "gossip: peer recovered"),
        TopicEvent::Demoted(peer) => info!(%topic, ?peer, "gossip: peer demoted to lazy"),
        TopicEvent::NeighborUp(peer) => debug!(%topic, ?peer, "gossip: neighbor up"),
        TopicEvent::NeighborDown(peer) => debug!(%topic, ?peer, "gossip: neighbor down"),
    }
}
