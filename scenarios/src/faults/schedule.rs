//! The fault schedule of a run: which fault holds in which window, and the heal window after
//! each. Pure: specs and window counts in, a schedule (or a usage error) out.
//!
//! Rules: warm-up windows never hold a fault (they learn baselines); a fault without an
//! explicit `window` takes the next window after the warm-up that is free and, when it asks for
//! a heal window (the default), is followed by a free one; a heal window holds no fault, so the
//! fleet must show it is back to GO; a fault in the last window leaves no room for its heal and
//! is refused.

use serde::{Deserialize, Serialize};

use super::spec::FaultSpec;

/// A fault placed in a window.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ScheduledFault {
    /// Unique instance name in the run: `<scenario>@w<window>`.
    pub instance: String,
    /// Window index.
    pub window: u32,
    /// The fault.
    pub spec: FaultSpec,
}

/// What one window holds.
#[derive(Debug, Clone, PartialEq, Default, Serialize, Deserialize)]
pub struct WindowFaults {
    /// Faults that hold in the window.
    pub faults: Vec<ScheduledFault>,
    /// Instances this window is the heal window of.
    pub heals: Vec<String>,
}

/// The whole run's schedule, one entry per window.
#[derive(Debug, Clone, PartialEq, Default, Serialize, Deserialize)]
pub struct Schedule {
    /// Index = window index.
    pub windows: Vec<WindowFaults>,
}

impl Schedule {
    /// Every scheduled fault, in window order.
    pub fn faults(&self) -> impl Iterator<Item = &ScheduledFault> {
        self.windows.iter().flat_map(|w| w.faults.iter())
    }

    /// Windows the faults need at least, for a message: warm-up + one (or two, with heal) per
    /// auto-placed fault.
    pub fn windows_needed(specs: &[FaultSpec], warmup: u32) -> u32 {
        warmup
            + specs
                .iter()
                .map(|s| 1 + u32::from(s.heal_window))
                .sum::<u32>()
    }
}

/// Places `specs` over `windows` windows of which the first `warmup` are warm-up.
pub fn schedule(specs: &[FaultSpec], windows: u32, warmup: u32) -> Result<Schedule, String> {
    let mut plan = Schedule {
        windows: vec![WindowFaults::default(); windows as usize],
    };
    // Reserved: a window holding a fault, or the heal window of one.
    let mut faulted = vec![false; windows as usize];
    let mut healing = vec![false; windows as usize];
    fn place(
        plan: &mut Schedule,
        faulted: &mut [bool],
        healing: &mut [bool],
        spec: &FaultSpec,
        w: u32,
    ) {
        let instance = format!("{}@w{w}", spec.name);
        plan.windows[w as usize].faults.push(ScheduledFault {
            instance: instance.clone(),
            window: w,
            spec: spec.clone(),
        });
        faulted[w as usize] = true;
        if spec.heal_window {
            plan.windows[w as usize + 1].heals.push(instance);
            healing[w as usize + 1] = true;
        }
    }
    // Explicit windows first, so auto-placed faults flow around them.
    for spec in specs.iter().filter(|s| s.window.is_some()) {
        let w = spec.window.unwrap_or_default();
        if w >= windows {
            return Err(format!(
                "fault `{}` is set for window {w}, but the run has windows 0..={}",
                spec.name,
                windows.saturating_sub(1)
            ));
        }
        if w < warmup {
            return Err(format!(
                "fault `{}` is set for window {w}, a warm-up window (warm-up learns baselines; \
                 faults start at window {warmup})",
                spec.name
            ));
        }
        if spec.heal_window && w + 1 >= windows {
            return Err(format!(
                "fault `{}` in the last window leaves no heal window (add a window, or set \
                 heal_window = false)",
                spec.name
            ));
        }
        if healing[w as usize] {
            return Err(format!(
                "fault `{}` is set for window {w}, the heal window of an earlier fault",
                spec.name
            ));
        }
        if spec.heal_window && faulted[w as usize + 1] {
            return Err(format!(
                "fault `{}` in window {w} needs window {} to heal, which holds another fault",
                spec.name,
                w + 1
            ));
        }
        place(&mut plan, &mut faulted, &mut healing, spec, w);
    }
    let mut next = warmup;
    for spec in specs.iter().filter(|s| s.window.is_none()) {
        let free = |w: u32| {
            let w = w as usize;
            !faulted[w]
                && !healing[w]
                && (!spec.heal_window || (w + 1 < faulted.len() && !faulted[w + 1]))
        };
        let mut w = next;
        while w < windows && !free(w) {
            w += 1;
        }
        if w >= windows {
            return Err(format!(
                "not enough windows for the faults: {} faults need at least {} windows \
                 (warm-up {warmup} + a fault window and a heal window each), the run has \
                 {windows} (raise --duration or lower --interval)",
                specs.len(),
                Schedule::windows_needed(specs, warmup)
            ));
        }
        place(&mut plan, &mut faulted, &mut healing, spec, w);
        next = w + 1 + u32::from(spec.heal_window);
    }
    Ok(plan)
}

