//! The documented exit-code table of the `soak` binary (see `docs/operations.md`).

use std::process::ExitCode;

/// Every way `soak` can end. The numbers are a public contract: CI jobs gate on them.
///
/// One code is not here on purpose: 101, Rust's exit code for a panic. Printing never panics
/// (`crate::output` is quiet on a closed pipe), so 101 only ever means a bug in soak.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Exit {
    /// 0 — verdict GO (or a non-judging command succeeded).
    Go,
    /// 1 — verdict NO-GO (or `soak verify` found a mismatch).
    NoGo,
    /// 2 — verdict UNKNOWN: insufficient evidence.
    Unknown,
    /// 64 — usage error: bad flags, bad inventory, bad gate file.
    Usage,
    /// 69 — infrastructure unavailable: node binary missing, hosts unreachable, no root for lab.
    Unavailable,
    /// 130 — interrupted by SIGINT/SIGTERM (the proof is written and marked interrupted).
    Interrupted,
}

impl Exit {
    /// The process exit code.
    pub fn code(self) -> u8 {
        match self {
            Exit::Go => 0,
            Exit::NoGo => 1,
            Exit::Unknown => 2,
            Exit::Usage => 64,
            Exit::Unavailable => 69,
            Exit::Interrupted => 130,
        }
    }
}

impl From<Exit> for ExitCode {
    fn from(exit: Exit) -> Self {
        ExitCode::from(exit.code())
    }
}

/// The binary's one error type: a message plus the exit code it maps to.
#[derive(Debug, thiserror::Error)]
#[error("{message}")]
pub struct CliError {
    /// What went wrong, reading well after "soak: ".
    pub message: String,
    /// Which exit code this error ends the process with.
    pub exit: Exit,
}

impl CliError {
    /// A usage error (exit 64).
    pub fn usage(message: impl Into<String>) -> Self {
        CliError {
            message: message.into(),
            exit: Exit::Usage,
        }
    }

    /// An infrastructure error (exit 69).
    pub fn unavailable(message: impl Into<String>) -> Self {
        CliError {
            message: message.into(),
            exit: Exit::Unavailable,
        }
    }
}

/// What every command returns.
pub type CliResult = Result<Exit, CliError>;
