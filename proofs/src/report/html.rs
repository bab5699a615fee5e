//! The page itself: static HTML for everything that reads without scripts (banner, bars, window
//! strip, totals, heat map, tables, SVG charts), the chart data as JSON, and the inlined
//! scripts that turn the SVG charts into interactive uPlot charts.

use std::collections::BTreeMap;
use std::fmt::Write as _;

use soak_gates::model::WindowRecord;
use soak_gates::{BarResult, Outcome, Verdict};

use super::svg::{Line, Shade, line_chart};
use super::{ReportData, ReportInput};
use crate::faults::StepKind;
use crate::render::{show_value, show_verdict, why_line};
use crate::runid::utc_rfc3339;

const UPLOT_JS: &str = include_str!("../../assets/uPlot.iife.min.js");
const UPLOT_CSS: &str = include_str!("../../assets/uPlot.min.css");
const REPORT_JS: &str = include_str!("../../assets/report.js");
const REPORT_CSS: &str = include_str!("../../assets/report.css");

/// HTML-escapes text for element content and attribute values.
pub(crate) fn esc(text: &str) -> String {
    let mut out = String::with_capacity(text.len());
    for c in text.chars() {
        match c {
            '&' => out.push_str("&amp;"),
            '<' => out.push_str("&lt;"),
            '>' => out.push_str("&gt;"),
            '"' => out.push_str("&quot;"),
            '\'' => out.push_str("&#39;"),
            c => out.push(c),
        }
    }
    out
}

fn class_of(verdict: Outcome) -> &'static str {
    match verdict {
        Outcome::Go => "go",
        Outcome::Unknown => "unknown",
        Outcome::NoGo => "nogo",
    }
}

fn ms(us: Option<u64>) -> String {
    us.map_or("-".to_string(), |us| {
        format!("{:.1} ms", us as f64 / 1000.0)
    })
}

fn time_of_day(unix_ms: u64) -> String {
    // `YYYY-MM-DDTHH:MM:SSZ` → `HH:MM:SS`.
    utc_rfc3339(unix_ms)
        .get(11..19)
        .unwrap_or_default()
        .to_string()
}

/// The JSON blob, safe inside a `<script>` element (`<` escaped, which JSON allows).
fn data_json(data: &ReportData) -> String {
    serde_json::to_string(data)
        .unwrap_or_else(|_| "{}".to_string())
        .replace('<', "\\u003c")
}

/// The whole page.
pub(crate) fn page(input: &ReportInput<'_>, data: &ReportData) -> String {
    let mut h = String::with_capacity(256 * 1024);
    let verdict_text = input
        .verdict
        .map_or("NO VERDICT".to_string(), |v| v.verdict.to_string());
    let _ = write!(
        h,
        "<!doctype html>\n<html lang=\"en\">\n<head>\n<meta charset=\"utf-8\">\n<meta name=\"viewport\" content=\"width=device-width, initial-scale=1\">\n<title>Soak {}: {}</title>\n<style>\n{UPLOT_CSS}\n{REPORT_CSS}</style>\n</head>\n<body>\n",
        esc(&input.meta.run_id),
        esc(&verdict_text)
    );
    banner(&mut h, input);
    bars(&mut h, input);
    strip(&mut h, input);
    totals(&mut h, input);
    time_series(&mut h, data);
    phase_a(&mut h, input, data);
    fanout(&mut h, input, data);
    events(&mut h, input, data);
    builds(&mut h, input);
    notes(&mut h, input);
    let _ = write!(
        h,
        "<script type=\"application/json\" id=\"soak-data\">{}</script>\n<script>{UPLOT_JS}</script>\n<script>{REPORT_JS}</script>\n</body>\n</html>\n",
        data_json(data)
    );
    h
}

