//! The remote fleet's [`NodeControl`] and [`HostAccess`]: what the nemesis may do on the hosts
//! of an SSH fleet.
//!
//! - Restarts go through the service manager `soak deploy` recorded on the host (the systemd
//!   unit, or the supervised background process and its pid file); the report names it, so the
//!   journal shows which unit or process was restarted.
//! - Signals: SIGSTOP of the recorded pid is a guarded pause (the host's dead-man's switch sends
//!   SIGCONT when the lease lapses; a task renews it every lease/3 until SIGCONT); SIGCONT
//!   reverts it and disarms the guard.
//! - Host faults get each host's SSH session ([`HostAccess::remote`]); after a loss
//!   ([`HostAccess::reconnect`]) a fresh session replaces it for host steps (the old one keeps
//!   carrying the admin API forward while it lives; every session closes with the fleet).

use std::net::SocketAddr;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use futures::future::BoxFuture;
use soak_inventory::Host;
use soak_inventory::remote::{self, ConnectOptions, ExecOutput, Needs, Remote, RemoteError};
use soak_scenarios::faults::control::{
    ControlError, ControlFuture, HostAccess, HostFuture, HostNode, NodeControl, ProcessSignal,
    RestartReport, SignalReport,
};
use soak_scenarios::faults::host::{
    self, Applied, HostFault, HostFaultError, HostFaultPlan, Objects, process,
};
use tokio::task::JoinHandle;

/// An SSH session shared by the fleet (its admin forward) and the nemesis (host steps); closed
/// once no one holds it any more.
pub struct Link(Box<dyn Remote>);

impl Link {
    /// Wraps a connected session.
    pub fn new(remote: Box<dyn Remote>) -> Self {
        Link(remote)
    }
}

impl Remote for Link {
    fn host(&self) -> &Host {
        self.0.host()
    }

    fn exec<'a>(
        &'a self,
        script: &'a str,
        input: &'a [u8],
        timeout: Duration,
    ) -> BoxFuture<'a, Result<ExecOutput, RemoteError>> {
        self.0.exec(script, input, timeout)
    }

    fn forward(&self, remote_port: u16) -> BoxFuture<'_, Result<SocketAddr, RemoteError>> {
        self.0.forward(remote_port)
    }

    fn close(self: Box<Self>) -> BoxFuture<'static, Result<(), RemoteError>> {
        self.0.close()
    }
}

/// A pause held by [`RemoteControl::signal`]: what to revert, and the task renewing its guard.
struct HeldPause {
    plan: HostFaultPlan,
    applied: Applied,
    renewer: JoinHandle<()>,
}

/// One host of the fleet as the control sees it.
pub struct ControlledHost {
    name: String,
    host: Host,
    overlay: Option<SocketAddr>,
    link: tokio::sync::Mutex<Arc<Link>>,
    paused: tokio::sync::Mutex<Option<HeldPause>>,
}

impl ControlledHost {
    /// Node `name` on `host` (its overlay address, when known), reached over `link`.
    pub fn new(name: String, host: Host, overlay: Option<SocketAddr>, link: Arc<Link>) -> Self {
        ControlledHost {
            name,
            host,
            overlay,
            link: tokio::sync::Mutex::new(link),
            paused: tokio::sync::Mutex::new(None),
        }
    }
}

struct Inner {
    run_id: String,
    lease: Duration,
    connect: ConnectOptions,
    hosts: Vec<ControlledHost>,
    spare: Arc<Mutex<Vec<Arc<Link>>>>,
}

impl Inner {
    fn find(&self, node: &str) -> Result<&ControlledHost, ControlError> {
        self.hosts
            .iter()
            .find(|h| h.name == node)
            .ok_or_else(|| ControlError::UnknownNode(node.to_owned()))
    }

    async fn current(&self, node: &str) -> Result<Arc<Link>, ControlError> {
        Ok(Arc::clone(&*self.find(node)?.link.lock().await))
    }

