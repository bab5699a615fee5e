//! Scenarios over the simulated network and the one JSON report they produce.

use std::{collections::BTreeMap, fmt, str::FromStr, time::Duration};

use rand::{Rng, seq::IteratorRandom, seq::SliceRandom};
use serde::Serialize;

use super::{
    attribution::Redundancy,
    network::{NetConfig, Network, SimPeer},
};
use crate::{Counters, MsgId, Sizes, TopicId};

/// Which workload to run.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Scenario {
    /// One sender, one message per round.
    Single,
    /// A random sender per round.
    Multi,
    /// Single sender; after some rounds half the nodes crash; the rest must be reached again.
    Churn,
    /// Random senders while the network is split in two; after heal every message must
    /// reach every node (anti-entropy).
    Partition,
    /// Single sender publishing bursts while 10% of nodes are slow consumers; every other
    /// node must get everything, the slow ones get cooled and recovered.
    Slow,
}

impl FromStr for Scenario {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        match s {
            "single" => Ok(Self::Single),
            "multi" => Ok(Self::Multi),
            "churn" => Ok(Self::Churn),
            "partition" => Ok(Self::Partition),
            "slow" => Ok(Self::Slow),
            other => Err(format!(
                "unknown scenario {other:?} (expected single, multi, churn, partition or slow)"
            )),
        }
    }
}

impl fmt::Display for Scenario {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Self::Single => "single",
            Self::Multi => "multi",
            Self::Churn => "churn",
            Self::Partition => "partition",
            Self::Slow => "slow",
        })
    }
}

/// Documented bound: after 50% of nodes crash, every remaining node is reached again from
/// this post-churn round on (and in every later round).
pub const CHURN_RECOVERY_ROUNDS: usize = 2;
/// Single-sender RMR target (issue 14, N = 1000, 10–50 ms links; issue 4 asked for 0.15).
pub const TARGET_RMR: f64 = 0.07;
/// Multi-sender RMR target (issue 14, N = 1000, 10–50 ms links).
pub const TARGET_MULTI_RMR: f64 = 0.35;
/// Single-sender target for the maximum last delivery hop.
pub const TARGET_LDH_MAX: u16 = 16;
/// The RMR and LDH targets are stated for N = 1000; larger swarms are judged by their bounded
/// views and per-node work (LDH grows with log N).
pub const TARGET_MAX_PEERS: usize = 1000;
/// Reference implementation: iroh-gossip's simulator (`proto/sim.rs`, v0.101.0), GossipSingle
/// n = 1000, 10–50 ms links, 30 rounds, seeds 0–7, built from crates.io and run on this machine
/// next to ours: the mean over seeds of each seed's mean RMR (its own summary table prints the
/// *minimum* over seeds in its "mean" row, 0.07 here). Same RMR formula as [`rmr`].
pub const REFERENCE_RMR: f64 = 0.074;
/// Reference LDH, GossipSingle: mean over seeds of the mean over rounds of the per-round
/// maximum, converted to our hop count (the reference counts rounds from 0 at the first
/// receiver: 13.75 there, + 1).
pub const REFERENCE_LDH: f64 = 14.75;
/// Reference RMR, GossipMulti (as [`REFERENCE_RMR`]; its summary prints 0.43, the minimum).
pub const REFERENCE_MULTI_RMR: f64 = 0.485;
/// Reference LDH, GossipMulti, in our hop count (20.86 + 1).
pub const REFERENCE_MULTI_LDH: f64 = 21.86;

/// Relative message redundancy of one round, exactly as the reference simulator (iroh-gossip's
/// `proto/sim.rs`, `report_gossip_round`) computes it: payload copies received by all nodes
/// during the round ÷ (deliveries − 1), minus one. (The PlumTree paper's m/(n−1) − 1 with n
/// the nodes reached, i.e. copies ÷ deliveries − 1, is ≈ 0.001 lower at N = 1000.) A round
/// with at most one delivery divides by one.
pub fn rmr(copies: u64, deliveries: u64) -> f64 {
    if deliveries == 0 {
        return 0.0;
    }
    copies as f64 / deliveries.saturating_sub(1).max(1) as f64 - 1.0
}

/// Parameters of one run.
#[derive(Debug, Clone, Serialize)]
pub struct SimParams {
    /// Nodes.
    pub peers: usize,
    /// Workload.
    pub scenario: Scenario,
    /// Seed of everything.
    pub seed: u64,
    /// Measured gossip rounds (scenarios add their own phases around them).
    pub rounds: usize,
    /// Network model and protocol config.
    pub net: NetConfig,
    /// Virtual time after bootstrap before the first round.
    pub warmup: Duration,
    /// A round that has not reached everyone after this long counts what is left as missed.
    pub round_timeout: Duration,
    /// Budget of simulation events; exhausting it means the run never settled.
    pub max_events: u64,
}

