//! For every bar of both built-in profiles, a fixture that must fail does fail.
//!
//! The test walks the profile's own bar list, so a bar added to a profile without a failing
//! fixture here makes this test fail.

use soak_gates::model::{Check, Observations, Recovery, ScenarioStatus};
use soak_gates::testkit::{self, FleetBuilder, bump, drop_samples, set_gauge, span};
use soak_gates::{Outcome, Profile, evaluate};

/// Breaks window 3 of a healthy 4-node, 6-window fleet in the way `bar` must catch; returns the
/// verdict that bar must reach (NO-GO for definite failures, UNKNOWN for missing evidence).
fn break_for(bar: &str, obs: &mut Observations) -> Outcome {
    let (s, e) = span(obs, 3);
    match bar {
        "phase_a" => {
            let pair = &mut obs.windows[3].phase_a.as_mut().unwrap().pairs[0];
            pair.delivered = false;
            pair.outcome = "timeout".into();
            Outcome::NoGo
        }
        "telemetry" => {
            drop_samples(obs, "node-1", s, e + 1);
            Outcome::Unknown
        }
        "scenarios" => {
            let mut sc = testkit::completed("netem_loss");
            sc.status = ScenarioStatus::Skipped {
                reason: "kernel lacks sch_netem".into(),
            };
            obs.windows[3].scenarios.push(sc);
            Outcome::Unknown
        }
        "recv_pump_dropped" => {
            bump(obs, "node-2", "recv_pump_dropped_full_total", s + 20_000, 1);
            Outcome::NoGo
        }
        "dispatcher_timeouts" => {
            bump(obs, "node-2", "dispatcher_timeouts_total", s + 20_000, 6);
            Outcome::NoGo
        }
        "send_timeouts" => {
            bump(obs, "node-2", "peer_send_timeouts_total", s + 20_000, 201);
            Outcome::NoGo
        }
        "send_timeout_ratio" => {
            bump(obs, "node-2", "peer_send_timeouts_total", s + 20_000, 1_501);
            Outcome::NoGo
        }
        "suppressed_peers" => {
            set_gauge(obs, "node-2", "suppressed_topic_peers", s + 1, e, 201.0);
            Outcome::NoGo
        }
        "suppression_ratio" => {
            set_gauge(
                obs,
                "node-2",
                "suppressed_topic_peers",
                s + 1,
                s + 20_000,
                1.0,
            );
            Outcome::NoGo
        }
        "outbound_high_water" => {
            bump(obs, "node-0", "outbound_high_water_total", e, 1);
            Outcome::NoGo
        }
        "recovery" => {
            let mut sc = testkit::completed("restart_node");
            sc.recovery = Some(Recovery {
                node: "node-3".into(),
                recovered_after_ms: Some(90_001),
            });
            obs.windows[3].scenarios.push(sc);
            Outcome::NoGo
        }
        "fault_effect" => {
            let mut sc = testkit::fault("partition_pair", "partition", &["node-1", "node-2"]);
            if let Some(f) = sc.fault.as_mut() {
                f.effective = Check::NotShown {
                    summary: "DMs across the cut still acked".into(),
                    evidence: serde_json::Value::Null,
                };
            }
            obs.windows[3].scenarios.push(sc);
            Outcome::Unknown
        }
        "fault_residue" => {
            let mut sc = testkit::fault("high_rtt_peer", "delay", &["node-1"]);
            if let Some(f) = sc.fault.as_mut() {
                f.clean = Check::NotShown {
                    summary: "node-1 still holds impairment soak-f1".into(),
                    evidence: serde_json::Value::Null,
                };
            }
            obs.windows[3].scenarios.push(sc);
            Outcome::NoGo
        }
        "partition_heal" => {
            let mut sc = testkit::fault("partition_halves", "partition", &["node-0", "node-3"]);
            if let Some(heal) = sc.fault.as_mut().and_then(|f| f.heal.as_mut()) {
                heal.healed_after_ms = None;
                heal.still_failing = vec!["node-0→node-3".into()];
            }
            obs.windows[3].scenarios.push(sc);
            Outcome::NoGo
        }
        "cooling" => {
            let mut sc = testkit::fault("high_rtt_peer", "delay", &["node-2"]);
            if let Some(c) = sc.fault.as_mut().and_then(|f| f.cooling.as_mut()) {
                c.suppressed = Some(false);
            }
            obs.windows[3].scenarios.push(sc);
            Outcome::NoGo
        }
        "first_attempt" => {
            let mut sc = testkit::fault("idle_then_send", "idle", &[]);
            if let Some(c) = sc.fault.as_mut().and_then(|f| f.first_attempt.as_mut()) {
                c.first_try = 11;
                c.retried = vec!["node-0→node-1".into()];
            }
            obs.windows[3].scenarios.push(sc);
            Outcome::NoGo
        }
        "fanout" => {
            obs.windows[3].fanout.as_mut().unwrap().subscribers[1].received = 10;
            Outcome::NoGo
        }
        "dispatcher_timeout_rate" => {
            // Two consecutive windows far above the learned baseline.
            for w in [3, 4] {
                let (ws, _) = span(obs, w);
                for n in 0..4 {
                    bump(
                        obs,
                        &FleetBuilder::node(n),
                        "dispatcher_timeouts_total",
                        ws + 20_000,
                        30,
                    );
                }
            }
            Outcome::NoGo
        }
        other => panic!("bar `{other}` has no failing fixture: add one to no_false_pass.rs"),
    }
}

