//! `soak score` end to end on a 24 h × 100-node proof: the fixture of
//! `gates/benches/rescore.rs` (48 windows of 30 min, a sample every 10 s: 864,300 samples of 30
//! counters and 12 gauges, a 100×99 Phase A matrix and a fanout burst per window, a restart, a
//! gap and a drop) written as a real proof directory twice:
//!
//! - **compact**: by `ProofWriter` (format 1.3, `samples/<node>.smp`);
//! - **reference, in the same run**: the same proof with format-1.2 JSON-lines samples
//!   (`samples/<node>.jsonl`, one `serde_json` line per sample, as 1.2 wrote them).
//!
//! For each it runs the release `soak score DIR --out OUT` (read, evaluate with the proof's
//! gate, print the tables, write the re-scored report) as a child process and times the wall
//! clock, then prints both, the ratio, the sample bytes of each, and the in-process split of
//! the compact read (read / evaluate). Target: compact end to end < 3 s.
//!
//! Run: `cargo bench -p soak --bench rescore` (needs ~2 GB of free space under the temp dir for
//! the JSON reference while it runs; everything is deleted at the end unless
//! `SOAK_RESCORE_KEEP=1`, which keeps both proofs for profiling `soak score` on them).

// A bench binary prints to the terminal that runs it; a closed pipe is not a concern.
#![allow(clippy::disallowed_macros)]

use std::fs;
use std::io::Write;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::Instant;

use soak_gates::model::Observations;
use soak_gates::testkit::{FleetBuilder, bump, drop_samples, restart, span};
use soak_gates::{Profile, evaluate};
use soak_proofs::{ProofWriter, RunMeta, RunStatus, run_id};

fn fixture() -> Observations {
    let mut builder = FleetBuilder::new(100, 48);
    builder.window_ms = 30 * 60 * 1000;
    builder.interval_ms = 10_000;
    let mut obs = builder.build();
    obs.run.run_id = run_id(1_795_309_786_000, "rescore-bench");
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
    obs
}

fn meta(obs: &Observations) -> RunMeta {
    let profile = Profile::builtin("broad-launch").unwrap_or_else(|e| panic!("{e}"));
    RunMeta {
        run_id: run_id(1_795_309_786_000, "rescore-bench"),
        label: "rescore-bench".into(),
        started_at_ms: 1_795_309_786_000,
        tool_version: env!("CARGO_PKG_VERSION").into(),
        node_builds: Vec::new(),
        inventory_digest: None,
        gate: "broad-launch".into(),
        gate_source: Some(profile.source().to_string()),
        scenarios: vec!["baseline".into(), "fanout_burst".into()],
        sample_interval_ms: obs.run.sample_interval_ms,
        nodes: obs.run.nodes.clone(),
        config: serde_json::json!({
            "nodes": 100,
            "windows": obs.windows.len(),
            "interval_ms": obs.windows.first().map_or(0, |w| w.end_ms - w.start_ms),
        }),
        coverage: None,
        command: None,
        seed: None,
        errors: Vec::new(),
        errors_omitted: 0,
    }
}

/// Writes the proof; `json_lines` stores the samples as format 1.2 did.
fn write(dir: &Path, obs: &Observations, json_lines: bool) {
    let verdict = evaluate(
        obs,
        &Profile::builtin("broad-launch").unwrap_or_else(|e| panic!("{e}")),
    );
    let mut writer = ProofWriter::create(dir, meta(obs)).unwrap_or_else(|e| panic!("{e}"));
    for (node, samples) in &obs.samples {
        if json_lines {
            let path = dir
                .join("samples")
                .join(format!("{node}{}", soak_proofs::format::LEGACY_SAMPLES_EXT));
            let mut out = std::io::BufWriter::new(fs::File::create(&path).expect("create"));
            for sample in samples {
                serde_json::to_writer(&mut out, sample).expect("serialize");
                out.write_all(b"\n").expect("write");
            }
            out.flush().expect("flush");
        } else {
            for sample in samples {
                writer
                    .append_sample(node, sample)
                    .unwrap_or_else(|e| panic!("{e}"));
            }
        }
    }
    for window in &obs.windows {
        writer
            .write_window(window)
            .unwrap_or_else(|e| panic!("{e}"));
    }
    writer
        .finish(RunStatus::Complete, &verdict)
        .unwrap_or_else(|e| panic!("{e}"));
    if json_lines {
        // Say 1.2, as the writer of those files did.
        let (now, then) = (
            format!("\"minor\": {}", soak_proofs::format::CURRENT.minor),
            "\"minor\": 2",
        );
        for file in ["run.json", "manifest.json"] {
            let path = dir.join(file);
            let text = fs::read_to_string(&path).expect("read");
            let text = text.replacen(&now, then, 1);
            fs::write(&path, text).expect("write");
        }
    }
}

