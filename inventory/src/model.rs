//! The inventory model every format imports to: [`Inventory`], [`Host`] and their settings.

use std::collections::{BTreeMap, BTreeSet};
use std::fmt;
use std::path::{Path, PathBuf};
use std::str::FromStr;

use serde::{Deserialize, Serialize};

use crate::error::{InventoryError, InventoryErrorKind};

/// Default SSH port.
pub const DEFAULT_SSH_PORT: u16 = 22;
/// Default install directory of the node on a host.
pub const DEFAULT_INSTALL_DIR: &str = "/opt/soak-node";
/// Default admin API port (bound to 127.0.0.1 on the host).
pub const DEFAULT_API_PORT: u16 = 7100;
/// Default QUIC gossip port (bound to the host address).
pub const DEFAULT_GOSSIP_PORT: u16 = 7000;

/// Which file format an inventory was read from.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum InventoryFormat {
    /// soak's own TOML format.
    Native,
    /// An Ansible INI inventory.
    AnsibleIni,
    /// An Ansible YAML inventory.
    AnsibleYaml,
    /// A pssh host file (`[user@]host[:port]` per line).
    Pssh,
}

impl fmt::Display for InventoryFormat {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            InventoryFormat::Native => "native TOML",
            InventoryFormat::AnsibleIni => "Ansible INI",
            InventoryFormat::AnsibleYaml => "Ansible YAML",
            InventoryFormat::Pssh => "pssh host file",
        })
    }
}

/// How soak reaches a host.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Connection {
    /// Over SSH (the default).
    Ssh,
    /// On this machine, without SSH (Ansible's `ansible_connection=local`); for tests and
    /// single-machine fleets.
    Local,
}

/// What to do with the host key of an SSH server.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum HostKeyChecking {
    /// The key must already be in known_hosts and match (the default).
    Strict,
    /// Unknown hosts are added to known_hosts; a changed key is still refused.
    AcceptNew,
    /// No checking at all (unsafe: only for throw-away test hosts).
    Off,
}

/// Which service manager runs the node on a host.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum ServiceManager {
    /// systemd when the host runs it as PID 1 and has `systemctl`, else background.
    Auto,
    /// A systemd unit.
    Systemd,
    /// A detached background process (`setsid nohup`) tracked by a pid file.
    Background,
}

/// How the privileged steps on a host run: tc, iptables, service control, the fault guard and
/// installs outside the login user's home.
#[derive(Debug, Clone, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case", tag = "method")]
pub enum Privilege {
    /// As the login user (a root login, or a fleet where nothing privileged runs).
    Login,
    /// Through `sudo -n` (never a password prompt): native `become = true`, Ansible
    /// `ansible_become: true` with `ansible_become_method: sudo`.
    Sudo {
        /// The user to become (`become_user`); `None` is root.
        user: Option<String>,
    },
}

macro_rules! keyword_enum {
    ($ty:ty, $what:literal, { $($text:literal => $value:expr),+ $(,)? }) => {
        impl FromStr for $ty {
            type Err = String;
            fn from_str(s: &str) -> Result<Self, String> {
                match s {
                    $($text => Ok($value),)+
                    other => Err(format!(
                        concat!("unknown ", $what, " `{}` (expected one of: {})"),
                        other,
                        [$($text),+].join(", ")
                    )),
                }
            }
        }
    };
}

keyword_enum!(Connection, "connection", { "ssh" => Connection::Ssh, "smart" => Connection::Ssh, "local" => Connection::Local });
keyword_enum!(HostKeyChecking, "host_key_checking", {
    "strict" => HostKeyChecking::Strict,
    "yes" => HostKeyChecking::Strict,
    "true" => HostKeyChecking::Strict,
    "accept-new" => HostKeyChecking::AcceptNew,
    "off" => HostKeyChecking::Off,
    "no" => HostKeyChecking::Off,
    "false" => HostKeyChecking::Off,
});
keyword_enum!(ServiceManager, "service", {
    "auto" => ServiceManager::Auto,
    "systemd" => ServiceManager::Systemd,
    "background" => ServiceManager::Background,
});

/// How to log in to a host over SSH. The key is a path reference, never key material.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct SshSettings {
    /// Login user; `None` leaves it to ssh (the local user or ssh config).
    pub user: Option<String>,
    /// SSH port.
    pub port: u16,
    /// Private key file (`-i`).
    pub key: Option<PathBuf>,
    /// known_hosts file (`UserKnownHostsFile`); `None` uses ssh's default.
    pub known_hosts: Option<PathBuf>,
    /// Host key policy.
    pub host_key_checking: HostKeyChecking,
    /// Jump host(s), as for `ssh -J` (`[user@]host[:port]`, comma-separated for a chain).
    /// Settings of the jump hosts themselves come from the ssh config, as with `ssh -J`.
    #[serde(default)]
    pub proxy_jump: Option<String>,
    /// An ssh config file to use instead of `~/.ssh/config` (`ssh -F`); `None` honours the
    /// user's own ssh config.
    #[serde(default)]
    pub config_file: Option<PathBuf>,
}

