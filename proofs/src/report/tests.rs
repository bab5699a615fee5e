use soak_gates::model::Observations;
use soak_gates::testkit::{FleetBuilder, bump, drop_samples, restart, set_gauge, span};
use soak_gates::{Profile, evaluate};

use super::*;
use crate::summary::Totals;

fn meta(obs: &Observations) -> RunMeta {
    RunMeta {
        run_id: obs.run.run_id.clone(),
        label: "fixture".into(),
        started_at_ms: obs.windows.first().map_or(0, |w| w.start_ms) - 10_000,
        tool_version: "0.1.0".into(),
        node_builds: vec![crate::meta::NodeBuild {
            host: "node-0".into(),
            binary_sha256: "ab".repeat(32),
            version: "0.1.0".into(),
            git: "deadbeef".into(),
            started_at_ms: 1_795_309_700_000,
        }],
        inventory_digest: None,
        gate: "broad-launch".into(),
        gate_source: None,
        scenarios: vec!["baseline".into(), "fanout_burst".into()],
        sample_interval_ms: obs.run.sample_interval_ms,
        nodes: obs.run.nodes.clone(),
        config: serde_json::json!({}),
        coverage: None,
        command: Some(vec![
            "soak".into(),
            "run".into(),
            "--nodes".into(),
            "3".into(),
        ]),
        seed: Some(42),
        errors: Vec::new(),
        errors_omitted: 0,
        resumes: Vec::new(),
    }
}

/// 3 nodes, 3 windows: a drop in window 1, node-2 restarted in window 1, node-0 silent in
/// window 2, and a netem fault on node-1 in window 1 (applied, reverted) plus an unreverted one
/// in window 2.
fn eventful() -> (Observations, FaultJournal) {
    let mut obs = FleetBuilder::new(3, 3).build();
    let (s1, _) = span(&obs, 1);
    bump(
        &mut obs,
        "node-1",
        "recv_pump_dropped_full_total",
        s1 + 20_000,
        2,
    );
    restart(&mut obs, "node-2", s1 + 30_000, "inst-2-b");
    let (s2, _) = span(&obs, 2);
    drop_samples(&mut obs, "node-0", s2 + 10_000, s2 + 50_000);
    // One node reports its resident memory: it gets a chart.
    set_gauge(
        &mut obs,
        "node-1",
        "process_resident_memory_bytes",
        0,
        u64::MAX,
        5.0e7,
    );
    let step = |fault: &str, window: u32, step: &str, at: u64| {
        serde_json::json!({"fault": fault, "window": window, "targets": ["node-1"],
            "step": step, "at_ms": at, "evidence": null})
        .to_string()
    };
    let journal = FaultJournal::parse(
        &[
            step("netem_delay", 1, "applied", s1 + 5_000),
            step("netem_delay", 1, "effective", s1 + 6_000),
            step("netem_delay", 1, "reverted", s1 + 40_000),
            step("partition", 2, "applied", s2 + 15_000),
            "{broken".to_string(),
        ]
        .join("\n"),
    );
    (obs, journal)
}

fn render(obs: &Observations, journal: &FaultJournal, judged: bool) -> String {
    let meta = meta(obs);
    let verdict = evaluate(obs, &Profile::builtin("broad-launch").expect("gate"));
    let summary = EndSummary::new(
        &meta,
        RunStatus::Complete,
        &verdict,
        &obs.windows,
        Totals::of_samples(&obs.samples, &obs.windows, obs.run.sample_interval_ms),
    );
    let mut builder = ReportBuilder::new(&meta, &obs.windows);
    for (node, samples) in &obs.samples {
        builder.add_node(node, samples);
    }
    builder.html(&ReportInput {
        meta: &meta,
        status: if judged {
            RunStatus::Complete
        } else {
            RunStatus::Running
        },
        verdict: judged.then_some(&verdict),
        windows: &obs.windows,
        faults: journal,
        summary: judged.then_some(&summary),
        notes: &[],
    })
}

const BLOB_OPEN: &str = "<script type=\"application/json\" id=\"soak-data\">";

fn blob(html: &str) -> serde_json::Value {
    let start = html.find(BLOB_OPEN).expect("data blob") + BLOB_OPEN.len();
    let end = start + html[start..].find("</script>").expect("blob end");
    serde_json::from_str(&html[start..end]).expect("blob is JSON")
}

