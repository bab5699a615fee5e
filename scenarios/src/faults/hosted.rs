//! Host faults as nemesis faults: partitions through iptables/ip6tables chains, bandwidth caps
//! and netem delay/loss through `tc`, and pauses (SIGSTOP/SIGCONT of the deploy's recorded pid)
//! on the hosts of an SSH fleet, each armed with its host-local dead-man's switch
//! ([`super::host`]'s backends, reached through [`HostAccess`]).
//!
//! Per fault and host: a snapshot of the host's own rules and qdiscs, then the change with its
//! guard armed first (lease from the fleet, renewed every lease/3 while the fault holds). Every
//! step is proven twice — on the host and through the overlay:
//!
//! | kind | effective (host) | effective (overlay) | clean |
//! |---|---|---|---|
//! | partition | DROP counters of our rules rose on every host | DMs across the cut fail, within the sides they deliver | our chains, jumps and rules gone, host identical to its snapshot; every disturbed pair delivers again (heal time) |
//! | bandwidth | our tbf band's counters rose | a DM burst to the target runs below the cap | qdiscs gone, host identical; the burst runs above the cap again |
//! | delay / loss | our netem band's counters rose | probe round trips rose (delay) | qdiscs gone, host identical; probes acknowledged |
//! | pause | the recorded pid is in state `T` | `/healthz` does not answer | the pid runs again, host identical; `/healthz` answers |
//!
//! A host that stops answering while the fault holds (SSH loss, a cut link) makes the fault's
//! evidence unverifiable (UNKNOWN): its guard reverts the fault on the host when the lease runs
//! out. The revert and the clean check wait for the host (reconnecting) until one lease plus
//! [`RECONNECT_GRACE`] after they began, then record what the host shows — the guard's own result
//! included. A guard found gone at renewal means: revert now.

use std::collections::{BTreeMap, BTreeSet};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use futures::StreamExt;
use serde_json::{Value, json};
use soak_gates::model::{Check, FaultEvidence, HealCheck, Residue};
use soak_inventory::remote::Remote;

use super::control::HostAccess;
use super::host::{
    self, Applied, ErrorClass, HostFault, HostFaultError, HostFaultPlan, HostResidue, HostSnapshot,
    Limiter, Member, Netem, Peer, Reverted, Shaping, partition,
};
use super::nemesis::{Fault, FaultCtx, FaultError, FaultFuture, WorkloadsOutcome};
use super::probe::{self, DmProbe};
use super::select::Targets;
use super::spec::{FaultKind, FaultSpec};
use crate::api::NodeApi;

/// After a lost host's lease, how long the revert and clean check keep waiting for it.
pub const RECONNECT_GRACE: Duration = Duration::from_secs(15);
/// How long the host counters and overlay probes get to show the effect.
const EFFECT_DEADLINE: Duration = Duration::from_secs(12);
/// How long a partition may take to heal (as for node impairments).
const HEAL_DEADLINE: Duration = Duration::from_secs(60);
/// How long a continued node gets to answer `/healthz`.
const RESUME_DEADLINE: Duration = Duration::from_secs(10);
/// Throughput probe: DMs of this size, sent one after another.
const BURST_BYTES: usize = 16 * 1024;
/// Throughput probe: this many DMs.
const BURST_DMS: usize = 6;
/// Hosts worked on at once by a sweep or an audit.
const PARALLEL: usize = 16;

/// One host's part of a fault.
struct Slot {
    node: String,
    plan: HostFaultPlan,
    before: Option<HostSnapshot>,
    applied: Option<Applied>,
    reverted: Option<Reverted>,
    /// Why the host's part became unverifiable while it held (unreachable, guard gone).
    lost: Option<String>,
}

/// A host fault (partition, bandwidth, delay, loss, pause) on an SSH fleet.
pub struct HostedFault {
    spec: FaultSpec,
    targets: Targets,
    token: String,
    slots: tokio::sync::Mutex<Vec<Slot>>,
    /// The task renewing the guards every guard-lease/3 from the apply to the revert: on its
    /// own, not through the nemesis' renewals, which wait while a lifecycle step (a long
    /// effect check) runs.
    renewer: Mutex<Option<tokio::task::JoinHandle<()>>>,
    /// Hosts the renewer found lost while the fault held (unreachable, guard gone), and why.
    lost_while_held: Arc<Mutex<BTreeMap<String, String>>>,
    /// When the revert and clean check stop waiting for lost hosts.
    give_up_at: Mutex<Option<Instant>>,
    /// DM burst throughput to the target before the cap, bytes/s.
    baseline_bps: Mutex<Option<f64>>,
    /// Probe round trip before a delay, µs.
    baseline_rtt_us: Mutex<Option<u64>>,
    heal: Mutex<Option<HealCheck>>,
}

/// A guard token from a fault's id prefix (`soak.1a2b3c4d.w3.0` → `soak-1a2b3c4d-w3-0`).
pub fn token_of(prefix: &str) -> String {
    let mut token: String = prefix
        .chars()
        .map(|c| {
            if c.is_ascii_alphanumeric() || c == '_' || c == '-' {
                c
            } else {
                '-'
            }
        })
        .collect();
    token.truncate(64);
    if token.is_empty() {
        token.push_str("soak");
    }
    token
}

/// The run id as firewall comments and guard journals may carry it.
fn run_tag(run_id: &str) -> String {
    let mut tag: String = run_id
        .chars()
        .map(|c| {
            if c.is_ascii_alphanumeric() || matches!(c, '.' | '_' | '-' | ':') {
                c
            } else {
                '-'
            }
        })
        .collect();
    tag.truncate(128);
    if tag.is_empty() {
        tag.push_str("run");
    }
    tag
}

fn lock<T>(m: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    match m.lock() {
        Ok(g) => g,
        Err(poisoned) => poisoned.into_inner(),
    }
}

/// An overlay clean check with nothing to probe shows nothing: never a vacuous "clean".
fn nothing_probed(why: &str) -> Check {
    Check::NotShown {
        summary: why.to_owned(),
        evidence: Value::Null,
    }
}

fn probe_json(probes: &[DmProbe]) -> Value {
    serde_json::to_value(probes).unwrap_or(Value::Null)
}

/// The cap of a bandwidth fault in bytes per second.
fn cap_bps(kbit: u64) -> f64 {
    kbit as f64 * 1000.0 / 8.0
}

/// Bytes per second of a burst of [`BURST_DMS`] DMs of [`BURST_BYTES`] `from → to`, sent one
/// after another (only acknowledged bytes count), and the probes.
async fn burst_bps<A: NodeApi>(from: &A, to: &A) -> (f64, Vec<DmProbe>) {
    let payload = vec![0x5a; BURST_BYTES];
    let started = Instant::now();
    let mut probes = Vec::new();
    for _ in 0..BURST_DMS {
        probes.push(probe::dm_payload(from, to, &payload, Duration::from_secs(10)).await);
    }
    let acked = probes.iter().filter(|p| p.acked).count();
    let secs = started.elapsed().as_secs_f64().max(1e-3);
    ((acked * BURST_BYTES) as f64 / secs, probes)
}