/// One host of the fleet, with every setting resolved (defaults < groups < host).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Host {
    /// Unique name: node name in the proof, label in tables.
    pub name: String,
    /// Address to reach the host (SSH) and that the node's QUIC socket binds on it.
    pub address: String,
    /// How soak reaches it.
    pub connection: Connection,
    /// SSH login settings.
    pub ssh: SshSettings,
    /// Absolute directory on the host holding binary, config, data, logs.
    pub install_dir: String,
    /// Service manager for the node.
    pub service: ServiceManager,
    /// How privileged steps run (`become`).
    #[serde(default = "login_privilege")]
    pub privilege: Privilege,
    /// Admin API port, bound to 127.0.0.1 on the host.
    pub api_port: u16,
    /// QUIC port, bound to `address` on the host.
    pub gossip_port: u16,
    /// Groups the host belongs to, directly or through `children` (without `all` and
    /// `ungrouped`), sorted.
    pub groups: Vec<String>,
    /// Free-form labels (e.g. `region`), from group vars, host vars and `labels`.
    pub labels: BTreeMap<String, String>,
}

impl Host {
    /// `address:gossip_port`, with IPv6 addresses bracketed.
    pub fn gossip_addr(&self) -> String {
        join_host_port(&self.address, self.gossip_port)
    }

    /// A host with every default, named `name` at `address`.
    pub fn with_defaults(name: &str, address: &str) -> Host {
        Host {
            name: name.to_string(),
            address: address.to_string(),
            connection: Connection::Ssh,
            ssh: SshSettings {
                user: None,
                port: DEFAULT_SSH_PORT,
                key: None,
                known_hosts: None,
                host_key_checking: HostKeyChecking::Strict,
                proxy_jump: None,
                config_file: None,
            },
            install_dir: DEFAULT_INSTALL_DIR.to_string(),
            service: ServiceManager::Auto,
            privilege: Privilege::Login,
            api_port: DEFAULT_API_PORT,
            gossip_port: DEFAULT_GOSSIP_PORT,
            groups: Vec::new(),
            labels: BTreeMap::new(),
        }
    }
}

fn login_privilege() -> Privilege {
    Privilege::Login
}

/// `host:port`, bracketing IPv6 literals.
pub fn join_host_port(host: &str, port: u16) -> String {
    if host.contains(':') && !host.starts_with('[') {
        format!("[{host}]:{port}")
    } else {
        format!("{host}:{port}")
    }
}

/// A group as written in the inventory.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Group {
    /// Child groups (their hosts are members of this group too).
    pub children: Vec<String>,
    /// Group variables as written (settings and labels).
    pub vars: BTreeMap<String, String>,
}

/// A parsed inventory: the hosts in file order, with unique names.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Inventory {
    /// The file it was read from.
    pub source: PathBuf,
    /// Its format.
    pub format: InventoryFormat,
    /// The hosts, in order of first appearance.
    pub hosts: Vec<Host>,
    /// The groups by name (without the implicit `all` and `ungrouped`).
    pub groups: BTreeMap<String, Group>,
    /// Variables that were read but not applied (e.g. Ansible variables that change how a host
    /// is reached and that soak does not support): every one is named, never silently dropped.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub warnings: Vec<InventoryWarning>,
}

/// A variable of an inventory that soak read but does not apply.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct InventoryWarning {
    /// 1-based line where it is set.
    pub line: usize,
    /// The variable, e.g. `ansible_ssh_common_args`.
    pub variable: String,
    /// Where it applies: `host `h1`` or `group `eu``.
    pub scope: String,
    /// What it would have changed.
    pub effect: String,
}

impl InventoryWarning {
    /// `FILE:LINE: …` for stderr.
    pub fn describe(&self, file: &Path) -> String {
        format!(
            "{}:{}: `{}` ({}) changes how soak would reach the host — {} — but soak does not \
             support it: ignored, soak connects without it",
            file.display(),
            self.line,
            self.variable,
            self.scope,
            self.effect
        )
    }
}

/// Ansible variables that change how a host is reached (SSH plumbing, authentication,
/// privilege escalation) which soak does **not** apply. Reading one is a warning naming it
/// (real inventories carry them: dropping a ProxyJump without a word sends soak to the wrong
/// place). Variables soak does apply are mapped in [`Setting::ansible`] instead.
///
/// A variable soak supports ([`ANSIBLE_VARS`]: `ansible_become*`, `ansible_ssh_common_args`
/// with `-J`/ProxyJump, …) never warns, whatever this table says: when one gains support, map
/// it in `ANSIBLE_VARS` and delete its line here.
pub(crate) const UNSUPPORTED_REACH_VARIABLES: &[(&str, &str)] = &[
    ("ansible_ssh_args", "ssh options"),
    ("ansible_sftp_extra_args", "sftp options"),
    ("ansible_scp_extra_args", "scp options"),
    ("ansible_ssh_executable", "which ssh binary logs in"),
    (
        "ansible_ssh_pass",
        "password login (soak logs in with keys only)",
    ),
    (
        "ansible_password",
        "password login (soak logs in with keys only)",
    ),
    (
        "ansible_ssh_password",
        "password login (soak logs in with keys only)",
    ),
    (
        "ansible_ssh_private_key_passphrase",
        "a passphrase for the key",
    ),
    (
        "ansible_ssh_host_key_checking",
        "host-key checking (use soak_host_key_checking)",
    ),
    (
        "ansible_host_key_checking",
        "host-key checking (use soak_host_key_checking)",
    ),
    (
        "ansible_ssh_timeout",
        "the connect timeout (use --connect-timeout)",
    ),
    (
        "ansible_timeout",
        "the connect timeout (use --connect-timeout)",
    ),
    ("ansible_become_pass", "privilege escalation"),
    ("ansible_become_password", "privilege escalation"),
    ("ansible_become_exe", "privilege escalation"),
    ("ansible_become_flags", "privilege escalation"),
    ("ansible_sudo", "privilege escalation"),
    ("ansible_sudo_user", "privilege escalation"),
    ("ansible_sudo_pass", "privilege escalation"),
    ("ansible_su", "privilege escalation"),
    ("ansible_su_user", "privilege escalation"),
    ("ansible_su_pass", "privilege escalation"),
    ("ansible_shell_type", "the remote shell"),
    ("ansible_shell_executable", "the remote shell"),
];

