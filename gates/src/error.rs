//! The error type of this crate.

/// A failure to load or validate a gate profile.
#[derive(Debug, thiserror::Error)]
#[error("{context}")]
pub struct Error {
    /// What was being done, e.g. `load gate profile `broad-launch``.
    pub context: String,
    /// Why it failed.
    #[source]
    pub kind: ErrorKind,
}

/// Why a profile could not be loaded.
#[derive(Debug, thiserror::Error)]
pub enum ErrorKind {
    /// No built-in profile has this name.
    #[error("unknown built-in gate profile `{name}` (built in: {known})")]
    UnknownProfile {
        /// The name asked for.
        name: String,
        /// Comma-separated built-in names.
        known: String,
    },
    /// The TOML could not be parsed into a profile.
    #[error("invalid TOML: {0}")]
    Toml(#[from] toml::de::Error),
    /// The profile parsed but is not valid.
    #[error("{0}")]
    Invalid(String),
}

impl Error {
    pub(crate) fn new(context: impl Into<String>, kind: ErrorKind) -> Self {
        Error {
            context: context.into(),
            kind,
        }
    }
}
