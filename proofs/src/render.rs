//! Renderers: `verdict.json`, `summary.md`, `summary.csv`, `windows.csv`, the long
//! `timeline.csv`, `phase_a.csv`, `junit.xml` and `report.html`. Pure functions of the stored
//! evidence and the verdict; nothing is ever parsed back out of them (the machine contract is
//! `verdict.json`). Numbers for people are rounded ([`soak_gates::display`]); `verdict.json`
//! keeps full precision.
//!
//! [`write_report`] renders every file in one pass over the samples, node by node, so a long
//! run's samples never have to be in memory at once when they are read from a proof directory
//! ([`SampleSource::Dir`]).

use std::collections::BTreeMap;
use std::fmt::Write as _;
use std::path::{Path, PathBuf};

use soak_gates::display::human_number;
use soak_gates::model::{Sample, WindowRecord};
use soak_gates::{BarResult, Cause, Outcome, Verdict};

use crate::error::{Error, Result};
use crate::export::{TIMELINE_HEADER, write_timeline_rows};
use crate::faults::FaultJournal;
use crate::format;
use crate::fsio::{write_atomic, write_atomic_with};
use crate::meta::{RunMeta, RunStatus};
use crate::reader::{read_node_samples, sample_files};
use crate::report::{ReportBuilder, ReportInput};
use crate::runid::utc_rfc3339;
use crate::summary::{EndSummary, Totals};

/// A statistic for humans: whole numbers without a fraction, others rounded to 3 significant
/// digits; `-` when unknown. (`verdict.json` keeps the full value.)
pub fn show_value(value: Option<f64>) -> String {
    match value {
        Some(v) => human_number(v),
        None => "-".to_string(),
    }
}

/// A bar's verdict for people: `n/a` for a bar that could not apply (never a pass).
pub fn show_verdict(bar: &BarResult) -> String {
    if bar.not_applicable {
        "n/a".to_string()
    } else {
        bar.verdict.to_string()
    }
}

/// `verdict.json`: pretty JSON with a final newline.
pub fn verdict_json(verdict: &Verdict) -> Result<String> {
    let mut text = serde_json::to_string_pretty(verdict)
        .map_err(|e| Error::new("failed to serialize the verdict", e))?;
    text.push('\n');
    Ok(text)
}

/// Where the renderers read samples from.
#[derive(Debug, Clone, Copy)]
pub enum SampleSource<'a> {
    /// Already in memory (e.g. `soak score`, which evaluated them).
    Memory(&'a BTreeMap<String, Vec<Sample>>),
    /// The `samples/` of the proof directory at this path, read one node at a time.
    Dir(&'a Path),
}

impl SampleSource<'_> {
    /// Calls `f` with every node's samples, in node-name order.
    fn for_each(
        &self,
        notes: &mut Vec<String>,
        mut f: impl FnMut(&str, &[Sample]) -> Result<()>,
    ) -> Result<()> {
        match self {
            SampleSource::Memory(map) => {
                for (node, samples) in *map {
                    f(node, samples)?;
                }
            }
            SampleSource::Dir(dir) => {
                for (node, files) in sample_files(&dir.join(format::SAMPLES_DIR), notes)? {
                    let samples = read_node_samples(&files, notes)?;
                    f(&node, &samples)?;
                }
            }
        }
        Ok(())
    }
}

/// The stored evidence the renderers read (everything but the verdict).
#[derive(Debug, Clone, Copy)]
pub struct Evidence<'a> {
    /// Run metadata.
    pub meta: &'a RunMeta,
    /// Run status.
    pub status: RunStatus,
    /// Window records.
    pub windows: &'a [WindowRecord],
    /// The samples.
    pub samples: SampleSource<'a>,
    /// The fault journal.
    pub faults: &'a FaultJournal,
    /// Things noticed while reading the proof, shown in the report.
    pub notes: &'a [String],
}

/// What one pass over the samples gathered.
struct Pass {
    report: ReportBuilder,
    totals: Totals,
    notes: Vec<String>,
}

/// One pass over every node's samples: report series, totals and (when `timeline` is given)
/// the rows of `timeline.csv`.
fn pass(evidence: &Evidence<'_>, mut timeline: Option<&mut dyn std::io::Write>) -> Result<Pass> {
    let mut report = ReportBuilder::new(evidence.meta, evidence.windows);
    let mut totals = Totals::new(
        Totals::span_of(evidence.windows),
        evidence.meta.sample_interval_ms,
    );
    let mut notes = evidence.notes.to_vec();
    let interval = evidence.meta.sample_interval_ms;
    evidence.samples.for_each(&mut notes, |node, samples| {
        report.add_node(node, samples);
        totals.add_node(samples);
        if let Some(out) = timeline.as_mut() {
            write_timeline_rows(out, node, samples, interval)
                .map_err(|e| Error::new(format!("failed to write {}", format::TIMELINE_CSV), e))?;
        }
        Ok(())
    })?;
    Ok(Pass {
        report,
        totals,
        notes,
    })
}

