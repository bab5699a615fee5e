//! The three-valued verdict.

use std::fmt;

use serde::{Deserialize, Serialize};

/// A verdict: GO, UNKNOWN or NO-GO.
///
/// The order of the variants matters: it is the severity order `Go < Unknown < NoGo`, so the
/// verdict of anything made of parts is the **maximum** of the parts ("worst wins", like Jepsen's
/// `valid-priorities`). A check that cannot be decided is `Unknown`, never `Go`; a definite
/// failure outranks missing evidence elsewhere.
#[derive(
    Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Default, Serialize, Deserialize,
)]
pub enum Outcome {
    /// Every bar holds on complete evidence.
    #[serde(rename = "GO")]
    Go,
    /// Evidence is missing or untrustworthy; no definite failure was seen.
    #[default]
    #[serde(rename = "UNKNOWN")]
    Unknown,
    /// At least one bar definitely failed.
    #[serde(rename = "NO-GO")]
    NoGo,
}

impl Outcome {
    /// The wire and display spelling: `GO`, `UNKNOWN`, `NO-GO`.
    pub fn as_str(self) -> &'static str {
        match self {
            Outcome::Go => "GO",
            Outcome::Unknown => "UNKNOWN",
            Outcome::NoGo => "NO-GO",
        }
    }

    /// The worse of two outcomes.
    pub fn worst(self, other: Outcome) -> Outcome {
        self.max(other)
    }

    /// The worst of many outcomes; `Go` for none (an empty conjunction holds — callers that
    /// must not pass on no evidence add an explicit `Unknown` part).
    pub fn worst_of(outcomes: impl IntoIterator<Item = Outcome>) -> Outcome {
        outcomes.into_iter().fold(Outcome::Go, Outcome::worst)
    }
}

impl fmt::Display for Outcome {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn worst_wins_in_severity_order() {
        assert!(Outcome::Go < Outcome::Unknown && Outcome::Unknown < Outcome::NoGo);
        assert_eq!(Outcome::Go.worst(Outcome::Unknown), Outcome::Unknown);
        assert_eq!(Outcome::NoGo.worst(Outcome::Unknown), Outcome::NoGo);
        assert_eq!(
            Outcome::worst_of([Outcome::Go, Outcome::NoGo, Outcome::Unknown]),
            Outcome::NoGo
        );
        assert_eq!(Outcome::worst_of([]), Outcome::Go);
    }

    #[test]
    fn wire_spelling() {
        let json = serde_json::to_string(&[Outcome::Go, Outcome::Unknown, Outcome::NoGo]).ok();
        assert_eq!(json.as_deref(), Some(r#"["GO","UNKNOWN","NO-GO"]"#));
    }
}
