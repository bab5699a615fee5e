//! The lab's pure part: names, addresses, paths and the text of every file it writes.
//!
//! Nothing here touches the system, so the whole layout of a lab can be unit-tested and the IO
//! shell in [`super`] only has to follow it.

use std::collections::BTreeSet;
use std::net::{Ipv4Addr, Ipv6Addr};
use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};

use super::LabError;

/// The default lab directory. Short on purpose: OpenSSH control sockets need paths ≤ 61 bytes.
pub const DEFAULT_DIR: &str = "/tmp/soak-lab";
/// The default lab name: the prefix of every namespace the lab makes.
pub const DEFAULT_NAME: &str = "soaklab";
/// The lab subnet (RFC 2544 benchmarking range: never routed on the internet).
pub const SUBNET: &str = "198.18.0.0/24";
/// Prefix length of [`SUBNET`].
pub const PREFIX_LEN: u8 = 24;
/// The controller's address.
pub const CONTROLLER_ADDRESS: Ipv4Addr = Ipv4Addr::new(198, 18, 0, 1);
/// Host `i` (1-based) gets `198.18.0.(FIRST_HOST_OCTET - 1 + i)`: h1 is .11.
pub const FIRST_HOST_OCTET: u8 = 11;
/// Most hosts a lab may have (.11 ..= .210).
pub const MAX_HOSTS: usize = 200;
/// Longest accepted lab directory path, in bytes (control sockets live below such paths).
pub const MAX_DIR_LEN: usize = 40;
/// Longest accepted lab name.
pub const MAX_NAME_LEN: usize = 16;
/// Version of the state file format ([`LabState::format`]).
pub const STATE_FORMAT: u32 = 1;
/// The SSH user of every lab host (sshd runs as root in the host namespaces).
pub const SSH_USER: &str = "root";
/// The SSH port of every lab host.
pub const SSH_PORT: u16 = 22;
/// The admin API port written into the lab inventory.
pub const API_PORT: u16 = 7100;
/// The gossip port written into the lab inventory.
pub const GOSSIP_PORT: u16 = 7000;
/// The lab's IPv6 subnet (a ULA prefix; only inside the lab's namespaces).
pub const SUBNET6: &str = "fd00:198:18::/64";
/// Prefix length of the IPv6 subnets.
pub const PREFIX6_LEN: u8 = 64;
/// The controller's IPv6 address.
pub const CONTROLLER_ADDRESS6: Ipv6Addr = Ipv6Addr::new(0xfd00, 0x198, 0x18, 0, 0, 0, 0, 1);
/// The subnet behind the bastion (hosts reachable only through the jump host).
pub const INNER_SUBNET: &str = "198.18.1.0/24";
/// The IPv6 subnet behind the bastion.
pub const INNER_SUBNET6: &str = "fd00:198:18:1::/64";
/// The bastion's address on the main subnet (`ssh -J root@198.18.0.2`).
pub const BASTION_ADDRESS: Ipv4Addr = Ipv4Addr::new(198, 18, 0, 2);
/// The bastion's IPv6 address on the main subnet.
pub const BASTION_ADDRESS6: Ipv6Addr = Ipv6Addr::new(0xfd00, 0x198, 0x18, 0, 0, 0, 0, 2);
/// The bastion's address on the inner subnet (the inner hosts' gateway).
pub const BASTION_INNER_ADDRESS: Ipv4Addr = Ipv4Addr::new(198, 18, 1, 1);
/// The bastion's IPv6 address on the inner subnet.
pub const BASTION_INNER_ADDRESS6: Ipv6Addr = Ipv6Addr::new(0xfd00, 0x198, 0x18, 1, 0, 0, 0, 1);
/// The bridge interface inside the bridge namespace.
pub const BRIDGE_INTERFACE: &str = "br0";
/// The inner bridge (hosts behind the bastion).
pub const INNER_BRIDGE_INTERFACE: &str = "br1";
/// The bastion's interface on the inner bridge.
pub const BASTION_INNER_INTERFACE: &str = "eth1";
/// The lab interface inside the controller and every host namespace.
pub const MEMBER_INTERFACE: &str = "eth0";

/// Where a lab lives and how big it is; validated on construction.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LabLayout {
    dir: PathBuf,
    name: String,
    hosts: usize,
    /// Hosts (1-based) whose SSH user is a non-root user with passwordless sudo.
    sudo_hosts: BTreeSet<usize>,
    /// Hosts (1-based) reachable only through the bastion.
    inner_hosts: BTreeSet<usize>,
}

/// One host of a lab, as laid out (before anything runs).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct HostLayout {
    /// 1-based index.
    pub index: usize,
    /// Inventory name (`h1`).
    pub name: String,
    /// Network namespace (`soaklab-h1`).
    pub namespace: String,
    /// Lab address.
    pub address: Ipv4Addr,
    /// Lab IPv6 address.
    pub address6: Ipv6Addr,
    /// SSH login user (root, or the lab's sudo user).
    pub ssh_user: String,
    /// Reachable only through the bastion (on the inner bridge).
    pub behind_bastion: bool,
    /// The bridge-side end of the host's veth pair (lives in the bridge namespace).
    pub bridge_port: String,
    /// Where deploy installs the node on this host.
    pub install_dir: PathBuf,
    /// The host's sshd files (config, host key, pid file, log).
    pub sshd_dir: PathBuf,
}

