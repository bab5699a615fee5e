//! `report.html`: one self-contained page with the verdict and charts, rendered from stored
//! evidence only (so `soak report DIR` reproduces the file a run wrote, byte for byte).
//!
//! Built in one pass over the samples, node by node ([`ReportBuilder::add_node`]), so a 24 h ×
//! 100-node proof never has to sit in memory at once, then [`ReportBuilder::html`]. The page
//! inlines uPlot (MIT, `proofs/assets/`), the chart data as JSON in a
//! `<script type="application/json" id="soak-data">` tag and its own script; every chart also
//! has a static SVG rendered here and every table is plain HTML, so the page reads without
//! JavaScript and prints.
//!
//! Display downsampling: when the run has more sampler rounds than [`MAX_POINTS`], samples are
//! put in fixed buckets (at least two sample intervals wide) and each chart point is the
//! **largest** value in its bucket — spikes stay visible; an empty bucket is a gap.

mod html;
mod svg;

use std::collections::{BTreeMap, BTreeSet};

use serde::Serialize;
use soak_gates::Verdict;
use soak_gates::model::{Metrics, Sample, WindowRecord};
use soak_gates::profile::{Profile, Rule};

use crate::faults::{FaultJournal, FaultPeriod};
use crate::meta::{RunMeta, RunStatus};
use crate::points::{Point, Span, columns, gaps, points, rate_at, restarts};
use crate::summary::EndSummary;

/// Sampled metrics with this prefix (RSS, CPU, open FDs, …) get a chart when a node reports
/// them.
pub const PROCESS_PREFIX: &str = "process_";

/// Most points per time series before samples are bucketed for display.
pub const MAX_POINTS: u64 = 600;

/// Everything but the samples that a report shows.
#[derive(Debug, Clone, Copy)]
pub struct ReportInput<'a> {
    /// Run metadata.
    pub meta: &'a RunMeta,
    /// Run status.
    pub status: RunStatus,
    /// The verdict; `None` for an incomplete proof (the page then says so and shows no verdict).
    pub verdict: Option<&'a Verdict>,
    /// Window records.
    pub windows: &'a [WindowRecord],
    /// The fault journal (empty when the proof has none).
    pub faults: &'a FaultJournal,
    /// The end summary, when a verdict exists.
    pub summary: Option<&'a EndSummary>,
    /// Things noticed while reading the proof.
    pub notes: &'a [String],
}

/// Where a chart's values come from.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord)]
enum Source {
    /// Per-second increase of a counter, per process epoch.
    Rate(String),
    /// A gauge as sampled.
    Gauge(String),
    /// One gauge over another, per sample (0 when both are 0; none when only the denominator is).
    Ratio(String, String),
}

impl Source {
    fn id(&self) -> String {
        match self {
            Source::Rate(c) => format!("rate:{c}"),
            Source::Gauge(g) => format!("gauge:{g}"),
            Source::Ratio(n, d) => format!("ratio:{n}/{d}"),
        }
    }

    fn unit(&self) -> &'static str {
        match self {
            Source::Rate(_) => "per second",
            Source::Gauge(_) => "value",
            Source::Ratio(..) => "ratio",
        }
    }

    /// The spec's values at every attempt of one node, from its attempt columns.
    fn values(&self, at: &Columns<'_, '_>) -> Vec<Option<f64>> {
        let n = at.points.len();
        match self {
            Source::Rate(c) => match at.counter(c) {
                Some(column) => (0..n).map(|i| rate_at(at.points, column, i)).collect(),
                None => vec![None; n],
            },
            Source::Gauge(g) => match at.gauge(g) {
                Some(column) => column.iter().map(|v| v.filter(|v| v.is_finite())).collect(),
                None => vec![None; n],
            },
            Source::Ratio(num, den) => match (at.gauge(num), at.gauge(den)) {
                (Some(num), Some(den)) => num
                    .iter()
                    .zip(den)
                    .map(|(n, d)| {
                        let (n, d) = ((*n)?, (*d)?);
                        if d > 0.0 {
                            Some(n / d).filter(|v| v.is_finite())
                        } else if n == 0.0 {
                            Some(0.0)
                        } else {
                            None
                        }
                    })
                    .collect(),
                _ => vec![None; n],
            },
        }
    }
}

/// One node's attempts with the columns every chart reads.
struct Columns<'p, 'a> {
    points: &'p [Point<'a>],
    counter_names: Vec<&'p str>,
    gauge_names: Vec<&'p str>,
    counters: Vec<Vec<Option<u64>>>,
    gauges: Vec<Vec<Option<f64>>>,
}

