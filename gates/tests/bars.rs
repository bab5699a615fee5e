//! Every bar and edge case, through the public API.

use soak_gates::model::{Exemption, Recovery, ScenarioStatus};
use soak_gates::testkit::{self, FleetBuilder, bump, drop_samples, restart, set_gauge, span};
use soak_gates::{BarResult, Outcome, Profile, Verdict, evaluate};

fn profile(name: &str) -> Profile {
    Profile::builtin(name).expect("built-in profile loads")
}

fn bar<'v>(verdict: &'v Verdict, window: usize, id: &str) -> &'v BarResult {
    verdict.windows[window]
        .bars
        .iter()
        .find(|b| b.bar == id)
        .unwrap_or_else(|| {
            panic!(
                "bar {id} missing in window {window}: {:#?}",
                verdict.windows[window].bars
            )
        })
}

fn soak_bar<'v>(verdict: &'v Verdict, id: &str) -> &'v BarResult {
    verdict
        .soak_bars
        .iter()
        .find(|b| b.bar == id)
        .unwrap_or_else(|| panic!("soak bar {id} missing"))
}

#[test]
fn healthy_fleet_is_go_under_both_profiles() {
    let obs = FleetBuilder::new(4, 5).build();
    for name in ["limited-production", "broad-launch"] {
        let v = evaluate(&obs, &profile(name));
        assert_eq!(v.verdict, Outcome::Go, "{name}: {v:#?}");
        assert_eq!(v.gate, name);
        assert_eq!(v.windows.len(), 5);
        assert_eq!(
            v.windows[0]
                .phase_a
                .as_ref()
                .map(|p| (p.pairs, p.delivered)),
            Some((12, 12))
        );
    }
}

#[test]
fn evaluation_is_deterministic() {
    let obs = FleetBuilder::new(5, 4).build();
    let p = profile("broad-launch");
    let a = serde_json::to_string(&evaluate(&obs, &p)).unwrap();
    let b = serde_json::to_string(&evaluate(&obs, &p)).unwrap();
    assert_eq!(a, b);
}

#[test]
fn phase_a_failed_pair_is_no_go_and_names_the_pair() {
    let mut obs = FleetBuilder::new(3, 2).build();
    let pair = &obs.windows[1].phase_a.as_ref().unwrap().pairs[2];
    let (from, to) = (pair.from.clone(), pair.to.clone());
    testkit::set_pair(&mut obs, 1, &from, &to, "timeout", Some(0));
    let v = evaluate(&obs, &profile("limited-production"));
    let b = bar(&v, 1, "phase_a");
    assert_eq!(b.verdict, Outcome::NoGo);
    assert_eq!(b.value, Some(5.0));
    assert_eq!(b.threshold, "== 6");
    assert!(
        b.reason.contains(&format!("{from}→{to} (timeout)")),
        "{}",
        b.reason
    );
    assert!(b.nodes.contains(&from) && b.nodes.contains(&to));
    assert_eq!(bar(&v, 0, "phase_a").verdict, Outcome::Go);
    assert_eq!(v.verdict, Outcome::NoGo);
    assert_eq!(soak_bar(&v, "phase_a_aggregate").verdict, Outcome::NoGo);
}

#[test]
fn phase_a_missing_pair_is_unknown() {
    let mut obs = FleetBuilder::new(3, 1).build();
    obs.windows[0].phase_a.as_mut().unwrap().pairs.pop();
    let v = evaluate(&obs, &profile("limited-production"));
    assert_eq!(bar(&v, 0, "phase_a").verdict, Outcome::Unknown);
    assert_eq!(v.verdict, Outcome::Unknown);
}

#[test]
fn phase_a_absent_where_baseline_ran_is_unknown() {
    let mut obs = FleetBuilder::new(3, 2).build();
    obs.windows[0].phase_a = None;
    let v = evaluate(&obs, &profile("broad-launch"));
    let b = bar(&v, 0, "phase_a");
    assert_eq!(b.verdict, Outcome::Unknown);
    assert!(b.reason.contains("no Phase A matrix"), "{}", b.reason);
}

#[test]
fn phase_a_absent_without_baseline_is_not_judged_but_the_soak_needs_some() {
    let mut obs = FleetBuilder::new(3, 1).build();
    obs.windows[0].phase_a = None;
    obs.windows[0].scenarios.retain(|s| s.name != "baseline");
    let v = evaluate(&obs, &profile("limited-production"));
    assert!(v.windows[0].bars.iter().all(|b| b.bar != "phase_a"));
    assert_eq!(soak_bar(&v, "phase_a_aggregate").verdict, Outcome::Unknown);
    assert_eq!(v.verdict, Outcome::Unknown);
}

