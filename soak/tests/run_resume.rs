//! `soak run --resume DIR` on real processes: a real `soak run` of 6 short windows over a real
//! 3-node local mesh is SIGKILLed (or sent SIGINT) in window 3; `soak run --resume` must run
//! windows 3–5 into the same proof, the proof must verify and re-score to the same verdict,
//! window 3's partial evidence must be a gap judged UNKNOWN (never a pass, never a window), and
//! no node of either segment may be left running. About 25 s per case.

use std::path::Path;
use std::process::Command;
use std::time::{Duration, Instant};

use nix::sys::signal::{Signal, kill};
use nix::unistd::Pid;
use serde_json::Value;

mod support;
use support::run::{Running, pid_alive, pids_of, soak_run, verdict_of};
use support::soak_bin;

const INTERVAL_MS: u64 = 3_000;

/// Kills (by pid) any node the test saw that is still alive, whatever the test's outcome.
struct Nodes(Vec<i32>);

impl Drop for Nodes {
    fn drop(&mut self) {
        for &pid in &self.0 {
            if pid_alive(pid) {
                let _ = kill(Pid::from_raw(pid), Signal::SIGKILL);
            }
        }
    }
}

fn wait_gone(pids: &[(String, i32)], within: Duration) -> Vec<String> {
    let deadline = Instant::now() + within;
    loop {
        let left: Vec<String> = pids
            .iter()
            .filter(|(_, pid)| pid_alive(*pid))
            .map(|(name, pid)| format!("{name} (pid {pid})"))
            .collect();
        if left.is_empty() || Instant::now() >= deadline {
            return left;
        }
        std::thread::sleep(Duration::from_millis(50));
    }
}

fn soak(args: &[&str], proof: &Path) -> std::process::Output {
    Command::new(soak_bin())
        .args(args)
        .arg(proof)
        .output()
        .expect("run soak")
}

fn manifest_status(proof: &Path) -> String {
    let text = std::fs::read_to_string(proof.join("manifest.json")).expect("manifest");
    let manifest: Value = serde_json::from_str(&text).expect("manifest json");
    manifest["status"].as_str().unwrap_or_default().to_owned()
}

