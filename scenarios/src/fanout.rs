//! `fanout_burst`: subscribe every node to a fresh topic, publish M messages of S bytes from one or
//! more publishers at a fixed rate, and collect from every subscriber its delivery ratio,
//! duplicates and publish-to-delivery latency (p50 / p99 / max).
//!
//! A node that answers 404 on the topic routes has no pub/sub: the scenario is recorded as
//! SKIPPED with that reason — never as a pass. Waiting is by polling with deadlines, never by a
//! fixed sleep.
//!
//! Every node that subscribed is unsubscribed from the burst's topic once the results are
//! collected, and also when the burst stops early: a node holds at most 256 topics and every
//! live topic keeps costing it anti-entropy and shuffles, so a soak of many windows must not
//! pile them up.

use std::collections::{HashMap, HashSet};
use std::time::Duration;

use base64::Engine;
use futures::StreamExt;
use futures::stream::FuturesUnordered;
use soak_api::{PageQuery, PublishRequest};
use soak_gates::model::{FanoutResult, ScenarioStatus, SubscriberResult};
use tokio::time::{Instant, MissedTickBehavior};

use crate::api::NodeApi;

/// Fanout burst settings.
#[derive(Debug, Clone, PartialEq)]
pub struct FanoutConfig {
    /// Messages published in total (over all publishers).
    pub messages: u64,
    /// Payload size, bytes.
    pub bytes: usize,
    /// Total publish rate, messages per second (> 0).
    pub rate_per_sec: f64,
    /// How long to wait for every subscriber to join the topic's mesh before publishing.
    pub join_timeout: Duration,
    /// How long to keep collecting after the last publish, and after each arrival: a
    /// subscriber is given up on once nothing new reached it for this long (a slow but
    /// progressing machine is waited for; a lost message is not), and at the latest
    /// [`COLLECT_CAP_FACTOR`] times this after the last publish.
    pub collect_timeout: Duration,
    /// Added to both the idle period and the cap of collection: the time a fault of the window
    /// adds to a delivery (`WindowCx::added_delay` per lazy hop); zero when healthy.
    pub delay_allowance: Duration,
    /// Poll period while waiting for joins and deliveries.
    pub poll: Duration,
}

impl Default for FanoutConfig {
    fn default() -> Self {
        FanoutConfig {
            messages: 50,
            bytes: 256,
            rate_per_sec: 200.0,
            join_timeout: Duration::from_secs(3),
            collect_timeout: Duration::from_secs(3),
            delay_allowance: Duration::ZERO,
            poll: Duration::from_millis(50),
        }
    }
}

/// What a burst produced: the record for the window (when anything was published) and the
/// scenario status.
#[derive(Debug, Clone, PartialEq)]
pub struct FanoutOutcome {
    /// Results, absent when the burst never published (skipped or failed early).
    pub result: Option<FanoutResult>,
    /// Completed, Skipped (no pub/sub) or Failed (with why).
    pub status: ScenarioStatus,
}

const RECEIVED_PAGE: usize = 1_000;

/// Collection never runs longer than this many `collect_timeout`s after the last publish.
pub const COLLECT_CAP_FACTOR: u32 = 4;

/// Runs one burst over `nodes` on `topic`, publishing from the nodes at `publishers` (indices).
pub async fn run_fanout<A: NodeApi>(
    nodes: &[A],
    topic: &str,
    publishers: &[usize],
    config: &FanoutConfig,
) -> FanoutOutcome {
    let publisher_names: Vec<String> = publishers
        .iter()
        .filter_map(|&i| nodes.get(i).map(|n| n.name().to_owned()))
        .collect();
    if nodes.is_empty() || publisher_names.is_empty() || publisher_names.len() != publishers.len() {
        return FanoutOutcome {
            result: None,
            status: ScenarioStatus::Failed {
                error: "no valid publisher for the burst".to_owned(),
            },
        };
    }

    // 1. Subscribe everyone.
    let results: Vec<_> = futures::future::join_all(nodes.iter().map(|n| n.subscribe(topic))).await;
    let mut subscribed = Vec::new();
    let mut not_found = Vec::new();
    let mut errors = Vec::new();
    for (node, result) in nodes.iter().zip(results) {
        match result {
            Ok(()) => subscribed.push(node),
            Err(err) if err.is_not_found() => not_found.push(node.name().to_owned()),
            Err(err) => errors.push(err.to_string()),
        }
    }
    let outcome = if !not_found.is_empty() {
        FanoutOutcome {
            result: None,
            status: ScenarioStatus::Skipped {
                reason: format!(
                    "pub/sub not available: {} answered 404 on /v1/topics/{{topic}}/subscribe",
                    not_found.join(", ")
                ),
            },
        }
    } else if !errors.is_empty() {
        FanoutOutcome {
            result: None,
            status: ScenarioStatus::Failed {
                error: format!("subscribe failed: {}", errors.join("; ")),
            },
        }
    } else {
        burst(nodes, topic, publishers, publisher_names, config).await
    };
    // 5. Leave the topic everywhere it was joined, whatever became of the burst.
    unsubscribe_all(&subscribed, topic).await;
    outcome
}

