//! Continuous sample series: window deltas across gaps and restarts, and evidence coverage.
//!
//! The rules (explained in `docs/gates.md`):
//!
//! * Samples are put in time order and exact duplicates dropped; only `Ok` samples that carry
//!   the metric count as evidence for it.
//! * A window's delta is **post-to-post**: from the last good sample at/before the window start
//!   (`pre`) to the last good sample at/before its end (`post`), summed step by step. A lone
//!   post value is never used as a delta: with no `pre`, the chain starts at the first sample
//!   inside the window, so lifetime counters never inflate a window.
//! * A step to a new instance id is a restart: the new process's counter value (its increments
//!   since start) is the step's increase, so increments before and after a restart both count.
//!   What the old process counted after its last sample is invisible to any sampler: the step
//!   is bridged only when it is within the tolerance and no sampling attempt failed in between;
//!   otherwise its upper bound is unbounded.
//! * A step that decreases within one instance, or returns to an instance seen earlier, is an
//!   integrity error: its increase is unknown.
//! * Deltas are intervals `[lo, hi]` (`hi = None`: unbounded). Attribution to a window is exact
//!   up to the gap tolerance; a longer unobserved span at the window's start lowers `lo` (the
//!   increase may belong to an earlier window) and one at its end raises `hi` (increments may be
//!   hidden in the next step, or unbounded if there is none). An unbridgeable span (no sample at
//!   all, a restart across a long gap, an integrity error) leaves `hi` unbounded.

use std::collections::HashMap;

use crate::model::{MetricNames, Metrics, Sample, SampleData, SampleOutcome};

/// An increase known to lie in `[lo, hi]`; `hi = None` means unbounded (no evidence).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct Delta {
    /// Increase definitely attributable to the window.
    pub lo: u64,
    /// Largest increase the window may have had; `None` = unbounded.
    pub hi: Option<u64>,
    /// Restarts (new instance ids) inside the chain.
    pub restarts: u32,
    /// Whether an integrity error lies inside the chain.
    pub integrity: bool,
}

impl Delta {
    /// The increase when known exactly.
    pub fn exact(&self) -> Option<u64> {
        (self.hi == Some(self.lo)).then_some(self.lo)
    }

    /// Interval sum (for fleet scopes).
    pub fn plus(self, other: Delta) -> Delta {
        Delta {
            lo: self.lo.saturating_add(other.lo),
            hi: self.hi.zip(other.hi).map(|(a, b)| a.saturating_add(b)),
            restarts: self.restarts + other.restarts,
            integrity: self.integrity || other.integrity,
        }
    }
}

/// One good sample as evidence: time, interned instance, data.
#[derive(Debug, Clone, Copy)]
struct Point<'a> {
    at: u64,
    instance: u32,
    data: &'a SampleData,
}

/// One node's samples, sorted and de-duplicated, with instance ids interned.
#[derive(Debug, Clone)]
pub struct NodeSeries<'a> {
    points: Vec<Point<'a>>,
    instances: Vec<&'a str>,
    missing: Vec<u64>,
    missing_errors: Vec<&'a str>,
}

/// What happened between two consecutive points of one metric.
#[derive(Debug, Clone, Copy)]
struct Step {
    lo: u64,
    hi: Option<u64>,
    restart: bool,
    integrity: bool,
}

/// A restart or an integrity error found while stepping through a series.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Event {
    /// A new instance id answered.
    Restart {
        /// Last sample of the old instance.
        last_old_ms: u64,
        /// First sample of the new instance.
        first_new_ms: u64,
        /// Old instance id.
        old: String,
        /// New instance id.
        new: String,
    },
    /// A counter decreased within one instance, or an old instance id came back.
    Integrity {
        /// Counter name (`instance_id` when an old instance came back).
        counter: String,
        /// Instance id of the later sample.
        instance: String,
        /// Earlier sample time.
        from_ms: u64,
        /// Later sample time.
        to_ms: u64,
        /// Earlier value.
        from_value: u64,
        /// Later value.
        to_value: u64,
    },
}

