//! The soak-level adaptive policy on a fleet event rate (broad-launch: dispatcher timeouts per
//! dispatcher completion). See `docs/gates.md` for the reasoning.
//!
//! Three parts, worst wins per window:
//! * the **ceiling**: every judged window's fleet rate at most `max_window_rate`;
//! * the **adaptive test** against a baseline learned from warmed windows (Poisson tail with a
//!   floor, effect size, consecutive anomalies or anomalies with degradation fail);
//! * when that baseline comes from fewer than `min_baseline_windows` windows (short readiness
//!   runs), the **strict count** `strict_max_per_node` per node per window instead.

use super::*;

/// Fleet sums of one window (interval deltas) and the nodes without exact counts.
struct WindowSums {
    events: Delta,
    exposure: Delta,
    inexact: Vec<String>,
    with_events: Vec<String>,
}

/// One window's result under construction.
struct Step {
    outcome: Outcome,
    detail: Baseline,
    reason: String,
    nodes: BTreeSet<String>,
}

fn zero() -> Delta {
    Delta {
        lo: 0,
        hi: Some(0),
        restarts: 0,
        integrity: false,
    }
}

/// Adds one bar per window (baseline and warm-up windows included, marked as such) and returns
/// the soak-level bar.
pub(super) fn adaptive(
    facts: &Facts<'_>,
    policy: &AdaptivePolicy,
    windows: &mut [WindowVerdict],
) -> BarResult {
    let obs = facts.obs;
    let n_windows = obs.windows.len();
    let sums: Vec<WindowSums> = (0..n_windows)
        .map(|w| {
            let (_, exempt) = exemptions_for(&obs.windows[w], &policy.id);
            let mut out = WindowSums {
                events: zero(),
                exposure: zero(),
                inexact: Vec::new(),
                with_events: Vec::new(),
            };
            for (i, name) in scoped_nodes(facts, &exempt) {
                let (k, n) = (
                    facts.delta(&policy.events, i, w),
                    facts.delta(&policy.exposure, i, w),
                );
                if k.exact().is_none() || n.exact().is_none() {
                    out.inexact.push(name.clone());
                }
                if k.lo > 0 {
                    out.with_events.push(name.clone());
                }
                out.events = out.events.plus(k);
                out.exposure = out.exposure.plus(n);
            }
            out
        })
        .collect();
    let fleet: Vec<Option<(u64, u64)>> = sums
        .iter()
        .map(|s| s.events.exact().zip(s.exposure.exact()))
        .collect();
    let other_verdicts: Vec<Outcome> = windows.iter().map(|w| window_outcome(&w.bars)).collect();
    let explicit: Vec<usize> = (0..n_windows).filter(|&w| obs.windows[w].warmup).collect();
    let has_explicit = !explicit.is_empty();
    let baseline_windows: Vec<usize> = if has_explicit {
        explicit
            .into_iter()
            .filter(|&w| fleet[w].is_some())
            .collect()
    } else {
        (0..n_windows)
            .filter(|&w| other_verdicts[w] == Outcome::Go && fleet[w].is_some())
            .take(policy.warmup_windows as usize)
            .collect()
    };
    let learned = !baseline_windows.is_empty()
        && (has_explicit || baseline_windows.len() == policy.warmup_windows as usize)
        && baseline_windows.len() >= policy.min_baseline_windows as usize;
    let strict = if learned {
        None
    } else {
        policy.strict_max_per_node
    };
    let (events, exposure) = baseline_windows
        .iter()
        .filter_map(|&w| fleet[w])
        .fold((0u64, 0u64), |(k, n), (a, b)| (k + a, n + b));
    let rate = if exposure == 0 {
        (events == 0).then_some(0.0)
    } else {
        Some(events as f64 / exposure as f64)
    };
    let effective = rate.map(|r| r.max(policy.floor_rate));
    let base = Baseline {
        windows: baseline_windows
            .iter()
            .map(|&w| obs.windows[w].index)
            .collect(),
        events,
        exposure,
        rate,
        floor_rate: policy.floor_rate,
        effective_rate: effective,
        window_events: None,
        window_exposure: None,
        expected: None,
        p_value: None,
        anomalous: None,
        degradation: Vec::new(),
        ceiling_rate: policy.max_window_rate,
        strict_max_per_node: strict,
    };
    let degradation = degradation_signs(facts, windows, &baseline_windows);

    let baseline_ok = learned && rate.is_some_and(|r| r <= policy.max_baseline_rate);
    let mut steps: Vec<Step> = Vec::with_capacity(n_windows);
    for (w, window_fleet) in fleet.iter().enumerate() {
        let mut detail = base.clone();
        detail.degradation = degradation[w].clone();
        if let Some((k, n)) = *window_fleet {
            detail.window_events = Some(k);
            detail.window_exposure = Some(n);
        }
        let mut step = Step {
            outcome: Outcome::Go,
            detail,
            reason: String::new(),
            nodes: BTreeSet::new(),
        };
        if obs.windows[w].warmup {
            step.reason = if baseline_windows.contains(&w) {
                "warm-up window (learns the baseline, not judged by it)".to_string()
            } else {
                "warm-up window (not judged; no exact counts to learn from)".to_string()
            };
            steps.push(step);
            continue;
        }
        if let Some(max) = strict {
            strict_count(facts, policy, w, max, &mut step);
        } else if baseline_windows.contains(&w) {
            step.reason = if baseline_ok {
                "baseline window (learns the rate, not judged by it)".to_string()
            } else {
                "baseline window".to_string()
            };
        } else {
            match (effective, learned, *window_fleet) {
                (Some(eff), true, Some((k, n))) => {
                    let expected = eff * n as f64;
                    let p = poisson_upper_tail(k, expected);
                    let anomalous = (n == 0 && k > 0)
                        || (k >= policy.min_events
                            && k as f64 >= policy.min_ratio * expected
                            && p < policy.alpha);
                    step.detail.expected = Some(expected);
                    step.detail.p_value = Some(p);
                    step.detail.anomalous = Some(anomalous);
                    step.reason = format!(
                        "{k} events over {n} exposure; expected {} at rate {}; P(X ≥ {k}) = {}",
                        fmt_num(expected),
                        fmt_num(eff),
                        fmt_num(p)
                    );
                }
                (Some(_), true, None) => {
                    step.outcome = Outcome::Unknown;
                    step.reason =
                        "fleet events or exposure not known exactly (evidence gap)".into();
                    step.nodes.extend(sums[w].inexact.iter().cloned());
                }
                _ => {
                    step.outcome = Outcome::Unknown;
                    step.reason = "no baseline learned".into();
                }
            }
        }
        steps.push(step);
    }
    resolve_anomalies(policy, &mut steps);
    // The ceiling, last: it holds whatever the baseline says.
    if let Some(ceiling) = policy.max_window_rate {
        for (w, step) in steps.iter_mut().enumerate() {
            if obs.windows[w].warmup {
                continue;
            }
            apply_ceiling(ceiling, &sums[w], step);
        }
    }

    let threshold = window_threshold(policy, strict);
    let mut worst = Outcome::Go;
    let mut anomalies = 0;
    let mut blamed: BTreeSet<String> = BTreeSet::new();
    for (w, step) in steps.into_iter().enumerate() {
        worst = worst.worst(step.outcome);
        if step.outcome != Outcome::Go {
            blamed.extend(step.nodes.iter().cloned());
        }
        anomalies += usize::from(step.detail.anomalous == Some(true));
        let value = match (step.detail.window_events, step.detail.window_exposure) {
            (Some(k), Some(n)) if n > 0 => Some(k as f64 / n as f64),
            (Some(0), Some(_)) => Some(0.0),
            _ => None,
        };
        let (exemptions, _) = exemptions_for(&obs.windows[w], &policy.id);
        windows[w].bars.push(BarResult {
            bar: policy.id.clone(),
            title: policy.title.clone(),
            verdict: step.outcome,
            statistic: format!("fleet {} / {}", policy.events, policy.exposure),
            value,
            threshold: threshold.clone(),
            window: Some(obs.windows[w].index),
            nodes: if step.outcome == Outcome::Go {
                Vec::new()
            } else {
                step.nodes.into_iter().collect()
            },
            baseline: Some(step.detail),
            exemptions,
            reason: step.reason,
            not_applicable: false,
            cause: None,
        });
    }
    let (verdict, reason) = match (strict, rate) {
        (Some(max), _) => (
            worst,
            format!(
                "baseline from {} (fewer than {}): every judged window held to ≤ {max} {} per \
                 node",
                plural(baseline_windows.len(), "window"),
                policy.min_baseline_windows,
                policy.events
            ),
        ),
        _ if !learned => (
            worst.worst(Outcome::Unknown),
            format!(
                "no baseline: needs {} windows passing every other bar with exact evidence \
                 (or at least {} explicit warm-up windows)",
                policy.warmup_windows.max(policy.min_baseline_windows),
                policy.min_baseline_windows
            ),
        ),
        (None, None) => (
            Outcome::NoGo,
            format!("{events} events with zero exposure in the baseline windows"),
        ),
        (None, Some(r)) if r > policy.max_baseline_rate => (
            Outcome::NoGo,
            format!(
                "learned baseline rate {} exceeds the ceiling {}",
                fmt_num(r),
                fmt_num(policy.max_baseline_rate)
            ),
        ),
        (None, Some(r)) => (
            worst,
            format!(
                "baseline {} from windows {:?}; {anomalies} anomalous windows",
                fmt_num(r),
                base.windows
            ),
        ),
    };
    BarResult {
        bar: policy.id.clone(),
        title: policy.title.clone(),
        verdict,
        statistic: format!(
            "fleet {} / {} against the learned baseline",
            policy.events, policy.exposure
        ),
        value: rate,
        threshold: format!(
            "baseline <= {}; {threshold}",
            fmt_num(policy.max_baseline_rate)
        ),
        window: None,
        nodes: if verdict == Outcome::Go {
            Vec::new()
        } else {
            blamed.into_iter().collect()
        },
        baseline: Some(base),
        exemptions: Vec::new(),
        reason,
        not_applicable: false,
        cause: None,
    }
}

