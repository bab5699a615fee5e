//! `soak deploy`, `soak status`, `soak stop`, `soak logs`: the bundled node on inventory hosts.
//!
//! Deploy, per host in parallel (bounded): one probe round trip (installed binary and config
//! hashes, token, systemd, running pid), upload of the binary only when its sha256 differs
//! (atomically: temp file + `mv`), config and admin token (0600, kept when present), a
//! (re)start only when something changed or the node is not running, then `/readyz` through
//! an SSH local port-forward, and a deploy record (`install_dir/deploy.json`) naming the sha256
//! of the *running* executable, the node version, git revision and start time.
//! See `docs/inventory.md`.

use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use clap::Args;
use comfy_table::{Table, presets};
use soak_api::NodeInfo;
use soak_inventory::node::{self, Apply, DeployRecord, NodeConfig, NodeLayout, Probe, RunMode};
use soak_inventory::remote::{self, ConnectOptions, Elevated, Needs, Remote};
use soak_inventory::{Host, HostPattern};
use soak_scenarios::NodeApi;
use tokio::time::Instant;

use crate::cmd::run::parse_duration;
use crate::exit::{CliError, CliResult, Exit};
use crate::fleet::error::HostError;
use crate::fleet::remote::{
    COMMAND_TIMEOUT, DEFAULT_PARALLEL, HostFailure, PartialPolicy, for_each_host, forward_admin,
    limit_hosts, load_inventory, log_tail, parse_limit, wait_ready,
};
use crate::output::{errln, outln};

/// Options shared by every fleet command.
#[derive(Debug, Clone, Args)]
pub struct FleetArgs {
    /// Inventory: native TOML, Ansible INI or YAML, or a pssh host file.
    #[arg(short = 'i', long = "inventory", value_name = "PATH")]
    pub inventory: PathBuf,
    /// Only the hosts this Ansible host pattern selects: hosts, groups, globs (`web*`), `:` or
    /// `,` for union, `&GROUP` to intersect, `!PATTERN` to exclude (e.g. `eu:&web:!web3`).
    #[arg(long, value_name = "PATTERN", value_parser = parse_limit)]
    pub limit: Option<HostPattern>,
    /// Hosts worked on at once.
    #[arg(long, default_value_t = DEFAULT_PARALLEL, value_name = "N")]
    pub parallel: usize,
    /// SSH connect timeout per host (TCP connect and handshake).
    #[arg(long, default_value = "10s", value_parser = parse_duration, value_name = "DURATION")]
    pub connect_timeout: Duration,
    /// Succeed when at least N hosts succeed (for `status`: are ready); the others are named
    /// in a warning. By default every host must, else exit 69.
    #[arg(long, value_name = "N")]
    pub min_hosts: Option<usize>,
}

impl FleetArgs {
    fn validate(&self) -> Result<(), CliError> {
        if self.parallel == 0 {
            return Err(CliError::usage("--parallel must be at least 1"));
        }
        if self.min_hosts == Some(0) {
            return Err(CliError::usage("--min-hosts must be at least 1"));
        }
        if self.connect_timeout.is_zero() {
            return Err(CliError::usage("--connect-timeout must be positive"));
        }
        Ok(())
    }

    fn connect_options(&self) -> ConnectOptions {
        ConnectOptions {
            connect_timeout: self.connect_timeout,
            ..ConnectOptions::default()
        }
    }

    fn policy(&self) -> PartialPolicy {
        PartialPolicy {
            min_hosts: self.min_hosts,
        }
    }
}

/// Arguments of `soak deploy`.
#[derive(Debug, Args)]
#[command(after_help = "\
Exit codes: 0 deployed (to at least --min-hosts hosts), 64 bad inventory or flags, 69 hosts
failed or no soak-node binary.

