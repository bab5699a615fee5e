//! The local mesh: N `soak-node` processes on loopback, each with its own data dir and free
//! ports (port 0; the node reports what it bound in `node.json`).
//!
//! Start-up never sleeps for a fixed time: it waits for each `node.json`, then for `/readyz`,
//! then until every node's diagnostics list all N−1 other peers, each step polled with a
//! deadline. Nodes run in their own process group (a Ctrl-C on the terminal reaches `soak`,
//! which then takes final samples and stops them in order), are killed on drop, and are
//! stopped explicitly by [`LocalMesh::shutdown`]: SIGTERM, a grace period, then SIGKILL. If
//! `soak` dies without running any of that (SIGKILL, a hard crash), each node notices on its
//! own: it is started with `--exit-with-parent <soak's pid>` and shuts down within ~250 ms.

use std::path::{Path, PathBuf};
use std::process::Stdio;
use std::time::Duration;

use nix::sys::signal::{Signal, kill};
use nix::unistd::Pid;
use sha2::{Digest, Sha256};
use soak_api::{ADMIN_TOKEN_FILE, NODE_INFO_FILE, NodeInfo};
use soak_scenarios::{HttpNode, NodeApi, NodeEndpoint};
use tokio::process::{Child, Command};
use tokio::time::Instant;

use super::HostBuild;
use crate::exit::CliError;

/// How to start a local mesh.
#[derive(Debug, Clone)]
pub struct LocalMeshConfig {
    /// Number of nodes (at least 1).
    pub nodes: usize,
    /// The `soak-node` binary.
    pub node_bin: PathBuf,
    /// Directory that receives one data dir per node (`node-0`, `node-1`, …).
    pub data_root: PathBuf,
    /// Deadline for each start-up step (files written, ready, mesh formed).
    pub start_timeout: Duration,
    /// Client used to reach the admin APIs.
    pub client: reqwest::Client,
}

/// One spawned node.
struct LocalNode {
    name: String,
    child: Child,
    pid: u32,
    data_dir: PathBuf,
    endpoint: Option<NodeEndpoint>,
    info: Option<NodeInfo>,
}

/// A running local mesh.
pub struct LocalMesh {
    nodes: Vec<LocalNode>,
    builds: Vec<HostBuild>,
}

/// A spawned node process, as recorded in the proof (so a test can check none is left).
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
pub struct NodeProcess {
    /// Node name.
    pub name: String,
    /// Operating-system process id.
    pub pid: u32,
    /// Its log file (stdout and stderr).
    pub log: PathBuf,
}

/// Poll period of start-up waits.
const POLL: Duration = Duration::from_millis(20);
/// How long a node gets between SIGTERM and SIGKILL.
const GRACE: Duration = Duration::from_secs(5);

/// Name of node `index`.
pub fn node_name(index: usize) -> String {
    format!("node-{index}")
}

/// Log file of a node's data dir.
pub fn log_path(data_dir: &Path) -> PathBuf {
    data_dir.join("node.log")
}

impl LocalMesh {
    /// Spawns the mesh and waits until every node is ready and knows every other node.
    /// On any failure every node already spawned is stopped before the error returns.
    pub async fn start(
        config: &LocalMeshConfig,
        progress: &dyn Fn(&str),
    ) -> Result<Self, CliError> {
        let mut mesh = LocalMesh {
            nodes: Vec::with_capacity(config.nodes),
            builds: Vec::new(),
        };
        match mesh.bring_up(config, progress).await {
            Ok(()) => Ok(mesh),
            Err(err) => {
                let _ = mesh.stop_all().await;
                Err(err)
            }
        }
    }

    async fn bring_up(
        &mut self,
        config: &LocalMeshConfig,
        progress: &dyn Fn(&str),
    ) -> Result<(), CliError> {
        if config.nodes == 0 {
            return Err(CliError::usage("a local mesh needs at least one node"));
        }
        std::fs::create_dir_all(&config.data_root).map_err(|err| {
            CliError::unavailable(format!(
                "cannot create the node data root {}: {err}",
                config.data_root.display()
            ))
        })?;
        progress(&format!(
            "starting {} soak-node processes ({})",
            config.nodes,
            config.node_bin.display()
        ));
        let started = std::time::Instant::now();
        // Hash the binary while the mesh comes up (it can be 100+ MB in debug builds).
        let digest = tokio::task::spawn_blocking({
            let path = config.node_bin.clone();
            move || -> std::io::Result<String> {
                let bytes = std::fs::read(&path)?;
                Ok(hex::encode(Sha256::digest(&bytes)))
            }
        });
        // Nodes start one after another, each bootstrapped (pinned by peer id) with every node
        // already listening: the newcomer dials them all, so every node learns every other
        // directly instead of waiting for membership exchange rounds.
        let mut bootstrap = Vec::with_capacity(config.nodes);
        for index in 0..config.nodes {
            self.spawn(config, index, &bootstrap)?;
            let info = self.wait_for_info(index, config.start_timeout).await?;
            bootstrap.push(format!("{}@{}", info.peer_id, info.quic_addr));
        }
        let endpoints = self.endpoints();
        let api: Vec<HttpNode> = endpoints
            .iter()
            .cloned()
            .map(|e| HttpNode::new(e, config.client.clone()))
            .collect();
        progress(&format!(
            "every node listens ({} ms); waiting for /readyz",
            started.elapsed().as_millis()
        ));
        wait_until_ready(&api, config.start_timeout).await?;
        progress(&format!(
            "every node is ready ({} ms); waiting until each knows all {} others",
            started.elapsed().as_millis(),
            config.nodes - 1
        ));
        wait_for_full_mesh(&api, config.start_timeout).await?;
        let digest = digest
            .await
            .map_err(|err| CliError::unavailable(format!("hashing the node binary failed: {err}")))?
            .map_err(|err| CliError::unavailable(format!("cannot read the node binary: {err}")))?;
        self.builds = builds(digest, &api, &self.nodes).await;
        Ok(())
    }