impl<'a> NodeSeries<'a> {
    /// Orders samples by time (stable), drops exact duplicates and interns instance ids.
    pub fn new(samples: &'a [Sample]) -> NodeSeries<'a> {
        let mut ordered: Vec<&'a Sample> = samples.iter().collect();
        ordered.sort_by_key(|s| s.at_ms);
        ordered.dedup_by(|later, earlier| later.at_ms == earlier.at_ms && later == earlier);
        let mut ids: HashMap<&'a str, u32> = HashMap::new();
        let mut instances = Vec::new();
        let mut points = Vec::with_capacity(ordered.len());
        let mut missing = Vec::new();
        let mut missing_errors = Vec::new();
        for sample in ordered {
            match &sample.outcome {
                SampleOutcome::Ok(data) => {
                    let next = instances.len() as u32;
                    let instance = *ids.entry(data.instance_id.as_str()).or_insert_with(|| {
                        instances.push(data.instance_id.as_str());
                        next
                    });
                    points.push(Point {
                        at: sample.at_ms,
                        instance,
                        data,
                    });
                }
                SampleOutcome::Missing { error } => {
                    missing.push(sample.at_ms);
                    missing_errors.push(error.as_str());
                }
            }
        }
        NodeSeries {
            points,
            instances,
            missing,
            missing_errors,
        }
    }

    /// Times of the good samples, in order.
    pub fn good_times(&self) -> Vec<u64> {
        self.points.iter().map(|p| p.at).collect()
    }

    /// Number of failed sampling attempts in `(start, end]`.
    pub fn missing_in(&self, start: u64, end: u64) -> usize {
        let lo = self.missing.partition_point(|&t| t <= start);
        let hi = self.missing.partition_point(|&t| t <= end);
        hi - lo
    }

    /// Failed sampling attempts in `(start, end]`, in time order, folded: consecutive attempts
    /// (no good sample between them) with the same error become one [`FailedRun`].
    pub fn failures_in(&self, start: u64, end: u64) -> Vec<FailedRun<'a>> {
        let lo = self.missing.partition_point(|&t| t <= start);
        let hi = self.missing.partition_point(|&t| t <= end);
        let mut out: Vec<FailedRun<'a>> = Vec::new();
        for i in lo..hi {
            let (at, error) = (self.missing[i], self.missing_errors[i]);
            match out.last_mut() {
                Some(run) if run.error == error && !self.good_between(run.to_ms, at) => {
                    run.to_ms = at;
                    run.attempts += 1;
                }
                _ => out.push(FailedRun {
                    from_ms: at,
                    to_ms: at,
                    attempts: 1,
                    error,
                }),
            }
        }
        out
    }

    /// Whether the node has **closing evidence** for the window `(start, end]`: a good sample
    /// inside the window, and no failed attempt after the last good one up to the end. A node
    /// whose sample at the window's closing boundary failed has none, even when a later good
    /// sample would let a delta be interpolated across the boundary.
    pub fn closing_evidence(&self, start: u64, end: u64) -> bool {
        let after_end = self.points.partition_point(|p| p.at <= end);
        let Some(last) = after_end.checked_sub(1).map(|i| self.points[i].at) else {
            return false;
        };
        last > start && !self.missing_between(last, end.saturating_add(1))
    }

    /// The failed attempt that took away the closing evidence of `(start, end]`, if one did:
    /// the last failed attempt at or before `end` after the last good sample.
    pub fn closing_failure(&self, end: u64) -> Option<(u64, &'a str)> {
        let after_end = self.missing.partition_point(|&t| t <= end);
        let i = after_end.checked_sub(1)?;
        let last_good = self.points.partition_point(|p| p.at <= end);
        let beaten = last_good
            .checked_sub(1)
            .is_some_and(|g| self.points[g].at >= self.missing[i]);
        (!beaten).then(|| (self.missing[i], self.missing_errors[i]))
    }

    /// When the window `(start, end]` has no good sample at or before its start (no `pre`) and
    /// the sampler tried and failed before the first good sample inside it, what happened
    /// between the start and that sample is unobserved: returns that sample's time. (A node
    /// first sampled inside the window without a failed attempt before is not unobserved.)
    pub fn opening_unobserved(&self, start: u64, end: u64) -> Option<u64> {
        if self.last_good_at_or_before(start).is_some() {
            return None;
        }
        let first = self.first_good_at_or_after(start.saturating_add(1))?;
        (first <= end && self.missing.first().is_some_and(|&t| t < first)).then_some(first)
    }

