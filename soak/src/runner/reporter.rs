//! Reporters: independent consumers of the run's one event stream.
//!
//! [`Dispatch`] hands every event to every reporter in order. A reporter that fails is dropped
//! from the dispatch (with a line on stderr) rather than stopping the run: losing the live view
//! must never lose the soak. The proof reporter reports its own failures through the run's
//! outcome (see `proof.rs`), because a run without its evidence is not a pass.

use std::collections::BTreeSet;
use std::io::{IsTerminal, Write};
use std::time::Duration;

use indicatif::{ProgressBar, ProgressDrawTarget, ProgressStyle};
use serde_json::json;
use soak_gates::model::{SampleOutcome, ScenarioStatus};

use super::event::RunEvent;

/// One consumer of run events.
pub trait Reporter: Send {
    /// Short name for error messages.
    fn name(&self) -> &'static str;
    /// Handles one event.
    fn report(&mut self, event: &RunEvent) -> Result<(), String>;
}

/// The fan-out of events to reporters.
#[derive(Default)]
pub struct Dispatch {
    reporters: Vec<Box<dyn Reporter>>,
}

impl Dispatch {
    /// No reporters yet.
    pub fn new() -> Self {
        Dispatch::default()
    }

    /// Adds a reporter; it sees every later event.
    pub fn add(&mut self, reporter: Box<dyn Reporter>) {
        self.reporters.push(reporter);
    }

    /// Hands `event` to every reporter.
    pub fn emit(&mut self, event: &RunEvent) {
        self.reporters
            .retain_mut(|reporter| match reporter.report(event) {
                Ok(()) => true,
                Err(err) => {
                    eprintln!(
                        "soak: the {} reporter failed and was stopped: {err}",
                        reporter.name()
                    );
                    false
                }
            });
    }
}

fn ms(us: Option<u64>) -> String {
    match us {
        Some(us) => format!("{:.1}ms", us as f64 / 1_000.0),
        None => "-".to_owned(),
    }
}

