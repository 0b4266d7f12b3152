//! Status written back: each DestinationRule and VirtualService (both groups) and each Istio
//! Telemetry, PeerAuthentication and AuthorizationPolicy gets `status.conditions` saying whether the control plane accepted it, and what is
//! wrong across objects, so `kubectl get -o yaml` answers what `istioctl analyze` would.
//!
//! What it promises:
//! - **Conditions we own** (`type`, `status`, `reason`, `message`, `observedGeneration` =
//!   `metadata.generation`, `lastTransitionTime` kept while `status` stays the same):
//!   - `Accepted`: `True`/`Accepted`, or `False`/`Invalid` with every validation reason (and
//!     whether the last accepted version stays in force);
//!   - `ResolvedRefs` (VirtualServices): `False`/`SubsetNotFound` naming each route to a subset
//!     no DestinationRule defines, else `True`/`ResolvedRefs`;
//!   - `Conflicted` (DestinationRules and VirtualServices): `True`/`DuplicateSubset` or
//!     `True`/`HostConflict` naming the other object, else `False`/`NoConflicts`.
//!
//!   An object refused without an earlier accepted version gets only `Accepted` (nothing of it
//!   is in force to have references or conflicts).
//! - **Other writers' conditions are kept** (istiod's `Reconciled`, anyone's): a merge patch
//!   replaces the `conditions` array whole, so it carries theirs as read, and the object's
//!   `resourceVersion` as a precondition (a 409 means we read a stale copy; the watch brings the
//!   new one and we decide again).
//! - **Only on change**: an object is patched only when its conditions (ignoring
//!   `lastTransitionTime`) differ from the copy in the source's store, and not again at the same
//!   `resourceVersion` with the same conditions, so the watch echo of our own write (or a batch
//!   that arrives before it) causes no second write.
//! - **Only by the leader**: nothing is written while the leader channel says `false`; on becoming
//!   leader, every object is compared at once.

#[cfg(test)]
mod tests;

use std::collections::HashMap;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use kube::api::{Api, DynamicObject, Patch, PatchParams};
use serde_json::{Value, json};
use tokio::sync::watch;
use tokio::time::Instant;

use super::{ApiFailure, classify};
use crate::registry::cluster::{CustomKind, KindId, PolicyObject, PolicyView, Refused};
use crate::registry::{ObjectWarning, Origin, WarningKind};

/// The condition types this writer owns; any other type on an object is someone else's.
pub const OWNED_TYPES: [&str; 3] = [ACCEPTED, RESOLVED_REFS, CONFLICTED];
const ACCEPTED: &str = "Accepted";
const RESOLVED_REFS: &str = "ResolvedRefs";
const CONFLICTED: &str = "Conflicted";

/// After a write failed for a reason other than a stale copy or a missing object, the same write
/// is tried again after this long (if nothing changed meanwhile).
const RETRY_AFTER: Duration = Duration::from_secs(10);

/// Counters for `/metrics`.
#[derive(Debug, Default)]
pub struct StatusMetrics {
    /// Status patches the API server accepted.
    pub patches: AtomicU64,
    /// Status patches that failed (conflicts included).
    pub failures: AtomicU64,
}

// === impl StatusMetrics ===

impl StatusMetrics {
    /// Prometheus text.
    pub fn render(&self, out: &mut String) {
        use std::fmt::Write as _;
        for (name, help, value) in [
            (
                "sinew_cp_status_patches_total",
                "DestinationRule/VirtualService status patches the API server accepted.",
                &self.patches,
            ),
            (
                "sinew_cp_status_patch_failures_total",
                "Status patches that failed (conflicts included; retried on the next version).",
                &self.failures,
            ),
        ] {
            let _ = writeln!(
                out,
                "# HELP {name} {help}\n# TYPE {name} counter\n{name} {}",
                value.load(Ordering::Relaxed)
            );
        }
    }
}

/// One condition as we want it, before `lastTransitionTime` is decided.
#[derive(Debug, Clone, PartialEq, Eq)]
struct Wanted {
    type_: &'static str,
    status: &'static str,
    reason: &'static str,
    message: String,
}