fn check_profile(name: &str) {
    let profile = Profile::builtin(name).unwrap();
    let healthy = FleetBuilder::new(4, 6).build();
    assert_eq!(
        evaluate(&healthy, &profile).verdict,
        Outcome::Go,
        "{name}: healthy fixture"
    );
    let mut ids: Vec<String> = profile.bars.iter().map(|b| b.id.clone()).collect();
    if let Some(a) = &profile.adaptive {
        ids.push(a.id.clone());
    }
    for id in ids {
        let mut obs = healthy.clone();
        let expected = break_for(&id, &mut obs);
        let v = evaluate(&obs, &profile);
        let result = v.windows[3]
            .bars
            .iter()
            .find(|b| b.bar == id)
            .unwrap_or_else(|| panic!("{name}/{id}: bar not judged in the broken window"));
        assert_eq!(result.verdict, expected, "{name}/{id}: {result:#?}");
        assert_eq!(v.windows[3].verdict.max(expected), v.windows[3].verdict);
        assert_ne!(
            v.verdict,
            Outcome::Go,
            "{name}/{id}: the soak passed a broken fixture"
        );
    }
}

#[test]
fn every_limited_production_bar_fails_its_fixture() {
    check_profile("limited-production");
}

#[test]
fn every_broad_launch_bar_fails_its_fixture() {
    check_profile("broad-launch");
}

#[test]
fn soak_level_bars_fail_their_fixtures() {
    for name in ["limited-production", "broad-launch"] {
        let profile = Profile::builtin(name).unwrap();
        // No Phase A anywhere: the aggregate cannot pass.
        let mut obs = FleetBuilder::new(4, 3).build();
        for w in &mut obs.windows {
            w.phase_a = None;
            w.scenarios.retain(|s| s.name != "baseline");
        }
        let v = evaluate(&obs, &profile);
        let agg = v
            .soak_bars
            .iter()
            .find(|b| b.bar == "phase_a_aggregate")
            .unwrap();
        assert_eq!(agg.verdict, Outcome::Unknown);
        assert_ne!(v.verdict, Outcome::Go);
        // No windows: nothing judged.
        let v = evaluate(&FleetBuilder::new(4, 0).build(), &profile);
        let windows = v.soak_bars.iter().find(|b| b.bar == "windows").unwrap();
        assert_eq!(windows.verdict, Outcome::Unknown);
    }
}
