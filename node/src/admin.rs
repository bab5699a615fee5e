//! The admin HTTP API (axum), contract v1 (`soak-api`, documented in `docs/node-api.md`).
//!
//! Every route except `/healthz` requires `Authorization: Bearer <DIR/admin.token>`. Every
//! non-2xx answer carries a JSON [`ApiError`]. Bad input never panics: it is a 4xx and, for
//! malformed requests, a count in `api_bad_requests_total`.

use std::net::SocketAddr;
use std::sync::Arc;
use std::sync::atomic::Ordering;
use std::time::{Duration, Instant};

use axum::body::Bytes;
use axum::extract::rejection::{BytesRejection, PathRejection, QueryRejection};
use axum::extract::{DefaultBodyLimit, Path, Query, Request, State};
use axum::http::{StatusCode, header};
use axum::middleware::{self, Next};
use axum::response::{IntoResponse, Response};
use axum::routing::{delete, get, post};
use axum::{Json, Router};
use base64::Engine;
use soak_api::{
    API_VERSION, ApiError, DmRequest, DmResponse, Impairment, PageQuery, PublishRequest,
    PublishResponse, Readiness, VersionInfo, counters as c,
};
use soak_gossip::TopicId;
use tracing::info;

use crate::metrics::extra;
use crate::proto::{PeerId, parse_request_id};
use crate::shell::{GIT, Node, TopicError, VERSION};

/// Largest `limit` of an inbox page.
pub const MAX_PAGE: usize = 1000;
/// Default `limit` of an inbox page.
pub const DEFAULT_PAGE: usize = 100;
/// Largest accepted per-attempt ACK timeout.
pub const MAX_DM_TIMEOUT_MS: u64 = 60_000;

#[derive(Clone)]
struct AppState {
    node: Node,
    token: Arc<String>,
}

fn error(status: StatusCode, code: &str, msg: impl Into<String>) -> Response {
    (
        status,
        Json(ApiError {
            code: code.to_string(),
            error: msg.into(),
        }),
    )
        .into_response()
}

fn bad_request(st: &AppState, msg: impl Into<String>) -> Response {
    st.node.shared().metrics.inc(c::API_BAD_REQUESTS);
    error(StatusCode::BAD_REQUEST, "bad_request", msg)
}

fn too_large(st: &AppState, msg: impl Into<String>) -> Response {
    st.node.shared().metrics.inc(c::API_BAD_REQUESTS);
    error(StatusCode::PAYLOAD_TOO_LARGE, "payload_too_large", msg)
}

fn unavailable() -> Response {
    error(
        StatusCode::SERVICE_UNAVAILABLE,
        "unavailable",
        "node main loop is not running",
    )
}

/// Constant-time comparison, so the token cannot be guessed byte by byte from timings.
fn same(a: &[u8], b: &[u8]) -> bool {
    a.len() == b.len() && a.iter().zip(b).fold(0u8, |acc, (x, y)| acc | (x ^ y)) == 0
}

/// The token of an `Authorization: Bearer <token>` value; the scheme is case-insensitive
/// (RFC 9110 §11.1), any run of spaces may follow it.
fn bearer_token(value: &str) -> Option<&str> {
    let (scheme, token) = value.trim().split_once(' ')?;
    scheme
        .eq_ignore_ascii_case("bearer")
        .then(|| token.trim())
        .filter(|t| !t.is_empty())
}

async fn auth(State(st): State<AppState>, req: Request, next: Next) -> Response {
    let presented = req
        .headers()
        .get(header::AUTHORIZATION)
        .and_then(|v| v.to_str().ok())
        .and_then(bearer_token);
    match presented {
        Some(t) if same(t.as_bytes(), st.token.as_bytes()) => next.run(req).await,
        Some(_) => {
            st.node.shared().metrics.inc(extra::API_UNAUTHORIZED);
            error(
                StatusCode::UNAUTHORIZED,
                "unauthorized",
                "wrong bearer token",
            )
        }
        None => {
            st.node.shared().metrics.inc(extra::API_UNAUTHORIZED);
            error(
                StatusCode::UNAUTHORIZED,
                "unauthorized",
                "missing bearer token (Authorization: Bearer <DATA_DIR/admin.token>)",
            )
        }
    }
}

async fn healthz(State(st): State<AppState>) -> Response {
    if st.node.alive(Duration::from_secs(2)).await {
        (StatusCode::OK, Json(serde_json::json!({"status": "ok"}))).into_response()
    } else {
        unavailable()
    }
}

