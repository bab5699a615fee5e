//! Errors of inventory parsing: every one names the file and, where the input has one, the line.

use std::fmt;
use std::path::{Path, PathBuf};

/// Where in an inventory file something was written.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Location {
    /// The inventory file.
    pub file: PathBuf,
    /// 1-based line, when known.
    pub line: Option<usize>,
}

impl Location {
    /// A location at `line` (1-based) of `file`.
    pub fn line(file: &Path, line: usize) -> Self {
        Location {
            file: file.to_path_buf(),
            line: Some(line),
        }
    }

    /// The file as a whole (no line).
    pub fn file(file: &Path) -> Self {
        Location {
            file: file.to_path_buf(),
            line: None,
        }
    }
}

impl fmt::Display for Location {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self.line {
            Some(line) => write!(f, "{}:{}", self.file.display(), line),
            None => write!(f, "{}", self.file.display()),
        }
    }
}

/// Failure to read or understand an inventory. Displays as `FILE:LINE: what is wrong`.
#[derive(Debug, thiserror::Error)]
#[error("{location}: {kind}")]
pub struct InventoryError {
    /// Where it went wrong.
    pub location: Location,
    /// What went wrong.
    #[source]
    pub kind: InventoryErrorKind,
}

impl InventoryError {
    /// An error at `line` of `file`.
    pub fn at(file: &Path, line: usize, kind: InventoryErrorKind) -> Self {
        InventoryError {
            location: Location::line(file, line),
            kind,
        }
    }

    /// An error about `file` as a whole.
    pub fn in_file(file: &Path, kind: InventoryErrorKind) -> Self {
        InventoryError {
            location: Location::file(file),
            kind,
        }
    }

    /// Shorthand for an [`InventoryErrorKind::Invalid`] at a line.
    pub fn invalid(file: &Path, line: usize, message: impl Into<String>) -> Self {
        Self::at(file, line, InventoryErrorKind::Invalid(message.into()))
    }
}

/// What was wrong with an inventory.
#[derive(Debug, thiserror::Error)]
pub enum InventoryErrorKind {
    /// The file could not be read.
    #[error("cannot read the inventory: {0}")]
    Read(#[source] std::io::Error),
    /// The file is not valid in its format (syntax).
    #[error("{0}")]
    Syntax(String),
    /// The file is well-formed but says something impossible or unknown.
    #[error("{0}")]
    Invalid(String),
    /// The format could not be recognised.
    #[error(
        "cannot tell the inventory format; use .toml (native), .ini / .yml / .yaml (Ansible) \
         or .pssh / .hosts (pssh host file)"
    )]
    UnknownFormat,
}

/// Line number (1-based) of byte `offset` in `text`.
pub(crate) fn line_of_offset(text: &str, offset: usize) -> usize {
    let end = offset.min(text.len());
    text.as_bytes()[..end]
        .iter()
        .filter(|b| **b == b'\n')
        .count()
        + 1
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn error_displays_file_and_line() {
        let err = InventoryError::invalid(Path::new("inv.ini"), 7, "bad port `x`");
        assert_eq!(err.to_string(), "inv.ini:7: bad port `x`");
    }

    #[test]
    fn line_of_offset_counts_newlines() {
        let text = "a\nbb\nccc";
        assert_eq!(line_of_offset(text, 0), 1);
        assert_eq!(line_of_offset(text, 2), 2);
        assert_eq!(line_of_offset(text, 6), 3);
        assert_eq!(line_of_offset(text, 999), 3);
    }
}
