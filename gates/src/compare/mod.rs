//! `soak compare`: a regression check of a candidate proof against a base proof, classified
//! metric by metric the way Kayenta's judge does.
//!
//! Pure like the evaluator: observations and profiles in, a [`Report`] out. Entry points:
//! [`incomparable`] (why two proofs cannot be compared) and [`compare`].
//!
//! Metrics (over the judged — non-warm-up — windows of each proof):
//!
//! * `verdict.<bar>` / `soak.<bar>`: how many windows each bar judged GO, NO-GO, UNKNOWN. The
//!   bar is the tolerance: a higher NO-GO share in the candidate is a regression (High), a
//!   lower one an improvement (Low); a bar with no definite verdict on a side, or more UNKNOWN
//!   windows in the candidate, is NoData.
//! * distributions, each classified by [`classify`] (rank-sum test, Hodges–Lehmann shift and
//!   interval against a tolerance, effect-size gate):
//!   `phase_a.latency` (every delivered pair, ms), `fanout.p50` / `fanout.p99` (per subscriber
//!   and window, ms), `fanout.delivery` (per subscriber and window), `rate.<counter>` (per node
//!   and window, per second, for every counter the gate reads), `ratio.<bar>` and
//!   `gauge.<bar>` (the ratio and gauge bars' values per node and window).
//!
//! The overall result is `regression` when any metric moved the bad way, else `unknown` when
//! any judged metric is NoData (missing evidence never reads as "no regression"), else
//! `no regression`.

pub mod stats;

use std::collections::{BTreeMap, BTreeSet};

use serde::{Deserialize, Serialize};

use crate::evaluate::evaluate;
use crate::model::{Observations, WindowRecord};
use crate::outcome::Outcome;
use crate::profile::{Profile, Rule, Scope};
use crate::series::NodeSeries;
use crate::verdict::Verdict;

use self::stats::{hodges_lehmann, median_sorted, rank_sum};

/// Thresholds of the classifier.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
pub struct Settings {
    /// Confidence level of the Hodges–Lehmann interval (Kayenta: 0.95).
    pub confidence: f64,
    /// Allowed shift as a fraction of the base median (Kayenta's `tolerance`, 0.25).
    pub tolerance: f64,
    /// Smallest allowed shift of a latency, milliseconds: below it no shift is a regression,
    /// however significant (a loaded CI machine moves loopback latencies by a few ms).
    pub latency_floor_ms: f64,
    /// Effect-size gate: Vargha–Delaney A (probability a candidate value exceeds a base value)
    /// at least this for High, at most `1 − min_effect` for Low. 0.64 is a "medium" effect.
    pub min_effect: f64,
}

impl Default for Settings {
    fn default() -> Self {
        Settings {
            confidence: 0.95,
            tolerance: 0.25,
            latency_floor_ms: 5.0,
            min_effect: 0.64,
        }
    }
}

impl Settings {
    /// Checks the thresholds; the message names the bad one.
    pub fn validate(&self) -> Result<(), String> {
        if !(self.confidence > 0.5 && self.confidence < 1.0) {
            return Err(format!(
                "confidence must be in (0.5, 1), got {}",
                self.confidence
            ));
        }
        if !(self.tolerance.is_finite() && self.tolerance >= 0.0) {
            return Err(format!("tolerance must be ≥ 0, got {}", self.tolerance));
        }
        if !(self.latency_floor_ms.is_finite() && self.latency_floor_ms >= 0.0) {
            return Err(format!(
                "latency floor must be ≥ 0 ms, got {}",
                self.latency_floor_ms
            ));
        }
        if !(self.min_effect >= 0.5 && self.min_effect <= 1.0) {
            return Err(format!(
                "effect size must be in [0.5, 1], got {}",
                self.min_effect
            ));
        }
        Ok(())
    }
}

/// Kayenta's metric classification.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub enum Classification {
    /// No shift beyond the tolerance.
    Pass,
    /// The candidate is higher.
    High,
    /// The candidate is lower.
    Low,
    /// Not enough evidence on one side (or both) to classify.
    NoData,
}

impl Classification {
    /// `Pass`, `High`, `Low`, `NoData`.
    pub fn as_str(self) -> &'static str {
        match self {
            Classification::Pass => "Pass",
            Classification::High => "High",
            Classification::Low => "Low",
            Classification::NoData => "NoData",
        }
    }
}

/// Which way a metric gets worse.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Worse {
    /// Higher is worse (latency, error rates, NO-GO windows).
    Higher,
    /// Lower is worse (delivery ratios).
    Lower,
    /// Informational (e.g. the workload's own throughput): classified, never a regression.
    Neither,
}

/// Unit of a metric's values.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Unit {
    /// Milliseconds.
    Ms,
    /// Events per second.
    PerSecond,
    /// A dimensionless ratio.
    Ratio,
    /// A gauge's own unit.
    Value,
    /// Judged windows (verdict counts).
    Windows,
}

impl Unit {
    /// Short suffix for tables (`ms`, `/s`, empty).
    pub fn suffix(self) -> &'static str {
        match self {
            Unit::Ms => " ms",
            Unit::PerSecond => "/s",
            _ => "",
        }
    }
}

/// The overall result of a comparison.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Overall {
    /// No metric moved the bad way and every metric had evidence.
    NoRegression,
    /// At least one metric moved the bad way beyond its tolerance.
    Regression,
    /// No regression seen, but some metric lacks evidence: not a pass.
    Unknown,
}

