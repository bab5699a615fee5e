//! Peer scoring and cooling per (topic, peer).
//!
//! A score is a handful of exponentially decayed components; the topic demotes an eager peer
//! whose score falls below [`Config::demote_below`] and suppresses (cools) one below
//! [`Config::suppress_below`] for `suppress_base * 2^(strikes-1)`, capped at
//! [`Config::suppress_max`]. A lapsed suppression keeps its strikes until
//! [`Config::strike_forget`] passes without a new one; then the entry disappears.
//!
//! The slow-peer detector ([`PathRtt`], judged in the topic's maintenance) adds the
//! `slowness` component: a peer whose round-trip time stands far above the node's other
//! peers' is charged at every tick until it is demoted and then suppressed; the charge decays
//! like the others, so a peer whose latency fell is recovered by the usual rules.

use std::time::Duration;

use serde::{Deserialize, Serialize};

use crate::config::Config;

/// Decayed score components of one (topic, peer).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Score {
    /// 1.0 = every recent send went through; falls on timeouts, recovers over time and on
    /// delivered sends and verified inbound traffic.
    pub send_health: f64,
    /// Decayed count of send timeouts and failures.
    pub timeouts: f64,
    /// Decayed count of GRAFT / IWANT requests the peer did not answer in time.
    pub broken_promises: f64,
    /// Decayed count of valid messages received from the peer.
    pub inbound: f64,
    /// Decayed count of maintenance ticks that judged the peer slow (its round-trip time far
    /// above the node's other peers', see [`Config::slow_rtt_ratio`]).
    #[serde(default)]
    pub slowness: f64,
    /// The latest latency verdict: whether the peer was judged slow.
    #[serde(skip)]
    pub(crate) slow: bool,
    /// The latest latency comparison: (the peer's RTT, the median RTT of the other peers).
    #[serde(skip)]
    pub(crate) latency: Option<(Duration, Duration)>,
    #[serde(skip)]
    updated: Duration,
    /// Start of the current broken-promise episode (see [`Config::promise_episode`]).
    #[serde(skip)]
    episode: Option<Duration>,
}

/// Weight of inbound traffic per message, and the cap of its contribution.
const INBOUND_WEIGHT: f64 = 0.05;
const INBOUND_CAP: f64 = 10.0;

impl Score {
    pub(crate) fn new(now: Duration) -> Self {
        Self {
            send_health: 1.0,
            timeouts: 0.0,
            broken_promises: 0.0,
            inbound: 0.0,
            slowness: 0.0,
            slow: false,
            latency: None,
            updated: now,
            episode: None,
        }
    }

    /// Applies decay up to `now`.
    pub(crate) fn decay(&mut self, now: Duration, half_life: Duration) {
        let dt = now.saturating_sub(self.updated);
        if dt.is_zero() {
            return;
        }
        self.updated = now;
        let hl = half_life.as_secs_f64().max(1e-3);
        let f = 0.5f64.powf(dt.as_secs_f64() / hl);
        self.timeouts *= f;
        self.broken_promises *= f;
        self.inbound *= f;
        self.slowness *= f;
        self.send_health = 1.0 - (1.0 - self.send_health) * f;
    }

    /// The total, `2·send_health − timeouts − broken_promises − slowness` plus
    /// `0.05·min(inbound, 10)`. A healthy peer scores 2..2.5; two quick timeouts demote,
    /// three suppress; about three slow ticks demote, four suppress.
    pub fn value(&self) -> f64 {
        2.0 * self.send_health - self.timeouts - self.broken_promises - self.slowness
            + INBOUND_WEIGHT * self.inbound.min(INBOUND_CAP)
    }

    /// The latest latency comparison (`rtt`, `reference`); `slow` is the verdict, and a slow
    /// verdict charges `penalty` to the `slowness` component.
    pub(crate) fn on_latency(
        &mut self,
        latency: Option<(Duration, Duration)>,
        slow: bool,
        penalty: f64,
    ) {
        self.latency = latency;
        self.slow = slow;
        if slow {
            self.slowness += penalty.max(0.0);
        }
    }

