//! The node process on a host: finding the recorded pid (verified), pausing and continuing it,
//! and restarting it through the service manager deploy recorded (pure script builders).
//!
//! The pid is the systemd unit's `MainPID` (deploy's systemd mode) or the pid file of the
//! supervised background process, and is only used when `/proc/PID/exe` is this install's
//! binary (a recycled pid is never signalled). A pause records the process's start time; the
//! SIGCONT that undoes it is only sent to a process with that pid *and* start time, and only
//! while the pause's owner file names the fault's token.

use serde::{Deserialize, Serialize};
use soak_inventory::Host;
use soak_inventory::node::{NodeLayout, unit_name};
use soak_inventory::remote::sh_quote;

/// Exit code: no running node of this install.
pub const EXIT_NO_NODE: i32 = 3;

/// A shell function `soak_node_pid` printing the running node's pid (systemd MainPID or the
/// pid file), only when its executable is this install's binary.
pub fn pid_function(host: &Host) -> String {
    let l = NodeLayout::new(host);
    format!(
        "soak_node_pid() {{\n\
         \x20 pid=\n\
         \x20 if [ \"$(cat /proc/1/comm 2>/dev/null)\" = systemd ] && command -v systemctl >/dev/null 2>&1 \
         && systemctl is-active --quiet {unit} 2>/dev/null; then pid=$(systemctl show -p MainPID --value {unit}); fi\n\
         \x20 if [ -z \"$pid\" ] || [ \"$pid\" = 0 ]; then pid=$(cat {pidfile} 2>/dev/null) || return 1; fi\n\
         \x20 case \"$pid\" in ''|*[!0-9]*) return 1;; esac\n\
         \x20 exe=$(readlink \"/proc/$pid/exe\" 2>/dev/null) || return 1\n\
         \x20 case \"$exe\" in {bin}|{bin}' (deleted)') echo \"$pid\";; *) return 1;; esac\n\
         }}\n\
         soak_stat() {{ s=$(cat \"/proc/$1/stat\" 2>/dev/null) || return 1; s=${{s##*) }}; set -- $s; echo \"$1 ${{20}}\"; }}\n",
        unit = sh_quote(&unit_name(host)),
        pidfile = sh_quote(&l.pid_file()),
        bin = sh_quote(&l.binary()),
    )
}

/// The owner file of a pause of `pid`.
pub fn pause_owner(guard_dir: &str, pid: u32) -> String {
    format!("{guard_dir}/pause-{pid}.owner")
}

/// Finds the running node: prints `pid=`, `start=`, `state=`; exits 3 when none runs.
pub fn find_script(host: &Host) -> String {
    format!(
        "{pidfn}\
         pid=$(soak_node_pid) || {{ echo 'no running soak-node of this install (pid file or systemd unit)' >&2; exit {EXIT_NO_NODE}; }}\n\
         set -- $(soak_stat \"$pid\")\n\
         echo \"pid=$pid\"; echo \"start=$2\"; echo \"state=$1\"\n",
        pidfn = pid_function(host),
    )
}

/// Pauses the node found by [`find_script`]: only if `pid` still is this install's node and
/// started at `start` (exit 4 otherwise), records `token` as the pause's owner, sends SIGSTOP and
/// waits (≤ 2 s) for state `T`. Prints `pid=`, `start=`, `state=`.
pub fn pause_script(host: &Host, pid: u32, start: u64, guard_dir: &str, token: &str) -> String {
    format!(
        "{pidfn}\
         now=$(soak_node_pid) || now=\n\
         set -- $(soak_stat {pid})\n\
         if [ \"$now\" != {pid} ] || [ \"$2\" != {start} ]; then echo 'the node process changed since it was found: not paused' >&2; exit 4; fi\n\
         mkdir -p {gdir}\n\
         echo {token} > {owner}\n\
         kill -STOP {pid}\n\
         i=0; while [ $i -lt 40 ]; do set -- $(soak_stat {pid}); [ \"$1\" = T ] && break; sleep 0.05; i=$((i+1)); done\n\
         set -- $(soak_stat {pid})\n\
         echo \"pid={pid}\"; echo \"start={start}\"; echo \"state=$1\"\n",
        pidfn = pid_function(host),
        gdir = sh_quote(guard_dir),
        owner = sh_quote(&pause_owner(guard_dir, pid)),
        token = sh_quote(token),
    )
}

/// The idempotent resume (a revert step): SIGCONT to `pid` only if it is still the process that
/// started at `start` and the pause is still this token's.
pub fn resume_script(pid: u32, start: u64, guard_dir: &str, token: &str) -> String {
    let owner = sh_quote(&pause_owner(guard_dir, pid));
    format!(
        "owner=$(cat {owner} 2>/dev/null || true)\n\
         if [ -n \"$owner\" ] && [ \"$owner\" != {token} ]; then echo \"pid {pid}: paused by fault $owner now: left alone\" >&2; exit 0; fi\n\
         s=$(cat /proc/{pid}/stat 2>/dev/null) || {{ rm -f {owner}; exit 0; }}\n\
         s=${{s##*) }}; set -- $s\n\
         if [ \"${{20}}\" = {start} ]; then kill -CONT {pid}; fi\n\
         rm -f {owner}\n",
        token = sh_quote(token),
    )
}

