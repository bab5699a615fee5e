//! The rendered outputs of one real run: a short local mesh of real `soak-node` processes, one
//! of which is SIGKILLed after the first window (its samples go missing: an evidence gap the
//! report must shade). The same proof then feeds every consumer:
//!
//! * `report.html` in a real headless Chromium (Debian's `chromium`): loads with no console
//!   message and no script error, every chart rendered (DOM checked), a screenshot kept;
//! * `soak report` re-renders it byte for byte from the stored evidence;
//! * `junit.xml` parses back with quick-junit, one suite per window plus the soak;
//! * `soak export --format openmetrics` loads with `promtool tsdb create-blocks-from
//!   openmetrics` (Debian's `prometheus`);
//! * the long `timeline.csv` loads in DuckDB (PyPI `duckdb`) as it is;
//! * the end summary (totals, command line, seed) on stdout, in `summary.md` and from
//!   `soak score`;
//! * the supervisor's report of the killed node: one `node_event`, `node_events.jsonl`, a
//!   progress line, and the root cause of the run's verdict, which a re-score reproduces.
//!
//! Tools that are missing skip their part with a printed reason, except under `CI=true` (or
//! `SOAK_REQUIRE_LAB=1`), where a missing tool is a failure: `scripts/test` installs them.
//! One run (~15–25 s) serves every check, to keep the suite's time budget.

// Test output goes to the test harness, which captures it; a closed pipe is not a concern.
#![allow(clippy::disallowed_macros)]

use std::io::{BufRead, BufReader};
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use nix::sys::signal::{Signal, kill};
use nix::unistd::Pid;
use serde_json::Value;
use soak_inventory::testing::skip_unless_available;

mod support;
use support::{node_bin, soak_bin};

/// `true` when `tool` can run; otherwise the one skip rule of `soak_inventory::testing`:
/// skips (prints why) on a laptop, fails under `CI=true` / `SOAK_REQUIRE_LAB=1`.
fn have(tool: &str, probe: &mut Command, why: &str) -> bool {
    let ok = probe
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .status()
        .is_ok_and(|s| s.success());
    skip_unless_available(
        why,
        (!ok).then(|| {
            format!("`{tool}` is not available (scripts/test installs it when run as root)")
        }),
    )
}

/// Runs the 6-node soak (a delay fault on node-0 in window 1), kills node-2 after window 0; returns the proof dir, stderr (progress
/// lines and the end-of-run tables), the JSON events of stdout and node-2's pid.
fn real_run(tmp: &Path) -> (PathBuf, String, Vec<Value>, i64) {
    let proof = tmp.join("proof");
    // A delay on node-0's links in window 1 (the node impairment path, no root), healed in
    // window 2: the report shades its period.
    let faults = tmp.join("faults.toml");
    std::fs::write(
        &faults,
        r#"
[[fault]]
name = "slow"
kind = "delay"
targets = "node:node-0"
window = 1
at = "300ms"
hold = "2s"
delay_ms = 200
"#,
    )
    .expect("scenario file");
    let mut child = Command::new(soak_bin())
        .args([
            "run",
            "--nodes",
            "6",
            "--duration",
            "12s",
            "--interval",
            "4s",
            "--scenario-file",
            faults.to_str().expect("utf-8"),
            "--sample-interval",
            "500ms",
            "--burst-messages",
            "20",
            "--request-timeout",
            "1s",
            "--seed",
            "4242",
            "--label",
            "it-report",
            "--events",
            "jsonl",
            "--proof-dir",
        ])
        .arg(&proof)
        .env("SOAK_NODE_BIN", node_bin())
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("spawn soak run");
    let stdout = child.stdout.take().expect("stdout");
    let stderr = child.stderr.take().expect("stderr");
    let err_reader = std::thread::spawn(move || {
        let mut text = String::new();
        for line in BufReader::new(stderr).lines().map_while(Result::ok) {
            text.push_str(&line);
            text.push('\n');
        }
        text
    });
    let deadline = Instant::now() + Duration::from_secs(120);
    let mut victim = None;
    let mut lines = BufReader::new(stdout).lines();
    let mut events = Vec::new();
    for line in lines.by_ref() {
        let Ok(line) = line else { break };
        let Ok(event) = serde_json::from_str::<Value>(&line) else {
            continue;
        };
        events.push(event.clone());
        if event["event"] == "fleet_ready" {
            victim = event["nodes"]
                .as_array()
                .and_then(|n| n.iter().find(|n| n["name"] == "node-2"))
                .and_then(|n| n["pid"].as_i64());
        }
        if event["event"] == "window_ended" && event["record"]["index"] == 0 {
            let pid = victim.expect("fleet_ready named node-2's pid");
            kill(
                Pid::from_raw(i32::try_from(pid).expect("pid")),
                Signal::SIGKILL,
            )
            .expect("SIGKILL node-2");
            break;
        }
        assert!(Instant::now() < deadline, "run overran");
    }
    events.extend(
        lines
            .map_while(Result::ok)
            .filter_map(|line| serde_json::from_str::<Value>(&line).ok()),
    );
    let status = loop {
        if let Some(status) = child.try_wait().expect("wait") {
            break status;
        }
        if Instant::now() > deadline {
            let _ = child.kill();
            panic!("soak run did not finish in time");
        }
        std::thread::sleep(Duration::from_millis(50));
    };
    let stderr = err_reader.join().unwrap_or_default();
    assert_eq!(
        status.code(),
        Some(1),
        "a killed node is NO-GO; stderr:\n{stderr}"
    );
    (proof, stderr, events, victim.expect("node-2's pid"))
}

