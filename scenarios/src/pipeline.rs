//! One window's scenario pipeline: workloads and faults as values, run in one order, so a new
//! workload or fault is a new module rather than edits across the runner.
//!
//! Order within a window: every fault begins at its offset (apply → verify effective); the
//! workloads run while the faults hold (for `idle`, after); each fault holds for at least its
//! `hold` and until the workloads finished, with its lease renewed every lease/3; then every
//! fault ends (revert → verify clean) and concludes (heal, cooling, recovery, first attempts).
//! Every applied fault is in the run's [`FaultRegistry`], so if this task is aborted (signal,
//! timeout, panic) the runner's teardown reverts what it held.

use std::sync::Arc;
use std::time::{Duration, Instant};

use soak_gates::model::{FanoutResult, PhaseAResult, ScenarioRecord, ScenarioStatus};
use tokio::task::JoinSet;

use crate::api::NodeApi;
use crate::fanout::{FanoutConfig, run_fanout};
use crate::faults::journal::{Journal, JournalEntry, Step};
use crate::faults::nemesis::{ActiveFault, FaultCtx, FaultFuture, WorkloadsOutcome, now_ms};
use crate::phase_a::{PhaseA, PhaseAConfig};

/// What one scenario (workload or fault) reported for a window.
#[derive(Debug, Clone)]
pub struct ScenarioReport {
    /// Window index.
    pub window: u32,
    /// The scenario's record.
    pub record: ScenarioRecord,
    /// Phase A matrix (the `baseline` workload) and its wall time.
    pub phase_a: Option<(PhaseAResult, Duration)>,
    /// Fanout burst results (the `fanout_burst` workload; absent when it never published).
    pub fanout: Option<FanoutResult>,
    /// Nodes that published the burst.
    pub publishers: Vec<String>,
}

impl ScenarioReport {
    fn of(window: u32, record: ScenarioRecord) -> Self {
        ScenarioReport {
            window,
            record,
            phase_a: None,
            fanout: None,
            publishers: Vec::new(),
        }
    }
}

/// What a window's workloads are told.
#[derive(Debug, Clone)]
pub struct WindowCx {
    /// Window index.
    pub index: u32,
    /// Fanout publishers (fleet indices), seeded by the runner.
    pub publishers: Vec<usize>,
    /// The window's fresh fanout topic.
    pub topic: String,
    /// Nodes a fault of the window holds unresponsive (paused): left out of the burst, which
    /// could only fail on them (the fault exempts them from the fanout bar).
    pub unavailable: Vec<usize>,
    /// The largest one-way delay (delay plus jitter) a fault of the window adds to some node's
    /// overlay traffic: the burst keeps collecting that much longer per hop a lazily pushed
    /// message needs (announce, request, message), so a delayed node is judged on whether its
    /// messages arrive, not on whether they beat a deadline the fault made impossible.
    pub added_delay: Duration,
}

/// Hops a lazily pushed gossip message crosses to reach a node (IHAVE to it, IWANT from it, the
/// message to it), plus one for the announcement's heartbeat.
const LAZY_HOPS: u32 = 4;

/// A workload run in every window.
pub trait Workload<A: NodeApi>: Send + Sync {
    /// Name in `--scenarios` and in proofs.
    fn name(&self) -> &'static str;
    /// Runs once over `nodes`.
    fn run<'a>(&'a self, nodes: &'a [A], window: &'a WindowCx) -> FaultFuture<'a, ScenarioReport>;
}

fn record(name: &str, status: ScenarioStatus, targets: Vec<String>) -> ScenarioRecord {
    ScenarioRecord {
        name: name.to_owned(),
        status,
        targets,
        exemptions: Vec::new(),
        recovery: None,
        fault: None,
    }
}

/// Phase A: the all-pairs acknowledged DM matrix; its inbox cursors carry across windows.
pub struct PhaseAWorkload {
    state: tokio::sync::Mutex<PhaseA>,
    config: PhaseAConfig,
}

impl PhaseAWorkload {
    /// Phase A with `config`.
    pub fn new(config: PhaseAConfig) -> Self {
        PhaseAWorkload {
            state: tokio::sync::Mutex::new(PhaseA::new()),
            config,
        }
    }
}

