//! The resource-stability (leak) bars against real node processes. Nodes started with the
//! test-only `--test-leak-bytes-per-sec` / `--test-leak-fds-per-sec` flags retain memory and
//! descriptors at a steady rate; a run judged with a gate whose minimum judged span is short
//! enough for a test must be NO-GO on `rss_growth` and `fd_growth`, naming every leaking node
//! and its slope. A healthy run judged with the same gate passes both bars, and the built-in
//! broad-launch gate (20 min minimum span) reports them "not applicable" on a short run, never
//! GO. (The 30-minute healthy run is `scripts/leak-soak`, written up in docs/PERFORMANCE.md.)

#![allow(clippy::disallowed_macros)]

use std::path::Path;
use std::process::Command;

use serde_json::Value;

mod support;
use support::run::{soak_run, verdict_of};
use support::soak_bin;

/// broad-launch with the leak bars' minimum judged span cut to 20 s.
fn short_span_gate(dir: &Path) -> std::path::PathBuf {
    let out = Command::new(soak_bin())
        .args(["gates", "show", "broad-launch"])
        .output()
        .expect("soak gates show");
    assert!(out.status.success(), "{out:?}");
    let text = String::from_utf8(out.stdout).expect("utf-8");
    let mut replaced = 0;
    let text: String = text
        .lines()
        .map(|l| {
            if l.trim_start().starts_with("min_span_ms") {
                replaced += 1;
                "min_span_ms = 20000".to_owned()
            } else {
                l.to_owned()
            }
        })
        .collect::<Vec<_>>()
        .join("\n");
    assert_eq!(
        replaced, 2,
        "both resource bars have a min_span_ms:\n{text}"
    );
    let path = dir.join("short-span.toml");
    std::fs::write(&path, text).expect("gate file");
    path
}

/// Runs 3 nodes for 1 warm-up + 3 judged windows of 10 s; returns the verdict.
fn run(dir: &Path, gate: Option<&Path>, node_args: &[&str]) -> Value {
    let proof = dir.join("proof");
    let mut args = vec![
        "--nodes",
        "3",
        "--duration",
        "40s",
        "--interval",
        "10s",
        "--warmup",
        "10s",
        "--sample-interval",
        "1s",
        "--scenarios",
        "baseline",
        "--proof-dir",
        proof.to_str().expect("utf-8"),
    ];
    if let Some(gate) = gate {
        args.extend(["--gate-file", gate.to_str().expect("utf-8")]);
    }
    args.extend(node_args);
    let out = soak_run(&args).output().expect("soak run");
    assert!(
        out.status.code().is_some_and(|c| c <= 2),
        "soak ran to a verdict: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    verdict_of(&proof)
}

fn soak_bar<'v>(verdict: &'v Value, id: &str) -> &'v Value {
    verdict["soak_bars"]
        .as_array()
        .expect("soak bars")
        .iter()
        .find(|b| b["bar"] == id)
        .unwrap_or_else(|| panic!("no soak bar {id}: {verdict:#}"))
}

#[test]
fn leaking_nodes_are_no_go_with_their_slope_and_healthy_nodes_pass() {
    let tmp = tempfile::tempdir().expect("tmp");
    let gate = short_span_gate(tmp.path());
    let (leaky_dir, healthy_dir, builtin_dir) = (
        tmp.path().join("leaky"),
        tmp.path().join("healthy"),
        tmp.path().join("builtin"),
    );
    for d in [&leaky_dir, &healthy_dir, &builtin_dir] {
        std::fs::create_dir(d).expect("dir");
    }
    // The three runs at once: each is mostly waiting on its windows.
    let (leaky, healthy, builtin) = std::thread::scope(|s| {
        let leaky = s.spawn(|| {
            run(
                &leaky_dir,
                Some(&gate),
                &[
                    "--node-arg=--test-leak-bytes-per-sec=2000000",
                    "--node-arg=--test-leak-fds-per-sec=2",
                ],
            )
        });
        let healthy = s.spawn(|| run(&healthy_dir, Some(&gate), &[]));
        let builtin = s.spawn(|| run(&builtin_dir, None, &[]));
        (
            leaky.join().expect("leaky run"),
            healthy.join().expect("healthy run"),
            builtin.join().expect("built-in gate run"),
        )
    });

    for id in ["rss_growth", "fd_growth"] {
        let bar = soak_bar(&leaky, id);
        assert_eq!(bar["verdict"], "NO-GO", "{id} on leaking nodes: {bar:#}");
        let nodes: Vec<&str> = bar["nodes"]
            .as_array()
            .expect("nodes")
            .iter()
            .filter_map(Value::as_str)
            .collect();
        assert_eq!(nodes, ["node-0", "node-1", "node-2"], "{bar:#}");
        let reason = bar["reason"].as_str().unwrap_or_default();
        assert!(
            reason.contains("per hour"),
            "{id}: the reason states the slope per hour: {reason}"
        );
        assert!(
            bar["value"].as_f64().is_some_and(|v| v > 0.0),
            "{id}: the value is the fitted slope: {bar:#}"
        );
    }
    // 2 descriptors a second is 7,200 an hour: the fitted slope is the leak's rate.
    let fd = soak_bar(&leaky, "fd_growth")["value"]
        .as_f64()
        .unwrap_or(0.0);
    assert!(
        (5_000.0..=9_500.0).contains(&fd),
        "fd slope {fd} per hour, leak 7,200"
    );
    assert_eq!(leaky["verdict"], "NO-GO");

    for id in ["rss_growth", "fd_growth"] {
        let bar = soak_bar(&healthy, id);
        assert_eq!(bar["verdict"], "GO", "{id} on healthy nodes: {bar:#}");
        // Below the built-in 20 min span the bar is reported, not passed.
        let bar = soak_bar(&builtin, id);
        assert_eq!(bar["not_applicable"], true, "{id} below its span: {bar:#}");
        assert_ne!(bar["verdict"], "GO", "{id}: not applicable is never a pass");
    }
}