async fn readyz(State(st): State<AppState>) -> Response {
    let shared = st.node.shared();
    let mut checks = std::collections::BTreeMap::new();
    checks.insert(
        "quic_listening".to_string(),
        shared.quic_listening.load(Ordering::Relaxed),
    );
    checks.insert(
        "admin_listening".to_string(),
        shared.admin_listening.load(Ordering::Relaxed),
    );
    checks.insert(
        "main_loop".to_string(),
        st.node.alive(Duration::from_secs(2)).await,
    );
    if !shared.settings.bootstrap.is_empty() {
        checks.insert(
            "bootstrap_peer_established".to_string(),
            shared.established.load(Ordering::Relaxed) > 0,
        );
    }
    if let Some(until) = shared.rejoin_hold_until {
        checks.insert(
            "test_rejoin_delay_elapsed".to_string(),
            Instant::now() >= until,
        );
    }
    let ready = checks.values().all(|v| *v);
    let status = if ready {
        StatusCode::OK
    } else {
        StatusCode::SERVICE_UNAVAILABLE
    };
    (status, Json(Readiness { ready, checks })).into_response()
}

async fn version(State(st): State<AppState>) -> Json<VersionInfo> {
    Json(VersionInfo {
        name: "soak-node".to_string(),
        version: VERSION.to_string(),
        git: GIT.to_string(),
        peer_id: st.node.peer_id.to_string(),
        api_version: API_VERSION,
    })
}

async fn metrics(State(st): State<AppState>) -> Response {
    // A diagnostics snapshot first refreshes every mirrored counter and gauge.
    if st.node.diagnostics().await.is_err() {
        return unavailable();
    }
    (
        [(
            header::CONTENT_TYPE,
            "text/plain; version=0.0.4; charset=utf-8",
        )],
        st.node.shared().metrics.render(),
    )
        .into_response()
}

async fn diagnostics(State(st): State<AppState>) -> Response {
    match st.node.diagnostics().await {
        Ok(d) => Json(d).into_response(),
        Err(_) => unavailable(),
    }
}

fn body_or_error(
    st: &AppState,
    body: Result<Bytes, BytesRejection>,
) -> Result<Bytes, Box<Response>> {
    body.map_err(|rej| {
        Box::new(if rej.status() == StatusCode::PAYLOAD_TOO_LARGE {
            too_large(st, "request body too large")
        } else {
            bad_request(st, format!("unreadable request body: {rej}"))
        })
    })
}

/// The request body parsed as JSON `T`: 413 when too large, 400 when unreadable or malformed.
fn json_body<T: serde::de::DeserializeOwned>(
    st: &AppState,
    body: Result<Bytes, BytesRejection>,
) -> Result<T, Box<Response>> {
    let body = body_or_error(st, body)?;
    serde_json::from_slice(&body)
        .map_err(|e| Box::new(bad_request(st, format!("invalid JSON: {e}"))))
}

/// A `payload_b64` field decoded: 400 when not standard base64, 413 over the payload limit.
fn payload_of(st: &AppState, payload_b64: &str) -> Result<Vec<u8>, Box<Response>> {
    let payload = base64::engine::general_purpose::STANDARD
        .decode(payload_b64)
        .map_err(|e| {
            Box::new(bad_request(
                st,
                format!("`payload_b64` is not standard base64: {e}"),
            ))
        })?;
    let max = st.node.shared().settings.tuning.max_payload_bytes as usize;
    if payload.len() > max {
        return Err(Box::new(too_large(
            st,
            format!("payload of {} bytes exceeds {max} bytes", payload.len()),
        )));
    }
    Ok(payload)
}

async fn dm(State(st): State<AppState>, body: Result<Bytes, BytesRejection>) -> Response {
    let started = Instant::now();
    let req: DmRequest = match json_body(&st, body) {
        Ok(v) => v,
        Err(r) => return *r,
    };
    let Ok(to) = req.to.parse::<PeerId>() else {
        return bad_request(&st, "`to` must be a peer id (64 hex characters)");
    };
    let payload = match payload_of(&st, &req.payload_b64) {
        Ok(p) => p,
        Err(r) => return *r,
    };
    let request_id = match &req.request_id {
        Some(s) => match parse_request_id(s) {
            Some(id) => id,
            None => return bad_request(&st, "`request_id` must be 32 hex characters"),
        },
        None => rand::random(),
    };
    let timeout_ms = req
        .timeout_ms
        .unwrap_or(st.node.shared().settings.tuning.ack_timeout_ms)
        .clamp(1, MAX_DM_TIMEOUT_MS);
    let r = st
        .node
        .dm(to, request_id, payload, Duration::from_millis(timeout_ms))
        .await;
    Json(DmResponse {
        request_id: hex::encode(request_id),
        outcome: r.outcome,
        path: r.path,
        attempts: r.attempts,
        elapsed_us: started.elapsed().as_micros() as u64,
        error: r.error,
    })
    .into_response()
}

