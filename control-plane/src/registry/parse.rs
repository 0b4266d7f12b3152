//! Reading manifests: the directory walk, splitting files into documents, and decoding and
//! checking each document on its own. Checks that need several documents live in the model.
//!
//! Documents are found with the YAML parser's own events rather than by looking for `---`
//! lines, so a marker inside a block scalar or after a directive cannot confuse the count. Each
//! document is then decoded from its own slice of the file, which keeps the library's line
//! numbers meaningful (shifted by where the slice starts).

use std::collections::{BTreeMap, BTreeSet};
use std::io;
use std::net::IpAddr;
use std::path::{Path, PathBuf};

use k8s_openapi::api::apps::v1::Deployment;
use k8s_openapi::api::core::v1::{Namespace, Pod, PodSpec, Service, ServiceAccount};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::ObjectMeta;
use k8s_openapi::apimachinery::pkg::util::intstr::IntOrString;
use serde::de::DeserializeOwned;
use serde_saphyr::granit_parser::{Event, Marker, Parser};
use serde_saphyr::{MessageFormatter, UserMessageFormatter};

use super::error::{Origin, Problem, RegistryError};
use super::model::{
    Age, DEFAULT_NAMESPACE, DeploymentDoc, DestinationRule, INJECTION_LABEL, NamespaceEntry,
    PodEntry, ServiceAccountEntry, ServiceEntry, ServicePortEntry, TargetPort, VirtualService,
    service_account_of,
};
use super::resolve::protocol_for_port;
use super::selector;

/// The API versions whose `DestinationRule` we accept: Istio's three (same schema) and ours.
pub(crate) const DESTINATION_RULE_VERSIONS: [&str; 4] = [
    "networking.istio.io/v1",
    "networking.istio.io/v1beta1",
    "networking.istio.io/v1alpha3",
    "sinew.dev/v1alpha1",
];

/// How the warning about a kind the registry does not run ends (runners that announce those
/// themselves leave these out).
pub const SKIPPED_KIND: &str = "is not used by local mode; skipped";

/// Everything read from a directory: the documents that decoded, what was wrong with the others,
/// and what was skipped.
#[derive(Debug, Default)]
pub(crate) struct Parsed {
    pub docs: Vec<Doc>,
    pub problems: Vec<Problem>,
    pub warnings: Vec<String>,
}

/// One decoded, individually valid document.
#[derive(Debug)]
pub(crate) struct Doc {
    pub origin: Origin,
    pub object: Object,
}

#[derive(Debug)]
pub(crate) enum Object {
    Namespace(Box<NamespaceEntry>),
    ServiceAccount(Box<ServiceAccountEntry>),
    Service(Box<ServiceEntry>),
    Pod(Box<PodEntry>),
    Deployment(Box<DeploymentDoc>),
    DestinationRule(Box<DestinationRule>),
    /// The service and whether it applies to mesh traffic (gateway-only ones are skipped).
    VirtualService(Box<VirtualService>, bool),
}

// === the directory ===

/// The manifest files under `dir`, sorted by path. `exclude` (the assignments file) is left
/// out even if it lives in the directory.
pub(crate) fn manifest_files(
    dir: &Path,
    exclude: Option<&Path>,
) -> Result<Vec<PathBuf>, RegistryError> {
    let exclude = exclude.and_then(canonical_target);
    let mut files = Vec::new();
    walk(dir, &mut files).map_err(|(path, source)| RegistryError::ReadDir { path, source })?;
    if let Some(exclude) = exclude {
        files.retain(|f| {
            // Cheap name test first; canonicalize only the candidates.
            f.file_name() != exclude.file_name() || canonical_target(f).as_ref() != Some(&exclude)
        });
    }
    files.sort();
    Ok(files)
}

/// Errors name the directory that failed, which may be below `dir`.
fn walk(dir: &Path, out: &mut Vec<PathBuf>) -> Result<(), (PathBuf, io::Error)> {
    let failed = |e| (dir.to_path_buf(), e);
    for entry in std::fs::read_dir(dir).map_err(failed)? {
        let entry = entry.map_err(failed)?;
        if entry.file_name().to_string_lossy().starts_with('.') {
            continue;
        }
        let path = entry.path();
        let file_type = entry.file_type().map_err(failed)?;
        if file_type.is_dir() {
            walk(&path, out)?;
        } else if is_manifest_name(&path) {
            // Follows symlinks to files; a dangling link or a link to a directory is skipped.
            if file_type.is_file() || std::fs::metadata(&path).is_ok_and(|m| m.is_file()) {
                out.push(path);
            }
        }
    }
    Ok(())
}