impl SimParams {
    /// Defaults for a scenario and size.
    pub fn new(peers: usize, scenario: Scenario, seed: u64) -> Self {
        Self {
            peers,
            scenario,
            seed,
            rounds: 30,
            net: NetConfig::default(),
            warmup: Duration::from_secs(5),
            round_timeout: Duration::from_secs(10),
            max_events: 2_000 * (peers as u64 + 100) * 60,
        }
    }
}

/// Why a run could not produce a report.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum SimError {
    /// Fewer than two peers.
    #[error("need at least 2 peers, got {0}")]
    TooFewPeers(usize),
    /// The event budget ran out: something never settles.
    #[error(
        "run did not settle: {events} events processed during {phase} (replay with --seed {seed})"
    )]
    Unsettled {
        /// The seed to replay.
        seed: u64,
        /// Events processed.
        events: u64,
        /// Which phase.
        phase: &'static str,
    },
}

/// Max and 99th percentile over nodes.
#[derive(Debug, Clone, Copy, Default, PartialEq, Serialize)]
pub struct Dist {
    /// Smallest value.
    pub min: f64,
    /// Largest value.
    pub max: f64,
    /// 99th percentile (nearest rank).
    pub p99: f64,
    /// Mean.
    pub mean: f64,
}

impl Dist {
    fn of(mut values: Vec<f64>) -> Self {
        if values.is_empty() {
            return Self::default();
        }
        values.sort_by(f64::total_cmp);
        let n = values.len();
        let rank = ((0.99 * n as f64).ceil() as usize).clamp(1, n);
        Self {
            min: values[0],
            max: values[n - 1],
            p99: values[rank - 1],
            mean: values.iter().sum::<f64>() / n as f64,
        }
    }

    fn merge_max(&mut self, other: Dist) {
        self.min = if self.max == 0.0 {
            other.min
        } else {
            self.min.min(other.min)
        };
        self.max = self.max.max(other.max);
        self.p99 = self.p99.max(other.p99);
        self.mean = self.mean.max(other.mean);
    }
}

/// Last delivery hop: per round the largest hop count of any delivery.
#[derive(Debug, Clone, Copy, Default, PartialEq, Serialize)]
pub struct Ldh {
    /// Mean over rounds of the per-round maximum.
    pub mean: f64,
    /// Largest per-round maximum.
    pub max: u16,
}

/// One measured round.
#[derive(Debug, Clone, Default, PartialEq, Serialize)]
pub struct RoundReport {
    /// Phase label (`steady`, `after_churn`, `partitioned`, `healed`, ...).
    pub phase: &'static str,
    /// Deliveries still missing when the round ended.
    pub missed: u64,
    /// Relative message redundancy of the round (the reference's formula, see [`rmr`]).
    pub rmr: f64,
    /// The round's payload copies by how they came and, when redundant, by cause.
    pub redundancy: Redundancy,
    /// Largest hop count delivered in the round.
    pub ldh: u16,
    /// Virtual time from publish to last delivery.
    pub duration_ms: f64,
}

/// Protocol caps that bound per-node state (copied from the config for the report).
#[derive(Debug, Clone, Copy, PartialEq, Serialize)]
pub struct Caps {
    /// Active view (eager and lazy sets are subsets).
    pub active: usize,
    /// Passive view.
    pub passive: usize,
    /// Message cache.
    pub cache: usize,
    /// Tracked streams.
    pub streams: usize,
    /// Missing-message tracker.
    pub missing: usize,
    /// Suppression entries.
    pub suppressions: usize,
}

/// Churn-specific results.
#[derive(Debug, Clone, Default, PartialEq, Serialize)]
pub struct ChurnReport {
    /// Nodes removed.
    pub removed: usize,
    /// Remaining nodes whose active view was empty right after the crash was detected.
    pub isolated_after_crash: usize,
    /// First post-churn round (1-based) from which every round reached every remaining node.
    pub recovered_after_rounds: Option<usize>,
    /// The documented bound for `recovered_after_rounds`.
    pub bound_rounds: usize,
    /// Missed deliveries per post-churn round.
    pub missed_per_round: Vec<u64>,
}

/// Partition-specific results.
#[derive(Debug, Clone, Default, PartialEq, Serialize)]
pub struct PartitionReport {
    /// Messages published while partitioned.
    pub published_during: usize,
    /// Deliveries those messages still lacked when the partition healed.
    pub missing_at_heal: u64,
    /// Deliveries still lacking after the recovery window.
    pub missing_after_recovery: u64,
    /// Virtual time from heal until every partition message reached every node.
    pub recovery_ms: Option<f64>,
    /// Gaps filled by anti-entropy (messages first obtained from a digest answer).
    pub ae_recovered: u64,
}

