//! `soak lab up|down|status|exec`: the network-namespace lab (docs/lab.md).
//!
//! Argument parsing validates names and paths without touching the system; the work itself
//! (namespaces, sshd, files) lives in [`soak_inventory::lab`] and runs on a blocking thread.

use std::ffi::OsString;
use std::os::unix::process::CommandExt;
use std::path::{Path, PathBuf};

use clap::{Args, Subcommand};
use comfy_table::{Table, presets::UTF8_FULL_CONDENSED};
use soak_inventory::lab::{self, LabError, LabLayout, LabState, LabStatus, Need};

use crate::exit::{CliError, CliResult, Exit};
use crate::output::{errln, out, outln};

/// Arguments of `soak lab`.
#[derive(Debug, Args)]
#[command(after_help = "\
Examples:
  soak lab up --hosts 4                      # as root
  soak lab status                            # reads only: no root needed
  soak lab exec -- soak deploy -i /tmp/soak-lab/inventory.toml
  soak lab down")]
pub struct LabArgs {
    #[command(subcommand)]
    command: LabCommand,
}

#[derive(Debug, Subcommand)]
enum LabCommand {
    /// Build the lab (idempotent): namespaces, bridge, one sshd per host, keys, inventory.
    Up(UpArgs),
    /// Remove everything the lab made (idempotent; works on partial labs and lost state).
    Down(WhereArgs),
    /// Show the lab (reads only: no root needed): namespaces, addresses, sshd pids, inventory
    /// path; "no lab" when there is none. Exits 69 unless fully up.
    Status(StatusArgs),
    /// Run a command in the controller namespace (stdio inherited, exit code passed through).
    Exec(ExecArgs),
}

/// Which lab.
#[derive(Debug, Args)]
struct WhereArgs {
    /// Lab directory (keys, configs, inventory, state, install dirs). Keep it short.
    #[arg(long, env = "SOAK_LAB_DIR", default_value = lab::DEFAULT_DIR, value_name = "DIR")]
    dir: PathBuf,
    /// Lab name: prefix of every namespace (`NAME-ctl`, `NAME-br`, `NAME-h1`…). Defaults to the
    /// name recorded in the lab directory, else `soaklab`.
    #[arg(long, env = "SOAK_LAB_NAME", value_name = "NAME")]
    name: Option<String>,
}

#[derive(Debug, Args)]
struct UpArgs {
    /// Number of hosts, 1–200.
    #[arg(long, default_value_t = 3, value_name = "N")]
    hosts: usize,
    /// Hosts (e.g. `h2`) whose SSH user is the lab's non-root user with passwordless sudo
    /// (`become = true` in the inventory). Creates that user on this machine; `down` removes it.
    #[arg(long = "sudo-host", value_name = "HOST", value_delimiter = ',')]
    sudo_hosts: Vec<String>,
    /// Hosts (e.g. `h3`) reachable only through a bastion namespace (`proxy_jump` in the
    /// inventory): the controller has no route to them.
    #[arg(long = "behind-bastion", value_name = "HOST", value_delimiter = ',')]
    bastion_hosts: Vec<String>,
    #[command(flatten)]
    place: WhereArgs,
    /// Print the lab state as JSON instead of a summary.
    #[arg(long)]
    json: bool,
}

#[derive(Debug, Args)]
struct StatusArgs {
    #[command(flatten)]
    place: WhereArgs,
    /// Print JSON (includes `inventory`, the inventory file's path).
    #[arg(long)]
    json: bool,
}

#[derive(Debug, Args)]
struct ExecArgs {
    #[command(flatten)]
    place: WhereArgs,
    /// The command and its arguments (after `--`).
    #[arg(required = true, trailing_var_arg = true, allow_hyphen_values = true)]
    command: Vec<OsString>,
}

/// Runs `soak lab`.
pub async fn execute(args: LabArgs) -> CliResult {
    tokio::task::spawn_blocking(move || match args.command {
        LabCommand::Up(args) => up(args),
        LabCommand::Down(args) => down(args),
        LabCommand::Status(args) => status(args),
        LabCommand::Exec(args) => exec(args),
    })
    .await
    .map_err(|err| CliError::unavailable(format!("lab task failed: {err}")))?
}

fn cli_error(err: LabError) -> CliError {
    if err.is_usage() {
        CliError::usage(err.to_string())
    } else {
        CliError::unavailable(err.to_string())
    }
}

