//! The issue 6 acceptance run, for real: `soak lab up --hosts 4` (four host namespaces, each with
//! its own address and sshd), then from the controller namespace (`soak lab exec`) `soak deploy`
//! of the real `soak-node` and `soak run -i <lab inventory> --duration 40s --interval 20s` with
//! the default scenarios (baseline + fanout_burst) and gate (broad-launch). Requirements:
//!
//! - the run exits 0 with verdict GO, and every window's Phase A delivered 12/12 pairs (read from
//!   the proof's `verdict.json`, the machine contract — never the Markdown);
//! - the proof passes `soak verify`, and its manifest records each host's build: the sha256 of
//!   the deployed binary, its version and git revision;
//! - a second `soak deploy` uploads and restarts nothing (the run left the nodes alone);
//! - `soak lab down` leaves no namespace with the lab's prefix, no process the lab started
//!   (sshd, soak-node, anything inside a lab namespace) and no lab directory.
//!
//! Needs root, iproute2 (`ip netns`), openssh-server and openssh-client; skips with a printed
//! reason otherwise (CI runs it as root). The lab has its own directory and name, every command
//! has a deadline, and a Drop guard always runs `soak lab down`. About a minute: the run itself
//! is 40 s.

// Tests may print with the std macros: a closed pipe there is not a user path.
#![allow(clippy::disallowed_macros)]

mod support;

use std::path::{Path, PathBuf};
use std::process::{Command, Output};
use std::time::Duration;

use serde_json::Value;

use support::{deploy_json, deployable_node, node_bin, sha256_file, soak_bin, texts};

/// Deadline of the lab and deploy commands.
const STEP_TIMEOUT: Duration = Duration::from_secs(120);
/// Deadline of the 40 s soak (connect, two windows, judging, proof).
const RUN_TIMEOUT: Duration = Duration::from_secs(180);
/// Hosts in the lab: 4 nodes → 4·3 = 12 ordered pairs per Phase A matrix.
const HOSTS: usize = 4;
const PAIRS: u64 = (HOSTS * (HOSTS - 1)) as u64;

use soak_inventory::testing::{LAB, prerequisites, skip_unless_available};

/// Runs `command` with a deadline (killed when it overruns).
fn run(command: Command, timeout: Duration) -> Output {
    let mut cmd = assert_cmd::Command::from_std(command);
    cmd.timeout(timeout);
    cmd.output().expect("command runs")
}

/// A process identified by pid and start time, so a recycled pid is never mistaken for it.
#[derive(Debug, Clone, PartialEq, Eq)]
struct Proc {
    pid: u32,
    start: String,
    comm: String,
}

impl Proc {
    fn read(pid: u32) -> Option<Proc> {
        let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
        let (head, rest) = stat.rsplit_once(')')?;
        let comm = head.split_once('(')?.1.to_owned();
        let fields: Vec<&str> = rest.split_whitespace().collect();
        // After the `)`: field 3 (state) is index 0, field 22 (starttime) is index 19.
        if fields.first() == Some(&"Z") {
            return None;
        }
        Some(Proc {
            pid,
            start: fields.get(19)?.to_string(),
            comm,
        })
    }

    /// Still the same live (non-zombie) process.
    fn alive(&self) -> bool {
        Proc::read(self.pid).is_some_and(|p| p.start == self.start)
    }
}

/// Every namespace whose name starts with `prefix`.
fn namespaces_with(prefix: &str) -> Vec<String> {
    let out = run(
        {
            let mut c = Command::new("ip");
            c.args(["netns", "list"]);
            c
        },
        STEP_TIMEOUT,
    );
    String::from_utf8_lossy(&out.stdout)
        .lines()
        .filter_map(|l| l.split_whitespace().next())
        .filter(|ns| ns.starts_with(prefix))
        .map(str::to_owned)
        .collect()
}

