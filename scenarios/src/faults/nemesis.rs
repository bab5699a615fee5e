//! The nemesis: drives every fault through the same lifecycle — apply → verify effective →
//! (hold, lease renewed) → revert → verify clean → conclude — journaling each step before it
//! acts and after it completes, and keeps every applied fault in a [`FaultRegistry`] so a
//! teardown outside the window's (abortable) task can revert whatever is still held on any exit
//! path: normal end, error, panic, timeout, SIGINT, SIGTERM.

use std::future::Future;
use std::pin::Pin;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use serde_json::{Value, json};
use soak_gates::model::{
    Check, Exemption, FaultEvidence, PhaseAResult, ScenarioRecord, ScenarioStatus,
};

use super::control::{ControlError, NodeControl};
use super::journal::{Journal, JournalEntry, Step};
use super::schedule::ScheduledFault;
use super::select::Targets;
use super::spec::Backend;
use crate::api::{NodeApi, NodeApiError};

/// A boxed future borrowing the fault and its context.
pub type FaultFuture<'a, T> = Pin<Box<dyn Future<Output = T> + Send + 'a>>;

/// What every fault implementation may use.
pub struct FaultCtx<A> {
    /// The fleet's admin API handles, in fleet order.
    pub nodes: Arc<Vec<A>>,
    /// Process control of the fleet's nodes.
    pub control: Arc<dyn NodeControl>,
    /// Lease of node-held faults (impairment expiry): renewed every lease/3 while the fault
    /// holds, so an orchestrator that dies leaves nothing behind once it lapses.
    pub lease: Duration,
    /// Prefix of every impairment id this run creates (`soak.<run tag>`), so a later sweep can
    /// tell ours from anyone else's.
    pub tag: String,
    /// Per-request timeout of probes that expect an answer.
    pub probe_timeout: Duration,
}

impl<A: NodeApi> FaultCtx<A> {
    /// Index of the node named `name`.
    pub fn index(&self, name: &str) -> Option<usize> {
        self.nodes.iter().position(|n| n.name() == name)
    }

    /// Indices of `names` (unknown names are skipped; selectors only yield fleet names).
    pub fn indices(&self, names: &[String]) -> Vec<usize> {
        names.iter().filter_map(|n| self.index(n)).collect()
    }
}

/// Why a lifecycle step failed.
#[derive(Debug, thiserror::Error)]
pub enum FaultError {
    /// The backend cannot run this fault here (recorded as SKIPPED).
    #[error("{0}")]
    Unsupported(String),
    /// An admin API call failed.
    #[error(transparent)]
    Api(#[from] NodeApiError),
    /// A process-control action failed.
    #[error(transparent)]
    Control(#[from] ControlError),
    /// Anything else, said plainly.
    #[error("{0}")]
    Other(String),
}

impl FaultError {
    /// The reason this fault cannot run here, when the error says so: an apply that fails this
    /// way changed nothing, and the fault is recorded SKIPPED (never a pass, never a failure of
    /// the system under test).
    pub fn unsupported(&self) -> Option<&str> {
        match self {
            FaultError::Unsupported(reason) => Some(reason),
            _ => None,
        }
    }
}

/// What the window's workloads produced that a fault may conclude from.
#[derive(Debug, Default)]
pub struct WorkloadsOutcome {
    /// The window's Phase A matrix, when it ran.
    pub phase_a: Option<PhaseAResult>,
}

/// One fault kind's implementation of the lifecycle. Implementations keep their own state
/// behind interior mutability: the same value is driven by the window task and, after an
/// interruption, by the teardown. `revert` must be idempotent.
pub trait Fault<A: NodeApi>: Send + Sync {
    /// Applies the fault; returns what it did.
    fn apply<'a>(&'a self, cx: &'a FaultCtx<A>) -> FaultFuture<'a, Result<Value, FaultError>>;
    /// Shows, by measurement, that the fault took effect.
    fn verify_effective<'a>(&'a self, cx: &'a FaultCtx<A>) -> FaultFuture<'a, Check>;
    /// Renews the fault's lease (node-held faults); the default does nothing.
    fn renew<'a>(&'a self, _cx: &'a FaultCtx<A>) -> FaultFuture<'a, Result<(), FaultError>> {
        Box::pin(async { Ok(()) })
    }
    /// Undoes the fault (idempotent: the teardown may call it again).
    fn revert<'a>(&'a self, cx: &'a FaultCtx<A>) -> FaultFuture<'a, Result<Value, FaultError>>;
    /// Shows, by measurement, that the fleet is clean of the fault.
    fn verify_clean<'a>(&'a self, cx: &'a FaultCtx<A>) -> FaultFuture<'a, Check>;
    /// Kind-specific evidence once the window's workloads ran (heal, cooling, recovery, first
    /// attempts); the default adds nothing.
    fn conclude<'a>(
        &'a self,
        _cx: &'a FaultCtx<A>,
        _outcome: &'a WorkloadsOutcome,
        _evidence: &'a mut FaultEvidence,
    ) -> FaultFuture<'a, ()> {
        Box::pin(async {})
    }
}

