//! One node's samples as the renderers walk them: in time order, each with its process epoch,
//! and for every good sample the previous attempt it may take a rate against.
//!
//! Rates are per process epoch: a step yields a rate only between two consecutive sampling
//! attempts that both succeeded, answered with the same instance id, lie at most
//! [`GAP_FACTOR`] × the sample interval apart and did not see the counter decrease. Nothing is
//! ever computed across a restart, a failed attempt or a long silence.

use soak_gates::model::{Sample, SampleData, SampleOutcome};
use soak_gates::series::RowPlan;

/// A step between two good samples longer than this many sample intervals is an evidence gap
/// (the built-in gate profiles' `gap_factor`; fixed here so renderings never depend on a gate).
pub const GAP_FACTOR: f64 = 2.5;

/// Longest step a rate may span, ms (`u64::MAX` when the interval is unknown).
pub(crate) fn max_step_ms(sample_interval_ms: u64) -> u64 {
    if sample_interval_ms == 0 {
        u64::MAX
    } else {
        (sample_interval_ms as f64 * GAP_FACTOR).ceil() as u64
    }
}

/// One sampling attempt in time order.
#[derive(Debug, Clone, Copy)]
pub(crate) struct Point<'a> {
    /// When, unix ms.
    pub at: u64,
    /// The data, `None` for a failed attempt.
    pub data: Option<&'a SampleData>,
    /// Process epoch: 0 for the first instance id seen, +1 at every change of instance id.
    pub epoch: u32,
    /// The previous attempt when a rate may be taken against it (see the module docs).
    pub prev: Option<(u64, &'a SampleData)>,
}

impl Point<'_> {
    /// Per-second increase of `counter` since [`Point::prev`], when defined.
    pub fn rate(&self, counter: &str) -> Option<f64> {
        let (prev_at, prev) = self.prev?;
        let now = *self.data?.counters.get(counter)?;
        let before = *prev.counters.get(counter)?;
        if now < before || self.at <= prev_at {
            return None;
        }
        Some((now - before) as f64 * 1000.0 / (self.at - prev_at) as f64)
    }
}

/// Per-second increase between attempt `i - 1` and `i` of a counter column (one entry per
/// attempt, as from [`columns`]), under the same rules as [`Point::rate`].
pub(crate) fn rate_at(points: &[Point<'_>], column: &[Option<u64>], i: usize) -> Option<f64> {
    let (prev_at, _) = points.get(i)?.prev?;
    let now = (*column.get(i)?)?;
    let before = (*column.get(i.checked_sub(1)?)?)?;
    let at = points[i].at;
    if now < before || at <= prev_at {
        return None;
    }
    Some((now - before) as f64 * 1000.0 / (at - prev_at) as f64)
}

/// The values of sorted, distinct `counters` and `gauges` at every attempt (`None` for a
/// failed attempt or a metric the sample lacks), read by a [`RowPlan`] per list instead of one
/// map lookup per metric.
pub(crate) type AttemptColumns = (Vec<Vec<Option<u64>>>, Vec<Vec<Option<f64>>>);

/// See [`AttemptColumns`].
pub(crate) fn columns(points: &[Point<'_>], counters: &[&str], gauges: &[&str]) -> AttemptColumns {
    let mut cc = vec![Vec::with_capacity(points.len()); counters.len()];
    let mut gc = vec![Vec::with_capacity(points.len()); gauges.len()];
    let (mut counter_plan, mut gauge_plan) = (RowPlan::default(), RowPlan::default());
    for p in points {
        match p.data {
            None => {
                cc.iter_mut().for_each(|c| c.push(None));
                gc.iter_mut().for_each(|c| c.push(None));
            }
            Some(data) => {
                counter_plan.push_row(&data.counters, counters, &mut cc);
                gauge_plan.push_row(&data.gauges, gauges, &mut gc);
            }
        }
    }
    (cc, gc)
}

/// A restart or an evidence gap, as a span to shade.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct Span {
    /// Start, unix ms.
    pub from: u64,
    /// End, unix ms.
    pub to: u64,
}

/// A node's attempts in time order (stable; exact duplicates dropped, as the gates do).
pub(crate) fn points(samples: &[Sample], sample_interval_ms: u64) -> Vec<Point<'_>> {
    let mut ordered: Vec<&Sample> = samples.iter().collect();
    ordered.sort_by_key(|s| s.at_ms);
    ordered.dedup_by(|later, earlier| later.at_ms == earlier.at_ms && later == earlier);
    let max_step = max_step_ms(sample_interval_ms);
    let mut out: Vec<Point<'_>> = Vec::with_capacity(ordered.len());
    let mut epoch = 0u32;
    let mut last_instance: Option<&str> = None;
    let mut previous: Option<(u64, Option<&SampleData>)> = None;
    for sample in ordered {
        let data = match &sample.outcome {
            SampleOutcome::Ok(data) => Some(data),
            SampleOutcome::Missing { .. } => None,
        };
        if let Some(data) = data {
            if last_instance.is_some_and(|id| id != data.instance_id) {
                epoch += 1;
            }
            last_instance = Some(data.instance_id.as_str());
        }
        let prev = match (previous, data) {
            (Some((at, Some(before))), Some(now))
                if before.instance_id == now.instance_id
                    && sample.at_ms > at
                    && sample.at_ms - at <= max_step =>
            {
                Some((at, before))
            }
            _ => None,
        };
        out.push(Point {
            at: sample.at_ms,
            data,
            epoch,
            prev,
        });
        previous = Some((sample.at_ms, data));
    }
    out
}

