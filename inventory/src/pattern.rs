//! Host patterns shared by the Ansible and pssh formats: ranges (`node[01:06]`, `db-[a:c]`) and
//! a trailing `:port`.

use crate::model::MAX_HOSTS;

/// Expands every `[start:end]` / `[start:end:stride]` range of `pattern` (numeric with the
/// width of a zero-padded start, or single letters), like Ansible's `expand_hostname_range`.
pub(crate) fn expand_ranges(pattern: &str) -> Result<Vec<String>, String> {
    let Some(open) = pattern.find('[') else {
        if pattern.contains(']') {
            return Err(format!("unbalanced `]` in host pattern `{pattern}`"));
        }
        return Ok(vec![pattern.to_string()]);
    };
    let close = pattern[open..]
        .find(']')
        .map(|i| open + i)
        .ok_or_else(|| format!("unclosed `[` in host pattern `{pattern}`"))?;
    let head = &pattern[..open];
    let body = &pattern[open + 1..close];
    let tail = &pattern[close + 1..];
    let parts: Vec<&str> = body.split(':').collect();
    let (start, end, stride) = match parts.as_slice() {
        [start, end] => (*start, *end, 1usize),
        [start, end, stride] => {
            let stride = stride
                .parse::<usize>()
                .ok()
                .filter(|s| *s > 0)
                .ok_or_else(|| format!("bad stride `{stride}` in host range `[{body}]`"))?;
            (*start, *end, stride)
        }
        _ => {
            return Err(format!(
                "host range `[{body}]` must be `[start:end]` or `[start:end:stride]`"
            ));
        }
    };
    let items = range_items(start, end, stride)
        .map_err(|e| format!("bad host range `[{body}]` in `{pattern}`: {e}"))?;
    let tails = expand_ranges(tail)?;
    if items.len().saturating_mul(tails.len()) > MAX_HOSTS {
        return Err(format!(
            "host pattern `{pattern}` expands to more than {MAX_HOSTS} hosts (soak's limit)"
        ));
    }
    let mut out = Vec::with_capacity(items.len() * tails.len());
    for item in &items {
        for t in &tails {
            out.push(format!("{head}{item}{t}"));
        }
    }
    Ok(out)
}

fn range_items(start: &str, end: &str, stride: usize) -> Result<Vec<String>, String> {
    let start_alpha = start.len() == 1 && start.chars().all(|c| c.is_ascii_alphabetic());
    let end_alpha = end.len() == 1 && end.chars().all(|c| c.is_ascii_alphabetic());
    if start_alpha || end_alpha {
        let (Some(s), Some(e)) = (start.chars().next(), end.chars().next()) else {
            return Err("letter ranges need both ends".to_string());
        };
        if !(start_alpha && end_alpha) || s > e {
            return Err(format!(
                "`{start}` to `{end}` is not an increasing letter range"
            ));
        }
        return Ok((s..=e).step_by(stride).map(String::from).collect());
    }
    let s: u64 = if start.is_empty() {
        0
    } else {
        start
            .parse()
            .map_err(|_| format!("`{start}` is not a number"))?
    };
    let e: u64 = end
        .parse()
        .map_err(|_| format!("`{end}` is not a number"))?;
    if s > e {
        return Err(format!("start {start} is after end {end}"));
    }
    // Counted before anything is built, so `node[1:99999999]` is refused at once.
    if (e - s) / stride as u64 >= MAX_HOSTS as u64 {
        return Err(format!("more than {MAX_HOSTS} hosts (soak's limit)"));
    }
    let width = if start.len() > 1 && start.starts_with('0') {
        start.len()
    } else {
        0
    };
    Ok((s..=e)
        .step_by(stride)
        .map(|n| format!("{n:0width$}"))
        .collect())
}

/// Splits a trailing `:port` off a host pattern (outside `[...]`); `[v6]:port` keeps the
/// brackets off the host. A bare IPv6 address (several colons) has no port.
pub(crate) fn split_port(pattern: &str) -> Result<(String, Option<u16>), String> {
    if let Some(rest) = pattern.strip_prefix('[') {
        // `[fd00::1]:22` or `[fd00::1]` — but `[a:c]host` is a range, handled by callers that
        // only reach here for a leading bracket containing two or more colons.
        if let Some(close) = rest.find(']') {
            let inside = &rest[..close];
            if inside.matches(':').count() >= 2 {
                let after = &rest[close + 1..];
                return match after.strip_prefix(':') {
                    Some(port) => Ok((inside.to_string(), Some(parse_port(port)?))),
                    None if after.is_empty() => Ok((inside.to_string(), None)),
                    None => Err(format!("unexpected `{after}` after `[{inside}]`")),
                };
            }
        }
    }
    let mut depth = 0i32;
    let mut colons = Vec::new();
    for (i, c) in pattern.char_indices() {
        match c {
            '[' => depth += 1,
            ']' => depth -= 1,
            ':' if depth == 0 => colons.push(i),
            _ => {}
        }
    }
    match colons.as_slice() {
        [] => Ok((pattern.to_string(), None)),
        [i] => Ok((
            pattern[..*i].to_string(),
            Some(parse_port(&pattern[i + 1..])?),
        )),
        _ => Ok((pattern.to_string(), None)),
    }
}

fn parse_port(text: &str) -> Result<u16, String> {
    text.parse::<u16>()
        .ok()
        .filter(|p| *p != 0)
        .ok_or_else(|| format!("`{text}` is not a port number 1-65535"))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn numeric_range_keeps_zero_padding() {
        assert_eq!(
            expand_ranges("node[01:03]").ok(),
            Some(vec!["node01".into(), "node02".into(), "node03".into()])
        );
        assert_eq!(
            expand_ranges("n[8:10].x").ok(),
            Some(vec!["n8.x".into(), "n9.x".into(), "n10.x".into()])
        );
    }

    #[test]
    fn letter_range_and_stride_and_two_ranges() {
        assert_eq!(
            expand_ranges("db-[a:c]").ok(),
            Some(vec!["db-a".into(), "db-b".into(), "db-c".into()])
        );
        assert_eq!(
            expand_ranges("n[1:5:2]").ok(),
            Some(vec!["n1".into(), "n3".into(), "n5".into()])
        );
        assert_eq!(expand_ranges("r[1:2]n[a:b]").map(|v| v.len()).ok(), Some(4));
    }

    #[test]
    fn bad_ranges_are_errors() {
        assert!(expand_ranges("node[06:01]").is_err());
        assert!(expand_ranges("node[01:").is_err());
        assert!(expand_ranges("node[a:3]").is_err());
        assert!(expand_ranges("node[1:2:0]").is_err());
        assert!(expand_ranges("node]").is_err());
    }

    #[test]
    fn port_splits_outside_brackets_only() {
        assert_eq!(split_port("h:2222").ok(), Some(("h".into(), Some(2222))));
        assert_eq!(
            split_port("node[01:03]:2222").ok(),
            Some(("node[01:03]".into(), Some(2222)))
        );
        assert_eq!(
            split_port("node[01:03]").ok(),
            Some(("node[01:03]".into(), None))
        );
        assert_eq!(split_port("fd00::1").ok(), Some(("fd00::1".into(), None)));
        assert_eq!(
            split_port("[fd00::1]:22").ok(),
            Some(("fd00::1".into(), Some(22)))
        );
        assert!(split_port("h:0").is_err());
        assert!(split_port("h:abc").is_err());
    }
}