/// Slow-consumer-specific results.
#[derive(Debug, Clone, Default, PartialEq, Serialize)]
pub struct SlowReport {
    /// Slow nodes.
    pub slow_nodes: usize,
    /// Missed deliveries at healthy nodes (must be 0).
    pub missed_healthy: u64,
    /// Missed deliveries at slow nodes after the settle period.
    pub missed_slow: u64,
    /// Suppressions started across the swarm.
    pub suppressions: u64,
    /// Suppressions that lapsed / were lifted.
    pub recoveries: u64,
    /// Sends reported as timed out.
    pub send_timeouts: u64,
    /// Slow nodes still suppressed by some peer at the end.
    pub still_suppressed_at_end: usize,
}

/// The one JSON report of a run.
#[derive(Debug, Clone, Serialize)]
pub struct Report {
    /// Nodes.
    pub peers: usize,
    /// Workload.
    pub scenario: Scenario,
    /// Seed (replay with it).
    pub seed: u64,
    /// Measured rounds.
    pub rounds: usize,
    /// Messages published in measured rounds.
    pub publishes: usize,
    /// Deliveries missing at the end of their round, summed over measured rounds that the
    /// scenario expects to be complete (churn: rounds from recovery on; partition: rounds
    /// outside the partition).
    pub missed: u64,
    /// Deliveries of any published message still missing after the final settle period.
    pub missed_final: u64,
    /// Messages delivered twice to one node (must be 0).
    pub double_deliveries: u64,
    /// Mean relative message redundancy over measured rounds, computed per round as the
    /// reference simulator does (see [`rmr`]).
    pub rmr: f64,
    /// The RMR split by cause of the redundant copies: per round each cause's copies over
    /// (deliveries − 1), averaged over measured rounds like `rmr` (so the parts add up to it,
    /// give or take copies that crossed a round boundary).
    pub rmr_by_cause: BTreeMap<&'static str, f64>,
    /// Payload copies of all measured rounds by how they came and, when redundant, by cause.
    pub redundancy: Redundancy,
    /// Last delivery hop.
    pub ldh: Ldh,
    /// Mean virtual time from publish to last delivery per round, ms.
    pub duration_ms: f64,
    /// Eager push set size over nodes (worst sample over rounds).
    pub eager_degree: Dist,
    /// Lazy push set size over nodes (worst sample over rounds).
    pub lazy_view: Dist,
    /// Active view size over nodes.
    pub active_view: Dist,
    /// Passive view size over nodes.
    pub passive_view: Dist,
    /// Dissemination messages (payloads, IHAVE, IWANT, GRAFT, PRUNE) a node sent per
    /// publish, over nodes.
    pub sends_per_publish_per_node: Dist,
    /// Every message (background membership and anti-entropy included) per publish.
    pub all_sends_per_publish_per_node: Dist,
    /// Largest size of each bounded structure on any node at the end.
    pub state_max: Sizes,
    /// Caps those sizes must stay under.
    pub caps: Caps,
    /// Protocol counters summed over nodes.
    pub totals: Counters,
    /// Simulation events processed.
    pub events: u64,
    /// Virtual time simulated, ms.
    pub virtual_ms: u64,
    /// Per-round results.
    pub round_reports: Vec<RoundReport>,
    /// Churn results.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub churn: Option<ChurnReport>,
    /// Partition results.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub partition: Option<PartitionReport>,
    /// Slow-consumer results.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub slow: Option<SlowReport>,
    /// Reference numbers for the single-sender scenario.
    pub reference: Reference,
    /// True when every property checked for this scenario holds.
    pub passed: bool,
    /// Properties that failed.
    pub failures: Vec<String>,
}

/// The reference numbers and the targets for the scenario (single-sender ones for every
/// scenario but `multi`), and this run's ratios against them (below 1.0: better).
#[derive(Debug, Clone, Copy, PartialEq, Serialize)]
pub struct Reference {
    /// Reference RMR.
    pub rmr: f64,
    /// Reference LDH (mean over rounds of the per-round maximum, in our hop count).
    pub ldh: f64,
    /// Target RMR bound (at N ≤ 1000).
    pub target_rmr: f64,
    /// Target LDH max bound (single sender, N ≤ 1000).
    pub target_ldh_max: u16,
    /// This run's RMR ÷ the reference RMR.
    pub rmr_ratio: f64,
    /// This run's LDH mean ÷ the reference LDH.
    pub ldh_ratio: f64,
}

impl Reference {
    /// The reference and targets for a scenario, with the ratios of a run's RMR and LDH mean.
    pub fn for_run(scenario: Scenario, rmr: f64, ldh_mean: f64) -> Self {
        let (ref_rmr, ref_ldh, target_rmr) = match scenario {
            Scenario::Multi => (REFERENCE_MULTI_RMR, REFERENCE_MULTI_LDH, TARGET_MULTI_RMR),
            _ => (REFERENCE_RMR, REFERENCE_LDH, TARGET_RMR),
        };
        Self {
            rmr: ref_rmr,
            ldh: ref_ldh,
            target_rmr,
            target_ldh_max: TARGET_LDH_MAX,
            rmr_ratio: rmr / ref_rmr,
            ldh_ratio: ldh_mean / ref_ldh,
        }
    }
}

