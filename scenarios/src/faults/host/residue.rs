//! Residue: soak objects left on a host by earlier runs, found by an audit (read-only) or
//! reverted by a sweep (before a run). Pure script builders and parsers.
//!
//! What counts: `SOAK-IN`/`SOAK-OUT` chains, their rules and our jumps in every inspectable
//! firewall backend and family; root qdiscs with our handle on any interface; guards (live
//! watchers, orphaned journals, failed results) in the install's guard directory; owner files;
//! and stopped (state `T`) processes of this install's node binary. A sweep lets the guard
//! directory revert itself first (`soak-node guard sweep`: journals know their objects best),
//! then removes whatever is still tagged.

use serde::{Deserialize, Serialize};
use soak_guard::format::Outcome;
use soak_guard::run::{GuardEntry, SweptGuard};
use soak_inventory::Host;
use soak_inventory::node::NodeLayout;
use soak_inventory::remote::sh_quote;

use super::caps::HostCaps;
use super::process::pid_function;
use super::shape::ROOT_HANDLE;

/// Which kind of object.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum ResidueKind {
    /// A SOAK chain, rule or jump (`object` is the `-S` line, `detail` the command).
    Firewall,
    /// A root qdisc with our handle (`object` is the device).
    Qdisc,
    /// A stopped node process (`object` is the pid).
    StoppedNode,
    /// A guard that is still armed, orphaned or failed (`object` is the token).
    Guard,
    /// A qdisc or pause owner file (`object` is the file).
    OwnerFile,
}

/// One object found.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ResidueItem {
    /// Kind.
    pub kind: ResidueKind,
    /// Which object.
    pub object: String,
    /// More about it.
    pub detail: String,
}

/// What an audit or a sweep found on one host (for `faults/residue.json`).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct HostResidue {
    /// Host name.
    pub host: String,
    /// Objects found (a sweep: found and reverted).
    pub items: Vec<ResidueItem>,
    /// Guards handled by a sweep (with what reverting them did).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub swept_guards: Vec<SweptGuard>,
    /// Guards seen by an audit.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub guards: Vec<GuardEntry>,
    /// Whether a sweep left the host clean (re-audited after sweeping); for an audit, whether
    /// nothing was found.
    pub clean: bool,
}

/// The guard directory of a host's install.
pub fn guard_dir(host: &Host) -> String {
    format!("{}/guard", NodeLayout::new(host).dir.trim_end_matches('/'))
}

const OURS_RE: &str =
    "^(-N SOAK-(IN|OUT)$|-A SOAK-(IN|OUT) |-A (INPUT|OUTPUT) .*-j SOAK-(IN|OUT)$)";

fn firewall_commands(caps: &HostCaps) -> Vec<String> {
    let mut out = Vec::new();
    for fw in caps.inspectable_firewalls() {
        out.push(fw.iptables.clone());
        if let Some(v6) = fw.ip6tables {
            out.push(v6);
        }
    }
    out
}