/// The end summary of a verdict over the stored evidence (one pass over the samples).
pub fn end_summary(evidence: &Evidence<'_>, verdict: &Verdict) -> Result<EndSummary> {
    let Pass { totals, .. } = pass(evidence, None)?;
    Ok(EndSummary::new(
        evidence.meta,
        evidence.status,
        verdict,
        evidence.windows,
        totals,
    ))
}

fn html_of(
    pass: Pass,
    evidence: &Evidence<'_>,
    verdict: Option<&Verdict>,
) -> (String, Option<EndSummary>) {
    let Pass {
        report,
        totals,
        notes,
    } = pass;
    let summary = verdict
        .map(|v| EndSummary::new(evidence.meta, evidence.status, v, evidence.windows, totals));
    let html = report.html(&ReportInput {
        meta: evidence.meta,
        status: evidence.status,
        verdict,
        windows: evidence.windows,
        faults: evidence.faults,
        summary: summary.as_ref(),
        notes: &notes,
    });
    (html, summary)
}

/// `report.html` alone (`soak report`): `verdict` is the stored one, `None` for an incomplete
/// proof.
pub fn report_html(evidence: &Evidence<'_>, verdict: Option<&Verdict>) -> Result<String> {
    let pass = pass(evidence, None)?;
    Ok(html_of(pass, evidence, verdict).0)
}

/// A proof's `report.html` rendered from its directory alone, with what it was read from.
#[derive(Debug)]
pub struct StoredReport {
    /// The page.
    pub html: String,
    /// The proof as read (without samples: they were streamed).
    pub proof: crate::Proof,
    /// Its fault journal (with any problems found reading it).
    pub faults: FaultJournal,
}

/// Renders `report.html` from the proof directory `dir` only — its samples, windows, stored
/// verdict (none for an incomplete proof) and fault journal — as `soak report` does; the result
/// equals the page the run wrote at finish.
pub fn stored_report(dir: &Path) -> Result<StoredReport> {
    let proof = crate::reader::read_head(dir)?;
    let faults = FaultJournal::read(dir)?;
    let evidence = Evidence {
        meta: &proof.meta,
        status: proof.status(),
        windows: &proof.observations.windows,
        samples: SampleSource::Dir(dir),
        faults: &faults,
        notes: &[],
    };
    let html = report_html(&evidence, proof.verdict.as_ref())?;
    Ok(StoredReport {
        html,
        proof,
        faults,
    })
}

/// Writes every rendered file into `dir` atomically — `verdict.json`, `summary.md`,
/// `summary.csv`, `windows.csv`, `timeline.csv`, `phase_a.csv`, `junit.xml`, `report.html` —
/// and returns the end summary.
pub fn write_report(dir: &Path, evidence: &Evidence<'_>, verdict: &Verdict) -> Result<EndSummary> {
    let mut pass_result = None;
    write_atomic_with(&dir.join(format::TIMELINE_CSV), |out| {
        out.write_all(TIMELINE_HEADER.as_bytes())
            .map_err(|e| Error::new(format!("failed to write {}", format::TIMELINE_CSV), e))?;
        pass_result = Some(pass(evidence, Some(out))?);
        Ok(())
    })?;
    let pass = pass_result.ok_or_else(|| {
        Error::invalid("failed to render the proof", "the sample pass did not run")
    })?;
    let (html, summary) = html_of(pass, evidence, Some(verdict));
    let summary = summary.ok_or_else(|| {
        Error::invalid("failed to render the proof", "no end summary for a verdict")
    })?;
    let files = [
        (format::VERDICT, verdict_json(verdict)?),
        (
            format::SUMMARY_MD,
            summary_md(
                evidence.meta,
                evidence.status,
                verdict,
                &summary,
                evidence.windows,
            ),
        ),
        (format::SUMMARY_CSV, summary_csv(verdict)),
        (format::WINDOWS_CSV, windows_csv(verdict)),
        (format::PHASE_A_CSV, phase_a_csv(verdict)),
        (
            format::JUNIT_XML,
            crate::junit::junit_xml(evidence.meta, evidence.status, verdict)?,
        ),
        (format::REPORT_HTML, html),
    ];
    for (name, text) in files {
        write_atomic(&dir.join(name), text.as_bytes())?;
    }
    Ok(summary)
}

