//! Typed errors of the fleet layer (connecting to hosts, deploying, reading node state).
//!
//! Every [`HostError`] names its host. What a failure means for the run is decided here once,
//! not by matching message text:
//!
//! | failure | where | meaning |
//! |---|---|---|
//! | [`HostErrorKind::Remote`] (connect, auth, host key, timeout, sudo, a failed command) | deploy, connect | exit 69 (infrastructure), under the partial-fleet policy |
//! | [`HostErrorKind::NotDeployed`] | connect | exit 69: run `soak deploy` first |
//! | [`HostErrorKind::Node`] (not ready, another process on the port, API error) | deploy, connect | exit 69 |
//!
//! Host *fault* failures during a run are `soak_scenarios::faults::host::HostFaultError`s,
//! classified by `ErrorClass`: not effective → UNKNOWN, revert failed → NO-GO (fault residue),
//! unreachable mid-fault → UNKNOWN while the guard reverts, a host that cannot be swept or
//! audited → unverified residue (UNKNOWN).

use soak_inventory::Host;
use soak_inventory::remote::RemoteError;

use crate::exit::{CliError, Exit};

/// A step on one host failed. Displays as `host `H`: KIND`.
#[derive(Debug, thiserror::Error)]
#[error("host `{host}`: {kind}")]
pub struct HostError {
    /// Host name.
    pub host: String,
    /// What went wrong.
    #[source]
    pub kind: HostErrorKind,
}

/// What went wrong on a host.
#[derive(Debug, thiserror::Error)]
pub enum HostErrorKind {
    /// The SSH layer: the host could not be reached or refused (connect, authentication, host
    /// key, timeout, `sudo`), or a remote command failed.
    #[error("{}", .0.kind)]
    Remote(#[source] RemoteError),
    /// soak-node is not deployed or not running there.
    #[error("{0}; run `soak deploy` first")]
    NotDeployed(String),
    /// The node answered, but not as it must (not ready, another process owns the port, a
    /// mismatched pid, an admin API error, an invalid file).
    #[error("{0}")]
    Node(String),
}

impl HostError {
    /// A node-state failure on `host`.
    pub fn node(host: &Host, message: impl std::fmt::Display) -> Self {
        HostError {
            host: host.name.clone(),
            kind: HostErrorKind::Node(message.to_string()),
        }
    }

    /// soak-node missing on `host` (`what` says what is missing).
    pub fn not_deployed(host: &Host, what: &str) -> Self {
        HostError {
            host: host.name.clone(),
            kind: HostErrorKind::NotDeployed(what.to_string()),
        }
    }

    /// The exit code this failure ends a command with when the partial-fleet policy does not
    /// absorb it: every host failure is infrastructure (69).
    pub fn exit(&self) -> Exit {
        Exit::Unavailable
    }
}

impl From<RemoteError> for HostError {
    fn from(e: RemoteError) -> Self {
        HostError {
            host: e.host.clone(),
            kind: HostErrorKind::Remote(e),
        }
    }
}

impl From<HostError> for CliError {
    fn from(e: HostError) -> Self {
        CliError {
            exit: e.exit(),
            message: e.to_string(),
        }
    }
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use soak_inventory::remote::RemoteErrorKind;

    use super::*;

    #[test]
    fn host_errors_name_the_host_once_and_map_to_69() {
        let remote = RemoteError::new(
            "h1",
            RemoteErrorKind::Timeout {
                what: "ssh connection to root@192.0.2.1:22".into(),
                after: Duration::from_secs(10),
            },
        );
        let e = HostError::from(remote);
        assert_eq!(
            e.to_string(),
            "host `h1`: ssh connection to root@192.0.2.1:22 timed out after 10s"
        );
        let cli = CliError::from(e);
        assert_eq!(cli.exit, Exit::Unavailable);
        let host = Host::with_defaults("h2", "192.0.2.2");
        let e = HostError::not_deployed(&host, "soak-node is not running");
        assert_eq!(
            e.to_string(),
            "host `h2`: soak-node is not running; run `soak deploy` first"
        );
        assert_eq!(
            HostError::node(&host, "node not ready: x").to_string(),
            "host `h2`: node not ready: x"
        );
    }
}
