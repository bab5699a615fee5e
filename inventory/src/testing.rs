//! Test support (feature `testing`), shared by the `soak-inventory` and `soak` tests:
//!
//! - **the skip rule, written once**: a test that needs root, sshd, iproute2, iptables, … asks
//!   [`prerequisites`] what is missing and hands the answer to [`skip_unless_available`]. On a
//!   developer laptop a missing prerequisite prints `skipped: …` and the test returns; in require
//!   mode ([`require_mode`]: `SOAK_REQUIRE_LAB=1`, or `CI=true` unless `SOAK_REQUIRE_LAB=0`) it
//!   is a test failure naming what is missing. `SOAK_TEST_FAKE_MISSING=root,sshd,…` makes the
//!   checks report those prerequisites missing (how the rule itself is tested).
//! - a throw-away OpenSSH server on 127.0.0.1 ([`TestSshd`]) with its own config, host key,
//!   client key and authorized_keys, so the SSH backend and deploy are tested against a real
//!   sshd. It runs until dropped and is killed by its pid. It needs root (to log in as root and
//!   for sshd's privilege separation) and `/usr/sbin/sshd`; [`sshd_or_skip`] applies the rule.

use std::io::Write;
use std::net::{Ipv4Addr, TcpListener, TcpStream};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use crate::model::{Connection, Host, HostKeyChecking, ServiceManager};

/// Path of the OpenSSH server binary.
pub const SSHD: &str = "/usr/sbin/sshd";

/// A running sshd on `127.0.0.1:port`.
pub struct TestSshd {
    /// Listening port.
    pub port: u16,
    /// Directory with config, keys, known_hosts and logs.
    pub dir: tempfile::TempDir,
    /// Client private key authorized to log in as root.
    pub client_key: PathBuf,
    /// known_hosts holding this server's key for `[127.0.0.1]:port`.
    pub known_hosts: PathBuf,
    child: Child,
}

/// Why an sshd-based test cannot run here; print it and skip.
#[derive(Debug)]
pub struct Unavailable(pub String);

fn run(cmd: &mut Command) -> Result<(), Unavailable> {
    let out = cmd
        .output()
        .map_err(|e| Unavailable(format!("cannot run {cmd:?}: {e}")))?;
    if out.status.success() {
        Ok(())
    } else {
        Err(Unavailable(format!(
            "{cmd:?} failed: {}",
            String::from_utf8_lossy(&out.stderr).trim()
        )))
    }
}

/// Environment variable that turns a missing prerequisite into a failure (`1`) or explicitly
/// allows skipping (`0`).
pub const REQUIRE_ENV: &str = "SOAK_REQUIRE_LAB";
/// Environment variable listing prerequisites to report missing (comma-separated: `root`, or a
/// tool name such as `sshd`, `ip`, `iptables`, `setpriv`, or `netns`).
pub const FAKE_MISSING_ENV: &str = "SOAK_TEST_FAKE_MISSING";

/// Whether a missing prerequisite fails the test instead of skipping it: `SOAK_REQUIRE_LAB=1`
/// (set by `scripts/test` when `CI=true`), or `CI=true` with `SOAK_REQUIRE_LAB` unset.
/// `SOAK_REQUIRE_LAB=0` allows skipping even under CI.
pub fn require_mode() -> bool {
    match std::env::var(REQUIRE_ENV).ok().as_deref().map(str::trim) {
        Some("1" | "true" | "yes") => true,
        Some("0" | "false" | "no") => false,
        _ => std::env::var("CI").is_ok_and(|v| v.trim().eq_ignore_ascii_case("true")),
    }
}

/// Whether `SOAK_TEST_FAKE_MISSING` names `what`.
fn faked_missing(what: &str) -> bool {
    std::env::var(FAKE_MISSING_ENV)
        .is_ok_and(|list| list.split(',').any(|item| item.trim() == what))
}