/// The paths [`write_report`] writes under `dir`.
pub fn rendered_files(dir: &Path) -> Vec<PathBuf> {
    [
        format::VERDICT,
        format::SUMMARY_MD,
        format::SUMMARY_CSV,
        format::WINDOWS_CSV,
        format::TIMELINE_CSV,
        format::PHASE_A_CSV,
        format::JUNIT_XML,
        format::REPORT_HTML,
    ]
    .iter()
    .map(|name| dir.join(name))
    .collect()
}

/// A CSV field, quoted when it holds a comma, quote or line break.
pub(crate) fn csv_field(field: &str) -> String {
    if field.contains([',', '"', '\n', '\r']) {
        format!("\"{}\"", field.replace('"', "\"\""))
    } else {
        field.to_string()
    }
}

fn csv_row(out: &mut String, fields: &[String]) {
    let row: Vec<String> = fields.iter().map(|f| csv_field(f)).collect();
    out.push_str(&row.join(","));
    out.push('\n');
}

fn exemptions_text(bar: &BarResult) -> String {
    bar.exemptions
        .iter()
        .map(|e| format!("{}: {}", e.nodes.join(" "), e.reason))
        .collect::<Vec<_>>()
        .join("; ")
}

/// `summary.csv`: one row per bar result (window bars, then soak bars).
pub fn summary_csv(verdict: &Verdict) -> String {
    let mut out = String::new();
    csv_row(
        &mut out,
        &[
            "scope",
            "window",
            "bar",
            "verdict",
            "statistic",
            "value",
            "threshold",
            "nodes",
            "exemptions",
            "reason",
            "cause",
            "not_applicable",
        ]
        .map(String::from),
    );
    let rows = verdict
        .windows
        .iter()
        .flat_map(|w| w.bars.iter().map(|b| ("window", b)))
        .chain(verdict.soak_bars.iter().map(|b| ("soak", b)));
    for (scope, bar) in rows {
        csv_row(
            &mut out,
            &[
                scope.to_string(),
                bar.window.map(|w| w.to_string()).unwrap_or_default(),
                bar.bar.clone(),
                bar.verdict.to_string(),
                bar.statistic.clone(),
                show_value(bar.value),
                bar.threshold.clone(),
                bar.nodes.join(" "),
                exemptions_text(bar),
                bar.reason.clone(),
                bar.cause.clone().unwrap_or_default(),
                bar.not_applicable.to_string(),
            ],
        );
    }
    out
}

/// `phase_a.csv`: Phase A per ordered pair over the soak (header only without Phase A).
pub fn phase_a_csv(verdict: &Verdict) -> String {
    let mut out = String::new();
    csv_row(
        &mut out,
        &[
            "from",
            "to",
            "required",
            "sent",
            "acked",
            "received",
            "delivered",
            "failed_windows",
        ]
        .map(String::from),
    );
    for p in verdict.phase_a.iter().flat_map(|s| &s.per_pair) {
        csv_row(
            &mut out,
            &[
                p.from.clone(),
                p.to.clone(),
                p.required.to_string(),
                p.sent.to_string(),
                p.acked.to_string(),
                p.received.to_string(),
                p.delivered.to_string(),
                p.failed_windows
                    .iter()
                    .map(u32::to_string)
                    .collect::<Vec<_>>()
                    .join(" "),
            ],
        );
    }
    out
}