impl HostedFault {
    /// A host fault of `spec` on `targets`; `prefix` (the fault's id prefix) makes its token.
    pub fn new(spec: FaultSpec, targets: Targets, prefix: &str) -> Self {
        HostedFault {
            spec,
            targets,
            token: token_of(prefix),
            slots: tokio::sync::Mutex::new(Vec::new()),
            renewer: Mutex::new(None),
            lost_while_held: Arc::default(),
            give_up_at: Mutex::new(None),
            baseline_bps: Mutex::new(None),
            baseline_rtt_us: Mutex::new(None),
            heal: Mutex::new(None),
        }
    }

    /// What to do on which host (pure, from the targets and the fleet's hosts).
    fn host_faults(
        &self,
        access: &dyn HostAccess,
        names: &[String],
    ) -> Result<Vec<(String, HostFault)>, String> {
        let node = |name: &str| {
            access
                .node(name)
                .ok_or_else(|| format!("node `{name}` has no host in this fleet"))
        };
        let peer = |name: &str| {
            node(name).map(|h| Peer {
                name: name.to_owned(),
                address: h.overlay,
                port: h.port,
            })
        };
        let mut out = Vec::new();
        match self.spec.kind {
            FaultKind::Partition => {
                let member = |name: &String| {
                    node(name).map(|h| Member {
                        name: name.clone(),
                        addresses: vec![h.overlay],
                        port: h.port,
                    })
                };
                let a = self
                    .targets
                    .a
                    .iter()
                    .map(member)
                    .collect::<Result<Vec<_>, _>>()?;
                let b = self
                    .targets
                    .b
                    .iter()
                    .map(member)
                    .collect::<Result<Vec<_>, _>>()?;
                let mut rules: BTreeMap<String, BTreeSet<partition::PartitionRule>> =
                    BTreeMap::new();
                let per_host = if self.targets.one_way {
                    let mut all = BTreeMap::new();
                    for from in &a {
                        for to in &b {
                            for (h, r) in partition::one_way(from, to) {
                                all.entry(h).or_insert_with(Vec::new).extend(r);
                            }
                        }
                    }
                    all
                } else {
                    partition::halves(&a, &b)
                };
                for (h, r) in per_host {
                    rules.entry(h).or_default().extend(r);
                }
                for (h, r) in rules {
                    out.push((
                        h,
                        HostFault::Partition {
                            rules: r.into_iter().collect(),
                        },
                    ));
                }
            }
            FaultKind::Bandwidth => {
                // Every other host's overlay traffic to the targets goes through a tbf: the
                // targets' inbound overlay traffic is capped (per sending host).
                let kbit = self.spec.rate_kbit;
                let burst = u32::try_from((kbit * 1000 / 8 / 50).max(3000)).unwrap_or(u32::MAX);
                let peers = self
                    .targets
                    .nodes
                    .iter()
                    .map(|t| peer(t))
                    .collect::<Result<Vec<_>, _>>()?;
                for name in names.iter().filter(|n| !self.targets.nodes.contains(n)) {
                    node(name)?;
                    out.push((
                        name.clone(),
                        HostFault::Shape {
                            peers: peers.clone(),
                            shaping: Shaping::Rate {
                                kbit,
                                burst_bytes: burst,
                                latency_ms: 200,
                                limiter: Limiter::Tbf,
                            },
                        },
                    ));
                }
            }
            FaultKind::Delay | FaultKind::Loss => {
                // The targets' outgoing overlay traffic to every peer, as the node backend does.
                // The spec's jitter is added on top of the delay (delay ..= delay + jitter);
                // netem's is ± around its delay: centre it.
                let netem = Netem {
                    delay_ms: u32::try_from(self.spec.delay_ms + self.spec.jitter_ms / 2)
                        .unwrap_or(u32::MAX),
                    jitter_ms: u32::try_from(self.spec.jitter_ms / 2).unwrap_or(u32::MAX),
                    loss_pct: self.spec.loss * 100.0,
                    ..Netem::default()
                };
                for t in &self.targets.nodes {
                    let peers = names
                        .iter()
                        .filter(|n| *n != t)
                        .map(|n| peer(n))
                        .collect::<Result<Vec<_>, _>>()?;
                    out.push((
                        t.clone(),
                        HostFault::Shape {
                            peers,
                            shaping: Shaping::Netem(netem.clone()),
                        },
                    ));
                }
            }
            FaultKind::Pause => {
                for t in &self.targets.nodes {
                    node(t)?;
                    out.push((t.clone(), HostFault::Pause));
                }
            }
            FaultKind::Restart | FaultKind::Idle => {
                return Err(format!(
                    "{} faults are not host faults",
                    self.spec.kind.as_str()
                ));
            }
        }
        Ok(out)
    }

    fn plan(&self, access: &dyn HostAccess, fault: HostFault) -> HostFaultPlan {
        let mut plan = HostFaultPlan::new(&run_tag(access.run_id()), &self.token, fault);
        plan.lease_ms = u64::try_from(access.lease().as_millis())
            .unwrap_or(u64::MAX)
            .max(1000);
        plan
    }

    /// Until when a lost host is waited for (set by the first revert or clean check).
    fn give_up_at(&self, access: &dyn HostAccess) -> Instant {
        *lock(&self.give_up_at)
            .get_or_insert_with(|| Instant::now() + access.lease() + RECONNECT_GRACE)
    }

