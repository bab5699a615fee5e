//! Deterministic discrete-event simulator over the pure core (feature `sim`).
//!
//! [`Network`] holds one [`crate::State`] per virtual node, a seeded event queue ordered by
//! (virtual time, insertion order), per-link latencies drawn once per link from the seed, loss,
//! partition/heal, crash (churn) and slow consumers with a bounded inbound queue. [`run`]
//! drives a [`Scenario`] and produces the one JSON [`Report`]; the drive loop has an event
//! budget, so a run that never settles fails with [`SimError::Unsettled`] and the seed to
//! replay. [`cli`] is the `soak-sim` command line.

mod attribution;
pub mod cli;
mod network;
mod scenario;

pub use attribution::Redundancy;
pub use network::{Delivered, NetConfig, Network, SimNode, SimPeer};
pub use scenario::{
    CHURN_RECOVERY_ROUNDS, Caps, ChurnReport, Dist, Ldh, PartitionReport, REFERENCE_LDH,
    REFERENCE_MULTI_LDH, REFERENCE_MULTI_RMR, REFERENCE_RMR, Reference, Report, RoundReport,
    Scenario, SimError, SimParams, SlowReport, TARGET_LDH_MAX, TARGET_MAX_PEERS, TARGET_MULTI_RMR,
    TARGET_RMR, rmr, run,
};
