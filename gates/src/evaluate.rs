//! The evaluator: observations × profile → verdict. Pure and deterministic.

use crate::model::Observations;
use crate::outcome::Outcome;
use crate::profile::Profile;
use crate::verdict::{VERDICT_VERSION, Verdict, WindowVerdict};

/// Judges `observations` against `profile`. Pure: same inputs, same verdict, byte for byte.
pub fn evaluate(observations: &Observations, profile: &Profile) -> Verdict {
    // Placeholder while the bars are written: never GO.
    let windows = observations
        .windows
        .iter()
        .map(|w| WindowVerdict {
            index: w.index,
            start_ms: w.start_ms,
            end_ms: w.end_ms,
            warmup: w.warmup,
            verdict: Outcome::Unknown,
            phase_a: None,
            scenarios: Vec::new(),
            bars: Vec::new(),
        })
        .collect();
    Verdict {
        verdict: Outcome::Unknown,
        gate: profile.name.clone(),
        verdict_version: VERDICT_VERSION,
        run_id: observations.run.run_id.clone(),
        nodes: observations.run.nodes.len(),
        windows,
        soak_bars: Vec::new(),
        restarts: Vec::new(),
        gaps: Vec::new(),
        integrity_errors: Vec::new(),
    }
}
