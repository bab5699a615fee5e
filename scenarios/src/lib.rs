//! `soak-scenarios`: workloads (Phase A matrix, fanout burst) and faults, written against
//! traits so the same logic drives a local mesh, an SSH fleet or the namespace lab.
//!
//! Entry points: [`api::NodeApi`] (the admin API surface workloads use) with its HTTP
//! implementation [`api::HttpNode`]; [`phase_a::PhaseA`] (the all-pairs DM matrix) and
//! [`fanout::run_fanout`] (the pub/sub burst); [`sampler::sample_round`] (one diagnostics round
//! over every node, failures recorded as evidence gaps). Results are the observation-model types of
//! `soak_gates::model`, ready to be stored in a proof and judged.
#![warn(missing_docs)]

pub mod api;
#[cfg(any(test, feature = "fake"))]
pub mod fake;
pub mod fanout;
pub mod faults;
pub mod phase_a;
pub mod pipeline;
pub mod sampler;

use serde::{Deserialize, Serialize};

pub use api::{HttpNode, NodeApi, NodeApiError, NodeApiErrorKind, http_client};

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
