//! The runner: drives windows of scenarios (workloads and faults) over a fleet while a
//! continuous sampler reads every node's diagnostics, and turns everything that happens into one
//! ordered event stream.
//!
//! The dispatcher loop ([`run`]) is the only owner of run state. It merges signals, timers
//! (sampler ticks, window deadlines), worker results (per-node samples, scenario reports, fault
//! journal lines) and fleet supervision with `tokio::select!`, and hands every
//! [`event::RunEvent`] to the reporters in [`Dispatch`]. Workers never share run state with it:
//! they send messages. The runner sees only [`NodeApi`] handles and a
//! [`NodeControl`](soak_scenarios::faults::control::NodeControl), so the same code drives a
//! local mesh, an SSH fleet or the lab.
//!
//! Faults are applied inside the (abortable) window tasks but registered in a
//! [`FaultRegistry`] the runner owns: on every way out — the last window, an error, a panic or
//! timeout of a window task, SIGINT, SIGTERM — the teardown reverts and checks whatever is
//! still held, outside the worker set, bounded in time, and a second signal does not skip it.

pub mod event;
pub mod proof;
pub mod reporter;
pub mod sampler;
pub mod signals;
pub mod table;

use std::collections::{BTreeMap, VecDeque};
use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;
use std::time::Duration;

use rand::rngs::StdRng;
use rand::seq::index::sample as sample_indices;
use rand::{RngCore, SeedableRng};
use soak_gates::model::{
    FanoutResult, NodeEvent, NodeRef, Observations, PhaseAResult, Residue, RunInfo, Sample,
    ScenarioRecord, ScenarioStatus, WindowRecord,
};
use soak_gates::{Outcome, Profile};
use soak_scenarios::NodeApi;
use soak_scenarios::fanout::FanoutConfig;
use soak_scenarios::faults::control::NodeControl;
use soak_scenarios::faults::journal::{Journal, JournalEntry, Step};
use soak_scenarios::faults::nemesis::{ActiveFault, FaultCtx, FaultRegistry};
use soak_scenarios::faults::schedule::Schedule;
use soak_scenarios::faults::spec::FaultKind;
use soak_scenarios::faults::{self, Capabilities};
use soak_scenarios::phase_a::PhaseAConfig;
use soak_scenarios::pipeline::{self, ScenarioReport, WindowCx, WindowPlan, Workload};
use tokio::sync::{mpsc, oneshot};
use tokio::task::JoinSet;
use tokio::time::MissedTickBehavior;

use self::event::{
    BarBrief, PhaseASummary, PlannedFault, RunEvent, RunStatus, WindowBrief, now_ms,
};
use self::reporter::Dispatch;
use self::sampler::{NodeSampler, SampleRequest};
use self::signals::Signals;

/// Everything the runner needs to know, resolved and validated.
#[derive(Debug, Clone)]
pub struct RunnerConfig {
    /// Run id.
    pub run_id: String,
    /// Proof directory (for the events only; the proof reporter owns the writing).
    pub proof_dir: String,
    /// Windows the run plans (warm-up included).
    pub windows: u32,
    /// The first window this process runs: 0, or the window a resume picks up at (earlier
    /// windows are in the proof already and are not planned again).
    pub first_window: u32,
    /// Leading windows that are warm-up.
    pub warmup_windows: u32,
    /// Window length.
    pub interval: Duration,
    /// Sampler period.
    pub sample_interval: Duration,
    /// Workloads run in each window, in this order (`baseline`, `fanout_burst`).
    pub workloads: Vec<String>,
    /// Phase A settings.
    pub phase_a: PhaseAConfig,
    /// Fanout settings.
    pub fanout: FanoutConfig,
    /// Publishers per burst.
    pub burst_publishers: usize,
    /// Seed for the run's random choices (publishers, fault targets).
    pub seed: u64,
    /// Hosts the inventory lists (inventory runs only): lets the gates see a partial fleet.
    pub inventory_hosts: Option<usize>,
    /// Which fault holds in which window.
    pub schedule: Schedule,
    /// What the fleet and the user's flags allow the nemesis.
    pub capabilities: Capabilities,
    /// Lease of node-held faults.
    pub fault_lease: Duration,
    /// Timeout of admin API requests (the sampler's per-request bound).
    pub request_timeout: Duration,
    /// The gate, for live window verdicts (the final verdict is judged by the caller).
    pub profile: Option<Profile>,
}

/// What a run produced. The evidence itself is not in here: it went to the reporters as it
/// came (samples, window records, node events), and the final verdict is judged from the
/// stored proof, so the runner's memory never grows with the run's length.
#[derive(Debug, Clone)]
pub struct RunReport {
    /// Why it stopped.
    pub status: RunStatus,
}

/// Messages from workers to the dispatcher loop.
enum WorkerMsg {
    Sample { node: usize, sample: Sample },
    Report(Box<ScenarioReport>),
    WindowDone { window: u32 },
    Journal(Box<JournalEntry>, oneshot::Sender<Result<(), String>>),
}

/// The fault journal as the workers see it: a line goes to the dispatcher loop, which writes
/// it (proof first) and acknowledges; the step acts only after the acknowledgement.
struct ChannelJournal(mpsc::UnboundedSender<WorkerMsg>);

impl Journal for ChannelJournal {
    fn record(
        &self,
        entry: JournalEntry,
    ) -> Pin<Box<dyn Future<Output = Result<(), String>> + Send + '_>> {
        Box::pin(async move {
            let (ack, done) = oneshot::channel();
            self.0
                .send(WorkerMsg::Journal(Box::new(entry), ack))
                .map_err(|_| "the run is over".to_owned())?;
            done.await
                .map_err(|_| "the run stopped before the line was written".to_owned())?
        })
    }
}

/// What the current window has gathered so far.
struct WindowAcc {
    index: u32,
    start_ms: u64,
    deadline: tokio::time::Instant,
    phase_a: Option<PhaseAResult>,
    fanout: Option<FanoutResult>,
    scenarios: Vec<ScenarioRecord>,
    done: bool,
}

