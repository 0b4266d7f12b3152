//! The directory walk: which files under the manifest directory are manifests, in a stable
//! order. Promise: `*.yaml`/`*.yml` files (any case) in byte order of the path; hidden entries
//! are skipped; symlinks to files are followed and symlinks to directories are not (a loop
//! cannot hang the scan).

use std::io;
use std::path::{Path, PathBuf};

use crate::registry::error::RegistryError;

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
