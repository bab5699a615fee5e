//! The fault journal (`faults/journal.jsonl`) as the renderers read it: fault steps and the
//! fault periods they imply.
//!
//! The nemesis writes one JSON object per line with at least `fault` (the fault instance or
//! kind), `window`, `targets` (node names), `step`, `at_ms` (unix ms) and `evidence`; it
//! journals each step's intent before it acts (`apply`, `verify_effective`, `revert`,
//! `verify_clean`) and its result after (`applied`, `effective`, `reverted`, `clean`, or
//! `failed` with `of` naming the step), and `planned` / `skipped` for faults that never ran.
//! Other fields (`kind`, `scenario`, `backend`, `detail`, …) are kept where the report shows them
//! or ignored. This module only
//! reads it, tolerantly: a missing file is an empty journal, and a line that does not parse is
//! reported (with its line number) and left out, never a crash. A fault **period** runs from
//! an `applied` step to the next `reverted` step of the same (`fault`, `window`) pair, or — when
//! no revert was journaled — to the end of that window, else to the end of the run.

use std::collections::BTreeMap;
use std::fmt;
use std::path::Path;

use serde::{Deserialize, Serialize};

use crate::error::ErrorKind;
use crate::format;
use crate::fsio;

/// One step of one fault, as journaled.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct FaultStep {
    /// Fault instance or kind, e.g. `netem_delay`.
    pub fault: String,
    /// Window the fault belongs to.
    pub window: u32,
    /// Node names it targets.
    #[serde(default)]
    pub targets: Vec<String>,
    /// Which step.
    pub step: StepKind,
    /// When, unix ms.
    pub at_ms: u64,
    /// What the nemesis saw (free form).
    #[serde(default)]
    pub evidence: serde_json::Value,
    /// Fault kind, when journaled.
    #[serde(default)]
    pub kind: String,
    /// For `failed`: which step failed.
    #[serde(default)]
    pub of: Option<StepKind>,
    /// One line for people (a skip's or failure's reason).
    #[serde(default)]
    pub detail: String,
}

/// The steps of a fault's life.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum StepKind {
    /// Journaled before anything is touched.
    Planned,
    /// About to apply.
    Apply,
    /// The fault is in place.
    Applied,
    /// About to check that it took effect.
    VerifyEffective,
    /// Verified to take effect.
    Effective,
    /// About to revert.
    Revert,
    /// Rolled back.
    Reverted,
    /// About to check the fleet is clean.
    VerifyClean,
    /// Verified clean after the rollback.
    Clean,
    /// Not run (not allowed, unsupported).
    Skipped,
    /// A step failed.
    Failed,
}

impl StepKind {
    /// Lower-case name, as in the journal.
    pub fn as_str(self) -> &'static str {
        match self {
            StepKind::Planned => "planned",
            StepKind::Apply => "apply",
            StepKind::Applied => "applied",
            StepKind::VerifyEffective => "verify_effective",
            StepKind::Effective => "effective",
            StepKind::Revert => "revert",
            StepKind::Reverted => "reverted",
            StepKind::VerifyClean => "verify_clean",
            StepKind::Clean => "clean",
            StepKind::Skipped => "skipped",
            StepKind::Failed => "failed",
        }
    }
}

impl fmt::Display for StepKind {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// The journal as read.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct FaultJournal {
    /// Whether `faults/journal.jsonl` exists.
    pub present: bool,
    /// Every step that parsed, in file order.
    pub steps: Vec<FaultStep>,
    /// Lines left out and why (`line 3: …`), and a file that could not be read.
    pub problems: Vec<String>,
}

/// How a fault period ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum PeriodEnd {
    /// A `reverted` step closed it.
    Reverted,
    /// No revert journaled: it runs to the end of its window.
    WindowEnd,
    /// No revert journaled and its window is unknown: it runs to the end of the run.
    RunEnd,
}

/// A span during which a fault was in place.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct FaultPeriod {
    /// Fault instance or kind.
    pub fault: String,
    /// Window.
    pub window: u32,
    /// Targets (of the `applied` step, else of any step of the pair).
    pub targets: Vec<String>,
    /// The `applied` step, unix ms.
    pub from_ms: u64,
    /// The `reverted` step, or the window / run end.
    pub to_ms: u64,
    /// What closed it.
    pub end: PeriodEnd,
}

