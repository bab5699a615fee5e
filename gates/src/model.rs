//! The observation model: everything the evaluator may look at, as stored in a proof.
//!
//! The runner produces these; the proof directory stores them; the evaluator reads them. Node
//! keys are the node *names* used by the run (e.g. `node-0`, or an inventory host name).

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};

/// Everything a run observed.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Observations {
    /// Run-level facts.
    pub run: RunInfo,
    /// Continuous samples per node name, in the order they were taken.
    pub samples: BTreeMap<String, Vec<Sample>>,
    /// Windows in index order.
    pub windows: Vec<WindowRecord>,
    /// What happened to the nodes themselves, as the runner saw it (a process that exited, a
    /// host that stopped answering), in time order. Used to explain failures by their cause;
    /// never evidence of health. Empty in older proofs.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub node_events: Vec<NodeEvent>,
}

/// Something that happened to one node, seen by the runner rather than sampled from the node.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct NodeEvent {
    /// Node name.
    pub node: String,
    /// When the runner noticed, unix milliseconds (orchestrator clock).
    pub at_ms: u64,
    /// What happened.
    #[serde(flatten)]
    pub kind: NodeEventKind,
}

/// What happened to a node. Serialized with a `kind` tag in snake case; more kinds may follow
/// (readers must tolerate them only as far as serde does: an unknown kind is a parse error).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "kind", rename_all = "snake_case")]
pub enum NodeEventKind {
    /// A node process the runner supervises exited.
    Exited {
        /// Its process id, when known.
        #[serde(default, skip_serializing_if = "Option::is_none")]
        pid: Option<u32>,
        /// Exit code, when it exited normally.
        #[serde(default, skip_serializing_if = "Option::is_none")]
        code: Option<i32>,
        /// Signal number, when a signal ended it.
        #[serde(default, skip_serializing_if = "Option::is_none")]
        signal: Option<i32>,
        /// Signal name (`SIGKILL`), when a signal ended it.
        #[serde(default, skip_serializing_if = "Option::is_none")]
        signal_name: Option<String>,
    },
    /// A remote host stopped answering (SSH or the admin API), and how.
    Unreachable {
        /// The error, naming the host.
        error: String,
    },
    /// A kind written by a newer build; read so old builds still score new proofs.
    #[serde(other)]
    Other,
}

impl NodeEvent {
    /// The event in words, e.g. `node-2 (pid 1234) exited on signal 9 (SIGKILL)`.
    pub fn describe(&self) -> String {
        match &self.kind {
            NodeEventKind::Exited {
                pid,
                code,
                signal,
                signal_name,
            } => {
                let who = match pid {
                    Some(pid) => format!("{} (pid {pid})", self.node),
                    None => self.node.clone(),
                };
                match (signal, code) {
                    (Some(sig), _) => match signal_name {
                        Some(name) => format!("{who} exited on signal {sig} ({name})"),
                        None => format!("{who} exited on signal {sig}"),
                    },
                    (None, Some(code)) => format!("{who} exited with code {code}"),
                    (None, None) => format!("{who} exited"),
                }
            }
            NodeEventKind::Unreachable { error } => {
                format!("{} stopped answering: {error}", self.node)
            }
            NodeEventKind::Other => format!("{}: an event this build does not know", self.node),
        }
    }
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
    /// Windows the run planned (warm-up included); fewer recorded windows means the run was
    /// interrupted or a window was removed from the proof, which the `windows` soak bar never
    /// passes. `None` when unknown (observations not made by `soak run`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub planned_windows: Option<u32>,
    /// Planned window length, milliseconds: a recorded window shorter than half of it is
    /// partial and never judged GO. `None` when unknown.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub window_ms: Option<u64>,
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
    pub counters: BTreeMap<String, u64>,
    /// Gauges by name (see `soak_api::gauges`).
    pub gauges: BTreeMap<String, f64>,
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
    /// What the runner concluded: acked **and** found exactly once in the receiver's inbox.
    /// The gates never trust this flag alone; they judge from `outcome` and `inbox_copies`
    /// (see [`PairOutcome::copies`]).
    pub delivered: bool,
    /// Copies of this message found in the receiver's inbox; `None` when the inbox could not
    /// be read (receipt unconfirmed). Absent in proofs older than format 1.2, where
    /// `delivered` meant "found exactly once".
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub inbox_copies: Option<u32>,
    /// Send-to-ACK latency, microseconds, when acked.
    pub latency_us: Option<u64>,
    /// Attempts the sender made.
    pub attempts: u32,
    /// Detail for failures.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub error: Option<String>,
}

impl PairOutcome {
    /// Copies in the receiver's inbox, from the raw fact; for proofs older than
    /// `inbox_copies`, a `delivered` pair was found exactly once and any other is unknown.
    pub fn copies(&self) -> Option<u32> {
        self.inbox_copies.or_else(|| self.delivered.then_some(1))
    }

    /// Whether the sender saw the ACK.
    pub fn acked(&self) -> bool {
        self.outcome == "acked"
    }

    /// What the user saw: acked by the sender **and** in the receiver's inbox exactly once.
    /// A message that arrived while its sender saw a timeout, busy or an error is a failed
    /// pair (the application was told it failed); so is one that arrived twice.
    pub fn is_delivered(&self) -> bool {
        self.acked() && self.copies() == Some(1)
    }
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
    /// Node names it targeted (for a fault: the nodes it acted on; failures on them in this
    /// window are explained by the fault in the verdict's causes).
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
