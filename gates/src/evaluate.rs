//! The evaluator: observations × profile → verdict. Pure and deterministic: no IO, clock, env
//! or randomness; iteration orders are fixed (node order of the run, then window order).
//!
//! Work is done in two passes so memory stays bounded by one node's samples: first every node's
//! series is reduced to per-window facts (counter deltas as intervals, gauge maxima and last
//! values, gaps, restarts, integrity errors), then every window is judged from those facts.

use std::collections::{BTreeMap, BTreeSet, HashMap};

use crate::model::{Exemption, Observations, PhaseAResult, ScenarioStatus, WindowRecord};
use crate::names;
use crate::outcome::Outcome;
use crate::profile::{AdaptivePolicy, Bar, Profile, Rule, Scope};
use crate::series::{Delta, Event, NodeSeries};
use crate::stats::poisson_upper_tail;
use crate::verdict::{
    BarResult, Baseline, GapRecord, IntegrityRecord, PhaseASummary, RestartRecord, ScenarioSummary,
    VERDICT_VERSION, Verdict, WindowVerdict,
};

/// Judges `observations` against `profile`. Pure: same inputs, same verdict, byte for byte.
pub fn evaluate(observations: &Observations, profile: &Profile) -> Verdict {
    let facts = Facts::collect(observations, profile);
    let mut windows: Vec<WindowVerdict> = observations
        .windows
        .iter()
        .enumerate()
        .map(|(w, record)| judge_window(&facts, profile, w, record))
        .collect();
    let mut soak_bars = vec![
        evidence_bar(&facts, profile),
        phase_a_aggregate(profile, &windows),
    ];
    soak_bars.extend(coverage_bar(observations));
    if let Some(policy) = &profile.adaptive {
        soak_bars.push(adaptive(&facts, policy, &mut windows));
    }
    for window in &mut windows {
        window.verdict = window_outcome(&window.bars);
    }
    let verdict = Outcome::worst_of(
        windows
            .iter()
            .map(|w| w.verdict)
            .chain(soak_bars.iter().map(|b| b.verdict)),
    );
    Verdict {
        verdict,
        gate: profile.name.clone(),
        verdict_version: VERDICT_VERSION,
        run_id: observations.run.run_id.clone(),
        nodes: facts.nodes.len(),
        windows,
        soak_bars,
        restarts: facts.restarts,
        gaps: facts.gaps,
        integrity_errors: facts.integrity,
    }
}

/// A window with no applicable bar judged nothing: UNKNOWN, never a vacuous GO.
fn window_outcome(bars: &[BarResult]) -> Outcome {
    if bars.is_empty() {
        Outcome::Unknown
    } else {
        Outcome::worst_of(bars.iter().map(|b| b.verdict))
    }
}

/// A value derived from each sample: a gauge, or a ratio of two gauges.
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
enum ValueKey {
    Gauge(String),
    Ratio(String, String),
}

/// Ratio edge cases of DESIGN §7: numerator 0 → 0; numerator > 0 with denominator 0 → ∞.
fn ratio(numerator: f64, denominator: f64) -> f64 {
    if numerator <= 0.0 {
        0.0
    } else if denominator <= 0.0 {
        f64::INFINITY
    } else {
        numerator / denominator
    }
}

/// Per-window facts about one derived value of one node.
#[derive(Debug, Clone, Copy, Default)]
struct ValueFact {
    max: Option<f64>,
    last: Option<f64>,
    gapped: bool,
}

/// Everything the bars need, reduced per node and window.
struct Facts<'a> {
    obs: &'a Observations,
    tolerance_ms: u64,
    nodes: Vec<String>,
    /// counter → [node][window]
    deltas: BTreeMap<String, Vec<Vec<Delta>>>,
    /// value → [node][window]
    values: BTreeMap<ValueKey, Vec<Vec<ValueFact>>>,
    /// [node][window] gaps of any good sample
    coverage: Vec<Vec<Vec<(u64, u64)>>>,
    /// [node][window] failed sampling attempts
    missing: Vec<Vec<usize>>,
    restarts: Vec<RestartRecord>,
    gaps: Vec<GapRecord>,
    integrity: Vec<IntegrityRecord>,
}

