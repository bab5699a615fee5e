//! Soak-level bars: enough windows, fleet coverage, Phase A over the whole soak, and the
//! adaptive dispatcher-timeout policy.

use super::*;

pub(super) fn evidence_bar(facts: &Facts<'_>, profile: &Profile) -> BarResult {
    let windows = facts.obs.windows.len();
    let min = profile.soak.min_windows as usize;
    let (verdict, reason) = if facts.nodes.is_empty() {
        (Outcome::Unknown, "no nodes in the run".to_string())
    } else if windows < min.max(1) {
        (
            Outcome::Unknown,
            format!("{windows} windows judged, at least {} needed", min.max(1)),
        )
    } else {
        (
            Outcome::Go,
            format!("{windows} windows over {} nodes", facts.nodes.len()),
        )
    };
    soak_bar(
        "windows",
        "enough windows judged",
        Judged {
            verdict,
            statistic: "windows judged".into(),
            value: Some(windows as f64),
            threshold: format!(">= {}", min.max(1)),
            nodes: Vec::new(),
            reason,
        },
    )
}

/// Inventory runs only: a verdict on part of the inventory says nothing about the hosts left
/// out, so a partial fleet is UNKNOWN (missing evidence), never GO.
pub(super) fn coverage_bar(observations: &Observations) -> Option<BarResult> {
    let listed = observations.run.inventory_hosts?;
    let reached = observations.run.nodes.len();
    let (verdict, reason) = if reached >= listed {
        (Outcome::Go, format!("all {listed} inventory hosts ran"))
    } else {
        (
            Outcome::Unknown,
            format!(
                "partial fleet: {reached} of {listed} inventory hosts ran; the hosts left out were not judged"
            ),
        )
    };
    Some(soak_bar(
        "coverage",
        "inventory hosts covered",
        Judged {
            verdict,
            statistic: "hosts run / hosts in the inventory".into(),
            value: Some(reached as f64),
            threshold: format!("== {listed}"),
            nodes: Vec::new(),
            reason,
        },
    ))
}

pub(super) fn phase_a_aggregate(profile: &Profile, windows: &[WindowVerdict]) -> BarResult {
    let min = profile.soak.phase_a_min_ratio;
    let (mut pairs, mut delivered, mut missing, mut seen) = (0u64, 0u64, 0u64, 0);
    for summary in windows.iter().filter_map(|w| w.phase_a.as_ref()) {
        seen += 1;
        pairs += summary.pairs;
        delivered += summary.delivered;
        missing += summary.missing;
    }
    let judged = if pairs == 0 {
        Judged {
            verdict: Outcome::Unknown,
            statistic: "Phase A delivered / required, whole soak".into(),
            value: None,
            threshold: format!(">= {}", fmt_num(min)),
            nodes: Vec::new(),
            reason: "no Phase A evidence in the soak".into(),
        }
    } else {
        let lo = delivered as f64 / pairs as f64;
        let hi = (delivered + missing) as f64 / pairs as f64;
        let verdict = if hi < min {
            Outcome::NoGo
        } else if lo >= min {
            Outcome::Go
        } else {
            Outcome::Unknown
        };
        Judged {
            verdict,
            statistic: "Phase A delivered / required, whole soak".into(),
            value: Some(lo),
            threshold: format!(">= {}", fmt_num(min)),
            nodes: Vec::new(),
            reason: format!(
                "{delivered} of {pairs} required pairs delivered over {seen} matrices ({missing} never attempted)"
            ),
        }
    };
    soak_bar(
        "phase_a_aggregate",
        "Phase A delivery over the soak",
        judged,
    )
}

