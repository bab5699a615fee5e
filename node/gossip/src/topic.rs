//! One topic's state: membership (HyParView-like active/passive views), dissemination
//! (PlumTree eager/lazy push with IHAVE/IWANT/GRAFT/PRUNE), anti-entropy and peer scoring.

use std::{
    collections::{BTreeMap, BTreeSet},
    mem,
    time::Duration,
};

use rand::{Rng, seq::IteratorRandom};

use crate::{
    config::Config,
    diag::{PeerScoreSnapshot, Sizes, SuppressionSnapshot, TopicSnapshot},
    proto::{AeEntry, Body, Gossip, IHaveEntry, Message, MsgId, PushKind, TopicId},
    score::{self, Cause, PathRtt, Rtt, Score, Suppression, TreeLag},
    state::{Delivery, OutEvent, PeerId, SendOutcome, Timer, TimerKind, TopicEvent},
    stats::Counters,
    store::{Cache, Cached, Streams},
};

/// Everything a topic handler may touch besides the topic itself.
pub(crate) struct Ctx<'a, PI, R> {
    pub me: &'a PI,
    pub epoch: u64,
    pub now: Duration,
    pub config: &'a Config,
    /// When the input being handled reached the node (`now` unless the node reported an
    /// earlier arrival with [`crate::InEvent::RecvMessageAt`]).
    pub arrived: Duration,
    /// Everything that reached the node before this time has been handed to the core (`now`
    /// when the node reports no inbound backlog).
    pub watermark: Duration,
    /// Queueing delay of the latest message the node handed to the core.
    pub lag: Duration,
    /// Repair round-trip estimates per peer (node-wide: a property of the peer, not the topic).
    pub rtts: &'a mut BTreeMap<PI, Rtt>,
    /// Transport round-trip times per peer (node-wide), for the slow-peer detector.
    pub path_rtts: &'a BTreeMap<PI, PathRtt>,
    pub rng: &'a mut R,
    pub out: &'a mut Vec<OutEvent<PI>>,
    /// Peers removed from an active view in this step (for `DisconnectPeer`).
    pub dropped: &'a mut Vec<PI>,
}

/// A message announced by IHAVE that we have not received yet.
#[derive(Debug)]
struct Missing<PI> {
    /// Announcers not asked yet, with the hops the message took to reach them.
    announcers: Vec<(PI, u16)>,
    /// The announcer we grafted / IWANTed last and are waiting for.
    asked: Option<PI>,
    /// When the current wait ends: the learned graft wait after the first IHAVE, then the
    /// asked peer's repair timeout after each request.
    due: Duration,
    /// When the first IHAVE reached the node (the start of a tree-lag sample).
    announced_at: Duration,
}

/// Shortest re-check while a missing message's timer waits for the local backlog.
const MIN_RECHECK: Duration = Duration::from_millis(10);
/// A GRAFT / IWANT sent and not answered yet.
#[derive(Debug, Clone, Copy)]
struct Request {
    asked_at: Duration,
    /// A GRAFT (the asked peer made us eager), not an IWANT.
    grafted: bool,
    /// Unanswered by then (and with our own backlog past it), the promise is broken.
    deadline: Duration,
}

/// Outstanding requests kept per tracked missing message (see `Topic::requests`).
const REQUESTS_PER_MISSING: usize = 2;
/// Most peers with a repair round-trip estimate before the estimates of peers in no active
/// view are dropped.
const RTT_CAP: usize = 1024;

/// A publisher's own learned tree lag is used while it delivered within this long; after
/// that the tree may have changed under it and the topic's lag is used instead.
const STREAM_LAG_FRESH: Duration = Duration::from_secs(10);

/// Most neighbor requests started per maintenance tick (bounds request storms after churn).
const REFILL_ATTEMPTS_PER_TICK: u32 = 4;

#[derive(Debug)]
pub(crate) struct Topic<PI> {
    id: TopicId,
    // membership
    active: BTreeSet<PI>,
    passive: BTreeSet<PI>,
    bootstrap: BTreeSet<PI>,
    pending_neighbor: Option<(PI, Duration)>,
    refill_attempts: u32,
    next_shuffle: Duration,
    // dissemination
    eager: BTreeSet<PI>,
    lazy: BTreeSet<PI>,
    ihave_queue: BTreeMap<PI, Vec<IHaveEntry<PI>>>,
    ihave_scheduled: bool,
    missing: BTreeMap<MsgId<PI>, Missing<PI>>,
    /// Outstanding GRAFT / IWANT requests — promises — by (message, peer): kept past the
    /// repair wait, until the peer's copy comes (a round-trip sample, late ones included) or
    /// its promise timer judges it broken. Bounded by [`REQUESTS_PER_MISSING`] · `missing_cap`.
    requests: BTreeMap<(MsgId<PI>, PI), Request>,
    /// How long eager copies take to follow their first IHAVE on this topic's tree (the
    /// learned graft wait for publishers not heard lately, see `Config::graft_timeout_1`).
    tree_lag: TreeLag,
    /// Messages obtained by repair after an IHAVE, with when that IHAVE came: the eager copy
    /// still on its way is a late tree-lag sample. Bounded by `missing_cap`.
    repaired: BTreeMap<MsgId<PI>, (Duration, Option<PI>)>,
    cache: Cache<PI>,
    streams: Streams<PI>,
    next_seq: u64,
    // scoring
    scores: BTreeMap<PI, Score>,
    suppressions: BTreeMap<PI, Suppression>,
    counters: Counters,
}

fn is_suppressed<PI: Ord>(
    suppressions: &BTreeMap<PI, Suppression>,
    peer: &PI,
    now: Duration,
) -> bool {
    suppressions.get(peer).is_some_and(|s| s.is_active(now))
}

/// How long to wait for `peer` to answer a GRAFT / IWANT: its measured repair round trip
/// (`srtt + 4·rttvar`) within `[graft_timeout_2, repair_timeout_max]`.
fn repair_timeout<PI: PeerId, R>(ctx: &Ctx<'_, PI, R>, peer: &PI) -> Duration {
    let (floor, cap) = (ctx.config.graft_timeout_2, ctx.config.repair_timeout_max);
    ctx.rtts.get(peer).map_or_else(
        || {
            ctx.config
                .repair_timeout_initial
                .clamp(floor, cap.max(floor))
        },
        |r| r.timeout(floor, cap),
    )
}

fn rtt_sample<PI: PeerId, R>(ctx: &mut Ctx<'_, PI, R>, peer: &PI, sample: Duration) {
    match ctx.rtts.get_mut(peer) {
        Some(r) => r.sample(sample),
        None => {
            if ctx.rtts.len() >= RTT_CAP {
                // Bounded: drop an arbitrary (smallest id) estimate; it is rebuilt from the
                // next answer.
                ctx.rtts.pop_first();
            }
            ctx.rtts.insert(peer.clone(), Rtt::first(sample));
        }
    }
}

fn requests_insert<PI: PeerId>(
    requests: &mut BTreeMap<(MsgId<PI>, PI), Request>,
    key: (MsgId<PI>, PI),
    request: Request,
    config: &Config,
) {
    let cap = config.missing_cap.max(1) * REQUESTS_PER_MISSING;
    while requests.len() >= cap {
        // Full: forget the oldest request (unjudged; its timer then finds nothing).
        let Some(oldest) = requests
            .iter()
            .min_by_key(|(_, r)| r.asked_at)
            .map(|(k, _)| k.clone())
        else {
            break;
        };
        requests.remove(&oldest);
    }
    requests.insert(key, request);
}

