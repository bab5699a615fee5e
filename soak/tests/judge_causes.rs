//! The judge explains by cause, on real runs:
//! - one node of four SIGSTOPped for 10 s mid-run: only that node is named (its sampling
//!   failures, its cause), and the other three are sampled on time throughout — a stopped node
//!   never head-of-line blocks the sampler;
//! - one node of six SIGKILLed: one headline cause names the node, its pid and its signal, and
//!   the derived bar failures are grouped under it instead of blaming every node.

#![allow(clippy::disallowed_macros)]

use std::collections::BTreeSet;
use std::path::Path;
use std::time::Duration;

use nix::sys::signal::{Signal, kill};
use nix::unistd::Pid;
use serde_json::Value;

mod support;
use support::run::{Running, pid_alive, pids_of, soak_run, verdict_of};

/// Every `(at_ms, ok)` of a node's sample stream.
fn samples_of(proof: &Path, node: &str) -> Vec<(u64, bool)> {
    std::fs::read_to_string(proof.join("samples").join(format!("{node}.jsonl")))
        .expect("samples file")
        .lines()
        .map(|l| {
            let v: Value = serde_json::from_str(l).expect("sample json");
            (
                v["at_ms"].as_u64().expect("at_ms"),
                v["outcome"]["status"] == "ok",
            )
        })
        .collect()
}

/// The non-GO bars of the verdict (windows and soak level).
fn failing_bars(verdict: &Value) -> Vec<Value> {
    support::run::all_bars(verdict)
        .into_iter()
        .filter(|b| b["verdict"] != "GO" && b["not_applicable"] != true)
        .collect()
}

fn nodes_of(value: &Value) -> BTreeSet<String> {
    value["nodes"]
        .as_array()
        .into_iter()
        .flatten()
        .filter_map(|n| n.as_str().map(str::to_owned))
        .collect()
}

/// `soak run` of `nodes` local nodes in windows of 8 s, its events on stdout.
fn start(proof: &Path, nodes: usize, duration: &str) -> Running {
    let nodes = nodes.to_string();
    let stderr = proof.with_extension("stderr");
    Running::start(
        soak_run(&[
            "--nodes",
            &nodes,
            "--duration",
            duration,
            "--interval",
            "8s",
            "--sample-interval",
            "500ms",
            "--proof-dir",
            proof.to_str().expect("utf-8"),
            "--events",
            "jsonl",
        ]),
        stderr,
    )
}

#[test]
fn sigstopped_node_is_the_only_one_named_and_the_others_have_no_gap() {
    let tmp = tempfile::tempdir().expect("tmp");
    let proof = tmp.path().join("proof");
    let mut run = start(&proof, 4, "32s");
    let ready = run.wait_event(Duration::from_secs(60), |e| e["event"] == "fleet_ready");
    let pids = pids_of(&ready);
    let (victim, pid) = pids[2].clone();
    run.wait_event(Duration::from_secs(60), |e| {
        e["event"] == "window_started" && e["window"] == 1
    });
    std::thread::sleep(Duration::from_secs(1));
    kill(Pid::from_raw(pid), Signal::SIGSTOP).expect("SIGSTOP");
    let stopped_at = std::time::Instant::now();
    std::thread::sleep(Duration::from_secs(10));
    // Resumed whatever happens next, so the node can stop cleanly at the end.
    let resumed = kill(Pid::from_raw(pid), Signal::SIGCONT);
    let stopped_for = stopped_at.elapsed();
    resumed.expect("SIGCONT");
    let (status, _events, stderr) = run.finish(Duration::from_secs(120));
    assert!(status.code().is_some(), "soak ended by itself: {stderr}");

    let verdict = verdict_of(&proof);
    // The stopped node's sampling failed while it was stopped, and only its.
    let failures: Vec<&Value> = verdict["windows"]
        .as_array()
        .expect("windows")
        .iter()
        .flat_map(|w| w["sampling_failures"].as_array().into_iter().flatten())
        .collect();
    let failed_nodes: BTreeSet<&str> = failures.iter().filter_map(|f| f["node"].as_str()).collect();
    assert_eq!(
        failed_nodes,
        BTreeSet::from([victim.as_str()]),
        "sampling failures name only the stopped node: {failures:#?}"
    );
    // The other three were sampled on time all along: no failed attempt and no stretch without
    // a sample anywhere near the 10 s the victim was stopped for.
    for (name, _) in pids.iter().filter(|(n, _)| *n != victim) {
        let samples = samples_of(&proof, name);
        assert!(samples.len() > 20, "{name}: {} samples", samples.len());
        assert!(
            samples.iter().all(|(_, ok)| *ok),
            "{name} has a failed sample while only {victim} was stopped"
        );
        let widest = samples
            .windows(2)
            .map(|w| w[1].0.saturating_sub(w[0].0))
            .max()
            .unwrap_or(0);
        assert!(
            u128::from(widest) < stopped_for.as_millis() / 3,
            "{name}: a {widest} ms stretch without a sample while {victim} was stopped for \
             {stopped_for:?}: the sampler was blocked by the stopped node"
        );
    }
    let victim_samples = samples_of(&proof, &victim);
    assert!(
        victim_samples.iter().any(|(_, ok)| !ok),
        "the stopped node's samples show the stop"
    );
    // Causes and failing bars name the stopped node only.
    let causes = verdict["causes"].as_array().cloned().unwrap_or_default();
    assert!(
        causes.iter().any(|c| nodes_of(c).contains(&victim)),
        "a cause names {victim}: {causes:#?}"
    );
    for cause in &causes {
        assert_eq!(
            nodes_of(cause),
            BTreeSet::from([victim.clone()]),
            "every cause is about {victim}: {cause:#}"
        );
    }
    for bar in failing_bars(&verdict) {
        let named = nodes_of(&bar);
        assert!(
            named.is_empty() || named == BTreeSet::from([victim.clone()]),
            "a failing bar blames another node than the stopped one: {bar:#}"
        );
    }
    for (name, pid) in &pids {
        assert!(!pid_alive(*pid), "{name} (pid {pid}) left running");
    }
}