impl HostLayout {
    /// The sshd config file.
    pub fn sshd_config(&self) -> PathBuf {
        self.sshd_dir.join("sshd_config")
    }
    /// The host's private host key (its `.pub` sits beside it).
    pub fn host_key(&self) -> PathBuf {
        self.sshd_dir.join("ssh_host_ed25519_key")
    }
    /// The host's public host key.
    pub fn host_key_pub(&self) -> PathBuf {
        self.sshd_dir.join("ssh_host_ed25519_key.pub")
    }
    /// sshd's pid file.
    pub fn sshd_pid_file(&self) -> PathBuf {
        self.sshd_dir.join("sshd.pid")
    }
    /// sshd's log (`sshd -E`).
    pub fn sshd_log(&self) -> PathBuf {
        self.sshd_dir.join("sshd.log")
    }
}

impl LabLayout {
    /// Validates a lab's directory, name and host count.
    pub fn new(dir: PathBuf, name: String, hosts: usize) -> Result<Self, LabError> {
        validate_dir(&dir)?;
        validate_name(&name)?;
        if hosts == 0 || hosts > MAX_HOSTS {
            return Err(LabError::Usage(format!(
                "a lab has 1 to {MAX_HOSTS} hosts, not {hosts}"
            )));
        }
        Ok(LabLayout {
            dir,
            name,
            hosts,
            sudo_hosts: BTreeSet::new(),
            inner_hosts: BTreeSet::new(),
        })
    }

    fn host_indexes(&self, names: &[String], what: &str) -> Result<BTreeSet<usize>, LabError> {
        names
            .iter()
            .map(|name| {
                name.strip_prefix('h')
                    .and_then(|n| n.parse::<usize>().ok())
                    .filter(|i| (1..=self.hosts).contains(i))
                    .ok_or_else(|| {
                        LabError::Usage(format!(
                            "{what} {name:?}: not a host of this lab (h1 … h{})",
                            self.hosts
                        ))
                    })
            })
            .collect()
    }

    /// Makes the named hosts (`h2`, …) log in as the lab's non-root sudo user
    /// ([`sudo_user`]) with passwordless sudo (`become = true` in the inventory).
    pub fn with_sudo_hosts(mut self, names: &[String]) -> Result<Self, LabError> {
        self.sudo_hosts = self.host_indexes(names, "--sudo-host")?;
        Ok(self)
    }

    /// Puts the named hosts behind a bastion: on an inner subnet the controller has no route
    /// to, reached with `ssh -J` through the bastion namespace (`proxy_jump` in the inventory).
    pub fn with_bastion_hosts(mut self, names: &[String]) -> Result<Self, LabError> {
        self.inner_hosts = self.host_indexes(names, "--behind-bastion")?;
        if self.inner_hosts.len() == self.hosts {
            return Err(LabError::Usage(
                "at least one host must stay in front of the bastion".into(),
            ));
        }
        Ok(self)
    }

    /// Whether the lab has a bastion.
    pub fn has_bastion(&self) -> bool {
        !self.inner_hosts.is_empty()
    }

    /// Whether the lab has a sudo user.
    pub fn has_sudo_user(&self) -> bool {
        !self.sudo_hosts.is_empty()
    }

    /// The bastion namespace.
    pub fn bastion_namespace(&self) -> String {
        bastion_namespace(&self.name)
    }

    /// The bastion as an sshd host (index 0, `bastion`), when the lab has one.
    pub fn bastion(&self) -> Option<HostLayout> {
        self.has_bastion().then(|| HostLayout {
            index: 0,
            name: "bastion".into(),
            namespace: self.bastion_namespace(),
            address: BASTION_ADDRESS,
            address6: BASTION_ADDRESS6,
            ssh_user: SSH_USER.into(),
            behind_bastion: false,
            bridge_port: "vbas".into(),
            install_dir: self.dir.join("hosts").join("bastion"),
            sshd_dir: self.dir.join("sshd").join("bastion"),
        })
    }

