//! The proof writer: usable incrementally during a run; a run killed half-way leaves a
//! readable, incomplete proof.

use std::collections::{BTreeMap, BTreeSet};
use std::fs::{self, File, OpenOptions};
use std::io::Write;
use std::path::{Path, PathBuf};
use std::time::{SystemTime, UNIX_EPOCH};

use serde::Serialize;
use soak_gates::Verdict;
use soak_gates::model::{NodeEvent, Sample, WindowRecord};

use crate::error::{Error, Result};
use crate::faults::FaultJournal;
use crate::format::{self, CURRENT, FormatVersion};
use crate::fsio::{hash_tree, read_bounded, write_atomic, write_json_atomic};
use crate::meta::{Manifest, RunMeta, RunStatus};
use crate::reader::read_head;
use crate::render::{self, Evidence, SampleSource};
use crate::samples::SampleEncoder;

/// One node's open sample file and its encoder state.
#[derive(Debug)]
struct SampleFile {
    file: File,
    encoder: SampleEncoder,
}

/// Contents of `run.json`: the format version beside the metadata, so an incomplete proof (no
/// manifest yet) still says how to read it.
#[derive(Debug, Serialize, serde::Deserialize)]
pub(crate) struct RunFile {
    pub format: FormatVersion,
    pub meta: RunMeta,
}

/// Writes one proof directory.
#[derive(Debug)]
pub struct ProofWriter {
    dir: PathBuf,
    meta: RunMeta,
    events: File,
    node_events: Option<File>,
    samples: BTreeMap<String, SampleFile>,
    buffer: Vec<u8>,
    windows: BTreeSet<u32>,
    journal: Option<File>,
}

impl ProofWriter {
    /// Creates `dir` (which must not exist or be empty), writes `run.json`, `config.json`
    /// (secrets redacted), `gate.toml` (when known), an empty `events.jsonl` and a manifest
    /// with status `running`.
    pub fn create(dir: impl AsRef<Path>, meta: RunMeta) -> Result<ProofWriter> {
        let dir = dir.as_ref().to_path_buf();
        let context = format!("failed to create proof directory {}", dir.display());
        if dir.exists() {
            let mut entries = fs::read_dir(&dir).map_err(|e| Error::new(&context, e))?;
            if entries.next().is_some() {
                return Err(Error::invalid(
                    context,
                    "it already exists and is not empty (refusing to overwrite a proof)",
                ));
            }
        }
        for sub in [format::SAMPLES_DIR, format::WINDOWS_DIR] {
            fs::create_dir_all(dir.join(sub)).map_err(|e| Error::new(&context, e))?;
        }
        let events_path = dir.join(format::EVENTS);
        let events = open_append(&events_path)?;
        let mut writer = ProofWriter {
            dir,
            meta,
            events,
            node_events: None,
            samples: BTreeMap::new(),
            buffer: Vec::new(),
            windows: BTreeSet::new(),
            journal: None,
        };
        writer.write_meta()?;
        writer.write_manifest(RunStatus::Running, None, None)?;
        Ok(writer)
    }

    /// The proof directory.
    pub fn dir(&self) -> &Path {
        &self.dir
    }

    /// The run metadata as written.
    pub fn meta(&self) -> &RunMeta {
        &self.meta
    }

    /// Changes the metadata (e.g. node builds and nodes once known) and rewrites `run.json`,
    /// `config.json` and `gate.toml` atomically.
    pub fn update_meta(&mut self, change: impl FnOnce(&mut RunMeta)) -> Result<()> {
        change(&mut self.meta);
        self.write_meta()
    }

    /// Appends one event as a line of `events.jsonl`.
    pub fn append_event(&mut self, event: &serde_json::Value) -> Result<()> {
        let path = self.dir.join(format::EVENTS);
        append_line(&mut self.events, &path, event)
    }