/// What `variable` would change, when it is a reach-changing variable soak does not apply.
pub(crate) fn unsupported_reach_variable(variable: &str) -> Option<&'static str> {
    if supported_ansible_vars().any(|v| v == variable) {
        return None;
    }
    UNSUPPORTED_REACH_VARIABLES
        .iter()
        .find(|(name, _)| *name == variable)
        .map(|(_, effect)| *effect)
}

impl Inventory {
    /// The host named `name`.
    pub fn host(&self, name: &str) -> Option<&Host> {
        self.hosts.iter().find(|h| h.name == name)
    }
}

/// Which setting a variable sets. Everything else is a label.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Setting {
    Address,
    Connection,
    SshUser,
    SshPort,
    SshKey,
    KnownHosts,
    HostKeyChecking,
    InstallDir,
    Service,
    ApiPort,
    GossipPort,
    Become,
    BecomeUser,
    BecomeMethod,
    ProxyJump,
    SshConfig,
    /// `ansible_ssh_common_args` / `ansible_ssh_extra_args`: ssh options, parsed into settings.
    SshArgs,
}

/// Every Ansible inventory variable soak understands and the setting it sets — **the** list of
/// supported Ansible variables ([`supported_ansible_vars`]). Other `ansible_*` variables are
/// ignored; anything else is a label.
const ANSIBLE_VARS: &[(&str, Setting)] = &[
    ("ansible_host", Setting::Address),
    ("ansible_ssh_host", Setting::Address),
    ("ansible_connection", Setting::Connection),
    ("ansible_user", Setting::SshUser),
    ("ansible_ssh_user", Setting::SshUser),
    ("ansible_port", Setting::SshPort),
    ("ansible_ssh_port", Setting::SshPort),
    ("ansible_ssh_private_key_file", Setting::SshKey),
    ("ansible_private_key_file", Setting::SshKey),
    ("ansible_become", Setting::Become),
    ("ansible_become_user", Setting::BecomeUser),
    ("ansible_become_method", Setting::BecomeMethod),
    ("ansible_ssh_common_args", Setting::SshArgs),
    ("ansible_ssh_extra_args", Setting::SshArgs),
    ("soak_known_hosts", Setting::KnownHosts),
    ("soak_host_key_checking", Setting::HostKeyChecking),
    ("soak_install_dir", Setting::InstallDir),
    ("soak_service", Setting::Service),
    ("soak_api_port", Setting::ApiPort),
    ("soak_gossip_port", Setting::GossipPort),
    ("soak_proxy_jump", Setting::ProxyJump),
    ("soak_ssh_config", Setting::SshConfig),
];

/// The Ansible inventory variables soak reads (everything in [`ANSIBLE_VARS`]), for messages and
/// for warnings about variables it ignores.
pub fn supported_ansible_vars() -> impl Iterator<Item = &'static str> {
    ANSIBLE_VARS.iter().map(|(name, _)| *name)
}

impl Setting {
    /// Keys of the native TOML format.
    pub(crate) fn native(key: &str) -> Option<Setting> {
        Some(match key {
            "address" => Setting::Address,
            "connection" => Setting::Connection,
            "ssh_user" => Setting::SshUser,
            "ssh_port" => Setting::SshPort,
            "ssh_key" => Setting::SshKey,
            "known_hosts" => Setting::KnownHosts,
            "host_key_checking" => Setting::HostKeyChecking,
            "install_dir" => Setting::InstallDir,
            "service" => Setting::Service,
            "api_port" => Setting::ApiPort,
            "gossip_port" => Setting::GossipPort,
            "become" => Setting::Become,
            "become_user" => Setting::BecomeUser,
            "become_method" => Setting::BecomeMethod,
            "proxy_jump" => Setting::ProxyJump,
            "ssh_config" => Setting::SshConfig,
            _ => return None,
        })
    }

    /// Ansible variables (`ansible_*`) and soak's own `soak_*` variables in Ansible inventories.
    pub(crate) fn ansible(key: &str) -> Option<Setting> {
        ANSIBLE_VARS
            .iter()
            .find(|(name, _)| *name == key)
            .map(|(_, setting)| *setting)
    }
}

/// One layer of settings (defaults, a group's vars, a host's vars): every field optional.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub(crate) struct Overlay {
    address: Option<String>,
    connection: Option<Connection>,
    ssh_user: Option<String>,
    ssh_port: Option<u16>,
    ssh_key: Option<PathBuf>,
    known_hosts: Option<PathBuf>,
    host_key_checking: Option<HostKeyChecking>,
    install_dir: Option<String>,
    service: Option<ServiceManager>,
    api_port: Option<u16>,
    gossip_port: Option<u16>,
    become_enabled: Option<bool>,
    become_user: Option<String>,
    proxy_jump: Option<String>,
    ssh_config: Option<PathBuf>,
    pub(crate) labels: BTreeMap<String, String>,
}

fn parse_port(value: &str, what: &str) -> Result<u16, String> {
    match value.trim().parse::<u16>() {
        Ok(0) | Err(_) => Err(format!(
            "{what} must be a port number 1-65535, got `{value}`"
        )),
        Ok(port) => Ok(port),
    }
}

fn non_empty(value: &str, what: &str) -> Result<String, String> {
    let value = value.trim();
    if value.is_empty() || value.chars().any(char::is_whitespace) {
        Err(format!(
            "{what} must be non-empty without spaces, got `{value}`"
        ))
    } else {
        Ok(value.to_string())
    }
}

