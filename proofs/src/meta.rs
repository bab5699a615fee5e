//! Run metadata and the manifest.

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};
use soak_gates::Outcome;
use soak_gates::model::NodeRef;

use crate::format::FormatVersion;

/// What the runner knows about a run; stored in `run.json` (and the config in `config.json`).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct RunMeta {
    /// Run id (see [`crate::run_id`]).
    pub run_id: String,
    /// Short human label given at start.
    pub label: String,
    /// Run start, unix milliseconds.
    pub started_at_ms: u64,
    /// `soak` version that wrote the proof.
    pub tool_version: String,
    /// Node build per host (filled in once deployed or spawned).
    #[serde(default)]
    pub node_builds: Vec<NodeBuild>,
    /// sha256 of the inventory as resolved, when there was one.
    #[serde(default)]
    pub inventory_digest: Option<String>,
    /// Gate profile name.
    pub gate: String,
    /// Gate profile TOML text, when known (stored as `gate.toml`; re-scoring without `--gate`
    /// uses it, so a custom `--gate-file` is reproduced exactly).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub gate_source: Option<String>,
    /// Scenario names planned, in order.
    #[serde(default)]
    pub scenarios: Vec<String>,
    /// Nominal interval of the continuous sampler, milliseconds.
    pub sample_interval_ms: u64,
    /// Every node of the fleet (may be filled in after start with `ProofWriter::update_meta`).
    #[serde(default)]
    pub nodes: Vec<NodeRef>,
    /// Resolved run config; secrets are redacted before it is written.
    #[serde(default)]
    pub config: serde_json::Value,
}

/// The node binary running on one host.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct NodeBuild {
    /// Host (or node) name.
    pub host: String,
    /// sha256 of the binary, hex.
    pub binary_sha256: String,
    /// Node version string.
    pub version: String,
    /// Git revision of the node build.
    pub git: String,
    /// Process start, unix milliseconds.
    pub started_at_ms: u64,
}

/// Status of a run as recorded in the manifest.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum RunStatus {
    /// Still being written (or the writer died: the proof is incomplete).
    Running,
    /// Every planned window ran and was judged.
    Complete,
    /// Stopped by SIGINT/SIGTERM; judged on what was observed.
    Interrupted,
    /// Stopped by an error; judged on what was observed.
    Failed,
}

impl RunStatus {
    /// Lower-case name.
    pub fn as_str(self) -> &'static str {
        match self {
            RunStatus::Running => "running",
            RunStatus::Complete => "complete",
            RunStatus::Interrupted => "interrupted",
            RunStatus::Failed => "failed",
        }
    }
}

/// `manifest.json`: written at start with status `running`, rewritten last at finish.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Manifest {
    /// Format version of the directory.
    pub format: FormatVersion,
    /// Run id.
    pub run_id: String,
    /// Run label.
    pub label: String,
    /// Status.
    pub status: RunStatus,
    /// `soak` version.
    pub tool_version: String,
    /// Run start, unix ms.
    pub started_at_ms: u64,
    /// When the manifest was sealed, unix ms (`None` while running).
    pub finished_at_ms: Option<u64>,
    /// Node build per host.
    pub node_builds: Vec<NodeBuild>,
    /// Inventory digest.
    pub inventory_digest: Option<String>,
    /// Gate profile name.
    pub gate: String,
    /// Scenarios planned.
    pub scenarios: Vec<String>,
    /// Soak verdict (`None` while running).
    pub verdict: Option<Outcome>,
    /// Every file of the directory but the manifest, by relative path (`/`-separated).
    pub files: BTreeMap<String, FileEntry>,
}

/// One file in the manifest.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct FileEntry {
    /// sha256 of the contents, hex.
    pub sha256: String,
    /// Size in bytes.
    pub bytes: u64,
}
