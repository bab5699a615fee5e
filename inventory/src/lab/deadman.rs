//! A host-local dead-man's switch (docs/lab.md): a detached (`setsid`) shell sleeper on the host
//! that runs a revert command once its lease expires, unless the orchestrator renews the lease.
//! It holds when the orchestrator is SIGKILLed or loses its SSH connection.
//!
//! This module only *writes shell*: each function returns a POSIX `sh` script to run on the host
//! (over SSH with [`shell_quote`], or locally with `sh -c`). Nothing here needs soak on the host —
//! only `sh`, `date`, `sleep`, `setsid`, `cat`, `mv`, `rm`.
//!
//! Files, for switch TAG in directory DIR on the host:
//! - `DIR/TAG.lease` — the expiry, unix seconds. Renewing rewrites it (atomically, via `mv`).
//! - `DIR/TAG.revert` — the revert command, as written. A sweep can run it after a crash.
//! - `DIR/TAG.pid` — the sleeper's pid.
//!
//! Timing: the revert runs between `lease` and `lease` + 1.2 s after the last arm/renew (the
//! host clock has whole seconds; a lease never ends early).
//!
//! Protocol: **arm before applying the fault** (so a crash between the two still reverts), renew
//! well inside the lease (e.g. every lease/3), and [`disarm_script`] after reverting normally.
//! Revert commands must be idempotent (deleting an already-deleted rule must be harmless), since
//! the sleeper, a sweep and the orchestrator may all try.

use std::path::Path;
use std::time::Duration;

use super::LabError;

/// How often the sleeper looks at its lease (seconds, fractional `sleep`).
const POLL: &str = "0.2";

/// A switch: where its files live on the host and what it is called.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DeadmanSwitch {
    dir: String,
    tag: String,
}

impl DeadmanSwitch {
    /// A switch named `tag` (letters, digits, `_`, `-`) with files under the absolute `dir` on the
    /// host.
    pub fn new(dir: &Path, tag: &str) -> Result<Self, LabError> {
        let dir_text = dir.to_string_lossy();
        if !dir.is_absolute() || dir_text.contains('\'') || dir_text.contains('\n') {
            return Err(LabError::Usage(format!(
                "dead-man's switch directory {dir_text:?} must be absolute, without quotes or newlines"
            )));
        }
        let tag_ok = !tag.is_empty()
            && tag.len() <= 64
            && tag
                .bytes()
                .all(|b| b.is_ascii_alphanumeric() || b == b'_' || b == b'-');
        if !tag_ok {
            return Err(LabError::Usage(format!(
                "dead-man's switch tag {tag:?} must be 1–64 letters, digits, '_' or '-'"
            )));
        }
        Ok(DeadmanSwitch {
            dir: dir_text.into_owned(),
            tag: tag.to_owned(),
        })
    }

    /// The lease file on the host.
    pub fn lease_file(&self) -> String {
        format!("{}/{}.lease", self.dir, self.tag)
    }

    /// The revert file on the host.
    pub fn revert_file(&self) -> String {
        format!("{}/{}.revert", self.dir, self.tag)
    }

    /// The sleeper's pid file on the host.
    pub fn pid_file(&self) -> String {
        format!("{}/{}.pid", self.dir, self.tag)
    }

    /// Script that records `revert`, sets the lease to now + `lease` and starts the detached
    /// sleeper; prints the sleeper's pid. Re-arming an armed switch replaces its lease and revert
    /// command and starts a new sleeper (the old one exits when it sees the pid file changed).
    pub fn arm_script(&self, revert: &str, lease: Duration) -> String {
        let lease_s = lease_seconds(lease);
        let dir = shell_quote(&self.dir);
        let lease_file = shell_quote(&self.lease_file());
        let revert_file = shell_quote(&self.revert_file());
        let pid_file = shell_quote(&self.pid_file());
        let sleeper = format!(
            "me=$$; echo $me > {pid_file}.tmp && mv -f {pid_file}.tmp {pid_file}; \
             while :; do \
               [ -f {lease_file} ] || exit 0; \
               [ \"$(cat {pid_file} 2>/dev/null)\" = \"$me\" ] || exit 0; \
               exp=$(cat {lease_file} 2>/dev/null); \
               case $exp in ''|*[!0-9]*) exp=0;; esac; \
               if [ \"$(date +%s)\" -gt \"$exp\" ]; then \
                 sh {revert_file}; \
                 rm -f {lease_file} {pid_file}; \
                 exit 0; \
               fi; \
               sleep {POLL}; \
             done"
        );
        format!(
            "set -e\n\
             mkdir -p {dir}\n\
             cat > {revert_file}.tmp <<'SOAK_DEADMAN_REVERT_EOF'\n\
             {revert}\n\
             SOAK_DEADMAN_REVERT_EOF\n\
             mv -f {revert_file}.tmp {revert_file}\n\
             echo $(( $(date +%s) + {lease_s} )) > {lease_file}.tmp\n\
             mv -f {lease_file}.tmp {lease_file}\n\
             old=$(cat {pid_file} 2>/dev/null || true)\n\
             setsid sh -c {sleeper} </dev/null >/dev/null 2>&1 &\n\
             i=0\n\
             while [ ! -s {pid_file} ] || [ \"$(cat {pid_file})\" = \"${{old:-}}\" ]; do\n\
             \x20 i=$((i + 1)); [ $i -le 100 ] || {{ echo 'dead-man sleeper did not start' >&2; exit 1; }}\n\
             \x20 sleep 0.05\n\
             done\n\
             cat {pid_file}\n",
            sleeper = shell_quote(&sleeper),
        )
    }

