//! Bars over sampled telemetry: evidence completeness, counters, counter ratios, gauges and
//! gauge ratios, per node or fleet-wide, judged as intervals so a gap can never pass.

use super::*;

pub(super) fn judge_telemetry(
    facts: &Facts<'_>,
    profile: &Profile,
    w: usize,
    exempt: &BTreeSet<String>,
) -> Judged {
    let mut verdict = Outcome::Go;
    let mut bad_nodes = Vec::new();
    let mut details = Vec::new();
    for (n, node) in facts.nodes.iter().enumerate() {
        if exempt.contains(node) {
            continue;
        }
        let gaps = &facts.coverage[n][w];
        let integrity = facts.integrity_in(n, w);
        if gaps.is_empty() && !integrity {
            continue;
        }
        bad_nodes.push(node.clone());
        if integrity {
            verdict = verdict.worst(profile.evidence.integrity_error);
            details.push(format!(
                "{node}: counter decreased within one process (integrity)"
            ));
        }
        if !gaps.is_empty() {
            verdict = verdict.worst(profile.evidence.missing_telemetry);
            let longest = gaps.iter().map(|(a, b)| b - a).max().unwrap_or(0);
            let closing = match &facts.closing[n][w] {
                Closing::Evidence => String::new(),
                Closing::Failed { at_ms, error } => format!(
                    "; no closing evidence: the sample at {} failed ({error})",
                    utc_time(*at_ms)
                ),
                Closing::NoSample => "; no closing evidence: no good sample in the window".into(),
            };
            details.push(format!(
                "{node}: no good sample for {} ({} failed attempts){closing}",
                human_duration(longest),
                facts.missing[n][w]
            ));
        }
    }
    let reason = if bad_nodes.is_empty() {
        format!(
            "{} nodes sampled with no step over {}",
            facts.nodes.len() - exempt.iter().filter(|e| facts.nodes.contains(e)).count(),
            human_duration(facts.window_tolerance[w])
        )
    } else {
        list(&details, 5)
    };
    if facts.nodes.is_empty() {
        verdict = Outcome::Unknown;
    }
    Judged {
        verdict,
        statistic: "nodes with an evidence gap or integrity error".into(),
        value: Some(bad_nodes.len() as f64),
        threshold: "== 0".into(),
        nodes: bad_nodes,
        reason: if facts.nodes.is_empty() {
            "no nodes".into()
        } else {
            reason
        },
    }
}

/// Judges `[lo, hi]` intervals against `≤ max`: NO-GO when `lo` exceeds, GO when `hi` is
/// known and within, else UNKNOWN.
pub(super) fn interval_outcome(lo: f64, hi: Option<f64>, max: f64) -> Outcome {
    if lo > max {
        Outcome::NoGo
    } else if hi.is_some_and(|h| h <= max) {
        Outcome::Go
    } else {
        Outcome::Unknown
    }
}

pub(super) fn why_unknown(delta: &Delta) -> &'static str {
    if delta.integrity {
        "integrity error"
    } else if delta.hi.is_none() {
        "evidence gap"
    } else {
        "may exceed across an evidence gap"
    }
}

/// Shared shape of per-node / fleet judgements.
pub(super) struct Tally {
    pub(super) verdict: Outcome,
    pub(super) failed: Vec<String>,
    pub(super) unknown: Vec<String>,
    pub(super) failed_nodes: BTreeSet<String>,
    pub(super) unknown_nodes: BTreeSet<String>,
    pub(super) worst_value: Option<f64>,
    pub(super) judged: usize,
}

impl Tally {
    pub(super) fn new() -> Tally {
        Tally {
            verdict: Outcome::Go,
            failed: Vec::new(),
            unknown: Vec::new(),
            failed_nodes: BTreeSet::new(),
            unknown_nodes: BTreeSet::new(),
            worst_value: None,
            judged: 0,
        }
    }

    /// Records one judged unit (a node, or the fleet): its label for the reason, its outcome,
    /// its value and the nodes it stands for.
    pub(super) fn add(&mut self, label: String, outcome: Outcome, value: f64, nodes: &[String]) {
        self.judged += 1;
        self.verdict = self.verdict.worst(outcome);
        match outcome {
            Outcome::NoGo => {
                self.failed.push(label);
                self.failed_nodes.extend(nodes.iter().cloned());
            }
            Outcome::Unknown => {
                self.unknown.push(label);
                self.unknown_nodes.extend(nodes.iter().cloned());
            }
            Outcome::Go => {}
        }
        self.worst_value = Some(self.worst_value.map_or(value, |w: f64| w.max(value)));
    }