impl WindowAcc {
    fn new(index: u32, start_ms: u64, deadline: tokio::time::Instant) -> Self {
        WindowAcc {
            index,
            start_ms,
            deadline,
            phase_a: None,
            fanout: None,
            scenarios: Vec::new(),
            done: false,
        }
    }

    fn into_record(mut self, end_ms: u64, warmup_windows: u32, planned: &[String]) -> WindowRecord {
        // A scenario that never reported (interrupted) is recorded as skipped, never passed.
        for name in planned {
            if !self.scenarios.iter().any(|s| &s.name == name) {
                self.scenarios.push(ScenarioRecord {
                    name: name.clone(),
                    status: ScenarioStatus::Skipped {
                        reason: "interrupted before it finished".to_owned(),
                    },
                    targets: Vec::new(),
                    exemptions: Vec::new(),
                    recovery: None,
                    fault: None,
                });
            }
        }
        WindowRecord {
            index: self.index,
            start_ms: self.start_ms,
            end_ms,
            warmup: self.index < warmup_windows,
            phase_a: self.phase_a,
            fanout: self.fanout,
            scenarios: self.scenarios,
        }
    }
}

/// Summarises a Phase A matrix for the live views.
pub fn summarize_phase_a(result: &PhaseAResult, wall: Duration) -> PhaseASummary {
    let mut latencies: Vec<u64> = result.pairs.iter().filter_map(|p| p.latency_us).collect();
    latencies.sort_unstable();
    let failures = result
        .pairs
        .iter()
        .filter(|p| !p.delivered)
        .take(5)
        .map(|p| {
            format!(
                "{}→{}: {}",
                p.from,
                p.to,
                p.error.as_deref().unwrap_or(p.outcome.as_str())
            )
        })
        .collect();
    PhaseASummary {
        delivered: result.pairs.iter().filter(|p| p.delivered).count(),
        pairs: result.pairs.len(),
        p50_us: soak_scenarios::fanout::percentile(&latencies, 50.0),
        max_us: latencies.last().copied(),
        wall_ms: u64::try_from(wall.as_millis()).unwrap_or(u64::MAX),
        failures,
        sampled: result.sample.as_ref().map(|m| m.describe()),
    }
}

/// How long the teardown may take to revert and check every fault still held.
const TEARDOWN_BUDGET: Duration = Duration::from_secs(90);
/// A window task (workloads and faults, with their own deadlines) that runs longer than its
/// interval plus this is abandoned: its faults are reverted and the window recorded as is.
const WINDOW_OVERRUN: Duration = Duration::from_secs(300);

/// The per-window plans of the run's faults: targets resolved from selectors and the seed,
/// backends chosen, or the reason each will be SKIPPED.
struct FaultPlans<A> {
    active: BTreeMap<u32, Vec<Arc<ActiveFault<A>>>>,
    skipped: BTreeMap<u32, Vec<(ScenarioRecord, JournalEntry)>>,
    planned: Vec<PlannedFault>,
}

fn plan_faults<A: NodeApi + 'static>(
    config: &RunnerConfig,
    nodes: &[A],
    tag: &str,
) -> FaultPlans<A> {
    let names: Vec<String> = nodes.iter().map(|n| n.name().to_owned()).collect();
    let mut plans = FaultPlans {
        active: BTreeMap::new(),
        skipped: BTreeMap::new(),
        planned: Vec::new(),
    };
    for (k, scheduled) in config.schedule.faults().enumerate() {
        let spec = &scheduled.spec;
        // Each fault gets its own stream of the run's seed, so adding a fault never changes
        // the targets of another.
        let seed = config.seed ^ (0x9e37_79b9_7f4a_7c15u64.wrapping_mul(k as u64 + 1));
        let resolved = if spec.kind == FaultKind::Idle {
            Ok(faults::select::Targets {
                selector: "none".into(),
                nodes: Vec::new(),
                a: Vec::new(),
                b: Vec::new(),
                one_way: false,
            })
        } else {
            faults::select::resolve(&spec.targets, &names, seed).map_err(|e| e.to_string())
        };
        let choice = resolved.and_then(|targets| {
            let backend = faults::choose_backend(spec, &config.capabilities)?;
            let prefix = format!("{tag}.w{}.{k}", scheduled.window);
            let fault = faults::make::<A>(spec, &targets, backend, prefix, &config.capabilities)?;
            Ok((targets, backend, fault))
        });
        match choice {
            Ok((targets, backend, fault)) => {
                plans.planned.push(PlannedFault {
                    instance: scheduled.instance.clone(),
                    scenario: spec.name.clone(),
                    kind: spec.kind.as_str().to_owned(),
                    window: scheduled.window,
                    targets: targets.nodes.clone(),
                    backend: Some(backend.as_str().to_owned()),
                    skipped: None,
                });
                let active = Arc::new(ActiveFault::new(
                    scheduled.clone(),
                    targets,
                    names.clone(),
                    backend,
                    fault,
                ));
                plans
                    .active
                    .entry(scheduled.window)
                    .or_default()
                    .push(active);
            }
            Err(reason) => {
                plans.planned.push(PlannedFault {
                    instance: scheduled.instance.clone(),
                    scenario: spec.name.clone(),
                    kind: spec.kind.as_str().to_owned(),
                    window: scheduled.window,
                    targets: Vec::new(),
                    backend: None,
                    skipped: Some(reason.clone()),
                });
                let record = ScenarioRecord {
                    name: spec.name.clone(),
                    status: ScenarioStatus::Skipped {
                        reason: reason.clone(),
                    },
                    targets: Vec::new(),
                    exemptions: Vec::new(),
                    recovery: None,
                    // Its kind stays on record (a skipped restart keeps the recovery bar
                    // UNKNOWN); nothing was applied, so nothing was checked.
                    fault: Some(Box::new(soak_gates::model::FaultEvidence {
                        kind: spec.kind.as_str().to_owned(),
                        backend: String::new(),
                        applied_at_ms: None,
                        reverted_at_ms: None,
                        effective: soak_gates::model::Check::NotChecked {
                            reason: format!("skipped: {reason}"),
                        },
                        clean: soak_gates::model::Check::NotChecked {
                            reason: "skipped: nothing was applied".into(),
                        },
                        recoveries: Vec::new(),
                        heal: None,
                        cooling: None,
                        first_attempt: None,
                    })),
                };
                let entry = JournalEntry {
                    fault: scheduled.instance.clone(),
                    scenario: spec.name.clone(),
                    kind: spec.kind.as_str().to_owned(),
                    backend: String::new(),
                    window: scheduled.window,
                    targets: Vec::new(),
                    step: Step::Skipped,
                    of: None,
                    at_ms: 0,
                    evidence: serde_json::Value::Null,
                    detail: reason,
                };
                plans
                    .skipped
                    .entry(scheduled.window)
                    .or_default()
                    .push((record, entry));
            }
        }
    }
    // Windows a resumed run already has are not run again: their faults stay in the schedule
    // (`schedule.json` lists the whole run) but are neither registered nor skipped again.
    plans.active.retain(|&w, _| w >= config.first_window);
    plans.skipped.retain(|&w, _| w >= config.first_window);
    plans
}

