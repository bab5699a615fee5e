//! Every admin API body, through the real router of one real in-process node (QUIC bound to
//! 127.0.0.1, no peers): the first byte picks the endpoint, the next bytes up to a `\n` are the
//! topic path segment (or the query string), the rest is the body. `@SELF@` in a body becomes
//! the node's own peer id, so DMs reach a real delivery path. Never a panic, never a 5xx other
//! than 503, always a JSON error body on a 4xx, and every request answers within its deadline.
#![no_main]

use std::sync::OnceLock;
use std::time::Duration;

use axum::Router;
use axum::body::{Body, to_bytes};
use axum::http::{Method, Request, StatusCode, header};
use libfuzzer_sys::fuzz_target;
use soak_node::config::Settings;
use soak_node::shell::Node;
use tower::ServiceExt;

const TOKEN: &str = "fuzz-token";

struct Harness {
    runtime: tokio::runtime::Runtime,
    router: Router,
    peer_id: String,
    _dir: tempfile::TempDir,
}

fn harness() -> &'static Harness {
    static HARNESS: OnceLock<Harness> = OnceLock::new();
    HARNESS.get_or_init(|| {
        let _ = rustls::crypto::ring::default_provider().install_default();
        let runtime = tokio::runtime::Builder::new_multi_thread()
            .worker_threads(2)
            .enable_all()
            .build()
            .expect("runtime");
        let dir = tempfile::tempdir().expect("tempdir");
        let node = runtime
            .block_on(Node::start(Settings::new(dir.path())))
            .expect("node starts");
        let peer_id = node.shared().identity.peer_id.clone();
        let router = soak_node::admin::router(node, TOKEN.to_string());
        Harness {
            runtime,
            router,
            peer_id,
            _dir: dir,
        }
    })
}

/// Percent-encodes everything but unreserved characters, so any bytes make a valid URI part.
fn encode(bytes: &[u8]) -> String {
    let mut out = String::with_capacity(bytes.len() * 3);
    for &b in bytes {
        if b.is_ascii_alphanumeric() || matches!(b, b'-' | b'.' | b'_' | b'~' | b'=' | b'&') {
            out.push(b as char);
        } else {
            out.push_str(&format!("%{b:02X}"));
        }
    }
    out
}

fuzz_target!(|data: &[u8]| {
    let Some((&pick, rest)) = data.split_first() else {
        return;
    };
    let (segment, body) = match rest.iter().position(|b| *b == b'\n') {
        Some(i) => (&rest[..i], &rest[i + 1..]),
        None => (&rest[..0], rest),
    };
    let h = harness();
    let body = String::from_utf8_lossy(body).replace("@SELF@", &h.peer_id);
    let topic = encode(segment);
    let (method, uri) = match pick % 12 {
        0 => (Method::POST, "/v1/dm".to_string()),
        1 => (Method::GET, format!("/v1/dm/inbox?{topic}")),
        2 => (Method::POST, "/v1/impairments".to_string()),
        3 => (Method::DELETE, "/v1/impairments".to_string()),
        4 => (Method::POST, format!("/v1/topics/{topic}/subscribe")),
        5 => (Method::POST, format!("/v1/topics/{topic}/unsubscribe")),
        6 => (Method::POST, format!("/v1/topics/{topic}/publish")),
        7 => (Method::GET, format!("/v1/topics/{topic}/received")),
        8 => (Method::POST, format!("/v1/topics/{topic}/stall")),
        9 => (Method::GET, format!("/v1/topics/x/received?{topic}")),
        10 => (Method::GET, "/v1/diagnostics".to_string()),
        _ => (Method::POST, format!("/{topic}")),
    };
    let mut request = Request::builder()
        .method(method)
        .uri(&uri)
        .header(header::CONTENT_TYPE, "application/json");
    // One case in 16 without the token: refused before any body is read.
    if pick / 12 != 1 {
        request = request.header(header::AUTHORIZATION, format!("Bearer {TOKEN}"));
    }
    let Ok(request) = request.body(Body::from(body)) else {
        return;
    };
    let router = h.router.clone();
    let answer = h.runtime.block_on(async move {
        tokio::time::timeout(Duration::from_secs(70), async move {
            let response = router.oneshot(request).await.expect("infallible router");
            let status = response.status();
            let bytes = to_bytes(response.into_body(), 1 << 24)
                .await
                .expect("a readable response body");
            (status, bytes)
        })
        .await
    });
    let (status, bytes) = answer.unwrap_or_else(|_| panic!("{uri}: no answer within 70 s"));
    assert!(
        !status.is_server_error() || status == StatusCode::SERVICE_UNAVAILABLE,
        "{uri}: {status}"
    );
    if status.is_client_error() {
        let error: serde_json::Value = serde_json::from_slice(&bytes)
            .unwrap_or_else(|e| panic!("{uri}: {status} without JSON: {e}"));
        assert!(error["error"].is_string(), "{uri}: {status}: {error}");
    }
});