/// The shared detection part: prints `fw\tCMD\tLINE`, `qdisc\tDEV\tLINE`, `stopped\tPID`,
/// `owner\tFILE` lines; with `act`, also removes each object as it is found.
fn objects_script(host: &Host, caps: &HostCaps, act: bool) -> String {
    let bin = NodeLayout::new(host).binary();
    let gdir = guard_dir(host);
    let mut s = pid_function(host);
    for cmd in firewall_commands(caps) {
        let b = sh_quote(&cmd);
        s.push_str(&format!(
            "{b} -w -S 2>/dev/null | grep -E {re} | while IFS= read -r line; do printf 'fw\\t%s\\t%s\\n' {b} \"$line\"; done\n",
            re = sh_quote(OURS_RE),
        ));
        if act {
            s.push_str(&format!(
                "for ch in SOAK-IN SOAK-OUT; do\n\
                 \x20 {b} -w -S 2>/dev/null | grep -E -- \"^-A (INPUT|OUTPUT) .*-j $ch\\$\" | while IFS= read -r line; do \
                 rest=${{line#-A }}; eval \"{b} -w -D $rest\" || true; done\n\
                 \x20 if {b} -w -S \"$ch\" >/dev/null 2>&1; then {b} -w -F \"$ch\"; {b} -w -X \"$ch\" || true; fi\n\
                 done\n"
            ));
        }
    }
    if let Some(tc) = caps.tool("tc") {
        let tc = sh_quote(tc);
        s.push_str(&format!(
            "for dev in $(ls /sys/class/net 2>/dev/null); do\n\
             \x20 root=$({tc} qdisc show dev \"$dev\" root 2>/dev/null | head -n 1)\n\
             \x20 case \"$root\" in \"qdisc prio {ROOT_HANDLE} \"*|\"qdisc htb {ROOT_HANDLE} \"*)\n\
             \x20   printf 'qdisc\\t%s\\t%s\\n' \"$dev\" \"$root\"{del};;\n\
             \x20 esac\n\
             done\n",
            del = if act {
                format!("; {tc} qdisc del dev \"$dev\" root || true")
            } else {
                String::new()
            },
        ));
    }
    // Stopped processes of this install's binary: the recorded one, and any other.
    s.push_str(&format!(
        "for p in /proc/[0-9]*; do\n\
         \x20 exe=$(readlink \"$p/exe\" 2>/dev/null) || continue\n\
         \x20 case \"$exe\" in {bin}|{bin}' (deleted)') ;; *) continue;; esac\n\
         \x20 pid=${{p#/proc/}}; set -- $(soak_stat \"$pid\")\n\
         \x20 if [ \"$1\" = T ]; then printf 'stopped\\t%s\\n' \"$pid\"{cont}; fi\n\
         done\n\
         for f in {gdir}/*.owner; do [ -e \"$f\" ] || continue; printf 'owner\\t%s\\n' \"$f\"{rm}; done\n",
        bin = sh_quote(&bin),
        gdir = sh_quote(&gdir),
        cont = if act { "; kill -CONT \"$pid\" || true" } else { "" },
        rm = if act { "; rm -f \"$f\"" } else { "" },
    ));
    s
}

/// Audit script (read-only): objects, then `guards\tJSON` from `guard status`.
pub fn audit_script(host: &Host, caps: &HostCaps) -> String {
    let mut s = objects_script(host, caps, false);
    if caps.guard {
        s.push_str(&format!(
            "printf 'guards\\t%s\\n' \"$({} guard status --dir {} 2>/dev/null | tr -d '\\n')\"\n",
            sh_quote(&NodeLayout::new(host).binary()),
            sh_quote(&guard_dir(host)),
        ));
    }
    s
}

/// Sweep script: `guard sweep` first (`swept\tJSON`), then every tagged object removed.
pub fn sweep_script(host: &Host, caps: &HostCaps) -> String {
    let mut s = String::new();
    if caps.guard {
        s.push_str(&format!(
            "printf 'swept\\t%s\\n' \"$({} guard sweep --dir {} --wait 20s 2>/dev/null | tr -d '\\n')\"\n",
            sh_quote(&NodeLayout::new(host).binary()),
            sh_quote(&guard_dir(host)),
        ));
    }
    s.push_str(&objects_script(host, caps, true));
    s
}

