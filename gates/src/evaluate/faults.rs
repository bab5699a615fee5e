//! Bars that judge faults: restart recovery (and, with the nemesis, fault effectiveness,
//! partition heal, cooling and residue).

use super::*;

/// A scenario that restarts nodes: a restart fault, or (older proofs) a name saying so.
fn restarts_nodes(s: &ScenarioRecord) -> bool {
    match &s.fault {
        Some(f) => f.kind == "restart",
        None => s.name.contains("restart"),
    }
}

pub(super) fn judge_recovery(record: &WindowRecord, max_ms: u64) -> Option<Judged> {
    let mut failed = Vec::new();
    let mut unknown = Vec::new();
    let mut nodes = BTreeSet::new();
    let mut worst: Option<u64> = None;
    let mut count = 0;
    for s in &record.scenarios {
        if let Some(fault) = s.fault.as_ref().filter(|f| f.kind == "restart") {
            if matches!(s.status, ScenarioStatus::Skipped { .. }) {
                let reason = s.status_detail();
                unknown.push(format!("{} SKIPPED ({reason})", s.name));
                nodes.extend(s.targets.iter().cloned());
                continue;
            }
            if fault.recoveries.is_empty() {
                unknown.push(format!(
                    "{}: no restart was timed ({})",
                    s.name,
                    s.status_detail()
                ));
                nodes.extend(s.targets.iter().cloned());
            }
            for r in &fault.recoveries {
                count += 1;
                match r.recovered_after_ms {
                    None => {
                        failed.push(format!(
                            "{} never recovered (restart issued at {} ms; {})",
                            r.node,
                            r.issued_ms,
                            recovery_stages(r)
                        ));
                        nodes.insert(r.node.clone());
                    }
                    Some(ms) => {
                        worst = Some(worst.map_or(ms, |w| w.max(ms)));
                        if ms > max_ms {
                            failed.push(format!(
                                "{} recovered after {ms} ms ({})",
                                r.node,
                                recovery_stages(r)
                            ));
                            nodes.insert(r.node.clone());
                        }
                    }
                }
            }
            continue;
        }
        match (&s.status, &s.recovery) {
            (ScenarioStatus::Skipped { reason }, _) if restarts_nodes(s) => {
                unknown.push(format!("{} SKIPPED ({reason})", s.name));
                nodes.extend(s.targets.iter().cloned());
            }
            (ScenarioStatus::Failed { error }, None) if restarts_nodes(s) => {
                unknown.push(format!("{} FAILED ({error})", s.name));
                nodes.extend(s.targets.iter().cloned());
            }
            (ScenarioStatus::Skipped { .. }, _) => {}
            (_, Some(r)) => {
                count += 1;
                match r.recovered_after_ms {
                    None => {
                        failed.push(format!("{} never recovered", r.node));
                        nodes.insert(r.node.clone());
                    }
                    Some(ms) => {
                        worst = Some(worst.map_or(ms, |w| w.max(ms)));
                        if ms > max_ms {
                            failed.push(format!("{} recovered after {ms} ms", r.node));
                            nodes.insert(r.node.clone());
                        }
                    }
                }
            }
            (_, None) => {}
        }
    }
    if count == 0 && unknown.is_empty() {
        return None;
    }
    let (verdict, mut reason) = conclude(&failed, &unknown, 5, || {
        format!("{count} restarts recovered within {max_ms} ms")
    });
    if verdict == Outcome::Unknown {
        reason = format!("restart not exercised: {reason}");
    }
    Some(Judged {
        verdict,
        statistic: "slowest restart recovery, ms".into(),
        value: worst.map(|w| w as f64),
        threshold: format!("<= {max_ms}"),
        nodes: nodes.into_iter().collect(),
        reason,
    })
}

/// `process up +N ms, API up +N ms, in views +N ms, first DM +N ms` (or `never`).
fn recovery_stages(r: &RecoveryTiming) -> String {
    let stage = |name: &str, at: Option<u64>| match at {
        Some(t) => format!("{name} +{} ms", t.saturating_sub(r.issued_ms)),
        None => format!("{name} never"),
    };
    [
        stage("process up", r.process_up_ms),
        stage("API up", r.api_up_ms),
        stage("in views", r.in_views_ms),
        stage("first DM", r.first_dm_ms),
    ]
    .join(", ")
}

/// Fault scenarios of the window that were applied (not skipped), with their evidence.
fn applied_faults(
    record: &WindowRecord,
) -> impl Iterator<Item = (&ScenarioRecord, &FaultEvidence)> {
    record
        .scenarios
        .iter()
        .filter(|s| !matches!(s.status, ScenarioStatus::Skipped { .. }))
        .filter_map(|s| s.fault.as_deref().map(|f| (s, f)))
}

fn fault_label(s: &ScenarioRecord) -> String {
    if s.targets.is_empty() {
        s.name.clone()
    } else {
        format!("{} on {}", s.name, list(&s.targets, 4))
    }
}

