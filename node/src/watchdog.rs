//! `--exit-with-parent PID`: shut the node down when the process that started it is gone.
//!
//! `soak run` starts its local nodes in their own process group (so a terminal Ctrl-C reaches
//! only `soak`, which stops them in order) and kills them on drop and on SIGTERM/SIGINT. If
//! `soak` itself is SIGKILLed, none of that runs. The usual fix, `prctl(PR_SET_PDEATHSIG)`,
//! needs `unsafe` in `pre_exec`, which the workspace denies, so the node watches instead.
//!
//! How the watched process is judged gone, every [`PERIOD`]:
//!
//! 1. **`/proc/PID/stat`** — read once at start-up to record the process's *start time*
//!    (field 22, clock ticks since boot), then re-read each period. The process is gone when the
//!    file has disappeared, when its state is `Z`/`X` (dead but not yet reaped: a SIGKILLed
//!    `soak` stays a zombie until *its* parent waits for it, and `kill(pid, 0)` would still
//!    succeed), or when the start time differs (the pid was recycled by a new process — a bare
//!    existence check would be fooled by that).
//! 2. **`getppid()`** — when PID was our parent at start-up, a change of our parent pid means the
//!    kernel re-parented us (to init or a subreaper) because the parent exited. This needs no
//!    `/proc` at all, reacts in the same period, and covers hosts where `/proc` of the parent is
//!    hidden (`hidepid`).
//!
//! Either signal is enough. The cost is one small procfs read and one syscall per period.
//! The judgement ([`judge`]) and the `/proc/PID/stat` parser ([`parse_stat`]) are pure; only
//! [`Watched::check`] touches the system.

use std::time::Duration;

/// How often the watched process is checked. Short enough that orphans are gone in well under
/// a second, long enough to cost nothing measurable.
pub const PERIOD: Duration = Duration::from_millis(250);

/// The fields of `/proc/PID/stat` the watchdog needs.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ProcStat {
    /// Process state letter (`R`, `S`, `D`, `Z`, `X`, …).
    pub state: char,
    /// Start time after boot, clock ticks (field 22).
    pub start_time: u64,
}

/// Parses `/proc/PID/stat`. The command name (field 2) is in parentheses and may itself
/// contain spaces and `)`, so the fields are counted from the *last* `)`.
pub fn parse_stat(text: &str) -> Option<ProcStat> {
    let (_, rest) = text.rsplit_once(')')?;
    let mut fields = rest.split_ascii_whitespace();
    // Field 3 (state) is the first after the command name; field 22 is 19 further on.
    let state = fields.next()?.chars().next()?;
    let start_time = fields.nth(18)?.parse().ok()?;
    Some(ProcStat { state, start_time })
}

/// What one look at the watched process found.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Observation {
    /// `/proc/PID/stat` was read and parsed.
    Stat(ProcStat),
    /// `/proc/PID/stat` does not exist (no such process).
    NoProcess,
    /// `/proc/PID/stat` could not be read or parsed for another reason.
    Unreadable(String),
}

/// The verdict of one check.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Verdict {
    /// The watched process is still the one we started watching.
    Alive,
    /// It is gone; why.
    Gone(String),
}

/// Judges one check. `start_time` is the watched process's start time recorded at start-up
/// (`None` when `/proc` could not be read then: only the parent-pid check applies);
/// `parent_at_start` is our parent pid at start-up when it was the watched process, and
/// `parent_now` our parent pid now.
pub fn judge(
    pid: u32,
    start_time: Option<u64>,
    observation: &Observation,
    parent_at_start: Option<u32>,
    parent_now: u32,
) -> Verdict {
    if let Some(parent) = parent_at_start
        && parent_now != parent
    {
        return Verdict::Gone(format!(
            "parent process {pid} exited (re-parented to {parent_now})"
        ));
    }
    let Some(expected) = start_time else {
        return Verdict::Alive;
    };
    match observation {
        Observation::NoProcess => Verdict::Gone(format!("process {pid} no longer exists")),
        Observation::Stat(stat) if matches!(stat.state, 'Z' | 'X') => {
            Verdict::Gone(format!("process {pid} has exited (state {})", stat.state))
        }
        Observation::Stat(stat) if stat.start_time != expected => Verdict::Gone(format!(
            "process {pid} exited and its pid was reused (start time {} instead of {expected})",
            stat.start_time
        )),
        Observation::Stat(_) => Verdict::Alive,
        // A transient read error is not proof of death; the parent-pid check still applies.
        Observation::Unreadable(_) => Verdict::Alive,
    }
}

/// Looks at `/proc/PID/stat` now.
fn observe(pid: u32) -> Observation {
    match std::fs::read_to_string(format!("/proc/{pid}/stat")) {
        Ok(text) => match parse_stat(&text) {
            Some(stat) => Observation::Stat(stat),
            None => Observation::Unreadable(format!("unexpected /proc/{pid}/stat: {text:?}")),
        },
        Err(err) if err.kind() == std::io::ErrorKind::NotFound => Observation::NoProcess,
        Err(err) => Observation::Unreadable(format!("/proc/{pid}/stat: {err}")),
    }
}

/// Why watching could not start.
#[derive(Debug, thiserror::Error)]
pub enum WatchError {
    /// The process does not exist (or is already dead) at start-up.
    #[error("--exit-with-parent {pid}: {reason}")]
    Gone {
        /// The pid given.
        pid: u32,
        /// Why it counts as gone.
        reason: String,
    },
    /// Neither `/proc/PID/stat` is readable nor is PID our parent: nothing to watch with.
    #[error(
        "--exit-with-parent {pid}: cannot watch it ({detail}) and it is not this node's parent"
    )]
    Unwatchable {
        /// The pid given.
        pid: u32,
        /// The read error.
        detail: String,
    },
}

