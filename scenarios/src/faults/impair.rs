//! Delay, loss and partition through the node's own impairment API (no root, every fleet).
//!
//! Each fault posts impairments with ids `<tag>.<window>.<n>` and an expiry of one lease;
//! renewing re-posts the same ids (the node replaces them), so a dead orchestrator leaves
//! nothing once the lease lapses. Evidence is measured, never assumed: probe DMs across the
//! fault, the node's own `impairment_dropped_total` / `impairment_delayed_total`, and the
//! impairment lists after the revert.

use std::collections::BTreeMap;
use std::sync::Mutex;
use std::time::{Duration, Instant};

use serde_json::{Value, json};
use soak_api::Impairment;
use soak_api::counters::{IMPAIRMENT_DELAYED, IMPAIRMENT_DROPPED};
use soak_gates::model::{Check, CoolingCheck, FaultEvidence, HealCheck};

use super::cooling::CoolingMonitor;
use super::nemesis::{Fault, FaultCtx, FaultError, FaultFuture, WorkloadsOutcome, now_ms};
use super::probe::{self, DmProbe};
use super::select::Targets;
use super::spec::{FaultKind, FaultSpec};
use crate::api::NodeApi;

/// How long a partition may take to heal before the clean check gives up.
const HEAL_DEADLINE: Duration = Duration::from_secs(60);
/// How long the clean check of a delay or loss waits for probes back near the baseline.
const SETTLE_DEADLINE: Duration = Duration::from_secs(15);

/// A probe pair `(from, to)` of fleet indices.
type Pair = (usize, usize);

/// An impairment-backed fault.
pub struct ImpairFault {
    spec: FaultSpec,
    targets: Targets,
    /// Impairment id prefix of this fault: `<run tag>.<window>`.
    prefix: String,
    /// What was posted where: node index → impairments.
    posted: Mutex<Vec<(usize, Impairment)>>,
    /// Probe round trip before the fault, µs (delay).
    baseline_rtt_us: Mutex<Option<u64>>,
    /// Heal measurement of a partition's clean check.
    heal: Mutex<Option<HealCheck>>,
    cooling: tokio::sync::Mutex<Option<CoolingMonitor>>,
}

impl ImpairFault {
    /// A delay, loss or partition fault.
    pub fn new(spec: FaultSpec, targets: Targets, prefix: String) -> Self {
        ImpairFault {
            spec,
            targets,
            prefix,
            posted: Mutex::new(Vec::new()),
            baseline_rtt_us: Mutex::new(None),
            heal: Mutex::new(None),
            cooling: tokio::sync::Mutex::new(None),
        }
    }

    /// The impairments this fault holds on which node (pure; from the targets).
    fn plan<A: NodeApi>(&self, cx: &FaultCtx<A>) -> Vec<(usize, Impairment)> {
        let lease_ms = u64::try_from(cx.lease.as_millis())
            .unwrap_or(u64::MAX)
            .max(1);
        let mut out = Vec::new();
        let mut push = |node: usize, peer: Option<String>, one_way: bool| {
            let n = out.len();
            out.push((
                node,
                Impairment {
                    id: Some(format!("{}.{n}", self.prefix)),
                    peer,
                    delay_ms: if self.spec.kind == FaultKind::Delay {
                        self.spec.delay_ms
                    } else {
                        0
                    },
                    jitter_ms: if self.spec.kind == FaultKind::Delay {
                        self.spec.jitter_ms
                    } else {
                        0
                    },
                    loss: if self.spec.kind == FaultKind::Loss {
                        self.spec.loss
                    } else {
                        0.0
                    },
                    partition: self.spec.kind == FaultKind::Partition,
                    one_way,
                    expires_in_ms: lease_ms,
                },
            ));
        };
        match self.spec.kind {
            FaultKind::Partition => {
                for x in cx.indices(&self.targets.a) {
                    for y in cx.indices(&self.targets.b) {
                        let peer_of = |i: usize| Some(cx.nodes[i].peer_id().to_owned());
                        push(x, peer_of(y), self.targets.one_way);
                        if !self.targets.one_way {
                            push(y, peer_of(x), false);
                        }
                    }
                }
            }
            _ => {
                // Delay and loss shape the targets' outgoing overlay datagrams to every peer.
                for t in cx.indices(&self.targets.nodes) {
                    push(t, None, false);
                }
            }
        }
        out
    }

