//! Failures explained by their cause: the results that follow from one root cause (a dead
//! node, an unreadable node, a fault window) are grouped under it instead of a dozen rows
//! blaming the whole fleet; a cause never hides an independent failure.

use soak_gates::model::{NodeEvent, NodeEventKind, Observations, SampleOutcome};
use soak_gates::testkit::{self, FleetBuilder, bump, drop_samples, set_pair, span};
use soak_gates::{Outcome, Profile, Verdict, evaluate};

fn broad() -> Profile {
    Profile::builtin("broad-launch").unwrap()
}

/// A 6-node fleet in which node-2 is SIGKILLed 5 s into window 2 and never comes back: its
/// samples fail, its Phase A pairs fail, its fanout subscription has no result.
fn killed() -> Observations {
    let mut obs = FleetBuilder::new(6, 4).build();
    let (s2, _) = span(&obs, 2);
    let at = s2 + 5_000;
    drop_samples(&mut obs, "node-2", at, u64::MAX);
    let names: Vec<String> = (0..6).map(FleetBuilder::node).collect();
    for w in [2, 3] {
        for other in names.iter().filter(|n| *n != "node-2") {
            set_pair(&mut obs, w, other, "node-2", "timeout", None);
            set_pair(&mut obs, w, "node-2", other, "error", None);
        }
        let fanout = obs.windows[w].fanout.as_mut().unwrap();
        fanout.subscribers.retain(|s| s.node != "node-2");
    }
    obs.node_events.push(NodeEvent {
        node: "node-2".into(),
        at_ms: at,
        kind: NodeEventKind::Exited {
            pid: Some(1234),
            code: None,
            signal: Some(9),
            signal_name: Some("SIGKILL".into()),
        },
    });
    obs
}

fn not_go(v: &Verdict) -> Vec<&soak_gates::BarResult> {
    v.windows
        .iter()
        .flat_map(|w| w.bars.iter())
        .chain(v.soak_bars.iter())
        .filter(|b| b.verdict != Outcome::Go && !b.not_applicable)
        .collect()
}

#[test]
fn a_killed_node_is_one_headline_cause_with_its_pid_and_signal() {
    let v = evaluate(&killed(), &broad());
    assert_ne!(v.verdict, Outcome::Go);
    let explaining: Vec<_> = v.causes.iter().filter(|c| c.explains > 0).collect();
    assert_eq!(explaining.len(), 1, "{:#?}", v.causes);
    let cause = explaining[0];
    assert_eq!(cause.kind, "node_exited");
    assert!(
        cause
            .headline
            .starts_with("node-2 (pid 1234) exited on signal 9 (SIGKILL) at 01:11:51Z"),
        "{}",
        cause.headline
    );
    assert_eq!(cause.nodes, vec!["node-2".to_string()]);
    assert_eq!(cause.windows, vec![2, 3]);
    assert_eq!(cause.to_ms, None, "never came back");
    // Every result that is not GO follows from it: no row blames another node.
    let failing = not_go(&v);
    assert!(failing.len() >= 10, "{}", failing.len());
    for b in &failing {
        assert_eq!(b.cause.as_deref(), Some(cause.id.as_str()), "{b:#?}");
        assert!(b.nodes.iter().all(|n| n == "node-2"), "{b:#?}");
    }
    assert_eq!(cause.explains, failing.len());
    let phase_a = v.windows[2]
        .bars
        .iter()
        .find(|b| b.bar == "phase_a")
        .unwrap();
    assert!(
        phase_a
            .reason
            .starts_with("every failing pair involves node-2")
    );
}

#[test]
fn a_node_that_cannot_be_sampled_explains_its_unknowns() {
    let mut obs = FleetBuilder::new(4, 4).build();
    let (s1, e1) = span(&obs, 1);
    drop_samples(&mut obs, "node-3", s1 + 25_000, e1 + 1);
    let v = evaluate(&obs, &broad());
    let cause = v.causes.iter().find(|c| c.explains > 0).unwrap();
    assert_eq!(cause.kind, "node_unreadable");
    assert!(
        cause
            .headline
            .starts_with("node-3 could not be sampled from")
            && cause
                .headline
                .contains("(4 failed attempts: connection refused)"),
        "{}",
        cause.headline
    );
    // Window 2 opens on the stale sample before the failures: it is touched too.
    assert_eq!(cause.windows, vec![1, 2]);
    for b in not_go(&v) {
        assert_eq!(b.cause.as_deref(), Some(cause.id.as_str()), "{b:#?}");
    }
}

