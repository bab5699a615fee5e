//! Evidence gaps are evidence, and nothing judged is nothing passed: regression tests named
//! after each way a verdict could come from missing evidence.

use soak_gates::model::SampleOutcome;
use soak_gates::testkit::{FleetBuilder, bump, drop_samples, span};
use soak_gates::{BarResult, Outcome, Profile, Verdict, evaluate};

fn broad() -> Profile {
    Profile::builtin("broad-launch").unwrap()
}

fn limited() -> Profile {
    Profile::builtin("limited-production").unwrap()
}

fn bar<'v>(v: &'v Verdict, w: usize, id: &str) -> &'v BarResult {
    v.windows[w].bars.iter().find(|b| b.bar == id).unwrap()
}

fn soak_bar<'v>(v: &'v Verdict, id: &str) -> &'v BarResult {
    v.soak_bars.iter().find(|b| b.bar == id).unwrap()
}

#[test]
fn failed_sampling_attempts_are_listed_in_their_window() {
    let mut obs = FleetBuilder::new(4, 4).build();
    let (s2, e2) = span(&obs, 2);
    drop_samples(&mut obs, "node-3", s2 + 15_000, s2 + 45_000);
    // One more at the closing boundary of window 2, one at the start of window 3.
    drop_samples(&mut obs, "node-1", e2, e2 + 1);
    let v = evaluate(&obs, &broad());
    let failures = &v.windows[2].sampling_failures;
    assert_eq!(failures.len(), 2, "{failures:#?}");
    let node3 = failures.iter().find(|f| f.node == "node-3").unwrap();
    assert_eq!(
        (node3.from_ms, node3.to_ms, node3.attempts),
        (s2 + 20_000, s2 + 40_000, 3)
    );
    assert_eq!(node3.error, "connection refused");
    let node1 = failures.iter().find(|f| f.node == "node-1").unwrap();
    assert_eq!((node1.from_ms, node1.attempts), (e2, 1));
    assert!(v.windows[1].sampling_failures.is_empty());
    assert!(
        v.windows[3].sampling_failures.is_empty(),
        "(start, end]: e2 is window 2's"
    );
}

/// The post sample at the window's closing boundary failed; the next sample (10 s later) would
/// let a delta be interpolated across the boundary. It must not: the node has no closing
/// evidence for the window, and every bar reading it is UNKNOWN for it.
#[test]
fn failed_closing_sample_is_unknown_even_when_a_later_sample_bridges_it() {
    let mut obs = FleetBuilder::new(4, 3).build();
    let (_, e1) = span(&obs, 1);
    drop_samples(&mut obs, "node-1", e1, e1 + 1);
    for profile in [broad(), limited()] {
        let v = evaluate(&obs, &profile);
        let telemetry = bar(&v, 1, "telemetry");
        assert_eq!(telemetry.verdict, Outcome::Unknown, "{telemetry:#?}");
        assert_eq!(telemetry.nodes, vec!["node-1".to_string()]);
        assert!(
            telemetry
                .reason
                .contains("no closing evidence: the sample at")
                && telemetry.reason.contains("failed (connection refused)"),
            "{}",
            telemetry.reason
        );
        let drops = bar(&v, 1, "recv_pump_dropped");
        assert_eq!(drops.verdict, Outcome::Unknown, "{drops:#?}");
        assert_eq!(drops.nodes, vec!["node-1".to_string()]);
        assert_ne!(v.windows[1].verdict, Outcome::Go);
        assert!(v.gaps.iter().any(|g| g.node == "node-1" && g.window == 1));
        // The next window starts from the last good sample and closes with evidence.
        assert_eq!(v.windows[2].verdict, Outcome::Go, "{:#?}", v.windows[2]);
        assert_ne!(v.verdict, Outcome::Go);
    }
    // What was definitely seen before the failed boundary still fails the bar.
    let (s1, _) = span(&obs, 1);
    bump(
        &mut obs,
        "node-1",
        "recv_pump_dropped_full_total",
        s1 + 15_000,
        3,
    );
    let v = evaluate(&obs, &broad());
    assert_eq!(bar(&v, 1, "recv_pump_dropped").verdict, Outcome::NoGo);
}

