//! Pass one: every node's series reduced to per-window facts — counter deltas as intervals,
//! gauge maxima and last values, gaps, restarts and integrity errors.

use super::*;
use crate::model::Sample;

/// A value derived from each sample: a gauge, or a ratio of two gauges.
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub(super) enum ValueKey {
    Gauge(String),
    Ratio(String, String),
}

/// Ratio edge cases of DESIGN §7: numerator 0 → 0; numerator > 0 with denominator 0 → ∞.
pub(super) fn ratio(numerator: f64, denominator: f64) -> f64 {
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
pub(super) struct ValueFact {
    pub(super) max: Option<f64>,
    pub(super) last: Option<f64>,
    pub(super) gapped: bool,
}

/// One good sample of a gauge: `(time ms, interned instance, value)`.
pub(super) type GaugePoint = (u64, u32, f64);

/// Whether a node has closing evidence for a window (see `NodeSeries::closing_evidence`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub(super) enum Closing {
    /// A good sample inside the window and no failed attempt after the last one.
    Evidence,
    /// The last attempt at or before the window end failed.
    Failed { at_ms: u64, error: String },
    /// No good sample inside the window at all.
    NoSample,
}

/// Everything the bars need, reduced per node and window.
pub(super) struct Facts<'a> {
    pub(super) obs: &'a Observations,
    /// Gap tolerance: `gap_factor` × the sample interval, never more than the planned window
    /// length (and, per window, never more than that window's length: [`Facts::tolerance`]).
    pub(super) tolerance_ms: u64,
    /// [window] tolerance of that window.
    pub(super) window_tolerance: Vec<u64>,
    /// [window] shorter than half the planned window length.
    pub(super) partial: Vec<bool>,
    /// [node][window] closing evidence.
    pub(super) closing: Vec<Vec<Closing>>,
    /// [node][window] the window's opening is unobserved (no earlier good sample, and failed
    /// attempts before the first good one inside).
    pub(super) opening: Vec<Vec<bool>>,
    /// [window] failed sampling attempts, folded, sorted by time then node.
    pub(super) failures: Vec<Vec<SamplingFailure>>,
    /// [node] the node's series (kept for the soak-level passes: resources, causes).
    pub(super) series: Vec<NodeSeries<'a>>,
    /// resource gauge → [node] its good samples as `(time, instance, value)`.
    pub(super) gauge_points: BTreeMap<String, Vec<Vec<GaugePoint>>>,
    pub(super) nodes: Vec<String>,
    /// counter → [node][window]
    pub(super) deltas: BTreeMap<String, Vec<Vec<Delta>>>,
    /// value → [node][window]
    pub(super) values: BTreeMap<ValueKey, Vec<Vec<ValueFact>>>,
    /// [node][window] gaps of any good sample
    pub(super) coverage: Vec<Vec<Vec<(u64, u64)>>>,
    /// [node][window] failed sampling attempts
    pub(super) missing: Vec<Vec<usize>>,
    pub(super) restarts: Vec<RestartRecord>,
    pub(super) gaps: Vec<GapRecord>,
    pub(super) integrity: Vec<IntegrityRecord>,
}

