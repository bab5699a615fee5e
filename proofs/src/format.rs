//! The one place that owns the proof directory's file names and format version.
//!
//! Layout (see `docs/proof-format.md`):
//!
//! ```text
//! <run-id>/
//!   manifest.json          written last, atomically: format, status, versions, sha256 of files
//!   run.json               format version + run metadata (written at start, rewritten on update)
//!   config.json            resolved run config, secrets redacted
//!   gate.toml              the gate profile the run was judged with (when known)
//!   events.jsonl           run events, append-only
//!   node_events.jsonl      node exits and lost hosts, append-only (1.2)
//!   samples/<node>.smp     continuous samples per node, append-only, compact (1.3; see
//!                          `samples`); proofs of format ≤ 1.2 have samples/<node>.jsonl
//!   windows/NNN/window.json    the window's record (Phase A, fanout, scenarios)
//!   windows/NNN/verdict.json   the window's verdict (written at finish)
//!   faults/journal.jsonl   fault steps, each before it acts and after (runs with faults)
//!   faults/schedule.json   the resolved fault schedule; faults/scenarios.toml the scenario file
//!   faults/residue.json    what the sweep before and the audit after the run found
//!   logs/<node>.log        spawned nodes' logs (local mesh)
//!   verdict.json summary.md summary.csv windows.csv timeline.csv phase_a.csv junit.xml
//!   report.html            (rendered at finish)
//! ```

use std::fmt;

use serde::{Deserialize, Serialize};

use crate::error::{Error, ErrorKind};

/// `manifest.json`.
pub const MANIFEST: &str = "manifest.json";
/// `run.json`.
pub const RUN: &str = "run.json";
/// `config.json`.
pub const CONFIG: &str = "config.json";
/// `gate.toml`.
pub const GATE: &str = "gate.toml";
/// `events.jsonl`.
pub const EVENTS: &str = "events.jsonl";
/// `node_events.jsonl`: what happened to the nodes (exits, hosts lost), append-only (1.2).
pub const NODE_EVENTS: &str = "node_events.jsonl";
/// `phase_a.csv`: Phase A per ordered pair over the soak (1.2).
pub const PHASE_A_CSV: &str = "phase_a.csv";
/// `samples/`.
pub const SAMPLES_DIR: &str = "samples";
/// `windows/`.
pub const WINDOWS_DIR: &str = "windows";
/// `windows/NNN/window.json`.
pub const WINDOW_RECORD: &str = "window.json";
/// `windows/NNN/verdict.json` and the top-level `verdict.json`.
pub const VERDICT: &str = "verdict.json";
/// `summary.md`.
pub const SUMMARY_MD: &str = "summary.md";
/// `summary.csv`.
pub const SUMMARY_CSV: &str = "summary.csv";
/// `timeline.csv`: every sample in long format (`ts_ms,node,metric,value`), since 1.2.
pub const TIMELINE_CSV: &str = "timeline.csv";
/// `windows.csv`: one row per window (what `timeline.csv` held before 1.2).
pub const WINDOWS_CSV: &str = "windows.csv";
/// `junit.xml`: one test suite per window plus one for the soak, one test case per bar.
pub const JUNIT_XML: &str = "junit.xml";
/// `report.html`: the self-contained report with charts.
pub const REPORT_HTML: &str = "report.html";
/// `faults/`: the nemesis' evidence (runs with faults only).
pub const FAULTS_DIR: &str = "faults";
/// `faults/journal.jsonl`: one line per fault step, written before the step acts and after it
/// completes.
pub const FAULT_JOURNAL: &str = "journal.jsonl";
/// `faults/residue.json`: what the sweep before the run and the audit after it found.
pub const FAULT_RESIDUE: &str = "residue.json";
/// `faults/scenarios.toml`: the `--scenario-file` as given (copied verbatim).
pub const SCENARIO_FILE: &str = "scenarios.toml";
/// `faults/schedule.json`: the resolved schedule (faults, windows, targets, backends).
pub const FAULT_SCHEDULE: &str = "schedule.json";
/// Prefix of temporary files (atomic writes); never part of a finished proof.
pub const TEMP_PREFIX: &str = ".tmp-";
/// Extension of the per-node sample files this build writes (the compact encoding of
/// [`crate::samples`]).
pub const SAMPLES_EXT: &str = ".smp";
/// Extension of the per-node sample files of formats 1.0 to 1.2 (one JSON sample per line);
/// still read.
pub const LEGACY_SAMPLES_EXT: &str = ".jsonl";

/// How a sample file is encoded, by its extension.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SampleEncoding {
    /// `.smp`: [`crate::samples`] (format 1.3).
    Compact,
    /// `.jsonl`: one `model::Sample` JSON object per line (formats 1.0 to 1.2).
    JsonLines,
}

/// The format version this build writes. Bump `minor` for additive changes (new optional
/// fields or files), `major` for anything an older reader would misread.
///
/// 1.1 added `coverage` in `run.json`; 1.2 added `report.html`, `junit.xml`, `windows.csv`,
/// the long-format `timeline.csv`, the optional `command` and `seed` in `run.json`, the
/// nemesis' `faults/` (journal, schedule, residue, scenario file; fault evidence in window
/// records), `node_events.jsonl`, `phase_a.csv`, `PairOutcome::inbox_copies` and
/// `RunMeta::errors`; 1.3 stores samples compactly in `samples/<node>.smp` (older proofs'
/// `.jsonl` sample files are still read).
pub const CURRENT: FormatVersion = FormatVersion { major: 1, minor: 3 };