/// Short, stable tag of a run for the ids of everything its faults create on nodes.
fn run_tag(run_id: &str) -> String {
    use sha2::Digest;
    let digest = sha2::Sha256::digest(run_id.as_bytes());
    format!("soak.{}", hex::encode(&digest[..4]))
}

/// Impairments of earlier soak runs still held by the fleet's nodes (ids `soak.*` not of this
/// run — and, for a resumed run, of its own interrupted segment too): removed before the first
/// window and reported.
async fn sweep_impairments<A: NodeApi>(nodes: &[A], tag: &str, resumed: bool) -> Vec<Residue> {
    let mut swept = Vec::new();
    for node in nodes {
        let Ok(list) = node.impairments().await else {
            continue;
        };
        for imp in list {
            let Some(id) = imp.id.clone() else { continue };
            let own = id.starts_with(tag);
            if id.starts_with("soak.") && (!own || resumed) {
                let removed = node.remove_impairment(&id).await.is_ok();
                let by = if own {
                    "left by this run's interrupted segment"
                } else {
                    "left by an earlier run"
                };
                swept.push(Residue {
                    node: node.name().to_owned(),
                    object: format!("impairment {id}"),
                    detail: if removed {
                        format!("{by}; removed before this run")
                    } else {
                        format!("{by}; could not be removed")
                    },
                    unverified: !removed,
                });
            }
        }
    }
    swept
}

/// The fleet's hosts, when the run plans host faults (tc, iptables, process control on hosts):
/// they are swept before the first window and audited after the teardown.
fn host_faults<A>(
    cx: &FaultCtx<A>,
    plans: &FaultPlans<A>,
) -> Option<Arc<dyn faults::control::HostAccess>> {
    let on_hosts = plans
        .planned
        .iter()
        .any(|f| matches!(f.backend.as_deref(), Some("tc" | "iptables" | "process")));
    if on_hosts { cx.control.hosts() } else { None }
}

fn node_names<A: NodeApi>(nodes: &[A]) -> Vec<String> {
    nodes.iter().map(|n| n.name().to_owned()).collect()
}

/// Impairments of this run still held after the teardown (any is a fault residue), or nodes
/// whose impairments could not be listed (unverified).
async fn audit_impairments<A: NodeApi>(nodes: &[A], tag: &str) -> Vec<Residue> {
    let lists = futures::future::join_all(nodes.iter().map(|n| n.impairments())).await;
    let mut found = Vec::new();
    for (node, list) in nodes.iter().zip(lists) {
        match list {
            Ok(list) => found.extend(
                list.into_iter()
                    .filter_map(|i| i.id)
                    .filter(|id| id.starts_with(tag))
                    .map(|id| Residue {
                        node: node.name().to_owned(),
                        object: format!("impairment {id}"),
                        detail: "still held after the teardown".into(),
                        unverified: false,
                    }),
            ),
            Err(err) => found.push(Residue {
                node: node.name().to_owned(),
                object: "impairments".into(),
                detail: format!("could not be listed after the run: {err}"),
                unverified: true,
            }),
        }
    }
    found
}

/// Pending sample rounds: one slot per node per stamp, emitted in stamp order once complete.
struct Rounds {
    nodes: Vec<String>,
    pending: BTreeMap<u64, Vec<Option<Sample>>>,
}

impl Rounds {
    fn open(&mut self, at_ms: u64) {
        let n = self.nodes.len();
        self.pending.entry(at_ms).or_insert_with(|| vec![None; n]);
    }

    fn fill(&mut self, node: usize, sample: Sample) {
        if let Some(slot) = self
            .pending
            .get_mut(&sample.at_ms)
            .and_then(|round| round.get_mut(node))
        {
            *slot = Some(sample);
        }
    }

    /// Complete rounds at the front, in stamp order.
    fn ready(&mut self) -> Vec<(u64, Vec<(String, Sample)>)> {
        let mut out = Vec::new();
        while let Some(entry) = self.pending.first_entry() {
            if entry.get().iter().any(Option::is_none) {
                break;
            }
            let (at, round) = entry.remove_entry();
            let samples = self
                .nodes
                .iter()
                .cloned()
                .zip(round.into_iter().flatten())
                .collect();
            out.push((at, samples));
        }
        out
    }
}

/// How far before a window's start its live verdict looks at samples (the epoch and gap
/// logic needs some history).
fn live_margin_ms(run: &RunInfo) -> u64 {
    run.sample_interval_ms.saturating_mul(10).max(30_000)
}

/// Drops what no live verdict will look at again: samples older than the margin before the
/// oldest window still to be told, and node events as old. This is what keeps the runner's
/// memory bounded by a window, however long the run (the proof has everything).
fn prune(observations: &mut Observations, oldest_open_ms: u64) -> usize {
    let keep_from = oldest_open_ms.saturating_sub(live_margin_ms(&observations.run));
    let mut held = 0;
    for series in observations.samples.values_mut() {
        let old = series.partition_point(|s| s.at_ms < keep_from);
        series.drain(..old);
        held += series.len();
    }
    observations.node_events.retain(|e| e.at_ms >= keep_from);
    held
}

