//! `soak score` and `soak verify` driven through the real binary on proofs written with the
//! real `ProofWriter`.

use std::fs;
use std::path::{Path, PathBuf};
use std::process::Output;

use assert_cmd::Command;
use soak_gates::model::Observations;
use soak_gates::testkit::{FleetBuilder, bump, span};
use soak_gates::{Outcome, Profile, evaluate};
use soak_proofs::{ProofWriter, RunMeta, RunStatus, run_id};

fn soak() -> Command {
    Command::new(env!("CARGO_BIN_EXE_soak"))
}

/// A run where one outbound-queue high-water event happens: NO-GO under broad-launch (which
/// judges it), GO under limited-production (which does not).
fn observations() -> Observations {
    let mut obs = FleetBuilder::new(3, 4).build();
    let (s1, _) = span(&obs, 1);
    bump(
        &mut obs,
        "node-2",
        "outbound_high_water_total",
        s1 + 20_000,
        1,
    );
    obs
}

fn write_proof(dir: &Path, obs: &Observations, gate: &str, finish: bool) -> soak_gates::Verdict {
    let profile = Profile::builtin(gate).unwrap();
    let meta = RunMeta {
        run_id: run_id(1_795_309_786_000, "cli"),
        label: "cli".into(),
        started_at_ms: 1_795_309_786_000,
        tool_version: env!("CARGO_PKG_VERSION").into(),
        node_builds: Vec::new(),
        inventory_digest: None,
        gate: gate.into(),
        gate_source: Some(profile.source().to_string()),
        scenarios: vec!["baseline".into(), "fanout_burst".into()],
        sample_interval_ms: obs.run.sample_interval_ms,
        nodes: obs.run.nodes.clone(),
        config: serde_json::json!({"nodes": 3}),
        coverage: None,
        command: Some(["soak", "run", "--nodes", "3"].map(String::from).to_vec()),
        seed: Some(7),
    };
    let mut writer = ProofWriter::create(dir, meta).unwrap();
    for (node, samples) in &obs.samples {
        for sample in samples {
            writer.append_sample(node, sample).unwrap();
        }
    }
    for window in &obs.windows {
        writer.write_window(window).unwrap();
    }
    let mut observed = obs.clone();
    observed.run.run_id = run_id(1_795_309_786_000, "cli");
    let verdict = evaluate(&observed, &profile);
    if finish {
        writer.finish(RunStatus::Complete, &verdict).unwrap();
    }
    verdict
}

fn run(cmd: &mut Command) -> Output {
    cmd.output().expect("soak runs")
}

fn code(out: &Output) -> i32 {
    out.status.code().unwrap_or(-1)
}

fn stdout(out: &Output) -> String {
    String::from_utf8_lossy(&out.stdout).into_owned()
}

fn proof(tmp: &Path) -> PathBuf {
    let dir = tmp.join("proof");
    let verdict = write_proof(&dir, &observations(), "broad-launch", true);
    assert_eq!(verdict.verdict, Outcome::NoGo);
    dir
}

#[test]
fn score_reproduces_the_stored_verdict_exactly() {
    let tmp = tempfile::tempdir().unwrap();
    let dir = proof(tmp.path());
    let out_dir = tmp.path().join("rescored");
    let out = run(soak().arg("score").arg(&dir).arg("--out").arg(&out_dir));
    assert_eq!(code(&out), 1, "NO-GO exits 1: {}", stdout(&out));
    assert!(
        stdout(&out).contains("verdict: NO-GO (gate broad-launch)"),
        "{}",
        stdout(&out)
    );
    assert!(
        stdout(&out)
            .lines()
            .any(|l| l.contains("outbound_high_water") && l.contains("NO-GO")),
        "{}",
        stdout(&out)
    );
    let stored = fs::read(dir.join("verdict.json")).unwrap();
    let rescored = fs::read(out_dir.join("verdict.json")).unwrap();
    assert_eq!(
        stored, rescored,
        "re-scored verdict.json differs from the stored one"
    );
    for name in [
        "summary.md",
        "summary.csv",
        "windows.csv",
        "timeline.csv",
        "junit.xml",
        "report.html",
    ] {
        assert_eq!(
            fs::read(dir.join(name)).unwrap(),
            fs::read(out_dir.join(name)).unwrap(),
            "{name}"
        );
    }
    // --json prints the same verdict.
    let out = run(soak().arg("score").arg(&dir).arg("--json"));
    assert_eq!(out.stdout, stored);
}