#[cfg(test)]
mod tests {
    use proptest::prelude::*;

    use super::*;
    use crate::faults::catalog;

    fn named(name: &str) -> FaultSpec {
        catalog::builtin(name).expect("built-in")
    }

    #[test]
    fn faults_follow_the_warmup_each_with_a_heal_window() {
        let specs = vec![named("high_rtt_peer"), named("partition_halves")];
        let s = schedule(&specs, 6, 1).unwrap();
        assert!(s.windows[0].faults.is_empty());
        assert_eq!(s.windows[1].faults[0].instance, "high_rtt_peer@w1");
        assert_eq!(s.windows[2].heals, vec!["high_rtt_peer@w1".to_string()]);
        assert_eq!(s.windows[3].faults[0].instance, "partition_halves@w3");
        assert_eq!(s.windows[4].heals.len(), 1);
        assert!(s.windows[5].faults.is_empty());
    }

    #[test]
    fn too_few_windows_is_refused_with_the_count() {
        let specs = vec![named("high_rtt_peer"), named("partition_halves")];
        let err = schedule(&specs, 4, 1).unwrap_err();
        assert!(err.contains("at least 5 windows"), "{err}");
    }

    #[test]
    fn explicit_windows_are_checked() {
        let mut f = named("stale_peer");
        f.window = Some(0);
        assert!(
            schedule(&[f.clone()], 4, 1)
                .unwrap_err()
                .contains("warm-up")
        );
        f.window = Some(3);
        assert!(
            schedule(&[f.clone()], 4, 1)
                .unwrap_err()
                .contains("no heal window")
        );
        f.window = Some(2);
        let mut g = named("lossy_peer");
        g.window = Some(3);
        assert!(
            schedule(&[f.clone(), g], 5, 1)
                .unwrap_err()
                .contains("heal window")
        );
        let auto = named("lossy_peer");
        let s = schedule(&[f, auto], 6, 1).unwrap();
        // The explicit fault holds window 2 (heal 3); the automatic one flows to window 4.
        assert_eq!(s.windows[2].faults[0].spec.name, "stale_peer");
        assert_eq!(s.windows[4].faults[0].spec.name, "lossy_peer");
    }

    proptest! {
        #[test]
        fn schedules_never_fault_warmups_or_heal_windows(
            picks in proptest::collection::vec((0usize..6, proptest::option::of(0u32..12), any::<bool>()), 0..6),
            windows in 1u32..14,
            warmup in 0u32..3,
        ) {
            let names = ["high_rtt_peer", "lossy_peer", "partition_pair", "partition_halves", "stale_peer", "restart_storm"];
            let specs: Vec<FaultSpec> = picks.iter().map(|(i, w, heal)| {
                let mut s = named(names[*i]);
                s.window = *w;
                s.heal_window = *heal;
                s
            }).collect();
            prop_assume!(warmup < windows);
            if let Ok(s) = schedule(&specs, windows, warmup) {
                prop_assert_eq!(s.faults().count(), specs.len());
                for (w, win) in s.windows.iter().enumerate() {
                    if !win.faults.is_empty() {
                        prop_assert!(w as u32 >= warmup);
                        prop_assert!(win.heals.is_empty(), "a heal window holds a fault");
                    }
                    for f in &win.faults {
                        if f.spec.heal_window {
                            prop_assert!(w + 1 < s.windows.len());
                            prop_assert!(s.windows[w + 1].faults.is_empty());
                            prop_assert!(s.windows[w + 1].heals.contains(&f.instance));
                        }
                    }
                }
            }
        }
    }
}
