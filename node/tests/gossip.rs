//! Pub/sub on real `soak-node` processes on loopback: the topic API, a 6-node fanout delivered
//! exactly once, a stalled subscriber cooled by its peers and recovered, and partition/heal
//! repaired by anti-entropy. Every child is killed by `NodeProc`'s Drop.

mod common;

use std::collections::{BTreeMap, BTreeSet};
use std::time::{Duration, Instant};

use base64::Engine;
use common::{NodeProc, eventually, spawn};
use soak_api::{PublishResponse, ReceivedItem, ReceivedPage, TopicDiagnostics, counters as c};

const TOPIC: &str = "news";

fn b64(bytes: &[u8]) -> String {
    base64::engine::general_purpose::STANDARD.encode(bytes)
}

async fn subscribe(n: &NodeProc, topic: &str) {
    let r = n
        .post_raw(&format!("/v1/topics/{topic}/subscribe"), "{}")
        .await;
    assert_eq!(
        r.status(),
        200,
        "subscribe {topic}: {}",
        r.text().await.unwrap()
    );
}

async fn publish(n: &NodeProc, topic: &str, payload: &[u8]) -> String {
    let body = serde_json::json!({ "payload_b64": b64(payload) }).to_string();
    let r = n
        .post_raw(&format!("/v1/topics/{topic}/publish"), body)
        .await;
    assert_eq!(r.status(), 200, "publish: {}", r.text().await.unwrap());
    r.json::<PublishResponse>().await.unwrap().msg_id
}

/// Every item currently in the node's subscriber buffer, paging from 0 (each further page's
/// `after` marks the items before it consumed, as an application's reads would).
async fn received(n: &NodeProc, topic: &str) -> Vec<ReceivedItem> {
    let mut out = Vec::new();
    let mut after = 0;
    loop {
        let page: ReceivedPage = n
            .get_json(&format!(
                "/v1/topics/{topic}/received?after={after}&limit=1000"
            ))
            .await;
        if page.items.is_empty() {
            return out;
        }
        after = page.next;
        out.extend(page.items);
    }
}

/// One page from 0: the buffer's content without consuming anything.
async fn peek(n: &NodeProc, topic: &str) -> Vec<ReceivedItem> {
    n.get_json::<ReceivedPage>(&format!("/v1/topics/{topic}/received?after=0&limit=1000"))
        .await
        .items
}

fn topic_diag<'a>(d: &'a soak_api::Diagnostics, topic: &str) -> Option<&'a TopicDiagnostics> {
    d.topics.iter().find(|t| t.topic == topic)
}

/// `n` nodes bootstrapping from the first, ready and knowing each other.
async fn mesh(dir: &std::path::Path, n: usize, extra: &[&str]) -> Vec<NodeProc> {
    let first = spawn(&dir.join("n0"), extra).await;
    let boot = first.info.quic_addr.clone();
    let mut nodes = vec![first];
    for i in 1..n {
        let mut args = vec!["--bootstrap", boot.as_str()];
        args.extend_from_slice(extra);
        nodes.push(spawn(&dir.join(format!("n{i}")), &args).await);
    }
    await_known(&nodes).await;
    nodes
}

async fn await_known(nodes: &[NodeProc]) {
    for n in nodes {
        assert!(
            eventually(Duration::from_secs(10), || n.ready()).await,
            "not ready"
        );
        let others: Vec<&str> = nodes
            .iter()
            .filter(|m| m.info.peer_id != n.info.peer_id)
            .map(|m| m.info.peer_id.as_str())
            .collect();
        let known = eventually(Duration::from_secs(10), || async {
            let d = n.diagnostics().await;
            others
                .iter()
                .all(|o| d.peers.iter().any(|p| p.peer_id == *o))
        })
        .await;
        assert!(known, "{} did not learn every peer", n.info.peer_id);
    }
}

/// Subscribe everyone, then wait until every node has a topic neighbor (eager or lazy) — the
/// same check the runner's fanout_burst uses.
async fn join_topic(nodes: &[NodeProc], topic: &str) {
    for n in nodes {
        subscribe(n, topic).await;
    }
    for n in nodes {
        let joined = eventually(Duration::from_secs(10), || async {
            let d = n.diagnostics().await;
            topic_diag(&d, topic).is_some_and(|t| !t.eager.is_empty() || !t.lazy.is_empty())
        })
        .await;
        assert!(joined, "{} has no topic neighbor", n.info.peer_id);
    }
}