    /// Whether the latest latency verdict judged the peer slow.
    pub fn is_slow(&self) -> bool {
        self.slow
    }

    pub(crate) fn on_timeout(&mut self) {
        self.send_health *= 0.75;
        self.timeouts += 1.0;
    }

    pub(crate) fn on_delivered(&mut self) {
        self.send_health += 0.1 * (1.0 - self.send_health);
    }

    /// A promise broken at `now`. Promises broken within `episode` of the first one of an
    /// episode share a cause (one burst of requests, one stall) and count once; returns
    /// whether this one counted.
    pub(crate) fn on_broken_promise(&mut self, now: Duration, episode: Duration) -> bool {
        if self
            .episode
            .is_some_and(|start| now < start.saturating_add(episode))
        {
            return false;
        }
        self.episode = Some(now);
        self.broken_promises += 1.0;
        true
    }

    pub(crate) fn on_inbound(&mut self) {
        self.inbound = (self.inbound + 1.0).min(2.0 * INBOUND_CAP);
        self.send_health += 0.02 * (1.0 - self.send_health);
    }

    /// A lapsed suppression starts the peer again from a neutral score, so it is not cooled
    /// again for old sins; new timeouts strike it again quickly.
    pub(crate) fn reset_after_suppression(&mut self) {
        self.timeouts = 0.0;
        self.broken_promises = 0.0;
        self.slowness = 0.0;
        self.episode = None;
        self.send_health = self.send_health.max(0.5);
    }

    /// Components by name, as `soak_api::PeerScore::components` wants them, then the
    /// latency evidence when there is some: `rtt_ms` (the peer's round-trip time),
    /// `rtt_reference_ms` (the median of the node's other peers) and `slow` (1 when the latest
    /// verdict judged it slow).
    pub fn components(&self) -> Vec<(&'static str, f64)> {
        let mut c = vec![
            ("send_health", self.send_health),
            ("timeouts", self.timeouts),
            ("broken_promises", self.broken_promises),
            ("inbound", self.inbound),
            ("slowness", self.slowness),
        ];
        if let Some((rtt, reference)) = self.latency {
            let ms = |d: Duration| d.as_secs_f64() * 1e3;
            c.push(("rtt_ms", ms(rtt)));
            c.push(("rtt_reference_ms", ms(reference)));
            c.push(("slow", if self.slow { 1.0 } else { 0.0 }));
        }
        c
    }
}

/// The transport's round-trip time to one peer ([`crate::InEvent::PeerRtt`]), smoothed:
/// each report moves the estimate half way to it (the transport's value is smoothed
/// already; this only damps a single odd report).
#[derive(Debug, Clone, Copy, PartialEq)]
pub(crate) struct PathRtt {
    pub(crate) srtt: Duration,
    /// When it was last reported.
    pub(crate) at: Duration,
}

impl PathRtt {
    pub(crate) fn first(sample: Duration, now: Duration) -> Self {
        Self {
            srtt: sample,
            at: now,
        }
    }

    pub(crate) fn sample(&mut self, sample: Duration, now: Duration) {
        self.srtt = (self.srtt + sample) / 2;
        self.at = now;
    }
}

/// The latency verdict on one peer: its RTT `rtt` against `reference`, the median RTT of the
/// node's other peers. Slow only when it is both `slow_rtt_ratio` times the reference and
/// `slow_rtt_excess` above it.
pub(crate) fn is_slow(rtt: Duration, reference: Duration, config: &Config) -> bool {
    let ratio = config.slow_rtt_ratio.max(1.0);
    rtt.as_secs_f64() >= reference.as_secs_f64() * ratio
        && rtt >= reference.saturating_add(config.slow_rtt_excess)
}

