//! Well-known metric names the evaluator itself reads (beyond those a profile names).
//!
//! Mirrors of `soak_api::counters` / `soak_api::gauges` (gates stays free of any crate but
//! serde; a test checks the strings match).

/// `soak_api::counters::RECV_PUMP_DROPPED_FULL`.
pub const RECV_PUMP_DROPPED_FULL: &str = "recv_pump_dropped_full_total";
/// `soak_api::gauges::RECV_PUMP_DEPTH`.
pub const RECV_PUMP_DEPTH: &str = "recv_pump_depth";
/// `soak_api::gauges::OUTBOUND_QUEUE_MAX_DEPTH`.
pub const OUTBOUND_QUEUE_MAX_DEPTH: &str = "outbound_queue_max_depth";
/// `soak_api::gauges::SUPPRESSED_TOPIC_PEERS`.
pub const SUPPRESSED_TOPIC_PEERS: &str = "suppressed_topic_peers";
/// `soak_api::gauges::KNOWN_TOPIC_PEERS`.
pub const KNOWN_TOPIC_PEERS: &str = "known_topic_peers";
/// `soak_api::gauges::PROCESS_RESIDENT_MEMORY_BYTES` (contract with the node; resource bars).
pub const PROCESS_RESIDENT_MEMORY_BYTES: &str = "process_resident_memory_bytes";
/// `soak_api::gauges::PROCESS_OPEN_FDS` (contract with the node; resource bars).
pub const PROCESS_OPEN_FDS: &str = "process_open_fds";