impl Columns<'_, '_> {
    fn counter(&self, name: &str) -> Option<&[Option<u64>]> {
        let k = self.counter_names.binary_search(&name).ok()?;
        Some(&self.counters[k])
    }

    fn gauge(&self, name: &str) -> Option<&[Option<f64>]> {
        let k = self.gauge_names.binary_search(&name).ok()?;
        Some(&self.gauges[k])
    }
}

#[derive(Debug, Clone)]
struct ChartSpec {
    title: String,
    source: Source,
}

/// The charts every report has, in display order: every counter and gauge the built-in gates
/// use. The run's own gate adds what it names; sampled `process_*` metrics are added as found.
fn default_specs() -> Vec<ChartSpec> {
    let rate = |c: &str, t: &str| ChartSpec {
        title: t.to_string(),
        source: Source::Rate(c.to_string()),
    };
    vec![
        rate("dispatcher_completed_total", "dispatcher completions"),
        rate("dispatcher_timeouts_total", "dispatcher timeouts"),
        rate(
            "recv_pump_dropped_full_total",
            "recv-pump drops (queue full)",
        ),
        rate("peer_send_timeouts_total", "per-peer send timeouts"),
        rate(
            "outbound_high_water_total",
            "outbound queue high-water events",
        ),
        ChartSpec {
            title: "suppression ratio (suppressed / known topic peers)".into(),
            source: Source::Ratio("suppressed_topic_peers".into(), "known_topic_peers".into()),
        },
        ChartSpec {
            title: "outbound queue high-water depth".into(),
            source: Source::Gauge("outbound_queue_max_depth".into()),
        },
        ChartSpec {
            title: "recv-pump depth".into(),
            source: Source::Gauge("recv_pump_depth".into()),
        },
    ]
}

/// The gate the proof was judged with: its stored TOML, else the built-in of that name.
fn profile_of(meta: &RunMeta) -> Option<Profile> {
    meta.gate_source
        .as_deref()
        .and_then(|text| Profile::from_toml_str(text, "gate.toml").ok())
        .or_else(|| Profile::builtin(&meta.gate).ok())
}

fn profile_specs(profile: &Profile) -> Vec<ChartSpec> {
    let rate = |c: &String| ChartSpec {
        title: format!("{c} (rate)"),
        source: Source::Rate(c.clone()),
    };
    let mut out = Vec::new();
    for bar in &profile.bars {
        match &bar.rule {
            Rule::Counter { counter, .. } => out.push(rate(counter)),
            Rule::CounterRatio {
                numerator,
                denominator,
                ..
            } => {
                out.push(rate(numerator));
                out.push(rate(denominator));
            }
            Rule::Gauge { gauge, .. } => out.push(ChartSpec {
                title: gauge.clone(),
                source: Source::Gauge(gauge.clone()),
            }),
            Rule::GaugeRatio {
                numerator,
                denominator,
                ..
            } => out.push(ChartSpec {
                title: format!("{numerator} / {denominator}"),
                source: Source::Ratio(numerator.clone(), denominator.clone()),
            }),
            _ => {}
        }
    }
    if let Some(adaptive) = &profile.adaptive {
        out.push(rate(&adaptive.events));
        out.push(rate(&adaptive.exposure));
    }
    out
}

/// The keys of a sorted map that start with [`PROCESS_PREFIX`].
fn process_keys<V>(metrics: &Metrics<V>) -> impl Iterator<Item = String> + '_ {
    metrics
        .keys()
        .skip_while(|k| *k < PROCESS_PREFIX)
        .take_while(|k| k.starts_with(PROCESS_PREFIX))
        .map(str::to_owned)
}

/// How sample times map to chart points.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
struct Axis {
    /// 0: one point per sampler round; else the bucket width, ms.
    bucket_ms: u64,
}

impl Axis {
    fn key(self, at: u64) -> u64 {
        // 0 = one point per round: the sample time itself.
        at.checked_div(self.bucket_ms)
            .map_or(at, |bucket| bucket * self.bucket_ms)
    }
}

/// The run's extent for the time axis: from the start (or the first window) to the last
/// window end.
fn extent(meta: &RunMeta, windows: &[WindowRecord]) -> (u64, u64) {
    let start = windows
        .iter()
        .map(|w| w.start_ms)
        .chain([meta.started_at_ms])
        .min()
        .unwrap_or(meta.started_at_ms);
    let end = windows
        .iter()
        .map(|w| w.end_ms)
        .max()
        .unwrap_or(start)
        .max(start);
    (start, end)
}

