//! The proof directory: write, read back, verify, and render (snapshots).

use std::collections::BTreeMap;
use std::fs;
use std::io::Write;
use std::path::Path;

use quick_junit::{NonSuccessKind, Report, TestCaseStatus};
use soak_gates::model::{Observations, Sample};
use soak_gates::testkit::{self, FleetBuilder, bump, drop_samples, restart, span};
use soak_gates::{Profile, evaluate};
use soak_proofs::summary::{EndSummary, Totals};
use soak_proofs::{
    FORMAT_VERSION, NodeBuild, ProofWriter, REDACTED, RunMeta, RunStatus, export, junit, read,
    render, run_id, verify,
};

fn meta(obs: &Observations) -> RunMeta {
    RunMeta {
        run_id: run_id(1_795_309_786_000, "fixture"),
        label: "fixture".into(),
        started_at_ms: 1_795_309_786_000,
        tool_version: "0.1.0".into(),
        node_builds: vec![NodeBuild {
            host: "node-0".into(),
            binary_sha256: "ab".repeat(32),
            version: "0.1.0".into(),
            git: "deadbeef".into(),
            started_at_ms: 1_795_309_700_000,
        }],
        inventory_digest: Some("cd".repeat(32)),
        gate: "broad-launch".into(),
        gate_source: Some(
            Profile::builtin("broad-launch")
                .unwrap()
                .source()
                .to_string(),
        ),
        scenarios: vec!["baseline".into(), "fanout_burst".into()],
        sample_interval_ms: obs.run.sample_interval_ms,
        nodes: obs.run.nodes.clone(),
        config: serde_json::json!({
            "nodes": 3,
            "windows": obs.run.planned_windows,
            "interval_ms": obs.run.window_ms,
            "admin_token": "s3cr3t",
            "ssh": {"user": "soak", "private_key_path": "/home/soak/.ssh/id", "port": 22},
            "hosts": [{"name": "a", "password": "hunter2"}]
        }),
        coverage: None,
        command: Some(
            [
                "soak",
                "run",
                "--nodes",
                "3",
                "--admin-token",
                "s3cr3t",
                "--seed",
                "42",
            ]
            .map(String::from)
            .to_vec(),
        ),
        seed: Some(42),
        errors: Vec::new(),
        errors_omitted: 0,
    }
}

/// A 3-node, 3-window run with a drop, a restart and a gap: enough to exercise every section.
fn eventful() -> Observations {
    let mut obs = FleetBuilder::new(3, 3).build();
    obs.run.run_id = run_id(1_795_309_786_000, "fixture");
    let (s1, _) = span(&obs, 1);
    bump(
        &mut obs,
        "node-1",
        "recv_pump_dropped_full_total",
        s1 + 20_000,
        2,
    );
    restart(&mut obs, "node-2", s1 + 30_000, "inst-2-b");
    let (s2, _) = span(&obs, 2);
    drop_samples(&mut obs, "node-0", s2 + 10_000, s2 + 50_000);
    obs
}

fn write_proof(dir: &Path, obs: &Observations) -> soak_gates::Verdict {
    let verdict = evaluate(obs, &Profile::builtin("broad-launch").unwrap());
    let mut writer = ProofWriter::create(dir, meta(obs)).unwrap();
    writer
        .append_event(&serde_json::json!({"event": "run_started"}))
        .unwrap();
    for (node, samples) in &obs.samples {
        for sample in samples {
            writer.append_sample(node, sample).unwrap();
        }
    }
    for window in &obs.windows {
        writer.write_window(window).unwrap();
    }
    writer.finish(RunStatus::Complete, &verdict).unwrap();
    verdict
}

#[test]
fn observations_and_verdict_round_trip_exactly() {
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path().join("run");
    let obs = eventful();
    let verdict = write_proof(&dir, &obs);
    let proof = read(&dir).unwrap();
    assert!(proof.is_complete());
    assert_eq!(proof.observations, obs);
    assert_eq!(proof.verdict.as_ref(), Some(&verdict));
    assert_eq!(proof.events.len(), 1);
    let manifest = proof.manifest.unwrap();
    assert_eq!(manifest.format, FORMAT_VERSION);
    assert_eq!(manifest.verdict, Some(verdict.verdict));
    assert!(manifest.files.contains_key("samples/node-0.smp"));
    assert!(manifest.files.contains_key("windows/002/window.json"));
    assert!(manifest.files.contains_key("windows/002/verdict.json"));
    // Re-scoring the read observations reproduces the stored verdict.
    let profile =
        Profile::from_toml_str(proof.meta.gate_source.as_deref().unwrap(), "gate.toml").unwrap();
    assert_eq!(evaluate(&proof.observations, &profile), verdict);
}