impl FaultJournal {
    /// Reads `faults/journal.jsonl` of the proof in `dir` through the bounded, link-free opener
    /// of [`crate::fsio`] (a proof is untrusted input). Tolerant like the rest of this module (a
    /// missing file is an empty journal; a file that cannot be read is a problem, not a
    /// failure), except that a journal or `faults/` that is a symbolic link, a FIFO, a device
    /// or over the size bound is refused with an error, as every other proof file is.
    pub fn read(dir: &Path) -> crate::Result<FaultJournal> {
        let faults_dir = dir.join(format::FAULTS_DIR);
        let path = faults_dir.join(format::FAULT_JOURNAL);
        let bytes = (|| {
            if !fsio::is_dir(&faults_dir)? || !fsio::is_regular(&path)? {
                return Ok(None);
            }
            fsio::read_bounded(&path, format::MAX_JSONL_BYTES).map(Some)
        })();
        match bytes {
            Ok(Some(bytes)) => {
                let mut journal = FaultJournal::parse(&String::from_utf8_lossy(&bytes));
                journal.present = true;
                Ok(journal)
            }
            Ok(None) => Ok(FaultJournal::default()),
            Err(err) if matches!(err.kind, ErrorKind::Refused(_)) => Err(err),
            Err(err) => Ok(FaultJournal {
                present: true,
                steps: Vec::new(),
                problems: vec![format!(
                    "cannot read {}: {err}: {}",
                    path.display(),
                    err.kind
                )],
            }),
        }
    }

    /// Parses journal text: one step per non-empty line; bad lines become problems.
    pub fn parse(text: &str) -> FaultJournal {
        let mut journal = FaultJournal {
            present: true,
            ..FaultJournal::default()
        };
        for (i, line) in text.lines().enumerate() {
            if line.trim().is_empty() {
                continue;
            }
            match serde_json::from_str::<FaultStep>(line) {
                Ok(step) => journal.steps.push(step),
                Err(err) => journal.problems.push(format!(
                    "{}/{} line {}: left out: {err}",
                    format::FAULTS_DIR,
                    format::FAULT_JOURNAL,
                    i + 1
                )),
            }
        }
        journal
    }

    /// The fault periods. `windows` maps a window index to its `(start_ms, end_ms)`; `run_end_ms`
    /// closes a period whose window is unknown. Ordered by start time.
    pub fn periods(
        &self,
        windows: &BTreeMap<u32, (u64, u64)>,
        run_end_ms: u64,
    ) -> Vec<FaultPeriod> {
        let mut by_pair: BTreeMap<(&str, u32), Vec<&FaultStep>> = BTreeMap::new();
        for step in &self.steps {
            by_pair
                .entry((step.fault.as_str(), step.window))
                .or_default()
                .push(step);
        }
        let mut out = Vec::new();
        for ((_, window), mut steps) in by_pair {
            steps.sort_by_key(|s| s.at_ms);
            let fallback_targets = steps
                .iter()
                .find(|s| !s.targets.is_empty())
                .map(|s| s.targets.clone())
                .unwrap_or_default();
            let mut open: Option<&FaultStep> = None;
            for step in steps {
                match step.step {
                    StepKind::Applied if open.is_none() => open = Some(step),
                    StepKind::Reverted => {
                        if let Some(applied) = open.take() {
                            out.push(period(
                                applied,
                                step.at_ms,
                                PeriodEnd::Reverted,
                                &fallback_targets,
                            ));
                        }
                    }
                    _ => {}
                }
            }
            if let Some(applied) = open {
                let (to_ms, end) = match windows.get(&window) {
                    Some(&(_, end_ms)) => (end_ms, PeriodEnd::WindowEnd),
                    None => (run_end_ms, PeriodEnd::RunEnd),
                };
                out.push(period(
                    applied,
                    to_ms.max(applied.at_ms),
                    end,
                    &fallback_targets,
                ));
            }
        }
        out.sort_by(|a, b| (a.from_ms, &a.fault, a.window).cmp(&(b.from_ms, &b.fault, b.window)));
        out
    }

    /// Every (`fault`, `window`) pair with its steps in time order (for tables).
    pub fn by_fault(&self) -> Vec<(String, u32, Vec<&FaultStep>)> {
        let mut by_pair: BTreeMap<(String, u32), Vec<&FaultStep>> = BTreeMap::new();
        for step in &self.steps {
            by_pair
                .entry((step.fault.clone(), step.window))
                .or_default()
                .push(step);
        }
        by_pair
            .into_iter()
            .map(|((fault, window), mut steps)| {
                steps.sort_by_key(|s| s.at_ms);
                (fault, window, steps)
            })
            .collect()
    }
}