async fn inbox(
    State(st): State<AppState>,
    q: Result<Query<PageQuery>, QueryRejection>,
) -> Response {
    let Query(q) = match q {
        Ok(q) => q,
        Err(e) => return bad_request(&st, format!("invalid query: {e}")),
    };
    let limit = q.limit.unwrap_or(DEFAULT_PAGE).min(MAX_PAGE);
    match st.node.inbox(q.after.unwrap_or(0), limit).await {
        Ok(page) => Json(page).into_response(),
        Err(_) => unavailable(),
    }
}

async fn impairments_list(State(st): State<AppState>) -> Response {
    Json(st.node.shared().impair.list(Instant::now())).into_response()
}

async fn impairments_add(
    State(st): State<AppState>,
    body: Result<Bytes, BytesRejection>,
) -> Response {
    let imp: Impairment = match json_body(&st, body) {
        Ok(v) => v,
        Err(r) => return *r,
    };
    let now = Instant::now();
    match st.node.shared().impair.add(&imp, now) {
        Ok(id) => {
            info!(?imp, id, "impairment added");
            Json(st.node.shared().impair.list(now)).into_response()
        }
        Err(e) => bad_request(&st, e.to_string()),
    }
}

async fn impairments_remove(State(st): State<AppState>, Path(id): Path<String>) -> Response {
    match st.node.shared().impair.remove(&id) {
        Ok(()) => {
            info!(id, "impairment removed");
            Json(st.node.shared().impair.list(Instant::now())).into_response()
        }
        Err(e) => error(StatusCode::NOT_FOUND, "not_found", e.to_string()),
    }
}

async fn impairments_clear(State(st): State<AppState>) -> Response {
    st.node.shared().impair.clear();
    info!("impairments cleared");
    Json(st.node.shared().impair.list(Instant::now())).into_response()
}

/// Body of `POST /v1/topics/{topic}/subscribe` (optional): no options yet.
#[derive(Debug, serde::Deserialize)]
#[serde(deny_unknown_fields)]
struct SubscribeRequest {}

/// Body of `POST /v1/topics/{topic}/stall`.
#[derive(Debug, serde::Deserialize)]
#[serde(deny_unknown_fields)]
struct StallRequest {
    /// How long the topic's delivery path blocks, ms (0 lifts a stall; at most 60 000).
    for_ms: u64,
}

fn topic_of(
    st: &AppState,
    path: Result<Path<String>, PathRejection>,
) -> Result<TopicId, Box<Response>> {
    let Path(name) =
        path.map_err(|e| Box::new(bad_request(st, format!("invalid topic path: {e}"))))?;
    TopicId::new(&name).map_err(|e| Box::new(bad_request(st, format!("invalid topic name: {e}"))))
}

fn topic_error(st: &AppState, e: TopicError) -> Response {
    match e {
        TopicError::NotSubscribed(_) => {
            error(StatusCode::CONFLICT, "not_subscribed", e.to_string())
        }
        TopicError::TooManyTopics => error(StatusCode::CONFLICT, "too_many_topics", e.to_string()),
        TopicError::PayloadTooLarge { .. } => too_large(st, e.to_string()),
    }
}

fn topic_result<T: serde::Serialize>(
    st: &AppState,
    r: Result<Result<T, TopicError>, crate::shell::NotRunning>,
) -> Response {
    match r {
        Ok(Ok(v)) => Json(v).into_response(),
        Ok(Err(e)) => topic_error(st, e),
        Err(_) => unavailable(),
    }
}

async fn topic_subscribe(
    State(st): State<AppState>,
    path: Result<Path<String>, PathRejection>,
    body: Result<Bytes, BytesRejection>,
) -> Response {
    let topic = match topic_of(&st, path) {
        Ok(t) => t,
        Err(r) => return *r,
    };
    let body = match body_or_error(&st, body) {
        Ok(b) => b,
        Err(r) => return *r,
    };
    // The body is optional; when present it must be an empty JSON object (no options yet:
    // any field is unknown and refused).
    if !body.iter().all(u8::is_ascii_whitespace)
        && let Err(e) = serde_json::from_slice::<SubscribeRequest>(&body)
    {
        return bad_request(&st, format!("invalid JSON: {e}"));
    }
    let name = topic.to_string();
    topic_result(
        &st,
        st.node.subscribe(topic).await.map(|r| {
            r.map(|new| serde_json::json!({"topic": name, "subscribed": true, "new": new}))
        }),
    )
}