#[test]
fn sigkilled_node_of_six_is_one_headline_cause_with_the_failures_grouped_under_it() {
    let tmp = tempfile::tempdir().expect("tmp");
    let proof = tmp.path().join("proof");
    let mut run = start(&proof, 6, "24s");
    let ready = run.wait_event(Duration::from_secs(90), |e| e["event"] == "fleet_ready");
    let pids = pids_of(&ready);
    let (victim, pid) = pids[3].clone();
    run.wait_event(Duration::from_secs(60), |e| {
        e["event"] == "window_started" && e["window"] == 1
    });
    kill(Pid::from_raw(pid), Signal::SIGKILL).expect("SIGKILL");
    let (status, _events, stderr) = run.finish(Duration::from_secs(120));
    assert_eq!(status.code(), Some(1), "a dead node is NO-GO:\n{stderr}");

    let verdict = verdict_of(&proof);
    assert_eq!(verdict["verdict"], "NO-GO");
    let causes = verdict["causes"].as_array().cloned().unwrap_or_default();
    let headline = format!("{victim} (pid {pid}) exited on signal 9 (SIGKILL) at ");
    let exits: Vec<&Value> = causes
        .iter()
        .filter(|c| c["kind"] == "node_exited")
        .collect();
    assert_eq!(exits.len(), 1, "one exit cause: {causes:#?}");
    let cause = exits[0];
    assert!(
        cause["headline"]
            .as_str()
            .is_some_and(|h| h.contains(&headline)),
        "headline names node, pid and signal: {cause:#}"
    );
    assert_eq!(nodes_of(cause), BTreeSet::from([victim.clone()]));
    // No other node is made a cause of its own.
    for other in causes.iter().filter(|c| c["id"] != cause["id"]) {
        assert!(
            !nodes_of(other).iter().any(|n| *n != victim),
            "another node is blamed for {victim}'s death: {other:#}"
        );
    }
    // The derived failures point at the cause, and it counts them.
    let grouped: Vec<Value> = failing_bars(&verdict)
        .into_iter()
        .filter(|b| b["cause"] == cause["id"])
        .collect();
    assert!(!grouped.is_empty(), "no failure grouped under the cause");
    assert_eq!(
        cause["explains"].as_u64(),
        Some(grouped.len() as u64),
        "explains counts the grouped failures: {cause:#}"
    );
    // summary.md leads with the cause, not with one row per node.
    let summary = std::fs::read_to_string(proof.join("summary.md")).expect("summary.md");
    assert!(summary.contains(&headline), "summary.md:\n{summary}");
    for (name, pid) in &pids {
        assert!(!pid_alive(*pid), "{name} (pid {pid}) left running");
    }
}