fn axis_for(meta: &RunMeta, windows: &[WindowRecord]) -> Axis {
    let (start, end) = extent(meta, windows);
    let interval = meta.sample_interval_ms.max(1);
    let span = end - start;
    if span / interval <= MAX_POINTS {
        Axis { bucket_ms: 0 }
    } else {
        let width = span.div_ceil(MAX_POINTS).max(2 * interval);
        Axis {
            bucket_ms: width.div_ceil(1000) * 1000,
        }
    }
}

/// A band to shade on every time-series chart.
#[derive(Debug, Clone, PartialEq, Serialize)]
struct Band {
    kind: &'static str,
    from: u64,
    to: u64,
    label: String,
}

/// Accumulates the report node by node.
#[derive(Debug)]
pub struct ReportBuilder {
    axis: Axis,
    interval_ms: u64,
    specs: Vec<ChartSpec>,
    /// How many of `specs` are fixed (the rest were discovered in samples).
    fixed: usize,
    /// Per chart, per node: point key → the largest value in it.
    series: Vec<BTreeMap<String, BTreeMap<u64, f64>>>,
    restarts: Vec<(String, Span)>,
    gaps: Vec<(String, Span)>,
    sampled: BTreeSet<String>,
}

impl ReportBuilder {
    /// A builder for the proof described by `meta` and `windows`.
    pub fn new(meta: &RunMeta, windows: &[WindowRecord]) -> ReportBuilder {
        let mut specs = default_specs();
        if let Some(profile) = profile_of(meta) {
            specs.extend(profile_specs(&profile));
        }
        let mut seen = BTreeSet::new();
        specs.retain(|s| seen.insert(s.source.id()));
        ReportBuilder {
            axis: axis_for(meta, windows),
            interval_ms: meta.sample_interval_ms,
            series: vec![BTreeMap::new(); specs.len()],
            fixed: specs.len(),
            specs,
            restarts: Vec::new(),
            gaps: Vec::new(),
            sampled: BTreeSet::new(),
        }
    }

    fn discover(&mut self, samples: &[Sample]) {
        let mut found = BTreeSet::new();
        for sample in samples {
            if let soak_gates::model::SampleOutcome::Ok(data) = &sample.outcome {
                // Sorted names: only the keys from `process_` on can match.
                found.extend(process_keys(&data.counters).map(Source::Rate));
                found.extend(process_keys(&data.gauges).map(Source::Gauge));
            }
        }
        for source in found {
            if self.specs.iter().all(|s| s.source != source) {
                let title = match &source {
                    Source::Rate(c) => format!("{c} (rate)"),
                    Source::Gauge(g) | Source::Ratio(g, _) => g.clone(),
                };
                self.specs.push(ChartSpec { title, source });
                self.series.push(BTreeMap::new());
            }
        }
    }

    /// Adds one node's samples.
    pub fn add_node(&mut self, node: &str, samples: &[Sample]) {
        self.sampled.insert(node.to_string());
        self.discover(samples);
        let points = points(samples, self.interval_ms);
        let mut counter_names: Vec<&str> = Vec::new();
        let mut gauge_names: Vec<&str> = Vec::new();
        for spec in &self.specs {
            match &spec.source {
                Source::Rate(c) => counter_names.push(c),
                Source::Gauge(g) => gauge_names.push(g),
                Source::Ratio(n, d) => gauge_names.extend([n.as_str(), d.as_str()]),
            }
        }
        counter_names.sort_unstable();
        counter_names.dedup();
        gauge_names.sort_unstable();
        gauge_names.dedup();
        let (counters, gauges) = columns(&points, &counter_names, &gauge_names);
        let at = Columns {
            points: &points,
            counter_names,
            gauge_names,
            counters,
            gauges,
        };
        for (spec, series) in self.specs.iter().zip(self.series.iter_mut()) {
            let mut buckets: BTreeMap<u64, f64> = BTreeMap::new();
            for (point, v) in points.iter().zip(spec.source.values(&at)) {
                if let Some(v) = v {
                    let slot = buckets.entry(self.axis.key(point.at)).or_insert(v);
                    *slot = slot.max(v);
                }
            }
            series.insert(node.to_string(), buckets);
        }
        self.restarts
            .extend(restarts(&points).into_iter().map(|s| (node.to_string(), s)));
        self.gaps.extend(
            gaps(&points, self.interval_ms)
                .into_iter()
                .map(|s| (node.to_string(), s)),
        );
    }