impl Overall {
    /// `no regression`, `regression`, `unknown`.
    pub fn as_str(self) -> &'static str {
        match self {
            Overall::NoRegression => "no regression",
            Overall::Regression => "regression",
            Overall::Unknown => "unknown",
        }
    }
}

/// Summary of one side of a distribution metric.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
pub struct Summary {
    /// Observations used.
    pub n: usize,
    /// Observations left out (no exact value: an evidence gap, an infinite ratio).
    pub excluded: usize,
    /// Median (`None` when empty).
    pub median: Option<f64>,
    /// Mean (`None` when empty).
    pub mean: Option<f64>,
}

/// Verdict counts of one bar on one side.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Counts {
    /// Windows judged GO.
    pub go: u32,
    /// Windows judged NO-GO.
    pub no_go: u32,
    /// Windows judged UNKNOWN.
    pub unknown: u32,
}

impl Counts {
    fn add(&mut self, outcome: Outcome) {
        match outcome {
            Outcome::Go => self.go += 1,
            Outcome::NoGo => self.no_go += 1,
            Outcome::Unknown => self.unknown += 1,
        }
    }

    fn total(&self) -> u32 {
        self.go + self.no_go + self.unknown
    }

    fn definite(&self) -> u32 {
        self.go + self.no_go
    }
}

/// The test statistics behind a distribution metric's classification.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
pub struct Statistics {
    /// Mann-Whitney U of the candidate.
    pub u: f64,
    /// Continuity-corrected z (positive: candidate higher).
    pub z: f64,
    /// Two-sided p-value.
    pub p_value: f64,
    /// Vargha–Delaney A (0.5: no effect).
    pub effect: f64,
    /// Hodges–Lehmann shift, candidate − base.
    pub shift: f64,
    /// Its confidence interval (`None`: too few observations for one).
    pub interval: Option<(f64, f64)>,
    /// The tolerance the interval was held against: shifts within ±this are a Pass.
    pub allowed_shift: f64,
}

/// One compared metric.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct MetricResult {
    /// Stable id, e.g. `phase_a.latency`, `rate.dispatcher_timeouts_total`, `verdict.phase_a`.
    pub id: String,
    /// What it is, in words.
    pub title: String,
    /// Unit of the values.
    pub unit: Unit,
    /// Which way is worse.
    pub worse: Worse,
    /// The classification.
    pub classification: Classification,
    /// Whether this is a regression (classified the worse way).
    pub regression: bool,
    /// Why, in words (names the shift and the tolerance).
    pub reason: String,
    /// Base side (distribution metrics).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub base: Option<Summary>,
    /// Candidate side (distribution metrics).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub candidate: Option<Summary>,
    /// Test statistics (distribution metrics that got as far as the test).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub statistics: Option<Statistics>,
    /// Verdict counts (bar metrics): base, candidate.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub verdicts: Option<(Counts, Counts)>,
}

impl MetricResult {
    /// Whether a NoData here leaves the comparison undecided (informational metrics do not).
    pub fn undecided(&self) -> bool {
        self.classification == Classification::NoData && self.worse != Worse::Neither
    }
}

/// One side's run facts in the report.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct RunSummary {
    /// Run id.
    pub run_id: String,
    /// Gate name.
    pub gate: String,
    /// The run's own soak verdict under its gate.
    pub verdict: Outcome,
    /// Nodes.
    pub nodes: usize,
    /// Judged (non-warm-up) windows.
    pub judged_windows: usize,
}

/// The result of [`compare`].
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Report {
    /// Version of this shape; bumped on incompatible change.
    pub compare_version: u32,
    /// Overall result.
    pub result: Overall,
    /// Base run.
    pub base: RunSummary,
    /// Candidate run.
    pub candidate: RunSummary,
    /// Thresholds used.
    pub settings: Settings,
    /// Every metric, in report order.
    pub metrics: Vec<MetricResult>,
    /// Why the proofs are not strictly comparable (only with `--force`), and other notes.
    pub notes: Vec<String>,
}

/// [`Report::compare_version`] of this build.
pub const COMPARE_VERSION: u32 = 1;

impl Report {
    /// The metrics that regressed.
    pub fn regressions(&self) -> impl Iterator<Item = &MetricResult> {
        self.metrics.iter().filter(|m| m.regression)
    }

    /// The metrics that leave the result undecided.
    pub fn undecided(&self) -> impl Iterator<Item = &MetricResult> {
        self.metrics.iter().filter(|m| m.undecided())
    }
}

/// One proof as [`compare`] sees it.
#[derive(Debug, Clone, Copy)]
pub struct Side<'a> {
    /// What it observed.
    pub observations: &'a Observations,
    /// The gate it is judged with (its own).
    pub profile: &'a Profile,
    /// Its scenarios (workloads and faults), as recorded in the run metadata.
    pub scenarios: &'a [String],
}

