//! The proof reader: works on complete and incomplete proofs.

use std::collections::BTreeMap;
use std::fs;
use std::path::{Path, PathBuf};

use soak_gates::Verdict;
use soak_gates::model::{Observations, RunInfo, Sample, WindowRecord};

use crate::error::{Error, Result};
use crate::format::{self, CURRENT};
use crate::fsio::{read_json, read_jsonl};
use crate::meta::{Manifest, RunMeta, RunStatus};
use crate::writer::RunFile;

/// A proof directory as read back.
#[derive(Debug, Clone)]
pub struct Proof {
    /// The directory.
    pub dir: PathBuf,
    /// The manifest, if one was written and parses (`None`: incomplete).
    pub manifest: Option<Manifest>,
    /// Run metadata (config included, as stored: redacted).
    pub meta: RunMeta,
    /// Everything the run observed, reconstructed from the files.
    pub observations: Observations,
    /// The stored soak verdict (`None` until the run finished).
    pub verdict: Option<Verdict>,
    /// Run events from `events.jsonl`.
    pub events: Vec<serde_json::Value>,
    /// Things tolerated while reading (e.g. a torn last line).
    pub warnings: Vec<String>,
}

impl Proof {
    /// Status from the manifest; `Running` when there is none.
    pub fn status(&self) -> RunStatus {
        self.manifest
            .as_ref()
            .map_or(RunStatus::Running, |m| m.status)
    }

    /// Whether the run was sealed (a manifest with a final status and a stored verdict).
    pub fn is_complete(&self) -> bool {
        self.status() != RunStatus::Running && self.verdict.is_some()
    }
}

/// Reads a proof directory, complete or not.
pub fn read(dir: impl AsRef<Path>) -> Result<Proof> {
    let mut proof = read_head(dir)?;
    let samples = read_samples(&proof.dir.join(format::SAMPLES_DIR), &mut proof.warnings)?;
    proof.observations.samples = samples;
    Ok(proof)
}

/// Reads everything of a proof directory but its samples (`observations.samples` is left
/// empty): for renderers that stream the samples node by node
/// ([`crate::render::SampleSource::Dir`]).
pub fn read_head(dir: impl AsRef<Path>) -> Result<Proof> {
    let dir = dir.as_ref().to_path_buf();
    let run_path = dir.join(format::RUN);
    if !run_path.is_file() {
        return Err(Error::invalid(
            format!("failed to read proof {}", dir.display()),
            format!("no {} (not a proof directory)", format::RUN),
        ));
    }
    let run: RunFile = read_json(&run_path)?;
    run.format
        .check_readable_by(CURRENT)
        .map_err(|e| Error::new(format!("failed to read proof {}", dir.display()), e.kind))?;
    let mut warnings = Vec::new();
    let manifest_path = dir.join(format::MANIFEST);
    let manifest = if manifest_path.is_file() {
        match read_json::<Manifest>(&manifest_path) {
            Ok(m) => {
                m.format.check_readable_by(CURRENT).map_err(|e| {
                    Error::new(format!("failed to read proof {}", dir.display()), e.kind)
                })?;
                Some(m)
            }
            Err(err) => {
                warnings.push(format!("manifest unreadable, treated as incomplete: {err}"));
                None
            }
        }
    } else {
        None
    };
    let mut meta = run.meta;
    let config_path = dir.join(format::CONFIG);
    if config_path.is_file() {
        meta.config = read_json(&config_path)?;
    }
    let gate_path = dir.join(format::GATE);
    if meta.gate_source.is_none() && gate_path.is_file() {
        meta.gate_source =
            Some(fs::read_to_string(&gate_path).map_err(|e| Error::io("read", &gate_path, e))?);
    }

    let windows = read_windows(&dir.join(format::WINDOWS_DIR))?;
    let events_path = dir.join(format::EVENTS);
    let events = if events_path.is_file() {
        read_jsonl(&events_path, &mut warnings)?
    } else {
        Vec::new()
    };
    let verdict_path = dir.join(format::VERDICT);
    let verdict = if verdict_path.is_file() {
        Some(read_json(&verdict_path)?)
    } else {
        None
    };
    let observations = Observations {
        residue: Vec::new(),
        run: RunInfo {
            run_id: meta.run_id.clone(),
            sample_interval_ms: meta.sample_interval_ms,
            nodes: meta.nodes.clone(),
            inventory_hosts: meta.coverage.as_ref().map(|c| c.inventory_hosts),
        },
        samples: BTreeMap::new(),
        windows,
    };
    Ok(Proof {
        dir,
        manifest,
        meta,
        observations,
        verdict,
        events,
        warnings,
    })
}

fn read_samples(dir: &Path, warnings: &mut Vec<String>) -> Result<BTreeMap<String, Vec<Sample>>> {
    let mut out = BTreeMap::new();
    for (node, path) in sample_files(dir, warnings)? {
        out.insert(node, read_jsonl(&path, warnings)?);
    }
    Ok(out)
}

/// The sample files under `dir` (a proof's `samples/`) by node name, in name order; files that
/// are not sample files are noted and left out.
pub(crate) fn sample_files(
    dir: &Path,
    warnings: &mut Vec<String>,
) -> Result<Vec<(String, PathBuf)>> {
    let mut out = BTreeMap::new();
    if !dir.is_dir() {
        return Ok(Vec::new());
    }
    for entry in fs::read_dir(dir).map_err(|e| Error::io("list", dir, e))? {
        let entry = entry.map_err(|e| Error::io("list", dir, e))?;
        let file_name = entry.file_name().to_string_lossy().into_owned();
        if file_name.starts_with(format::TEMP_PREFIX) {
            continue;
        }
        let Some(node) = format::node_of_sample_file(&file_name) else {
            warnings.push(format!("ignored unexpected file samples/{file_name}"));
            continue;
        };
        out.insert(node, entry.path());
    }
    Ok(out.into_iter().collect())
}

fn read_windows(dir: &Path) -> Result<Vec<WindowRecord>> {
    let mut out: Vec<WindowRecord> = Vec::new();
    if !dir.is_dir() {
        return Ok(out);
    }
    for entry in fs::read_dir(dir).map_err(|e| Error::io("list", dir, e))? {
        let entry = entry.map_err(|e| Error::io("list", dir, e))?;
        let record = entry.path().join(format::WINDOW_RECORD);
        if record.is_file() {
            out.push(read_json(&record)?);
        }
    }
    out.sort_by_key(|w| w.index);
    Ok(out)
}