#[test]
fn phase_a_exemption_removes_pairs_and_is_reported() {
    let mut obs = FleetBuilder::new(3, 1).build();
    for p in obs.windows[0].phase_a.as_mut().unwrap().pairs.iter_mut() {
        if p.from == "node-2" || p.to == "node-2" {
            p.delivered = false;
            p.outcome = "unreachable".into();
        }
    }
    let mut partition = testkit::completed("iptables_partition");
    partition.targets = vec!["node-2".into()];
    partition.exemptions = vec![Exemption {
        links: Vec::new(),
        pairs: Vec::new(),
        bar: "phase_a".into(),
        nodes: vec!["node-2".into()],
        reason: "partitioned on purpose".into(),
    }];
    obs.windows[0].scenarios.push(partition);
    let v = evaluate(&obs, &profile("limited-production"));
    let b = bar(&v, 0, "phase_a");
    assert_eq!(b.verdict, Outcome::Go, "{b:#?}");
    assert_eq!(b.exemptions.len(), 1);
    assert_eq!(
        v.windows[0].phase_a.as_ref().map(|p| (p.pairs, p.exempted)),
        Some((2, 4))
    );
}

#[test]
fn skipped_scenario_grants_no_exemption() {
    let mut obs = FleetBuilder::new(3, 1).build();
    let at = span(&obs, 0).0 + 25_000;
    bump(&mut obs, "node-1", "recv_pump_dropped_full_total", at, 3);
    let mut netem = testkit::completed("netem_delay");
    netem.status = ScenarioStatus::Skipped {
        reason: "no --allow-netem".into(),
    };
    netem.exemptions = vec![Exemption {
        links: Vec::new(),
        pairs: Vec::new(),
        bar: "recv_pump_dropped".into(),
        nodes: vec!["node-1".into()],
        reason: "under netem".into(),
    }];
    obs.windows[0].scenarios.push(netem);
    let v = evaluate(&obs, &profile("limited-production"));
    assert_eq!(bar(&v, 0, "recv_pump_dropped").verdict, Outcome::NoGo);
    assert!(bar(&v, 0, "recv_pump_dropped").exemptions.is_empty());
}

#[test]
fn counter_bar_per_node_fails_on_any_drop() {
    let mut obs = FleetBuilder::new(4, 3).build();
    let at = span(&obs, 1).0 + 15_000;
    bump(&mut obs, "node-3", "recv_pump_dropped_full_total", at, 1);
    let v = evaluate(&obs, &profile("broad-launch"));
    let b = bar(&v, 1, "recv_pump_dropped");
    assert_eq!(b.verdict, Outcome::NoGo);
    assert_eq!(b.nodes, vec!["node-3".to_string()]);
    assert_eq!(b.value, Some(1.0));
    assert_eq!(b.threshold, "<= 0");
    // The drop is attributed to one window only.
    assert_eq!(bar(&v, 0, "recv_pump_dropped").verdict, Outcome::Go);
    assert_eq!(bar(&v, 2, "recv_pump_dropped").verdict, Outcome::Go);
}

#[test]
fn dispatcher_timeouts_limit_is_inclusive() {
    let mut obs = FleetBuilder::new(3, 2).build();
    let at = span(&obs, 0).0 + 5_000;
    bump(&mut obs, "node-0", "dispatcher_timeouts_total", at, 5);
    let at = span(&obs, 1).0 + 5_000;
    bump(&mut obs, "node-0", "dispatcher_timeouts_total", at, 6);
    let v = evaluate(&obs, &profile("limited-production"));
    assert_eq!(bar(&v, 0, "dispatcher_timeouts").verdict, Outcome::Go);
    assert_eq!(bar(&v, 1, "dispatcher_timeouts").verdict, Outcome::NoGo);
}

