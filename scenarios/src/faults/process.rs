//! Faults on node processes through [`NodeControl`](super::control::NodeControl): restarts
//! (same data dir: same peer id, new instance id) with recovery timed from the moment each
//! restart was issued, and pauses (SIGSTOP, then SIGCONT — always sent again in teardown).

use std::sync::{Arc, Mutex};
use std::time::Duration;

use serde_json::{Value, json};
use soak_api::PeerState;
use soak_gates::model::{Check, FaultEvidence, RecoveryTiming};
use tokio::task::JoinHandle;

use super::control::ProcessSignal;
use super::nemesis::{Fault, FaultCtx, FaultError, FaultFuture, WorkloadsOutcome, now_ms};
use super::probe;
use super::select::Targets;
use super::spec::FaultSpec;
use crate::api::NodeApi;

/// Recovery probes run at this period (≥ 1 Hz, as the restart bar requires).
const RECOVERY_POLL: Duration = Duration::from_millis(250);
/// Longest a recovery is waited for (well past any bar; then "never recovered").
const RECOVERY_DEADLINE: Duration = Duration::from_secs(150);
/// How long a paused node is given to answer again.
const RESUME_DEADLINE: Duration = Duration::from_secs(10);

/// Peers that have `peer_id` established right now (by fleet index).
async fn having<A: NodeApi>(nodes: &[A], among: &[usize], peer_id: &str) -> Vec<usize> {
    let reads = futures::future::join_all(among.iter().map(|&i| nodes[i].diagnostics())).await;
    among
        .iter()
        .zip(reads)
        .filter(|(_, d)| {
            d.as_ref().is_ok_and(|d| {
                d.peers
                    .iter()
                    .any(|p| p.peer_id == peer_id && p.state == PeerState::Established)
            })
        })
        .map(|(&i, _)| i)
        .collect()
}

/// A node restart in flight: what was known before, and its recovery monitor.
struct Restarted {
    index: usize,
    old_instance: String,
    monitor: JoinHandle<RecoveryTiming>,
}

/// Restarts of the targets, spread over the hold.
pub struct RestartFault {
    spec: FaultSpec,
    targets: Targets,
    restarted: tokio::sync::Mutex<Vec<Restarted>>,
    recoveries: Mutex<Vec<RecoveryTiming>>,
}

impl RestartFault {
    /// A restart fault.
    pub fn new(spec: FaultSpec, targets: Targets) -> Self {
        RestartFault {
            spec,
            targets,
            restarted: tokio::sync::Mutex::new(Vec::new()),
            recoveries: Mutex::new(Vec::new()),
        }
    }
}

/// Watches one restarted node until it is back in its peers' views and a DM through it (both
/// ways) is acknowledged, recording the four timestamps.
async fn watch_recovery<A: NodeApi>(
    nodes: Arc<Vec<A>>,
    index: usize,
    peers_before: Vec<usize>,
    mut timing: RecoveryTiming,
    probe_timeout: Duration,
) -> RecoveryTiming {
    let deadline = tokio::time::Instant::now() + RECOVERY_DEADLINE;
    let node = &nodes[index];
    let partner = peers_before
        .first()
        .copied()
        .or_else(|| (0..nodes.len()).find(|&i| i != index));
    while tokio::time::Instant::now() < deadline {
        let now = now_ms();
        if timing.api_up_ms.is_none() && node.healthz(probe_timeout).await.is_ok() {
            timing.api_up_ms = Some(now_ms());
            if let Ok(d) = node.diagnostics().await {
                timing.new_instance = d.identity.instance_id;
            }
        }
        if timing.api_up_ms.is_some() {
            if timing.in_views_ms.is_none() {
                let back = having(&nodes, &peers_before, node.peer_id()).await;
                if back.len() == peers_before.len() {
                    timing.in_views_ms = Some(now_ms());
                }
            }
            if timing.first_dm_ms.is_none()
                && let Some(p) = partner
            {
                let (to, from) = futures::join!(
                    probe::dm(&nodes[p], node, Duration::from_millis(500)),
                    probe::dm(node, &nodes[p], Duration::from_millis(500)),
                );
                if to.acked && from.acked {
                    timing.first_dm_ms = Some(now_ms());
                }
            }
        }
        if let (Some(views), Some(dm)) = (timing.in_views_ms, timing.first_dm_ms) {
            timing.recovered_after_ms = Some(views.max(dm).saturating_sub(timing.issued_ms));
            return timing;
        }
        let spent = now_ms().saturating_sub(now);
        tokio::time::sleep(RECOVERY_POLL.saturating_sub(Duration::from_millis(spent))).await;
    }
    timing
}

