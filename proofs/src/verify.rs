//! `verify`: does the directory still match its manifest?

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use serde::Serialize;

use crate::format::{self, CURRENT, FormatVersion, SampleEncoding};
use crate::fsio::{hash_file, is_regular, list_files, read_bounded, read_json};
use crate::meta::{Manifest, RunStatus};

/// What `verify` found. `is_ok()` only when the manifest is present, readable, sealed with a
/// final status, and every file matches it exactly.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct VerifyReport {
    /// The directory checked.
    pub dir: PathBuf,
    /// Format version from the manifest.
    pub format: Option<FormatVersion>,
    /// Status from the manifest.
    pub status: Option<RunStatus>,
    /// Files listed in the manifest and checked.
    pub checked: usize,
    /// Files whose sha256 or size differs.
    pub modified: Vec<String>,
    /// Files in the manifest that are gone.
    pub missing: Vec<String>,
    /// Files present but not in the manifest.
    pub added: Vec<String>,
    /// Anything else: no manifest, unreadable format, run not sealed, IO errors, links, FIFOs
    /// or devices in the tree (never followed or opened), files over the size bound.
    pub problems: Vec<String>,
    /// The directory holds neither `manifest.json` nor `run.json`: it is no proof at all.
    pub not_a_proof: bool,
}

impl VerifyReport {
    /// Whether the proof verified cleanly.
    pub fn is_ok(&self) -> bool {
        self.modified.is_empty()
            && self.missing.is_empty()
            && self.added.is_empty()
            && self.problems.is_empty()
    }
}

/// Checks a proof directory against its manifest: format version, status, and the sha256 of
/// every file; reports modified, missing and added files. Never fails: problems are reported.
pub fn verify(dir: impl AsRef<Path>) -> VerifyReport {
    let dir = dir.as_ref().to_path_buf();
    let mut report = VerifyReport {
        dir: dir.clone(),
        format: None,
        status: None,
        checked: 0,
        modified: Vec::new(),
        missing: Vec::new(),
        added: Vec::new(),
        problems: Vec::new(),
        not_a_proof: false,
    };
    let manifest_path = dir.join(format::MANIFEST);
    match (
        is_regular(&manifest_path),
        is_regular(&dir.join(format::RUN)),
    ) {
        (Err(err), _) => {
            report.problems.push(format!("{err}: {}", err.kind));
            return report;
        }
        (Ok(true), _) => {}
        (Ok(false), Ok(true)) => {
            report
                .problems
                .push("no manifest.json: the proof is incomplete (never sealed)".into());
            return report;
        }
        (Ok(false), _) => {
            report.not_a_proof = true;
            report.problems.push(format!(
                "not a proof directory: neither {} nor {} is there",
                format::MANIFEST,
                format::RUN
            ));
            return report;
        }
    }
    let manifest: Manifest = match read_json(&manifest_path) {
        Ok(m) => m,
        Err(err) => {
            report.problems.push(format!("{err}: {}", err.kind));
            return report;
        }
    };
    report.format = Some(manifest.format);
    report.status = Some(manifest.status);
    if let Err(err) = manifest.format.check_readable_by(CURRENT) {
        report.problems.push(err.kind.to_string());
        return report;
    }
    if manifest.status == RunStatus::Running {
        report
            .problems
            .push("status is `running`: the run never sealed its proof (incomplete)".into());
    }
    let present: BTreeMap<String, PathBuf> = match list_files(&dir) {
        Ok(listing) => {
            for (rel, kind) in &listing.others {
                report.problems.push(format!(
                    "{rel} is {kind}: not followed or opened (a proof holds regular files only)"
                ));
            }
            listing.files.into_iter().collect()
        }
        Err(err) => {
            report.problems.push(format!("{err}: {}", err.kind));
            return report;
        }
    };
    for (rel, want) in &manifest.files {
        match present.get(rel) {
            None => report.missing.push(rel.clone()),
            Some(path) => {
                report.checked += 1;
                match hash_file(path) {
                    Ok(got) if &got == want => check_samples(rel, path, &mut report.problems),
                    Ok(_) => report.modified.push(rel.clone()),
                    Err(err) => report.problems.push(format!("{err}: {}", err.kind)),
                }
            }
        }
    }
    report.added = present
        .keys()
        .filter(|rel| !manifest.files.contains_key(*rel))
        .cloned()
        .collect();
    report
}

/// A sealed proof's compact sample file must decode whole: a torn or malformed record there
/// means it was not written by a writer that finished (or was altered before sealing).
fn check_samples(rel: &str, path: &Path, problems: &mut Vec<String>) {
    let Some(name) = rel.strip_prefix(&format!("{}/", format::SAMPLES_DIR)) else {
        return;
    };
    if !matches!(
        format::sample_file(name),
        Some((_, SampleEncoding::Compact))
    ) {
        return;
    }
    match read_bounded(path, format::MAX_SMP_BYTES) {
        Ok(bytes) => match crate::samples::decode(&bytes) {
            Ok(d) if d.torn_bytes == 0 => {}
            Ok(d) => problems.push(format!(
                "{rel}: a torn last record ({} bytes)",
                d.torn_bytes
            )),
            Err(err) => problems.push(format!("{rel}: {err}")),
        },
        Err(err) => problems.push(format!("{err}: {}", err.kind)),
    }
}
