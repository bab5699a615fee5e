//! The network-namespace lab: a real multi-host fleet on one Linux machine (docs/lab.md).
//!
//! [`up`] builds one network namespace per host plus one for the controller, joined through a
//! bridge that lives in its own namespace: every veth pair is created *inside* the bridge
//! namespace with its peer moved straight into the member namespace, so no lab interface, address
//! or route ever exists in the root namespace. Each host namespace runs its own `sshd` (own config,
//! host key and pid file, listening only on the host's lab address); the lab generates a client
//! key, known_hosts, an `ssh -F` config and a native TOML inventory under the lab directory, and
//! records everything in a state file ([`LabState`], `lab.json`).
//!
//! [`down`] undoes all of it and works without the state file (namespaces are found by the lab
//! name prefix, see [`layout::lab_namespace_role`]). [`status`] reports what is alive.
//!
//! Entry points: [`preflight`], then [`up`], [`status`], [`down`], [`exec_command`].

pub mod layout;
pub(crate) mod sys;

use std::collections::BTreeSet;
use std::fs;
use std::net::{Ipv4Addr, Ipv6Addr};
use std::path::{Path, PathBuf};
use std::process::Command;
use std::thread;
use std::time::{Duration, Instant};

use serde::{Deserialize, Serialize};

pub use layout::{
    DEFAULT_DIR, DEFAULT_NAME, HostLayout, HostState, LabLayout, LabState, NamespaceRole, SUBNET,
    lab_namespace_role, validate_dir, validate_name,
};
pub use sys::Tools;

/// How long `up` waits for one sshd to bind and write its pid file.
const SSHD_START_TIMEOUT: Duration = Duration::from_secs(10);

/// Why a lab operation failed. Messages read well after "failed to …"-style prefixes and say
/// what to do where there is something to do.
#[derive(Debug, thiserror::Error)]
pub enum LabError {
    /// The caller asked for something invalid (bad name, dir or size).
    #[error("{0}")]
    Usage(String),
    /// Not root.
    #[error(
        "the lab needs root: it creates network namespaces and starts sshd in them \
         (run as root, e.g. `sudo soak lab …`)"
    )]
    NotRoot,
    /// A tool is missing.
    #[error(
        "`{tool}` not found: install the Debian package `{package}` (apt-get install {package})"
    )]
    MissingTool {
        /// The executable.
        tool: &'static str,
        /// The Debian package that provides it.
        package: &'static str,
    },
    /// Network namespaces do not work here.
    #[error("network namespaces are unavailable here (`ip netns list` failed: {0})")]
    NoNetns(String),
    /// No lab at the given place.
    #[error("no lab {name} in {dir}: run `soak lab up` first")]
    NotUp {
        /// Lab name.
        name: String,
        /// Lab directory.
        dir: PathBuf,
    },
    /// The directory holds something else; the lab will not write into (or delete) it.
    #[error(
        "{0} exists, is not empty and is not a soak lab directory (no .soak-lab marker): \
         choose another --dir"
    )]
    ForeignDir(PathBuf),
    /// The directory holds a different lab.
    #[error(
        "{dir} holds lab {found}, not {wanted}: run `soak lab down --dir {dir}` first or pick another --dir"
    )]
    OtherLab {
        /// Lab directory.
        dir: PathBuf,
        /// The lab found there.
        found: String,
        /// The lab asked for.
        wanted: String,
    },
    /// An external command could not be started.
    #[error("cannot run `{command}`: {source}")]
    Spawn {
        /// The command line.
        command: String,
        /// Why.
        #[source]
        source: std::io::Error,
    },
    /// An external command failed.
    #[error("`{command}` failed ({status}): {stderr}")]
    Command {
        /// The command line.
        command: String,
        /// Its exit status.
        status: String,
        /// Its stderr.
        stderr: String,
    },
    /// An external command overran its deadline and was killed.
    #[error("`{command}` did not finish within {after:?} and was killed")]
    Timeout {
        /// The command line.
        command: String,
        /// The deadline.
        after: Duration,
    },
    /// sshd did not come up on a host.
    #[error("sshd for host {host} did not start: {reason}; sshd log ({log}):\n{log_tail}")]
    Sshd {
        /// Host name.
        host: String,
        /// What was seen.
        reason: String,
        /// The log file.
        log: PathBuf,
        /// Its last lines.
        log_tail: String,
    },
    /// Processes survived SIGKILL (e.g. stuck in the kernel); their namespace is left in place.
    #[error(
        "processes {pids:?} in namespace {namespace} survived SIGKILL; namespace left in place"
    )]
    Survivors {
        /// Namespace.
        namespace: String,
        /// Pids.
        pids: Vec<u32>,
    },
    /// A file operation failed.
    #[error("cannot {context}: {source}")]
    Io {
        /// What was being done.
        context: String,
        /// Why.
        #[source]
        source: std::io::Error,
    },
    /// The state file is unreadable.
    #[error("cannot read the lab state {path}: {message}")]
    State {
        /// The file.
        path: PathBuf,
        /// Why.
        message: String,
    },
}

