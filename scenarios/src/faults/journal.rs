//! The fault journal: one JSON object per step of every fault, written to the proof's
//! `faults/journal.jsonl` *before* the step acts (the verb: `apply`, `verify_effective`,
//! `revert`, `verify_clean`) and again when it completed (the result: `applied`, `effective`,
//! `reverted`, `clean`, or `failed` naming the step), with its evidence. `planned` and
//! `skipped` open and close faults that never ran.

use std::future::Future;
use std::pin::Pin;

use serde::{Deserialize, Serialize};

/// One step of a fault's lifecycle.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Step {
    /// Targets chosen (pure planning: selectors and the seed).
    Planned,
    /// About to apply.
    Apply,
    /// Applied.
    Applied,
    /// About to check that it took effect.
    VerifyEffective,
    /// Shown effective.
    Effective,
    /// About to revert.
    Revert,
    /// Reverted.
    Reverted,
    /// About to check the fleet is clean of it.
    VerifyClean,
    /// Shown clean.
    Clean,
    /// Not run (not allowed, or the backend cannot run it here).
    Skipped,
    /// A step failed (`of` names it).
    Failed,
}

impl Step {
    /// Spelling in the journal.
    pub fn as_str(self) -> &'static str {
        match self {
            Step::Planned => "planned",
            Step::Apply => "apply",
            Step::Applied => "applied",
            Step::VerifyEffective => "verify_effective",
            Step::Effective => "effective",
            Step::Revert => "revert",
            Step::Reverted => "reverted",
            Step::VerifyClean => "verify_clean",
            Step::Clean => "clean",
            Step::Skipped => "skipped",
            Step::Failed => "failed",
        }
    }
}

/// One line of `faults/journal.jsonl`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct JournalEntry {
    /// Fault instance, unique in the run (`high_rtt_peer@w1`).
    pub fault: String,
    /// Scenario name.
    #[serde(default)]
    pub scenario: String,
    /// Fault kind.
    #[serde(default)]
    pub kind: String,
    /// Backend that applies it.
    #[serde(default)]
    pub backend: String,
    /// Window index.
    pub window: u32,
    /// Target node names.
    pub targets: Vec<String>,
    /// The step.
    pub step: Step,
    /// For `failed`: which step failed.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub of: Option<Step>,
    /// Orchestrator clock, unix ms.
    pub at_ms: u64,
    /// What the step measured or did.
    #[serde(default, skip_serializing_if = "serde_json::Value::is_null")]
    pub evidence: serde_json::Value,
    /// One line for people (the reason of a skip or failure, or what was shown).
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub detail: String,
}

/// Where journal lines go. `record` completes once the line is durable (the proof writer has
/// appended it), so a fault never acts before its intent is on disk.
pub trait Journal: Send + Sync {
    /// Appends one line; an error means the line is not on disk and the step must not act.
    fn record(
        &self,
        entry: JournalEntry,
    ) -> Pin<Box<dyn Future<Output = Result<(), String>> + Send + '_>>;
}
