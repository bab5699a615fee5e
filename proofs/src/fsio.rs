//! Thin IO helpers: atomic writes, hashing, directory walks — and the **one place every read
//! of a proof goes through**.
//!
//! A proof directory may come from anywhere (a CI artifact, a colleague, an attacker), so
//! reading one is bounded and never leaves it: [`open_regular`] opens with `O_NOFOLLOW` and
//! `O_NONBLOCK` (a symbolic link is refused, not followed; a FIFO cannot hang the open), checks
//! with `fstat` that what it opened is a regular file (never a FIFO, socket or device) and that
//! it is no larger than the bound for its kind; [`read_bounded`] then reads at most that many
//! bytes even if the file grows. Directories are checked with `lstat` ([`entry`]) before they
//! are entered, so no component inside the proof is a link either.

use std::collections::BTreeMap;
use std::fs::{self, File, OpenOptions};
use std::io::{Read, Write};
use std::os::unix::fs::{FileTypeExt, OpenOptionsExt};
use std::path::{Path, PathBuf};

use sha2::{Digest, Sha256};

use crate::error::{Error, ErrorKind, Result};
use crate::format::{MANIFEST, MAX_HASHED_BYTES, MAX_JSON_BYTES, MAX_JSONL_BYTES, TEMP_PREFIX};
use crate::meta::FileEntry;

/// What a path inside a proof is, without following links.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Entry {
    /// Nothing there.
    Missing,
    /// A regular file of this many bytes.
    File(u64),
    /// A directory.
    Dir,
    /// Anything a proof never holds: a symbolic link, FIFO, socket or device.
    Other(&'static str),
}

fn kind_name(ft: &fs::FileType) -> &'static str {
    if ft.is_symlink() {
        "a symbolic link"
    } else if ft.is_fifo() {
        "a FIFO"
    } else if ft.is_socket() {
        "a socket"
    } else if ft.is_block_device() {
        "a block device"
    } else if ft.is_char_device() {
        "a character device"
    } else {
        "not a regular file"
    }
}

fn refused(path: &Path, why: impl Into<String>) -> Error {
    Error::new(
        format!("refused to read {}", path.display()),
        ErrorKind::Refused(why.into()),
    )
}

/// What `path` is (`lstat`: a link is reported as such, never followed).
pub fn entry(path: &Path) -> Result<Entry> {
    match fs::symlink_metadata(path) {
        Ok(m) if m.file_type().is_file() => Ok(Entry::File(m.len())),
        Ok(m) if m.file_type().is_dir() => Ok(Entry::Dir),
        Ok(m) => Ok(Entry::Other(kind_name(&m.file_type()))),
        Err(err) if err.kind() == std::io::ErrorKind::NotFound => Ok(Entry::Missing),
        Err(err) => Err(Error::io("stat", path, err)),
    }
}

/// Whether `path` is a regular file to read: `false` when absent; an error when it is a link,
/// FIFO, socket, device or directory (a proof never holds those where a file belongs).
pub fn is_regular(path: &Path) -> Result<bool> {
    match entry(path)? {
        Entry::Missing => Ok(false),
        Entry::File(_) => Ok(true),
        Entry::Dir => Err(refused(path, "it is a directory where a file belongs")),
        Entry::Other(kind) => Err(refused(
            path,
            format!("it is {kind}; a proof holds regular files only, and links are never followed"),
        )),
    }
}

/// Whether `path` is a directory to enter: `false` when absent; an error when it is a link or
/// anything else.
pub fn is_dir(path: &Path) -> Result<bool> {
    match entry(path)? {
        Entry::Missing => Ok(false),
        Entry::Dir => Ok(true),
        Entry::File(_) => Err(refused(path, "it is a file where a directory belongs")),
        Entry::Other(kind) => Err(refused(
            path,
            format!("it is {kind}; links inside a proof are never followed"),
        )),
    }
}