#[test]
fn secrets_are_redacted_in_the_stored_config() {
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path().join("run");
    write_proof(&dir, &eventful());
    let text = fs::read_to_string(dir.join("config.json")).unwrap();
    for secret in ["s3cr3t", "hunter2", "/home/soak/.ssh/id"] {
        assert!(!text.contains(secret), "{secret} leaked: {text}");
    }
    // Nor on the stored command line, nor anywhere rendered.
    for file in ["run.json", "summary.md", "junit.xml", "report.html"] {
        let text = fs::read_to_string(dir.join(file)).unwrap();
        assert!(!text.contains("s3cr3t"), "the token leaked into {file}");
    }
    let config: serde_json::Value = serde_json::from_str(&text).unwrap();
    assert_eq!(config["admin_token"], REDACTED);
    assert_eq!(config["ssh"]["port"], 22);
    assert_eq!(config["hosts"][0]["password"], REDACTED);
}

#[test]
fn an_interrupted_run_is_readable_and_incomplete() {
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path().join("run");
    let obs = eventful();
    {
        let mut writer = ProofWriter::create(&dir, meta(&obs)).unwrap();
        for sample in &obs.samples["node-0"][..5] {
            writer.append_sample("node-0", sample).unwrap();
        }
        writer.write_window(&obs.windows[0]).unwrap();
        // Dropped without finish: as if killed.
    }
    // A torn last record, as from a kill mid-append: a length of 48 bytes, two of them there.
    let mut f = fs::OpenOptions::new()
        .append(true)
        .open(dir.join("samples/node-0.smp"))
        .unwrap();
    f.write_all(&[48, 3, 0]).unwrap();
    let proof = read(&dir).unwrap();
    assert!(!proof.is_complete());
    assert_eq!(proof.status(), RunStatus::Running);
    assert!(proof.verdict.is_none());
    assert_eq!(proof.observations.samples["node-0"].len(), 5);
    assert_eq!(proof.observations.windows.len(), 1);
    assert_eq!(proof.warnings.len(), 1, "{:?}", proof.warnings);
    // verify says it is not sealed.
    let report = verify(&dir);
    assert!(!report.is_ok());
    assert!(report.problems.iter().any(|p| p.contains("running")));
}

#[test]
fn a_corrupt_record_in_the_middle_is_an_error() {
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path().join("run");
    let obs = eventful();
    let mut writer = ProofWriter::create(&dir, meta(&obs)).unwrap();
    for sample in &obs.samples["node-0"][..3] {
        writer.append_sample("node-0", sample).unwrap();
    }
    drop(writer);
    let path = dir.join("samples/node-0.smp");
    let mut bytes = fs::read(&path).unwrap();
    // The first record's kind byte (after the magic and a one-byte length).
    bytes[soak_proofs::samples::MAGIC.len() + 1] = 0xee;
    fs::write(&path, bytes).unwrap();
    let err = read(&dir)
        .err()
        .map(|e| format!("{e}: {}", e.kind))
        .unwrap_or_default();
    assert!(
        err.contains("node-0.smp") && err.contains("byte 8"),
        "{err}"
    );
}

#[test]
fn a_torn_json_line_in_the_middle_of_a_1_1_proof_is_an_error() {
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path().join("old");
    copy_dir(&fixture_1_1(), &dir);
    let path = dir.join("samples/node-0.jsonl");
    let mut text = fs::read_to_string(&path).unwrap();
    text.insert_str(0, "{broken\n");
    fs::write(&path, text).unwrap();
    let err = read(&dir).err().map(|e| e.to_string()).unwrap_or_default();
    assert!(err.contains("line 1"), "{err}");
}

/// A proof written by the format-1.1 code (samples as JSON lines), checked in.
fn fixture_1_1() -> std::path::PathBuf {
    fixture("1.1")
}

/// Proofs with JSON-lines samples written by older code, checked in: `proof-1.1` by the
/// format-1.1 code, `proof-1.2` by the format-1.2 code (the last before the compact encoding;
/// this file's `eventful` through its `write_proof`, as that code had them).
fn fixture(version: &str) -> std::path::PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join(format!("tests/fixtures/proof-{version}"))
}

/// A JSON-lines proof's samples parsed line by line with serde alone (not through the reader).
fn json_line_samples(dir: &Path) -> BTreeMap<String, Vec<Sample>> {
    let mut out = BTreeMap::new();
    for entry in fs::read_dir(dir.join("samples")).unwrap() {
        let path = entry.unwrap().path();
        let node = path.file_stem().unwrap().to_string_lossy().into_owned();
        assert_eq!(path.extension().unwrap(), "jsonl");
        let samples = fs::read_to_string(&path)
            .unwrap()
            .lines()
            .map(|line| serde_json::from_str(line).unwrap())
            .collect();
        out.insert(node, samples);
    }
    out
}