/// Delivery tracking of one published message.
struct Track {
    /// Per node: 0 not expected, 1 pending and waited for by the round, 3 pending but not
    /// waited for (other partition side, slow consumer), 2 delivered.
    state: Vec<u8>,
    /// Expected deliveries still pending.
    remaining: u64,
    /// Pending deliveries the current round waits for (same partition group).
    remaining_wait: u64,
    published_at: Duration,
    round: usize,
}

struct Runner {
    p: SimParams,
    net: Network,
    topic: TopicId,
    tracks: BTreeMap<MsgId<SimPeer>, Track>,
    double: u64,
    rounds: Vec<RoundReport>,
    /// Index of rounds whose misses count in `missed`.
    counted: Vec<bool>,
    round_ldh: Vec<u16>,
    round_last: Vec<Duration>,
    round_delivered: Vec<u64>,
    sends: Vec<u64>,
    all_sends: Vec<u64>,
    publishes: usize,
    eager: Dist,
    lazy: Dist,
    active: Dist,
    passive: Dist,
}

impl Runner {
    fn new(p: SimParams) -> Result<Self, SimError> {
        if p.peers < 2 {
            return Err(SimError::TooFewPeers(p.peers));
        }
        let net = Network::new(p.peers, p.net.clone(), p.seed);
        let topic = TopicId::new("sim").map_err(|_| SimError::TooFewPeers(0))?;
        let n = p.peers;
        Ok(Self {
            p,
            net,
            topic,
            tracks: BTreeMap::new(),
            double: 0,
            rounds: Vec::new(),
            counted: Vec::new(),
            round_ldh: Vec::new(),
            round_last: Vec::new(),
            round_delivered: Vec::new(),
            sends: vec![0; n],
            all_sends: vec![0; n],
            publishes: 0,
            eager: Dist::default(),
            lazy: Dist::default(),
            active: Dist::default(),
            passive: Dist::default(),
        })
    }

    fn unsettled(&self, phase: &'static str) -> SimError {
        SimError::Unsettled {
            seed: self.p.seed,
            events: self.net.events(),
            phase,
        }
    }

    /// Runs until `until` (virtual), absorbing deliveries.
    fn run_until(&mut self, until: Duration, phase: &'static str) -> Result<(), SimError> {
        while self.net.step(until) {
            self.absorb();
            if self.net.events() >= self.p.max_events {
                return Err(self.unsettled(phase));
            }
        }
        self.absorb();
        Ok(())
    }

    fn absorb(&mut self) {
        for d in self.net.deliveries.drain(..) {
            let Some(t) = self.tracks.get_mut(&d.id) else {
                continue;
            };
            let Some(slot) = t.state.get_mut(d.node as usize) else {
                continue;
            };
            match *slot {
                1 | 3 => {
                    if *slot == 1 {
                        t.remaining_wait = t.remaining_wait.saturating_sub(1);
                    }
                    *slot = 2;
                    t.remaining -= 1;
                    if let Some(l) = self.round_ldh.get_mut(t.round) {
                        *l = (*l).max(d.hops);
                    }
                    if let Some(l) = self.round_last.get_mut(t.round) {
                        *l = (*l).max(d.at.saturating_sub(t.published_at));
                    }
                    if let Some(c) = self.round_delivered.get_mut(t.round) {
                        *c += 1;
                    }
                }
                2 => self.double += 1,
                _ => {}
            }
        }
    }

    fn bootstrap(&mut self) -> Result<(), SimError> {
        let topic = self.topic.clone();
        self.net.subscribe(0, &topic, vec![]);
        for i in 1..self.p.peers {
            let contact = self.net.rng().random_range(0..i) as SimPeer;
            self.net.subscribe(i as SimPeer, &topic, vec![contact]);
        }
        let until = self.net.now() + self.p.warmup;
        self.run_until(until, "warmup")
    }

    fn alive(&self) -> Vec<SimPeer> {
        self.net
            .nodes()
            .iter()
            .enumerate()
            .filter(|(_, n)| n.alive)
            .map(|(i, _)| i as SimPeer)
            .collect()
    }

    fn counters_of(&self, node: SimPeer) -> Counters {
        self.net
            .nodes()
            .get(node as usize)
            .and_then(|n| n.state.topic_counters(&self.topic))
            .unwrap_or_default()
    }

    fn sample_views(&mut self) {
        let mut e = Vec::new();
        let mut l = Vec::new();
        let mut a = Vec::new();
        let mut p = Vec::new();
        for n in self.net.nodes().iter().filter(|n| n.alive) {
            if let Some(s) = n.state.sizes(&self.topic) {
                e.push(s.eager as f64);
                l.push(s.lazy as f64);
                a.push(s.active as f64);
                p.push(s.passive as f64);
            }
        }
        self.eager.merge_max(Dist::of(e));
        self.lazy.merge_max(Dist::of(l));
        self.active.merge_max(Dist::of(a));
        self.passive.merge_max(Dist::of(p));
    }