/// Waits until `n` holds every id of `want`; returns what it holds.
async fn await_all(
    n: &NodeProc,
    topic: &str,
    want: &BTreeSet<String>,
    within: Duration,
) -> Vec<ReceivedItem> {
    let deadline = Instant::now() + within;
    loop {
        let items = received(n, topic).await;
        let have: BTreeSet<&String> = items.iter().map(|i| &i.msg_id).collect();
        if want.iter().all(|w| have.contains(w)) || Instant::now() > deadline {
            return items;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

fn assert_exactly_once(who: &str, items: &[ReceivedItem], want: &BTreeSet<String>) {
    let mut copies: BTreeMap<&str, usize> = BTreeMap::new();
    for i in items {
        *copies.entry(i.msg_id.as_str()).or_default() += 1;
    }
    let missing: Vec<&String> = want
        .iter()
        .filter(|w| !copies.contains_key(w.as_str()))
        .collect();
    let dups: Vec<(&&str, &usize)> = copies.iter().filter(|(_, n)| **n > 1).collect();
    assert!(
        missing.is_empty(),
        "{who} misses {} of {}: {:?}",
        missing.len(),
        want.len(),
        missing.iter().take(5).collect::<Vec<_>>()
    );
    assert!(dups.is_empty(), "{who} has duplicates: {dups:?}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn six_node_mesh_every_subscriber_receives_200_exactly_once() {
    let dir = tempfile::tempdir().unwrap();
    let nodes = mesh(dir.path(), 6, &[]).await;
    join_topic(&nodes, TOPIC).await;

    let publisher = &nodes[0];
    let mut ids = BTreeSet::new();
    for i in 0..200u32 {
        // Identical payloads on purpose: ids must still be unique per publish.
        let payload = if i % 2 == 0 {
            b"same".to_vec()
        } else {
            i.to_be_bytes().to_vec()
        };
        assert!(
            ids.insert(publish(publisher, TOPIC, &payload).await),
            "id reused"
        );
    }
    assert_eq!(ids.len(), 200);
    for (k, n) in nodes.iter().enumerate() {
        let items = await_all(n, TOPIC, &ids, Duration::from_secs(15)).await;
        assert_exactly_once(&format!("node {k}"), &items, &ids);
        assert_eq!(items.len(), 200, "node {k} holds other items");
        for i in &items {
            assert_eq!(i.origin, publisher.info.peer_id);
            if k == 0 {
                assert_eq!(i.hops, 0);
            } else {
                assert!(i.hops >= 1, "{i:?}");
            }
            assert!(
                i.received_at_ms >= i.published_at_ms.saturating_sub(5),
                "{i:?}"
            );
        }
        let seqs: Vec<u64> = items.iter().map(|i| i.seq).collect();
        assert!(seqs.windows(2).all(|w| w[0] < w[1]));
    }
    // Counters agree: every node delivered 200, the publisher published 200, and the mesh
    // used the tree (eager pushes) and lazy announcements.
    let (mut payloads, mut duplicates) = (0, 0);
    for (k, n) in nodes.iter().enumerate() {
        let d = n.diagnostics().await;
        assert_eq!(d.counters[c::GOSSIP_DELIVERED], 200, "node {k}");
        assert_eq!(d.counters[c::GOSSIP_SUBSCRIBER_DROPPED], 0, "node {k}");
        assert!(
            d.gauges[soak_api::gauges::KNOWN_TOPIC_PEERS] >= 1.0,
            "node {k}"
        );
        payloads += d.counters["gossip_eager_sent_total"]
            + d.counters["gossip_repair_sent_total"]
            + d.counters["gossip_ae_payload_sent_total"]
            + d.counters["gossip_detour_sent_total"];
        duplicates += d.counters[c::GOSSIP_DUPLICATES];
        // Every copy received from a peer is one delivery-latency observation (the
        // publisher's own 200 travelled no hop and are not).
        let latency = &d.histograms[soak_api::histograms::GOSSIP_DELIVERY_LATENCY];
        assert_eq!(latency.count, if k == 0 { 0 } else { 200 }, "node {k}");
        if k > 0 {
            assert!(latency.p99_seconds.is_some_and(|p| p < 30.0), "{latency:?}");
        }
        let t = topic_diag(&d, TOPIC).expect("topic diagnostics");
        assert!(!t.scores.is_empty(), "node {k}: no scores");
        assert!(
            t.scores
                .iter()
                .all(|s| s.components.contains_key("send_health"))
        );
    }
    assert_eq!(
        nodes[0].diagnostics().await.counters[c::GOSSIP_PUBLISHED],
        200
    );
    // Each of the 5 receivers got every message by some payload send; the copies beyond that
    // are the duplicates the receivers counted (and pruned).
    // (≥: a repair may still be in flight when the counters are read.)
    assert!(
        payloads >= 200 * 5 + duplicates,
        "payloads sent {payloads} < deliveries 1000 + duplicates {duplicates}"
    );
    eprintln!("payload sends {payloads}, duplicates {duplicates}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn topic_api_refuses_bad_input_with_json_errors() {
    let dir = tempfile::tempdir().unwrap();
    let a = spawn(&dir.path().join("a"), &["--max-payload-bytes", "1000"]).await;
    let code = |r: reqwest::Response| async move {
        let status = r.status().as_u16();
        let body: soak_api::ApiError = r.json().await.expect("ApiError body");
        (status, body.code)
    };
    // Not subscribed: 409 not_subscribed on publish, received, stall, unsubscribe.
    let pubreq = serde_json::json!({"payload_b64": b64(b"x")}).to_string();
    assert_eq!(
        code(a.post_raw("/v1/topics/t/publish", pubreq.clone()).await).await,
        (409, "not_subscribed".into())
    );
    assert_eq!(
        code(a.get("/v1/topics/t/received").await).await,
        (409, "not_subscribed".into())
    );
    assert_eq!(
        code(a.post_raw("/v1/topics/t/stall", r#"{"for_ms":10}"#).await).await,
        (409, "not_subscribed".into())
    );
    assert_eq!(
        code(a.post_raw("/v1/topics/t/unsubscribe", "").await).await,
        (409, "not_subscribed".into())
    );
    // Invalid topic name (control character, too long) and bodies: 400.
    let long = "x".repeat(300);
    assert_eq!(
        code(a.post_raw("/v1/topics/a%07b/subscribe", "").await)
            .await
            .0,
        400
    );
    assert_eq!(
        code(
            a.post_raw(&format!("/v1/topics/{long}/subscribe"), "")
                .await
        )
        .await
        .0,
        400
    );
    assert_eq!(
        code(a.post_raw("/v1/topics/t/subscribe", "[1]").await)
            .await
            .0,
        400
    );
    subscribe(&a, "t").await;
    // Subscribing twice is fine (not new).
    let r = a.post_raw("/v1/topics/t/subscribe", "").await;
    assert_eq!(r.status(), 200);
    assert_eq!(r.json::<serde_json::Value>().await.unwrap()["new"], false);
    assert_eq!(
        code(a.post_raw("/v1/topics/t/publish", "{").await).await,
        (400, "bad_request".into())
    );
    assert_eq!(
        code(
            a.post_raw("/v1/topics/t/publish", r#"{"payload_b64":"!!"}"#)
                .await
        )
        .await
        .0,
        400
    );
    let big = serde_json::json!({"payload_b64": b64(&[0u8; 1001])}).to_string();
    assert_eq!(
        code(a.post_raw("/v1/topics/t/publish", big).await).await,
        (413, "payload_too_large".into())
    );
    assert_eq!(
        code(a.get("/v1/topics/t/received?after=x").await).await.0,
        400
    );
    assert_eq!(
        code(
            a.post_raw("/v1/topics/t/stall", r#"{"for_ms":600000}"#)
                .await
        )
        .await
        .0,
        400
    );
    assert_eq!(
        code(a.post_raw("/v1/topics/t/stall", r#"{"for":1}"#).await)
            .await
            .0,
        400
    );
    // A lone subscriber still delivers its own publish (hops 0), and ids differ for the same
    // payload.
    let id1 = publish(&a, "t", b"p").await;
    let id2 = publish(&a, "t", b"p").await;
    assert_ne!(id1, id2);
    let items = received(&a, "t").await;
    assert_eq!(
        items.iter().map(|i| i.msg_id.clone()).collect::<Vec<_>>(),
        [id1, id2]
    );
    assert!(items.iter().all(|i| i.hops == 0 && i.size == 1));
    // Without the token: 401.
    let r = a
        .http
        .post(a.url("/v1/topics/t/publish"))
        .body(pubreq)
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 401);
    // Unsubscribe, then the topic is gone.
    let r = a.post_raw("/v1/topics/t/unsubscribe", "").await;
    assert_eq!(r.status(), 200);
    assert_eq!(code(a.get("/v1/topics/t/received").await).await.0, 409);
    let d = a.diagnostics().await;
    assert!(d.topics.is_empty());
    // build.rs stamps the revision (or `unknown` outside a checkout).
    let v: soak_api::VersionInfo = a.get_json("/v1/version").await;
    assert!(
        v.git == "unknown" || (v.git.len() >= 7 && v.git.chars().all(|c| c.is_ascii_hexdigit())),
        "{}",
        v.git
    );
    assert!(d.counters[c::API_BAD_REQUESTS] >= 9);
}

/// Peers of `victim` that list it as suppressed on `topic` right now, and whether any demoted
/// it (counted) — read from their diagnostics.
async fn cooling_of(nodes: &[&NodeProc], victim: &str, topic: &str) -> usize {
    let mut n = 0;
    for p in nodes {
        let d = p.diagnostics().await;
        if topic_diag(&d, topic).is_some_and(|t| t.suppressed.iter().any(|s| s.peer_id == victim)) {
            n += 1;
        }
    }
    n
}

async fn sum_counter(nodes: &[&NodeProc], name: &str) -> u64 {
    let mut total = 0;
    for n in nodes {
        total += n.counter(name).await;
    }
    total
}

/// The stalled subscriber: its delivery path for the topic blocks (`/stall`), so its dispatcher
/// workers hang on the topic's frames until the per-task timeout, its small receive queue fills
/// and its connection readers, pacing at the push deadline, drop frames
/// (`recv_pump_dropped_full_total` — the real drop mechanism here) and stop returning QUIC flow
/// control credit. The peers' outbound queues to it back up, frames miss their send deadline,
/// the peers report `Timeout` to their gossip cores, and the cores cool it (suppression with
/// backoff). The other subscribers are unaffected and receive everything. When the stall ends
/// the node drains, the suppressions lapse, and it receives again.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn stalled_subscriber_is_cooled_by_its_peers_and_recovered_after_it_drains() {
    let dir = tempfile::tempdir().unwrap();
    let mut nodes = mesh(dir.path(), 5, &[]).await;
    let boot = nodes[0].info.quic_addr.clone();
    // The slow consumer: a small receive queue (the simulator's slow nodes have 64) and a
    // small QUIC stream window, so backpressure reaches its peers within a burst.
    let slow = spawn(
        &dir.path().join("slow"),
        &[
            "--bootstrap",
            &boot,
            "--recv-queue",
            "32",
            "--stream-window-bytes",
            "16384",
        ],
    )
    .await;
    nodes.push(slow);
    await_known(&nodes).await;
    join_topic(&nodes, TOPIC).await;
    let (healthy, slow) = nodes.split_at(5);
    let slow = &slow[0];
    let victim = slow.info.peer_id.clone();
    let peers: Vec<&NodeProc> = healthy.iter().collect();
    // Slow must be somebody's topic neighbor for cooling to be observable.
    assert!(
        eventually(Duration::from_secs(5), || async {
            let mut any = false;
            for p in &peers {
                let d = p.diagnostics().await;
                any |= topic_diag(&d, TOPIC)
                    .is_some_and(|t| t.eager.contains(&victim) || t.lazy.contains(&victim));
            }
            any
        })
        .await,
        "nobody has the slow node as topic neighbor"
    );
    // Warm the tree up first: links start lazy, and a node that stalls before the first
    // message never grafts itself onto the tree (its peers only announce to it, nothing backs
    // up and there is nobody to cool). The case that matters is a node on the tree that turns
    // slow.
    let mut warm = BTreeSet::new();
    for _ in 0..5 {
        warm.insert(publish(&healthy[0], TOPIC, b"warm-up").await);
    }
    for (k, n) in nodes.iter().enumerate() {
        let items = await_all(n, TOPIC, &warm, Duration::from_secs(10)).await;
        assert_exactly_once(&format!("node {k} (warm-up)"), &items, &warm);
    }
    let before_drops = slow.counter(c::RECV_PUMP_DROPPED_FULL).await;
    let before_suppressions = sum_counter(&peers, c::GOSSIP_SUPPRESSIONS).await;

    let r = slow
        .post_raw(&format!("/v1/topics/{TOPIC}/stall"), r#"{"for_ms": 4000}"#)
        .await;
    assert_eq!(r.status(), 200);
    let stalled_at = Instant::now();

    let publisher = &healthy[0];
    let payload = vec![7u8; 4096];
    let mut burst = BTreeSet::new();
    for _ in 0..100 {
        burst.insert(publish(publisher, TOPIC, &payload).await);
    }
    eprintln!(
        "100 published {:?} after the stall began",
        stalled_at.elapsed()
    );
    // The healthy subscribers receive 100 % while the slow one is stalled.
    for (k, n) in healthy.iter().enumerate() {
        let items = await_all(n, TOPIC, &burst, Duration::from_secs(10)).await;
        assert_exactly_once(&format!("healthy node {k}"), &items, &burst);
    }
    eprintln!(
        "healthy nodes complete {:?} after the stall began",
        stalled_at.elapsed()
    );
    // Its peers cool it: a suppressed entry for it shows in some peer's diagnostics.
    let mut seen_cooled = false;
    let deadline = Instant::now() + Duration::from_secs(10);
    while Instant::now() < deadline {
        if cooling_of(&peers, &victim, TOPIC).await > 0 {
            seen_cooled = true;
            break;
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    let suppressions = sum_counter(&peers, c::GOSSIP_SUPPRESSIONS).await - before_suppressions;
    let timeouts = sum_counter(&peers, "gossip_send_timeouts_total").await;
    eprintln!("peers: suppressions {suppressions}, gossip send timeouts {timeouts}");
    assert!(seen_cooled, "no peer listed the stalled node as suppressed");
    assert!(suppressions >= 1);
    assert!(timeouts >= 1);
    // The stalled node's receive path dropped frames for real.
    let d = slow.diagnostics().await;
    let drops = d.counters[c::RECV_PUMP_DROPPED_FULL] - before_drops;
    eprintln!(
        "slow node: recv pump dropped {drops}, dispatcher timeouts {}, stalled frames {}, worker target {}",
        d.counters[c::DISPATCHER_TIMEOUTS],
        d.counters["gossip_stalled_frames_total"],
        d.gauges[soak_api::gauges::DISPATCHER_WORKER_TARGET],
    );
    assert!(drops > 0, "the stalled node dropped nothing");
    assert!(d.counters["gossip_stalled_frames_total"] > 0);

    // After the stall: the node drains, the suppressions lapse, the peers count recoveries.
    let recovered = eventually(Duration::from_secs(30), || async {
        stalled_at.elapsed() > Duration::from_secs(4)
            && cooling_of(&peers, &victim, TOPIC).await == 0
    })
    .await;
    assert!(recovered, "the stalled node is still suppressed");
    // A lapsed suppression leaves the diagnostics at once; the recovery is counted at the
    // peer's next maintenance tick (≤ 1 s later).
    let counted = eventually(Duration::from_secs(5), || async {
        sum_counter(&peers, "gossip_recoveries_total").await >= 1
    })
    .await;
    assert!(counted, "no peer counted a recovery");
    eprintln!(
        "no peer suppresses it {:?} after the stall began",
        stalled_at.elapsed()
    );
    // It receives again: a new burst reaches everyone, the recovered node included.
    let mut after = BTreeSet::new();
    for _ in 0..20 {
        after.insert(publish(publisher, TOPIC, b"after").await);
    }
    for (k, n) in nodes.iter().enumerate() {
        let items = await_all(n, TOPIC, &after, Duration::from_secs(15)).await;
        assert_exactly_once(&format!("node {k} after recovery"), &items, &after);
    }
    // And anti-entropy / repair brought it what it lost while stalled.
    let items = await_all(slow, TOPIC, &burst, Duration::from_secs(15)).await;
    assert_exactly_once("slow node (stalled burst)", &items, &burst);
}

/// Partition/heal at process level: one node is cut off with the node's own impairment API
/// (`partition`, expiring by itself). It runs with a 1 s QUIC idle timeout, so its connections
/// die during the partition and nothing sent then can arrive later by QUIC retransmission.
/// Messages published during the partition reach every connected node at once and the
/// partitioned node only after the heal — through anti-entropy (its
/// `gossip_ae_recovered_total` counts them).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn messages_published_during_a_partition_reach_the_cut_node_after_heal_via_anti_entropy() {
    let dir = tempfile::tempdir().unwrap();
    let mut nodes = mesh(dir.path(), 3, &[]).await;
    let boot = nodes[0].info.quic_addr.clone();
    let cut = spawn(
        &dir.path().join("cut"),
        &[
            "--bootstrap",
            &boot,
            "--idle-timeout-ms",
            "1000",
            "--keep-alive-ms",
            "250",
            "--auth-timeout-ms",
            "1000",
        ],
    )
    .await;
    nodes.push(cut);
    await_known(&nodes).await;
    join_topic(&nodes, TOPIC).await;
    let (connected, cut) = nodes.split_at(3);
    let cut = &cut[0];
    let publisher = &connected[0];

    let mut before = BTreeSet::new();
    for _ in 0..5 {
        before.insert(publish(publisher, TOPIC, b"before").await);
    }
    for n in &nodes {
        let items = await_all(n, TOPIC, &before, Duration::from_secs(10)).await;
        assert_exactly_once("before the partition", &items, &before);
    }
    let recovered_before = cut.counter("gossip_ae_recovered_total").await;

    let partition = soak_api::Impairment {
        id: None,
        peer: None,
        delay_ms: 0,
        jitter_ms: 0,
        loss: 0.0,
        partition: true,
        one_way: false,
        expires_in_ms: 4_000,
    };
    let r = cut
        .post_raw("/v1/impairments", serde_json::to_vec(&partition).unwrap())
        .await;
    assert_eq!(r.status(), 200);
    let cut_at = Instant::now();
    let mut during = BTreeSet::new();
    for i in 0..30u32 {
        during.insert(publish(publisher, TOPIC, &i.to_be_bytes()).await);
    }
    for (k, n) in connected.iter().enumerate() {
        let items = await_all(n, TOPIC, &during, Duration::from_secs(10)).await;
        assert_exactly_once(&format!("connected node {k}"), &items, &during);
    }
    // Still partitioned: the cut node has none of them.
    let held = received(cut, TOPIC).await;
    assert!(
        cut_at.elapsed() < Duration::from_millis(3_500),
        "publishing took too long to check the partition ({:?})",
        cut_at.elapsed()
    );
    assert!(
        held.iter().all(|i| !during.contains(&i.msg_id)),
        "a message crossed the partition"
    );

    // Heal (the impairment expires): anti-entropy brings every partition-time message.
    let items = await_all(cut, TOPIC, &during, Duration::from_secs(30)).await;
    assert_exactly_once("cut node after heal", &items, &during);
    let healed = cut_at.elapsed();
    let d = cut.diagnostics().await;
    assert!(d.impairments.is_empty(), "the partition did not expire");
    let via_ae = d.counters["gossip_ae_recovered_total"] - recovered_before;
    eprintln!(
        "cut node complete {healed:?} after the cut (partition 4 s); {via_ae} of 30 via anti-entropy"
    );
    assert_eq!(
        via_ae, 30,
        "partition-time messages not recovered by anti-entropy"
    );
    assert_eq!(items.len(), 35);
}

/// The subscriber buffer is bounded like the DM inbox: an application that does not drain
/// loses the newest deliveries (counted in `gossip_subscriber_dropped_total`), never items it
/// has not read yet; reading with `after = X` consumes up to X and frees room.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn undrained_subscriber_buffer_drops_new_deliveries_with_a_counter() {
    let dir = tempfile::tempdir().unwrap();
    let a = spawn(&dir.path().join("a"), &["--topic-buffer-capacity", "5"]).await;
    subscribe(&a, "t").await;
    let mut ids = Vec::new();
    for i in 0..8u8 {
        ids.push(publish(&a, "t", &[i]).await);
    }
    // A single page from 0 consumes nothing.
    let items = peek(&a, "t").await;
    assert_eq!(
        items.iter().map(|i| i.msg_id.clone()).collect::<Vec<_>>(),
        ids[..5],
        "the oldest five stay"
    );
    assert_eq!(a.counter(c::GOSSIP_SUBSCRIBER_DROPPED).await, 3);
    assert_eq!(a.counter(c::GOSSIP_DELIVERED).await, 8);
    // Consume two (after = 2), then two new deliveries fit.
    let page: ReceivedPage = a.get_json("/v1/topics/t/received?after=2&limit=1").await;
    assert_eq!(page.items[0].seq, 3);
    let x = publish(&a, "t", b"x").await;
    let y = publish(&a, "t", b"y").await;
    let _z = publish(&a, "t", b"z").await;
    let items = peek(&a, "t").await;
    let held: Vec<&str> = items.iter().map(|i| i.msg_id.as_str()).collect();
    assert_eq!(held, [&ids[2], &ids[3], &ids[4], &x, &y]);
    assert_eq!(a.counter(c::GOSSIP_SUBSCRIBER_DROPPED).await, 4);
    let d = a.diagnostics().await;
    assert_eq!(d.gauges["topic_buffered"], 5.0);
}

/// Who suppresses whom on `topic` right now: `(suppressing node index, suppressed peer id)`.
async fn suppression_pairs(nodes: &[NodeProc], topic: &str) -> Vec<(usize, String)> {
    let mut out = Vec::new();
    for (k, n) in nodes.iter().enumerate() {
        let d = n.diagnostics().await;
        if let Some(t) = topic_diag(&d, topic) {
            out.extend(t.suppressed.iter().map(|s| (k, s.peer_id.clone())));
        }
    }
    out
}

/// Issue 9's `high_rtt_peer` on real processes: one node's overlay datagrams are delayed by
/// 1500 ms ± 200 ms through its impairment API (what the nemesis posts) while a neighbor
/// publishes a trickle every 50 ms. The neighbors' QUIC path RTT to it rises far above their
/// other peers'; their gossip cores' slow-peer detector demotes and then suppresses it on
/// the topic (visible in `/v1/diagnostics` `topics[].suppressed`, the field the nemesis'
/// cooling monitor reads). Once the impairment is cleared its RTT falls and no neighbor
/// suppresses it within 60 s. No healthy node is ever suppressed by a healthy one.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_delayed_node_is_suppressed_by_its_neighbors_and_recovered_after_the_delay_is_cleared() {
    const COOL: &str = "cool-high-rtt";
    let dir = tempfile::tempdir().unwrap();
    let nodes = mesh(dir.path(), 5, &[]).await;
    join_topic(&nodes, COOL).await;
    let (slow_k, publisher_k) = (4, 0);
    let victim = nodes[slow_k].info.peer_id.clone();
    let mut warm = BTreeSet::new();
    for _ in 0..5 {
        warm.insert(publish(&nodes[publisher_k], COOL, b"warm-up").await);
    }
    for (k, n) in nodes.iter().enumerate() {
        let items = await_all(n, COOL, &warm, Duration::from_secs(10)).await;
        assert_exactly_once(&format!("node {k} (warm-up)"), &items, &warm);
    }

    // The trickle: 64 bytes every 50 ms from a neighbor, bounded in count (≤ 90 s).
    let trickle = {
        let p = &nodes[publisher_k];
        let (http, url, token) = (
            p.http.clone(),
            p.url(&format!("/v1/topics/{COOL}/publish")),
            p.token.clone(),
        );
        let body = serde_json::json!({ "payload_b64": b64(&[0u8; 64]) }).to_string();
        tokio::spawn(async move {
            let mut tick = tokio::time::interval(Duration::from_millis(50));
            for _ in 0..1_800 {
                tick.tick().await;
                let _ = http
                    .post(&url)
                    .bearer_auth(&token)
                    .body(body.clone())
                    .send()
                    .await;
            }
        })
    };
    // Abort the trickle however the test ends.
    struct AbortOnDrop(tokio::task::JoinHandle<()>);
    impl Drop for AbortOnDrop {
        fn drop(&mut self) {
            self.0.abort();
        }
    }
    let _trickle = AbortOnDrop(trickle);
    tokio::time::sleep(Duration::from_secs(2)).await;
    let pairs = suppression_pairs(&nodes, COOL).await;
    assert!(
        pairs.is_empty(),
        "suppressions on a healthy mesh: {pairs:?}"
    );

    // The fault: every overlay datagram the slow node sends is delayed 1500 ms ± 200 ms (both
    // directions of every exchange: its answers and acknowledgements come late). The expiry
    // is the lease: nothing outlives the test even if it fails before clearing.
    let delay = soak_api::Impairment {
        id: Some("high-rtt".into()),
        peer: None,
        delay_ms: 1_500,
        jitter_ms: 200,
        loss: 0.0,
        partition: false,
        one_way: false,
        expires_in_ms: 40_000,
    };
    let r = nodes[slow_k]
        .post_raw("/v1/impairments", serde_json::to_vec(&delay).unwrap())
        .await;
    assert_eq!(r.status(), 200, "{}", r.text().await.unwrap());
    let applied = Instant::now();

    // While it holds (≤ 20 s): some neighbor lists it as suppressed on the topic.
    let mut cooled = None;
    let mut false_positives = Vec::new();
    while applied.elapsed() < Duration::from_secs(20) {
        for (k, peer) in suppression_pairs(&nodes, COOL).await {
            if k != slow_k && peer == victim {
                cooled.get_or_insert((k, applied.elapsed()));
            } else if k != slow_k {
                false_positives.push((k, peer));
            }
        }
        if cooled.is_some() {
            break;
        }
        tokio::time::sleep(Duration::from_millis(500)).await;
    }
    let Some((by, after)) = cooled else {
        let d = nodes[publisher_k].diagnostics().await;
        panic!(
            "no neighbor suppressed the delayed node within 20 s; {}'s view: peers {:?} scores {:?}",
            publisher_k,
            d.peers
                .iter()
                .map(|p| (&p.peer_id[..8], p.path_rtt_us))
                .collect::<Vec<_>>(),
            topic_diag(&d, COOL).map(|t| &t.scores)
        );
    };
    // The evidence the detector acted on: the neighbor's path RTT to it, and its score.
    let d = nodes[by].diagnostics().await;
    let seen = d.peers.iter().find(|p| p.peer_id == victim);
    let path_rtt = seen.and_then(|p| p.path_rtt_us);
    eprintln!(
        "node {by}: ping RTT to it {:?} us, gossip send timeouts {}, broken promises {}",
        seen.and_then(|p| p.rtt_us),
        d.counters["gossip_send_timeouts_total"],
        d.counters["gossip_broken_promises_total"]
    );
    let score = topic_diag(&d, COOL)
        .and_then(|t| t.scores.iter().find(|s| s.peer_id == victim))
        .cloned();
    eprintln!(
        "node {by} suppressed the delayed node {after:?} after the delay was applied; path RTT \
         {path_rtt:?} us; score {score:?}"
    );
    assert!(
        path_rtt.is_some_and(|us| us >= 1_000_000),
        "path RTT {path_rtt:?}"
    );
    assert!(
        score.is_some_and(|s| s.components.get("slowness").is_some_and(|v| *v > 0.0)
            || s.components.get("slow") == Some(&1.0)),
        "suppressed for its latency"
    );
    assert!(
        d.counters["gossip_slow_verdicts_total"] > 0,
        "slow verdicts counted"
    );
    let cause = topic_diag(&d, COOL)
        .and_then(|t| t.suppressed.iter().find(|s| s.peer_id == victim))
        .and_then(|s| s.cause.clone());
    assert_eq!(cause.as_deref(), Some("latency"));
    // Cooled for latency, it is off the tree but still announced to: it pulls what is
    // published while it is cooled (late, through its own slow path).
    let mut cooled_msgs = BTreeSet::new();
    for _ in 0..5 {
        cooled_msgs.insert(publish(&nodes[publisher_k], COOL, b"while cooled").await);
    }
    let items = await_all(&nodes[slow_k], COOL, &cooled_msgs, Duration::from_secs(10)).await;
    let have: BTreeSet<&String> = items.iter().map(|i| &i.msg_id).collect();
    assert!(
        cooled_msgs.iter().all(|m| have.contains(m)),
        "the cooled node still gets the topic's messages"
    );

    // Revert, and check it clean.
    let r = nodes[slow_k]
        .http
        .delete(nodes[slow_k].url("/v1/impairments"))
        .bearer_auth(&nodes[slow_k].token)
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 200);
    assert!(nodes[slow_k].diagnostics().await.impairments.is_empty());
    let reverted = Instant::now();

    // Recovered: nobody suppresses it within 60 s (it stays so for 3 s of reads).
    let mut clear_since: Option<Instant> = None;
    let mut recovered = None;
    while reverted.elapsed() < Duration::from_secs(60) {
        let pairs = suppression_pairs(&nodes, COOL).await;
        false_positives.extend(
            pairs
                .iter()
                .filter(|(k, p)| *k != slow_k && *p != victim)
                .cloned(),
        );
        if pairs.iter().any(|(_, p)| *p == victim) {
            clear_since = None;
        } else {
            let since = *clear_since.get_or_insert_with(Instant::now);
            if since.elapsed() >= Duration::from_secs(3) {
                recovered = Some(since.duration_since(reverted));
                break;
            }
        }
        tokio::time::sleep(Duration::from_millis(500)).await;
    }
    eprintln!("no neighbor suppresses it {recovered:?} after the revert");
    assert!(
        recovered.is_some(),
        "still suppressed 60 s after the revert"
    );
    assert!(
        false_positives.is_empty(),
        "healthy nodes suppressed by healthy neighbors: {false_positives:?}"
    );
    // It receives the topic again.
    let mut again = BTreeSet::new();
    for _ in 0..5 {
        again.insert(publish(&nodes[publisher_k], COOL, b"after").await);
    }
    let items = await_all(&nodes[slow_k], COOL, &again, Duration::from_secs(15)).await;
    let have: BTreeSet<&String> = items.iter().map(|i| &i.msg_id).collect();
    assert!(
        again.iter().all(|m| have.contains(m)),
        "the recovered node receives again"
    );
}
