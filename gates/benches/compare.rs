//! `soak compare` benchmark: two 24-hour soaks of 100 nodes (48 windows of 30 minutes, a sample
//! every 10 s; 475,200 Phase A latencies per side, 226 billion pairwise differences).
//!
//! Prints the time of the whole comparison (both verdicts, every metric) and of the
//! Hodges–Lehmann shift with its interval alone, and as a reference measured in the same run the
//! time to sort both latency samples once (no estimator can do less). Target: the comparison in
//! a few seconds, the shift within a small multiple of the sort.
//!
//! Run: `cargo bench -p soak-gates --bench compare`.

use std::time::Instant;

use soak_gates::Profile;
use soak_gates::compare::stats::hodges_lehmann;
use soak_gates::compare::{Settings, Side, compare};
use soak_gates::model::Observations;
use soak_gates::testkit::FleetBuilder;

fn latencies(obs: &Observations) -> Vec<f64> {
    obs.windows
        .iter()
        .filter_map(|w| w.phase_a.as_ref())
        .flat_map(|m| m.pairs.iter().filter_map(|p| p.latency_us))
        .map(|us| us as f64 / 1000.0)
        .collect()
}

fn main() {
    let t = Instant::now();
    let mut builder = FleetBuilder::new(100, 48);
    builder.window_ms = 30 * 60 * 1000;
    builder.interval_ms = 10_000;
    let base = builder.build();
    let mut candidate = builder.build();
    for window in &mut candidate.windows {
        for (i, pair) in window
            .phase_a
            .iter_mut()
            .flat_map(|m| m.pairs.iter_mut())
            .enumerate()
        {
            // A 3 ms slowdown on every third pair: a real but partial shift.
            if i % 3 == 0 {
                pair.latency_us = pair.latency_us.map(|us| us + 3_000);
            }
        }
    }
    let (b, c) = (latencies(&base), latencies(&candidate));
    println!(
        "fixture: 2 × {} windows × {} nodes, {} + {} latencies, built in {:.2?}",
        base.windows.len(),
        base.run.nodes.len(),
        b.len(),
        c.len(),
        t.elapsed()
    );

    // Reference: sort both samples once.
    let t = Instant::now();
    let mut sb = b.clone();
    let mut sc = c.clone();
    sb.sort_by(f64::total_cmp);
    sc.sort_by(f64::total_cmp);
    let sort_secs = t.elapsed().as_secs_f64();
    println!("reference: sort both samples        {sort_secs:>8.3} s");

    let t = Instant::now();
    let shift = hodges_lehmann(&b, &c, 0.95);
    let hl_secs = t.elapsed().as_secs_f64();
    println!(
        "hodges_lehmann + 95 % interval       {hl_secs:>8.3} s  ({:.1}× the sort; {shift:?})",
        hl_secs / sort_secs
    );

    let profile = Profile::builtin("broad-launch").unwrap_or_else(|e| panic!("{e}"));
    let scenarios = vec!["baseline".to_string(), "fanout_burst".to_string()];
    let side = |o| Side {
        observations: o,
        profile: &profile,
        scenarios: &scenarios,
    };
    let t = Instant::now();
    let _ = soak_gates::evaluate(&base, &profile);
    let _ = soak_gates::evaluate(&candidate, &profile);
    let evaluate_secs = t.elapsed().as_secs_f64();
    println!("reference: evaluate both proofs      {evaluate_secs:>8.3} s");
    let t = Instant::now();
    let report = compare(
        &side(&base),
        &side(&candidate),
        &Settings::default(),
        Vec::new(),
    );
    let compare_secs = t.elapsed().as_secs_f64();
    println!(
        "compare (verdicts + {} metrics)      {compare_secs:>8.3} s  ({:.2}× evaluating both; result {})",
        report.metrics.len(),
        compare_secs / evaluate_secs,
        report.result.as_str()
    );
}
