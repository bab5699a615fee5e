//! Fixtures for tests and benchmarks: a healthy fleet's observations and mutators that break
//! them in one precise way each (a drop, a gap, a restart, a failed pair, …).
//!
//! Public so the proofs crate, the `soak` CLI tests and the benchmark build the same fixtures.
//! Healthy means: every bar of both built-in profiles holds.

use std::collections::BTreeMap;

use crate::model::{
    Check, CoolingCheck, FanoutResult, FaultEvidence, FirstAttemptCheck, HealCheck, MetricNames,
    Metrics, NodeRef, Observations, PairOutcome, PhaseAResult, RunInfo, Sample, SampleData,
    SampleOutcome, ScenarioRecord, ScenarioStatus, SubscriberResult, WindowRecord,
};
use crate::names;

/// Resident memory of a healthy fixture node, bytes (plus up to 256 KiB of jitter).
pub const HEALTHY_RSS_BYTES: f64 = 50_331_648.0;
/// Open descriptors of a healthy fixture node (plus 0–2 of jitter).
pub const HEALTHY_OPEN_FDS: f64 = 24.0;

/// Every counter a healthy node reports and its increase per sample interval.
pub const HEALTHY_COUNTERS: &[(&str, u64)] = &[
    ("dm_sent_total", 5),
    ("dm_acked_total", 5),
    ("dm_ack_timeouts_total", 0),
    ("dm_retries_total", 0),
    ("dm_delivered_total", 5),
    ("dm_duplicates_total", 0),
    ("dm_conflicts_total", 0),
    ("dm_busy_total", 0),
    ("dm_unreachable_total", 0),
    ("recv_pump_produced_total", 60),
    ("recv_pump_dequeued_total", 60),
    ("recv_pump_dropped_full_total", 0),
    ("dispatcher_completed_total", 1000),
    ("dispatcher_timeouts_total", 0),
    ("peer_send_timeouts_total", 0),
    ("outbound_high_water_total", 0),
    ("load_shed_total", 0),
    ("invalid_datagrams_total", 0),
    ("handshake_failures_total", 0),
    ("auth_timeouts_total", 0),
    ("invalid_frames_total", 0),
    ("connections_established_total", 0),
    ("connections_replaced_total", 0),
    ("reconnect_attempts_total", 0),
    ("gossip_published_total", 1),
    ("gossip_delivered_total", 6),
    ("gossip_duplicates_total", 2),
    ("gossip_subscriber_dropped_total", 0),
    ("gossip_suppressions_total", 0),
    ("api_bad_requests_total", 0),
];

/// Builds a healthy fleet's observations.
#[derive(Debug, Clone)]
pub struct FleetBuilder {
    /// Number of nodes (`node-0` …).
    pub nodes: usize,
    /// Number of windows.
    pub windows: usize,
    /// Window length, ms.
    pub window_ms: u64,
    /// Sample interval, ms.
    pub interval_ms: u64,
    /// Start of window 0, unix ms.
    pub start_ms: u64,
    /// Record a Phase A matrix and a fanout burst in every window.
    pub workloads: bool,
    /// Dispatcher completions per node per sample interval (default 1000).
    pub dispatch_per_interval: u64,
    /// Leading windows marked warm-up (default 0).
    pub warmup: usize,
    /// Record the plan (`planned_windows`, `window_ms`) in `RunInfo`, as `soak run` does
    /// (default true).
    pub plan: bool,
}

impl FleetBuilder {
    /// `nodes` nodes, `windows` windows of 60 s, a sample every 10 s, starting at
    /// 2026-11-22T01:09:46Z, with Phase A and fanout in every window.
    pub fn new(nodes: usize, windows: usize) -> FleetBuilder {
        FleetBuilder {
            nodes,
            windows,
            window_ms: 60_000,
            interval_ms: 10_000,
            start_ms: 1_795_309_786_000,
            workloads: true,
            dispatch_per_interval: 1_000,
            warmup: 0,
            plan: true,
        }
    }

    /// Node name of index `i`.
    pub fn node(i: usize) -> String {
        format!("node-{i}")
    }

