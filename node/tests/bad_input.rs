//! Bad input against a real node: malformed API requests, bad tokens, oversized payloads,
//! unknown peers, garbage UDP datagrams, and QUIC peers that never finish authenticating.

mod common;

use std::net::UdpSocket;
use std::time::Duration;

use common::{eventually, spawn, spawn_with_env};
use soak_api::{ApiError, DmOutcome, DmPath, counters as c, gauges as g};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn api_rejects_bad_requests_with_json_errors() {
    let dir = tempfile::tempdir().unwrap();
    // The payload limit comes from the environment, proving the SOAK_NODE_* wiring.
    let n = spawn_with_env(
        &dir.path().join("n"),
        &[],
        &[("SOAK_NODE_MAX_PAYLOAD_BYTES", "1024")],
    )
    .await;

    // Malformed JSON → 400 with a JSON error.
    let r = n.post_raw("/v1/dm", "{not json").await;
    assert_eq!(r.status(), 400);
    let e: ApiError = r.json().await.unwrap();
    assert_eq!(e.code, "bad_request");
    assert!(e.error.contains("invalid JSON"), "{}", e.error);
    // Well-formed JSON, wrong shape / bad fields → 400.
    for body in [
        r#"{"payload_b64":""}"#.to_string(),
        r#"{"to":"xyz","payload_b64":""}"#.to_string(),
        format!(r#"{{"to":"{}","payload_b64":"***"}}"#, n.info.peer_id),
        format!(
            r#"{{"to":"{}","payload_b64":"","request_id":"123"}}"#,
            n.info.peer_id
        ),
    ] {
        let r = n.post_raw("/v1/dm", body.clone()).await;
        assert_eq!(r.status(), 400, "{body}");
        let e: ApiError = r.json().await.unwrap();
        assert_eq!(e.code, "bad_request");
    }
    let r = n.get("/v1/dm/inbox?after=minus-one").await;
    assert_eq!(r.status(), 400);
    let _: ApiError = r.json().await.unwrap();
    assert_eq!(n.counter(c::API_BAD_REQUESTS).await, 6);

    // Unknown peer → a clear error outcome.
    let unknown = "ab".repeat(32);
    let r = n.dm(&unknown, b"hi", None).await;
    assert_eq!(r.outcome, DmOutcome::Unreachable);
    assert_eq!(r.path, DmPath::None);
    assert!(r.error.unwrap().contains("unknown peer"));

    // Missing or wrong token → 401 with a JSON error, on every protected route.
    for path in [
        "/v1/diagnostics",
        "/metrics",
        "/readyz",
        "/v1/version",
        "/v1/dm/inbox",
    ] {
        let r = n.http.get(n.url(path)).send().await.unwrap();
        assert_eq!(r.status(), 401, "{path}");
        let e: ApiError = r.json().await.unwrap();
        assert_eq!(e.code, "unauthorized");
        let r = n
            .http
            .get(n.url(path))
            .bearer_auth("wrong")
            .send()
            .await
            .unwrap();
        assert_eq!(r.status(), 401, "{path}");
    }
    let r = n
        .http
        .post(n.url("/v1/dm"))
        .body("{}")
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 401);
    // /healthz needs no token.
    let r = n.http.get(n.url("/healthz")).send().await.unwrap();
    assert_eq!(r.status(), 200);

    // Oversized payload → 413 (decoded payload over the limit, and a huge body).
    use base64::Engine;
    let big = base64::engine::general_purpose::STANDARD.encode(vec![7u8; 2000]);
    let r = n
        .post_raw(
            "/v1/dm",
            format!(r#"{{"to":"{}","payload_b64":"{big}"}}"#, n.info.peer_id),
        )
        .await;
    assert_eq!(r.status(), 413);
    let e: ApiError = r.json().await.unwrap();
    assert_eq!(e.code, "payload_too_large");
    let r = n.post_raw("/v1/dm", vec![b' '; 1 << 20]).await;
    assert_eq!(r.status(), 413);
    let _: ApiError = r.json().await.unwrap();
    // A payload at the limit is fine.
    let r = n.dm(&n.info.peer_id, &[1u8; 1024], None).await;
    assert_eq!(r.outcome, DmOutcome::Acked);

    // Unknown endpoint → 404 JSON.
    let r = n.get("/v1/nope").await;
    assert_eq!(r.status(), 404);
    let _: ApiError = r.json().await.unwrap();
}

/// Capture the first datagram (a QUIC Initial) a real quinn client sends.
async fn capture_initial() -> Vec<u8> {
    let _ = rustls::crypto::ring::default_provider().install_default();
    let sink = UdpSocket::bind("127.0.0.1:0").unwrap();
    sink.set_read_timeout(Some(Duration::from_secs(5))).unwrap();
    let sink_addr = sink.local_addr().unwrap();
    let id = soak_node::identity::Identity::ephemeral().unwrap();
    let tuning = soak_node::config::Tuning::default();
    let cfg = soak_node::transport::client_config(&id, None, &tuning).unwrap();
    let ep = quinn::Endpoint::client("127.0.0.1:0".parse().unwrap()).unwrap();
    let connecting = ep.connect_with(cfg, sink_addr, "soak-node").unwrap();
    let handle = tokio::spawn(async move {
        let _ = tokio::time::timeout(Duration::from_secs(3), connecting).await;
    });
    let bytes = tokio::task::spawn_blocking(move || {
        let mut buf = vec![0u8; 2048];
        let (n, _) = sink.recv_from(&mut buf).unwrap();
        buf.truncate(n);
        buf
    })
    .await
    .unwrap();
    handle.abort();
    ep.close(0u32.into(), b"");
    bytes
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn garbage_datagrams_and_half_open_handshakes_leave_the_node_healthy() {
    let _ = rustls::crypto::ring::default_provider().install_default();
    let dir = tempfile::tempdir().unwrap();
    let n = spawn(&dir.path().join("n"), &["--auth-timeout-ms", "500"]).await;
    let peer = spawn(&dir.path().join("p"), &["--bootstrap", &n.info.quic_addr]).await;
    assert!(eventually(Duration::from_secs(5), || peer.ready()).await);
    let quic: std::net::SocketAddr = n.info.quic_addr.parse().unwrap();

    // 1. Random garbage datagrams.
    let sock = UdpSocket::bind("127.0.0.1:0").unwrap();
    let mut seed = 0x9e37_79b9_7f4a_7c15_u64;
    for i in 0..200 {
        let len = 1 + (i * 7) % 120;
        let d: Vec<u8> = (0..len)
            .map(|_| {
                seed ^= seed << 13;
                seed ^= seed >> 7;
                seed ^= seed << 17;
                seed as u8
            })
            .collect();
        sock.send_to(&d, quic).unwrap();
    }
    assert!(
        eventually(Duration::from_secs(5), || async {
            n.counter(c::INVALID_DATAGRAMS).await >= 200
        })
        .await,
        "garbage not counted: {}",
        n.counter(c::INVALID_DATAGRAMS).await
    );

    // 2. A QUIC Initial from a peer that then goes silent: the handshake never completes.
    let initial = capture_initial().await;
    assert!(initial.len() >= 1200, "captured {} bytes", initial.len());
    let silent = UdpSocket::bind("127.0.0.1:0").unwrap();
    silent.send_to(&initial, quic).unwrap();

    // 3. A peer that completes QUIC + TLS but never sends its hello.
    let id = soak_node::identity::Identity::ephemeral().unwrap();
    let tuning = soak_node::config::Tuning::default();
    let cfg = soak_node::transport::client_config(&id, None, &tuning).unwrap();
    let ep = quinn::Endpoint::client("127.0.0.1:0".parse().unwrap()).unwrap();
    let mute = ep
        .connect_with(cfg, quic, "soak-node")
        .unwrap()
        .await
        .expect("QUIC handshake with the node");

    // 4. A dialer pinning the wrong peer id aborts the TLS handshake.
    let wrong: soak_node::proto::PeerId = "cd".repeat(32).parse().unwrap();
    let cfg = soak_node::transport::client_config(&id, Some(wrong), &tuning).unwrap();
    let refused = ep.connect_with(cfg, quic, "soak-node").unwrap().await;
    assert!(
        refused.is_err(),
        "pinning must refuse the node's certificate"
    );

    assert!(
        eventually(Duration::from_secs(5), || async {
            let d = n.diagnostics().await;
            d.counters[c::AUTH_TIMEOUTS] >= 2
                && d.counters[c::HANDSHAKE_FAILURES] >= 1
                && d.gauges[g::PEERS_PENDING] == 0.0
        })
        .await,
        "auth timeouts / handshake failures not counted: {:?}",
        n.diagnostics().await.counters
    );
    drop(mute);
    ep.close(0u32.into(), b"");

    // Still healthy: liveness, readiness, and a real DM both ways.
    assert_eq!(
        n.http.get(n.url("/healthz")).send().await.unwrap().status(),
        200
    );
    assert!(n.ready().await);
    let r = n.dm(&peer.info.peer_id, b"still here", None).await;
    assert_eq!(r.outcome, DmOutcome::Acked, "{r:?}");
    let r = peer.dm(&n.info.peer_id, b"and back", None).await;
    assert_eq!(r.outcome, DmOutcome::Acked, "{r:?}");
    // The half-open peers never became peers.
    let d = n.diagnostics().await;
    assert_eq!(d.peers.len(), 1, "{:?}", d.peers);
}