/// What we last tried for an object, so neither an echo nor a repeated batch writes it again.
#[derive(Debug)]
struct Attempt {
    resource_version: String,
    conditions: Vec<Value>,
    /// When a failed write may be tried again; `None` after a success, a conflict or a 404
    /// (only a new version of the object makes us try again).
    retry_at: Option<Instant>,
}

#[derive(Debug, Clone, PartialEq, Eq, Hash)]
struct Key {
    kind: CustomKind,
    namespace: String,
    name: String,
}

/// Starts the status writer: compares after every [`PolicyView`] and whenever this replica
/// becomes leader, writes only while `leader` says `true`. Ends when either channel closes.
pub fn spawn(
    client: kube::Client,
    policy: watch::Receiver<Arc<PolicyView>>,
    leader: watch::Receiver<bool>,
) -> Arc<StatusMetrics> {
    let metrics = Arc::new(StatusMetrics::default());
    let writer = Writer {
        client,
        attempts: HashMap::new(),
        metrics: metrics.clone(),
    };
    tokio::spawn(writer.run(policy, leader));
    metrics
}

struct Writer {
    client: kube::Client,
    attempts: HashMap<Key, Attempt>,
    metrics: Arc<StatusMetrics>,
}

// === impl Writer ===

impl Writer {
    async fn run(
        mut self,
        mut policy: watch::Receiver<Arc<PolicyView>>,
        mut leader: watch::Receiver<bool>,
    ) {
        loop {
            let leading = *leader.borrow_and_update();
            let view = policy.borrow_and_update().clone();
            let retry_at = if leading {
                self.reconcile(&view, &leader).await
            } else {
                // A new leader starts from what it reads; our old attempts say nothing.
                self.attempts.clear();
                None
            };
            let retry = async {
                match retry_at {
                    Some(at) => tokio::time::sleep_until(at).await,
                    None => std::future::pending().await,
                }
            };
            tokio::select! {
                changed = policy.changed() => if changed.is_err() { return },
                changed = leader.changed() => if changed.is_err() { return },
                () = retry => {}
            }
        }
    }

    /// Patches every object whose conditions differ from what it should say; returns when a
    /// failed write should be tried again.
    async fn reconcile(
        &mut self,
        view: &PolicyView,
        leader: &watch::Receiver<bool>,
    ) -> Option<Instant> {
        let now = jiff::Timestamp::now();
        let verdicts = Verdicts::new(view);
        let mut live = Vec::with_capacity(view.objects.len());
        for object in &view.objects {
            let meta = &object.object.metadata;
            let (Some(namespace), Some(name)) = (meta.namespace.clone(), meta.name.clone()) else {
                continue;
            };
            let key = Key {
                kind: object.kind,
                namespace,
                name,
            };
            live.push(key.clone());
            let wanted = verdicts.wanted(&key);
            let current = current_conditions(&object.object);
            let Some(conditions) = desired_conditions(&current, &wanted, meta.generation, now)
            else {
                continue;
            };
            let resource_version = meta.resource_version.clone().unwrap_or_default();
            if let Some(a) = self.attempts.get(&key)
                && a.resource_version == resource_version
                && same_conditions(&a.conditions, &conditions)
                && a.retry_at.is_none_or(|at| at > Instant::now())
            {
                // Written (its echo not here yet), or failed in a way only a new version of
                // the object can change.
                continue;
            }
            if !*leader.borrow() {
                // Stepped down meanwhile: the next leader writes the rest.
                return None;
            }
            let retry_at = self
                .patch(object, &key, &resource_version, &conditions)
                .await;
            self.attempts.insert(
                key,
                Attempt {
                    resource_version,
                    conditions,
                    retry_at,
                },
            );
        }
        let live: std::collections::HashSet<Key> = live.into_iter().collect();
        self.attempts.retain(|k, _| live.contains(k));
        self.attempts.values().filter_map(|a| a.retry_at).min()
    }

