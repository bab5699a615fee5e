//! Gate profiles: data (TOML), built in and overridable, interpreted by the evaluator.
//!
//! A profile is a list of bars (each judged per window), an evidence policy (what a gap or an
//! integrity error costs), an optional soak-level adaptive policy and a few soak-level limits.
//! The TOML shape is documented in `docs/gates.md`; the built-in profiles live in
//! `gates/profiles/*.toml` and are embedded at compile time.

use serde::{Deserialize, Serialize};

use crate::error::{Error, ErrorKind};
use crate::outcome::Outcome;

/// The built-in profiles as `(name, TOML text)`.
const BUILTIN: &[(&str, &str)] = &[
    (
        "limited-production",
        include_str!("../profiles/limited-production.toml"),
    ),
    (
        "broad-launch",
        include_str!("../profiles/broad-launch.toml"),
    ),
];

/// A validated gate profile.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Profile {
    /// Profile name, e.g. `broad-launch`.
    pub name: String,
    /// One line on what the profile is for.
    pub description: String,
    /// What missing or inconsistent evidence costs.
    pub evidence: EvidencePolicy,
    /// Per-window bars, in report order.
    pub bars: Vec<Bar>,
    /// Soak-level adaptive policy on a rate of events, if any.
    pub adaptive: Option<AdaptivePolicy>,
    /// Soak-level limits.
    pub soak: SoakPolicy,
    /// Soak-level resource-stability bars (leaks), judged over the judged windows.
    #[serde(default)]
    pub resources: Vec<ResourceBar>,
    /// Where the profile came from (`builtin:NAME` or a file name).
    pub source_name: String,
    /// The TOML text it was parsed from (stored in proofs so a re-score can use the same gate).
    pub source_text: String,
}

/// What missing or inconsistent evidence costs.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct EvidencePolicy {
    /// A step between two good samples longer than `gap_factor` × the run's sample interval is
    /// an evidence gap.
    #[serde(default = "default_gap_factor")]
    pub gap_factor: f64,
    /// Verdict of the `telemetry` bar when a node has an evidence gap in a window
    /// (`UNKNOWN` or `NO-GO`; never `GO`).
    #[serde(default = "default_missing_telemetry")]
    pub missing_telemetry: Outcome,
    /// Verdict of the `telemetry` bar when a counter decreased within one process instance
    /// (a broken monotonic-counter contract of the node under test).
    #[serde(default = "default_integrity")]
    pub integrity_error: Outcome,
}

impl Default for EvidencePolicy {
    fn default() -> Self {
        EvidencePolicy {
            gap_factor: default_gap_factor(),
            missing_telemetry: default_missing_telemetry(),
            integrity_error: default_integrity(),
        }
    }
}

fn default_gap_factor() -> f64 {
    2.5
}
fn default_missing_telemetry() -> Outcome {
    Outcome::Unknown
}
fn default_integrity() -> Outcome {
    Outcome::NoGo
}

/// One per-window bar.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Bar {
    /// Stable id, used in exemptions and reports, e.g. `recv_pump_dropped`.
    pub id: String,
    /// Human title, e.g. `recv-pump dropped (full)`.
    pub title: String,
    /// What the bar checks.
    pub rule: Rule,
}

/// Whether a bar judges each node on its own or the fleet as a sum.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Scope {
    /// Every (non-exempt) node must hold the bar on its own.
    Node,
    /// The sum over (non-exempt) nodes must hold the bar.
    Fleet,
}

