//! The bars that judge faults, and the exemptions faults grant (pairs expected to fail, links
//! left out), through the public API.

use soak_gates::model::{Check, Exemption, RecoveryTiming, SampleOutcome, ScenarioStatus};
use soak_gates::testkit::{self, FleetBuilder, set_gauge, span};
use soak_gates::{BarResult, Outcome, Profile, Verdict, evaluate};

fn profile(name: &str) -> Profile {
    Profile::builtin(name).expect("built-in profile loads")
}

fn bar<'v>(verdict: &'v Verdict, window: usize, id: &str) -> Option<&'v BarResult> {
    verdict.windows[window].bars.iter().find(|b| b.bar == id)
}

#[test]
fn a_proven_fault_passes_every_fault_bar() {
    let mut obs = FleetBuilder::new(4, 3).build();
    for (kind, name) in [("partition", "partition_pair"), ("delay", "high_rtt_peer")] {
        obs.windows[1]
            .scenarios
            .push(testkit::fault(name, kind, &["node-1"]));
    }
    let v = evaluate(&obs, &profile("broad-launch"));
    assert_eq!(v.verdict, Outcome::Go, "{v:#?}");
    for id in ["fault_effect", "fault_residue", "partition_heal", "cooling"] {
        assert_eq!(bar(&v, 1, id).map(|b| b.verdict), Some(Outcome::Go), "{id}");
        assert!(
            bar(&v, 0, id).is_none(),
            "{id} judged a window without faults"
        );
    }
}

#[test]
fn a_skipped_fault_is_unknown_and_grants_no_exemption() {
    let mut obs = FleetBuilder::new(4, 3).build();
    let mut sc = testkit::fault("restart_storm", "restart", &["node-2"]);
    sc.status = ScenarioStatus::Skipped {
        reason: "needs --allow-restart".into(),
    };
    sc.exemptions = vec![Exemption {
        bar: "phase_a".into(),
        nodes: vec!["node-2".into()],
        reason: "restarted".into(),
        links: Vec::new(),
        pairs: Vec::new(),
    }];
    obs.windows[1].scenarios.push(sc);
    let pa = obs.windows[1].phase_a.as_mut().unwrap();
    pa.pairs[0].delivered = false;
    let v = evaluate(&obs, &profile("broad-launch"));
    assert_eq!(bar(&v, 1, "recovery").unwrap().verdict, Outcome::Unknown);
    assert!(
        bar(&v, 1, "recovery")
            .unwrap()
            .reason
            .contains("--allow-restart")
    );
    assert_eq!(bar(&v, 1, "phase_a").unwrap().verdict, Outcome::NoGo);
    assert!(bar(&v, 1, "fault_effect").is_none());
}

#[test]
fn restart_recovery_is_judged_from_the_issue_time_and_names_node_and_time() {
    let mut obs = FleetBuilder::new(4, 3).build();
    let mut sc = testkit::fault("restart_storm", "restart", &["node-3"]);
    sc.fault.as_mut().unwrap().recoveries = vec![RecoveryTiming {
        node: "node-3".into(),
        service: "local process".into(),
        issued_ms: 1_000,
        process_up_ms: Some(1_200),
        api_up_ms: Some(1_500),
        in_views_ms: Some(42_000),
        first_dm_ms: Some(41_000),
        recovered_after_ms: Some(41_000),
        old_instance: "a".into(),
        new_instance: "b".into(),
    }];
    obs.windows[1].scenarios.push(sc);
    let broad = evaluate(&obs, &profile("broad-launch"));
    let r = bar(&broad, 1, "recovery").unwrap();
    assert_eq!(r.verdict, Outcome::NoGo);
    assert_eq!(r.nodes, vec!["node-3".to_string()]);
    assert!(r.reason.contains("41000 ms"), "{}", r.reason);
    assert!(r.reason.contains("in views +41000 ms"), "{}", r.reason);
    let limited = evaluate(&obs, &profile("limited-production"));
    assert_eq!(bar(&limited, 1, "recovery").unwrap().verdict, Outcome::Go);
}

#[test]
fn a_fault_not_shown_effective_makes_its_window_unknown_naming_it() {
    let mut obs = FleetBuilder::new(4, 3).build();
    let mut sc = testkit::fault("high_rtt_peer", "delay", &["node-1"]);
    sc.fault.as_mut().unwrap().effective = Check::NotShown {
        summary: "probe RTT 2 ms, expected ≥ 1300 ms".into(),
        evidence: serde_json::Value::Null,
    };
    obs.windows[1].scenarios.push(sc);
    let v = evaluate(&obs, &profile("broad-launch"));
    let b = bar(&v, 1, "fault_effect").unwrap();
    assert_eq!(b.verdict, Outcome::Unknown);
    assert!(b.reason.contains("high_rtt_peer on node-1"), "{}", b.reason);
    assert_eq!(v.windows[1].verdict, Outcome::Unknown);
    assert_eq!(v.verdict, Outcome::Unknown);
}