    /// One merge patch of `/status`; returns when to try again if it failed and may succeed
    /// later unchanged.
    async fn patch(
        &self,
        object: &PolicyObject,
        key: &Key,
        resource_version: &str,
        conditions: &[Value],
    ) -> Option<Instant> {
        let api: Api<DynamicObject> =
            Api::namespaced_with(self.client.clone(), &key.namespace, &object.resource);
        let mut patch = json!({ "status": { "conditions": conditions } });
        if !resource_version.is_empty() {
            patch["metadata"] = json!({ "resourceVersion": resource_version });
        }
        let kind = KindId::Custom(key.kind);
        match api
            .patch_status(&key.name, &PatchParams::default(), &Patch::Merge(&patch))
            .await
        {
            Ok(_) => {
                self.metrics.patches.fetch_add(1, Ordering::Relaxed);
                tracing::debug!(%kind, namespace = %key.namespace, name = %key.name, "status written");
                None
            }
            Err(error) => {
                self.metrics.failures.fetch_add(1, Ordering::Relaxed);
                match classify(&error) {
                    // A stale copy, or the object (or its status subresource) is gone: the
                    // watch brings what changed, and we decide again then.
                    ApiFailure::Conflict | ApiFailure::NotFound => {
                        tracing::debug!(%kind, namespace = %key.namespace, name = %key.name, %error, "status not written; waiting for the next version");
                        None
                    }
                    failure => {
                        tracing::warn!(%kind, namespace = %key.namespace, name = %key.name, %error, failure = failure.as_str(), "status not written; trying again later");
                        Some(Instant::now() + RETRY_AFTER)
                    }
                }
            }
        }
    }
}

/// The registry's verdicts, by object.
struct Verdicts<'a> {
    refused: HashMap<&'a Origin, &'a Refused>,
    warnings: HashMap<&'a Origin, Vec<&'a ObjectWarning>>,
}

impl<'a> Verdicts<'a> {
    fn new(view: &'a PolicyView) -> Self {
        let mut warnings: HashMap<&Origin, Vec<&ObjectWarning>> = HashMap::new();
        for w in &view.warnings {
            warnings.entry(&w.origin).or_default().push(w);
        }
        Self {
            refused: view.refused.iter().map(|r| (&r.origin, r)).collect(),
            warnings,
        }
    }

    /// The conditions an object should carry.
    fn wanted(&self, key: &Key) -> Vec<Wanted> {
        let origin = Origin::Object {
            kind: KindId::Custom(key.kind).name(),
            namespace: Some(key.namespace.clone()),
            name: key.name.clone(),
        };
        let refused = self.refused.get(&origin);
        let accepted = match refused {
            None => Wanted {
                type_: ACCEPTED,
                status: "True",
                reason: "Accepted",
                message: String::new(),
            },
            Some(r) => Wanted {
                type_: ACCEPTED,
                status: "False",
                reason: "Invalid",
                message: format!(
                    "{}{}",
                    r.reasons.join("; "),
                    if r.kept_previous {
                        "; the last accepted version stays in force"
                    } else {
                        ""
                    }
                ),
            },
        };
        if refused.is_some_and(|r| !r.kept_previous) {
            return vec![accepted];
        }
        let warnings = self.warnings.get(&origin).map_or(&[][..], Vec::as_slice);
        let messages = |kind: WarningKind| -> Vec<&str> {
            warnings
                .iter()
                .filter(|w| w.kind == kind)
                .map(|w| strip_origin(&w.message, &origin))
                .collect()
        };
        let mut wanted = vec![accepted];
        if matches!(
            key.kind,
            CustomKind::IstioVirtualService | CustomKind::SinewVirtualService
        ) {
            let missing = messages(WarningKind::SubsetNotFound);
            wanted.push(if missing.is_empty() {
                Wanted {
                    type_: RESOLVED_REFS,
                    status: "True",
                    reason: "ResolvedRefs",
                    message: String::new(),
                }
            } else {
                Wanted {
                    type_: RESOLVED_REFS,
                    status: "False",
                    reason: "SubsetNotFound",
                    message: missing.join("; "),
                }
            });
        }
        // Telemetries and the security kinds have no cross-object conditions (their conflicts
        // are logged warnings).
        if matches!(
            key.kind,
            CustomKind::IstioTelemetry
                | CustomKind::IstioPeerAuthentication
                | CustomKind::IstioAuthorizationPolicy
        ) {
            return wanted;
        }
        let duplicates = messages(WarningKind::DuplicateSubset);
        let shared = messages(WarningKind::HostConflict);
        wanted.push(match (duplicates.is_empty(), shared.is_empty()) {
            (true, true) => Wanted {
                type_: CONFLICTED,
                status: "False",
                reason: "NoConflicts",
                message: String::new(),
            },
            (false, _) => Wanted {
                type_: CONFLICTED,
                status: "True",
                reason: "DuplicateSubset",
                message: duplicates
                    .into_iter()
                    .chain(shared)
                    .collect::<Vec<_>>()
                    .join("; "),
            },
            (true, false) => Wanted {
                type_: CONFLICTED,
                status: "True",
                reason: "HostConflict",
                message: shared.join("; "),
            },
        });
        wanted
    }
}

