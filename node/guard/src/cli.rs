//! `soak-node guard SUBCOMMAND`: the guard's command line (hand-parsed: std only).
//!
//! ```text
//! guard arm    --dir DIR --token T [--lease 30s] [--exe PATH] [--launcher auto|systemd-run|setsid|process-group]
//!              (journal JSON on stdin)
//! guard watch  --dir DIR --token T           (started by arm; the watcher)
//! guard renew  --dir DIR --token T [--lease DURATION]
//! guard disarm --dir DIR --token T
//! guard revert --dir DIR --token T           (revert now, inline)
//! guard status --dir DIR
//! guard sweep  --dir DIR [--wait 20s]
//! ```
//!
//! Every subcommand prints one JSON document on stdout. Exit codes: 0 done; 1 failure; 2 usage;
//! 3 the guard is missing or already fired (from renew or disarm: the orchestrator must revert
//! the fault itself and verify clean).

use std::ffi::OsString;
use std::io::Read;
use std::path::PathBuf;
use std::process::ExitCode;
use std::time::Duration;

use serde::Serialize;

use crate::launch::Launcher;
use crate::run::{self, LauncherChoice};
use crate::{DEFAULT_LEASE, GuardError, GuardErrorKind, GuardJournal};

/// Exit code: guard missing or already fired.
pub const EXIT_GONE: u8 = 3;

const USAGE: &str = "usage: soak-node guard arm|watch|renew|disarm|revert|status|sweep --dir DIR [--token T] \
                     [--lease DURATION] [--wait DURATION] [--exe PATH] [--launcher auto|systemd-run|setsid|process-group]";

/// Parses a duration: `30s`, `500ms`, `2m`, or plain seconds.
pub fn parse_duration(text: &str) -> Option<Duration> {
    let text = text.trim();
    let (digits, unit) = text
        .find(|c: char| !c.is_ascii_digit())
        .map_or((text, ""), |i| text.split_at(i));
    let n: u64 = digits.parse().ok()?;
    match unit {
        "" | "s" => Some(Duration::from_secs(n)),
        "ms" => Some(Duration::from_millis(n)),
        "m" => n.checked_mul(60).map(Duration::from_secs),
        _ => None,
    }
}

#[derive(Debug, Default)]
struct Args {
    dir: Option<PathBuf>,
    token: Option<String>,
    lease: Option<Duration>,
    wait: Option<Duration>,
    exe: Option<PathBuf>,
    launcher: Option<LauncherChoice>,
}

fn parse(args: &[String]) -> Result<Args, String> {
    let mut out = Args::default();
    let mut it = args.iter();
    while let Some(flag) = it.next() {
        let mut value = || it.next().ok_or_else(|| format!("{flag} needs a value"));
        match flag.as_str() {
            "--dir" => out.dir = Some(PathBuf::from(value()?)),
            "--token" => out.token = Some(value()?.clone()),
            "--lease" | "--wait" => {
                let text = value()?;
                let d = parse_duration(text)
                    .filter(|d| !d.is_zero())
                    .ok_or_else(|| format!("{flag} {text:?}: expected e.g. 30s, 500ms, 2m"))?;
                if flag == "--lease" {
                    out.lease = Some(d);
                } else {
                    out.wait = Some(d);
                }
            }
            "--exe" => out.exe = Some(PathBuf::from(value()?)),
            "--launcher" => {
                out.launcher = Some(match value()?.as_str() {
                    "auto" => LauncherChoice::Auto,
                    "systemd-run" => LauncherChoice::Forced(Launcher::SystemdRun),
                    "setsid" => LauncherChoice::Forced(Launcher::Setsid),
                    "process-group" => LauncherChoice::Forced(Launcher::ProcessGroup),
                    other => return Err(format!("unknown --launcher {other:?}")),
                });
            }
            other => return Err(format!("unknown argument {other:?}")),
        }
    }
    if let Some(dir) = &out.dir
        && !dir.is_absolute()
    {
        return Err(format!("--dir {} must be absolute", dir.display()));
    }
    Ok(out)
}

fn print<T: Serialize>(value: &T) {
    match serde_json::to_string(value) {
        Ok(text) => println!("{text}"),
        Err(e) => eprintln!("soak-node guard: cannot print the result: {e}"),
    }
}

