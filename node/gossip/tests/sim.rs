//! Simulator tests at modest N: the real properties (nothing missed, redundancy and hop
//! bounds, recovery after churn and partition, cooling of slow consumers), and determinism.
//! The N=1000 / N=10,000 runs are benchmarks (`benches/sim_n1000.rs`, `docs/PERFORMANCE.md`).
#![cfg(feature = "sim")]

use soak_gossip::sim::{Report, Scenario, SimParams, run};

fn sim(peers: usize, scenario: Scenario, seed: u64, rounds: usize) -> Report {
    let mut p = SimParams::new(peers, scenario, seed);
    p.rounds = rounds;
    match run(p) {
        Ok(r) => r,
        Err(e) => panic!("{scenario} n={peers}: {e}"),
    }
}

fn assert_passed(r: &Report) {
    assert!(
        r.passed,
        "{} n={} failed: {:?} (replay: --peers {} --scenario {} --seed {})",
        r.scenario, r.peers, r.failures, r.peers, r.scenario, r.seed
    );
}

#[test]
fn single_sender_reaches_everyone_with_low_redundancy() {
    let r = sim(300, Scenario::Single, 1, 30);
    assert_passed(&r);
    assert_eq!(r.missed, 0);
    assert_eq!(r.missed_final, 0);
    assert_eq!(r.double_deliveries, 0);
    assert!(r.rmr <= 0.07, "rmr {}", r.rmr);
    assert!(r.ldh.max <= 16, "ldh {:?}", r.ldh);
    let cap = r.caps.active as f64;
    assert!(r.eager_degree.max <= cap && r.lazy_view.max <= cap);
    // Per-publish work is O(view): a node sends at most one message per neighbor, plus repair.
    assert!(
        r.sends_per_publish_per_node.p99 <= cap + 1.0,
        "{:?}",
        r.sends_per_publish_per_node
    );
    // The tree settles: after the first (flooding) round almost no payload is redundant.
    let later: Vec<f64> = r.round_reports.iter().skip(2).map(|x| x.rmr).collect();
    let mean = later.iter().sum::<f64>() / later.len() as f64;
    assert!(mean < 0.05, "steady-state rmr {mean}");
}

#[test]
fn multi_sender_reaches_everyone_with_low_redundancy() {
    let r = sim(200, Scenario::Multi, 2, 15);
    assert_passed(&r);
    assert_eq!(r.missed, 0);
    assert_eq!(r.missed_final, 0);
    assert!(r.rmr <= 0.35, "rmr {}", r.rmr);
}

/// Every payload copy is filed exactly once: per round the first copies are the deliveries,
/// all copies match what the cores counted (the RMR numerator), and the causes add up to the
/// RMR. With the paper's flooding start the first round's redundancy is all `eager_fresh`;
/// with the default lazy start there is none of it.
#[test]
fn every_payload_copy_is_attributed_to_one_cause() {
    for fresh_eager in [usize::MAX, 0] {
        let mut p = SimParams::new(200, Scenario::Multi, 3);
        p.rounds = 10;
        p.net.proto.fresh_eager = fresh_eager;
        let r = run(p).unwrap_or_else(|e| panic!("{e}"));
        assert_eq!((r.missed, r.missed_final, r.double_deliveries), (0, 0, 0));
        for (k, round) in r.round_reports.iter().enumerate() {
            let red = &round.redundancy;
            let new = red.new_eager + red.new_repair + red.new_ae + red.new_detour;
            assert_eq!(new, 199, "round {k}: first copies = deliveries: {red:?}");
            assert_eq!(red.copies, new + red.redundant(), "round {k}: {red:?}");
            // The cores' own count, through the RMR: copies = (rmr + 1) · (deliveries − 1).
            let counted = (round.rmr + 1.0) * 198.0;
            assert!(
                (counted - red.copies as f64).abs() < 0.01,
                "round {k}: {red:?}"
            );
        }
        let causes: f64 = r.rmr_by_cause.values().sum();
        let offset = 1.0 / 198.0; // the reference's −1 in the denominator
        assert!(
            (causes + offset - r.rmr).abs() < 1e-9,
            "{causes} vs {}",
            r.rmr
        );
        let first = &r.round_reports[0].redundancy;
        if fresh_eager == 0 {
            assert_eq!(first.eager_fresh, 0, "{first:?}");
        } else {
            assert!(first.eager_fresh > 199, "a flood: {first:?}");
            assert_eq!(first.redundant(), first.eager_fresh, "{first:?}");
        }
    }
}

