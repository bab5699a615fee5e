//! The end-of-run summary in the manner of k6's: totals of what the workloads did and what the
//! nodes counted, throughput, latency columns, the command line and the seed. Printed at the
//! end of `soak run` and `soak score` and rendered into `summary.md`, from one
//! [`EndSummary`].
//!
//! Node-counter totals are the fleet sum of each node's increase over the judged span (first
//! window start to last window end) under the gates' own delta rules, so a restart loses
//! nothing and a gap is never read as zero: when the increase is not known exactly the total is
//! shown as `≥ N` (the part definitely observed).

use std::collections::BTreeMap;
use std::fmt::Write as _;

use soak_gates::Verdict;
use soak_gates::model::{Sample, SampleOutcome, WindowRecord};
use soak_gates::series::{Delta, NodeSeries};

use crate::meta::{RunMeta, RunStatus};
use crate::points::max_step_ms;

/// The node counters the summary totals, with their labels.
pub const SUMMARY_COUNTERS: &[&str] = &[
    "dm_sent_total",
    "dm_acked_total",
    "dm_ack_timeouts_total",
    "dm_duplicates_total",
    "gossip_published_total",
    "gossip_delivered_total",
    "gossip_duplicates_total",
];

/// Fleet totals of node counters, accumulated node by node.
#[derive(Debug, Clone, PartialEq)]
pub struct Totals {
    span: Option<(u64, u64)>,
    tolerance_ms: u64,
    counters: BTreeMap<&'static str, Delta>,
    /// Good samples seen.
    pub samples_ok: u64,
    /// Failed sampling attempts seen.
    pub samples_missing: u64,
}

impl Totals {
    /// Totals over `span` (`None`: no window, nothing is totalled).
    pub fn new(span: Option<(u64, u64)>, sample_interval_ms: u64) -> Totals {
        Totals {
            span,
            tolerance_ms: max_step_ms(sample_interval_ms),
            counters: SUMMARY_COUNTERS
                .iter()
                .map(|c| {
                    (
                        *c,
                        Delta {
                            lo: 0,
                            hi: Some(0),
                            restarts: 0,
                            integrity: false,
                        },
                    )
                })
                .collect(),
            samples_ok: 0,
            samples_missing: 0,
        }
    }

    /// The judged span of `windows`: first start to last end.
    pub fn span_of(windows: &[WindowRecord]) -> Option<(u64, u64)> {
        let start = windows.iter().map(|w| w.start_ms).min()?;
        let end = windows.iter().map(|w| w.end_ms).max()?;
        Some((start, end))
    }

    /// Adds one node's samples.
    pub fn add_node(&mut self, samples: &[Sample]) {
        for s in samples {
            match s.outcome {
                SampleOutcome::Ok(_) => self.samples_ok += 1,
                SampleOutcome::Missing { .. } => self.samples_missing += 1,
            }
        }
        let Some((start, end)) = self.span else {
            return;
        };
        let series = NodeSeries::new(samples);
        // `counters` is a BTreeMap: its keys are sorted and distinct, as `columns` needs.
        let names: Vec<&str> = self.counters.keys().copied().collect();
        let columns = series.columns(&names, &[]);
        for ((name, total), column) in self.counters.iter_mut().zip(&columns.counters) {
            let delta = series
                .counter_from_column(name, column, self.tolerance_ms)
                .window_delta(start, end, self.tolerance_ms);
            *total = total.plus(delta);
        }
    }

    /// Adds every node of an in-memory sample map.
    pub fn of_samples(
        samples: &BTreeMap<String, Vec<Sample>>,
        windows: &[WindowRecord],
        sample_interval_ms: u64,
    ) -> Totals {
        let mut totals = Totals::new(Totals::span_of(windows), sample_interval_ms);
        for series in samples.values() {
            totals.add_node(series);
        }
        totals
    }

