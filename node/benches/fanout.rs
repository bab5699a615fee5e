//! Benchmark (not a test): process-level pub/sub fanout latency on loopback. Six `soak-node`
//! processes form a mesh and subscribe to one topic; one of them publishes through the admin
//! API, and every delivery's latency is `received_at_ms − published_at_ms` (one host, one
//! clock; both stamps are whole milliseconds, so single samples carry ±1 ms). Reference
//! measured in the same run: the node's DM round trip (`elapsed_us` of `POST /v1/dm`, API to
//! ACK) between the same two processes.
//!
//! `cargo bench -p soak-node --bench fanout` (`FANOUT_MSGS=N` changes the message count).
//! Phases: `paced` (100 msg/s, one publisher request at a time) and `burst` (8 concurrent
//! publish requests, as fast as the API takes them). Target (docs/PERFORMANCE.md): paced
//! last-subscriber p99 ≤ 10 × DM RTT p99.

#[path = "../tests/common/mod.rs"]
mod common;

use std::collections::{BTreeMap, BTreeSet};
use std::time::{Duration, Instant};

use base64::Engine;
use common::{NodeProc, eventually, spawn_with_env};
use futures::StreamExt;
use soak_api::{DmOutcome, PublishResponse, ReceivedPage};

const TOPIC: &str = "bench";
const NODES: usize = 6;
const PAYLOAD: usize = 256;

fn pct(sorted: &[f64], p: f64) -> f64 {
    if sorted.is_empty() {
        return f64::NAN;
    }
    let idx = ((sorted.len() as f64 - 1.0) * p).round() as usize;
    sorted[idx.min(sorted.len() - 1)]
}

async fn publish(n: &NodeProc, body: String) -> String {
    let r = n
        .post_raw(&format!("/v1/topics/{TOPIC}/publish"), body)
        .await;
    assert_eq!(r.status(), 200, "publish");
    r.json::<PublishResponse>().await.expect("json").msg_id
}

fn body(i: usize) -> String {
    let mut payload = format!("{i}:").into_bytes();
    payload.resize(PAYLOAD, b'p');
    serde_json::json!({
        "payload_b64": base64::engine::general_purpose::STANDARD.encode(payload)
    })
    .to_string()
}

/// Latency (ms) of every delivery of `ids` at every node; waits until all arrived.
async fn collect(nodes: &[NodeProc], ids: &BTreeSet<String>) -> BTreeMap<String, Vec<f64>> {
    let mut per_msg: BTreeMap<String, Vec<f64>> = BTreeMap::new();
    for n in nodes {
        let mut seen = BTreeSet::new();
        let mut after = 0;
        let deadline = Instant::now() + Duration::from_secs(30);
        while seen.len() < ids.len() {
            assert!(Instant::now() < deadline, "deliveries missing");
            let page: ReceivedPage = n
                .get_json(&format!(
                    "/v1/topics/{TOPIC}/received?after={after}&limit=1000"
                ))
                .await;
            if page.items.is_empty() {
                tokio::time::sleep(Duration::from_millis(20)).await;
                continue;
            }
            after = page.next;
            for it in page.items {
                if ids.contains(&it.msg_id) && it.hops > 0 && seen.insert(it.msg_id.clone()) {
                    let ms = it.received_at_ms.saturating_sub(it.published_at_ms) as f64;
                    per_msg.entry(it.msg_id).or_default().push(ms);
                }
            }
            if n.info.peer_id == nodes[0].info.peer_id {
                break; // the publisher delivers its own messages with hops 0
            }
        }
    }
    per_msg
}

fn report(phase: &str, per_msg: &BTreeMap<String, Vec<f64>>, rtt99_ms: f64) -> (f64, f64) {
    let mut all: Vec<f64> = per_msg.values().flatten().copied().collect();
    let mut last: Vec<f64> = per_msg
        .values()
        .map(|v| v.iter().copied().fold(0.0, f64::max))
        .collect();
    all.sort_by(f64::total_cmp);
    last.sort_by(f64::total_cmp);
    let mean = all.iter().sum::<f64>() / all.len().max(1) as f64;
    println!(
        "fanout[{phase}]: {} msgs × {} receivers: delivery p50 {:.0} ms p99 {:.0} ms mean {mean:.2} ms max {:.0} ms; last receiver p50 {:.0} ms p99 {:.0} ms ({:.1} × DM RTT p99)",
        per_msg.len(),
        NODES - 1,
        pct(&all, 0.5),
        pct(&all, 0.99),
        pct(&all, 1.0),
        pct(&last, 0.5),
        pct(&last, 0.99),
        pct(&last, 0.99) / rtt99_ms.max(1e-9),
    );
    (pct(&last, 0.5), pct(&last, 0.99))
}

