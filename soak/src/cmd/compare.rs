//! `soak compare BASE CANDIDATE`: is the candidate run worse than the base run?
//!
//! Step one checks the thresholds and `--out` (never inside either proof, never a non-empty
//! directory); step two reads both proofs, refuses incomparable ones (different gate, node
//! count or scenarios) unless `--force`, and classifies every metric with
//! [`soak_gates::compare`] (each proof judged with its own stored gate). Output: a terminal
//! table (or `--json`), and with `--out` `compare.md` and `compare.json`.
//! Exit: 0 no regression, 1 regression, 2 unknown, 64 usage or incomparable proofs.

use std::path::{Path, PathBuf};
use std::time::Duration;

use clap::Args;
use comfy_table::{Table, presets};
use soak_gates::compare::{
    Classification, MetricResult, Overall, Report, Settings, Side, Unit, compare, fmt, fmt_p,
    incomparable, signed,
};
use soak_proofs::Proof;

use crate::cmd::run::parse_duration;
use crate::cmd::score::stored_gate;
use crate::exit::{CliError, CliResult, Exit};
use crate::output::outln;

/// `compare.md`.
pub const COMPARE_MD: &str = "compare.md";
/// `compare.json`.
pub const COMPARE_JSON: &str = "compare.json";

/// Arguments of `soak compare`.
#[derive(Debug, Args)]
#[command(after_help = "\
Exit codes: 0 no regression, 1 regression, 2 unknown (a metric without evidence),
64 usage (bad flags, unreadable proofs, incomparable proofs without --force).

Examples:
  soak compare proofs/20261122T010946Z-v1-4 proofs/20261123T020000Z-v1-5
  soak compare BASE CANDIDATE --out compare-v1-5 --latency-floor 2ms")]
pub struct CompareArgs {
    /// Proof directory of the reference run (e.g. the last release).
    #[arg(value_name = "BASE")]
    base: PathBuf,
    /// Proof directory of the run under test.
    #[arg(value_name = "CANDIDATE")]
    candidate: PathBuf,
    /// Write compare.md and compare.json into this directory (new or empty; never inside
    /// either proof).
    #[arg(long, value_name = "DIR")]
    out: Option<PathBuf>,
    /// Compare even when the gate, node count or scenarios differ (the report names the
    /// differences).
    #[arg(long)]
    force: bool,
    /// Print the report as JSON (compare.json) instead of tables.
    #[arg(long)]
    json: bool,
    /// Confidence level of each shift's interval, in (0.5, 1).
    #[arg(long, default_value_t = 0.95, value_name = "LEVEL")]
    confidence: f64,
    /// Allowed shift as a fraction of the base median (Kayenta's tolerance).
    #[arg(long, default_value_t = 0.25, value_name = "FRACTION")]
    tolerance: f64,
    /// Smallest latency shift that can be a regression.
    #[arg(long, default_value = "5ms", value_parser = parse_duration, value_name = "DURATION")]
    latency_floor: Duration,
    /// Effect-size gate: Vargha–Delaney A (chance a candidate value beats a base value) at
    /// least this for a rise, at most 1 − this for a fall; in [0.5, 1].
    #[arg(long, default_value_t = 0.64, value_name = "A")]
    min_effect: f64,
}