/// Opens a regular file of at most `limit` bytes without following a link and without
/// blocking on a FIFO (see the module docs).
pub fn open_regular(path: &Path, limit: u64) -> Result<File> {
    let file = OpenOptions::new()
        .read(true)
        .custom_flags(libc::O_NOFOLLOW | libc::O_NONBLOCK | libc::O_CLOEXEC)
        .open(path)
        .map_err(|err| {
            if err.raw_os_error() == Some(libc::ELOOP) {
                refused(path, "it is a symbolic link; links are never followed")
            } else {
                Error::io("open", path, err)
            }
        })?;
    let meta = file.metadata().map_err(|e| Error::io("stat", path, e))?;
    if !meta.file_type().is_file() {
        return Err(refused(
            path,
            format!(
                "it is {}; a proof holds regular files only",
                kind_name(&meta.file_type())
            ),
        ));
    }
    if meta.len() > limit {
        return Err(refused(
            path,
            format!(
                "it is {} bytes, more than the {limit} a proof file of its kind may hold",
                meta.len()
            ),
        ));
    }
    Ok(file)
}

/// Reads a whole regular file of at most `limit` bytes (see [`open_regular`]); a file that
/// grows past the bound while it is read is refused too.
pub fn read_bounded(path: &Path, limit: u64) -> Result<Vec<u8>> {
    let file = open_regular(path, limit)?;
    let mut bytes = Vec::new();
    file.take(limit.saturating_add(1))
        .read_to_end(&mut bytes)
        .map_err(|e| Error::io("read", path, e))?;
    if bytes.len() as u64 > limit {
        return Err(refused(
            path,
            format!("it grew past {limit} bytes while being read"),
        ));
    }
    Ok(bytes)
}

/// Reads a small text file (e.g. `gate.toml`) under the JSON bound.
pub fn read_text(path: &Path) -> Result<String> {
    let bytes = read_bounded(path, MAX_JSON_BYTES)?;
    String::from_utf8(bytes).map_err(|_| refused(path, "it is not UTF-8 text"))
}

/// Writes `bytes` to `path` atomically: a temporary file in the same directory, fsync, rename.
/// A reader sees the old contents or the new, never a torn file.
pub fn write_atomic(path: &Path, bytes: &[u8]) -> Result<()> {
    write_atomic_with(path, |out| {
        out.write_all(bytes)
            .map_err(|e| Error::io("write", path, e))
    })
}

/// Like [`write_atomic`], with the contents streamed by `fill` into a buffered temporary file
/// (for files too large to build in memory). On any error the temporary file is removed.
pub fn write_atomic_with(
    path: &Path,
    fill: impl FnOnce(&mut dyn Write) -> Result<()>,
) -> Result<()> {
    let dir = path.parent().ok_or_else(|| {
        Error::invalid(format!("failed to write {}", path.display()), "no parent")
    })?;
    let name = path
        .file_name()
        .and_then(|n| n.to_str())
        .ok_or_else(|| Error::invalid(format!("failed to write {}", path.display()), "bad name"))?;
    let tmp = dir.join(format!("{TEMP_PREFIX}{name}"));
    let result = (|| {
        // A stale temporary file (or a link planted under its name) is removed, never
        // followed: the temporary file is always a new one of ours.
        let _ = fs::remove_file(&tmp);
        let file = fs::OpenOptions::new()
            .write(true)
            .create_new(true)
            .open(&tmp)
            .map_err(|e| Error::io("write", path, e))?;
        let mut out = std::io::BufWriter::with_capacity(1 << 20, file);
        fill(&mut out)?;
        let file = out
            .into_inner()
            .map_err(|e| Error::io("write", path, e.into_error()))?;
        file.sync_all().map_err(|e| Error::io("write", path, e))?;
        fs::rename(&tmp, path).map_err(|e| Error::io("write", path, e))
    })();
    if result.is_err() {
        let _ = fs::remove_file(&tmp);
    }
    result
}

/// Serializes `value` as pretty JSON (with a final newline) and writes it atomically.
pub fn write_json_atomic<T: serde::Serialize>(path: &Path, value: &T) -> Result<()> {
    let mut text =
        serde_json::to_string_pretty(value).map_err(|e| Error::json("serialize", path, e))?;
    text.push('\n');
    write_atomic(path, text.as_bytes())
}

/// Reads and parses a JSON file (bounded, see [`read_bounded`]).
pub fn read_json<T: serde::de::DeserializeOwned>(path: &Path) -> Result<T> {
    let bytes = read_bounded(path, MAX_JSON_BYTES)?;
    serde_json::from_slice(&bytes).map_err(|e| Error::json("parse", path, e))
}

