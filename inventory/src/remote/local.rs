//! The local backend: the "host" is this machine. Commands run with `sh -c` as child
//! processes (killed when their timeout passes); a port-forward to `127.0.0.1:port` is that
//! address itself.

use std::net::{Ipv4Addr, SocketAddr};
use std::process::Stdio;
use std::time::Duration;

use futures::future::BoxFuture;
use tokio::io::AsyncWriteExt;

use super::{ExecOutput, Remote, RemoteError, RemoteErrorKind};
use crate::model::Host;

/// A [`Remote`] that runs everything on this machine.
#[derive(Debug, Clone)]
pub struct LocalRemote {
    host: Host,
}

impl LocalRemote {
    /// A local remote for `host` (its address should be a local one).
    pub fn new(host: &Host) -> Self {
        LocalRemote { host: host.clone() }
    }

    async fn run(
        &self,
        script: &str,
        input: &[u8],
        timeout: Duration,
    ) -> Result<ExecOutput, RemoteError> {
        let io_err = |what: &str, e: std::io::Error| {
            RemoteError::new(
                &self.host.name,
                RemoteErrorKind::Io {
                    what: what.to_string(),
                    detail: e.to_string(),
                },
            )
        };
        let mut child = tokio::process::Command::new("sh")
            .arg("-c")
            .arg(script)
            .stdin(if input.is_empty() {
                Stdio::null()
            } else {
                Stdio::piped()
            })
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .kill_on_drop(true)
            .spawn()
            .map_err(|e| io_err("cannot start sh", e))?;
        let stdin = child.stdin.take();
        let feed = async move {
            if let Some(mut stdin) = stdin {
                // A command that exits without reading its input closes the pipe: not an error
                // here; its exit status tells.
                let _ = stdin.write_all(input).await;
                let _ = stdin.shutdown().await;
            }
        };
        let work = async {
            let ((), output) = tokio::join!(feed, child.wait_with_output());
            output
        };
        match tokio::time::timeout(timeout, work).await {
            Err(_) => Err(RemoteError::new(
                &self.host.name,
                RemoteErrorKind::Timeout {
                    what: "local command".to_string(),
                    after: timeout,
                },
            )),
            Ok(Err(e)) => Err(io_err("local command", e)),
            Ok(Ok(out)) => Ok(ExecOutput {
                status: out.status.code(),
                stdout: out.stdout,
                stderr: out.stderr,
            }),
        }
    }
}

impl Remote for LocalRemote {
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
        Box::pin(async move { Ok(SocketAddr::from((Ipv4Addr::LOCALHOST, remote_port))) })
    }

    fn close(self: Box<Self>) -> BoxFuture<'static, Result<(), RemoteError>> {
        Box::pin(async { Ok(()) })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn remote() -> Box<dyn Remote> {
        Box::new(LocalRemote::new(&Host::with_defaults("me", "127.0.0.1")))
    }

    #[tokio::test]
    async fn exec_captures_status_and_output() {
        let r = remote();
        let out = r
            .exec(
                "echo out; echo err >&2; exit 3",
                &[],
                Duration::from_secs(5),
            )
            .await
            .expect("runs");
        assert_eq!(out.status, Some(3));
        assert_eq!(out.stdout_text(), "out\n");
        assert_eq!(out.stderr_tail(), "err");
        let err = r
            .run("failing step", "exit 4", Duration::from_secs(5))
            .await
            .err()
            .map(|e| e.to_string())
            .unwrap_or_default();
        assert!(
            err.contains("host `me`") && err.contains("failing step") && err.contains("exit 4"),
            "{err}"
        );
    }

    #[tokio::test]
    async fn exec_times_out_and_kills() {
        let r = remote();
        let started = std::time::Instant::now();
        let err = r
            .exec("sleep 30", &[], Duration::from_millis(200))
            .await
            .err()
            .map(|e| e.to_string())
            .unwrap_or_default();
        assert!(err.contains("timed out after 200ms"), "{err}");
        assert!(started.elapsed() < Duration::from_secs(10));
    }

    #[tokio::test]
    async fn upload_is_atomic_with_mode_and_download_reads_back() {
        use std::os::unix::fs::PermissionsExt;
        let dir = tempfile::tempdir().expect("tempdir");
        let path = dir.path().join("sub dir/it's.bin");
        let path_s = path.to_string_lossy().to_string();
        let r = remote();
        let data: Vec<u8> = (0..200_000u32).map(|i| (i % 251) as u8).collect();
        r.upload(&data, &path_s, 0o600, Duration::from_secs(10))
            .await
            .expect("upload");
        let mode = std::fs::metadata(&path)
            .expect("exists")
            .permissions()
            .mode()
            & 0o777;
        assert_eq!(mode, 0o600);
        let back = r
            .download(&path_s, Duration::from_secs(10))
            .await
            .expect("download");
        assert_eq!(back.as_deref(), Some(&data[..]));
        let leftovers: Vec<_> = std::fs::read_dir(path.parent().expect("parent"))
            .expect("dir")
            .collect();
        assert_eq!(leftovers.len(), 1, "no temp file left behind");
        let missing = r
            .download(&format!("{path_s}.nope"), Duration::from_secs(5))
            .await
            .expect("download");
        assert_eq!(missing, None);
    }
}