Examples:
  soak deploy -i fleet.toml                      # the soak-node next to soak (or on PATH)
  soak deploy -i hosts.ini --build               # build a release soak-node first
  soak deploy -i hosts.yml --binary ./soak-node --limit 'eu:!eu-3' --min-hosts 2")]
pub struct DeployArgs {
    #[command(flatten)]
    fleet: FleetArgs,
    /// The soak-node binary to deploy [default: SOAK_NODE_BIN, else the `soak-node` next to
    /// `soak`, else on PATH — as `soak run` finds it].
    #[arg(long, value_name = "PATH", conflicts_with = "build")]
    binary: Option<PathBuf>,
    /// Build the binary first (`cargo build --release -p soak-node` in the workspace `soak`
    /// was built from) and deploy that.
    #[arg(long)]
    build: bool,
    /// How long each node gets to report ready after a (re)start.
    #[arg(long, default_value = "60s", value_parser = parse_duration, value_name = "DURATION")]
    ready_timeout: Duration,
    /// Restart every node even when nothing changed.
    #[arg(long)]
    restart: bool,
    /// Print the deploy records as JSON instead of a table.
    #[arg(long)]
    json: bool,
}

/// Arguments of `soak status`.
#[derive(Debug, Args)]
#[command(after_help = "\
Exit codes: 0 every host (or at least --min-hosts) ready, 64 bad inventory or flags, 69 not.

Examples:
  soak status -i fleet.toml
  soak status -i hosts.ini --limit web --min-hosts 3 --json")]
pub struct StatusArgs {
    #[command(flatten)]
    fleet: FleetArgs,
    /// Print JSON instead of a table.
    #[arg(long)]
    json: bool,
}

/// Arguments of `soak stop`.
#[derive(Debug, Args)]
#[command(after_help = "\
Examples:
  soak stop -i fleet.toml
  soak stop -i hosts.ini --limit 'db*'")]
pub struct StopArgs {
    #[command(flatten)]
    fleet: FleetArgs,
}

/// Arguments of `soak logs`.
#[derive(Debug, Args)]
#[command(after_help = "\
Examples:
  soak logs -i fleet.toml h1 -n 200
  soak logs -i hosts.ini --limit eu")]
pub struct LogsArgs {
    /// Inventory: native TOML, Ansible INI or YAML, or a pssh host file.
    #[arg(short = 'i', long = "inventory", value_name = "PATH")]
    inventory: PathBuf,
    /// The host whose node log to print (or use --limit for several).
    #[arg(
        value_name = "HOST",
        required_unless_present = "limit",
        conflicts_with = "limit"
    )]
    host: Option<String>,
    /// The hosts an Ansible host pattern selects (see `soak deploy --help`); each log is
    /// headed `==> HOST <==`.
    #[arg(long, value_name = "PATTERN", value_parser = parse_limit)]
    limit: Option<HostPattern>,
    /// Number of lines from the end.
    #[arg(short = 'n', long, default_value_t = 100, value_name = "N")]
    lines: usize,
    /// SSH connect timeout.
    #[arg(long, default_value = "10s", value_parser = parse_duration, value_name = "DURATION")]
    connect_timeout: Duration,
}

fn now_ms() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_millis() as u64)
        .unwrap_or(0)
}

fn utc(ms: u64) -> String {
    let nanos = i128::from(ms) * 1_000_000;
    time::OffsetDateTime::from_unix_timestamp_nanos(nanos)
        .ok()
        .and_then(|t| {
            t.format(&time::format_description::well_known::Rfc3339)
                .ok()
        })
        .unwrap_or_else(|| ms.to_string())
}

fn short(sha: &str) -> String {
    sha.chars().take(12).collect()
}