impl<A: NodeApi> Workload<A> for PhaseAWorkload {
    fn name(&self) -> &'static str {
        "baseline"
    }

    fn run<'a>(&'a self, nodes: &'a [A], window: &'a WindowCx) -> FaultFuture<'a, ScenarioReport> {
        Box::pin(async move {
            let started = Instant::now();
            let result = self.state.lock().await.run(nodes, self.config).await;
            // The workload ran; whether its pairs pass is the gates' call.
            let mut report = ScenarioReport::of(
                window.index,
                record("baseline", ScenarioStatus::Completed, Vec::new()),
            );
            report.phase_a = Some((result, started.elapsed()));
            report
        })
    }
}

/// A pub/sub burst on a fresh topic per window.
pub struct FanoutWorkload {
    config: FanoutConfig,
}

impl FanoutWorkload {
    /// Bursts with `config`.
    pub fn new(config: FanoutConfig) -> Self {
        FanoutWorkload { config }
    }
}

impl<A: NodeApi> Workload<A> for FanoutWorkload {
    fn name(&self) -> &'static str {
        "fanout_burst"
    }

    fn run<'a>(&'a self, nodes: &'a [A], window: &'a WindowCx) -> FaultFuture<'a, ScenarioReport> {
        Box::pin(async move {
            let mut config = self.config.clone();
            config.collect_timeout += window.added_delay * LAZY_HOPS;
            let config = &config;
            let outcome = if window.unavailable.is_empty() {
                run_fanout(nodes, &window.topic, &window.publishers, config).await
            } else {
                let kept: Vec<usize> = (0..nodes.len())
                    .filter(|i| !window.unavailable.contains(i))
                    .collect();
                let subset: Vec<&A> = kept.iter().map(|&i| &nodes[i]).collect();
                let publishers: Vec<usize> = window
                    .publishers
                    .iter()
                    .filter_map(|p| kept.iter().position(|k| k == p))
                    .collect();
                run_fanout(&subset, &window.topic, &publishers, config).await
            };
            let publishers: Vec<String> = window
                .publishers
                .iter()
                .filter_map(|&i| nodes.get(i).map(|n| n.name().to_owned()))
                .collect();
            // A burst that never published targeted nobody.
            let targets = if outcome.result.is_some() {
                publishers.clone()
            } else {
                Vec::new()
            };
            let mut report = ScenarioReport::of(
                window.index,
                record("fanout_burst", outcome.status, targets),
            );
            report.fanout = outcome.result;
            report.publishers = publishers;
            report
        })
    }
}

/// The workloads `--scenarios` accepts, by name.
pub fn workload<A: NodeApi + 'static>(
    name: &str,
    phase_a: PhaseAConfig,
    fanout: &FanoutConfig,
) -> Option<Arc<dyn Workload<A>>> {
    match name {
        "baseline" => Some(Arc::new(PhaseAWorkload::new(phase_a))),
        "fanout_burst" => Some(Arc::new(FanoutWorkload::new(fanout.clone()))),
        _ => None,
    }
}

/// What runs in one window.
pub struct WindowPlan<A> {
    /// Window index.
    pub index: u32,
    /// When the window started (fault offsets count from here).
    pub start: tokio::time::Instant,
    /// Faults that run (already registered with the run's registry).
    pub faults: Vec<Arc<ActiveFault<A>>>,
    /// Faults skipped at planning, with their reasons.
    pub skipped: Vec<(ScenarioRecord, JournalEntry)>,
}

/// Receives each scenario's report as soon as it is known.
pub type ReportSink = Arc<dyn Fn(ScenarioReport) + Send + Sync>;

async fn run_workloads<A: NodeApi>(
    nodes: &[A],
    workloads: &[Arc<dyn Workload<A>>],
    window: &WindowCx,
    sink: &ReportSink,
) -> WorkloadsOutcome {
    let mut outcome = WorkloadsOutcome::default();
    for w in workloads {
        let report = w.run(nodes, window).await;
        if let Some((pa, _)) = &report.phase_a {
            outcome.phase_a = Some(pa.clone());
        }
        sink(report);
    }
    outcome
}

