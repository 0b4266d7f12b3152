//! A local mesh driven from a test: `sinewctl up` as a child process with a run name and state
//! root of its own, and `sinewctl` commands against it.
//!
//! Promises: [`LocalMesh::up`] returns once every pod runs and every demo app in them listens
//! (`up` reports a pod running once its app is started, which is not yet listening), or panics
//! with what `up` printed; [`Drop`] runs `sinewctl down` and waits for `up` to exit (it removes
//! everything it made), on success and on panic alike; on panic, or with `SINEW_E2E_LOGS=1`, it
//! first prints what `up` said and the tail of every log in the run's state directory.

use crate::process::{run_bounded, wait_exit, wait_until};
use crate::testbed::SHOW_LOGS_ENV;
use std::io::{BufRead as _, BufReader};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Output, Stdio};
use std::sync::atomic::{AtomicU32, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

/// Start-up of a debug build with room for a loaded CI machine.
const UP_TIMEOUT: Duration = Duration::from_secs(90);
const COMMAND_TIMEOUT: Duration = Duration::from_secs(60);
const LOG_TAIL_LINES: usize = 60;

pub struct LocalMesh {
    pub sinewctl: PathBuf,
    pub run: String,
    pub state_root: PathBuf,
    child: Option<Child>,
    output: Arc<Mutex<String>>,
}

impl LocalMesh {
    /// A run name unique to this process and call (run names are at most 24 characters).
    pub fn unique_name(tag: &str) -> String {
        static N: AtomicU32 = AtomicU32::new(0);
        format!(
            "{tag}-{}-{}",
            std::process::id(),
            N.fetch_add(1, Ordering::Relaxed)
        )
    }

    /// `sinewctl --name <run> up <dir>` with binaries from `bin_dir`; waits for "all N pods
    /// running".
    pub fn up(bin_dir: &Path, dir: &Path, run: &str) -> LocalMesh {
        Self::up_with(bin_dir, dir, run, &[])
    }

    /// [`LocalMesh::up`] with more of `up`'s flags (`--otlp-endpoint URL`, …).
    pub fn up_with(bin_dir: &Path, dir: &Path, run: &str, flags: &[&str]) -> LocalMesh {
        let state_root = std::env::temp_dir().join("sinew-e2e-state");
        let sinewctl = bin_dir.join("sinewctl");
        let mut child = Command::new(&sinewctl)
            .arg("--name")
            .arg(run)
            .arg("--state-root")
            .arg(&state_root)
            .arg("up")
            .args(flags)
            .arg(dir)
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .unwrap_or_else(|e| panic!("cannot start {}: {e}", sinewctl.display()));
        let output = Arc::new(Mutex::new(String::new()));
        for pipe in [
            child
                .stdout
                .take()
                .map(|p| Box::new(p) as Box<dyn std::io::Read + Send>),
            child
                .stderr
                .take()
                .map(|p| Box::new(p) as Box<dyn std::io::Read + Send>),
        ]
        .into_iter()
        .flatten()
        {
            let output = output.clone();
            std::thread::spawn(move || {
                for line in BufReader::new(pipe).lines().map_while(Result::ok) {
                    if let Ok(mut o) = output.lock() {
                        o.push_str(&line);
                        o.push('\n');
                    }
                }
            });
        }
        let mut mesh = LocalMesh {
            sinewctl,
            run: run.to_string(),
            state_root,
            child: Some(child),
            output,
        };
        let start = Instant::now();
        loop {
            let out = mesh.output();
            // "all N pods running", or "K of N pods running" (a pod slow to start is marked
            // failed for a while, and `up` says so once): then wait for the rest.
            if out.lines().any(|l| l.contains(" pods running, ")) {
                let left = UP_TIMEOUT.saturating_sub(start.elapsed());
                if let Err(e) = mesh.wait_serving(left) {
                    panic!("{e}\n{}", mesh.output());
                }
                return mesh;
            }
            let exited = mesh
                .child
                .as_mut()
                .and_then(|c| c.try_wait().ok().flatten());
            if let Some(status) = exited {
                panic!("sinewctl up exited ({status}) before the pods ran:\n{out}");
            }
            if start.elapsed() > UP_TIMEOUT {
                panic!("sinewctl up did not report its pods running in {UP_TIMEOUT:?}:\n{out}");
            }
            std::thread::sleep(Duration::from_millis(50));
        }
    }

    /// The pid of `sinewctl up` (the run's supervisor).
    pub fn supervisor_pid(&self) -> Option<u32> {
        self.child.as_ref().map(Child::id)
    }

    /// Everything `up` printed so far.
    pub fn output(&self) -> String {
        self.output.lock().map(|o| o.clone()).unwrap_or_default()
    }

    /// `sinewctl --name <run> <args>`, bounded in time.
    pub fn ctl(&self, args: &[&str]) -> Output {
        let mut cmd = Command::new(&self.sinewctl);
        cmd.arg("--name")
            .arg(&self.run)
            .arg("--state-root")
            .arg(&self.state_root)
            .args(args);
        run_bounded(cmd, COMMAND_TIMEOUT)
            .unwrap_or_else(|e| panic!("sinewctl {args:?} did not finish: {e}"))
    }

    /// `sinewctl exec -n <ns> <pod> -- <cmd>`: the status and stdout.
    pub fn exec(&self, namespace: &str, pod: &str, cmd: &[&str]) -> (bool, String) {
        let mut args = vec!["exec", "-n", namespace, pod, "--"];
        args.extend_from_slice(cmd);
        let out = self.ctl(&args);
        (
            out.status.success(),
            String::from_utf8_lossy(&out.stdout).into_owned(),
        )
    }

    /// Waits until every pod of the run is `Running`, every process in it has started (sinewctl
    /// records a pid after writing its `started` line, so the logs say what runs), and every
    /// demo app (`sinew-demo backend` or `frontend`) has said it listens since its last start: a
    /// first request sent earlier could meet a port nobody listens on yet (the caller then sees
    /// a 503 no retry hides). After a container restart, call it again before sending to that
    /// pod.
    pub fn wait_serving(&self, timeout: Duration) -> Result<(), String> {
        wait_until(
            "every pod running and its demo app listening",
            timeout,
            || {
                let state: serde_json::Value =
                    serde_json::from_str(&self.state()).map_err(|e| format!("run.json: {e}"))?;
                let waiting: Vec<String> = state["pods"]
                    .as_array()
                    .into_iter()
                    .flatten()
                    .flat_map(pod_not_serving)
                    .collect();
                match waiting.is_empty() {
                    true => Ok(()),
                    false => Err(format!("{waiting:?}")),
                }
            },
        )
    }

    /// The run's directory (`<state-root>/<run>`).
    pub fn dir(&self) -> PathBuf {
        self.state_root.join(&self.run)
    }

    /// The run's record, `run.json`, as text.
    pub fn state(&self) -> String {
        std::fs::read_to_string(self.dir().join("run.json")).unwrap_or_default()
    }

    /// Stops the run with `sinewctl down` and waits for `up` to exit; returns what `down`
    /// printed.
    pub fn down(&mut self) -> String {
        let out = self.ctl(&["down"]);
        let text = format!(
            "{}{}",
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        );
        if let Some(mut child) = self.child.take()
            && wait_exit(&mut child, COMMAND_TIMEOUT).is_none()
        {
            let _ = child.kill();
            let _ = child.wait();
            panic!(
                "sinewctl up did not exit after `sinewctl down`:\n{}",
                self.output()
            );
        }
        text
    }

    fn print_logs(&self) {
        eprintln!("===== sinewctl up ({}) said:\n{}", self.run, self.output());
        let mut logs = Vec::new();
        collect_logs(&self.dir(), &mut logs);
        for log in logs {
            let text = std::fs::read_to_string(&log).unwrap_or_default();
            let lines: Vec<&str> = text.lines().collect();
            let tail = &lines[lines.len().saturating_sub(LOG_TAIL_LINES)..];
            eprintln!(
                "===== {} (last {} lines):\n{}",
                log.display(),
                tail.len(),
                tail.join("\n")
            );
        }
    }
}

fn collect_logs(dir: &Path, out: &mut Vec<PathBuf>) {
    let Ok(entries) = std::fs::read_dir(dir) else {
        return;
    };
    for e in entries.flatten() {
        let p = e.path();
        if p.is_dir() {
            collect_logs(&p, out);
        } else if p.extension().is_some_and(|x| x == "log") {
            out.push(p);
        }
    }
}

impl Drop for LocalMesh {
    fn drop(&mut self) {
        if self.child.is_none() {
            return;
        }
        if std::thread::panicking() || std::env::var(SHOW_LOGS_ENV).is_ok_and(|v| v == "1") {
            self.print_logs();
        }
        let mut cmd = Command::new(&self.sinewctl);
        cmd.arg("--name")
            .arg(&self.run)
            .arg("--state-root")
            .arg(&self.state_root)
            .arg("down");
        let _ = run_bounded(cmd, COMMAND_TIMEOUT);
        if let Some(mut child) = self.child.take()
            && wait_exit(&mut child, COMMAND_TIMEOUT).is_none()
        {
            let _ = child.kill();
            let _ = child.wait();
        }
    }
}

/// Whether a container log's last start is a demo app (`sinew-demo backend|frontend`) that has
/// not said `listening on` yet. The app's own lines may come before sinewctl's `started` line
/// (written once the spawn returns), so this run's output is all that follows sinewctl's last
/// other line (an exit, a restart), or the whole log.
fn demo_app_not_listening(log: &str) -> bool {
    let ours = |l: &str| l.starts_with("--- sinewctl: ");
    let started = |l: &str| l.starts_with("--- sinewctl: started ");
    let lines: Vec<&str> = log.lines().collect();
    let Some(command) = lines.iter().rev().find(|l| started(l)) else {
        return false;
    };
    let this_run = lines
        .iter()
        .rposition(|l| ours(l) && !started(l))
        .map_or(&lines[..], |at| &lines[at + 1..]);
    let serves = command.contains("sinew-demo backend") || command.contains("sinew-demo frontend");
    serves
        && !this_run
            .iter()
            .any(|l| !ours(l) && l.contains(" listening on "))
}

/// What keeps a pod of `run.json` from serving: not `Running`, a process never started (one
/// with neither a pid nor a last exit), or a demo app not listening yet.
fn pod_not_serving(pod: &serde_json::Value) -> Vec<String> {
    let name = format!(
        "{}/{}",
        pod["namespace"].as_str().unwrap_or_default(),
        pod["name"].as_str().unwrap_or_default()
    );
    if pod["phase"] != "Running" {
        return vec![format!("{name}: {}", pod["phase"])];
    }
    let processes = std::iter::once(&pod["proxy"])
        .filter(|p| !p.is_null())
        .chain(pod["containers"].as_array().into_iter().flatten());
    processes
        .filter_map(|p| {
            let process = format!("{name} {}", p["name"].as_str().unwrap_or_default());
            if p["pid"].is_null() && p["lastExit"].is_null() {
                return Some(format!("{process}: not started"));
            }
            let log = std::fs::read_to_string(p["log"].as_str().unwrap_or_default());
            demo_app_not_listening(&log.unwrap_or_default())
                .then(|| format!("{process}: not listening yet"))
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    const STARTED: &str =
        "--- sinewctl: started sinew-demo backend --name web --listen 0.0.0.0:8080 (pid 7)";
    const LISTENING: &str = "sinew-demo: backend \"web\" listening on 0.0.0.0:8080";

    #[test]
    fn a_demo_app_listens_whichever_of_its_line_and_sinewctls_comes_first() {
        assert!(demo_app_not_listening(&format!("{STARTED}\n")));
        assert!(!demo_app_not_listening(&format!(
            "{STARTED}\n{LISTENING}\n"
        )));
        // The app wrote before sinewctl's note (seen on CI).
        assert!(!demo_app_not_listening(&format!(
            "{LISTENING}\n{STARTED}\n"
        )));
    }

    #[test]
    fn after_a_restart_only_the_new_runs_listening_line_counts() {
        let restarted = format!(
            "{STARTED}\n{LISTENING}\n--- sinewctl: signal: 15 (SIGTERM); restarting in 1s\n{STARTED}\n"
        );
        assert!(demo_app_not_listening(&restarted));
        assert!(!demo_app_not_listening(&format!(
            "{restarted}{LISTENING}\n"
        )));
    }

    #[test]
    fn other_containers_are_not_waited_for() {
        assert!(!demo_app_not_listening(
            "--- sinewctl: started sleep infinity (pid 9)\n"
        ));
        assert!(!demo_app_not_listening(""));
    }
}
