//! Fault latency on the local mesh: for every fault kind, how long `apply → verified effective`
//! and `revert → verified clean` take, measured by a real `soak run` (release or debug build,
//! whatever `target/` holds) from its own fault journal (`faults/journal.jsonl`: the `apply`
//! line is written before the fault acts, `effective` once it was proven; `revert` before the
//! revert, `clean` once the fleet was proven clean).
//!
//! Reference measured in the same run: the median Phase A DM round trip of the warm-up window
//! (the least a probe-based check can cost). Target: < 1 s per step on the local mesh.
//!
//! Run: `cargo bench -p soak --bench faults` (about 3 minutes).

// A bench prints its table to the terminal that ran it.
#![allow(clippy::disallowed_macros)]

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::process::Command;

use serde_json::Value;

fn target_dir() -> PathBuf {
    std::env::var_os("CARGO_TARGET_DIR")
        .map(PathBuf::from)
        .unwrap_or_else(|| Path::new(env!("CARGO_MANIFEST_DIR")).join("../target"))
}

fn binary(name: &str) -> PathBuf {
    for profile in ["release", "debug"] {
        let path = target_dir().join(profile).join(name);
        if path.is_file() {
            return path;
        }
    }
    panic!("{name} not built: cargo build --release --bins (or cargo build --bins)");
}

const FAULTS: &str = r#"
[[fault]]
name = "delay"
kind = "delay"
targets = "node:node-1"
window = 1
hold = "3s"
delay_ms = 200
heal_window = false

[[fault]]
name = "loss"
kind = "loss"
targets = "node:node-2"
window = 2
hold = "3s"
loss = 0.3
heal_window = false

[[fault]]
name = "partition_pair"
kind = "partition"
targets = "pair:node-0,node-3"
window = 3
hold = "3s"
heal_window = false

[[fault]]
name = "partition_halves"
kind = "partition"
targets = "halves"
window = 4
hold = "3s"
heal_window = false

[[fault]]
name = "partition_one_way"
kind = "partition"
targets = "one_way:node-1->node-2"
window = 5
hold = "3s"
heal_window = false

[[fault]]
name = "pause"
kind = "pause"
targets = "node:node-3"
window = 6
hold = "3s"
heal_window = false

[[fault]]
name = "restart"
kind = "restart"
targets = "node:node-0"
window = 7
hold = "1s"
heal_window = false
"#;

fn main() {
    let tmp = std::env::temp_dir().join(format!("soak-fault-bench-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&tmp);
    std::fs::create_dir_all(&tmp).expect("tmp dir");
    let file = tmp.join("faults.toml");
    std::fs::write(&file, FAULTS).expect("scenario file");
    let proof = tmp.join("proof");
    let out = Command::new(binary("soak"))
        .args([
            "run",
            "--nodes",
            "4",
            "--duration",
            "80s",
            "--interval",
            "10s",
        ])
        .args([
            "--warmup",
            "10s",
            "--sample-interval",
            "1s",
            "--allow-restart",
        ])
        .args(["--scenarios", "baseline", "--scenario-file"])
        .arg(&file)
        .arg("--proof-dir")
        .arg(&proof)
        .env("SOAK_NODE_BIN", binary("soak-node"))
        .output()
        .expect("run soak");
    if !proof.join("faults/journal.jsonl").is_file() {
        panic!(
            "no journal; soak said:\n{}",
            String::from_utf8_lossy(&out.stderr)
        );
    }
    let journal: Vec<Value> = std::fs::read_to_string(proof.join("faults/journal.jsonl"))
        .expect("journal")
        .lines()
        .filter_map(|l| serde_json::from_str(l).ok())
        .collect();
    let window0: Value = serde_json::from_str(
        &std::fs::read_to_string(proof.join("windows/000/window.json")).expect("window 0"),
    )
    .expect("window json");
    let mut rtts: Vec<u64> = window0["phase_a"]["pairs"]
        .as_array()
        .into_iter()
        .flatten()
        .filter_map(|p| p["latency_us"].as_u64())
        .collect();
    rtts.sort_unstable();
    let reference_ms = rtts.get(rtts.len() / 2).copied().unwrap_or(0) as f64 / 1000.0;

    let at = |fault: &str, step: &str| -> Option<u64> {
        journal
            .iter()
            .find(|e| e["scenario"] == fault && e["step"] == step)
            .and_then(|e| e["at_ms"].as_u64())
    };
    let mut rows = BTreeMap::new();
    for fault in [
        "delay",
        "loss",
        "partition_pair",
        "partition_halves",
        "partition_one_way",
        "pause",
        "restart",
    ] {
        let effective = at(fault, "apply")
            .zip(at(fault, "effective"))
            .map(|(a, b)| b - a);
        let clean = at(fault, "revert")
            .zip(at(fault, "clean"))
            .map(|(a, b)| b - a);
        rows.insert(fault, (effective, clean));
    }
    println!("fault latency on a 4-node local mesh (from the run's own journal)");
    println!(
        "reference: median Phase A DM round trip in the warm-up window = {reference_ms:.2} ms"
    );
    println!(
        "{:<18} {:>22} {:>22}",
        "fault", "apply→effective ms", "revert→clean ms"
    );
    let show = |v: Option<u64>| match v {
        Some(ms) => format!(
            "{ms:>6} ({:>5.0}× ref{})",
            ms as f64 / reference_ms.max(0.001),
            if ms < 1000 { "" } else { ", OVER 1 s" }
        ),
        None => "not reached".to_owned(),
    };
    for (fault, (effective, clean)) in rows {
        println!("{fault:<18} {:>22} {:>22}", show(effective), show(clean));
    }
    let _ = std::fs::remove_dir_all(&tmp);
}
