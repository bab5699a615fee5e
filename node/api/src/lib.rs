//! `soak-api`: the serde types of the `soak-node` admin API (contract v1).
//!
//! This crate is the single source of truth for what travels between the node's admin API
//! (`node/`) and everything that drives or judges it (`soak/`, `scenarios/`, `gates/`). It is
//! pure data: no IO, no async, no clock. The human-readable contract is `docs/node-api.md`;
//! keep the two in step.
//!
//! Entry types: [`Diagnostics`] (the snapshot the sampler and the gates read), [`DmRequest`] /
//! [`DmResponse`], [`InboxPage`], [`PublishRequest`] / [`ReceivedPage`], [`NodeInfo`] (the
//! `node.json` file a node writes into its data dir), and the well-known counter and gauge
//! names in [`counters`] and [`gauges`].
#![warn(missing_docs)]

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};

/// Version of this admin API contract. Bumped on any incompatible change.
pub const API_VERSION: u32 = 1;

/// Prefix of every Prometheus metric the node exports. A counter named `k` in
/// [`Diagnostics::counters`] is exported as `soak_node_k` in `/metrics`.
pub const METRIC_PREFIX: &str = "soak_node_";

/// Name of the file a running node writes (atomically) into its data dir once it listens.
pub const NODE_INFO_FILE: &str = "node.json";
/// Name of the file holding the admin bearer token (mode 0600) in the data dir.
pub const ADMIN_TOKEN_FILE: &str = "admin.token";

/// Contents of `DATA_DIR/node.json`, written once the node listens.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct NodeInfo {
    /// Hex peer id (sha256 of the node's identity public key).
    pub peer_id: String,
    /// The QUIC (UDP) address the node listens on, e.g. `127.0.0.1:40123`.
    pub quic_addr: String,
    /// The admin HTTP address, e.g. `127.0.0.1:40124`.
    pub admin_addr: String,
    /// Operating-system process id.
    pub pid: u32,
    /// Process start, unix milliseconds.
    pub started_at_ms: u64,
    /// Random id of this process instance; changes on every start.
    pub instance_id: String,
}

/// `GET /v1/version`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct VersionInfo {
    /// Always `soak-node`.
    pub name: String,
    /// Crate version.
    pub version: String,
    /// Git revision the binary was built from (`unknown` when not built from a checkout).
    pub git: String,
    /// Hex peer id.
    pub peer_id: String,
    /// [`API_VERSION`] of the running node.
    pub api_version: u32,
}

/// `GET /readyz` body (status 200 when `ready`, else 503).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Readiness {
    /// True when every check is true.
    pub ready: bool,
    /// Each readiness check by name and whether it holds.
    pub checks: BTreeMap<String, bool>,
}

/// The JSON error body of every non-2xx admin API response.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ApiError {
    /// Stable machine-readable code, e.g. `bad_request`, `unauthorized`, `payload_too_large`.
    pub code: String,
    /// Human-readable message.
    pub error: String,
}

/// Identity of one node process. A restart keeps `peer_id` but changes `instance_id`.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
pub struct ProcessIdentity {
    /// Random id of this process instance.
    pub instance_id: String,
    /// Hex peer id.
    pub peer_id: String,
    /// Operating-system process id.
    pub pid: u32,
    /// Process start, unix milliseconds.
    pub started_at_ms: u64,
}