    /// Publishes one message from each sender and runs until the round completes or times out.
    fn round(
        &mut self,
        senders: &[SimPeer],
        phase: &'static str,
        counted: bool,
    ) -> Result<RoundReport, SimError> {
        let round = self.rounds.len();
        self.round_ldh.push(0);
        self.round_last.push(Duration::ZERO);
        self.round_delivered.push(0);
        let n = self.p.peers;
        let before: Vec<Counters> = (0..n as SimPeer).map(|i| self.counters_of(i)).collect();
        let redundancy_before = self.net.redundancy();
        let start = self.net.now();
        let topic = self.topic.clone();
        let mut ids = Vec::new();
        for (k, &s) in senders.iter().enumerate() {
            let payload = format!("r{round}m{k}").into_bytes();
            let Some(id) = self.net.publish(s, &topic, payload) else {
                continue;
            };
            let sender_group = self.net.nodes().get(s as usize).map(|x| x.group);
            let mut state = vec![0u8; n];
            let mut remaining = 0;
            let mut remaining_wait = 0;
            let partitioned = phase == "partitioned";
            for (i, node) in self.net.nodes().iter().enumerate() {
                if node.alive && i != s as usize {
                    remaining += 1;
                    let waited = !node.slow && (!partitioned || Some(node.group) == sender_group);
                    if waited {
                        state[i] = 1;
                        remaining_wait += 1;
                    } else {
                        state[i] = 3;
                    }
                }
            }
            self.tracks.insert(
                id.clone(),
                Track {
                    state,
                    remaining,
                    remaining_wait,
                    published_at: start,
                    round,
                },
            );
            ids.push(id);
            self.publishes += usize::from(counted);
        }
        self.absorb();
        let deadline = start + self.p.round_timeout;
        // Run until everything this round waits for is delivered, or the deadline.
        loop {
            let waiting: u64 = ids
                .iter()
                .filter_map(|id| self.tracks.get(id))
                .map(|t| t.remaining_wait)
                .sum();
            if waiting == 0 {
                break;
            }
            if !self.net.step(deadline) {
                break;
            }
            self.absorb();
            if self.net.events() >= self.p.max_events {
                return Err(self.unsettled(phase));
            }
        }
        // Let in-flight duplicates and IHAVEs land before the next round (20 ms grace), so
        // this round's redundancy is counted in this round.
        let grace = self.net.now() + Duration::from_millis(20);
        self.run_until(grace, phase)?;
        let missed: u64 = ids
            .iter()
            .filter_map(|id| self.tracks.get(id))
            .map(|t| t.remaining_wait)
            .sum();
        let mut payloads = 0u64;
        for i in 0..n as SimPeer {
            let after = self.counters_of(i);
            let b = before.get(i as usize).copied().unwrap_or_default();
            payloads += after.payload_received - b.payload_received;
            if counted {
                if let Some(s) = self.sends.get_mut(i as usize) {
                    *s += after.dissemination_sent() - b.dissemination_sent();
                }
                if let Some(s) = self.all_sends.get_mut(i as usize) {
                    *s += after.all_sent() - b.all_sent();
                }
            }
        }
        let delivered = self.round_delivered.get(round).copied().unwrap_or(0);
        let redundancy = self.net.redundancy().since(&redundancy_before);
        self.sample_views();
        let report = RoundReport {
            phase,
            missed,
            rmr: rmr(payloads, delivered),
            redundancy,
            ldh: self.round_ldh.get(round).copied().unwrap_or(0),
            duration_ms: self
                .round_last
                .get(round)
                .copied()
                .unwrap_or_default()
                .as_secs_f64()
                * 1e3,
        };
        self.rounds.push(report.clone());
        self.counted.push(counted);
        Ok(report)
    }

    fn pending_total(&self, filter: impl Fn(&Track) -> bool) -> u64 {
        self.tracks
            .values()
            .filter(|t| filter(t))
            .map(|t| t.remaining)
            .sum()
    }

