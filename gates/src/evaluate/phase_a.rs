//! Phase A judged from the raw facts of every pair — what the sender was told (`outcome`) and
//! what the receiver's inbox held (`inbox_copies`) — never from a stored `delivered` flag alone.
//! Per window (the `phase_a` bar) and over the soak (`phase_a_aggregate`, the per-pair tallies).

use super::*;
use crate::model::PairOutcome;
use crate::verdict::{PairCoverage, PairTally, PhaseASoak};

/// Phase A summary, the failed pairs (for reasons) and the nodes to blame.
pub(super) type PhaseAFull = (PhaseASummary, Vec<String>, BTreeSet<String>);

/// How good a record is, to pick one when a pair was recorded more than once.
fn rank(pair: &PairOutcome) -> u8 {
    if pair.is_delivered() {
        3
    } else if pair.copies().unwrap_or(0) > 0 {
        2
    } else if pair.acked() {
        1
    } else {
        0
    }
}

/// Why a pair that is not delivered failed, in words.
pub(super) fn failure_text(pair: &PairOutcome) -> String {
    let why = match (pair.acked(), pair.copies()) {
        (true, Some(1)) => "acked and in the inbox once, but recorded as not delivered".to_string(),
        (true, None) => "acked, receipt unconfirmed (inbox unreadable)".to_string(),
        (true, Some(0)) => "acked, not in the receiver's inbox".to_string(),
        (true, Some(n)) => format!("acked, {n} copies in the receiver's inbox"),
        (false, Some(0)) | (false, None) => pair.outcome.clone(),
        (false, Some(1)) => format!("sender saw `{}` but it arrived", pair.outcome),
        (false, Some(n)) => format!("sender saw `{}`, {n} copies arrived", pair.outcome),
    };
    format!("{}→{} ({why})", pair.from, pair.to)
}

/// The one node every failing pair involves, when more than one pair failed and exactly one
/// node is common to all of them.
pub(super) fn common_node<'p>(
    failing: impl IntoIterator<Item = (&'p str, &'p str)>,
) -> Option<String> {
    let mut common: Option<BTreeSet<&str>> = None;
    let mut count = 0;
    for (from, to) in failing {
        count += 1;
        let ends = BTreeSet::from([from, to]);
        common = Some(match common {
            None => ends,
            Some(c) => c.intersection(&ends).copied().collect(),
        });
    }
    let common = common?;
    (count > 1 && common.len() == 1)
        .then(|| common.into_iter().next().map(str::to_string))
        .flatten()
}

fn fleet_names(nodes: &[crate::model::NodeRef]) -> Vec<&str> {
    let mut seen = BTreeSet::new();
    nodes
        .iter()
        .map(|n| n.name.as_str())
        .filter(|n| seen.insert(*n))
        .collect()
}

/// The best record of every recorded pair.
fn recorded(pa: &PhaseAResult) -> HashMap<(&str, &str), &PairOutcome> {
    let mut out: HashMap<(&str, &str), &PairOutcome> = HashMap::new();
    for pair in &pa.pairs {
        let entry = out
            .entry((pair.from.as_str(), pair.to.as_str()))
            .or_insert(pair);
        if rank(pair) > rank(entry) {
            *entry = pair;
        }
    }
    out
}

/// Phase A summary plus the failed pairs (for reasons) and the nodes to blame: the node
/// common to every failing pair when there is one, else every node a failing pair involves.
/// Pairs in `expected_to_fail` (a fault cuts them on purpose) are not required: they count as
/// exempted, and those that did fail as `expected_failures`.
pub(super) fn phase_a_summary(
    nodes: &[crate::model::NodeRef],
    pa: &PhaseAResult,
    exempt: &BTreeSet<String>,
    expected_to_fail: &BTreeSet<(String, String)>,
) -> PhaseAFull {
    let recorded = recorded(pa);
    let names = fleet_names(nodes);
    let mut summary = PhaseASummary {
        pairs: 0,
        sent: 0,
        acked: 0,
        received: 0,
        delivered: 0,
        failed: 0,
        missing: 0,
        exempted: 0,
        expected_failures: 0,
        p50_us: None,
        p99_us: None,
        common_node: None,
        sampled: pa.sample.as_ref().map(|m| m.describe()),
    };
    let n = names.len();
    let mut failures = Vec::new();
    let mut failing: Vec<(&str, &str)> = Vec::new();
    let mut latencies: Vec<u64> = Vec::new();
    for (i, from) in names.iter().enumerate() {
        for (j, to) in names.iter().enumerate() {
            if from == to {
                continue;
            }
            // A sampled matrix requires exactly the pairs its sample names (judged from the
            // plan, not from what was recorded: a pair the runner skipped is missing).
            if pa.sample.as_ref().is_some_and(|m| !m.requires(i, j, n)) {
                continue;
            }
            if exempt.contains(*from) || exempt.contains(*to) {
                summary.exempted += 1;
                continue;
            }
            // A pair a fault cuts on purpose is shown as expected to fail, not required.
            if !expected_to_fail.is_empty()
                && expected_to_fail.contains(&(from.to_string(), to.to_string()))
            {
                summary.exempted += 1;
                if !recorded
                    .get(&(*from, *to))
                    .is_some_and(|p| p.is_delivered())
                {
                    summary.expected_failures += 1;
                }
                continue;
            }
            summary.pairs += 1;
            let Some(pair) = recorded.get(&(*from, *to)) else {
                summary.missing += 1;
                continue;
            };
            summary.sent += 1;
            summary.acked += u64::from(pair.acked());
            summary.received += u64::from(pair.copies().unwrap_or(0) > 0);
            if pair.is_delivered() {
                summary.delivered += 1;
                latencies.extend(pair.latency_us);
            } else {
                summary.failed += 1;
                failures.push(failure_text(pair));
                failing.push((from, to));
            }
        }
    }
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
    summary.p50_us = percentile(0.50);
    summary.p99_us = percentile(0.99);
    summary.common_node = common_node(failing.iter().copied());
    let blamed: BTreeSet<String> = match &summary.common_node {
        Some(node) => BTreeSet::from([node.clone()]),
        None => failing
            .iter()
            .flat_map(|(a, b)| [a.to_string(), b.to_string()])
            .collect(),
    };
    (summary, failures, blamed)
}

