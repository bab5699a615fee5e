//! Connections: the accept loop, dial tasks, the QUIC + hello handshake, and one reader and one
//! writer task per connection. Everything they learn goes to the actor as a [`NetEvent`].

use std::net::SocketAddr;
use std::sync::Arc;
use std::sync::atomic::Ordering;
use std::time::{Duration, Instant};

use soak_api::{Direction, counters as c};
use soak_gossip::TopicId;
use soak_proto::PeerId;
use soak_proto::core::{ConnId, stats};
use soak_proto::engine::GossipTag;
use soak_proto::transient::Slot;
use soak_proto::wire::{FRAME_OVERHEAD, Frame};
use tokio::sync::mpsc;
use tracing::{debug, warn};

use super::Shared;
use super::pump::PumpItem;
use crate::identity::Identity;
use crate::pubsub::GossipMessage;
use crate::transport::{self, FrameReadError, TransportError};

/// QUIC application close codes.
pub(super) const CLOSE_REPLACED: u32 = 1;
pub(super) const CLOSE_IDLE: u32 = 2;
pub(super) const CLOSE_SELF: u32 = 3;
const CLOSE_STALLED: u32 = 4;
const CLOSE_BAD_FRAME: u32 = 5;
pub(super) const CLOSE_SHUTDOWN: u32 = 6;
pub(super) const CLOSE_BANNED: u32 = 7;
pub(super) const CLOSE_EXPIRED: u32 = 8;
pub(super) const CLOSE_LIMIT: u32 = 9;
pub(super) const CLOSE_EVICTED: u32 = 10;

/// A connection that finished QUIC + hello: everything the actor needs to admit it.
pub(super) struct Established {
    pub(super) peer: PeerId,
    pub(super) connection: quinn::Connection,
    pub(super) send: quinn::SendStream,
    pub(super) recv: quinn::RecvStream,
    /// The peer's listen address (from its hello; an unspecified IP is taken from `remote`).
    pub(super) addr: SocketAddr,
    pub(super) remote: SocketAddr,
    pub(super) instance: u64,
}

/// What connection tasks and the dispatcher tell the actor.
pub(super) enum NetEvent {
    /// A new inbound QUIC connection attempt, for the actor to admit or refuse.
    Incoming(quinn::Incoming),
    /// A transient connection finished its handshake.
    Up {
        slot: Slot,
        direction: Direction,
        est: Box<Established>,
    },
    /// A transient connection's handshake failed.
    HandshakeFailed {
        slot: Slot,
        direction: Direction,
        addr: SocketAddr,
        peer: Option<PeerId>,
    },
    Down {
        peer: PeerId,
        conn: ConnId,
    },
    Frame {
        peer: PeerId,
        conn: ConnId,
        frame: Frame,
    },
    /// A frame that could not be decoded (or was too large).
    BadFrame {
        peer: PeerId,
        conn: ConnId,
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
    /// A bootstrap host name resolves to these addresses now.
    BootstrapResolved {
        source: usize,
        peer: Option<PeerId>,
        addrs: Vec<SocketAddr>,
    },
}

/// One frame on a per-peer outbound queue: the encoded bytes, the gossip frame's tag (for send
/// outcomes) and the deadline by which it must be on the wire.
#[derive(Debug)]
pub struct OutFrame {
    pub(super) bytes: Vec<u8>,
    pub(super) gossip: Option<GossipTag>,
    pub(super) deadline: Instant,
}

impl OutFrame {
    fn topic(&self) -> Option<TopicId> {
        self.gossip.as_ref().map(|t| t.topic.clone())
    }
}

/// What connection tasks need.
pub(super) struct ConnCtx {
    pub(super) shared: Arc<Shared>,
    identity: Arc<Identity>,
    pub(super) endpoint: quinn::Endpoint,
    pub(super) net_tx: mpsc::Sender<NetEvent>,
    pub(super) pump_tx: mpsc::Sender<PumpItem>,
    instance: u64,
    /// The listen address our hellos advertise.
    advertise: SocketAddr,
    unpinned: std::sync::Mutex<Option<quinn::ClientConfig>>,
}

impl ConnCtx {
    pub(super) fn new(
        shared: Arc<Shared>,
        identity: Arc<Identity>,
        endpoint: quinn::Endpoint,
        net_tx: mpsc::Sender<NetEvent>,
        pump_tx: mpsc::Sender<PumpItem>,
        instance: u64,
        advertise: SocketAddr,
    ) -> ConnCtx {
        ConnCtx {
            shared,
            identity,
            endpoint,
            net_tx,
            pump_tx,
            instance,
            advertise,
            unpinned: std::sync::Mutex::new(None),
        }
    }