/// Where a fault is in its lifecycle (ordered: later states compare greater).
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub enum Phase {
    /// Not started.
    Planned,
    /// Apply began (something may be held: revert is needed).
    Applying,
    /// Applied (and checked for effect).
    Applied,
    /// Reverted (clean check may still be pending).
    Reverted,
    /// Done: reverted and checked.
    Done,
}

/// One scheduled fault with its targets, implementation and evidence so far.
pub struct ActiveFault<A> {
    /// What and when.
    pub scheduled: ScheduledFault,
    /// Resolved targets.
    pub targets: Targets,
    /// The fleet's node names (for exemptions).
    pub fleet: Vec<String>,
    /// How it is applied.
    pub backend: Backend,
    fault: Box<dyn Fault<A>>,
    state: Mutex<(Phase, FaultEvidence)>,
    /// Why the fault was SKIPPED at apply (its backend cannot run it here), if it was.
    skipped: Mutex<Option<String>>,
    /// Serializes lifecycle steps between the window task and the teardown.
    step_lock: tokio::sync::Mutex<()>,
}

impl<A: NodeApi> ActiveFault<A> {
    /// A fault ready to run.
    pub fn new(
        scheduled: ScheduledFault,
        targets: Targets,
        fleet: Vec<String>,
        backend: Backend,
        fault: Box<dyn Fault<A>>,
    ) -> Self {
        let evidence = FaultEvidence {
            kind: scheduled.spec.kind.as_str().to_owned(),
            backend: backend.as_str().to_owned(),
            applied_at_ms: None,
            reverted_at_ms: None,
            effective: Check::NotChecked {
                reason: "not applied".into(),
            },
            clean: Check::NotChecked {
                reason: "not reverted".into(),
            },
            recoveries: Vec::new(),
            heal: None,
            cooling: None,
            first_attempt: None,
        };
        ActiveFault {
            scheduled,
            targets,
            fleet,
            backend,
            fault,
            state: Mutex::new((Phase::Planned, evidence)),
            skipped: Mutex::new(None),
            step_lock: tokio::sync::Mutex::new(()),
        }
    }

    /// The lifecycle phase now.
    pub fn phase(&self) -> Phase {
        self.with(|(phase, _)| *phase)
    }

    /// A copy of the evidence so far.
    pub fn evidence(&self) -> FaultEvidence {
        self.with(|(_, evidence)| evidence.clone())
    }

    fn with<T>(&self, f: impl FnOnce(&mut (Phase, FaultEvidence)) -> T) -> T {
        let mut guard = match self.state.lock() {
            Ok(guard) => guard,
            Err(poisoned) => poisoned.into_inner(),
        };
        f(&mut guard)
    }

    fn entry(&self, step: Step, of: Option<Step>, evidence: Value, detail: String) -> JournalEntry {
        JournalEntry {
            fault: self.scheduled.instance.clone(),
            scenario: self.scheduled.spec.name.clone(),
            kind: self.scheduled.spec.kind.as_str().to_owned(),
            backend: self.backend.as_str().to_owned(),
            window: self.scheduled.window,
            targets: self.targets.nodes.clone(),
            step,
            of,
            at_ms: now_ms(),
            evidence,
            detail,
        }
    }

    /// The journal line recording the planned targets.
    pub fn planned_entry(&self) -> JournalEntry {
        self.entry(
            Step::Planned,
            None,
            json!({
                "selector": self.targets.selector,
                "side_a": self.targets.a,
                "side_b": self.targets.b,
                "one_way": self.targets.one_way,
                "at_ms": self.scheduled.spec.at.as_millis() as u64,
                "hold_ms": self.scheduled.spec.hold.as_millis() as u64,
            }),
            String::new(),
        )
    }