impl<'a> Facts<'a> {
    fn collect(obs: &'a Observations, profile: &Profile) -> Facts<'a> {
        let interval = obs.run.sample_interval_ms as f64;
        let tolerance_ms = (interval * profile.evidence.gap_factor).round() as u64;
        let mut nodes: Vec<String> = Vec::new();
        let mut seen = BTreeSet::new();
        for node in &obs.run.nodes {
            if seen.insert(node.name.clone()) {
                nodes.push(node.name.clone());
            }
        }
        // Nodes that were sampled but are missing from the node list still get judged.
        for name in obs.samples.keys() {
            if seen.insert(name.clone()) {
                nodes.push(name.clone());
            }
        }
        let (counters, values) = needed_metrics(profile);
        // Sorted (BTreeSet order) and unique, as `NodeSeries::columns` wants.
        let counter_names: Vec<&str> = counters.iter().map(String::as_str).collect();
        let gauge_names: Vec<&str> = values
            .iter()
            .flat_map(|key| match key {
                ValueKey::Gauge(g) => vec![g.as_str()],
                ValueKey::Ratio(n, d) => vec![n.as_str(), d.as_str()],
            })
            .collect::<BTreeSet<&str>>()
            .into_iter()
            .collect();
        let spans: Vec<(u64, u64)> = obs.windows.iter().map(|w| (w.start_ms, w.end_ms)).collect();
        let mut facts = Facts {
            obs,
            tolerance_ms,
            nodes: Vec::new(),
            deltas: counters.iter().map(|c| (c.clone(), Vec::new())).collect(),
            values: values.iter().map(|v| (v.clone(), Vec::new())).collect(),
            coverage: Vec::new(),
            missing: Vec::new(),
            restarts: Vec::new(),
            gaps: Vec::new(),
            integrity: Vec::new(),
        };
        let empty = Vec::new();
        let mut integrity_seen = BTreeSet::new();
        for name in &nodes {
            let samples = obs.samples.get(name).unwrap_or(&empty);
            let series = NodeSeries::new(samples);
            let times = series.good_times();
            let columns = series.columns(&counter_names, &gauge_names);
            let mut coverage = Vec::with_capacity(spans.len());
            let mut missing = Vec::with_capacity(spans.len());
            for (w, &(start, end)) in spans.iter().enumerate() {
                let gaps = crate::series::gaps(&times, start, end, tolerance_ms);
                for &(from, to) in &gaps {
                    facts.gaps.push(GapRecord {
                        node: name.clone(),
                        from_ms: from,
                        to_ms: to,
                        window: obs.windows[w].index,
                    });
                }
                coverage.push(gaps);
                missing.push(series.missing_in(start, end));
            }
            facts.coverage.push(coverage);
            facts.missing.push(missing);
            for event in series.restarts() {
                if let Event::Restart {
                    last_old_ms,
                    first_new_ms,
                    old,
                    new,
                } = event
                {
                    let window = obs
                        .windows
                        .iter()
                        .find(|w| first_new_ms > w.start_ms && first_new_ms <= w.end_ms)
                        .map(|w| w.index);
                    facts.restarts.push(RestartRecord {
                        node: name.clone(),
                        last_old_ms,
                        first_new_ms,
                        old_instance: old,
                        new_instance: new,
                        window,
                    });
                }
            }
            for (counter, column) in counters.iter().zip(&columns.counters) {
                let cs = series.counter_from_column(counter, column, tolerance_ms);
                for event in cs.events() {
                    if let Event::Integrity {
                        counter,
                        instance,
                        from_ms,
                        to_ms,
                        from_value,
                        to_value,
                    } = event
                    {
                        let key = (name.clone(), counter.clone(), *from_ms, *to_ms);
                        if integrity_seen.insert(key) {
                            facts.integrity.push(IntegrityRecord {
                                node: name.clone(),
                                counter: counter.clone(),
                                instance: instance.clone(),
                                from_ms: *from_ms,
                                to_ms: *to_ms,
                                from_value: *from_value,
                                to_value: *to_value,
                            });
                        }
                    }
                }
                let per_window = spans
                    .iter()
                    .map(|&(s, e)| cs.window_delta(s, e, tolerance_ms))
                    .collect();
                if let Some(v) = facts.deltas.get_mut(counter) {
                    v.push(per_window);
                }
            }
            for key in &values {
                let column = |name: &str| {
                    gauge_names
                        .binary_search(&name)
                        .ok()
                        .and_then(|i| columns.gauges.get(i))
                };
                let derived: Vec<Option<f64>> = match key {
                    ValueKey::Gauge(g) => column(g).cloned().unwrap_or_default(),
                    ValueKey::Ratio(n, d) => match (column(n), column(d)) {
                        (Some(a), Some(b)) => a
                            .iter()
                            .zip(b)
                            .map(|(x, y)| Some(ratio((*x)?, (*y)?)))
                            .collect(),
                        _ => Vec::new(),
                    },
                };
                let vs = series.values_from_column(&derived);
                let per_window = spans
                    .iter()
                    .map(|&(s, e)| ValueFact {
                        max: vs.max_in(s, e),
                        last: vs.last_in(s, e),
                        gapped: !vs.gaps(s, e, tolerance_ms).is_empty(),
                    })
                    .collect();
                if let Some(v) = facts.values.get_mut(key) {
                    v.push(per_window);
                }
            }
        }
        facts.nodes = nodes;
        facts
            .restarts
            .sort_by(|a, b| (a.first_new_ms, &a.node).cmp(&(b.first_new_ms, &b.node)));
        facts
            .gaps
            .sort_by(|a, b| (a.from_ms, a.window, &a.node).cmp(&(b.from_ms, b.window, &b.node)));
        facts
            .integrity
            .sort_by(|a, b| (a.to_ms, &a.node, &a.counter).cmp(&(b.to_ms, &b.node, &b.counter)));
        facts
    }

    fn delta(&self, counter: &str, node: usize, window: usize) -> Delta {
        self.deltas
            .get(counter)
            .and_then(|per_node| per_node.get(node))
            .and_then(|per_window| per_window.get(window))
            .copied()
            .unwrap_or(Delta {
                lo: 0,
                hi: None,
                restarts: 0,
                integrity: false,
            })
    }

    fn value(&self, key: &ValueKey, node: usize, window: usize) -> ValueFact {
        self.values
            .get(key)
            .and_then(|per_node| per_node.get(node))
            .and_then(|per_window| per_window.get(window))
            .copied()
            .unwrap_or(ValueFact {
                max: None,
                last: None,
                gapped: true,
            })
    }

    /// Any integrity error in a counter the profile reads, for this node and window.
    fn integrity_in(&self, node: usize, window: usize) -> bool {
        self.deltas.values().any(|per_node| {
            per_node
                .get(node)
                .and_then(|w| w.get(window))
                .is_some_and(|d| d.integrity)
        })
    }
}

/// The counters and derived values the profile (and the adaptive degradation checks) read.
fn needed_metrics(profile: &Profile) -> (BTreeSet<String>, BTreeSet<ValueKey>) {
    let mut counters = BTreeSet::new();
    let mut values = BTreeSet::new();
    for bar in &profile.bars {
        match &bar.rule {
            Rule::Counter { counter, .. } => {
                counters.insert(counter.clone());
            }
            Rule::CounterRatio {
                numerator,
                denominator,
                ..
            } => {
                counters.insert(numerator.clone());
                counters.insert(denominator.clone());
            }
            Rule::Gauge { gauge, .. } => {
                values.insert(ValueKey::Gauge(gauge.clone()));
            }
            Rule::GaugeRatio {
                numerator,
                denominator,
                scope,
                ..
            } => match scope {
                Scope::Node => {
                    values.insert(ValueKey::Ratio(numerator.clone(), denominator.clone()));
                }
                Scope::Fleet => {
                    values.insert(ValueKey::Gauge(numerator.clone()));
                    values.insert(ValueKey::Gauge(denominator.clone()));
                }
            },
            Rule::PhaseA { .. }
            | Rule::Telemetry
            | Rule::Scenarios
            | Rule::Recovery { .. }
            | Rule::Fanout { .. } => {}
        }
    }
    if let Some(policy) = &profile.adaptive {
        counters.insert(policy.events.clone());
        counters.insert(policy.exposure.clone());
        counters.insert(names::RECV_PUMP_DROPPED_FULL.to_string());
        for gauge in [
            names::RECV_PUMP_DEPTH,
            names::OUTBOUND_QUEUE_MAX_DEPTH,
            names::SUPPRESSED_TOPIC_PEERS,
            names::KNOWN_TOPIC_PEERS,
        ] {
            values.insert(ValueKey::Gauge(gauge.to_string()));
        }
    }
    (counters, values)
}

/// Exemptions for `bar` granted by scenarios that ran (completed or failed) in the window;
/// a skipped scenario never applied its fault, so it grants nothing.
fn exemptions_for(record: &WindowRecord, bar: &str) -> (Vec<Exemption>, BTreeSet<String>) {
    let mut list = Vec::new();
    let mut nodes = BTreeSet::new();
    for scenario in &record.scenarios {
        if matches!(scenario.status, ScenarioStatus::Skipped { .. }) {
            continue;
        }
        for exemption in scenario.exemptions.iter().filter(|e| e.bar == bar) {
            nodes.extend(exemption.nodes.iter().cloned());
            list.push(exemption.clone());
        }
    }
    (list, nodes)
}

/// Builder of one bar result.
struct Judged {
    verdict: Outcome,
    statistic: String,
    value: Option<f64>,
    threshold: String,
    nodes: Vec<String>,
    reason: String,
}

fn finish(bar: &Bar, window: u32, exemptions: Vec<Exemption>, judged: Judged) -> BarResult {
    BarResult {
        bar: bar.id.clone(),
        title: bar.title.clone(),
        verdict: judged.verdict,
        statistic: judged.statistic,
        value: judged.value.filter(|v| v.is_finite()),
        threshold: judged.threshold,
        window: Some(window),
        nodes: judged.nodes,
        baseline: None,
        exemptions,
        reason: judged.reason,
    }
}

fn fmt_num(v: f64) -> String {
    if v.is_infinite() {
        "∞".to_string()
    } else if v.fract() == 0.0 && v.abs() < 1e15 {
        format!("{}", v as i64)
    } else {
        format!("{v:.4}")
    }
}

fn list(items: &[String], limit: usize) -> String {
    let mut text = items
        .iter()
        .take(limit)
        .cloned()
        .collect::<Vec<_>>()
        .join(", ");
    if items.len() > limit {
        text.push_str(&format!(" and {} more", items.len() - limit));
    }
    text
}

fn scenario_summary(record: &WindowRecord) -> Vec<ScenarioSummary> {
    record
        .scenarios
        .iter()
        .map(|s| {
            let (status, detail) = match &s.status {
                ScenarioStatus::Completed => ("COMPLETED", String::new()),
                ScenarioStatus::Skipped { reason } => ("SKIPPED", reason.clone()),
                ScenarioStatus::Failed { error } => ("FAILED", error.clone()),
            };
            ScenarioSummary {
                name: s.name.clone(),
                status: status.to_string(),
                detail,
                targets: s.targets.clone(),
            }
        })
        .collect()
}

fn judge_window(
    facts: &Facts<'_>,
    profile: &Profile,
    w: usize,
    record: &WindowRecord,
) -> WindowVerdict {
    let phase_a_exempt = profile
        .bars
        .iter()
        .find(|b| matches!(b.rule, Rule::PhaseA { .. }))
        .map(|b| exemptions_for(record, &b.id).1)
        .unwrap_or_default();
    // Computed once per window; the phase_a bar reuses it when its exemptions are the same.
    let phase_a_full = record
        .phase_a
        .as_ref()
        .map(|pa| phase_a_summary(&facts.obs.run.nodes, pa, &phase_a_exempt));
    let phase_a = phase_a_full.as_ref().map(|full| full.0.clone());
    let mut bars = Vec::new();
    for bar in &profile.bars {
        let (exemptions, exempt) = exemptions_for(record, &bar.id);
        let judged = match &bar.rule {
            Rule::PhaseA { scenario } => {
                let reuse = phase_a_full.as_ref().filter(|_| exempt == phase_a_exempt);
                judge_phase_a(facts, record, scenario, &exempt, reuse)
            }
            Rule::Telemetry => Some(judge_telemetry(facts, profile, w, &exempt)),
            Rule::Scenarios => judge_scenarios(record),
            Rule::Counter {
                counter,
                scope,
                max,
            } => Some(judge_counter(facts, w, counter, *scope, *max, &exempt)),
            Rule::CounterRatio {
                numerator,
                denominator,
                scope,
                max,
            } => Some(judge_counter_ratio(
                facts,
                w,
                numerator,
                denominator,
                *scope,
                *max,
                &exempt,
            )),
            Rule::Gauge { gauge, scope, max } => {
                Some(judge_gauge(facts, w, gauge, *scope, *max, &exempt))
            }
            Rule::GaugeRatio {
                numerator,
                denominator,
                scope,
                max,
            } => Some(judge_gauge_ratio(
                facts,
                w,
                numerator,
                denominator,
                *scope,
                *max,
                &exempt,
            )),
            Rule::Recovery { max_ms } => judge_recovery(record, *max_ms),
            Rule::Fanout {
                scenario,
                min_ratio,
            } => judge_fanout(facts, record, scenario, *min_ratio, &exempt),
        };
        if let Some(judged) = judged {
            bars.push(finish(bar, record.index, exemptions, judged));
        }
    }
    WindowVerdict {
        index: record.index,
        start_ms: record.start_ms,
        end_ms: record.end_ms,
        warmup: record.warmup,
        verdict: window_outcome(&bars),
        phase_a,
        scenarios: scenario_summary(record),
        bars,
    }
}

/// Phase A summary, the failed pairs (for reasons) and the nodes they involve.
type PhaseAFull = (PhaseASummary, Vec<String>, BTreeSet<String>);

/// Phase A summary plus the failed pairs (for reasons).
fn phase_a_summary(
    nodes: &[crate::model::NodeRef],
    pa: &PhaseAResult,
    exempt: &BTreeSet<String>,
) -> PhaseAFull {
    let mut recorded: HashMap<(&str, &str), (bool, &str)> = HashMap::new();
    for pair in &pa.pairs {
        let entry = recorded
            .entry((pair.from.as_str(), pair.to.as_str()))
            .or_insert((false, pair.outcome.as_str()));
        if pair.delivered {
            *entry = (true, pair.outcome.as_str());
        }
    }
    let names: Vec<&str> = {
        let mut seen = BTreeSet::new();
        nodes
            .iter()
            .map(|n| n.name.as_str())
            .filter(|n| seen.insert(*n))
            .collect()
    };
    let (mut pairs, mut delivered, mut failed, mut missing, mut exempted) = (0, 0, 0, 0, 0);
    let mut failures = Vec::new();
    let mut involved = BTreeSet::new();
    for from in &names {
        for to in &names {
            if from == to {
                continue;
            }
            if exempt.contains(*from) || exempt.contains(*to) {
                exempted += 1;
                continue;
            }
            pairs += 1;
            match recorded.get(&(*from, *to)) {
                Some((true, _)) => delivered += 1,
                Some((false, outcome)) => {
                    failed += 1;
                    failures.push(format!("{from}→{to} ({outcome})"));
                    involved.insert(from.to_string());
                    involved.insert(to.to_string());
                }
                None => missing += 1,
            }
        }
    }
    let mut latencies: Vec<u64> = pa
        .pairs
        .iter()
        .filter(|p| p.delivered)
        .filter_map(|p| p.latency_us)
        .collect();
    latencies.sort_unstable();
    let percentile = |q: f64| {
        if latencies.is_empty() {
            None
        } else {
            // Nearest rank.
            let rank = ((q * latencies.len() as f64).ceil() as usize).clamp(1, latencies.len());
            Some(latencies[rank - 1])
        }
    };
    (
        PhaseASummary {
            pairs,
            delivered,
            failed,
            missing,
            exempted,
            p50_us: percentile(0.50),
            p99_us: percentile(0.99),
        },
        failures,
        involved,
    )
}

fn scenario_named<'r>(
    record: &'r WindowRecord,
    name: &str,
) -> Option<&'r crate::model::ScenarioRecord> {
    record.scenarios.iter().find(|s| s.name == name)
}

