//! What an end-to-end test needs from the machine, and the visible `SKIPPED` line when it is missing.
//!
//! Promises: [`require`] either finds every tool (as an absolute path, also when the caller's `PATH`
//! lacks the sbin directories) and confirms root, or returns one sentence naming what is missing
//! and the Debian package that brings it. [`skip`] prints `SKIPPED: <test>: <reason>` to stderr,
//! or fails the test when `SINEW_E2E_REQUIRED=1`, so CI cannot turn green by skipping.

use std::collections::BTreeMap;
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};

/// Set to `1` where the end-to-end tests must run (CI): a missing prerequisite fails instead.
pub const REQUIRED_ENV: &str = "SINEW_E2E_REQUIRED";

/// Where tools live besides `PATH`: a non-login root shell often lacks the sbin directories.
const EXTRA_DIRS: [&str; 5] = ["/usr/local/sbin", "/usr/sbin", "/sbin", "/usr/bin", "/bin"];

/// Tools found on this machine, by name.
#[derive(Debug, Clone)]
pub struct Tools(BTreeMap<&'static str, PathBuf>);

impl Tools {
    /// The absolute path of a tool passed to [`require`].
    pub fn path(&self, name: &str) -> &Path {
        self.0
            .get(name)
            .unwrap_or_else(|| panic!("invariant: {name} was not in the list given to require()"))
    }
}

/// Checks that we are root and that every tool exists. `Err` is the reason to skip.
pub fn require(tools: &[&'static str]) -> Result<Tools, String> {
    match effective_uid() {
        Some(0) => {}
        Some(uid) => {
            return Err(format!(
                "needs root (CAP_NET_ADMIN) for network namespaces and iptables; running as uid {uid}"
            ));
        }
        None => return Err("cannot read the effective uid from /proc/self/status".into()),
    }
    let mut found = BTreeMap::new();
    let mut missing = Vec::new();
    for &name in tools {
        match find_tool(name) {
            Some(p) => {
                found.insert(name, p);
            }
            None => missing.push(format!("{name} (Debian package {})", package_of(name))),
        }
    }
    if missing.is_empty() {
        Ok(Tools(found))
    } else {
        Err(format!("missing {}", missing.join(", ")))
    }
}

/// Reports a skipped test visibly; panics instead when [`REQUIRED_ENV`] is `1`.
pub fn skip(test: &str, reason: &str) {
    if std::env::var(REQUIRED_ENV).is_ok_and(|v| v == "1") {
        panic!("{test} cannot run ({reason}) and {REQUIRED_ENV}=1 says it must");
    }
    eprintln!("SKIPPED: {test}: {reason}");
}

/// The effective UID, from `/proc` (std has no getuid and this crate takes no libc).
pub fn effective_uid() -> Option<u32> {
    let status = std::fs::read_to_string("/proc/self/status").ok()?;
    let line = status.lines().find(|l| l.starts_with("Uid:"))?;
    // Uid: real effective saved filesystem
    line.split_whitespace().nth(2)?.parse().ok()
}

/// An executable named `name` on `PATH` or in the usual system directories, preferring one that
/// every user can run: tests run tools as unprivileged UIDs, and root's `PATH` may lead into
/// `/root` (a pyenv shim, say) where those UIDs cannot follow.
pub fn find_tool(name: &str) -> Option<PathBuf> {
    let path = std::env::var_os("PATH").unwrap_or_default();
    let candidates: Vec<PathBuf> = std::env::split_paths(&path)
        .chain(EXTRA_DIRS.iter().map(PathBuf::from))
        .map(|dir| dir.join(name))
        .filter(|p| is_executable(p))
        .collect();
    candidates
        .iter()
        .find(|p| usable_by_all(p))
        .or(candidates.first())
        .cloned()
}

fn is_executable(p: &Path) -> bool {
    std::fs::metadata(p).is_ok_and(|m| m.is_file() && m.permissions().mode() & 0o111 != 0)
}

/// The file, after symlinks, is executable by others and every directory above it searchable.
pub fn usable_by_all(p: &Path) -> bool {
    let Ok(real) = std::fs::canonicalize(p) else {
        return false;
    };
    let others_x =
        |p: &Path| std::fs::metadata(p).is_ok_and(|m| m.permissions().mode() & 0o001 != 0);
    others_x(&real) && real.ancestors().skip(1).all(others_x)
}

/// The Debian package that installs `tool`, for the skip reason.
fn package_of(tool: &str) -> &'static str {
    match tool {
        "ip" | "bridge" => "iproute2",
        "iptables" | "iptables-restore" | "iptables-save" => "iptables",
        "setpriv" | "runuser" | "nsenter" => "util-linux",
        "tcpdump" => "tcpdump",
        "curl" => "curl",
        "python3" => "python3",
        _ => "unknown",
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn finds_sh_and_not_a_made_up_tool() {
        assert!(find_tool("sh").is_some_and(|p| p.is_absolute() && usable_by_all(&p)));
        assert_eq!(find_tool("sinew-no-such-tool"), None);
    }

    #[test]
    fn missing_tools_are_named_with_their_package() {
        // As root the uid check passes and the tool is reported; otherwise the uid is.
        let err = require(&["sinew-no-such-tool"]).expect_err("tool is missing");
        assert!(
            err.contains("sinew-no-such-tool (Debian package unknown)")
                || err.contains("needs root"),
            "{err}"
        );
    }
}
