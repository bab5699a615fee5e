//! The hardened admin API on a real node, one test per way it was broken before: unknown JSON
//! fields, 405 without a JSON body, a case-sensitive `Bearer`, idle half-open clients, a weak
//! pre-existing token, a silent non-loopback bind, an inbox cursor that moved backwards, and
//! `loss: -0.0` / empty datagrams.

mod common;

use std::io::{Read, Write};
use std::net::{TcpStream, UdpSocket};
use std::time::{Duration, Instant};

use common::{eventually, spawn};
use soak_api::{ApiError, Impairment, InboxPage, counters as c};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_json_body_refuses_unknown_fields() {
    let dir = tempfile::tempdir().unwrap();
    let n = spawn(&dir.path().join("n"), &[]).await;
    let me = &n.info.peer_id;
    for (path, body, field) in [
        // The typo that used to be accepted and do nothing.
        (
            "/v1/impairments",
            r#"{"lose": 0.5, "expires_in_ms": 1000}"#.to_string(),
            "lose",
        ),
        (
            "/v1/dm",
            format!(r#"{{"to":"{me}","payload_b64":"","timeout":5}}"#),
            "timeout",
        ),
        (
            "/v1/topics/t/subscribe",
            r#"{"fast": true}"#.to_string(),
            "fast",
        ),
        (
            "/v1/topics/t/publish",
            r#"{"payload_b64":"", "qos": 1}"#.to_string(),
            "qos",
        ),
        (
            "/v1/topics/t/stall",
            r#"{"for_ms":1,"x":1}"#.to_string(),
            "x",
        ),
    ] {
        let r = n.post_raw(path, body.clone()).await;
        assert_eq!(r.status(), 400, "{path} {body}");
        let e: ApiError = r.json().await.unwrap();
        assert_eq!(e.code, "bad_request");
        assert!(e.error.contains(field), "{path}: {}", e.error);
    }
    // The impairment's optional `id` and `one_way` are fields, not typos.
    let r = n
        .post_raw(
            "/v1/impairments",
            r#"{"id":"cut-1","partition":true,"one_way":true,"expires_in_ms":1000}"#,
        )
        .await;
    assert_eq!(r.status(), 200);
    let listed: Vec<Impairment> = r.json().await.unwrap();
    assert!(listed[0].one_way && listed[0].id.as_deref() == Some("cut-1"));
    // An empty subscribe body is still fine.
    assert_eq!(n.post_raw("/v1/topics/t/subscribe", "").await.status(), 200);
    assert_eq!(
        n.post_raw("/v1/topics/t/subscribe", "{}").await.status(),
        200
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn wrong_methods_get_405_with_a_json_error() {
    let dir = tempfile::tempdir().unwrap();
    let n = spawn(&dir.path().join("n"), &[]).await;
    for (method, path) in [
        (reqwest::Method::GET, "/v1/dm"),
        (reqwest::Method::PUT, "/v1/impairments"),
        (reqwest::Method::POST, "/healthz"),
        (reqwest::Method::DELETE, "/v1/diagnostics"),
    ] {
        let r = n
            .http
            .request(method.clone(), n.url(path))
            .bearer_auth(&n.token)
            .send()
            .await
            .unwrap();
        assert_eq!(r.status(), 405, "{method} {path}");
        let e: ApiError = r.json().await.expect("a JSON error body");
        assert_eq!(e.code, "method_not_allowed");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_bearer_scheme_is_case_insensitive() {
    let dir = tempfile::tempdir().unwrap();
    let n = spawn(&dir.path().join("n"), &[]).await;
    for scheme in ["Bearer", "bearer", "BEARER", "bEaReR"] {
        let r = n
            .http
            .get(n.url("/v1/version"))
            .header("authorization", format!("{scheme} {}", n.token))
            .send()
            .await
            .unwrap();
        assert_eq!(r.status(), 200, "{scheme}");
    }
    let r = n
        .http
        .get(n.url("/v1/version"))
        .header("authorization", format!("Basic {}", n.token))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 401);
}

/// Whether the server closed `s` within `within` (EOF or reset), reading whatever it sends.
fn closed_within(s: &mut TcpStream, within: Duration) -> bool {
    let deadline = Instant::now() + within;
    s.set_read_timeout(Some(Duration::from_millis(50))).unwrap();
    let mut buf = [0u8; 256];
    while Instant::now() < deadline {
        match s.read(&mut buf) {
            Ok(0) => return true,
            Ok(_) => {}
            Err(e) if e.kind() == std::io::ErrorKind::WouldBlock => {}
            Err(e) if e.kind() == std::io::ErrorKind::TimedOut => {}
            Err(_) => return true,
        }
    }
    false
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn idle_half_open_clients_are_capped_and_timed_out() {
    let dir = tempfile::tempdir().unwrap();
    let n = spawn(
        &dir.path().join("n"),
        &[
            "--admin-max-connections",
            "3",
            "--admin-header-timeout-ms",
            "400",
        ],
    )
    .await;
    let addr = n.info.admin_addr.clone();
    let result = tokio::task::spawn_blocking(move || {
        // Three clients that start a request and never finish its headers.
        let mut idle: Vec<TcpStream> = (0..3)
            .map(|_| {
                let mut s = TcpStream::connect(&addr).unwrap();
                s.write_all(b"GET /healthz HTTP/1.1\r\nHost: x\r\n")
                    .unwrap();
                s
            })
            .collect();
        std::thread::sleep(Duration::from_millis(50));
        // A fourth is over the cap: closed at once.
        let mut extra = TcpStream::connect(&addr).unwrap();
        let refused = closed_within(&mut extra, Duration::from_millis(300));
        // The idle ones are dropped once the header timeout passes.
        let dropped = idle
            .iter_mut()
            .all(|s| closed_within(s, Duration::from_secs(3)));
        (refused, dropped)
    })
    .await
    .unwrap();
    assert_eq!(result, (true, true));
    // Serving again, and the refusal was counted.
    assert!(n.ready().await);
    assert!(n.counter("api_connections_refused_total").await >= 1);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_weak_pre_existing_token_is_replaced_with_a_warning() {
    use std::os::unix::fs::PermissionsExt;
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().join("n");
    std::fs::create_dir_all(&data).unwrap();
    let path = data.join(soak_api::ADMIN_TOKEN_FILE);
    let weak = "a".repeat(64);
    std::fs::write(&path, &weak).unwrap();
    std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o644)).unwrap();
    let n = spawn(&data, &[]).await;
    assert_ne!(n.token, weak);
    assert_eq!(n.token.len(), 64);
    let mode = std::fs::metadata(&path).unwrap().permissions().mode() & 0o777;
    assert_eq!(mode, 0o600);
    let log = std::fs::read_to_string(data.join("node.log")).unwrap();
    assert!(
        log.contains("admin token:") && log.contains("mode 644"),
        "{log}"
    );
    assert!(!log.contains(&n.token), "the token must never be logged");
    // The old token no longer opens anything.
    let r = n
        .http
        .get(n.url("/v1/version"))
        .bearer_auth(&weak)
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 401);
    assert_eq!(n.get("/v1/version").await.status(), 200);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_admin_api_on_a_non_loopback_address_warns_loudly() {
    let dir = tempfile::tempdir().unwrap();
    let quiet = spawn(&dir.path().join("q"), &[]).await;
    let loud = spawn(&dir.path().join("l"), &["--admin", "0.0.0.0:0"]).await;
    let log = |n: &common::NodeProc| std::fs::read_to_string(n.dir.join("node.log")).unwrap();
    assert!(log(&loud).contains("ADMIN API ON A NON-LOOPBACK ADDRESS"));
    assert!(!log(&quiet).contains("NON-LOOPBACK"));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_inbox_cursor_past_the_end_never_moves_backwards() {
    let dir = tempfile::tempdir().unwrap();
    let n = spawn(&dir.path().join("n"), &[]).await;
    let page: InboxPage = n.get_json("/v1/dm/inbox?after=1000").await;
    assert_eq!((page.next, page.items.len()), (1000, 0));
    assert_eq!(
        n.dm(&n.info.peer_id, b"x", None).await.outcome,
        soak_api::DmOutcome::Acked
    );
    let page: InboxPage = n.get_json("/v1/dm/inbox?after=0").await;
    assert_eq!((page.next, page.items.len()), (1, 1));
    let page: InboxPage = n.get_json("/v1/dm/inbox?after=5").await;
    assert_eq!((page.next, page.items.len()), (5, 0));
    // Topic pages follow the same rule.
    assert_eq!(n.post_raw("/v1/topics/t/subscribe", "").await.status(), 200);
    let page: soak_api::ReceivedPage = n.get_json("/v1/topics/t/received?after=77").await;
    assert_eq!(page.next, 77);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn negative_zero_loss_and_empty_datagrams_are_handled_and_counted() {
    let dir = tempfile::tempdir().unwrap();
    let n = spawn(&dir.path().join("n"), &[]).await;
    let r = n
        .post_raw(
            "/v1/impairments",
            r#"{"loss": -0.0, "expires_in_ms": 1000}"#,
        )
        .await;
    assert_eq!(r.status(), 200);
    let text = r.text().await.unwrap();
    assert!(text.contains(r#""loss":0.0"#), "{text}");
    assert!(!text.contains("-0.0"), "{text}");
    // Empty UDP datagrams on the QUIC port are garbage like any other, and counted.
    let before = n.counter(c::INVALID_DATAGRAMS).await;
    let sock = UdpSocket::bind("127.0.0.1:0").unwrap();
    for _ in 0..3 {
        sock.send_to(&[], &n.info.quic_addr).unwrap();
    }
    assert!(
        eventually(Duration::from_secs(5), || async {
            n.counter(c::INVALID_DATAGRAMS).await >= before + 3
        })
        .await,
        "empty datagrams not counted"
    );
    assert!(n.ready().await);
}
