//! `soak-node guard`, for real: the real binary arms a detached watcher (setsid) that reverts
//! touch-style faults when its lease runs out, holds while renewed, stands down when disarmed,
//! is swept (live or orphaned) before a run, and never touches another token's fault. No root.
//!
//! Every watcher started here has a lease of a few seconds at most, so even a failing test leaves
//! nothing running for long; the tests end every watcher they start (disarm, expiry or sweep)
//! and check it is gone.

use std::fs;
use std::io::Write;
use std::path::{Path, PathBuf};
use std::process::{Command, Output, Stdio};
use std::thread::sleep;
use std::time::{Duration, Instant};

use serde_json::{Value, json};

fn node() -> PathBuf {
    PathBuf::from(env!("CARGO_BIN_EXE_soak-node"))
}

/// `soak-node guard ARGS` with `input` on stdin.
fn guard(args: &[&str], input: &str) -> Output {
    let mut child = Command::new(node())
        .arg("guard")
        .args(args)
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("soak-node runs");
    if let Some(mut stdin) = child.stdin.take() {
        let _ = stdin.write_all(input.as_bytes());
    }
    child.wait_with_output().expect("soak-node finishes")
}

fn json_of(out: &Output) -> Value {
    serde_json::from_slice(&out.stdout).unwrap_or_else(|e| {
        panic!(
            "no JSON ({e}): stdout {:?} stderr {:?}",
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        )
    })
}

fn journal(token: &str, object: &Path) -> String {
    let q = object.display();
    json!({
        "format": 1,
        "token": token,
        "run_id": "test-run",
        "fault": "touch",
        "host": "local",
        "created_unix_ms": 0,
        "steps": [{"what": "remove the object", "script": format!("rm -f '{q}'; echo reverted >> '{q}.log'")}],
        "checks": [{"what": "object gone", "script": format!("[ ! -e '{q}' ]")}],
    })
    .to_string()
}

