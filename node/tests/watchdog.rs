//! `--exit-with-parent PID` / `SOAK_NODE_EXIT_WITH_PARENT`: the real `soak-node` watching a
//! real process. The node must keep running while the process lives, and shut down cleanly
//! (exit 0, `node.json` removed) within a few seconds once it is gone — whether the process is
//! reaped, still a zombie, or the node's own parent killed with SIGKILL.

use std::path::{Path, PathBuf};
use std::process::{Child, Command, ExitStatus, Stdio};
use std::time::{Duration, Instant};

/// How long a node may take to notice (the watchdog checks every 250 ms; shutdown is quick).
const EXIT_DEADLINE: Duration = Duration::from_secs(5);

fn bin() -> PathBuf {
    PathBuf::from(env!("CARGO_BIN_EXE_soak-node"))
}

/// Whether `pid` is a live (non-zombie) process.
fn alive(pid: u32) -> bool {
    match std::fs::read_to_string(format!("/proc/{pid}/stat")) {
        Ok(stat) => !stat
            .rsplit_once(')')
            .is_some_and(|(_, rest)| rest.trim_start().starts_with('Z')),
        Err(_) => false,
    }
}

/// SIGKILLs `pid` if it still runs (cleanup of processes this test started but does not own
/// as children).
fn kill_pid(pid: u32) {
    if alive(pid) {
        let _ = Command::new("kill").arg("-9").arg(pid.to_string()).status();
    }
}

/// A stand-in "parent": a real process the test controls.
fn sleeper() -> Child {
    Command::new("sleep")
        .arg("30")
        .stdin(Stdio::null())
        .spawn()
        .expect("spawn sleep")
}

fn node_command(dir: &Path) -> Command {
    std::fs::create_dir_all(dir).expect("data dir");
    let log = std::fs::File::create(dir.join("node.log")).expect("node.log");
    let mut command = Command::new(bin());
    command
        .arg("run")
        .arg("--data-dir")
        .arg(dir)
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(log);
    command
}

/// Polls for `node.json` naming a pid; returns that pid.
fn wait_node_json(dir: &Path, exited: &mut dyn FnMut() -> Option<ExitStatus>) -> u32 {
    let deadline = Instant::now() + Duration::from_secs(15);
    loop {
        if let Ok(text) = std::fs::read_to_string(dir.join(soak_api::NODE_INFO_FILE))
            && let Ok(info) = serde_json::from_str::<soak_api::NodeInfo>(&text)
        {
            return info.pid;
        }
        if let Some(status) = exited() {
            panic!("soak-node exited early ({status}): {}", log(dir));
        }
        assert!(
            Instant::now() < deadline,
            "no node.json within 15 s: {}",
            log(dir)
        );
        std::thread::sleep(Duration::from_millis(20));
    }
}

fn log(dir: &Path) -> String {
    std::fs::read_to_string(dir.join("node.log")).unwrap_or_default()
}

/// Waits (bounded) for the node child to exit.
fn wait_exit(node: &mut Child, within: Duration) -> Option<ExitStatus> {
    let deadline = Instant::now() + within;
    loop {
        if let Ok(Some(status)) = node.try_wait() {
            return Some(status);
        }
        if Instant::now() >= deadline {
            return None;
        }
        std::thread::sleep(Duration::from_millis(25));
    }
}

/// Kills and reaps the child on drop, whatever happened.
struct Reap(Child);

