//! The remote fleet: nodes deployed by `soak deploy` on inventory hosts, reached through SSH
//! local port-forwards (the admin APIs stay bound to 127.0.0.1 on every host).
//!
//! [`RemoteFleet::connect`] opens one SSH session per host (bounded concurrency, per-host
//! timeouts), forwards a local port to each host's `127.0.0.1:api_port`, reads the admin token
//! and `node.json` from the host, checks `/readyz` and `/v1/version`, and hashes the binary of
//! the running process (`/proc/PID/exe`), so the proof records exactly which build runs where.
//! Hosts that fail are named; the partial-fleet policy ([`PartialPolicy`]) decides whether the
//! soak goes on with the rest. Also home of the SSH plumbing `soak deploy/status/stop/logs`
//! share.

// `RemoteFleet::connect` and its options are called by `soak run -i INV` (cmd/run.rs); until
// that is wired they are only reachable from tests.
#![allow(dead_code)]

use std::path::Path;
use std::time::Duration;

use futures::StreamExt;
use soak_api::NodeInfo;
use soak_inventory::node::{self, NodeLayout};
use soak_inventory::remote::{self, ConnectOptions, Remote, RemoteError, RemoteErrorKind};
use soak_inventory::{Host, Inventory};
use soak_scenarios::{HttpNode, NodeApi, NodeEndpoint, http_client};
use tokio::time::Instant;

use super::HostBuild;
use crate::exit::CliError;

/// Default number of hosts worked on at once.
pub const DEFAULT_PARALLEL: usize = 16;

/// Timeout of one ordinary remote command.
pub const COMMAND_TIMEOUT: Duration = Duration::from_secs(60);

/// Reads an inventory; a bad one is a usage error (exit 64) naming file and line.
pub fn load_inventory(path: &Path) -> Result<Inventory, CliError> {
    Inventory::load(path).map_err(|e| CliError::usage(format!("bad inventory: {e}")))
}

/// What to do when some hosts cannot be reached or fail.
///
/// Default (`min_hosts: None`): every host must succeed, else exit 69 naming the failed
/// hosts. With `min_hosts: Some(n)`: go on with the hosts that succeeded when there are at
/// least `n` of them (the failed ones are still named, as a warning).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct PartialPolicy {
    /// Fewest hosts that must succeed; `None` = all of them.
    pub min_hosts: Option<usize>,
}

/// A host that failed, and why.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
pub struct HostFailure {
    /// Host name.
    pub host: String,
    /// The error, naming the host.
    pub error: String,
}

impl PartialPolicy {
    /// `Ok(warning)` when the run may go on (with a warning naming failed hosts, if any),
    /// `Err` (exit 69) naming the failed hosts otherwise. `what` reads like "deploy".
    pub fn judge(
        &self,
        what: &str,
        total: usize,
        failures: &[HostFailure],
    ) -> Result<Option<String>, CliError> {
        if failures.is_empty() {
            return Ok(None);
        }
        let ok = total - failures.len();
        let names: Vec<&str> = failures.iter().map(|f| f.host.as_str()).collect();
        let details: Vec<String> = failures.iter().map(|f| format!("  {}", f.error)).collect();
        let summary = format!(
            "{what} failed on {} of {total} hosts ({}):\n{}",
            failures.len(),
            names.join(", "),
            details.join("\n")
        );
        match self.min_hosts {
            Some(min) if ok >= min => Ok(Some(format!(
                "{summary}\ncontinuing with {ok} hosts (--min-hosts {min})"
            ))),
            Some(min) => Err(CliError::unavailable(format!(
                "{summary}\nonly {ok} hosts succeeded, fewer than --min-hosts {min}"
            ))),
            None => Err(CliError::unavailable(format!(
                "{summary}\nevery host must succeed (pass --min-hosts N to go on with fewer)"
            ))),
        }
    }
}

