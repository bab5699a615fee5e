//! `soak verify`.

use clap::Args;

use crate::exit::{CliError, CliResult};

/// Arguments of `soak verify`.
#[derive(Debug, Args)]
pub struct VerifyArgs {}

/// Runs `soak verify`.
pub async fn execute(_args: VerifyArgs) -> CliResult {
    Err(CliError::unavailable(
        "`soak verify` is not implemented yet",
    ))
}