async fn topic_unsubscribe(
    State(st): State<AppState>,
    path: Result<Path<String>, PathRejection>,
) -> Response {
    let topic = match topic_of(&st, path) {
        Ok(t) => t,
        Err(r) => return *r,
    };
    let name = topic.to_string();
    topic_result(
        &st,
        st.node
            .unsubscribe(topic)
            .await
            .map(|r| r.map(|()| serde_json::json!({"topic": name, "subscribed": false}))),
    )
}

async fn topic_publish(
    State(st): State<AppState>,
    path: Result<Path<String>, PathRejection>,
    body: Result<Bytes, BytesRejection>,
) -> Response {
    let topic = match topic_of(&st, path) {
        Ok(t) => t,
        Err(r) => return *r,
    };
    let req: PublishRequest = match json_body(&st, body) {
        Ok(v) => v,
        Err(r) => return *r,
    };
    let payload = match payload_of(&st, &req.payload_b64) {
        Ok(p) => p,
        Err(r) => return *r,
    };
    topic_result(
        &st,
        st.node
            .publish(topic, payload)
            .await
            .map(|r| r.map(|msg_id| PublishResponse { msg_id })),
    )
}

async fn topic_received(
    State(st): State<AppState>,
    path: Result<Path<String>, PathRejection>,
    q: Result<Query<PageQuery>, QueryRejection>,
) -> Response {
    let topic = match topic_of(&st, path) {
        Ok(t) => t,
        Err(r) => return *r,
    };
    let Query(q) = match q {
        Ok(q) => q,
        Err(e) => return bad_request(&st, format!("invalid query: {e}")),
    };
    let limit = q.limit.unwrap_or(DEFAULT_PAGE).min(MAX_PAGE);
    topic_result(
        &st,
        st.node.received(topic, q.after.unwrap_or(0), limit).await,
    )
}

async fn topic_stall(
    State(st): State<AppState>,
    path: Result<Path<String>, PathRejection>,
    body: Result<Bytes, BytesRejection>,
) -> Response {
    let topic = match topic_of(&st, path) {
        Ok(t) => t,
        Err(r) => return *r,
    };
    let req: StallRequest = match json_body(&st, body) {
        Ok(v) => v,
        Err(r) => return *r,
    };
    let max = crate::pubsub::MAX_STALL.as_millis() as u64;
    if req.for_ms > max {
        return bad_request(&st, format!("`for_ms` must be at most {max}"));
    }
    let name = topic.to_string();
    info!(topic = %name, for_ms = req.for_ms, "stall requested");
    topic_result(
        &st,
        st.node
            .stall(topic, Duration::from_millis(req.for_ms))
            .await
            .map(|r| r.map(|()| serde_json::json!({"topic": name, "stalled_for_ms": req.for_ms}))),
    )
}

async fn bans_list(State(st): State<AppState>) -> Response {
    match st.node.bans().await {
        Ok(b) => Json(b).into_response(),
        Err(_) => unavailable(),
    }
}

async fn bans_lift_all(State(st): State<AppState>) -> Response {
    match st.node.lift_bans(None).await {
        Ok(n) => Json(serde_json::json!({ "lifted": n })).into_response(),
        Err(_) => unavailable(),
    }
}

async fn bans_lift(
    State(st): State<AppState>,
    path: Result<Path<String>, PathRejection>,
) -> Response {
    let Ok(Path(raw)) = path else {
        return bad_request(&st, "invalid ban path");
    };
    let subject = match raw.parse::<soak_proto::bans::Subject>() {
        Ok(s) => s,
        Err(e) => return bad_request(&st, e),
    };
    match st.node.lift_bans(Some(subject)).await {
        Ok(0) => error(
            StatusCode::NOT_FOUND,
            "not_found",
            format!("{subject} is not banned"),
        ),
        Ok(n) => Json(serde_json::json!({ "lifted": n })).into_response(),
        Err(_) => unavailable(),
    }
}

async fn not_found() -> Response {
    error(StatusCode::NOT_FOUND, "not_found", "no such endpoint")
}

async fn method_not_allowed() -> Response {
    error(
        StatusCode::METHOD_NOT_ALLOWED,
        "method_not_allowed",
        "method not allowed on this endpoint",
    )
}