impl LabError {
    fn io(context: String, source: std::io::Error) -> Self {
        LabError::Io { context, source }
    }

    /// True when the caller's input was wrong (as opposed to the machine or the lab).
    pub fn is_usage(&self) -> bool {
        matches!(
            self,
            LabError::Usage(_) | LabError::ForeignDir(_) | LabError::OtherLab { .. }
        )
    }
}

/// What an operation needs from the machine.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Need {
    /// `up`: root, iproute2 with netns, sshd, ssh-keygen.
    Up,
    /// `down`, `exec`: root and iproute2.
    Manage,
    /// `status`: iproute2 only — it only reads (the state file, `ip netns list`, `/proc`).
    Read,
}

/// Checks root and tools; explains what to install when something is missing.
pub fn preflight(need: Need) -> Result<Tools, LabError> {
    if need != Need::Read && sys::effective_uid() != Some(0) {
        return Err(LabError::NotRoot);
    }
    let ip = sys::find_tool("ip").ok_or(LabError::MissingTool {
        tool: "ip",
        package: "iproute2",
    })?;
    let mut tools = Tools {
        ip,
        sshd: None,
        ssh_keygen: None,
    };
    if need == Need::Up {
        // SOAK_LAB_SSHD overrides where sshd is looked for (odd installs; tests of this message).
        let sshd = match std::env::var_os("SOAK_LAB_SSHD") {
            Some(path) => Some(PathBuf::from(path)).filter(|p| p.is_absolute() && p.is_file()),
            None => sys::find_tool("sshd"),
        };
        tools.sshd = Some(sshd.ok_or(LabError::MissingTool {
            tool: "sshd",
            package: "openssh-server",
        })?);
        tools.ssh_keygen = Some(sys::find_tool("ssh-keygen").ok_or(LabError::MissingTool {
            tool: "ssh-keygen",
            package: "openssh-client",
        })?);
    }
    let out = sys::run_bounded(
        &mut sys::ip(&tools, ["netns", "list"]),
        sys::COMMAND_TIMEOUT,
    )?;
    if !out.status.success() {
        return Err(LabError::NoNetns(
            String::from_utf8_lossy(&out.stderr).trim().to_owned(),
        ));
    }
    Ok(tools)
}

/// Reads the state file of the lab in `dir`, if there is one.
pub fn load_state(dir: &Path) -> Result<Option<LabState>, LabError> {
    let path = layout::state_file(dir);
    let text = match fs::read_to_string(&path) {
        Ok(text) => text,
        Err(err) if err.kind() == std::io::ErrorKind::NotFound => return Ok(None),
        Err(err) => {
            return Err(LabError::State {
                path,
                message: err.to_string(),
            });
        }
    };
    let state: LabState = serde_json::from_str(&text).map_err(|err| LabError::State {
        path: path.clone(),
        message: err.to_string(),
    })?;
    if state.format != layout::STATE_FORMAT {
        return Err(LabError::State {
            path,
            message: format!(
                "format {} (this soak reads format {})",
                state.format,
                layout::STATE_FORMAT
            ),
        });
    }
    Ok(Some(state))
}

/// The lab name recorded in `dir` (state file, else marker), if any.
pub fn recorded_name(dir: &Path) -> Option<String> {
    if let Ok(Some(state)) = load_state(dir) {
        return Some(state.name);
    }
    let marker = fs::read_to_string(layout::marker_file(dir)).ok()?;
    let name = marker.trim().to_owned();
    validate_name(&name).ok().map(|()| name)
}

/// Which lab `dir` + optional `name` designate: the name recorded in `dir` wins; a different
/// explicit name is a usage error; with neither, [`DEFAULT_NAME`].
pub fn resolve_name(dir: &Path, name: Option<&str>) -> Result<String, LabError> {
    validate_dir(dir)?;
    if let Some(name) = name {
        validate_name(name)?;
    }
    match (recorded_name(dir), name) {
        (Some(found), Some(wanted)) if found != wanted => Err(LabError::OtherLab {
            dir: dir.to_path_buf(),
            found,
            wanted: wanted.to_owned(),
        }),
        (Some(found), _) => Ok(found),
        (None, Some(wanted)) => Ok(wanted.to_owned()),
        (None, None) => Ok(DEFAULT_NAME.to_owned()),
    }
}

