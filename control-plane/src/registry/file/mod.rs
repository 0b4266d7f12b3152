//! The file source: manifest files under a directory, document by document. This module knows
//! files, documents and lines; what a document means is [`object`]'s business (the same code
//! the API source uses), and every rejection it returns is placed here at a line: the field's
//! own line when it names one, else the document's. Checks that need several documents live in
//! the model.

use std::cell::OnceCell;
use std::collections::BTreeMap;
use std::io;
use std::path::Path;

use serde::de::DeserializeOwned;

use super::entry::{Age, DEFAULT_NAMESPACE};
use super::error::{Origin, Problem, RegistryError};
use super::istio::virtual_service::VirtualServiceSpec;
use super::model::{self, Acceptance, Snapshot};
use super::object::{self, Doc, Object, Parsed, Reader, Rejection, Subject, kinds};

use self::documents::{
    RawDoc, ScanFailure, content_line, decode, one_line, split_documents, with_source,
};

mod documents;
pub(crate) mod strict;
mod walk;
pub(crate) mod watch;

#[cfg(test)]
mod tests;

pub(crate) use self::walk::manifest_files;

/// How the warning about a kind the registry does not run ends (runners that announce those
/// themselves leave these out).
pub const SKIPPED_KIND: &str = "is not used by local mode; skipped";

// === impl Snapshot ===

impl Snapshot {
    /// Builds a snapshot from one file's text, as if it were the only file of a directory
    /// (generation 1, no addresses assigned); `file` names it in messages. For tests and dry
    /// runs (checking a manifest before it is copied into the directory).
    pub fn from_yaml(file: impl AsRef<Path>, text: &str) -> Result<Snapshot, RegistryError> {
        let mut parsed = Parsed::default();
        parse_file(file.as_ref(), text, &mut 0, &mut parsed);
        model::build(parsed, Acceptance::AllOrNothing)
    }
}

// === the directory ===

/// Reads and decodes every manifest file under `dir`. I/O errors stop the load (the directory
/// is not what we think it is); problems in documents are collected.
pub(crate) fn parse_dir(dir: &Path, exclude: Option<&Path>) -> Result<Parsed, RegistryError> {
    let mut parsed = Parsed::default();
    let mut order = 0;
    for path in manifest_files(dir, exclude)? {
        let bytes = match std::fs::read(&path) {
            Ok(bytes) => bytes,
            // Removed since the listing (an editor's save-by-rename): it is simply not there.
            Err(e) if e.kind() == io::ErrorKind::NotFound => continue,
            Err(source) => return Err(RegistryError::ReadFile { path, source }),
        };
        let text = String::from_utf8(bytes).map_err(|_| RegistryError::ReadFile {
            path: path.clone(),
            source: io::Error::new(io::ErrorKind::InvalidData, "not UTF-8 text"),
        })?;
        parse_file(&path, &text, &mut order, &mut parsed);
    }
    Ok(parsed)
}

// === one file, object by object ===

/// One document of a manifest file as written, with what identifies the object in it: what a
/// runner needs to store applied objects one by one (`sinewctl apply`) and replace or delete
/// them by key later.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ManifestDoc {
    pub origin: Origin,
    pub api_version: String,
    pub kind: String,
    /// `metadata.namespace`, `default` when omitted; empty for a `Namespace`.
    pub namespace: String,
    pub name: String,
    /// The document's own text, comments kept.
    pub text: String,
    /// The file line `text` starts on (line 1 of `text` is this line of the file).
    pub first_line: usize,
}

impl ManifestDoc {
    /// Whether the registry runs this kind; the others are stored and skipped (with a warning).
    pub fn used_locally(&self) -> bool {
        kinds::is_used(&self.api_version, &self.kind)
    }

    /// `networking.istio.io` for `networking.istio.io/v1`, empty for the core group (`v1`).
    pub fn group(&self) -> &str {
        self.api_version.split_once('/').map_or("", |(g, _)| g)
    }
}

