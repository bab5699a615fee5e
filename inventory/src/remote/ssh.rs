//! The SSH backend: one multiplexed OpenSSH master connection per host (openssh crate,
//! native mux), strict host-key checking against the inventory's known_hosts by default,
//! `BatchMode=yes` (never a password prompt), a connect timeout, and a short control-socket
//! directory under `/tmp`.

use std::net::{Ipv4Addr, SocketAddr, TcpListener};
use std::path::Path;
use std::sync::Mutex;
use std::time::Duration;

use futures::future::BoxFuture;
use openssh::{ForwardType, KnownHosts, Session, SessionBuilder, Socket, Stdio};
use tokio::io::AsyncWriteExt;

use super::{ConnectOptions, ExecOutput, Remote, RemoteError, RemoteErrorKind};
use crate::model::{Host, HostKeyChecking};

/// A [`Remote`] over an OpenSSH master connection.
pub struct SshRemote {
    host: Host,
    session: Session,
    /// Local ports forwarded so far, closed with the session.
    forwards: Mutex<Vec<(u16, u16)>>,
    /// Holds the control directory; removed on drop (after the session closed).
    _control_dir: tempfile::TempDir,
}

/// `user@address:port` for messages.
pub fn target(host: &Host) -> String {
    let user = host
        .ssh
        .user
        .as_deref()
        .map(|u| format!("{u}@"))
        .unwrap_or_default();
    format!(
        "{user}{}",
        crate::model::join_host_port(&host.address, host.ssh.port)
    )
}

fn known_hosts_label(host: &Host) -> String {
    host.ssh.known_hosts.as_deref().map_or_else(
        || "the default known_hosts".to_string(),
        |p| p.display().to_string(),
    )
}

/// Turns what ssh printed when the connection failed into a precise error.
pub(crate) fn classify_connect_error(host: &Host, message: &str) -> RemoteErrorKind {
    let target = target(host);
    if message.contains("REMOTE HOST IDENTIFICATION HAS CHANGED")
        || message.contains("has changed and you have requested strict checking")
    {
        return RemoteErrorKind::HostKeyChanged {
            target,
            known_hosts: known_hosts_label(host),
        };
    }
    if message.contains("Host key verification failed")
        || message.contains("No ") && message.contains("host key is known")
    {
        return RemoteErrorKind::HostKeyUnknown {
            target,
            known_hosts: known_hosts_label(host),
        };
    }
    let last = message
        .lines()
        .map(str::trim)
        .rfind(|l| !l.is_empty())
        .unwrap_or("ssh gave no reason")
        .to_string();
    if message.contains("Permission denied (") {
        return RemoteErrorKind::Auth {
            target,
            detail: last,
        };
    }
    RemoteErrorKind::Connect {
        target,
        detail: last,
    }
}

fn error_text(err: &openssh::Error) -> String {
    use std::error::Error as _;
    let mut text = err.to_string();
    let mut source = err.source();
    while let Some(s) = source {
        text.push_str(": ");
        text.push_str(&s.to_string());
        source = s.source();
    }
    text
}

