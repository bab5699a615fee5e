//! `soak run`: plan → spawn (or reach) the fleet → warm → windows → judge → write the proof.
//!
//! Step one ([`RunArgs::plan`]) validates what the user typed without touching the system and
//! yields a [`RunPlan`]. Step two ([`execute`]) resolves it — gate profile, node binary, proof
//! directory, signals, fleet — and hands the runner only `NodeApi` handles.

use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::{Duration, Instant};

use clap::{Args, ValueEnum};
use serde::{Deserialize, Serialize};
use sha2::Digest;
use soak_gates::Profile;
use soak_gates::model::{NodeRef, Observations, RunInfo};
use soak_proofs::{MissingHost, ProofWriter, RunMeta};
use soak_scenarios::fanout::FanoutConfig;
use soak_scenarios::faults::schedule::{Schedule, schedule};
use soak_scenarios::faults::spec::{FaultSpec, Permission};
use soak_scenarios::faults::{Capabilities, catalog};
use soak_scenarios::phase_a::PhaseAConfig;
use soak_scenarios::{HttpNode, http_client};

use crate::exit::{CliError, CliResult, Exit};
use crate::fleet::Fleet;
use crate::fleet::local::{LocalMesh, LocalMeshConfig};
use crate::fleet::remote::{PartialPolicy, RemoteFleet, RemoteFleetOptions};
use crate::output::{errln, outln};
use crate::runner::event::{FleetNode, RunEvent, RunStatus, now_ms};
use crate::runner::proof::{ProofOutcome, ProofReporter};
use crate::runner::reporter::{Dispatch, JsonLines, Progress};
use crate::runner::signals::Signals;
use crate::runner::{RunnerConfig, table};

/// Format of the machine-readable event stream on stdout.
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum EventsFormat {
    /// One JSON object per line; nothing else is written to stdout.
    Jsonl,
}

/// A duration flag (`90s`, `2m`, `1h30m`, `500ms`).
pub fn parse_duration(text: &str) -> Result<Duration, String> {
    humantime::parse_duration(text).map_err(|err| format!("{err} (examples: 90s, 2m, 1h30m)"))
}

/// Arguments of `soak run`.
#[derive(Debug, Clone, Args)]
#[command(after_help = "\
Exit codes: 0 GO, 1 NO-GO, 2 UNKNOWN (missing evidence), 64 usage, 69 infrastructure,
130 interrupted (see docs/operations.md).

Examples:
  soak run                                          # 6 local nodes, 2 minutes, broad-launch
  soak run --nodes 3 --duration 30s --interval 10s --scenarios baseline
  soak run -i fleet.toml --duration 4h --interval 5m --limit 'eu:!eu-3'
  soak run --gate-file my-gate.toml --events jsonl > events.jsonl
  soak run --duration 6m --scenarios baseline,fanout_burst,high_rtt_peer,partition_halves,restart_storm --allow-restart
  soak run --scenario-file my-faults.toml --fault-lease 30s")]