/// `GET /v1/diagnostics`: one consistent snapshot of the node.
///
/// Every entry of `counters` is monotonic within one process instance and is also exported in
/// `/metrics` as `soak_node_<name>`. Well-known names are in [`counters`] and [`gauges`]; a node
/// may report more.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Diagnostics {
    /// [`API_VERSION`].
    pub api_version: u32,
    /// Which process produced this snapshot.
    pub identity: ProcessIdentity,
    /// Node version string.
    pub version: String,
    /// When the snapshot was taken, unix milliseconds (node clock).
    pub taken_at_ms: u64,
    /// Milliseconds since process start.
    pub uptime_ms: u64,
    /// Monotonic counters by name (without the metric prefix).
    pub counters: BTreeMap<String, u64>,
    /// Gauges by name (without the metric prefix).
    pub gauges: BTreeMap<String, f64>,
    /// Per-peer transport state.
    #[serde(default)]
    pub peers: Vec<PeerTransport>,
    /// Per-topic pub/sub state (empty until the node joins a topic).
    #[serde(default)]
    pub topics: Vec<TopicDiagnostics>,
    /// Active impairments (node-level fault injection), if any.
    #[serde(default)]
    pub impairments: Vec<Impairment>,
    /// Bans in force (peers or addresses refused for repeated failures).
    #[serde(default)]
    pub bans: Vec<Ban>,
    /// Latency histograms by name (e.g. [`histograms::DM_ACK_LATENCY`]), summarised.
    #[serde(default)]
    pub histograms: BTreeMap<String, HistogramSummary>,
}

/// One ban: a peer (or an address that never authenticated) that failed `failures` times
/// within the ban window, refused until the ban ends. `GET /v1/bans`, `/v1/diagnostics`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Ban {
    /// Hex peer id, when the banned subject is an authenticated peer.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub peer_id: Option<String>,
    /// The address refused early: the banned address itself, or where the banned peer was
    /// last seen (`ip:port`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub addr: Option<String>,
    /// The failure that tipped it: `bad_frame`, `handshake_failure`, `rate_limit` or
    /// `auth_timeout`.
    pub reason: String,
    /// Failures within the window when it was banned.
    pub failures: u32,
    /// Milliseconds until the ban ends by itself.
    pub remaining_ms: u64,
}

/// A latency histogram, summarised: the same observations `/metrics` exports as a Prometheus
/// histogram. Quantiles are estimated from the buckets (linear interpolation within the
/// bucket, as Prometheus' `histogram_quantile` does) and absent while nothing was observed.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct HistogramSummary {
    /// Observations (monotonic within one process instance).
    pub count: u64,
    /// Sum of the observations, seconds (monotonic).
    pub sum_seconds: f64,
    /// Median estimate, seconds.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub p50_seconds: Option<f64>,
    /// 99th percentile estimate, seconds.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub p99_seconds: Option<f64>,
}

/// Well-known histogram names (keys of [`Diagnostics::histograms`]; exported in `/metrics` as
/// `soak_node_<name>` with `_bucket`, `_sum` and `_count`).
pub mod histograms {
    /// Acknowledged DMs over a connection: from the API request to the ACK (dialing and a
    /// retry included).
    pub const DM_ACK_LATENCY: &str = "dm_ack_latency_seconds";
    /// Gossip messages: from publication (the origin's clock) to first delivery here.
    pub const GOSSIP_DELIVERY_LATENCY: &str = "gossip_delivery_latency_seconds";
}

/// Transport state of one known peer.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct PeerTransport {
    /// Hex peer id.
    pub peer_id: String,
    /// Remote UDP address.
    pub addr: String,
    /// Connection state.
    pub state: PeerState,
    /// Who opened the current connection.
    pub direction: Direction,
    /// Whether the peer is in the active view (else passive).
    pub active: bool,
    /// Smoothed ping/pong round-trip time, microseconds.
    pub rtt_us: Option<u64>,
    /// QUIC's smoothed path round-trip time of the current connection, microseconds (what
    /// the gossip slow-peer detector compares); absent without a connection.
    #[serde(default)]
    pub path_rtt_us: Option<u64>,
    /// Fraction of lost packets on the current connection (0..=1).
    pub loss: f64,
    /// Milliseconds since anything was received from this peer.
    pub idle_ms: u64,
    /// Connection attempts that failed since the last success.
    pub failed_attempts: u32,
}

