//! Host faults over SSH: kernel state on real hosts — `tc` qdiscs that shape only the target
//! peers' overlay traffic, iptables/ip6tables partitions in our own chains, restarts through the
//! deploy's service manager, SIGSTOP/SIGCONT pauses — each with a host-local dead-man's switch
//! (`soak-node guard`), proven effective and proven gone on the host.
//!
//! Every backend is a pure script builder ([`shape`], [`partition`], [`process`], [`snapshot`],
//! [`residue`], [`guard`], [`caps`]) plus this thin runner over [`Remote`]. The lifecycle, per
//! host and fault, is what the nemesis drives:
//!
//! | step | function | evidence |
//! |---|---|---|
//! | before | [`snapshot`] | [`HostSnapshot`] (firewall and qdiscs, normalised) |
//! | apply | [`apply`] | [`Applied`]: guard armed *first*, then the change, with baselines |
//! | holding | [`renew_guard`] every lease/3 | [`GuardRenewal`]; a missing guard means revert now |
//! | effective | [`verify_effective`] | [`Effective`]: band counters / DROP counters rose, state `T`, new instance |
//! | revert | [`revert`] | [`Reverted`]: the journal's steps, then the guard disarmed |
//! | clean | [`verify_clean`] | [`Clean`]: checks pass, host identical to the snapshot outside our objects |
//! | before a run | [`sweep`] | [`HostResidue`] of earlier runs, reverted |
//! | after a run | [`audit`] | [`HostResidue`] for `faults/residue.json` |
//!
//! Errors are [`HostFaultError`]s whose [`ErrorClass`] tells the nemesis what a failure means:
//! unsupported here (SKIPPED with the reason), not effective (UNKNOWN), revert failed (NO-GO,
//! residue), unreachable (UNKNOWN while the guard reverts), guard missing (revert now).
//!
//! Privileged steps (tc, iptables, signals, service control, the guard) run through
//! [`Needs::Root`] — `sudo -n` on hosts with `become`; node-management steps through
//! [`Needs::InstallDir`].

pub mod caps;
pub mod guard;
pub mod partition;
pub mod process;
pub mod residue;
pub mod shape;
pub mod snapshot;

use std::collections::BTreeSet;
use std::net::IpAddr;
use std::time::Duration;

use serde::{Deserialize, Serialize};
use soak_api::NodeInfo;
use soak_guard::format::{GuardResult, Step, StepResult, valid_token};
use soak_guard::run::{ArmReport, RenewReport};
use soak_inventory::node::{self, Apply, DeployRecord, NodeConfig, NodeLayout, RunMode};
use soak_inventory::remote::{ExecOutput, Needs, Remote, RemoteError, RemoteErrorKind, sh_quote};

pub use caps::{Availability, Firewall, FirewallBackend, HostCaps, KernelFeature};
pub use partition::{Direction, Member, PartitionRule, RuleCounter};
pub use process::Paused;
pub use residue::{HostResidue, ResidueItem, ResidueKind};
pub use shape::{Limiter, Netem, QdiscStat, RootKind, Shaping};
pub use snapshot::{HostSnapshot, SnapshotDiff};

/// The default lease of a host fault's guard (renewed every lease/3).
pub const DEFAULT_HOST_LEASE: Duration = soak_guard::DEFAULT_LEASE;

/// Limit of one host step.
pub const STEP_TIMEOUT: Duration = Duration::from_secs(30);
/// Limit of a sweep (guards get 20 s to revert).
pub const SWEEP_TIMEOUT: Duration = Duration::from_secs(90);
/// How long a restart waits for the new node.
pub const RESTART_WAIT: Duration = Duration::from_secs(60);

/// A peer whose overlay traffic a shaping fault slows: its address (either family) and overlay
/// UDP port.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
pub struct Peer {
    /// Inventory name.
    pub name: String,
    /// Overlay address.
    pub address: IpAddr,
    /// Overlay UDP port.
    pub port: u16,
}

/// What a fault does on one host.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case", tag = "kind")]
pub enum HostFault {
    /// Shape this host's egress overlay traffic to `peers`.
    Shape {
        /// The peers (one entry per address).
        peers: Vec<Peer>,
        /// netem or a rate cap.
        shaping: Shaping,
    },
    /// Drop overlay traffic per `rules` ([`partition::pair`], [`partition::halves`],
    /// [`partition::one_way`] compute them per host).
    Partition {
        /// This host's rules.
        rules: Vec<PartitionRule>,
    },
    /// Restart the node through the service manager deploy recorded.
    Restart,
    /// SIGSTOP the node's recorded process (SIGCONT on revert).
    Pause,
}

impl HostFault {
    /// `shape`, `partition`, `restart`, `pause`.
    pub fn kind(&self) -> &'static str {
        match self {
            HostFault::Shape { .. } => "shape",
            HostFault::Partition { .. } => "partition",
            HostFault::Restart => "restart",
            HostFault::Pause => "pause",
        }
    }
}

/// One fault on one host, as planned.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct HostFaultPlan {
    /// The run (tags firewall rules: `soak:RUN:TOKEN`).
    pub run_id: String,
    /// The fault instance's token on this host (guard files, owner files, rule tags).
    pub token: String,
    /// What to do.
    pub fault: HostFault,
    /// The guard's lease (renew every lease/3).
    pub lease_ms: u64,
    /// Use this firewall backend instead of the one `iptables` is.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub firewall_backend: Option<FirewallBackend>,
}

impl HostFaultPlan {
    /// A plan with the default lease (30 s).
    pub fn new(run_id: &str, token: &str, fault: HostFault) -> Self {
        HostFaultPlan {
            run_id: run_id.to_string(),
            token: token.to_string(),
            fault,
            lease_ms: u64::try_from(soak_guard::DEFAULT_LEASE.as_millis()).unwrap_or(30_000),
            firewall_backend: None,
        }
    }

    /// The lease.
    pub fn lease(&self) -> Duration {
        Duration::from_millis(self.lease_ms)
    }

    /// Checks the plan (pure).
    pub fn validate(&self) -> Result<(), String> {
        if !valid_token(&self.token) {
            return Err(format!("token {:?}: 1-64 of A-Z a-z 0-9 _ -", self.token));
        }
        let run_ok = !self.run_id.is_empty()
            && self.run_id.len() <= 128
            && self
                .run_id
                .bytes()
                .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'.' | b'_' | b'-' | b':'));
        if !run_ok {
            return Err(format!(
                "run id {:?}: 1-128 of A-Z a-z 0-9 . _ - :",
                self.run_id
            ));
        }
        if self.lease_ms < 1000 {
            return Err(format!("lease {} ms: at least 1000", self.lease_ms));
        }
        match &self.fault {
            HostFault::Shape { peers, shaping } => {
                if peers.is_empty() {
                    return Err("a shaping fault needs at least one peer".into());
                }
                shaping.validate()
            }
            HostFault::Partition { rules } if rules.is_empty() => {
                Err("a partition needs at least one rule on this host".into())
            }
            _ => Ok(()),
        }
    }
}

