//! Test-only misbehaviour (`--test-leak-bytes-per-sec`, `--test-leak-fds-per-sec`): a node
//! that leaks memory or file descriptors steadily, so the orchestrator's leak bar can be proven
//! against a real process. Hard caps keep a forgotten flag from taking the machine down.

use std::time::Duration;

use tracing::warn;

/// Most heap a leaking node retains.
pub const MAX_LEAK_BYTES: u64 = 512 * 1024 * 1024;
/// Descriptors always left free for the node's own sockets and files.
const FD_MARGIN: u64 = 256;
/// Most descriptors a leaking node holds, whatever its limit.
const MAX_LEAK_FDS: u64 = 65_536;
/// How often the leak grows (ten steps a second keeps it steady).
const STEP: Duration = Duration::from_millis(100);

/// Most descriptors to leak under a soft limit of `limit` (1024 when unknown): at most half of
/// it, at most `limit − 256`, at most 65 536.
pub fn fd_cap(limit: Option<u64>) -> u64 {
    let limit = limit.unwrap_or(1024);
    (limit / 2)
        .min(limit.saturating_sub(FD_MARGIN))
        .min(MAX_LEAK_FDS)
}

/// Spreads `per_sec` over steps of [`STEP`]: the amount due at step `k` (1-based), so the sum
/// over any second is `per_sec` exactly.
fn due(per_sec: u64, k: u64) -> u64 {
    let steps = 1000 / STEP.as_millis() as u64;
    per_sec * k / steps - per_sec * (k - 1) / steps
}

/// Runs the requested leaks until the caps; returns at once when both rates are zero.
pub async fn leak(bytes_per_sec: u64, fds_per_sec: u64) {
    if bytes_per_sec == 0 && fds_per_sec == 0 {
        return;
    }
    let fd_limit = fd_cap(crate::procstats::max_open_files());
    warn!(
        bytes_per_sec,
        fds_per_sec,
        max_bytes = MAX_LEAK_BYTES,
        max_fds = fd_limit,
        "TEST HOOK: this node leaks memory and/or file descriptors on purpose"
    );
    let mut heap: Vec<Vec<u8>> = Vec::new();
    let mut held = 0u64;
    let mut fds: Vec<std::fs::File> = Vec::new();
    let mut capped = (false, false);
    let mut tick = tokio::time::interval(STEP);
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    let mut k = 0u64;
    loop {
        tick.tick().await;
        k = k % 10 + 1;
        let bytes = due(bytes_per_sec, k).min(MAX_LEAK_BYTES - held);
        if bytes > 0 {
            // A non-zero fill writes every page, so the leak shows in the resident set.
            heap.push(vec![0xa5; bytes as usize]);
            held += bytes;
        } else if bytes_per_sec > 0 && !capped.0 {
            capped.0 = true;
            warn!(held, "TEST HOOK: memory leak reached its cap; holding");
        }
        for _ in 0..due(fds_per_sec, k) {
            if fds.len() as u64 >= fd_limit {
                if !capped.1 {
                    capped.1 = true;
                    warn!(
                        held = fds.len(),
                        "TEST HOOK: fd leak reached its cap; holding"
                    );
                }
                break;
            }
            match std::fs::File::open("/dev/null") {
                Ok(f) => fds.push(f),
                Err(e) => {
                    warn!(error = %e, "TEST HOOK: cannot open another descriptor; holding");
                    capped.1 = true;
                    break;
                }
            }
        }
        let memory_done = bytes_per_sec == 0 || capped.0;
        let fds_done = fds_per_sec == 0 || capped.1;
        if memory_done && fds_done {
            // Everything capped: keep what is held until the process ends.
            std::future::pending::<()>().await;
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn rates_spread_evenly_over_a_second() {
        for per_sec in [0, 1, 7, 10, 999, 1_048_576] {
            let total: u64 = (1..=10).map(|k| due(per_sec, k)).sum();
            assert_eq!(total, per_sec);
            let max = (1..=10).map(|k| due(per_sec, k)).max().unwrap_or(0);
            assert!(max <= per_sec.div_ceil(10), "{per_sec}: {max}");
        }
    }

    #[test]
    fn the_fd_cap_leaves_room_under_any_limit() {
        assert_eq!(fd_cap(Some(1024)), 512);
        assert_eq!(fd_cap(None), 512);
        assert_eq!(fd_cap(Some(300)), 44);
        assert_eq!(fd_cap(Some(100)), 0);
        assert_eq!(fd_cap(Some(1 << 20)), 65_536);
    }
}
