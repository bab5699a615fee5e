//! `soak run --resume DIR`: continues an interrupted (SIGINT/SIGTERM, sealed `interrupted`) or
//! crashed (SIGKILL, a power loss: still `running`) run into the same proof.
//!
//! Step one reads the proof without touching it: the plan from `config.json` (flags that would
//! change it are refused), the gate from `gate.toml`, the windows recorded, and from
//! `events.jsonl` the fleet the run had and where its last segment stopped. The next window is
//! the first without a complete record; the window the interruption cut short is *lost*: its
//! span (from its start to the resume) is an evidence gap, recorded in `run.json`'s `resumes`
//! and judged UNKNOWN, never as a window — a partial record (SIGINT) is moved aside as
//! `windows/NNN/lost-K.json` — and the window is run again. Step two reopens the proof (its lock
//! refuses a run that is still alive), repairs torn last lines, and hands the run to the same
//! driver as a new run, starting at the next window.
//!
//! Local nodes: a SIGKILLed `soak` leaves its nodes to their `--exit-with-parent` watchdog,
//! which stops them within about 250 ms; an interrupted run stopped them itself. So a resume
//! never re-attaches local nodes: it waits until the previous processes are gone (stopping,
//! by pid, any that is still running with the run's data dir) and spawns the mesh again with
//! the same data dirs — same identities and peer ids, new instances (a new counter epoch each).
//! Inventory fleets are reached again over SSH: a node still running the same instance
//! continues its epoch, a node restarted meanwhile starts a new one.

use std::path::{Path, PathBuf};
use std::time::Duration;

use nix::sys::signal::{Signal, kill};
use nix::unistd::Pid;
use sha2::Digest;
use soak_gates::Profile;
use soak_proofs::{LostWindow, ProofWriter, ResumeRecord, RunStatus as ProofStatus};

use super::run::{RunArgs, RunPlan, Start, load_gate, resolve_node_bin};
use crate::exit::CliError;
use crate::runner::event::{FleetNode, RunEvent, now_ms};
use crate::runner::reporter::Progress;
use crate::runner::signals::Signals;

/// Flags `--resume` accepts besides itself: they change how the run is watched or started,
/// never what it plans.
const ALLOWED: &[&str] = &["resume", "events", "node_bin", "start_timeout"];

/// How long a previous node gets to exit on its own (its watchdog needs about 250 ms).
const PREVIOUS_EXIT: Duration = Duration::from_secs(5);

/// What a resume found: the record for the proof, and the previous run's local nodes.
#[derive(Debug, Clone)]
pub struct Resumed {
    /// Recorded in `run.json` (`resumes`) and emitted as [`RunEvent::Resumed`].
    pub record: ResumeRecord,
    /// The local nodes of the previous segment (to be gone before the mesh is spawned again).
    pub previous: Vec<PreviousNode>,
}

/// A local node of the previous segment.
#[derive(Debug, Clone)]
pub struct PreviousNode {
    /// Node name.
    pub name: String,
    /// Its pid then.
    pub pid: Option<u32>,
    /// Its data dir.
    pub data_dir: Option<PathBuf>,
}

fn proof_error(dir: &Path, err: &soak_proofs::Error) -> CliError {
    let message = format!("cannot resume {}: {err}: {}", dir.display(), err.kind);
    match err.kind {
        soak_proofs::ErrorKind::Io(_) => CliError::unavailable(message),
        _ => CliError::usage(message),
    }
}

/// Where the last segment of the event stream (after the last `resumed`) stopped.
#[derive(Debug, Default)]
struct Segment {
    /// The first signal of the segment: (name, unix ms).
    signal: Option<(String, u64)>,
    /// `window_started` of the segment: (index, unix ms).
    started: Vec<(u32, u64)>,
    /// The last `fleet_ready` of the whole stream.
    fleet: Vec<FleetNode>,
}

fn segment(events: &[serde_json::Value]) -> Segment {
    let last_resume = events
        .iter()
        .rposition(|e| e["event"] == "resumed")
        .map_or(0, |i| i + 1);
    let mut out = Segment::default();
    for (i, value) in events.iter().enumerate() {
        // Lines this build cannot read back (the `samples` summaries, older shapes) are skipped:
        // nothing here depends on them.
        let Ok(event) = serde_json::from_value::<RunEvent>(value.clone()) else {
            continue;
        };
        match event {
            RunEvent::FleetReady { nodes, .. } => out.fleet = nodes,
            RunEvent::Signal { signal, at_ms } if i >= last_resume && out.signal.is_none() => {
                out.signal = Some((signal, at_ms));
            }
            RunEvent::WindowStarted { window, at_ms, .. } if i >= last_resume => {
                out.started.push((window, at_ms));
            }
            _ => {}
        }
    }
    out
}

