//! `soak deploy`, `soak status`, `soak stop`, `soak logs`.

use clap::Args;

use crate::exit::{CliError, CliResult};

/// Arguments of `soak deploy`.
#[derive(Debug, Args)]
pub struct DeployArgs {}
/// Arguments of `soak status`.
#[derive(Debug, Args)]
pub struct StatusArgs {}
/// Arguments of `soak stop`.
#[derive(Debug, Args)]
pub struct StopArgs {}
/// Arguments of `soak logs`.
#[derive(Debug, Args)]
pub struct LogsArgs {}

/// Runs `soak deploy`.
pub async fn deploy(_args: DeployArgs) -> CliResult {
    Err(CliError::unavailable(
        "`soak deploy` is not implemented yet",
    ))
}
/// Runs `soak status`.
pub async fn status(_args: StatusArgs) -> CliResult {
    Err(CliError::unavailable(
        "`soak status` is not implemented yet",
    ))
}
/// Runs `soak stop`.
pub async fn stop(_args: StopArgs) -> CliResult {
    Err(CliError::unavailable("`soak stop` is not implemented yet"))
}
/// Runs `soak logs`.
pub async fn logs(_args: LogsArgs) -> CliResult {
    Err(CliError::unavailable("`soak logs` is not implemented yet"))
}
