//! Bars over the workloads' own evidence: the Phase A matrix, fanout bursts and the scenario
//! ledger (SKIPPED is never a pass).

use super::*;

/// Phase A summary, the failed pairs (for reasons) and the nodes they involve.
pub(super) type PhaseAFull = (PhaseASummary, Vec<String>, BTreeSet<String>);

/// Phase A summary plus the failed pairs (for reasons).
pub(super) fn phase_a_summary(
    nodes: &[crate::model::NodeRef],
    pa: &PhaseAResult,
    exempt: &BTreeSet<String>,
    expected_to_fail: &BTreeSet<(String, String)>,
) -> PhaseAFull {
    let mut recorded: HashMap<(&str, &str), (bool, &str)> = HashMap::new();
    for pair in &pa.pairs {
        let entry = recorded
            .entry((pair.from.as_str(), pair.to.as_str()))
            .or_insert((false, pair.outcome.as_str()));
        if pair.delivered {
            *entry = (true, pair.outcome.as_str());
        }
    }
    let names: Vec<&str> = {
        let mut seen = BTreeSet::new();
        nodes
            .iter()
            .map(|n| n.name.as_str())
            .filter(|n| seen.insert(*n))
            .collect()
    };
    let (mut pairs, mut delivered, mut failed, mut missing, mut exempted) = (0, 0, 0, 0, 0);
    let mut expected_failures = 0;
    let mut failures = Vec::new();
    let mut involved = BTreeSet::new();
    for from in &names {
        for to in &names {
            if from == to {
                continue;
            }
            if exempt.contains(*from) || exempt.contains(*to) {
                exempted += 1;
                continue;
            }
            // A pair a fault cuts on purpose is shown as expected to fail, not required.
            if expected_to_fail.contains(&(from.to_string(), to.to_string())) {
                exempted += 1;
                if !matches!(recorded.get(&(*from, *to)), Some((true, _))) {
                    expected_failures += 1;
                }
                continue;
            }
            pairs += 1;
            match recorded.get(&(*from, *to)) {
                Some((true, _)) => delivered += 1,
                Some((false, outcome)) => {
                    failed += 1;
                    failures.push(format!("{from}→{to} ({outcome})"));
                    involved.insert(from.to_string());
                    involved.insert(to.to_string());
                }
                None => missing += 1,
            }
        }
    }
    let mut latencies: Vec<u64> = pa
        .pairs
        .iter()
        .filter(|p| p.delivered)
        .filter_map(|p| p.latency_us)
        .collect();
    latencies.sort_unstable();
    let percentile = |q: f64| {
        if latencies.is_empty() {
            None
        } else {
            // Nearest rank.
            let rank = ((q * latencies.len() as f64).ceil() as usize).clamp(1, latencies.len());
            Some(latencies[rank - 1])
        }
    };
    (
        PhaseASummary {
            pairs,
            delivered,
            failed,
            missing,
            exempted,
            expected_failures,
            p50_us: percentile(0.50),
            p99_us: percentile(0.99),
        },
        failures,
        involved,
    )
}

pub(super) fn scenario_named<'r>(
    record: &'r WindowRecord,
    name: &str,
) -> Option<&'r crate::model::ScenarioRecord> {
    record.scenarios.iter().find(|s| s.name == name)
}

pub(super) fn judge_phase_a(
    facts: &Facts<'_>,
    record: &WindowRecord,
    scenario: &str,
    exempt: &BTreeSet<String>,
    expected_to_fail: &BTreeSet<(String, String)>,
    computed: Option<&PhaseAFull>,
) -> Option<Judged> {
    let statistic = "required ordered pairs delivered".to_string();
    let Some(pa) = &record.phase_a else {
        let s = scenario_named(record, scenario)?;
        let reason = match &s.status {
            ScenarioStatus::Skipped { reason } => {
                format!("`{scenario}` SKIPPED ({reason}): no Phase A evidence")
            }
            ScenarioStatus::Completed | ScenarioStatus::Failed { .. } => {
                format!("`{scenario}` ran but no Phase A matrix was recorded")
            }
        };
        return Some(Judged {
            verdict: Outcome::Unknown,
            statistic,
            value: None,
            threshold: "all N·(N−1)".into(),
            nodes: Vec::new(),
            reason,
        });
    };
    let (summary, failures, involved) = match computed {
        Some(full) => full.clone(),
        None => phase_a_summary(&facts.obs.run.nodes, pa, exempt, expected_to_fail),
    };
    let threshold = format!("== {}", summary.pairs);
    let (verdict, reason) = if summary.failed > 0 {
        (
            Outcome::NoGo,
            format!(
                "{} of {} pairs not delivered: {}",
                summary.failed,
                summary.pairs,
                list(&failures, 5)
            ),
        )
    } else if summary.missing > 0 {
        (
            Outcome::Unknown,
            format!(
                "{} of {} pairs never attempted (matrix incomplete)",
                summary.missing, summary.pairs
            ),
        )
    } else if summary.pairs == 0 {
        (
            Outcome::Unknown,
            "no pair to judge (fewer than two nodes, or all exempt)".into(),
        )
    } else {
        (
            Outcome::Go,
            format!("all {} pairs delivered", summary.pairs),
        )
    };
    Some(Judged {
        verdict,
        statistic,
        value: Some(summary.delivered as f64),
        threshold,
        nodes: involved.into_iter().collect(),
        reason,
    })
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
