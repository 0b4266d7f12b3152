//! Where a local run keeps its things, and the record of what it is running.
//!
//! One run is one directory, `<state-root>/<run>/` (`/run/sinew/local/` by default; `/run` is a
//! tmpfs, so a reboot leaves nothing behind):
//!
//! ```text
//! up.pid                  the supervisor (`sinewctl up`) while it runs
//! run.json                what runs where: pods, addresses, processes (RunState)
//! manifests/              applied objects, one file each (the registry's directory)
//! assignments.yaml        pod IPs and service VIPs handed to the control plane
//! control-plane/          CA root, token key, trust bundle; control-plane.log
//! pods/<ns>/<pod>/        proxy.json, token, one <container>.log per container, proxy.log
//! ```
//!
//! Kernel objects are named after the run so that leftovers of a crashed run are recognisable
//! and never confused with another run's: network namespaces are `sinew-<run>.<namespace>.<pod>`
//! for pods, `sinew-<run>.net` for the bridge and `sinew-<run>.control-plane`; run names hold no
//! dot and Kubernetes namespaces hold none either, so the prefix `sinew-<run>.` is exact.

use std::net::Ipv4Addr;
use std::os::unix::fs::{OpenOptionsExt as _, PermissionsExt as _};
use std::path::{Path, PathBuf};

use anyhow::{Context as _, bail};
use serde::{Deserialize, Serialize};

/// Where runs keep their state unless told otherwise.
pub const DEFAULT_STATE_ROOT: &str = "/run/sinew";

/// The control plane's address on every run's bridge.
pub const CONTROL_PLANE_IP: Ipv4Addr = Ipv4Addr::new(198, 18, 0, 1);
pub const CONTROL_PLANE_GRPC_PORT: u16 = 15012;
pub const CONTROL_PLANE_MONITORING_PORT: u16 = 15014;
/// Every pod's interface is on-link for all of 198.18.0.0/15: pods take 198.18.0.0/16 and
/// service VIPs 198.19.0.0/16, so traffic to a VIP needs no route (it is intercepted or DNATed
/// before it could leave).
pub const POD_PREFIX_LEN: u8 = 15;
pub const POD_RANGE: (Ipv4Addr, Ipv4Addr) = (
    Ipv4Addr::new(198, 18, 0, 2),
    Ipv4Addr::new(198, 18, 255, 254),
);
/// The pod and VIP ranges as CIDRs: the mesh's own addresses, given to the control plane
/// (`--pod-cidr`, `--service-cidr`) and to every proxy's bootstrap (`meshAddressRanges`), so an
/// unresolved connection to one is refused instead of sent in plaintext.
pub const POD_CIDR: &str = "198.18.0.0/16";
pub const VIP_CIDR: &str = "198.19.0.0/16";
pub const VIP_RANGE: (Ipv4Addr, Ipv4Addr) = (
    Ipv4Addr::new(198, 19, 0, 1),
    Ipv4Addr::new(198, 19, 255, 254),
);

/// One local mesh's directory and names. See the module docs.
#[derive(Debug, Clone)]
pub struct Run {
    pub name: String,
    pub dir: PathBuf,
}

/// What `sinewctl up` is running, rewritten (atomically) whenever it changes; read by
/// `status`, `exec`, `logs` and the tests.
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct RunState {
    pub run: String,
    pub supervisor_pid: u32,
    pub source: String,
    /// Where our binaries are; first on `PATH` for containers and `sinewctl exec`.
    pub bin_dir: PathBuf,
    pub started_unix_ms: u64,
    /// Every pod's proxy ready and every container started once.
    pub ready: bool,
    pub control_plane: ProcessState,
    pub control_plane_address: String,
    pub control_plane_netns: String,
    pub pods: Vec<PodState>,
    /// Problems that stop something from running (an address clash, a failed set-up).
    pub errors: Vec<String>,
}

#[derive(Debug, Clone, Default, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct PodState {
    pub namespace: String,
    pub name: String,
    pub netns: String,
    pub ip: String,
    pub meshed: bool,
    pub identity: Option<String>,
    /// The UID and GID the pod's containers (and `sinewctl exec`) run as.
    pub uid: u32,
    pub gid: u32,
    pub phase: PodPhase,
    pub proxy: Option<ProcessState>,
    /// From starting the proxy to its `/healthz/ready` answering 200.
    pub proxy_ready_ms: Option<u64>,
    /// The last failure to update the pod's hosts file or service rules (retried with the
    /// next change).
    pub network_error: Option<String>,
    /// The services view (`NetView::seq`) its hosts file and service rules last took.
    #[serde(default)]
    pub view_applied: u64,
    pub containers: Vec<ProcessState>,
}