fn copy_dir(from: &Path, to: &Path) {
    fs::create_dir_all(to).unwrap();
    for entry in fs::read_dir(from).unwrap() {
        let entry = entry.unwrap();
        let target = to.join(entry.file_name());
        if entry.file_type().unwrap().is_dir() {
            copy_dir(&entry.path(), &target);
        } else {
            fs::copy(entry.path(), target).unwrap();
        }
    }
}

/// Old proofs still read: the JSON-lines samples of a 1.1 and a 1.2 proof read back exactly
/// as written, the proofs verify, and the same observations stored compactly by this build
/// read back equal and re-score to the same verdict (in ~a tenth of the bytes).
#[test]
fn json_line_proofs_of_1_1_and_1_2_read_verify_and_rescore_like_compact_ones() {
    let profile = Profile::builtin("broad-launch").unwrap();
    for (version, minor) in [("1.1", 1), ("1.2", 2)] {
        let dir = fixture(version);
        let report = verify(&dir);
        assert!(report.is_ok(), "{version}: {report:#?}");
        assert_eq!(
            report.format,
            Some(soak_proofs::FormatVersion { major: 1, minor })
        );
        let old = read(&dir).unwrap();
        assert!(old.is_complete());
        assert!(old.warnings.is_empty(), "{version}: {:?}", old.warnings);
        assert_eq!(
            old.observations.samples,
            json_line_samples(&dir),
            "{version}"
        );
        assert!(old.verdict.is_some());

        let tmp = tempfile::tempdir().unwrap();
        let new_dir = tmp.path().join("new");
        let verdict = write_proof(&new_dir, &old.observations);
        let new = read(&new_dir).unwrap();
        assert_eq!(new.observations, old.observations, "{version}");
        assert_eq!(evaluate(&old.observations, &profile), verdict, "{version}");
        assert_eq!(new.verdict.as_ref(), Some(&verdict));
        let files = |d: &Path| -> Vec<(String, u64)> {
            fs::read_dir(d.join("samples"))
                .unwrap()
                .map(|e| {
                    let e = e.unwrap();
                    let name = e.file_name().to_string_lossy().into_owned();
                    (name, e.metadata().unwrap().len())
                })
                .collect()
        };
        assert!(files(&new_dir).iter().all(|(n, _)| n.ends_with(".smp")));
        let size = |d: &Path| files(d).iter().map(|(_, n)| n).sum::<u64>();
        let (before, after) = (size(&dir), size(&new_dir));
        assert!(
            after * 10 < before,
            "{version}: compact samples {after} B vs JSON lines {before} B"
        );
    }
    // The 1.2 proof holds exactly what its generator made.
    assert_eq!(read(fixture("1.2")).unwrap().observations, eventful());
}

#[test]
fn create_refuses_a_non_empty_directory() {
    let tmp = tempfile::tempdir().unwrap();
    fs::write(tmp.path().join("x"), "").unwrap();
    assert!(ProofWriter::create(tmp.path(), meta(&eventful())).is_err());
}

#[test]
fn verify_detects_modified_missing_and_added_files() {
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path().join("run");
    write_proof(&dir, &eventful());
    let clean = verify(&dir);
    assert!(clean.is_ok(), "{clean:#?}");
    assert!(clean.checked > 10);

    let path = dir.join("windows/001/window.json");
    let original = fs::read(&path).unwrap();
    fs::write(&path, [&original[..], b" "].concat()).unwrap();
    let r = verify(&dir);
    assert_eq!(r.modified, vec!["windows/001/window.json".to_string()]);
    fs::write(&path, &original).unwrap();
    assert!(verify(&dir).is_ok());

    fs::remove_file(dir.join("timeline.csv")).unwrap();
    let r = verify(&dir);
    assert_eq!(r.missing, vec!["timeline.csv".to_string()]);

    fs::write(dir.join("samples/intruder.jsonl"), "{}\n").unwrap();
    let r = verify(&dir);
    assert_eq!(r.added, vec!["samples/intruder.jsonl".to_string()]);
    assert!(!r.is_ok());
}