/// Human-readable one-liners for an event (shared by the bar and the plain-line modes).
/// Returns nothing for events not worth a line.
pub fn describe(event: &RunEvent, missing: &mut BTreeSet<String>) -> Vec<String> {
    match event {
        RunEvent::RunStarted {
            run_id,
            nodes,
            windows,
            warmup_windows,
            interval_ms,
            proof_dir,
            ..
        } => vec![format!(
            "run {run_id}: {} nodes, {windows} windows of {} ({warmup_windows} warm-up); proof: {proof_dir}",
            nodes.len(),
            humantime::format_duration(Duration::from_millis(*interval_ms)),
        )],
        RunEvent::FleetCoverage { message, .. } => match event.coverage() {
            Some(coverage) if coverage.is_partial() => {
                let mut lines = vec![format!(
                    "warning: partial fleet: running on {}; the verdict will say nothing about the missing hosts",
                    coverage.describe()
                )];
                match message {
                    // The policy's message: every left-out host with its error, and why the
                    // run goes on.
                    Some(message) => lines.extend(message.lines().map(|l| format!("  {l}"))),
                    None => lines.extend(coverage.missing.iter().map(|m| format!("  {}", m.error))),
                }
                lines
            }
            Some(coverage) => vec![format!("fleet: {}", coverage.describe())],
            None => Vec::new(),
        },
        RunEvent::FleetReady { nodes, took_ms, .. } => vec![format!(
            "fleet ready: {} nodes up, ready and meshed in {took_ms} ms",
            nodes.len()
        )],
        RunEvent::WindowStarted { window, warmup, .. } => vec![format!(
            "window {window}{} started",
            if *warmup { " (warm-up)" } else { "" }
        )],
        RunEvent::PhaseAFinished { window, summary } => {
            let mut lines = vec![format!(
                "window {window}: phase A {}/{} delivered, p50 {}, max {}, {} ms wall",
                summary.delivered,
                summary.pairs,
                ms(summary.p50_us),
                ms(summary.max_us),
                summary.wall_ms
            )];
            lines.extend(summary.failures.iter().map(|f| format!("  miss {f}")));
            lines
        }
        RunEvent::FanoutFinished {
            window,
            result: Some(result),
        } => {
            let min_ratio = result.min_delivery_ratio().unwrap_or(0.0);
            let dups: u64 = result.subscribers.iter().map(|s| s.duplicates).sum();
            let p99 = result.subscribers.iter().filter_map(|s| s.p99_us).max();
            vec![format!(
                "window {window}: fanout {} msgs × {} B to {} subscribers, min delivery {:.1}%, duplicates {dups}, worst p99 {}",
                result.messages,
                result.bytes,
                result.subscribers.len(),
                min_ratio * 100.0,
                ms(p99)
            )]
        }
        RunEvent::Scenario { window, record } => match &record.status {
            ScenarioStatus::Completed => Vec::new(),
            ScenarioStatus::Skipped { reason } => {
                vec![format!(
                    "window {window}: {} SKIPPED: {reason}",
                    record.name
                )]
            }
            ScenarioStatus::Failed { error } => {
                vec![format!("window {window}: {} FAILED: {error}", record.name)]
            }
        },
        RunEvent::Samples { samples, .. } => {
            let mut lines = Vec::new();
            for (node, sample) in samples {
                match &sample.outcome {
                    SampleOutcome::Missing { error } => {
                        if missing.insert(node.clone()) {
                            lines.push(format!("sampler: {node} unreadable: {error}"));
                        }
                    }
                    SampleOutcome::Ok(_) => {
                        if missing.remove(node) {
                            lines.push(format!("sampler: {node} readable again"));
                        }
                    }
                }
            }
            lines
        }
        RunEvent::WindowEnded { record } => vec![format!("window {} ended", record.index)],
        RunEvent::Error { message } => vec![format!("error: {message}")],
        RunEvent::Signal { signal, .. } => vec![format!(
            "{signal}: stopping — final samples, proof, then every node"
        )],
        RunEvent::RunFinished {
            status, verdict, ..
        } => vec![format!("run {}: verdict {verdict}", status.as_str())],
        RunEvent::FanoutFinished { result: None, .. } => Vec::new(),
    }
}

/// Live progress on stderr: an indicatif bar on a terminal, plain lines otherwise.
pub struct Progress {
    bar: Option<ProgressBar>,
    missing: BTreeSet<String>,
}

impl Progress {
    /// Chooses the bar when stderr is a terminal.
    pub fn new() -> Self {
        let bar = std::io::stderr().is_terminal().then(|| {
            let bar = ProgressBar::with_draw_target(Some(0), ProgressDrawTarget::stderr());
            let style = ProgressStyle::with_template(
                "{spinner} [{elapsed_precise}] window {pos}/{len} {wide_msg}",
            )
            .unwrap_or_else(|_| ProgressStyle::default_bar());
            bar.set_style(style);
            bar.enable_steady_tick(Duration::from_millis(200));
            bar
        });
        Progress {
            bar,
            missing: BTreeSet::new(),
        }
    }

    /// Prints a line above the bar, or on stderr without one.
    pub fn line(&self, line: &str) {
        match &self.bar {
            Some(bar) => bar.println(line),
            // A closed stderr loses the live view, never the run.
            None => {
                let _ = writeln!(std::io::stderr(), "{line}");
            }
        }
    }
}

impl Default for Progress {
    fn default() -> Self {
        Progress::new()
    }
}

impl Reporter for Progress {
    fn name(&self) -> &'static str {
        "progress"
    }

    fn report(&mut self, event: &RunEvent) -> Result<(), String> {
        for line in describe(event, &mut self.missing) {
            self.line(&line);
        }
        if let Some(bar) = &self.bar {
            match event {
                RunEvent::RunStarted { windows, .. } => bar.set_length(u64::from(*windows)),
                RunEvent::WindowStarted { window, .. } => {
                    bar.set_message(format!("running window {window}"));
                }
                RunEvent::WindowEnded { .. } => bar.inc(1),
                RunEvent::RunFinished { .. } => bar.finish_and_clear(),
                _ => {}
            }
        }
        Ok(())
    }
}

