//! Processes run the way a kubelet runs containers: inside the pod's network namespace, as the
//! pod's user, output appended to a log file, restarted with backoff when they exit (following
//! the pod's `restartPolicy`), and stopped with SIGTERM, then SIGKILL after a grace period.

use std::fs::OpenOptions;
use std::io::Write as _;
use std::path::PathBuf;
use std::process::Stdio;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use tokio::sync::{Notify, watch};
use tokio::time::Instant;

use crate::state::{ProcessState, RunState};
use crate::sys;

/// First restart delay; doubles per consecutive failure up to [`MAX_BACKOFF`]. A kubelet starts
/// at 10 s and caps at 5 min; locally a fix is usually one edit away, so we retry sooner.
const FIRST_BACKOFF: Duration = Duration::from_secs(1);
const MAX_BACKOFF: Duration = Duration::from_secs(30);
/// A run this long resets the backoff.
const HEALTHY_RUN: Duration = Duration::from_secs(30);

/// The pod's `restartPolicy`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum RestartPolicy {
    Always,
    OnFailure,
    Never,
}

impl RestartPolicy {
    pub fn parse(s: Option<&str>) -> RestartPolicy {
        match s {
            Some("Never") => RestartPolicy::Never,
            Some("OnFailure") => RestartPolicy::OnFailure,
            _ => RestartPolicy::Always,
        }
    }
}

/// What to run and where.
#[derive(Debug, Clone)]
pub struct Spec {
    pub name: String,
    pub netns: String,
    /// `None` runs as root (the control plane).
    pub user: Option<(u32, u32)>,
    pub argv: Vec<String>,
    pub env: Vec<(String, String)>,
    pub cwd: PathBuf,
    pub log: PathBuf,
    pub restart: RestartPolicy,
}

/// Where in the run's record a process reports itself.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Slot {
    ControlPlane,
    Proxy {
        namespace: String,
        pod: String,
    },
    Container {
        namespace: String,
        pod: String,
        index: usize,
    },
}

impl Slot {
    fn get_mut<'s>(&self, state: &'s mut RunState) -> Option<&'s mut ProcessState> {
        match self {
            Slot::ControlPlane => Some(&mut state.control_plane),
            Slot::Proxy { namespace, pod } => state
                .pods
                .iter_mut()
                .find(|p| &p.namespace == namespace && &p.name == pod)?
                .proxy
                .as_mut(),
            Slot::Container {
                namespace,
                pod,
                index,
            } => state
                .pods
                .iter_mut()
                .find(|p| &p.namespace == namespace && &p.name == pod)?
                .containers
                .get_mut(*index),
        }
    }
}

/// The run's record, shared by everything the supervisor runs; every update wakes the
/// supervisor to save it.
#[derive(Clone, Default)]
pub struct Board {
    state: Arc<Mutex<RunState>>,
    changed: Arc<Notify>,
}

impl Board {
    pub fn update(&self, f: impl FnOnce(&mut RunState)) {
        if let Ok(mut state) = self.state.lock() {
            f(&mut state);
        }
        self.changed.notify_one();
    }

    pub fn get(&self) -> RunState {
        self.state.lock().map(|s| s.clone()).unwrap_or_default()
    }

    pub async fn changed(&self) {
        self.changed.notified().await;
    }

    fn process(&self, slot: &Slot, f: impl FnOnce(&mut ProcessState)) {
        self.update(|s| {
            if let Some(p) = slot.get_mut(s) {
                f(p);
            }
        });
    }
}

/// A running (and re-running) process. Dropping it without [`Supervised::stop`] leaves the
/// process to the namespace clean-up.
pub struct Supervised {
    stop: watch::Sender<Option<Duration>>,
    task: tokio::task::JoinHandle<()>,
}

impl Supervised {
    pub fn spawn(spec: Spec, slot: Slot, board: Board) -> Supervised {
        let (stop, stopped) = watch::channel(None);
        let task = tokio::spawn(supervise(spec, slot, board, stopped));
        Supervised { stop, task }
    }

    /// SIGTERM, then SIGKILL after `grace`; returns once the process is gone.
    pub async fn stop(self, grace: Duration) {
        let _ = self.stop.send(Some(grace));
        let _ = self.task.await;
    }
}

