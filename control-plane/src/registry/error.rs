//! Registry errors. Every problem with a manifest names the file, the document in it and a line,
//! because the reader is a person with an editor open, not a program.

use std::fmt;
use std::io;
use std::path::PathBuf;

/// Where an object came from: a file, the 0-based index of the (non-empty) document in it (shown
/// 1-based, as an editor or `kubectl` would count), and a 1-based line (the document's first line, or the exact line of a syntax or type error).
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct Origin {
    pub file: PathBuf,
    pub document: usize,
    pub line: usize,
}

/// One thing wrong with the manifests, and where.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Problem {
    pub origin: Origin,
    pub reason: String,
}

/// Why the registry could not produce a snapshot (or read the assignments).
#[derive(Debug, thiserror::Error)]
pub enum RegistryError {
    #[error("{}: cannot read the manifest directory: {source}", path.display())]
    ReadDir {
        path: PathBuf,
        #[source]
        source: io::Error,
    },

    #[error("{}: cannot read: {source}", path.display())]
    ReadFile {
        path: PathBuf,
        #[source]
        source: io::Error,
    },

    /// The manifests parsed but are not valid; every problem found is listed (fixing them one
    /// reload at a time would be tedious).
    #[error("{}", ProblemList(problems))]
    Invalid { problems: Vec<Problem> },

    #[error("{}: invalid assignments file: {reason}", path.display())]
    Assignments { path: PathBuf, reason: String },

    /// The background file reader failed (it panicked or the runtime is shutting down).
    #[error("registry: {0}")]
    Task(String),
}

// === impl Origin ===

impl fmt::Display for Origin {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "{}: document {} (line {})",
            self.file.display(),
            self.document + 1,
            self.line
        )
    }
}

// === impl Problem ===

impl Problem {
    pub(crate) fn new(origin: Origin, reason: impl Into<String>) -> Self {
        Self {
            origin,
            reason: reason.into(),
        }
    }
}

impl fmt::Display for Problem {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}: {}", self.origin, self.reason)
    }
}

// === impl RegistryError ===

impl RegistryError {
    /// The manifest problems, if this is a validation error (empty otherwise).
    pub fn problems(&self) -> &[Problem] {
        match self {
            Self::Invalid { problems } => problems,
            _ => &[],
        }
    }
}

/// One problem reads as one line; several get a count and one line each.
struct ProblemList<'a>(&'a [Problem]);

impl fmt::Display for ProblemList<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self.0 {
            [] => f.write_str("invalid manifests"),
            [one] => one.fmt(f),
            many => {
                write!(f, "{} problems in the manifests:", many.len())?;
                for p in many {
                    write!(f, "\n  {p}")?;
                }
                Ok(())
            }
        }
    }
}
