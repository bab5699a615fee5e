//! The small async surface of a node's admin API that workloads drive ([`NodeApi`]), and its
//! HTTP implementation over reqwest ([`HttpNode`]).
//!
//! Workloads are written against the trait so unit tests can drive them against an in-memory
//! fake while the runner, the benches and the deploy code use [`HttpNode`] against real nodes.

use std::future::Future;
use std::time::Duration;

use serde::Serialize;
use serde::de::DeserializeOwned;
use soak_api::{
    ApiError, Diagnostics, DmRequest, DmResponse, Impairment, InboxPage, PageQuery, PublishRequest,
    PublishResponse, Readiness, ReceivedPage, VersionInfo,
};

use crate::NodeEndpoint;

/// Why one admin API call failed.
#[derive(Debug, thiserror::Error)]
#[error("{node}: {kind}")]
pub struct NodeApiError {
    /// Node name the call went to.
    pub node: String,
    /// What went wrong.
    #[source]
    pub kind: NodeApiErrorKind,
}

/// The ways an admin API call fails.
#[derive(Debug, thiserror::Error)]
pub enum NodeApiErrorKind {
    /// The request did not complete within the client timeout.
    #[error("request to {path} timed out")]
    Timeout {
        /// Request path.
        path: String,
    },
    /// No HTTP exchange happened (connection refused, reset, …).
    #[error("request to {path} failed: {message}")]
    Transport {
        /// Request path.
        path: String,
        /// Underlying error text.
        message: String,
    },
    /// The node answered with a non-success status.
    #[error("{path} answered {status}: {message}")]
    Status {
        /// Request path.
        path: String,
        /// HTTP status code.
        status: u16,
        /// The node's error code (`ApiError::code`) when it sent one.
        code: Option<String>,
        /// Error text from the body.
        message: String,
    },
    /// The body could not be decoded as the contract type.
    #[error("bad response body from {path}: {message}")]
    Decode {
        /// Request path.
        path: String,
        /// Decoder error text.
        message: String,
    },
    /// The caller passed something the API cannot carry (e.g. a bad topic name).
    #[error("invalid request: {0}")]
    Invalid(String),
}

impl NodeApiError {
    /// True when the node answered 404 — the route (or feature) does not exist on this node.
    pub fn is_not_found(&self) -> bool {
        matches!(self.kind, NodeApiErrorKind::Status { status: 404, .. })
    }

    fn new(node: &str, kind: NodeApiErrorKind) -> Self {
        NodeApiError {
            node: node.to_owned(),
            kind,
        }
    }
}

/// What every admin API call returns.
pub type ApiResult<T> = Result<T, NodeApiError>;

/// The admin API of one node, as workloads and the sampler see it.
///
/// Methods return `Send` futures so callers can run them on any task.
pub trait NodeApi: Send + Sync {
    /// Node name used in the proof (e.g. `node-0`).
    fn name(&self) -> &str;
    /// Hex peer id.
    fn peer_id(&self) -> &str;
    /// `GET /healthz` within `timeout` (shorter than the client's): is the process answering at
    /// all? A stopped (SIGSTOP) node times out here.
    fn healthz(&self, timeout: Duration) -> impl Future<Output = ApiResult<()>> + Send;
    /// `GET /readyz` (a 503 with a readiness body is an answer, not an error).
    fn readiness(&self) -> impl Future<Output = ApiResult<Readiness>> + Send;
    /// `GET /v1/version`.
    fn version(&self) -> impl Future<Output = ApiResult<VersionInfo>> + Send;
    /// `GET /v1/diagnostics`.
    fn diagnostics(&self) -> impl Future<Output = ApiResult<Diagnostics>> + Send;
    /// `POST /v1/dm`.
    fn send_dm(&self, request: &DmRequest) -> impl Future<Output = ApiResult<DmResponse>> + Send;
    /// `GET /v1/dm/inbox`.
    fn inbox(&self, query: PageQuery) -> impl Future<Output = ApiResult<InboxPage>> + Send;
    /// `POST /v1/topics/{topic}/subscribe`.
    fn subscribe(&self, topic: &str) -> impl Future<Output = ApiResult<()>> + Send;
    /// `POST /v1/topics/{topic}/unsubscribe` (409 `not_subscribed` when the node holds no such
    /// topic).
    fn unsubscribe(&self, topic: &str) -> impl Future<Output = ApiResult<()>> + Send;
    /// `POST /v1/topics/{topic}/publish`.
    fn publish(
        &self,
        topic: &str,
        request: &PublishRequest,
    ) -> impl Future<Output = ApiResult<PublishResponse>> + Send;
    /// `GET /v1/topics/{topic}/received`.
    fn received(
        &self,
        topic: &str,
        query: PageQuery,
    ) -> impl Future<Output = ApiResult<ReceivedPage>> + Send;
    /// `GET /v1/impairments`: the impairments the node holds now.
    fn impairments(&self) -> impl Future<Output = ApiResult<Vec<Impairment>>> + Send;
    /// `POST /v1/impairments`: add one, or renew (replace) the one with the same id.
    fn add_impairment(
        &self,
        impairment: &Impairment,
    ) -> impl Future<Output = ApiResult<Vec<Impairment>>> + Send;
    /// `DELETE /v1/impairments/{id}` (404 `not_found` when the node holds no such id).
    fn remove_impairment(
        &self,
        id: &str,
    ) -> impl Future<Output = ApiResult<Vec<Impairment>>> + Send;
}

