//! The proof reporter: writes the run's event stream into the proof directory through
//! `soak_proofs::ProofWriter` — every event to `events.jsonl`, every sample to
//! `samples/<node>.smp`, every window to `windows/NNN/`, and at `RunFinished` the verdict,
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
    swept: Vec<soak_gates::model::Residue>,
    found: Vec<soak_gates::model::Residue>,
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
                swept: Vec::new(),
                found: Vec::new(),
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
            RunEvent::FleetCoverage { .. } => {
                // In run.json (covered by the manifest) and so in summary.md: a verdict on
                // part of the inventory must say so.
                let coverage = event.coverage();
                writer
                    .update_meta(|meta| meta.coverage = coverage)
                    .map_err(|e| e.to_string())?;
            }
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
            RunEvent::WindowEnded { record, .. } => {
                writer.write_window(record).map_err(|e| e.to_string())?;
            }
            RunEvent::Fault { entry } => {
                let line = serde_json::to_value(entry).map_err(|e| e.to_string())?;
                writer
                    .append_fault_journal(&line)
                    .map_err(|e| e.to_string())?;
            }
            RunEvent::FaultSchedule { faults } => {
                let text = serde_json::to_vec_pretty(faults).map_err(|e| e.to_string())?;
                writer
                    .write_fault_file(soak_proofs::format::FAULT_SCHEDULE, &text)
                    .map_err(|e| e.to_string())?;
            }
            RunEvent::FaultResidue { swept, found } => {
                self.swept.extend(swept.iter().cloned());
                self.found.extend(found.iter().cloned());
                let text = serde_json::to_vec_pretty(&serde_json::json!({
                    "swept_before": self.swept,
                    "found_after": self.found,
                }))
                .map_err(|e| e.to_string())?;
                let Some(writer) = self.writer.as_mut() else {
                    return Err("the proof is already finished".to_owned());
                };
                writer
                    .write_fault_file(soak_proofs::format::FAULT_RESIDUE, &text)
                    .map_err(|e| e.to_string())?;
            }
            RunEvent::NodeEvent(node_event) => {
                writer
                    .append_node_event(node_event)
                    .map_err(|e| e.to_string())?;
            }
            RunEvent::Error { message } => {
                // In run.json, so summary.md can say why a failed run failed.
                writer
                    .update_meta(|meta| meta.record_error(message))
                    .map_err(|e| e.to_string())?;
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

#[cfg(test)]
mod tests {
    use soak_gates::model::{Observations, RunInfo};
    use soak_proofs::{MissingHost, RunMeta};

    use super::*;

    fn meta() -> RunMeta {
        RunMeta {
            run_id: "20260101T000000Z-partial".into(),
            label: "partial".into(),
            started_at_ms: 1_767_225_600_000,
            tool_version: "0.0.0".into(),
            node_builds: Vec::new(),
            inventory_digest: Some("ab".repeat(32)),
            gate: "broad-launch".into(),
            gate_source: None,
            scenarios: vec!["baseline".into()],
            sample_interval_ms: 1_000,
            nodes: Vec::new(),
            config: serde_json::json!({}),
            coverage: None,
            command: None,
            seed: None,
            errors: Vec::new(),
            errors_omitted: 0,
        }
    }

    /// A fake fleet's event stream, as `soak run -i INV --min-hosts 2` emits it when one of
    /// three hosts is unreachable: the left-out host must land in `run.json` (covered by the
    /// manifest), `events.jsonl` and `summary.md`, and the proof must still verify.
    #[tokio::test]
    async fn left_out_hosts_are_recorded_in_the_sealed_proof() {
        let dir = tempfile::tempdir().expect("tempdir");
        let proof_dir = dir.path().join("proof");
        let writer = ProofWriter::create(&proof_dir, meta()).expect("create");
        let (mut reporter, outcome) = ProofReporter::new(writer);
        let missing = MissingHost {
            host: "h3".into(),
            error: "host `h3`: cannot connect to root@192.0.2.13:22: timed out".into(),
        };
        let events = [
            RunEvent::FleetCoverage {
                inventory_hosts: 3,
                reached: 2,
                missing: vec![missing.clone()],
                message: Some("connecting to the fleet failed on 1 of 3 hosts (h3)".into()),
            },
            RunEvent::FleetReady {
                nodes: Vec::new(),
                builds: Vec::new(),
                took_ms: 5,
            },
        ];
        for event in &events {
            reporter.report(event).expect("written");
        }
        let observations = Observations {
            residue: Vec::new(),
            run: RunInfo {
                run_id: "20260101T000000Z-partial".into(),
                sample_interval_ms: 1_000,
                nodes: Vec::new(),
                inventory_hosts: None,
                planned_windows: None,
                window_ms: None,
            },
            samples: Default::default(),
            windows: Vec::new(),
            node_events: Vec::new(),
        };
        let profile = soak_gates::Profile::builtin("broad-launch").expect("gate");
        let verdict = soak_gates::evaluate(&observations, &profile);
        reporter
            .report(&RunEvent::RunFinished {
                status: RunStatus::Completed,
                verdict: verdict.verdict.as_str().to_owned(),
                at_ms: 1_767_225_700_000,
                judged: Some(Box::new(verdict)),
            })
            .expect("sealed");
        outcome.await.expect("outcome").expect("proof written");

        let proof = soak_proofs::read(&proof_dir).expect("readable");
        let coverage = proof.meta.coverage.expect("coverage recorded in run.json");
        assert_eq!(
            (coverage.inventory_hosts, coverage.reached),
            (3, 2),
            "{coverage:?}"
        );
        assert_eq!(coverage.missing, vec![missing]);
        assert!(
            proof
                .events
                .first()
                .is_some_and(|e| e["event"] == "fleet_coverage" && e["missing"][0]["host"] == "h3"),
            "{:?}",
            proof.events
        );
        let summary = std::fs::read_to_string(proof_dir.join("summary.md")).expect("summary.md");
        assert!(
            summary.contains("partial fleet, 2 of 3 inventory hosts")
                && summary.contains("| hosts | 2 of 3 inventory hosts (missing: h3) |")
                && summary.contains("## Hosts left out")
                && summary.contains("| h3 | host `h3`: cannot connect"),
            "{summary}"
        );
        let report = soak_proofs::verify(&proof_dir);
        assert!(report.is_ok(), "{report:?}");
    }
}
