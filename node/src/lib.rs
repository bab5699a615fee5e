//! `soak-node`: the bundled overlay node that `soak` deploys, drives and judges.
//!
//! A sans-IO protocol core ([`proto`], the `soak-proto` crate: membership, direct messages,
//! gossip composition) wrapped by a thin IO shell ([`shell`] driving [`transport`] (quinn) and
//! [`admin`] (axum)). Entry points: the
//! `soak-node run` binary, and [`shell::Node::start`] for in-process use (benchmarks).

/// The sans-IO protocol core (the `soak-proto` crate).
pub use soak_proto as proto;

pub mod admin;
pub mod config;
pub mod identity;
pub mod impair;
pub mod metrics;
pub mod procstats;
pub mod pubsub;
pub mod shell;
pub mod testhooks;
pub mod transport;