    /// Time of the last good sample at or before `at`.
    pub fn last_good_at_or_before(&self, at: u64) -> Option<u64> {
        let after = self.points.partition_point(|p| p.at <= at);
        after.checked_sub(1).map(|i| self.points[i].at)
    }

    /// Time of the first good sample at or after `at`.
    pub fn first_good_at_or_after(&self, at: u64) -> Option<u64> {
        let from = self.points.partition_point(|p| p.at < at);
        self.points.get(from).map(|p| p.at)
    }

    /// Time of the first good sample after `at` from a process instance other than the one
    /// last seen at or before `at` (any instance when none was seen): when a process that died
    /// at `at` was back.
    pub fn first_new_instance_after(&self, at: u64) -> Option<u64> {
        let from = self.points.partition_point(|p| p.at <= at);
        let before = from.checked_sub(1).map(|i| self.points[i].instance);
        self.points[from..]
            .iter()
            .find(|p| Some(p.instance) != before)
            .map(|p| p.at)
    }

    /// Whether a good sample lies strictly between `a` and `b`.
    fn good_between(&self, a: u64, b: u64) -> bool {
        let from = self.points.partition_point(|p| p.at <= a);
        self.points.get(from).is_some_and(|p| p.at < b)
    }

    /// Good samples of a gauge column (see [`NodeSeries::columns`]) as `(time, instance,
    /// value)`, for trend estimates per process epoch (the instance is an index, equal within
    /// one process); non-finite values are not evidence.
    pub fn points_of(&self, column: &[Option<f64>]) -> Vec<(u64, u32, f64)> {
        self.points
            .iter()
            .zip(column)
            .filter_map(|(p, v)| v.filter(|v| v.is_finite()).map(|v| (p.at, p.instance, v)))
            .collect()
    }

    /// Whether a sampling attempt failed strictly between `a` and `b`.
    fn missing_between(&self, a: u64, b: u64) -> bool {
        let from = self.missing.partition_point(|&t| t <= a);
        self.missing.get(from).is_some_and(|&t| t < b)
    }

    /// Restarts between consecutive good samples (any metric), in time order.
    pub fn restarts(&self) -> Vec<Event> {
        self.points
            .windows(2)
            .filter(|w| w[0].instance != w[1].instance)
            .map(|w| Event::Restart {
                last_old_ms: w[0].at,
                first_new_ms: w[1].at,
                old: self.instances[w[0].instance as usize].to_string(),
                new: self.instances[w[1].instance as usize].to_string(),
            })
            .collect()
    }

    /// The series of one counter: good samples that carry it, with per-step increases.
    pub fn counter(&self, name: &str, tolerance_ms: u64) -> CounterSeries {
        let column: Vec<Option<u64>> = self
            .points
            .iter()
            .map(|p| p.data.counters.get(name).copied())
            .collect();
        self.counter_from_column(name, &column, tolerance_ms)
    }

    /// Reads several counters and gauges of every good sample, column by column. Each
    /// sample's name list is matched against the wanted names once per distinct list (samples
    /// read from a proof share one list per node, see [`crate::model::Metrics`]); after that a
    /// value is one indexed load. `counters` and `gauges` must be sorted and free of
    /// duplicates; the columns come back in the same order, one entry per good sample.
    pub fn columns(&self, counters: &[&str], gauges: &[&str]) -> Columns {
        let mut out = Columns {
            counters: vec![Vec::with_capacity(self.points.len()); counters.len()],
            gauges: vec![Vec::with_capacity(self.points.len()); gauges.len()],
        };
        let mut counter_plan = RowPlan::default();
        let mut gauge_plan = RowPlan::default();
        for p in &self.points {
            counter_plan.push_row(&p.data.counters, counters, &mut out.counters);
            gauge_plan.push_row(&p.data.gauges, gauges, &mut out.gauges);
        }
        out
    }

