//! The receive pump: the bounded queue between connection readers and the actor, drained by an
//! adaptive pool of dispatcher workers that decode frames (gossip included) off the actor.

use std::sync::Arc;
use std::sync::atomic::Ordering;
use std::time::{Duration, Instant};

use soak_api::counters as c;
use soak_proto::PeerId;
use soak_proto::core::ConnId;
use soak_proto::wire::Frame;
use tokio::sync::{Mutex, Notify, mpsc};
use tracing::debug;

use super::Shared;
use super::conns::NetEvent;
use crate::metrics::extra;
use crate::pubsub;

/// One raw frame on the receive queue: sender, connection, undecoded body, arrival.
pub(super) type PumpItem = (PeerId, ConnId, Vec<u8>, Instant);

/// Starts `dispatcher_workers_max` workers and the controller that moves their target.
pub(super) fn start(
    shared: &Arc<Shared>,
    pump_rx: Arc<Mutex<mpsc::Receiver<PumpItem>>>,
    pump_tx: mpsc::Sender<PumpItem>,
    net_tx: mpsc::Sender<NetEvent>,
    wake: Arc<Notify>,
) {
    let t = &shared.settings.tuning;
    let (base, max) = worker_bounds(t);
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
    tokio::spawn(worker_controller(shared.clone(), pump_tx, base, max, wake));
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
                        let _ = net_tx.send(NetEvent::BadFrame { peer, conn }).await;
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
                    let _ = net_tx.send(NetEvent::BadFrame { peer, conn }).await;
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