/// Builds the lab, or brings an existing one to the requested shape (idempotent): existing
/// namespaces, keys and running sshds are kept; missing parts are made; hosts beyond the requested
/// count are removed.
pub fn up(layout: &LabLayout, tools: &Tools) -> Result<LabState, LabError> {
    let (Some(sshd), Some(keygen)) = (&tools.sshd, &tools.ssh_keygen) else {
        return Err(LabError::MissingTool {
            tool: "sshd",
            package: "openssh-server",
        });
    };
    prepare_dir(layout)?;
    // sshd's privilege-separation directory. Shared with every other sshd on the machine, so it
    // is created when missing and never removed.
    sys::create_dir(Path::new("/run/sshd"))?;

    ensure_client_key(layout, keygen)?;
    let public = read_key(&layout.client_key_pub())?;
    sys::write_file(&layout.authorized_keys(), &public, 0o600)?;

    // Network: bridge(s), controller, bastion, hosts.
    let existing = sys::list_namespaces(tools)?;
    let bridge = layout.bridge_namespace();
    ensure_namespace(tools, &existing, &bridge)?;
    let mut bridges = vec![layout::BRIDGE_INTERFACE];
    if layout.has_bastion() {
        bridges.push(layout::INNER_BRIDGE_INTERFACE);
    }
    for br in bridges {
        if !sys::probe(&mut sys::ip_in(tools, &bridge, ["link", "show", br]))? {
            sys::run_checked(&mut sys::ip_in(
                tools,
                &bridge,
                ["link", "add", br, "type", "bridge"],
            ))?;
        }
        sys::run_checked(&mut sys::ip_in(tools, &bridge, ["link", "set", br, "up"]))?;
    }
    let controller = layout.controller_namespace();
    ensure_namespace(tools, &existing, &controller)?;
    ensure_member(
        tools,
        &bridge,
        &controller,
        &Member {
            port: layout.controller_bridge_port(),
            interface: layout::MEMBER_INTERFACE,
            bridge: layout::BRIDGE_INTERFACE,
            address: layout::CONTROLLER_ADDRESS,
            address6: layout::CONTROLLER_ADDRESS6,
        },
    )?;
    let bastion = layout.bastion();
    if let Some(bas) = &bastion {
        ensure_namespace(tools, &existing, &bas.namespace)?;
        ensure_member(
            tools,
            &bridge,
            &bas.namespace,
            &Member {
                port: &bas.bridge_port,
                interface: layout::MEMBER_INTERFACE,
                bridge: layout::BRIDGE_INTERFACE,
                address: bas.address,
                address6: bas.address6,
            },
        )?;
        ensure_member(
            tools,
            &bridge,
            &bas.namespace,
            &Member {
                port: layout.bastion_inner_port(),
                interface: layout::BASTION_INNER_INTERFACE,
                bridge: layout::INNER_BRIDGE_INTERFACE,
                address: layout::BASTION_INNER_ADDRESS,
                address6: layout::BASTION_INNER_ADDRESS6,
            },
        )?;
        // Namespaced sysctls: forwarding only inside the bastion.
        sys::write_proc_in(tools, &bas.namespace, "/proc/sys/net/ipv4/ip_forward", "1")?;
        sys::write_proc_in(
            tools,
            &bas.namespace,
            "/proc/sys/net/ipv6/conf/all/forwarding",
            "1",
        )?;
    } else if existing.contains(&layout.bastion_namespace()) {
        let ns = layout.bastion_namespace();
        clear_namespace(tools, &ns, &sys::self_and_ancestors())?;
        sys::run_checked(&mut sys::ip(tools, ["netns", "del", ns.as_str()]))?;
    }
    for host in layout.hosts() {
        ensure_namespace(tools, &existing, &host.namespace)?;
        ensure_member(
            tools,
            &bridge,
            &host.namespace,
            &Member {
                port: &host.bridge_port,
                interface: layout::MEMBER_INTERFACE,
                bridge: if host.behind_bastion {
                    layout::INNER_BRIDGE_INTERFACE
                } else {
                    layout::BRIDGE_INTERFACE
                },
                address: host.address,
                address6: host.address6,
            },
        )?;
        if layout.has_bastion() {
            // Hosts on either side reach each other through the bastion; the controller has
            // no such route, so it reaches the inner hosts only with `ssh -J`.
            let (v4, via4, v6, via6) = if host.behind_bastion {
                (
                    layout::SUBNET,
                    layout::BASTION_INNER_ADDRESS.to_string(),
                    layout::SUBNET6,
                    layout::BASTION_INNER_ADDRESS6.to_string(),
                )
            } else {
                (
                    layout::INNER_SUBNET,
                    layout::BASTION_ADDRESS.to_string(),
                    layout::INNER_SUBNET6,
                    layout::BASTION_ADDRESS6.to_string(),
                )
            };
            sys::run_checked(&mut sys::ip_in(
                tools,
                &host.namespace,
                ["route", "replace", v4, "via", via4.as_str()],
            ))?;
            sys::run_checked(&mut sys::ip_in(
                tools,
                &host.namespace,
                ["-6", "route", "replace", v6, "via", via6.as_str()],
            ))?;
        }
    }
    remove_extra_hosts(layout, tools, &existing)?;

    // Logins: root everywhere, and the sudo user on its hosts.
    sys::create_dir(&layout.authorized_keys_dir())?;
    sys::write_file(
        &layout.authorized_keys_dir().join(layout::SSH_USER),
        &public,
        0o600,
    )?;
    if layout.has_sudo_user() {
        ensure_sudo_user(layout, &public)?;
    } else {
        remove_sudo_user(layout.name())?;
    }

    // sshd per host (and on the bastion).
    let mut pids = Vec::new();
    let mut bastion_pid = None;
    let mut known = Vec::new();
    let sshd_hosts = bastion.iter().cloned().chain(layout.hosts());
    for host in sshd_hosts {
        sys::create_dir(&host.sshd_dir)?;
        sys::create_dir(&host.install_dir)?;
        ensure_host_key(&host, keygen)?;
        let key = read_key(&host.host_key_pub())?;
        known.push((host.address.to_string(), key.clone()));
        known.push((host.address6.to_string(), key));
        let config = layout::render_sshd_config(layout, &host);
        let unchanged =
            fs::read_to_string(host.sshd_config()).ok().as_deref() == Some(config.as_str());
        sys::write_file(&host.sshd_config(), &config, 0o644)?;
        let pid = match running_sshd(&host) {
            Some(pid) if unchanged => pid,
            running => {
                if let Some(pid) = running {
                    sys::terminate(&BTreeSet::from([pid]));
                }
                start_sshd(tools, sshd, &host)?
            }
        };
        if host.index == 0 {
            bastion_pid = Some(pid);
        } else {
            pids.push(pid);
        }
    }

    sys::write_file(
        &layout.known_hosts(),
        &layout::render_known_hosts(&known),
        0o644,
    )?;
    sys::write_file(
        &layout.inventory_file(),
        &layout::render_inventory(layout),
        0o644,
    )?;
    sys::write_file(
        &layout.inventory6_file(),
        &layout::render_inventory6(layout),
        0o644,
    )?;
    sys::write_file(
        &layout.ssh_config(),
        &layout::render_ssh_config(layout),
        0o644,
    )?;
    let state = LabState::with_bastion(layout, &pids, bastion_pid);
    let json = serde_json::to_string_pretty(&state)
        .map_err(|err| LabError::io("serialize the lab state".into(), err.into()))?;
    sys::write_file(&layout.state_file(), &(json + "\n"), 0o644)?;
    Ok(state)
}