/// Whether a wait that ended at `due` must be put off because the node has not yet handed
/// the core what reached it before `due` — the awaited copy may be sitting in our own inbound
/// queue, and that is no fault of the peer. `Some(when to look again)`; `None` to go ahead.
/// Never past `due + backlog_defer_max`.
fn backlog_wait<PI, R>(ctx: &Ctx<'_, PI, R>, due: Duration) -> Option<Duration> {
    let now = ctx.now;
    if now < due {
        return Some(due.saturating_sub(now).max(MIN_RECHECK));
    }
    let give_up = due.saturating_add(ctx.config.backlog_defer_max);
    if ctx.watermark >= due || now >= give_up {
        return None;
    }
    // Look again once what is queued now has likely been handed over (the latest queueing
    // delay).
    let behind = due.saturating_sub(ctx.watermark);
    Some(
        behind
            .min(ctx.lag)
            .max(MIN_RECHECK)
            .min(give_up.saturating_sub(now))
            .max(MIN_RECHECK),
    )
}

fn jitter<R: Rng>(rng: &mut R, d: Duration) -> Duration {
    d.mul_f64(rng.random_range(0.9..1.1))
}

impl<PI: PeerId> Topic<PI> {
    pub fn new(id: TopicId) -> Self {
        Self {
            id,
            active: BTreeSet::new(),
            passive: BTreeSet::new(),
            bootstrap: BTreeSet::new(),
            pending_neighbor: None,
            refill_attempts: 0,
            next_shuffle: Duration::ZERO,
            eager: BTreeSet::new(),
            lazy: BTreeSet::new(),
            ihave_queue: BTreeMap::new(),
            ihave_scheduled: false,
            missing: BTreeMap::new(),
            requests: BTreeMap::new(),
            tree_lag: TreeLag::default(),
            repaired: BTreeMap::new(),
            cache: Cache::new(),
            streams: Streams::new(),
            next_seq: 0,
            scores: BTreeMap::new(),
            suppressions: BTreeMap::new(),
            counters: Counters::default(),
        }
    }

    pub fn counters(&self) -> &Counters {
        &self.counters
    }

    pub fn counters_mut(&mut self) -> &mut Counters {
        &mut self.counters
    }

    pub fn is_active(&self, peer: &PI) -> bool {
        self.active.contains(peer)
    }

    pub fn active(&self) -> impl Iterator<Item = &PI> {
        self.active.iter()
    }

    // ------------------------------------------------------------------ plumbing

    fn send<R: Rng>(&mut self, ctx: &mut Ctx<'_, PI, R>, to: PI, body: Body<PI>) {
        self.counters.count_sent(body.kind());
        ctx.out.push(OutEvent::SendMessage(
            to,
            Message {
                topic: self.id.clone(),
                body,
            },
        ));
    }

    fn timer<R: Rng>(&self, ctx: &mut Ctx<'_, PI, R>, delay: Duration, kind: TimerKind<PI>) {
        ctx.out.push(OutEvent::ScheduleTimer(
            delay,
            Timer {
                topic: self.id.clone(),
                kind,
            },
        ));
    }

    fn event<R: Rng>(&self, ctx: &mut Ctx<'_, PI, R>, event: TopicEvent<PI>) {
        ctx.out.push(OutEvent::Event(self.id.clone(), event));
    }

    fn suppressed(&self, peer: &PI, now: Duration) -> bool {
        is_suppressed(&self.suppressions, peer, now)
    }

    /// Suppressed for a cause that stops every message to it (not for latency alone).
    fn silenced(&self, peer: &PI, now: Duration) -> bool {
        self.suppressions.get(peer).is_some_and(|s| s.silences(now))
    }

    /// Puts an active, non-suppressed peer into the eager set.
    fn make_eager(&mut self, peer: &PI, now: Duration) {
        if self.active.contains(peer) && !self.suppressed(peer, now) {
            self.lazy.remove(peer);
            self.eager.insert(peer.clone());
        }
    }

    /// Moves a peer from eager to lazy (if it is still a neighbor).
    fn make_lazy(&mut self, peer: &PI) {
        self.eager.remove(peer);
        if self.active.contains(peer) {
            self.lazy.insert(peer.clone());
        }
    }

    // ------------------------------------------------------------------ lifecycle

    pub fn start<R: Rng>(&mut self, ctx: &mut Ctx<'_, PI, R>) {
        // Until the tree has shown how slow it is, wait as if it were this slow.
        self.tree_lag = TreeLag::initial(ctx.config.graft_timeout_initial);
        // Random phase so that a swarm started at once does not tick in lockstep.
        let m = ctx
            .config
            .maintenance_interval
            .mul_f64(ctx.rng.random_range(0.1..1.0));
        self.timer(ctx, m, TimerKind::Maintenance);
        let a = ctx
            .config
            .ae_interval
            .mul_f64(ctx.rng.random_range(0.5..1.5));
        self.timer(ctx, a, TimerKind::AntiEntropy);
        self.next_shuffle = ctx.now
            + ctx
                .config
                .shuffle_interval
                .mul_f64(ctx.rng.random_range(0.5..1.5));
    }

    pub fn join<R: Rng>(&mut self, ctx: &mut Ctx<'_, PI, R>, bootstrap: Vec<PI>) {
        for peer in bootstrap {
            if &peer == ctx.me {
                continue;
            }
            if self.bootstrap.len() < ctx.config.bootstrap_cap {
                self.bootstrap.insert(peer.clone());
            }
            if self.active.len() < ctx.config.active_cap && !self.active.contains(&peer) {
                self.send(ctx, peer.clone(), Body::Join);
                // A Join is always accepted (or answered with Disconnect), so add now.
                self.add_active(ctx, peer);
            }
        }
    }

    pub fn leave<R: Rng>(&mut self, ctx: &mut Ctx<'_, PI, R>) {
        let active: Vec<PI> = self.active.iter().cloned().collect();
        for peer in active {
            self.send(ctx, peer.clone(), Body::Disconnect { alive: false });
            self.remove_active(ctx, &peer, false);
        }
    }

    // ------------------------------------------------------------------ membership

    fn add_active<R: Rng>(&mut self, ctx: &mut Ctx<'_, PI, R>, peer: PI) {
        if &peer == ctx.me || self.active.contains(&peer) {
            return;
        }
        while self.active.len() >= ctx.config.active_cap.max(1) {
            let Some(victim) = self.active.iter().choose(ctx.rng).cloned() else {
                break;
            };
            self.send(ctx, victim.clone(), Body::Disconnect { alive: true });
            self.remove_active(ctx, &victim, true);
        }
        self.passive.remove(&peer);
        self.active.insert(peer.clone());
        self.scores
            .entry(peer.clone())
            .or_insert_with(|| Score::new(ctx.now));
        if self.eager.len() < ctx.config.fresh_eager {
            self.make_eager(&peer, ctx.now);
        }
        if !self.eager.contains(&peer) {
            self.lazy.insert(peer.clone());
        }
        self.counters.neighbor_up += 1;
        self.event(ctx, TopicEvent::NeighborUp(peer));
    }