fn banner(h: &mut String, input: &ReportInput<'_>) {
    let meta = input.meta;
    let (class, title) = match input.verdict {
        Some(v) => (class_of(v.verdict), v.verdict.to_string()),
        None => ("none", "NO VERDICT".to_string()),
    };
    let _ = write!(
        h,
        "<header class=\"banner {class}\" id=\"banner\">\n<div class=\"verdict\">{}</div>\n<div class=\"facts\">\n<div class=\"run\">{}</div>\n",
        esc(&title),
        esc(&meta.run_id)
    );
    let mut facts = vec![
        format!(
            "gate <b>{}</b>",
            esc(input.verdict.map_or(&meta.gate, |v| &v.gate))
        ),
        format!("status <b>{}</b>", input.status.as_str()),
        format!(
            "<b>{}</b> nodes",
            input.verdict.map_or(meta.nodes.len(), |v| v.nodes)
        ),
        format!("<b>{}</b> windows", input.windows.len()),
        format!("started {}", utc_rfc3339(meta.started_at_ms)),
        format!("label {}", esc(&meta.label)),
    ];
    if let Some(seed) = meta.run_seed() {
        facts.push(format!("seed {seed}"));
    }
    let _ = writeln!(h, "<div>{}</div>", facts.join(" · "));
    // Why it is not GO: the root causes first (as in summary.md).
    if let Some(why) = input.verdict.and_then(why_line) {
        let _ = writeln!(
            h,
            "<div class=\"why\">Why: {}</div>",
            esc(&why.replace('`', ""))
        );
    }
    if let Some(c) = meta.coverage.as_ref().filter(|c| c.is_partial()) {
        let _ = writeln!(
            h,
            "<div class=\"warn\">PARTIAL FLEET: the verdict covers {}; it says nothing about the hosts left out</div>",
            esc(&c.describe())
        );
    }
    if input.verdict.is_none() {
        let _ = writeln!(
            h,
            "<div class=\"warn\">This proof is incomplete (status {}): no verdict was stored. Charts show the evidence collected so far; run <code>soak score</code> to judge it.</div>",
            input.status.as_str()
        );
    }
    if let Some(command) = meta.command_line() {
        let _ = writeln!(
            h,
            "<div class=\"command\"><code>{}</code></div>",
            esc(&command)
        );
    }
    h.push_str("</div>\n</header>\n");
}

fn verdict_cell(v: Outcome) -> String {
    format!("<td class=\"v {}\">{}</td>", class_of(v), v)
}

fn bars(h: &mut String, input: &ReportInput<'_>) {
    let Some(verdict) = input.verdict else {
        return;
    };
    h.push_str("<section id=\"bars\">\n<h2>Bars</h2>\n");
    h.push_str("<h3>Soak level</h3>\n<table class=\"bars\">\n<tr><th>bar</th><th>verdict</th><th>statistic</th><th>value</th><th>threshold</th><th>reason</th></tr>\n");
    for b in &verdict.soak_bars {
        bar_row(h, b);
    }
    h.push_str("</table>\n");
    // Every window bar, folded: how many windows it held in, and the worst case.
    let mut order: Vec<&str> = Vec::new();
    let mut by_bar: BTreeMap<&str, Vec<&BarResult>> = BTreeMap::new();
    for b in verdict.windows.iter().flat_map(|w| w.bars.iter()) {
        if !by_bar.contains_key(b.bar.as_str()) {
            order.push(b.bar.as_str());
        }
        by_bar.entry(b.bar.as_str()).or_default().push(b);
    }
    h.push_str("<h3>Per window</h3>\n<table class=\"bars\">\n<tr><th>bar</th><th>threshold</th><th>worst</th><th>GO</th><th>UNKNOWN</th><th>NO-GO</th><th>worst window</th><th>why</th></tr>\n");
    for id in order {
        let results = &by_bar[id];
        // The first window with the worst verdict (`max_by_key` keeps the last of equals).
        let Some(worst) = results.iter().rev().max_by_key(|b| b.verdict) else {
            continue;
        };
        let count = |o: Outcome| results.iter().filter(|b| b.verdict == o).count();
        let _ = writeln!(
            h,
            "<tr><td title=\"{}\">{}</td><td>{}</td>{}<td>{}</td><td>{}</td><td>{}</td><td>{}</td><td>{}</td></tr>",
            esc(&worst.statistic),
            esc(&worst.title),
            esc(&worst.threshold),
            verdict_cell(worst.verdict),
            count(Outcome::Go),
            count(Outcome::Unknown),
            count(Outcome::NoGo),
            worst
                .window
                .filter(|_| worst.verdict != Outcome::Go)
                .map_or("-".to_string(), |w| w.to_string()),
            esc(&worst.reason)
        );
    }
    h.push_str("</table>\n</section>\n");
}

