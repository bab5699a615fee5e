//! The remote fleet: nodes deployed by `soak deploy` on inventory hosts, reached through SSH
//! local port-forwards (the admin APIs stay bound to 127.0.0.1 on every host).
//!
//! [`RemoteFleet::connect`] opens one SSH session per host (bounded concurrency, per-host
//! timeouts), forwards a local port to each host's `127.0.0.1:api_port`, reads the admin token
//! and `node.json` from the host, checks `/readyz` and `/v1/version`, and hashes the binary of
//! the running process (`/proc/PID/exe`), so the proof records exactly which build runs where.
//! Hosts that fail are named; the partial-fleet policy ([`PartialPolicy`]) decides whether the
//! soak goes on with the rest. Then, like the local mesh, it waits until every reached node
//! lists every other reached node as a peer. Also home of the SSH plumbing that
//! `soak deploy/status/stop/logs` share.

use std::path::Path;
use std::sync::Arc;
use std::time::Duration;

use futures::StreamExt;
use soak_api::NodeInfo;
use soak_inventory::node;
use soak_inventory::remote::{
    self, ConnectOptions, Elevated, Needs, Remote, RemoteError, RemoteErrorKind,
};
use soak_inventory::{Host, HostPattern, Inventory};
use soak_scenarios::{HttpNode, NodeApi, NodeEndpoint, http_client};
use tokio::time::Instant;

use super::HostBuild;
use super::control::{ControlledHost, Link, RemoteControl};
use super::error::HostError;
use crate::exit::CliError;
use crate::output::errln;

/// Default number of hosts worked on at once.
pub const DEFAULT_PARALLEL: usize = 16;

/// Timeout of one ordinary remote command.
pub const COMMAND_TIMEOUT: Duration = Duration::from_secs(60);

/// Reads an inventory; a bad one is a usage error (exit 64) naming file and line. Variables
/// it read but does not apply (Ansible variables that change how a host is reached) are named
/// on stderr, one warning each.
pub fn load_inventory(path: &Path) -> Result<Inventory, CliError> {
    let inventory =
        Inventory::load(path).map_err(|e| CliError::usage(format!("bad inventory: {e}")))?;
    for warning in &inventory.warnings {
        errln!("soak: warning: {}", warning.describe(path));
    }
    Ok(inventory)
}

/// Parses a `--limit` host pattern (clap value parser).
pub fn parse_limit(text: &str) -> Result<HostPattern, String> {
    HostPattern::parse(text)
}

