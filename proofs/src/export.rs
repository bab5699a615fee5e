//! Sample exports: the long-format `timeline.csv` and OpenMetrics text.
//!
//! `timeline.csv` has one row per (sample, metric): `ts_ms,node,metric,value`. For every good
//! sample it holds `sample_ok` (1), `process_epoch` (0, 1, … — +1 at every new instance id),
//! every counter and, right after it, `<counter>:rate` (per second since the previous attempt
//! of the same epoch; see [`crate::points`]) when defined, then every gauge. A failed attempt
//! is one row `sample_ok` = 0. Every value is written with a decimal point (`1500.0`), so
//! DuckDB and Polars infer one floating-point column from the first rows, and non-finite
//! gauges are left out. Rows go node by node (name order), in time order.
//!
//! OpenMetrics ([`write_openmetrics`]): one family per metric, named `soak_node_<metric>` like
//! the node's own `/metrics` (counters typed `counter` with their `_total` sample, gauges
//! `gauge`), plus `soak_sample_ok` (1 / 0 per attempt). Every sample carries a `node` label and
//! its timestamp (seconds), series are in time order, and the text ends with `# EOF`, so
//! `promtool tsdb create-blocks-from openmetrics` can backfill it.

use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::io::{self, Write};

use soak_gates::model::{Sample, SampleOutcome};

use crate::points::points;
use crate::render::csv_field;

/// Header of the long `timeline.csv`.
pub const TIMELINE_HEADER: &str = "ts_ms,node,metric,value\n";

/// Suffix of the rate rows.
pub const RATE_SUFFIX: &str = ":rate";

/// `v` with a decimal point, never in exponent form for integers.
fn float_text(v: f64) -> String {
    // `{:?}` is the shortest round-trip form and keeps `.0` on whole numbers.
    format!("{v:?}")
}

/// Rates rounded to a micro-unit: exact enough, and short.
fn rate_text(v: f64) -> String {
    float_text((v * 1e6).round() / 1e6)
}

/// Writes `v` in decimal (no allocation, no formatting machinery: this runs once per row).
fn write_u64<W: Write + ?Sized>(out: &mut W, mut v: u64) -> io::Result<()> {
    let mut buf = [0u8; 20];
    let mut i = buf.len();
    loop {
        i -= 1;
        buf[i] = b'0' + (v % 10) as u8;
        v /= 10;
        if v == 0 {
            break;
        }
    }
    out.write_all(&buf[i..])
}

/// One row: the sample's `ts_ms,node,` prefix, the (already quoted) metric, the value text.
fn row<W: Write + ?Sized>(
    out: &mut W,
    prefix: &[u8],
    metric: &str,
    value: &[u8],
) -> io::Result<()> {
    out.write_all(prefix)?;
    out.write_all(metric.as_bytes())?;
    out.write_all(b",")?;
    out.write_all(value)?;
    out.write_all(b"\n")
}

/// Writes the `timeline.csv` rows of one node (no header).
pub fn write_timeline_rows<W: Write + ?Sized>(
    out: &mut W,
    node: &str,
    samples: &[Sample],
    sample_interval_ms: u64,
) -> io::Result<()> {
    let node = csv_field(node);
    // Quoted metric names (and their rate names), built once per node, not once per row.
    let mut names: HashMap<&str, (String, String)> = HashMap::new();
    let mut prefix: Vec<u8> = Vec::with_capacity(64);
    for point in points(samples, sample_interval_ms) {
        prefix.clear();
        write_u64(&mut prefix, point.at)?;
        prefix.push(b',');
        prefix.extend_from_slice(node.as_bytes());
        prefix.push(b',');
        let Some(data) = point.data else {
            row(out, &prefix, "sample_ok", b"0.0")?;
            continue;
        };
        row(out, &prefix, "sample_ok", b"1.0")?;
        row(
            out,
            &prefix,
            "process_epoch",
            format!("{}.0", point.epoch).as_bytes(),
        )?;
        for (name, value) in &data.counters {
            let (metric, rate_metric) = names
                .entry(name)
                .or_insert_with(|| (csv_field(name), csv_field(&format!("{name}{RATE_SUFFIX}"))));
            out.write_all(&prefix)?;
            out.write_all(metric.as_bytes())?;
            out.write_all(b",")?;
            write_u64(out, *value)?;
            out.write_all(b".0\n")?;
            if let Some(rate) = point.rate(name) {
                row(out, &prefix, rate_metric, rate_text(rate).as_bytes())?;
            }
        }
        for (name, value) in &data.gauges {
            if value.is_finite() {
                let (metric, _) = names
                    .entry(name)
                    .or_insert_with(|| (csv_field(name), String::new()));
                row(out, &prefix, metric, float_text(*value).as_bytes())?;
            }
        }
    }
    Ok(())
}

