//! The lab's IO helpers: bounded external commands, `/proc` inspection, signals, files.
//!
//! Only std: processes are inspected through `/proc`, signalled with `kill(1)` by pid, and every
//! external command has a deadline.

use std::collections::BTreeSet;
use std::ffi::OsStr;
use std::fs;
use std::io::Write;
use std::os::unix::fs::{MetadataExt, OpenOptionsExt};
use std::path::{Path, PathBuf};
use std::process::{Command, Output, Stdio};
use std::sync::mpsc;
use std::thread;
use std::time::{Duration, Instant};

use super::LabError;

/// Deadline of one `ip`/`ssh-keygen` invocation.
pub const COMMAND_TIMEOUT: Duration = Duration::from_secs(15);

/// Where the tools the lab needs live.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Tools {
    /// `ip` (iproute2).
    pub ip: PathBuf,
    /// `sshd` (openssh-server), absolute: sshd re-executes itself and insists on it.
    pub sshd: Option<PathBuf>,
    /// `ssh-keygen` (openssh-client).
    pub ssh_keygen: Option<PathBuf>,
}

/// `name` found on `PATH` or in the usual sbin directories (root's PATH may lack them).
pub fn find_tool(name: &str) -> Option<PathBuf> {
    let path = std::env::var_os("PATH").unwrap_or_default();
    std::env::split_paths(&path)
        .chain(
            ["/usr/local/sbin", "/usr/sbin", "/sbin", "/usr/bin", "/bin"]
                .iter()
                .map(PathBuf::from),
        )
        .map(|dir| dir.join(name))
        .find(|candidate| is_executable(candidate))
}

fn is_executable(path: &Path) -> bool {
    fs::metadata(path)
        .map(|meta| meta.is_file() && meta.mode() & 0o111 != 0)
        .unwrap_or(false)
}

/// The effective uid of this process, from `/proc/self/status`.
pub fn effective_uid() -> Option<u32> {
    let status = fs::read_to_string("/proc/self/status").ok()?;
    let line = status.lines().find(|l| l.starts_with("Uid:"))?;
    // Uid: real effective saved fs
    line.split_whitespace().nth(2)?.parse().ok()
}

/// Runs `command` with a deadline, capturing its output; kills it (by its pid) when late.
pub fn run_bounded(command: &mut Command, timeout: Duration) -> Result<Output, LabError> {
    let describe = describe(command);
    let child = command
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .map_err(|source| LabError::Spawn {
            command: describe.clone(),
            source,
        })?;
    let pid = child.id();
    let (done_tx, done_rx) = mpsc::channel();
    thread::spawn(move || {
        let _ = done_tx.send(child.wait_with_output());
    });
    let output = match done_rx.recv_timeout(timeout) {
        Ok(output) => output,
        Err(_) => {
            // Our own child, still unreaped (the waiting thread holds it): its pid is its own.
            signal(pid, "KILL");
            let _ = done_rx.recv_timeout(Duration::from_secs(5));
            return Err(LabError::Timeout {
                command: describe,
                after: timeout,
            });
        }
    };
    output.map_err(|source| LabError::Spawn {
        command: describe,
        source,
    })
}

/// Runs `command` and fails unless it exits 0; returns its stdout.
pub fn run_checked(command: &mut Command) -> Result<String, LabError> {
    let describe = describe(command);
    let output = run_bounded(command, COMMAND_TIMEOUT)?;
    if !output.status.success() {
        return Err(LabError::Command {
            command: describe,
            status: output.status.to_string(),
            stderr: String::from_utf8_lossy(&output.stderr).trim().to_owned(),
        });
    }
    Ok(String::from_utf8_lossy(&output.stdout).into_owned())
}

/// Runs `command`; true when it exits 0 (a probe: failure is an answer, not an error).
pub fn probe(command: &mut Command) -> Result<bool, LabError> {
    Ok(run_bounded(command, COMMAND_TIMEOUT)?.status.success())
}

/// `program arg arg…`, for messages.
pub fn describe(command: &Command) -> String {
    let mut text = command.get_program().to_string_lossy().into_owned();
    for arg in command.get_args() {
        text.push(' ');
        text.push_str(&arg.to_string_lossy());
    }
    text
}

/// `ip …`.
pub fn ip<I, S>(tools: &Tools, args: I) -> Command
where
    I: IntoIterator<Item = S>,
    S: AsRef<OsStr>,
{
    let mut command = Command::new(&tools.ip);
    command.args(args);
    command
}