    /// Runs `step` on `node`'s host until it answers or `until` passes, reconnecting after a
    /// loss; also says whether the host had to be reached again. Errors other than
    /// "unreachable" end it at once.
    async fn patient<'x, T, F>(
        access: &dyn HostAccess,
        node: &str,
        until: Instant,
        step: F,
    ) -> Result<(T, bool), HostFaultError>
    where
        F: Fn(Arc<dyn Remote>) -> FaultFuture<'x, Result<T, HostFaultError>>,
    {
        let mut reconnected = false;
        let mut remote = access.remote(node).await;
        loop {
            let result = match remote {
                Ok(r) => step(r).await,
                Err(e) => Err(e),
            };
            match result {
                Ok(t) => return Ok((t, reconnected)),
                Err(e) if e.class() == ErrorClass::Unreachable && Instant::now() < until => {}
                Err(e) => return Err(e),
            }
            tokio::time::sleep(Duration::from_secs(1)).await;
            remote = access.reconnect(node).await;
            reconnected |= remote.is_ok();
        }
    }

    /// Starts the task that renews every applied host's guard each guard-lease/3 until the
    /// revert stops it. A host that stops answering is noted lost (its guard reverts the fault
    /// when the lease runs out) and no longer renewed; a guard found gone or fired likewise.
    fn start_renewer(&self, access: &Arc<dyn HostAccess>, slots: &[Slot]) {
        let held: Vec<(String, HostFaultPlan)> = slots
            .iter()
            .filter(|s| s.applied.is_some())
            .map(|s| (s.node.clone(), s.plan.clone()))
            .collect();
        if held.is_empty() {
            return;
        }
        let period = (access.lease() / 3).max(Duration::from_millis(300));
        let (access, lost) = (Arc::clone(access), Arc::clone(&self.lost_while_held));
        let lease = access.lease();
        let task = tokio::spawn(async move {
            // Bounded by the revert (which aborts it) and by the hosts: one lost is dropped. A
            // host that misses one renewal (a slow round trip) is tried again next period; it is
            // lost once a whole lease passed without a renewal (its guard has fired by then).
            let started = Instant::now();
            let mut held: Vec<(String, HostFaultPlan, Instant)> =
                held.into_iter().map(|(n, p)| (n, p, started)).collect();
            while !held.is_empty() {
                tokio::time::sleep(period).await;
                let results = futures::future::join_all(held.iter().map(|(node, plan, _)| {
                    let access = Arc::clone(&access);
                    async move {
                        match access.remote(node).await {
                            Ok(r) => host::renew_guard(r.as_ref(), plan).await.map(drop),
                            Err(e) => Err(e),
                        }
                    }
                }))
                .await;
                let mut keep = Vec::new();
                for ((node, plan, last_ok), result) in held.into_iter().zip(results) {
                    let why = match result {
                        Ok(()) => {
                            keep.push((node, plan, Instant::now()));
                            continue;
                        }
                        Err(e) => match e.class() {
                            ErrorClass::Unreachable if last_ok.elapsed() >= lease => format!(
                                "{node} stopped answering while the fault held ({e}); its guard reverts the fault on the host when the lease runs out"
                            ),
                            ErrorClass::GuardMissing => format!(
                                "{node}: the guard was gone or had fired while the fault held ({e})"
                            ),
                            _ => {
                                // Missed once (or a failure that is neither): next period.
                                keep.push((node, plan, last_ok));
                                continue;
                            }
                        },
                    };
                    lock(&lost).entry(node).or_insert(why);
                }
                held = keep;
            }
        });
        if let Some(old) = lock(&self.renewer).replace(task) {
            old.abort();
        }
    }

    fn stop_renewer(&self) {
        if let Some(task) = lock(&self.renewer).take() {
            task.abort();
        }
    }

    /// Moves what the renewer found into the slots; returns the new findings.
    async fn take_lost(&self) -> Vec<String> {
        let found: Vec<(String, String)> = std::mem::take(&mut *lock(&self.lost_while_held))
            .into_iter()
            .collect();
        if found.is_empty() {
            return Vec::new();
        }
        let mut slots = self.slots.lock().await;
        let mut new = Vec::new();
        for (node, why) in found {
            if let Some(slot) = slots.iter_mut().find(|s| s.node == node) {
                if slot.lost.is_none() {
                    new.push(why.clone());
                }
                slot.lost.get_or_insert(why);
            }
        }
        new
    }

    /// The overlay side of "effective" (drives traffic through the fault as it measures).
    async fn overlay_effective<A: NodeApi>(&self, cx: &FaultCtx<A>, first: bool) -> Check {
        let names: Vec<String> = cx.nodes.iter().map(|n| n.name().to_owned()).collect();
        match self.spec.kind {
            FaultKind::Partition => {
                let (cut, uncut, _) = probe::partition_pairs(&names, &self.targets);
                let across = probe::dm_pairs(&cx.nodes, &cut, Duration::from_millis(400)).await;
                let within = probe::dm_pairs(&cx.nodes, &uncut, Duration::from_secs(2)).await;
                let evidence = json!({ "cut_probes": probe_json(&across), "uncut_probes": probe_json(&within) });
                if let Some(not_shown) = probe::cut_not_shown(&across, &within, &evidence) {
                    not_shown
                } else {
                    Check::Shown {
                        summary: format!(
                            "{} probes across the cut failed, {} within the sides were acknowledged",
                            across.len(),
                            within.len()
                        ),
                        evidence,
                    }
                }
            }
            FaultKind::Bandwidth => {
                let Some((from, to)) = self.burst_pair(cx) else {
                    return Check::NotChecked {
                        reason: "no sender for the throughput probe".into(),
                    };
                };
                if !first {
                    // One burst is the measurement; later rounds only wait for the counters.
                    let _ = probe::dm(&cx.nodes[from], &cx.nodes[to], Duration::from_secs(2)).await;
                    return Check::NotChecked {
                        reason: "measured in the first round".into(),
                    };
                }
                let (bps, probes) = burst_bps(&cx.nodes[from], &cx.nodes[to]).await;
                let cap = cap_bps(self.spec.rate_kbit);
                let baseline = *lock(&self.baseline_bps);
                let evidence = json!({
                    "throughput_bps": bps, "cap_bps": cap, "baseline_bps": baseline,
                    "from": cx.nodes[from].name(), "to": cx.nodes[to].name(),
                    "burst": { "dms": BURST_DMS, "bytes": BURST_BYTES }, "probes": probe_json(&probes),
                });
                let acked = probes.iter().filter(|p| p.acked).count();
                if acked == 0 {
                    Check::NotShown {
                        summary: "no DM of the burst was acknowledged under the cap".into(),
                        evidence,
                    }
                } else if bps < cap {
                    Check::Shown {
                        summary: format!(
                            "a DM burst {}→{} ran at {:.0} B/s, below the {:.0} B/s cap (before: {})",
                            cx.nodes[from].name(),
                            cx.nodes[to].name(),
                            bps,
                            cap,
                            baseline
                                .map_or_else(|| "not measured".into(), |b| format!("{b:.0} B/s"))
                        ),
                        evidence,
                    }
                } else {
                    Check::NotShown {
                        summary: format!(
                            "a DM burst ran at {bps:.0} B/s, not below the {cap:.0} B/s cap"
                        ),
                        evidence,
                    }
                }
            }
            FaultKind::Delay | FaultKind::Loss => {
                let pairs = self.probe_pairs(cx);
                let timeout =
                    Duration::from_millis(self.spec.delay_ms + self.spec.jitter_ms + 2_000);
                let probes = probe::dm_pairs(&cx.nodes, &pairs, timeout).await;
                let evidence = json!({ "probes": probe_json(&probes) });
                if self.spec.kind == FaultKind::Loss {
                    // QUIC retransmits what netem drops: the host's counters are the evidence.
                    return Check::Shown {
                        summary: format!(
                            "{} probes to the targets sent through the loss",
                            probes.len()
                        ),
                        evidence,
                    };
                }
                let baseline = lock(&self.baseline_rtt_us).unwrap_or(0);
                let tolerance = (self.spec.delay_ms / 10).max(50);
                let need = baseline + self.spec.delay_ms.saturating_sub(tolerance) * 1000;
                match probe::median_rtt_us(&probes) {
                    Some(d) if d >= need => Check::Shown {
                        summary: format!(
                            "probe round trips to the target rose from {} ms to {} ms",
                            baseline / 1000,
                            d / 1000
                        ),
                        evidence,
                    },
                    Some(d) => Check::NotShown {
                        summary: format!(
                            "probe round trips {} ms, not ≥ {} ms",
                            d / 1000,
                            need / 1000
                        ),
                        evidence,
                    },
                    None => Check::NotShown {
                        summary: "no probe to the target was acknowledged".into(),
                        evidence,
                    },
                }
            }
            FaultKind::Pause => {
                let mut answering = Vec::new();
                let mut evidence = Vec::new();
                for i in cx.indices(&self.targets.nodes) {
                    let (ok, took) = probe::answers(&cx.nodes[i], Duration::from_millis(500)).await;
                    evidence.push(json!({ "node": cx.nodes[i].name(), "healthz_answered": ok, "waited_ms": took.as_millis() as u64 }));
                    if ok {
                        answering.push(cx.nodes[i].name().to_owned());
                    }
                }
                probe::paused_check(&self.targets.nodes, &answering, evidence)
            }
            FaultKind::Restart | FaultKind::Idle => Check::NotChecked {
                reason: "not a host fault".into(),
            },
        }
    }

    /// Sender and receiver of the throughput probe: the first non-target to the first target.
    fn burst_pair<A: NodeApi>(&self, cx: &FaultCtx<A>) -> Option<(usize, usize)> {
        let to = cx.indices(&self.targets.nodes).first().copied()?;
        let from = (0..cx.nodes.len()).find(|i| !cx.indices(&self.targets.nodes).contains(i))?;
        Some((from, to))
    }

    /// Delay/loss probes: up to three non-targets to each target.
    fn probe_pairs<A: NodeApi>(&self, cx: &FaultCtx<A>) -> Vec<(usize, usize)> {
        let targets = cx.indices(&self.targets.nodes);
        let others: Vec<usize> = (0..cx.nodes.len())
            .filter(|i| !targets.contains(i))
            .collect();
        targets
            .iter()
            .flat_map(|&t| others.iter().take(3).map(move |&o| (o, t)))
            .collect()
    }

    /// The overlay side of "clean".
    async fn overlay_clean<A: NodeApi>(&self, cx: &FaultCtx<A>) -> Check {
        let started = Instant::now();
        match self.spec.kind {
            FaultKind::Partition => {
                let names: Vec<String> = cx.nodes.iter().map(|n| n.name().to_owned()).collect();
                let (_, _, pairs) = probe::partition_pairs(&names, &self.targets);
                if pairs.is_empty() {
                    return nothing_probed("no pair the partition disturbed to probe");
                }
                loop {
                    let probes = probe::dm_pairs(&cx.nodes, &pairs, Duration::from_secs(2)).await;
                    let failing: Vec<String> = probes
                        .iter()
                        .filter(|p| !p.acked)
                        .map(|p| format!("{}→{}", p.from, p.to))
                        .collect();
                    let elapsed = started.elapsed();
                    if failing.is_empty() || elapsed >= HEAL_DEADLINE {
                        let healed = failing.is_empty();
                        *lock(&self.heal) = Some(HealCheck {
                            pairs: pairs.len() as u64,
                            healed_after_ms: healed.then_some(elapsed.as_millis() as u64),
                            still_failing: failing.clone(),
                        });
                        let evidence = json!({ "probes": probe_json(&probes), "after_ms": elapsed.as_millis() as u64 });
                        return if healed {
                            Check::Shown {
                                summary: format!(
                                    "{} disturbed pairs deliver again after {} ms",
                                    probes.len(),
                                    elapsed.as_millis()
                                ),
                                evidence,
                            }
                        } else {
                            Check::NotShown {
                                summary: format!(
                                    "{} pairs still failing after {} s: {}",
                                    failing.len(),
                                    HEAL_DEADLINE.as_secs(),
                                    failing.join(", ")
                                ),
                                evidence,
                            }
                        };
                    }
                    tokio::time::sleep(Duration::from_millis(250)).await;
                }
            }
            FaultKind::Bandwidth => {
                let Some((from, to)) = self.burst_pair(cx) else {
                    return Check::NotChecked {
                        reason: "no sender for the throughput probe".into(),
                    };
                };
                let cap = cap_bps(self.spec.rate_kbit);
                let mut last = (0.0, Vec::new());
                // QUIC's congestion window needs a moment to grow back after the cap's drops.
                for _ in 0..3 {
                    last = burst_bps(&cx.nodes[from], &cx.nodes[to]).await;
                    if last.0 > cap {
                        break;
                    }
                }
                let (bps, probes) = last;
                let evidence =
                    json!({ "throughput_bps": bps, "cap_bps": cap, "probes": probe_json(&probes) });
                if bps > cap {
                    Check::Shown {
                        summary: format!(
                            "the DM burst runs at {bps:.0} B/s again, above the {cap:.0} B/s cap"
                        ),
                        evidence,
                    }
                } else {
                    Check::NotShown {
                        summary: format!(
                            "the DM burst still runs at {bps:.0} B/s, below the {cap:.0} B/s cap"
                        ),
                        evidence,
                    }
                }
            }
            FaultKind::Pause => {
                let mut silent = Vec::new();
                let targets = cx.indices(&self.targets.nodes);
                if targets.is_empty() {
                    return nothing_probed("no target of the pause among the nodes");
                }
                for i in targets {
                    let deadline = Instant::now() + RESUME_DEADLINE;
                    let mut ok = false;
                    while !ok && Instant::now() < deadline {
                        ok = probe::answers(&cx.nodes[i], Duration::from_secs(2)).await.0;
                    }
                    if !ok {
                        silent.push(cx.nodes[i].name().to_owned());
                    }
                }
                if silent.is_empty() {
                    Check::Shown {
                        summary: "continued: /healthz answers again".into(),
                        evidence: Value::Null,
                    }
                } else {
                    Check::NotShown {
                        summary: format!("still silent: {}", silent.join(", ")),
                        evidence: json!({ "silent": silent }),
                    }
                }
            }
            _ => {
                let pairs = self.probe_pairs(cx);
                if pairs.is_empty() {
                    return nothing_probed("no probe pair to the targets");
                }
                loop {
                    let probes = probe::dm_pairs(&cx.nodes, &pairs, Duration::from_secs(2)).await;
                    let all = probes.iter().all(|p| p.acked);
                    if all || started.elapsed() >= Duration::from_secs(15) {
                        let evidence = json!({ "probes": probe_json(&probes) });
                        return if all {
                            Check::Shown {
                                summary: format!(
                                    "{} probes to the targets acknowledged",
                                    probes.len()
                                ),
                                evidence,
                            }
                        } else {
                            Check::NotShown {
                                summary: "probes to the targets still fail".into(),
                                evidence,
                            }
                        };
                    }
                    tokio::time::sleep(Duration::from_millis(250)).await;
                }
            }
        }
    }
}