/// A sample interval whose gap tolerance (2.5 × 10 s) is longer than the 12 s window: a span of
/// 14 s with no good sample is a gap, not "one missed sample".
#[test]
fn gap_tolerance_never_exceeds_the_window() {
    let mut builder = FleetBuilder::new(3, 3);
    builder.interval_ms = 2_000;
    builder.window_ms = 12_000;
    let mut obs = builder.build();
    obs.run.sample_interval_ms = 10_000;
    let clean = evaluate(&obs, &broad());
    let telemetry = bar(&clean, 1, "telemetry");
    assert_eq!(telemetry.verdict, Outcome::Go);
    assert!(
        telemetry.reason.contains("no step over 12 s"),
        "{}",
        telemetry.reason
    );
    let (s1, _) = span(&obs, 1);
    // Good samples at s1 − 2 s and s1 + 12 s (the window's end): 14 s unobserved.
    drop_samples(&mut obs, "node-2", s1 - 1_000, s1 + 12_000);
    let v = evaluate(&obs, &broad());
    let telemetry = bar(&v, 1, "telemetry");
    assert_eq!(telemetry.verdict, Outcome::Unknown, "{telemetry:#?}");
    assert!(
        v.gaps
            .iter()
            .any(|g| g.node == "node-2" && g.window == 1 && g.to_ms - g.from_ms == 14_000),
        "{:#?}",
        v.gaps
    );
}

/// Sampling only at the window boundaries (interval = window): a missing post sample is a gap,
/// whether the attempt failed or was never recorded.
#[test]
fn pre_post_only_sampling_missing_post_is_a_gap() {
    let mut builder = FleetBuilder::new(3, 3);
    builder.interval_ms = 60_000;
    let healthy = builder.build();
    assert_eq!(evaluate(&healthy, &broad()).verdict, Outcome::Go);
    let (_, e1) = span(&healthy, 1);
    let mut failed = healthy.clone();
    drop_samples(&mut failed, "node-0", e1, e1 + 1);
    let mut absent = healthy.clone();
    absent
        .samples
        .get_mut("node-0")
        .unwrap()
        .retain(|s| s.at_ms != e1);
    for obs in [failed, absent] {
        let v = evaluate(&obs, &broad());
        assert_eq!(bar(&v, 1, "telemetry").verdict, Outcome::Unknown);
        let drops = bar(&v, 1, "recv_pump_dropped");
        assert_eq!(drops.verdict, Outcome::Unknown, "{drops:#?}");
        assert!(v.gaps.iter().any(|g| g.node == "node-0" && g.window == 1));
        assert_ne!(v.verdict, Outcome::Go);
    }
}

/// GO-from-nothing path 1: SIGINT during the warm-up leaves one partial warm-up window.
#[test]
fn interrupted_warm_up_is_unknown() {
    let mut builder = FleetBuilder::new(4, 1);
    builder.warmup = 1;
    let mut obs = builder.build();
    obs.run.planned_windows = Some(4);
    obs.windows[0].end_ms = obs.windows[0].start_ms + 20_000;
    for profile in [broad(), limited()] {
        let v = evaluate(&obs, &profile);
        let windows = soak_bar(&v, "windows");
        assert_eq!(windows.verdict, Outcome::Unknown, "{windows:#?}");
        assert_eq!(windows.value, Some(0.0));
        assert!(
            windows.reason.contains("interrupted after 0 of 4 windows"),
            "{}",
            windows.reason
        );
        assert_eq!(v.verdict, Outcome::Unknown);
    }
    // Without a recorded plan: a warm-up window alone judged nothing.
    obs.run.planned_windows = None;
    obs.run.window_ms = None;
    obs.windows[0].end_ms = obs.windows[0].start_ms + 60_000;
    let v = evaluate(&obs, &broad());
    let windows = soak_bar(&v, "windows");
    assert_eq!(windows.verdict, Outcome::Unknown);
    assert!(
        windows.reason.contains("no window judged"),
        "{}",
        windows.reason
    );
    assert_eq!(v.verdict, Outcome::Unknown);
}

