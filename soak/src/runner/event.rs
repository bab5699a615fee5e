//! The one event type of a run. The dispatcher loop emits these in order; every reporter
//! (terminal progress, JSON lines, proof writer) is an independent consumer of the same stream.

use serde::{Deserialize, Serialize};
use soak_gates::Verdict;
use soak_gates::model::{
    FanoutResult, NodeEvent, NodeRef, Residue, Sample, ScenarioRecord, WindowRecord,
};
use soak_scenarios::faults::journal::JournalEntry;

use soak_proofs::{FleetCoverage, MissingHost, ResumeRecord};

use crate::fleet::HostBuild;

/// Why a run stopped.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum RunStatus {
    /// Every planned window ran.
    Completed,
    /// SIGINT/SIGTERM arrived: work stopped early, final samples taken.
    Interrupted,
    /// The run could not start or continue (e.g. the fleet did not come up).
    Failed,
}

impl RunStatus {
    /// Spelling used in the proof and on the terminal.
    pub fn as_str(self) -> &'static str {
        match self {
            RunStatus::Completed => "completed",
            RunStatus::Interrupted => "interrupted",
            RunStatus::Failed => "failed",
        }
    }
}

/// Phase A summary for the live views (the full matrix is in [`RunEvent::WindowEnded`]).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct PhaseASummary {
    /// Pairs delivered exactly once.
    pub delivered: usize,
    /// Pairs attempted.
    pub pairs: usize,
    /// Median send-to-ACK latency, microseconds.
    pub p50_us: Option<u64>,
    /// Highest send-to-ACK latency, microseconds.
    pub max_us: Option<u64>,
    /// Wall time of the whole matrix, milliseconds.
    pub wall_ms: u64,
    /// Up to a few failed pairs, `from→to: why`.
    pub failures: Vec<String>,
    /// `sampled K of N−1 per node` for a sampled matrix.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub sampled: Option<String>,
}

/// A window's verdict for the live views.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct WindowBrief {
    /// `GO`, `NO-GO` or `UNKNOWN`.
    pub verdict: String,
    /// Worst verdict of the windows so far (soak-level bars are judged at the end).
    pub so_far: String,
    /// Bars of the window that are not GO.
    pub bars: Vec<BarBrief>,
}

/// One bar that is not GO.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct BarBrief {
    /// Bar id.
    pub bar: String,
    /// Its verdict.
    pub verdict: String,
    /// Why.
    pub reason: String,
    /// Nodes it names.
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub nodes: Vec<String>,
}

/// A scheduled fault as the run resolved it.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct PlannedFault {
    /// Instance (`partition_halves@w3`).
    pub instance: String,
    /// Scenario name.
    pub scenario: String,
    /// Kind.
    pub kind: String,
    /// Window.
    pub window: u32,
    /// Target nodes.
    pub targets: Vec<String>,
    /// Backend, when it runs.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub backend: Option<String>,
    /// Why it will be SKIPPED, when it will.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub skipped: Option<String>,
}

/// One node of the fleet as the run reached it (no secrets: the token stays out).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct FleetNode {
    /// Node name.
    pub name: String,
    /// Hex peer id.
    pub peer_id: String,
    /// Admin API base URL as reached from the orchestrator.
    pub admin_url: String,
    /// Process id, for processes this run spawned.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub pid: Option<u32>,
    /// Log file, for processes this run spawned.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub log: Option<String>,
    /// Data directory, for processes this run spawned (a resume re-spawns the node with it:
    /// same identity, same peer id).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub data_dir: Option<String>,
}

