//! `soak scenarios list` and `soak scenarios show NAME`: the built-in scenarios — the
//! workloads every window runs and the named faults — with the exact TOML a fault runs, as a
//! starting point for `--scenario-file`.

use std::io::Write;

use clap::{Args, Subcommand};
use soak_scenarios::faults::catalog;

use crate::exit::{CliError, CliResult, Exit};

/// Arguments of `soak scenarios`.
#[derive(Debug, Args)]
#[command(after_help = "\
Examples:
  soak scenarios list
  soak scenarios show partition_halves > my-faults.toml   # edit, then: soak run --scenario-file my-faults.toml")]
pub struct ScenariosArgs {
    #[command(subcommand)]
    command: ScenariosCommand,
}

#[derive(Debug, Subcommand)]
enum ScenariosCommand {
    /// List the built-in workloads and faults, one line each.
    List,
    /// Print a built-in fault as a ready scenario file (TOML, `[[fault]]`).
    #[command(
        after_help = "Example:\n  soak scenarios show high_rtt_peer > slow.toml\n  \
                            soak run --scenario-file slow.toml"
    )]
    Show {
        /// Scenario name, e.g. `high_rtt_peer`.
        #[arg(value_name = "NAME")]
        name: String,
    },
}

/// The `soak scenarios list` text.
pub fn list_text() -> String {
    let mut out = String::from("workloads (every window):\n");
    for (name, what) in catalog::WORKLOADS {
        out.push_str(&format!("  {name:<18} {what}\n"));
    }
    out.push_str("faults (each in its own window, then a heal window):\n");
    for name in catalog::names() {
        let line = match catalog::builtin(name) {
            Ok(spec) => {
                let flag = faults_flag(&spec);
                format!("{} [{}{flag}]", spec.description, spec.kind.as_str())
            }
            Err(err) => format!("(broken built-in: {err})"),
        };
        out.push_str(&format!("  {name:<18} {line}\n"));
    }
    out.push_str("\nshow one as TOML: soak scenarios show NAME\n");
    out
}

fn faults_flag(spec: &soak_scenarios::faults::spec::FaultSpec) -> String {
    let caps = soak_scenarios::faults::Capabilities::default();
    match soak_scenarios::faults::choose_backend(spec, &caps) {
        Ok(_) => String::new(),
        Err(reason) => match reason.split_whitespace().find(|w| w.starts_with("--allow")) {
            Some(flag) => format!(", needs {flag}"),
            None => String::new(),
        },
    }
}

/// Runs `soak scenarios`.
pub async fn execute(args: ScenariosArgs) -> CliResult {
    let text = match args.command {
        ScenariosCommand::List => list_text(),
        ScenariosCommand::Show { name } => match catalog::text(&name) {
            Some(_) => catalog::show(&name).map_err(CliError::usage)?,
            None if catalog::WORKLOADS.iter().any(|(w, _)| *w == name) => {
                return Err(CliError::usage(format!(
                    "`{name}` is a workload (it runs in every window); only faults have TOML"
                )));
            }
            None => {
                return Err(CliError::usage(format!(
                    "unknown scenario `{name}` (see `soak scenarios list`)"
                )));
            }
        },
    };
    // A closed stdout (`| head`) ends the listing quietly.
    let _ = std::io::stdout().write_all(text.as_bytes());
    Ok(Exit::Go)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_list_names_every_builtin_and_its_opt_in() {
        let text = list_text();
        for name in catalog::names() {
            assert!(text.contains(name), "{name} missing:\n{text}");
        }
        assert!(text.contains("baseline") && text.contains("fanout_burst"));
        let restart = text.lines().find(|l| l.contains("restart_storm")).unwrap();
        assert!(restart.contains("--allow-restart"), "{restart}");
        let delay = text.lines().find(|l| l.contains("high_rtt_peer")).unwrap();
        assert!(!delay.contains("--allow"), "{delay}");
    }
}
