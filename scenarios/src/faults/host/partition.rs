//! Partitions with iptables and ip6tables (pure builders and parsers).
//!
//! Our own chains `SOAK-IN` and `SOAK-OUT` in the filter table, jumped to from `INPUT` and
//! `OUTPUT` at position 1 (the jump carries `-m comment --comment soak:jump`). Each rule matches
//! the peer's address, UDP and the overlay port, and is tagged `-m comment --comment
//! soak:RUN:TOKEN`:
//!
//! - inbound from a peer: `-A SOAK-IN -s PEER -p udp --dport OUR_PORT … -j DROP`;
//! - outbound to a peer: `-A SOAK-OUT -d PEER -p udp --dport PEER_PORT … -j DROP`.
//!
//! Built-in chains are never flushed, reordered or given a policy; only our jump is inserted or
//! deleted. A chain left behind by an earlier run ("Chain already exists", chaosd #178) is
//! reused. Revert deletes exactly this fault's rules (by their full spec, so only its token's);
//! a chain that is then empty loses its jump and is deleted. Works the same on the nft and the
//! legacy backend: the commands are the backend's own binaries.

use std::collections::{BTreeMap, BTreeSet};
use std::net::IpAddr;

use serde::{Deserialize, Serialize};
use soak_inventory::remote::sh_quote;

use super::caps::Firewall;

/// Inbound chain.
pub const CHAIN_IN: &str = "SOAK-IN";
/// Outbound chain.
pub const CHAIN_OUT: &str = "SOAK-OUT";
/// Comment on our jumps from INPUT/OUTPUT.
pub const JUMP_COMMENT: &str = "soak:jump";

/// Which way a rule drops.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Direction {
    /// Packets from the peer to this host.
    In,
    /// Packets from this host to the peer.
    Out,
}

/// One DROP rule on one host.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
pub struct PartitionRule {
    /// Which way.
    pub direction: Direction,
    /// The peer's name (for evidence).
    pub peer: String,
    /// The peer's address.
    pub address: IpAddr,
    /// The overlay UDP port matched: this host's own port for [`Direction::In`], the peer's for
    /// [`Direction::Out`].
    pub port: u16,
}

/// A fleet member as the partition builders see it: name, overlay addresses (one or both
/// families) and overlay port.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Member {
    /// Inventory name.
    pub name: String,
    /// Overlay addresses (IPv4 and/or IPv6).
    pub addresses: Vec<IpAddr>,
    /// Overlay UDP port.
    pub port: u16,
}

fn drop_between(rules: &mut BTreeMap<String, BTreeSet<PartitionRule>>, from: &Member, to: &Member) {
    // On `to`: nothing from `from` comes in. On `from`: nothing to `to` goes out.
    for address in &from.addresses {
        rules
            .entry(to.name.clone())
            .or_default()
            .insert(PartitionRule {
                direction: Direction::In,
                peer: from.name.clone(),
                address: *address,
                port: to.port,
            });
    }
    for address in &to.addresses {
        rules
            .entry(from.name.clone())
            .or_default()
            .insert(PartitionRule {
                direction: Direction::Out,
                peer: to.name.clone(),
                address: *address,
                port: to.port,
            });
    }
}

fn collect(
    rules: BTreeMap<String, BTreeSet<PartitionRule>>,
) -> BTreeMap<String, Vec<PartitionRule>> {
    rules
        .into_iter()
        .map(|(host, set)| (host, set.into_iter().collect()))
        .collect()
}

/// Rules per host cutting `a` and `b` apart, both ways (each side drops in and out).
pub fn pair(a: &Member, b: &Member) -> BTreeMap<String, Vec<PartitionRule>> {
    let mut rules = BTreeMap::new();
    drop_between(&mut rules, a, b);
    drop_between(&mut rules, b, a);
    collect(rules)
}

/// Rules per host cutting every member of `left` from every member of `right`, both ways.
pub fn halves(left: &[Member], right: &[Member]) -> BTreeMap<String, Vec<PartitionRule>> {
    let mut rules = BTreeMap::new();
    for a in left {
        for b in right {
            drop_between(&mut rules, a, b);
            drop_between(&mut rules, b, a);
        }
    }
    collect(rules)
}

