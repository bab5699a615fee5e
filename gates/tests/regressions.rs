//! Regression tests named after the false passes and false failures hand-built harnesses shipped.

use soak_gates::model::{Recovery, ScenarioStatus};
use soak_gates::testkit::{self, FleetBuilder, bump, drop_samples, restart, span};
use soak_gates::{BarResult, Outcome, Profile, Verdict, evaluate};

fn bar<'v>(verdict: &'v Verdict, window: usize, id: &str) -> &'v BarResult {
    verdict.windows[window]
        .bars
        .iter()
        .find(|b| b.bar == id)
        .expect("bar present")
}

/// A node whose first sample lands inside window 0 (no pre snapshot) and whose lifetime drop
/// counter is already 500: the window must read 0 new drops, not 500.
#[test]
fn missing_pre_snapshot_does_not_inflate_delta() {
    let mut obs = FleetBuilder::new(3, 2).build();
    let (s0, _) = span(&obs, 0);
    bump(&mut obs, "node-1", "recv_pump_dropped_full_total", 0, 500);
    obs.samples
        .get_mut("node-1")
        .unwrap()
        .retain(|s| s.at_ms > s0);
    let profile = Profile::builtin("limited-production").unwrap();
    let v = evaluate(&obs, &profile);
    let b = bar(&v, 0, "recv_pump_dropped");
    assert_eq!(b.verdict, Outcome::Go, "{b:#?}");
    assert_eq!(b.value, Some(0.0));
    assert_eq!(v.verdict, Outcome::Go);

    // With the first sample later than the gap tolerance the start of the window is unobserved:
    // UNKNOWN — but still never the lifetime value as a spike.
    obs.samples
        .get_mut("node-1")
        .unwrap()
        .retain(|s| s.at_ms > s0 + 30_000);
    let v = evaluate(&obs, &profile);
    let b = bar(&v, 0, "recv_pump_dropped");
    assert_eq!(b.verdict, Outcome::Unknown, "{b:#?}");
    assert_eq!(b.value, Some(0.0));
}

/// A node whose diagnostics endpoint never answers must not read as "no errors".
#[test]
fn unreachable_diagnostics_is_never_go() {
    let mut obs = FleetBuilder::new(3, 3).build();
    drop_samples(&mut obs, "node-2", 0, u64::MAX);
    for name in ["limited-production", "broad-launch"] {
        let v = evaluate(&obs, &Profile::builtin(name).unwrap());
        assert_ne!(v.verdict, Outcome::Go, "{name}");
        for w in 0..3 {
            assert_ne!(v.windows[w].verdict, Outcome::Go, "{name} window {w}");
            let b = bar(&v, w, "recv_pump_dropped");
            assert_eq!(b.verdict, Outcome::Unknown, "{name} window {w}: {b:#?}");
            assert_eq!(b.nodes, vec!["node-2".to_string()]);
            assert!(
                bar(&v, w, "telemetry")
                    .nodes
                    .contains(&"node-2".to_string())
            );
        }
    }
    // A node that is not even in the sample map is the same.
    obs.samples.remove("node-2");
    let v = evaluate(&obs, &Profile::builtin("limited-production").unwrap());
    assert_ne!(v.verdict, Outcome::Go);
    assert!(v.windows.iter().all(|w| w.verdict != Outcome::Go));
}

/// A restart mid-window: drops before (2) and after (3) the restart both count, the counter
/// reset is not a decrease, and the next window is judged on its own.
#[test]
fn restart_mid_window_keeps_increments() {
    let mut obs = FleetBuilder::new(3, 3).build();
    let (s1, _) = span(&obs, 1);
    bump(
        &mut obs,
        "node-0",
        "recv_pump_dropped_full_total",
        s1 + 10_000,
        2,
    );
    restart(&mut obs, "node-0", s1 + 30_000, "inst-0-b");
    bump(
        &mut obs,
        "node-0",
        "recv_pump_dropped_full_total",
        s1 + 40_000,
        3,
    );
    let v = evaluate(&obs, &Profile::builtin("broad-launch").unwrap());
    let b = bar(&v, 1, "recv_pump_dropped");
    assert_eq!(b.verdict, Outcome::NoGo);
    assert_eq!(b.value, Some(5.0), "{b:#?}");
    assert_eq!(bar(&v, 2, "recv_pump_dropped").verdict, Outcome::Go);
    assert_eq!(
        bar(&v, 1, "telemetry").verdict,
        Outcome::Go,
        "a restart is not an integrity error"
    );
    assert_eq!(v.restarts.len(), 1);
    assert!(v.integrity_errors.is_empty());
    assert_eq!(v.windows[2].verdict, Outcome::Go);
}

/// A destructive scenario that was skipped is reported SKIPPED and can never make its window
/// or the soak GO.
#[test]
fn skipped_scenario_is_not_pass() {
    let mut obs = FleetBuilder::new(3, 2).build();
    let mut r = testkit::completed("restart_node");
    r.targets = vec!["node-1".into()];
    r.recovery = Some(Recovery {
        node: "node-1".into(),
        recovered_after_ms: Some(5_000),
    });
    obs.windows[0].scenarios.push(r.clone());
    r.status = ScenarioStatus::Skipped {
        reason: "--allow-restart not given".into(),
    };
    r.recovery = None;
    obs.windows[1].scenarios.push(r);
    for name in ["limited-production", "broad-launch"] {
        let v = evaluate(&obs, &Profile::builtin(name).unwrap());
        assert_eq!(v.windows[0].verdict, Outcome::Go, "{name}");
        assert_eq!(v.windows[1].scenarios[2].status, "SKIPPED");
        assert_eq!(bar(&v, 1, "recovery").verdict, Outcome::Unknown, "{name}");
        assert_eq!(bar(&v, 1, "scenarios").verdict, Outcome::Unknown, "{name}");
        assert_ne!(v.windows[1].verdict, Outcome::Go, "{name}");
        assert_ne!(v.verdict, Outcome::Go, "{name}");
    }
}

#[test]
fn partial_fleet_is_never_go() {
    let broad = Profile::builtin("broad-launch").unwrap();
    let mut obs = FleetBuilder::new(3, 2).build();
    // A healthy run over every inventory host passes, with a coverage bar saying so.
    obs.run.inventory_hosts = Some(3);
    let full = evaluate(&obs, &broad);
    assert_eq!(full.verdict, Outcome::Go);
    let coverage = full.soak_bars.iter().find(|b| b.bar == "coverage").unwrap();
    assert_eq!(coverage.verdict, Outcome::Go);
    // The same evidence from 3 of 4 inventory hosts (one left out under --min-hosts) is not.
    obs.run.inventory_hosts = Some(4);
    let partial = evaluate(&obs, &broad);
    assert_eq!(partial.verdict, Outcome::Unknown);
    let coverage = partial
        .soak_bars
        .iter()
        .find(|b| b.bar == "coverage")
        .unwrap();
    assert_eq!(coverage.verdict, Outcome::Unknown);
    assert!(coverage.reason.contains("3 of 4"), "{}", coverage.reason);
    // A local mesh has no inventory: no coverage bar at all.
    obs.run.inventory_hosts = None;
    let local = evaluate(&obs, &broad);
    assert!(local.soak_bars.iter().all(|b| b.bar != "coverage"));
}