/// Every applied fault shown effective; not shown or not checked is UNKNOWN (the window then
/// proves nothing about that fault).
pub(super) fn judge_fault_effect(record: &WindowRecord) -> Option<Judged> {
    let mut count = 0;
    let mut unknown = Vec::new();
    let mut nodes = BTreeSet::new();
    for (s, fault) in applied_faults(record) {
        count += 1;
        match &fault.effective {
            Check::Shown { .. } => {}
            Check::NotShown { summary, .. } => {
                unknown.push(format!("{} not shown effective: {summary}", fault_label(s)));
                nodes.extend(s.targets.iter().cloned());
            }
            Check::NotChecked { reason } => {
                unknown.push(format!("{} effect not checked: {reason}", fault_label(s)));
                nodes.extend(s.targets.iter().cloned());
            }
        }
    }
    if count == 0 {
        return None;
    }
    Some(Judged {
        verdict: if unknown.is_empty() {
            Outcome::Go
        } else {
            Outcome::Unknown
        },
        statistic: "faults not shown effective".into(),
        value: Some(unknown.len() as f64),
        threshold: "== 0".into(),
        nodes: nodes.into_iter().collect(),
        reason: if unknown.is_empty() {
            format!("{count} faults shown effective")
        } else {
            list(&unknown, 4)
        },
    })
}

/// Every applied fault shown gone after its revert: a failed clean check is NO-GO ("fault
/// residue"), an unchecked one UNKNOWN.
pub(super) fn judge_fault_residue(record: &WindowRecord) -> Option<Judged> {
    let mut count = 0;
    let (mut residue, mut unknown) = (Vec::new(), Vec::new());
    let (mut residue_nodes, mut unknown_nodes) = (BTreeSet::new(), BTreeSet::new());
    for (s, fault) in applied_faults(record) {
        count += 1;
        match &fault.clean {
            Check::Shown { .. } => {}
            Check::NotShown { summary, .. } => {
                residue.push(format!("fault residue: {}: {summary}", fault_label(s)));
                residue_nodes.extend(s.targets.iter().cloned());
            }
            Check::NotChecked { reason } => {
                unknown.push(format!("{} not checked clean: {reason}", fault_label(s)));
                unknown_nodes.extend(s.targets.iter().cloned());
            }
        }
    }
    if count == 0 {
        return None;
    }
    let (verdict, nodes, reason) = if !residue.is_empty() {
        (Outcome::NoGo, residue_nodes, list(&residue, 4))
    } else if !unknown.is_empty() {
        (Outcome::Unknown, unknown_nodes, list(&unknown, 4))
    } else {
        (
            Outcome::Go,
            BTreeSet::new(),
            format!("{count} faults reverted and shown clean"),
        )
    };
    Some(Judged {
        verdict,
        statistic: "faults left behind after their revert".into(),
        value: Some((residue.len() + unknown.len()) as f64),
        threshold: "== 0".into(),
        nodes: nodes.into_iter().collect(),
        reason,
    })
}

/// The run's residue audit (`Observations::residue`: soak objects found on nodes or hosts after
/// the teardown), judged by the profile's fault-residue bar at soak level: anything found is
/// NO-GO naming node (or host) and object; a node or host the audit could not look at is
/// UNKNOWN. No bar when the audit found nothing (each fault's own clean check is judged in its
/// window) or the profile has no fault-residue bar.
pub(super) fn residue_bar(observations: &Observations, profile: &Profile) -> Option<BarResult> {
    let bar = profile
        .bars
        .iter()
        .find(|b| matches!(b.rule, Rule::FaultResidue))?;
    if observations.residue.is_empty() {
        return None;
    }
    let (unverified, found): (Vec<_>, Vec<_>) =
        observations.residue.iter().partition(|r| r.unverified);
    let describe = |r: &&crate::model::Residue| format!("{}: {} ({})", r.node, r.object, r.detail);
    let (verdict, shown) = if found.is_empty() {
        (Outcome::Unknown, &unverified)
    } else {
        (Outcome::NoGo, &found)
    };
    let nodes: BTreeSet<String> = shown.iter().map(|r| r.node.clone()).collect();
    let items: Vec<String> = shown.iter().map(describe).collect();
    let reason = if found.is_empty() {
        format!("the residue audit could not look: {}", list(&items, 4))
    } else {
        format!("fault residue after the run: {}", list(&items, 4))
    };
    Some(soak_bar(
        &bar.id,
        &bar.title,
        Judged {
            verdict,
            statistic: "soak objects left after the run (residue audit)".into(),
            value: Some(found.len() as f64),
            threshold: "== 0".into(),
            nodes: nodes.into_iter().collect(),
            reason,
        },
    ))
}