    /// The bridge-side veth end of the bastion on the inner bridge.
    pub fn bastion_inner_port(&self) -> &'static str {
        "vbas1"
    }

    /// The IPv6 inventory (every host's `address` is its IPv6 address).
    pub fn inventory6_file(&self) -> PathBuf {
        self.dir.join("inventory6.toml")
    }

    /// Per-user authorized_keys files (`AuthorizedKeysFile …/%u`).
    pub fn authorized_keys_dir(&self) -> PathBuf {
        self.dir.join("authorized_keys.d")
    }

    /// The sudoers drop-in of the lab's sudo user.
    pub fn sudoers_file(&self) -> PathBuf {
        sudoers_file(&self.name)
    }

    /// Home of the lab's sudo user.
    pub fn sudo_home(&self) -> PathBuf {
        self.dir.join("home").join(sudo_user(&self.name))
    }

    /// The lab directory.
    pub fn dir(&self) -> &Path {
        &self.dir
    }
    /// The lab name (namespace prefix).
    pub fn name(&self) -> &str {
        &self.name
    }
    /// How many hosts.
    pub fn host_count(&self) -> usize {
        self.hosts
    }
    /// The controller namespace.
    pub fn controller_namespace(&self) -> String {
        controller_namespace(&self.name)
    }
    /// The bridge namespace.
    pub fn bridge_namespace(&self) -> String {
        bridge_namespace(&self.name)
    }
    /// The bridge-side veth end of the controller.
    pub fn controller_bridge_port(&self) -> &'static str {
        "vctl"
    }
    /// The state file (`lab.json`).
    pub fn state_file(&self) -> PathBuf {
        state_file(&self.dir)
    }
    /// The marker file that tells `down` this directory is a lab's and may be removed.
    pub fn marker_file(&self) -> PathBuf {
        marker_file(&self.dir)
    }
    /// The inventory file (native TOML).
    pub fn inventory_file(&self) -> PathBuf {
        self.dir.join("inventory.toml")
    }
    /// The client's private key.
    pub fn client_key(&self) -> PathBuf {
        self.dir.join("id_ed25519")
    }
    /// The client's public key.
    pub fn client_key_pub(&self) -> PathBuf {
        self.dir.join("id_ed25519.pub")
    }
    /// The authorized_keys file every host's sshd reads.
    pub fn authorized_keys(&self) -> PathBuf {
        self.dir.join("authorized_keys")
    }
    /// known_hosts with every host's key.
    pub fn known_hosts(&self) -> PathBuf {
        self.dir.join("known_hosts")
    }
    /// An `ssh -F` config naming every host.
    pub fn ssh_config(&self) -> PathBuf {
        self.dir.join("ssh_config")
    }

    /// Host `index` (1-based).
    pub fn host(&self, index: usize) -> HostLayout {
        let name = format!("h{index}");
        let inner = self.inner_hosts.contains(&index);
        let (address, address6) = if inner {
            (inner_host_address(index), inner_host_address6(index))
        } else {
            (host_address(index), host_address6(index))
        };
        HostLayout {
            index,
            namespace: host_namespace(&self.name, index),
            address,
            address6,
            ssh_user: if self.sudo_hosts.contains(&index) {
                sudo_user(&self.name)
            } else {
                SSH_USER.to_owned()
            },
            behind_bastion: inner,
            bridge_port: format!("v{name}"),
            install_dir: self.dir.join("hosts").join(&name),
            sshd_dir: self.dir.join("sshd").join(&name),
            name,
        }
    }

    /// Every host, in order.
    pub fn hosts(&self) -> Vec<HostLayout> {
        (1..=self.hosts).map(|index| self.host(index)).collect()
    }
}

/// The controller namespace of lab `name`.
pub fn controller_namespace(name: &str) -> String {
    format!("{name}-ctl")
}

/// The bridge namespace of lab `name`.
pub fn bridge_namespace(name: &str) -> String {
    format!("{name}-br")
}

/// The bastion namespace of lab `name`.
pub fn bastion_namespace(name: &str) -> String {
    format!("{name}-bas")
}

/// The non-root SSH user of lab `name`'s sudo hosts (`soaklabu`).
pub fn sudo_user(name: &str) -> String {
    format!("{name}u")
}

/// The sudoers drop-in of lab `name` (no `.` in the name: sudo skips such files).
pub fn sudoers_file(name: &str) -> PathBuf {
    PathBuf::from(format!("/etc/sudoers.d/soak-lab-{name}"))
}

/// The GECOS field marking the lab's sudo user (down removes only a user carrying it).
pub fn sudo_user_gecos(name: &str) -> String {
    format!("soak lab {name}")
}

fn v6_suffix(octet: u8) -> u16 {
    // Written like the IPv4 octet: h1 (…0.11) is …::11.
    u16::from_str_radix(&octet.to_string(), 16).unwrap_or(u16::from(octet))
}

/// The IPv6 address of host `index` (1-based) in front of the bastion: `fd00:198:18::<octet>`.
pub fn host_address6(index: usize) -> Ipv6Addr {
    let octet = host_address(index).octets()[3];
    Ipv6Addr::new(0xfd00, 0x198, 0x18, 0, 0, 0, 0, v6_suffix(octet))
}

/// The address of host `index` behind the bastion: `198.18.1.<octet>`.
pub fn inner_host_address(index: usize) -> Ipv4Addr {
    let octet = host_address(index).octets()[3];
    Ipv4Addr::new(198, 18, 1, octet)
}

/// The IPv6 address of host `index` behind the bastion: `fd00:198:18:1::<octet>`.
pub fn inner_host_address6(index: usize) -> Ipv6Addr {
    let octet = host_address(index).octets()[3];
    Ipv6Addr::new(0xfd00, 0x198, 0x18, 1, 0, 0, 0, v6_suffix(octet))
}

/// The namespace of host `index` of lab `name`.
pub fn host_namespace(name: &str, index: usize) -> String {
    format!("{name}-h{index}")
}