fn bar_row(h: &mut String, b: &BarResult) {
    // A bar that could not apply reads `n/a` (its verdict stays UNKNOWN: never a pass).
    let verdict = format!(
        "<td class=\"v {}\">{}</td>",
        class_of(b.verdict),
        esc(&show_verdict(b))
    );
    let _ = writeln!(
        h,
        "<tr><td>{}</td>{}<td>{}</td><td>{}</td><td>{}</td><td>{}</td></tr>",
        esc(&b.title),
        verdict,
        esc(&b.statistic),
        esc(&show_value(b.value)),
        esc(&b.threshold),
        esc(&b.reason)
    );
}

fn strip(h: &mut String, input: &ReportInput<'_>) {
    h.push_str("<section id=\"windows\">\n<h2>Windows</h2>\n<div class=\"strip\">\n");
    let verdicts: BTreeMap<u32, &soak_gates::WindowVerdict> = input
        .verdict
        .map(|v| v.windows.iter().map(|w| (w.index, w)).collect())
        .unwrap_or_default();
    for w in input.windows {
        let judged = verdicts.get(&w.index);
        let (class, text) = judged.map_or(("none", "not judged".to_string()), |v| {
            (class_of(v.verdict), v.verdict.to_string())
        });
        let failing = judged
            .map(|v| {
                v.bars
                    .iter()
                    .filter(|b| b.verdict != Outcome::Go)
                    .map(|b| format!("{} {}", b.bar, b.verdict))
                    .collect::<Vec<_>>()
                    .join(", ")
            })
            .unwrap_or_default();
        let _ = writeln!(
            h,
            "<span class=\"w {class}{}\" title=\"window {} · {text} · {}–{}{}{}\">{}</span>",
            if w.warmup { " warmup" } else { "" },
            w.index,
            time_of_day(w.start_ms),
            time_of_day(w.end_ms),
            if w.warmup { " · warm-up" } else { "" },
            if failing.is_empty() {
                String::new()
            } else {
                format!(" · {}", esc(&failing))
            },
            w.index
        );
    }
    if input.windows.is_empty() {
        h.push_str("<span class=\"empty\">no window was recorded</span>\n");
    }
    h.push_str("</div>\n<p class=\"legend\"><span class=\"w go\">GO</span> <span class=\"w unknown\">UNKNOWN</span> <span class=\"w nogo\">NO-GO</span> <span class=\"w go warmup\">warm-up</span></p>\n</section>\n");
}

fn totals(h: &mut String, input: &ReportInput<'_>) {
    let Some(summary) = input.summary else {
        return;
    };
    h.push_str("<section id=\"totals\">\n<h2>Totals</h2>\n<table class=\"totals\">\n");
    for (label, value, rate) in summary.rows() {
        let _ = writeln!(
            h,
            "<tr><th>{}</th><td>{}</td><td>{}</td></tr>",
            esc(label),
            esc(&value),
            esc(&rate)
        );
    }
    h.push_str("</table>\n</section>\n");
}

