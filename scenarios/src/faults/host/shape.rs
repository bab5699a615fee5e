//! Shaping only the target peers' overlay traffic with `tc` (pure builders and parsers).
//!
//! Never the interface as a whole, never SSH. On each egress device toward the peers:
//!
//! 1. Inspect the root qdisc. Only the kernel's default root (handle `0:`) is replaced; a root
//!    with our reserved handle `5a0c:` is a leftover of ours (swept before a run); anything else is
//!    a **foreign root** and the fault is refused (exit 65 → unsupported, nothing changed).
//!    Recording and later restoring a foreign qdisc tree exactly is not attempted: its filters,
//!    classes and actions cannot be read back faithfully in general (pumba PR #349 refuses too).
//! 2. Install our root with the reserved handle and one band that receives nothing by itself:
//!    - `prio bands 4 priomap 1 2 2 2 1 2 0 0 1 1 1 1 1 1 1 1` (pfifo_fast's map over bands 0-2:
//!      band 4, class `5a0c:4`, gets only what a filter sends there — Jepsen's `net-shape!`);
//!    - or, where the kernel lacks `sch_prio` (this machine's does), `htb` without a `default`
//!      class: unclassified packets go out through htb's direct queue untouched, and class
//!      `5a0c:4` (unlimited, or the rate cap itself) receives only filtered traffic.
//! 3. The fault's qdisc as the band's child, handle `5a0d:`: `netem …`, `tbf …`, or for an htb
//!    rate cap a `pfifo` under the capped class (so every kind has child counters to read).
//! 4. `u32` filters, one per peer and family, matching the peer's address **and** UDP **and** its
//!    overlay port: `match ip dst A/32 match ip protocol 17 0xff match ip dport P 0xffff`, and the
//!    `ip6` equivalents with `A/128`.
//!
//! Revert deletes the root only after checking it is ours (kind prio/htb and handle `5a0c:`), and
//! only while the device's owner file names this fault's token, so an old guard never removes a
//! newer fault's qdisc. Deleting our root brings back the kernel's default root.

use std::net::IpAddr;

use serde::{Deserialize, Serialize};
use soak_inventory::remote::sh_quote;

use super::Peer;

/// Our root qdisc handle (reserved).
pub const ROOT_HANDLE: &str = "5a0c:";
/// Our band (prio band 4, or the htb class).
pub const BAND: &str = "5a0c:4";
/// The fault qdisc on our band.
pub const CHILD_HANDLE: &str = "5a0d:";
/// Exit code of an apply that found a foreign root qdisc.
pub const EXIT_FOREIGN_ROOT: i32 = 65;
/// Exit code of an apply whose qdisc kind the kernel lacks.
pub const EXIT_UNKNOWN_KIND: i32 = 66;
/// The rate of the unlimited htb class (netem/tbf children do the shaping).
const UNLIMITED: &str = "10gbit";

/// Which root qdisc carries our band.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum RootKind {
    /// `prio` with a fourth band nothing is mapped to.
    Prio,
    /// `htb` without a default class (unclassified traffic is sent directly).
    Htb,
}

impl RootKind {
    /// The tc kind.
    pub fn as_str(self) -> &'static str {
        match self {
            RootKind::Prio => "prio",
            RootKind::Htb => "htb",
        }
    }
}

/// netem parameters: delay with jitter, loss, duplicate, reorder.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, Default)]
pub struct Netem {
    /// Added delay, ms.
    pub delay_ms: u32,
    /// Jitter (± around the delay, normal distribution), ms.
    #[serde(default)]
    pub jitter_ms: u32,
    /// Loss, percent.
    #[serde(default)]
    pub loss_pct: f64,
    /// Duplicated packets, percent.
    #[serde(default)]
    pub duplicate_pct: f64,
    /// Reordered packets, percent (sent at once while the rest wait the delay; needs a delay).
    #[serde(default)]
    pub reorder_pct: f64,
}

/// How a rate cap is enforced.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Limiter {
    /// A `tbf` qdisc on our band.
    Tbf,
    /// An htb class rate (the htb root's band class, or an htb child under a prio root).
    Htb,
}

/// What the shaping fault does to the peers' traffic.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case", tag = "kind")]
pub enum Shaping {
    /// Delay / jitter / loss / duplicate / reorder (needs `sch_netem`).
    Netem(Netem),
    /// A bandwidth cap.
    Rate {
        /// Cap, kilobits per second.
        kbit: u64,
        /// Bucket size, bytes (tbf `burst`, htb `burst`).
        burst_bytes: u32,
        /// Longest queueing delay before tbf drops, ms.
        latency_ms: u32,
        /// tbf or htb.
        limiter: Limiter,
    },
}