/// The address of host `index` (1-based). Callers keep `index ≤ MAX_HOSTS`.
pub fn host_address(index: usize) -> Ipv4Addr {
    // MAX_HOSTS keeps the octet ≤ 210; saturate rather than wrap should a caller not.
    let octet = u8::try_from(index + usize::from(FIRST_HOST_OCTET) - 1).unwrap_or(u8::MAX);
    Ipv4Addr::new(198, 18, 0, octet)
}

/// The state file of the lab in `dir`.
pub fn state_file(dir: &Path) -> PathBuf {
    dir.join("lab.json")
}

/// The marker file of the lab in `dir`.
pub fn marker_file(dir: &Path) -> PathBuf {
    dir.join(".soak-lab")
}

/// Which of lab `name`'s namespaces `namespace` is, if any: `{name}-ctl`, `{name}-br` or
/// `{name}-h<N>`. Names contain no `-`, so one lab's prefix never matches another's namespaces.
pub fn lab_namespace_role(name: &str, namespace: &str) -> Option<NamespaceRole> {
    let rest = namespace.strip_prefix(name)?.strip_prefix('-')?;
    match rest {
        "ctl" => Some(NamespaceRole::Controller),
        "br" => Some(NamespaceRole::Bridge),
        "bas" => Some(NamespaceRole::Bastion),
        _ => {
            let digits = rest.strip_prefix('h')?;
            if digits.is_empty() || digits.starts_with('0') {
                return None;
            }
            digits.parse::<usize>().ok().map(NamespaceRole::Host)
        }
    }
}

/// What a lab namespace is for.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum NamespaceRole {
    /// The controller (`soak lab exec` runs here).
    Controller,
    /// The bridge joining everything.
    Bridge,
    /// The jump host in front of the inner hosts.
    Bastion,
    /// Host N (1-based).
    Host(usize),
}

/// A lab name: starts with `soak` (so leftovers are identifiable), lowercase letters and digits
/// only (no `-`, which separates the name from the role), at most [`MAX_NAME_LEN`] bytes.
pub fn validate_name(name: &str) -> Result<(), LabError> {
    let valid_chars = name
        .bytes()
        .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit());
    if !name.starts_with("soak") || !valid_chars || name.len() > MAX_NAME_LEN {
        return Err(LabError::Usage(format!(
            "invalid lab name {name:?}: it must start with \"soak\", use only a-z and 0-9 and be \
             at most {MAX_NAME_LEN} characters (e.g. \"soaklab\")"
        )));
    }
    Ok(())
}

/// A lab directory: absolute, normal components only, characters safe to write unquoted into
/// sshd and ssh configs, at most [`MAX_DIR_LEN`] bytes, and not `/` itself.
pub fn validate_dir(dir: &Path) -> Result<(), LabError> {
    let text = dir.to_string_lossy();
    let safe_chars = text
        .bytes()
        .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'/' | b'.' | b'_' | b'-'));
    // Checked on the text: `Path::components` silently drops `.` and repeated slashes.
    let segments: Vec<&str> = text.split('/').collect();
    let normal = dir.is_absolute()
        && segments[0].is_empty()
        && segments[1..]
            .iter()
            .all(|s| !s.is_empty() && *s != "." && *s != "..")
        && segments.len() >= 3;
    if !safe_chars || !normal || text.len() > MAX_DIR_LEN {
        return Err(LabError::Usage(format!(
            "invalid lab directory {text:?}: use an absolute path at least two levels deep, \
             at most {MAX_DIR_LEN} bytes, made of letters, digits, '/', '.', '_' and '-' \
             (e.g. {DEFAULT_DIR})"
        )));
    }
    Ok(())
}

/// The sshd config of one host.
pub fn render_sshd_config(layout: &LabLayout, host: &HostLayout) -> String {
    format!(
        "# Written by `soak lab up` for host {host_name} of lab {lab}; rewritten on every up.\n\
         Port {SSH_PORT}\n\
         ListenAddress {address}:{SSH_PORT}\n\
         ListenAddress [{address6}]:{SSH_PORT}\n\
         HostKey {host_key}\n\
         PidFile {pid_file}\n\
         # One file per login user (%u), owned by that user: sshd reads it with the user's rights.\n\
         AuthorizedKeysFile {authorized_keys}/%u\n\
         PubkeyAuthentication yes\n\
         PasswordAuthentication no\n\
         KbdInteractiveAuthentication no\n\
         UsePAM no\n\
         PermitRootLogin prohibit-password\n\
         # The lab files live under /tmp, whose mode StrictModes rejects; they are 0600 anyway.\n\
         StrictModes no\n\
         UseDNS no\n\
         PrintMotd no\n\
         # deploy and run multiplex many sessions and port-forwards over one connection.\n\
         MaxSessions 64\n\
         MaxStartups 64:30:128\n\
         AllowTcpForwarding yes\n\
         Subsystem sftp internal-sftp\n\
         LogLevel INFO\n",
        host_name = host.name,
        lab = layout.name(),
        address = host.address,
        address6 = host.address6,
        host_key = host.host_key().display(),
        pid_file = host.sshd_pid_file().display(),
        authorized_keys = layout.authorized_keys_dir().display(),
    )
}

