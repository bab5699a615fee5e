//! Big local meshes: a real `soak run` (release or debug build, whatever `target/` holds) of a
//! warm-up window and one judged window over N local nodes; from its `--events jsonl` stream:
//! the time until the mesh is ready and meshed (`fleet_ready.took_ms`), the judged window's
//! Phase A (pairs, wall time, pairs per second), whether the window kept its cadence (it ended
//! within 5 % of the interval), and the nodes' idle CPU (their `/proc/<pid>/stat` ticks over
//! 10 s after the judged window's matrix).
//!
//! References measured in the same run: a 10-node mesh (per-node start-up time, per-pair Phase
//! A throughput), and the 100-node full matrix at the old `--concurrency 32` (before/after the
//! fleet-sized default). The machine's load average is printed before and after each run.
//!
//! Targets (issue 10, item 4): 100 nodes ready < 10 s, Phase A over 9,900 pairs < 10 s (so a 30 s
//! window keeps its cadence); a 200-node mesh runs (sampled matrix).
//!
//! Run: `cargo bench -p soak --bench mesh` (about 6 minutes). `MESH_BENCH_INTERVAL` (default
//! `30s`), `MESH_BENCH_CASES` (default `10,100,100@32,200`: N, or N@CONCURRENCY),
//! `SOAK_BENCH_BIN_DIR` (a directory holding `soak` and `soak-node`).

// A bench prints its table to the terminal that ran it.
#![allow(clippy::disallowed_macros)]

use std::io::{BufRead, BufReader};
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::Duration;

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

fn loadavg() -> String {
    std::fs::read_to_string("/proc/loadavg")
        .map(|s| s.split_whitespace().take(3).collect::<Vec<_>>().join(" "))
        .unwrap_or_default()
}

/// utime + stime of a process, clock ticks.
fn cpu_ticks(pid: u64) -> u64 {
    std::fs::read_to_string(format!("/proc/{pid}/stat"))
        .ok()
        .and_then(|stat| {
            let rest = stat.rsplit_once(')')?.1.to_owned();
            let fields: Vec<&str> = rest.split_whitespace().collect();
            // After `pid (comm)`: state is field 3, utime 14, stime 15 (1-based).
            Some(fields.get(11)?.parse::<u64>().ok()? + fields.get(12)?.parse::<u64>().ok()?)
        })
        .unwrap_or(0)
}

#[derive(Debug, Default)]
struct Case {
    nodes: usize,
    concurrency: Option<usize>,
    ready_ms: u64,
    pairs: u64,
    delivered: u64,
    sampled: Option<String>,
    phase_a_ms: u64,
    window_ms: u64,
    idle_cores: f64,
    exit: Option<i32>,
    load_before: String,
    load_after: String,
}

fn run(nodes: usize, concurrency: Option<usize>, interval: Duration) -> Case {
    let dir = tempfile::tempdir().expect("tempdir");
    let secs = interval.as_secs().max(1);
    let mut command = Command::new(binary("soak"));
    command
        .args(["run", "--nodes", &nodes.to_string()])
        .args(["--duration", &format!("{}s", 2 * secs)])
        .args([
            "--interval",
            &format!("{secs}s"),
            "--warmup",
            &format!("{secs}s"),
        ])
        .args([
            "--scenarios",
            "baseline",
            "--events",
            "jsonl",
            "--seed",
            "1",
        ])
        .args(["--start-timeout", "180s"])
        .arg("--proof-dir")
        .arg(dir.path().join("proof"))
        .env("SOAK_NODE_BIN", binary("soak-node"))
        .stdout(Stdio::piped())
        .stderr(Stdio::null());
    // The 100-node case is the full 9,900-pair matrix; bigger fleets run the default sample.
    if nodes <= 100 {
        command.args(["--full-matrix-max", "100"]);
    }
    if let Some(c) = concurrency {
        command.args(["--concurrency", &c.to_string()]);
    }
    let mut case = Case {
        nodes,
        concurrency,
        load_before: loadavg(),
        ..Case::default()
    };
    let mut child = command.spawn().expect("spawn soak");
    let stdout = child.stdout.take().expect("stdout");
    let mut pids: Vec<u64> = Vec::new();
    let mut idle: Option<std::thread::JoinHandle<f64>> = None;
    for line in BufReader::new(stdout).lines() {
        let Ok(line) = line else { break };
        let Ok(event) = serde_json::from_str::<serde_json::Value>(&line) else {
            continue;
        };
        match event["event"].as_str() {
            Some("fleet_ready") => {
                case.ready_ms = event["took_ms"].as_u64().unwrap_or(0);
                pids = event["nodes"]
                    .as_array()
                    .into_iter()
                    .flatten()
                    .filter_map(|n| n["pid"].as_u64())
                    .collect();
            }
            Some("phase_a_finished") if event["window"] == 1 => {
                let s = &event["summary"];
                case.pairs = s["pairs"].as_u64().unwrap_or(0);
                case.delivered = s["delivered"].as_u64().unwrap_or(0);
                case.phase_a_ms = s["wall_ms"].as_u64().unwrap_or(0);
                case.sampled = s["sampled"].as_str().map(str::to_owned);
                let pids = pids.clone();
                idle = Some(std::thread::spawn(move || {
                    std::thread::sleep(Duration::from_secs(2));
                    let before: u64 = pids.iter().map(|&p| cpu_ticks(p)).sum();
                    std::thread::sleep(Duration::from_secs(10));
                    let after: u64 = pids.iter().map(|&p| cpu_ticks(p)).sum();
                    // 100 ticks per second is one core.
                    after.saturating_sub(before) as f64 / 100.0 / 10.0
                }));
            }
            Some("window_ended") if event["record"]["index"] == 1 => {
                let r = &event["record"];
                case.window_ms =
                    r["end_ms"].as_u64().unwrap_or(0) - r["start_ms"].as_u64().unwrap_or(0);
            }
            _ => {}
        }
    }
    case.exit = child.wait().ok().and_then(|s| s.code());
    case.idle_cores = idle.and_then(|h| h.join().ok()).unwrap_or(f64::NAN);
    case.load_after = loadavg();
    case
}