/// `ip -n NS …` (runs in namespace NS).
pub fn ip_in<I, S>(tools: &Tools, namespace: &str, args: I) -> Command
where
    I: IntoIterator<Item = S>,
    S: AsRef<OsStr>,
{
    let mut command = Command::new(&tools.ip);
    command.arg("-n").arg(namespace).args(args);
    command
}

/// Every named network namespace (`ip netns list`).
pub fn list_namespaces(tools: &Tools) -> Result<BTreeSet<String>, LabError> {
    let out = run_checked(&mut ip(tools, ["netns", "list"]))?;
    Ok(out
        .lines()
        .filter_map(|line| line.split_whitespace().next())
        .map(str::to_owned)
        .collect())
}

/// The pids whose network namespace is NS (`ip netns pids`).
pub fn namespace_pids(tools: &Tools, namespace: &str) -> Result<BTreeSet<u32>, LabError> {
    let out = run_checked(&mut ip(tools, ["netns", "pids", namespace]))?;
    Ok(out
        .split_whitespace()
        .filter_map(|pid| pid.parse().ok())
        .collect())
}

/// True when `pid` exists and is not a zombie.
pub fn pid_alive(pid: u32) -> bool {
    let Ok(stat) = fs::read_to_string(format!("/proc/{pid}/stat")) else {
        return false;
    };
    // `pid (comm) S …`: the state follows the last ')' (comm may contain anything).
    let state = stat
        .rsplit_once(')')
        .and_then(|(_, rest)| rest.split_whitespace().next());
    !matches!(state, None | Some("Z") | Some("X"))
}

/// `/proc/PID/comm`.
pub fn process_name(pid: u32) -> Option<String> {
    fs::read_to_string(format!("/proc/{pid}/comm"))
        .ok()
        .map(|s| s.trim_end().to_owned())
}

/// `/proc/PID/cmdline`, NULs as spaces.
pub fn process_cmdline(pid: u32) -> Option<String> {
    fs::read(format!("/proc/{pid}/cmdline"))
        .ok()
        .map(|bytes| String::from_utf8_lossy(&bytes).replace('\0', " "))
}

/// The parent of `pid`.
pub fn parent_pid(pid: u32) -> Option<u32> {
    let stat = fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
    let (_, rest) = stat.rsplit_once(')')?;
    rest.split_whitespace().nth(1)?.parse().ok()
}

/// This process and its ancestors: never signalled (e.g. `soak lab down` run from inside
/// `soak lab exec` must not kill itself or the `ip netns exec` above it).
pub fn self_and_ancestors() -> BTreeSet<u32> {
    let mut pids = BTreeSet::new();
    let mut pid = std::process::id();
    while pid > 1 && pids.insert(pid) {
        match parent_pid(pid) {
            Some(parent) => pid = parent,
            None => break,
        }
    }
    pids
}

/// True when `pid` lives in the named network namespace NS.
pub fn pid_in_namespace(pid: u32, namespace: &str) -> bool {
    let ns = fs::metadata(format!("/run/netns/{namespace}"));
    let proc_ns = fs::metadata(format!("/proc/{pid}/ns/net"));
    match (ns, proc_ns) {
        (Ok(a), Ok(b)) => a.dev() == b.dev() && a.ino() == b.ino(),
        _ => false,
    }
}

/// Whether `pid` lives in network namespace NS; `None` when that cannot be told (the
/// process's namespace link is not readable by this user, e.g. a root sshd read without root).
pub fn pid_namespace_check(pid: u32, namespace: &str) -> Option<bool> {
    match fs::metadata(format!("/proc/{pid}/ns/net")) {
        Err(err) if err.kind() == std::io::ErrorKind::PermissionDenied => None,
        Err(_) => Some(false),
        Ok(proc_ns) => Some(
            fs::metadata(format!("/run/netns/{namespace}"))
                .is_ok_and(|ns| ns.dev() == proc_ns.dev() && ns.ino() == proc_ns.ino()),
        ),
    }
}

/// Sends SIGNAL (a name: TERM, KILL) to `pid` through `kill(1)`. Failure (already gone) is
/// not an error: callers check liveness afterwards.
pub fn signal(pid: u32, signal: &str) {
    let kill = find_tool("kill").unwrap_or_else(|| PathBuf::from("kill"));
    let _ = Command::new(kill)
        .arg("-s")
        .arg(signal)
        .arg(pid.to_string())
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .status();
}