/// A borrowed node is a node: workloads can run over a subset of the fleet (`Vec<&A>`).
impl<T: NodeApi> NodeApi for &T {
    fn name(&self) -> &str {
        (**self).name()
    }
    fn peer_id(&self) -> &str {
        (**self).peer_id()
    }
    fn healthz(&self, timeout: Duration) -> impl Future<Output = ApiResult<()>> + Send {
        (**self).healthz(timeout)
    }
    fn readiness(&self) -> impl Future<Output = ApiResult<Readiness>> + Send {
        (**self).readiness()
    }
    fn version(&self) -> impl Future<Output = ApiResult<VersionInfo>> + Send {
        (**self).version()
    }
    fn diagnostics(&self) -> impl Future<Output = ApiResult<Diagnostics>> + Send {
        (**self).diagnostics()
    }
    fn send_dm(&self, request: &DmRequest) -> impl Future<Output = ApiResult<DmResponse>> + Send {
        (**self).send_dm(request)
    }
    fn inbox(&self, query: PageQuery) -> impl Future<Output = ApiResult<InboxPage>> + Send {
        (**self).inbox(query)
    }
    fn subscribe(&self, topic: &str) -> impl Future<Output = ApiResult<()>> + Send {
        (**self).subscribe(topic)
    }
    fn unsubscribe(&self, topic: &str) -> impl Future<Output = ApiResult<()>> + Send {
        (**self).unsubscribe(topic)
    }
    fn publish(
        &self,
        topic: &str,
        request: &PublishRequest,
    ) -> impl Future<Output = ApiResult<PublishResponse>> + Send {
        (**self).publish(topic, request)
    }
    fn received(
        &self,
        topic: &str,
        query: PageQuery,
    ) -> impl Future<Output = ApiResult<ReceivedPage>> + Send {
        (**self).received(topic, query)
    }
    fn impairments(&self) -> impl Future<Output = ApiResult<Vec<Impairment>>> + Send {
        (**self).impairments()
    }
    fn add_impairment(
        &self,
        impairment: &Impairment,
    ) -> impl Future<Output = ApiResult<Vec<Impairment>>> + Send {
        (**self).add_impairment(impairment)
    }
    fn remove_impairment(
        &self,
        id: &str,
    ) -> impl Future<Output = ApiResult<Vec<Impairment>>> + Send {
        (**self).remove_impairment(id)
    }
}

/// Topic names travel in URL paths; keep them to a safe alphabet.
pub fn valid_topic(topic: &str) -> bool {
    !topic.is_empty()
        && topic.len() <= 128
        && topic
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_' || b == b'.')
}

/// [`NodeApi`] over plain HTTP (reqwest) to one node's admin API.
#[derive(Debug, Clone)]
pub struct HttpNode {
    endpoint: NodeEndpoint,
    client: reqwest::Client,
}