pub struct RunArgs {
    /// Inventory of an SSH fleet (native TOML, Ansible INI/YAML or a pssh host file). Without
    /// it, `soak run` spawns a local mesh of `soak-node` processes on loopback.
    #[arg(short = 'i', long, value_name = "PATH")]
    pub inventory: Option<PathBuf>,
    /// Nodes of the local mesh, 2–200 [default: 6].
    #[arg(long, value_name = "N")]
    pub nodes: Option<usize>,
    /// With --inventory: go on when at least N hosts (2 or more) are reached; the hosts left
    /// out are named in the proof and the output. By default every host must be reached.
    #[arg(long, value_name = "N")]
    pub min_hosts: Option<usize>,
    /// With --inventory: only the hosts this Ansible host pattern selects make the fleet
    /// (groups, globs, `!exclude`, `&intersect`; see `soak deploy --help`).
    #[arg(long, value_name = "PATTERN", value_parser = crate::fleet::remote::parse_limit)]
    pub limit: Option<soak_inventory::HostPattern>,
    /// Total soak time, rounded down to whole windows (at least one; at most 100000 windows).
    #[arg(long, default_value = "2m", value_parser = parse_duration, value_name = "DURATION")]
    pub duration: Duration,
    /// Window length, at least 1s: every window runs the scenarios once and is judged on its
    /// own.
    #[arg(long, default_value = "30s", value_parser = parse_duration, value_name = "DURATION")]
    pub interval: Duration,
    /// Warm-up at the start, rounded up to whole windows; at least one window must remain
    /// [default: one window when the run has more than one, else none].
    #[arg(long, value_parser = parse_duration, value_name = "DURATION")]
    pub warmup: Option<Duration>,
    /// Scenarios: workloads run in every window, in order (`baseline`, `fanout_burst`), and
    /// built-in faults (`soak scenarios list`), each given its own window after the warm-up
    /// and followed by a heal window.
    #[arg(
        long,
        value_delimiter = ',',
        default_value = "baseline,fanout_burst",
        value_name = "NAMES"
    )]
    pub scenarios: Vec<String>,
    /// Faults from a scenario file (TOML `[[fault]]` tables; `soak scenarios show NAME` prints
    /// one to start from), scheduled after the `--scenarios` faults; copied into the proof.
    #[arg(long, value_name = "PATH")]
    pub scenario_file: Option<PathBuf>,
    /// Allow faults that restart or stop node processes (restart_storm, stale_peer).
    #[arg(long)]
    pub allow_restart: bool,
    /// Allow tc qdisc faults on hosts (netem delay/loss, tbf bandwidth; host fleets).
    #[arg(long)]
    pub allow_netem: bool,
    /// Allow iptables partitions on hosts (host fleets).
    #[arg(long)]
    pub allow_iptables: bool,
    /// Lease of every fault: renewed every third of it while the fault holds, so faults lapse
    /// by themselves this long after `soak` dies or loses a host [default: 10s for faults held
    /// by a node (impairments), 30s for host faults (their dead-man's switch on the host)].
    #[arg(long, value_parser = parse_duration, value_name = "DURATION")]
    pub fault_lease: Option<Duration>,
    /// Extra argument for every local node's `soak-node run` (repeatable), e.g.
    /// `--node-arg=--idle-timeout-ms=10000`.
    #[arg(long = "node-arg", value_name = "ARG", allow_hyphen_values = true)]
    pub node_args: Vec<String>,
    /// Built-in gate profile to judge with (`broad-launch`, `limited-production`).
    #[arg(long, default_value = "broad-launch", value_name = "NAME")]
    pub gate: String,
    /// Gate profile TOML file; overrides `--gate`.
    #[arg(long, value_name = "PATH")]
    pub gate_file: Option<PathBuf>,
    /// Proof directory [default: proofs/<run-id>]; must be new or empty.
    #[arg(long, value_name = "DIR")]
    pub proof_dir: Option<PathBuf>,
    /// Period of the continuous diagnostics sampler: at least 100ms, at most the window
    /// length (--interval).
    #[arg(long, default_value = "2s", value_parser = parse_duration, value_name = "DURATION")]
    pub sample_interval: Duration,
    /// Seed of the run's random choices (which nodes publish) [default: random, recorded].
    #[arg(long, value_name = "N")]
    pub seed: Option<u64>,
    /// Short label, part of the run id [default: the inventory's name (its file stem), else
    /// `local`].
    #[arg(long, value_name = "LABEL")]
    pub label: Option<String>,
    /// Also stream machine-readable events on stdout (progress stays on stderr).
    #[arg(long, value_enum, value_name = "FORMAT")]
    pub events: Option<EventsFormat>,
    /// The `soak-node` binary [default: SOAK_NODE_BIN, else next to `soak`, else PATH].
    #[arg(long, env = "SOAK_NODE_BIN", value_name = "PATH")]
    pub node_bin: Option<PathBuf>,
    /// Fanout burst: messages per burst, 1–1000000.
    #[arg(long, default_value_t = 50, value_name = "N")]
    pub burst_messages: u64,
    /// Fanout burst: payload size in bytes, 1–1048576.
    #[arg(long, default_value_t = 256, value_name = "N")]
    pub burst_bytes: usize,
    /// Fanout burst: publish rate, messages per second over all publishers (> 0).
    #[arg(long, default_value_t = 200.0, value_name = "RATE")]
    pub burst_rate: f64,
    /// Fanout burst: how many nodes publish, 1 to the node count.
    #[arg(long, default_value_t = 1, value_name = "N")]
    pub burst_publishers: usize,
    /// Phase A: pairs in flight at once, at least 1 [default: fits the fleet — 2 per node,
    /// between 16 and 128].
    #[arg(long, value_name = "N")]
    pub concurrency: Option<usize>,
    /// Phase A: the largest fleet that runs the full N·(N−1) matrix every window; past it each
    /// node sends to --matrix-partners seeded partners, rotating per window so every ordered
    /// pair is covered over the soak (at least 2).
    #[arg(long, default_value_t = soak_scenarios::phase_a::FULL_MATRIX_MAX, value_name = "N")]
    pub full_matrix_max: usize,
    /// Phase A: partners per node of a sampled matrix (at least 1) [default: --full-matrix-max
    /// − 1, so no node sends more than in the largest full matrix].
    #[arg(long, value_name = "N")]
    pub matrix_partners: Option<usize>,
    /// Timeout of every admin API request, at least 100ms.
    #[arg(long, default_value = "5s", value_parser = parse_duration, value_name = "DURATION")]
    pub request_timeout: Duration,
    /// Deadline of each start-up step of the local mesh (files, ready, meshed).
    #[arg(long, default_value = "30s", value_parser = parse_duration, value_name = "DURATION")]
    pub start_timeout: Duration,
    /// Continue an interrupted or crashed run into its proof directory: the plan comes from
    /// its config.json (flags that would change it are refused; --events, --node-bin and
    /// --start-timeout may be given), the next window index follows the last complete one,
    /// and the window the interruption cut short is recorded as a gap and run again.
    #[arg(long, value_name = "DIR")]
    pub resume: Option<PathBuf>,
    /// Flags given on the command line, as `(id, --flag)` (filled in by `main`; `--resume`
    /// refuses those that would change the stored plan).
    #[arg(skip)]
    pub given: Vec<(String, String)>,
}

/// Largest local mesh (each node is a process with a QUIC endpoint and an HTTP server).
const MAX_LOCAL_NODES: usize = 200;
const DEFAULT_NODES: usize = 6;
/// Lease of node-held faults without --fault-lease.
const DEFAULT_NODE_LEASE: Duration = Duration::from_secs(10);