/// A host fault step failed. Displays as `host `H`: CONTEXT: KIND`.
#[derive(Debug, thiserror::Error)]
#[error("host `{host}`: {context}: {kind}")]
pub struct HostFaultError {
    /// Host name.
    pub host: String,
    /// The step (`apply partition f1`, …).
    pub context: String,
    /// What went wrong.
    #[source]
    pub kind: HostFaultErrorKind,
}

/// What went wrong in a host fault step.
#[derive(Debug, thiserror::Error)]
pub enum HostFaultErrorKind {
    /// The host could not be reached (connection, timeout): evidence is unverifiable; the
    /// guard reverts on the host.
    #[error("unreachable: {0}")]
    Unreachable(#[source] RemoteError),
    /// This host cannot run this fault: recorded SKIPPED with the reason (nothing was changed).
    #[error("unsupported here (skipped): {reason}")]
    Unsupported {
        /// Why, e.g. "kernel lacks sch_netem (CONFIG_NET_SCH_NETEM is not set in /proc/config.gz)".
        reason: String,
    },
    /// Applied, but the host shows no effect.
    #[error("not effective: {summary}")]
    NotEffective {
        /// In words.
        summary: String,
        /// The evidence that shows it.
        evidence: serde_json::Value,
    },
    /// The revert ran but the host is not clean: residue.
    #[error("revert failed: {summary}")]
    RevertFailed {
        /// In words, naming what remains or differs.
        summary: String,
        /// The evidence.
        evidence: serde_json::Value,
    },
    /// No live guard holds the fault (killed, host rebooted) or it fired: revert now.
    #[error("guard missing: {detail}")]
    GuardMissing {
        /// What `guard renew` said.
        detail: String,
        /// The guard's result, when it fired.
        result: Option<Box<GuardResult>>,
    },
    /// Privileged steps cannot run (sudo wants a password, no sudo): fix the host's settings.
    #[error("{0}")]
    Privilege(#[source] RemoteError),
    /// A step ran and failed.
    #[error("{what} failed ({status}): {stderr}")]
    Command {
        /// The step.
        what: String,
        /// Exit status.
        status: String,
        /// Tail of its stderr.
        stderr: String,
    },
    /// The plan is invalid.
    #[error("invalid plan: {0}")]
    Plan(String),
    /// A step printed something unexpected.
    #[error("unexpected output from {what}: {detail}")]
    Output {
        /// The step.
        what: String,
        /// What was wrong.
        detail: String,
    },
}

/// How the nemesis reads a [`HostFaultError`].
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum ErrorClass {
    /// The host did not answer: UNKNOWN (the guard reverts on its own).
    Unreachable,
    /// SKIPPED with the reason (UNKNOWN verdict, never a pass).
    Unsupported,
    /// UNKNOWN naming the fault.
    NotEffective,
    /// NO-GO "fault residue" naming fault and host.
    RevertFailed,
    /// Revert now, then verify clean.
    GuardMissing,
    /// Infrastructure error (exit 69): a step failed, a privilege is missing, the plan is bad.
    Failed,
}

impl HostFaultError {
    /// A failure of `context` on `host` from the remote layer: a refused `sudo` is a privilege
    /// error, a command that ran and failed a command error, anything else (connection, timeout,
    /// a dead SSH master) "unreachable".
    pub fn from_remote(host: &str, context: impl Into<String>, e: RemoteError) -> Self {
        HostFaultError {
            host: host.to_string(),
            context: context.into(),
            kind: match e.kind {
                RemoteErrorKind::Privilege { .. } => HostFaultErrorKind::Privilege(e),
                RemoteErrorKind::Command {
                    what,
                    status,
                    stderr,
                } => HostFaultErrorKind::Command {
                    what,
                    status,
                    stderr,
                },
                _ => HostFaultErrorKind::Unreachable(e),
            },
        }
    }

    /// What this failure means for the verdict.
    pub fn class(&self) -> ErrorClass {
        match &self.kind {
            HostFaultErrorKind::Unreachable(_) => ErrorClass::Unreachable,
            HostFaultErrorKind::Unsupported { .. } => ErrorClass::Unsupported,
            HostFaultErrorKind::NotEffective { .. } => ErrorClass::NotEffective,
            HostFaultErrorKind::RevertFailed { .. } => ErrorClass::RevertFailed,
            HostFaultErrorKind::GuardMissing { .. } => ErrorClass::GuardMissing,
            HostFaultErrorKind::Privilege(_)
            | HostFaultErrorKind::Command { .. }
            | HostFaultErrorKind::Plan(_)
            | HostFaultErrorKind::Output { .. } => ErrorClass::Failed,
        }
    }
}

/// What was changed on the host (enough to revert and verify without the orchestrator's
/// memory: everything here is also in the guard's journal).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case", tag = "kind")]
pub enum Objects {
    /// Our root, band and child qdisc on each device.
    Shape {
        /// Root kind used.
        root: RootKind,
        /// The child qdisc kind (`netem`, `tbf`, `pfifo`, `htb`).
        child: String,
        /// `tc` path.
        tc: String,
        /// Devices shaped.
        devices: Vec<String>,
        /// The child's counters right after applying.
        baseline: Vec<QdiscStat>,
    },
    /// Our rules in SOAK-IN/SOAK-OUT.
    Partition {
        /// The firewall used.
        firewall: Firewall,
        /// The rules' comment (`soak:RUN:TOKEN`).
        comment: String,
        /// The rules.
        rules: Vec<PartitionRule>,
        /// Their counters right after applying.
        baseline: Vec<RuleCounter>,
    },
    /// The paused process.
    Pause(Paused),
    /// The restart (nothing to revert).
    Restart(RestartEvidence),
}

/// What [`apply`] did.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Applied {
    /// Host name.
    pub host: String,
    /// The plan's token.
    pub token: String,
    /// Fault kind.
    pub fault: String,
    /// The guard, armed before the change (none for restarts: nothing to revert).
    pub guard: Option<ArmReport>,
    /// What changed.
    pub objects: Objects,
    /// When the change was made, unix ms (controller clock).
    pub applied_at_ms: u64,
}

/// A restart through the service manager, with its timestamps.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct RestartEvidence {
    /// What was restarted: `systemd unit soak-node-h1.service` or `background process … (pid
    /// file …)` — so a wrong unit is visible in the journal.
    pub service: String,
    /// The run mode deploy recorded.
    pub run_mode: RunMode,
    /// Pid before.
    pub old_pid: Option<u32>,
    /// Instance id before.
    pub old_instance_id: Option<String>,
    /// Pid after.
    pub new_pid: u32,
    /// Instance id after (differs from before: proven effective).
    pub new_instance_id: String,
    /// The peer id (unchanged: same data dir).
    pub peer_id: String,
    /// When the restart was issued, unix ms (controller clock).
    pub issued_at_ms: u64,
    /// When the new process started, unix ms (its `node.json`, host clock).
    pub process_started_at_ms: u64,
    /// When the service manager reported the new node up, unix ms (controller clock).
    pub up_at_ms: u64,
}

