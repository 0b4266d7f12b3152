//! What `sinewctl up` prints: event lines (`sinew: …`), each problem once, the start-up summary
//! with its "Try:" hint, pods announced as they start and become ready, and on a terminal a live
//! traffic line that events replace and the next tick redraws.
//!
//! Promises: a problem reported again (every reload re-finds it) is printed once; an event on a
//! terminal first clears the live line; nothing here decides anything about the mesh.

use std::collections::{BTreeMap, BTreeSet};
use std::io::Write;
use std::sync::{Arc, Mutex};

use sinew_control_plane::registry::{PodEntry, Snapshot};
use tokio::time::Instant;

use super::PodKey;
use crate::state::{PodPhase, RunState};

/// Clears the terminal's current line.
const CLEAR_LINE: &str = "\r\x1b[2K";

/// A meshed pod and a service it is not part of: the `curl` the summary suggests.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TryHint {
    pub namespace: String,
    pub pod: String,
    pub url: String,
}

/// How the user invokes us, for the commands the summary suggests: `sinewctl` (or the script)
/// and ` --name <run>` unless the run is the default one.
#[derive(Debug, Clone)]
pub struct Invocation {
    pub me: String,
    pub name_flag: String,
}

/// Where output goes: stdout, or a buffer in tests.
type Sink = Arc<Mutex<dyn Write + Send>>;

pub struct Console {
    out: Sink,
    /// Messages already printed, so a problem is reported once, not on every reload.
    reported: BTreeSet<String>,
    /// Stdout is a terminal showing the live line, which events must clear first.
    live: bool,
    /// The start-up summary has been printed: later pods are announced one by one.
    announced: bool,
    /// Pods announced as starting after the summary, until they are announced ready.
    starting: BTreeMap<PodKey, Instant>,
    try_hint: Option<TryHint>,
}

// === impl Console ===

impl Console {
    /// Prints to stdout.
    pub fn stdout() -> Self {
        Self::to(Arc::new(Mutex::new(std::io::stdout())))
    }

    fn to(out: Sink) -> Self {
        Self {
            out,
            reported: BTreeSet::new(),
            live: false,
            announced: false,
            starting: BTreeMap::new(),
            try_hint: None,
        }
    }

    /// Stdout is a terminal: the live line may be drawn (once the summary is out).
    pub fn set_live(&mut self, live: bool) {
        self.live = live;
    }

    pub fn shows_live_line(&self) -> bool {
        self.live && self.announced
    }

    pub fn announced(&self) -> bool {
        self.announced
    }

    pub fn set_try_hint(&mut self, hint: Option<TryHint>) {
        self.try_hint = hint;
    }

    /// One event line; on a terminal it replaces the live line, which the next tick redraws.
    pub fn say(&self, message: &str) {
        let clear = if self.shows_live_line() {
            CLEAR_LINE
        } else {
            ""
        };
        self.write(&format!("{clear}sinew: {message}\n"));
    }

    /// A problem, said once however often it is reported.
    pub fn report(&mut self, message: String) {
        if self.reported.insert(message.clone()) {
            self.say(&message);
        }
    }

    /// Redraws the live line.
    pub fn live_line(&self, line: &str) {
        self.write(&format!("{CLEAR_LINE}{line}"));
    }

    /// Ends the live line for good (before the shutdown messages).
    pub fn finish(&mut self) {
        if self.live {
            self.write("\n");
        }
        self.live = false;
    }

    /// The start-up summary: every pod, how many run, and what to try next. Pods started after
    /// it are announced one by one.
    pub fn announce(&mut self, state: &RunState, elapsed_secs: f64, how: &Invocation) {
        self.announced = true;
        self.write(&summary(state, elapsed_secs, how, self.try_hint.as_ref()));
    }

    /// A pod started after the summary (by `apply`).
    pub fn starting(&mut self, key: &PodKey, ip: &str, identity: Option<&str>) {
        if !self.announced {
            return;
        }
        let who = identity.unwrap_or("not meshed");
        self.say(&format!("pod {}/{} {ip} starting ({who})", key.0, key.1));
        self.starting.insert(key.clone(), Instant::now());
    }