impl Drop for Reap {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

fn assert_clean_exit(status: Option<ExitStatus>, dir: &Path, reason: &str) {
    let status = status.unwrap_or_else(|| {
        panic!(
            "the node still runs {EXIT_DEADLINE:?} after its watched process died: {}",
            log(dir)
        )
    });
    assert!(
        status.success(),
        "clean shutdown exits 0, got {status}: {}",
        log(dir)
    );
    assert!(
        !dir.join(soak_api::NODE_INFO_FILE).exists(),
        "a clean shutdown removes node.json"
    );
    let text = log(dir);
    assert!(
        text.contains(reason) && text.contains("(--exit-with-parent)"),
        "log names why ({reason}): {text}"
    );
}

#[test]
fn node_outlives_nothing_it_watches_even_while_it_is_a_zombie() {
    let dir = tempfile::tempdir().expect("tempdir");
    let mut parent = Reap(sleeper());
    let parent_pid = parent.0.id();
    let mut node = Reap(
        node_command(dir.path())
            .arg("--exit-with-parent")
            .arg(parent_pid.to_string())
            .spawn()
            .expect("spawn soak-node"),
    );
    let node_pid = wait_node_json(dir.path(), &mut || node.0.try_wait().ok().flatten());
    assert_eq!(node_pid, node.0.id());
    // Alive while the watched process lives: several watchdog periods pass without an exit.
    assert_eq!(
        wait_exit(&mut node.0, Duration::from_millis(800)),
        None,
        "the node must not exit while its watched process lives: {}",
        log(dir.path())
    );
    // SIGKILL the watched process but do not reap it: it stays a zombie, which `kill(pid, 0)`
    // would still report as existing.
    parent.0.kill().expect("kill the watched process");
    let status = wait_exit(&mut node.0, EXIT_DEADLINE);
    assert_clean_exit(status, dir.path(), "has exited (state Z)");
    let _ = parent.0.wait();
}

#[test]
fn env_variable_works_and_a_reaped_process_counts_as_gone() {
    let dir = tempfile::tempdir().expect("tempdir");
    let mut parent = Reap(sleeper());
    let mut node = Reap(
        node_command(dir.path())
            .env("SOAK_NODE_EXIT_WITH_PARENT", parent.0.id().to_string())
            .spawn()
            .expect("spawn soak-node"),
    );
    wait_node_json(dir.path(), &mut || node.0.try_wait().ok().flatten());
    assert!(
        log(dir.path()).contains("(--exit-with-parent)"),
        "the node announces what it watches: {}",
        log(dir.path())
    );
    parent.0.kill().expect("kill");
    parent.0.wait().expect("reap");
    let status = wait_exit(&mut node.0, EXIT_DEADLINE);
    assert_clean_exit(status, dir.path(), "no longer exists");
}

/// The real shape: the node is a child of a shell that names itself (`$$`) and is then
/// SIGKILLed. The node is re-parented (getppid changes) and the shell is a zombie until the
/// test reaps it; either way the node must go.
#[test]
fn node_exits_when_its_sigkilled_parent_cannot_stop_it() {
    let dir = tempfile::tempdir().expect("tempdir");
    std::fs::create_dir_all(dir.path()).expect("dir");
    let mut shell = Reap(
        Command::new("sh")
            .arg("-c")
            .arg(r#""$0" run --data-dir "$1" --exit-with-parent $$ 2>"$1/node.log" & wait"#)
            .arg(bin())
            .arg(dir.path())
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .spawn()
            .expect("spawn sh"),
    );
    let node_pid = wait_node_json(dir.path(), &mut || shell.0.try_wait().ok().flatten());
    struct KillPid(u32);
    impl Drop for KillPid {
        fn drop(&mut self) {
            kill_pid(self.0);
        }
    }
    let _cleanup = KillPid(node_pid);
    assert!(alive(node_pid));
    shell.0.kill().expect("SIGKILL the parent");
    let deadline = Instant::now() + EXIT_DEADLINE;
    while alive(node_pid) && Instant::now() < deadline {
        std::thread::sleep(Duration::from_millis(25));
    }
    assert!(
        !alive(node_pid),
        "node {node_pid} outlived its SIGKILLed parent by {EXIT_DEADLINE:?}: {}",
        log(dir.path())
    );
    // Not our child, so no exit status: the clean-shutdown evidence is the log and node.json.
    assert!(
        !dir.path().join(soak_api::NODE_INFO_FILE).exists(),
        "a clean shutdown removes node.json: {}",
        log(dir.path())
    );
    assert!(
        log(dir.path()).contains("shutting down"),
        "{}",
        log(dir.path())
    );
    let _ = shell.0.wait();
}

#[test]
fn a_watched_process_that_does_not_exist_is_a_usage_error() {
    let dir = tempfile::tempdir().expect("tempdir");
    // Reap a process to get a pid that certainly names no running process right now.
    let mut gone = sleeper();
    let pid = gone.id();
    gone.kill().expect("kill");
    gone.wait().expect("reap");
    let out = node_command(dir.path())
        .arg("--exit-with-parent")
        .arg(pid.to_string())
        .stderr(Stdio::piped())
        .output()
        .expect("run soak-node");
    assert_eq!(out.status.code(), Some(2), "{out:?}");
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        stderr.contains(&format!("--exit-with-parent {pid}: no such process")),
        "{stderr}"
    );
    assert!(!dir.path().join(soak_api::NODE_INFO_FILE).exists());
}