/// What the user asked for, validated (step one: nothing touched yet). Stored as the proof's
/// `config.json` and read back from it by `soak run --resume`.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct RunPlan {
    /// Inventory path, for SSH fleets.
    pub inventory: Option<PathBuf>,
    /// Local mesh size (ignored with an inventory).
    pub nodes: usize,
    /// Fewest inventory hosts to go on with (`None`: every host).
    pub min_hosts: Option<usize>,
    /// Windows to run.
    pub windows: u32,
    /// Leading warm-up windows.
    pub warmup_windows: u32,
    /// Window length, milliseconds.
    pub interval_ms: u64,
    /// Sampler period, milliseconds.
    pub sample_interval_ms: u64,
    /// Workloads per window.
    pub workloads: Vec<String>,
    /// Faults (built-in and from the scenario file), as scheduled.
    pub schedule: Schedule,
    /// The scenario file as given, when one was.
    pub scenario_file: Option<PathBuf>,
    /// The scenario file's text (copied into the proof).
    #[serde(skip, default)]
    pub scenario_text: Option<String>,
    /// Opt-ins granted.
    pub allow: Vec<Permission>,
    /// Lease of node-held faults (impairments), milliseconds.
    pub fault_lease_ms: u64,
    /// Lease of host faults' guards, milliseconds.
    pub host_lease_ms: u64,
    /// Extra node arguments (local mesh).
    pub node_args: Vec<String>,
    /// Gate: built-in name or file.
    pub gate: GateChoice,
    /// Proof directory as given.
    pub proof_dir: Option<PathBuf>,
    /// Seed.
    pub seed: u64,
    /// Label.
    pub label: String,
    /// `--limit` host pattern, as given.
    pub limit: Option<String>,
    /// Machine-readable stdout.
    pub events: Option<EventsFormat>,
    /// Node binary as given.
    pub node_bin: Option<PathBuf>,
    /// Phase A pairs in flight (`None`: fit the fleet, [`default_concurrency`]).
    pub concurrency: Option<usize>,
    /// Largest fleet with a full Phase A matrix (absent in older proofs: the default).
    #[serde(default = "default_full_matrix_max")]
    pub full_matrix_max: usize,
    /// Partners per node of a sampled matrix (absent in older proofs: the default).
    #[serde(default = "default_matrix_partners")]
    pub matrix_partners: usize,
    /// Burst: messages.
    pub burst_messages: u64,
    /// Burst: bytes per message.
    pub burst_bytes: usize,
    /// Burst: messages per second.
    pub burst_rate: f64,
    /// Burst: publishers.
    pub burst_publishers: usize,
    /// Admin request timeout, milliseconds.
    pub request_timeout_ms: u64,
    /// Start-up step deadline, milliseconds.
    pub start_timeout_ms: u64,
}

fn default_full_matrix_max() -> usize {
    soak_scenarios::phase_a::FULL_MATRIX_MAX
}

fn default_matrix_partners() -> usize {
    soak_scenarios::phase_a::FULL_MATRIX_MAX - 1
}

/// Phase A pairs in flight by default: two per node (every node sends and receives at once),
/// between 16 and 128 (past that, a 2-core orchestrator only queues).
pub fn default_concurrency(nodes: usize) -> usize {
    (2 * nodes).clamp(16, 128)
}

/// Which gate profile judges the run.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum GateChoice {
    /// A built-in profile by name.
    Builtin(String),
    /// A TOML file.
    File(PathBuf),
}

fn millis(d: Duration) -> u64 {
    u64::try_from(d.as_millis()).unwrap_or(u64::MAX)
}

