//! Finding the `sinew-proxy` binary from another package's test.
//!
//! `CARGO_BIN_EXE_sinew-proxy` exists only for the proxy's own tests, so we look where cargo puts
//! it: beside the `deps/` directory this test binary runs from (which is already inside
//! `CARGO_TARGET_DIR` when that is set), then `$CARGO_TARGET_DIR/<profile>/`. A missing binary, or
//! one older than the proxy's sources (`cargo test -p sinew-tests` does not rebuild it), is built
//! with `cargo build -p sinew-proxy --bin sinew-proxy`, bounded in time.

use crate::process::run_bounded;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::{Duration, SystemTime};

const BIN: &str = "sinew-proxy";
/// What the binary is built from (not the proxy's own tests, which would force needless builds).
const SOURCES: [&str; 6] = [
    "proxy/src",
    "proxy/Cargo.toml",
    "proto/src",
    "proto/proto",
    "proto/build.rs",
    "proto/Cargo.toml",
];
/// A clean debug build of the workspace takes about 2 minutes on our 2 cores; leave room.
const BUILD_TIMEOUT: Duration = Duration::from_secs(15 * 60);

/// The path of an up-to-date `sinew-proxy` binary. Panics with the reason when there is none.
pub fn locate() -> PathBuf {
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
    let mut candidates = vec![profile_dir.join(BIN)];
    if let Some(dir) = std::env::var_os("CARGO_TARGET_DIR") {
        candidates.push(PathBuf::from(dir).join(&profile).join(BIN));
    }
    let sources = workspace_root();
    let newest_source = newest_mtime(&SOURCES.map(|s| sources.join(s)));
    if let Some(bin) = candidates.iter().find(|p| is_fresh(p, newest_source)) {
        return bin.clone();
    }

    let cargo = std::env::var_os("CARGO").unwrap_or_else(|| "cargo".into());
    let mut cmd = Command::new(&cargo);
    cmd.current_dir(&sources)
        .args(["build", "-p", "sinew-proxy", "--bin", BIN]);
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
        "{BIN} is missing or older than its sources; building it: {cmd:?} (in {})",
        sources.display()
    );
    let out = run_bounded(cmd, BUILD_TIMEOUT).unwrap_or_else(|e| {
        panic!("cannot build {BIN} ({e}); build it first: cargo build -p sinew-proxy --bin {BIN}")
    });
    assert!(
        out.status.success(),
        "cargo build -p sinew-proxy failed ({}):\n{}",
        out.status,
        String::from_utf8_lossy(&out.stderr)
    );
    candidates
        .into_iter()
        .find(|p| p.is_file())
        .unwrap_or_else(|| {
            panic!(
                "cargo built {BIN} but it is not in {}",
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
