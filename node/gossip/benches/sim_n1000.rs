//! Benchmark: the single- and multi-sender simulations at N=1000 (10–50 ms links, 30 rounds)
//! over seeds 0–7, against two references:
//! - **classic PlumTree in the same run**: this core with the paper's flooding start (every new
//!   neighbor eager) and a fixed 80 ms graft wait, i.e. the protocol before issue 14;
//! - **iroh-gossip's simulator**: run in the same session when `IROH_GOSSIP_SIM` names its
//!   `sim` binary (built from crates.io, see `docs/PERFORMANCE.md`), otherwise the numbers
//!   recorded from such a run ([`REFERENCE_RMR`], [`REFERENCE_MULTI_RMR`]).
//!
//! Then one N=10,000 single and multi run for scale (bounded views, per-publish work).
//!
//! `cargo bench -p soak-gossip --bench sim_n1000` (`SOAK_SIM_SKIP_10K=1` skips N=10,000).
//! Prints ratios (ours / reference; below 1.0 is better) — never asserts on time.

use std::{path::Path, process::Command, time::Duration, time::Instant};

use soak_gossip::{
    Config,
    sim::{
        REFERENCE_LDH, REFERENCE_MULTI_LDH, REFERENCE_MULTI_RMR, REFERENCE_RMR, Report, Scenario,
        SimParams, TARGET_LDH_MAX, TARGET_MULTI_RMR, TARGET_RMR, run,
    },
};

const SEEDS: [u64; 8] = [0, 1, 2, 3, 4, 5, 6, 7];

/// The protocol before issue 14: flooding start, fixed 80 ms graft wait, 60 ms repair floor
/// from the first request, the hop-count tree optimisation at 4.
fn classic() -> Config {
    let d = Config::default();
    Config {
        fresh_eager: usize::MAX,
        graft_timeout_initial: d.graft_timeout_1,
        graft_timeout_max: d.graft_timeout_1,
        repair_timeout_initial: d.graft_timeout_2,
        optimization_threshold: 4,
        ..d
    }
}

fn sim(peers: usize, scenario: Scenario, seed: u64, proto: Config) -> Report {
    let mut p = SimParams::new(peers, scenario, seed);
    p.net.proto = proto;
    match run(p) {
        Ok(r) => r,
        Err(e) => {
            eprintln!("{scenario} n={peers} seed {seed}: {e}");
            std::process::exit(1);
        }
    }
}

struct Summary {
    rmr: f64,
    ldh_mean: f64,
    ldh_max: u16,
    missed: u64,
    duration_ms: f64,
}

fn summarize(label: &str, scenario: Scenario, proto: &Config, verbose: bool) -> Summary {
    let mut s = Summary {
        rmr: 0.0,
        ldh_mean: 0.0,
        ldh_max: 0,
        missed: 0,
        duration_ms: 0.0,
    };
    for seed in SEEDS {
        let started = Instant::now();
        let r = sim(1000, scenario, seed, proto.clone());
        if verbose {
            let causes: Vec<String> = r
                .rmr_by_cause
                .iter()
                .filter(|(_, v)| **v >= 0.0005)
                .map(|(k, v)| format!("{k} {v:.3}"))
                .collect();
            println!(
                "  {label} seed {seed}: missed {} rmr {:.3} ldh mean {:.1} max {} round {:.0} ms \
                 eager p99 {} lazy p99 {} sends/publish/node p99 {:.1} wall {} ms [{}]",
                r.missed + r.missed_final,
                r.rmr,
                r.ldh.mean,
                r.ldh.max,
                r.duration_ms,
                r.eager_degree.p99,
                r.lazy_view.p99,
                r.sends_per_publish_per_node.p99,
                started.elapsed().as_millis(),
                causes.join(", "),
            );
        }
        s.rmr += r.rmr / SEEDS.len() as f64;
        s.ldh_mean += r.ldh.mean / SEEDS.len() as f64;
        s.duration_ms += r.duration_ms / SEEDS.len() as f64;
        s.ldh_max = s.ldh_max.max(r.ldh.max);
        s.missed += r.missed + r.missed_final;
    }
    s
}