fn is_manifest_name(path: &Path) -> bool {
    path.extension()
        .and_then(|e| e.to_str())
        .is_some_and(|e| e.eq_ignore_ascii_case("yaml") || e.eq_ignore_ascii_case("yml"))
}

/// The canonical path of `path`'s directory joined with its file name: comparable whether or not
/// the file exists yet.
pub(crate) fn canonical_target(path: &Path) -> Option<PathBuf> {
    let name = path.file_name()?;
    let parent = match path.parent() {
        Some(p) if !p.as_os_str().is_empty() => p,
        _ => Path::new("."),
    };
    Some(parent.canonicalize().ok()?.join(name))
}

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

/// A document's slice of the file and the file line it starts on.
struct RawDoc<'a> {
    text: &'a str,
    first_line: usize,
}

/// A syntax error that stopped the split.
struct ScanFailure {
    line: usize,
    column: usize,
    message: String,
}

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
        match decode_object(&doc, &value, &origin, *order, &mut out.warnings) {
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

/// Splits `text` into documents using the parser's document events. Stops at the first syntax
/// error (the parser cannot resynchronise reliably), returning what came before it.
fn split_documents(text: &str) -> (Vec<RawDoc<'_>>, Option<ScanFailure>) {
    let mut docs = Vec::new();
    let mut start: Option<(usize, usize)> = None;
    for event in Parser::new_from_str(text) {
        match event {
            Ok((Event::DocumentStart(..), span)) => {
                // From the start of the line, so the slice keeps the document's indentation.
                let at = byte_offset(text, &span.start);
                let line_start = text[..at].rfind('\n').map_or(0, |i| i + 1);
                start = Some((line_start, span.start.line()));
            }
            Ok((Event::DocumentEnd, span)) => {
                let Some((from, first_line)) = start.take() else {
                    continue;
                };
                let to = byte_offset(text, &span.end).max(from);
                match text.get(from..to) {
                    Some(slice) => docs.push(RawDoc {
                        text: slice,
                        first_line,
                    }),
                    None => {
                        let failure = ScanFailure {
                            line: first_line,
                            column: 1,
                            message: "cannot locate the document's text".into(),
                        };
                        return (docs, Some(failure));
                    }
                }
            }
            Ok(_) => {}
            Err(e) => {
                let failure = ScanFailure {
                    line: e.marker().line(),
                    column: e.marker().col() + 1,
                    message: one_line(&e.info()),
                };
                return (docs, Some(failure));
            }
        }
    }
    (docs, None)
}

/// A marker's byte offset: string input always has one, but fall back to counting characters.
fn byte_offset(text: &str, marker: &Marker) -> usize {
    marker
        .byte_offset()
        .or_else(|| text.char_indices().nth(marker.index()).map(|(b, _)| b))
        .unwrap_or(text.len())
        .min(text.len())
}

/// The first line of a document that holds content, for errors about the document as a whole
/// (pointing at `apiVersion:` rather than at `---` or a comment above it).
fn content_line(doc: &RawDoc<'_>) -> usize {
    doc.text
        .lines()
        .position(|l| {
            let t = l.trim();
            !(t.is_empty() || t.starts_with('#') || t == "---" || t.starts_with("--- #"))
        })
        .map_or(doc.first_line, |i| doc.first_line + i)
}

/// Decodes a document's slice as `T`; errors carry the file line and the library's message,
/// with the column and the offending source line (the library's type errors, like "invalid
/// i32", say little on their own).
fn decode<T: DeserializeOwned>(doc: &RawDoc<'_>) -> Result<T, (usize, String)> {
    let options = serde_saphyr::options! { with_snippet: false };
    serde_saphyr::from_str_with_options::<T>(doc.text, options).map_err(|e| {
        // The library's messages may carry line breaks for layout; ours are one line.
        let message = one_line(&UserMessageFormatter.format_message(e.without_snippet()));
        let at = e
            .location()
            .and_then(|l| {
                Some((
                    usize::try_from(l.line()).ok()?,
                    usize::try_from(l.column()).ok()?,
                ))
            })
            .filter(|(line, _)| *line > 0);
        match at {
            Some((line, column)) => {
                let line_text = doc.text.lines().nth(line - 1).unwrap_or_default();
                (
                    doc.first_line + line - 1,
                    with_source(&message, column, line_text),
                )
            }
            None => (content_line(doc), message),
        }
    })
}

/// `message at column C: "source line"`.
fn with_source(message: &str, column: usize, line_text: &str) -> String {
    let excerpt = line_text.trim();
    if excerpt.is_empty() {
        format!("{message} at column {column}")
    } else {
        let excerpt: String = excerpt.chars().take(80).collect();
        format!("{message} at column {column}: {:?}", one_line(&excerpt))
    }
}

fn one_line(s: &str) -> String {
    s.chars()
        .map(|c| if c.is_control() { ' ' } else { c })
        .collect()
}

// === one document ===

/// Names the object in messages: `Service "reviews": …`, or `Service: …` before the name is known.
struct Ctx<'a> {
    origin: &'a Origin,
    kind: &'a str,
    name: Option<&'a str>,
}