    /// The page.
    pub fn html(mut self, input: &ReportInput<'_>) -> String {
        // Charts in a stable order whatever the order nodes were added in: fixed ones first,
        // then discovered ones by id.
        let mut tail: Vec<_> = self
            .specs
            .split_off(self.fixed)
            .into_iter()
            .zip(self.series.split_off(self.fixed))
            .collect();
        tail.sort_by_key(|(s, _): &(ChartSpec, _)| s.source.id());
        for (spec, series) in tail {
            self.specs.push(spec);
            self.series.push(series);
        }
        let data = self.data(input);
        html::page(input, &data)
    }

    fn node_order(&self, meta: &RunMeta) -> Vec<String> {
        let mut out: Vec<String> = meta.nodes.iter().map(|n| n.name.clone()).collect();
        for name in &self.sampled {
            if !out.contains(name) {
                out.push(name.clone());
            }
        }
        out
    }

    fn data(&self, input: &ReportInput<'_>) -> ReportData {
        let nodes = self.node_order(input.meta);
        let mut keys = BTreeSet::new();
        for series in &self.series {
            for buckets in series.values() {
                keys.extend(buckets.keys().copied());
            }
        }
        let x: Vec<u64> = keys.into_iter().collect();
        let charts = self
            .specs
            .iter()
            .zip(&self.series)
            .map(|(spec, series)| {
                let values: Vec<Vec<Option<f64>>> = nodes
                    .iter()
                    .map(|node| {
                        let buckets = series.get(node);
                        x.iter()
                            .map(|k| buckets.and_then(|b| b.get(k)).map(|v| round_sig(*v)))
                            .collect()
                    })
                    .collect();
                Chart {
                    id: spec.source.id(),
                    title: spec.title.clone(),
                    unit: spec.source.unit(),
                    values,
                }
            })
            .collect();
        let windows_by_index: BTreeMap<u32, (u64, u64)> = input
            .windows
            .iter()
            .map(|w| (w.index, (w.start_ms, w.end_ms)))
            .collect();
        let (_, run_end) = extent(input.meta, input.windows);
        let run_end = run_end.max(x.last().copied().unwrap_or(0));
        let periods = input.faults.periods(&windows_by_index, run_end);
        let mut bands: Vec<Band> = periods
            .iter()
            .map(|p: &FaultPeriod| Band {
                kind: "fault",
                from: p.from_ms,
                to: p.to_ms,
                label: format!(
                    "{} (window {}) on {}",
                    p.fault,
                    p.window,
                    p.targets.join(" ")
                ),
            })
            .collect();
        bands.extend(self.restarts.iter().map(|(node, s)| Band {
            kind: "restart",
            from: s.from,
            to: s.to,
            label: format!("{node} restarted (new process epoch)"),
        }));
        bands.extend(self.gaps.iter().map(|(node, s)| Band {
            kind: "gap",
            from: s.from,
            to: s.to,
            label: format!("{node}: no good sample"),
        }));
        let window_marks = match input.verdict {
            Some(v) => v
                .windows
                .iter()
                .map(|w| WindowMark {
                    index: w.index,
                    from: w.start_ms,
                    to: w.end_ms,
                    verdict: w.verdict.as_str(),
                })
                .collect(),
            None => input
                .windows
                .iter()
                .map(|w| WindowMark {
                    index: w.index,
                    from: w.start_ms,
                    to: w.end_ms,
                    verdict: "NONE",
                })
                .collect(),
        };
        ReportData {
            version: 1,
            run_id: input.meta.run_id.clone(),
            axis: self.axis,
            nodes,
            x,
            charts,
            bands,
            windows: window_marks,
            latency: latency_by_window(input.windows),
            fanout: fanout_by_window(input.windows),
            periods,
            restarts: self
                .restarts
                .iter()
                .map(|(n, s)| (n.clone(), s.from, s.to))
                .collect(),
            gaps: self
                .gaps
                .iter()
                .map(|(n, s)| (n.clone(), s.from, s.to))
                .collect(),
        }
    }
}

/// 4 significant digits: enough to read a chart, and short.
fn round_sig(v: f64) -> f64 {
    if v == 0.0 || !v.is_finite() {
        return v;
    }
    let digits = 4 - 1 - v.abs().log10().floor() as i32;
    let scale = 10f64.powi(digits);
    let rounded = (v * scale).round() / scale;
    if rounded.is_finite() { rounded } else { v }
}

