//! The proof reporter: writes the run's event stream into the proof directory through
//! `soak_proofs::ProofWriter` — every event to `events.jsonl`, every sample to
//! `samples/<node>.jsonl`, every window to `windows/NNN/`, and at `RunFinished` the verdict,
//! summaries and the manifest (last).
//!
//! Its outcome (the sealed proof path, or why writing failed) goes back to the command through
//! a oneshot channel: a run whose evidence could not be written must not end as a pass.

use std::path::PathBuf;

use soak_gates::model::NodeRef;
use soak_proofs::{NodeBuild, ProofWriter, RunStatus as ProofStatus};
use tokio::sync::oneshot;

use super::event::{RunEvent, RunStatus};
use super::reporter::{Reporter, json_line};

/// Writes events into a proof directory.
pub struct ProofReporter {
    writer: Option<ProofWriter>,
    done: Option<oneshot::Sender<Result<PathBuf, String>>>,
}

/// Receives the proof reporter's final outcome.
pub type ProofOutcome = oneshot::Receiver<Result<PathBuf, String>>;

impl ProofReporter {
    /// Wraps a created writer; the receiver yields the outcome once `RunFinished` was handled
    /// (or an error as soon as writing fails).
    pub fn new(writer: ProofWriter) -> (Self, ProofOutcome) {
        let (tx, rx) = oneshot::channel();
        (
            ProofReporter {
                writer: Some(writer),
                done: Some(tx),
            },
            rx,
        )
    }

    fn fail(&mut self, error: String) -> String {
        if let Some(done) = self.done.take() {
            let _ = done.send(Err(error.clone()));
        }
        self.writer = None;
        error
    }

    fn write(&mut self, event: &RunEvent) -> Result<(), String> {
        let Some(writer) = self.writer.as_mut() else {
            return Err("the proof is already finished".to_owned());
        };
        writer
            .append_event(&json_line(event))
            .map_err(|e| e.to_string())?;
        match event {
            RunEvent::FleetReady { nodes, builds, .. } => {
                writer
                    .update_meta(|meta| {
                        meta.nodes = nodes
                            .iter()
                            .map(|n| NodeRef {
                                name: n.name.clone(),
                                peer_id: n.peer_id.clone(),
                            })
                            .collect();
                        meta.node_builds = builds
                            .iter()
                            .map(|b| NodeBuild {
                                host: b.host.clone(),
                                binary_sha256: b.binary_sha256.clone(),
                                version: b.version.clone(),
                                git: b.git.clone(),
                                started_at_ms: b.started_at_ms,
                            })
                            .collect();
                    })
                    .map_err(|e| e.to_string())?;
            }
            RunEvent::Samples { samples, .. } => {
                for (node, sample) in samples {
                    writer
                        .append_sample(node, sample)
                        .map_err(|e| e.to_string())?;
                }
            }
            RunEvent::WindowEnded { record } => {
                writer.write_window(record).map_err(|e| e.to_string())?;
            }
            RunEvent::RunFinished { status, judged, .. } => {
                let Some(verdict) = judged else {
                    return Err("run finished without a verdict".to_owned());
                };
                let status = match status {
                    RunStatus::Completed => ProofStatus::Complete,
                    RunStatus::Interrupted => ProofStatus::Interrupted,
                    RunStatus::Failed => ProofStatus::Failed,
                };
                let writer = self
                    .writer
                    .take()
                    .ok_or_else(|| "the proof is already finished".to_owned())?;
                let dir = writer.finish(status, verdict).map_err(|e| e.to_string())?;
                if let Some(done) = self.done.take() {
                    let _ = done.send(Ok(dir));
                }
            }
            _ => {}
        }
        Ok(())
    }
}

impl Reporter for ProofReporter {
    fn name(&self) -> &'static str {
        "proof"
    }

    fn report(&mut self, event: &RunEvent) -> Result<(), String> {
        self.write(event).map_err(|err| self.fail(err))
    }
}
