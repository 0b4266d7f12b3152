//! Rotating the mesh root without restarting a pod.
//!
//! `sinew-control-plane rotate-root` (or `sinewctl root rotate`) writes the next root material
//! into the state directory ([`request`]); the running control plane notices it ([`Rotation::watch`],
//! polling) and walks three phases, each safe to stop in:
//!
//! 1. **trust** — the bundle becomes old ∪ new, still signing under the old root; it waits until
//!    every connected proxy holds that bundle (ACKed, or named in its hello).
//! 2. **issue** — the CA signs under the new root, the control plane's serving certificate is
//!    re-issued under it, and the bundle (same roots) names the new signing root, which makes
//!    every proxy renew at once; it waits until every connected proxy's latest certificate was
//!    issued under the new root.
//! 3. **drop** — the new material becomes the stored CA (the old one archived), then the bundle
//!    becomes the new root(s) only.
//!
//! What it promises:
//! - **No step removes trust anyone still needs.** A wait that times out stops the rotation in
//!   its phase — both roots trusted — and says which proxies it waited for; `rotate-root
//!   --resume` tries again. The old root leaves the bundle only after every connected proxy holds
//!   a new-root certificate, and only after the new CA is stored (a restart must not sign under
//!   a root the mesh no longer trusts).
//! - **A restart resumes.** The next material and the phase live in `state_dir/rotation/`; a
//!   control plane that starts with them there resumes in the recorded phase.
//! - `trust-bundle.pem` in the state directory (what new proxies bootstrap from) follows every
//!   phase.

use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use serde::{Deserialize, Serialize};
use tokio::sync::watch;

use super::store::{read_if_exists, write_atomically};
use super::{Ca, CaConfig, FileRootStore, RootStore, SharedCa, TrustBundle};

/// The rotation's directory under the state directory.
pub const ROTATION_DIR: &str = "rotation";
/// Self-signed: the next root and its key.
pub const NEXT_ROOT_CERT: &str = "next-root-cert.pem";
pub const NEXT_ROOT_KEY: &str = "next-root-key.pem";
/// Plug-in: the next intermediate, key, chain and root, in Istio's layout.
pub const NEXT_PLUGIN_DIR: &str = "next-plugin-ca";
/// The phase reached (`trust` or `issue`), written before the phase acts.
pub const PHASE_FILE: &str = "phase";
/// What the operator asked (a nonce and the wait timeout), written last by [`request`].
pub const REQUEST_FILE: &str = "request.json";
/// Where replaced roots (and plug-in material) are kept.
pub const ARCHIVE_DIR: &str = "root-archive";
/// The plug-in layout's files.
pub const PLUGIN_FILES: [&str; 4] = [
    "ca-cert.pem",
    "ca-key.pem",
    "cert-chain.pem",
    "root-cert.pem",
];
/// How long each wait lasts unless the request says otherwise.
pub const DEFAULT_PHASE_TIMEOUT: Duration = Duration::from_secs(600);
/// How often the waits look at the mesh, and the watcher at the state directory.
const POLL: Duration = Duration::from_millis(500);

/// Where the running CA's material lives, which decides what "the next material" must be.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum ActiveCa {
    /// A self-signed root in the state directory (`root-cert.pem`, `root-key.pem`).
    SelfSigned,
    /// A plug-in CA directory (`--plugin-ca`).
    PlugIn(PathBuf),
}

/// A rotation phase, as `/debug/rotation` and `sinewctl status` show it.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Phase {
    /// No rotation under way.
    #[default]
    Idle,
    /// Both roots trusted, signing under the old one.
    Trust,
    /// Both roots trusted, signing under the new one.
    Issue,
    /// The last rotation finished: only the new root is trusted.
    Done,
}

/// What the rotation is doing, for `/debug/rotation`.
#[derive(Clone, Debug, Default, Serialize, PartialEq, Eq)]
#[serde(rename_all = "camelCase")]
pub struct RotationStatus {
    pub phase: Phase,
    pub old_root_sha256: Option<String>,
    pub new_root_sha256: Option<String>,
    /// Connected proxies the current phase waits for (`namespace/pod`).
    pub pending: Vec<String>,
    /// Why the rotation stopped (it stays in its phase, both roots trusted).
    pub error: Option<String>,
    /// The roots proxies are told to trust now.
    pub bundle_roots_sha256: Vec<String>,
    pub rotations_completed: u64,
}

