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
use crate::output::errln;

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
                    errln!(
                        "soak: the {} reporter failed and was stopped: {err}",
                        reporter.name()
                    );
                    false
                }
            });
    }
}

/// At most `max` characters of `text`, with an ellipsis when cut.
fn clip(text: &str, max: usize) -> String {
    if text.chars().count() <= max {
        text.to_owned()
    } else {
        format!("{}…", text.chars().take(max).collect::<String>())
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
        RunEvent::Resumed { record } => {
            let mut lines = vec![format!(
                "resuming the run (it was {}) at window {}",
                record.previous_status.as_str(),
                record.next_window
            )];
            if let Some(lost) = &record.lost {
                lines.push(format!(
                    "  window {} was lost ({}; {} s): an evidence gap, run again now",
                    lost.index,
                    lost.cause,
                    lost.to_ms.saturating_sub(lost.from_ms) / 1_000
                ));
            }
            lines.extend(record.repaired.iter().map(|r| format!("  repaired {r}")));
            lines
        }
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
                "window {window}: phase A {}/{} delivered{}, p50 {}, max {}, {} ms wall",
                summary.delivered,
                summary.pairs,
                summary
                    .sampled
                    .as_ref()
                    .map(|s| format!(" ({s})"))
                    .unwrap_or_default(),
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
        RunEvent::WindowEnded { record, verdict } => match verdict {
            Some(v) => {
                let mut lines = vec![format!(
                    "window {}{} {}  (windows so far: {})",
                    record.index,
                    if record.warmup { " (warm-up)" } else { "" },
                    v.verdict,
                    v.so_far
                )];
                lines.extend(
                    v.bars
                        .iter()
                        .take(6)
                        .map(|b| format!("  {} {}: {}", b.verdict, b.bar, clip(&b.reason, 160))),
                );
                if v.bars.len() > 6 {
                    lines.push(format!("  … and {} more bars", v.bars.len() - 6));
                }
                lines
            }
            None => vec![format!("window {} ended", record.index)],
        },
        RunEvent::FaultSchedule { faults } => faults
            .iter()
            .map(|f| match &f.skipped {
                Some(reason) => format!(
                    "fault plan: {} in window {}: will be SKIPPED: {reason}",
                    f.instance, f.window
                ),
                None => format!(
                    "fault plan: {} in window {} on {} ({})",
                    f.instance,
                    f.window,
                    if f.targets.is_empty() {
                        "the fleet".to_owned()
                    } else {
                        f.targets.join(", ")
                    },
                    f.backend.as_deref().unwrap_or("-")
                ),
            })
            .collect(),
        RunEvent::Fault { entry } => {
            use soak_scenarios::faults::journal::Step;
            let what = match entry.step {
                Step::Applied => Some("applied".to_owned()),
                Step::Effective => Some(format!("effective: {}", entry.detail)),
                Step::Reverted => Some("reverted".to_owned()),
                Step::Clean => Some(format!("clean: {}", entry.detail)),
                Step::Skipped => Some(format!("SKIPPED: {}", entry.detail)),
                Step::Failed => Some(format!(
                    "FAILED{}: {}",
                    entry
                        .of
                        .map(|s| format!(" at {}", s.as_str()))
                        .unwrap_or_default(),
                    entry.detail
                )),
                _ => None,
            };
            what.map(|w| {
                format!(
                    "window {}: fault {} {}",
                    entry.window,
                    entry.fault,
                    clip(&w, 200)
                )
            })
            .into_iter()
            .collect()
        }
        RunEvent::FaultResidue { swept, found } => swept
            .iter()
            .map(|r| format!("residue sweep: {} {}: {}", r.node, r.object, r.detail))
            .chain(
                found
                    .iter()
                    .map(|r| format!("FAULT RESIDUE: {} {}: {}", r.node, r.object, r.detail)),
            )
            .collect(),
        RunEvent::NodeEvent(event) => vec![format!(
            "{} at {}",
            event.describe(),
            soak_gates::display::utc_time(event.at_ms)
        )],
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
    /// Window length, for the ETA.
    interval: Duration,
    windows: u64,
    done: u64,
    so_far: String,
    running_fault: Option<String>,
}

impl Progress {
    pub fn new() -> Self {
        let bar = std::io::stderr().is_terminal().then(|| {
            let bar = ProgressBar::with_draw_target(Some(0), ProgressDrawTarget::stderr());
            let style = ProgressStyle::with_template(
                "{spinner} [{elapsed_precise}] {bar:24.cyan/blue} {pos}/{len} windows {wide_msg}",
            )
            .unwrap_or_else(|_| ProgressStyle::default_bar());
            bar.set_style(style.progress_chars("=> "));
            bar.enable_steady_tick(Duration::from_millis(200));
            bar
        });
        Progress {
            bar,
            missing: BTreeSet::new(),
            interval: Duration::ZERO,
            windows: 0,
            done: 0,
            so_far: "-".to_owned(),
            running_fault: None,
        }
    }

    pub fn line(&self, line: &str) {
        match &self.bar {
            Some(bar) => bar.println(line),
            // A closed stderr loses the live view, never the run.
            None => {
                let _ = writeln!(std::io::stderr(), "{line}");
            }
        }
    }

    /// The bar's message: the soak-level verdict so far, the running fault and the ETA.
    fn status(&self) -> String {
        let left = self.windows.saturating_sub(self.done);
        let eta = humantime::format_duration(Duration::from_secs(self.interval.as_secs() * left));
        let fault = self
            .running_fault
            .as_ref()
            .map(|f| format!(" · fault: {f}"))
            .unwrap_or_default();
        format!("so far {} · ETA ~{eta}{fault}", self.so_far)
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
        match event {
            RunEvent::RunStarted {
                windows,
                first_window,
                interval_ms,
                ..
            } => {
                self.windows = u64::from(*windows);
                self.done = u64::from(*first_window);
                self.interval = Duration::from_millis(*interval_ms);
            }
            RunEvent::WindowEnded { verdict, .. } => {
                self.done += 1;
                if let Some(v) = verdict {
                    self.so_far = v.so_far.clone();
                }
                if self.bar.is_none() && self.windows > 0 {
                    // Plain lines: the same progress as the bar, one line per window.
                    self.line(&format!(
                        "progress: {}/{} windows · {}",
                        self.done,
                        self.windows,
                        self.status()
                    ));
                }
            }
            RunEvent::Fault { entry } => {
                use soak_scenarios::faults::journal::Step;
                match entry.step {
                    Step::Applied => self.running_fault = Some(entry.fault.clone()),
                    Step::Reverted | Step::Clean | Step::Failed
                        if self.running_fault.as_deref() == Some(entry.fault.as_str()) =>
                    {
                        self.running_fault = None;
                    }
                    _ => {}
                }
            }
            _ => {}
        }
        let status = self.status();
        if let Some(bar) = &self.bar {
            match event {
                RunEvent::RunStarted {
                    windows,
                    first_window,
                    ..
                } => {
                    bar.set_length(u64::from(*windows));
                    bar.set_position(u64::from(*first_window));
                }
                RunEvent::WindowEnded { .. } => bar.inc(1),
                RunEvent::RunFinished { .. } => bar.finish_and_clear(),
                _ => {}
            }
            bar.set_message(status);
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
