//! The guard's IO: arm, watch, renew, disarm, status, sweep and inline revert, over the files of
//! [`crate::format`] in one guard directory.
//!
//! Renew/revert race: a watcher that finds its lease expired first creates `TOKEN.reverting`, then
//! reads the lease once more and backs off if it was renewed in between; `renew` writes the lease
//! first, then looks for that marker. Either the watcher sees the new lease, or `renew` sees the
//! marker and reports failure (and the orchestrator reverts itself: the safe direction). A
//! renewal is therefore never acknowledged while its guard goes on to revert.

use std::fs;
use std::io::{Read, Write};
use std::os::unix::fs::{DirBuilderExt, OpenOptionsExt};
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use serde::{Deserialize, Serialize};

use crate::clock;
use crate::format::{
    FORMAT, GuardJournal, GuardResult, Lease, LeaseState, Outcome, Step, StepResult, journal_file,
    lease_file, pid_file, result_file, token_of_file, valid_token,
};
use crate::launch::{self, Launcher};
use crate::{GuardError, GuardErrorKind};

/// How often the watcher looks at its lease.
pub const POLL: Duration = Duration::from_millis(100);
/// Limit of one revert step or clean check.
pub const STEP_TIMEOUT: Duration = Duration::from_secs(20);
/// Revert attempts before the guard gives up and reports residue.
pub const ATTEMPTS: u32 = 3;
/// How long `arm` waits for the watcher to write its pid file.
const START_TIMEOUT: Duration = Duration::from_secs(5);
/// Consecutive unreadable lease reads after which the watcher reverts (fail-safe).
const BAD_READS: u32 = 3;
/// PATH for revert steps: sudo and systemd give a minimal one; tc and iptables live in sbin.
const STEP_PATH: &str = "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin";

/// The marker a watcher creates before it reverts.
pub fn reverting_file(dir: &Path, token: &str) -> PathBuf {
    dir.join(format!("{token}.reverting"))
}

fn err(context: impl Into<String>, kind: GuardErrorKind) -> GuardError {
    GuardError {
        context: context.into(),
        kind,
    }
}

fn io_err(context: impl Into<String>) -> impl FnOnce(std::io::Error) -> GuardError {
    let context = context.into();
    move |e| err(context, GuardErrorKind::Io(e))
}

fn check_token(token: &str) -> Result<(), GuardError> {
    if valid_token(token) {
        Ok(())
    } else {
        Err(err(
            format!("token {token:?}"),
            GuardErrorKind::Usage("a token is 1-64 of A-Z a-z 0-9 _ -".into()),
        ))
    }
}

/// Writes `bytes` to `path` atomically (temp file in the same directory, fsync, rename), 0600.
fn write_atomic(path: &Path, bytes: &[u8]) -> Result<(), GuardError> {
    let tmp = path.with_extension(format!("tmp.{}", std::process::id()));
    let write = || -> std::io::Result<()> {
        let mut file = fs::OpenOptions::new()
            .write(true)
            .create(true)
            .truncate(true)
            .mode(0o600)
            .open(&tmp)?;
        file.write_all(bytes)?;
        file.sync_all()?;
        fs::rename(&tmp, path)
    };
    write().map_err(|e| {
        let _ = fs::remove_file(&tmp);
        err(format!("write {}", path.display()), GuardErrorKind::Io(e))
    })
}

fn write_json<T: Serialize>(path: &Path, value: &T) -> Result<(), GuardError> {
    let mut text = serde_json::to_vec_pretty(value).map_err(|e| {
        err(
            format!("serialize {}", path.display()),
            GuardErrorKind::Format(e.to_string()),
        )
    })?;
    text.push(b'\n');
    write_atomic(path, &text)
}

/// Reads a JSON file; `Ok(None)` when it does not exist.
fn read_json<T: for<'de> Deserialize<'de>>(path: &Path) -> Result<Option<T>, GuardError> {
    let text = match fs::read(path) {
        Ok(text) => text,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(None),
        Err(e) => {
            return Err(err(
                format!("read {}", path.display()),
                GuardErrorKind::Io(e),
            ));
        }
    };
    serde_json::from_slice(&text).map(Some).map_err(|e| {
        err(
            format!("parse {}", path.display()),
            GuardErrorKind::Format(e.to_string()),
        )
    })
}

fn remove(path: &Path) {
    let _ = fs::remove_file(path);
}

