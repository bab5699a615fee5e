//! For every bar of both built-in profiles, a fixture that must fail does fail — and every way
//! evidence can go missing, at the first, a middle and the last window, is never GO.
//!
//! The test walks the profile's own bar lists (window bars, the adaptive policy, the resource
//! bars), so a bar added to a profile without a failing fixture here makes this test fail.

use soak_gates::model::{Check, Observations, Recovery, ScenarioStatus};
use soak_gates::testkit::{
    self, FleetBuilder, HEALTHY_RSS_BYTES, bump, drop_samples, restart, set_gauge, span, trend,
};
use soak_gates::{Outcome, Profile, evaluate};

/// Breaks window 3 of a healthy 4-node, 6-window fleet in the way `bar` must catch; returns the
/// verdict that bar must reach (NO-GO for definite failures, UNKNOWN for missing evidence).
fn break_for(bar: &str, obs: &mut Observations) -> Outcome {
    let (s, e) = span(obs, 3);
    match bar {
        "phase_a" => {
            // The message arrived, but its sender was told it timed out.
            let pair = &mut obs.windows[3].phase_a.as_mut().unwrap().pairs[0];
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
            // Two consecutive windows far above the learned baseline (and the ceiling).
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

/// 3 warm-up windows and 30 judged minutes: long enough for the leak bars.
fn long_healthy() -> Observations {
    let mut builder = FleetBuilder::new(4, 33);
    builder.warmup = 3;
    builder.build()
}

/// Makes node-2 leak what resource bar `id` watches, from the end of the warm-up on.
fn leak_for(id: &str, obs: &mut Observations) {
    let from = span(obs, 3).0;
    match id {
        "rss_growth" => trend(
            obs,
            "node-2",
            "process_resident_memory_bytes",
            from,
            0.5 * HEALTHY_RSS_BYTES,
        ),
        "fd_growth" => trend(obs, "node-2", "process_open_fds", from, 60.0),
        other => {
            panic!("resource bar `{other}` has no leaking fixture: add one to no_false_pass.rs")
        }
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
    for resource in &profile.resources {
        let mut obs = long_healthy();
        assert_eq!(
            evaluate(&obs, &profile).verdict,
            Outcome::Go,
            "{name}: long fixture"
        );
        leak_for(&resource.id, &mut obs);
        let v = evaluate(&obs, &profile);
        let result = v.soak_bars.iter().find(|b| b.bar == resource.id).unwrap();
        assert_eq!(
            result.verdict,
            Outcome::NoGo,
            "{name}/{}: {result:#?}",
            resource.id
        );
        assert_ne!(v.verdict, Outcome::Go, "{name}/{}", resource.id);
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

/// One way evidence can go missing around window `w`.
#[derive(Debug, Clone, Copy)]
enum Edge {
    /// node-1's sample at the window's closing boundary failed.
    ClosingSampleFailed,
    /// node-1 unobserved for 40 s across the window's opening boundary.
    GapAcrossOpening,
    /// node-1 never answered inside the window.
    SilentWholeWindow,
    /// node-1 restarted right after a failed attempt (its last increments are invisible).
    RestartAfterFailedAttempt,
    /// The Phase A matrix of a window whose scenario list says `baseline` ran is missing.
    MatrixMissing,
    /// A pair of the matrix was never attempted.
    PairNeverAttempted,
    /// A fanout subscriber has no result.
    SubscriberMissing,
    /// A destructive scenario was skipped.
    ScenarioSkipped,
    /// The window's directory was deleted from the proof.
    WindowDeleted,
    /// The run was interrupted inside this window (it is partial and the last).
    InterruptedHere,
}

impl Edge {
    const ALL: [Edge; 10] = [
        Edge::ClosingSampleFailed,
        Edge::GapAcrossOpening,
        Edge::SilentWholeWindow,
        Edge::RestartAfterFailedAttempt,
        Edge::MatrixMissing,
        Edge::PairNeverAttempted,
        Edge::SubscriberMissing,
        Edge::ScenarioSkipped,
        Edge::WindowDeleted,
        Edge::InterruptedHere,
    ];

    /// Applies the edge at window `w`; returns whether window `w` itself must not be GO (the
    /// soak never may).
    fn apply(self, obs: &mut Observations, w: usize) -> bool {
        let (s, e) = span(obs, w);
        match self {
            Edge::ClosingSampleFailed => drop_samples(obs, "node-1", e, e + 1),
            Edge::GapAcrossOpening => {
                drop_samples(obs, "node-1", s.saturating_sub(15_000), s + 15_000)
            }
            Edge::SilentWholeWindow => drop_samples(obs, "node-1", s + 1, e + 1),
            Edge::RestartAfterFailedAttempt => {
                bump(obs, "node-1", "recv_pump_dropped_full_total", s + 15_000, 0);
                drop_samples(obs, "node-1", s + 20_000, s + 20_001);
                restart(obs, "node-1", s + 25_000, "inst-1-b");
            }
            Edge::MatrixMissing => obs.windows[w].phase_a = None,
            Edge::PairNeverAttempted => {
                obs.windows[w].phase_a.as_mut().unwrap().pairs.pop();
            }
            Edge::SubscriberMissing => {
                obs.windows[w].fanout.as_mut().unwrap().subscribers.pop();
            }
            Edge::ScenarioSkipped => {
                let mut sc = testkit::completed("restart_node");
                sc.status = ScenarioStatus::Skipped {
                    reason: "--allow-restart not given".into(),
                };
                obs.windows[w].scenarios.push(sc);
            }
            Edge::WindowDeleted => {
                obs.windows.remove(w);
                return false;
            }
            Edge::InterruptedHere => {
                obs.windows.truncate(w + 1);
                obs.windows[w].end_ms = s + 20_000;
            }
        }
        true
    }
}

/// The evidence edge cases walked across windows (first, middle, last) for both profiles:
/// the soak is never GO, and neither is the window the evidence went missing in.
#[test]
fn evidence_edge_cases_across_windows_are_never_go() {
    for name in ["limited-production", "broad-launch"] {
        let profile = Profile::builtin(name).unwrap();
        let healthy = FleetBuilder::new(4, 6).build();
        assert_eq!(evaluate(&healthy, &profile).verdict, Outcome::Go);
        for w in [0, 2, 5] {
            for edge in Edge::ALL {
                let mut obs = healthy.clone();
                let window_level = edge.apply(&mut obs, w);
                let v = evaluate(&obs, &profile);
                assert_ne!(v.verdict, Outcome::Go, "{name}/{edge:?}/window {w}");
                if window_level {
                    let judged = v.windows.iter().find(|x| x.index == w as u32).unwrap();
                    assert_ne!(
                        judged.verdict,
                        Outcome::Go,
                        "{name}/{edge:?}/window {w}: {judged:#?}"
                    );
                }
            }
        }
        // Only warm-up windows: nothing judged.
        let mut only_warmup = FleetBuilder::new(4, 3);
        only_warmup.warmup = 3;
        assert_eq!(
            evaluate(&only_warmup.build(), &profile).verdict,
            Outcome::Unknown,
            "{name}: warm-up only"
        );
    }
}
