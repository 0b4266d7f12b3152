//! The mutating webhook `POST /inject`: `sinew_injector::review` with the injector's settings
//! (`--injector-config`) and the namespace labels the registry knows.
//!
//! What it promises: the API server sends only pods whose namespace the webhook configuration's
//! `namespaceSelector` matched, and the namespace's labels are not in the review; where the
//! registry has seen the namespace, its labels are checked again here (a configuration edited by
//! hand cannot mesh `kube-system` or an Istio namespace), and where it has not (a namespace
//! created a moment ago) the selector's word is taken.

use std::collections::BTreeMap;
use std::sync::Arc;

use sinew_injector::{BadRequest, Settings};
use tokio::sync::watch;

use crate::registry::Snapshot;

/// The path the MutatingWebhookConfiguration's `clientConfig.service.path` names.
pub const PATH: &str = "/inject";

/// Answers injection reviews.
pub struct Injector {
    settings: Settings,
    snapshots: watch::Receiver<Arc<Snapshot>>,
}

// === impl Injector ===

impl Injector {
    pub fn new(settings: Settings, snapshots: watch::Receiver<Arc<Snapshot>>) -> Injector {
        Injector {
            settings,
            snapshots,
        }
    }

    /// The answer to one request body (see `sinew_injector::review`).
    pub fn review(&self, body: &[u8]) -> Result<Vec<u8>, BadRequest> {
        let snapshot = self.snapshots.borrow().clone();
        let labels = |namespace: &str| -> Option<BTreeMap<String, String>> {
            snapshot
                .namespaces()
                .get(namespace)
                // The implicit `default` (no origin) was not seen: its labels are unknown.
                .filter(|ns| ns.origin.is_some())
                .map(|ns| ns.labels.clone())
        };
        sinew_injector::review(body, &self.settings, &labels)
    }
}
