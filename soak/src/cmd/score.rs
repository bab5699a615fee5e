//! `soak score`: re-judge a stored proof directory with a gate profile.
//!
//! Step one validates what the user typed (gate name or gate file, touching no proof); step two
//! reads the proof, evaluates, prints the verdict tables and the end summary, and optionally
//! writes the re-scored verdict and every rendered file (report and JUnit included) to `--out`. Exit code: the verdict (GO 0, NO-GO 1, UNKNOWN 2); bad
//! input 64.

use std::path::PathBuf;

use clap::Args;
use soak_gates::{Outcome, Profile, Verdict, evaluate};
use soak_proofs::faults::FaultJournal;
use soak_proofs::render::{Evidence, SampleSource};
use soak_proofs::summary::{EndSummary, Totals};
use soak_proofs::{Proof, render};

use crate::exit::{CliError, CliResult, Exit};
use crate::runner::table;

/// Arguments of `soak score`.
#[derive(Debug, Args)]
pub struct ScoreArgs {
    /// Proof directory to re-score (complete or interrupted).
    pub proof_dir: PathBuf,
    /// Built-in gate profile (`limited-production`, `broad-launch`); default: the gate the run
    /// was judged with (its stored `gate.toml` when present).
    #[arg(long, conflicts_with = "gate_file")]
    pub gate: Option<String>,
    /// Gate profile TOML file (see docs/gates.md).
    #[arg(long, value_name = "FILE")]
    pub gate_file: Option<PathBuf>,
    /// Write the re-scored verdict.json, summary.md, summary.csv, windows.csv, timeline.csv,
    /// junit.xml and report.html here.
    #[arg(long, value_name = "DIR")]
    pub out: Option<PathBuf>,
    /// Print the verdict as JSON instead of tables.
    #[arg(long)]
    pub json: bool,
}

/// Runs `soak score`.
pub async fn execute(args: ScoreArgs) -> CliResult {
    // Step one: the gate the user named, before touching the proof.
    let named = match (&args.gate, &args.gate_file) {
        (Some(name), _) => Some(Profile::builtin(name).map_err(gate_error)?),
        (None, Some(path)) => {
            let text = std::fs::read_to_string(path).map_err(|err| {
                CliError::usage(format!(
                    "failed to read gate file {}: {err}",
                    path.display()
                ))
            })?;
            Some(Profile::from_toml_str(&text, &path.display().to_string()).map_err(gate_error)?)
        }
        (None, None) => None,
    };
    // Step two: the proof.
    let proof = soak_proofs::read(&args.proof_dir)
        .map_err(|err| CliError::usage(format!("{err}: {}", err.kind)))?;
    let profile = match named {
        Some(profile) => profile,
        None => stored_gate(&proof)?,
    };
    let verdict = evaluate(&proof.observations, &profile);
    let faults = FaultJournal::read(&proof.dir);
    let evidence = Evidence {
        meta: &proof.meta,
        status: proof.status(),
        windows: &proof.observations.windows,
        samples: SampleSource::Memory(&proof.observations.samples),
        faults: &faults,
        notes: &proof.warnings,
    };
    if args.json {
        let text = render::verdict_json(&verdict)
            .map_err(|err| CliError::unavailable(format!("{err}: {}", err.kind)))?;
        print!("{text}");
    } else {
        let summary = EndSummary::new(
            &proof.meta,
            proof.status(),
            &verdict,
            &proof.observations.windows,
            Totals::of_samples(
                &proof.observations.samples,
                &proof.observations.windows,
                proof.meta.sample_interval_ms,
            ),
        );
        print_tables(&proof, &verdict, &summary);
    }
    if let Some(out) = &args.out {
        std::fs::create_dir_all(out)
            .map_err(|err| CliError::usage(format!("failed to create {}: {err}", out.display())))?;
        render::write_report(out, &evidence, &verdict)
            .map_err(|err| CliError::unavailable(format!("{err}: {}", err.kind)))?;
        if !args.json {
            println!(
                "wrote the re-scored verdict and summaries to {}",
                out.display()
            );
        }
    }
    Ok(match verdict.verdict {
        Outcome::Go => Exit::Go,
        Outcome::NoGo => Exit::NoGo,
        Outcome::Unknown => Exit::Unknown,
    })
}

fn gate_error(err: soak_gates::Error) -> CliError {
    CliError::usage(format!("{err}: {}", err.kind))
}

/// The gate the run used: its stored TOML when present, else the built-in of that name.
fn stored_gate(proof: &Proof) -> Result<Profile, CliError> {
    match &proof.meta.gate_source {
        Some(text) => Profile::from_toml_str(text, "the proof's gate.toml").map_err(gate_error),
        None => Profile::builtin(&proof.meta.gate).map_err(|err| {
            CliError::usage(format!("{err}: {} (pass --gate or --gate-file)", err.kind))
        }),
    }
}

/// The same tables `soak run` prints at its end (one renderer for both), under a header naming
/// the proof.
fn print_tables(proof: &Proof, verdict: &Verdict, summary: &EndSummary) {
    let status = if proof.is_complete() {
        proof.status().as_str().to_string()
    } else {
        format!("{} (incomplete)", proof.status().as_str())
    };
    println!(
        "proof {}  run {}  status {}  gate {}",
        proof.dir.display(),
        proof.meta.run_id,
        status,
        verdict.gate
    );
    for warning in &proof.warnings {
        println!("note: {warning}");
    }
    println!("{}", table::windows_table(verdict, &proof.observations));
    match table::bars_table(verdict) {
        Some(bars) => println!("\n{bars}"),
        None => println!("\nevery bar holds"),
    }
    print!("\n{}", summary.text());
    if let Some(coverage) = proof.meta.coverage.as_ref().filter(|c| c.is_partial()) {
        println!(
            "PARTIAL FLEET: the verdict covers {}; it says nothing about the hosts left out",
            coverage.describe()
        );
    }
    if let Some(stored) = &proof.verdict
        && stored.gate == verdict.gate
        && stored != verdict
    {
        println!(
            "note: the stored verdict under `{}` was {}; re-scoring gives {}",
            stored.gate, stored.verdict, verdict.verdict
        );
    }
    println!("verdict: {} (gate {})", verdict.verdict, verdict.gate);
}