/// State of a peer connection.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum PeerState {
    /// Handshake under way (dialing or authenticating).
    Pending,
    /// Connected and authenticated.
    Established,
    /// Known but not connected; reconnect scheduled with backoff.
    Backoff,
}

/// Who opened a connection.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Direction {
    /// We dialed the peer.
    Outbound,
    /// The peer dialed us.
    Inbound,
}

/// Pub/sub state of one topic on one node.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct TopicDiagnostics {
    /// Topic name.
    pub topic: String,
    /// Peers we push full messages to.
    pub eager: Vec<String>,
    /// Peers we only announce (IHAVE) to.
    pub lazy: Vec<String>,
    /// Per-peer score and its components.
    pub scores: Vec<PeerScore>,
    /// Peers currently suppressed (cooled) on this topic.
    pub suppressed: Vec<Suppression>,
}

/// Score of one (topic, peer).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct PeerScore {
    /// Hex peer id.
    pub peer_id: String,
    /// Decayed total score (higher is healthier).
    pub score: f64,
    /// Components by name, e.g. `send_health`, `timeouts`, `broken_promises`.
    pub components: BTreeMap<String, f64>,
}

/// One suppressed (topic, peer).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Suppression {
    /// Hex peer id.
    pub peer_id: String,
    /// Milliseconds until the suppression lapses.
    pub remaining_ms: u64,
    /// How many times in a row it was suppressed (drives exponential backoff).
    pub strikes: u32,
    /// Why: `health` (send timeouts, failures, broken promises: sent nothing) or `latency`
    /// (the slow-peer detector: off the tree, still announced to and answered). Absent from
    /// nodes that predate it.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub cause: Option<String>,
}

/// `POST /v1/dm`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct DmRequest {
    /// Hex peer id of the receiver (may be the node's own id: local delivery).
    pub to: String,
    /// Payload, standard base64.
    pub payload_b64: String,
    /// 16-byte request id as 32 hex chars; generated when absent. Re-sending the same id with
    /// the same payload is a duplicate-safe retry.
    #[serde(default)]
    pub request_id: Option<String>,
    /// ACK timeout per attempt in milliseconds (node default when absent).
    #[serde(default)]
    pub timeout_ms: Option<u64>,
}

/// `POST /v1/dm` response.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct DmResponse {
    /// The request id used (32 hex chars).
    pub request_id: String,
    /// What happened.
    pub outcome: DmOutcome,
    /// How the message travelled.
    pub path: DmPath,
    /// Attempts made (1 + retries).
    pub attempts: u32,
    /// Time from request to outcome, microseconds.
    pub elapsed_us: u64,
    /// Detail for non-`acked` outcomes.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub error: Option<String>,
}

/// Outcome of one direct message.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum DmOutcome {
    /// The receiver stored it in its inbox and acknowledged.
    Acked,
    /// No acknowledgement within the timeout (after the duplicate-safe retry).
    Timeout,
    /// The receiver's inbox was full.
    Busy,
    /// No connection to the receiver could be used.
    Unreachable,
    /// The receiver already has this request id with a different payload.
    Rejected,
    /// Shed by a rate limit or overload ("load").
    Load,
    /// Any other failure.
    Error,
}

/// How a direct message travelled.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum DmPath {
    /// Over a QUIC connection to the receiver.
    Direct,
    /// Self-DM, delivered locally.
    Loopback,
    /// Not sent at all.
    None,
}

/// Query of `GET /v1/dm/inbox` and `GET /v1/topics/{topic}/received`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize)]
pub struct PageQuery {
    /// Return items with `seq > after` (0 = from the start).
    #[serde(default)]
    pub after: Option<u64>,
    /// At most this many items (node caps it).
    #[serde(default)]
    pub limit: Option<usize>,
}

/// `GET /v1/dm/inbox` response.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct InboxPage {
    /// Pass as `after` to continue.
    pub next: u64,
    /// Items in sequence order.
    pub items: Vec<InboxItem>,
}

