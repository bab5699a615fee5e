//! `soak-proofs`: the proof directory as a versioned file format — names, version, atomic
//! writer, reader, verifier and renderers.
//!
//! Entry points: [`ProofWriter`] (used by `soak run`, incrementally), [`read`] (any proof,
//! complete or not, back into [`soak_gates::model::Observations`]), [`verify`] (manifest hashes
//! and format version), [`render`] (every rendered file, `report.html` included), [`export`]
//! (long CSV, OpenMetrics), [`junit`] and [`summary`] (the k6-class end summary). The format is documented in `docs/proof-format.md`; file
//! names and the version live in [`format`] only.
#![warn(missing_docs)]

mod error;
pub mod export;
pub mod faults;
pub mod format;
mod fsio;
pub mod junit;
mod meta;
mod points;
mod reader;
pub mod render;
mod report;
mod runid;
pub mod samples;
pub mod summary;
mod verify;
mod writer;

pub use error::{Error, ErrorKind, Result};
pub use format::{CURRENT as FORMAT_VERSION, FormatVersion};
pub use fsio::write_atomic;
pub use meta::{FileEntry, FleetCoverage, Manifest, MissingHost, NodeBuild, RunMeta, RunStatus};
pub use points::GAP_FACTOR;
pub use reader::{Proof, read, read_head};
pub use report::MAX_POINTS;
pub use runid::{run_id, utc_rfc3339};
pub use verify::{VerifyReport, verify};
pub use writer::{ProofWriter, REDACTED, redact_args, redact_secrets};