/// Runs `work` on every host with at most `parallel` at once; results in inventory order.
pub async fn for_each_host<T, F, Fut>(
    hosts: &[Host],
    parallel: usize,
    work: F,
) -> Vec<(Host, Result<T, String>)>
where
    F: Fn(Host) -> Fut,
    Fut: std::future::Future<Output = Result<T, String>>,
{
    let mut indexed: Vec<(usize, Host, Result<T, String>)> =
        futures::stream::iter(hosts.iter().cloned().enumerate())
            .map(|(i, host)| {
                let fut = work(host.clone());
                async move { (i, host, fut.await) }
            })
            .buffer_unordered(parallel.max(1))
            .collect()
            .await;
    indexed.sort_by_key(|(i, _, _)| *i);
    indexed.into_iter().map(|(_, h, r)| (h, r)).collect()
}

/// An error string for a host that does not already name it.
pub fn host_error(host: &Host, message: impl std::fmt::Display) -> String {
    format!("host `{}`: {message}", host.name)
}

/// The admin endpoint of the node on a host, through a forward opened on `remote`.
pub struct ForwardedNode {
    /// An admin API client for it (`http://127.0.0.1:<local port>`).
    pub api: HttpNode,
}

/// Opens a forward to the host's admin port and wraps it in an API client.
pub async fn forward_admin(
    remote: &dyn Remote,
    token: &str,
    peer_id: &str,
    request_timeout: Duration,
) -> Result<ForwardedNode, RemoteError> {
    let local = remote.forward(remote.host().api_port).await?;
    let client = http_client(request_timeout).map_err(|e| {
        RemoteError::new(
            remote.name(),
            RemoteErrorKind::Io {
                what: "cannot build an HTTP client".to_string(),
                detail: e.to_string(),
            },
        )
    })?;
    let endpoint = NodeEndpoint {
        name: remote.name().to_string(),
        admin_url: format!("http://{local}"),
        token: token.to_string(),
        peer_id: peer_id.to_string(),
    };
    Ok(ForwardedNode {
        api: HttpNode::new(endpoint, client),
    })
}

