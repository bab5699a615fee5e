//! What a host can do, found in one read-only round trip: which qdisc kinds its kernel has
//! (sch_netem, sch_prio, sch_htb, sch_tbf, cls_u32), which iptables backend `iptables` is
//! (nf_tables or legacy) and where the tools are, whether systemd is PID 1, and whether the
//! deployed `soak-node` has the `guard` subcommand.
//!
//! Kernel features are judged from evidence that costs nothing and changes nothing, strongest
//! first: a loaded module (`/sys/module/NAME`), the qdisc's enqueue function in `/proc/kallsyms`
//! (built in), the kernel config (`/proc/config.gz` or `/boot/config-RELEASE`: `=y`, `=m`, or
//! `is not set`), a module file under `/lib/modules/RELEASE`. When none of these says anything,
//! the kind is [`Availability::Unknown`] and the apply itself decides: `tc` answering "Specified
//! qdisc kind is unknown" on our own band is reported as unsupported, never as a pass. No probe
//! qdisc is ever added to a real interface or a scratch namespace to find out.

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};
use soak_inventory::Host;
use soak_inventory::node::NodeLayout;
use soak_inventory::remote::sh_quote;

/// Whether the kernel has a feature.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case", tag = "state", content = "evidence")]
pub enum Availability {
    /// It has it; how we know.
    Present(String),
    /// It does not; how we know.
    Absent(String),
    /// Nothing said either way (the apply will tell).
    Unknown(String),
}

impl Availability {
    /// Present.
    pub fn is_present(&self) -> bool {
        matches!(self, Availability::Present(_))
    }
    /// Absent.
    pub fn is_absent(&self) -> bool {
        matches!(self, Availability::Absent(_))
    }
}

/// The kernel features the host backends use.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum KernelFeature {
    /// `sch_netem` (delay, jitter, loss, duplicate, reorder).
    Netem,
    /// `sch_prio` (our preferred root).
    Prio,
    /// `sch_htb` (root fallback and rate limiter).
    Htb,
    /// `sch_tbf` (rate limiter).
    Tbf,
    /// `cls_u32` (our filters).
    U32,
}

impl KernelFeature {
    /// Every feature.
    pub const ALL: [KernelFeature; 5] = [
        KernelFeature::Netem,
        KernelFeature::Prio,
        KernelFeature::Htb,
        KernelFeature::Tbf,
        KernelFeature::U32,
    ];

    /// Module name (`sch_netem`).
    pub fn module(self) -> &'static str {
        match self {
            KernelFeature::Netem => "sch_netem",
            KernelFeature::Prio => "sch_prio",
            KernelFeature::Htb => "sch_htb",
            KernelFeature::Tbf => "sch_tbf",
            KernelFeature::U32 => "cls_u32",
        }
    }

    /// Kernel config symbol.
    pub fn config(self) -> &'static str {
        match self {
            KernelFeature::Netem => "CONFIG_NET_SCH_NETEM",
            KernelFeature::Prio => "CONFIG_NET_SCH_PRIO",
            KernelFeature::Htb => "CONFIG_NET_SCH_HTB",
            KernelFeature::Tbf => "CONFIG_NET_SCH_TBF",
            KernelFeature::U32 => "CONFIG_NET_CLS_U32",
        }
    }

    /// A function only this feature's code defines (looked for in `/proc/kallsyms`).
    pub fn symbol(self) -> &'static str {
        match self {
            KernelFeature::Netem => "netem_enqueue",
            KernelFeature::Prio => "prio_enqueue",
            KernelFeature::Htb => "htb_enqueue",
            KernelFeature::Tbf => "tbf_enqueue",
            KernelFeature::U32 => "u32_classify",
        }
    }
}

/// Which implementation `iptables` is.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum FirewallBackend {
    /// iptables-nft (nf_tables).
    Nft,
    /// iptables-legacy (x_tables).
    Legacy,
}

impl FirewallBackend {
    /// `nft` / `legacy`.
    pub fn as_str(self) -> &'static str {
        match self {
            FirewallBackend::Nft => "nft",
            FirewallBackend::Legacy => "legacy",
        }
    }
}

/// The firewall commands to use for one backend.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Firewall {
    /// The backend.
    pub backend: FirewallBackend,
    /// IPv4 command (absolute path).
    pub iptables: String,
    /// IPv6 command, when installed.
    pub ip6tables: Option<String>,
}

