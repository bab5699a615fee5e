//! `soak report`: re-render a proof's `report.html` from its stored evidence only (samples,
//! windows, stored verdict, fault journal). Works on complete, interrupted and incomplete proofs
//! and on proofs of older formats.
//!
//! Without `--out` the report goes to `<DIR>/report.html` — unless the proof is sealed and the
//! new page differs from the one its manifest covers (an older proof, or one written by another
//! soak version): a sealed proof is never changed, so the page is written to
//! `./<run-id>.report.html` instead and the output says so. Exit 0; 64 when DIR is not a proof;
//! 69 when the file cannot be written.

use std::path::PathBuf;

use clap::Args;
use sha2::Digest;
use soak_proofs::format;
use soak_proofs::render;

use crate::exit::{CliError, CliResult, Exit};
use crate::output::{errln, outln};

/// Arguments of `soak report`.
#[derive(Debug, Args)]
#[command(after_help = "\
Examples:
  soak report proofs/<run-id>                     # rewrite its report.html
  soak report proofs/<run-id> --out /tmp/report.html")]
pub struct ReportArgs {
    /// Proof directory to render.
    #[arg(value_name = "DIR")]
    pub proof_dir: PathBuf,
    /// Write the page here instead of `report.html` in the proof.
    #[arg(long, value_name = "PATH")]
    pub out: Option<PathBuf>,
}

/// Runs `soak report`.
pub async fn execute(args: ReportArgs) -> CliResult {
    let dir = &args.proof_dir;
    let render::StoredReport {
        html,
        proof,
        faults,
    } = render::stored_report(dir)
        .map_err(|err| CliError::usage(format!("{err}: {}", err.kind)))?;
    for problem in &faults.problems {
        errln!("soak: note: {problem}");
    }
    let (target, note) = match &args.out {
        Some(path) => (path.clone(), None),
        None => {
            let inside = dir.join(format::REPORT_HTML);
            let sealed = proof.status() != soak_proofs::RunStatus::Running;
            let covered = proof
                .manifest
                .as_ref()
                .and_then(|m| m.files.get(format::REPORT_HTML));
            let same = covered
                .is_some_and(|f| f.sha256 == hex::encode(sha2::Sha256::digest(html.as_bytes())));
            if !sealed || same {
                (inside, None)
            } else {
                let outside = PathBuf::from(format!("{}.report.html", proof.meta.run_id));
                (
                    outside,
                    Some(
                        "the proof is sealed and its manifest does not cover this page, so it \
                         was written outside the proof (pass --out to choose where)",
                    ),
                )
            }
        }
    };
    // Atomically (temporary file + rename): a symlink or FIFO planted at the target is
    // replaced, never written through, and a failed write leaves the old page.
    soak_proofs::write_atomic(&target, html.as_bytes()).map_err(|err| {
        CliError::unavailable(format!(
            "failed to write {}: {}",
            target.display(),
            err.kind
        ))
    })?;
    if let Some(note) = note {
        errln!("soak: note: {note}");
    }
    outln!("wrote {}", target.display());
    Ok(Exit::Go)
}

#[cfg(test)]
mod tests {
    use std::collections::BTreeMap;

    use soak_proofs::faults::{FaultJournal, PeriodEnd, StepKind};
    use soak_scenarios::faults::journal::{JournalEntry, Step};

    /// The report reads the journal the nemesis writes: every step it journals parses (none
    /// is left out as malformed) and its applied → reverted span is the shaded period.
    #[test]
    fn the_report_reads_every_line_the_nemesis_journals() {
        let entry = |step: Step, at_ms: u64, of: Option<Step>| JournalEntry {
            fault: "high_rtt_peer@w1".into(),
            scenario: "high_rtt_peer".into(),
            kind: "delay".into(),
            backend: "node".into(),
            window: 1,
            targets: vec!["node-2".into()],
            step,
            of,
            at_ms,
            evidence: serde_json::json!({"rtt_ms": 21.5}),
            detail: String::new(),
        };
        let steps = [
            entry(Step::Planned, 1_000, None),
            entry(Step::Apply, 1_010, None),
            entry(Step::Applied, 1_020, None),
            entry(Step::VerifyEffective, 1_030, None),
            entry(Step::Effective, 1_040, None),
            entry(Step::Revert, 2_000, None),
            entry(Step::Reverted, 2_010, None),
            entry(Step::VerifyClean, 2_020, None),
            entry(Step::Failed, 2_030, Some(Step::VerifyClean)),
            entry(Step::Skipped, 2_040, None),
        ];
        let text: Vec<String> = steps
            .iter()
            .map(|e| serde_json::to_string(e).expect("serializes"))
            .collect();
        let journal = FaultJournal::parse(&text.join("\n"));
        assert!(journal.problems.is_empty(), "{:?}", journal.problems);
        assert_eq!(journal.steps.len(), steps.len());
        for (read, written) in journal.steps.iter().zip(&steps) {
            assert_eq!(read.step.as_str(), written.step.as_str());
        }
        assert_eq!(journal.steps[8].of, Some(StepKind::VerifyClean));
        let periods = journal.periods(&BTreeMap::from([(1, (0, 3_000))]), 5_000);
        assert_eq!(periods.len(), 1);
        assert_eq!(
            (periods[0].from_ms, periods[0].to_ms, periods[0].end),
            (1_020, 2_010, PeriodEnd::Reverted)
        );
        assert_eq!(periods[0].targets, vec!["node-2".to_string()]);
    }
}