#[test]
fn a_newer_major_format_is_refused() {
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path().join("run");
    write_proof(&dir, &eventful());
    let path = dir.join("run.json");
    let text = fs::read_to_string(&path)
        .unwrap()
        .replacen("\"major\": 1", "\"major\": 2", 1);
    fs::write(&path, text).unwrap();
    let err = read(&dir)
        .err()
        .map(|e| format!("{e}: {}", e.kind))
        .unwrap_or_default();
    assert!(err.contains("not readable"), "{err}");
    let manifest = dir.join("manifest.json");
    let text = fs::read_to_string(&manifest)
        .unwrap()
        .replacen("\"major\": 1", "\"major\": 2", 1);
    fs::write(&manifest, text).unwrap();
    assert!(
        verify(&dir)
            .problems
            .iter()
            .any(|p| p.contains("not readable"))
    );
}

/// Replaces RFC 3339 instants and 13-digit unix-ms values with placeholders.
fn redact(text: &str) -> String {
    let bytes = text.as_bytes();
    let mut out = String::with_capacity(text.len());
    let mut i = 0;
    let is_digit = |j: usize| bytes.get(j).is_some_and(u8::is_ascii_digit);
    while i < bytes.len() {
        // YYYY-MM-DDTHH:MM:SSZ
        let rfc = i + 20 <= bytes.len()
            && (0..20).all(|k| match k {
                4 | 7 => bytes[i + k] == b'-',
                10 => bytes[i + k] == b'T',
                13 | 16 => bytes[i + k] == b':',
                19 => bytes[i + k] == b'Z',
                _ => is_digit(i + k),
            });
        if rfc {
            out.push_str("[utc]");
            i += 20;
            continue;
        }
        let run = (i..).take_while(|&j| is_digit(j)).count();
        if run > 0 {
            if run == 13 && (i == 0 || !is_digit(i - 1)) {
                out.push_str("[ms]");
            } else {
                out.push_str(&text[i..i + run]);
            }
            i += run;
            continue;
        }
        let ch = text[i..].chars().next().unwrap_or(' ');
        out.push(ch);
        i += ch.len_utf8();
    }
    out
}

#[test]
fn rendered_outputs_snapshot() {
    let obs = eventful();
    let verdict = evaluate(&obs, &Profile::builtin("broad-launch").unwrap());
    let meta = meta(&obs);
    let summary = EndSummary::new(
        &meta,
        RunStatus::Complete,
        &verdict,
        &obs.windows,
        Totals::of_samples(&obs.samples, &obs.windows, obs.run.sample_interval_ms),
    );
    insta::assert_snapshot!(
        "summary_md",
        redact(&render::summary_md(
            &meta,
            RunStatus::Complete,
            &verdict,
            &summary,
            &obs.windows
        ))
    );
    insta::assert_snapshot!("end_summary", redact(&summary.text()));
    insta::assert_snapshot!("summary_csv", redact(&render::summary_csv(&verdict)));
    insta::assert_snapshot!("windows_csv", redact(&render::windows_csv(&verdict)));
    // The long timeline: its header and the first sample of a node.
    let timeline =
        String::from_utf8(export::timeline_csv(&obs.samples, obs.run.sample_interval_ms).unwrap())
            .unwrap();
    let head: Vec<&str> = timeline.lines().take(40).collect();
    insta::assert_snapshot!("timeline_csv_head", redact(&head.join("\n")));
    let junit = junit::junit_xml(&meta, RunStatus::Complete, &verdict).unwrap();
    insta::assert_snapshot!("junit_xml", redact(&junit));
    insta::assert_snapshot!("phase_a_csv", render::phase_a_csv(&verdict));
    insta::assert_json_snapshot!("verdict_json", verdict, {
        ".run_id" => "[run-id]",
        ".windows[].start_ms" => "[ms]",
        ".windows[].end_ms" => "[ms]",
        ".restarts[].last_old_ms" => "[ms]",
        ".restarts[].first_new_ms" => "[ms]",
        ".gaps[].from_ms" => "[ms]",
        ".gaps[].to_ms" => "[ms]",
    });
}

#[test]
fn every_rendered_file_is_written_and_covered_by_the_manifest() {
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path().join("run");
    let obs = eventful();
    write_proof(&dir, &obs);
    let manifest = read(&dir).unwrap().manifest.unwrap();
    for file in [
        "verdict.json",
        "summary.md",
        "summary.csv",
        "windows.csv",
        "timeline.csv",
        "phase_a.csv",
        "junit.xml",
        "report.html",
    ] {
        assert!(
            manifest.files.contains_key(file),
            "{file} not in the manifest"
        );
    }
    assert!(verify(&dir).is_ok());
    // Tampering with a new file is caught.
    let report = dir.join("report.html");
    let original = fs::read(&report).unwrap();
    fs::write(&report, [&original[..], b"<!-- edited -->"].concat()).unwrap();
    assert_eq!(verify(&dir).modified, vec!["report.html".to_string()]);
    fs::write(&report, &original).unwrap();
    // timeline.csv streamed node by node from disk equals the in-memory rendering.
    let timeline = fs::read(dir.join("timeline.csv")).unwrap();
    assert_eq!(
        timeline,
        export::timeline_csv(&obs.samples, obs.run.sample_interval_ms).unwrap()
    );
}