/// Machine-readable events on stdout, one JSON object per line (`--events jsonl`). Sample
/// rounds are summarised (ok count, missing nodes); the full samples are in the proof.
pub struct JsonLines<W: Write + Send> {
    out: W,
}

impl<W: Write + Send> JsonLines<W> {
    /// Writes to `out` (stdout in the binary).
    pub fn new(out: W) -> Self {
        JsonLines { out }
    }
}

/// The JSON form of one event on the machine-readable stream.
pub fn json_line(event: &RunEvent) -> serde_json::Value {
    match event {
        RunEvent::Samples {
            at_ms,
            took_ms,
            samples,
        } => {
            let missing: Vec<&str> = samples
                .iter()
                .filter(|(_, s)| matches!(s.outcome, SampleOutcome::Missing { .. }))
                .map(|(node, _)| node.as_str())
                .collect();
            json!({
                "event": "samples",
                "at_ms": at_ms,
                "took_ms": took_ms,
                "ok": samples.len() - missing.len(),
                "missing": missing,
            })
        }
        other => serde_json::to_value(other)
            .unwrap_or_else(|err| json!({"event": "error", "message": err.to_string()})),
    }
}

impl<W: Write + Send> Reporter for JsonLines<W> {
    fn name(&self) -> &'static str {
        "json-lines"
    }

    fn report(&mut self, event: &RunEvent) -> Result<(), String> {
        let line = serde_json::to_string(&json_line(event)).map_err(|e| e.to_string())?;
        writeln!(self.out, "{line}").map_err(|e| e.to_string())?;
        self.out.flush().map_err(|e| e.to_string())
    }
}

#[cfg(test)]
mod tests {
    use soak_gates::model::{Sample, SampleData};

    use super::*;
    use crate::runner::event::RunStatus;

    fn missing_sample(error: &str) -> Sample {
        Sample {
            at_ms: 1,
            outcome: SampleOutcome::Missing {
                error: error.into(),
            },
        }
    }

    fn ok_sample() -> Sample {
        Sample {
            at_ms: 2,
            outcome: SampleOutcome::Ok(SampleData {
                by_peer: Default::default(),
                instance_id: "i".into(),
                counters: Default::default(),
                gauges: Default::default(),
            }),
        }
    }

    #[test]
    fn json_lines_are_one_object_per_line() {
        let mut buf = Vec::new();
        {
            let mut reporter = JsonLines::new(&mut buf);
            let events = [
                RunEvent::Samples {
                    at_ms: 1,
                    took_ms: 3,
                    samples: vec![("node-0".into(), missing_sample("refused"))],
                },
                RunEvent::RunFinished {
                    status: RunStatus::Completed,
                    verdict: "GO".into(),
                    at_ms: 5,
                    judged: None,
                },
            ];
            for event in &events {
                reporter.report(event).expect("write");
            }
        }
        let text = String::from_utf8(buf).expect("utf8");
        let lines: Vec<serde_json::Value> = text
            .lines()
            .map(|l| serde_json::from_str(l).expect("json"))
            .collect();
        assert_eq!(lines.len(), 2);
        assert_eq!(lines[0]["event"], "samples");
        assert_eq!(lines[0]["missing"][0], "node-0");
        assert_eq!(lines[1]["event"], "run_finished");
        assert_eq!(lines[1]["verdict"], "GO");
    }

    #[test]
    fn sampler_gaps_are_reported_once_per_transition() {
        let mut missing = BTreeSet::new();
        let gap = RunEvent::Samples {
            at_ms: 1,
            took_ms: 1,
            samples: vec![("node-3".into(), missing_sample("refused"))],
        };
        assert_eq!(describe(&gap, &mut missing).len(), 1);
        assert!(describe(&gap, &mut missing).is_empty());
        let back = RunEvent::Samples {
            at_ms: 2,
            took_ms: 1,
            samples: vec![("node-3".into(), ok_sample())],
        };
        assert_eq!(
            describe(&back, &mut missing),
            vec!["sampler: node-3 readable again".to_owned()]
        );
    }
}