/// Where a pod is in its life, as `status` shows it and `run.json` records it: `Pending`,
/// `Starting` (waiting for the proxy), `Running`, `Failed: <why>`, `Terminating`.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub enum PodPhase {
    /// Set up (network namespace, interception rules) under way.
    #[default]
    Pending,
    /// The sidecar runs; the containers wait for it to be ready.
    Starting,
    /// Sidecar ready (if meshed), containers started.
    Running,
    /// Why it does not run (set-up failing and retried, a proxy not ready for long).
    Failed(String),
    /// Being stopped.
    Terminating,
}

// === impl PodPhase ===

impl std::fmt::Display for PodPhase {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            PodPhase::Pending => f.write_str("Pending"),
            PodPhase::Starting => f.write_str("Starting"),
            PodPhase::Running => f.write_str("Running"),
            PodPhase::Failed(why) => write!(f, "Failed: {why}"),
            PodPhase::Terminating => f.write_str("Terminating"),
        }
    }
}

impl std::str::FromStr for PodPhase {
    type Err = String;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        Ok(match s {
            "Pending" => PodPhase::Pending,
            "Starting" => PodPhase::Starting,
            "Running" => PodPhase::Running,
            "Terminating" => PodPhase::Terminating,
            _ => match s.strip_prefix("Failed: ") {
                Some(why) => PodPhase::Failed(why.to_string()),
                None => return Err(format!("{s:?} is not a pod phase")),
            },
        })
    }
}

// `run.json` keeps the phase as the text `status` prints.
impl Serialize for PodPhase {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.collect_str(self)
    }
}

impl<'de> Deserialize<'de> for PodPhase {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let text = String::deserialize(d)?;
        text.parse().map_err(serde::de::Error::custom)
    }
}

#[derive(Debug, Clone, Default, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct ProcessState {
    pub name: String,
    pub pid: Option<u32>,
    pub restarts: u32,
    /// How the last run ended, e.g. `exit status: 1`.
    pub last_exit: Option<String>,
    pub log: PathBuf,
}

// === impl Run ===

