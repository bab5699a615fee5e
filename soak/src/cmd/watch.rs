//! `soak watch DIR`: follows a proof while `soak run` writes it — every window's verdict as it
//! closes (re-scored from the files on disk with the run's own gate), the verdict of the windows
//! so far, progress with an ETA and the fault holding right now — with the same display as
//! `soak run` (a bar on a terminal, plain lines otherwise). Ends when the proof is sealed, with
//! the run's exit code: 0 GO, 1 NO-GO, 2 UNKNOWN, 130 interrupted. Nothing is parsed back
//! from Markdown; the proof is read through the same bounded reader as `soak score`.

use std::path::PathBuf;
use std::time::Duration;

use clap::Args;
use soak_gates::Outcome;
use soak_proofs::RunStatus as ProofStatus;
use soak_scenarios::faults::journal::JournalEntry;

use crate::exit::{CliError, CliResult, Exit};
use crate::runner::event::{RunEvent, RunStatus, now_ms};
use crate::runner::reporter::{Progress, Reporter};
use crate::runner::signals::Signals;

/// Arguments of `soak watch`.
#[derive(Debug, Args)]
#[command(after_help = "\
Examples:
  soak run --proof-dir proofs/nightly &   soak watch proofs/nightly
  soak watch proofs/<run-id> --poll 5s")]
pub struct WatchArgs {
    /// Proof directory being written by `soak run` (or already sealed).
    #[arg(value_name = "DIR")]
    pub proof_dir: PathBuf,
    /// How often to look at the proof.
    #[arg(long, default_value = "1s", value_parser = crate::cmd::run::parse_duration, value_name = "DURATION")]
    pub poll: Duration,
    /// Give up when the proof directory has not appeared within this long.
    #[arg(long, default_value = "60s", value_parser = crate::cmd::run::parse_duration, value_name = "DURATION")]
    pub wait: Duration,
}

/// What was shown so far.
struct Shown {
    started: bool,
    journal_shown: Vec<bool>,
    windows: usize,
    /// Verdict of the non-warm-up windows shown; GO until one says otherwise.
    so_far: Outcome,
}

impl Default for Shown {
    fn default() -> Self {
        Shown {
            started: false,
            journal_shown: Vec::new(),
            windows: 0,
            so_far: Outcome::Go,
        }
    }
}

fn config_u64(config: &serde_json::Value, key: &str) -> u64 {
    config
        .get(key)
        .and_then(serde_json::Value::as_u64)
        .unwrap_or(0)
}

/// Runs `soak watch`.
pub async fn execute(args: WatchArgs) -> CliResult {
    if args.poll < Duration::from_millis(100) {
        return Err(CliError::usage("--poll must be at least 100ms"));
    }
    let mut signals = Signals::install()
        .map_err(|err| CliError::unavailable(format!("cannot install signal handlers: {err}")))?;
    let mut progress = Progress::new();
    let mut shown = Shown::default();
    let waited_since = std::time::Instant::now();
    loop {
        let run_file = args.proof_dir.join(soak_proofs::format::RUN);
        if !run_file.exists() {
            if waited_since.elapsed() >= args.wait {
                return Err(CliError::usage(format!(
                    "{} holds no proof (no {}) after {}",
                    args.proof_dir.display(),
                    soak_proofs::format::RUN,
                    humantime::format_duration(args.wait)
                )));
            }
        } else {
            let proof = soak_proofs::read(&args.proof_dir)
                .map_err(|err| CliError::usage(format!("{err}: {}", err.kind)))?;
            if let Some(exit) = show(&proof, &mut shown, &mut progress)? {
                return Ok(exit);
            }
        }
        tokio::select! {
            () = tokio::time::sleep(args.poll) => {}
            signal = signals.recv() => {
                progress.line(&format!("{signal}: stopped watching (the run goes on)"));
                return Ok(Exit::Interrupted);
            }
        }
    }
}