/// ssh `-o` options (lowercase) that do not change which host is reached, as whom or how it is
/// verified: accepted in `ansible_ssh_common_args` and left to ssh's defaults and the ssh config.
const SSH_OPTIONS_WITHOUT_REACH: &[&str] = &[
    "controlmaster",
    "controlpersist",
    "controlpath",
    "serveraliveinterval",
    "serveralivecountmax",
    "tcpkeepalive",
    "compression",
    "connecttimeout",
    "connectionattempts",
    "loglevel",
    "forwardagent",
    "identitiesonly",
    "preferredauthentications",
    "pubkeyauthentication",
    "passwordauthentication",
    "kbdinteractiveauthentication",
    "gssapiauthentication",
    "batchmode",
    "addkeystoagent",
    "ipqos",
];

/// Splits a shell-like argument string into words (single and double quotes, backslash).
fn split_words(text: &str) -> Result<Vec<String>, String> {
    let mut words = Vec::new();
    let mut word = String::new();
    let mut in_word = false;
    let mut chars = text.chars();
    while let Some(c) = chars.next() {
        match c {
            '\'' => {
                in_word = true;
                loop {
                    match chars.next() {
                        Some('\'') => break,
                        Some(c) => word.push(c),
                        None => return Err("unterminated single quote".to_string()),
                    }
                }
            }
            '"' => {
                in_word = true;
                loop {
                    match chars.next() {
                        Some('"') => break,
                        Some('\\') => match chars.next() {
                            Some(c) => word.push(c),
                            None => return Err("trailing backslash".to_string()),
                        },
                        Some(c) => word.push(c),
                        None => return Err("unterminated double quote".to_string()),
                    }
                }
            }
            '\\' => {
                in_word = true;
                match chars.next() {
                    Some(c) => word.push(c),
                    None => return Err("trailing backslash".to_string()),
                }
            }
            c if c.is_whitespace() => {
                if in_word {
                    words.push(std::mem::take(&mut word));
                    in_word = false;
                }
            }
            c => {
                in_word = true;
                word.push(c);
            }
        }
    }
    if in_word {
        words.push(word);
    }
    Ok(words)
}

fn parse_bool(value: &str, what: &str) -> Result<bool, String> {
    match value.trim().to_ascii_lowercase().as_str() {
        "true" | "yes" | "on" | "1" => Ok(true),
        "false" | "no" | "off" | "0" => Ok(false),
        other => Err(format!("{what} must be true or false, got `{other}`")),
    }
}

/// A local path from an inventory: `~/` is the home directory, relative paths are relative to
/// the inventory file's directory.
fn local_path(value: &str, base_dir: &Path) -> Result<PathBuf, String> {
    let value = value.trim();
    if value.is_empty() {
        return Err("path must not be empty".to_string());
    }
    if let Some(rest) = value.strip_prefix("~/") {
        let home = std::env::var_os("HOME")
            .ok_or_else(|| format!("cannot expand `{value}`: HOME is not set"))?;
        return Ok(PathBuf::from(home).join(rest));
    }
    let path = PathBuf::from(value);
    Ok(if path.is_absolute() {
        path
    } else {
        base_dir.join(path)
    })
}

impl Overlay {
    /// Sets `setting` from its textual `value`; `Err` is a message without location.
    pub(crate) fn set(
        &mut self,
        setting: Setting,
        key: &str,
        value: &str,
        base_dir: &Path,
    ) -> Result<(), String> {
        match setting {
            Setting::Address => self.address = Some(check_address(&non_empty(value, key)?, key)?),
            Setting::Connection => self.connection = Some(value.trim().parse()?),
            Setting::SshUser => self.ssh_user = Some(check_user(&non_empty(value, key)?, key)?),
            Setting::SshPort => self.ssh_port = Some(parse_port(value, key)?),
            Setting::SshKey => self.ssh_key = Some(local_path(value, base_dir)?),
            Setting::KnownHosts => self.known_hosts = Some(local_path(value, base_dir)?),
            Setting::HostKeyChecking => self.host_key_checking = Some(value.trim().parse()?),
            Setting::InstallDir => {
                let dir = non_empty(value, key)?;
                if !dir.starts_with('/') {
                    return Err(format!("{key} must be an absolute path, got `{dir}`"));
                }
                if dir.contains(['\'', '"', '\\', '$', '`']) {
                    return Err(format!(
                        "{key} must not contain quotes, `\\`, `$` or backquotes, got `{dir}`"
                    ));
                }
                self.install_dir = Some(dir.trim_end_matches('/').to_string())
                    .map(|d| if d.is_empty() { "/".to_string() } else { d });
            }
            Setting::Service => self.service = Some(value.trim().parse()?),
            Setting::ApiPort => self.api_port = Some(parse_port(value, key)?),
            Setting::GossipPort => self.gossip_port = Some(parse_port(value, key)?),
            Setting::Become => self.become_enabled = Some(parse_bool(value, key)?),
            Setting::BecomeUser => self.become_user = Some(non_empty(value, key)?),
            Setting::BecomeMethod => match value.trim() {
                "sudo" => {}
                other => {
                    return Err(format!(
                        "{key} `{other}` is not supported: soak runs privileged steps with `sudo -n` \
                         (set {key} to sudo, or log in as root)"
                    ));
                }
            },
            Setting::ProxyJump => self.proxy_jump = Some(non_empty(value, key)?),
            Setting::SshConfig => self.ssh_config = Some(local_path(value, base_dir)?),
            Setting::SshArgs => self.ssh_args(key, value, base_dir)?,
        }
        Ok(())
    }

