//! `soak lab`.

use clap::Args;

use crate::exit::{CliError, CliResult};

/// Arguments of `soak lab`.
#[derive(Debug, Args)]
pub struct LabArgs {}

/// Runs `soak lab`.
pub async fn execute(_args: LabArgs) -> CliResult {
    Err(CliError::unavailable("`soak lab` is not implemented yet"))
}