    async fn post_all<A: NodeApi>(
        &self,
        cx: &FaultCtx<A>,
        plan: &[(usize, Impairment)],
    ) -> Result<(), FaultError> {
        let results = futures::future::join_all(
            plan.iter()
                .map(|(node, imp)| cx.nodes[*node].add_impairment(imp)),
        )
        .await;
        for result in results {
            result?;
        }
        Ok(())
    }

    /// Probe pairs `(from, to)`: for delay/loss, non-targets → targets; for a partition, the
    /// cut pairs (first element) and a sample of uncut pairs (second).
    fn probe_pairs<A: NodeApi>(&self, cx: &FaultCtx<A>) -> (Vec<Pair>, Vec<Pair>) {
        let names: Vec<String> = cx.nodes.iter().map(|n| n.name().to_owned()).collect();
        match self.spec.kind {
            FaultKind::Partition => {
                let (cut, uncut, _) = probe::partition_pairs(&names, &self.targets);
                (cut, uncut)
            }
            _ => {
                let targets = cx.indices(&self.targets.nodes);
                let others: Vec<usize> =
                    (0..names.len()).filter(|i| !targets.contains(i)).collect();
                let pairs = targets
                    .iter()
                    .flat_map(|&t| others.iter().take(3).map(move |&o| (o, t)))
                    .collect();
                (pairs, Vec::new())
            }
        }
    }

    /// Sum of the impairment effect counters over the nodes holding this fault.
    async fn effect_counters<A: NodeApi>(&self, cx: &FaultCtx<A>) -> Option<(u64, u64)> {
        let holders: std::collections::BTreeSet<usize> =
            self.posted_now().iter().map(|(n, _)| *n).collect();
        let mut dropped = 0;
        let mut delayed = 0;
        for node in holders {
            let d = cx.nodes[node].diagnostics().await.ok()?;
            dropped += d.counters.get(IMPAIRMENT_DROPPED).copied()?;
            delayed += d.counters.get(IMPAIRMENT_DELAYED).copied()?;
        }
        Some((dropped, delayed))
    }

    fn posted_now(&self) -> Vec<(usize, Impairment)> {
        self.posted.lock().map(|p| p.clone()).unwrap_or_default()
    }

    /// Probe timeout for this fault: long enough to see a delayed ACK come back.
    fn ack_timeout(&self) -> Duration {
        match self.spec.kind {
            FaultKind::Delay => {
                Duration::from_millis(self.spec.delay_ms + self.spec.jitter_ms + 2_000)
            }
            FaultKind::Partition => Duration::from_millis(400),
            _ => Duration::from_millis(2_000),
        }
    }
}

fn probe_json(probes: &[DmProbe]) -> Value {
    serde_json::to_value(probes).unwrap_or(Value::Null)
}

