//! The IO shell: one actor task owns the sans-IO [`Engine`] (membership, DMs, gossip) and the
//! map of live connections; around it run the accept loop, one dial task per dial, one reader
//! and one writer task per connection, the bounded receive queue ("recv pump") and the
//! dispatcher worker pool.
//!
//! Modules by role: this one holds the [`Node`] handle and the commands it sends to the actor;
//! [`conns`] accepts, dials, authenticates, reads and writes connections; [`pump`] is the
//! receive queue and its dispatcher pool; [`actor`] owns the engine and carries out what it
//! asks; [`diag`] builds the diagnostics snapshot.
//!
//! Data path of an inbound frame: reader task → `try_send` into the recv pump (full → dropped
//! and counted, transport never stalls) → a dispatcher worker decodes it (per-task timeout) →
//! actor → engine. Outbound: engine → actor → `try_send` into the peer's bounded outbound queue
//! (full → counted as a send timeout and fed back to the engine; the actor never awaits a
//! bounded channel) → writer task (per-write deadline) → QUIC stream.

mod actor;
mod conns;
mod diag;
mod pump;
mod resolve;

use std::net::SocketAddr;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, AtomicUsize};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use rand::SeedableRng;
use rand::rngs::StdRng;
use soak_api::{
    Diagnostics, DmOutcome, DmPath, InboxPage, ProcessIdentity, ReceivedPage, counters as c,
};
use soak_gossip::TopicId;
use soak_proto::bans::Subject;
use soak_proto::core::{Core, DmDone};
use soak_proto::engine::{Engine, EngineConfig};
use soak_proto::wire::FRAME_OVERHEAD;
use soak_proto::{PeerId, RequestId};
use tokio::sync::{Mutex, Notify, mpsc, oneshot};
use tracing::{info, warn};

use crate::config::{BootstrapAddr, Settings};
use crate::identity::{Identity, IdentityError};
use crate::impair::Impairments;
use crate::metrics::{Metrics, MetricsError};
use crate::pubsub::Stalls;
use crate::transport::{self, TransportError};

pub use soak_proto::engine::TopicError;

/// Crate version.
pub const VERSION: &str = env!("CARGO_PKG_VERSION");
/// Git revision baked in at build time through `SOAK_NODE_GIT`, else `unknown`.
pub const GIT: &str = match option_env!("SOAK_NODE_GIT") {
    Some(v) => v,
    None => "unknown",
};

/// Capacity of the API command queue; full means overload and sheds with `load`.
const COMMAND_QUEUE: usize = 1024;
/// Capacity of the channel from connection tasks and dispatcher to the actor.
const NET_QUEUE: usize = 4096;

