//! `soak run`.

use clap::Args;

use crate::exit::{CliError, CliResult};

/// Arguments of `soak run`.
#[derive(Debug, Args)]
pub struct RunArgs {}

/// Runs `soak run`.
pub async fn execute(_args: RunArgs) -> CliResult {
    Err(CliError::unavailable("`soak run` is not implemented yet"))
}