fn up(args: UpArgs) -> CliResult {
    let name = lab::resolve_name(&args.place.dir, args.place.name.as_deref()).map_err(cli_error)?;
    let layout = LabLayout::new(args.place.dir, name, args.hosts)
        .and_then(|l| l.with_sudo_hosts(&args.sudo_hosts))
        .and_then(|l| l.with_bastion_hosts(&args.bastion_hosts))
        .map_err(cli_error)?;
    let tools = lab::preflight(Need::Up).map_err(cli_error)?;
    let state = lab::up(&layout, &tools).map_err(|err| {
        let mut err = cli_error(err);
        err.message.push_str(&format!(
            "\n(the lab may be partly built: `soak lab down --dir {}` removes it)",
            layout.dir().display()
        ));
        err
    })?;
    if args.json {
        print_json(&state)?;
        return Ok(Exit::Go);
    }
    out!("{}", render_up(&state));
    Ok(Exit::Go)
}

/// The human `up` summary.
fn render_up(state: &LabState) -> String {
    let mut table = Table::new();
    table.load_preset(UTF8_FULL_CONDENSED);
    table.set_header(["host", "namespace", "address", "sshd pid", "install dir"]);
    for host in &state.hosts {
        table.add_row([
            host.name.clone(),
            host.namespace.clone(),
            host.address.to_string(),
            host.sshd_pid.to_string(),
            host.install_dir.display().to_string(),
        ]);
    }
    format!(
        "lab {name} up: {count} hosts on {subnet} (controller {address} in {ctl})\n\
         {table}\n\
         inventory:   {inventory}\n\
         ssh key:     {key}\n\
         known_hosts: {known_hosts}\n\
         try:         soak lab exec --dir {dir} -- ssh -F {ssh_config} h1 ip netns identify\n",
        name = state.name,
        count = state.hosts.len(),
        subnet = state.subnet,
        address = state.controller.address,
        ctl = state.controller.namespace,
        inventory = state.inventory.display(),
        key = state.ssh_key.display(),
        known_hosts = state.known_hosts.display(),
        dir = state.dir.display(),
        ssh_config = state.ssh_config.display(),
    )
}

fn down(args: WhereArgs) -> CliResult {
    let name = lab::resolve_name(&args.dir, args.name.as_deref()).map_err(cli_error)?;
    // Outside the default directory, removing namespaces by the *default* prefix could hit
    // another lab: without a recorded or explicit name there is nothing to go on.
    if args.name.is_none()
        && lab::recorded_name(&args.dir).is_none()
        && args.dir != Path::new(lab::DEFAULT_DIR)
    {
        outln!(
            "no lab recorded in {} (no state file or marker): nothing removed; pass --name NAME \
             to remove a lab's namespaces by their prefix",
            args.dir.display()
        );
        return Ok(Exit::Go);
    }
    let tools = lab::preflight(Need::Manage).map_err(cli_error)?;
    let report = lab::down(&args.dir, &name, &tools).map_err(cli_error)?;
    if report.namespaces.is_empty()
        && !report.removed_dir
        && report.killed == 0
        && !report.removed_sudo_user
    {
        outln!("lab {name}: nothing to remove");
    } else {
        outln!(
            "lab {name} down: killed {} processes, deleted {} namespaces{}{}",
            report.killed,
            report.namespaces.len(),
            if report.removed_dir {
                format!(", removed {}", args.dir.display())
            } else {
                String::new()
            },
            if report.removed_sudo_user {
                ", removed the lab's sudo user and its sudoers file"
            } else {
                ""
            }
        );
    }
    if let Some(dir) = report.kept_foreign_dir {
        errln!(
            "soak: left {} in place: it is not this lab's directory (no .soak-lab marker naming {name})",
            dir.display()
        );
    }
    Ok(Exit::Go)
}

fn status(args: StatusArgs) -> CliResult {
    let name = lab::resolve_name(&args.place.dir, args.place.name.as_deref()).map_err(cli_error)?;
    // Reading needs no root.
    let tools = lab::preflight(Need::Read).map_err(cli_error)?;
    let status = lab::status(&args.place.dir, &name, &tools).map_err(cli_error)?;
    if args.json {
        print_json(&status)?;
    } else {
        out!("{}", render_status(&status));
    }
    Ok(if status.up {
        Exit::Go
    } else {
        Exit::Unavailable
    })
}

/// Nothing of the lab exists: no state file, no namespace of its name.
fn is_absent(status: &LabStatus) -> bool {
    status.state_file.is_none()
        && !status.controller.present
        && !status.bridge.present
        && status.hosts.is_empty()
        && status.stray_namespaces.is_empty()
}

