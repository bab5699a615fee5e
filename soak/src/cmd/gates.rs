//! `soak gates list|show`: the built-in gate profiles, printed as the TOML they are written in
//! — a starting point for `--gate-file` (the printed text loads back unchanged).

use clap::{Args, Subcommand};
use soak_gates::Profile;

use crate::exit::{CliError, CliResult, Exit};
use crate::output::{out, outln};

/// Arguments of `soak gates`.
#[derive(Debug, Args)]
#[command(after_help = "\
Examples:
  soak gates list
  soak gates show limited-production > my-gate.toml   # edit, then: soak run --gate-file my-gate.toml")]
pub struct GatesArgs {
    #[command(subcommand)]
    command: GatesCommand,
}

#[derive(Debug, Subcommand)]
enum GatesCommand {
    /// List the built-in gate profiles with one line on each.
    List,
    /// Print a built-in gate profile as TOML (save it, edit it, pass it with --gate-file).
    #[command(
        after_help = "Example:\n  soak gates show broad-launch > my-gate.toml\n  \
                            soak run --gate-file my-gate.toml"
    )]
    Show {
        /// Built-in profile name (see `soak gates list`).
        #[arg(value_name = "NAME")]
        name: String,
    },
}

/// Runs `soak gates`.
pub async fn execute(args: GatesArgs) -> CliResult {
    match args.command {
        GatesCommand::List => {
            outln!("{}", render_list()?);
            Ok(Exit::Go)
        }
        GatesCommand::Show { name } => {
            let profile = Profile::builtin(&name)
                .map_err(|err| CliError::usage(format!("{err}: {}", err.kind)))?;
            out!("{}", profile.source());
            Ok(Exit::Go)
        }
    }
}

fn render_list() -> Result<String, CliError> {
    let mut lines = Vec::new();
    for name in Profile::builtin_names() {
        let profile = Profile::builtin(name)
            .map_err(|err| CliError::unavailable(format!("{err}: {}", err.kind)))?;
        lines.push(format!("{name:<20} {}", profile.description));
    }
    lines.push(String::new());
    lines.push(
        "`soak gates show NAME` prints one as TOML, a starting point for --gate-file.".into(),
    );
    Ok(lines.join("\n"))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn list_names_every_builtin() {
        insta::assert_snapshot!(render_list().expect("builtins load"));
    }
}
