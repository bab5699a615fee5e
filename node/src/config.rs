//! Command line, `SOAK_NODE_*` environment and TOML file configuration.
//!
//! Precedence: command line / environment (clap handles both) > TOML file > built-in default.
//! Every numeric value is clamped to a sane range; a clamped value is reported as a warning
//! (returned to the caller, which logs it) rather than refused, so a fleet-wide typo degrades
//! instead of failing a whole soak.

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::time::Duration;

use clap::{Args, Parser, Subcommand};
use serde::Deserialize;

use crate::proto::PeerId;

/// `soak-node` command line.
#[derive(Debug, Parser)]
#[command(
    name = "soak-node",
    version,
    about = "The bundled overlay node under test"
)]
pub struct Cli {
    /// What to do.
    #[command(subcommand)]
    pub command: Command,
}

/// Subcommands.
#[derive(Debug, Subcommand)]
pub enum Command {
    /// Run the node until SIGINT/SIGTERM.
    Run(RunArgs),
}

/// Arguments of `soak-node run`.
#[derive(Debug, Clone, Args)]
pub struct RunArgs {
    /// Data directory: identity key, admin token, node.json.
    #[arg(long, env = "SOAK_NODE_DATA_DIR")]
    pub data_dir: PathBuf,
    /// QUIC (UDP) listen address; port 0 picks a free port. Default 127.0.0.1:0.
    #[arg(long, env = "SOAK_NODE_LISTEN")]
    pub listen: Option<SocketAddr>,
    /// Admin HTTP listen address; port 0 picks a free port. Default 127.0.0.1:0.
    #[arg(long, env = "SOAK_NODE_ADMIN")]
    pub admin: Option<SocketAddr>,
    /// QUIC address to advertise to peers (in hellos and peer exchange) when it differs from
    /// `--listen`, e.g. a node listening on 0.0.0.0. Port 0 means the bound port.
    #[arg(long, env = "SOAK_NODE_ADVERTISE")]
    pub advertise: Option<SocketAddr>,
    /// Bootstrap peers, comma separated: `ADDR` or `PEER_ID@ADDR` (pinned); ADDR is `ip:port`
    /// or `host:port` (re-resolved every `bootstrap_resolve_ms`).
    #[arg(long, env = "SOAK_NODE_BOOTSTRAP", value_delimiter = ',')]
    pub bootstrap: Vec<String>,
    /// TOML configuration file (same keys as the long flags, with underscores).
    #[arg(long, env = "SOAK_NODE_CONFIG")]
    pub config: Option<PathBuf>,
    /// Shut down cleanly when process PID is gone (checked every 250 ms by pid and start
    /// time, and by our parent pid when PID is the parent). `soak run` passes its own pid, so
    /// local nodes never outlive a SIGKILLed `soak`. Not a config-file key: it names a process.
    #[arg(
        long,
        env = "SOAK_NODE_EXIT_WITH_PARENT",
        value_name = "PID",
        value_parser = clap::value_parser!(u32).range(1..)
    )]
    pub exit_with_parent: Option<u32>,
    /// Tunables.
    #[command(flatten)]
    pub tune: Tunables,
    /// Test-only behaviours (hidden from `--help`, documented in docs/node-api.md).
    #[command(flatten)]
    pub test: TestHooks,
}

/// Test-only behaviours that make the node misbehave on purpose, so the orchestrator's checks
/// can be proven against a real process. Never set on a real fleet; not config-file keys.
#[derive(Debug, Clone, Default, PartialEq, Eq, Args)]
pub struct TestHooks {
    /// Accept and list impairments but never apply them (a fault that does nothing).
    #[arg(long = "test-ignore-impairments", hide = true)]
    pub ignore_impairments: bool,
    /// On a restart (the data dir already held an identity), stay out of the mesh for this
    /// many milliseconds: no dials, inbound peer connections refused, `/readyz` 503 with the
    /// check `test_rejoin_delay_elapsed` false. The admin API is up meanwhile.
    #[arg(long = "test-rejoin-delay-ms", hide = true, value_name = "MS")]
    pub rejoin_delay_ms: Option<u64>,
    /// Retain this many bytes of (touched) heap per second, up to 512 MiB.
    #[arg(long = "test-leak-bytes-per-sec", hide = true, value_name = "N")]
    pub leak_bytes_per_sec: Option<u64>,
    /// Open this many file descriptors (`/dev/null`) per second, up to half the fd limit.
    #[arg(long = "test-leak-fds-per-sec", hide = true, value_name = "N")]
    pub leak_fds_per_sec: Option<u64>,
}