impl<A: NodeApi + 'static> Fault<A> for RestartFault {
    fn apply<'a>(&'a self, cx: &'a FaultCtx<A>) -> FaultFuture<'a, Result<Value, FaultError>> {
        Box::pin(async move {
            if let Some(reason) = cx.control.restart_unsupported() {
                return Err(FaultError::Unsupported(reason));
            }
            let targets = cx.indices(&self.targets.nodes);
            let spacing = self.spec.hold / u32::try_from(targets.len().max(1)).unwrap_or(1);
            let started = tokio::time::Instant::now();
            let mut done = Vec::new();
            for (k, &index) in targets.iter().enumerate() {
                tokio::time::sleep_until(started + spacing * u32::try_from(k).unwrap_or(0)).await;
                let node = &cx.nodes[index];
                let old_instance = node
                    .diagnostics()
                    .await
                    .map(|d| d.identity.instance_id)
                    .unwrap_or_default();
                let others: Vec<usize> = (0..cx.nodes.len()).filter(|&i| i != index).collect();
                let peers_before = having(&cx.nodes, &others, node.peer_id()).await;
                let issued_ms = now_ms();
                let report = cx.control.restart(node.name()).await?;
                let timing = RecoveryTiming {
                    node: node.name().to_owned(),
                    service: report.service.clone(),
                    issued_ms,
                    process_up_ms: Some(report.up_at_ms),
                    api_up_ms: None,
                    in_views_ms: None,
                    first_dm_ms: None,
                    recovered_after_ms: None,
                    old_instance: old_instance.clone(),
                    new_instance: String::new(),
                };
                done.push(json!({
                    "node": node.name(), "service": report.service,
                    "old_pid": report.old_pid, "new_pid": report.new_pid,
                    "issued_ms": issued_ms, "up_at_ms": report.up_at_ms,
                    "peers_before": peers_before.iter().map(|&i| cx.nodes[i].name().to_owned()).collect::<Vec<_>>(),
                }));
                let monitor = tokio::spawn(watch_recovery(
                    Arc::clone(&cx.nodes),
                    index,
                    peers_before,
                    timing,
                    cx.probe_timeout,
                ));
                self.restarted.lock().await.push(Restarted {
                    index,
                    old_instance,
                    monitor,
                });
            }
            Ok(json!({ "restarts": done }))
        })
    }

    fn verify_effective<'a>(&'a self, cx: &'a FaultCtx<A>) -> FaultFuture<'a, Check> {
        Box::pin(async move {
            let restarted = self.restarted.lock().await;
            let deadline = tokio::time::Instant::now() + Duration::from_secs(20);
            let mut seen = Vec::new();
            for r in restarted.iter() {
                let node = &cx.nodes[r.index];
                let mut instance = None;
                while tokio::time::Instant::now() < deadline {
                    if let Ok(d) = node.diagnostics().await
                        && d.identity.instance_id != r.old_instance
                    {
                        instance = Some(d.identity.instance_id);
                        break;
                    }
                    tokio::time::sleep(Duration::from_millis(200)).await;
                }
                seen.push((node.name().to_owned(), r.old_instance.clone(), instance));
            }
            let evidence =
                json!(seen
                .iter()
                .map(|(n, old, new)| json!({"node": n, "old_instance": old, "new_instance": new}))
                .collect::<Vec<_>>());
            let missing: Vec<&str> = seen
                .iter()
                .filter(|s| s.2.is_none())
                .map(|s| s.0.as_str())
                .collect();
            if seen.is_empty() {
                Check::NotShown {
                    summary: "no node was restarted".into(),
                    evidence,
                }
            } else if missing.is_empty() {
                Check::Shown {
                    summary: format!("{} nodes answered with a new instance id", seen.len()),
                    evidence,
                }
            } else {
                Check::NotShown {
                    summary: format!("no new instance id seen on {}", missing.join(", ")),
                    evidence,
                }
            }
        })
    }

    fn revert<'a>(&'a self, _cx: &'a FaultCtx<A>) -> FaultFuture<'a, Result<Value, FaultError>> {
        // A restart leaves nothing to undo: the clean check shows the nodes run again.
        Box::pin(async { Ok(json!({ "undo": "nothing: restarted nodes run on their own" })) })
    }

    fn verify_clean<'a>(&'a self, cx: &'a FaultCtx<A>) -> FaultFuture<'a, Check> {
        Box::pin(async move {
            // Every target, not only those restarted: a restart that failed half-way may have
            // left its node down, and a check of nobody is no pass.
            let restarted = self.restarted.lock().await.len();
            let targets = cx.indices(&self.targets.nodes);
            if targets.is_empty() {
                return Check::NotShown {
                    summary: "no target of the restart among the nodes".into(),
                    evidence: Value::Null,
                };
            }
            let mut down = Vec::new();
            for &index in &targets {
                let node = &cx.nodes[index];
                let deadline = tokio::time::Instant::now() + RESUME_DEADLINE;
                let mut up = false;
                while !up && tokio::time::Instant::now() < deadline {
                    up = node.healthz(cx.probe_timeout).await.is_ok();
                    if !up {
                        tokio::time::sleep(Duration::from_millis(200)).await;
                    }
                }
                if !up {
                    down.push(node.name().to_owned());
                }
            }
            if down.is_empty() {
                Check::Shown {
                    summary: format!(
                        "{} targets are running and answering ({restarted} restarted)",
                        targets.len()
                    ),
                    evidence: Value::Null,
                }
            } else {
                Check::NotShown {
                    summary: format!("not answering after the restart: {}", down.join(", ")),
                    evidence: json!({ "down": down }),
                }
            }
        })
    }

    fn conclude<'a>(
        &'a self,
        _cx: &'a FaultCtx<A>,
        _outcome: &'a WorkloadsOutcome,
        evidence: &'a mut FaultEvidence,
    ) -> FaultFuture<'a, ()> {
        Box::pin(async move {
            let mut restarted = self.restarted.lock().await;
            let mut timings = Vec::new();
            for r in restarted.drain(..) {
                if let Ok(t) = r.monitor.await {
                    timings.push(t);
                }
            }
            if let Ok(mut rec) = self.recoveries.lock() {
                rec.extend(timings.iter().cloned());
            }
            evidence.recoveries = timings;
        })
    }
}

