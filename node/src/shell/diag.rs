//! The `/v1/diagnostics` snapshot: refreshes every mirrored counter and gauge of the registry
//! from the engine and the shell, then reads the registry, so `/metrics` and diagnostics agree.

use std::sync::atomic::Ordering;
use std::time::Instant;

use soak_api::{API_VERSION, Diagnostics, PeerTransport, counters as c, gauges as g};

use super::actor::Actor;
use super::{VERSION, unix_ms};
use crate::metrics::extra_gauges;
use soak_proto::bans::Subject;

impl Actor {
    pub(super) fn diagnostics(&self) -> Diagnostics {
        let shared = &self.ctx.shared;
        let m = &shared.metrics;
        let now = Instant::now();
        m.raise_to(
            c::INVALID_DATAGRAMS,
            shared.invalid_datagrams.load(Ordering::Relaxed),
        );
        let (dropped, delayed) = shared.impair.effect_counts();
        m.raise_to(c::IMPAIRMENT_DROPPED, dropped);
        m.raise_to(c::IMPAIRMENT_DELAYED, delayed);
        let core = self.engine.core();
        let k = core.counts(now);
        let e = self.engine.counts();
        let views = core.peer_views(now);
        let outbound_max = self
            .conns
            .values()
            .map(|e| e.out.max_capacity() - e.out.capacity())
            .max()
            .unwrap_or(0);
        let pump_depth = self.ctx.pump_tx.max_capacity() - self.ctx.pump_tx.capacity();
        let impairments = shared.impair.list(now);
        let snapshots = self.engine.snapshots(now);
        for (name, v) in self.engine.gossip_counters() {
            m.raise_to(name, v);
        }
        for (name, v) in core.transient_stats().named() {
            m.raise_to(name, v);
        }
        for (name, v) in [
            (g::PEERS_ESTABLISHED, k.established),
            (g::PEERS_PENDING, k.pending),
            (extra_gauges::PENDING_INBOUND, k.pending_inbound),
            (extra_gauges::PENDING_OUTBOUND, k.pending_outbound),
            (extra_gauges::PEERS_INBOUND, k.inbound),
            (extra_gauges::BANS_ACTIVE, k.bans),
            (g::ACTIVE_VIEW, k.active),
            (g::PASSIVE_VIEW, k.passive),
            (g::RECV_PUMP_DEPTH, pump_depth),
            (
                g::RECV_PUMP_MAX_DEPTH,
                shared.pump_max_depth.load(Ordering::Relaxed),
            ),
            (g::INBOX_DEPTH, k.inbox),
            (g::OUTBOUND_QUEUE_MAX_DEPTH, outbound_max),
            (
                g::DISPATCHER_WORKER_TARGET,
                shared.worker_target.load(Ordering::Relaxed),
            ),
            (
                g::DISPATCHER_INFLIGHT,
                shared.dispatcher_inflight.load(Ordering::Relaxed),
            ),
            (
                g::SUPPRESSED_TOPIC_PEERS,
                snapshots.iter().map(|s| s.suppressed.len()).sum(),
            ),
            (
                g::KNOWN_TOPIC_PEERS,
                snapshots.iter().map(|s| s.known_peers).sum(),
            ),
            (extra_gauges::TOPICS, e.topics),
            (extra_gauges::TOPIC_BUFFERED, e.buffered),
            (extra_gauges::GOSSIP_PENDING, e.held),
            (extra_gauges::STALLED_TOPICS, shared.stalls.list(now).len()),
            (extra_gauges::DM_PENDING, k.pending_dms),
            (extra_gauges::KNOWN_PEERS, views.len()),
            (extra_gauges::DEDUPE_ENTRIES, k.dedupe),
            (extra_gauges::IMPAIRMENTS, impairments.len()),
        ] {
            m.set(name, v as f64);
        }
        let peers = views
            .into_iter()
            .map(|v| {
                let path_rtt_us = v
                    .conn
                    .and_then(|id| self.conns.get(&id))
                    .map(|e| e.connection.rtt().as_micros() as u64);
                let loss = v.conn.and_then(|id| self.conns.get(&id)).map_or(0.0, |e| {
                    let s = e.connection.stats();
                    if s.path.sent_packets == 0 {
                        0.0
                    } else {
                        s.path.lost_packets as f64 / s.path.sent_packets as f64
                    }
                });
                PeerTransport {
                    peer_id: v.peer.to_string(),
                    addr: v.addr.map_or_else(String::new, |a| a.to_string()),
                    state: v.state,
                    direction: v.direction,
                    active: v.active,
                    rtt_us: v.rtt.map(|d| d.as_micros() as u64),
                    path_rtt_us,
                    loss,
                    idle_ms: v.idle.map_or(0, |d| d.as_millis() as u64),
                    failed_attempts: v.failed_attempts,
                }
            })
            .collect();
        let mut gauges = m.gauges();
        gauges.extend(
            crate::procstats::sample()
                .into_iter()
                .map(|(k, v)| (k.to_string(), v)),
        );
        Diagnostics {
            api_version: API_VERSION,
            identity: shared.identity.clone(),
            version: VERSION.to_string(),
            taken_at_ms: unix_ms(),
            uptime_ms: shared.started.elapsed().as_millis() as u64,
            counters: m.counters(),
            gauges,
            peers,
            topics: snapshots
                .iter()
                .map(|s| s.to_api(|p| p.id.to_string()))
                .collect(),
            impairments,
            bans: core.bans(now).iter().map(|b| api_ban(b, now)).collect(),
            histograms: m.histograms(),
        }
    }
}

/// A ban as the API shows it.
pub(super) fn api_ban(b: &soak_proto::bans::Ban, now: Instant) -> soak_api::Ban {
    let (peer_id, addr) = match b.subject {
        Subject::Peer(p) => (Some(p.to_string()), b.addr.map(|a| a.to_string())),
        Subject::Addr(a) => (None, Some(a.to_string())),
    };
    soak_api::Ban {
        peer_id,
        addr,
        reason: b.last.to_string(),
        failures: b.failures,
        remaining_ms: b.until.saturating_duration_since(now).as_millis() as u64,
    }
}