/// Every process inside namespace `ns` (`ip netns pids`).
fn processes_in(ns: &str) -> Vec<Proc> {
    let out = run(
        {
            let mut c = Command::new("ip");
            c.args(["netns", "pids", ns]);
            c
        },
        STEP_TIMEOUT,
    );
    String::from_utf8_lossy(&out.stdout)
        .split_whitespace()
        .filter_map(|p| p.parse().ok())
        .filter_map(Proc::read)
        .collect()
}

/// Live processes whose command line mentions `needle` (other than this test).
fn processes_mentioning(needle: &str) -> Vec<(u32, String)> {
    let me = std::process::id();
    let Ok(entries) = std::fs::read_dir("/proc") else {
        return Vec::new();
    };
    entries
        .filter_map(|e| e.ok()?.file_name().to_str()?.parse::<u32>().ok())
        .filter(|&pid| pid != me)
        .filter_map(|pid| {
            let raw = std::fs::read(format!("/proc/{pid}/cmdline")).ok()?;
            let cmdline = String::from_utf8_lossy(&raw).replace('\0', " ");
            (cmdline.contains(needle) && Proc::read(pid).is_some()).then_some((pid, cmdline))
        })
        .collect()
}

/// The end of a text file, for failure messages.
fn tail(path: &Path, lines: usize) -> String {
    let text = std::fs::read_to_string(path).unwrap_or_else(|e| format!("({e})"));
    let all: Vec<&str> = text.lines().collect();
    all[all.len().saturating_sub(lines)..].join("\n")
}

/// A node's git revision names a commit of this checkout (when the build knew its revision and
/// the workspace is a git checkout with `git` installed).
fn assert_names_a_commit(git: &str) {
    let workspace = Path::new(env!("CARGO_MANIFEST_DIR")).join("..");
    let git_cmd = |args: &[&str]| {
        Command::new("git")
            .args(args)
            .current_dir(&workspace)
            .output()
    };
    let in_checkout = git_cmd(&["rev-parse", "--git-dir"]).is_ok_and(|o| o.status.success());
    if git == "unknown" || !in_checkout {
        eprintln!("note: node git revision `{git}` not checked against a checkout");
        return;
    }
    let found = git_cmd(&[
        "rev-parse",
        "--verify",
        "--quiet",
        &format!("{git}^{{commit}}"),
    ])
    .is_ok_and(|o| o.status.success());
    assert!(
        found,
        "node git revision `{git}` is no commit of this checkout"
    );
}

/// One lab with its own directory and name; torn down on drop.
struct Lab {
    dir: PathBuf,
    name: String,
}

impl Lab {
    fn soak_command(&self, args: &[&str]) -> Command {
        let mut command = Command::new(soak_bin());
        command
            .args(args)
            .env("SOAK_LAB_DIR", &self.dir)
            .env("SOAK_LAB_NAME", &self.name)
            .env_remove("RUST_LOG");
        command
    }

    fn soak(&self, args: &[&str]) -> Output {
        run(self.soak_command(args), STEP_TIMEOUT)
    }

    /// `soak ARGS` run by `soak lab exec` in the controller namespace.
    fn in_controller(&self, args: &[&str], timeout: Duration) -> Output {
        let bin = soak_bin();
        let mut all = vec!["lab", "exec", "--", bin.to_str().expect("utf-8 path")];
        all.extend_from_slice(args);
        run(self.soak_command(&all), timeout)
    }

    /// Tails of every host's node log, for failure messages (the lab dir is gone after down).
    fn node_logs(&self) -> String {
        (1..=HOSTS)
            .map(|i| {
                let log = self.dir.join(format!("hosts/h{i}/log/soak-node.log"));
                format!("--- h{i} node log (tail) ---\n{}", tail(&log, 15))
            })
            .collect::<Vec<_>>()
            .join("\n")
    }
}