/// Why `base` and `candidate` cannot be compared: different gate, node count or scenarios.
/// Empty when they can.
pub fn incomparable(base: &Side<'_>, candidate: &Side<'_>) -> Vec<String> {
    let mut reasons = Vec::new();
    let (b, c) = (base.profile, candidate.profile);
    if b.name != c.name {
        reasons.push(format!(
            "different gates: base `{}`, candidate `{}`",
            b.name, c.name
        ));
    } else if b.bars != c.bars
        || b.evidence != c.evidence
        || b.adaptive != c.adaptive
        || b.soak != c.soak
    {
        reasons.push(format!(
            "the gate `{}` differs between the proofs (bars or thresholds changed)",
            b.name
        ));
    }
    let (bn, cn) = (
        node_names(base.observations).len(),
        node_names(candidate.observations).len(),
    );
    if bn != cn {
        reasons.push(format!(
            "different node counts: base {bn} nodes, candidate {cn} nodes"
        ));
    }
    let bs: BTreeSet<&str> = base.scenarios.iter().map(String::as_str).collect();
    let cs: BTreeSet<&str> = candidate.scenarios.iter().map(String::as_str).collect();
    if bs != cs {
        reasons.push(format!(
            "different scenarios: base [{}], candidate [{}]",
            base.scenarios.join(", "),
            candidate.scenarios.join(", ")
        ));
    }
    reasons
}

fn node_names(obs: &Observations) -> Vec<String> {
    let mut seen = BTreeSet::new();
    let mut names = Vec::new();
    for name in obs
        .run
        .nodes
        .iter()
        .map(|n| &n.name)
        .chain(obs.samples.keys())
    {
        if seen.insert(name.clone()) {
            names.push(name.clone());
        }
    }
    names
}

/// Compares `candidate` against `base` (each judged with its own profile); `notes` go into
/// the report as they are (e.g. the reasons a forced comparison is not strictly comparable).
pub fn compare(
    base: &Side<'_>,
    candidate: &Side<'_>,
    settings: &Settings,
    notes: Vec<String>,
) -> Report {
    let base_verdict = evaluate(base.observations, base.profile);
    let candidate_verdict = evaluate(candidate.observations, candidate.profile);
    let mut metrics = verdict_metrics(&base_verdict, &candidate_verdict);

    let base_data = Extracted::collect(base, &base_verdict);
    let candidate_data = Extracted::collect(candidate, &candidate_verdict);
    let mut ids: Vec<&String> = base_data.series.keys().collect();
    for id in candidate_data.series.keys() {
        if !base_data.series.contains_key(id) {
            ids.push(id);
        }
    }
    ids.sort_by_key(|id| metric_order(id));
    for id in ids {
        let empty = Series::default();
        let b = base_data.series.get(id);
        let c = candidate_data.series.get(id);
        let meta = b.or(c).unwrap_or(&empty);
        let floor = match meta.unit {
            Unit::Ms => settings.latency_floor_ms,
            _ => 0.0,
        };
        let (bv, be) = b.map_or((&[][..], 0), |s| (&s.values[..], s.excluded));
        let (cv, ce) = c.map_or((&[][..], 0), |s| (&s.values[..], s.excluded));
        let mut result = classify(bv, cv, meta.worse, meta.unit, floor, settings);
        if let Some(s) = result.base.as_mut() {
            s.excluded = be;
        }
        if let Some(s) = result.candidate.as_mut() {
            s.excluded = ce;
        }
        result.id = id.clone();
        result.title = meta.title.clone();
        metrics.push(result);
    }

    let result = if metrics.iter().any(|m| m.regression) {
        Overall::Regression
    } else if metrics.iter().any(MetricResult::undecided)
        || base_data.judged == 0
        || candidate_data.judged == 0
    {
        Overall::Unknown
    } else {
        Overall::NoRegression
    };
    Report {
        compare_version: COMPARE_VERSION,
        result,
        base: run_summary(base, &base_verdict, base_data.judged),
        candidate: run_summary(candidate, &candidate_verdict, candidate_data.judged),
        settings: *settings,
        metrics,
        notes,
    }
}

fn run_summary(side: &Side<'_>, verdict: &Verdict, judged: usize) -> RunSummary {
    RunSummary {
        run_id: side.observations.run.run_id.clone(),
        gate: side.profile.name.clone(),
        verdict: verdict.verdict,
        nodes: node_names(side.observations).len(),
        judged_windows: judged,
    }
}

/// Report order: Phase A, fanout, rates, ratios, gauges; by name within.
fn metric_order(id: &str) -> (u8, String) {
    let rank = match id.split('.').next() {
        Some("phase_a") => 0,
        Some("fanout") => 1,
        Some("ratio") => 2,
        Some("gauge") => 3,
        Some("rate") => 4,
        _ => 5,
    };
    (rank, id.to_string())
}

/// Verdict counts per bar over the judged windows, then the soak-level bars.
fn verdict_metrics(base: &Verdict, candidate: &Verdict) -> Vec<MetricResult> {
    let mut order: Vec<(String, String)> = Vec::new();
    let mut counts: BTreeMap<String, (Counts, Counts)> = BTreeMap::new();
    for (side, verdict) in [(0, base), (1, candidate)] {
        for window in verdict.windows.iter().filter(|w| !w.warmup) {
            // A bar that could not apply (too short a run) says nothing to compare.
            for bar in window.bars.iter().filter(|b| !b.not_applicable) {
                let id = format!("verdict.{}", bar.bar);
                if !counts.contains_key(&id) {
                    order.push((id.clone(), bar.title.clone()));
                }
                let entry = counts.entry(id).or_default();
                if side == 0 {
                    entry.0.add(bar.verdict);
                } else {
                    entry.1.add(bar.verdict);
                }
            }
        }
        for bar in verdict.soak_bars.iter().filter(|b| !b.not_applicable) {
            let id = format!("soak.{}", bar.bar);
            if !counts.contains_key(&id) {
                order.push((id.clone(), format!("{} (soak level)", bar.title)));
            }
            let entry = counts.entry(id).or_default();
            if side == 0 {
                entry.0.add(bar.verdict);
            } else {
                entry.1.add(bar.verdict);
            }
        }
    }
    order
        .into_iter()
        .map(|(id, title)| {
            let (b, c) = counts.get(&id).copied().unwrap_or_default();
            let (classification, reason) = classify_verdicts(&b, &c);
            MetricResult {
                regression: classification == Classification::High,
                id,
                title,
                unit: Unit::Windows,
                worse: Worse::Higher,
                classification,
                reason,
                base: None,
                candidate: None,
                statistics: None,
                verdicts: Some((b, c)),
            }
        })
        .collect()
}

