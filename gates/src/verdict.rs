//! What the evaluator returns: the verdict of a soak, of each window and of each bar.
//!
//! Serialized as `verdict.json` in a proof (machine contract: `verdict`, `gate`, `windows[]` with
//! `index`, `verdict`, `phase_a {pairs, delivered}`, `bars[]`). Every [`BarResult`] names its
//! statistic, value, threshold, window, nodes and (adaptive bars) baseline, so a reader sees why.

use serde::{Deserialize, Serialize};

use crate::model::Exemption;
use crate::outcome::Outcome;

/// Version of the verdict shape; bumped on incompatible change.
///
/// 2: Phase A counts what the user saw (`sent`, `acked`, `received` per window, the soak-level
/// `phase_a` with per-pair tallies), failed sampling attempts per window, partial windows,
/// not-applicable bars, resource-trend bars and failures grouped under their `causes`.
pub const VERDICT_VERSION: u32 = 2;

/// The verdict of one soak under one gate.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Verdict {
    /// Soak verdict: the worst of every window and every soak-level bar.
    pub verdict: Outcome,
    /// Gate profile name.
    pub gate: String,
    /// [`VERDICT_VERSION`].
    pub verdict_version: u32,
    /// Run id the observations came from.
    pub run_id: String,
    /// Number of nodes in the fleet.
    pub nodes: usize,
    /// Per-window verdicts in index order.
    pub windows: Vec<WindowVerdict>,
    /// Soak-level bars (aggregate Phase A, adaptive policy, enough windows).
    pub soak_bars: Vec<BarResult>,
    /// Every process restart observed (a new instance id), in time order.
    pub restarts: Vec<RestartRecord>,
    /// Every evidence gap longer than the tolerance, in time order.
    pub gaps: Vec<GapRecord>,
    /// Every integrity error (a counter decreasing within one process instance).
    pub integrity_errors: Vec<IntegrityRecord>,
    /// Phase A over the whole soak: totals and one tally per ordered pair.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub phase_a: Option<PhaseASoak>,
    /// Root causes (a dead node, an unreadable node, a fault window) and how many of the bar
    /// results that are not GO follow from each; those bars name their cause in `cause`.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub causes: Vec<Cause>,
    /// Spans lost to interruptions the run was resumed from, each an evidence gap judged
    /// UNKNOWN — never a pass (the resume ran the window again). Empty unless resumed.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub interruptions: Vec<InterruptionRecord>,
}

/// A span lost to an interruption, as judged: always UNKNOWN (nothing is known about it).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct InterruptionRecord {
    /// The window cut short.
    pub window: u32,
    /// Start of the lost span, unix ms.
    pub from_ms: u64,
    /// End of the lost span (the resume), unix ms.
    pub to_ms: u64,
    /// Why it was lost.
    pub cause: String,
    /// Always UNKNOWN: the lost span's partial evidence is a gap, never a pass.
    pub verdict: Outcome,
}

/// The verdict of one window.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct WindowVerdict {
    /// Window index.
    pub index: u32,
    /// Window start, unix ms.
    pub start_ms: u64,
    /// Window end, unix ms.
    pub end_ms: u64,
    /// Marked as explicit warm-up.
    pub warmup: bool,
    /// Shorter than half the planned window length (an interrupted run's last window): never
    /// judged GO.
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub partial: bool,
    /// Worst of the window's bars.
    pub verdict: Outcome,
    /// Phase A summary, when a matrix was recorded.
    pub phase_a: Option<PhaseASummary>,
    /// Every scenario of the window with its status.
    pub scenarios: Vec<ScenarioSummary>,
    /// Bar results in profile order (bars that do not apply to the window are left out).
    pub bars: Vec<BarResult>,
    /// Every failed sampling attempt in the window (`(start, end]`), consecutive attempts of
    /// one node with the same error folded into one entry.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub sampling_failures: Vec<SamplingFailure>,
}

impl WindowVerdict {
    /// Whether the window counts as judged: neither warm-up nor partial.
    pub fn is_judged(&self) -> bool {
        !self.warmup && !self.partial
    }
}