/// One `/etc/passwd` entry.
struct PasswdEntry {
    uid: u32,
    gid: u32,
    gecos: String,
}

fn passwd_entry(user: &str) -> Option<PasswdEntry> {
    let text = fs::read_to_string("/etc/passwd").ok()?;
    text.lines().find_map(|line| {
        let f: Vec<&str> = line.split(':').collect();
        (f.len() >= 7 && f[0] == user).then(|| PasswdEntry {
            uid: f[2].parse().unwrap_or(u32::MAX),
            gid: f[3].parse().unwrap_or(u32::MAX),
            gecos: f[4].to_string(),
        })
    })
}

/// Creates the lab's non-root user (no password: `*`, so sshd's key login works without PAM),
/// its home and authorized_keys (owned by it: sshd reads them with its rights) and a sudoers
/// drop-in granting passwordless sudo. Refuses a same-named user that is not this lab's.
fn ensure_sudo_user(layout: &LabLayout, public: &str) -> Result<(), LabError> {
    let name = layout.name();
    let user = layout::sudo_user(name);
    let gecos = layout::sudo_user_gecos(name);
    let entry = match passwd_entry(&user) {
        Some(entry) if entry.gecos == gecos => entry,
        Some(_) => {
            return Err(LabError::Usage(format!(
                "a user {user} exists and was not made by lab {name}: pick another --name"
            )));
        }
        None => {
            let useradd = sys::find_tool("useradd").ok_or(LabError::MissingTool {
                tool: "useradd",
                package: "passwd",
            })?;
            let home = layout.sudo_home();
            sys::run_checked(
                Command::new(useradd)
                    .args(["-M", "-s", "/bin/sh", "-p", "*", "-c", &gecos, "-d"])
                    .arg(&home)
                    .arg(&user),
            )?;
            passwd_entry(&user).ok_or_else(|| LabError::State {
                path: PathBuf::from("/etc/passwd"),
                message: format!("useradd {user} succeeded but the user is not there"),
            })?
        }
    };
    if sys::find_tool("sudo").is_none() {
        return Err(LabError::MissingTool {
            tool: "sudo",
            package: "sudo",
        });
    }
    let home = layout.sudo_home();
    sys::create_dir(&home)?;
    let keys = layout.authorized_keys_dir().join(&user);
    sys::write_file(&keys, public, 0o600)?;
    for path in [home.as_path(), keys.as_path()] {
        std::os::unix::fs::chown(path, Some(entry.uid), Some(entry.gid))
            .map_err(|source| LabError::io(format!("chown {}", path.display()), source))?;
    }
    sys::write_file(
        &layout.sudoers_file(),
        &format!(
            "# Written by `soak lab up` for lab {name}; removed by `soak lab down`.\n\
             {user} ALL=(ALL:ALL) NOPASSWD: ALL\n"
        ),
        0o440,
    )
}