/// SIGSTOP of the targets for the hold, then SIGCONT.
pub struct PauseFault {
    targets: Targets,
    pids: Mutex<Vec<(String, u32)>>,
}

impl PauseFault {
    /// A pause fault.
    pub fn new(targets: Targets) -> Self {
        PauseFault {
            targets,
            pids: Mutex::new(Vec::new()),
        }
    }
}

impl<A: NodeApi + 'static> Fault<A> for PauseFault {
    fn apply<'a>(&'a self, cx: &'a FaultCtx<A>) -> FaultFuture<'a, Result<Value, FaultError>> {
        Box::pin(async move {
            if let Some(reason) = cx.control.signal_unsupported() {
                return Err(FaultError::Unsupported(reason));
            }
            let mut stopped = Vec::new();
            for name in &self.targets.nodes {
                let report = cx.control.signal(name, ProcessSignal::Stop).await?;
                if let Ok(mut pids) = self.pids.lock() {
                    pids.push((name.clone(), report.pid));
                }
                stopped.push(json!({ "node": name, "pid": report.pid, "service": report.service }));
            }
            Ok(json!({ "stopped": stopped }))
        })
    }

    fn verify_effective<'a>(&'a self, cx: &'a FaultCtx<A>) -> FaultFuture<'a, Check> {
        Box::pin(async move {
            let mut answering = Vec::new();
            let mut evidence = Vec::new();
            for index in cx.indices(&self.targets.nodes) {
                let node = &cx.nodes[index];
                let (ok, took) = probe::answers(node, Duration::from_millis(500)).await;
                let state = cx.control.is_stopped(node.name());
                evidence.push(json!({
                    "node": node.name(), "healthz_answered": ok,
                    "waited_ms": took.as_millis() as u64, "process_stopped": state,
                }));
                if ok || state == Some(false) {
                    answering.push(node.name().to_owned());
                }
            }
            probe::paused_check(&self.targets.nodes, &answering, evidence)
        })
    }

    fn revert<'a>(&'a self, cx: &'a FaultCtx<A>) -> FaultFuture<'a, Result<Value, FaultError>> {
        Box::pin(async move {
            // SIGCONT every target, even one the apply may not have reached: harmless to a
            // running process, vital to a stopped one.
            let mut continued = Vec::new();
            let mut failed = Vec::new();
            for name in &self.targets.nodes {
                match cx.control.signal(name, ProcessSignal::Cont).await {
                    Ok(report) => continued.push(json!({ "node": name, "pid": report.pid })),
                    Err(err) => failed.push(err.to_string()),
                }
            }
            if let Some(first) = failed.first() {
                return Err(FaultError::Other(format!("SIGCONT failed: {first}")));
            }
            Ok(json!({ "continued": continued }))
        })
    }

    fn verify_clean<'a>(&'a self, cx: &'a FaultCtx<A>) -> FaultFuture<'a, Check> {
        Box::pin(async move {
            let mut silent = Vec::new();
            let mut evidence = Vec::new();
            for index in cx.indices(&self.targets.nodes) {
                let node = &cx.nodes[index];
                let deadline = tokio::time::Instant::now() + RESUME_DEADLINE;
                let mut ok = false;
                let mut waited = Duration::ZERO;
                while !ok && tokio::time::Instant::now() < deadline {
                    let (answered, took) = probe::answers(node, Duration::from_secs(2)).await;
                    ok = answered;
                    waited += took;
                }
                let state = cx.control.is_stopped(node.name());
                evidence.push(json!({ "node": node.name(), "healthz_answered": ok, "process_stopped": state }));
                if !ok || state == Some(true) {
                    silent.push(node.name().to_owned());
                }
            }
            if silent.is_empty() {
                Check::Shown {
                    summary: "continued: /healthz answers again".into(),
                    evidence: json!(evidence),
                }
            } else {
                Check::NotShown {
                    summary: format!("still stopped or silent: {}", silent.join(", ")),
                    evidence: json!(evidence),
                }
            }
        })
    }
}

