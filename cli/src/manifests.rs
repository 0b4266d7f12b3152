//! Applied objects, kept one file each under the run's `manifests/` directory — the directory
//! the control plane and the supervisor both watch — so that `apply` replaces an object and
//! `delete` removes it by kind, namespace and name, as against an API server.
//!
//! A change is checked as a whole before anything is written: the objects as they would be
//! after the change are loaded by the same registry code the control plane runs, in a staging
//! copy, and any problem is reported against the user's file and line. Nothing is written when
//! there is a problem, so a running mesh never sees a half-applied change.

use std::collections::BTreeMap;
use std::fmt::Write as _;
use std::io::Read as _;
use std::net::{IpAddr, Ipv4Addr};
use std::path::{Path, PathBuf};

use anyhow::{Context as _, bail};
use sinew_control_plane::compile::{DEFAULT_ROOT_NAMESPACE, SecurityRules};
use sinew_control_plane::registry::{
    FileRegistry, ManifestDoc, Origin, Problem, RegistryError, SKIPPED_KIND, Snapshot,
    split_manifest,
};

use crate::state::{CONTROL_PLANE_IP, POD_RANGE, VIP_RANGE};

/// What happened to one object.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Change {
    Created,
    Configured,
    Unchanged,
    Deleted,
}

impl std::fmt::Display for Change {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(match self {
            Change::Created => "created",
            Change::Configured => "configured",
            Change::Unchanged => "unchanged",
            Change::Deleted => "deleted",
        })
    }
}

/// The object store of one run.
pub struct Store {
    dir: PathBuf,
}

/// Reads manifests from files, directories (every `*.yaml`/`*.yml` below, in path order, hidden
/// entries skipped) or `-` (standard input); each document is checked on its own. Every problem
/// of every file is reported at once.
pub fn read_inputs(paths: &[PathBuf]) -> anyhow::Result<Vec<ManifestDoc>> {
    let mut docs = Vec::new();
    let mut problems = Vec::new();
    for path in paths {
        let files = if path.as_os_str() == "-" {
            vec![path.clone()]
        } else if path.is_dir() {
            let mut files = Vec::new();
            walk(path, &mut files)?;
            files.sort();
            if files.is_empty() {
                bail!("{}: no *.yaml or *.yml files", path.display());
            }
            files
        } else {
            vec![path.clone()]
        };
        for file in files {
            let text = if file.as_os_str() == "-" {
                let mut text = String::new();
                std::io::stdin()
                    .read_to_string(&mut text)
                    .context("cannot read standard input")?;
                text
            } else {
                std::fs::read_to_string(&file)
                    .with_context(|| format!("cannot read {}", file.display()))?
            };
            match split_manifest(&file, &text) {
                Ok(mut d) => docs.append(&mut d),
                Err(RegistryError::Invalid { problems: mut p }) => problems.append(&mut p),
                Err(e) => return Err(e.into()),
            }
        }
    }
    if !problems.is_empty() {
        bail!("{}", describe(&problems, |o| o.to_string()));
    }
    // Names become file names in the store: only what Kubernetes allows in them gets through.
    let mut kept = Vec::with_capacity(docs.len());
    for doc in docs {
        if doc.name.is_empty() {
            // Only kinds the registry skips get here without a name (it requires one for the
            // rest); a kustomization.yaml, say. Nothing would use it.
            eprintln!(
                "sinewctl: {}: {} {} without metadata.name is skipped",
                doc.origin, doc.api_version, doc.kind
            );
            continue;
        }
        check_key(&doc)?;
        kept.push(doc);
    }
    let docs = kept;
    // The same object twice in one input is a mistake kubectl would also refuse.
    let mut seen: BTreeMap<PathBuf, &ManifestDoc> = BTreeMap::new();
    for doc in &docs {
        if let Some(first) = seen.insert(Store::relative(doc), doc) {
            bail!(
                "{}: {} {:?} in namespace {:?} is also defined at {}",
                doc.origin,
                doc.kind,
                doc.name,
                doc.namespace,
                first.origin
            );
        }
    }
    Ok(docs)
}

/// The annotation that keeps an object out of `sinewctl up DIR` (with the value `"true"`); `apply
/// -f` applies it as usual. For a change a directory ships to be applied later — the demo's
/// `policy.yaml` — so `up` starts without it and `apply -f` shows what it changes. A cluster
/// ignores the annotation.
pub const SKIP_ON_UP: &str = "sinew.dev/skip-on-up";