    fn counter(&self, name: &str) -> Option<Delta> {
        self.span.and(self.counters.get(name).copied())
    }
}

/// Latency quantiles (nearest rank), microseconds.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct Quantiles {
    /// Smallest.
    pub min: u64,
    /// Median.
    pub p50: u64,
    /// 90th percentile.
    pub p90: u64,
    /// 99th percentile.
    pub p99: u64,
    /// Largest.
    pub max: u64,
    /// How many values.
    pub count: usize,
}

impl Quantiles {
    /// Quantiles of `values` (sorted here); `None` when empty.
    pub fn of(mut values: Vec<u64>) -> Option<Quantiles> {
        if values.is_empty() {
            return None;
        }
        values.sort_unstable();
        let rank = |q: f64| {
            let i = ((q * values.len() as f64).ceil() as usize).clamp(1, values.len());
            values[i - 1]
        };
        Some(Quantiles {
            min: values[0],
            p50: rank(0.5),
            p90: rank(0.9),
            p99: rank(0.99),
            max: values[values.len() - 1],
            count: values.len(),
        })
    }
}

/// Everything the end summary shows.
#[derive(Debug, Clone, PartialEq)]
pub struct EndSummary {
    /// Run id.
    pub run_id: String,
    /// Run status.
    pub status: RunStatus,
    /// Gate name.
    pub gate: String,
    /// Soak verdict.
    pub verdict: String,
    /// Nodes in the fleet.
    pub nodes: usize,
    /// Windows judged, warm-up included.
    pub windows: usize,
    /// Warm-up windows.
    pub warmup: usize,
    /// Windows by verdict: GO, UNKNOWN, NO-GO.
    pub window_verdicts: [usize; 3],
    /// Judged span, ms.
    pub span_ms: Option<u64>,
    /// Command line.
    pub command: Option<String>,
    /// Seed.
    pub seed: Option<u64>,
    /// Phase A pairs attempted.
    pub pairs: u64,
    /// Pairs acknowledged.
    pub pairs_acked: u64,
    /// Pairs delivered as the judge counts them: acked and in the receiver's inbox exactly
    /// once ([`soak_gates::model::PairOutcome::is_delivered`]).
    pub pairs_delivered: u64,
    /// Pairs not delivered.
    pub pairs_failed: u64,
    /// Pairs that needed more than one attempt.
    pub pairs_retried: u64,
    /// Send-to-ACK latency of delivered pairs.
    pub phase_a_latency: Option<Quantiles>,
    /// Fanout bursts.
    pub bursts: u64,
    /// Messages published.
    pub published: u64,
    /// Deliveries expected (messages × subscribers).
    pub expected: u64,
    /// Distinct deliveries.
    pub received: u64,
    /// Duplicate deliveries.
    pub duplicates: u64,
    /// Subscribers that could not be read.
    pub unreadable_subscribers: u64,
    /// Median of the subscribers' p50 latencies, µs.
    pub fanout_p50_median: Option<u64>,
    /// Worst subscriber p99, µs.
    pub fanout_p99_worst: Option<u64>,
    /// Largest delivery latency, µs.
    pub fanout_max: Option<u64>,
    /// Node counter totals.
    pub totals: Totals,
}