impl RunArgs {
    /// Step one: validates the arguments without touching the system.
    pub fn plan(&self) -> Result<RunPlan, CliError> {
        if self.inventory.is_some() && self.nodes.is_some() {
            return Err(CliError::usage(
                "--nodes sizes the local mesh; with --inventory the fleet is the inventory's hosts",
            ));
        }
        match (self.min_hosts, &self.inventory) {
            (Some(_), None) => {
                return Err(CliError::usage(
                    "--min-hosts applies to an inventory fleet (-i); a local mesh has no hosts to leave out",
                ));
            }
            (Some(min), Some(_)) if min < 2 => {
                return Err(CliError::usage(format!(
                    "--min-hosts must be at least 2 (Phase A needs at least one pair), got {min}"
                )));
            }
            _ => {}
        }
        let nodes = self.nodes.unwrap_or(DEFAULT_NODES);
        if self.inventory.is_none() && !(2..=MAX_LOCAL_NODES).contains(&nodes) {
            return Err(CliError::usage(format!(
                "--nodes must be between 2 and {MAX_LOCAL_NODES} (Phase A needs at least one pair), got {nodes}"
            )));
        }
        if self.interval < Duration::from_secs(1) {
            return Err(CliError::usage("--interval must be at least 1s"));
        }
        if self.duration < self.interval {
            return Err(CliError::usage(format!(
                "--duration ({}) is shorter than one window (--interval {})",
                humantime::format_duration(self.duration),
                humantime::format_duration(self.interval)
            )));
        }
        let windows = u32::try_from(self.duration.as_millis() / self.interval.as_millis())
            .map_err(|_| CliError::usage("--duration / --interval gives too many windows"))?;
        if windows > 100_000 {
            return Err(CliError::usage(format!(
                "{windows} windows is more than 100000; use a longer --interval"
            )));
        }
        let warmup_windows = match self.warmup {
            None => u32::from(windows > 1),
            Some(warmup) => {
                let w = warmup.as_millis().div_ceil(self.interval.as_millis());
                let w = u32::try_from(w).unwrap_or(u32::MAX);
                if w >= windows {
                    return Err(CliError::usage(format!(
                        "--warmup covers {w} of {windows} windows: no window would be judged"
                    )));
                }
                w
            }
        };
        if self.sample_interval < Duration::from_millis(100) || self.sample_interval > self.interval
        {
            return Err(CliError::usage(
                "--sample-interval must be between 100ms and the window length (--interval)",
            ));
        }
        let mut workloads: Vec<String> = Vec::new();
        let mut faults: Vec<FaultSpec> = Vec::new();
        for name in &self.scenarios {
            let name = name.trim();
            if workloads.iter().any(|w| w == name) || faults.iter().any(|f| f.name == name) {
                return Err(CliError::usage(format!(
                    "scenario `{name}` is listed twice"
                )));
            }
            if catalog::WORKLOADS.iter().any(|(w, _)| *w == name) {
                workloads.push(name.to_owned());
            } else if catalog::text(name).is_some() {
                faults.push(catalog::builtin(name).map_err(CliError::usage)?);
            } else {
                return Err(CliError::usage(format!(
                    "unknown scenario `{name}` (workloads: {}; faults: {}; see `soak scenarios list`)",
                    catalog::WORKLOADS
                        .iter()
                        .map(|(w, _)| *w)
                        .collect::<Vec<_>>()
                        .join(", "),
                    catalog::names().collect::<Vec<_>>().join(", ")
                )));
            }
        }
        let scenario_text = match &self.scenario_file {
            Some(path) => {
                let text = std::fs::read_to_string(path).map_err(|err| {
                    CliError::usage(format!(
                        "cannot read scenario file {}: {err}",
                        path.display()
                    ))
                })?;
                faults.extend(
                    catalog::parse_file(&text, &path.display().to_string())
                        .map_err(CliError::usage)?,
                );
                Some(text)
            }
            None => None,
        };
        if workloads.is_empty() && faults.is_empty() {
            return Err(CliError::usage("--scenarios lists no scenario"));
        }
        let schedule = schedule(&faults, windows, warmup_windows).map_err(CliError::usage)?;
        let mut allow = Vec::new();
        for (flag, permission) in [
            (self.allow_restart, Permission::Restart),
            (self.allow_netem, Permission::Netem),
            (self.allow_iptables, Permission::Iptables),
        ] {
            if flag {
                allow.push(permission);
            }
        }
        if let Some(lease) = self.fault_lease
            && (lease < Duration::from_secs(1) || lease > Duration::from_secs(3600))
        {
            return Err(CliError::usage("--fault-lease must be between 1s and 1h"));
        }
        if !self.node_args.is_empty() && self.inventory.is_some() {
            return Err(CliError::usage(
                "--node-arg applies to the local mesh; set node options in the inventory",
            ));
        }
        if self.limit.is_some() && self.inventory.is_none() {
            return Err(CliError::usage(
                "--limit selects inventory hosts; it needs --inventory",
            ));
        }
        let label = match (&self.label, &self.inventory) {
            (Some(label), _) => label.trim().to_owned(),
            (None, Some(path)) => path
                .file_stem()
                .map(|stem| stem.to_string_lossy().into_owned())
                .filter(|stem| !stem.trim().is_empty())
                .unwrap_or_else(|| "inventory".to_owned()),
            (None, None) => "local".to_owned(),
        };
        if label.is_empty() {
            return Err(CliError::usage("--label must not be empty"));
        }
        if self.concurrency == Some(0) {
            return Err(CliError::usage("--concurrency must be at least 1"));
        }
        if self.full_matrix_max < 2 {
            return Err(CliError::usage("--full-matrix-max must be at least 2"));
        }
        if self.matrix_partners == Some(0) {
            return Err(CliError::usage("--matrix-partners must be at least 1"));
        }
        if !(1..=1_000_000).contains(&self.burst_messages) {
            return Err(CliError::usage(
                "--burst-messages must be between 1 and 1000000",
            ));
        }
        if !(1..=1 << 20).contains(&self.burst_bytes) {
            return Err(CliError::usage(
                "--burst-bytes must be between 1 and 1048576",
            ));
        }
        if !(self.burst_rate.is_finite() && self.burst_rate > 0.0) {
            return Err(CliError::usage("--burst-rate must be a positive number"));
        }
        if self.burst_publishers == 0 || (self.inventory.is_none() && self.burst_publishers > nodes)
        {
            return Err(CliError::usage(format!(
                "--burst-publishers must be between 1 and the number of nodes ({nodes})"
            )));
        }
        if self.request_timeout < Duration::from_millis(100) {
            return Err(CliError::usage("--request-timeout must be at least 100ms"));
        }
        let gate = match &self.gate_file {
            Some(path) => GateChoice::File(path.clone()),
            None => GateChoice::Builtin(self.gate.clone()),
        };
        Ok(RunPlan {
            inventory: self.inventory.clone(),
            nodes,
            min_hosts: self.min_hosts,
            windows,
            warmup_windows,
            interval_ms: millis(self.interval),
            sample_interval_ms: millis(self.sample_interval),
            workloads,
            schedule,
            scenario_file: self.scenario_file.clone(),
            scenario_text,
            allow,
            fault_lease_ms: millis(self.fault_lease.unwrap_or(DEFAULT_NODE_LEASE)),
            host_lease_ms: millis(
                self.fault_lease
                    .unwrap_or(soak_scenarios::faults::host::DEFAULT_HOST_LEASE),
            ),
            node_args: self.node_args.clone(),
            gate,
            proof_dir: self.proof_dir.clone(),
            seed: self.seed.unwrap_or_else(rand::random),
            label,
            limit: self.limit.as_ref().map(|p| p.as_str().to_owned()),
            events: self.events,
            node_bin: self.node_bin.clone(),
            concurrency: self.concurrency,
            full_matrix_max: self.full_matrix_max,
            matrix_partners: self
                .matrix_partners
                .unwrap_or(self.full_matrix_max.saturating_sub(1).max(1)),
            burst_messages: self.burst_messages,
            burst_bytes: self.burst_bytes,
            burst_rate: self.burst_rate,
            burst_publishers: self.burst_publishers,
            request_timeout_ms: millis(self.request_timeout),
            start_timeout_ms: millis(self.start_timeout),
        })
    }
}

/// Loads the gate profile (a usage error when the name or file is bad).
pub(crate) fn load_gate(choice: &GateChoice) -> Result<(Profile, Option<String>), CliError> {
    match choice {
        GateChoice::Builtin(name) => Profile::builtin(name)
            .map(|p| (p, None))
            .map_err(|err| CliError::usage(format!("{err}: {}", err.kind))),
        GateChoice::File(path) => {
            let text = std::fs::read_to_string(path).map_err(|err| {
                CliError::usage(format!("cannot read gate file {}: {err}", path.display()))
            })?;
            let profile = Profile::from_toml_str(&text, &path.display().to_string())
                .map_err(|err| CliError::usage(format!("{err}: {}", err.kind)))?;
            Ok((profile, Some(text)))
        }
    }
}

