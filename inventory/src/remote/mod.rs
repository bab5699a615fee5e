//! Reaching a host: the [`Remote`] trait (exec with a timeout, upload, download, local
//! port-forward) and its backends — [`ssh::SshRemote`] (the openssh crate over a multiplexed
//! master connection; also what runs inside the network-namespace lab, from the controller
//! namespace) and [`local::LocalRemote`] (this machine, no SSH; for tests and one-box fleets).
//!
//! Everything above this module (deploy, status, the remote fleet of `soak run`) talks to
//! hosts only through `dyn Remote`, so the same code runs everywhere (Jepsen's "control").

pub mod local;
pub mod ssh;

use std::net::SocketAddr;
use std::path::PathBuf;
use std::time::Duration;

use futures::future::BoxFuture;

use crate::model::{Connection, Host, Privilege};

/// Output of a command run on a host.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ExecOutput {
    /// Exit code; `None` when killed by a signal.
    pub status: Option<i32>,
    /// Captured standard output.
    pub stdout: Vec<u8>,
    /// Captured standard error.
    pub stderr: Vec<u8>,
}

impl ExecOutput {
    /// Whether the command exited with 0.
    pub fn success(&self) -> bool {
        self.status == Some(0)
    }

    /// Standard output as (lossy) text.
    pub fn stdout_text(&self) -> String {
        String::from_utf8_lossy(&self.stdout).into_owned()
    }

    /// The last 400 bytes of standard error, trimmed, as text.
    pub fn stderr_tail(&self) -> String {
        let text = String::from_utf8_lossy(&self.stderr);
        let text = text.trim();
        let start = text.len().saturating_sub(400);
        let start = (start..text.len())
            .find(|i| text.is_char_boundary(*i))
            .unwrap_or(0);
        text[start..].to_string()
    }
}

/// A failure talking to one host. Displays as `host `NAME`: what went wrong`.
#[derive(Debug, thiserror::Error)]
#[error("host `{host}`: {kind}")]
pub struct RemoteError {
    /// Name of the host.
    pub host: String,
    /// What went wrong.
    #[source]
    pub kind: RemoteErrorKind,
}

impl RemoteError {
    /// An error on `host`.
    pub fn new(host: &str, kind: RemoteErrorKind) -> Self {
        RemoteError {
            host: host.to_string(),
            kind,
        }
    }
}

/// What went wrong talking to a host.
#[derive(Debug, thiserror::Error)]
pub enum RemoteErrorKind {
    /// The SSH (or local) connection could not be made.
    #[error("cannot connect to {target}: {detail}")]
    Connect {
        /// `user@address:port`.
        target: String,
        /// What ssh said.
        detail: String,
    },
    /// The host presented a key that differs from the one in known_hosts.
    #[error(
        "refusing to connect to {target}: its host key CHANGED and does not match {known_hosts} \
         (someone may be intercepting the connection, or the host was reinstalled; if the change \
         is expected, remove the old key with `ssh-keygen -R` and add the new one)"
    )]
    HostKeyChanged {
        /// `user@address:port`.
        target: String,
        /// The known_hosts file checked.
        known_hosts: String,
    },
    /// The host key is not known and checking is strict.
    #[error(
        "refusing to connect to {target}: its host key is not in {known_hosts} and host_key_checking \
         is strict (add the key to known_hosts, or set host_key_checking = \"accept-new\")"
    )]
    HostKeyUnknown {
        /// `user@address:port`.
        target: String,
        /// The known_hosts file checked.
        known_hosts: String,
    },
    /// Public-key authentication failed.
    #[error("authentication to {target} failed: {detail}")]
    Auth {
        /// `user@address:port`.
        target: String,
        /// What ssh said.
        detail: String,
    },
    /// An operation did not finish in time.
    #[error("{what} timed out after {}", humanize(*after))]
    Timeout {
        /// The operation.
        what: String,
        /// The limit that was hit.
        after: Duration,
    },
    /// A command ran but failed.
    #[error("{what} failed ({status}): {stderr}")]
    Command {
        /// What the command was for.
        what: String,
        /// Exit status description.
        status: String,
        /// Tail of its standard error.
        stderr: String,
    },
    /// A privileged step could not run: sudo wants a password (soak never types one), or sudo
    /// is missing. Names the setting to change.
    #[error(
        "privileged steps need `sudo -n` as {login}, but {detail}: allow passwordless sudo for {login} \
         (a NOPASSWD rule in sudoers) or log in as root (ssh_user = \"root\" / ansible_user: root) and \
         turn become off (become = false / ansible_become: false)"
    )]
    Privilege {
        /// The login user.
        login: String,
        /// What sudo said.
        detail: String,
    },
    /// The session broke or a local IO operation failed.
    #[error("{what}: {detail}")]
    Io {
        /// The operation.
        what: String,
        /// The cause.
        detail: String,
    },
}

