//! No orphan nodes when `soak` itself is SIGKILLed: the real `soak run` spawns a real local
//! mesh, the test SIGKILLs `soak` (its stop paths cannot run), and every node must exit on its
//! own within a few seconds — through the `--exit-with-parent` watchdog the local mesh passes.
//! Any node still running at the deadline is SIGKILLed by pid in cleanup and the test fails.

use std::io::{BufRead, BufReader};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::mpsc;
use std::time::{Duration, Instant};

use nix::sys::signal::{Signal, kill};
use nix::unistd::Pid;
use serde_json::Value;

mod support;
use support::{node_bin, soak_bin};

/// How long nodes get to notice that `soak` is gone (the watchdog checks every 250 ms).
const EXIT_DEADLINE: Duration = Duration::from_secs(5);

/// Whether `pid` is a live (non-zombie) process.
fn alive(pid: i32) -> bool {
    match std::fs::read_to_string(format!("/proc/{pid}/stat")) {
        Ok(stat) => !stat
            .rsplit_once(')')
            .is_some_and(|(_, rest)| rest.trim_start().starts_with('Z')),
        Err(_) => false,
    }
}

/// Cleanup whatever happens: SIGKILL any node pid still alive, reap `soak`, remove the node
/// data root `soak` could not remove itself.
struct Cleanup {
    soak: Child,
    nodes: Vec<i32>,
    data_root: Option<PathBuf>,
}

impl Drop for Cleanup {
    fn drop(&mut self) {
        for &pid in &self.nodes {
            if alive(pid) {
                let _ = kill(Pid::from_raw(pid), Signal::SIGKILL);
            }
        }
        let _ = self.soak.kill();
        let _ = self.soak.wait();
        if let Some(root) = &self.data_root {
            let _ = std::fs::remove_dir_all(root);
        }
    }
}

#[test]
fn sigkilled_soak_leaves_no_node_behind() {
    let dir = tempfile::tempdir().expect("tempdir");
    let stderr_path = dir.path().join("soak.stderr");
    let soak = Command::new(soak_bin())
        .args([
            "run",
            "--nodes",
            "3",
            "--duration",
            "60s",
            "--interval",
            "30s",
            "--scenarios",
            "baseline",
            "--events",
            "jsonl",
            "--label",
            "orphans",
        ])
        .arg("--proof-dir")
        .arg(dir.path().join("proof"))
        .env("SOAK_NODE_BIN", node_bin())
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::from(
            std::fs::File::create(&stderr_path).expect("stderr file"),
        ))
        .spawn()
        .expect("spawn soak");
    let mut cleanup = Cleanup {
        soak,
        nodes: Vec::new(),
        data_root: None,
    };
    let soak_pid = i32::try_from(cleanup.soak.id()).expect("pid fits");
    let stdout = cleanup.soak.stdout.take().expect("stdout");
    let (tx, rx) = mpsc::channel();
    std::thread::spawn(move || {
        for line in BufReader::new(stdout).lines() {
            let Ok(line) = line else { break };
            if tx.send(line).is_err() {
                break;
            }
        }
    });

    // Wait until the mesh is up: `fleet_ready` lists every node with its pid and log.
    let deadline = Instant::now() + Duration::from_secs(8);
    let fleet_ready = loop {
        let left = deadline.saturating_duration_since(Instant::now());
        match rx.recv_timeout(left) {
            Ok(line) => {
                let event: Value = serde_json::from_str(&line)
                    .unwrap_or_else(|e| panic!("stdout is not JSON lines ({e}): {line}"));
                if event["event"] == "fleet_ready" {
                    break event;
                }
            }
            Err(_) => panic!(
                "no fleet_ready within 8 s; stderr:\n{}",
                std::fs::read_to_string(&stderr_path).unwrap_or_default()
            ),
        }
    };
    let nodes: Vec<(String, i32, PathBuf)> = fleet_ready["nodes"]
        .as_array()
        .expect("nodes")
        .iter()
        .map(|n| {
            let pid = n["pid"].as_u64().expect("local nodes record their pid");
            (
                n["name"].as_str().expect("name").to_owned(),
                i32::try_from(pid).expect("pid fits"),
                PathBuf::from(n["log"].as_str().expect("log path")),
            )
        })
        .collect();
    assert_eq!(nodes.len(), 3, "{fleet_ready}");
    cleanup.nodes = nodes.iter().map(|(_, pid, _)| *pid).collect();
    // Logs live in <data root>/<node>/node.log.
    cleanup.data_root = nodes[0]
        .2
        .parent()
        .and_then(Path::parent)
        .map(Path::to_path_buf);
    for (name, pid, _) in &nodes {
        assert!(alive(*pid), "{name} (pid {pid}) is not running");
        let cmdline = std::fs::read(format!("/proc/{pid}/cmdline")).unwrap_or_default();
        let args: Vec<String> = cmdline
            .split(|b| *b == 0)
            .map(|a| String::from_utf8_lossy(a).into_owned())
            .collect();
        assert!(
            args.windows(2)
                .any(|w| w[0] == "--exit-with-parent" && w[1] == soak_pid.to_string()),
            "{name} was not started with --exit-with-parent {soak_pid}: {args:?}"
        );
    }

    // SIGKILL soak: no signal handler, no kill-on-drop, no shutdown path runs. It is not
    // reaped yet, so it lingers as a zombie while the nodes decide.
    kill(Pid::from_raw(soak_pid), Signal::SIGKILL).expect("SIGKILL soak");
    let deadline = Instant::now() + EXIT_DEADLINE;
    let mut left: Vec<&(String, i32, PathBuf)> = nodes.iter().collect();
    while !left.is_empty() && Instant::now() < deadline {
        std::thread::sleep(Duration::from_millis(50));
        left.retain(|(_, pid, _)| alive(*pid));
    }
    let orphans: Vec<String> = left
        .iter()
        .map(|(name, pid, _)| format!("{name} (pid {pid})"))
        .collect();
    assert!(
        orphans.is_empty(),
        "nodes outlived the SIGKILLed soak by {EXIT_DEADLINE:?}: {}",
        orphans.join(", ")
    );
    // They stopped cleanly, on their own: each logged why and removed its node.json.
    for (name, _, log) in &nodes {
        let text = std::fs::read_to_string(log).unwrap_or_default();
        assert!(
            text.contains("(--exit-with-parent)") && text.contains("shutting down"),
            "{name} did not log a watchdog shutdown:\n{text}"
        );
        let node_json = log.with_file_name(soak_api::NODE_INFO_FILE);
        assert!(
            !node_json.exists(),
            "{name} left {} (not a clean shutdown)",
            node_json.display()
        );
    }
}
