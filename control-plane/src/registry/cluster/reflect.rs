//! One reflector per kind: kube-rs's watcher (list, then watch from the list's resourceVersion,
//! re-list after `410 Gone`, exponential backoff on errors) feeding a [`Store`], and a note to
//! the assembler after every change. Custom kinds run only while their CRD is installed.
//!
//! The backoff grows while attempts keep failing and starts again only after progress (a list
//! completed, an event received): kube-runtime's `default_backoff()` resets on *any* `Ok` item,
//! and the watcher yields `Ok(Event::Init)` before every list attempt, so with it a failing list
//! was retried every 0.8–1.6 s forever instead of backing off to 30 s ([`ProgressBackoff`]).

use std::fmt::Debug;
use std::hash::Hash;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

use futures_util::{Stream, StreamExt as _};
use k8s_openapi::apiextensions_apiserver::pkg::apis::apiextensions::v1::CustomResourceDefinition;
use kube::api::{Api, DynamicObject, ListParams};
use kube::core::PartialObjectMeta;
use kube::runtime::WatchStreamExt as _;
use kube::runtime::reflector::{self, Store};
use kube::runtime::utils::Backoff;
use kube::runtime::watcher::{self, Event};
use kube::{Client, Resource};
use serde::de::DeserializeOwned;
use tokio::sync::{mpsc, watch};

use super::kinds::{CUSTOM_KINDS, CustomKind, KindId};
use super::metrics::SourceMetrics;

/// What a reflector tells the assembler.
#[derive(Debug)]
pub(super) enum Note {
    /// The kind's store changed.
    Changed(KindId),
    /// The kind's (re-)list completed: its store holds the whole kind.
    Synced(KindId),
    /// A custom kind's store (and the version it watches), now that its CRD is installed
    /// (`Some`), or gone with it (`None`).
    CustomStore(CustomKind, Option<CustomStore>),
    /// Which of our CRDs are installed (in [`CustomKind::ALL`]'s order), once the CRD list has
    /// completed, and after each change of it.
    Crds([bool; CUSTOM_KINDS]),
}

/// A custom kind's store and the served version its reflector watches (status is written to
/// that version's `/status`).
#[derive(Debug, Clone)]
pub(super) struct CustomStore {
    pub resource: kube::core::ApiResource,
    pub store: Store<DynamicObject>,
}

/// Where reflectors send their notes (unbounded: a note is a few bytes and the assembler
/// drains them all at each step).
pub(super) type Notes = mpsc::UnboundedSender<Note>;

/// Watches `api` into `writer` until the assembler goes away. `prune` drops what the registry
/// never reads before the object is stored (a Pod's `managedFields` alone can be most of it).
pub(super) async fn run<K>(
    kind: KindId,
    api: Api<K>,
    config: watcher::Config,
    writer: reflector::store::Writer<K>,
    prune: fn(&mut K),
    notes: Notes,
    metrics: Arc<SourceMetrics>,
) where
    K: Resource + Clone + DeserializeOwned + Debug + Send + Sync + 'static,
    K::DynamicType: Eq + Hash + Clone,
{
    let (backoff, progress) = ProgressBackoff::new();
    let events = watcher::watcher(api, config)
        .backoff(backoff)
        .modify(prune)
        .reflect(writer);
    forward(kind, events, &progress, &notes, &metrics).await;
}

/// kube-runtime's default backoff (0.8 s doubling to 30 s, with jitter, reset after 120 s
/// without a retry), reset only when [`Progress`] says the watch made progress.
pub(super) struct ProgressBackoff {
    inner: watcher::DefaultBackoff,
    progress: Progress,
}

/// Set by whoever reads the watcher's events when one shows progress.
#[derive(Clone, Default)]
pub(super) struct Progress(Arc<AtomicBool>);

impl ProgressBackoff {
    pub(super) fn new() -> (Self, Progress) {
        let progress = Progress::default();
        (
            Self {
                inner: watcher::DefaultBackoff::default(),
                progress: progress.clone(),
            },
            progress,
        )
    }
}

impl Iterator for ProgressBackoff {
    type Item = Duration;

    fn next(&mut self) -> Option<Duration> {
        if self.progress.0.swap(false, Ordering::Relaxed) {
            self.inner.reset();
        }
        self.inner.next()
    }
}

impl Backoff for ProgressBackoff {
    /// Called by the stream for every `Ok` item, `Event::Init` included: ignored (see the module
    /// doc); [`Progress`] decides instead.
    fn reset(&mut self) {}
}

impl Progress {
    fn made(&self) {
        self.0.store(true, Ordering::Relaxed);
    }
}

/// Passes each event of a reflected stream on as a [`Note`]; ends when the assembler is gone.
async fn forward<K>(
    kind: KindId,
    events: impl Stream<Item = Result<Event<K>, watcher::Error>>,
    progress: &Progress,
    notes: &Notes,
    metrics: &SourceMetrics,
) {
    let mut events = std::pin::pin!(events);
    while let Some(event) = events.next().await {
        let note = match event {
            Ok(Event::Apply(_) | Event::Delete(_)) => {
                progress.made();
                Note::Changed(kind)
            }
            Ok(Event::InitDone) => {
                progress.made();
                metrics.listed(kind);
                Note::Synced(kind)
            }
            Ok(Event::Init | Event::InitApply(_)) => continue,
            Err(error) => {
                metrics.watch_error(kind, &error);
                tracing::warn!(%kind, %error, "watch failed; retrying with backoff");
                continue;
            }
        };
        if notes.send(note).is_err() {
            return;
        }
    }
}