/// The window's own verdict from the observations so far (its samples and record); the
/// soak-level adaptive policy is left to the final judgement.
fn live_verdict(
    profile: &Profile,
    observations: &Observations,
    record: &WindowRecord,
    so_far: &mut Outcome,
) -> WindowBrief {
    let from = record
        .start_ms
        .saturating_sub(live_margin_ms(&observations.run));
    let window_obs = Observations {
        run: observations.run.clone(),
        samples: observations
            .samples
            .iter()
            .map(|(node, series)| {
                let lo = series.partition_point(|s| s.at_ms < from);
                let hi = series.partition_point(|s| s.at_ms <= record.end_ms);
                (node.clone(), series[lo..hi.max(lo)].to_vec())
            })
            .collect(),
        windows: vec![record.clone()],
        residue: Vec::new(),
        node_events: observations
            .node_events
            .iter()
            .filter(|e| e.at_ms >= from && e.at_ms <= record.end_ms)
            .cloned()
            .collect(),
    };
    let verdict = soak_gates::evaluate(&window_obs, profile);
    let adaptive = profile.adaptive.as_ref().map(|a| a.id.clone());
    let Some(window) = verdict.windows.into_iter().next() else {
        return WindowBrief {
            verdict: Outcome::Unknown.as_str().to_owned(),
            so_far: so_far.as_str().to_owned(),
            bars: Vec::new(),
        };
    };
    brief_of(&window.bars, adaptive.as_deref(), record.warmup, so_far)
}

/// The live form of a judged window: its verdict over the bars that apply (the soak-level
/// adaptive policy left to the final judgement; no bar at all is UNKNOWN, never GO), the
/// verdict of the non-warm-up windows so far, and its non-GO bars. `soak run` and `soak watch`
/// show the same thing through it.
pub fn brief_of(
    bars: &[soak_gates::BarResult],
    adaptive: Option<&str>,
    warmup: bool,
    so_far: &mut Outcome,
) -> WindowBrief {
    let bars: Vec<_> = bars
        .iter()
        .filter(|b| Some(b.bar.as_str()) != adaptive && !b.not_applicable)
        .collect();
    let outcome = if bars.is_empty() {
        Outcome::Unknown
    } else {
        Outcome::worst_of(bars.iter().map(|b| b.verdict))
    };
    if !warmup {
        *so_far = so_far.worst(outcome);
    }
    WindowBrief {
        verdict: outcome.as_str().to_owned(),
        so_far: so_far.as_str().to_owned(),
        bars: bars
            .into_iter()
            .filter(|b| b.verdict != Outcome::Go)
            .map(|b| BarBrief {
                bar: b.bar.clone(),
                verdict: b.verdict.as_str().to_owned(),
                reason: b.reason.clone(),
                nodes: b.nodes.clone(),
            })
            .collect(),
    }
}

/// The fleet handles and control the runner drives.
pub struct Fleet<A> {
    /// Admin API handles, in fleet order.
    pub nodes: Vec<A>,
    /// Process control (restarts, signals).
    pub control: Arc<dyn NodeControl>,
    /// What happens to the nodes themselves (a process that exits on its own), as the fleet's
    /// supervisor sees it.
    pub down: Option<mpsc::UnboundedReceiver<NodeEvent>>,
}

