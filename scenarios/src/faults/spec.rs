//! Faults as data: what a scenario file (or a built-in scenario) says a fault is — its kind,
//! targets, timing within its window, parameters and the bar exemptions it grants.
//!
//! ```toml
//! [[fault]]
//! name = "high_rtt_peer"
//! kind = "delay"            # delay | loss | partition | restart | pause | idle | bandwidth
//! targets = "random:1"      # see `select`
//! window = 3                # optional: explicit window index (default: the next free one)
//! at = "2s"                 # offset in the window
//! hold = "20s"              # how long the fault holds
//! delay_ms = 1300
//! jitter_ms = 400
//! cooling = true            # also require the neighbours to cool the target, and recover it
//! [[fault.exempt]]
//! bar = "suppression_ratio"
//! nodes = "targets"         # targets | none
//! links = "targets"         # targets | cut | none
//! reason = "the delayed peer is cooled on purpose"
//! ```

use std::time::Duration;

use serde::{Deserialize, Serialize};
use soak_gates::model::Exemption;

use super::select::{Selector, Targets};

/// What a fault does.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum FaultKind {
    /// Added latency (and jitter) on the targets' overlay traffic.
    Delay,
    /// Dropped datagrams on the targets' overlay traffic.
    Loss,
    /// No overlay traffic across a cut (both ways or one way).
    Partition,
    /// The targets' node processes restarted (same data dir: same peer id, new instance).
    Restart,
    /// The targets' node processes stopped (SIGSTOP) for the hold, then continued.
    Pause,
    /// No workload traffic for the hold, then every Phase A pair must succeed first time.
    Idle,
    /// A bandwidth cap on the targets' overlay traffic (tc tbf on host fleets).
    Bandwidth,
}

impl FaultKind {
    /// Every kind.
    pub const ALL: [FaultKind; 7] = [
        FaultKind::Delay,
        FaultKind::Loss,
        FaultKind::Partition,
        FaultKind::Restart,
        FaultKind::Pause,
        FaultKind::Idle,
        FaultKind::Bandwidth,
    ];

    /// Spelling in scenario files and proofs.
    pub fn as_str(self) -> &'static str {
        match self {
            FaultKind::Delay => "delay",
            FaultKind::Loss => "loss",
            FaultKind::Partition => "partition",
            FaultKind::Restart => "restart",
            FaultKind::Pause => "pause",
            FaultKind::Idle => "idle",
            FaultKind::Bandwidth => "bandwidth",
        }
    }

    /// Whether the window's workloads run while the fault holds (else after it).
    pub fn workloads_during(self) -> bool {
        self != FaultKind::Idle
    }
}

/// How a fault is applied.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Backend {
    /// The node's own impairment API (no root; every fleet).
    Node,
    /// Signals and respawns of the node process (local mesh; service manager on hosts).
    Process,
    /// Nothing to apply: the runner holds traffic back (idle).
    Runner,
    /// `tc` qdiscs on the host (netem, tbf).
    Tc,
    /// `iptables` / `ip6tables` rules on the host.
    Iptables,
}

impl Backend {
    /// Spelling in proofs.
    pub fn as_str(self) -> &'static str {
        match self {
            Backend::Node => "node",
            Backend::Process => "process",
            Backend::Runner => "runner",
            Backend::Tc => "tc",
            Backend::Iptables => "iptables",
        }
    }
}

/// A destructive kind's opt-in flag.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Permission {
    /// `--allow-restart`: restarts and pauses of node processes.
    Restart,
    /// `--allow-netem`: tc qdiscs on hosts.
    Netem,
    /// `--allow-iptables`: firewall rules on hosts.
    Iptables,
}

impl Permission {
    /// The flag that grants it.
    pub fn flag(self) -> &'static str {
        match self {
            Permission::Restart => "--allow-restart",
            Permission::Netem => "--allow-netem",
            Permission::Iptables => "--allow-iptables",
        }
    }
}

/// Which nodes an exemption names.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum NodeSet {
    /// None.
    #[default]
    None,
    /// The fault's targets.
    Targets,
    /// Partitions: the side cut off from the window's publishers (side `b`; the runner
    /// publishes fanout bursts from side `a` while a partition holds).
    FarSide,
}