    /// Appends one node event (a process that exited, a host that stopped answering) as a line
    /// of `node_events.jsonl` (created on first use).
    pub fn append_node_event(&mut self, event: &NodeEvent) -> Result<()> {
        let path = self.dir.join(format::NODE_EVENTS);
        if self.node_events.is_none() {
            self.node_events = Some(open_append(&path)?);
        }
        match self.node_events.as_mut() {
            Some(file) => append_line(file, &path, event),
            // Opened just above.
            None => Err(Error::invalid(
                "failed to append a node event",
                "node events file lost",
            )),
        }
    }

    /// Appends one sample of `node` to `samples/<node>.smp` (the compact encoding of
    /// [`crate::samples`]): its records in one `write_all`, so a writer killed mid-append leaves
    /// whole samples and at most one torn record, which the reader drops.
    pub fn append_sample(&mut self, node: &str, sample: &Sample) -> Result<()> {
        if node.is_empty() {
            return Err(Error::invalid(
                "failed to append a sample",
                "empty node name",
            ));
        }
        let path = self
            .dir
            .join(format::SAMPLES_DIR)
            .join(format::sample_file_name(node));
        if !self.samples.contains_key(node) {
            let file = open_append(&path)?;
            // A file that already holds samples (a writer reopened on the same proof) gets a
            // reset record first, never a second magic.
            let existing = file.metadata().map(|m| m.len()).unwrap_or(0);
            let encoder = if existing == 0 {
                SampleEncoder::new()
            } else {
                drop_torn_tail(&path, &file)?;
                SampleEncoder::continuing()
            };
            self.samples
                .insert(node.to_string(), SampleFile { file, encoder });
        }
        match self.samples.get_mut(node) {
            Some(open) => {
                self.buffer.clear();
                open.encoder.encode(sample, &mut self.buffer);
                open.file
                    .write_all(&self.buffer)
                    .map_err(|e| Error::io("append to", &path, e))
            }
            // Inserted just above.
            None => Err(Error::invalid(
                "failed to append a sample",
                "sample file lost",
            )),
        }
    }

    /// Appends one line to `faults/journal.jsonl` and syncs it: a fault step is on disk before
    /// it acts.
    pub fn append_fault_journal(&mut self, entry: &serde_json::Value) -> Result<()> {
        let dir = self.dir.join(format::FAULTS_DIR);
        let path = dir.join(format::FAULT_JOURNAL);
        if self.journal.is_none() {
            fs::create_dir_all(&dir).map_err(|e| Error::io("create", &dir, e))?;
            self.journal = Some(open_append(&path)?);
        }
        match self.journal.as_mut() {
            Some(file) => {
                append_line(file, &path, entry)?;
                file.sync_data().map_err(|e| Error::io("sync", &path, e))
            }
            // Opened just above.
            None => Err(Error::invalid(
                "failed to append to the fault journal",
                "journal lost",
            )),
        }
    }

    /// Writes a file under `faults/` atomically (`schedule.json`, `residue.json`,
    /// `scenarios.toml`).
    pub fn write_fault_file(&mut self, name: &str, bytes: &[u8]) -> Result<()> {
        if name.contains('/') || name.starts_with('.') {
            return Err(Error::invalid("failed to write a fault file", "bad name"));
        }
        let dir = self.dir.join(format::FAULTS_DIR);
        fs::create_dir_all(&dir).map_err(|e| Error::io("create", &dir, e))?;
        write_atomic(&dir.join(name), bytes)
    }

    /// Writes (or rewrites) `windows/NNN/window.json` atomically.
    pub fn write_window(&mut self, window: &WindowRecord) -> Result<()> {
        let dir = self.window_dir(window.index);
        fs::create_dir_all(&dir).map_err(|e| Error::io("create", &dir, e))?;
        write_json_atomic(&dir.join(format::WINDOW_RECORD), window)?;
        self.windows.insert(window.index);
        Ok(())
    }