#[test]
fn counter_ratio_edge_cases() {
    // numerator 0 → 0 even with a zero denominator.
    let mut obs = FleetBuilder::new(3, 3).build();
    let (s0, _) = span(&obs, 0);
    // Window 0: completions stop on node-1 (denominator 0) but no send timeouts: ratio 0.
    for sample in obs.samples.get_mut("node-1").unwrap().iter_mut() {
        if let soak_gates::model::SampleOutcome::Ok(d) = &mut sample.outcome {
            d.counters.insert("dispatcher_completed_total".into(), 7);
        }
    }
    // Window 1: one send timeout on node-1 with denominator 0 → fail.
    let at = span(&obs, 1).0 + 5_000;
    bump(&mut obs, "node-1", "peer_send_timeouts_total", at, 1);
    // Window 2: node-2 ratio 300 / 6000 = 0.05 ≤ 0.25 → GO.
    let at = span(&obs, 2).0 + 5_000;
    bump(&mut obs, "node-2", "peer_send_timeouts_total", at, 300);
    let v = evaluate(&obs, &profile("broad-launch"));
    let _ = s0;
    let b0 = bar(&v, 0, "send_timeout_ratio");
    assert_eq!(b0.verdict, Outcome::Go, "{b0:#?}");
    let b1 = bar(&v, 1, "send_timeout_ratio");
    assert_eq!(b1.verdict, Outcome::NoGo, "{b1:#?}");
    assert_eq!(b1.value, None, "an infinite ratio has no value");
    assert!(b1.reason.contains("denominator 0"), "{}", b1.reason);
    assert_eq!(bar(&v, 2, "send_timeout_ratio").verdict, Outcome::Go);
    // Over the bar: 2000 / 6000.
    let at = span(&obs, 2).0 + 6_000;
    bump(&mut obs, "node-2", "peer_send_timeouts_total", at, 1_700);
    let v = evaluate(&obs, &profile("broad-launch"));
    assert_eq!(bar(&v, 2, "send_timeout_ratio").verdict, Outcome::NoGo);
}

#[test]
fn send_timeouts_absolute_in_limited_production() {
    let mut obs = FleetBuilder::new(3, 2).build();
    let at = span(&obs, 0).0 + 5_000;
    bump(&mut obs, "node-0", "peer_send_timeouts_total", at, 200);
    let at = span(&obs, 1).0 + 5_000;
    bump(&mut obs, "node-0", "peer_send_timeouts_total", at, 201);
    let v = evaluate(&obs, &profile("limited-production"));
    assert_eq!(bar(&v, 0, "send_timeouts").verdict, Outcome::Go);
    assert_eq!(bar(&v, 1, "send_timeouts").verdict, Outcome::NoGo);
}

#[test]
fn gauge_and_gauge_ratio_bars() {
    let mut obs = FleetBuilder::new(3, 3).build();
    let (s1, e1) = span(&obs, 1);
    // known = 4 per node; 1/4 = 0.25 > 0.12 for one sample in window 1.
    set_gauge(
        &mut obs,
        "node-1",
        "suppressed_topic_peers",
        s1 + 20_000,
        s1 + 30_000,
        1.0,
    );
    // Window 2: suppressed > 0 with known 0 → infinite ratio → fail.
    let (s2, _) = span(&obs, 2);
    set_gauge(
        &mut obs,
        "node-2",
        "suppressed_topic_peers",
        s2 + 20_000,
        s2 + 30_000,
        1.0,
    );
    set_gauge(
        &mut obs,
        "node-2",
        "known_topic_peers",
        s2 + 20_000,
        s2 + 30_000,
        0.0,
    );
    let v = evaluate(&obs, &profile("broad-launch"));
    assert_eq!(bar(&v, 0, "suppression_ratio").verdict, Outcome::Go);
    let b = bar(&v, 1, "suppression_ratio");
    assert_eq!((b.verdict, b.value), (Outcome::NoGo, Some(0.25)));
    assert_eq!(b.nodes, vec!["node-1".to_string()]);
    assert_eq!(bar(&v, 2, "suppression_ratio").verdict, Outcome::NoGo);
    let _ = e1;
    // Absolute gauge in limited production.
    set_gauge(
        &mut obs,
        "node-0",
        "suppressed_topic_peers",
        s1 + 10_000,
        s1 + 20_000,
        201.0,
    );
    let v = evaluate(&obs, &profile("limited-production"));
    assert_eq!(bar(&v, 1, "suppressed_peers").verdict, Outcome::NoGo);
    assert_eq!(bar(&v, 0, "suppressed_peers").verdict, Outcome::Go);
}

