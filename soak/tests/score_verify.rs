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
        // As `soak run` stores it: the plan says how many windows of what length.
        config: serde_json::json!({
            "nodes": 3,
            "windows": obs.run.planned_windows,
            "interval_ms": obs.run.window_ms,
        }),
        coverage: None,
        command: Some(["soak", "run", "--nodes", "3"].map(String::from).to_vec()),
        seed: Some(7),
        errors: Vec::new(),
        errors_omitted: 0,
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
        "phase_a.csv",
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

/// A proof whose run never completed exits 2 on `score`, never 0 — even when every window it
/// holds passes.
#[test]
fn score_of_an_interrupted_proof_exits_2_not_0() {
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path().join("partial");
    write_proof(&dir, &observations(), "limited-production", false);
    let out = run(soak().arg("score").arg(&dir));
    assert!(stdout(&out).contains("(incomplete)"), "{}", stdout(&out));
    assert_eq!(code(&out), 2, "{}", stdout(&out));
    assert!(
        String::from_utf8_lossy(&out.stderr).contains("not a GO"),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let out = run(soak().arg("verify").arg(&dir));
    assert_eq!(code(&out), 1, "an unsealed proof does not verify");
}

/// A window directory deleted from a sealed proof: fewer windows than planned is UNKNOWN.
#[test]
fn score_of_a_proof_missing_a_window_is_unknown() {
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path().join("proof");
    write_proof(&dir, &observations(), "limited-production", true);
    let out = run(soak().arg("score").arg(&dir));
    assert_eq!(code(&out), 0, "the intact proof passes: {}", stdout(&out));
    fs::remove_dir_all(dir.join("windows/002")).unwrap();
    let out = run(soak().arg("score").arg(&dir));
    assert_eq!(code(&out), 2, "{}", stdout(&out));
    assert!(
        stdout(&out).contains("windows missing from the proof: 2"),
        "{}",
        stdout(&out)
    );
    // And with the last window gone it reads as a run cut short.
    fs::remove_dir_all(dir.join("windows/003")).unwrap();
    fs::create_dir(dir.join("windows/002")).unwrap();
    let out = run(soak().arg("score").arg(&dir));
    assert_eq!(code(&out), 2, "{}", stdout(&out));
    assert!(
        stdout(&out).contains("interrupted after 2 of 4 windows"),
        "{}",
        stdout(&out)
    );
}

#[test]
fn score_out_onto_the_proof_or_a_non_empty_directory_is_refused() {
    let tmp = tempfile::tempdir().unwrap();
    let dir = proof(tmp.path());
    let before = soak_proofs::verify(&dir);
    assert!(before.is_ok());
    for out_dir in [dir.clone(), dir.join("rescored"), dir.join("windows")] {
        let out = run(soak().arg("score").arg(&dir).arg("--out").arg(&out_dir));
        assert_eq!(code(&out), 64, "{}", out_dir.display());
    }
    let busy = tmp.path().join("busy");
    fs::create_dir(&busy).unwrap();
    fs::write(busy.join("keep.txt"), "mine").unwrap();
    let out = run(soak().arg("score").arg(&dir).arg("--out").arg(&busy));
    assert_eq!(code(&out), 64);
    assert!(String::from_utf8_lossy(&out.stderr).contains("not empty"));
    assert_eq!(fs::read_to_string(busy.join("keep.txt")).unwrap(), "mine");
    // A link to the proof is the proof.
    let link = tmp.path().join("link");
    std::os::unix::fs::symlink(&dir, &link).unwrap();
    let out = run(soak()
        .arg("score")
        .arg(&dir)
        .arg("--out")
        .arg(link.join("x")));
    assert_eq!(code(&out), 64);
    // An empty directory outside is fine; the proof stays untouched throughout.
    let empty = tmp.path().join("empty");
    fs::create_dir(&empty).unwrap();
    let out = run(soak().arg("score").arg(&dir).arg("--out").arg(&empty));
    assert_eq!(code(&out), 1, "{}", stdout(&out));
    assert!(empty.join("phase_a.csv").is_file());
    assert!(soak_proofs::verify(&dir).is_ok());
}

/// A `/dev/zero` symlink used to drive `score` to 22 GB, and a FIFO to hang it: both are
/// refused with a clear error (64), and `verify` reports them without opening them.
#[test]
fn score_and_verify_never_follow_links_or_open_fifos() {
    // This build's compact sample file, then an older proof's JSON-lines one.
    for ext in ["smp", "jsonl"] {
        links_and_fifos_are_refused(ext);
    }
}

fn links_and_fifos_are_refused(ext: &str) {
    let tmp = tempfile::tempdir().unwrap();
    let dir = proof(tmp.path());
    let stored = dir.join("samples/node-1.smp");
    let original = fs::read(&stored).unwrap();
    fs::remove_file(&stored).unwrap();
    let samples = dir.join(format!("samples/node-1.{ext}"));
    std::os::unix::fs::symlink("/dev/zero", &samples).unwrap();
    // `soak report` and `soak export` stream the same samples: refused alike.
    let readers_refuse = |dir: &Path, why: &str| {
        let page = dir.parent().unwrap().join("page.html");
        for args in [
            vec!["score".into(), dir.as_os_str().to_owned()],
            vec![
                "report".into(),
                dir.as_os_str().to_owned(),
                "--out".into(),
                page.as_os_str().to_owned(),
            ],
            vec![
                "export".into(),
                dir.as_os_str().to_owned(),
                "--format".into(),
                "csv".into(),
            ],
        ] {
            let out = run(soak().args(&args));
            assert_eq!(code(&out), 64, "{args:?}: {}", stdout(&out));
            let err = String::from_utf8_lossy(&out.stderr).into_owned();
            assert!(err.contains(why), "{args:?}: {err}");
        }
        assert!(!page.exists(), "no page from a refused proof");
    };
    readers_refuse(&dir, "symbolic link");
    let out = run(soak().arg("verify").arg(&dir));
    assert_eq!(code(&out), 1);
    assert!(stdout(&out).contains("symbolic link"), "{}", stdout(&out));

    fs::remove_file(&samples).unwrap();
    nix::unistd::mkfifo(&samples, nix::sys::stat::Mode::S_IRWXU).unwrap();
    let started = std::time::Instant::now();
    readers_refuse(&dir, "FIFO");
    let out = run(soak().arg("verify").arg(&dir));
    assert_eq!(code(&out), 1);
    assert!(stdout(&out).contains("FIFO"), "{}", stdout(&out));
    // Both return at once (a hang would never return; this bound is generous).
    assert!(started.elapsed() < std::time::Duration::from_secs(60));

    // So is a fault journal linked out of the proof (score and report read it).
    fs::remove_file(&samples).unwrap();
    fs::write(&stored, &original).unwrap();
    fs::create_dir_all(dir.join("faults")).unwrap();
    std::os::unix::fs::symlink("/etc/passwd", dir.join("faults/journal.jsonl")).unwrap();
    for args in [vec!["score"], vec!["report", "--out", "/dev/null"]] {
        let mut cmd = soak();
        cmd.arg(args[0]).arg(&dir).args(&args[1..]);
        let out = run(&mut cmd);
        assert_eq!(code(&out), 64, "{args:?}: {}", stdout(&out));
        assert!(
            String::from_utf8_lossy(&out.stderr).contains("symbolic link"),
            "{args:?}: {}",
            String::from_utf8_lossy(&out.stderr)
        );
    }
    fs::remove_file(dir.join("faults/journal.jsonl")).unwrap();

    // A window directory linked to one outside the proof is refused too.
    let outside = tmp.path().join("outside");
    fs::rename(dir.join("windows/001"), &outside).unwrap();
    std::os::unix::fs::symlink(&outside, dir.join("windows/001")).unwrap();
    let out = run(soak().arg("score").arg(&dir));
    assert_eq!(code(&out), 64, "{}", stdout(&out));
}

#[test]
fn verify_of_a_directory_that_is_no_proof_is_a_usage_error() {
    let tmp = tempfile::tempdir().unwrap();
    fs::write(tmp.path().join("notes.txt"), "hello").unwrap();
    let out = run(soak().arg("verify").arg(tmp.path()));
    assert_eq!(code(&out), 64);
    assert!(
        String::from_utf8_lossy(&out.stderr).contains("not a proof directory"),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
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

#[test]
fn samples_prints_every_stored_sample_as_a_json_line() {
    let tmp = tempfile::tempdir().unwrap();
    let dir = proof(tmp.path());
    let obs = observations();
    let out = run(soak().arg("samples").arg(&dir));
    assert_eq!(code(&out), 0, "{}", stdout(&out));
    let lines: Vec<serde_json::Value> = stdout(&out)
        .lines()
        .map(|l| serde_json::from_str(l).expect("a JSON line"))
        .collect();
    let total: usize = obs.samples.values().map(Vec::len).sum();
    assert_eq!(lines.len(), total);
    let first = &obs.samples["node-0"][0];
    assert_eq!(lines[0]["node"], "node-0");
    assert_eq!(lines[0]["at_ms"], first.at_ms);
    assert_eq!(
        lines[0]["outcome"],
        serde_json::to_value(&first.outcome).unwrap()
    );

    let out = run(soak().arg("samples").arg(&dir).args(["--node", "node-2"]));
    assert_eq!(stdout(&out).lines().count(), obs.samples["node-2"].len());
    let out = run(soak().arg("samples").arg(&dir).args(["--node", "nope"]));
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

/// A symlink planted where `soak report` writes (in an interrupted proof, or at `--out`) is
/// replaced by the page, never written through: the file it pointed at is untouched.
#[test]
fn report_never_writes_through_a_symlink_planted_at_its_target() {
    let tmp = tempfile::tempdir().unwrap();
    let victim = tmp.path().join("victim.txt");
    fs::write(&victim, "precious").unwrap();
    let partial = tmp.path().join("partial");
    write_proof(&partial, &observations(), "broad-launch", false);
    let _ = fs::remove_file(partial.join("report.html"));
    std::os::unix::fs::symlink(&victim, partial.join("report.html")).unwrap();
    let out = run(soak().arg("report").arg(&partial));
    assert_eq!(code(&out), 0, "{}", String::from_utf8_lossy(&out.stderr));
    let out_link = tmp.path().join("out.html");
    std::os::unix::fs::symlink(&victim, &out_link).unwrap();
    let out = run(soak()
        .arg("report")
        .arg(&partial)
        .arg("--out")
        .arg(&out_link));
    assert_eq!(code(&out), 0, "{}", String::from_utf8_lossy(&out.stderr));
    assert_eq!(fs::read_to_string(&victim).unwrap(), "precious");
    for page in [partial.join("report.html"), out_link] {
        let meta = fs::symlink_metadata(&page).unwrap();
        assert!(
            meta.file_type().is_file(),
            "{} is a regular file now",
            page.display()
        );
        assert!(fs::read_to_string(&page).unwrap().contains("<html"));
    }
}