/// Rules so that `from`'s overlay packets never reach `to` while `to`'s still reach `from`:
/// dropped on arrival at `to` (`SOAK-IN`), so `to`'s DROP counters show every packet `from`
/// sent. (Dropping them at `from` as well would hide them from `to`'s counters.)
pub fn one_way(from: &Member, to: &Member) -> BTreeMap<String, Vec<PartitionRule>> {
    let rules: Vec<PartitionRule> = from
        .addresses
        .iter()
        .map(|address| PartitionRule {
            direction: Direction::In,
            peer: from.name.clone(),
            address: *address,
            port: to.port,
        })
        .collect();
    BTreeMap::from([(to.name.clone(), rules)])
}

/// The comment of a fault's rules.
pub fn comment(run_id: &str, token: &str) -> String {
    format!("soak:{run_id}:{token}")
}

/// The rule spec after `-A CHAIN` (also used with `-C` and `-D`).
pub fn rule_spec(rule: &PartitionRule, comment: &str) -> String {
    let who = match rule.direction {
        Direction::In => "-s",
        Direction::Out => "-d",
    };
    let prefix = if rule.address.is_ipv4() { 32 } else { 128 };
    format!(
        "{who} {addr}/{prefix} -p udp -m udp --dport {port} -m comment --comment {comment} -j DROP",
        addr = rule.address,
        port = rule.port,
        comment = sh_quote(comment),
    )
}

/// The chain of a rule.
pub fn chain(direction: Direction) -> &'static str {
    match direction {
        Direction::In => CHAIN_IN,
        Direction::Out => CHAIN_OUT,
    }
}

fn parent(chain: &str) -> &'static str {
    if chain == CHAIN_IN { "INPUT" } else { "OUTPUT" }
}

/// The command of the rule's family, if the host has it.
pub fn command_for<'a>(firewall: &'a Firewall, address: &IpAddr) -> Option<&'a str> {
    if address.is_ipv4() {
        Some(firewall.iptables.as_str())
    } else {
        firewall.ip6tables.as_deref()
    }
}

/// The commands involved in `rules` (IPv4 and/or IPv6), deduplicated.
fn commands<'a>(firewall: &'a Firewall, rules: &[PartitionRule]) -> Vec<&'a str> {
    let mut out: Vec<&str> = Vec::new();
    for rule in rules {
        if let Some(c) = command_for(firewall, &rule.address)
            && !out.contains(&c)
        {
            out.push(c);
        }
    }
    out
}

fn jump_spec(chain: &str) -> String {
    format!("-m comment --comment {JUMP_COMMENT} -j {chain}")
}

/// Apply script: chains (reused when left over), jumps at position 1 (once), then the rules
/// (each once). `set -e`: a failure stops it and the caller reverts.
pub fn apply_script(firewall: &Firewall, rules: &[PartitionRule], comment: &str) -> String {
    let mut s = String::from("set -e\n");
    for cmd in commands(firewall, rules) {
        let b = sh_quote(cmd);
        for chain in [CHAIN_IN, CHAIN_OUT] {
            s.push_str(&format!(
                "{b} -w -S {chain} >/dev/null 2>&1 || {b} -w -N {chain}\n\
                 {b} -w -C {parent} {jump} 2>/dev/null || {b} -w -I {parent} 1 {jump}\n",
                parent = parent(chain),
                jump = jump_spec(chain),
            ));
        }
    }
    s.push_str(&per_rule(firewall, rules, comment, |b, chain, spec| {
        format!("{b} -w -C {chain} {spec} 2>/dev/null || {b} -w -A {chain} {spec}\n")
    }));
    s
}

/// One line per rule (of a family the host has): `line(quoted command, chain, spec)`.
fn per_rule(
    firewall: &Firewall,
    rules: &[PartitionRule],
    comment: &str,
    line: impl Fn(&str, &str, &str) -> String,
) -> String {
    rules
        .iter()
        .filter_map(|rule| {
            let cmd = command_for(firewall, &rule.address)?;
            Some(line(
                &sh_quote(cmd),
                chain(rule.direction),
                &rule_spec(rule, comment),
            ))
        })
        .collect()
}

