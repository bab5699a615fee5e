//! What the evaluator returns: the verdict of a soak, of each window and of each bar.
//!
//! Serialized as `verdict.json` in a proof (machine contract: `verdict`, `gate`, `windows[]` with
//! `index`, `verdict`, `phase_a {pairs, delivered}`, `bars[]`). Every [`BarResult`] names its
//! statistic, value, threshold, window, nodes and (adaptive bars) baseline, so a reader sees why.

use serde::{Deserialize, Serialize};

use crate::model::Exemption;
use crate::outcome::Outcome;

/// Version of the verdict shape; bumped on incompatible change.
pub const VERDICT_VERSION: u32 = 1;

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
    /// Worst of the window's bars.
    pub verdict: Outcome,
    /// Phase A summary, when a matrix was recorded.
    pub phase_a: Option<PhaseASummary>,
    /// Every scenario of the window with its status.
    pub scenarios: Vec<ScenarioSummary>,
    /// Bar results in profile order (bars that do not apply to the window are left out).
    pub bars: Vec<BarResult>,
}

/// Phase A in one window.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct PhaseASummary {
    /// Ordered pairs required (N·(N−1) minus exempted pairs).
    pub pairs: u64,
    /// Required pairs delivered.
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
