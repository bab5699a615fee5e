//! Phase A counts what the user saw: a pair is delivered only when its sender saw the ACK
//! **and** the receiver's inbox held the message exactly once. Every outcome class is judged
//! from the raw facts (`outcome`, `inbox_copies`), never from the stored `delivered` flag.

use soak_gates::model::{Observations, PairOutcome};
use soak_gates::testkit::{FleetBuilder, set_pair};
use soak_gates::{BarResult, Outcome, Profile, Verdict, evaluate};

fn broad() -> Profile {
    Profile::builtin("broad-launch").unwrap()
}

fn bar<'v>(v: &'v Verdict, w: usize, id: &str) -> &'v BarResult {
    v.windows[w].bars.iter().find(|b| b.bar == id).unwrap()
}

fn six() -> Observations {
    FleetBuilder::new(6, 3).build()
}

/// Judges window 1 after marking `node-0 → node-1` with `outcome` and `copies`.
fn judge_pair(outcome: &str, copies: Option<u32>) -> Verdict {
    let mut obs = six();
    set_pair(&mut obs, 1, "node-0", "node-1", outcome, copies);
    evaluate(&obs, &broad())
}

#[test]
fn acked_and_in_the_inbox_once_is_delivered() {
    let v = judge_pair("acked", Some(1));
    let b = bar(&v, 1, "phase_a");
    assert_eq!(b.verdict, Outcome::Go, "{b:#?}");
    let pa = v.windows[1].phase_a.as_ref().unwrap();
    assert_eq!(
        (pa.pairs, pa.sent, pa.acked, pa.received, pa.delivered),
        (30, 30, 30, 30, 30)
    );
    assert_eq!(v.verdict, Outcome::Go);
}

/// "29 acked, 30 received" is not a full matrix: the sender was told the DM failed.
#[test]
fn ack_timeout_whose_message_arrived_is_a_failed_pair() {
    let v = judge_pair("timeout", Some(1));
    let b = bar(&v, 1, "phase_a");
    assert_eq!(b.verdict, Outcome::NoGo, "{b:#?}");
    assert!(
        b.reason
            .contains("node-0→node-1 (sender saw `timeout` but it arrived)"),
        "{}",
        b.reason
    );
    assert!(
        b.reason
            .contains("30 sent, 29 acked, 30 received, 29 delivered"),
        "{}",
        b.reason
    );
    let pa = v.windows[1].phase_a.as_ref().unwrap();
    assert_eq!(
        (pa.acked, pa.received, pa.delivered, pa.failed),
        (29, 30, 29, 1)
    );
    assert_eq!(v.verdict, Outcome::NoGo);
}

#[test]
fn busy_and_error_with_arrival_are_failed_pairs() {
    for outcome in ["busy", "error", "unreachable", "rejected"] {
        let v = judge_pair(outcome, Some(1));
        assert_eq!(bar(&v, 1, "phase_a").verdict, Outcome::NoGo, "{outcome}");
        let v = judge_pair(outcome, Some(0));
        let b = bar(&v, 1, "phase_a");
        assert_eq!(b.verdict, Outcome::NoGo, "{outcome} without arrival");
        assert!(
            b.reason.contains(&format!("node-0→node-1 ({outcome})")),
            "{}",
            b.reason
        );
    }
}

#[test]
fn acked_but_not_in_the_inbox_is_a_failed_pair() {
    let v = judge_pair("acked", Some(0));
    let b = bar(&v, 1, "phase_a");
    assert_eq!(b.verdict, Outcome::NoGo);
    assert!(
        b.reason.contains("acked, not in the receiver's inbox"),
        "{}",
        b.reason
    );
}

#[test]
fn acked_and_delivered_twice_is_a_failed_pair() {
    let v = judge_pair("acked", Some(2));
    let b = bar(&v, 1, "phase_a");
    assert_eq!(b.verdict, Outcome::NoGo);
    assert!(b.reason.contains("2 copies"), "{}", b.reason);
    assert_eq!(v.windows[1].phase_a.as_ref().unwrap().received, 30);
}

#[test]
fn acked_with_an_unreadable_inbox_is_a_failed_pair() {
    let v = judge_pair("acked", None);
    // The fixture's `delivered` flag is cleared by set_pair; an unconfirmed receipt is not a
    // delivery.
    let b = bar(&v, 1, "phase_a");
    assert_eq!(b.verdict, Outcome::NoGo);
    assert!(b.reason.contains("receipt unconfirmed"), "{}", b.reason);
}