/// Splits one manifest file into its documents after checking each on its own, with the same
/// problems (file, document, line) a directory load would report. Kinds the registry does not
/// use are returned too (a runner keeps them; the registry skips them with a warning). Checks
/// that need other documents (namespaces declared, duplicates) are left to a load.
pub fn split_manifest(path: &Path, text: &str) -> Result<Vec<ManifestDoc>, RegistryError> {
    let mut parsed = Parsed::default();
    parse_file(path, text, &mut 0, &mut parsed);
    if !parsed.problems.is_empty() {
        return Err(RegistryError::Invalid {
            problems: parsed.problems,
        });
    }
    let (raw, _) = split_documents(text);
    let mut out = Vec::new();
    for doc in raw {
        // Every document decoded above; empty ones are not documents.
        let Ok(Some(value)) = decode::<Option<serde_json::Value>>(&doc) else {
            continue;
        };
        let kind = str_at(&value, &["kind"]).unwrap_or_default().to_string();
        let namespace = match str_at(&value, &["metadata", "namespace"]) {
            _ if kind == "Namespace" => String::new(),
            Some(ns) if !ns.is_empty() => ns.to_string(),
            _ => DEFAULT_NAMESPACE.to_string(),
        };
        out.push(ManifestDoc {
            origin: Origin::File {
                file: path.to_path_buf(),
                document: out.len(),
                line: content_line(&doc),
            },
            api_version: str_at(&value, &["apiVersion"])
                .unwrap_or_default()
                .to_string(),
            kind,
            namespace,
            name: str_at(&value, &["metadata", "name"])
                .unwrap_or_default()
                .to_string(),
            text: doc.text.to_string(),
            first_line: doc.first_line,
        });
    }
    Ok(out)
}

// === one file ===

/// Decodes every document of one file into `out`. `order` counts documents across files.
pub(crate) fn parse_file(path: &Path, text: &str, order: &mut usize, out: &mut Parsed) {
    let (raw, failure) = split_documents(text);
    let mut index = 0;
    for doc in raw {
        let origin = |line| Origin::File {
            file: path.to_path_buf(),
            document: index,
            line,
        };
        let value = match decode::<Option<serde_json::Value>>(&doc) {
            Ok(Some(value)) => value,
            // Empty and `null` documents are not documents (kubectl skips them too).
            Ok(None) => continue,
            Err((line, reason)) => {
                out.problems.push(Problem::new(origin(line), reason));
                index += 1;
                continue;
            }
        };
        let origin = origin(content_line(&doc));
        *order += 1;
        index += 1;
        let mut reader = FileReader {
            doc: &doc,
            origin: &origin,
            nodes: OnceCell::new(),
            warnings: &mut out.warnings,
        };
        match object::decode_with(&value, &origin, Age::Order(*order), &mut reader) {
            Ok(Some(Object::VirtualService(mut vs, mesh))) => {
                vs.lines = route_lines(&vs.spec, reader.nodes(), doc.first_line);
                out.docs.push(Doc {
                    origin,
                    object: Object::VirtualService(vs, mesh),
                });
            }
            Ok(Some(object)) => out.docs.push(Doc { origin, object }),
            Ok(None) => out.warnings.push(format!(
                "{origin}: {} {} {SKIPPED_KIND}",
                str_at(&value, &["apiVersion"]).unwrap_or("?"),
                str_at(&value, &["kind"]).unwrap_or("?"),
            )),
            Err(p) => out.problems.extend(p),
        }
    }
    if let Some(ScanFailure {
        line,
        column,
        message,
    }) = failure
    {
        let line_text = text.lines().nth(line.saturating_sub(1)).unwrap_or_default();
        out.problems.push(Problem::new(
            Origin::File {
                file: path.to_path_buf(),
                document: index,
                line,
            },
            format!("invalid YAML: {}", with_source(&message, column, line_text)),
        ));
    }
}

// === one document ===

/// Reads one document's typed form from its YAML text, so that errors name lines, and places
/// the object's rejections at lines.
struct FileReader<'a> {
    doc: &'a RawDoc<'a>,
    origin: &'a Origin,
    /// The document's nodes, built once and only when a line is needed.
    nodes: OnceCell<strict::Nodes>,
    warnings: &'a mut Vec<String>,
}