/// known_hosts: one line per host, `ADDRESS KEYTYPE KEY` (port 22 needs no brackets).
/// `host_keys` holds each host's public key line as `ssh-keygen` wrote it.
pub fn render_known_hosts(hosts: &[(String, String)]) -> String {
    let mut out = String::new();
    for (address, public_key) in hosts {
        // Keep type and key; drop the comment.
        let mut fields = public_key.split_whitespace();
        if let (Some(kind), Some(key)) = (fields.next(), fields.next()) {
            out.push_str(&format!("{address} {kind} {key}\n"));
        }
    }
    out
}

/// A TOML basic string with escapes.
fn toml_string(text: &str) -> String {
    toml::Value::String(text.to_owned()).to_string()
}

/// The lab inventory in the native TOML format (IPv4 addresses; the IPv6 one is a label).
pub fn render_inventory(layout: &LabLayout) -> String {
    render_inventory_family(layout, false)
}

/// The lab inventory with every host's IPv6 address as its `address` (SSH and the overlay over
/// IPv6); the IPv4 address is a label.
pub fn render_inventory6(layout: &LabLayout) -> String {
    render_inventory_family(layout, true)
}

fn render_inventory_family(layout: &LabLayout, ipv6: bool) -> String {
    let mut out = format!(
        "# Written by `soak lab up` for lab {lab} ({count} hosts, {family}); rewritten on every up.\n\
         [defaults]\n\
         ssh_user = {user}\n\
         ssh_port = {SSH_PORT}\n\
         ssh_key = {key}\n\
         known_hosts = {known_hosts}\n\
         host_key_checking = \"strict\"\n\
         service = \"background\"\n\
         api_port = {API_PORT}\n\
         gossip_port = {GOSSIP_PORT}\n",
        lab = layout.name(),
        count = layout.host_count(),
        family = if ipv6 { "IPv6" } else { "IPv4" },
        user = toml_string(SSH_USER),
        key = toml_string(&layout.client_key().to_string_lossy()),
        known_hosts = toml_string(&layout.known_hosts().to_string_lossy()),
    );
    for host in layout.hosts() {
        let (address, other_key, other) = if ipv6 {
            (host.address6.to_string(), "ipv4", host.address.to_string())
        } else {
            (host.address.to_string(), "ipv6", host.address6.to_string())
        };
        out.push_str(&format!(
            "\n[[hosts]]\n\
             name = {name}\n\
             address = \"{address}\"\n\
             install_dir = {install_dir}\n\
             labels = {{ region = \"lab\", {other_key} = \"{other}\" }}\n",
            name = toml_string(&host.name),
            install_dir = toml_string(&host.install_dir.to_string_lossy()),
        ));
        if host.ssh_user != SSH_USER {
            out.push_str(&format!(
                "ssh_user = {}\nbecome = true\n",
                toml_string(&host.ssh_user)
            ));
        }
        if host.behind_bastion {
            // The jump host's own settings (key, known_hosts) come from the lab's ssh config.
            out.push_str(&format!(
                "proxy_jump = \"{SSH_USER}@{BASTION_ADDRESS}\"\nssh_config = {}\n",
                toml_string(&layout.ssh_config().to_string_lossy())
            ));
        }
    }
    out
}

/// An `ssh -F` config: `ssh -F DIR/ssh_config h1 hostname` works from the controller namespace.
pub fn render_ssh_config(layout: &LabLayout) -> String {
    let mut out = format!(
        "# Written by `soak lab up` for lab {lab}. Use: soak lab exec -- ssh -F {config} h1\n",
        lab = layout.name(),
        config = layout.ssh_config().display(),
    );
    if layout.has_bastion() {
        out.push_str(&format!(
            "Host bastion {BASTION_ADDRESS}\n    HostName {BASTION_ADDRESS}\n"
        ));
    }
    for host in layout.hosts() {
        out.push_str(&format!(
            "Host {name}\n    HostName {address}\n",
            name = host.name,
            address = host.address
        ));
        if host.ssh_user != SSH_USER {
            out.push_str(&format!("    User {}\n", host.ssh_user));
        }
        if host.behind_bastion {
            out.push_str(&format!("    ProxyJump {SSH_USER}@{BASTION_ADDRESS}\n"));
        }
    }
    out.push_str(&format!(
        "Host *\n\
         \x20   User {SSH_USER}\n\
         \x20   Port {SSH_PORT}\n\
         \x20   IdentityFile {key}\n\
         \x20   IdentitiesOnly yes\n\
         \x20   UserKnownHostsFile {known_hosts}\n\
         \x20   StrictHostKeyChecking yes\n\
         \x20   BatchMode yes\n\
         \x20   ConnectTimeout 5\n",
        key = layout.client_key().display(),
        known_hosts = layout.known_hosts().display(),
    ));
    out
}