/// Removes every file of `token` in `dir` (journal, lease, pid, marker, result).
fn remove_all(dir: &Path, token: &str) {
    for path in [
        journal_file(dir, token),
        lease_file(dir, token),
        pid_file(dir, token),
        reverting_file(dir, token),
        result_file(dir, token),
    ] {
        remove(&path);
    }
}

fn boot_ms() -> Result<u64, GuardError> {
    clock::boot_ms().map_err(io_err("read the boot-time clock (/proc/uptime)"))
}

/// State letter and start time (clock ticks after boot) of `pid`, from `/proc/PID/stat`.
pub fn proc_stat(pid: u32) -> Option<(char, u64)> {
    let text = fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
    parse_stat(&text)
}

/// Parses `/proc/PID/stat`: fields are counted from the *last* `)` (the command name may hold
/// spaces and parentheses); field 3 is the state, field 22 the start time.
pub fn parse_stat(text: &str) -> Option<(char, u64)> {
    let (_, rest) = text.rsplit_once(')')?;
    let mut fields = rest.split_ascii_whitespace();
    let state = fields.next()?.chars().next()?;
    let start = fields.nth(18)?.parse().ok()?;
    Some((state, start))
}

/// The watcher recorded in `TOKEN.pid` when it is still that process (same start time, not a
/// zombie): a recycled pid never counts.
pub fn live_watcher(dir: &Path, token: &str) -> Option<u32> {
    watcher_identity(dir, token).map(|(pid, _)| pid)
}

/// `(pid, start time)` of the live watcher of `token`.
fn watcher_identity(dir: &Path, token: &str) -> Option<(u32, u64)> {
    let text = fs::read_to_string(pid_file(dir, token)).ok()?;
    let mut fields = text.split_ascii_whitespace();
    let pid: u32 = fields.next()?.parse().ok()?;
    let start: u64 = fields.next()?.parse().ok()?;
    process_alive(pid, start).then_some((pid, start))
}

/// Whether `pid` is still the live (non-zombie) process that started at `start`.
pub fn process_alive(pid: u32, start: u64) -> bool {
    matches!(proc_stat(pid), Some((state, now)) if now == start && !matches!(state, 'Z' | 'X'))
}

/// What the watcher should do, given its lease (or none) and the boot clock.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Decision {
    /// Keep waiting.
    Wait,
    /// Exit without reverting.
    Disarmed,
    /// Revert, for this reason; `late_ms` after the deadline when it expired.
    Revert {
        /// Why.
        reason: String,
        /// How long past the deadline.
        late_ms: Option<u64>,
    },
}

/// The watcher's judgement (pure). A missing lease means revert: a guard never assumes its fault
/// may stay.
pub fn decide(lease: Option<&Lease>, now_boot_ms: u64) -> Decision {
    match lease {
        None => Decision::Revert {
            reason: "lease file missing or unreadable".into(),
            late_ms: None,
        },
        Some(lease) => match lease.state {
            LeaseState::Disarmed => Decision::Disarmed,
            LeaseState::RevertNow => Decision::Revert {
                reason: "revert requested".into(),
                late_ms: None,
            },
            LeaseState::Armed if now_boot_ms >= lease.expires_boot_ms => Decision::Revert {
                reason: format!(
                    "lease expired ({} ms without renewal, {} renewals before)",
                    lease.lease_ms, lease.renewals
                ),
                late_ms: Some(now_boot_ms - lease.expires_boot_ms),
            },
            LeaseState::Armed => Decision::Wait,
        },
    }
}