    /// The observations. Samples run from one interval before window 0 to one after the last
    /// window, with every node's lifetime counters starting well above zero (the process was
    /// up before the run).
    pub fn build(&self) -> Observations {
        let names: Vec<String> = (0..self.nodes).map(Self::node).collect();
        let end = self.start_ms + self.windows as u64 * self.window_ms;
        let mut samples = BTreeMap::new();
        // One shared name list for every sample's counters and one for the gauges, as a proof
        // reader builds them.
        let per_interval: Metrics<u64> = HEALTHY_COUNTERS.iter().copied().collect();
        let mut gauge_names = None;
        for (i, name) in names.iter().enumerate() {
            let mut series = Vec::new();
            let mut at = self.start_ms - self.interval_ms;
            let mut k = 0u64;
            while at <= end + self.interval_ms {
                // Lifetime offset: counters did not start at zero with the run.
                let counters = per_interval
                    .values()
                    .iter()
                    .zip(per_interval.names().iter())
                    .map(|(&per, name)| {
                        let per = if name == "dispatcher_completed_total" {
                            self.dispatch_per_interval
                        } else {
                            per
                        };
                        1_000 * per + (k + 1) * per
                    })
                    .collect();
                let counters =
                    Metrics::from_parts(per_interval.names().clone(), counters).unwrap_or_default();
                // Flat process metrics with a little deterministic jitter (a healthy node).
                let rss = HEALTHY_RSS_BYTES + ((k * 7_919 + i as u64 * 104_729) % 262_144) as f64;
                let fds = HEALTHY_OPEN_FDS + (k % 3) as f64;
                let peers = self.nodes.saturating_sub(1) as f64;
                let gauges = BTreeMap::from([
                    ("peers_established".to_string(), peers),
                    ("peers_pending".to_string(), 0.0),
                    ("active_view".to_string(), peers.min(5.0)),
                    ("passive_view".to_string(), (peers - 5.0).max(0.0)),
                    ("recv_pump_depth".to_string(), 0.0),
                    ("recv_pump_max_depth".to_string(), 3.0),
                    ("inbox_depth".to_string(), 0.0),
                    ("outbound_queue_max_depth".to_string(), 1.0),
                    ("dispatcher_worker_target".to_string(), 4.0),
                    ("dispatcher_inflight".to_string(), 0.0),
                    ("suppressed_topic_peers".to_string(), 0.0),
                    ("known_topic_peers".to_string(), 2.0 * peers),
                    (names::PROCESS_RESIDENT_MEMORY_BYTES.to_string(), rss),
                    (names::PROCESS_OPEN_FDS.to_string(), fds),
                ]);
                series.push(Sample {
                    at_ms: at,
                    outcome: SampleOutcome::Ok(SampleData {
                        by_peer: Default::default(),
                        instance_id: format!("inst-{i}-a"),
                        counters,
                        gauges: {
                            let names = gauge_names
                                .get_or_insert_with(|| MetricNames::new(gauges.keys().cloned()));
                            Metrics::from_parts(names.clone(), gauges.into_values().collect())
                                .unwrap_or_default()
                        },
                    }),
                });
                at += self.interval_ms;
                k += 1;
            }
            samples.insert(name.clone(), series);
        }
        let windows = (0..self.windows)
            .map(|w| {
                let start = self.start_ms + w as u64 * self.window_ms;
                let mut scenarios = Vec::new();
                let (mut phase_a, mut fanout) = (None, None);
                if self.workloads {
                    scenarios.push(completed("baseline"));
                    scenarios.push(completed("fanout_burst"));
                    phase_a = Some(full_matrix(&names, w as u64));
                    fanout = Some(full_fanout(&names, w));
                }
                WindowRecord {
                    index: w as u32,
                    start_ms: start,
                    end_ms: start + self.window_ms,
                    warmup: w < self.warmup,
                    phase_a,
                    fanout,
                    scenarios,
                }
            })
            .collect();
        Observations {
            residue: Vec::new(),
            run: RunInfo {
                run_id: "20261122T010946Z-fixture".into(),
                sample_interval_ms: self.interval_ms,
                inventory_hosts: None,
                planned_windows: self.plan.then_some(self.windows as u32),
                window_ms: self.plan.then_some(self.window_ms),
                nodes: names
                    .iter()
                    .enumerate()
                    .map(|(i, name)| NodeRef {
                        name: name.clone(),
                        peer_id: format!("{i:064x}"),
                    })
                    .collect(),
            },
            samples,
            windows,
            node_events: Vec::new(),
        }
    }
}

