//! `junit.xml`: the verdict as JUnit XML (with `quick-junit`, nextest's crate), for CI systems
//! that show test reports.
//!
//! Mapping (documented in `docs/operations.md`):
//!
//! * one `<testsuite>` per window (`window-NNN`), one per soak (`soak`);
//! * in a window suite, one test case per bar (name = bar id) and one per scenario
//!   (`scenario:<name>`); in the soak suite, one per soak-level bar plus `verdict`;
//! * GO → passed; NO-GO → `<failure type="NO-GO">`; UNKNOWN → `<failure type="UNKNOWN">` — missing
//!   evidence fails a CI gate, it never passes; the message is the bar's reason and the text its
//!   whole explanation (statistic, value, threshold, nodes, exemptions, baseline);
//! * a bar that was not applicable (`not_applicable`: verdict UNKNOWN, left out of the soak
//!   verdict, e.g. a leak bar on a run shorter than its minimum span) → `<skipped
//!   type="NOT-APPLICABLE">` with the reason — never passed, and no failure the soak verdict
//!   does not have;
//! * scenarios: COMPLETED → passed, SKIPPED → `<skipped>` with the reason, FAILED →
//!   `<failure type="FAILED">` (a skipped scenario still fails the `scenarios` bar, so the
//!   suite never passes on it);
//! * `verdict` passes only when the soak verdict is GO, so a report never passes on a run whose
//!   verdict is not GO, whatever the bar list holds.

use std::fmt::Write as _;
use std::time::Duration;

use chrono::{DateTime, FixedOffset};
use quick_junit::{NonSuccessKind, Property, Report, TestCase, TestCaseStatus, TestSuite};
use soak_gates::{BarResult, Outcome, ScenarioSummary, Verdict};

use crate::error::{Error, Result};
use crate::format::window_dir_name;
use crate::meta::{RunMeta, RunStatus};
use crate::render::show_value;
use crate::runid::utc_rfc3339;

fn timestamp(ms: u64) -> Option<DateTime<FixedOffset>> {
    let ms = i64::try_from(ms).ok()?;
    DateTime::from_timestamp_millis(ms).map(|t| t.fixed_offset())
}

/// The whole explanation of a bar result, one fact per line.
pub fn bar_explanation(bar: &BarResult) -> String {
    let mut text = String::new();
    let _ = writeln!(text, "bar: {} — {}", bar.bar, bar.title);
    let _ = writeln!(text, "verdict: {}", bar.verdict);
    let _ = writeln!(text, "statistic: {}", bar.statistic);
    let _ = writeln!(text, "value: {}", show_value(bar.value));
    let _ = writeln!(text, "threshold: {}", bar.threshold);
    let _ = writeln!(
        text,
        "window: {}",
        bar.window.map_or("soak".to_string(), |w| w.to_string())
    );
    if !bar.nodes.is_empty() {
        let _ = writeln!(text, "nodes: {}", bar.nodes.join(" "));
    }
    for e in &bar.exemptions {
        let _ = writeln!(text, "exempted: {} ({})", e.nodes.join(" "), e.reason);
    }
    if let Some(b) = &bar.baseline {
        let _ = writeln!(
            text,
            "baseline: rate {} from windows {:?} (floor {}), window events {}, expected {}, p {}",
            show_value(b.rate),
            b.windows,
            show_value(Some(b.floor_rate)),
            b.window_events.map_or("-".to_string(), |e| e.to_string()),
            show_value(b.expected),
            show_value(b.p_value)
        );
        if !b.degradation.is_empty() {
            let _ = writeln!(text, "degradation: {}", b.degradation.join("; "));
        }
    }
    let _ = write!(text, "reason: {}", bar.reason);
    text
}

fn bar_case(bar: &BarResult, classname: &str) -> TestCase {
    let status = match bar.verdict {
        // A bar that could not apply (e.g. a leak bar on a run shorter than its span) is left
        // out of the soak verdict: skipped, never passed, and not a failure the verdict lacks.
        _ if bar.not_applicable => {
            let mut status = TestCaseStatus::skipped();
            status
                .set_type("NOT-APPLICABLE")
                .set_message(bar.reason.as_str())
                .set_description(bar_explanation(bar));
            status
        }
        Outcome::Go => TestCaseStatus::success(),
        outcome => {
            let mut status = TestCaseStatus::non_success(NonSuccessKind::Failure);
            let message = match outcome {
                Outcome::Unknown => format!("insufficient evidence: {}", bar.reason),
                _ => bar.reason.clone(),
            };
            status
                .set_type(outcome.as_str())
                .set_message(message)
                .set_description(bar_explanation(bar));
            status
        }
    };
    let mut case = TestCase::new(bar.bar.as_str(), status);
    case.set_classname(classname);
    case
}