/// What one host can do.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct HostCaps {
    /// `uname -r`.
    pub kernel: String,
    /// Each kernel feature.
    pub kernel_features: BTreeMap<KernelFeature, Availability>,
    /// Tool name → absolute path, for the tools found.
    pub tools: BTreeMap<String, String>,
    /// `iptables -V`, when installed.
    pub iptables_version: Option<String>,
    /// Whether systemd is PID 1.
    pub systemd: bool,
    /// Whether the deployed soak-node answers `guard status`.
    pub guard: bool,
    /// Whether `/proc/net/ip_tables_names` lists a table (legacy IPv4 tables in use).
    pub legacy_v4_tables: bool,
    /// Whether `/proc/net/ip6_tables_names` lists a table.
    pub legacy_v6_tables: bool,
}

/// Tools the scripts look for.
pub const TOOLS: &[&str] = &[
    "tc",
    "ip",
    "iptables",
    "ip6tables",
    "iptables-nft",
    "ip6tables-nft",
    "iptables-legacy",
    "ip6tables-legacy",
    "iptables-save",
    "ip6tables-save",
    "iptables-nft-save",
    "ip6tables-nft-save",
    "iptables-legacy-save",
    "ip6tables-legacy-save",
    "systemctl",
    "systemd-run",
    "setsid",
];

/// The detection script (read-only; run it privileged so `/proc/kallsyms` and the firewall
/// answer fully). Prints `key=value` lines.
pub fn detect_script(host: &Host) -> String {
    let layout = NodeLayout::new(host);
    let modules = KernelFeature::ALL
        .iter()
        .map(|f| f.module())
        .collect::<Vec<_>>()
        .join(" ");
    let symbols = KernelFeature::ALL
        .iter()
        .map(|f| f.symbol())
        .collect::<Vec<_>>()
        .join("|");
    let configs = KernelFeature::ALL
        .iter()
        .map(|f| f.config())
        .collect::<Vec<_>>()
        .join("|");
    format!(
        "PATH=/usr/local/sbin:/usr/sbin:/sbin:$PATH\n\
         rel=$(uname -r); echo \"kernel=$rel\"\n\
         echo \"pid1=$(cat /proc/1/comm 2>/dev/null)\"\n\
         for t in {tools}; do p=$(command -v \"$t\" 2>/dev/null) && echo \"tool.$t=$p\"; done\n\
         if command -v iptables >/dev/null 2>&1; then echo \"iptables_version=$(iptables -V 2>&1 | head -n 1)\"; fi\n\
         for m in {modules}; do\n\
         \x20 [ -d \"/sys/module/$m\" ] && echo \"loaded.$m=1\"\n\
         \x20 if [ -d \"/lib/modules/$rel\" ] && [ -n \"$(find \"/lib/modules/$rel\" -name \"$m.ko*\" 2>/dev/null | head -n 1)\" ]; then echo \"modfile.$m=1\"; fi\n\
         done\n\
         if [ -r /proc/kallsyms ]; then grep -oE ' ({symbols})(\\.[a-z0-9.]+)?( |$)' /proc/kallsyms 2>/dev/null | tr -d ' ' | sed 's/\\..*//' | sort -u | sed 's/^/sym./; s/$/=1/'; fi\n\
         cfg=\n\
         if [ -r /proc/config.gz ]; then cfg=/proc/config.gz; cat_cfg() {{ gzip -dc /proc/config.gz; }}\n\
         elif [ -r \"/boot/config-$rel\" ]; then cfg=\"/boot/config-$rel\"; cat_cfg() {{ cat \"/boot/config-$rel\"; }}; fi\n\
         echo \"config=$cfg\"\n\
         if [ -n \"$cfg\" ]; then cat_cfg 2>/dev/null | grep -E '^({configs})=|^# ({configs}) is not set' | \
         sed -e 's/^# \\(CONFIG_[A-Z0-9_]*\\) is not set/cfg.\\1=n/' -e 's/^\\(CONFIG_[A-Z0-9_]*\\)=/cfg.\\1=/'; fi\n\
         [ -n \"$(cat /proc/net/ip_tables_names 2>/dev/null)\" ] && echo legacy_v4=1\n\
         [ -n \"$(cat /proc/net/ip6_tables_names 2>/dev/null)\" ] && echo legacy_v6=1\n\
         if [ -x {bin} ] && [ \"$({bin} guard status --dir /nonexistent/soak-guard-probe 2>/dev/null)\" = '[]' ]; then echo guard=1; fi\n",
        tools = TOOLS.join(" "),
        bin = sh_quote(&layout.binary()),
    )
}

