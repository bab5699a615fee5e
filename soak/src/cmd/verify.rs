//! `soak verify`: check a proof directory against its manifest (sha256 of every file, format
//! version, sealed status). Exit 0 when it verifies, 1 on any mismatch, 64 when the directory
//! does not exist or is no proof at all (neither `manifest.json` nor `run.json`). Links, FIFOs
//! and devices in the tree are reported, never followed or opened.

use std::path::PathBuf;

use clap::Args;

use crate::exit::{CliError, CliResult, Exit};
use crate::output::outln;

/// Arguments of `soak verify`.
#[derive(Debug, Args)]
#[command(after_help = "\
Exit codes: 0 every file matches the manifest, 1 a mismatch (or an unsealed proof), 64 not a
directory.

Example:
  soak verify proofs/20261122T010946Z-local")]
pub struct VerifyArgs {
    /// Proof directory to check.
    #[arg(value_name = "DIR")]
    pub proof_dir: PathBuf,
    /// Print the report as JSON.
    #[arg(long)]
    pub json: bool,
}

/// Runs `soak verify`.
pub async fn execute(args: VerifyArgs) -> CliResult {
    if !args.proof_dir.is_dir() {
        return Err(CliError::usage(format!(
            "{} is not a directory",
            args.proof_dir.display()
        )));
    }
    let report = soak_proofs::verify(&args.proof_dir);
    if report.not_a_proof {
        return Err(CliError::usage(format!(
            "{} is not a proof directory (neither manifest.json nor run.json is there)",
            args.proof_dir.display()
        )));
    }
    if args.json {
        let text = serde_json::to_string_pretty(&report)
            .map_err(|err| CliError::unavailable(format!("failed to print the report: {err}")))?;
        outln!("{text}");
    } else {
        let format = report
            .format
            .map_or("unknown".to_string(), |f| f.to_string());
        let status = report.status.map_or("unknown", |s| s.as_str());
        outln!(
            "proof {}  format {format}  status {status}  {} files checked",
            report.dir.display(),
            report.checked
        );
        for (label, list) in [
            ("modified", &report.modified),
            ("missing", &report.missing),
            ("added", &report.added),
        ] {
            for path in list {
                outln!("{label}: {path}");
            }
        }
        for problem in &report.problems {
            outln!("problem: {problem}");
        }
        outln!(
            "{}",
            if report.is_ok() {
                "verified: every file matches the manifest"
            } else {
                "MISMATCH: the proof does not match its manifest"
            }
        );
    }
    Ok(if report.is_ok() { Exit::Go } else { Exit::NoGo })
}
