//! The IO shell: one actor task owns the sans-IO [`Core`] and the map of live connections;
//! around it run the accept loop, one dial task per dial, one reader and one writer task per
//! connection, the bounded receive queue ("recv pump") and the dispatcher worker pool.
//!
//! Data path of an inbound frame: reader task → `try_send` into the recv pump (full → dropped
//! and counted, transport never stalls) → a dispatcher worker decodes it (per-task timeout) →
//! actor → core. Outbound: core → actor → `try_send` into the peer's bounded outbound queue
//! (full → counted as a send timeout; the actor never awaits a bounded channel) → writer task
//! (per-write deadline) → QUIC stream.

use std::cmp::Reverse;
use std::collections::{BTreeMap, BTreeSet, BinaryHeap, HashMap, VecDeque};
use std::net::SocketAddr;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, AtomicUsize, Ordering};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use rand::SeedableRng;
use rand::rngs::StdRng;
use soak_api::{
    API_VERSION, Diagnostics, Direction, DmOutcome, DmPath, InboxItem, InboxPage, PeerTransport,
    ProcessIdentity, ReceivedItem, ReceivedPage, counters as c, gauges as g,
};
use soak_gossip::{
    CommandError, InEvent, OutEvent, SendOutcome, State as GossipState, Timer as GossipTimer,
    TopicEvent, TopicId,
};
use tokio::sync::{Mutex, Notify, mpsc, oneshot};
use tracing::{debug, info, warn};

use crate::config::Settings;
use crate::identity::{Identity, IdentityError};
use crate::impair::Impairments;
use crate::metrics::{Metrics, MetricsError, extra, extra_gauges};
use crate::proto::core::{ConnId, Core, CoreConfig, DmDone, GossipRoute, Input, OpId, Output};
use crate::proto::wire::{FRAME_OVERHEAD, Frame};
use crate::proto::{PeerId, RequestId};
use crate::pubsub::{
    self, GossipMessage, GossipPeer, MAX_TOPICS, PENDING_PER_PEER, Stalls, Subscriber,
};
use crate::transport::{self, FrameReadError, TransportError};

/// Crate version.
pub const VERSION: &str = env!("CARGO_PKG_VERSION");
/// Git revision baked in at build time through `SOAK_NODE_GIT`, else `unknown`.
pub const GIT: &str = match option_env!("SOAK_NODE_GIT") {
    Some(v) => v,
    None => "unknown",
};

/// Most inbound handshakes in flight before new ones are refused.
const MAX_INBOUND_HANDSHAKES: usize = 256;
/// Capacity of the API command queue; full means overload and sheds with `load`.
const COMMAND_QUEUE: usize = 1024;
/// Capacity of the channel from connection tasks and dispatcher to the actor.
const NET_QUEUE: usize = 4096;
/// QUIC application close codes.
const CLOSE_REPLACED: u32 = 1;
const CLOSE_IDLE: u32 = 2;
const CLOSE_SELF: u32 = 3;
const CLOSE_STALLED: u32 = 4;
const CLOSE_BAD_FRAME: u32 = 5;
const CLOSE_SHUTDOWN: u32 = 6;

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
    /// QUIC listen address.
    pub quic_addr: SocketAddr,
    /// Established peers (updated by the actor after every event).
    pub established: AtomicUsize,
    /// Whether the QUIC endpoint is listening.
    pub quic_listening: AtomicBool,
    /// Whether the admin API is listening.
    pub admin_listening: AtomicBool,
    /// Topics whose delivery path is stalled (`POST /v1/topics/{topic}/stall`).
    pub stalls: Stalls,
    invalid_datagrams: Arc<AtomicU64>,
    pump_max_depth: AtomicUsize,
    inbound_pending: AtomicUsize,
    dispatcher_inflight: AtomicUsize,
    worker_target: AtomicUsize,
}

/// Why a topic operation was refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum TopicError {
    /// The node is not subscribed to the topic.
    #[error("not subscribed to topic {0}")]
    NotSubscribed(String),
    /// Subscribing would exceed [`MAX_TOPICS`].
    #[error("already subscribed to {MAX_TOPICS} topics")]
    TooManyTopics,
    /// Payload above the configured maximum.
    #[error("payload of {len} bytes exceeds {max} bytes")]
    PayloadTooLarge {
        /// Payload length.
        len: usize,
        /// The bound.
        max: usize,
    },
}

impl From<CommandError> for TopicError {
    fn from(e: CommandError) -> Self {
        match e {
            CommandError::NotSubscribed(t) => TopicError::NotSubscribed(t.to_string()),
            CommandError::PayloadTooLarge { len, max } => TopicError::PayloadTooLarge { len, max },
        }
    }
}

type TopicReply<T> = oneshot::Sender<Result<T, TopicError>>;

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
    Shutdown,
}

enum NetEvent {
    Up {
        peer: PeerId,
        conn: ConnId,
        connection: quinn::Connection,
        out: mpsc::Sender<OutFrame>,
        addr: SocketAddr,
        direction: Direction,
        instance: u64,
    },
    Down {
        peer: PeerId,
        conn: ConnId,
    },
    DialFailed {
        peer: Option<PeerId>,
        addr: SocketAddr,
    },
    Frame {
        peer: PeerId,
        conn: ConnId,
        frame: Frame,
    },
    /// A decoded gossip message (decoded by a dispatcher worker, off the actor).
    Gossip {
        peer: PeerId,
        msg: GossipMessage,
        /// When the reader took the frame off the connection.
        arrived: Instant,
    },
    /// Gossip frames to `peer` that missed their send deadline (one entry per frame).
    SendTimeouts {
        peer: PeerId,
        topics: Vec<TopicId>,
    },
}

/// One frame on a per-peer outbound queue: the encoded bytes, the gossip topic it belongs to
/// (for send outcomes) and the deadline by which it must be on the wire.
#[derive(Debug)]
pub struct OutFrame {
    bytes: Vec<u8>,
    topic: Option<TopicId>,
    deadline: Instant,
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

impl std::fmt::Debug for Command {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("Command")
    }
}