impl SshRemote {
    /// Connects to `host`, bounded by `options.connect_timeout` (applied by ssh to TCP connect
    /// and handshake, and by us to the whole login).
    pub async fn connect(host: &Host, options: &ConnectOptions) -> Result<SshRemote, RemoteError> {
        let fail = |kind| RemoteError::new(&host.name, kind);
        if let Some(key) = &host.ssh.key {
            check_readable(key).map_err(|detail| {
                fail(RemoteErrorKind::Connect {
                    target: target(host),
                    detail: format!("ssh key {}: {detail}", key.display()),
                })
            })?;
        }
        if let (Some(kh), HostKeyChecking::Strict) =
            (&host.ssh.known_hosts, host.ssh.host_key_checking)
        {
            check_readable(kh).map_err(|detail| {
                fail(RemoteErrorKind::Connect {
                    target: target(host),
                    detail: format!("known_hosts {}: {detail}", kh.display()),
                })
            })?;
        }
        let control_dir = tempfile::Builder::new()
            .prefix("soak-")
            .tempdir_in(&options.control_parent)
            .map_err(|e| {
                fail(RemoteErrorKind::Io {
                    what: format!(
                        "cannot create a control directory in {}",
                        options.control_parent.display()
                    ),
                    detail: e.to_string(),
                })
            })?;
        let mut builder = SessionBuilder::default();
        builder
            .port(host.ssh.port)
            .control_directory(control_dir.path())
            .connect_timeout(options.connect_timeout)
            .server_alive_interval(Duration::from_secs(15));
        if let Some(user) = &host.ssh.user {
            builder.user(user.clone());
        }
        if let Some(key) = &host.ssh.key {
            builder.keyfile(key);
        }
        // Without a config file ssh reads the user's ~/.ssh/config (jump hosts' own settings
        // come from there, as with `ssh -J`).
        if let Some(config) = &host.ssh.config_file {
            builder.config_file(config);
        }
        if let Some(jump) = &host.ssh.proxy_jump {
            builder.jump_hosts(jump.split(',').map(str::trim).filter(|j| !j.is_empty()));
        }
        match host.ssh.host_key_checking {
            HostKeyChecking::Strict => {
                builder.known_hosts_check(KnownHosts::Strict);
            }
            HostKeyChecking::AcceptNew => {
                builder.known_hosts_check(KnownHosts::Add);
            }
            HostKeyChecking::Off => {
                // With `no` and a mismatching known key ssh would still connect but silently
                // disable port forwarding; an empty known_hosts avoids both.
                builder
                    .known_hosts_check(KnownHosts::Accept)
                    .user_known_hosts_file("/dev/null");
            }
        }
        if host.ssh.host_key_checking != HostKeyChecking::Off
            && let Some(kh) = &host.ssh.known_hosts
        {
            builder.user_known_hosts_file(kh);
        }
        // ssh applies ConnectTimeout to the TCP connect and to the handshake; the outer limit
        // also covers authentication and a stuck ssh process.
        let limit = options.connect_timeout * 2 + Duration::from_secs(5);
        let session = match tokio::time::timeout(limit, builder.connect_mux(&host.address)).await {
            Err(_) => {
                return Err(fail(RemoteErrorKind::Timeout {
                    what: format!("ssh connection to {}", target(host)),
                    after: limit,
                }));
            }
            Ok(Err(e)) => return Err(fail(classify_connect_error(host, &error_text(&e)))),
            Ok(Ok(session)) => session,
        };
        Ok(SshRemote {
            host: host.clone(),
            session,
            forwards: Mutex::new(Vec::new()),
            _control_dir: control_dir,
        })
    }

    fn err(&self, kind: RemoteErrorKind) -> RemoteError {
        RemoteError::new(&self.host.name, kind)
    }

    async fn run(
        &self,
        script: &str,
        input: &[u8],
        timeout: Duration,
    ) -> Result<ExecOutput, RemoteError> {
        let io = |what: &str, e: openssh::Error| {
            self.err(RemoteErrorKind::Io {
                what: what.to_string(),
                detail: error_text(&e),
            })
        };
        let work = async {
            let mut cmd = self.session.command("sh");
            cmd.arg("-c")
                .arg(script)
                .stdin(if input.is_empty() {
                    Stdio::null()
                } else {
                    Stdio::piped()
                })
                .stdout(Stdio::piped())
                .stderr(Stdio::piped());
            let mut child = cmd
                .spawn()
                .await
                .map_err(|e| io("cannot start a remote command", e))?;
            let stdin = child.stdin().take();
            let feed = async move {
                if let Some(mut stdin) = stdin {
                    // A command that exits early closes the pipe; its exit status tells.
                    let _ = stdin.write_all(input).await;
                    let _ = stdin.shutdown().await;
                }
            };
            let ((), output) = tokio::join!(feed, child.wait_with_output());
            output.map_err(|e| io("remote command", e))
        };
        match tokio::time::timeout(timeout, work).await {
            Err(_) => Err(self.err(RemoteErrorKind::Timeout {
                what: "remote command".to_string(),
                after: timeout,
            })),
            Ok(Err(e)) => Err(e),
            Ok(Ok(out)) => Ok(ExecOutput {
                status: out.status.code(),
                stdout: out.stdout,
                stderr: out.stderr,
            }),
        }
    }

