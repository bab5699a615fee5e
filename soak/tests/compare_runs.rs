//! `soak compare` acceptance on real runs: real `soak run`s of real `soak-node` processes on
//! loopback (3 nodes, 4 windows of 4 s — about 20 s each, run side by side).
//!
//! * two healthy runs of the same build: "no regression", exit 0;
//! * a candidate whose nodes carry a 20 ms delay on every link: "regression" on Phase A
//!   latency, naming the metric and the shift. The delay goes in through the nodes' own
//!   impairment API (`POST /v1/impairments`, every peer, expiring by itself after 2 minutes),
//!   applied by this test to the running `soak run`'s nodes as soon as its `fleet_ready`
//!   event names them (admin URL from the event, token from each node's data dir next to
//!   its log); the warm-up window absorbs the switch. The nodes, and with them the
//!   impairments, end with the run;
//! * a 2-node run against a 3-node run: refused (exit 64) with the reason.

mod support;

use std::io::{BufRead, BufReader, Read, Write};
use std::net::TcpStream;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use serde_json::Value;
use support::{node_bin, soak, soak_bin, texts};

/// One `soak run` in the background.
struct Run {
    child: Child,
    proof: PathBuf,
    stderr: PathBuf,
}

impl Run {
    fn start(dir: &Path, name: &str, nodes: &str, events: bool) -> Run {
        let proof = dir.join(name);
        let stderr = dir.join(format!("{name}.stderr"));
        let mut command = Command::new(soak_bin());
        command
            .args([
                "run",
                "--nodes",
                nodes,
                "--duration",
                "16s",
                "--interval",
                "4s",
                "--sample-interval",
                "500ms",
                "--label",
                name,
                "--seed",
                "7",
                "--proof-dir",
            ])
            .arg(&proof)
            .env("SOAK_NODE_BIN", node_bin())
            .env_remove("RUST_LOG")
            .stdin(Stdio::null())
            .stderr(std::fs::File::create(&stderr).expect("stderr file"));
        if events {
            command.args(["--events", "jsonl"]).stdout(Stdio::piped());
        } else {
            command.stdout(Stdio::null());
        }
        Run {
            child: command.spawn().expect("spawn soak run"),
            proof,
            stderr,
        }
    }

    /// Waits (bounded) for the run to end; kills it on overrun. Returns its exit code.
    fn wait(mut self, timeout: Duration) -> (Option<i32>, PathBuf) {
        let deadline = Instant::now() + timeout;
        loop {
            if let Some(status) = self.child.try_wait().expect("wait") {
                return (status.code(), self.proof);
            }
            if Instant::now() >= deadline {
                let _ = self.child.kill();
                let _ = self.child.wait();
                panic!(
                    "soak run {} overran {timeout:?}:\n{}",
                    self.proof.display(),
                    std::fs::read_to_string(&self.stderr).unwrap_or_default()
                );
            }
            std::thread::sleep(Duration::from_millis(100));
        }
    }
}

/// `POST /v1/impairments` with `body` to the admin API at `admin_url` (plain HTTP/1.1 on
/// loopback); returns the status code and body.
fn post_impairment(admin_url: &str, token: &str, body: &str) -> (u16, String) {
    let authority = admin_url
        .strip_prefix("http://")
        .expect("http admin URL")
        .trim_end_matches('/');
    assert!(
        authority.starts_with("127.0.0.1:"),
        "only loopback: {authority}"
    );
    let mut stream = TcpStream::connect(authority).expect("connect to the admin API");
    stream
        .set_read_timeout(Some(Duration::from_secs(10)))
        .expect("timeout");
    write!(
        stream,
        "POST /v1/impairments HTTP/1.1\r\nHost: {authority}\r\nAuthorization: Bearer {token}\r\n\
         Content-Type: application/json\r\nContent-Length: {}\r\nConnection: close\r\n\r\n{body}",
        body.len()
    )
    .expect("send");
    let mut response = String::new();
    let _ = stream.read_to_string(&mut response);
    let code = response
        .split_whitespace()
        .nth(1)
        .and_then(|c| c.parse().ok())
        .unwrap_or(0);
    let body = response
        .split_once("\r\n\r\n")
        .map(|(_, b)| b.to_string())
        .unwrap_or_default();
    (code, body)
}