fn soak(args: &[&str], dir: &Path) -> std::process::Output {
    Command::new(soak_bin())
        .args(args)
        .arg(dir)
        .output()
        .expect("run soak")
}

#[test]
fn a_real_run_writes_a_report_junit_and_exports_that_load_in_their_tools() {
    let tmp = tempfile::tempdir().expect("tmp");
    let (proof, end_of_run, events, victim) = real_run(tmp.path());
    node_exit_is_one_cause(&proof, &end_of_run, &events, victim);

    // The end summary: totals, the command line and the seed, on the terminal and in summary.md.
    for text in [
        end_of_run.clone(),
        std::fs::read_to_string(proof.join("summary.md")).expect("summary.md"),
    ] {
        assert!(
            text.contains("phase_a_dms") && text.contains("fanout_latency"),
            "{text}"
        );
        assert!(text.contains("4242"), "seed missing: {text}");
        assert!(
            text.contains("--label it-report"),
            "command line missing: {text}"
        );
    }
    let score = soak(&["score"], &proof);
    let score_out = String::from_utf8_lossy(&score.stdout);
    assert!(
        score_out.contains("  seed..............: 4242"),
        "{score_out}"
    );

    // Sealed, and every new file is covered by the manifest.
    let verify = soak(&["verify"], &proof);
    assert!(
        verify.status.success(),
        "{}",
        String::from_utf8_lossy(&verify.stdout)
    );
    let manifest: Value =
        serde_json::from_str(&std::fs::read_to_string(proof.join("manifest.json")).expect("m"))
            .expect("manifest json");
    for file in ["report.html", "junit.xml", "timeline.csv", "windows.csv"] {
        assert!(
            manifest["files"][file].is_object(),
            "{file} not in the manifest"
        );
    }

    // `soak report` reproduces the page from stored evidence only, and in place it leaves the
    // sealed proof verifiable.
    let html = std::fs::read(proof.join("report.html")).expect("report.html");
    let again = tmp.path().join("again.html");
    let out = Command::new(soak_bin())
        .arg("report")
        .arg(&proof)
        .arg("--out")
        .arg(&again)
        .output()
        .expect("soak report");
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(
        std::fs::read(&again).expect("re-rendered") == html,
        "re-render differs"
    );
    let in_place = soak(&["report"], &proof);
    assert!(in_place.status.success());
    assert!(
        soak(&["verify"], &proof).status.success(),
        "soak report broke the proof"
    );
    let page = String::from_utf8_lossy(&html).into_owned();
    assert!(page.contains("class=\"banner nogo\""), "verdict banner");
    assert!(
        page.contains("node-2: no good sample"),
        "the killed node's gap is not shaded"
    );
    assert!(
        !page.contains("src=\"http") && !page.contains("href=\"http"),
        "the report must not load anything from the network"
    );

    junit(&proof);
    chromium(&proof, tmp.path());
    openmetrics(&proof, tmp.path());
    duckdb(&proof);
}