/// What [`verify_effective`] saw.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case", tag = "kind")]
pub enum Effective {
    /// Our child qdisc's counters rose on every shaped device.
    Shape {
        /// Counters at apply.
        baseline: Vec<QdiscStat>,
        /// Counters now.
        now: Vec<QdiscStat>,
    },
    /// DROP counters of our rules rose.
    Partition {
        /// Counters at apply.
        baseline: Vec<RuleCounter>,
        /// Counters now.
        now: Vec<RuleCounter>,
        /// Packets dropped since apply.
        dropped: u64,
    },
    /// The process is stopped.
    Pause {
        /// The process.
        paused: Paused,
        /// Its state now (`T`).
        state: String,
    },
    /// A new instance runs.
    Restart(RestartEvidence),
}

/// What [`revert`] did.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Reverted {
    /// The revert steps as they ran.
    pub steps: Vec<StepResult>,
    /// The guard: `disarmed`, `fired` (it had reverted already; its result below), `none`.
    pub guard: String,
    /// The guard's result, when it had fired.
    pub guard_result: Option<GuardResult>,
}

/// What [`verify_clean`] saw on a clean host.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Clean {
    /// The fault's clean checks.
    pub checks: Vec<StepResult>,
    /// The snapshot after the revert.
    pub after: HostSnapshot,
    /// Differences from the snapshot before (empty).
    pub diff: SnapshotDiff,
}

/// What [`renew_guard`] did.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct GuardRenewal {
    /// The guard's report.
    pub report: RenewReport,
    /// When, unix ms (controller clock).
    pub at_ms: u64,
}

fn now_ms() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| u64::try_from(d.as_millis()).unwrap_or(u64::MAX))
}

/// The error context helper: host name and step.
struct Ctx<'a> {
    remote: &'a dyn Remote,
    context: String,
}

impl<'a> Ctx<'a> {
    fn new(remote: &'a dyn Remote, context: impl Into<String>) -> Self {
        Ctx {
            remote,
            context: context.into(),
        }
    }

    fn err(&self, kind: HostFaultErrorKind) -> HostFaultError {
        HostFaultError {
            host: self.remote.name().to_string(),
            context: self.context.clone(),
            kind,
        }
    }

    fn unsupported(&self, reason: impl Into<String>) -> HostFaultError {
        self.err(HostFaultErrorKind::Unsupported {
            reason: reason.into(),
        })
    }

    fn remote_err(&self, e: RemoteError) -> HostFaultError {
        HostFaultError::from_remote(self.remote.name(), self.context.clone(), e)
    }

    fn failed(&self, what: &str, out: &ExecOutput) -> HostFaultError {
        self.err(HostFaultErrorKind::Command {
            what: what.to_string(),
            status: out
                .status
                .map_or_else(|| "killed by a signal".into(), |c| format!("exit {c}")),
            stderr: out.stderr_tail(),
        })
    }

    /// Runs a root script; returns its output whatever the exit status.
    async fn root(
        &self,
        script: &str,
        input: &[u8],
        timeout: Duration,
    ) -> Result<ExecOutput, HostFaultError> {
        self.remote
            .exec_privileged(Needs::Root, script, input, timeout)
            .await
            .map_err(|e| self.remote_err(e))
    }

    /// Runs a root script that must exit 0.
    async fn root_ok(&self, what: &str, script: &str) -> Result<ExecOutput, HostFaultError> {
        let out = self.root(script, &[], STEP_TIMEOUT).await?;
        if out.success() {
            Ok(out)
        } else {
            Err(self.failed(what, &out))
        }
    }
}

/// Finds what the host can do (one read-only round trip).
pub async fn detect(remote: &dyn Remote) -> Result<HostCaps, HostFaultError> {
    let ctx = Ctx::new(remote, "detecting host capabilities");
    let out = ctx
        .root_ok("capability detection", &caps::detect_script(remote.host()))
        .await?;
    Ok(caps::parse(&out.stdout_text()))
}

/// Captures the host's firewall rules and qdiscs (before a fault).
pub async fn snapshot(remote: &dyn Remote) -> Result<HostSnapshot, HostFaultError> {
    let caps = detect(remote).await?;
    snapshot_with(remote, &caps).await
}

async fn snapshot_with(
    remote: &dyn Remote,
    caps: &HostCaps,
) -> Result<HostSnapshot, HostFaultError> {
    let ctx = Ctx::new(remote, "taking a host snapshot");
    let out = ctx.root_ok("snapshot", &snapshot::script(caps)).await?;
    Ok(snapshot::parse(remote.name(), &out.stdout_text(), now_ms()))
}

/// The root kind for `caps`: prio when the kernel has it (the reference tools' choice), else htb.
pub fn choose_root(caps: &HostCaps) -> Result<RootKind, String> {
    let prio = caps.feature(KernelFeature::Prio);
    let htb = caps.feature(KernelFeature::Htb);
    match (&prio, &htb) {
        (Availability::Present(_), _) => Ok(RootKind::Prio),
        (_, Availability::Present(_)) => Ok(RootKind::Htb),
        (Availability::Unknown(_), _) => Ok(RootKind::Prio),
        (_, Availability::Unknown(_)) => Ok(RootKind::Htb),
        (Availability::Absent(p), Availability::Absent(h)) => Err(format!(
            "kernel lacks both sch_prio ({p}) and sch_htb ({h}): no root soak can shape under"
        )),
    }
}

/// Why `shaping` cannot run with `caps`, if it cannot (checked before anything changes).
pub fn shaping_unsupported(caps: &HostCaps, shaping: &Shaping) -> Option<String> {
    let lacks = |feature: KernelFeature| match caps.feature(feature) {
        Availability::Absent(why) => Some(format!("kernel lacks {} ({why})", feature.module())),
        _ => None,
    };
    if caps.tool("tc").is_none() {
        return Some("tc is not installed (Debian package iproute2)".into());
    }
    if let Some(why) = lacks(KernelFeature::U32) {
        return Some(why);
    }
    match shaping {
        Shaping::Netem(_) => lacks(KernelFeature::Netem),
        Shaping::Rate {
            limiter: Limiter::Tbf,
            ..
        } => lacks(KernelFeature::Tbf),
        Shaping::Rate {
            limiter: Limiter::Htb,
            ..
        } => lacks(KernelFeature::Htb),
    }
    .or_else(|| choose_root(caps).err())
}

/// Why `plan` cannot run on a host with `caps`, if it cannot — the checks [`apply`] makes before
/// it changes anything (a dead-man's switch, the tools and kernel modules, the firewall backend),
/// so a fault spanning several hosts can be refused on all of them before any host changes.
pub fn plan_unsupported(caps: &HostCaps, plan: &HostFaultPlan) -> Option<String> {
    if !matches!(plan.fault, HostFault::Restart) && !caps.guard {
        return Some(NO_GUARD.to_string());
    }
    match &plan.fault {
        HostFault::Shape { shaping, .. } => shaping_unsupported(caps, shaping),
        HostFault::Partition { rules } => {
            let firewall = match plan.firewall_backend {
                Some(backend) => caps.firewall(backend),
                None => caps.partition_firewall(),
            };
            match firewall {
                None => Some(match plan.firewall_backend {
                    Some(b) => format!("the {} iptables backend is not installed", b.as_str()),
                    None => "iptables is not installed (Debian package iptables)".to_string(),
                }),
                Some(fw) if fw.ip6tables.is_none() && rules.iter().any(|r| r.address.is_ipv6()) => {
                    Some(format!(
                        "IPv6 peers but no ip6tables for the {} backend",
                        fw.backend.as_str()
                    ))
                }
                Some(_) => None,
            }
        }
        HostFault::Restart | HostFault::Pause => None,
    }
}