    /// Seals the proof: per-window verdicts, then every rendered file from the stored evidence
    /// (`verdict.json`, `summary.md`, `summary.csv`, `windows.csv`, `timeline.csv`, `junit.xml`,
    /// `report.html`; see [`render::write_report`]), then — last, atomically — `manifest.json`
    /// with the sha256 of every file.
    /// Returns the proof directory.
    pub fn finish(self, status: RunStatus, verdict: &Verdict) -> Result<PathBuf> {
        if status == RunStatus::Running {
            return Err(Error::invalid(
                "failed to finish the proof",
                "a finished run needs a final status (complete, interrupted or failed)",
            ));
        }
        self.events
            .sync_all()
            .map_err(|e| Error::io("sync", &self.dir.join(format::EVENTS), e))?;
        if let Some(file) = &self.node_events {
            file.sync_all()
                .map_err(|e| Error::io("sync", &self.dir.join(format::NODE_EVENTS), e))?;
        }
        for (node, open) in &self.samples {
            open.file
                .sync_all()
                .map_err(|e| Error::io("sync samples of", Path::new(node), e))?;
        }
        for window in &verdict.windows {
            let dir = self.window_dir(window.index);
            fs::create_dir_all(&dir).map_err(|e| Error::io("create", &dir, e))?;
            write_json_atomic(&dir.join(format::VERDICT), window)?;
        }
        // Rendered from what is stored, exactly as `soak report` re-renders it later.
        let head = read_head(&self.dir)?;
        let faults = FaultJournal::read(&self.dir)?;
        let evidence = Evidence {
            meta: &head.meta,
            status,
            windows: &head.observations.windows,
            samples: SampleSource::Dir(&self.dir),
            faults: &faults,
            notes: &[],
        };
        render::write_report(&self.dir, &evidence, verdict)?;
        let finished = SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .map(|d| d.as_millis() as u64)
            .unwrap_or(0);
        self.write_manifest(status, Some(finished), Some(verdict))?;
        Ok(self.dir)
    }

    fn window_dir(&self, index: u32) -> PathBuf {
        self.dir
            .join(format::WINDOWS_DIR)
            .join(format::window_dir_name(index))
    }

    fn write_meta(&mut self) -> Result<()> {
        let mut meta = self.meta.clone();
        let config = redact_secrets(&meta.config);
        meta.config = serde_json::Value::Null;
        meta.command = meta.command.as_deref().map(redact_args);
        write_json_atomic(&self.dir.join(format::CONFIG), &config)?;
        if let Some(gate) = &meta.gate_source {
            write_atomic(&self.dir.join(format::GATE), gate.as_bytes())?;
        }
        write_json_atomic(
            &self.dir.join(format::RUN),
            &RunFile {
                format: CURRENT,
                meta,
            },
        )
    }

    fn write_manifest(
        &self,
        status: RunStatus,
        finished_at_ms: Option<u64>,
        verdict: Option<&Verdict>,
    ) -> Result<()> {
        let manifest = Manifest {
            format: CURRENT,
            run_id: self.meta.run_id.clone(),
            label: self.meta.label.clone(),
            status,
            tool_version: self.meta.tool_version.clone(),
            started_at_ms: self.meta.started_at_ms,
            finished_at_ms,
            node_builds: self.meta.node_builds.clone(),
            inventory_digest: self.meta.inventory_digest.clone(),
            gate: verdict.map_or_else(|| self.meta.gate.clone(), |v| v.gate.clone()),
            scenarios: self.meta.scenarios.clone(),
            verdict: verdict.map(|v| v.verdict),
            files: hash_tree(&self.dir)?,
        };
        write_json_atomic(&self.dir.join(format::MANIFEST), &manifest)
    }
}

fn open_append(path: &Path) -> Result<File> {
    OpenOptions::new()
        .create(true)
        .append(true)
        .open(path)
        .map_err(|e| Error::io("open", path, e))
}