/// Failed sampling attempts of one node: consecutive attempts with the same error.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct SamplingFailure {
    /// Node name.
    pub node: String,
    /// First failed attempt, unix ms.
    pub from_ms: u64,
    /// Last failed attempt, unix ms (equal to `from_ms` for a single attempt).
    pub to_ms: u64,
    /// Failed attempts folded into this entry.
    pub attempts: u32,
    /// The error.
    pub error: String,
}
/// Phase A in one window. A pair is **delivered** only when its sender saw the ACK and the
/// receiver's inbox held the message exactly once.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct PhaseASummary {
    /// Ordered pairs required (N·(N−1) minus exempted pairs).
    pub pairs: u64,
    /// Required pairs attempted (a DM was sent, whatever came of it).
    #[serde(default)]
    pub sent: u64,
    /// Required pairs whose sender saw the ACK.
    #[serde(default)]
    pub acked: u64,
    /// Required pairs whose message was found in the receiver's inbox at least once.
    #[serde(default)]
    pub received: u64,
    /// Required pairs delivered (acked and received exactly once).
    pub delivered: u64,
    /// Required pairs attempted and not delivered.
    pub failed: u64,
    /// Required pairs with no recorded attempt.
    pub missing: u64,
    /// Pairs left out by an explicit exemption.
    pub exempted: u64,
    /// Of those, pairs a fault cut on purpose that did fail (shown as expected to fail).
    #[serde(default, skip_serializing_if = "is_zero")]
    pub expected_failures: u64,
    /// Median send-to-ACK latency of delivered pairs, microseconds.
    pub p50_us: Option<u64>,
    /// 99th percentile.
    pub p99_us: Option<u64>,
    /// The node every failing pair involves, when there is one and more than one pair failed.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub common_node: Option<String>,
    /// `sampled K of N−1 per node` when the matrix was sampled (`pairs` then counts the sampled
    /// pairs only).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub sampled: Option<String>,
}

/// Phase A over the whole soak.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct PhaseASoak {
    /// Windows with a Phase A matrix.
    pub matrices: u64,
    /// Required pairs summed over the matrices.
    pub pairs: u64,
    /// Of those, attempted.
    pub sent: u64,
    /// Of those, acked by the sender.
    pub acked: u64,
    /// Of those, found in the receiver's inbox at least once.
    pub received: u64,
    /// Of those, delivered (acked and received exactly once).
    pub delivered: u64,
    /// The node every failing pair of the soak involves, when there is one.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub common_node: Option<String>,
    /// One tally per ordered pair, sorted by `(from, to)`.
    pub per_pair: Vec<PairTally>,
    /// When any matrix was sampled: how much of the full matrix the judged windows covered.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub coverage: Option<PairCoverage>,
}

/// How many ordered pairs sampled matrices delivered at least once over the judged windows
/// (warm-up and partial windows do not count): a soak too short to rotate through every
/// partner has not shown every pair works.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct PairCoverage {
    /// Ordered pairs of the fleet (N·(N−1)).
    pub pairs: u64,
    /// Of those, delivered at least once in a judged window.
    pub covered: u64,
    /// `sampled K of N−1 per node` (of the last sampled matrix).
    pub sampled: String,
    /// Judged windows a full rotation takes (`ceil((N − 1) / K)`).
    pub rounds: u32,
    /// Judged windows with a sampled matrix.
    pub judged_matrices: u64,
}

/// One ordered pair over the soak.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct PairTally {
    /// Sender.
    pub from: String,
    /// Receiver.
    pub to: String,
    /// Matrices that required the pair.
    pub required: u64,
    /// Attempts sent.
    pub sent: u64,
    /// Attempts acked.
    pub acked: u64,
    /// Attempts found in the inbox at least once.
    pub received: u64,
    /// Attempts delivered.
    pub delivered: u64,
    /// Windows in which the pair was required and not delivered.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub failed_windows: Vec<u32>,
}

/// A root cause that explains several bar results.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Cause {
    /// Stable id, referenced by `BarResult::cause`.
    pub id: String,
    /// `node_exited`, `node_unreachable`, `node_unreadable` or `fault`.
    pub kind: String,
    /// The cause in one line, e.g. `node-2 (pid 1234) exited on signal 9 (SIGKILL) at …`.
    pub headline: String,
    /// Nodes it concerns.
    pub nodes: Vec<String>,
    /// When it began, unix ms.
    pub from_ms: u64,
    /// When it ended (the node answered again, the fault window closed), unix ms; `None`: it
    /// lasted to the end of the run.
    pub to_ms: Option<u64>,
    /// Windows it touches.
    pub windows: Vec<u32>,
    /// Bar results (not GO) it explains.
    pub explains: usize,
}