const NO_GUARD: &str = "the soak-node on this host has no `guard` subcommand (no dead-man's switch): redeploy it with `soak deploy`";

fn guard_dir(remote: &dyn Remote) -> String {
    residue::guard_dir(remote.host())
}

/// The revert steps and clean checks of `objects` (the same for the orchestrator and the guard).
pub fn revert_plan(
    remote_host: &soak_inventory::Host,
    token: &str,
    objects: &Objects,
) -> (Vec<Step>, Vec<Step>) {
    let gdir = residue::guard_dir(remote_host);
    match objects {
        Objects::Shape { tc, devices, .. } => {
            let steps = devices
                .iter()
                .map(|dev| Step {
                    what: format!("delete soak root qdisc on {dev}"),
                    script: shape::revert_script(tc, dev, &gdir, token),
                })
                .collect();
            let checks = devices
                .iter()
                .map(|dev| Step {
                    what: format!("no soak qdisc on {dev}"),
                    script: shape::clean_check(tc, dev, &gdir, token),
                })
                .collect();
            (steps, checks)
        }
        Objects::Partition {
            firewall,
            comment,
            rules,
            ..
        } => (
            vec![Step {
                what: format!(
                    "delete {} rules tagged {comment} ({})",
                    rules.len(),
                    firewall.backend.as_str()
                ),
                script: partition::revert_script(firewall, rules, comment),
            }],
            vec![Step {
                what: format!("no rules tagged {comment}, no empty SOAK chain"),
                script: partition::clean_check(firewall, rules, comment),
            }],
        ),
        Objects::Pause(p) => (
            vec![Step {
                what: format!("SIGCONT pid {}", p.pid),
                script: process::resume_script(p.pid, p.start_ticks, &gdir, token),
            }],
            vec![Step {
                what: format!("pid {} not stopped", p.pid),
                script: process::resumed_check(p.pid, p.start_ticks),
            }],
        ),
        Objects::Restart(_) => (Vec::new(), Vec::new()),
    }
}

async fn arm(
    ctx: &Ctx<'_>,
    plan: &HostFaultPlan,
    caps: &HostCaps,
    objects: &Objects,
) -> Result<ArmReport, HostFaultError> {
    if !caps.guard {
        return Err(ctx.unsupported(NO_GUARD));
    }
    let host = ctx.remote.host();
    let (steps, checks) = revert_plan(host, &plan.token, objects);
    let journal = guard::journal(
        host,
        &plan.run_id,
        &plan.token,
        plan.fault.kind(),
        steps,
        checks,
        now_ms(),
    );
    let input = serde_json::to_vec(&journal).map_err(|e| {
        ctx.err(HostFaultErrorKind::Plan(format!(
            "journal does not serialize: {e}"
        )))
    })?;
    let out = ctx
        .root(
            &guard::arm_command(host, &plan.token, plan.lease()),
            &input,
            STEP_TIMEOUT,
        )
        .await?;
    if !out.success() {
        return Err(ctx.failed("arming the guard", &out));
    }
    serde_json::from_slice(&out.stdout).map_err(|e| {
        ctx.err(HostFaultErrorKind::Output {
            what: "guard arm".into(),
            detail: format!("{e}: {}", out.stdout_text()),
        })
    })
}

/// Applies `plan` on the host: checks what the host can do (unsupported → nothing changed),
/// arms the guard with the revert journal, makes the change (a failed change is reverted at once),
/// and records baselines for [`verify_effective`].
pub async fn apply(remote: &dyn Remote, plan: &HostFaultPlan) -> Result<Applied, HostFaultError> {
    let ctx = Ctx::new(
        remote,
        format!("apply {} {}", plan.fault.kind(), plan.token),
    );
    plan.validate()
        .map_err(|m| ctx.err(HostFaultErrorKind::Plan(m)))?;
    remote
        .check_privilege(STEP_TIMEOUT)
        .await
        .map_err(|e| ctx.remote_err(e))?;
    let caps = detect(remote).await?;
    let applied = |guard, objects| Applied {
        host: remote.name().to_string(),
        token: plan.token.clone(),
        fault: plan.fault.kind().to_string(),
        guard,
        objects,
        applied_at_ms: now_ms(),
    };
    match &plan.fault {
        HostFault::Shape { peers, shaping } => {
            let (objects, guard) = apply_shape(&ctx, plan, &caps, peers, shaping).await?;
            Ok(applied(Some(guard), objects))
        }
        HostFault::Partition { rules } => {
            let (objects, guard) = apply_partition(&ctx, plan, &caps, rules).await?;
            Ok(applied(Some(guard), objects))
        }
        HostFault::Pause => {
            let (objects, guard) = apply_pause(&ctx, plan, &caps).await?;
            Ok(applied(Some(guard), objects))
        }
        HostFault::Restart => {
            let evidence = restart(&ctx).await?;
            Ok(applied(None, Objects::Restart(evidence)))
        }
    }
}

/// Runs the revert steps now and disarms the guard (used when an apply fails half-way).
async fn undo(ctx: &Ctx<'_>, token: &str, objects: &Objects) {
    let host = ctx.remote.host();
    let (steps, _) = revert_plan(host, token, objects);
    for step in steps {
        let _ = ctx.root(&step.script, &[], STEP_TIMEOUT).await;
    }
    let _ = ctx
        .root(&guard::disarm_command(host, token), &[], STEP_TIMEOUT)
        .await;
}

fn route_devices(stdout: &str) -> Vec<(String, Option<String>, String)> {
    // `route ADDR <ip -o route get output>` and `root DEV <tc root line>`
    stdout
        .lines()
        .filter_map(|l| l.strip_prefix("route "))
        .map(|rest| {
            let (addr, text) = rest.split_once(' ').unwrap_or((rest, ""));
            let words: Vec<&str> = text.split_whitespace().collect();
            let dev = words
                .iter()
                .position(|w| *w == "dev")
                .and_then(|i| words.get(i + 1))
                .map(|d| (*d).to_string());
            (addr.to_string(), dev, text.to_string())
        })
        .collect()
}