    /// Reads the reach-relevant options out of an ssh argument string (Ansible's
    /// `ansible_ssh_common_args`): `-J HOST`, `-o ProxyJump=HOST`, `-F FILE`, `-p PORT`,
    /// `-l USER`, `-i KEY`, `-o StrictHostKeyChecking=…`, `-o UserKnownHostsFile=…`. Options that
    /// do not change where or how soak connects are accepted and left to ssh's defaults; any
    /// other option (e.g. `ProxyCommand`) is an error rather than silently ignored.
    fn ssh_args(&mut self, key: &str, value: &str, base_dir: &Path) -> Result<(), String> {
        let words = split_words(value).map_err(|m| format!("{key}: {m}"))?;
        let mut it = words.iter();
        while let Some(word) = it.next() {
            let mut arg = |flag: &str| -> Result<String, String> {
                match word.strip_prefix(flag).filter(|rest| !rest.is_empty()) {
                    Some(rest) => Ok(rest.to_string()),
                    None => it
                        .next()
                        .cloned()
                        .ok_or_else(|| format!("{key}: `{flag}` needs a value")),
                }
            };
            if word.starts_with("-J") {
                self.proxy_jump = Some(non_empty(&arg("-J")?, key)?);
            } else if word.starts_with("-F") {
                self.ssh_config = Some(local_path(&arg("-F")?, base_dir)?);
            } else if word.starts_with("-p") {
                self.ssh_port = Some(parse_port(&arg("-p")?, key)?);
            } else if word.starts_with("-l") {
                self.ssh_user = Some(non_empty(&arg("-l")?, key)?);
            } else if word.starts_with("-i") {
                self.ssh_key = Some(local_path(&arg("-i")?, base_dir)?);
            } else if word.starts_with("-o") {
                let option = arg("-o")?;
                let (name, v) = option
                    .split_once(['=', ' '])
                    .map(|(n, v)| (n.trim(), v.trim()))
                    .ok_or_else(|| format!("{key}: `-o {option}` has no value"))?;
                match name.to_ascii_lowercase().as_str() {
                    "proxyjump" => self.proxy_jump = Some(non_empty(v, key)?),
                    "stricthostkeychecking" => {
                        self.host_key_checking = Some(match v.to_ascii_lowercase().as_str() {
                            "accept-new" => HostKeyChecking::AcceptNew,
                            other => other.parse()?,
                        });
                    }
                    "userknownhostsfile" => self.known_hosts = Some(local_path(v, base_dir)?),
                    name if SSH_OPTIONS_WITHOUT_REACH.contains(&name) => {}
                    _ => {
                        return Err(format!(
                            "{key}: ssh option `-o {option}` is not supported (soak reads -J, -F, -p, -l, -i \
                             and -o ProxyJump/StrictHostKeyChecking/UserKnownHostsFile; put other options \
                             in your ssh config, which soak honours)"
                        ));
                    }
                }
            } else {
                return Err(format!(
                    "{key}: ssh argument `{word}` is not supported (soak reads -J, -F, -p, -l, -i and -o …)"
                ));
            }
        }
        Ok(())
    }

    /// Lays `other` over `self` (fields set in `other` win).
    pub(crate) fn apply(&mut self, other: &Overlay) {
        macro_rules! take {
            ($($field:ident),+) => { $( if other.$field.is_some() { self.$field.clone_from(&other.$field); } )+ };
        }
        take!(
            address,
            connection,
            ssh_user,
            ssh_port,
            ssh_key,
            known_hosts,
            host_key_checking,
            install_dir,
            service,
            api_port,
            gossip_port,
            become_enabled,
            become_user,
            proxy_jump,
            ssh_config
        );
        for (k, v) in &other.labels {
            self.labels.insert(k.clone(), v.clone());
        }
    }

    fn into_host(self, name: &str, groups: Vec<String>) -> Host {
        let mut host = Host::with_defaults(name, self.address.as_deref().unwrap_or(name));
        host.connection = self.connection.unwrap_or(host.connection);
        host.ssh.user = self.ssh_user;
        host.ssh.port = self.ssh_port.unwrap_or(host.ssh.port);
        host.ssh.key = self.ssh_key;
        host.ssh.known_hosts = self.known_hosts;
        host.ssh.host_key_checking = self.host_key_checking.unwrap_or(host.ssh.host_key_checking);
        host.install_dir = self.install_dir.unwrap_or(host.install_dir);
        host.service = self.service.unwrap_or(host.service);
        host.api_port = self.api_port.unwrap_or(host.api_port);
        host.gossip_port = self.gossip_port.unwrap_or(host.gossip_port);
        host.ssh.proxy_jump = self.proxy_jump;
        host.ssh.config_file = self.ssh_config;
        host.privilege = if self.become_enabled == Some(true) {
            Privilege::Sudo {
                user: self.become_user,
            }
        } else {
            Privilege::Login
        };
        host.groups = groups;
        host.labels = self.labels;
        host
    }
}

/// Most hosts one inventory may list: soak drives every ordered pair of them, so a fleet far
/// beyond this is a typo (`node[1:99999]`), refused before anything is expanded.
pub const MAX_HOSTS: usize = 4096;
/// Most groups one inventory may define.
pub const MAX_GROUPS: usize = 1024;