fn time_series(h: &mut String, data: &ReportData) {
    h.push_str("<section id=\"timeseries\">\n<h2>Time series per node</h2>\n<p class=\"legend\"><span class=\"sw fault\"></span> fault period <span class=\"sw restart\"></span> restart (new process epoch) <span class=\"sw gap\"></span> evidence gap");
    if data.axis.bucket_ms > 0 {
        let _ = write!(
            h,
            " · each point is the largest value in {} s",
            data.axis.bucket_ms / 1000
        );
    }
    h.push_str("</p>\n");
    let xs: Vec<f64> = data.x.iter().map(|&v| v as f64).collect();
    let x_text = (
        data.x.first().map(|&t| utc_rfc3339(t)).unwrap_or_default(),
        data.x.last().map(|&t| utc_rfc3339(t)).unwrap_or_default(),
    );
    let shades: Vec<Shade<'_>> = data
        .bands
        .iter()
        .map(|b| Shade {
            class: b.kind,
            from: b.from as f64,
            to: b.to as f64,
        })
        .collect();
    for (i, chart) in data.charts.iter().enumerate() {
        // The static view draws the fleet's largest value at each point.
        let fleet_max: Vec<Option<f64>> = (0..xs.len())
            .map(|k| {
                chart
                    .values
                    .iter()
                    .filter_map(|node| node.get(k).copied().flatten())
                    .reduce(f64::max)
            })
            .collect();
        let _ = write!(
            h,
            "<figure class=\"chart\" id=\"chart-{i}\">\n<figcaption>{} <span class=\"unit\">({}; <code>{}</code>)</span></figcaption>\n<div class=\"plot\" data-chart=\"{i}\"></div>\n{}\n<div class=\"note\">static view: fleet maximum</div>\n</figure>\n",
            esc(&chart.title),
            chart.unit,
            esc(&chart.id),
            line_chart(
                &xs,
                &[Line {
                    colour: "#24292f",
                    values: fleet_max,
                }],
                &shades,
                (&x_text.0, &x_text.1),
                &chart.title
            )
        );
    }
    if data.charts.is_empty() || data.x.is_empty() {
        h.push_str("<p class=\"empty\">no sample carried a charted metric</p>\n");
    }
    h.push_str("</section>\n");
}

fn heat_colour(v: u64, lo: u64, hi: u64) -> String {
    let t = if hi > lo {
        (v - lo) as f64 / (hi - lo) as f64
    } else {
        0.0
    };
    // Green (fast) to orange (slow); red is kept for failed pairs.
    format!(
        "hsl({:.0},70%,{:.0}%)",
        30.0 + 90.0 * (1.0 - t),
        80.0 - 18.0 * t
    )
}