/// A completed scenario with no targets.
pub fn completed(name: &str) -> ScenarioRecord {
    ScenarioRecord {
        fault: None,
        name: name.to_string(),
        status: ScenarioStatus::Completed,
        targets: Vec::new(),
        exemptions: Vec::new(),
        recovery: None,
    }
}

/// A fault scenario applied to `targets` whose evidence shows it effective and clean (kind
/// `partition` gets a heal, `delay` a cooling check and `idle` a first-attempt check, all
/// passing); break a field to build a failing fixture.
pub fn fault(name: &str, kind: &str, targets: &[&str]) -> ScenarioRecord {
    let shown = |summary: &str| Check::Shown {
        summary: summary.to_string(),
        evidence: serde_json::Value::Null,
    };
    let mut record = completed(name);
    record.targets = targets.iter().map(|t| t.to_string()).collect();
    record.fault = Some(Box::new(FaultEvidence {
        kind: kind.to_string(),
        backend: "node".into(),
        applied_at_ms: None,
        reverted_at_ms: None,
        effective: shown("probes showed it"),
        clean: shown("impairments gone, probes back to baseline"),
        recoveries: Vec::new(),
        heal: (kind == "partition").then(|| HealCheck {
            pairs: 2,
            healed_after_ms: Some(400),
            still_failing: Vec::new(),
        }),
        cooling: (kind == "delay").then(|| CoolingCheck {
            suppressed: Some(true),
            recovered: Some(true),
            detail: "suppressed by 3 neighbours, recovered".into(),
        }),
        first_attempt: (kind == "idle").then(|| FirstAttemptCheck {
            pairs: 12,
            first_try: 12,
            retried: Vec::new(),
        }),
    }));
    record
}

/// A full, delivered Phase A matrix over `names`.
pub fn full_matrix(names: &[String], salt: u64) -> PhaseAResult {
    let mut pairs = Vec::new();
    for (i, from) in names.iter().enumerate() {
        for (j, to) in names.iter().enumerate() {
            if i != j {
                pairs.push(PairOutcome {
                    from: from.clone(),
                    to: to.clone(),
                    outcome: "acked".into(),
                    delivered: true,
                    inbox_copies: Some(1),
                    latency_us: Some(800 + ((i * 31 + j * 17) as u64 + salt * 7) % 400),
                    attempts: 1,
                    error: None,
                });
            }
        }
    }
    PhaseAResult { pairs }
}

/// A complete fanout burst (20 messages from node 0, every node receives all).
pub fn full_fanout(names: &[String], window: usize) -> FanoutResult {
    FanoutResult {
        topic: format!("fanout-{window}"),
        messages: 20,
        bytes: 256,
        publishers: names.first().cloned().into_iter().collect(),
        subscribers: names
            .iter()
            .map(|n| SubscriberResult {
                node: n.clone(),
                expected: 20,
                received: 20,
                duplicates: 3,
                p50_us: Some(2_000),
                p99_us: Some(9_000),
                max_us: Some(12_000),
                error: None,
            })
            .collect(),
    }
}

fn data_mut(sample: &mut Sample) -> Option<&mut SampleData> {
    match &mut sample.outcome {
        SampleOutcome::Ok(data) => Some(data),
        SampleOutcome::Missing { .. } => None,
    }
}

/// Adds `amount` to `counter` of `node` in every sample at or after `at_ms` (an event that
/// happened just before `at_ms`).
pub fn bump(obs: &mut Observations, node: &str, counter: &str, at_ms: u64, amount: u64) {
    for sample in obs.samples.get_mut(node).into_iter().flatten() {
        if sample.at_ms >= at_ms
            && let Some(data) = data_mut(sample)
        {
            match data.counters.get_mut(counter) {
                Some(value) => *value += amount,
                None => {
                    data.counters.insert(counter.to_string(), amount);
                }
            }
        }
    }
}

