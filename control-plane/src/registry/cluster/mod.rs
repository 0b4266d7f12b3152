//! The Kubernetes source: the registry's second source of snapshots, beside the file source.
//! kube-rs reflectors keep a store per kind; after a burst of changes the stores are assembled
//! into a [`Snapshot`] with the same decoding and checks as local mode's YAML, and published.
//!
//! # What is watched
//!
//! | kind | why |
//! |---|---|
//! | `Namespace` | labels (the injection label) |
//! | `ServiceAccount` | identities that exist |
//! | `Service` | ports, selectors, cluster IPs |
//! | `EndpointSlice` (`discovery.k8s.io/v1`) | a Service's endpoints, with their `ready`, `serving` and `terminating` conditions; a Service without slices gets its endpoints from the Pods its selector picks |
//! | `Pod` | labels, service account, IP, whether the sidecar is injected |
//! | `CustomResourceDefinition` (metadata only) | which of the kinds below exist |
//! | `DestinationRule`, `VirtualService` of `networking.istio.io` and `sinew.dev` | traffic policy, one served version each (`v1`, else `v1beta1`, else `v1alpha3`) |
//! | `Telemetry` of `telemetry.istio.io` | tracing sampling and access logging (`v1`, else `v1alpha1`) |
//!
//! # What is promised
//!
//! - Nothing is published until every built-in kind and every installed custom kind has been
//!   listed once: a partial first snapshot would tell every proxy that endpoints vanished.
//! - A missing CRD (Istio not installed) is not an error: the kind is empty, and is watched as
//!   soon as its CRD appears (and emptied when it is deleted).
//! - Watch errors back off (0.8 s doubling to 30 s with jitter, kube-rs's default strategy,
//!   starting again from 0.8 s only after a list or an event got through) and re-list; after a
//!   re-list the store is swapped whole, so objects deleted during an outage disappear.
//! - Bursts are debounced ([`Debounce`]'s `quiet` and `max_delay`): one registry generation per
//!   batch, and none at all when the batch changed nothing the registry reads (a re-list after
//!   a restart publishes nothing new, so no proxy is sent anything).
//! - An invalid object is dropped, not the snapshot: a DestinationRule or VirtualService that
//!   fails validation keeps its last accepted spec in force (if it had one) and is listed in
//!   [`Snapshot::rejected`](super::Snapshot); everything else still applies.
//! - After a batch that changed a DestinationRule or VirtualService (its status included) or a
//!   verdict on one, a [`PolicyView`] goes to [`KubeSourceHandle::policy`]'s receivers: what the
//!   status writer ([`crate::cluster::status`]) compares with. Pod and endpoint churn sends none.

mod assemble;
mod kinds;
mod metrics;
mod reflect;
#[cfg(test)]
mod tests;

use std::sync::Arc;
use std::time::Duration;

use k8s_openapi::api::core::v1::{Namespace, Pod, Service, ServiceAccount};
use k8s_openapi::api::discovery::v1::EndpointSlice;
use kube::Client;
use kube::api::Api;
use kube::runtime::{reflector, watcher};
use tokio::sync::{mpsc, watch};
use tokio::time::Instant;

pub use self::assemble::{PolicyObject, Refused};
pub use self::kinds::{CUSTOM_KINDS, CustomKind, KindId};
pub use self::metrics::{KindCounters, SourceMetrics};

use self::assemble::{Assembler, Stores};
use self::reflect::Note;
use super::Debounce;
use super::crosscheck::ObjectWarning;
use super::model::Snapshot;

/// What the registry made of the cluster's DestinationRules and VirtualServices after a batch:
/// what a status writer needs. Sent after every batch (even one that changed no snapshot: a
/// status-only change of an object, or a new invalid version kept out, is in it).
#[derive(Debug, Clone, Default)]
pub struct PolicyView {
    /// Every custom object in the stores, status included.
    pub objects: Vec<PolicyObject>,
    /// The objects left out (or kept at their last accepted version), and why.
    pub refused: Vec<Refused>,
    /// Cross-object warnings, by the object they are about.
    pub warnings: Vec<ObjectWarning>,
}