/// Which links `(node, peer)` an exemption leaves out.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum LinkSet {
    /// None.
    #[default]
    None,
    /// Every other node's links to the targets.
    Targets,
    /// The links a partition cuts.
    Cut,
}

/// Which Phase A pairs an exemption expects to fail.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum PairSet {
    /// None.
    #[default]
    None,
    /// The pairs a partition cuts (and, one-way, their reverse).
    Cut,
}

/// One bar exemption a fault grants in its window, as written.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ExemptSpec {
    /// Bar id.
    pub bar: String,
    /// Nodes exempt from the bar as a whole.
    #[serde(default)]
    pub nodes: NodeSet,
    /// Links left out of the bar.
    #[serde(default)]
    pub links: LinkSet,
    /// Phase A pairs expected to fail.
    #[serde(default)]
    pub pairs: PairSet,
    /// Why (reported with the verdict).
    pub reason: String,
}

impl ExemptSpec {
    /// The exemption for resolved `targets`; `None` when it names nothing (an exemption is
    /// never "everything", and never empty).
    pub fn materialize(&self, targets: &Targets, fleet: &[String]) -> Option<Exemption> {
        let nodes = match self.nodes {
            NodeSet::None => Vec::new(),
            NodeSet::Targets => targets.nodes.clone(),
            NodeSet::FarSide => targets.b.clone(),
        };
        let links = match self.links {
            LinkSet::None => Vec::new(),
            LinkSet::Targets => fleet
                .iter()
                .filter(|n| !targets.nodes.contains(n))
                .flat_map(|n| targets.nodes.iter().map(move |t| (n.clone(), t.clone())))
                .collect(),
            LinkSet::Cut => targets.disturbed_pairs(),
        };
        let pairs = match self.pairs {
            PairSet::None => Vec::new(),
            PairSet::Cut => targets.disturbed_pairs(),
        };
        if nodes.is_empty() && links.is_empty() && pairs.is_empty() {
            return None;
        }
        Some(Exemption {
            bar: self.bar.clone(),
            nodes,
            reason: self.reason.clone(),
            links,
            pairs,
        })
    }
}

/// A fault as written in a scenario file or a built-in scenario.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct FaultSpec {
    /// Scenario name (the name in proofs and `--scenarios`), e.g. `high_rtt_peer`.
    pub name: String,
    /// One line for `soak scenarios list`.
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub description: String,
    /// What the fault does.
    pub kind: FaultKind,
    /// Which nodes.
    #[serde(default = "default_targets")]
    pub targets: Selector,
    /// Explicit window index; `None` = the next free fault window.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub window: Option<u32>,
    /// Offset from the window's start.
    #[serde(default = "default_at", with = "duration_text")]
    pub at: Duration,
    /// How long the fault holds (restart: the span the restarts are spread over).
    #[serde(default = "default_hold", with = "duration_text")]
    pub hold: Duration,
    /// Delay: added one-way latency, ms.
    #[serde(default, skip_serializing_if = "is_zero")]
    pub delay_ms: u64,
    /// Delay: uniform jitter added on top, ms (so the delay is `delay_ms ..= delay_ms +
    /// jitter_ms`).
    #[serde(default, skip_serializing_if = "is_zero")]
    pub jitter_ms: u64,
    /// Loss: drop probability 0..1.
    #[serde(default, skip_serializing_if = "is_zero_f64")]
    pub loss: f64,
    /// Bandwidth: the cap, kbit/s.
    #[serde(default, skip_serializing_if = "is_zero")]
    pub rate_kbit: u64,
    /// Delay/loss: also require the neighbours to cool the target during the fault and recover
    /// it after (the `cooling` bar).
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub cooling: bool,
    /// Force a backend; default: the one the fleet offers for the kind.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub backend: Option<Backend>,
    /// Follow the fault window with a heal window (recommended; the heal window must be GO).
    #[serde(default = "yes")]
    pub heal_window: bool,
    /// Bar exemptions granted in the fault's window.
    #[serde(default)]
    pub exempt: Vec<ExemptSpec>,
}