/// Steps 2–4 of [`run_fanout`], once every node subscribed.
async fn burst<A: NodeApi>(
    nodes: &[A],
    topic: &str,
    publishers: &[usize],
    publisher_names: Vec<String>,
    config: &FanoutConfig,
) -> FanoutOutcome {
    // 2. Wait (by polling, bounded) until every node sees at least one topic peer.
    let joined = wait_for_topic_mesh(nodes, topic, config).await;

    // 3. Publish at the configured rate, round-robin over publishers.
    let published = publish_burst(nodes, topic, publishers, config).await;
    let expected: HashSet<&str> = published.ok.iter().map(String::as_str).collect();

    // 4. Collect from every subscriber until all expected arrived, or nothing new arrived for
    //    the collect timeout, or the cap passes.
    let collect = Collect {
        idle: config.collect_timeout + config.delay_allowance,
        cap: Instant::now() + config.collect_timeout * COLLECT_CAP_FACTOR + config.delay_allowance,
        poll: config.poll,
    };
    let subscribers: Vec<SubscriberResult> = futures::future::join_all(
        nodes
            .iter()
            .map(|node| collect_subscriber(node, topic, &expected, collect)),
    )
    .await;

    let mut problems = Vec::new();
    if published.failed > 0 {
        problems.push(format!(
            "{} of {} publishes failed (first: {})",
            published.failed,
            config.messages,
            published.first_error.unwrap_or_default()
        ));
    }
    if !joined {
        tracing::debug!(
            topic,
            "not every node reported a topic peer before publishing"
        );
    }
    let status = if problems.is_empty() {
        ScenarioStatus::Completed
    } else {
        ScenarioStatus::Failed {
            error: problems.join("; "),
        }
    };
    FanoutOutcome {
        result: Some(FanoutResult {
            topic: topic.to_owned(),
            messages: config.messages,
            bytes: config.bytes as u64,
            publishers: publisher_names,
            subscribers,
        }),
        status,
    }
}

/// Unsubscribes `nodes` from `topic`, concurrently. Best effort: a failure is logged (the
/// burst's record stands; a node that is gone or restarted holds no topic anyway).
async fn unsubscribe_all<A: NodeApi>(nodes: &[&A], topic: &str) {
    let results = futures::future::join_all(nodes.iter().map(|n| n.unsubscribe(topic))).await;
    for (node, result) in nodes.iter().zip(results) {
        if let Err(err) = result {
            tracing::warn!(node = node.name(), topic, error = %err, "unsubscribe after the burst failed");
        }
    }
}

/// Whether one node's view of `topic` is formed: every neighbour in its active view (at most
/// N−1) is classified as an eager or lazy peer of the topic.
fn topic_joined(diagnostics: &soak_api::Diagnostics, topic: &str, fleet: usize) -> bool {
    let neighbours = diagnostics
        .gauges
        .get(soak_api::gauges::ACTIVE_VIEW)
        .map(|v| *v as usize)
        .unwrap_or(1)
        .clamp(1, fleet.saturating_sub(1).max(1));
    diagnostics
        .topics
        .iter()
        .any(|t| t.topic == topic && t.eager.len() + t.lazy.len() >= neighbours)
}

async fn wait_for_topic_mesh<A: NodeApi>(nodes: &[A], topic: &str, config: &FanoutConfig) -> bool {
    if nodes.len() < 2 {
        return true;
    }
    let deadline = Instant::now() + config.join_timeout;
    loop {
        let diagnostics = futures::future::join_all(nodes.iter().map(|n| n.diagnostics())).await;
        let all_joined = diagnostics.iter().all(|d| match d {
            Ok(d) => topic_joined(d, topic, nodes.len()),
            Err(_) => false,
        });
        if all_joined {
            return true;
        }
        if Instant::now() >= deadline {
            return false;
        }
        tokio::time::sleep(config.poll).await;
    }
}

