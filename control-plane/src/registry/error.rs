//! Registry errors and where objects come from. Every problem with a manifest names the file, the
//! document in it and a line, because the reader is a person with an editor open, not a program;
//! a problem with an object read from the Kubernetes API names its kind, namespace and name.

use std::fmt;
use std::io;
use std::path::{Path, PathBuf};

/// Where an object came from.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum Origin {
    /// A manifest file: the 0-based index of the (non-empty) document in it (shown 1-based, as
    /// an editor or `kubectl` would count), and a 1-based line (the document's first line, or the
    /// exact line of a syntax or type error).
    File {
        file: PathBuf,
        document: usize,
        line: usize,
    },
    /// An object read from the Kubernetes API (`namespace` is `None` for cluster-scoped kinds).
    Object {
        kind: &'static str,
        namespace: Option<String>,
        name: String,
    },
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

impl Origin {
    /// The line in the file, for file origins.
    pub fn line(&self) -> Option<usize> {
        match self {
            Self::File { line, .. } => Some(*line),
            Self::Object { .. } => None,
        }
    }

    /// The file, for file origins.
    pub fn file(&self) -> Option<&Path> {
        match self {
            Self::File { file, .. } => Some(file),
            Self::Object { .. } => None,
        }
    }

    /// The 0-based document index in the file, for file origins.
    pub fn document(&self) -> Option<usize> {
        match self {
            Self::File { document, .. } => Some(*document),
            Self::Object { .. } => None,
        }
    }

    /// The same place at another line of the file; an API object has no lines and is returned
    /// unchanged.
    pub fn at_line(&self, line: usize) -> Origin {
        match self {
            Self::File { file, document, .. } => Self::File {
                file: file.clone(),
                document: *document,
                line,
            },
            Self::Object { .. } => self.clone(),
        }
    }
}

impl fmt::Display for Origin {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::File {
                file,
                document,
                line,
            } => write!(
                f,
                "{}: document {} (line {line})",
                file.display(),
                document + 1
            ),
            Self::Object {
                kind,
                namespace: Some(namespace),
                name,
            } => write!(f, "{kind} {namespace}/{name}"),
            Self::Object {
                kind,
                namespace: None,
                name,
            } => write!(f, "{kind} {name}"),
        }
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

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn file_origin_reads_as_file_document_and_line() {
        let origin = Origin::File {
            file: PathBuf::from("shop/rules.yaml"),
            document: 1,
            line: 7,
        };
        assert_eq!(origin.to_string(), "shop/rules.yaml: document 2 (line 7)");
        assert_eq!(origin.line(), Some(7));
        let moved = origin.at_line(12);
        assert_eq!(moved.to_string(), "shop/rules.yaml: document 2 (line 12)");
    }

    #[test]
    fn object_origin_reads_as_kind_and_name_and_has_no_line() {
        let namespaced = Origin::Object {
            kind: "DestinationRule",
            namespace: Some("shop".into()),
            name: "reviews".into(),
        };
        assert_eq!(namespaced.to_string(), "DestinationRule shop/reviews");
        assert_eq!(namespaced.line(), None);
        assert_eq!(namespaced.at_line(12), namespaced);
        let cluster = Origin::Object {
            kind: "Namespace",
            namespace: None,
            name: "shop".into(),
        };
        assert_eq!(cluster.to_string(), "Namespace shop");
    }
}