fn arm(dir: &Path, token: &str, object: &Path, lease: &str) -> u32 {
    fs::write(object, "fault").expect("apply the fault");
    let d = dir.to_string_lossy();
    let out = guard(
        &[
            "arm",
            "--dir",
            &d,
            "--token",
            token,
            "--lease",
            lease,
            "--launcher",
            "setsid",
        ],
        &journal(token, object),
    );
    assert!(
        out.status.success(),
        "arm: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    let report = json_of(&out);
    assert_eq!(report["launcher"], "setsid");
    u32::try_from(report["pid"].as_u64().expect("pid")).expect("pid fits")
}

fn alive(pid: u32) -> bool {
    fs::read_to_string(format!("/proc/{pid}/stat")).is_ok_and(|s| {
        !s.rsplit_once(')')
            .is_some_and(|(_, r)| r.trim_start().starts_with(['Z', 'X']))
    })
}

fn wait_for(timeout: Duration, mut done: impl FnMut() -> bool) -> bool {
    let deadline = Instant::now() + timeout;
    while Instant::now() < deadline {
        if done() {
            return true;
        }
        sleep(Duration::from_millis(50));
    }
    done()
}

#[test]
fn an_unrenewed_lease_reverts_once_and_leaves_a_result() {
    let tmp = tempfile::tempdir().expect("tempdir");
    let dir = tmp.path().join("guard");
    let object = tmp.path().join("obj");
    let armed_at = Instant::now();
    let pid = arm(&dir, "expire", &object, "1s");
    assert!(alive(pid));
    assert!(object.exists(), "reverted before the lease ran out");
    assert!(wait_for(Duration::from_secs(5), || !object.exists()));
    assert!(
        armed_at.elapsed() >= Duration::from_millis(1000),
        "reverted early"
    );
    assert!(wait_for(Duration::from_secs(3), || !alive(pid)));
    let log = fs::read_to_string(tmp.path().join("obj.log")).expect("log");
    assert_eq!(log, "reverted\n", "reverted more than once");
    let result: Value =
        serde_json::from_str(&fs::read_to_string(dir.join("expire.result.json")).expect("result"))
            .expect("json");
    assert_eq!(result["outcome"], "reverted");
    assert!(
        result["reason"]
            .as_str()
            .is_some_and(|r| r.starts_with("lease expired")),
        "{result}"
    );
    assert_eq!(result["checks"][0]["ok"], true);
    // The journal and lease are gone; renewing now says the guard fired, with its result.
    assert!(!dir.join("expire.journal.json").exists());
    let d = dir.to_string_lossy();
    let late = guard(&["renew", "--dir", &d, "--token", "expire"], "");
    assert_eq!(late.status.code(), Some(3));
    assert_eq!(json_of(&late)["outcome"], "reverted");
}

#[test]
fn a_renewed_lease_holds_and_disarm_stands_down_without_reverting() {
    let tmp = tempfile::tempdir().expect("tempdir");
    let dir = tmp.path().join("guard");
    let object = tmp.path().join("obj");
    let pid = arm(&dir, "renew", &object, "1s");
    let d = dir.to_string_lossy();
    let until = Instant::now() + Duration::from_millis(2500);
    let mut renewals = 0;
    while Instant::now() < until {
        let out = guard(&["renew", "--dir", &d, "--token", "renew"], "");
        assert!(
            out.status.success(),
            "renew: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        renewals += 1;
        assert_eq!(json_of(&out)["renewals"], renewals);
        sleep(Duration::from_millis(250));
    }
    assert!(object.exists(), "reverted although renewed");
    assert!(alive(pid));
    let out = guard(&["disarm", "--dir", &d, "--token", "renew"], "");
    assert!(
        out.status.success(),
        "disarm: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert_eq!(json_of(&out)["watcher_stopped"], true);
    assert!(!alive(pid), "watcher still running after disarm");
    sleep(Duration::from_millis(1300));
    assert!(object.exists(), "reverted after disarm");
    assert_eq!(
        fs::read_dir(&dir).expect("dir").count(),
        0,
        "disarm left files"
    );
}

#[test]
fn a_killed_guard_is_missing_at_renewal_and_its_journal_is_swept() {
    let tmp = tempfile::tempdir().expect("tempdir");
    let dir = tmp.path().join("guard");
    let object = tmp.path().join("obj");
    let pid = arm(&dir, "orphan", &object, "3s");
    // As a reboot or an OOM kill would: our own watcher, by its pid.
    let killed = Command::new("kill")
        .args(["-KILL", &pid.to_string()])
        .status()
        .expect("kill runs");
    assert!(killed.success());
    assert!(wait_for(Duration::from_secs(2), || !alive(pid)));
    let d = dir.to_string_lossy();
    let out = guard(&["renew", "--dir", &d, "--token", "orphan"], "");
    assert_eq!(
        out.status.code(),
        Some(3),
        "renewing a dead guard succeeded"
    );
    assert!(
        String::from_utf8_lossy(&out.stderr).contains("guard missing"),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    // status reports the orphan; sweep reverts it inline and says what it found.
    let status = json_of(&guard(&["status", "--dir", &d], ""));
    assert_eq!(status[0]["token"], "orphan");
    assert_eq!(status[0]["watcher"], Value::Null);
    let out = guard(&["sweep", "--dir", &d], "");
    assert!(out.status.success());
    let swept = json_of(&out);
    assert_eq!(swept[0]["found"], "orphan_journal");
    assert_eq!(swept[0]["result"]["outcome"], "reverted");
    assert!(!object.exists());
    assert_eq!(json_of(&guard(&["status", "--dir", &d], "")), json!([]));
}

#[test]
fn a_sweep_makes_a_live_guard_of_an_earlier_run_revert_now() {
    let tmp = tempfile::tempdir().expect("tempdir");
    let dir = tmp.path().join("guard");
    let object = tmp.path().join("obj");
    let pid = arm(&dir, "earlier", &object, "60s");
    let started = Instant::now();
    let d = dir.to_string_lossy();
    let out = guard(&["sweep", "--dir", &d, "--wait", "5s"], "");
    assert!(out.status.success());
    let swept = json_of(&out);
    assert_eq!(swept[0]["found"], "live_guard");
    assert_eq!(swept[0]["result"]["reason"], "revert requested");
    assert!(started.elapsed() < Duration::from_secs(5));
    assert!(!object.exists());
    assert!(wait_for(Duration::from_secs(2), || !alive(pid)));
}

#[test]
fn an_expiring_guard_never_touches_another_tokens_fault() {
    let tmp = tempfile::tempdir().expect("tempdir");
    let dir = tmp.path().join("guard");
    let old = tmp.path().join("old");
    let new = tmp.path().join("new");
    let old_pid = arm(&dir, "old", &old, "1s");
    let new_pid = arm(&dir, "new", &new, "4s");
    assert!(wait_for(Duration::from_secs(5), || !old.exists()));
    assert!(wait_for(Duration::from_secs(2), || !alive(old_pid)));
    assert!(new.exists(), "the old guard reverted the newer fault");
    assert!(alive(new_pid));
    let d = dir.to_string_lossy();
    let out = guard(&["disarm", "--dir", &d, "--token", "new"], "");
    assert!(out.status.success());
    assert!(!alive(new_pid));
    assert!(new.exists());
}

#[test]
fn bad_arguments_and_journals_are_usage_errors() {
    let tmp = tempfile::tempdir().expect("tempdir");
    let d = tmp.path().to_string_lossy();
    for (args, input) in [
        (vec!["arm", "--dir", &*d, "--token", "t"], "not json"),
        (vec!["arm", "--dir", "relative", "--token", "t"], ""),
        (vec!["renew", "--dir", &*d, "--token", "a b"], ""),
        (vec!["frobnicate", "--dir", &*d], ""),
        (vec![], ""),
    ] {
        let out = guard(&args, input);
        assert_ne!(out.status.code(), Some(0), "{args:?} succeeded");
        assert!(!out.stderr.is_empty(), "{args:?}: no message");
    }
    // A journal for another token is refused before anything is written.
    let object = tmp.path().join("obj");
    let out = guard(
        &["arm", "--dir", &d, "--token", "mine"],
        &journal("theirs", &object),
    );
    assert_eq!(out.status.code(), Some(2));
    assert!(!tmp.path().join("mine.journal.json").exists());
}