/// Finds the `soak-node` binary: the flag / `SOAK_NODE_BIN`, else next to this executable,
/// else on `PATH`.
pub fn resolve_node_bin(given: Option<&Path>) -> Result<PathBuf, CliError> {
    if let Some(path) = given {
        return if path.is_file() {
            Ok(path.to_owned())
        } else {
            Err(CliError::unavailable(format!(
                "node binary {} (from --node-bin or SOAK_NODE_BIN) does not exist",
                path.display()
            )))
        };
    }
    let sibling = std::env::current_exe()
        .ok()
        .and_then(|exe| exe.parent().map(|dir| dir.join("soak-node")))
        .filter(|p| p.is_file());
    if let Some(path) = sibling {
        return Ok(path);
    }
    if let Some(paths) = std::env::var_os("PATH") {
        for dir in std::env::split_paths(&paths) {
            let candidate = dir.join("soak-node");
            if candidate.is_file() {
                return Ok(candidate);
            }
        }
    }
    Err(CliError::unavailable(
        "soak-node not found (not next to soak, not on PATH): build it with \
         `cargo build -p soak-node`, or pass --node-bin PATH / SOAK_NODE_BIN",
    ))
}

/// Runs `soak run` (or, with `--resume`, continues a run into its proof).
pub async fn execute(args: RunArgs) -> CliResult {
    if args.resume.is_some() {
        let start = super::resume::prepare(&args)?;
        return drive(start).await;
    }
    // Step one: nothing is touched until the arguments hold together.
    let plan = args.plan()?;
    let args_limit = args.limit.clone();
    let (profile, gate_source) = load_gate(&plan.gate)?;
    // A bad inventory or a --limit that selects nothing is a usage error before anything is
    // created (the fleet step reads the inventory again and names its warnings).
    if let Some(path) = &plan.inventory {
        let inventory = soak_inventory::Inventory::load(path)
            .map_err(|e| CliError::usage(format!("bad inventory: {e}")))?;
        if let Some(pattern) = &args_limit
            && pattern.select(&inventory).hosts.is_empty()
        {
            return Err(CliError::usage(format!(
                "--limit `{}` selects no host of {}",
                pattern.as_str(),
                path.display()
            )));
        }
    }
    let node_bin = match plan.inventory {
        None => Some(resolve_node_bin(plan.node_bin.as_deref())?),
        Some(_) => None,
    };
    let started_at_ms = now_ms();
    let run_id = soak_proofs::run_id(started_at_ms, &plan.label);
    let proof_dir = plan
        .proof_dir
        .clone()
        .unwrap_or_else(|| PathBuf::from("proofs").join(&run_id));
    let signals = Signals::install()
        .map_err(|err| CliError::unavailable(format!("cannot install signal handlers: {err}")))?;

    let inventory_digest = match &plan.inventory {
        Some(path) => Some(
            std::fs::read(path)
                .map(|bytes| hex::encode(sha2::Sha256::digest(&bytes)))
                .map_err(|err| {
                    CliError::usage(format!("cannot read inventory {}: {err}", path.display()))
                })?,
        ),
        None => None,
    };
    let meta = RunMeta {
        run_id: run_id.clone(),
        label: plan.label.clone(),
        started_at_ms,
        tool_version: env!("CARGO_PKG_VERSION").to_owned(),
        node_builds: Vec::new(),
        inventory_digest,
        gate: profile.name().to_owned(),
        gate_source: gate_source.or_else(|| Some(profile.source().to_owned())),
        scenarios: plan
            .workloads
            .iter()
            .cloned()
            .chain(plan.schedule.faults().map(|f| f.instance.clone()))
            .collect(),
        sample_interval_ms: plan.sample_interval_ms,
        nodes: Vec::new(),
        config: serde_json::to_value(&plan).unwrap_or(serde_json::Value::Null),
        coverage: None,
        command: Some(std::env::args().collect()),
        seed: Some(plan.seed),
        errors: Vec::new(),
        errors_omitted: 0,
        resumes: Vec::new(),
    };
    // Kept for the end summary (the command line and seed); the writer owns the original.
    let summary_meta = meta.clone();
    let writer = ProofWriter::create(&proof_dir, meta).map_err(|err| match err.kind {
        // The directory could not be written (permissions, disk): infrastructure.
        soak_proofs::ErrorKind::Io(_) => CliError::unavailable(format!("{err}: {}", err.kind)),
        // It exists and is not empty, or similar: the user picked the wrong place.
        _ => CliError::usage(format!("{err}: {}", err.kind)),
    })?;
    let mut writer = writer;
    if let Some(text) = &plan.scenario_text {
        writer
            .write_fault_file(soak_proofs::format::SCENARIO_FILE, text.as_bytes())
            .map_err(|err| CliError::unavailable(format!("{err}: {}", err.kind)))?;
    }
    let data_root = match plan.inventory {
        None => node_data_root(writer.dir(), &run_id),
        // Nothing is spawned here; nothing is created.
        Some(_) => std::env::temp_dir().join(format!("soak-{run_id}-{}", std::process::id())),
    };
    drive(Start {
        plan,
        limit: args_limit,
        profile,
        run_id,
        writer,
        summary_meta,
        node_bin,
        data_root,
        signals,
        first_window: 0,
        resumed: None,
    })
    .await
}

/// Where a local mesh keeps its nodes' data dirs: beside the proof, as `.<proof>.nodes/`, so
/// a killed or interrupted run leaves them where `soak run --resume` finds them (and a test's
/// temporary directory removes them); the temp dir when the proof's parent is not writable.
/// Removed once the run completes.
fn node_data_root(proof_dir: &Path, run_id: &str) -> PathBuf {
    let beside = proof_dir
        .parent()
        .zip(proof_dir.file_name())
        .map(|(parent, name)| parent.join(format!(".{}.nodes", name.to_string_lossy())));
    match beside.and_then(|dir| std::path::absolute(dir).ok()) {
        Some(dir) if std::fs::create_dir_all(&dir).is_ok() => dir,
        _ => std::env::temp_dir().join(format!("soak-{run_id}-{}", std::process::id())),
    }
}