    /// The series of one counter from a column of [`NodeSeries::columns`].
    pub fn counter_from_column(
        &self,
        name: &str,
        column: &[Option<u64>],
        tolerance_ms: u64,
    ) -> CounterSeries {
        let points: Vec<(u64, u32, u64)> = self
            .points
            .iter()
            .zip(column)
            .filter_map(|(p, v)| v.map(|v| (p.at, p.instance, v)))
            .collect();
        let mut steps = Vec::with_capacity(points.len().saturating_sub(1));
        let mut events = Vec::new();
        let mut seen = vec![false; self.instances.len()];
        if let Some(first) = points.first() {
            seen[first.1 as usize] = true;
        }
        for pair in points.windows(2) {
            let ((a_at, a_inst, a_val), (b_at, b_inst, b_val)) = (pair[0], pair[1]);
            let integrity = |events: &mut Vec<Event>, counter: &str, from: u64, to: u64| {
                events.push(Event::Integrity {
                    counter: counter.to_string(),
                    instance: self.instances[b_inst as usize].to_string(),
                    from_ms: a_at,
                    to_ms: b_at,
                    from_value: from,
                    to_value: to,
                });
                Step {
                    lo: 0,
                    hi: None,
                    restart: false,
                    integrity: true,
                }
            };
            let step = if a_inst == b_inst {
                if b_val >= a_val {
                    Step {
                        lo: b_val - a_val,
                        hi: Some(b_val - a_val),
                        restart: false,
                        integrity: false,
                    }
                } else {
                    integrity(&mut events, name, a_val, b_val)
                }
            } else if seen[b_inst as usize] {
                integrity(&mut events, "instance_id", a_val, b_val)
            } else {
                seen[b_inst as usize] = true;
                Step {
                    lo: b_val,
                    // The old process's last moments are unobserved. Bridged only when the
                    // switch happened within the tolerance with no failed sampling attempt in
                    // between (a failed attempt means the old process may have lived on,
                    // unanswering, and counted things nobody saw).
                    hi: (b_at - a_at <= tolerance_ms && !self.missing_between(a_at, b_at))
                        .then_some(b_val),
                    restart: true,
                    integrity: false,
                }
            };
            steps.push(step);
        }
        CounterSeries {
            times: points.iter().map(|p| p.0).collect(),
            steps,
            events,
        }
    }

    /// The series of a value derived from each good sample (a gauge or a gauge ratio); samples
    /// for which `value` returns `None` are not evidence.
    pub fn values(&self, value: impl Fn(&SampleData) -> Option<f64>) -> ValueSeries {
        let column: Vec<Option<f64>> = self.points.iter().map(|p| value(p.data)).collect();
        self.values_from_column(&column)
    }

    /// The series of a derived value from a column aligned with the good samples (see
    /// [`NodeSeries::columns`]).
    pub fn values_from_column(&self, column: &[Option<f64>]) -> ValueSeries {
        let mut times = Vec::with_capacity(self.points.len());
        let mut values = Vec::with_capacity(self.points.len());
        for (p, v) in self.points.iter().zip(column) {
            if let Some(v) = v {
                times.push(p.at);
                values.push(*v);
            }
        }
        ValueSeries { times, values }
    }
}

/// Consecutive failed sampling attempts of one node with the same error.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct FailedRun<'a> {
    /// First attempt, unix ms.
    pub from_ms: u64,
    /// Last attempt, unix ms.
    pub to_ms: u64,
    /// Attempts folded.
    pub attempts: u32,
    /// The error.
    pub error: &'a str,
}

/// Several metrics of every good sample, column by column (see [`NodeSeries::columns`]).
#[derive(Debug, Clone, Default)]
pub struct Columns {
    /// One column per wanted counter.
    pub counters: Vec<Vec<Option<u64>>>,
    /// One column per wanted gauge.
    pub gauges: Vec<Vec<Option<f64>>>,
}

/// Reads rows of wanted metrics out of samples: where each wanted name sits in a sample's
/// name list is looked up once and remembered for the next sample with the same (shared) list,
/// so a row is one indexed load per wanted name. Public so renderers can read the same columns
/// over other point sets.
#[derive(Debug, Default)]
pub struct RowPlan {
    names: Option<MetricNames>,
    positions: Vec<Option<usize>>,
}