/// Whether `up` leaves this document out (annotated [`SKIP_ON_UP`]: "true").
pub fn skipped_on_up(doc: &ManifestDoc) -> bool {
    #[derive(serde::Deserialize, Default)]
    #[serde(default)]
    struct Doc {
        metadata: Meta,
    }
    #[derive(serde::Deserialize, Default)]
    #[serde(default)]
    struct Meta {
        annotations: BTreeMap<String, String>,
    }
    // The document was already checked strictly; this reads only the one annotation.
    let options = serde_saphyr::options! { with_snippet: false };
    serde_saphyr::from_str_with_options::<Doc>(&doc.text, options)
        .is_ok_and(|d| d.metadata.annotations.get(SKIP_ON_UP).map(String::as_str) == Some("true"))
}

/// A visible warning for each object stored but not run by local mode (a ConfigMap, a
/// VirtualService): `apply` and `up` would otherwise say `created` for something that does
/// nothing.
pub fn unused_warnings(docs: &[ManifestDoc]) -> Vec<String> {
    docs.iter()
        .filter(|d| !d.used_locally())
        .map(|d| {
            let place = if d.namespace.is_empty() {
                d.name.clone()
            } else {
                format!("{}/{}", d.namespace, d.name)
            };
            format!(
                "warning: {}: {} {place} ({}) is stored but not used by local mode",
                d.origin, d.kind, d.api_version
            )
        })
        .collect()
}

/// Kind, group, namespace and name as Kubernetes spells them (so none can climb out of the store
/// or name another file): a DNS subdomain for names and groups, a DNS label for namespaces,
/// letters and digits for kinds.
fn check_key(doc: &ManifestDoc) -> anyhow::Result<()> {
    let dns = |s: &str, dots: bool| {
        !s.is_empty()
            && s.len() <= 253
            && s.bytes().all(|b| {
                b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'-' || (dots && b == b'.')
            })
            && !s.starts_with(['-', '.'])
            && !s.ends_with(['-', '.'])
            && !s.contains("..")
    };
    let kind_ok = !doc.kind.is_empty() && doc.kind.bytes().all(|b| b.is_ascii_alphanumeric());
    let group_ok = doc.group().is_empty() || dns(doc.group(), true);
    let namespace_ok = doc.namespace.is_empty() || dns(&doc.namespace, false);
    let (what, value) = if !kind_ok {
        ("kind", doc.kind.as_str())
    } else if !group_ok {
        ("apiVersion", doc.api_version.as_str())
    } else if !namespace_ok {
        ("metadata.namespace", doc.namespace.as_str())
    } else if !dns(&doc.name, true) {
        ("metadata.name", doc.name.as_str())
    } else {
        return Ok(());
    };
    bail!(
        "{}: {what} {value:?} is not a valid Kubernetes name (lowercase letters, digits, '-' and '.')",
        doc.origin
    )
}

fn walk(dir: &Path, out: &mut Vec<PathBuf>) -> anyhow::Result<()> {
    let entries =
        std::fs::read_dir(dir).with_context(|| format!("cannot read {}", dir.display()))?;
    for entry in entries {
        let entry = entry?;
        let path = entry.path();
        if entry.file_name().to_string_lossy().starts_with('.') {
            continue;
        }
        if path.is_dir() {
            walk(&path, out)?;
        } else if path
            .extension()
            .and_then(|e| e.to_str())
            .is_some_and(|e| e.eq_ignore_ascii_case("yaml") || e.eq_ignore_ascii_case("yml"))
        {
            out.push(path);
        }
    }
    Ok(())
}

// === impl Store ===

impl Store {
    pub fn new(dir: PathBuf) -> Store {
        Store { dir }
    }

    /// `<namespace>/<kind>_<group>_<name>.yaml` (`_cluster` for namespaces, `core` for the
    /// core group): `_` occurs in no Kubernetes name, so keys cannot collide.
    fn relative(doc: &ManifestDoc) -> PathBuf {
        let ns = if doc.namespace.is_empty() {
            "_cluster"
        } else {
            &doc.namespace
        };
        let group = match doc.group() {
            "" => "core",
            g => g,
        };
        PathBuf::from(ns).join(format!(
            "{}_{group}_{}.yaml",
            doc.kind.to_ascii_lowercase(),
            doc.name
        ))
    }

    /// Applies `docs`: creates or replaces each object, after checking the result as a whole.
    pub fn apply(&self, docs: &[ManifestDoc]) -> anyhow::Result<Applied> {
        let staging = Staging::copy_of(&self.dir)?;
        let mut changes = Vec::new();
        let mut sources = BTreeMap::new();
        for doc in docs {
            let rel = Store::relative(doc);
            let text = stored_text(doc);
            let change = match std::fs::read_to_string(self.dir.join(&rel)) {
                Ok(old) if old == text => Change::Unchanged,
                Ok(_) => Change::Configured,
                Err(_) => Change::Created,
            };
            staging.write(&rel, &text)?;
            sources.insert(staging.dir.join(&rel), doc.clone());
            changes.push((rel, text, display_name(doc), change));
        }
        let after = staging.check(&sources)?;
        let warnings = self.new_warnings(&staging, &after, &sources);
        for (rel, text, _, change) in &changes {
            if *change != Change::Unchanged {
                let path = self.dir.join(rel);
                if let Some(parent) = path.parent() {
                    std::fs::create_dir_all(parent)?;
                }
                crate::state::write_atomic(&path, text.as_bytes())?;
            }
        }
        Ok(Applied {
            changes: changes
                .into_iter()
                .map(|(_, _, name, change)| (name, change))
                .collect(),
            warnings,
        })
    }