fn command(spec: &Spec) -> tokio::process::Command {
    let mut cmd = tokio::process::Command::new("ip");
    cmd.args(["netns", "exec", &spec.netns]);
    if let Some((uid, gid)) = spec.user {
        cmd.arg("setpriv")
            .arg(format!("--reuid={uid}"))
            .arg(format!("--regid={gid}"))
            .arg("--clear-groups")
            .arg("--");
    }
    cmd.args(&spec.argv)
        .env_clear()
        .envs(spec.env.iter().map(|(k, v)| (k, v)))
        .current_dir(&spec.cwd)
        .stdin(Stdio::null())
        // Its own process group: a Ctrl-C at the terminal reaches the supervisor only, which
        // then stops everything in order.
        .process_group(0)
        .kill_on_drop(true);
    cmd
}

/// Appends a line of our own to the process's log.
fn note(log: &PathBuf, text: &str) {
    if let Ok(mut f) = OpenOptions::new().create(true).append(true).open(log) {
        let _ = writeln!(f, "--- sinewctl: {text}");
    }
}

async fn supervise(
    spec: Spec,
    slot: Slot,
    board: Board,
    mut stopped: watch::Receiver<Option<Duration>>,
) {
    let mut backoff = FIRST_BACKOFF;
    let mut restarts = 0u32;
    loop {
        let started = Instant::now();
        let outcome = match open_log(&spec).and_then(|(out, err)| {
            command(&spec)
                .stdout(out)
                .stderr(err)
                .spawn()
                .map_err(|e| format!("cannot start {:?}: {e}", spec.argv))
        }) {
            Ok(mut child) => {
                let pid = child.id();
                note(
                    &spec.log,
                    &format!("started {} (pid {})", spec.argv.join(" "), pid.unwrap_or(0)),
                );
                board.process(&slot, |p| p.pid = pid);
                let status = tokio::select! {
                    status = child.wait() => {
                        // What it left running (a shell-wrapped app's children) would hold
                        // its port against the restart.
                        if let Some(pid) = pid {
                            sys::signal_group(pid, true);
                        }
                        status
                    }
                    grace = stop_requested(&mut stopped) => {
                        terminate(&mut child, pid, grace).await;
                        note(&spec.log, "stopped");
                        board.process(&slot, |p| p.pid = None);
                        return;
                    }
                };
                match status {
                    Ok(s) => Outcome {
                        success: s.success(),
                        text: s.to_string(),
                    },
                    Err(e) => Outcome {
                        success: false,
                        text: format!("lost track of it: {e}"),
                    },
                }
            }
            Err(text) => Outcome {
                success: false,
                text,
            },
        };
        let restart = match spec.restart {
            RestartPolicy::Always => true,
            RestartPolicy::OnFailure => !outcome.success,
            RestartPolicy::Never => false,
        };
        if started.elapsed() >= HEALTHY_RUN {
            backoff = FIRST_BACKOFF;
        }
        let text = outcome.text.clone();
        board.process(&slot, |p| {
            p.pid = None;
            p.last_exit = Some(text);
        });
        if !restart {
            note(
                &spec.log,
                &format!("{}; not restarted (restartPolicy)", outcome.text),
            );
            stop_requested(&mut stopped).await;
            return;
        }
        note(
            &spec.log,
            &format!("{}; restarting in {backoff:?}", outcome.text),
        );
        tokio::select! {
            _ = tokio::time::sleep(backoff) => {}
            _ = stop_requested(&mut stopped) => return,
        }
        backoff = (backoff * 2).min(MAX_BACKOFF);
        restarts += 1;
        board.process(&slot, |p| p.restarts = restarts);
    }
}

/// Resolves with the grace period once a stop is requested.
async fn stop_requested(stopped: &mut watch::Receiver<Option<Duration>>) -> Duration {
    match stopped.wait_for(Option::is_some).await {
        Ok(grace) => (*grace).unwrap_or_default(),
        Err(_) => Duration::ZERO,
    }
}

struct Outcome {
    success: bool,
    text: String,
}

fn open_log(spec: &Spec) -> Result<(std::fs::File, std::fs::File), String> {
    let open = || {
        OpenOptions::new()
            .create(true)
            .append(true)
            .open(&spec.log)
            .map_err(|e| format!("cannot open log {}: {e}", spec.log.display()))
    };
    Ok((open()?, open()?))
}

/// SIGTERM to the process's group, SIGKILL to it after `grace`.
async fn terminate(child: &mut tokio::process::Child, pid: Option<u32>, grace: Duration) {
    if let Some(pid) = pid {
        sys::signal_group(pid, false);
    }
    if tokio::time::timeout(grace, child.wait()).await.is_err() {
        if let Some(pid) = pid {
            sys::signal_group(pid, true);
        }
        let _ = child.kill().await;
    }
}