fn phase_a(h: &mut String, input: &ReportInput<'_>, data: &ReportData) {
    h.push_str("<section id=\"phase-a\">\n<h2>Phase A</h2>\n");
    let matrices: Vec<&WindowRecord> = input
        .windows
        .iter()
        .filter(|w| w.phase_a.is_some())
        .collect();
    if matrices.is_empty() {
        h.push_str("<p class=\"empty\">no Phase A matrix was recorded</p>\n</section>\n");
        return;
    }
    // Per ordered pair over every window: delivered latencies, failures, attempts.
    #[derive(Default)]
    struct Cell {
        latencies: Vec<u64>,
        failed: usize,
        attempted: usize,
    }
    let mut cells: BTreeMap<(&str, &str), Cell> = BTreeMap::new();
    let mut names: Vec<&str> = data.nodes.iter().map(String::as_str).collect();
    for w in &matrices {
        for p in w.phase_a.iter().flat_map(|m| m.pairs.iter()) {
            for n in [p.from.as_str(), p.to.as_str()] {
                if !names.contains(&n) {
                    names.push(n);
                }
            }
            let cell = cells.entry((p.from.as_str(), p.to.as_str())).or_default();
            cell.attempted += 1;
            match (p.is_delivered(), p.latency_us) {
                (true, Some(us)) => cell.latencies.push(us),
                (true, None) => {}
                (false, _) => cell.failed += 1,
            }
        }
    }
    let medians: BTreeMap<(&str, &str), u64> = cells
        .iter_mut()
        .filter_map(|(k, c)| {
            c.latencies.sort_unstable();
            let n = c.latencies.len();
            (n > 0).then(|| (*k, c.latencies[(n - 1) / 2]))
        })
        .collect();
    let lo = medians.values().copied().min().unwrap_or(0);
    let hi = medians.values().copied().max().unwrap_or(0);
    let small = names.len() <= 12;
    let _ = writeln!(
        h,
        "<h3>Latency heat map (sender × receiver)</h3>\n<p class=\"legend\">median send-to-ACK latency of each ordered pair over {} matrices, {} (green) to {} (orange); <span class=\"sw failcell\"></span> a pair that failed in some window; <span class=\"sw nonecell\"></span> never attempted</p>",
        matrices.len(),
        ms(Some(lo)),
        ms(Some(hi))
    );
    h.push_str("<div class=\"heatwrap\"><table class=\"heat\" id=\"heatmap\">\n<tr><th class=\"corner\">from \\ to</th>");
    for (j, to) in names.iter().enumerate() {
        let _ = write!(
            h,
            "<th title=\"{}\">{}</th>",
            esc(to),
            if small { esc(to) } else { j.to_string() }
        );
    }
    h.push_str("</tr>\n");
    for (i, from) in names.iter().enumerate() {
        let _ = write!(
            h,
            "<tr><th title=\"{}\">{}</th>",
            esc(from),
            if small {
                esc(from)
            } else {
                format!("{i} {}", esc(from))
            }
        );
        for to in &names {
            if from == to {
                h.push_str("<td class=\"self\"></td>");
                continue;
            }
            let cell = cells.get(&(*from, *to));
            let median = medians.get(&(*from, *to)).copied();
            match cell {
                None => {
                    let _ = write!(
                        h,
                        "<td class=\"nonecell\" title=\"{} → {}: never attempted\"></td>",
                        esc(from),
                        esc(to)
                    );
                }
                Some(c) if c.failed > 0 => {
                    let _ = write!(
                        h,
                        "<td class=\"failcell\" title=\"{} → {}: failed in {} of {} windows; median {}\">{}</td>",
                        esc(from),
                        esc(to),
                        c.failed,
                        c.attempted,
                        ms(median),
                        if small {
                            format!("✗{}", c.failed)
                        } else {
                            String::new()
                        }
                    );
                }
                Some(c) => {
                    let colour = median.map_or("#ddd".to_string(), |m| heat_colour(m, lo, hi));
                    let _ = write!(
                        h,
                        "<td style=\"background:{colour}\" title=\"{} → {}: median {} over {} windows\">{}</td>",
                        esc(from),
                        esc(to),
                        ms(median),
                        c.attempted,
                        if small {
                            median.map_or(String::new(), |m| format!("{:.1}", m as f64 / 1000.0))
                        } else {
                            String::new()
                        }
                    );
                }
            }
        }
        h.push_str("</tr>\n");
    }
    h.push_str("</table></div>\n");
    h.push_str("<h3>Latency distribution per window</h3>\n<figure class=\"chart\" id=\"latency-chart\">\n<figcaption>send-to-ACK latency of delivered pairs <span class=\"unit\">(ms)</span></figcaption>\n<div class=\"plot\" data-latency=\"1\"></div>\n");
    let xs: Vec<f64> = data.latency.iter().map(|l| f64::from(l.index)).collect();
    let q = |pick: fn(&super::WindowLatency) -> Option<u64>| -> Vec<Option<f64>> {
        data.latency
            .iter()
            .map(|l| pick(l).map(|us| us as f64 / 1000.0))
            .collect()
    };
    let first = data
        .latency
        .first()
        .map(|l| format!("window {}", l.index))
        .unwrap_or_default();
    let last = data
        .latency
        .last()
        .map(|l| format!("window {}", l.index))
        .unwrap_or_default();
    h.push_str(&line_chart(
        &xs,
        &[
            Line {
                colour: "#8c959f",
                values: q(|l| l.min),
            },
            Line {
                colour: "#1a7f37",
                values: q(|l| l.p50),
            },
            Line {
                colour: "#9a6700",
                values: q(|l| l.p90),
            },
            Line {
                colour: "#cf222e",
                values: q(|l| l.p99),
            },
            Line {
                colour: "#24292f",
                values: q(|l| l.max),
            },
        ],
        &[],
        (&first, &last),
        "Phase A latency per window",
    ));
    h.push_str("\n<div class=\"note\">static view: min, p50, p90, p99, max</div>\n</figure>\n");
    h.push_str("<table class=\"latency\">\n<tr><th>window</th><th>delivered</th><th>min</th><th>p50</th><th>p90</th><th>p99</th><th>max</th></tr>\n");
    for l in &data.latency {
        let _ = writeln!(
            h,
            "<tr><td>{}</td><td>{}/{}</td><td>{}</td><td>{}</td><td>{}</td><td>{}</td><td>{}</td></tr>",
            l.index,
            l.delivered,
            l.pairs,
            ms(l.min),
            ms(l.p50),
            ms(l.p90),
            ms(l.p99),
            ms(l.max)
        );
    }
    h.push_str("</table>\n</section>\n");
}