    /// Script that pushes the expiry to now + `lease`; fails (exit 1) when the switch is no longer
    /// armed — it fired or was disarmed — so the orchestrator learns the fault is gone.
    pub fn renew_script(&self, lease: Duration) -> String {
        let lease_file = shell_quote(&self.lease_file());
        format!(
            "[ -f {lease_file} ] || {{ echo 'dead-man switch {tag} is not armed' >&2; exit 1; }}\n\
             echo $(( $(date +%s) + {lease_s} )) > {lease_file}.tmp && mv -f {lease_file}.tmp {lease_file}\n",
            tag = self.tag,
            lease_s = lease_seconds(lease),
        )
    }

    /// Script that stops the switch without reverting (after the orchestrator reverted itself):
    /// removes the lease (the sleeper exits at its next look) and the switch's files.
    pub fn disarm_script(&self) -> String {
        format!(
            "rm -f {} {} {}\n",
            shell_quote(&self.lease_file()),
            shell_quote(&self.pid_file()),
            shell_quote(&self.revert_file()),
        )
    }
}

/// Script for a pre-run sweep of `dir`: every switch whose sleeper is gone (host rebooted,
/// sleeper killed; a zombie or a recycled pid counts as gone — a live sleeper's command line
/// names its lease file) gets its revert command run and its files removed. Prints the swept tags.
pub fn sweep_script(dir: &Path) -> String {
    let dir = shell_quote(&dir.to_string_lossy());
    format!(
        "[ -d {dir} ] || exit 0\n\
         sleeper_alive() {{\n\
         \x20 case \"$(cat /proc/$1/stat 2>/dev/null)\" in ''|*') Z '*|*') X '*) return 1;; esac\n\
         \x20 tr '\\0' ' ' < /proc/$1/cmdline 2>/dev/null | grep -qF \"$2\"\n\
         }}\n\
         for revert in {dir}/*.revert; do\n\
         \x20 [ -f \"$revert\" ] || continue\n\
         \x20 base=${{revert%.revert}}\n\
         \x20 pid=$(cat \"$base.pid\" 2>/dev/null || true)\n\
         \x20 if [ -n \"$pid\" ] && sleeper_alive \"$pid\" \"$base.lease\"; then continue; fi\n\
         \x20 sh \"$revert\" || true\n\
         \x20 rm -f \"$base.lease\" \"$base.pid\" \"$revert\"\n\
         \x20 echo \"${{base##*/}}\"\n\
         done\n"
    )
}

/// Whole seconds, at least 1.
fn lease_seconds(lease: Duration) -> u64 {
    lease.as_secs().max(1)
}

/// `text` as one single-quoted shell word.
pub fn shell_quote(text: &str) -> String {
    format!("'{}'", text.replace('\'', r"'\''"))
}

#[cfg(test)]
mod tests {
    use std::fs;
    use std::process::Command;
    use std::thread::sleep;
    use std::time::Instant;

    use super::*;