/// The operator's request ([`REQUEST_FILE`]).
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Request {
    /// Changes with every `rotate-root`, so a stalled rotation is retried on `--resume`.
    pub nonce: String,
    pub phase_timeout_secs: u64,
}

/// What the rotation needs to know about connected proxies.
pub trait Mesh: Send + Sync {
    /// Connected proxies that do not hold trust-bundle `version`.
    fn without_bundle(&self, version: &str) -> Vec<String>;
    /// Connected proxies whose latest certificate was not issued under `root_sha256`.
    fn not_issued_under(&self, root_sha256: &str) -> Vec<String>;
}

impl Mesh for crate::server::status::Status {
    fn without_bundle(&self, version: &str) -> Vec<String> {
        crate::server::status::Status::without_bundle(self, version)
    }
    fn not_issued_under(&self, root_sha256: &str) -> Vec<String> {
        crate::server::status::Status::not_issued_under(self, root_sha256)
    }
}

/// Called once the CA signs under the new root: re-issues the serving certificate.
pub type OnSigningChange = Box<dyn Fn() -> anyhow::Result<()> + Send + Sync>;

/// Why a rotation stopped before the end.
#[derive(Debug, thiserror::Error)]
pub enum RotationError {
    #[error(
        "stopped in phase {phase:?}: {} connected prox{} did not {what} within {}s ({}); both roots stay trusted; fix them (or let them go) and run `rotate-root --resume`",
        pending.len(), if pending.len() == 1 { "y" } else { "ies" }, timeout.as_secs(), pending.join(", ")
    )]
    Timeout {
        phase: Phase,
        what: &'static str,
        pending: Vec<String>,
        timeout: Duration,
    },
    #[error("the next root material in {dir}: {reason}")]
    Material { dir: PathBuf, reason: String },
    #[error("{0}")]
    Io(String),
}

/// The rotation driver of one control plane.
pub struct Rotation {
    state_dir: PathBuf,
    active: ActiveCa,
    ca: Arc<SharedCa>,
    bundle: watch::Sender<Arc<TrustBundle>>,
    mesh: Arc<dyn Mesh>,
    on_signing_change: OnSigningChange,
    status: Arc<Mutex<RotationStatus>>,
    /// The CA signing when the rotation began: after a stop in phase issue the shared CA is
    /// already the new one, and a resume must still know the old.
    old: Mutex<Option<Arc<Ca>>>,
}

// === impl Rotation ===

impl Rotation {
    pub fn new(
        state_dir: PathBuf,
        active: ActiveCa,
        ca: Arc<SharedCa>,
        bundle: watch::Sender<Arc<TrustBundle>>,
        mesh: Arc<dyn Mesh>,
        on_signing_change: OnSigningChange,
    ) -> Self {
        Self {
            state_dir,
            active,
            ca,
            bundle,
            mesh,
            on_signing_change,
            status: Default::default(),
            old: Mutex::new(None),
        }
    }

    /// What `/debug/rotation` shows.
    pub fn status(&self) -> Arc<Mutex<RotationStatus>> {
        self.status.clone()
    }

    /// Watches the state directory: resumes a rotation found there at once, then starts (or
    /// retries) one each time a new request appears. Runs until dropped.
    pub async fn watch(self) {
        self.set_status(|s| s.bundle_roots_sha256 = self.bundle.borrow().root_sha256s());
        let mut handled: Option<Request> = None;
        let mut first = true;
        loop {
            let request = self.read_request();
            let material = self.dir().join(PHASE_FILE).exists() || self.has_next_material();
            let run = match &request {
                // A control plane that starts mid-rotation resumes it.
                Some(r) if first && material => Some(r.clone()),
                Some(r) if handled.as_ref() != Some(r) && material => Some(r.clone()),
                None if first && material => Some(Request {
                    nonce: "resumed".into(),
                    phase_timeout_secs: DEFAULT_PHASE_TIMEOUT.as_secs(),
                }),
                _ => None,
            };
            first = false;
            if let Some(request) = run {
                handled = Some(request.clone());
                match self.run(&request).await {
                    Ok(()) => {
                        tracing::info!("root rotation finished: only the new root is trusted")
                    }
                    Err(error) => {
                        tracing::warn!(%error, "root rotation stopped");
                        self.set_status(|s| s.error = Some(error.to_string()));
                    }
                }
            }
            tokio::time::sleep(POLL).await;
        }
    }