fn describe_counts(c: &Counts) -> String {
    let mut text = format!("{} NO-GO of {}", c.no_go, c.definite());
    if c.unknown > 0 {
        text.push_str(&format!(", {} UNKNOWN", c.unknown));
    }
    text
}

/// The gate is the tolerance: compares the NO-GO share of the definite verdicts.
fn classify_verdicts(base: &Counts, candidate: &Counts) -> (Classification, String) {
    let sides = format!(
        "candidate {}, base {}",
        describe_counts(candidate),
        describe_counts(base)
    );
    if base.total() == 0 || candidate.total() == 0 {
        let side = if base.total() == 0 {
            "the base"
        } else {
            "the candidate"
        };
        return (
            Classification::NoData,
            format!("the bar judged no window of {side} ({sides})"),
        );
    }
    if base.definite() == 0 || candidate.definite() == 0 {
        return (
            Classification::NoData,
            format!("no definite verdict on one side ({sides})"),
        );
    }
    // Compare a/b with c/d exactly: a·d vs c·b.
    let left = u64::from(candidate.no_go) * u64::from(base.definite());
    let right = u64::from(base.no_go) * u64::from(candidate.definite());
    if left > right {
        return (
            Classification::High,
            format!("more NO-GO windows in the candidate: {sides}"),
        );
    }
    let unknown_left = u64::from(candidate.unknown) * u64::from(base.total());
    let unknown_right = u64::from(base.unknown) * u64::from(candidate.total());
    if left < right {
        return (
            Classification::Low,
            format!("fewer NO-GO windows in the candidate: {sides}"),
        );
    }
    if unknown_left > unknown_right {
        return (
            Classification::NoData,
            format!("more UNKNOWN windows in the candidate: {sides}"),
        );
    }
    (Classification::Pass, format!("same NO-GO share: {sides}"))
}

fn summarize(sorted: &[f64]) -> Summary {
    Summary {
        n: sorted.len(),
        excluded: 0,
        median: (!sorted.is_empty()).then(|| median_sorted(sorted)),
        mean: (!sorted.is_empty()).then(|| sorted.iter().sum::<f64>() / sorted.len() as f64),
    }
}

/// Kayenta's Mann-Whitney classifier, for one metric: `base` and `candidate` values (finite).
///
/// In order: a side without values is NoData; identical samples, or a single value across
/// both, Pass; too few values for an interval at the confidence level, NoData. Otherwise the
/// allowed shift is `max(floor, tolerance · |base median|)`; High when the whole interval lies
/// above it and the effect size is at least `min_effect`, Low when it lies below `−allowed`
/// and the effect size is at most `1 − min_effect`, else Pass. `regression` is set when the
/// classification is the `worse` way. `id` and `title` are left empty for the caller.
pub fn classify(
    base: &[f64],
    candidate: &[f64],
    worse: Worse,
    unit: Unit,
    floor: f64,
    settings: &Settings,
) -> MetricResult {
    let mut b: Vec<f64> = base.iter().copied().filter(|v| v.is_finite()).collect();
    let mut c: Vec<f64> = candidate
        .iter()
        .copied()
        .filter(|v| v.is_finite())
        .collect();
    b.sort_by(f64::total_cmp);
    c.sort_by(f64::total_cmp);
    let mut result = MetricResult {
        id: String::new(),
        title: String::new(),
        unit,
        worse,
        classification: Classification::NoData,
        regression: false,
        reason: String::new(),
        base: Some(summarize(&b)),
        candidate: Some(summarize(&c)),
        statistics: None,
        verdicts: None,
    };
    let suffix = unit.suffix();
    if b.is_empty() || c.is_empty() {
        result.reason = match (b.is_empty(), c.is_empty()) {
            (true, true) => "no values in either proof".to_string(),
            (true, false) => "no values in the base".to_string(),
            _ => "no values in the candidate".to_string(),
        };
        return result;
    }
    if b == c {
        result.classification = Classification::Pass;
        result.reason = "identical values".to_string();
        return result;
    }
    if b.first() == b.last() && c.first() == c.last() && b.first() == c.first() {
        result.classification = Classification::Pass;
        result.reason = format!("every value is {}{suffix}", fmt(b[0]));
        return result;
    }
    let (Some(test), Some(shift)) = (
        rank_sum(&b, &c),
        hodges_lehmann(&b, &c, settings.confidence),
    ) else {
        // Not reached: both sides hold finite values and not every value is tied.
        result.reason = "the rank-sum test is undefined for these values".to_string();
        return result;
    };
    let allowed = floor.max(settings.tolerance * median_sorted(&b).abs());
    let effect = test.common_language_effect();
    let percent = settings.confidence * 100.0;
    let Some((lower, upper)) = shift.interval else {
        result.reason = format!(
            "too few values for a {percent:.0} % interval (base {}, candidate {})",
            b.len(),
            c.len()
        );
        result.statistics = Some(Statistics {
            u: test.u,
            z: test.z,
            p_value: test.p_value,
            effect,
            shift: shift.estimate,
            interval: None,
            allowed_shift: allowed,
        });
        return result;
    };
    result.statistics = Some(Statistics {
        u: test.u,
        z: test.z,
        p_value: test.p_value,
        effect,
        shift: shift.estimate,
        interval: Some((lower, upper)),
        allowed_shift: allowed,
    });
    let described = format!(
        "shift {}{suffix} ({percent:.0} % CI {} … {}), tolerance ±{}{suffix}, A = {:.2}, p = {}",
        signed(shift.estimate),
        signed(lower),
        signed(upper),
        fmt(allowed),
        effect,
        fmt_p(test.p_value)
    );
    result.classification = if lower > allowed && effect >= settings.min_effect {
        Classification::High
    } else if upper < -allowed && effect <= 1.0 - settings.min_effect {
        Classification::Low
    } else {
        Classification::Pass
    };
    result.regression = matches!(
        (result.classification, worse),
        (Classification::High, Worse::Higher) | (Classification::Low, Worse::Lower)
    );
    result.reason = match result.classification {
        Classification::High => format!("higher: {described}"),
        Classification::Low => format!("lower: {described}"),
        _ if lower > allowed || upper < -allowed => {
            format!(
                "shift below the effect-size gate (A ≥ {}): {described}",
                settings.min_effect
            )
        }
        _ => format!("within tolerance: {described}"),
    };
    result
}

