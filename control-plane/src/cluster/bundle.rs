//! The trust bundle where the cluster needs it: a ConfigMap `sinew-root-cert` (key
//! `root-cert.pem`) in every namespace, which workloads and tools can mount to trust the mesh CA
//! (as istiod publishes `istio-ca-root-cert`; proxies get the bundle over the config stream), and
//! the `caBundle` of the validating webhook configuration `sinew-validator`, so the API server
//! trusts the webhook's certificate.
//!
//! What it promises: only the leader writes; each ConfigMap is created when missing and patched
//! when its bundle differs, and left alone when it is already right (one GET per namespace per
//! leadership term, then nothing until the namespaces or the bundle change); the webhook
//! configuration is patched only when a webhook's `caBundle` differs, with the resourceVersion it
//! was read at (a concurrent `helm upgrade` wins, and is corrected at the next pass). A failed
//! write is retried at the next change or resync.

use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::Duration;

use k8s_openapi::api::core::v1::ConfigMap;
use kube::api::{Api, Patch, PatchParams, PostParams};
use serde_json::json;
use tokio::sync::watch;

use super::{ApiFailure, classify};
use crate::registry::Snapshot;

/// The ConfigMap's name in every namespace.
pub const ROOT_CERT_CONFIG_MAP: &str = "sinew-root-cert";
/// Its key: the PEM roots, one after the other.
pub const ROOT_CERT_KEY: &str = "root-cert.pem";
/// The validating webhook configuration whose `caBundle` is kept current.
pub const WEBHOOK_CONFIGURATION: &str = "sinew-validator";
/// Everything is checked again this often (a ConfigMap someone deleted or edited, a `caBundle`
/// an upgrade reset, comes back).
const RESYNC: Duration = Duration::from_secs(60);

/// Keeps the ConfigMaps current while this replica leads; ends when the snapshots end.
pub async fn publish(
    client: kube::Client,
    mut snapshots: watch::Receiver<Arc<Snapshot>>,
    mut bundle: watch::Receiver<Arc<Vec<String>>>,
    mut leader: watch::Receiver<bool>,
) {
    // Namespace → the bundle its ConfigMap is known to hold.
    let mut written: BTreeMap<String, Arc<String>> = BTreeMap::new();
    let mut webhook_written: Option<Arc<String>> = None;
    loop {
        if *leader.borrow_and_update() {
            let pem = Arc::new(bundle.borrow_and_update().join("\n"));
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
            if webhook_written.as_ref() != Some(&pem) {
                match ensure_ca_bundle(&client, &pem).await {
                    Ok(()) => webhook_written = Some(pem.clone()),
                    Err(error) => {
                        tracing::warn!(%error, "cannot set the webhook configuration's caBundle");
                    }
                }
            }
        } else {
            written.clear();
            webhook_written = None;
        }
        tokio::select! {
            changed = snapshots.changed() => if changed.is_err() { return },
            changed = bundle.changed() => if changed.is_err() { return },
            changed = leader.changed() => if changed.is_err() { return },
            () = tokio::time::sleep(RESYNC) => {
                written.clear();
                webhook_written = None;
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

/// Sets every webhook's `caBundle` in [`WEBHOOK_CONFIGURATION`] to `pem` where it differs. A
/// missing configuration (the chart installs it; a bare `serve` has none) is not an error.
async fn ensure_ca_bundle(client: &kube::Client, pem: &str) -> Result<(), kube::Error> {
    use k8s_openapi::api::admissionregistration::v1::ValidatingWebhookConfiguration;

    let api: Api<ValidatingWebhookConfiguration> = Api::all(client.clone());
    let mut config = match api.get(WEBHOOK_CONFIGURATION).await {
        Ok(config) => config,
        Err(error) if classify(&error) == ApiFailure::NotFound => return Ok(()),
        Err(error) => return Err(error),
    };
    let wanted = k8s_openapi::ByteString(pem.as_bytes().to_vec());
    let mut changed = false;
    for webhook in config.webhooks.iter_mut().flatten() {
        if webhook.client_config.ca_bundle.as_ref() != Some(&wanted) {
            webhook.client_config.ca_bundle = Some(wanted.clone());
            changed = true;
        }
    }
    if !changed {
        return Ok(());
    }
    // The whole list (a merge patch replaces lists), at the version it was read.
    let patch = json!({
        "metadata": {"resourceVersion": config.metadata.resource_version},
        "webhooks": config.webhooks,
    });
    api.patch(
        WEBHOOK_CONFIGURATION,
        &PatchParams::default(),
        &Patch::Merge(&patch),
    )
    .await?;
    tracing::info!(
        configuration = WEBHOOK_CONFIGURATION,
        "webhook caBundle updated"
    );
    Ok(())
}

#[cfg(test)]
mod tests;