fn sha256_file(path: &Path) -> Result<String, CliError> {
    let bytes = std::fs::read(path)
        .map_err(|err| CliError::unavailable(format!("cannot read {}: {err}", path.display())))?;
    Ok(hex::encode(sha2::Sha256::digest(&bytes)))
}

/// Step one and the start of step two of `soak run --resume DIR`.
pub fn prepare(args: &RunArgs) -> Result<Start, CliError> {
    let Some(dir) = args.resume.clone() else {
        return Err(CliError::usage("--resume needs a proof directory"));
    };
    let refused: Vec<&str> = args
        .given
        .iter()
        .filter(|(id, _)| !ALLOWED.contains(&id.as_str()))
        .map(|(_, flag)| flag.as_str())
        .collect();
    if !refused.is_empty() {
        return Err(CliError::usage(format!(
            "--resume continues the run as its config.json planned it; {} would change it \
             (only --events, --node-bin and --start-timeout may be given)",
            refused.join(", ")
        )));
    }
    let head = soak_proofs::read_head(&dir).map_err(|e| proof_error(&dir, &e))?;
    let previous_status = head.status();
    if previous_status == ProofStatus::Complete {
        return Err(CliError::usage(format!(
            "cannot resume {}: the run is complete (`soak score` re-judges it)",
            dir.display()
        )));
    }
    let mut plan: RunPlan = serde_json::from_value(head.meta.config.clone()).map_err(|err| {
        CliError::usage(format!(
            "cannot resume {}: its config.json is not a run plan this build reads: {err}",
            dir.display()
        ))
    })?;
    let given = |id: &str| args.given.iter().any(|(g, _)| g == id);
    if given("events") {
        plan.events = args.events;
    }
    if given("start_timeout") {
        plan.start_timeout_ms = u64::try_from(args.start_timeout.as_millis()).unwrap_or(u64::MAX);
    }
    // The flag or SOAK_NODE_BIN, else what the run was started with.
    plan.node_bin = args.node_bin.clone().or(plan.node_bin);
    let profile = match &head.meta.gate_source {
        Some(text) => Profile::from_toml_str(text, "gate.toml (stored in the proof)")
            .map_err(|err| CliError::usage(format!("{err}: {}", err.kind)))?,
        None => load_gate(&plan.gate)?.0,
    };

    let seg = segment(&head.events);
    let recorded = &head.observations.windows;
    // The window under way when the signal came (SIGINT): recorded, but cut short — it ends
    // at or after the signal (the same millisecond when nothing needed reverting).
    let cut = seg.signal.as_ref().and_then(|(_, at)| {
        recorded
            .iter()
            .filter(|w| w.end_ms >= *at)
            .max_by_key(|w| w.index)
    });
    let kept: Vec<u32> = recorded
        .iter()
        .filter(|w| cut.is_none_or(|c| c.index != w.index))
        .map(|w| w.index)
        .collect();
    let next = u32::try_from(kept.len()).unwrap_or(u32::MAX);
    if !kept.iter().copied().eq(0..next) {
        return Err(CliError::usage(format!(
            "cannot resume {}: its windows are not 0..{next} (recorded: {kept:?}); a window \
             was removed from the proof",
            dir.display()
        )));
    }
    if next >= plan.windows {
        return Err(CliError::usage(format!(
            "cannot resume {}: all {} planned windows are recorded; `soak score` judges it",
            dir.display(),
            plan.windows
        )));
    }
    if let Some(cut) = cut
        && cut.index != next
    {
        return Err(CliError::usage(format!(
            "cannot resume {}: the interrupted window {} is not the last one",
            dir.display(),
            cut.index
        )));
    }

    // The fleet: the same binary, the same inventory.
    let node_bin = match &plan.inventory {
        None => {
            let bin = resolve_node_bin(plan.node_bin.as_deref())?;
            let sha = sha256_file(&bin)?;
            if let Some(build) = head.meta.node_builds.first()
                && build.binary_sha256 != sha
            {
                return Err(CliError::usage(format!(
                    "cannot resume {}: {} is not the node binary the run tested (sha256 {} \
                     then, {sha} now); a resumed soak must test the same build",
                    dir.display(),
                    bin.display(),
                    build.binary_sha256
                )));
            }
            Some(bin)
        }
        Some(path) => {
            let sha = sha256_file(path).map_err(|e| CliError::usage(e.message))?;
            if head.meta.inventory_digest.as_deref() != Some(sha.as_str()) {
                return Err(CliError::usage(format!(
                    "cannot resume {}: the inventory {} changed since the run started",
                    dir.display(),
                    path.display()
                )));
            }
            None
        }
    };
    let limit = match &plan.limit {
        Some(text) => Some(crate::fleet::remote::parse_limit(text).map_err(CliError::usage)?),
        None => None,
    };
    let previous: Vec<PreviousNode> = seg
        .fleet
        .iter()
        .map(|n| PreviousNode {
            name: n.name.clone(),
            pid: n.pid,
            data_dir: n.data_dir.as_ref().map(PathBuf::from).or_else(|| {
                n.log
                    .as_ref()
                    .and_then(|l| Path::new(l).parent().map(Path::to_path_buf))
            }),
        })
        .collect();
    let data_root = previous
        .iter()
        .find_map(|n| {
            n.data_dir
                .as_ref()
                .and_then(|d| d.parent().map(Path::to_path_buf))
        })
        .unwrap_or_else(|| {
            std::env::temp_dir().join(format!("soak-{}-{}", head.meta.run_id, std::process::id()))
        });

    // Step two: from here on the proof is changed (and locked).
    let signals = Signals::install()
        .map_err(|err| CliError::unavailable(format!("cannot install signal handlers: {err}")))?;
    let reopened = ProofWriter::reopen(&dir).map_err(|e| proof_error(&dir, &e))?;
    let mut writer = reopened.writer;
    let at_ms = now_ms();
    let resume_number = head.meta.resumes.len() + 1;
    let lost = match cut {
        Some(cut) => {
            let record_file = writer
                .set_window_aside(cut.index, resume_number)
                .map_err(|e| proof_error(&dir, &e))?;
            let signal = seg.signal.as_ref().map_or("a signal", |(s, _)| s.as_str());
            Some(LostWindow {
                index: cut.index,
                from_ms: cut.start_ms,
                to_ms: at_ms,
                record_file,
                cause: format!("interrupted by {signal}"),
            })
        }
        None => seg
            .started
            .iter()
            .rev()
            .find(|(w, _)| *w == next)
            .map(|&(index, from_ms)| LostWindow {
                index,
                from_ms,
                to_ms: at_ms,
                record_file: None,
                cause: match (&seg.signal, previous_status) {
                    (Some((signal, _)), _) => {
                        format!("interrupted by {signal}, and stopped before the proof was sealed")
                    }
                    (None, ProofStatus::Running) => {
                        "soak was killed (SIGKILL, a crash or a power loss): no final status"
                            .to_owned()
                    }
                    (None, status) => format!("the run stopped ({})", status.as_str()),
                },
            }),
    };
    let record = ResumeRecord {
        at_ms,
        previous_status,
        next_window: next,
        lost,
        repaired: reopened.repaired,
        command: Some(std::env::args().collect()),
    };
    let mut summary_meta = head.meta.clone();
    summary_meta.resumes.push(record.clone());
    Ok(Start {
        plan,
        limit,
        profile,
        run_id: head.meta.run_id.clone(),
        writer,
        summary_meta,
        node_bin,
        data_root,
        signals,
        first_window: next,
        resumed: Some(Resumed { record, previous }),
    })
}

