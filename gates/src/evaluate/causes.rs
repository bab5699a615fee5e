//! Failures explained by their cause: the bar results that follow from one root cause — a
//! fault window, a node that exited, a host that stopped answering, a node that could not be
//! sampled — are grouped under it, instead of a dozen rows each blaming the fleet.
//!
//! Grouping never changes a verdict; it only names, for every result that is not GO, the cause
//! it follows from. A result follows from a cause when the cause covers its window and every
//! node the result blames is one of the cause's nodes; a result that also blames another node
//! stays on its own (a cause never hides an independent failure). Candidates are tried in
//! order: fault, exit, unreachable, unreadable; then earliest first.

use super::*;
use crate::model::NodeEventKind;
use crate::verdict::Cause;

/// Workload scenarios: their targets are the nodes that drove them, not nodes they acted on.
const WORKLOADS: &[&str] = &["baseline", "fanout_burst"];

struct Candidate {
    cause: Cause,
    rank: u8,
}

fn windows_touched(obs: &Observations, from: u64, to: Option<u64>) -> Vec<u32> {
    obs.windows
        .iter()
        .filter(|w| w.end_ms > from && to.is_none_or(|t| w.start_ms < t))
        .map(|w| w.index)
        .collect()
}

fn candidates(facts: &Facts<'_>) -> Vec<Candidate> {
    let obs = facts.obs;
    let mut out = Vec::new();
    for record in &obs.windows {
        for s in &record.scenarios {
            let is_fault = s.fault.is_some() || !WORKLOADS.contains(&s.name.as_str());
            if s.targets.is_empty()
                || !is_fault
                || matches!(s.status, ScenarioStatus::Skipped { .. })
            {
                continue;
            }
            let kind = s
                .fault
                .as_ref()
                .map(|f| format!(" ({})", f.kind))
                .unwrap_or_default();
            let status = match &s.status {
                ScenarioStatus::Failed { error } => format!(", FAILED: {error}"),
                _ => String::new(),
            };
            out.push(Candidate {
                rank: 0,
                cause: Cause {
                    id: format!("fault:{}:{}", record.index, s.name),
                    kind: "fault".into(),
                    headline: format!(
                        "fault `{}`{kind} on {} in window {}{status}",
                        s.name,
                        list(&s.targets, 6),
                        record.index
                    ),
                    nodes: s.targets.clone(),
                    from_ms: record.start_ms,
                    to_ms: Some(record.end_ms),
                    windows: vec![record.index],
                    explains: 0,
                },
            });
        }
    }
    let series: HashMap<&str, &NodeSeries<'_>> = facts
        .nodes
        .iter()
        .zip(&facts.series)
        .filter(|(n, _)| obs.samples.contains_key(n.as_str()))
        .map(|(n, s)| (n.as_str(), s))
        .collect();
    let mut event_spans: Vec<(&str, u64, Option<u64>)> = Vec::new();
    for event in &obs.node_events {
        let node_series = series.get(event.node.as_str());
        let (kind, rank, to) = match &event.kind {
            NodeEventKind::Exited { .. } => (
                "node_exited",
                1,
                node_series.and_then(|s| s.first_new_instance_after(event.at_ms)),
            ),
            NodeEventKind::Unreachable { .. } => (
                "node_unreachable",
                2,
                node_series.and_then(|s| s.first_good_at_or_after(event.at_ms + 1)),
            ),
            NodeEventKind::Other => continue,
        };
        event_spans.push((event.node.as_str(), event.at_ms, to));
        out.push(Candidate {
            rank,
            cause: Cause {
                id: format!("{kind}:{}:{}", event.node, event.at_ms),
                kind: kind.into(),
                headline: format!("{} at {}", event.describe(), utc_time(event.at_ms)),
                nodes: vec![event.node.clone()],
                from_ms: event.at_ms,
                to_ms: to,
                windows: windows_touched(obs, event.at_ms, to),
                explains: 0,
            },
        });
    }
    // Nodes that could not be sampled, from the samples themselves (covers every fleet, with
    // or without runner events); spans an event already explains are left to the event.
    let (first, last) = (
        obs.windows.iter().map(|w| w.start_ms).min(),
        obs.windows.iter().map(|w| w.end_ms).max(),
    );
    let (Some(first), Some(last)) = (first, last) else {
        return out;
    };
    for node in &facts.nodes {
        let Some(s) = series.get(node.as_str()) else {
            out.push(Candidate {
                rank: 3,
                cause: Cause {
                    id: format!("node_unreadable:{node}:{first}"),
                    kind: "node_unreadable".into(),
                    headline: format!("{node} was never sampled"),
                    nodes: vec![node.clone()],
                    from_ms: first,
                    to_ms: None,
                    windows: windows_touched(obs, first, None),
                    explains: 0,
                },
            });
            continue;
        };
        for run in merged_failures(s, first.saturating_sub(1), last) {
            let to = s.first_good_at_or_after(run.to_ms + 1);
            let explained = event_spans.iter().any(|(n, from, until)| {
                *n == node.as_str()
                    && run.to_ms.saturating_add(facts.tolerance_ms) >= *from
                    && until.is_none_or(|u| run.from_ms <= u)
            });
            if explained {
                continue;
            }
            let until = match to {
                Some(t) => format!("from {} to {}", utc_time(run.from_ms), utc_time(t)),
                None => format!("from {} to the end of the run", utc_time(run.from_ms)),
            };
            out.push(Candidate {
                rank: 3,
                cause: Cause {
                    id: format!("node_unreadable:{node}:{}", run.from_ms),
                    kind: "node_unreadable".into(),
                    headline: format!(
                        "{node} could not be sampled {until} ({} failed attempts: {})",
                        run.attempts, run.error
                    ),
                    nodes: vec![node.clone()],
                    from_ms: run.from_ms,
                    to_ms: to,
                    windows: windows_touched(obs, run.from_ms, to.or(Some(run.to_ms + 1))),
                    explains: 0,
                },
            });
        }
    }
    out
}