/// Runs one step with `sh -c`, bounded by `timeout` (killed when late).
pub fn run_step(step: &Step, timeout: Duration) -> StepResult {
    let started = Instant::now();
    let path = match std::env::var("PATH") {
        Ok(p) if !p.is_empty() => format!("{STEP_PATH}:{p}"),
        _ => STEP_PATH.to_string(),
    };
    let mut command = Command::new("sh");
    command
        .arg("-c")
        .arg(&step.script)
        .env("PATH", path)
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::piped());
    // Its own process group, so a late step is killed with everything it started.
    std::os::unix::process::CommandExt::process_group(&mut command, 0);
    let spawned = command.spawn();
    let mut child = match spawned {
        Ok(child) => child,
        Err(e) => {
            return StepResult {
                what: step.what.clone(),
                status: None,
                ok: false,
                stderr: format!("cannot start sh: {e}"),
                took_ms: 0,
            };
        }
    };
    // Read stderr on a thread so a chatty step never blocks on a full pipe.
    let (tx, rx) = std::sync::mpsc::channel();
    if let Some(mut pipe) = child.stderr.take() {
        std::thread::spawn(move || {
            let mut buf = Vec::new();
            let _ = pipe.read_to_end(&mut buf);
            let _ = tx.send(buf);
        });
    }
    let deadline = started + timeout;
    let status = loop {
        match child.try_wait() {
            Ok(Some(status)) => break Some(status),
            Ok(None) if Instant::now() >= deadline => {
                // The group id is the child's pid (process_group(0)); `kill` is the portable way
                // to signal a group without `unsafe`.
                let _ = Command::new("kill")
                    .args(["-KILL", "--", &format!("-{}", child.id())])
                    .stdin(Stdio::null())
                    .stdout(Stdio::null())
                    .stderr(Stdio::null())
                    .status();
                let _ = child.kill();
                let _ = child.wait();
                break None;
            }
            Ok(None) => std::thread::sleep(Duration::from_millis(10)),
            Err(_) => break None,
        }
    };
    // A step that left a background process holding stderr open must not hold the guard.
    let stderr = rx
        .recv_timeout(Duration::from_secs(1))
        .map(|b| tail(&String::from_utf8_lossy(&b)))
        .unwrap_or_default();
    let code = status.and_then(|s| s.code());
    StepResult {
        what: step.what.clone(),
        status: code,
        ok: code == Some(0),
        stderr: if status.is_none() {
            format!("timed out after {} ms; {stderr}", timeout.as_millis())
        } else {
            stderr
        },
        took_ms: u64::try_from(started.elapsed().as_millis()).unwrap_or(u64::MAX),
    }
}

fn tail(text: &str) -> String {
    let text = text.trim();
    let mut start = text.len().saturating_sub(400);
    while !text.is_char_boundary(start) {
        start += 1;
    }
    text[start..].to_string()
}

/// Runs the journal's steps then its checks, up to [`ATTEMPTS`] times until every check passes.
pub fn revert_journal(
    journal: &GuardJournal,
    reason: &str,
    late_ms: Option<u64>,
) -> Result<GuardResult, GuardError> {
    let mut attempts = 0;
    let (steps, checks) = loop {
        attempts += 1;
        let steps: Vec<StepResult> = journal
            .steps
            .iter()
            .map(|s| run_step(s, STEP_TIMEOUT))
            .collect();
        let checks: Vec<StepResult> = journal
            .checks
            .iter()
            .map(|s| run_step(s, STEP_TIMEOUT))
            .collect();
        if checks.iter().all(|c| c.ok) || attempts >= ATTEMPTS {
            break (steps, checks);
        }
        std::thread::sleep(Duration::from_secs(1));
    };
    let outcome = if checks.iter().all(|c| c.ok) {
        Outcome::Reverted
    } else {
        Outcome::RevertFailed
    };
    Ok(GuardResult {
        format: FORMAT,
        token: journal.token.clone(),
        run_id: journal.run_id.clone(),
        fault: journal.fault.clone(),
        host: journal.host.clone(),
        outcome,
        reason: reason.to_string(),
        steps,
        checks,
        attempts,
        late_ms,
        finished_unix_ms: clock::unix_ms(),
        finished_boot_ms: boot_ms()?,
    })
}

fn ensure_dir(dir: &Path) -> Result<(), GuardError> {
    fs::DirBuilder::new()
        .recursive(true)
        .mode(0o700)
        .create(dir)
        .map_err(io_err(format!("create {}", dir.display())))
}

/// What `arm` did.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ArmReport {
    /// The fault token.
    pub token: String,
    /// The watcher's pid.
    pub pid: u32,
    /// How it was detached.
    pub launcher: Launcher,
    /// The systemd unit, for [`Launcher::SystemdRun`].
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub unit: Option<String>,
    /// Lease length, milliseconds.
    pub lease_ms: u64,
    /// Whether a watcher for this token was already running (re-arm: journal and lease replaced).
    pub rearmed: bool,
}

/// Which launcher `arm` uses.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum LauncherChoice {
    /// [`launch::choose`] on this host's facts.
    Auto,
    /// This one.
    Forced(Launcher),
}