/// Reads the run's events until `fleet_ready`, then puts a 20 ms delay on every link of every
/// node. Returns how many nodes were impaired; the rest of stdout is drained on a thread.
fn impair_every_link(run: &mut Run) -> usize {
    let stdout = run.child.stdout.take().expect("events on stdout");
    let mut lines = BufReader::new(stdout).lines();
    let deadline = Instant::now() + Duration::from_secs(60);
    let ready = loop {
        assert!(Instant::now() < deadline, "no fleet_ready within 60 s");
        let line = lines
            .next()
            .expect("the run ended before fleet_ready")
            .expect("read an event");
        let event: Value = serde_json::from_str(&line).expect("JSON event");
        if event["event"] == "fleet_ready" {
            break event;
        }
    };
    std::thread::spawn(move || for _ in lines {});
    let nodes = ready["nodes"].as_array().expect("nodes");
    for node in nodes {
        let url = node["admin_url"].as_str().expect("admin_url");
        let log = PathBuf::from(node["log"].as_str().expect("log of a spawned node"));
        let data_dir = log.parent().expect("data dir");
        let token = std::fs::read_to_string(data_dir.join(soak_api::ADMIN_TOKEN_FILE))
            .expect("admin token");
        let (code, body) = post_impairment(
            url,
            token.trim(),
            r#"{"delay_ms": 20, "jitter_ms": 0, "loss": 0.0, "partition": false, "expires_in_ms": 120000}"#,
        );
        assert_eq!(code, 200, "impairment refused by {url}: {body}");
        assert!(
            body.contains("\"delay_ms\":20"),
            "not active on {url}: {body}"
        );
    }
    nodes.len()
}

#[test]
fn compare_real_runs_healthy_impaired_and_different_sizes() {
    let tmp = tempfile::tempdir().expect("tmp");
    let base = Run::start(tmp.path(), "base", "3", false);
    let healthy = Run::start(tmp.path(), "healthy", "3", false);
    let mut impaired = Run::start(tmp.path(), "impaired", "3", true);
    let small = Run::start(tmp.path(), "small", "2", false);
    assert_eq!(impair_every_link(&mut impaired), 3);

    let limit = Duration::from_secs(150);
    let (base_code, base) = base.wait(limit);
    let (healthy_code, healthy) = healthy.wait(limit);
    let (_, impaired) = impaired.wait(limit);
    let (_, small) = small.wait(limit);
    assert_eq!(base_code, Some(0), "the base run is healthy (GO)");
    assert_eq!(healthy_code, Some(0), "the second healthy run is GO");

    let compare = |candidate: &Path| {
        let out = soak(&[
            "compare",
            &base.to_string_lossy(),
            &candidate.to_string_lossy(),
        ]);
        let (stdout, stderr) = texts(&out);
        (out.status.code(), stdout, stderr)
    };

    // Two healthy runs of the same build.
    let (code, stdout, stderr) = compare(&healthy);
    assert_eq!(code, Some(0), "healthy vs healthy:\n{stdout}\n{stderr}");
    assert!(stdout.contains("result: no regression"), "{stdout}");

    // Every link 20 ms slower: both directions of a DM (request and ACK) carry the delay.
    let (code, stdout, stderr) = compare(&impaired);
    assert_eq!(code, Some(1), "impaired:\n{stdout}\n{stderr}");
    let line = stdout
        .lines()
        .find(|l| l.starts_with("REGRESSION phase_a.latency"))
        .unwrap_or_else(|| panic!("phase_a.latency not named:\n{stdout}"));
    let shift: f64 = line
        .split("shift +")
        .nth(1)
        .and_then(|rest| rest.split(" ms").next())
        .and_then(|n| n.parse().ok())
        .unwrap_or_else(|| panic!("no shift in {line}"));
    assert!(
        (30.0..200.0).contains(&shift),
        "about 40 ms more per DM round trip, got {shift} ms: {line}"
    );
    assert!(
        stdout.contains("result: REGRESSION — phase_a.latency (+"),
        "{stdout}"
    );

    // A different fleet size is refused with the reason.
    let (code, stdout, stderr) = compare(&small);
    assert_eq!(code, Some(64), "{stdout}\n{stderr}");
    assert!(
        stderr.contains("different node counts: base 3 nodes, candidate 2 nodes"),
        "{stderr}"
    );
}