fn judge_phase_a(
    facts: &Facts<'_>,
    record: &WindowRecord,
    scenario: &str,
    exempt: &BTreeSet<String>,
    computed: Option<&PhaseAFull>,
) -> Option<Judged> {
    let statistic = "required ordered pairs delivered".to_string();
    let Some(pa) = &record.phase_a else {
        let s = scenario_named(record, scenario)?;
        let reason = match &s.status {
            ScenarioStatus::Skipped { reason } => {
                format!("`{scenario}` SKIPPED ({reason}): no Phase A evidence")
            }
            ScenarioStatus::Completed | ScenarioStatus::Failed { .. } => {
                format!("`{scenario}` ran but no Phase A matrix was recorded")
            }
        };
        return Some(Judged {
            verdict: Outcome::Unknown,
            statistic,
            value: None,
            threshold: "all N·(N−1)".into(),
            nodes: Vec::new(),
            reason,
        });
    };
    let (summary, failures, involved) = match computed {
        Some(full) => full.clone(),
        None => phase_a_summary(&facts.obs.run.nodes, pa, exempt),
    };
    let threshold = format!("== {}", summary.pairs);
    let (verdict, reason) = if summary.failed > 0 {
        (
            Outcome::NoGo,
            format!(
                "{} of {} pairs not delivered: {}",
                summary.failed,
                summary.pairs,
                list(&failures, 5)
            ),
        )
    } else if summary.missing > 0 {
        (
            Outcome::Unknown,
            format!(
                "{} of {} pairs never attempted (matrix incomplete)",
                summary.missing, summary.pairs
            ),
        )
    } else if summary.pairs == 0 {
        (
            Outcome::Unknown,
            "no pair to judge (fewer than two nodes, or all exempt)".into(),
        )
    } else {
        (
            Outcome::Go,
            format!("all {} pairs delivered", summary.pairs),
        )
    };
    Some(Judged {
        verdict,
        statistic,
        value: Some(summary.delivered as f64),
        threshold,
        nodes: involved.into_iter().collect(),
        reason,
    })
}