fn on_path(tool: &str) -> bool {
    let path = std::env::var_os("PATH").unwrap_or_default();
    std::env::split_paths(&path)
        .chain(STEP_PATH.split(':').map(PathBuf::from))
        .any(|dir| dir.join(tool).is_file())
}

fn host_facts() -> launch::HostFacts {
    let euid_root = fs::read_to_string("/proc/self/status")
        .ok()
        .and_then(|s| {
            s.lines()
                .find(|l| l.starts_with("Uid:"))
                .and_then(|l| l.split_whitespace().nth(2).map(|u| u == "0"))
        })
        .unwrap_or(false);
    launch::HostFacts {
        systemd_pid1: fs::read_to_string("/proc/1/comm").is_ok_and(|c| c.trim() == "systemd"),
        has_systemd_run: on_path("systemd-run"),
        root: euid_root,
        has_setsid: on_path("setsid"),
    }
}

/// Arms the guard for `journal` in `dir`: writes the journal and a lease of `lease`, then starts
/// the detached watcher (`exe guard watch …`) unless one runs for this token already, and waits
/// until it has written its pid file. Arm **before** applying the fault.
pub fn arm(
    dir: &Path,
    journal: &GuardJournal,
    lease: Duration,
    exe: &Path,
    choice: LauncherChoice,
) -> Result<ArmReport, GuardError> {
    check_token(&journal.token)?;
    if journal.format != FORMAT {
        return Err(err(
            "journal",
            GuardErrorKind::Format(format!(
                "format {} (this guard reads {FORMAT})",
                journal.format
            )),
        ));
    }
    if lease.is_zero() {
        return Err(err(
            "lease",
            GuardErrorKind::Usage("must be positive".into()),
        ));
    }
    let token = journal.token.as_str();
    ensure_dir(dir)?;
    let lease_ms = u64::try_from(lease.as_millis()).unwrap_or(u64::MAX);
    remove(&result_file(dir, token));
    remove(&reverting_file(dir, token));
    write_json(&journal_file(dir, token), journal)?;
    write_json(
        &lease_file(dir, token),
        &Lease {
            format: FORMAT,
            token: token.to_string(),
            lease_ms,
            expires_boot_ms: boot_ms()?.saturating_add(lease_ms),
            renewals: 0,
            state: LeaseState::Armed,
        },
    )?;
    let launcher = match choice {
        LauncherChoice::Auto => launch::choose(host_facts()),
        LauncherChoice::Forced(l) => l,
    };
    let unit = (launcher == Launcher::SystemdRun).then(|| launch::unit_name(token));
    let report = |pid, rearmed| ArmReport {
        token: token.to_string(),
        pid,
        launcher,
        unit: unit.clone(),
        lease_ms,
        rearmed,
    };
    if let Some(pid) = live_watcher(dir, token) {
        return Ok(report(pid, true));
    }
    remove(&pid_file(dir, token));
    let argv = launch::argv(launcher, exe, dir, token);
    let mut command = Command::new(&argv[0]);
    command
        .args(&argv[1..])
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::null());
    match launcher {
        Launcher::SystemdRun => {
            let out = command
                .stderr(Stdio::piped())
                .output()
                .map_err(io_err("run systemd-run"))?;
            if !out.status.success() {
                return Err(err(
                    "start the guard with systemd-run",
                    GuardErrorKind::Start(tail(&String::from_utf8_lossy(&out.stderr))),
                ));
            }
        }
        Launcher::Setsid | Launcher::ProcessGroup => {
            if launcher == Launcher::ProcessGroup {
                std::os::unix::process::CommandExt::process_group(&mut command, 0);
            }
            // Not waited for: the watcher outlives `arm` and is re-parented when it exits.
            command
                .spawn()
                .map_err(io_err(format!("start {}", argv.join(" "))))?;
        }
    }
    let deadline = Instant::now() + START_TIMEOUT;
    loop {
        if let Some(pid) = live_watcher(dir, token) {
            return Ok(report(pid, false));
        }
        if let Some(result) = read_json::<GuardResult>(&result_file(dir, token))? {
            return Err(err(
                format!("guard {token}"),
                GuardErrorKind::Fired(Box::new(result)),
            ));
        }
        if Instant::now() >= deadline {
            return Err(err(
                format!("start the guard for {token}"),
                GuardErrorKind::Start(format!(
                    "no live watcher wrote {} within {} s",
                    pid_file(dir, token).display(),
                    START_TIMEOUT.as_secs()
                )),
            ));
        }
        std::thread::sleep(Duration::from_millis(20));
    }
}