fn humanize(d: Duration) -> String {
    if d.as_millis().is_multiple_of(1000) {
        format!("{}s", d.as_secs())
    } else {
        format!("{}ms", d.as_millis())
    }
}

/// Connection options shared by all hosts.
#[derive(Debug, Clone)]
pub struct ConnectOptions {
    /// Limit for establishing a connection (TCP, SSH handshake, authentication).
    pub connect_timeout: Duration,
    /// Directory under which control sockets live; must be short (≤ 61 bytes with what ssh
    /// appends). Defaults to `/tmp`.
    pub control_parent: PathBuf,
}

impl Default for ConnectOptions {
    fn default() -> Self {
        ConnectOptions {
            connect_timeout: Duration::from_secs(10),
            control_parent: PathBuf::from("/tmp"),
        }
    }
}

/// An open connection to one host.
///
/// Commands are POSIX `sh` scripts; backends run them with `sh -c`. Every call takes a timeout
/// so that one stuck host never holds up the others.
pub trait Remote: Send + Sync {
    /// The host this connects to.
    fn host(&self) -> &Host;

    /// Runs `script` with `sh -c`, feeding `input` on standard input (empty: none).
    fn exec<'a>(
        &'a self,
        script: &'a str,
        input: &'a [u8],
        timeout: Duration,
    ) -> BoxFuture<'a, Result<ExecOutput, RemoteError>>;

    /// Opens a local port-forward: the returned loopback address on this machine reaches
    /// `127.0.0.1:remote_port` on the host. Lives until [`Remote::close`].
    fn forward(&self, remote_port: u16) -> BoxFuture<'_, Result<SocketAddr, RemoteError>>;

    /// Closes forwards and the connection. Does not touch processes on the host.
    fn close(self: Box<Self>) -> BoxFuture<'static, Result<(), RemoteError>>;
}

/// Quotes `text` for a POSIX shell (single quotes).
pub fn sh_quote(text: &str) -> String {
    format!("'{}'", text.replace('\'', r"'\''"))
}

/// Which privilege a script needs.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Needs {
    /// Root (tc, iptables, service control, the fault guard, signals to the node).
    Root,
    /// Whatever owns the install dir: root when it is outside the login user's home, else the
    /// login user (deploy, probe, stop, logs).
    InstallDir,
}

/// `script` wrapped to run with the privilege `needs` on `host`: unchanged for hosts without
/// `become`; with `become`, `sudo -n [-u USER] -- sh -c SCRIPT` (never a password prompt). A
/// root login running a root step skips sudo; [`Needs::InstallDir`] skips it when the install
/// dir is under the login user's `$HOME`.
pub fn privileged(host: &Host, needs: Needs, script: &str) -> String {
    let Privilege::Sudo { user } = &host.privilege else {
        return script.to_string();
    };
    let target = user.as_deref().unwrap_or("root");
    let sudo = match user {
        Some(user) => format!("sudo -n -u {} --", sh_quote(user)),
        None => "sudo -n --".to_string(),
    };
    let quoted = sh_quote(script);
    let skip = match needs {
        Needs::Root if target == "root" => "[ \"$(id -u)\" = 0 ]".to_string(),
        Needs::Root => "false".to_string(),
        Needs::InstallDir => format!(
            "case {dir}/ in \"$HOME\"/*) true;; *) false;; esac",
            dir = sh_quote(&host.install_dir)
        ),
    };
    format!("if {skip}; then sh -c {quoted}; else {sudo} sh -c {quoted}; fi")
}

/// Recognises sudo's own refusals (password wanted, no sudo) in a failed privileged command.
fn sudo_refusal(out: &ExecOutput) -> Option<String> {
    if out.success() {
        return None;
    }
    let text = String::from_utf8_lossy(&out.stderr);
    text.lines()
        .map(str::trim)
        .find(|l| {
            (l.starts_with("sudo:")
                && (l.contains("password is required")
                    || l.contains("a terminal is required")
                    || l.contains("no tty present")
                    || l.contains("not in the sudoers file")
                    || l.contains("is not allowed to run sudo")))
                || (l.contains("sudo") && (l.contains("not found") || l.contains("No such file")))
        })
        .map(str::to_string)
}

/// A [`Remote`] whose `exec` runs every script with the privilege `needs` (see [`privileged`]);
/// forwards pass through. For code that runs a whole sequence of node-management scripts
/// (deploy) without knowing about `become`.
pub struct Elevated<'a> {
    inner: &'a dyn Remote,
    needs: Needs,
}

