//! The end-of-run terminal tables (comfy-table): one row per window, then every bar that is not
//! GO (window and soak level), then the k6-class end summary (totals, throughput, latency, the
//! command line and the seed), then the verdict line with the proof path.

use std::fmt::Write as _;
use std::path::Path;

use comfy_table::{Table, presets};
use soak_gates::model::Observations;
use soak_gates::{BarResult, Outcome, Verdict};
use soak_proofs::summary::{EndSummary, Totals};
use soak_proofs::{FleetCoverage, RunMeta, render};

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
        "fanout p99",
        "bars not GO",
    ]);
    for window in &verdict.windows {
        let phase_a = window.phase_a.as_ref();
        let burst = observations
            .windows
            .iter()
            .find(|w| w.index == window.index)
            .and_then(|w| w.fanout.as_ref());
        let fanout = burst
            .and_then(|f| f.min_delivery_ratio())
            .map(|min| format!("{:.1}%", min * 100.0))
            .unwrap_or_else(|| "-".to_owned());
        // The worst subscriber's p99 delivery latency.
        let fanout_p99 =
            ms(burst.and_then(|f| f.subscribers.iter().filter_map(|s| s.p99_us).max()));
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
            fanout_p99,
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
    match bar.value {
        None => "n/a".to_owned(),
        // Rounded for people; verdict.json keeps the full value.
        Some(v) => soak_gates::display::human_number(v),
    }
}

/// The root causes and what each explains, one line each (empty when there is none).
pub fn causes_lines(verdict: &Verdict) -> Vec<String> {
    verdict
        .causes
        .iter()
        .filter(|c| c.explains > 0)
        .map(|c| {
            format!(
                "cause: {} — {} results: {}",
                c.headline,
                c.explains,
                render::explained_by(verdict, c).replace('`', "")
            )
        })
        .collect()
}

/// What follows the windows table: the root causes, then the other bars that are not GO (or
/// `every bar holds`), with a leading blank line.
pub fn why_block(verdict: &Verdict) -> String {
    let mut out = String::new();
    let causes = causes_lines(verdict);
    if !causes.is_empty() {
        out.push('\n');
    }
    for line in &causes {
        let _ = writeln!(out, "{line}");
    }
    match bars_table(verdict) {
        Some(bars) => {
            let _ = write!(out, "\n{bars}");
        }
        None if causes.is_empty() => out.push_str("\nevery bar holds"),
        None => {
            out.pop();
        }
    }
    out
}

