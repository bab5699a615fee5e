//! The soak-level adaptive dispatcher-timeout policy (broad-launch), at realistic volumes:
//! about 1e5 dispatcher completions per node per window, healthy fleets timing out ~2.5e-6.

use soak_gates::model::Observations;
use soak_gates::testkit::{FleetBuilder, bump, set_gauge, span};
use soak_gates::{BarResult, Outcome, Profile, Verdict, evaluate};

const BAR: &str = "dispatcher_timeout_rate";

fn broad() -> Profile {
    Profile::builtin("broad-launch").expect("built in")
}

/// Completions per node per 10 s sample: 6 samples per 60 s window ≈ 1e5 per window.
const PER_SAMPLE: u64 = 16_667;
/// Completions per node per window.
const PER_WINDOW: u64 = 6 * PER_SAMPLE;

/// `nodes` nodes, `warmup` explicit warm-up windows, then `judged` windows, at realistic
/// dispatcher volume.
fn fleet(nodes: usize, warmup: usize, judged: usize) -> Observations {
    let mut builder = FleetBuilder::new(nodes, warmup + judged);
    builder.dispatch_per_interval = PER_SAMPLE;
    builder.warmup = warmup;
    builder.build()
}

/// Adds `count` timeouts to `node` in window `w`.
fn timeouts_on(obs: &mut Observations, w: usize, node: &str, count: u64) {
    let (start, _) = span(obs, w);
    bump(
        obs,
        node,
        "dispatcher_timeouts_total",
        start + 25_000,
        count,
    );
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
    let obs = fleet(6, 3, 20);
    let v = evaluate(&obs, &broad());
    let s = soak(&v);
    assert_eq!(s.verdict, Outcome::Go, "{s:#?}");
    let base = s.baseline.as_ref().unwrap();
    assert_eq!(base.windows, vec![0, 1, 2]);
    assert_eq!(base.rate, Some(0.0));
    assert_eq!(base.effective_rate, Some(2e-5));
    assert_eq!(
        base.strict_max_per_node, None,
        "3 warm-up windows are enough"
    );
    let b = adaptive_bar(&v, 10).baseline.as_ref().unwrap();
    assert_eq!(b.window_exposure, Some(6 * PER_WINDOW));
    assert_eq!(b.anomalous, Some(false));
    assert_eq!(b.ceiling_rate, Some(1e-4));
    assert_eq!(v.verdict, Outcome::Go);
}

#[test]
fn a_single_stray_timeout_passes() {
    let mut obs = fleet(6, 3, 20);
    timeouts_on(&mut obs, 10, "node-4", 1);
    let v = evaluate(&obs, &broad());
    let b = adaptive_bar(&v, 10);
    assert_eq!(b.verdict, Outcome::Go, "{b:#?}");
    assert_eq!(b.baseline.as_ref().unwrap().anomalous, Some(false));
    assert_eq!(v.verdict, Outcome::Go);
}

#[test]
fn a_few_timeouts_in_one_window_pass() {
    let mut obs = fleet(6, 3, 20);
    // 8 fleet-wide against 12 expected at the floor (2e-5 × 6e5).
    timeouts_on(&mut obs, 10, "node-1", 5);
    timeouts_on(&mut obs, 10, "node-3", 3);
    let v = evaluate(&obs, &broad());
    let b = adaptive_bar(&v, 10);
    assert_eq!(b.baseline.as_ref().unwrap().window_events, Some(8));
    assert_eq!(
        b.baseline.as_ref().unwrap().anomalous,
        Some(false),
        "{b:#?}"
    );
    assert_eq!(v.verdict, Outcome::Go);
}

#[test]
fn a_low_steady_rate_over_a_long_soak_passes() {
    // 60 judged windows at the rate healthy fleets show (~2.5e-6: 1.5 per 6e5 completions),
    // spread over the nodes and the warm-up too.
    let mut obs = fleet(6, 3, 60);
    for w in 0..63 {
        let count = [1, 2, 1, 2, 2, 1][w % 6];
        timeouts_on(&mut obs, w, &FleetBuilder::node(w % 6), count);
    }
    let v = evaluate(&obs, &broad());
    let s = soak(&v);
    assert_eq!(s.verdict, Outcome::Go, "{s:#?}");
    let rate = s.baseline.as_ref().unwrap().rate.unwrap();
    assert!(rate > 1e-6 && rate < 5e-6, "{rate}");
    assert!(
        (3..63).all(|w| adaptive_bar(&v, w).baseline.as_ref().unwrap().anomalous == Some(false))
    );
    assert_eq!(v.verdict, Outcome::Go);
}