/// The lab state file (`lab.json`): everything `status` and `down` need, written by `up`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct LabState {
    /// [`STATE_FORMAT`].
    pub format: u32,
    /// Lab name (namespace prefix).
    pub name: String,
    /// Lab directory.
    pub dir: PathBuf,
    /// Lab subnet.
    pub subnet: String,
    /// The inventory file (native TOML).
    pub inventory: PathBuf,
    /// The client's private key.
    pub ssh_key: PathBuf,
    /// known_hosts with every host's key.
    pub known_hosts: PathBuf,
    /// An `ssh -F` config naming every host.
    pub ssh_config: PathBuf,
    /// SSH user on every host (the sudo hosts' user is in each host's state).
    pub ssh_user: String,
    /// The IPv6 subnet.
    #[serde(default)]
    pub subnet6: String,
    /// The inventory with IPv6 addresses.
    #[serde(default)]
    pub inventory6: PathBuf,
    /// The non-root sudo user, when some hosts use it.
    #[serde(default)]
    pub sudo_user: Option<String>,
    /// The bastion, when some hosts are behind it.
    #[serde(default)]
    pub bastion: Option<HostState>,
    /// The bridge.
    pub bridge: BridgeState,
    /// The controller.
    pub controller: ControllerState,
    /// The hosts, in order.
    pub hosts: Vec<HostState>,
}

/// The bridge namespace and its bridge.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct BridgeState {
    /// Namespace.
    pub namespace: String,
    /// Bridge interface inside it.
    pub interface: String,
}

/// The controller namespace.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ControllerState {
    /// Namespace.
    pub namespace: String,
    /// Lab address.
    pub address: Ipv4Addr,
    /// Lab IPv6 address.
    #[serde(default = "controller6")]
    pub address6: Ipv6Addr,
}

fn controller6() -> Ipv6Addr {
    CONTROLLER_ADDRESS6
}

fn unspecified6() -> Ipv6Addr {
    Ipv6Addr::UNSPECIFIED
}

fn root_user() -> String {
    SSH_USER.to_owned()
}

/// One host.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct HostState {
    /// Inventory name.
    pub name: String,
    /// Namespace.
    pub namespace: String,
    /// Lab address.
    pub address: Ipv4Addr,
    /// Lab IPv6 address.
    #[serde(default = "unspecified6")]
    pub address6: Ipv6Addr,
    /// SSH login user.
    #[serde(default = "root_user")]
    pub ssh_user: String,
    /// Reachable only through the bastion.
    #[serde(default)]
    pub behind_bastion: bool,
    /// SSH port.
    pub ssh_port: u16,
    /// Install dir for deploy.
    pub install_dir: PathBuf,
    /// The sshd the lab started (listener pid).
    pub sshd_pid: u32,
    /// sshd config.
    pub sshd_config: PathBuf,
    /// sshd pid file.
    pub sshd_pid_file: PathBuf,
    /// sshd log.
    pub sshd_log: PathBuf,
    /// Public host key file.
    pub host_key_pub: PathBuf,
}

impl LabState {
    /// The state of `layout` once every host's sshd runs with the given pids (in host order).
    pub fn new(layout: &LabLayout, sshd_pids: &[u32]) -> Self {
        Self::with_bastion(layout, sshd_pids, None)
    }

    /// Like [`LabState::new`], with the bastion's sshd pid when the lab has one.
    pub fn with_bastion(layout: &LabLayout, sshd_pids: &[u32], bastion_pid: Option<u32>) -> Self {
        let host_state = |host: HostLayout, pid: u32| HostState {
            ssh_port: SSH_PORT,
            sshd_pid: pid,
            sshd_config: host.sshd_config(),
            sshd_pid_file: host.sshd_pid_file(),
            sshd_log: host.sshd_log(),
            host_key_pub: host.host_key_pub(),
            name: host.name,
            namespace: host.namespace,
            address: host.address,
            address6: host.address6,
            ssh_user: host.ssh_user,
            behind_bastion: host.behind_bastion,
            install_dir: host.install_dir,
        };
        LabState {
            format: STATE_FORMAT,
            name: layout.name().to_owned(),
            dir: layout.dir().to_path_buf(),
            subnet: SUBNET.to_owned(),
            inventory: layout.inventory_file(),
            ssh_key: layout.client_key(),
            known_hosts: layout.known_hosts(),
            ssh_config: layout.ssh_config(),
            ssh_user: SSH_USER.to_owned(),
            subnet6: SUBNET6.to_owned(),
            inventory6: layout.inventory6_file(),
            sudo_user: layout.has_sudo_user().then(|| sudo_user(layout.name())),
            bastion: layout
                .bastion()
                .map(|b| host_state(b, bastion_pid.unwrap_or(0))),
            bridge: BridgeState {
                namespace: layout.bridge_namespace(),
                interface: BRIDGE_INTERFACE.to_owned(),
            },
            controller: ControllerState {
                namespace: layout.controller_namespace(),
                address: CONTROLLER_ADDRESS,
                address6: CONTROLLER_ADDRESS6,
            },
            hosts: layout
                .hosts()
                .into_iter()
                .zip(sshd_pids)
                .map(|(host, &pid)| host_state(host, pid))
                .collect(),
        }
    }

