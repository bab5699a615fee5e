//! Orchestrator memory against run length: a real `soak run` (local mesh, release or debug
//! build, whatever `target/` holds) of few windows and one of ten times as many, with the same
//! windows, sampler and fleet; `soak`'s own RSS (`VmRSS` of `/proc/<pid>/status`) is read at
//! every `window_ended` event of its `--events jsonl` stream, and its peak (`VmHWM`) at
//! `run_finished` (after the final judgement, which reads the stored proof back).
//!
//! Reference measured in the same run: the short run. Target (issue 10, item 3): RSS at the end
//! of the long run's windows ≤ 1.2 × the short run's.
//!
//! Run: `cargo bench -p soak --bench memory` (about 7 minutes of wall time, little CPU).
//! `MEMORY_BENCH_SHORT` / `MEMORY_BENCH_LONG` (windows, default 10 / 100),
//! `MEMORY_BENCH_INTERVAL` (default `4s`), `MEMORY_BENCH_NODES` (default 4).

// A bench prints its table to the terminal that ran it.
#![allow(clippy::disallowed_macros)]

use std::io::{BufRead, BufReader};
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::Instant;

fn target_dir() -> PathBuf {
    std::env::var_os("CARGO_TARGET_DIR")
        .map(PathBuf::from)
        .unwrap_or_else(|| Path::new(env!("CARGO_MANIFEST_DIR")).join("../target"))
}

fn binary(name: &str) -> PathBuf {
    if let Some(dir) = std::env::var_os("SOAK_BENCH_BIN_DIR") {
        return PathBuf::from(dir).join(name);
    }
    for profile in ["release", "debug"] {
        let path = target_dir().join(profile).join(name);
        if path.is_file() {
            return path;
        }
    }
    panic!("{name} not built: cargo build --release --bins (or cargo build --bins)");
}

fn env_or<T: std::str::FromStr>(name: &str, default: T) -> T {
    std::env::var(name)
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(default)
}

/// `VmRSS` / `VmHWM` of a process, kB.
fn status_kb(pid: u32, field: &str) -> Option<u64> {
    let text = std::fs::read_to_string(format!("/proc/{pid}/status")).ok()?;
    text.lines()
        .find_map(|l| l.strip_prefix(field))
        .and_then(|rest| rest.trim().trim_end_matches("kB").trim().parse().ok())
}

struct Measured {
    windows: u32,
    /// RSS after each window, kB.
    rss: Vec<u64>,
    /// Peak RSS at the end (final judgement included), kB.
    hwm: u64,
    samples: u64,
    wall_s: f64,
}

fn run(windows: u32, interval: &str, nodes: u32) -> Measured {
    let dir = tempfile::tempdir().expect("tempdir");
    let proof = dir.path().join("proof");
    let interval_s: f64 = humantime::parse_duration(interval)
        .expect("MEMORY_BENCH_INTERVAL")
        .as_secs_f64();
    let duration = format!("{}ms", (interval_s * 1000.0) as u64 * u64::from(windows));
    let started = Instant::now();
    let mut child = Command::new(binary("soak"))
        .args([
            "run",
            "--nodes",
            &nodes.to_string(),
            "--duration",
            &duration,
        ])
        .args(["--interval", interval, "--sample-interval", "100ms"])
        .args([
            "--scenarios",
            "baseline",
            "--events",
            "jsonl",
            "--seed",
            "1",
        ])
        .arg("--proof-dir")
        .arg(&proof)
        .env("SOAK_NODE_BIN", binary("soak-node"))
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
        .expect("spawn soak");
    let pid = child.id();
    let stdout = child.stdout.take().expect("stdout");
    let mut rss = Vec::new();
    let mut hwm = 0;
    let mut samples = 0;
    for line in BufReader::new(stdout).lines() {
        let Ok(line) = line else { break };
        let Ok(event) = serde_json::from_str::<serde_json::Value>(&line) else {
            continue;
        };
        match event["event"].as_str() {
            Some("window_ended") => rss.extend(status_kb(pid, "VmRSS:")),
            Some("samples") => {
                samples += event["ok"].as_u64().unwrap_or(0)
                    + event["missing"].as_array().map_or(0, Vec::len) as u64;
            }
            Some("run_finished") => hwm = status_kb(pid, "VmHWM:").unwrap_or(0),
            _ => {}
        }
    }
    let status = child.wait().expect("wait");
    assert!(
        status.code().is_some_and(|c| c <= 2),
        "soak run failed: {status}"
    );
    assert_eq!(rss.len(), windows as usize, "one RSS reading per window");
    Measured {
        windows,
        rss,
        hwm,
        samples,
        wall_s: started.elapsed().as_secs_f64(),
    }
}

/// Least-squares slope of `ys` against their index, kB per window.
fn slope(ys: &[u64]) -> f64 {
    let n = ys.len() as f64;
    if ys.len() < 2 {
        return 0.0;
    }
    let mx = (n - 1.0) / 2.0;
    let my = ys.iter().sum::<u64>() as f64 / n;
    let (mut num, mut den) = (0.0, 0.0);
    for (i, &y) in ys.iter().enumerate() {
        let dx = i as f64 - mx;
        num += dx * (y as f64 - my);
        den += dx * dx;
    }
    num / den
}

fn main() {
    let short = env_or("MEMORY_BENCH_SHORT", 10u32);
    let long = env_or("MEMORY_BENCH_LONG", 100u32);
    let interval = std::env::var("MEMORY_BENCH_INTERVAL").unwrap_or_else(|_| "4s".into());
    let nodes = env_or("MEMORY_BENCH_NODES", 4u32);
    println!(
        "soak RSS vs run length: {nodes} local nodes, {interval} windows, 100ms sampler, baseline only ({})",
        binary("soak").display()
    );
    let a = run(short, &interval, nodes);
    let b = run(long, &interval, nodes);
    println!(
        "| windows | samples | wall | RSS after window 1 | RSS at the last window | growth per window (2nd half) | peak incl. final judgement |"
    );
    println!("|---|---|---|---|---|---|---|");
    for m in [&a, &b] {
        let half = &m.rss[m.rss.len() / 2..];
        println!(
            "| {} | {} | {:.0} s | {:.1} MB | {:.1} MB | {:+.1} kB | {:.1} MB |",
            m.windows,
            m.samples,
            m.wall_s,
            m.rss[0] as f64 / 1024.0,
            *m.rss.last().unwrap_or(&0) as f64 / 1024.0,
            slope(half),
            m.hwm as f64 / 1024.0,
        );
    }
    let last = |m: &Measured| *m.rss.last().unwrap_or(&1) as f64;
    let ratio = last(&b) / last(&a);
    println!(
        "ratio RSS at the end of the windows, {long} vs {short} windows: {ratio:.3} (target <= 1.2) {}",
        if ratio <= 1.2 { "PASS" } else { "FAIL" }
    );
    println!(
        "ratio peak RSS (final judgement reads the whole proof back): {:.3}",
        b.hwm as f64 / a.hwm.max(1) as f64
    );
}