/// The binary to deploy: `--binary` / `SOAK_NODE_BIN`, else a fresh release build with
/// `--build`, else the `soak-node` next to `soak` or on `PATH`. Never builds unasked: without
/// `--build`, no `cargo` runs in whatever source tree happens to be around.
fn node_binary(binary: Option<&Path>, build: bool) -> Result<PathBuf, CliError> {
    if let Some(path) = binary {
        if !path.is_file() {
            return Err(CliError::usage(format!(
                "--binary {}: no such file",
                path.display()
            )));
        }
        return Ok(path.to_path_buf());
    }
    if !build {
        if let Some(path) = std::env::var_os("SOAK_NODE_BIN") {
            return crate::cmd::run::resolve_node_bin(Some(Path::new(&path)));
        }
        return crate::cmd::run::resolve_node_bin(None).map_err(|_| {
            CliError::unavailable(
                "soak-node not found next to `soak` or on PATH: pass --binary PATH \
                 (or set SOAK_NODE_BIN), or --build to build it from this source tree",
            )
        });
    }
    // The workspace this soak was built from, else the current directory.
    let built_from = Path::new(env!("CARGO_MANIFEST_DIR"))
        .parent()
        .map(Path::to_path_buf);
    let dir = built_from
        .filter(|d| d.join("Cargo.toml").is_file() && d.join("node").is_dir())
        .unwrap_or_else(|| PathBuf::from("."));
    errln!(
        "soak: building soak-node (cargo build --release -p soak-node) in {}",
        dir.display()
    );
    let out = std::process::Command::new("cargo")
        .args([
            "build",
            "--release",
            "-p",
            "soak-node",
            "--message-format=json-render-diagnostics",
        ])
        .current_dir(&dir)
        .stderr(std::process::Stdio::inherit())
        .output()
        .map_err(|e| {
            CliError::unavailable(format!(
                "--build: cannot run cargo to build soak-node ({e}); pass --binary PATH"
            ))
        })?;
    if !out.status.success() {
        return Err(CliError::unavailable(
            "building soak-node failed (see above); pass --binary PATH to deploy a prebuilt one",
        ));
    }
    String::from_utf8_lossy(&out.stdout)
        .lines()
        .filter_map(|l| serde_json::from_str::<serde_json::Value>(l).ok())
        .filter(|v| v["reason"] == "compiler-artifact" && v["target"]["name"] == "soak-node")
        .filter_map(|v| v["executable"].as_str().map(PathBuf::from))
        .next_back()
        .ok_or_else(|| {
            CliError::unavailable("cargo built no soak-node executable; pass --binary PATH")
        })
}

/// The binary to upload, read once.
struct Payload {
    bytes: Vec<u8>,
    sha256: String,
}

struct DeploySettings {
    ready_timeout: Duration,
    restart: bool,
    connect: ConnectOptions,
}