/// Revert step (idempotent): deletes exactly these rules, then every SOAK chain of the involved
/// families that is left empty, with its jump.
pub fn revert_script(firewall: &Firewall, rules: &[PartitionRule], comment: &str) -> String {
    let mut s = per_rule(firewall, rules, comment, |b, chain, spec| {
        format!(
            "i=0; while [ $i -lt 20 ] && {b} -w -C {chain} {spec} 2>/dev/null; do {b} -w -D {chain} {spec}; i=$((i+1)); done\n"
        )
    });
    for cmd in commands(firewall, rules) {
        s.push_str(&remove_empty_chains(cmd));
    }
    s.push_str("exit 0\n");
    s
}

/// Removes each SOAK chain of `cmd` that has no rules left, jump first.
fn remove_empty_chains(cmd: &str) -> String {
    let b = sh_quote(cmd);
    let mut s = String::new();
    for chain in [CHAIN_IN, CHAIN_OUT] {
        s.push_str(&format!(
            "if {b} -w -S {chain} >/dev/null 2>&1 && [ \"$({b} -w -S {chain} | grep -c '^-A ')\" = 0 ]; then \
             i=0; while [ $i -lt 20 ] && {b} -w -C {parent} {jump} 2>/dev/null; do {b} -w -D {parent} {jump}; i=$((i+1)); done; \
             {b} -w -X {chain} || true; fi\n",
            parent = parent(chain),
            jump = jump_spec(chain),
        ));
    }
    s
}

/// Clean check: no rule with this fault's comment, and no SOAK chain left empty.
pub fn clean_check(firewall: &Firewall, rules: &[PartitionRule], comment: &str) -> String {
    let mut s = String::new();
    for cmd in commands(firewall, rules) {
        let b = sh_quote(cmd);
        s.push_str(&format!(
            "if {b} -w -S 2>/dev/null | grep -qF -- {c}; then echo \"rules tagged {comment} remain ({cmd})\" >&2; exit 1; fi\n",
            c = sh_quote(&format!("{comment}\"")),
        ));
        for chain in [CHAIN_IN, CHAIN_OUT] {
            s.push_str(&format!(
                "if {b} -w -S {chain} >/dev/null 2>&1 && [ \"$({b} -w -S {chain} | grep -c '^-A ')\" = 0 ]; then \
                 echo \"empty chain {chain} left ({cmd})\" >&2; exit 1; fi\n"
            ));
        }
    }
    s
}

/// The counters script: `iptables -L CHAIN -nvx` of both chains for each involved command,
/// each block headed `--- CMD CHAIN`.
pub fn counters_script(firewall: &Firewall, rules: &[PartitionRule]) -> String {
    let mut s = String::new();
    for cmd in commands(firewall, rules) {
        for chain in [CHAIN_IN, CHAIN_OUT] {
            s.push_str(&format!(
                "echo '--- {cmd} {chain}'; {b} -w -L {chain} -nvx 2>/dev/null || true\n",
                b = sh_quote(cmd)
            ));
        }
    }
    s
}

/// One rule's counters.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct RuleCounter {
    /// Which way.
    pub direction: Direction,
    /// The peer.
    pub peer: String,
    /// Its address.
    pub address: IpAddr,
    /// Packets dropped so far.
    pub packets: u64,
    /// Bytes dropped so far.
    pub bytes: u64,
}

/// Reads this fault's rules' counters out of [`counters_script`] output. A rule that is not
/// listed is missing from the result (the caller treats that as not applied).
pub fn parse_counters(text: &str, rules: &[PartitionRule], comment: &str) -> Vec<RuleCounter> {
    let mut current_chain = String::new();
    let mut rows: Vec<(String, Vec<String>)> = Vec::new();
    for line in text.lines() {
        if let Some(header) = line.strip_prefix("--- ") {
            current_chain = header.rsplit(' ').next().unwrap_or("").to_string();
            continue;
        }
        if line.contains(&format!("/* {comment} */")) {
            let words: Vec<String> = line.split_whitespace().map(str::to_string).collect();
            rows.push((current_chain.clone(), words));
        }
    }
    rules
        .iter()
        .filter_map(|rule| {
            let addr = rule.address.to_string();
            let port = format!("dpt:{}", rule.port);
            let column = match rule.direction {
                // source, destination are the two address columns before `udp`.
                Direction::In => 0,
                Direction::Out => 1,
            };
            rows.iter()
                .find(|(chain_name, words)| {
                    chain_name == chain(rule.direction)
                        && words.contains(&port)
                        && address_columns(words)
                            .get(column)
                            .is_some_and(|a| strip_prefix_len(a) == addr)
                })
                .map(|(_, words)| RuleCounter {
                    direction: rule.direction,
                    peer: rule.peer.clone(),
                    address: rule.address,
                    packets: words.first().and_then(|w| w.parse().ok()).unwrap_or(0),
                    bytes: words.get(1).and_then(|w| w.parse().ok()).unwrap_or(0),
                })
        })
        .collect()
}