impl Shaping {
    /// Whether this needs `sch_netem`.
    pub fn needs_netem(&self) -> bool {
        matches!(self, Shaping::Netem(_))
    }

    /// Checks the parameters; the message says what is wrong.
    pub fn validate(&self) -> Result<(), String> {
        match self {
            Shaping::Netem(n) => {
                for (name, pct) in [
                    ("loss_pct", n.loss_pct),
                    ("duplicate_pct", n.duplicate_pct),
                    ("reorder_pct", n.reorder_pct),
                ] {
                    if !(0.0..=100.0).contains(&pct) {
                        return Err(format!("{name} must be 0-100, got {pct}"));
                    }
                }
                if n.reorder_pct > 0.0 && n.delay_ms == 0 {
                    return Err("reorder_pct needs a delay (netem reorders by not delaying)".into());
                }
                if n.jitter_ms > n.delay_ms {
                    return Err(format!(
                        "jitter_ms {} exceeds delay_ms {} (netem would reorder everything)",
                        n.jitter_ms, n.delay_ms
                    ));
                }
                if n.delay_ms == 0 && n.loss_pct == 0.0 && n.duplicate_pct == 0.0 {
                    return Err("a netem fault needs a delay, loss or duplicate".into());
                }
                Ok(())
            }
            Shaping::Rate {
                kbit, burst_bytes, ..
            } => {
                if *kbit == 0 {
                    return Err("kbit must be positive".into());
                }
                if *burst_bytes < 1600 {
                    return Err(format!(
                        "burst_bytes {burst_bytes} is below one full-size packet (1600)"
                    ));
                }
                Ok(())
            }
        }
    }

    /// The child qdisc arguments after `handle 5a0d:` (netem/tbf/pfifo/htb).
    fn child(&self, root: RootKind) -> String {
        match self {
            Shaping::Netem(n) => netem_args(n),
            Shaping::Rate {
                kbit,
                burst_bytes,
                latency_ms,
                limiter: Limiter::Tbf,
            } => format!("tbf rate {kbit}kbit burst {burst_bytes} latency {latency_ms}ms"),
            Shaping::Rate {
                limiter: Limiter::Htb,
                ..
            } => match root {
                // The capped class is ours already; the child only queues (and counts).
                RootKind::Htb => "pfifo limit 1000".into(),
                RootKind::Prio => "htb default 1".into(),
            },
        }
    }

    /// The tc qdisc kind the child is (`netem`, `tbf`, `pfifo`, `htb`).
    pub fn child_kind(&self, root: RootKind) -> &'static str {
        match (self, root) {
            (Shaping::Netem(_), _) => "netem",
            (
                Shaping::Rate {
                    limiter: Limiter::Tbf,
                    ..
                },
                _,
            ) => "tbf",
            (
                Shaping::Rate {
                    limiter: Limiter::Htb,
                    ..
                },
                RootKind::Htb,
            ) => "pfifo",
            (
                Shaping::Rate {
                    limiter: Limiter::Htb,
                    ..
                },
                RootKind::Prio,
            ) => "htb",
        }
    }
}

/// `netem delay 1500ms 200ms distribution normal loss 1% …` (only the parts that are set).
pub fn netem_args(n: &Netem) -> String {
    let mut args = String::from("netem limit 100000");
    if n.delay_ms > 0 {
        args.push_str(&format!(" delay {}ms", n.delay_ms));
        if n.jitter_ms > 0 {
            args.push_str(&format!(" {}ms distribution normal", n.jitter_ms));
        }
    }
    let pct = |v: f64| {
        let text = format!("{v:.3}");
        let text = text.trim_end_matches('0').trim_end_matches('.');
        format!("{text}%")
    };
    if n.loss_pct > 0.0 {
        args.push_str(&format!(" loss {}", pct(n.loss_pct)));
    }
    if n.duplicate_pct > 0.0 {
        args.push_str(&format!(" duplicate {}", pct(n.duplicate_pct)));
    }
    if n.reorder_pct > 0.0 {
        args.push_str(&format!(" reorder {}", pct(n.reorder_pct)));
    }
    args
}

/// A device name as tc and ip accept it (also what is safe in a file name).
pub fn valid_device(dev: &str) -> bool {
    !dev.is_empty()
        && dev.len() <= 15
        && dev
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'_' | b'.' | b'-' | b'@'))
}