/// The lower median of `sorted` without one occurrence of `own` (the other peers' RTTs);
/// `None` when fewer than `min` remain.
pub(crate) fn reference_rtt(sorted: &[Duration], own: Duration, min: usize) -> Option<Duration> {
    let others = sorted.len().checked_sub(1)?;
    if others < min.max(1) {
        return None;
    }
    let skip = sorted.binary_search(&own).ok()?;
    let k = (others - 1) / 2;
    // The k-th of the others: indices past `skip` shift by one.
    Some(if k < skip { sorted[k] } else { sorted[k + 1] })
}

/// Round-trip estimate of one peer's repair answers (GRAFT / IWANT → payload), Jacobson and
/// Karels as in TCP: `srtt`, `rttvar`, timeout `srtt + 4·rttvar`. Samples are taken from the
/// time the answer *reached the node*, so the node's own inbound backlog is not in them.
#[derive(Debug, Clone, Copy, PartialEq)]
pub(crate) struct Rtt {
    srtt: f64,
    rttvar: f64,
}

impl Rtt {
    pub(crate) fn first(sample: Duration) -> Self {
        let s = sample.as_secs_f64();
        Self {
            srtt: s,
            rttvar: s / 2.0,
        }
    }

    pub(crate) fn sample(&mut self, sample: Duration) {
        let s = sample.as_secs_f64();
        self.rttvar = 0.75 * self.rttvar + 0.25 * (self.srtt - s).abs();
        self.srtt = 0.875 * self.srtt + 0.125 * s;
    }

    /// `srtt + 4·rttvar`, within `[floor, cap]`.
    pub(crate) fn timeout(&self, floor: Duration, cap: Duration) -> Duration {
        let rto = self.srtt + 4.0 * self.rttvar;
        let rto = if rto.is_finite() && rto > 0.0 {
            Duration::from_secs_f64(rto.min(cap.as_secs_f64()))
        } else {
            floor
        };
        rto.clamp(floor, cap.max(floor))
    }
}

/// How late eager copies follow their first IHAVE: a maximum of the samples that fades by
/// [`TREE_LAG_FADE`] with every new sample (so it follows the tree as it changes, at the pace
/// of the evidence rather than of the clock: a quiet topic keeps what it learned).
///
/// A maximum rather than a mean: on a tree shared by many publishers the lag depends on where
/// each message was published, and a wait shorter than the slow end of it grafts a link the
/// tree did not need — two redundant copies and, worse, a reshaped tree. A long wait costs
/// nothing until a link really breaks. The node keeps one per topic (for publishers it has
/// not heard yet) and one per stream (see `Stream::lag`).
#[derive(Debug, Clone, Copy, Default, PartialEq)]
pub(crate) struct TreeLag {
    /// Seconds.
    max: f64,
}

/// The graft wait is this much longer than the largest recent lag.
pub(crate) const TREE_LAG_MARGIN: f64 = 1.25;
/// Each sample first fades the remembered maximum by this factor (about 70 samples halve it).
pub(crate) const TREE_LAG_FADE: f64 = 0.99;

impl TreeLag {
    /// A tree not measured yet: the wait starts at `wait`.
    pub(crate) fn initial(wait: Duration) -> Self {
        Self {
            max: wait.as_secs_f64() / TREE_LAG_MARGIN,
        }
    }

    pub(crate) fn sample(&mut self, sample: Duration) {
        self.max = (self.max * TREE_LAG_FADE).max(sample.as_secs_f64());
    }

    /// `1.25 ·` the remembered maximum, within `[floor, cap]`.
    pub(crate) fn wait(&self, floor: Duration, cap: Duration) -> Duration {
        let w = self.max * TREE_LAG_MARGIN;
        let w = if w.is_finite() && w > 0.0 {
            Duration::from_secs_f64(w.min(cap.as_secs_f64()))
        } else {
            floor
        };
        w.clamp(floor, cap.max(floor))
    }
}

/// Cooling state of one (topic, peer).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Suppression {
    /// Suppressed until then (`None`: lapsed, only the strikes are remembered).
    pub until: Option<Duration>,
    /// Suppressions in a row; drives the exponential backoff.
    pub strikes: u32,
    /// When the last strike happened.
    pub last_strike: Duration,
    /// Why the current (or last) suppression started.
    #[serde(default)]
    pub cause: Cause,
}

