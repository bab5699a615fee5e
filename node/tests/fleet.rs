//! Six real nodes, every ordered pair DMed concurrently right after the fleet converges:
//! simultaneous on-demand dials and connection tie-breaks must not lose or duplicate messages.

mod common;

use std::time::{Duration, Instant};

use common::{NodeProc, eventually, spawn};
use futures::future::join_all;
use soak_api::DmOutcome;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn six_nodes_all_pairs_concurrently_acked_exactly_once() {
    all_pairs(&[]).await;
}

/// With an active view of one, most pairs are not connected: every such DM dials on demand,
/// and i->j and j->i dial each other at the same moment (simultaneous-dial tie-break).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn six_nodes_all_pairs_through_on_demand_simultaneous_dials() {
    let before = all_pairs(&["--active-view", "1"]).await;
    assert!(
        before < 6 * 5 / 2,
        "expected most pairs unconnected before the DMs, {before} connections"
    );
}

/// Returns how many connections existed (summed over nodes / 2) just before the DMs.
async fn all_pairs(extra: &[&str]) -> usize {
    const N: usize = 6;
    let dir = tempfile::tempdir().unwrap();
    let mut common_args = vec!["--ack-timeout-ms", "10000"];
    common_args.extend_from_slice(extra);
    let first = spawn(&dir.path().join("n0"), &common_args).await;
    let boot = first.info.quic_addr.clone();
    let mut nodes: Vec<NodeProc> = vec![first];
    for i in 1..N {
        let mut args = vec!["--bootstrap", boot.as_str()];
        args.extend_from_slice(&common_args);
        nodes.push(spawn(&dir.path().join(format!("n{i}")), &args).await);
    }
    let start = Instant::now();
    for n in &nodes {
        assert!(eventually(Duration::from_secs(5), || n.ready()).await);
        let ok = eventually(Duration::from_secs(10), || async {
            n.diagnostics().await.peers.len() == N - 1
        })
        .await;
        assert!(
            ok,
            "{} knows {:?}",
            n.info.peer_id,
            n.diagnostics().await.peers
        );
    }
    eprintln!("fleet converged after {:?}", start.elapsed());
    let mut established = 0;
    for n in &nodes {
        established += n.diagnostics().await.gauges[soak_api::gauges::PEERS_ESTABLISHED] as usize;
    }

    let mut calls = Vec::new();
    for (i, from) in nodes.iter().enumerate() {
        for (j, to) in nodes.iter().enumerate() {
            if i != j {
                let rid = format!("{i:02x}{j:02x}{}", "00".repeat(14));
                calls.push(async move {
                    let r = from.dm(&to.info.peer_id, b"phase-a", Some(&rid)).await;
                    (i, j, rid, r)
                });
            }
        }
    }
    let results = join_all(calls).await;
    for (i, j, _, r) in &results {
        assert_eq!(r.outcome, DmOutcome::Acked, "{i}->{j}: {r:?}");
        // The ACK timeout is 10 s here: a retry means a lost frame (e.g. an ACK sent on a
        // connection that lost the tie-break), not a slow machine.
        assert_eq!(r.attempts, 1, "{i}->{j} needed a retry: {r:?}");
    }
    for (j, to) in nodes.iter().enumerate() {
        let inbox = to.inbox_all().await;
        assert_eq!(inbox.items.len(), N - 1, "node {j} inbox");
        for (i, from) in nodes.iter().enumerate() {
            if i != j {
                let rid = format!("{i:02x}{j:02x}{}", "00".repeat(14));
                let n = inbox
                    .items
                    .iter()
                    .filter(|it| it.request_id == rid && it.from == from.info.peer_id)
                    .count();
                assert_eq!(n, 1, "{i}->{j}");
            }
        }
    }
    let mut replaced = 0;
    for n in &nodes {
        replaced += n.counter(soak_api::counters::CONNECTIONS_REPLACED).await;
    }
    eprintln!("connections replaced by tie-breaks: {replaced}");
    let retries: u32 = results.iter().map(|(_, _, _, r)| r.attempts - 1).sum();
    eprintln!(
        "{} DMs, {retries} retries, {} connections before",
        results.len(),
        established / 2
    );
    established / 2
}