/// The hosts `--limit` selects (every host without one). Terms that match nothing are named
/// on stderr; a pattern that selects no host is a usage error.
pub fn limit_hosts(
    inventory: &Inventory,
    limit: Option<&HostPattern>,
) -> Result<Vec<Host>, CliError> {
    let Some(pattern) = limit else {
        return Ok(inventory.hosts.clone());
    };
    let selection = pattern.select(inventory);
    for term in &selection.unmatched {
        errln!(
            "soak: warning: --limit term `{term}` matches no host or group of {}",
            inventory.source.display()
        );
    }
    if selection.hosts.is_empty() {
        return Err(CliError::usage(format!(
            "--limit `{}` selects no host of {}",
            pattern.as_str(),
            inventory.source.display()
        )));
    }
    Ok(selection.hosts)
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

impl HostFailure {
    /// The failure of `host` with `error` (which names it).
    pub fn of(host: &Host, error: &HostError) -> Self {
        HostFailure {
            host: host.name.clone(),
            error: error.to_string(),
        }
    }
}

/// Runs `work` on every host with at most `parallel` at once; results in inventory order.
pub async fn for_each_host<T, E, F, Fut>(
    hosts: &[Host],
    parallel: usize,
    work: F,
) -> Vec<(Host, Result<T, E>)>
where
    F: Fn(Host) -> Fut,
    Fut: std::future::Future<Output = Result<T, E>>,
{
    let mut indexed: Vec<(usize, Host, Result<T, E>)> =
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

/// Why a node did not become ready: what `/readyz` said last (failing checks or the error).
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{0}")]
pub struct NotReady(pub String);

/// Polls `/readyz` until ready or `deadline`; the error says which checks failed last.
pub async fn wait_ready(api: &HttpNode, deadline: Instant) -> Result<(), NotReady> {
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
            return Err(NotReady(last));
        }
        tokio::time::sleep(Duration::from_millis(200)).await;
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
    /// `--limit`: which inventory hosts make the fleet (all without one).
    pub limit: Option<HostPattern>,
}

impl Default for RemoteFleetOptions {
    fn default() -> Self {
        RemoteFleetOptions {
            connect: ConnectOptions::default(),
            parallel: DEFAULT_PARALLEL,
            request_timeout: Duration::from_secs(10),
            ready_timeout: Duration::from_secs(30),
            policy: PartialPolicy::default(),
            limit: None,
        }
    }
}

/// One connected host.
struct RemoteNode {
    /// The SSH session (its forward carries the admin API).
    remote: Arc<Link>,
    endpoint: NodeEndpoint,
    build: HostBuild,
    /// The node's overlay address as it bound it (host faults shape and cut exactly this).
    overlay: Option<std::net::SocketAddr>,
}

/// Nodes on inventory hosts, reached through SSH local port-forwards.
pub struct RemoteFleet {
    nodes: Vec<RemoteNode>,
    missing: Vec<HostFailure>,
    warning: Option<String>,
    connect: ConnectOptions,
    /// Sessions host faults opened again after a loss (closed with the fleet).
    spare: Arc<std::sync::Mutex<Vec<Arc<Link>>>>,
}

impl RemoteFleet {
    /// Connects to every host of the inventory at `inventory_path` that `options.limit`
    /// selects (see the module docs).
    ///
    /// Errors: a bad inventory is a usage error (64); hosts that fail beyond what
    /// `options.policy` allows end it with 69, naming them.
    pub async fn connect(
        inventory_path: &Path,
        options: &RemoteFleetOptions,
    ) -> Result<RemoteFleet, CliError> {
        let inventory = load_inventory(inventory_path)?;
        let hosts = limit_hosts(&inventory, options.limit.as_ref())?;
        let total = hosts.len();
        let results = for_each_host(&hosts, options.parallel, |host| attach(host, options)).await;
        let mut nodes = Vec::new();
        let mut missing = Vec::new();
        for (host, result) in results {
            match result {
                Ok(node) => nodes.push(node),
                Err(error) => missing.push(HostFailure::of(&host, &error)),
            }
        }
        match options
            .policy
            .judge("connecting to the fleet", total, &missing)
        {
            Ok(warning) if !nodes.is_empty() => {
                // Like the local mesh: the soak starts once every reached node lists every
                // other reached node as a peer.
                let apis: Vec<HttpNode> = match http_client(options.request_timeout) {
                    Ok(client) => nodes
                        .iter()
                        .map(|n| HttpNode::new(n.endpoint.clone(), client.clone()))
                        .collect(),
                    Err(e) => {
                        close_all(nodes).await;
                        return Err(CliError::unavailable(format!(
                            "cannot build an HTTP client: {e}"
                        )));
                    }
                };
                if let Err(err) =
                    super::local::wait_for_full_mesh(&apis, options.ready_timeout).await
                {
                    close_all(nodes).await;
                    return Err(err);
                }
                Ok(RemoteFleet {
                    nodes,
                    missing,
                    warning,
                    connect: options.connect.clone(),
                    spare: Arc::default(),
                })
            }
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

    /// Process control and host access for the nemesis: restarts through the deploy's service
    /// path, guarded pauses, and the hosts' sessions for host faults (`lease`: their guards'
    /// lease; `run_id` tags what they create).
    pub fn control(&self, run_id: &str, lease: Duration) -> Arc<RemoteControl> {
        let hosts = self
            .nodes
            .iter()
            .map(|n| {
                ControlledHost::new(
                    n.endpoint.name.clone(),
                    n.remote.host().clone(),
                    n.overlay,
                    Arc::clone(&n.remote),
                )
            })
            .collect();
        Arc::new(RemoteControl::new(
            run_id,
            lease,
            self.connect.clone(),
            hosts,
            Arc::clone(&self.spare),
        ))
    }

    /// Closes forwards and SSH sessions. The nodes keep running (`soak stop` stops them).
    pub async fn shutdown(self) -> Result<(), CliError> {
        let spare: Vec<Arc<Link>> = match self.spare.lock() {
            Ok(mut list) => list.drain(..).collect(),
            Err(poisoned) => poisoned.into_inner().drain(..).collect(),
        };
        let mut errors = close_links(spare).await;
        errors.extend(close_all(self.nodes).await);
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
    close_links(nodes.into_iter().map(|n| n.remote).collect()).await
}

/// Closes every session no one else holds any more (one still held is dropped with its holder).
async fn close_links(links: Vec<Arc<Link>>) -> Vec<String> {
    let closes = links
        .into_iter()
        .filter_map(|l| Arc::try_unwrap(l).ok())
        .map(|l| Box::new(l).close());
    futures::future::join_all(closes)
        .await
        .into_iter()
        .filter_map(|r| r.err().map(|e| e.to_string()))
        .collect()
}

async fn attach(host: Host, options: &RemoteFleetOptions) -> Result<RemoteNode, HostError> {
    let remote = remote::connect(&host, &options.connect).await?;
    // Reading the token of an install made with `become` needs the same privilege.
    match attach_on(&Elevated::new(remote.as_ref(), Needs::InstallDir), options).await {
        Ok((endpoint, build, overlay)) => Ok(RemoteNode {
            remote: Arc::new(Link::new(remote)),
            endpoint,
            build,
            overlay,
        }),
        Err(e) => {
            let _ = remote.close().await;
            Err(e)
        }
    }
}

/// The node's overlay address: what it bound (`node.json`), else the inventory address when
/// the node bound every address.
fn overlay_address(host: &Host, info: &NodeInfo) -> Option<std::net::SocketAddr> {
    let bound: std::net::SocketAddr = info.quic_addr.parse().ok()?;
    if !bound.ip().is_unspecified() {
        return Some(bound);
    }
    let ip: std::net::IpAddr = host.address.parse().ok()?;
    Some(std::net::SocketAddr::new(ip, bound.port()))
}

async fn attach_on(
    remote: &dyn Remote,
    options: &RemoteFleetOptions,
) -> Result<(NodeEndpoint, HostBuild, Option<std::net::SocketAddr>), HostError> {
    let host = remote.host().clone();
    // One round trip: token, node.json and the hash of the running executable.
    let probe = node::probe(remote, false, COMMAND_TIMEOUT).await?;
    let not_deployed = |what: &str| HostError::not_deployed(&host, what);
    let pid = probe
        .running_pid
        .ok_or_else(|| not_deployed("soak-node is not running"))?;
    let token = probe
        .token
        .clone()
        .ok_or_else(|| not_deployed("no admin token"))?;
    let info: NodeInfo = probe
        .node_json
        .as_deref()
        .ok_or_else(|| not_deployed("no node.json"))
        .and_then(|j| {
            serde_json::from_str(j)
                .map_err(|e| HostError::node(&host, format!("node.json is not valid: {e}")))
        })?;
    if info.pid != pid {
        return Err(HostError::node(
            &host,
            format!(
                "node.json names pid {} but pid {pid} runs; redeploy with --restart",
                info.pid
            ),
        ));
    }
    let sha = probe
        .running_sha256
        .clone()
        .ok_or_else(|| HostError::node(&host, "cannot hash the running binary"))?;
    let forwarded = forward_admin(remote, &token, &info.peer_id, options.request_timeout).await?;
    wait_ready(&forwarded.api, Instant::now() + options.ready_timeout)
        .await
        .map_err(|e| HostError::node(&host, format!("node not ready: {e}")))?;
    let version = forwarded
        .api
        .version()
        .await
        .map_err(|e| HostError::node(&host, format!("/v1/version: {e}")))?;
    if version.peer_id != info.peer_id {
        return Err(HostError::node(
            &host,
            format!(
                "node.json names peer {} but the admin API on port {} answers as {}: another process owns the port",
                info.peer_id, host.api_port, version.peer_id
            ),
        ));
    }
    let endpoint = forwarded.api.endpoint().clone();
    let build = HostBuild {
        host: host.name.clone(),
        binary_sha256: sha,
        version: version.version,
        git: version.git,
        started_at_ms: info.started_at_ms,
    };
    Ok((endpoint, build, overlay_address(&host, &info)))
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

    /// Deploys a 3-host fleet over a real sshd (skips without root/sshd), then checks that
    /// `RemoteFleet::connect` reaches every node through SSH forwards, records the running
    /// build, applies the partial policy, and that shutdown closes forwards but not nodes.
    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn remote_fleet_reaches_deployed_nodes_through_forwards() {
        use clap::Parser;
        use soak_inventory::testing::{free_port, free_udp_port, sshd_or_skip};

        let Some(sshd) = sshd_or_skip("remote fleet over a real sshd") else {
            return;
        };
        let node_bin = std::env::var_os("SOAK_NODE_BIN")
            .map(std::path::PathBuf::from)
            .unwrap_or_else(|| {
                Path::new(env!("CARGO_MANIFEST_DIR")).join("../target/debug/soak-node")
            });
        assert!(
            node_bin.is_file(),
            "build soak-node first: {} missing",
            node_bin.display()
        );
        let dir = tempfile::tempdir().expect("tempdir");
        let binary = dir.path().join("soak-node");
        std::fs::copy(&node_bin, &binary).expect("copy");
        let _ = std::process::Command::new("strip").arg(&binary).status();
        let hosts: Vec<Host> = (0..3)
            .map(|i| {
                sshd.host(
                    &format!("rf-{i}"),
                    &dir.path().join(format!("h{i}")),
                    free_port(),
                    free_udp_port(),
                )
            })
            .collect();
        struct Guard(Vec<Host>);
        impl Drop for Guard {
            fn drop(&mut self) {
                for h in &self.0 {
                    let _ = std::process::Command::new("sh")
                        .arg("-c")
                        .arg(node::stop_script(h))
                        .output();
                }
            }
        }
        let _guard = Guard(hosts.clone());
        let inv = dir.path().join("fleet.toml");
        std::fs::write(&inv, soak_inventory::native::render(&hosts)).expect("inventory");
        let cli = crate::Cli::try_parse_from([
            "soak",
            "deploy",
            "-i",
            &inv.to_string_lossy(),
            "--binary",
            &binary.to_string_lossy(),
            "--json",
        ])
        .expect("args");
        let crate::Command::Deploy(args) = cli.command else {
            unreachable!("parsed deploy")
        };
        crate::cmd::deploy::deploy(args)
            .await
            .unwrap_or_else(|e| panic!("deploy: {e}"));

        let fleet = RemoteFleet::connect(&inv, &RemoteFleetOptions::default())
            .await
            .unwrap_or_else(|e| panic!("connect: {e}"));
        let endpoints = fleet.endpoints();
        let builds = fleet.builds();
        assert_eq!(endpoints.len(), 3);
        let sha = node::sha256_hex(&std::fs::read(&binary).expect("binary"));
        for ((e, b), h) in endpoints.iter().zip(&builds).zip(&hosts) {
            assert_eq!(e.name, h.name);
            assert!(
                e.admin_url.starts_with("http://127.0.0.1:"),
                "{}",
                e.admin_url
            );
            assert!(
                !e.admin_url.ends_with(&format!(":{}", h.api_port)),
                "a forward, not the node's own port"
            );
            let info: NodeInfo = serde_json::from_slice(
                &std::fs::read(format!("{}/data/node.json", h.install_dir)).expect("node.json"),
            )
            .expect("node.json");
            assert_eq!(e.peer_id, info.peer_id);
            assert_eq!(
                (b.host.as_str(), b.binary_sha256.as_str(), b.started_at_ms),
                (h.name.as_str(), sha.as_str(), info.started_at_ms)
            );
            // The admin API answers through the forward with the token read from the host.
            let api = HttpNode::new(
                e.clone(),
                http_client(Duration::from_secs(5)).expect("client"),
            );
            let diag = api
                .diagnostics()
                .await
                .unwrap_or_else(|err| panic!("{err}"));
            assert_eq!(diag.identity.peer_id, info.peer_id);
        }
        assert!(fleet.missing().is_empty() && fleet.warning().is_none());
        let urls: Vec<String> = endpoints
            .iter()
            .map(|e| e.admin_url.trim_start_matches("http://").to_string())
            .collect();
        fleet.shutdown().await.expect("shutdown");
        for url in &urls {
            assert!(
                tokio::net::TcpStream::connect(url).await.is_err(),
                "forward {url} still open after shutdown"
            );
        }
        for h in &hosts {
            let info: NodeInfo = serde_json::from_slice(
                &std::fs::read(format!("{}/data/node.json", h.install_dir)).expect("node.json"),
            )
            .expect("node.json");
            assert!(
                std::fs::read_link(format!("/proc/{}/exe", info.pid)).is_ok(),
                "shutdown must not stop nodes"
            );
        }

        // A host without a node: named; fatal by default, tolerated with min_hosts.
        let mut with_dead = hosts.clone();
        with_dead.push(sshd.host(
            "no-node",
            &dir.path().join("empty"),
            free_port(),
            free_udp_port(),
        ));
        std::fs::write(&inv, soak_inventory::native::render(&with_dead)).expect("inventory");
        let err = RemoteFleet::connect(&inv, &RemoteFleetOptions::default())
            .await
            .err()
            .expect("must fail");
        assert_eq!(err.exit, crate::exit::Exit::Unavailable);
        assert!(
            err.message.contains("(no-node)") && err.message.contains("host `no-node`: "),
            "{}",
            err.message
        );
        let tolerant = RemoteFleetOptions {
            policy: PartialPolicy { min_hosts: Some(3) },
            ..RemoteFleetOptions::default()
        };
        let fleet = RemoteFleet::connect(&inv, &tolerant)
            .await
            .unwrap_or_else(|e| panic!("{e}"));
        assert_eq!(fleet.endpoints().len(), 3);
        assert_eq!(
            fleet
                .missing()
                .iter()
                .map(|m| m.host.as_str())
                .collect::<Vec<_>>(),
            ["no-node"]
        );
        fleet.shutdown().await.expect("shutdown");
    }
}