    fn finish(mut self, extra: Extra) -> Result<Report, SimError> {
        // Settle: let anti-entropy fill anything a round left behind.
        let until = self.net.now() + Duration::from_secs(5);
        self.run_until(until, "settle")?;
        let missed_final = self.pending_total(|_| true);
        let mut totals = Counters::default();
        let mut state_max = Sizes::default();
        for n in self.net.nodes().iter().filter(|n| n.alive) {
            if let Some(c) = n.state.topic_counters(&self.topic) {
                totals.add(&c);
            }
            if let Some(s) = n.state.sizes(&self.topic) {
                state_max.active = state_max.active.max(s.active);
                state_max.passive = state_max.passive.max(s.passive);
                state_max.eager = state_max.eager.max(s.eager);
                state_max.lazy = state_max.lazy.max(s.lazy);
                state_max.cache = state_max.cache.max(s.cache);
                state_max.streams = state_max.streams.max(s.streams);
                state_max.missing = state_max.missing.max(s.missing);
                state_max.scores = state_max.scores.max(s.scores);
                state_max.suppressions = state_max.suppressions.max(s.suppressions);
                state_max.ihave_queued = state_max.ihave_queued.max(s.ihave_queued);
                state_max.requests = state_max.requests.max(s.requests);
                state_max.repaired = state_max.repaired.max(s.repaired);
            }
        }
        let measured: Vec<&RoundReport> = self
            .rounds
            .iter()
            .zip(&self.counted)
            .filter(|(_, c)| **c)
            .map(|(r, _)| r)
            .collect();
        let rounds = measured.len();
        let mean = |f: &dyn Fn(&RoundReport) -> f64| {
            if rounds == 0 {
                0.0
            } else {
                measured.iter().map(|r| f(r)).sum::<f64>() / rounds as f64
            }
        };
        let rmr = mean(&|r| r.rmr);
        let mut redundancy = Redundancy::default();
        let mut rmr_by_cause: BTreeMap<&'static str, f64> = BTreeMap::new();
        for r in &measured {
            redundancy = redundancy.plus(&r.redundancy);
            let red = &r.redundancy;
            let delivered = red.new_eager + red.new_repair + red.new_ae + red.new_detour;
            let per = delivered.saturating_sub(1).max(1) as f64;
            for (cause, count) in r.redundancy.causes() {
                *rmr_by_cause.entry(cause).or_default() += count as f64 / per / rounds as f64;
            }
        }
        let ldh = Ldh {
            mean: mean(&|r| f64::from(r.ldh)),
            max: measured.iter().map(|r| r.ldh).max().unwrap_or(0),
        };
        let duration_ms = mean(&|r| r.duration_ms);
        let missed = measured.iter().map(|r| r.missed).sum();
        let pubs = self.publishes.max(1) as f64;
        let alive: Vec<usize> = self
            .net
            .nodes()
            .iter()
            .enumerate()
            .filter(|(_, n)| n.alive)
            .map(|(i, _)| i)
            .collect();
        let per = |v: &Vec<u64>| {
            Dist::of(
                alive
                    .iter()
                    .filter_map(|i| v.get(*i))
                    .map(|s| *s as f64 / pubs)
                    .collect(),
            )
        };
        let cfg = &self.p.net.proto;
        let caps = Caps {
            active: cfg.active_cap,
            passive: cfg.passive_cap,
            cache: cfg.cache_cap,
            streams: cfg.streams_cap,
            missing: cfg.missing_cap,
            suppressions: cfg.suppress_cap,
        };
        let mut report = Report {
            peers: self.p.peers,
            scenario: self.p.scenario,
            seed: self.p.seed,
            rounds,
            publishes: self.publishes,
            missed,
            missed_final,
            double_deliveries: self.double,
            rmr,
            rmr_by_cause,
            redundancy,
            ldh,
            duration_ms,
            eager_degree: self.eager,
            lazy_view: self.lazy,
            active_view: self.active,
            passive_view: self.passive,
            sends_per_publish_per_node: per(&self.sends),
            all_sends_per_publish_per_node: per(&self.all_sends),
            state_max,
            caps,
            totals,
            events: self.net.events(),
            virtual_ms: u64::try_from(self.net.now().as_millis()).unwrap_or(u64::MAX),
            round_reports: self.rounds.clone(),
            churn: extra.churn,
            partition: extra.partition,
            slow: extra.slow,
            reference: Reference::for_run(self.p.scenario, rmr, ldh.mean),
            passed: true,
            failures: Vec::new(),
        };
        check(&mut report);
        Ok(report)
    }
}

#[derive(Default)]
struct Extra {
    churn: Option<ChurnReport>,
    partition: Option<PartitionReport>,
    slow: Option<SlowReport>,
}

