//! `soak export`: a proof's samples for other tools — OpenMetrics text (for
//! `promtool tsdb create-blocks-from openmetrics`, i.e. Prometheus backfill) or the long CSV
//! (`ts_ms,node,metric,value`, the format of `timeline.csv`; handy for proofs older than 1.2).
//! Writes to stdout or `--out FILE`; a closed stdout (`| head`) ends the export quietly. Exit 0;
//! 64 when DIR is not a proof; 69 when the output cannot be written.

use std::io::{self, BufWriter, Write};
use std::path::PathBuf;

use clap::{Args, ValueEnum};
use soak_proofs::export;

use crate::exit::{CliError, CliResult, Exit};
use crate::output::errln;

/// Export formats.
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum ExportFormat {
    /// OpenMetrics text with timestamps, ending in `# EOF`.
    Openmetrics,
    /// Long CSV: `ts_ms,node,metric,value`, rates beside counters.
    Csv,
}

/// Arguments of `soak export`.
#[derive(Debug, Args)]
#[command(after_help = "\
Examples:
  soak export proofs/<run-id> --format openmetrics --out run.om   # then: promtool tsdb create-blocks-from openmetrics run.om
  soak export proofs/<run-id> --format csv | duckdb -c \"select * from read_csv('/dev/stdin') limit 5\"")]
pub struct ExportArgs {
    /// Proof directory whose samples to export.
    #[arg(value_name = "DIR")]
    pub proof_dir: PathBuf,
    /// Output format.
    #[arg(long, value_enum)]
    pub format: ExportFormat,
    /// Write here instead of stdout.
    #[arg(long, value_name = "PATH")]
    pub out: Option<PathBuf>,
}

/// Runs `soak export`.
pub async fn execute(args: ExportArgs) -> CliResult {
    let proof = soak_proofs::read(&args.proof_dir)
        .map_err(|err| CliError::usage(format!("{err}: {}", err.kind)))?;
    for warning in &proof.warnings {
        errln!("soak: note: {warning}");
    }
    let samples = &proof.observations.samples;
    let interval = proof.meta.sample_interval_ms;
    let write = |out: &mut dyn Write| -> io::Result<Vec<String>> {
        match args.format {
            ExportFormat::Openmetrics => export::write_openmetrics(out, samples),
            ExportFormat::Csv => {
                out.write_all(export::TIMELINE_HEADER.as_bytes())?;
                for (node, series) in samples {
                    export::write_timeline_rows(out, node, series, interval)?;
                }
                Ok(Vec::new())
            }
        }
    };
    let result = match &args.out {
        Some(path) => {
            let file = std::fs::File::create(path).map_err(|err| {
                CliError::unavailable(format!("failed to create {}: {err}", path.display()))
            })?;
            let mut out = BufWriter::new(file);
            write(&mut out).and_then(|notes| out.flush().map(|()| notes))
        }
        None => {
            let mut out = BufWriter::new(io::stdout().lock());
            write(&mut out).and_then(|notes| out.flush().map(|()| notes))
        }
    };
    match result {
        Ok(notes) => {
            for note in notes {
                errln!("soak: note: {note}");
            }
            Ok(Exit::Go)
        }
        // The reader went away (`soak export … | head`): not an error.
        Err(err) if err.kind() == io::ErrorKind::BrokenPipe && args.out.is_none() => Ok(Exit::Go),
        Err(err) => Err(CliError::unavailable(format!(
            "failed to write the export: {err}"
        ))),
    }
}
