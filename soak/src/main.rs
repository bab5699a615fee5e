//! `soak`: tells a team whether their peer-to-peer overlay is ready for a broad launch.
//!
//! Subcommands live one per module under `cmd/`; each parses its own arguments (step one:
//! validate what the user typed, touching nothing) and then resolves and runs (step two).
//! Every command ends in an [`exit::Exit`] from the documented exit-code table.

mod cmd;
mod exit;
mod fleet;
mod output;
mod runner;

use std::process::ExitCode;

use clap::{Parser, Subcommand};

use crate::exit::Exit;
use crate::output::errln;

#[derive(Debug, Parser)]
#[command(
    name = "soak",
    version,
    about = "Soak-test a peer-to-peer overlay and judge it against launch gates",
    after_help = "\
Placeholders: <PATH> a file, <DIR> a directory, <DURATION> like 90s, 2m or 1h30m, <N> a
whole number, <PATTERN> an Ansible host pattern. Exit codes: docs/operations.md.

Examples:
  soak run                                   # a 6-node local mesh for 2 minutes
  soak deploy -i fleet.toml && soak run -i fleet.toml --duration 4h --interval 5m
  soak score proofs/<run-id>                 # re-judge a stored proof
  soak compare proofs/<base> proofs/<candidate>"
)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Debug, Subcommand)]
enum Command {
    /// Run a soak: spawn or reach the fleet, drive windows, judge, write a proof directory.
    Run(Box<cmd::run::RunArgs>),
    /// Re-score a stored proof directory with a gate profile.
    Score(cmd::score::ScoreArgs),
    /// Regression check: compare a candidate proof against a base proof, metric by metric.
    Compare(cmd::compare::CompareArgs),
    /// Check a proof directory's manifest hashes and format version.
    Verify(cmd::verify::VerifyArgs),
    /// Print a proof's stored samples as JSON lines.
    Samples(cmd::samples::SamplesArgs),
    /// Re-render a proof's report.html from its stored evidence.
    Report(cmd::report::ReportArgs),
    /// Export a proof's samples as OpenMetrics text or long CSV.
    Export(cmd::export::ExportArgs),
    /// List the built-in scenarios, or print a built-in fault as TOML.
    Scenarios(cmd::scenarios::ScenariosArgs),
    /// Follow a proof while `soak run` writes it: window verdicts as they close, progress, ETA.
    Watch(cmd::watch::WatchArgs),
    /// Deploy the bundled node to the hosts of an inventory (all, or those --limit selects).
    Deploy(cmd::deploy::DeployArgs),
    /// Show the node status of the hosts of an inventory (exit 0 when ready).
    Status(cmd::deploy::StatusArgs),
    /// Stop the node on the hosts of an inventory.
    Stop(cmd::deploy::StopArgs),
    /// Print the node log of a host (or of each host --limit selects).
    Logs(cmd::deploy::LogsArgs),
    /// Show what an inventory resolves to (hosts, groups, settings) without connecting.
    Inventory(cmd::inventory::InventoryArgs),
    /// List the built-in gate profiles or print one as TOML.
    Gates(cmd::gates::GatesArgs),
    /// Build, inspect, use and remove the network-namespace lab.
    Lab(cmd::lab::LabArgs),
}

fn main() -> ExitCode {
    // rustls needs a process-wide crypto provider before any TLS (reqwest, quinn) is used.
    let _ = rustls::crypto::ring::default_provider().install_default();
    // clap's own exit code for bad arguments is 2, which the table reserves for UNKNOWN:
    // map its errors to 64 (usage); `--help` / `--version` still exit 0.
    let cli = match Cli::try_parse() {
        Ok(cli) => cli,
        Err(err) => {
            let _ = err.print();
            return if err.use_stderr() {
                Exit::Usage.into()
            } else {
                Exit::Go.into()
            };
        }
    };
    let runtime = match tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
    {
        Ok(runtime) => runtime,
        Err(err) => {
            errln!("soak: failed to start the async runtime: {err}");
            return Exit::Unavailable.into();
        }
    };
    let result = runtime.block_on(async move {
        match cli.command {
            Command::Run(args) => cmd::run::execute(*args).await,
            Command::Score(args) => cmd::score::execute(args).await,
            Command::Compare(args) => cmd::compare::execute(args).await,
            Command::Inventory(args) => cmd::inventory::execute(args).await,
            Command::Gates(args) => cmd::gates::execute(args).await,
            Command::Verify(args) => cmd::verify::execute(args).await,
            Command::Samples(args) => cmd::samples::execute(args).await,
            Command::Report(args) => cmd::report::execute(args).await,
            Command::Export(args) => cmd::export::execute(args).await,
            Command::Scenarios(args) => cmd::scenarios::execute(args).await,
            Command::Watch(args) => cmd::watch::execute(args).await,
            Command::Deploy(args) => cmd::deploy::deploy(args).await,
            Command::Status(args) => cmd::deploy::status(args).await,
            Command::Stop(args) => cmd::deploy::stop(args).await,
            Command::Logs(args) => cmd::deploy::logs(args).await,
            Command::Lab(args) => cmd::lab::execute(args).await,
        }
    });
    match result {
        Ok(exit) => exit.into(),
        Err(err) => {
            errln!("soak: {err}");
            err.exit.into()
        }
    }
}