macro_rules! tunables {
    ($( $(#[doc = $doc:literal])* $field:ident : $env:literal = $default:expr, $min:expr, $max:expr; )*) => {
        /// Numeric tunables; every one is optional here and resolved by [`Settings::resolve`].
        #[derive(Debug, Clone, Default, Args, Deserialize)]
        #[serde(default, deny_unknown_fields)]
        pub struct Tunables {
            $(
                $(#[doc = $doc])*
                #[arg(long, env = $env)]
                pub $field: Option<u64>,
            )*
        }

        /// Resolved numeric tunables (after precedence and clamping).
        #[derive(Debug, Clone, PartialEq, Eq)]
        pub struct Tuning {
            $( $(#[doc = $doc])* pub $field: u64, )*
        }

        impl Tuning {
            fn resolve(cli: &Tunables, file: &Tunables, warnings: &mut Vec<String>) -> Tuning {
                Tuning {
                    $( $field: clamp(
                        stringify!($field),
                        cli.$field.or(file.$field).unwrap_or($default),
                        $min,
                        $max,
                        warnings,
                    ), )*
                }
            }
        }

        impl Default for Tuning {
            fn default() -> Self {
                Tuning { $( $field: $default, )* }
            }
        }
    };
}

tunables! {
    /// QUIC idle timeout, milliseconds.
    idle_timeout_ms: "SOAK_NODE_IDLE_TIMEOUT_MS" = 30_000, 200, 600_000;
    /// QUIC keep-alive interval, milliseconds (forced below the idle timeout).
    keep_alive_ms: "SOAK_NODE_KEEP_ALIVE_MS" = 5_000, 50, 300_000;
    /// Deadline for a peer to finish the QUIC + hello handshake, milliseconds.
    auth_timeout_ms: "SOAK_NODE_AUTH_TIMEOUT_MS" = 5_000, 100, 60_000;
    /// Default ACK timeout per DM attempt, milliseconds.
    ack_timeout_ms: "SOAK_NODE_ACK_TIMEOUT_MS" = 2_000, 10, 60_000;
    /// Membership maintenance tick, milliseconds.
    tick_ms: "SOAK_NODE_TICK_MS" = 1_000, 50, 60_000;
    /// Target size of the active view.
    active_view: "SOAK_NODE_ACTIVE_VIEW" = 8, 1, 64;
    /// Maximum size of the passive view (the address book beyond the active view).
    passive_view: "SOAK_NODE_PASSIVE_VIEW" = 256, 4, 10_000;
    /// Entries sent per peer exchange (shuffle).
    shuffle_len: "SOAK_NODE_SHUFFLE_LEN" = 64, 1, 1_000;
    /// Close non-active (on-demand) connections unused for this long, milliseconds.
    on_demand_idle_ms: "SOAK_NODE_ON_DEMAND_IDLE_MS" = 60_000, 1_000, 3_600_000;
    /// Base reconnect backoff, milliseconds (doubles per failure).
    backoff_base_ms: "SOAK_NODE_BACKOFF_BASE_MS" = 250, 10, 60_000;
    /// Maximum reconnect backoff, milliseconds.
    backoff_max_ms: "SOAK_NODE_BACKOFF_MAX_MS" = 30_000, 100, 600_000;
    /// DM inbox capacity (messages).
    inbox_capacity: "SOAK_NODE_INBOX_CAPACITY" = 10_000, 1, 1_000_000;
    /// Inbox items younger than this are retained (a full inbox of them answers busy), ms.
    inbox_retention_ms: "SOAK_NODE_INBOX_RETENTION_MS" = 600_000, 0, 86_400_000;
    /// Dedupe cache capacity (entries).
    dedupe_capacity: "SOAK_NODE_DEDUPE_CAPACITY" = 100_000, 16, 10_000_000;
    /// Dedupe cache TTL, milliseconds.
    dedupe_ttl_ms: "SOAK_NODE_DEDUPE_TTL_MS" = 600_000, 1_000, 86_400_000;
    /// Largest DM payload, bytes.
    max_payload_bytes: "SOAK_NODE_MAX_PAYLOAD_BYTES" = 65_536, 1, 4_194_304;
    /// Receive queue ("recv pump") capacity, frames.
    recv_queue: "SOAK_NODE_RECV_QUEUE" = 4_096, 1, 1_000_000;
    /// Dispatcher worker count.
    dispatcher_workers: "SOAK_NODE_DISPATCHER_WORKERS" = 2, 1, 64;
    /// Dispatcher per-task timeout, milliseconds.
    dispatcher_timeout_ms: "SOAK_NODE_DISPATCHER_TIMEOUT_MS" = 1_000, 1, 60_000;
    /// Most dispatcher workers the adaptive pool may grow to (never below `dispatcher_workers`).
    dispatcher_workers_max: "SOAK_NODE_DISPATCHER_WORKERS_MAX" = 8, 1, 64;
    /// How long a connection reader waits for room in a full receive queue before dropping the
    /// frame, milliseconds (0 = drop at once). Under sustained overload this paces reading, so
    /// QUIC flow control pushes back on the sending peers.
    recv_push_deadline_ms: "SOAK_NODE_RECV_PUSH_DEADLINE_MS" = 50, 0, 10_000;
    /// QUIC per-stream receive window, bytes (how much a peer may have in flight to us).
    stream_window_bytes: "SOAK_NODE_STREAM_WINDOW_BYTES" = 1_250_000, 16_384, 67_108_864;
    /// Per-topic subscriber buffer capacity (messages) behind `GET /v1/topics/{t}/received`.
    topic_buffer_capacity: "SOAK_NODE_TOPIC_BUFFER_CAPACITY" = 10_000, 1, 1_000_000;
    /// Unconsumed subscriber-buffer items younger than this are never evicted, milliseconds.
    topic_buffer_retention_ms: "SOAK_NODE_TOPIC_BUFFER_RETENTION_MS" = 600_000, 0, 86_400_000;
    /// Per-peer outbound queue capacity, frames.
    outbound_queue: "SOAK_NODE_OUTBOUND_QUEUE" = 1_024, 1, 1_000_000;
    /// Per-frame write deadline on a peer stream, milliseconds.
    send_deadline_ms: "SOAK_NODE_SEND_DEADLINE_MS" = 2_000, 10, 60_000;
    /// Per-peer inbound DM rate limit, messages per second (token refill rate).
    rate_limit_per_sec: "SOAK_NODE_RATE_LIMIT_PER_SEC" = 2_000, 1, 1_000_000;
    /// Per-peer inbound DM burst (bucket size).
    rate_limit_burst: "SOAK_NODE_RATE_LIMIT_BURST" = 4_000, 1, 1_000_000;
    /// DMs in flight (awaiting ACK) before new ones are shed with `load`.
    max_pending_dms: "SOAK_NODE_MAX_PENDING_DMS" = 10_000, 1, 1_000_000;
    /// Most authenticated inbound connections; more are refused with ERR_LOAD (a preferred
    /// peer evicts a non-preferred one instead).
    max_inbound_peers: "SOAK_NODE_MAX_INBOUND_PEERS" = 256, 1, 100_000;
    /// Most inbound handshakes in flight; more are refused before the handshake.
    max_pending_inbound: "SOAK_NODE_MAX_PENDING_INBOUND" = 256, 1, 100_000;
    /// Most outbound dials in flight; more wait for the next maintenance tick.
    max_pending_outbound: "SOAK_NODE_MAX_PENDING_OUTBOUND" = 256, 1, 100_000;
    /// Failures (bad frames, handshake failures, rate-limit violations, authentication
    /// timeouts) within `ban_window_ms` that ban a peer or address.
    ban_threshold: "SOAK_NODE_BAN_THRESHOLD" = 10, 1, 1_000_000;
    /// The period failures are counted over, milliseconds.
    ban_window_ms: "SOAK_NODE_BAN_WINDOW_MS" = 60_000, 100, 86_400_000;
    /// How long a ban lasts, milliseconds.
    ban_duration_ms: "SOAK_NODE_BAN_DURATION_MS" = 300_000, 100, 86_400_000;
    /// Most admin API connections open at once; more are closed at accept.
    admin_max_connections: "SOAK_NODE_ADMIN_MAX_CONNECTIONS" = 64, 1, 10_000;
    /// How often bootstrap host names are resolved again, milliseconds (a name that does not
    /// resolve is retried sooner, with backoff from 500 ms up to this).
    bootstrap_resolve_ms: "SOAK_NODE_BOOTSTRAP_RESOLVE_MS" = 30_000, 1_000, 3_600_000;
    /// An admin client must send a request's headers within this long (also the idle time of a
    /// keep-alive connection between requests), milliseconds.
    admin_header_timeout_ms: "SOAK_NODE_ADMIN_HEADER_TIMEOUT_MS" = 5_000, 100, 600_000;
    /// Gossip slow-peer detector: a neighbor is slow when its QUIC path RTT is at least this
    /// percentage of the median RTT of the node's other peers (400 = four times) …
    gossip_slow_rtt_ratio_pct: "SOAK_NODE_GOSSIP_SLOW_RTT_RATIO_PCT" = 400, 100, 100_000;
    /// … and at least this many milliseconds above it.
    gossip_slow_rtt_excess_ms: "SOAK_NODE_GOSSIP_SLOW_RTT_EXCESS_MS" = 500, 0, 60_000;
    /// Slowness charged per maintenance tick judged slow, percent of one (100: about three
    /// ticks demote, four suppress); 0 turns the detector off.
    gossip_slow_penalty_pct: "SOAK_NODE_GOSSIP_SLOW_PENALTY_PCT" = 100, 0, 1_000;
}

impl Tuning {
    /// The membership/DM core's settings.
    pub fn core_config(&self) -> soak_proto::core::CoreConfig {
        let ms = Duration::from_millis;
        soak_proto::core::CoreConfig {
            tick: ms(self.tick_ms),
            connect_timeout: ms(self.auth_timeout_ms),
            active_view: self.active_view as usize,
            passive_view: self.passive_view as usize,
            shuffle_len: self.shuffle_len as usize,
            on_demand_idle: ms(self.on_demand_idle_ms),
            backoff_base: ms(self.backoff_base_ms),
            backoff_max: ms(self.backoff_max_ms),
            inbox_capacity: self.inbox_capacity as usize,
            inbox_retention: ms(self.inbox_retention_ms),
            dedupe_capacity: self.dedupe_capacity as usize,
            dedupe_ttl: ms(self.dedupe_ttl_ms),
            rate_per_sec: self.rate_limit_per_sec,
            rate_burst: self.rate_limit_burst,
            max_pending_dms: self.max_pending_dms as usize,
            max_inbound_peers: self.max_inbound_peers as usize,
            max_pending_inbound: self.max_pending_inbound as usize,
            max_pending_outbound: self.max_pending_outbound as usize,
            bans: soak_proto::bans::BanConfig {
                threshold: self.ban_threshold.min(u64::from(u32::MAX)) as u32,
                window: ms(self.ban_window_ms),
                duration: ms(self.ban_duration_ms),
            },
        }
    }

    /// The gossip core's configuration: the protocol defaults, with the payload bound of the
    /// node and list bounds small enough that every gossip message fits in one frame.
    pub fn gossip_config(&self) -> soak_gossip::Config {
        let mut cfg = soak_gossip::Config::default();
        cfg.limits.max_payload = self.max_payload_bytes as usize;
        cfg.limits.max_ihave_entries = 256;
        cfg.limits.max_digest_entries = 64;
        cfg.limits.max_digest_gaps = 32;
        cfg.slow_rtt_ratio = self.gossip_slow_rtt_ratio_pct as f64 / 100.0;
        cfg.slow_rtt_excess = Duration::from_millis(self.gossip_slow_rtt_excess_ms);
        cfg.slow_penalty = self.gossip_slow_penalty_pct as f64 / 100.0;
        cfg
    }
}

fn clamp(name: &str, value: u64, min: u64, max: u64, warnings: &mut Vec<String>) -> u64 {
    let clamped = value.clamp(min, max);
    if clamped != value {
        warnings.push(format!(
            "{name}={value} is outside [{min}, {max}]; using {clamped}"
        ));
    }
    clamped
}

/// Where a bootstrap peer is: an IP address, or a host name re-resolved periodically.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum BootstrapAddr {
    /// A literal `ip:port`.
    Ip(SocketAddr),
    /// `host:port`, resolved at start and every `bootstrap_resolve_ms` (with backoff while it
    /// does not resolve).
    Host {
        /// DNS name.
        name: String,
        /// UDP port.
        port: u16,
    },
}

impl std::fmt::Display for BootstrapAddr {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            BootstrapAddr::Ip(a) => write!(f, "{a}"),
            BootstrapAddr::Host { name, port } => write!(f, "{name}:{port}"),
        }
    }
}

/// A bootstrap peer: an address or host name, optionally pinned to a peer id.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Bootstrap {
    /// Expected peer id, when given as `PEER_ID@ADDR`.
    pub peer: Option<PeerId>,
    /// Where it is.
    pub addr: BootstrapAddr,
}

/// Whether `name` is a plausible DNS host name (labels of letters, digits and `-`, not starting
/// or ending with `-`, at most 253 bytes).
fn valid_host(name: &str) -> bool {
    !name.is_empty()
        && name.len() <= 253
        && name.split('.').all(|label| {
            !label.is_empty()
                && label.len() <= 63
                && !label.starts_with('-')
                && !label.ends_with('-')
                && label
                    .bytes()
                    .all(|b| b.is_ascii_alphanumeric() || b == b'-')
        })
}

impl std::str::FromStr for Bootstrap {
    type Err = ConfigError;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        let s = s.trim();
        let bad = || ConfigError::Bootstrap(s.to_string());
        let (peer, addr) = match s.split_once('@') {
            Some((id, addr)) => (Some(id.parse::<PeerId>().map_err(|_| bad())?), addr),
            None => (None, s),
        };
        if let Ok(ip) = addr.parse::<SocketAddr>() {
            return Ok(Bootstrap {
                peer,
                addr: BootstrapAddr::Ip(ip),
            });
        }
        let (name, port) = addr.rsplit_once(':').ok_or_else(bad)?;
        let port = port.parse::<u16>().map_err(|_| bad())?;
        if !valid_host(name) || port == 0 {
            return Err(bad());
        }
        Ok(Bootstrap {
            peer,
            addr: BootstrapAddr::Host {
                name: name.to_ascii_lowercase(),
                port,
            },
        })
    }
}

