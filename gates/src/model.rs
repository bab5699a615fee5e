//! The observation model: everything the evaluator may look at, as stored in a proof.
//!
//! The runner produces these; the proof directory stores them; the evaluator reads them. Node
//! keys are the node *names* used by the run (e.g. `node-0`, or an inventory host name).

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};

pub use crate::metrics::{MetricNames, Metrics};

/// Everything a run observed.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Observations {
    /// Run-level facts.
    pub run: RunInfo,
    /// Continuous samples per node name, in the order they were taken.
    pub samples: BTreeMap<String, Vec<Sample>>,
    /// Windows in index order.
    pub windows: Vec<WindowRecord>,
}

/// Run-level facts the evaluator needs.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct RunInfo {
    /// Run id (UTC timestamp + label).
    pub run_id: String,
    /// Nominal interval between continuous samples, milliseconds.
    pub sample_interval_ms: u64,
    /// Every node of the fleet, by name.
    pub nodes: Vec<NodeRef>,
    /// Hosts the inventory lists, for inventory runs; more than `nodes.len()` means a partial
    /// fleet (hosts left out under `--min-hosts`), which the `coverage` soak bar never passes.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub inventory_hosts: Option<usize>,
}

/// One node of the fleet.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Serialize, Deserialize)]
pub struct NodeRef {
    /// Name used everywhere in the proof.
    pub name: String,
    /// Hex peer id (empty when never learned).
    pub peer_id: String,
}

/// One sampling attempt of one node's diagnostics.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Sample {
    /// When the sampler asked, unix milliseconds (orchestrator clock).
    pub at_ms: u64,
    /// What it got.
    pub outcome: SampleOutcome,
}

/// Result of one sampling attempt.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(tag = "status", rename_all = "snake_case")]
pub enum SampleOutcome {
    /// Diagnostics were read.
    Ok(SampleData),
    /// The node could not be sampled (unreachable, timeout, bad body): an evidence gap.
    Missing {
        /// Why.
        error: String,
    },
}

/// The parts of a diagnostics snapshot the gates use.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct SampleData {
    /// Process instance id; a change means the node restarted (new counter epoch).
    pub instance_id: String,
    /// Monotonic counters by name (see `soak_api::counters`).
    pub counters: Metrics<u64>,
    /// Gauges by name (see `soak_api::gauges`).
    pub gauges: Metrics<f64>,
}

/// One judged time window.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct WindowRecord {
    /// 0-based index.
    pub index: u32,
    /// Window start, unix milliseconds (orchestrator clock).
    pub start_ms: u64,
    /// Window end, unix milliseconds (orchestrator clock).
    pub end_ms: u64,
    /// Part of the explicit warm-up (not judged against adaptive bars, used to learn baselines).
    pub warmup: bool,
    /// Phase A all-pairs DM matrix, if the `baseline` workload ran in this window.
    pub phase_a: Option<PhaseAResult>,
    /// Fanout burst results, if the `fanout_burst` workload ran in this window.
    pub fanout: Option<FanoutResult>,
    /// Scenarios (workloads and faults) run or skipped in this window.
    pub scenarios: Vec<ScenarioRecord>,
}

/// The Phase A matrix of one window.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct PhaseAResult {
    /// Every ordered pair attempted (N·(N−1) for a full matrix).
    pub pairs: Vec<PairOutcome>,
}

/// One ordered pair `from → to` of Phase A.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct PairOutcome {
    /// Sender node name.
    pub from: String,
    /// Receiver node name.
    pub to: String,
    /// `soak_api::DmOutcome` as its wire string (`acked`, `timeout`, …) or `error`.
    pub outcome: String,
    /// Receipt confirmed in the receiver's inbox (exactly once).
    pub delivered: bool,
    /// Send-to-ACK latency, microseconds, when acked.
    pub latency_us: Option<u64>,
    /// Attempts the sender made.
    pub attempts: u32,
    /// Detail for failures.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub error: Option<String>,
}

/// Fanout burst results of one window.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct FanoutResult {
    /// Topic used (fresh per burst).
    pub topic: String,
    /// Messages published in total.
    pub messages: u64,
    /// Payload size, bytes.
    pub bytes: u64,
    /// Publisher node names.
    pub publishers: Vec<String>,
    /// Per-subscriber results.
    pub subscribers: Vec<SubscriberResult>,
}

impl FanoutResult {
    /// The lowest per-subscriber delivery ratio (received / expected; a subscriber expecting
    /// nothing counts as 0), or `None` when there are no subscribers.
    pub fn min_delivery_ratio(&self) -> Option<f64> {
        self.subscribers
            .iter()
            .map(|s| {
                if s.expected == 0 {
                    0.0
                } else {
                    s.received as f64 / s.expected as f64
                }
            })
            .reduce(f64::min)
    }
}

/// What one subscriber received in a fanout burst.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct SubscriberResult {
    /// Node name.
    pub node: String,
    /// Messages expected.
    pub expected: u64,
    /// Distinct messages received.
    pub received: u64,
    /// Copies received beyond the first.
    pub duplicates: u64,
    /// Publish-to-delivery latency percentiles, microseconds (None when nothing arrived).
    pub p50_us: Option<u64>,
    /// 99th percentile.
    pub p99_us: Option<u64>,
    /// Maximum.
    pub max_us: Option<u64>,
    /// Set when this subscriber could not be read at all (an evidence gap, never a pass).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub error: Option<String>,
}

/// A scenario (workload or fault) as run, or not run, in a window.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ScenarioRecord {
    /// Scenario name, e.g. `baseline`, `fanout_burst`, `netem_delay`.
    pub name: String,
    /// What became of it.
    pub status: ScenarioStatus,
    /// Node names it targeted.
    #[serde(default)]
    pub targets: Vec<String>,
    /// Explicit bar exemptions this scenario grants (reported with the verdict).
    #[serde(default)]
    pub exemptions: Vec<Exemption>,
    /// Restart recovery, for scenarios that restart nodes.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub recovery: Option<Recovery>,
}

/// What became of a scenario.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "status", rename_all = "snake_case")]
pub enum ScenarioStatus {
    /// Ran; for faults, applied, verified effective, reverted and verified clean.
    Completed,
    /// Not run (e.g. not allowed by flags, unsupported kernel). Never a pass.
    Skipped {
        /// Why.
        reason: String,
    },
    /// Started but failed (e.g. fault never took effect, revert failed).
    Failed {
        /// Why.
        error: String,
    },
}

/// An explicit exemption of some nodes from one bar in one window.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Exemption {
    /// Bar id, e.g. `dispatcher_timeouts`.
    pub bar: String,
    /// Node names exempted.
    pub nodes: Vec<String>,
    /// Why.
    pub reason: String,
}

/// Restart recovery observed for one node.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Recovery {
    /// Node restarted.
    pub node: String,
    /// Time from restart until back in the mesh with Phase A ok, milliseconds; None = never.
    pub recovered_after_ms: Option<u64>,
}