fn window_threshold(policy: &AdaptivePolicy, strict: Option<u64>) -> String {
    let test = match strict {
        Some(max) => format!("<= {max} per node (baseline too short for the adaptive test)"),
        None => format!(
            "Poisson tail < {} with ≥ {} events and ≥ {}× expected; fail on {} in a row or with \
             degradation",
            fmt_num(policy.alpha),
            policy.min_events,
            fmt_num(policy.min_ratio),
            policy.consecutive
        ),
    };
    match policy.max_window_rate {
        Some(c) => format!("fleet rate <= {} per window; {test}", fmt_num(c)),
        None => test,
    }
}

/// The strict per-node count bar of a short baseline.
fn strict_count(facts: &Facts<'_>, policy: &AdaptivePolicy, w: usize, max: u64, step: &mut Step) {
    let (_, exempt) = exemptions_for(&facts.obs.windows[w], &policy.id);
    let (mut over, mut unknown) = (Vec::new(), Vec::new());
    let mut outcome = Outcome::Go;
    let mut judged = 0;
    for (n, name) in scoped_nodes(facts, &exempt) {
        judged += 1;
        let d = facts.delta(&policy.events, n, w);
        let o = interval_outcome(d.lo as f64, d.hi.map(|h| h as f64), max as f64);
        outcome = outcome.worst(o);
        match o {
            Outcome::NoGo => {
                over.push(format!("{name} +{}", d.lo));
                step.nodes.insert(name.clone());
            }
            Outcome::Unknown => {
                unknown.push(format!("{name} ({})", why_unknown(&d)));
                step.nodes.insert(name.clone());
            }
            Outcome::Go => {}
        }
    }
    if judged == 0 {
        outcome = Outcome::Unknown;
    }
    step.outcome = outcome;
    step.reason = match outcome {
        Outcome::Go => format!(
            "strict count (short baseline): every node ≤ {max} {}",
            policy.events
        ),
        Outcome::NoGo => format!(
            "strict count (short baseline), over {max}: {}",
            list(&over, 8)
        ),
        Outcome::Unknown if judged == 0 => "no node to judge (none, or all exempt)".into(),
        Outcome::Unknown => format!(
            "strict count (short baseline), not decidable: {}",
            list(&unknown, 8)
        ),
    };
}

