//! The node's counters and gauges: one prometheus `Registry` per node, the single source for
//! both `/metrics` (classic Prometheus text) and the `counters` / `gauges` of `/v1/diagnostics`,
//! so the two can never disagree on names.

use std::collections::BTreeMap;

use prometheus::core::Collector;
use prometheus::{
    Encoder, Gauge, GaugeVec, Histogram, HistogramOpts, IntCounter, Opts, Registry, TextEncoder,
};
use soak_api::{HistogramSummary, METRIC_PREFIX, counters as c, gauges as g, histograms as h};

/// Bucket upper bounds of the latency histograms, seconds: 0.5 ms to 30 s.
pub const LATENCY_BUCKETS: [f64; 16] = [
    0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 20.0,
    30.0,
];

/// Counters beyond the well-known ones (the protocol core's are in
/// `soak_proto::core::stats`).
pub mod extra {
    /// Gossip frames a stalled topic's delivery path held (`POST /v1/topics/{t}/stall`).
    pub const GOSSIP_STALLED_FRAMES: &str = "gossip_stalled_frames_total";
    /// Frames sent to peers.
    pub const FRAMES_SENT: &str = "frames_sent_total";
    /// Admin API requests refused for a missing or wrong token.
    pub const API_UNAUTHORIZED: &str = "api_unauthorized_total";
    /// Admin API connections closed at accept because `admin_max_connections` were open.
    pub const API_CONNECTIONS_REFUSED: &str = "api_connections_refused_total";
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
    /// Inbound handshakes in flight.
    pub const PENDING_INBOUND: &str = "pending_inbound";
    /// Outbound dials in flight.
    pub const PENDING_OUTBOUND: &str = "pending_outbound";
    /// Peers connected inbound (held to `max_inbound_peers`).
    pub const PEERS_INBOUND: &str = "peers_inbound";
    /// Bans in force.
    pub const BANS_ACTIVE: &str = "bans_active";
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
    extra::GOSSIP_STALLED_FRAMES,
    extra::FRAMES_SENT,
    extra::API_UNAUTHORIZED,
    extra::API_CONNECTIONS_REFUSED,
    soak_proto::engine::stats::GOSSIP_OVERSIZED,
    soak_proto::engine::stats::GOSSIP_FEEDBACK_DROPPED,
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
    extra_gauges::PENDING_INBOUND,
    extra_gauges::PENDING_OUTBOUND,
    extra_gauges::PEERS_INBOUND,
    extra_gauges::BANS_ACTIVE,
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
    histograms: BTreeMap<&'static str, Histogram>,
}

