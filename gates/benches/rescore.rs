//! Re-scoring benchmark: 48 windows × 100 nodes × one sample every 10 s (30-minute windows, a
//! 24-hour soak: 864,000 samples, each with the node's full set of 30 counters and 12 gauges,
//! plus a 100×99 Phase A matrix and a fanout burst per window).
//!
//! Prints the time to evaluate against both built-in profiles, and as a reference measured in
//! the same run, the time to deserialize the same observations from JSON (what `soak score`
//! must do anyway before it can judge). Target: evaluation < 2 s.
//!
//! Run: `cargo bench -p soak-gates --bench rescore`.

use std::time::Instant;

use soak_gates::model::Observations;
use soak_gates::testkit::{FleetBuilder, bump, drop_samples, restart, span};
use soak_gates::{Profile, evaluate};

fn main() {
    let t = Instant::now();
    let mut builder = FleetBuilder::new(100, 48);
    builder.window_ms = 30 * 60 * 1000;
    builder.interval_ms = 10_000;
    let mut obs = builder.build();
    // Some texture: a restart, a gap and a drop, so the slow paths run too.
    let (s10, _) = span(&obs, 10);
    restart(&mut obs, "node-7", s10 + 600_000, "inst-7-b");
    drop_samples(&mut obs, "node-8", s10 + 100_000, s10 + 200_000);
    bump(
        &mut obs,
        "node-9",
        "recv_pump_dropped_full_total",
        s10 + 900_000,
        1,
    );
    let samples: usize = obs.samples.values().map(Vec::len).sum();
    println!(
        "fixture: {} nodes, {} windows, {} samples, built in {:.2?}",
        obs.run.nodes.len(),
        obs.windows.len(),
        samples,
        t.elapsed()
    );

    let profiles = ["limited-production", "broad-launch"]
        .map(|n| Profile::builtin(n).unwrap_or_else(|e| panic!("built-in profile {n}: {e}")));
    let mut evaluate_secs = Vec::new();
    for profile in &profiles {
        let t = Instant::now();
        let verdict = evaluate(&obs, profile);
        let secs = t.elapsed().as_secs_f64();
        println!(
            "evaluate {:<20} {:>8.3} s  (verdict {}, {} windows)",
            profile.name(),
            secs,
            verdict.verdict,
            verdict.windows.len()
        );
        evaluate_secs.push(secs);
    }

    // Floor: reading the metrics a profile needs from every sample once (no judging at all).
    let t = Instant::now();
    let mut cells = 0usize;
    for samples in obs.samples.values() {
        let series = soak_gates::series::NodeSeries::new(samples);
        let columns = series.columns(
            &[
                "dispatcher_completed_total",
                "dispatcher_timeouts_total",
                "outbound_high_water_total",
                "peer_send_timeouts_total",
                "recv_pump_dropped_full_total",
            ],
            &[
                "known_topic_peers",
                "outbound_queue_max_depth",
                "recv_pump_depth",
                "suppressed_topic_peers",
            ],
        );
        cells += columns.counters.iter().map(Vec::len).sum::<usize>();
    }
    println!(
        "floor: one pass reading the needed metrics  {:>8.3} s  ({cells} counter cells)",
        t.elapsed().as_secs_f64()
    );

    // Reference: deserialize the same observations, node by node as the proof stores them.
    let run_json = serde_json::to_string(&(&obs.run, &obs.windows)).unwrap_or_default();
    let sample_lines: Vec<String> = obs
        .samples
        .values()
        .map(|series| {
            series
                .iter()
                .map(|s| serde_json::to_string(s).unwrap_or_default())
                .collect::<Vec<_>>()
                .join("\n")
        })
        .collect();
    let bytes: usize = run_json.len() + sample_lines.iter().map(String::len).sum::<usize>();
    drop(obs);
    let t = Instant::now();
    let parsed = deserialize(&run_json, &sample_lines);
    let reference = t.elapsed().as_secs_f64();
    println!(
        "reference: deserialize {:.1} MB of JSON      {:>8.3} s  ({} samples)",
        bytes as f64 / 1e6,
        reference,
        parsed.samples.values().map(Vec::len).sum::<usize>()
    );
    let worst = evaluate_secs.iter().copied().fold(0.0, f64::max);
    println!(
        "ratio evaluate / deserialize: {:.2}  —  slowest evaluate {:.3} s against a 2 s target: {}",
        worst / reference,
        worst,
        if worst < 2.0 { "MET" } else { "MISSED" }
    );
}

fn deserialize(run_json: &str, sample_lines: &[String]) -> Observations {
    type Head = (
        soak_gates::model::RunInfo,
        Vec<soak_gates::model::WindowRecord>,
    );
    let (run, windows): Head = serde_json::from_str(run_json).unwrap_or_else(|e| panic!("{e}"));
    let samples = run
        .nodes
        .iter()
        .zip(sample_lines)
        .map(|(node, lines)| {
            let series = lines
                .lines()
                .map(|l| serde_json::from_str(l).unwrap_or_else(|e| panic!("{e}")))
                .collect();
            (node.name.clone(), series)
        })
        .collect();
    Observations {
        residue: Vec::new(),
        run,
        samples,
        windows,
        node_events: Vec::new(),
    }
}
