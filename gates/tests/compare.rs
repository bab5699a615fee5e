//! `soak_gates::compare` on whole observations: healthy against healthy, a latency regression,
//! counter regressions, and every way of missing evidence ending in `unknown`, never in
//! `no regression`.

use proptest::prelude::*;
use soak_gates::Profile;
use soak_gates::compare::{Classification, Overall, Settings, Side, compare, incomparable};
use soak_gates::model::Observations;
use soak_gates::testkit::{FleetBuilder, bump, drop_samples, span};

fn profile() -> Profile {
    Profile::builtin("broad-launch").expect("built in")
}

fn scenarios() -> Vec<String> {
    vec!["baseline".into(), "fanout_burst".into()]
}

fn run(base: &Observations, candidate: &Observations) -> soak_gates::compare::Report {
    let p = profile();
    let s = scenarios();
    let side = |o| Side {
        observations: o,
        profile: &p,
        scenarios: &s,
    };
    compare(
        &side(base),
        &side(candidate),
        &Settings::default(),
        Vec::new(),
    )
}

fn healthy() -> Observations {
    FleetBuilder::new(4, 5).build()
}

#[test]
fn healthy_against_healthy_is_no_regression() {
    let report = run(&healthy(), &healthy());
    assert_eq!(report.result, Overall::NoRegression, "{report:#?}");
    assert!(report.metrics.iter().any(|m| m.id == "phase_a.latency"));
    assert!(report.metrics.iter().any(|m| m.id == "verdict.phase_a"));
    assert!(
        report
            .metrics
            .iter()
            .any(|m| m.id == "rate.dispatcher_timeouts_total")
    );
    assert!(
        report
            .metrics
            .iter()
            .any(|m| m.id == "ratio.suppression_ratio")
    );
    assert!(report.metrics.iter().any(|m| m.id == "fanout.p99"));
}

#[test]
fn slower_phase_a_is_a_regression_naming_the_metric_and_shift() {
    let mut candidate = healthy();
    for window in &mut candidate.windows {
        for pair in &mut window.phase_a.as_mut().expect("matrix").pairs {
            pair.latency_us = pair.latency_us.map(|us| us + 40_000);
        }
    }
    let report = run(&healthy(), &candidate);
    assert_eq!(report.result, Overall::Regression);
    let regressed: Vec<&str> = report.regressions().map(|m| m.id.as_str()).collect();
    assert_eq!(regressed, ["phase_a.latency"]);
    let metric = report.regressions().next().expect("one");
    assert_eq!(metric.classification, Classification::High);
    assert!(metric.reason.contains("shift +40 ms"), "{}", metric.reason);
}

#[test]
fn drops_in_the_candidate_are_a_regression_on_the_bar_and_the_rate() {
    let base = healthy();
    let mut candidate = healthy();
    for w in 0..candidate.windows.len() {
        let (start, _) = span(&candidate, w);
        for node in 0..4 {
            bump(
                &mut candidate,
                &FleetBuilder::node(node),
                "recv_pump_dropped_full_total",
                start + 20_000,
                7,
            );
        }
    }
    let report = run(&base, &candidate);
    assert_eq!(report.result, Overall::Regression);
    let regressed: Vec<&str> = report.regressions().map(|m| m.id.as_str()).collect();
    assert!(
        regressed.contains(&"verdict.recv_pump_dropped"),
        "{regressed:?}"
    );
    assert!(
        regressed.contains(&"rate.recv_pump_dropped_full_total"),
        "{regressed:?}"
    );
}

#[test]
fn an_evidence_gap_in_the_candidate_is_unknown_not_no_regression() {
    let mut candidate = healthy();
    let (start, end) = span(&candidate, 2);
    drop_samples(&mut candidate, "node-1", start - 5_000, end + 5_000);
    let report = run(&healthy(), &candidate);
    assert_eq!(report.result, Overall::Unknown, "{report:#?}");
    assert!(report.undecided().any(|m| m.id == "verdict.telemetry"));
}

#[test]
fn a_candidate_without_windows_is_unknown() {
    let mut candidate = healthy();
    candidate.windows.clear();
    let report = run(&healthy(), &candidate);
    assert_eq!(report.result, Overall::Unknown);
    assert_eq!(report.candidate.judged_windows, 0);
}

#[test]
fn a_candidate_without_phase_a_latencies_is_unknown() {
    let mut candidate = healthy();
    for window in &mut candidate.windows {
        for pair in &mut window.phase_a.as_mut().expect("matrix").pairs {
            pair.latency_us = None;
        }
    }
    let report = run(&healthy(), &candidate);
    assert_eq!(report.result, Overall::Unknown);
    let latency = report
        .metrics
        .iter()
        .find(|m| m.id == "phase_a.latency")
        .expect("metric");
    assert_eq!(latency.classification, Classification::NoData);
}

#[test]
fn different_gates_nodes_and_scenarios_are_incomparable_with_reasons() {
    let base = healthy();
    let bigger = FleetBuilder::new(5, 5).build();
    let broad = profile();
    let limited = Profile::builtin("limited-production").expect("built in");
    let s = scenarios();
    let only_baseline = vec!["baseline".to_string()];
    let side = |o, p, s| Side {
        observations: o,
        profile: p,
        scenarios: s,
    };
    assert!(incomparable(&side(&base, &broad, &s), &side(&base, &broad, &s)).is_empty());
    let reasons = incomparable(
        &side(&base, &broad, &s),
        &side(&bigger, &limited, &only_baseline),
    );
    assert_eq!(reasons.len(), 3, "{reasons:?}");
    assert!(reasons[0].contains("different gates"));
    assert!(reasons[1].contains("base 4 nodes, candidate 5 nodes"));
    assert!(reasons[2].contains("different scenarios"));
    // The same name with other thresholds is another gate too.
    let mut edited = broad.clone();
    edited.soak.min_windows = 3;
    let reasons = incomparable(&side(&base, &broad, &s), &side(&base, &edited, &s));
    assert_eq!(reasons.len(), 1);
    assert!(reasons[0].contains("differs"), "{reasons:?}");
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(24))]

    /// Missing evidence anywhere in the candidate (a node unsampled for a span) never reads as
    /// "no regression".
    #[test]
    fn missing_candidate_evidence_is_never_no_regression(
        node in 0usize..4,
        window in 0usize..5,
        from in 0u64..40_000,
        len in 25_000u64..120_000,
    ) {
        let mut candidate = healthy();
        let (start, _) = span(&candidate, window);
        drop_samples(&mut candidate, &FleetBuilder::node(node), start + from, start + from + len);
        let report = run(&healthy(), &candidate);
        prop_assert_ne!(report.result, Overall::NoRegression);
    }
}