impl Run {
    pub fn new(state_root: &Path, name: &str) -> anyhow::Result<Run> {
        let valid = !name.is_empty()
            && name.len() <= 24
            && name
                .bytes()
                .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'-')
            && !name.starts_with('-')
            && !name.ends_with('-');
        if !valid {
            bail!(
                "invalid run name {name:?}: use 1-24 lowercase letters, digits and '-', not starting or ending with '-'"
            );
        }
        Ok(Run {
            name: name.to_string(),
            dir: state_root.join(name),
        })
    }

    pub fn pid_file(&self) -> PathBuf {
        self.dir.join("up.pid")
    }

    pub fn state_file(&self) -> PathBuf {
        self.dir.join("run.json")
    }

    pub fn manifests(&self) -> PathBuf {
        self.dir.join("manifests")
    }

    pub fn assignments(&self) -> PathBuf {
        self.dir.join("assignments.yaml")
    }

    pub fn control_plane_dir(&self) -> PathBuf {
        self.dir.join("control-plane")
    }

    pub fn pod_dir(&self, namespace: &str, pod: &str) -> PathBuf {
        self.dir.join("pods").join(namespace).join(pod)
    }

    /// Every network namespace of this run starts with this.
    pub fn netns_prefix(&self) -> String {
        format!("sinew-{}.", self.name)
    }

    pub fn pod_netns(&self, namespace: &str, pod: &str) -> String {
        format!("{}{namespace}.{pod}", self.netns_prefix())
    }

    pub fn bridge_netns(&self) -> String {
        format!("{}net", self.netns_prefix())
    }

    pub fn control_plane_netns(&self) -> String {
        format!("{}control-plane", self.netns_prefix())
    }

    /// The supervisor's pid if one is running for this run: it holds a lock on `up.pid` for as
    /// long as it lives, so a stale file (a crash, a reused pid) never counts.
    pub fn supervisor(&self) -> Option<u32> {
        let file = std::fs::File::open(self.pid_file()).ok()?;
        if crate::sys::try_lock(&file, false).ok()? {
            // We got the lock: nobody holds it.
            return None;
        }
        std::fs::read_to_string(self.pid_file())
            .ok()?
            .trim()
            .parse()
            .ok()
    }

    /// Makes this process the run's supervisor: creates the run's directory and takes the lock
    /// on `up.pid` (kept while the returned file is open). Refuses if another holds it.
    pub fn claim(&self) -> anyhow::Result<std::fs::File> {
        use std::io::Write as _;
        std::fs::create_dir_all(&self.dir)
            .with_context(|| format!("cannot create {}", self.dir.display()))?;
        std::fs::set_permissions(&self.dir, std::fs::Permissions::from_mode(0o755))?;
        let mut file = std::fs::OpenOptions::new()
            .create(true)
            .write(true)
            .truncate(false)
            .mode(0o644)
            .open(self.pid_file())
            .with_context(|| format!("cannot open {}", self.pid_file().display()))?;
        if !crate::sys::try_lock(&file, true)? {
            let pid = std::fs::read_to_string(self.pid_file()).unwrap_or_default();
            bail!(
                "local mesh {:?} is already running (supervisor pid {}); `{}{} down` stops it",
                self.name,
                pid.trim(),
                crate::invoked_as(),
                if self.name == "local" {
                    String::new()
                } else {
                    format!(" --name {}", self.name)
                }
            );
        }
        file.set_len(0)?;
        write!(file, "{}", std::process::id())?;
        Ok(file)
    }

    /// Serialises `apply` and `delete`: each checks the store as a whole and then writes it.
    pub fn lock_changes(&self) -> anyhow::Result<std::fs::File> {
        let path = self.dir.join("apply.lock");
        let file = std::fs::OpenOptions::new()
            .create(true)
            .write(true)
            .truncate(false)
            .open(&path)
            .with_context(|| format!("cannot open {}", path.display()))?;
        rustix::fs::flock(&file, rustix::fs::FlockOperation::LockExclusive)
            .with_context(|| format!("cannot lock {}", path.display()))?;
        Ok(file)
    }

    /// Whether the run's directory holds what a run writes (so a sweep never deletes a
    /// directory that merely has the run's name).
    pub fn looks_like_run_dir(&self) -> bool {
        ["up.pid", "run.json", "manifests"]
            .iter()
            .any(|f| self.dir.join(f).exists())
    }

    /// The running mesh's record; a plain error when nothing is running.
    pub fn load_state(&self) -> anyhow::Result<RunState> {
        if self.supervisor().is_none() {
            bail!(
                "no local mesh {:?} is running (start one with `{} up DIR`{})",
                self.name,
                crate::invoked_as(),
                if self.name == "local" {
                    String::new()
                } else {
                    format!(" --name {}", self.name)
                }
            );
        }
        let path = self.state_file();
        let text = std::fs::read_to_string(&path)
            .with_context(|| format!("cannot read {}", path.display()))?;
        serde_json::from_str(&text).with_context(|| format!("{} is not valid", path.display()))
    }

    pub fn save_state(&self, state: &RunState) -> anyhow::Result<()> {
        let text = serde_json::to_string_pretty(state)?;
        write_atomic(&self.state_file(), text.as_bytes())
    }
}

impl RunState {
    /// The pod called `name` in `namespace`; the message lists what there is.
    pub fn pod(&self, namespace: &str, name: &str) -> anyhow::Result<&PodState> {
        self.pods
            .iter()
            .find(|p| p.namespace == namespace && p.name == name)
            .ok_or_else(|| {
                let all: Vec<(&str, &str)> = self
                    .pods
                    .iter()
                    .map(|p| (p.namespace.as_str(), p.name.as_str()))
                    .collect();
                anyhow::anyhow!("{}", missing_pod(&all, namespace, name))
            })
    }
}

/// Why `namespace/name` is not found, saying where a pod of that name is when it is in another
/// namespace (`-n` defaults to `default`, and most pods are elsewhere).
fn missing_pod(pods: &[(&str, &str)], namespace: &str, name: &str) -> String {
    let elsewhere: Vec<&str> = pods
        .iter()
        .filter(|(_, n)| *n == name)
        .map(|(ns, _)| *ns)
        .collect();
    if !elsewhere.is_empty() {
        let flags: Vec<String> = elsewhere.iter().map(|ns| format!("-n {ns}")).collect();
        return format!(
            "no pod {name:?} in namespace {namespace:?}; it is in namespace {} (add {})",
            elsewhere.join(", "),
            flags.join(" or ")
        );
    }
    let known: Vec<&str> = pods
        .iter()
        .filter(|(ns, _)| *ns == namespace)
        .map(|(_, n)| *n)
        .collect();
    if known.is_empty() {
        format!("no pod {name:?} in namespace {namespace:?} (it has no pods)")
    } else {
        format!(
            "no pod {name:?} in namespace {namespace:?} (pods there: {})",
            known.join(", ")
        )
    }
}