/// Waits until none of `pids` is alive or `timeout` passes; returns the survivors.
pub fn wait_gone(pids: &BTreeSet<u32>, timeout: Duration) -> BTreeSet<u32> {
    let deadline = Instant::now() + timeout;
    loop {
        let alive: BTreeSet<u32> = pids.iter().copied().filter(|&p| pid_alive(p)).collect();
        if alive.is_empty() || Instant::now() >= deadline {
            return alive;
        }
        thread::sleep(Duration::from_millis(25));
    }
}

/// TERM, then KILL after a grace period; returns pids still alive after both.
pub fn terminate(pids: &BTreeSet<u32>) -> BTreeSet<u32> {
    for &pid in pids {
        signal(pid, "TERM");
    }
    let left = wait_gone(pids, Duration::from_secs(3));
    for &pid in &left {
        signal(pid, "KILL");
    }
    wait_gone(&left, Duration::from_secs(2))
}

/// Writes `contents` to `path` atomically (temp file + rename) with `mode`.
pub fn write_file(path: &Path, contents: &str, mode: u32) -> Result<(), LabError> {
    let tmp = path.with_extension("tmp-soak");
    let result = (|| {
        let _ = fs::remove_file(&tmp);
        let mut file = fs::OpenOptions::new()
            .write(true)
            .create_new(true)
            .mode(mode)
            .open(&tmp)?;
        file.write_all(contents.as_bytes())?;
        file.sync_all()?;
        fs::rename(&tmp, path)
    })();
    result.map_err(|source| LabError::io(format!("write {}", path.display()), source))
}

/// Writes `value` to the (namespaced) `/proc/sys` file `path` inside namespace `ns`.
pub fn write_proc_in(tools: &Tools, ns: &str, path: &str, value: &str) -> Result<(), LabError> {
    run_checked(ip(tools, ["netns", "exec", ns, "sh", "-c"]).arg(format!("echo {value} > {path}")))
        .map(drop)
}

/// Creates `dir` and its parents.
pub fn create_dir(dir: &Path) -> Result<(), LabError> {
    fs::create_dir_all(dir)
        .map_err(|source| LabError::io(format!("create {}", dir.display()), source))
}

/// The last `lines` lines of a (log) file, for error messages.
pub fn tail(path: &Path, lines: usize) -> String {
    let text = fs::read_to_string(path).unwrap_or_default();
    let all: Vec<&str> = text.lines().collect();
    all[all.len().saturating_sub(lines)..].join("\n")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_late_command_is_killed_at_its_deadline() {
        let started = Instant::now();
        let err =
            run_bounded(Command::new("sleep").arg("30"), Duration::from_millis(200)).unwrap_err();
        assert!(matches!(err, LabError::Timeout { .. }), "{err}");
        assert!(started.elapsed() < Duration::from_secs(10));
    }

    #[test]
    fn a_failing_command_reports_its_stderr() {
        let err =
            run_checked(Command::new("sh").args(["-c", "echo nope >&2; exit 3"])).unwrap_err();
        let text = err.to_string();
        assert!(text.contains("nope") && text.contains('3'), "{text}");
    }

    #[test]
    fn liveness_and_ancestry_come_from_proc() {
        let me = std::process::id();
        assert!(pid_alive(me));
        assert!(self_and_ancestors().contains(&me));
        assert!(process_cmdline(me).is_some());
        let mut child = Command::new("sleep").arg("30").spawn().unwrap();
        let pid = child.id();
        assert!(pid_alive(pid));
        assert_eq!(process_name(pid).as_deref(), Some("sleep"));
        assert_eq!(parent_pid(pid), Some(me));
        let left = terminate(&BTreeSet::from([pid]));
        // Still our unreaped child: a zombie counts as gone.
        assert!(left.is_empty());
        child.wait().unwrap();
        assert!(!pid_alive(pid));
    }

    #[test]
    fn files_are_written_whole_with_their_mode() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("key");
        write_file(&path, "secret", 0o600).unwrap();
        write_file(&path, "secret2", 0o600).unwrap();
        assert_eq!(fs::read_to_string(&path).unwrap(), "secret2");
        assert_eq!(fs::metadata(&path).unwrap().mode() & 0o777, 0o600);
        assert_eq!(tail(&path, 5), "secret2");
    }
}