#[cfg(test)]
mod tests {
    use super::super::catalog;
    use super::super::control::{
        ControlError, ControlFuture, NodeControl, RestartReport, SignalReport,
    };
    use super::super::select::{Selector, resolve};
    use super::*;
    use crate::fake::{FakeMesh, Fault as FakeFault};

    /// A fleet whose restarts kill the node and fail to start it again.
    struct RestartKills(FakeMesh);

    impl NodeControl for RestartKills {
        fn restart_unsupported(&self) -> Option<String> {
            None
        }
        fn signal_unsupported(&self) -> Option<String> {
            Some("test".into())
        }
        fn restart<'a>(&'a self, node: &'a str) -> ControlFuture<'a, RestartReport> {
            Box::pin(async move {
                let index = node.trim_start_matches("node-").parse().unwrap();
                self.0.set_fault(index, FakeFault::Dead);
                Err(ControlError::Failed {
                    node: node.into(),
                    detail: "the service did not come back".into(),
                })
            })
        }
        fn signal<'a>(
            &'a self,
            _node: &'a str,
            _signal: ProcessSignal,
        ) -> ControlFuture<'a, SignalReport> {
            Box::pin(async move { Err(ControlError::Unsupported("test".into())) })
        }
        fn is_stopped(&self, _node: &str) -> Option<bool> {
            None
        }
    }

    #[tokio::test]
    async fn a_restart_that_left_its_node_down_is_not_clean() {
        let mesh = FakeMesh::new(4);
        let cx = mesh.fault_ctx(Arc::new(RestartKills(mesh.clone())));
        let names: Vec<String> = mesh.nodes().iter().map(|n| n.name().to_owned()).collect();
        let targets = resolve(&"random:1".parse::<Selector>().unwrap(), &names, 3).unwrap();
        let target = targets.nodes[0].clone();
        let mut spec = catalog::builtin("restart_storm").unwrap();
        spec.hold = Duration::from_millis(10);
        let fault = RestartFault::new(spec, targets);
        assert!(fault.apply(&cx).await.is_err(), "the restart failed");
        let check = fault.verify_clean(&cx).await;
        let Check::NotShown { summary, .. } = check else {
            panic!("a target left down by a failed restart must not be clean: {check:?}");
        };
        assert!(summary.contains(&target), "{summary}");
    }
}