#[test]
fn outbound_high_water_in_broad_launch() {
    let mut obs = FleetBuilder::new(3, 2).build();
    let at = span(&obs, 1).0 + 30_000;
    bump(&mut obs, "node-2", "outbound_high_water_total", at, 1);
    let v = evaluate(&obs, &profile("broad-launch"));
    assert_eq!(bar(&v, 1, "outbound_high_water").verdict, Outcome::NoGo);
    let lp = evaluate(&obs, &profile("limited-production"));
    assert_eq!(
        lp.verdict,
        Outcome::Go,
        "limited production has no high-water bar"
    );
}

#[test]
fn recovery_bar() {
    let mut obs = FleetBuilder::new(3, 3).build();
    let mut r = testkit::completed("restart_node");
    r.targets = vec!["node-1".into()];
    r.recovery = Some(Recovery {
        node: "node-1".into(),
        recovered_after_ms: Some(25_000),
    });
    obs.windows[0].scenarios.push(r.clone());
    r.recovery = Some(Recovery {
        node: "node-1".into(),
        recovered_after_ms: Some(45_000),
    });
    obs.windows[1].scenarios.push(r.clone());
    r.recovery = Some(Recovery {
        node: "node-1".into(),
        recovered_after_ms: None,
    });
    obs.windows[2].scenarios.push(r);
    let broad = evaluate(&obs, &profile("broad-launch"));
    assert_eq!(bar(&broad, 0, "recovery").verdict, Outcome::Go);
    assert_eq!(bar(&broad, 1, "recovery").verdict, Outcome::NoGo);
    assert_eq!(bar(&broad, 2, "recovery").verdict, Outcome::NoGo);
    assert!(
        bar(&broad, 2, "recovery")
            .reason
            .contains("never recovered")
    );
    let limited = evaluate(&obs, &profile("limited-production"));
    assert_eq!(bar(&limited, 1, "recovery").verdict, Outcome::Go);
    assert_eq!(bar(&limited, 2, "recovery").verdict, Outcome::NoGo);
}

#[test]
fn fanout_bar() {
    let mut obs = FleetBuilder::new(3, 3).build();
    obs.windows[1].fanout.as_mut().unwrap().subscribers[2].received = 19;
    obs.windows[2].fanout.as_mut().unwrap().subscribers[1].error = Some("timeout".into());
    let v = evaluate(&obs, &profile("broad-launch"));
    assert_eq!(bar(&v, 0, "fanout").verdict, Outcome::Go);
    let b = bar(&v, 1, "fanout");
    assert_eq!(b.verdict, Outcome::NoGo);
    assert_eq!(b.nodes, vec!["node-2".to_string()]);
    assert_eq!(bar(&v, 2, "fanout").verdict, Outcome::Unknown);
    // 59/60 ≥ 0.99? No: 0.983 < 0.99 → NO-GO in limited production too.
    let v = evaluate(&obs, &profile("limited-production"));
    assert_eq!(bar(&v, 1, "fanout").verdict, Outcome::NoGo);
}

#[test]
fn scenarios_bar_skipped_and_failed_are_never_go() {
    let mut obs = FleetBuilder::new(3, 2).build();
    let mut s = testkit::completed("netem_delay");
    s.status = ScenarioStatus::Skipped {
        reason: "no --allow-netem".into(),
    };
    obs.windows[0].scenarios.push(s.clone());
    s.status = ScenarioStatus::Failed {
        error: "fault never took effect".into(),
    };
    obs.windows[1].scenarios.push(s);
    let v = evaluate(&obs, &profile("broad-launch"));
    for w in 0..2 {
        assert_eq!(bar(&v, w, "scenarios").verdict, Outcome::Unknown);
        assert_ne!(v.windows[w].verdict, Outcome::Go);
    }
    assert_eq!(v.windows[0].scenarios[2].status, "SKIPPED");
    assert_eq!(v.windows[1].scenarios[2].status, "FAILED");
}

#[test]
fn telemetry_gap_is_unknown_and_recorded() {
    let mut obs = FleetBuilder::new(3, 3).build();
    let (s1, _) = span(&obs, 1);
    drop_samples(&mut obs, "node-0", s1 + 10_000, s1 + 50_000);
    let v = evaluate(&obs, &profile("limited-production"));
    let b = bar(&v, 1, "telemetry");
    assert_eq!(b.verdict, Outcome::Unknown);
    assert_eq!(b.nodes, vec!["node-0".to_string()]);
    assert_eq!(v.windows[1].verdict, Outcome::Unknown);
    assert_eq!(v.windows[0].verdict, Outcome::Go);
    assert!(v.gaps.iter().any(|g| g.node == "node-0" && g.window == 1));
    // Counters are monotonic and the same instance spans the gap: the strict drop bar is still
    // decidable (0 across the gap is 0 inside it).
    assert_eq!(bar(&v, 1, "recv_pump_dropped").verdict, Outcome::Go);
}