#[test]
fn a_fault_window_groups_the_failures_on_its_targets() {
    let mut obs = FleetBuilder::new(4, 4).build();
    let mut netem = testkit::completed("netem_delay");
    netem.targets = vec!["node-1".into()];
    obs.windows[2].scenarios.push(netem);
    set_pair(&mut obs, 2, "node-0", "node-1", "timeout", Some(0));
    set_pair(&mut obs, 2, "node-1", "node-3", "timeout", Some(0));
    let (s2, _) = span(&obs, 2);
    bump(
        &mut obs,
        "node-1",
        "outbound_high_water_total",
        s2 + 20_000,
        3,
    );
    let v = evaluate(&obs, &broad());
    let cause = v.causes.iter().find(|c| c.kind == "fault").unwrap();
    assert_eq!(cause.headline, "fault `netem_delay` on node-1 in window 2");
    let grouped: Vec<&str> = not_go(&v)
        .into_iter()
        .filter(|b| b.cause.as_deref() == Some(cause.id.as_str()))
        .map(|b| b.bar.as_str())
        .collect();
    assert!(grouped.contains(&"phase_a") && grouped.contains(&"outbound_high_water"));
    // The same failures in a window without the fault are not explained by it.
    assert!(cause.windows == vec![2]);
}

#[test]
fn a_nemesis_fault_names_its_kind() {
    let mut obs = FleetBuilder::new(4, 3).build();
    obs.windows[1]
        .scenarios
        .push(testkit::fault("partition_pair", "partition", &["node-1"]));
    set_pair(&mut obs, 1, "node-0", "node-1", "timeout", Some(0));
    set_pair(&mut obs, 1, "node-1", "node-2", "timeout", Some(0));
    let v = evaluate(&obs, &broad());
    let cause = v.causes.iter().find(|c| c.kind == "fault").unwrap();
    assert_eq!(
        cause.headline,
        "fault `partition_pair` (partition) on node-1 in window 1"
    );
    let phase_a = v.windows[1]
        .bars
        .iter()
        .find(|b| b.bar == "phase_a")
        .unwrap();
    assert_eq!(phase_a.cause.as_deref(), Some(cause.id.as_str()));
}

#[test]
fn a_cause_never_hides_an_independent_failure() {
    let mut obs = killed();
    let (s3, _) = span(&obs, 3);
    bump(
        &mut obs,
        "node-4",
        "recv_pump_dropped_full_total",
        s3 + 20_000,
        2,
    );
    let v = evaluate(&obs, &broad());
    let drops = v.windows[3]
        .bars
        .iter()
        .find(|b| b.bar == "recv_pump_dropped")
        .unwrap();
    assert_eq!(drops.verdict, Outcome::NoGo);
    assert_eq!(drops.nodes, vec!["node-4".to_string()]);
    assert_eq!(
        drops.cause, None,
        "node-4's drops do not follow from node-2's death"
    );
}

#[test]
fn causes_never_change_a_verdict() {
    let with = killed();
    let mut without = with.clone();
    without.node_events.clear();
    let (a, b) = (evaluate(&with, &broad()), evaluate(&without, &broad()));
    assert_eq!(a.verdict, b.verdict);
    for (wa, wb) in a.windows.iter().zip(&b.windows) {
        assert_eq!(wa.verdict, wb.verdict);
        let va: Vec<_> = wa.bars.iter().map(|b| b.verdict).collect();
        let vb: Vec<_> = wb.bars.iter().map(|b| b.verdict).collect();
        assert_eq!(va, vb);
    }
    // Without the runner's event the samples still name the node as unreadable.
    assert!(
        b.causes
            .iter()
            .any(|c| c.kind == "node_unreadable" && c.explains > 0)
    );
}

#[test]
fn node_events_are_flat_json_with_a_kind_tag() {
    let event = NodeEvent {
        node: "node-2".into(),
        at_ms: 7,
        kind: NodeEventKind::Exited {
            pid: Some(1234),
            code: None,
            signal: Some(9),
            signal_name: Some("SIGKILL".into()),
        },
    };
    let json = serde_json::to_value(&event).unwrap();
    assert_eq!(
        json,
        serde_json::json!({"node": "node-2", "at_ms": 7, "kind": "exited", "pid": 1234,
                           "signal": 9, "signal_name": "SIGKILL"})
    );
    assert_eq!(serde_json::from_value::<NodeEvent>(json).unwrap(), event);
    let lost: NodeEvent = serde_json::from_value(serde_json::json!({
        "node": "h3", "at_ms": 9, "kind": "unreachable", "error": "ssh: connection reset"
    }))
    .unwrap();
    assert_eq!(
        lost.describe(),
        "h3 stopped answering: ssh: connection reset"
    );
    let newer: NodeEvent = serde_json::from_value(serde_json::json!({
        "node": "h3", "at_ms": 9, "kind": "oom_killed", "rss": 1
    }))
    .unwrap();
    assert_eq!(newer.kind, NodeEventKind::Other);
    assert!(matches!(
        killed().samples["node-2"].last().map(|s| &s.outcome),
        Some(SampleOutcome::Missing { .. })
    ));
}
