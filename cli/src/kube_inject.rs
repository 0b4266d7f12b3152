//! `sinewctl kube-inject -f FILE|-`: a manifest with the sidecar injected into its Pods and pod
//! templates, printed on stdout, by the webhook's own code (`sinew_injector`), for clusters
//! without the webhook and for reviewing what it would do.
//!
//! What it promises:
//! - Each document is injected on its own ([`sinew_injector::inject_object`]); a document that is
//!   not injected (another kind, an opted-out pod, a `kube-system` pod) is printed exactly as
//!   written, comments and all. Injected documents are printed as YAML.
//! - Namespace labels are not consulted: asking is the choice. The settings are the webhook's:
//!   `--injector-config FILE` (the same file the control plane reads) or the defaults.
//! - All or nothing: a document that is not YAML, or a pod whose annotations cannot be honoured,
//!   is an error naming the document, and then nothing is printed, so `kube-inject … | kubectl
//!   apply -f -` never applies half a manifest. Warnings (and why a workload was left alone) go to
//!   stderr.

use std::io::{Read as _, Write};
use std::path::Path;

use anyhow::{Context as _, bail};
use serde_json::Value;
use sinew_injector::{Injected, Settings};

/// Reads `file` (`-`: standard input), injects, and prints the result on `out`; notes go to
/// `err`.
pub fn kube_inject(
    file: &Path,
    injector_config: Option<&Path>,
    out: &mut dyn Write,
    err: &mut dyn Write,
) -> anyhow::Result<()> {
    let settings = match injector_config {
        Some(path) => {
            let text = std::fs::read_to_string(path)
                .with_context(|| format!("--injector-config {}", path.display()))?;
            Settings::from_yaml(&text)
                .with_context(|| format!("--injector-config {}", path.display()))?
        }
        None => Settings::default(),
    };
    let (name, bytes) = if file.as_os_str() == "-" {
        let mut bytes = Vec::new();
        std::io::stdin()
            .read_to_end(&mut bytes)
            .context("cannot read standard input")?;
        ("standard input".to_string(), bytes)
    } else {
        let bytes =
            std::fs::read(file).with_context(|| format!("cannot read {}", file.display()))?;
        (file.display().to_string(), bytes)
    };
    let text = String::from_utf8(bytes).map_err(|e| {
        anyhow::anyhow!(
            "{name} is not UTF-8 text (byte {})",
            e.utf8_error().valid_up_to()
        )
    })?;
    let printed = inject_text(&text, &name, &settings, err)?;
    out.write_all(printed.as_bytes())
        .and_then(|()| out.flush())
        .context("cannot write the result")
}

/// The whole manifest, injected; or every document's problem.
pub fn inject_text(
    text: &str,
    name: &str,
    settings: &Settings,
    err: &mut dyn Write,
) -> anyhow::Result<String> {
    let mut printed = Vec::new();
    let mut problems = Vec::new();
    for doc in split(text) {
        let place = format!("{name}: document {} (line {})", doc.index, doc.line);
        if is_blank(doc.text) {
            printed.push(doc.text.to_string());
            continue;
        }
        let options = serde_saphyr::options! { with_snippet: false };
        let value: Value = match serde_saphyr::from_str_with_options(doc.text, options) {
            Ok(value) => value,
            Err(e) => {
                problems.push(format!("{place}: not YAML: {e}"));
                continue;
            }
        };
        let what = describe(&value);
        match sinew_injector::inject_object(&value, settings) {
            Injected::Changed { object, warnings } => {
                for w in warnings {
                    let _ = writeln!(err, "sinewctl kube-inject: {what}: warning: {w}");
                }
                match serde_saphyr::to_string(&object) {
                    Ok(yaml) => printed.push(yaml),
                    Err(e) => problems.push(format!("{place}: {what}: cannot print it: {e}")),
                }
            }
            Injected::Unchanged { why, warnings } => {
                for w in warnings {
                    let _ = writeln!(err, "sinewctl kube-inject: {what}: warning: {w}");
                }
                let _ = writeln!(err, "sinewctl kube-inject: {what}: not injected: {why}");
                printed.push(doc.text.to_string());
            }
            Injected::PassThrough => printed.push(doc.text.to_string()),
            Injected::Refused { problems: p, .. } => {
                let reasons: Vec<String> = p.iter().map(ToString::to_string).collect();
                problems.push(format!("{place}: {what}: {}", reasons.join("; ")));
            }
        }
    }
    if !problems.is_empty() {
        bail!("nothing printed:\n  {}", problems.join("\n  "));
    }
    Ok(join(&printed))
}

/// One YAML document of a stream, as written.
struct Doc<'a> {
    /// 1-based.
    index: usize,
    /// The 1-based line it starts on.
    line: usize,
    text: &'a str,
}

/// Splits a YAML stream at its `---` lines (a `---` at the start of a line, alone or followed by
/// a space or a comment); a `...` end marker line is kept with its document. The separators
/// themselves are dropped and written again by [`join`].
fn split(text: &str) -> Vec<Doc<'_>> {
    let mut docs = Vec::new();
    let (mut start, mut start_line, mut offset) = (0, 1, 0);
    for (number, line) in text.split_inclusive('\n').enumerate() {
        let bare = line.trim_end_matches(['\n', '\r']);
        let is_separator = bare == "---"
            || bare
                .strip_prefix("---")
                .is_some_and(|rest| rest.starts_with([' ', '\t']));
        if is_separator {
            if offset > start || !docs.is_empty() {
                docs.push((start, offset, start_line));
            }
            start = offset + line.len();
            start_line = number + 2;
        }
        offset += line.len();
    }
    docs.push((start, text.len(), start_line));
    docs.into_iter()
        .enumerate()
        .map(|(i, (from, to, line))| Doc {
            index: i + 1,
            line,
            text: &text[from..to],
        })
        .collect()
}

/// Documents joined as a stream, each ending in a newline.
fn join(docs: &[String]) -> String {
    let mut out = String::new();
    for (i, doc) in docs.iter().enumerate() {
        if i > 0 {
            out.push_str("---\n");
        }
        out.push_str(doc);
        if !doc.is_empty() && !doc.ends_with('\n') {
            out.push('\n');
        }
    }
    out
}

/// Nothing but whitespace and comments.
fn is_blank(text: &str) -> bool {
    text.lines().all(|l| {
        let l = l.trim();
        l.is_empty() || l.starts_with('#')
    })
}

/// `Deployment shop/web`, for messages.
fn describe(object: &Value) -> String {
    let text = |v: Option<&Value>| v.and_then(Value::as_str).unwrap_or_default().to_string();
    let meta = object.get("metadata");
    let kind = text(object.get("kind"));
    let name = text(meta.and_then(|m| m.get("name")));
    let name = if name.is_empty() {
        text(meta.and_then(|m| m.get("generateName"))) + "*"
    } else {
        name
    };
    match text(meta.and_then(|m| m.get("namespace"))) {
        ns if ns.is_empty() => format!("{kind} {name}"),
        ns => format!("{kind} {ns}/{name}"),
    }
}

#[cfg(test)]
mod tests;