/// Runs `soak compare`.
pub async fn execute(args: CompareArgs) -> CliResult {
    // Step one: what the user typed.
    let settings = Settings {
        confidence: args.confidence,
        tolerance: args.tolerance,
        latency_floor_ms: args.latency_floor.as_secs_f64() * 1000.0,
        min_effect: args.min_effect,
    };
    settings
        .validate()
        .map_err(|why| CliError::usage(format!("bad threshold: {why}")))?;
    for (what, dir) in [("BASE", &args.base), ("CANDIDATE", &args.candidate)] {
        if !dir.is_dir() {
            return Err(CliError::usage(format!(
                "{what} {} is not a directory",
                dir.display()
            )));
        }
    }
    let base_dir = canonical(&args.base)?;
    let candidate_dir = canonical(&args.candidate)?;
    if base_dir == candidate_dir {
        return Err(CliError::usage(format!(
            "BASE and CANDIDATE are the same proof ({})",
            base_dir.display()
        )));
    }
    if let Some(out) = &args.out {
        check_out_dir(out, &[&base_dir, &candidate_dir])?;
    }

    // Step two: the proofs.
    let read = |dir: &Path| {
        soak_proofs::read(dir).map_err(|err| CliError::usage(format!("{err}: {}", err.kind)))
    };
    let base = read(&args.base)?;
    let candidate = read(&args.candidate)?;
    let base_gate = stored_gate(&base)?;
    let candidate_gate = stored_gate(&candidate)?;
    let base_side = Side {
        observations: &base.observations,
        profile: &base_gate,
        scenarios: &base.meta.scenarios,
    };
    let candidate_side = Side {
        observations: &candidate.observations,
        profile: &candidate_gate,
        scenarios: &candidate.meta.scenarios,
    };
    let reasons = incomparable(&base_side, &candidate_side);
    if !reasons.is_empty() && !args.force {
        return Err(CliError::usage(format!(
            "refusing to compare {} with {}: {}\n(pass --force to compare anyway; the report \
             then names the differences)",
            args.base.display(),
            args.candidate.display(),
            reasons.join("; ")
        )));
    }
    let mut notes: Vec<String> = reasons
        .into_iter()
        .map(|r| format!("compared with --force although: {r}"))
        .collect();
    notes.extend(proof_notes("base", &base));
    notes.extend(proof_notes("candidate", &candidate));
    let report = compare(&base_side, &candidate_side, &settings, notes);

    let json = serde_json::to_string_pretty(&report)
        .map_err(|err| CliError::unavailable(format!("cannot render the report: {err}")))?;
    if args.json {
        outln!("{json}");
    } else {
        outln!("{}", render_terminal(&report));
    }
    if let Some(out) = &args.out {
        write_report(out, &render_markdown(&report), &json)?;
        if !args.json {
            outln!("wrote {COMPARE_MD} and {COMPARE_JSON} to {}", out.display());
        }
    }
    Ok(match report.result {
        Overall::NoRegression => Exit::Go,
        Overall::Regression => Exit::NoGo,
        Overall::Unknown => Exit::Unknown,
    })
}

fn canonical(path: &Path) -> Result<PathBuf, CliError> {
    path.canonicalize()
        .map_err(|err| CliError::usage(format!("cannot resolve {}: {err}", path.display())))
}

/// `--out` must be new or an empty directory, and lie outside both proofs (a proof is sealed
/// evidence: nothing is ever added to it).
fn check_out_dir(out: &Path, proofs: &[&Path]) -> Result<(), CliError> {
    // Resolve the longest existing ancestor, so a not-yet-created DIR inside a proof is caught.
    let absolute = if out.is_absolute() {
        out.to_path_buf()
    } else {
        std::env::current_dir()
            .map_err(|err| CliError::usage(format!("cannot resolve the current directory: {err}")))?
            .join(out)
    };
    let mut existing = absolute.as_path();
    let mut rest = Vec::new();
    while !existing.exists() {
        match (existing.parent(), existing.file_name()) {
            (Some(parent), Some(name)) => {
                rest.push(name.to_owned());
                existing = parent;
            }
            _ => break,
        }
    }
    let mut resolved = canonical(existing)?;
    for name in rest.iter().rev() {
        resolved.push(name);
    }
    for proof in proofs {
        if resolved.starts_with(proof) {
            return Err(CliError::usage(format!(
                "--out {} is inside the proof {}: proofs are never written to; pick another \
                 directory",
                out.display(),
                proof.display()
            )));
        }
    }
    if out.exists() {
        let empty = out
            .read_dir()
            .map_err(|err| CliError::usage(format!("--out {}: {err}", out.display())))?
            .next()
            .is_none();
        if !empty {
            return Err(CliError::usage(format!(
                "--out {} exists and is not empty: pick a new directory",
                out.display()
            )));
        }
    }
    Ok(())
}