/// Runs of failed attempts without a good sample between them (whatever their errors), with
/// the first run's error.
fn merged_failures<'a>(
    s: &NodeSeries<'a>,
    start: u64,
    end: u64,
) -> Vec<crate::series::FailedRun<'a>> {
    let mut out: Vec<crate::series::FailedRun<'a>> = Vec::new();
    for run in s.failures_in(start, end) {
        match out.last_mut() {
            Some(last)
                if s.first_good_at_or_after(last.to_ms + 1)
                    .is_none_or(|g| g > run.from_ms) =>
            {
                last.to_ms = run.to_ms;
                last.attempts += run.attempts;
            }
            _ => out.push(run),
        }
    }
    out
}

/// Whether `cause` explains a bar result of window `window` blaming `nodes`.
fn explains(cause: &Cause, window: Option<u32>, nodes: &[String]) -> bool {
    !nodes.is_empty()
        && window.is_none_or(|w| cause.windows.contains(&w))
        && nodes.iter().all(|n| cause.nodes.contains(n))
}

/// Groups every result that is not GO under the cause it follows from; returns the causes
/// that explain something (and every node exit or loss the runner saw).
pub(super) fn group(
    facts: &Facts<'_>,
    windows: &mut [WindowVerdict],
    soak_bars: &mut [BarResult],
) -> Vec<Cause> {
    let mut candidates = candidates(facts);
    candidates.sort_by(|a, b| {
        (a.rank, a.cause.from_ms, &a.cause.id).cmp(&(b.rank, b.cause.from_ms, &b.cause.id))
    });
    let mut assign = |bar: &mut BarResult| {
        if bar.verdict == Outcome::Go || bar.cause.is_some() {
            return;
        }
        if let Some(c) = candidates
            .iter_mut()
            .find(|c| explains(&c.cause, bar.window, &bar.nodes))
        {
            c.cause.explains += 1;
            bar.cause = Some(c.cause.id.clone());
        }
    };
    for window in windows.iter_mut() {
        for bar in &mut window.bars {
            assign(bar);
        }
    }
    for bar in soak_bars.iter_mut() {
        assign(bar);
    }
    let mut causes: Vec<Cause> = candidates
        .into_iter()
        .filter(|c| c.cause.explains > 0 || c.rank == 1 || c.rank == 2)
        .map(|c| c.cause)
        .collect();
    causes.sort_by(|a, b| (a.from_ms, &a.id).cmp(&(b.from_ms, &b.id)));
    causes
}
