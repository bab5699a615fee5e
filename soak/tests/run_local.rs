//! `soak run` end to end: the real `soak` binary spawning real `soak-node` processes on
//! loopback. Every run here is short (seconds) and bounded by a watchdog that kills `soak`
//! (and so, by its kill-on-drop and shutdown paths, the nodes) if it overruns.

use std::path::Path;
use std::process::{Command, Stdio};
use std::time::Duration;

use nix::sys::signal::{Signal, kill};
use nix::unistd::Pid;
use serde_json::Value;

mod support;
use support::run::{Running, pid_alive, pids_of, soak_run, window_records};
use support::soak_bin;

fn run_verify(proof: &Path) -> std::process::Output {
    Command::new(soak_bin())
        .arg("verify")
        .arg(proof)
        .output()
        .expect("run soak verify")
}

/// Runs a 6-node soak with `scenarios` and checks GO, 30/30 pairs in every window, the sealed
/// proof (`soak verify`) and that `soak score` reproduces the verdict.
fn assert_six_node_go(scenarios: &str, label: &str) {
    let tmp = tempfile::tempdir().expect("tmp");
    let proof = tmp.path().join("proof");
    // The default burst rate (200 msg/s): debug-build nodes on two loaded cores must hold it
    // without cooling healthy gossip peers (their own backlog is not the peers' fault).
    let output = soak_run(&[
        "--nodes",
        "6",
        "--duration",
        "12s",
        "--interval",
        "4s",
        "--sample-interval",
        "500ms",
        "--scenarios",
        scenarios,
        "--label",
        label,
        "--proof-dir",
        proof.to_str().expect("utf8"),
    ])
    .output()
    .expect("run soak");
    let stdout = String::from_utf8_lossy(&output.stdout);
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert_eq!(
        output.status.code(),
        Some(0),
        "expected GO (exit 0)\nstdout:\n{stdout}\nstderr:\n{stderr}"
    );
    assert!(stdout.contains("verdict: GO"), "{stdout}");
    assert!(stdout.contains(proof.to_str().expect("utf8")), "{stdout}");

    let windows = window_records(&proof);
    assert_eq!(windows.len(), 3);
    for window in &windows {
        let pairs = window["phase_a"]["pairs"].as_array().expect("pairs");
        assert_eq!(pairs.len(), 30, "N·(N−1) pairs");
        let delivered = pairs.iter().filter(|p| p["delivered"] == true).count();
        assert_eq!(delivered, 30, "window {}: {pairs:?}", window["index"]);
        assert!(pairs.iter().all(|p| p["latency_us"].as_u64().is_some()));
        if scenarios.contains("fanout_burst") {
            let subscribers = window["fanout"]["subscribers"]
                .as_array()
                .expect("fanout ran in every window");
            assert_eq!(subscribers.len(), 6);
            for sub in subscribers {
                assert_eq!(sub["expected"], 50, "{sub}");
                assert_eq!(sub["received"], 50, "{sub}");
                assert!(sub["p99_us"].as_u64().is_some(), "{sub}");
            }
        }
    }
    // Node logs are part of the sealed proof, and so are the report and the JUnit file.
    assert!(proof.join("logs/node-0.log").is_file());
    let report = std::fs::read_to_string(proof.join("report.html")).expect("report.html");
    assert!(report.contains("class=\"banner go\"") && report.contains("id=\"heatmap\""));
    let junit = std::fs::read_to_string(proof.join("junit.xml")).expect("junit.xml");
    assert!(junit.contains("failures=\"0\"") && junit.contains("name=\"window-002\""));
    if scenarios.contains("fanout_burst") {
        assert_no_burst_topic_left(&proof, 6);
    }

    let verify = run_verify(&proof);
    assert!(
        verify.status.success(),
        "soak verify failed: {}{}",
        String::from_utf8_lossy(&verify.stdout),
        String::from_utf8_lossy(&verify.stderr)
    );
    let score = Command::new(soak_bin())
        .arg("score")
        .arg(&proof)
        .output()
        .expect("run soak score");
    let score_out = String::from_utf8_lossy(&score.stdout);
    assert_eq!(
        score.status.code(),
        Some(0),
        "soak score must reproduce GO: {score_out}{}",
        String::from_utf8_lossy(&score.stderr)
    );
    assert!(score_out.contains("verdict: GO"), "{score_out}");
}