/// The watcher (`guard watch`): records its pid, then polls its lease every [`POLL`] and reverts
/// the fault when the lease expires, is missing, or a revert is requested; exits without
/// reverting when disarmed. Leaves `TOKEN.result.json` either way.
pub fn watch(dir: &Path, token: &str) -> Result<GuardResult, GuardError> {
    check_token(token)?;
    let me = std::process::id();
    let (_, start) = proc_stat(me).ok_or_else(|| {
        err(
            "read /proc/self/stat",
            GuardErrorKind::Format("unparsable".into()),
        )
    })?;
    write_atomic(&pid_file(dir, token), format!("{me} {start}\n").as_bytes())?;
    let mut bad_reads = 0;
    loop {
        let lease = match read_json::<Lease>(&lease_file(dir, token)) {
            Ok(lease) => {
                if lease.is_none() {
                    bad_reads += 1;
                } else {
                    bad_reads = 0;
                }
                lease
            }
            Err(_) => {
                bad_reads += 1;
                None
            }
        };
        if lease.is_none() && bad_reads < BAD_READS {
            std::thread::sleep(POLL);
            continue;
        }
        match decide(lease.as_ref(), boot_ms()?) {
            Decision::Wait => std::thread::sleep(POLL),
            Decision::Disarmed => {
                let journal = read_json::<GuardJournal>(&journal_file(dir, token))?;
                let result = disarmed_result(token, journal.as_ref())?;
                finish(dir, token, &result)?;
                return Ok(result);
            }
            Decision::Revert { reason, late_ms } => {
                write_atomic(&reverting_file(dir, token), b"reverting\n")?;
                // A renewal may have landed between the read above and the marker.
                let again = read_json::<Lease>(&lease_file(dir, token)).ok().flatten();
                if again.is_some() && matches!(decide(again.as_ref(), boot_ms()?), Decision::Wait) {
                    remove(&reverting_file(dir, token));
                    continue;
                }
                let journal =
                    read_json::<GuardJournal>(&journal_file(dir, token))?.ok_or_else(|| {
                        err(
                            format!("guard {token}"),
                            GuardErrorKind::Format("journal missing: nothing to revert".into()),
                        )
                    })?;
                let result = revert_journal(&journal, &reason, late_ms)?;
                finish(dir, token, &result)?;
                return Ok(result);
            }
        }
    }
}

fn disarmed_result(token: &str, journal: Option<&GuardJournal>) -> Result<GuardResult, GuardError> {
    Ok(GuardResult {
        format: FORMAT,
        token: token.to_string(),
        run_id: journal.map(|j| j.run_id.clone()).unwrap_or_default(),
        fault: journal.map(|j| j.fault.clone()).unwrap_or_default(),
        host: journal.map(|j| j.host.clone()).unwrap_or_default(),
        outcome: Outcome::Disarmed,
        reason: "disarmed by the orchestrator".into(),
        steps: Vec::new(),
        checks: Vec::new(),
        attempts: 0,
        late_ms: None,
        finished_unix_ms: clock::unix_ms(),
        finished_boot_ms: boot_ms()?,
    })
}

/// Writes the result, then removes journal, lease, marker and pid file (in that order: the
/// result exists before the guard stops looking alive).
fn finish(dir: &Path, token: &str, result: &GuardResult) -> Result<(), GuardError> {
    write_json(&result_file(dir, token), result)?;
    for path in [
        journal_file(dir, token),
        lease_file(dir, token),
        reverting_file(dir, token),
        pid_file(dir, token),
    ] {
        remove(&path);
    }
    Ok(())
}

/// What `renew` did.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct RenewReport {
    /// The fault token.
    pub token: String,
    /// The watcher's pid.
    pub pid: u32,
    /// Renewals so far.
    pub renewals: u64,
    /// Lease length, milliseconds.
    pub lease_ms: u64,
}