/// A warning's text without the leading "`<origin>`: " (the condition is on that object).
fn strip_origin<'m>(message: &'m str, origin: &Origin) -> &'m str {
    let prefix = format!("{origin}: ");
    message.strip_prefix(prefix.as_str()).unwrap_or(message)
}

/// `status.conditions` as the object has them (not an array: none).
fn current_conditions(object: &DynamicObject) -> Vec<Value> {
    object
        .data
        .get("status")
        .and_then(|s| s.get("conditions"))
        .and_then(Value::as_array)
        .cloned()
        .unwrap_or_default()
}

/// The conditions the object should have, or `None` when it already has them (ignoring
/// `lastTransitionTime`). Other writers' conditions stay where they are; ours are replaced in
/// place, appended when new, and dropped when no longer wanted.
fn desired_conditions(
    current: &[Value],
    wanted: &[Wanted],
    generation: Option<i64>,
    now: jiff::Timestamp,
) -> Option<Vec<Value>> {
    let render = |w: &Wanted, previous: Option<&Value>| -> Value {
        // The transition time moves only when the status does.
        let since = previous
            .filter(|p| p.get("status").and_then(Value::as_str) == Some(w.status))
            .and_then(|p| p.get("lastTransitionTime").cloned())
            .unwrap_or_else(|| json!(now.to_string()));
        let mut c = json!({
            "type": w.type_,
            "status": w.status,
            "reason": w.reason,
            "message": w.message,
            "lastTransitionTime": since,
        });
        if let Some(g) = generation {
            c["observedGeneration"] = json!(g);
        }
        c
    };
    let type_of = |c: &Value| c.get("type").and_then(Value::as_str).map(str::to_string);
    let mut out = Vec::with_capacity(current.len().max(wanted.len()));
    let mut placed = Vec::new();
    for c in current {
        let Some(t) = type_of(c) else {
            out.push(c.clone());
            continue;
        };
        if !OWNED_TYPES.contains(&t.as_str()) {
            out.push(c.clone());
        } else if let Some(w) = wanted.iter().find(|w| w.type_ == t)
            && !placed.contains(&w.type_)
        {
            out.push(render(w, Some(c)));
            placed.push(w.type_);
        }
    }
    for w in wanted {
        if !placed.contains(&w.type_) {
            out.push(render(w, None));
        }
    }
    if same_conditions(current, &out) {
        None
    } else {
        Some(out)
    }
}

/// Equal but for `lastTransitionTime`.
fn same_conditions(a: &[Value], b: &[Value]) -> bool {
    let strip = |c: &Value| {
        let mut c = c.clone();
        if let Some(o) = c.as_object_mut() {
            o.remove("lastTransitionTime");
        }
        c
    };
    a.len() == b.len() && a.iter().zip(b).all(|(x, y)| strip(x) == strip(y))
}