/// Removes lab `name`'s sudoers drop-in and its user (only a user carrying the lab's GECOS mark).
fn remove_sudo_user(name: &str) -> Result<bool, LabError> {
    let sudoers = layout::sudoers_file(name);
    let mut removed = false;
    match fs::remove_file(&sudoers) {
        Ok(()) => removed = true,
        Err(err) if err.kind() == std::io::ErrorKind::NotFound => {}
        Err(source) => {
            return Err(LabError::io(
                format!("remove {}", sudoers.display()),
                source,
            ));
        }
    }
    let user = layout::sudo_user(name);
    if passwd_entry(&user).is_some_and(|e| e.gecos == layout::sudo_user_gecos(name)) {
        let userdel = sys::find_tool("userdel").ok_or(LabError::MissingTool {
            tool: "userdel",
            package: "passwd",
        })?;
        sys::run_checked(Command::new(userdel).arg(&user))?;
        removed = true;
    }
    Ok(removed)
}

/// Creates the lab dir (or accepts it when it is this lab's), and writes the marker first, so
/// `down` can always remove what `up` wrote.
fn prepare_dir(layout: &LabLayout) -> Result<(), LabError> {
    let dir = layout.dir();
    match recorded_name(dir) {
        Some(found) if found != layout.name() => {
            return Err(LabError::OtherLab {
                dir: dir.to_path_buf(),
                found,
                wanted: layout.name().to_owned(),
            });
        }
        Some(_) => {}
        None => {
            let non_empty = fs::read_dir(dir)
                .map(|mut entries| entries.next().is_some())
                .unwrap_or(false);
            if non_empty {
                return Err(LabError::ForeignDir(dir.to_path_buf()));
            }
        }
    }
    sys::create_dir(dir)?;
    sys::write_file(
        &layout.marker_file(),
        &format!("{}\n", layout.name()),
        0o644,
    )
}

fn read_key(path: &Path) -> Result<String, LabError> {
    fs::read_to_string(path)
        .map_err(|source| LabError::io(format!("read {}", path.display()), source))
}

/// Generates an ed25519 key pair at `private` unless both halves exist.
fn ensure_key(keygen: &Path, private: &Path, comment: &str) -> Result<(), LabError> {
    let public = private.with_extension("pub");
    if private.is_file() && public.is_file() {
        return Ok(());
    }
    for path in [private, public.as_path()] {
        match fs::remove_file(path) {
            Ok(()) => {}
            Err(err) if err.kind() == std::io::ErrorKind::NotFound => {}
            Err(source) => return Err(LabError::io(format!("remove {}", path.display()), source)),
        }
    }
    sys::run_checked(
        Command::new(keygen)
            .args(["-q", "-t", "ed25519", "-N", "", "-C", comment, "-f"])
            .arg(private),
    )?;
    Ok(())
}

fn ensure_client_key(layout: &LabLayout, keygen: &Path) -> Result<(), LabError> {
    ensure_key(
        keygen,
        &layout.client_key(),
        &format!("soak-lab-{}-client", layout.name()),
    )
}

fn ensure_host_key(host: &HostLayout, keygen: &Path) -> Result<(), LabError> {
    ensure_key(
        keygen,
        &host.host_key(),
        &format!("soak-lab-{}", host.namespace),
    )
}

fn ensure_namespace(tools: &Tools, existing: &BTreeSet<String>, ns: &str) -> Result<(), LabError> {
    if !existing.contains(ns) {
        sys::run_checked(&mut sys::ip(tools, ["netns", "add", ns]))?;
    }
    sys::run_checked(&mut sys::ip_in(tools, ns, ["link", "set", "lo", "up"]))?;
    Ok(())
}

/// One veth membership of a namespace in a lab bridge.
struct Member<'a> {
    /// The bridge-side end (in the bridge namespace).
    port: &'a str,
    /// The namespace-side end.
    interface: &'a str,
    /// The bridge it joins.
    bridge: &'a str,
    address: Ipv4Addr,
    address6: Ipv6Addr,
}

/// Joins namespace `ns` to a bridge: a veth pair made inside the bridge namespace with its peer
/// moved straight into `ns` — nothing ever appears in the root namespace. IPv4 and IPv6
/// addresses (`nodad`: usable at once).
fn ensure_member(
    tools: &Tools,
    bridge: &str,
    ns: &str,
    member: &Member<'_>,
) -> Result<(), LabError> {
    let (port, interface) = (member.port, member.interface);
    if !sys::probe(&mut sys::ip_in(tools, ns, ["link", "show", interface]))? {
        // A half pair cannot exist (veth ends die together), but a stale port name might.
        let _ = sys::probe(&mut sys::ip_in(tools, bridge, ["link", "del", port]));
        sys::run_checked(&mut sys::ip_in(
            tools,
            bridge,
            [
                "link", "add", port, "type", "veth", "peer", "name", interface, "netns", ns,
            ],
        ))?;
    }
    sys::run_checked(&mut sys::ip_in(
        tools,
        bridge,
        ["link", "set", port, "master", member.bridge, "up"],
    ))?;
    let cidr = format!("{}/{}", member.address, layout::PREFIX_LEN);
    sys::run_checked(&mut sys::ip_in(
        tools,
        ns,
        ["addr", "replace", cidr.as_str(), "dev", interface],
    ))?;
    let cidr6 = format!("{}/{}", member.address6, layout::PREFIX6_LEN);
    sys::run_checked(&mut sys::ip_in(
        tools,
        ns,
        [
            "-6",
            "addr",
            "replace",
            cidr6.as_str(),
            "dev",
            interface,
            "nodad",
        ],
    ))?;
    sys::run_checked(&mut sys::ip_in(tools, ns, ["link", "set", interface, "up"]))?;
    Ok(())
}