fn default_targets() -> Selector {
    Selector::Random(1)
}
fn default_at() -> Duration {
    Duration::from_secs(2)
}
fn default_hold() -> Duration {
    Duration::from_secs(15)
}
fn yes() -> bool {
    true
}
fn is_zero(v: &u64) -> bool {
    *v == 0
}
fn is_zero_f64(v: &f64) -> bool {
    *v == 0.0
}

/// Longest delay the node impairment path accepts, ms.
pub const MAX_DELAY_MS: u64 = 10_000;
/// Longest hold.
pub const MAX_HOLD: Duration = Duration::from_secs(3_600);

impl FaultSpec {
    /// Checks the parameters against the kind; the error reads well after "fault `NAME`: ".
    pub fn validate(&self) -> Result<(), String> {
        let name_ok = !self.name.is_empty()
            && self.name.len() <= 64
            && self
                .name
                .bytes()
                .all(|b| b.is_ascii_alphanumeric() || b == b'_' || b == b'-');
        if !name_ok {
            return Err("`name` must be 1–64 of [A-Za-z0-9_-]".into());
        }
        if self.hold.is_zero() || self.hold > MAX_HOLD {
            return Err(format!(
                "`hold` must be between 1ms and {}",
                humantime::format_duration(MAX_HOLD)
            ));
        }
        let selector_ok = match self.kind {
            FaultKind::Partition => true,
            FaultKind::Delay | FaultKind::Loss | FaultKind::Bandwidth => {
                matches!(self.targets, Selector::Node(_) | Selector::Random(_))
            }
            FaultKind::Restart | FaultKind::Pause => {
                matches!(self.targets, Selector::Node(_) | Selector::Random(_))
            }
            FaultKind::Idle => true,
        };
        if !selector_ok {
            return Err(format!(
                "targets `{}` do not fit a {} fault (use node:NAME or random:K)",
                self.targets,
                self.kind.as_str()
            ));
        }
        match self.kind {
            FaultKind::Delay if self.delay_ms == 0 => {
                return Err("a delay fault needs `delay_ms` > 0".into());
            }
            FaultKind::Delay if self.delay_ms + self.jitter_ms > MAX_DELAY_MS => {
                return Err(format!(
                    "`delay_ms` + `jitter_ms` must be at most {MAX_DELAY_MS}"
                ));
            }
            FaultKind::Loss if !(self.loss > 0.0 && self.loss <= 1.0) => {
                return Err("a loss fault needs `loss` in (0, 1]".into());
            }
            FaultKind::Bandwidth if self.rate_kbit == 0 => {
                return Err("a bandwidth fault needs `rate_kbit` > 0".into());
            }
            _ => {}
        }
        if self.cooling && !matches!(self.kind, FaultKind::Delay | FaultKind::Loss) {
            return Err("`cooling` applies to delay and loss faults".into());
        }
        for e in &self.exempt {
            if e.bar.trim().is_empty() || e.reason.trim().is_empty() {
                return Err("every `exempt` needs a `bar` and a `reason`".into());
            }
            if e.nodes == NodeSet::None && e.links == LinkSet::None && e.pairs == PairSet::None {
                return Err(format!(
                    "exemption of bar `{}` names nothing (set nodes, links or pairs)",
                    e.bar
                ));
            }
            if (e.links == LinkSet::Cut || e.pairs == PairSet::Cut || e.nodes == NodeSet::FarSide)
                && self.kind != FaultKind::Partition
            {
                return Err(format!(
                    "exemption of bar `{}`: `cut` and `far_side` apply to partitions only",
                    e.bar
                ));
            }
        }
        Ok(())
    }

    /// The opt-in flag this fault needs with `backend`, if any.
    pub fn permission(&self, backend: Backend) -> Option<Permission> {
        match backend {
            Backend::Process => Some(Permission::Restart),
            Backend::Tc => Some(Permission::Netem),
            Backend::Iptables => Some(Permission::Iptables),
            Backend::Node | Backend::Runner => None,
        }
    }
}

/// Durations in scenario files are text (`"2s"`, `"1m30s"`).
mod duration_text {
    use std::time::Duration;

    use serde::{Deserialize, Deserializer, Serializer};

    pub fn serialize<S: Serializer>(d: &Duration, s: S) -> Result<S::Ok, S::Error> {
        s.collect_str(&humantime::format_duration(*d))
    }

