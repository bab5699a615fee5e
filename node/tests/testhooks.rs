//! The test-only misbehaviours the orchestrator's bars are proven against, on real processes:
//! `--test-rejoin-delay-ms` (a restarted node that stays out of the mesh for a while) and
//! `--test-leak-bytes-per-sec` / `--test-leak-fds-per-sec` (a node that leaks steadily).

mod common;

use std::time::{Duration, Instant};

use common::{eventually, spawn};
use soak_api::{Readiness, counters as c, gauges as g};

const CHECK: &str = "test_rejoin_delay_elapsed";

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_restart_with_a_rejoin_delay_stays_out_of_the_mesh_until_it_elapses() {
    let dir = tempfile::tempdir().unwrap();
    let a = spawn(&dir.path().join("a"), &[]).await;
    let b_dir = dir.path().join("b");
    let args = [
        "--bootstrap",
        &a.info.quic_addr,
        "--test-rejoin-delay-ms",
        "1500",
    ];
    // First start: the data dir held no identity, so the hook does nothing.
    let mut b = spawn(&b_dir, &args).await;
    assert!(eventually(Duration::from_secs(5), || b.ready()).await);
    let r: Readiness = b.get_json("/readyz").await;
    assert!(!r.checks.contains_key(CHECK), "{r:?}");
    b.kill();
    drop(b);

    // Restart with the same data dir: out of the mesh for 1.5 s, admin API up meanwhile.
    let spawned = Instant::now();
    let b = spawn(&b_dir, &args).await;
    let held = b.get("/readyz").await;
    assert_eq!(held.status(), 503);
    let r: Readiness = held.json().await.unwrap();
    assert_eq!(r.checks.get(CHECK), Some(&false), "{r:?}");
    assert_eq!(r.checks.get("bootstrap_peer_established"), Some(&false));
    let d = b.diagnostics().await;
    assert_eq!(d.gauges[g::PEERS_ESTABLISHED], 0.0);
    assert_eq!(d.counters[c::CONNECTIONS_ESTABLISHED], 0);

    assert!(eventually(Duration::from_secs(10), || b.ready()).await);
    assert!(
        spawned.elapsed() >= Duration::from_millis(1500),
        "ready after {:?}, before the delay",
        spawned.elapsed()
    );
    let r: Readiness = b.get_json("/readyz").await;
    assert_eq!(r.checks.get(CHECK), Some(&true), "{r:?}");
    // Back in the mesh: both sides see each other.
    assert!(
        eventually(Duration::from_secs(5), || async {
            a.diagnostics().await.gauges[g::PEERS_ESTABLISHED] >= 1.0
        })
        .await
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn leak_hooks_grow_resident_memory_and_open_fds_in_diagnostics() {
    let dir = tempfile::tempdir().unwrap();
    let n = spawn(
        &dir.path().join("n"),
        &[
            "--test-leak-bytes-per-sec",
            "33554432",
            "--test-leak-fds-per-sec",
            "100",
        ],
    )
    .await;
    let first = n.diagnostics().await;
    let rss0 = first.gauges[g::PROCESS_RESIDENT_MEMORY_BYTES];
    let fds0 = first.gauges[g::PROCESS_OPEN_FDS];
    for name in g::PROCESS {
        assert!(first.gauges.contains_key(name), "{name} missing");
    }
    let grew = eventually(Duration::from_secs(10), || async {
        let d = n.diagnostics().await;
        d.gauges[g::PROCESS_RESIDENT_MEMORY_BYTES] >= rss0 + 40.0 * 1024.0 * 1024.0
            && d.gauges[g::PROCESS_OPEN_FDS] >= fds0 + 100.0
    })
    .await;
    let last = n.diagnostics().await;
    assert!(
        grew,
        "rss {rss0} -> {}, fds {fds0} -> {}",
        last.gauges[g::PROCESS_RESIDENT_MEMORY_BYTES],
        last.gauges[g::PROCESS_OPEN_FDS]
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn without_leak_hooks_the_process_figures_hold_steady() {
    let dir = tempfile::tempdir().unwrap();
    let n = spawn(&dir.path().join("n"), &[]).await;
    let first = n.diagnostics().await;
    tokio::time::sleep(Duration::from_millis(1500)).await;
    let last = n.diagnostics().await;
    let fds = |d: &soak_api::Diagnostics| d.gauges[g::PROCESS_OPEN_FDS];
    assert!(
        fds(&last) <= fds(&first) + 5.0,
        "{} -> {}",
        fds(&first),
        fds(&last)
    );
    let rss = |d: &soak_api::Diagnostics| d.gauges[g::PROCESS_RESIDENT_MEMORY_BYTES];
    assert!(
        rss(&last) < rss(&first) + 16.0 * 1024.0 * 1024.0,
        "{} -> {}",
        rss(&first),
        rss(&last)
    );
}
