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
    /// What the audit after the run's faults found left behind (runs with faults).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub residue: Vec<Residue>,
    /// What happened to the nodes themselves, as the runner saw it (a process that exited, a
    /// host that stopped answering), in time order. Used to explain failures by their cause;
    /// never evidence of health. Empty in older proofs.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub node_events: Vec<NodeEvent>,
}

/// An object a fault left behind, or a place the audit could not look.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Residue {
    /// Node or host.
    pub node: String,
    /// What: an impairment id, a chain, a qdisc, a stopped process.
    pub object: String,
    /// One line for people.
    pub detail: String,
    /// The audit could not look (unreachable): UNKNOWN rather than NO-GO.
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub unverified: bool,
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
    pub counters: Metrics<u64>,
    /// Gauges by name (see `soak_api::gauges`).
    pub gauges: Metrics<f64>,
    /// Per-peer breakdown of some gauges, `gauge → peer node name → value`, so a bar can leave a
    /// link out (see [`Exemption::links`]). Recorded only where it matters (e.g. the
    /// suppression gauges, when anything is suppressed).
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub by_peer: BTreeMap<String, BTreeMap<String, f64>>,
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
    /// pair (the application was told it failed); so is one that arrived twice. The runner's
    /// own `delivered` flag can only take a delivery away (a record that contradicts itself is
    /// never a pass), never grant one.
    pub fn is_delivered(&self) -> bool {
        self.delivered && self.acked() && self.copies() == Some(1)
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
    /// Restart recovery, for scenarios that restart nodes (proof format ≤ 1.1; faults record
    /// theirs in [`FaultEvidence::recoveries`]).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub recovery: Option<Recovery>,
    /// What the nemesis proved about a fault scenario: applied, effective, reverted, clean,
    /// and the kind-specific checks (recovery, heal, cooling, first attempts).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub fault: Option<Box<FaultEvidence>>,
}

impl ScenarioRecord {
    /// The skip reason or failure text (empty when completed).
    pub fn status_detail(&self) -> &str {
        match &self.status {
            ScenarioStatus::Completed => "",
            ScenarioStatus::Skipped { reason } => reason,
            ScenarioStatus::Failed { error } => error,
        }
    }
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

/// An explicit exemption from one bar in one window, granted by a scenario and reported with
/// the verdict. It names what it exempts; it is never "everything".
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Exemption {
    /// Bar id, e.g. `dispatcher_timeouts`.
    pub bar: String,
    /// Node names exempted from the bar as a whole.
    pub nodes: Vec<String>,
    /// Why.
    pub reason: String,
    /// Links `(node, peer)`: on `node`, what it sees of `peer` is left out of the bar (e.g. a
    /// node's suppressions of a deliberately slowed peer). Honoured by the bars that can
    /// attribute to a peer (per-peer sample data); elsewhere such a bar judges the node whole.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub links: Vec<(String, String)>,
    /// Phase A: ordered pairs `(from, to)` expected to fail while the fault holds (e.g. across
    /// a partition); they are shown as "expected to fail", not required.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub pairs: Vec<(String, String)>,
}

/// Restart recovery observed for one node.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Recovery {
    /// Node restarted.
    pub node: String,
    /// Time from restart until back in the mesh with Phase A ok, milliseconds; None = never.
    pub recovered_after_ms: Option<u64>,
}

/// What the nemesis proved about one fault (the fault's own evidence; its journal lines are in
/// `faults/journal.jsonl`).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct FaultEvidence {
    /// Fault kind: `delay`, `loss`, `partition`, `restart`, `pause`, `idle`, `bandwidth`.
    pub kind: String,
    /// How it was applied: `node` (impairment API), `process` (signals, respawn), `tc`,
    /// `iptables`.
    pub backend: String,
    /// When the fault took hold (apply finished), unix ms.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub applied_at_ms: Option<u64>,
    /// When it was reverted (revert finished), unix ms.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub reverted_at_ms: Option<u64>,
    /// Was the fault shown to take effect?
    pub effective: Check,
    /// Was the fleet shown clean of it after the revert?
    pub clean: Check,
    /// Restart faults: one timing per restarted node.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub recoveries: Vec<RecoveryTiming>,
    /// Partition faults: how soon every cut pair delivered again after the revert.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub heal: Option<HealCheck>,
    /// Slow-peer faults: did the neighbours cool the peer, and recover it after?
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub cooling: Option<CoolingCheck>,
    /// Idle faults: did every pair succeed on its first attempt after the idle period?
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub first_attempt: Option<FirstAttemptCheck>,
}

/// The outcome of one verification step of a fault.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(tag = "status", rename_all = "snake_case")]
pub enum Check {
    /// Shown, with what showed it.
    Shown {
        /// One line for people.
        summary: String,
        /// The measurements.
        #[serde(default)]
        evidence: serde_json::Value,
    },
    /// Looked for and not shown.
    NotShown {
        /// One line for people.
        summary: String,
        /// The measurements.
        #[serde(default)]
        evidence: serde_json::Value,
    },
    /// Could not be checked (a step before it failed, the node was unreachable, the run was
    /// interrupted). Never a pass.
    NotChecked {
        /// Why.
        reason: String,
    },
}

impl Check {
    /// Whether this check was shown.
    pub fn is_shown(&self) -> bool {
        matches!(self, Check::Shown { .. })
    }

    /// The one-line text of the check.
    pub fn summary(&self) -> &str {
        match self {
            Check::Shown { summary, .. } | Check::NotShown { summary, .. } => summary,
            Check::NotChecked { reason } => reason,
        }
    }
}

/// The four timestamps of one restart, and the recovery they give.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct RecoveryTiming {
    /// Node restarted.
    pub node: String,
    /// The service or process restarted (what the journal shows was touched).
    #[serde(default)]
    pub service: String,
    /// When the restart was issued (journal time), unix ms.
    pub issued_ms: u64,
    /// When the new process was up (spawned / pid seen), unix ms.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub process_up_ms: Option<u64>,
    /// When its admin API first answered, unix ms.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub api_up_ms: Option<u64>,
    /// When every peer that had it established before had it established again, unix ms.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub in_views_ms: Option<u64>,
    /// When a DM to it and a DM from it were first both acknowledged, unix ms.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub first_dm_ms: Option<u64>,
    /// Issued → back in its peers' views *and* a DM through it succeeded; `None` = never (within
    /// the probe deadline).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub recovered_after_ms: Option<u64>,
    /// Instance id before and after (a restart is only proven by a new one).
    #[serde(default)]
    pub old_instance: String,
    /// Instance id after.
    #[serde(default)]
    pub new_instance: String,
}

/// How a partition healed.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct HealCheck {
    /// Ordered pairs that were cut.
    pub pairs: u64,
    /// Revert → every cut pair acknowledged a probe DM again, ms; `None` = not within the
    /// probe deadline.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub healed_after_ms: Option<u64>,
    /// Pairs still failing at the deadline (names).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub still_failing: Vec<String>,
}

/// Whether the neighbours cooled a slow peer and recovered it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct CoolingCheck {
    /// Some neighbour suppressed the target while the fault held (`None`: not observable).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub suppressed: Option<bool>,
    /// After the revert, no neighbour suppressed it any more (`None`: not observable).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub recovered: Option<bool>,
    /// What was seen, for people.
    pub detail: String,
}

/// Phase A first attempts after an idle period.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct FirstAttemptCheck {
    /// Pairs sent after the idle period.
    pub pairs: u64,
    /// Pairs acknowledged on their first attempt.
    pub first_try: u64,
    /// Pairs that needed a retry or failed (names).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub retried: Vec<String>,
}