/// How the Kubernetes source batches and waits.
#[derive(Debug, Clone)]
pub struct KubeSourceOptions {
    /// Only `quiet` and `max_delay` apply (nothing is polled).
    pub debounce: Debounce,
    /// Start-up fails, naming the kinds not listed yet, after this long.
    pub sync_timeout: Duration,
}

impl Default for KubeSourceOptions {
    fn default() -> Self {
        Self {
            debounce: Debounce {
                poll_interval: Duration::ZERO,
                quiet: Duration::from_millis(30),
                max_delay: Duration::from_millis(150),
            },
            sync_timeout: Duration::from_secs(60),
        }
    }
}

/// The running source's state, for monitoring. Cheap to clone.
#[derive(Debug, Clone)]
pub struct KubeSourceHandle {
    metrics: Arc<SourceMetrics>,
    generation: watch::Receiver<Arc<Snapshot>>,
    policy: watch::Receiver<Arc<PolicyView>>,
}

// === impl KubeSourceHandle ===

impl KubeSourceHandle {
    pub fn metrics(&self) -> &SourceMetrics {
        &self.metrics
    }

    /// The last watch error of a kind that has not been listed since, if any.
    pub fn last_error(&self) -> Option<String> {
        self.metrics.last_error()
    }

    pub fn generation(&self) -> u64 {
        self.generation.borrow().generation()
    }

    /// The objects the current snapshot leaves out (or keeps at an earlier version), and why.
    pub fn rejected(&self) -> Vec<Refused> {
        self.policy.borrow().refused.clone()
    }

    /// The DestinationRules and VirtualServices and the registry's verdict on each, updated
    /// after every batch: the input of [`crate::cluster::status::spawn`].
    pub fn policy(&self) -> watch::Receiver<Arc<PolicyView>> {
        self.policy.clone()
    }
}

/// Starts every reflector, waits until the first snapshot can be assembled (every built-in kind
/// listed, the CRD list done and every installed custom kind listed) and returns it in a watch
/// channel that later batches update. Fails after `sync_timeout`, naming what is missing.
pub async fn spawn(
    client: Client,
    options: KubeSourceOptions,
) -> anyhow::Result<(watch::Receiver<Arc<Snapshot>>, KubeSourceHandle)> {
    let metrics = Arc::new(SourceMetrics::default());
    let (notes, mut inbox) = mpsc::unbounded_channel();
    let stores = start_builtin(&client, &notes, &metrics);
    let present = CustomKind::ALL.map(|_| watch::channel(false));
    let (senders, receivers): (Vec<_>, Vec<_>) = present.into_iter().unzip();
    for (kind, present) in CustomKind::ALL.into_iter().zip(receivers) {
        tokio::spawn(reflect::run_custom(
            kind,
            client.clone(),
            present,
            notes.clone(),
            metrics.clone(),
        ));
    }
    let senders: [watch::Sender<bool>; CUSTOM_KINDS] = senders
        .try_into()
        .map_err(|_| anyhow::anyhow!("one presence flag per custom kind"))?;
    tokio::spawn(reflect::watch_crds(
        client,
        senders,
        notes.clone(),
        metrics.clone(),
    ));
    drop(notes);

    let mut assembler = Assembler::new(stores);
    let deadline = Instant::now() + options.sync_timeout;
    while !assembler.ready() {
        match tokio::time::timeout_at(deadline, inbox.recv()).await {
            Ok(Some(note)) => assembler.note(note),
            Ok(None) => anyhow::bail!("the Kubernetes source stopped before its first list"),
            Err(_) => anyhow::bail!(
                "the Kubernetes API did not list {} within {:?}{}",
                assembler.waiting_for().join(", "),
                options.sync_timeout,
                metrics
                    .last_error()
                    .map(|e| format!(" (last error: {e})"))
                    .unwrap_or_default(),
            ),
        }
    }
    let first = Arc::new(assembler.assemble(1)?);
    let (policy_tx, policy) = watch::channel(Arc::new(policy_view(&assembler, &first)));
    tracing::info!(
        services = first.services().len(),
        pods = first.pods().len(),
        destination_rules = first.destination_rules().len(),
        virtual_services = first.virtual_services().len(),
        "Kubernetes registry listed"
    );
    let (tx, rx) = watch::channel(first);
    let handle = KubeSourceHandle {
        metrics,
        generation: rx.clone(),
        policy,
    };
    tokio::spawn(publish(assembler, inbox, tx, policy_tx, options.debounce));
    Ok((rx, handle))
}