/// The runner's `delivered` flag is a conclusion, not a fact: a tampered or buggy flag never
/// turns a failed pair into a delivered one.
#[test]
fn a_stored_delivered_flag_is_never_trusted_alone() {
    let mut obs = six();
    {
        let pairs = &mut obs.windows[1].phase_a.as_mut().unwrap().pairs;
        let timeout = pairs.iter_mut().find(|p| p.to == "node-1").unwrap();
        timeout.outcome = "timeout".into();
        timeout.delivered = true;
        let lost = pairs.iter_mut().find(|p| p.to == "node-2").unwrap();
        lost.inbox_copies = Some(0);
        lost.delivered = true;
    }
    let v = evaluate(&obs, &broad());
    let b = bar(&v, 1, "phase_a");
    assert_eq!(b.verdict, Outcome::NoGo, "{b:#?}");
    assert_eq!(v.windows[1].phase_a.as_ref().unwrap().failed, 2);
}

/// Proofs written before `inbox_copies` existed: `delivered` meant "found exactly once".
#[test]
fn old_proofs_without_inbox_copies_still_read() {
    let old: PairOutcome = serde_json::from_value(serde_json::json!({
        "from": "a", "to": "b", "outcome": "acked", "delivered": true,
        "latency_us": 900, "attempts": 1
    }))
    .unwrap();
    assert_eq!(old.inbox_copies, None);
    assert_eq!(old.copies(), Some(1));
    assert!(old.is_delivered());
    let old_timeout: PairOutcome = serde_json::from_value(serde_json::json!({
        "from": "a", "to": "b", "outcome": "timeout", "delivered": true,
        "latency_us": null, "attempts": 2
    }))
    .unwrap();
    assert!(!old_timeout.is_delivered());
    let text = serde_json::to_string(&old).unwrap();
    assert!(
        !text.contains("inbox_copies"),
        "absent stays absent: {text}"
    );
}

#[test]
fn phase_a_names_the_node_common_to_the_failing_pairs() {
    let mut obs = six();
    let names: Vec<String> = (0..6).map(FleetBuilder::node).collect();
    for other in names.iter().filter(|n| *n != "node-2") {
        set_pair(&mut obs, 1, other, "node-2", "timeout", Some(0));
        set_pair(&mut obs, 1, "node-2", other, "error", None);
    }
    let v = evaluate(&obs, &broad());
    let b = bar(&v, 1, "phase_a");
    assert_eq!(b.verdict, Outcome::NoGo);
    assert_eq!(
        b.nodes,
        vec!["node-2".to_string()],
        "only the common node is blamed"
    );
    assert!(
        b.reason.starts_with("every failing pair involves node-2"),
        "{}",
        b.reason
    );
    assert_eq!(
        v.windows[1]
            .phase_a
            .as_ref()
            .unwrap()
            .common_node
            .as_deref(),
        Some("node-2")
    );
    let soak = v.phase_a.as_ref().unwrap();
    assert_eq!(soak.common_node.as_deref(), Some("node-2"));
    let agg = v
        .soak_bars
        .iter()
        .find(|b| b.bar == "phase_a_aggregate")
        .unwrap();
    assert_eq!(agg.nodes, vec!["node-2".to_string()]);
    // Two unrelated failures have no common node: both ends of both are named.
    let mut obs = six();
    set_pair(&mut obs, 1, "node-0", "node-1", "timeout", Some(0));
    set_pair(&mut obs, 1, "node-3", "node-4", "timeout", Some(0));
    let v = evaluate(&obs, &broad());
    assert_eq!(bar(&v, 1, "phase_a").nodes.len(), 4);
    assert_eq!(v.windows[1].phase_a.as_ref().unwrap().common_node, None);
}

#[test]
fn sent_acked_and_received_are_reported_per_window_per_pair_and_over_the_soak() {
    let mut obs = six();
    set_pair(&mut obs, 0, "node-0", "node-1", "timeout", Some(1));
    set_pair(&mut obs, 2, "node-0", "node-1", "acked", Some(0));
    obs.windows[2]
        .phase_a
        .as_mut()
        .unwrap()
        .pairs
        .retain(|p| !(p.from == "node-5" && p.to == "node-4"));
    let v = evaluate(&obs, &broad());
    let soak = v.phase_a.as_ref().unwrap();
    assert_eq!(soak.matrices, 3);
    assert_eq!(
        (
            soak.pairs,
            soak.sent,
            soak.acked,
            soak.received,
            soak.delivered
        ),
        (90, 89, 88, 88, 87)
    );
    assert_eq!(soak.per_pair.len(), 30);
    let pair = soak
        .per_pair
        .iter()
        .find(|p| p.from == "node-0" && p.to == "node-1")
        .unwrap();
    assert_eq!(
        (
            pair.required,
            pair.sent,
            pair.acked,
            pair.received,
            pair.delivered
        ),
        (3, 3, 2, 2, 1)
    );
    assert_eq!(pair.failed_windows, vec![0, 2]);
    let never = soak
        .per_pair
        .iter()
        .find(|p| p.from == "node-5" && p.to == "node-4")
        .unwrap();
    assert_eq!((never.sent, never.failed_windows.clone()), (2, vec![2]));
    let w2 = v.windows[2].phase_a.as_ref().unwrap();
    assert_eq!(
        (w2.sent, w2.acked, w2.received, w2.missing),
        (29, 29, 28, 1)
    );
}