impl Ctx<'_> {
    fn problem(&self, reason: impl std::fmt::Display) -> Problem {
        match self.origin.line() {
            Some(line) => self.problem_at(line, reason),
            None => self.problem_at(0, reason),
        }
    }

    fn problem_at(&self, line: usize, reason: impl std::fmt::Display) -> Problem {
        let origin = self.origin.at_line(line);
        match self.name {
            Some(name) => Problem::new(origin, format!("{} {name:?}: {reason}", self.kind)),
            None => Problem::new(origin, format!("{}: {reason}", self.kind)),
        }
    }
}

/// `Ok(None)` for kinds the registry does not use. Every unknown field is its own problem.
fn decode_object(
    doc: &RawDoc<'_>,
    value: &serde_json::Value,
    origin: &Origin,
    order: usize,
    warnings: &mut Vec<String>,
) -> Result<Option<Object>, Vec<Problem>> {
    let Some(map) = value.as_object() else {
        return Err(vec![Problem::new(
            origin.clone(),
            format!(
                "expected a mapping with apiVersion and kind, found {}",
                json_type(value)
            ),
        )]);
    };
    let field = |name: &str| match map.get(name) {
        Some(serde_json::Value::String(s)) if !s.is_empty() => Ok(s.as_str()),
        Some(serde_json::Value::String(_)) | None => {
            Err(Problem::new(origin.clone(), format!("{name} is required")))
        }
        Some(other) => Err(Problem::new(
            origin.clone(),
            format!("{name} must be a string, not {}", json_type(other)),
        )),
    };
    let api_version = field("apiVersion").map_err(one)?;
    let kind = field("kind").map_err(one)?;
    let ctx = Ctx {
        origin,
        kind,
        name: str_at(value, &["metadata", "name"]).filter(|n| !n.is_empty()),
    };
    let object = match (api_version, kind) {
        ("v1", "Namespace") => Object::Namespace(Box::new(
            namespace(decode_typed(doc, &ctx)?, &ctx).map_err(one)?,
        )),
        ("v1", "ServiceAccount") => Object::ServiceAccount(Box::new(
            service_account(decode_typed(doc, &ctx)?, &ctx).map_err(one)?,
        )),
        ("v1", "Service") => Object::Service(Box::new(
            service(decode_typed(doc, &ctx)?, &ctx).map_err(one)?,
        )),
        ("v1", "Pod") => Object::Pod(Box::new(pod(decode_typed(doc, &ctx)?, &ctx).map_err(one)?)),
        ("apps/v1", "Deployment") => Object::Deployment(Box::new(
            deployment(decode_typed(doc, &ctx)?, &ctx).map_err(one)?,
        )),
        (v, "DestinationRule") if DESTINATION_RULE_VERSIONS.contains(&v) => {
            // Checked whole against the schema, then its values as istiod's webhook does.
            let typed = decode_typed::<istio::DestinationRuleDoc>(doc, &ctx)?;
            let mut rule = destination_rule(v, value, &ctx, order).map_err(one)?;
            rule.typed = typed.spec.unwrap_or_default();
            let report = validate::destination_rule(&rule.typed, &rule.namespace);
            report.into_result(doc, &ctx, warnings)?;
            Object::DestinationRule(Box::new(rule))
        }
        (v, "VirtualService") if DESTINATION_RULE_VERSIONS.contains(&v) => {
            let typed = decode_typed::<istio::virtual_service::VirtualServiceDoc>(doc, &ctx)?;
            let meta = typed.metadata.clone().unwrap_or_default();
            let name = name_of(&meta, &ctx, NameRule::Subdomain).map_err(one)?;
            let Some(spec) = typed.spec else {
                return Err(vec![ctx.problem("spec is required")]);
            };
            let gateways = spec.gateways.as_deref().unwrap_or_default();
            let mesh = gateways.is_empty() || gateways.iter().any(|g| g == "mesh");
            if !mesh {
                warnings.push(format!(
                    "{origin}: VirtualService {name:?}: spec.gateways {gateways:?} does not include \"mesh\": it configures gateways only, which Sinew does not run; skipped"
                ));
            }
            validate::virtual_service(&spec).into_result(doc, &ctx, warnings)?;
            let nodes = strict::Nodes::of(doc.text);
            let mut lines = BTreeMap::new();
            for (kind, routes) in [
                ("http", spec.http.as_ref().map_or(0, Vec::len)),
                ("tcp", spec.tcp.as_ref().map_or(0, Vec::len)),
            ] {
                for i in 0..routes {
                    let mut record = |path: String| {
                        let line = nodes.line_of(&path)?;
                        lines.insert(path, doc.first_line + line - 1);
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
            Object::VirtualService(
                Box::new(VirtualService {
                    api_version: v.to_string(),
                    namespace: namespace_of(&meta),
                    name,
                    age: Age::Order(order),
                    origin: origin.clone(),
                    spec,
                    lines,
                }),
                mesh,
            )
        }
        _ => match kinds::check(api_version, kind) {
            Ok(()) => return Ok(None),
            Err(reason) => return Err(vec![Problem::new(origin.clone(), reason)]),
        },
    };
    Ok(Some(object))
}

fn one(p: Problem) -> Vec<Problem> {
    vec![p]
}

/// Decodes strictly: an unknown field is a problem at its own line (all of them are listed),
/// and a value of the wrong type names its field, the type expected and what was written.
fn decode_typed<T: DeserializeOwned>(doc: &RawDoc<'_>, ctx: &Ctx<'_>) -> Result<T, Vec<Problem>> {
    let file_line = |line: usize| doc.first_line + line.max(1) - 1;
    match strict::decode::<T>(doc.text) {
        Ok((value, unknown)) if unknown.is_empty() => Ok(value),
        Ok((_, unknown)) => {
            let nodes = strict::Nodes::of(doc.text);
            Err(unknown
                .iter()
                .map(|path| {
                    let line = nodes
                        .line_of(path)
                        .map_or(ctx.origin.line().unwrap_or(0), file_line);
                    let field = path.rsplit('.').next().unwrap_or(path);
                    let field = field.split('[').next().unwrap_or(field);
                    match kinds::closest(field, &strict::sibling_fields::<T>(path)) {
                        Some(meant) => ctx.problem_at(
                            line,
                            format!("{path}: unknown field; did you mean {meant}?"),
                        ),
                        None => ctx.problem_at(line, format!("{path}: unknown field")),
                    }
                })
                .collect())
        }
        Err(e) => {
            let nodes = strict::Nodes::of(doc.text);
            match (nodes.explain(&e), e.location()) {
                (Some(reason), Some(at)) => {
                    let line = usize::try_from(at.line()).unwrap_or(1);
                    Err(vec![ctx.problem_at(file_line(line), reason)])
                }
                // Not about one field: the library's words, with the source line.
                _ => Err(vec![match decode::<T>(doc) {
                    Err((line, reason)) => ctx.problem_at(line, reason),
                    Ok(_) => ctx.problem(one_line(&e.to_string())),
                }]),
            }
        }
    }
}

fn json_type(v: &serde_json::Value) -> &'static str {
    match v {
        serde_json::Value::Null => "null",
        serde_json::Value::Bool(_) => "a boolean",
        serde_json::Value::Number(_) => "a number",
        serde_json::Value::String(_) => "a string",
        serde_json::Value::Array(_) => "a sequence",
        serde_json::Value::Object(_) => "a mapping",
    }
}

fn str_at<'v>(value: &'v serde_json::Value, path: &[&str]) -> Option<&'v str> {
    path.iter()
        .try_fold(value, |v, key| v.get(key))
        .and_then(|v| v.as_str())
}