/// `windows.csv`: one row per window (the per-window `timeline.csv` of formats before 1.2).
pub fn windows_csv(verdict: &Verdict) -> String {
    let mut out = String::new();
    csv_row(
        &mut out,
        &[
            "window",
            "start_utc",
            "end_utc",
            "start_ms",
            "end_ms",
            "warmup",
            "verdict",
            "phase_a_pairs",
            "phase_a_delivered",
            "phase_a_p50_us",
            "phase_a_p99_us",
            "scenarios",
            "no_go_bars",
            "unknown_bars",
            "phase_a_sent",
            "phase_a_acked",
            "phase_a_received",
            "partial",
            "sampling_failures",
        ]
        .map(String::from),
    );
    for w in &verdict.windows {
        let bars_with = |outcome: Outcome| {
            w.bars
                .iter()
                .filter(|b| b.verdict == outcome)
                .map(|b| b.bar.as_str())
                .collect::<Vec<_>>()
                .join(" ")
        };
        let opt = |v: Option<u64>| v.map(|v| v.to_string()).unwrap_or_default();
        let scenarios = w
            .scenarios
            .iter()
            .map(|s| format!("{}:{}", s.name, s.status))
            .collect::<Vec<_>>()
            .join(" ");
        csv_row(
            &mut out,
            &[
                w.index.to_string(),
                utc_rfc3339(w.start_ms),
                utc_rfc3339(w.end_ms),
                w.start_ms.to_string(),
                w.end_ms.to_string(),
                w.warmup.to_string(),
                w.verdict.to_string(),
                opt(w.phase_a.as_ref().map(|p| p.pairs)),
                opt(w.phase_a.as_ref().map(|p| p.delivered)),
                opt(w.phase_a.as_ref().and_then(|p| p.p50_us)),
                opt(w.phase_a.as_ref().and_then(|p| p.p99_us)),
                scenarios,
                bars_with(Outcome::NoGo),
                bars_with(Outcome::Unknown),
                opt(w.phase_a.as_ref().map(|p| p.sent)),
                opt(w.phase_a.as_ref().map(|p| p.acked)),
                opt(w.phase_a.as_ref().map(|p| p.received)),
                w.partial.to_string(),
                w.sampling_failures
                    .iter()
                    .map(|f| u64::from(f.attempts))
                    .sum::<u64>()
                    .to_string(),
            ],
        );
    }
    out
}

fn md_cell(text: &str) -> String {
    text.replace('|', "\\|").replace('\n', " ")
}

/// Every bar result of the verdict that is not GO, window bars first (not-applicable ones
/// left out: they are listed with the soak bars).
pub fn not_go(verdict: &Verdict) -> impl Iterator<Item = &BarResult> {
    verdict
        .windows
        .iter()
        .flat_map(|w| w.bars.iter())
        .chain(verdict.soak_bars.iter())
        .filter(|b| b.verdict != Outcome::Go && !b.not_applicable)
}

/// `bar (windows 2, 3)` groups of the results a cause explains.
pub fn explained_by(verdict: &Verdict, cause: &Cause) -> String {
    let mut groups: BTreeMap<&str, Vec<String>> = BTreeMap::new();
    for b in not_go(verdict).filter(|b| b.cause.as_deref() == Some(cause.id.as_str())) {
        groups.entry(b.bar.as_str()).or_default().push(
            b.window
                .map_or_else(|| "soak".to_string(), |w| w.to_string()),
        );
    }
    groups
        .into_iter()
        .map(|(bar, windows)| {
            if windows.len() == 1 && windows[0] == "soak" {
                format!("`{bar}` (soak)")
            } else {
                format!("`{bar}` (window {})", windows.join(", "))
            }
        })
        .collect::<Vec<_>>()
        .join(", ")
}

/// One line on why the soak is not GO: its causes, then how many other results fail.
pub fn why_line(verdict: &Verdict) -> Option<String> {
    if verdict.verdict == Outcome::Go {
        return None;
    }
    let causes: Vec<&Cause> = verdict.causes.iter().filter(|c| c.explains > 0).collect();
    let others: Vec<&BarResult> = not_go(verdict).filter(|b| b.cause.is_none()).collect();
    let mut parts: Vec<String> = causes
        .iter()
        .take(3)
        .map(|c| format!("{} ({} results)", c.headline, c.explains))
        .collect();
    if causes.len() > 3 {
        parts.push(format!("{} more causes", causes.len() - 3));
    }
    match others.as_slice() {
        [] => {}
        [only] => parts.push(format!(
            "`{}`{}: {}",
            only.bar,
            only.window
                .map(|w| format!(" in window {w}"))
                .unwrap_or_default(),
            only.reason
        )),
        many => {
            let mut bars: Vec<&str> = many.iter().map(|b| b.bar.as_str()).collect();
            bars.dedup();
            parts.push(format!(
                "{} other results not GO ({})",
                many.len(),
                bars.join(", ")
            ));
        }
    }
    Some(parts.join("; "))
}

