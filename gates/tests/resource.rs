//! Resource stability bars: resident memory and open descriptors per node over the judged
//! windows, as a robust slope per process epoch. Leaks are what long soaks exist to catch.

use soak_gates::model::Observations;
use soak_gates::testkit::{FleetBuilder, HEALTHY_RSS_BYTES, remove_gauge, restart, span, trend};
use soak_gates::{BarResult, Outcome, Profile, Verdict, evaluate};

const RSS: &str = "process_resident_memory_bytes";
const FDS: &str = "process_open_fds";

fn broad() -> Profile {
    Profile::builtin("broad-launch").unwrap()
}

fn soak_bar<'v>(v: &'v Verdict, id: &str) -> &'v BarResult {
    v.soak_bars.iter().find(|b| b.bar == id).unwrap()
}

/// 3 warm-up windows, then 30 judged minutes.
fn half_hour() -> Observations {
    let mut builder = FleetBuilder::new(4, 33);
    builder.warmup = 3;
    builder.build()
}

fn judged_start(obs: &Observations) -> u64 {
    span(obs, 3).0
}

#[test]
fn a_healthy_half_hour_passes_both_leak_bars() {
    let obs = half_hour();
    for profile in [broad(), Profile::builtin("limited-production").unwrap()] {
        let v = evaluate(&obs, &profile);
        for id in ["rss_growth", "fd_growth"] {
            let b = soak_bar(&v, id);
            assert_eq!(b.verdict, Outcome::Go, "{}/{id}: {b:#?}", profile.name);
            assert!(!b.not_applicable);
            assert!(
                b.reason.starts_with("no leak over 30 min judged"),
                "{}",
                b.reason
            );
        }
        assert_eq!(v.verdict, Outcome::Go);
    }
}

#[test]
fn a_node_leaking_memory_is_no_go_naming_its_slope() {
    let mut obs = half_hour();
    let from = judged_start(&obs);
    trend(&mut obs, "node-2", RSS, from, 0.2 * HEALTHY_RSS_BYTES); // 20 %/h
    let v = evaluate(&obs, &broad());
    let b = soak_bar(&v, "rss_growth");
    assert_eq!(b.verdict, Outcome::NoGo, "{b:#?}");
    assert_eq!(b.nodes, vec!["node-2".to_string()]);
    assert!(b.reason.starts_with("leaking: node-2 19"), "{}", b.reason);
    assert!(b.reason.contains(" %/h (+"), "{}", b.reason);
    assert!(b.reason.contains("MiB per hour"), "{}", b.reason);
    let growth = b.value.unwrap();
    assert!((0.15..0.21).contains(&growth), "{growth}");
    assert_eq!(v.verdict, Outcome::NoGo);
}

#[test]
fn slow_memory_growth_under_the_bar_passes() {
    let mut obs = half_hour();
    let from = judged_start(&obs);
    trend(&mut obs, "node-1", RSS, from, 0.03 * HEALTHY_RSS_BYTES); // 3 %/h < 5 %/h
    let v = evaluate(&obs, &broad());
    let b = soak_bar(&v, "rss_growth");
    assert_eq!(b.verdict, Outcome::Go, "{b:#?}");
    assert!(b.value.unwrap() > 0.02, "{b:#?}");
}

#[test]
fn a_node_leaking_descriptors_is_no_go() {
    let mut obs = half_hour();
    let from = judged_start(&obs);
    trend(&mut obs, "node-3", FDS, from, 40.0); // +20 over the half hour, noise floor 8
    let v = evaluate(&obs, &broad());
    let b = soak_bar(&v, "fd_growth");
    assert_eq!(b.verdict, Outcome::NoGo, "{b:#?}");
    assert_eq!(b.nodes, vec!["node-3".to_string()]);
    assert!(b.reason.contains("node-3 +40 per hour"), "{}", b.reason);
    // A rise within the noise (a few descriptors) is not a trend.
    let mut obs = half_hour();
    trend(&mut obs, "node-3", FDS, from, 8.0); // +4 over the half hour
    assert_eq!(
        soak_bar(&evaluate(&obs, &broad()), "fd_growth").verdict,
        Outcome::Go
    );
}

/// The warm-up is excluded: growth that stops when the warm-up ends is no leak.
#[test]
fn growth_during_the_warm_up_only_is_not_a_leak() {
    let mut obs = half_hour();
    let start = obs.windows[0].start_ms;
    let end = judged_start(&obs);
    trend(&mut obs, "node-0", RSS, start, 10.0 * HEALTHY_RSS_BYTES);
    // Flatten from the end of the warm-up on: subtract the continuing trend.
    trend(&mut obs, "node-0", RSS, end, -10.0 * HEALTHY_RSS_BYTES);
    let v = evaluate(&obs, &broad());
    assert_eq!(soak_bar(&v, "rss_growth").verdict, Outcome::Go);
}

/// A restart resets memory: the trend is fitted per process epoch, so the drop is neither a
/// "negative leak" hiding a real one nor a step that breaks the fit.
#[test]
fn a_restart_starts_a_new_epoch() {
    let mut obs = half_hour();
    let from = judged_start(&obs);
    let (s18, _) = span(&obs, 18);
    trend(&mut obs, "node-1", RSS, from, 0.3 * HEALTHY_RSS_BYTES);
    restart(&mut obs, "node-1", s18 + 5_000, "inst-1-b");
    // After the restart the level falls back and leaks again at the same rate.
    trend(
        &mut obs,
        "node-1",
        RSS,
        s18 + 5_000,
        -0.3 * HEALTHY_RSS_BYTES,
    );
    trend(
        &mut obs,
        "node-1",
        RSS,
        s18 + 5_000,
        0.3 * HEALTHY_RSS_BYTES,
    );
    let v = evaluate(&obs, &broad());
    let b = soak_bar(&v, "rss_growth");
    assert_eq!(b.verdict, Outcome::NoGo, "{b:#?}");
    assert_eq!(b.nodes, vec!["node-1".to_string()]);
}