/// `metadata.name`, checked against the kind's naming rule.
fn name_of(meta: &ObjectMeta, ctx: &Ctx<'_>, rule: NameRule) -> Result<String, Problem> {
    let name = meta.name.as_deref().unwrap_or_default();
    if name.is_empty() {
        return Err(ctx.problem("metadata.name is required"));
    }
    let (ok, what) = match rule {
        NameRule::Label => (
            selector::is_dns_label(name),
            "a DNS label (lowercase letters, digits and '-', at most 63)",
        ),
        NameRule::Label1035 => (
            selector::is_dns1035_label(name),
            "a DNS label starting with a letter (lowercase letters, digits and '-', at most 63)",
        ),
        NameRule::Subdomain => (
            selector::is_dns_subdomain(name),
            "a DNS subdomain (lowercase letters, digits, '-' and '.', at most 253)",
        ),
    };
    if ok {
        Ok(name.to_string())
    } else {
        Err(ctx.problem(format!("metadata.name must be {what}")))
    }
}

#[derive(Clone, Copy)]
enum NameRule {
    Label,
    Label1035,
    Subdomain,
}

fn namespace_of(meta: &ObjectMeta) -> String {
    meta.namespace
        .as_deref()
        .filter(|ns| !ns.is_empty())
        .unwrap_or(DEFAULT_NAMESPACE)
        .to_string()
}