/// Runs every window over the fleet, emitting events to `out`, until done or interrupted.
pub async fn run<A: NodeApi + 'static>(
    config: RunnerConfig,
    fleet: Fleet<A>,
    out: &mut Dispatch,
    signals: &mut Signals,
) -> RunReport {
    let nodes = Arc::new(fleet.nodes);
    let mut down_rx = fleet.down;
    let node_refs: Vec<NodeRef> = nodes
        .iter()
        .map(|n| NodeRef {
            name: n.name().to_owned(),
            peer_id: n.peer_id().to_owned(),
        })
        .collect();
    let mut observations = Observations {
        run: RunInfo {
            run_id: config.run_id.clone(),
            sample_interval_ms: u64::try_from(config.sample_interval.as_millis())
                .unwrap_or(u64::MAX),
            nodes: node_refs.clone(),
            inventory_hosts: config.inventory_hosts,
            planned_windows: Some(config.windows),
            window_ms: Some(u64::try_from(config.interval.as_millis()).unwrap_or(u64::MAX)),
            interruptions: Vec::new(),
        },
        samples: node_refs
            .iter()
            .map(|n| (n.name.clone(), Vec::new()))
            .collect::<BTreeMap<_, _>>(),
        windows: Vec::new(),
        residue: Vec::new(),
        node_events: Vec::new(),
    };
    out.emit(&RunEvent::RunStarted {
        run_id: config.run_id.clone(),
        nodes: node_refs.clone(),
        windows: config.windows,
        first_window: config.first_window,
        warmup_windows: config.warmup_windows,
        interval_ms: u64::try_from(config.interval.as_millis()).unwrap_or(u64::MAX),
        sample_interval_ms: observations.run.sample_interval_ms,
        proof_dir: config.proof_dir.clone(),
        at_ms: now_ms(),
    });

    let (tx, mut rx) = mpsc::unbounded_channel::<WorkerMsg>();
    let journal: Arc<dyn Journal> = Arc::new(ChannelJournal(tx.clone()));
    let tag = run_tag(&config.run_id);
    let cx = Arc::new(FaultCtx {
        nodes: Arc::clone(&nodes),
        control: fleet.control,
        lease: config.fault_lease,
        tag: tag.clone(),
        probe_timeout: config.request_timeout.min(Duration::from_secs(2)),
    });
    let registry: Arc<FaultRegistry<A>> = Arc::new(FaultRegistry::default());
    let mut plans = plan_faults(&config, &nodes, &tag);
    let faults_scheduled = !plans.planned.is_empty();
    if faults_scheduled {
        out.emit(&RunEvent::FaultSchedule {
            faults: plans.planned.clone(),
        });
        for f in plans.active.values().flatten() {
            registry.register(Arc::clone(f));
            out.emit(&RunEvent::Fault {
                entry: f.planned_entry(),
            });
        }
        let mut swept = sweep_impairments(&nodes, &tag, config.first_window > 0).await;
        if let Some(hosts) = host_faults(&cx, &plans) {
            swept.extend(faults::hosted::sweep_hosts(hosts.as_ref(), &node_names(&nodes)).await);
        }
        out.emit(&RunEvent::FaultResidue {
            swept,
            found: Vec::new(),
        });
    }
    let workloads: Vec<Arc<dyn Workload<A>>> = config
        .workloads
        .iter()
        .filter_map(|w| pipeline::workload::<A>(w, config.phase_a, &config.fanout))
        .collect();

    // One sampler per node: one request in flight each, FIFO, so a slow or stopped node never
    // delays the others, and its samples come back late-as-missing, in stamp order.
    let samplers: Vec<NodeSampler> = nodes
        .iter()
        .enumerate()
        .map(|(i, _)| {
            let (nodes, tx) = (Arc::clone(&nodes), tx.clone());
            NodeSampler::spawn(
                nodes,
                i,
                config.sample_interval,
                config.request_timeout,
                move |node, sample| {
                    let _ = tx.send(WorkerMsg::Sample { node, sample });
                },
            )
        })
        .collect();
    let mut rounds = Rounds {
        nodes: node_refs.iter().map(|n| n.name.clone()).collect(),
        pending: BTreeMap::new(),
    };
    let request_round = |rounds: &mut Rounds, at_ms: u64| {
        rounds.open(at_ms);
        for sampler in &samplers {
            sampler.request(SampleRequest { at_ms });
        }
    };

    let mut workers: JoinSet<()> = JoinSet::new();
    let mut sample_tick = tokio::time::interval(config.sample_interval);
    sample_tick.set_missed_tick_behavior(MissedTickBehavior::Delay);
    let mut so_far = Outcome::Go;
    // Ended windows waiting for their closing samples before their verdict is told.
    let mut closing: VecDeque<(WindowRecord, u64)> = VecDeque::new();

    let run_start_ms = now_ms();
    request_round(&mut rounds, run_start_ms);
    sample_tick.reset();
    let spawn = SpawnWindow {
        config: &config,
        nodes: &nodes,
        cx: &cx,
        registry: &registry,
        journal: &journal,
        workloads: &workloads,
        tx: &tx,
    };
    let mut window = spawn.start(
        config.first_window,
        run_start_ms,
        tokio::time::Instant::now() + config.interval,
        &mut plans,
        &mut workers,
        out,
    );
    let mut window_due = false;
    let mut last_boundary_ms = None;
    let status = loop {
        tokio::select! {
            biased;
            signal = signals.recv() => {
                out.emit(&RunEvent::Signal { signal: signal.to_owned(), at_ms: now_ms() });
                break RunStatus::Interrupted;
            }
            Some(msg) = rx.recv() => match msg {
                WorkerMsg::Journal(entry, ack) => {
                    out.emit(&RunEvent::Fault { entry: *entry });
                    let _ = ack.send(Ok(()));
                }
                WorkerMsg::Sample { node, sample } => {
                    rounds.fill(node, sample);
                    flush_rounds(&mut rounds, &mut observations, &mut closing, &config, &mut so_far, out);
                    let oldest = closing.front().map_or(window.start_ms, |(r, _)| r.start_ms);
                    prune(&mut observations, oldest);
                }
                WorkerMsg::Report(report) => {
                    absorb_report(*report, &mut window, out);
                }
                WorkerMsg::WindowDone { window: index } => {
                    if index == window.index {
                        window.done = true;
                    }
                }
            },
            Some(event) = async { match down_rx.as_mut() { Some(rx) => rx.recv().await, None => None } } => {
                // Judged with the run (causes), so `soak run`'s verdict equals a re-score.
                observations.node_events.push(event.clone());
                out.emit(&RunEvent::NodeEvent(event));
            }
            _ = sample_tick.tick() => {
                request_round(&mut rounds, now_ms());
            }
            () = tokio::time::sleep_until(window.deadline), if !window_due => {
                window_due = true;
            }
            Some(joined) = workers.join_next() => {
                if let Err(err) = joined
                    && err.is_panic()
                {
                    out.emit(&RunEvent::Error { message: format!("a window task panicked: {err}") });
                    // Its faults are reverted by a task of their own (the journal needs this
                    // loop), and the window is closed with what it reported.
                    let (cx, journal, registry) = (Arc::clone(&cx), Arc::clone(&journal), Arc::clone(&registry));
                    let (tx, index) = (tx.clone(), window.index);
                    workers.spawn(async move {
                        registry.teardown(&cx, journal.as_ref(), TEARDOWN_BUDGET).await;
                        let _ = tx.send(WorkerMsg::WindowDone { window: index });
                    });
                }
            }
        }
        if window_due && window.done {
            window_due = false;
            let next_index = window.index + 1;
            // Windows keep a fixed cadence unless a window overran.
            let next_deadline = (window.deadline + config.interval)
                .max(tokio::time::Instant::now() + config.interval / 2);
            let boundary_ms = now_ms();
            let finished = std::mem::replace(
                &mut window,
                WindowAcc::new(next_index, boundary_ms, next_deadline),
            );
            let planned = planned_names(&config, &plans, finished.index);
            let record = finished.into_record(boundary_ms, config.warmup_windows, &planned);
            // The window is told (and stored) once its closing samples are in.
            closing.push_back((record, boundary_ms));
            request_round(&mut rounds, boundary_ms);
            if next_index >= config.windows {
                last_boundary_ms = Some(boundary_ms);
                break RunStatus::Completed;
            }
            sample_tick.reset();
            window = spawn.start(
                next_index,
                boundary_ms,
                next_deadline,
                &mut plans,
                &mut workers,
                out,
            );
        }
    };

    // Stop starting work: window tasks are abandoned (only when interrupted; a completed run
    // has none left) — their faults stay registered and the teardown reverts them.
    workers.abort_all();
    while workers.join_next().await.is_some() {}
    let teardown = registry.teardown(&cx, journal.as_ref(), TEARDOWN_BUDGET);
    tokio::pin!(teardown);
    loop {
        tokio::select! {
            () = &mut teardown => break,
            Some(msg) = rx.recv() => match msg {
                WorkerMsg::Journal(entry, ack) => {
                    out.emit(&RunEvent::Fault { entry: *entry });
                    let _ = ack.send(Ok(()));
                }
                WorkerMsg::Sample { node, sample } => {
                    rounds.fill(node, sample);
                    flush_rounds(&mut rounds, &mut observations, &mut closing, &config, &mut so_far, out);
                }
                WorkerMsg::Report(report) => absorb_report(*report, &mut window, out),
                WorkerMsg::WindowDone { .. } => {}
            },
            // A second signal does not skip the teardown: faults must not outlive the run.
            signal = signals.recv() => {
                out.emit(&RunEvent::Error {
                    message: format!("{signal} during the fault teardown: reverting first (bounded by {} s)", TEARDOWN_BUDGET.as_secs()),
                });
            }
        }
    }
    if faults_scheduled {
        let mut found = audit_impairments(&nodes, &tag).await;
        if let Some(hosts) = host_faults(&cx, &plans) {
            found.extend(faults::hosted::audit_hosts(hosts.as_ref(), &node_names(&nodes)).await);
        }
        observations.residue = found.clone();
        out.emit(&RunEvent::FaultResidue {
            swept: Vec::new(),
            found,
        });
    }
    let final_ms = last_boundary_ms.unwrap_or_else(now_ms);
    if status == RunStatus::Interrupted {
        // The partial window is kept: its faults as the teardown left them, its unfinished
        // scenarios recorded as skipped.
        for f in plans.active.get(&window.index).into_iter().flatten() {
            if !window
                .scenarios
                .iter()
                .any(|s| s.name == f.scheduled.spec.name)
            {
                window.scenarios.push(f.record());
            }
        }
        let planned = planned_names(&config, &plans, window.index);
        let record = window.into_record(final_ms, config.warmup_windows, &planned);
        closing.push_back((record, final_ms));
        request_round(&mut rounds, final_ms);
    }
    // Final samples close the last window's deltas (every node answers, late or missing,
    // within the request bound). A second signal skips them.
    loop {
        if closing.is_empty() && rounds.pending.is_empty() {
            break;
        }
        tokio::select! {
            Some(msg) = rx.recv() => match msg {
                WorkerMsg::Sample { node, sample } => {
                    rounds.fill(node, sample);
                    flush_rounds(&mut rounds, &mut observations, &mut closing, &config, &mut so_far, out);
                }
                WorkerMsg::Journal(entry, ack) => {
                    out.emit(&RunEvent::Fault { entry: *entry });
                    let _ = ack.send(Ok(()));
                }
                WorkerMsg::Report(_) | WorkerMsg::WindowDone { .. } => {}
            },
            signal = signals.recv() => {
                out.emit(&RunEvent::Signal { signal: signal.to_owned(), at_ms: now_ms() });
                break;
            }
        }
    }
    // Windows whose closing samples never came (second signal) are still stored and judged.
    while let Some((record, _)) = closing.pop_front() {
        out.emit(&RunEvent::WindowEnded {
            record,
            verdict: None,
        });
    }
    // Exits the supervisor saw while the run was closing are judged too (from the proof).
    if let Some(rx) = down_rx.as_mut() {
        while let Ok(event) = rx.try_recv() {
            out.emit(&RunEvent::NodeEvent(event));
        }
    }
    drop(samplers);
    RunReport { status }
}

