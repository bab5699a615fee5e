//! SIGINT / SIGTERM as a stream the dispatcher loop selects on.

use tokio::signal::unix::{Signal, SignalKind, signal};

/// The termination signals a run reacts to. Installed before the fleet starts, so a signal
/// during start-up still stops every node that was spawned.
pub struct Signals {
    interrupt: Signal,
    terminate: Signal,
}

impl Signals {
    /// Installs the handlers.
    pub fn install() -> std::io::Result<Signals> {
        Ok(Signals {
            interrupt: signal(SignalKind::interrupt())?,
            terminate: signal(SignalKind::terminate())?,
        })
    }

    /// Waits for the next signal and names it.
    pub async fn recv(&mut self) -> &'static str {
        tokio::select! {
            _ = self.interrupt.recv() => "SIGINT",
            _ = self.terminate.recv() => "SIGTERM",
        }
    }
}
