//! The `soak-sim` command line, shared by the `soak-sim` binary of soak-node and the
//! `sim` example of this crate. Dependency-light: flags are parsed by hand.
//!
//! ```text
//! soak-sim --peers N --scenario single|multi|churn|partition|slow --seed S [--json]
//!          [--rounds R] [--latency-ms MIN-MAX] [--loss P] [--fresh-eager K]
//! ```
//! `--fresh-eager K` makes a node's first K new neighbors eager (`Config::fresh_eager`; the
//! default 0 starts every link lazy, 6 or more is the PlumTree paper's flood of the first
//! message) — to measure what the lazy start buys. The summary line and the JSON report carry
//! the reference simulator's numbers and this run's ratio against them.
//! The seed defaults to `$SEED`, then 0. Exit codes: 0 every property held, 1 a property
//! failed (the report says which; replay with the printed seed), 2 usage error, 3 the run
//! never settled.

use std::{str::FromStr, time::Duration, time::Instant};

use super::{Report, Scenario, SimError, SimParams, run};

/// Parsed command line.
#[derive(Debug, Clone, PartialEq)]
pub struct Args {
    /// `--peers`.
    pub peers: usize,
    /// `--scenario`.
    pub scenario: Scenario,
    /// `--seed` (or `$SEED`).
    pub seed: u64,
    /// `--json`: print the JSON report instead of a summary.
    pub json: bool,
    /// `--rounds`.
    pub rounds: Option<usize>,
    /// `--latency-ms MIN-MAX`.
    pub latency_ms: Option<(u64, u64)>,
    /// `--loss`.
    pub loss: Option<f64>,
    /// `--fresh-eager`.
    pub fresh_eager: Option<usize>,
}

/// Usage text.
pub const USAGE: &str = "usage: soak-sim --peers N --scenario single|multi|churn|partition|slow \
--seed S [--json] [--rounds R] [--latency-ms MIN-MAX] [--loss P] [--fresh-eager K]";

fn value<'a>(flag: &str, it: &mut impl Iterator<Item = &'a String>) -> Result<&'a String, String> {
    it.next().ok_or_else(|| format!("{flag} needs a value"))
}

fn number<T: FromStr>(flag: &str, v: &str) -> Result<T, String> {
    v.parse()
        .map_err(|_| format!("{flag}: {v:?} is not a valid number"))
}

/// Parses the arguments after the program name. `env_seed` is `$SEED`, if set.
pub fn parse(args: &[String], env_seed: Option<&str>) -> Result<Args, String> {
    let mut peers = None;
    let mut scenario = Scenario::Single;
    let mut seed = match env_seed {
        Some(s) => Some(number::<u64>("SEED", s)?),
        None => None,
    };
    let mut json = false;
    let mut rounds = None;
    let mut latency_ms = None;
    let mut loss = None;
    let mut fresh_eager = None;
    let mut it = args.iter();
    while let Some(arg) = it.next() {
        let (flag, inline) = match arg.split_once('=') {
            Some((f, v)) if f.starts_with("--") => (f, Some(v.to_string())),
            _ => (arg.as_str(), None),
        };
        let val = |it: &mut std::slice::Iter<'_, String>| -> Result<String, String> {
            match &inline {
                Some(v) => Ok(v.clone()),
                None => value(flag, it).cloned(),
            }
        };
        match flag {
            "--peers" => peers = Some(number::<usize>(flag, &val(&mut it)?)?),
            "--scenario" => scenario = val(&mut it)?.parse()?,
            "--seed" => seed = Some(number::<u64>(flag, &val(&mut it)?)?),
            "--json" => json = true,
            "--rounds" => rounds = Some(number::<usize>(flag, &val(&mut it)?)?),
            "--fresh-eager" => fresh_eager = Some(number::<usize>(flag, &val(&mut it)?)?),
            "--loss" => {
                let p = number::<f64>(flag, &val(&mut it)?)?;
                if !(0.0..1.0).contains(&p) {
                    return Err(format!("--loss must be in [0, 1), got {p}"));
                }
                loss = Some(p);
            }
            "--latency-ms" => {
                let v = val(&mut it)?;
                let (lo, hi) = v
                    .split_once('-')
                    .ok_or_else(|| format!("--latency-ms wants MIN-MAX, got {v:?}"))?;
                let (lo, hi) = (number::<u64>(flag, lo)?, number::<u64>(flag, hi)?);
                if lo == 0 || lo > hi {
                    return Err(format!("--latency-ms wants 0 < MIN <= MAX, got {v:?}"));
                }
                latency_ms = Some((lo, hi));
            }
            "-h" | "--help" => return Err(USAGE.to_string()),
            other => return Err(format!("unknown argument {other:?}\n{USAGE}")),
        }
    }
    let peers = peers.ok_or_else(|| format!("--peers is required\n{USAGE}"))?;
    if !(2..=100_000).contains(&peers) {
        return Err(format!("--peers must be in 2..=100000, got {peers}"));
    }
    if rounds == Some(0) {
        return Err("--rounds must be at least 1".into());
    }
    Ok(Args {
        peers,
        scenario,
        seed: seed.unwrap_or(0),
        json,
        rounds,
        latency_ms,
        loss,
        fresh_eager,
    })
}

/// Simulation parameters for parsed arguments.
pub fn params(args: &Args) -> SimParams {
    let mut p = SimParams::new(args.peers, args.scenario, args.seed);
    if let Some(r) = args.rounds {
        p.rounds = r;
    }
    if let Some((lo, hi)) = args.latency_ms {
        p.net.latency_min = Duration::from_millis(lo);
        p.net.latency_max = Duration::from_millis(hi);
    }
    if let Some(l) = args.loss {
        p.net.loss = l;
    }
    if let Some(k) = args.fresh_eager {
        p.net.proto.fresh_eager = k;
    }
    p
}

