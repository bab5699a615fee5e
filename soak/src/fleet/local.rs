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
//!
//! Once up, the mesh offers the nemesis process control ([`LocalControl`]: restart a node with
//! the same data dir and ports — same peer id, new instance — and SIGSTOP/SIGCONT it) and a
//! supervisor that reports, once and with its cause, any node that exits on its own.

use std::path::{Path, PathBuf};
use std::process::Stdio;
use std::sync::Arc;
use std::time::Duration;

use nix::sys::signal::{Signal, kill};
use nix::unistd::Pid;
use sha2::{Digest, Sha256};
use soak_api::{ADMIN_TOKEN_FILE, NODE_INFO_FILE, NodeInfo};
use soak_gates::model::{NodeEvent, NodeEventKind};
use soak_scenarios::faults::control::{
    ControlError, ControlFuture, NodeControl, ProcessSignal, RestartReport, SignalReport,
};
use soak_scenarios::{HttpNode, NodeApi, NodeEndpoint};
use tokio::process::{Child, Command};
use tokio::sync::{Mutex, mpsc};
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
    /// Extra arguments for every node's `soak-node run` (`--node-arg`).
    pub extra_args: Vec<String>,
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
    /// After start: the nodes, shared with the nemesis' process control and the supervisor.
    shared: Option<Arc<Shared>>,
    supervisor: Option<tokio::task::JoinHandle<()>>,
}

/// The running nodes, one lock per node: a restart holds its node's lock, so the supervisor
/// never mistakes it for a crash.
struct Shared {
    config: LocalMeshConfig,
    slots: Vec<Mutex<LocalNode>>,
    names: Vec<String>,
}

/// A node that exited on its own (not stopped by `soak`), with its cause.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct NodeExit {
    /// Node name.
    pub node: String,
    /// Its pid.
    pub pid: u32,
    /// Exit code, when it exited.
    pub code: Option<i32>,
    /// Signal number, when a signal ended it.
    pub signal: Option<i32>,
    /// When the supervisor saw it, unix ms.
    pub at_ms: u64,
}

impl NodeExit {
    /// The exit as the proof stores it (`node_events.jsonl`) and the judge groups failures
    /// under: its description is `node-2 (pid 1234) exited on signal 9 (SIGKILL)` / `… exited
    /// with code 3`.
    pub fn event(&self) -> NodeEvent {
        NodeEvent {
            node: self.node.clone(),
            at_ms: self.at_ms,
            kind: NodeEventKind::Exited {
                pid: Some(self.pid),
                code: self.code,
                signal: self.signal,
                signal_name: self
                    .signal
                    .and_then(|sig| Signal::try_from(sig).ok())
                    .map(|s| s.as_str().to_owned()),
            },
        }
    }
}

/// How often the supervisor looks at the nodes.
const SUPERVISE_EVERY: Duration = Duration::from_millis(250);

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

