//! The guard's clock: CLOCK_BOOTTIME, read from `/proc/uptime` (std only, no `unsafe`).
//!
//! Wall time is useless for a lease (NTP steps, an operator's `date -s`); `Instant` is
//! monotonic but process-local, and the lease is written by one process (`guard renew`) and read
//! by another (the watcher). `/proc/uptime`'s first field is the kernel's boot-time clock
//! (monotonic, counts through suspend) in centiseconds, the same for every process on the host.

use std::path::Path;

/// Parses the first field of `/proc/uptime` (`"12345.67 23456.78\n"`) into milliseconds.
pub fn parse_uptime(text: &str) -> Option<u64> {
    let first = text.split_ascii_whitespace().next()?;
    let (secs, frac) = first.split_once('.').unwrap_or((first, "0"));
    let secs: u64 = secs.parse().ok()?;
    if frac.is_empty() || !frac.bytes().all(|b| b.is_ascii_digit()) {
        return None;
    }
    // Up to millisecond precision: pad or cut the fraction to three digits.
    let mut digits: String = frac.chars().take(3).collect();
    while digits.len() < 3 {
        digits.push('0');
    }
    let millis: u64 = digits.parse().ok()?;
    secs.checked_mul(1000)?.checked_add(millis)
}

/// CLOCK_BOOTTIME now, milliseconds, from `uptime_path` (`/proc/uptime`).
pub fn boot_ms_from(uptime_path: &Path) -> std::io::Result<u64> {
    let text = std::fs::read_to_string(uptime_path)?;
    parse_uptime(&text).ok_or_else(|| {
        std::io::Error::new(
            std::io::ErrorKind::InvalidData,
            format!("cannot parse {}: {text:?}", uptime_path.display()),
        )
    })
}

/// CLOCK_BOOTTIME now, milliseconds.
pub fn boot_ms() -> std::io::Result<u64> {
    boot_ms_from(Path::new("/proc/uptime"))
}

/// Wall clock now, unix milliseconds (for result files only; never for the lease).
pub fn unix_ms() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| u64::try_from(d.as_millis()).unwrap_or(u64::MAX))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn uptime_parses_to_milliseconds() {
        assert_eq!(parse_uptime("12345.67 999.00\n"), Some(12_345_670));
        assert_eq!(parse_uptime("5.1 1"), Some(5_100));
        assert_eq!(parse_uptime("7 1"), Some(7_000));
        assert_eq!(parse_uptime("1.23456 1"), Some(1_234));
        for bad in ["", "x.1 2", "1.x 2", "-1.0 2", "1. 2"] {
            assert_eq!(parse_uptime(bad), None, "{bad:?}");
        }
    }

    #[test]
    fn the_boot_clock_moves_forward() {
        let a = boot_ms().expect("/proc/uptime readable");
        std::thread::sleep(std::time::Duration::from_millis(30));
        let b = boot_ms().expect("/proc/uptime readable");
        assert!(b >= a + 20, "{a} -> {b}");
    }
}