impl Drop for Lab {
    fn drop(&mut self) {
        let out = self.soak(&["lab", "down"]);
        if !out.status.success() {
            eprintln!("lab down in Drop failed: {}", texts(&out).1);
        }
    }
}

/// What went wrong in a judged proof, in words: every non-GO window with its scenarios and
/// failing or unknown bars (from `verdict.json`), plus error events and scenarios that did not
/// complete from `events.jsonl`.
fn explain(proof: &Path, verdict: &Value) -> String {
    let mut lines = vec![format!(
        "verdict {} (gate {})",
        verdict["verdict"], verdict["gate"]
    )];
    for w in verdict["windows"].as_array().into_iter().flatten() {
        lines.push(format!(
            "window {} ({}warm-up): {}, phase_a {}",
            w["index"],
            if w["warmup"] == true { "" } else { "not " },
            w["verdict"],
            w["phase_a"]
        ));
        for s in w["scenarios"].as_array().into_iter().flatten() {
            lines.push(format!(
                "  scenario {} {} {}",
                s["name"], s["status"], s["detail"]
            ));
        }
        for b in w["bars"].as_array().into_iter().flatten() {
            if b["verdict"] != "GO" {
                lines.push(format!(
                    "  bar {} {}: {} = {} (threshold {}), nodes {}: {}",
                    b["bar"],
                    b["verdict"],
                    b["statistic"],
                    b["value"],
                    b["threshold"],
                    b["nodes"],
                    b["reason"]
                ));
            }
        }
    }
    for b in verdict["soak_bars"].as_array().into_iter().flatten() {
        if b["verdict"] != "GO" {
            lines.push(format!(
                "soak bar {} {}: {}",
                b["bar"], b["verdict"], b["reason"]
            ));
        }
    }
    let events = std::fs::read_to_string(proof.join("events.jsonl")).unwrap_or_default();
    for line in events.lines() {
        let Ok(event) = serde_json::from_str::<Value>(line) else {
            continue;
        };
        let failed_scenario =
            event["event"] == "scenario" && event["record"]["status"]["status"] != "completed";
        if event["event"] == "error" || failed_scenario {
            lines.push(format!("event: {line}"));
        }
    }
    lines.join("\n")
}