fn judge_telemetry(
    facts: &Facts<'_>,
    profile: &Profile,
    w: usize,
    exempt: &BTreeSet<String>,
) -> Judged {
    let mut verdict = Outcome::Go;
    let mut bad_nodes = Vec::new();
    let mut details = Vec::new();
    for (n, node) in facts.nodes.iter().enumerate() {
        if exempt.contains(node) {
            continue;
        }
        let gaps = &facts.coverage[n][w];
        let integrity = facts.integrity_in(n, w);
        if gaps.is_empty() && !integrity {
            continue;
        }
        bad_nodes.push(node.clone());
        if integrity {
            verdict = verdict.worst(profile.evidence.integrity_error);
            details.push(format!(
                "{node}: counter decreased within one process (integrity)"
            ));
        }
        if !gaps.is_empty() {
            verdict = verdict.worst(profile.evidence.missing_telemetry);
            let longest = gaps.iter().map(|(a, b)| b - a).max().unwrap_or(0);
            details.push(format!(
                "{node}: no good sample for {} ms ({} failed attempts)",
                longest, facts.missing[n][w]
            ));
        }
    }
    let reason = if bad_nodes.is_empty() {
        format!(
            "{} nodes sampled with no step over {} ms",
            facts.nodes.len() - exempt.iter().filter(|e| facts.nodes.contains(e)).count(),
            facts.tolerance_ms
        )
    } else {
        list(&details, 5)
    };
    if facts.nodes.is_empty() {
        verdict = Outcome::Unknown;
    }
    Judged {
        verdict,
        statistic: "nodes with an evidence gap or integrity error".into(),
        value: Some(bad_nodes.len() as f64),
        threshold: "== 0".into(),
        nodes: bad_nodes,
        reason: if facts.nodes.is_empty() {
            "no nodes".into()
        } else {
            reason
        },
    }
}

fn judge_scenarios(record: &WindowRecord) -> Option<Judged> {
    if record.scenarios.is_empty() {
        return None;
    }
    let not_completed: Vec<String> = record
        .scenarios
        .iter()
        .filter_map(|s| match &s.status {
            ScenarioStatus::Completed => None,
            ScenarioStatus::Skipped { reason } => Some(format!("{} SKIPPED ({reason})", s.name)),
            ScenarioStatus::Failed { error } => Some(format!("{} FAILED ({error})", s.name)),
        })
        .collect();
    let targets: BTreeSet<String> = record
        .scenarios
        .iter()
        .filter(|s| s.status != ScenarioStatus::Completed)
        .flat_map(|s| s.targets.iter().cloned())
        .collect();
    Some(Judged {
        verdict: if not_completed.is_empty() {
            Outcome::Go
        } else {
            Outcome::Unknown
        },
        statistic: "scenarios not completed".into(),
        value: Some(not_completed.len() as f64),
        threshold: "== 0".into(),
        nodes: targets.into_iter().collect(),
        reason: if not_completed.is_empty() {
            format!("{} scenarios completed", record.scenarios.len())
        } else {
            format!("never a pass: {}", list(&not_completed, 5))
        },
    })
}

/// Judges `[lo, hi]` intervals against `≤ max`: NO-GO when `lo` exceeds, GO when `hi` is
/// known and within, else UNKNOWN.
fn interval_outcome(lo: f64, hi: Option<f64>, max: f64) -> Outcome {
    if lo > max {
        Outcome::NoGo
    } else if hi.is_some_and(|h| h <= max) {
        Outcome::Go
    } else {
        Outcome::Unknown
    }
}

fn why_unknown(delta: &Delta) -> &'static str {
    if delta.integrity {
        "integrity error"
    } else if delta.hi.is_none() {
        "evidence gap"
    } else {
        "may exceed across an evidence gap"
    }
}

/// Shared shape of per-node / fleet judgements.
struct Tally {
    verdict: Outcome,
    failed: Vec<String>,
    unknown: Vec<String>,
    failed_nodes: BTreeSet<String>,
    unknown_nodes: BTreeSet<String>,
    worst_value: Option<f64>,
    judged: usize,
}

impl Tally {
    fn new() -> Tally {
        Tally {
            verdict: Outcome::Go,
            failed: Vec::new(),
            unknown: Vec::new(),
            failed_nodes: BTreeSet::new(),
            unknown_nodes: BTreeSet::new(),
            worst_value: None,
            judged: 0,
        }
    }

    /// Records one judged unit (a node, or the fleet): its label for the reason, its outcome,
    /// its value and the nodes it stands for.
    fn add(&mut self, label: String, outcome: Outcome, value: f64, nodes: &[String]) {
        self.judged += 1;
        self.verdict = self.verdict.worst(outcome);
        match outcome {
            Outcome::NoGo => {
                self.failed.push(label);
                self.failed_nodes.extend(nodes.iter().cloned());
            }
            Outcome::Unknown => {
                self.unknown.push(label);
                self.unknown_nodes.extend(nodes.iter().cloned());
            }
            Outcome::Go => {}
        }
        self.worst_value = Some(self.worst_value.map_or(value, |w: f64| w.max(value)));
    }

    fn judged(self, statistic: String, threshold: String, go_reason: String) -> Judged {
        if self.judged == 0 {
            return Judged {
                verdict: Outcome::Unknown,
                statistic,
                value: None,
                threshold,
                nodes: Vec::new(),
                reason: "no node to judge (none, or all exempt)".into(),
            };
        }
        let (nodes, reason) = match self.verdict {
            Outcome::NoGo => (
                self.failed_nodes,
                format!("over the bar: {}", list(&self.failed, 8)),
            ),
            Outcome::Unknown => (
                self.unknown_nodes,
                format!("not decidable: {}", list(&self.unknown, 8)),
            ),
            Outcome::Go => (BTreeSet::new(), go_reason),
        };
        Judged {
            verdict: self.verdict,
            statistic,
            value: self.worst_value,
            threshold,
            nodes: nodes.into_iter().collect(),
            reason,
        }
    }
}