/// What a bar checks. Counter names are `soak_api::counters`, gauge names `soak_api::gauges`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(tag = "kind", rename_all = "snake_case")]
pub enum Rule {
    /// Strict: every ordered pair of the fleet (N·(N−1), minus explicit exemptions) delivered.
    PhaseA {
        /// Scenario name whose presence in a window requires a Phase A matrix.
        scenario: String,
    },
    /// Strict: every node sampled without an evidence gap, counters monotonic per instance.
    Telemetry,
    /// Strict: every scenario recorded in the window completed (SKIPPED or FAILED is never GO).
    Scenarios,
    /// Absolute: counter increase in the window ≤ `max`.
    Counter {
        /// Counter name.
        counter: String,
        /// Per node or fleet sum.
        scope: Scope,
        /// Largest allowed increase.
        max: u64,
    },
    /// Ratio of two counter increases ≤ `max` (numerator 0 → 0; numerator > 0 with denominator 0
    /// → fail).
    CounterRatio {
        /// Numerator counter.
        numerator: String,
        /// Denominator counter.
        denominator: String,
        /// Per node or fleet sums.
        scope: Scope,
        /// Largest allowed ratio.
        max: f64,
    },
    /// Absolute gauge: the largest value sampled in the window (node scope) or the fleet sum at
    /// the window's last sample (fleet scope) ≤ `max`.
    Gauge {
        /// Gauge name.
        gauge: String,
        /// Per node or fleet sum.
        scope: Scope,
        /// Largest allowed value.
        max: f64,
    },
    /// Ratio of two gauges ≤ `max`: per node the largest per-sample ratio in the window; fleet
    /// Σ numerators / Σ denominators at each node's last sample. Same edge cases as
    /// [`Rule::CounterRatio`].
    GaugeRatio {
        /// Numerator gauge.
        numerator: String,
        /// Denominator gauge.
        denominator: String,
        /// Per node or fleet sums.
        scope: Scope,
        /// Largest allowed ratio.
        max: f64,
    },
    /// Restart recovery: every recorded recovery within `max_ms`; never recovered fails. A
    /// skipped or failed scenario whose name contains `restart` makes it UNKNOWN.
    Recovery {
        /// Longest allowed time back to the mesh with Phase A ok, milliseconds.
        max_ms: u64,
    },
    /// Every fault that ran was shown to take effect; a fault whose effect was not shown (or
    /// could not be checked) is UNKNOWN — its window proves nothing about the fault.
    FaultEffect,
    /// Every fault that ran was shown gone after its revert; a failed clean check is NO-GO
    /// ("fault residue"), one that could not be run is UNKNOWN.
    FaultResidue,
    /// Partitions: after the revert, every cut pair delivers again within `max_ms`.
    PartitionHeal {
        /// Longest allowed revert → all cut pairs delivering, milliseconds.
        max_ms: u64,
    },
    /// Slow-peer faults that ask for it: the neighbours suppressed the target while the fault
    /// held *and* recovered it after. Both are required.
    Cooling,
    /// Idle faults: after the idle period every Phase A pair succeeded on its first attempt.
    FirstAttempt,
    /// Fanout burst: Σ received / Σ expected over (non-exempt) subscribers ≥ `min_ratio`.
    Fanout {
        /// Scenario name whose presence in a window requires fanout results.
        scenario: String,
        /// Smallest allowed delivery ratio.
        min_ratio: f64,
    },
}

/// Soak-level adaptive policy on an event rate (the fleet dispatcher-timeout rate).
///
/// See `docs/gates.md` for the reasoning. A baseline rate `events / exposure` is learned from
/// warmed windows; each later window is tested with the Poisson upper tail
/// `P(X ≥ k | λ = max(baseline, floor_rate) · exposure)`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct AdaptivePolicy {
    /// Bar id in reports and exemptions.
    #[serde(default = "default_adaptive_id")]
    pub id: String,
    /// Human title.
    #[serde(default = "default_adaptive_title")]
    pub title: String,
    /// Counter of events (e.g. `dispatcher_timeouts_total`).
    pub events: String,
    /// Counter of exposure (e.g. `dispatcher_completed_total`).
    pub exposure: String,
    /// Windows that learn the baseline when no window is marked warm-up: the first this many
    /// windows that pass every other bar.
    pub warmup_windows: u32,
    /// Tail probability below which a window is anomalous.
    pub alpha: f64,
    /// Lowest baseline rate used (so a clean warm-up does not make one event anomalous).
    pub floor_rate: f64,
    /// Fewest events for an anomaly.
    pub min_events: u64,
    /// Smallest ratio of observed to expected events for an anomaly (effect-size floor).
    pub min_ratio: f64,
    /// Highest acceptable learned baseline rate; above it the soak fails outright.
    pub max_baseline_rate: f64,
    /// This many consecutive anomalous windows fail the soak.
    pub consecutive: u32,
    /// Fewest baseline windows the adaptive test needs. A baseline learned from fewer (short
    /// readiness runs) is not trusted: every judged window is held to `strict_max_per_node`
    /// instead (or, without one, the policy is UNKNOWN).
    #[serde(default = "default_min_baseline_windows")]
    pub min_baseline_windows: u32,
    /// The strict per-window count bar (events per node per window) applied instead of the
    /// adaptive test when the baseline is too short.
    #[serde(default)]
    pub strict_max_per_node: Option<u64>,
    /// Absolute per-window fleet ceiling on events / exposure, applied to every judged window
    /// whatever the baseline (so a bad baseline can never legitimise a bad window).
    #[serde(default)]
    pub max_window_rate: Option<f64>,
}