    fn plan(&self, fault: HostFault) -> HostFaultPlan {
        let token = format!(
            "{}-{}",
            match &fault {
                HostFault::Restart => "restart",
                _ => "pause",
            },
            soak_scenarios::faults::nemesis::now_ms()
        );
        let run_id: String = self
            .run_id
            .chars()
            .map(|c| {
                if c.is_ascii_alphanumeric() || matches!(c, '.' | '_' | '-' | ':') {
                    c
                } else {
                    '-'
                }
            })
            .take(128)
            .collect();
        let mut plan = HostFaultPlan::new(&run_id, &token, fault);
        plan.lease_ms = u64::try_from(self.lease.as_millis())
            .unwrap_or(u64::MAX)
            .max(1000);
        plan
    }
}

fn failed(node: &str, e: &HostFaultError) -> ControlError {
    match e.class() {
        host::ErrorClass::Unsupported => ControlError::Unsupported(e.to_string()),
        _ => ControlError::Failed {
            node: node.to_owned(),
            detail: e.to_string(),
        },
    }
}

/// Process control and host access of a remote fleet.
pub struct RemoteControl(Arc<Inner>);

impl RemoteControl {
    /// Control of `hosts`; guards lease for `lease`; sessions opened after a loss go to `spare`
    /// (the fleet closes them).
    pub fn new(
        run_id: &str,
        lease: Duration,
        connect: ConnectOptions,
        hosts: Vec<ControlledHost>,
        spare: Arc<Mutex<Vec<Arc<Link>>>>,
    ) -> Self {
        RemoteControl(Arc::new(Inner {
            run_id: run_id.to_owned(),
            lease,
            connect,
            hosts,
            spare,
        }))
    }
}

impl NodeControl for RemoteControl {
    fn restart_unsupported(&self) -> Option<String> {
        None
    }

    fn signal_unsupported(&self) -> Option<String> {
        None
    }

    fn restart<'a>(&'a self, node: &'a str) -> ControlFuture<'a, RestartReport> {
        Box::pin(async move {
            let link = self.0.current(node).await?;
            let plan = self.0.plan(HostFault::Restart);
            let applied = host::apply(link.as_ref(), &plan)
                .await
                .map_err(|e| failed(node, &e))?;
            let Objects::Restart(r) = applied.objects else {
                return Err(ControlError::Failed {
                    node: node.to_owned(),
                    detail: "the restart reported no restart".into(),
                });
            };
            Ok(RestartReport {
                service: r.service,
                old_pid: r.old_pid,
                new_pid: Some(r.new_pid),
                stopped_at_ms: r.issued_at_ms,
                up_at_ms: r.up_at_ms,
            })
        })
    }