/// Removes host namespaces of this lab beyond the requested count (an `up` that shrinks).
fn remove_extra_hosts(
    layout: &LabLayout,
    tools: &Tools,
    existing: &BTreeSet<String>,
) -> Result<(), LabError> {
    for ns in existing {
        let index = match lab_namespace_role(layout.name(), ns) {
            Some(NamespaceRole::Host(index)) if index > layout.host_count() => index,
            _ => continue,
        };
        clear_namespace(tools, ns, &sys::self_and_ancestors())?;
        sys::run_checked(&mut sys::ip(tools, ["netns", "del", ns.as_str()]))?;
        let host = layout.host(index);
        for dir in [&host.sshd_dir, &host.install_dir] {
            let _ = fs::remove_dir_all(dir);
        }
    }
    Ok(())
}

/// The pid of this host's sshd when it is running: pid file → a live `sshd` whose command line
/// names this host's config and which lives in this host's namespace.
fn running_sshd(host: &HostLayout) -> Option<u32> {
    let pid: u32 = fs::read_to_string(host.sshd_pid_file())
        .ok()?
        .trim()
        .parse()
        .ok()?;
    is_our_sshd(pid, &host.sshd_config(), Some(&host.namespace)).then_some(pid)
}

fn is_our_sshd(pid: u32, config: &Path, namespace: Option<&str>) -> bool {
    sys::pid_alive(pid)
        && sys::process_name(pid).as_deref() == Some("sshd")
        && sys::process_cmdline(pid)
            .is_some_and(|cmdline| cmdline.contains(&*config.to_string_lossy()))
        && namespace.is_none_or(|ns| sys::pid_in_namespace(pid, ns))
}

/// Starts sshd in the host namespace (it daemonizes and writes its pid file once its listen
/// socket is bound) and waits for the pid file.
fn start_sshd(tools: &Tools, sshd: &Path, host: &HostLayout) -> Result<u32, LabError> {
    let pid_file = host.sshd_pid_file();
    let _ = fs::remove_file(&pid_file);
    let failed = |reason: String| LabError::Sshd {
        host: host.name.clone(),
        reason,
        log: host.sshd_log(),
        log_tail: sys::tail(&host.sshd_log(), 10),
    };
    let mut command = sys::ip(tools, ["netns", "exec", host.namespace.as_str()]);
    command
        .arg(sshd)
        .arg("-f")
        .arg(host.sshd_config())
        .arg("-E")
        .arg(host.sshd_log());
    let output = sys::run_bounded(&mut command, sys::COMMAND_TIMEOUT)?;
    if !output.status.success() {
        return Err(failed(format!(
            "`{}` exited with {}: {}",
            sys::describe(&command),
            output.status,
            String::from_utf8_lossy(&output.stderr).trim()
        )));
    }
    let deadline = Instant::now() + SSHD_START_TIMEOUT;
    loop {
        let pid = fs::read_to_string(&pid_file)
            .ok()
            .and_then(|text| text.trim().parse::<u32>().ok());
        if let Some(pid) = pid {
            if is_our_sshd(pid, &host.sshd_config(), Some(&host.namespace)) {
                return Ok(pid);
            }
            return Err(failed(format!(
                "pid file names {pid}, which is not this sshd"
            )));
        }
        if Instant::now() >= deadline {
            return Err(failed(format!(
                "no pid file {} after {SSHD_START_TIMEOUT:?}",
                pid_file.display()
            )));
        }
        thread::sleep(Duration::from_millis(20));
    }
}

/// Kills every process in `ns` except `spare` (TERM, then KILL); repeats while new ones appear
/// (a dying sshd may have forked). Errors when some survive SIGKILL.
fn clear_namespace(tools: &Tools, ns: &str, spare: &BTreeSet<u32>) -> Result<usize, LabError> {
    let mut killed = 0;
    for _round in 0..5 {
        let pids: BTreeSet<u32> = sys::namespace_pids(tools, ns)?
            .difference(spare)
            .copied()
            .collect();
        if pids.is_empty() {
            return Ok(killed);
        }
        killed += pids.len();
        let left = sys::terminate(&pids);
        if !left.is_empty() {
            return Err(LabError::Survivors {
                namespace: ns.to_owned(),
                pids: left.into_iter().collect(),
            });
        }
    }
    let pids: Vec<u32> = sys::namespace_pids(tools, ns)?
        .difference(spare)
        .copied()
        .collect();
    if pids.is_empty() {
        Ok(killed)
    } else {
        Err(LabError::Survivors {
            namespace: ns.to_owned(),
            pids,
        })
    }
}