#[test]
fn half_the_nodes_crash_and_the_rest_are_reached_again() {
    let r = sim(300, Scenario::Churn, 3, 12);
    assert_passed(&r);
    let churn = r.churn.as_ref().unwrap_or_else(|| panic!("churn report"));
    assert_eq!(churn.removed, 150);
    let k = churn.recovered_after_rounds.unwrap_or(usize::MAX);
    assert!(k <= churn.bound_rounds, "{churn:?}");
    assert!(
        churn.missed_per_round.iter().skip(k).all(|m| *m == 0),
        "{churn:?}"
    );
    assert_eq!(r.missed_final, 0);
}

#[test]
fn partition_messages_reach_everyone_after_heal() {
    let r = sim(300, Scenario::Partition, 4, 12);
    assert_passed(&r);
    let p = r
        .partition
        .as_ref()
        .unwrap_or_else(|| panic!("partition report"));
    assert!(
        p.missing_at_heal > 0,
        "the partition must actually cut: {p:?}"
    );
    assert_eq!(p.missing_after_recovery, 0, "{p:?}");
    assert!(p.ae_recovered > 0, "gaps are filled by anti-entropy: {p:?}");
    assert!(p.recovery_ms.is_some());
    assert_eq!(r.missed_final, 0);
}

#[test]
fn slow_consumers_are_cooled_and_recovered_without_hurting_others() {
    let r = sim(150, Scenario::Slow, 5, 8);
    assert_passed(&r);
    let s = r.slow.as_ref().unwrap_or_else(|| panic!("slow report"));
    assert_eq!(s.missed_healthy, 0, "{s:?}");
    assert!(s.suppressions > 0 && s.recoveries > 0, "{s:?}");
    assert_eq!(
        s.missed_slow, 0,
        "slow nodes catch up after draining: {s:?}"
    );
    assert_eq!(s.still_suppressed_at_end, 0, "{s:?}");
    assert!(r.state_max.suppressions <= r.caps.suppressions);
}

#[test]
fn same_seed_same_report() {
    let a = serde_json::to_string(&sim(120, Scenario::Multi, 9, 5)).unwrap_or_default();
    let b = serde_json::to_string(&sim(120, Scenario::Multi, 9, 5)).unwrap_or_default();
    assert!(!a.is_empty());
    assert_eq!(a, b);
    let c = serde_json::to_string(&sim(120, Scenario::Multi, 10, 5)).unwrap_or_default();
    assert_ne!(a, c, "the seed matters");
}

#[test]
fn too_few_peers_is_an_error_not_a_panic() {
    assert!(run(SimParams::new(1, Scenario::Single, 0)).is_err());
}

#[test]
fn an_exhausted_event_budget_reports_unsettled_with_the_seed() {
    let mut p = SimParams::new(50, Scenario::Single, 77);
    p.max_events = 1_000;
    let err = run(p).err().map(|e| e.to_string()).unwrap_or_default();
    assert!(
        err.contains("did not settle") && err.contains("--seed 77"),
        "{err}"
    );
}