/// One delivered direct message.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct InboxItem {
    /// Monotonic sequence number within this process instance.
    pub seq: u64,
    /// Hex peer id of the sender.
    pub from: String,
    /// 32 hex chars.
    pub request_id: String,
    /// Payload size in bytes.
    pub size: usize,
    /// When it entered the inbox, unix milliseconds (node clock).
    pub received_at_ms: u64,
}

/// `POST /v1/topics/{topic}/publish`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct PublishRequest {
    /// Payload, standard base64.
    pub payload_b64: String,
}

/// `POST /v1/topics/{topic}/publish` response.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct PublishResponse {
    /// Unique id of this publish (unique even for identical payloads).
    pub msg_id: String,
}

/// `GET /v1/topics/{topic}/received` response.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ReceivedPage {
    /// Pass as `after` to continue.
    pub next: u64,
    /// Items in sequence order.
    pub items: Vec<ReceivedItem>,
}

/// One message delivered to the local subscriber of a topic.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ReceivedItem {
    /// Monotonic sequence number within this process instance and topic.
    pub seq: u64,
    /// Message id.
    pub msg_id: String,
    /// Hex peer id of the publisher.
    pub origin: String,
    /// Hops travelled (0 = published locally).
    pub hops: u32,
    /// Payload size in bytes.
    pub size: usize,
    /// When the origin published it, unix milliseconds (origin clock).
    pub published_at_ms: u64,
    /// When it was delivered here, unix milliseconds (node clock).
    pub received_at_ms: u64,
}

/// A node-level impairment (fault injection without root), `POST /v1/impairments`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Impairment {
    /// Caller-chosen id (1–64 of `[A-Za-z0-9_.:-]`). Posting an id the node already holds
    /// replaces that impairment (this is how a fault's lease is renewed); `DELETE
    /// /v1/impairments/{id}` removes just it. The node assigns `imp-N` when absent; listings
    /// always carry it.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub id: Option<String>,
    /// Hex peer id it applies to; `None` = every peer.
    #[serde(default)]
    pub peer: Option<String>,
    /// Added one-way delay on outgoing datagrams, milliseconds.
    #[serde(default)]
    pub delay_ms: u64,
    /// Uniform jitter added to the delay, milliseconds.
    #[serde(default)]
    pub jitter_ms: u64,
    /// Probability (0..=1) of dropping an outgoing datagram.
    #[serde(default)]
    pub loss: f64,
    /// Drop every datagram to and from the peer (with `one_way`: only those to it).
    #[serde(default)]
    pub partition: bool,
    /// With `partition`: drop only outgoing datagrams (this node → peer); the peer's datagrams
    /// still arrive. Over QUIC the peer's own sends then stall too once their ACKs stop coming
    /// back, so a one-way cut also degrades the reverse direction after a while.
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub one_way: bool,
    /// Lifetime in milliseconds; required: an impairment always expires by itself.
    pub expires_in_ms: u64,
}

