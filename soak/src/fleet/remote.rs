//! Placeholder, replaced by the real implementation.

use soak_scenarios::NodeEndpoint;

use super::HostBuild;
use crate::exit::CliError;

/// Placeholder.
pub struct RemoteFleet {}

impl RemoteFleet {
    /// How to reach every node's admin API.
    pub fn endpoints(&self) -> Vec<NodeEndpoint> {
        Vec::new()
    }

    /// Which build runs where.
    pub fn builds(&self) -> Vec<HostBuild> {
        Vec::new()
    }

    /// Stops what this fleet started.
    pub async fn shutdown(self) -> Result<(), CliError> {
        Ok(())
    }
}