#[test]
fn one_missed_sample_is_within_tolerance() {
    let mut obs = FleetBuilder::new(3, 2).build();
    let (s1, _) = span(&obs, 1);
    drop_samples(&mut obs, "node-0", s1 + 20_000, s1 + 30_000);
    let v = evaluate(&obs, &profile("limited-production"));
    assert_eq!(v.verdict, Outcome::Go, "{:#?}", v.windows[1].bars);
}

#[test]
fn integrity_error_is_no_go_on_telemetry_and_unknown_on_the_counter() {
    let mut obs = FleetBuilder::new(3, 2).build();
    let (s1, _) = span(&obs, 1);
    // The timeout counter goes backwards (3 → 0) within one instance.
    for sample in obs.samples.get_mut("node-1").unwrap().iter_mut() {
        if let soak_gates::model::SampleOutcome::Ok(d) = &mut sample.outcome {
            let value = if sample.at_ms >= s1 + 20_000 { 0 } else { 3 };
            d.counters.insert("dispatcher_timeouts_total".into(), value);
        }
    }
    let v = evaluate(&obs, &profile("limited-production"));
    assert_eq!(bar(&v, 1, "telemetry").verdict, Outcome::NoGo);
    assert_eq!(bar(&v, 1, "dispatcher_timeouts").verdict, Outcome::Unknown);
    assert_eq!(v.integrity_errors.len(), 1);
    assert_eq!(v.integrity_errors[0].node, "node-1");
}

#[test]
fn restart_is_recorded_and_not_a_failure() {
    let mut obs = FleetBuilder::new(3, 3).build();
    let (s1, _) = span(&obs, 1);
    restart(&mut obs, "node-2", s1 + 30_000, "inst-2-b");
    let v = evaluate(&obs, &profile("broad-launch"));
    assert_eq!(v.verdict, Outcome::Go, "{v:#?}");
    assert_eq!(v.restarts.len(), 1);
    assert_eq!(v.restarts[0].window, Some(1));
    assert_eq!(v.restarts[0].new_instance, "inst-2-b");
}

#[test]
fn all_nodes_exempt_is_unknown_not_go() {
    let mut obs = FleetBuilder::new(2, 1).build();
    let mut s = testkit::completed("chaos");
    s.exemptions = vec![Exemption {
        links: Vec::new(),
        pairs: Vec::new(),
        bar: "recv_pump_dropped".into(),
        nodes: vec!["node-0".into(), "node-1".into()],
        reason: "everything on fire".into(),
    }];
    obs.windows[0].scenarios.push(s);
    let v = evaluate(&obs, &profile("limited-production"));
    assert_eq!(bar(&v, 0, "recv_pump_dropped").verdict, Outcome::Unknown);
}

#[test]
fn empty_observations_are_unknown() {
    let obs = FleetBuilder::new(0, 0).build();
    for name in ["limited-production", "broad-launch"] {
        assert_eq!(evaluate(&obs, &profile(name)).verdict, Outcome::Unknown);
    }
    let obs = FleetBuilder::new(3, 0).build();
    assert_eq!(
        evaluate(&obs, &profile("broad-launch")).verdict,
        Outcome::Unknown
    );
}

#[test]
fn exemption_is_reported_on_the_bar() {
    let mut obs = FleetBuilder::new(3, 1).build();
    let at = span(&obs, 0).0 + 25_000;
    bump(&mut obs, "node-1", "dispatcher_timeouts_total", at, 50);
    let mut s = testkit::completed("netem_delay");
    s.targets = vec!["node-1".into()];
    s.exemptions = vec![Exemption {
        links: Vec::new(),
        pairs: Vec::new(),
        bar: "dispatcher_timeouts".into(),
        nodes: vec!["node-1".into()],
        reason: "node under netem".into(),
    }];
    obs.windows[0].scenarios.push(s);
    let v = evaluate(&obs, &profile("limited-production"));
    let b = bar(&v, 0, "dispatcher_timeouts");
    assert_eq!(b.verdict, Outcome::Go);
    assert_eq!(b.exemptions[0].reason, "node under netem");
}