impl RowPlan {
    /// Pushes one row: for every wanted name, the sample's value or `None`. Use one plan per
    /// `wanted` list (the remembered positions belong to it).
    pub fn push_row<V: Copy>(
        &mut self,
        metrics: &Metrics<V>,
        wanted: &[&str],
        columns: &mut [Vec<Option<V>>],
    ) {
        let fresh = match &self.names {
            Some(names) => {
                self.positions.len() != wanted.len()
                    || (!names.same_list(metrics.names()) && names != metrics.names())
            }
            None => true,
        };
        if fresh {
            self.positions = wanted.iter().map(|w| metrics.names().position(w)).collect();
            self.names = Some(metrics.names().clone());
        }
        let values = metrics.values();
        for (position, column) in self.positions.iter().zip(columns.iter_mut()) {
            column.push(position.and_then(|i| values.get(i).copied()));
        }
    }
}

/// One counter's good samples and the increase of every step between them.
#[derive(Debug, Clone)]
pub struct CounterSeries {
    times: Vec<u64>,
    steps: Vec<Step>,
    events: Vec<Event>,
}

impl CounterSeries {
    /// Integrity errors found in this counter.
    pub fn events(&self) -> &[Event] {
        &self.events
    }

    /// The window's increase as an interval (see the module docs).
    pub fn window_delta(&self, start: u64, end: u64, tolerance_ms: u64) -> Delta {
        let unbounded = Delta {
            lo: 0,
            hi: None,
            restarts: 0,
            integrity: false,
        };
        let pre = self.times.partition_point(|&t| t <= start).checked_sub(1);
        let Some(post) = self.times.partition_point(|&t| t <= end).checked_sub(1) else {
            return unbounded;
        };
        let first = pre.unwrap_or(0);
        let mut delta = Delta {
            lo: 0,
            hi: Some(0),
            restarts: 0,
            integrity: false,
        };
        for step in &self.steps[first..post] {
            delta = delta.plus(Delta {
                lo: step.lo,
                hi: step.hi,
                restarts: u32::from(step.restart),
                integrity: step.integrity,
            });
        }
        match pre {
            // The first step straddles the start and is longer than the tolerance: its
            // increase may belong to an earlier window.
            Some(i) if start - self.times[i] > tolerance_ms && post > i => {
                delta.lo = delta.lo.saturating_sub(self.steps[i].lo);
            }
            Some(_) => {}
            // No sample before the window: the chain starts at the first sample inside; what
            // happened between the start and that sample is unobserved.
            None => {
                if self.times[0] - start > tolerance_ms {
                    delta.hi = None;
                }
            }
        }
        // Unobserved tail: increments there show up in the next step, if there is one. A
        // window with no sample inside it at all is never exact, whatever the tolerance (with
        // pre/post-only sampling the tolerance may reach the window length).
        let none_inside = pre.is_some_and(|i| post <= i);
        if none_inside || end - self.times[post] > tolerance_ms {
            delta.hi = match (delta.hi, self.steps.get(post)) {
                (Some(h), Some(next)) => next.hi.map(|n| h.saturating_add(n)),
                _ => None,
            };
        }
        delta
    }

    /// Unobserved spans longer than the tolerance in `(start, end]` (see [`gaps`]).
    pub fn gaps(&self, start: u64, end: u64, tolerance_ms: u64) -> Vec<(u64, u64)> {
        gaps(&self.times, start, end, tolerance_ms)
    }
}

/// A derived value's good samples.
#[derive(Debug, Clone)]
pub struct ValueSeries {
    times: Vec<u64>,
    values: Vec<f64>,
}

impl ValueSeries {
    /// Largest value sampled in `(start, end]`, if any sample lies there.
    pub fn max_in(&self, start: u64, end: u64) -> Option<f64> {
        let (lo, hi) = self.range(start, end);
        self.values[lo..hi].iter().copied().reduce(f64::max)
    }

    /// Value of the last sample in `(start, end]`, if any.
    pub fn last_in(&self, start: u64, end: u64) -> Option<f64> {
        let (lo, hi) = self.range(start, end);
        (hi > lo).then(|| self.values[hi - 1])
    }