/// The whole long `timeline.csv` of in-memory samples.
pub fn timeline_csv(
    samples: &BTreeMap<String, Vec<Sample>>,
    sample_interval_ms: u64,
) -> io::Result<Vec<u8>> {
    let mut out = TIMELINE_HEADER.as_bytes().to_vec();
    for (node, series) in samples {
        write_timeline_rows(&mut out, node, series, sample_interval_ms)?;
    }
    Ok(out)
}

/// Prefix of the exported families (the node's own `/metrics` prefix).
pub const OPENMETRICS_PREFIX: &str = "soak_node_";

/// A metric name with every character outside `[a-zA-Z0-9_:]` replaced by `_` (and a leading
/// digit prefixed with `_`).
fn metric_name(name: &str) -> String {
    let mut out: String = name
        .chars()
        .map(|c| {
            if c.is_ascii_alphanumeric() || c == '_' || c == ':' {
                c
            } else {
                '_'
            }
        })
        .collect();
    if out.starts_with(|c: char| c.is_ascii_digit()) {
        out.insert(0, '_');
    }
    out
}

/// A label value escaped for OpenMetrics: `\` → `\\`, `"` → `\"`, newline → `\n`.
pub fn escape_label(value: &str) -> String {
    let mut out = String::with_capacity(value.len());
    for c in value.chars() {
        match c {
            '\\' => out.push_str("\\\\"),
            '"' => out.push_str("\\\""),
            '\n' => out.push_str("\\n"),
            c => out.push(c),
        }
    }
    out
}

fn timestamp(ms: u64) -> String {
    format!("{}.{:03}", ms / 1000, ms % 1000)
}