    /// Runs (or resumes) the rotation whose material is in the state directory.
    pub async fn run(&self, request: &Request) -> Result<(), RotationError> {
        let timeout = Duration::from_secs(request.phase_timeout_secs.max(1));
        let old = self
            .old
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .get_or_insert_with(|| self.ca.current())
            .clone();
        let new = Arc::new(self.load_next(old.config().clone())?);
        let (old_sha, new_sha) = (
            old.signing_root_sha256().to_string(),
            new.signing_root_sha256().to_string(),
        );
        self.set_status(|s| {
            s.old_root_sha256 = Some(old_sha.clone());
            s.new_root_sha256 = Some(new_sha.clone());
            s.error = None;
        });
        let both = TrustBundle {
            roots: union(&old.trust_bundle(), &new.trust_bundle()),
            signing_root_sha256: old_sha.clone(),
        };
        let recorded = self.read_phase();
        if old_sha == new_sha {
            // Restarted after the new CA was stored (it is what was loaded): only the drop
            // phase's tail is left.
            return self.drop_old(&new, false);
        }

        if recorded != Some(Phase::Issue) {
            // A: trust both, sign under the old.
            self.write_phase(Phase::Trust)?;
            self.set_status(|s| s.phase = Phase::Trust);
            self.publish(both.clone())?;
            tracing::info!(old = %old_sha, new = %new_sha, "root rotation: trusting both roots");
            let version = both.version();
            self.wait(
                Phase::Trust,
                "take the bundle with both roots",
                timeout,
                || self.mesh.without_bundle(&version),
            )
            .await?;
        }

        // B: sign under the new; every proxy renews.
        self.write_phase(Phase::Issue)?;
        self.set_status(|s| s.phase = Phase::Issue);
        self.ca.replace(new.clone());
        (self.on_signing_change)().map_err(|e| {
            RotationError::Io(format!("cannot re-issue the serving certificate: {e:#}"))
        })?;
        self.publish(TrustBundle {
            signing_root_sha256: new_sha.clone(),
            ..both
        })?;
        tracing::info!(new = %new_sha, "root rotation: signing under the new root");
        self.wait(Phase::Issue, "renew under the new root", timeout, || {
            self.mesh.not_issued_under(&new_sha)
        })
        .await?;

        // C: store the new CA, then stop trusting the old root.
        self.drop_old(&new, true)
    }

    /// Stores the new CA (archiving the old), publishes its roots alone, removes the rotation's
    /// files.
    fn drop_old(&self, new: &Arc<Ca>, store: bool) -> Result<(), RotationError> {
        if store {
            self.store_next()?;
        }
        self.ca.replace(new.clone());
        self.publish(TrustBundle::of(new))?;
        std::fs::remove_dir_all(self.dir()).map_err(|e| {
            RotationError::Io(format!("cannot remove {}: {e}", self.dir().display()))
        })?;
        *self.old.lock().unwrap_or_else(|p| p.into_inner()) = None;
        self.set_status(|s| {
            s.phase = Phase::Done;
            s.pending.clear();
            s.error = None;
            s.rotations_completed += 1;
        });
        Ok(())
    }

    /// Polls `pending` until it is empty or `timeout` passes.
    async fn wait(
        &self,
        phase: Phase,
        what: &'static str,
        timeout: Duration,
        pending: impl Fn() -> Vec<String>,
    ) -> Result<(), RotationError> {
        let deadline = tokio::time::Instant::now() + timeout;
        loop {
            let now = pending();
            self.set_status(|s| s.pending.clone_from(&now));
            if now.is_empty() {
                return Ok(());
            }
            if tokio::time::Instant::now() >= deadline {
                return Err(RotationError::Timeout {
                    phase,
                    what,
                    pending: now,
                    timeout,
                });
            }
            tokio::time::sleep(POLL).await;
        }
    }

    /// Publishes to every discovery stream and to `trust-bundle.pem`.
    fn publish(&self, bundle: TrustBundle) -> Result<(), RotationError> {
        let path = self.state_dir.join(crate::app::TRUST_BUNDLE_FILE);
        write_atomically(&path, bundle.pem().as_bytes(), 0o644)
            .map_err(|e| RotationError::Io(e.to_string()))?;
        self.set_status(|s| s.bundle_roots_sha256 = bundle.root_sha256s());
        self.bundle.send_replace(Arc::new(bundle));
        Ok(())
    }

    fn dir(&self) -> PathBuf {
        self.state_dir.join(ROTATION_DIR)
    }

    fn has_next_material(&self) -> bool {
        self.dir().join(NEXT_ROOT_CERT).exists() || self.dir().join(NEXT_PLUGIN_DIR).exists()
    }