/// Runs `soak deploy`.
pub async fn deploy(args: DeployArgs) -> CliResult {
    args.fleet.validate()?;
    if args.ready_timeout.is_zero() {
        return Err(CliError::usage("--ready-timeout must be positive"));
    }
    let inventory = load_inventory(&args.fleet.inventory)?;
    let hosts = limit_hosts(&inventory, args.fleet.limit.as_ref())?;
    let binary = node_binary(args.binary.as_deref(), args.build)?;
    let bytes = std::fs::read(&binary)
        .map_err(|e| CliError::unavailable(format!("cannot read {}: {e}", binary.display())))?;
    let payload = Arc::new(Payload {
        sha256: node::sha256_hex(&bytes),
        bytes,
    });
    let settings = Arc::new(DeploySettings {
        ready_timeout: args.ready_timeout,
        restart: args.restart,
        connect: args.fleet.connect_options(),
    });
    // Every node's bootstrap list names the whole inventory, --limit or not: a host deployed
    // later joins the mesh on its own.
    let fleet = Arc::new(inventory.hosts.clone());
    let started = Instant::now();
    errln!(
        "soak: deploying {} ({}, sha256 {}) to {} hosts",
        binary.display(),
        human_bytes(payload.bytes.len()),
        short(&payload.sha256),
        hosts.len()
    );
    let results = for_each_host(&hosts, args.fleet.parallel, |host| {
        let payload = Arc::clone(&payload);
        let settings = Arc::clone(&settings);
        let fleet = Arc::clone(&fleet);
        async move { deploy_host(host, &fleet, &payload, &settings).await }
    })
    .await;
    let took = started.elapsed();
    let mut records = Vec::new();
    let mut failures = Vec::new();
    for (host, result) in &results {
        match result {
            Ok(record) => records.push(record.clone()),
            Err(error) => failures.push(HostFailure::of(host, error)),
        }
    }
    if args.json {
        let doc = serde_json::json!({
            "binary": binary.display().to_string(),
            "binary_sha256": payload.sha256,
            "took_ms": took.as_millis() as u64,
            "hosts": records,
            "failed": failures,
        });
        outln!("{}", serde_json::to_string_pretty(&doc).unwrap_or_default());
    } else {
        outln!("{}", deploy_table(&results));
        let uploaded = records.iter().filter(|r| r.uploaded).count();
        let restarted = records.iter().filter(|r| r.restarted).count();
        outln!(
            "deployed to {}/{} hosts in {:.1}s: {uploaded} uploaded, {restarted} (re)started",
            records.len(),
            hosts.len(),
            took.as_secs_f64()
        );
    }
    if let Some(warning) = args
        .fleet
        .policy()
        .judge("deploy", hosts.len(), &failures)?
    {
        errln!("soak: warning: {warning}");
    }
    Ok(Exit::Go)
}

fn human_bytes(n: usize) -> String {
    if n >= 1 << 20 {
        format!("{:.1} MiB", n as f64 / f64::from(1u32 << 20))
    } else {
        format!("{:.1} KiB", n as f64 / 1024.0)
    }
}

fn deploy_table(results: &[(Host, Result<DeployRecord, HostError>)]) -> Table {
    let mut table = Table::new();
    table.load_preset(presets::ASCII_MARKDOWN);
    table.set_header(vec![
        "host",
        "address",
        "mode",
        "uploaded",
        "restarted",
        "sha256",
        "version",
        "git",
        "pid",
        "started",
        "result",
    ]);
    for (host, result) in results {
        match result {
            Ok(r) => table.add_row(vec![
                r.host.clone(),
                r.address.clone(),
                format!("{:?}", r.run_mode).to_lowercase(),
                yes_no(r.uploaded),
                yes_no(r.restarted),
                short(&r.binary_sha256),
                r.version.clone(),
                short(&r.git),
                r.pid.to_string(),
                utc(r.started_at_ms),
                "ok".to_string(),
            ]),
            Err(e) => table.add_row(vec![
                host.name.clone(),
                host.address.clone(),
                "-".into(),
                "-".into(),
                "-".into(),
                "-".into(),
                "-".into(),
                "-".into(),
                "-".into(),
                "-".into(),
                format!("FAILED: {}", first_line(&e.to_string())),
            ]),
        };
    }
    table
}

fn first_line(s: &str) -> &str {
    s.lines().next().unwrap_or(s)
}

fn yes_no(b: bool) -> String {
    if b { "yes" } else { "no" }.to_string()
}

async fn deploy_host(
    host: Host,
    fleet: &[Host],
    payload: &Payload,
    settings: &DeploySettings,
) -> Result<DeployRecord, HostError> {
    let remote = remote::connect(&host, &settings.connect).await?;
    let result = match remote.check_privilege(COMMAND_TIMEOUT).await {
        // With `become`, installs outside the login user's home go through `sudo -n`.
        Ok(()) => {
            deploy_on(
                &Elevated::new(remote.as_ref(), Needs::InstallDir),
                fleet,
                payload,
                settings,
            )
            .await
        }
        Err(e) => Err(e.into()),
    };
    let _ = remote.close().await;
    result
}