    /// Removes a peer from the active view; returns whether it was there.
    fn remove_active<R: Rng>(
        &mut self,
        ctx: &mut Ctx<'_, PI, R>,
        peer: &PI,
        to_passive: bool,
    ) -> bool {
        if !self.active.remove(peer) {
            return false;
        }
        self.eager.remove(peer);
        self.lazy.remove(peer);
        self.ihave_queue.remove(peer);
        if !self.suppressions.contains_key(peer) {
            self.scores.remove(peer);
        }
        if to_passive {
            self.add_passive(ctx, peer.clone());
        }
        self.counters.neighbor_down += 1;
        ctx.dropped.push(peer.clone());
        self.event(ctx, TopicEvent::NeighborDown(peer.clone()));
        true
    }

    fn add_passive<R: Rng>(&mut self, ctx: &mut Ctx<'_, PI, R>, peer: PI) {
        if &peer == ctx.me || self.active.contains(&peer) || self.passive.contains(&peer) {
            return;
        }
        if ctx.config.passive_cap == 0 {
            return;
        }
        while self.passive.len() >= ctx.config.passive_cap {
            let Some(victim) = self.passive.iter().choose(ctx.rng).cloned() else {
                break;
            };
            self.passive.remove(&victim);
        }
        self.passive.insert(peer);
    }

    /// Asks one passive peer to become a neighbor if the active view has room.
    fn refill<R: Rng>(&mut self, ctx: &mut Ctx<'_, PI, R>) {
        if self.active.len() >= ctx.config.active_cap
            || self.pending_neighbor.is_some()
            || self.refill_attempts >= REFILL_ATTEMPTS_PER_TICK
        {
            return;
        }
        let Some(peer) = self.passive.iter().choose(ctx.rng).cloned() else {
            return;
        };
        self.refill_attempts += 1;
        let high_priority = self.active.is_empty();
        self.pending_neighbor = Some((peer.clone(), ctx.now + ctx.config.neighbor_timeout));
        self.send(ctx, peer, Body::Neighbor { high_priority });
    }

    fn on_join<R: Rng>(&mut self, ctx: &mut Ctx<'_, PI, R>, from: PI) {
        self.add_active(ctx, from.clone());
        let others: Vec<PI> = self
            .active
            .iter()
            .filter(|p| **p != from)
            .cloned()
            .collect();
        let ttl = ctx.config.active_walk;
        for p in others {
            self.send(
                ctx,
                p,
                Body::ForwardJoin {
                    peer: from.clone(),
                    ttl,
                },
            );
        }
    }

    fn on_forward_join<R: Rng>(&mut self, ctx: &mut Ctx<'_, PI, R>, from: PI, peer: PI, ttl: u8) {
        if &peer == ctx.me {
            return;
        }
        let terminal = ttl == 0 || self.active.len() <= 1;
        let next = if terminal {
            None
        } else {
            if ttl == ctx.config.passive_walk {
                self.add_passive(ctx, peer.clone());
            }
            self.active
                .iter()
                .filter(|p| **p != from && **p != peer)
                .choose(ctx.rng)
                .cloned()
        };
        match next {
            Some(next) => self.send(
                ctx,
                next,
                Body::ForwardJoin {
                    peer,
                    ttl: ttl.saturating_sub(1),
                },
            ),
            None => {
                if !self.active.contains(&peer) {
                    self.add_active(ctx, peer.clone());
                    self.send(
                        ctx,
                        peer,
                        Body::Neighbor {
                            high_priority: true,
                        },
                    );
                }
            }
        }
    }

    fn on_neighbor<R: Rng>(&mut self, ctx: &mut Ctx<'_, PI, R>, from: PI, high_priority: bool) {
        let accepted = if self.active.contains(&from) {
            true
        } else if high_priority || self.active.len() < ctx.config.active_cap {
            self.add_active(ctx, from.clone());
            true
        } else {
            self.add_passive(ctx, from.clone());
            false
        };
        self.send(ctx, from, Body::NeighborReply { accepted });
    }

    fn on_neighbor_reply<R: Rng>(&mut self, ctx: &mut Ctx<'_, PI, R>, from: PI, accepted: bool) {
        let was_pending = self
            .pending_neighbor
            .as_ref()
            .is_some_and(|(p, _)| *p == from);
        if was_pending {
            self.pending_neighbor = None;
        }
        if accepted {
            if !self.active.contains(&from)
                && (was_pending || self.active.len() < ctx.config.active_cap)
            {
                self.add_active(ctx, from);
            }
        } else if was_pending {
            self.refill(ctx);
        }
    }

    fn on_disconnect<R: Rng>(&mut self, ctx: &mut Ctx<'_, PI, R>, from: PI, alive: bool) {
        if self
            .pending_neighbor
            .as_ref()
            .is_some_and(|(p, _)| *p == from)
        {
            self.pending_neighbor = None;
        }
        let was_active = self.remove_active(ctx, &from, alive);
        if alive {
            self.add_passive(ctx, from);
        } else {
            // It left the topic: what we asked of it will not come, and that is no offence.
            self.requests.retain(|(_, p), _| *p != from);
            self.passive.remove(&from);
            self.bootstrap.remove(&from);
        }
        if was_active {
            self.refill(ctx);
        }
    }

    pub fn on_peer_down<R: Rng>(&mut self, ctx: &mut Ctx<'_, PI, R>, peer: &PI) {
        if self
            .pending_neighbor
            .as_ref()
            .is_some_and(|(p, _)| p == peer)
        {
            self.pending_neighbor = None;
        }
        let was_active = self.remove_active(ctx, peer, false);
        self.passive.remove(peer);
        self.scores.remove(peer);
        self.requests.retain(|(_, p), _| p != peer);
        for m in self.missing.values_mut() {
            m.announcers.retain(|(p, _)| p != peer);
        }
        if was_active {
            self.refill(ctx);
        }
    }

    fn shuffle<R: Rng>(&mut self, ctx: &mut Ctx<'_, PI, R>) {
        let Some(target) = self.active.iter().choose(ctx.rng).cloned() else {
            return;
        };
        let mut peers: Vec<PI> = self
            .active
            .iter()
            .filter(|p| **p != target)
            .cloned()
            .choose_multiple(ctx.rng, ctx.config.shuffle_active);
        peers.extend(
            self.passive
                .iter()
                .cloned()
                .choose_multiple(ctx.rng, ctx.config.shuffle_passive),
        );
        peers.truncate(ctx.config.limits.max_shuffle_peers);
        let origin = ctx.me.clone();
        let ttl = ctx.config.active_walk;
        self.send(ctx, target, Body::Shuffle { origin, peers, ttl });
    }

    fn on_shuffle<R: Rng>(
        &mut self,
        ctx: &mut Ctx<'_, PI, R>,
        from: PI,
        origin: PI,
        peers: Vec<PI>,
        ttl: u8,
    ) {
        if &origin == ctx.me {
            return;
        }
        if ttl > 0 && self.active.len() > 1 {
            let next = self
                .active
                .iter()
                .filter(|p| **p != from && **p != origin)
                .choose(ctx.rng)
                .cloned();
            if let Some(next) = next {
                self.send(
                    ctx,
                    next,
                    Body::Shuffle {
                        origin,
                        peers,
                        ttl: ttl - 1,
                    },
                );
                return;
            }
        }
        let reply: Vec<PI> = self
            .passive
            .iter()
            .cloned()
            .choose_multiple(ctx.rng, peers.len());
        self.send(ctx, origin.clone(), Body::ShuffleReply { peers: reply });
        self.add_passive(ctx, origin);
        for p in peers {
            self.add_passive(ctx, p);
        }
    }