/// A value for reports: up to 3 decimals, trailing zeros trimmed.
pub fn fmt(v: f64) -> String {
    if !v.is_finite() {
        return v.to_string();
    }
    let text = if v.abs() >= 100.0 {
        format!("{v:.1}")
    } else if v.abs() >= 1.0 {
        format!("{v:.2}")
    } else {
        format!("{v:.3}")
    };
    let trimmed = if text.contains('.') {
        text.trim_end_matches('0').trim_end_matches('.').to_string()
    } else {
        text
    };
    if trimmed == "-0" {
        "0".to_string()
    } else {
        trimmed
    }
}

/// A value with its sign (`+1.5`, `-0.2`, `0`).
pub fn signed(v: f64) -> String {
    let text = fmt(v);
    if v > 0.0 && text != "0" {
        format!("+{text}")
    } else {
        text
    }
}

/// A p-value for reports.
pub fn fmt_p(p: f64) -> String {
    if p < 0.001 {
        format!("{p:.1e}")
    } else {
        format!("{p:.3}")
    }
}

/// One metric's values from one proof.
#[derive(Debug, Clone)]
struct Series {
    title: String,
    unit: Unit,
    worse: Worse,
    values: Vec<f64>,
    excluded: usize,
}

impl Default for Series {
    fn default() -> Self {
        Series {
            title: String::new(),
            unit: Unit::Value,
            worse: Worse::Neither,
            values: Vec::new(),
            excluded: 0,
        }
    }
}

/// Every distribution metric of one proof.
struct Extracted {
    series: BTreeMap<String, Series>,
    judged: usize,
}

impl Extracted {
    fn entry(&mut self, id: &str, title: &str, unit: Unit, worse: Worse) -> &mut Series {
        self.series.entry(id.to_string()).or_insert_with(|| Series {
            title: title.to_string(),
            unit,
            worse,
            values: Vec::new(),
            excluded: 0,
        })
    }

    fn collect(side: &Side<'_>, verdict: &Verdict) -> Extracted {
        let obs = side.observations;
        let profile = side.profile;
        // The windows the verdict judged (not warm-up), by index.
        let judged_index: BTreeSet<u32> = verdict
            .windows
            .iter()
            .filter(|w| !w.warmup)
            .map(|w| w.index)
            .collect();
        let windows: Vec<&WindowRecord> = obs
            .windows
            .iter()
            .filter(|w| !w.warmup && judged_index.contains(&w.index))
            .collect();
        let mut out = Extracted {
            series: BTreeMap::new(),
            judged: windows.len(),
        };
        out.workloads(&windows);
        out.samples(obs, profile, &windows);
        out
    }

    /// Phase A and fanout metrics from the window records.
    fn workloads(&mut self, windows: &[&WindowRecord]) {
        for window in windows {
            if let Some(phase_a) = &window.phase_a {
                let series = self.entry(
                    "phase_a.latency",
                    "Phase A send-to-ACK latency per delivered pair",
                    Unit::Ms,
                    Worse::Higher,
                );
                for pair in &phase_a.pairs {
                    match (pair.delivered, pair.latency_us) {
                        (true, Some(us)) => series.values.push(us as f64 / 1000.0),
                        // Undelivered pairs are judged by the phase_a bar, not as latencies.
                        (true, None) => series.excluded += 1,
                        _ => {}
                    }
                }
            }
            if let Some(fanout) = &window.fanout {
                for (id, title, pick) in [
                    (
                        "fanout.p50",
                        "fanout median delivery latency per subscriber",
                        (|s: &crate::model::SubscriberResult| s.p50_us) as fn(&_) -> Option<u64>,
                    ),
                    (
                        "fanout.p99",
                        "fanout p99 delivery latency per subscriber",
                        |s: &crate::model::SubscriberResult| s.p99_us,
                    ),
                ] {
                    let series = self.entry(id, title, Unit::Ms, Worse::Higher);
                    for subscriber in &fanout.subscribers {
                        match pick(subscriber) {
                            Some(us) if subscriber.error.is_none() => {
                                series.values.push(us as f64 / 1000.0);
                            }
                            _ => series.excluded += 1,
                        }
                    }
                }
                let series = self.entry(
                    "fanout.delivery",
                    "fanout delivery ratio per subscriber",
                    Unit::Ratio,
                    Worse::Lower,
                );
                for subscriber in &fanout.subscribers {
                    if subscriber.error.is_some() || subscriber.expected == 0 {
                        series.excluded += 1;
                    } else {
                        series
                            .values
                            .push(subscriber.received as f64 / subscriber.expected as f64);
                    }
                }
            }
        }
    }