impl<'a> Elevated<'a> {
    /// Wraps `inner`.
    pub fn new(inner: &'a dyn Remote, needs: Needs) -> Self {
        Elevated { inner, needs }
    }
}

impl Remote for Elevated<'_> {
    fn host(&self) -> &Host {
        self.inner.host()
    }

    fn exec<'a>(
        &'a self,
        script: &'a str,
        input: &'a [u8],
        timeout: Duration,
    ) -> BoxFuture<'a, Result<ExecOutput, RemoteError>> {
        Box::pin(async move {
            self.inner
                .exec_privileged(self.needs, script, input, timeout)
                .await
        })
    }

    fn forward(&self, remote_port: u16) -> BoxFuture<'_, Result<SocketAddr, RemoteError>> {
        self.inner.forward(remote_port)
    }

    fn close(self: Box<Self>) -> BoxFuture<'static, Result<(), RemoteError>> {
        // Borrowed: the owner closes the connection.
        Box::pin(async { Ok(()) })
    }
}

impl dyn Remote + '_ {
    /// Name of the host.
    pub fn name(&self) -> &str {
        &self.host().name
    }

    fn error(&self, kind: RemoteErrorKind) -> RemoteError {
        RemoteError::new(self.name(), kind)
    }

    /// Runs `script` and requires exit status 0; `what` names it in errors.
    pub async fn run(
        &self,
        what: &str,
        script: &str,
        timeout: Duration,
    ) -> Result<ExecOutput, RemoteError> {
        let out = self.exec(script, &[], timeout).await?;
        self.check(what, out)
    }

    fn check(&self, what: &str, out: ExecOutput) -> Result<ExecOutput, RemoteError> {
        if out.success() {
            Ok(out)
        } else {
            Err(self.error(RemoteErrorKind::Command {
                what: what.to_string(),
                status: out
                    .status
                    .map_or_else(|| "killed by a signal".to_string(), |c| format!("exit {c}")),
                stderr: out.stderr_tail(),
            }))
        }
    }

    /// Writes `data` to `path` on the host atomically (a temp file in the same directory,
    /// checked for its full length, then `mv`), with permission bits `mode` (e.g. `0o600`).
    /// Creates the parent directory.
    pub async fn upload(
        &self,
        data: &[u8],
        path: &str,
        mode: u32,
        timeout: Duration,
    ) -> Result<(), RemoteError> {
        let dir = match path.rfind('/') {
            Some(0) => "/",
            Some(i) => &path[..i],
            None => ".",
        };
        let script = format!(
            "umask 077; mkdir -p {dir} && tmp={dest}.soak-tmp.$$ && cat > \"$tmp\" \
             && [ \"$(wc -c < \"$tmp\" | tr -d ' ')\" = {len} ] && chmod {mode:o} \"$tmp\" && mv -f \"$tmp\" {dest} \
             || {{ rc=$?; rm -f \"$tmp\"; echo 'incomplete or failed write' >&2; exit $rc; }}",
            len = data.len(),
            dir = sh_quote(dir),
            dest = sh_quote(path),
        );
        let out = self.exec(&script, data, timeout).await?;
        self.check(&format!("upload to {path}"), out).map(drop)
    }

    /// Runs `script` with the privilege `needs` ([`privileged`]); sudo's refusals (a password
    /// wanted, no sudo) become [`RemoteErrorKind::Privilege`] naming the setting to fix.
    pub async fn exec_privileged(
        &self,
        needs: Needs,
        script: &str,
        input: &[u8],
        timeout: Duration,
    ) -> Result<ExecOutput, RemoteError> {
        let wrapped = privileged(self.host(), needs, script);
        let out = self.exec(&wrapped, input, timeout).await?;
        if matches!(self.host().privilege, Privilege::Sudo { .. })
            && let Some(detail) = sudo_refusal(&out)
        {
            return Err(self.error(RemoteErrorKind::Privilege {
                login: self
                    .host()
                    .ssh
                    .user
                    .clone()
                    .unwrap_or_else(|| "the login user".to_string()),
                detail,
            }));
        }
        Ok(out)
    }

    /// [`Self::exec_privileged`] requiring exit status 0; `what` names it in errors.
    pub async fn run_privileged(
        &self,
        needs: Needs,
        what: &str,
        script: &str,
        timeout: Duration,
    ) -> Result<ExecOutput, RemoteError> {
        let out = self.exec_privileged(needs, script, &[], timeout).await?;
        self.check(what, out)
    }

    /// Fails fast when the host's privileged steps cannot run (`become` with a sudo that wants
    /// a password, or no sudo). A no-op for hosts without `become`.
    pub async fn check_privilege(&self, timeout: Duration) -> Result<(), RemoteError> {
        if !matches!(self.host().privilege, Privilege::Sudo { .. }) {
            return Ok(());
        }
        self.run_privileged(Needs::Root, "checking sudo", "true", timeout)
            .await
            .map(drop)
    }

    /// Reads the file at `path` on the host; `Ok(None)` when it does not exist.
    pub async fn download(
        &self,
        path: &str,
        timeout: Duration,
    ) -> Result<Option<Vec<u8>>, RemoteError> {
        let q = sh_quote(path);
        let script = format!("if [ -e {q} ]; then cat {q}; else exit 66; fi");
        let out = self.exec(&script, &[], timeout).await?;
        if out.status == Some(66) {
            return Ok(None);
        }
        self.check(&format!("download of {path}"), out)
            .map(|o| Some(o.stdout))
    }
}