/// A run ready to drive: a proof writer (new, or reopened by a resume), its plan and gate.
pub struct Start {
    /// The plan (from the flags, or from `config.json` for a resume).
    pub plan: RunPlan,
    /// `--limit`, parsed.
    pub limit: Option<soak_inventory::HostPattern>,
    /// The gate profile.
    pub profile: Profile,
    /// Run id.
    pub run_id: String,
    /// The proof writer.
    pub writer: ProofWriter,
    /// Metadata for the end summary (command line, seed).
    pub summary_meta: RunMeta,
    /// The node binary (local mesh).
    pub node_bin: Option<PathBuf>,
    /// Where the local nodes' data dirs live (`<root>/node-N`).
    pub data_root: PathBuf,
    /// Signal handlers, installed before anything was touched.
    pub signals: Signals,
    /// First window to run.
    pub first_window: u32,
    /// What a resume found, when this is one.
    pub resumed: Option<super::resume::Resumed>,
}

/// Step two, shared by a new run and a resume: reporters, the fleet, the windows, the verdict
/// (judged from the stored proof), the proof sealed, the exit code.
async fn drive(start: Start) -> CliResult {
    let Start {
        plan,
        limit: args_limit,
        profile,
        run_id,
        writer,
        summary_meta,
        node_bin,
        data_root,
        mut signals,
        first_window,
        resumed,
    } = start;
    let proof_path = writer.dir().to_owned();

    let progress = Progress::new();
    let mut dispatch = Dispatch::new();
    let (proof_reporter, proof_outcome) = ProofReporter::new(writer);
    // The proof reporter goes first: evidence before display.
    dispatch.add(Box::new(proof_reporter));
    if plan.events == Some(EventsFormat::Jsonl) {
        dispatch.add(Box::new(JsonLines::new(std::io::stdout())));
    }
    let table_to_stderr = plan.events.is_some();

    let client = http_client(Duration::from_millis(plan.request_timeout_ms))
        .map_err(|err| CliError::unavailable(err.to_string()))?;
    if let Some(resumed) = &resumed {
        // First in the proof: what was lost, before anything new is recorded.
        dispatch.emit(&RunEvent::Resumed {
            record: resumed.record.clone(),
        });
        super::resume::wait_for_previous_nodes(&resumed.previous, &progress).await;
    }

    // Step two: resolve the fleet. A signal during start-up still stops what was spawned.
    let start = Instant::now();
    let fleet = match &plan.inventory {
        Some(path) => {
            let options = RemoteFleetOptions {
                request_timeout: Duration::from_millis(plan.request_timeout_ms),
                ready_timeout: Duration::from_millis(plan.start_timeout_ms),
                policy: PartialPolicy {
                    min_hosts: plan.min_hosts,
                },
                limit: args_limit.clone(),
                ..RemoteFleetOptions::default()
            };
            progress.line(&format!("connecting to the fleet of {}", path.display()));
            tokio::select! {
                fleet = RemoteFleet::connect(path, &options) => fleet.map(Fleet::Remote),
                signal = signals.recv() => Err(CliError {
                    message: format!("{signal} while connecting to the fleet"),
                    exit: Exit::Interrupted,
                }),
            }
        }
        None => {
            let config = LocalMeshConfig {
                nodes: plan.nodes,
                node_bin: node_bin.clone().unwrap_or_default(),
                data_root: data_root.clone(),
                start_timeout: Duration::from_millis(plan.start_timeout_ms),
                client: client.clone(),
                extra_args: plan.node_args.clone(),
            };
            let say = |line: &str| progress.line(line);
            tokio::select! {
                mesh = LocalMesh::start(&config, &say) => mesh.map(Fleet::Local),
                signal = signals.recv() => Err(CliError {
                    message: format!("{signal} during start-up: every spawned node was stopped"),
                    exit: Exit::Interrupted,
                }),
            }
        }
    };
    dispatch.add(Box::new(progress));
    let mut fleet = match fleet {
        Ok(fleet) => fleet,
        Err(err) => {
            let status = if err.exit == Exit::Interrupted {
                RunStatus::Interrupted
            } else {
                RunStatus::Failed
            };
            dispatch.emit(&RunEvent::Error {
                message: err.message.clone(),
            });
            let observations = stored_observations(&proof_path, &run_id, &plan, &mut dispatch);
            let _ = finish(
                &mut dispatch,
                status,
                &observations,
                &profile,
                proof_outcome,
            )
            .await;
            let _ = std::fs::remove_dir_all(&data_root);
            return Err(err);
        }
    };

    // Inventory runs record how much of the inventory they reach; hosts left out under the
    // partial-fleet policy (--min-hosts) are named in the proof (run.json, summary.md), on
    // stderr now and again at the end.
    let coverage_event = match &fleet {
        Fleet::Remote(remote) => Some(coverage_event(
            remote.endpoints().len(),
            remote.warning().map(str::to_owned),
            remote
                .missing()
                .iter()
                .map(|m| MissingHost {
                    host: m.host.clone(),
                    error: m.error.clone(),
                })
                .collect(),
        )),
        Fleet::Local(_) => None,
    };
    let coverage = coverage_event.as_ref().and_then(RunEvent::coverage);
    if let Some(event) = &coverage_event {
        dispatch.emit(event);
    }
    let endpoints = fleet.endpoints();
    let processes = fleet.processes();
    dispatch.emit(&RunEvent::FleetReady {
        nodes: endpoints
            .iter()
            .map(|e| {
                let process = processes.iter().find(|p| p.name == e.name);
                FleetNode {
                    name: e.name.clone(),
                    peer_id: e.peer_id.clone(),
                    admin_url: e.admin_url.clone(),
                    pid: process.map(|p| p.pid),
                    log: process.map(|p| p.log.display().to_string()),
                    data_dir: process
                        .and_then(|p| p.log.parent())
                        .map(|d| d.display().to_string()),
                }
            })
            .collect(),
        builds: fleet.builds(),
        took_ms: millis(start.elapsed()),
    });
    let nodes: Vec<HttpNode> = endpoints
        .iter()
        .cloned()
        .map(|e| HttpNode::new(e, client.clone()))
        .collect();

    let (control, down, capabilities) = runner_fleet(&mut fleet, &plan, &run_id);
    let config = RunnerConfig {
        run_id: run_id.clone(),
        proof_dir: proof_path.display().to_string(),
        windows: plan.windows,
        first_window,
        warmup_windows: plan.warmup_windows,
        interval: Duration::from_millis(plan.interval_ms),
        sample_interval: Duration::from_millis(plan.sample_interval_ms),
        workloads: plan.workloads.clone(),
        phase_a: PhaseAConfig {
            concurrency: plan
                .concurrency
                .unwrap_or_else(|| default_concurrency(endpoints.len())),
            full_matrix_max: plan.full_matrix_max,
            partners: plan.matrix_partners,
            seed: plan.seed,
            warmup_windows: plan.warmup_windows,
            ..PhaseAConfig::default()
        },
        fanout: FanoutConfig {
            messages: plan.burst_messages,
            bytes: plan.burst_bytes,
            rate_per_sec: plan.burst_rate,
            ..FanoutConfig::default()
        },
        burst_publishers: plan.burst_publishers,
        seed: plan.seed,
        inventory_hosts: coverage.as_ref().map(|c| c.inventory_hosts),
        schedule: plan.schedule.clone(),
        capabilities,
        fault_lease: Duration::from_millis(plan.fault_lease_ms),
        request_timeout: Duration::from_millis(plan.request_timeout_ms),
        profile: Some(profile.clone()),
    };
    let runner_fleet = crate::runner::Fleet {
        nodes,
        control,
        down,
    };
    let report = crate::runner::run(config, runner_fleet, &mut dispatch, &mut signals).await;

    // Final samples are in; stop every node before sealing the proof, so nothing outlives the
    // run even if writing the proof fails.
    let shutdown = fleet.shutdown().await;
    if let Err(err) = &shutdown {
        dispatch.emit(&RunEvent::Error {
            message: err.message.clone(),
        });
    }
    copy_logs(&processes, &proof_path, &mut dispatch);
    // Judged from the stored proof — exactly what `soak score` reads — so the verdict equals a
    // re-score by construction, and the runner never had to keep the run's evidence in memory.
    let observations = stored_observations(&proof_path, &run_id, &plan, &mut dispatch);
    let verdict = finish(
        &mut dispatch,
        report.status,
        &observations,
        &profile,
        proof_outcome,
    )
    .await?;
    if report.status == RunStatus::Interrupted && plan.inventory.is_none() {
        // Kept for `soak run --resume`: the nodes come back with the same identities.
        errln!(
            "node data kept in {} for `soak run --resume {}`",
            data_root.display(),
            proof_path.display()
        );
    } else {
        let _ = std::fs::remove_dir_all(&data_root);
    }

    let summary = table::end_summary(&summary_meta, report.status, &verdict, &observations);
    let rendered = table::render(
        &verdict,
        &observations,
        &proof_path,
        report.status,
        coverage.as_ref(),
        &summary,
    );
    // A closed stdout/stderr (e.g. piped into `head`) must not turn a judged run into a panic.
    if table_to_stderr {
        errln!("{rendered}");
    } else {
        outln!("{rendered}");
    }
    if let Some(warning) = table::partial_fleet_warning(coverage.as_ref()) {
        errln!("{warning}");
    }
    if report.status == RunStatus::Interrupted {
        return Ok(Exit::Interrupted);
    }
    Ok(match verdict.verdict {
        soak_gates::Outcome::Go => Exit::Go,
        soak_gates::Outcome::NoGo => Exit::NoGo,
        soak_gates::Outcome::Unknown => Exit::Unknown,
    })
}

