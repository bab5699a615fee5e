//! Run ids and UTC formatting (pure arithmetic, no clock).

use soak_gates::display::{utc_datetime, utc_parts};

/// `2026-11-22T01:09:46Z` (see [`soak_gates::display::utc_datetime`]).
pub fn utc_rfc3339(unix_ms: u64) -> String {
    utc_datetime(unix_ms)
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