/// Checks the properties of the scenario and fills `passed` / `failures`.
fn check(r: &mut Report) {
    let mut f = Vec::new();
    if r.double_deliveries > 0 {
        f.push(format!("{} double deliveries", r.double_deliveries));
    }
    let active = r.caps.active as f64;
    if r.eager_degree.max > active {
        f.push(format!(
            "eager degree {} above cap {active}",
            r.eager_degree.max
        ));
    }
    if r.lazy_view.max > active {
        f.push(format!("lazy view {} above cap {active}", r.lazy_view.max));
    }
    if r.state_max.passive > r.caps.passive {
        f.push(format!(
            "passive view {} above cap {}",
            r.state_max.passive, r.caps.passive
        ));
    }
    if r.missed > 0 {
        f.push(format!(
            "{} deliveries missed in rounds that must be complete",
            r.missed
        ));
    }
    match r.scenario {
        Scenario::Single if r.peers <= TARGET_MAX_PEERS => {
            if r.rmr > TARGET_RMR {
                f.push(format!("rmr {:.3} above {TARGET_RMR}", r.rmr));
            }
            if r.ldh.max > TARGET_LDH_MAX {
                f.push(format!("ldh max {} above {TARGET_LDH_MAX}", r.ldh.max));
            }
            if r.missed_final > 0 {
                f.push(format!("{} deliveries never happened", r.missed_final));
            }
        }
        Scenario::Multi if r.peers <= TARGET_MAX_PEERS => {
            if r.rmr > TARGET_MULTI_RMR {
                f.push(format!("rmr {:.3} above {TARGET_MULTI_RMR}", r.rmr));
            }
            if r.missed_final > 0 {
                f.push(format!("{} deliveries never happened", r.missed_final));
            }
        }
        Scenario::Single | Scenario::Multi => {
            if r.missed_final > 0 {
                f.push(format!("{} deliveries never happened", r.missed_final));
            }
        }
        Scenario::Churn => {
            if let Some(c) = &r.churn {
                match c.recovered_after_rounds {
                    Some(k) if k <= c.bound_rounds => {}
                    Some(k) => f.push(format!(
                        "churn recovery took {k} rounds, bound {}",
                        c.bound_rounds
                    )),
                    None => f.push("remaining nodes never all reached again after churn".into()),
                }
            }
        }
        Scenario::Partition => {
            if let Some(p) = &r.partition
                && p.missing_after_recovery > 0
            {
                f.push(format!(
                    "{} deliveries of partition-time messages missing after heal",
                    p.missing_after_recovery
                ));
            }
            if r.missed_final > 0 {
                f.push(format!("{} deliveries never happened", r.missed_final));
            }
        }
        Scenario::Slow => {
            if let Some(s) = &r.slow {
                if s.missed_healthy > 0 {
                    f.push(format!(
                        "{} deliveries missed at healthy nodes",
                        s.missed_healthy
                    ));
                }
                if s.suppressions == 0 {
                    f.push("no slow peer was ever suppressed".into());
                }
                if s.recoveries == 0 {
                    f.push("no suppression ever lapsed or was lifted".into());
                }
                if s.missed_slow > 0 {
                    f.push(format!(
                        "{} deliveries still missing at slow nodes after they drained",
                        s.missed_slow
                    ));
                }
                if s.still_suppressed_at_end > 0 {
                    f.push(format!(
                        "{} slow nodes still suppressed after they drained",
                        s.still_suppressed_at_end
                    ));
                }
            }
        }
    }
    r.passed = f.is_empty();
    r.failures = f;
}

/// Runs one scenario and returns its report (deterministic for given params).
pub fn run(p: SimParams) -> Result<Report, SimError> {
    let mut r = Runner::new(p)?;
    r.bootstrap()?;
    let rounds = r.p.rounds;
    let sender = r.net.rng().random_range(0..r.p.peers) as SimPeer;
    match r.p.scenario {
        Scenario::Single => {
            for _ in 0..rounds {
                r.round(&[sender], "steady", true)?;
            }
            r.finish(Extra::default())
        }
        Scenario::Multi => {
            for _ in 0..rounds {
                let alive = r.alive();
                let s = alive.iter().copied().choose(r.net.rng()).unwrap_or(sender);
                r.round(&[s], "steady", true)?;
            }
            r.finish(Extra::default())
        }
        Scenario::Churn => run_churn(r, sender),
        Scenario::Partition => run_partition(r),
        Scenario::Slow => run_slow(r, sender),
    }
}

fn run_churn(mut r: Runner, sender: SimPeer) -> Result<Report, SimError> {
    let before = (r.p.rounds / 3).max(3);
    for _ in 0..before {
        r.round(&[sender], "steady", true)?;
    }
    let mut victims: Vec<SimPeer> = r.alive().into_iter().filter(|&i| i != sender).collect();
    victims.shuffle(r.net.rng());
    victims.truncate(r.p.peers / 2);
    let topic = r.topic.clone();
    for &v in &victims {
        r.net.remove(v, &topic);
    }
    // Crash detection takes one link latency; look at who is left stranded.
    let detect = r.net.now() + r.p.net.latency_max + Duration::from_millis(1);
    r.run_until(detect, "churn")?;
    let isolated = r
        .net
        .nodes()
        .iter()
        .filter(|n| n.alive && n.state.sizes(&topic).is_some_and(|s| s.active == 0))
        .count();
    let after = r.p.rounds.max(before + 2);
    let mut missed_per_round = Vec::new();
    for _ in 0..after {
        let rep = r.round(&[sender], "after_churn", false)?;
        missed_per_round.push(rep.missed);
    }
    // Recovered from round k: rounds k.. all complete.
    let recovered_after_rounds = (0..missed_per_round.len())
        .find(|&k| missed_per_round.iter().skip(k).all(|m| *m == 0))
        .map(|k| k + 1);
    // Rounds from recovery on are the measured ones.
    if let Some(k) = recovered_after_rounds {
        let first = r.counted.len() - missed_per_round.len() + (k - 1);
        for c in r.counted.iter_mut().skip(first) {
            *c = true;
        }
    }
    let churn = ChurnReport {
        removed: victims.len(),
        isolated_after_crash: isolated,
        recovered_after_rounds,
        bound_rounds: CHURN_RECOVERY_ROUNDS,
        missed_per_round,
    };
    r.finish(Extra {
        churn: Some(churn),
        ..Extra::default()
    })
}

