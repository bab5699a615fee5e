//! Overlay hygiene on real processes over loopback QUIC: a peer that sends garbage frames is
//! banned (listed in diagnostics and `/v1/bans`, refused early, lifted by the admin API); the
//! inbound connection cap holds and sheds with ERR_LOAD; a DM sent right after `/readyz`
//! between two leaves that never met is acked exactly once (discovery through the hub).

mod common;

use std::net::SocketAddr;
use std::time::Duration;

use common::{eventually, spawn};
use soak_api::{Ban, DmOutcome, counters as c};
use soak_node::proto::wire::Frame;

/// A hand-rolled peer: real QUIC + TLS with its own identity, the node's hello, then whatever
/// the test writes on its stream.
struct RawPeer {
    endpoint: quinn::Endpoint,
    id: soak_node::identity::Identity,
}

impl RawPeer {
    fn new() -> RawPeer {
        let _ = rustls::crypto::ring::default_provider().install_default();
        RawPeer {
            endpoint: quinn::Endpoint::client("127.0.0.1:0".parse().unwrap()).unwrap(),
            id: soak_node::identity::Identity::ephemeral().unwrap(),
        }
    }

    /// Connect and exchange hellos; `Err` when the node refuses or closes the connection.
    async fn join(
        &self,
        node: SocketAddr,
    ) -> Result<(quinn::Connection, quinn::SendStream), String> {
        let tuning = soak_node::config::Tuning::default();
        let cfg = soak_node::transport::client_config(&self.id, None, &tuning)
            .map_err(|e| e.to_string())?;
        let conn = self
            .endpoint
            .connect_with(cfg, node, "soak-node")
            .map_err(|e| e.to_string())?
            .await
            .map_err(|e| e.to_string())?;
        let mut send = conn.open_uni().await.map_err(|e| e.to_string())?;
        let hello = Frame::Hello {
            instance: 7,
            listen: self.endpoint.local_addr().unwrap().to_string(),
        };
        send.write_all(&hello.encode())
            .await
            .map_err(|e| e.to_string())?;
        let mut recv = tokio::time::timeout(Duration::from_secs(5), conn.accept_uni())
            .await
            .map_err(|_| "no hello stream".to_string())?
            .map_err(|e| e.to_string())?;
        let mut len = [0u8; 4];
        recv.read_exact(&mut len).await.map_err(|e| e.to_string())?;
        Ok((conn, send))
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_peer_sending_garbage_frames_is_banned_refused_and_can_be_lifted() {
    let dir = tempfile::tempdir().unwrap();
    let n = spawn(&dir.path().join("n"), &[]).await;
    let quic: SocketAddr = n.info.quic_addr.parse().unwrap();
    let bad = RawPeer::new();
    let bad_id = bad.id.peer_id.to_string();
    let (conn, mut send) = bad.join(quic).await.expect("the node admits it at first");
    // Ten frames whose bodies are not frames: the default threshold.
    for i in 0..10u8 {
        let body = [0xff, 0xfe, i, 0xfd];
        let mut framed = (body.len() as u32).to_be_bytes().to_vec();
        framed.extend_from_slice(&body);
        if send.write_all(&framed).await.is_err() {
            break;
        }
    }
    let banned = eventually(Duration::from_secs(5), || async {
        n.diagnostics()
            .await
            .bans
            .iter()
            .any(|b| b.peer_id.as_deref() == Some(bad_id.as_str()))
    })
    .await;
    let d = n.diagnostics().await;
    assert!(
        banned,
        "not banned: {:?} {:?}",
        d.bans,
        d.counters[c::INVALID_FRAMES]
    );
    let ban = d
        .bans
        .iter()
        .find(|b| b.peer_id.as_deref() == Some(&bad_id))
        .unwrap();
    assert_eq!(ban.reason, "bad_frame");
    assert!(ban.failures >= 10);
    assert!(ban.remaining_ms > 250_000, "{ban:?}");
    assert!(d.counters[c::INVALID_FRAMES] >= 10);
    assert_eq!(d.counters["bans_total"], 1);
    assert_eq!(d.gauges["bans_active"], 1.0);
    let listed: Vec<Ban> = n.get_json("/v1/bans").await;
    assert_eq!(listed.len(), 1);
    // The node closed the connection.
    assert!(
        tokio::time::timeout(Duration::from_secs(5), conn.closed())
            .await
            .is_ok()
    );
    // Refused early: the same peer from the same address does not get in.
    assert!(bad.join(quic).await.is_err(), "a banned peer got in");
    assert!(n.counter("banned_refusals_total").await >= 1);
    // An unknown ban is 404; lifting the real one lets the peer back in.
    let r = n
        .http
        .delete(n.url(&format!("/v1/bans/{}", "ab".repeat(32))))
        .bearer_auth(&n.token)
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 404);
    let r = n
        .http
        .delete(n.url(&format!("/v1/bans/{bad_id}")))
        .bearer_auth(&n.token)
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 200);
    assert!(n.diagnostics().await.bans.is_empty());
    assert!(bad.join(quic).await.is_ok(), "lifted ban still refuses");
    // The node is healthy throughout.
    assert!(n.ready().await);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_inbound_cap_holds_and_sheds_newcomers_with_err_load() {
    let dir = tempfile::tempdir().unwrap();
    let hub = spawn(&dir.path().join("hub"), &["--max-inbound-peers", "2"]).await;
    let mut leaves = Vec::new();
    for i in 0..4 {
        leaves.push(
            spawn(
                &dir.path().join(format!("l{i}")),
                &["--bootstrap", &hub.info.quic_addr],
            )
            .await,
        );
    }
    // Every leaf tried; two got in, the others heard ERR_LOAD.
    let shed = eventually(Duration::from_secs(10), || async {
        hub.counter("err_load_sent_total").await >= 2
    })
    .await;
    assert!(shed, "{:?}", hub.diagnostics().await.counters);
    // For a while (leaves keep retrying with backoff), never more than two inbound.
    for _ in 0..20 {
        let d = hub.diagnostics().await;
        assert!(d.gauges["peers_inbound"] <= 2.0, "{:?}", d.gauges);
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    let d = hub.diagnostics().await;
    assert_eq!(d.gauges["peers_inbound"], 2.0);
    assert!(d.counters["inbound_limit_refusals_total"] >= 2);
    let mut heard = 0;
    for l in &leaves {
        let d = l.diagnostics().await;
        heard += d.counters["err_load_received_total"];
        // ERR_LOAD is no failure: no ban, no failed attempt against the hub.
        assert!(d.bans.is_empty());
        assert_eq!(d.counters["peer_failures_total"], 0);
    }
    assert!(heard >= 2, "leaves heard {heard} ERR_LOAD");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_dm_right_after_readyz_between_two_leaves_is_acked_exactly_once() {
    // Slow ticks: no periodic peer exchange, so leaf `a` (joined first) cannot have heard of
    // leaf `b` from anyone by the time it sends — the DM must discover it.
    let slow = ["--tick-ms", "60000"];
    let dir = tempfile::tempdir().unwrap();
    let hub = spawn(&dir.path().join("hub"), &slow).await;
    let mut args = slow.to_vec();
    args.extend(["--bootstrap", &hub.info.quic_addr]);
    let a = spawn(&dir.path().join("a"), &args).await;
    assert!(eventually(Duration::from_secs(5), || a.ready()).await);
    let b = spawn(&dir.path().join("b"), &args).await;
    assert!(eventually(Duration::from_secs(5), || b.ready()).await);
    assert!(hub.ready().await);
    assert!(
        !a.diagnostics()
            .await
            .peers
            .iter()
            .any(|p| p.peer_id == b.info.peer_id),
        "a already knows b: the test would not exercise discovery"
    );
    let r = a.dm(&b.info.peer_id, b"right after readyz", None).await;
    assert_eq!(r.outcome, DmOutcome::Acked, "{r:?}");
    assert_eq!(r.attempts, 1);
    let d = a.diagnostics().await;
    assert!(d.counters["dm_discovery_queries_total"] >= 1);
    assert_eq!(d.counters["dm_discovered_total"], 1);
    // Exactly once in b's inbox, and still once a moment later.
    for _ in 0..2 {
        let inbox = b.inbox_all().await;
        let copies = inbox
            .items
            .iter()
            .filter(|i| i.request_id == r.request_id)
            .count();
        assert_eq!(copies, 1, "{inbox:?}");
        tokio::time::sleep(Duration::from_millis(300)).await;
    }
    assert_eq!(b.counter(c::DM_DELIVERED).await, 1);
    // And back, b → a (b learned a from the hub at its join).
    let r = b.dm(&a.info.peer_id, b"and back", None).await;
    assert_eq!(r.outcome, DmOutcome::Acked, "{r:?}");
    assert!(d.histograms["dm_ack_latency_seconds"].count >= 1);
}