fn stored_evidence_report(dir: &Path) -> String {
    render::stored_report(dir).unwrap().html
}

#[test]
fn report_html_re_renders_byte_for_byte_from_stored_evidence() {
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path().join("run");
    write_proof(&dir, &eventful());
    let stored = fs::read_to_string(dir.join("report.html")).unwrap();
    assert_eq!(stored_evidence_report(&dir), stored);
    assert!(stored.contains("class=\"banner nogo\""));
}

#[test]
fn an_old_format_proof_still_reads_and_renders_a_report() {
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path().join("run");
    let obs = eventful();
    let verdict = write_proof(&dir, &obs);
    // Make it look like a 1.0 proof: older version, no new files or fields.
    for name in ["run.json", "manifest.json"] {
        let path = dir.join(name);
        let text = fs::read_to_string(&path)
            .unwrap()
            .replacen("\"minor\": 2", "\"minor\": 0", 1);
        let mut value: serde_json::Value = serde_json::from_str(&text).unwrap();
        if let Some(meta) = value.get_mut("meta").and_then(|m| m.as_object_mut()) {
            meta.remove("command");
            meta.remove("seed");
        }
        fs::write(&path, serde_json::to_string_pretty(&value).unwrap()).unwrap();
    }
    for name in ["report.html", "junit.xml", "windows.csv"] {
        fs::remove_file(dir.join(name)).unwrap();
    }
    let proof = read(&dir).unwrap();
    assert_eq!(proof.meta.command, None);
    assert_eq!(
        proof.meta.run_seed(),
        None,
        "the fixture config holds no seed"
    );
    assert_eq!(proof.verdict.as_ref(), Some(&verdict));
    let html = stored_evidence_report(&dir);
    assert!(html.contains("class=\"banner nogo\"") && html.contains("id=\"heatmap\""));
}

