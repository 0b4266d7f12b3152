//! The trust bundle where the cluster needs it: a ConfigMap `sinew-root-cert` (key
//! `root-cert.pem`) in every namespace, which workloads and tools can mount to trust the mesh CA
//! (as istiod publishes `istio-ca-root-cert`; injected proxies mount it to trust the control
//! plane, and get later roots over the config stream), and the `caBundle` of the webhook
//! configurations `sinew-validator` (validating) and `sinew-injector` (mutating), so the API
//! server trusts the webhooks' certificate.
//!
//! What it promises: only the leader writes; each ConfigMap is created when missing and patched
//! when its bundle differs, and left alone when it is already right (one GET per namespace per
//! leadership term, then nothing until the namespaces or the bundle change); each webhook
//! configuration is patched only when one of its webhooks' `caBundle` differs, with the
//! resourceVersion it was read at (a concurrent `helm upgrade` wins, and is corrected at the next
//! pass), and a missing one is not an error. A failed write is retried at the next change or
//! resync.

use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::Duration;

use k8s_openapi::api::admissionregistration::v1::{
    MutatingWebhookConfiguration, ValidatingWebhookConfiguration, WebhookClientConfig,
};
use k8s_openapi::api::core::v1::ConfigMap;
use kube::api::{Api, Patch, PatchParams, PostParams};
use serde_json::json;
use tokio::sync::watch;

use super::{ApiFailure, classify};
use crate::registry::Snapshot;

/// The ConfigMap's name in every namespace (the injected proxy mounts it by this name).
pub const ROOT_CERT_CONFIG_MAP: &str = sinew_injector::contract::ROOT_CERT_CONFIG_MAP;
/// Its key: the PEM roots, one after the other.
pub const ROOT_CERT_KEY: &str = sinew_injector::contract::ROOT_CERT_KEY;
/// The validating webhook configuration whose `caBundle` is kept current.
pub const VALIDATING_CONFIGURATION: &str = "sinew-validator";
/// The mutating webhook configuration (the sidecar injector) whose `caBundle` is kept current.
pub const MUTATING_CONFIGURATION: &str = "sinew-injector";
/// Everything is checked again this often (a ConfigMap someone deleted or edited, a `caBundle`
/// an upgrade reset, comes back).
const RESYNC: Duration = Duration::from_secs(60);

/// Keeps the ConfigMaps current while this replica leads; ends when the snapshots end.
pub async fn publish(
    client: kube::Client,
    mut snapshots: watch::Receiver<Arc<Snapshot>>,
    mut bundle: watch::Receiver<Arc<crate::ca::TrustBundle>>,
    mut leader: watch::Receiver<bool>,
) {
    // Namespace → the bundle its ConfigMap is known to hold.
    let mut written: BTreeMap<String, Arc<String>> = BTreeMap::new();
    let mut validating_written: Option<Arc<String>> = None;
    let mut mutating_written: Option<Arc<String>> = None;
    loop {
        if *leader.borrow_and_update() {
            let pem = Arc::new(bundle.borrow_and_update().pem());
            let namespaces: Vec<String> = snapshots
                .borrow_and_update()
                .namespaces()
                .keys()
                .cloned()
                .collect();
            written.retain(|ns, _| namespaces.contains(ns));
            for namespace in namespaces {
                if written.get(&namespace).is_some_and(|w| *w == pem) {
                    continue;
                }
                match ensure(&client, &namespace, &pem).await {
                    Ok(()) => {
                        written.insert(namespace, pem.clone());
                    }
                    Err(error) => {
                        tracing::warn!(%namespace, %error, "cannot publish the trust bundle ConfigMap");
                    }
                }
            }
            if validating_written.as_ref() != Some(&pem) {
                match ensure_ca_bundle::<ValidatingWebhookConfiguration>(&client, &pem).await {
                    Ok(()) => validating_written = Some(pem.clone()),
                    Err(error) => {
                        tracing::warn!(configuration = VALIDATING_CONFIGURATION, %error, "cannot set the webhook configuration's caBundle");
                    }
                }
            }
            if mutating_written.as_ref() != Some(&pem) {
                match ensure_ca_bundle::<MutatingWebhookConfiguration>(&client, &pem).await {
                    Ok(()) => mutating_written = Some(pem.clone()),
                    Err(error) => {
                        tracing::warn!(configuration = MUTATING_CONFIGURATION, %error, "cannot set the webhook configuration's caBundle");
                    }
                }
            }
        } else {
            written.clear();
            validating_written = None;
            mutating_written = None;
        }
        tokio::select! {
            changed = snapshots.changed() => if changed.is_err() { return },
            changed = bundle.changed() => if changed.is_err() { return },
            changed = leader.changed() => if changed.is_err() { return },
            () = tokio::time::sleep(RESYNC) => {
                written.clear();
                validating_written = None;
            mutating_written = None;
            }
        }
    }
}