    fn sh(script: &str) -> std::process::Output {
        Command::new("sh").arg("-c").arg(script).output().unwrap()
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

    fn pid_alive(pid: &str) -> bool {
        fs::read_to_string(format!("/proc/{}/stat", pid.trim()))
            .map(|s| {
                !s.rsplit_once(')')
                    .is_some_and(|(_, r)| r.trim_start().starts_with('Z'))
            })
            .unwrap_or(false)
    }

    #[test]
    fn bad_tags_and_dirs_are_refused() {
        assert!(DeadmanSwitch::new(Path::new("relative"), "t").is_err());
        assert!(DeadmanSwitch::new(Path::new("/tmp/it's"), "t").is_err());
        for tag in ["", "a b", "a/b", "a;b", &"x".repeat(65)] {
            assert!(DeadmanSwitch::new(Path::new("/tmp"), tag).is_err(), "{tag}");
        }
    }

    #[test]
    fn quoting_survives_quotes() {
        let out = sh(&format!("printf %s {}", shell_quote("it's $HOME `x`")));
        assert_eq!(String::from_utf8_lossy(&out.stdout), "it's $HOME `x`");
    }

    #[test]
    fn an_unrenewed_lease_runs_the_revert_once() {
        let dir = tempfile::tempdir().unwrap();
        let fired = dir.path().join("fired");
        let switch = DeadmanSwitch::new(&dir.path().join("dm"), "expire").unwrap();
        let revert = format!("echo reverted >> {}", shell_quote(&fired.to_string_lossy()));
        let out = sh(&switch.arm_script(&revert, Duration::from_secs(1)));
        assert!(
            out.status.success(),
            "{}",
            String::from_utf8_lossy(&out.stderr)
        );
        let pid = String::from_utf8_lossy(&out.stdout).trim().to_owned();
        assert!(pid_alive(&pid), "sleeper {pid} not running");
        assert!(!fired.exists(), "fired before the lease expired");
        assert!(wait_for(Duration::from_secs(5), || fired.exists()));
        assert!(wait_for(Duration::from_secs(2), || !pid_alive(&pid)));
        assert_eq!(fs::read_to_string(&fired).unwrap(), "reverted\n");
        assert!(!Path::new(&switch.lease_file()).exists());
        // Renewing a fired switch tells the orchestrator the fault is gone.
        assert!(
            !sh(&switch.renew_script(Duration::from_secs(1)))
                .status
                .success()
        );
    }

    #[test]
    fn a_renewed_lease_holds_and_disarm_stops_without_reverting() {
        let dir = tempfile::tempdir().unwrap();
        let fired = dir.path().join("fired");
        let switch = DeadmanSwitch::new(&dir.path().join("dm"), "renew").unwrap();
        let revert = format!("touch {}", shell_quote(&fired.to_string_lossy()));
        let out = sh(&switch.arm_script(&revert, Duration::from_secs(1)));
        assert!(out.status.success());
        let pid = String::from_utf8_lossy(&out.stdout).trim().to_owned();
        // Renew for 2.5 s — well past the 1 s lease.
        let until = Instant::now() + Duration::from_millis(2500);
        while Instant::now() < until {
            let renew = sh(&switch.renew_script(Duration::from_secs(1)));
            assert!(renew.status.success());
            sleep(Duration::from_millis(200));
        }
        assert!(!fired.exists(), "fired although renewed");
        assert!(pid_alive(&pid));
        assert!(sh(&switch.disarm_script()).status.success());
        assert!(wait_for(Duration::from_secs(3), || !pid_alive(&pid)));
        sleep(Duration::from_millis(1200));
        assert!(!fired.exists(), "fired after disarm");
    }

    #[test]
    fn a_sweep_reverts_switches_whose_sleeper_died() {
        let dir = tempfile::tempdir().unwrap();
        let fired = dir.path().join("fired");
        let dm = dir.path().join("dm");
        let switch = DeadmanSwitch::new(&dm, "orphan").unwrap();
        let revert = format!("touch {}", shell_quote(&fired.to_string_lossy()));
        let out = sh(&switch.arm_script(&revert, Duration::from_secs(60)));
        let pid = String::from_utf8_lossy(&out.stdout).trim().to_owned();
        // An armed switch with a live sleeper is left alone.
        let swept = sh(&sweep_script(&dm));
        assert_eq!(String::from_utf8_lossy(&swept.stdout), "");
        // Kill the sleeper (our own child's descendant, by its pid), as a reboot would.
        assert!(
            Command::new("kill")
                .args(["-KILL", &pid])
                .status()
                .unwrap()
                .success()
        );
        assert!(wait_for(Duration::from_secs(2), || !pid_alive(&pid)));
        let swept = sh(&sweep_script(&dm));
        assert_eq!(String::from_utf8_lossy(&swept.stdout), "orphan\n");
        assert!(fired.exists());
        assert!(!Path::new(&switch.revert_file()).exists());
        // Nothing armed: the sweep is a no-op, also for a missing directory.
        assert_eq!(String::from_utf8_lossy(&sh(&sweep_script(&dm)).stdout), "");
        assert!(sh(&sweep_script(&dir.path().join("none"))).status.success());
    }
}