fn bytes_under(dir: &Path) -> u64 {
    fs::read_dir(dir)
        .map(|entries| {
            entries
                .filter_map(Result::ok)
                .filter_map(|e| e.metadata().ok())
                .map(|m| m.len())
                .sum()
        })
        .unwrap_or(0)
}

/// Wall-clock seconds of `soak score DIR --out OUT`, best of `runs`.
fn score(dir: &Path, out: &Path, runs: usize) -> f64 {
    let mut best = f64::INFINITY;
    for _ in 0..runs {
        let _ = fs::remove_dir_all(out);
        let t = Instant::now();
        let result = Command::new(env!("CARGO_BIN_EXE_soak"))
            .arg("score")
            .arg(dir)
            .arg("--out")
            .arg(out)
            .output()
            .expect("run soak score");
        let secs = t.elapsed().as_secs_f64();
        let code = result.status.code();
        assert!(
            matches!(code, Some(0..=2)),
            "soak score failed ({code:?}): {}",
            String::from_utf8_lossy(&result.stderr)
        );
        best = best.min(secs);
    }
    best
}

fn main() {
    let root: PathBuf = std::env::temp_dir().join(format!("soak-rescore-{}", std::process::id()));
    let _ = fs::remove_dir_all(&root);
    let t = Instant::now();
    let obs = fixture();
    let samples: usize = obs.samples.values().map(Vec::len).sum();
    println!(
        "fixture: {} nodes, {} windows, {samples} samples, built in {:.2?}",
        obs.run.nodes.len(),
        obs.windows.len(),
        t.elapsed()
    );
    let compact = root.join("compact");
    let json = root.join("json");
    let t = Instant::now();
    write(&compact, &obs, false);
    println!(
        "wrote the 1.3 proof (compact samples) in {:.2?}",
        t.elapsed()
    );
    let t = Instant::now();
    write(&json, &obs, true);
    println!(
        "wrote the 1.2 proof (JSON-lines samples) in {:.2?}",
        t.elapsed()
    );
    drop(obs);

    // In-process split of the compact path.
    let t = Instant::now();
    let proof = soak_proofs::read(&compact).unwrap_or_else(|e| panic!("{e}"));
    let read_secs = t.elapsed().as_secs_f64();
    let t = Instant::now();
    let verdict = evaluate(
        &proof.observations,
        &Profile::builtin("broad-launch").unwrap_or_else(|e| panic!("{e}")),
    );
    let eval_secs = t.elapsed().as_secs_f64();
    assert!(
        proof.verdict.as_ref() == Some(&verdict),
        "the re-score must reproduce the stored verdict"
    );
    println!("in process (compact): read {read_secs:.3} s, evaluate {eval_secs:.3} s");
    drop(proof);

    let (compact_bytes, json_bytes) = (
        bytes_under(&compact.join("samples")),
        bytes_under(&json.join("samples")),
    );
    println!(
        "sample bytes: compact {:.1} MB, JSON lines {:.1} MB (ratio {:.3})",
        compact_bytes as f64 / 1e6,
        json_bytes as f64 / 1e6,
        compact_bytes as f64 / json_bytes as f64
    );
    let compact_secs = score(&compact, &root.join("out-compact"), 3);
    let json_secs = score(&json, &root.join("out-json"), 1);
    println!("soak score end to end, 1.3 compact samples   {compact_secs:>8.3} s (best of 3)");
    println!("soak score end to end, 1.2 JSON lines        {json_secs:>8.3} s (reference)");
    println!(
        "ratio compact / JSON: {:.3}  —  compact {:.3} s against a 3 s target: {}",
        compact_secs / json_secs,
        compact_secs,
        if compact_secs < 3.0 { "MET" } else { "MISSED" }
    );
    if std::env::var_os("SOAK_RESCORE_KEEP").is_some() {
        println!(
            "kept the proofs under {} (SOAK_RESCORE_KEEP)",
            root.display()
        );
    } else {
        let _ = fs::remove_dir_all(&root);
    }
}