/// Parses [`detect_script`]'s output.
pub fn parse(stdout: &str) -> HostCaps {
    let pairs: BTreeMap<&str, &str> = stdout
        .lines()
        .filter_map(|l| l.split_once('='))
        .map(|(k, v)| (k.trim(), v.trim()))
        .collect();
    let has = |key: String| pairs.contains_key(key.as_str());
    let config_file = pairs.get("config").copied().unwrap_or("");
    let mut kernel_features = BTreeMap::new();
    for feature in KernelFeature::ALL {
        let module = feature.module();
        let config = pairs
            .get(format!("cfg.{}", feature.config()).as_str())
            .copied();
        let availability = if has(format!("loaded.{module}")) {
            Availability::Present(format!("module {module} is loaded"))
        } else if has(format!("sym.{}", feature.symbol())) {
            Availability::Present(format!("built in ({} in /proc/kallsyms)", feature.symbol()))
        } else if config == Some("y") {
            Availability::Present(format!("{}=y in {config_file}", feature.config()))
        } else if has(format!("modfile.{module}")) {
            Availability::Present(format!("loadable module {module}"))
        } else if config == Some("n") {
            Availability::Absent(format!("{} is not set in {config_file}", feature.config()))
        } else if config == Some("m") {
            Availability::Absent(format!(
                "{}=m in {config_file} but no {module} module file under /lib/modules",
                feature.config()
            ))
        } else {
            Availability::Unknown(format!(
                "no loaded module, kernel symbol, kernel config or module file mentions {module}"
            ))
        };
        kernel_features.insert(feature, availability);
    }
    let tools = pairs
        .iter()
        .filter_map(|(k, v)| {
            k.strip_prefix("tool.")
                .map(|t| (t.to_string(), v.to_string()))
        })
        .collect();
    HostCaps {
        kernel: pairs.get("kernel").copied().unwrap_or("").to_string(),
        kernel_features,
        tools,
        iptables_version: pairs.get("iptables_version").map(|v| v.to_string()),
        systemd: pairs.get("pid1").copied() == Some("systemd"),
        guard: pairs.get("guard").copied() == Some("1"),
        legacy_v4_tables: pairs.get("legacy_v4").copied() == Some("1"),
        legacy_v6_tables: pairs.get("legacy_v6").copied() == Some("1"),
    }
}

impl HostCaps {
    /// A feature's availability (unknown when not probed).
    pub fn feature(&self, feature: KernelFeature) -> Availability {
        self.kernel_features
            .get(&feature)
            .cloned()
            .unwrap_or_else(|| Availability::Unknown("not probed".into()))
    }

    /// The path of `tool`, when installed.
    pub fn tool(&self, tool: &str) -> Option<&str> {
        self.tools.get(tool).map(String::as_str)
    }

    /// The backend `iptables` is, from `iptables -V` (`iptables v1.8.9 (nf_tables)`); an old
    /// iptables without a backend tag is legacy.
    pub fn default_backend(&self) -> Option<FirewallBackend> {
        let version = self.iptables_version.as_deref()?;
        Some(if version.contains("nf_tables") {
            FirewallBackend::Nft
        } else {
            FirewallBackend::Legacy
        })
    }

    /// The commands of `backend`: `iptables-nft`/`iptables-legacy` when installed, else plain
    /// `iptables` when it is that backend.
    pub fn firewall(&self, backend: FirewallBackend) -> Option<Firewall> {
        let suffix = backend.as_str();
        let plain_is_it = self.default_backend() == Some(backend);
        let pick = |family: &str| {
            self.tool(&format!("{family}-{suffix}"))
                .or_else(|| plain_is_it.then(|| self.tool(family)).flatten())
                .map(str::to_string)
        };
        Some(Firewall {
            backend,
            iptables: pick("iptables")?,
            ip6tables: pick("ip6tables"),
        })
    }

    /// The firewall soak uses for partitions: the backend `iptables` is (what the host's own
    /// rules use), else whichever is installed.
    pub fn partition_firewall(&self) -> Option<Firewall> {
        self.default_backend()
            .and_then(|b| self.firewall(b))
            .or_else(|| self.firewall(FirewallBackend::Nft))
            .or_else(|| self.firewall(FirewallBackend::Legacy))
    }