/// Parses audit or sweep output of `host`. `clean` is left false when anything was found.
pub fn parse(host: &str, stdout: &str) -> HostResidue {
    let mut items = Vec::new();
    let mut guards: Vec<GuardEntry> = Vec::new();
    let mut swept_guards: Vec<SweptGuard> = Vec::new();
    for line in stdout.lines() {
        let fields: Vec<&str> = line.splitn(3, '\t').collect();
        let item = |kind, object: &str, detail: &str| ResidueItem {
            kind,
            object: object.to_string(),
            detail: detail.to_string(),
        };
        match fields.as_slice() {
            ["fw", cmd, rule] => items.push(item(ResidueKind::Firewall, rule, cmd)),
            ["qdisc", dev, root] => items.push(item(ResidueKind::Qdisc, dev, root)),
            ["stopped", pid] => items.push(item(
                ResidueKind::StoppedNode,
                pid,
                "node process in state T (stopped)",
            )),
            ["owner", file] => items.push(item(ResidueKind::OwnerFile, file, "")),
            ["guards", json] => guards = serde_json::from_str(json).unwrap_or_default(),
            ["swept", json] => swept_guards = serde_json::from_str(json).unwrap_or_default(),
            _ => {}
        }
    }
    for g in &guards {
        let failed = g
            .result
            .as_ref()
            .is_some_and(|r| r.outcome == Outcome::RevertFailed);
        if g.watcher.is_some() || g.journal.is_some() || failed {
            let what = if g.watcher.is_some() {
                "armed guard (live watcher)"
            } else if g.journal.is_some() {
                "orphaned guard journal (watcher gone)"
            } else {
                "guard result: revert failed"
            };
            items.push(ResidueItem {
                kind: ResidueKind::Guard,
                object: g.token.clone(),
                detail: what.to_string(),
            });
        }
    }
    for g in &swept_guards {
        items.push(ResidueItem {
            kind: ResidueKind::Guard,
            object: g.token.clone(),
            detail: format!("{:?}", g.found).to_lowercase(),
        });
    }
    let clean = items.is_empty();
    HostResidue {
        host: host.to_string(),
        items,
        swept_guards,
        guards,
        clean,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn caps() -> HostCaps {
        super::super::caps::parse(
            "tool.tc=/usr/sbin/tc\ntool.iptables=/usr/sbin/iptables\ntool.iptables-nft=/usr/sbin/iptables-nft\n\
             tool.ip6tables-nft=/usr/sbin/ip6tables-nft\niptables_version=iptables v1.8.9 (nf_tables)\nguard=1\n",
        )
    }

    #[test]
    fn scripts_are_valid_sh_and_sweep_acts_only_on_ours() {
        let host = Host::with_defaults("h1", "192.0.2.1");
        let audit = audit_script(&host, &caps());
        let sweep = sweep_script(&host, &caps());
        for script in [&audit, &sweep] {
            let ok = std::process::Command::new("sh")
                .args(["-n", "-c", script])
                .status()
                .is_ok_and(|s| s.success());
            assert!(ok, "sh -n rejected:\n{script}");
        }
        for verb in [" -D ", " -F ", " -X ", "qdisc del", "kill -CONT", "rm -f"] {
            assert!(!audit.contains(verb), "audit changes things: {verb}");
            assert!(sweep.contains(verb), "sweep lacks {verb}");
        }
        // Only our own chains are flushed.
        assert!(sweep.contains("-w -F \"$ch\"") && sweep.contains("for ch in SOAK-IN SOAK-OUT"));
        assert!(!sweep.contains("-F INPUT") && !sweep.contains("-F OUTPUT"));
    }

    #[test]
    fn output_parses_into_items() {
        let out = "fw\t'/usr/sbin/iptables-nft'\t-N SOAK-IN\n\
                   qdisc\teth0\tqdisc htb 5a0c: root refcnt 3\n\
                   stopped\t4242\n\
                   guards\t[{\"token\":\"old\",\"journal\":null,\"lease\":null,\"watcher\":null,\"result\":null,\"remaining_ms\":null}]\n";
        let r = parse("h1", out);
        assert_eq!(
            r.items.len(),
            3,
            "a guard with only stray state is not residue: {r:?}"
        );
        assert!(!r.clean);
        assert!(parse("h1", "guards\t[]\n").clean);
    }

    #[test]
    fn our_save_line_pattern_matches_only_ours() {
        let check = |line: &str| {
            std::process::Command::new("sh")
                .args([
                    "-c",
                    &format!(
                        "printf '%s\\n' {} | grep -qE {}",
                        sh_quote(line),
                        sh_quote(OURS_RE)
                    ),
                ])
                .status()
                .is_ok_and(|s| s.success())
        };
        assert!(check("-N SOAK-OUT"));
        assert!(check("-A SOAK-IN -s 1.2.3.4/32 -j DROP"));
        assert!(check(
            "-A INPUT -m comment --comment \"soak:jump\" -j SOAK-IN"
        ));
        assert!(!check("-A INPUT -p tcp --dport 22 -j ACCEPT"));
        assert!(!check("-N SOAK-INX"));
    }
}