fn default_min_baseline_windows() -> u32 {
    1
}

fn default_adaptive_id() -> String {
    "dispatcher_timeout_rate".to_string()
}
fn default_adaptive_title() -> String {
    "dispatcher timeout rate (adaptive)".to_string()
}

/// A resource-stability bar: one gauge per node (resident memory, open descriptors) over the
/// judged windows, its trend estimated robustly (Theil–Sen within each process epoch). See
/// `docs/gates.md` ("Resource stability").
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ResourceBar {
    /// Stable id, e.g. `rss_growth`.
    pub id: String,
    /// Human title.
    #[serde(default)]
    pub title: String,
    /// Gauge name, e.g. `process_resident_memory_bytes`.
    pub gauge: String,
    /// Largest allowed growth per hour relative to the node's median level (0.05 = 5 %/h).
    #[serde(default)]
    pub max_growth_per_hour: Option<f64>,
    /// Largest allowed rise per hour in the gauge's own unit (0 = no upward trend at all).
    #[serde(default)]
    pub max_rise_per_hour: Option<f64>,
    /// Fewest units the fitted rise over the judged span must exceed to count as a trend at
    /// all (the gauge's known jitter).
    #[serde(default)]
    pub noise_floor: f64,
    /// The fitted rise must also exceed this many robust standard deviations of the samples
    /// around the fitted line.
    #[serde(default = "default_noise_sigmas")]
    pub noise_sigmas: f64,
    /// Below this judged span (milliseconds) the bar is not applicable: a leak that slow cannot
    /// show. Not a pass.
    pub min_span_ms: u64,
}

fn default_noise_sigmas() -> f64 {
    3.0
}

/// Soak-level limits.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct SoakPolicy {
    /// Smallest Phase A delivery ratio aggregated over the soak (required pairs).
    #[serde(default = "default_phase_a_min_ratio")]
    pub phase_a_min_ratio: f64,
    /// Fewest windows a soak needs to be judged at all.
    #[serde(default = "default_min_windows")]
    pub min_windows: u32,
}

impl Default for SoakPolicy {
    fn default() -> Self {
        SoakPolicy {
            phase_a_min_ratio: default_phase_a_min_ratio(),
            min_windows: default_min_windows(),
        }
    }
}

fn default_phase_a_min_ratio() -> f64 {
    1.0
}
fn default_min_windows() -> u32 {
    1
}

/// The TOML shape of a profile (validated into [`Profile`]).
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct RawProfile {
    name: String,
    #[serde(default)]
    description: String,
    #[serde(default)]
    evidence: EvidencePolicy,
    #[serde(default)]
    bar: Vec<RawBar>,
    #[serde(default)]
    adaptive: Option<AdaptivePolicy>,
    #[serde(default)]
    soak: SoakPolicy,
    #[serde(default)]
    resource: Vec<ResourceBar>,
}