    /// The control plane's warnings about the objects after a change that it did not have
    /// before (a route to a subset no DestinationRule defines, say), at the user's files and
    /// lines: said when the change is made, not only in the control plane's log. Kinds local
    /// mode skips are left out (`unused_warnings` names those).
    fn new_warnings(
        &self,
        staging: &Staging,
        after: &Snapshot,
        sources: &BTreeMap<PathBuf, ManifestDoc>,
    ) -> Vec<String> {
        // The store as it is now; one that does not load has no warnings to compare with.
        let before: Vec<String> = FileRegistry::load(&self.dir)
            .map(|s| control_plane_warnings(&s))
            .unwrap_or_default();
        let (staged, stored) = (
            staging.dir.display().to_string(),
            self.dir.display().to_string(),
        );
        let names = staging.stored_names();
        let place = |o: &Origin| staged_place(o, sources, &names);
        control_plane_warnings(after)
            .iter()
            .filter(|w| !w.ends_with(SKIPPED_KIND))
            .filter(|w| !before.contains(&w.replace(&staged, &stored)))
            .map(|w| staging.rewrite_places(w, &place))
            .collect()
    }

    /// Deletes the objects `docs` name (their content is not compared). Deleting a Namespace
    /// deletes everything in it, as in Kubernetes. Objects that do not exist are reported as
    /// errors after the others are deleted.
    pub fn delete(&self, docs: &[ManifestDoc]) -> anyhow::Result<Applied> {
        let staging = Staging::copy_of(&self.dir)?;
        let mut removed = Vec::new();
        let mut missing = Vec::new();
        for doc in docs {
            let rel = Store::relative(doc);
            if !self.dir.join(&rel).exists() {
                missing.push(format!(
                    "{} not found{}",
                    display_name(doc),
                    in_namespace(doc)
                ));
                continue;
            }
            staging.remove(&rel)?;
            if doc.kind == "Namespace" && doc.group().is_empty() {
                staging.remove(Path::new(&doc.name))?;
                removed.push((PathBuf::from(&doc.name), true));
            }
            removed.push((rel, false));
        }
        let after = staging.check(&BTreeMap::new())?;
        let warnings = self.new_warnings(&staging, &after, &BTreeMap::new());
        let mut out = Vec::new();
        for doc in docs {
            let rel = Store::relative(doc);
            if removed.iter().any(|(r, _)| *r == rel) {
                std::fs::remove_file(self.dir.join(&rel))
                    .with_context(|| format!("cannot remove {}", rel.display()))?;
                out.push((display_name(doc), Change::Deleted));
            }
        }
        for (rel, is_dir) in &removed {
            if *is_dir {
                let _ = std::fs::remove_dir_all(self.dir.join(rel));
            }
        }
        if !missing.is_empty() {
            for (name, change) in &out {
                println!("{name} {change}");
            }
            bail!("{}", missing.join("\n"));
        }
        Ok(Applied {
            changes: out,
            warnings,
        })
    }
}

/// What `apply` or `delete` did.
#[derive(Debug)]
pub struct Applied {
    /// Each object named, as kubectl prints it, and what happened to it.
    pub changes: Vec<(String, Change)>,
    /// The control plane's warnings this change brought, at the user's files and lines.
    pub warnings: Vec<String>,
}

/// `kind/name` as kubectl prints it (`destinationrule.networking.istio.io/reviews`).
fn display_name(doc: &ManifestDoc) -> String {
    let kind = doc.kind.to_ascii_lowercase();
    match doc.group() {
        "" => format!("{kind}/{}", doc.name),
        g => format!("{kind}.{g}/{}", doc.name),
    }
}

fn in_namespace(doc: &ManifestDoc) -> String {
    if doc.namespace.is_empty() {
        String::new()
    } else {
        format!(" in namespace {:?}", doc.namespace)
    }
}