/// Errors starting a node.
#[derive(Debug, thiserror::Error)]
pub enum StartError {
    /// Data dir problem.
    #[error("failed to prepare data dir {path}: {source}")]
    DataDir {
        /// Path.
        path: std::path::PathBuf,
        /// Cause.
        #[source]
        source: std::io::Error,
    },
    /// Identity problem.
    #[error(transparent)]
    Identity(#[from] IdentityError),
    /// Transport problem.
    #[error(transparent)]
    Transport(#[from] TransportError),
    /// Metrics problem.
    #[error(transparent)]
    Metrics(#[from] MetricsError),
}

/// The node's main loop is gone (shut down or crashed).
#[derive(Debug, Clone, Copy, thiserror::Error)]
#[error("node main loop is not running")]
pub struct NotRunning;

/// State shared between the actor, the connection tasks and the admin API.
#[derive(Debug)]
pub struct Shared {
    /// Metrics registry.
    pub metrics: Metrics,
    /// Impairment table.
    pub impair: Arc<Impairments>,
    /// Resolved settings.
    pub settings: Settings,
    /// This process.
    pub identity: ProcessIdentity,
    /// Process start (monotonic).
    pub started: Instant,
    /// QUIC listen address (bound).
    pub quic_addr: SocketAddr,
    /// The QUIC address peers are told (`--advertise`, else the bound one).
    pub advertise: SocketAddr,
    /// Established peers (updated by the actor after every event).
    pub established: AtomicUsize,
    /// Whether the QUIC endpoint is listening.
    pub quic_listening: AtomicBool,
    /// Whether the admin API is listening.
    pub admin_listening: AtomicBool,
    /// Topics whose delivery path is stalled (`POST /v1/topics/{topic}/stall`).
    pub stalls: Stalls,
    /// Test hook `--test-rejoin-delay-ms` on a restart: the node stays out of the mesh until
    /// then (no dials, inbound peer connections refused, `/readyz` not ready).
    pub rejoin_hold_until: Option<Instant>,
    invalid_datagrams: Arc<AtomicU64>,
    pump_max_depth: AtomicUsize,
    dispatcher_inflight: AtomicUsize,
    worker_target: AtomicUsize,
}

type TopicReply<T> = oneshot::Sender<Result<T, TopicError>>;

/// What the API asks of the actor.
enum Command {
    Dm {
        to: PeerId,
        request_id: RequestId,
        payload: Vec<u8>,
        timeout: Duration,
        reply: oneshot::Sender<DmDone>,
    },
    Inbox {
        after: u64,
        limit: usize,
        reply: oneshot::Sender<InboxPage>,
    },
    Diagnostics {
        reply: oneshot::Sender<Diagnostics>,
    },
    Alive {
        reply: oneshot::Sender<()>,
    },
    Subscribe {
        topic: TopicId,
        reply: TopicReply<bool>,
    },
    Unsubscribe {
        topic: TopicId,
        reply: TopicReply<()>,
    },
    Publish {
        topic: TopicId,
        payload: Vec<u8>,
        reply: TopicReply<String>,
    },
    Received {
        topic: TopicId,
        after: u64,
        limit: usize,
        reply: TopicReply<ReceivedPage>,
    },
    Stall {
        topic: TopicId,
        for_: Duration,
        reply: TopicReply<()>,
    },
    Bans {
        reply: oneshot::Sender<Vec<soak_api::Ban>>,
    },
    LiftBans {
        subject: Option<Subject>,
        reply: oneshot::Sender<usize>,
    },
    Shutdown,
}

impl std::fmt::Debug for Command {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("Command")
    }
}

/// Result of a DM operation, as the API reports it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DmResult {
    /// Outcome.
    pub outcome: DmOutcome,
    /// Path.
    pub path: DmPath,
    /// Attempts.
    pub attempts: u32,
    /// Detail.
    pub error: Option<String>,
    /// Time from request to outcome.
    pub elapsed: Duration,
}

/// A cheap, cloneable handle to a running node.
#[derive(Debug, Clone)]
pub struct Node {
    cmd: mpsc::Sender<Command>,
    shared: Arc<Shared>,
    /// Peer id.
    pub peer_id: PeerId,
}

/// The QUIC address peers are told: `--advertise` (port 0 = the bound port), else the bound
/// address. An unspecified IP stays unspecified; receivers then use the address the
/// connection came from.
pub fn advertised(advertise: Option<SocketAddr>, bound: SocketAddr) -> SocketAddr {
    match advertise {
        Some(a) if a.port() == 0 => SocketAddr::new(a.ip(), bound.port()),
        Some(a) => a,
        None => bound,
    }
}

/// Wall clock, unix milliseconds.
pub(crate) fn unix_ms() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_millis() as u64)
}

impl Node {
    /// Create the data dir and identity, bind QUIC and start every task.
    pub async fn start(settings: Settings) -> Result<Node, StartError> {
        std::fs::create_dir_all(&settings.data_dir).map_err(|source| StartError::DataDir {
            path: settings.data_dir.clone(),
            source,
        })?;
        crate::identity::remove_node_info(&settings.data_dir);
        let restart = settings
            .data_dir
            .join(crate::identity::IDENTITY_KEY_FILE)
            .exists();
        let identity = Arc::new(Identity::load_or_create(&settings.data_dir)?);
        let hold = settings
            .test
            .rejoin_delay_ms
            .filter(|ms| restart && *ms > 0)
            .map(Duration::from_millis);
        Self::start_inner(settings, identity, hold).await
    }

    /// Start with a given identity (benchmarks use ephemeral ones).
    pub async fn start_with_identity(
        settings: Settings,
        identity: Arc<Identity>,
    ) -> Result<Node, StartError> {
        Self::start_inner(settings, identity, None).await
    }

