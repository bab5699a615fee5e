//! Benchmark (not a test): the node's DM+ACK round trip on loopback against a raw quinn
//! bi-stream echo measured in the same run, and the idle RSS of one `soak-node` process.
//!
//! `cargo bench -p soak-node --bench dm_rtt` (set `DM_RTT_ITERS` to change the sample count).
//! Targets (docs/PERFORMANCE.md): p50 and p99 ratio node/raw ≤ 2.0; idle RSS ≤ 20 MB.

use std::sync::Arc;
use std::time::{Duration, Instant};

use soak_api::DmOutcome;
use soak_node::config::{Bootstrap, BootstrapAddr, Settings, Tuning};
use soak_node::identity::Identity;
use soak_node::shell::Node;
use soak_node::transport;

const PAYLOAD: usize = 64;

fn percentile(sorted: &[Duration], p: f64) -> Duration {
    if sorted.is_empty() {
        return Duration::ZERO;
    }
    let idx = ((sorted.len() as f64 - 1.0) * p).round() as usize;
    sorted[idx.min(sorted.len() - 1)]
}

fn bidi_transport() -> Arc<quinn::TransportConfig> {
    let mut t = quinn::TransportConfig::default();
    t.max_concurrent_bidi_streams(1024u32.into());
    Arc::new(t)
}

/// A raw quinn echo: server echoes each bi stream; returns a connected client connection.
async fn raw_echo() -> quinn::Connection {
    let tuning = Tuning::default();
    let server_id = Identity::ephemeral().expect("identity");
    let client_id = Identity::ephemeral().expect("identity");
    let mut server_cfg = transport::server_config(&server_id, &tuning).expect("server config");
    server_cfg.transport_config(bidi_transport());
    let server = quinn::Endpoint::server(server_cfg, "127.0.0.1:0".parse().expect("addr"))
        .expect("server endpoint");
    let addr = server.local_addr().expect("addr");
    tokio::spawn(async move {
        while let Some(incoming) = server.accept().await {
            tokio::spawn(async move {
                let Ok(conn) = incoming.await else { return };
                while let Ok((mut send, mut recv)) = conn.accept_bi().await {
                    tokio::spawn(async move {
                        if let Ok(buf) = recv.read_to_end(1 << 20).await {
                            let _ = send.write_all(&buf).await;
                            let _ = send.finish();
                        }
                    });
                }
            });
        }
    });
    let mut client_cfg =
        transport::client_config(&client_id, Some(server_id.peer_id), &tuning).expect("client");
    client_cfg.transport_config(bidi_transport());
    let client = quinn::Endpoint::client("127.0.0.1:0".parse().expect("addr")).expect("client");
    client
        .connect_with(client_cfg, addr, transport::SERVER_NAME)
        .expect("connect")
        .await
        .expect("handshake")
}

async fn raw_rtt(conn: &quinn::Connection, payload: &[u8]) -> Duration {
    let t = Instant::now();
    let (mut send, mut recv) = conn.open_bi().await.expect("open_bi");
    send.write_all(payload).await.expect("write");
    send.finish().expect("finish");
    let back = recv.read_to_end(1 << 20).await.expect("read");
    assert_eq!(back.len(), payload.len());
    t.elapsed()
}

async fn two_nodes(dir: &std::path::Path) -> (Node, Node) {
    let mut sa = Settings::new(&dir.join("a"));
    sa.tuning.rate_limit_per_sec = 1_000_000;
    sa.tuning.rate_limit_burst = 1_000_000;
    let a = Node::start_with_identity(sa.clone(), Arc::new(Identity::ephemeral().expect("id")))
        .await
        .expect("node a");
    let mut sb = sa;
    sb.data_dir = dir.join("b");
    sb.bootstrap = vec![Bootstrap {
        peer: Some(a.peer_id),
        addr: BootstrapAddr::Ip(a.shared().quic_addr),
    }];
    let b = Node::start_with_identity(sb, Arc::new(Identity::ephemeral().expect("id")))
        .await
        .expect("node b");
    let deadline = Instant::now() + Duration::from_secs(10);
    while a
        .shared()
        .established
        .load(std::sync::atomic::Ordering::Relaxed)
        == 0
    {
        assert!(Instant::now() < deadline, "nodes did not connect");
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    (a, b)
}

async fn node_rtt(a: &Node, b: &Node, payload: &[u8]) -> Duration {
    let t = Instant::now();
    let r = a
        .dm(
            b.peer_id,
            rand::random(),
            payload.to_vec(),
            Duration::from_secs(2),
        )
        .await;
    assert_eq!(r.outcome, DmOutcome::Acked, "{r:?}");
    t.elapsed()
}

fn vm_rss_kib(pid: u32) -> Option<u64> {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).ok()?;
    status
        .lines()
        .find(|l| l.starts_with("VmRSS:"))?
        .split_whitespace()
        .nth(1)?
        .parse()
        .ok()
}