    fn on_shuffle_reply<R: Rng>(&mut self, ctx: &mut Ctx<'_, PI, R>, peers: Vec<PI>) {
        for p in peers {
            self.add_passive(ctx, p);
        }
    }

    // ------------------------------------------------------------------ dissemination

    pub fn publish<R: Rng>(
        &mut self,
        ctx: &mut Ctx<'_, PI, R>,
        payload: Vec<u8>,
        published_at_ms: u64,
    ) -> MsgId<PI> {
        self.next_seq += 1;
        let id = MsgId {
            origin: ctx.me.clone(),
            epoch: ctx.epoch,
            seq: self.next_seq,
        };
        let c = ctx.config;
        self.streams
            .insert(&id, ctx.now, c.streams_cap, c.stream_window);
        self.counters.published += 1;
        self.counters.delivered += 1;
        ctx.out.push(OutEvent::Deliver(
            self.id.clone(),
            Delivery {
                id: id.clone(),
                from: None,
                hops: 0,
                published_at_ms,
                payload: payload.clone(),
            },
        ));
        let next = Gossip {
            id: id.clone(),
            hops: 1,
            kind: PushKind::Eager,
            published_at_ms,
            payload: payload.clone(),
        };
        self.forward(ctx, next, None);
        self.cache.insert(
            id.clone(),
            Cached {
                payload,
                hops: 0,
                published_at_ms,
                received_at: ctx.now,
                from: None,
                kind: PushKind::Eager,
            },
            c.cache_cap,
            c.cache_bytes,
        );
        id
    }

    /// Eager push of `next` (the copy as it leaves us: hops already counting the next link,
    /// the push kind set) to the eager set, IHAVE to the lazy set (both without `exclude` and
    /// without suppressed peers).
    fn forward<R: Rng>(
        &mut self,
        ctx: &mut Ctx<'_, PI, R>,
        next: Gossip<PI>,
        exclude: Option<&PI>,
    ) {
        let now = ctx.now;
        let (id, hops) = (next.id.clone(), next.hops.saturating_sub(1));
        let eager: Vec<PI> = self
            .eager
            .iter()
            .filter(|p| Some(*p) != exclude && !self.suppressed(p, now))
            .cloned()
            .collect();
        for p in eager {
            self.send(ctx, p, Body::Gossip(next.clone()));
        }
        // A peer suppressed for its latency is still announced to (it may pull).
        let lazy: Vec<PI> = self
            .lazy
            .iter()
            .filter(|p| Some(*p) != exclude && !self.silenced(p, now))
            .cloned()
            .collect();
        for p in lazy {
            self.queue_ihave(
                ctx,
                p,
                IHaveEntry {
                    id: id.clone(),
                    hops,
                },
            );
        }
    }

    fn queue_ihave<R: Rng>(&mut self, ctx: &mut Ctx<'_, PI, R>, peer: PI, entry: IHaveEntry<PI>) {
        let queue = self.ihave_queue.entry(peer.clone()).or_default();
        queue.push(entry);
        if queue.len() >= ctx.config.limits.max_ihave_entries {
            let entries = mem::take(queue);
            self.ihave_queue.remove(&peer);
            self.counters.ihave_ids_sent += entries.len() as u64;
            self.send(ctx, peer, Body::IHave(entries));
        } else if !self.ihave_scheduled {
            self.ihave_scheduled = true;
            self.timer(ctx, ctx.config.ihave_interval, TimerKind::FlushIHave);
        }
    }

    fn flush_ihave<R: Rng>(&mut self, ctx: &mut Ctx<'_, PI, R>) {
        self.ihave_scheduled = false;
        let queue = mem::take(&mut self.ihave_queue);
        for (peer, entries) in queue {
            if entries.is_empty() || !self.active.contains(&peer) || self.silenced(&peer, ctx.now) {
                continue;
            }
            self.counters.ihave_ids_sent += entries.len() as u64;
            self.send(ctx, peer, Body::IHave(entries));
        }
    }

    fn on_gossip<R: Rng>(&mut self, ctx: &mut Ctx<'_, PI, R>, from: PI, g: Gossip<PI>) {
        let Gossip {
            id,
            hops,
            kind,
            published_at_ms,
            payload,
        } = g;
        let own = id.origin == *ctx.me && id.epoch == ctx.epoch;
        let c = ctx.config;
        let new = !own
            && self
                .streams
                .insert(&id, ctx.now, c.streams_cap, c.stream_window);
        if !new {
            let request = self.answered(ctx, &id, &from, kind);
            self.counters.duplicates += 1;
            match kind {
                PushKind::Eager => {
                    let premature = self.repaired.remove(&id).and_then(|(announced_at, g)| {
                        let lag = ctx.arrived.saturating_sub(announced_at);
                        self.tree_lag_sample(&id, lag);
                        g.filter(|g| *g != from && lag <= c.graft_timeout_max)
                    });
                    // Our first copy came from the tree too (or we published it): a redundant
                    // tree edge.
                    let tree_first = self.cache.get(&id).is_none_or(|cached| {
                        cached.kind == PushKind::Eager && cached.from.as_ref() != Some(&from)
                    });
                    if let Some(grafted) = premature {
                        // We grafted too early: the tree delivered after all, only slower
                        // than our wait. Undo the graft and keep the tree as it is (its shape
                        // suits every other publisher as well).
                        self.revert_graft(ctx, grafted);
                    } else if tree_first {
                        // Both sides go lazy. Prune even when the sender is not in our eager
                        // set — it has us in its own, or it would not push.
                        self.make_lazy(&from);
                        self.send(ctx, from, Body::Prune);
                    }
                }
                PushKind::Repair => {
                    // The answer to a GRAFT came after the tree's own copy: the graft was not
                    // needed, undo it.
                    let tree_first = self.cache.get(&id).is_some_and(|cached| {
                        cached.kind == PushKind::Eager && cached.from.as_ref() != Some(&from)
                    });
                    if tree_first && request.is_some_and(|r| r.grafted) {
                        self.revert_graft(ctx, from);
                    }
                }
                PushKind::AntiEntropy | PushKind::Detour => {}
            }
            return;
        }
        if kind == PushKind::AntiEntropy {
            self.counters.ae_recovered += 1;
        }
        let request = self.answered(ctx, &id, &from, kind);
        let missing = self.missing.remove(&id);
        if missing.is_none() && kind == PushKind::Eager {
            // The tree was first: no lag for this publisher this time.
            self.streams.lag_sample(&id, Duration::ZERO);
        }
        if let Some(m) = missing {
            match kind {
                PushKind::Eager => {
                    self.tree_lag_sample(&id, ctx.arrived.saturating_sub(m.announced_at));
                }
                PushKind::Repair | PushKind::Detour => {
                    // The tree's copy may still come; it is a late tree-lag sample then.
                    let grafted = request.is_some_and(|r| r.grafted).then(|| from.clone());
                    self.repaired_insert(id.clone(), m.announced_at, grafted, c);
                }
                PushKind::AntiEntropy => {}
            }
            if m.asked.as_ref() == Some(&from)
                && let Some(s) = self.scores.get_mut(&from)
            {
                s.decay(ctx.now, c.score_half_life);
                s.on_delivered();
            }
        }
        if kind != PushKind::AntiEntropy {
            // PlumTree: whoever pushed us a new message is on our tree.
            self.make_eager(&from, ctx.now);
        }
        self.counters.delivered += 1;
        ctx.out.push(OutEvent::Deliver(
            self.id.clone(),
            Delivery {
                id: id.clone(),
                from: Some(from.clone()),
                hops,
                published_at_ms,
                payload: payload.clone(),
            },
        ));
        // Only what the tree itself delivered travels on as a tree copy; anything else is a
        // detour, whose meeting with the tree's copy says nothing about the tree.
        let push = match kind {
            PushKind::Eager => PushKind::Eager,
            PushKind::Repair | PushKind::AntiEntropy | PushKind::Detour => PushKind::Detour,
        };
        let next = Gossip {
            id: id.clone(),
            hops: hops.saturating_add(1),
            kind: push,
            published_at_ms,
            payload: payload.clone(),
        };
        self.forward(ctx, next, Some(&from));
        self.cache.insert(
            id,
            Cached {
                payload,
                hops,
                published_at_ms,
                received_at: ctx.now,
                from: Some(from),
                kind,
            },
            c.cache_cap,
            c.cache_bytes,
        );
    }

