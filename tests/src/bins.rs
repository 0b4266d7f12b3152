//! Finding our binaries (`sinew-proxy`, `sinewctl`, …) from another package's test.
//!
//! `CARGO_BIN_EXE_<name>` exists only for a package's own tests, so we look where cargo puts
//! them: beside the `deps/` directory this test binary runs from (which is already inside
//! `CARGO_TARGET_DIR` when that is set), then `$CARGO_TARGET_DIR/<profile>/`. A missing binary, or
//! one older than its sources (`cargo test -p sinew-tests` does not rebuild it), is built with
//! `cargo build -p <package> --bin <name>`, bounded in time.

use crate::process::run_bounded;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::{Duration, SystemTime};

/// Binaries built together: `(binary, package, what it is built from)`. The sources leave out
/// the packages' own tests, which would force needless builds.
pub struct Set {
    pub bins: &'static [(&'static str, &'static str, &'static [&'static str])],
}

const PROXY_SOURCES: &[&str] = &[
    "proxy/src",
    "proxy/Cargo.toml",
    "proto/src",
    "proto/proto",
    "proto/build.rs",
    "proto/Cargo.toml",
];
// The control plane and sinewctl both run the injector's code (`/inject`, local mode's rule,
// `kube-inject`).
const CONTROL_PLANE_SOURCES: &[&str] = &[
    "control-plane/src",
    "control-plane/Cargo.toml",
    "injector-webhook/src",
    "injector-webhook/Cargo.toml",
    "proto/src",
    "proto/proto",
    "proto/build.rs",
    "proto/Cargo.toml",
];
const SINEWCTL_SOURCES: &[&str] = &[
    "cli/src",
    "cli/Cargo.toml",
    "control-plane/src",
    "control-plane/Cargo.toml",
    "injector-webhook/src",
    "injector-webhook/Cargo.toml",
    "proto/src",
    "proto/proto",
    "proto/build.rs",
    "proto/Cargo.toml",
];
const DEMO_SOURCES: &[&str] = &["examples/demo/app/src", "examples/demo/app/Cargo.toml"];

/// The sidecar alone.
pub const PROXY: Set = Set {
    bins: &[("sinew-proxy", "sinew-proxy", PROXY_SOURCES)],
};

/// Everything `sinewctl up` runs: it finds the others next to itself.
pub const LOCAL_MODE: Set = Set {
    bins: &[
        ("sinewctl", "sinewctl", SINEWCTL_SOURCES),
        ("sinew-proxy", "sinew-proxy", PROXY_SOURCES),
        (
            "sinew-control-plane",
            "sinew-control-plane",
            CONTROL_PLANE_SOURCES,
        ),
        ("sinew-demo", "sinew-demo", DEMO_SOURCES),
    ],
};

/// A first debug build of the binaries takes about 10 minutes on our 2 cores (docs/benchmarks.md,
/// "First build"); leave room for a loaded machine.
const BUILD_TIMEOUT: Duration = Duration::from_secs(30 * 60);

/// The path of an up-to-date `sinew-proxy` binary. Panics with the reason when there is none.
pub fn proxy() -> PathBuf {
    locate(&PROXY).join("sinew-proxy")
}

/// The directory holding up-to-date builds of every binary of `set`, building them (bounded in
/// time) when one is missing or older than the sources. Panics with the reason when it cannot.
pub fn locate(set: &Set) -> PathBuf {
    let exe = std::env::current_exe().expect("current_exe of the test binary");
    // target/<profile>/deps/<test>-<hash>
    let profile_dir = exe
        .parent()
        .and_then(Path::parent)
        .expect("test binary runs from target/<profile>/deps/");
    let profile = profile_dir
        .file_name()
        .and_then(|n| n.to_str())
        .unwrap_or("debug")
        .to_owned();
    let mut candidates = vec![profile_dir.to_path_buf()];
    if let Some(dir) = std::env::var_os("CARGO_TARGET_DIR") {
        candidates.push(PathBuf::from(dir).join(&profile));
    }
    let sources = workspace_root();
    let newest: Vec<Option<SystemTime>> = set
        .bins
        .iter()
        .map(|(_, _, from)| newest_mtime(&from.iter().map(|s| sources.join(s)).collect::<Vec<_>>()))
        .collect();
    let complete = |dir: &PathBuf| {
        set.bins
            .iter()
            .zip(&newest)
            .all(|((bin, _, _), newest)| is_fresh(&dir.join(bin), *newest))
    };
    if let Some(dir) = candidates.iter().find(|d| complete(d)) {
        return dir.clone();
    }

    let cargo = std::env::var_os("CARGO").unwrap_or_else(|| "cargo".into());
    let mut cmd = Command::new(&cargo);
    cmd.current_dir(&sources).arg("build");
    for (bin, package, _) in set.bins {
        cmd.args(["-p", package, "--bin", bin]);
    }
    match profile.as_str() {
        "debug" => {}
        "release" => {
            cmd.arg("--release");
        }
        other => {
            cmd.args(["--profile", other]);
        }
    }
    eprintln!(
        "a binary is missing or older than its sources; building: {cmd:?} (in {})",
        sources.display()
    );
    let out = run_bounded(cmd, BUILD_TIMEOUT)
        .unwrap_or_else(|e| panic!("cannot build the binaries ({e}); build them first"));
    assert!(
        out.status.success(),
        "cargo build failed ({}):\n{}",
        out.status,
        String::from_utf8_lossy(&out.stderr)
    );
    candidates
        .into_iter()
        .find(|d| set.bins.iter().all(|(bin, _, _)| d.join(bin).is_file()))
        .unwrap_or_else(|| {
            panic!(
                "cargo built the binaries but they are not in {}",
                profile_dir.display()
            )
        })
}

/// The workspace root, fixed when this crate was compiled.
pub fn workspace_root() -> PathBuf {
    let manifest = Path::new(env!("CARGO_MANIFEST_DIR"));
    manifest
        .parent()
        .expect("invariant: tests/ lives in the workspace root")
        .to_path_buf()
}

fn is_fresh(bin: &Path, newest_source: Option<SystemTime>) -> bool {
    let Ok(built) = std::fs::metadata(bin).and_then(|m| m.modified()) else {
        return false;
    };
    // Without readable sources (a bare binary handed to us) trust the binary.
    newest_source.is_none_or(|src| built >= src)
}

/// Newest modification time of any file under `roots` (sources, manifests, build scripts).
fn newest_mtime(roots: &[PathBuf]) -> Option<SystemTime> {
    let mut newest = None;
    let mut stack: Vec<PathBuf> = roots.to_vec();
    // Bounded: the proxy and proto crates hold a few hundred files.
    let mut budget = 20_000;
    while let Some(p) = stack.pop() {
        budget -= 1;
        if budget == 0 {
            break;
        }
        let Ok(meta) = std::fs::symlink_metadata(&p) else {
            continue;
        };
        if meta.is_dir() {
            if let Ok(rd) = std::fs::read_dir(&p) {
                stack.extend(rd.filter_map(|e| e.ok()).map(|e| e.path()));
            }
        } else if meta.is_file()
            && let Ok(m) = meta.modified()
        {
            newest = newest.max(Some(m));
        }
    }
    newest
}