    /// Every backend whose tables may hold soak objects, for sweeps and snapshots. The legacy
    /// backend is looked at only when its tables exist already: listing them would create them.
    pub fn inspectable_firewalls(&self) -> Vec<Firewall> {
        let mut out = Vec::new();
        if let Some(nft) = self.firewall(FirewallBackend::Nft) {
            out.push(nft);
        }
        if let Some(legacy) = self.firewall(FirewallBackend::Legacy) {
            let v4 = self.legacy_v4_tables;
            let v6 = self.legacy_v6_tables;
            if v4 || v6 || self.default_backend() == Some(FirewallBackend::Legacy) {
                out.push(Firewall {
                    ip6tables: legacy.ip6tables.filter(|_| v6),
                    ..legacy
                });
            }
        }
        out
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// What this machine's kernel printed (no netem, no prio).
    const THIS_KERNEL: &str = "kernel=6.18.44-fc-v1098\npid1=process_api\n\
        tool.tc=/usr/sbin/tc\ntool.iptables=/usr/sbin/iptables\ntool.iptables-nft=/usr/sbin/iptables-nft\n\
        tool.ip6tables-nft=/usr/sbin/ip6tables-nft\ntool.iptables-legacy=/usr/sbin/iptables-legacy\n\
        tool.ip6tables=/usr/sbin/ip6tables\niptables_version=iptables v1.8.9 (nf_tables)\n\
        loaded.sch_htb=1\nsym.htb_enqueue=1\nsym.tbf_enqueue=1\nsym.u32_classify=1\nconfig=/proc/config.gz\n\
        cfg.CONFIG_NET_SCH_HTB=y\ncfg.CONFIG_NET_SCH_PRIO=n\ncfg.CONFIG_NET_SCH_TBF=y\ncfg.CONFIG_NET_SCH_NETEM=n\n\
        cfg.CONFIG_NET_CLS_U32=y\nguard=1\n";

    #[test]
    fn a_kernel_without_netem_says_so_with_its_evidence() {
        let caps = parse(THIS_KERNEL);
        assert_eq!(
            caps.feature(KernelFeature::Netem),
            Availability::Absent("CONFIG_NET_SCH_NETEM is not set in /proc/config.gz".into())
        );
        assert!(caps.feature(KernelFeature::Prio).is_absent());
        assert_eq!(
            caps.feature(KernelFeature::Htb),
            Availability::Present("module sch_htb is loaded".into())
        );
        assert!(caps.feature(KernelFeature::Tbf).is_present());
        assert!(caps.guard);
        assert!(!caps.systemd);
    }

    #[test]
    fn evidence_order_symbols_config_modules() {
        let caps =
            parse("sym.netem_enqueue=1\ncfg.CONFIG_NET_SCH_NETEM=n\nconfig=/boot/config-x\n");
        assert!(
            caps.feature(KernelFeature::Netem).is_present(),
            "a symbol beats a stale config"
        );
        let caps = parse("config=/boot/c\ncfg.CONFIG_NET_SCH_NETEM=m\nmodfile.sch_netem=1\n");
        assert_eq!(
            caps.feature(KernelFeature::Netem),
            Availability::Present("loadable module sch_netem".into())
        );
        let caps = parse("config=/boot/c\ncfg.CONFIG_NET_SCH_NETEM=m\n");
        assert!(caps.feature(KernelFeature::Netem).is_absent());
        let caps = parse("kernel=x\n");
        assert!(matches!(
            caps.feature(KernelFeature::Netem),
            Availability::Unknown(_)
        ));
    }

    #[test]
    fn firewall_backends_are_told_apart() {
        let caps = parse(THIS_KERNEL);
        assert_eq!(caps.default_backend(), Some(FirewallBackend::Nft));
        let fw = caps.partition_firewall().expect("firewall");
        assert_eq!(fw.iptables, "/usr/sbin/iptables-nft");
        assert_eq!(fw.ip6tables.as_deref(), Some("/usr/sbin/ip6tables-nft"));
        let legacy = caps
            .firewall(FirewallBackend::Legacy)
            .expect("legacy installed");
        assert_eq!(legacy.iptables, "/usr/sbin/iptables-legacy");
        assert_eq!(legacy.ip6tables, None, "plain ip6tables is nft here");
        // Legacy tables that do not exist are not listed (listing would create them).
        assert_eq!(caps.inspectable_firewalls().len(), 1);
        let old = parse(
            "tool.iptables=/sbin/iptables\ntool.ip6tables=/sbin/ip6tables\niptables_version=iptables v1.6.1\n",
        );
        let fw = old.partition_firewall().expect("firewall");
        assert_eq!(
            (fw.backend, fw.iptables.as_str()),
            (FirewallBackend::Legacy, "/sbin/iptables")
        );
    }

    #[test]
    fn the_detect_script_is_valid_sh_and_runs_here() {
        let host = Host::with_defaults("h", "192.0.2.1");
        let script = detect_script(&host);
        let out = std::process::Command::new("sh")
            .arg("-c")
            .arg(&script)
            .output()
            .expect("sh runs");
        assert!(
            out.status.success(),
            "{}",
            String::from_utf8_lossy(&out.stderr)
        );
        let caps = parse(&String::from_utf8_lossy(&out.stdout));
        assert!(!caps.kernel.is_empty());
        // Whatever this kernel has, every feature got an answer.
        assert_eq!(caps.kernel_features.len(), KernelFeature::ALL.len());
    }
}