/// What the runner gets from the fleet besides the admin API handles: process control, the
/// supervisor's reports of nodes that stop on their own, and what the nemesis may do here.
fn runner_fleet(
    fleet: &mut Fleet,
    plan: &RunPlan,
    run_id: &str,
) -> (
    Arc<dyn soak_scenarios::faults::control::NodeControl>,
    Option<tokio::sync::mpsc::UnboundedReceiver<soak_gates::model::NodeEvent>>,
    Capabilities,
) {
    match fleet {
        Fleet::Local(mesh) => {
            let host_faults =
                "host faults (tc, iptables) need a host fleet (-i INVENTORY)".to_owned();
            let mut exits = mesh.supervise();
            let (tx, rx) = tokio::sync::mpsc::unbounded_channel();
            tokio::spawn(async move {
                while let Some(exit) = exits.recv().await {
                    if tx.send(exit.event()).is_err() {
                        return;
                    }
                }
            });
            (
                mesh.control(),
                Some(rx),
                Capabilities {
                    allowed: plan.allow.clone(),
                    process_unavailable: None,
                    tc_unavailable: Some(host_faults.clone()),
                    iptables_unavailable: Some(host_faults),
                    hosts: false,
                },
            )
        }
        Fleet::Remote(remote) => (
            remote.control(run_id, Duration::from_millis(plan.host_lease_ms)),
            None,
            // What each host can do (tools, kernel modules, a guard) is checked on the host
            // before a fault changes anything; what it cannot is SKIPPED with the reason.
            Capabilities {
                allowed: plan.allow.clone(),
                process_unavailable: None,
                tc_unavailable: None,
                iptables_unavailable: None,
                hosts: true,
            },
        ),
    }
}

/// The `FleetCoverage` event of an inventory run that reached `reached` hosts and left out
/// `missing` (every inventory host is one or the other); `message` is the policy's warning.
fn coverage_event(reached: usize, message: Option<String>, missing: Vec<MissingHost>) -> RunEvent {
    RunEvent::FleetCoverage {
        inventory_hosts: reached + missing.len(),
        reached,
        missing,
        message,
    }
}

/// The observations of a run that never reached its windows: the plan (as in `config.json`)
/// says what was expected, so the stored verdict and a re-score agree.
fn empty_observations(run_id: &str, plan: &RunPlan, nodes: &[NodeRef]) -> Observations {
    Observations {
        run: RunInfo {
            run_id: run_id.to_owned(),
            sample_interval_ms: plan.sample_interval_ms,
            nodes: nodes.to_vec(),
            inventory_hosts: None,
            planned_windows: Some(plan.windows),
            window_ms: Some(plan.interval_ms),
            interruptions: Vec::new(),
        },
        samples: nodes.iter().map(|n| (n.name.clone(), Vec::new())).collect(),
        windows: Vec::new(),
        residue: Vec::new(),
        node_events: Vec::new(),
    }
}