    pub(super) fn max_frame(&self) -> usize {
        self.shared.settings.tuning.max_payload_bytes as usize + FRAME_OVERHEAD
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

/// After QUIC: exchange hellos on one uni stream per direction. `peer` is set as soon as the
/// peer's certificate is known, so a failure after it is the peer's.
async fn establish(
    ctx: &Arc<ConnCtx>,
    connection: quinn::Connection,
    peer_out: &mut Option<PeerId>,
) -> Result<Established, HandshakeError> {
    let peer = transport::peer_id_of_connection(&connection).ok_or(HandshakeError::NoIdentity)?;
    *peer_out = Some(peer);
    let mut send = connection.open_uni().await?;
    let hello = Frame::Hello {
        instance: ctx.instance,
        listen: ctx.advertise.to_string(),
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
    Ok(Established {
        peer,
        connection,
        send,
        recv,
        addr,
        remote,
        instance,
    })
}

/// Hands every inbound connection attempt to the actor, which admits or refuses it. A full
/// channel to the actor means overload: refused here.
pub(super) async fn accept_loop(ctx: Arc<ConnCtx>) {
    while let Some(incoming) = ctx.endpoint.accept().await {
        match ctx.net_tx.try_send(NetEvent::Incoming(incoming)) {
            Ok(()) => {}
            Err(mpsc::error::TrySendError::Full(NetEvent::Incoming(incoming))) => {
                ctx.shared.metrics.inc(stats::HANDSHAKES_REFUSED);
                incoming.refuse();
            }
            Err(_) => return,
        }
    }
}

/// The handshake of an admitted inbound connection, under its transient slot. No timeout of
/// its own: the actor aborts it when the core expires the slot.
pub(super) async fn inbound(ctx: Arc<ConnCtx>, slot: Slot, incoming: quinn::Incoming) {
    let remote = incoming.remote_address();
    let mut peer = None;
    let result = async {
        let connection = incoming.await?;
        establish(&ctx, connection, &mut peer).await
    }
    .await;
    let event = match result {
        Ok(est) => NetEvent::Up {
            slot,
            direction: Direction::Inbound,
            est: Box::new(est),
        },
        Err(e) => {
            debug!(%remote, error = %e, "inbound handshake failed");
            NetEvent::HandshakeFailed {
                slot,
                direction: Direction::Inbound,
                addr: remote,
                peer,
            }
        }
    };
    let _ = ctx.net_tx.send(event).await;
}

/// One dial under its transient slot (aborted by the actor when the slot expires).
pub(super) async fn dial(ctx: Arc<ConnCtx>, slot: Slot, peer: Option<PeerId>, addr: SocketAddr) {
    let mut seen = None;
    let result = async {
        let cfg = ctx.client_config(peer)?;
        let connecting = ctx
            .endpoint
            .connect_with(cfg, addr, transport::SERVER_NAME)?;
        let connection = connecting.await?;
        establish(&ctx, connection, &mut seen).await
    }
    .await;
    let event = match result {
        Ok(est) => NetEvent::Up {
            slot,
            direction: Direction::Outbound,
            est: Box::new(est),
        },
        Err(e) => {
            debug!(%addr, error = %e, "dial failed");
            NetEvent::HandshakeFailed {
                slot,
                direction: Direction::Outbound,
                addr,
                peer,
            }
        }
    };
    let _ = ctx.net_tx.send(event).await;
}

pub(super) async fn writer(
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
        if frame.gossip.is_some() && now > frame.deadline {
            metrics.inc(c::PEER_SEND_TIMEOUTS);
            let mut topics: Vec<TopicId> = frame.topic().into_iter().collect();
            while let Ok(next) = rx.try_recv() {
                if next.gossip.is_some() && Instant::now() > next.deadline {
                    metrics.inc(c::PEER_SEND_TIMEOUTS);
                    topics.extend(next.topic());
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
            let mut topics: Vec<TopicId> = frame.topic().into_iter().collect();
            rx.close();
            while let Ok(next) = rx.try_recv() {
                if let Some(t) = next.topic() {
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

pub(super) async fn reader(
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
                let _ = ctx.net_tx.send(NetEvent::BadFrame { peer, conn }).await;
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
