//! How the watcher is started so that it outlives the SSH session that armed it.
//!
//! - **systemd-run** where systemd is PID 1 and we are root: a transient system service
//!   (`soak-guard-TOKEN.service`). logind's `KillUserProcesses=yes` kills everything in a login
//!   session's cgroup, `setsid` or not; a system unit is outside the session.
//! - **setsid** otherwise: a new session (no controlling terminal, no SIGHUP when sshd closes the
//!   session), stdio closed so the SSH channel can close.
//! - **process group** when even `setsid` is missing: `setpgid` only (weaker; reported as such).
//!
//! The choice ([`choose`]) and the command line ([`argv`]) are pure and unit-tested; `arm` runs
//! the result.

use std::path::Path;

use serde::{Deserialize, Serialize};

/// How the watcher is detached.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum Launcher {
    /// `systemd-run --unit soak-guard-TOKEN …` (a transient system service).
    SystemdRun,
    /// `setsid EXE guard watch …`, stdio closed.
    Setsid,
    /// A plain child in its own process group, stdio closed.
    ProcessGroup,
}

/// What [`choose`] looks at on the host.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct HostFacts {
    /// `/proc/1/comm` is `systemd`.
    pub systemd_pid1: bool,
    /// `systemd-run` is on the PATH.
    pub has_systemd_run: bool,
    /// Effective uid 0 (a system unit needs it).
    pub root: bool,
    /// `setsid` is on the PATH.
    pub has_setsid: bool,
}

/// The launcher for a host with `facts`.
pub fn choose(facts: HostFacts) -> Launcher {
    if facts.systemd_pid1 && facts.has_systemd_run && facts.root {
        Launcher::SystemdRun
    } else if facts.has_setsid {
        Launcher::Setsid
    } else {
        Launcher::ProcessGroup
    }
}

/// The transient unit's name for `token`.
pub fn unit_name(token: &str) -> String {
    format!("soak-guard-{token}.service")
}

/// The command line that starts the watcher of `token` in `dir` with the binary `exe`.
pub fn argv(launcher: Launcher, exe: &Path, dir: &Path, token: &str) -> Vec<String> {
    let watch = [
        exe.to_string_lossy().into_owned(),
        "guard".into(),
        "watch".into(),
        "--dir".into(),
        dir.to_string_lossy().into_owned(),
        "--token".into(),
        token.into(),
    ];
    let mut out: Vec<String> = match launcher {
        Launcher::SystemdRun => vec![
            "systemd-run".into(),
            "--unit".into(),
            unit_name(token),
            "--description".into(),
            format!("soak dead-man guard {token}"),
            "--collect".into(),
            "--quiet".into(),
            // The watcher reverts faults: let it finish its steps when the unit is stopped.
            "--property".into(),
            "TimeoutStopSec=60".into(),
            "--".into(),
        ],
        Launcher::Setsid => vec!["setsid".into()],
        Launcher::ProcessGroup => Vec::new(),
    };
    out.extend(watch);
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    const ALL: HostFacts = HostFacts {
        systemd_pid1: true,
        has_systemd_run: true,
        root: true,
        has_setsid: true,
    };

    #[test]
    fn systemd_run_only_where_systemd_is_pid1_and_we_are_root() {
        assert_eq!(choose(ALL), Launcher::SystemdRun);
        for facts in [
            HostFacts {
                systemd_pid1: false,
                ..ALL
            },
            HostFacts {
                has_systemd_run: false,
                ..ALL
            },
            HostFacts { root: false, ..ALL },
        ] {
            assert_eq!(choose(facts), Launcher::Setsid, "{facts:?}");
        }
        let bare = HostFacts {
            systemd_pid1: false,
            has_systemd_run: false,
            root: true,
            has_setsid: false,
        };
        assert_eq!(choose(bare), Launcher::ProcessGroup);
    }

    #[test]
    fn systemd_run_command_text() {
        let argv = argv(
            Launcher::SystemdRun,
            Path::new("/opt/soak-node/bin/soak-node"),
            Path::new("/opt/soak-node/guard"),
            "f1-partition",
        );
        assert_eq!(
            argv.join(" "),
            "systemd-run --unit soak-guard-f1-partition.service --description soak dead-man guard f1-partition \
             --collect --quiet --property TimeoutStopSec=60 -- /opt/soak-node/bin/soak-node guard watch \
             --dir /opt/soak-node/guard --token f1-partition"
        );
    }

    #[test]
    fn setsid_command_text() {
        let argv = argv(
            Launcher::Setsid,
            Path::new("/x/soak-node"),
            Path::new("/x/g"),
            "t",
        );
        assert_eq!(
            argv,
            [
                "setsid",
                "/x/soak-node",
                "guard",
                "watch",
                "--dir",
                "/x/g",
                "--token",
                "t"
            ]
        );
    }
}
