//! Resource stability (leaks): per node, one gauge (resident memory, open descriptors) over the
//! judged windows, its trend a robust slope — Theil–Sen, the median of the pairwise slopes
//! between samples of the same process epoch (a restart starts a new epoch, never a step).
//!
//! A node leaks when the fitted rise over its observed span is beyond noise (more than the
//! profile's `noise_floor` and more than `noise_sigmas` robust standard deviations of the
//! samples around the fitted line) **and** the slope exceeds the profile's limit. Below the
//! bar's minimum judged span the bar is *not applicable* (reported, UNKNOWN, left out of the
//! soak verdict: never a pass); a node without enough process metrics on a long enough run is
//! UNKNOWN.

use super::*;
use crate::display::human_gauge;
use crate::profile::ResourceBar;

/// Most points per node fed to Theil–Sen (quadratic in the points); longer series are thinned
/// to medians of consecutive chunks, which keeps the estimator robust.
const MAX_POINTS: usize = 240;

const HOUR_MS: f64 = 3_600_000.0;

/// One node's trend.
#[derive(Debug, Clone, Copy)]
pub(super) struct Trend {
    /// Units per hour.
    pub(super) slope_per_hour: f64,
    /// Median level.
    pub(super) level: f64,
    /// Observed span, ms (sum over epochs).
    pub(super) span_ms: u64,
    /// Fitted rise over the span, units.
    pub(super) rise: f64,
    /// Noise the rise must beat, units.
    pub(super) noise: f64,
}

/// The median, by selection (linear time; the slice is reordered).
fn median(values: &mut [f64]) -> Option<f64> {
    if values.is_empty() {
        return None;
    }
    let mid = values.len() / 2;
    let odd = values.len() % 2 == 1;
    let (below, upper, _) = values.select_nth_unstable_by(mid, f64::total_cmp);
    let upper = *upper;
    Some(if odd {
        upper
    } else {
        // The largest of the lower half is the other middle value.
        let lower = below.iter().copied().fold(f64::NEG_INFINITY, f64::max);
        (lower + upper) / 2.0
    })
}

/// Thins one epoch's points to at most `max` by the median time and median value of
/// consecutive chunks.
fn thin(points: &[(u64, f64)], max: usize) -> Vec<(f64, f64)> {
    let max = max.max(2);
    if points.len() <= max {
        return points.iter().map(|&(t, v)| (t as f64, v)).collect();
    }
    let chunk = points.len().div_ceil(max);
    points
        .chunks(chunk)
        .filter_map(|c| {
            let mut ts: Vec<f64> = c.iter().map(|p| p.0 as f64).collect();
            let mut vs: Vec<f64> = c.iter().map(|p| p.1).collect();
            Some((median(&mut ts)?, median(&mut vs)?))
        })
        .collect()
}

/// Theil–Sen over epochs: `epochs` holds each epoch's `(time ms, value)` points in time order.
/// `None` when no epoch has two points at distinct times.
pub(super) fn trend(epochs: &[Vec<(u64, f64)>], noise_floor: f64, sigmas: f64) -> Option<Trend> {
    let total: usize = epochs.iter().map(Vec::len).sum();
    let thinned: Vec<Vec<(f64, f64)>> = epochs
        .iter()
        .map(|e| thin(e, (MAX_POINTS * e.len()).div_ceil(total.max(1))))
        .collect();
    let mut slopes = Vec::new();
    for points in &thinned {
        for (i, a) in points.iter().enumerate() {
            for b in &points[i + 1..] {
                if b.0 > a.0 {
                    slopes.push((b.1 - a.1) / (b.0 - a.0));
                }
            }
        }
    }
    let slope = median(&mut slopes)?;
    // Residuals around the fitted line, one intercept per epoch (robust: the median).
    let mut residuals = Vec::new();
    for points in &thinned {
        let mut offsets: Vec<f64> = points.iter().map(|p| p.1 - slope * p.0).collect();
        let Some(intercept) = median(&mut offsets) else {
            continue;
        };
        residuals.extend(points.iter().map(|p| p.1 - (slope * p.0 + intercept)));
    }
    let mut spread: Vec<f64> = {
        let centre = median(&mut residuals.clone()).unwrap_or(0.0);
        residuals.iter().map(|r| (r - centre).abs()).collect()
    };
    // 1.4826 × MAD estimates the standard deviation of normal noise.
    let sigma = 1.4826 * median(&mut spread).unwrap_or(0.0);
    let span_ms: u64 = epochs
        .iter()
        .filter(|e| e.len() > 1)
        .map(|e| e[e.len() - 1].0 - e[0].0)
        .sum();
    let mut values: Vec<f64> = epochs.iter().flatten().map(|p| p.1).collect();
    let level = median(&mut values).unwrap_or(0.0);
    Some(Trend {
        slope_per_hour: slope * HOUR_MS,
        level,
        span_ms,
        rise: slope * span_ms as f64,
        noise: noise_floor.max(sigmas * sigma),
    })
}

