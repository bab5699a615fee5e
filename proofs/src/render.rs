//! Renderers: `verdict.json`, `summary.md`, `summary.csv`, `timeline.csv`. Pure functions of the
//! metadata and the verdict; nothing is ever parsed back out of them (the machine contract is
//! `verdict.json`).

use std::fmt::Write as _;
use std::path::{Path, PathBuf};

use soak_gates::{BarResult, Outcome, Verdict};

use crate::error::{Error, Result};
use crate::format;
use crate::fsio::write_atomic;
use crate::meta::{RunMeta, RunStatus};
use crate::runid::utc_rfc3339;

/// A statistic for humans: whole numbers without a fraction, others as Rust prints them
/// (shortest round-trip form); `-` when unknown.
pub fn show_value(value: Option<f64>) -> String {
    match value {
        Some(v) if v.fract() == 0.0 && v.abs() < 1e15 => format!("{}", v as i64),
        Some(v) => format!("{v}"),
        None => "-".to_string(),
    }
}

/// `verdict.json`: pretty JSON with a final newline.
pub fn verdict_json(verdict: &Verdict) -> Result<String> {
    let mut text = serde_json::to_string_pretty(verdict)
        .map_err(|e| Error::new("failed to serialize the verdict", e))?;
    text.push('\n');
    Ok(text)
}

/// Writes the four rendered files into `dir` atomically; returns their paths.
pub fn write_report(
    dir: &Path,
    meta: &RunMeta,
    status: RunStatus,
    verdict: &Verdict,
) -> Result<Vec<PathBuf>> {
    let files = [
        (format::VERDICT, verdict_json(verdict)?),
        (format::SUMMARY_MD, summary_md(meta, status, verdict)),
        (format::SUMMARY_CSV, summary_csv(verdict)),
        (format::TIMELINE_CSV, timeline_csv(verdict)),
    ];
    let mut out = Vec::with_capacity(files.len());
    for (name, text) in files {
        let path = dir.join(name);
        write_atomic(&path, text.as_bytes())?;
        out.push(path);
    }
    Ok(out)
}

fn csv_field(field: &str) -> String {
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
            ],
        );
    }
    out
}

/// `timeline.csv`: one row per window.
pub fn timeline_csv(verdict: &Verdict) -> String {
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
            ],
        );
    }
    out
}

fn md_cell(text: &str) -> String {
    text.replace('|', "\\|").replace('\n', " ")
}

/// `summary.md`: the verdict for humans.
pub fn summary_md(meta: &RunMeta, status: RunStatus, verdict: &Verdict) -> String {
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
    let _ = writeln!(md, "| windows | {} |", verdict.windows.len());
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

    let _ = writeln!(md, "\n## Soak-level bars\n");
    bars_table(&mut md, &verdict.soak_bars);

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
        let _ = writeln!(
            md,
            "| {}{} | {} | {} | {} | {} | {} |",
            w.index,
            if w.warmup { " (warm-up)" } else { "" },
            utc_rfc3339(w.start_ms),
            w.verdict,
            phase_a,
            md_cell(&scenarios),
            md_cell(&failing)
        );
    }

    let not_go: Vec<&BarResult> = verdict
        .windows
        .iter()
        .flat_map(|w| w.bars.iter())
        .filter(|b| b.verdict != Outcome::Go)
        .collect();
    if !not_go.is_empty() {
        let _ = writeln!(md, "\n## Why not GO\n");
        let _ = writeln!(
            md,
            "| window | bar | verdict | value | threshold | nodes | reason |"
        );
        let _ = writeln!(md, "|---|---|---|---|---|---|---|");
        for b in not_go {
            let _ = writeln!(
                md,
                "| {} | {} | {} | {} | {} | {} | {} |",
                b.window.map(|w| w.to_string()).unwrap_or_default(),
                md_cell(&b.bar),
                b.verdict,
                show_value(b.value),
                md_cell(&b.threshold),
                md_cell(&b.nodes.join(" ")),
                md_cell(&b.reason)
            );
        }
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
    if !verdict.gaps.is_empty() {
        let _ = writeln!(md, "\n## Evidence gaps\n");
        for g in &verdict.gaps {
            let _ = writeln!(
                md,
                "- window {}: {} without a good sample for {} s ({} → {})",
                g.window,
                md_cell(&g.node),
                (g.to_ms - g.from_ms) / 1000,
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
            b.verdict,
            md_cell(&b.statistic),
            show_value(b.value),
            md_cell(&b.threshold),
            md_cell(&b.reason)
        );
    }
}