/// How long an idle admin-API connection is kept for reuse (below the node's idle limit).
const POOL_IDLE: Duration = Duration::from_secs(2);

/// Builds the reqwest client the orchestrator uses for admin APIs: plain HTTP, no proxy, a
/// per-request timeout.
pub fn http_client(timeout: Duration) -> Result<reqwest::Client, NodeApiErrorKind> {
    reqwest::Client::builder()
        .no_proxy()
        .timeout(timeout)
        .connect_timeout(timeout)
        // The node closes a keep-alive connection idle for `admin_header_timeout_ms` (5 s by
        // default). A pooled connection kept longer races that close: the request is written
        // as the server hangs up ("connection closed before message completed"), which at a
        // 5 s sample interval cost a sample or a Phase A pair every few minutes. Idle
        // connections are dropped well before the node would.
        .pool_idle_timeout(POOL_IDLE)
        .build()
        .map_err(|err| NodeApiErrorKind::Invalid(format!("cannot build http client: {err}")))
}

impl HttpNode {
    /// Wraps an endpoint with a shared client (see [`http_client`]).
    pub fn new(endpoint: NodeEndpoint, client: reqwest::Client) -> Self {
        HttpNode { endpoint, client }
    }

    /// The endpoint this node is reached at.
    pub fn endpoint(&self) -> &NodeEndpoint {
        &self.endpoint
    }

    fn url(&self, path: &str) -> String {
        format!("{}{}", self.endpoint.admin_url.trim_end_matches('/'), path)
    }

    fn transport_error(&self, path: &str, err: reqwest::Error) -> NodeApiError {
        let kind = if err.is_timeout() {
            NodeApiErrorKind::Timeout {
                path: path.to_owned(),
            }
        } else {
            NodeApiErrorKind::Transport {
                path: path.to_owned(),
                message: error_chain(&err),
            }
        };
        NodeApiError::new(&self.endpoint.name, kind)
    }

    async fn decode<T: DeserializeOwned>(
        &self,
        path: &str,
        response: reqwest::Response,
        accept_status: &[u16],
    ) -> ApiResult<T> {
        let status = response.status();
        let bytes = response
            .bytes()
            .await
            .map_err(|err| self.transport_error(path, err))?;
        if !status.is_success() && !accept_status.contains(&status.as_u16()) {
            let (code, message) = match serde_json::from_slice::<ApiError>(&bytes) {
                Ok(api) => (Some(api.code), api.error),
                Err(_) => (
                    None,
                    String::from_utf8_lossy(&bytes).chars().take(200).collect(),
                ),
            };
            return Err(NodeApiError::new(
                &self.endpoint.name,
                NodeApiErrorKind::Status {
                    path: path.to_owned(),
                    status: status.as_u16(),
                    code,
                    message,
                },
            ));
        }
        serde_json::from_slice(&bytes).map_err(|err| {
            NodeApiError::new(
                &self.endpoint.name,
                NodeApiErrorKind::Decode {
                    path: path.to_owned(),
                    message: err.to_string(),
                },
            )
        })
    }

    async fn get<T: DeserializeOwned>(&self, path: &str, query: Option<PageQuery>) -> ApiResult<T> {
        let response = self
            .send_retrying(path, true, || {
                let mut request = self
                    .client
                    .get(self.url(path))
                    .bearer_auth(&self.endpoint.token);
                if let Some(query) = &query {
                    request = request.query(query);
                }
                request.send()
            })
            .await?;
        self.decode(path, response, &[]).await
    }

    /// POSTs `body`; `idempotent` when sending it twice does no harm (a DM with a request id:
    /// the receiver stores it once), so a connection closed under it may be retried.
    async fn post<B: Serialize, T: DeserializeOwned>(
        &self,
        path: &str,
        body: &B,
        idempotent: bool,
    ) -> ApiResult<T> {
        let response = self
            .send_retrying(path, idempotent, || {
                self.client
                    .post(self.url(path))
                    .bearer_auth(&self.endpoint.token)
                    .json(body)
                    .send()
            })
            .await?;
        self.decode(path, response, &[]).await
    }