/// Sets `gauge` of `node` to `value` in samples with `from_ms <= at < to_ms`.
pub fn set_gauge(
    obs: &mut Observations,
    node: &str,
    gauge: &str,
    from_ms: u64,
    to_ms: u64,
    value: f64,
) {
    for sample in obs.samples.get_mut(node).into_iter().flatten() {
        if sample.at_ms >= from_ms
            && sample.at_ms < to_ms
            && let Some(data) = data_mut(sample)
        {
            data.gauges.insert(gauge.to_string(), value);
        }
    }
}

/// Turns `node`'s samples with `from_ms <= at < to_ms` into failed attempts.
pub fn drop_samples(obs: &mut Observations, node: &str, from_ms: u64, to_ms: u64) {
    for sample in obs.samples.get_mut(node).into_iter().flatten() {
        if sample.at_ms >= from_ms && sample.at_ms < to_ms {
            sample.outcome = SampleOutcome::Missing {
                error: "connection refused".into(),
            };
        }
    }
}

/// Restarts `node` just before `at_ms`: from then on it reports `instance` and every counter
/// restarts from zero (increments after the restart are preserved).
pub fn restart(obs: &mut Observations, node: &str, at_ms: u64, instance: &str) {
    let Some(series) = obs.samples.get_mut(node) else {
        return;
    };
    let base: Metrics<u64> = series
        .iter()
        .filter(|s| s.at_ms < at_ms)
        .filter_map(|s| match &s.outcome {
            SampleOutcome::Ok(d) => Some(d.counters.clone()),
            SampleOutcome::Missing { .. } => None,
        })
        .next_back()
        .unwrap_or_default();
    for sample in series.iter_mut().filter(|s| s.at_ms >= at_ms) {
        if let Some(data) = data_mut(sample) {
            data.instance_id = instance.to_string();
            for (name, value) in data.counters.iter_mut() {
                *value -= base.get(name).copied().unwrap_or(0).min(*value);
            }
        }
    }
}

/// Adds a steady trend to `gauge` of `node` from `from_ms` on: `per_hour` units per hour of
/// time since `from_ms` (a leak when positive).
pub fn trend(obs: &mut Observations, node: &str, gauge: &str, from_ms: u64, per_hour: f64) {
    for sample in obs.samples.get_mut(node).into_iter().flatten() {
        let at = sample.at_ms;
        if at >= from_ms
            && let Some(data) = data_mut(sample)
            && let Some(v) = data.gauges.get_mut(gauge)
        {
            *v += per_hour * (at - from_ms) as f64 / 3_600_000.0;
        }
    }
}

/// Removes `gauge` from every sample of `node` (a node that does not report it).
pub fn remove_gauge(obs: &mut Observations, node: &str, gauge: &str) {
    for sample in obs.samples.get_mut(node).into_iter().flatten() {
        if let Some(data) = data_mut(sample) {
            data.gauges.remove(gauge);
        }
    }
}

/// Marks `delivered` pair `from → to` of window `w` with what the sender saw and how many
/// copies the receiver's inbox held (the runner's flag follows the raw facts).
pub fn set_pair(
    obs: &mut Observations,
    w: usize,
    from: &str,
    to: &str,
    outcome: &str,
    inbox_copies: Option<u32>,
) {
    let Some(pa) = obs.windows.get_mut(w).and_then(|w| w.phase_a.as_mut()) else {
        return;
    };
    for pair in pa.pairs.iter_mut().filter(|p| p.from == from && p.to == to) {
        pair.outcome = outcome.to_string();
        pair.inbox_copies = inbox_copies;
        pair.delivered = outcome == "acked" && inbox_copies == Some(1);
        if outcome != "acked" {
            pair.latency_us = None;
        }
    }
}

/// `(start_ms, end_ms)` of window `w`.
pub fn span(obs: &Observations, w: usize) -> (u64, u64) {
    (obs.windows[w].start_ms, obs.windows[w].end_ms)
}