/// Names of the scenarios window `index` plans (workloads, then its faults).
fn planned_names<A>(config: &RunnerConfig, plans: &FaultPlans<A>, index: u32) -> Vec<String> {
    let mut names = config.workloads.clone();
    names.extend(
        config
            .schedule
            .windows
            .get(index as usize)
            .into_iter()
            .flat_map(|w| w.faults.iter().map(|f| f.spec.name.clone())),
    );
    let _ = plans;
    names
}

fn absorb_report(report: ScenarioReport, window: &mut WindowAcc, out: &mut Dispatch) {
    if let Some((result, wall)) = &report.phase_a {
        out.emit(&RunEvent::PhaseAFinished {
            window: report.window,
            summary: summarize_phase_a(result, *wall),
        });
    }
    if report.record.name == "fanout_burst" {
        out.emit(&RunEvent::FanoutFinished {
            window: report.window,
            result: report.fanout.clone(),
        });
    }
    out.emit(&RunEvent::Scenario {
        window: report.window,
        record: report.record.clone(),
    });
    if report.window == window.index {
        if let Some((result, _)) = report.phase_a {
            window.phase_a = Some(result);
        }
        if report.fanout.is_some() {
            window.fanout = report.fanout;
        }
        window.scenarios.push(report.record);
    }
}

/// Emits every complete sample round in stamp order, then every ended window whose closing
/// round is in, with its live verdict.
fn flush_rounds(
    rounds: &mut Rounds,
    observations: &mut Observations,
    closing: &mut VecDeque<(WindowRecord, u64)>,
    config: &RunnerConfig,
    so_far: &mut Outcome,
    out: &mut Dispatch,
) {
    for (at_ms, samples) in rounds.ready() {
        for (node, sample) in &samples {
            let series = observations.samples.entry(node.clone()).or_default();
            let at = series.partition_point(|s| s.at_ms <= sample.at_ms);
            series.insert(at, sample.clone());
        }
        out.emit(&RunEvent::Samples {
            at_ms,
            took_ms: 0,
            samples,
        });
        while let Some((_, boundary)) = closing.front() {
            if *boundary > at_ms {
                break;
            }
            let Some((record, _)) = closing.pop_front() else {
                break;
            };
            let verdict = config
                .profile
                .as_ref()
                .map(|p| live_verdict(p, observations, &record, so_far));
            out.emit(&RunEvent::WindowEnded { record, verdict });
        }
    }
}

/// What starting a window needs from the run.
struct SpawnWindow<'a, A> {
    config: &'a RunnerConfig,
    nodes: &'a Arc<Vec<A>>,
    cx: &'a Arc<FaultCtx<A>>,
    registry: &'a Arc<FaultRegistry<A>>,
    journal: &'a Arc<dyn Journal>,
    workloads: &'a [Arc<dyn Workload<A>>],
    tx: &'a mpsc::UnboundedSender<WorkerMsg>,
}