/// Replaces the text between each `open` and the next `close` by `with`.
fn cut(text: &str, open: &str, close: &str, with: &str) -> String {
    let mut out = String::new();
    let mut rest = text;
    while let Some(i) = rest.find(open) {
        out.push_str(&rest[..i + open.len()]);
        rest = &rest[i + open.len()..];
        match rest.find(close) {
            Some(j) => {
                out.push_str(with);
                rest = &rest[j..];
            }
            None => break,
        }
    }
    out.push_str(rest);
    out
}

/// The page skeleton: data, vendored code, SVG geometry, times and ids stripped.
fn skeleton(html: &str) -> String {
    let mut s = cut(html, BLOB_OPEN, "</script>", "[data]");
    s = cut(&s, "<script>", "</script>", "[script]");
    s = cut(&s, "<style>", "</style>", "[style]");
    s = cut(&s, " d=\"", "\"", "[path]");
    for attr in [
        " x=\"",
        " y=\"",
        " width=\"",
        " height=\"",
        " style=\"background:",
    ] {
        s = cut(&s, attr, "\"", "#");
    }
    // RFC 3339 times and clock times.
    let mut out = String::with_capacity(s.len());
    let b = s.as_bytes();
    let mut i = 0;
    while i < b.len() {
        let rfc = b.len() >= i + 20
            && b[i..i + 4].iter().all(u8::is_ascii_digit)
            && b[i + 4] == b'-'
            && b[i + 10] == b'T'
            && b[i + 19] == b'Z';
        let clock = b.len() >= i + 8
            && b[i..i + 2].iter().all(u8::is_ascii_digit)
            && b[i + 2] == b':'
            && b[i + 5] == b':'
            && b[i + 6..i + 8].iter().all(u8::is_ascii_digit);
        if rfc {
            out.push_str("[time]");
            i += 20;
        } else if clock {
            out.push_str("[clock]");
            i += 8;
        } else {
            let ch = s[i..].chars().next().unwrap_or(' ');
            out.push(ch);
            i += ch.len_utf8();
        }
    }
    out.replace("20261122T010946Z-fixture", "[run-id]")
}

#[test]
fn report_skeleton_snapshot() {
    let (obs, journal) = eventful();
    let html = render(&obs, &journal, true);
    insta::assert_snapshot!(skeleton(&html));
}

#[test]
fn charts_shade_fault_periods_restarts_and_gaps_from_the_evidence() {
    let (obs, journal) = eventful();
    let html = render(&obs, &journal, true);
    let data = blob(&html);
    let (s1, _) = span(&obs, 1);
    let (s2, e2) = span(&obs, 2);
    let bands = data["bands"].as_array().expect("bands");
    let of = |kind: &str| -> Vec<(u64, u64)> {
        bands
            .iter()
            .filter(|b| b["kind"] == kind)
            .map(|b| {
                (
                    b["from"].as_u64().unwrap_or(0),
                    b["to"].as_u64().unwrap_or(0),
                )
            })
            .collect()
    };
    // Applied → reverted; and an unreverted fault runs to its window's end.
    assert_eq!(
        of("fault"),
        vec![(s1 + 5_000, s1 + 40_000), (s2 + 15_000, e2)]
    );
    // node-2's new epoch: from its last old sample to its first new one.
    assert_eq!(of("restart"), vec![(s1 + 20_000, s1 + 30_000)]);
    // node-0's missing samples: from the last good sample before to the first after.
    assert_eq!(of("gap"), vec![(s2, s2 + 50_000)]);
    // The malformed journal line is reported, not fatal.
    assert!(
        html.contains("faults/journal.jsonl line 5: left out"),
        "note missing"
    );
    // Every gate counter has a chart; the recv-pump drop shows as a rate spike on node-1.
    let charts = data["charts"].as_array().expect("charts");
    let ids: Vec<&str> = charts.iter().filter_map(|c| c["id"].as_str()).collect();
    for id in [
        "rate:dispatcher_completed_total",
        "rate:dispatcher_timeouts_total",
        "rate:recv_pump_dropped_full_total",
        "rate:peer_send_timeouts_total",
        "rate:outbound_high_water_total",
        "ratio:suppressed_topic_peers/known_topic_peers",
        "gauge:outbound_queue_max_depth",
        "gauge:recv_pump_depth",
        "gauge:process_resident_memory_bytes",
    ] {
        assert!(ids.contains(&id), "{id} missing from {ids:?}");
    }
    let drops = charts
        .iter()
        .find(|c| c["id"] == "rate:recv_pump_dropped_full_total")
        .expect("drop chart");
    let node1 = drops["values"][1].as_array().expect("node-1 series");
    let peak = node1.iter().filter_map(|v| v.as_f64()).fold(0.0, f64::max);
    assert_eq!(peak, 0.2, "2 drops in a 10 s step = 0.2/s");
    // No rate across the restart: node-2's completion rate is null at its first new sample.
    let x: Vec<u64> = data["x"]
        .as_array()
        .expect("x")
        .iter()
        .filter_map(|v| v.as_u64())
        .collect();
    let at = x
        .iter()
        .position(|&t| t == s1 + 30_000)
        .expect("restart sample");
    let completed = &charts[0]["values"][2];
    assert!(
        completed[at].is_null(),
        "a rate across a restart: {}",
        completed[at]
    );
    assert!(completed[at + 1].as_f64().is_some());
    // Static fallbacks exist for every chart, and the heat map is plain HTML.
    assert_eq!(
        html.matches("<svg class=\"fallback\"").count(),
        charts.len() + 3
    );
    assert!(html.contains("<table class=\"heat\" id=\"heatmap\">"));
}

