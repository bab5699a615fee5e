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
    /// For inventory runs: how many inventory hosts the run covered and which were left out
    /// (partial-fleet policy, `--min-hosts`). `None` for a local mesh and in older proofs.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub coverage: Option<FleetCoverage>,
    /// The command line that started the run (`argv`, values of secret-looking flags
    /// redacted). `None` in proofs before format 1.2.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub command: Option<Vec<String>>,
    /// Seed of the run's random choices. `None` in proofs before format 1.2 (whose
    /// `config.json` may still hold it: see [`RunMeta::run_seed`]).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub seed: Option<u64>,
    /// Errors the run reported (the fleet did not come up, a worker failed), in order, so
    /// `summary.md` can say why a run failed. At most [`RunMeta::MAX_ERRORS`] are kept.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub errors: Vec<String>,
    /// Errors beyond [`RunMeta::MAX_ERRORS`], counted (all of them are in `events.jsonl`).
    #[serde(default, skip_serializing_if = "is_zero")]
    pub errors_omitted: u64,
    /// Every time the run was resumed (`soak run --resume`), in order (1.3). Empty for a run
    /// that was never interrupted, and in older proofs.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub resumes: Vec<ResumeRecord>,
}

/// One resume of an interrupted or crashed run into the same proof (`soak run --resume`).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ResumeRecord {
    /// When the resume started, unix milliseconds: its first window starts here.
    pub at_ms: u64,
    /// What the proof said before: `running` (the writer died: killed or crashed),
    /// `interrupted` (SIGINT/SIGTERM, sealed) or `failed`.
    pub previous_status: RunStatus,
    /// The window index the resume started with (every earlier window is kept as recorded).
    pub next_window: u32,
    /// The window the interruption cut short, when one was under way: a gap in the evidence,
    /// never judged as a window.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub lost: Option<LostWindow>,
    /// Torn last lines of append-only files (the writer was killed mid-line) dropped before
    /// appending, one note each.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub repaired: Vec<String>,
    /// The resuming command line (secret flag values redacted when rendered).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub command: Option<Vec<String>>,
}

/// A window lost to an interruption: from where its evidence stops being judged to where the
/// resume's first window starts.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct LostWindow {
    /// Its index (the resume runs this index again).
    pub index: u32,
    /// Start of the lost span (the window's start), unix milliseconds.
    pub from_ms: u64,
    /// End of the lost span (the resume's start), unix milliseconds.
    pub to_ms: u64,
    /// Its partial record, when one had been written (SIGINT), moved to
    /// `windows/NNN/<this name>` so the re-run's `window.json` replaces it.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub record_file: Option<String>,
    /// Why it was lost, in words.
    pub cause: String,
}

fn is_zero(n: &u64) -> bool {
    *n == 0
}

impl RunMeta {
    /// Most errors kept in `run.json`.
    pub const MAX_ERRORS: usize = 20;

    /// Records an error, keeping at most [`RunMeta::MAX_ERRORS`] and counting the rest.
    pub fn record_error(&mut self, message: &str) {
        if self.errors.len() < Self::MAX_ERRORS {
            self.errors.push(message.to_string());
        } else {
            self.errors_omitted += 1;
        }
    }

    /// The run's seed: [`RunMeta::seed`], else the `seed` of the stored config (older proofs).
    pub fn run_seed(&self) -> Option<u64> {
        self.seed
            .or_else(|| self.config.get("seed").and_then(serde_json::Value::as_u64))
    }

    /// The command line as one shell-like string (arguments with spaces or quotes quoted,
    /// secret-looking flag values redacted).
    pub fn command_line(&self) -> Option<String> {
        let argv = crate::writer::redact_args(self.command.as_ref()?);
        Some(
            argv.iter()
                .map(|arg| shell_word(arg))
                .collect::<Vec<_>>()
                .join(" "),
        )
    }
}