fn main() {
    let interval = std::env::var("MESH_BENCH_INTERVAL")
        .ok()
        .and_then(|v| humantime::parse_duration(&v).ok())
        .unwrap_or(Duration::from_secs(30));
    let cases = std::env::var("MESH_BENCH_CASES").unwrap_or_else(|_| "10,100,100@32,200".into());
    println!(
        "local meshes: warm-up + 1 judged window of {}, baseline only, full matrix up to 100 nodes, default sample past it ({})",
        humantime::format_duration(interval),
        binary("soak").display()
    );
    let mut results = Vec::new();
    for spec in cases.split(',') {
        let (n, c) = match spec.split_once('@') {
            Some((n, c)) => (n, c.parse().ok()),
            None => (spec, None),
        };
        let Ok(n) = n.trim().parse::<usize>() else {
            continue;
        };
        let case = run(n, c, interval);
        eprintln!("{case:?}");
        results.push(case);
    }
    let reference = results
        .iter()
        .find(|c| c.nodes == 10 && c.concurrency.is_none());
    println!(
        "| nodes | concurrency | ready | ready per node (× 10-node) | Phase A pairs | delivered | Phase A wall | pairs/s (× 10-node) | window (cadence) | idle CPU of the mesh | exit | load before → after |"
    );
    println!("|---|---|---|---|---|---|---|---|---|---|---|---|");
    for c in &results {
        let per_node = c.ready_ms as f64 / c.nodes as f64;
        let rate = c.pairs as f64 / (c.phase_a_ms.max(1) as f64 / 1000.0);
        let (per_node_x, rate_x) = match reference {
            Some(r) => (
                per_node / (r.ready_ms as f64 / r.nodes as f64).max(0.001),
                rate / (r.pairs as f64 / (r.phase_a_ms.max(1) as f64 / 1000.0)).max(0.001),
            ),
            None => (f64::NAN, f64::NAN),
        };
        let cadence = if c.window_ms as f64 <= interval.as_millis() as f64 * 1.05 {
            "kept"
        } else {
            "OVERRAN"
        };
        println!(
            "| {} | {} | {:.1} s | {:.0} ms ({per_node_x:.2}) | {}{} | {} | {:.1} s | {rate:.0} ({rate_x:.2}) | {:.1} s ({cadence}) | {:.2} cores | {} | {} → {} |",
            c.nodes,
            c.concurrency
                .map_or_else(|| "default".to_owned(), |c| c.to_string()),
            c.ready_ms as f64 / 1000.0,
            per_node,
            c.pairs,
            c.sampled
                .as_ref()
                .map(|s| format!(" ({s})"))
                .unwrap_or_default(),
            c.delivered,
            c.phase_a_ms as f64 / 1000.0,
            c.window_ms as f64 / 1000.0,
            c.idle_cores,
            c.exit
                .map_or_else(|| "signal".to_owned(), |e| e.to_string()),
            c.load_before,
            c.load_after,
        );
    }
}