/// Checks a host name: it names files, units and proof entries, and is the address when none
/// is given, so it must not look like an ssh option either.
pub(crate) fn check_host_name(name: &str) -> Result<(), String> {
    let ok = !name.is_empty()
        && name.len() <= 253
        && !name.starts_with('-')
        && name
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || matches!(c, '.' | '-' | '_' | ':'));
    if ok {
        Ok(())
    } else {
        Err(format!(
            "host name `{name}` must be 1-253 characters of letters, digits, `.`, `-`, `_` or `:`, \
             not starting with `-`"
        ))
    }
}

/// Checks an address ssh and QUIC are pointed at: an IPv4 address, an IPv6 address (with an
/// optional `%zone`) or a DNS name — never something ssh would read as an option (`-o…`), nor a
/// bare number (`5`, which resolvers read as `0.0.0.5`).
pub(crate) fn check_address(value: &str, what: &str) -> Result<String, String> {
    let bad = |why: &str| Err(format!("{what} `{value}` {why}"));
    if value.starts_with('-') {
        return bad("must not start with `-` (ssh would read it as an option)");
    }
    if value.len() > 253 {
        return bad("is longer than 253 characters");
    }
    if value.contains(':') {
        let addr = value.split_once('%').map_or(value, |(addr, _)| addr);
        let zone_ok = value.split_once('%').is_none_or(|(_, zone)| {
            !zone.is_empty()
                && zone
                    .chars()
                    .all(|c| c.is_ascii_alphanumeric() || matches!(c, '.' | '-' | '_'))
        });
        return if addr.parse::<std::net::Ipv6Addr>().is_ok() && zone_ok {
            Ok(value.to_string())
        } else {
            bad("is not a valid IPv6 address")
        };
    }
    if value.chars().all(|c| c.is_ascii_digit() || c == '.') {
        return if value.parse::<std::net::Ipv4Addr>().is_ok() {
            Ok(value.to_string())
        } else {
            bad("is not a valid IPv4 address (nor a host name: it is all digits and dots)")
        };
    }
    let labels_ok = value.split('.').enumerate().all(|(i, label)| {
        // A trailing dot (fully qualified) leaves one empty last label.
        (label.is_empty() && i > 0 && value.ends_with('.'))
            || (!label.is_empty()
                && label.len() <= 63
                && !label.starts_with('-')
                && label
                    .chars()
                    .all(|c| c.is_ascii_alphanumeric() || matches!(c, '-' | '_')))
    });
    if labels_ok {
        Ok(value.to_string())
    } else {
        bad("is not an IP address or a host name (labels of letters, digits, `-`, `_`)")
    }
}

/// Checks a login user: letters, digits, `.`, `_` and `-`, at most 64, not starting with `-`
/// (ssh would read it as an option).
pub(crate) fn check_user(value: &str, what: &str) -> Result<String, String> {
    let ok = value.len() <= 64
        && !value.starts_with('-')
        && value
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || matches!(c, '.' | '_' | '-'));
    if ok {
        Ok(value.to_string())
    } else {
        Err(format!(
            "{what} `{value}` must be at most 64 letters, digits, `.`, `_` or `-`, not starting \
             with `-` (ssh would read it as an option)"
        ))
    }
}

/// A group while an inventory is being built.
#[derive(Debug, Default)]
pub(crate) struct GroupDraft {
    /// Line of first mention.
    pub(crate) line: usize,
    pub(crate) children: Vec<(String, usize)>,
    pub(crate) vars: Overlay,
    pub(crate) raw_vars: BTreeMap<String, String>,
}

/// A host while an inventory is being built.
#[derive(Debug)]
pub(crate) struct HostDraft {
    pub(crate) name: String,
    pub(crate) line: usize,
    pub(crate) groups: BTreeSet<String>,
    pub(crate) vars: Overlay,
}

/// Format-independent builder: parsers feed groups, hosts and vars; `finish` resolves
/// precedence (defaults < `all` < groups by depth then name < host) like Ansible does.
#[derive(Debug)]
pub(crate) struct Builder {
    pub(crate) file: PathBuf,
    pub(crate) base_dir: PathBuf,
    pub(crate) defaults: Overlay,
    pub(crate) groups: BTreeMap<String, GroupDraft>,
    pub(crate) hosts: Vec<HostDraft>,
    /// Position of every host in `hosts`, by name (a lookup per host line stays O(log n)).
    host_index: BTreeMap<String, usize>,
    pub(crate) warnings: Vec<InventoryWarning>,
}

/// Implicit groups that every host is in (Ansible).
pub(crate) const GROUP_ALL: &str = "all";
pub(crate) const GROUP_UNGROUPED: &str = "ungrouped";

impl Builder {
    pub(crate) fn new(file: &Path) -> Self {
        let base_dir = file
            .parent()
            .map(Path::to_path_buf)
            .filter(|p| !p.as_os_str().is_empty())
            .unwrap_or_else(|| PathBuf::from("."));
        Builder {
            file: file.to_path_buf(),
            base_dir,
            defaults: Overlay::default(),
            groups: BTreeMap::new(),
            hosts: Vec::new(),
            host_index: BTreeMap::new(),
            warnings: Vec::new(),
        }
    }

    /// Records a warning when `key` (set at `line` for `scope`, e.g. "host `h1`") is a
    /// reach-changing variable soak does not apply.
    pub(crate) fn note_unsupported(&mut self, line: usize, key: &str, scope: &str) {
        if let Some(effect) = unsupported_reach_variable(key) {
            self.warnings.push(InventoryWarning {
                line,
                variable: key.to_string(),
                scope: scope.to_string(),
                effect: effect.to_string(),
            });
        }
    }

    pub(crate) fn err(&self, line: usize, message: impl Into<String>) -> InventoryError {
        InventoryError::invalid(&self.file, line, message)
    }

