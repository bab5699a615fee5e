//! Rendering benchmark: `report.html` and the long `timeline.csv` of a 24-hour, 100-node proof
//! (48 windows of 30 min, one sample every 10 s: 864,300 samples of 30 counters and 12 gauges,
//! a 100×99 Phase A matrix and a fanout burst per window, a restart, a gap and a drop).
//!
//! Prints the size of `report.html` against its ~10 MB budget, the time to render it from the
//! proof directory (one streaming pass over the samples, as `soak report` does), the time and
//! size of the full `write_report` (which also streams `timeline.csv`), and as a reference
//! measured in the same run the time of `soak_proofs::read` on the same directory (what
//! `soak score` costs before it judges anything).
//!
//! Run: `cargo bench -p soak-proofs --bench report` (needs ~5 GB of free disk under $TMPDIR and
//! a few GB of memory). `BENCH_NODES=N` changes the fleet size.

use std::time::Instant;

use soak_gates::testkit::{FleetBuilder, bump, drop_samples, restart, span};
use soak_gates::{Profile, evaluate};
use soak_proofs::faults::FaultJournal;
use soak_proofs::render::{self, Evidence, SampleSource};
use soak_proofs::{ProofWriter, RunMeta, RunStatus, read, read_head, run_id};

fn main() {
    let nodes: usize = std::env::var("BENCH_NODES")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(100);
    let t = Instant::now();
    let mut builder = FleetBuilder::new(nodes, 48);
    builder.window_ms = 30 * 60 * 1000;
    builder.interval_ms = 10_000;
    let mut obs = builder.build();
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
    let profile = Profile::builtin("broad-launch").unwrap_or_else(|e| panic!("{e}"));
    let verdict = evaluate(&obs, &profile);
    println!(
        "fixture: {nodes} nodes, {} windows, {samples} samples, built and judged in {:.1?}",
        obs.windows.len(),
        t.elapsed()
    );

    let tmp = tempfile::tempdir().unwrap_or_else(|e| panic!("{e}"));
    let dir = tmp.path().join("proof");
    let t = Instant::now();
    let meta = RunMeta {
        run_id: run_id(builder.start_ms, "bench"),
        label: "bench".into(),
        started_at_ms: builder.start_ms - builder.interval_ms,
        tool_version: "bench".into(),
        node_builds: Vec::new(),
        inventory_digest: None,
        gate: profile.name().to_string(),
        gate_source: Some(profile.source().to_string()),
        scenarios: vec!["baseline".into(), "fanout_burst".into()],
        sample_interval_ms: builder.interval_ms,
        nodes: obs.run.nodes.clone(),
        config: serde_json::json!({}),
        coverage: None,
        command: Some(vec!["soak".into(), "run".into()]),
        seed: Some(1),
        errors: Vec::new(),
        errors_omitted: 0,
        resumes: Vec::new(),
    };
    let mut writer = ProofWriter::create(&dir, meta).unwrap_or_else(|e| panic!("{e}"));
    for (node, series) in &obs.samples {
        for sample in series {
            writer
                .append_sample(node, sample)
                .unwrap_or_else(|e| panic!("{e}"));
        }
    }
    for window in &obs.windows {
        writer
            .write_window(window)
            .unwrap_or_else(|e| panic!("{e}"));
    }
    drop(writer);
    let sample_bytes: u64 = std::fs::read_dir(dir.join("samples"))
        .map(|d| {
            d.filter_map(|e| e.ok()?.metadata().ok())
                .map(|m| m.len())
                .sum()
        })
        .unwrap_or(0);
    println!(
        "proof written: {:.1} MB of samples in {:.1?}",
        sample_bytes as f64 / 1e6,
        t.elapsed()
    );
    drop(obs);

    // Reference: reading the whole proof back, as `soak score` does.
    let t = Instant::now();
    let proof = read(&dir).unwrap_or_else(|e| panic!("{e}"));
    let read_secs = t.elapsed().as_secs_f64();
    println!(
        "reference: soak_proofs::read          {read_secs:>8.2} s  ({} samples)",
        proof
            .observations
            .samples
            .values()
            .map(Vec::len)
            .sum::<usize>()
    );
    let memory = Evidence {
        meta: &proof.meta,
        status: RunStatus::Complete,
        windows: &proof.observations.windows,
        samples: SampleSource::Memory(&proof.observations.samples),
        faults: &FaultJournal::default(),
        notes: &[],
    };
    let t = Instant::now();
    let html = render::report_html(&memory, Some(&verdict)).unwrap_or_else(|e| panic!("{e}"));
    println!(
        "report.html from samples in memory     {:>8.2} s  {:.2} MB",
        t.elapsed().as_secs_f64(),
        html.len() as f64 / 1e6
    );
    drop(html);
    // What the directory renderer pays beyond `read`: it frees every node's samples as it goes.
    let t = Instant::now();
    drop(proof);
    println!(
        "freeing the read samples               {:>8.2} s",
        t.elapsed().as_secs_f64()
    );

    let head = read_head(&dir).unwrap_or_else(|e| panic!("{e}"));
    let faults = FaultJournal::read(&dir).unwrap_or_else(|e| panic!("{e}"));
    let evidence = Evidence {
        meta: &head.meta,
        status: RunStatus::Complete,
        windows: &head.observations.windows,
        samples: SampleSource::Dir(&dir),
        faults: &faults,
        notes: &[],
    };
    let t = Instant::now();
    let html = render::report_html(&evidence, Some(&verdict)).unwrap_or_else(|e| panic!("{e}"));
    let report_secs = t.elapsed().as_secs_f64();
    let mb = html.len() as f64 / 1e6;
    println!(
        "report.html from the directory         {report_secs:>8.2} s  {mb:.2} MB (budget 10 MB: {})",
        if mb < 10.0 { "MET" } else { "MISSED" }
    );
    drop(html);

    let out = tmp.path().join("rendered");
    std::fs::create_dir_all(&out).unwrap_or_else(|e| panic!("{e}"));
    let t = Instant::now();
    render::write_report(&out, &evidence, &verdict).unwrap_or_else(|e| panic!("{e}"));
    let all_secs = t.elapsed().as_secs_f64();
    let size = |name: &str| {
        std::fs::metadata(out.join(name))
            .map(|m| m.len() as f64 / 1e6)
            .unwrap_or(0.0)
    };
    println!(
        "write_report (all files)               {all_secs:>8.2} s  timeline.csv {:.0} MB, junit.xml {:.2} MB, summary.md {:.3} MB",
        size("timeline.csv"),
        size("junit.xml"),
        size("summary.md")
    );
    println!(
        "ratios: report.html / read {:.2}; write_report / read {:.2}",
        report_secs / read_secs,
        all_secs / read_secs
    );
}