impl FileReader<'_> {
    fn nodes(&self) -> &strict::Nodes {
        self.nodes.get_or_init(|| strict::Nodes::of(self.doc.text))
    }

    /// The document's own line (where its content starts).
    fn doc_line(&self) -> usize {
        self.origin.line().unwrap_or(self.doc.first_line)
    }

    /// A line of the document's text as a line of the file.
    fn file_line(&self, line: usize) -> usize {
        self.doc.first_line + line.max(1) - 1
    }

    /// The line of the field at `path`, else of its nearest written parent (a missing field's
    /// block), else the document's; the whole object (an empty path) is the document's line.
    fn line_of_path(&self, path: &str) -> usize {
        let mut p = path;
        while !p.is_empty() {
            if let Some(line) = self.nodes().line_of(p) {
                return self.file_line(line);
            }
            match p.rfind(['.', '[']) {
                Some(i) => p = &p[..i],
                None => break,
            }
        }
        self.doc_line()
    }

    /// `Service "reviews": reason` at `line`, or `Service: reason` before the name is known.
    fn problem_at(
        &self,
        subject: Subject<'_>,
        line: usize,
        reason: impl std::fmt::Display,
    ) -> Problem {
        let origin = self.origin.at_line(line);
        match subject.name {
            Some(name) => Problem::new(origin, format!("{} {name:?}: {reason}", subject.kind)),
            None => Problem::new(origin, format!("{}: {reason}", subject.kind)),
        }
    }
}

impl Reader for FileReader<'_> {
    type Error = Problem;

    /// Decodes strictly: an unknown field is a problem at its own line (all of them are listed),
    /// and a value of the wrong type names its field, the type expected and what was written.
    fn typed<T: DeserializeOwned>(&mut self, subject: Subject<'_>) -> Result<T, Vec<Problem>> {
        match strict::decode::<T>(self.doc.text) {
            Ok((value, unknown)) if unknown.is_empty() => Ok(value),
            Ok((_, unknown)) => Err(unknown
                .iter()
                .map(|path| {
                    let line = self
                        .nodes()
                        .line_of(path)
                        .map_or(self.doc_line(), |l| self.file_line(l));
                    let rejection = Rejection::unknown_field::<T>(path);
                    self.problem_at(subject, line, rejection.reason)
                })
                .collect()),
            Err(e) => match (self.nodes().explain(&e), e.location()) {
                (Some(reason), Some(at)) => {
                    let line = usize::try_from(at.line()).unwrap_or(1);
                    Err(vec![self.problem_at(subject, self.file_line(line), reason)])
                }
                // Not about one field: the library's words, with the source line.
                _ => Err(vec![match decode::<T>(self.doc) {
                    Err((line, reason)) => self.problem_at(subject, line, reason),
                    Ok(_) => self.problem_at(subject, self.doc_line(), one_line(&e.to_string())),
                }]),
            },
        }
    }

    fn reject(&mut self, subject: Option<Subject<'_>>, rejection: Rejection) -> Problem {
        match subject {
            Some(subject) => {
                let line = self.line_of_path(&rejection.path);
                self.problem_at(subject, line, rejection.reason)
            }
            None => Problem::new(self.origin.clone(), rejection.reason),
        }
    }

    fn warn(&mut self, subject: Subject<'_>, warning: Rejection) {
        let line = self.line_of_path(&warning.path);
        let problem = self.problem_at(subject, line, warning.reason);
        self.warnings.push(problem.to_string());
    }
}

/// File lines of the fields other objects' checks name (each route and mirror destination), by
/// path (`spec.http[0].route[1].destination`, `spec.http[0].mirror`).
fn route_lines(
    spec: &VirtualServiceSpec,
    nodes: &strict::Nodes,
    first_line: usize,
) -> BTreeMap<String, usize> {
    let mut lines = BTreeMap::new();
    for (kind, routes) in [
        ("http", spec.http.as_ref().map_or(0, Vec::len)),
        ("tcp", spec.tcp.as_ref().map_or(0, Vec::len)),
    ] {
        for i in 0..routes {
            let mut record = |path: String| {
                let line = nodes.line_of(&path)?;
                lines.insert(path, first_line + line - 1);
                Some(())
            };
            for j in 0.. {
                if record(format!("spec.{kind}[{i}].route[{j}].destination")).is_none() {
                    break;
                }
            }
            if kind == "http" {
                record(format!("spec.http[{i}].mirror"));
                for j in 0.. {
                    let path = format!("spec.http[{i}].mirrors[{j}].destination");
                    if record(path).is_none() {
                        break;
                    }
                }
            }
        }
    }
    lines
}

fn str_at<'v>(value: &'v serde_json::Value, path: &[&str]) -> Option<&'v str> {
    path.iter()
        .try_fold(value, |v, key| v.get(key))
        .and_then(|v| v.as_str())
}