/// `arg` as a POSIX shell word: bare when it only holds safe characters, else single-quoted.
fn shell_word(arg: &str) -> String {
    let safe = !arg.is_empty()
        && arg
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b"-_./=:,@%+".contains(&b));
    if safe {
        arg.to_string()
    } else {
        format!("'{}'", arg.replace('\'', "'\\''"))
    }
}

/// How much of the inventory a run covered. A verdict judged on fewer hosts than the inventory
/// lists says nothing about the missing ones; renderers show `N of M hosts` and name them.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct FleetCoverage {
    /// Hosts the inventory lists.
    pub inventory_hosts: usize,
    /// Hosts the run reached and drove.
    pub reached: usize,
    /// Hosts left out, with why.
    #[serde(default)]
    pub missing: Vec<MissingHost>,
}

impl FleetCoverage {
    /// Whether some inventory host was left out.
    pub fn is_partial(&self) -> bool {
        !self.missing.is_empty() || self.reached < self.inventory_hosts
    }

    /// `2 of 3 inventory hosts (missing: h3)`, or `3 of 3 inventory hosts`.
    pub fn describe(&self) -> String {
        let mut text = format!(
            "{} of {} inventory hosts",
            self.reached, self.inventory_hosts
        );
        if !self.missing.is_empty() {
            let names: Vec<&str> = self.missing.iter().map(|m| m.host.as_str()).collect();
            text.push_str(&format!(" (missing: {})", names.join(", ")));
        }
        text
    }
}

/// An inventory host a run left out.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct MissingHost {
    /// Host name, as in the inventory.
    pub host: String,
    /// Why it was left out (the connect/probe error, naming the host).
    pub error: String,
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

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn coverage_describes_n_of_m_and_names_the_missing_hosts() {
        let partial = FleetCoverage {
            inventory_hosts: 3,
            reached: 2,
            missing: vec![MissingHost {
                host: "h3".into(),
                error: "host `h3`: cannot connect".into(),
            }],
        };
        assert!(partial.is_partial());
        assert_eq!(partial.describe(), "2 of 3 inventory hosts (missing: h3)");
        let full = FleetCoverage {
            inventory_hosts: 3,
            reached: 3,
            missing: Vec::new(),
        };
        assert!(!full.is_partial());
        assert_eq!(full.describe(), "3 of 3 inventory hosts");
    }

    #[test]
    fn run_meta_without_coverage_still_reads() {
        // A run.json meta written before `coverage` existed.
        let old = serde_json::json!({
            "run_id": "20260101T000000Z-old", "label": "old", "started_at_ms": 1,
            "tool_version": "0.1.0", "gate": "broad-launch", "sample_interval_ms": 1000
        });
        let meta: RunMeta = serde_json::from_value(old).expect("old meta reads");
        assert_eq!(meta.coverage, None);
        let text = serde_json::to_string(&meta).expect("serializes");
        assert!(!text.contains("coverage"), "absent stays absent: {text}");
        assert_eq!((meta.command.as_ref(), meta.seed), (None, None));
        assert!(
            !text.contains("command") && !text.contains("seed"),
            "{text}"
        );
    }

    #[test]
    fn seed_falls_back_to_the_config_of_older_proofs_and_the_command_is_quoted() {
        let old = serde_json::json!({
            "run_id": "x", "label": "x", "started_at_ms": 1, "tool_version": "0.1.0",
            "gate": "broad-launch", "sample_interval_ms": 1000, "config": {"seed": 42}
        });
        let mut meta: RunMeta = serde_json::from_value(old).expect("reads");
        assert_eq!(meta.run_seed(), Some(42));
        meta.seed = Some(7);
        assert_eq!(meta.run_seed(), Some(7), "the explicit field wins");
        assert_eq!(meta.command_line(), None);
        meta.command = Some(vec![
            "soak".into(),
            "run".into(),
            "--label".into(),
            "it's a test".into(),
            "--nodes=3".into(),
        ]);
        assert_eq!(
            meta.command_line().as_deref(),
            Some("soak run --label 'it'\\''s a test' --nodes=3")
        );
    }
}