/// Pushes the deadline of `token` to now + `lease` (default: the armed length). Fails with
/// [`GuardErrorKind::Missing`] when no live watcher guards the token (revert now!) and with
/// [`GuardErrorKind::Fired`] when it already reverted.
pub fn renew(dir: &Path, token: &str, lease: Option<Duration>) -> Result<RenewReport, GuardError> {
    check_token(token)?;
    let context = format!("guard {token} in {}", dir.display());
    if let Some(result) = read_json::<GuardResult>(&result_file(dir, token))? {
        return Err(err(context, GuardErrorKind::Fired(Box::new(result))));
    }
    let Some(pid) = live_watcher(dir, token) else {
        return Err(err(
            context,
            GuardErrorKind::Missing(
                "no live watcher (killed, host rebooted, or never armed)".into(),
            ),
        ));
    };
    let Some(current) = read_json::<Lease>(&lease_file(dir, token))? else {
        return Err(err(
            context,
            GuardErrorKind::Missing("no lease file".into()),
        ));
    };
    if current.state != LeaseState::Armed {
        return Err(err(
            context,
            GuardErrorKind::Missing(format!("the lease is {:?}, not armed", current.state)),
        ));
    }
    let lease_ms = lease.map_or(current.lease_ms, |l| {
        u64::try_from(l.as_millis()).unwrap_or(u64::MAX)
    });
    let renewed = Lease {
        lease_ms,
        expires_boot_ms: boot_ms()?.saturating_add(lease_ms),
        renewals: current.renewals + 1,
        ..current
    };
    write_json(&lease_file(dir, token), &renewed)?;
    if reverting_file(dir, token).exists() || live_watcher(dir, token).is_none() {
        return Err(err(
            context,
            GuardErrorKind::Missing("the guard started reverting before this renewal".into()),
        ));
    }
    Ok(RenewReport {
        token: token.to_string(),
        pid,
        renewals: renewed.renewals,
        lease_ms,
    })
}

/// What `disarm` did.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct DisarmReport {
    /// The fault token.
    pub token: String,
    /// Whether a live watcher was stopped (false: it was already gone — killed, or never ran).
    pub watcher_stopped: bool,
}

/// Stops the guard of `token` without reverting (the orchestrator reverted the fault itself) and
/// removes its files. Fails with [`GuardErrorKind::Fired`] when the guard had reverted already.
pub fn disarm(dir: &Path, token: &str) -> Result<DisarmReport, GuardError> {
    check_token(token)?;
    let context = format!("guard {token} in {}", dir.display());
    let fired = |dir: &Path| -> Result<Option<GuardResult>, GuardError> {
        Ok(read_json::<GuardResult>(&result_file(dir, token))?
            .filter(|r| r.outcome != Outcome::Disarmed))
    };
    if let Some(result) = fired(dir)? {
        remove_all(dir, token);
        return Err(err(context, GuardErrorKind::Fired(Box::new(result))));
    }
    let watcher = watcher_identity(dir, token);
    if let Some(mut lease) = read_json::<Lease>(&lease_file(dir, token))? {
        lease.state = LeaseState::Disarmed;
        write_json(&lease_file(dir, token), &lease)?;
    }
    if let Some((pid, start)) = watcher {
        // Until the process itself is gone (its pid file goes a moment before it exits).
        let deadline = Instant::now() + Duration::from_secs(3) + STEP_TIMEOUT * ATTEMPTS;
        while process_alive(pid, start) {
            if Instant::now() >= deadline {
                return Err(err(
                    context,
                    GuardErrorKind::Start("the watcher did not stop after disarm".into()),
                ));
            }
            std::thread::sleep(Duration::from_millis(20));
        }
    }
    if let Some(result) = fired(dir)? {
        remove_all(dir, token);
        return Err(err(context, GuardErrorKind::Fired(Box::new(result))));
    }
    remove_all(dir, token);
    Ok(DisarmReport {
        token: token.to_string(),
        watcher_stopped: watcher.is_some(),
    })
}

/// One guard as found in a guard directory.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct GuardEntry {
    /// The fault token.
    pub token: String,
    /// Its journal, when present.
    pub journal: Option<GuardJournal>,
    /// Its lease, when present.
    pub lease: Option<Lease>,
    /// The live watcher's pid.
    pub watcher: Option<u32>,
    /// Its result, when it finished.
    pub result: Option<GuardResult>,
    /// Milliseconds until the lease expires (negative: overdue), when armed.
    pub remaining_ms: Option<i64>,
}