impl<A: NodeApi + 'static> SpawnWindow<'_, A> {
    #[allow(clippy::too_many_arguments)]
    fn start(
        &self,
        index: u32,
        start_ms: u64,
        deadline: tokio::time::Instant,
        plans: &mut FaultPlans<A>,
        workers: &mut JoinSet<()>,
        out: &mut Dispatch,
    ) -> WindowAcc {
        let acc = WindowAcc::new(index, start_ms, deadline);
        out.emit(&RunEvent::WindowStarted {
            window: index,
            warmup: index < self.config.warmup_windows,
            at_ms: start_ms,
        });
        let faults = plans.active.remove(&index).unwrap_or_default();
        let mut skipped = plans.skipped.remove(&index).unwrap_or_default();
        for (_, entry) in &mut skipped {
            entry.at_ms = start_ms;
        }
        // While a partition holds, the burst is published from its first side (the far side
        // is exempt from the fanout bar: it cannot hear it while cut).
        let near_side: Option<Vec<usize>> = faults
            .iter()
            .find(|f| f.scheduled.spec.kind == FaultKind::Partition)
            .map(|f| self.cx.indices(&f.targets.a));
        // Nodes a pause holds unresponsive sit the burst out (and never publish it).
        let unavailable: Vec<usize> = faults
            .iter()
            .filter(|f| f.scheduled.spec.kind == FaultKind::Pause)
            .flat_map(|f| self.cx.indices(&f.targets.nodes))
            .collect();
        let pool: Vec<usize> = near_side
            .filter(|side| !side.is_empty())
            .unwrap_or_else(|| (0..self.nodes.len()).collect())
            .into_iter()
            .filter(|i| !unavailable.contains(i))
            .collect();
        // Each window draws from its own stream of the run's seed, so a resumed run picks the
        // publishers an uninterrupted one would have.
        let rng = &mut StdRng::seed_from_u64(
            self.config.seed ^ 0x5851_f42d_4c95_7f2du64.wrapping_mul(u64::from(index) + 1),
        );
        let publishers: Vec<usize> = if pool.is_empty() {
            Vec::new()
        } else {
            let count = self.config.burst_publishers.clamp(1, pool.len());
            let mut picked: Vec<usize> = sample_indices(rng, pool.len(), count)
                .into_iter()
                .map(|i| pool[i])
                .collect();
            picked.sort_unstable();
            picked
        };
        let added_delay = faults
            .iter()
            .filter(|f| f.scheduled.spec.kind == FaultKind::Delay)
            .map(|f| Duration::from_millis(f.scheduled.spec.delay_ms + f.scheduled.spec.jitter_ms))
            .max()
            .unwrap_or_default();
        let window = WindowCx {
            index,
            publishers,
            topic: format!("fanout-w{index}-{:08x}", rand::rng().next_u32()),
            unavailable,
            added_delay,
        };
        let plan = WindowPlan {
            index,
            start: tokio::time::Instant::now(),
            faults: faults.clone(),
            skipped,
        };
        let (cx, journal, registry) = (
            Arc::clone(self.cx),
            Arc::clone(self.journal),
            Arc::clone(self.registry),
        );
        let workloads = self.workloads.to_vec();
        let tx = self.tx.clone();
        let budget = self.config.interval + WINDOW_OVERRUN;
        workers.spawn(async move {
            let sink_tx = tx.clone();
            let sink: pipeline::ReportSink = Arc::new(move |report| {
                let _ = sink_tx.send(WorkerMsg::Report(Box::new(report)));
            });
            let ran = tokio::time::timeout(
                budget,
                pipeline::run_window(
                    plan,
                    Arc::clone(&cx),
                    workloads,
                    window,
                    Arc::clone(&journal),
                    Arc::clone(&sink),
                ),
            )
            .await;
            if ran.is_err() {
                // Overran its budget: revert what it held, record its faults as they are.
                for f in &faults {
                    f.end(&cx, journal.as_ref()).await;
                    sink(ScenarioReport {
                        window: index,
                        record: f.record(),
                        phase_a: None,
                        fanout: None,
                        publishers: Vec::new(),
                    });
                }
                let _ = registry;
            }
            let _ = tx.send(WorkerMsg::WindowDone { window: index });
        });
        acc
    }
}

#[cfg(test)]
mod tests {
    use std::sync::{Arc, Mutex};

    use soak_gates::model::SampleOutcome;
    use soak_scenarios::fake::{FakeMesh, Fault};

    use super::*;
    use crate::runner::reporter::Reporter;

    /// Records every event it sees (kind names in order).
    struct Recorder(Arc<Mutex<Vec<RunEvent>>>);