impl Drop for HostedFault {
    fn drop(&mut self) {
        self.stop_renewer();
    }
}

fn access<A>(cx: &FaultCtx<A>) -> Result<Arc<dyn HostAccess>, FaultError> {
    cx.control.hosts().ok_or_else(|| {
        FaultError::Unsupported("host faults need a host fleet (-i INVENTORY)".into())
    })
}

fn host_err(e: &HostFaultError) -> String {
    e.to_string()
}

impl<A: NodeApi + 'static> Fault<A> for HostedFault {
    fn apply<'a>(&'a self, cx: &'a FaultCtx<A>) -> FaultFuture<'a, Result<Value, FaultError>> {
        Box::pin(async move {
            let access = access(cx)?;
            let names: Vec<String> = cx.nodes.iter().map(|n| n.name().to_owned()).collect();
            let faults = self
                .host_faults(access.as_ref(), &names)
                .map_err(FaultError::Unsupported)?;
            let plans: Vec<(String, HostFaultPlan)> = faults
                .into_iter()
                .map(|(node, fault)| {
                    let plan = self.plan(access.as_ref(), fault);
                    (node, plan)
                })
                .collect();
            // 1. Every host can run its part — checked on all of them before any changes.
            let checks = futures::future::join_all(plans.iter().map(|(node, plan)| {
                let access = Arc::clone(&access);
                async move {
                    let remote = access.remote(node).await?;
                    let caps = host::detect(remote.as_ref()).await?;
                    Ok::<_, HostFaultError>(host::plan_unsupported(&caps, plan))
                }
            }))
            .await;
            let mut refused = Vec::new();
            for ((node, _), check) in plans.iter().zip(checks) {
                match check {
                    Ok(None) => {}
                    Ok(Some(why)) => refused.push(format!("{node}: {why}")),
                    Err(e) => return Err(FaultError::Other(host_err(&e))),
                }
            }
            if !refused.is_empty() {
                return Err(FaultError::Unsupported(refused.join("; ")));
            }
            // 2. Baselines the overlay evidence compares against.
            match self.spec.kind {
                FaultKind::Bandwidth => {
                    if let Some((from, to)) = self.burst_pair(cx) {
                        let (bps, _) = burst_bps(&cx.nodes[from], &cx.nodes[to]).await;
                        *lock(&self.baseline_bps) = Some(bps);
                    }
                }
                FaultKind::Delay => {
                    let probes =
                        probe::dm_pairs(&cx.nodes, &self.probe_pairs(cx), Duration::from_secs(2))
                            .await;
                    *lock(&self.baseline_rtt_us) = probe::median_rtt_us(&probes);
                }
                _ => {}
            }
            // 3. Snapshot, then apply (guard first), on every host at once.
            let results = futures::future::join_all(plans.iter().map(|(node, plan)| {
                let access = Arc::clone(&access);
                async move {
                    let remote = access.remote(node).await?;
                    let before = host::snapshot(remote.as_ref()).await?;
                    let applied = host::apply(remote.as_ref(), plan).await;
                    Ok::<_, HostFaultError>((before, applied))
                }
            }))
            .await;
            let mut slots = self.slots.lock().await;
            let mut failures = Vec::new();
            let mut all_unsupported = true;
            let mut done = Vec::new();
            for ((node, plan), result) in plans.into_iter().zip(results) {
                let (before, applied) = match result {
                    Ok((before, Ok(applied))) => (Some(before), Some(applied)),
                    Ok((before, Err(e))) => {
                        all_unsupported &= e.class() == ErrorClass::Unsupported;
                        failures.push(host_err(&e));
                        (Some(before), None)
                    }
                    Err(e) => {
                        all_unsupported = false;
                        failures.push(host_err(&e));
                        (None, None)
                    }
                };
                if let Some(a) = &applied {
                    done.push(json!({
                        "host": node, "token": plan.token, "lease_ms": plan.lease_ms,
                        "guard": a.guard, "objects": a.objects,
                    }));
                }
                slots.push(Slot {
                    node,
                    plan,
                    before,
                    applied,
                    reverted: None,
                    lost: None,
                });
            }
            self.start_renewer(&access, &slots);
            if failures.is_empty() {
                return Ok(json!({ "hosts": done }));
            }
            if all_unsupported {
                // A host refused (a foreign root qdisc, say) after others changed: undo those
                // now, so SKIPPED means nothing is held.
                for slot in slots.iter_mut().filter(|s| s.applied.is_some()) {
                    if let (Ok(remote), Some(a)) =
                        (access.remote(&slot.node).await, slot.applied.as_ref())
                    {
                        let _ = host::revert(remote.as_ref(), &slot.plan, a).await;
                    }
                    slot.applied = None;
                }
                return Err(FaultError::Unsupported(failures.join("; ")));
            }
            // The teardown reverts what did apply (phase: applying).
            Err(FaultError::Other(failures.join("; ")))
        })
    }

    fn verify_effective<'a>(&'a self, cx: &'a FaultCtx<A>) -> FaultFuture<'a, Check> {
        Box::pin(async move {
            let access = match access(cx) {
                Ok(a) => a,
                Err(e) => {
                    return Check::NotChecked {
                        reason: e.to_string(),
                    };
                }
            };
            let started = Instant::now();
            let mut host_shown: BTreeMap<String, Value> = BTreeMap::new();
            let mut overlay: Option<Check> = None;
            let mut round = 0;
            loop {
                let check = self.overlay_effective(cx, round == 0).await;
                if overlay.as_ref().is_none_or(|c| !c.is_shown())
                    && !matches!(check, Check::NotChecked { .. } if round > 0)
                {
                    overlay = Some(check);
                }
                round += 1;
                let slots = self.slots.lock().await;
                let mut pending = Vec::new();
                for slot in slots.iter().filter(|s| s.applied.is_some()) {
                    if host_shown.contains_key(&slot.node) {
                        continue;
                    }
                    let Some(a) = slot.applied.as_ref() else {
                        continue;
                    };
                    let result = match access.remote(&slot.node).await {
                        Ok(r) => host::verify_effective(r.as_ref(), &slot.plan, a).await,
                        Err(e) => Err(e),
                    };
                    match result {
                        Ok(e) => {
                            host_shown.insert(
                                slot.node.clone(),
                                serde_json::to_value(e).unwrap_or_default(),
                            );
                        }
                        Err(e) if e.class() == ErrorClass::NotEffective => {
                            pending.push((slot.node.clone(), e.to_string(), false));
                        }
                        Err(e) => pending.push((slot.node.clone(), e.to_string(), true)),
                    }
                }
                drop(slots);
                let overlay_shown = overlay.as_ref().is_some_and(Check::is_shown);
                // Shown on every host that holds it, and on at least one: none is nothing shown.
                let done = pending.is_empty() && !host_shown.is_empty() && overlay_shown;
                if done || started.elapsed() >= EFFECT_DEADLINE || pending.iter().any(|p| p.2) {
                    let overlay = overlay.unwrap_or(Check::NotChecked {
                        reason: "no probe ran".into(),
                    });
                    let evidence = json!({
                        "hosts": host_shown,
                        "hosts_pending": pending.iter().map(|p| json!({"host": p.0, "why": p.1})).collect::<Vec<_>>(),
                        "overlay": { "summary": overlay.summary(), "evidence": match &overlay {
                            Check::Shown { evidence, .. } | Check::NotShown { evidence, .. } => evidence.clone(),
                            Check::NotChecked { .. } => Value::Null,
                        } },
                    });
                    if done {
                        return Check::Shown {
                            summary: format!(
                                "on {} hosts ({}) our {} counters rose; {}",
                                host_shown.len(),
                                host_shown.keys().cloned().collect::<Vec<_>>().join(", "),
                                if self.spec.kind == FaultKind::Partition {
                                    "DROP rule"
                                } else if self.spec.kind == FaultKind::Pause {
                                    "stopped-process (state T)"
                                } else {
                                    "qdisc band"
                                },
                                overlay.summary()
                            ),
                            evidence,
                        };
                    }
                    if let Some(p) = pending.iter().find(|p| p.2) {
                        return Check::NotChecked {
                            reason: format!("the host could not be checked: {}", p.1),
                        };
                    }
                    let mut why = Vec::new();
                    for p in &pending {
                        why.push(p.1.clone());
                    }
                    if !overlay_shown {
                        why.push(format!("overlay: {}", overlay.summary()));
                    }
                    return Check::NotShown {
                        summary: why.join("; "),
                        evidence,
                    };
                }
                tokio::time::sleep(Duration::from_millis(300)).await;
            }
        })
    }

    fn renew<'a>(&'a self, _cx: &'a FaultCtx<A>) -> FaultFuture<'a, Result<(), FaultError>> {
        Box::pin(async move {
            // The guards are renewed by this fault's own task (see `start_renewer`); here only
            // what it found is taken over, so the evidence says which host was lost.
            let lost = self.take_lost().await;
            if lost.is_empty() {
                Ok(())
            } else {
                Err(FaultError::Other(format!(
                    "guard renewal: {}",
                    lost.join("; ")
                )))
            }
        })
    }

    fn revert<'a>(&'a self, cx: &'a FaultCtx<A>) -> FaultFuture<'a, Result<Value, FaultError>> {
        Box::pin(async move {
            self.stop_renewer();
            let _ = self.take_lost().await;
            let access = access(cx)?;
            let until = self.give_up_at(access.as_ref());
            let mut slots = self.slots.lock().await;
            let results = futures::future::join_all(
                slots
                    .iter()
                    .filter(|s| s.reverted.is_none())
                    .filter_map(|s| Some((s, s.applied.as_ref()?)))
                    .map(|(slot, a)| {
                        let access = Arc::clone(&access);
                        async move {
                            let result = Self::patient(access.as_ref(), &slot.node, until, |r| {
                                Box::pin(
                                    async move { host::revert(r.as_ref(), &slot.plan, a).await },
                                )
                            })
                            .await;
                            (slot.node.clone(), result)
                        }
                    }),
            )
            .await;
            let mut failed = Vec::new();
            for (node, result) in results {
                let Some(slot) = slots.iter_mut().find(|s| s.node == node) else {
                    continue;
                };
                match result {
                    Ok((reverted, reconnected)) => {
                        if reconnected && slot.lost.is_none() {
                            slot.lost = Some(format!(
                                "{node} stopped answering while the fault was reverted; reached again"
                            ));
                        }
                        if reverted.guard == "fired" && slot.lost.is_none() {
                            // Its lease ran out before the revert: the fault lapsed early.
                            slot.lost = Some(format!(
                                "{node}: the guard had reverted the fault before the revert ({})",
                                reverted
                                    .guard_result
                                    .as_ref()
                                    .map_or_else(|| "no result".to_owned(), |g| g.reason.clone())
                            ));
                        }
                        slot.reverted = Some(reverted);
                    }
                    Err(e) => {
                        if e.class() == ErrorClass::Unreachable {
                            slot.lost.get_or_insert_with(|| format!(
                                "{node} unreachable at the revert: its guard reverts the fault on the host when the lease runs out"
                            ));
                        }
                        failed.push(e.to_string());
                    }
                }
            }
            let evidence: Vec<Value> = slots
                .iter()
                .filter(|s| s.applied.is_some())
                .map(|s| {
                    json!({
                        "host": s.node,
                        "guard": s.reverted.as_ref().map(|r| r.guard.clone()),
                        "guard_result": s.reverted.as_ref().and_then(|r| r.guard_result.clone()),
                        "steps": s.reverted.as_ref().map(|r| r.steps.clone()),
                        "lost": s.lost,
                    })
                })
                .collect();
            if failed.is_empty() {
                Ok(json!({ "hosts": evidence }))
            } else {
                Err(FaultError::Other(failed.join("; ")))
            }
        })
    }

    fn verify_clean<'a>(&'a self, cx: &'a FaultCtx<A>) -> FaultFuture<'a, Check> {
        Box::pin(async move {
            let access = match access(cx) {
                Ok(a) => a,
                Err(e) => {
                    return Check::NotChecked {
                        reason: e.to_string(),
                    };
                }
            };
            let until = self.give_up_at(access.as_ref());
            let mut slots = self.slots.lock().await;
            let checks = futures::future::join_all(
                slots
                    .iter()
                    .filter_map(|s| Some((s, s.applied.as_ref()?, s.before.as_ref()?)))
                    .map(|(slot, a, before)| {
                        let access = Arc::clone(&access);
                        async move {
                            let result = Self::patient(access.as_ref(), &slot.node, until, |r| {
                                Box::pin(async move {
                                    host::verify_clean(r.as_ref(), &slot.plan, a, before).await
                                })
                            })
                            .await;
                            (slot.node.clone(), result)
                        }
                    }),
            )
            .await;
            let mut clean = BTreeMap::new();
            let mut residue = Vec::new();
            // (A snapshot is taken before every apply; without one nothing can be compared.)
            let mut unchecked: Vec<String> = slots
                .iter()
                .filter(|s| s.applied.is_some() && s.before.is_none())
                .map(|s| format!("{}: no snapshot from before the fault", s.node))
                .collect();
            for (node, result) in checks {
                match result {
                    Ok((c, reconnected)) => {
                        if let Some(slot) = slots.iter_mut().find(|s| s.node == node)
                            && reconnected
                        {
                            slot.lost.get_or_insert_with(|| {
                                format!(
                                    "{node} stopped answering before the clean check; reached again"
                                )
                            });
                        }
                        clean.insert(
                            node,
                            json!({ "checks": c.checks, "reconnected": reconnected }),
                        );
                    }
                    Err(e) if e.class() == ErrorClass::RevertFailed => residue.push(e.to_string()),
                    Err(e) => unchecked.push(e.to_string()),
                }
            }
            let guards: BTreeMap<String, Value> = slots
                .iter()
                .filter(|s| s.applied.is_some())
                .map(|s| {
                    (
                        s.node.clone(),
                        json!({
                            "guard": s.reverted.as_ref().map(|r| r.guard.clone()),
                            "guard_result": s.reverted.as_ref().and_then(|r| r.guard_result.as_ref().map(|g| json!({"outcome": g.outcome, "reason": g.reason}))),
                            "lost": s.lost,
                        }),
                    )
                })
                .collect();
            drop(slots);
            if !residue.is_empty() {
                return Check::NotShown {
                    summary: format!("fault residue on the host: {}", residue.join("; ")),
                    evidence: json!({ "hosts_clean": clean, "guards": guards }),
                };
            }
            if !unchecked.is_empty() {
                return Check::NotChecked {
                    reason: format!(
                        "the host could not be checked clean: {}",
                        unchecked.join("; ")
                    ),
                };
            }
            if clean.is_empty() {
                return Check::NotChecked {
                    reason: "no host held the fault, so none was checked clean".into(),
                };
            }
            let overlay = self.overlay_clean(cx).await;
            let evidence = json!({
                "hosts_clean": clean, "guards": guards,
                "overlay": { "summary": overlay.summary(), "evidence": match &overlay {
                    Check::Shown { evidence, .. } | Check::NotShown { evidence, .. } => evidence.clone(),
                    Check::NotChecked { .. } => Value::Null,
                } },
            });
            match overlay {
                Check::Shown { summary, .. } => Check::Shown {
                    summary: format!(
                        "our objects gone and the rest identical to the snapshot on {} hosts ({}); {summary}",
                        clean.len(),
                        clean.keys().cloned().collect::<Vec<_>>().join(", ")
                    ),
                    evidence,
                },
                Check::NotShown { summary, .. } => Check::NotShown {
                    summary: format!("hosts clean, but the overlay is not: {summary}"),
                    evidence,
                },
                Check::NotChecked { reason } => Check::NotChecked { reason },
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
            let _ = self.take_lost().await;
            if self.spec.kind == FaultKind::Partition {
                evidence.heal = lock(&self.heal).clone();
            }
            let lost: Vec<String> = self
                .slots
                .lock()
                .await
                .iter()
                .filter_map(|s| s.lost.clone())
                .collect();
            withdraw_effect(&lost, evidence);
        })
    }
}

