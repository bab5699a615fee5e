//! Runner benchmarks against real `soak-node` processes on loopback (see docs/PERFORMANCE.md,
//! "Runner: Phase A and sampler"). Each figure is printed with a reference measured in the same
//! run, so the ratio stays meaningful on a noisy shared machine:
//!
//! - Phase A wall time for 6 and 50 nodes, against `one DM round trip × pairs / concurrency`
//!   (the time a perfectly parallel orchestrator would need at the measured single-DM cost);
//! - one sampler round over 50 nodes, against one round of raw `GET /healthz` to every node.
//!
//! Run: `cargo build -p soak-node && cargo bench -p soak-scenarios --bench runner`
//! (`SOAK_NODE_BIN` overrides the node binary; `BENCH_LARGE=20` changes the large mesh size).

use std::path::{Path, PathBuf};
use std::process::Stdio;
use std::time::{Duration, Instant};

use base64::Engine;
use soak_api::{DmRequest, NodeInfo};
use soak_scenarios::phase_a::{PhaseA, PhaseAConfig};
use soak_scenarios::sampler::sample_round;
use soak_scenarios::{HttpNode, NodeApi, NodeEndpoint, http_client};
use tokio::process::{Child, Command};

fn node_bin() -> PathBuf {
    if let Some(path) = std::env::var_os("SOAK_NODE_BIN") {
        return PathBuf::from(path);
    }
    let target = std::env::var_os("CARGO_TARGET_DIR")
        .map(PathBuf::from)
        .unwrap_or_else(|| Path::new(env!("CARGO_MANIFEST_DIR")).join("../target"));
    for profile in ["release", "debug"] {
        let path = target.join(profile).join("soak-node");
        if path.is_file() {
            return path;
        }
    }
    eprintln!("soak-node not found: cargo build -p soak-node (or set SOAK_NODE_BIN)");
    std::process::exit(69);
}

struct Mesh {
    children: Vec<Child>,
    nodes: Vec<HttpNode>,
    _dir: tempfile::TempDir,
}

