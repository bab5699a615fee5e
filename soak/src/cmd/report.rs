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

/// Arguments of `soak report`.
#[derive(Debug, Args)]
pub struct ReportArgs {
    /// Proof directory to render.
    pub proof_dir: PathBuf,
    /// Write the page here instead of `<PROOF_DIR>/report.html`.
    #[arg(long, value_name = "FILE")]
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
        eprintln!("soak: note: {problem}");
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
    std::fs::write(&target, html.as_bytes()).map_err(|err| {
        CliError::unavailable(format!("failed to write {}: {err}", target.display()))
    })?;
    if let Some(note) = note {
        eprintln!("soak: note: {note}");
    }
    println!("wrote {}", target.display());
    Ok(Exit::Go)
}
