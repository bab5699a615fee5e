//! Ansible host patterns for `--limit`: which hosts of an inventory a command works on.
//!
//! A pattern is a list of terms separated by `:` or `,` (Ansible accepts both). A term is
//! `all` (or `*`), a group name (its hosts, children included), a host name, or a glob over
//! host and group names (`*`, `?`, `[abc]`, `[a-z]`). A term prefixed with `&` intersects, one
//! prefixed with `!` excludes. As in Ansible, the order of terms does not matter: the union of
//! the plain terms, then every `&` intersection, then every `!` exclusion. Regular-expression
//! terms (`~…`) are refused with a clear error rather than read as globs.
//!
//! Not to be confused with `pattern.rs`, the *inventory* patterns (`node[01:06]` ranges) that
//! expand one line of an inventory file into many hosts.

use std::collections::BTreeSet;

use crate::model::{Host, Inventory};

/// A parsed `--limit` pattern.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct HostPattern {
    text: String,
    union: Vec<String>,
    intersect: Vec<String>,
    exclude: Vec<String>,
}

/// The hosts a pattern selected.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Selection {
    /// Selected hosts, in inventory order.
    pub hosts: Vec<Host>,
    /// Terms that matched no host or group (Ansible warns about these).
    pub unmatched: Vec<String>,
}

impl HostPattern {
    /// Parses `text`; the error says what is wrong with which term.
    pub fn parse(text: &str) -> Result<HostPattern, String> {
        let mut pattern = HostPattern {
            text: text.trim().to_string(),
            union: Vec::new(),
            intersect: Vec::new(),
            exclude: Vec::new(),
        };
        for raw in text.split([':', ',']) {
            let term = raw.trim();
            if term.is_empty() {
                continue;
            }
            let (list, body) = if let Some(rest) = term.strip_prefix('&') {
                (&mut pattern.intersect, rest)
            } else if let Some(rest) = term.strip_prefix('!') {
                (&mut pattern.exclude, rest)
            } else {
                (&mut pattern.union, term)
            };
            if body.is_empty() {
                return Err(format!("`{term}`: `&` and `!` need a host, group or glob"));
            }
            if body.starts_with('~') {
                return Err(format!(
                    "`{term}`: regular-expression patterns (`~…`) are not supported; use globs \
                     (`web*`), groups, `&` and `!`"
                ));
            }
            check_glob(body).map_err(|why| format!("`{term}`: {why}"))?;
            list.push(body.to_string());
        }
        if pattern.union.is_empty() && pattern.intersect.is_empty() && pattern.exclude.is_empty() {
            return Err("the pattern is empty".to_string());
        }
        Ok(pattern)
    }

    /// The pattern as given.
    pub fn as_str(&self) -> &str {
        &self.text
    }

    /// The hosts of `inventory` this pattern selects. A pattern of only `&`/`!` terms starts
    /// from every host (as Ansible's `--limit '!db'` does).
    pub fn select(&self, inventory: &Inventory) -> Selection {
        let mut unmatched = Vec::new();
        let mut matched = |term: &str| {
            let names = term_hosts(inventory, term);
            if names.is_empty() {
                unmatched.push(term.to_string());
            }
            names
        };
        let mut chosen: BTreeSet<String> = if self.union.is_empty() {
            inventory.hosts.iter().map(|h| h.name.clone()).collect()
        } else {
            self.union.iter().flat_map(|t| matched(t)).collect()
        };
        for term in &self.intersect {
            let keep = matched(term);
            chosen.retain(|name| keep.contains(name));
        }
        for term in &self.exclude {
            let drop = matched(term);
            chosen.retain(|name| !drop.contains(name));
        }
        Selection {
            hosts: inventory
                .hosts
                .iter()
                .filter(|h| chosen.contains(&h.name))
                .cloned()
                .collect(),
            unmatched,
        }
    }
}

/// Host names one term stands for: `all`/`*`, a group, a host, or a glob over both.
fn term_hosts(inventory: &Inventory, term: &str) -> BTreeSet<String> {
    let in_group = |group: &str| -> Vec<String> {
        inventory
            .hosts
            .iter()
            .filter(|h| {
                group == "all"
                    || h.groups.iter().any(|g| g == group)
                    || (group == "ungrouped" && h.groups.is_empty())
            })
            .map(|h| h.name.clone())
            .collect()
    };
    if term == "all" || term == "*" {
        return in_group("all").into_iter().collect();
    }
    let mut out = BTreeSet::new();
    let is_glob = term.contains(['*', '?', '[']);
    let groups = inventory
        .groups
        .keys()
        .map(String::as_str)
        .chain(["ungrouped"]);
    for group in groups {
        if (is_glob && glob_match(term, group)) || group == term {
            out.extend(in_group(group));
        }
    }
    for host in &inventory.hosts {
        if (is_glob && glob_match(term, &host.name)) || host.name == term {
            out.insert(host.name.clone());
        }
    }
    out
}

fn check_glob(term: &str) -> Result<(), String> {
    let mut chars = term.chars();
    while let Some(c) = chars.next() {
        if c == '[' {
            let mut closed = false;
            for d in chars.by_ref() {
                if d == ']' {
                    closed = true;
                    break;
                }
            }
            if !closed {
                return Err("unclosed `[` in the glob".to_string());
            }
        }
    }
    Ok(())
}