/// Whether this process runs as root (effective uid 0); `false` when faked missing.
pub fn is_root() -> bool {
    !faked_missing("root") && crate::lab::sys::effective_uid() == Some(0)
}

/// An executable `tool` on `PATH` or in the usual sbin directories; `None` when faked missing.
pub fn find_tool(tool: &str) -> Option<PathBuf> {
    if faked_missing(tool) {
        return None;
    }
    crate::lab::sys::find_tool(tool)
}

/// A prerequisite of a test.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Prerequisite {
    /// Effective uid 0.
    Root,
    /// An executable tool (`ip`, `sshd`, `iptables`, …).
    Tool(&'static str),
    /// Network namespaces work (`ip netns list` succeeds).
    Netns,
}

/// What the network-namespace lab needs: root, iproute2, openssh server and client, netns.
pub const LAB: &[Prerequisite] = &[
    Prerequisite::Root,
    Prerequisite::Tool("ip"),
    Prerequisite::Tool("sshd"),
    Prerequisite::Tool("ssh"),
    Prerequisite::Tool("ssh-keygen"),
    Prerequisite::Netns,
];

/// Why the prerequisites are not met (the first one missing), or `None` when they all are.
pub fn prerequisites(needed: &[Prerequisite]) -> Option<String> {
    for need in needed {
        match need {
            Prerequisite::Root if !is_root() => return Some("not root".into()),
            Prerequisite::Tool(tool) if find_tool(tool).is_none() => {
                return Some(format!("`{tool}` is not installed"));
            }
            Prerequisite::Netns => {
                let works = !faked_missing("netns")
                    && find_tool("ip").is_some_and(|ip| {
                        Command::new(ip)
                            .args(["netns", "list"])
                            .output()
                            .is_ok_and(|o| o.status.success())
                    });
                if !works {
                    return Some("`ip netns list` fails (no network namespaces)".into());
                }
            }
            _ => {}
        }
    }
    None
}

/// The one skip rule. `Ok`/`None` → `true` (run the test). A missing prerequisite → prints
/// `skipped: <test>: <reason>` and returns `false` (the caller returns), or in
/// [`require_mode`] panics, failing the test.
pub fn skip_unless_available(test: &str, missing: Option<String>) -> bool {
    let Some(reason) = missing else {
        return true;
    };
    if require_mode() {
        panic!(
            "{test}: prerequisite missing: {reason} \
             ({REQUIRE_ENV}=1 or CI=true: a missing prerequisite is a failure, not a skip)"
        );
    }
    eprintln!("skipped: {test}: {reason} (set {REQUIRE_ENV}=1 to make this a failure)");
    false
}

/// A running [`TestSshd`], or `None` after the skip rule (a panic in require mode).
pub fn sshd_or_skip(test: &str) -> Option<TestSshd> {
    match TestSshd::start() {
        Ok(sshd) => Some(sshd),
        Err(Unavailable(reason)) => {
            skip_unless_available(test, Some(reason));
            None
        }
    }
}

/// Generates an ed25519 key pair at `path` (and `path.pub`).
pub fn keygen(path: &Path) -> Result<(), Unavailable> {
    run(Command::new("ssh-keygen")
        .args(["-q", "-t", "ed25519", "-N", "", "-C", "soak-test", "-f"])
        .arg(path))
}

/// A `known_hosts` line for `[127.0.0.1]:port` with the public key in `pub_path`.
pub fn known_hosts_line(port: u16, pub_path: &Path) -> Result<String, Unavailable> {
    let public = std::fs::read_to_string(pub_path)
        .map_err(|e| Unavailable(format!("cannot read {}: {e}", pub_path.display())))?;
    let mut parts = public.split_whitespace();
    let (Some(kind), Some(key)) = (parts.next(), parts.next()) else {
        return Err(Unavailable(format!(
            "{} is not a public key",
            pub_path.display()
        )));
    };
    Ok(format!("[127.0.0.1]:{port} {kind} {key}\n"))
}