/// The router (exposed for in-process tests).
pub fn router(node: Node, token: String) -> Router {
    let max = node.shared().settings.tuning.max_payload_bytes as usize;
    // Room for base64 (4/3) plus the JSON envelope; bigger bodies are refused with 413.
    let body_limit = max / 3 * 4 + 4 + 16 * 1024;
    let st = AppState {
        node,
        token: Arc::new(token),
    };
    let protected = Router::new()
        .route("/readyz", get(readyz))
        .route("/v1/version", get(version))
        .route("/metrics", get(metrics))
        .route("/v1/diagnostics", get(diagnostics))
        .route("/v1/dm", post(dm))
        .route("/v1/dm/inbox", get(inbox))
        .route("/v1/topics/{topic}/subscribe", post(topic_subscribe))
        .route("/v1/topics/{topic}/unsubscribe", post(topic_unsubscribe))
        .route("/v1/topics/{topic}/publish", post(topic_publish))
        .route("/v1/topics/{topic}/received", get(topic_received))
        .route("/v1/topics/{topic}/stall", post(topic_stall))
        .route(
            "/v1/impairments",
            get(impairments_list)
                .post(impairments_add)
                .delete(impairments_clear),
        )
        .route("/v1/impairments/{id}", delete(impairments_remove))
        .route("/v1/bans", get(bans_list).delete(bans_lift_all))
        .route("/v1/bans/{subject}", delete(bans_lift))
        .fallback(not_found)
        .method_not_allowed_fallback(method_not_allowed)
        .layer(middleware::from_fn_with_state(st.clone(), auth));
    Router::new()
        .route("/healthz", get(healthz))
        .merge(protected)
        .method_not_allowed_fallback(method_not_allowed)
        .layer(DefaultBodyLimit::max(body_limit))
        .with_state(st)
}

/// Bind the admin API and serve it in the background; returns the bound address.
///
/// HTTP/1.1 only, with two guards against idle or half-open clients: at most
/// `admin_max_connections` connections at once (more are closed at accept and counted in
/// `api_connections_refused_total`), and `admin_header_timeout_ms` to send each request's
/// headers (which also bounds an idle keep-alive connection).
pub async fn serve(node: Node, token: String, addr: SocketAddr) -> std::io::Result<SocketAddr> {
    let listener = tokio::net::TcpListener::bind(addr).await?;
    let local = listener.local_addr()?;
    if !local.ip().is_loopback() {
        for line in [
            "ADMIN API ON A NON-LOOPBACK ADDRESS",
            "the admin API (DMs, impairments, bans, diagnostics) is reachable from the network",
            "only the bearer token protects it and it is plain HTTP: bind it to 127.0.0.1 and tunnel",
        ] {
            tracing::warn!(admin = %local, "{line}");
        }
    }
    let shared = node.shared().clone();
    let t = &shared.settings.tuning;
    let slots = Arc::new(tokio::sync::Semaphore::new(
        t.admin_max_connections as usize,
    ));
    let header_timeout = Duration::from_millis(t.admin_header_timeout_ms);
    shared.admin_listening.store(true, Ordering::Relaxed);
    let app = router(node, token);
    tokio::spawn(async move {
        loop {
            let (stream, remote) = match listener.accept().await {
                Ok(s) => s,
                Err(e) => {
                    // Out of descriptors or similar: back off instead of spinning.
                    tracing::warn!(error = %e, "admin API accept failed");
                    tokio::time::sleep(Duration::from_millis(50)).await;
                    continue;
                }
            };
            let Ok(permit) = slots.clone().try_acquire_owned() else {
                shared.metrics.inc(extra::API_CONNECTIONS_REFUSED);
                tracing::debug!(%remote, "admin connection refused: connection cap reached");
                drop(stream);
                continue;
            };
            let service = hyper_util::service::TowerToHyperService::new(app.clone());
            tokio::spawn(async move {
                let _permit = permit;
                let io = hyper_util::rt::TokioIo::new(stream);
                let conn = hyper::server::conn::http1::Builder::new()
                    .timer(hyper_util::rt::TokioTimer::new())
                    .header_read_timeout(header_timeout)
                    .serve_connection(io, service);
                if let Err(e) = conn.await {
                    tracing::debug!(%remote, error = %e, "admin connection ended");
                }
            });
        }
    });
    Ok(local)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_bearer_scheme_is_case_insensitive() {
        assert_eq!(bearer_token("Bearer abc"), Some("abc"));
        assert_eq!(bearer_token("bearer abc"), Some("abc"));
        assert_eq!(bearer_token("BEARER   abc "), Some("abc"));
        assert_eq!(bearer_token("Basic abc"), None);
        assert_eq!(bearer_token("Bearer"), None);
        assert_eq!(bearer_token("Bearer "), None);
        assert_eq!(bearer_token("Bearerabc"), None);
    }
}