/// What `down` removed.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct DownReport {
    /// Lab name.
    pub name: String,
    /// Processes killed (sshds and anything else inside the lab namespaces).
    pub killed: usize,
    /// Namespaces deleted.
    pub namespaces: Vec<String>,
    /// Whether the lab directory was removed.
    pub removed_dir: bool,
    /// A directory left in place because it lacked the lab marker (never deleted blindly).
    pub kept_foreign_dir: Option<PathBuf>,
    /// Whether the lab's sudo user (and its sudoers file) was removed.
    #[serde(default)]
    pub removed_sudo_user: bool,
}

/// Tears the lab down (idempotent): kills the sshds it started and every process inside its
/// namespaces, deletes the namespaces (found from the state file and by name prefix, so a
/// partial lab or a lost state file is handled) and removes the lab directory.
pub fn down(dir: &Path, name: &str, tools: &Tools) -> Result<DownReport, LabError> {
    validate_dir(dir)?;
    validate_name(name)?;
    let state = load_state(dir).ok().flatten().filter(|s| s.name == name);
    let mut report = DownReport {
        name: name.to_owned(),
        ..DownReport::default()
    };
    let spare = sys::self_and_ancestors();

    // 1. The sshds first (no new sessions), by recorded pid or pid file — even when their
    //    namespace was already deleted by hand.
    let mut sshd_pids = BTreeSet::new();
    if let Some(state) = &state {
        for host in state.hosts.iter().chain(state.bastion.iter()) {
            if is_our_sshd(host.sshd_pid, &host.sshd_config, None) {
                sshd_pids.insert(host.sshd_pid);
            }
        }
    }
    if let Ok(entries) = fs::read_dir(dir.join("sshd")) {
        for entry in entries.flatten() {
            let config = entry.path().join("sshd_config");
            let pid = fs::read_to_string(entry.path().join("sshd.pid"))
                .ok()
                .and_then(|t| t.trim().parse::<u32>().ok());
            if let Some(pid) = pid.filter(|&pid| is_our_sshd(pid, &config, None)) {
                sshd_pids.insert(pid);
            }
        }
    }
    let sshd_pids: BTreeSet<u32> = sshd_pids.difference(&spare).copied().collect();
    report.killed += sshd_pids.len();
    let left = sys::terminate(&sshd_pids);
    if !left.is_empty() {
        return Err(LabError::Survivors {
            namespace: "(sshd)".into(),
            pids: left.into_iter().collect(),
        });
    }

    // 2. Every namespace of this lab: hosts and controller first, the bridge last.
    let mut namespaces: BTreeSet<String> = sys::list_namespaces(tools)?
        .into_iter()
        .filter(|ns| lab_namespace_role(name, ns).is_some())
        .collect();
    let existing = namespaces.clone();
    if let Some(state) = &state {
        namespaces.extend(
            state
                .namespaces()
                .into_iter()
                .filter(|ns| existing.contains(ns)),
        );
    }
    let mut ordered: Vec<String> = namespaces.into_iter().collect();
    ordered.sort_by_key(|ns| lab_namespace_role(name, ns) == Some(NamespaceRole::Bridge));
    for ns in ordered {
        report.killed += clear_namespace(tools, &ns, &spare)?;
        sys::run_checked(&mut sys::ip(tools, ["netns", "del", ns.as_str()]))?;
        report.namespaces.push(ns);
    }

    // 3. The lab's sudo user and its sudoers drop-in (only ones carrying the lab's mark).
    report.removed_sudo_user = remove_sudo_user(name)?;

    // 4. The directory, only when it carries this lab's marker.
    if dir.exists() {
        let marker = fs::read_to_string(layout::marker_file(dir)).unwrap_or_default();
        if marker.trim() == name {
            fs::remove_dir_all(dir)
                .map_err(|source| LabError::io(format!("remove {}", dir.display()), source))?;
            report.removed_dir = true;
        } else {
            report.kept_foreign_dir = Some(dir.to_path_buf());
        }
    }
    Ok(report)
}

/// One namespace's presence.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct NamespaceStatus {
    /// Namespace.
    pub namespace: String,
    /// Lab address, where it has one.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub address: Option<Ipv4Addr>,
    /// Whether the namespace exists.
    pub present: bool,
}

/// One host's status.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct HostStatus {
    /// Inventory name.
    pub name: String,
    /// Namespace.
    pub namespace: String,
    /// Lab address.
    pub address: Ipv4Addr,
    /// Install dir.
    pub install_dir: PathBuf,
    /// The sshd pid recorded at `up`.
    pub sshd_pid: u32,
    /// Whether the namespace exists.
    pub namespace_present: bool,
    /// Whether that sshd is alive in the host's namespace.
    pub alive: bool,
}