pub(super) fn judge_phase_a(
    facts: &Facts<'_>,
    record: &WindowRecord,
    scenario: &str,
    exempt: &BTreeSet<String>,
    expected_to_fail: &BTreeSet<(String, String)>,
    computed: Option<&PhaseAFull>,
) -> Option<Judged> {
    let statistic =
        "required ordered pairs delivered (acked and in the inbox exactly once)".to_string();
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
    let (summary, failures, blamed) = match computed {
        Some(full) => full.clone(),
        None => phase_a_summary(&facts.obs.run.nodes, pa, exempt, expected_to_fail),
    };
    let threshold = format!("== {}", summary.pairs);
    // A sampled matrix says so in every reason: `… delivered (sampled 20 of 199 per node; …)`.
    let counts = format!(
        "{}{} sent, {} acked, {} received, {} delivered",
        summary
            .sampled
            .as_ref()
            .map(|s| format!("{s}; "))
            .unwrap_or_default(),
        summary.sent,
        summary.acked,
        summary.received,
        summary.delivered
    );
    let (verdict, reason) = if summary.failed > 0 {
        let common = match &summary.common_node {
            Some(node) => format!("every failing pair involves {node}; "),
            None => String::new(),
        };
        (
            Outcome::NoGo,
            format!(
                "{common}{} of {} pairs not delivered ({counts}): {}",
                summary.failed,
                summary.pairs,
                list(&failures, 5)
            ),
        )
    } else if summary.missing > 0 {
        (
            Outcome::Unknown,
            format!(
                "{} of {} pairs never attempted (matrix incomplete; {counts})",
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
            format!("all {} pairs delivered ({counts})", summary.pairs),
        )
    };
    Some(Judged {
        verdict,
        statistic,
        value: Some(summary.delivered as f64),
        threshold,
        nodes: blamed.into_iter().collect(),
        reason,
    })
}

/// Phase A over the whole soak: totals over every matrix and one tally per ordered pair
/// (exempted pairs are not required in their window). `None` when no window has a matrix.
pub(super) fn phase_a_soak(facts: &Facts<'_>, profile: &Profile) -> Option<PhaseASoak> {
    let bar = profile
        .bars
        .iter()
        .find(|b| matches!(b.rule, Rule::PhaseA { .. }))
        .map(|b| b.id.as_str())
        .unwrap_or("phase_a");
    let names = fleet_names(&facts.obs.run.nodes);
    let n = names.len();
    // One slot per ordered pair (from-major, so the sorted names give `(from, to)` order).
    let mut tallies: Vec<Option<PairTally>> = vec![None; n * n];
    let mut soak = PhaseASoak {
        matrices: 0,
        pairs: 0,
        sent: 0,
        acked: 0,
        received: 0,
        delivered: 0,
        common_node: None,
        per_pair: Vec::new(),
        coverage: None,
    };
    let mut failing: Vec<(&str, &str)> = Vec::new();
    // Coverage of sampled matrices: [from * n + to] delivered in a judged window.
    let mut covered = vec![false; n * n];
    let mut last_sample: Option<&crate::model::MatrixSample> = None;
    let mut judged_matrices = 0;
    for (w, record) in facts.obs.windows.iter().enumerate() {
        let Some(pa) = &record.phase_a else {
            continue;
        };
        soak.matrices += 1;
        let judged = facts.judged(w);
        if let Some(sample) = &pa.sample {
            last_sample = Some(sample);
            judged_matrices += u64::from(judged);
        }
        let exempt = exemptions_for(record, bar).1;
        let cut = exempt_pairs(record, bar);
        let recorded = recorded(pa);
        for (i, from) in names.iter().enumerate() {
            for (j, to) in names.iter().enumerate() {
                if i == j
                    || pa.sample.as_ref().is_some_and(|m| !m.requires(i, j, n))
                    || exempt.contains(*from)
                    || exempt.contains(*to)
                    || (!cut.is_empty() && cut.contains(&(from.to_string(), to.to_string())))
                {
                    continue;
                }
                let tally = tallies[i * n + j].get_or_insert_with(|| PairTally {
                    from: from.to_string(),
                    to: to.to_string(),
                    required: 0,
                    sent: 0,
                    acked: 0,
                    received: 0,
                    delivered: 0,
                    failed_windows: Vec::new(),
                });
                tally.required += 1;
                soak.pairs += 1;
                let pair = recorded.get(&(*from, *to));
                if let Some(pair) = pair {
                    let (acked, received) = (pair.acked(), pair.copies().unwrap_or(0) > 0);
                    tally.sent += 1;
                    tally.acked += u64::from(acked);
                    tally.received += u64::from(received);
                    soak.sent += 1;
                    soak.acked += u64::from(acked);
                    soak.received += u64::from(received);
                }
                if pair.is_some_and(|p| p.is_delivered()) {
                    tally.delivered += 1;
                    soak.delivered += 1;
                    covered[i * n + j] |= judged;
                } else {
                    tally.failed_windows.push(record.index);
                    if pair.is_some() {
                        failing.push((from, to));
                    }
                }
            }
        }
    }
    if soak.matrices == 0 {
        return None;
    }
    soak.common_node = common_node(failing.iter().copied());
    soak.coverage = last_sample.map(|sample| PairCoverage {
        pairs: (n * n.saturating_sub(1)) as u64,
        covered: (0..n * n).filter(|&k| k / n != k % n && covered[k]).count() as u64,
        sampled: sample.describe(),
        rounds: sample.rounds,
        judged_matrices,
    });
    soak.per_pair = tallies.into_iter().flatten().collect();
    soak.per_pair
        .sort_by(|a, b| (&a.from, &a.to).cmp(&(&b.from, &b.to)));
    Some(soak)
}

pub(super) fn phase_a_aggregate(profile: &Profile, soak: Option<&PhaseASoak>) -> BarResult {
    let min = profile.soak.phase_a_min_ratio;
    let statistic = "Phase A delivered / required, whole soak".to_string();
    let threshold = format!(">= {}", fmt_num(min));
    let judged = match soak.filter(|s| s.pairs > 0) {
        None => Judged {
            verdict: Outcome::Unknown,
            statistic,
            value: None,
            threshold,
            nodes: Vec::new(),
            reason: "no Phase A evidence in the soak".into(),
        },
        Some(s) => {
            let missing = s.pairs - s.sent;
            let lo = s.delivered as f64 / s.pairs as f64;
            let hi = (s.delivered + missing) as f64 / s.pairs as f64;
            // Sampled matrices: every ordered pair must have been delivered in some judged
            // window; until the rotation covered them all, the soak has not shown they work.
            let uncovered = s.coverage.as_ref().filter(|c| c.covered < c.pairs);
            let verdict = if hi < min {
                Outcome::NoGo
            } else if lo >= min && uncovered.is_none() {
                Outcome::Go
            } else {
                Outcome::Unknown
            };
            let common = match (&s.common_node, verdict) {
                (Some(node), Outcome::NoGo | Outcome::Unknown) => {
                    format!("; every failing pair involves {node}")
                }
                _ => String::new(),
            };
            Judged {
                verdict,
                statistic,
                value: Some(lo),
                threshold,
                nodes: if verdict == Outcome::Go {
                    Vec::new()
                } else {
                    s.common_node.iter().cloned().collect()
                },
                reason: format!(
                    "{} of {} required pairs delivered over {} matrices ({} sent, {} acked, {} \
                     received; {missing} never attempted){common}{}",
                    s.delivered,
                    s.pairs,
                    s.matrices,
                    s.sent,
                    s.acked,
                    s.received,
                    s.coverage.as_ref().map_or_else(String::new, coverage_text)
                ),
            }
        }
    };
    soak_bar(
        "phase_a_aggregate",
        "Phase A delivery over the soak",
        judged,
    )
}

/// `; coverage: …` of a soak with sampled matrices.
fn coverage_text(c: &PairCoverage) -> String {
    if c.covered >= c.pairs {
        format!(
            "; matrices {}: all {} ordered pairs delivered at least once over {} judged windows",
            c.sampled, c.pairs, c.judged_matrices
        )
    } else {
        format!(
            "; matrices {}: NOT COVERED — {} of {} ordered pairs never delivered in a judged \
             window ({} judged sampled matrices; a full rotation takes {} judged windows), so \
             delivery over the whole fleet is unknown",
            c.sampled,
            c.pairs - c.covered,
            c.pairs,
            c.judged_matrices,
            c.rounds
        )
    }
}