/// The document as stored: its own text, starting with a comment saying where it came from.
fn stored_text(doc: &ManifestDoc) -> String {
    // Verbatim (a leading `---` included), so line N of the document is line N + 1 here.
    let body = &doc.text;
    let mut text = String::new();
    let _ = writeln!(
        text,
        "# Applied from {} (document {}, line {}).",
        doc.origin.file().unwrap_or(Path::new("")).display(),
        doc.origin.document().unwrap_or(0) + 1,
        doc.first_line
    );
    text.push_str(body);
    if !text.ends_with('\n') {
        text.push('\n');
    }
    text
}

/// A scratch copy of the store where a change is tried first. Removed on drop.
struct Staging {
    dir: PathBuf,
}

impl Staging {
    fn copy_of(store: &Path) -> anyhow::Result<Staging> {
        let parent = store.parent().unwrap_or(Path::new("/tmp"));
        let dir = parent.join(format!(".staging-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        std::fs::create_dir_all(&dir)
            .with_context(|| format!("cannot create {}", dir.display()))?;
        let staging = Staging { dir };
        if store.exists() {
            copy_tree(store, &staging.dir)?;
        }
        Ok(staging)
    }

    fn write(&self, rel: &Path, text: &str) -> anyhow::Result<()> {
        let path = self.dir.join(rel);
        if let Some(parent) = path.parent() {
            std::fs::create_dir_all(parent)?;
        }
        std::fs::write(&path, text).with_context(|| format!("cannot write {}", path.display()))
    }

    fn remove(&self, rel: &Path) -> anyhow::Result<()> {
        let path = self.dir.join(rel);
        let res = if path.is_dir() {
            std::fs::remove_dir_all(&path)
        } else {
            std::fs::remove_file(&path)
        };
        match res {
            Err(e) if e.kind() != std::io::ErrorKind::NotFound => {
                Err(e).with_context(|| format!("cannot remove {}", path.display()))
            }
            _ => Ok(()),
        }
    }

    /// Loads the staged objects as the control plane would, plus local mode's address rules.
    /// Problems in staged copies of `sources` are reported at the user's file and line.
    fn check(&self, sources: &BTreeMap<PathBuf, ManifestDoc>) -> anyhow::Result<Snapshot> {
        let names = self.stored_names();
        let place = |o: &Origin| staged_place(o, sources, &names);
        let snapshot = match FileRegistry::load(&self.dir) {
            Ok(s) => s,
            Err(RegistryError::Invalid { problems }) => {
                // Reasons may name a second place ("already defined at …"): map those too.
                let text = describe(&problems, place);
                bail!("{}", self.rewrite_places(&text, &place))
            }
            Err(e) => return Err(e.into()),
        };
        let clashes = check_addresses(&snapshot, place);
        if !clashes.is_empty() {
            bail!("{}", clashes.join("\n"));
        }
        Ok(snapshot)
    }

    /// Replaces every `<staged file>: document N (line L)` in `text` with the user's place.
    fn rewrite_places(&self, text: &str, place: &impl Fn(&Origin) -> String) -> String {
        let prefix = self.dir.display().to_string();
        let mut out = String::with_capacity(text.len());
        let mut rest = text;
        while let Some(at) = rest.find(&prefix) {
            out.push_str(&rest[..at]);
            let tail = &rest[at..];
            let parsed = tail.split_once(": document ").and_then(|(file, after)| {
                let (document, after) = after.split_once(" (line ")?;
                let (line, after) = after.split_once(')')?;
                let origin = Origin::File {
                    file: PathBuf::from(file),
                    // Shown from 1, kept from 0.
                    document: document.parse::<usize>().ok()?.checked_sub(1)?,
                    line: line.parse().ok()?,
                };
                Some((place(&origin), after))
            });
            match parsed {
                Some((shown, after)) => {
                    out.push_str(&shown);
                    rest = after;
                }
                None => {
                    out.push_str(&prefix);
                    rest = &tail[prefix.len()..];
                }
            }
        }
        out.push_str(rest);
        out
    }

    /// Staged file → what the user knows it as, for problems in objects applied earlier.
    fn stored_names(&self) -> BTreeMap<PathBuf, String> {
        let mut files = Vec::new();
        let _ = walk(&self.dir, &mut files);
        files
            .into_iter()
            .filter_map(|f| {
                let rel = f.strip_prefix(&self.dir).ok()?.to_path_buf();
                let ns = rel.parent()?.to_str()?.to_string();
                let stem = rel.file_stem()?.to_str()?;
                let mut parts = stem.splitn(3, '_');
                let (kind, _group, name) = (parts.next()?, parts.next()?, parts.next()?);
                let place = if ns == "_cluster" {
                    String::new()
                } else {
                    format!(" in namespace {ns:?}")
                };
                Some((f, format!("{kind}/{name}{place} (applied earlier)")))
            })
            .collect()
    }
}

impl Drop for Staging {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}

fn copy_tree(from: &Path, to: &Path) -> anyhow::Result<()> {
    for entry in
        std::fs::read_dir(from).with_context(|| format!("cannot read {}", from.display()))?
    {
        let entry = entry?;
        let target = to.join(entry.file_name());
        if entry.file_type()?.is_dir() {
            std::fs::create_dir_all(&target)?;
            copy_tree(&entry.path(), &target)?;
        } else {
            std::fs::copy(entry.path(), &target)
                .with_context(|| format!("cannot copy {}", entry.path().display()))?;
        }
    }
    Ok(())
}

/// Problems, one per line, as `<place>: reason`.
fn describe(problems: &[Problem], place: impl Fn(&Origin) -> String) -> String {
    problems
        .iter()
        .map(|p| format!("{}: {}", place(&p.origin), p.reason))
        .collect::<Vec<_>>()
        .join("\n")
}

/// What local mode's control plane warns about `snapshot`: the registry's warnings and those of
/// the security policies that never apply (a PeerAuthentication selector in the root namespace,
/// a `targetRef` to a Service that does not exist), as the control plane's index adds them.
fn control_plane_warnings(snapshot: &Snapshot) -> Vec<String> {
    SecurityRules::new(snapshot, DEFAULT_ROOT_NAMESPACE).with_registry_warnings(snapshot)
}

/// Where a staged object came from: the user's file and line for what is being applied (the
/// stored text has one comment line in front of the document's own lines), the object's name
/// for what was applied earlier.
fn staged_place(
    origin: &Origin,
    sources: &BTreeMap<PathBuf, ManifestDoc>,
    names: &BTreeMap<PathBuf, String>,
) -> String {
    let Origin::File { file, line, .. } = origin else {
        return origin.to_string();
    };
    match sources.get(file) {
        Some(doc) => doc
            .origin
            .at_line(doc.first_line + line.saturating_sub(2))
            .to_string(),
        None => match names.get(file) {
            Some(name) => name.clone(),
            None => origin.to_string(),
        },
    }
}

/// Local mode's address rules: a `status.podIP` or `spec.clusterIP` written in the YAML must lie
/// in the range local mode hands out (pods 198.18.0.0/16, VIPs 198.19.0.0/16), must not be the
/// control plane's, and must not be used twice.
pub fn check_addresses(snapshot: &Snapshot, place: impl Fn(&Origin) -> String) -> Vec<String> {
    let in_range = |ip: Ipv4Addr, (lo, hi): (Ipv4Addr, Ipv4Addr)| ip >= lo && ip <= hi;
    let mut used: BTreeMap<IpAddr, String> = BTreeMap::new();
    let mut out = Vec::new();
    let mut claim = |ip: IpAddr,
                     who: String,
                     range: (Ipv4Addr, Ipv4Addr),
                     out: &mut Vec<String>| {
        let ok = match ip {
            IpAddr::V4(v4) => in_range(v4, range) && v4 != CONTROL_PLANE_IP,
            IpAddr::V6(_) => false,
        };
        if !ok {
            out.push(format!(
                "{who}: address {ip} is outside local mode's range {}-{} (leave it out to have one assigned)",
                range.0, range.1
            ));
        } else if let Some(first) = used.get(&ip) {
            out.push(format!("{who}: address {ip} is already used by {first}"));
        } else {
            used.insert(ip, who);
        }
    };
    for pod in snapshot.pods().values() {
        if let Some(ip) = pod.declared_ip {
            let who = format!("{}: Pod {:?} status.podIP", place(&pod.origin), pod.name);
            claim(ip, who, POD_RANGE, &mut out);
        }
    }
    for svc in snapshot.services().values() {
        if let Some(ip) = svc.declared_cluster_ip {
            let who = format!(
                "{}: Service {:?} spec.clusterIP",
                place(&svc.origin),
                svc.name
            );
            claim(ip, who, VIP_RANGE, &mut out);
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    struct Dir(PathBuf);
    impl Dir {
        fn new(tag: &str) -> Dir {
            let p = std::env::temp_dir().join(format!("sinewctl-{tag}-{}", std::process::id()));
            let _ = std::fs::remove_dir_all(&p);
            std::fs::create_dir_all(&p).unwrap();
            Dir(p)
        }
        fn file(&self, name: &str, text: &str) -> PathBuf {
            let p = self.0.join(name);
            std::fs::write(&p, text).unwrap();
            p
        }
    }
    impl Drop for Dir {
        fn drop(&mut self) {
            let _ = std::fs::remove_dir_all(&self.0);
        }
    }

    fn docs(path: &Path) -> Vec<ManifestDoc> {
        read_inputs(&[path.to_path_buf()]).unwrap()
    }

    const BASE: &str = "apiVersion: v1\nkind: Namespace\nmetadata: {name: shop}\n---\napiVersion: v1\nkind: Service\nmetadata: {name: web, namespace: shop}\nspec:\n  selector: {app: web}\n  ports: [{port: 80}]\n";

    #[test]
    fn apply_creates_configures_and_keeps_unchanged() {
        let d = Dir::new("apply");
        let store = Store::new(d.0.join("manifests"));
        let f = d.file("base.yaml", BASE);
        let changes = store.apply(&docs(&f)).unwrap().changes;
        let shown: Vec<String> = changes.iter().map(|(n, c)| format!("{n} {c}")).collect();
        assert_eq!(shown, ["namespace/shop created", "service/web created"]);
        let changes = store.apply(&docs(&f)).unwrap().changes;
        assert!(changes.iter().all(|(_, c)| *c == Change::Unchanged));
        let g = d.file(
            "svc.yaml",
            "apiVersion: v1\nkind: Service\nmetadata: {name: web, namespace: shop}\nspec:\n  selector: {app: web}\n  ports: [{port: 8080}]\n",
        );
        let changes = store.apply(&docs(&g)).unwrap().changes;
        assert_eq!(changes, [("service/web".to_string(), Change::Configured)]);
        let snap = FileRegistry::load(&d.0.join("manifests")).unwrap();
        assert_eq!(snap.service("shop", "web").unwrap().ports[0].port, 8080);
    }

    #[test]
    fn apply_reports_the_warnings_a_change_brings_once_at_the_users_file() {
        let d = Dir::new("warn");
        let store = Store::new(d.0.join("manifests"));
        store.apply(&docs(&d.file("base.yaml", BASE))).unwrap();
        // A pod without the container port the Service names: applied, with a warning.
        let pod = d.file(
            "pod.yaml",
            "apiVersion: v1\nkind: Service\nmetadata: {name: api, namespace: shop}\nspec:\n  selector: {app: api}\n  ports: [{port: 80, targetPort: http}]\n---\napiVersion: v1\nkind: Pod\nmetadata: {name: api-0, namespace: shop, labels: {app: api}}\nspec: {containers: [{name: c}]}\n",
        );
        let applied = store.apply(&docs(&pod)).unwrap();
        assert_eq!(
            applied.warnings,
            [format!(
                "{}: document 1 (line 1): Service \"api\" port 80: Pod \"api-0\" has no container port named \"http\"; it is not an endpoint of that port",
                pod.display()
            )]
        );
        assert!(
            FileRegistry::load(&d.0.join("manifests"))
                .unwrap()
                .service("shop", "api")
                .is_some(),
            "a warning does not stop the change"
        );
        // Said when the change brings it, not again for an unrelated change.
        let other = d.file(
            "other.yaml",
            "apiVersion: v1\nkind: Service\nmetadata: {name: web, namespace: shop}\nspec:\n  selector: {app: web}\n  ports: [{port: 81}]\n",
        );
        assert_eq!(
            store.apply(&docs(&other)).unwrap().warnings,
            Vec::<String>::new()
        );
    }

    #[test]
    fn apply_reports_a_security_policy_that_never_applies_at_the_users_file() {
        let d = Dir::new("warn-security");
        let store = Store::new(d.0.join("manifests"));
        store.apply(&docs(&d.file("base.yaml", BASE))).unwrap();
        // A selector in the root namespace: Istio ignores it, and so does the control plane.
        let policy = d.file(
            "strict.yaml",
            "apiVersion: v1\nkind: Namespace\nmetadata: {name: sinew-system}\n---\napiVersion: security.istio.io/v1\nkind: PeerAuthentication\nmetadata: {name: web-strict, namespace: sinew-system}\nspec:\n  selector: {matchLabels: {app: web}}\n  mtls: {mode: STRICT}\n",
        );
        let warnings = store.apply(&docs(&policy)).unwrap().warnings;
        assert_eq!(warnings.len(), 1, "{warnings:?}");
        assert!(
            warnings[0].starts_with(&format!("{}: document 2 (line 5)", policy.display())),
            "{warnings:?}"
        );
        assert!(
            warnings[0].contains("a selector in the root namespace \"sinew-system\" is ignored"),
            "{warnings:?}"
        );
    }

    #[test]
    fn a_bad_change_names_the_users_file_and_line_and_writes_nothing() {
        let d = Dir::new("bad");
        let store = Store::new(d.0.join("manifests"));
        store
            .apply(&read_inputs(&[d.file("base.yaml", BASE)]).unwrap())
            .unwrap();
        // A Service in a namespace that does not exist: only a whole-store check sees it.
        let bad = d.file(
            "bad.yaml",
            "# comment\napiVersion: v1\nkind: Namespace\nmetadata: {name: ok}\n---\n\napiVersion: v1\nkind: Service\nmetadata: {name: x, namespace: nowhere}\nspec: {ports: [{port: 1}]}\n",
        );
        let err = store.apply(&docs(&bad)).unwrap_err();
        let msg = err.to_string();
        assert!(
            msg.contains(&format!("{}: document 2 (line 7)", bad.display())),
            "{msg}"
        );
        assert!(
            msg.contains("namespace \"nowhere\" is not declared"),
            "{msg}"
        );
        assert!(
            !d.0.join("manifests/_cluster/namespace_core_ok.yaml")
                .exists()
        );
        // Syntax errors are found per file, with the line.
        let broken = d.file(
            "broken.yaml",
            "apiVersion: v1\nkind: Service\nmetadata: {name: [\n",
        );
        let msg = read_inputs(std::slice::from_ref(&broken))
            .unwrap_err()
            .to_string();
        assert!(
            msg.starts_with(&format!("{}: document 1 (line", broken.display())),
            "{msg}"
        );
    }

    #[test]
    fn apply_warns_about_kinds_local_mode_stores_but_does_not_run() {
        let d = Dir::new("unused");
        let f = d.file(
            "mixed.yaml",
            "apiVersion: v1\nkind: ConfigMap\nmetadata: {name: x, namespace: shop}\ndata: {a: b}\n---\napiVersion: v1\nkind: Namespace\nmetadata: {name: shop}\n",
        );
        let got = unused_warnings(&read_inputs(std::slice::from_ref(&f)).unwrap());
        assert_eq!(
            got,
            [format!(
                "warning: {}: document 1 (line 1): ConfigMap shop/x (v1) is stored but not used by local mode",
                f.display()
            )]
        );
    }

    #[test]
    fn the_demo_passes_strict_validation_and_runs_every_kind_it_has() {
        let demo = Path::new(env!("CARGO_MANIFEST_DIR")).join("../examples/demo");
        let docs = read_inputs(&[demo]).unwrap();
        // What `up` runs: the policy is held back for `apply -f` (README, "Traffic policy in
        // 30 seconds").
        let (held, run): (Vec<_>, Vec<_>) = docs.into_iter().partition(skipped_on_up);
        assert!(!run.is_empty());
        assert_eq!(unused_warnings(&run), Vec::<String>::new());
        let held: Vec<String> = held
            .iter()
            .map(|d| {
                let file = d
                    .origin
                    .file()
                    .and_then(Path::file_name)
                    .unwrap_or_default();
                format!("{} {} {}", file.to_string_lossy(), d.kind, d.name)
            })
            .collect();
        assert_eq!(
            held,
            [
                "policy.yaml VirtualService ratings",
                "policy.yaml DestinationRule ratings"
            ]
        );
    }

    #[test]
    fn up_skips_only_documents_annotated_skip_on_up_true() {
        let d = Dir::new("skip-on-up");
        let f = d.file(
            "p.yaml",
            "apiVersion: v1\nkind: Namespace\nmetadata: {name: a, annotations: {sinew.dev/skip-on-up: \"true\"}}\n---\napiVersion: v1\nkind: Namespace\nmetadata: {name: b, annotations: {sinew.dev/skip-on-up: \"false\"}}\n---\napiVersion: v1\nkind: Namespace\nmetadata: {name: c}\n",
        );
        let docs = read_inputs(&[f]).unwrap();
        let skipped: Vec<&str> = docs
            .iter()
            .filter(|d| skipped_on_up(d))
            .map(|d| d.name.as_str())
            .collect();
        assert_eq!(skipped, ["a"]);
    }

    #[test]
    fn apply_refuses_a_misspelt_field_instead_of_saying_configured() {
        let d = Dir::new("strict");
        let f = d.file(
            "d.yaml",
            "apiVersion: apps/v1\nkind: Deployment\nmetadata: {name: web}\nspec:\n  replica: 3\n  selector: {matchLabels: {app: web}}\n  template:\n    metadata: {labels: {app: web}}\n    spec: {containers: [{name: c}]}\n",
        );
        let msg = read_inputs(std::slice::from_ref(&f))
            .unwrap_err()
            .to_string();
        assert_eq!(
            msg,
            format!(
                "{}: document 1 (line 5): Deployment \"web\": spec.replica: unknown field; did you mean replicas?",
                f.display()
            )
        );
    }

    #[test]
    fn apply_refuses_a_telemetry_sampling_150_percent_at_its_line() {
        let d = Dir::new("telemetry");
        let f = d.file(
            "t.yaml",
            "apiVersion: telemetry.istio.io/v1\nkind: Telemetry\nmetadata: {name: mesh-default}\nspec:\n  tracing:\n  - randomSamplingPercentage: 150\n",
        );
        let msg = read_inputs(std::slice::from_ref(&f))
            .unwrap_err()
            .to_string();
        assert_eq!(
            msg,
            format!(
                "{}: document 1 (line 6): Telemetry \"mesh-default\": spec.tracing[0].randomSamplingPercentage: must be between 0 and 100, not 150",
                f.display()
            )
        );
        // A valid one is a kind local mode runs (no "stored but not used" warning).
        let ok = d.file(
            "ok.yaml",
            "apiVersion: telemetry.istio.io/v1alpha1\nkind: Telemetry\nmetadata: {name: mesh-default}\nspec:\n  tracing: [{randomSamplingPercentage: 10}]\n",
        );
        let docs = read_inputs(&[ok]).unwrap();
        assert_eq!(unused_warnings(&docs), Vec::<String>::new());
    }

    #[test]
    fn a_second_place_in_a_reason_is_the_users_too() {
        let d = Dir::new("second");
        let store = Store::new(d.0.join("manifests"));
        // A Deployment pod clashing with a Pod of the same name, both in the new file.
        let f = d.file(
            "pods.yaml",
            "apiVersion: v1\nkind: Pod\nmetadata: {name: web-0}\nspec: {containers: [{name: c}]}\n---\napiVersion: apps/v1\nkind: Deployment\nmetadata: {name: web}\nspec:\n  selector: {matchLabels: {app: web}}\n  template:\n    metadata: {labels: {app: web}}\n    spec: {containers: [{name: c}]}\n",
        );
        let msg = store.apply(&docs(&f)).unwrap_err().to_string();
        assert!(!msg.contains(".staging-"), "{msg}");
        assert!(
            msg.contains(&format!("{}: document 1 (line 1)", f.display())),
            "{msg}"
        );
        assert!(
            msg.contains(&format!("{}: document 2 (line 6)", f.display())),
            "{msg}"
        );
    }

    #[test]
    fn names_that_could_climb_out_of_the_store_are_refused() {
        let d = Dir::new("names");
        for (yaml, field) in [
            (
                "apiVersion: v2\nkind: Thing\nmetadata: {name: ../../etc}\n",
                "metadata.name",
            ),
            (
                "apiVersion: v2\nkind: Thing\nmetadata: {name: x, namespace: /etc}\n",
                "metadata.namespace",
            ),
            (
                "apiVersion: v2\nkind: ../Thing\nmetadata: {name: x}\n",
                "kind",
            ),
        ] {
            let f = d.file("bad.yaml", yaml);
            let msg = read_inputs(std::slice::from_ref(&f))
                .unwrap_err()
                .to_string();
            assert!(
                msg.contains(field) && msg.contains("not a valid Kubernetes name"),
                "{msg}"
            );
        }
        // A nameless document of a kind nobody uses is skipped, not stored.
        let f = d.file(
            "k.yaml",
            "apiVersion: kustomize.config.k8s.io/v1beta1\nkind: Kustomization\n",
        );
        assert!(read_inputs(&[f]).unwrap().is_empty());
    }

    #[test]
    fn delete_removes_by_key_and_namespaces_cascade() {
        let d = Dir::new("delete");
        let store = Store::new(d.0.join("manifests"));
        let f = d.file("base.yaml", BASE);
        store.apply(&docs(&f)).unwrap();
        let ns_only = d.file(
            "ns.yaml",
            "apiVersion: v1\nkind: Namespace\nmetadata: {name: shop}\n",
        );
        let out = store.delete(&docs(&ns_only)).unwrap().changes;
        assert_eq!(out, [("namespace/shop".to_string(), Change::Deleted)]);
        let snap = FileRegistry::load(&d.0.join("manifests")).unwrap();
        assert!(snap.services().is_empty());
        let err = store.delete(&docs(&ns_only)).unwrap_err();
        assert!(err.to_string().contains("namespace/shop not found"));
    }

    #[test]
    fn addresses_outside_the_range_or_used_twice_are_refused() {
        let d = Dir::new("addr");
        let store = Store::new(d.0.join("manifests"));
        let f = d.file(
            "a.yaml",
            "apiVersion: v1\nkind: Service\nmetadata: {name: a}\nspec: {clusterIP: 10.0.0.1, ports: [{port: 1}]}\n---\napiVersion: v1\nkind: Service\nmetadata: {name: b}\nspec: {clusterIP: 198.19.0.9, ports: [{port: 1}]}\n---\napiVersion: v1\nkind: Service\nmetadata: {name: c}\nspec: {clusterIP: 198.19.0.9, ports: [{port: 1}]}\n",
        );
        let msg = store.apply(&docs(&f)).unwrap_err().to_string();
        assert!(msg.contains("address 10.0.0.1 is outside"), "{msg}");
        assert!(
            msg.contains("address 198.19.0.9 is already used by"),
            "{msg}"
        );
    }
}