async fn apply_shape(
    ctx: &Ctx<'_>,
    plan: &HostFaultPlan,
    caps: &HostCaps,
    peers: &[Peer],
    shaping: &Shaping,
) -> Result<(Objects, ArmReport), HostFaultError> {
    if let Some(reason) = shaping_unsupported(caps, shaping) {
        return Err(ctx.unsupported(reason));
    }
    let root = choose_root(caps).map_err(|r| ctx.unsupported(r))?;
    let tc = caps.tool("tc").unwrap_or("tc").to_string();
    // Which device reaches each peer, and what root qdisc each such device has.
    let mut script = String::new();
    for peer in peers {
        script.push_str(&format!(
            "echo \"route {a} $(ip -o route get {a} 2>&1 | head -n 1)\"\n",
            a = peer.address
        ));
    }
    let out = ctx.root_ok("route lookup", &script).await?;
    let mut devices: Vec<String> = Vec::new();
    let mut by_device: Vec<(String, Vec<&Peer>)> = Vec::new();
    for (addr, dev, text) in route_devices(&out.stdout_text()) {
        let Some(dev) = dev.filter(|d| shape::valid_device(d)) else {
            return Err(ctx.unsupported(format!("no route to peer {addr} ({})", text.trim())));
        };
        if dev == "lo" {
            return Err(ctx.unsupported(format!(
                "peer {addr} is this host itself (route via lo): nothing to shape"
            )));
        }
        let peer_list: Vec<&Peer> = peers
            .iter()
            .filter(|p| p.address.to_string() == addr)
            .collect();
        match by_device.iter_mut().find(|(d, _)| *d == dev) {
            Some((_, list)) => list.extend(peer_list),
            None => {
                devices.push(dev.clone());
                by_device.push((dev, peer_list));
            }
        }
    }
    let mut check = String::new();
    for dev in &devices {
        check.push_str(&format!(
            "echo \"root {dev} $({} qdisc show dev {dev} root | head -n 1)\"\n",
            sh_quote(&tc)
        ));
    }
    let out = ctx.root_ok("root qdisc inspection", &check).await?;
    for line in out.stdout_text().lines() {
        let Some(rest) = line.strip_prefix("root ") else {
            continue;
        };
        let (dev, root_line) = rest.split_once(' ').unwrap_or((rest, ""));
        let words: Vec<&str> = root_line.split_whitespace().collect();
        if words.get(2) == Some(&"0:") {
            continue;
        }
        let why = if shape::is_our_root_line(root_line) {
            format!(
                "{dev} already has a soak root qdisc ({}): an earlier run's or a concurrent fault's; \
                 sweep the host before the run",
                root_line.trim()
            )
        } else {
            format!(
                "{dev} has a foreign root qdisc (`{}`): soak shapes only under its own root and \
                 never replaces one it did not install",
                root_line.trim()
            )
        };
        return Err(ctx.unsupported(why));
    }
    let objects = Objects::Shape {
        root,
        child: shaping.child_kind(root).to_string(),
        tc: tc.clone(),
        devices: devices.clone(),
        baseline: Vec::new(),
    };
    let guard = arm(ctx, plan, caps, &objects).await?;
    let gdir = guard_dir(ctx.remote);
    let mut apply_all = String::new();
    for (dev, list) in &by_device {
        apply_all.push_str(&format!(
            "( {} ) || exit $?\n",
            shape::apply_script(&tc, dev, root, shaping, list, &gdir, &plan.token)
        ));
    }
    let out = match ctx.root(&apply_all, &[], STEP_TIMEOUT).await {
        Ok(out) => out,
        Err(e) => {
            undo(ctx, &plan.token, &objects).await;
            return Err(e);
        }
    };
    if !out.success() {
        undo(ctx, &plan.token, &objects).await;
        return Err(match out.status {
            Some(shape::EXIT_FOREIGN_ROOT) => ctx.unsupported(out.stderr_tail()),
            Some(shape::EXIT_UNKNOWN_KIND) => ctx.unsupported(format!(
                "kernel lacks sch_{} (tc: {})",
                shaping.child_kind(root),
                out.stderr_tail()
            )),
            _ => ctx.failed("installing the qdiscs", &out),
        });
    }
    let baseline = shape_counters(ctx, &tc, &devices).await?;
    Ok((
        Objects::Shape {
            root,
            child: shaping.child_kind(root).to_string(),
            tc,
            devices,
            baseline,
        },
        guard,
    ))
}

async fn shape_counters(
    ctx: &Ctx<'_>,
    tc: &str,
    devices: &[String],
) -> Result<Vec<QdiscStat>, HostFaultError> {
    let mut out = Vec::new();
    for dev in devices {
        let o = ctx
            .root_ok(
                "reading qdisc counters",
                &format!("{} -s qdisc show dev {dev}", sh_quote(tc)),
            )
            .await?;
        if let Some(child) = shape::our_child(&shape::parse_stats(&o.stdout_text(), dev)) {
            out.push(child.clone());
        }
    }
    Ok(out)
}

async fn apply_partition(
    ctx: &Ctx<'_>,
    plan: &HostFaultPlan,
    caps: &HostCaps,
    rules: &[PartitionRule],
) -> Result<(Objects, ArmReport), HostFaultError> {
    let firewall = match plan.firewall_backend {
        Some(backend) => caps.firewall(backend),
        None => caps.partition_firewall(),
    }
    .ok_or_else(|| {
        ctx.unsupported(match plan.firewall_backend {
            Some(b) => format!("the {} iptables backend is not installed", b.as_str()),
            None => "iptables is not installed (Debian package iptables)".to_string(),
        })
    })?;
    if rules.iter().any(|r| r.address.is_ipv6()) && firewall.ip6tables.is_none() {
        return Err(ctx.unsupported(format!(
            "IPv6 peers but no ip6tables for the {} backend",
            firewall.backend.as_str()
        )));
    }
    let comment = partition::comment(&plan.run_id, &plan.token);
    let objects = Objects::Partition {
        firewall: firewall.clone(),
        comment: comment.clone(),
        rules: rules.to_vec(),
        baseline: Vec::new(),
    };
    let guard = arm(ctx, plan, caps, &objects).await?;
    let script = partition::apply_script(&firewall, rules, &comment);
    let result = ctx.root(&script, &[], STEP_TIMEOUT).await;
    match result {
        Ok(out) if out.success() => {}
        Ok(out) => {
            undo(ctx, &plan.token, &objects).await;
            return Err(ctx.failed("inserting the partition rules", &out));
        }
        Err(e) => {
            undo(ctx, &plan.token, &objects).await;
            return Err(e);
        }
    }
    let baseline = rule_counters(ctx, &firewall, rules, &comment).await?;
    if baseline.len() != rules.len() {
        undo(ctx, &plan.token, &objects).await;
        return Err(ctx.err(HostFaultErrorKind::NotEffective {
            summary: format!(
                "{} of {} rules listed after insertion",
                baseline.len(),
                rules.len()
            ),
            evidence: serde_json::json!({ "listed": baseline }),
        }));
    }
    Ok((
        Objects::Partition {
            firewall,
            comment,
            rules: rules.to_vec(),
            baseline,
        },
        guard,
    ))
}

async fn rule_counters(
    ctx: &Ctx<'_>,
    firewall: &Firewall,
    rules: &[PartitionRule],
    comment: &str,
) -> Result<Vec<RuleCounter>, HostFaultError> {
    let out = ctx
        .root_ok(
            "reading rule counters",
            &partition::counters_script(firewall, rules),
        )
        .await?;
    Ok(partition::parse_counters(
        &out.stdout_text(),
        rules,
        comment,
    ))
}

