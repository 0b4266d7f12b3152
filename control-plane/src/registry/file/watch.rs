//! Keeping the snapshot current: poll the manifest directory (and the assignments file), wait for
//! a burst of edits to settle, re-read, and publish the new snapshot — or keep the last good one
//! and say why.
//!
//! Polling compares each file's size and modification time. Timestamps can be coarse (or an
//! editor can rewrite a file within one tick keeping its size), so a file modified within the
//! last couple of seconds is also compared by a hash of its contents — git's "racily clean"
//! problem and its answer. Older files cost one `stat` per poll.

use std::collections::BTreeMap;
use std::hash::{DefaultHasher, Hash, Hasher};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, SystemTime};

use tokio::sync::watch;
use tokio::time::{Instant, MissedTickBehavior};

use crate::registry::assignments::Assignments;
use crate::registry::debounce::{Debounce, Debouncer};
use crate::registry::error::RegistryError;
use crate::registry::file;
use crate::registry::model::{self, Acceptance, Snapshot};

/// Local mode's registry: a directory of manifests, read once or watched.
#[derive(Debug)]
pub struct FileRegistry;

/// The running registry's status, and the way to hand it addresses. Cheap to clone.
#[derive(Debug, Clone)]
pub struct RegistryHandle {
    shared: Arc<Shared>,
    assignments: Arc<watch::Sender<Assignments>>,
}

#[derive(Debug, Default)]
struct Shared {
    generation: AtomicU64,
    reloads: AtomicU64,
    last_error: Mutex<Option<String>>,
}

// === impl FileRegistry ===

impl FileRegistry {
    /// Reads and validates `dir` once: generation 1, no addresses assigned.
    pub fn load(dir: &Path) -> Result<Snapshot, RegistryError> {
        load_manifests(dir, None)
    }

    /// Reads `dir` and overlays the addresses from `assignments_file` (if given; a missing file
    /// assigns nothing). What `spawn` would publish first; for one-shot tools like `status`.
    pub fn load_with_assignments(
        dir: &Path,
        assignments_file: Option<&Path>,
    ) -> Result<Snapshot, RegistryError> {
        let base = load_manifests(dir, assignments_file)?;
        let assignments = match assignments_file {
            Some(path) => Assignments::read_file(path)?,
            None => Assignments::default(),
        };
        Ok(base.with_assignments(&assignments))
    }

    /// Loads `dir` (failing loudly if the first load is invalid: a control plane must not start
    /// on config it cannot read) and watches it, and `assignments_file` if given, in a
    /// background task. The receiver always holds the latest good snapshot; the task ends when
    /// every receiver is dropped. Must be called within a Tokio runtime.
    pub async fn spawn(
        dir: PathBuf,
        assignments_file: Option<PathBuf>,
        debounce: Debounce,
    ) -> Result<(watch::Receiver<Arc<Snapshot>>, RegistryHandle), RegistryError> {
        let initial = {
            let dir = dir.clone();
            let assignments_file = assignments_file.clone();
            blocking(move || {
                // Fingerprint before reading, so an edit made during the read is seen as a change.
                let manifests_fp = scan_manifests(&dir, assignments_file.as_deref());
                let assignments_fp = scan_assignments(assignments_file.as_deref());
                let base = load_manifests(&dir, assignments_file.as_deref())?;
                let file_assignments = match &assignments_file {
                    Some(path) => Assignments::read_file(path)?,
                    None => Assignments::default(),
                };
                Ok::<_, RegistryError>((manifests_fp, assignments_fp, base, file_assignments))
            })
            .await
            .map_err(RegistryError::Task)??
        };
        let (manifests_fp, assignments_fp, base, file_assignments) = initial;

        let first = base.with_assignments(&file_assignments);
        log_warnings(&first, None);
        tracing::info!(
            dir = %dir.display(),
            generation = first.generation(),
            services = first.services().len(),
            pods = first.pods().len(),
            "registry: loaded"
        );
        let shared = Arc::new(Shared::default());
        shared
            .generation
            .store(first.generation(), Ordering::Relaxed);
        let (tx, rx) = watch::channel(Arc::new(first));
        let (assignments_tx, api_rx) = watch::channel(Assignments::default());
        let worker = Worker {
            dir,
            assignments_file,
            debounce,
            tx,
            shared: shared.clone(),
            api_rx,
            base: Arc::new(base),
            file_assignments,
            manifests_fp,
            assignments_fp,
            manifest_error: None,
            assignments_error: None,
        };
        tokio::spawn(worker.run());
        let handle = RegistryHandle {
            shared,
            assignments: Arc::new(assignments_tx),
        };
        Ok((rx, handle))
    }
}