/// Well-known monotonic counter names (keys of [`Diagnostics::counters`]).
///
/// The gates read these; renaming one is an API change.
pub mod counters {
    /// Direct messages accepted from the API for sending (including self-DM).
    pub const DM_SENT: &str = "dm_sent_total";
    /// Direct messages acknowledged by the receiver.
    pub const DM_ACKED: &str = "dm_acked_total";
    /// ACK waits that timed out (each attempt).
    pub const DM_ACK_TIMEOUTS: &str = "dm_ack_timeouts_total";
    /// Duplicate-safe retries sent.
    pub const DM_RETRIES: &str = "dm_retries_total";
    /// Direct messages stored in this node's inbox.
    pub const DM_DELIVERED: &str = "dm_delivered_total";
    /// Duplicate direct messages received (re-ACKed, not delivered again).
    pub const DM_DUPLICATES: &str = "dm_duplicates_total";
    /// Direct messages rejected: known request id with a different payload.
    pub const DM_CONFLICTS: &str = "dm_conflicts_total";
    /// Direct messages refused because the inbox was full.
    pub const DM_BUSY: &str = "dm_busy_total";
    /// Direct messages that could not be sent: no usable connection.
    pub const DM_UNREACHABLE: &str = "dm_unreachable_total";
    /// Datagrams the node's own impairments dropped (loss or partition, either direction): the
    /// node-side evidence that an impairment took effect, like `tc -s qdisc` on a host.
    pub const IMPAIRMENT_DROPPED: &str = "impairment_dropped_total";
    /// Outgoing datagrams the node's own impairments held back (delay).
    pub const IMPAIRMENT_DELAYED: &str = "impairment_delayed_total";
    /// Frames put on the bounded receive queue ("recv pump").
    pub const RECV_PUMP_PRODUCED: &str = "recv_pump_produced_total";
    /// Frames taken off the receive queue.
    pub const RECV_PUMP_DEQUEUED: &str = "recv_pump_dequeued_total";
    /// Frames dropped because the receive queue was full.
    pub const RECV_PUMP_DROPPED_FULL: &str = "recv_pump_dropped_full_total";
    /// Dispatcher tasks completed within their timeout.
    pub const DISPATCHER_COMPLETED: &str = "dispatcher_completed_total";
    /// Dispatcher tasks that hit their per-task timeout.
    pub const DISPATCHER_TIMEOUTS: &str = "dispatcher_timeouts_total";
    /// Sends to a peer that missed their deadline (outbound queue full or stream stalled).
    pub const PEER_SEND_TIMEOUTS: &str = "peer_send_timeouts_total";
    /// Times a per-peer outbound queue reached its high-water mark.
    pub const OUTBOUND_HIGH_WATER: &str = "outbound_high_water_total";
    /// Requests shed with a "load" error (rate limit or overload).
    pub const LOAD_SHED: &str = "load_shed_total";
    /// UDP datagrams on the QUIC port that were not QUIC (garbage).
    pub const INVALID_DATAGRAMS: &str = "invalid_datagrams_total";
    /// Incoming connections that failed the handshake or peer-id check.
    pub const HANDSHAKE_FAILURES: &str = "handshake_failures_total";
    /// Connections closed because the peer never finished authenticating in time.
    pub const AUTH_TIMEOUTS: &str = "auth_timeouts_total";
    /// Frames from peers that could not be decoded.
    pub const INVALID_FRAMES: &str = "invalid_frames_total";
    /// Connections established (both directions).
    pub const CONNECTIONS_ESTABLISHED: &str = "connections_established_total";
    /// Connections replaced by a newer one to the same peer.
    pub const CONNECTIONS_REPLACED: &str = "connections_replaced_total";
    /// Reconnect attempts.
    pub const RECONNECT_ATTEMPTS: &str = "reconnect_attempts_total";
    /// Messages published locally.
    pub const GOSSIP_PUBLISHED: &str = "gossip_published_total";
    /// Messages delivered to local subscribers (first copy only).
    pub const GOSSIP_DELIVERED: &str = "gossip_delivered_total";
    /// Duplicate gossip messages received.
    pub const GOSSIP_DUPLICATES: &str = "gossip_duplicates_total";
    /// Messages dropped at the local subscriber because its buffer was full.
    pub const GOSSIP_SUBSCRIBER_DROPPED: &str = "gossip_subscriber_dropped_total";
    /// Suppressions (coolings) of a (topic, peer) started.
    pub const GOSSIP_SUPPRESSIONS: &str = "gossip_suppressions_total";
    /// Admin API requests rejected as malformed.
    pub const API_BAD_REQUESTS: &str = "api_bad_requests_total";
}