fn scenario_case(scenario: &ScenarioSummary, classname: &str) -> TestCase {
    let status = match scenario.status.as_str() {
        "COMPLETED" => TestCaseStatus::success(),
        "SKIPPED" => {
            let mut status = TestCaseStatus::skipped();
            status
                .set_type("SKIPPED")
                .set_message(scenario.detail.as_str());
            status
        }
        other => {
            let mut status = TestCaseStatus::non_success(NonSuccessKind::Failure);
            status.set_type(other).set_message(scenario.detail.as_str());
            status
        }
    };
    let mut case = TestCase::new(format!("scenario:{}", scenario.name), status);
    case.set_classname(classname);
    if !scenario.targets.is_empty() {
        case.add_property(Property::new("targets", scenario.targets.join(" ")));
    }
    case
}

/// The JUnit report of a verdict.
pub fn junit_report(meta: &RunMeta, status: RunStatus, verdict: &Verdict) -> Report {
    let mut report = Report::new(format!("soak {}", verdict.run_id));
    if let Some(t) = timestamp(meta.started_at_ms) {
        report.set_timestamp(t);
    }
    if let (Some(first), Some(last)) = (verdict.windows.first(), verdict.windows.last()) {
        report.set_time(Duration::from_millis(
            last.end_ms.saturating_sub(first.start_ms),
        ));
    }
    for window in &verdict.windows {
        let name = format!("window-{}", window_dir_name(window.index));
        let classname = format!("soak.{name}");
        let mut suite = TestSuite::new(name.as_str());
        if let Some(t) = timestamp(window.start_ms) {
            suite.set_timestamp(t);
        }
        suite.set_time(Duration::from_millis(
            window.end_ms.saturating_sub(window.start_ms),
        ));
        suite.add_properties([
            Property::new("verdict", window.verdict.as_str()),
            Property::new("warmup", window.warmup.to_string()),
            Property::new("start", utc_rfc3339(window.start_ms)),
            Property::new("end", utc_rfc3339(window.end_ms)),
        ]);
        if let Some(p) = &window.phase_a {
            suite.add_property(Property::new(
                "phase_a",
                format!("{}/{} delivered", p.delivered, p.pairs),
            ));
        }
        suite.add_test_cases(window.bars.iter().map(|b| bar_case(b, &classname)));
        suite.add_test_cases(
            window
                .scenarios
                .iter()
                .map(|s| scenario_case(s, &classname)),
        );
        report.add_test_suite(suite);
    }
    let mut soak = TestSuite::new("soak");
    let mut properties = vec![
        Property::new("run_id", verdict.run_id.as_str()),
        Property::new("gate", verdict.gate.as_str()),
        Property::new("verdict", verdict.verdict.as_str()),
        Property::new("status", status.as_str()),
        Property::new("nodes", verdict.nodes.to_string()),
        Property::new("windows", verdict.windows.len().to_string()),
    ];
    if let Some(seed) = meta.run_seed() {
        properties.push(Property::new("seed", seed.to_string()));
    }
    if let Some(command) = meta.command_line() {
        properties.push(Property::new("command", command));
    }
    soak.add_properties(properties);
    soak.add_test_cases(verdict.soak_bars.iter().map(|b| bar_case(b, "soak")));
    let overall = match verdict.verdict {
        Outcome::Go => TestCaseStatus::success(),
        outcome => {
            let mut s = TestCaseStatus::non_success(NonSuccessKind::Failure);
            s.set_type(outcome.as_str()).set_message(format!(
                "soak verdict {outcome} under gate {} (run {})",
                verdict.gate,
                status.as_str()
            ));
            s
        }
    };
    let mut case = TestCase::new("verdict", overall);
    case.set_classname("soak");
    soak.add_test_case(case);
    // One line per event, joined without a trailing newline (XML text round-trips trimmed).
    let mut notes: Vec<String> = Vec::new();
    for r in &verdict.restarts {
        notes.push(format!(
            "restart: {} between {} and {}",
            r.node,
            utc_rfc3339(r.last_old_ms),
            utc_rfc3339(r.first_new_ms)
        ));
    }
    for g in &verdict.gaps {
        notes.push(format!(
            "evidence gap: {} in window {} for {} ms",
            g.node,
            g.window,
            g.to_ms.saturating_sub(g.from_ms)
        ));
    }
    for e in &verdict.integrity_errors {
        notes.push(format!(
            "integrity error: {} {} went from {} to {}",
            e.node, e.counter, e.from_value, e.to_value
        ));
    }
    if !notes.is_empty() {
        soak.set_system_out(notes.join("\n"));
    }
    report.add_test_suite(soak);
    report
}

/// `junit.xml` text.
pub fn junit_xml(meta: &RunMeta, status: RunStatus, verdict: &Verdict) -> Result<String> {
    junit_report(meta, status, verdict)
        .to_string()
        .map_err(|e| Error::invalid("failed to render junit.xml", e.to_string()))
}