/// The judged span: every judged window `(start, end]`, and its total length.
fn judged_spans(facts: &Facts<'_>) -> (Vec<(u64, u64)>, u64) {
    let mut spans: Vec<(u64, u64)> = (0..facts.obs.windows.len())
        .filter(|&w| facts.judged(w))
        .map(|w| (facts.obs.windows[w].start_ms, facts.obs.windows[w].end_ms))
        .collect();
    spans.sort_unstable();
    let total = spans.iter().map(|(s, e)| e.saturating_sub(*s)).sum();
    (spans, total)
}

/// A gauge's samples of node `n` inside the judged spans, grouped by process epoch (a new
/// epoch at every instance change, in time order).
fn epochs(facts: &Facts<'_>, n: usize, gauge: &str, spans: &[(u64, u64)]) -> Vec<Vec<(u64, f64)>> {
    let mut out: Vec<Vec<(u64, f64)>> = Vec::new();
    let mut current: Option<u32> = None;
    let points = facts
        .gauge_points
        .get(gauge)
        .and_then(|per_node| per_node.get(n))
        .map_or(&[][..], Vec::as_slice);
    for &(at, instance, value) in points {
        // Closed spans (sorted by start): the sample at a judged window's start belongs to the
        // trend.
        let i = spans.partition_point(|&(s, _)| s <= at);
        let inside = spans[..i]
            .iter()
            .rev()
            .take(2)
            .any(|&(s, e)| at >= s && at <= e);
        if !inside {
            continue;
        }
        if current != Some(instance) || out.is_empty() {
            out.push(Vec::new());
            current = Some(instance);
        }
        if let Some(epoch) = out.last_mut() {
            epoch.push((at, value));
        }
    }
    out
}

fn describe(bar: &ResourceBar, t: &Trend) -> String {
    let g = |v: f64| signed(&bar.gauge, v);
    match bar.max_growth_per_hour {
        Some(_) if t.level > 0.0 => format!(
            "{}/h ({} per hour, {} over {})",
            human_percent(t.slope_per_hour / t.level),
            g(t.slope_per_hour),
            g(t.rise),
            human_duration(t.span_ms)
        ),
        _ => format!(
            "{} per hour ({} over {})",
            g(t.slope_per_hour),
            g(t.rise),
            human_duration(t.span_ms)
        ),
    }
}

fn signed(gauge: &str, v: f64) -> String {
    if v > 0.0 {
        format!("+{}", human_gauge(gauge, v))
    } else {
        human_gauge(gauge, v)
    }
}