    fn signal<'a>(
        &'a self,
        node: &'a str,
        signal: ProcessSignal,
    ) -> ControlFuture<'a, SignalReport> {
        Box::pin(async move {
            let slot = self.0.find(node)?;
            let mut paused = slot.paused.lock().await;
            match signal {
                ProcessSignal::Stop => {
                    if let Some(held) = paused.as_ref()
                        && let Objects::Pause(p) = &held.applied.objects
                    {
                        return Ok(SignalReport {
                            service: format!("pid {} (paused already)", p.pid),
                            pid: p.pid,
                            signal,
                        });
                    }
                    let link = self.0.current(node).await?;
                    let plan = self.0.plan(HostFault::Pause);
                    let applied = host::apply(link.as_ref(), &plan)
                        .await
                        .map_err(|e| failed(node, &e))?;
                    let Objects::Pause(p) = &applied.objects else {
                        return Err(ControlError::Failed {
                            node: node.to_owned(),
                            detail: "the pause reported no process".into(),
                        });
                    };
                    let report = SignalReport {
                        service: format!(
                            "pid {} of {} (guard {})",
                            p.pid,
                            soak_inventory::node::NodeLayout::new(&slot.host).binary(),
                            plan.token
                        ),
                        pid: p.pid,
                        signal,
                    };
                    let renewer = {
                        let (inner, plan, name) =
                            (Arc::clone(&self.0), plan.clone(), node.to_owned());
                        tokio::spawn(async move {
                            loop {
                                tokio::time::sleep(plan.lease() / 3).await;
                                let Ok(link) = inner.current(&name).await else {
                                    return;
                                };
                                if let Err(e) = host::renew_guard(link.as_ref(), &plan).await
                                    && e.class() == host::ErrorClass::GuardMissing
                                {
                                    return;
                                }
                            }
                        })
                    };
                    *paused = Some(HeldPause {
                        plan,
                        applied,
                        renewer,
                    });
                    Ok(report)
                }
                ProcessSignal::Cont => {
                    let link = self.0.current(node).await?;
                    if let Some(held) = paused.take() {
                        held.renewer.abort();
                        let pid = match &held.applied.objects {
                            Objects::Pause(p) => p.pid,
                            _ => 0,
                        };
                        if let Err(e) = host::revert(link.as_ref(), &held.plan, &held.applied).await
                        {
                            // Not lost: the guard still holds it and reverts it at expiry.
                            return Err(failed(node, &e));
                        }
                        return Ok(SignalReport {
                            service: format!("pid {pid} (guard {} disarmed)", held.plan.token),
                            pid,
                            signal,
                        });
                    }
                    // Nothing of ours holds it: SIGCONT the recorded pid anyway (harmless to a
                    // running process, vital to a stopped one).
                    let script = format!(
                        "{}kill -CONT \"$pid\" && echo \"pid=$pid\"",
                        process::find_script(&slot.host)
                    );
                    let r: &dyn Remote = link.as_ref();
                    let out = r
                        .exec_privileged(Needs::Root, &script, &[], host::STEP_TIMEOUT)
                        .await
                        .map_err(|e| ControlError::Failed {
                            node: node.to_owned(),
                            detail: e.to_string(),
                        })?;
                    let pid = out
                        .stdout_text()
                        .lines()
                        .find_map(|l| l.strip_prefix("pid=").and_then(|p| p.parse().ok()))
                        .ok_or_else(|| ControlError::Failed {
                            node: node.to_owned(),
                            detail: format!("SIGCONT failed: {}", out.stderr_tail()),
                        })?;
                    Ok(SignalReport {
                        service: format!("pid {pid}"),
                        pid,
                        signal,
                    })
                }
            }
        })
    }

    fn is_stopped(&self, _node: &str) -> Option<bool> {
        // Not known without a round trip; pauses on hosts check the process state on the host.
        None
    }

    fn hosts(&self) -> Option<Arc<dyn HostAccess>> {
        Some(Arc::clone(&self.0) as Arc<dyn HostAccess>)
    }
}

impl HostAccess for Inner {
    fn node(&self, node: &str) -> Option<HostNode> {
        let h = self.hosts.iter().find(|h| h.name == node)?;
        let overlay = h.overlay?;
        Some(HostNode {
            host: h.host.clone(),
            overlay: overlay.ip(),
            port: overlay.port(),
        })
    }

    fn remote<'a>(&'a self, node: &'a str) -> HostFuture<'a, Arc<dyn Remote>> {
        Box::pin(async move {
            self.current(node)
                .await
                .map(|l| l as Arc<dyn Remote>)
                .map_err(|e| unknown(node, &e))
        })
    }

    fn reconnect<'a>(&'a self, node: &'a str) -> HostFuture<'a, Arc<dyn Remote>> {
        Box::pin(async move {
            let slot = self.find(node).map_err(|e| unknown(node, &e))?;
            let mut link = slot.link.lock().await;
            let fresh = remote::connect(&slot.host, &self.connect)
                .await
                .map_err(|e| HostFaultError::from_remote(node, "reconnecting", e))?;
            let fresh = Arc::new(Link::new(fresh));
            let old = std::mem::replace(&mut *link, Arc::clone(&fresh));
            let mut spare = match self.spare.lock() {
                Ok(s) => s,
                Err(poisoned) => poisoned.into_inner(),
            };
            spare.push(old);
            Ok(fresh as Arc<dyn Remote>)
        })
    }

    fn lease(&self) -> Duration {
        self.lease
    }

    fn run_id(&self) -> &str {
        &self.run_id
    }
}

fn unknown(node: &str, e: &ControlError) -> HostFaultError {
    HostFaultError {
        host: node.to_owned(),
        context: "finding the host".into(),
        kind: host::HostFaultErrorKind::Plan(e.to_string()),
    }
}
