//! `soak compare` through the real binary on proofs written by the real `ProofWriter`: exit
//! codes, refusals with reasons, `--force`, `--out` (never inside a proof, never a non-empty
//! directory) and the files it writes. The acceptance runs with real nodes are in
//! `compare_runs.rs`.

mod support;

use std::path::{Path, PathBuf};
use std::process::Output;

use soak_gates::model::Observations;
use soak_gates::testkit::{FleetBuilder, drop_samples, span};
use support::{soak, texts, write_proof};

fn proof(dir: &Path, name: &str, obs: &Observations) -> PathBuf {
    let path = dir.join(name);
    write_proof(&path, obs, "broad-launch", name, true);
    path
}

fn slower(mut obs: Observations, extra_us: u64) -> Observations {
    for window in &mut obs.windows {
        for pair in &mut window.phase_a.as_mut().expect("matrix").pairs {
            pair.latency_us = pair.latency_us.map(|us| us + extra_us);
        }
    }
    obs
}

fn compare(args: &[&str]) -> (Option<i32>, String, String) {
    let mut all = vec!["compare"];
    all.extend_from_slice(args);
    let out: Output = soak(&all);
    let (stdout, stderr) = texts(&out);
    (out.status.code(), stdout, stderr)
}

#[test]
fn healthy_twice_is_no_regression_and_slower_is_a_regression_naming_the_shift() {
    let dir = tempfile::tempdir().expect("tempdir");
    let base = proof(dir.path(), "base", &FleetBuilder::new(3, 4).build());
    let same = proof(dir.path(), "same", &FleetBuilder::new(3, 4).build());
    let slow = proof(
        dir.path(),
        "slow",
        &slower(FleetBuilder::new(3, 4).build(), 40_000),
    );
    let (b, s, w) = (
        base.to_string_lossy(),
        same.to_string_lossy(),
        slow.to_string_lossy(),
    );

    let (code, stdout, stderr) = compare(&[&b, &s]);
    assert_eq!(code, Some(0), "{stdout}{stderr}");
    assert!(stdout.contains("result: no regression"), "{stdout}");

    let (code, stdout, stderr) = compare(&[&b, &w]);
    assert_eq!(code, Some(1), "{stdout}{stderr}");
    assert!(
        stdout.contains("REGRESSION phase_a.latency") && stdout.contains("shift +40 ms"),
        "{stdout}"
    );
    assert!(
        stdout.contains("result: REGRESSION — phase_a.latency (+40 ms)"),
        "{stdout}"
    );
    // The other way round the candidate is faster: Low, not a regression.
    let (code, stdout, _) = compare(&[&w, &b]);
    assert_eq!(code, Some(0), "{stdout}");
    assert!(
        stdout.contains("| phase_a.latency ") && stdout.contains("Low"),
        "{stdout}"
    );
}

#[test]
fn missing_evidence_in_the_candidate_is_unknown() {
    let dir = tempfile::tempdir().expect("tempdir");
    let base = proof(dir.path(), "base", &FleetBuilder::new(3, 4).build());
    let mut gappy = FleetBuilder::new(3, 4).build();
    let (start, end) = span(&gappy, 2);
    drop_samples(&mut gappy, "node-1", start - 5_000, end + 5_000);
    let gappy = proof(dir.path(), "gappy", &gappy);
    let (code, stdout, stderr) = compare(&[&base.to_string_lossy(), &gappy.to_string_lossy()]);
    assert_eq!(code, Some(2), "{stdout}{stderr}");
    assert!(stdout.contains("NO DATA verdict.telemetry"), "{stdout}");
    assert!(stdout.contains("result: UNKNOWN"), "{stdout}");
}

#[test]
fn incomparable_proofs_are_refused_with_the_reason_unless_forced() {
    let dir = tempfile::tempdir().expect("tempdir");
    let three = proof(dir.path(), "three", &FleetBuilder::new(3, 4).build());
    let four = proof(dir.path(), "four", &FleetBuilder::new(4, 4).build());
    let (a, b) = (three.to_string_lossy(), four.to_string_lossy());
    let (code, stdout, stderr) = compare(&[&a, &b]);
    assert_eq!(code, Some(64), "{stdout}{stderr}");
    assert!(
        stderr.contains("different node counts: base 3 nodes, candidate 4 nodes"),
        "{stderr}"
    );
    assert!(stderr.contains("--force"), "{stderr}");
    let (code, stdout, stderr) = compare(&[&a, &b, "--force"]);
    assert_ne!(code, Some(64), "{stderr}");
    assert!(
        stdout.contains("note: compared with --force although: different node counts"),
        "{stdout}"
    );
    // The same proof twice, a missing directory, a bad threshold: usage errors.
    for args in [
        vec![&*a, &*a],
        vec![&*a, "/nonexistent/proof"],
        vec![&*a, &*b, "--confidence", "1.5"],
        vec![&*a, &*b, "--min-effect", "0.2"],
    ] {
        let (code, _, stderr) = compare(&args);
        assert_eq!(code, Some(64), "{args:?}: {stderr}");
    }
}

#[test]
fn out_writes_markdown_and_json_and_never_touches_a_proof() {
    let dir = tempfile::tempdir().expect("tempdir");
    let base = proof(dir.path(), "base", &FleetBuilder::new(3, 4).build());
    let slow = proof(
        dir.path(),
        "slow",
        &slower(FleetBuilder::new(3, 4).build(), 40_000),
    );
    let (b, s) = (base.to_string_lossy(), slow.to_string_lossy());
    let out = dir.path().join("report");
    let (code, stdout, stderr) = compare(&[&b, &s, "--out", &out.to_string_lossy()]);
    assert_eq!(code, Some(1), "{stdout}{stderr}");
    let md = std::fs::read_to_string(out.join("compare.md")).expect("compare.md");
    assert!(md.starts_with("# soak compare: REGRESSION"), "{md}");
    assert!(md.contains("**phase_a.latency**"), "{md}");
    let json: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(out.join("compare.json")).expect("json"))
            .expect("compare.json parses");
    assert_eq!(json["result"], "regression");
    let report: soak_gates::compare::Report =
        serde_json::from_value(json.clone()).expect("compare.json reads back as a Report");
    assert_eq!(report.regressions().count(), 1);
    // --json prints the same document.
    let (_, printed, _) = compare(&[&b, &s, "--json"]);
    let printed: serde_json::Value = serde_json::from_str(&printed).expect("--json");
    assert_eq!(printed, json);

    // A non-empty --out, or one inside either proof: refused, nothing written.
    for bad in [out.clone(), base.join("cmp"), slow.join("windows/x")] {
        let (code, _, stderr) = compare(&[&b, &s, "--out", &bad.to_string_lossy()]);
        assert_eq!(code, Some(64), "{}: {stderr}", bad.display());
    }
    assert!(!base.join("cmp").exists() && !slow.join("windows/x").exists());
    for p in [&base, &slow] {
        let verify = soak(&["verify", &p.to_string_lossy()]);
        assert!(verify.status.success(), "{}", texts(&verify).0);
    }
}