/// `summary.md`: the verdict for humans, with the end summary's totals.
pub fn summary_md(
    meta: &RunMeta,
    status: RunStatus,
    verdict: &Verdict,
    summary: &EndSummary,
    windows: &[WindowRecord],
) -> String {
    let mut md = String::new();
    let partial = meta.coverage.as_ref().filter(|c| c.is_partial());
    match partial {
        // A verdict on part of the inventory must not read like one on all of it.
        Some(c) => {
            let _ = writeln!(
                md,
                "# Soak {}: {} — partial fleet, {} of {} inventory hosts\n",
                meta.run_id, verdict.verdict, c.reached, c.inventory_hosts
            );
        }
        None => {
            let _ = writeln!(md, "# Soak {}: {}\n", meta.run_id, verdict.verdict);
        }
    }
    if let Some(why) = why_line(verdict) {
        let _ = writeln!(md, "**Why {}:** {}\n", verdict.verdict, md_cell(&why));
    }
    let _ = writeln!(md, "| | |\n|---|---|");
    let _ = writeln!(md, "| verdict | **{}** |", verdict.verdict);
    let _ = writeln!(md, "| gate | `{}` |", md_cell(&verdict.gate));
    let _ = writeln!(md, "| status | {} |", status.as_str());
    let _ = writeln!(md, "| label | {} |", md_cell(&meta.label));
    let _ = writeln!(md, "| started | {} |", utc_rfc3339(meta.started_at_ms));
    let _ = writeln!(md, "| tool | soak {} |", md_cell(&meta.tool_version));
    let _ = writeln!(md, "| nodes | {} |", verdict.nodes);
    if let Some(coverage) = &meta.coverage {
        let _ = writeln!(md, "| hosts | {} |", md_cell(&coverage.describe()));
    }
    let _ = writeln!(md, "| windows | {} |", windows_text(meta, verdict));
    let _ = writeln!(
        md,
        "| scenarios | {} |",
        md_cell(&meta.scenarios.join(", "))
    );
    if let Some(digest) = &meta.inventory_digest {
        let _ = writeln!(md, "| inventory | `{}` |", md_cell(digest));
    }
    if !meta.node_builds.is_empty() {
        let _ = writeln!(
            md,
            "\n## Node builds\n\n| host | version | git | sha256 |\n|---|---|---|---|"
        );
        for b in &meta.node_builds {
            let short = b.binary_sha256.get(..12).unwrap_or(&b.binary_sha256);
            let _ = writeln!(
                md,
                "| {} | {} | {} | `{}` |",
                md_cell(&b.host),
                md_cell(&b.version),
                md_cell(&b.git),
                md_cell(short)
            );
        }
    }

    if let Some(coverage) = partial {
        let _ = writeln!(
            md,
            "\n## Hosts left out\n\nThe verdict covers {}; it says nothing about these hosts.\n\n| host | why |\n|---|---|",
            md_cell(&coverage.describe())
        );
        for m in &coverage.missing {
            let _ = writeln!(md, "| {} | {} |", md_cell(&m.host), md_cell(&m.error));
        }
    }

    let _ = writeln!(
        md,
        "\n## Totals\n\n| metric | value | rate |\n|---|---|---|"
    );
    for (label, value, rate) in summary.rows() {
        let _ = writeln!(md, "| {label} | {} | {} |", md_cell(&value), md_cell(&rate));
    }

    if !meta.errors.is_empty() {
        let _ = writeln!(md, "\n## Errors during the run\n");
        for e in &meta.errors {
            let _ = writeln!(md, "- {}", md_cell(e));
        }
        if meta.errors_omitted > 0 {
            let _ = writeln!(
                md,
                "- and {} more (every error is in `events.jsonl`)",
                meta.errors_omitted
            );
        }
    }

    why_section(&mut md, verdict);

    let _ = writeln!(md, "\n## Soak-level bars\n");
    bars_table(&mut md, &verdict.soak_bars);

    phase_a_section(&mut md, verdict);
    faults_section(&mut md, windows);

    let _ = writeln!(md, "\n## Windows\n");
    let _ = writeln!(
        md,
        "| window | start | verdict | Phase A | scenarios | failing bars |"
    );
    let _ = writeln!(md, "|---|---|---|---|---|---|");
    for w in &verdict.windows {
        let phase_a = w
            .phase_a
            .as_ref()
            .map_or("-".to_string(), |p| format!("{}/{}", p.delivered, p.pairs));
        let scenarios = w
            .scenarios
            .iter()
            .map(|s| format!("{} {}", s.name, s.status))
            .collect::<Vec<_>>()
            .join(", ");
        let failing = w
            .bars
            .iter()
            .filter(|b| b.verdict != Outcome::Go)
            .map(|b| format!("{} ({})", b.bar, b.verdict))
            .collect::<Vec<_>>()
            .join(", ");
        let kind = match (w.warmup, w.partial) {
            (true, true) => " (warm-up, partial)",
            (true, false) => " (warm-up)",
            (false, true) => " (partial)",
            (false, false) => "",
        };
        let _ = writeln!(
            md,
            "| {}{kind} | {} | {} | {} | {} | {} |",
            w.index,
            utc_rfc3339(w.start_ms),
            w.verdict,
            phase_a,
            md_cell(&scenarios),
            md_cell(&failing)
        );
    }

    let exemptions: Vec<&BarResult> = verdict
        .windows
        .iter()
        .flat_map(|w| w.bars.iter())
        .filter(|b| !b.exemptions.is_empty())
        .collect();
    if !exemptions.is_empty() {
        let _ = writeln!(md, "\n## Exemptions\n");
        for b in exemptions {
            let _ = writeln!(
                md,
                "- window {} `{}`: {}",
                b.window.map(|w| w.to_string()).unwrap_or_default(),
                b.bar,
                md_cell(&exemptions_text(b))
            );
        }
    }
    if !verdict.restarts.is_empty() {
        let _ = writeln!(md, "\n## Restarts\n");
        for r in &verdict.restarts {
            let _ = writeln!(
                md,
                "- {} restarted between {} and {}{}",
                md_cell(&r.node),
                utc_rfc3339(r.last_old_ms),
                utc_rfc3339(r.first_new_ms),
                r.window
                    .map(|w| format!(" (window {w})"))
                    .unwrap_or_default()
            );
        }
    }
    sampling_section(&mut md, verdict);
    if !verdict.gaps.is_empty() {
        let _ = writeln!(md, "\n## Evidence gaps\n");
        for g in &verdict.gaps {
            let _ = writeln!(
                md,
                "- window {}: {} without a good sample for {} ({} → {})",
                g.window,
                md_cell(&g.node),
                soak_gates::display::human_duration(g.to_ms - g.from_ms),
                utc_rfc3339(g.from_ms),
                utc_rfc3339(g.to_ms)
            );
        }
    }
    if !verdict.integrity_errors.is_empty() {
        let _ = writeln!(md, "\n## Integrity errors\n");
        for e in &verdict.integrity_errors {
            let _ = writeln!(
                md,
                "- {} `{}` went from {} to {} within instance {} ({} → {})",
                md_cell(&e.node),
                md_cell(&e.counter),
                e.from_value,
                e.to_value,
                md_cell(&e.instance),
                utc_rfc3339(e.from_ms),
                utc_rfc3339(e.to_ms)
            );
        }
    }
    let _ = writeln!(
        md,
        "\n_Machine-readable verdict: `verdict.json`. Re-score: `soak score <this dir> --gate <name>`._"
    );
    md
}