/// A host lost while the fault held (unreachable, its guard gone or fired early) makes what the
/// window saw under the fault unverifiable: the effect evidence becomes NotChecked (UNKNOWN),
/// whatever was shown before — never a pass from evidence that may have lapsed.
fn withdraw_effect(lost: &[String], evidence: &mut FaultEvidence) {
    if lost.is_empty() {
        return;
    }
    evidence.effective = Check::NotChecked {
        reason: format!(
            "evidence unverifiable: {} (shown before: {})",
            lost.join("; "),
            evidence.effective.summary()
        ),
    };
}

fn kind_word(kind: host::ResidueKind) -> String {
    serde_json::to_value(kind)
        .ok()
        .and_then(|v| v.as_str().map(str::to_owned))
        .unwrap_or_else(|| "object".into())
}

fn residue_of(found: &HostResidue, detail: impl Fn(&str) -> String) -> Vec<Residue> {
    let mut out: Vec<Residue> = found
        .items
        .iter()
        .map(|i| Residue {
            node: found.host.clone(),
            object: format!("{} {}", kind_word(i.kind), i.object),
            detail: detail(&i.detail),
            unverified: false,
        })
        .collect();
    for g in &found.swept_guards {
        out.push(Residue {
            node: found.host.clone(),
            object: format!("guard {}", g.token),
            detail: detail(&format!(
                "{:?}{}",
                g.found,
                g.result
                    .as_ref()
                    .map(|r| format!(": {:?} ({})", r.outcome, r.reason))
                    .unwrap_or_default()
            )),
            unverified: false,
        });
    }
    out
}