    fn on_ihave<R: Rng>(
        &mut self,
        ctx: &mut Ctx<'_, PI, R>,
        from: PI,
        entries: Vec<IHaveEntry<PI>>,
    ) {
        let announcer_cap = ctx.config.active_cap.max(1) * 2;
        // Not on the tree (no eager peer, e.g. every neighbor is new): nobody is going to push
        // these to us, so ask the announcer at once instead of waiting for an eager copy.
        let now = ctx.now;
        let off_tree = !self.eager.iter().any(|p| !self.suppressed(p, now));
        let mut ask_now = Vec::new();
        for e in entries {
            let own = e.id.origin == *ctx.me && e.id.epoch == ctx.epoch;
            if own || self.streams.contains(&e.id) {
                self.maybe_optimize(ctx, &from, &e);
                continue;
            }
            match self.missing.get_mut(&e.id) {
                Some(m) => {
                    // One request per peer and message: a peer already asked is not queued
                    // again.
                    if m.announcers.len() < announcer_cap
                        && !m.announcers.iter().any(|(p, _)| *p == from)
                        && m.asked.as_ref() != Some(&from)
                        && !self.requests.contains_key(&(e.id.clone(), from.clone()))
                    {
                        m.announcers.push((from.clone(), e.hops));
                    }
                }
                None => {
                    if self.missing.len() < ctx.config.missing_cap {
                        let wait = if off_tree {
                            Duration::ZERO
                        } else {
                            self.graft_wait(ctx.config, &e.id, ctx.now)
                        };
                        self.missing.insert(
                            e.id.clone(),
                            Missing {
                                announcers: vec![(from.clone(), e.hops)],
                                asked: None,
                                due: ctx.now.saturating_add(wait),
                                announced_at: ctx.arrived,
                            },
                        );
                        if off_tree {
                            ask_now.push(e.id);
                        } else {
                            self.timer(ctx, wait, TimerKind::Missing(e.id));
                        }
                    }
                }
            }
        }
        for id in ask_now {
            self.on_missing_timer(ctx, id);
        }
    }

    /// How long a node on the tree waits for the eager copy of an announced message before
    /// grafting: learned from how late eager copies followed their IHAVEs.
    fn graft_wait(&self, config: &Config, id: &MsgId<PI>, now: Duration) -> Duration {
        let (floor, cap) = (config.graft_timeout_1, config.graft_timeout_max);
        self.streams
            .lag(id, now.saturating_sub(STREAM_LAG_FRESH))
            .unwrap_or(&self.tree_lag)
            .wait(floor, cap)
    }

    /// An eager copy of `id` came `lag` after its first IHAVE.
    fn tree_lag_sample(&mut self, id: &MsgId<PI>, lag: Duration) {
        self.tree_lag.sample(lag);
        self.streams.lag_sample(id, lag);
    }

    /// Undoes a GRAFT that turned out not to be needed: the grafted peer goes back to lazy on
    /// both sides.
    fn revert_graft<R: Rng>(&mut self, ctx: &mut Ctx<'_, PI, R>, grafted: PI) {
        if !self.eager.contains(&grafted) {
            return;
        }
        self.counters.grafts_reverted += 1;
        self.make_lazy(&grafted);
        self.send(ctx, grafted, Body::Prune);
    }

    fn repaired_insert(
        &mut self,
        id: MsgId<PI>,
        announced_at: Duration,
        grafted: Option<PI>,
        config: &Config,
    ) {
        while self.repaired.len() >= config.missing_cap.max(1) {
            // Full: forget the oldest (its eager copy is long overdue or never coming).
            let Some(oldest) = self
                .repaired
                .iter()
                .min_by_key(|(_, (at, _))| *at)
                .map(|(id, _)| id.clone())
            else {
                break;
            };
            self.repaired.remove(&oldest);
        }
        self.repaired.insert(id, (announced_at, grafted));
    }

    /// PlumTree's optimisation: a lazy peer reached the message in far fewer hops than our
    /// eager parent did — swap the two links.
    fn maybe_optimize<R: Rng>(&mut self, ctx: &mut Ctx<'_, PI, R>, from: &PI, e: &IHaveEntry<PI>) {
        let threshold = ctx.config.optimization_threshold;
        if threshold == 0
            || !self.active.contains(from)
            || self.eager.contains(from)
            || self.suppressed(from, ctx.now)
        {
            return;
        }
        let Some(c) = self.cache.get(&e.id) else {
            return;
        };
        let Some(parent) = c.from.clone() else {
            return;
        };
        let via_lazy = e.hops.saturating_add(1);
        if c.kind != PushKind::Eager
            || parent == *from
            || !self.eager.contains(&parent)
            || c.hops < via_lazy.saturating_add(threshold)
        {
            return;
        }
        self.counters.optimizations += 1;
        self.send(ctx, from.clone(), Body::Graft { id: None });
        self.make_eager(from, ctx.now);
        self.make_lazy(&parent);
        self.send(ctx, parent, Body::Prune);
        // Remember the shorter path so later IHAVEs of this message compare against it.
        self.cache.update_path(&e.id, from.clone(), via_lazy);
    }

    /// A copy of `id` from `from`: if we had asked `from` for it, the round trip is a sample of
    /// its repair timeout — measured to when the copy reached the node (the node's own inbound
    /// backlog is not the peer's doing), late answers included (a late peer must teach us to
    /// wait longer). Anti-entropy pushes are not answers. Returns the request it answered.
    fn answered<R: Rng>(
        &mut self,
        ctx: &mut Ctx<'_, PI, R>,
        id: &MsgId<PI>,
        from: &PI,
        kind: PushKind,
    ) -> Option<Request> {
        if kind == PushKind::AntiEntropy || self.requests.is_empty() {
            return None;
        }
        let r = self.requests.remove(&(id.clone(), from.clone()))?;
        rtt_sample(ctx, from, ctx.arrived.saturating_sub(r.asked_at));
        Some(r)
    }