/// Writes both files atomically (temporary file, then rename).
fn write_report(out: &Path, markdown: &str, json: &str) -> Result<(), CliError> {
    std::fs::create_dir_all(out)
        .map_err(|err| CliError::unavailable(format!("cannot create {}: {err}", out.display())))?;
    for (name, text) in [(COMPARE_MD, markdown), (COMPARE_JSON, json)] {
        let target = out.join(name);
        let temp = out.join(format!(".tmp-{name}"));
        std::fs::write(&temp, format!("{}\n", text.trim_end()))
            .and_then(|()| std::fs::rename(&temp, &target))
            .map_err(|err| {
                CliError::unavailable(format!("cannot write {}: {err}", target.display()))
            })?;
    }
    Ok(())
}

/// Facts about a proof a reader of the comparison should know.
fn proof_notes(which: &str, proof: &Proof) -> Vec<String> {
    let mut notes = Vec::new();
    if !proof.is_complete() {
        notes.push(format!(
            "the {which} proof is incomplete (status {}): only what it recorded is compared",
            proof.status().as_str()
        ));
    }
    for warning in &proof.warnings {
        notes.push(format!("{which} proof: {warning}"));
    }
    notes
}

fn unit_value(v: f64, unit: Unit) -> String {
    format!("{}{}", fmt(v), unit.suffix())
}

/// The base or candidate cell of one metric.
fn side_cell(metric: &MetricResult, base: bool) -> String {
    if let Some((b, c)) = &metric.verdicts {
        let counts = if base { b } else { c };
        let definite = counts.go + counts.no_go;
        let mut text = format!("{}/{definite} NO-GO", counts.no_go);
        if counts.unknown > 0 {
            text.push_str(&format!(", {} UNKNOWN", counts.unknown));
        }
        return text;
    }
    let summary = if base {
        &metric.base
    } else {
        &metric.candidate
    };
    match summary {
        Some(s) if s.n > 0 => format!(
            "n={} med {}",
            s.n,
            s.median.map_or("-".into(), |m| unit_value(m, metric.unit))
        ),
        _ => "no data".into(),
    }
}

fn label(metric: &MetricResult) -> &'static str {
    match (metric.classification, metric.regression) {
        (Classification::High, true) | (Classification::Low, true) => {
            if metric.classification == Classification::High {
                "High (REGRESSION)"
            } else {
                "Low (REGRESSION)"
            }
        }
        (Classification::NoData, _) if metric.undecided() => "NoData (UNKNOWN)",
        (c, _) => c.as_str(),
    }
}

/// The metrics table (comfy-table's Markdown preset: the same table reads on a terminal and
/// in compare.md).
fn metrics_table(report: &Report) -> Table {
    let mut table = Table::new();
    table.load_preset(presets::ASCII_MARKDOWN);
    let percent = report.settings.confidence * 100.0;
    table.set_header(vec![
        "metric".to_string(),
        "result".to_string(),
        "base".to_string(),
        "candidate".to_string(),
        format!("shift ({percent:.0} % CI)"),
        "tolerance".to_string(),
        "A".to_string(),
        "p".to_string(),
    ]);
    for m in &report.metrics {
        let (shift, tolerance, effect, p) = match &m.statistics {
            Some(s) => (
                match s.interval {
                    Some((lo, hi)) => format!(
                        "{}{} ({} … {})",
                        signed(s.shift),
                        m.unit.suffix(),
                        signed(lo),
                        signed(hi)
                    ),
                    None => format!("{}{} (no interval)", signed(s.shift), m.unit.suffix()),
                },
                format!("±{}", unit_value(s.allowed_shift, m.unit)),
                format!("{:.2}", s.effect),
                fmt_p(s.p_value),
            ),
            None => ("-".into(), "-".into(), "-".into(), "-".into()),
        };
        table.add_row(vec![
            m.id.clone(),
            label(m).to_string(),
            side_cell(m, true),
            side_cell(m, false),
            shift,
            tolerance,
            effect,
            p,
        ]);
    }
    table
}