/// The observations of the proof as stored so far (every sample, window and node event the
/// proof reporter wrote). A proof that cannot be read back is an error event and an empty set
/// of observations (the proof outcome then fails the run with 69; nothing is judged GO).
fn stored_observations(
    proof_dir: &Path,
    run_id: &str,
    plan: &RunPlan,
    dispatch: &mut Dispatch,
) -> Observations {
    match soak_proofs::read(proof_dir) {
        Ok(proof) => proof.observations,
        Err(err) => {
            dispatch.emit(&RunEvent::Error {
                message: format!(
                    "cannot read the proof back to judge it: {err}: {}",
                    err.kind
                ),
            });
            empty_observations(run_id, plan, &[])
        }
    }
}

/// Judges, emits `RunFinished` (which seals the proof) and waits for the proof's outcome.
async fn finish(
    dispatch: &mut Dispatch,
    status: RunStatus,
    observations: &Observations,
    profile: &Profile,
    proof_outcome: ProofOutcome,
) -> Result<soak_gates::Verdict, CliError> {
    let verdict = soak_gates::evaluate(observations, profile);
    dispatch.emit(&RunEvent::RunFinished {
        status,
        verdict: verdict.verdict.as_str().to_owned(),
        at_ms: now_ms(),
        judged: Some(Box::new(verdict.clone())),
    });
    match proof_outcome.await {
        Ok(Ok(_)) => Ok(verdict),
        Ok(Err(err)) => Err(CliError::unavailable(format!(
            "the proof could not be written: {err}"
        ))),
        Err(_) => Err(CliError::unavailable(
            "the proof writer stopped before sealing the proof",
        )),
    }
}

/// Copies every spawned node's log into `logs/` of the proof (before the manifest is sealed,
/// so the logs are covered by its hashes).
fn copy_logs(
    processes: &[crate::fleet::local::NodeProcess],
    proof_dir: &Path,
    dispatch: &mut Dispatch,
) {
    if processes.is_empty() {
        return;
    }
    let logs = proof_dir.join("logs");
    if let Err(err) = std::fs::create_dir_all(&logs) {
        dispatch.emit(&RunEvent::Error {
            message: format!("cannot create {}: {err}", logs.display()),
        });
        return;
    }
    for process in processes {
        let target = logs.join(format!("{}.log", process.name));
        if let Err(err) = std::fs::copy(&process.log, &target) {
            dispatch.emit(&RunEvent::Error {
                message: format!("cannot copy the log of {}: {err}", process.name),
            });
        }
    }
}

#[cfg(test)]
mod tests {
    use clap::Parser;

    use super::*;

    #[derive(Debug, Parser)]
    struct Harness {
        #[command(flatten)]
        run: RunArgs,
    }

    fn plan(args: &[&str]) -> Result<RunPlan, CliError> {
        let mut argv = vec!["soak"];
        argv.extend_from_slice(args);
        match Harness::try_parse_from(argv) {
            Ok(h) => h.run.plan(),
            Err(err) => Err(CliError::usage(err.to_string())),
        }
    }

    #[test]
    fn defaults_give_a_two_minute_six_node_run() {
        let plan = plan(&[]).expect("defaults are valid");
        assert_eq!(plan.nodes, 6);
        assert_eq!(plan.windows, 4);
        assert_eq!(plan.warmup_windows, 1);
        assert_eq!(plan.workloads, vec!["baseline", "fanout_burst"]);
        assert_eq!(plan.schedule.faults().count(), 0);
        assert_eq!(plan.gate, GateChoice::Builtin("broad-launch".into()));
    }

    #[test]
    fn bad_input_is_a_usage_error() {
        for args in [
            &["--nodes", "1"][..],
            &["--nodes", "100000"],
            &["--interval", "0s"],
            &["--duration", "5s", "--interval", "10s"],
            &["--duration", "20s", "--interval", "10s", "--warmup", "20s"],
            &["--scenarios", "baseline,nope"],
            &["--scenarios", "baseline,baseline"],
            &["--sample-interval", "1m", "--interval", "30s"],
            &["--burst-rate", "0"],
            &["--burst-publishers", "7"],
            &["--concurrency", "0"],
            &["--duration", "banana"],
            &["--events", "xml"],
            &["-i", "hosts.toml", "--nodes", "3"],
            &["--min-hosts", "2"],
            &["-i", "hosts.toml", "--min-hosts", "1"],
            &["--label", " "],
        ] {
            let err = plan(args).expect_err(&format!("{args:?} must be rejected"));
            assert_eq!(err.exit, Exit::Usage, "{args:?}");
        }
    }

    #[test]
    fn windows_round_down_and_warmup_rounds_up() {
        let plan =
            plan(&["--duration", "65s", "--interval", "20s", "--warmup", "21s"]).expect("valid");
        assert_eq!(plan.windows, 3);
        assert_eq!(plan.warmup_windows, 2);
        let single =
            super::tests::plan(&["--duration", "20s", "--interval", "20s"]).expect("valid");
        assert_eq!((single.windows, single.warmup_windows), (1, 0));
    }

    #[test]
    fn missing_node_binary_is_unavailable() {
        let err =
            resolve_node_bin(Some(Path::new("/nonexistent/soak-node"))).expect_err("must fail");
        assert_eq!(err.exit, Exit::Unavailable);
    }

    #[test]
    fn unknown_gate_is_a_usage_error() {
        let err = load_gate(&GateChoice::Builtin("no-such-gate".into())).expect_err("unknown");
        assert_eq!(err.exit, Exit::Usage);
        let err = load_gate(&GateChoice::File("/nonexistent/gate.toml".into())).expect_err("io");
        assert_eq!(err.exit, Exit::Usage);
    }
}