/// The chart data embedded in the page.
#[derive(Debug, Clone, Serialize)]
pub(crate) struct ReportData {
    version: u32,
    run_id: String,
    axis: Axis,
    /// Node names, in series order.
    nodes: Vec<String>,
    /// Point keys: sample times or bucket starts, unix ms.
    x: Vec<u64>,
    charts: Vec<Chart>,
    bands: Vec<Band>,
    windows: Vec<WindowMark>,
    latency: Vec<WindowLatency>,
    fanout: FanoutData,
    #[serde(skip)]
    periods: Vec<FaultPeriod>,
    #[serde(skip)]
    restarts: Vec<(String, u64, u64)>,
    #[serde(skip)]
    gaps: Vec<(String, u64, u64)>,
}

#[derive(Debug, Clone, Serialize)]
struct Chart {
    id: String,
    title: String,
    unit: &'static str,
    /// Per node (in `nodes` order), one value per `x` (null: no value there).
    values: Vec<Vec<Option<f64>>>,
}

#[derive(Debug, Clone, Serialize)]
struct WindowMark {
    index: u32,
    from: u64,
    to: u64,
    verdict: &'static str,
}

/// Phase A latency distribution of one window, µs.
#[derive(Debug, Clone, Serialize)]
struct WindowLatency {
    index: u32,
    start_ms: u64,
    pairs: usize,
    delivered: usize,
    min: Option<u64>,
    p50: Option<u64>,
    p90: Option<u64>,
    p99: Option<u64>,
    max: Option<u64>,
}

fn latency_by_window(windows: &[WindowRecord]) -> Vec<WindowLatency> {
    windows
        .iter()
        .filter_map(|w| {
            let phase_a = w.phase_a.as_ref()?;
            let latencies: Vec<u64> = phase_a
                .pairs
                .iter()
                .filter(|p| p.is_delivered())
                .filter_map(|p| p.latency_us)
                .collect();
            let q = crate::summary::Quantiles::of(latencies);
            Some(WindowLatency {
                index: w.index,
                start_ms: w.start_ms,
                pairs: phase_a.pairs.len(),
                delivered: phase_a.pairs.iter().filter(|p| p.is_delivered()).count(),
                min: q.map(|q| q.min),
                p50: q.map(|q| q.p50),
                p90: q.map(|q| q.p90),
                p99: q.map(|q| q.p99),
                max: q.map(|q| q.max),
            })
        })
        .collect()
}

/// Fanout per window and subscriber.
#[derive(Debug, Clone, Default, Serialize)]
struct FanoutData {
    /// Subscriber names, in series order.
    subscribers: Vec<String>,
    /// Window indices with a burst.
    windows: Vec<u32>,
    /// Per subscriber, per window: delivery ratio (received / expected).
    ratio: Vec<Vec<Option<f64>>>,
    /// Per subscriber, per window: p99 latency, ms.
    p99_ms: Vec<Vec<Option<f64>>>,
}

fn fanout_by_window(windows: &[WindowRecord]) -> FanoutData {
    let bursts: Vec<(u32, &soak_gates::model::FanoutResult)> = windows
        .iter()
        .filter_map(|w| w.fanout.as_ref().map(|f| (w.index, f)))
        .collect();
    let mut subscribers: Vec<String> = Vec::new();
    for (_, f) in &bursts {
        for s in &f.subscribers {
            if !subscribers.contains(&s.node) {
                subscribers.push(s.node.clone());
            }
        }
    }
    let cell = |name: &str, pick: &dyn Fn(&soak_gates::model::SubscriberResult) -> Option<f64>| {
        bursts
            .iter()
            .map(|(_, f)| f.subscribers.iter().find(|s| s.node == name).and_then(pick))
            .collect::<Vec<_>>()
    };
    FanoutData {
        windows: bursts.iter().map(|(i, _)| *i).collect(),
        ratio: subscribers
            .iter()
            .map(|n| {
                cell(n, &|s| {
                    (s.expected > 0).then(|| round_sig(s.received as f64 / s.expected as f64))
                })
            })
            .collect(),
        p99_ms: subscribers
            .iter()
            .map(|n| cell(n, &|s| s.p99_us.map(|us| round_sig(us as f64 / 1000.0))))
            .collect(),
        subscribers,
    }
}

#[cfg(test)]
mod tests;