/// One line per regression and per metric without evidence.
fn findings(report: &Report) -> Vec<String> {
    let mut lines = Vec::new();
    for m in report.regressions() {
        lines.push(format!("REGRESSION {} — {}: {}", m.id, m.title, m.reason));
    }
    for m in report.undecided() {
        lines.push(format!("NO DATA {} — {}: {}", m.id, m.title, m.reason));
    }
    lines
}

/// The one-line result.
fn result_line(report: &Report) -> String {
    match report.result {
        Overall::Regression => {
            let names: Vec<String> = report
                .regressions()
                .map(|m| match &m.statistics {
                    Some(s) => format!("{} ({}{})", m.id, signed(s.shift), m.unit.suffix()),
                    None => m.id.clone(),
                })
                .collect();
            format!("result: REGRESSION — {}", names.join(", "))
        }
        Overall::Unknown => {
            let names: Vec<&str> = report.undecided().map(|m| m.id.as_str()).collect();
            if names.is_empty() {
                "result: UNKNOWN — a proof has no judged window".to_string()
            } else {
                format!(
                    "result: UNKNOWN — no regression seen, but no evidence for {}",
                    names.join(", ")
                )
            }
        }
        Overall::NoRegression => format!(
            "result: no regression ({} metrics compared)",
            report.metrics.len()
        ),
    }
}

fn run_line(which: &str, run: &soak_gates::compare::RunSummary) -> String {
    format!(
        "{which:<9} {}  gate {}  verdict {}  {} nodes  {} judged windows",
        run.run_id, run.gate, run.verdict, run.nodes, run.judged_windows
    )
}

/// The terminal output.
pub fn render_terminal(report: &Report) -> String {
    let mut lines = vec![
        run_line("base", &report.base),
        run_line("candidate", &report.candidate),
        String::new(),
        metrics_table(report).to_string(),
    ];
    let found = findings(report);
    if !found.is_empty() {
        lines.push(String::new());
        lines.extend(found);
    }
    for note in &report.notes {
        lines.push(format!("note: {note}"));
    }
    lines.push(result_line(report));
    lines.join("\n")
}

/// `compare.md`.
pub fn render_markdown(report: &Report) -> String {
    let title = match report.result {
        Overall::Regression => "REGRESSION",
        Overall::Unknown => "UNKNOWN",
        Overall::NoRegression => "no regression",
    };
    let mut md = vec![
        format!("# soak compare: {title}"),
        String::new(),
        "| | base | candidate |".to_string(),
        "|---|---|---|".to_string(),
    ];
    let (b, c) = (&report.base, &report.candidate);
    for (what, bv, cv) in [
        ("run", b.run_id.clone(), c.run_id.clone()),
        ("gate", b.gate.clone(), c.gate.clone()),
        ("verdict", b.verdict.to_string(), c.verdict.to_string()),
        ("nodes", b.nodes.to_string(), c.nodes.to_string()),
        (
            "judged windows",
            b.judged_windows.to_string(),
            c.judged_windows.to_string(),
        ),
    ] {
        md.push(format!("| {what} | {bv} | {cv} |"));
    }
    md.push(String::new());
    md.push(format!("**{}**", result_line(report)));
    let mut section = |heading: &str, items: Vec<String>| {
        if !items.is_empty() {
            md.push(String::new());
            md.push(format!("## {heading}"));
            md.push(String::new());
            md.extend(items.into_iter().map(|i| format!("- {i}")));
        }
    };
    section(
        "Regressions",
        report
            .regressions()
            .map(|m| format!("**{}** ({}): {}", m.id, m.title, m.reason))
            .collect(),
    );
    section(
        "No data",
        report
            .undecided()
            .map(|m| format!("**{}** ({}): {}", m.id, m.title, m.reason))
            .collect(),
    );
    section("Notes", report.notes.clone());
    md.push(String::new());
    md.push("## Metrics".to_string());
    md.push(String::new());
    md.push(metrics_table(report).to_string());
    md.push(String::new());
    let s = &report.settings;
    md.push(format!(
        "Each distribution: rank-sum test (normal approximation, tie and continuity corrected) and \
         Hodges–Lehmann shift with its {:.0} % interval; a shift counts when the whole interval \
         is beyond ±max({:.0} % of the base median, floor) (latency floor {} ms) and the effect \
         size A is at least {} (at most {} for a fall). Verdict counts: a higher NO-GO share is \
         a regression. See docs/operations.md, \"Comparing two runs\".",
        s.confidence * 100.0,
        s.tolerance * 100.0,
        fmt(s.latency_floor_ms),
        s.min_effect,
        fmt(1.0 - s.min_effect)
    ));
    md.join("\n")
}

