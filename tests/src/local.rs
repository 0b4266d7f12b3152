//! A local mesh driven from a test: `sinewctl up` as a child process with a run name and state
//! root of its own, and `sinewctl` commands against it.
//!
//! Promises: [`LocalMesh::up`] returns once `up` reports every pod running, or panics with what
//! `up` printed; [`Drop`] runs `sinewctl down` and waits for `up` to exit (it removes everything
//! it made), on success and on panic alike; on panic, or with `SINEW_E2E_LOGS=1`, it first prints
//! what `up` said and the tail of every log in the run's state directory.

use crate::process::{run_bounded, wait_exit};
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
            if out.lines().any(|l| l.contains(" pods running, ")) {
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