    pub(super) fn judged(self, statistic: String, threshold: String, go_reason: String) -> Judged {
        if self.judged == 0 {
            return Judged {
                verdict: Outcome::Unknown,
                statistic,
                value: None,
                threshold,
                nodes: Vec::new(),
                reason: "no node to judge (none, or all exempt)".into(),
            };
        }
        let (nodes, reason) = match self.verdict {
            Outcome::NoGo => (
                self.failed_nodes,
                format!("over the bar: {}", list(&self.failed, 8)),
            ),
            Outcome::Unknown => (
                self.unknown_nodes,
                format!("not decidable: {}", list(&self.unknown, 8)),
            ),
            Outcome::Go => (BTreeSet::new(), go_reason),
        };
        Judged {
            verdict: self.verdict,
            statistic,
            value: self.worst_value,
            threshold,
            nodes: nodes.into_iter().collect(),
            reason,
        }
    }
}

pub(super) fn scoped_nodes<'f>(
    facts: &'f Facts<'_>,
    exempt: &'f BTreeSet<String>,
) -> impl Iterator<Item = (usize, &'f String)> + 'f {
    facts
        .nodes
        .iter()
        .enumerate()
        .filter(move |(_, n)| !exempt.contains(*n))
}

pub(super) fn judge_counter(
    facts: &Facts<'_>,
    w: usize,
    counter: &str,
    scope: Scope,
    max: u64,
    exempt: &BTreeSet<String>,
) -> Judged {
    let limit = max as f64;
    let mut tally = Tally::new();
    let label = |name: &str, d: &Delta| match d.hi {
        Some(h) if h == d.lo => format!("{name} +{}", d.lo),
        Some(h) => format!("{name} +{}..{} ({})", d.lo, h, why_unknown(d)),
        None => format!("{name} ≥ +{} ({})", d.lo, why_unknown(d)),
    };
    let statistic = match scope {
        Scope::Node => {
            for (n, name) in scoped_nodes(facts, exempt) {
                let d = facts.delta(counter, n, w);
                let outcome = interval_outcome(d.lo as f64, d.hi.map(|h| h as f64), limit);
                tally.add(
                    label(name, &d),
                    outcome,
                    d.lo as f64,
                    std::slice::from_ref(name),
                );
            }
            format!("largest per-node increase of {counter}")
        }
        Scope::Fleet => {
            let mut sum = Delta {
                lo: 0,
                hi: Some(0),
                restarts: 0,
                integrity: false,
            };
            let mut involved = Vec::new();
            let mut any = false;
            for (n, name) in scoped_nodes(facts, exempt) {
                let d = facts.delta(counter, n, w);
                if d.lo > 0 || d.exact().is_none() {
                    involved.push(name.clone());
                }
                sum = sum.plus(d);
                any = true;
            }
            if any {
                let outcome = interval_outcome(sum.lo as f64, sum.hi.map(|h| h as f64), limit);
                tally.add(label("fleet", &sum), outcome, sum.lo as f64, &involved);
            }
            format!("fleet increase of {counter}")
        }
    };
    let go = format!(
        "within the bar (largest +{})",
        fmt_num(tally.worst_value.unwrap_or(0.0))
    );
    tally.judged(statistic, format!("<= {max}"), go)
}

/// Bounds of `num / den` from interval deltas, with the ratio edge cases.
pub(super) fn ratio_bounds(num: &Delta, den: &Delta) -> (f64, Option<f64>) {
    let lo = if num.lo == 0 {
        0.0
    } else {
        match den.hi {
            Some(0) => f64::INFINITY,
            Some(h) => num.lo as f64 / h as f64,
            None => 0.0,
        }
    };
    let hi = match num.hi {
        Some(0) => Some(0.0),
        None => None,
        Some(n) => (den.lo > 0).then(|| n as f64 / den.lo as f64),
    };
    (lo, hi)
}

pub(super) fn judge_counter_ratio(
    facts: &Facts<'_>,
    w: usize,
    numerator: &str,
    denominator: &str,
    scope: Scope,
    max: f64,
    exempt: &BTreeSet<String>,
) -> Judged {
    let mut tally = Tally::new();
    let judge = |tally: &mut Tally, name: &str, num: Delta, den: Delta, nodes: &[String]| {
        let (lo, hi) = ratio_bounds(&num, &den);
        let outcome = interval_outcome(lo, hi, max);
        let text = if lo.is_infinite() {
            format!("{name} {}/0 (numerator > 0 with denominator 0)", num.lo)
        } else if num.exact().is_some() && den.exact().is_some() {
            format!("{name} {}/{} = {}", num.lo, den.lo, fmt_num(lo))
        } else {
            format!(
                "{name} {} ({})",
                fmt_num(lo),
                why_unknown(if num.exact().is_none() { &num } else { &den })
            )
        };
        tally.add(text, outcome, lo, nodes);
    };
    let statistic = match scope {
        Scope::Node => {
            for (n, name) in scoped_nodes(facts, exempt) {
                let (num, den) = (facts.delta(numerator, n, w), facts.delta(denominator, n, w));
                judge(&mut tally, name, num, den, std::slice::from_ref(name));
            }
            format!("largest per-node {numerator} / {denominator}")
        }
        Scope::Fleet => {
            let zero = Delta {
                lo: 0,
                hi: Some(0),
                restarts: 0,
                integrity: false,
            };
            let (mut num, mut den, mut any) = (zero, zero, false);
            let mut involved = Vec::new();
            for (n, name) in scoped_nodes(facts, exempt) {
                let (a, b) = (facts.delta(numerator, n, w), facts.delta(denominator, n, w));
                if a.lo > 0 || a.exact().is_none() || b.exact().is_none() {
                    involved.push(name.clone());
                }
                num = num.plus(a);
                den = den.plus(b);
                any = true;
            }
            if any {
                judge(&mut tally, "fleet", num, den, &involved);
            }
            format!("fleet {numerator} / {denominator}")
        }
    };
    let go = format!(
        "within the bar (largest {})",
        fmt_num(tally.worst_value.unwrap_or(0.0))
    );
    tally.judged(statistic, format!("<= {}", fmt_num(max)), go)
}

pub(super) fn judge_values(
    facts: &Facts<'_>,
    w: usize,
    key: &ValueKey,
    fleet: Option<(&ValueKey, &ValueKey)>,
    max: f64,
    exempt: &BTreeSet<String>,
) -> Tally {
    let mut tally = Tally::new();
    match fleet {
        None => {
            for (n, name) in scoped_nodes(facts, exempt) {
                let fact = facts.value(key, n, w);
                let (outcome, text, value) = match fact.max {
                    Some(v) if v > max => (Outcome::NoGo, format!("{name} {}", fmt_num(v)), v),
                    Some(v) if !fact.gapped => (Outcome::Go, format!("{name} {}", fmt_num(v)), v),
                    Some(v) => (
                        Outcome::Unknown,
                        format!("{name} {} (evidence gap)", fmt_num(v)),
                        v,
                    ),
                    None => (Outcome::Unknown, format!("{name} no sample"), 0.0),
                };
                tally.add(text, outcome, value, std::slice::from_ref(name));
            }
        }
        Some((num_key, den_key)) => {
            let (mut num, mut den, mut gapped, mut any) = (0.0, 0.0, false, false);
            let mut involved = Vec::new();
            for (n, name) in scoped_nodes(facts, exempt) {
                any = true;
                let (a, b) = (facts.value(num_key, n, w), facts.value(den_key, n, w));
                match (a.last, b.last) {
                    (Some(x), Some(y)) => {
                        num += x;
                        den += y;
                        if x > 0.0 {
                            involved.push(name.clone());
                        }
                    }
                    _ => {
                        gapped = true;
                        involved.push(name.clone());
                    }
                }
                if a.gapped || b.gapped {
                    gapped = true;
                    involved.push(name.clone());
                }
            }
            if any {
                let v = if num_key == den_key {
                    num
                } else {
                    ratio(num, den)
                };
                let outcome = if v > max {
                    Outcome::NoGo
                } else if gapped {
                    Outcome::Unknown
                } else {
                    Outcome::Go
                };
                let text = if gapped {
                    format!("fleet {} (evidence gap)", fmt_num(v))
                } else {
                    format!("fleet {}", fmt_num(v))
                };
                involved.dedup();
                tally.add(text, outcome, v, &involved);
            }
        }
    }
    tally
}

pub(super) fn judge_gauge(
    facts: &Facts<'_>,
    w: usize,
    gauge: &str,
    scope: Scope,
    max: f64,
    exempt: &BTreeSet<String>,
) -> Judged {
    let key = ValueKey::Gauge(gauge.to_string());
    let (tally, statistic) = match scope {
        Scope::Node => (
            judge_values(facts, w, &key, None, max, exempt),
            format!("largest per-node {gauge} sampled in the window"),
        ),
        Scope::Fleet => (
            judge_values(facts, w, &key, Some((&key, &key)), max, exempt),
            format!("fleet sum of {gauge} at each node's last sample"),
        ),
    };
    let go = format!(
        "within the bar (largest {})",
        fmt_num(tally.worst_value.unwrap_or(0.0))
    );
    tally.judged(statistic, format!("<= {}", fmt_num(max)), go)
}

pub(super) fn judge_gauge_ratio(
    facts: &Facts<'_>,
    w: usize,
    (numerator, denominator): (&str, &str),
    scope: Scope,
    max: f64,
    exempt: &BTreeSet<String>,
    links: &BTreeSet<(String, String)>,
) -> Judged {
    let (tally, statistic) = match scope {
        Scope::Node if !links.is_empty() => (
            judge_ratio_without_links(facts, w, numerator, denominator, max, exempt, links),
            format!(
                "largest per-node {numerator} / {denominator} sampled in the window, exempt links left out ({})",
                list(
                    &links
                        .iter()
                        .map(|(node, peer)| format!("{node}→{peer}"))
                        .collect::<Vec<_>>(),
                    4
                )
            ),
        ),
        Scope::Node => (
            judge_values(
                facts,
                w,
                &ValueKey::Ratio(numerator.to_string(), denominator.to_string()),
                None,
                max,
                exempt,
            ),
            format!("largest per-node {numerator} / {denominator} sampled in the window"),
        ),
        Scope::Fleet => {
            let (num, den) = (
                ValueKey::Gauge(numerator.to_string()),
                ValueKey::Gauge(denominator.to_string()),
            );
            (
                judge_values(facts, w, &num, Some((&num, &den)), max, exempt),
                format!("fleet Σ{numerator} / Σ{denominator} at each node's last sample"),
            )
        }
    };
    let go = format!(
        "within the bar (largest {})",
        fmt_num(tally.worst_value.unwrap_or(0.0))
    );
    tally.judged(statistic, format!("<= {}", fmt_num(max)), go)
}

/// Per-node gauge ratio with the links to `links` left out: every sample's numerator and
/// denominator lose what the node reports per peer for those peers (`SampleData::by_peer`). A
/// sample with a non-zero numerator but no per-peer breakdown cannot be separated, so the node
/// is not decidable from it (UNKNOWN), never passed.
pub(super) fn judge_ratio_without_links(
    facts: &Facts<'_>,
    w: usize,
    numerator: &str,
    denominator: &str,
    max: f64,
    exempt: &BTreeSet<String>,
    links: &BTreeSet<(String, String)>,
) -> Tally {
    let mut tally = Tally::new();
    let record = &facts.obs.windows[w];
    let key = ValueKey::Ratio(numerator.to_string(), denominator.to_string());
    let empty = Vec::new();
    for (n, name) in scoped_nodes(facts, exempt) {
        let gapped = facts.value(&key, n, w).gapped;
        let mut worst: Option<f64> = None;
        // Samples over the bar whose exempt links could not be separated.
        let mut unseparated = false;
        let mut over = false;
        let samples = facts.obs.samples.get(name).unwrap_or(&empty);
        for sample in samples
            .iter()
            .filter(|s| s.at_ms > record.start_ms && s.at_ms <= record.end_ms)
        {
            let crate::model::SampleOutcome::Ok(data) = &sample.outcome else {
                continue;
            };
            let (Some(&num), Some(&den)) =
                (data.gauges.get(numerator), data.gauges.get(denominator))
            else {
                continue;
            };
            let share = |gauge: &str| -> Option<f64> {
                let per_peer = data.by_peer.get(gauge)?;
                Some(
                    links
                        .iter()
                        .filter(|(node, _)| node == name)
                        .filter_map(|(_, peer)| per_peer.get(peer))
                        .sum(),
                )
            };
            let (value, separated) = if num <= 0.0 {
                (0.0, true)
            } else {
                match (share(numerator), share(denominator)) {
                    (Some(a), Some(b)) => (ratio((num - a).max(0.0), (den - b).max(0.0)), true),
                    _ => (ratio(num, den), false),
                }
            };
            if value > max {
                if separated {
                    over = true;
                } else {
                    unseparated = true;
                }
            }
            worst = Some(worst.map_or(value, |m: f64| m.max(value)));
        }
        let (outcome, text, value) = match worst {
            Some(v) if over => (Outcome::NoGo, format!("{name} {}", fmt_num(v)), v),
            Some(v) if unseparated => (
                Outcome::Unknown,
                format!(
                    "{name} {} (the exempt links cannot be separated: no per-peer breakdown)",
                    fmt_num(v)
                ),
                v,
            ),
            Some(v) if !gapped => (Outcome::Go, format!("{name} {}", fmt_num(v)), v),
            Some(v) => (
                Outcome::Unknown,
                format!("{name} {} (evidence gap)", fmt_num(v)),
                v,
            ),
            None => (Outcome::Unknown, format!("{name} no sample"), 0.0),
        };
        tally.add(text, outcome, value, std::slice::from_ref(name));
    }
    tally
}