impl TestSshd {
    /// Starts an sshd, or says why it cannot.
    pub fn start() -> Result<TestSshd, Unavailable> {
        if !Path::new(SSHD).exists() || faked_missing("sshd") {
            return Err(Unavailable(format!(
                "{SSHD} is missing (install openssh-server; scripts/test does as root)"
            )));
        }
        if !is_root() {
            return Err(Unavailable(
                "not root: the test sshd logs in as root".to_string(),
            ));
        }
        let dir = tempfile::Builder::new()
            .prefix("soak-sshd-")
            .tempdir()
            .map_err(|e| Unavailable(format!("tempdir: {e}")))?;
        let d = dir.path();
        let host_key = d.join("host_key");
        let client_key = d.join("client_key");
        keygen(&host_key)?;
        keygen(&client_key)?;
        std::fs::copy(d.join("client_key.pub"), d.join("authorized_keys"))
            .map_err(|e| Unavailable(format!("authorized_keys: {e}")))?;
        // sshd's privilege separation directory.
        std::fs::create_dir_all("/run/sshd").map_err(|e| Unavailable(format!("/run/sshd: {e}")))?;
        let port = TcpListener::bind((Ipv4Addr::LOCALHOST, 0))
            .and_then(|l| l.local_addr())
            .map(|a| a.port())
            .map_err(|e| Unavailable(format!("free port: {e}")))?;
        let config = d.join("sshd_config");
        let text = format!(
            "Port {port}\nListenAddress 127.0.0.1\nHostKey {hk}\nPidFile none\n\
             AuthorizedKeysFile {ak}\nPasswordAuthentication no\nKbdInteractiveAuthentication no\n\
             PubkeyAuthentication yes\nPermitRootLogin prohibit-password\nUsePAM no\nStrictModes no\n\
             AllowTcpForwarding yes\nMaxSessions 100\nMaxStartups 100\nLogLevel ERROR\n",
            hk = host_key.display(),
            ak = d.join("authorized_keys").display(),
        );
        std::fs::write(&config, text).map_err(|e| Unavailable(format!("sshd_config: {e}")))?;
        let log = std::fs::File::create(d.join("sshd.log"))
            .map_err(|e| Unavailable(format!("sshd.log: {e}")))?;
        let child = Command::new(SSHD)
            .arg("-D")
            .arg("-e")
            .arg("-f")
            .arg(&config)
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(log)
            .spawn()
            .map_err(|e| Unavailable(format!("cannot start sshd: {e}")))?;
        let known_hosts = d.join("known_hosts");
        let line = known_hosts_line(port, &d.join("host_key.pub"))?;
        let mut sshd = TestSshd {
            port,
            client_key,
            known_hosts: known_hosts.clone(),
            dir,
            child,
        };
        std::fs::write(&known_hosts, line).map_err(|e| Unavailable(format!("known_hosts: {e}")))?;
        let deadline = Instant::now() + Duration::from_secs(10);
        while TcpStream::connect((Ipv4Addr::LOCALHOST, port)).is_err() {
            if let Ok(Some(status)) = sshd.child.try_wait() {
                let log =
                    std::fs::read_to_string(sshd.dir.path().join("sshd.log")).unwrap_or_default();
                return Err(Unavailable(format!(
                    "sshd exited ({status}): {}",
                    log.trim()
                )));
            }
            if Instant::now() > deadline {
                return Err(Unavailable("sshd did not listen within 10s".to_string()));
            }
            std::thread::sleep(Duration::from_millis(50));
        }
        Ok(sshd)
    }