/// Every burst leaves its topic: in the nodes' own diagnostics as sampled into the proof
/// (gauge `topics`, the node's subscribed topics), no node ever holds more than the one burst
/// topic of the moment, and after the last window none holds any.
fn assert_no_burst_topic_left(proof: &Path, nodes: usize) {
    let stored = soak_proofs::read(proof).expect("proof reads");
    for i in 0..nodes {
        let samples = &stored.observations.samples[&format!("node-{i}")];
        let mut seen: Vec<(u64, f64)> = samples
            .iter()
            .filter_map(|s| match &s.outcome {
                soak_gates::model::SampleOutcome::Ok(d) => {
                    Some((s.at_ms, *d.gauges.get("topics")?))
                }
                soak_gates::model::SampleOutcome::Missing { .. } => None,
            })
            .collect();
        assert!(
            seen.len() >= 3,
            "node-{i}: too few samples with the topics gauge"
        );
        seen.sort_by_key(|(at, _)| *at);
        let max = seen.iter().map(|(_, t)| *t).fold(0.0, f64::max);
        assert!(
            max <= 1.0,
            "node-{i} held {max} topics at once: burst topics pile up"
        );
        let last = seen.last().map(|(_, t)| *t);
        assert_eq!(
            last,
            Some(0.0),
            "node-{i} still subscribed after the run: {seen:?}"
        );
    }
}

#[test]
fn six_node_baseline_run_is_go_with_full_matrices_and_a_verifiable_reproducible_proof() {
    assert_six_node_go("baseline", "it-baseline");
}

/// The default scenarios include `fanout_burst`: GO needs the node's pub/sub (a node without it
/// answers 404, the burst is SKIPPED and the verdict is UNKNOWN, never GO).
#[test]
fn six_node_default_scenarios_run_is_go() {
    assert_six_node_go("baseline,fanout_burst", "it-default");
}

#[test]
fn killed_node_gives_no_go_naming_it_and_the_proof_stays_verifiable() {
    let tmp = tempfile::tempdir().expect("tmp");
    let proof = tmp.path().join("proof");
    let mut run = Running::start(
        {
            let mut c = soak_run(&[
                "--nodes",
                "4",
                "--duration",
                "12s",
                "--interval",
                "4s",
                "--sample-interval",
                "500ms",
                "--scenarios",
                "baseline",
                "--request-timeout",
                "2s",
                "--events",
                "jsonl",
                "--proof-dir",
                proof.to_str().expect("utf8"),
            ]);
            c.stdin(Stdio::null());
            c
        },
        tmp.path().join("stderr"),
    );
    let ready = run.wait_event(Duration::from_secs(60), |e| e["event"] == "fleet_ready");
    let pids = pids_of(&ready);
    run.wait_event(Duration::from_secs(30), |e| {
        e["event"] == "window_ended" && e["record"]["index"] == 0
    });
    let (victim, victim_pid) = pids[2].clone();
    kill(Pid::from_raw(victim_pid), Signal::SIGKILL).expect("kill the victim node");
    let (status, _lines, stderr) = run.finish(Duration::from_secs(60));
    assert_eq!(
        status.code(),
        Some(1),
        "expected NO-GO (exit 1); stderr:\n{stderr}"
    );

    let verdict: Value = serde_json::from_str(
        &std::fs::read_to_string(proof.join("verdict.json")).expect("verdict.json"),
    )
    .expect("verdict json");
    assert_eq!(verdict["verdict"], "NO-GO");
    let failing: Vec<Value> = verdict["windows"]
        .as_array()
        .expect("windows")
        .iter()
        .flat_map(|w| w["bars"].as_array().cloned().unwrap_or_default())
        .filter(|b| b["verdict"] == "NO-GO")
        .collect();
    assert!(!failing.is_empty(), "{verdict}");
    assert!(
        failing.iter().any(|b| b["nodes"]
            .as_array()
            .is_some_and(|n| n.iter().any(|n| n == victim.as_str()))),
        "no failing bar names {victim}: {failing:?}"
    );
    // The terminal table names the victim and the broken bars too.
    assert!(stderr.contains(&victim), "{stderr}");
    assert!(stderr.contains("NO-GO"), "{stderr}");

    let verify = run_verify(&proof);
    assert!(
        verify.status.success(),
        "soak verify failed: {}{}",
        String::from_utf8_lossy(&verify.stdout),
        String::from_utf8_lossy(&verify.stderr)
    );
    for (name, pid) in pids {
        assert!(!pid_alive(pid), "{name} (pid {pid}) outlived the run");
    }
}