fn interrupt_in_window_3_then_resume(signal: Signal) {
    let dir = tempfile::tempdir().expect("tempdir");
    let proof = dir.path().join("proof");
    let proof_arg = proof.display().to_string();
    let mut first = Running::start(
        {
            let mut c = soak_run(&[
                "--nodes",
                "3",
                "--duration",
                "18s",
                "--interval",
                "3s",
                "--sample-interval",
                "500ms",
                "--scenarios",
                "baseline",
                "--events",
                "jsonl",
                "--seed",
                "5",
                "--label",
                "resume",
                "--proof-dir",
                &proof_arg,
            ]);
            c.stdin(std::process::Stdio::null());
            c
        },
        dir.path().join("first.stderr"),
    );
    let ready = first.wait_event(Duration::from_secs(60), |e| e["event"] == "fleet_ready");
    let first_nodes = pids_of(&ready);
    let mut guard = Nodes(first_nodes.iter().map(|(_, p)| *p).collect());
    first.wait_event(Duration::from_secs(60), |e| {
        e["event"] == "window_started" && e["window"] == 3
    });
    // Window 3 has evidence of its own (a matrix) when the run is cut.
    first.wait_event(Duration::from_secs(10), |e| {
        e["event"] == "phase_a_finished" && e["window"] == 3
    });
    kill(Pid::from_raw(first.pid()), signal).expect("signal soak");
    let (status, seen, stderr) = first.finish(Duration::from_secs(60));
    // Normally window 3; on a loaded machine the signal may land just after its boundary,
    // and then window 4 is the one cut short.
    let starts: Vec<(u64, u64)> = seen
        .iter()
        .filter_map(|l| serde_json::from_str::<Value>(l).ok())
        .filter(|e| e["event"] == "window_started")
        .filter_map(|e| Some((e["window"].as_u64()?, e["at_ms"].as_u64()?)))
        .collect();
    let (lost_index, lost_from) = *starts.last().expect("windows started");
    assert!(lost_index >= 3, "{starts:?}");
    use std::os::unix::process::ExitStatusExt;
    match signal {
        Signal::SIGKILL => assert_eq!(status.signal(), Some(9), "{stderr}"),
        _ => assert_eq!(status.code(), Some(130), "{stderr}"),
    }
    // The first segment's nodes are gone on their own (SIGKILL: their --exit-with-parent
    // watchdog) or were stopped by soak (SIGINT): nothing is re-attached.
    let left = wait_gone(&first_nodes, Duration::from_secs(5));
    assert!(
        left.is_empty(),
        "nodes outlived the first segment: {left:?}"
    );
    match signal {
        Signal::SIGKILL => assert_eq!(manifest_status(&proof), "running"),
        _ => {
            assert_eq!(manifest_status(&proof), "interrupted");
            // The partial window was recorded (and judged) by the interrupted run.
            assert!(
                proof
                    .join(format!("windows/{lost_index:03}/window.json"))
                    .is_file()
            );
        }
    }

    // Flags that would change the plan are refused, and nothing is touched.
    let refused = Command::new(soak_bin())
        .args(["run", "--resume", &proof_arg, "--interval", "5s"])
        .output()
        .expect("soak run --resume --interval");
    assert_eq!(refused.status.code(), Some(64));
    assert!(
        String::from_utf8_lossy(&refused.stderr).contains("--interval would change it"),
        "{}",
        String::from_utf8_lossy(&refused.stderr)
    );

    let mut second = Running::start(
        {
            let mut c = soak_run(&["--resume", &proof_arg, "--events", "jsonl"]);
            c.stdin(std::process::Stdio::null());
            c
        },
        dir.path().join("second.stderr"),
    );
    let resumed = second.wait_event(Duration::from_secs(30), |e| e["event"] == "resumed");
    let record = &resumed["record"];
    assert_eq!(record["next_window"], lost_index, "{resumed}");
    assert_eq!(record["lost"]["index"], lost_index, "{resumed}");
    assert_eq!(
        record["previous_status"],
        if signal == Signal::SIGKILL {
            "running"
        } else {
            "interrupted"
        }
    );
    let resumed_at = record["at_ms"].as_u64().expect("at_ms");
    let ready = second.wait_event(Duration::from_secs(60), |e| e["event"] == "fleet_ready");
    let second_nodes = pids_of(&ready);
    guard.0.extend(second_nodes.iter().map(|(_, p)| *p));
    let (status, lines, stderr) = second.finish(Duration::from_secs(90));
    let ended: Vec<u64> = lines
        .iter()
        .filter_map(|l| serde_json::from_str::<Value>(l).ok())
        .filter(|e| e["event"] == "window_ended")
        .filter_map(|e| e["record"]["index"].as_u64())
        .collect();
    assert_eq!(
        ended,
        (lost_index..6).collect::<Vec<_>>(),
        "the resume runs the lost window and the rest; stderr:\n{stderr}"
    );
    assert_eq!(
        status.code(),
        Some(0),
        "a healthy resumed soak is GO; stderr:\n{stderr}"
    );
    let left = wait_gone(&second_nodes, Duration::from_secs(5));
    assert!(left.is_empty(), "nodes outlived the resumed run: {left:?}");
    assert!(
        !dir.path().join(".proof.nodes").exists(),
        "the nodes' data dirs are removed once the run completed"
    );

    // The proof verifies, and a re-score reproduces the stored verdict byte for byte.
    let verify = soak(&["verify"], &proof);
    assert_eq!(
        verify.status.code(),
        Some(0),
        "{}",
        String::from_utf8_lossy(&verify.stdout)
    );
    let out = dir.path().join("rescored");
    let score = Command::new(soak_bin())
        .args(["score", &proof_arg, "--out"])
        .arg(&out)
        .output()
        .expect("soak score");
    assert_eq!(score.status.code(), Some(0));
    assert_eq!(
        std::fs::read(proof.join("verdict.json")).expect("stored verdict"),
        std::fs::read(out.join("verdict.json")).expect("re-scored verdict"),
        "soak score must reproduce the resumed run's verdict"
    );

    // Window 3's partial evidence is a gap judged UNKNOWN, never a window and never a pass.
    let verdict = verdict_of(&proof);
    let lost = &verdict["interruptions"][0];
    assert_eq!(lost["window"], lost_index, "{verdict}");
    assert_eq!(lost["verdict"], "UNKNOWN");
    assert_eq!(lost["from_ms"].as_u64(), Some(lost_from));
    assert_eq!(lost["to_ms"].as_u64(), Some(resumed_at));
    let windows = verdict["windows"].as_array().expect("windows");
    assert_eq!(
        windows
            .iter()
            .map(|w| w["index"].as_u64().unwrap_or(99))
            .collect::<Vec<_>>(),
        [0, 1, 2, 3, 4, 5]
    );
    for w in windows {
        let (start, end) = (
            w["start_ms"].as_u64().unwrap_or(0),
            w["end_ms"].as_u64().unwrap_or(0),
        );
        assert!(
            end <= lost_from || start >= resumed_at,
            "window {} overlaps the lost span: {w}",
            w["index"]
        );
    }
    assert!(windows[lost_index as usize]["start_ms"].as_u64() >= Some(resumed_at));
    let continuity = verdict["soak_bars"]
        .as_array()
        .expect("soak bars")
        .iter()
        .find(|b| b["bar"] == "continuity")
        .expect("a resumed run has the continuity bar");
    assert_eq!(continuity["verdict"], "GO", "{continuity}");
    if signal == Signal::SIGINT {
        // The partial record is kept aside as evidence, not as the window.
        let text =
            std::fs::read_to_string(proof.join(format!("windows/{lost_index:03}/lost-1.json")))
                .expect("lost");
        let partial: Value = serde_json::from_str(&text).expect("json");
        let span =
            partial["end_ms"].as_u64().unwrap_or(0) - partial["start_ms"].as_u64().unwrap_or(0);
        assert!(span < INTERVAL_MS, "{partial}");
    }
    let summary = std::fs::read_to_string(proof.join("summary.md")).expect("summary.md");
    assert!(summary.contains("Resumed"), "{summary}");

    // Both segments' samples are in the same compact, appended samples/<node>.smp files and
    // decode whole (a SIGKILL's torn last record was cut before the resume appended).
    let stored = soak_proofs::read(&proof).expect("the resumed proof reads");
    assert!(stored.warnings.is_empty(), "{:?}", stored.warnings);
    for node in stored.meta.nodes.iter().map(|n| &n.name) {
        assert!(
            proof.join(format!("samples/{node}.smp")).is_file(),
            "{node} has no compact sample file"
        );
        let samples = &stored.observations.samples[node];
        assert!(
            samples.iter().any(|s| s.at_ms < lost_from)
                && samples.iter().any(|s| s.at_ms > resumed_at),
            "{node}: samples of both segments"
        );
        assert!(
            samples.windows(2).all(|w| w[0].at_ms <= w[1].at_ms),
            "{node}: in order"
        );
    }
}

#[test]
fn sigkilled_run_resumes_into_the_same_proof() {
    interrupt_in_window_3_then_resume(Signal::SIGKILL);
}

#[test]
fn interrupted_run_resumes_into_the_same_proof() {
    interrupt_in_window_3_then_resume(Signal::SIGINT);
}
