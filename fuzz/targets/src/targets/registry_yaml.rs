//! Manifest files as the control plane's file registry and `sinewctl apply` read them:
//! multi-document YAML split into documents (`registry::split_manifest`, what `apply` stores
//! one file per object), and the whole file decoded, validated and built into a snapshot
//! (`Snapshot::from_yaml`: `parse_file` + `model::build`, what the file registry runs).
//!
//! Contract checked:
//! - never panics, whatever the bytes (deep nesting, aliases, huge numbers, NUL bytes);
//! - each document `split_manifest` finds is a part of the input, and read on its own (which is
//!   what `apply` writes to the store and the registry later reads) is one document with the
//!   same apiVersion, kind, namespace and name.

use sinew_control_plane::registry::{Snapshot, split_manifest};
use std::path::Path;

/// Checks one input; returns its outcome.
pub fn check(data: &[u8]) -> String {
    let Ok(text) = std::str::from_utf8(data) else {
        return "not utf-8".into();
    };
    let path = Path::new("fuzz.yaml");
    let docs = split_manifest(path, text);
    if let Ok(docs) = &docs {
        for doc in docs {
            assert!(
                text.contains(&doc.text),
                "a document's text is not in the file"
            );
            let alone = split_manifest(path, &doc.text)
                .unwrap_or_else(|e| panic!("document {} alone is refused: {e}", doc.origin));
            let key = |d: &sinew_control_plane::registry::ManifestDoc| {
                (
                    d.api_version.clone(),
                    d.kind.clone(),
                    d.namespace.clone(),
                    d.name.clone(),
                )
            };
            assert_eq!(
                alone.len(),
                1,
                "document {} alone is {} documents",
                doc.origin,
                alone.len()
            );
            assert_eq!(
                key(&alone[0]),
                key(doc),
                "document {} alone reads differently",
                doc.origin
            );
        }
    }
    let snapshot = Snapshot::from_yaml(path, text);
    let docs = match &docs {
        Ok(d) => format!("split: {} docs", d.len().min(4)),
        Err(e) => format!("split: {}", super::shape(&e.to_string())),
    };
    format!("{docs} / {}", super::outcome("snapshot", &snapshot))
}
