//! Helpers for integration tests: spawn real `soak-node` processes on loopback and talk to
//! their admin API. Every child is killed in `Drop`, so none leaks even when a test panics.
#![allow(dead_code)]

use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use serde::de::DeserializeOwned;
use soak_api::{Diagnostics, DmRequest, DmResponse, InboxPage, NodeInfo};

/// Path of the binary under test.
pub fn bin() -> PathBuf {
    PathBuf::from(env!("CARGO_BIN_EXE_soak-node"))
}

/// One running node process.
pub struct NodeProc {
    child: Child,
    pub dir: PathBuf,
    pub info: NodeInfo,
    pub token: String,
    pub http: reqwest::Client,
}

impl Drop for NodeProc {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// Start `soak-node run --data-dir DIR ARGS...` and wait (polling) for its node.json.
pub async fn spawn(dir: &Path, args: &[&str]) -> NodeProc {
    spawn_with_env(dir, args, &[]).await
}

/// Like [`spawn`], with extra environment variables (e.g. `SOAK_NODE_*` settings).
pub async fn spawn_with_env(dir: &Path, args: &[&str], env: &[(&str, &str)]) -> NodeProc {
    std::fs::create_dir_all(dir).expect("create data dir");
    let log = std::fs::OpenOptions::new()
        .create(true)
        .append(true)
        .open(dir.join("node.log"))
        .expect("open node.log");
    let mut child = Command::new(bin())
        .arg("run")
        .arg("--data-dir")
        .arg(dir)
        .args(args)
        .env("SOAK_NODE_LOG", "debug")
        .envs(env.iter().copied())
        .stdout(Stdio::null())
        .stderr(log)
        .spawn()
        .expect("spawn soak-node");
    let info_path = dir.join(soak_api::NODE_INFO_FILE);
    let deadline = Instant::now() + Duration::from_secs(10);
    let info: NodeInfo = loop {
        if let Ok(text) = std::fs::read_to_string(&info_path)
            && let Ok(info) = serde_json::from_str::<NodeInfo>(&text)
            && info.pid == child.id()
        {
            break info;
        }
        if let Ok(Some(status)) = child.try_wait() {
            let log = std::fs::read_to_string(dir.join("node.log")).unwrap_or_default();
            panic!("soak-node exited early with {status}: {log}");
        }
        if Instant::now() > deadline {
            let _ = child.kill();
            panic!("soak-node did not write node.json within 10 s");
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    };
    let token = std::fs::read_to_string(dir.join(soak_api::ADMIN_TOKEN_FILE))
        .expect("admin.token")
        .trim()
        .to_string();
    let http = reqwest::Client::builder()
        .no_proxy()
        .timeout(Duration::from_secs(30))
        .build()
        .expect("http client");
    NodeProc {
        child,
        dir: dir.to_path_buf(),
        info,
        token,
        http,
    }
}

impl NodeProc {
    pub fn url(&self, path: &str) -> String {
        format!("http://{}{}", self.info.admin_addr, path)
    }

    pub fn pid(&self) -> u32 {
        self.child.id()
    }

    /// Kill the process now (SIGKILL) and wait for it.
    pub fn kill(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }

    pub async fn get(&self, path: &str) -> reqwest::Response {
        self.http
            .get(self.url(path))
            .bearer_auth(&self.token)
            .send()
            .await
            .expect("GET")
    }

    pub async fn get_json<T: DeserializeOwned>(&self, path: &str) -> T {
        let r = self.get(path).await;
        assert!(r.status().is_success(), "GET {path}: {}", r.status());
        r.json().await.expect("json body")
    }

    pub async fn diagnostics(&self) -> Diagnostics {
        self.get_json("/v1/diagnostics").await
    }

    pub async fn counter(&self, name: &str) -> u64 {
        self.diagnostics()
            .await
            .counters
            .get(name)
            .copied()
            .unwrap_or_else(|| panic!("counter {name} missing"))
    }

    pub async fn post_raw(&self, path: &str, body: impl Into<reqwest::Body>) -> reqwest::Response {
        self.http
            .post(self.url(path))
            .bearer_auth(&self.token)
            .header("content-type", "application/json")
            .body(body)
            .send()
            .await
            .expect("POST")
    }

    pub async fn dm(&self, to: &str, payload: &[u8], request_id: Option<&str>) -> DmResponse {
        use base64::Engine;
        let req = DmRequest {
            to: to.to_string(),
            payload_b64: base64::engine::general_purpose::STANDARD.encode(payload),
            request_id: request_id.map(str::to_string),
            timeout_ms: None,
        };
        let r = self
            .http
            .post(self.url("/v1/dm"))
            .bearer_auth(&self.token)
            .json(&req)
            .send()
            .await
            .expect("POST /v1/dm");
        assert_eq!(r.status(), 200, "POST /v1/dm");
        r.json().await.expect("DmResponse")
    }

    pub async fn inbox_all(&self) -> InboxPage {
        self.get_json("/v1/dm/inbox?after=0&limit=1000").await
    }

    pub async fn ready(&self) -> bool {
        self.get("/readyz").await.status() == 200
    }
}

/// Poll `f` until it holds or `within` passes.
pub async fn eventually<F, Fut>(within: Duration, mut f: F) -> bool
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = bool>,
{
    let deadline = Instant::now() + within;
    loop {
        if f().await {
            return true;
        }
        if Instant::now() > deadline {
            return false;
        }
        tokio::time::sleep(Duration::from_millis(25)).await;
    }
}