/// Configuration errors (refused, unlike out-of-range values which are clamped).
#[derive(Debug, thiserror::Error)]
pub enum ConfigError {
    /// The TOML file could not be read.
    #[error("failed to read config file {path}: {source}")]
    Read {
        /// File path.
        path: PathBuf,
        /// Cause.
        #[source]
        source: std::io::Error,
    },
    /// The TOML file is malformed or has unknown keys.
    #[error("invalid config file {path}: {message}")]
    Parse {
        /// File path.
        path: PathBuf,
        /// Parser message.
        message: String,
    },
    /// A bootstrap entry is neither `ADDR` nor `PEER_ID@ADDR` (ADDR: `ip:port` or `host:port`).
    #[error(
        "invalid bootstrap peer {0:?}: expected ADDR or PEER_ID@ADDR, ADDR being ip:port or host:port"
    )]
    Bootstrap(String),
}

/// The file form: the same keys as the flags.
#[derive(Debug, Default, Deserialize)]
struct FileConfig {
    listen: Option<SocketAddr>,
    admin: Option<SocketAddr>,
    advertise: Option<SocketAddr>,
    #[serde(default)]
    bootstrap: Vec<String>,
}

/// Fully resolved node settings.
#[derive(Debug, Clone)]
pub struct Settings {
    /// Data directory.
    pub data_dir: PathBuf,
    /// QUIC listen address.
    pub listen: SocketAddr,
    /// Admin listen address.
    pub admin: SocketAddr,
    /// QUIC address advertised to peers, when not the bound one.
    pub advertise: Option<SocketAddr>,
    /// Bootstrap peers.
    pub bootstrap: Vec<Bootstrap>,
    /// Numeric tunables.
    pub tuning: Tuning,
    /// Test-only behaviours.
    pub test: TestHooks,
}