fn unix_ms() -> u64 {
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
        let identity = Arc::new(Identity::load_or_create(&settings.data_dir)?);
        Self::start_with_identity(settings, identity).await
    }

    /// Start with a given identity (benchmarks use ephemeral ones).
    pub async fn start_with_identity(
        settings: Settings,
        identity: Arc<Identity>,
    ) -> Result<Node, StartError> {
        let t = settings.tuning.clone();
        let impair = Arc::new(if settings.test.ignore_impairments {
            Impairments::ignoring()
        } else {
            Impairments::default()
        });
        let server = transport::server_config(&identity, &t)?;
        let bound = transport::bind(settings.listen, server, impair.clone())?;
        let instance_bytes: [u8; 16] = rand::random();
        let instance = u64::from_le_bytes([
            instance_bytes[0],
            instance_bytes[1],
            instance_bytes[2],
            instance_bytes[3],
            instance_bytes[4],
            instance_bytes[5],
            instance_bytes[6],
            instance_bytes[7],
        ]);
        let shared = Arc::new(Shared {
            metrics: Metrics::new(VERSION, GIT)?,
            impair,
            identity: ProcessIdentity {
                instance_id: hex::encode(instance_bytes),
                peer_id: identity.peer_id.to_string(),
                pid: std::process::id(),
                started_at_ms: unix_ms(),
            },
            started: Instant::now(),
            quic_addr: bound.local,
            established: AtomicUsize::new(0),
            quic_listening: AtomicBool::new(true),
            admin_listening: AtomicBool::new(false),
            stalls: Stalls::default(),
            invalid_datagrams: bound.invalid_datagrams,
            pump_max_depth: AtomicUsize::new(0),
            inbound_pending: AtomicUsize::new(0),
            dispatcher_inflight: AtomicUsize::new(0),
            worker_target: AtomicUsize::new(t.dispatcher_workers as usize),
            settings,
        });
        let (cmd_tx, cmd_rx) = mpsc::channel(COMMAND_QUEUE);
        let (net_tx, net_rx) = mpsc::channel(NET_QUEUE);
        let (pump_tx, pump_rx) = mpsc::channel(t.recv_queue as usize);
        let ctx = Arc::new(ConnCtx {
            shared: shared.clone(),
            identity: identity.clone(),
            endpoint: bound.endpoint.clone(),
            net_tx: net_tx.clone(),
            pump_tx: pump_tx.clone(),
            next_conn: AtomicU64::new(1),
            instance,
            unpinned: std::sync::Mutex::new(None),
        });
        // Dispatcher pool: `dispatcher_workers_max` workers exist, the first `worker_target`
        // of them take work; the controller moves the target with the load.
        let pump_rx = Arc::new(Mutex::new(pump_rx));
        let (base, max) = worker_bounds(&t);
        let wake = Arc::new(Notify::new());
        for index in 0..max {
            tokio::spawn(dispatcher(
                index,
                pump_rx.clone(),
                net_tx.clone(),
                shared.clone(),
                Duration::from_millis(t.dispatcher_timeout_ms),
                wake.clone(),
            ));
        }
        tokio::spawn(worker_controller(
            shared.clone(),
            pump_tx.clone(),
            base,
            max,
            wake,
        ));
        tokio::spawn(accept_loop(ctx.clone()));
        let bootstrap = shared
            .settings
            .bootstrap
            .iter()
            .map(|b| (b.peer, b.addr))
            .collect();
        let core = Core::new(
            identity.peer_id,
            CoreConfig::from_tuning(&t),
            bootstrap,
            rand::random(),
            Instant::now(),
        );
        let me = GossipPeer::new(identity.peer_id, Some(bound.local));
        let gossip = GossipState::new(me, gossip_config(&t), StdRng::from_os_rng());
        let actor = Actor {
            core,
            gossip,
            gossip_timers: BinaryHeap::new(),
            gossip_timer_seq: 0,
            subscribers: BTreeMap::new(),
            pending: HashMap::new(),
            next_rejoin: Instant::now(),
            last_arrived: Instant::now(),
            ctx,
            conns: HashMap::new(),
            ops: HashMap::new(),
            next_op: 1,
            high_water: (t.outbound_queue as usize * 3 / 4).max(1),
            drain_grace: Duration::from_millis(t.send_deadline_ms).max(Duration::from_secs(1)),
            draining: std::collections::VecDeque::new(),
        };
        tokio::spawn(actor.run(cmd_rx, net_rx));
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
        // The core always answers within attempts × (connect + ack timeout); the margin only
        // guards against a wedged main loop.
        let connect = Duration::from_millis(self.shared.settings.tuning.auth_timeout_ms);
        let bound = (timeout + connect) * 2 + Duration::from_secs(5);
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

    /// Stop the main loop and close every connection.
    pub async fn shutdown(&self) {
        let _ = self.cmd.send(Command::Shutdown).await;
    }
}

/// One raw frame on the receive queue: sender, connection, undecoded body.
type PumpItem = (PeerId, ConnId, Vec<u8>, Instant);

/// The gossip core's configuration for this node: the protocol defaults, with the payload bound
/// of the node and list bounds small enough that every gossip message fits in one frame.
pub fn gossip_config(t: &crate::config::Tuning) -> soak_gossip::Config {
    let mut cfg = soak_gossip::Config::default();
    cfg.limits.max_payload = t.max_payload_bytes as usize;
    cfg.limits.max_ihave_entries = 256;
    cfg.limits.max_digest_entries = 64;
    cfg.limits.max_digest_gaps = 32;
    cfg
}

/// (base, max) of the adaptive dispatcher pool.
fn worker_bounds(t: &crate::config::Tuning) -> (usize, usize) {
    let base = (t.dispatcher_workers as usize).max(1);
    (base, (t.dispatcher_workers_max as usize).max(base))
}

/// Adaptive worker target: every 100 ms, one more worker while frames wait in the receive
/// queue and every active worker is busy; one fewer after a second of an idle queue with spare
/// workers. Bounded by `[dispatcher_workers, dispatcher_workers_max]`.
async fn worker_controller(
    shared: Arc<Shared>,
    pump_tx: mpsc::Sender<PumpItem>,
    base: usize,
    max: usize,
    wake: Arc<Notify>,
) {
    let mut idle_ticks = 0u32;
    let mut tick = tokio::time::interval(Duration::from_millis(100));
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        tick.tick().await;
        if pump_tx.is_closed() {
            return;
        }
        let depth = pump_tx.max_capacity() - pump_tx.capacity();
        let target = shared.worker_target.load(Ordering::Relaxed);
        let inflight = shared.dispatcher_inflight.load(Ordering::Relaxed);
        if depth > 0 && inflight >= target && target < max {
            idle_ticks = 0;
            shared.worker_target.store(target + 1, Ordering::Relaxed);
            wake.notify_waiters();
        } else if depth == 0 && inflight < target && target > base {
            idle_ticks += 1;
            if idle_ticks >= 10 {
                idle_ticks = 0;
                shared.worker_target.store(target - 1, Ordering::Relaxed);
            }
        } else {
            idle_ticks = 0;
        }
    }
}

/// What connection tasks need.
struct ConnCtx {
    shared: Arc<Shared>,
    identity: Arc<Identity>,
    endpoint: quinn::Endpoint,
    net_tx: mpsc::Sender<NetEvent>,
    pump_tx: mpsc::Sender<PumpItem>,
    next_conn: AtomicU64,
    instance: u64,
    unpinned: std::sync::Mutex<Option<quinn::ClientConfig>>,
}