    /// The promise of `peer` to send `id` is due: broken unless its copy came — judged only
    /// once our own inbound backlog has moved past the deadline.
    fn on_promise_timer<R: Rng>(&mut self, ctx: &mut Ctx<'_, PI, R>, id: MsgId<PI>, peer: PI) {
        let key = (id, peer);
        let Some(r) = self.requests.get(&key).copied() else {
            return; // answered (or forgotten)
        };
        if let Some(wait) = backlog_wait(ctx, r.deadline) {
            if ctx.now >= r.deadline {
                self.counters.backlog_deferrals += 1;
            }
            let (id, peer) = key;
            self.timer(ctx, wait, TimerKind::Promise(id, peer));
            return;
        }
        self.requests.remove(&key);
        self.broken_promise(ctx, &key.1);
    }

    fn on_missing_timer<R: Rng>(&mut self, ctx: &mut Ctx<'_, PI, R>, id: MsgId<PI>) {
        if self.streams.contains(&id) {
            self.missing.remove(&id);
            return;
        }
        let now = ctx.now;
        let Some(m) = self.missing.get_mut(&id) else {
            return;
        };
        // Ask anew only once the node has processed what reached it before the wait ended:
        // the copy we wait for may be sitting in our own inbound queue (asking elsewhere would
        // only add load). The asked peer's promise is judged on its own timer.
        if let Some(wait) = backlog_wait(ctx, m.due) {
            if now >= m.due {
                self.counters.backlog_deferrals += 1;
            }
            self.timer(ctx, wait, TimerKind::Missing(id));
            return;
        }
        m.asked = None;
        // Best announcer: not suppressed first, then fewest hops, then first come.
        let choice = m
            .announcers
            .iter()
            .enumerate()
            .min_by_key(|(i, (p, hops))| (is_suppressed(&self.suppressions, p, now), *hops, *i))
            .map(|(i, (p, _))| (i, p.clone()));
        let rto = choice
            .as_ref()
            .map(|(_, p)| repair_timeout(ctx, p))
            .unwrap_or(ctx.config.graft_timeout_2);
        if let Some((i, p)) = &choice {
            m.announcers.remove(*i);
            m.asked = Some(p.clone());
            m.due = now.saturating_add(rto);
        }
        let Some((_, peer)) = choice else {
            self.missing.remove(&id);
            self.counters.repair_gave_up += 1;
            return;
        };
        let graftable = self.active.contains(&peer)
            && !self.eager.contains(&peer)
            && !self.suppressed(&peer, now);
        if graftable {
            self.make_eager(&peer, now);
            self.send(
                ctx,
                peer.clone(),
                Body::Graft {
                    id: Some(id.clone()),
                },
            );
        } else {
            self.send(ctx, peer.clone(), Body::IWant(vec![id.clone()]));
        }
        // The promise: its copy within `promise_timeout`, at least twice its repair wait and
        // twice the transport's round trip to it (a request over a slow path — ours or its —
        // is not a broken promise; the path is judged by the slow-peer detector instead).
        let path = ctx
            .path_rtts
            .get(&peer)
            .filter(|r| r.at.saturating_add(ctx.config.rtt_fresh) >= now)
            .map_or(Duration::ZERO, |r| r.srtt);
        let patience = ctx
            .config
            .promise_timeout
            .max(rto.saturating_mul(2))
            .max(path.saturating_mul(2));
        let request = Request {
            asked_at: now,
            grafted: graftable,
            deadline: now.saturating_add(patience),
        };
        let key = (id.clone(), peer.clone());
        requests_insert(&mut self.requests, key, request, ctx.config);
        self.timer(ctx, patience, TimerKind::Promise(id.clone(), peer));
        self.timer(ctx, rto, TimerKind::Missing(id));
    }

    fn answer<R: Rng>(
        &mut self,
        ctx: &mut Ctx<'_, PI, R>,
        to: &PI,
        id: &MsgId<PI>,
        kind: PushKind,
    ) {
        let Some(c) = self.cache.get(id) else {
            return;
        };
        let body = Body::Gossip(Gossip {
            id: id.clone(),
            hops: c.hops.saturating_add(1),
            kind,
            published_at_ms: c.published_at_ms,
            payload: c.payload.clone(),
        });
        self.send(ctx, to.clone(), body);
    }

    fn on_iwant<R: Rng>(&mut self, ctx: &mut Ctx<'_, PI, R>, from: PI, ids: Vec<MsgId<PI>>) {
        for id in ids {
            self.answer(ctx, &from, &id, PushKind::Repair);
        }
    }

    fn on_graft<R: Rng>(&mut self, ctx: &mut Ctx<'_, PI, R>, from: PI, id: Option<MsgId<PI>>) {
        self.make_eager(&from, ctx.now);
        if let Some(id) = id {
            self.answer(ctx, &from, &id, PushKind::Repair);
        }
    }

    fn on_prune(&mut self, from: PI) {
        self.make_lazy(&from);
    }

    // ------------------------------------------------------------------ anti-entropy

    fn digest<R: Rng>(&self, ctx: &mut Ctx<'_, PI, R>) -> (Vec<AeEntry<PI>>, bool) {
        let limits = &ctx.config.limits;
        let complete = self.streams.len() <= limits.max_digest_entries;
        let chosen: Vec<_> = if complete {
            self.streams.iter().collect()
        } else {
            self.streams
                .iter()
                .choose_multiple(ctx.rng, limits.max_digest_entries)
        };
        let entries = chosen
            .into_iter()
            .map(|((origin, epoch), s)| AeEntry {
                origin: origin.clone(),
                epoch: *epoch,
                high: s.high(),
                missing: s.gaps(limits.max_digest_gaps),
            })
            .collect();
        (entries, complete)
    }

    fn on_ae_timer<R: Rng>(&mut self, ctx: &mut Ctx<'_, PI, R>) {
        let next = jitter(ctx.rng, ctx.config.ae_interval);
        self.timer(ctx, next, TimerKind::AntiEntropy);
        let now = ctx.now;
        let Some(peer) = self
            .active
            .iter()
            .filter(|p| !self.suppressed(p, now))
            .choose(ctx.rng)
            .cloned()
        else {
            return;
        };
        let (entries, complete) = self.digest(ctx);
        self.send(
            ctx,
            peer,
            Body::AeDigest {
                entries,
                complete,
                reply: false,
            },
        );
    }

    fn on_ae_digest<R: Rng>(
        &mut self,
        ctx: &mut Ctx<'_, PI, R>,
        from: PI,
        entries: Vec<AeEntry<PI>>,
        complete: bool,
        reply: bool,
    ) {
        if !self.silenced(&from, ctx.now) {
            self.ae_push(ctx, &from, &entries, complete);
        }
        if !reply {
            let (entries, complete) = self.digest(ctx);
            self.send(
                ctx,
                from,
                Body::AeDigest {
                    entries,
                    complete,
                    reply: true,
                },
            );
        }
    }