fn idle_rss() -> Option<u64> {
    let dir = tempfile::tempdir().ok()?;
    let mut child = std::process::Command::new(env!("CARGO_BIN_EXE_soak-node"))
        .arg("run")
        .arg("--data-dir")
        .arg(dir.path())
        .stderr(std::process::Stdio::null())
        .spawn()
        .ok()?;
    let info = dir.path().join(soak_api::NODE_INFO_FILE);
    let deadline = Instant::now() + Duration::from_secs(10);
    while !info.exists() && Instant::now() < deadline {
        std::thread::sleep(Duration::from_millis(20));
    }
    // Let it settle into its idle state (a few maintenance ticks).
    std::thread::sleep(Duration::from_secs(3));
    let rss = vm_rss_kib(child.id());
    let _ = child.kill();
    let _ = child.wait();
    rss
}

fn main() {
    let _ = rustls::crypto::ring::default_provider().install_default();
    let iters: usize = std::env::var("DM_RTT_ITERS")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(3000);
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .expect("runtime");
    let dir = tempfile::tempdir().expect("tempdir");
    let (raw, node) = rt.block_on(async {
        let conn = raw_echo().await;
        let (a, b) = two_nodes(dir.path()).await;
        let payload = vec![0x5a; PAYLOAD];
        // Warm up both paths.
        for _ in 0..200 {
            raw_rtt(&conn, &payload).await;
            node_rtt(&a, &b, &payload).await;
        }
        // Interleave in blocks so drift (CPU frequency, other load) hits both equally.
        let mut raw = Vec::with_capacity(iters);
        let mut node = Vec::with_capacity(iters);
        let block = 100;
        while raw.len() < iters {
            for _ in 0..block {
                raw.push(raw_rtt(&conn, &payload).await);
            }
            for _ in 0..block {
                node.push(node_rtt(&a, &b, &payload).await);
            }
        }
        a.shutdown().await;
        b.shutdown().await;
        (raw, node)
    });
    let mut raw = raw;
    let mut node = node;
    raw.sort();
    node.sort();
    let (r50, r99) = (percentile(&raw, 0.50), percentile(&raw, 0.99));
    let (n50, n99) = (percentile(&node, 0.50), percentile(&node, 0.99));
    let ratio50 = n50.as_secs_f64() / r50.as_secs_f64().max(1e-9);
    let ratio99 = n99.as_secs_f64() / r99.as_secs_f64().max(1e-9);
    println!(
        "dm_rtt: {} samples each, {PAYLOAD}-byte payload, loopback",
        raw.len()
    );
    println!(
        "  raw quinn bi-stream echo   p50 {:>8.1} us   p99 {:>8.1} us",
        us(r50),
        us(r99)
    );
    println!(
        "  soak-node DM + ACK         p50 {:>8.1} us   p99 {:>8.1} us",
        us(n50),
        us(n99)
    );
    println!(
        "  ratio node/raw             p50 {ratio50:>8.2}      p99 {ratio99:>8.2}   (target <= 2.0)"
    );
    match idle_rss() {
        Some(kib) => println!(
            "idle_rss: {:.1} MB ({kib} KiB VmRSS, one node, no peers)   (target <= 20 MB)",
            kib as f64 / 1024.0
        ),
        None => println!("idle_rss: could not be measured (no /proc?)"),
    }
}

fn us(d: Duration) -> f64 {
    d.as_secs_f64() * 1e6
}