fn main() {
    let _ = rustls::crypto::ring::default_provider().install_default();
    let msgs: usize = std::env::var("FANOUT_MSGS")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(500);
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .expect("runtime");
    rt.block_on(async {
        let dir = tempfile::tempdir().expect("tempdir");
        // Info logging, as deployed (the test helpers default to debug).
        let env = [("SOAK_NODE_LOG", "info")];
        let first = spawn_with_env(&dir.path().join("n0"), &[], &env).await;
        let boot = first.info.quic_addr.clone();
        let mut nodes = vec![first];
        for i in 1..NODES {
            let d = dir.path().join(format!("n{i}"));
            nodes.push(spawn_with_env(&d, &["--bootstrap", &boot], &env).await);
        }
        for n in &nodes {
            let known = eventually(Duration::from_secs(10), || async {
                n.diagnostics().await.peers.len() >= NODES - 1
            })
            .await;
            assert!(known, "mesh did not form");
        }
        for n in &nodes {
            let r = n
                .post_raw(&format!("/v1/topics/{TOPIC}/subscribe"), "{}")
                .await;
            assert_eq!(r.status(), 200);
        }
        for n in &nodes {
            let joined = eventually(Duration::from_secs(10), || async {
                n.diagnostics()
                    .await
                    .topics
                    .iter()
                    .any(|t| t.topic == TOPIC && !(t.eager.is_empty() && t.lazy.is_empty()))
            })
            .await;
            assert!(joined, "topic mesh did not form");
        }
        let publisher = &nodes[0];

        // Reference: DM round trips publisher → last node, measured by the node.
        let to = nodes[NODES - 1].info.peer_id.clone();
        let mut rtt = Vec::new();
        for i in 0..300 {
            let r = publisher.dm(&to, format!("{i}").as_bytes(), None).await;
            assert_eq!(r.outcome, DmOutcome::Acked);
            if i >= 50 {
                rtt.push(r.elapsed_us as f64 / 1000.0);
            }
        }
        rtt.sort_by(f64::total_cmp);
        let (rtt50, rtt99) = (pct(&rtt, 0.5), pct(&rtt, 0.99));
        println!("reference: DM RTT (node, API→ACK) p50 {rtt50:.3} ms p99 {rtt99:.3} ms");

        // Warm-up: the first messages flood a fresh tree and prune it.
        let mut warm = BTreeSet::new();
        for i in 0..50 {
            warm.insert(publish(publisher, body(i)).await);
        }
        collect(&nodes, &warm).await;

        // Paced: one publish every 10 ms.
        let mut ids = BTreeSet::new();
        let mut tick = tokio::time::interval(Duration::from_millis(10));
        for i in 0..msgs {
            tick.tick().await;
            ids.insert(publish(publisher, body(i)).await);
        }
        let paced = collect(&nodes, &ids).await;
        let (p50, p99) = report("paced 100/s", &paced, rtt99);

        // Burst: 8 publish requests in flight.
        let started = Instant::now();
        let ids: BTreeSet<String> = futures::stream::iter(0..msgs)
            .map(|i| publish(publisher, body(i)))
            .buffer_unordered(8)
            .collect()
            .await;
        let rate = msgs as f64 / started.elapsed().as_secs_f64();
        let burst = collect(&nodes, &ids).await;
        report(&format!("burst {rate:.0}/s"), &burst, rtt99);

        let mut dup = 0;
        let mut rmr_sends = 0;
        for n in &nodes {
            let d = n.diagnostics().await;
            dup += d.counters[soak_api::counters::GOSSIP_DUPLICATES];
            rmr_sends += d.counters["gossip_eager_sent_total"]
                + d.counters["gossip_repair_sent_total"]
                + d.counters["gossip_ae_payload_sent_total"]
            + d.counters["gossip_detour_sent_total"];
        }
        let deliveries = ((2 * msgs + 50) * (NODES - 1)) as f64;
        println!(
            "redundancy: {rmr_sends} payload sends for {deliveries} deliveries (RMR {:.3}), {dup} duplicates",
            rmr_sends as f64 / deliveries - 1.0
        );
        let target = 10.0;
        let ratio = p99 / rtt99.max(1e-9);
        println!(
            "target: paced last-receiver p99 ≤ {target} × DM RTT p99: {p99:.0} ms vs {rtt99:.3} ms → {ratio:.1} × ({}); p50 {p50:.0} ms",
            if ratio <= target { "met" } else { "NOT met" }
        );
    });
}
