//! The IO shell: one actor task owns the sans-IO [`Core`] and the map of live connections;
//! around it run the accept loop, one dial task per dial, one reader and one writer task per
//! connection, the bounded receive queue ("recv pump") and the dispatcher worker pool.
//!
//! Data path of an inbound frame: reader task → `try_send` into the recv pump (full → dropped
//! and counted, transport never stalls) → a dispatcher worker decodes it (per-task timeout) →
//! actor → core. Outbound: core → actor → `try_send` into the peer's bounded outbound queue
//! (full → counted as a send timeout; the actor never awaits a bounded channel) → writer task
//! (per-write deadline) → QUIC stream.

use std::collections::HashMap;
use std::net::SocketAddr;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, AtomicUsize, Ordering};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use soak_api::{
    API_VERSION, Diagnostics, Direction, DmOutcome, DmPath, InboxItem, InboxPage, PeerTransport,
    ProcessIdentity, counters as c, gauges as g,
};
use tokio::sync::{Mutex, mpsc, oneshot};
use tracing::{debug, info, warn};

use crate::config::Settings;
use crate::identity::{Identity, IdentityError};
use crate::impair::Impairments;
use crate::metrics::{Metrics, MetricsError, extra, extra_gauges};
use crate::proto::core::{ConnId, Core, CoreConfig, DmDone, Input, OpId, Output};
use crate::proto::wire::{FRAME_OVERHEAD, Frame};
use crate::proto::{PeerId, RequestId};
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
    invalid_datagrams: Arc<AtomicU64>,
    pump_max_depth: AtomicUsize,
    inbound_pending: AtomicUsize,
    dispatcher_inflight: AtomicUsize,
}

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
    Shutdown,
}

enum NetEvent {
    Up {
        peer: PeerId,
        conn: ConnId,
        connection: quinn::Connection,
        out: mpsc::Sender<Vec<u8>>,
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
        let impair = Arc::new(Impairments::default());
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
            invalid_datagrams: bound.invalid_datagrams,
            pump_max_depth: AtomicUsize::new(0),
            inbound_pending: AtomicUsize::new(0),
            dispatcher_inflight: AtomicUsize::new(0),
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
        // Dispatcher pool.
        let pump_rx = Arc::new(Mutex::new(pump_rx));
        for _ in 0..t.dispatcher_workers {
            tokio::spawn(dispatcher(
                pump_rx.clone(),
                net_tx.clone(),
                shared.clone(),
                Duration::from_millis(t.dispatcher_timeout_ms),
            ));
        }
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
        let actor = Actor {
            core,
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

    /// Stop the main loop and close every connection.
    pub async fn shutdown(&self) {
        let _ = self.cmd.send(Command::Shutdown).await;
    }
}

/// One raw frame on the receive queue: sender, connection, undecoded body.
type PumpItem = (PeerId, ConnId, Vec<u8>);

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
        ctx.shared.clone(),
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
    mut rx: mpsc::Receiver<Vec<u8>>,
    deadline: Duration,
    shared: Arc<Shared>,
    connection: quinn::Connection,
) {
    while let Some(buf) = rx.recv().await {
        match tokio::time::timeout(deadline, send.write_all(&buf)).await {
            Ok(Ok(())) => {}
            Ok(Err(_)) => return,
            Err(_) => {
                shared.metrics.inc(c::PEER_SEND_TIMEOUTS);
                connection.close(CLOSE_STALLED.into(), b"send stalled");
                return;
            }
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

async fn reader(
    mut recv: quinn::RecvStream,
    peer: PeerId,
    conn: ConnId,
    ctx: Arc<ConnCtx>,
    connection: quinn::Connection,
) {
    let max = ctx.max_frame();
    let metrics = &ctx.shared.metrics;
    loop {
        match transport::read_frame(&mut recv, max).await {
            Ok(Some(body)) => match ctx.pump_tx.try_send((peer, conn, body)) {
                Ok(()) => {
                    metrics.inc(c::RECV_PUMP_PRODUCED);
                    let depth = ctx.pump_tx.max_capacity() - ctx.pump_tx.capacity();
                    ctx.shared
                        .pump_max_depth
                        .fetch_max(depth, Ordering::Relaxed);
                }
                Err(mpsc::error::TrySendError::Full(_)) => metrics.inc(c::RECV_PUMP_DROPPED_FULL),
                Err(mpsc::error::TrySendError::Closed(_)) => break,
            },
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
    rx: Arc<Mutex<mpsc::Receiver<PumpItem>>>,
    net_tx: mpsc::Sender<NetEvent>,
    shared: Arc<Shared>,
    task_timeout: Duration,
) {
    loop {
        let item = rx.lock().await.recv().await;
        let Some((peer, conn, body)) = item else {
            return;
        };
        let m = &shared.metrics;
        m.inc(c::RECV_PUMP_DEQUEUED);
        shared.dispatcher_inflight.fetch_add(1, Ordering::Relaxed);
        let task = async {
            match Frame::decode(&body) {
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
    out: mpsc::Sender<Vec<u8>>,
}

struct Actor {
    core: Core,
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
            let deadline = self.core.next_timeout();
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
                () = sleep => self.core.handle_timeout(Instant::now()),
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
        };
        self.core.handle(input, now);
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
            Command::Shutdown => {}
        }
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
        let metrics = &self.ctx.shared.metrics;
        while let Some(out) = self.core.poll_output() {
            match out {
                Output::Send { conn, frame } => {
                    let Some(entry) = self.conns.get(&conn) else {
                        continue;
                    };
                    match entry.out.try_send(frame.encode()) {
                        Ok(()) => {
                            metrics.inc(extra::FRAMES_SENT);
                            let depth = entry.out.max_capacity() - entry.out.capacity();
                            if depth == self.high_water {
                                metrics.inc(c::OUTBOUND_HIGH_WATER);
                            }
                        }
                        Err(mpsc::error::TrySendError::Full(_)) => {
                            metrics.inc(c::PEER_SEND_TIMEOUTS);
                        }
                        Err(mpsc::error::TrySendError::Closed(_)) => {}
                    }
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
                Output::Gossip { .. } => metrics.inc(extra::GOSSIP_FRAMES_UNHANDLED),
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
        let t = &shared.settings.tuning;
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
            (g::DISPATCHER_WORKER_TARGET, t.dispatcher_workers as usize),
            (
                g::DISPATCHER_INFLIGHT,
                shared.dispatcher_inflight.load(Ordering::Relaxed),
            ),
            (g::SUPPRESSED_TOPIC_PEERS, 0),
            (g::KNOWN_TOPIC_PEERS, 0),
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
            topics: Vec::new(),
            impairments,
        }
    }
}