impl ConnCtx {
    fn max_frame(&self) -> usize {
        self.shared.settings.tuning.max_payload_bytes as usize + FRAME_OVERHEAD
    }

    fn auth_timeout(&self) -> Duration {
        Duration::from_millis(self.shared.settings.tuning.auth_timeout_ms)
    }

    fn client_config(&self, peer: Option<PeerId>) -> Result<quinn::ClientConfig, TransportError> {
        let t = &self.shared.settings.tuning;
        if peer.is_some() {
            return transport::client_config(&self.identity, peer, t);
        }
        let mut cache = self
            .unpinned
            .lock()
            .map_err(|_| TransportError::Crypto("config cache poisoned".into()))?;
        if let Some(cfg) = cache.as_ref() {
            return Ok(cfg.clone());
        }
        let cfg = transport::client_config(&self.identity, None, t)?;
        *cache = Some(cfg.clone());
        Ok(cfg)
    }
}

#[derive(Debug, thiserror::Error)]
enum HandshakeError {
    #[error("quic: {0}")]
    Connection(#[from] quinn::ConnectionError),
    #[error("connect: {0}")]
    Connect(#[from] quinn::ConnectError),
    #[error("config: {0}")]
    Config(#[from] TransportError),
    #[error("peer presented no usable certificate")]
    NoIdentity,
    #[error("write: {0}")]
    Write(#[from] quinn::WriteError),
    #[error("read: {0}")]
    Read(#[from] FrameReadError),
    #[error("first frame was not a hello")]
    NoHello,
}

/// After QUIC: exchange hellos on one uni stream per direction, then start the reader and
/// writer tasks and report the connection to the actor.
async fn establish(
    ctx: &Arc<ConnCtx>,
    connection: quinn::Connection,
    direction: Direction,
) -> Result<(), HandshakeError> {
    let peer = transport::peer_id_of_connection(&connection).ok_or(HandshakeError::NoIdentity)?;
    let mut send = connection.open_uni().await?;
    let hello = Frame::Hello {
        instance: ctx.instance,
        listen: ctx.shared.quic_addr.to_string(),
    };
    send.write_all(&hello.encode()).await?;
    let mut recv = connection.accept_uni().await?;
    let body = transport::read_frame(&mut recv, ctx.max_frame())
        .await?
        .ok_or(HandshakeError::NoHello)?;
    let Ok(Frame::Hello { instance, listen }) = Frame::decode(&body) else {
        ctx.shared.metrics.inc(c::INVALID_FRAMES);
        return Err(HandshakeError::NoHello);
    };
    let remote = connection.remote_address();
    let addr = match listen.parse::<SocketAddr>() {
        Ok(a) if a.ip().is_unspecified() => SocketAddr::new(remote.ip(), a.port()),
        Ok(a) => a,
        Err(_) => remote,
    };
    ctx.shared.impair.set_peer_addr(peer, remote);
    let conn = ctx.next_conn.fetch_add(1, Ordering::Relaxed);
    let (out_tx, out_rx) = mpsc::channel(ctx.shared.settings.tuning.outbound_queue as usize);
    // Report first, then start reading, so the actor knows the connection before any frame.
    if ctx
        .net_tx
        .send(NetEvent::Up {
            peer,
            conn,
            connection: connection.clone(),
            out: out_tx,
            addr,
            direction,
            instance,
        })
        .await
        .is_err()
    {
        return Ok(()); // shutting down
    }
    let deadline = Duration::from_millis(ctx.shared.settings.tuning.send_deadline_ms);
    tokio::spawn(writer(
        send,
        out_rx,
        deadline,
        ctx.clone(),
        peer,
        connection.clone(),
    ));
    tokio::spawn(reader(recv, peer, conn, ctx.clone(), connection));
    Ok(())
}

async fn accept_loop(ctx: Arc<ConnCtx>) {
    while let Some(incoming) = ctx.endpoint.accept().await {
        if ctx.shared.inbound_pending.load(Ordering::Relaxed) >= MAX_INBOUND_HANDSHAKES {
            ctx.shared.metrics.inc(extra::HANDSHAKES_REFUSED);
            incoming.refuse();
            continue;
        }
        ctx.shared.inbound_pending.fetch_add(1, Ordering::Relaxed);
        let ctx = ctx.clone();
        tokio::spawn(async move {
            let remote = incoming.remote_address();
            let result = tokio::time::timeout(ctx.auth_timeout(), async {
                let connection = incoming.await?;
                establish(&ctx, connection, Direction::Inbound).await
            })
            .await;
            ctx.shared.inbound_pending.fetch_sub(1, Ordering::Relaxed);
            match result {
                Ok(Ok(())) => {}
                Ok(Err(e)) => {
                    ctx.shared.metrics.inc(c::HANDSHAKE_FAILURES);
                    debug!(%remote, error = %e, "inbound handshake failed");
                }
                Err(_) => {
                    ctx.shared.metrics.inc(c::AUTH_TIMEOUTS);
                    debug!(%remote, "inbound peer did not authenticate in time");
                }
            }
        });
    }
}

async fn dial(ctx: Arc<ConnCtx>, peer: Option<PeerId>, addr: SocketAddr) {
    let result = tokio::time::timeout(ctx.auth_timeout(), async {
        let cfg = ctx.client_config(peer)?;
        let connecting = ctx
            .endpoint
            .connect_with(cfg, addr, transport::SERVER_NAME)?;
        let connection = connecting.await?;
        establish(&ctx, connection, Direction::Outbound).await
    })
    .await;
    let failed = match result {
        Ok(Ok(())) => false,
        Ok(Err(e)) => {
            debug!(%addr, error = %e, "dial failed");
            true
        }
        Err(_) => {
            debug!(%addr, "dial timed out");
            true
        }
    };
    if failed {
        ctx.shared.metrics.inc(extra::DIAL_FAILURES);
        let _ = ctx.net_tx.send(NetEvent::DialFailed { peer, addr }).await;
    }
}

async fn writer(
    mut send: quinn::SendStream,
    mut rx: mpsc::Receiver<OutFrame>,
    deadline: Duration,
    ctx: Arc<ConnCtx>,
    peer: PeerId,
    connection: quinn::Connection,
) {
    let metrics = &ctx.shared.metrics;
    while let Some(frame) = rx.recv().await {
        let now = Instant::now();
        // A gossip frame that waited in the queue past its deadline is dropped and reported
        // (it drives the peer's score); control and DM frames are still written.
        if frame.topic.is_some() && now > frame.deadline {
            metrics.inc(c::PEER_SEND_TIMEOUTS);
            let mut topics: Vec<TopicId> = frame.topic.into_iter().collect();
            while let Ok(next) = rx.try_recv() {
                if next.topic.is_some() && Instant::now() > next.deadline {
                    metrics.inc(c::PEER_SEND_TIMEOUTS);
                    topics.extend(next.topic);
                } else {
                    // Still in time: write it (order within the stream is kept).
                    if !write_frame(&mut send, &next, deadline, &ctx, peer, &connection, &mut rx)
                        .await
                    {
                        report_timeouts(&ctx, peer, topics).await;
                        return;
                    }
                    break;
                }
            }
            report_timeouts(&ctx, peer, topics).await;
            continue;
        }
        if !write_frame(
            &mut send,
            &frame,
            deadline,
            &ctx,
            peer,
            &connection,
            &mut rx,
        )
        .await
        {
            return;
        }
    }
    // The actor dropped the queue (connection replaced, idle or gone): end the stream cleanly
    // and hold the connection open until the peer has every queued byte, so a connection that
    // lost a tie-break drains instead of dropping frames in flight.
    if send.finish().is_ok() {
        let _ = tokio::time::timeout(deadline, send.stopped()).await;
    }
    drop(connection);
}

/// Writes one frame within the send deadline. On a stalled write the connection is closed and
/// the stalled frame plus every gossip frame still queued are reported as timed out; returns
/// false when the writer must stop.
async fn write_frame(
    send: &mut quinn::SendStream,
    frame: &OutFrame,
    deadline: Duration,
    ctx: &Arc<ConnCtx>,
    peer: PeerId,
    connection: &quinn::Connection,
    rx: &mut mpsc::Receiver<OutFrame>,
) -> bool {
    match tokio::time::timeout(deadline, send.write_all(&frame.bytes)).await {
        Ok(Ok(())) => true,
        Ok(Err(_)) => false,
        Err(_) => {
            ctx.shared.metrics.inc(c::PEER_SEND_TIMEOUTS);
            connection.close(CLOSE_STALLED.into(), b"send stalled");
            let mut topics: Vec<TopicId> = frame.topic.iter().cloned().collect();
            rx.close();
            while let Ok(next) = rx.try_recv() {
                if let Some(t) = next.topic {
                    ctx.shared.metrics.inc(c::PEER_SEND_TIMEOUTS);
                    topics.push(t);
                }
            }
            report_timeouts(ctx, peer, topics).await;
            false
        }
    }
}

async fn report_timeouts(ctx: &Arc<ConnCtx>, peer: PeerId, topics: Vec<TopicId>) {
    if !topics.is_empty() {
        let _ = ctx
            .net_tx
            .send(NetEvent::SendTimeouts { peer, topics })
            .await;
    }
}

async fn reader(
    mut recv: quinn::RecvStream,
    peer: PeerId,
    conn: ConnId,
    ctx: Arc<ConnCtx>,
    connection: quinn::Connection,
) {
    let max = ctx.max_frame();
    let metrics = &ctx.shared.metrics;
    let push_deadline = Duration::from_millis(ctx.shared.settings.tuning.recv_push_deadline_ms);
    loop {
        match transport::read_frame(&mut recv, max).await {
            Ok(Some(body)) => {
                // Try-push with a deadline: a full queue gets `recv_push_deadline` to make room,
                // then the frame is dropped and counted. The reader never waits longer, so one
                // slow receive path cannot wedge the transport; under sustained overload the
                // pacing lets QUIC flow control push back on the sender.
                let pushed = match ctx.pump_tx.try_send((peer, conn, body, Instant::now())) {
                    Ok(()) => Ok(()),
                    Err(mpsc::error::TrySendError::Full(item)) if !push_deadline.is_zero() => {
                        match tokio::time::timeout(push_deadline, ctx.pump_tx.send(item)).await {
                            Ok(Ok(())) => Ok(()),
                            Ok(Err(_)) => Err(true),
                            Err(_) => Err(false),
                        }
                    }
                    Err(mpsc::error::TrySendError::Full(_)) => Err(false),
                    Err(mpsc::error::TrySendError::Closed(_)) => Err(true),
                };
                match pushed {
                    Ok(()) => {
                        metrics.inc(c::RECV_PUMP_PRODUCED);
                        let depth = ctx.pump_tx.max_capacity() - ctx.pump_tx.capacity();
                        ctx.shared
                            .pump_max_depth
                            .fetch_max(depth, Ordering::Relaxed);
                    }
                    Err(false) => metrics.inc(c::RECV_PUMP_DROPPED_FULL),
                    Err(true) => break,
                }
            }
            Ok(None) => break,
            Err(FrameReadError::TooLarge(n)) => {
                metrics.inc(c::INVALID_FRAMES);
                warn!(?peer, len = n, "oversized frame; closing connection");
                connection.close(CLOSE_BAD_FRAME.into(), b"oversized frame");
                break;
            }
            Err(FrameReadError::Read(_)) => break,
        }
    }
    // No close here: at a clean end of stream the peer is draining this connection, and our
    // own writer may still be flushing; the connection closes once both sides let go.
    drop(connection);
    let _ = ctx.net_tx.send(NetEvent::Down { peer, conn }).await;
}

async fn dispatcher(
    index: usize,
    rx: Arc<Mutex<mpsc::Receiver<PumpItem>>>,
    net_tx: mpsc::Sender<NetEvent>,
    shared: Arc<Shared>,
    task_timeout: Duration,
    wake: Arc<Notify>,
) {
    loop {
        if index >= shared.worker_target.load(Ordering::Relaxed) {
            // Parked above the target; re-check now and then (a missed wake costs ≤ 100 ms).
            let _ = tokio::time::timeout(Duration::from_millis(100), wake.notified()).await;
            continue;
        }
        let item = rx.lock().await.recv().await;
        let Some((peer, conn, body, arrived)) = item else {
            return;
        };
        let m = &shared.metrics;
        m.inc(c::RECV_PUMP_DEQUEUED);
        shared.dispatcher_inflight.fetch_add(1, Ordering::Relaxed);
        let task = async {
            match Frame::decode(&body) {
                Ok(Frame::Gossip(bytes)) => {
                    let Some(msg) = pubsub::decode(&bytes) else {
                        m.inc(c::INVALID_FRAMES);
                        debug!(?peer, "undecodable gossip message");
                        return;
                    };
                    // A stalled topic's delivery path blocks here, holding this worker, as a
                    // subscriber callback that stopped returning would. Bounded by the per-task
                    // timeout: past it the frame is given up (a dispatcher timeout).
                    if let Some(until) = shared.stalls.until(&msg.topic, Instant::now()) {
                        m.inc(extra::GOSSIP_STALLED_FRAMES);
                        tokio::time::sleep_until(until.into()).await;
                    }
                    let _ = net_tx.send(NetEvent::Gossip { peer, msg, arrived }).await;
                }
                Ok(frame) => {
                    let _ = net_tx.send(NetEvent::Frame { peer, conn, frame }).await;
                }
                Err(e) => {
                    m.inc(c::INVALID_FRAMES);
                    debug!(?peer, error = %e, "undecodable frame");
                }
            }
        };
        match tokio::time::timeout(task_timeout, task).await {
            Ok(()) => m.inc(c::DISPATCHER_COMPLETED),
            Err(_) => m.inc(c::DISPATCHER_TIMEOUTS),
        }
        shared.dispatcher_inflight.fetch_sub(1, Ordering::Relaxed);
    }
}

struct ConnEntry {
    connection: quinn::Connection,
    out: mpsc::Sender<OutFrame>,
}

/// Every this often, topics whose active view is empty are re-joined through current contacts
/// (covers subscriptions that raced: a Join that reached a peer before it subscribed).
const REJOIN_INTERVAL: Duration = Duration::from_secs(1);
/// Most follow-up rounds (send outcomes feeding the core) per gossip step; a safety bound.
const GOSSIP_ROUNDS: usize = 64;

struct Actor {
    core: Core,
    gossip: GossipState<GossipPeer, StdRng>,
    gossip_timers: BinaryHeap<Reverse<(Instant, u64, GossipTimer<GossipPeer>)>>,
    gossip_timer_seq: u64,
    subscribers: BTreeMap<TopicId, Subscriber>,
    /// Gossip frames held while a connection to the peer is dialed (bounded per peer).
    pending: HashMap<PeerId, VecDeque<(TopicId, Vec<u8>)>>,
    next_rejoin: Instant,
    /// When the latest gossip frame handed to the core reached this node.
    last_arrived: Instant,
    ctx: Arc<ConnCtx>,
    conns: HashMap<ConnId, ConnEntry>,
    ops: HashMap<OpId, oneshot::Sender<DmDone>>,
    next_op: OpId,
    high_water: usize,
    drain_grace: Duration,
    draining: std::collections::VecDeque<(Instant, ConnId)>,
}

impl Actor {
    async fn run(
        mut self,
        mut cmd_rx: mpsc::Receiver<Command>,
        mut net_rx: mpsc::Receiver<NetEvent>,
    ) {
        loop {
            let deadline = [
                self.core.next_timeout(),
                self.gossip_timers.peek().map(|Reverse((at, _, _))| *at),
                (!self.subscribers.is_empty()).then_some(self.next_rejoin),
            ]
            .into_iter()
            .flatten()
            .min();
            let sleep = async {
                match deadline {
                    Some(at) => tokio::time::sleep_until(at.into()).await,
                    None => std::future::pending().await,
                }
            };
            tokio::select! {
                ev = net_rx.recv() => {
                    if let Some(ev) = ev { self.on_net(ev) }
                }
                cmd = cmd_rx.recv() => match cmd {
                    Some(Command::Shutdown) | None => break,
                    Some(cmd) => self.on_command(cmd),
                },
                () = sleep => self.on_timeout(Instant::now(), net_rx.len()),
            }
            self.drain();
        }
        for entry in self.conns.values() {
            entry.connection.close(CLOSE_SHUTDOWN.into(), b"shutdown");
        }
        self.ctx.endpoint.close(CLOSE_SHUTDOWN.into(), b"shutdown");
        self.ctx
            .shared
            .quic_listening
            .store(false, Ordering::Relaxed);
        info!("node main loop stopped");
    }

    fn on_timeout(&mut self, now: Instant, net_queued: usize) {
        self.core.handle_timeout(now);
        let mut due = Vec::new();
        while let Some(Reverse((at, _, _))) = self.gossip_timers.peek() {
            if *at > now {
                break;
            }
            if let Some(Reverse((_, _, timer))) = self.gossip_timers.pop() {
                due.push(timer);
            }
        }
        if !due.is_empty() {
            self.report_backlog(net_queued, now);
        }
        for timer in due {
            self.gossip_step(InEvent::TimerExpired(timer), now);
        }
        if !self.subscribers.is_empty() && now >= self.next_rejoin {
            self.next_rejoin = now + REJOIN_INTERVAL;
            self.rejoin_empty_topics(now);
        }
    }

    /// Monotonic time as the gossip core sees it.
    fn gnow(&self, now: Instant) -> Duration {
        now.saturating_duration_since(self.ctx.shared.started)
    }

    fn gpeer(&self, peer: PeerId) -> GossipPeer {
        GossipPeer::new(peer, self.core.addr_of(peer))
    }

    fn contacts(&mut self) -> Vec<GossipPeer> {
        self.core
            .contacts()
            .into_iter()
            .map(|(id, addr)| GossipPeer::new(id, addr))
            .collect()
    }

    fn rejoin_empty_topics(&mut self, now: Instant) {
        let empty: Vec<TopicId> = self
            .subscribers
            .keys()
            .filter(|t| self.gossip.active_view(t).is_empty())
            .cloned()
            .collect();
        if empty.is_empty() {
            return;
        }
        let contacts = self.contacts();
        if contacts.is_empty() {
            return;
        }
        let gnow = self.gnow(now);
        for topic in empty {
            self.gossip.subscribe(topic, contacts.clone(), gnow);
        }
        let out: Vec<_> = self.gossip.drain().collect();
        self.gossip_outputs(out, now);
    }

    /// Feeds one input to the gossip core and carries out what it asks for.
    fn gossip_step(&mut self, input: InEvent<GossipPeer>, now: Instant) {
        let gnow = self.gnow(now);
        let out: Vec<_> = self.gossip.handle(input, gnow).collect();
        self.gossip_outputs(out, now);
    }

    /// Carries out gossip outputs; send outcomes known at once (full queue, unreachable) are fed
    /// back, in bounded rounds. Never awaits.
    fn gossip_outputs(&mut self, out: Vec<OutEvent<GossipPeer>>, now: Instant) {
        let gnow = self.gnow(now);
        let mut batch = out;
        for _ in 0..GOSSIP_ROUNDS {
            let mut follow = Vec::new();
            for ev in batch.drain(..) {
                match ev {
                    OutEvent::SendMessage(to, msg) => {
                        let topic = msg.topic.clone();
                        if let Some(outcome) = self.gossip_send(to, &msg, now) {
                            follow.push(InEvent::SendOutcome(to, topic, outcome));
                        }
                    }
                    OutEvent::ScheduleTimer(after, timer) => {
                        self.gossip_timer_seq += 1;
                        self.gossip_timers.push(Reverse((
                            now + after,
                            self.gossip_timer_seq,
                            timer,
                        )));
                    }
                    OutEvent::Deliver(topic, delivery) => {
                        if let Some(sub) = self.subscribers.get_mut(&topic)
                            && !sub.push(&delivery, unix_ms(), now)
                        {
                            self.ctx.shared.metrics.inc(c::GOSSIP_SUBSCRIBER_DROPPED);
                        }
                    }
                    OutEvent::DisconnectPeer(peer) => {
                        debug!(?peer, "gossip: peer in no topic's active view");
                    }
                    OutEvent::Event(topic, ev) => match ev {
                        TopicEvent::Suppressed {
                            peer,
                            duration,
                            strikes,
                        } => info!(%topic, ?peer, ?duration, strikes, "gossip: peer suppressed"),
                        TopicEvent::Recovered(peer) => {
                            info!(%topic, ?peer, "gossip: peer recovered");
                        }
                        TopicEvent::Demoted(peer) => {
                            info!(%topic, ?peer, "gossip: peer demoted to lazy");
                        }
                        TopicEvent::NeighborUp(peer) => {
                            debug!(%topic, ?peer, "gossip: neighbor up")
                        }
                        TopicEvent::NeighborDown(peer) => {
                            debug!(%topic, ?peer, "gossip: neighbor down");
                        }
                    },
                }
            }
            if follow.is_empty() {
                return;
            }
            for input in follow {
                batch.extend(self.gossip.handle(input, gnow));
            }
        }
        if !batch.is_empty() {
            warn!(
                left = batch.len(),
                "gossip: follow-up bound reached; outputs dropped"
            );
        }
    }

    /// Sends one gossip message: try-push on the peer's outbound queue (full → `Timeout`),
    /// held while the peer is dialed (overflow → `Timeout`), `Failed` when unreachable. `None`
    /// when the outcome is not known yet.
    fn gossip_send(
        &mut self,
        to: GossipPeer,
        msg: &GossipMessage,
        now: Instant,
    ) -> Option<SendOutcome> {
        let Some(body) = pubsub::encode(msg) else {
            warn!(?to, "gossip: message could not be encoded");
            return Some(SendOutcome::Failed);
        };
        let bytes = Frame::Gossip(body).encode();
        if bytes.len() > self.ctx.max_frame() + crate::proto::wire::LEN_PREFIX {
            warn!(
                ?to,
                len = bytes.len(),
                "gossip: message larger than a frame; not sent"
            );
            return None;
        }
        match self.core.gossip_route(to.id, to.addr, now) {
            GossipRoute::Conn(conn) => {
                let entry = self.conns.get(&conn)?;
                let frame = OutFrame {
                    bytes,
                    topic: Some(msg.topic.clone()),
                    deadline: now + self.send_deadline(),
                };
                self.push_frame(conn, frame, entry.out.clone())
            }
            GossipRoute::Dialing => {
                let q = self.pending.entry(to.id).or_default();
                if q.len() >= PENDING_PER_PEER {
                    self.ctx.shared.metrics.inc(c::PEER_SEND_TIMEOUTS);
                    return Some(SendOutcome::Timeout);
                }
                q.push_back((msg.topic.clone(), bytes));
                None
            }
            GossipRoute::Unreachable => Some(SendOutcome::Failed),
        }
    }

    fn send_deadline(&self) -> Duration {
        Duration::from_millis(self.ctx.shared.settings.tuning.send_deadline_ms)
    }

    /// Try-push one frame on a connection's outbound queue; the actor never waits. A full
    /// queue is a send timeout.
    fn push_frame(
        &self,
        _conn: ConnId,
        frame: OutFrame,
        out: mpsc::Sender<OutFrame>,
    ) -> Option<SendOutcome> {
        let metrics = &self.ctx.shared.metrics;
        let gossip = frame.topic.is_some();
        match out.try_send(frame) {
            Ok(()) => {
                metrics.inc(extra::FRAMES_SENT);
                let depth = out.max_capacity() - out.capacity();
                if depth == self.high_water {
                    metrics.inc(c::OUTBOUND_HIGH_WATER);
                }
                None
            }
            Err(mpsc::error::TrySendError::Full(_)) => {
                metrics.inc(c::PEER_SEND_TIMEOUTS);
                gossip.then_some(SendOutcome::Timeout)
            }
            // The connection is going away; its Down follows and later sends redial.
            Err(mpsc::error::TrySendError::Closed(_)) => None,
        }
    }

    /// A connection came up (or a dial failed): release or fail the frames held for the peer.
    fn flush_pending(&mut self, peer: PeerId, now: Instant) {
        if !self.pending.contains_key(&peer) {
            return;
        }
        if let Some(conn) = self.core.conn_of(peer) {
            let Some(out) = self.conns.get(&conn).map(|e| e.out.clone()) else {
                return;
            };
            let held = self.pending.remove(&peer).unwrap_or_default();
            let mut outcomes = Vec::new();
            for (topic, bytes) in held {
                let frame = OutFrame {
                    bytes,
                    topic: Some(topic.clone()),
                    deadline: now + self.send_deadline(),
                };
                if let Some(o) = self.push_frame(conn, frame, out.clone()) {
                    outcomes.push((topic, o));
                }
            }
            let gp = self.gpeer(peer);
            for (topic, o) in outcomes {
                self.gossip_step(InEvent::SendOutcome(gp, topic, o), now);
            }
        } else if !self.core.dialing(peer) {
            let held = self.pending.remove(&peer).unwrap_or_default();
            let topics: BTreeSet<TopicId> = held.into_iter().map(|(t, _)| t).collect();
            let gp = self.gpeer(peer);
            for topic in topics {
                self.gossip_step(InEvent::SendOutcome(gp, topic, SendOutcome::Failed), now);
            }
        }
    }

    /// A gossip message for the core; `arrived` is when the reader took its frame off the
    /// connection (the time since is our own inbound backlog, which the core keeps out of its
    /// judgement of the peer).
    fn on_gossip_message(
        &mut self,
        peer: PeerId,
        msg: GossipMessage,
        arrived: Option<Instant>,
        now: Instant,
    ) {
        self.core.note_gossip(peer, now);
        let from = self.gpeer(peer);
        let input = match arrived {
            Some(at) => InEvent::RecvMessageAt(from, msg, self.gnow(at)),
            None => InEvent::RecvMessage(from, msg),
        };
        self.gossip_step(input, now);
    }

    /// Tells the gossip core whether frames still wait in our inbound path (receive queue,
    /// dispatcher workers, the channel to this actor; `net_queued` is the latter's length) —
    /// and so whether a repair answer may be sitting here while its wait runs out. The path is
    /// first in, first out: what is queued arrived no earlier than the last frame handed over.
    fn report_backlog(&mut self, net_queued: usize, now: Instant) {
        let shared = &self.ctx.shared;
        let pump = self.ctx.pump_tx.max_capacity() - self.ctx.pump_tx.capacity();
        let busy =
            pump > 0 || net_queued > 0 || shared.dispatcher_inflight.load(Ordering::Relaxed) > 0;
        let since = busy.then(|| self.gnow(self.last_arrived));
        self.gossip_step(InEvent::InboundBacklog(since), now);
    }

    fn on_net(&mut self, ev: NetEvent) {
        let now = Instant::now();
        let input = match ev {
            NetEvent::Up {
                peer,
                conn,
                connection,
                out,
                addr,
                direction,
                instance,
            } => {
                self.conns.insert(conn, ConnEntry { connection, out });
                Input::ConnectionUp {
                    peer,
                    conn,
                    addr,
                    direction,
                    instance,
                }
            }
            NetEvent::Down { peer, conn } => {
                // Keep the writer for a grace period: frames of this connection may still sit
                // in the recv pump (Down overtakes them), and their answers fall back to the
                // connection they came on when the peer has no other one yet.
                self.draining.push_back((now + self.drain_grace, conn));
                Input::ConnectionDown { peer, conn }
            }
            NetEvent::DialFailed { peer, addr } => Input::DialFailed { peer, addr },
            NetEvent::Frame { peer, conn, frame } => Input::Frame { peer, conn, frame },
            NetEvent::Gossip { peer, msg, arrived } => {
                self.last_arrived = self.last_arrived.max(arrived);
                self.on_gossip_message(peer, msg, Some(arrived), now);
                return;
            }
            NetEvent::SendTimeouts { peer, topics } => {
                let gp = self.gpeer(peer);
                for topic in topics {
                    self.gossip_step(InEvent::SendOutcome(gp, topic, SendOutcome::Timeout), now);
                }
                return;
            }
        };
        let touched = match &input {
            Input::ConnectionUp { peer, .. } => Some(*peer),
            Input::DialFailed { peer, .. } => *peer,
            _ => None,
        };
        self.core.handle(input, now);
        if let Some(peer) = touched {
            self.flush_pending(peer, now);
        }
    }

    fn on_command(&mut self, cmd: Command) {
        match cmd {
            Command::Dm {
                to,
                request_id,
                payload,
                timeout,
                reply,
            } => {
                let op = self.next_op;
                self.next_op += 1;
                self.ops.insert(op, reply);
                self.core.handle(
                    Input::SendDm {
                        op,
                        to,
                        request_id,
                        payload,
                        timeout,
                    },
                    Instant::now(),
                );
            }
            Command::Inbox {
                after,
                limit,
                reply,
            } => {
                let (items, next) = self.core.inbox_page(after, limit);
                let now = Instant::now();
                let now_ms = unix_ms();
                let items = items
                    .into_iter()
                    .map(|e| InboxItem {
                        seq: e.seq,
                        from: e.from.to_string(),
                        request_id: hex::encode(e.request_id),
                        size: e.size,
                        received_at_ms: now_ms
                            .saturating_sub(now.saturating_duration_since(e.at).as_millis() as u64),
                    })
                    .collect();
                let _ = reply.send(InboxPage { next, items });
            }
            Command::Diagnostics { reply } => {
                self.drain();
                let _ = reply.send(self.diagnostics());
            }
            Command::Alive { reply } => {
                let _ = reply.send(());
            }
            Command::Subscribe { topic, reply } => {
                let _ = reply.send(self.subscribe(topic));
            }
            Command::Unsubscribe { topic, reply } => {
                let result = if self.subscribers.remove(&topic).is_some() {
                    let now = Instant::now();
                    self.gossip.unsubscribe(&topic, self.gnow(now));
                    let out: Vec<_> = self.gossip.drain().collect();
                    self.gossip_outputs(out, now);
                    info!(%topic, "unsubscribed");
                    Ok(())
                } else {
                    Err(TopicError::NotSubscribed(topic.to_string()))
                };
                let _ = reply.send(result);
            }
            Command::Publish {
                topic,
                payload,
                reply,
            } => {
                let now = Instant::now();
                let result = if self.subscribers.contains_key(&topic) {
                    let r = self
                        .gossip
                        .publish(&topic, payload, unix_ms(), self.gnow(now));
                    let out: Vec<_> = self.gossip.drain().collect();
                    self.gossip_outputs(out, now);
                    r.map(|id| id.to_string()).map_err(TopicError::from)
                } else {
                    Err(TopicError::NotSubscribed(topic.to_string()))
                };
                let _ = reply.send(result);
            }
            Command::Received {
                topic,
                after,
                limit,
                reply,
            } => {
                let result = match self.subscribers.get_mut(&topic) {
                    Some(sub) => {
                        let (items, next) = sub.page(after, limit);
                        let items = items
                            .into_iter()
                            .map(|r| ReceivedItem {
                                seq: r.seq,
                                msg_id: r.msg_id,
                                origin: r.origin.to_string(),
                                hops: u32::from(r.hops),
                                size: r.size,
                                published_at_ms: r.published_at_ms,
                                received_at_ms: r.received_at_ms,
                            })
                            .collect();
                        Ok(ReceivedPage { next, items })
                    }
                    None => Err(TopicError::NotSubscribed(topic.to_string())),
                };
                let _ = reply.send(result);
            }
            Command::Stall { topic, for_, reply } => {
                let result = if self.subscribers.contains_key(&topic) {
                    self.ctx
                        .shared
                        .stalls
                        .set(topic.clone(), for_, Instant::now());
                    info!(%topic, ?for_, "topic delivery path stalled");
                    Ok(())
                } else {
                    Err(TopicError::NotSubscribed(topic.to_string()))
                };
                let _ = reply.send(result);
            }
            Command::Shutdown => {}
        }
    }

    fn subscribe(&mut self, topic: TopicId) -> Result<bool, TopicError> {
        if self.subscribers.contains_key(&topic) {
            return Ok(false);
        }
        if self.subscribers.len() >= MAX_TOPICS {
            return Err(TopicError::TooManyTopics);
        }
        let t = &self.ctx.shared.settings.tuning;
        self.subscribers.insert(
            topic.clone(),
            Subscriber::new(
                t.topic_buffer_capacity as usize,
                Duration::from_millis(t.topic_buffer_retention_ms),
            ),
        );
        let now = Instant::now();
        let contacts = self.contacts();
        info!(%topic, contacts = contacts.len(), "subscribed");
        self.gossip.subscribe(topic, contacts, self.gnow(now));
        let out: Vec<_> = self.gossip.drain().collect();
        self.gossip_outputs(out, now);
        Ok(true)
    }

    fn drain(&mut self) {
        let now = Instant::now();
        while let Some((at, conn)) = self.draining.front().copied() {
            if at > now {
                break;
            }
            self.draining.pop_front();
            self.conns.remove(&conn);
        }
        let shared = self.ctx.shared.clone();
        let metrics = &shared.metrics;
        while let Some(out) = self.core.poll_output() {
            match out {
                Output::Send { conn, frame } => {
                    let Some(entry) = self.conns.get(&conn) else {
                        continue;
                    };
                    let frame = OutFrame {
                        bytes: frame.encode(),
                        topic: None,
                        deadline: now + self.send_deadline(),
                    };
                    let _ = self.push_frame(conn, frame, entry.out.clone());
                }
                Output::Dial { peer, addr } => {
                    tokio::spawn(dial(self.ctx.clone(), peer, addr));
                }
                Output::Close { conn, reason } => {
                    if let Some(entry) = self.conns.remove(&conn) {
                        use crate::proto::core::CloseReason as R;
                        let (code, why): (u32, &'static [u8]) = match reason {
                            R::Replaced => (CLOSE_REPLACED, b"replaced by a newer connection"),
                            R::Idle => (CLOSE_IDLE, b"idle"),
                            R::SelfConnection => (CLOSE_SELF, b"self connection"),
                        };
                        if reason == R::SelfConnection {
                            entry.connection.close(code.into(), why);
                        } else {
                            // Drain instead of cutting: dropping the queue's sender lets the
                            // writer flush what is queued and finish its stream; the peer's
                            // reader then sees the end and closes. Frames already in flight on
                            // a connection that lost a tie-break are therefore not lost. The
                            // timer is the backstop for a peer that never reads.
                            let ConnEntry { connection, out } = entry;
                            drop(out);
                            let grace = self.drain_grace;
                            tokio::spawn(async move {
                                tokio::time::sleep(grace).await;
                                connection.close(code.into(), why);
                            });
                        }
                    }
                }
                Output::DmDone(done) => {
                    if let Some(reply) = self.ops.remove(&done.op) {
                        let _ = reply.send(done);
                    }
                }
                Output::Gossip { peer, bytes } => match pubsub::decode(&bytes) {
                    Some(msg) => self.on_gossip_message(peer, msg, None, now),
                    None => metrics.inc(c::INVALID_FRAMES),
                },
            }
        }
        for (name, n) in self.core.drain_stats() {
            metrics.add(name, n);
        }
        self.ctx
            .shared
            .established
            .store(self.core.counts().established, Ordering::Relaxed);
    }

    fn diagnostics(&self) -> Diagnostics {
        let shared = &self.ctx.shared;
        let m = &shared.metrics;
        let now = Instant::now();
        m.raise_to(
            c::INVALID_DATAGRAMS,
            shared.invalid_datagrams.load(Ordering::Relaxed),
        );
        let (dropped, delayed) = shared.impair.effect_counts();
        m.raise_to(c::IMPAIRMENT_DROPPED, dropped);
        m.raise_to(c::IMPAIRMENT_DELAYED, delayed);
        let k = self.core.counts();
        let views = self.core.peer_views(now);
        let outbound_max = self
            .conns
            .values()
            .map(|e| e.out.max_capacity() - e.out.capacity())
            .max()
            .unwrap_or(0);
        let pump_depth = self.ctx.pump_tx.max_capacity() - self.ctx.pump_tx.capacity();
        let impairments = shared.impair.list(now);
        let snapshots = self.gossip.snapshots(self.gnow(now));
        for (name, v) in self.gossip.counters().named() {
            m.raise_to(name, v);
        }
        for (name, v) in [
            (g::PEERS_ESTABLISHED, k.established),
            (
                g::PEERS_PENDING,
                k.pending + shared.inbound_pending.load(Ordering::Relaxed),
            ),
            (g::ACTIVE_VIEW, k.active),
            (g::PASSIVE_VIEW, k.passive),
            (g::RECV_PUMP_DEPTH, pump_depth),
            (
                g::RECV_PUMP_MAX_DEPTH,
                shared.pump_max_depth.load(Ordering::Relaxed),
            ),
            (g::INBOX_DEPTH, k.inbox),
            (g::OUTBOUND_QUEUE_MAX_DEPTH, outbound_max),
            (
                g::DISPATCHER_WORKER_TARGET,
                shared.worker_target.load(Ordering::Relaxed),
            ),
            (
                g::DISPATCHER_INFLIGHT,
                shared.dispatcher_inflight.load(Ordering::Relaxed),
            ),
            (
                g::SUPPRESSED_TOPIC_PEERS,
                snapshots.iter().map(|s| s.suppressed.len()).sum(),
            ),
            (
                g::KNOWN_TOPIC_PEERS,
                snapshots.iter().map(|s| s.known_peers).sum(),
            ),
            (extra_gauges::TOPICS, self.subscribers.len()),
            (
                extra_gauges::TOPIC_BUFFERED,
                self.subscribers.values().map(Subscriber::len).sum(),
            ),
            (
                extra_gauges::GOSSIP_PENDING,
                self.pending.values().map(VecDeque::len).sum(),
            ),
            (extra_gauges::STALLED_TOPICS, shared.stalls.list(now).len()),
            (extra_gauges::DM_PENDING, k.pending_dms),
            (extra_gauges::KNOWN_PEERS, views.len()),
            (extra_gauges::DEDUPE_ENTRIES, k.dedupe),
            (extra_gauges::IMPAIRMENTS, impairments.len()),
        ] {
            m.set(name, v as f64);
        }
        let peers = views
            .into_iter()
            .map(|v| {
                let loss = v.conn.and_then(|id| self.conns.get(&id)).map_or(0.0, |e| {
                    let s = e.connection.stats();
                    if s.path.sent_packets == 0 {
                        0.0
                    } else {
                        s.path.lost_packets as f64 / s.path.sent_packets as f64
                    }
                });
                PeerTransport {
                    peer_id: v.peer.to_string(),
                    addr: v.addr.map_or_else(String::new, |a| a.to_string()),
                    state: v.state,
                    direction: v.direction,
                    active: v.active,
                    rtt_us: v.rtt.map(|d| d.as_micros() as u64),
                    loss,
                    idle_ms: v.idle.map_or(0, |d| d.as_millis() as u64),
                    failed_attempts: v.failed_attempts,
                }
            })
            .collect();
        Diagnostics {
            api_version: API_VERSION,
            identity: shared.identity.clone(),
            version: VERSION.to_string(),
            taken_at_ms: unix_ms(),
            uptime_ms: shared.started.elapsed().as_millis() as u64,
            counters: m.counters(),
            gauges: m.gauges(),
            peers,
            topics: snapshots
                .iter()
                .map(|s| s.to_api(|p| p.id.to_string()))
                .collect(),
            impairments,
        }
    }
}