impl<A: NodeApi + 'static> Fault<A> for ImpairFault {
    fn apply<'a>(&'a self, cx: &'a FaultCtx<A>) -> FaultFuture<'a, Result<Value, FaultError>> {
        Box::pin(async move {
            // The baseline a delay is measured against, before anything is applied.
            if self.spec.kind == FaultKind::Delay {
                let (pairs, _) = self.probe_pairs(cx);
                let before = probe::dm_pairs(&cx.nodes, &pairs, Duration::from_secs(2)).await;
                if let Ok(mut b) = self.baseline_rtt_us.lock() {
                    *b = probe::median_rtt_us(&before);
                }
            }
            if self.spec.cooling {
                let monitor = CoolingMonitor::start(cx, &self.targets, &self.prefix).await;
                *self.cooling.lock().await = monitor.ok();
            }
            let plan = self.plan(cx);
            if let Ok(mut posted) = self.posted.lock() {
                *posted = plan.clone();
            }
            self.post_all(cx, &plan).await?;
            let per_node: BTreeMap<String, usize> =
                plan.iter().fold(BTreeMap::new(), |mut m, (n, _)| {
                    *m.entry(cx.nodes[*n].name().to_owned()).or_default() += 1;
                    m
                });
            Ok(json!({
                "impairments": plan.len(),
                "per_node": per_node,
                "lease_ms": cx.lease.as_millis() as u64,
                "example": plan.first().map(|(_, i)| i.clone()),
            }))
        })
    }

    fn verify_effective<'a>(&'a self, cx: &'a FaultCtx<A>) -> FaultFuture<'a, Check> {
        Box::pin(async move {
            let before = self.effect_counters(cx).await;
            let (pairs, uncut) = self.probe_pairs(cx);
            let mut last = Check::NotChecked {
                reason: "no probe ran".into(),
            };
            // A few rounds: the first datagrams after an apply may still be in flight.
            for round in 0..3 {
                let probes = probe::dm_pairs(&cx.nodes, &pairs, self.ack_timeout()).await;
                let after = self.effect_counters(cx).await;
                let counted = match (before, after) {
                    (Some(b), Some(a)) => Some((a.0.saturating_sub(b.0), a.1.saturating_sub(b.1))),
                    _ => None,
                };
                last = match self.spec.kind {
                    FaultKind::Delay => {
                        let baseline = self.baseline_rtt_us.lock().ok().and_then(|b| *b);
                        let during = probe::median_rtt_us(&probes);
                        let tolerance = (self.spec.delay_ms / 10).max(50);
                        let need_us = baseline.unwrap_or(0)
                            + (self.spec.delay_ms - tolerance.min(self.spec.delay_ms)) * 1000;
                        let evidence = json!({
                            "baseline_rtt_us": baseline, "during_rtt_us": during,
                            "required_rtt_us": need_us, "delayed_datagrams": counted.map(|c| c.1),
                            "probes": probe_json(&probes), "round": round,
                        });
                        match during {
                            Some(d) if d >= need_us && counted.is_none_or(|c| c.1 > 0) => {
                                Check::Shown {
                                    summary: format!(
                                        "probe round trips to the target rose from {} ms to {} ms (≥ {} ms needed)",
                                        baseline.unwrap_or(0) / 1000,
                                        d / 1000,
                                        need_us / 1000
                                    ),
                                    evidence,
                                }
                            }
                            Some(d) => Check::NotShown {
                                summary: format!(
                                    "probe round trips to the target {} ms, not ≥ {} ms (baseline {} ms)",
                                    d / 1000,
                                    need_us / 1000,
                                    baseline.unwrap_or(0) / 1000
                                ),
                                evidence,
                            },
                            None => Check::NotShown {
                                summary: "no probe to the target was acknowledged".into(),
                                evidence,
                            },
                        }
                    }
                    FaultKind::Loss => {
                        let evidence = json!({
                            "dropped_datagrams": counted.map(|c| c.0),
                            "probes": probe_json(&probes), "round": round,
                        });
                        match counted {
                            Some((dropped, _)) if dropped > 0 => Check::Shown {
                                summary: format!(
                                    "the targets dropped {dropped} datagrams during {} probes",
                                    probes.len()
                                ),
                                evidence,
                            },
                            Some(_) => Check::NotShown {
                                summary: "no datagram was dropped during the probes".into(),
                                evidence,
                            },
                            None => Check::NotShown {
                                summary: "the targets' drop counters could not be read".into(),
                                evidence,
                            },
                        }
                    }
                    _ => {
                        // Partition: across the cut every probe fails, within each side every
                        // probe is acknowledged, and the cut nodes count drops.
                        let within =
                            probe::dm_pairs(&cx.nodes, &uncut, Duration::from_secs(2)).await;
                        let evidence = json!({
                            "cut_probes": probe_json(&probes), "uncut_probes": probe_json(&within),
                            "dropped_datagrams": counted.map(|c| c.0), "round": round,
                        });
                        if let Some(not_shown) = probe::cut_not_shown(&probes, &within, &evidence) {
                            not_shown
                        } else if counted.is_some_and(|c| c.0 == 0) {
                            Check::NotShown {
                                summary:
                                    "probes failed but the nodes dropped nothing (cause unproven)"
                                        .into(),
                                evidence,
                            }
                        } else {
                            Check::Shown {
                                summary: format!(
                                    "{} probes across the cut failed, {} within the sides were acknowledged",
                                    probes.len(),
                                    within.len()
                                ),
                                evidence,
                            }
                        }
                    }
                };
                if last.is_shown() {
                    break;
                }
            }
            last
        })
    }

    fn renew<'a>(&'a self, cx: &'a FaultCtx<A>) -> FaultFuture<'a, Result<(), FaultError>> {
        Box::pin(async move { self.post_all(cx, &self.posted_now()).await })
    }

    fn revert<'a>(&'a self, cx: &'a FaultCtx<A>) -> FaultFuture<'a, Result<Value, FaultError>> {
        Box::pin(async move {
            let posted = self.posted_now();
            let results = futures::future::join_all(posted.iter().map(|(node, imp)| async move {
                let id = imp.id.clone().unwrap_or_default();
                match cx.nodes[*node].remove_impairment(&id).await {
                    Ok(_) => Ok(()),
                    // Already gone (lapsed, or removed by an earlier attempt): idempotent.
                    Err(err) if err.is_not_found() => Ok(()),
                    Err(err) => Err(err),
                }
            }))
            .await;
            let failed: Vec<String> = results
                .iter()
                .filter_map(|r| r.as_ref().err().map(|e| e.to_string()))
                .collect();
            if let Some(first) = failed.first() {
                return Err(FaultError::Other(format!(
                    "{} of {} impairments could not be removed: {first}",
                    failed.len(),
                    posted.len()
                )));
            }
            Ok(json!({ "removed": posted.len() }))
        })
    }

    fn verify_clean<'a>(&'a self, cx: &'a FaultCtx<A>) -> FaultFuture<'a, Check> {
        Box::pin(async move {
            // 1. None of ours is held anywhere we put one.
            let posted = self.posted_now();
            let holders: std::collections::BTreeSet<usize> =
                posted.iter().map(|(n, _)| *n).collect();
            let mut left = Vec::new();
            for node in holders {
                match cx.nodes[node].impairments().await {
                    Ok(list) => left.extend(
                        list.iter()
                            .filter(|i| {
                                i.id.as_deref()
                                    .is_some_and(|id| id.starts_with(&self.prefix))
                            })
                            .map(|i| {
                                format!(
                                    "{} still holds {}",
                                    cx.nodes[node].name(),
                                    i.id.clone().unwrap_or_default()
                                )
                            }),
                    ),
                    Err(err) => {
                        return Check::NotChecked {
                            reason: format!("cannot list impairments: {err}"),
                        };
                    }
                }
            }
            if !left.is_empty() {
                return Check::NotShown {
                    summary: left.join(", "),
                    evidence: json!({ "left": left }),
                };
            }
            // 2. The probes are back: for a partition every disturbed pair (a one-way cut's
            //    reverse too), for delay and loss the probes to the targets.
            let pairs = match self.spec.kind {
                FaultKind::Partition => {
                    let names: Vec<String> = cx.nodes.iter().map(|n| n.name().to_owned()).collect();
                    probe::partition_pairs(&names, &self.targets).2
                }
                _ => self.probe_pairs(cx).0,
            };
            let started = Instant::now();
            let deadline = if self.spec.kind == FaultKind::Partition {
                HEAL_DEADLINE
            } else {
                SETTLE_DEADLINE
            };
            let baseline = self.baseline_rtt_us.lock().ok().and_then(|b| *b);
            loop {
                // Pairs through a node that does not answer at all (it died, or someone else
                // stopped it) cannot show anything about this fault: left out, and named.
                let (pairs, down) =
                    probe::answering_pairs(&cx.nodes, &pairs, cx.probe_timeout).await;
                if pairs.is_empty() {
                    if started.elapsed() >= deadline {
                        return Check::NotChecked {
                            reason: format!(
                                "no probe pair left to show it clean: {} not answering",
                                down.join(", ")
                            ),
                        };
                    }
                    tokio::time::sleep(Duration::from_millis(250)).await;
                    continue;
                }
                let left_out = if down.is_empty() {
                    String::new()
                } else {
                    format!(" ({} not answering: its pairs left out)", down.join(", "))
                };
                let probes = probe::dm_pairs(&cx.nodes, &pairs, Duration::from_secs(2)).await;
                let failing: Vec<String> = probes
                    .iter()
                    .filter(|p| !p.acked)
                    .map(|p| format!("{}→{}", p.from, p.to))
                    .collect();
                let settled = match (self.spec.kind, baseline) {
                    (FaultKind::Delay, Some(b)) => probe::median_rtt_us(&probes)
                        .is_some_and(|d| d <= b + (self.spec.delay_ms / 5).max(50) * 1000),
                    _ => true,
                };
                let elapsed = started.elapsed();
                if failing.is_empty() && settled {
                    if self.spec.kind == FaultKind::Partition
                        && let Ok(mut heal) = self.heal.lock()
                    {
                        *heal = Some(HealCheck {
                            pairs: pairs.len() as u64,
                            healed_after_ms: Some(elapsed.as_millis() as u64),
                            still_failing: Vec::new(),
                        });
                    }
                    return Check::Shown {
                        summary: format!(
                            "no impairment of ours left; {} probes acknowledged{} after {} ms{left_out}",
                            probes.len(),
                            if self.spec.kind == FaultKind::Delay {
                                " near the baseline"
                            } else {
                                ""
                            },
                            elapsed.as_millis()
                        ),
                        evidence: json!({ "probes": probe_json(&probes), "after_ms": elapsed.as_millis() as u64, "not_answering": down }),
                    };
                }
                if elapsed >= deadline {
                    if self.spec.kind == FaultKind::Partition
                        && let Ok(mut heal) = self.heal.lock()
                    {
                        *heal = Some(HealCheck {
                            pairs: pairs.len() as u64,
                            healed_after_ms: None,
                            still_failing: failing.clone(),
                        });
                    }
                    return Check::NotShown {
                        summary: if failing.is_empty() {
                            format!(
                                "probe round trips still above the baseline after {} s",
                                deadline.as_secs()
                            )
                        } else {
                            format!(
                                "{} probe pairs still failing after {} s: {}{left_out}",
                                failing.len(),
                                deadline.as_secs(),
                                failing.join(", ")
                            )
                        },
                        evidence: json!({ "probes": probe_json(&probes), "not_answering": down }),
                    };
                }
                tokio::time::sleep(Duration::from_millis(250)).await;
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
            if self.spec.kind == FaultKind::Partition {
                evidence.heal = self.heal.lock().ok().and_then(|h| h.clone());
            }
            if self.spec.cooling {
                let monitor = self.cooling.lock().await.take();
                evidence.cooling = Some(match monitor {
                    Some(m) => {
                        m.finish(evidence.reverted_at_ms.unwrap_or_else(now_ms))
                            .await
                    }
                    None => CoolingCheck {
                        suppressed: None,
                        recovered: None,
                        detail: "the cooling monitor could not start".into(),
                    },
                });
            }
        })
    }
}
