//! The continuous sampler. The runner's dispatcher loop schedules rounds (every
//! `--sample-interval`, plus one stamped exactly at every window boundary and a final one); a
//! round itself lives in `soak_scenarios::sampler` so the benchmarks measure the same code.

pub use soak_scenarios::sampler::{SampleRound, sample_round};