/// The `u32` filter commands sending `peer`'s overlay traffic on `dev` to our band.
pub fn filter_commands(tc: &str, dev: &str, peer: &Peer) -> String {
    match peer.address {
        IpAddr::V4(a) => format!(
            "{tc} filter add dev {dev} parent {ROOT_HANDLE} protocol ip prio 1 u32 \
             match ip dst {a}/32 match ip protocol 17 0xff match ip dport {port} 0xffff flowid {BAND}\n",
            port = peer.port
        ),
        IpAddr::V6(a) => format!(
            "{tc} filter add dev {dev} parent {ROOT_HANDLE} protocol ipv6 prio 2 u32 \
             match ip6 dst {a}/128 match ip6 protocol 17 0xff match ip6 dport {port} 0xffff flowid {BAND}\n",
            port = peer.port
        ),
    }
}

/// The owner file of `dev`'s qdisc in the guard directory.
pub fn owner_file(guard_dir: &str, dev: &str) -> String {
    format!("{guard_dir}/qdisc-{dev}.owner")
}

/// Apply script for one device: checks the root is the kernel default (exit 65 otherwise),
/// records `token` as the device's owner, installs root, band, child and filters. `set -e`:
/// a failing command stops it (the caller reverts); a kernel without the child's kind exits 66.
pub fn apply_script(
    tc: &str,
    dev: &str,
    root: RootKind,
    shaping: &Shaping,
    peers: &[&Peer],
    guard_dir: &str,
    token: &str,
) -> String {
    let tc = sh_quote(tc);
    let owner = sh_quote(&owner_file(guard_dir, dev));
    let mut s = format!(
        "set -e\n\
         root=$({tc} qdisc show dev {dev} root)\n\
         case \"$root\" in\n\
         \x20 \"qdisc \"*\" 0: root\"*|\"qdisc \"*\" 0: dev {dev} root\"*) ;;\n\
         \x20 *) echo \"soak: refusing to shape {dev}: its root qdisc is not the kernel default but: $root\" >&2; exit {EXIT_FOREIGN_ROOT};;\n\
         esac\n\
         mkdir -p {gdir}\n\
         echo {token} > {owner}\n",
        gdir = sh_quote(guard_dir),
        token = sh_quote(token),
    );
    let child_add = |s: &mut String| {
        s.push_str(&format!(
            "out=$({tc} qdisc add dev {dev} parent {BAND} handle {CHILD_HANDLE} {child} 2>&1) || {{ \
             echo \"$out\" >&2; case \"$out\" in *'qdisc kind is unknown'*|*'Unknown qdisc'*) exit {EXIT_UNKNOWN_KIND};; esac; exit 1; }}\n",
            child = shaping.child(root)
        ));
    };
    match root {
        RootKind::Prio => {
            s.push_str(&format!(
                "{tc} qdisc add dev {dev} root handle {ROOT_HANDLE} prio bands 4 priomap 1 2 2 2 1 2 0 0 1 1 1 1 1 1 1 1\n"
            ));
            child_add(&mut s);
            if let Shaping::Rate {
                kbit,
                burst_bytes,
                limiter: Limiter::Htb,
                ..
            } = shaping
            {
                s.push_str(&format!(
                    "{tc} class add dev {dev} parent {CHILD_HANDLE} classid 5a0d:1 htb rate {kbit}kbit ceil {kbit}kbit \
                     burst {burst_bytes} cburst {burst_bytes} quantum 1514\n"
                ));
            }
        }
        RootKind::Htb => {
            let rate = match shaping {
                Shaping::Rate {
                    kbit,
                    burst_bytes,
                    limiter: Limiter::Htb,
                    ..
                } => format!("{kbit}kbit ceil {kbit}kbit burst {burst_bytes} cburst {burst_bytes}"),
                _ => format!("{UNLIMITED} ceil {UNLIMITED}"),
            };
            s.push_str(&format!(
                "{tc} qdisc add dev {dev} root handle {ROOT_HANDLE} htb r2q 10000\n\
                 {tc} class add dev {dev} parent {ROOT_HANDLE} classid {BAND} htb rate {rate} quantum 1514\n"
            ));
            child_add(&mut s);
        }
    }
    for peer in peers {
        s.push_str(&filter_commands(&tc, dev, peer));
    }
    s
}

