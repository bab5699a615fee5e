//! The end-of-run terminal tables (comfy-table): one row per window, then every bar that is not
//! GO (window and soak level), then the verdict line with the proof path.

use std::fmt::Write as _;
use std::path::Path;

use comfy_table::{Table, presets};
use soak_gates::model::Observations;
use soak_gates::{BarResult, Outcome, Verdict};

use super::event::RunStatus;

fn ms(us: Option<u64>) -> String {
    us.map_or_else(
        || "-".to_owned(),
        |us| format!("{:.1}ms", us as f64 / 1_000.0),
    )
}

fn table() -> Table {
    let mut table = Table::new();
    table.load_preset(presets::ASCII_MARKDOWN);
    table.set_width(140);
    table.set_content_arrangement(comfy_table::ContentArrangement::Dynamic);
    table
}

/// The windows table.
pub fn windows_table(verdict: &Verdict, observations: &Observations) -> Table {
    let mut table = table();
    table.set_header([
        "window",
        "kind",
        "verdict",
        "phase A",
        "p50",
        "p99",
        "fanout min delivery",
        "bars not GO",
    ]);
    for window in &verdict.windows {
        let phase_a = window.phase_a.as_ref();
        let fanout = observations
            .windows
            .iter()
            .find(|w| w.index == window.index)
            .and_then(|w| w.fanout.as_ref())
            .map(|f| {
                let min = f
                    .subscribers
                    .iter()
                    .map(|s| {
                        if s.expected == 0 {
                            0.0
                        } else {
                            s.received as f64 / s.expected as f64
                        }
                    })
                    .fold(f64::INFINITY, f64::min);
                if min.is_finite() {
                    format!("{:.1}%", min * 100.0)
                } else {
                    "-".to_owned()
                }
            })
            .unwrap_or_else(|| "-".to_owned());
        let failing: Vec<&str> = window
            .bars
            .iter()
            .filter(|b| b.verdict != Outcome::Go)
            .map(|b| b.bar.as_str())
            .collect();
        table.add_row([
            window.index.to_string(),
            if window.warmup { "warm-up" } else { "judged" }.to_owned(),
            window.verdict.to_string(),
            phase_a.map_or_else(
                || "-".to_owned(),
                |p| format!("{}/{}", p.delivered, p.pairs),
            ),
            ms(phase_a.and_then(|p| p.p50_us)),
            ms(phase_a.and_then(|p| p.p99_us)),
            fanout,
            if failing.is_empty() {
                "-".to_owned()
            } else {
                failing.join(", ")
            },
        ]);
    }
    table
}

fn value(bar: &BarResult) -> String {
    bar.value
        .map_or_else(|| "n/a".to_owned(), |v| format!("{v}"))
}

/// The bars that are not GO, window level then soak level; `None` when every bar holds.
pub fn bars_table(verdict: &Verdict) -> Option<Table> {
    let bars: Vec<&BarResult> = verdict
        .windows
        .iter()
        .flat_map(|w| w.bars.iter())
        .chain(verdict.soak_bars.iter())
        .filter(|b| b.verdict != Outcome::Go)
        .collect();
    if bars.is_empty() {
        return None;
    }
    let mut table = table();
    table.set_header([
        "bar",
        "window",
        "verdict",
        "value",
        "threshold",
        "nodes",
        "why",
    ]);
    for bar in bars {
        table.add_row([
            bar.bar.clone(),
            bar.window
                .map_or_else(|| "soak".to_owned(), |w| w.to_string()),
            bar.verdict.to_string(),
            value(bar),
            bar.threshold.clone(),
            bar.nodes.join(", "),
            bar.reason.clone(),
        ]);
    }
    Some(table)
}

/// Everything printed at the end of a run.
pub fn render(
    verdict: &Verdict,
    observations: &Observations,
    proof_dir: &Path,
    status: RunStatus,
) -> String {
    let mut out = String::new();
    let _ = writeln!(out, "{}", windows_table(verdict, observations));
    match bars_table(verdict) {
        Some(bars) => {
            let _ = writeln!(out, "\n{bars}");
        }
        None => {
            let _ = writeln!(out, "\nevery bar holds");
        }
    }
    for gap in &verdict.gaps {
        let _ = writeln!(
            out,
            "evidence gap: {} unobserved for {} ms in window {}",
            gap.node,
            gap.to_ms.saturating_sub(gap.from_ms),
            gap.window
        );
    }
    let _ = write!(
        out,
        "\nverdict: {} (run {}, gate {}, {} nodes)\nproof: {}",
        verdict.verdict,
        status.as_str(),
        verdict.gate,
        verdict.nodes,
        proof_dir.display()
    );
    out
}