/// Well-known gauge names (keys of [`Diagnostics::gauges`]).
pub mod gauges {
    /// Peers with an established, authenticated connection.
    pub const PEERS_ESTABLISHED: &str = "peers_established";
    /// Peers with a handshake under way.
    pub const PEERS_PENDING: &str = "peers_pending";
    /// Size of the active view.
    pub const ACTIVE_VIEW: &str = "active_view";
    /// Size of the passive view.
    pub const PASSIVE_VIEW: &str = "passive_view";
    /// Current depth of the receive queue.
    pub const RECV_PUMP_DEPTH: &str = "recv_pump_depth";
    /// Highest depth of the receive queue since start.
    pub const RECV_PUMP_MAX_DEPTH: &str = "recv_pump_max_depth";
    /// Messages in the DM inbox.
    pub const INBOX_DEPTH: &str = "inbox_depth";
    /// Largest per-peer outbound queue depth right now.
    pub const OUTBOUND_QUEUE_MAX_DEPTH: &str = "outbound_queue_max_depth";
    /// Dispatcher worker target (adaptive).
    pub const DISPATCHER_WORKER_TARGET: &str = "dispatcher_worker_target";
    /// Dispatcher tasks in flight.
    pub const DISPATCHER_INFLIGHT: &str = "dispatcher_inflight";
    /// Suppressed (topic, peer) entries.
    pub const SUPPRESSED_TOPIC_PEERS: &str = "suppressed_topic_peers";
    /// Known (topic, peer) pairs.
    pub const KNOWN_TOPIC_PEERS: &str = "known_topic_peers";

    // Process gauges: read from `/proc/self` on Linux at every snapshot; a gauge that cannot
    // be read is absent from [`crate::Diagnostics::gauges`], never reported as zero. The same
    // figures are in `/metrics` under these names without the `soak_node_` prefix (the
    // standard Prometheus process collector).

    /// Resident set size, bytes.
    pub const PROCESS_RESIDENT_MEMORY_BYTES: &str = "process_resident_memory_bytes";
    /// Virtual memory size, bytes.
    pub const PROCESS_VIRTUAL_MEMORY_BYTES: &str = "process_virtual_memory_bytes";
    /// Open file descriptors.
    pub const PROCESS_OPEN_FDS: &str = "process_open_fds";
    /// Soft limit on open file descriptors.
    pub const PROCESS_MAX_FDS: &str = "process_max_fds";
    /// OS threads of the process.
    pub const PROCESS_THREADS: &str = "process_threads";
    /// User + system CPU time consumed, seconds (monotonic within one process).
    pub const PROCESS_CPU_SECONDS_TOTAL: &str = "process_cpu_seconds_total";
    /// Process start, seconds since the unix epoch.
    pub const PROCESS_START_TIME_SECONDS: &str = "process_start_time_seconds";

    /// Every process gauge, in a fixed order.
    pub const PROCESS: [&str; 7] = [
        PROCESS_RESIDENT_MEMORY_BYTES,
        PROCESS_VIRTUAL_MEMORY_BYTES,
        PROCESS_OPEN_FDS,
        PROCESS_MAX_FDS,
        PROCESS_THREADS,
        PROCESS_CPU_SECONDS_TOTAL,
        PROCESS_START_TIME_SECONDS,
    ];
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn dm_outcome_uses_snake_case_on_the_wire() {
        let json = serde_json::to_string(&DmOutcome::Unreachable).unwrap_or_default();
        assert_eq!(json, "\"unreachable\"");
        let back: DmOutcome = serde_json::from_str("\"acked\"").unwrap_or(DmOutcome::Error);
        assert_eq!(back, DmOutcome::Acked);
    }

    #[test]
    fn dm_request_optional_fields_default() {
        let req: Result<DmRequest, _> = serde_json::from_str(r#"{"to":"ab","payload_b64":""}"#);
        let req = req.ok();
        assert_eq!(req.as_ref().and_then(|r| r.request_id.clone()), None);
        assert_eq!(req.and_then(|r| r.timeout_ms), None);
    }
}