/// A process being watched, identified by pid *and* start time.
#[derive(Debug, Clone)]
pub struct Watched {
    pid: u32,
    start_time: Option<u64>,
    parent_at_start: Option<u32>,
}

impl Watched {
    /// Records the identity of `pid`. Fails when it is already gone, or when it can be watched
    /// neither through `/proc` nor as our parent.
    pub fn new(pid: u32) -> Result<Watched, WatchError> {
        let parent = std::os::unix::process::parent_id();
        let parent_at_start = (parent == pid).then_some(pid);
        let start_time = match observe(pid) {
            Observation::Stat(stat) if matches!(stat.state, 'Z' | 'X') => {
                return Err(WatchError::Gone {
                    pid,
                    reason: format!("the process has already exited (state {})", stat.state),
                });
            }
            Observation::Stat(stat) => Some(stat.start_time),
            Observation::NoProcess if parent_at_start.is_none() => {
                return Err(WatchError::Gone {
                    pid,
                    reason: "no such process".to_owned(),
                });
            }
            Observation::Unreadable(detail) if parent_at_start.is_none() => {
                return Err(WatchError::Unwatchable { pid, detail });
            }
            // It is our parent but /proc does not show it (not mounted, hidepid): the
            // parent-pid check alone watches it.
            Observation::NoProcess | Observation::Unreadable(_) => None,
        };
        Ok(Watched {
            pid,
            start_time,
            parent_at_start,
        })
    }

    /// The watched pid.
    pub fn pid(&self) -> u32 {
        self.pid
    }

    /// One check now.
    pub fn check(&self) -> Verdict {
        judge(
            self.pid,
            self.start_time,
            &observe(self.pid),
            self.parent_at_start,
            std::os::unix::process::parent_id(),
        )
    }

    /// Resolves once the watched process is gone, with the reason; checks every [`PERIOD`].
    pub async fn gone(&self) -> String {
        let mut ticks = tokio::time::interval(PERIOD);
        ticks.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        loop {
            ticks.tick().await;
            if let Verdict::Gone(reason) = self.check() {
                return reason;
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A real line from /proc (bash), with the command name swapped in.
    fn stat_line(comm: &str, state: char, start: u64) -> String {
        format!(
            "4242 ({comm}) {state} 1 4242 4242 34816 4242 4194560 1087 0 0 0 1 0 0 0 20 0 1 0 \
             {start} 9252864 1280 18446744073709551615 1 1 0 0 0 0 65536 3670020 1266777851 0 0 \
             0 17 1 0 0 0 0 0"
        )
    }

    #[test]
    fn stat_is_parsed_after_the_last_parenthesis() {
        let stat = parse_stat(&stat_line("soak", 'S', 987_654)).expect("parses");
        assert_eq!(
            stat,
            ProcStat {
                state: 'S',
                start_time: 987_654
            }
        );
        // A command name with spaces and parentheses must not shift the fields.
        let tricky = parse_stat(&stat_line("a) Z 1 (b", 'R', 17)).expect("parses");
        assert_eq!(tricky.state, 'R');
        assert_eq!(tricky.start_time, 17);
        assert_eq!(parse_stat("garbage"), None);
        assert_eq!(parse_stat("1 (x) S 1 2"), None);
    }

    #[test]
    fn own_stat_parses_and_is_alive() {
        let me = std::process::id();
        let watched = Watched::new(me).expect("this process can be watched");
        assert!(watched.start_time.is_some());
        assert_eq!(watched.check(), Verdict::Alive);
    }

    #[test]
    fn a_recycled_pid_is_not_mistaken_for_the_watched_process() {
        let now = Observation::Stat(ProcStat {
            state: 'S',
            start_time: 2_000,
        });
        assert!(matches!(
            judge(42, Some(1_000), &now, None, 1),
            Verdict::Gone(reason) if reason.contains("reused")
        ));
        assert_eq!(judge(42, Some(2_000), &now, None, 1), Verdict::Alive);
    }

    #[test]
    fn a_zombie_or_a_missing_process_is_gone() {
        let zombie = Observation::Stat(ProcStat {
            state: 'Z',
            start_time: 1_000,
        });
        assert!(matches!(
            judge(42, Some(1_000), &zombie, None, 1),
            Verdict::Gone(_)
        ));
        assert!(matches!(
            judge(42, Some(1_000), &Observation::NoProcess, None, 1),
            Verdict::Gone(_)
        ));
    }

    #[test]
    fn reparenting_means_the_parent_is_gone_even_without_proc() {
        let unreadable = Observation::Unreadable("permission denied".into());
        assert_eq!(judge(42, None, &unreadable, Some(42), 42), Verdict::Alive);
        assert!(matches!(
            judge(42, None, &unreadable, Some(42), 1),
            Verdict::Gone(reason) if reason.contains("re-parented to 1")
        ));
        // A read error alone is not taken as death.
        assert_eq!(judge(42, Some(5), &unreadable, None, 1), Verdict::Alive);
    }

    #[test]
    fn watching_a_process_that_does_not_exist_is_refused() {
        // pid_max is at most 2^22; this pid cannot exist.
        let err = Watched::new(u32::MAX - 1).expect_err("no such process");
        assert!(err.to_string().contains("no such process"), "{err}");
    }
}
