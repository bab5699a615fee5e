//! `soak-scenarios`: workloads (Phase A matrix, fanout burst) and faults, written against
//! traits so the same logic drives a local mesh, an SSH fleet or the namespace lab.

use serde::{Deserialize, Serialize};

/// How the orchestrator reaches one node's admin API — the same shape for a local mesh (a
/// loopback port), an SSH fleet (a local port-forward) and the lab.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct NodeEndpoint {
    /// Node name used everywhere in the proof (e.g. `node-0` or the inventory host name).
    pub name: String,
    /// Base URL of the admin API as reachable from the orchestrator, e.g. `http://127.0.0.1:40124`.
    pub admin_url: String,
    /// Admin bearer token.
    pub token: String,
    /// Hex peer id.
    pub peer_id: String,
}
