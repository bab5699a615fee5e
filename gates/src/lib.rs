//! `soak-gates`: gate profiles and the evaluator — stored observations in, verdict out.
//!
//! Pure and deterministic: no IO, clock, environment, randomness, tokio or network crates, so
//! `soak score` can re-judge any past proof. Entry types: [`model::Observations`] (what a run
//! observed) and, once built, the evaluator over a gate profile.
#![warn(missing_docs)]

pub mod model;