struct Published {
    ok: Vec<String>,
    failed: u64,
    first_error: Option<String>,
}

async fn publish_burst<A: NodeApi>(
    nodes: &[A],
    topic: &str,
    publishers: &[usize],
    config: &FanoutConfig,
) -> Published {
    let rate = if config.rate_per_sec.is_finite() && config.rate_per_sec > 0.0 {
        config.rate_per_sec
    } else {
        1.0
    };
    let mut ticker = tokio::time::interval(Duration::from_secs_f64(1.0 / rate));
    ticker.set_missed_tick_behavior(MissedTickBehavior::Burst);
    let mut in_flight = FuturesUnordered::new();
    let mut published = Published {
        ok: Vec::new(),
        failed: 0,
        first_error: None,
    };
    let record = |result: Result<String, String>, published: &mut Published| match result {
        Ok(id) => published.ok.push(id),
        Err(err) => {
            published.failed += 1;
            published.first_error.get_or_insert(err);
        }
    };
    for seq in 0..config.messages {
        ticker.tick().await;
        // Harvest finished publishes without blocking the pace.
        while let Some(Some(result)) = futures::FutureExt::now_or_never(in_flight.next()) {
            record(result, &mut published);
        }
        let publisher = &nodes[publishers[(seq as usize) % publishers.len()]];
        let mut payload = format!("{topic}:{seq}:").into_bytes();
        payload.resize(config.bytes.max(payload.len()), b'p');
        let request = PublishRequest {
            payload_b64: base64::engine::general_purpose::STANDARD.encode(&payload),
        };
        in_flight.push(async move {
            publisher
                .publish(topic, &request)
                .await
                .map(|r| r.msg_id)
                .map_err(|e| e.to_string())
        });
    }
    while let Some(result) = in_flight.next().await {
        record(result, &mut published);
    }
    published
}

/// Nearest-rank percentile of sorted values.
pub fn percentile(sorted: &[u64], pct: f64) -> Option<u64> {
    if sorted.is_empty() {
        return None;
    }
    let rank = ((pct / 100.0) * sorted.len() as f64).ceil() as usize;
    sorted.get(rank.clamp(1, sorted.len()) - 1).copied()
}

/// When a subscriber's collection ends.
#[derive(Debug, Clone, Copy)]
struct Collect {
    /// Given up on after this long without a new expected message.
    idle: Duration,
    /// Given up on at this time at the latest.
    cap: Instant,
    /// Poll period.
    poll: Duration,
}