    /// Sends the request `send` builds. When a reused connection was closed under it (not a
    /// timeout, not a refused connect) and the request is `idempotent`, it is sent once more,
    /// on a new connection.
    async fn send_retrying<F, Fut>(
        &self,
        path: &str,
        idempotent: bool,
        send: F,
    ) -> ApiResult<reqwest::Response>
    where
        F: Fn() -> Fut,
        Fut: Future<Output = Result<reqwest::Response, reqwest::Error>>,
    {
        match send().await {
            Ok(response) => Ok(response),
            Err(err)
                if idempotent && !err.is_timeout() && !err.is_connect() && err.is_request() =>
            {
                send().await.map_err(|err| self.transport_error(path, err))
            }
            Err(err) => Err(self.transport_error(path, err)),
        }
    }

    fn topic_path(&self, topic: &str, action: &str) -> ApiResult<String> {
        if !valid_topic(topic) {
            return Err(NodeApiError::new(
                &self.endpoint.name,
                NodeApiErrorKind::Invalid(format!("topic name {topic:?} is not URL-safe")),
            ));
        }
        Ok(format!("/v1/topics/{topic}/{action}"))
    }
}

/// `reqwest::Error`'s display hides the cause; join the chain.
fn error_chain(err: &dyn std::error::Error) -> String {
    let mut text = err.to_string();
    let mut source = err.source();
    while let Some(cause) = source {
        text.push_str(": ");
        text.push_str(&cause.to_string());
        source = cause.source();
    }
    text
}

impl NodeApi for HttpNode {
    fn name(&self) -> &str {
        &self.endpoint.name
    }

    fn peer_id(&self) -> &str {
        &self.endpoint.peer_id
    }

    async fn healthz(&self, timeout: Duration) -> ApiResult<()> {
        let path = "/healthz";
        let response = self
            .client
            .get(self.url(path))
            .timeout(timeout)
            .send()
            .await
            .map_err(|err| self.transport_error(path, err))?;
        let status = response.status();
        if status.is_success() {
            Ok(())
        } else {
            Err(NodeApiError::new(
                &self.endpoint.name,
                NodeApiErrorKind::Status {
                    path: path.to_owned(),
                    status: status.as_u16(),
                    code: None,
                    message: String::new(),
                },
            ))
        }
    }

    async fn readiness(&self) -> ApiResult<Readiness> {
        let path = "/readyz";
        let response = self
            .client
            .get(self.url(path))
            .bearer_auth(&self.endpoint.token)
            .send()
            .await
            .map_err(|err| self.transport_error(path, err))?;
        self.decode(path, response, &[503]).await
    }

    async fn version(&self) -> ApiResult<VersionInfo> {
        self.get("/v1/version", None).await
    }

    async fn diagnostics(&self) -> ApiResult<Diagnostics> {
        self.get("/v1/diagnostics", None).await
    }

    async fn send_dm(&self, request: &DmRequest) -> ApiResult<DmResponse> {
        self.post("/v1/dm", request, request.request_id.is_some())
            .await
    }

    async fn inbox(&self, query: PageQuery) -> ApiResult<InboxPage> {
        self.get("/v1/dm/inbox", Some(query)).await
    }

    async fn subscribe(&self, topic: &str) -> ApiResult<()> {
        let path = self.topic_path(topic, "subscribe")?;
        let response = self
            .client
            .post(self.url(&path))
            .bearer_auth(&self.endpoint.token)
            .json(&serde_json::json!({}))
            .send()
            .await
            .map_err(|err| self.transport_error(&path, err))?;
        // The body of a successful subscribe carries nothing the workload needs.
        self.decode::<serde_json::Value>(&path, response, &[])
            .await
            .map(|_| ())
    }

    async fn unsubscribe(&self, topic: &str) -> ApiResult<()> {
        let path = self.topic_path(topic, "unsubscribe")?;
        let response = self
            .client
            .post(self.url(&path))
            .bearer_auth(&self.endpoint.token)
            .send()
            .await
            .map_err(|err| self.transport_error(&path, err))?;
        self.decode::<serde_json::Value>(&path, response, &[])
            .await
            .map(|_| ())
    }

    async fn publish(&self, topic: &str, request: &PublishRequest) -> ApiResult<PublishResponse> {
        let path = self.topic_path(topic, "publish")?;
        self.post(&path, request, false).await
    }