fn namespace(object: Namespace, ctx: &Ctx<'_>) -> Result<NamespaceEntry, Problem> {
    let name = name_of(&object.metadata, ctx, NameRule::Label)?;
    let labels = object.metadata.labels.clone().unwrap_or_default();
    let (key, value) = INJECTION_LABEL;
    Ok(NamespaceEntry {
        name,
        injection_enabled: labels.get(key).map(String::as_str) == Some(value),
        labels,
        origin: Some(ctx.origin.clone()),
        object: Some(object),
    })
}

fn service_account(object: ServiceAccount, ctx: &Ctx<'_>) -> Result<ServiceAccountEntry, Problem> {
    Ok(ServiceAccountEntry {
        namespace: namespace_of(&object.metadata),
        name: name_of(&object.metadata, ctx, NameRule::Subdomain)?,
        origin: ctx.origin.clone(),
        object,
    })
}

fn service(object: Service, ctx: &Ctx<'_>) -> Result<ServiceEntry, Problem> {
    let name = name_of(&object.metadata, ctx, NameRule::Label1035)?;
    let spec = object.spec.clone().unwrap_or_default();
    let cluster_ip = spec.cluster_ip.as_deref().unwrap_or_default();
    let headless = cluster_ip == "None";
    let declared_cluster_ip = match cluster_ip {
        "" | "None" => None,
        ip => Some(ip.parse::<IpAddr>().map_err(|_| {
            ctx.problem(format!(
                "spec.clusterIP {ip:?} is not an IP address (or None for a headless service)"
            ))
        })?),
    };
    let external_name = spec.type_.as_deref() == Some("ExternalName");
    let written = spec.ports.as_deref().unwrap_or_default();
    if written.is_empty() && !headless && !external_name {
        return Err(ctx.problem("spec.ports is required"));
    }

    let mut ports = Vec::with_capacity(written.len());
    let mut names = BTreeSet::new();
    let mut numbers = BTreeSet::new();
    for (i, p) in written.iter().enumerate() {
        let at = format!("spec.ports[{i}]");
        let port = match p.port {
            0 => return Err(ctx.problem(format!("{at}.port is required"))),
            n => u16::try_from(n).ok().filter(|n| *n > 0).ok_or_else(|| {
                ctx.problem(format!("{at}.port must be between 1 and 65535, not {n}"))
            })?,
        };
        let transport = p.protocol.as_deref().unwrap_or("TCP").to_string();
        if !matches!(transport.as_str(), "TCP" | "UDP" | "SCTP") {
            return Err(ctx.problem(format!(
                "{at}.protocol must be TCP, UDP or SCTP, not {transport:?}"
            )));
        }
        let name = p.name.clone().filter(|n| !n.is_empty());
        match &name {
            None if written.len() > 1 => {
                return Err(ctx.problem(format!(
                    "{at}.name is required when a Service has more than one port"
                )));
            }
            Some(n) if !names.insert(n.clone()) => {
                return Err(ctx.problem(format!("{at}.name {n:?} is used by two ports")));
            }
            _ => {}
        }
        if !numbers.insert((port, transport.clone())) {
            return Err(ctx.problem(format!("{at}: port {port}/{transport} is listed twice")));
        }
        let target_port = match &p.target_port {
            None => TargetPort::Number(port),
            Some(IntOrString::Int(n)) => {
                TargetPort::Number(u16::try_from(*n).ok().filter(|n| *n > 0).ok_or_else(|| {
                    ctx.problem(format!(
                        "{at}.targetPort must be between 1 and 65535, not {n}"
                    ))
                })?)
            }
            Some(IntOrString::String(s)) if selector::is_port_name(s) => {
                TargetPort::Name(s.clone())
            }
            Some(IntOrString::String(s)) => {
                return Err(ctx.problem(format!(
                    "{at}.targetPort {s:?} is neither a port number nor a valid port name"
                )));
            }
        };
        ports.push(ServicePortEntry {
            protocol: protocol_for_port(name.as_deref(), p.app_protocol.as_deref()),
            name,
            port,
            target_port,
            transport,
            app_protocol: p.app_protocol.clone(),
        });
    }

    let selector = spec.selector.clone().filter(|s| !s.is_empty());
    Ok(ServiceEntry {
        namespace: namespace_of(&object.metadata),
        name,
        ports,
        selector,
        headless,
        declared_cluster_ip,
        vip: declared_cluster_ip,
        origin: ctx.origin.clone(),
        object,
    })
}

