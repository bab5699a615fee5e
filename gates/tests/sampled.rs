//! Sampled Phase A matrices (fleets past `--full-matrix-max`): a window requires exactly the
//! pairs its sample names, and the soak-level delivery bar needs every ordered pair delivered
//! in some judged window — a soak too short to rotate through every partner is UNKNOWN (not
//! covered), never GO.

use proptest::prelude::*;
use soak_gates::model::{MatrixSample, Observations};
use soak_gates::testkit::FleetBuilder;
use soak_gates::{Outcome, Profile, Verdict, evaluate};

fn broad() -> Profile {
    Profile::builtin("broad-launch").unwrap()
}

/// The sample of `round` for `n` nodes and `k` partners (offsets `r·k + 1 …`, wrapping).
fn sample(n: usize, k: usize, round: usize) -> MatrixSample {
    let rounds = (n - 1).div_ceil(k);
    let round = round % rounds;
    MatrixSample {
        partners: k as u32,
        nodes: n as u32,
        offsets: (0..k)
            .map(|t| ((round * k + t) % (n - 1) + 1) as u32)
            .collect(),
        round: round as u32,
        rounds: rounds as u32,
    }
}

/// A healthy fleet whose every window ran a sampled matrix (round = window index − warm-up).
fn sampled_fleet(n: usize, k: usize, windows: usize, warmup: usize) -> Observations {
    let mut obs = FleetBuilder {
        warmup,
        ..FleetBuilder::new(n, windows)
    }
    .build();
    for w in 0..windows {
        let m = sample(n, k, w + 1_000 - warmup);
        let pa = obs.windows[w].phase_a.as_mut().unwrap();
        pa.pairs.retain(|p| {
            let from: usize = p.from[5..].parse().unwrap();
            let to: usize = p.to[5..].parse().unwrap();
            m.requires(from, to, n)
        });
        pa.sample = Some(m);
    }
    obs
}

fn soak_bar<'v>(v: &'v Verdict, id: &str) -> &'v soak_gates::BarResult {
    v.soak_bars.iter().find(|b| b.bar == id).unwrap()
}

#[test]
fn a_sampled_window_requires_only_its_pairs_and_says_so() {
    let obs = sampled_fleet(12, 3, 4, 0);
    let v = evaluate(&obs, &broad());
    let b = v.windows[0]
        .bars
        .iter()
        .find(|b| b.bar == "phase_a")
        .unwrap();
    assert_eq!(b.verdict, Outcome::Go, "{b:#?}");
    assert_eq!(b.threshold, "== 36");
    assert!(
        b.reason.contains("sampled 3 of 11 per node"),
        "{}",
        b.reason
    );
    let pa = v.windows[0].phase_a.as_ref().unwrap();
    assert_eq!(pa.sampled.as_deref(), Some("sampled 3 of 11 per node"));
    // 4 judged windows × 3 partners cover all 11 partners of every node.
    let agg = soak_bar(&v, "phase_a_aggregate");
    assert_eq!(agg.verdict, Outcome::Go, "{agg:#?}");
    assert!(
        agg.reason.contains("all 132 ordered pairs delivered"),
        "{}",
        agg.reason
    );
    assert_eq!(v.verdict, Outcome::Go);
}

#[test]
fn a_soak_too_short_to_cover_every_pair_is_not_a_pass_of_coverage() {
    let obs = sampled_fleet(12, 3, 2, 0);
    let v = evaluate(&obs, &broad());
    assert!(v.windows.iter().all(|w| w.verdict == Outcome::Go));
    let agg = soak_bar(&v, "phase_a_aggregate");
    assert_eq!(agg.verdict, Outcome::Unknown, "{agg:#?}");
    assert!(agg.reason.contains("NOT COVERED"), "{}", agg.reason);
    assert!(
        agg.reason
            .contains("a full rotation takes 4 judged windows"),
        "{}",
        agg.reason
    );
    let coverage = v.phase_a.as_ref().unwrap().coverage.as_ref().unwrap();
    assert_eq!((coverage.covered, coverage.pairs), (72, 132));
    assert_eq!(v.verdict, Outcome::Unknown);
}

#[test]
fn warm_up_windows_do_not_count_toward_coverage() {
    // Four windows, but the first is warm-up: three judged rounds of four.
    let obs = sampled_fleet(12, 3, 4, 1);
    let v = evaluate(&obs, &broad());
    assert_eq!(soak_bar(&v, "phase_a_aggregate").verdict, Outcome::Unknown);
}

#[test]
fn a_skipped_sampled_pair_is_missing_not_passed() {
    let mut obs = sampled_fleet(12, 3, 4, 0);
    obs.windows[1].phase_a.as_mut().unwrap().pairs.remove(5);
    let v = evaluate(&obs, &broad());
    let b = v.windows[1]
        .bars
        .iter()
        .find(|b| b.bar == "phase_a")
        .unwrap();
    assert_eq!(b.verdict, Outcome::Unknown, "{b:#?}");
    assert!(
        b.reason.contains("1 of 36 pairs never attempted"),
        "{}",
        b.reason
    );
}

#[test]
fn a_sample_for_another_fleet_size_requires_nothing_and_never_passes() {
    let mut obs = sampled_fleet(12, 3, 4, 0);
    obs.windows[0]
        .phase_a
        .as_mut()
        .unwrap()
        .sample
        .as_mut()
        .unwrap()
        .nodes = 13;
    let v = evaluate(&obs, &broad());
    let b = v.windows[0]
        .bars
        .iter()
        .find(|b| b.bar == "phase_a")
        .unwrap();
    assert_eq!(b.verdict, Outcome::Unknown, "{b:#?}");
}

proptest! {
    /// Whatever is dropped or failed, GO needs every required pair of every judged window
    /// delivered and every ordered pair delivered in some judged window.
    #[test]
    fn sampled_matrices_never_pass_without_full_coverage(
        n in 11usize..20,
        k in 1usize..8,
        windows in 1usize..8,
        damage in proptest::collection::vec((0usize..8, 0usize..400, 0u8..3), 0..4),
    ) {
        let mut obs = sampled_fleet(n, k, windows, 0);
        for (w, i, how) in damage {
            let w = w % windows;
            let pairs = &mut obs.windows[w].phase_a.as_mut().unwrap().pairs;
            if pairs.is_empty() { continue; }
            let i = i % pairs.len();
            match how {
                0 => { pairs.remove(i); }
                1 => { pairs[i].outcome = "timeout".into(); pairs[i].delivered = false; }
                _ => { pairs[i].inbox_copies = Some(2); }
            }
        }
        let v = evaluate(&obs, &broad());
        if v.verdict == Outcome::Go {
            let mut covered = vec![false; n * n];
            for record in &obs.windows {
                let pa = record.phase_a.as_ref().unwrap();
                let m = pa.sample.as_ref().unwrap();
                for from in 0..n {
                    for to in 0..n {
                        if !m.requires(from, to, n) { continue; }
                        let found = pa.pairs.iter().find(|p| p.from == format!("node-{from}") && p.to == format!("node-{to}"));
                        prop_assert!(found.is_some_and(|p| p.is_delivered()), "GO with {from}->{to} not delivered");
                        covered[from * n + to] = true;
                    }
                }
            }
            for from in 0..n {
                for to in 0..n {
                    prop_assert!(from == to || covered[from * n + to], "GO with {from}->{to} never covered");
                }
            }
        }
    }
}