/// Writes through a temporary file and a rename, so readers never see half a file. The
/// temporary name is unique to the process and call, so concurrent writers do not collide.
pub fn write_atomic(path: &Path, bytes: &[u8]) -> anyhow::Result<()> {
    static N: std::sync::atomic::AtomicU32 = std::sync::atomic::AtomicU32::new(0);
    let n = N.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
    let mut name = path.file_name().unwrap_or_default().to_os_string();
    name.push(format!(".tmp.{}.{n}", std::process::id()));
    let tmp = path.with_file_name(name);
    std::fs::write(&tmp, bytes).with_context(|| format!("cannot write {}", tmp.display()))?;
    std::fs::rename(&tmp, path).with_context(|| format!("cannot write {}", path.display()))
}

pub fn now_unix_ms() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_millis() as u64)
        .unwrap_or(0)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_pod_missing_from_the_namespace_asked_says_which_namespace_has_it() {
        let pods = [("shop", "frontend-0"), ("shop", "backend-0")];
        assert_eq!(
            missing_pod(&pods, "default", "frontend-0"),
            "no pod \"frontend-0\" in namespace \"default\"; it is in namespace shop (add -n shop)"
        );
        assert_eq!(
            missing_pod(&pods, "shop", "nope"),
            "no pod \"nope\" in namespace \"shop\" (pods there: frontend-0, backend-0)"
        );
        assert_eq!(
            missing_pod(&pods, "default", "nope"),
            "no pod \"nope\" in namespace \"default\" (it has no pods)"
        );
    }

    #[test]
    fn pod_phases_are_recorded_as_the_text_status_shows() {
        let phases = [
            (PodPhase::Pending, "Pending"),
            (PodPhase::Starting, "Starting"),
            (PodPhase::Running, "Running"),
            (
                PodPhase::Failed("sinew-proxy init: exit status 1 (retrying in 2s)".into()),
                "Failed: sinew-proxy init: exit status 1 (retrying in 2s)",
            ),
            (PodPhase::Terminating, "Terminating"),
        ];
        for (phase, text) in phases {
            assert_eq!(phase.to_string(), text);
            let json = serde_json::to_string(&phase).unwrap();
            assert_eq!(json, serde_json::to_string(text).unwrap());
            assert_eq!(serde_json::from_str::<PodPhase>(&json).unwrap(), phase);
        }
        // A record that is not ours is refused, not guessed at.
        assert!(serde_json::from_str::<PodPhase>("\"Running fast\"").is_err());
        assert!(serde_json::from_str::<PodPhase>("3").is_err());
        let state: PodState =
            serde_json::from_str(r#"{"namespace": "a", "name": "b", "netns": "n", "ip": "198.18.0.2", "meshed": false, "identity": null, "uid": 1, "gid": 1, "phase": "Failed: x", "proxy": null, "proxyReadyMs": null, "networkError": null, "containers": []}"#)
                .unwrap();
        assert_eq!(state.phase, PodPhase::Failed("x".into()));
    }

    #[test]
    fn run_names_make_unambiguous_prefixes() {
        let run = Run::new(Path::new("/run/sinew"), "a-b").unwrap();
        assert_eq!(run.pod_netns("shop", "web-0"), "sinew-a-b.shop.web-0");
        assert_eq!(run.bridge_netns(), "sinew-a-b.net");
        assert!(run.pod_netns("x", "y").starts_with(&run.netns_prefix()));
        // Run "a" must never claim run "a-b"'s namespaces.
        let a = Run::new(Path::new("/run/sinew"), "a").unwrap();
        assert!(
            !run.pod_netns("shop", "web-0")
                .starts_with(&a.netns_prefix())
        );
        for bad in ["", "A", "a.b", "-a", "a-", "a/b", &"x".repeat(25)] {
            assert!(Run::new(Path::new("/x"), bad).is_err(), "{bad:?}");
        }
    }
}