    /// Apply, then verify effective. Journals before and after each step. An apply that fails
    /// leaves the phase at `Applying`, so the revert still runs.
    pub async fn begin(&self, cx: &FaultCtx<A>, journal: &dyn Journal) {
        let _step = self.step_lock.lock().await;
        if self.phase() != Phase::Planned {
            return;
        }
        if let Err(err) = journal
            .record(self.entry(Step::Apply, None, Value::Null, String::new()))
            .await
        {
            // The intent is not on disk: do not act.
            self.with(|(_, ev)| {
                ev.effective = Check::NotChecked {
                    reason: format!("not applied: the fault journal could not be written ({err})"),
                }
            });
            return;
        }
        self.with(|(phase, _)| *phase = Phase::Applying);
        match self.fault.apply(cx).await {
            Ok(done) => {
                let at = now_ms();
                self.with(|(phase, ev)| {
                    *phase = Phase::Applied;
                    ev.applied_at_ms = Some(at);
                });
                let _ = journal
                    .record(self.entry(Step::Applied, None, done, String::new()))
                    .await;
            }
            Err(err) if err.unsupported().is_some() => {
                // Nothing was changed: SKIPPED with the reason, nothing to revert.
                let reason = err.unsupported().unwrap_or_default().to_owned();
                self.with(|(phase, ev)| {
                    *phase = Phase::Done;
                    ev.effective = Check::NotChecked {
                        reason: format!("skipped: {reason}"),
                    };
                    ev.clean = Check::NotChecked {
                        reason: "skipped: nothing was applied".into(),
                    };
                });
                if let Ok(mut skipped) = self.skipped.lock() {
                    *skipped = Some(reason.clone());
                }
                let _ = journal
                    .record(self.entry(Step::Skipped, None, Value::Null, reason))
                    .await;
                return;
            }
            Err(err) => {
                let detail = format!("apply failed: {err}");
                self.with(|(_, ev)| {
                    ev.effective = Check::NotChecked {
                        reason: detail.clone(),
                    }
                });
                let _ = journal
                    .record(self.entry(Step::Failed, Some(Step::Apply), Value::Null, detail))
                    .await;
                return;
            }
        }
        let _ = journal
            .record(self.entry(Step::VerifyEffective, None, Value::Null, String::new()))
            .await;
        let check = self.fault.verify_effective(cx).await;
        let (step, of) = match check {
            Check::Shown { .. } => (Step::Effective, None),
            _ => (Step::Failed, Some(Step::VerifyEffective)),
        };
        let (evidence, detail) = check_parts(&check);
        self.with(|(_, ev)| ev.effective = check.clone());
        let _ = journal.record(self.entry(step, of, evidence, detail)).await;
    }

    /// Renews the lease once; a failure is noted in the evidence (the fault may have lapsed
    /// early, so what the window saw under it is weaker evidence).
    pub async fn renew(&self, cx: &FaultCtx<A>) -> Result<(), FaultError> {
        // Serialized with `end`, so a renewal never lands after the revert.
        let _step = self.step_lock.lock().await;
        if self.phase() != Phase::Applied {
            return Ok(());
        }
        self.fault.renew(cx).await
    }

    /// Revert, then verify clean (idempotent: returns at once when already done). Runs only
    /// when something may be held (apply began).
    pub async fn end(&self, cx: &FaultCtx<A>, journal: &dyn Journal) {
        let _step = self.step_lock.lock().await;
        let phase = self.phase();
        if phase == Phase::Planned || phase == Phase::Done {
            return;
        }
        if phase < Phase::Reverted {
            let _ = journal
                .record(self.entry(Step::Revert, None, Value::Null, String::new()))
                .await;
            match self.fault.revert(cx).await {
                Ok(done) => {
                    let at = now_ms();
                    self.with(|(phase, ev)| {
                        *phase = Phase::Reverted;
                        ev.reverted_at_ms = Some(at);
                    });
                    let _ = journal
                        .record(self.entry(Step::Reverted, None, done, String::new()))
                        .await;
                }
                Err(err) => {
                    let detail = format!("revert failed: {err}");
                    let _ = journal
                        .record(self.entry(
                            Step::Failed,
                            Some(Step::Revert),
                            Value::Null,
                            detail.clone(),
                        ))
                        .await;
                    // Still check: the revert may have half-worked, and residue must be named.
                }
            }
        }
        let _ = journal
            .record(self.entry(Step::VerifyClean, None, Value::Null, String::new()))
            .await;
        let check = self.fault.verify_clean(cx).await;
        let (step, of) = match check {
            Check::Shown { .. } => (Step::Clean, None),
            _ => (Step::Failed, Some(Step::VerifyClean)),
        };
        let (evidence, detail) = check_parts(&check);
        self.with(|(phase, ev)| {
            ev.clean = check.clone();
            if check.is_shown() {
                *phase = Phase::Done;
            }
        });
        let _ = journal.record(self.entry(step, of, evidence, detail)).await;
    }