/// After a partition's revert, every cut pair delivers again within `max_ms`.
pub(super) fn judge_partition_heal(record: &WindowRecord, max_ms: u64) -> Option<Judged> {
    let mut count = 0;
    let (mut failed, mut unknown) = (Vec::new(), Vec::new());
    let mut nodes = BTreeSet::new();
    let mut worst: Option<u64> = None;
    for (s, fault) in applied_faults(record).filter(|(_, f)| f.kind == "partition") {
        count += 1;
        match &fault.heal {
            None => {
                unknown.push(format!(
                    "{}: heal not measured ({})",
                    fault_label(s),
                    fault.clean.summary()
                ));
                nodes.extend(s.targets.iter().cloned());
            }
            Some(HealCheck {
                healed_after_ms: Some(ms),
                ..
            }) => {
                worst = Some(worst.map_or(*ms, |w| w.max(*ms)));
                if *ms > max_ms {
                    failed.push(format!("{} healed after {ms} ms", fault_label(s)));
                    nodes.extend(s.targets.iter().cloned());
                }
            }
            Some(HealCheck {
                healed_after_ms: None,
                still_failing,
                pairs,
            }) => {
                failed.push(format!(
                    "{}: {} of {pairs} cut pairs still failing ({})",
                    fault_label(s),
                    still_failing.len(),
                    list(still_failing, 4)
                ));
                nodes.extend(s.targets.iter().cloned());
            }
        }
    }
    if count == 0 {
        return None;
    }
    let (verdict, reason) = conclude(&failed, &unknown, 4, || {
        format!("{count} partitions healed within {max_ms} ms")
    });
    Some(Judged {
        verdict,
        statistic: "slowest partition heal after revert, ms".into(),
        value: worst.map(|w| w as f64),
        threshold: format!("<= {max_ms}"),
        nodes: nodes.into_iter().collect(),
        reason,
    })
}

/// A slow peer is cooled by its neighbours while the fault holds and recovered after.
pub(super) fn judge_cooling(record: &WindowRecord) -> Option<Judged> {
    let mut count = 0;
    let (mut failed, mut unknown) = (Vec::new(), Vec::new());
    let mut nodes = BTreeSet::new();
    for (s, fault) in applied_faults(record) {
        let Some(c) = &fault.cooling else { continue };
        count += 1;
        let label = fault_label(s);
        match (c.suppressed, c.recovered) {
            (Some(true), Some(true)) => {}
            (Some(false), _) => {
                failed.push(format!(
                    "{label}: never suppressed by its neighbours ({})",
                    c.detail
                ));
                nodes.extend(s.targets.iter().cloned());
            }
            (_, Some(false)) => {
                failed.push(format!(
                    "{label}: not recovered after the fault ({})",
                    c.detail
                ));
                nodes.extend(s.targets.iter().cloned());
            }
            _ => {
                unknown.push(format!("{label}: cooling not observable ({})", c.detail));
                nodes.extend(s.targets.iter().cloned());
            }
        }
    }
    if count == 0 {
        return None;
    }
    let (verdict, reason) = conclude(&failed, &unknown, 4, || {
        format!("{count} slow peers cooled during the fault and recovered after")
    });
    Some(Judged {
        verdict,
        statistic: "slow peers not cooled and recovered".into(),
        value: Some((failed.len() + unknown.len()) as f64),
        threshold: "== 0".into(),
        nodes: nodes.into_iter().collect(),
        reason,
    })
}

/// After an idle period, every pair succeeds on its first attempt.
pub(super) fn judge_first_attempt(record: &WindowRecord) -> Option<Judged> {
    let mut count = 0;
    let (mut failed, mut unknown) = (Vec::new(), Vec::new());
    let mut nodes = BTreeSet::new();
    let (mut pairs, mut first) = (0u64, 0u64);
    for (s, fault) in applied_faults(record).filter(|(_, f)| f.kind == "idle") {
        count += 1;
        match &fault.first_attempt {
            None => unknown.push(format!("{}: no matrix after the idle period", s.name)),
            Some(c) if c.pairs == 0 => {
                unknown.push(format!("{}: no pair sent after the idle period", s.name));
            }
            Some(c) => {
                pairs += c.pairs;
                first += c.first_try;
                if c.first_try < c.pairs {
                    failed.push(format!(
                        "{}: {} of {} pairs needed a retry or failed ({})",
                        s.name,
                        c.pairs - c.first_try,
                        c.pairs,
                        list(&c.retried, 5)
                    ));
                    for pair in &c.retried {
                        nodes.extend(pair.split('→').map(str::to_owned));
                    }
                }
            }
        }
    }
    if count == 0 {
        return None;
    }
    let (verdict, reason) = conclude(&failed, &unknown, 3, || {
        format!("all {pairs} pairs succeeded on their first attempt after idling")
    });
    Some(Judged {
        verdict,
        statistic: "pairs acknowledged on the first attempt after idling".into(),
        value: Some(first as f64),
        threshold: format!("== {pairs}"),
        nodes: nodes.into_iter().collect(),
        reason,
    })
}

/// A fault bar's verdict from what its faults showed: NO-GO naming the failures (at most
/// `shown`), else UNKNOWN naming what could not be judged, else GO with `go`'s reason.
fn conclude(
    failed: &[String],
    unknown: &[String],
    shown: usize,
    go: impl FnOnce() -> String,
) -> (Outcome, String) {
    if !failed.is_empty() {
        (Outcome::NoGo, list(failed, shown))
    } else if !unknown.is_empty() {
        (Outcome::Unknown, list(unknown, shown))
    } else {
        (Outcome::Go, go())
    }
}