#[test]
fn a_real_regression_fails_on_the_ceiling() {
    // From window 20 the fleet times out at 3e-4 of completions: 180 a window.
    let mut obs = fleet(6, 3, 30);
    for w in 20..33 {
        for n in 0..6 {
            timeouts_on(&mut obs, w, &FleetBuilder::node(n), 30);
        }
    }
    let v = evaluate(&obs, &broad());
    let b = adaptive_bar(&v, 20);
    assert_eq!(b.verdict, Outcome::NoGo, "{b:#?}");
    assert!(
        b.reason.contains("above the per-window ceiling"),
        "{}",
        b.reason
    );
    assert_eq!(b.nodes.len(), 6);
    assert_eq!(adaptive_bar(&v, 19).verdict, Outcome::Go);
    assert_eq!(soak(&v).verdict, Outcome::NoGo);
    assert_eq!(v.verdict, Outcome::NoGo);
}

#[test]
fn one_window_over_the_ceiling_fails_even_when_isolated() {
    let mut obs = fleet(6, 3, 20);
    timeouts_on(&mut obs, 12, "node-2", 61); // 61 / 600012 > 1e-4
    let v = evaluate(&obs, &broad());
    let b = adaptive_bar(&v, 12);
    assert_eq!(b.verdict, Outcome::NoGo, "{b:#?}");
    assert_eq!(b.nodes, vec!["node-2".to_string()]);
    assert_eq!(v.verdict, Outcome::NoGo);
}

#[test]
fn a_slow_regression_below_the_ceiling_fails_on_consecutive_anomalies() {
    // 5e-5 (30 a window, 2.5× the floored expectation, below the 1e-4 ceiling) two windows
    // in a row: the adaptive test fires where the ceiling does not.
    let mut obs = fleet(6, 3, 20);
    for w in [10, 11] {
        for n in 0..6 {
            timeouts_on(&mut obs, w, &FleetBuilder::node(n), 5);
        }
    }
    let v = evaluate(&obs, &broad());
    for w in [10, 11] {
        let b = adaptive_bar(&v, w);
        assert_eq!(b.baseline.as_ref().unwrap().anomalous, Some(true), "{b:#?}");
        assert_eq!(b.verdict, Outcome::NoGo);
        assert!(b.reason.contains("2 in a row"), "{}", b.reason);
        assert!(!b.reason.contains("ceiling"), "{}", b.reason);
    }
    assert_eq!(v.verdict, Outcome::NoGo);
}

#[test]
fn isolated_anomaly_without_degradation_is_tolerated() {
    let mut obs = fleet(6, 3, 20);
    for n in 0..6 {
        timeouts_on(&mut obs, 10, &FleetBuilder::node(n), 5);
    }
    let v = evaluate(&obs, &broad());
    let b = adaptive_bar(&v, 10);
    assert_eq!(b.baseline.as_ref().unwrap().anomalous, Some(true), "{b:#?}");
    assert_eq!(b.verdict, Outcome::Go);
    assert!(b.reason.contains("tolerated"), "{}", b.reason);
    assert_eq!(v.verdict, Outcome::Go);
}