/// Consecutive anomalies and anomalies coupled with degradation fail; isolated ones are
/// tolerated (and say so).
fn resolve_anomalies(policy: &AdaptivePolicy, steps: &mut [Step]) {
    let anomalous: Vec<bool> = steps
        .iter()
        .map(|s| s.detail.anomalous == Some(true))
        .collect();
    let mut w = 0;
    while w < steps.len() {
        if !anomalous[w] {
            w += 1;
            continue;
        }
        let mut end = w;
        while end + 1 < steps.len() && anomalous[end + 1] {
            end += 1;
        }
        let run = end - w + 1;
        for step in steps.iter_mut().take(end + 1).skip(w) {
            if run >= policy.consecutive as usize {
                step.outcome = Outcome::NoGo;
                step.reason = format!(
                    "anomalous, {run} in a row (limit {}): {}",
                    policy.consecutive, step.reason
                );
            } else if !step.detail.degradation.is_empty() {
                step.outcome = Outcome::NoGo;
                step.reason = format!(
                    "anomalous with degradation ({}): {}",
                    step.detail.degradation.join(", "),
                    step.reason
                );
            } else {
                step.reason = format!(
                    "anomalous but isolated and without degradation (tolerated): {}",
                    step.reason
                );
            }
        }
        w = end + 1;
    }
}