    /// Per-node rates of the gate's counters and the ratio and gauge bars' values, from the
    /// continuous samples.
    fn samples(&mut self, obs: &Observations, profile: &Profile, windows: &[&WindowRecord]) {
        let tolerance_ms =
            (obs.run.sample_interval_ms as f64 * profile.evidence.gap_factor).round() as u64;
        // Counters the gate reads: bad events (worse when higher) and exposures.
        let mut counters: BTreeMap<String, Worse> = BTreeMap::new();
        let bad = |name: &str, worse: Worse, map: &mut BTreeMap<String, Worse>| {
            let slot = map.entry(name.to_string()).or_insert(worse);
            if worse == Worse::Higher {
                *slot = Worse::Higher;
            }
        };
        for bar in &profile.bars {
            match &bar.rule {
                Rule::Counter { counter, .. } => bad(counter, Worse::Higher, &mut counters),
                Rule::CounterRatio {
                    numerator,
                    denominator,
                    ..
                } => {
                    bad(numerator, Worse::Higher, &mut counters);
                    bad(denominator, Worse::Neither, &mut counters);
                }
                _ => {}
            }
        }
        if let Some(adaptive) = &profile.adaptive {
            bad(&adaptive.events, Worse::Higher, &mut counters);
            bad(&adaptive.exposure, Worse::Neither, &mut counters);
        }
        let nodes = node_names(obs);
        let empty = Vec::new();
        // Every gauge a gauge or gauge-ratio bar reads. Counters and gauges are read in one
        // ordered pass per sample (`NodeSeries::columns`, as the evaluator does).
        let gauges: BTreeSet<&str> = profile
            .bars
            .iter()
            .flat_map(|bar| match &bar.rule {
                Rule::Gauge { gauge, .. } => vec![gauge.as_str()],
                Rule::GaugeRatio {
                    numerator,
                    denominator,
                    ..
                } => vec![numerator.as_str(), denominator.as_str()],
                _ => Vec::new(),
            })
            .collect();
        let counter_names: Vec<&str> = counters.keys().map(String::as_str).collect();
        let gauge_names: Vec<&str> = gauges.iter().copied().collect();
        // Per node: exact window deltas of every counter ([counter][window]) and every
        // gauge's column of values with the sample times' series.
        let mut deltas: Vec<Vec<Vec<Option<u64>>>> = Vec::with_capacity(nodes.len());
        let mut gauge_columns = Vec::with_capacity(nodes.len());
        for node in &nodes {
            let samples = obs.samples.get(node).unwrap_or(&empty);
            let series = NodeSeries::new(samples);
            let columns = series.columns(&counter_names, &gauge_names);
            deltas.push(
                counter_names
                    .iter()
                    .zip(&columns.counters)
                    .map(|(name, column)| {
                        let cs = series.counter_from_column(name, column, tolerance_ms);
                        windows
                            .iter()
                            .map(|w| cs.window_delta(w.start_ms, w.end_ms, tolerance_ms).exact())
                            .collect()
                    })
                    .collect(),
            );
            gauge_columns.push((series, columns.gauges));
        }
        let counter_index = |name: &str| counter_names.iter().position(|c| *c == name);
        let gauge_index = |name: &str| gauge_names.iter().position(|g| *g == name);
        for (c, (name, worse)) in counters.iter().enumerate() {
            let id = format!("rate.{name}");
            let title = format!("{name} per second, per node and window");
            let series = self.entry(&id, &title, Unit::PerSecond, *worse);
            for node in &deltas {
                for (w, delta) in windows.iter().zip(&node[c]) {
                    let seconds = w.end_ms.saturating_sub(w.start_ms) as f64 / 1000.0;
                    match delta {
                        Some(d) if seconds > 0.0 => series.values.push(*d as f64 / seconds),
                        _ => series.excluded += 1,
                    }
                }
            }
        }
        for bar in &profile.bars {
            let id_title = |kind: &str, scope: Scope| {
                (
                    format!("{kind}.{}", bar.id),
                    format!("{} ({})", bar.title, scope_words(scope)),
                )
            };
            match &bar.rule {
                Rule::CounterRatio {
                    numerator,
                    denominator,
                    scope,
                    ..
                } => {
                    // Both were collected above (every ratio bar's counters are in `counters`).
                    let (Some(n), Some(d)) = (counter_index(numerator), counter_index(denominator))
                    else {
                        continue;
                    };
                    let (id, title) = id_title("ratio", *scope);
                    let series = self.entry(&id, &title, Unit::Ratio, Worse::Higher);
                    let mut push = |num: Option<u64>, den: Option<u64>| match ratio_of(num, den) {
                        Some(r) => series.values.push(r),
                        None => series.excluded += 1,
                    };
                    match scope {
                        Scope::Node => {
                            for node in &deltas {
                                for (num, den) in node[n].iter().zip(&node[d]) {
                                    push(*num, *den);
                                }
                            }
                        }
                        Scope::Fleet => {
                            for w in 0..windows.len() {
                                let sum = |c: usize| {
                                    deltas.iter().map(|node| node[c][w]).sum::<Option<u64>>()
                                };
                                push(sum(n), sum(d));
                            }
                        }
                    }
                }
                Rule::Gauge { gauge, scope, .. } => {
                    let Some(g) = gauge_index(gauge) else {
                        continue;
                    };
                    let values: Vec<_> = gauge_columns
                        .iter()
                        .map(|(series, columns)| series.values_from_column(&columns[g]))
                        .collect();
                    let (id, title) = id_title("gauge", *scope);
                    let series = self.entry(&id, &title, Unit::Value, Worse::Higher);
                    gauge_values(series, &values, windows, *scope);
                }
                Rule::GaugeRatio {
                    numerator,
                    denominator,
                    scope,
                    ..
                } => {
                    let (Some(n), Some(d)) = (gauge_index(numerator), gauge_index(denominator))
                    else {
                        continue;
                    };
                    let values: Vec<_> = gauge_columns
                        .iter()
                        .map(|(series, columns)| {
                            let ratio: Vec<Option<f64>> = columns[n]
                                .iter()
                                .zip(&columns[d])
                                .map(|(num, den)| Some(gauge_ratio((*num)?, (*den)?)))
                                .collect();
                            series.values_from_column(&ratio)
                        })
                        .collect();
                    let (id, title) = id_title("ratio", *scope);
                    let series = self.entry(&id, &title, Unit::Ratio, Worse::Higher);
                    gauge_values(series, &values, windows, *scope);
                }
                _ => {}
            }
        }
    }
}

