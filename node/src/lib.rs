//! `soak-node`: the bundled overlay node that `soak` deploys, drives and judges.
//!
//! A sans-IO protocol core (membership, direct messages, gossip) wrapped by a thin IO shell
//! (quinn transport, axum admin API). Entry point: the `soak-node run` binary.