fn fanout(h: &mut String, input: &ReportInput<'_>, data: &ReportData) {
    h.push_str("<section id=\"fanout\">\n<h2>Fanout</h2>\n");
    let f = &data.fanout;
    if f.windows.is_empty() {
        h.push_str("<p class=\"empty\">no fanout burst was recorded</p>\n</section>\n");
        return;
    }
    let xs: Vec<f64> = f.windows.iter().map(|&w| f64::from(w)).collect();
    let ends = (
        format!("window {}", f.windows.first().copied().unwrap_or(0)),
        format!("window {}", f.windows.last().copied().unwrap_or(0)),
    );
    let worst = |rows: &[Vec<Option<f64>>], pick: fn(f64, f64) -> f64| -> Vec<Option<f64>> {
        (0..xs.len())
            .map(|k| {
                rows.iter()
                    .filter_map(|r| r.get(k).copied().flatten())
                    .reduce(pick)
            })
            .collect()
    };
    for (key, title, rows, pick, what) in [
        (
            "ratio",
            "delivery ratio per subscriber (received / expected)",
            &f.ratio,
            f64::min as fn(f64, f64) -> f64,
            "lowest",
        ),
        (
            "p99",
            "p99 delivery latency per subscriber (ms)",
            &f.p99_ms,
            f64::max as fn(f64, f64) -> f64,
            "highest",
        ),
    ] {
        let _ = write!(
            h,
            "<figure class=\"chart\" id=\"fanout-{key}\">\n<figcaption>{title}</figcaption>\n<div class=\"plot\" data-fanout=\"{key}\"></div>\n{}\n<div class=\"note\">static view: {what} subscriber</div>\n</figure>\n",
            line_chart(
                &xs,
                &[Line {
                    colour: "#24292f",
                    values: worst(rows, pick)
                }],
                &[],
                (&ends.0, &ends.1),
                title
            )
        );
    }
    // Per subscriber over every burst.
    #[derive(Default)]
    struct Sub {
        expected: u64,
        received: u64,
        duplicates: u64,
        p50: Option<u64>,
        p99: Option<u64>,
        max: Option<u64>,
        errors: usize,
    }
    let mut subs: BTreeMap<&str, Sub> = BTreeMap::new();
    for fr in input.windows.iter().filter_map(|w| w.fanout.as_ref()) {
        for s in &fr.subscribers {
            let e = subs.entry(s.node.as_str()).or_default();
            e.expected += s.expected;
            e.received += s.received;
            e.duplicates += s.duplicates;
            e.p50 = e.p50.max(s.p50_us);
            e.p99 = e.p99.max(s.p99_us);
            e.max = e.max.max(s.max_us);
            e.errors += usize::from(s.error.is_some());
        }
    }
    h.push_str("<table class=\"fanout\">\n<tr><th>subscriber</th><th>received / expected</th><th>delivery</th><th>duplicates</th><th>worst p50</th><th>worst p99</th><th>max</th><th>unreadable</th></tr>\n");
    for (node, s) in &subs {
        let ratio = if s.expected == 0 {
            "-".to_string()
        } else {
            format!("{:.1}%", s.received as f64 * 100.0 / s.expected as f64)
        };
        let _ = writeln!(
            h,
            "<tr><td>{}</td><td>{}/{}</td><td>{ratio}</td><td>{}</td><td>{}</td><td>{}</td><td>{}</td><td>{}</td></tr>",
            esc(node),
            s.received,
            s.expected,
            s.duplicates,
            ms(s.p50),
            ms(s.p99),
            ms(s.max),
            s.errors
        );
    }
    h.push_str("</table>\n</section>\n");
}