    /// Unobserved spans longer than the tolerance in `(start, end]` (see [`gaps`]).
    pub fn gaps(&self, start: u64, end: u64, tolerance_ms: u64) -> Vec<(u64, u64)> {
        gaps(&self.times, start, end, tolerance_ms)
    }

    fn range(&self, start: u64, end: u64) -> (usize, usize) {
        let lo = self.times.partition_point(|&t| t <= start);
        let hi = self.times.partition_point(|&t| t <= end).max(lo);
        (lo, hi)
    }
}

/// Unobserved spans longer than `tolerance_ms` that touch the window `(start, end]`, as
/// `(from, to)`: from the last good sample at/before the start (or the start itself when there
/// is none) through every sample inside the window to the window end. A window without any
/// good sample inside is one gap whatever the tolerance.
pub fn gaps(times: &[u64], start: u64, end: u64, tolerance_ms: u64) -> Vec<(u64, u64)> {
    let first_inside = times.partition_point(|&t| t <= start);
    let after_end = times.partition_point(|&t| t <= end);
    let mut out = Vec::new();
    let mut from = match first_inside.checked_sub(1) {
        Some(i) => times[i],
        None => start,
    };
    // No good sample inside the window at all: one gap, whatever the tolerance (pre/post-only
    // sampling with a missing post sample).
    if after_end <= first_inside {
        let to = times.get(after_end).copied().unwrap_or(end).min(end);
        out.push((from, to.max(from)));
        return out;
    }
    for &t in &times[first_inside..after_end.max(first_inside)] {
        if t - from > tolerance_ms {
            out.push((from, t));
        }
        from = t;
    }
    // Tail: the span from the last sample inside to the window end.
    if end - from > tolerance_ms {
        let to = times.get(after_end).copied().unwrap_or(end).min(end);
        out.push((from, to.max(from)));
    }
    out
}

#[cfg(test)]
mod tests {

    use super::*;

    fn ok(at: u64, inst: &str, value: u64) -> Sample {
        Sample {
            at_ms: at,
            outcome: SampleOutcome::Ok(SampleData {
                by_peer: Default::default(),
                instance_id: inst.to_string(),
                counters: [("c", value)].into(),
                gauges: Metrics::new(),
            }),
        }
    }
    fn missing(at: u64) -> Sample {
        Sample {
            at_ms: at,
            outcome: SampleOutcome::Missing {
                error: "timeout".into(),
            },
        }
    }
    const TOL: u64 = 25;

    fn delta(samples: &[Sample], start: u64, end: u64) -> Delta {
        NodeSeries::new(samples)
            .counter("c", TOL)
            .window_delta(start, end, TOL)
    }

    #[test]
    fn post_to_post_exact() {
        let s = [
            ok(0, "a", 5),
            ok(10, "a", 7),
            ok(20, "a", 7),
            ok(30, "a", 9),
        ];
        let d = delta(&s, 0, 30);
        assert_eq!(d.exact(), Some(4));
        assert_eq!(delta(&s, 0, 20).exact(), Some(2));
        assert_eq!(delta(&s, 20, 30).exact(), Some(2));
    }

    #[test]
    fn restart_counts_both_epochs() {
        let s = [
            ok(0, "a", 5),
            ok(10, "a", 8),
            ok(20, "b", 2),
            ok(30, "b", 6),
        ];
        let d = delta(&s, 0, 30);
        assert_eq!(d.exact(), Some(3 + 2 + 4));
        assert_eq!(d.restarts, 1);
    }

    #[test]
    fn restart_after_a_failed_attempt_is_unbounded_above() {
        let s = [ok(0, "a", 5), missing(10), ok(20, "b", 2)];
        let d = delta(&s, 0, 20);
        assert_eq!((d.lo, d.hi), (2, None));
    }

    #[test]
    fn restart_across_a_long_gap_is_unbounded_above() {
        let s = [ok(0, "a", 5), missing(10), missing(20), ok(30, "b", 2)];
        let d = delta(&s, 0, 30);
        assert_eq!((d.lo, d.hi), (2, None));
    }

