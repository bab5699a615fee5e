//! The node's counters and gauges: one prometheus `Registry` per node, the single source for
//! both `/metrics` (classic Prometheus text) and the `counters` / `gauges` of `/v1/diagnostics`,
//! so the two can never disagree on names.

use std::collections::BTreeMap;

use prometheus::{Encoder, Gauge, GaugeVec, IntCounter, Opts, Registry, TextEncoder};
use soak_api::{METRIC_PREFIX, counters as c, gauges as g};

/// Counters beyond the well-known ones.
pub mod extra {
    /// Dials that failed or timed out.
    pub const DIAL_FAILURES: &str = "dial_failures_total";
    /// Inbound connection attempts refused because too many handshakes were in flight.
    pub const HANDSHAKES_REFUSED: &str = "handshakes_refused_total";
    /// Gossip frames a stalled topic's delivery path held (`POST /v1/topics/{t}/stall`).
    pub const GOSSIP_STALLED_FRAMES: &str = "gossip_stalled_frames_total";
    /// Frames sent to peers.
    pub const FRAMES_SENT: &str = "frames_sent_total";
    /// Admin API requests refused for a missing or wrong token.
    pub const API_UNAUTHORIZED: &str = "api_unauthorized_total";
}

/// Gauges beyond the well-known ones.
pub mod extra_gauges {
    /// DMs awaiting an ACK or a connection.
    pub const DM_PENDING: &str = "dm_pending";
    /// Peers in the address book.
    pub const KNOWN_PEERS: &str = "known_peers";
    /// Dedupe cache entries.
    pub const DEDUPE_ENTRIES: &str = "dedupe_entries";
    /// Active impairments.
    pub const IMPAIRMENTS: &str = "impairments";
    /// Topics subscribed.
    pub const TOPICS: &str = "topics";
    /// Messages held in subscriber buffers (all topics).
    pub const TOPIC_BUFFERED: &str = "topic_buffered";
    /// Gossip frames held while their peer is dialed.
    pub const GOSSIP_PENDING: &str = "gossip_pending";
    /// Topics whose delivery path is stalled right now.
    pub const STALLED_TOPICS: &str = "stalled_topics";
}

const COUNTERS: &[&str] = &[
    c::DM_SENT,
    c::DM_ACKED,
    c::DM_ACK_TIMEOUTS,
    c::DM_RETRIES,
    c::DM_DELIVERED,
    c::DM_DUPLICATES,
    c::DM_CONFLICTS,
    c::DM_BUSY,
    c::DM_UNREACHABLE,
    c::RECV_PUMP_PRODUCED,
    c::RECV_PUMP_DEQUEUED,
    c::RECV_PUMP_DROPPED_FULL,
    c::DISPATCHER_COMPLETED,
    c::DISPATCHER_TIMEOUTS,
    c::PEER_SEND_TIMEOUTS,
    c::OUTBOUND_HIGH_WATER,
    c::LOAD_SHED,
    c::INVALID_DATAGRAMS,
    c::IMPAIRMENT_DROPPED,
    c::IMPAIRMENT_DELAYED,
    c::HANDSHAKE_FAILURES,
    c::AUTH_TIMEOUTS,
    c::INVALID_FRAMES,
    c::CONNECTIONS_ESTABLISHED,
    c::CONNECTIONS_REPLACED,
    c::RECONNECT_ATTEMPTS,
    c::GOSSIP_PUBLISHED,
    c::GOSSIP_DELIVERED,
    c::GOSSIP_DUPLICATES,
    c::GOSSIP_SUBSCRIBER_DROPPED,
    c::GOSSIP_SUPPRESSIONS,
    c::API_BAD_REQUESTS,
    extra::DIAL_FAILURES,
    extra::HANDSHAKES_REFUSED,
    extra::GOSSIP_STALLED_FRAMES,
    extra::FRAMES_SENT,
    extra::API_UNAUTHORIZED,
];

const GAUGES: &[&str] = &[
    g::PEERS_ESTABLISHED,
    g::PEERS_PENDING,
    g::ACTIVE_VIEW,
    g::PASSIVE_VIEW,
    g::RECV_PUMP_DEPTH,
    g::RECV_PUMP_MAX_DEPTH,
    g::INBOX_DEPTH,
    g::OUTBOUND_QUEUE_MAX_DEPTH,
    g::DISPATCHER_WORKER_TARGET,
    g::DISPATCHER_INFLIGHT,
    g::SUPPRESSED_TOPIC_PEERS,
    g::KNOWN_TOPIC_PEERS,
    extra_gauges::DM_PENDING,
    extra_gauges::KNOWN_PEERS,
    extra_gauges::DEDUPE_ENTRIES,
    extra_gauges::IMPAIRMENTS,
    extra_gauges::TOPICS,
    extra_gauges::TOPIC_BUFFERED,
    extra_gauges::GOSSIP_PENDING,
    extra_gauges::STALLED_TOPICS,
];