impl EndSummary {
    /// Gathers the summary of a verdict, its windows and node totals.
    pub fn new(
        meta: &RunMeta,
        status: RunStatus,
        verdict: &Verdict,
        windows: &[WindowRecord],
        totals: Totals,
    ) -> EndSummary {
        let mut window_verdicts = [0usize; 3];
        for w in &verdict.windows {
            window_verdicts[w.verdict as usize] += 1;
        }
        let pairs: Vec<_> = windows
            .iter()
            .filter_map(|w| w.phase_a.as_ref())
            .flat_map(|p| p.pairs.iter())
            .collect();
        let count = |f: &dyn Fn(&&soak_gates::model::PairOutcome) -> bool| {
            pairs.iter().filter(|p| f(p)).count() as u64
        };
        let subscribers: Vec<_> = windows
            .iter()
            .filter_map(|w| w.fanout.as_ref())
            .flat_map(|f| f.subscribers.iter())
            .collect();
        let p50s = Quantiles::of(subscribers.iter().filter_map(|s| s.p50_us).collect());
        EndSummary {
            run_id: verdict.run_id.clone(),
            status,
            gate: verdict.gate.clone(),
            verdict: verdict.verdict.to_string(),
            nodes: verdict.nodes,
            windows: verdict.windows.len(),
            warmup: verdict.windows.iter().filter(|w| w.warmup).count(),
            window_verdicts,
            span_ms: Totals::span_of(windows).map(|(s, e)| e.saturating_sub(s)),
            command: meta.command_line(),
            seed: meta.run_seed(),
            pairs: pairs.len() as u64,
            pairs_acked: count(&|p| p.acked()),
            pairs_delivered: count(&|p| p.is_delivered()),
            pairs_failed: count(&|p| !p.is_delivered()),
            pairs_retried: count(&|p| p.attempts > 1),
            phase_a_latency: Quantiles::of(
                pairs
                    .iter()
                    .filter(|p| p.is_delivered())
                    .filter_map(|p| p.latency_us)
                    .collect(),
            ),
            bursts: windows.iter().filter(|w| w.fanout.is_some()).count() as u64,
            published: windows
                .iter()
                .filter_map(|w| w.fanout.as_ref())
                .map(|f| f.messages)
                .sum(),
            expected: subscribers.iter().map(|s| s.expected).sum(),
            received: subscribers.iter().map(|s| s.received).sum(),
            duplicates: subscribers.iter().map(|s| s.duplicates).sum(),
            unreadable_subscribers: subscribers.iter().filter(|s| s.error.is_some()).count() as u64,
            fanout_p50_median: p50s.map(|q| q.p50),
            fanout_p99_worst: subscribers.iter().filter_map(|s| s.p99_us).max(),
            fanout_max: subscribers.iter().filter_map(|s| s.max_us).max(),
            totals,
        }
    }

    fn per_second(&self, count: u64) -> String {
        match self.span_ms {
            Some(ms) if ms > 0 => format!("{:.2}/s", count as f64 * 1000.0 / ms as f64),
            _ => "-".to_string(),
        }
    }

    fn total(&self, name: &str) -> (String, u64) {
        match self.totals.counter(name) {
            None => ("-".to_string(), 0),
            Some(d) => match d.exact() {
                Some(v) => (v.to_string(), v),
                None => (format!("≥ {}", d.lo), d.lo),
            },
        }
    }