fn run_partition(mut r: Runner) -> Result<Report, SimError> {
    let steady = (r.p.rounds / 6).max(2);
    let during = (r.p.rounds / 3).max(4);
    for _ in 0..steady {
        let s = r.alive().into_iter().choose(r.net.rng()).unwrap_or(0);
        r.round(&[s], "steady", true)?;
    }
    let groups: Vec<u8> = (0..r.p.peers)
        .map(|_| u8::from(r.net.rng().random_bool(0.5)))
        .collect();
    r.net.partition(&groups);
    let first_partition_round = r.rounds.len();
    for _ in 0..during {
        let s = r.alive().into_iter().choose(r.net.rng()).unwrap_or(0);
        r.round(&[s], "partitioned", false)?;
    }
    let during_filter = |t: &Track| t.round >= first_partition_round;
    let missing_at_heal = r.pending_total(during_filter);
    r.net.heal();
    let healed_at = r.net.now();
    let ae_before = total_counter(&r, |c| c.ae_recovered);
    // Recovery window: anti-entropy must fill every gap. Step in 100 ms slices.
    let window = Duration::from_secs(120);
    let mut recovery_ms = None;
    while r.net.now() < healed_at + window {
        if r.pending_total(during_filter) == 0 {
            recovery_ms = Some((r.net.now() - healed_at).as_secs_f64() * 1e3);
            break;
        }
        let next = r.net.now() + Duration::from_millis(100);
        r.run_until(next, "heal")?;
    }
    if recovery_ms.is_none() && r.pending_total(during_filter) == 0 {
        recovery_ms = Some((r.net.now() - healed_at).as_secs_f64() * 1e3);
    }
    let missing_after_recovery = r.pending_total(during_filter);
    let ae_recovered = total_counter(&r, |c| c.ae_recovered) - ae_before;
    for _ in 0..steady {
        let s = r.alive().into_iter().choose(r.net.rng()).unwrap_or(0);
        r.round(&[s], "healed", true)?;
    }
    let partition = PartitionReport {
        published_during: during,
        missing_at_heal,
        missing_after_recovery,
        recovery_ms,
        ae_recovered,
    };
    r.finish(Extra {
        partition: Some(partition),
        ..Extra::default()
    })
}

fn total_counter(r: &Runner, f: impl Fn(&Counters) -> u64) -> u64 {
    r.net
        .nodes()
        .iter()
        .filter_map(|n| n.state.topic_counters(&r.topic))
        .map(|c| f(&c))
        .sum()
}

fn run_slow(mut r: Runner, sender: SimPeer) -> Result<Report, SimError> {
    let mut slow: Vec<SimPeer> = r.alive().into_iter().filter(|&i| i != sender).collect();
    slow.shuffle(r.net.rng());
    slow.truncate((r.p.peers / 10).max(1));
    for &s in &slow {
        r.net.set_slow(s, true);
    }
    let burst = 10;
    let senders = vec![sender; burst];
    let mut missed_healthy = 0;
    for _ in 0..r.p.rounds {
        // Rounds wait for the healthy nodes only; what they miss at round end counts.
        missed_healthy += r.round(&senders, "burst", true)?.missed;
    }
    // Slow nodes drain; peers recover them.
    let until = r.net.now() + Duration::from_secs(30);
    r.run_until(until, "drain")?;
    let missed_slow: u64 = r
        .tracks
        .values()
        .map(|t| t.state.iter().filter(|s| **s == 3).count() as u64)
        .sum();
    let now = r.net.now();
    let still_suppressed_at_end = slow
        .iter()
        .filter(|&&s| {
            r.net.nodes().iter().any(|n| {
                n.alive
                    && n.state
                        .snapshot(&r.topic, now)
                        .is_some_and(|snap| snap.suppressed.iter().any(|x| x.peer == s))
            })
        })
        .count();
    let slow_report = SlowReport {
        slow_nodes: slow.len(),
        missed_healthy,
        missed_slow,
        suppressions: total_counter(&r, |c| c.suppressions),
        recoveries: total_counter(&r, |c| c.recoveries),
        send_timeouts: total_counter(&r, |c| c.send_timeouts),
        still_suppressed_at_end,
    };
    r.finish(Extra {
        slow: Some(slow_report),
        ..Extra::default()
    })
}