/// Revert step for one device (idempotent): unless another fault owns the device now, delete
/// the root when it is ours (kind prio/htb, handle 5a0c:) and remove the owner file.
pub fn revert_script(tc: &str, dev: &str, guard_dir: &str, token: &str) -> String {
    let tc = sh_quote(tc);
    let owner = sh_quote(&owner_file(guard_dir, dev));
    format!(
        "owner=$(cat {owner} 2>/dev/null || true)\n\
         if [ -n \"$owner\" ] && [ \"$owner\" != {token} ]; then echo \"{dev}: qdisc now belongs to fault $owner: left alone\" >&2; exit 0; fi\n\
         root=$({tc} qdisc show dev {dev} root 2>/dev/null) || exit 0\n\
         case \"$root\" in\n\
         \x20 \"qdisc prio {ROOT_HANDLE} \"*|\"qdisc htb {ROOT_HANDLE} \"*) {tc} qdisc del dev {dev} root;;\n\
         esac\n\
         rm -f {owner}\n",
        token = sh_quote(token),
    )
}

/// Clean check for one device: no root of ours on it (or it belongs to a newer fault).
pub fn clean_check(tc: &str, dev: &str, guard_dir: &str, token: &str) -> String {
    let tc = sh_quote(tc);
    let owner = sh_quote(&owner_file(guard_dir, dev));
    format!(
        "owner=$(cat {owner} 2>/dev/null || true)\n\
         if [ -n \"$owner\" ] && [ \"$owner\" != {token} ]; then exit 0; fi\n\
         ! {tc} qdisc show dev {dev} root 2>/dev/null | grep -qE '^qdisc (prio|htb) {ROOT_HANDLE} '\n",
        token = sh_quote(token),
    )
}

/// One qdisc's counters from `tc -s qdisc show`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct QdiscStat {
    /// Device (when the output named it).
    pub dev: String,
    /// Kind (`netem`, `tbf`, …).
    pub kind: String,
    /// Handle (`5a0d:`).
    pub handle: String,
    /// `root` or the parent class.
    pub parent: String,
    /// Bytes sent.
    pub sent_bytes: u64,
    /// Packets sent.
    pub sent_packets: u64,
    /// Packets dropped.
    pub dropped: u64,
    /// Overlimits.
    pub overlimits: u64,
}

/// Parses `tc -s qdisc show [dev D]` output. `dev` names the device when the output omits it
/// (as it does for `show dev D`).
pub fn parse_stats(text: &str, dev: &str) -> Vec<QdiscStat> {
    let mut out: Vec<QdiscStat> = Vec::new();
    for line in text.lines() {
        let trimmed = line.trim();
        if let Some(rest) = trimmed.strip_prefix("qdisc ") {
            let words: Vec<&str> = rest.split_whitespace().collect();
            let (Some(kind), Some(handle)) = (words.first(), words.get(1)) else {
                continue;
            };
            let dev_name = words
                .iter()
                .position(|w| *w == "dev")
                .and_then(|i| words.get(i + 1))
                .map_or(dev.to_string(), |d| (*d).to_string());
            let parent = if words.contains(&"root") {
                "root".to_string()
            } else {
                words
                    .iter()
                    .position(|w| *w == "parent")
                    .and_then(|i| words.get(i + 1))
                    .map_or_else(String::new, |p| (*p).to_string())
            };
            out.push(QdiscStat {
                dev: dev_name,
                kind: (*kind).to_string(),
                handle: (*handle).to_string(),
                parent,
                sent_bytes: 0,
                sent_packets: 0,
                dropped: 0,
                overlimits: 0,
            });
        } else if let Some(rest) = trimmed.strip_prefix("Sent ")
            && let Some(last) = out.last_mut()
        {
            // Sent 110 bytes 1 pkt (dropped 0, overlimits 0 requeues 0)
            let words: Vec<&str> = rest
                .split(|c: char| c.is_whitespace() || c == ',' || c == '(' || c == ')')
                .filter(|w| !w.is_empty())
                .collect();
            let num = |i: usize| {
                words
                    .get(i)
                    .and_then(|w| w.parse::<u64>().ok())
                    .unwrap_or(0)
            };
            last.sent_bytes = num(0);
            last.sent_packets = num(2);
            let after = |key: &str| {
                words
                    .iter()
                    .position(|w| *w == key)
                    .and_then(|i| words.get(i + 1))
                    .and_then(|w| w.parse::<u64>().ok())
                    .unwrap_or(0)
            };
            last.dropped = after("dropped");
            last.overlimits = after("overlimits");
        }
    }
    out
}

