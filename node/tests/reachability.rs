//! Reachability on real processes: a bootstrap entry given as a host name (`localhost`, from
//! /etc/hosts — no DNS traffic) is resolved and joined; a node listening on 0.0.0.0 tells its
//! peers the `--advertise` address, and a third node that only heard of it through peer
//! exchange reaches it there.

mod common;

use std::time::Duration;

use common::{eventually, spawn};
use soak_api::PeerState;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_bootstrap_host_name_is_resolved_and_joined() {
    let dir = tempfile::tempdir().unwrap();
    let a = spawn(&dir.path().join("a"), &[]).await;
    let port = a.info.quic_addr.rsplit_once(':').unwrap().1.to_string();
    let pinned = format!("{}@localhost:{port}", a.info.peer_id);
    let b = spawn(&dir.path().join("b"), &["--bootstrap", &pinned]).await;
    assert!(eventually(Duration::from_secs(5), || b.ready()).await);
    let d = b.diagnostics().await;
    let seen = d
        .peers
        .iter()
        .find(|p| p.peer_id == a.info.peer_id)
        .expect("a in b's peers");
    assert_eq!(seen.state, PeerState::Established);
    let log = std::fs::read_to_string(b.dir.join("node.log")).unwrap();
    assert!(log.contains("bootstrap name resolved"), "{log}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_node_on_0_0_0_0_is_reached_at_its_advertised_address() {
    let dir = tempfile::tempdir().unwrap();
    // 127.0.0.3 is loopback too, and distinct from the 127.0.0.1 the connection comes from:
    // only the advertisement can tell peers about it.
    let a = spawn(
        &dir.path().join("a"),
        &["--listen", "0.0.0.0:0", "--advertise", "127.0.0.3:0"],
    )
    .await;
    let port = a.info.quic_addr.rsplit_once(':').unwrap().1.to_string();
    assert_eq!(a.info.quic_addr, format!("127.0.0.3:{port}"), "node.json");
    let via_lo = format!("127.0.0.1:{port}");
    let b = spawn(&dir.path().join("b"), &["--bootstrap", &via_lo]).await;
    assert!(eventually(Duration::from_secs(5), || b.ready()).await);
    let advertised = format!("127.0.0.3:{port}");
    let at = |d: &soak_api::Diagnostics| {
        d.peers
            .iter()
            .find(|p| p.peer_id == a.info.peer_id)
            .map(|p| (p.addr.clone(), p.state))
    };
    assert_eq!(
        at(&b.diagnostics().await).map(|x| x.0),
        Some(advertised.clone())
    );
    // C knows only B; it learns A's advertised address from B and connects to it there.
    let c = spawn(&dir.path().join("c"), &["--bootstrap", &b.info.quic_addr]).await;
    assert!(eventually(Duration::from_secs(5), || c.ready()).await);
    let r = c
        .dm(&a.info.peer_id, b"via the advertised address", None)
        .await;
    assert_eq!(r.outcome, soak_api::DmOutcome::Acked, "{r:?}");
    assert_eq!(
        at(&c.diagnostics().await),
        Some((advertised, PeerState::Established))
    );
}
