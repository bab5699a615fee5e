//! Property tests over random sample streams: gaps, restarts, reordering, duplicates.

use std::collections::BTreeMap;

use proptest::prelude::*;
use soak_gates::model::{
    NodeRef, Observations, RunInfo, Sample, SampleData, SampleOutcome, WindowRecord,
};
use soak_gates::series::NodeSeries;
use soak_gates::{Outcome, Profile, evaluate};

const INTERVAL: u64 = 10_000;
const TOL: u64 = 25_000; // 2.5 × interval
const TICKS_PER_WINDOW: u64 = 6;
const WINDOWS: u64 = 4;
const COUNTER: &str = "recv_pump_dropped_full_total";
const T0: u64 = 1_000_000;

/// One tick of the generated truth.
#[derive(Debug, Clone)]
struct Tick {
    increment: u64,
    restart_before: bool,
    sampled: bool,
    duplicated: bool,
}

fn tick(sampled_prob: f64) -> impl Strategy<Value = Tick> {
    (
        0u64..3,
        prop::bool::weighted(0.1),
        prop::bool::weighted(sampled_prob),
        prop::bool::weighted(0.2),
    )
        .prop_map(|(increment, restart_before, sampled, duplicated)| Tick {
            increment,
            restart_before,
            sampled,
            duplicated,
        })
}

/// Tick `i` happens at `T0 + (i − 1) · INTERVAL`: tick 0 is one interval before window 0.
fn at(i: usize) -> u64 {
    T0 + i as u64 * INTERVAL - INTERVAL
}

fn window_span(w: u64) -> (u64, u64) {
    let start = T0 + w * TICKS_PER_WINDOW * INTERVAL;
    (start, start + TICKS_PER_WINDOW * INTERVAL)
}

/// Turns the truth into a sample stream (shuffled by `order`), and returns per-window truth.
fn build(ticks: &[Tick], order: &[u64]) -> (Vec<Sample>, Vec<u64>) {
    let mut samples = Vec::new();
    let mut value = 0u64;
    let mut instance = 0u32;
    for (i, t) in ticks.iter().enumerate() {
        if t.restart_before && i > 0 {
            instance += 1;
            value = 0;
        }
        value += t.increment;
        let outcome = if t.sampled || i == 0 {
            SampleOutcome::Ok(SampleData {
                by_peer: Default::default(),
                instance_id: format!("inst-{instance}"),
                counters: BTreeMap::from([(
                    COUNTER.to_string(),
                    value + 1_000 * u64::from(instance == 0),
                )])
                .into(),
                gauges: Default::default(),
            })
        } else {
            SampleOutcome::Missing {
                error: "timeout".into(),
            }
        };
        let sample = Sample {
            at_ms: at(i),
            outcome,
        };
        if t.duplicated {
            samples.push(sample.clone());
        }
        samples.push(sample);
    }
    // Shuffle deterministically by the generated keys.
    let mut keyed: Vec<(u64, Sample)> = samples
        .into_iter()
        .enumerate()
        .map(|(i, s)| (order.get(i).copied().unwrap_or(i as u64), s))
        .collect();
    keyed.sort_by_key(|(k, _)| *k);
    let samples = keyed.into_iter().map(|(_, s)| s).collect();
    let truth = (0..WINDOWS)
        .map(|w| {
            let (s, e) = window_span(w);
            ticks
                .iter()
                .enumerate()
                .filter(|(i, _)| at(*i) > s && at(*i) <= e)
                .map(|(_, t)| t.increment)
                .sum()
        })
        .collect();
    (samples, truth)
}

fn observations(samples: Vec<Sample>) -> Observations {
    Observations {
        residue: Vec::new(),
        run: RunInfo {
            run_id: "prop".into(),
            sample_interval_ms: INTERVAL,
            inventory_hosts: None,
            planned_windows: Some(WINDOWS as u32),
            window_ms: Some(TICKS_PER_WINDOW * INTERVAL),
            nodes: vec![NodeRef {
                name: "n".into(),
                peer_id: String::new(),
            }],
        },
        samples: BTreeMap::from([("n".to_string(), samples)]),
        windows: (0..WINDOWS)
            .map(|w| {
                let (start_ms, end_ms) = window_span(w);
                WindowRecord {
                    index: w as u32,
                    start_ms,
                    end_ms,
                    warmup: false,
                    phase_a: None,
                    fanout: None,
                    scenarios: Vec::new(),
                }
            })
            .collect(),
        node_events: Vec::new(),
    }
}

fn profile() -> Profile {
    Profile::from_toml_str(
        r#"
name = "prop"
[[bar]]
id = "telemetry"
kind = "telemetry"
[[bar]]
id = "drops"
kind = "counter"
counter = "recv_pump_dropped_full_total"
scope = "node"
max = 0
"#,
        "prop.toml",
    )
    .expect("valid profile")
}

/// Independent statement of "an unobserved span longer than the tolerance touches the window".
fn has_gap(ticks: &[Tick], w: u64) -> bool {
    let (s, e) = window_span(w);
    let present: Vec<u64> = ticks
        .iter()
        .enumerate()
        .filter(|(i, t)| t.sampled || *i == 0)
        .map(|(i, _)| at(i))
        .collect();
    let mut from = present
        .iter()
        .copied()
        .filter(|&t| t <= s)
        .max()
        .unwrap_or(s);
    for t in present.iter().copied().filter(|&t| t > s && t <= e) {
        if t - from > TOL {
            return true;
        }
        from = t;
    }
    e - from > TOL
}

