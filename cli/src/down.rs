//! `sinewctl down`: stop a run, and clean up after one that crashed. Also the last step of
//! every `up`, so a failed start leaves nothing behind either.

use std::fmt;
use std::time::Duration;

use crate::host;
use crate::state::Run;
use crate::sys;

/// How long a running supervisor gets to stop its pods itself before we take over.
const SUPERVISOR_GRACE: Duration = Duration::from_secs(30);

/// What a sweep found and removed.
#[derive(Debug, Default)]
pub struct Swept {
    pub namespaces: usize,
    pub processes: usize,
    pub etc_dirs: usize,
    pub state_dir: bool,
}

impl Swept {
    pub fn is_empty(&self) -> bool {
        self.namespaces == 0 && self.processes == 0 && self.etc_dirs == 0 && !self.state_dir
    }
}

impl fmt::Display for Swept {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let mut parts = Vec::new();
        if self.processes > 0 {
            parts.push(format!("{} processes", self.processes));
        }
        if self.namespaces > 0 {
            parts.push(format!("{} network namespaces", self.namespaces));
        }
        if self.etc_dirs > 0 {
            parts.push(format!("{} hosts files", self.etc_dirs));
        }
        if self.state_dir {
            parts.push("the state directory".into());
        }
        if parts.is_empty() {
            f.write_str("nothing")
        } else {
            f.write_str(&parts.join(", "))
        }
    }
}

/// Removes everything of `run` that exists: processes in its namespaces (and the namespaces,
/// which takes their veths, bridge and iptables rules with them), their `/etc/netns` files and
/// the state directory. Works from names alone, so it also cleans up after a crash.
pub async fn sweep(run: &Run) -> Swept {
    let mut swept = sweep_namespaces(run).await;
    if run.dir.exists() && run.looks_like_run_dir() {
        let _ = std::fs::remove_dir_all(&run.dir);
        swept.state_dir = true;
    }
    swept
}

/// What `up` does once it holds the run's lock: [`sweep`], keeping the lock file.
pub async fn sweep_leftovers(run: &Run) -> Swept {
    let mut swept = sweep_namespaces(run).await;
    if let Ok(entries) = std::fs::read_dir(&run.dir) {
        for e in entries.flatten() {
            if e.file_name() == "up.pid" {
                continue;
            }
            let path = e.path();
            let _ = if path.is_dir() {
                std::fs::remove_dir_all(&path)
            } else {
                std::fs::remove_file(&path)
            };
            swept.state_dir = true;
        }
    }
    swept
}

async fn sweep_namespaces(run: &Run) -> Swept {
    let mut swept = Swept::default();
    let prefix = run.netns_prefix();
    // Pods first, the bridge last (deleting it first would only make the pods' links go down).
    let mut namespaces = sys::netns_with_prefix(&prefix);
    namespaces.sort_by_key(|n| *n == run.bridge_netns());
    for ns in namespaces {
        swept.processes += sys::pids_in_netns(&ns).len();
        host::delete_netns(&ns, Duration::from_secs(2)).await;
        swept.namespaces += 1;
    }
    if let Ok(entries) = std::fs::read_dir(sys::NETNS_ETC_DIR) {
        for e in entries.flatten() {
            if e.file_name().to_string_lossy().starts_with(&prefix) {
                let _ = std::fs::remove_dir_all(e.path());
                swept.etc_dirs += 1;
            }
        }
    }
    swept
}

/// Stops the run's supervisor (it removes what it made), then sweeps for leftovers.
pub async fn down(run: &Run) -> anyhow::Result<()> {
    if !sys::is_root() {
        anyhow::bail!(
            "`sinewctl down` needs root: it removes network namespaces (run it with sudo)"
        );
    }
    if let Some(pid) = run.supervisor() {
        println!(
            "sinew: stopping local mesh {:?} (supervisor pid {pid})",
            run.name
        );
        sys::signal(pid, false);
        let deadline = tokio::time::Instant::now() + SUPERVISOR_GRACE;
        while sys::alive(pid) && tokio::time::Instant::now() < deadline {
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
        if sys::alive(pid) {
            println!("sinew: the supervisor did not stop in {SUPERVISOR_GRACE:?}; killing it");
            sys::signal(pid, true);
        }
    }
    let swept = sweep(run).await;
    if swept.is_empty() {
        println!("sinew: local mesh {:?}: nothing to remove", run.name);
    } else {
        println!("sinew: local mesh {:?}: removed {swept}", run.name);
    }
    Ok(())
}