/// Largest JSON (or TOML) document a proof may hold: run, config, manifest, window and verdict
/// files. Reading refuses bigger ones (a proof is untrusted input).
pub const MAX_JSON_BYTES: u64 = 256 * 1024 * 1024;
/// Largest JSON-lines file (samples of one node, events): days of 1 s samples fit.
pub const MAX_JSONL_BYTES: u64 = 4 * 1024 * 1024 * 1024;
/// Largest compact sample file (`samples/<node>.smp`): the same days of samples take ~25×
/// less room than as JSON lines, so this bound holds as much as [`MAX_JSONL_BYTES`] with room.
pub const MAX_SMP_BYTES: u64 = 1024 * 1024 * 1024;
/// Largest file `verify` hashes (streamed, so memory is not the concern: a sparse or runaway
/// file must not take hours).
pub const MAX_HASHED_BYTES: u64 = 64 * 1024 * 1024 * 1024;

/// Directory name of window `index` under `windows/`: zero-padded to three digits.
pub fn window_dir_name(index: u32) -> String {
    format!("{index:03}")
}

/// File name of a node's sample file under `samples/`: the node name with every byte outside
/// `[A-Za-z0-9_-]` (and a leading `.`) percent-encoded, so the mapping is reversible and a name
/// can never escape the directory.
pub fn sample_file_name(node: &str) -> String {
    let mut out = String::with_capacity(node.len() + SAMPLES_EXT.len());
    for (i, b) in node.bytes().enumerate() {
        let plain = b.is_ascii_alphanumeric() || b == b'_' || b == b'-' || (b == b'.' && i > 0);
        if plain {
            out.push(b as char);
        } else {
            out.push_str(&format!("%{b:02X}"));
        }
    }
    out.push_str(SAMPLES_EXT);
    out
}

/// The node name of a sample file name (inverse of [`sample_file_name`], also for the
/// `.jsonl` files of older proofs).
pub fn node_of_sample_file(file_name: &str) -> Option<String> {
    sample_file(file_name).map(|(node, _)| node)
}

/// The node name and encoding of a sample file name.
pub fn sample_file(file_name: &str) -> Option<(String, SampleEncoding)> {
    let (stem, encoding) = match file_name.strip_suffix(SAMPLES_EXT) {
        Some(stem) => (stem, SampleEncoding::Compact),
        None => (
            file_name.strip_suffix(LEGACY_SAMPLES_EXT)?,
            SampleEncoding::JsonLines,
        ),
    };
    let node = decode_node_name(stem)?;
    Some((node, encoding))
}

fn decode_node_name(stem: &str) -> Option<String> {
    let bytes = stem.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        if bytes[i] == b'%' {
            let hex = stem.get(i + 1..i + 3)?;
            out.push(u8::from_str_radix(hex, 16).ok()?);
            i += 3;
        } else {
            out.push(bytes[i]);
            i += 1;
        }
    }
    let name = String::from_utf8(out).ok()?;
    (!name.is_empty()).then_some(name)
}

/// A proof format version.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Serialize, Deserialize)]
pub struct FormatVersion {
    /// Incompatible changes.
    pub major: u32,
    /// Additive changes.
    pub minor: u32,
}

impl FormatVersion {
    /// Whether a proof written in `self` can be read by a reader of version `reader`: same
    /// major, and a minor no newer than the reader's.
    pub fn check_readable_by(self, reader: FormatVersion) -> Result<(), Error> {
        if self.major == reader.major && self.minor <= reader.minor {
            Ok(())
        } else {
            Err(Error::new(
                "failed to check the proof format version",
                ErrorKind::Incompatible {
                    found: self.to_string(),
                    supported: reader.to_string(),
                },
            ))
        }
    }
}

impl fmt::Display for FormatVersion {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}.{}", self.major, self.minor)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn readability_rule() {
        let v = |major, minor| FormatVersion { major, minor };
        assert!(v(1, 0).check_readable_by(v(1, 0)).is_ok());
        assert!(v(1, 0).check_readable_by(v(1, 3)).is_ok());
        assert!(v(1, 4).check_readable_by(v(1, 3)).is_err());
        assert!(v(2, 0).check_readable_by(v(1, 9)).is_err());
        assert!(v(0, 9).check_readable_by(v(1, 0)).is_err());
    }

    #[test]
    fn sample_file_names_round_trip_and_stay_inside() {
        for name in [
            "node-0",
            "host.example",
            "../etc/passwd",
            ".hidden",
            "a b%c",
            "ünï",
        ] {
            let file = sample_file_name(name);
            assert!(!file.contains('/') && !file.starts_with('.'), "{file}");
            assert_eq!(node_of_sample_file(&file).as_deref(), Some(name));
        }
        assert_eq!(sample_file_name("node-0"), "node-0.smp");
        assert_eq!(node_of_sample_file("x.json"), None);
        assert_eq!(node_of_sample_file("%zz.jsonl"), None);
        assert_eq!(
            sample_file("node-0.jsonl"),
            Some(("node-0".to_string(), SampleEncoding::JsonLines))
        );
        assert_eq!(
            sample_file("node-0.smp"),
            Some(("node-0".to_string(), SampleEncoding::Compact))
        );
    }
}