async fn each_host<F, Fut>(names: &[String], work: F) -> Vec<Residue>
where
    F: Fn(String) -> Fut,
    Fut: std::future::Future<Output = Vec<Residue>>,
{
    futures::stream::iter(names.iter().cloned().map(work))
        .buffered(PARALLEL)
        .collect::<Vec<_>>()
        .await
        .into_iter()
        .flatten()
        .collect()
}

/// Before a run: sweeps every host of `names` for soak objects of earlier runs (chains, jumps,
/// qdiscs, guards, stopped node processes), reverts them and says what was found. A host that
/// cannot be swept is reported `unverified`.
pub async fn sweep_hosts(access: &dyn HostAccess, names: &[String]) -> Vec<Residue> {
    each_host(names, |node| async move {
        let result = match access.remote(&node).await {
            Ok(r) => host::sweep(r.as_ref()).await,
            Err(e) => Err(e),
        };
        match result {
            Ok(found) => residue_of(&found, |d| {
                if let Some(rest) = d.strip_prefix("still there after the sweep: ") {
                    format!("left by an earlier run; could NOT be removed before this run: {rest}")
                } else {
                    format!("left by an earlier run; removed before this run ({d})")
                }
            }),
            Err(e) => vec![Residue {
                node,
                object: "host".into(),
                detail: format!("could not be swept before the run: {e}"),
                unverified: true,
            }],
        }
    })
    .await
}

