//! Benchmark: the issue-4 single-sender simulation at N=1000 (10–50 ms links, 30 rounds) over
//! four seeds, compared with the reference implementation's published numbers (iroh-gossip's
//! simulator, GossipSingle n=1000: RMR 0.08, LDH 13.8), plus one N=10,000 run for scale.
//!
//! `cargo bench -p soak-gossip --bench sim_n1000` (set `SOAK_SIM_SKIP_10K=1` to skip N=10,000).
//! Prints ratios (ours / reference; below 1.0 is better) — never asserts on time.

use std::time::Instant;

use soak_gossip::sim::{REFERENCE_LDH, REFERENCE_RMR, Scenario, SimParams, run};

fn main() {
    let seeds = [0u64, 1, 2, 3];
    let mut rmr = Vec::new();
    let mut ldh_mean = Vec::new();
    let mut ldh_max = 0u16;
    println!("single sender, N=1000, 30 rounds, 10-50 ms links");
    for seed in seeds {
        let started = Instant::now();
        let r = match run(SimParams::new(1000, Scenario::Single, seed)) {
            Ok(r) => r,
            Err(e) => {
                eprintln!("seed {seed}: {e}");
                std::process::exit(1);
            }
        };
        println!(
            "  seed {seed}: missed {} rmr {:.3} ldh mean {:.1} max {} eager p99 {} lazy p99 {} \
             sends/publish/node p99 {:.1} wall {} ms{}",
            r.missed,
            r.rmr,
            r.ldh.mean,
            r.ldh.max,
            r.eager_degree.p99,
            r.lazy_view.p99,
            r.sends_per_publish_per_node.p99,
            started.elapsed().as_millis(),
            if r.passed { "" } else { " FAILED" },
        );
        rmr.push(r.rmr);
        ldh_mean.push(r.ldh.mean);
        ldh_max = ldh_max.max(r.ldh.max);
    }
    let mean = |v: &[f64]| v.iter().sum::<f64>() / v.len() as f64;
    let (m_rmr, m_ldh) = (mean(&rmr), mean(&ldh_mean));
    println!(
        "mean over seeds: rmr {m_rmr:.3} (reference {REFERENCE_RMR}, ratio {:.2}), \
         ldh {m_ldh:.1} (reference {REFERENCE_LDH}, ratio {:.2}), ldh max {ldh_max}",
        m_rmr / REFERENCE_RMR,
        m_ldh / REFERENCE_LDH,
    );
    if std::env::var_os("SOAK_SIM_SKIP_10K").is_none() {
        let started = Instant::now();
        match run(SimParams::new(10_000, Scenario::Single, 0)) {
            Ok(r) => println!(
                "single sender, N=10000: missed {} rmr {:.3} ldh mean {:.1} max {} eager p99 {} \
                 lazy p99 {} sends/publish/node p99 {:.1} wall {} ms",
                r.missed,
                r.rmr,
                r.ldh.mean,
                r.ldh.max,
                r.eager_degree.p99,
                r.lazy_view.p99,
                r.sends_per_publish_per_node.p99,
                started.elapsed().as_millis()
            ),
            Err(e) => {
                eprintln!("N=10000: {e}");
                std::process::exit(1);
            }
        }
    }
}