/// Below the minimum judged span a leak this slow cannot show: "not applicable", never a pass,
/// and never what makes a run GO (the run's verdict comes from the bars that did judge).
#[test]
fn a_short_run_is_not_applicable_not_a_pass() {
    let obs = FleetBuilder::new(4, 6).build();
    let v = evaluate(&obs, &broad());
    for id in ["rss_growth", "fd_growth"] {
        let b = soak_bar(&v, id);
        assert!(b.not_applicable, "{b:#?}");
        assert_eq!(b.verdict, Outcome::Unknown, "never GO");
        assert!(
            b.reason.starts_with("not applicable: 6 min judged"),
            "{}",
            b.reason
        );
        assert!(b.reason.contains("not a pass"), "{}", b.reason);
    }
    assert_eq!(v.verdict, Outcome::Go, "the other bars judged the run");
    // Nothing else judged: not applicable cannot carry the run to GO.
    let mut only_warmup = FleetBuilder::new(4, 2);
    only_warmup.warmup = 2;
    let v = evaluate(&only_warmup.build(), &broad());
    assert!(soak_bar(&v, "rss_growth").not_applicable);
    assert_eq!(v.verdict, Outcome::Unknown);
}

#[test]
fn missing_process_metrics_on_a_long_run_are_unknown() {
    let mut obs = half_hour();
    remove_gauge(&mut obs, "node-2", RSS);
    let v = evaluate(&obs, &broad());
    let b = soak_bar(&v, "rss_growth");
    assert_eq!(b.verdict, Outcome::Unknown, "{b:#?}");
    assert!(!b.not_applicable);
    assert_eq!(b.nodes, vec!["node-2".to_string()]);
    assert!(
        b.reason
            .contains("node-2 has no `process_resident_memory_bytes` samples"),
        "{}",
        b.reason
    );
    assert_eq!(v.verdict, Outcome::Unknown);
    // A leak elsewhere still fails the bar: a definite failure outranks missing evidence.
    trend(
        &mut obs,
        "node-0",
        RSS,
        judged_start(&half_hour()),
        HEALTHY_RSS_BYTES,
    );
    assert_eq!(
        soak_bar(&evaluate(&obs, &broad()), "rss_growth").verdict,
        Outcome::NoGo
    );
}

/// The minimum span is profile data: a short test run judges leaks with an override.
#[test]
fn the_minimum_span_is_profile_data() {
    let text = broad()
        .source()
        .replace("min_span_ms = 1200000", "min_span_ms = 240000");
    let profile = Profile::from_toml_str(&text, "short-leaks.toml").unwrap();
    let mut obs = FleetBuilder::new(4, 6).build();
    let (s1, _) = span(&obs, 1);
    trend(&mut obs, "node-0", FDS, s1, 600.0); // +10 a minute
    let v = evaluate(&obs, &profile);
    assert_eq!(soak_bar(&v, "fd_growth").verdict, Outcome::NoGo);
    assert_eq!(soak_bar(&v, "rss_growth").verdict, Outcome::Go);
}

#[test]
fn bad_resource_bars_are_rejected() {
    let base = "name = 'x'\n[[resource]]\nid = 'r'\ngauge = 'g'\nmin_span_ms = 1000\n";
    let err = Profile::from_toml_str(base, "x.toml")
        .err()
        .unwrap()
        .kind
        .to_string();
    assert!(err.contains("max_growth_per_hour"), "{err}");
    let err = Profile::from_toml_str(&format!("{base}max_rise_per_hour = -1\n"), "x.toml")
        .err()
        .unwrap()
        .kind
        .to_string();
    assert!(err.contains("≥ 0"), "{err}");
    assert!(Profile::from_toml_str(&format!("{base}max_rise_per_hour = 1\n"), "x.toml").is_ok());
}

/// A healthy node's RSS climbs in allocator high-water steps: one node of a real healthy
/// 30-minute run rose 1.2 MiB (10.6 %/h of 22 MiB; docs/PERFORMANCE.md). That is within the
/// 2 MiB noise floor and must not be called a leak; the GO says why. Twice the rate, a rise of
/// 2.5 MiB over the same half hour, is beyond it and NO-GO.
#[test]
fn allocator_high_water_within_the_noise_floor_is_no_leak_but_a_faster_rise_is() {
    const MIB: f64 = 1024.0 * 1024.0;
    let mut obs = half_hour();
    let from = judged_start(&obs);
    trend(&mut obs, "node-1", RSS, from, 2.4 * MIB);
    let v = evaluate(&obs, &broad());
    let b = soak_bar(&v, "rss_growth");
    assert_eq!(b.verdict, Outcome::Go, "{b:#?}");
    assert!(
        b.reason.contains("(node-1: +1.") && b.reason.contains("within noise 2 MiB"),
        "{}",
        b.reason
    );

    let mut obs = half_hour();
    trend(&mut obs, "node-1", RSS, from, 5.0 * MIB);
    let v = evaluate(&obs, &broad());
    let b = soak_bar(&v, "rss_growth");
    assert_eq!(b.verdict, Outcome::NoGo, "{b:#?}");
    assert!(b.reason.contains("beyond noise 2 MiB"), "{}", b.reason);
}