#[test]
fn four_host_lab_deploy_and_run_is_go_with_a_verifiable_proof_and_down_leaves_nothing() {
    if !skip_unless_available(
        "lab acceptance (root, iproute2, openssh)",
        prerequisites(LAB),
    ) {
        return;
    }
    let soak = soak_bin();
    assert!(
        soak.is_file(),
        "soak not found at {}: build it first (`cargo build --workspace --bins`) or set SOAK_BIN",
        soak.display()
    );
    // Fails with a clear message when target/debug/soak-node was not built.
    let _ = node_bin();

    let pid = std::process::id();
    let lab = Lab {
        dir: PathBuf::from(format!("/tmp/sla-{pid}")),
        name: format!("soaka{}", pid % 1_000_000),
    };
    let prefix = format!("{}-", lab.name);
    // A leftover of a crashed earlier run with the same pid would confuse the test.
    let _ = lab.soak(&["lab", "down"]);

    let out = lab.soak(&["lab", "up", "--hosts", &HOSTS.to_string(), "--json"]);
    assert!(out.status.success(), "lab up: {}", texts(&out).1);
    let state: Value = serde_json::from_slice(&out.stdout).expect("`lab up --json` prints JSON");
    let inventory = state["inventory"]
        .as_str()
        .expect("inventory path")
        .to_owned();
    let sshds: Vec<Proc> = state["hosts"]
        .as_array()
        .expect("hosts")
        .iter()
        .map(|h| {
            let pid = h["sshd_pid"].as_u64().expect("sshd pid") as u32;
            Proc::read(pid).unwrap_or_else(|| panic!("sshd {pid} of {h} is not running"))
        })
        .collect();
    assert_eq!(sshds.len(), HOSTS);
    assert_eq!(namespaces_with(&prefix).len(), HOSTS + 2, "hosts, ctl, br");

    // Deploy the real node (a stripped copy of target/debug/soak-node: same code, ~5× smaller).
    let work = tempfile::tempdir().expect("tempdir");
    let node = deployable_node(work.path());
    let node_s = node.to_str().expect("utf-8 path").to_owned();
    let sha = sha256_file(&node);
    let version_out = run(
        {
            let mut c = Command::new(&node);
            c.arg("--version");
            c
        },
        STEP_TIMEOUT,
    );
    let version = texts(&version_out)
        .0
        .split_whitespace()
        .nth(1)
        .expect("`soak-node --version` prints `soak-node VERSION`")
        .to_owned();

    let out = lab.in_controller(
        &[
            "deploy",
            "-i",
            &inventory,
            "--binary",
            &node_s,
            "--json",
            "--ready-timeout",
            "60s",
        ],
        STEP_TIMEOUT,
    );
    let (records, failed) = deploy_json(&out);
    assert!(
        out.status.success() && failed.is_empty(),
        "deploy: {failed:?}\n{}",
        texts(&out).1
    );
    assert_eq!(records.len(), HOSTS);
    for r in &records {
        assert!(r.uploaded && r.restarted, "first deploy uploads: {r:?}");
        assert_eq!(r.binary_sha256, sha, "{}", r.host);
        assert_eq!(r.version, version, "{}", r.host);
        assert!(r.address.starts_with("198.18.0."), "{r:?}");
    }
    let nodes: Vec<Proc> = records
        .iter()
        .map(|r| {
            Proc::read(r.pid).unwrap_or_else(|| panic!("{} (pid {}) is not running", r.host, r.pid))
        })
        .collect();

    // The acceptance soak, default scenarios and gate, from the controller namespace.
    let proof = work.path().join("proof");
    let proof_s = proof.to_str().expect("utf-8 path").to_owned();
    let out = lab.in_controller(
        &[
            "run",
            "-i",
            &inventory,
            "--duration",
            "40s",
            "--interval",
            "20s",
            "--label",
            "lab-acceptance",
            "--proof-dir",
            &proof_s,
        ],
        RUN_TIMEOUT,
    );
    let (stdout, stderr) = texts(&out);
    let verdict: Value = serde_json::from_str(
        &std::fs::read_to_string(proof.join("verdict.json")).unwrap_or_else(|e| {
            panic!(
                "no verdict.json in {proof_s} ({e}); exit {:?}\nstdout:\n{stdout}\nstderr:\n{stderr}\n{}",
                out.status.code(),
                lab.node_logs()
            )
        }),
    )
    .expect("verdict.json is JSON");
    assert!(
        out.status.code() == Some(0) && verdict["verdict"] == "GO",
        "expected GO (exit 0), got exit {:?}\n{}\nstdout:\n{stdout}\nstderr:\n{stderr}\n{}",
        out.status.code(),
        explain(&proof, &verdict),
        lab.node_logs()
    );
    assert_eq!(verdict["gate"], "broad-launch");
    let windows = verdict["windows"].as_array().expect("windows");
    assert_eq!(windows.len(), 2, "40 s in 20 s windows: {verdict}");
    for w in windows {
        assert_eq!(
            (
                w["phase_a"]["pairs"].as_u64(),
                w["phase_a"]["delivered"].as_u64()
            ),
            (Some(PAIRS), Some(PAIRS)),
            "window {}: {}/{} pairs, want {PAIRS}/{PAIRS}",
            w["index"],
            w["phase_a"]["delivered"],
            w["phase_a"]["pairs"]
        );
        assert_eq!(w["verdict"], "GO", "window {}", w["index"]);
        // The default scenarios both ran: GO must not come from a skipped fanout burst.
        let ran: Vec<(&str, &str)> = w["scenarios"]
            .as_array()
            .expect("scenarios")
            .iter()
            .map(|s| {
                (
                    s["name"].as_str().unwrap_or("?"),
                    s["status"].as_str().unwrap_or("?"),
                )
            })
            .collect();
        assert_eq!(
            ran,
            [("baseline", "COMPLETED"), ("fanout_burst", "COMPLETED")],
            "window {}",
            w["index"]
        );
    }

    // The sealed proof verifies.
    let verify = run(
        {
            let mut c = Command::new(soak_bin());
            c.arg("verify").arg(&proof);
            c
        },
        STEP_TIMEOUT,
    );
    assert!(
        verify.status.success(),
        "soak verify {proof_s}: {}{}",
        texts(&verify).0,
        texts(&verify).1
    );

    // The manifest records each host's build: the deployed binary, its version and revision.
    let manifest: Value = serde_json::from_str(
        &std::fs::read_to_string(proof.join("manifest.json")).expect("manifest.json"),
    )
    .expect("manifest is JSON");
    assert_eq!(manifest["status"], "complete");
    let builds = manifest["node_builds"].as_array().expect("node_builds");
    let mut hosts: Vec<&str> = builds
        .iter()
        .map(|b| b["host"].as_str().expect("host"))
        .collect();
    hosts.sort_unstable();
    assert_eq!(hosts, ["h1", "h2", "h3", "h4"], "{builds:?}");
    for build in builds {
        let record = records
            .iter()
            .find(|r| r.host == build["host"])
            .expect("deployed host");
        assert_eq!(build["binary_sha256"], sha.as_str(), "{build}");
        assert_eq!(build["version"], version.as_str(), "{build}");
        let git = build["git"].as_str().expect("git");
        assert!(!git.is_empty(), "{build}");
        assert_eq!(git, record.git, "{build}");
        assert_names_a_commit(git);
        assert_eq!(build["started_at_ms"], record.started_at_ms, "{build}");
    }

    // A second deploy uploads and restarts nothing: the same processes still run.
    let out = lab.in_controller(
        &["deploy", "-i", &inventory, "--binary", &node_s, "--json"],
        STEP_TIMEOUT,
    );
    let (again, failed) = deploy_json(&out);
    assert!(
        out.status.success() && failed.is_empty(),
        "second deploy: {}",
        texts(&out).1
    );
    assert_eq!(again.len(), HOSTS);
    for r in &again {
        assert!(!r.uploaded && !r.restarted, "second deploy: {r:?}");
        assert_eq!(r.binary_sha256, sha);
    }
    for (n, r) in nodes.iter().zip(&records) {
        assert!(n.alive(), "{} (pid {}) died", r.host, r.pid);
        let now = again.iter().find(|a| a.host == r.host).expect("same hosts");
        assert_eq!(now.pid, r.pid, "{} was restarted", r.host);
    }

    // Everything the lab started, taken before down: sshds, nodes, any process in its namespaces.
    let mut started: Vec<Proc> = sshds.iter().chain(&nodes).cloned().collect();
    for ns in namespaces_with(&prefix) {
        started.extend(processes_in(&ns));
    }
    started.sort_by_key(|p| p.pid);
    started.dedup();

    let out = lab.soak(&["lab", "down"]);
    assert!(out.status.success(), "lab down: {}", texts(&out).1);
    let left = namespaces_with(&prefix);
    assert!(left.is_empty(), "namespaces left after down: {left:?}");
    let alive: Vec<&Proc> = started.iter().filter(|p| p.alive()).collect();
    assert!(alive.is_empty(), "processes left after down: {alive:?}");
    let dir = lab.dir.to_str().expect("utf-8 path");
    let mentioning = processes_mentioning(dir);
    assert!(
        mentioning.is_empty(),
        "processes naming {dir} after down: {mentioning:?}"
    );
    assert!(!lab.dir.exists(), "lab down removes {dir}");
}