async fn collect_subscriber<A: NodeApi>(
    node: &A,
    topic: &str,
    expected: &HashSet<&str>,
    collect: Collect,
) -> SubscriberResult {
    let poll = collect.poll;
    let mut deadline = (Instant::now() + collect.idle).min(collect.cap);
    let mut cursor = 0u64;
    let mut seen: HashMap<String, u64> = HashMap::new();
    let mut latencies: Vec<u64> = Vec::new();
    let mut duplicates = 0u64;
    let mut last_error: Option<String>;
    loop {
        match node
            .received(
                topic,
                PageQuery {
                    after: Some(cursor),
                    limit: Some(RECEIVED_PAGE),
                },
            )
            .await
        {
            Ok(page) => {
                last_error = None;
                let had_items = !page.items.is_empty();
                for item in page.items {
                    cursor = cursor.max(item.seq);
                    let copies = seen.entry(item.msg_id.clone()).or_insert(0);
                    *copies += 1;
                    if *copies > 1 {
                        duplicates += 1;
                    } else if expected.contains(item.msg_id.as_str()) {
                        let ms = item.received_at_ms.saturating_sub(item.published_at_ms);
                        latencies.push(ms.saturating_mul(1_000));
                        // Progress: the subscriber gets another idle period.
                        deadline = (Instant::now() + collect.idle).min(collect.cap);
                    }
                }
                cursor = cursor.max(page.next);
                if had_items && Instant::now() < deadline {
                    // More may be waiting right now: page again before judging completeness.
                    continue;
                }
            }
            Err(err) => last_error = Some(err.to_string()),
        }
        let received = expected.iter().filter(|id| seen.contains_key(**id)).count();
        if received == expected.len() || Instant::now() >= deadline {
            break;
        }
        tokio::time::sleep(poll).await;
    }
    latencies.sort_unstable();
    let received = expected.iter().filter(|id| seen.contains_key(**id)).count() as u64;
    SubscriberResult {
        node: node.name().to_owned(),
        expected: expected.len() as u64,
        received,
        duplicates,
        p50_us: percentile(&latencies, 50.0),
        p99_us: percentile(&latencies, 99.0),
        max_us: latencies.last().copied(),
        error: last_error.map(|e| format!("received list unreadable: {e}")),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::fake::{FakeMesh, Fault};

    fn fast() -> FanoutConfig {
        FanoutConfig {
            messages: 20,
            bytes: 32,
            rate_per_sec: 10_000.0,
            join_timeout: Duration::from_millis(10),
            collect_timeout: Duration::from_millis(100),
            delay_allowance: Duration::ZERO,
            poll: Duration::from_millis(5),
        }
    }

    #[test]
    fn percentiles_use_nearest_rank() {
        let values: Vec<u64> = (1..=100).collect();
        assert_eq!(percentile(&values, 50.0), Some(50));
        assert_eq!(percentile(&values, 99.0), Some(99));
        assert_eq!(percentile(&values, 100.0), Some(100));
        assert_eq!(percentile(&[7], 99.0), Some(7));
        assert_eq!(percentile(&[], 50.0), None);
    }

    fn diagnostics(active_view: f64, eager: usize, lazy: usize) -> soak_api::Diagnostics {
        let peers = |n: usize| (0..n).map(|i| format!("p{i}")).collect::<Vec<_>>();
        soak_api::Diagnostics {
            api_version: 1,
            identity: soak_api::ProcessIdentity {
                instance_id: "i".into(),
                peer_id: "me".into(),
                pid: 1,
                started_at_ms: 0,
            },
            version: "t".into(),
            taken_at_ms: 0,
            uptime_ms: 0,
            counters: Default::default(),
            gauges: [(soak_api::gauges::ACTIVE_VIEW.to_owned(), active_view)]
                .into_iter()
                .collect(),
            peers: Vec::new(),
            topics: vec![soak_api::TopicDiagnostics {
                topic: "t1".into(),
                eager: peers(eager),
                lazy: peers(lazy),
                scores: Vec::new(),
                suppressed: Vec::new(),
            }],
            impairments: Vec::new(),
            bans: Vec::new(),
            histograms: Default::default(),
        }
    }

    #[test]
    fn a_topic_is_joined_once_every_neighbour_is_classified() {
        assert!(!topic_joined(&diagnostics(5.0, 1, 0), "t1", 6));
        assert!(topic_joined(&diagnostics(5.0, 3, 2), "t1", 6));
        // The active view is bounded: a 50-node fleet needs only the node's neighbours.
        assert!(topic_joined(&diagnostics(6.0, 2, 4), "t1", 50));
        // Never more than N−1, whatever the gauge says.
        assert!(topic_joined(&diagnostics(9.0, 2, 0), "t1", 3));
        assert!(!topic_joined(&diagnostics(5.0, 5, 0), "other", 6));
    }

    /// A machine too busy to deliver within the collect timeout of the last publish, but
    /// still delivering: node-2's messages land 152 ms after each publish, the burst takes
    /// 400 ms, and the collect timeout is 100 ms. Collection waits while messages keep arriving
    /// (an idle timeout, not a deadline), so every one is counted; a node that receives
    /// nothing is still given up on (`gossip_deaf_subscriber_is_counted_missing`).
    #[tokio::test]
    async fn a_subscriber_still_receiving_is_waited_for_past_the_collect_timeout() {
        let mesh = FakeMesh::new(3);
        let nodes = mesh.nodes();
        let slow = soak_api::Impairment {
            id: Some("slow".into()),
            peer: None,
            delay_ms: 50,
            jitter_ms: 0,
            loss: 0.0,
            partition: false,
            one_way: false,
            expires_in_ms: 60_000,
        };
        nodes[2].add_impairment(&slow).await.expect("impairment");
        let config = FanoutConfig {
            messages: 40,
            rate_per_sec: 100.0,
            ..fast()
        };
        let out = run_fanout(&nodes, "t1", &[0], &config).await;
        let result = out.result.expect("result");
        let node2 = result
            .subscribers
            .iter()
            .find(|s| s.node == "node-2")
            .unwrap();
        assert_eq!(node2.received, 40, "{node2:?}");
        assert!(node2.p50_us.unwrap() >= 150_000, "{node2:?}");
    }

    #[tokio::test]
    async fn healthy_burst_reaches_every_subscriber() {
        let mesh = FakeMesh::new(4);
        let out = run_fanout(&mesh.nodes(), "t1", &[0, 2], &fast()).await;
        assert_eq!(out.status, ScenarioStatus::Completed);
        let result = out.result.expect("result");
        assert_eq!(result.subscribers.len(), 4);
        for sub in &result.subscribers {
            assert_eq!((sub.expected, sub.received, sub.duplicates), (20, 20, 0));
            assert_eq!(sub.p50_us, Some(2_000));
        }
        assert_no_topic_left(&mesh, 4);
    }

    /// Every node holds no topic any more and was unsubscribed exactly once per burst.
    fn assert_no_topic_left(mesh: &FakeMesh, n: usize) {
        for i in 0..n {
            assert!(
                mesh.subscriptions(i).is_empty(),
                "node-{i} still holds {:?}",
                mesh.subscriptions(i)
            );
        }
    }

    #[tokio::test]
    async fn topics_do_not_pile_up_over_many_bursts() {
        let mesh = FakeMesh::new(3);
        for window in 0..5 {
            let topic = format!("fanout-w{window}");
            let out = run_fanout(&mesh.nodes(), &topic, &[window % 3], &fast()).await;
            assert_eq!(out.status, ScenarioStatus::Completed);
            assert_no_topic_left(&mesh, 3);
        }
        for i in 0..3 {
            assert_eq!(
                mesh.unsubscribes(i),
                5,
                "node-{i}: one unsubscribe per burst"
            );
        }
    }

    #[tokio::test]
    async fn a_burst_that_fails_mid_way_still_unsubscribes_everyone() {
        let mesh = FakeMesh::new(3);
        mesh.set_fault(0, Fault::PublishFails);
        let out = run_fanout(&mesh.nodes(), "t1", &[0], &fast()).await;
        match &out.status {
            ScenarioStatus::Failed { error } => {
                assert!(error.contains("publishes failed"), "{error}")
            }
            other => panic!("expected failed, got {other:?}"),
        }
        assert_no_topic_left(&mesh, 3);
        assert_eq!(mesh.unsubscribes(1), 1);
    }

    #[tokio::test]
    async fn missing_pubsub_is_skipped_never_passed() {
        let mesh = FakeMesh::new(3);
        mesh.set_fault(1, Fault::NoPubSub);
        let out = run_fanout(&mesh.nodes(), "t1", &[0], &fast()).await;
        assert!(out.result.is_none());
        match out.status {
            ScenarioStatus::Skipped { reason } => assert!(reason.contains("node-1"), "{reason}"),
            other => panic!("expected skipped, got {other:?}"),
        }
        // The nodes that did subscribe left the topic again.
        assert_eq!((mesh.unsubscribes(0), mesh.unsubscribes(2)), (1, 1));
        assert_no_topic_left(&mesh, 3);
    }

    #[tokio::test]
    async fn duplicates_and_losses_are_counted_per_subscriber() {
        let mesh = FakeMesh::new(3);
        mesh.set_fault(1, Fault::GossipTwice);
        mesh.set_fault(2, Fault::GossipDeaf);
        let out = run_fanout(&mesh.nodes(), "t1", &[0], &fast()).await;
        let result = out.result.expect("result");
        let by_node: HashMap<_, _> = result
            .subscribers
            .iter()
            .map(|s| (s.node.as_str(), s))
            .collect();
        assert_eq!(by_node["node-1"].duplicates, 20);
        assert_eq!(by_node["node-1"].received, 20);
        assert_eq!(by_node["node-2"].received, 0);
        assert_eq!(by_node["node-2"].p50_us, None);
    }

    #[tokio::test]
    async fn dead_subscriber_fails_the_scenario() {
        let mesh = FakeMesh::new(3);
        mesh.set_fault(2, Fault::Dead);
        let out = run_fanout(&mesh.nodes(), "t1", &[0], &fast()).await;
        assert!(matches!(out.status, ScenarioStatus::Failed { .. }));
        // Subscribing failed at node-2: the others were unsubscribed before giving up.
        assert_eq!((mesh.unsubscribes(0), mesh.unsubscribes(1)), (1, 1));
        assert_no_topic_left(&mesh, 2);
    }

    #[tokio::test]
    async fn bad_publisher_index_is_an_error_not_a_panic() {
        let mesh = FakeMesh::new(2);
        let out = run_fanout(&mesh.nodes(), "t1", &[5], &fast()).await;
        assert!(matches!(out.status, ScenarioStatus::Failed { .. }));
    }
}