/// Restarts: from the last good sample of one instance to the first good sample of the next.
pub(crate) fn restarts(points: &[Point<'_>]) -> Vec<Span> {
    let good: Vec<&Point<'_>> = points.iter().filter(|p| p.data.is_some()).collect();
    good.windows(2)
        .filter(|w| w[0].epoch != w[1].epoch)
        .map(|w| Span {
            from: w[0].at,
            to: w[1].at,
        })
        .collect()
}

/// Evidence gaps: runs of failed attempts (from the last good sample before them, or their
/// first attempt, to the first good sample after them, or their last attempt), and steps
/// between good samples longer than [`GAP_FACTOR`] intervals.
pub(crate) fn gaps(points: &[Point<'_>], sample_interval_ms: u64) -> Vec<Span> {
    let max_step = max_step_ms(sample_interval_ms);
    let mut out = Vec::new();
    let mut last_good: Option<u64> = None;
    let mut run: Option<(u64, u64)> = None;
    for p in points {
        match p.data {
            None => {
                run = Some(match run {
                    Some((from, _)) => (from, p.at),
                    None => (last_good.unwrap_or(p.at), p.at),
                });
            }
            Some(_) => {
                if let Some((from, _)) = run.take() {
                    out.push(Span { from, to: p.at });
                } else if let Some(before) = last_good
                    && p.at.saturating_sub(before) > max_step
                {
                    out.push(Span {
                        from: before,
                        to: p.at,
                    });
                }
                last_good = Some(p.at);
            }
        }
    }
    if let Some((from, to)) = run {
        out.push(Span { from, to });
    }
    out
}

#[cfg(test)]
mod tests {
    use std::collections::BTreeMap;

    use super::*;

    fn good(at_ms: u64, instance: &str, completed: u64) -> Sample {
        Sample {
            at_ms,
            outcome: SampleOutcome::Ok(SampleData {
                instance_id: instance.into(),
                counters: BTreeMap::from([("dispatcher_completed_total".to_string(), completed)])
                    .into(),
                gauges: Default::default(),
                by_peer: BTreeMap::new(),
            }),
        }
    }

    fn missing(at_ms: u64) -> Sample {
        Sample {
            at_ms,
            outcome: SampleOutcome::Missing {
                error: "connection refused".into(),
            },
        }
    }

    const C: &str = "dispatcher_completed_total";

    #[test]
    fn rates_are_per_epoch_and_never_cross_a_restart_a_gap_or_a_long_silence() {
        let samples = vec![
            good(1_000, "a", 100),
            good(2_000, "a", 150), // +50 in 1 s
            missing(3_000),
            good(4_000, "a", 250), // after a failed attempt: no rate
            good(5_000, "b", 10),  // restart: no rate, new epoch
            good(6_000, "b", 30),  // +20 in 1 s
            good(9_000, "b", 60),  // 3 s > 2.5 intervals: no rate
            good(10_000, "b", 50), // decrease within an instance: no rate
        ];
        let points = points(&samples, 1_000);
        let rates: Vec<Option<f64>> = points.iter().map(|p| p.rate(C)).collect();
        assert_eq!(
            rates,
            vec![None, Some(50.0), None, None, None, Some(20.0), None, None]
        );
        let epochs: Vec<u32> = points.iter().map(|p| p.epoch).collect();
        assert_eq!(epochs, vec![0, 0, 0, 0, 1, 1, 1, 1]);
        assert_eq!(
            restarts(&points),
            vec![Span {
                from: 4_000,
                to: 5_000
            }]
        );
        assert_eq!(
            gaps(&points, 1_000),
            vec![
                Span {
                    from: 2_000,
                    to: 4_000
                },
                Span {
                    from: 6_000,
                    to: 9_000
                }
            ]
        );
    }

    #[test]
    fn column_rates_agree_with_point_rates() {
        let samples = vec![
            good(1_000, "a", 100),
            good(2_000, "a", 150),
            missing(3_000),
            good(4_000, "a", 250),
            good(5_000, "b", 10),
            good(6_000, "b", 30),
        ];
        let points = points(&samples, 1_000);
        let (cc, gc) = columns(&points, &[C, "zzz_absent"], &["g"]);
        assert_eq!(cc[0][2], None);
        assert!(cc[1].iter().all(Option::is_none) && gc[0].iter().all(Option::is_none));
        for i in 0..points.len() {
            assert_eq!(
                rate_at(&points, &cc[0], i),
                points[i].rate(C),
                "attempt {i}"
            );
        }
    }

    #[test]
    fn out_of_order_and_duplicate_samples_are_ordered_and_dropped() {
        let samples = vec![
            good(2_000, "a", 20),
            good(1_000, "a", 10),
            good(2_000, "a", 20),
        ];
        let points = points(&samples, 1_000);
        assert_eq!(points.len(), 2);
        assert_eq!(points[1].rate(C), Some(10.0));
    }

    #[test]
    fn a_node_that_never_answered_is_one_gap() {
        let samples = vec![missing(1_000), missing(2_000), missing(3_000)];
        let points = points(&samples, 1_000);
        assert_eq!(
            gaps(&points, 1_000),
            vec![Span {
                from: 1_000,
                to: 3_000
            }]
        );
        assert!(restarts(&points).is_empty());
    }

    proptest::proptest! {
        /// Random streams with failed attempts, restarts, counter resets and reordering: a rate
        /// exists only between two consecutive good attempts of one instance within the step
        /// limit, and it is exactly their increase over their distance.
        #[test]
        fn a_rate_never_spans_a_restart_a_gap_or_a_decrease(
            steps in proptest::collection::vec((0u8..10, 1u64..4_000, 0u64..50), 1..60),
            shuffle in proptest::collection::vec(0usize..60, 0..10),
        ) {
            let mut samples = Vec::new();
            let (mut at, mut instance, mut value) = (1_000u64, 0u32, 0u64);
            for (kind, dt, inc) in &steps {
                at += dt;
                match kind {
                    0 | 1 => samples.push(missing(at)),
                    2 => {
                        instance += 1;
                        value = *inc;
                        samples.push(good(at, &format!("i{instance}"), value));
                    }
                    3 => {
                        value = value.saturating_sub(*inc);
                        samples.push(good(at, &format!("i{instance}"), value));
                    }
                    _ => {
                        value += inc;
                        samples.push(good(at, &format!("i{instance}"), value));
                    }
                }
            }
            for i in shuffle {
                let n = samples.len();
                samples.swap(i % n, (i * 7 + 3) % n);
            }
            let points = points(&samples, 1_000);
            proptest::prop_assert!(points.windows(2).all(|w| w[0].at <= w[1].at));
            for (i, p) in points.iter().enumerate() {
                let Some(rate) = p.rate(C) else { continue };
                proptest::prop_assert!(i > 0);
                let before = &points[i - 1];
                let (Some(now), Some(prev)) = (p.data, before.data) else {
                    return Err(proptest::test_runner::TestCaseError::fail("a rate next to a failed attempt"));
                };
                proptest::prop_assert_eq!(&now.instance_id, &prev.instance_id);
                proptest::prop_assert_eq!(p.epoch, before.epoch);
                let dt = p.at - before.at;
                proptest::prop_assert!(dt > 0 && dt <= 2_500);
                let (a, b) = (prev.counters.get(C).copied().unwrap_or_default(), now.counters.get(C).copied().unwrap_or_default());
                proptest::prop_assert!(b >= a);
                proptest::prop_assert!((rate - (b - a) as f64 * 1000.0 / dt as f64).abs() < 1e-9);
            }
        }
    }
}