    fn read_request(&self) -> Option<Request> {
        let text = std::fs::read_to_string(self.dir().join(REQUEST_FILE)).ok()?;
        serde_json::from_str(&text).ok()
    }

    fn read_phase(&self) -> Option<Phase> {
        match std::fs::read_to_string(self.dir().join(PHASE_FILE))
            .ok()?
            .trim()
        {
            "trust" => Some(Phase::Trust),
            "issue" => Some(Phase::Issue),
            _ => None,
        }
    }

    fn write_phase(&self, phase: Phase) -> Result<(), RotationError> {
        let text = match phase {
            Phase::Issue => "issue\n",
            _ => "trust\n",
        };
        write_atomically(&self.dir().join(PHASE_FILE), text.as_bytes(), 0o644)
            .map_err(|e| RotationError::Io(e.to_string()))
    }

    /// The next CA, of the same kind as the active one.
    fn load_next(&self, config: CaConfig) -> Result<Ca, RotationError> {
        let dir = self.dir();
        let bad = |reason: String| RotationError::Material {
            dir: dir.clone(),
            reason,
        };
        match &self.active {
            ActiveCa::SelfSigned => {
                let material = FileRootStore::with_names(&dir, NEXT_ROOT_CERT, NEXT_ROOT_KEY)
                    .load()
                    .map_err(|e| bad(e.to_string()))?
                    .ok_or_else(|| {
                        bad(format!(
                            "no {NEXT_ROOT_CERT}: this control plane has a self-signed root, so \
                             the next one is a self-signed root too (run rotate-root without \
                             --plugin-ca)"
                        ))
                    })?;
                Ca::from_root_material(&material, config).map_err(|e| bad(e.to_string()))
            }
            ActiveCa::PlugIn(_) => {
                let next = dir.join(NEXT_PLUGIN_DIR);
                let files = read_plugin(&next).map_err(|e| {
                    bad(format!(
                        "{e}; this control plane has a plug-in CA, so the next one is a plug-in \
                         CA too (run rotate-root --plugin-ca DIR)"
                    ))
                })?;
                let [cert, key, chain, root] = files;
                Ca::plug_in(&cert, &key, &chain, &root, config).map_err(|e| bad(e.to_string()))
            }
        }
    }

    /// Makes the next material the one a restart loads, keeping the old in the archive.
    fn store_next(&self) -> Result<(), RotationError> {
        let io = |e: String| RotationError::Io(e);
        let stamp = crate::server::status::unix_now();
        let archive = self.state_dir.join(ARCHIVE_DIR).join(stamp.to_string());
        std::fs::create_dir_all(&archive)
            .map_err(|e| io(format!("cannot create {}: {e}", archive.display())))?;
        match &self.active {
            ActiveCa::SelfSigned => {
                let store = FileRootStore::new(&self.state_dir);
                if let Some(old) = store.load().map_err(|e| io(e.to_string()))? {
                    FileRootStore::new(&archive)
                        .store(&old)
                        .map_err(|e| io(e.to_string()))?;
                }
                let next = FileRootStore::with_names(self.dir(), NEXT_ROOT_CERT, NEXT_ROOT_KEY)
                    .load()
                    .map_err(|e| io(e.to_string()))?
                    .ok_or_else(|| io("the next root vanished from the state directory".into()))?;
                store.store(&next).map_err(|e| io(e.to_string()))
            }
            ActiveCa::PlugIn(dir) => {
                let next = read_plugin(&self.dir().join(NEXT_PLUGIN_DIR)).map_err(io)?;
                for name in PLUGIN_FILES {
                    if let Some(old) =
                        read_if_exists(&dir.join(name)).map_err(|e| io(e.to_string()))?
                    {
                        write_atomically(&archive.join(name), old.as_bytes(), 0o600)
                            .map_err(|e| io(e.to_string()))?;
                    }
                }
                // Key and chain before the certificate; a crash in between is caught at the
                // next start by the plug-in checks (key does not match), never a silent mix.
                for (name, text) in PLUGIN_FILES.iter().zip(next.iter()) {
                    let mode = if *name == "ca-key.pem" { 0o600 } else { 0o644 };
                    write_atomically(&dir.join(name), text.as_bytes(), mode)
                        .map_err(|e| io(format!("{e} (is the plug-in CA directory writable?)")))?;
                }
                Ok(())
            }
        }
    }

    fn set_status(&self, f: impl FnOnce(&mut RotationStatus)) {
        f(&mut self.status.lock().unwrap_or_else(|p| p.into_inner()));
    }
}