/// The TOML shape of a bar: flat, so unknown keys are rejected.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct RawBar {
    id: String,
    #[serde(default)]
    title: Option<String>,
    kind: String,
    #[serde(default)]
    counter: Option<String>,
    #[serde(default)]
    gauge: Option<String>,
    #[serde(default)]
    numerator: Option<String>,
    #[serde(default)]
    denominator: Option<String>,
    #[serde(default)]
    scope: Option<Scope>,
    #[serde(default)]
    max: Option<f64>,
    #[serde(default)]
    max_ms: Option<u64>,
    #[serde(default)]
    min_ratio: Option<f64>,
    #[serde(default)]
    scenario: Option<String>,
}

impl Profile {
    /// Names of the built-in profiles.
    pub fn builtin_names() -> Vec<&'static str> {
        BUILTIN.iter().map(|(name, _)| *name).collect()
    }

    /// A built-in profile by name (`limited-production`, `broad-launch`).
    pub fn builtin(name: &str) -> Result<Profile, Error> {
        let context = format!("failed to load gate profile `{name}`");
        let Some((_, text)) = BUILTIN.iter().find(|(known, _)| *known == name) else {
            return Err(Error::new(
                context,
                ErrorKind::UnknownProfile {
                    name: name.to_string(),
                    known: Self::builtin_names().join(", "),
                },
            ));
        };
        Profile::from_toml_str(text, &format!("builtin:{name}"))
    }

    /// Parses and validates a profile from TOML text; `source_name` names it in errors.
    pub fn from_toml_str(text: &str, source_name: &str) -> Result<Profile, Error> {
        let context = format!("failed to load gate profile from {source_name}");
        let raw: RawProfile =
            toml::from_str(text).map_err(|err| Error::new(context.clone(), err.into()))?;
        validate(raw, text, source_name).map_err(|msg| Error::new(context, ErrorKind::Invalid(msg)))
    }

    /// The profile's name.
    pub fn name(&self) -> &str {
        &self.name
    }

    /// The TOML text the profile was parsed from.
    pub fn source(&self) -> &str {
        &self.source_text
    }
}

