//! Test support (feature `testing`): a throw-away OpenSSH server on 127.0.0.1 with its own
//! config, host key, client key and authorized_keys, so the SSH backend and deploy are tested
//! against a real sshd. It runs until dropped and is killed by its pid.
//!
//! Needs root (to log in as root and for sshd's privilege separation) and `/usr/sbin/sshd`;
//! [`TestSshd::start`] says why when it cannot run, and tests skip with that reason.

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

fn is_root() -> bool {
    std::fs::read_to_string("/proc/self/status")
        .ok()
        .and_then(|s| {
            s.lines()
                .find(|l| l.starts_with("Uid:"))
                .and_then(|l| l.split_whitespace().nth(2).map(|euid| euid == "0"))
        })
        .unwrap_or(false)
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
        if !Path::new(SSHD).exists() {
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