impl Settings {
    /// Settings for a node in `data_dir` with defaults everywhere (used by tests and benches).
    pub fn new(data_dir: &Path) -> Settings {
        Settings {
            data_dir: data_dir.to_path_buf(),
            listen: SocketAddr::from(([127, 0, 0, 1], 0)),
            admin: SocketAddr::from(([127, 0, 0, 1], 0)),
            advertise: None,
            bootstrap: Vec::new(),
            tuning: Tuning::default(),
            test: TestHooks::default(),
        }
    }

    /// Merge command line / env with the optional TOML file; returns the settings and the
    /// warnings (clamped values) to log.
    pub fn resolve(args: &RunArgs) -> Result<(Settings, Vec<String>), ConfigError> {
        let (file, file_tune) = match &args.config {
            Some(path) => read_file(path)?,
            None => (FileConfig::default(), Tunables::default()),
        };
        let mut warnings = Vec::new();
        let mut tuning = Tuning::resolve(&args.tune, &file_tune, &mut warnings);
        if tuning.keep_alive_ms >= tuning.idle_timeout_ms {
            let fixed = (tuning.idle_timeout_ms / 3).max(1);
            warnings.push(format!(
                "keep_alive_ms={} must be below idle_timeout_ms={}; using {fixed}",
                tuning.keep_alive_ms, tuning.idle_timeout_ms
            ));
            tuning.keep_alive_ms = fixed;
        }
        if tuning.backoff_max_ms < tuning.backoff_base_ms {
            warnings.push(format!(
                "backoff_max_ms={} is below backoff_base_ms={}; using {}",
                tuning.backoff_max_ms, tuning.backoff_base_ms, tuning.backoff_base_ms
            ));
            tuning.backoff_max_ms = tuning.backoff_base_ms;
        }
        let raw_bootstrap = if args.bootstrap.is_empty() {
            &file.bootstrap
        } else {
            &args.bootstrap
        };
        let bootstrap = raw_bootstrap
            .iter()
            .filter(|s| !s.trim().is_empty())
            .map(|s| s.parse())
            .collect::<Result<Vec<Bootstrap>, _>>()?;
        let default_addr = SocketAddr::from(([127, 0, 0, 1], 0));
        Ok((
            Settings {
                data_dir: args.data_dir.clone(),
                listen: args.listen.or(file.listen).unwrap_or(default_addr),
                admin: args.admin.or(file.admin).unwrap_or(default_addr),
                advertise: args.advertise.or(file.advertise),
                bootstrap,
                tuning,
                test: args.test.clone(),
            },
            warnings,
        ))
    }

