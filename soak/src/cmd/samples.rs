//! `soak samples`: print a proof's stored samples as JSON lines, one `{"node", "at_ms",
//! "outcome"}` object per sample (the compact `samples/<node>.smp` files are not meant to be
//! read by eye; this is how to grep them). Exit 0, or 64 when the proof cannot be read.

use std::io::Write;
use std::path::PathBuf;

use clap::Args;

use crate::exit::{CliError, CliResult, Exit};
use crate::output::errln;

/// Arguments of `soak samples`.
#[derive(Debug, Args)]
#[command(after_help = "\
Exit codes: 0, or 64 when the proof cannot be read or has no samples of a --node.

Examples:
  soak samples proofs/20261122T010946Z-local --node node-2 | grep missing
  soak samples proofs/20261122T010946Z-local | jq -c 'select(.outcome.status == \"missing\")'")]
pub struct SamplesArgs {
    /// Proof directory (complete or interrupted).
    #[arg(value_name = "DIR")]
    pub proof_dir: PathBuf,
    /// Only these nodes (default: every node).
    #[arg(long = "node", value_name = "NAME")]
    pub nodes: Vec<String>,
}

/// Runs `soak samples`.
pub async fn execute(args: SamplesArgs) -> CliResult {
    let proof = soak_proofs::read(&args.proof_dir)
        .map_err(|err| CliError::usage(format!("{err}: {}", err.kind)))?;
    for node in &args.nodes {
        if !proof.observations.samples.contains_key(node) {
            return Err(CliError::usage(format!(
                "the proof has no samples of node `{node}`"
            )));
        }
    }
    for warning in &proof.warnings {
        errln!("note: {warning}");
    }
    let stdout = std::io::stdout();
    let mut out = std::io::BufWriter::new(stdout.lock());
    for (node, samples) in &proof.observations.samples {
        if !args.nodes.is_empty() && !args.nodes.contains(node) {
            continue;
        }
        for sample in samples {
            let line = serde_json::json!({
                "node": node,
                "at_ms": sample.at_ms,
                "outcome": sample.outcome,
            });
            // A closed pipe (`| head`) ends the listing quietly.
            if writeln!(out, "{line}").is_err() {
                return Ok(Exit::Go);
            }
        }
    }
    let _ = out.flush();
    Ok(Exit::Go)
}