#[test]
fn score_with_another_gate_gives_that_gates_verdict() {
    let tmp = tempfile::tempdir().unwrap();
    let dir = proof(tmp.path());
    let out_dir = tmp.path().join("limited");
    let out = run(soak()
        .arg("score")
        .arg(&dir)
        .args(["--gate", "limited-production", "--out"])
        .arg(&out_dir));
    assert_eq!(code(&out), 0, "GO exits 0: {}", stdout(&out));
    let verdict: serde_json::Value =
        serde_json::from_slice(&fs::read(out_dir.join("verdict.json")).unwrap()).unwrap();
    assert_eq!(verdict["gate"], "limited-production");
    assert_eq!(verdict["verdict"], "GO");
    // Matches the library's own evaluation under that gate.
    let read = soak_proofs::read(&dir).unwrap();
    let want = evaluate(
        &read.observations,
        &Profile::builtin("limited-production").unwrap(),
    );
    assert_eq!(serde_json::to_value(&want).unwrap(), verdict);
    // The proof itself is untouched.
    assert!(soak_proofs::verify(&dir).is_ok());
}

#[test]
fn score_with_a_gate_file() {
    let tmp = tempfile::tempdir().unwrap();
    let dir = proof(tmp.path());
    let gate = tmp.path().join("strict.toml");
    fs::write(
        &gate,
        "name = 'strict-phase-a'\n[[bar]]\nid = 'phase_a'\nkind = 'phase_a'\n\
         [[bar]]\nid = 'telemetry'\nkind = 'telemetry'\n",
    )
    .unwrap();
    let out = run(soak().arg("score").arg(&dir).arg("--gate-file").arg(&gate));
    assert_eq!(code(&out), 0, "{}", stdout(&out));
    assert!(stdout(&out).contains("gate strict-phase-a"));
}

#[test]
fn score_bad_input_is_a_usage_error() {
    let tmp = tempfile::tempdir().unwrap();
    let dir = proof(tmp.path());
    let out = run(soak()
        .arg("score")
        .arg(&dir)
        .args(["--gate", "no-such-gate"]));
    assert_eq!(code(&out), 64);
    assert!(String::from_utf8_lossy(&out.stderr).contains("limited-production"));
    let bad = tmp.path().join("bad.toml");
    fs::write(&bad, "name = 'x'\n[[bar]]\nid = 'a'\nkind = 'nonsense'\n").unwrap();
    let out = run(soak().arg("score").arg(&dir).arg("--gate-file").arg(&bad));
    assert_eq!(code(&out), 64);
    assert!(String::from_utf8_lossy(&out.stderr).contains("unknown kind `nonsense`"));
    let out = run(soak().arg("score").arg(tmp.path().join("nowhere")));
    assert_eq!(code(&out), 64);
    let out = run(soak().arg("score").arg(tmp.path()));
    assert_eq!(code(&out), 64, "a directory that is not a proof");
}

#[test]
fn score_an_interrupted_proof() {
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path().join("partial");
    write_proof(&dir, &observations(), "limited-production", false);
    let out = run(soak().arg("score").arg(&dir));
    assert!(stdout(&out).contains("(incomplete)"), "{}", stdout(&out));
    assert_eq!(code(&out), 0, "{}", stdout(&out));
    let out = run(soak().arg("verify").arg(&dir));
    assert_eq!(code(&out), 1, "an unsealed proof does not verify");
}

#[test]
fn verify_detects_modified_missing_and_added_files() {
    let tmp = tempfile::tempdir().unwrap();
    let dir = proof(tmp.path());
    let out = run(soak().arg("verify").arg(&dir));
    assert_eq!(code(&out), 0, "{}", stdout(&out));
    assert!(stdout(&out).contains("verified"));

    let window = dir.join("windows/001/window.json");
    let original = fs::read(&window).unwrap();
    fs::write(
        &window,
        String::from_utf8_lossy(&original).replace("\"warmup\": false", "\"warmup\": true"),
    )
    .unwrap();
    let out = run(soak().arg("verify").arg(&dir));
    assert_eq!(code(&out), 1);
    assert!(
        stdout(&out).contains("modified: windows/001/window.json"),
        "{}",
        stdout(&out)
    );
    fs::write(&window, &original).unwrap();

    fs::remove_file(dir.join("summary.md")).unwrap();
    let out = run(soak().arg("verify").arg(&dir));
    assert_eq!(code(&out), 1);
    assert!(
        stdout(&out).contains("missing: summary.md"),
        "{}",
        stdout(&out)
    );

    fs::write(dir.join("extra.txt"), "hello").unwrap();
    let out = run(soak().args(["verify", "--json"]).arg(&dir));
    assert_eq!(code(&out), 1);
    let report: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(report["added"][0], "extra.txt");
    assert_eq!(report["missing"][0], "summary.md");

    let out = run(soak().arg("verify").arg(tmp.path().join("nowhere")));
    assert_eq!(code(&out), 64);
}