/// Poll period of start-up waits over the whole fleet (`/readyz`, the mesh check).
const POLL: Duration = Duration::from_millis(20);
/// Poll period of the wait for one node's `node.json` (a local file): nodes start one after
/// another, so this wait is paid once per node — at 20 ms it cost a 100-node mesh about a
/// second of start-up.
const FILE_POLL: Duration = Duration::from_millis(2);
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
            shared: None,
            supervisor: None,
        };
        match mesh.bring_up(config, progress).await {
            Ok(()) => {
                let nodes = std::mem::take(&mut mesh.nodes);
                mesh.shared = Some(Arc::new(Shared {
                    config: config.clone(),
                    names: nodes.iter().map(|n| n.name.clone()).collect(),
                    slots: nodes.into_iter().map(Mutex::new).collect(),
                }));
                Ok(mesh)
            }
            Err(err) => {
                let _ = mesh.stop_all().await;
                Err(err)
            }
        }
    }

    /// Process control of the mesh's nodes, for the nemesis.
    pub fn control(&self) -> Arc<dyn NodeControl> {
        match &self.shared {
            Some(shared) => Arc::new(LocalControl(Arc::clone(shared))),
            None => Arc::new(soak_scenarios::faults::control::NoControl(
                "the local mesh is not running".into(),
            )),
        }
    }

    /// Starts the supervisor: every node that exits on its own (not stopped or restarted by
    /// `soak`) is reported once, with its cause.
    pub fn supervise(&mut self) -> mpsc::UnboundedReceiver<NodeExit> {
        let (tx, rx) = mpsc::unbounded_channel();
        if let Some(shared) = &self.shared {
            let shared = Arc::clone(shared);
            self.supervisor = Some(tokio::spawn(async move {
                let mut reported = vec![None::<u32>; shared.slots.len()];
                loop {
                    tokio::time::sleep(SUPERVISE_EVERY).await;
                    for (i, slot) in shared.slots.iter().enumerate() {
                        // A node being restarted is locked: not a crash.
                        let Ok(mut node) = slot.try_lock() else {
                            continue;
                        };
                        if reported[i] == Some(node.pid) {
                            continue;
                        }
                        if let Ok(Some(status)) = node.child.try_wait() {
                            use std::os::unix::process::ExitStatusExt;
                            reported[i] = Some(node.pid);
                            let exit = NodeExit {
                                node: node.name.clone(),
                                pid: node.pid,
                                code: status.code(),
                                signal: status.signal(),
                                at_ms: crate::runner::event::now_ms(),
                            };
                            if tx.send(exit).is_err() {
                                return;
                            }
                        }
                        drop(node);
                    }
                }
            }));
        }
        rx
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
        let node = spawn_node(config, index, bootstrap, None)?;
        self.nodes.push(node);
        Ok(())
    }

    /// Waits for `node.json` and `admin.token` of node `index`.
    async fn wait_for_info(
        &mut self,
        index: usize,
        timeout: Duration,
    ) -> Result<NodeInfo, CliError> {
        wait_for_info(&mut self.nodes[index], timeout).await
    }

    /// How to reach every node's admin API (restarts keep the same ports).
    pub fn endpoints(&self) -> Vec<NodeEndpoint> {
        self.with_nodes(|nodes| nodes.iter().filter_map(|n| n.endpoint.clone()).collect())
    }

    /// Runs `f` over the nodes wherever they live (before or after start-up finished).
    fn with_nodes<T>(&self, f: impl FnOnce(&[&LocalNode]) -> T) -> T {
        match &self.shared {
            Some(shared) => {
                let guards: Vec<_> = shared
                    .slots
                    .iter()
                    .filter_map(|s| s.try_lock().ok())
                    .collect();
                let nodes: Vec<&LocalNode> = guards.iter().map(|g| &**g).collect();
                f(&nodes)
            }
            None => {
                let nodes: Vec<&LocalNode> = self.nodes.iter().collect();
                f(&nodes)
            }
        }
    }

    /// Which build runs where.
    pub fn builds(&self) -> Vec<HostBuild> {
        self.builds.clone()
    }

    /// Every running node process.
    pub fn processes(&self) -> Vec<NodeProcess> {
        self.with_nodes(|nodes| {
            nodes
                .iter()
                .map(|n| NodeProcess {
                    name: n.name.clone(),
                    pid: n.pid,
                    log: log_path(&n.data_dir),
                })
                .collect()
        })
    }

    /// Stops every node: SIGTERM, up to [`GRACE`], then SIGKILL; reaps all.
    pub async fn shutdown(mut self) -> Result<(), CliError> {
        self.stop_all().await
    }

    async fn stop_all(&mut self) -> Result<(), CliError> {
        if let Some(supervisor) = self.supervisor.take() {
            supervisor.abort();
        }
        let shared = self.shared.take();
        let mut guards = Vec::new();
        if let Some(shared) = &shared {
            // Waits for a restart in flight to finish (its lock), then holds every node.
            for slot in &shared.slots {
                guards.push(slot.lock().await);
            }
        }
        let mut nodes: Vec<&mut LocalNode> = guards.iter_mut().map(|g| &mut **g).collect();
        nodes.extend(self.nodes.iter_mut());
        for node in &nodes {
            if let Ok(pid) = i32::try_from(node.pid) {
                // A stopped (SIGSTOP) node handles SIGTERM only once continued.
                let _ = kill(Pid::from_raw(pid), Signal::SIGCONT);
                // ESRCH (already gone) is fine: it is reaped below.
                let _ = kill(Pid::from_raw(pid), Signal::SIGTERM);
            }
        }
        let deadline = Instant::now() + GRACE;
        let mut failures = Vec::new();
        for node in nodes.iter_mut() {
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

/// Spawns node `index` (its data dir under the data root), bootstrapped with `bootstrap`;
/// `ports` pins the QUIC and admin addresses (a restart keeps the ones it had).
fn spawn_node(
    config: &LocalMeshConfig,
    index: usize,
    bootstrap: &[String],
    ports: Option<(&str, &str)>,
) -> Result<LocalNode, CliError> {
    let name = node_name(index);
    let data_dir = config.data_root.join(&name);
    std::fs::create_dir_all(&data_dir).map_err(|err| {
        CliError::unavailable(format!("cannot create {}: {err}", data_dir.display()))
    })?;
    // Appended, so a restarted node's log continues the one before.
    let log = std::fs::OpenOptions::new()
        .create(true)
        .append(true)
        .open(log_path(&data_dir))
        .map_err(|err| CliError::unavailable(format!("cannot create the log of {name}: {err}")))?;
    let log_err = log
        .try_clone()
        .map_err(|err| CliError::unavailable(format!("cannot share the log of {name}: {err}")))?;
    let (listen, admin) = ports.unwrap_or(("127.0.0.1:0", "127.0.0.1:0"));
    let mut command = Command::new(&config.node_bin);
    command
        .arg("run")
        .arg("--data-dir")
        .arg(&data_dir)
        .args(["--listen", listen, "--admin", admin]);
    // The node shuts itself down once this process is gone, so nodes never outlive a
    // SIGKILLed or crashed `soak` (kill-on-drop and the signal handlers cannot run then).
    command
        .arg("--exit-with-parent")
        .arg(std::process::id().to_string());
    if !bootstrap.is_empty() {
        command.arg("--bootstrap").arg(bootstrap.join(","));
    }
    command.args(&config.extra_args);
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
    let pid = child
        .id()
        .ok_or_else(|| CliError::unavailable(format!("{name} exited before its pid was known")))?;
    Ok(LocalNode {
        name,
        child,
        pid,
        data_dir,
        endpoint: None,
        info: None,
    })
}

/// Waits for `node.json` (written by this very process) and `admin.token` of `node`.
async fn wait_for_info(node: &mut LocalNode, timeout: Duration) -> Result<NodeInfo, CliError> {
    let deadline = Instant::now() + timeout;
    loop {
        if let Some(status) = node
            .child
            .try_wait()
            .map_err(|err| CliError::unavailable(format!("cannot watch {}: {err}", node.name)))?
        {
            return Err(CliError::unavailable(format!(
                "{} exited during start-up ({status}); last log lines:\n{}",
                node.name,
                log_tail(&log_path(&node.data_dir), 15)
            )));
        }
        // A restarted node's data dir still holds the previous process' node.json for a moment.
        if let Some((info, token)) = read_info(&node.data_dir).filter(|(i, _)| i.pid == node.pid) {
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
        tokio::time::sleep(FILE_POLL).await;
    }
}

/// Stops one node: SIGCONT (a stopped process handles SIGTERM only once continued), SIGTERM,
/// up to [`GRACE`], then SIGKILL; reaps it.
async fn stop_node(node: &mut LocalNode) -> Result<(), String> {
    if let Ok(pid) = i32::try_from(node.pid) {
        let _ = kill(Pid::from_raw(pid), Signal::SIGCONT);
        let _ = kill(Pid::from_raw(pid), Signal::SIGTERM);
    }
    let graceful = tokio::time::timeout(GRACE, node.child.wait()).await;
    if !matches!(graceful, Ok(Ok(_))) {
        node.child
            .kill()
            .await
            .map_err(|err| format!("{} (pid {}): {err}", node.name, node.pid))?;
    }
    Ok(())
}

/// Process control of a local mesh: restarts respawn a node with its data dir and ports (same
/// peer id, new instance id); signals go to the pid this mesh spawned.
struct LocalControl(Arc<Shared>);

impl LocalControl {
    fn slot(&self, node: &str) -> Result<&Mutex<LocalNode>, ControlError> {
        self.0
            .names
            .iter()
            .position(|n| n == node)
            .map(|i| &self.0.slots[i])
            .ok_or_else(|| ControlError::UnknownNode(node.to_owned()))
    }
}

fn failed(node: &str, detail: impl Into<String>) -> ControlError {
    ControlError::Failed {
        node: node.to_owned(),
        detail: detail.into(),
    }
}

impl NodeControl for LocalControl {
    fn restart_unsupported(&self) -> Option<String> {
        None
    }

    fn signal_unsupported(&self) -> Option<String> {
        None
    }

    fn restart<'a>(&'a self, node: &'a str) -> ControlFuture<'a, RestartReport> {
        Box::pin(async move {
            let index = self
                .0
                .names
                .iter()
                .position(|n| n == node)
                .ok_or_else(|| ControlError::UnknownNode(node.to_owned()))?;
            // Every other node's pinned address, for the newcomer's bootstrap (ports never
            // change, so a node being restarted at the same time is fine to list).
            let mut bootstrap = Vec::new();
            for (i, slot) in self.0.slots.iter().enumerate() {
                if i == index {
                    continue;
                }
                if let Ok(other) = slot.try_lock()
                    && let Some(info) = &other.info
                {
                    bootstrap.push(format!("{}@{}", info.peer_id, info.quic_addr));
                }
            }
            let mut slot = self.0.slots[index].lock().await;
            let old_pid = slot.pid;
            let info = slot
                .info
                .clone()
                .ok_or_else(|| failed(node, "its addresses were never known"))?;
            stop_node(&mut slot).await.map_err(|e| failed(node, e))?;
            let stopped_at_ms = crate::runner::event::now_ms();
            let mut fresh = spawn_node(
                &self.0.config,
                index,
                &bootstrap,
                Some((&info.quic_addr, &info.admin_addr)),
            )
            .map_err(|e| failed(node, e.message))?;
            let started = wait_for_info(&mut fresh, self.0.config.start_timeout).await;
            let up_at_ms = crate::runner::event::now_ms();
            let new_pid = fresh.pid;
            let data_dir = fresh.data_dir.display().to_string();
            *slot = fresh;
            started.map_err(|e| failed(node, e.message))?;
            Ok(RestartReport {
                service: format!("local soak-node process of {node} (data dir {data_dir})"),
                old_pid: Some(old_pid),
                new_pid: Some(new_pid),
                stopped_at_ms,
                up_at_ms,
            })
        })
    }

    fn signal<'a>(
        &'a self,
        node: &'a str,
        signal: ProcessSignal,
    ) -> ControlFuture<'a, SignalReport> {
        Box::pin(async move {
            let slot = self.slot(node)?.lock().await;
            let pid = i32::try_from(slot.pid).map_err(|_| failed(node, "pid out of range"))?;
            let sig = match signal {
                ProcessSignal::Stop => Signal::SIGSTOP,
                ProcessSignal::Cont => Signal::SIGCONT,
            };
            kill(Pid::from_raw(pid), sig)
                .map_err(|e| failed(node, format!("{} to pid {pid}: {e}", signal.name())))?;
            Ok(SignalReport {
                service: format!("local soak-node process of {node}"),
                pid: slot.pid,
                signal,
            })
        })
    }

    fn is_stopped(&self, node: &str) -> Option<bool> {
        let slot = self.slot(node).ok()?.try_lock().ok()?;
        let stat = std::fs::read_to_string(format!("/proc/{}/stat", slot.pid)).ok()?;
        // `pid (comm) STATE …`: the state follows the last ')'.
        let state = stat.rsplit_once(')')?.1.split_whitespace().next()?;
        Some(state == "T" || state == "t")
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