    async fn open_forward(&self, remote_port: u16) -> Result<SocketAddr, RemoteError> {
        let mut last = String::new();
        // Picking a free port and then asking ssh to listen on it races with other processes;
        // a few attempts make that harmless.
        for _ in 0..5 {
            let port = TcpListener::bind((Ipv4Addr::LOCALHOST, 0))
                .and_then(|l| l.local_addr())
                .map(|a| a.port())
                .map_err(|e| {
                    self.err(RemoteErrorKind::Io {
                        what: "cannot find a free local port".to_string(),
                        detail: e.to_string(),
                    })
                })?;
            let listen = SocketAddr::from((Ipv4Addr::LOCALHOST, port));
            let fut = self.session.request_port_forward(
                ForwardType::Local,
                listen,
                Socket::new("127.0.0.1", remote_port),
            );
            match tokio::time::timeout(Duration::from_secs(10), fut).await {
                Ok(Ok(())) => {
                    if let Ok(mut f) = self.forwards.lock() {
                        f.push((port, remote_port));
                    }
                    return Ok(listen);
                }
                Ok(Err(e)) => last = error_text(&e),
                Err(_) => last = "ssh did not answer the forward request in 10s".to_string(),
            }
        }
        Err(self.err(RemoteErrorKind::Io {
            what: format!("cannot forward a local port to 127.0.0.1:{remote_port} on the host"),
            detail: last,
        }))
    }
}

fn check_readable(path: &Path) -> Result<(), String> {
    std::fs::File::open(path)
        .map(drop)
        .map_err(|e| e.to_string())
}

impl Remote for SshRemote {
    fn host(&self) -> &Host {
        &self.host
    }

    fn exec<'a>(
        &'a self,
        script: &'a str,
        input: &'a [u8],
        timeout: Duration,
    ) -> BoxFuture<'a, Result<ExecOutput, RemoteError>> {
        Box::pin(self.run(script, input, timeout))
    }

    fn forward(&self, remote_port: u16) -> BoxFuture<'_, Result<SocketAddr, RemoteError>> {
        Box::pin(self.open_forward(remote_port))
    }

    fn close(self: Box<Self>) -> BoxFuture<'static, Result<(), RemoteError>> {
        Box::pin(async move {
            let SshRemote {
                host,
                session,
                forwards,
                _control_dir,
            } = *self;
            // The master only stops listening for new clients and exits once its channels are
            // gone (an HTTP keep-alive through a forward can hold it); close the forwards'
            // listeners explicitly so the local ports are released now.
            let forwards = forwards
                .into_inner()
                .unwrap_or_else(|poisoned| poisoned.into_inner());
            for (local, remote_port) in forwards {
                let _ = session
                    .close_port_forward(
                        ForwardType::Local,
                        SocketAddr::from((Ipv4Addr::LOCALHOST, local)),
                        Socket::new("127.0.0.1", remote_port),
                    )
                    .await;
            }
            let result = session.close().await.map_err(|e| {
                RemoteError::new(
                    &host.name,
                    RemoteErrorKind::Io {
                        what: "closing the ssh connection".to_string(),
                        detail: error_text(&e),
                    },
                )
            });
            drop(_control_dir);
            result
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn host() -> Host {
        let mut h = Host::with_defaults("h1", "192.0.2.1");
        h.ssh.user = Some("root".into());
        h.ssh.port = 2222;
        h.ssh.known_hosts = Some("/lab/known_hosts".into());
        h
    }

    #[test]
    fn changed_host_key_is_recognised() {
        let msg = "@@@@@@@@@@@\n@    WARNING: REMOTE HOST IDENTIFICATION HAS CHANGED!     @\n...\nHost key verification failed.";
        let text = RemoteError::new("h1", classify_connect_error(&host(), msg)).to_string();
        assert!(
            text.starts_with("host `h1`: refusing to connect to root@192.0.2.1:2222"),
            "{text}"
        );
        assert!(
            text.contains("CHANGED") && text.contains("/lab/known_hosts"),
            "{text}"
        );
    }

    #[test]
    fn unknown_key_auth_and_refused_are_distinct() {
        let unknown = classify_connect_error(
            &host(),
            "No ED25519 host key is known for [192.0.2.1]:2222 and you have requested strict checking.\r\nHost key verification failed.",
        );
        assert!(matches!(unknown, RemoteErrorKind::HostKeyUnknown { .. }));
        let auth =
            classify_connect_error(&host(), "root@192.0.2.1: Permission denied (publickey).");
        assert!(matches!(auth, RemoteErrorKind::Auth { .. }));
        let refused = classify_connect_error(
            &host(),
            "ssh: connect to host 192.0.2.1 port 2222: Connection refused",
        );
        assert!(
            matches!(&refused, RemoteErrorKind::Connect { detail, .. } if detail.contains("Connection refused"))
        );
    }
}