    fn spawn(
        &mut self,
        config: &LocalMeshConfig,
        index: usize,
        bootstrap: &[String],
    ) -> Result<(), CliError> {
        let name = node_name(index);
        let data_dir = config.data_root.join(&name);
        std::fs::create_dir_all(&data_dir).map_err(|err| {
            CliError::unavailable(format!("cannot create {}: {err}", data_dir.display()))
        })?;
        let log = std::fs::File::create(log_path(&data_dir)).map_err(|err| {
            CliError::unavailable(format!("cannot create the log of {name}: {err}"))
        })?;
        let log_err = log.try_clone().map_err(|err| {
            CliError::unavailable(format!("cannot share the log of {name}: {err}"))
        })?;
        let mut command = Command::new(&config.node_bin);
        command.arg("run").arg("--data-dir").arg(&data_dir).args([
            "--listen",
            "127.0.0.1:0",
            "--admin",
            "127.0.0.1:0",
        ]);
        // The node shuts itself down once this process is gone, so nodes never outlive a
        // SIGKILLed or crashed `soak` (kill-on-drop and the signal handlers cannot run then).
        command
            .arg("--exit-with-parent")
            .arg(std::process::id().to_string());
        if !bootstrap.is_empty() {
            command.arg("--bootstrap").arg(bootstrap.join(","));
        }
        command
            .stdin(Stdio::null())
            .stdout(Stdio::from(log))
            .stderr(Stdio::from(log_err))
            .kill_on_drop(true)
            // Own process group: a terminal Ctrl-C goes to `soak`, which stops nodes in order.
            .process_group(0);
        let child = command.spawn().map_err(|err| {
            CliError::unavailable(format!(
                "cannot start {} for {name}: {err}",
                config.node_bin.display()
            ))
        })?;
        let pid = child.id().ok_or_else(|| {
            CliError::unavailable(format!("{name} exited before its pid was known"))
        })?;
        self.nodes.push(LocalNode {
            name,
            child,
            pid,
            data_dir,
            endpoint: None,
            info: None,
        });
        Ok(())
    }

    /// Waits for `node.json` and `admin.token` of node `index`.
    async fn wait_for_info(
        &mut self,
        index: usize,
        timeout: Duration,
    ) -> Result<NodeInfo, CliError> {
        let deadline = Instant::now() + timeout;
        let node = &mut self.nodes[index];
        loop {
            if let Some(status) = node.child.try_wait().map_err(|err| {
                CliError::unavailable(format!("cannot watch {}: {err}", node.name))
            })? {
                return Err(CliError::unavailable(format!(
                    "{} exited during start-up ({status}); last log lines:\n{}",
                    node.name,
                    log_tail(&log_path(&node.data_dir), 15)
                )));
            }
            if let Some((info, token)) = read_info(&node.data_dir) {
                node.endpoint = Some(NodeEndpoint {
                    name: node.name.clone(),
                    admin_url: format!("http://{}", info.admin_addr),
                    token,
                    peer_id: info.peer_id.clone(),
                });
                node.info = Some(info.clone());
                return Ok(info);
            }
            if Instant::now() >= deadline {
                return Err(CliError::unavailable(format!(
                    "{} did not write {NODE_INFO_FILE} within {}; last log lines:\n{}",
                    node.name,
                    humantime::format_duration(timeout),
                    log_tail(&log_path(&node.data_dir), 15)
                )));
            }
            tokio::time::sleep(POLL).await;
        }
    }

    /// How to reach every node's admin API.
    pub fn endpoints(&self) -> Vec<NodeEndpoint> {
        self.nodes
            .iter()
            .filter_map(|n| n.endpoint.clone())
            .collect()
    }

    /// Which build runs where.
    pub fn builds(&self) -> Vec<HostBuild> {
        self.builds.clone()
    }

    /// Every spawned process.
    pub fn processes(&self) -> Vec<NodeProcess> {
        self.nodes
            .iter()
            .map(|n| NodeProcess {
                name: n.name.clone(),
                pid: n.pid,
                log: log_path(&n.data_dir),
            })
            .collect()
    }