    /// Duration helper.
    pub fn ms(v: u64) -> Duration {
        Duration::from_millis(v)
    }
}

fn read_file(path: &Path) -> Result<(FileConfig, Tunables), ConfigError> {
    let text = std::fs::read_to_string(path).map_err(|source| ConfigError::Read {
        path: path.to_path_buf(),
        source,
    })?;
    let parse_err = |message: String| ConfigError::Parse {
        path: path.to_path_buf(),
        message,
    };
    let mut table: toml::Table = toml::from_str(&text).map_err(|e| parse_err(e.to_string()))?;
    let mut top = toml::Table::new();
    for key in ["listen", "admin", "advertise", "bootstrap"] {
        if let Some(v) = table.remove(key) {
            top.insert(key.to_string(), v);
        }
    }
    let file: FileConfig = top.try_into().map_err(|e| parse_err(e.to_string()))?;
    let tune: Tunables = table.try_into().map_err(|e| parse_err(e.to_string()))?;
    Ok((file, tune))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn args(extra: &[&str]) -> RunArgs {
        let mut argv = vec!["soak-node", "run", "--data-dir", "/tmp/x"];
        argv.extend_from_slice(extra);
        match Cli::try_parse_from(argv).unwrap().command {
            Command::Run(a) => a,
        }
    }

    #[test]
    fn default_tunables_are_the_protocol_cores_defaults() {
        assert_eq!(
            Tuning::default().core_config(),
            soak_proto::core::CoreConfig::default()
        );
    }

    #[test]
    fn out_of_range_values_are_clamped_with_a_warning() {
        let (s, warnings) = Settings::resolve(&args(&["--active-view", "1000"])).unwrap();
        assert_eq!(s.tuning.active_view, 64);
        assert_eq!(warnings.len(), 1, "{warnings:?}");
    }

    #[test]
    fn keep_alive_is_forced_below_idle_timeout() {
        let (s, warnings) = Settings::resolve(&args(&[
            "--idle-timeout-ms",
            "1000",
            "--keep-alive-ms",
            "5000",
        ]))
        .unwrap();
        assert!(s.tuning.keep_alive_ms < s.tuning.idle_timeout_ms);
        assert!(!warnings.is_empty());
    }

    #[test]
    fn file_values_apply_and_flags_override_them() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("node.toml");
        std::fs::write(
            &path,
            "listen = \"127.0.0.1:7000\"\nack_timeout_ms = 300\ntick_ms = 500\n",
        )
        .unwrap();
        let (s, _) = Settings::resolve(&args(&[
            "--config",
            path.to_str().unwrap(),
            "--tick-ms",
            "700",
        ]))
        .unwrap();
        assert_eq!(s.listen.port(), 7000);
        assert_eq!(s.tuning.ack_timeout_ms, 300);
        assert_eq!(s.tuning.tick_ms, 700);
    }

    #[test]
    fn unknown_file_keys_are_refused() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("node.toml");
        std::fs::write(&path, "ack_timout_ms = 300\n").unwrap();
        let err = Settings::resolve(&args(&["--config", path.to_str().unwrap()])).unwrap_err();
        assert!(err.to_string().contains("ack_timout_ms"), "{err}");
    }

    #[test]
    fn exit_with_parent_takes_a_positive_pid_from_flag_or_env() {
        assert_eq!(args(&[]).exit_with_parent, None);
        assert_eq!(
            args(&["--exit-with-parent", "4242"]).exit_with_parent,
            Some(4242)
        );
        for bad in ["0", "-1", "abc", "99999999999"] {
            let argv = [
                "soak-node",
                "run",
                "--data-dir",
                "/tmp/x",
                "--exit-with-parent",
                bad,
            ];
            assert!(Cli::try_parse_from(argv).is_err(), "{bad} must be refused");
        }
        // A pid is not a config-file key: the file cannot set it.
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("node.toml");
        std::fs::write(&path, "exit_with_parent = 1\n").unwrap();
        assert!(Settings::resolve(&args(&["--config", path.to_str().unwrap()])).is_err());
    }

    #[test]
    fn test_hooks_parse_and_stay_hidden_from_help() {
        let a = args(&[
            "--test-rejoin-delay-ms",
            "1500",
            "--test-leak-bytes-per-sec",
            "1048576",
            "--test-leak-fds-per-sec",
            "10",
        ]);
        assert_eq!(a.test.rejoin_delay_ms, Some(1500));
        assert_eq!(a.test.leak_bytes_per_sec, Some(1_048_576));
        assert_eq!(a.test.leak_fds_per_sec, Some(10));
        assert_eq!(args(&[]).test, TestHooks::default());
        let mut cmd = <Cli as clap::CommandFactory>::command();
        let help = cmd
            .find_subcommand_mut("run")
            .map(|c| c.render_long_help().to_string())
            .unwrap_or_default();
        assert!(help.contains("--data-dir"), "{help}");
        assert!(!help.contains("--test-"), "{help}");
    }

    #[test]
    fn bootstrap_accepts_plain_and_pinned_addresses() {
        let id = "ab".repeat(32);
        let b: Bootstrap = format!("{id}@127.0.0.1:9").parse().unwrap();
        assert!(b.peer.is_some());
        let b: Bootstrap = "127.0.0.1:9".parse().unwrap();
        assert!(b.peer.is_none());
        assert!("nonsense".parse::<Bootstrap>().is_err());
        let b: Bootstrap = "[::1]:9".parse().unwrap();
        assert_eq!(b.addr, BootstrapAddr::Ip("[::1]:9".parse().unwrap()));
    }

    #[test]
    fn bootstrap_accepts_host_names_and_refuses_malformed_ones() {
        let b: Bootstrap = "Seed-1.Example.net:7000".parse().unwrap();
        assert_eq!(
            b.addr,
            BootstrapAddr::Host {
                name: "seed-1.example.net".into(),
                port: 7000
            }
        );
        let id = "cd".repeat(32);
        let b: Bootstrap = format!("{id}@localhost:9").parse().unwrap();
        assert!(b.peer.is_some());
        assert_eq!(b.addr.to_string(), "localhost:9");
        for bad in [
            "host",
            "host:",
            "host:0",
            "host:70000",
            "-bad.example:1",
            "a..b:1",
            "under_score:1",
            "sp ace:1",
            "[::1:9",
            "@host:1",
        ] {
            assert!(bad.parse::<Bootstrap>().is_err(), "{bad} must be refused");
        }
    }
}
