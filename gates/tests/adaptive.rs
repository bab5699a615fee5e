//! The soak-level adaptive dispatcher-timeout policy (broad-launch).

use soak_gates::model::Observations;
use soak_gates::testkit::{FleetBuilder, bump, set_gauge, span};
use soak_gates::{BarResult, Outcome, Profile, Verdict, evaluate};

const BAR: &str = "dispatcher_timeout_rate";

fn broad() -> Profile {
    Profile::builtin("broad-launch").expect("built in")
}

fn adaptive_bar(v: &Verdict, w: usize) -> &BarResult {
    v.windows[w]
        .bars
        .iter()
        .find(|b| b.bar == BAR)
        .expect("adaptive bar in every window")
}

fn soak(v: &Verdict) -> &BarResult {
    v.soak_bars
        .iter()
        .find(|b| b.bar == BAR)
        .expect("adaptive soak bar")
}

/// Adds `per_node` timeouts to every node in window `w` (spread over two samples).
fn timeouts(obs: &mut Observations, w: usize, per_node: u64) {
    let (start, _) = span(obs, w);
    let names: Vec<String> = obs.run.nodes.iter().map(|n| n.name.clone()).collect();
    for name in names {
        bump(
            obs,
            &name,
            "dispatcher_timeouts_total",
            start + 15_000,
            per_node / 2,
        );
        bump(
            obs,
            &name,
            "dispatcher_timeouts_total",
            start + 35_000,
            per_node - per_node / 2,
        );
    }
}

#[test]
fn clean_soak_learns_a_floored_baseline_and_passes() {
    let obs = FleetBuilder::new(4, 6).build();
    let v = evaluate(&obs, &broad());
    let s = soak(&v);
    assert_eq!(s.verdict, Outcome::Go, "{s:#?}");
    let base = s.baseline.as_ref().unwrap();
    assert_eq!(base.windows, vec![0, 1]);
    assert_eq!(base.rate, Some(0.0));
    assert_eq!(base.effective_rate, Some(0.0005));
    // 4 nodes × 6 samples × 1000 completions per window.
    assert_eq!(
        adaptive_bar(&v, 3)
            .baseline
            .as_ref()
            .unwrap()
            .window_exposure,
        Some(24_000)
    );
    assert_eq!(
        adaptive_bar(&v, 3).baseline.as_ref().unwrap().anomalous,
        Some(false)
    );
}

#[test]
fn a_few_timeouts_are_not_an_anomaly() {
    let mut obs = FleetBuilder::new(4, 6).build();
    // 1 per node = 4 fleet-wide < min_events (5).
    timeouts(&mut obs, 3, 1);
    // At the expected count (12) — no anomaly either.
    timeouts(&mut obs, 4, 3);
    let v = evaluate(&obs, &broad());
    assert_eq!(
        adaptive_bar(&v, 3).baseline.as_ref().unwrap().anomalous,
        Some(false)
    );
    assert_eq!(
        adaptive_bar(&v, 4).baseline.as_ref().unwrap().anomalous,
        Some(false)
    );
    assert_eq!(v.verdict, Outcome::Go);
}

#[test]
fn isolated_anomaly_without_degradation_is_tolerated() {
    let mut obs = FleetBuilder::new(4, 6).build();
    timeouts(&mut obs, 3, 25); // 100 vs 12 expected
    let v = evaluate(&obs, &broad());
    let b = adaptive_bar(&v, 3);
    assert_eq!(b.baseline.as_ref().unwrap().anomalous, Some(true), "{b:#?}");
    assert_eq!(b.verdict, Outcome::Go);
    assert!(b.reason.contains("tolerated"), "{}", b.reason);
    assert_eq!(v.verdict, Outcome::Go);
}

#[test]
fn consecutive_anomalies_fail() {
    let mut obs = FleetBuilder::new(4, 6).build();
    timeouts(&mut obs, 3, 25);
    timeouts(&mut obs, 4, 25);
    let v = evaluate(&obs, &broad());
    assert_eq!(adaptive_bar(&v, 3).verdict, Outcome::NoGo);
    assert_eq!(adaptive_bar(&v, 4).verdict, Outcome::NoGo);
    assert_eq!(soak(&v).verdict, Outcome::NoGo);
    assert_eq!(v.verdict, Outcome::NoGo);
}