    /// The group named `name`, created at `line` when new.
    pub(crate) fn group(
        &mut self,
        name: &str,
        line: usize,
    ) -> Result<&mut GroupDraft, InventoryError> {
        check_group_name(name).map_err(|m| self.err(line, m))?;
        if self.groups.len() >= MAX_GROUPS && !self.groups.contains_key(name) {
            return Err(self.err(
                line,
                format!("the inventory defines more than {MAX_GROUPS} groups (soak's limit)"),
            ));
        }
        Ok(self
            .groups
            .entry(name.to_string())
            .or_insert_with(|| GroupDraft {
                line,
                ..GroupDraft::default()
            }))
    }

    /// The host named `name`, created at `line` when new.
    pub(crate) fn host(
        &mut self,
        name: &str,
        line: usize,
    ) -> Result<&mut HostDraft, InventoryError> {
        check_host_name(name).map_err(|m| self.err(line, m))?;
        let index = match self.host_index.get(name) {
            Some(&index) => index,
            None => {
                if self.hosts.len() >= MAX_HOSTS {
                    return Err(self.err(
                        line,
                        format!("the inventory lists more than {MAX_HOSTS} hosts (soak's limit)"),
                    ));
                }
                self.host_index.insert(name.to_string(), self.hosts.len());
                self.hosts.push(HostDraft {
                    name: name.to_string(),
                    line,
                    groups: BTreeSet::new(),
                    vars: Overlay::default(),
                });
                self.hosts.len() - 1
            }
        };
        Ok(&mut self.hosts[index])
    }

    /// Whether a host of that name was listed already.
    pub(crate) fn has_host(&self, name: &str) -> bool {
        self.host_index.contains_key(name)
    }

    /// Sets an Ansible variable on an overlay: settings by their Ansible name, other
    /// `ansible_*` variables not applied (callers warn about the reach-changing ones with
    /// [`Builder::note_unsupported`]), everything else a label.
    pub(crate) fn ansible_var(
        base_dir: &Path,
        overlay: &mut Overlay,
        key: &str,
        value: &str,
    ) -> Result<(), String> {
        match Setting::ansible(key) {
            Some(setting) => overlay.set(setting, key, value, base_dir),
            None if key.starts_with("ansible_") => Ok(()),
            None => {
                overlay.labels.insert(key.to_string(), value.to_string());
                Ok(())
            }
        }
    }

    /// Resolves everything into an [`Inventory`].
    pub(crate) fn finish(self, format: InventoryFormat) -> Result<Inventory, InventoryError> {
        if self.hosts.is_empty() {
            return Err(InventoryError::in_file(
                &self.file,
                InventoryErrorKind::Invalid("the inventory lists no hosts".to_string()),
            ));
        }
        // Depth of every group below `all` (longest path), detecting cycles.
        let mut parents: BTreeMap<&str, Vec<&str>> = BTreeMap::new();
        for (name, group) in &self.groups {
            for (child, line) in &group.children {
                if !self.groups.contains_key(child.as_str()) {
                    return Err(self.err(
                        *line,
                        format!("group `{name}` has unknown child group `{child}`"),
                    ));
                }
                if child == GROUP_ALL {
                    return Err(
                        self.err(*line, format!("group `all` cannot be a child of `{name}`"))
                    );
                }
                parents
                    .entry(child.as_str())
                    .or_default()
                    .push(name.as_str());
            }
        }
        let mut depth: BTreeMap<&str, usize> = BTreeMap::new();
        for name in self.groups.keys() {
            let mut stack = Vec::new();
            group_depth(name, &parents, &mut depth, &mut stack).map_err(|cycle| {
                let line = self.groups.get(name.as_str()).map_or(1, |g| g.line);
                self.err(
                    line,
                    format!("group children form a cycle: {}", cycle.join(" -> ")),
                )
            })?;
        }
        let mut order: Vec<&str> = self.groups.keys().map(String::as_str).collect();
        order.sort_by_key(|name| {
            (
                if *name == GROUP_ALL { 0 } else { 1 },
                depth.get(name).copied().unwrap_or(1),
                *name,
            )
        });

        let mut hosts = Vec::with_capacity(self.hosts.len());
        for draft in &self.hosts {
            // Every group the host is in, through children.
            let mut member: BTreeSet<&str> = BTreeSet::new();
            let mut todo: Vec<&str> = draft.groups.iter().map(String::as_str).collect();
            while let Some(group) = todo.pop() {
                if member.insert(group)
                    && let Some(ps) = parents.get(group)
                {
                    todo.extend(ps.iter().copied());
                }
            }
            let mut overlay = self.defaults.clone();
            for name in &order {
                if (*name == GROUP_ALL || member.contains(name))
                    && let Some(group) = self.groups.get(*name)
                {
                    overlay.apply(&group.vars);
                }
            }
            overlay.apply(&draft.vars);
            let groups = member
                .into_iter()
                .filter(|g| *g != GROUP_ALL && *g != GROUP_UNGROUPED)
                .map(str::to_string)
                .collect();
            let host = overlay.into_host(&draft.name, groups);
            // The name stands in for a missing address: check what ssh will be given.
            check_address(&host.address, &format!("address of host `{}`", host.name))
                .map_err(|m| self.err(draft.line, m))?;
            hosts.push(host);
        }
        // Two hosts reached at the same address and SSH port are one machine: they must not
        // share an install dir or a port.
        for (i, a) in hosts.iter().enumerate() {
            for b in &hosts[..i] {
                if a.address != b.address || a.ssh.port != b.ssh.port {
                    continue;
                }
                let clash = if a.install_dir == b.install_dir {
                    Some(format!("install_dir {}", a.install_dir))
                } else if a.api_port == b.api_port {
                    Some(format!("api_port {}", a.api_port))
                } else if a.gossip_port == b.gossip_port {
                    Some(format!("gossip_port {}", a.gossip_port))
                } else {
                    None
                };
                if let Some(clash) = clash {
                    return Err(self.err(
                        self.hosts[i].line,
                        format!(
                            "hosts `{}` and `{}` are the same machine ({}, ssh port {}) and share {clash}; give each its own",
                            b.name, a.name, a.address, a.ssh.port
                        ),
                    ));
                }
            }
        }
        let groups = self
            .groups
            .iter()
            .filter(|(name, _)| *name != GROUP_ALL && *name != GROUP_UNGROUPED)
            .map(|(name, g)| {
                (
                    name.clone(),
                    Group {
                        children: g.children.iter().map(|(c, _)| c.clone()).collect(),
                        vars: g.raw_vars.clone(),
                    },
                )
            })
            .collect();
        Ok(Inventory {
            source: self.file,
            format,
            hosts,
            groups,
            warnings: self.warnings,
        })
    }
}

