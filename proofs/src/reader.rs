//! The proof reader: works on complete and incomplete proofs.

use std::collections::BTreeMap;
use std::fs;
use std::path::{Path, PathBuf};

use soak_gates::Verdict;
use soak_gates::model::{NodeEvent, Observations, RunInfo, Sample, SampleOutcome, WindowRecord};

use crate::error::{Error, ErrorKind, Result};
use crate::format::{self, CURRENT, SampleEncoding};
use crate::fsio::{self, Entry, is_dir, is_regular, read_json, read_jsonl, read_text};
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

/// Reads a proof directory, complete or not. Every file goes through the bounded, link-free
/// helpers of `fsio` (a proof is untrusted input).
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
    let context = || format!("failed to read proof {}", dir.display());
    let run_path = dir.join(format::RUN);
    if !is_regular(&run_path)? {
        return Err(Error::invalid(
            context(),
            format!("no {} (not a proof directory)", format::RUN),
        ));
    }
    let run: RunFile = read_json(&run_path)?;
    run.format
        .check_readable_by(CURRENT)
        .map_err(|e| Error::new(context(), e.kind))?;
    let mut warnings = Vec::new();
    let manifest_path = dir.join(format::MANIFEST);
    let manifest = if is_regular(&manifest_path)? {
        match read_json::<Manifest>(&manifest_path) {
            Ok(m) => {
                m.format
                    .check_readable_by(CURRENT)
                    .map_err(|e| Error::new(context(), e.kind))?;
                Some(m)
            }
            Err(err) if matches!(err.kind, ErrorKind::Refused(_)) => return Err(err),
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
    if is_regular(&config_path)? {
        meta.config = read_json(&config_path)?;
    }
    let gate_path = dir.join(format::GATE);
    if meta.gate_source.is_none() && is_regular(&gate_path)? {
        meta.gate_source = Some(read_text(&gate_path)?);
    }

    let windows = read_windows(&dir.join(format::WINDOWS_DIR), &mut warnings)?;
    let events_path = dir.join(format::EVENTS);
    let events = if is_regular(&events_path)? {
        read_jsonl(&events_path, &mut warnings)?
    } else {
        Vec::new()
    };
    let node_events_path = dir.join(format::NODE_EVENTS);
    let mut node_events: Vec<NodeEvent> = if is_regular(&node_events_path)? {
        read_jsonl(&node_events_path, &mut warnings)?
    } else {
        Vec::new()
    };
    node_events.sort_by_key(|e| e.at_ms);
    let verdict_path = dir.join(format::VERDICT);
    let verdict = if is_regular(&verdict_path)? {
        Some(read_json(&verdict_path)?)
    } else {
        None
    };
    let residue = read_residue(&dir)?;
    let observations = Observations {
        residue,
        run: RunInfo {
            run_id: meta.run_id.clone(),
            sample_interval_ms: meta.sample_interval_ms,
            nodes: meta.nodes.clone(),
            inventory_hosts: meta.coverage.as_ref().map(|c| c.inventory_hosts),
            planned_windows: planned_windows(&meta.config),
            window_ms: window_ms(&meta.config),
            interruptions: interruptions(&meta),
        },
        samples: BTreeMap::new(),
        windows,
        node_events,
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

/// The spans the run's resumes lost (`run.json`'s `resumes`), for the judge.
pub fn interruptions(meta: &RunMeta) -> Vec<soak_gates::model::Interruption> {
    meta.resumes
        .iter()
        .filter_map(|r| r.lost.as_ref())
        .map(|lost| soak_gates::model::Interruption {
            window: lost.index,
            from_ms: lost.from_ms,
            to_ms: lost.to_ms,
            cause: lost.cause.clone(),
        })
        .collect()
}

/// What the run's residue audit found after its teardown (`faults/residue.json`,
/// `found_after`), so a re-score judges the fault-residue bar as the run did. A proof without
/// the file (no faults) has none; a linked or oversized file is refused like every proof file.
fn read_residue(dir: &Path) -> Result<Vec<soak_gates::model::Residue>> {
    #[derive(serde::Deserialize)]
    struct ResidueFile {
        #[serde(default)]
        found_after: Vec<soak_gates::model::Residue>,
    }
    let faults = dir.join(format::FAULTS_DIR);
    let path = faults.join(format::FAULT_RESIDUE);
    if !is_dir(&faults)? || !is_regular(&path)? {
        return Ok(Vec::new());
    }
    let file: ResidueFile = read_json(&path)?;
    Ok(file.found_after)
}

/// Windows the run planned, from the resolved config `soak run` stores (`windows`).
pub fn planned_windows(config: &serde_json::Value) -> Option<u32> {
    config
        .get("windows")
        .and_then(serde_json::Value::as_u64)
        .and_then(|w| u32::try_from(w).ok())
}

/// The planned window length, from the resolved config (`interval_ms`).
pub fn window_ms(config: &serde_json::Value) -> Option<u64> {
    config
        .get("interval_ms")
        .and_then(serde_json::Value::as_u64)
}

fn read_samples(dir: &Path, warnings: &mut Vec<String>) -> Result<BTreeMap<String, Vec<Sample>>> {
    let mut out = BTreeMap::new();
    for (node, files) in sample_files(dir, warnings)? {
        out.insert(node, read_node_samples(&files, warnings)?);
    }
    Ok(out)
}

/// One node's sample files, in the order they are read: older JSON lines first, so a proof
/// continued by a newer writer reads in time order.
pub(crate) type NodeSampleFiles = Vec<(SampleEncoding, PathBuf)>;

/// The sample files under `dir` (a proof's `samples/`) by node name, in name order; files that
/// are not sample files are noted and left out. Every entry is checked (`lstat`) here: a link,
/// FIFO or device is refused, never followed, and [`read_node_samples`] reads the files through
/// the bounded opener of `fsio`.
pub(crate) fn sample_files(
    dir: &Path,
    warnings: &mut Vec<String>,
) -> Result<Vec<(String, NodeSampleFiles)>> {
    let mut out: BTreeMap<String, NodeSampleFiles> = BTreeMap::new();
    if !is_dir(dir)? {
        return Ok(Vec::new());
    }
    for entry in fs::read_dir(dir).map_err(|e| Error::io("list", dir, e))? {
        let entry = entry.map_err(|e| Error::io("list", dir, e))?;
        let file_name = entry.file_name().to_string_lossy().into_owned();
        if file_name.starts_with(format::TEMP_PREFIX) {
            continue;
        }
        let Some((node, encoding)) = format::sample_file(&file_name) else {
            warnings.push(format!("ignored unexpected file samples/{file_name}"));
            continue;
        };
        let path = entry.path();
        // Checked (lstat) before opening: a link or FIFO here is refused, never followed.
        if is_regular(&path)? {
            out.entry(node).or_default().push((encoding, path));
        }
    }
    for files in out.values_mut() {
        files.sort_by_key(|(encoding, _)| *encoding != SampleEncoding::JsonLines);
    }
    Ok(out.into_iter().collect())
}

/// Reads one node's sample files (from [`sample_files`]) through the bounded, link-refusing
/// opener, consecutive samples with equal metric names sharing one name list.
pub(crate) fn read_node_samples(
    files: &[(SampleEncoding, PathBuf)],
    warnings: &mut Vec<String>,
) -> Result<Vec<Sample>> {
    let mut samples = Vec::new();
    for (encoding, path) in files {
        match encoding {
            SampleEncoding::JsonLines => samples.extend(read_jsonl::<Sample>(path, warnings)?),
            SampleEncoding::Compact => samples.extend(read_compact(path, warnings)?),
        }
    }
    share_names(&mut samples);
    Ok(samples)
}

/// Decodes a compact sample file (read bounded, links refused); a torn last record is dropped
/// with a warning.
pub(crate) fn read_compact(path: &Path, warnings: &mut Vec<String>) -> Result<Vec<Sample>> {
    let bytes = fsio::read_bounded(path, format::MAX_SMP_BYTES)?;
    let decoded = crate::samples::decode(&bytes)
        .map_err(|e| Error::invalid(format!("failed to read {}", path.display()), e.to_string()))?;
    if decoded.torn_bytes > 0 {
        warnings.push(format!(
            "{}: ignored a torn last record ({} bytes)",
            path.display(),
            decoded.torn_bytes
        ));
    }
    Ok(decoded.samples)
}

/// Lets consecutive samples with equal metric names share one name list (samples parsed from
/// JSON each got their own), so the evaluator matches each list once and memory holds one copy.
fn share_names(samples: &mut [Sample]) {
    let (mut counters, mut gauges) = (None, None);
    for sample in samples {
        if let SampleOutcome::Ok(data) = &mut sample.outcome {
            data.counters.share_names(&mut counters);
            data.gauges.share_names(&mut gauges);
        }
    }
}

fn read_windows(dir: &Path, warnings: &mut Vec<String>) -> Result<Vec<WindowRecord>> {
    let mut out: Vec<WindowRecord> = Vec::new();
    if !is_dir(dir)? {
        return Ok(out);
    }
    for entry in fs::read_dir(dir).map_err(|e| Error::io("list", dir, e))? {
        let entry = entry.map_err(|e| Error::io("list", dir, e))?;
        let path = entry.path();
        match fsio::entry(&path)? {
            Entry::Dir => {}
            Entry::File(_) | Entry::Missing => {
                warnings.push(format!(
                    "ignored unexpected file windows/{}",
                    entry.file_name().to_string_lossy()
                ));
                continue;
            }
            Entry::Other(_) => {
                // Refused with the reason (a link to a directory outside the proof, a FIFO).
                is_dir(&path)?;
                continue;
            }
        }
        let record = path.join(format::WINDOW_RECORD);
        if is_regular(&record)? {
            out.push(read_json(&record)?);
        }
    }
    out.sort_by_key(|w| w.index);
    Ok(out)
}
