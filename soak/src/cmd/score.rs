//! `soak score`: re-judge a stored proof directory with a gate profile.
//!
//! Step one validates what the user typed (gate name or gate file, touching no proof); step two
//! reads the proof, evaluates, prints the verdict tables and the end summary, and optionally
//! writes the re-scored verdict and every rendered file (report and JUnit included) to `--out`.
//! Exit code: the verdict (GO 0, NO-GO 1, UNKNOWN 2) — and never 0 for a proof whose run did
//! not complete; bad input 64 (including a proof file that is a link, a FIFO or a device, or
//! over the size bound, and an `--out` that is the proof itself, inside it, or a non-empty
//! directory).

use std::path::{Path, PathBuf};

use clap::Args;
use soak_gates::{Outcome, Profile, Verdict, evaluate};
use soak_proofs::faults::FaultJournal;
use soak_proofs::render::{Evidence, SampleSource};
use soak_proofs::summary::{EndSummary, Totals};
use soak_proofs::{Proof, render};

use crate::exit::{CliError, CliResult, Exit};
use crate::output::{errln, out, outln};
use crate::runner::table;

/// Arguments of `soak score`.
#[derive(Debug, Args)]
#[command(after_help = "\
Exit codes: the verdict (0 GO, 1 NO-GO, 2 UNKNOWN); 64 for bad input.

Examples:
  soak score proofs/20261122T010946Z-local
  soak score proofs/20261122T010946Z-local --gate limited-production --out rescored
  soak gates show broad-launch > strict.toml && soak score PROOF --gate-file strict.toml")]
pub struct ScoreArgs {
    /// Proof directory to re-score (complete or interrupted).
    #[arg(value_name = "DIR")]
    pub proof_dir: PathBuf,
    /// Built-in gate profile (`limited-production`, `broad-launch`) [default: the gate the
    /// run was judged with (its stored `gate.toml` when present)].
    #[arg(long, conflicts_with = "gate_file", value_name = "NAME")]
    pub gate: Option<String>,
    /// Gate profile TOML file (see docs/gates.md; `soak gates show NAME` prints a start).
    #[arg(long, value_name = "PATH")]
    pub gate_file: Option<PathBuf>,
    /// Write the re-scored verdict.json, summary.md, summary.csv, windows.csv, timeline.csv,
    /// phase_a.csv, junit.xml and report.html here: a new or empty directory outside the proof
    /// (the proof is never modified).
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
    if let Some(out) = &args.out {
        check_out_dir(out, &args.proof_dir)?;
    }
    // Step two: the proof.
    let proof = soak_proofs::read(&args.proof_dir)
        .map_err(|err| CliError::usage(format!("{err}: {}", err.kind)))?;
    let profile = match named {
        Some(profile) => profile,
        None => stored_gate(&proof)?,
    };
    let verdict = evaluate(&proof.observations, &profile);
    let faults = FaultJournal::read(&proof.dir)
        .map_err(|err| CliError::usage(format!("{err}: {}", err.kind)))?;
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
        out!("{text}");
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
            outln!(
                "wrote the re-scored verdict and summaries to {}",
                out.display()
            );
        }
    }
    Ok(match verdict.verdict {
        // A run that did not complete never passes, whatever its windows say (the evaluator
        // already makes missing planned windows UNKNOWN; this also holds for proofs without a
        // recorded plan).
        Outcome::Go if proof.status() != soak_proofs::RunStatus::Complete => {
            errln!(
                "soak: the run's status is `{}`: a GO on part of a run is not a GO (exit 2)",
                proof.status().as_str()
            );
            Exit::Unknown
        }
        Outcome::Go => Exit::Go,
        Outcome::NoGo => Exit::NoGo,
        Outcome::Unknown => Exit::Unknown,
    })
}

/// `--out` must be a new or empty directory that is neither the proof nor inside it.
fn check_out_dir(out: &Path, proof_dir: &Path) -> Result<(), CliError> {
    let shown = out.display();
    match std::fs::read_dir(out) {
        Ok(mut entries) => {
            if entries.next().is_some() {
                return Err(CliError::usage(format!(
                    "--out {shown} is not empty: refusing to write into it (give a new or empty \
                     directory)"
                )));
            }
        }
        Err(err) if err.kind() == std::io::ErrorKind::NotFound => {}
        Err(err) => {
            return Err(CliError::usage(format!(
                "--out {shown} is not a usable directory: {err}"
            )));
        }
    }
    let proof = std::fs::canonicalize(proof_dir).map_err(|err| {
        CliError::usage(format!("cannot read proof {}: {err}", proof_dir.display()))
    })?;
    if resolve(out).starts_with(&proof) {
        return Err(CliError::usage(format!(
            "--out {shown} is the proof itself or inside it: the proof is never modified (give a \
             directory outside it)"
        )));
    }
    Ok(())
}

/// `path` with its longest existing prefix canonicalized (links resolved) and the rest
/// appended, so a directory that does not exist yet can still be located.
fn resolve(path: &Path) -> PathBuf {
    let absolute = if path.is_absolute() {
        path.to_path_buf()
    } else {
        std::env::current_dir()
            .map(|cwd| cwd.join(path))
            .unwrap_or_else(|_| path.to_path_buf())
    };
    let mut rest = Vec::new();
    let mut prefix = absolute.as_path();
    loop {
        if let Ok(real) = std::fs::canonicalize(prefix) {
            let mut resolved = real;
            for part in rest.iter().rev() {
                resolved.push(part);
            }
            return resolved;
        }
        match (prefix.parent(), prefix.file_name()) {
            (Some(parent), Some(name)) => {
                rest.push(name.to_owned());
                prefix = parent;
            }
            _ => return absolute,
        }
    }
}

fn gate_error(err: soak_gates::Error) -> CliError {
    CliError::usage(format!("{err}: {}", err.kind))
}

/// The gate the run used: its stored TOML when present, else the built-in of that name.
pub(crate) fn stored_gate(proof: &Proof) -> Result<Profile, CliError> {
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
    outln!(
        "proof {}  run {}  status {}  gate {}",
        proof.dir.display(),
        proof.meta.run_id,
        status,
        verdict.gate
    );
    for warning in &proof.warnings {
        outln!("note: {warning}");
    }
    outln!("{}", table::windows_table(verdict, &proof.observations));
    outln!("{}", table::why_block(verdict));
    out!("\n{}", summary.text());
    if let Some(coverage) = proof.meta.coverage.as_ref().filter(|c| c.is_partial()) {
        outln!(
            "PARTIAL FLEET: the verdict covers {}; it says nothing about the hosts left out",
            coverage.describe()
        );
    }
    if let Some(stored) = &proof.verdict
        && stored.gate == verdict.gate
        && stored != verdict
    {
        outln!(
            "note: the stored verdict under `{}` was {}; re-scoring gives {}",
            stored.gate,
            stored.verdict,
            verdict.verdict
        );
    }
    outln!("verdict: {} (gate {})", verdict.verdict, verdict.gate);
}