/// One event of a run.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(tag = "event", rename_all = "snake_case")]
pub enum RunEvent {
    /// How much of the inventory the run reached (inventory runs only; emitted before
    /// `FleetReady`). With `--min-hosts`, hosts may be left out: they are named here, in the
    /// proof's `run.json` (`coverage`), in `summary.md` and in the end-of-run output.
    FleetCoverage {
        /// Hosts the inventory lists.
        inventory_hosts: usize,
        /// Hosts reached and driven.
        reached: usize,
        /// Hosts left out, with why.
        missing: Vec<MissingHost>,
        /// The partial-fleet policy's message naming them, when any was left out.
        #[serde(skip_serializing_if = "Option::is_none")]
        message: Option<String>,
    },
    /// The fleet is up: every node ready and meshed.
    FleetReady {
        /// Every node.
        nodes: Vec<FleetNode>,
        /// Which build runs where.
        builds: Vec<HostBuild>,
        /// How long start-up took, milliseconds.
        took_ms: u64,
    },
    /// The run continues an interrupted or crashed run into the same proof (`soak run
    /// --resume`): emitted first, before the fleet is back. Recorded in `run.json`'s `resumes`
    /// and in `summary.md`.
    Resumed {
        /// What happened and what was lost.
        record: ResumeRecord,
    },
    /// The windows are about to start.
    RunStarted {
        /// Run id.
        run_id: String,
        /// Every node.
        nodes: Vec<NodeRef>,
        /// Windows planned.
        windows: u32,
        /// The first window this process runs (0, or where a resume picks up).
        #[serde(default)]
        first_window: u32,
        /// Warm-up windows among them.
        warmup_windows: u32,
        /// Window length, milliseconds.
        interval_ms: u64,
        /// Sampler period, milliseconds.
        sample_interval_ms: u64,
        /// Proof directory.
        proof_dir: String,
        /// Wall clock, unix milliseconds.
        at_ms: u64,
    },
    /// A window began.
    WindowStarted {
        /// Window index.
        window: u32,
        /// Part of the warm-up.
        warmup: bool,
        /// Unix milliseconds.
        at_ms: u64,
    },
    /// The Phase A matrix of a window finished.
    PhaseAFinished {
        /// Window index.
        window: u32,
        /// Summary.
        summary: PhaseASummary,
    },
    /// A fanout burst finished (or was skipped).
    FanoutFinished {
        /// Window index.
        window: u32,
        /// Results when anything was published.
        result: Option<FanoutResult>,
    },
    /// A scenario's record for a window.
    Scenario {
        /// Window index.
        window: u32,
        /// The record.
        record: ScenarioRecord,
    },
    /// One sampler round over every node.
    Samples {
        /// When the round started, unix milliseconds.
        at_ms: u64,
        /// How long the round took, milliseconds.
        took_ms: u64,
        /// One sample per node name.
        samples: Vec<(String, Sample)>,
    },
    /// A window ended (and its closing samples are in); its full record and, when the gate
    /// is known, its verdict.
    WindowEnded {
        /// The record (stored in the proof and judged).
        record: WindowRecord,
        /// The window's own verdict and its bars that are not GO (the soak-level adaptive
        /// policy is judged at the end).
        #[serde(skip_serializing_if = "Option::is_none")]
        verdict: Option<WindowBrief>,
    },
    /// The run's fault schedule, resolved (targets from selectors and the seed; backends, or
    /// why a fault will be skipped).
    FaultSchedule {
        /// Every scheduled fault.
        faults: Vec<PlannedFault>,
    },
    /// One fault journal line (also in `faults/journal.jsonl`).
    Fault {
        /// The line.
        entry: JournalEntry,
    },
    /// The residue sweep before the first window and the audit after the last.
    FaultResidue {
        /// Objects of earlier runs found and removed before this run.
        swept: Vec<Residue>,
        /// Objects of this run found after its teardown (any is NO-GO).
        found: Vec<Residue>,
    },
    /// Something happened to a node itself (its process exited, its host stopped answering),
    /// seen by the fleet supervisor. Written to the proof's `node_events.jsonl` and pushed to
    /// `Observations::node_events`, so the verdict can group the failures it causes.
    NodeEvent(NodeEvent),
    /// Something went wrong that did not stop the run.
    Error {
        /// What.
        message: String,
    },
    /// A signal arrived.
    Signal {
        /// `SIGINT` or `SIGTERM`.
        signal: String,
        /// Unix milliseconds.
        at_ms: u64,
    },
    /// The run ended; the verdict is known.
    RunFinished {
        /// Why it ended.
        status: RunStatus,
        /// `GO`, `NO-GO` or `UNKNOWN`.
        verdict: String,
        /// Unix milliseconds.
        at_ms: u64,
        /// The full verdict, for the proof writer (it lands in `verdict.json`, not in the
        /// event line).
        #[serde(skip)]
        judged: Option<Box<Verdict>>,
    },
}

/// The orchestrator clock, unix milliseconds.
pub fn now_ms() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| u64::try_from(d.as_millis()).unwrap_or(u64::MAX))
        .unwrap_or(0)
}

impl RunEvent {
    /// The coverage a `FleetCoverage` event carries.
    pub fn coverage(&self) -> Option<FleetCoverage> {
        match self {
            RunEvent::FleetCoverage {
                inventory_hosts,
                reached,
                missing,
                ..
            } => Some(FleetCoverage {
                inventory_hosts: *inventory_hosts,
                reached: *reached,
                missing: missing.clone(),
            }),
            _ => None,
        }
    }
}