    /// Sends `to` the cached messages its digest shows it lacks (old enough not to be in
    /// flight on the tree), at most `ae_max_push`.
    fn ae_push<R: Rng>(
        &mut self,
        ctx: &mut Ctx<'_, PI, R>,
        to: &PI,
        entries: &[AeEntry<PI>],
        complete: bool,
    ) {
        let now = ctx.now;
        let min_age = ctx.config.ae_min_age;
        let budget = ctx.config.ae_max_push;
        let settled = |c: &Cached<PI>| c.received_at.saturating_add(min_age) <= now;
        let mut ids: Vec<MsgId<PI>> = Vec::new();
        let mut listed: BTreeSet<(&PI, u64)> = BTreeSet::new();
        'entries: for e in entries {
            listed.insert((&e.origin, e.epoch));
            for &seq in &e.missing {
                if ids.len() >= budget {
                    break 'entries;
                }
                let id = MsgId {
                    origin: e.origin.clone(),
                    epoch: e.epoch,
                    seq,
                };
                if self.cache.get(&id).is_some_and(settled) {
                    ids.push(id);
                }
            }
            for (id, c) in self
                .cache
                .stream_from(&e.origin, e.epoch, e.high.saturating_add(1))
            {
                if ids.len() >= budget {
                    break 'entries;
                }
                if id.seq > e.high && settled(c) {
                    ids.push(id.clone());
                }
            }
        }
        if complete && ids.len() < budget {
            'streams: for ((origin, epoch), _) in self.streams.iter() {
                if listed.contains(&(origin, *epoch)) || origin == to {
                    continue;
                }
                for (id, c) in self.cache.stream_from(origin, *epoch, 1) {
                    if ids.len() >= budget {
                        break 'streams;
                    }
                    if settled(c) {
                        ids.push(id.clone());
                    }
                }
            }
        }
        for id in ids {
            self.answer(ctx, to, &id, PushKind::AntiEntropy);
        }
    }

    // ------------------------------------------------------------------ scoring

    pub fn on_send_outcome<R: Rng>(
        &mut self,
        ctx: &mut Ctx<'_, PI, R>,
        peer: &PI,
        outcome: SendOutcome,
    ) {
        let half_life = ctx.config.score_half_life;
        match outcome {
            SendOutcome::Delivered => {
                if let Some(s) = self.scores.get_mut(peer) {
                    s.decay(ctx.now, half_life);
                    s.on_delivered();
                }
            }
            SendOutcome::Timeout => {
                self.counters.send_timeouts += 1;
                if !self.active.contains(peer) && !self.scores.contains_key(peer) {
                    return;
                }
                let s = self
                    .scores
                    .entry(peer.clone())
                    .or_insert_with(|| Score::new(ctx.now));
                s.decay(ctx.now, half_life);
                s.on_timeout();
                self.evaluate(ctx, peer);
            }
            SendOutcome::Failed => {
                self.counters.send_failures += 1;
                self.on_peer_down(ctx, peer);
            }
        }
    }

    fn broken_promise<R: Rng>(&mut self, ctx: &mut Ctx<'_, PI, R>, peer: &PI) {
        self.counters.broken_promises += 1;
        if let Some(s) = self.scores.get_mut(peer) {
            s.decay(ctx.now, ctx.config.score_half_life);
            if s.on_broken_promise(ctx.now, ctx.config.promise_episode) {
                self.evaluate(ctx, peer);
            }
        }
    }

    /// Valid traffic from a peer: it is alive and draining. Raises its score, and lifts a
    /// suppression that has run at least half its course.
    fn note_inbound<R: Rng>(&mut self, ctx: &mut Ctx<'_, PI, R>, from: &PI) {
        let now = ctx.now;
        if let Some(s) = self.scores.get_mut(from) {
            s.decay(now, ctx.config.score_half_life);
            s.on_inbound();
        }
        // A peer judged slow stays cooled: its traffic shows it is alive, not that it is fast.
        let slow = self.scores.get(from).is_some_and(Score::is_slow);
        let lift = !slow
            && self.suppressions.get(from).is_some_and(|s| match s.until {
                Some(until) if until > now => {
                    let half = until.saturating_sub(s.last_strike) / 2;
                    now >= s.last_strike.saturating_add(half)
                }
                _ => false,
            });
        if lift {
            self.recover(ctx, from);
        }
    }

    fn evaluate<R: Rng>(&mut self, ctx: &mut Ctx<'_, PI, R>, peer: &PI) {
        let Some(value) = self.scores.get(peer).map(Score::value) else {
            return;
        };
        if self.suppressed(peer, ctx.now) {
            // Cooled for its latency and now failing as well (timeouts, broken promises):
            // from here on it is sent nothing, as any peer that does not drain.
            let health = Cause::of(self.scores.get(peer)) == Cause::Health;
            if health && value < ctx.config.suppress_below {
                if let Some(s) = self.suppressions.get_mut(peer) {
                    s.cause = Cause::Health;
                }
                self.ihave_queue.remove(peer);
            }
            return;
        }
        if value < ctx.config.suppress_below {
            self.suppress(ctx, peer);
        } else if value < ctx.config.demote_below && self.eager.contains(peer) {
            self.make_lazy(peer);
            self.counters.demotions += 1;
            self.event(ctx, TopicEvent::Demoted(peer.clone()));
        }
    }

    /// The slow-peer detector, once per maintenance tick: every neighbor with a fresh
    /// transport RTT is compared with the median RTT of the node's other peers (fresh ones,
    /// every topic's); one far above it ([`score::is_slow`]) is charged `slow_penalty` of
    /// `slowness` and evaluated — demoted, then suppressed, like a peer that times out.
    fn judge_latency<R: Rng>(&mut self, ctx: &mut Ctx<'_, PI, R>) {
        let c = ctx.config;
        let now = ctx.now;
        let fresh = |r: &PathRtt| r.at.saturating_add(c.rtt_fresh) >= now;
        let mut sorted: Vec<Duration> = ctx
            .path_rtts
            .values()
            .filter(|r| fresh(r))
            .map(|r| r.srtt)
            .collect();
        sorted.sort_unstable();
        let peers: Vec<PI> = self.active.iter().cloned().collect();
        for peer in peers {
            let latency = ctx.path_rtts.get(&peer).filter(|r| fresh(r)).and_then(|r| {
                score::reference_rtt(&sorted, r.srtt, c.slow_min_peers)
                    .map(|reference| (r.srtt, reference))
            });
            let slow = c.slow_penalty > 0.0
                && latency.is_some_and(|(rtt, reference)| score::is_slow(rtt, reference, c));
            let suppressed = self.suppressed(&peer, now);
            let Some(s) = self.scores.get_mut(&peer) else {
                continue;
            };
            // A suppressed peer is not charged (its suppression runs its course), but the
            // verdict is kept: it decides whether inbound traffic may lift the suppression.
            let penalty = if suppressed { 0.0 } else { c.slow_penalty };
            s.on_latency(latency, slow, penalty);
            if slow && !suppressed {
                self.counters.slow_verdicts += 1;
                self.evaluate(ctx, &peer);
            }
        }
    }

    fn suppress<R: Rng>(&mut self, ctx: &mut Ctx<'_, PI, R>, peer: &PI) {
        let now = ctx.now;
        let cause = Cause::of(self.scores.get(peer));
        let entry = self
            .suppressions
            .entry(peer.clone())
            .or_insert(Suppression {
                until: None,
                strikes: 0,
                last_strike: now,
                cause,
            });
        entry.cause = cause;
        entry.strikes = entry.strikes.saturating_add(1);
        let strikes = entry.strikes;
        let duration = Suppression::backoff(ctx.config, strikes);
        entry.until = Some(now + duration);
        entry.last_strike = now;
        self.counters.suppressions += 1;
        self.make_lazy(peer);
        if cause == Cause::Health {
            self.ihave_queue.remove(peer);
        }
        self.event(
            ctx,
            TopicEvent::Suppressed {
                peer: peer.clone(),
                duration,
                strikes,
            },
        );
        // Bounded: evict the entry with the oldest strike (never the one just added).
        while self.suppressions.len() > ctx.config.suppress_cap.max(1) {
            let Some(oldest) = self
                .suppressions
                .iter()
                .filter(|(p, _)| *p != peer)
                .min_by_key(|(_, s)| s.last_strike)
                .map(|(p, _)| p.clone())
            else {
                break;
            };
            self.suppressions.remove(&oldest);
            if !self.active.contains(&oldest) {
                self.scores.remove(&oldest);
            }
        }
    }

    fn recover<R: Rng>(&mut self, ctx: &mut Ctx<'_, PI, R>, peer: &PI) {
        if let Some(s) = self.suppressions.get_mut(peer) {
            s.until = None;
        }
        if let Some(score) = self.scores.get_mut(peer) {
            score.decay(ctx.now, ctx.config.score_half_life);
            score.reset_after_suppression();
        }
        self.counters.recoveries += 1;
        self.event(ctx, TopicEvent::Recovered(peer.clone()));
    }

    // ------------------------------------------------------------------ timers

    pub fn on_timer<R: Rng>(&mut self, ctx: &mut Ctx<'_, PI, R>, kind: TimerKind<PI>) {
        match kind {
            TimerKind::Maintenance => self.maintain(ctx),
            TimerKind::AntiEntropy => self.on_ae_timer(ctx),
            TimerKind::FlushIHave => self.flush_ihave(ctx),
            TimerKind::Missing(id) => self.on_missing_timer(ctx, id),
            TimerKind::Promise(id, peer) => self.on_promise_timer(ctx, id, peer),
        }
    }

    fn maintain<R: Rng>(&mut self, ctx: &mut Ctx<'_, PI, R>) {
        let now = ctx.now;
        let next = jitter(ctx.rng, ctx.config.maintenance_interval);
        self.timer(ctx, next, TimerKind::Maintenance);
        self.cache.expire(now, ctx.config.cache_ttl);
        // An eager copy later than twice the longest graft wait is not coming.
        let horizon = ctx.config.graft_timeout_max.saturating_mul(2);
        self.repaired
            .retain(|_, (at, _)| at.saturating_add(horizon) > now);

        // Cooling: lapse, then forget.
        let lapsed: Vec<PI> = self
            .suppressions
            .iter()
            .filter(|(_, s)| s.until.is_some_and(|u| u <= now))
            .map(|(p, _)| p.clone())
            .collect();
        for p in lapsed {
            self.recover(ctx, &p);
        }
        let forget = ctx.config.strike_forget;
        self.suppressions
            .retain(|_, s| s.until.is_some() || s.last_strike.saturating_add(forget) > now);
        let (active, suppressions) = (&self.active, &self.suppressions);
        self.scores
            .retain(|p, _| active.contains(p) || suppressions.contains_key(p));
        let half_life = ctx.config.score_half_life;
        for s in self.scores.values_mut() {
            s.decay(now, half_life);
        }
        self.judge_latency(ctx);

        // Membership.
        self.refill_attempts = 0;
        if let Some((peer, deadline)) = self.pending_neighbor.clone()
            && deadline <= now
        {
            self.pending_neighbor = None;
            self.passive.remove(&peer);
        }
        if self.active.is_empty() && self.passive.is_empty() && self.pending_neighbor.is_none() {
            let me = ctx.me;
            if let Some(contact) = self
                .bootstrap
                .iter()
                .filter(|p| *p != me)
                .choose(ctx.rng)
                .cloned()
            {
                self.send(ctx, contact.clone(), Body::Join);
                self.add_active(ctx, contact);
            }
        }
        self.refill(ctx);
        // Shuffle on schedule, and on every tick while the passive view is less than half
        // full (a newly joined node has almost no repair candidates until it shuffles).
        let underfilled = self.passive.len() < ctx.config.passive_cap / 2;
        if now >= self.next_shuffle || underfilled {
            self.next_shuffle = now + jitter(ctx.rng, ctx.config.shuffle_interval);
            self.shuffle(ctx);
        }
    }

    // ------------------------------------------------------------------ input

    pub fn on_message<R: Rng>(&mut self, ctx: &mut Ctx<'_, PI, R>, from: PI, body: Body<PI>) {
        self.counters.count_received(body.kind());
        self.note_inbound(ctx, &from);
        match body {
            Body::Join => self.on_join(ctx, from),
            Body::ForwardJoin { peer, ttl } => self.on_forward_join(ctx, from, peer, ttl),
            Body::Neighbor { high_priority } => self.on_neighbor(ctx, from, high_priority),
            Body::NeighborReply { accepted } => self.on_neighbor_reply(ctx, from, accepted),
            Body::Disconnect { alive } => self.on_disconnect(ctx, from, alive),
            Body::Shuffle { origin, peers, ttl } => self.on_shuffle(ctx, from, origin, peers, ttl),
            Body::ShuffleReply { peers } => self.on_shuffle_reply(ctx, peers),
            Body::Gossip(g) => self.on_gossip(ctx, from, g),
            Body::IHave(entries) => self.on_ihave(ctx, from, entries),
            Body::IWant(ids) => self.on_iwant(ctx, from, ids),
            Body::Graft { id } => self.on_graft(ctx, from, id),
            Body::Prune => self.on_prune(from),
            Body::AeDigest {
                entries,
                complete,
                reply,
            } => self.on_ae_digest(ctx, from, entries, complete, reply),
        }
    }

    // ------------------------------------------------------------------ diagnostics

    pub fn sizes(&self) -> Sizes {
        Sizes {
            active: self.active.len(),
            passive: self.passive.len(),
            eager: self.eager.len(),
            lazy: self.lazy.len(),
            cache: self.cache.len(),
            streams: self.streams.len(),
            missing: self.missing.len(),
            scores: self.scores.len(),
            suppressions: self.suppressions.len(),
            ihave_queued: self.ihave_queue.values().map(Vec::len).sum(),
            requests: self.requests.len(),
            repaired: self.repaired.len(),
        }
    }

    pub fn snapshot(&self, now: Duration, config: &Config) -> TopicSnapshot<PI> {
        let scores = self
            .scores
            .iter()
            .map(|(p, s)| {
                let mut s = s.clone();
                s.decay(now, config.score_half_life);
                PeerScoreSnapshot {
                    peer: p.clone(),
                    score: s.value(),
                    components: s,
                }
            })
            .collect();
        let suppressed = self
            .suppressions
            .iter()
            .filter_map(|(p, s)| {
                let until = s.until.filter(|u| *u > now)?;
                Some(SuppressionSnapshot {
                    peer: p.clone(),
                    remaining: until.saturating_sub(now),
                    strikes: s.strikes,
                    cause: s.cause,
                })
            })
            .collect();
        TopicSnapshot {
            topic: self.id.clone(),
            active: self.active.iter().cloned().collect(),
            passive: self.passive.iter().cloned().collect(),
            eager: self.eager.iter().cloned().collect(),
            lazy: self.lazy.iter().cloned().collect(),
            scores,
            suppressed,
            known_peers: self.active.len() + self.passive.len(),
            sizes: self.sizes(),
            counters: self.counters,
        }
    }
}