/// Why a peer was suppressed; it decides what a suppressed peer is still sent.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Cause {
    /// Send timeouts, failures or broken promises: the peer does not drain. It is sent
    /// nothing — no payloads, no IHAVE, no anti-entropy — until it recovers.
    #[default]
    Health,
    /// Its latency alone (the slow-peer detector): the peer drains, only late. It is taken off
    /// the tree and never asked for anything, but still announced to (IHAVE) and answered
    /// (IWANT, GRAFT, anti-entropy digests), so it can still pull every message.
    Latency,
}

impl Cause {
    /// What the score says: latency when the `slowness` charge outweighs the health
    /// evidence (timeouts, broken promises, lost send health).
    pub(crate) fn of(score: Option<&Score>) -> Cause {
        match score {
            Some(s)
                if s.slowness > s.timeouts + s.broken_promises + 2.0 * (1.0 - s.send_health) =>
            {
                Cause::Latency
            }
            _ => Cause::Health,
        }
    }

    /// Name as the API shows it.
    pub fn as_str(self) -> &'static str {
        match self {
            Cause::Health => "health",
            Cause::Latency => "latency",
        }
    }
}

impl Suppression {
    pub(crate) fn is_active(&self, now: Duration) -> bool {
        self.until.is_some_and(|u| u > now)
    }

    /// Active, and for a cause that stops every message to the peer (see [`Cause`]).
    pub(crate) fn silences(&self, now: Duration) -> bool {
        self.is_active(now) && self.cause == Cause::Health
    }