/// The source and destination columns of an `-L -nvx` row: the two words that parse as
/// addresses (with or without a prefix length).
fn address_columns(words: &[String]) -> Vec<&str> {
    words
        .iter()
        .map(String::as_str)
        .filter(|w| strip_prefix_len(w).parse::<IpAddr>().is_ok())
        .take(2)
        .collect()
}

fn strip_prefix_len(word: &str) -> &str {
    word.split('/').next().unwrap_or(word)
}

/// Whether an `iptables-save` / `-S` line is one of our objects (chain, rule or jump).
pub fn is_our_save_line(line: &str) -> bool {
    let line = line.trim();
    line.starts_with(":SOAK-IN ")
        || line.starts_with(":SOAK-OUT ")
        || line == "-N SOAK-IN"
        || line == "-N SOAK-OUT"
        || line.starts_with("-A SOAK-IN ")
        || line.starts_with("-A SOAK-OUT ")
        || ((line.starts_with("-A INPUT ") || line.starts_with("-A OUTPUT "))
            && (line.ends_with("-j SOAK-IN") || line.ends_with("-j SOAK-OUT")))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn member(name: &str, v4: &str, v6: Option<&str>) -> Member {
        let mut addresses = vec![v4.parse().expect("v4")];
        if let Some(v6) = v6 {
            addresses.push(v6.parse().expect("v6"));
        }
        Member {
            name: name.into(),
            addresses,
            port: 7000,
        }
    }

    fn fw() -> Firewall {
        Firewall {
            backend: super::super::caps::FirewallBackend::Nft,
            iptables: "/usr/sbin/iptables-nft".into(),
            ip6tables: Some("/usr/sbin/ip6tables-nft".into()),
        }
    }

    #[test]
    fn pair_halves_and_one_way_rules() {
        let a = member("h1", "198.18.0.11", Some("fd00::11"));
        let b = member("h2", "198.18.0.12", Some("fd00::12"));
        let c = member("h3", "198.18.0.13", None);
        let p = pair(&a, &b);
        assert_eq!(p.len(), 2);
        // Each side drops both families in and out.
        assert_eq!(p["h1"].len(), 4);
        assert!(p["h1"].iter().any(|r| r.direction == Direction::In
            && r.address.to_string() == "fd00::12"
            && r.port == 7000));
        assert!(!p.contains_key("h3"));
        let h = halves(std::slice::from_ref(&a), &[b.clone(), c.clone()]);
        assert_eq!(h["h1"].len(), 4 + 2, "in+out to h2 (2 families), h3 (1)");
        assert_eq!(h["h3"].len(), 2 * 2, "in+out with h1's two addresses");
        let o = one_way(&a, &c);
        assert!(
            o["h3"]
                .iter()
                .all(|r| r.direction == Direction::In && r.peer == "h1")
        );
        assert_eq!(o.len(), 1, "only the receiving side: {o:?}");
        assert_eq!(o["h3"].len(), 2, "both of h1's addresses");
    }

    #[test]
    fn commands_use_own_chains_tagged_rules_and_never_touch_builtins() {
        let a = member("h1", "198.18.0.11", Some("fd00::11"));
        let b = member("h2", "198.18.0.12", Some("fd00::12"));
        let rules = &pair(&a, &b)["h2"];
        let c = comment("20260101T000000Z-lab", "f1");
        let apply = apply_script(&fw(), rules, &c);
        for part in [
            "'/usr/sbin/iptables-nft' -w -S SOAK-IN >/dev/null 2>&1 || '/usr/sbin/iptables-nft' -w -N SOAK-IN\n",
            "'/usr/sbin/iptables-nft' -w -C INPUT -m comment --comment soak:jump -j SOAK-IN 2>/dev/null || '/usr/sbin/iptables-nft' -w -I INPUT 1 -m comment --comment soak:jump -j SOAK-IN\n",
            "-A SOAK-IN -s 198.18.0.11/32 -p udp -m udp --dport 7000 -m comment --comment 'soak:20260101T000000Z-lab:f1' -j DROP\n",
            "'/usr/sbin/ip6tables-nft' -w -C SOAK-OUT -d fd00::11/128 -p udp -m udp --dport 7000",
        ] {
            assert!(apply.contains(part), "missing {part:?} in:\n{apply}");
        }
        let revert = revert_script(&fw(), rules, &c);
        for script in [&apply, &revert, &clean_check(&fw(), rules, &c)] {
            for forbidden in [" -F", " -P ", " -F INPUT", "-X INPUT", "-X OUTPUT", " -Z"] {
                assert!(!script.contains(forbidden), "{forbidden:?} in:\n{script}");
            }
            let ok = std::process::Command::new("sh")
                .args(["-n", "-c", script])
                .status()
                .is_ok_and(|s| s.success());
            assert!(ok, "sh -n rejected:\n{script}");
        }
        assert!(revert.contains("-D SOAK-IN -s 198.18.0.11/32"));
        assert!(revert.contains("-X SOAK-IN"));
    }

    #[test]
    fn counters_are_read_per_rule() {
        let a = member("h1", "198.18.0.11", Some("fd00::11"));
        let b = member("h2", "198.18.0.12", None);
        let rules = &pair(&a, &b)["h2"];
        let c = "soak:r:t";
        let text = "--- /usr/sbin/iptables-nft SOAK-IN\n\
            Chain SOAK-IN (1 references)\n    pkts      bytes target     prot opt in     out     source               destination\n\
                  17     2040 DROP       17   --  *      *       198.18.0.11          0.0.0.0/0            udp dpt:7000 /* soak:r:t */\n\
                   0        0 DROP       17   --  *      *       198.18.0.99          0.0.0.0/0            udp dpt:7000 /* soak:other:x */\n\
            --- /usr/sbin/iptables-nft SOAK-OUT\n\
            Chain SOAK-OUT (1 references)\n    pkts      bytes target     prot opt in     out     source               destination\n\
                   3      360 DROP       17   --  *      *       0.0.0.0/0            198.18.0.11          udp dpt:7000 /* soak:r:t */\n\
            --- /usr/sbin/ip6tables-nft SOAK-IN\n\
            Chain SOAK-IN (1 references)\n    pkts      bytes target     prot opt in     out     source               destination\n\
                   5      600 DROP       17       *      *       fd00::11             ::/0                 udp dpt:7000 /* soak:r:t */\n";
        let counters = parse_counters(text, rules, c);
        let get = |dir: Direction, addr: &str| {
            counters
                .iter()
                .find(|r| r.direction == dir && r.address.to_string() == addr)
                .map(|r| r.packets)
        };
        assert_eq!(get(Direction::In, "198.18.0.11"), Some(17));
        assert_eq!(get(Direction::Out, "198.18.0.11"), Some(3));
        assert_eq!(get(Direction::In, "fd00::11"), Some(5));
        assert_eq!(get(Direction::Out, "fd00::11"), None, "not listed: missing");
    }

    #[test]
    fn save_lines_of_ours_are_recognised() {
        for ours in [
            ":SOAK-IN - [0:0]",
            "-A SOAK-OUT -d 198.18.0.12/32 -p udp -m udp --dport 7000 -m comment --comment \"soak:r:t\" -j DROP",
            "-A INPUT -m comment --comment \"soak:jump\" -j SOAK-IN",
        ] {
            assert!(is_our_save_line(ours), "{ours}");
        }
        for theirs in [
            ":INPUT ACCEPT [0:0]",
            "-A INPUT -p tcp -m tcp --dport 22 -j ACCEPT",
            "-A INPUT -m comment --comment \"mentions SOAK-IN\" -j DROP",
        ] {
            assert!(!is_our_save_line(theirs), "{theirs}");
        }
    }
}