/// After a run: audits every host of `names` (read-only) for soak objects still there; a host
/// that cannot be audited is reported `unverified` (UNKNOWN), anything found is residue (NO-GO).
pub async fn audit_hosts(access: &dyn HostAccess, names: &[String]) -> Vec<Residue> {
    each_host(names, |node| async move {
        let until = Instant::now() + RECONNECT_GRACE;
        let result = HostedFault::patient(access, &node, until, |r| {
            Box::pin(async move { host::audit(r.as_ref()).await })
        })
        .await
        .map(|(found, _)| found);
        match result {
            Ok(found) => residue_of(&found, |d| format!("still on the host after the run: {d}")),
            Err(e) => vec![Residue {
                node,
                object: "host".into(),
                detail: format!("could not be audited after the run: {e}"),
                unverified: true,
            }],
        }
    })
    .await
}

#[cfg(test)]
mod tests {
    use super::super::catalog;
    use super::super::control::HostNode;
    use super::super::select::{Selector, resolve};
    use super::*;

    /// Hosts h1..h4 at 198.18.0.1x (or fd00::1x), overlay port 7000 + i; no sessions.
    struct Fleet(bool);

    impl HostAccess for Fleet {
        fn node(&self, node: &str) -> Option<HostNode> {
            let i: u8 = node.strip_prefix('h')?.parse().ok()?;
            let overlay = if self.0 {
                format!("fd00::1{i}").parse().ok()?
            } else {
                format!("198.18.0.1{i}").parse().ok()?
            };
            Some(HostNode {
                host: soak_inventory::Host::with_defaults(node, "192.0.2.1"),
                overlay,
                port: 7000 + u16::from(i),
            })
        }
        fn remote<'a>(
            &'a self,
            node: &'a str,
        ) -> super::super::control::HostFuture<'a, Arc<dyn Remote>> {
            Box::pin(async move {
                Err(HostFaultError {
                    host: node.into(),
                    context: "test".into(),
                    kind: host::HostFaultErrorKind::Plan("no sessions in this test".into()),
                })
            })
        }
        fn reconnect<'a>(
            &'a self,
            node: &'a str,
        ) -> super::super::control::HostFuture<'a, Arc<dyn Remote>> {
            self.remote(node)
        }
        fn lease(&self) -> Duration {
            Duration::from_secs(30)
        }
        fn run_id(&self) -> &str {
            "20260101T000000Z-lab"
        }
    }

    fn names() -> Vec<String> {
        (1..=4).map(|i| format!("h{i}")).collect()
    }

    fn planned(name: &str, selector: &str, v6: bool) -> Vec<(String, HostFault)> {
        let spec = catalog::builtin(name).unwrap();
        let sel: Selector = selector.parse().unwrap();
        let targets = resolve(&sel, &names(), 1).unwrap();
        HostedFault::new(spec, targets, "soak.ab.w2.0")
            .host_faults(&Fleet(v6), &names())
            .unwrap()
    }

    fn rules(planned: &[(String, HostFault)]) -> BTreeMap<String, Vec<String>> {
        planned
            .iter()
            .map(|(h, f)| {
                let HostFault::Partition { rules } = f else {
                    panic!("{f:?}")
                };
                (
                    h.clone(),
                    rules
                        .iter()
                        .map(|r| format!("{:?} {} {}:{}", r.direction, r.peer, r.address, r.port))
                        .collect(),
                )
            })
            .collect()
    }

    #[test]
    fn partitions_put_rules_only_on_the_hosts_of_the_cut() {
        let pair = rules(&planned("partition_pair", "pair:h1,h3", false));
        assert_eq!(pair.keys().collect::<Vec<_>>(), ["h1", "h3"]);
        assert_eq!(
            pair["h1"],
            ["In h3 198.18.0.13:7001", "Out h3 198.18.0.13:7003"],
            "h1 drops what h3 sends to its port, and what it sends to h3's"
        );
        let halves = rules(&planned("partition_halves", "halves", false));
        assert_eq!(halves.len(), 4, "every host is on one side: {halves:?}");
        assert!(halves.values().all(|r| r.len() == 4), "{halves:?}");
        // One-way: only the receiver drops, so its counters see every packet the sender sent.
        let one_way = rules(&planned("partition_one_way", "one_way:h2->h4", true));
        assert_eq!(
            one_way,
            BTreeMap::from([("h4".to_string(), vec!["In h2 fd00::12:7004".to_string()])])
        );
    }

    #[test]
    fn a_bandwidth_cap_shapes_every_other_host_toward_the_target() {
        let caps = planned("bandwidth_cap", "node:h2", false);
        assert_eq!(
            caps.iter().map(|(h, _)| h.as_str()).collect::<Vec<_>>(),
            ["h1", "h3", "h4"]
        );
        for (_, f) in &caps {
            let HostFault::Shape { peers, shaping } = f else {
                panic!("{f:?}")
            };
            assert_eq!(peers.len(), 1);
            assert_eq!((peers[0].name.as_str(), peers[0].port), ("h2", 7002));
            assert!(
                matches!(shaping, Shaping::Rate { kbit: 256, limiter: Limiter::Tbf, burst_bytes, .. } if *burst_bytes >= 1600),
                "{shaping:?}"
            );
            assert_eq!(shaping.validate(), Ok(()));
        }
    }

    #[test]
    fn delay_shapes_the_target_toward_every_peer_with_centred_jitter() {
        let delay = planned("high_rtt_peer", "node:h3", false);
        assert_eq!(delay.len(), 1);
        let HostFault::Shape { peers, shaping } = &delay[0].1 else {
            panic!()
        };
        assert_eq!(delay[0].0, "h3");
        assert_eq!(peers.len(), 3);
        // 1300 ms + up to 400 ms on top = 1500 ms ± 200 ms.
        assert!(
            matches!(shaping, Shaping::Netem(n) if n.delay_ms == 1500 && n.jitter_ms == 200),
            "{shaping:?}"
        );
        let pause = planned("stale_peer", "node:h4", false);
        assert_eq!(pause, vec![("h4".to_string(), HostFault::Pause)]);
    }

    #[test]
    fn a_host_lost_while_the_fault_held_makes_shown_evidence_unknown() {
        let mut evidence = FaultEvidence {
            kind: "partition".into(),
            backend: "iptables".into(),
            applied_at_ms: Some(1),
            reverted_at_ms: None,
            effective: Check::Shown {
                summary: "on 2 hosts our DROP rule counters rose".into(),
                evidence: Value::Null,
            },
            clean: Check::NotChecked {
                reason: "not yet".into(),
            },
            recoveries: Vec::new(),
            heal: None,
            cooling: None,
            first_attempt: None,
        };
        withdraw_effect(&[], &mut evidence);
        assert!(evidence.effective.is_shown(), "nothing lost: kept");
        withdraw_effect(
            &["h2 stopped answering while the fault held".into()],
            &mut evidence,
        );
        assert!(
            matches!(&evidence.effective, Check::NotChecked { reason } if reason.contains("h2 stopped answering") && reason.contains("shown before")),
            "{:?}",
            evidence.effective
        );
    }

    #[test]
    fn tokens_and_run_tags_fit_the_guard_and_the_firewall() {
        assert_eq!(token_of("soak.1a2b3c4d.w3.0"), "soak-1a2b3c4d-w3-0");
        assert_eq!(token_of(""), "soak");
        assert_eq!(token_of(&"x".repeat(100)).len(), 64);
        assert_eq!(
            run_tag("20260101T000000Z-lab v6"),
            "20260101T000000Z-lab-v6"
        );
        let plan = HostFaultPlan::new(
            &run_tag("20260101T000000Z-ünïcode/label"),
            &token_of("soak.ab.w1.0"),
            HostFault::Pause,
        );
        assert_eq!(plan.validate(), Ok(()));
    }

    /// A fleet with hosts (the test `Fleet`) whose processes the test never touches.
    struct WithHosts;

    use super::super::control::{ControlError, NodeControl};

    impl NodeControl for WithHosts {
        fn restart_unsupported(&self) -> Option<String> {
            Some("test".into())
        }
        fn signal_unsupported(&self) -> Option<String> {
            Some("test".into())
        }
        fn restart<'a>(
            &'a self,
            _node: &'a str,
        ) -> super::super::control::ControlFuture<'a, super::super::control::RestartReport>
        {
            Box::pin(async move { Err(ControlError::Unsupported("test".into())) })
        }
        fn signal<'a>(
            &'a self,
            _node: &'a str,
            _signal: super::super::control::ProcessSignal,
        ) -> super::super::control::ControlFuture<'a, super::super::control::SignalReport> {
            Box::pin(async move { Err(ControlError::Unsupported("test".into())) })
        }
        fn is_stopped(&self, _node: &str) -> Option<bool> {
            None
        }
        fn hosts(&self) -> Option<Arc<dyn HostAccess>> {
            Some(Arc::new(Fleet(false)))
        }
    }

    fn hosted_on(mesh: &crate::fake::FakeMesh, name: &str, selector: &str) -> HostedFault {
        let spec = catalog::builtin(name).unwrap();
        let nodes: Vec<String> = mesh.nodes().iter().map(|n| n.name().to_owned()).collect();
        let targets = resolve(&selector.parse::<Selector>().unwrap(), &nodes, 1).unwrap();
        HostedFault::new(spec, targets, "soak.ab.w2.0")
    }

    #[tokio::test]
    async fn a_fault_no_host_held_is_never_checked_clean() {
        // The fake fleet answers every probe, so only the host side can refuse the pass.
        let mesh = crate::fake::FakeMesh::new(4);
        let cx = mesh.fault_ctx(Arc::new(WithHosts));
        for (kind, selector) in [("partition_halves", "halves"), ("stale_peer", "random:1")] {
            let fault = hosted_on(&mesh, kind, selector);
            let check = fault.verify_clean(&cx).await;
            assert!(
                matches!(check, Check::NotChecked { .. }),
                "{kind}: nothing applied on any host must not be clean: {check:?}"
            );
        }
    }

    #[tokio::test]
    async fn an_overlay_clean_check_with_nothing_to_probe_shows_nothing() {
        let mesh = crate::fake::FakeMesh::new(4);
        let cx = mesh.fault_ctx(Arc::new(WithHosts));
        // Targets that are not among the nodes (and every node a target) leave no probe.
        let mut paused = hosted_on(&mesh, "stale_peer", "random:1");
        paused.targets.nodes = vec!["elsewhere".into()];
        let mut all = hosted_on(&mesh, "high_rtt_peer", "random:1");
        all.targets.nodes = mesh.nodes().iter().map(|n| n.name().to_owned()).collect();
        for (what, fault) in [("pause", paused), ("delay on every node", all)] {
            let check = fault.overlay_clean(&cx).await;
            assert!(
                matches!(check, Check::NotShown { .. }),
                "{what}: an overlay clean check that probed nothing must not pass: {check:?}"
            );
        }
    }
}