fn scope_words(scope: Scope) -> &'static str {
    match scope {
        Scope::Node => "per node and window",
        Scope::Fleet => "fleet, per window",
    }
}

/// A gauge ratio with the gates' edge cases: 0 / anything → 0; > 0 / 0 → infinite (excluded
/// from the distribution, judged by the bar).
fn gauge_ratio(numerator: f64, denominator: f64) -> f64 {
    if numerator <= 0.0 {
        0.0
    } else if denominator <= 0.0 {
        f64::INFINITY
    } else {
        numerator / denominator
    }
}

/// A counter ratio with the gates' edge cases: 0 / anything → 0; > 0 / 0 → none (infinite).
fn ratio_of(numerator: Option<u64>, denominator: Option<u64>) -> Option<f64> {
    match (numerator?, denominator?) {
        (0, _) => Some(0.0),
        (_, 0) => None,
        (n, d) => Some(n as f64 / d as f64),
    }
}

/// Per node and window: the largest value sampled; fleet: the sum of every node's largest.
fn gauge_values(
    series: &mut Series,
    values: &[crate::series::ValueSeries],
    windows: &[&WindowRecord],
    scope: Scope,
) {
    let mut push = |v: Option<f64>| match v {
        Some(v) if v.is_finite() => series.values.push(v),
        _ => series.excluded += 1,
    };
    match scope {
        Scope::Node => {
            for node in values {
                for w in windows {
                    push(node.max_in(w.start_ms, w.end_ms));
                }
            }
        }
        Scope::Fleet => {
            for w in windows {
                push(
                    values
                        .iter()
                        .map(|node| node.max_in(w.start_ms, w.end_ms))
                        .sum::<Option<f64>>(),
                );
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn settings() -> Settings {
        Settings::default()
    }

    fn ms(values: &[f64]) -> Vec<f64> {
        values.to_vec()
    }

    #[test]
    fn a_clear_latency_shift_is_high_and_names_it() {
        let base: Vec<f64> = (0..30).map(|i| 1.0 + f64::from(i % 7) * 0.1).collect();
        let candidate: Vec<f64> = base.iter().map(|v| v + 40.0).collect();
        let r = classify(&base, &candidate, Worse::Higher, Unit::Ms, 5.0, &settings());
        assert_eq!(r.classification, Classification::High, "{}", r.reason);
        assert!(r.regression);
        assert!(r.reason.contains("shift +40 ms"), "{}", r.reason);
        let stats = r.statistics.expect("stats");
        assert!(stats.p_value < 1e-6 && stats.effect == 1.0);
    }

    #[test]
    fn a_shift_inside_the_floor_is_a_pass() {
        let base: Vec<f64> = (0..30).map(|i| 1.0 + f64::from(i % 7) * 0.1).collect();
        let candidate: Vec<f64> = base.iter().map(|v| v + 2.0).collect();
        let r = classify(&base, &candidate, Worse::Higher, Unit::Ms, 5.0, &settings());
        assert_eq!(r.classification, Classification::Pass, "{}", r.reason);
        assert!(!r.regression);
    }

    #[test]
    fn a_drop_in_latency_is_low_but_not_a_regression() {
        let base: Vec<f64> = (0..30).map(|i| 50.0 + f64::from(i % 5)).collect();
        let candidate: Vec<f64> = base.iter().map(|v| v - 30.0).collect();
        let r = classify(&base, &candidate, Worse::Higher, Unit::Ms, 5.0, &settings());
        assert_eq!(r.classification, Classification::Low);
        assert!(!r.regression);
        let r = classify(
            &base,
            &candidate,
            Worse::Lower,
            Unit::Ratio,
            0.0,
            &settings(),
        );
        assert!(r.regression, "lower is worse here");
    }

    #[test]
    fn missing_values_are_no_data_never_a_pass() {
        let some = ms(&[1.0, 2.0, 3.0]);
        for (b, c) in [
            (&[][..], &some[..]),
            (&some[..], &[][..]),
            (&[][..], &[][..]),
        ] {
            let r = classify(b, c, Worse::Higher, Unit::Ms, 5.0, &settings());
            assert_eq!(r.classification, Classification::NoData);
            assert!(r.undecided());
        }
        // Non-finite values are not evidence either.
        let r = classify(
            &[f64::NAN],
            &some,
            Worse::Higher,
            Unit::Ms,
            5.0,
            &settings(),
        );
        assert_eq!(r.classification, Classification::NoData);
    }

    #[test]
    fn one_value_per_side_is_no_data_not_a_proven_shift() {
        // R and Kayenta clamp the interval to the single difference and would call this High.
        let r = classify(&[1.0], &[100.0], Worse::Higher, Unit::Ms, 5.0, &settings());
        assert_eq!(r.classification, Classification::NoData, "{}", r.reason);
        assert!(r.reason.contains("too few values"), "{}", r.reason);
    }

    #[test]
    fn identical_and_constant_samples_pass() {
        let r = classify(
            &[0.0; 6],
            &[0.0; 9],
            Worse::Higher,
            Unit::PerSecond,
            0.0,
            &settings(),
        );
        assert_eq!(r.classification, Classification::Pass);
        let r = classify(
            &[1.0, 2.0],
            &[2.0, 1.0],
            Worse::Higher,
            Unit::Ms,
            0.0,
            &settings(),
        );
        assert_eq!(r.classification, Classification::Pass);
    }

    #[test]
    fn a_rate_rising_from_zero_everywhere_is_high() {
        let r = classify(
            &[0.0; 12],
            &[0.5; 12],
            Worse::Higher,
            Unit::PerSecond,
            0.0,
            &settings(),
        );
        assert_eq!(r.classification, Classification::High, "{}", r.reason);
    }

    #[test]
    fn the_effect_size_gate_holds_back_a_tiny_consistent_shift() {
        // Interval clear of a zero tolerance, but half the candidate is unchanged: A ≈ 0.62.
        let base: Vec<f64> = (0..400).map(f64::from).collect();
        let candidate: Vec<f64> = (0..400)
            .map(|i| f64::from(i) + if i % 2 == 0 { 0.0 } else { 100.0 })
            .collect();
        let r = classify(
            &base,
            &candidate,
            Worse::Higher,
            Unit::Value,
            0.0,
            &Settings {
                tolerance: 0.0,
                ..settings()
            },
        );
        let stats = r.statistics.expect("stats");
        assert!(stats.effect < 0.64, "{}", r.reason);
        assert_eq!(r.classification, Classification::Pass, "{}", r.reason);
        assert!(r.reason.contains("effect-size gate"), "{}", r.reason);
    }

    #[test]
    fn verdict_counts_compare_the_no_go_share() {
        let c = |go, no_go, unknown| Counts { go, no_go, unknown };
        assert_eq!(
            classify_verdicts(&c(3, 0, 0), &c(2, 1, 0)).0,
            Classification::High
        );
        assert_eq!(
            classify_verdicts(&c(2, 1, 0), &c(3, 0, 0)).0,
            Classification::Low
        );
        assert_eq!(
            classify_verdicts(&c(3, 0, 0), &c(3, 0, 0)).0,
            Classification::Pass
        );
        assert_eq!(
            classify_verdicts(&c(3, 0, 0), &c(2, 0, 1)).0,
            Classification::NoData
        );
        assert_eq!(
            classify_verdicts(&c(0, 0, 3), &c(3, 0, 0)).0,
            Classification::NoData
        );
        assert_eq!(
            classify_verdicts(&c(0, 0, 0), &c(3, 0, 0)).0,
            Classification::NoData
        );
        // 1 of 4 vs 2 of 8: the same share.
        assert_eq!(
            classify_verdicts(&c(3, 1, 0), &c(6, 2, 0)).0,
            Classification::Pass
        );
    }

    #[test]
    fn settings_are_validated() {
        assert!(settings().validate().is_ok());
        for bad in [
            Settings {
                confidence: 1.0,
                ..settings()
            },
            Settings {
                tolerance: -1.0,
                ..settings()
            },
            Settings {
                latency_floor_ms: f64::NAN,
                ..settings()
            },
            Settings {
                min_effect: 0.4,
                ..settings()
            },
        ] {
            assert!(bad.validate().is_err(), "{bad:?}");
        }
    }

    #[test]
    fn numbers_read_well() {
        assert_eq!(fmt(40.0), "40");
        assert_eq!(fmt(0.1234), "0.123");
        assert_eq!(fmt(1234.56), "1234.6");
        assert_eq!(signed(2.5), "+2.5");
        assert_eq!(signed(-0.0001), "0");
        assert_eq!(fmt_p(0.0000123), "1.2e-5");
    }
}