fn load_manifests(dir: &Path, exclude: Option<&Path>) -> Result<Snapshot, RegistryError> {
    model::build(file::parse_dir(dir, exclude)?, Acceptance::AllOrNothing)
}

// === impl RegistryHandle ===

impl RegistryHandle {
    /// The generation of the snapshot currently published.
    pub fn generation(&self) -> u64 {
        self.shared.generation.load(Ordering::Relaxed)
    }

    /// Why the files on disk are not in force, if they are not: the last re-read failed and the
    /// previous snapshot is still published. `None` once a re-read succeeds.
    pub fn last_error(&self) -> Option<String> {
        self.shared
            .last_error
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
            .clone()
    }

    /// How many re-reads have run since start (including ones that changed nothing or failed).
    pub fn reloads(&self) -> u64 {
        self.shared.reloads.load(Ordering::Relaxed)
    }

    /// Hands over addresses from an in-process runner. Replaces the previous in-process set;
    /// its entries override the assignments file's for the same object. Published after the
    /// usual debounce.
    pub fn set_assignments(&self, assignments: Assignments) {
        self.assignments.send_replace(assignments);
    }
}

// === the worker ===

/// What a file looked like at the last poll.
#[derive(Debug, Clone, PartialEq, Eq)]
struct Stamp {
    len: u64,
    modified: Option<SystemTime>,
    /// Content hash, only for recently modified files (see the module docs).
    recent_hash: Option<u64>,
}

/// Every file's stamp, or why the directory could not be listed (so that a change in *that*
/// is also noticed).
type Fingerprint = Result<BTreeMap<PathBuf, Result<Stamp, String>>, String>;

/// A file modified within this window may change again without its mtime or size changing.
const RACY_WINDOW: Duration = Duration::from_secs(2);

fn stamp(path: &Path) -> Result<Stamp, String> {
    let meta = std::fs::metadata(path).map_err(|e| e.to_string())?;
    let modified = meta.modified().ok();
    let recent = modified.is_none_or(|m| {
        SystemTime::now()
            .duration_since(m)
            .map_or(true, |age| age < RACY_WINDOW)
    });
    let recent_hash = if recent {
        let bytes = std::fs::read(path).map_err(|e| e.to_string())?;
        let mut h = DefaultHasher::new();
        bytes.hash(&mut h);
        Some(h.finish())
    } else {
        None
    };
    Ok(Stamp {
        len: meta.len(),
        modified,
        recent_hash,
    })
}

fn scan_manifests(dir: &Path, exclude: Option<&Path>) -> Fingerprint {
    let files = file::manifest_files(dir, exclude).map_err(|e| e.to_string())?;
    Ok(files
        .into_iter()
        .map(|f| {
            let s = stamp(&f);
            (f, s)
        })
        .collect())
}

fn scan_assignments(path: Option<&Path>) -> Fingerprint {
    let mut out = BTreeMap::new();
    if let Some(path) = path {
        out.insert(path.to_path_buf(), stamp(path));
    }
    Ok(out)
}

/// Runs blocking file work off the async threads.
async fn blocking<T: Send + 'static>(f: impl FnOnce() -> T + Send + 'static) -> Result<T, String> {
    tokio::task::spawn_blocking(f)
        .await
        .map_err(|e| format!("file reader task failed: {e}"))
}

/// What changed since the last re-read.
#[derive(Debug, Default, Clone, Copy)]
struct Dirty {
    manifests: bool,
    assignments_file: bool,
}

enum Wake {
    Closed,
    Tick,
    Api(bool),
}

struct Worker {
    dir: PathBuf,
    assignments_file: Option<PathBuf>,
    debounce: Debounce,
    tx: watch::Sender<Arc<Snapshot>>,
    shared: Arc<Shared>,
    api_rx: watch::Receiver<Assignments>,
    /// The last good manifests, without addresses.
    base: Arc<Snapshot>,
    /// The last good assignments file.
    file_assignments: Assignments,
    manifests_fp: Fingerprint,
    assignments_fp: Fingerprint,
    manifest_error: Option<String>,
    assignments_error: Option<String>,
}