/// `3 judged (+1 warm-up) of 4 planned`.
fn windows_text(meta: &RunMeta, verdict: &Verdict) -> String {
    let judged = verdict.windows.iter().filter(|w| w.is_judged()).count();
    let warmup = verdict.windows.iter().filter(|w| w.warmup).count();
    let partial = verdict
        .windows
        .iter()
        .filter(|w| w.partial && !w.warmup)
        .count();
    let mut text = format!("{judged} judged");
    let mut extra = Vec::new();
    if warmup > 0 {
        extra.push(format!("+{warmup} warm-up"));
    }
    if partial > 0 {
        extra.push(format!("+{partial} partial"));
    }
    if !extra.is_empty() {
        text.push_str(&format!(" ({})", extra.join(", ")));
    }
    if let Some(planned) = crate::reader::planned_windows(&meta.config) {
        text.push_str(&format!(" of {planned} planned"));
    }
    text
}

/// Root causes with what they explain, then every other result that is not GO.
fn why_section(md: &mut String, verdict: &Verdict) {
    if verdict.verdict == Outcome::Go {
        return;
    }
    let _ = writeln!(md, "\n## Why {}\n", verdict.verdict);
    let causes: Vec<&Cause> = verdict.causes.iter().filter(|c| c.explains > 0).collect();
    if !causes.is_empty() {
        let _ = writeln!(md, "Root causes, with the results that follow from them:\n");
        for c in &causes {
            let _ = writeln!(
                md,
                "- **{}** — {} results: {}",
                md_cell(&c.headline),
                c.explains,
                md_cell(&explained_by(verdict, c))
            );
        }
    }
    let seen: Vec<&Cause> = verdict.causes.iter().filter(|c| c.explains == 0).collect();
    if !seen.is_empty() {
        let _ = writeln!(md, "\nAlso seen (explains no failing result):\n");
        for c in seen {
            let _ = writeln!(md, "- {}", md_cell(&c.headline));
        }
    }
    let others: Vec<&BarResult> = not_go(verdict).filter(|b| b.cause.is_none()).collect();
    if !others.is_empty() {
        let _ = writeln!(
            md,
            "\n{}\n",
            if causes.is_empty() {
                "Results that are not GO:"
            } else {
                "Other results that are not GO:"
            }
        );
        let _ = writeln!(
            md,
            "| window | bar | verdict | value | threshold | nodes | reason |"
        );
        let _ = writeln!(md, "|---|---|---|---|---|---|---|");
        for b in others {
            let _ = writeln!(
                md,
                "| {} | {} | {} | {} | {} | {} | {} |",
                b.window
                    .map_or_else(|| "soak".to_string(), |w| w.to_string()),
                md_cell(&b.bar),
                b.verdict,
                show_value(b.value),
                md_cell(&b.threshold),
                md_cell(&b.nodes.join(" ")),
                md_cell(&b.reason)
            );
        }
    }
}