    async fn start_inner(
        settings: Settings,
        identity: Arc<Identity>,
        rejoin_hold: Option<Duration>,
    ) -> Result<Node, StartError> {
        let t = settings.tuning.clone();
        let started = Instant::now();
        let rejoin_hold_until = rejoin_hold.map(|d| started + d);
        if let Some(d) = rejoin_hold {
            warn!(
                delay_ms = d.as_millis() as u64,
                "TEST HOOK: restart with --test-rejoin-delay-ms; staying out of the mesh"
            );
        }
        let (leak_bytes, leak_fds) = (
            settings.test.leak_bytes_per_sec.unwrap_or(0),
            settings.test.leak_fds_per_sec.unwrap_or(0),
        );
        if leak_bytes > 0 || leak_fds > 0 {
            tokio::spawn(crate::testhooks::leak(leak_bytes, leak_fds));
        }
        let impair = Arc::new(if settings.test.ignore_impairments {
            Impairments::ignoring()
        } else {
            Impairments::default()
        });
        let server = transport::server_config(&identity, &t)?;
        let bound = transport::bind(settings.listen, server, impair.clone())?;
        let instance_bytes: [u8; 16] = rand::random();
        let mut first = [0u8; 8];
        first.copy_from_slice(&instance_bytes[..8]);
        let instance = u64::from_le_bytes(first);
        let shared = Arc::new(Shared {
            metrics: Metrics::new(VERSION, GIT)?,
            impair,
            identity: ProcessIdentity {
                instance_id: hex::encode(instance_bytes),
                peer_id: identity.peer_id.to_string(),
                pid: std::process::id(),
                started_at_ms: unix_ms(),
            },
            started,
            quic_addr: bound.local,
            advertise: advertised(settings.advertise, bound.local),
            established: AtomicUsize::new(0),
            quic_listening: AtomicBool::new(true),
            admin_listening: AtomicBool::new(false),
            stalls: Stalls::default(),
            rejoin_hold_until,
            invalid_datagrams: bound.invalid_datagrams,
            pump_max_depth: AtomicUsize::new(0),
            dispatcher_inflight: AtomicUsize::new(0),
            worker_target: AtomicUsize::new(t.dispatcher_workers as usize),
            settings,
        });
        let advertise = shared.advertise;
        if advertise.ip().is_unspecified() {
            info!(
                listen = %bound.local,
                "listening on an unspecified address without --advertise: peers take our IP \
                 from the connection; pass --advertise ADDR when that is not the reachable one"
            );
        }
        let (cmd_tx, cmd_rx) = mpsc::channel(COMMAND_QUEUE);
        let (net_tx, net_rx) = mpsc::channel(NET_QUEUE);
        let (pump_tx, pump_rx) = mpsc::channel(t.recv_queue as usize);
        let ctx = Arc::new(conns::ConnCtx::new(
            shared.clone(),
            identity.clone(),
            bound.endpoint.clone(),
            net_tx.clone(),
            pump_tx.clone(),
            instance,
            advertise,
        ));
        pump::start(
            &shared,
            Arc::new(Mutex::new(pump_rx)),
            pump_tx,
            net_tx,
            Arc::new(Notify::new()),
        );
        tokio::spawn(conns::accept_loop(ctx.clone()));
        // Literal addresses are bootstrap sources 0..k; each host name gets the next source and
        // a resolver task that fills it in.
        let mut bootstrap = Vec::new();
        let mut names = Vec::new();
        for b in &shared.settings.bootstrap {
            match &b.addr {
                BootstrapAddr::Ip(a) => bootstrap.push((b.peer, *a)),
                BootstrapAddr::Host { name, port } => names.push((b.peer, name.clone(), *port)),
            }
        }
        let period = Duration::from_millis(t.bootstrap_resolve_ms);
        for (i, (peer, name, port)) in names.into_iter().enumerate() {
            tokio::spawn(resolve::resolve_loop(
                bootstrap.len() + i,
                peer,
                name,
                port,
                bound.local,
                period,
                ctx.net_tx.clone(),
            ));
        }
        let mut core = Core::new(
            identity.peer_id,
            t.core_config(),
            bootstrap,
            rand::random(),
            started,
        );
        if let Some(until) = rejoin_hold_until {
            core.hold_until(until);
        }
        let engine = Engine::new(
            core,
            EngineConfig {
                core: t.core_config(),
                gossip: t.gossip_config(),
                topic_buffer_capacity: t.topic_buffer_capacity as usize,
                topic_buffer_retention: Duration::from_millis(t.topic_buffer_retention_ms),
                max_frame: t.max_payload_bytes as usize + FRAME_OVERHEAD,
            },
            Some(advertise),
            StdRng::from_os_rng(),
            started,
            unix_ms(),
        );
        tokio::spawn(actor::Actor::new(engine, ctx).run(cmd_rx, net_rx));
        info!(peer_id = %identity.peer_id, quic = %bound.local, "node started");
        Ok(Node {
            cmd: cmd_tx,
            shared,
            peer_id: identity.peer_id,
        })
    }

    /// Shared state (metrics, settings, identity).
    pub fn shared(&self) -> &Arc<Shared> {
        &self.shared
    }

