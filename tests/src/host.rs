//! What an end-to-end test needs from the machine, and what happens when it is missing.
//!
//! Promises: [`require`] either finds every tool (as an absolute path, also when the caller's `PATH`
//! lacks the sbin directories) and confirms root, or returns one sentence naming what is missing
//! and the Debian package that brings it. [`skip`] fails the test with that sentence, so a test
//! that did nothing can never look like a pass; only with `SINEW_ALLOW_SKIP=1` does it skip
//! instead, printing `SKIPPED: <test>: <reason>` and appending `<test>\t<reason>` to the file
//! named by `SINEW_SKIP_REPORT` (which `scripts/test.sh` lists at the end).

use std::collections::BTreeMap;
use std::ffi::OsString;
use std::io::Write;
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};

/// Set to `1` to let a test whose prerequisites are missing skip instead of failing.
pub const ALLOW_SKIP_ENV: &str = "SINEW_ALLOW_SKIP";
/// A file each skipped test appends one line to: `<test>\t<reason>`.
pub const SKIP_REPORT_ENV: &str = "SINEW_SKIP_REPORT";

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

/// A test that cannot run: fails it, unless [`ALLOW_SKIP_ENV`] is `1`; then prints the `SKIPPED`
/// line, records the skip in the [`SKIP_REPORT_ENV`] file, and returns so the test can end.
#[track_caller]
pub fn skip(test: &str, reason: &str) {
    let allow = std::env::var_os(ALLOW_SKIP_ENV);
    let report = std::env::var_os(SKIP_REPORT_ENV).filter(|p| !p.is_empty());
    if let Err(why) = decide_skip(test, reason, allow, report.map(PathBuf::from).as_deref()) {
        panic!("{why}");
    }
    eprintln!("SKIPPED: {test}: {reason}");
}

/// [`skip`] without the environment: `Err` is the failure message.
fn decide_skip(
    test: &str,
    reason: &str,
    allow: Option<OsString>,
    report: Option<&Path>,
) -> Result<(), String> {
    if allow.as_deref() != Some("1".as_ref()) {
        return Err(format!(
            "{test} cannot run: {reason}. Run it as root with the tools installed \
             (scripts/test.sh installs them), or set {ALLOW_SKIP_ENV}=1 to skip it on purpose."
        ));
    }
    if let Some(report) = report {
        // One short write with O_APPEND: lines from parallel tests do not interleave.
        let line = format!("{test}\t{}\n", reason.replace(['\n', '\t'], " "));
        std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(report)
            .and_then(|mut f| f.write_all(line.as_bytes()))
            .map_err(|e| {
                format!(
                    "{test} skipped ({reason}) but cannot record it in {} ({SKIP_REPORT_ENV}): {e}",
                    report.display()
                )
            })?;
    }
    Ok(())
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
        "prometheus" => "prometheus",
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

    #[test]
    fn a_test_that_cannot_run_fails_unless_skipping_is_allowed() {
        for allow in [None, Some(OsString::from("0")), Some(OsString::from(""))] {
            let err = decide_skip("e2e::t", "needs root", allow.clone(), None)
                .expect_err("skipping was not allowed");
            assert!(
                err.contains("e2e::t")
                    && err.contains("needs root")
                    && err.contains("SINEW_ALLOW_SKIP=1"),
                "{allow:?}: {err}"
            );
        }
    }

    #[test]
    fn an_allowed_skip_is_recorded_in_the_report_with_its_reason() {
        let dir = std::env::temp_dir().join(format!("sinew-skip-report-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let report = dir.join("skipped");
        let _ = std::fs::remove_file(&report);
        decide_skip("e2e::a", "needs root", Some("1".into()), Some(&report)).unwrap();
        decide_skip(
            "e2e::b",
            "missing tcpdump\n(x)",
            Some("1".into()),
            Some(&report),
        )
        .unwrap();
        let text = std::fs::read_to_string(&report).unwrap();
        std::fs::remove_dir_all(&dir).unwrap();
        assert_eq!(text, "e2e::a\tneeds root\ne2e::b\tmissing tcpdump (x)\n");
    }

    #[test]
    fn an_unwritable_report_fails_the_test_rather_than_losing_the_skip() {
        let report = Path::new("/proc/sinew-no-such-dir/skipped");
        let err = decide_skip("e2e::a", "needs root", Some("1".into()), Some(report))
            .expect_err("the report cannot be written");
        assert!(err.contains("SINEW_SKIP_REPORT"), "{err}");
    }
}