fn failure(e: &GuardError) -> ExitCode {
    eprintln!("soak-node guard: {e}");
    match &e.kind {
        GuardErrorKind::Fired(result) => {
            print(result);
            ExitCode::from(EXIT_GONE)
        }
        GuardErrorKind::Missing(_) => ExitCode::from(EXIT_GONE),
        GuardErrorKind::Usage(_) => ExitCode::from(2),
        _ => ExitCode::from(1),
    }
}

/// Runs `guard ARGS…` (the arguments after `guard`).
pub fn main(args: impl IntoIterator<Item = OsString>) -> ExitCode {
    let args: Vec<String> = args
        .into_iter()
        .map(|a| a.to_string_lossy().into_owned())
        .collect();
    let Some((command, rest)) = args.split_first() else {
        eprintln!("{USAGE}");
        return ExitCode::from(2);
    };
    let parsed = match parse(rest) {
        Ok(p) => p,
        Err(message) => {
            eprintln!("soak-node guard {command}: {message}\n{USAGE}");
            return ExitCode::from(2);
        }
    };
    let Some(dir) = parsed.dir.clone() else {
        eprintln!("soak-node guard {command}: --dir is required\n{USAGE}");
        return ExitCode::from(2);
    };
    let token = || {
        parsed.token.clone().ok_or_else(|| GuardError {
            context: format!("guard {command}"),
            kind: GuardErrorKind::Usage("--token is required".into()),
        })
    };
    let result: Result<(), GuardError> = (|| match command.as_str() {
        "arm" => {
            let mut input = String::new();
            std::io::stdin()
                .read_to_string(&mut input)
                .map_err(|e| GuardError {
                    context: "read the journal from stdin".into(),
                    kind: GuardErrorKind::Io(e),
                })?;
            let journal: GuardJournal = serde_json::from_str(&input).map_err(|e| GuardError {
                context: "parse the journal from stdin".into(),
                kind: GuardErrorKind::Format(e.to_string()),
            })?;
            let token = token()?;
            if journal.token != token {
                return Err(GuardError {
                    context: "guard arm".into(),
                    kind: GuardErrorKind::Usage(format!(
                        "--token {token} but the journal is for {}",
                        journal.token
                    )),
                });
            }
            let exe = match parsed.exe.clone() {
                Some(exe) => exe,
                None => std::env::current_exe().map_err(|e| GuardError {
                    context: "find the guard's own binary".into(),
                    kind: GuardErrorKind::Io(e),
                })?,
            };
            let report = run::arm(
                &dir,
                &journal,
                parsed.lease.unwrap_or(DEFAULT_LEASE),
                &exe,
                parsed.launcher.unwrap_or(LauncherChoice::Auto),
            )?;
            print(&report);
            Ok(())
        }
        "watch" => run::watch(&dir, &token()?).map(|r| print(&r)),
        "renew" => run::renew(&dir, &token()?, parsed.lease).map(|r| print(&r)),
        "disarm" => run::disarm(&dir, &token()?).map(|r| print(&r)),
        "revert" => run::revert_now(&dir, &token()?, "revert requested by the orchestrator")
            .map(|r| print(&r)),
        "status" => run::status(&dir).map(|r| print(&r)),
        "sweep" => {
            run::sweep(&dir, parsed.wait.unwrap_or(Duration::from_secs(20))).map(|r| print(&r))
        }
        other => Err(GuardError {
            context: format!("guard {other}"),
            kind: GuardErrorKind::Usage(format!("unknown subcommand\n{USAGE}")),
        }),
    })();
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => failure(&e),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn durations() {
        assert_eq!(parse_duration("30s"), Some(Duration::from_secs(30)));
        assert_eq!(parse_duration("30"), Some(Duration::from_secs(30)));
        assert_eq!(parse_duration("250ms"), Some(Duration::from_millis(250)));
        assert_eq!(parse_duration("2m"), Some(Duration::from_secs(120)));
        assert_eq!(parse_duration("2h"), None);
        assert_eq!(parse_duration("s"), None);
    }

    #[test]
    fn arguments_are_checked() {
        assert!(parse(&["--dir".into(), "rel".into()]).is_err());
        assert!(parse(&["--lease".into(), "0s".into()]).is_err());
        assert!(parse(&["--bogus".into()]).is_err());
        let ok = parse(&[
            "--dir".into(),
            "/g".into(),
            "--token".into(),
            "t".into(),
            "--launcher".into(),
            "setsid".into(),
        ])
        .expect("parses");
        assert_eq!(ok.token.as_deref(), Some("t"));
        assert_eq!(ok.launcher, Some(LauncherChoice::Forced(Launcher::Setsid)));
    }
}