fn events(h: &mut String, input: &ReportInput<'_>, data: &ReportData) {
    h.push_str("<section id=\"faults\">\n<h2>Faults, restarts and gaps</h2>\n");
    let journal = input.faults;
    if !journal.present {
        h.push_str("<p>No fault journal in this proof (<code>faults/journal.jsonl</code>): no fault was injected.</p>\n");
    } else if journal.steps.is_empty() {
        h.push_str("<p>The fault journal holds no readable step.</p>\n");
    } else {
        h.push_str("<table class=\"faultsteps\">\n<tr><th>fault</th><th>window</th><th>targets</th><th>steps</th></tr>\n");
        for (fault, window, steps) in journal.by_fault() {
            let targets = steps
                .iter()
                .find(|s| !s.targets.is_empty())
                .map(|s| s.targets.join(" "))
                .unwrap_or_default();
            // Results, not intents (`apply`, `revert`, … precede their results).
            let list = steps
                .iter()
                .filter(|s| {
                    !matches!(
                        s.step,
                        StepKind::Apply
                            | StepKind::VerifyEffective
                            | StepKind::Revert
                            | StepKind::VerifyClean
                    )
                })
                .map(|s| {
                    let mut text = format!("{} {}", s.step, time_of_day(s.at_ms));
                    if let Some(of) = s.of {
                        text.push_str(&format!(" (of {of})"));
                    }
                    if !s.detail.is_empty() {
                        text.push_str(&format!(": {}", s.detail));
                    }
                    text
                })
                .collect::<Vec<_>>()
                .join(" → ");
            let _ = writeln!(
                h,
                "<tr><td>{}</td><td>{window}</td><td>{}</td><td>{}</td></tr>",
                esc(&fault),
                esc(&targets),
                esc(&list)
            );
        }
        h.push_str("</table>\n");
    }
    if !data.periods.is_empty() {
        h.push_str("<h3>Fault periods (shaded)</h3>\n<table>\n<tr><th>fault</th><th>window</th><th>targets</th><th>from</th><th>to</th><th>ended by</th></tr>\n");
        for p in &data.periods {
            let end = match p.end {
                crate::faults::PeriodEnd::Reverted => "revert",
                crate::faults::PeriodEnd::WindowEnd => "window end (no revert journaled)",
                crate::faults::PeriodEnd::RunEnd => "run end (no revert journaled)",
            };
            let _ = writeln!(
                h,
                "<tr><td>{}</td><td>{}</td><td>{}</td><td>{}</td><td>{}</td><td>{end}</td></tr>",
                esc(&p.fault),
                p.window,
                esc(&p.targets.join(" ")),
                utc_rfc3339(p.from_ms),
                utc_rfc3339(p.to_ms)
            );
        }
        h.push_str("</table>\n");
    }
    h.push_str("<h3>Restarts (new process epochs)</h3>\n");
    if data.restarts.is_empty() {
        h.push_str("<p>none</p>\n");
    } else {
        h.push_str("<table>\n<tr><th>node</th><th>last sample of the old process</th><th>first sample of the new</th></tr>\n");
        for (node, from, to) in &data.restarts {
            let _ = writeln!(
                h,
                "<tr><td>{}</td><td>{}</td><td>{}</td></tr>",
                esc(node),
                utc_rfc3339(*from),
                utc_rfc3339(*to)
            );
        }
        h.push_str("</table>\n");
    }
    h.push_str("<h3>Evidence gaps</h3>\n");
    if data.gaps.is_empty() {
        h.push_str("<p>none</p>\n");
    } else {
        h.push_str("<table>\n<tr><th>node</th><th>from</th><th>to</th><th>seconds</th></tr>\n");
        for (node, from, to) in &data.gaps {
            let _ = writeln!(
                h,
                "<tr><td>{}</td><td>{}</td><td>{}</td><td>{:.1}</td></tr>",
                esc(node),
                utc_rfc3339(*from),
                utc_rfc3339(*to),
                to.saturating_sub(*from) as f64 / 1000.0
            );
        }
        h.push_str("</table>\n");
    }
    if let Some(v) = input.verdict.filter(|v| !v.integrity_errors.is_empty()) {
        integrity(h, v);
    }
    h.push_str("</section>\n");
}

