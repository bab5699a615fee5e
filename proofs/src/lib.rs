//! `soak-proofs`: the proof directory as a versioned file format — names, version, atomic
//! writer, reader, verifier and renderers.
//!
//! Entry points: [`ProofWriter`] (used by `soak run`, incrementally), [`read`] (any proof,
//! complete or not, back into [`soak_gates::model::Observations`]), [`verify`] (manifest hashes
//! and format version) and [`render`]. The format is documented in `docs/proof-format.md`; file
//! names and the version live in [`format`] only.
#![warn(missing_docs)]

mod error;
pub mod format;
mod fsio;
mod meta;
mod reader;
pub mod render;
mod runid;
pub mod samples;
mod verify;
mod writer;

pub use error::{Error, ErrorKind, Result};
pub use format::{CURRENT as FORMAT_VERSION, FormatVersion};
pub use meta::{FileEntry, FleetCoverage, Manifest, MissingHost, NodeBuild, RunMeta, RunStatus};
pub use reader::{Proof, read};
pub use runid::{run_id, utc_rfc3339};
pub use verify::{VerifyReport, verify};
pub use writer::{ProofWriter, REDACTED, redact_secrets};
