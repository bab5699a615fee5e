//! The evaluator: observations × profile → verdict. Pure and deterministic: no IO, clock, env
//! or randomness; iteration orders are fixed (node order of the run, then window order).
//!
//! Work is done in two passes so memory stays bounded by one node's samples: first every node's
//! series is reduced to per-window facts (counter deltas as intervals, gauge maxima and last
//! values, gaps, restarts, integrity errors), then every window is judged from those facts.

mod adaptive;
mod causes;
mod facts;
mod faults;
mod phase_a;
mod resource;
mod rules;
mod soak;
mod window;
mod workload;

use std::collections::{BTreeMap, BTreeSet, HashMap};

use crate::display::{human_duration, human_number, human_percent, utc_time};
use crate::model::{
    Check, Exemption, FaultEvidence, HealCheck, Observations, PhaseAResult, RecoveryTiming,
    ScenarioRecord, ScenarioStatus, WindowRecord,
};
use crate::names;
use crate::outcome::Outcome;
use crate::profile::{AdaptivePolicy, Bar, Profile, Rule, Scope};
use crate::series::{Delta, Event, NodeSeries};
use crate::stats::poisson_upper_tail;
use crate::verdict::{
    BarResult, Baseline, GapRecord, IntegrityRecord, InterruptionRecord, PhaseASummary,
    RestartRecord, SamplingFailure, ScenarioSummary, VERDICT_VERSION, Verdict, WindowVerdict,
};

use self::adaptive::*;
use self::facts::*;
use self::faults::*;
use self::phase_a::*;
use self::resource::*;
use self::rules::*;
use self::soak::*;
use self::window::*;
use self::workload::*;

/// Judges `observations` against `profile`. Pure: same inputs, same verdict, byte for byte.
pub fn evaluate(observations: &Observations, profile: &Profile) -> Verdict {
    let facts = Facts::collect(observations, profile);
    let mut windows: Vec<WindowVerdict> = observations
        .windows
        .iter()
        .enumerate()
        .map(|(w, record)| judge_window(&facts, profile, w, record))
        .collect();
    let phase_a = phase_a_soak(&facts, profile);
    let mut soak_bars = vec![
        evidence_bar(&facts, profile),
        phase_a_aggregate(profile, phase_a.as_ref()),
    ];
    soak_bars.extend(coverage_bar(observations));
    soak_bars.extend(continuity_bar(observations));
    soak_bars.extend(residue_bar(observations, profile));
    if let Some(policy) = &profile.adaptive {
        soak_bars.push(adaptive(&facts, policy, &mut windows));
    }
    soak_bars.extend(resource_bars(&facts, profile));
    for window in &mut windows {
        window.verdict = window_outcome(&window.bars);
    }
    let causes = causes::group(&facts, &mut windows, &mut soak_bars);
    // A not-applicable bar is reported but never part of the verdict: it cannot pass, and it
    // cannot make a run GO by itself (the `windows` bar still needs judged windows).
    let verdict = Outcome::worst_of(
        windows.iter().map(|w| w.verdict).chain(
            soak_bars
                .iter()
                .filter(|b| !b.not_applicable)
                .map(|b| b.verdict),
        ),
    );
    Verdict {
        verdict,
        gate: profile.name.clone(),
        verdict_version: VERDICT_VERSION,
        run_id: observations.run.run_id.clone(),
        nodes: facts.nodes.len(),
        windows,
        soak_bars,
        restarts: facts.restarts,
        gaps: facts.gaps,
        integrity_errors: facts.integrity,
        phase_a,
        causes,
        interruptions: observations
            .run
            .interruptions
            .iter()
            .map(|i| InterruptionRecord {
                window: i.window,
                from_ms: i.from_ms,
                to_ms: i.to_ms,
                cause: i.cause.clone(),
                verdict: Outcome::Unknown,
            })
            .collect(),
    }
}