/// What `soak lab status` reports.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct LabStatus {
    /// True when the state file exists and every namespace and sshd is alive.
    pub up: bool,
    /// Lab name.
    pub name: String,
    /// Lab directory.
    pub dir: PathBuf,
    /// The state file, when present.
    pub state_file: Option<PathBuf>,
    /// The inventory file, when the lab is recorded.
    pub inventory: Option<PathBuf>,
    /// Client key.
    pub ssh_key: Option<PathBuf>,
    /// known_hosts.
    pub known_hosts: Option<PathBuf>,
    /// `ssh -F` config.
    pub ssh_config: Option<PathBuf>,
    /// The controller namespace.
    pub controller: NamespaceStatus,
    /// The bridge namespace.
    pub bridge: NamespaceStatus,
    /// The hosts.
    pub hosts: Vec<HostStatus>,
    /// Namespaces with this lab's prefix that the state does not list (partial or lost state).
    pub stray_namespaces: Vec<String>,
}

/// Reports the lab in `dir` named `name`: what the state records and what is actually alive.
pub fn status(dir: &Path, name: &str, tools: &Tools) -> Result<LabStatus, LabError> {
    validate_dir(dir)?;
    validate_name(name)?;
    let state = load_state(dir)?.filter(|s| s.name == name);
    let present = sys::list_namespaces(tools)?;
    let controller_ns = layout::controller_namespace(name);
    let bridge_ns = layout::bridge_namespace(name);
    let hosts: Vec<HostStatus> = state
        .iter()
        .flat_map(|s| s.hosts.iter())
        .map(|host| HostStatus {
            name: host.name.clone(),
            namespace: host.namespace.clone(),
            address: host.address,
            install_dir: host.install_dir.clone(),
            sshd_pid: host.sshd_pid,
            namespace_present: present.contains(&host.namespace),
            // Without root the sshd's namespace link in /proc is unreadable: then the pid, name
            // and command line (our config path) are what can be checked.
            alive: is_our_sshd(host.sshd_pid, &host.sshd_config, None)
                && sys::pid_namespace_check(host.sshd_pid, &host.namespace).unwrap_or(true),
        })
        .collect();
    let recorded: BTreeSet<String> = state.iter().flat_map(|s| s.namespaces()).collect();
    let stray_namespaces: Vec<String> = present
        .iter()
        .filter(|ns| lab_namespace_role(name, ns).is_some() && !recorded.contains(*ns))
        .cloned()
        .collect();
    let controller = NamespaceStatus {
        present: present.contains(&controller_ns),
        namespace: controller_ns,
        address: Some(layout::CONTROLLER_ADDRESS),
    };
    let bridge = NamespaceStatus {
        present: present.contains(&bridge_ns),
        namespace: bridge_ns,
        address: None,
    };
    let up = state.is_some()
        && controller.present
        && bridge.present
        && !hosts.is_empty()
        && hosts.iter().all(|h| h.namespace_present && h.alive);
    Ok(LabStatus {
        up,
        name: name.to_owned(),
        dir: dir.to_path_buf(),
        state_file: state.as_ref().map(|_| layout::state_file(dir)),
        inventory: state.as_ref().map(|s| s.inventory.clone()),
        ssh_key: state.as_ref().map(|s| s.ssh_key.clone()),
        known_hosts: state.as_ref().map(|s| s.known_hosts.clone()),
        ssh_config: state.as_ref().map(|s| s.ssh_config.clone()),
        controller,
        bridge,
        hosts,
        stray_namespaces,
    })
}

/// `ip netns exec <controller> PROGRAM ARGS…` for the lab `name` in `dir`, with `SOAK_LAB_DIR`,
/// `SOAK_LAB_NAME` and (when recorded) `SOAK_LAB_INVENTORY` set. Fails when the controller
/// namespace does not exist.
pub fn exec_command<S: AsRef<std::ffi::OsStr>>(
    dir: &Path,
    name: &str,
    tools: &Tools,
    program_and_args: &[S],
) -> Result<Command, LabError> {
    validate_dir(dir)?;
    validate_name(name)?;
    let controller = layout::controller_namespace(name);
    if !sys::list_namespaces(tools)?.contains(&controller) {
        return Err(LabError::NotUp {
            name: name.to_owned(),
            dir: dir.to_path_buf(),
        });
    }
    if program_and_args.is_empty() {
        return Err(LabError::Usage(
            "`soak lab exec` needs a command: soak lab exec -- CMD ARGS…".into(),
        ));
    }
    let mut command = sys::ip(tools, ["netns", "exec", controller.as_str()]);
    command
        .args(program_and_args)
        .env("SOAK_LAB_DIR", dir)
        .env("SOAK_LAB_NAME", name);
    if let Ok(Some(state)) = load_state(dir) {
        command.env("SOAK_LAB_INVENTORY", state.inventory);
    }
    Ok(command)
}
