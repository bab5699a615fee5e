//! The guard's files: one journal, lease, pid file and result per fault token, all in one guard
//! directory on the host. JSON, written atomically (temp file + rename in the same directory).
//!
//! | file | writer | what |
//! |---|---|---|
//! | `TOKEN.journal.json` | `guard arm` | [`GuardJournal`]: the revert steps and clean checks |
//! | `TOKEN.lease.json` | `arm`, `renew`, `disarm`, `sweep` | [`Lease`]: deadline on CLOCK_BOOTTIME |
//! | `TOKEN.pid` | the watcher | `PID START_TICKS` of the watching process |
//! | `TOKEN.result.json` | the watcher, `revert`, `sweep` | [`GuardResult`]: what the guard did |

use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};

/// Version of every file format here.
pub const FORMAT: u32 = 1;

/// Longest accepted token.
pub const MAX_TOKEN_LEN: usize = 64;

/// Whether `token` is a valid fault token: 1–64 of `A-Z a-z 0-9 _ -`. Tokens name files and a
/// systemd unit, so nothing else is allowed.
pub fn valid_token(token: &str) -> bool {
    !token.is_empty()
        && token.len() <= MAX_TOKEN_LEN
        && token
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b == b'_' || b == b'-')
}

/// One idempotent shell step (`sh -c SCRIPT`): a revert step or a clean check.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Step {
    /// What it does, for the result file and the proof.
    pub what: String,
    /// POSIX `sh` script. Revert steps must be idempotent (they may run several times, from the
    /// guard, a sweep and the orchestrator); a check exits 0 when the host is clean.
    pub script: String,
}

/// What the guard must undo for one fault, written before the fault is applied.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct GuardJournal {
    /// [`FORMAT`].
    pub format: u32,
    /// The fault's token: scopes every file and every object of this fault.
    pub token: String,
    /// The soak run that applied the fault.
    pub run_id: String,
    /// The fault kind (`partition`, `shape`, `pause`, …).
    pub fault: String,
    /// Inventory name of the host.
    pub host: String,
    /// When the journal was written, unix milliseconds (controller clock; informative only).
    pub created_unix_ms: u64,
    /// Revert steps, run in order; all of them run even when one fails.
    pub steps: Vec<Step>,
    /// Clean checks, run after the steps: each exits 0 when its object is gone.
    pub checks: Vec<Step>,
}

/// What the lease asks of the watcher.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum LeaseState {
    /// Revert once the deadline passes.
    Armed,
    /// The orchestrator reverted the fault itself: exit without reverting.
    Disarmed,
    /// Revert now (a sweep, or an orchestrator that found its guard's lease unusable).
    RevertNow,
}

/// The lease: a deadline on the host's boot-time clock (CLOCK_BOOTTIME via `/proc/uptime`: it
/// never jumps with wall-clock changes and keeps counting through suspend).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Lease {
    /// [`FORMAT`].
    pub format: u32,
    /// The fault token.
    pub token: String,
    /// Lease length, milliseconds.
    pub lease_ms: u64,
    /// Deadline, milliseconds of CLOCK_BOOTTIME.
    pub expires_boot_ms: u64,
    /// Renewals so far.
    pub renewals: u64,
    /// What the watcher should do.
    pub state: LeaseState,
}

/// How a guard ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Outcome {
    /// The steps ran and every clean check passed.
    Reverted,
    /// The steps ran (up to three times) but a clean check still fails: residue.
    RevertFailed,
    /// Disarmed by the orchestrator: nothing was reverted by the guard.
    Disarmed,
}

/// One step or check as it ran.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct StepResult {
    /// The step's `what`.
    pub what: String,
    /// Exit code; `None` when killed (signal or timeout).
    pub status: Option<i32>,
    /// Exit code 0.
    pub ok: bool,
    /// Tail of its stderr (≤ 400 bytes).
    pub stderr: String,
    /// How long it took, milliseconds.
    pub took_ms: u64,
}

/// What a guard did, left for the orchestrator or the next run.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct GuardResult {
    /// [`FORMAT`].
    pub format: u32,
    /// The fault token.
    pub token: String,
    /// From the journal.
    pub run_id: String,
    /// From the journal.
    pub fault: String,
    /// From the journal.
    pub host: String,
    /// How it ended.
    pub outcome: Outcome,
    /// Why the guard acted (`lease expired …`, `revert requested by sweep`, `disarmed`).
    pub reason: String,
    /// The revert steps of the last attempt.
    pub steps: Vec<StepResult>,
    /// The clean checks of the last attempt.
    pub checks: Vec<StepResult>,
    /// Revert attempts (0 when disarmed).
    pub attempts: u32,
    /// How long after the deadline the revert started, milliseconds (lease expiry only).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub late_ms: Option<u64>,
    /// When it finished, unix milliseconds (host clock).
    pub finished_unix_ms: u64,
    /// When it finished, CLOCK_BOOTTIME milliseconds.
    pub finished_boot_ms: u64,
}

/// The journal file of `token` in `dir`.
pub fn journal_file(dir: &Path, token: &str) -> PathBuf {
    dir.join(format!("{token}.journal.json"))
}

/// The lease file of `token` in `dir`.
pub fn lease_file(dir: &Path, token: &str) -> PathBuf {
    dir.join(format!("{token}.lease.json"))
}

/// The watcher's pid file of `token` in `dir`.
pub fn pid_file(dir: &Path, token: &str) -> PathBuf {
    dir.join(format!("{token}.pid"))
}

/// The result file of `token` in `dir`.
pub fn result_file(dir: &Path, token: &str) -> PathBuf {
    dir.join(format!("{token}.result.json"))
}

/// The token a guard file name belongs to (`TOKEN.journal.json` → `TOKEN`), if it is one.
pub fn token_of_file(name: &str) -> Option<&str> {
    [".journal.json", ".lease.json", ".pid", ".result.json"]
        .iter()
        .find_map(|suffix| name.strip_suffix(suffix))
        .filter(|token| valid_token(token))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn tokens_are_file_and_unit_safe() {
        assert!(valid_token("f3-partition_1"));
        for bad in ["", "a b", "a/b", "a.b", "../x", &"x".repeat(65)] {
            assert!(!valid_token(bad), "{bad:?}");
        }
    }

    #[test]
    fn file_names_map_back_to_their_token() {
        let dir = Path::new("/g");
        for path in [
            journal_file(dir, "t1"),
            lease_file(dir, "t1"),
            pid_file(dir, "t1"),
            result_file(dir, "t1"),
        ] {
            let name = path.file_name().and_then(|n| n.to_str()).unwrap_or("");
            assert_eq!(token_of_file(name), Some("t1"), "{name}");
        }
        assert_eq!(token_of_file("t1.tmp"), None);
        assert_eq!(token_of_file("a b.pid"), None);
    }

    #[test]
    fn journal_round_trips() {
        let journal = GuardJournal {
            format: FORMAT,
            token: "t".into(),
            run_id: "r".into(),
            fault: "partition".into(),
            host: "h1".into(),
            created_unix_ms: 1,
            steps: vec![Step {
                what: "delete rule".into(),
                script: "iptables -w -D SOAK-IN 1 || true".into(),
            }],
            checks: vec![],
        };
        let text = serde_json::to_string(&journal).unwrap_or_default();
        let back: GuardJournal = serde_json::from_str(&text).expect("parses");
        assert_eq!(back, journal);
    }
}
