//! Fleets: the set of running nodes a soak drives, however they were started.
//!
//! `local` spawns a mesh of `soak-node` processes on loopback; `remote` reaches nodes deployed
//! on inventory hosts through SSH local port-forwards. The runner only sees [`Fleet`].

pub mod control;
pub mod error;
pub mod local;
pub mod remote;

use serde::{Deserialize, Serialize};
use soak_scenarios::NodeEndpoint;

use crate::exit::CliError;

/// Which build runs on one host — recorded in the proof manifest.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct HostBuild {
    /// Node / host name.
    pub host: String,
    /// sha256 of the node binary, hex.
    pub binary_sha256: String,
    /// Node version (from `/v1/version`).
    pub version: String,
    /// Git revision (from `/v1/version`).
    pub git: String,
    /// Process start, unix milliseconds.
    pub started_at_ms: u64,
}

/// The running fleet a soak drives.
pub enum Fleet {
    /// Processes spawned on this machine.
    Local(local::LocalMesh),
    /// Nodes on inventory hosts, reached over SSH.
    Remote(remote::RemoteFleet),
}

impl Fleet {
    /// How to reach every node's admin API.
    pub fn endpoints(&self) -> Vec<NodeEndpoint> {
        match self {
            Fleet::Local(mesh) => mesh.endpoints(),
            Fleet::Remote(fleet) => fleet.endpoints(),
        }
    }

    /// Processes this run spawned (local mesh only; empty for remote fleets).
    pub fn processes(&self) -> Vec<local::NodeProcess> {
        match self {
            Fleet::Local(mesh) => mesh.processes(),
            Fleet::Remote(_) => Vec::new(),
        }
    }

    /// Which build runs where.
    pub fn builds(&self) -> Vec<HostBuild> {
        match self {
            Fleet::Local(mesh) => mesh.builds(),
            Fleet::Remote(fleet) => fleet.builds(),
        }
    }

    /// Stops what this fleet started (local processes; remote port-forwards and sessions).
    pub async fn shutdown(self) -> Result<(), CliError> {
        match self {
            Fleet::Local(mesh) => mesh.shutdown().await,
            Fleet::Remote(fleet) => fleet.shutdown().await,
        }
    }
}
