//! Run ids and UTC formatting (pure arithmetic, no clock).

/// Civil date and time of a unix-millisecond instant, UTC: `(y, m, d, hh, mm, ss)`.
pub fn utc_parts(unix_ms: u64) -> (i64, u32, u32, u32, u32, u32) {
    let secs = (unix_ms / 1000) as i64;
    let days = secs.div_euclid(86_400);
    let rem = secs.rem_euclid(86_400);
    // Howard Hinnant's days-to-civil algorithm.
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

/// `2026-11-22T01:09:46Z`.
pub fn utc_rfc3339(unix_ms: u64) -> String {
    let (y, mo, d, h, mi, s) = utc_parts(unix_ms);
    format!("{y:04}-{mo:02}-{d:02}T{h:02}:{mi:02}:{s:02}Z")
}

/// A run id: the UTC start as `YYYYMMDDTHHMMSSZ`, then `-label` with the label lower-cased,
/// reduced to `[a-z0-9-]` and cut to 32 characters (no suffix for an empty label).
pub fn run_id(started_at_unix_ms: u64, label: &str) -> String {
    let (y, mo, d, h, mi, s) = utc_parts(started_at_unix_ms);
    let mut id = format!("{y:04}{mo:02}{d:02}T{h:02}{mi:02}{s:02}Z");
    let mut clean = String::new();
    for c in label.chars() {
        let c = c.to_ascii_lowercase();
        if c.is_ascii_alphanumeric() {
            clean.push(c);
        } else if !clean.ends_with('-') && !clean.is_empty() {
            clean.push('-');
        }
        if clean.len() >= 32 {
            break;
        }
    }
    let clean = clean.trim_end_matches('-');
    if !clean.is_empty() {
        id.push('-');
        id.push_str(clean);
    }
    id
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn known_instants() {
        assert_eq!(utc_rfc3339(0), "1970-01-01T00:00:00Z");
        // 2026-11-22T01:09:46Z
        assert_eq!(utc_rfc3339(1_795_309_786_000), "2026-11-22T01:09:46Z");
        // leap day
        assert_eq!(utc_rfc3339(951_782_400_000), "2000-02-29T00:00:00Z");
        assert_eq!(utc_rfc3339(4_102_444_799_999), "2099-12-31T23:59:59Z");
    }

    #[test]
    fn run_ids() {
        assert_eq!(
            run_id(1_795_309_786_123, "Nightly CI"),
            "20261122T010946Z-nightly-ci"
        );
        assert_eq!(run_id(0, ""), "19700101T000000Z");
        assert_eq!(run_id(0, "../../x"), "19700101T000000Z-x");
        assert_eq!(run_id(0, "--a--b--"), "19700101T000000Z-a-b");
        let long = run_id(0, &"a".repeat(100));
        assert_eq!(long.len(), "19700101T000000Z-".len() + 32);
    }
}