    impl Reporter for Recorder {
        fn name(&self) -> &'static str {
            "recorder"
        }
        fn report(&mut self, event: &RunEvent) -> Result<(), String> {
            self.0
                .lock()
                .map_err(|e| e.to_string())?
                .push(event.clone());
            Ok(())
        }
    }

    fn config(windows: u32) -> RunnerConfig {
        RunnerConfig {
            run_id: "test".into(),
            proof_dir: "proof".into(),
            windows,
            first_window: 0,
            warmup_windows: 1,
            interval: Duration::from_millis(600),
            sample_interval: Duration::from_millis(150),
            workloads: vec!["baseline".into(), "fanout_burst".into()],
            phase_a: PhaseAConfig::default(),
            fanout: FanoutConfig {
                messages: 10,
                rate_per_sec: 1_000.0,
                join_timeout: Duration::from_millis(10),
                collect_timeout: Duration::from_millis(200),
                poll: Duration::from_millis(5),
                ..FanoutConfig::default()
            },
            burst_publishers: 2,
            seed: 7,
            inventory_hosts: None,
            schedule: Schedule {
                windows: vec![Default::default(); windows as usize],
            },
            capabilities: Capabilities::default(),
            fault_lease: Duration::from_secs(5),
            request_timeout: Duration::from_secs(2),
            profile: Profile::builtin("broad-launch").ok(),
        }
    }

    /// The evidence a run streamed to its reporters: window records and every node's samples.
    fn streamed(events: &[RunEvent]) -> (Vec<WindowRecord>, BTreeMap<String, Vec<Sample>>) {
        let mut windows = Vec::new();
        let mut samples: BTreeMap<String, Vec<Sample>> = BTreeMap::new();
        for event in events {
            match event {
                RunEvent::WindowEnded { record, .. } => windows.push(record.clone()),
                RunEvent::Samples { samples: round, .. } => {
                    for (node, sample) in round {
                        samples
                            .entry(node.clone())
                            .or_default()
                            .push(sample.clone());
                    }
                }
                _ => {}
            }
        }
        (windows, samples)
    }

    fn fleet(mesh: &FakeMesh) -> Fleet<soak_scenarios::fake::FakeNode> {
        Fleet {
            nodes: mesh.nodes(),
            control: Arc::new(soak_scenarios::faults::control::NoControl("fake".into())),
            down: None,
        }
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn windows_carry_matrix_fanout_and_boundary_samples() {
        let mesh = FakeMesh::new(4);
        let events = Arc::new(Mutex::new(Vec::new()));
        let mut dispatch = Dispatch::new();
        dispatch.add(Box::new(Recorder(Arc::clone(&events))));
        let mut signals = Signals::install().expect("signals");
        let report = run(config(2), fleet(&mesh), &mut dispatch, &mut signals).await;

        assert_eq!(report.status, RunStatus::Completed);
        let (windows, samples) = streamed(&events.lock().expect("events"));
        let windows = &windows;
        assert_eq!(windows.len(), 2);
        assert!(windows[0].warmup && !windows[1].warmup);
        for window in windows {
            let phase_a = window.phase_a.as_ref().expect("phase A ran");
            assert_eq!(phase_a.pairs.len(), 12);
            assert!(phase_a.pairs.iter().all(|p| p.delivered));
            let fanout = window.fanout.as_ref().expect("fanout ran");
            assert_eq!(fanout.publishers.len(), 2);
            assert!(fanout.subscribers.iter().all(|s| s.received == 10));
            assert_eq!(window.scenarios.len(), 2);
            // Windows keep a fixed cadence on the monotonic clock, so a window that starts a
            // little late (the previous boundary was handled under load) ends on time and spans
            // slightly less than the interval in wall-clock terms; allow that scheduling slack.
            assert!(window.end_ms + 100 >= window.start_ms + 600);
            // Every node has a sample stamped exactly at both boundaries.
            for series in samples.values() {
                assert!(series.iter().any(|s| s.at_ms == window.start_ms));
                assert!(series.iter().any(|s| s.at_ms == window.end_ms));
                assert!(series.windows(2).all(|w| w[0].at_ms <= w[1].at_ms));
            }
        }
        assert_eq!(windows[1].start_ms, windows[0].end_ms);

        let events = events.lock().expect("events");
        assert!(matches!(events.first(), Some(RunEvent::RunStarted { .. })));
        // A window is told once its closing samples are in, with its verdict.
        assert!(matches!(
            events.last(),
            Some(RunEvent::WindowEnded {
                verdict: Some(_),
                ..
            })
        ));
        assert!(matches!(events[events.len() - 2], RunEvent::Samples { .. }));
        let ended = events
            .iter()
            .filter(|e| matches!(e, RunEvent::WindowEnded { .. }))
            .count();
        assert_eq!(ended, 2);
    }

    /// Regression: the runner kept every sample of the run in memory (24 h × 100 nodes is
    /// millions of samples); it now holds only what the live verdicts still need.
    #[test]
    fn retained_samples_do_not_grow_with_the_run() {
        let mut observations = Observations {
            run: RunInfo {
                run_id: "r".into(),
                sample_interval_ms: 1_000,
                nodes: Vec::new(),
                inventory_hosts: None,
                planned_windows: None,
                window_ms: None,
                interruptions: Vec::new(),
            },
            samples: BTreeMap::new(),
            windows: Vec::new(),
            residue: Vec::new(),
            node_events: Vec::new(),
        };
        let missing = |at_ms| Sample {
            at_ms,
            outcome: SampleOutcome::Missing { error: "x".into() },
        };
        let mut peaks = Vec::new();
        // Two nodes, one sample a second, a window every 60 s, for 2 h: the held samples stay
        // at one window plus the 30 s margin whether the run is 10 or 120 windows old.
        let mut held = 0;
        for t in 0..7_200u64 {
            for node in ["a", "b"] {
                let series = observations.samples.entry(node.into()).or_default();
                series.push(missing(t * 1_000));
            }
            if t % 60 == 59 {
                held = prune(&mut observations, (t + 1) * 1_000);
            }
            if t == 600 || t == 7_199 {
                peaks.push(held);
            }
        }
        assert_eq!(peaks[0], peaks[1], "{peaks:?}");
        assert!(peaks[1] <= 2 * 31, "{peaks:?}");
        // The oldest sample kept is the margin before the window still open.
        assert_eq!(observations.samples["a"][0].at_ms, 7_200_000 - 30_000);
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn dead_node_shows_as_missing_samples_and_failed_pairs() {
        let mesh = FakeMesh::new(3);
        mesh.set_fault(1, Fault::Dead);
        let events = Arc::new(Mutex::new(Vec::new()));
        let mut dispatch = Dispatch::new();
        dispatch.add(Box::new(Recorder(Arc::clone(&events))));
        let mut signals = Signals::install().expect("signals");
        run(config(1), fleet(&mesh), &mut dispatch, &mut signals).await;
        let (windows, samples) = streamed(&events.lock().expect("events"));
        let samples = &samples["node-1"];
        assert!(!samples.is_empty());
        assert!(
            samples
                .iter()
                .all(|s| matches!(s.outcome, SampleOutcome::Missing { .. }))
        );
        let phase_a = windows[0].phase_a.as_ref().expect("phase A");
        let failed: Vec<_> = phase_a.pairs.iter().filter(|p| !p.delivered).collect();
        assert_eq!(failed.len(), 4);
        assert!(
            failed
                .iter()
                .all(|p| p.from == "node-1" || p.to == "node-1")
        );
        // Fanout could not subscribe node-1: recorded as failed, never completed.
        let fanout = windows[0]
            .scenarios
            .iter()
            .find(|s| s.name == "fanout_burst")
            .expect("fanout record");
        assert!(matches!(fanout.status, ScenarioStatus::Failed { .. }));
    }
}
