//! Process figures for `/v1/diagnostics`: resident and virtual memory, open and maximum file
//! descriptors, threads, CPU seconds and start time, read from `/proc/self` at every snapshot
//! (Linux). The gate that judges leaks reads these, so a figure that cannot be read is left
//! out, never reported as zero.
//!
//! `/metrics` exports the same set through the `prometheus` crate's process collector (which
//! reads the same files); the one difference is `process_cpu_seconds_total`, which that
//! collector rounds down to whole seconds.

use std::collections::BTreeMap;
use std::path::Path;

use soak_api::gauges as g;

/// Clock ticks per second of the `/proc` ABI (`USER_HZ`). Linux fixes it at 100 for user space
/// on every architecture it ships, whatever the kernel's internal `HZ`.
const USER_HZ: f64 = 100.0;

/// One reading of the process figures, by gauge name; absent entries could not be read.
pub fn sample() -> BTreeMap<&'static str, f64> {
    sample_from(Path::new("/proc"))
}

/// Reads from a procfs mounted at `proc` (tests point it at a fixture).
fn sample_from(proc: &Path) -> BTreeMap<&'static str, f64> {
    let me = proc.join("self");
    let mut out = BTreeMap::new();
    let read = |name: &str| std::fs::read_to_string(me.join(name)).ok();
    if let Some(status) = read("status") {
        let s = parse_status(&status);
        put(&mut out, g::PROCESS_RESIDENT_MEMORY_BYTES, s.rss_bytes);
        put(&mut out, g::PROCESS_VIRTUAL_MEMORY_BYTES, s.vm_bytes);
        put(&mut out, g::PROCESS_THREADS, s.threads);
    }
    if let Some(stat) = read("stat").as_deref().and_then(parse_stat) {
        out.insert(
            g::PROCESS_CPU_SECONDS_TOTAL,
            (stat.utime + stat.stime) as f64 / USER_HZ,
        );
        let btime = std::fs::read_to_string(proc.join("stat"))
            .ok()
            .as_deref()
            .and_then(parse_btime);
        if let Some(btime) = btime {
            out.insert(
                g::PROCESS_START_TIME_SECONDS,
                btime as f64 + stat.starttime as f64 / USER_HZ,
            );
        }
    }
    if let Ok(dir) = std::fs::read_dir(me.join("fd")) {
        // read_dir holds one descriptor of its own while listing; it is not the process's.
        let n = dir.count().saturating_sub(1);
        out.insert(g::PROCESS_OPEN_FDS, n as f64);
    }
    if let Some(max) = read("limits").as_deref().and_then(parse_max_open_files) {
        out.insert(g::PROCESS_MAX_FDS, max as f64);
    }
    out
}

fn put(out: &mut BTreeMap<&'static str, f64>, name: &'static str, v: Option<u64>) {
    if let Some(v) = v {
        out.insert(name, v as f64);
    }
}

/// The figures of `/proc/self/status` we use.
#[derive(Debug, Default, PartialEq, Eq)]
struct Status {
    rss_bytes: Option<u64>,
    vm_bytes: Option<u64>,
    threads: Option<u64>,
}

fn parse_status(text: &str) -> Status {
    let kib = |v: &str| -> Option<u64> {
        let mut it = v.split_whitespace();
        let n: u64 = it.next()?.parse().ok()?;
        match it.next() {
            Some("kB") => n.checked_mul(1024),
            _ => None,
        }
    };
    let mut s = Status::default();
    for line in text.lines() {
        let Some((key, value)) = line.split_once(':') else {
            continue;
        };
        match key {
            "VmRSS" => s.rss_bytes = kib(value),
            "VmSize" => s.vm_bytes = kib(value),
            "Threads" => s.threads = value.trim().parse().ok(),
            _ => {}
        }
    }
    s
}

/// The fields of `/proc/self/stat` we use, in clock ticks.
#[derive(Debug, PartialEq, Eq)]
struct Stat {
    utime: u64,
    stime: u64,
    starttime: u64,
}

