//! Soak-level bars: enough windows judged (nothing judged, nothing passed) and fleet coverage.
//! Phase A over the soak is in `phase_a.rs`, the adaptive policy in `adaptive.rs`, the resource
//! trends in `resource.rs`.

use super::*;

/// Nothing judged, nothing passed: at least `soak.min_windows` judged windows (neither warm-up
/// nor partial), every planned window recorded (fewer means the run was interrupted or a window
/// was removed from the proof), and at least one node.
pub(super) fn evidence_bar(facts: &Facts<'_>, profile: &Profile) -> BarResult {
    let windows = &facts.obs.windows;
    let min = (profile.soak.min_windows as usize).max(1);
    let judged = (0..windows.len()).filter(|&w| facts.judged(w)).count();
    let warmup = windows.iter().filter(|w| w.warmup).count();
    let partial: Vec<&WindowRecord> = windows
        .iter()
        .zip(&facts.partial)
        .filter(|(_, p)| **p)
        .map(|(w, _)| w)
        .collect();
    let excluded = {
        let mut parts = Vec::new();
        if warmup > 0 {
            parts.push(format!("{warmup} warm-up"));
        }
        if !partial.is_empty() {
            parts.push(format!("{} partial", partial.len()));
        }
        if parts.is_empty() {
            String::new()
        } else {
            format!(" (+{} not judged)", parts.join(", "))
        }
    };
    let plan = facts.obs.run.planned_windows.map(|planned| {
        let indices: BTreeSet<u32> = windows.iter().map(|w| w.index).collect();
        let missing: Vec<u32> = (0..planned).filter(|i| !indices.contains(i)).collect();
        let unplanned =
            windows.iter().any(|w| w.index >= planned) || indices.len() != windows.len();
        (planned, missing, unplanned)
    });
    let (verdict, reason) = if facts.nodes.is_empty() {
        (Outcome::Unknown, "no nodes in the run".to_string())
    } else if let Some((planned, missing, unplanned)) =
        plan.as_ref().filter(|p| !p.1.is_empty() || p.2)
    {
        let recorded = windows.len();
        let tail = missing
            .first()
            .is_some_and(|&first| (first..*planned).eq(missing.iter().copied()));
        let text = if *unplanned {
            format!(
                "window indices do not match the plan of {planned} windows (a window recorded                  twice or beyond the plan)"
            )
        } else if tail {
            let complete = recorded - partial.len();
            let partial_text = match partial.last() {
                Some(p) => format!(
                    "; window {} partial ({} of {})",
                    p.index,
                    human_duration(p.end_ms.saturating_sub(p.start_ms)),
                    human_duration(facts.obs.run.window_ms.unwrap_or(0))
                ),
                None => String::new(),
            };
            format!(
                "interrupted after {complete} of {planned} windows{partial_text}: the soak did                  not run to its end"
            )
        } else {
            let names: Vec<String> = missing.iter().map(u32::to_string).collect();
            format!(
                "windows missing from the proof: {} ({recorded} of {planned} planned windows                  recorded)",
                list(&names, 8)
            )
        };
        (Outcome::Unknown, text)
    } else if judged == 0 {
        (
            Outcome::Unknown,
            format!("no window judged{excluded}: nothing judged, nothing passed"),
        )
    } else if judged < min {
        (
            Outcome::Unknown,
            format!("{judged} windows judged{excluded}, at least {min} needed"),
        )
    } else {
        (
            Outcome::Go,
            format!(
                "{judged} windows judged{excluded} over {} nodes",
                facts.nodes.len()
            ),
        )
    };
    let threshold = match facts.obs.run.planned_windows {
        Some(planned) => format!(">= {min}, all {planned} planned windows recorded"),
        None => format!(">= {min}"),
    };
    soak_bar(
        "windows",
        "enough windows judged",
        Judged {
            verdict,
            statistic: "windows judged (warm-up and partial windows excluded)".into(),
            value: Some(judged as f64),
            threshold,
            nodes: Vec::new(),
            reason,
        },
    )
}

/// Inventory runs only: a verdict on part of the inventory says nothing about the hosts left
/// out, so a partial fleet is UNKNOWN (missing evidence), never GO.
pub(super) fn coverage_bar(observations: &Observations) -> Option<BarResult> {
    let listed = observations.run.inventory_hosts?;
    let reached = observations.run.nodes.len();
    let (verdict, reason) = if reached >= listed {
        (Outcome::Go, format!("all {listed} inventory hosts ran"))
    } else {
        (
            Outcome::Unknown,
            format!(
                "partial fleet: {reached} of {listed} inventory hosts ran; the hosts left out were not judged"
            ),
        )
    };
    Some(soak_bar(
        "coverage",
        "inventory hosts covered",
        Judged {
            verdict,
            statistic: "hosts run / hosts in the inventory".into(),
            value: Some(reached as f64),
            threshold: format!("== {listed}"),
            nodes: Vec::new(),
            reason,
        },
    ))
}

/// Resumed runs only: every span an interruption lost is an evidence gap — its partial
/// evidence is never judged, let alone passed — and the window it cut short must have been run
/// again after the resume (a recorded window of that index starting at or after the resume).
/// GO then means "the plan was completed around the gaps", and the reason names each gap;
/// a lost window never run again is UNKNOWN.
pub(super) fn continuity_bar(observations: &Observations) -> Option<BarResult> {
    let lost = &observations.run.interruptions;
    if lost.is_empty() {
        return None;
    }
    let spans: Vec<String> = lost
        .iter()
        .map(|i| {
            format!(
                "window {} lost {} ({} → {}: {})",
                i.window,
                human_duration(i.to_ms.saturating_sub(i.from_ms)),
                utc_time(i.from_ms),
                utc_time(i.to_ms),
                i.cause
            )
        })
        .collect();
    let not_rerun: Vec<String> = lost
        .iter()
        .filter(|i| {
            !observations
                .windows
                .iter()
                .any(|w| w.index == i.window && w.start_ms >= i.to_ms)
        })
        .map(|i| i.window.to_string())
        .collect();
    let (verdict, reason) = if not_rerun.is_empty() {
        (
            Outcome::Go,
            format!(
                "resumed {} time{}; every lost window was run again; the lost spans are evidence \
                 gaps, not judged: {}",
                lost.len(),
                if lost.len() == 1 { "" } else { "s" },
                list(&spans, 4)
            ),
        )
    } else {
        (
            Outcome::Unknown,
            format!(
                "window{} {} lost to an interruption and never run again: {}",
                if not_rerun.len() == 1 { "" } else { "s" },
                not_rerun.join(", "),
                list(&spans, 4)
            ),
        )
    };
    Some(soak_bar(
        "continuity",
        "lost windows run again after a resume",
        Judged {
            verdict,
            statistic: "lost windows run again / lost windows".into(),
            value: Some((lost.len() - not_rerun.len()) as f64),
            threshold: format!("== {}", lost.len()),
            nodes: Vec::new(),
            reason,
        },
    ))
}
