//! `soak score`.

use clap::Args;

use crate::exit::{CliError, CliResult};

/// Arguments of `soak score`.
#[derive(Debug, Args)]
pub struct ScoreArgs {}

/// Runs `soak score`.
pub async fn execute(_args: ScoreArgs) -> CliResult {
    Err(CliError::unavailable("`soak score` is not implemented yet"))
}