/// The slow-peer detector end to end in the simulator: one node's sends are delayed by
/// 1.5 s (as the node's delay impairment does) while a neighbor-fed trickle runs; the nodes
/// holding it as a neighbor see its RTT far above their other peers', suppress it, and
/// recover it once the delay is gone. Nobody else is cooled, and everyone (the slow node
/// too, by repair and anti-entropy) ends with every message.
#[test]
fn a_high_latency_node_is_cooled_by_its_neighbors_and_recovered_after_the_delay_ends() {
    use soak_gossip::TopicId;
    use soak_gossip::sim::{NetConfig, Network};
    use std::time::Duration;

    const N: u32 = 40;
    const SLOW: u32 = 17;
    let topic = TopicId::new("t").unwrap_or_else(|e| panic!("{e}"));
    let mut net = Network::new(N as usize, NetConfig::default(), 5);
    net.subscribe(0, &topic, vec![]);
    for i in 1..N {
        net.subscribe(i, &topic, vec![(i - 1) / 2]);
    }
    let budget = 50_000_000;
    let step = Duration::from_millis(100);
    let mut published = 0u64;
    // Runs `secs` seconds of a 10 msg/s trickle from node 0; every 500 ms, which nodes
    // suppress whom.
    let mut run = |net: &mut Network, secs: u64, seen: &mut Vec<(Duration, Vec<(u32, u32)>)>| {
        for k in 0..secs * 10 {
            if net.publish(0, &topic, vec![7; 64]).is_some() {
                published += 1;
            }
            let until = net.now() + step;
            assert!(net.run_until(until, budget), "event budget");
            if k % 5 == 4 {
                let now = net.now();
                let pairs = net
                    .nodes()
                    .iter()
                    .enumerate()
                    .flat_map(|(i, n)| {
                        n.state
                            .snapshot(&topic, now)
                            .map(|s| s.suppressed)
                            .unwrap_or_default()
                            .into_iter()
                            .map(move |s| (i as u32, s.peer))
                    })
                    .collect();
                seen.push((now, pairs));
            }
        }
    };
    let mut warm = Vec::new();
    run(&mut net, 10, &mut warm);
    assert!(
        warm.iter().all(|(_, p)| p.is_empty()),
        "nobody cooled on a healthy net: {warm:?}"
    );
    net.set_delay(SLOW, Duration::from_millis(1_500));
    let mut during = Vec::new();
    run(&mut net, 20, &mut during);
    net.set_delay(SLOW, Duration::ZERO);
    let reverted = net.now();
    let mut after = Vec::new();
    run(&mut net, 60, &mut after);

    let cooled_by: std::collections::BTreeSet<u32> = during
        .iter()
        .flat_map(|(_, p)| p.iter().map(|(by, _)| *by))
        .collect();
    assert!(
        !cooled_by.is_empty(),
        "the slow node was never suppressed while delayed"
    );
    let everyone: Vec<&(u32, u32)> = [&warm, &during, &after]
        .into_iter()
        .flatten()
        .flat_map(|(_, p)| p.iter())
        .collect();
    assert!(
        everyone.iter().all(|(_, peer)| *peer == SLOW),
        "only the slow node is ever cooled: {everyone:?}"
    );
    let recovered = after.iter().find(|(_, p)| p.is_empty()).map(|(t, _)| *t);
    assert!(
        recovered.is_some_and(|t| t - reverted <= Duration::from_secs(30)),
        "recovered {recovered:?} (reverted at {reverted:?})"
    );
    let last_10s = &after[after.len() - 20..];
    assert!(
        last_10s.iter().all(|(_, p)| p.is_empty()),
        "still cooled at the end: {last_10s:?}"
    );
    // The last messages settle.
    let settle = net.now() + Duration::from_secs(5);
    assert!(net.run_until(settle, budget), "event budget");
    let now = net.now();
    for (i, n) in net.nodes().iter().enumerate() {
        let delivered = n.state.topic_counters(&topic).map_or(0, |c| c.delivered);
        assert_eq!(
            delivered,
            published,
            "node {i} (slow: {})",
            i as u32 == SLOW
        );
        assert!(n.state.snapshot(&topic, now).is_some());
    }
}
