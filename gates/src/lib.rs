//! `soak-gates`: gate profiles and the evaluator — stored observations in, verdict out.
//!
//! Pure and deterministic: no IO, clock, environment, randomness, tokio or network crates, so
//! `soak score` can re-judge any past proof. Entry points: [`model::Observations`] (what a run
//! observed), [`profile::Profile`] (a gate, as data) and [`evaluate`] (observations × profile →
//! [`Verdict`]). How verdicts are reached is explained in `docs/gates.md`.
#![warn(missing_docs)]

pub mod compare;
pub mod display;
mod error;
mod evaluate;
mod metrics;
pub mod model;
mod names;
mod outcome;
pub mod profile;
pub mod series;
mod stats;
pub mod testkit;
mod verdict;

pub use error::{Error, ErrorKind};
pub use evaluate::evaluate;
pub use outcome::Outcome;
pub use profile::Profile;
pub use stats::poisson_upper_tail;
pub use verdict::{
    BarResult, Baseline, Cause, GapRecord, IntegrityRecord, PairTally, PhaseASoak, PhaseASummary,
    RestartRecord, SamplingFailure, ScenarioSummary, VERDICT_VERSION, Verdict, WindowVerdict,
};