/// Whether `pid` runs a node of this run: alive (not a zombie) and started with `data_dir`.
fn runs_node(pid: u32, data_dir: &Path) -> bool {
    let alive = std::fs::read_to_string(format!("/proc/{pid}/stat")).is_ok_and(|stat| {
        !stat
            .rsplit_once(')')
            .is_some_and(|(_, rest)| rest.trim_start().starts_with('Z'))
    });
    let cmdline = std::fs::read(format!("/proc/{pid}/cmdline")).unwrap_or_default();
    let wanted = data_dir.as_os_str().as_encoded_bytes();
    alive && cmdline.split(|b| *b == 0).any(|arg| arg == wanted)
}

/// Waits until every node of the previous segment is gone: their watchdog stops them once the
/// old `soak` is dead; one still running after [`PREVIOUS_EXIT`] (it holds the data dir the
/// mesh is about to reuse) is stopped by its pid — SIGCONT, SIGTERM, then SIGKILL.
pub async fn wait_for_previous_nodes(previous: &[PreviousNode], progress: &Progress) {
    let running = |n: &PreviousNode| match (n.pid, &n.data_dir) {
        (Some(pid), Some(dir)) => runs_node(pid, dir),
        _ => false,
    };
    let deadline = tokio::time::Instant::now() + PREVIOUS_EXIT;
    while previous.iter().any(running) && tokio::time::Instant::now() < deadline {
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    for node in previous.iter().filter(|n| running(n)) {
        let Some(pid) = node.pid.and_then(|p| i32::try_from(p).ok()) else {
            continue;
        };
        progress.line(&format!(
            "{} of the previous run (pid {pid}) is still running: stopping it",
            node.name
        ));
        let _ = kill(Pid::from_raw(pid), Signal::SIGCONT);
        let _ = kill(Pid::from_raw(pid), Signal::SIGTERM);
        let deadline = tokio::time::Instant::now() + PREVIOUS_EXIT;
        while running(node) && tokio::time::Instant::now() < deadline {
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
        if running(node) {
            let _ = kill(Pid::from_raw(pid), Signal::SIGKILL);
        }
    }
}