// === impl PolicyView ===

impl PolicyView {
    /// The same objects at the same resourceVersions with the same verdicts: a status writer
    /// would find nothing new in it (pod and endpoint churn does not wake it).
    pub fn same_as(&self, other: &PolicyView) -> bool {
        let versions = |v: &PolicyView| {
            v.objects
                .iter()
                .map(|o| {
                    (
                        o.kind,
                        o.object.metadata.namespace.clone(),
                        o.object.metadata.name.clone(),
                        o.object.metadata.resource_version.clone(),
                    )
                })
                .collect::<Vec<_>>()
        };
        self.refused == other.refused
            && self.warnings == other.warnings
            && versions(self) == versions(other)
    }
}

fn policy_view(assembler: &Assembler, snapshot: &Snapshot) -> PolicyView {
    PolicyView {
        objects: assembler.custom_objects(),
        refused: assembler.rejected().to_vec(),
        warnings: snapshot.object_warnings().to_vec(),
    }
}

/// One reflector per built-in kind, each with its store.
fn start_builtin(client: &Client, notes: &reflect::Notes, metrics: &Arc<SourceMetrics>) -> Stores {
    macro_rules! start {
        ($kind:expr, $ty:ty, $prune:expr) => {{
            let (store, writer) = reflector::store::<$ty>();
            tokio::spawn(reflect::run(
                $kind,
                Api::<$ty>::all(client.clone()),
                watcher::Config::default(),
                writer,
                $prune,
                notes.clone(),
                metrics.clone(),
            ));
            store
        }};
    }
    Stores {
        namespaces: start!(KindId::Namespace, Namespace, assemble::prune_meta),
        service_accounts: start!(
            KindId::ServiceAccount,
            ServiceAccount,
            assemble::prune_service_account
        ),
        services: start!(KindId::Service, Service, assemble::prune_meta),
        slices: start!(KindId::EndpointSlice, EndpointSlice, assemble::prune_meta),
        pods: start!(KindId::Pod, Pod, assemble::prune_pod),
        custom: Default::default(),
    }
}

/// After each burst of notes (quiet for `debounce.quiet`, or `debounce.max_delay` after its
/// first note), assembles and publishes a snapshot if its content changed. Ends when every
/// receiver is gone.
async fn publish(
    mut assembler: Assembler,
    mut inbox: mpsc::UnboundedReceiver<Note>,
    tx: watch::Sender<Arc<Snapshot>>,
    policy: watch::Sender<Arc<PolicyView>>,
    debounce: Debounce,
) {
    while let Some(note) = inbox.recv().await {
        assembler.note(note);
        let max = Instant::now() + debounce.max_delay;
        loop {
            let quiet = (Instant::now() + debounce.quiet).min(max);
            match tokio::time::timeout_at(quiet, inbox.recv()).await {
                Ok(Some(note)) => assembler.note(note),
                Ok(None) => return,
                Err(_) => break,
            }
        }
        let current = tx.borrow().clone();
        let next = match assembler.assemble(current.generation() + 1) {
            Ok(next) => next,
            Err(error) => {
                // Keep the last good snapshot in force; the next change may resolve it.
                tracing::warn!(%error, "the cluster's objects do not form a registry; keeping the last good one");
                continue;
            }
        };
        // Not only when the snapshot changed: a status-only change (the echo of a status write)
        // or a refused new version changes no snapshot but is what a status writer compares with.
        let view = policy_view(&assembler, &next);
        policy.send_if_modified(|current| {
            let changed = !current.same_as(&view);
            if changed {
                *current = Arc::new(view);
            }
            changed
        });
        if next.same_content(&current) {
            continue;
        }
        tracing::info!(
            generation = next.generation(),
            "Kubernetes registry changed"
        );
        if tx.send(Arc::new(next)).is_err() {
            return;
        }
    }
}