async fn deploy_on(
    remote: &dyn Remote,
    fleet: &[Host],
    payload: &Payload,
    settings: &DeploySettings,
) -> Result<DeployRecord, HostError> {
    let host = remote.host().clone();
    let layout = NodeLayout::new(&host);
    let e = HostError::from;
    // Round trip 1: what is there.
    let probe: Probe = node::probe(remote, true, COMMAND_TIMEOUT)
        .await
        .map_err(e)?;
    let mode =
        RunMode::resolve(host.service, probe.systemd).map_err(|m| HostError::node(&host, m))?;

    // The binary only when it differs (a 10-20 MB upload per host is most of a deploy).
    let uploaded = probe.binary_sha256.as_deref() != Some(payload.sha256.as_str());
    let config = NodeConfig::for_host(&host, fleet);
    let config_text = config.to_toml();
    let config_changed =
        probe.config_sha256.as_deref() != Some(node::sha256_hex(config_text.as_bytes()).as_str());
    let (token, new_token) = match &probe.token {
        Some(token) => (token.clone(), false),
        None => (
            node::new_admin_token()
                .map_err(|err| HostError::node(&host, format!("cannot generate a token: {err}")))?,
            true,
        ),
    };
    // Restart when anything changed, when nothing runs, or when what runs is not the
    // installed file (it was replaced behind our back).
    let stale_process = probe.running_sha256.as_deref() != Some(payload.sha256.as_str());
    let restarted = settings.restart
        || uploaded
        || config_changed
        || new_token
        || probe.running_pid.is_none()
        || stale_process;

    let info_text = if restarted {
        // Round trip 2: install what changed, (re)start, wait for the new node.json.
        let apply = Apply {
            binary: uploaded.then_some((payload.sha256.as_str(), payload.bytes.len())),
            config: config_changed.then_some(config_text.as_str()),
            token: new_token.then_some(token.as_str()),
            start: Some(mode),
            wait_secs: settings.ready_timeout.as_secs().max(1),
        };
        let script =
            node::apply_script(&host, &config, &apply).map_err(|m| HostError::node(&host, m))?;
        let input: &[u8] = if uploaded { &payload.bytes } else { &[] };
        let limit = COMMAND_TIMEOUT
            + settings.ready_timeout
            + Duration::from_secs((payload.bytes.len() / 1_000_000) as u64);
        let out = remote.exec(&script, input, limit).await.map_err(e)?;
        if !out.success() {
            let tail = log_tail(remote, 20).await;
            return Err(HostError::node(
                &host,
                format!(
                    "installing and starting soak-node failed ({}): {}; last log lines:\n{}",
                    out.status
                        .map_or_else(|| "signal".to_string(), |c| format!("exit {c}")),
                    out.stderr_tail(),
                    tail.trim_end()
                ),
            ));
        }
        let (pid, json) = node::parse_apply(&out.stdout_text());
        match (pid, json) {
            (_, None) => {
                let tail = log_tail(remote, 20).await;
                return Err(HostError::node(
                    &host,
                    format!(
                        "the node wrote no node.json within {}s; last log lines:\n{}",
                        settings.ready_timeout.as_secs(),
                        tail.trim_end()
                    ),
                ));
            }
            (_, Some(json)) => json,
        }
    } else {
        probe.node_json.clone().ok_or_else(|| {
            HostError::node(
                &host,
                "soak-node runs but its node.json is missing; rerun with --restart",
            )
        })?
    };
    let info: NodeInfo = serde_json::from_str(&info_text).map_err(|err| {
        HostError::node(
            &host,
            format!("{} is not valid node.json: {err}", layout.node_info()),
        )
    })?;
    if !restarted && Some(info.pid) != probe.running_pid {
        return Err(HostError::node(
            &host,
            format!(
                "node.json names pid {} but pid {:?} runs; rerun with --restart",
                info.pid, probe.running_pid
            ),
        ));
    }

    // Readiness and version through an SSH local port-forward: the admin API is loopback-only.
    let deadline = Instant::now() + settings.ready_timeout;
    let forwarded = forward_admin(remote, &token, &info.peer_id, Duration::from_secs(5))
        .await
        .map_err(e)?;
    if let Err(why) = wait_ready(&forwarded.api, deadline).await {
        let tail = log_tail(remote, 20).await;
        return Err(HostError::node(
            &host,
            format!(
                "node not ready after {}s: {why}; last log lines:\n{}",
                settings.ready_timeout.as_secs(),
                tail.trim_end()
            ),
        ));
    }
    let version = forwarded
        .api
        .version()
        .await
        .map_err(|err| HostError::node(&host, format!("/v1/version: {err}")))?;
    if version.peer_id != info.peer_id {
        return Err(HostError::node(
            &host,
            format!(
                "the admin API on 127.0.0.1:{} answers as peer {} but node.json names {}: another process owns the port",
                host.api_port, version.peer_id, info.peer_id
            ),
        ));
    }
    // The running process was started from the verified file (restart) or already runs the
    // installed file whose hash the probe took (`/proc/PID/exe` not replaced).
    let record = DeployRecord {
        host: host.name.clone(),
        address: host.address.clone(),
        binary_sha256: payload.sha256.clone(),
        version: version.version,
        git: version.git,
        peer_id: info.peer_id,
        pid: info.pid,
        started_at_ms: info.started_at_ms,
        run_mode: mode,
        uploaded,
        restarted,
        deployed_at_ms: now_ms(),
    };
    // Round trip 3: the record.
    let json = serde_json::to_vec_pretty(&record).map_err(|err| HostError::node(&host, err))?;
    remote
        .upload(&json, &layout.record(), 0o644, COMMAND_TIMEOUT)
        .await
        .map_err(e)?;
    Ok(record)
}