/// The human `status` report.
fn render_status(status: &LabStatus) -> String {
    use std::fmt::Write as _;
    let yes_no = |b: bool| if b { "yes" } else { "NO" };
    let mut out = String::new();
    if is_absent(status) {
        let _ = writeln!(
            out,
            "no lab — run `soak lab up` (looked for lab {} in {})",
            status.name,
            status.dir.display()
        );
        return out;
    }
    let condition = if status.up {
        "up"
    } else if status.state_file.is_none() {
        "not up (no state file)"
    } else {
        "DEGRADED"
    };
    let _ = writeln!(
        out,
        "lab {} in {}: {condition}",
        status.name,
        status.dir.display()
    );
    let _ = writeln!(
        out,
        "controller: {} ({}) present: {}",
        status.controller.namespace,
        lab::layout::CONTROLLER_ADDRESS,
        yes_no(status.controller.present)
    );
    let _ = writeln!(
        out,
        "bridge:     {} present: {}",
        status.bridge.namespace,
        yes_no(status.bridge.present)
    );
    if !status.hosts.is_empty() {
        let mut table = Table::new();
        table.load_preset(UTF8_FULL_CONDENSED);
        table.set_header(["host", "namespace", "address", "sshd pid", "alive"]);
        for host in &status.hosts {
            table.add_row([
                host.name.clone(),
                host.namespace.clone(),
                host.address.to_string(),
                host.sshd_pid.to_string(),
                yes_no(host.namespace_present && host.alive).to_owned(),
            ]);
        }
        let _ = writeln!(out, "{table}");
    }
    if let Some(inventory) = &status.inventory {
        let _ = writeln!(out, "inventory:  {}", inventory.display());
    }
    if !status.stray_namespaces.is_empty() {
        let _ = writeln!(
            out,
            "stray namespaces (not in the state file; `soak lab down` removes them): {}",
            status.stray_namespaces.join(", ")
        );
    }
    out
}

fn exec(args: ExecArgs) -> CliResult {
    let name = lab::resolve_name(&args.place.dir, args.place.name.as_deref()).map_err(cli_error)?;
    let tools = lab::preflight(Need::Manage).map_err(cli_error)?;
    let mut command =
        lab::exec_command(&args.place.dir, &name, &tools, &args.command).map_err(cli_error)?;
    // Replace this process: stdio, signals and the exit code are the command's own. `exec` only
    // returns on failure.
    let err = command.exec();
    Err(CliError::unavailable(format!(
        "cannot run `ip netns exec` for the lab controller: {err}"
    )))
}

fn print_json<T: serde::Serialize>(value: &T) -> Result<(), CliError> {
    let text = serde_json::to_string_pretty(value)
        .map_err(|err| CliError::unavailable(format!("cannot render JSON: {err}")))?;
    outln!("{text}");
    Ok(())
}

#[cfg(test)]
mod tests {
    use std::path::PathBuf;

    use soak_inventory::lab::{HostStatus, NamespaceStatus};

    use super::*;

    fn lab_state() -> LabState {
        let layout = LabLayout::new(PathBuf::from("/tmp/soak-lab"), "soaklab".into(), 2).unwrap();
        LabState::new(&layout, &[1001, 1002])
    }

    fn lab_status(up: bool) -> LabStatus {
        let state = lab_state();
        LabStatus {
            up,
            name: state.name.clone(),
            dir: state.dir.clone(),
            state_file: Some(state.dir.join("lab.json")),
            inventory: Some(state.inventory.clone()),
            ssh_key: Some(state.ssh_key.clone()),
            known_hosts: Some(state.known_hosts.clone()),
            ssh_config: Some(state.ssh_config.clone()),
            controller: NamespaceStatus {
                namespace: state.controller.namespace.clone(),
                address: Some(state.controller.address),
                present: true,
            },
            bridge: NamespaceStatus {
                namespace: state.bridge.namespace.clone(),
                address: None,
                present: true,
            },
            hosts: state
                .hosts
                .iter()
                .enumerate()
                .map(|(i, h)| HostStatus {
                    name: h.name.clone(),
                    namespace: h.namespace.clone(),
                    address: h.address,
                    install_dir: h.install_dir.clone(),
                    sshd_pid: h.sshd_pid,
                    namespace_present: true,
                    alive: up || i == 0,
                })
                .collect(),
            stray_namespaces: if up {
                vec![]
            } else {
                vec!["soaklab-h7".into()]
            },
        }
    }

    #[test]
    fn up_summary() {
        insta::assert_snapshot!(render_up(&lab_state()));
    }

    #[test]
    fn status_table_up() {
        insta::assert_snapshot!(render_status(&lab_status(true)));
    }

    #[test]
    fn status_table_degraded_names_the_dead_host_and_strays() {
        insta::assert_snapshot!(render_status(&lab_status(false)));
    }

    #[test]
    fn status_json_keys() {
        insta::assert_json_snapshot!(lab_status(true));
    }

    #[test]
    fn state_json_keys() {
        insta::assert_json_snapshot!(lab_state());
    }
}
