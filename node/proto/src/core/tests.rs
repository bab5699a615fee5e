use super::*;
use soak_api::counters as c;

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
    dials: Vec<(PeerId, Option<PeerId>, SocketAddr, Slot)>,
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
        let out_slot = self
            .core(d)
            .reserve_outbound(Some(l), addr(port(l)), now)
            .expect("outbound budget");
        let in_slot = self
            .core(l)
            .admit_inbound(addr(port(d)), 0, now)
            .expect("inbound admitted");
        self.core(d).handle(
            Input::ConnectionUp {
                slot: out_slot,
                peer: l,
                conn,
                addr: addr(port(l)),
                remote: addr(port(l)),
                direction: Direction::Outbound,
                instance: 1,
            },
            now,
        );
        self.core(l).handle(
            Input::ConnectionUp {
                slot: in_slot,
                peer: d,
                conn,
                addr: addr(port(d)),
                remote: addr(port(d)),
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
                        Output::Dial { slot, peer, addr } => {
                            self.dials.push((me, peer, addr, slot))
                        }
                        Output::Close { conn, .. } => self.closes.push((me, conn)),
                        Output::Start { .. } | Output::Abort { .. } | Output::Banned(_) => {}
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
            .any(|(me, peer, _, _)| *me == A && *peer == Some(B))
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
    let slot = p.dials.last().map(|d| d.3).expect("a dial");
    p.a.handle(
        Input::DialFailed {
            slot,
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
            .any(|(me, peer, _, _)| *me == A && *peer == Some(B))
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
    let slot = p.b.reserve_outbound(Some(c), addr(3), now).unwrap();
    p.b.handle(
        Input::ConnectionUp {
            slot,
            peer: c,
            conn: 99,
            addr: addr(3),
            remote: addr(3),
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
    let slot = outs
        .iter()
        .find_map(|o| match o {
            Output::Dial {
                slot,
                peer: None,
                addr: a,
            } if *a == addr(9) => Some(*slot),
            _ => None,
        })
        .expect("bootstrap dial");
    core.handle(
        Input::DialFailed {
            slot,
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
    let dials: Vec<(Option<PeerId>, SocketAddr, Slot)> = std::iter::from_fn(|| core.poll_output())
        .filter_map(|o| match o {
            Output::Dial { slot, peer, addr } => Some((peer, addr, slot)),
            _ => None,
        })
        .collect();
    assert_eq!(dials.len(), 1);
    assert_eq!((dials[0].0, dials[0].1), (Some(c), addr(9)));
    assert!(core.dialing(c));
    // Connected: the connection; the address book's address wins over a hint.
    core.handle(
        Input::ConnectionUp {
            slot: dials[0].2,
            peer: c,
            conn: 7,
            addr: addr(10),
            remote: addr(9),
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

// ---- a mesh of cores: dials connect for real (admission, promotion), links can be cut ------

/// Any number of cores; a dial reaches the core listening at the address (if any and the link
/// is up), through `admit_inbound` and both `ConnectionUp`s, as the shell does it.
struct Mesh {
    cores: BTreeMap<PeerId, Core>,
    addrs: BTreeMap<SocketAddr, PeerId>,
    /// conn id → (dialer, listener).
    links: BTreeMap<ConnId, (PeerId, PeerId)>,
    /// Pairs whose frames and dials are dropped.
    cut: BTreeSet<(PeerId, PeerId)>,
    now: Instant,
    next_conn: ConnId,
    outs: Vec<(PeerId, Output)>,
}

fn id(n: u8) -> PeerId {
    PeerId([n; 32])
}

impl Mesh {
    fn new() -> Mesh {
        Mesh {
            cores: BTreeMap::new(),
            addrs: BTreeMap::new(),
            links: BTreeMap::new(),
            cut: BTreeSet::new(),
            now: Instant::now(),
            next_conn: 100,
            outs: Vec::new(),
        }
    }

    fn add(&mut self, n: u8, cfg: CoreConfig, bootstrap: &[u8]) -> PeerId {
        let me = id(n);
        let boot = bootstrap.iter().map(|b| (None, addr(*b as u16))).collect();
        self.cores
            .insert(me, Core::new(me, cfg, boot, u64::from(n), self.now));
        self.addrs.insert(addr(n as u16), me);
        me
    }

    fn core(&mut self, p: PeerId) -> &mut Core {
        self.cores.get_mut(&p).expect("core")
    }

    fn is_cut(&self, a: PeerId, b: PeerId) -> bool {
        self.cut.contains(&(a, b)) || self.cut.contains(&(b, a))
    }

    /// A connection from `d` (slot `slot` if it dialed, else reserved now) to `l`.
    fn link(&mut self, d: PeerId, l: PeerId, slot: Option<Slot>) -> Option<ConnId> {
        let now = self.now;
        let (d_addr, l_addr) = (addr(d.0[0] as u16), addr(l.0[0] as u16));
        let out_slot = match slot {
            Some(s) => s,
            None => self.core(d).reserve_outbound(Some(l), l_addr, now)?,
        };
        let attempt = self.next_conn;
        let in_slot = self.core(l).admit_inbound(d_addr, attempt, now).ok();
        let Some(in_slot) = in_slot else {
            self.core(d).handle(
                Input::DialFailed {
                    slot: out_slot,
                    peer: Some(l),
                    addr: l_addr,
                },
                now,
            );
            return None;
        };
        let conn = self.next_conn;
        self.next_conn += 1;
        self.links.insert(conn, (d, l));
        for (me, other, slot, a, direction) in [
            (d, l, out_slot, l_addr, Direction::Outbound),
            (l, d, in_slot, d_addr, Direction::Inbound),
        ] {
            self.core(me).handle(
                Input::ConnectionUp {
                    slot,
                    peer: other,
                    conn,
                    addr: a,
                    remote: a,
                    direction,
                    instance: 1,
                },
                now,
            );
        }
        Some(conn)
    }

    fn other_end(&self, me: PeerId, conn: ConnId) -> Option<PeerId> {
        let (d, l) = self.links.get(&conn)?;
        Some(if *d == me { *l } else { *d })
    }

    /// Deliver outputs (frames, dials, closes) until quiet.
    fn pump(&mut self) {
        for _ in 0..10_000 {
            let mut moved = false;
            let ids: Vec<PeerId> = self.cores.keys().copied().collect();
            for me in ids {
                while let Some(o) = self.core(me).poll_output() {
                    moved = true;
                    let now = self.now;
                    match &o {
                        Output::Send { conn, frame } => {
                            if let Some(other) = self.other_end(me, *conn)
                                && !self.is_cut(me, other)
                            {
                                let frame = frame.clone();
                                self.core(other).handle(
                                    Input::Frame {
                                        peer: me,
                                        conn: *conn,
                                        frame,
                                    },
                                    now,
                                );
                            }
                        }
                        Output::Dial { slot, peer, addr } => {
                            let target = self.addrs.get(addr).copied();
                            match target {
                                Some(t) if !self.is_cut(me, t) && peer.is_none_or(|p| p == t) => {
                                    self.link(me, t, Some(*slot));
                                }
                                // Unreachable: left to the authentication timeout.
                                _ => {}
                            }
                        }
                        Output::Close { conn, .. } => {
                            if let Some(other) = self.other_end(me, *conn) {
                                self.links.remove(conn);
                                for (a, b) in [(me, other), (other, me)] {
                                    self.core(a).handle(
                                        Input::ConnectionDown {
                                            peer: b,
                                            conn: *conn,
                                        },
                                        now,
                                    );
                                }
                            }
                        }
                        _ => {}
                    }
                    self.outs.push((me, o));
                }
            }
            if !moved {
                return;
            }
        }
        panic!("mesh did not settle");
    }

    fn advance(&mut self, d: Duration) {
        self.now += d;
        let now = self.now;
        for core in self.cores.values_mut() {
            core.handle_timeout(now);
        }
        self.pump();
    }

    fn dm(&mut self, op: OpId, from: PeerId, to: PeerId, timeout: Duration) {
        let now = self.now;
        self.core(from).handle(
            Input::SendDm {
                op,
                to,
                request_id: [op as u8; 16],
                payload: vec![op as u8],
                timeout,
            },
            now,
        );
        self.pump();
    }

    fn done(&self, op: OpId) -> Option<&DmDone> {
        self.outs.iter().find_map(|(_, o)| match o {
            Output::DmDone(d) if d.op == op => Some(d),
            _ => None,
        })
    }

    fn closes(&self, who: PeerId) -> Vec<CloseReason> {
        self.outs
            .iter()
            .filter_map(|(me, o)| match o {
                Output::Close { reason, .. } if *me == who => Some(*reason),
                _ => None,
            })
            .collect()
    }

    fn sent(&self, who: PeerId) -> Vec<&Frame> {
        self.outs
            .iter()
            .filter_map(|(me, o)| match o {
                Output::Send { frame, .. } if *me == who => Some(frame),
                _ => None,
            })
            .collect()
    }

    fn stats(&mut self, who: PeerId) -> BTreeMap<&'static str, u64> {
        self.core(who).drain_stats().collect()
    }
}

const MS: Duration = Duration::from_millis(1);

#[test]
fn a_rate_limited_sender_gets_err_load_with_the_reason_and_counts_no_failure() {
    let mut m = Mesh::new();
    let a = m.add(1, cfg(), &[]);
    let mut limited = cfg();
    (limited.rate_per_sec, limited.rate_burst) = (1, 2);
    let b = m.add(2, limited, &[]);
    m.link(a, b, None);
    m.pump();
    for op in 1..=4 {
        m.dm(op, a, b, 500 * MS);
    }
    let load = m.done(3).cloned().expect("outcome");
    assert_eq!(load.outcome, DmOutcome::Load);
    let why = load.error.unwrap_or_default();
    assert!(
        why.contains("ERR_LOAD") && why.contains("rate limit"),
        "{why}"
    );
    // The shedding side sent ERR_LOAD (not a DmAck) and counted the violations.
    let loads = m
        .sent(b)
        .into_iter()
        .filter(|f| matches!(f, Frame::Load { request_id: Some(_), reason } if reason.len() <= 100))
        .count();
    assert_eq!(loads, 2);
    let sb = m.stats(b);
    assert_eq!(sb.get(stats::ERR_LOAD_SENT), Some(&2));
    assert_eq!(sb.get(stats::PEER_FAILURES), Some(&2));
    // The receiver of ERR_LOAD: counted as such, never as a failure; the peer stays healthy.
    let sa = m.stats(a);
    assert_eq!(sa.get(stats::ERR_LOAD_RECEIVED), Some(&2));
    assert_eq!(sa.get(stats::PEER_FAILURES), None);
    let view = {
        let now = m.now;
        m.core(a).peer_views(now)
    };
    assert_eq!(view[0].failed_attempts, 0);
    assert_eq!(view[0].state, PeerState::Established);
    assert!(
        {
            let now = m.now;
            m.core(a).bans(now)
        }
        .is_empty()
    );
}

#[test]
fn repeated_rate_limit_violations_ban_the_sender() {
    let mut m = Mesh::new();
    let a = m.add(1, cfg(), &[]);
    let mut strict = cfg();
    (strict.rate_per_sec, strict.rate_burst) = (1, 1);
    strict.bans.threshold = 3;
    let b = m.add(2, strict, &[]);
    m.link(a, b, None);
    m.pump();
    for op in 1..=4 {
        m.dm(op, a, b, 500 * MS);
    }
    let bans = {
        let now = m.now;
        m.core(b).bans(now)
    };
    assert_eq!(bans.len(), 1);
    assert_eq!(bans[0].subject, Subject::Peer(a));
    assert_eq!(bans[0].last, crate::bans::Failure::RateLimit);
    assert!(m.closes(b).contains(&CloseReason::Banned));
    // Refused early from then on: its address, and its dials.
    assert_eq!(
        {
            let now = m.now;
            m.core(b).admit_inbound(addr(1), 0, now)
        },
        Err(Refusal::Banned)
    );
    assert!(m.link(a, b, None).is_none());
    assert!(m.stats(b).get(stats::BANNED_REFUSALS) >= Some(&1));
    // Lifted: admitted again.
    assert_eq!(m.core(b).lift_bans(Some(Subject::Peer(a))), 1);
    assert!(m.link(a, b, None).is_some());
}

#[test]
fn garbage_frames_ban_the_peer_until_the_ban_expires_in_the_tick() {
    let mut m = Mesh::new();
    let mut c = cfg();
    c.bans.threshold = 10;
    c.bans.duration = Duration::from_secs(30);
    let n = m.add(1, c, &[]);
    let bad = m.add(2, cfg(), &[]);
    let conn = m.link(bad, n, None).expect("linked");
    m.pump();
    for i in 0..9 {
        let now = m.now;
        m.core(n).handle(Input::BadFrame { peer: bad, conn }, now);
        assert!(
            m.core(n).bans(now).is_empty(),
            "banned after {i} bad frames"
        );
    }
    let now = m.now;
    m.core(n).handle(Input::BadFrame { peer: bad, conn }, now);
    m.pump();
    let bans = {
        let now = m.now;
        m.core(n).bans(now)
    };
    assert_eq!(bans.len(), 1);
    assert_eq!(bans[0].failures, 10);
    assert_eq!(bans[0].addr, Some(addr(2)));
    assert!(m.closes(n).contains(&CloseReason::Banned));
    assert_eq!(
        {
            let now = m.now;
            m.core(n).counts(now)
        }
        .bans,
        1
    );
    // A reconnect is refused before any handshake.
    assert_eq!(
        {
            let now = m.now;
            m.core(n).admit_inbound(addr(2), 0, now)
        },
        Err(Refusal::Banned)
    );
    // The tick cleans the ban once it ends.
    m.advance(Duration::from_secs(31));
    assert!(
        {
            let now = m.now;
            m.core(n).bans(now)
        }
        .is_empty()
    );
    assert!(m.stats(n).get(stats::BANS_ENDED) >= Some(&1));
    assert!(
        {
            let now = m.now;
            m.core(n).admit_inbound(addr(2), 0, now)
        }
        .is_ok()
    );
}

#[test]
fn the_inbound_cap_sheds_newcomers_with_err_load_and_never_starts_them() {
    let mut m = Mesh::new();
    let mut capped = cfg();
    capped.max_inbound_peers = 2;
    let hub = m.add(1, capped, &[]);
    let leaves: Vec<PeerId> = (2..=5).map(|n| m.add(n, cfg(), &[])).collect();
    for l in &leaves {
        m.link(*l, hub, None);
        m.pump();
    }
    assert_eq!(
        {
            let now = m.now;
            m.core(hub).counts(now)
        }
        .inbound,
        2
    );
    assert_eq!(
        {
            let now = m.now;
            m.core(hub).counts(now)
        }
        .established,
        2
    );
    let shed = m
        .sent(hub)
        .into_iter()
        .filter(|f| matches!(f, Frame::Load { request_id: None, reason } if reason.contains("limit (2)")))
        .count();
    assert_eq!(shed, 2);
    let closes = m.closes(hub);
    assert_eq!(
        closes
            .iter()
            .filter(|r| **r == CloseReason::LimitReached)
            .count(),
        2
    );
    let s = m.stats(hub);
    assert_eq!(s.get(stats::INBOUND_LIMIT_REFUSALS), Some(&2));
    // The refused leaves heard ERR_LOAD: no failure, they back off.
    for l in &leaves[2..] {
        let s = m.stats(*l);
        assert_eq!(s.get(stats::ERR_LOAD_RECEIVED), Some(&1));
        assert_eq!(s.get(stats::PEER_FAILURES), None);
    }
}

#[test]
fn a_preferred_peer_evicts_a_non_preferred_inbound_connection() {
    let mut m = Mesh::new();
    let mut capped = cfg();
    capped.max_inbound_peers = 1;
    // The hub's operator named `friend` (pinned bootstrap peer): it is preferred.
    let friend = id(3);
    let hub = m.add(1, capped.clone(), &[]);
    let now = m.now;
    let pinned = Core::new(hub, capped, vec![(Some(friend), addr(3))], 1, now);
    m.cores.insert(hub, pinned);
    let stranger = m.add(2, cfg(), &[]);
    m.add(3, cfg(), &[]);
    m.link(stranger, hub, None);
    m.pump();
    m.link(friend, hub, None);
    m.pump();
    assert!(m.closes(hub).contains(&CloseReason::Evicted));
    assert_eq!(m.core(hub).conn_of(stranger), None);
    assert!(m.core(hub).conn_of(friend).is_some());
    assert!(m.sent(hub).into_iter().any(
        |f| matches!(f, Frame::Load { request_id: None, reason } if reason.starts_with("evicted"))
    ));
    assert_eq!(m.stats(hub).get(stats::INBOUND_EVICTIONS), Some(&1));
}

#[test]
fn the_authentication_timeout_is_enforced_by_the_transient_manager() {
    let now = Instant::now();
    let mut core = Core::new(A, cfg(), vec![], 1, now);
    let slot = core.admit_inbound(addr(7), 0, now).expect("admitted");
    // A second handshake from the same address while one is pending: refused (idempotent).
    assert_eq!(core.admit_inbound(addr(7), 0, now), Err(Refusal::Duplicate));
    assert_eq!(core.counts(now).pending_inbound, 1);
    assert_eq!(
        core.next_timeout()
            .map(|t| t <= now + cfg().connect_timeout),
        Some(true)
    );
    core.handle_timeout(now + cfg().connect_timeout);
    let outs: Vec<Output> = std::iter::from_fn(|| core.poll_output()).collect();
    assert!(outs.contains(&Output::Abort { slot }));
    assert_eq!(core.counts(now).pending_inbound, 0);
    // The handshake finishing late is not admitted.
    core.handle(
        Input::ConnectionUp {
            slot,
            peer: B,
            conn: 9,
            addr: addr(7),
            remote: addr(7),
            direction: Direction::Inbound,
            instance: 1,
        },
        now + cfg().connect_timeout + MS,
    );
    let outs: Vec<Output> = std::iter::from_fn(|| core.poll_output()).collect();
    assert_eq!(
        outs,
        [Output::Close {
            conn: 9,
            reason: CloseReason::Expired
        }]
    );
    let s: BTreeMap<_, _> = core.drain_stats().collect();
    assert_eq!(s.get(c::AUTH_TIMEOUTS), Some(&1));
    assert_eq!(s.get(stats::LATE_AUTHENTICATIONS), Some(&1));
    assert_eq!(core.transient_stats().expired, 1);
    assert_eq!(core.conn_of(B), None);
}

#[test]
fn the_pending_inbound_budget_refuses_extra_handshakes() {
    let now = Instant::now();
    let mut c = cfg();
    c.max_pending_inbound = 2;
    let mut core = Core::new(A, c, vec![], 1, now);
    assert!(core.admit_inbound(addr(1), 0, now).is_ok());
    assert!(core.admit_inbound(addr(2), 0, now).is_ok());
    assert_eq!(core.admit_inbound(addr(3), 0, now), Err(Refusal::Budget));
    let s: BTreeMap<_, _> = core.drain_stats().collect();
    assert_eq!(s.get(stats::HANDSHAKES_REFUSED), Some(&1));
}

#[test]
fn auth_timeouts_from_a_known_node_never_ban_it() {
    // A partition makes a real peer's handshakes time out again and again; it is not abuse.
    let mut m = Mesh::new();
    let mut c = cfg();
    c.bans.threshold = 2;
    let n = m.add(1, c, &[]);
    let peer = m.add(2, cfg(), &[]);
    let conn = m.link(peer, n, None).expect("linked");
    m.pump();
    let now = m.now;
    m.core(n).handle(Input::ConnectionDown { peer, conn }, now);
    for _ in 0..5 {
        let now = m.now;
        assert!(m.core(n).admit_inbound(addr(2), 0, now).is_ok());
        m.advance(cfg().connect_timeout);
    }
    assert!(
        {
            let now = m.now;
            m.core(n).bans(now)
        }
        .is_empty()
    );
    // An address nobody knows is banned for the same.
    for _ in 0..2 {
        let now = m.now;
        assert!(m.core(n).admit_inbound(addr(9), 0, now).is_ok());
        m.advance(cfg().connect_timeout);
    }
    assert_eq!(
        {
            let now = m.now;
            m.core(n).admit_inbound(addr(9), 0, now)
        },
        Err(Refusal::Banned)
    );
}

#[test]
fn a_dm_right_after_joining_reaches_a_peer_known_only_to_the_hub() {
    // Three nodes bootstrapped through one: the leaves do not know each other yet.
    let mut m = Mesh::new();
    let hub = m.add(1, cfg(), &[]);
    let a = m.add(2, cfg(), &[]);
    let b = m.add(3, cfg(), &[]);
    m.link(a, hub, None);
    m.pump();
    m.link(b, hub, None);
    // Only the link-up exchanges happened; a's exchange with the hub predates b.
    m.pump();
    assert_eq!(
        m.core(a).addr_of(b),
        None,
        "a must not know b yet for this test"
    );
    m.dm(1, a, b, 2000 * MS);
    let d = m
        .done(1)
        .cloned()
        .expect("answered without waiting out the budget");
    assert_eq!((d.outcome, d.attempts), (DmOutcome::Acked, 1), "{d:?}");
    let inbox = m.core(b).inbox_page(0, 10).0;
    assert_eq!(inbox.len(), 1, "exactly once");
    let s = m.stats(a);
    assert_eq!(s.get(stats::DISCOVERY_QUERIES), Some(&1));
    assert_eq!(s.get(stats::DISCOVERED), Some(&1));
}

#[test]
fn a_dm_to_a_peer_nobody_knows_fails_fast_once_every_neighbour_answered() {
    let mut m = Mesh::new();
    let hub = m.add(1, cfg(), &[]);
    let a = m.add(2, cfg(), &[]);
    m.link(a, hub, None);
    m.pump();
    m.dm(1, a, id(9), Duration::from_secs(10));
    let d = m.done(1).cloned().expect("fails at once, not after 10 s");
    assert_eq!((d.outcome, d.path), (DmOutcome::Unreachable, DmPath::None));
    assert!(d.error.unwrap_or_default().contains("no neighbour knows"));
    assert_eq!(d.elapsed, Duration::ZERO);
}

#[test]
fn a_dm_waiting_for_discovery_fails_when_its_budget_is_spent() {
    let mut m = Mesh::new();
    let hub = m.add(1, cfg(), &[]);
    let a = m.add(2, cfg(), &[]);
    m.link(a, hub, None);
    m.pump();
    // The hub never answers.
    m.cut.insert((a, hub));
    m.dm(1, a, id(9), 300 * MS);
    assert!(m.done(1).is_none());
    m.advance(299 * MS);
    assert!(m.done(1).is_none(), "still within its budget");
    m.advance(MS);
    let d = m.done(1).cloned().expect("budget spent");
    assert_eq!(d.outcome, DmOutcome::Unreachable);
    assert!(d.error.unwrap_or_default().contains("within 300 ms"));
    assert!(m.core(a).discovery.is_empty());
}

#[test]
fn a_held_core_admits_nothing_and_dials_nobody_until_the_hold_ends() {
    let now = Instant::now();
    let mut core = Core::new(A, cfg(), vec![(None, addr(9))], 1, now);
    core.hold_until(now + Duration::from_secs(2));
    core.handle_timeout(now);
    assert_eq!(core.admit_inbound(addr(3), 0, now), Err(Refusal::Held));
    assert!(!std::iter::from_fn(|| core.poll_output()).any(|o| matches!(o, Output::Dial { .. })));
    core.handle_timeout(now + Duration::from_secs(2));
    assert!(std::iter::from_fn(|| core.poll_output()).any(|o| matches!(o, Output::Dial { .. })));
    assert!(
        core.admit_inbound(addr(3), 0, now + Duration::from_secs(2))
            .is_ok()
    );
}

#[test]
fn a_resolved_bootstrap_name_replaces_its_addresses() {
    let now = Instant::now();
    let mut core = Core::new(A, cfg(), vec![], 1, now);
    core.handle(
        Input::BootstrapResolved {
            source: 0,
            peer: None,
            addrs: vec![addr(5), addr(6)],
        },
        now,
    );
    core.handle_timeout(now);
    let dialed: BTreeSet<SocketAddr> = std::iter::from_fn(|| core.poll_output())
        .filter_map(|o| match o {
            Output::Dial { addr, .. } => Some(addr),
            _ => None,
        })
        .collect();
    assert_eq!(dialed, [addr(5), addr(6)].into_iter().collect());
    core.handle(
        Input::BootstrapResolved {
            source: 0,
            peer: None,
            addrs: vec![addr(6)],
        },
        now,
    );
    assert_eq!(core.bootstrap.len(), 1);
    assert_eq!(core.bootstrap[0].addr, addr(6));
}

/// Regression: every connection was pinged every tick, so a node DMing a 100-node fleet (a
/// connection to every peer) sent and answered ≈ 400 pings a second, and a 100-node local
/// mesh spent both cores of its host on them. Active-view peers are still pinged every tick;
/// on-demand connections once every `ON_DEMAND_PING_TICKS`.
#[test]
fn on_demand_connections_are_pinged_rarely_active_ones_every_tick() {
    let cfg = CoreConfig {
        active_view: 4,
        ..cfg()
    };
    let mut now = Instant::now();
    let mut core = Core::new(A, cfg, vec![], 1, now);
    for i in 0..20u8 {
        let peer = PeerId([10 + i; 32]);
        let remote = addr(100 + u16::from(i));
        let slot = core.admit_inbound(remote, 0, now).expect("admitted");
        core.handle(
            Input::ConnectionUp {
                slot,
                peer,
                conn: 100 + ConnId::from(i),
                addr: remote,
                remote,
                direction: Direction::Inbound,
                instance: 1,
            },
            now,
        );
    }
    while core.poll_output().is_some() {}
    let mut pings: BTreeMap<ConnId, u64> = BTreeMap::new();
    let ticks = 2 * ON_DEMAND_PING_TICKS;
    for _ in 0..ticks {
        now += Duration::from_secs(1);
        core.handle_timeout(now);
        while let Some(out) = core.poll_output() {
            if let Output::Send {
                conn,
                frame: Frame::Ping { .. },
            } = out
            {
                *pings.entry(conn).or_default() += 1;
            }
        }
    }
    let active: Vec<ConnId> = core
        .peer_views(now)
        .iter()
        .filter(|p| p.active)
        .filter_map(|p| p.conn)
        .collect();
    assert_eq!(active.len(), 4);
    for conn in 100..120 {
        let sent = pings.get(&conn).copied().unwrap_or(0);
        if active.contains(&conn) {
            assert!(
                sent >= ticks - 1,
                "active conn {conn}: {sent} pings in {ticks} ticks"
            );
        } else {
            assert!(
                (1..=2).contains(&sent),
                "on-demand conn {conn}: {sent} pings in {ticks} ticks"
            );
        }
    }
}
