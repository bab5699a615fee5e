//! The writer side of the dead-man's switch: the command lines that arm, renew and disarm the
//! host's guard (`soak-node guard …` of the deployed binary) and the journal handed to it.
//! The journal's steps are the very scripts the orchestrator's own revert runs, so the guard
//! and the orchestrator undo a fault the same way.

use std::time::Duration;

use soak_guard::format::{FORMAT, GuardJournal, Step};
use soak_inventory::Host;
use soak_inventory::node::NodeLayout;
use soak_inventory::remote::sh_quote;

use super::residue::guard_dir;

/// A journal for one fault on `host`.
pub fn journal(
    host: &Host,
    run_id: &str,
    token: &str,
    fault: &str,
    steps: Vec<Step>,
    checks: Vec<Step>,
    now_unix_ms: u64,
) -> GuardJournal {
    GuardJournal {
        format: FORMAT,
        token: token.to_string(),
        run_id: run_id.to_string(),
        fault: fault.to_string(),
        host: host.name.clone(),
        created_unix_ms: now_unix_ms,
        steps,
        checks,
    }
}

fn guard_command(host: &Host, verb: &str, token: &str) -> String {
    format!(
        "{} guard {verb} --dir {} --token {}",
        sh_quote(&NodeLayout::new(host).binary()),
        sh_quote(&guard_dir(host)),
        sh_quote(token),
    )
}

fn millis(d: Duration) -> u128 {
    d.as_millis().max(1)
}

/// Arms the guard (the journal goes on stdin); prints the arm report.
pub fn arm_command(host: &Host, token: &str, lease: Duration) -> String {
    format!(
        "{} --lease {}ms",
        guard_command(host, "arm", token),
        millis(lease)
    )
}

/// Renews the lease; exit 3 when the guard is missing or fired.
pub fn renew_command(host: &Host, token: &str, lease: Duration) -> String {
    format!(
        "{} --lease {}ms",
        guard_command(host, "renew", token),
        millis(lease)
    )
}

/// Disarms after the orchestrator reverted; exit 3 (with the result) when the guard had fired.
pub fn disarm_command(host: &Host, token: &str) -> String {
    guard_command(host, "disarm", token)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn command_lines() {
        let mut host = Host::with_defaults("h1", "192.0.2.1");
        host.install_dir = "/opt/soak-node".into();
        assert_eq!(
            arm_command(&host, "f1", Duration::from_secs(30)),
            "'/opt/soak-node/bin/soak-node' guard arm --dir '/opt/soak-node/guard' --token 'f1' --lease 30000ms"
        );
        assert_eq!(
            renew_command(&host, "f1", Duration::from_millis(1500)),
            "'/opt/soak-node/bin/soak-node' guard renew --dir '/opt/soak-node/guard' --token 'f1' --lease 1500ms"
        );
        assert_eq!(
            disarm_command(&host, "f1"),
            "'/opt/soak-node/bin/soak-node' guard disarm --dir '/opt/soak-node/guard' --token 'f1'"
        );
    }
}