/// The supervisor's report of the SIGKILLed node is one `node_event` (stdout), one line of
/// `node_events.jsonl`, one progress line with its UTC time, and the root cause the run's own
/// verdict groups failures under — the same verdict `soak score` gets from the proof.
fn node_exit_is_one_cause(proof: &Path, stderr: &str, events: &[Value], victim: i64) {
    let exits: Vec<&Value> = events
        .iter()
        .filter(|e| e["event"] == "node_event")
        .collect();
    assert_eq!(exits.len(), 1, "one node_event for node-2: {exits:?}");
    let exit = exits[0];
    assert_eq!(
        (
            &exit["node"],
            &exit["kind"],
            &exit["pid"],
            &exit["signal"],
            &exit["signal_name"]
        ),
        (
            &Value::from("node-2"),
            &Value::from("exited"),
            &Value::from(victim),
            &Value::from(9),
            &Value::from("SIGKILL")
        ),
        "{exit}"
    );
    let stored = std::fs::read_to_string(proof.join("node_events.jsonl")).expect("node_events");
    let stored: Vec<Value> = stored
        .lines()
        .map(|l| serde_json::from_str(l).expect("node event line"))
        .collect();
    assert_eq!(stored.len(), 1, "{stored:?}");
    assert_eq!(stored[0]["at_ms"], exit["at_ms"]);
    let said = format!("node-2 (pid {victim}) exited on signal 9 (SIGKILL) at ");
    assert!(
        stderr
            .lines()
            .any(|l| l.contains(&said) && l.trim_end().ends_with('Z')),
        "no progress line `{said}HH:MM:SSZ`:\n{stderr}"
    );
    let verdict: Value =
        serde_json::from_str(&std::fs::read_to_string(proof.join("verdict.json")).expect("v"))
            .expect("verdict json");
    let causes = verdict["causes"].as_array().cloned().unwrap_or_default();
    assert!(
        causes.iter().any(|c| c["kind"] == "node_exited"
            && c["headline"].as_str().is_some_and(|h| h.contains(&said))
            && c["explains"].as_u64().is_some_and(|n| n > 0)),
        "{causes:#?}"
    );
    let rescored = soak(&["score", "--json"], proof);
    assert_eq!(
        serde_json::from_slice::<Value>(&rescored.stdout).expect("score --json"),
        verdict,
        "soak run's verdict differs from a re-score of its proof"
    );
}

fn junit(proof: &Path) {
    let text = std::fs::read_to_string(proof.join("junit.xml")).expect("junit.xml");
    let report = quick_junit::Report::deserialize_from_str(&text).expect("junit.xml parses");
    let verdict: Value =
        serde_json::from_str(&std::fs::read_to_string(proof.join("verdict.json")).expect("v"))
            .expect("verdict");
    let windows = verdict["windows"].as_array().expect("windows").len();
    assert_eq!(report.test_suites.len(), windows + 1);
    assert!(report.failures > 0, "a NO-GO run has failing test cases");
    assert!(text.contains("node-2"), "the failures name the killed node");
    assert!(quick_junit::Report::deserialize_from_str(&report.to_string().expect("xml")).is_ok());
}