/// Runs one window: faults and workloads in the pipeline's order. Returns when every scenario
/// reported.
pub async fn run_window<A: NodeApi + 'static>(
    plan: WindowPlan<A>,
    cx: Arc<FaultCtx<A>>,
    workloads: Vec<Arc<dyn Workload<A>>>,
    window: WindowCx,
    journal: Arc<dyn Journal>,
    sink: ReportSink,
) {
    for (skipped, entry) in plan.skipped {
        let _ = journal.record(entry).await;
        sink(ScenarioReport::of(plan.index, skipped));
    }
    if plan.faults.is_empty() {
        run_workloads(&cx.nodes, &workloads, &window, &sink).await;
        return;
    }
    let during = plan
        .faults
        .iter()
        .all(|f| f.scheduled.spec.kind.workloads_during());
    futures::future::join_all(plan.faults.iter().map(|f| {
        let (cx, journal) = (Arc::clone(&cx), Arc::clone(&journal));
        async move {
            tokio::time::sleep_until(plan.start + f.scheduled.spec.at).await;
            f.begin(&cx, journal.as_ref()).await;
        }
    }))
    .await;
    // Leases: renewed every lease/3 until each fault ends.
    let mut renewers: Vec<JoinSet<()>> = Vec::new();
    for f in &plan.faults {
        let mut set = JoinSet::new();
        let (f, cx, journal) = (Arc::clone(f), Arc::clone(&cx), Arc::clone(&journal));
        set.spawn(async move {
            let period = (cx.lease / 3).max(Duration::from_millis(100));
            loop {
                tokio::time::sleep(period).await;
                if let Err(err) = f.renew(&cx).await {
                    let mut entry = f.planned_entry();
                    entry.step = Step::Failed;
                    entry.at_ms = now_ms();
                    entry.evidence = serde_json::Value::Null;
                    entry.detail =
                        format!("lease renewal failed (the node expires it by itself): {err}");
                    let _ = journal.record(entry).await;
                }
            }
        });
        renewers.push(set);
    }
    let mut outcome = if during {
        run_workloads(&cx.nodes, &workloads, &window, &sink).await
    } else {
        WorkloadsOutcome::default()
    };
    futures::future::join_all(
        plan.faults
            .iter()
            .zip(renewers.iter_mut())
            .map(|(f, renewer)| {
                let (cx, journal) = (Arc::clone(&cx), Arc::clone(&journal));
                async move {
                    if let Some(applied) = f.evidence().applied_at_ms {
                        let held = Duration::from_millis(now_ms().saturating_sub(applied));
                        tokio::time::sleep(f.scheduled.spec.hold.saturating_sub(held)).await;
                    }
                    renewer.abort_all();
                    f.end(&cx, journal.as_ref()).await;
                }
            }),
    )
    .await;
    if !during {
        outcome = run_workloads(&cx.nodes, &workloads, &window, &sink).await;
    }
    futures::future::join_all(plan.faults.iter().map(|f| f.conclude(&cx, &outcome))).await;
    for f in &plan.faults {
        sink(ScenarioReport::of(plan.index, f.record()));
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::fake::FakeMesh;
    use soak_api::Impairment;

    fn window(added_delay: Duration) -> WindowCx {
        WindowCx {
            index: 1,
            publishers: vec![0],
            topic: "fanout-w1".into(),
            unavailable: Vec::new(),
            added_delay,
        }
    }

    /// A burst while node-2's traffic is delayed 150 ms: its messages reach it lazily (three
    /// one-way delays), after the 100 ms collection period. The window's added delay lets the
    /// burst wait for them; without it node-2 would be counted as missing what it receives.
    #[tokio::test]
    async fn a_burst_waits_for_a_delayed_node_as_long_as_the_fault_delays_it() {
        let mesh = FakeMesh::new(3);
        let nodes = mesh.nodes();
        let delay = Impairment {
            id: Some("d".into()),
            peer: None,
            delay_ms: 150,
            jitter_ms: 0,
            loss: 0.0,
            partition: false,
            one_way: false,
            expires_in_ms: 60_000,
        };
        nodes[2].add_impairment(&delay).await.expect("delay");
        let burst = FanoutWorkload::new(FanoutConfig {
            messages: 5,
            rate_per_sec: 1_000.0,
            join_timeout: Duration::from_millis(10),
            collect_timeout: Duration::from_millis(100),
            poll: Duration::from_millis(5),
            ..FanoutConfig::default()
        });
        let received = |report: &ScenarioReport| -> Vec<(String, u64)> {
            let result = report.fanout.as_ref().expect("published");
            result
                .subscribers
                .iter()
                .map(|s| (s.node.clone(), s.received))
                .collect()
        };

        let short = burst.run(&nodes, &window(Duration::ZERO)).await;
        let short = received(&short);
        assert!(
            short.iter().any(|(n, r)| n == "node-2" && *r < 5),
            "with no allowance the delayed node misses the deadline: {short:?}"
        );

        let waited = burst.run(&nodes, &window(Duration::from_millis(150))).await;
        let waited = received(&waited);
        assert!(
            waited.iter().all(|(_, r)| *r == 5),
            "every node, the delayed one too, gets all 5: {waited:?}"
        );
    }
}