/// Runs iroh-gossip's simulator (`sim run -c … -o … -s`) on the same scenarios and seeds and
/// returns (single RMR, single LDH, multi RMR, multi LDH): means over seeds of each seed's
/// mean, LDH converted to our hop count (+1).
fn iroh_reference(bin: &Path) -> Result<(f64, f64, f64, f64), String> {
    let dir = std::env::temp_dir().join(format!("soak-iroh-ref-{}", std::process::id()));
    std::fs::create_dir_all(&dir).map_err(|e| format!("create {}: {e}", dir.display()))?;
    let seeds: Vec<String> = SEEDS.iter().map(u64::to_string).collect();
    let toml = format!(
        "seeds = [{}]\nconfig.latency.dynamic = {{ min = \"10ms\", max = \"50ms\" }}\n\n\
         [[scenario]]\nsim = \"GossipSingle\"\nnodes = 1000\n\n\
         [[scenario]]\nsim = \"GossipMulti\"\nnodes = 1000\n",
        seeds.join(", ")
    );
    let config = dir.join("bench.toml");
    std::fs::write(&config, toml).map_err(|e| format!("write {}: {e}", config.display()))?;
    let out_dir = dir.join("out");
    let status = Command::new(bin)
        .args(["run", "-s", "-c"])
        .arg(&config)
        .arg("-o")
        .arg(&out_dir)
        .stdout(std::process::Stdio::null())
        .status()
        .map_err(|e| format!("run {}: {e}", bin.display()))?;
    if !status.success() {
        return Err(format!("{} exited with {status}", bin.display()));
    }
    let read = |name: &str| -> Result<(f64, f64), String> {
        let path = out_dir.join(format!("{name}-n1000-r30.results.json"));
        let text =
            std::fs::read_to_string(&path).map_err(|e| format!("read {}: {e}", path.display()))?;
        let v: serde_json::Value =
            serde_json::from_str(&text).map_err(|e| format!("parse {}: {e}", path.display()))?;
        let results = v["results"]
            .as_object()
            .ok_or_else(|| format!("{}: no results", path.display()))?;
        let n = results.len().max(1) as f64;
        let mean = |k: &str| {
            results
                .values()
                .filter_map(|r| r["mean"][k].as_f64())
                .sum::<f64>()
        };
        Ok((mean("rmr") / n, mean("ldh") / n + 1.0))
    };
    let (srmr, sldh) = read("GossipSingle")?;
    let (mrmr, mldh) = read("GossipMulti")?;
    let _ = std::fs::remove_dir_all(&dir);
    Ok((srmr, sldh, mrmr, mldh))
}

fn main() {
    println!("N=1000, 30 rounds, 10-50 ms links, seeds 0-7; ours vs classic PlumTree (same run)");
    let ours = Config::default();
    let rows = [
        (Scenario::Single, TARGET_RMR),
        (Scenario::Multi, TARGET_MULTI_RMR),
    ];
    let mut results = Vec::new();
    for (scenario, target) in rows {
        let o = summarize(&format!("{scenario} ours"), scenario, &ours, true);
        let c = summarize(&format!("{scenario} classic"), scenario, &classic(), false);
        println!(
            "{scenario}: ours rmr {:.3} ldh {:.1} (max {}) round {:.0} ms missed {} | classic rmr \
             {:.3} ldh {:.1} (max {}) round {:.0} ms | ratio rmr {:.2} ldh {:.2} | target rmr \
             <= {target}{}",
            o.rmr,
            o.ldh_mean,
            o.ldh_max,
            o.duration_ms,
            o.missed,
            c.rmr,
            c.ldh_mean,
            c.ldh_max,
            c.duration_ms,
            o.rmr / c.rmr,
            o.ldh_mean / c.ldh_mean,
            if scenario == Scenario::Single {
                format!(", ldh max <= {TARGET_LDH_MAX}")
            } else {
                String::new()
            },
        );
        results.push(o);
    }
    let (reference, source) = match std::env::var_os("IROH_GOSSIP_SIM") {
        Some(bin) => match iroh_reference(Path::new(&bin)) {
            Ok(r) => (r, "iroh-gossip sim, run now"),
            Err(e) => {
                eprintln!("IROH_GOSSIP_SIM: {e}; using the recorded reference");
                (
                    (
                        REFERENCE_RMR,
                        REFERENCE_LDH,
                        REFERENCE_MULTI_RMR,
                        REFERENCE_MULTI_LDH,
                    ),
                    "recorded",
                )
            }
        },
        None => (
            (
                REFERENCE_RMR,
                REFERENCE_LDH,
                REFERENCE_MULTI_RMR,
                REFERENCE_MULTI_LDH,
            ),
            "recorded (set IROH_GOSSIP_SIM to run it)",
        ),
    };
    let (srmr, sldh, mrmr, mldh) = reference;
    println!(
        "vs iroh-gossip ({source}): single rmr {:.3} / {srmr:.3} = {:.2}, ldh {:.1} / {sldh:.1} = \
         {:.2}; multi rmr {:.3} / {mrmr:.3} = {:.2}, ldh {:.1} / {mldh:.1} = {:.2}",
        results[0].rmr,
        results[0].rmr / srmr,
        results[0].ldh_mean,
        results[0].ldh_mean / sldh,
        results[1].rmr,
        results[1].rmr / mrmr,
        results[1].ldh_mean,
        results[1].ldh_mean / mldh,
    );
    if std::env::var_os("SOAK_SIM_SKIP_10K").is_none() {
        for scenario in [Scenario::Single, Scenario::Multi] {
            let started = Instant::now();
            let r = sim(10_000, scenario, 0, ours.clone());
            println!(
                "{scenario} N=10000: missed {} rmr {:.3} ldh mean {:.1} max {} round {:.0} ms \
                 eager max {} p99 {} lazy max {} p99 {} passive max {} sends/publish/node max \
                 {:.1} p99 {:.1} wall {:?}",
                r.missed + r.missed_final,
                r.rmr,
                r.ldh.mean,
                r.ldh.max,
                r.duration_ms,
                r.eager_degree.max,
                r.eager_degree.p99,
                r.lazy_view.max,
                r.lazy_view.p99,
                r.passive_view.max,
                r.sends_per_publish_per_node.max,
                r.sends_per_publish_per_node.p99,
                Duration::from_millis(started.elapsed().as_millis() as u64),
            );
        }
    }
}