#[test]
fn an_unchecked_revert_is_unknown_and_a_failed_clean_check_is_residue() {
    let mut obs = FleetBuilder::new(4, 3).build();
    let mut unchecked = testkit::fault("partition_pair", "partition", &["node-0"]);
    unchecked.fault.as_mut().unwrap().clean = Check::NotChecked {
        reason: "node-0 unreachable".into(),
    };
    obs.windows[1].scenarios.push(unchecked);
    let v = evaluate(&obs, &profile("broad-launch"));
    assert_eq!(
        bar(&v, 1, "fault_residue").unwrap().verdict,
        Outcome::Unknown
    );
    let mut dirty = testkit::fault("stale_peer", "pause", &["node-2"]);
    dirty.fault.as_mut().unwrap().clean = Check::NotShown {
        summary: "node-2 still stopped".into(),
        evidence: serde_json::Value::Null,
    };
    obs.windows[2].scenarios.push(dirty);
    let v = evaluate(&obs, &profile("broad-launch"));
    let b = bar(&v, 2, "fault_residue").unwrap();
    assert_eq!(b.verdict, Outcome::NoGo);
    assert!(
        b.reason.starts_with("fault residue: stale_peer on node-2"),
        "{}",
        b.reason
    );
}

#[test]
fn pairs_across_a_cut_are_expected_to_fail_not_required() {
    let mut obs = FleetBuilder::new(4, 3).build();
    let pa = obs.windows[1].phase_a.as_mut().unwrap();
    for pair in pa
        .pairs
        .iter_mut()
        .filter(|p| (p.from == "node-0") != (p.to == "node-0"))
    {
        pair.delivered = false;
        pair.outcome = "timeout".into();
    }
    let v = evaluate(&obs, &profile("broad-launch"));
    assert_eq!(bar(&v, 1, "phase_a").unwrap().verdict, Outcome::NoGo);

    let cut: Vec<(String, String)> = (1..4)
        .flat_map(|i| {
            let other = format!("node-{i}");
            [
                ("node-0".to_string(), other.clone()),
                (other, "node-0".to_string()),
            ]
        })
        .collect();
    let mut sc = testkit::fault("partition_pair", "partition", &["node-0"]);
    sc.exemptions = vec![Exemption {
        bar: "phase_a".into(),
        nodes: Vec::new(),
        reason: "cut on purpose".into(),
        links: Vec::new(),
        pairs: cut,
    }];
    obs.windows[1].scenarios.push(sc);
    let v = evaluate(&obs, &profile("broad-launch"));
    let b = bar(&v, 1, "phase_a").unwrap();
    assert_eq!(b.verdict, Outcome::Go, "{b:#?}");
    let summary = v.windows[1].phase_a.as_ref().unwrap();
    assert_eq!(
        (summary.pairs, summary.exempted, summary.expected_failures),
        (6, 6, 6)
    );
    assert_eq!(b.exemptions.len(), 1);
}