    /// Kind-specific conclusions once the workloads ran.
    pub async fn conclude(&self, cx: &FaultCtx<A>, outcome: &WorkloadsOutcome) {
        if self.evidence().applied_at_ms.is_none() {
            return;
        }
        let mut evidence = self.evidence();
        self.fault.conclude(cx, outcome, &mut evidence).await;
        self.with(|(_, ev)| {
            // A fault may withdraw its effect evidence here (a host lost while it held).
            ev.effective = evidence.effective;
            ev.recoveries = evidence.recoveries;
            ev.heal = evidence.heal;
            ev.cooling = evidence.cooling;
            ev.first_attempt = evidence.first_attempt;
        });
    }

    /// The scenario record of this fault for its window.
    pub fn record(&self) -> ScenarioRecord {
        let evidence = self.evidence();
        let skipped = self.skipped.lock().ok().and_then(|s| s.clone());
        let status = if let Some(reason) = skipped {
            ScenarioStatus::Skipped { reason }
        } else if evidence.applied_at_ms.is_none() {
            ScenarioStatus::Failed {
                error: evidence.effective.summary().to_owned(),
            }
        } else if !evidence.effective.is_shown() {
            ScenarioStatus::Failed {
                error: format!("not shown effective: {}", evidence.effective.summary()),
            }
        } else if !evidence.clean.is_shown() {
            ScenarioStatus::Failed {
                error: format!("not shown clean: {}", evidence.clean.summary()),
            }
        } else {
            ScenarioStatus::Completed
        };
        // A fault that never took hold grants no exemption.
        let exemptions: Vec<Exemption> = if evidence.applied_at_ms.is_some() {
            self.scheduled
                .spec
                .exempt
                .iter()
                .filter_map(|e| e.materialize(&self.targets, &self.fleet))
                .collect()
        } else {
            Vec::new()
        };
        ScenarioRecord {
            name: self.scheduled.spec.name.clone(),
            status,
            targets: self.targets.nodes.clone(),
            exemptions,
            recovery: None,
            fault: Some(Box::new(evidence)),
        }
    }
}

/// The journal's evidence and one-line detail of a check.
fn check_parts(check: &Check) -> (Value, String) {
    match check {
        Check::Shown { summary, evidence } | Check::NotShown { summary, evidence } => {
            (evidence.clone(), summary.clone())
        }
        Check::NotChecked { reason } => (Value::Null, reason.clone()),
    }
}

/// The run's applied faults, shared by the window tasks and the teardown.
pub struct FaultRegistry<A> {
    faults: Mutex<Vec<Arc<ActiveFault<A>>>>,
}

impl<A> Default for FaultRegistry<A> {
    fn default() -> Self {
        FaultRegistry {
            faults: Mutex::new(Vec::new()),
        }
    }
}

impl<A: NodeApi> FaultRegistry<A> {
    /// Registers a fault before it is applied.
    pub fn register(&self, fault: Arc<ActiveFault<A>>) {
        match self.faults.lock() {
            Ok(mut list) => list.push(fault),
            Err(poisoned) => poisoned.into_inner().push(fault),
        }
    }

    /// Faults that may still hold something (apply began, not yet done).
    pub fn outstanding(&self) -> Vec<Arc<ActiveFault<A>>> {
        let list = match self.faults.lock() {
            Ok(list) => list.clone(),
            Err(poisoned) => poisoned.into_inner().clone(),
        };
        list.into_iter()
            .filter(|f| {
                matches!(
                    f.phase(),
                    Phase::Applying | Phase::Applied | Phase::Reverted
                )
            })
            .collect()
    }

    /// Every registered fault.
    pub fn all(&self) -> Vec<Arc<ActiveFault<A>>> {
        match self.faults.lock() {
            Ok(list) => list.clone(),
            Err(poisoned) => poisoned.into_inner().clone(),
        }
    }

    /// Reverts and checks every outstanding fault, all at once, within `deadline`. Faults the
    /// deadline cut short keep their last evidence (a clean check never run is NOT a pass).
    pub async fn teardown(&self, cx: &FaultCtx<A>, journal: &dyn Journal, deadline: Duration) {
        let outstanding = self.outstanding();
        if outstanding.is_empty() {
            return;
        }
        let all = futures::future::join_all(outstanding.iter().map(|f| f.end(cx, journal)));
        let _ = tokio::time::timeout(deadline, all).await;
    }
}

/// The orchestrator clock, unix ms.
pub fn now_ms() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| u64::try_from(d.as_millis()).unwrap_or(u64::MAX))
        .unwrap_or(0)
}