fn integrity(h: &mut String, v: &Verdict) {
    h.push_str("<h3>Integrity errors</h3>\n<table>\n<tr><th>node</th><th>counter</th><th>instance</th><th>from</th><th>to</th></tr>\n");
    for e in &v.integrity_errors {
        let _ = writeln!(
            h,
            "<tr><td>{}</td><td>{}</td><td>{}</td><td>{} at {}</td><td>{} at {}</td></tr>",
            esc(&e.node),
            esc(&e.counter),
            esc(&e.instance),
            e.from_value,
            utc_rfc3339(e.from_ms),
            e.to_value,
            utc_rfc3339(e.to_ms)
        );
    }
    h.push_str("</table>\n");
}

fn builds(h: &mut String, input: &ReportInput<'_>) {
    h.push_str("<section id=\"builds\">\n<h2>Node builds</h2>\n");
    if input.meta.node_builds.is_empty() {
        h.push_str("<p class=\"empty\">no node build was recorded</p>\n</section>\n");
        return;
    }
    h.push_str("<table>\n<tr><th>host</th><th>version</th><th>git</th><th>sha256</th><th>started</th></tr>\n");
    for b in &input.meta.node_builds {
        let _ = writeln!(
            h,
            "<tr><td>{}</td><td>{}</td><td>{}</td><td title=\"{}\"><code>{}</code></td><td>{}</td></tr>",
            esc(&b.host),
            esc(&b.version),
            esc(&b.git),
            esc(&b.binary_sha256),
            esc(b.binary_sha256.get(..12).unwrap_or(&b.binary_sha256)),
            utc_rfc3339(b.started_at_ms)
        );
    }
    h.push_str("</table>\n</section>\n");
}

fn notes(h: &mut String, input: &ReportInput<'_>) {
    let all: Vec<&String> = input
        .notes
        .iter()
        .chain(input.faults.problems.iter())
        .collect();
    if all.is_empty() {
        return;
    }
    h.push_str("<section id=\"notes\">\n<h2>Notes</h2>\n<ul>\n");
    for n in all {
        let _ = writeln!(h, "<li>{}</li>", esc(n));
    }
    h.push_str("</ul>\n</section>\n");
}
