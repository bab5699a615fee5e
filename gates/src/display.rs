//! Numbers and times for people: rounded to what a reader can use. JSON keeps full precision
//! (`BarResult::value` is never rounded); only the words and tables use these.

/// A number for people: whole numbers as integers; others to 3 significant digits, in
/// scientific notation when very small or very large (`2.5e-5`, `0.247`, `1.23e7`); `∞`.
pub fn human_number(v: f64) -> String {
    if v.is_nan() {
        return "NaN".to_string();
    }
    if v.is_infinite() {
        return if v > 0.0 { "∞" } else { "-∞" }.to_string();
    }
    if v.fract() == 0.0 && v.abs() < 1e15 {
        return format!("{}", v as i64);
    }
    let magnitude = v.abs();
    if (1e-3..1e6).contains(&magnitude) {
        // 3 significant digits, trailing zeros trimmed.
        let decimals = (2 - magnitude.log10().floor() as i32).max(0) as usize;
        let text = format!("{v:.decimals$}");
        trim_zeros(&text)
    } else {
        let text = format!("{v:.2e}");
        match text.split_once('e') {
            Some((mantissa, exponent)) => format!("{}e{exponent}", trim_zeros(mantissa)),
            None => text,
        }
    }
}

fn trim_zeros(text: &str) -> String {
    if text.contains('.') {
        text.trim_end_matches('0').trim_end_matches('.').to_string()
    } else {
        text.to_string()
    }
}

/// A byte count for people: `512 B`, `4 MiB`, `1.5 GiB` (binary units, 3 significant digits).
pub fn human_bytes(bytes: f64) -> String {
    const UNITS: [&str; 5] = ["B", "KiB", "MiB", "GiB", "TiB"];
    let mut value = bytes;
    let mut unit = 0;
    while value.abs() >= 1024.0 && unit + 1 < UNITS.len() {
        value /= 1024.0;
        unit += 1;
    }
    format!("{} {}", human_number(value), UNITS[unit])
}

/// A value of a gauge for people: bytes for `*_bytes` gauges, else a number.
pub fn human_gauge(gauge: &str, value: f64) -> String {
    if gauge.ends_with("_bytes") {
        human_bytes(value)
    } else {
        human_number(value)
    }
}

/// A percentage for people, 3 significant digits: `0.0523` → `5.23 %`.
pub fn human_percent(fraction: f64) -> String {
    format!("{} %", human_number(fraction * 100.0))
}

/// A duration for people: `850 ms`, `12.5 s`, `3 min 20 s`, `2 h 5 min`.
pub fn human_duration(ms: u64) -> String {
    if ms < 1_000 {
        format!("{ms} ms")
    } else if ms < 60_000 {
        format!("{} s", human_number(((ms as f64) / 100.0).round() / 10.0))
    } else if ms < 3_600_000 {
        let s = ms / 1_000;
        if s.is_multiple_of(60) {
            format!("{} min", s / 60)
        } else {
            format!("{} min {} s", s / 60, s % 60)
        }
    } else {
        let min = ms / 60_000;
        if min.is_multiple_of(60) {
            format!("{} h", min / 60)
        } else {
            format!("{} h {} min", min / 60, min % 60)
        }
    }
}

/// Civil date and time of a unix-millisecond instant, UTC: `(y, m, d, hh, mm, ss)`
/// (proleptic Gregorian, Howard Hinnant's days-to-civil algorithm; no clock read).
pub fn utc_parts(unix_ms: u64) -> (i64, u32, u32, u32, u32, u32) {
    let secs = (unix_ms / 1000) as i64;
    let days = secs.div_euclid(86_400);
    let rem = secs.rem_euclid(86_400);
    let z = days + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z.rem_euclid(146_097);
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let day = (doy - (153 * mp + 2) / 5 + 1) as u32;
    let month = if mp < 10 { mp + 3 } else { mp - 9 } as u32;
    let year = yoe + era * 400 + i64::from(month <= 2);
    (
        year,
        month,
        day,
        (rem / 3600) as u32,
        (rem % 3600 / 60) as u32,
        (rem % 60) as u32,
    )
}

/// Unix milliseconds as UTC `YYYY-MM-DDTHH:MM:SSZ`.
pub fn utc_datetime(unix_ms: u64) -> String {
    let (y, mo, d, h, mi, s) = utc_parts(unix_ms);
    format!("{y:04}-{mo:02}-{d:02}T{h:02}:{mi:02}:{s:02}Z")
}

/// Unix milliseconds as UTC `HH:MM:SSZ`.
pub fn utc_time(unix_ms: u64) -> String {
    let (_, _, _, h, mi, s) = utc_parts(unix_ms);
    format!("{h:02}:{mi:02}:{s:02}Z")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn numbers_are_rounded_for_people() {
        assert_eq!(human_number(3.0), "3");
        assert_eq!(human_number(0.247_123_9), "0.247");
        assert_eq!(human_number(0.25), "0.25");
        assert_eq!(human_number(2.5e-5), "2.5e-5");
        assert_eq!(human_number(0.000_123_456), "1.23e-4");
        assert_eq!(human_number(1_234.567), "1235");
        assert_eq!(human_number(12.345_6), "12.3");
        assert_eq!(human_number(-0.012_34), "-0.0123");
        assert_eq!(human_number(f64::INFINITY), "∞");
        assert_eq!(human_number(1.5e7), "15000000");
        assert_eq!(human_number(1.234_5e7 + 0.5), "1.23e7");
        assert_eq!(human_percent(0.052_31), "5.23 %");
        assert_eq!(human_bytes(4_194_304.0), "4 MiB");
        assert_eq!(human_bytes(1_610_612_736.0), "1.5 GiB");
        assert_eq!(human_bytes(-3_145_728.0), "-3 MiB");
        assert_eq!(human_gauge("process_open_fds", 8.0), "8");
    }

    #[test]
    fn durations_and_times() {
        assert_eq!(human_duration(850), "850 ms");
        assert_eq!(human_duration(12_540), "12.5 s");
        assert_eq!(human_duration(200_000), "3 min 20 s");
        assert_eq!(human_duration(1_200_000), "20 min");
        assert_eq!(human_duration(7_500_000), "2 h 5 min");
        assert_eq!(utc_datetime(0), "1970-01-01T00:00:00Z");
        assert_eq!(utc_datetime(1_795_309_786_000), "2026-11-22T01:09:46Z");
        assert_eq!(utc_time(1_795_309_786_999), "01:09:46Z");
        assert_eq!(utc_datetime(951_782_400_000), "2000-02-29T00:00:00Z");
    }
}