fn summary(r: &Report, wall_ms: u128) -> String {
    let causes: Vec<String> = r
        .rmr_by_cause
        .iter()
        .filter(|(_, v)| **v >= 0.0005)
        .map(|(k, v)| format!("{k}={v:.3}"))
        .collect();
    let causes = if causes.is_empty() {
        "none".to_string()
    } else {
        causes.join(",")
    };
    format!(
        "{scenario} peers={peers} seed={seed} rounds={rounds} missed={missed} missed_final={mf} \
rmr={rmr:.3} (reference {rr:.3}, ratio {rx:.2}; by cause {causes}) \
ldh(mean={lm:.1} max={lx}; reference {rl:.1}, ratio {lr:.2}) duration={d:.0}ms eager(max={em} p99={ep}) \
lazy(max={lzm} p99={lzp}) sends/publish/node(max={sm:.1} p99={sp:.1}) wall={wall_ms}ms {verdict}",
        rr = r.reference.rmr,
        rx = r.reference.rmr_ratio,
        rl = r.reference.ldh,
        lr = r.reference.ldh_ratio,
        scenario = r.scenario,
        peers = r.peers,
        seed = r.seed,
        rounds = r.rounds,
        missed = r.missed,
        mf = r.missed_final,
        rmr = r.rmr,
        lm = r.ldh.mean,
        lx = r.ldh.max,
        d = r.duration_ms,
        em = r.eager_degree.max,
        ep = r.eager_degree.p99,
        lzm = r.lazy_view.max,
        lzp = r.lazy_view.p99,
        sm = r.sends_per_publish_per_node.max,
        sp = r.sends_per_publish_per_node.p99,
        verdict = if r.passed { "PASS" } else { "FAIL" },
    )
}

/// Runs the command line; returns the process exit code. Prints the report (JSON with
/// `--json`) on stdout and diagnostics on stderr.
pub fn main_with(args: &[String], env_seed: Option<&str>) -> i32 {
    let args = match parse(args, env_seed) {
        Ok(a) => a,
        Err(e) => {
            eprintln!("soak-sim: {e}");
            return 2;
        }
    };
    let started = Instant::now();
    let report = match run(params(&args)) {
        Ok(r) => r,
        Err(e @ SimError::Unsettled { .. }) => {
            eprintln!("soak-sim: {e}");
            return 3;
        }
        Err(e) => {
            eprintln!("soak-sim: {e}");
            return 2;
        }
    };
    let wall_ms = started.elapsed().as_millis();
    if args.json {
        let mut value = match serde_json::to_value(&report) {
            Ok(v) => v,
            Err(e) => {
                eprintln!("soak-sim: failed to encode the report: {e}");
                return 2;
            }
        };
        if let Some(obj) = value.as_object_mut() {
            obj.insert("wall_ms".into(), serde_json::Value::from(wall_ms as u64));
        }
        println!("{value}");
    } else {
        println!("{}", summary(&report, wall_ms));
    }
    if !report.passed {
        eprintln!(
            "soak-sim: FAILED: {}; replay with --seed {} (or SEED={})",
            report.failures.join("; "),
            report.seed,
            report.seed
        );
        return 1;
    }
    0
}

#[cfg(test)]
mod tests {
    use super::*;

    fn s(v: &[&str]) -> Vec<String> {
        v.iter().map(|x| (*x).to_string()).collect()
    }

    #[test]
    fn parses_the_documented_command_line() {
        let a = parse(
            &s(&[
                "--peers",
                "1000",
                "--scenario",
                "churn",
                "--seed",
                "7",
                "--json",
            ]),
            None,
        );
        assert_eq!(
            a,
            Ok(Args {
                peers: 1000,
                scenario: Scenario::Churn,
                seed: 7,
                json: true,
                rounds: None,
                latency_ms: None,
                loss: None,
                fresh_eager: None,
            })
        );
        let b = parse(
            &s(&[
                "--peers=50",
                "--latency-ms",
                "5-20",
                "--loss=0.01",
                "--fresh-eager",
                "6",
            ]),
            Some("9"),
        );
        let b = b.ok();
        assert_eq!(
            b.as_ref().map(|b| b.seed),
            Some(9),
            "SEED env is the default seed"
        );
        assert_eq!(b.as_ref().and_then(|b| b.latency_ms), Some((5, 20)));
        assert_eq!(b.as_ref().and_then(|b| b.loss), Some(0.01));
        assert_eq!(b.as_ref().and_then(|b| b.fresh_eager), Some(6));
        assert_eq!(b.as_ref().map(|b| params(b).net.proto.fresh_eager), Some(6));
    }

    #[test]
    fn rejects_bad_input_with_a_message() {
        for bad in [
            vec!["--scenario", "single"],
            vec!["--peers", "x"],
            vec!["--peers", "1"],
            vec!["--peers", "10", "--scenario", "bogus"],
            vec!["--peers", "10", "--latency-ms", "50-10"],
            vec!["--peers", "10", "--loss", "1.5"],
            vec!["--peers", "10", "--frobnicate"],
            vec!["--peers", "10", "--fresh-eager", "-1"],
            vec!["--peers"],
        ] {
            let r = parse(&s(&bad), None);
            assert!(r.is_err(), "{bad:?} should be rejected");
        }
        assert!(parse(&s(&["--peers", "10"]), Some("nope")).is_err());
        assert_eq!(main_with(&s(&["--peers", "1"]), None), 2);
    }
}