fn chromium(proof: &Path, tmp: &Path) {
    if !have(
        "chromium",
        Command::new("chromium").arg("--version"),
        "report.html browser test",
    ) {
        return;
    }
    let url = format!("file://{}", proof.join("report.html").display());
    let browser = |profile: &str, extra: &[&str]| {
        let out = Command::new("timeout")
            .arg("120")
            .arg("chromium")
            .args([
                "--headless",
                "--no-sandbox",
                "--disable-gpu",
                "--disable-quic",
                "--no-first-run",
                "--disable-background-networking",
                "--disable-component-update",
                "--disable-sync",
                // Nothing may resolve: any network load would fail and log to the console.
                "--host-resolver-rules=MAP * ~NOTFOUND",
                "--enable-logging=stderr",
                "--v=0",
            ])
            .arg(format!("--user-data-dir={}", tmp.join(profile).display()))
            .args(extra)
            .arg(&url)
            .output()
            .expect("run chromium");
        assert!(
            out.status.success(),
            "chromium failed: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        out
    };
    let dom = browser("chrome-dom", &["--dump-dom"]);
    let log = String::from_utf8_lossy(&dom.stderr);
    let console: Vec<&str> = log.lines().filter(|l| l.contains(":CONSOLE")).collect();
    assert!(
        console.is_empty(),
        "console messages while loading the report: {console:#?}"
    );
    let dom = String::from_utf8_lossy(&dom.stdout);
    assert!(
        !dom.contains("data-report-errors=\""),
        "script errors in the page"
    );
    let charts = dom
        .split("data-charts=\"")
        .nth(1)
        .and_then(|rest| rest.split('"').next())
        .and_then(|n| n.parse::<usize>().ok())
        .expect("the page script ran to its end");
    let plots = dom.matches("class=\"uplot").count();
    // 8 gate time series + the latency distribution + 2 fanout charts.
    assert!(
        charts >= 11 && plots == charts,
        "{charts} charts, {plots} uPlot elements"
    );
    assert!(dom.contains("id=\"heatmap\"") && dom.contains("class=\"banner nogo\""));
    // The fault's period and the killed node's restart epoch are shaded in the time series.
    assert!(
        dom.contains("<rect class=\"fault\""),
        "no fault period shaded in the time series"
    );
    assert!(
        dom.contains("<rect class=\"gap\"") || dom.contains("<rect class=\"restart\""),
        "the killed node's evidence gap is not shaded"
    );

    let shot_dir = PathBuf::from(env!("CARGO_TARGET_TMPDIR")).join("report-screenshot");
    std::fs::create_dir_all(&shot_dir).expect("screenshot dir");
    let shot = shot_dir.join("report.png");
    let _ = std::fs::remove_file(&shot);
    browser(
        "chrome-shot",
        &[
            "--window-size=1400,5200",
            "--hide-scrollbars",
            &format!("--screenshot={}", shot.display()),
        ],
    );
    let png = std::fs::read(&shot).expect("screenshot written");
    assert!(
        png.starts_with(b"\x89PNG") && png.len() > 50_000,
        "screenshot looks empty"
    );
    eprintln!("report screenshot: {}", shot.display());
}

fn openmetrics(proof: &Path, tmp: &Path) {
    let file = tmp.join("samples.om");
    let out = Command::new(soak_bin())
        .arg("export")
        .arg(proof)
        .args(["--format", "openmetrics", "--out"])
        .arg(&file)
        .output()
        .expect("soak export");
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let text = std::fs::read_to_string(&file).expect("export");
    assert!(text.ends_with("# EOF\n"));
    assert!(text.contains("# TYPE soak_node_dispatcher_completed counter"));
    assert!(
        text.contains("soak_sample_ok{node=\"node-2\"} 0 "),
        "the gap is exported"
    );
    // Closed stdout: quiet, exit 0.
    let piped = Command::new("sh")
        .arg("-c")
        .arg(format!(
            "'{}' export '{}' --format csv | head -n 1",
            soak_bin().display(),
            proof.display()
        ))
        .output()
        .expect("sh");
    assert_eq!(
        String::from_utf8_lossy(&piped.stdout),
        "ts_ms,node,metric,value\n"
    );
    assert!(
        piped.stderr.is_empty(),
        "{}",
        String::from_utf8_lossy(&piped.stderr)
    );
    if !have(
        "promtool",
        Command::new("promtool").arg("--version"),
        "OpenMetrics backfill test",
    ) {
        return;
    }
    let blocks = tmp.join("tsdb");
    let load = Command::new("promtool")
        .args(["tsdb", "create-blocks-from", "openmetrics"])
        .arg(&file)
        .arg(&blocks)
        .output()
        .expect("promtool");
    assert!(
        load.status.success(),
        "promtool refused the export: {}{}",
        String::from_utf8_lossy(&load.stdout),
        String::from_utf8_lossy(&load.stderr)
    );
    let made = std::fs::read_dir(&blocks).map(|d| d.count()).unwrap_or(0);
    assert!(made > 0, "promtool wrote no block");
}

fn duckdb(proof: &Path) {
    let csv = proof.join("timeline.csv");
    let lines = std::fs::read_to_string(&csv)
        .expect("timeline.csv")
        .lines()
        .count();
    if !have(
        "python3 duckdb",
        Command::new("python3").args(["-c", "import duckdb"]),
        "timeline.csv load test",
    ) {
        // Still check the file parses as the documented CSV.
        let text = std::fs::read_to_string(&csv).expect("timeline.csv");
        for line in text.lines().skip(1) {
            let fields: Vec<&str> = line.rsplitn(3, ',').collect();
            assert!(fields[0].parse::<f64>().is_ok(), "bad value in {line}");
        }
        return;
    }
    // The relation is referenced by its Python name in the SQL (a DuckDB replacement scan).
    let script = "import sys, duckdb\n\
         rel = duckdb.read_csv(sys.argv[1])\n\
         print(dict(zip(rel.columns, [str(t) for t in rel.types])))\n\
         print(duckdb.sql(\"select count(*), count(distinct node), \
           count(*) filter (where metric = 'dispatcher_completed_total:rate'), \
           count(*) filter (where metric = 'sample_ok' and value = 0) from rel\").fetchall()[0])\n";
    let out = Command::new("python3")
        .args(["-c", script])
        .arg(&csv)
        .output()
        .expect("python3");
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success(),
        "DuckDB could not read timeline.csv: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    let mut rows = text.lines();
    let types = rows.next().unwrap_or_default();
    assert!(
        types.contains("'ts_ms': 'BIGINT'") && types.contains("'value': 'DOUBLE'"),
        "column types: {types}"
    );
    let counts = rows.next().unwrap_or_default();
    let want_prefix = format!("({}, 6, ", lines - 1);
    assert!(
        counts.starts_with(&want_prefix),
        "{counts} (want {want_prefix}…)"
    );
    assert!(
        !counts.contains(", 0, ") && !counts.ends_with(", 0)"),
        "no rates or no gap: {counts}"
    );
}