/// Polls `/readyz` until ready or `deadline`; the error says which checks failed last.
pub async fn wait_ready(api: &HttpNode, deadline: Instant) -> Result<(), String> {
    loop {
        let last = match api.readiness().await {
            Ok(r) if r.ready => return Ok(()),
            Ok(r) => {
                let failing: Vec<&str> = r
                    .checks
                    .iter()
                    .filter(|(_, ok)| !**ok)
                    .map(|(k, _)| k.as_str())
                    .collect();
                format!("not ready (failing checks: {})", failing.join(", "))
            }
            Err(e) => e.to_string(),
        };
        if Instant::now() >= deadline {
            return Err(last);
        }
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
}

/// Reads and parses `node.json` of the host's node.
pub async fn read_node_info(remote: &dyn Remote) -> Result<Option<NodeInfo>, String> {
    let path = NodeLayout::new(remote.host()).node_info();
    match remote.download(&path, COMMAND_TIMEOUT).await {
        Err(e) => Err(e.to_string()),
        Ok(None) => Ok(None),
        Ok(Some(bytes)) => serde_json::from_slice(&bytes)
            .map(Some)
            .map_err(|e| host_error(remote.host(), format!("{path} is not valid node.json: {e}"))),
    }
}

/// sha256 of the executable of process `pid` on the host (the running build, even if the
/// file was replaced since).
pub async fn running_binary_sha256(remote: &dyn Remote, pid: u32) -> Result<String, String> {
    let out = remote
        .run(
            "hashing the running binary",
            &format!("sha256sum /proc/{pid}/exe | cut -d' ' -f1"),
            COMMAND_TIMEOUT,
        )
        .await
        .map_err(|e| e.to_string())?;
    let sha = out.stdout_text().trim().to_string();
    if sha.len() == 64 && sha.chars().all(|c| c.is_ascii_hexdigit()) {
        Ok(sha)
    } else {
        Err(host_error(
            remote.host(),
            format!("unexpected sha256sum output `{sha}`"),
        ))
    }
}

/// The last `lines` lines of the node log, for error messages.
pub async fn log_tail(remote: &dyn Remote, lines: usize) -> String {
    match remote
        .exec(
            &node::logs_script(remote.host(), lines),
            &[],
            COMMAND_TIMEOUT,
        )
        .await
    {
        Ok(out) if out.success() => out.stdout_text(),
        _ => String::from("(no log)"),
    }
}

/// How to reach a remote fleet.
#[derive(Debug, Clone)]
pub struct RemoteFleetOptions {
    /// SSH connection settings (connect timeout, control-socket dir).
    pub connect: ConnectOptions,
    /// Hosts connected at once.
    pub parallel: usize,
    /// Per-request timeout of admin API calls through the forwards.
    pub request_timeout: Duration,
    /// How long each node gets to answer `/readyz` with ready.
    pub ready_timeout: Duration,
    /// What to do when hosts fail.
    pub policy: PartialPolicy,
}

impl Default for RemoteFleetOptions {
    fn default() -> Self {
        RemoteFleetOptions {
            connect: ConnectOptions::default(),
            parallel: DEFAULT_PARALLEL,
            request_timeout: Duration::from_secs(10),
            ready_timeout: Duration::from_secs(30),
            policy: PartialPolicy::default(),
        }
    }
}

/// One connected host.
struct RemoteNode {
    remote: Box<dyn Remote>,
    endpoint: NodeEndpoint,
    build: HostBuild,
}

/// Nodes on inventory hosts, reached through SSH local port-forwards.
pub struct RemoteFleet {
    nodes: Vec<RemoteNode>,
    missing: Vec<HostFailure>,
    warning: Option<String>,
}

impl RemoteFleet {
    /// Connects to every host of the inventory at `inventory_path` (see the module docs).
    ///
    /// Errors: a bad inventory is a usage error (64); hosts that fail beyond what
    /// `options.policy` allows end it with 69, naming them.
    pub async fn connect(
        inventory_path: &Path,
        options: &RemoteFleetOptions,
    ) -> Result<RemoteFleet, CliError> {
        let inventory = load_inventory(inventory_path)?;
        let total = inventory.hosts.len();
        let results = for_each_host(&inventory.hosts, options.parallel, |host| {
            attach(host, options)
        })
        .await;
        let mut nodes = Vec::new();
        let mut missing = Vec::new();
        for (host, result) in results {
            match result {
                Ok(node) => nodes.push(node),
                Err(error) => missing.push(HostFailure {
                    host: host.name,
                    error,
                }),
            }
        }
        match options
            .policy
            .judge("connecting to the fleet", total, &missing)
        {
            Ok(warning) if !nodes.is_empty() => Ok(RemoteFleet {
                nodes,
                missing,
                warning,
            }),
            Ok(_) => {
                close_all(nodes).await;
                Err(CliError::unavailable(
                    "no host of the inventory could be reached",
                ))
            }
            Err(err) => {
                close_all(nodes).await;
                Err(err)
            }
        }
    }

    /// How to reach every node's admin API (`http://127.0.0.1:<forwarded port>`).
    pub fn endpoints(&self) -> Vec<NodeEndpoint> {
        self.nodes.iter().map(|n| n.endpoint.clone()).collect()
    }

    /// Which build runs where.
    pub fn builds(&self) -> Vec<HostBuild> {
        self.nodes.iter().map(|n| n.build.clone()).collect()
    }

    /// Hosts left out under the partial-fleet policy, with why.
    pub fn missing(&self) -> &[HostFailure] {
        &self.missing
    }

    /// The warning naming left-out hosts, if any (print it).
    pub fn warning(&self) -> Option<&str> {
        self.warning.as_deref()
    }

    /// Closes forwards and SSH sessions. The nodes keep running (`soak stop` stops them).
    pub async fn shutdown(self) -> Result<(), CliError> {
        let errors = close_all(self.nodes).await;
        if errors.is_empty() {
            Ok(())
        } else {
            Err(CliError::unavailable(format!(
                "closing SSH sessions: {}",
                errors.join("; ")
            )))
        }
    }
}

async fn close_all(nodes: Vec<RemoteNode>) -> Vec<String> {
    let closes = nodes.into_iter().map(|n| n.remote.close());
    futures::future::join_all(closes)
        .await
        .into_iter()
        .filter_map(|r| r.err().map(|e| e.to_string()))
        .collect()
}

async fn attach(host: Host, options: &RemoteFleetOptions) -> Result<RemoteNode, String> {
    let remote = remote::connect(&host, &options.connect)
        .await
        .map_err(|e| e.to_string())?;
    match attach_on(remote.as_ref(), options).await {
        Ok((endpoint, build)) => Ok(RemoteNode {
            remote,
            endpoint,
            build,
        }),
        Err(e) => {
            let _ = remote.close().await;
            Err(e)
        }
    }
}

async fn attach_on(
    remote: &dyn Remote,
    options: &RemoteFleetOptions,
) -> Result<(NodeEndpoint, HostBuild), String> {
    let host = remote.host().clone();
    let token = node::read_token(remote, COMMAND_TIMEOUT)
        .await
        .map_err(|e| e.to_string())?;
    let info = read_node_info(remote).await?.ok_or_else(|| {
        host_error(
            &host,
            "no node.json: the node is not running; run `soak deploy` first",
        )
    })?;
    let forwarded = forward_admin(remote, &token, &info.peer_id, options.request_timeout)
        .await
        .map_err(|e| e.to_string())?;
    wait_ready(&forwarded.api, Instant::now() + options.ready_timeout)
        .await
        .map_err(|e| host_error(&host, format!("node not ready: {e}")))?;
    let version = forwarded
        .api
        .version()
        .await
        .map_err(|e| host_error(&host, format!("/v1/version: {e}")))?;
    if version.peer_id != info.peer_id {
        return Err(host_error(
            &host,
            format!(
                "node.json names peer {} but the admin API on port {} answers as {}: another process owns the port",
                info.peer_id, host.api_port, version.peer_id
            ),
        ));
    }
    let sha = running_binary_sha256(remote, info.pid).await?;
    let endpoint = forwarded.api.endpoint().clone();
    let build = HostBuild {
        host: host.name.clone(),
        binary_sha256: sha,
        version: version.version,
        git: version.git,
        started_at_ms: info.started_at_ms,
    };
    Ok((endpoint, build))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn failures(names: &[&str]) -> Vec<HostFailure> {
        names
            .iter()
            .map(|n| HostFailure {
                host: n.to_string(),
                error: format!("host `{n}`: cannot connect"),
            })
            .collect()
    }

    #[test]
    fn default_policy_stops_naming_every_failed_host() {
        let err = PartialPolicy::default()
            .judge("deploy", 4, &failures(&["h2", "h4"]))
            .err();
        let err = err.expect("must stop");
        assert_eq!(err.exit, crate::exit::Exit::Unavailable);
        assert!(
            err.message
                .starts_with("deploy failed on 2 of 4 hosts (h2, h4):"),
            "{}",
            err.message
        );
        assert!(
            err.message.contains("host `h4`: cannot connect"),
            "{}",
            err.message
        );
    }

    #[test]
    fn min_hosts_allows_going_on_with_a_warning() {
        let policy = PartialPolicy { min_hosts: Some(3) };
        let warning = policy
            .judge("deploy", 4, &failures(&["h2"]))
            .ok()
            .flatten()
            .unwrap_or_default();
        assert!(warning.contains("continuing with 3 hosts"), "{warning}");
        assert!(policy.judge("deploy", 4, &failures(&["h1", "h2"])).is_err());
        assert_eq!(policy.judge("deploy", 4, &[]).ok(), Some(None));
    }
}