/// Fields after the command name (which may hold spaces and parentheses: split at the last
/// `)`); field 3 (state) is the first of them.
fn parse_stat(text: &str) -> Option<Stat> {
    let (_, rest) = text.rsplit_once(')')?;
    let fields: Vec<&str> = rest.split_whitespace().collect();
    let field = |n: usize| -> Option<u64> { fields.get(n.checked_sub(3)?)?.parse().ok() };
    Some(Stat {
        utime: field(14)?,
        stime: field(15)?,
        starttime: field(22)?,
    })
}

/// `btime` of `/proc/stat`: boot time, unix seconds.
fn parse_btime(text: &str) -> Option<u64> {
    text.lines()
        .find_map(|l| l.strip_prefix("btime "))
        .and_then(|v| v.trim().parse().ok())
}

/// Soft limit of `Max open files` in `/proc/self/limits` (`None` when unlimited or unreadable).
fn parse_max_open_files(text: &str) -> Option<u64> {
    let line = text.lines().find(|l| l.starts_with("Max open files"))?;
    line["Max open files".len()..]
        .split_whitespace()
        .next()?
        .parse()
        .ok()
}

/// The soft limit on open file descriptors of this process, if readable.
pub fn max_open_files() -> Option<u64> {
    std::fs::read_to_string("/proc/self/limits")
        .ok()
        .as_deref()
        .and_then(parse_max_open_files)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn status_stat_and_limits_parse() {
        let status = "Name:\tsoak-node\nVmSize:\t  123456 kB\nVmRSS:\t    2048 kB\nThreads:\t7\n";
        assert_eq!(
            parse_status(status),
            Status {
                rss_bytes: Some(2048 * 1024),
                vm_bytes: Some(123_456 * 1024),
                threads: Some(7),
            }
        );
        assert_eq!(parse_status("VmRSS: lots\n"), Status::default());
        let stat = "4242 (soak (x) y) S 1 4242 4242 0 -1 4194560 1 0 0 0 250 50 0 0 20 0 9 0 \
                    12345 9252864 1280 18446744073709551615";
        assert_eq!(
            parse_stat(stat),
            Some(Stat {
                utime: 250,
                stime: 50,
                starttime: 12_345
            })
        );
        assert_eq!(parse_stat("1 (x) S 1"), None);
        assert_eq!(
            parse_btime("cpu 1 2\nbtime 1700000000\n"),
            Some(1_700_000_000)
        );
        let limits = "Limit                     Soft Limit           Hard Limit           Units\n\
                      Max open files            1024                 524288               files\n";
        assert_eq!(parse_max_open_files(limits), Some(1024));
        let unlimited =
            "Max open files            unlimited            unlimited            files\n";
        assert_eq!(parse_max_open_files(unlimited), None);
    }

    #[test]
    fn unreadable_figures_are_absent_not_zero() {
        let dir = tempfile::tempdir().unwrap();
        let me = dir.path().join("self");
        std::fs::create_dir_all(&me).unwrap();
        std::fs::write(me.join("status"), "VmRSS:\t4 kB\n").unwrap();
        let got = sample_from(dir.path());
        assert_eq!(got.get(g::PROCESS_RESIDENT_MEMORY_BYTES), Some(&4096.0));
        for name in [
            g::PROCESS_VIRTUAL_MEMORY_BYTES,
            g::PROCESS_OPEN_FDS,
            g::PROCESS_MAX_FDS,
            g::PROCESS_CPU_SECONDS_TOTAL,
            g::PROCESS_START_TIME_SECONDS,
        ] {
            assert!(!got.contains_key(name), "{name} must be absent: {got:?}");
        }
    }

    #[cfg(target_os = "linux")]
    #[test]
    fn this_process_reports_every_figure() {
        let got = sample();
        for name in g::PROCESS {
            assert!(got.contains_key(name), "{name} missing: {got:?}");
        }
        assert!(got[g::PROCESS_RESIDENT_MEMORY_BYTES] > 0.0);
        assert!(got[g::PROCESS_OPEN_FDS] >= 3.0);
        let now = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .unwrap()
            .as_secs_f64();
        let start = got[g::PROCESS_START_TIME_SECONDS];
        assert!(
            start <= now + 2.0 && start > now - 86_400.0 * 30.0,
            "{start}"
        );
    }
}