fn period(applied: &FaultStep, to_ms: u64, end: PeriodEnd, fallback: &[String]) -> FaultPeriod {
    FaultPeriod {
        fault: applied.fault.clone(),
        window: applied.window,
        targets: if applied.targets.is_empty() {
            fallback.to_vec()
        } else {
            applied.targets.clone()
        },
        from_ms: applied.at_ms,
        to_ms,
        end,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn line(fault: &str, window: u32, step: &str, at_ms: u64) -> String {
        serde_json::json!({
            "fault": fault, "window": window, "targets": ["node-1"], "step": step,
            "at_ms": at_ms, "evidence": {"rtt_ms": 20}
        })
        .to_string()
    }

    #[test]
    fn a_period_runs_from_applied_to_reverted_of_the_same_fault_and_window() {
        let text = [
            line("netem_delay", 1, "planned", 1_000),
            line("netem_delay", 1, "applied", 1_100),
            line("netem_delay", 1, "effective", 1_200),
            line("partition", 1, "applied", 1_150),
            line("netem_delay", 1, "reverted", 1_900),
            line("netem_delay", 1, "clean", 1_950),
        ]
        .join("\n");
        let journal = FaultJournal::parse(&text);
        assert!(journal.problems.is_empty(), "{:?}", journal.problems);
        let windows = BTreeMap::from([(1, (1_000, 2_000))]);
        let periods = journal.periods(&windows, 5_000);
        assert_eq!(periods.len(), 2, "{periods:?}");
        assert_eq!(
            (
                periods[0].fault.as_str(),
                periods[0].from_ms,
                periods[0].to_ms,
                periods[0].end
            ),
            ("netem_delay", 1_100, 1_900, PeriodEnd::Reverted)
        );
        // No revert journaled: open to the window end.
        assert_eq!(
            (periods[1].fault.as_str(), periods[1].to_ms, periods[1].end),
            ("partition", 2_000, PeriodEnd::WindowEnd)
        );
        assert_eq!(periods[1].targets, vec!["node-1".to_string()]);
    }

    #[test]
    fn unknown_window_runs_to_the_run_end_and_skipped_faults_have_no_period() {
        let text = [
            line("restart", 7, "applied", 3_000),
            line("netem_loss", 2, "skipped", 3_000),
        ]
        .join("\n");
        let periods = FaultJournal::parse(&text).periods(&BTreeMap::new(), 9_000);
        assert_eq!(periods.len(), 1);
        assert_eq!(
            (periods[0].to_ms, periods[0].end),
            (9_000, PeriodEnd::RunEnd)
        );
    }

    #[test]
    fn malformed_lines_are_reported_with_their_line_number_and_never_crash() {
        let text = format!(
            "{}\nnot json\n{{\"fault\": \"x\"}}\n\n{}\n{{\"fault\":\"y\",\"window\":0,\"step\":\"exploded\",\"at_ms\":1}}\n{{\"fault\"",
            line("a", 0, "applied", 10),
            line("a", 0, "reverted", 20)
        );
        let journal = FaultJournal::parse(&text);
        assert_eq!(journal.steps.len(), 2);
        assert_eq!(journal.problems.len(), 4, "{:?}", journal.problems);
        assert!(
            journal.problems[0].contains("line 2"),
            "{:?}",
            journal.problems
        );
        assert!(
            journal.problems[1].contains("line 3"),
            "{:?}",
            journal.problems
        );
        assert!(
            journal.problems[2].contains("line 6"),
            "{:?}",
            journal.problems
        );
        assert!(
            journal.problems[3].contains("line 7"),
            "{:?}",
            journal.problems
        );
        assert_eq!(journal.periods(&BTreeMap::new(), 100).len(), 1);
    }

    #[test]
    fn an_absent_journal_is_empty_and_not_present() {
        let dir = tempfile::tempdir().expect("tmp");
        let journal = FaultJournal::read(dir.path()).expect("no journal is no error");
        assert_eq!(journal, FaultJournal::default());
        assert!(!journal.present);
    }

    /// The journal is read like every other proof file: a link (to a file or as `faults/`
    /// itself) is refused, never followed, and a FIFO is refused without hanging.
    #[test]
    fn a_linked_or_fifo_journal_is_refused() {
        let refused = |dir: &Path| match FaultJournal::read(dir) {
            Err(err) => matches!(err.kind, ErrorKind::Refused(_)),
            Ok(journal) => panic!("read {journal:?}"),
        };
        let outside = tempfile::tempdir().expect("tmp");
        let target = outside.path().join(format::FAULT_JOURNAL);
        std::fs::write(&target, "{}\n").expect("write");

        let dir = tempfile::tempdir().expect("tmp");
        let faults = dir.path().join(format::FAULTS_DIR);
        std::fs::create_dir(&faults).expect("mkdir");
        let journal = faults.join(format::FAULT_JOURNAL);
        std::os::unix::fs::symlink(&target, &journal).expect("symlink");
        assert!(refused(dir.path()), "a linked journal.jsonl");
        std::fs::remove_file(&journal).expect("rm");
        let status = std::process::Command::new("mkfifo")
            .arg(&journal)
            .status()
            .expect("mkfifo");
        assert!(status.success());
        assert!(refused(dir.path()), "a FIFO journal.jsonl");

        let linked = tempfile::tempdir().expect("tmp");
        std::os::unix::fs::symlink(outside.path(), linked.path().join(format::FAULTS_DIR))
            .expect("symlink");
        assert!(refused(linked.path()), "a linked faults/");
    }
}