    /// Send a DM and wait for its outcome. Overload (a full command queue) sheds with `load`.
    pub async fn dm(
        &self,
        to: PeerId,
        request_id: RequestId,
        payload: Vec<u8>,
        timeout: Duration,
    ) -> DmResult {
        let started = Instant::now();
        let (reply, rx) = oneshot::channel();
        let result = |outcome, error: &str| DmResult {
            outcome,
            path: DmPath::None,
            attempts: 0,
            error: Some(error.to_string()),
            elapsed: started.elapsed(),
        };
        match self.cmd.try_send(Command::Dm {
            to,
            request_id,
            payload,
            timeout,
            reply,
        }) {
            Ok(()) => {}
            Err(mpsc::error::TrySendError::Full(_)) => {
                self.shared.metrics.inc(c::LOAD_SHED);
                return result(DmOutcome::Load, "node overloaded: command queue full");
            }
            Err(mpsc::error::TrySendError::Closed(_)) => {
                return result(DmOutcome::Error, "node main loop is not running");
            }
        }
        // The core always answers within discovery + attempts × (connect + ack timeout); the
        // margin only guards against a wedged main loop.
        let connect = Duration::from_millis(self.shared.settings.tuning.auth_timeout_ms);
        let bound = timeout * 3 + connect * 2 + Duration::from_secs(5);
        match tokio::time::timeout(bound, rx).await {
            Ok(Ok(done)) => DmResult {
                outcome: done.outcome,
                path: done.path,
                attempts: done.attempts,
                error: done.error,
                elapsed: started.elapsed(),
            },
            _ => result(DmOutcome::Error, "no outcome from the node main loop"),
        }
    }

    async fn ask<T>(
        &self,
        make: impl FnOnce(oneshot::Sender<T>) -> Command,
    ) -> Result<T, NotRunning> {
        let (tx, rx) = oneshot::channel();
        self.cmd.send(make(tx)).await.map_err(|_| NotRunning)?;
        tokio::time::timeout(Duration::from_secs(5), rx)
            .await
            .map_err(|_| NotRunning)?
            .map_err(|_| NotRunning)
    }

    /// Inbox page.
    pub async fn inbox(&self, after: u64, limit: usize) -> Result<InboxPage, NotRunning> {
        self.ask(|reply| Command::Inbox {
            after,
            limit,
            reply,
        })
        .await
    }

    /// One diagnostics snapshot (also refreshes every gauge in the registry).
    pub async fn diagnostics(&self) -> Result<Diagnostics, NotRunning> {
        self.ask(|reply| Command::Diagnostics { reply }).await
    }

    /// Whether the main loop answers within `within`.
    pub async fn alive(&self, within: Duration) -> bool {
        let (tx, rx) = oneshot::channel();
        if self.cmd.try_send(Command::Alive { reply: tx }).is_err() {
            return false;
        }
        matches!(tokio::time::timeout(within, rx).await, Ok(Ok(())))
    }

    /// Subscribe to `topic`; `Ok(true)` when newly subscribed, `Ok(false)` when already.
    pub async fn subscribe(&self, topic: TopicId) -> Result<Result<bool, TopicError>, NotRunning> {
        self.ask(|reply| Command::Subscribe { topic, reply }).await
    }

    /// Leave `topic`.
    pub async fn unsubscribe(&self, topic: TopicId) -> Result<Result<(), TopicError>, NotRunning> {
        self.ask(|reply| Command::Unsubscribe { topic, reply })
            .await
    }

    /// Publish on `topic`; returns the message id.
    pub async fn publish(
        &self,
        topic: TopicId,
        payload: Vec<u8>,
    ) -> Result<Result<String, TopicError>, NotRunning> {
        self.ask(|reply| Command::Publish {
            topic,
            payload,
            reply,
        })
        .await
    }

    /// A page of the topic's subscriber buffer (items with `seq > after`); marks everything
    /// up to `after` consumed.
    pub async fn received(
        &self,
        topic: TopicId,
        after: u64,
        limit: usize,
    ) -> Result<Result<ReceivedPage, TopicError>, NotRunning> {
        self.ask(|reply| Command::Received {
            topic,
            after,
            limit,
            reply,
        })
        .await
    }

    /// Stall the delivery path of `topic` for `for_` (zero lifts a stall).
    pub async fn stall(
        &self,
        topic: TopicId,
        for_: Duration,
    ) -> Result<Result<(), TopicError>, NotRunning> {
        self.ask(|reply| Command::Stall { topic, for_, reply })
            .await
    }

    /// Bans in force.
    pub async fn bans(&self) -> Result<Vec<soak_api::Ban>, NotRunning> {
        self.ask(|reply| Command::Bans { reply }).await
    }

    /// Lift the ban of `subject` (`None`: every ban); returns how many were lifted.
    pub async fn lift_bans(&self, subject: Option<Subject>) -> Result<usize, NotRunning> {
        self.ask(|reply| Command::LiftBans { subject, reply }).await
    }

    /// Stop the main loop and close every connection.
    pub async fn shutdown(&self) {
        let _ = self.cmd.send(Command::Shutdown).await;
    }
}
