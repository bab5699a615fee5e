//! One window judged: every bar of the profile against that window's facts and record.

use super::*;

pub(super) fn scenario_summary(record: &WindowRecord) -> Vec<ScenarioSummary> {
    record
        .scenarios
        .iter()
        .map(|s| {
            let (status, detail) = match &s.status {
                ScenarioStatus::Completed => ("COMPLETED", String::new()),
                ScenarioStatus::Skipped { reason } => ("SKIPPED", reason.clone()),
                ScenarioStatus::Failed { error } => ("FAILED", error.clone()),
            };
            ScenarioSummary {
                name: s.name.clone(),
                status: status.to_string(),
                detail,
                targets: s.targets.clone(),
            }
        })
        .collect()
}

pub(super) fn judge_window(
    facts: &Facts<'_>,
    profile: &Profile,
    w: usize,
    record: &WindowRecord,
) -> WindowVerdict {
    let phase_a_bar = profile
        .bars
        .iter()
        .find(|b| matches!(b.rule, Rule::PhaseA { .. }));
    let phase_a_exempt = phase_a_bar
        .map(|b| exemptions_for(record, &b.id).1)
        .unwrap_or_default();
    let phase_a_cut = phase_a_bar
        .map(|b| exempt_pairs(record, &b.id))
        .unwrap_or_default();
    // Computed once per window; the phase_a bar reuses it when its exemptions are the same.
    let phase_a_full = record
        .phase_a
        .as_ref()
        .map(|pa| phase_a_summary(&facts.obs.run.nodes, pa, &phase_a_exempt, &phase_a_cut));
    let phase_a = phase_a_full.as_ref().map(|full| full.0.clone());
    let mut bars = Vec::new();
    for bar in &profile.bars {
        let (exemptions, exempt) = exemptions_for(record, &bar.id);
        let judged = match &bar.rule {
            Rule::PhaseA { scenario } => {
                let cut = exempt_pairs(record, &bar.id);
                let reuse = phase_a_full
                    .as_ref()
                    .filter(|_| exempt == phase_a_exempt && cut == phase_a_cut);
                judge_phase_a(facts, record, scenario, &exempt, &cut, reuse)
            }
            Rule::Telemetry => Some(judge_telemetry(facts, profile, w, &exempt)),
            Rule::Scenarios => judge_scenarios(record),
            Rule::Counter {
                counter,
                scope,
                max,
            } => Some(judge_counter(facts, w, counter, *scope, *max, &exempt)),
            Rule::CounterRatio {
                numerator,
                denominator,
                scope,
                max,
            } => Some(judge_counter_ratio(
                facts,
                w,
                numerator,
                denominator,
                *scope,
                *max,
                &exempt,
            )),
            Rule::Gauge { gauge, scope, max } => {
                Some(judge_gauge(facts, w, gauge, *scope, *max, &exempt))
            }
            Rule::GaugeRatio {
                numerator,
                denominator,
                scope,
                max,
            } => Some(judge_gauge_ratio(
                facts,
                w,
                (numerator, denominator),
                *scope,
                *max,
                &exempt,
                &exempt_links(record, &bar.id),
            )),
            Rule::Recovery { max_ms } => judge_recovery(record, *max_ms),
            Rule::FaultEffect => judge_fault_effect(record),
            Rule::FaultResidue => judge_fault_residue(record),
            Rule::PartitionHeal { max_ms } => judge_partition_heal(record, *max_ms),
            Rule::Cooling => judge_cooling(record),
            Rule::FirstAttempt => judge_first_attempt(record),
            Rule::Fanout {
                scenario,
                min_ratio,
            } => judge_fanout(facts, record, scenario, *min_ratio, &exempt),
        };
        if let Some(judged) = judged {
            bars.push(finish(bar, record.index, exemptions, judged));
        }
    }
    if facts.partial[w] {
        bars.push(partial_window_bar(facts, record));
    }
    WindowVerdict {
        index: record.index,
        start_ms: record.start_ms,
        end_ms: record.end_ms,
        warmup: record.warmup,
        partial: facts.partial[w],
        verdict: window_outcome(&bars),
        phase_a,
        scenarios: scenario_summary(record),
        bars,
        sampling_failures: facts.failures[w].clone(),
    }
}

/// A window shorter than half its planned length (the last window of an interrupted run) is
/// never judged GO: whatever its other bars say, too little of it was observed.
fn partial_window_bar(facts: &Facts<'_>, record: &WindowRecord) -> BarResult {
    let planned = facts.obs.run.window_ms.unwrap_or(0);
    let length = record.end_ms.saturating_sub(record.start_ms);
    BarResult {
        bar: "window_span".into(),
        title: "window long enough to judge".into(),
        verdict: Outcome::Unknown,
        statistic: "window length, ms".into(),
        value: Some(length as f64),
        threshold: format!(
            ">= {} (half the planned {})",
            planned / 2,
            human_duration(planned)
        ),
        window: Some(record.index),
        nodes: Vec::new(),
        baseline: None,
        exemptions: Vec::new(),
        reason: format!(
            "partial window: {} of a planned {} (the run stopped inside it); not judged",
            human_duration(length),
            human_duration(planned)
        ),
        not_applicable: false,
        cause: None,
    }
}