#[test]
fn junit_round_trips_and_maps_unknown_to_failure_and_skipped_to_skipped() {
    let mut obs = eventful();
    // A skipped fault scenario in window 0.
    obs.windows[0]
        .scenarios
        .push(soak_gates::model::ScenarioRecord {
            name: "netem_delay".into(),
            status: soak_gates::model::ScenarioStatus::Skipped {
                reason: "kernel has no sch_netem".into(),
            },
            targets: vec!["node-1".into()],
            exemptions: Vec::new(),
            recovery: None,
            fault: None,
        });
    let verdict = evaluate(&obs, &Profile::builtin("broad-launch").unwrap());
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path().join("run");
    {
        let mut writer = ProofWriter::create(&dir, meta(&obs)).unwrap();
        for (node, samples) in &obs.samples {
            for sample in samples {
                writer.append_sample(node, sample).unwrap();
            }
        }
        for window in &obs.windows {
            writer.write_window(window).unwrap();
        }
        writer.finish(RunStatus::Complete, &verdict).unwrap();
    }
    let text = fs::read_to_string(dir.join("junit.xml")).unwrap();
    let parsed = Report::deserialize_from_str(&text).expect("junit.xml parses");
    let stored_meta = read(&dir).unwrap().meta;
    let built = junit::junit_report(&stored_meta, RunStatus::Complete, &verdict);
    assert_eq!(parsed, built, "junit.xml does not round-trip");

    // One suite per window plus the soak suite; one case per bar.
    assert_eq!(parsed.test_suites.len(), verdict.windows.len() + 1);
    for (suite, window) in parsed.test_suites.iter().zip(&verdict.windows) {
        assert_eq!(suite.name.as_str(), format!("window-{:03}", window.index));
        let bars: Vec<&str> = suite
            .test_cases
            .iter()
            .map(|c| c.name.as_str())
            .filter(|n| !n.starts_with("scenario:"))
            .collect();
        let want: Vec<&str> = window.bars.iter().map(|b| b.bar.as_str()).collect();
        assert_eq!(bars, want);
    }
    let case = |suite: usize, name: &str| {
        parsed.test_suites[suite]
            .test_cases
            .iter()
            .find(|c| c.name.as_str() == name)
            .unwrap_or_else(|| panic!("no case {name} in suite {suite}"))
            .status
            .clone()
    };
    // NO-GO: a failure of type NO-GO carrying the explanation.
    match case(1, "recv_pump_dropped") {
        TestCaseStatus::NonSuccess {
            kind: NonSuccessKind::Failure,
            ty,
            message,
            description,
            ..
        } => {
            assert_eq!(ty.as_ref().map(|t| t.as_str()), Some("NO-GO"));
            assert!(message.unwrap().as_str().contains("node-1"));
            let text = description.unwrap();
            assert!(
                text.as_str().contains("threshold: <= 0"),
                "{}",
                text.as_str()
            );
        }
        other => panic!("recv_pump_dropped: {other:?}"),
    }
    // UNKNOWN (missing evidence): a failure too, never a pass.
    match case(2, "telemetry") {
        TestCaseStatus::NonSuccess { ty, .. } => {
            assert_eq!(ty.as_ref().map(|t| t.as_str()), Some("UNKNOWN"));
        }
        other => panic!("telemetry: {other:?}"),
    }
    // The skipped scenario is skipped, and the scenarios bar fails on it.
    assert!(matches!(
        case(0, "scenario:netem_delay"),
        TestCaseStatus::Skipped { .. }
    ));
    assert!(matches!(
        case(0, "scenarios"),
        TestCaseStatus::NonSuccess { .. }
    ));
    assert!(matches!(
        case(0, "scenario:baseline"),
        TestCaseStatus::Success { .. }
    ));
    // The soak suite: its bars and the overall verdict, which is not GO.
    let soak = parsed.test_suites.last().unwrap();
    assert_eq!(soak.name.as_str(), "soak");
    assert_eq!(soak.test_cases.len(), verdict.soak_bars.len() + 1);
    assert!(matches!(
        case(parsed.test_suites.len() - 1, "verdict"),
        TestCaseStatus::NonSuccess { .. }
    ));
    assert!(
        soak.properties
            .iter()
            .any(|p| p.name.as_str() == "seed" && p.value.as_str() == "42")
    );
    // A bar that could not apply (the leak bars on a 3-minute run) is skipped with its
    // reason: never passed, and no failure the soak verdict leaves out.
    let rss = verdict
        .soak_bars
        .iter()
        .find(|b| b.bar == "rss_growth")
        .expect("rss_growth bar");
    assert!(rss.not_applicable, "{rss:?}");
    match case(parsed.test_suites.len() - 1, "rss_growth") {
        TestCaseStatus::Skipped { ty, message, .. } => {
            assert_eq!(ty.as_ref().map(|t| t.as_str()), Some("NOT-APPLICABLE"));
            assert!(message.unwrap().as_str().contains("not applicable"));
        }
        other => panic!("rss_growth: {other:?}"),
    }
    assert!(parsed.failures > 0);
}

/// Node events (a process that exited, a host lost) are stored in `node_events.jsonl` and read
/// back, so `soak score` reproduces the causes the run's verdict grouped its failures under.
#[test]
fn node_events_round_trip_and_rescoring_reproduces_the_causes() {
    use soak_gates::model::{NodeEvent, NodeEventKind};
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path().join("run");
    let mut obs = eventful();
    let (_, e1) = span(&obs, 1);
    drop_samples(&mut obs, "node-1", e1 - 15_000, u64::MAX);
    obs.node_events.push(NodeEvent {
        node: "node-1".into(),
        at_ms: e1 - 15_000,
        kind: NodeEventKind::Exited {
            pid: Some(4242),
            code: None,
            signal: Some(9),
            signal_name: Some("SIGKILL".into()),
        },
    });
    let profile = Profile::builtin("broad-launch").unwrap();
    let verdict = evaluate(&obs, &profile);
    let cause = verdict
        .causes
        .iter()
        .find(|c| c.kind == "node_exited")
        .unwrap();
    assert!(cause.explains > 0, "{cause:#?}");
    let mut writer = ProofWriter::create(&dir, meta(&obs)).unwrap();
    for (node, samples) in &obs.samples {
        for sample in samples {
            writer.append_sample(node, sample).unwrap();
        }
    }
    for event in &obs.node_events {
        writer.append_node_event(event).unwrap();
    }
    for window in &obs.windows {
        writer.write_window(window).unwrap();
    }
    writer.finish(RunStatus::Complete, &verdict).unwrap();
    let proof = read(&dir).unwrap();
    assert_eq!(proof.observations.node_events, obs.node_events);
    assert_eq!(proof.observations, obs);
    assert_eq!(evaluate(&proof.observations, &profile), verdict);
    assert!(verify(&dir).is_ok());
    let summary = fs::read_to_string(dir.join("summary.md")).unwrap();
    assert!(
        summary.contains("**node-1 (pid 4242) exited on signal 9 (SIGKILL) at"),
        "{summary}"
    );
    let line = fs::read_to_string(dir.join("node_events.jsonl")).unwrap();
    assert!(line.contains("\"kind\":\"exited\""), "{line}");
}

