//! [`NodeControl`]: what the nemesis may do to node *processes* — restart a node through the
//! service manager that runs it, stop and continue it — implemented by each fleet (the local
//! mesh spawns and signals its own children; host fleets go through the deploy's service path)
//! — and [`HostAccess`]: how host faults reach the hosts behind the nodes (SSH fleets only).

use std::future::Future;
use std::net::IpAddr;
use std::pin::Pin;
use std::sync::Arc;
use std::time::Duration;

use serde::{Deserialize, Serialize};
use soak_inventory::Host;
use soak_inventory::remote::Remote;

use super::host::HostFaultError;

/// A boxed future borrowing the controller.
pub type ControlFuture<'a, T> = Pin<Box<dyn Future<Output = Result<T, ControlError>> + Send + 'a>>;

/// Signals the nemesis sends.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "UPPERCASE")]
pub enum ProcessSignal {
    /// SIGSTOP: freeze the process.
    Stop,
    /// SIGCONT: let it run again.
    Cont,
}

impl ProcessSignal {
    /// `SIGSTOP` / `SIGCONT`.
    pub fn name(self) -> &'static str {
        match self {
            ProcessSignal::Stop => "SIGSTOP",
            ProcessSignal::Cont => "SIGCONT",
        }
    }
}

/// What a restart did.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct RestartReport {
    /// The service or process restarted (a wrong one is visible in the journal).
    pub service: String,
    /// Pid before, when known.
    pub old_pid: Option<u32>,
    /// Pid after, when known.
    pub new_pid: Option<u32>,
    /// When the old process was gone, unix ms.
    pub stopped_at_ms: u64,
    /// When the new process was up (started and wrote its node info), unix ms.
    pub up_at_ms: u64,
}

/// What a signal did.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct SignalReport {
    /// The process signalled.
    pub service: String,
    /// Its pid.
    pub pid: u32,
    /// The signal.
    pub signal: ProcessSignal,
}

/// Why a control action failed.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ControlError {
    /// This fleet cannot do it (recorded as SKIPPED with the reason).
    #[error("{0}")]
    Unsupported(String),
    /// No such node in the fleet.
    #[error("no node named `{0}` in the fleet")]
    UnknownNode(String),
    /// The action was tried and failed.
    #[error("{node}: {detail}")]
    Failed {
        /// Node.
        node: String,
        /// What went wrong.
        detail: String,
    },
}

/// Process control of one fleet's nodes.
pub trait NodeControl: Send + Sync {
    /// Why this fleet cannot restart nodes, or `None` when it can.
    fn restart_unsupported(&self) -> Option<String>;
    /// Why this fleet cannot stop/continue nodes, or `None` when it can.
    fn signal_unsupported(&self) -> Option<String>;
    /// Restarts `node` with the same data dir and addresses (same peer id, new instance).
    fn restart<'a>(&'a self, node: &'a str) -> ControlFuture<'a, RestartReport>;
    /// Sends `signal` to `node`'s recorded process.
    fn signal<'a>(
        &'a self,
        node: &'a str,
        signal: ProcessSignal,
    ) -> ControlFuture<'a, SignalReport>;
    /// Whether `node`'s process is stopped (state T) right now, when the fleet can tell.
    fn is_stopped(&self, node: &str) -> Option<bool>;
    /// The hosts behind the nodes, for host faults (tc, iptables, guarded pauses); `None` on
    /// fleets without hosts (the local mesh).
    fn hosts(&self) -> Option<Arc<dyn HostAccess>> {
        None
    }
}

/// A boxed future of a host step.
pub type HostFuture<'a, T> = Pin<Box<dyn Future<Output = Result<T, HostFaultError>> + Send + 'a>>;

/// One node's host as host faults see it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct HostNode {
    /// The inventory entry (install dir, privilege, service manager).
    pub host: Host,
    /// The node's overlay (QUIC) address as it bound it (`node.json`).
    pub overlay: IpAddr,
    /// Its overlay UDP port.
    pub port: u16,
}

/// How host faults reach the hosts of a fleet: a live [`Remote`] per node (reconnected after a
/// loss), the guard lease and the run id that tags every object.
pub trait HostAccess: Send + Sync {
    /// The host of the node named `node`.
    fn node(&self, node: &str) -> Option<HostNode>;
    /// The current connection to `node`'s host.
    fn remote<'a>(&'a self, node: &'a str) -> HostFuture<'a, Arc<dyn Remote>>;
    /// A fresh connection to `node`'s host (after the last one stopped answering); it becomes
    /// the current one.
    fn reconnect<'a>(&'a self, node: &'a str) -> HostFuture<'a, Arc<dyn Remote>>;
    /// The lease of every host fault's guard (renewed every lease/3).
    fn lease(&self) -> Duration;
    /// The run id (`soak:RUN:TOKEN` tags on firewall rules, guard journals).
    fn run_id(&self) -> &str;
}

/// A fleet whose processes the nemesis may not touch (every action unsupported).
#[derive(Debug, Clone)]
pub struct NoControl(pub String);

impl NodeControl for NoControl {
    fn restart_unsupported(&self) -> Option<String> {
        Some(self.0.clone())
    }
    fn signal_unsupported(&self) -> Option<String> {
        Some(self.0.clone())
    }
    fn restart<'a>(&'a self, _node: &'a str) -> ControlFuture<'a, RestartReport> {
        Box::pin(async move { Err(ControlError::Unsupported(self.0.clone())) })
    }
    fn signal<'a>(
        &'a self,
        _node: &'a str,
        _signal: ProcessSignal,
    ) -> ControlFuture<'a, SignalReport> {
        Box::pin(async move { Err(ControlError::Unsupported(self.0.clone())) })
    }
    fn is_stopped(&self, _node: &str) -> Option<bool> {
        None
    }
}
