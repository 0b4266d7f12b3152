//! What the local-mode test files share: prerequisites, scratch directories, and reading a run's
//! state and manifests. (Each test file is its own crate and uses a part of this.)
#![allow(dead_code)]

use sinew_tests::bins;
use sinew_tests::host;
use sinew_tests::local::LocalMesh;
use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

/// What every local-mode test needs on the host.
pub const TOOLS: [&str; 5] = ["ip", "iptables", "iptables-save", "setpriv", "curl"];

/// The binaries to run, or `None` after reporting why the test cannot run (see
/// [`host::skip`]: that fails the test unless skipping was asked for).
pub fn prerequisites(test: &str) -> Option<PathBuf> {
    match host::require(&TOOLS) {
        Ok(_) => Some(bins::locate(&bins::LOCAL_MODE)),
        Err(reason) => {
            host::skip(test, &reason);
            None
        }
    }
}

/// A scratch directory for YAML, removed on drop.
pub struct Scratch(pub PathBuf);

impl Scratch {
    pub fn new(tag: &str) -> Scratch {
        let dir = std::env::temp_dir().join(format!("sinew-e2e-{tag}-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        std::fs::create_dir_all(&dir).unwrap();
        Scratch(dir)
    }

    pub fn write(&self, name: &str, text: &str) -> PathBuf {
        let path = self.0.join(name);
        std::fs::write(&path, text).unwrap();
        path
    }

    /// A directory holding one file `mesh.yaml` with `text`: what `sinewctl up` reads.
    pub fn mesh_dir(&self, text: &str) -> PathBuf {
        let dir = self.0.join("mesh");
        std::fs::create_dir_all(&dir).unwrap();
        std::fs::write(dir.join("mesh.yaml"), text).unwrap();
        dir
    }
}

impl Drop for Scratch {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

/// The run's record, `run.json`.
pub fn state(mesh: &LocalMesh) -> serde_json::Value {
    serde_json::from_str(&mesh.state()).expect("run.json is JSON")
}

/// One pod's entry in `run.json`.
pub fn pod_state(mesh: &LocalMesh, ns: &str, name: &str) -> serde_json::Value {
    let s = state(mesh);
    s["pods"]
        .as_array()
        .and_then(|pods| {
            pods.iter()
                .find(|p| p["namespace"] == ns && p["name"] == name)
                .cloned()
        })
        .unwrap_or_else(|| panic!("no pod {ns}/{name} in run.json: {s}"))
}

/// Every manifest the run's control plane reads, by path, with its content.
pub fn manifests(mesh: &LocalMesh) -> BTreeMap<PathBuf, String> {
    fn walk(dir: &Path, out: &mut BTreeMap<PathBuf, String>) {
        let entries = std::fs::read_dir(dir).unwrap_or_else(|e| panic!("{}: {e}", dir.display()));
        for e in entries.flatten() {
            let path = e.path();
            if path.is_dir() {
                walk(&path, out);
            } else {
                let text = std::fs::read_to_string(&path)
                    .unwrap_or_else(|e| panic!("{}: {e}", path.display()));
                out.insert(path, text);
            }
        }
    }
    let mut out = BTreeMap::new();
    walk(&mesh.dir().join("manifests"), &mut out);
    out
}