    /// Backoff for the given strike count.
    pub(crate) fn backoff(config: &Config, strikes: u32) -> Duration {
        let shift = strikes.saturating_sub(1).min(30);
        config
            .suppress_base
            .saturating_mul(1u32 << shift)
            .min(config.suppress_max)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn two_timeouts_demote_three_suppress() {
        let c = Config::default();
        let mut s = Score::new(Duration::ZERO);
        assert!(s.value() > c.demote_below);
        s.on_timeout();
        assert!(s.value() > c.suppress_below);
        s.on_timeout();
        assert!(s.value() < c.demote_below, "{}", s.value());
        assert!(s.value() > c.suppress_below, "{}", s.value());
        s.on_timeout();
        assert!(s.value() < c.suppress_below, "{}", s.value());
    }

    #[test]
    fn decay_restores_health() {
        let mut s = Score::new(Duration::ZERO);
        for _ in 0..5 {
            s.on_timeout();
        }
        s.decay(Duration::from_secs(100), Duration::from_secs(10));
        assert!(s.timeouts < 0.01);
        assert!(s.send_health > 0.99);
        assert!(s.value() > 1.9);
    }

    #[test]
    fn broken_promises_of_one_episode_count_once() {
        let ep = Duration::from_millis(500);
        let mut s = Score::new(Duration::ZERO);
        let at = |ms| Duration::from_millis(ms);
        assert!(s.on_broken_promise(at(100), ep));
        for t in [100, 150, 599] {
            assert!(!s.on_broken_promise(at(t), ep), "same episode at {t} ms");
        }
        assert_eq!(s.broken_promises, 1.0);
        assert!(s.on_broken_promise(at(600), ep), "a new episode");
        assert_eq!(s.broken_promises, 2.0);
    }

    #[test]
    fn rtt_timeout_follows_samples_within_floor_and_cap() {
        let ms = Duration::from_millis;
        let (floor, cap) = (ms(60), ms(1000));
        let mut r = Rtt::first(ms(10));
        assert_eq!(r.timeout(floor, cap), floor, "fast peer: the floor");
        for _ in 0..20 {
            r.sample(ms(150));
        }
        let t = r.timeout(floor, cap);
        assert!(t > ms(150) && t < ms(400), "{t:?}");
        let mut r = Rtt::first(ms(5_000));
        assert_eq!(r.timeout(floor, cap), cap);
        r.sample(ms(1));
        assert!(r.timeout(floor, cap) <= cap);
    }

    #[test]
    fn tree_lag_covers_the_largest_recent_lag_and_fades_with_samples() {
        let ms = Duration::from_millis;
        let (floor, cap) = (ms(80), ms(1000));
        let mut lag = TreeLag::initial(ms(400));
        assert_eq!(lag.wait(floor, cap), ms(400));
        lag.sample(ms(600));
        assert_eq!(lag.wait(floor, cap), ms(750), "1.25 × the largest lag");
        lag.sample(ms(10));
        let w = lag.wait(floor, cap);
        assert!(
            w < ms(750) && w > ms(740),
            "a small sample only fades it: {w:?}"
        );
        for _ in 0..1000 {
            lag.sample(ms(0));
        }
        assert_eq!(lag.wait(floor, cap), floor);
        lag.sample(ms(5_000));
        assert_eq!(lag.wait(floor, cap), cap);
        assert_eq!(TreeLag::default().wait(floor, cap), floor);
    }

    #[test]
    fn slow_needs_both_the_ratio_and_the_excess() {
        let c = Config::default();
        let ms = Duration::from_millis;
        assert!(is_slow(ms(1_600), ms(2), &c));
        assert!(
            !is_slow(ms(450), ms(2), &c),
            "far above in ratio, not in ms"
        );
        assert!(
            !is_slow(ms(1_700), ms(1_500), &c),
            "far above in ms, not in ratio"
        );
        assert!(
            is_slow(ms(2_000), ms(500), &c),
            "exactly 4 times and 1.5 s above"
        );
        assert!(!is_slow(ms(1_999), ms(500), &c));
        assert!(!is_slow(Duration::ZERO, Duration::ZERO, &c));
    }

    #[test]
    fn reference_is_the_lower_median_of_the_others() {
        let ms = Duration::from_millis;
        let sorted = [ms(1), ms(2), ms(3), ms(4), ms(1_600)];
        assert_eq!(reference_rtt(&sorted, ms(1_600), 2), Some(ms(2)));
        assert_eq!(reference_rtt(&sorted, ms(1), 2), Some(ms(3)));
        assert_eq!(reference_rtt(&sorted, ms(3), 2), Some(ms(2)));
        assert_eq!(reference_rtt(&sorted, ms(7), 2), None, "not in the list");
        assert_eq!(reference_rtt(&[ms(1), ms(9)], ms(9), 2), None, "one other");
        assert_eq!(reference_rtt(&[ms(1), ms(9)], ms(9), 1), Some(ms(1)));
        assert_eq!(reference_rtt(&[], ms(9), 0), None);
    }

    #[test]
    fn slowness_is_charged_decays_and_is_forgotten_on_recovery() {
        let c = Config::default();
        let mut s = Score::new(Duration::ZERO);
        for t in 1..=4 {
            s.decay(Duration::from_secs(t), c.score_half_life);
            s.on_latency(None, true, c.slow_penalty);
            s.on_inbound();
        }
        assert!(s.value() < c.suppress_below, "{}", s.value());
        s.decay(Duration::from_secs(100), c.score_half_life);
        assert!(s.slowness < 0.01 && s.value() > 1.9);
        s.on_latency(None, true, c.slow_penalty);
        s.reset_after_suppression();
        assert_eq!(s.slowness, 0.0);
        assert!(s.is_slow(), "the verdict stays until the next judgement");
    }

    #[test]
    fn backoff_doubles_and_caps() {
        let c = Config::default();
        assert_eq!(Suppression::backoff(&c, 1), c.suppress_base);
        assert_eq!(Suppression::backoff(&c, 2), c.suppress_base * 2);
        assert_eq!(Suppression::backoff(&c, 3), c.suppress_base * 4);
        assert_eq!(Suppression::backoff(&c, 40), c.suppress_max);
    }
}