/// Phase A over the soak: sent, acked, received and delivered, and every pair that failed.
/// `## Faults`: every fault of the run — what, where, when, whether it was shown effective
/// and clean, the exemptions it granted — then the measurements behind the checks that failed
/// and the kind-specific ones (recovery, heal, cooling, first attempts).
fn faults_section(md: &mut String, windows: &[WindowRecord]) {
    use soak_gates::model::{Check, ScenarioStatus};
    let faults: Vec<(
        u32,
        &soak_gates::model::ScenarioRecord,
        &soak_gates::model::FaultEvidence,
    )> = windows
        .iter()
        .flat_map(|w| {
            w.scenarios
                .iter()
                .filter_map(move |s| s.fault.as_deref().map(|f| (w.index, s, f)))
        })
        .collect();
    if faults.is_empty() {
        return;
    }
    let check = |c: &Check| match c {
        Check::Shown { .. } => "yes",
        Check::NotShown { .. } => "**NO**",
        Check::NotChecked { .. } => "not checked",
    };
    let _ = writeln!(md, "\n## Faults\n");
    let _ = writeln!(
        md,
        "| window | fault | kind | backend | targets | applied | effective? | clean? | exemptions |"
    );
    let _ = writeln!(md, "|---|---|---|---|---|---|---|---|---|");
    for (window, s, f) in &faults {
        let targets = if s.targets.is_empty() {
            "-".to_string()
        } else {
            s.targets.join(", ")
        };
        let exemptions = if s.exemptions.is_empty() {
            "-".to_string()
        } else {
            s.exemptions
                .iter()
                .map(|e| {
                    let mut what = Vec::new();
                    if !e.nodes.is_empty() {
                        what.push(e.nodes.join(" "));
                    }
                    if !e.links.is_empty() {
                        what.push(format!("{} links", e.links.len()));
                    }
                    if !e.pairs.is_empty() {
                        what.push(format!("{} pairs", e.pairs.len()));
                    }
                    format!("{} ({})", e.bar, what.join(", "))
                })
                .collect::<Vec<_>>()
                .join("; ")
        };
        let (applied, effective, clean) = match &s.status {
            ScenarioStatus::Skipped { reason } => (
                format!("SKIPPED: {reason}"),
                "-".to_string(),
                "-".to_string(),
            ),
            _ => (
                f.applied_at_ms
                    .map_or_else(|| "no".to_string(), utc_rfc3339),
                check(&f.effective).to_string(),
                check(&f.clean).to_string(),
            ),
        };
        let _ = writeln!(
            md,
            "| {window} | {} | {} | {} | {} | {} | {} | {} | {} |",
            md_cell(&s.name),
            f.kind,
            if f.backend.is_empty() {
                "-"
            } else {
                &f.backend
            },
            md_cell(&targets),
            md_cell(&applied),
            effective,
            clean,
            md_cell(&exemptions)
        );
    }
    let _ = writeln!(md);
    for (window, s, f) in &faults {
        if matches!(s.status, ScenarioStatus::Skipped { .. }) {
            continue;
        }
        let head = format!("- window {window} `{}`", s.name);
        let _ = writeln!(md, "{head} effective: {}", md_cell(f.effective.summary()));
        let _ = writeln!(md, "{head} clean: {}", md_cell(f.clean.summary()));
        for r in &f.recoveries {
            let stage = |at: Option<u64>| {
                at.map_or_else(
                    || "never".to_string(),
                    |t| {
                        format!(
                            "+{}",
                            soak_gates::display::human_duration(t.saturating_sub(r.issued_ms))
                        )
                    },
                )
            };
            let _ = writeln!(
                md,
                "{head} restart of {}: recovered {} (process up {}, API up {}, in views {}, first DM {}; {})",
                md_cell(&r.node),
                r.recovered_after_ms.map_or_else(
                    || "never".to_string(),
                    |ms| format!("after {}", soak_gates::display::human_duration(ms))
                ),
                stage(r.process_up_ms),
                stage(r.api_up_ms),
                stage(r.in_views_ms),
                stage(r.first_dm_ms),
                md_cell(&r.service)
            );
        }
        if let Some(h) = &f.heal {
            let _ = writeln!(
                md,
                "{head} heal: {}",
                match h.healed_after_ms {
                    Some(ms) => format!(
                        "every cut pair delivered again {} after the revert",
                        soak_gates::display::human_duration(ms)
                    ),
                    None => format!("still failing: {}", md_cell(&h.still_failing.join(", "))),
                }
            );
        }
        if let Some(c) = &f.cooling {
            let _ = writeln!(md, "{head} cooling: {}", md_cell(&c.detail));
        }
        if let Some(a) = &f.first_attempt {
            let _ = writeln!(
                md,
                "{head} first attempts after idling: {} of {} pairs{}",
                a.first_try,
                a.pairs,
                if a.retried.is_empty() {
                    String::new()
                } else {
                    format!(" (retried: {})", md_cell(&a.retried.join(", ")))
                }
            );
        }
    }
}