/// Keeps one `watch::Sender<bool>` per custom kind saying whether its CRD is installed, from a
/// metadata-only watch of CustomResourceDefinitions (their specs are large and not needed).
pub(super) async fn watch_crds(
    client: Client,
    present: [watch::Sender<bool>; CUSTOM_KINDS],
    notes: Notes,
    metrics: Arc<SourceMetrics>,
) {
    let api: Api<PartialObjectMeta<CustomResourceDefinition>> = Api::all(client);
    let (store, writer) = reflector::store();
    let (backoff, progress) = ProgressBackoff::new();
    let events = watcher::watcher(api, watcher::Config::default())
        .backoff(backoff)
        .reflect(writer);
    let mut events = std::pin::pin!(events);
    let mut synced = false;
    while let Some(event) = events.next().await {
        match event {
            Ok(Event::InitDone) => {
                progress.made();
                metrics.listed(KindId::CustomResourceDefinition);
                synced = true;
            }
            Ok(Event::Apply(_) | Event::Delete(_)) => progress.made(),
            Ok(Event::Init | Event::InitApply(_)) => continue,
            Err(error) => {
                metrics.watch_error(KindId::CustomResourceDefinition, &error);
                tracing::warn!(%error, "watching CustomResourceDefinitions failed; retrying");
                continue;
            }
        }
        if !synced {
            continue;
        }
        let installed = CustomKind::ALL.map(|kind| {
            store
                .state()
                .iter()
                .any(|crd| crd.metadata.name.as_deref() == Some(kind.crd_name()))
        });
        for (tx, installed) in present.iter().zip(installed) {
            tx.send_if_modified(|p| std::mem::replace(p, installed) != installed);
        }
        if notes.send(Note::Crds(installed)).is_err() {
            return;
        }
    }
}

/// Pauses between attempts to find a custom kind's served version (doubling).
const FIRST_RETRY: Duration = Duration::from_millis(800);
const MAX_RETRY: Duration = Duration::from_secs(30);

/// Runs a custom kind's reflector whenever its CRD is installed: picks the first version the
/// API server lists, hands the assembler a fresh store, and drops it when the CRD goes.
pub(super) async fn run_custom(
    kind: CustomKind,
    client: Client,
    mut present: watch::Receiver<bool>,
    notes: Notes,
    metrics: Arc<SourceMetrics>,
) {
    let mut retry = FIRST_RETRY;
    loop {
        if present.wait_for(|p| *p).await.is_err() {
            return;
        }
        let Some(resource) = served_version(kind, &client, &metrics).await else {
            // Installed but not served yet (being established), or the list failed: try again
            // after a pause, or at once when the CRD list changes.
            tokio::select! {
                changed = present.changed() => if changed.is_err() { return },
                () = tokio::time::sleep(retry) => {}
            }
            retry = (retry * 2).min(MAX_RETRY);
            continue;
        };
        retry = FIRST_RETRY;
        tracing::info!(kind = %KindId::Custom(kind), version = %resource.version, "watching");
        let api = Api::<DynamicObject>::all_with(client.clone(), &resource);
        let writer = reflector::store::Writer::new(resource.clone());
        let store = CustomStore {
            resource,
            store: writer.as_reader(),
        };
        if notes.send(Note::CustomStore(kind, Some(store))).is_err() {
            return;
        }
        let (backoff, progress) = ProgressBackoff::new();
        let events = watcher::watcher(api, watcher::Config::default())
            .backoff(backoff)
            .modify(prune_custom)
            .reflect(writer);
        tokio::select! {
            () = forward(KindId::Custom(kind), events, &progress, &notes, &metrics) => return,
            _ = present.wait_for(|p| !*p) => {}
        }
        tracing::info!(kind = %KindId::Custom(kind), "CRD removed; the kind is now empty");
        if notes.send(Note::CustomStore(kind, None)).is_err() {
            return;
        }
    }
}

/// The first of the kind's versions the API server lists, or `None` if none is served yet.
async fn served_version(
    kind: CustomKind,
    client: &Client,
    metrics: &SourceMetrics,
) -> Option<kube::core::ApiResource> {
    for version in kind.versions() {
        let resource = kind.api_resource(version);
        let api = Api::<DynamicObject>::all_with(client.clone(), &resource);
        match api.list(&ListParams::default().limit(1)).await {
            Ok(_) => return Some(resource),
            Err(kube::Error::Api(status)) if status.code == 404 => continue,
            Err(error) => {
                metrics.watch_error(KindId::Custom(kind), &error);
                tracing::warn!(kind = %KindId::Custom(kind), %version, %error, "cannot list");
            }
        }
    }
    None
}

/// Custom objects keep everything but `managedFields`: the spec is what is compiled, and the
/// status is where the control plane's own conditions are compared.
fn prune_custom(object: &mut DynamicObject) {
    object.metadata.managed_fields = None;
}