/// A proof is untrusted input: a link is never followed and a file over the bound for its kind
/// is refused before anything is read (sparse files: nothing is allocated here).
#[test]
fn oversized_and_linked_files_are_refused() {
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path().join("run");
    write_proof(&dir, &eventful());
    // A compact sample file of this build, and a JSON-lines one of an older proof: each over
    // the bound for its kind.
    let old = tmp.path().join("old");
    copy_dir(&fixture("1.2"), &old);
    for (proof, samples, bound) in [
        (
            &dir,
            dir.join("samples/node-0.smp"),
            soak_proofs::format::MAX_SMP_BYTES,
        ),
        (
            &old,
            old.join("samples/node-0.jsonl"),
            soak_proofs::format::MAX_JSONL_BYTES,
        ),
    ] {
        let original = fs::read(&samples).unwrap();
        fs::File::options()
            .write(true)
            .open(&samples)
            .unwrap()
            .set_len(bound + 1)
            .unwrap();
        let err = read(proof).err().unwrap();
        let text = format!("{err}: {}", err.kind);
        assert!(
            matches!(err.kind, soak_proofs::ErrorKind::Refused(_)),
            "{text}"
        );
        assert!(text.contains("more than the"), "{text}");
        fs::write(&samples, &original).unwrap();
        assert!(read(proof).is_ok());
    }
    let verdict = dir.join("verdict.json");
    fs::File::options()
        .write(true)
        .open(&verdict)
        .unwrap()
        .set_len(soak_proofs::format::MAX_JSON_BYTES + 1)
        .unwrap();
    let err = read(&dir).err().unwrap();
    assert!(
        matches!(err.kind, soak_proofs::ErrorKind::Refused(_)),
        "{err}"
    );
    fs::remove_file(&verdict).unwrap();
    std::os::unix::fs::symlink("/etc/passwd", &verdict).unwrap();
    let err = read(&dir).err().unwrap();
    assert!(
        err.kind.to_string().contains("symbolic link"),
        "{}",
        err.kind
    );
    let report = verify(&dir);
    assert!(
        report
            .problems
            .iter()
            .any(|p| p.contains("verdict.json is a symbolic link")),
        "{report:#?}"
    );
}

#[test]
fn errors_of_a_failed_run_are_kept_and_said_in_the_summary() {
    let obs = eventful();
    let mut m = meta(&obs);
    m.record_error("the fleet did not come up: node-3 exited during start-up (exit status: 1)");
    for i in 0..25 {
        m.record_error(&format!("worker {i} failed"));
    }
    assert_eq!(m.errors.len(), soak_proofs::RunMeta::MAX_ERRORS);
    assert_eq!(m.errors_omitted, 6);
    let verdict = evaluate(&obs, &Profile::builtin("broad-launch").unwrap());
    let summary = EndSummary::new(
        &m,
        RunStatus::Failed,
        &verdict,
        &obs.windows,
        Totals::of_samples(&obs.samples, &obs.windows, obs.run.sample_interval_ms),
    );
    let md = render::summary_md(&m, RunStatus::Failed, &verdict, &summary, &obs.windows);
    assert!(md.contains("## Errors during the run"), "{md}");
    assert!(md.contains("- the fleet did not come up: node-3 exited during start-up"));
    assert!(md.contains("- and 6 more"));
    assert!(md.contains("**Why NO-GO:**"), "{md}");
}