/// The per-window fleet ceiling, judged on interval bounds like every other ratio.
fn apply_ceiling(ceiling: f64, sums: &WindowSums, step: &mut Step) {
    let (lo, hi) = ratio_bounds(&sums.events, &sums.exposure);
    let outcome = interval_outcome(lo, hi, ceiling);
    let text = if lo.is_infinite() {
        format!("{} events with no exposure", sums.events.lo)
    } else {
        format!("fleet rate {}", fmt_num(lo))
    };
    match outcome {
        Outcome::NoGo => {
            step.outcome = Outcome::NoGo;
            step.reason = format!(
                "{text} above the per-window ceiling {}; {}",
                fmt_num(ceiling),
                step.reason
            );
            step.nodes.extend(sums.with_events.iter().cloned());
        }
        Outcome::Unknown => {
            step.outcome = step.outcome.worst(Outcome::Unknown);
            step.reason = format!(
                "per-window ceiling {} not decidable ({text}, evidence gap); {}",
                fmt_num(ceiling),
                step.reason
            );
            step.nodes.extend(sums.inexact.iter().cloned());
        }
        Outcome::Go => {}
    }
}

/// Signs of real degradation per window: Phase A misses, recv-pump drops, fanout misses, a
/// growing queue, a rising suppression ratio.
fn degradation_signs(
    facts: &Facts<'_>,
    windows: &[WindowVerdict],
    baseline_windows: &[usize],
) -> Vec<Vec<String>> {
    let obs = facts.obs;
    let n_windows = obs.windows.len();
    let depth = |w: usize| -> Option<f64> {
        let mut max: Option<f64> = None;
        for n in 0..facts.nodes.len() {
            for gauge in [names::OUTBOUND_QUEUE_MAX_DEPTH, names::RECV_PUMP_DEPTH] {
                if let Some(v) = facts.value(&ValueKey::Gauge(gauge.into()), n, w).last {
                    max = Some(max.map_or(v, |m| m.max(v)));
                }
            }
        }
        max
    };
    let suppression = |w: usize| -> Option<f64> {
        let (mut s, mut k, mut any) = (0.0, 0.0, false);
        for n in 0..facts.nodes.len() {
            let a = facts.value(&ValueKey::Gauge(names::SUPPRESSED_TOPIC_PEERS.into()), n, w);
            let b = facts.value(&ValueKey::Gauge(names::KNOWN_TOPIC_PEERS.into()), n, w);
            if let (Some(x), Some(y)) = (a.last, b.last) {
                s += x;
                k += y;
                any = true;
            }
        }
        any.then(|| ratio(s, k))
    };
    let depths: Vec<Option<f64>> = (0..n_windows).map(depth).collect();
    let suppressions: Vec<Option<f64>> = (0..n_windows).map(suppression).collect();
    let baseline_max = |series: &[Option<f64>]| {
        baseline_windows
            .iter()
            .filter_map(|&w| series[w])
            .fold(0.0f64, f64::max)
    };
    let (depth_base, supp_base) = (baseline_max(&depths), baseline_max(&suppressions));
    let rising = |series: &[Option<f64>], base: f64, w: usize| match (
        series[w],
        w.checked_sub(1).and_then(|p| series[p]),
    ) {
        (Some(now), Some(before)) => now > before && now > base,
        _ => false,
    };
    (0..n_windows)
        .map(|w| {
            let mut signs = Vec::new();
            if windows[w].phase_a.as_ref().is_some_and(|p| p.failed > 0) {
                signs.push("Phase A delivery misses".to_string());
            }
            let drops: u64 = (0..facts.nodes.len())
                .map(|n| facts.delta(names::RECV_PUMP_DROPPED_FULL, n, w).lo)
                .sum();
            if drops > 0 {
                signs.push(format!("{drops} recv-pump drops"));
            }
            if obs.windows[w].fanout.as_ref().is_some_and(|f| {
                f.subscribers
                    .iter()
                    .any(|s| s.error.is_none() && s.received < s.expected)
            }) {
                signs.push("fanout delivery misses".to_string());
            }
            if rising(&depths, depth_base, w) {
                signs.push("queue depth growing".to_string());
            }
            if rising(&suppressions, supp_base, w) {
                signs.push("suppression ratio rising".to_string());
            }
            signs
        })
        .collect()
}