#[test]
fn an_incomplete_proof_shows_no_verdict_never_a_go() {
    let (obs, journal) = eventful();
    let html = render(&obs, &journal, false);
    assert!(html.contains("<header class=\"banner none\""), "banner");
    assert!(html.contains("NO VERDICT"));
    assert!(!html.contains("class=\"banner go\""));
    assert!(html.contains("This proof is incomplete"));
    assert!(!html.contains("id=\"bars\""), "no bars without a verdict");
}

#[test]
fn names_from_the_network_cannot_break_out_of_the_page() {
    let mut obs = FleetBuilder::new(2, 1).build();
    let evil = "</script><script>alert(1)</script>";
    let samples = obs.samples.remove("node-1").expect("node-1");
    obs.samples.insert(evil.to_string(), samples);
    obs.run.nodes[1].name = evil.to_string();
    let html = render(&obs, &FaultJournal::default(), true);
    assert!(
        !html.contains("<script>alert(1)"),
        "unescaped name in the page"
    );
    assert!(html.contains("&lt;/script&gt;&lt;script&gt;alert(1)"));
    let data = blob(&html);
    assert_eq!(
        data["nodes"][1], evil,
        "the blob still holds the exact name"
    );
}

#[test]
fn a_day_long_run_is_bucketed_and_keeps_its_spikes() {
    let mut builder = FleetBuilder::new(2, 48);
    builder.window_ms = 30 * 60 * 1000;
    builder.interval_ms = 10_000;
    builder.workloads = false;
    let mut obs = builder.build();
    let (s, _) = span(&obs, 20);
    bump(
        &mut obs,
        "node-1",
        "dispatcher_timeouts_total",
        s + 600_000,
        5,
    );
    let html = render(&obs, &FaultJournal::default(), true);
    let data = blob(&html);
    let x = data["x"].as_array().expect("x");
    assert!(data["axis"]["bucket_ms"].as_u64().unwrap_or(0) >= 20_000);
    assert!(x.len() as u64 <= MAX_POINTS + 2, "{} points", x.len());
    let timeouts = data["charts"]
        .as_array()
        .and_then(|c| {
            c.iter()
                .find(|c| c["id"] == "rate:dispatcher_timeouts_total")
        })
        .expect("chart");
    let peak = timeouts["values"][1]
        .as_array()
        .expect("node-1")
        .iter()
        .filter_map(|v| v.as_f64())
        .fold(0.0, f64::max);
    assert_eq!(
        peak, 0.5,
        "5 timeouts in one 10 s step survive bucketing as its max"
    );
    // Bucketing bounds the page by points, not samples (the 100-node size is in the bench).
    assert!(html.len() < 400_000, "{} bytes for 2 nodes", html.len());
}