/// Cuts a torn last record (a writer killed mid-append) off an existing sample file before more
/// samples are appended to it; a file that does not decode, or that is a link or oversize, is
/// refused (read through the bounded opener like every proof read).
fn drop_torn_tail(path: &Path, file: &File) -> Result<()> {
    let bytes = read_bounded(path, format::MAX_SMP_BYTES)?;
    let decoded = crate::samples::decode(&bytes).map_err(|e| {
        Error::invalid(
            format!("failed to append to {}", path.display()),
            e.to_string(),
        )
    })?;
    if decoded.torn_bytes > 0 {
        file.set_len((bytes.len() - decoded.torn_bytes) as u64)
            .map_err(|e| Error::io("truncate the torn tail of", path, e))?;
    }
    Ok(())
}

/// One JSON value plus newline in a single `write_all` on an append-mode file, so concurrent
/// readers see whole lines or a torn last line, never interleaving.
fn append_line<T: Serialize>(file: &mut File, path: &Path, value: &T) -> Result<()> {
    let mut line = serde_json::to_vec(value).map_err(|e| Error::json("serialize", path, e))?;
    line.push(b'\n');
    file.write_all(&line)
        .map_err(|e| Error::io("append to", path, e))
}

/// Key fragments that mark a config value as secret (matched case-insensitively).
const SECRET_KEYS: &[&str] = &[
    "token",
    "secret",
    "password",
    "passwd",
    "passphrase",
    "private_key",
    "credential",
    "api_key",
    "apikey",
    "bearer",
];

/// The placeholder a redacted value is replaced with.
pub const REDACTED: &str = "[redacted]";

fn looks_secret(name: &str) -> bool {
    let lower = name.to_ascii_lowercase();
    SECRET_KEYS.iter().any(|s| lower.contains(s))
}

/// A copy of a command line with the value of every secret-looking flag (`--admin-token X`,
/// `--password=X`; same key fragments as [`redact_secrets`], `-` read as `_`) replaced by
/// `"[redacted]"`.
pub fn redact_args(argv: &[String]) -> Vec<String> {
    let mut out = Vec::with_capacity(argv.len());
    let mut redact_next = false;
    for arg in argv {
        if redact_next {
            out.push(REDACTED.to_string());
            redact_next = false;
            continue;
        }
        match arg.strip_prefix("--").or_else(|| arg.strip_prefix('-')) {
            Some(flag) if looks_secret(&flag.replace('-', "_")) => match flag.split_once('=') {
                Some((name, _)) => out.push(format!(
                    "{}{name}={REDACTED}",
                    &arg[..arg.len() - flag.len()]
                )),
                None => {
                    out.push(arg.clone());
                    redact_next = true;
                }
            },
            _ => out.push(arg.clone()),
        }
    }
    out
}

/// A copy of `config` with the value of every object key that looks secret (contains `token`,
/// `secret`, `password`, `passphrase`, `private_key`, `credential`, `api_key`, `bearer`)
/// replaced by `"[redacted]"`, at any depth.
pub fn redact_secrets(config: &serde_json::Value) -> serde_json::Value {
    use serde_json::Value;
    match config {
        Value::Object(map) => Value::Object(
            map.iter()
                .map(|(key, value)| {
                    if looks_secret(key) && !value.is_null() {
                        (key.clone(), Value::String(REDACTED.to_string()))
                    } else {
                        (key.clone(), redact_secrets(value))
                    }
                })
                .collect(),
        ),
        Value::Array(items) => Value::Array(items.iter().map(redact_secrets).collect()),
        other => other.clone(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn secret_flag_values_are_redacted_from_the_command_line() {
        let argv: Vec<String> = [
            "soak",
            "run",
            "--admin-token",
            "s3cret",
            "--api-key=abc",
            "--nodes",
            "3",
            "--label",
            "token-free",
        ]
        .map(String::from)
        .to_vec();
        assert_eq!(
            redact_args(&argv),
            [
                "soak",
                "run",
                "--admin-token",
                REDACTED,
                "--api-key=[redacted]",
                "--nodes",
                "3",
                "--label",
                "token-free",
            ]
            .map(String::from)
            .to_vec()
        );
    }
}
