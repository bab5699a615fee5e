//! Reopening a proof to resume its run (`soak run --resume`): a killed writer's torn last lines
//! and torn last compact sample records are dropped before appending (the records appended
//! after them still decode), a sealed interrupted proof is unsealed (no stale verdict), a
//! live writer's lock refuses a second one, and a complete proof is never reopened.

use std::io::Write;
use std::path::Path;

use soak_gates::model::Observations;
use soak_gates::testkit::FleetBuilder;
use soak_gates::{Profile, evaluate};
use soak_proofs::samples::SampleEncoder;
use soak_proofs::{ProofWriter, RunMeta, RunStatus, format, read, verify};

fn meta(obs: &Observations) -> RunMeta {
    RunMeta {
        run_id: obs.run.run_id.clone(),
        label: "reopen".into(),
        started_at_ms: 1_795_309_786_000,
        tool_version: "0.1.0".into(),
        node_builds: Vec::new(),
        inventory_digest: None,
        gate: "broad-launch".into(),
        gate_source: None,
        scenarios: vec!["baseline".into()],
        sample_interval_ms: obs.run.sample_interval_ms,
        nodes: obs.run.nodes.clone(),
        config: serde_json::json!({"windows": 3, "interval_ms": 60_000}),
        coverage: None,
        command: None,
        seed: Some(1),
        errors: Vec::new(),
        errors_omitted: 0,
        resumes: Vec::new(),
    }
}

/// Writes the samples and windows `0..windows` of `obs` (no seal: the writer is then dropped,
/// as a killed `soak` would leave it).
fn write_until(dir: &Path, obs: &Observations, windows: usize) -> ProofWriter {
    let mut writer = ProofWriter::create(dir, meta(obs)).unwrap();
    let end = obs.windows[windows - 1].end_ms;
    for (node, samples) in &obs.samples {
        for sample in samples.iter().filter(|s| s.at_ms <= end) {
            writer.append_sample(node, sample).unwrap();
        }
    }
    for window in &obs.windows[..windows] {
        writer.write_window(window).unwrap();
    }
    writer
        .append_event(&serde_json::json!({"event": "run_started"}))
        .unwrap();
    writer
}

fn tear(path: &Path, bytes: &[u8]) {
    let mut file = std::fs::OpenOptions::new().append(true).open(path).unwrap();
    file.write_all(bytes).unwrap();
}

#[test]
fn a_killed_writers_torn_lines_are_dropped_before_appending() {
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path().join("run");
    let obs = FleetBuilder::new(3, 3).build();
    drop(write_until(&dir, &obs, 2));
    // A compact sample file cut inside its last record, as a SIGKILL mid-append leaves it: the
    // bytes of the next sample's encoding but its last one.
    let samples = dir.join("samples/node-0.smp");
    let mut next = Vec::new();
    SampleEncoder::continuing().encode(&obs.samples["node-0"][0], &mut next);
    tear(&samples, &next[..next.len() - 1]);
    tear(&dir.join(format::EVENTS), br#"{"event": "sam"#);

    let reopened = ProofWriter::reopen(&dir).unwrap();
    assert_eq!(reopened.previous_status, RunStatus::Running);
    assert_eq!(reopened.repaired.len(), 2, "{:?}", reopened.repaired);
    assert!(
        reopened
            .repaired
            .iter()
            .any(|r| r.starts_with("samples/node-0.smp: dropped a torn last record (")),
        "{:?}",
        reopened.repaired
    );
    assert!(
        reopened
            .repaired
            .iter()
            .any(|r| r == "events.jsonl: dropped a torn last line (14 bytes)"),
        "{:?}",
        reopened.repaired
    );
    let mut writer = reopened.writer;
    let after = obs.windows[1].end_ms;
    for (node, samples) in &obs.samples {
        for sample in samples.iter().filter(|s| s.at_ms > after) {
            writer.append_sample(node, sample).unwrap();
        }
    }
    writer.write_window(&obs.windows[2]).unwrap();
    let verdict = evaluate(&obs, &Profile::builtin("broad-launch").unwrap());
    writer.finish(RunStatus::Complete, &verdict).unwrap();

    let proof = read(&dir).unwrap();
    assert!(proof.warnings.is_empty(), "{:?}", proof.warnings);
    assert_eq!(proof.observations.samples, obs.samples);
    assert_eq!(proof.observations.windows, obs.windows);
    assert!(verify(&dir).is_ok());
}

#[test]
fn an_interrupted_proof_is_unsealed_and_its_cut_window_set_aside() {
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path().join("run");
    let obs = FleetBuilder::new(3, 3).build();
    let writer = write_until(&dir, &obs, 2);
    let partial = evaluate(&obs, &Profile::builtin("broad-launch").unwrap());
    writer.finish(RunStatus::Interrupted, &partial).unwrap();
    assert!(dir.join(format::VERDICT).is_file());

    let reopened = ProofWriter::reopen(&dir).unwrap();
    assert_eq!(reopened.previous_status, RunStatus::Interrupted);
    // No stale verdict or rendering survives the unsealing.
    for name in format::RENDERED {
        assert!(!dir.join(name).exists(), "{name} left behind");
    }
    assert!(!dir.join("windows/001/verdict.json").exists());
    let manifest: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(dir.join(format::MANIFEST)).unwrap())
            .unwrap();
    assert_eq!(manifest["status"], "running");
    let mut writer = reopened.writer;
    assert_eq!(
        writer.set_window_aside(1, 1).unwrap().as_deref(),
        Some("lost-1.json")
    );
    assert_eq!(writer.set_window_aside(2, 1).unwrap(), None);
    let proof = read(&dir).unwrap();
    assert_eq!(
        proof
            .observations
            .windows
            .iter()
            .map(|w| w.index)
            .collect::<Vec<_>>(),
        [0]
    );
    writer.write_window(&obs.windows[1]).unwrap();
    writer.write_window(&obs.windows[2]).unwrap();
    let verdict = evaluate(&obs, &Profile::builtin("broad-launch").unwrap());
    writer.finish(RunStatus::Complete, &verdict).unwrap();
    let report = verify(&dir);
    assert!(report.is_ok(), "{report:?}");
    let proof = read(&dir).unwrap();
    let manifest = proof.manifest.unwrap();
    assert!(manifest.files.contains_key("windows/001/lost-1.json"));
    assert_eq!(proof.observations.windows.len(), 3);
}

#[test]
fn a_live_writer_refuses_a_second_one() {
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path().join("run");
    let obs = FleetBuilder::new(2, 1).build();
    let live = write_until(&dir, &obs, 1);
    let err = ProofWriter::reopen(&dir).unwrap_err();
    assert!(
        err.kind
            .to_string()
            .contains("another soak process is writing it"),
        "{err}: {}",
        err.kind
    );
    drop(live);
    assert!(ProofWriter::reopen(&dir).is_ok());
}

#[test]
fn a_complete_proof_is_never_reopened() {
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path().join("run");
    let obs = FleetBuilder::new(2, 1).build();
    let writer = write_until(&dir, &obs, 1);
    let verdict = evaluate(&obs, &Profile::builtin("broad-launch").unwrap());
    writer.finish(RunStatus::Complete, &verdict).unwrap();
    let err = ProofWriter::reopen(&dir).unwrap_err();
    assert!(
        err.kind.to_string().contains("nothing to resume"),
        "{}",
        err.kind
    );
    assert!(verify(&dir).is_ok(), "a refused reopen changes nothing");
}