impl<'a> Facts<'a> {
    pub(super) fn collect(obs: &'a Observations, profile: &Profile) -> Facts<'a> {
        let interval = obs.run.sample_interval_ms as f64;
        let mut tolerance_ms = (interval * profile.evidence.gap_factor).round() as u64;
        // The tolerance never exceeds the window: a span as long as a window unobserved is
        // never "one missed sample".
        if let Some(window_ms) = obs.run.window_ms.filter(|&w| w > 0) {
            tolerance_ms = tolerance_ms.min(window_ms);
        }
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
        // The resource bars' gauges are read in the same single pass over every sample.
        let resource_gauges: BTreeSet<&str> =
            profile.resources.iter().map(|r| r.gauge.as_str()).collect();
        let gauge_names: Vec<&str> = values
            .iter()
            .flat_map(|key| match key {
                ValueKey::Gauge(g) => vec![g.as_str()],
                ValueKey::Ratio(n, d) => vec![n.as_str(), d.as_str()],
            })
            .chain(resource_gauges.iter().copied())
            .collect::<BTreeSet<&str>>()
            .into_iter()
            .collect();
        let spans: Vec<(u64, u64)> = obs.windows.iter().map(|w| (w.start_ms, w.end_ms)).collect();
        let window_tolerance: Vec<u64> = spans
            .iter()
            .map(|&(s, e)| tolerance_ms.min(e.saturating_sub(s)))
            .collect();
        // Shorter than half the planned length, with 1 % of the plan as slack: a window after
        // an overrunning workload is scheduled at half the interval, give or take clock jitter.
        let partial = spans
            .iter()
            .map(|&(s, e)| {
                obs.run.window_ms.is_some_and(|planned| {
                    e.saturating_sub(s).saturating_mul(2) + planned / 100 < planned
                })
            })
            .collect();
        let mut facts = Facts {
            obs,
            tolerance_ms,
            window_tolerance: window_tolerance.clone(),
            partial,
            closing: Vec::new(),
            opening: Vec::new(),
            failures: vec![Vec::new(); spans.len()],
            series: Vec::new(),
            gauge_points: resource_gauges
                .iter()
                .map(|g| (g.to_string(), Vec::new()))
                .collect(),
            nodes: Vec::new(),
            deltas: counters.iter().map(|c| (c.clone(), Vec::new())).collect(),
            values: values.iter().map(|v| (v.clone(), Vec::new())).collect(),
            coverage: Vec::new(),
            missing: Vec::new(),
            restarts: Vec::new(),
            gaps: Vec::new(),
            integrity: Vec::new(),
        };
        const NO_SAMPLES: &[Sample] = &[];
        let mut integrity_seen = BTreeSet::new();
        for name in &nodes {
            let samples = obs.samples.get(name).map_or(NO_SAMPLES, Vec::as_slice);
            let series = NodeSeries::new(samples);
            let times = series.good_times();
            let columns = series.columns(&counter_names, &gauge_names);
            let mut coverage = Vec::with_capacity(spans.len());
            let mut missing = Vec::with_capacity(spans.len());
            let mut closing = Vec::with_capacity(spans.len());
            let mut opening = Vec::with_capacity(spans.len());
            for (w, &(start, end)) in spans.iter().enumerate() {
                let mut gaps = crate::series::gaps(&times, start, end, window_tolerance[w]);
                // The sampler failed before this node's first good sample: the window's
                // opening is unobserved, however short the span.
                let unobserved = series.opening_unobserved(start, end);
                if let Some(first) = unobserved
                    && !gaps.iter().any(|&(from, _)| from <= start)
                {
                    gaps.insert(0, (start, first));
                }
                opening.push(unobserved.is_some());
                let close = if series.closing_evidence(start, end) {
                    Closing::Evidence
                } else {
                    match series.closing_failure(end) {
                        Some((at_ms, error)) if at_ms > start => Closing::Failed {
                            at_ms,
                            error: error.to_string(),
                        },
                        _ => Closing::NoSample,
                    }
                };
                // No closing evidence is a gap that reaches the window end, even when the
                // last good sample is within the tolerance of it.
                if close != Closing::Evidence && !gaps.iter().any(|&(_, to)| to >= end) {
                    let from = series
                        .last_good_at_or_before(end)
                        .filter(|&t| t > start)
                        .unwrap_or(start);
                    gaps.push((from, end));
                }
                for failed in series.failures_in(start, end) {
                    facts.failures[w].push(SamplingFailure {
                        node: name.clone(),
                        from_ms: failed.from_ms,
                        to_ms: failed.to_ms,
                        attempts: failed.attempts,
                        error: failed.error.to_string(),
                    });
                }
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
                closing.push(close);
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
                    .enumerate()
                    .map(|(w, &(s, e))| {
                        let mut delta = cs.window_delta(s, e, window_tolerance[w]);
                        // Without closing (or opening) evidence part of the window is
                        // unobserved: what was definitely seen still counts, nothing bounds
                        // the rest.
                        if closing[w] != Closing::Evidence || opening[w] {
                            delta.hi = None;
                        }
                        delta
                    })
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
                    .enumerate()
                    .map(|(w, &(s, e))| ValueFact {
                        max: vs.max_in(s, e),
                        last: vs.last_in(s, e),
                        gapped: closing[w] != Closing::Evidence
                            || !vs.gaps(s, e, window_tolerance[w]).is_empty(),
                    })
                    .collect();
                if let Some(v) = facts.values.get_mut(key) {
                    v.push(per_window);
                }
            }
            for (gauge, per_node) in facts.gauge_points.iter_mut() {
                let column = gauge_names
                    .binary_search(&gauge.as_str())
                    .ok()
                    .and_then(|i| columns.gauges.get(i));
                per_node.push(column.map_or_else(Vec::new, |c| series.points_of(c)));
            }
            facts.closing.push(closing);
            facts.opening.push(opening);
            facts.series.push(series);
        }
        facts.nodes = nodes;
        for failures in &mut facts.failures {
            failures.sort_by(|a, b| (a.from_ms, &a.node).cmp(&(b.from_ms, &b.node)));
        }
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

    pub(super) fn delta(&self, counter: &str, node: usize, window: usize) -> Delta {
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

    pub(super) fn value(&self, key: &ValueKey, node: usize, window: usize) -> ValueFact {
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

    /// Whether window `w` counts as judged: neither warm-up nor partial.
    pub(super) fn judged(&self, w: usize) -> bool {
        !self.obs.windows[w].warmup && !self.partial[w]
    }

    /// Any integrity error in a counter the profile reads, for this node and window.
    pub(super) fn integrity_in(&self, node: usize, window: usize) -> bool {
        self.deltas.values().any(|per_node| {
            per_node
                .get(node)
                .and_then(|w| w.get(window))
                .is_some_and(|d| d.integrity)
        })
    }
}

/// The counters and derived values the profile (and the adaptive degradation checks) read.
pub(super) fn needed_metrics(profile: &Profile) -> (BTreeSet<String>, BTreeSet<ValueKey>) {
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
            | Rule::FaultEffect
            | Rule::FaultResidue
            | Rule::PartitionHeal { .. }
            | Rule::Cooling
            | Rule::FirstAttempt
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