/// Clean check of a pause: the process (same pid and start) is not stopped.
pub fn resumed_check(pid: u32, start: u64) -> String {
    format!(
        "s=$(cat /proc/{pid}/stat 2>/dev/null) || exit 0\n\
         s=${{s##*) }}; set -- $s\n\
         [ \"${{20}}\" != {start} ] || [ \"$1\" != T ]\n"
    )
}

/// What a pause found and did.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Paused {
    /// The node's pid.
    pub pid: u32,
    /// Its start time, clock ticks after boot (its identity with the pid).
    pub start_ticks: u64,
    /// Its state right after SIGSTOP (`T` when effective).
    pub state: String,
}

/// Parses [`pause_script`]'s output.
pub fn parse_paused(stdout: &str) -> Option<Paused> {
    let get = |key: &str| {
        stdout
            .lines()
            .find_map(|l| l.strip_prefix(key).and_then(|r| r.strip_prefix('=')))
            .map(str::trim)
    };
    Some(Paused {
        pid: get("pid")?.parse().ok()?,
        start_ticks: get("start")?.parse().ok()?,
        state: get("state")?.to_string(),
    })
}

/// The state letter of the process `pid` when it is still the one that started at `start`.
pub fn state_script(pid: u32, start: u64) -> String {
    format!(
        "s=$(cat /proc/{pid}/stat 2>/dev/null) || {{ echo state=gone; exit 0; }}\n\
         s=${{s##*) }}; set -- $s\n\
         if [ \"${{20}}\" = {start} ]; then echo \"state=$1\"; else echo state=gone; fi\n"
    )
}

/// Restart through systemd: `systemctl restart UNIT`, then wait (≤ `wait_secs`) for a new
/// `node.json`; prints `pid=MAINPID` and `node.json` between markers like deploy.
pub fn systemd_restart_script(host: &Host, wait_secs: u64) -> String {
    let l = NodeLayout::new(host);
    let unit = sh_quote(&unit_name(host));
    let info = sh_quote(&l.node_info());
    format!(
        "rm -f {info}\n\
         systemctl restart {unit} || exit 7\n\
         i=0; while [ $i -lt {ticks} ]; do [ -s {info} ] && break; sleep 0.05; i=$((i+1)); done\n\
         echo \"pid=$(systemctl show -p MainPID --value {unit})\"\n\
         if [ -s {info} ]; then echo '--- node.json'; cat {info}; echo; echo '--- end node.json'; fi\n",
        ticks = wait_secs.saturating_mul(20).max(1),
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    fn host() -> Host {
        let mut h = Host::with_defaults("h1", "192.0.2.1");
        h.install_dir = "/opt/soak node".into();
        h
    }

    #[test]
    fn scripts_are_valid_sh() {
        for script in [
            pause_script(&host(), 42, 1000, "/opt/soak node/guard", "t"),
            find_script(&host()),
            resume_script(42, 1000, "/g", "t"),
            resumed_check(42, 1000),
            state_script(42, 1000),
            systemd_restart_script(&host(), 30),
        ] {
            let ok = std::process::Command::new("sh")
                .args(["-n", "-c", &script])
                .status()
                .is_ok_and(|s| s.success());
            assert!(ok, "sh -n rejected:\n{script}");
        }
        let systemd = systemd_restart_script(&host(), 30);
        assert!(systemd.contains("systemctl restart 'soak-node-h1.service' || exit 7"));
        assert!(pid_function(&host()).contains("'/opt/soak node/bin/soak-node'"));
    }

    #[test]
    fn stat_fields_are_read_by_the_shell_helpers() {
        // soak_stat on our own process: state and start time as /proc says.
        let me = std::process::id();
        let script = format!("{}soak_stat {me}", pid_function(&host()));
        let out = std::process::Command::new("sh")
            .args(["-c", &script])
            .output()
            .expect("sh runs");
        let text = String::from_utf8_lossy(&out.stdout);
        let stat = std::fs::read_to_string(format!("/proc/{me}/stat")).expect("stat");
        let rest = stat.rsplit_once(") ").map(|(_, r)| r).unwrap_or("");
        let fields: Vec<&str> = rest.split_whitespace().collect();
        assert_eq!(text.trim(), format!("{} {}", fields[0], fields[19]));
        let check = std::process::Command::new("sh")
            .args(["-c", &resumed_check(me, fields[19].parse().expect("ticks"))])
            .status()
            .expect("sh runs");
        assert!(check.success(), "a running process counts as resumed");
    }

    #[test]
    fn paused_output_parses() {
        assert_eq!(
            parse_paused("pid=42\nstart=987\nstate=T\n"),
            Some(Paused {
                pid: 42,
                start_ticks: 987,
                state: "T".into()
            })
        );
        assert_eq!(parse_paused("pid=x\n"), None);
    }
}