fn validate(raw: RawProfile, text: &str, source_name: &str) -> Result<Profile, String> {
    if raw.name.trim().is_empty() {
        return Err("`name` must not be empty".into());
    }
    let ev = &raw.evidence;
    if !(ev.gap_factor.is_finite() && ev.gap_factor >= 1.0) {
        return Err(format!(
            "`evidence.gap_factor` must be a number ≥ 1, got {}",
            ev.gap_factor
        ));
    }
    if ev.missing_telemetry == Outcome::Go || ev.integrity_error == Outcome::Go {
        return Err(
            "missing or inconsistent evidence can never be GO: use UNKNOWN or NO-GO".into(),
        );
    }
    let mut bars: Vec<Bar> = Vec::with_capacity(raw.bar.len());
    for rb in raw.bar {
        let bar = validate_bar(rb)?;
        if bars.iter().any(|b| b.id == bar.id) {
            return Err(format!("bar id `{}` appears twice", bar.id));
        }
        bars.push(bar);
    }
    if let Some(ad) = &raw.adaptive {
        let probability = |v: f64| v.is_finite() && v > 0.0 && v < 1.0;
        if ad.events.is_empty() || ad.exposure.is_empty() {
            return Err("`adaptive.events` and `adaptive.exposure` must name counters".into());
        }
        if !probability(ad.alpha) {
            return Err(format!(
                "`adaptive.alpha` must be in (0, 1), got {}",
                ad.alpha
            ));
        }
        if !(ad.floor_rate.is_finite() && ad.floor_rate > 0.0) {
            return Err("`adaptive.floor_rate` must be > 0".into());
        }
        if !(ad.max_baseline_rate.is_finite() && ad.max_baseline_rate >= ad.floor_rate) {
            return Err("`adaptive.max_baseline_rate` must be ≥ `floor_rate`".into());
        }
        if !(ad.min_ratio.is_finite() && ad.min_ratio >= 1.0) {
            return Err("`adaptive.min_ratio` must be ≥ 1".into());
        }
        if ad.consecutive == 0 || ad.warmup_windows == 0 || ad.min_baseline_windows == 0 {
            return Err("`adaptive.consecutive`, `adaptive.warmup_windows` and \
                 `adaptive.min_baseline_windows` must be ≥ 1"
                .into());
        }
        if ad
            .max_window_rate
            .is_some_and(|c| !(c.is_finite() && c >= 0.0))
        {
            return Err("`adaptive.max_window_rate` must be a number ≥ 0".into());
        }
        if bars.iter().any(|b| b.id == ad.id) {
            return Err(format!("adaptive id `{}` clashes with a bar id", ad.id));
        }
    }
    for (i, r) in raw.resource.iter().enumerate() {
        if r.id.trim().is_empty() || r.gauge.trim().is_empty() {
            return Err(format!("resource bar {} needs `id` and `gauge`", i + 1));
        }
        if bars.iter().any(|b| b.id == r.id)
            || raw.resource[..i].iter().any(|o| o.id == r.id)
            || raw.adaptive.as_ref().is_some_and(|a| a.id == r.id)
        {
            return Err(format!("resource bar id `{}` appears twice", r.id));
        }
        let limit = |v: Option<f64>| v.is_none_or(|v| v.is_finite() && v >= 0.0);
        if r.max_growth_per_hour.is_none() && r.max_rise_per_hour.is_none() {
            return Err(format!(
                "resource bar `{}` needs `max_growth_per_hour` or `max_rise_per_hour`",
                r.id
            ));
        }
        let number = |v: f64| v.is_finite() && v >= 0.0;
        let valid = limit(r.max_growth_per_hour)
            && limit(r.max_rise_per_hour)
            && number(r.noise_floor)
            && number(r.noise_sigmas);
        if !valid {
            return Err(format!(
                "resource bar `{}`: limits, `noise_floor` and `noise_sigmas` must be numbers ≥ 0",
                r.id
            ));
        }
        if r.min_span_ms == 0 {
            return Err(format!(
                "resource bar `{}`: `min_span_ms` must be > 0",
                r.id
            ));
        }
    }
    let resources = raw
        .resource
        .into_iter()
        .map(|mut r| {
            if r.title.is_empty() {
                r.title = r.id.clone();
            }
            r
        })
        .collect();
    let soak = &raw.soak;
    if !(soak.phase_a_min_ratio.is_finite() && (0.0..=1.0).contains(&soak.phase_a_min_ratio)) {
        return Err("`soak.phase_a_min_ratio` must be in [0, 1]".into());
    }
    Ok(Profile {
        name: raw.name,
        description: raw.description,
        evidence: raw.evidence,
        bars,
        adaptive: raw.adaptive,
        soak: raw.soak,
        resources,
        source_name: source_name.to_string(),
        source_text: text.to_string(),
    })
}