fn tokens(dir: &Path) -> Result<Vec<String>, GuardError> {
    let entries = match fs::read_dir(dir) {
        Ok(entries) => entries,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(Vec::new()),
        Err(e) => {
            return Err(err(
                format!("list {}", dir.display()),
                GuardErrorKind::Io(e),
            ));
        }
    };
    let mut tokens: Vec<String> = entries
        .filter_map(|e| e.ok())
        .filter_map(|e| {
            e.file_name()
                .to_str()
                .and_then(token_of_file)
                .map(str::to_string)
        })
        .collect();
    tokens.sort();
    tokens.dedup();
    Ok(tokens)
}

/// Every guard in `dir` (read-only; an audit).
pub fn status(dir: &Path) -> Result<Vec<GuardEntry>, GuardError> {
    let now = boot_ms()?;
    tokens(dir)?
        .into_iter()
        .map(|token| {
            let lease = read_json::<Lease>(&lease_file(dir, &token)).ok().flatten();
            let remaining_ms = lease
                .as_ref()
                .filter(|l| l.state == LeaseState::Armed)
                .map(|l| {
                    i64::try_from(l.expires_boot_ms).unwrap_or(i64::MAX)
                        - i64::try_from(now).unwrap_or(i64::MAX)
                });
            Ok(GuardEntry {
                journal: read_json(&journal_file(dir, &token)).ok().flatten(),
                watcher: live_watcher(dir, &token),
                result: read_json(&result_file(dir, &token)).ok().flatten(),
                lease,
                remaining_ms,
                token,
            })
        })
        .collect()
}

/// What a sweep found for one token.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Found {
    /// A live watcher of an earlier run: told to revert now.
    LiveGuard,
    /// A journal whose watcher is gone: reverted inline.
    OrphanJournal,
    /// A result left by a guard that fired (read and removed).
    Result,
    /// Only stray files (a lease or pid file without journal).
    Stray,
}

/// One guard a sweep dealt with.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct SweptGuard {
    /// The fault token.
    pub token: String,
    /// What was there.
    pub found: Found,
    /// What reverting it did (or what the guard had done), when known.
    pub result: Option<GuardResult>,
}

/// Before a run: every guard in `dir` is an earlier run's. Live watchers are told to revert now
/// (waited for up to `wait`), orphaned journals are reverted inline, results are collected; then
/// the token's files are removed. Returns what was found.
pub fn sweep(dir: &Path, wait: Duration) -> Result<Vec<SweptGuard>, GuardError> {
    let mut swept = Vec::new();
    for entry in status(dir)? {
        let token = entry.token.clone();
        let (found, result) = if entry.watcher.is_some() {
            if let Some(mut lease) = entry.lease.clone() {
                lease.state = LeaseState::RevertNow;
                write_json(&lease_file(dir, &token), &lease)?;
            } else {
                remove(&lease_file(dir, &token));
            }
            let deadline = Instant::now() + wait;
            let mut result = None;
            while Instant::now() < deadline {
                result = read_json::<GuardResult>(&result_file(dir, &token))
                    .ok()
                    .flatten();
                if result.is_some() {
                    break;
                }
                std::thread::sleep(Duration::from_millis(20));
            }
            if result.is_none() {
                // Still reverting: leave its files so an audit reports it.
                swept.push(SweptGuard {
                    token,
                    found: Found::LiveGuard,
                    result: None,
                });
                continue;
            }
            (Found::LiveGuard, result)
        } else if let Some(journal) = &entry.journal {
            let result = revert_journal(
                journal,
                "swept before a run: its guard was gone (killed or host rebooted)",
                None,
            )?;
            (Found::OrphanJournal, Some(result))
        } else if entry.result.is_some() {
            (Found::Result, entry.result.clone())
        } else {
            (Found::Stray, None)
        };
        remove_all(dir, &token);
        swept.push(SweptGuard {
            token,
            found,
            result,
        });
    }
    Ok(swept)
}