#[test]
fn anomaly_with_growing_queue_fails() {
    let mut obs = fleet(6, 3, 20);
    for n in 0..6 {
        timeouts_on(&mut obs, 10, &FleetBuilder::node(n), 5);
    }
    let (s, e) = span(&obs, 10);
    set_gauge(
        &mut obs,
        "node-0",
        "outbound_queue_max_depth",
        s + 1,
        e + 1,
        40.0,
    );
    let v = evaluate(&obs, &broad());
    let b = adaptive_bar(&v, 10);
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
    let mut obs = fleet(6, 3, 20);
    for n in 0..6 {
        timeouts_on(&mut obs, 10, &FleetBuilder::node(n), 5);
    }
    let (s, e) = span(&obs, 10);
    // A fleet-wide rise small enough to pass the per-node ratio bar.
    set_gauge(
        &mut obs,
        "node-0",
        "suppressed_topic_peers",
        s + 1,
        e + 1,
        0.5,
    );
    let v = evaluate(&obs, &broad());
    let b = adaptive_bar(&v, 10);
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
fn baseline_above_its_maximum_fails_the_soak() {
    let mut obs = fleet(6, 3, 5);
    for w in 0..3 {
        for n in 0..6 {
            timeouts_on(&mut obs, w, &FleetBuilder::node(n), 200); // 2e-3 > 1e-3
        }
    }
    let v = evaluate(&obs, &broad());
    let s = soak(&v);
    assert_eq!(s.verdict, Outcome::NoGo, "{s:#?}");
    assert!(s.reason.contains("exceeds the ceiling"), "{}", s.reason);
}

#[test]
fn explicit_warmup_windows_are_the_baseline() {
    let mut obs = fleet(4, 3, 3);
    timeouts_on(&mut obs, 1, "node-0", 4);
    let v = evaluate(&obs, &broad());
    let base = soak(&v).baseline.clone().unwrap();
    assert_eq!(base.windows, vec![0, 1, 2]);
    assert_eq!(base.events, 4);
    assert_eq!(base.exposure, 3 * 4 * PER_WINDOW);
    // Warm-up windows are not judged by the ceiling or the test.
    assert!(adaptive_bar(&v, 1).reason.starts_with("warm-up window"));
}

/// A short readiness run learns its baseline from fewer than 3 windows: that baseline is not
/// trusted, and every judged window is held to the strict count (broad-launch: 0 per node).
#[test]
fn short_baseline_falls_back_to_the_strict_count() {
    // The runner's default: one warm-up window, then 3 judged ones.
    let clean = fleet(6, 1, 3);
    let v = evaluate(&clean, &broad());
    let s = soak(&v);
    assert_eq!(s.verdict, Outcome::Go, "{s:#?}");
    assert_eq!(s.baseline.as_ref().unwrap().strict_max_per_node, Some(0));
    assert!(s.reason.contains("fewer than 3"), "{}", s.reason);
    let mut obs = clean.clone();
    timeouts_on(&mut obs, 2, "node-5", 1);
    let v = evaluate(&obs, &broad());
    let b = adaptive_bar(&v, 2);
    assert_eq!(b.verdict, Outcome::NoGo, "{b:#?}");
    assert_eq!(b.nodes, vec!["node-5".to_string()]);
    assert!(b.reason.contains("strict count"), "{}", b.reason);
    assert_eq!(v.verdict, Outcome::NoGo);
    // No explicit warm-up and only 2 windows: the implicit baseline is short too.
    let mut builder = FleetBuilder::new(3, 2);
    builder.dispatch_per_interval = PER_SAMPLE;
    let mut obs = builder.build();
    timeouts_on(&mut obs, 1, "node-0", 1);
    let v = evaluate(&obs, &broad());
    assert_eq!(adaptive_bar(&v, 1).verdict, Outcome::NoGo);
    assert_eq!(adaptive_bar(&v, 0).verdict, Outcome::Go);
}

/// limited-production has no adaptive policy: its strict per-window count is ≤ 5 per node.
#[test]
fn limited_production_counts_dispatcher_timeouts_strictly() {
    let limited = Profile::builtin("limited-production").unwrap();
    let mut obs = fleet(6, 1, 3);
    timeouts_on(&mut obs, 2, "node-1", 5);
    assert_eq!(evaluate(&obs, &limited).verdict, Outcome::Go);
    timeouts_on(&mut obs, 2, "node-1", 1);
    let v = evaluate(&obs, &limited);
    let b = v.windows[2]
        .bars
        .iter()
        .find(|b| b.bar == "dispatcher_timeouts")
        .unwrap();
    assert_eq!(b.verdict, Outcome::NoGo, "{b:#?}");
}

#[test]
fn no_baseline_without_a_strict_count_is_unknown() {
    let text = Profile::builtin("broad-launch")
        .unwrap()
        .source()
        .replace("strict_max_per_node = 0", "");
    let profile = Profile::from_toml_str(&text, "no-strict.toml").unwrap();
    let v = evaluate(&fleet(4, 1, 2), &profile);
    assert_eq!(soak(&v).verdict, Outcome::Unknown, "{:#?}", soak(&v));
    assert_eq!(v.verdict, Outcome::Unknown);
}

#[test]
fn failing_windows_do_not_teach_the_baseline() {
    let mut obs = fleet(4, 0, 8);
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
    assert_eq!(soak(&v).baseline.as_ref().unwrap().windows, vec![1, 2, 3]);
}

/// The same per-node behaviour judged on a small and a large fleet reaches the same decision:
/// a window at the baseline rate is never anomalous; a window at 2.5× is anomalous on both
/// (and tolerated, being isolated and under the ceiling).
#[test]
fn decision_holds_across_fleet_sizes() {
    for nodes in [3, 30] {
        let mut obs = fleet(nodes, 3, 6);
        for w in 0..9 {
            timeouts(&mut obs, w, 4); // 4e-5 per node, every window
        }
        let v = evaluate(&obs, &broad());
        for w in 3..9 {
            assert_eq!(
                adaptive_bar(&v, w).baseline.as_ref().unwrap().anomalous,
                Some(false),
                "n={nodes} w={w}"
            );
        }
        timeouts(&mut obs, 5, 6); // 10 per node: 1e-4, at the ceiling
        let v = evaluate(&obs, &broad());
        let b = adaptive_bar(&v, 5);
        assert_eq!(
            b.baseline.as_ref().unwrap().anomalous,
            Some(true),
            "n={nodes}"
        );
        assert_eq!(
            v.verdict,
            Outcome::Go,
            "isolated anomaly, n={nodes}: {b:#?}"
        );
    }
}