fn validate_bar(rb: RawBar) -> Result<Bar, String> {
    let id = rb.id.trim().to_string();
    if id.is_empty() {
        return Err("a bar has an empty `id`".into());
    }
    let need = |field: Option<String>, name: &str| {
        field
            .filter(|v| !v.is_empty())
            .ok_or_else(|| format!("bar `{id}` (kind `{}`) needs `{name}`", rb.kind))
    };
    let scope = || {
        rb.scope.ok_or_else(|| {
            format!(
                "bar `{id}` (kind `{}`) needs `scope` (node or fleet)",
                rb.kind
            )
        })
    };
    let limit = |value: Option<f64>, name: &str| match value {
        Some(v) if v.is_finite() && v >= 0.0 => Ok(v),
        Some(v) => Err(format!(
            "bar `{id}`: `{name}` must be a number ≥ 0, got {v}"
        )),
        None => Err(format!("bar `{id}` (kind `{}`) needs `{name}`", rb.kind)),
    };
    let rule = match rb.kind.as_str() {
        "phase_a" => Rule::PhaseA {
            scenario: rb.scenario.clone().unwrap_or_else(|| "baseline".into()),
        },
        "telemetry" => Rule::Telemetry,
        "scenarios" => Rule::Scenarios,
        "counter" => {
            let max = limit(rb.max, "max")?;
            if max.fract() != 0.0 {
                return Err(format!("bar `{id}`: counter `max` must be a whole number"));
            }
            Rule::Counter {
                counter: need(rb.counter.clone(), "counter")?,
                scope: scope()?,
                // Whole and non-negative, checked above.
                max: max as u64,
            }
        }
        "counter_ratio" => Rule::CounterRatio {
            numerator: need(rb.numerator.clone(), "numerator")?,
            denominator: need(rb.denominator.clone(), "denominator")?,
            scope: scope()?,
            max: limit(rb.max, "max")?,
        },
        "gauge" => Rule::Gauge {
            gauge: need(rb.gauge.clone(), "gauge")?,
            scope: scope()?,
            max: limit(rb.max, "max")?,
        },
        "gauge_ratio" => Rule::GaugeRatio {
            numerator: need(rb.numerator.clone(), "numerator")?,
            denominator: need(rb.denominator.clone(), "denominator")?,
            scope: scope()?,
            max: limit(rb.max, "max")?,
        },
        "recovery" => Rule::Recovery {
            max_ms: rb
                .max_ms
                .ok_or_else(|| format!("bar `{id}` (kind `recovery`) needs `max_ms`"))?,
        },
        "fault_effect" => Rule::FaultEffect,
        "fault_residue" => Rule::FaultResidue,
        "partition_heal" => Rule::PartitionHeal {
            max_ms: rb
                .max_ms
                .ok_or_else(|| format!("bar `{id}` (kind `partition_heal`) needs `max_ms`"))?,
        },
        "cooling" => Rule::Cooling,
        "first_attempt" => Rule::FirstAttempt,
        "fanout" => {
            let min_ratio = limit(rb.min_ratio, "min_ratio")?;
            if min_ratio > 1.0 {
                return Err(format!("bar `{id}`: `min_ratio` must be ≤ 1"));
            }
            Rule::Fanout {
                scenario: rb.scenario.clone().unwrap_or_else(|| "fanout_burst".into()),
                min_ratio,
            }
        }
        other => {
            return Err(format!(
                "bar `{id}` has unknown kind `{other}` (known: phase_a, telemetry, scenarios, \
                 counter, counter_ratio, gauge, gauge_ratio, recovery, fanout, fault_effect, \
                 fault_residue, partition_heal, cooling, first_attempt)"
            ));
        }
    };
    Ok(Bar {
        title: rb.title.unwrap_or_else(|| id.clone()),
        id,
        rule,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn builtins_load() {
        for name in Profile::builtin_names() {
            let profile = Profile::builtin(name);
            assert!(profile.is_ok(), "{name}: {profile:?}");
            assert_eq!(profile.map(|p| p.name).ok().as_deref(), Some(name));
        }
    }

    #[test]
    fn unknown_builtin_is_a_clear_error() {
        let err = Profile::builtin("nope").err().map(|e| e.kind.to_string());
        assert!(err.is_some_and(|e| e.contains("limited-production")));
    }

    #[test]
    fn typo_in_bar_is_rejected() {
        let text = "name = 'x'\n[[bar]]\nid = 'a'\nkind = 'counter'\ncountr = 'c'\nscope = 'node'\nmax = 0\n";
        assert!(Profile::from_toml_str(text, "t.toml").is_err());
    }

    #[test]
    fn missing_field_is_rejected() {
        let text = "name = 'x'\n[[bar]]\nid = 'a'\nkind = 'counter'\nscope = 'node'\nmax = 0\n";
        let err = Profile::from_toml_str(text, "t.toml")
            .err()
            .map(|e| e.kind.to_string());
        assert_eq!(
            err.as_deref(),
            Some("bar `a` (kind `counter`) needs `counter`")
        );
    }

    #[test]
    fn go_for_missing_telemetry_is_rejected() {
        let text = "name = 'x'\n[evidence]\nmissing_telemetry = 'GO'\n";
        assert!(Profile::from_toml_str(text, "t.toml").is_err());
    }
}