/// One row of `soak status`.
#[derive(Debug, Clone, serde::Serialize)]
struct HostStatus {
    host: String,
    address: String,
    reachable: bool,
    running: bool,
    pid: Option<u32>,
    version: Option<String>,
    binary_sha256: Option<String>,
    peers: Option<usize>,
    ready: bool,
    error: Option<String>,
}

/// Runs `soak status`.
pub async fn status(args: StatusArgs) -> CliResult {
    args.fleet.validate()?;
    let inventory = load_inventory(&args.fleet.inventory)?;
    let hosts = limit_hosts(&inventory, args.fleet.limit.as_ref())?;
    let connect = args.fleet.connect_options();
    let results = for_each_host(&hosts, args.fleet.parallel, |host| {
        let connect = connect.clone();
        async move { Ok::<_, HostError>(host_status(host, &connect).await) }
    })
    .await;
    let rows: Vec<HostStatus> = results.into_iter().filter_map(|(_, r)| r.ok()).collect();
    if args.json {
        outln!(
            "{}",
            serde_json::to_string_pretty(&rows).unwrap_or_default()
        );
    } else {
        let mut table = Table::new();
        table.load_preset(presets::ASCII_MARKDOWN);
        table.set_header(vec![
            "host",
            "address",
            "reachable",
            "running",
            "version",
            "sha256",
            "peers",
            "ready",
        ]);
        for r in &rows {
            table.add_row(vec![
                r.host.clone(),
                r.address.clone(),
                yes_no(r.reachable),
                r.pid
                    .map_or_else(|| yes_no(r.running), |p| format!("yes (pid {p})")),
                r.version.clone().unwrap_or_else(|| "-".into()),
                r.binary_sha256.as_deref().map_or_else(|| "-".into(), short),
                r.peers.map_or_else(|| "-".into(), |p| p.to_string()),
                yes_no(r.ready),
            ]);
        }
        outln!("{table}");
    }
    // --min-hosts N: the fleet is healthy enough when at least N hosts are ready (the
    // check to run before `soak run -i … --min-hosts N`); the others are still named.
    let not_ready: Vec<&HostStatus> = rows.iter().filter(|r| !r.ready).collect();
    if not_ready.is_empty() {
        return Ok(Exit::Go);
    }
    let ready = rows.len() - not_ready.len();
    let names: Vec<&str> = not_ready.iter().map(|r| r.host.as_str()).collect();
    let details: Vec<String> = not_ready
        .iter()
        .map(|r| {
            let why = r.error.clone().unwrap_or_else(|| "not ready".to_string());
            format!("  {why}")
        })
        .collect();
    let summary = format!(
        "{} of {} hosts not ready: {}\n{}",
        not_ready.len(),
        rows.len(),
        names.join(", "),
        details.join("\n")
    );
    match args.fleet.min_hosts {
        Some(min) if ready >= min => {
            errln!("soak: warning: {summary}\n{ready} hosts ready, at least --min-hosts {min}");
            Ok(Exit::Go)
        }
        Some(min) => Err(CliError::unavailable(format!(
            "{summary}\nonly {ready} hosts ready, fewer than --min-hosts {min}"
        ))),
        None => Err(CliError::unavailable(format!(
            "{summary}\nevery host must be ready (pass --min-hosts N to accept fewer)"
        ))),
    }
}