    async fn received(&self, topic: &str, query: PageQuery) -> ApiResult<ReceivedPage> {
        let path = self.topic_path(topic, "received")?;
        self.get(&path, Some(query)).await
    }

    async fn impairments(&self) -> ApiResult<Vec<Impairment>> {
        self.get("/v1/impairments", None).await
    }

    async fn add_impairment(&self, impairment: &Impairment) -> ApiResult<Vec<Impairment>> {
        // The same id posted again renews the one impairment.
        self.post("/v1/impairments", impairment, impairment.id.is_some())
            .await
    }

    async fn remove_impairment(&self, id: &str) -> ApiResult<Vec<Impairment>> {
        let safe = !id.is_empty()
            && id.len() <= 64
            && id
                .bytes()
                .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'_' | b'.' | b':' | b'-'));
        if !safe {
            return Err(NodeApiError::new(
                &self.endpoint.name,
                NodeApiErrorKind::Invalid(format!("impairment id {id:?} is not URL-safe")),
            ));
        }
        let path = format!("/v1/impairments/{id}");
        let response = self
            .client
            .delete(self.url(&path))
            .bearer_auth(&self.endpoint.token)
            .send()
            .await
            .map_err(|err| self.transport_error(&path, err))?;
        self.decode(&path, response, &[]).await
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn topic_names_are_restricted_to_url_safe_characters() {
        assert!(valid_topic("fanout-3-abcdef"));
        assert!(!valid_topic(""));
        assert!(!valid_topic("a/b"));
        assert!(!valid_topic("a b"));
        assert!(!valid_topic(&"x".repeat(129)));
    }

    /// A server that answers the first request of every connection and hangs up on the
    /// second without a word: what a client sees when its pooled connection is closed by the
    /// node's idle limit just as it reuses it.
    async fn hang_up_on_reuse() -> String {
        use tokio::io::{AsyncReadExt, AsyncWriteExt};
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        tokio::spawn(async move {
            for _ in 0..16 {
                let Ok((mut sock, _)) = listener.accept().await else {
                    return;
                };
                tokio::spawn(async move {
                    let mut buf = vec![0u8; 4096];
                    let n = sock.read(&mut buf).await.unwrap_or(0);
                    if n == 0 {
                        return;
                    }
                    let body = br#"{"ready":true,"checks":{}}"#;
                    let head = format!(
                        "HTTP/1.1 200 OK\r\ncontent-type: application/json\r\ncontent-length: {}\r\n\r\n",
                        body.len()
                    );
                    let _ = sock.write_all(head.as_bytes()).await;
                    let _ = sock.write_all(body).await;
                    // The next request on this connection: read, then close unanswered.
                    let _ = sock.read(&mut buf).await;
                });
            }
        });
        format!("http://{addr}")
    }

    #[tokio::test]
    async fn a_read_on_a_connection_closed_under_it_is_sent_again_not_lost() {
        let client = http_client(Duration::from_secs(5)).expect("client");
        let node = HttpNode::new(
            NodeEndpoint {
                name: "node-x".into(),
                admin_url: hang_up_on_reuse().await,
                token: "t".into(),
                peer_id: "00".into(),
            },
            client,
        );
        for k in 0..4 {
            let readiness = node.get::<serde_json::Value>("/readyz", None).await;
            assert!(readiness.is_ok(), "read {k}: {readiness:?}");
        }
    }

    #[tokio::test]
    async fn unreachable_node_is_a_transport_error_not_a_panic() {
        // Port 1 on loopback: nothing listens there, the connect is refused.
        let client = http_client(Duration::from_millis(500)).expect("client");
        let node = HttpNode::new(
            NodeEndpoint {
                name: "node-x".into(),
                admin_url: "http://127.0.0.1:1".into(),
                token: "t".into(),
                peer_id: "00".into(),
            },
            client,
        );
        let err = node.diagnostics().await.expect_err("must fail");
        assert_eq!(err.node, "node-x");
        assert!(matches!(
            err.kind,
            NodeApiErrorKind::Transport { .. } | NodeApiErrorKind::Timeout { .. }
        ));
        assert!(!err.is_not_found());
    }
}
