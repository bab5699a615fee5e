//! The error type of this crate.

/// A failure to write, read or check a proof directory.
#[derive(Debug, thiserror::Error)]
#[error("{context}")]
pub struct Error {
    /// What was being done, e.g. `write /proofs/x/verdict.json`.
    pub context: String,
    /// Why it failed.
    #[source]
    pub kind: ErrorKind,
}

/// Why a proof operation failed.
#[derive(Debug, thiserror::Error)]
pub enum ErrorKind {
    /// A filesystem operation failed.
    #[error("{0}")]
    Io(#[from] std::io::Error),
    /// A file did not hold the JSON expected.
    #[error("invalid JSON: {0}")]
    Json(#[from] serde_json::Error),
    /// The proof is written in a format version this reader cannot read.
    #[error("proof format {found} is not readable by this build (reads {supported})")]
    Incompatible {
        /// Version found in the proof.
        found: String,
        /// Version this build writes and reads.
        supported: String,
    },
    /// A file was refused to keep reading bounded and inside the proof: a symbolic link, a
    /// FIFO, socket or device, or a file over the size bound for its kind.
    #[error("{0}")]
    Refused(String),
    /// Anything else wrong with the directory or the call.
    #[error("{0}")]
    Invalid(String),
}

impl Error {
    pub(crate) fn new(context: impl Into<String>, kind: impl Into<ErrorKind>) -> Self {
        Error {
            context: context.into(),
            kind: kind.into(),
        }
    }

    pub(crate) fn io(action: &str, path: &std::path::Path, err: std::io::Error) -> Self {
        Error::new(format!("failed to {action} {}", path.display()), err)
    }

    pub(crate) fn json(action: &str, path: &std::path::Path, err: serde_json::Error) -> Self {
        Error::new(format!("failed to {action} {}", path.display()), err)
    }

    pub(crate) fn invalid(context: impl Into<String>, why: impl Into<String>) -> Self {
        Error::new(context, ErrorKind::Invalid(why.into()))
    }
}

/// Result alias of this crate.
pub type Result<T, E = Error> = std::result::Result<T, E>;