async fn apply_pause(
    ctx: &Ctx<'_>,
    plan: &HostFaultPlan,
    caps: &HostCaps,
) -> Result<(Objects, ArmReport), HostFaultError> {
    let host = ctx.remote.host();
    let out = ctx
        .root(&process::find_script(host), &[], STEP_TIMEOUT)
        .await?;
    if out.status == Some(process::EXIT_NO_NODE) {
        return Err(ctx.unsupported(out.stderr_tail()));
    }
    if !out.success() {
        return Err(ctx.failed("finding the node process", &out));
    }
    let found = process::parse_paused(&out.stdout_text()).ok_or_else(|| {
        ctx.err(HostFaultErrorKind::Output {
            what: "finding the node process".into(),
            detail: out.stdout_text(),
        })
    })?;
    let objects = Objects::Pause(found.clone());
    let guard = arm(ctx, plan, caps, &objects).await?;
    let out = ctx
        .root(
            &process::pause_script(
                host,
                found.pid,
                found.start_ticks,
                &guard_dir(ctx.remote),
                &plan.token,
            ),
            &[],
            STEP_TIMEOUT,
        )
        .await;
    let out = match out {
        Ok(out) if out.success() => out,
        Ok(out) => {
            undo(ctx, &plan.token, &objects).await;
            return Err(ctx.failed("SIGSTOP of the node", &out));
        }
        Err(e) => {
            undo(ctx, &plan.token, &objects).await;
            return Err(e);
        }
    };
    let paused = process::parse_paused(&out.stdout_text()).unwrap_or(found);
    Ok((Objects::Pause(paused), guard))
}

fn node_info(json: &str) -> Option<NodeInfo> {
    serde_json::from_str(json).ok()
}

async fn restart(ctx: &Ctx<'_>) -> Result<RestartEvidence, HostFaultError> {
    let remote = ctx.remote;
    let host = remote.host();
    let layout = NodeLayout::new(host);
    let download = |path: String| async move {
        remote
            .exec_privileged(
                Needs::InstallDir,
                &format!("cat {} 2>/dev/null || exit 66", sh_quote(&path)),
                &[],
                STEP_TIMEOUT,
            )
            .await
            .map_err(|e| ctx.remote_err(e))
            .map(|o| o.success().then(|| o.stdout_text()))
    };
    let record: DeployRecord = match download(layout.record()).await? {
        Some(text) => serde_json::from_str(&text).map_err(|e| {
            ctx.err(HostFaultErrorKind::Output {
                what: format!("reading {}", layout.record()),
                detail: e.to_string(),
            })
        })?,
        None => {
            return Err(ctx.unsupported(format!(
                "no deploy record at {}: deploy the node with `soak deploy` first",
                layout.record()
            )));
        }
    };
    let before = download(layout.node_info())
        .await?
        .and_then(|t| node_info(&t));
    let issued_at_ms = now_ms();
    let (service, out) = match record.run_mode {
        RunMode::Systemd => {
            let unit = node::unit_name(host);
            let out = ctx
                .root(
                    &process::systemd_restart_script(host, RESTART_WAIT.as_secs()),
                    &[],
                    STEP_TIMEOUT + RESTART_WAIT,
                )
                .await?;
            (format!("systemd unit {unit}"), out)
        }
        RunMode::Background => {
            let text = download(layout.config()).await?.ok_or_else(|| {
                ctx.unsupported(format!(
                    "no node config at {}: deploy first",
                    layout.config()
                ))
            })?;
            let config = NodeConfig::from_toml(&layout, &text).map_err(|m| {
                ctx.err(HostFaultErrorKind::Output {
                    what: "reading the node config".into(),
                    detail: m,
                })
            })?;
            let script = node::apply_script(
                host,
                &config,
                &Apply {
                    binary: None,
                    config: None,
                    token: None,
                    start: Some(RunMode::Background),
                    wait_secs: RESTART_WAIT.as_secs(),
                },
            )
            .map_err(|m| ctx.err(HostFaultErrorKind::Plan(m)))?;
            let out = remote
                .exec_privileged(Needs::InstallDir, &script, &[], STEP_TIMEOUT + RESTART_WAIT)
                .await
                .map_err(|e| ctx.remote_err(e))?;
            (
                format!(
                    "background process {} (pid file {})",
                    layout.binary(),
                    layout.pid_file()
                ),
                out,
            )
        }
    };
    if !out.success() {
        return Err(ctx.failed(&format!("restarting the {service}"), &out));
    }
    let up_at_ms = now_ms();
    let (_, json) = node::parse_apply(&out.stdout_text());
    let after = json.as_deref().and_then(node_info).ok_or_else(|| {
        ctx.err(HostFaultErrorKind::NotEffective {
            summary: format!("the {service} wrote no node.json within {} s", RESTART_WAIT.as_secs()),
            evidence: serde_json::json!({ "stdout": out.stdout_text(), "stderr": out.stderr_tail() }),
        })
    })?;
    let evidence = RestartEvidence {
        service,
        run_mode: record.run_mode,
        old_pid: before.as_ref().map(|b| b.pid),
        old_instance_id: before.as_ref().map(|b| b.instance_id.clone()),
        new_pid: after.pid,
        new_instance_id: after.instance_id.clone(),
        peer_id: after.peer_id.clone(),
        issued_at_ms,
        process_started_at_ms: after.started_at_ms,
        up_at_ms,
    };
    if before
        .as_ref()
        .is_some_and(|b| b.instance_id == after.instance_id)
    {
        return Err(ctx.err(HostFaultErrorKind::NotEffective {
            summary: "the instance id did not change: the node was not restarted".into(),
            evidence: serde_json::to_value(&evidence).unwrap_or_default(),
        }));
    }
    Ok(evidence)
}

/// Renews the fault's guard (call every lease/3 while the fault holds; the call itself gives up
/// after lease/3 as [`ErrorClass::Unreachable`]). A missing or fired guard is
/// [`ErrorClass::GuardMissing`]: revert now and verify clean.
pub async fn renew_guard(
    remote: &dyn Remote,
    plan: &HostFaultPlan,
) -> Result<GuardRenewal, HostFaultError> {
    let ctx = Ctx::new(remote, format!("renew guard {}", plan.token));
    // A renewal slower than lease/3 is useless: give up then (unreachable) rather than hang.
    let limit = (plan.lease() / 3).clamp(Duration::from_secs(1), STEP_TIMEOUT);
    let out = ctx
        .root(
            &guard::renew_command(remote.host(), &plan.token, plan.lease()),
            &[],
            limit,
        )
        .await?;
    if out.status == Some(i32::from(soak_guard::cli::EXIT_GONE)) {
        return Err(ctx.err(HostFaultErrorKind::GuardMissing {
            detail: out.stderr_tail(),
            result: serde_json::from_slice(&out.stdout).ok().map(Box::new),
        }));
    }
    if !out.success() {
        return Err(ctx.failed("guard renew", &out));
    }
    let report = serde_json::from_slice(&out.stdout).map_err(|e| {
        ctx.err(HostFaultErrorKind::Output {
            what: "guard renew".into(),
            detail: e.to_string(),
        })
    })?;
    Ok(GuardRenewal {
        report,
        at_ms: now_ms(),
    })
}