/// `soak score` reads the stored `verdict.json` to compare: one written before verdict
/// version 2 (no Phase A counts, causes, sampling failures, …) must still read.
#[test]
fn a_version_1_verdict_still_reads() {
    let v1 = serde_json::json!({
        "verdict": "GO", "gate": "broad-launch", "verdict_version": 1, "run_id": "r", "nodes": 2,
        "windows": [{
            "index": 0, "start_ms": 1, "end_ms": 2, "warmup": false, "verdict": "GO",
            "phase_a": {"pairs": 2, "delivered": 2, "failed": 0, "missing": 0, "exempted": 0,
                        "p50_us": 10, "p99_us": 12},
            "scenarios": [{"name": "baseline", "status": "COMPLETED"}],
            "bars": [{"bar": "phase_a", "title": "t", "verdict": "GO", "statistic": "s",
                      "value": 2.0, "threshold": "== 2", "window": 0, "nodes": [],
                      "baseline": null, "exemptions": [], "reason": "all 2 pairs delivered"}]
        }],
        "soak_bars": [{"bar": "dispatcher_timeout_rate", "title": "t", "verdict": "GO",
                       "statistic": "s", "value": 0.0, "threshold": "x", "window": null,
                       "nodes": [], "exemptions": [], "reason": "r",
                       "baseline": {"windows": [0], "events": 0, "exposure": 10, "rate": 0.0,
                                    "floor_rate": 0.0005, "effective_rate": 0.0005,
                                    "window_events": null, "window_exposure": null,
                                    "expected": null, "p_value": null, "anomalous": null,
                                    "degradation": []}}],
        "restarts": [], "gaps": [], "integrity_errors": []
    });
    let verdict: soak_gates::Verdict = serde_json::from_value(v1).unwrap();
    assert_eq!(verdict.verdict_version, 1);
    let pa = verdict.windows[0].phase_a.as_ref().unwrap();
    assert_eq!((pa.sent, pa.acked, pa.received), (0, 0, 0));
    assert!(verdict.causes.is_empty() && verdict.phase_a.is_none());
    assert!(!verdict.soak_bars[0].not_applicable);
}

/// The Faults section of summary.md: a table of every fault (what, where, when, effective?,
/// clean?, exemptions) and the measurements behind it.
#[test]
fn faults_section_snapshot() {
    use soak_gates::model::{Check, Exemption, RecoveryTiming, ScenarioStatus};
    let mut obs = FleetBuilder::new(3, 4).build();
    obs.run.run_id = run_id(1_795_309_786_000, "faults");
    let (s1, _) = span(&obs, 1);
    let mut cut = testkit::fault("partition_pair", "partition", &["node-0", "node-1"]);
    if let Some(f) = cut.fault.as_mut() {
        f.applied_at_ms = Some(s1 + 2_000);
        f.reverted_at_ms = Some(s1 + 12_000);
    }
    cut.exemptions = vec![Exemption {
        bar: "phase_a".into(),
        nodes: Vec::new(),
        reason: "cut on purpose".into(),
        links: Vec::new(),
        pairs: vec![
            ("node-0".into(), "node-1".into()),
            ("node-1".into(), "node-0".into()),
        ],
    }];
    obs.windows[1].scenarios.push(cut);
    let (s2, _) = span(&obs, 2);
    let mut restart = testkit::fault("restart_storm", "restart", &["node-2"]);
    if let Some(f) = restart.fault.as_mut() {
        f.backend = "process".into();
        f.applied_at_ms = Some(s2 + 2_000);
        f.recoveries = vec![RecoveryTiming {
            node: "node-2".into(),
            service: "local soak-node process of node-2".into(),
            issued_ms: s2 + 2_000,
            process_up_ms: Some(s2 + 2_150),
            api_up_ms: Some(s2 + 2_200),
            in_views_ms: Some(s2 + 2_300),
            first_dm_ms: Some(s2 + 2_320),
            recovered_after_ms: Some(320),
            old_instance: "a".into(),
            new_instance: "b".into(),
        }];
    }
    obs.windows[2].scenarios.push(restart);
    let mut ignored = testkit::fault("high_rtt_peer", "delay", &["node-1"]);
    if let Some(f) = ignored.fault.as_mut() {
        f.applied_at_ms = Some(s2 + 3_000);
        f.effective = Check::NotShown {
            summary: "probe round trips to the target 2 ms, not ≥ 1178 ms (baseline 2 ms)".into(),
            evidence: serde_json::Value::Null,
        };
    }
    obs.windows[2].scenarios.push(ignored);
    let mut skipped = testkit::fault("stale_peer", "pause", &[]);
    skipped.status = ScenarioStatus::Skipped {
        reason: "not allowed: pause faults change node processes and need --allow-restart".into(),
    };
    if let Some(f) = skipped.fault.as_mut() {
        f.backend = String::new();
    }
    obs.windows[3].scenarios.push(skipped);
    let verdict = evaluate(&obs, &Profile::builtin("broad-launch").unwrap());
    let meta = meta(&obs);
    let summary = EndSummary::new(
        &meta,
        RunStatus::Complete,
        &verdict,
        &obs.windows,
        Totals::of_samples(&obs.samples, &obs.windows, obs.run.sample_interval_ms),
    );
    let md = render::summary_md(&meta, RunStatus::Complete, &verdict, &summary, &obs.windows);
    let start = md.find("## Faults").expect("a Faults section");
    let end = md[start..]
        .find("\n## Windows")
        .map_or(md.len(), |e| start + e);
    insta::assert_snapshot!("faults_section", redact(&md[start..end]));
}