    /// Stops every node: SIGTERM, up to [`GRACE`], then SIGKILL; reaps all.
    pub async fn shutdown(mut self) -> Result<(), CliError> {
        self.stop_all().await
    }

    async fn stop_all(&mut self) -> Result<(), CliError> {
        for node in &self.nodes {
            if let Ok(pid) = i32::try_from(node.pid) {
                // ESRCH (already gone) is fine: it is reaped below.
                let _ = kill(Pid::from_raw(pid), Signal::SIGTERM);
            }
        }
        let deadline = Instant::now() + GRACE;
        let mut failures = Vec::new();
        for node in &mut self.nodes {
            let graceful = tokio::time::timeout_at(deadline, node.child.wait()).await;
            if !matches!(graceful, Ok(Ok(_)))
                && let Err(err) = node.child.kill().await
            {
                failures.push(format!("{} (pid {}): {err}", node.name, node.pid));
            }
        }
        if failures.is_empty() {
            Ok(())
        } else {
            Err(CliError::unavailable(format!(
                "could not stop every node: {}",
                failures.join("; ")
            )))
        }
    }
}

fn read_info(data_dir: &Path) -> Option<(NodeInfo, String)> {
    let text = std::fs::read_to_string(data_dir.join(NODE_INFO_FILE)).ok()?;
    let info: NodeInfo = serde_json::from_str(&text).ok()?;
    let token = std::fs::read_to_string(data_dir.join(ADMIN_TOKEN_FILE)).ok()?;
    let token = token.trim().to_owned();
    (!token.is_empty()).then_some((info, token))
}

/// The last `lines` lines of a log file, for error messages.
pub fn log_tail(path: &Path, lines: usize) -> String {
    match std::fs::read_to_string(path) {
        Ok(text) => {
            let all: Vec<&str> = text.lines().collect();
            all[all.len().saturating_sub(lines)..].join("\n")
        }
        Err(err) => format!("(no log at {}: {err})", path.display()),
    }
}

async fn wait_until_ready(nodes: &[HttpNode], timeout: Duration) -> Result<(), CliError> {
    let deadline = Instant::now() + timeout;
    loop {
        let answers = futures::future::join_all(nodes.iter().map(|n| n.readiness())).await;
        let not_ready: Vec<String> = nodes
            .iter()
            .zip(&answers)
            .filter_map(|(node, answer)| match answer {
                Ok(r) if r.ready => None,
                Ok(r) => Some(format!(
                    "{} (failing checks: {})",
                    node.name(),
                    r.checks
                        .iter()
                        .filter(|(_, ok)| !**ok)
                        .map(|(name, _)| name.as_str())
                        .collect::<Vec<_>>()
                        .join(", ")
                )),
                Err(err) => Some(err.to_string()),
            })
            .collect();
        if not_ready.is_empty() {
            return Ok(());
        }
        if Instant::now() >= deadline {
            return Err(CliError::unavailable(format!(
                "nodes not ready within {}: {}",
                humantime::format_duration(timeout),
                not_ready.join("; ")
            )));
        }
        tokio::time::sleep(POLL).await;
    }
}

/// Waits until every node's diagnostics list every other node's peer id.
pub async fn wait_for_full_mesh<A: NodeApi>(
    nodes: &[A],
    timeout: Duration,
) -> Result<(), CliError> {
    let deadline = Instant::now() + timeout;
    loop {
        let diagnostics = futures::future::join_all(nodes.iter().map(|n| n.diagnostics())).await;
        let mut lacking = Vec::new();
        for (node, diag) in nodes.iter().zip(&diagnostics) {
            match diag {
                Ok(diag) => {
                    let missing = nodes
                        .iter()
                        .filter(|other| other.peer_id() != node.peer_id())
                        .filter(|other| !diag.peers.iter().any(|p| p.peer_id == other.peer_id()))
                        .count();
                    if missing > 0 {
                        lacking.push(format!("{} misses {missing} peers", node.name()));
                    }
                }
                Err(err) => lacking.push(err.to_string()),
            }
        }
        if lacking.is_empty() {
            return Ok(());
        }
        if Instant::now() >= deadline {
            return Err(CliError::unavailable(format!(
                "the mesh did not form within {}: {}",
                humantime::format_duration(timeout),
                lacking.join("; ")
            )));
        }
        tokio::time::sleep(POLL).await;
    }
}

async fn builds(digest: String, api: &[HttpNode], nodes: &[LocalNode]) -> Vec<HostBuild> {
    let versions = futures::future::join_all(api.iter().map(|n| n.version())).await;
    nodes
        .iter()
        .zip(versions)
        .map(|(node, version)| {
            let (version, git) = match version {
                Ok(v) => (v.version, v.git),
                Err(_) => ("unknown".to_owned(), "unknown".to_owned()),
            };
            HostBuild {
                host: node.name.clone(),
                binary_sha256: digest.clone(),
                version,
                git,
                started_at_ms: node.info.as_ref().map(|i| i.started_at_ms).unwrap_or(0),
            }
        })
        .collect()
}