/// Reverts `token`'s journal now, in this process (no watcher needed), writes the result and
/// removes the guard's files; a live watcher is first told to stand down.
pub fn revert_now(dir: &Path, token: &str, reason: &str) -> Result<GuardResult, GuardError> {
    check_token(token)?;
    let journal = read_json::<GuardJournal>(&journal_file(dir, token))?.ok_or_else(|| {
        err(
            format!("guard {token} in {}", dir.display()),
            GuardErrorKind::Missing("no journal".into()),
        )
    })?;
    if let Some(mut lease) = read_json::<Lease>(&lease_file(dir, token))? {
        lease.state = LeaseState::Disarmed;
        write_json(&lease_file(dir, token), &lease)?;
        let deadline = Instant::now() + Duration::from_secs(3);
        while live_watcher(dir, token).is_some() && Instant::now() < deadline {
            std::thread::sleep(Duration::from_millis(20));
        }
    }
    let result = revert_journal(&journal, reason, None)?;
    remove_all(dir, token);
    Ok(result)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn lease(state: LeaseState, expires: u64) -> Lease {
        Lease {
            format: FORMAT,
            token: "t".into(),
            lease_ms: 30_000,
            expires_boot_ms: expires,
            renewals: 2,
            state,
        }
    }

    #[test]
    fn decisions() {
        assert_eq!(
            decide(Some(&lease(LeaseState::Armed, 100)), 99),
            Decision::Wait
        );
        assert!(matches!(
            decide(Some(&lease(LeaseState::Armed, 100)), 100),
            Decision::Revert {
                late_ms: Some(0),
                ..
            }
        ));
        match decide(Some(&lease(LeaseState::Armed, 100)), 350) {
            Decision::Revert { reason, late_ms } => {
                assert_eq!(late_ms, Some(250));
                assert!(reason.contains("lease expired (30000 ms"), "{reason}");
            }
            other => panic!("{other:?}"),
        }
        assert_eq!(
            decide(Some(&lease(LeaseState::Disarmed, 0)), 999),
            Decision::Disarmed
        );
        assert!(matches!(
            decide(Some(&lease(LeaseState::RevertNow, u64::MAX)), 1),
            Decision::Revert { late_ms: None, .. }
        ));
        // No lease: a guard never assumes its fault may stay.
        assert!(matches!(decide(None, 1), Decision::Revert { .. }));
    }

    #[test]
    fn stat_parsing_survives_odd_command_names() {
        let text = "42 (a) b (c) S 1 42 42 0 -1 4194560 100 0 0 0 1 2 0 0 20 0 1 0 98765 1000 10";
        assert_eq!(parse_stat(text), Some(('S', 98765)));
        assert_eq!(parse_stat("garbage"), None);
    }

    #[test]
    fn steps_report_status_stderr_and_timeouts() {
        let ok = run_step(
            &Step {
                what: "ok".into(),
                script: "echo fine >&2; exit 0".into(),
            },
            Duration::from_secs(5),
        );
        assert!(ok.ok);
        assert_eq!(ok.stderr, "fine");
        let bad = run_step(
            &Step {
                what: "bad".into(),
                script: "exit 3".into(),
            },
            Duration::from_secs(5),
        );
        assert_eq!((bad.ok, bad.status), (false, Some(3)));
        let slow = run_step(
            &Step {
                what: "slow".into(),
                script: "sleep 30".into(),
            },
            Duration::from_millis(200),
        );
        assert!(!slow.ok && slow.status.is_none(), "{slow:?}");
        assert!(slow.stderr.contains("timed out"));
    }

    #[test]
    fn revert_retries_until_checks_pass_and_reports_residue_otherwise() {
        let dir = tempfile::tempdir().expect("tempdir");
        let flag = dir.path().join("obj");
        fs::write(&flag, "x").expect("write");
        let q = flag.display().to_string();
        let journal = GuardJournal {
            format: FORMAT,
            token: "t".into(),
            run_id: "r".into(),
            fault: "test".into(),
            host: "h".into(),
            created_unix_ms: 0,
            steps: vec![Step {
                what: "remove".into(),
                script: format!("rm -f '{q}'"),
            }],
            checks: vec![Step {
                what: "gone".into(),
                script: format!("[ ! -e '{q}' ]"),
            }],
        };
        let result = revert_journal(&journal, "test", None).expect("reverts");
        assert_eq!((result.outcome, result.attempts), (Outcome::Reverted, 1));
        let stuck = GuardJournal {
            steps: vec![],
            checks: vec![Step {
                what: "never".into(),
                script: "exit 1".into(),
            }],
            ..journal
        };
        let result = revert_journal(&stuck, "test", None).expect("runs");
        assert_eq!(
            (result.outcome, result.attempts),
            (Outcome::RevertFailed, ATTEMPTS)
        );
    }
}
