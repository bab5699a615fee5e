//! `soak-guard`: the host-local dead-man's switch of host faults (DESIGN §6).
//!
//! Every host fault is armed with a guard before it is applied. The guard is a small subcommand of
//! the node binary that is deployed anyway (`soak-node guard …`, see [`cli`]), started detached
//! ([`launch`]: a transient `systemd-run` unit where systemd is PID 1, else `setsid` with stdio
//! closed), so it survives the orchestrator's SIGKILL and the loss of its SSH connection. It holds
//! a journal of idempotent revert steps and clean checks ([`format::GuardJournal`]) and a lease on
//! the host's boot-time clock ([`clock`]), renewed by the orchestrator every lease/3. When the
//! lease runs out — or the watcher finds it gone, or a sweep asks — it runs the revert steps
//! (SIGCONT included, for a pause), runs the clean checks, retries up to three times, and leaves
//! a [`format::GuardResult`] that the orchestrator or the next run reads.
//!
//! The same crate is the writer side (soak builds the journal and the command lines) and the
//! runner side (soak-node runs [`run`]), so both agree on one file format. A token per fault
//! scopes every file (and, by the journal's own steps, every object), so an old guard can never
//! revert a newer fault.
//!
//! Entry points: [`cli::main`] (the `guard` subcommand), [`run::arm`], [`run::watch`],
//! [`run::renew`], [`run::disarm`], [`run::status`], [`run::sweep`], [`run::revert_now`].
#![warn(missing_docs)]

pub mod cli;
pub mod clock;
pub mod format;
pub mod launch;
pub mod run;

pub use format::{GuardJournal, GuardResult, Lease, LeaseState, Outcome, Step, StepResult};

/// The default lease: long enough for several slow SSH renewals (every lease/3), short enough
/// that an abandoned fault is gone quickly.
pub const DEFAULT_LEASE: std::time::Duration = std::time::Duration::from_secs(30);

/// A guard operation failed. Displays as `CONTEXT: KIND`.
#[derive(Debug, thiserror::Error)]
#[error("{context}: {kind}")]
pub struct GuardError {
    /// What was being done.
    pub context: String,
    /// What went wrong.
    #[source]
    pub kind: GuardErrorKind,
}

/// What went wrong in a guard operation.
#[derive(Debug, thiserror::Error)]
pub enum GuardErrorKind {
    /// A file operation failed.
    #[error("{0}")]
    Io(#[from] std::io::Error),
    /// A file is not in the expected format.
    #[error("bad format: {0}")]
    Format(String),
    /// Bad arguments.
    #[error("{0}")]
    Usage(String),
    /// The watcher could not be started or stopped.
    #[error("{0}")]
    Start(String),
    /// No live guard holds the token: its fault is unguarded (revert it now).
    #[error("guard missing: {0}")]
    Missing(String),
    /// The guard already acted (reverted, or tried to).
    #[error("guard already fired: {} ({})", .0.reason, outcome_word(.0.outcome))]
    Fired(Box<GuardResult>),
}

fn outcome_word(outcome: Outcome) -> &'static str {
    match outcome {
        Outcome::Reverted => "reverted, clean",
        Outcome::RevertFailed => "revert failed: residue",
        Outcome::Disarmed => "disarmed",
    }
}