/// fnmatch-style glob: `*` any run, `?` one character, `[abc]` / `[a-z]` / `[!a]` one of a set.
pub fn glob_match(glob: &str, text: &str) -> bool {
    let g: Vec<char> = glob.chars().collect();
    let t: Vec<char> = text.chars().collect();
    // Iterative matcher with one backtrack point for the last `*`.
    let (mut gi, mut ti) = (0usize, 0usize);
    let mut star: Option<(usize, usize)> = None;
    while ti < t.len() {
        if gi < g.len() {
            match g[gi] {
                '*' => {
                    star = Some((gi, ti));
                    gi += 1;
                    continue;
                }
                '?' => {
                    gi += 1;
                    ti += 1;
                    continue;
                }
                '[' => {
                    if let Some((matched, next)) = class_match(&g, gi, t[ti])
                        && matched
                    {
                        gi = next;
                        ti += 1;
                        continue;
                    }
                }
                c if c == t[ti] => {
                    gi += 1;
                    ti += 1;
                    continue;
                }
                _ => {}
            }
        }
        match star {
            Some((sg, st)) => {
                gi = sg + 1;
                ti = st + 1;
                star = Some((sg, st + 1));
            }
            None => return false,
        }
    }
    g[gi..].iter().all(|&c| c == '*')
}

/// Whether `c` is in the class starting at `g[start] == '['`; with the index after `]`.
fn class_match(g: &[char], start: usize, c: char) -> Option<(bool, usize)> {
    let mut i = start + 1;
    let negate = matches!(g.get(i), Some('!' | '^'));
    if negate {
        i += 1;
    }
    let mut found = false;
    let mut first = true;
    while i < g.len() {
        if g[i] == ']' && !first {
            return Some((found != negate, i + 1));
        }
        first = false;
        if i + 2 < g.len() && g[i + 1] == '-' && g[i + 2] != ']' {
            if g[i] <= c && c <= g[i + 2] {
                found = true;
            }
            i += 3;
        } else {
            if g[i] == c {
                found = true;
            }
            i += 1;
        }
    }
    None
}

#[cfg(test)]
mod tests {
    use std::path::Path;

    use super::*;

    fn inventory() -> Inventory {
        let text = "\
[web]
web1
web2
[db]
db1
db2
[eu:children]
web
[eu]
db1
[lonely]
";
        let mut inv = crate::ansible_ini::parse(Path::new("inv.ini"), text).expect("parses");
        // An ungrouped host.
        inv.hosts
            .push(crate::model::Host::with_defaults("solo", "192.0.2.9"));
        inv
    }

    fn names(pattern: &str) -> Vec<String> {
        let p = HostPattern::parse(pattern).expect("parses");
        p.select(&inventory())
            .hosts
            .into_iter()
            .map(|h| h.name)
            .collect()
    }

    #[test]
    fn groups_hosts_globs_union_intersection_exclusion() {
        assert_eq!(names("all"), ["web1", "web2", "db1", "db2", "solo"]);
        assert_eq!(names("web"), ["web1", "web2"]);
        assert_eq!(names("eu"), ["web1", "web2", "db1"], "children count");
        assert_eq!(names("db2"), ["db2"]);
        assert_eq!(names("web*"), ["web1", "web2"]);
        assert_eq!(names("*2"), ["web2", "db2"]);
        assert_eq!(names("db[12]"), ["db1", "db2"]);
        assert_eq!(names("web:db2"), ["web1", "web2", "db2"]);
        assert_eq!(names("web,db2"), ["web1", "web2", "db2"]);
        assert_eq!(names("eu:&db"), ["db1"]);
        assert_eq!(names("eu:!web1"), ["web2", "db1"]);
        assert_eq!(names("!eu"), ["db2", "solo"]);
        assert_eq!(
            names("all:!web:&db"),
            ["db1", "db2"],
            "order does not matter"
        );
        assert_eq!(names("ungrouped"), ["solo"]);
    }

    #[test]
    fn unmatched_terms_are_reported() {
        let p = HostPattern::parse("web:nope:!zzz*").expect("parses");
        let s = p.select(&inventory());
        assert_eq!(s.unmatched, ["nope", "zzz*"]);
        let p = HostPattern::parse("lonely").expect("parses");
        assert!(
            p.select(&inventory()).hosts.is_empty(),
            "an empty group selects nothing"
        );
    }

    #[test]
    fn bad_patterns_are_errors() {
        for bad in ["", " : ", "!", "&", "~web.*", "db[1"] {
            assert!(HostPattern::parse(bad).is_err(), "{bad:?}");
        }
    }

    #[test]
    fn globs() {
        assert!(glob_match("a*c", "abbbc"));
        assert!(glob_match("*", ""));
        assert!(!glob_match("a?c", "ac"));
        assert!(glob_match("n[0-9][0-9]", "n07"));
        assert!(!glob_match("n[!0-9]", "n7"));
        assert!(glob_match("*.example.*", "h1.example.invalid"));
        assert!(!glob_match("web", "web1"));
    }
}