impl Metrics {
    /// Register every counter and gauge (at zero) and the build-info gauge.
    pub fn new(version: &str, git: &str) -> Result<Metrics, MetricsError> {
        let registry = Registry::new();
        let mut counters = BTreeMap::new();
        // The gossip core's counters (`gossip_*_total`), mirrored at every snapshot.
        let gossip = soak_gossip::Counters::default().named();
        let transient = soak_proto::transient::TransientStats::default().named();
        let names = COUNTERS
            .iter()
            .copied()
            .chain(soak_proto::core::stats::ALL)
            .chain(transient.iter().map(|(n, _)| *n))
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
        let mut histograms = BTreeMap::new();
        for (name, help) in [
            (
                h::DM_ACK_LATENCY,
                "acknowledged DMs: API request to ACK, seconds",
            ),
            (
                h::GOSSIP_DELIVERY_LATENCY,
                "gossip messages: publication (origin clock) to first delivery here, seconds",
            ),
        ] {
            let hist = Histogram::with_opts(
                HistogramOpts::new(format!("{METRIC_PREFIX}{name}"), help)
                    .buckets(LATENCY_BUCKETS.to_vec()),
            )?;
            registry.register(Box::new(hist.clone()))?;
            histograms.insert(name, hist);
        }
        // The standard `process_*` set (unprefixed, as every Prometheus client exports it).
        #[cfg(target_os = "linux")]
        registry.register(Box::new(
            prometheus::process_collector::ProcessCollector::for_self(),
        ))?;
        Ok(Metrics {
            registry,
            counters,
            gauges,
            histograms,
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

    /// Record one observation (seconds) in a latency histogram.
    pub fn observe(&self, name: &str, seconds: f64) {
        if let Some(h) = self.histograms.get(name) {
            h.observe(seconds);
        } else {
            debug_assert!(false, "unregistered histogram {name}");
        }
    }

    /// Every histogram by name (without prefix), summarised.
    pub fn histograms(&self) -> BTreeMap<String, HistogramSummary> {
        self.histograms
            .iter()
            .map(|(name, hist)| {
                let buckets: Vec<(f64, u64)> = hist
                    .collect()
                    .iter()
                    .flat_map(|mf| mf.get_metric().iter())
                    .flat_map(|m| m.get_histogram().get_bucket().iter())
                    .map(|b| (b.upper_bound(), b.cumulative_count()))
                    .collect();
                let count = hist.get_sample_count();
                (
                    name.to_string(),
                    HistogramSummary {
                        count,
                        sum_seconds: hist.get_sample_sum(),
                        p50_seconds: quantile(0.5, &buckets, count),
                        p99_seconds: quantile(0.99, &buckets, count),
                    },
                )
            })
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

/// The `q` quantile of a histogram with cumulative `buckets` (upper bound, count) and `count`
/// observations, interpolated linearly within the bucket it falls in (Prometheus'
/// `histogram_quantile`); above the last finite bound it is that bound. `None` when empty.
pub fn quantile(q: f64, buckets: &[(f64, u64)], count: u64) -> Option<f64> {
    if count == 0 || buckets.is_empty() {
        return None;
    }
    let rank = q.clamp(0.0, 1.0) * count as f64;
    let mut lower = (0.0, 0u64);
    for &(upper, cumulative) in buckets {
        if cumulative as f64 >= rank && cumulative > lower.1 {
            let within = (rank - lower.1 as f64) / (cumulative - lower.1) as f64;
            return Some(lower.0 + (upper - lower.0) * within.clamp(0.0, 1.0));
        }
        lower = (upper, cumulative);
    }
    // Beyond the last finite bucket (the +Inf one).
    Some(lower.0)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn quantiles_interpolate_within_buckets() {
        let b = [(0.1, 0), (0.2, 50), (0.4, 100)];
        assert_eq!(quantile(0.5, &b, 100), Some(0.2));
        assert_eq!(quantile(0.25, &b, 100), Some(0.15000000000000002));
        let q99 = quantile(0.99, &b, 100).unwrap();
        assert!((q99 - 0.396).abs() < 1e-9, "{q99}");
        assert_eq!(quantile(0.5, &b, 0), None);
        // Observations past the last bound report that bound.
        assert_eq!(quantile(0.99, &[(0.1, 1)], 10), Some(0.1));
    }

    #[test]
    fn histograms_render_and_summarise() {
        let m = Metrics::new("0.1.0", "abc").unwrap();
        let empty = &m.histograms()[h::DM_ACK_LATENCY];
        assert_eq!((empty.count, empty.p50_seconds), (0, None));
        for ms in [1.0, 2.0, 3.0, 40.0] {
            m.observe(h::DM_ACK_LATENCY, ms / 1000.0);
        }
        let s = &m.histograms()[h::DM_ACK_LATENCY];
        assert_eq!(s.count, 4);
        assert!((s.sum_seconds - 0.046).abs() < 1e-9);
        let p50 = s.p50_seconds.unwrap();
        assert!((0.001..=0.0025).contains(&p50), "{p50}");
        assert!(s.p99_seconds.unwrap() > 0.025);
        let text = m.render();
        assert!(text.contains("soak_node_dm_ack_latency_seconds_bucket{le=\"0.001\"} 1"));
        assert!(text.contains("soak_node_dm_ack_latency_seconds_count 4"));
        assert!(text.contains("soak_node_gossip_delivery_latency_seconds_count 0"));
    }

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
        #[cfg(target_os = "linux")]
        for name in soak_api::gauges::PROCESS {
            assert!(
                text.contains(&format!("\n{name} ")),
                "{name} missing:\n{text}"
            );
        }
        assert_eq!(m.counter(c::DM_SENT), 1);
    }
}