    #[test]
    fn decrease_within_instance_is_integrity() {
        let s = [ok(0, "a", 5), ok(10, "a", 3), ok(20, "a", 4)];
        let series = NodeSeries::new(&s);
        let c = series.counter("c", TOL);
        let d = c.window_delta(0, 20, TOL);
        assert!(d.integrity);
        assert_eq!(d.hi, None);
        assert_eq!(c.events().len(), 1);
    }

    #[test]
    fn returning_instance_is_integrity() {
        let s = [ok(0, "a", 5), ok(10, "b", 1), ok(20, "a", 6)];
        let d = delta(&s, 0, 20);
        assert!(d.integrity);
        assert_eq!(d.hi, None);
    }

    #[test]
    fn no_samples_is_unbounded() {
        let s = [missing(0), missing(10)];
        let d = delta(&s, 0, 10);
        assert_eq!((d.lo, d.hi), (0, None));
        assert_eq!(delta(&[], 0, 10).hi, None);
    }

    #[test]
    fn missing_pre_uses_first_inside_sample_as_anchor() {
        // Lifetime value 1000 before the window must not count.
        let s = [ok(5, "a", 1000), ok(15, "a", 1001)];
        assert_eq!(delta(&s, 0, 15).exact(), Some(1));
        // Leading unobserved span longer than the tolerance: unbounded above, never inflated.
        let s = [ok(40, "a", 1000), ok(50, "a", 1001)];
        let d = delta(&s, 0, 50);
        assert_eq!((d.lo, d.hi), (1, None));
    }

    #[test]
    fn long_tail_takes_next_step_as_bound() {
        let s = [ok(0, "a", 0), ok(10, "a", 0), ok(100, "a", 7)];
        let d = delta(&s, 0, 50);
        assert_eq!((d.lo, d.hi), (0, Some(7)));
        let d = delta(&s[..2], 0, 50);
        assert_eq!((d.lo, d.hi), (0, None));
    }

    #[test]
    fn long_straddling_first_step_lowers_lo() {
        let s = [ok(0, "a", 0), ok(60, "a", 4), ok(70, "a", 4)];
        let d = delta(&s, 50, 70);
        assert_eq!((d.lo, d.hi), (0, Some(4)));
    }

    #[test]
    fn reordered_and_duplicated_samples_give_the_same_delta() {
        let s = [
            ok(20, "a", 9),
            ok(0, "a", 5),
            ok(10, "a", 7),
            ok(10, "a", 7),
        ];
        assert_eq!(delta(&s, 0, 20).exact(), Some(4));
    }

    #[test]
    fn columns_match_single_lookups() {
        let mut a = ok(0, "a", 5);
        if let SampleOutcome::Ok(d) = &mut a.outcome {
            d.counters.insert("a".into(), 1);
            d.counters.insert("z".into(), 9);
            d.gauges.insert("g".into(), 2.5);
        }
        let s = [a, ok(10, "a", 6), missing(20)];
        let series = NodeSeries::new(&s);
        let cols = series.columns(&["a", "b", "c", "z"], &["f", "g"]);
        assert_eq!(cols.counters[0], vec![Some(1), None]);
        assert_eq!(cols.counters[1], vec![None, None]);
        assert_eq!(cols.counters[2], vec![Some(5), Some(6)]);
        assert_eq!(cols.counters[3], vec![Some(9), None]);
        assert_eq!(cols.gauges[0], vec![None, None]);
        assert_eq!(cols.gauges[1], vec![Some(2.5), None]);
    }

    #[test]
    fn gaps_are_found_inside_and_at_the_edges() {
        assert_eq!(gaps(&[0, 10, 20], 0, 20, TOL), vec![]);
        assert_eq!(gaps(&[0, 10, 50], 0, 50, TOL), vec![(10, 50)]);
        assert_eq!(gaps(&[0, 10], 0, 50, TOL), vec![(10, 50)]);
        assert_eq!(gaps(&[], 0, 50, TOL), vec![(0, 50)]);
        assert_eq!(gaps(&[40], 0, 50, TOL), vec![(0, 40)]);
        assert_eq!(gaps(&[0, 45, 60], 0, 50, TOL), vec![(0, 45)]);
    }
}
