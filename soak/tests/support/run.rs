//! Driving a real `soak run` from a test: spawn it with `--events jsonl`, read its event
//! stream line by line, wait (bounded) for events, signal it, and read its proof back.

#![allow(dead_code)]

use std::io::{BufRead, BufReader};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, ExitStatus, Stdio};
use std::sync::mpsc;
use std::time::{Duration, Instant};

use serde_json::Value;

use super::{node_bin, soak_bin};

/// `soak run ARGS` with the real node binary.
pub fn soak_run(args: &[&str]) -> Command {
    let mut command = Command::new(soak_bin());
    command
        .arg("run")
        .args(args)
        .env("SOAK_NODE_BIN", node_bin())
        .env_remove("RUST_LOG");
    command
}

/// A running `soak run` whose stdout is read line by line on a thread.
pub struct Running {
    pub child: Child,
    lines: mpsc::Receiver<String>,
    pub seen: Vec<String>,
    stderr: PathBuf,
}

impl Running {
    /// Spawns `command`; stderr goes to the file `stderr`.
    pub fn start(mut command: Command, stderr: PathBuf) -> Running {
        let err = std::fs::File::create(&stderr).expect("stderr file");
        let mut child = command
            .stdout(Stdio::piped())
            .stderr(Stdio::from(err))
            .spawn()
            .expect("spawn soak");
        let stdout = child.stdout.take().expect("stdout");
        let (tx, rx) = mpsc::channel();
        std::thread::spawn(move || {
            for line in BufReader::new(stdout).lines() {
                let Ok(line) = line else { break };
                if tx.send(line).is_err() {
                    break;
                }
            }
        });
        Running {
            child,
            lines: rx,
            seen: Vec::new(),
            stderr,
        }
    }

    /// The pid of `soak`.
    pub fn pid(&self) -> i32 {
        i32::try_from(self.child.id()).expect("pid fits")
    }

    /// Reads stdout until a JSON event satisfies `pred`, bounded by `timeout`.
    pub fn wait_event(&mut self, timeout: Duration, pred: impl Fn(&Value) -> bool) -> Value {
        let deadline = Instant::now() + timeout;
        loop {
            let left = deadline.saturating_duration_since(Instant::now());
            match self.lines.recv_timeout(left) {
                Ok(line) => {
                    self.seen.push(line.clone());
                    if let Ok(value) = serde_json::from_str::<Value>(&line)
                        && pred(&value)
                    {
                        return value;
                    }
                }
                Err(_) => {
                    let _ = self.child.kill();
                    panic!(
                        "event not seen within {timeout:?}; stdout so far:\n{}\nstderr:\n{}",
                        self.seen.join("\n"),
                        std::fs::read_to_string(&self.stderr).unwrap_or_default()
                    );
                }
            }
        }
    }

    /// Waits for exit (bounded) and drains stdout.
    pub fn finish(mut self, timeout: Duration) -> (ExitStatus, Vec<String>, String) {
        let deadline = Instant::now() + timeout;
        let status = loop {
            if let Some(status) = self.child.try_wait().expect("wait") {
                break status;
            }
            if Instant::now() >= deadline {
                let _ = self.child.kill();
                panic!(
                    "soak did not exit within {timeout:?}; stderr:\n{}",
                    std::fs::read_to_string(&self.stderr).unwrap_or_default()
                );
            }
            std::thread::sleep(Duration::from_millis(50));
        };
        while let Ok(line) = self.lines.recv_timeout(Duration::from_secs(2)) {
            self.seen.push(line);
        }
        let stderr = std::fs::read_to_string(&self.stderr).unwrap_or_default();
        (status, std::mem::take(&mut self.seen), stderr)
    }
}

impl Drop for Running {
    fn drop(&mut self) {
        // A failed assertion must not leave `soak` (and so its nodes) running.
        if let Ok(None) = self.child.try_wait() {
            let _ = self.child.kill();
            let _ = self.child.wait();
        }
    }
}

/// Node name → pid from a `fleet_ready` event.
pub fn pids_of(fleet_ready: &Value) -> Vec<(String, i32)> {
    fleet_ready["nodes"]
        .as_array()
        .expect("nodes")
        .iter()
        .map(|n| {
            (
                n["name"].as_str().expect("name").to_owned(),
                i32::try_from(n["pid"].as_u64().expect("pid recorded")).expect("pid fits"),
            )
        })
        .collect()
}

/// Whether `pid` is a live process (a zombie is not).
pub fn pid_alive(pid: i32) -> bool {
    match std::fs::read_to_string(format!("/proc/{pid}/stat")) {
        Ok(stat) => !stat
            .rsplit_once(')')
            .is_some_and(|(_, rest)| rest.trim_start().starts_with('Z')),
        Err(_) => false,
    }
}

/// Every `windows/NNN/window.json` of a proof, in order.
pub fn window_records(proof: &Path) -> Vec<Value> {
    let mut dirs: Vec<PathBuf> = std::fs::read_dir(proof.join("windows"))
        .expect("windows dir")
        .map(|e| e.expect("entry").path())
        .collect();
    dirs.sort();
    dirs.iter()
        .map(|d| {
            serde_json::from_str(
                &std::fs::read_to_string(d.join("window.json")).expect("window.json"),
            )
            .expect("window json")
        })
        .collect()
}

/// The proof's fault journal, one value per line.
pub fn fault_journal(proof: &Path) -> Vec<Value> {
    std::fs::read_to_string(proof.join("faults/journal.jsonl"))
        .expect("faults/journal.jsonl")
        .lines()
        .map(|l| serde_json::from_str(l).expect("journal line is JSON"))
        .collect()
}

/// The steps the journal records for fault instance `fault`, in order.
pub fn steps_of(journal: &[Value], fault: &str) -> Vec<String> {
    journal
        .iter()
        .filter(|e| e["fault"] == fault)
        .map(|e| e["step"].as_str().unwrap_or_default().to_owned())
        .collect()
}

/// The proof's `verdict.json`.
pub fn verdict_of(proof: &Path) -> Value {
    serde_json::from_str(&std::fs::read_to_string(proof.join("verdict.json")).expect("verdict"))
        .expect("verdict json")
}

/// Every bar result of the verdict (windows and soak level).
pub fn all_bars(verdict: &Value) -> Vec<Value> {
    let mut bars: Vec<Value> = verdict["windows"]
        .as_array()
        .into_iter()
        .flatten()
        .flat_map(|w| w["bars"].as_array().cloned().unwrap_or_default())
        .collect();
    bars.extend(verdict["soak_bars"].as_array().cloned().unwrap_or_default());
    bars
}