async fn host_status(host: Host, connect: &ConnectOptions) -> HostStatus {
    let mut s = HostStatus {
        host: host.name.clone(),
        address: host.address.clone(),
        reachable: false,
        running: false,
        pid: None,
        version: None,
        binary_sha256: None,
        peers: None,
        ready: false,
        error: None,
    };
    let remote = match remote::connect(&host, connect).await {
        Ok(r) => r,
        Err(e) => {
            s.error = Some(e.to_string());
            return s;
        }
    };
    s.reachable = true;
    if let Err(e) = status_on(&Elevated::new(remote.as_ref(), Needs::InstallDir), &mut s).await {
        s.error = Some(e.to_string());
    }
    let _ = remote.close().await;
    s
}

async fn status_on(remote: &dyn Remote, s: &mut HostStatus) -> Result<(), HostError> {
    let host = remote.host().clone();
    let probe = node::probe(remote, false, COMMAND_TIMEOUT).await?;
    let Some(pid) = probe.running_pid else {
        return Err(HostError::node(&host, "soak-node is not running"));
    };
    s.running = true;
    s.pid = Some(pid);
    s.binary_sha256 = probe.running_sha256.clone();
    let token = probe
        .token
        .ok_or_else(|| HostError::node(&host, "no admin token on the host"))?;
    let peer_id = probe
        .node_json
        .as_deref()
        .and_then(|j| serde_json::from_str::<NodeInfo>(j).ok())
        .map(|i| i.peer_id)
        .unwrap_or_default();
    let forwarded = forward_admin(remote, &token, &peer_id, Duration::from_secs(5)).await?;
    let version = forwarded
        .api
        .version()
        .await
        .map_err(|e| HostError::node(&host, e))?;
    s.version = Some(version.version);
    let diagnostics = forwarded
        .api
        .diagnostics()
        .await
        .map_err(|e| HostError::node(&host, e))?;
    s.peers = Some(
        diagnostics
            .peers
            .iter()
            .filter(|p| p.state == soak_api::PeerState::Established)
            .count(),
    );
    let readiness = forwarded
        .api
        .readiness()
        .await
        .map_err(|e| HostError::node(&host, e))?;
    s.ready = readiness.ready;
    if !readiness.ready {
        let failing: Vec<&str> = readiness
            .checks
            .iter()
            .filter(|(_, ok)| !**ok)
            .map(|(k, _)| k.as_str())
            .collect();
        return Err(HostError::node(
            &host,
            format!("not ready (failing checks: {})", failing.join(", ")),
        ));
    }
    Ok(())
}