/// The stats of our child qdisc on `dev` in `stats`.
pub fn our_child(stats: &[QdiscStat]) -> Option<&QdiscStat> {
    stats
        .iter()
        .find(|s| s.handle == CHILD_HANDLE && s.parent == BAND)
}

/// A root line of ours in `tc qdisc show` output (`qdisc prio 5a0c: root …`).
pub fn is_our_root_line(line: &str) -> bool {
    let words: Vec<&str> = line.split_whitespace().collect();
    words.first() == Some(&"qdisc")
        && matches!(words.get(1), Some(&"prio") | Some(&"htb"))
        && words.get(2) == Some(&ROOT_HANDLE)
        && words.contains(&"root")
}

/// Whether a `tc qdisc show` line is one of our objects (root, or anything under our handles).
pub fn is_our_line(line: &str) -> bool {
    let words: Vec<&str> = line.split_whitespace().collect();
    let ours = |w: &&str| *w == ROOT_HANDLE || *w == CHILD_HANDLE;
    words.first() == Some(&"qdisc")
        && (words.get(2).is_some_and(ours)
            || words
                .iter()
                .position(|w| *w == "parent")
                .and_then(|i| words.get(i + 1))
                .is_some_and(|p| p.starts_with("5a0c:") || p.starts_with("5a0d:")))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn peer(addr: &str, port: u16) -> Peer {
        Peer {
            name: "h2".into(),
            address: addr.parse().expect("address"),
            port,
        }
    }

    #[test]
    fn netem_arguments() {
        let n = Netem {
            delay_ms: 1500,
            jitter_ms: 200,
            loss_pct: 0.5,
            duplicate_pct: 1.0,
            reorder_pct: 25.0,
        };
        assert_eq!(
            netem_args(&n),
            "netem limit 100000 delay 1500ms 200ms distribution normal loss 0.5% duplicate 1% reorder 25%"
        );
        assert_eq!(
            netem_args(&Netem {
                loss_pct: 10.0,
                ..Netem::default()
            }),
            "netem limit 100000 loss 10%"
        );
        let bad = Shaping::Netem(Netem {
            reorder_pct: 5.0,
            ..Netem::default()
        });
        assert!(bad.validate().unwrap_err().contains("needs a delay"));
        let jitter = Shaping::Netem(Netem {
            delay_ms: 10,
            jitter_ms: 20,
            ..Netem::default()
        });
        assert!(jitter.validate().is_err());
        assert!(Shaping::Netem(Netem::default()).validate().is_err());
    }

    #[test]
    fn prio_root_with_netem_child_and_filters_for_both_families() {
        let shaping = Shaping::Netem(Netem {
            delay_ms: 1500,
            jitter_ms: 200,
            ..Netem::default()
        });
        let v4 = peer("198.18.0.12", 7000);
        let v6 = peer("fd00:5a0c::12", 7001);
        let script = apply_script(
            "/usr/sbin/tc",
            "eth0",
            RootKind::Prio,
            &shaping,
            &[&v4, &v6],
            "/opt/soak-node/guard",
            "f1",
        );
        insta_like(
            &script,
            &[
                "'/usr/sbin/tc' qdisc add dev eth0 root handle 5a0c: prio bands 4 priomap 1 2 2 2 1 2 0 0 1 1 1 1 1 1 1 1\n",
                "'/usr/sbin/tc' qdisc add dev eth0 parent 5a0c:4 handle 5a0d: netem limit 100000 delay 1500ms 200ms distribution normal 2>&1",
                "'/usr/sbin/tc' filter add dev eth0 parent 5a0c: protocol ip prio 1 u32 match ip dst 198.18.0.12/32 match ip protocol 17 0xff match ip dport 7000 0xffff flowid 5a0c:4\n",
                "'/usr/sbin/tc' filter add dev eth0 parent 5a0c: protocol ipv6 prio 2 u32 match ip6 dst fd00:5a0c::12/128 match ip6 protocol 17 0xff match ip6 dport 7001 0xffff flowid 5a0c:4\n",
                "echo 'f1' > '/opt/soak-node/guard/qdisc-eth0.owner'\n",
            ],
        );
        assert!(!script.contains("replace"), "never `replace`");
    }

    fn insta_like(script: &str, parts: &[&str]) {
        for part in parts {
            assert!(script.contains(part), "missing {part:?} in:\n{script}");
        }
    }

    #[test]
    fn htb_root_sends_only_filtered_traffic_to_the_band() {
        let tbf = Shaping::Rate {
            kbit: 800,
            burst_bytes: 16_000,
            latency_ms: 100,
            limiter: Limiter::Tbf,
        };
        let p = peer("198.18.0.13", 7000);
        let script = apply_script("tc", "eth0", RootKind::Htb, &tbf, &[&p], "/g", "t");
        insta_like(
            &script,
            &[
                "'tc' qdisc add dev eth0 root handle 5a0c: htb r2q 10000\n",
                "'tc' class add dev eth0 parent 5a0c: classid 5a0c:4 htb rate 10gbit ceil 10gbit quantum 1514\n",
                "handle 5a0d: tbf rate 800kbit burst 16000 latency 100ms 2>&1",
            ],
        );
        assert!(
            !script.contains("htb default") && !script.contains(" default 1"),
            "no default class: unclassified goes direct"
        );
        let htb = Shaping::Rate {
            kbit: 800,
            burst_bytes: 16_000,
            latency_ms: 100,
            limiter: Limiter::Htb,
        };
        let script = apply_script("tc", "eth0", RootKind::Htb, &htb, &[&p], "/g", "t");
        insta_like(
            &script,
            &[
                "classid 5a0c:4 htb rate 800kbit ceil 800kbit burst 16000 cburst 16000 quantum 1514\n",
                "handle 5a0d: pfifo limit 1000",
            ],
        );
        let script = apply_script("tc", "eth0", RootKind::Prio, &htb, &[&p], "/g", "t");
        insta_like(
            &script,
            &[
                "handle 5a0d: htb default 1",
                "parent 5a0d: classid 5a0d:1 htb rate 800kbit",
            ],
        );
    }

    #[test]
    fn scripts_are_valid_sh() {
        let p = peer("198.18.0.13", 7000);
        let shaping = Shaping::Netem(Netem {
            loss_pct: 5.0,
            ..Netem::default()
        });
        for script in [
            apply_script("tc", "eth0", RootKind::Prio, &shaping, &[&p], "/g", "t"),
            revert_script("tc", "eth0", "/g", "t"),
            clean_check("tc", "eth0", "/g", "t"),
        ] {
            let ok = std::process::Command::new("sh")
                .args(["-n", "-c", &script])
                .status()
                .is_ok_and(|s| s.success());
            assert!(ok, "sh -n rejected:\n{script}");
        }
    }

    #[test]
    fn revert_checks_kind_handle_and_owner() {
        let script = revert_script("tc", "eth0", "/g", "t1");
        insta_like(
            &script,
            &[
                "\"qdisc prio 5a0c: \"*|\"qdisc htb 5a0c: \"*) 'tc' qdisc del dev eth0 root;;",
                "[ \"$owner\" != 't1' ]",
            ],
        );
    }

    #[test]
    fn stats_are_read_from_tc_output() {
        let text = "qdisc htb 5a0c: root refcnt 3 r2q 10000 default 0 direct_packets_stat 7 direct_qlen 1000\n \
                    Sent 810 bytes 7 pkt (dropped 0, overlimits 0 requeues 0) \n backlog 0b 0p requeues 0\n\
                    qdisc tbf 5a0d: parent 5a0c:4 rate 1Mbit burst 32Kb lat 50ms \n \
                    Sent 12345 bytes 42 pkt (dropped 3, overlimits 9 requeues 0) \n backlog 0b 0p requeues 0\n";
        let stats = parse_stats(text, "eth0");
        assert_eq!(stats.len(), 2);
        let child = our_child(&stats).expect("child");
        assert_eq!(
            (
                child.kind.as_str(),
                child.sent_bytes,
                child.sent_packets,
                child.dropped,
                child.overlimits
            ),
            ("tbf", 12345, 42, 3, 9)
        );
        assert_eq!(stats[0].parent, "root");
        assert!(is_our_root_line(
            "qdisc htb 5a0c: dev eth0 root refcnt 3 r2q 10000"
        ));
        assert!(!is_our_root_line("qdisc htb 1: dev eth0 root refcnt 3"));
        assert!(
            !is_our_root_line("qdisc tbf 5a0c: dev lo root refcnt 2"),
            "not our kind"
        );
        assert!(is_our_line(
            "qdisc netem 5a0d: dev eth0 parent 5a0c:4 limit 1000"
        ));
        assert!(!is_our_line("qdisc noqueue 0: dev eth0 root refcnt 2"));
        assert!(!is_our_line(
            "qdisc ingress ffff: dev eth0 parent ffff:fff1 ----------------"
        ));
    }
}