/// Suppression of a slowed peer by its neighbours: without the link exemption every neighbour
/// fails the ratio; with it, only the exempt peer's suppressions are left out — a neighbour
/// that also suppresses someone else still fails, and a sample without the per-peer breakdown
/// cannot be separated (UNKNOWN).
#[test]
fn a_link_exemption_leaves_out_only_the_exempt_peer() {
    let base = {
        let mut obs = FleetBuilder::new(4, 3).build();
        let (s, e) = span(&obs, 1);
        for n in ["node-0", "node-2", "node-3"] {
            set_gauge(&mut obs, n, "known_topic_peers", s + 1, e, 3.0);
            set_gauge(&mut obs, n, "suppressed_topic_peers", s + 1, e, 1.0);
        }
        obs
    };
    let v = evaluate(&base, &profile("broad-launch"));
    assert_eq!(
        bar(&v, 1, "suppression_ratio").unwrap().verdict,
        Outcome::NoGo
    );

    let with_breakdown = |obs: &mut soak_gates::model::Observations, extra: bool| {
        let (s, e) = span(obs, 1);
        for n in ["node-0", "node-2", "node-3"] {
            for sample in obs.samples.get_mut(n).unwrap() {
                if sample.at_ms <= s || sample.at_ms > e {
                    continue;
                }
                if let SampleOutcome::Ok(data) = &mut sample.outcome {
                    let peers = |x: f64| {
                        let mut m = std::collections::BTreeMap::from([("node-1".to_string(), x)]);
                        if extra && n == "node-2" {
                            m.insert("node-3".to_string(), x);
                        }
                        m
                    };
                    data.by_peer
                        .insert("suppressed_topic_peers".into(), peers(1.0));
                    data.by_peer.insert("known_topic_peers".into(), peers(1.0));
                    if extra && n == "node-2" {
                        data.gauges.insert("suppressed_topic_peers".into(), 2.0);
                    }
                }
            }
        }
    };
    let exempt = |obs: &mut soak_gates::model::Observations| {
        let mut sc = testkit::fault("high_rtt_peer", "delay", &["node-1"]);
        sc.exemptions = vec![Exemption {
            bar: "suppression_ratio".into(),
            nodes: vec!["node-1".into()],
            reason: "slowed on purpose".into(),
            links: ["node-0", "node-2", "node-3"]
                .iter()
                .map(|n| (n.to_string(), "node-1".to_string()))
                .collect(),
            pairs: Vec::new(),
        }];
        obs.windows[1].scenarios.push(sc);
    };

    let mut unseparated = base.clone();
    exempt(&mut unseparated);
    let v = evaluate(&unseparated, &profile("broad-launch"));
    let b = bar(&v, 1, "suppression_ratio").unwrap();
    assert_eq!(b.verdict, Outcome::Unknown, "{b:#?}");
    assert!(b.reason.contains("cannot be separated"), "{}", b.reason);

    let mut separated = base.clone();
    with_breakdown(&mut separated, false);
    exempt(&mut separated);
    let v = evaluate(&separated, &profile("broad-launch"));
    assert_eq!(
        bar(&v, 1, "suppression_ratio").unwrap().verdict,
        Outcome::Go
    );

    let mut other_victim = base.clone();
    with_breakdown(&mut other_victim, true);
    exempt(&mut other_victim);
    let v = evaluate(&other_victim, &profile("broad-launch"));
    let b = bar(&v, 1, "suppression_ratio").unwrap();
    assert_eq!(b.verdict, Outcome::NoGo, "{b:#?}");
    assert_eq!(b.nodes, vec!["node-2".to_string()]);
}

#[test]
fn residue_the_audit_finds_after_the_run_is_no_go_naming_host_and_object() {
    use soak_gates::model::Residue;
    let mut obs = FleetBuilder::new(4, 3).build();
    obs.windows[1]
        .scenarios
        .push(testkit::fault("partition_pair", "partition", &["node-1"]));
    let soak_bar = |v: &Verdict| {
        v.soak_bars
            .iter()
            .find(|b| b.bar == "fault_residue")
            .cloned()
    };
    // Nothing found: the fault's own clean check decides; no soak-level bar.
    let v = evaluate(&obs, &profile("broad-launch"));
    assert_eq!(v.verdict, Outcome::Go);
    assert!(soak_bar(&v).is_none());
    // A host the audit could not look at: UNKNOWN, never GO.
    obs.residue.push(Residue {
        node: "node-3".into(),
        object: "host".into(),
        detail: "could not be audited after the run: unreachable".into(),
        unverified: true,
    });
    let v = evaluate(&obs, &profile("broad-launch"));
    let b = soak_bar(&v).expect("residue bar");
    assert_eq!((b.verdict, v.verdict), (Outcome::Unknown, Outcome::Unknown));
    assert_eq!(b.nodes, ["node-3"]);
    // A chain left on a host: NO-GO, naming the host and the object.
    obs.residue.push(Residue {
        node: "node-2".into(),
        object: "firewall -A SOAK-IN -s 198.18.0.11/32 -j DROP".into(),
        detail: "still on the host after the run: iptables-nft".into(),
        unverified: false,
    });
    for gate in ["broad-launch", "limited-production"] {
        let v = evaluate(&obs, &profile(gate));
        let b = soak_bar(&v).expect("residue bar");
        assert_eq!(
            (b.verdict, v.verdict),
            (Outcome::NoGo, Outcome::NoGo),
            "{gate}"
        );
        assert_eq!(b.nodes, ["node-2"]);
        assert!(
            b.reason
                .contains("node-2: firewall -A SOAK-IN -s 198.18.0.11/32"),
            "{}",
            b.reason
        );
    }
}