fn read_plugin(dir: &Path) -> Result<[String; 4], String> {
    let read = |name: &str| {
        std::fs::read_to_string(dir.join(name))
            .map_err(|e| format!("cannot read {}: {e}", dir.join(name).display()))
    };
    Ok([
        read(PLUGIN_FILES[0])?,
        read(PLUGIN_FILES[1])?,
        read(PLUGIN_FILES[2])?,
        read(PLUGIN_FILES[3])?,
    ])
}

/// `a` then the roots of `b` not in `a`.
fn union(a: &[String], b: &[String]) -> Vec<String> {
    let mut out = a.to_vec();
    out.extend(b.iter().filter(|r| !a.contains(r)).cloned());
    out
}

/// What `rotate-root` does: checks and writes the next root material (generated when the CA is
/// self-signed, copied from `next_plugin` for a plug-in CA) and the request the running control
/// plane acts on. With `resume`, only a new request: a stalled rotation is tried again.
/// Returns what to tell the operator.
pub fn request(
    state_dir: &Path,
    next_plugin: Option<&Path>,
    config: CaConfig,
    phase_timeout: Duration,
    resume: bool,
) -> anyhow::Result<String> {
    use anyhow::Context as _;
    let dir = state_dir.join(ROTATION_DIR);
    let under_way = dir.join(PHASE_FILE).exists()
        || dir.join(NEXT_ROOT_CERT).exists()
        || dir.join(NEXT_PLUGIN_DIR).exists();
    let message = if resume {
        anyhow::ensure!(
            under_way,
            "no root rotation under way in {}; start one without --resume",
            state_dir.display()
        );
        "asked the control plane to resume the root rotation".to_string()
    } else {
        anyhow::ensure!(
            !under_way,
            "a root rotation is already under way in {} (see the control plane's /debug/rotation); \
             `rotate-root --resume` retries one that stopped",
            state_dir.display()
        );
        anyhow::ensure!(
            state_dir.join(crate::app::TRUST_BUNDLE_FILE).exists(),
            "{} holds no {}: is it the state directory of a control plane that has run?",
            state_dir.display(),
            crate::app::TRUST_BUNDLE_FILE
        );
        std::fs::create_dir_all(&dir)
            .with_context(|| format!("cannot create {}", dir.display()))?;
        match next_plugin {
            None => {
                let material = super::generate_root(&config.trust_domain)?;
                let ca = Ca::from_root_material(&material, config)?;
                FileRootStore::with_names(&dir, NEXT_ROOT_CERT, NEXT_ROOT_KEY).store(&material)?;
                format!(
                    "generated a new self-signed root (sha256 {}); the control plane rotates to it",
                    ca.signing_root_sha256()
                )
            }
            Some(src) => {
                let [cert, key, chain, root] = read_plugin(src).map_err(anyhow::Error::msg)?;
                let ca = Ca::plug_in(&cert, &key, &chain, &root, config)
                    .with_context(|| format!("--plugin-ca {}", src.display()))?;
                let next = dir.join(NEXT_PLUGIN_DIR);
                std::fs::create_dir_all(&next)?;
                for (name, text) in PLUGIN_FILES.iter().zip([&cert, &key, &chain, &root]) {
                    let mode = if *name == "ca-key.pem" { 0o600 } else { 0o644 };
                    write_atomically(&next.join(name), text.as_bytes(), mode)?;
                }
                format!(
                    "copied the next plug-in CA (root sha256 {}); the control plane rotates to it",
                    ca.signing_root_sha256()
                )
            }
        }
    };
    let request = Request {
        nonce: {
            // Unique per call, also twice within one nanosecond of one process.
            static CALLS: std::sync::atomic::AtomicU64 = std::sync::atomic::AtomicU64::new(0);
            let nanos = std::time::SystemTime::now()
                .duration_since(std::time::UNIX_EPOCH)
                .map_or(0, |d| d.as_nanos());
            let n = CALLS.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
            format!("{nanos}-{}-{n}", std::process::id())
        },
        phase_timeout_secs: phase_timeout.as_secs().max(1),
    };
    write_atomically(
        &dir.join(REQUEST_FILE),
        serde_json::to_string(&request)?.as_bytes(),
        0o644,
    )?;
    Ok(message)
}

impl std::fmt::Debug for Rotation {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Rotation")
            .field("state_dir", &self.state_dir)
            .field("active", &self.active)
            .finish_non_exhaustive()
    }
}

mod metrics;

#[cfg(test)]
mod tests;