/// Registry errors (only at construction, with fixed valid names).
#[derive(Debug, thiserror::Error)]
#[error("failed to register metric: {0}")]
pub struct MetricsError(#[from] prometheus::Error);

/// All metrics of one node.
#[derive(Debug)]
pub struct Metrics {
    registry: Registry,
    counters: BTreeMap<&'static str, IntCounter>,
    gauges: BTreeMap<&'static str, Gauge>,
}

impl Metrics {
    /// Register every counter and gauge (at zero) and the build-info gauge.
    pub fn new(version: &str, git: &str) -> Result<Metrics, MetricsError> {
        let registry = Registry::new();
        let mut counters = BTreeMap::new();
        // The gossip core's counters (`gossip_*_total`), mirrored at every snapshot.
        let gossip = soak_gossip::Counters::default().named();
        let names = COUNTERS
            .iter()
            .copied()
            .chain(gossip.iter().map(|(n, _)| *n))
            .collect::<std::collections::BTreeSet<&'static str>>();
        for name in names {
            let counter = IntCounter::with_opts(Opts::new(
                format!("{METRIC_PREFIX}{name}"),
                format!("soak-node counter {name}"),
            ))?;
            registry.register(Box::new(counter.clone()))?;
            counters.insert(name, counter);
        }
        let mut gauges = BTreeMap::new();
        for name in GAUGES {
            let gauge = Gauge::with_opts(Opts::new(
                format!("{METRIC_PREFIX}{name}"),
                format!("soak-node gauge {name}"),
            ))?;
            registry.register(Box::new(gauge.clone()))?;
            gauges.insert(*name, gauge);
        }
        let build = GaugeVec::new(
            Opts::new(
                format!("{METRIC_PREFIX}build_info"),
                "soak-node build information",
            ),
            &["version", "git"],
        )?;
        registry.register(Box::new(build.clone()))?;
        build.with_label_values(&[version, git]).set(1.0);
        Ok(Metrics {
            registry,
            counters,
            gauges,
        })
    }

    /// Add to a counter. Unknown names are a programming error; they are ignored (and caught
    /// by the test that every name the code uses is registered).
    pub fn add(&self, name: &str, n: u64) {
        if let Some(c) = self.counters.get(name) {
            c.inc_by(n);
        } else {
            debug_assert!(false, "unregistered counter {name}");
        }
    }

    /// Increment a counter.
    pub fn inc(&self, name: &str) {
        self.add(name, 1);
    }

    /// Raise a counter to `value` (for counters mirrored from an atomic).
    pub fn raise_to(&self, name: &str, value: u64) {
        if let Some(c) = self.counters.get(name) {
            let cur = c.get();
            if value > cur {
                c.inc_by(value - cur);
            }
        }
    }

    /// Current value of a counter.
    pub fn counter(&self, name: &str) -> u64 {
        self.counters.get(name).map_or(0, |c| c.get())
    }

    /// Set a gauge.
    pub fn set(&self, name: &str, v: f64) {
        if let Some(g) = self.gauges.get(name) {
            g.set(v);
        } else {
            debug_assert!(false, "unregistered gauge {name}");
        }
    }

    /// Every counter by name (without prefix).
    pub fn counters(&self) -> BTreeMap<String, u64> {
        self.counters
            .iter()
            .map(|(k, v)| (k.to_string(), v.get()))
            .collect()
    }

    /// Every gauge by name (without prefix).
    pub fn gauges(&self) -> BTreeMap<String, f64> {
        self.gauges
            .iter()
            .map(|(k, v)| (k.to_string(), v.get()))
            .collect()
    }

    /// Prometheus text format.
    pub fn render(&self) -> String {
        let mut buf = Vec::new();
        if TextEncoder::new()
            .encode(&self.registry.gather(), &mut buf)
            .is_err()
        {
            return String::new();
        }
        String::from_utf8(buf).unwrap_or_default()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_counter_is_rendered_with_the_prefix() {
        let m = Metrics::new("0.1.0", "abc").unwrap();
        m.inc(c::DM_SENT);
        let text = m.render();
        for name in m.counters().keys() {
            assert!(
                text.contains(&format!("soak_node_{name} ")),
                "{name} missing"
            );
        }
        assert!(text.contains("soak_node_build_info{git=\"abc\",version=\"0.1.0\"} 1"));
        assert_eq!(m.counter(c::DM_SENT), 1);
    }
}