/// The soak-level adaptive policy. Adds one bar per window (baseline windows included, marked
/// as such) and returns the soak-level bar. See `docs/gates.md` for the reasoning.
pub(super) fn adaptive(
    facts: &Facts<'_>,
    policy: &AdaptivePolicy,
    windows: &mut [WindowVerdict],
) -> BarResult {
    let obs = facts.obs;
    let n_windows = obs.windows.len();
    // Fleet events and exposure per window, exact or None.
    let fleet: Vec<Option<(u64, u64)>> = (0..n_windows)
        .map(|w| {
            let (_, exempt) = exemptions_for(&obs.windows[w], &policy.id);
            let zero = Delta {
                lo: 0,
                hi: Some(0),
                restarts: 0,
                integrity: false,
            };
            let (mut k, mut n) = (zero, zero);
            for (i, _) in scoped_nodes(facts, &exempt) {
                k = k.plus(facts.delta(&policy.events, i, w));
                n = n.plus(facts.delta(&policy.exposure, i, w));
            }
            k.exact().zip(n.exact())
        })
        .collect();
    let other_verdicts: Vec<Outcome> = windows.iter().map(|w| window_outcome(&w.bars)).collect();
    let explicit: Vec<usize> = (0..n_windows).filter(|&w| obs.windows[w].warmup).collect();
    let baseline_windows: Vec<usize> = if explicit.is_empty() {
        (0..n_windows)
            .filter(|&w| other_verdicts[w] == Outcome::Go && fleet[w].is_some())
            .take(policy.warmup_windows as usize)
            .collect()
    } else {
        explicit
            .into_iter()
            .filter(|&w| fleet[w].is_some())
            .collect()
    };
    let learned = !baseline_windows.is_empty()
        && (obs.windows.iter().any(|w| w.warmup)
            || baseline_windows.len() == policy.warmup_windows as usize);
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
    };

    // Degradation signals per window.
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
    let degradation = |w: usize| -> Vec<String> {
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
    };

    // Test every window that is not part of the baseline.
    let baseline_ok = learned && rate.is_some_and(|r| r <= policy.max_baseline_rate);
    let mut results: Vec<(Outcome, Baseline, String)> = Vec::with_capacity(n_windows);
    for (w, window_fleet) in fleet.iter().enumerate() {
        let mut detail = base.clone();
        let signs = degradation(w);
        detail.degradation = signs.clone();
        if let Some((k, n)) = *window_fleet {
            detail.window_events = Some(k);
            detail.window_exposure = Some(n);
        }
        if baseline_windows.contains(&w) {
            let reason = if baseline_ok {
                "baseline window (learns the rate, not judged by it)".to_string()
            } else {
                "baseline window".to_string()
            };
            results.push((Outcome::Go, detail, reason));
            continue;
        }
        let (Some(eff), true) = (effective, learned) else {
            results.push((Outcome::Unknown, detail, "no baseline learned".into()));
            continue;
        };
        let Some((k, n)) = *window_fleet else {
            results.push((
                Outcome::Unknown,
                detail,
                "fleet events or exposure not known exactly (evidence gap)".into(),
            ));
            continue;
        };
        let expected = eff * n as f64;
        let p = poisson_upper_tail(k, expected);
        let anomalous = (n == 0 && k > 0)
            || (k >= policy.min_events
                && k as f64 >= policy.min_ratio * expected
                && p < policy.alpha);
        detail.expected = Some(expected);
        detail.p_value = Some(p);
        detail.anomalous = Some(anomalous);
        let reason = format!(
            "{k} events over {n} exposure; expected {} at rate {}; P(X ≥ {k}) = {p:.3e}",
            fmt_num(expected),
            fmt_num(eff)
        );
        results.push((Outcome::Go, detail, reason));
    }
    // Consecutive anomalies and anomalies coupled with degradation fail.
    let anomalous: Vec<bool> = results
        .iter()
        .map(|r| r.1.anomalous == Some(true))
        .collect();
    let mut w = 0;
    while w < n_windows {
        if !anomalous[w] {
            w += 1;
            continue;
        }
        let mut end = w;
        while end + 1 < n_windows && anomalous[end + 1] {
            end += 1;
        }
        let run = end - w + 1;
        for result in results.iter_mut().take(end + 1).skip(w) {
            if run >= policy.consecutive as usize {
                result.0 = Outcome::NoGo;
                result.2 = format!(
                    "anomalous, {run} in a row (limit {}): {}",
                    policy.consecutive, result.2
                );
            } else if !result.1.degradation.is_empty() {
                result.0 = Outcome::NoGo;
                result.2 = format!(
                    "anomalous with degradation ({}): {}",
                    result.1.degradation.join(", "),
                    result.2
                );
            } else {
                result.2 = format!(
                    "anomalous but isolated and without degradation (tolerated): {}",
                    result.2
                );
            }
        }
        w = end + 1;
    }
    let threshold = format!(
        "Poisson tail < {} with ≥ {} events and ≥ {}× expected; fail on {} in a row or with degradation",
        policy.alpha,
        policy.min_events,
        fmt_num(policy.min_ratio),
        policy.consecutive
    );
    let mut worst = Outcome::Go;
    let mut anomalies = 0;
    for (w, (outcome, detail, reason)) in results.into_iter().enumerate() {
        worst = worst.worst(outcome);
        anomalies += usize::from(detail.anomalous == Some(true));
        let value = match (detail.window_events, detail.window_exposure) {
            (Some(k), Some(n)) if n > 0 => Some(k as f64 / n as f64),
            (Some(0), Some(_)) => Some(0.0),
            _ => None,
        };
        let (exemptions, _) = exemptions_for(&obs.windows[w], &policy.id);
        windows[w].bars.push(BarResult {
            bar: policy.id.clone(),
            title: policy.title.clone(),
            verdict: outcome,
            statistic: format!("fleet {} / {}", policy.events, policy.exposure),
            value,
            threshold: threshold.clone(),
            window: Some(obs.windows[w].index),
            nodes: Vec::new(),
            baseline: Some(detail),
            exemptions,
            reason,
        });
    }
    let (verdict, reason) = match rate {
        _ if !learned => (
            Outcome::Unknown,
            format!(
                "no baseline: needs {} windows passing every other bar with exact evidence \
                 (or explicit warm-up windows)",
                policy.warmup_windows
            ),
        ),
        None => (
            Outcome::NoGo,
            format!("{events} events with zero exposure in the baseline windows"),
        ),
        Some(r) if r > policy.max_baseline_rate => (
            Outcome::NoGo,
            format!(
                "learned baseline rate {} exceeds the ceiling {}",
                fmt_num(r),
                fmt_num(policy.max_baseline_rate)
            ),
        ),
        Some(r) => (
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
        nodes: Vec::new(),
        baseline: Some(base),
        exemptions: Vec::new(),
        reason,
    }
}