    pub fn deserialize<'de, D: Deserializer<'de>>(d: D) -> Result<Duration, D::Error> {
        let text = String::deserialize(d)?;
        humantime::parse_duration(&text)
            .map_err(|e| serde::de::Error::custom(format!("{e} (examples: 500ms, 2s, 1m30s)")))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::faults::select::resolve;

    fn spec(kind: FaultKind) -> FaultSpec {
        FaultSpec {
            name: "f".into(),
            description: String::new(),
            kind,
            targets: Selector::Random(1),
            window: None,
            at: default_at(),
            hold: default_hold(),
            delay_ms: 100,
            jitter_ms: 0,
            loss: 0.1,
            rate_kbit: 100,
            cooling: false,
            backend: None,
            heal_window: true,
            exempt: Vec::new(),
        }
    }

    #[test]
    fn parameters_are_checked_against_the_kind() {
        for kind in FaultKind::ALL {
            assert_eq!(spec(kind).validate(), Ok(()), "{kind:?}");
        }
        let mut bad = spec(FaultKind::Delay);
        bad.delay_ms = 0;
        assert!(bad.validate().is_err());
        let mut bad = spec(FaultKind::Loss);
        bad.loss = 1.5;
        assert!(bad.validate().is_err());
        let mut bad = spec(FaultKind::Restart);
        bad.targets = Selector::Halves;
        assert!(bad.validate().is_err());
        let mut bad = spec(FaultKind::Pause);
        bad.cooling = true;
        assert!(bad.validate().is_err());
        let mut bad = spec(FaultKind::Delay);
        bad.exempt = vec![ExemptSpec {
            bar: "telemetry".into(),
            nodes: NodeSet::None,
            links: LinkSet::None,
            pairs: PairSet::None,
            reason: "x".into(),
        }];
        assert!(bad.validate().unwrap_err().contains("names nothing"));
    }

    #[test]
    fn exemptions_name_what_they_exempt_and_never_everything() {
        let fleet: Vec<String> = (0..4).map(|i| format!("node-{i}")).collect();
        let t = resolve(&"node:node-1".parse().unwrap(), &fleet, 0).unwrap();
        let e = ExemptSpec {
            bar: "suppression_ratio".into(),
            nodes: NodeSet::Targets,
            links: LinkSet::Targets,
            pairs: PairSet::None,
            reason: "slowed".into(),
        }
        .materialize(&t, &fleet)
        .unwrap();
        assert_eq!(e.nodes, vec!["node-1"]);
        assert_eq!(e.links.len(), 3);
        assert!(e.links.iter().all(|(n, p)| p == "node-1" && n != "node-1"));

        let halves = resolve(&Selector::Halves, &fleet, 0).unwrap();
        let e = ExemptSpec {
            bar: "suppression_ratio".into(),
            nodes: NodeSet::None,
            links: LinkSet::Cut,
            pairs: PairSet::None,
            reason: "cut".into(),
        }
        .materialize(&halves, &fleet)
        .unwrap();
        // Each node keeps its same-side links: 4 nodes × 3 peers = 12 links, 8 of them cut.
        assert_eq!(e.links.len(), 8);
    }

    #[test]
    fn scenario_toml_round_trips() {
        let text = r#"
name = "slow"
kind = "delay"
targets = "node:node-2"
at = "1s"
hold = "20s"
delay_ms = 1300
jitter_ms = 400
cooling = true
[[exempt]]
bar = "suppression_ratio"
links = "targets"
reason = "cooled on purpose"
"#;
        let spec: FaultSpec = toml::from_str(text).unwrap();
        assert_eq!(spec.hold, Duration::from_secs(20));
        assert_eq!(spec.targets, Selector::Node("node-2".into()));
        spec.validate().unwrap();
        let back: FaultSpec = toml::from_str(&toml::to_string(&spec).unwrap()).unwrap();
        assert_eq!(back, spec);
        assert!(toml::from_str::<FaultSpec>("name='x'\nkind='delay'\nlose=1").is_err());
        assert!(toml::from_str::<FaultSpec>("name='x'\nkind='delay'\nhold='soon'").is_err());
    }
}