/// Whether the host shows the fault's effect now.
pub async fn verify_effective(
    remote: &dyn Remote,
    plan: &HostFaultPlan,
    applied: &Applied,
) -> Result<Effective, HostFaultError> {
    let ctx = Ctx::new(
        remote,
        format!("verify {} {} effective", applied.fault, plan.token),
    );
    match &applied.objects {
        Objects::Shape {
            tc,
            devices,
            baseline,
            ..
        } => {
            let now = shape_counters(&ctx, tc, devices).await?;
            let rose = |dev: &str| {
                let before = baseline
                    .iter()
                    .find(|s| s.dev == dev)
                    .map_or(0, |s| s.sent_packets);
                now.iter()
                    .find(|s| s.dev == dev)
                    .is_some_and(|s| s.sent_packets > before)
            };
            let quiet: Vec<&String> = devices.iter().filter(|d| !rose(d)).collect();
            let evidence = Effective::Shape {
                baseline: baseline.clone(),
                now: now.clone(),
            };
            if quiet.is_empty() {
                Ok(evidence)
            } else {
                Err(ctx.err(HostFaultErrorKind::NotEffective {
                    summary: format!(
                        "no overlay packet to the peers went through the soak band on {quiet:?} since apply"
                    ),
                    evidence: serde_json::to_value(&evidence).unwrap_or_default(),
                }))
            }
        }
        Objects::Partition {
            firewall,
            comment,
            rules,
            baseline,
        } => {
            let now = rule_counters(&ctx, firewall, rules, comment).await?;
            let total = |c: &[RuleCounter]| c.iter().map(|r| r.packets).sum::<u64>();
            let dropped = total(&now).saturating_sub(total(baseline));
            let evidence = Effective::Partition {
                baseline: baseline.clone(),
                now: now.clone(),
                dropped,
            };
            if now.len() < rules.len() {
                Err(ctx.err(HostFaultErrorKind::NotEffective {
                    summary: format!("only {} of {} rules are in place", now.len(), rules.len()),
                    evidence: serde_json::to_value(&evidence).unwrap_or_default(),
                }))
            } else if dropped == 0 {
                Err(ctx.err(HostFaultErrorKind::NotEffective {
                    summary: "no packet hit the DROP rules since apply".into(),
                    evidence: serde_json::to_value(&evidence).unwrap_or_default(),
                }))
            } else {
                Ok(evidence)
            }
        }
        Objects::Pause(paused) => {
            let out = ctx
                .root_ok(
                    "reading the process state",
                    &process::state_script(paused.pid, paused.start_ticks),
                )
                .await?;
            let state = out
                .stdout_text()
                .lines()
                .find_map(|l| l.strip_prefix("state=").map(str::to_string))
                .unwrap_or_default();
            let evidence = Effective::Pause {
                paused: paused.clone(),
                state: state.clone(),
            };
            if state == "T" {
                Ok(evidence)
            } else {
                Err(ctx.err(HostFaultErrorKind::NotEffective {
                    summary: format!("pid {} is in state {state:?}, not stopped", paused.pid),
                    evidence: serde_json::to_value(&evidence).unwrap_or_default(),
                }))
            }
        }
        Objects::Restart(evidence) => Ok(Effective::Restart(evidence.clone())),
    }
}

/// Reverts the fault (the journal's steps, run by the orchestrator) and disarms the guard. A
/// guard that fired already is reported, not an error: both reverts are idempotent.
pub async fn revert(
    remote: &dyn Remote,
    plan: &HostFaultPlan,
    applied: &Applied,
) -> Result<Reverted, HostFaultError> {
    let ctx = Ctx::new(remote, format!("revert {} {}", applied.fault, plan.token));
    let (steps, _) = revert_plan(remote.host(), &plan.token, &applied.objects);
    let mut results = Vec::new();
    for step in &steps {
        let started = std::time::Instant::now();
        let out = ctx.root(&step.script, &[], STEP_TIMEOUT).await?;
        results.push(StepResult {
            what: step.what.clone(),
            status: out.status,
            ok: out.success(),
            stderr: out.stderr_tail(),
            took_ms: u64::try_from(started.elapsed().as_millis()).unwrap_or(u64::MAX),
        });
    }
    let (guard, guard_result) = if applied.guard.is_some() {
        let out = ctx
            .root(
                &guard::disarm_command(remote.host(), &plan.token),
                &[],
                STEP_TIMEOUT,
            )
            .await?;
        if out.success() {
            ("disarmed".to_string(), None)
        } else if out.status == Some(i32::from(soak_guard::cli::EXIT_GONE)) {
            (
                "fired".to_string(),
                serde_json::from_slice(&out.stdout).ok(),
            )
        } else {
            return Err(ctx.failed("disarming the guard", &out));
        }
    } else {
        ("none".to_string(), None)
    };
    if let Some(failed) = results.iter().find(|r| !r.ok) {
        return Err(ctx.err(HostFaultErrorKind::RevertFailed {
            summary: format!("step `{}` failed: {}", failed.what, failed.stderr),
            evidence: serde_json::json!({ "steps": results, "guard": guard }),
        }));
    }
    Ok(Reverted {
        steps: results,
        guard,
        guard_result,
    })
}

/// Whether the host is clean after the revert: the fault's checks pass and the host's own rules
/// and qdiscs are identical to `before` outside our objects. Not clean → [`ErrorClass::RevertFailed`]
/// naming what differs.
pub async fn verify_clean(
    remote: &dyn Remote,
    plan: &HostFaultPlan,
    applied: &Applied,
    before: &HostSnapshot,
) -> Result<Clean, HostFaultError> {
    let ctx = Ctx::new(
        remote,
        format!("verify {} {} clean", applied.fault, plan.token),
    );
    let (_, checks) = revert_plan(remote.host(), &plan.token, &applied.objects);
    let mut results = Vec::new();
    for check in &checks {
        let started = std::time::Instant::now();
        let out = ctx.root(&check.script, &[], STEP_TIMEOUT).await?;
        results.push(StepResult {
            what: check.what.clone(),
            status: out.status,
            ok: out.success(),
            stderr: out.stderr_tail(),
            took_ms: u64::try_from(started.elapsed().as_millis()).unwrap_or(u64::MAX),
        });
    }
    let after = snapshot(remote).await?;
    let diff = after.diff_from(before);
    let failed: Vec<&StepResult> = results.iter().filter(|r| !r.ok).collect();
    let leftover: BTreeSet<&String> = after
        .ours
        .iter()
        .filter(|l| !before.ours.contains(l))
        .collect();
    let clean = Clean {
        checks: results.clone(),
        after: after.clone(),
        diff: diff.clone(),
    };
    if failed.is_empty() && diff.is_empty() && leftover.is_empty() {
        return Ok(clean);
    }
    let mut why = Vec::new();
    for f in &failed {
        why.push(format!("check `{}` failed: {}", f.what, f.stderr));
    }
    if !leftover.is_empty() {
        why.push(format!("soak objects remain: {leftover:?}"));
    }
    if !diff.is_empty() {
        why.push(format!("host differs from before: {}", diff.summary()));
    }
    Err(ctx.err(HostFaultErrorKind::RevertFailed {
        summary: why.join("; "),
        evidence: serde_json::to_value(&clean).unwrap_or_default(),
    }))
}