    /// Every namespace the state names.
    pub fn namespaces(&self) -> Vec<String> {
        let mut all = vec![
            self.controller.namespace.clone(),
            self.bridge.namespace.clone(),
        ];
        all.extend(self.bastion.iter().map(|b| b.namespace.clone()));
        all.extend(self.hosts.iter().map(|h| h.namespace.clone()));
        all
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn layout(hosts: usize) -> LabLayout {
        LabLayout::new(PathBuf::from("/tmp/soak-lab"), "soaklab".into(), hosts).unwrap()
    }

    #[test]
    fn names_and_addresses_follow_the_scheme() {
        let lab = layout(3);
        assert_eq!(lab.controller_namespace(), "soaklab-ctl");
        assert_eq!(lab.bridge_namespace(), "soaklab-br");
        let h2 = lab.host(2);
        assert_eq!(h2.name, "h2");
        assert_eq!(h2.namespace, "soaklab-h2");
        assert_eq!(h2.address, Ipv4Addr::new(198, 18, 0, 12));
        assert_eq!(h2.install_dir, PathBuf::from("/tmp/soak-lab/hosts/h2"));
        assert_eq!(lab.host(MAX_HOSTS).address, Ipv4Addr::new(198, 18, 0, 210));
        assert_eq!(lab.hosts().len(), 3);
    }

    #[test]
    fn bridge_ports_fit_in_an_interface_name() {
        // IFNAMSIZ is 16 including the NUL.
        assert!(layout(MAX_HOSTS).host(MAX_HOSTS).bridge_port.len() <= 15);
    }

    #[test]
    fn namespace_roles_match_only_this_labs_names() {
        assert_eq!(
            lab_namespace_role("soaklab", "soaklab-ctl"),
            Some(NamespaceRole::Controller)
        );
        assert_eq!(
            lab_namespace_role("soaklab", "soaklab-br"),
            Some(NamespaceRole::Bridge)
        );
        assert_eq!(
            lab_namespace_role("soaklab", "soaklab-h12"),
            Some(NamespaceRole::Host(12))
        );
        for other in [
            "soaklab",
            "soaklab-",
            "soaklab-h",
            "soaklab-h0",
            "soaklab-h01",
            "soaklab-hx",
            "soaklab2-h1",
            "soaklabx-ctl",
            "soakla-h1",
            "soaklab-ctl2",
            "other-h1",
        ] {
            assert_eq!(lab_namespace_role("soaklab", other), None, "{other}");
        }
    }

    #[test]
    fn bad_names_dirs_and_sizes_are_usage_errors() {
        for name in [
            "lab",
            "soak-lab",
            "SOAKLAB",
            "soaklab_",
            "soakaaaaaaaaaaaaa1",
            "",
        ] {
            assert!(validate_name(name).is_err(), "{name}");
        }
        for dir in [
            "relative/dir",
            "/",
            "/tmp",
            "/tmp/../etc",
            "/tmp/a b",
            "/tmp/./x",
            "/tmp//x",
            "/tmp/x/",
            "/tmp/a-very-long-directory-name-that-is-too-long",
        ] {
            assert!(validate_dir(Path::new(dir)).is_err(), "{dir}");
        }
        assert!(validate_dir(Path::new("/tmp/soak-lab")).is_ok());
        let dir = PathBuf::from("/tmp/soak-lab");
        assert!(LabLayout::new(dir.clone(), "soaklab".into(), 0).is_err());
        assert!(LabLayout::new(dir, "soaklab".into(), MAX_HOSTS + 1).is_err());
    }

    #[test]
    fn inventory_is_valid_toml_with_every_host() {
        let lab = layout(2);
        let text = render_inventory(&lab);
        let value: toml::Table = toml::from_str(&text).unwrap();
        let defaults = value["defaults"].as_table().unwrap();
        assert_eq!(defaults["ssh_user"].as_str(), Some("root"));
        assert_eq!(defaults["ssh_port"].as_integer(), Some(22));
        assert_eq!(
            defaults["ssh_key"].as_str(),
            Some("/tmp/soak-lab/id_ed25519")
        );
        assert_eq!(
            defaults["known_hosts"].as_str(),
            Some("/tmp/soak-lab/known_hosts")
        );
        assert_eq!(defaults["host_key_checking"].as_str(), Some("strict"));
        assert_eq!(defaults["service"].as_str(), Some("background"));
        let hosts = value["hosts"].as_array().unwrap();
        assert_eq!(hosts.len(), 2);
        assert_eq!(hosts[1]["name"].as_str(), Some("h2"));
        assert_eq!(hosts[1]["address"].as_str(), Some("198.18.0.12"));
        assert_eq!(
            hosts[1]["install_dir"].as_str(),
            Some("/tmp/soak-lab/hosts/h2")
        );
        assert_eq!(hosts[1]["labels"]["region"].as_str(), Some("lab"));
    }

    #[test]
    fn inventory_parses_with_the_native_parser() {
        use crate::model::{HostKeyChecking, ServiceManager};
        let lab = layout(3);
        let file = lab.inventory_file();
        let inventory = crate::native::parse(&file, &render_inventory(&lab)).unwrap();
        assert_eq!(inventory.hosts.len(), 3);
        for (host, laid_out) in inventory.hosts.iter().zip(lab.hosts()) {
            assert_eq!(host.name, laid_out.name);
            assert_eq!(host.address, laid_out.address.to_string());
            assert_eq!(host.install_dir, laid_out.install_dir.to_string_lossy());
            assert_eq!(host.ssh.user.as_deref(), Some(SSH_USER));
            assert_eq!(host.ssh.port, SSH_PORT);
            assert_eq!(host.ssh.key.as_deref(), Some(lab.client_key().as_path()));
            assert_eq!(
                host.ssh.known_hosts.as_deref(),
                Some(lab.known_hosts().as_path())
            );
            assert_eq!(host.ssh.host_key_checking, HostKeyChecking::Strict);
            assert_eq!(host.service, ServiceManager::Background);
            assert_eq!((host.api_port, host.gossip_port), (API_PORT, GOSSIP_PORT));
            assert_eq!(host.labels.get("region").map(String::as_str), Some("lab"));
        }
    }

    #[test]
    fn sshd_config_names_this_hosts_files() {
        let lab = layout(2);
        let host = lab.host(2);
        let config = render_sshd_config(&lab, &host);
        assert!(config.contains("ListenAddress 198.18.0.12:22\n"));
        assert!(config.contains("HostKey /tmp/soak-lab/sshd/h2/ssh_host_ed25519_key\n"));
        assert!(config.contains("PidFile /tmp/soak-lab/sshd/h2/sshd.pid\n"));
        assert!(config.contains("AuthorizedKeysFile /tmp/soak-lab/authorized_keys.d/%u\n"));
        assert!(config.contains("ListenAddress [fd00:198:18::12]:22\n"));
        assert!(config.contains("UsePAM no\n"));
    }

    #[test]
    fn known_hosts_drops_comments_and_blank_keys() {
        let text = render_known_hosts(&[
            (
                "198.18.0.11".into(),
                "ssh-ed25519 AAAAkey1 root@box\n".into(),
            ),
            ("198.18.0.12".into(), "garbage".into()),
        ]);
        assert_eq!(text, "198.18.0.11 ssh-ed25519 AAAAkey1\n");
    }

    #[test]
    fn every_host_has_both_families_and_options_change_only_their_hosts() {
        let lab = layout(3);
        assert_eq!(lab.host(1).address6.to_string(), "fd00:198:18::11");
        assert!(lab.bastion().is_none());
        let lab = layout(3)
            .with_sudo_hosts(&["h2".into()])
            .unwrap()
            .with_bastion_hosts(&["h3".into()])
            .unwrap();
        let (h1, h2, h3) = (lab.host(1), lab.host(2), lab.host(3));
        assert_eq!((h1.ssh_user.as_str(), h1.behind_bastion), ("root", false));
        assert_eq!(h2.ssh_user, "soaklabu");
        assert!(h3.behind_bastion);
        assert_eq!(h3.address, Ipv4Addr::new(198, 18, 1, 13));
        assert_eq!(h3.address6.to_string(), "fd00:198:18:1::13");
        assert_eq!(
            h1.address,
            Ipv4Addr::new(198, 18, 0, 11),
            "defaults unchanged"
        );
        let inv = crate::native::parse(&lab.inventory_file(), &render_inventory(&lab)).unwrap();
        assert_eq!(inv.hosts[0].privilege, crate::Privilege::Login);
        assert_eq!(
            inv.hosts[1].privilege,
            crate::Privilege::Sudo { user: None }
        );
        assert_eq!(inv.hosts[1].ssh.user.as_deref(), Some("soaklabu"));
        assert_eq!(
            inv.hosts[2].ssh.proxy_jump.as_deref(),
            Some("root@198.18.0.2")
        );
        assert_eq!(
            inv.hosts[2].ssh.config_file.as_deref(),
            Some(lab.ssh_config().as_path())
        );
        assert_eq!(inv.hosts[0].labels["ipv6"], "fd00:198:18::11");
        let inv6 = crate::native::parse(&lab.inventory6_file(), &render_inventory6(&lab)).unwrap();
        assert_eq!(inv6.hosts[0].address, "fd00:198:18::11");
        assert_eq!(inv6.hosts[0].labels["ipv4"], "198.18.0.11");
        let ssh = render_ssh_config(&lab);
        assert!(ssh.contains("Host bastion 198.18.0.2\n"));
        assert!(ssh.contains("Host h3\n    HostName 198.18.1.13\n    ProxyJump root@198.18.0.2\n"));
        assert!(ssh.contains("Host h2\n    HostName 198.18.0.12\n    User soaklabu\n"));
        assert!(layout(2).with_sudo_hosts(&["h3".into()]).is_err());
        assert!(
            layout(2)
                .with_bastion_hosts(&["h1".into(), "h2".into()])
                .is_err()
        );
        assert_eq!(
            lab_namespace_role("soaklab", "soaklab-bas"),
            Some(NamespaceRole::Bastion)
        );
    }

    #[test]
    fn state_round_trips_through_json() {
        let lab = layout(2);
        let state = LabState::new(&lab, &[100, 200]);
        assert_eq!(state.hosts[1].sshd_pid, 200);
        assert_eq!(
            state.namespaces(),
            ["soaklab-ctl", "soaklab-br", "soaklab-h1", "soaklab-h2"]
        );
        let json = serde_json::to_string(&state).unwrap();
        let back: LabState = serde_json::from_str(&json).unwrap();
        assert_eq!(back, state);
    }
}