/// Whether a trend breaks the bar's limits (before the noise test).
fn over_limit(bar: &ResourceBar, t: &Trend) -> bool {
    let relative = bar.max_growth_per_hour.is_some_and(|max| {
        let growth = if t.level > 0.0 {
            t.slope_per_hour / t.level
        } else {
            f64::INFINITY
        };
        t.slope_per_hour > 0.0 && growth > max
    });
    let absolute = bar
        .max_rise_per_hour
        .is_some_and(|max| t.slope_per_hour > 0.0 && t.slope_per_hour > max);
    relative || absolute
}

/// The statistic a bar reports as its value: relative growth per hour, or units per hour.
fn value_of(bar: &ResourceBar, t: &Trend) -> f64 {
    match bar.max_growth_per_hour {
        Some(_) if t.level > 0.0 => t.slope_per_hour / t.level,
        _ => t.slope_per_hour,
    }
}

/// Judges every resource bar of the profile at soak level.
pub(super) fn resource_bars(facts: &Facts<'_>, profile: &Profile) -> Vec<BarResult> {
    let (spans, judged_ms) = judged_spans(facts);
    profile
        .resources
        .iter()
        .map(|bar| judge_resource(facts, bar, &spans, judged_ms))
        .collect()
}

fn judge_resource(
    facts: &Facts<'_>,
    bar: &ResourceBar,
    spans: &[(u64, u64)],
    judged_ms: u64,
) -> BarResult {
    let relative = bar.max_growth_per_hour.is_some();
    let statistic = if relative {
        format!(
            "largest per-node growth of {} per hour (Theil–Sen)",
            bar.gauge
        )
    } else {
        format!(
            "largest per-node rise of {} per hour (Theil–Sen)",
            bar.gauge
        )
    };
    let mut limits = Vec::new();
    if let Some(max) = bar.max_growth_per_hour {
        limits.push(format!("<= {}/h", human_percent(max)));
    }
    if let Some(max) = bar.max_rise_per_hour {
        limits.push(format!("<= {} per hour", human_gauge(&bar.gauge, max)));
    }
    let threshold = format!(
        "{} once the rise beats noise (max of {} and {}σ); judged span >= {}",
        limits.join(" and "),
        human_gauge(&bar.gauge, bar.noise_floor),
        fmt_num(bar.noise_sigmas),
        human_duration(bar.min_span_ms)
    );
    let mut result = BarResult {
        bar: bar.id.clone(),
        title: bar.title.clone(),
        verdict: Outcome::Unknown,
        statistic,
        value: None,
        threshold,
        window: None,
        nodes: Vec::new(),
        baseline: None,
        exemptions: Vec::new(),
        reason: String::new(),
        not_applicable: false,
        cause: None,
    };
    if judged_ms < bar.min_span_ms {
        result.not_applicable = true;
        result.reason = format!(
            "not applicable: {} judged, a trend needs at least {}; not a pass — run longer to \
             judge leaks",
            human_duration(judged_ms),
            human_duration(bar.min_span_ms)
        );
        return result;
    }
    let mut verdict = Outcome::Go;
    // The largest trend: its value, node, and what it was (for a GO, why it is no leak).
    type Worst = Option<(f64, String, String)>;
    let (mut leaking, mut unknown, mut worst): (Vec<String>, Vec<String>, Worst) =
        (Vec::new(), Vec::new(), None);
    let (mut blamed, mut leak_nodes) = (BTreeSet::new(), Vec::new());
    for (n, node) in facts.nodes.iter().enumerate() {
        let epochs = epochs(facts, n, &bar.gauge, spans);
        let trend = trend(&epochs, bar.noise_floor, bar.noise_sigmas);
        // The sampling grid may put the first and last samples a little inside the span.
        let needed = bar.min_span_ms.saturating_sub(facts.tolerance_ms);
        let Some(t) = trend.filter(|t| t.span_ms >= needed) else {
            let seen: u64 = trend.map_or(0, |t| t.span_ms);
            unknown.push(if seen == 0 {
                format!("{node} has no `{}` samples", bar.gauge)
            } else {
                format!(
                    "{node} has only {} of `{}` samples",
                    human_duration(seen),
                    bar.gauge
                )
            });
            blamed.insert(node.clone());
            verdict = verdict.worst(Outcome::Unknown);
            continue;
        };
        let value = value_of(bar, &t);
        if worst.as_ref().is_none_or(|(w, _, _)| value > *w) {
            let why = if t.rise > t.noise {
                "within the limit".to_owned()
            } else {
                format!(
                    "{} over {}, within noise {}",
                    signed(&bar.gauge, t.rise),
                    human_duration(t.span_ms),
                    human_gauge(&bar.gauge, t.noise)
                )
            };
            worst = Some((value, node.clone(), why));
        }
        if over_limit(bar, &t) && t.rise > t.noise {
            leaking.push(format!(
                "{node} {} beyond noise {}",
                describe(bar, &t),
                human_gauge(&bar.gauge, t.noise)
            ));
            leak_nodes.push(node.clone());
            verdict = Outcome::NoGo;
        }
    }
    result.value = worst.as_ref().map(|(v, _, _)| *v);
    result.verdict = verdict;
    result.reason = match verdict {
        Outcome::NoGo => format!("leaking: {}", list(&leaking, 6)),
        Outcome::Unknown => format!(
            "missing process metrics over {} judged: {}",
            human_duration(judged_ms),
            list(&unknown, 6)
        ),
        Outcome::Go => match &worst {
            Some((v, node, why)) => format!(
                "no leak over {} judged; largest trend {} ({node}: {why})",
                human_duration(judged_ms),
                if relative {
                    format!("{}/h", human_percent(*v))
                } else {
                    format!("{} per hour", signed(&bar.gauge, *v))
                }
            ),
            None => "no node to judge".into(),
        },
    };
    if facts.nodes.is_empty() {
        result.verdict = Outcome::Unknown;
    }
    result.nodes = match verdict {
        Outcome::NoGo => leak_nodes,
        Outcome::Unknown => blamed.into_iter().collect(),
        Outcome::Go => Vec::new(),
    };
    result
}