    /// Says which pods announced as starting now run, and forgets those that are gone
    /// (deleted or restarted before they were ready: nothing to announce).
    pub fn announce_ready(&mut self, running: &BTreeSet<PodKey>, exists: impl Fn(&PodKey) -> bool) {
        let ready: Vec<PodKey> = self
            .starting
            .keys()
            .filter(|k| running.contains(*k))
            .cloned()
            .collect();
        for key in ready {
            if let Some(since) = self.starting.remove(&key) {
                self.say(&format!(
                    "pod {}/{} ready, {} ms after it started",
                    key.0,
                    key.1,
                    since.elapsed().as_millis()
                ));
            }
        }
        self.starting.retain(|k, _| exists(k));
    }

    fn write(&self, text: &str) {
        if let Ok(mut out) = self.out.lock() {
            let _ = out.write_all(text.as_bytes());
            let _ = out.flush();
        }
    }
}

/// The summary after start-up (see [`Console::announce`]).
fn summary(
    state: &RunState,
    elapsed_secs: f64,
    how: &Invocation,
    hint: Option<&TryHint>,
) -> String {
    let (me, flag) = (&how.me, &how.name_flag);
    let mut out = String::new();
    for p in &state.pods {
        let mesh = match (&p.identity, p.proxy_ready_ms) {
            (Some(id), Some(ms)) => format!("{id}, proxy ready in {ms} ms"),
            (Some(id), None) => id.clone(),
            (None, _) => "not meshed".into(),
        };
        out.push_str(&format!(
            "sinew: pod {}/{} {} {mesh}\n",
            p.namespace, p.name, p.ip
        ));
    }
    let running = state
        .pods
        .iter()
        .filter(|p| p.phase == PodPhase::Running)
        .count();
    if running == state.pods.len() {
        out.push_str(&format!(
            "sinew: all {running} pods running, {elapsed_secs:.1} s after start\n"
        ));
    } else {
        out.push_str(&format!(
            "sinew: {running} of {} pods running, {elapsed_secs:.1} s after start; `{me}{flag} status` says why\n",
            state.pods.len()
        ));
    }
    out.push_str("\nTry:\n");
    if let Some(TryHint {
        namespace: ns,
        pod,
        url,
    }) = hint
    {
        out.push_str(&format!(
            "  {me}{flag} exec -n {ns} {pod} -- curl -s {url}\n"
        ));
        out.push_str(&format!("  {me}{flag} logs -n {ns} {pod} -c proxy\n"));
        out.push_str(&format!(
            "  {me}{flag} proxy-config -n {ns} {pod}   (the routes, policy and endpoint health its proxy uses)\n"
        ));
    }
    out.push_str(&format!("  {me}{flag} status\n"));
    out.push_str(&format!(
        "  {me}{flag} apply -f FILE      (changes take effect live)\n"
    ));
    out.push_str(&format!(
        "Ctrl-C (or `{me}{flag} down`) stops the mesh and removes everything.\n\n"
    ));
    out
}

/// A meshed pod (by `meshed`) calling a service it is not part of, from a snapshot with
/// addresses filled in.
pub fn try_hint(snapshot: &Snapshot, meshed: impl Fn(&PodEntry) -> bool) -> Option<TryHint> {
    snapshot.services().values().find_map(|svc| {
        let port = svc.ports.first()?.port;
        let port = if port == 80 {
            String::new()
        } else {
            format!(":{port}")
        };
        let client = snapshot
            .pods()
            .values()
            .find(|p| meshed(p) && !svc.selects(p))?;
        Some(TryHint {
            namespace: client.namespace.clone(),
            pod: client.name.clone(),
            url: format!("http://{}.{}{port}/", svc.name, svc.namespace),
        })
    })
}

/// Files `up` leaves out (annotated to be applied later), as one line each: the objects in it
/// and the command that applies it.
pub fn held_file(file: &std::path::Path, objects: &[String], how: &Invocation) -> String {
    format!(
        "{} is left out ({}: annotated {}); `{}{} apply -f {}` applies it",
        file.display(),
        objects.join(", "),
        crate::manifests::SKIP_ON_UP,
        how.me,
        how.name_flag,
        file.display()
    )
}

#[cfg(test)]
mod tests;