/// The checks a pod spec needs to be runnable and addressable, at `prefix` (`spec` for a Pod,
/// `spec.template.spec` for a Deployment).
fn check_pod_spec(spec: Option<&PodSpec>, prefix: &str, ctx: &Ctx<'_>) -> Result<(), Problem> {
    let containers = spec.map(|s| s.containers.as_slice()).unwrap_or_default();
    if containers.is_empty() {
        return Err(ctx.problem(format!("{prefix}.containers is required")));
    }
    let mut names = BTreeSet::new();
    let mut port_names = BTreeMap::new();
    for (i, c) in containers.iter().enumerate() {
        let at = format!("{prefix}.containers[{i}]");
        if c.name.is_empty() {
            return Err(ctx.problem(format!("{at}.name is required")));
        }
        if !names.insert(c.name.as_str()) {
            return Err(ctx.problem(format!("{at}.name {:?} is used twice", c.name)));
        }
        for (j, p) in c.ports.iter().flatten().enumerate() {
            let at = format!("{at}.ports[{j}]");
            if !(1..=65535).contains(&p.container_port) {
                return Err(ctx.problem(match p.container_port {
                    0 => format!("{at}.containerPort is required"),
                    n => format!("{at}.containerPort must be between 1 and 65535, not {n}"),
                }));
            }
            if let Some(name) = p.name.as_deref().filter(|n| !n.is_empty()) {
                if !selector::is_port_name(name) {
                    return Err(ctx.problem(format!("{at}.name {name:?} is not a valid port name")));
                }
                // Named target ports must resolve to one number per pod.
                if let Some(prev) = port_names.insert(name, p.container_port)
                    && prev != p.container_port
                {
                    return Err(ctx.problem(format!(
                        "{at}.name {name:?} names two different ports ({prev} and {})",
                        p.container_port
                    )));
                }
            }
        }
    }
    Ok(())
}

fn pod(object: Pod, ctx: &Ctx<'_>) -> Result<PodEntry, Problem> {
    let name = name_of(&object.metadata, ctx, NameRule::Subdomain)?;
    check_pod_spec(object.spec.as_ref(), "spec", ctx)?;
    let declared_ip = match object.status.as_ref().and_then(|s| s.pod_ip.as_deref()) {
        None | Some("") => None,
        Some(ip) => Some(
            ip.parse::<IpAddr>()
                .map_err(|_| ctx.problem(format!("status.podIP {ip:?} is not an IP address")))?,
        ),
    };
    Ok(PodEntry {
        namespace: namespace_of(&object.metadata),
        name,
        labels: object.metadata.labels.clone().unwrap_or_default(),
        annotations: object.metadata.annotations.clone().unwrap_or_default(),
        service_account: object
            .spec
            .as_ref()
            .map(service_account_of)
            .unwrap_or_default(),
        declared_ip,
        ip: declared_ip,
        meshed: false,
        owner: None,
        origin: ctx.origin.clone(),
        object,
    })
}