#[test]
fn anomaly_with_growing_queue_fails() {
    let mut obs = FleetBuilder::new(4, 6).build();
    timeouts(&mut obs, 3, 25);
    let (s3, e3) = span(&obs, 3);
    set_gauge(
        &mut obs,
        "node-0",
        "outbound_queue_max_depth",
        s3 + 1,
        e3 + 1,
        40.0,
    );
    let v = evaluate(&obs, &broad());
    let b = adaptive_bar(&v, 3);
    assert_eq!(b.verdict, Outcome::NoGo, "{b:#?}");
    assert!(
        b.baseline
            .as_ref()
            .unwrap()
            .degradation
            .contains(&"queue depth growing".to_string())
    );
}

#[test]
fn anomaly_with_rising_suppression_fails() {
    let mut obs = FleetBuilder::new(4, 6).build();
    timeouts(&mut obs, 3, 25);
    let (s3, e3) = span(&obs, 3);
    // 1 of 6 known: 0.17 per node would fail the ratio bar too; use a fleet rise of 1/24.
    set_gauge(
        &mut obs,
        "node-0",
        "suppressed_topic_peers",
        s3 + 1,
        e3 + 1,
        0.5,
    );
    let v = evaluate(&obs, &broad());
    let b = adaptive_bar(&v, 3);
    assert!(
        b.baseline
            .as_ref()
            .unwrap()
            .degradation
            .contains(&"suppression ratio rising".to_string()),
        "{b:#?}"
    );
    assert_eq!(b.verdict, Outcome::NoGo);
}

#[test]
fn baseline_above_the_ceiling_fails_the_soak() {
    let mut obs = FleetBuilder::new(4, 6).build();
    for w in 0..6 {
        timeouts(&mut obs, w, 120); // 480 / 24000 = 2 % > 1 %
    }
    let v = evaluate(&obs, &broad());
    let s = soak(&v);
    assert_eq!(s.verdict, Outcome::NoGo, "{s:#?}");
    assert!(s.reason.contains("exceeds the ceiling"));
}

#[test]
fn explicit_warmup_windows_are_the_baseline() {
    let mut obs = FleetBuilder::new(4, 6).build();
    obs.windows[0].warmup = true;
    obs.windows[1].warmup = true;
    obs.windows[2].warmup = true;
    timeouts(&mut obs, 1, 10); // baseline 40 / 72000
    let v = evaluate(&obs, &broad());
    let base = soak(&v).baseline.clone().unwrap();
    assert_eq!(base.windows, vec![0, 1, 2]);
    assert_eq!(base.events, 40);
    assert_eq!(base.exposure, 72_000);
}

#[test]
fn no_baseline_is_unknown() {
    // Only one window, two needed to learn.
    let obs = FleetBuilder::new(4, 1).build();
    let v = evaluate(&obs, &broad());
    assert_eq!(soak(&v).verdict, Outcome::Unknown);
    assert_eq!(v.verdict, Outcome::Unknown);
}

#[test]
fn failing_windows_do_not_teach_the_baseline() {
    let mut obs = FleetBuilder::new(4, 6).build();
    // Window 0 fails another bar (a drop) and has many timeouts: it must not be learned from.
    let (s0, _) = span(&obs, 0);
    bump(
        &mut obs,
        "node-1",
        "recv_pump_dropped_full_total",
        s0 + 15_000,
        1,
    );
    timeouts(&mut obs, 0, 100);
    let v = evaluate(&obs, &broad());
    assert_eq!(soak(&v).baseline.as_ref().unwrap().windows, vec![1, 2]);
}

/// The same per-node behaviour judged on a small and a large fleet reaches the same decision:
/// a window at the baseline rate is never anomalous; a window at 5× is anomalous on both.
#[test]
fn decision_holds_across_fleet_sizes() {
    for nodes in [3, 30] {
        let mut obs = FleetBuilder::new(nodes, 6).build();
        for w in 0..6 {
            timeouts(&mut obs, w, 6); // 6 / 6000 = 0.1 % per node, every window
        }
        let v = evaluate(&obs, &broad());
        for w in 2..6 {
            assert_eq!(
                adaptive_bar(&v, w).baseline.as_ref().unwrap().anomalous,
                Some(false),
                "n={nodes} w={w}"
            );
        }
        timeouts(&mut obs, 4, 24); // 30 / 6000 = 0.5 % per node
        let v = evaluate(&obs, &broad());
        assert_eq!(
            adaptive_bar(&v, 4).baseline.as_ref().unwrap().anomalous,
            Some(true),
            "n={nodes}"
        );
        assert_eq!(v.verdict, Outcome::Go, "isolated anomaly, n={nodes}");
    }
}