fn phase_a_section(md: &mut String, verdict: &Verdict) {
    let Some(pa) = &verdict.phase_a else {
        return;
    };
    let _ = writeln!(md, "\n## Phase A\n");
    let _ = writeln!(
        md,
        "{} matrices: {} required pairs, {} sent, {} acked, {} received, **{} delivered** (acked and \
         in the receiver's inbox exactly once).",
        pa.matrices, pa.pairs, pa.sent, pa.acked, pa.received, pa.delivered
    );
    if let Some(node) = &pa.common_node {
        let _ = writeln!(md, "\nEvery failing pair involves **{}**.", md_cell(node));
    }
    let failing: Vec<_> = pa
        .per_pair
        .iter()
        .filter(|p| !p.failed_windows.is_empty())
        .collect();
    if failing.is_empty() {
        return;
    }
    let _ = writeln!(
        md,
        "\n| pair | required | sent | acked | received | delivered | failed in windows |"
    );
    let _ = writeln!(md, "|---|---|---|---|---|---|---|");
    const LIMIT: usize = 50;
    for p in failing.iter().take(LIMIT) {
        let _ = writeln!(
            md,
            "| {}→{} | {} | {} | {} | {} | {} | {} |",
            md_cell(&p.from),
            md_cell(&p.to),
            p.required,
            p.sent,
            p.acked,
            p.received,
            p.delivered,
            p.failed_windows
                .iter()
                .map(u32::to_string)
                .collect::<Vec<_>>()
                .join(", ")
        );
    }
    if failing.len() > LIMIT {
        let _ = writeln!(
            md,
            "\n… and {} more failing pairs (every pair is in `phase_a.csv`).",
            failing.len() - LIMIT
        );
    }
}

/// Every failed sampling attempt, by window.
fn sampling_section(md: &mut String, verdict: &Verdict) {
    let total: usize = verdict
        .windows
        .iter()
        .map(|w| w.sampling_failures.len())
        .sum();
    if total == 0 {
        return;
    }
    let _ = writeln!(md, "\n## Failed sampling attempts\n");
    const LIMIT: usize = 50;
    let mut shown = 0;
    for w in &verdict.windows {
        for f in &w.sampling_failures {
            if shown == LIMIT {
                let _ = writeln!(
                    md,
                    "- … and {} more (every one is in `verdict.json`)",
                    total - LIMIT
                );
                return;
            }
            shown += 1;
            let when = if f.attempts == 1 {
                utc_rfc3339(f.from_ms)
            } else {
                format!(
                    "{} attempts from {} to {}",
                    f.attempts,
                    utc_rfc3339(f.from_ms),
                    utc_rfc3339(f.to_ms)
                )
            };
            let _ = writeln!(
                md,
                "- window {}: {} at {}: {}",
                w.index,
                md_cell(&f.node),
                when,
                md_cell(&f.error)
            );
        }
    }
}

fn bars_table(md: &mut String, bars: &[BarResult]) {
    let _ = writeln!(
        md,
        "| bar | verdict | statistic | value | threshold | reason |"
    );
    let _ = writeln!(md, "|---|---|---|---|---|---|");
    for b in bars {
        let _ = writeln!(
            md,
            "| {} | {} | {} | {} | {} | {} |",
            md_cell(&b.title),
            show_verdict(b),
            md_cell(&b.statistic),
            show_value(b.value),
            md_cell(&b.threshold),
            md_cell(&b.reason)
        );
    }
}