fn deployment(object: Deployment, ctx: &Ctx<'_>) -> Result<DeploymentDoc, Problem> {
    let name = name_of(&object.metadata, ctx, NameRule::Subdomain)?;
    let Some(spec) = object.spec.as_ref() else {
        return Err(ctx.problem("spec is required"));
    };
    let replicas = match spec.replicas {
        None => 1,
        Some(n) => u32::try_from(n)
            .map_err(|_| ctx.problem(format!("spec.replicas must not be negative, not {n}")))?,
    };
    check_pod_spec(spec.template.spec.as_ref(), "spec.template.spec", ctx)?;
    let template_meta = spec.template.metadata.clone().unwrap_or_default();
    if selector::label_selector_is_empty(&spec.selector) {
        return Err(
            ctx.problem("spec.selector is required (an empty selector would select every pod)")
        );
    }
    let labels = template_meta.labels.clone().unwrap_or_default();
    match selector::label_selector_matches(&spec.selector, &labels) {
        Ok(true) => {}
        Ok(false) => {
            return Err(ctx.problem(
                "spec.selector does not match spec.template.metadata.labels (the Deployment would not own its own pods)",
            ));
        }
        Err(e) => return Err(ctx.problem(format!("spec.selector.{e}"))),
    }
    // `<name>-<index>` must itself be a valid pod name.
    if replicas > 0 && !selector::is_dns_subdomain(&format!("{name}-{}", replicas - 1)) {
        return Err(ctx.problem("metadata.name is too long to name its pods"));
    }
    Ok(DeploymentDoc {
        namespace: namespace_of(&object.metadata),
        name,
        replicas,
        template_meta,
        template_spec: spec.template.spec.clone().unwrap_or_default(),
    })
}

/// Minimal checks only: the rule's spec belongs to the traffic-policy compiler, which validates
/// it against Istio's schema. `host` is needed here to index rules at all.
fn destination_rule(
    api_version: &str,
    value: &serde_json::Value,
    ctx: &Ctx<'_>,
    order: usize,
) -> Result<DestinationRule, Problem> {
    let name = match value.pointer("/metadata/name") {
        Some(serde_json::Value::String(s)) if selector::is_dns_subdomain(s) => s.clone(),
        Some(serde_json::Value::String(s)) if !s.is_empty() => {
            return Err(ctx.problem(
                "metadata.name must be a DNS subdomain (lowercase letters, digits, '-' and '.', at most 253)",
            ));
        }
        _ => return Err(ctx.problem("metadata.name is required")),
    };
    let namespace = match value.pointer("/metadata/namespace") {
        None | Some(serde_json::Value::Null) => DEFAULT_NAMESPACE.to_string(),
        Some(serde_json::Value::String(s)) if s.is_empty() => DEFAULT_NAMESPACE.to_string(),
        Some(serde_json::Value::String(s)) => s.clone(),
        Some(other) => {
            return Err(ctx.problem(format!(
                "metadata.namespace must be a string, not {}",
                json_type(other)
            )));
        }
    };
    let spec = match value.get("spec") {
        Some(spec @ serde_json::Value::Object(_)) => spec.clone(),
        None | Some(serde_json::Value::Null) => return Err(ctx.problem("spec is required")),
        Some(other) => {
            return Err(ctx.problem(format!("spec must be a mapping, not {}", json_type(other))));
        }
    };
    let host = match spec.get("host") {
        Some(serde_json::Value::String(h)) if !h.is_empty() => h.clone(),
        None | Some(serde_json::Value::Null) => return Err(ctx.problem("spec.host is required")),
        Some(serde_json::Value::String(_)) => {
            return Err(ctx.problem("spec.host must not be empty"));
        }
        Some(other) => {
            return Err(ctx.problem(format!(
                "spec.host must be a string, not {}",
                json_type(other)
            )));
        }
    };
    Ok(DestinationRule {
        api_version: api_version.to_string(),
        namespace,
        name,
        host,
        age: Age::Order(order),
        origin: ctx.origin.clone(),
        spec,
        typed: istio::DestinationRuleSpec::default(),
    })
}

pub mod istio;
mod kinds;
mod strict;
pub(crate) mod validate;

#[cfg(test)]
mod tests;
