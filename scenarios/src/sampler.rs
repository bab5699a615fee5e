//! One round of the continuous sampler: ask every node for `/v1/diagnostics` concurrently,
//! each request bounded by the client timeout. A node that cannot be read yields a
//! [`SampleOutcome::Missing`] — an evidence gap the gates see — never a zero.

use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::time::Instant;

use soak_api::Diagnostics;
use soak_api::gauges::{KNOWN_TOPIC_PEERS, SUPPRESSED_TOPIC_PEERS};
use soak_gates::model::{Sample, SampleData, SampleOutcome};

use crate::api::NodeApi;

/// What one round produced.
#[derive(Debug, Clone, PartialEq)]
pub struct SampleRound {
    /// When the round started, unix milliseconds.
    pub at_ms: u64,
    /// Wall time of the round, milliseconds.
    pub took_ms: u64,
    /// One sample per node, in fleet order.
    pub samples: Vec<(String, Sample)>,
}

/// The parts of a diagnostics snapshot the gates use.
pub fn sample_data(diagnostics: Diagnostics) -> SampleData {
    sample_data_named(diagnostics, &HashMap::new())
}

/// The parts of a diagnostics snapshot the gates use, with the per-peer breakdown of the
/// suppression gauges (peers named by `names`, peer id → node name) whenever anything is
/// suppressed, so a bar can leave exempt links out.
pub fn sample_data_named(diagnostics: Diagnostics, names: &HashMap<String, String>) -> SampleData {
    let mut by_peer = BTreeMap::new();
    let suppressed_any = diagnostics.topics.iter().any(|t| !t.suppressed.is_empty());
    if suppressed_any {
        let name = |id: &str| names.get(id).cloned().unwrap_or_else(|| id.to_owned());
        let mut suppressed: BTreeMap<String, f64> = BTreeMap::new();
        let mut known: BTreeMap<String, f64> = BTreeMap::new();
        for topic in &diagnostics.topics {
            let mut peers: BTreeSet<&str> = BTreeSet::new();
            peers.extend(topic.eager.iter().map(String::as_str));
            peers.extend(topic.lazy.iter().map(String::as_str));
            peers.extend(topic.scores.iter().map(|s| s.peer_id.as_str()));
            peers.extend(topic.suppressed.iter().map(|s| s.peer_id.as_str()));
            for peer in peers {
                *known.entry(name(peer)).or_default() += 1.0;
            }
            for s in &topic.suppressed {
                *suppressed.entry(name(&s.peer_id)).or_default() += 1.0;
            }
        }
        by_peer.insert(SUPPRESSED_TOPIC_PEERS.to_owned(), suppressed);
        by_peer.insert(KNOWN_TOPIC_PEERS.to_owned(), known);
    }
    SampleData {
        by_peer,
        instance_id: diagnostics.identity.instance_id,
        counters: diagnostics.counters.into(),
        gauges: diagnostics.gauges.into(),
    }
}

/// Samples every node once, concurrently; `at_ms` is the time stamped on every sample (the
/// caller takes it just before, so window boundaries can share it exactly).
pub async fn sample_round<A: NodeApi>(nodes: &[A], at_ms: u64) -> SampleRound {
    let started = Instant::now();
    let results = futures::future::join_all(nodes.iter().map(|node| async move {
        let outcome = match node.diagnostics().await {
            Ok(diagnostics) if diagnostics.identity.peer_id != node.peer_id() => {
                SampleOutcome::Missing {
                    error: format!(
                        "diagnostics came from peer {} instead of {}",
                        diagnostics.identity.peer_id,
                        node.peer_id()
                    ),
                }
            }
            Ok(diagnostics) => SampleOutcome::Ok(sample_data(diagnostics)),
            Err(err) => SampleOutcome::Missing {
                error: err.to_string(),
            },
        };
        (node.name().to_owned(), Sample { at_ms, outcome })
    }))
    .await;
    SampleRound {
        at_ms,
        took_ms: u64::try_from(started.elapsed().as_millis()).unwrap_or(u64::MAX),
        samples: results,
    }
}

#[cfg(test)]
mod tests {
    use std::collections::BTreeMap;

    use soak_api::ProcessIdentity;

    use super::*;
    use crate::fake::{FakeMesh, Fault};

    /// The resource bars read the node's process gauges (`process_resident_memory_bytes`,
    /// `process_open_fds`, …): every diagnostics gauge reaches the sample, unfiltered.
    #[test]
    fn every_gauge_is_kept_including_process_metrics() {
        let gauges: BTreeMap<String, f64> = [
            ("process_resident_memory_bytes", 5.0e7),
            ("process_open_fds", 24.0),
            ("process_virtual_memory_bytes", 1.0e9),
            ("process_max_fds", 1024.0),
            ("process_threads", 9.0),
            ("process_cpu_seconds_total", 1.5),
            ("process_start_time_seconds", 1.7e9),
            ("recv_pump_depth", 0.0),
        ]
        .into_iter()
        .map(|(k, v)| (k.to_owned(), v))
        .collect();
        let data = sample_data(Diagnostics {
            api_version: soak_api::API_VERSION,
            identity: ProcessIdentity {
                instance_id: "i".into(),
                peer_id: "p".into(),
                pid: 1,
                started_at_ms: 0,
            },
            version: "v".into(),
            taken_at_ms: 0,
            uptime_ms: 0,
            counters: BTreeMap::new(),
            gauges: gauges.clone(),
            peers: Vec::new(),
            topics: Vec::new(),
            impairments: Vec::new(),
            bans: Vec::new(),
            histograms: Default::default(),
        });
        assert_eq!(data.gauges, gauges.into());
    }

    #[tokio::test]
    async fn unreachable_node_is_a_gap_never_zeros() {
        let mesh = FakeMesh::new(3);
        mesh.set_fault(1, Fault::Dead);
        let round = sample_round(&mesh.nodes(), 42).await;
        assert_eq!(round.samples.len(), 3);
        assert!(round.samples.iter().all(|(_, s)| s.at_ms == 42));
        assert!(matches!(round.samples[0].1.outcome, SampleOutcome::Ok(_)));
        match &round.samples[1].1.outcome {
            SampleOutcome::Missing { error } => assert!(error.contains("node-1"), "{error}"),
            other => panic!("expected a gap, got {other:?}"),
        }
    }
}
