//! Bars over the workloads' own evidence: fanout bursts and the scenario ledger (SKIPPED is
//! never a pass). Phase A lives in `phase_a.rs`.

use super::*;

pub(super) fn scenario_named<'r>(
    record: &'r WindowRecord,
    name: &str,
) -> Option<&'r crate::model::ScenarioRecord> {
    record.scenarios.iter().find(|s| s.name == name)
}

pub(super) fn judge_scenarios(record: &WindowRecord) -> Option<Judged> {
    if record.scenarios.is_empty() {
        return None;
    }
    let not_completed: Vec<String> = record
        .scenarios
        .iter()
        .filter_map(|s| match &s.status {
            ScenarioStatus::Completed => None,
            ScenarioStatus::Skipped { reason } => Some(format!("{} SKIPPED ({reason})", s.name)),
            ScenarioStatus::Failed { error } => Some(format!("{} FAILED ({error})", s.name)),
        })
        .collect();
    let targets: BTreeSet<String> = record
        .scenarios
        .iter()
        .filter(|s| s.status != ScenarioStatus::Completed)
        .flat_map(|s| s.targets.iter().cloned())
        .collect();
    Some(Judged {
        verdict: if not_completed.is_empty() {
            Outcome::Go
        } else {
            Outcome::Unknown
        },
        statistic: "scenarios not completed".into(),
        value: Some(not_completed.len() as f64),
        threshold: "== 0".into(),
        nodes: targets.into_iter().collect(),
        reason: if not_completed.is_empty() {
            format!("{} scenarios completed", record.scenarios.len())
        } else {
            format!("never a pass: {}", list(&not_completed, 5))
        },
    })
}

pub(super) fn judge_fanout(
    facts: &Facts<'_>,
    record: &WindowRecord,
    scenario: &str,
    min_ratio: f64,
    exempt: &BTreeSet<String>,
) -> Option<Judged> {
    let statistic = "fanout delivered / expected".to_string();
    let threshold = format!(">= {}", fmt_num(min_ratio));
    let Some(f) = &record.fanout else {
        let s = scenario_named(record, scenario)?;
        let reason = match &s.status {
            ScenarioStatus::Skipped { reason } => format!("`{scenario}` SKIPPED ({reason})"),
            _ => format!("`{scenario}` ran but no fanout result was recorded"),
        };
        return Some(Judged {
            verdict: Outcome::Unknown,
            statistic,
            value: None,
            threshold,
            nodes: Vec::new(),
            reason,
        });
    };
    let (mut expected, mut received, mut unknown_expected) = (0u64, 0u64, 0u64);
    let mut unknown = Vec::new();
    let mut short = Vec::new();
    let mut nodes = BTreeSet::new();
    let mut covered = BTreeSet::new();
    for sub in f.subscribers.iter().filter(|s| !exempt.contains(&s.node)) {
        covered.insert(sub.node.as_str());
        if let Some(err) = &sub.error {
            unknown_expected += sub.expected;
            unknown.push(format!("{} unreadable ({err})", sub.node));
            continue;
        }
        expected += sub.expected;
        received += sub.received.min(sub.expected);
        if sub.received < sub.expected {
            short.push(format!("{} {}/{}", sub.node, sub.received, sub.expected));
            nodes.insert(sub.node.clone());
        }
    }
    for node in facts
        .obs
        .run
        .nodes
        .iter()
        .filter(|n| !exempt.contains(&n.name))
    {
        if !covered.contains(node.name.as_str()) {
            unknown_expected += f.messages;
            unknown.push(format!("{} has no subscriber result", node.name));
        }
    }
    let total = expected + unknown_expected;
    if total == 0 {
        return Some(Judged {
            verdict: Outcome::Unknown,
            statistic,
            value: None,
            threshold,
            nodes: Vec::new(),
            reason: "nothing was expected (no messages or no subscribers)".into(),
        });
    }
    let lo = received as f64 / total as f64;
    let hi = (received + unknown_expected) as f64 / total as f64;
    let verdict = if hi < min_ratio {
        Outcome::NoGo
    } else if lo >= min_ratio {
        Outcome::Go
    } else {
        Outcome::Unknown
    };
    let reason = match verdict {
        Outcome::NoGo => format!("missing deliveries: {}", list(&short, 6)),
        Outcome::Unknown if !unknown.is_empty() => format!("not decidable: {}", list(&unknown, 6)),
        Outcome::Unknown => format!("missing deliveries: {}", list(&short, 6)),
        Outcome::Go if short.is_empty() => format!("{received} of {total} deliveries"),
        Outcome::Go => format!(
            "{received} of {total} deliveries (short: {})",
            list(&short, 6)
        ),
    };
    if verdict == Outcome::Unknown && !unknown.is_empty() {
        nodes.extend(
            unknown
                .iter()
                .filter_map(|u| u.split(' ').next().map(String::from)),
        );
    }
    Some(Judged {
        verdict,
        statistic,
        value: Some(lo),
        threshold,
        nodes: nodes.into_iter().collect(),
        reason,
    })
}