/// Makes `namespace`'s ConfigMap hold `pem`: created if missing, patched if different.
async fn ensure(client: &kube::Client, namespace: &str, pem: &str) -> Result<(), kube::Error> {
    let api: Api<ConfigMap> = Api::namespaced(client.clone(), namespace);
    match api.get(ROOT_CERT_CONFIG_MAP).await {
        Ok(existing) => {
            let current = existing
                .data
                .as_ref()
                .and_then(|d| d.get(ROOT_CERT_KEY))
                .map(String::as_str);
            if current != Some(pem) {
                let patch = json!({"data": {ROOT_CERT_KEY: pem}});
                api.patch(
                    ROOT_CERT_CONFIG_MAP,
                    &PatchParams::default(),
                    &Patch::Merge(&patch),
                )
                .await?;
            }
            Ok(())
        }
        Err(error) if classify(&error) == ApiFailure::NotFound => {
            let config_map: ConfigMap = serde_json::from_value(json!({
                "metadata": {
                    "name": ROOT_CERT_CONFIG_MAP,
                    "namespace": namespace,
                    "labels": {"app.kubernetes.io/managed-by": "sinew-control-plane"},
                },
                "data": {ROOT_CERT_KEY: pem},
            }))
            .map_err(kube::Error::SerdeError)?;
            match api.create(&PostParams::default(), &config_map).await {
                // Another writer (a previous leader) made it meanwhile: checked at the next pass.
                Err(error) if classify(&error) == ApiFailure::Conflict => Err(error),
                other => other.map(drop),
            }
        }
        Err(error) => Err(error),
    }
}

/// A webhook configuration kind: its fixed name and its webhooks' client configs.
trait WebhookConfiguration:
    kube::Resource<DynamicType = (), Scope = k8s_openapi::ClusterResourceScope>
    + Clone
    + std::fmt::Debug
    + serde::de::DeserializeOwned
{
    const NAME: &'static str;
    fn client_configs(&mut self) -> Vec<&mut WebhookClientConfig>;
    /// The `webhooks` list as JSON, for the patch.
    fn webhooks_json(&self) -> serde_json::Value;
}

impl WebhookConfiguration for ValidatingWebhookConfiguration {
    const NAME: &'static str = VALIDATING_CONFIGURATION;
    fn client_configs(&mut self) -> Vec<&mut WebhookClientConfig> {
        self.webhooks
            .iter_mut()
            .flatten()
            .map(|w| &mut w.client_config)
            .collect()
    }
    fn webhooks_json(&self) -> serde_json::Value {
        json!(self.webhooks)
    }
}

impl WebhookConfiguration for MutatingWebhookConfiguration {
    const NAME: &'static str = MUTATING_CONFIGURATION;
    fn client_configs(&mut self) -> Vec<&mut WebhookClientConfig> {
        self.webhooks
            .iter_mut()
            .flatten()
            .map(|w| &mut w.client_config)
            .collect()
    }
    fn webhooks_json(&self) -> serde_json::Value {
        json!(self.webhooks)
    }
}

/// Sets every webhook's `caBundle` in the configuration `K::NAME` to `pem` where it differs. A
/// missing configuration (the chart installs it; a bare `serve` has none) is not an error.
async fn ensure_ca_bundle<K: WebhookConfiguration>(
    client: &kube::Client,
    pem: &str,
) -> Result<(), kube::Error> {
    let api: Api<K> = Api::all(client.clone());
    let mut config = match api.get(K::NAME).await {
        Ok(config) => config,
        Err(error) if classify(&error) == ApiFailure::NotFound => return Ok(()),
        Err(error) => return Err(error),
    };
    let wanted = k8s_openapi::ByteString(pem.as_bytes().to_vec());
    let mut changed = false;
    for client_config in config.client_configs() {
        if client_config.ca_bundle.as_ref() != Some(&wanted) {
            client_config.ca_bundle = Some(wanted.clone());
            changed = true;
        }
    }
    if !changed {
        return Ok(());
    }
    // The whole list (a merge patch replaces lists), at the version it was read.
    let patch = json!({
        "metadata": {"resourceVersion": config.meta().resource_version},
        "webhooks": config.webhooks_json(),
    });
    api.patch(K::NAME, &PatchParams::default(), &Patch::Merge(&patch))
        .await?;
    tracing::info!(configuration = K::NAME, "webhook caBundle updated");
    Ok(())
}

#[cfg(test)]
mod tests;