    /// The summary as `(metric, value, rate)` rows, in display order.
    pub fn rows(&self) -> Vec<(&'static str, String, String)> {
        let mut rows = Vec::new();
        let span = self
            .span_ms
            .map_or("-".to_string(), |ms| format!("{:.1} s", ms as f64 / 1000.0));
        rows.push((
            "run",
            format!(
                "{} ({}), {} nodes, {} windows ({} warm-up) over {span}",
                self.run_id,
                self.status.as_str(),
                self.nodes,
                self.windows,
                self.warmup
            ),
            String::new(),
        ));
        rows.push((
            "command",
            self.command.clone().unwrap_or_else(|| "-".to_string()),
            String::new(),
        ));
        rows.push((
            "seed",
            self.seed.map_or("-".to_string(), |s| s.to_string()),
            String::new(),
        ));
        let [go, unknown, no_go] = self.window_verdicts;
        rows.push((
            "verdict",
            format!(
                "{} (gate {}): windows GO {go} · UNKNOWN {unknown} · NO-GO {no_go}",
                self.verdict, self.gate
            ),
            String::new(),
        ));
        rows.push((
            "phase_a_dms",
            format!(
                "{} sent · {} acked · {} delivered · {} failed · {} retried",
                self.pairs,
                self.pairs_acked,
                self.pairs_delivered,
                self.pairs_failed,
                self.pairs_retried
            ),
            self.per_second(self.pairs),
        ));
        rows.push((
            "phase_a_latency",
            latency_text(self.phase_a_latency),
            String::new(),
        ));
        let ratio = if self.expected == 0 {
            "-".to_string()
        } else {
            format!(
                "{:.1}%",
                self.received as f64 * 100.0 / self.expected as f64
            )
        };
        rows.push((
            "fanout_messages",
            format!(
                "{} bursts · {} published · {}/{} delivered ({ratio}) · {} duplicates{}",
                self.bursts,
                self.published,
                self.received,
                self.expected,
                self.duplicates,
                if self.unreadable_subscribers > 0 {
                    format!(" · {} subscribers unreadable", self.unreadable_subscribers)
                } else {
                    String::new()
                }
            ),
            self.per_second(self.received),
        ));
        rows.push((
            "fanout_latency",
            format!(
                "med p50={} worst p99={} max={} (over subscribers)",
                ms(self.fanout_p50_median),
                ms(self.fanout_p99_worst),
                ms(self.fanout_max)
            ),
            String::new(),
        ));
        let (sent, sent_n) = self.total("dm_sent_total");
        let (acked, _) = self.total("dm_acked_total");
        let (timeouts, _) = self.total("dm_ack_timeouts_total");
        let (dups, _) = self.total("dm_duplicates_total");
        rows.push((
            "node_dms",
            format!("{sent} sent · {acked} acked · {timeouts} ack timeouts · {dups} duplicates"),
            self.per_second(sent_n),
        ));
        let (published, _) = self.total("gossip_published_total");
        let (delivered, delivered_n) = self.total("gossip_delivered_total");
        let (gdups, _) = self.total("gossip_duplicates_total");
        rows.push((
            "node_gossip",
            format!("{published} published · {delivered} delivered · {gdups} duplicates"),
            self.per_second(delivered_n),
        ));
        rows.push((
            "samples",
            format!(
                "{} ok · {} missing",
                self.totals.samples_ok, self.totals.samples_missing
            ),
            String::new(),
        ));
        rows
    }

    /// The terminal form: `label.....: value   rate`, one row a line.
    pub fn text(&self) -> String {
        let rows = self.rows();
        let width = rows
            .iter()
            .map(|(_, v, _)| v.chars().count())
            .max()
            .unwrap_or(0);
        let mut out = String::new();
        for (label, value, rate) in rows {
            let dots = ".".repeat(18usize.saturating_sub(label.len()));
            let line = if rate.is_empty() {
                format!("  {label}{dots}: {value}")
            } else {
                let pad = width.saturating_sub(value.chars().count());
                format!("  {label}{dots}: {value}{}  {rate}", " ".repeat(pad))
            };
            let _ = writeln!(out, "{}", line.trim_end());
        }
        out
    }
}

fn ms(us: Option<u64>) -> String {
    us.map_or("-".to_string(), |us| format!("{:.1}ms", us as f64 / 1000.0))
}

fn latency_text(q: Option<Quantiles>) -> String {
    match q {
        None => "-".to_string(),
        Some(q) => format!(
            "min={} med={} p90={} p99={} max={} ({} pairs)",
            ms(Some(q.min)),
            ms(Some(q.p50)),
            ms(Some(q.p90)),
            ms(Some(q.p99)),
            ms(Some(q.max)),
            q.count
        ),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn nearest_rank_quantiles() {
        let q = Quantiles::of((1..=100).collect()).expect("values");
        assert_eq!((q.min, q.p50, q.p90, q.p99, q.max), (1, 50, 90, 99, 100));
        let one = Quantiles::of(vec![7]).expect("one");
        assert_eq!((one.p50, one.p99), (7, 7));
        assert_eq!(Quantiles::of(Vec::new()), None);
    }
}