    /// A host reached through this sshd as root, with strict host-key checking, its install
    /// dir at `install_dir`, the node in the background, and the given ports.
    pub fn host(&self, name: &str, install_dir: &Path, api_port: u16, gossip_port: u16) -> Host {
        let mut host = Host::with_defaults(name, "127.0.0.1");
        host.connection = Connection::Ssh;
        host.ssh.user = Some("root".to_string());
        host.ssh.port = self.port;
        host.ssh.key = Some(self.client_key.clone());
        host.ssh.known_hosts = Some(self.known_hosts.clone());
        host.ssh.host_key_checking = HostKeyChecking::Strict;
        host.install_dir = install_dir.to_string_lossy().into_owned();
        host.service = ServiceManager::Background;
        host.api_port = api_port;
        host.gossip_port = gossip_port;
        host
    }

    /// Replaces known_hosts with a different key for this server, as if its key changed.
    pub fn forge_changed_key(&self) -> Result<(), Unavailable> {
        let other = self.dir.path().join("other_key");
        if !other.exists() {
            keygen(&other)?;
        }
        let line = known_hosts_line(self.port, &self.dir.path().join("other_key.pub"))?;
        let mut f = std::fs::File::create(&self.known_hosts)
            .map_err(|e| Unavailable(format!("known_hosts: {e}")))?;
        f.write_all(line.as_bytes())
            .map_err(|e| Unavailable(format!("known_hosts: {e}")))
    }

    /// The pid of the sshd listener.
    pub fn pid(&self) -> u32 {
        self.child.id()
    }
}

impl Drop for TestSshd {
    fn drop(&mut self) {
        // Our own child, by pid.
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// A free TCP port on 127.0.0.1 (racy by nature; fine for tests).
pub fn free_port() -> u16 {
    TcpListener::bind((Ipv4Addr::LOCALHOST, 0))
        .and_then(|l| l.local_addr())
        .map(|a| a.port())
        .unwrap_or(0)
}

/// A free UDP port on 127.0.0.1 (racy by nature; fine for tests).
pub fn free_udp_port() -> u16 {
    std::net::UdpSocket::bind((Ipv4Addr::LOCALHOST, 0))
        .and_then(|s| s.local_addr())
        .map(|a| a.port())
        .unwrap_or(0)
}

/// Runs one test of the current test binary again in a child process, with `env` set and the
/// require/fake variables cleared first, so a test can check what the skip rule does with a
/// prerequisite faked missing. Returns the child's output.
pub fn rerun_test(test: &str, env: &[(&str, &str)]) -> std::process::Output {
    let exe = std::env::current_exe().unwrap_or_else(|e| panic!("current test binary: {e}"));
    let mut cmd = Command::new(exe);
    cmd.args([test, "--exact", "--nocapture", "--test-threads=1"])
        .env_remove(REQUIRE_ENV)
        .env_remove(FAKE_MISSING_ENV)
        .env_remove("CI")
        .stdin(Stdio::null());
    for (key, value) in env {
        cmd.env(key, value);
    }
    cmd.output().unwrap_or_else(|e| panic!("rerun {test}: {e}"))
}

/// Checks the skip rule on one real test of the current binary whose prerequisites include
/// `faked`: with `faked` reported missing it skips (passes, printing `skipped:`) by default, and
/// fails under `SOAK_REQUIRE_LAB=1` and under `CI=true`.
pub fn assert_skip_rule(test: &str, faked: &str) {
    let text = |out: &std::process::Output| {
        format!(
            "{}{}",
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        )
    };
    let laptop = rerun_test(test, &[(FAKE_MISSING_ENV, faked)]);
    assert!(
        laptop.status.success() && text(&laptop).contains("skipped:"),
        "without require mode, a missing `{faked}` skips with a reason:\n{}",
        text(&laptop)
    );
    assert!(
        text(&laptop).contains("1 passed"),
        "the child ran exactly the test named:\n{}",
        text(&laptop)
    );
    for env in [(REQUIRE_ENV, "1"), ("CI", "true")] {
        let required = rerun_test(test, &[(FAKE_MISSING_ENV, faked), env]);
        assert!(
            !required.status.success() && text(&required).contains("prerequisite missing"),
            "with {}={}, a missing `{faked}` fails the test:\n{}",
            env.0,
            env.1,
            text(&required)
        );
    }
}