impl Worker {
    async fn run(mut self) {
        let mut ticker = tokio::time::interval(self.debounce.poll_interval);
        // After a slow scan, poll again one interval later rather than in a catch-up burst.
        ticker.set_missed_tick_behavior(MissedTickBehavior::Delay);
        let mut debouncer = Debouncer::new(self.debounce);
        let mut dirty = Dirty::default();
        let mut api_open = true;
        loop {
            let wake = tokio::select! {
                () = self.tx.closed() => Wake::Closed,
                changed = self.api_rx.changed(), if api_open => Wake::Api(changed.is_ok()),
                _ = ticker.tick() => Wake::Tick,
            };
            match wake {
                Wake::Closed => {
                    tracing::debug!(dir = %self.dir.display(), "registry: no subscribers left; stopping");
                    return;
                }
                // The handle is gone: no more in-process assignments, keep the last ones.
                Wake::Api(false) => api_open = false,
                Wake::Api(true) => debouncer.note(Instant::now()),
                Wake::Tick => {
                    let (dir, af) = (self.dir.clone(), self.assignments_file.clone());
                    let scanned = blocking(move || {
                        (
                            scan_manifests(&dir, af.as_deref()),
                            scan_assignments(af.as_deref()),
                        )
                    })
                    .await;
                    let (manifests_fp, assignments_fp) = match scanned {
                        Ok(fps) => fps,
                        Err(e) => {
                            tracing::warn!("registry: {e}");
                            continue;
                        }
                    };
                    if manifests_fp != self.manifests_fp {
                        self.manifests_fp = manifests_fp;
                        dirty.manifests = true;
                        debouncer.note(Instant::now());
                    }
                    if assignments_fp != self.assignments_fp {
                        self.assignments_fp = assignments_fp;
                        dirty.assignments_file = true;
                        debouncer.note(Instant::now());
                    }
                }
            }
            if debouncer.due(Instant::now()) {
                debouncer.reset();
                self.reload(std::mem::take(&mut dirty)).await;
            }
        }
    }

    /// Re-reads what changed, and publishes if the result differs from what is published.
    async fn reload(&mut self, dirty: Dirty) {
        self.shared.reloads.fetch_add(1, Ordering::Relaxed);
        let (dir, af) = (self.dir.clone(), self.assignments_file.clone());
        let read = blocking(move || {
            let manifests = dirty.manifests.then(|| load_manifests(&dir, af.as_deref()));
            let assignments = match &af {
                Some(path) if dirty.assignments_file => Some(Assignments::read_file(path)),
                _ => None,
            };
            (manifests, assignments)
        })
        .await;
        match read {
            Ok((manifests, assignments)) => {
                match manifests {
                    Some(Ok(base)) => {
                        self.base = Arc::new(base);
                        self.manifest_error = None;
                    }
                    Some(Err(e)) => self.manifest_error = Some(e.to_string()),
                    None => {}
                }
                match assignments {
                    Some(Ok(a)) => {
                        self.file_assignments = a;
                        self.assignments_error = None;
                    }
                    Some(Err(e)) => self.assignments_error = Some(e.to_string()),
                    None => {}
                }
            }
            Err(e) => self.manifest_error = Some(e),
        }

        let effective = self
            .file_assignments
            .overlaid_with(&self.api_rx.borrow_and_update());
        let mut next = self.base.with_assignments(&effective);
        let current = self.tx.borrow().clone();
        if !next.same_content(&current) {
            next.set_generation(current.generation() + 1);
            log_warnings(&next, Some(&current));
            tracing::info!(
                generation = next.generation(),
                services = next.services().len(),
                pods = next.pods().len(),
                "registry: published"
            );
            self.shared
                .generation
                .store(next.generation(), Ordering::Relaxed);
            self.tx.send_replace(Arc::new(next));
        }
        self.record_error();
    }

    fn record_error(&self) {
        let error = match (&self.manifest_error, &self.assignments_error) {
            (None, None) => None,
            (Some(e), None) | (None, Some(e)) => Some(e.clone()),
            (Some(m), Some(a)) => Some(format!("{m}\n{a}")),
        };
        let mut last = self
            .shared
            .last_error
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner());
        match (&*last, &error) {
            (_, Some(e)) => tracing::warn!(
                "registry: {e}\nkeeping the last good config (generation {})",
                self.shared.generation.load(Ordering::Relaxed)
            ),
            (Some(_), None) => tracing::info!("registry: manifests are valid again"),
            (None, None) => {}
        }
        *last = error;
    }
}

/// Logs the warnings that are new since `previous`, so an unchanged warning is said once.
fn log_warnings(next: &Snapshot, previous: Option<&Snapshot>) {
    for w in next.warnings() {
        if previous.is_none_or(|p| !p.warnings().contains(w)) {
            tracing::warn!("registry: {w}");
        }
    }
}

#[cfg(test)]
mod tests;