/// Emits what is new in `proof` since `shown`; `Some(exit)` once the proof is sealed.
fn show(
    proof: &soak_proofs::Proof,
    shown: &mut Shown,
    progress: &mut Progress,
) -> Result<Option<Exit>, CliError> {
    let report = |progress: &mut Progress, event: &RunEvent| {
        let _ = progress.report(event);
    };
    let config = &proof.meta.config;
    // run.json is written before the fleet is up; the header waits for the nodes (or the end).
    if !shown.started && (!proof.meta.nodes.is_empty() || proof.is_complete()) {
        shown.started = true;
        report(
            progress,
            &RunEvent::RunStarted {
                run_id: proof.meta.run_id.clone(),
                nodes: proof.meta.nodes.clone(),
                windows: u32::try_from(config_u64(config, "windows")).unwrap_or(0),
                warmup_windows: u32::try_from(config_u64(config, "warmup_windows")).unwrap_or(0),
                interval_ms: config_u64(config, "interval_ms"),
                sample_interval_ms: proof.meta.sample_interval_ms,
                proof_dir: proof.dir.display().to_string(),
                at_ms: proof.meta.started_at_ms,
            },
        );
    }
    if !shown.started {
        return Ok(None);
    }
    // Fault steps, in journal order; each is shown before the close of its window.
    let journal = soak_proofs::faults::FaultJournal::read(&proof.dir)
        .map_err(|err| CliError::usage(format!("{err}: {}", err.kind)))?;
    let entries: Vec<JournalEntry> = journal
        .steps
        .iter()
        .filter_map(|step| {
            serde_json::to_value(step)
                .ok()
                .and_then(|v| serde_json::from_value(v).ok())
        })
        .collect();
    // Steps are journaled in order, but every `planned` step comes first: show each step when
    // its window is reached, the ones of the window in progress as they come.
    let faults_upto = |progress: &mut Progress, shown: &mut Shown, window: Option<u32>| {
        shown.journal_shown.resize(entries.len(), false);
        for (entry, done) in entries.iter().zip(shown.journal_shown.iter_mut()) {
            if *done || window.is_some_and(|w| entry.window > w) {
                continue;
            }
            report(
                progress,
                &RunEvent::Fault {
                    entry: entry.clone(),
                },
            );
            *done = true;
        }
    };
    // Windows closed since the last look, judged from disk with the run's own gate.
    if proof.observations.windows.len() > shown.windows {
        let profile = crate::cmd::score::stored_gate(proof)?;
        let verdict = soak_gates::evaluate(&proof.observations, &profile);
        let adaptive = profile.adaptive.as_ref().map(|a| a.id.clone());
        for (record, window) in proof
            .observations
            .windows
            .iter()
            .zip(&verdict.windows)
            .skip(shown.windows)
        {
            faults_upto(progress, shown, Some(record.index));
            let brief = crate::runner::brief_of(
                &window.bars,
                adaptive.as_deref(),
                record.warmup,
                &mut shown.so_far,
            );
            report(
                progress,
                &RunEvent::WindowEnded {
                    record: record.clone(),
                    verdict: Some(brief),
                },
            );
        }
        shown.windows = proof.observations.windows.len();
    }
    // Steps of the window in progress.
    faults_upto(progress, shown, None);
    // Sealed: the stored verdict is the run's.
    if proof.is_complete()
        && let Some(verdict) = &proof.verdict
    {
        let status = match proof.status() {
            ProofStatus::Interrupted => RunStatus::Interrupted,
            ProofStatus::Failed => RunStatus::Failed,
            _ => RunStatus::Completed,
        };
        report(
            progress,
            &RunEvent::RunFinished {
                status,
                verdict: verdict.verdict.as_str().to_owned(),
                at_ms: now_ms(),
                judged: None,
            },
        );
        progress.line(&format!(
            "verdict: {} (run {}, gate {}); proof: {}",
            verdict.verdict,
            status.as_str(),
            verdict.gate,
            proof.dir.display()
        ));
        return Ok(Some(match (status, verdict.verdict) {
            (RunStatus::Interrupted, _) => Exit::Interrupted,
            (_, Outcome::Go) if status == RunStatus::Completed => Exit::Go,
            (_, Outcome::NoGo) => Exit::NoGo,
            _ => Exit::Unknown,
        }));
    }
    Ok(None)
}
