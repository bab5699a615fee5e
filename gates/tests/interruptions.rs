//! Resumed runs: the span an interruption lost is an evidence gap judged UNKNOWN — never a
//! window, never a pass — and the `continuity` bar needs the lost window run again.

use soak_gates::model::{Interruption, Observations};
use soak_gates::testkit::FleetBuilder;
use soak_gates::{Outcome, Profile, evaluate};

fn broad() -> Profile {
    Profile::builtin("broad-launch").unwrap()
}

/// Four windows where window 2 was run again after a resume: its lost first attempt spans the
/// first half of the window's slot, the re-run starts at the resume.
fn resumed() -> Observations {
    let mut obs = FleetBuilder::new(4, 4).build();
    let w2 = obs.windows[2].clone();
    obs.run.interruptions.push(Interruption {
        window: 2,
        from_ms: w2.start_ms - 20_000,
        to_ms: w2.start_ms,
        cause: "soak was killed".into(),
    });
    obs
}

#[test]
fn a_lost_span_is_listed_unknown_and_a_rerun_window_keeps_the_soak_go() {
    let v = evaluate(&resumed(), &broad());
    assert_eq!(v.interruptions.len(), 1);
    assert_eq!(v.interruptions[0].verdict, Outcome::Unknown);
    assert_eq!(v.interruptions[0].window, 2);
    let bar = v.soak_bars.iter().find(|b| b.bar == "continuity").unwrap();
    assert_eq!(bar.verdict, Outcome::Go, "{bar:#?}");
    assert!(bar.reason.contains("window 2 lost 20 s"), "{}", bar.reason);
    assert!(
        bar.reason.contains("evidence gaps, not judged"),
        "{}",
        bar.reason
    );
    assert_eq!(v.windows.len(), 4);
    assert_eq!(v.verdict, Outcome::Go);
}

#[test]
fn a_lost_window_never_run_again_is_unknown() {
    let mut obs = resumed();
    // The recorded window 2 is the lost attempt itself (it starts before the resume).
    obs.run.interruptions[0].to_ms = obs.windows[2].start_ms + 1;
    let v = evaluate(&obs, &broad());
    let bar = v.soak_bars.iter().find(|b| b.bar == "continuity").unwrap();
    assert_eq!(bar.verdict, Outcome::Unknown, "{bar:#?}");
    assert!(bar.reason.contains("never run again"), "{}", bar.reason);
    assert_ne!(v.verdict, Outcome::Go);
}

#[test]
fn an_uninterrupted_run_has_no_continuity_bar() {
    let v = evaluate(&FleetBuilder::new(4, 4).build(), &broad());
    assert!(v.soak_bars.iter().all(|b| b.bar != "continuity"));
    assert!(v.interruptions.is_empty());
}