#[cfg(test)]
mod tests {
    use soak_gates::Profile;
    use soak_gates::model::Observations;
    use soak_gates::testkit::FleetBuilder;

    use super::*;

    fn report(candidate: &Observations) -> Report {
        let profile = Profile::builtin("broad-launch").expect("built in");
        let scenarios = vec!["baseline".to_string(), "fanout_burst".to_string()];
        let base = FleetBuilder::new(3, 4).build();
        let side = |o| Side {
            observations: o,
            profile: &profile,
            scenarios: &scenarios,
        };
        compare(
            &side(&base),
            &side(candidate),
            &Settings::default(),
            vec!["an example note".into()],
        )
    }

    fn slower() -> Observations {
        let mut candidate = FleetBuilder::new(3, 4).build();
        for window in &mut candidate.windows {
            for pair in &mut window.phase_a.as_mut().expect("matrix").pairs {
                pair.latency_us = pair.latency_us.map(|us| us + 40_000);
            }
        }
        candidate
    }

    #[test]
    fn markdown_of_a_regression() {
        insta::assert_snapshot!(render_markdown(&report(&slower())));
    }

    #[test]
    fn terminal_of_a_regression() {
        let text = render_terminal(&report(&slower()));
        assert!(
            text.contains("result: REGRESSION — phase_a.latency (+40 ms)"),
            "{text}"
        );
        insta::assert_snapshot!(text);
    }

    #[test]
    fn terminal_of_no_regression() {
        let text = render_terminal(&report(&FleetBuilder::new(3, 4).build()));
        assert!(text.contains("\nresult: no regression ("), "{text}");
    }

    #[test]
    fn out_dir_inside_a_proof_or_not_empty_is_refused() {
        let tmp = std::env::temp_dir().join(format!("soak-compare-out-{}", std::process::id()));
        let proof = tmp.join("proof");
        std::fs::create_dir_all(proof.join("windows")).expect("dirs");
        let proof = proof.canonicalize().expect("canonical");
        for inside in [
            proof.join("cmp"),
            proof.join("windows/new/deeper"),
            proof.clone(),
        ] {
            let err = check_out_dir(&inside, &[&proof]).expect_err("inside");
            assert!(err.message.contains("inside the proof"), "{}", err.message);
        }
        let busy = tmp.join("busy");
        std::fs::create_dir_all(&busy).expect("dir");
        std::fs::write(busy.join("x"), "x").expect("file");
        let err = check_out_dir(&busy, &[&proof]).expect_err("not empty");
        assert!(err.message.contains("not empty"), "{}", err.message);
        assert!(check_out_dir(&tmp.join("fresh/dir"), &[&proof]).is_ok());
        let _ = std::fs::remove_dir_all(&tmp);
    }
}