fn ticks_len() -> usize {
    (WINDOWS * TICKS_PER_WINDOW) as usize + 2
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(256))]

    /// Every sample present (with restarts, duplicates, any order): each window's delta is
    /// exact and equals the true increments, across restarts.
    #[test]
    fn deltas_across_restarts_equal_true_increments(
        ticks in prop::collection::vec(tick(1.0), ticks_len()),
        order in prop::collection::vec(any::<u64>(), 2 * ticks_len()),
    ) {
        let (samples, truth) = build(&ticks, &order);
        let series = NodeSeries::new(&samples);
        let counter = series.counter(COUNTER, TOL);
        for w in 0..WINDOWS {
            let (s, e) = window_span(w);
            let d = counter.window_delta(s, e, TOL);
            prop_assert_eq!(d.exact(), Some(truth[w as usize]), "window {}", w);
        }
        let v = evaluate(&observations(samples), &profile());
        for (w, window_truth) in truth.iter().enumerate() {
            let want = if *window_truth == 0 { Outcome::Go } else { Outcome::NoGo };
            prop_assert_eq!(v.windows[w].verdict, want, "window {}", w);
        }
    }

    /// With samples missing: a window touched by an unobserved span longer than the tolerance is
    /// never GO, and a GO window really had no increments in its observed part.
    #[test]
    fn missing_evidence_never_yields_go(
        ticks in prop::collection::vec(tick(0.7), ticks_len()),
        order in prop::collection::vec(any::<u64>(), 2 * ticks_len()),
    ) {
        let (samples, _) = build(&ticks, &order);
        let v = evaluate(&observations(samples), &profile());
        for w in 0..WINDOWS {
            if has_gap(&ticks, w) {
                prop_assert_ne!(v.windows[w as usize].verdict, Outcome::Go, "window {}", w);
            }
            if v.windows[w as usize].verdict == Outcome::Go {
                let (s, e) = window_span(w);
                let observed: u64 = ticks
                    .iter()
                    .enumerate()
                    .filter(|(i, _)| at(*i) > s && at(*i) + TOL <= e)
                    .map(|(_, t)| t.increment)
                    .sum();
                prop_assert_eq!(observed, 0, "window {} GO with increments", w);
            }
        }
        prop_assert!(v.verdict != Outcome::Go || (0..WINDOWS).all(|w| !has_gap(&ticks, w)));
    }

    /// Gaps at window boundaries: a node whose sample at a window's closing boundary failed
    /// has no closing evidence, and the window — and the bar reading that node — is never GO,
    /// even when the next sample would let the delta be interpolated across the boundary.
    #[test]
    fn no_closing_evidence_never_yields_go(
        ticks in prop::collection::vec(tick(0.8), ticks_len()),
        boundary_ok in prop::collection::vec(prop::bool::weighted(0.5), WINDOWS as usize),
        order in prop::collection::vec(any::<u64>(), 2 * ticks_len()),
    ) {
        // Force the outcome of every closing boundary sample.
        let mut ticks = ticks;
        for (w, ok) in boundary_ok.iter().enumerate() {
            let (_, e) = window_span(w as u64);
            if let Some(i) = (0..ticks.len()).find(|&i| at(i) == e) {
                ticks[i].sampled = *ok;
            }
        }
        let (samples, _) = build(&ticks, &order);
        let v = evaluate(&observations(samples), &profile());
        for (w, ok) in boundary_ok.iter().enumerate() {
            if !ok {
                prop_assert_ne!(v.windows[w].verdict, Outcome::Go, "window {}", w);
                let drops = v.windows[w].bars.iter().find(|b| b.bar == "drops").unwrap();
                prop_assert_ne!(drops.verdict, Outcome::Go, "window {}", w);
                prop_assert!(v.gaps.iter().any(|g| g.window == w as u32), "window {}", w);
            }
        }
        prop_assert!(v.verdict != Outcome::Go || boundary_ok.iter().all(|ok| *ok));
    }

    /// Whatever the stream, the lower bound never exceeds the upper bound, and evaluation is
    /// deterministic.
    #[test]
    fn bounds_are_ordered_and_evaluation_is_deterministic(
        ticks in prop::collection::vec(tick(0.6), ticks_len()),
        order in prop::collection::vec(any::<u64>(), 2 * ticks_len()),
    ) {
        let (samples, _) = build(&ticks, &order);
        let series = NodeSeries::new(&samples);
        let counter = series.counter(COUNTER, TOL);
        for w in 0..WINDOWS {
            let (s, e) = window_span(w);
            let d = counter.window_delta(s, e, TOL);
            prop_assert!(d.hi.is_none_or(|h| h >= d.lo));
        }
        let obs = observations(samples);
        let a = serde_json::to_string(&evaluate(&obs, &profile())).unwrap();
        let b = serde_json::to_string(&evaluate(&obs, &profile())).unwrap();
        prop_assert_eq!(a, b);
    }
}