/// A scenario as reported: `COMPLETED`, `SKIPPED` or `FAILED`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ScenarioSummary {
    /// Scenario name.
    pub name: String,
    /// `COMPLETED`, `SKIPPED` or `FAILED`.
    pub status: String,
    /// Reason (skipped) or error (failed).
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub detail: String,
    /// Targeted nodes.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub targets: Vec<String>,
}

/// The result of one bar in one window (or at soak level).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct BarResult {
    /// Bar id from the profile.
    pub bar: String,
    /// Bar title.
    pub title: String,
    /// GO / UNKNOWN / NO-GO.
    pub verdict: Outcome,
    /// What was measured, e.g. `max per-node increase of recv_pump_dropped_full_total`.
    pub statistic: String,
    /// The measured value (for intervals: the part definitely observed); `None` when not
    /// measurable (no evidence, or an infinite ratio — see `reason`).
    pub value: Option<f64>,
    /// The bar, e.g. `<= 0`, `== 30`, `<= 0.25`.
    pub threshold: String,
    /// Window index; `None` for soak-level bars.
    pub window: Option<u32>,
    /// Nodes involved: the ones that failed, else the ones without evidence.
    pub nodes: Vec<String>,
    /// Learned baseline and test detail (adaptive bars only).
    pub baseline: Option<Baseline>,
    /// Exemptions applied to this bar in this window.
    pub exemptions: Vec<Exemption>,
    /// Why, in words.
    pub reason: String,
    /// The bar could not apply (e.g. a leak bar on a run shorter than its minimum span): it is
    /// reported with verdict UNKNOWN and left out of the soak verdict — never a pass, and never
    /// what makes a run GO (the `windows` bar still needs judged windows).
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub not_applicable: bool,
    /// Id of the [`Cause`] this result follows from, when it follows from one.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub cause: Option<String>,
}

/// Baseline and test detail of an adaptive bar.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Baseline {
    /// Windows the baseline was learned from.
    pub windows: Vec<u32>,
    /// Events counted in those windows.
    pub events: u64,
    /// Exposure counted in those windows.
    pub exposure: u64,
    /// Learned rate events / exposure (`None` when exposure was 0 with events > 0).
    pub rate: Option<f64>,
    /// Floor applied to the rate.
    pub floor_rate: f64,
    /// max(rate, floor): the rate the windows are tested against.
    pub effective_rate: Option<f64>,
    /// Events in the judged window.
    pub window_events: Option<u64>,
    /// Exposure in the judged window.
    pub window_exposure: Option<u64>,
    /// Expected events in the judged window (effective rate × exposure).
    pub expected: Option<f64>,
    /// Poisson upper tail P(X ≥ events | expected).
    pub p_value: Option<f64>,
    /// Whether the judged window is anomalous.
    pub anomalous: Option<bool>,
    /// Signs of real degradation in the judged window (coupled with an anomaly: fail).
    pub degradation: Vec<String>,
    /// The per-window fleet ceiling on events / exposure, when the profile sets one.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub ceiling_rate: Option<f64>,
    /// Set when the baseline was too short to trust (fewer windows than the profile's
    /// `min_baseline_windows`): the strict per-node count every judged window was held to.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub strict_max_per_node: Option<u64>,
}

/// A process restart: a node answered with a new instance id.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct RestartRecord {
    /// Node name.
    pub node: String,
    /// Last sample of the old instance, unix ms.
    pub last_old_ms: u64,
    /// First sample of the new instance, unix ms.
    pub first_new_ms: u64,
    /// Old instance id.
    pub old_instance: String,
    /// New instance id.
    pub new_instance: String,
    /// Window the restart falls in (by its first new sample), if any.
    pub window: Option<u32>,
}

/// A span without good samples longer than the tolerance.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct GapRecord {
    /// Node name.
    pub node: String,
    /// Last good sample before the gap (or the window start when there was none), unix ms.
    pub from_ms: u64,
    /// First good sample after the gap (or the window end when there was none), unix ms.
    pub to_ms: u64,
    /// Window the gap was found in.
    pub window: u32,
}

/// A counter that decreased within one process instance.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct IntegrityRecord {
    /// Node name.
    pub node: String,
    /// Counter name.
    pub counter: String,
    /// Process instance.
    pub instance: String,
    /// Sample time of the earlier (higher) value, unix ms.
    pub from_ms: u64,
    /// Sample time of the later (lower) value, unix ms.
    pub to_ms: u64,
    /// Earlier value.
    pub from_value: u64,
    /// Later value.
    pub to_value: u64,
}

fn is_zero(value: &u64) -> bool {
    *value == 0
}