/// Before a run: reverts every soak object of earlier runs on the host (guards first, then
/// chains, jumps, qdiscs, stopped node processes, owner files) and returns what it found, with
/// `clean` from an audit right after.
pub async fn sweep(remote: &dyn Remote) -> Result<HostResidue, HostFaultError> {
    let ctx = Ctx::new(remote, "sweeping earlier runs' residue");
    remote
        .check_privilege(STEP_TIMEOUT)
        .await
        .map_err(|e| ctx.remote_err(e))?;
    let caps = detect(remote).await?;
    let out = ctx
        .root(
            &residue::sweep_script(remote.host(), &caps),
            &[],
            SWEEP_TIMEOUT,
        )
        .await?;
    if !out.success() {
        return Err(ctx.failed("sweep", &out));
    }
    let mut found = residue::parse(remote.name(), &out.stdout_text());
    let after = audit_with(remote, &caps).await?;
    found.clean = after.clean;
    if !after.clean {
        found.items.extend(after.items.into_iter().map(|mut i| {
            i.detail = format!("still there after the sweep: {}", i.detail);
            i
        }));
    }
    Ok(found)
}

/// After a run: every soak object still on the host (read-only), for `faults/residue.json`.
pub async fn audit(remote: &dyn Remote) -> Result<HostResidue, HostFaultError> {
    let caps = detect(remote).await?;
    audit_with(remote, &caps).await
}

async fn audit_with(remote: &dyn Remote, caps: &HostCaps) -> Result<HostResidue, HostFaultError> {
    let ctx = Ctx::new(remote, "auditing residue");
    let out = ctx
        .root_ok("audit", &residue::audit_script(remote.host(), caps))
        .await?;
    Ok(residue::parse(remote.name(), &out.stdout_text()))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn plans_are_validated() {
        let peer = Peer {
            name: "h2".into(),
            address: "198.18.0.12".parse().expect("addr"),
            port: 7000,
        };
        let shape = HostFault::Shape {
            peers: vec![peer],
            shaping: Shaping::Rate {
                kbit: 800,
                burst_bytes: 16_000,
                latency_ms: 100,
                limiter: Limiter::Tbf,
            },
        };
        let ok = HostFaultPlan::new("20260101T000000Z-x", "f1", shape.clone());
        assert_eq!(ok.validate(), Ok(()));
        assert_eq!(ok.lease(), Duration::from_secs(30));
        for bad in [
            HostFaultPlan::new("run", "bad token", shape.clone()),
            HostFaultPlan::new("run id", "t", shape.clone()),
            HostFaultPlan {
                lease_ms: 10,
                ..ok.clone()
            },
            HostFaultPlan::new("r", "t", HostFault::Partition { rules: vec![] }),
            HostFaultPlan::new(
                "r",
                "t",
                HostFault::Shape {
                    peers: vec![],
                    shaping: Shaping::Netem(Netem {
                        delay_ms: 5,
                        ..Netem::default()
                    }),
                },
            ),
        ] {
            assert!(bad.validate().is_err(), "{bad:?}");
        }
    }

    #[test]
    fn netem_on_this_kernel_is_unsupported_with_the_kernel_reason() {
        let caps = caps::parse(
            "tool.tc=/usr/sbin/tc\nconfig=/proc/config.gz\ncfg.CONFIG_NET_SCH_NETEM=n\ncfg.CONFIG_NET_SCH_PRIO=n\n\
             cfg.CONFIG_NET_SCH_HTB=y\ncfg.CONFIG_NET_SCH_TBF=y\ncfg.CONFIG_NET_CLS_U32=y\n",
        );
        let netem = Shaping::Netem(Netem {
            delay_ms: 1500,
            jitter_ms: 200,
            ..Netem::default()
        });
        assert_eq!(
            shaping_unsupported(&caps, &netem).as_deref(),
            Some("kernel lacks sch_netem (CONFIG_NET_SCH_NETEM is not set in /proc/config.gz)")
        );
        let tbf = Shaping::Rate {
            kbit: 800,
            burst_bytes: 16_000,
            latency_ms: 100,
            limiter: Limiter::Tbf,
        };
        assert_eq!(shaping_unsupported(&caps, &tbf), None);
        assert_eq!(
            choose_root(&caps),
            Ok(RootKind::Htb),
            "no prio here: htb root"
        );
        let with_prio = caps::parse("cfg.CONFIG_NET_SCH_PRIO=y\ncfg.CONFIG_NET_SCH_HTB=y\n");
        assert_eq!(choose_root(&with_prio), Ok(RootKind::Prio));
        let neither =
            caps::parse("config=/c\ncfg.CONFIG_NET_SCH_PRIO=n\ncfg.CONFIG_NET_SCH_HTB=n\n");
        assert!(choose_root(&neither).is_err());
        let no_tc = caps::parse("");
        assert!(
            shaping_unsupported(&no_tc, &tbf).is_some_and(|r| r.contains("tc is not installed"))
        );
    }

    #[test]
    fn error_classes() {
        let e = |kind| HostFaultError {
            host: "h1".into(),
            context: "apply".into(),
            kind,
        };
        assert_eq!(
            e(HostFaultErrorKind::Unsupported {
                reason: "kernel lacks sch_netem".into()
            })
            .class(),
            ErrorClass::Unsupported
        );
        assert_eq!(
            e(HostFaultErrorKind::RevertFailed {
                summary: "x".into(),
                evidence: serde_json::Value::Null
            })
            .class(),
            ErrorClass::RevertFailed
        );
        let text = e(HostFaultErrorKind::Unsupported {
            reason: "kernel lacks sch_netem".into(),
        })
        .to_string();
        assert_eq!(
            text,
            "host `h1`: apply: unsupported here (skipped): kernel lacks sch_netem"
        );
        let unreachable = e(HostFaultErrorKind::Unreachable(RemoteError::new(
            "h1",
            RemoteErrorKind::Timeout {
                what: "remote command".into(),
                after: Duration::from_secs(1),
            },
        )));
        assert_eq!(unreachable.class(), ErrorClass::Unreachable);
    }

    #[test]
    fn routes_name_their_device() {
        let out = "route 198.18.0.12 198.18.0.12 dev eth0 src 198.18.0.11 uid 0 \\    cache\n\
                   route fd00::12 fd00::12 from :: dev eth1 proto kernel src fd00::11 metric 256 pref medium\n\
                   route 203.0.113.9 RTNETLINK answers: Network is unreachable\n";
        let routes = route_devices(out);
        assert_eq!(routes[0].1.as_deref(), Some("eth0"));
        assert_eq!(routes[1].1.as_deref(), Some("eth1"));
        assert_eq!(routes[2].1, None);
    }
}
