//! Shared by the deploy tests: binaries, a fleet guard that stops every node a test started
//! (by the pid in each install dir's pid file, checked to be our binary), and inventory files.

#![allow(dead_code)]
// Tests may print with the std macros: a closed pipe there is not a user path.
#![allow(clippy::disallowed_macros)]

pub mod run;

use std::path::{Path, PathBuf};
use std::process::{Command, Output};

use soak_inventory::Host;
use soak_inventory::node::{self, DeployRecord};

/// The `soak` binary under test.
pub fn soak_bin() -> PathBuf {
    std::env::var_os("SOAK_BIN")
        .map(PathBuf::from)
        .unwrap_or_else(|| PathBuf::from(env!("CARGO_BIN_EXE_soak")))
}

/// The real `soak-node` binary (`SOAK_NODE_BIN`, else `<target>/debug/soak-node`, honouring
/// `CARGO_TARGET_DIR`); the test script builds every bin before the tests run.
pub fn node_bin() -> PathBuf {
    if let Some(path) = std::env::var_os("SOAK_NODE_BIN") {
        return PathBuf::from(path);
    }
    let target = std::env::var_os("CARGO_TARGET_DIR")
        .map(PathBuf::from)
        .unwrap_or_else(|| Path::new(env!("CARGO_MANIFEST_DIR")).join("../target"));
    let path = target.join("debug").join("soak-node");
    assert!(
        path.is_file(),
        "soak-node not found at {}: build it first (`cargo build -p soak-node`) or set SOAK_NODE_BIN",
        path.display()
    );
    path
}

/// A copy of the real soak-node in `dir`, stripped of debug info when `strip` exists (a
/// debug build is ~100 MB; deploying the same code in ~20 MB keeps the tests fast).
pub fn deployable_node(dir: &Path) -> PathBuf {
    let copy = dir.join("soak-node");
    std::fs::copy(node_bin(), &copy).expect("copy soak-node");
    let stripped = Command::new("strip")
        .arg(&copy)
        .status()
        .map(|s| s.success())
        .unwrap_or(false);
    if !stripped {
        eprintln!("note: `strip` unavailable; deploying the unstripped soak-node");
    }
    copy
}

/// sha256 of a file, hex.
pub fn sha256_file(path: &Path) -> String {
    node::sha256_hex(&std::fs::read(path).expect("read binary"))
}

/// Runs `soak ARGS`.
pub fn soak(args: &[&str]) -> Output {
    Command::new(soak_bin())
        .args(args)
        .env_remove("RUST_LOG")
        .output()
        .expect("run soak")
}

/// Text of stdout and stderr.
pub fn texts(out: &Output) -> (String, String) {
    (
        String::from_utf8_lossy(&out.stdout).into_owned(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

/// Parses `soak deploy --json` output.
pub fn deploy_json(out: &Output) -> (Vec<DeployRecord>, Vec<serde_json::Value>) {
    let (stdout, stderr) = texts(out);
    let doc: serde_json::Value = serde_json::from_str(&stdout).unwrap_or_else(|e| {
        panic!("deploy --json printed no JSON ({e}):\n{stdout}\nstderr:\n{stderr}")
    });
    let hosts = serde_json::from_value(doc["hosts"].clone()).expect("records");
    let failed = doc["failed"].as_array().cloned().unwrap_or_default();
    (hosts, failed)
}

/// Whether `pid` is a live (non-zombie) process.
pub fn alive(pid: u32) -> bool {
    std::fs::read_link(format!("/proc/{pid}/exe")).is_ok()
}

/// Stops, on drop, every node started in the hosts' install dirs (they are all on this
/// machine), using the same stop script as `soak stop`.
pub struct FleetGuard {
    pub hosts: Vec<Host>,
}

impl Drop for FleetGuard {
    fn drop(&mut self) {
        for host in &self.hosts {
            let _ = Command::new("sh")
                .arg("-c")
                .arg(node::stop_script(host))
                .output();
        }
    }
}

/// Writes a native TOML inventory for `hosts` to `path`.
pub fn write_inventory(path: &Path, hosts: &[Host]) {
    std::fs::write(path, soak_inventory::native::render(hosts)).expect("write inventory");
}

/// Writes a proof of `obs` into `dir` with the real `ProofWriter` (sealed when `finish`),
/// judged with the built-in `gate`; returns the stored verdict.
pub fn write_proof(
    dir: &Path,
    obs: &soak_gates::model::Observations,
    gate: &str,
    label: &str,
    finish: bool,
) -> soak_gates::Verdict {
    let profile = soak_gates::Profile::builtin(gate).expect("built-in gate");
    let started_at_ms = 1_795_309_786_000;
    let run_id = soak_proofs::run_id(started_at_ms, label);
    let meta = soak_proofs::RunMeta {
        run_id: run_id.clone(),
        label: label.into(),
        started_at_ms,
        tool_version: env!("CARGO_PKG_VERSION").into(),
        node_builds: Vec::new(),
        inventory_digest: None,
        gate: gate.into(),
        gate_source: Some(profile.source().to_string()),
        scenarios: vec!["baseline".into(), "fanout_burst".into()],
        sample_interval_ms: obs.run.sample_interval_ms,
        nodes: obs.run.nodes.clone(),
        config: serde_json::json!({"nodes": obs.run.nodes.len()}),
        coverage: None,
        command: None,
        seed: None,
        errors: Vec::new(),
        errors_omitted: 0,
    };
    let mut writer = soak_proofs::ProofWriter::create(dir, meta).expect("create proof");
    for (node, samples) in &obs.samples {
        for sample in samples {
            writer.append_sample(node, sample).expect("sample");
        }
    }
    for window in &obs.windows {
        writer.write_window(window).expect("window");
    }
    let mut observed = obs.clone();
    observed.run.run_id = run_id;
    let verdict = soak_gates::evaluate(&observed, &profile);
    if finish {
        writer
            .finish(soak_proofs::RunStatus::Complete, &verdict)
            .expect("finish");
    }
    verdict
}