#[test]
fn sigint_mid_run_exits_130_with_an_interrupted_readable_proof_and_no_node_left() {
    let tmp = tempfile::tempdir().expect("tmp");
    let proof = tmp.path().join("proof");
    let mut run = Running::start(
        soak_run(&[
            "--nodes",
            "4",
            "--duration",
            "60s",
            "--interval",
            "3s",
            "--sample-interval",
            "500ms",
            "--events",
            "jsonl",
            "--proof-dir",
            proof.to_str().expect("utf8"),
        ]),
        tmp.path().join("stderr"),
    );
    let ready = run.wait_event(Duration::from_secs(60), |e| e["event"] == "fleet_ready");
    let pids = pids_of(&ready);
    assert_eq!(pids.len(), 4);
    run.wait_event(Duration::from_secs(30), |e| {
        e["event"] == "window_ended" && e["record"]["index"] == 0
    });
    let soak_pid = i32::try_from(run.child.id()).expect("pid");
    kill(Pid::from_raw(soak_pid), Signal::SIGINT).expect("SIGINT soak");
    let (status, lines, stderr) = run.finish(Duration::from_secs(30));
    assert_eq!(status.code(), Some(130), "stderr:\n{stderr}");
    assert!(lines.iter().any(|l| l.contains("\"signal\"")), "{lines:?}");

    let read = soak_proofs::read(&proof).expect("interrupted proof is readable");
    let manifest = read.manifest.expect("manifest sealed");
    assert_eq!(manifest.status, soak_proofs::RunStatus::Interrupted);
    assert!(
        read.observations.windows.len() >= 2,
        "window 0 and the partial one"
    );
    assert!(read.verdict.is_some());
    for (name, pid) in pids {
        assert!(!pid_alive(pid), "{name} (pid {pid}) outlived the run");
    }
}

#[test]
fn events_jsonl_keeps_stdout_pure_json_lines() {
    let tmp = tempfile::tempdir().expect("tmp");
    let proof = tmp.path().join("proof");
    let output = soak_run(&[
        "--nodes",
        "3",
        "--duration",
        "4s",
        "--interval",
        "2s",
        "--sample-interval",
        "500ms",
        "--events",
        "jsonl",
        "--proof-dir",
        proof.to_str().expect("utf8"),
    ])
    .output()
    .expect("run soak");
    let stdout = String::from_utf8(output.stdout).expect("utf8 stdout");
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(
        output.status.code().is_some_and(|c| c <= 2),
        "a judged run; stderr:\n{stderr}"
    );
    let events: Vec<Value> = stdout
        .lines()
        .map(|line| {
            serde_json::from_str(line).unwrap_or_else(|e| panic!("not JSON ({e}): {line:?}"))
        })
        .collect();
    assert!(events.iter().all(|e| e["event"].is_string()));
    let kinds: Vec<&str> = events.iter().filter_map(|e| e["event"].as_str()).collect();
    assert_eq!(kinds.first(), Some(&"fleet_ready"), "{kinds:?}");
    assert_eq!(kinds.last(), Some(&"run_finished"), "{kinds:?}");
    assert_eq!(kinds.iter().filter(|k| **k == "window_ended").count(), 2);
    // Progress and the final table went to stderr.
    assert!(stderr.contains("window 0"), "{stderr}");
    assert!(stderr.contains("verdict:"), "{stderr}");
}

#[test]
fn bad_flags_are_usage_errors_and_a_missing_node_binary_is_unavailable() {
    let out = Command::new(soak_bin())
        .args(["run", "--nodes", "1"])
        .output()
        .expect("soak");
    assert_eq!(out.status.code(), Some(64));
    let out = Command::new(soak_bin())
        .args(["run", "--scenarios", "nope"])
        .output()
        .expect("soak");
    assert_eq!(out.status.code(), Some(64));
    // clap-level errors too: exit 2 is reserved for UNKNOWN.
    let out = Command::new(soak_bin())
        .args(["run", "--duration", "banana"])
        .output()
        .expect("soak");
    assert_eq!(out.status.code(), Some(64));
    let out = Command::new(soak_bin())
        .args(["run", "--help"])
        .output()
        .expect("soak");
    assert_eq!(out.status.code(), Some(0));
    let tmp = tempfile::tempdir().expect("tmp");
    let out = Command::new(soak_bin())
        .args(["run", "--node-bin", "/nonexistent/soak-node", "--proof-dir"])
        .arg(tmp.path().join("p"))
        .output()
        .expect("soak");
    assert_eq!(out.status.code(), Some(69));
    assert!(String::from_utf8_lossy(&out.stderr).contains("soak-node"));
    assert!(
        !tmp.path().join("p").exists(),
        "nothing is written before the node binary resolves"
    );
}