impl Mesh {
    async fn start(n: usize, client: &reqwest::Client) -> Result<Mesh, String> {
        let bin = node_bin();
        let dir = tempfile::tempdir().map_err(|e| e.to_string())?;
        let mut children = Vec::new();
        let mut endpoints = Vec::new();
        let mut bootstrap = String::new();
        for i in 0..n {
            let data = dir.path().join(format!("node-{i}"));
            std::fs::create_dir_all(&data).map_err(|e| e.to_string())?;
            let mut cmd = Command::new(&bin);
            cmd.arg("run")
                .arg("--data-dir")
                .arg(&data)
                .args(["--listen", "127.0.0.1:0", "--admin", "127.0.0.1:0"])
                .stdin(Stdio::null())
                .stdout(Stdio::null())
                .stderr(Stdio::null())
                .kill_on_drop(true);
            if i > 0 {
                cmd.arg("--bootstrap").arg(&bootstrap);
            }
            children.push(cmd.spawn().map_err(|e| e.to_string())?);
            if i == 0 {
                let info = wait_info(&data).await?.0;
                bootstrap = format!("{}@{}", info.peer_id, info.quic_addr);
            }
        }
        for i in 0..n {
            let (info, token) = wait_info(&dir.path().join(format!("node-{i}"))).await?;
            endpoints.push(NodeEndpoint {
                name: format!("node-{i}"),
                admin_url: format!("http://{}", info.admin_addr),
                token,
                peer_id: info.peer_id,
            });
        }
        let nodes: Vec<HttpNode> = endpoints
            .into_iter()
            .map(|e| HttpNode::new(e, client.clone()))
            .collect();
        let deadline = Instant::now() + Duration::from_secs(120);
        loop {
            let diags = futures::future::join_all(nodes.iter().map(|n| n.diagnostics())).await;
            let meshed = diags
                .iter()
                .all(|d| d.as_ref().is_ok_and(|d| d.peers.len() >= n - 1));
            if meshed {
                break;
            }
            if Instant::now() > deadline {
                return Err(format!("{n}-node mesh did not form within 120 s"));
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
        Ok(Mesh {
            children,
            nodes,
            _dir: dir,
        })
    }

    async fn stop(mut self) {
        for child in &mut self.children {
            let _ = child.kill().await;
        }
    }
}

async fn wait_info(dir: &Path) -> Result<(NodeInfo, String), String> {
    let deadline = Instant::now() + Duration::from_secs(60);
    loop {
        let info = std::fs::read_to_string(dir.join(soak_api::NODE_INFO_FILE))
            .ok()
            .and_then(|t| serde_json::from_str::<NodeInfo>(&t).ok());
        let token = std::fs::read_to_string(dir.join(soak_api::ADMIN_TOKEN_FILE)).ok();
        if let (Some(info), Some(token)) = (info, token) {
            return Ok((info, token.trim().to_owned()));
        }
        if Instant::now() > deadline {
            return Err(format!("no node.json in {}", dir.display()));
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

fn median(mut values: Vec<Duration>) -> Duration {
    values.sort_unstable();
    values[values.len() / 2]
}

/// Median of sequential single DM round trips node-0 → node-1 (HTTP + QUIC + ACK).
async fn single_dm(nodes: &[HttpNode], reps: usize) -> Duration {
    let mut times = Vec::new();
    for _ in 0..reps {
        let id: [u8; 16] = rand::random();
        let request = DmRequest {
            to: nodes[1].peer_id().to_owned(),
            payload_b64: base64::engine::general_purpose::STANDARD.encode([7u8; 64]),
            request_id: Some(hex::encode(id)),
            timeout_ms: Some(2_000),
        };
        let start = Instant::now();
        let _ = nodes[0].send_dm(&request).await;
        times.push(start.elapsed());
    }
    median(times)
}

/// The same N·(N−1) DMs with the same concurrency, sent raw: no inbox confirmation, no
/// bookkeeping. Phase A over this is the cost of the workload's own logic.
async fn raw_dm_burst(nodes: &[HttpNode], concurrency: usize) -> Duration {
    use futures::StreamExt;
    let pairs = soak_scenarios::phase_a::pair_order(nodes.len());
    let start = Instant::now();
    futures::stream::iter(pairs)
        .map(|(from, to)| {
            let id: [u8; 16] = rand::random();
            let request = DmRequest {
                to: nodes[to].peer_id().to_owned(),
                payload_b64: base64::engine::general_purpose::STANDARD.encode([7u8; 64]),
                request_id: Some(hex::encode(id)),
                timeout_ms: Some(2_000),
            };
            async move {
                let _ = nodes[from].send_dm(&request).await;
            }
        })
        .buffer_unordered(concurrency)
        .collect::<Vec<()>>()
        .await;
    start.elapsed()
}

async fn bench_phase_a(n: usize, client: &reqwest::Client, reps: usize) {
    let mesh = match Mesh::start(n, client).await {
        Ok(mesh) => mesh,
        Err(err) => {
            println!("phase_a/{n}: mesh start failed: {err}");
            return;
        }
    };
    let config = PhaseAConfig::default();
    let pairs = n * (n - 1);
    let mut phase = PhaseA::new();
    // One warm-up matrix (connections, caches), then measured ones.
    let _ = phase.run(&mesh.nodes, config, 0).await;
    let mut walls = Vec::new();
    let mut delivered = 0;
    for _ in 0..reps {
        let start = Instant::now();
        let result = phase.run(&mesh.nodes, config, 0).await;
        walls.push(start.elapsed());
        delivered = result.pairs.iter().filter(|p| p.delivered).count();
    }
    let wall = median(walls);
    let mut raws = Vec::new();
    for _ in 0..reps {
        raws.push(raw_dm_burst(&mesh.nodes, config.concurrency).await);
    }
    let raw = median(raws);
    let dm = single_dm(&mesh.nodes, 20).await;
    let reference = dm.mul_f64(pairs as f64 / config.concurrency.min(pairs) as f64);
    println!(
        "phase_a/{n}: {pairs} pairs, {delivered} delivered, wall {:.1} ms (median of {reps}); \
         reference single DM {:.2} ms × {pairs}/{} = {:.1} ms; ratio {:.2}; \
         raw DM burst (same pairs, no confirmation) {:.1} ms; ratio {:.2}",
        wall.as_secs_f64() * 1e3,
        dm.as_secs_f64() * 1e3,
        config.concurrency.min(pairs),
        reference.as_secs_f64() * 1e3,
        wall.as_secs_f64() / reference.as_secs_f64().max(1e-9),
        raw.as_secs_f64() * 1e3,
        wall.as_secs_f64() / raw.as_secs_f64().max(1e-9),
    );
    if n >= 50 {
        bench_sampler(&mesh.nodes, client).await;
    }
    mesh.stop().await;
}

async fn bench_sampler(nodes: &[HttpNode], client: &reqwest::Client) {
    let mut rounds = Vec::new();
    let mut healthz = Vec::new();
    let mut missing = 0;
    for _ in 0..10 {
        let start = Instant::now();
        let round = sample_round(nodes, 0).await;
        rounds.push(start.elapsed());
        missing = round
            .samples
            .iter()
            .filter(|(_, s)| matches!(s.outcome, soak_gates::model::SampleOutcome::Missing { .. }))
            .count();
        let start = Instant::now();
        let _ = futures::future::join_all(nodes.iter().map(|n| {
            client
                .get(format!("{}/healthz", n.endpoint().admin_url))
                .send()
        }))
        .await;
        healthz.push(start.elapsed());
    }
    let (round, reference) = (median(rounds), median(healthz));
    println!(
        "sampler/{}: round {:.1} ms (median of 10, {missing} missing); reference raw /healthz \
         round {:.1} ms; ratio {:.2}",
        nodes.len(),
        round.as_secs_f64() * 1e3,
        reference.as_secs_f64() * 1e3,
        round.as_secs_f64() / reference.as_secs_f64().max(1e-9),
    );
}

fn main() {
    let _ = rustls::crypto::ring::default_provider().install_default();
    let runtime = match tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
    {
        Ok(rt) => rt,
        Err(err) => {
            eprintln!("runtime: {err}");
            std::process::exit(69);
        }
    };
    let large: usize = std::env::var("BENCH_LARGE")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(50);
    runtime.block_on(async {
        let client = match http_client(Duration::from_secs(10)) {
            Ok(client) => client,
            Err(err) => {
                eprintln!("client: {err}");
                return;
            }
        };
        bench_phase_a(6, &client, 5).await;
        bench_phase_a(large, &client, 3).await;
    });
}