fn gauge_text(v: f64) -> String {
    if v.is_nan() {
        "NaN".into()
    } else if v == f64::INFINITY {
        "+Inf".into()
    } else if v == f64::NEG_INFINITY {
        "-Inf".into()
    } else {
        float_text(v)
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
enum Kind {
    Counter,
    Gauge,
}

/// Writes `samples` as OpenMetrics text ending in `# EOF`. Returns notes on metrics left out
/// (a name that collides with another family once sanitised).
pub fn write_openmetrics<W: Write + ?Sized>(
    out: &mut W,
    samples: &BTreeMap<String, Vec<Sample>>,
) -> io::Result<Vec<String>> {
    // Every series in time order with one point per timestamp (OpenMetrics requires both).
    let series: BTreeMap<&str, Vec<&Sample>> = samples
        .iter()
        .map(|(node, list)| {
            let mut ordered: Vec<&Sample> = list.iter().collect();
            ordered.sort_by_key(|s| s.at_ms);
            ordered.dedup_by_key(|s| s.at_ms);
            (node.as_str(), ordered)
        })
        .collect();
    let mut metrics: BTreeSet<(Kind, &str)> = BTreeSet::new();
    for list in series.values() {
        for sample in list {
            if let SampleOutcome::Ok(data) = &sample.outcome {
                metrics.extend(data.counters.keys().map(|k| (Kind::Counter, k)));
                metrics.extend(data.gauges.keys().map(|k| (Kind::Gauge, k)));
            }
        }
    }
    let mut notes = Vec::new();
    let mut families: BTreeMap<String, (Kind, &str)> = BTreeMap::new();
    for (kind, name) in metrics {
        let base = metric_name(name);
        let family = match kind {
            Kind::Counter => base.strip_suffix("_total").unwrap_or(&base).to_string(),
            Kind::Gauge => base.clone(),
        };
        let family = format!("{OPENMETRICS_PREFIX}{family}");
        if let Some((_, other)) = families.get(&family) {
            notes.push(format!(
                "left out `{name}`: its family name {family} is already taken by `{other}`"
            ));
            continue;
        }
        families.insert(family, (kind, name));
    }
    for (family, (kind, name)) in &families {
        let (type_name, sample_name) = match kind {
            Kind::Counter => ("counter", format!("{family}_total")),
            Kind::Gauge => ("gauge", family.clone()),
        };
        writeln!(out, "# TYPE {family} {type_name}")?;
        let what = match kind {
            Kind::Counter => "counter",
            Kind::Gauge => "gauge",
        };
        writeln!(
            out,
            "# HELP {family} soak-node {what} {} as sampled by soak",
            escape_label(name)
        )?;
        for (node, list) in &series {
            let node = escape_label(node);
            for sample in list {
                let SampleOutcome::Ok(data) = &sample.outcome else {
                    continue;
                };
                let value = match kind {
                    Kind::Counter => data.counters.get(name).map(|v| v.to_string()),
                    Kind::Gauge => data.gauges.get(name).map(|v| gauge_text(*v)),
                };
                if let Some(value) = value {
                    writeln!(
                        out,
                        "{sample_name}{{node=\"{node}\"}} {value} {}",
                        timestamp(sample.at_ms)
                    )?;
                }
            }
        }
    }
    writeln!(out, "# TYPE soak_sample_ok gauge")?;
    writeln!(
        out,
        "# HELP soak_sample_ok 1 when soak read the node's diagnostics, 0 for a failed attempt (an evidence gap)"
    )?;
    for (node, list) in &series {
        let node = escape_label(node);
        for sample in list {
            let ok = matches!(sample.outcome, SampleOutcome::Ok(_));
            writeln!(
                out,
                "soak_sample_ok{{node=\"{node}\"}} {} {}",
                u8::from(ok),
                timestamp(sample.at_ms)
            )?;
        }
    }
    writeln!(out, "# EOF")?;
    Ok(notes)
}

#[cfg(test)]
mod tests {
    use soak_gates::model::SampleData;

    use super::*;

    fn good(at_ms: u64, instance: &str, completed: u64, depth: f64) -> Sample {
        Sample {
            at_ms,
            outcome: SampleOutcome::Ok(SampleData {
                instance_id: instance.into(),
                counters: BTreeMap::from([("dispatcher_completed_total".to_string(), completed)])
                    .into(),
                gauges: BTreeMap::from([("recv_pump_depth".to_string(), depth)]).into(),
                by_peer: BTreeMap::new(),
            }),
        }
    }

    fn samples() -> BTreeMap<String, Vec<Sample>> {
        BTreeMap::from([
            (
                "node-0".to_string(),
                vec![
                    good(1_000, "a", 100, 0.0),
                    good(2_000, "a", 150, 2.5),
                    Sample {
                        at_ms: 3_000,
                        outcome: SampleOutcome::Missing {
                            error: "timeout".into(),
                        },
                    },
                    good(4_000, "b", 7, f64::NAN),
                ],
            ),
            ("we\"ird,node".to_string(), vec![good(1_000, "c", 1, 1.0)]),
        ])
    }

    #[test]
    fn long_csv_has_rates_beside_counters_and_floats_everywhere() {
        let text = String::from_utf8(timeline_csv(&samples(), 1_000).expect("csv")).expect("utf8");
        insta::assert_snapshot!(text, @r#"
        ts_ms,node,metric,value
        1000,node-0,sample_ok,1.0
        1000,node-0,process_epoch,0.0
        1000,node-0,dispatcher_completed_total,100.0
        1000,node-0,recv_pump_depth,0.0
        2000,node-0,sample_ok,1.0
        2000,node-0,process_epoch,0.0
        2000,node-0,dispatcher_completed_total,150.0
        2000,node-0,dispatcher_completed_total:rate,50.0
        2000,node-0,recv_pump_depth,2.5
        3000,node-0,sample_ok,0.0
        4000,node-0,sample_ok,1.0
        4000,node-0,process_epoch,1.0
        4000,node-0,dispatcher_completed_total,7.0
        1000,"we""ird,node",sample_ok,1.0
        1000,"we""ird,node",process_epoch,0.0
        1000,"we""ird,node",dispatcher_completed_total,1.0
        1000,"we""ird,node",recv_pump_depth,1.0
        "#);
    }

    #[test]
    fn openmetrics_groups_families_labels_nodes_and_ends_in_eof() {
        let mut out = Vec::new();
        let notes = write_openmetrics(&mut out, &samples()).expect("write");
        assert!(notes.is_empty(), "{notes:?}");
        let text = String::from_utf8(out).expect("utf8");
        insta::assert_snapshot!(text, @r#"
        # TYPE soak_node_dispatcher_completed counter
        # HELP soak_node_dispatcher_completed soak-node counter dispatcher_completed_total as sampled by soak
        soak_node_dispatcher_completed_total{node="node-0"} 100 1.000
        soak_node_dispatcher_completed_total{node="node-0"} 150 2.000
        soak_node_dispatcher_completed_total{node="node-0"} 7 4.000
        soak_node_dispatcher_completed_total{node="we\"ird,node"} 1 1.000
        # TYPE soak_node_recv_pump_depth gauge
        # HELP soak_node_recv_pump_depth soak-node gauge recv_pump_depth as sampled by soak
        soak_node_recv_pump_depth{node="node-0"} 0.0 1.000
        soak_node_recv_pump_depth{node="node-0"} 2.5 2.000
        soak_node_recv_pump_depth{node="node-0"} NaN 4.000
        soak_node_recv_pump_depth{node="we\"ird,node"} 1.0 1.000
        # TYPE soak_sample_ok gauge
        # HELP soak_sample_ok 1 when soak read the node's diagnostics, 0 for a failed attempt (an evidence gap)
        soak_sample_ok{node="node-0"} 1 1.000
        soak_sample_ok{node="node-0"} 1 2.000
        soak_sample_ok{node="node-0"} 0 3.000
        soak_sample_ok{node="node-0"} 1 4.000
        soak_sample_ok{node="we\"ird,node"} 1 1.000
        # EOF
        "#);
    }

    #[test]
    fn colliding_names_are_left_out_with_a_note_and_labels_are_escaped() {
        let mut data = BTreeMap::new();
        data.insert(
            "n\\1\n".to_string(),
            vec![Sample {
                at_ms: 5,
                outcome: SampleOutcome::Ok(SampleData {
                    instance_id: "i".into(),
                    counters: BTreeMap::from([
                        ("a-b_total".to_string(), 1),
                        ("a.b_total".to_string(), 2),
                    ])
                    .into(),
                    gauges: Default::default(),
                    by_peer: BTreeMap::new(),
                }),
            }],
        );
        let mut out = Vec::new();
        let notes = write_openmetrics(&mut out, &data).expect("write");
        assert_eq!(notes.len(), 1, "{notes:?}");
        let text = String::from_utf8(out).expect("utf8");
        assert!(
            text.contains("soak_node_a_b_total{node=\"n\\\\1\\n\"} 1 0.005"),
            "{text}"
        );
        assert!(text.ends_with("# EOF\n"));
    }
}