/// Runs `soak stop`.
pub async fn stop(args: StopArgs) -> CliResult {
    args.fleet.validate()?;
    let inventory = load_inventory(&args.fleet.inventory)?;
    let hosts = limit_hosts(&inventory, args.fleet.limit.as_ref())?;
    let connect = args.fleet.connect_options();
    let results = for_each_host(&hosts, args.fleet.parallel, |host| {
        let connect = connect.clone();
        async move {
            let remote = remote::connect(&host, &connect).await?;
            let out = remote
                .run_privileged(
                    Needs::InstallDir,
                    "stopping soak-node",
                    &node::stop_script(&host),
                    COMMAND_TIMEOUT,
                )
                .await;
            let _ = remote.close().await;
            let out = out?;
            let stopped: Vec<String> = out
                .stdout_text()
                .lines()
                .filter_map(|l| l.strip_prefix("stopped=").map(str::to_string))
                .collect();
            Ok::<_, HostError>(stopped)
        }
    })
    .await;
    let mut table = Table::new();
    table.load_preset(presets::ASCII_MARKDOWN);
    table.set_header(vec!["host", "address", "result"]);
    let mut failures = Vec::new();
    for (host, result) in &results {
        let text = match result {
            Ok(pids) if pids.is_empty() => "was not running".to_string(),
            Ok(pids) => format!("stopped (pid {})", pids.join(", ")),
            Err(e) => {
                failures.push(HostFailure::of(host, e));
                format!("FAILED: {}", first_line(&e.to_string()))
            }
        };
        table.add_row(vec![host.name.clone(), host.address.clone(), text]);
    }
    outln!("{table}");
    if let Some(warning) = args.fleet.policy().judge("stop", hosts.len(), &failures)? {
        errln!("soak: warning: {warning}");
    }
    Ok(Exit::Go)
}

/// Runs `soak logs`.
pub async fn logs(args: LogsArgs) -> CliResult {
    if args.lines == 0 {
        return Err(CliError::usage("--lines must be at least 1"));
    }
    let inventory = load_inventory(&args.inventory)?;
    let hosts = match (&args.host, &args.limit) {
        (Some(name), _) => match inventory.host(name) {
            Some(host) => vec![host.clone()],
            None => {
                let names: Vec<&str> = inventory.hosts.iter().map(|h| h.name.as_str()).collect();
                return Err(CliError::usage(format!(
                    "no host `{name}` in {} (hosts: {})",
                    args.inventory.display(),
                    names.join(", ")
                )));
            }
        },
        (None, limit) => limit_hosts(&inventory, limit.as_ref())?,
    };
    let connect = ConnectOptions {
        connect_timeout: args.connect_timeout,
        ..ConnectOptions::default()
    };
    let headed = hosts.len() > 1;
    let mut failures = Vec::new();
    for (i, host) in hosts.iter().enumerate() {
        if headed {
            outln!("{}==> {} <==", if i == 0 { "" } else { "\n" }, host.name);
        }
        match host_log(host, args.lines, &connect).await {
            Ok(bytes) => crate::output::stdout_bytes(&bytes),
            Err(error) => failures.push(HostFailure::of(host, &error)),
        }
    }
    PartialPolicy::default().judge("reading the log", hosts.len(), &failures)?;
    Ok(Exit::Go)
}

/// The last `lines` lines of `host`'s node log.
async fn host_log(
    host: &Host,
    lines: usize,
    connect: &ConnectOptions,
) -> Result<Vec<u8>, HostError> {
    let remote = remote::connect(host, connect).await?;
    let out = remote
        .exec_privileged(
            Needs::InstallDir,
            &node::logs_script(host, lines),
            &[],
            COMMAND_TIMEOUT,
        )
        .await;
    let _ = remote.close().await;
    let out = out?;
    if !out.success() {
        return Err(HostError::node(host, out.stderr_tail()));
    }
    Ok(out.stdout)
}
