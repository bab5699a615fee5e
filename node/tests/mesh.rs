//! Three real `soak-node` processes on loopback: readiness, every ordered pair's DM acked and
//! stored exactly once, duplicate-safe retry, conflicting retry, self-DM, and the /metrics
//! contract.

mod common;

use std::collections::BTreeMap;
use std::time::{Duration, Instant};

use common::{NodeProc, eventually, spawn};
use soak_api::{DmOutcome, DmPath, PeerState, counters as c};

async fn mesh3(dir: &std::path::Path) -> Vec<NodeProc> {
    let start = Instant::now();
    let a = spawn(&dir.join("a"), &[]).await;
    let boot = a.info.quic_addr.clone();
    let b = spawn(&dir.join("b"), &["--bootstrap", &boot]).await;
    let c = spawn(&dir.join("c"), &["--bootstrap", &boot]).await;
    let nodes = vec![a, b, c];
    for n in &nodes {
        assert!(
            eventually(
                Duration::from_secs(5).saturating_sub(start.elapsed()),
                || n.ready()
            )
            .await,
            "node {} not ready within 5 s of spawning the mesh",
            n.info.peer_id
        );
    }
    eprintln!("3 nodes ready after {:?}", start.elapsed());
    // Wait (polling) until every node knows every other one.
    for n in &nodes {
        let others: Vec<String> = nodes
            .iter()
            .filter(|m| m.info.peer_id != n.info.peer_id)
            .map(|m| m.info.peer_id.clone())
            .collect();
        let known = eventually(Duration::from_secs(5), || async {
            let d = n.diagnostics().await;
            others
                .iter()
                .all(|o| d.peers.iter().any(|p| &p.peer_id == o))
        })
        .await;
        assert!(known, "{} did not learn every peer", n.info.peer_id);
    }
    nodes
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn three_nodes_every_ordered_pair_dm_is_acked_and_delivered_once() {
    let dir = tempfile::tempdir().unwrap();
    let nodes = mesh3(dir.path()).await;

    // Every ordered pair, unique request ids.
    let mut sent: BTreeMap<(usize, usize), String> = BTreeMap::new();
    for (i, from) in nodes.iter().enumerate() {
        for (j, to) in nodes.iter().enumerate() {
            if i == j {
                continue;
            }
            let rid = format!("{:02x}{:02x}{}", i, j, "ab".repeat(14));
            let r = from
                .dm(&to.info.peer_id, format!("{i}->{j}").as_bytes(), Some(&rid))
                .await;
            assert_eq!(r.outcome, DmOutcome::Acked, "{i}->{j}: {r:?}");
            assert_eq!(r.path, DmPath::Direct);
            assert_eq!(r.request_id, rid);
            sent.insert((i, j), rid);
        }
    }
    // Each receiver holds each sender's DM exactly once.
    for (j, to) in nodes.iter().enumerate() {
        let inbox = to.inbox_all().await;
        for (i, from) in nodes.iter().enumerate() {
            if i == j {
                continue;
            }
            let rid = &sent[&(i, j)];
            let n = inbox
                .items
                .iter()
                .filter(|it| &it.request_id == rid && it.from == from.info.peer_id)
                .count();
            assert_eq!(n, 1, "{i}->{j} appears {n} times in the inbox");
        }
        assert_eq!(inbox.items.len(), nodes.len() - 1);
        let seqs: Vec<u64> = inbox.items.iter().map(|i| i.seq).collect();
        assert!(seqs.windows(2).all(|w| w[0] < w[1]), "seq not increasing");
    }

    // A retry with the same request id and payload is acked and not delivered twice.
    let (a, b) = (&nodes[0], &nodes[1]);
    let rid = &sent[&(0, 1)];
    let r = a.dm(&b.info.peer_id, b"0->1", Some(rid)).await;
    assert_eq!(r.outcome, DmOutcome::Acked, "{r:?}");
    let inbox = b.inbox_all().await;
    assert_eq!(
        inbox.items.iter().filter(|i| &i.request_id == rid).count(),
        1
    );
    assert_eq!(b.counter(c::DM_DUPLICATES).await, 1);

    // Same id with a different payload is rejected and counted.
    let r = a.dm(&b.info.peer_id, b"something else", Some(rid)).await;
    assert_eq!(r.outcome, DmOutcome::Rejected, "{r:?}");
    assert!(r.error.is_some());
    assert_eq!(b.counter(c::DM_CONFLICTS).await, 1);
    assert_eq!(b.inbox_all().await.items.len(), 2);

    // Self-DM short-circuits to local delivery.
    let r = a.dm(&a.info.peer_id, b"me", None).await;
    assert_eq!((r.outcome, r.path), (DmOutcome::Acked, DmPath::Loopback));
    let inbox = a.inbox_all().await;
    assert_eq!(
        inbox
            .items
            .iter()
            .filter(|i| i.request_id == r.request_id && i.from == a.info.peer_id)
            .count(),
        1
    );

    // Counters tell the same story.
    let d = a.diagnostics().await;
    assert_eq!(d.counters[c::DM_SENT], 2 + 2 + 1);
    assert_eq!(d.counters[c::DM_ACKED], 2 + 1 + 1);
    for p in &d.peers {
        assert_eq!(p.state, PeerState::Established, "{p:?}");
    }
    // Inbox paging continues from `next`.
    let page: soak_api::InboxPage = b.get_json("/v1/dm/inbox?after=0&limit=1").await;
    assert_eq!(page.items.len(), 1);
    let rest: soak_api::InboxPage = b
        .get_json(&format!("/v1/dm/inbox?after={}&limit=10", page.next))
        .await;
    assert_eq!(rest.items.len(), 1);
    assert!(rest.items[0].seq > page.items[0].seq);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn metrics_parse_and_contain_every_diagnostics_counter() {
    let dir = tempfile::tempdir().unwrap();
    let a = spawn(&dir.path().join("a"), &[]).await;
    let b = spawn(&dir.path().join("b"), &["--bootstrap", &a.info.quic_addr]).await;
    assert!(eventually(Duration::from_secs(5), || b.ready()).await);
    let r = a.dm(&b.info.peer_id, b"x", None).await;
    assert_eq!(r.outcome, DmOutcome::Acked);

    for node in [&a, &b] {
        let diag = node.diagnostics().await;
        let resp = node.get("/metrics").await;
        assert_eq!(resp.status(), 200);
        let ctype = resp
            .headers()
            .get("content-type")
            .and_then(|v| v.to_str().ok())
            .unwrap_or_default()
            .to_string();
        assert!(ctype.starts_with("text/plain"), "{ctype}");
        let text = resp.text().await.unwrap();
        let scrape =
            prometheus_parse::Scrape::parse(text.lines().map(|l| Ok(l.to_string()))).unwrap();
        let mut values: BTreeMap<String, f64> = BTreeMap::new();
        for s in &scrape.samples {
            assert!(
                s.metric.starts_with("soak_node_") || s.metric.starts_with("process_"),
                "{}",
                s.metric
            );
            let v = match s.value {
                prometheus_parse::Value::Counter(v)
                | prometheus_parse::Value::Gauge(v)
                | prometheus_parse::Value::Untyped(v) => v,
                _ => continue,
            };
            values.insert(s.metric.clone(), v);
        }
        assert!(!diag.counters.is_empty());
        for (name, v) in &diag.counters {
            let metric = format!("soak_node_{name}");
            let got = values
                .get(&metric)
                .unwrap_or_else(|| panic!("{metric} missing from /metrics"));
            // /metrics is taken after the snapshot; counters are monotonic.
            assert!(*got >= *v as f64, "{metric}: {got} < {v}");
        }
        for name in diag.gauges.keys() {
            // The process set keeps its standard, unprefixed names.
            let metric = if name.starts_with("process_") {
                name.clone()
            } else {
                format!("soak_node_{name}")
            };
            assert!(
                values.contains_key(&metric),
                "{metric} missing from /metrics"
            );
        }
        for name in soak_api::gauges::PROCESS {
            assert!(
                diag.gauges.contains_key(name),
                "{name} missing from diagnostics"
            );
        }
        // The latency histograms parse as histograms; their bucket counts agree with the
        // summaries in diagnostics (a's DM to b was acked: one observation there).
        for name in [
            soak_api::histograms::DM_ACK_LATENCY,
            soak_api::histograms::GOSSIP_DELIVERY_LATENCY,
        ] {
            let metric = format!("soak_node_{name}");
            let buckets = scrape
                .samples
                .iter()
                .find_map(|s| match (&s.value, s.metric == metric) {
                    (prometheus_parse::Value::Histogram(b), true) => Some(b.clone()),
                    _ => None,
                })
                .unwrap_or_else(|| panic!("{metric} is not a histogram in /metrics"));
            let total = buckets
                .iter()
                .find(|b| b.less_than.is_infinite())
                .map_or(0.0, |b| b.count);
            let summary = &diag.histograms[name];
            assert!(
                total >= summary.count as f64,
                "{metric}: {total} < {summary:?}"
            );
        }
        if node.info.peer_id == a.info.peer_id {
            let acks = &diag.histograms[soak_api::histograms::DM_ACK_LATENCY];
            assert!(acks.count >= 1, "{acks:?}");
            assert!(
                acks.p50_seconds.is_some_and(|p| p > 0.0 && p < 5.0),
                "{acks:?}"
            );
        }
        let build = scrape
            .samples
            .iter()
            .find(|s| s.metric == "soak_node_build_info")
            .expect("build_info");
        assert_eq!(build.labels.get("version"), Some(env!("CARGO_PKG_VERSION")));
        assert!(build.labels.get("git").is_some());
        assert!(
            values["soak_node_dm_sent_total"]
                >= if node.info.peer_id == a.info.peer_id {
                    1.0
                } else {
                    0.0
                }
        );
    }
    // The version endpoint agrees with node.json.
    let v: soak_api::VersionInfo = a.get_json("/v1/version").await;
    assert_eq!(v.peer_id, a.info.peer_id);
    assert_eq!(v.api_version, soak_api::API_VERSION);
    assert_eq!(v.name, "soak-node");
}