#[cfg(test)]
mod tests {
    use super::*;

    fn line(n: u64, step_ms: u64, start: f64, per_ms: f64) -> Vec<(u64, f64)> {
        (0..n)
            .map(|i| (i * step_ms, start + per_ms * (i * step_ms) as f64))
            .collect()
    }

    #[test]
    fn theil_sen_recovers_a_line_despite_outliers() {
        let mut points = line(100, 10_000, 100.0, 1e-4);
        // A few wild outliers (GC spikes) barely move a median slope.
        points[10].1 += 1e6;
        points[50].1 -= 1e6;
        points[90].1 += 5e5;
        let t = trend(&[points], 0.0, 3.0).expect("trend");
        assert!((t.slope_per_hour - 360.0).abs() < 1.0, "{t:?}");
        assert_eq!(t.span_ms, 990_000);
    }

    #[test]
    fn epochs_are_fitted_separately_so_a_restart_is_not_a_drop() {
        // Two epochs at a flat level each; the restart resets the level downward.
        let a: Vec<(u64, f64)> = (0..50).map(|i| (i * 1_000, 500.0)).collect();
        let b: Vec<(u64, f64)> = (60..110).map(|i| (i * 1_000, 100.0)).collect();
        let t = trend(&[a, b], 0.0, 3.0).expect("trend");
        assert_eq!(t.slope_per_hour, 0.0);
    }

    #[test]
    fn long_series_are_thinned_and_stay_robust() {
        let points = line(20_000, 1_000, 50.0, 2e-6);
        let t = trend(&[points], 0.0, 3.0).expect("trend");
        assert!((t.slope_per_hour - 7.2).abs() < 0.01, "{t:?}");
    }

    #[test]
    fn a_single_point_has_no_trend() {
        assert!(trend(&[vec![(5, 1.0)]], 0.0, 3.0).is_none());
        assert!(trend(&[], 0.0, 3.0).is_none());
    }
}