fn scoped_nodes<'f>(
    facts: &'f Facts<'_>,
    exempt: &'f BTreeSet<String>,
) -> impl Iterator<Item = (usize, &'f String)> + 'f {
    facts
        .nodes
        .iter()
        .enumerate()
        .filter(move |(_, n)| !exempt.contains(*n))
}

fn judge_counter(
    facts: &Facts<'_>,
    w: usize,
    counter: &str,
    scope: Scope,
    max: u64,
    exempt: &BTreeSet<String>,
) -> Judged {
    let limit = max as f64;
    let mut tally = Tally::new();
    let label = |name: &str, d: &Delta| match d.hi {
        Some(h) if h == d.lo => format!("{name} +{}", d.lo),
        Some(h) => format!("{name} +{}..{} ({})", d.lo, h, why_unknown(d)),
        None => format!("{name} ≥ +{} ({})", d.lo, why_unknown(d)),
    };
    let statistic = match scope {
        Scope::Node => {
            for (n, name) in scoped_nodes(facts, exempt) {
                let d = facts.delta(counter, n, w);
                let outcome = interval_outcome(d.lo as f64, d.hi.map(|h| h as f64), limit);
                tally.add(
                    label(name, &d),
                    outcome,
                    d.lo as f64,
                    std::slice::from_ref(name),
                );
            }
            format!("largest per-node increase of {counter}")
        }
        Scope::Fleet => {
            let mut sum = Delta {
                lo: 0,
                hi: Some(0),
                restarts: 0,
                integrity: false,
            };
            let mut involved = Vec::new();
            let mut any = false;
            for (n, name) in scoped_nodes(facts, exempt) {
                let d = facts.delta(counter, n, w);
                if d.lo > 0 || d.exact().is_none() {
                    involved.push(name.clone());
                }
                sum = sum.plus(d);
                any = true;
            }
            if any {
                let outcome = interval_outcome(sum.lo as f64, sum.hi.map(|h| h as f64), limit);
                tally.add(label("fleet", &sum), outcome, sum.lo as f64, &involved);
            }
            format!("fleet increase of {counter}")
        }
    };
    let go = format!(
        "within the bar (largest +{})",
        fmt_num(tally.worst_value.unwrap_or(0.0))
    );
    tally.judged(statistic, format!("<= {max}"), go)
}

/// Bounds of `num / den` from interval deltas, with the ratio edge cases.
fn ratio_bounds(num: &Delta, den: &Delta) -> (f64, Option<f64>) {
    let lo = if num.lo == 0 {
        0.0
    } else {
        match den.hi {
            Some(0) => f64::INFINITY,
            Some(h) => num.lo as f64 / h as f64,
            None => 0.0,
        }
    };
    let hi = match num.hi {
        Some(0) => Some(0.0),
        None => None,
        Some(n) => (den.lo > 0).then(|| n as f64 / den.lo as f64),
    };
    (lo, hi)
}

fn judge_counter_ratio(
    facts: &Facts<'_>,
    w: usize,
    numerator: &str,
    denominator: &str,
    scope: Scope,
    max: f64,
    exempt: &BTreeSet<String>,
) -> Judged {
    let mut tally = Tally::new();
    let judge = |tally: &mut Tally, name: &str, num: Delta, den: Delta, nodes: &[String]| {
        let (lo, hi) = ratio_bounds(&num, &den);
        let outcome = interval_outcome(lo, hi, max);
        let text = if lo.is_infinite() {
            format!("{name} {}/0 (numerator > 0 with denominator 0)", num.lo)
        } else if num.exact().is_some() && den.exact().is_some() {
            format!("{name} {}/{} = {}", num.lo, den.lo, fmt_num(lo))
        } else {
            format!(
                "{name} {} ({})",
                fmt_num(lo),
                why_unknown(if num.exact().is_none() { &num } else { &den })
            )
        };
        tally.add(text, outcome, lo, nodes);
    };
    let statistic = match scope {
        Scope::Node => {
            for (n, name) in scoped_nodes(facts, exempt) {
                let (num, den) = (facts.delta(numerator, n, w), facts.delta(denominator, n, w));
                judge(&mut tally, name, num, den, std::slice::from_ref(name));
            }
            format!("largest per-node {numerator} / {denominator}")
        }
        Scope::Fleet => {
            let zero = Delta {
                lo: 0,
                hi: Some(0),
                restarts: 0,
                integrity: false,
            };
            let (mut num, mut den, mut any) = (zero, zero, false);
            let mut involved = Vec::new();
            for (n, name) in scoped_nodes(facts, exempt) {
                let (a, b) = (facts.delta(numerator, n, w), facts.delta(denominator, n, w));
                if a.lo > 0 || a.exact().is_none() || b.exact().is_none() {
                    involved.push(name.clone());
                }
                num = num.plus(a);
                den = den.plus(b);
                any = true;
            }
            if any {
                judge(&mut tally, "fleet", num, den, &involved);
            }
            format!("fleet {numerator} / {denominator}")
        }
    };
    let go = format!(
        "within the bar (largest {})",
        fmt_num(tally.worst_value.unwrap_or(0.0))
    );
    tally.judged(statistic, format!("<= {}", fmt_num(max)), go)
}

fn judge_values(
    facts: &Facts<'_>,
    w: usize,
    key: &ValueKey,
    fleet: Option<(&ValueKey, &ValueKey)>,
    max: f64,
    exempt: &BTreeSet<String>,
) -> Tally {
    let mut tally = Tally::new();
    match fleet {
        None => {
            for (n, name) in scoped_nodes(facts, exempt) {
                let fact = facts.value(key, n, w);
                let (outcome, text, value) = match fact.max {
                    Some(v) if v > max => (Outcome::NoGo, format!("{name} {}", fmt_num(v)), v),
                    Some(v) if !fact.gapped => (Outcome::Go, format!("{name} {}", fmt_num(v)), v),
                    Some(v) => (
                        Outcome::Unknown,
                        format!("{name} {} (evidence gap)", fmt_num(v)),
                        v,
                    ),
                    None => (Outcome::Unknown, format!("{name} no sample"), 0.0),
                };
                tally.add(text, outcome, value, std::slice::from_ref(name));
            }
        }
        Some((num_key, den_key)) => {
            let (mut num, mut den, mut gapped, mut any) = (0.0, 0.0, false, false);
            let mut involved = Vec::new();
            for (n, name) in scoped_nodes(facts, exempt) {
                any = true;
                let (a, b) = (facts.value(num_key, n, w), facts.value(den_key, n, w));
                match (a.last, b.last) {
                    (Some(x), Some(y)) => {
                        num += x;
                        den += y;
                        if x > 0.0 {
                            involved.push(name.clone());
                        }
                    }
                    _ => {
                        gapped = true;
                        involved.push(name.clone());
                    }
                }
                if a.gapped || b.gapped {
                    gapped = true;
                    involved.push(name.clone());
                }
            }
            if any {
                let v = if num_key == den_key {
                    num
                } else {
                    ratio(num, den)
                };
                let outcome = if v > max {
                    Outcome::NoGo
                } else if gapped {
                    Outcome::Unknown
                } else {
                    Outcome::Go
                };
                let text = if gapped {
                    format!("fleet {} (evidence gap)", fmt_num(v))
                } else {
                    format!("fleet {}", fmt_num(v))
                };
                involved.dedup();
                tally.add(text, outcome, v, &involved);
            }
        }
    }
    tally
}

fn judge_gauge(
    facts: &Facts<'_>,
    w: usize,
    gauge: &str,
    scope: Scope,
    max: f64,
    exempt: &BTreeSet<String>,
) -> Judged {
    let key = ValueKey::Gauge(gauge.to_string());
    let (tally, statistic) = match scope {
        Scope::Node => (
            judge_values(facts, w, &key, None, max, exempt),
            format!("largest per-node {gauge} sampled in the window"),
        ),
        Scope::Fleet => (
            judge_values(facts, w, &key, Some((&key, &key)), max, exempt),
            format!("fleet sum of {gauge} at each node's last sample"),
        ),
    };
    let go = format!(
        "within the bar (largest {})",
        fmt_num(tally.worst_value.unwrap_or(0.0))
    );
    tally.judged(statistic, format!("<= {}", fmt_num(max)), go)
}

fn judge_gauge_ratio(
    facts: &Facts<'_>,
    w: usize,
    numerator: &str,
    denominator: &str,
    scope: Scope,
    max: f64,
    exempt: &BTreeSet<String>,
) -> Judged {
    let (tally, statistic) = match scope {
        Scope::Node => (
            judge_values(
                facts,
                w,
                &ValueKey::Ratio(numerator.to_string(), denominator.to_string()),
                None,
                max,
                exempt,
            ),
            format!("largest per-node {numerator} / {denominator} sampled in the window"),
        ),
        Scope::Fleet => {
            let (num, den) = (
                ValueKey::Gauge(numerator.to_string()),
                ValueKey::Gauge(denominator.to_string()),
            );
            (
                judge_values(facts, w, &num, Some((&num, &den)), max, exempt),
                format!("fleet Σ{numerator} / Σ{denominator} at each node's last sample"),
            )
        }
    };
    let go = format!(
        "within the bar (largest {})",
        fmt_num(tally.worst_value.unwrap_or(0.0))
    );
    tally.judged(statistic, format!("<= {}", fmt_num(max)), go)
}

fn judge_recovery(record: &WindowRecord, max_ms: u64) -> Option<Judged> {
    let mut failed = Vec::new();
    let mut unknown = Vec::new();
    let mut nodes = BTreeSet::new();
    let mut worst: Option<u64> = None;
    let mut count = 0;
    for s in &record.scenarios {
        match (&s.status, &s.recovery) {
            (ScenarioStatus::Skipped { reason }, _) if s.name.contains("restart") => {
                unknown.push(format!("{} SKIPPED ({reason})", s.name));
                nodes.extend(s.targets.iter().cloned());
            }
            (ScenarioStatus::Failed { error }, None) if s.name.contains("restart") => {
                unknown.push(format!("{} FAILED ({error})", s.name));
                nodes.extend(s.targets.iter().cloned());
            }
            (ScenarioStatus::Skipped { .. }, _) => {}
            (_, Some(r)) => {
                count += 1;
                match r.recovered_after_ms {
                    None => {
                        failed.push(format!("{} never recovered", r.node));
                        nodes.insert(r.node.clone());
                    }
                    Some(ms) => {
                        worst = Some(worst.map_or(ms, |w| w.max(ms)));
                        if ms > max_ms {
                            failed.push(format!("{} recovered after {ms} ms", r.node));
                            nodes.insert(r.node.clone());
                        }
                    }
                }
            }
            (_, None) => {}
        }
    }
    if count == 0 && unknown.is_empty() {
        return None;
    }
    let (verdict, reason) = if !failed.is_empty() {
        (Outcome::NoGo, list(&failed, 5))
    } else if !unknown.is_empty() {
        (
            Outcome::Unknown,
            format!("restart not exercised: {}", list(&unknown, 5)),
        )
    } else {
        (
            Outcome::Go,
            format!("{count} restarts recovered within {max_ms} ms"),
        )
    };
    Some(Judged {
        verdict,
        statistic: "slowest restart recovery, ms".into(),
        value: worst.map(|w| w as f64),
        threshold: format!("<= {max_ms}"),
        nodes: nodes.into_iter().collect(),
        reason,
    })
}

fn judge_fanout(
    facts: &Facts<'_>,
    record: &WindowRecord,
    scenario: &str,
    min_ratio: f64,
    exempt: &BTreeSet<String>,
) -> Option<Judged> {
    let statistic = "fanout delivered / expected".to_string();
    let threshold = format!(">= {}", fmt_num(min_ratio));
    let Some(f) = &record.fanout else {
        let s = scenario_named(record, scenario)?;
        let reason = match &s.status {
            ScenarioStatus::Skipped { reason } => format!("`{scenario}` SKIPPED ({reason})"),
            _ => format!("`{scenario}` ran but no fanout result was recorded"),
        };
        return Some(Judged {
            verdict: Outcome::Unknown,
            statistic,
            value: None,
            threshold,
            nodes: Vec::new(),
            reason,
        });
    };
    let (mut expected, mut received, mut unknown_expected) = (0u64, 0u64, 0u64);
    let mut unknown = Vec::new();
    let mut short = Vec::new();
    let mut nodes = BTreeSet::new();
    let mut covered = BTreeSet::new();
    for sub in f.subscribers.iter().filter(|s| !exempt.contains(&s.node)) {
        covered.insert(sub.node.as_str());
        if let Some(err) = &sub.error {
            unknown_expected += sub.expected;
            unknown.push(format!("{} unreadable ({err})", sub.node));
            continue;
        }
        expected += sub.expected;
        received += sub.received.min(sub.expected);
        if sub.received < sub.expected {
            short.push(format!("{} {}/{}", sub.node, sub.received, sub.expected));
            nodes.insert(sub.node.clone());
        }
    }
    for node in facts
        .obs
        .run
        .nodes
        .iter()
        .filter(|n| !exempt.contains(&n.name))
    {
        if !covered.contains(node.name.as_str()) {
            unknown_expected += f.messages;
            unknown.push(format!("{} has no subscriber result", node.name));
        }
    }
    let total = expected + unknown_expected;
    if total == 0 {
        return Some(Judged {
            verdict: Outcome::Unknown,
            statistic,
            value: None,
            threshold,
            nodes: Vec::new(),
            reason: "nothing was expected (no messages or no subscribers)".into(),
        });
    }
    let lo = received as f64 / total as f64;
    let hi = (received + unknown_expected) as f64 / total as f64;
    let verdict = if hi < min_ratio {
        Outcome::NoGo
    } else if lo >= min_ratio {
        Outcome::Go
    } else {
        Outcome::Unknown
    };
    let reason = match verdict {
        Outcome::NoGo => format!("missing deliveries: {}", list(&short, 6)),
        Outcome::Unknown if !unknown.is_empty() => format!("not decidable: {}", list(&unknown, 6)),
        Outcome::Unknown => format!("missing deliveries: {}", list(&short, 6)),
        Outcome::Go if short.is_empty() => format!("{received} of {total} deliveries"),
        Outcome::Go => format!(
            "{received} of {total} deliveries (short: {})",
            list(&short, 6)
        ),
    };
    if verdict == Outcome::Unknown && !unknown.is_empty() {
        nodes.extend(
            unknown
                .iter()
                .filter_map(|u| u.split(' ').next().map(String::from)),
        );
    }
    Some(Judged {
        verdict,
        statistic,
        value: Some(lo),
        threshold,
        nodes: nodes.into_iter().collect(),
        reason,
    })
}

fn soak_bar(id: &str, title: &str, judged: Judged) -> BarResult {
    BarResult {
        bar: id.to_string(),
        title: title.to_string(),
        verdict: judged.verdict,
        statistic: judged.statistic,
        value: judged.value.filter(|v| v.is_finite()),
        threshold: judged.threshold,
        window: None,
        nodes: judged.nodes,
        baseline: None,
        exemptions: Vec::new(),
        reason: judged.reason,
    }
}

fn evidence_bar(facts: &Facts<'_>, profile: &Profile) -> BarResult {
    let windows = facts.obs.windows.len();
    let min = profile.soak.min_windows as usize;
    let (verdict, reason) = if facts.nodes.is_empty() {
        (Outcome::Unknown, "no nodes in the run".to_string())
    } else if windows < min.max(1) {
        (
            Outcome::Unknown,
            format!("{windows} windows judged, at least {} needed", min.max(1)),
        )
    } else {
        (
            Outcome::Go,
            format!("{windows} windows over {} nodes", facts.nodes.len()),
        )
    };
    soak_bar(
        "windows",
        "enough windows judged",
        Judged {
            verdict,
            statistic: "windows judged".into(),
            value: Some(windows as f64),
            threshold: format!(">= {}", min.max(1)),
            nodes: Vec::new(),
            reason,
        },
    )
}

/// Inventory runs only: a verdict on part of the inventory says nothing about the hosts left
/// out, so a partial fleet is UNKNOWN (missing evidence), never GO.
fn coverage_bar(observations: &Observations) -> Option<BarResult> {
    let listed = observations.run.inventory_hosts?;
    let reached = observations.run.nodes.len();
    let (verdict, reason) = if reached >= listed {
        (Outcome::Go, format!("all {listed} inventory hosts ran"))
    } else {
        (
            Outcome::Unknown,
            format!(
                "partial fleet: {reached} of {listed} inventory hosts ran; the hosts left out were not judged"
            ),
        )
    };
    Some(soak_bar(
        "coverage",
        "inventory hosts covered",
        Judged {
            verdict,
            statistic: "hosts run / hosts in the inventory".into(),
            value: Some(reached as f64),
            threshold: format!("== {listed}"),
            nodes: Vec::new(),
            reason,
        },
    ))
}

fn phase_a_aggregate(profile: &Profile, windows: &[WindowVerdict]) -> BarResult {
    let min = profile.soak.phase_a_min_ratio;
    let (mut pairs, mut delivered, mut missing, mut seen) = (0u64, 0u64, 0u64, 0);
    for summary in windows.iter().filter_map(|w| w.phase_a.as_ref()) {
        seen += 1;
        pairs += summary.pairs;
        delivered += summary.delivered;
        missing += summary.missing;
    }
    let judged = if pairs == 0 {
        Judged {
            verdict: Outcome::Unknown,
            statistic: "Phase A delivered / required, whole soak".into(),
            value: None,
            threshold: format!(">= {}", fmt_num(min)),
            nodes: Vec::new(),
            reason: "no Phase A evidence in the soak".into(),
        }
    } else {
        let lo = delivered as f64 / pairs as f64;
        let hi = (delivered + missing) as f64 / pairs as f64;
        let verdict = if hi < min {
            Outcome::NoGo
        } else if lo >= min {
            Outcome::Go
        } else {
            Outcome::Unknown
        };
        Judged {
            verdict,
            statistic: "Phase A delivered / required, whole soak".into(),
            value: Some(lo),
            threshold: format!(">= {}", fmt_num(min)),
            nodes: Vec::new(),
            reason: format!(
                "{delivered} of {pairs} required pairs delivered over {seen} matrices ({missing} never attempted)"
            ),
        }
    };
    soak_bar(
        "phase_a_aggregate",
        "Phase A delivery over the soak",
        judged,
    )
}

/// The soak-level adaptive policy. Adds one bar per window (baseline windows included, marked
/// as such) and returns the soak-level bar. See `docs/gates.md` for the reasoning.
fn adaptive(
    facts: &Facts<'_>,
    policy: &AdaptivePolicy,
    windows: &mut [WindowVerdict],
) -> BarResult {
    let obs = facts.obs;
    let n_windows = obs.windows.len();
    // Fleet events and exposure per window, exact or None.
    let fleet: Vec<Option<(u64, u64)>> = (0..n_windows)
        .map(|w| {
            let (_, exempt) = exemptions_for(&obs.windows[w], &policy.id);
            let zero = Delta {
                lo: 0,
                hi: Some(0),
                restarts: 0,
                integrity: false,
            };
            let (mut k, mut n) = (zero, zero);
            for (i, _) in scoped_nodes(facts, &exempt) {
                k = k.plus(facts.delta(&policy.events, i, w));
                n = n.plus(facts.delta(&policy.exposure, i, w));
            }
            k.exact().zip(n.exact())
        })
        .collect();
    let other_verdicts: Vec<Outcome> = windows.iter().map(|w| window_outcome(&w.bars)).collect();
    let explicit: Vec<usize> = (0..n_windows).filter(|&w| obs.windows[w].warmup).collect();
    let baseline_windows: Vec<usize> = if explicit.is_empty() {
        (0..n_windows)
            .filter(|&w| other_verdicts[w] == Outcome::Go && fleet[w].is_some())
            .take(policy.warmup_windows as usize)
            .collect()
    } else {
        explicit
            .into_iter()
            .filter(|&w| fleet[w].is_some())
            .collect()
    };
    let learned = !baseline_windows.is_empty()
        && (obs.windows.iter().any(|w| w.warmup)
            || baseline_windows.len() == policy.warmup_windows as usize);
    let (events, exposure) = baseline_windows
        .iter()
        .filter_map(|&w| fleet[w])
        .fold((0u64, 0u64), |(k, n), (a, b)| (k + a, n + b));
    let rate = if exposure == 0 {
        (events == 0).then_some(0.0)
    } else {
        Some(events as f64 / exposure as f64)
    };
    let effective = rate.map(|r| r.max(policy.floor_rate));
    let base = Baseline {
        windows: baseline_windows
            .iter()
            .map(|&w| obs.windows[w].index)
            .collect(),
        events,
        exposure,
        rate,
        floor_rate: policy.floor_rate,
        effective_rate: effective,
        window_events: None,
        window_exposure: None,
        expected: None,
        p_value: None,
        anomalous: None,
        degradation: Vec::new(),
    };

    // Degradation signals per window.
    let depth = |w: usize| -> Option<f64> {
        let mut max: Option<f64> = None;
        for n in 0..facts.nodes.len() {
            for gauge in [names::OUTBOUND_QUEUE_MAX_DEPTH, names::RECV_PUMP_DEPTH] {
                if let Some(v) = facts.value(&ValueKey::Gauge(gauge.into()), n, w).last {
                    max = Some(max.map_or(v, |m| m.max(v)));
                }
            }
        }
        max
    };
    let suppression = |w: usize| -> Option<f64> {
        let (mut s, mut k, mut any) = (0.0, 0.0, false);
        for n in 0..facts.nodes.len() {
            let a = facts.value(&ValueKey::Gauge(names::SUPPRESSED_TOPIC_PEERS.into()), n, w);
            let b = facts.value(&ValueKey::Gauge(names::KNOWN_TOPIC_PEERS.into()), n, w);
            if let (Some(x), Some(y)) = (a.last, b.last) {
                s += x;
                k += y;
                any = true;
            }
        }
        any.then(|| ratio(s, k))
    };
    let depths: Vec<Option<f64>> = (0..n_windows).map(depth).collect();
    let suppressions: Vec<Option<f64>> = (0..n_windows).map(suppression).collect();
    let baseline_max = |series: &[Option<f64>]| {
        baseline_windows
            .iter()
            .filter_map(|&w| series[w])
            .fold(0.0f64, f64::max)
    };
    let (depth_base, supp_base) = (baseline_max(&depths), baseline_max(&suppressions));
    let rising = |series: &[Option<f64>], base: f64, w: usize| match (
        series[w],
        w.checked_sub(1).and_then(|p| series[p]),
    ) {
        (Some(now), Some(before)) => now > before && now > base,
        _ => false,
    };
    let degradation = |w: usize| -> Vec<String> {
        let mut signs = Vec::new();
        if windows[w].phase_a.as_ref().is_some_and(|p| p.failed > 0) {
            signs.push("Phase A delivery misses".to_string());
        }
        let drops: u64 = (0..facts.nodes.len())
            .map(|n| facts.delta(names::RECV_PUMP_DROPPED_FULL, n, w).lo)
            .sum();
        if drops > 0 {
            signs.push(format!("{drops} recv-pump drops"));
        }
        if obs.windows[w].fanout.as_ref().is_some_and(|f| {
            f.subscribers
                .iter()
                .any(|s| s.error.is_none() && s.received < s.expected)
        }) {
            signs.push("fanout delivery misses".to_string());
        }
        if rising(&depths, depth_base, w) {
            signs.push("queue depth growing".to_string());
        }
        if rising(&suppressions, supp_base, w) {
            signs.push("suppression ratio rising".to_string());
        }
        signs
    };

    // Test every window that is not part of the baseline.
    let baseline_ok = learned && rate.is_some_and(|r| r <= policy.max_baseline_rate);
    let mut results: Vec<(Outcome, Baseline, String)> = Vec::with_capacity(n_windows);
    for (w, window_fleet) in fleet.iter().enumerate() {
        let mut detail = base.clone();
        let signs = degradation(w);
        detail.degradation = signs.clone();
        if let Some((k, n)) = *window_fleet {
            detail.window_events = Some(k);
            detail.window_exposure = Some(n);
        }
        if baseline_windows.contains(&w) {
            let reason = if baseline_ok {
                "baseline window (learns the rate, not judged by it)".to_string()
            } else {
                "baseline window".to_string()
            };
            results.push((Outcome::Go, detail, reason));
            continue;
        }
        let (Some(eff), true) = (effective, learned) else {
            results.push((Outcome::Unknown, detail, "no baseline learned".into()));
            continue;
        };
        let Some((k, n)) = *window_fleet else {
            results.push((
                Outcome::Unknown,
                detail,
                "fleet events or exposure not known exactly (evidence gap)".into(),
            ));
            continue;
        };
        let expected = eff * n as f64;
        let p = poisson_upper_tail(k, expected);
        let anomalous = (n == 0 && k > 0)
            || (k >= policy.min_events
                && k as f64 >= policy.min_ratio * expected
                && p < policy.alpha);
        detail.expected = Some(expected);
        detail.p_value = Some(p);
        detail.anomalous = Some(anomalous);
        let reason = format!(
            "{k} events over {n} exposure; expected {} at rate {}; P(X ≥ {k}) = {p:.3e}",
            fmt_num(expected),
            fmt_num(eff)
        );
        results.push((Outcome::Go, detail, reason));
    }
    // Consecutive anomalies and anomalies coupled with degradation fail.
    let anomalous: Vec<bool> = results
        .iter()
        .map(|r| r.1.anomalous == Some(true))
        .collect();
    let mut w = 0;
    while w < n_windows {
        if !anomalous[w] {
            w += 1;
            continue;
        }
        let mut end = w;
        while end + 1 < n_windows && anomalous[end + 1] {
            end += 1;
        }
        let run = end - w + 1;
        for result in results.iter_mut().take(end + 1).skip(w) {
            if run >= policy.consecutive as usize {
                result.0 = Outcome::NoGo;
                result.2 = format!(
                    "anomalous, {run} in a row (limit {}): {}",
                    policy.consecutive, result.2
                );
            } else if !result.1.degradation.is_empty() {
                result.0 = Outcome::NoGo;
                result.2 = format!(
                    "anomalous with degradation ({}): {}",
                    result.1.degradation.join(", "),
                    result.2
                );
            } else {
                result.2 = format!(
                    "anomalous but isolated and without degradation (tolerated): {}",
                    result.2
                );
            }
        }
        w = end + 1;
    }
    let threshold = format!(
        "Poisson tail < {} with ≥ {} events and ≥ {}× expected; fail on {} in a row or with degradation",
        policy.alpha,
        policy.min_events,
        fmt_num(policy.min_ratio),
        policy.consecutive
    );
    let mut worst = Outcome::Go;
    let mut anomalies = 0;
    for (w, (outcome, detail, reason)) in results.into_iter().enumerate() {
        worst = worst.worst(outcome);
        anomalies += usize::from(detail.anomalous == Some(true));
        let value = match (detail.window_events, detail.window_exposure) {
            (Some(k), Some(n)) if n > 0 => Some(k as f64 / n as f64),
            (Some(0), Some(_)) => Some(0.0),
            _ => None,
        };
        let (exemptions, _) = exemptions_for(&obs.windows[w], &policy.id);
        windows[w].bars.push(BarResult {
            bar: policy.id.clone(),
            title: policy.title.clone(),
            verdict: outcome,
            statistic: format!("fleet {} / {}", policy.events, policy.exposure),
            value,
            threshold: threshold.clone(),
            window: Some(obs.windows[w].index),
            nodes: Vec::new(),
            baseline: Some(detail),
            exemptions,
            reason,
        });
    }
    let (verdict, reason) = match rate {
        _ if !learned => (
            Outcome::Unknown,
            format!(
                "no baseline: needs {} windows passing every other bar with exact evidence \
                 (or explicit warm-up windows)",
                policy.warmup_windows
            ),
        ),
        None => (
            Outcome::NoGo,
            format!("{events} events with zero exposure in the baseline windows"),
        ),
        Some(r) if r > policy.max_baseline_rate => (
            Outcome::NoGo,
            format!(
                "learned baseline rate {} exceeds the ceiling {}",
                fmt_num(r),
                fmt_num(policy.max_baseline_rate)
            ),
        ),
        Some(r) => (
            worst,
            format!(
                "baseline {} from windows {:?}; {anomalies} anomalous windows",
                fmt_num(r),
                base.windows
            ),
        ),
    };
    BarResult {
        bar: policy.id.clone(),
        title: policy.title.clone(),
        verdict,
        statistic: format!(
            "fleet {} / {} against the learned baseline",
            policy.events, policy.exposure
        ),
        value: rate,
        threshold: format!(
            "baseline <= {}; {threshold}",
            fmt_num(policy.max_baseline_rate)
        ),
        window: None,
        nodes: Vec::new(),
        baseline: Some(base),
        exemptions: Vec::new(),
        reason,
    }
}