/// Opens a [`Remote`] to `host` with its configured connection.
pub async fn connect(
    host: &Host,
    options: &ConnectOptions,
) -> Result<Box<dyn Remote>, RemoteError> {
    match host.connection {
        Connection::Ssh => Ok(Box::new(ssh::SshRemote::connect(host, options).await?)),
        Connection::Local => Ok(Box::new(local::LocalRemote::new(host))),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sh_quote_survives_single_quotes() {
        assert_eq!(sh_quote("a'b"), r"'a'\''b'");
        assert_eq!(sh_quote("/opt/x y"), "'/opt/x y'");
    }

    fn sh_c(script: &str) -> (Option<i32>, String) {
        let out = std::process::Command::new("sh")
            .arg("-c")
            .arg(script)
            .output()
            .expect("sh runs");
        (
            out.status.code(),
            String::from_utf8_lossy(&out.stdout).into_owned(),
        )
    }

    #[test]
    fn privileged_scripts_use_sudo_only_with_become() {
        let mut host = Host::with_defaults("h", "192.0.2.1");
        assert_eq!(
            privileged(&host, Needs::Root, "tc qdisc show"),
            "tc qdisc show"
        );
        host.privilege = Privilege::Sudo { user: None };
        let root = privileged(&host, Needs::Root, "echo it's");
        assert_eq!(
            root,
            r#"if [ "$(id -u)" = 0 ]; then sh -c 'echo it'\''s'; else sudo -n -- sh -c 'echo it'\''s'; fi"#
        );
        host.privilege = Privilege::Sudo {
            user: Some("ops".into()),
        };
        let as_ops = privileged(&host, Needs::Root, "true");
        assert!(as_ops.starts_with("if false;"), "{as_ops}");
        assert!(
            as_ops.contains("sudo -n -u 'ops' -- sh -c 'true'"),
            "{as_ops}"
        );
        // Install dirs under $HOME need no sudo; others do (decided on the host).
        host.install_dir = "/home/ops/soak".into();
        let script = privileged(&host, Needs::InstallDir, "echo plain");
        let (code, out) = sh_c(&format!("HOME=/home/ops; {script}"));
        assert_eq!((code, out.as_str()), (Some(0), "plain\n"));
        let (code, _) = sh_c(&format!("HOME=/elsewhere; PATH=/nonexistent; {script}"));
        assert_eq!(
            code,
            Some(127),
            "outside $HOME it went through (missing) sudo"
        );
    }

    #[test]
    fn sudo_refusals_are_recognised() {
        let out = |code, stderr: &str| ExecOutput {
            status: Some(code),
            stdout: vec![],
            stderr: stderr.as_bytes().to_vec(),
        };
        assert!(sudo_refusal(&out(1, "sudo: a password is required\n")).is_some());
        assert!(sudo_refusal(&out(127, "sh: 1: sudo: not found\n")).is_some());
        assert!(sudo_refusal(&out(1, "RTNETLINK answers: File exists\n")).is_none());
        assert!(sudo_refusal(&out(0, "sudo: a password is required\n")).is_none());
        let err = RemoteError::new(
            "h2",
            RemoteErrorKind::Privilege {
                login: "deploy".into(),
                detail: "sudo: a password is required".into(),
            },
        )
        .to_string();
        assert!(
            err.starts_with("host `h2`: privileged steps need `sudo -n` as deploy")
                && err.contains("NOPASSWD")
                && err.contains("become = false"),
            "{err}"
        );
    }

    #[test]
    fn stderr_tail_keeps_the_end() {
        let out = ExecOutput {
            status: Some(1),
            stdout: vec![],
            stderr: format!("{}END\n", "x".repeat(1000)).into_bytes(),
        };
        let tail = out.stderr_tail();
        assert!(tail.ends_with("END"));
        assert_eq!(tail.len(), 400);
    }
}