/// sha256 and size of a regular file (never a link, FIFO or device).
pub fn hash_file(path: &Path) -> Result<FileEntry> {
    let mut file = open_regular(path, MAX_HASHED_BYTES)?;
    let mut hasher = Sha256::new();
    let mut buf = vec![0u8; 64 * 1024];
    let mut bytes = 0u64;
    loop {
        let n = file
            .read(&mut buf)
            .map_err(|e| Error::io("read", path, e))?;
        if n == 0 {
            break;
        }
        bytes += n as u64;
        hasher.update(&buf[..n]);
    }
    Ok(FileEntry {
        sha256: hex::encode(hasher.finalize()),
        bytes,
    })
}

/// Everything under `root`, without following links: the regular files except the top-level
/// manifest (by `/`-separated relative path; temporary files included — a leftover one is a
/// real difference), and every entry that is neither a file nor a directory (a link, FIFO,
/// socket or device) with what it is.
#[derive(Debug, Clone, Default)]
pub struct Listing {
    /// Regular files.
    pub files: Vec<(String, PathBuf)>,
    /// Entries a proof never holds, with their kind.
    pub others: Vec<(String, &'static str)>,
}

/// Walks `root` (see [`Listing`]).
pub fn list_files(root: &Path) -> Result<Listing> {
    let mut out = Listing::default();
    let mut stack = vec![(String::new(), root.to_path_buf())];
    while let Some((prefix, dir)) = stack.pop() {
        let entries = fs::read_dir(&dir).map_err(|e| Error::io("list", &dir, e))?;
        for entry in entries {
            let entry = entry.map_err(|e| Error::io("list", &dir, e))?;
            let name = entry.file_name().to_string_lossy().into_owned();
            let rel = if prefix.is_empty() {
                name.clone()
            } else {
                format!("{prefix}/{name}")
            };
            let kind = entry
                .file_type()
                .map_err(|e| Error::io("stat", &entry.path(), e))?;
            if kind.is_dir() {
                stack.push((rel, entry.path()));
            } else if !kind.is_file() {
                out.others.push((rel, kind_name(&kind)));
            } else if rel != MANIFEST {
                out.files.push((rel, entry.path()));
            }
        }
    }
    out.files.sort();
    out.others.sort();
    Ok(out)
}

/// Hashes every file (see [`list_files`]); a link, FIFO or device in the tree is refused.
pub fn hash_tree(root: &Path) -> Result<BTreeMap<String, FileEntry>> {
    let listing = list_files(root)?;
    if let Some((rel, kind)) = listing.others.first() {
        return Err(refused(
            &root.join(rel),
            format!("it is {kind}; a proof holds regular files only"),
        ));
    }
    listing
        .files
        .into_iter()
        .filter(|(rel, _)| !is_temp(rel))
        .map(|(rel, path)| Ok((rel, hash_file(&path)?)))
        .collect()
}

/// Whether a relative path names a temporary file.
pub fn is_temp(rel: &str) -> bool {
    rel.rsplit('/')
        .next()
        .is_some_and(|name| name.starts_with(TEMP_PREFIX))
}

/// Reads a JSON-lines file; a torn **last** line (a writer killed mid-append) is dropped with a
/// warning, any other bad line is an error.
pub fn read_jsonl<T: serde::de::DeserializeOwned>(
    path: &Path,
    warnings: &mut Vec<String>,
) -> Result<Vec<T>> {
    let text = read_bounded(path, MAX_JSONL_BYTES)?;
    let text = String::from_utf8_lossy(&text);
    let lines: Vec<&str> = text.split('\n').collect();
    let last = lines.len().saturating_sub(1);
    let mut out = Vec::with_capacity(lines.len());
    for (i, line) in lines.iter().enumerate() {
        if line.trim().is_empty() {
            continue;
        }
        match serde_json::from_str(line) {
            Ok(value) => out.push(value),
            // Only an unterminated final line can be a torn append.
            Err(_) if i == last => warnings.push(format!(
                "{}: ignored a torn last line ({} bytes)",
                path.display(),
                line.len()
            )),
            Err(err) => {
                return Err(Error::json(&format!("parse line {} of", i + 1), path, err));
            }
        }
    }
    Ok(out)
}