fn check_group_name(name: &str) -> Result<(), String> {
    let ok = !name.is_empty()
        && name
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || matches!(c, '.' | '-' | '_'));
    if ok {
        Ok(())
    } else {
        Err(format!(
            "group name `{name}` must be letters, digits, `.`, `-` or `_`"
        ))
    }
}

fn group_depth<'a>(
    name: &'a str,
    parents: &BTreeMap<&'a str, Vec<&'a str>>,
    depth: &mut BTreeMap<&'a str, usize>,
    stack: &mut Vec<&'a str>,
) -> Result<usize, Vec<String>> {
    if let Some(d) = depth.get(name) {
        return Ok(*d);
    }
    if let Some(pos) = stack.iter().position(|s| *s == name) {
        let mut cycle: Vec<String> = stack[pos..].iter().map(|s| s.to_string()).collect();
        cycle.push(name.to_string());
        return Err(cycle);
    }
    stack.push(name);
    let mut d = if name == GROUP_ALL { 0 } else { 1 };
    if let Some(ps) = parents.get(name) {
        for p in ps {
            d = d.max(group_depth(p, parents, depth, stack)? + 1);
        }
    }
    stack.pop();
    depth.insert(name, d);
    Ok(d)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn keyword_enums_name_the_choices_on_error() {
        let err = "sometimes"
            .parse::<HostKeyChecking>()
            .err()
            .unwrap_or_default();
        assert!(
            err.contains("strict, yes, true, accept-new, off, no, false"),
            "{err}"
        );
        assert_eq!("accept-new".parse(), Ok(HostKeyChecking::AcceptNew));
    }

    #[test]
    fn gossip_addr_brackets_ipv6() {
        let mut host = Host::with_defaults("h", "fd00::1");
        host.gossip_port = 7000;
        assert_eq!(host.gossip_addr(), "[fd00::1]:7000");
        host.address = "192.0.2.1".into();
        assert_eq!(host.gossip_addr(), "192.0.2.1:7000");
    }

    #[test]
    fn install_dir_must_be_absolute_and_plain() {
        let mut o = Overlay::default();
        let base = Path::new("/x");
        assert!(
            o.set(Setting::InstallDir, "install_dir", "rel/dir", base)
                .is_err()
        );
        assert!(
            o.set(Setting::InstallDir, "install_dir", "/a/$(id)", base)
                .is_err()
        );
        assert!(
            o.set(Setting::InstallDir, "install_dir", "/opt/soak/", base)
                .is_ok()
        );
        assert_eq!(o.install_dir.as_deref(), Some("/opt/soak"));
    }

    #[test]
    fn relative_key_paths_are_relative_to_the_inventory() {
        let mut o = Overlay::default();
        assert!(
            o.set(Setting::SshKey, "ssh_key", "keys/id", Path::new("/inv"))
                .is_ok()
        );
        assert_eq!(o.ssh_key, Some(PathBuf::from("/inv/keys/id")));
    }

    #[test]
    fn one_machine_hosts_must_not_share_ports_or_dirs() {
        let text = "[[hosts]]\nname = \"a\"\naddress = \"127.0.0.1\"\ninstall_dir = \"/x/a\"\n\
                    [[hosts]]\nname = \"b\"\naddress = \"127.0.0.1\"\ninstall_dir = \"/x/b\"\n";
        let err = crate::native::parse(Path::new("f.toml"), text)
            .err()
            .map(|e| e.to_string())
            .unwrap_or_default();
        assert!(
            err.starts_with("f.toml:6: ") && err.contains("api_port 7100"),
            "{err}"
        );
        let ok = text.replacen(
            "install_dir = \"/x/b\"",
            "install_dir = \"/x/b\"\napi_port = 1\ngossip_port = 2",
            1,
        );
        assert!(crate::native::parse(Path::new("f.toml"), &ok).is_ok());
    }

    #[test]
    fn group_cycle_is_reported_with_its_path() {
        let mut b = Builder::new(Path::new("inv.ini"));
        let _ = b.group("a", 1).map(|g| g.children.push(("b".into(), 2)));
        let _ = b.group("b", 3).map(|g| g.children.push(("a".into(), 4)));
        let _ = b.host("h", 5).map(|h| h.groups.insert("a".into()));
        let err = b
            .finish(InventoryFormat::AnsibleIni)
            .err()
            .map(|e| e.to_string())
            .unwrap_or_default();
        assert!(err.contains("cycle"), "{err}");
        assert!(err.starts_with("inv.ini:"), "{err}");
    }
}