/// A window with no applicable bar judged nothing: UNKNOWN, never a vacuous GO.
pub(super) fn window_outcome(bars: &[BarResult]) -> Outcome {
    let mut applicable = bars.iter().filter(|b| !b.not_applicable).peekable();
    if applicable.peek().is_none() {
        Outcome::Unknown
    } else {
        Outcome::worst_of(applicable.map(|b| b.verdict))
    }
}

/// Exemptions for `bar` granted by scenarios that ran (completed or failed) in the window;
/// a skipped scenario never applied its fault, so it grants nothing.
pub(super) fn exemptions_for(
    record: &WindowRecord,
    bar: &str,
) -> (Vec<Exemption>, BTreeSet<String>) {
    let mut list = Vec::new();
    let mut nodes = BTreeSet::new();
    for scenario in &record.scenarios {
        if matches!(scenario.status, ScenarioStatus::Skipped { .. }) {
            continue;
        }
        for exemption in scenario.exemptions.iter().filter(|e| e.bar == bar) {
            nodes.extend(exemption.nodes.iter().cloned());
            list.push(exemption.clone());
        }
    }
    (list, nodes)
}

/// Ordered pairs that scenarios which ran in the window expect to fail for `bar` (e.g. across
/// a partition).
pub(super) fn exempt_pairs(record: &WindowRecord, bar: &str) -> BTreeSet<(String, String)> {
    record
        .scenarios
        .iter()
        .filter(|s| !matches!(s.status, ScenarioStatus::Skipped { .. }))
        .flat_map(|s| s.exemptions.iter().filter(|e| e.bar == bar))
        .flat_map(|e| e.pairs.iter().cloned())
        .collect()
}

/// Links `(node, peer)` that scenarios which ran in the window exempt from `bar`.
pub(super) fn exempt_links(record: &WindowRecord, bar: &str) -> BTreeSet<(String, String)> {
    record
        .scenarios
        .iter()
        .filter(|s| !matches!(s.status, ScenarioStatus::Skipped { .. }))
        .flat_map(|s| s.exemptions.iter().filter(|e| e.bar == bar))
        .flat_map(|e| e.links.iter().cloned())
        .collect()
}

/// Builder of one bar result.
pub(super) struct Judged {
    pub(super) verdict: Outcome,
    pub(super) statistic: String,
    pub(super) value: Option<f64>,
    pub(super) threshold: String,
    pub(super) nodes: Vec<String>,
    pub(super) reason: String,
}

pub(super) fn finish(
    bar: &Bar,
    window: u32,
    exemptions: Vec<Exemption>,
    judged: Judged,
) -> BarResult {
    BarResult {
        bar: bar.id.clone(),
        title: bar.title.clone(),
        verdict: judged.verdict,
        statistic: judged.statistic,
        value: judged.value.filter(|v| v.is_finite()),
        threshold: judged.threshold,
        window: Some(window),
        nodes: judged.nodes,
        baseline: None,
        exemptions,
        reason: judged.reason,
        not_applicable: false,
        cause: None,
    }
}

/// Numbers in reasons and thresholds are for people: rounded (the `value` keeps full
/// precision).
pub(super) fn fmt_num(v: f64) -> String {
    human_number(v)
}

/// `1 window`, `3 windows`.
pub(super) fn plural(n: usize, noun: &str) -> String {
    if n == 1 {
        format!("1 {noun}")
    } else {
        format!("{n} {noun}s")
    }
}

pub(super) fn list(items: &[String], limit: usize) -> String {
    let mut text = items
        .iter()
        .take(limit)
        .cloned()
        .collect::<Vec<_>>()
        .join(", ");
    if items.len() > limit {
        text.push_str(&format!(" and {} more", items.len() - limit));
    }
    text
}

pub(super) fn soak_bar(id: &str, title: &str, judged: Judged) -> BarResult {
    BarResult {
        bar: id.to_string(),
        title: title.to_string(),
        verdict: judged.verdict,
        statistic: judged.statistic,
        value: judged.value.filter(|v| v.is_finite()),
        threshold: judged.threshold,
        window: None,
        nodes: judged.nodes,
        baseline: None,
        exemptions: Vec::new(),
        reason: judged.reason,
        not_applicable: false,
        cause: None,
    }
}