/// The bars that are not GO and not explained by a listed cause, window level then soak level
/// (not-applicable bars left out); `None` when there is none.
pub fn bars_table(verdict: &Verdict) -> Option<Table> {
    let bars: Vec<&BarResult> = render::not_go(verdict)
        .filter(|b| b.cause.is_none())
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

/// The proof format's status of a runner status.
pub fn proof_status(status: RunStatus) -> soak_proofs::RunStatus {
    match status {
        RunStatus::Completed => soak_proofs::RunStatus::Complete,
        RunStatus::Interrupted => soak_proofs::RunStatus::Interrupted,
        RunStatus::Failed => soak_proofs::RunStatus::Failed,
    }
}

/// The end summary of a judged run from its in-memory observations (the same numbers the
/// proof's `summary.md` shows).
pub fn end_summary(
    meta: &RunMeta,
    status: RunStatus,
    verdict: &Verdict,
    observations: &Observations,
) -> EndSummary {
    let totals = Totals::of_samples(
        &observations.samples,
        &observations.windows,
        observations.run.sample_interval_ms,
    );
    EndSummary::new(
        meta,
        proof_status(status),
        verdict,
        &observations.windows,
        totals,
    )
}

/// Everything printed at the end of a run. `coverage` is the inventory coverage of an
/// inventory run (`None` for a local mesh): a partial fleet is named before the verdict and in
/// the verdict line, so a GO on part of the inventory never reads like one on all of it.
pub fn render(
    verdict: &Verdict,
    observations: &Observations,
    proof_dir: &Path,
    status: RunStatus,
    coverage: Option<&FleetCoverage>,
    summary: &EndSummary,
) -> String {
    let mut out = String::new();
    let _ = writeln!(out, "{}", windows_table(verdict, observations));
    let _ = writeln!(out, "{}", why_block(verdict));
    for gap in &verdict.gaps {
        let _ = writeln!(
            out,
            "evidence gap: {} unobserved for {} in window {}",
            gap.node,
            soak_gates::display::human_duration(gap.to_ms.saturating_sub(gap.from_ms)),
            gap.window
        );
    }
    let _ = write!(out, "\n{}", summary.text());
    if let Some(c) = coverage.filter(|c| c.is_partial()) {
        let _ = writeln!(
            out,
            "\nPARTIAL FLEET: the verdict covers {}; it says nothing about the hosts left out:",
            c.describe()
        );
        for m in &c.missing {
            let _ = writeln!(out, "  {}", m.error);
        }
    }
    let hosts = coverage.map_or_else(String::new, |c| format!(", {}", c.describe()));
    let _ = write!(
        out,
        "\nverdict: {} (run {}, gate {}, {} nodes{hosts})\nproof: {}",
        verdict.verdict,
        status.as_str(),
        verdict.gate,
        verdict.nodes,
        proof_dir.display()
    );
    out
}

/// The stderr warning at the end of a partial-fleet run (`None` when nothing was left out).
pub fn partial_fleet_warning(coverage: Option<&FleetCoverage>) -> Option<String> {
    let c = coverage.filter(|c| c.is_partial())?;
    let names: Vec<&str> = c.missing.iter().map(|m| m.host.as_str()).collect();
    Some(format!(
        "soak: warning: partial fleet: the verdict covers {} of {} inventory hosts; left out: {}",
        c.reached,
        c.inventory_hosts,
        if names.is_empty() {
            "(unnamed)".to_owned()
        } else {
            names.join(", ")
        }
    ))
}

#[cfg(test)]
mod tests {
    use std::collections::BTreeMap;

    use soak_gates::model::{
        NodeRef, PairOutcome, PhaseAResult, RunInfo, Sample, SampleData, SampleOutcome,
        WindowRecord,
    };

    use super::*;

    /// Three nodes, two windows of 10 s, samples every second; node-2 goes silent in window 1
    /// and one pair into it is lost.
    fn observations() -> Observations {
        let names = ["node-0", "node-1", "node-2"];
        let mut samples = BTreeMap::new();
        for (i, name) in names.iter().enumerate() {
            let series: Vec<Sample> = (0..=20u64)
                .map(|t| {
                    let at_ms = 1_000_000 + t * 1_000;
                    let outcome = if i == 2 && t > 12 {
                        SampleOutcome::Missing {
                            error: "connection refused".into(),
                        }
                    } else {
                        SampleOutcome::Ok(SampleData {
                            by_peer: Default::default(),
                            instance_id: format!("inst-{i}"),
                            counters: [
                                ("dispatcher_completed_total".to_owned(), 10 * t),
                                ("dispatcher_timeouts_total".to_owned(), 0),
                                ("recv_pump_dropped_full_total".to_owned(), 0),
                                ("peer_send_timeouts_total".to_owned(), 0),
                                ("outbound_high_water_total".to_owned(), 0),
                            ]
                            .into_iter()
                            .collect(),
                            gauges: [
                                ("suppressed_topic_peers".to_owned(), 0.0),
                                ("known_topic_peers".to_owned(), 2.0),
                            ]
                            .into_iter()
                            .collect(),
                        })
                    };
                    Sample { at_ms, outcome }
                })
                .collect();
            samples.insert((*name).to_owned(), series);
        }
        let window = |index: u32, lose: bool| {
            let mut pairs = Vec::new();
            for from in names {
                for to in names {
                    if from == to {
                        continue;
                    }
                    let lost = lose && to == "node-2";
                    pairs.push(PairOutcome {
                        from: from.into(),
                        to: to.into(),
                        outcome: if lost { "timeout" } else { "acked" }.into(),
                        delivered: !lost,
                        inbox_copies: Some(u32::from(!lost)),
                        latency_us: (!lost).then_some(1_500),
                        attempts: 1,
                        error: lost.then(|| "no ack".to_owned()),
                    });
                }
            }
            WindowRecord {
                index,
                start_ms: 1_000_000 + u64::from(index) * 10_000,
                end_ms: 1_000_000 + u64::from(index + 1) * 10_000,
                warmup: index == 0,
                phase_a: Some(PhaseAResult {
                    pairs,
                    sample: None,
                }),
                fanout: None,
                scenarios: Vec::new(),
            }
        };
        Observations {
            residue: Vec::new(),
            run: RunInfo {
                run_id: "20260101T000000Z-snap".into(),
                sample_interval_ms: 1_000,
                inventory_hosts: None,
                planned_windows: Some(2),
                window_ms: Some(10_000),
                interruptions: Vec::new(),
                nodes: names
                    .iter()
                    .map(|n| NodeRef {
                        name: (*n).to_owned(),
                        peer_id: String::new(),
                    })
                    .collect(),
            },
            samples,
            windows: vec![window(0, false), window(1, true)],
            node_events: Vec::new(),
        }
    }

    fn summary(verdict: &Verdict, observations: &Observations) -> EndSummary {
        let meta: RunMeta = serde_json::from_value(serde_json::json!({
            "run_id": "20260101T000000Z-snap", "label": "snap", "started_at_ms": 1_000_000,
            "tool_version": "0.0.0", "gate": "broad-launch", "sample_interval_ms": 1_000,
            "command": ["soak", "run", "--nodes", "3", "--seed", "7"], "seed": 7
        }))
        .expect("meta");
        end_summary(&meta, RunStatus::Completed, verdict, observations)
    }

    #[test]
    fn end_of_run_tables_snapshot() {
        let observations = observations();
        let profile = soak_gates::Profile::builtin("broad-launch").expect("built-in gate");
        let verdict = soak_gates::evaluate(&observations, &profile);
        let rendered = render(
            &verdict,
            &observations,
            Path::new("proofs/20260101T000000Z-snap"),
            RunStatus::Completed,
            None,
            &summary(&verdict, &observations),
        );
        assert!(rendered.contains("verdict: NO-GO"), "{rendered}");
        assert!(
            rendered.contains("  command...........: soak run --nodes 3 --seed 7")
                && rendered.contains("  seed..............: 7"),
            "{rendered}"
        );
        insta::assert_snapshot!(rendered);
    }

    #[test]
    fn partial_fleet_is_named_before_and_in_the_verdict_line() {
        let observations = observations();
        let profile = soak_gates::Profile::builtin("broad-launch").expect("built-in gate");
        let verdict = soak_gates::evaluate(&observations, &profile);
        let partial = FleetCoverage {
            inventory_hosts: 4,
            reached: 3,
            missing: vec![soak_proofs::MissingHost {
                host: "h4".into(),
                error: "host `h4`: soak-node is not running; run `soak deploy` first".into(),
            }],
        };
        let proof = Path::new("proofs/x");
        let rendered = render(
            &verdict,
            &observations,
            proof,
            RunStatus::Completed,
            Some(&partial),
            &summary(&verdict, &observations),
        );
        assert!(
            rendered
                .contains("PARTIAL FLEET: the verdict covers 3 of 4 inventory hosts (missing: h4)")
                && rendered.contains("  host `h4`: soak-node is not running"),
            "{rendered}"
        );
        assert!(
            rendered.contains("3 nodes, 3 of 4 inventory hosts (missing: h4))"),
            "{rendered}"
        );
        assert_eq!(
            partial_fleet_warning(Some(&partial)).as_deref(),
            Some(
                "soak: warning: partial fleet: the verdict covers 3 of 4 inventory hosts; left out: h4"
            )
        );
        let full = FleetCoverage {
            inventory_hosts: 3,
            reached: 3,
            missing: Vec::new(),
        };
        let rendered = render(
            &verdict,
            &observations,
            proof,
            RunStatus::Completed,
            Some(&full),
            &summary(&verdict, &observations),
        );
        assert!(!rendered.contains("PARTIAL"), "{rendered}");
        assert!(rendered.contains("3 of 3 inventory hosts)"), "{rendered}");
        assert_eq!(partial_fleet_warning(Some(&full)), None);
        assert_eq!(partial_fleet_warning(None), None);
    }
}