/// `soak report` never changes a sealed proof: on one whose manifest does not cover a
/// `report.html` (a 1.1 proof), the page goes to `./<run-id>.report.html` and the proof still
/// verifies; on an interrupted proof it renders without a verdict.
#[test]
fn report_on_an_old_sealed_proof_writes_beside_it_and_never_breaks_it() {
    let tmp = tempfile::tempdir().unwrap();
    let dir = proof(tmp.path());
    // Turn it into a 1.1 proof: no report.html, manifest without it.
    fs::remove_file(dir.join("report.html")).unwrap();
    let manifest_path = dir.join("manifest.json");
    let mut manifest: serde_json::Value =
        serde_json::from_slice(&fs::read(&manifest_path).unwrap()).unwrap();
    manifest["files"]
        .as_object_mut()
        .unwrap()
        .remove("report.html");
    manifest["format"]["minor"] = 1.into();
    fs::write(
        &manifest_path,
        serde_json::to_vec_pretty(&manifest).unwrap(),
    )
    .unwrap();
    assert!(soak_proofs::verify(&dir).is_ok());

    let cwd = tmp.path().join("cwd");
    fs::create_dir_all(&cwd).unwrap();
    let out = run(soak().current_dir(&cwd).arg("report").arg(&dir));
    assert_eq!(code(&out), 0, "{}", String::from_utf8_lossy(&out.stderr));
    let beside = cwd.join(format!("{}.report.html", run_id(1_795_309_786_000, "cli")));
    let page = fs::read_to_string(&beside).expect("written beside the proof");
    assert!(page.contains("class=\"banner nogo\""));
    assert!(String::from_utf8_lossy(&out.stderr).contains("sealed"));
    assert!(!dir.join("report.html").exists());
    assert!(
        soak_proofs::verify(&dir).is_ok(),
        "the sealed proof was changed"
    );

    // An interrupted (unsealed) proof: rendered in place, with no verdict.
    let partial = tmp.path().join("partial");
    write_proof(&partial, &observations(), "broad-launch", false);
    let out = run(soak().arg("report").arg(&partial));
    assert_eq!(code(&out), 0, "{}", String::from_utf8_lossy(&out.stderr));
    let page = fs::read_to_string(partial.join("report.html")).unwrap();
    assert!(page.contains("NO VERDICT") && !page.contains("class=\"banner go\""));
}

#[test]
fn report_and_export_of_a_non_proof_are_usage_errors() {
    let tmp = tempfile::tempdir().unwrap();
    for args in [
        vec!["report".to_string()],
        vec!["export".into(), "--format".into(), "openmetrics".into()],
    ] {
        let out = run(soak().args(&args).arg(tmp.path()));
        assert_eq!(
            code(&out),
            64,
            "{args:?}: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        assert!(String::from_utf8_lossy(&out.stderr).contains("not a proof directory"));
    }
    let dir = proof(tmp.path());
    let out = run(soak().arg("export").arg(&dir).args(["--format", "xml"]));
    assert_eq!(code(&out), 64);
}

/// The export of a proof is the stored samples, nothing else: the long CSV from `soak export`
/// equals the proof's own `timeline.csv`.
#[test]
fn export_csv_equals_the_stored_timeline() {
    let tmp = tempfile::tempdir().unwrap();
    let dir = proof(tmp.path());
    let out = run(soak().arg("export").arg(&dir).args(["--format", "csv"]));
    assert_eq!(code(&out), 0);
    assert_eq!(out.stdout, fs::read(dir.join("timeline.csv")).unwrap());
    let om = tmp.path().join("x.om");
    let out = run(soak()
        .arg("export")
        .arg(&dir)
        .args(["--format", "openmetrics", "--out"])
        .arg(&om));
    assert_eq!(code(&out), 0);
    let text = fs::read_to_string(&om).unwrap();
    assert!(text.ends_with("# EOF\n"));
    assert!(text.contains("soak_node_outbound_high_water_total{node=\"node-2\"}"));
}