/// GO-from-nothing path 2: a window directory deleted from the proof (checked against the
/// planned count).
#[test]
fn deleted_window_is_unknown_against_the_planned_count() {
    let mut obs = FleetBuilder::new(4, 4).build();
    assert_eq!(evaluate(&obs, &limited()).verdict, Outcome::Go);
    obs.windows.remove(2);
    let v = evaluate(&obs, &limited());
    let windows = soak_bar(&v, "windows");
    assert_eq!(windows.verdict, Outcome::Unknown);
    assert!(
        windows.reason.contains("windows missing from the proof: 2"),
        "{}",
        windows.reason
    );
    assert_eq!(v.verdict, Outcome::Unknown);
}

#[test]
fn fewer_windows_than_planned_is_unknown_whatever_the_windows_say() {
    let mut obs = FleetBuilder::new(4, 2).build();
    obs.run.planned_windows = Some(4);
    let v = evaluate(&obs, &limited());
    assert!(v.windows.iter().all(|w| w.verdict == Outcome::Go));
    let windows = soak_bar(&v, "windows");
    assert_eq!(windows.verdict, Outcome::Unknown);
    assert!(
        windows.reason.contains("interrupted after 2 of 4 windows"),
        "{}",
        windows.reason
    );
    assert_eq!(v.verdict, Outcome::Unknown);
}

#[test]
fn partial_window_shorter_than_half_its_interval_is_not_go() {
    let mut obs = FleetBuilder::new(4, 3).build();
    // The last window stopped 25 s in (the runner records the partial window of a SIGINT).
    obs.windows[2].end_ms = obs.windows[2].start_ms + 25_000;
    obs.run.planned_windows = Some(3);
    let v = evaluate(&obs, &limited());
    assert!(v.windows[2].partial);
    let span_bar = bar(&v, 2, "window_span");
    assert_eq!(span_bar.verdict, Outcome::Unknown);
    assert!(
        span_bar.reason.contains("partial window: 25 s"),
        "{}",
        span_bar.reason
    );
    assert_eq!(v.windows[2].verdict, Outcome::Unknown);
    assert_eq!(soak_bar(&v, "windows").value, Some(2.0));
    assert_ne!(v.verdict, Outcome::Go);
    // Half or more of the interval is judged as usual.
    obs.windows[2].end_ms = obs.windows[2].start_ms + 30_000;
    let v = evaluate(&obs, &limited());
    assert!(!v.windows[2].partial);
    assert_eq!(v.windows[2].verdict, Outcome::Go);
}

#[test]
fn warm_up_windows_are_not_counted_as_judged() {
    let mut builder = FleetBuilder::new(4, 4);
    builder.warmup = 1;
    let v = evaluate(&builder.build(), &broad());
    let windows = soak_bar(&v, "windows");
    assert_eq!(windows.value, Some(3.0), "{windows:#?}");
    assert!(
        windows
            .reason
            .contains("3 windows judged (+1 warm-up not judged)"),
        "{}",
        windows.reason
    );
    assert_eq!(v.verdict, Outcome::Go);
}

/// A node that was never sampled in a window has no closing evidence there (no good sample
/// inside), whatever the samples around the window say.
#[test]
fn a_window_without_any_good_sample_of_a_node_is_never_go() {
    let mut obs = FleetBuilder::new(3, 3).build();
    let (s1, e1) = span(&obs, 1);
    obs.samples
        .get_mut("node-2")
        .unwrap()
        .retain(|s| s.at_ms <= s1 || s.at_ms > e1);
    let v = evaluate(&obs, &broad());
    assert_eq!(bar(&v, 1, "recv_pump_dropped").verdict, Outcome::Unknown);
    assert_ne!(v.windows[1].verdict, Outcome::Go);
    assert!(
        obs.samples["node-2"]
            .iter()
            .all(|s| matches!(s.outcome, SampleOutcome::Ok(_)))
    );
}
