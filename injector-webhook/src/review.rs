//! The webhook's exchange: an `AdmissionReview` (`admission.k8s.io/v1`, or `v1beta1`, same
//! shape) in, the `AdmissionReview` to answer with out, as bytes.
//!
//! What it promises:
//! - Never a panic, whatever the bytes. A body that is not an AdmissionReview at all (not JSON,
//!   another kind, no `request.uid` to answer to) is a [`BadRequest`], for an HTTP 400; anything
//!   with a uid gets an answer the API server accepts.
//! - Only the creation of a Pod is injected. Other operations on pods pass untouched; another
//!   kind passes with a warning (the webhook's rules are wrong if it is sent here).
//! - A pod that cannot be understood is allowed unchanged with a warning saying why, never
//!   refused and never half-injected; a pod whose annotations ask for something impossible is
//!   refused (`allowed: false`, code 422) with every annotation named.
//! - The patch is what the API server expects and kube-rs gets wrong (kube-rs #1781): `patch`
//!   holds the base64 of the JSON patch array's bytes, with `patchType: JSONPatch`; no patch at
//!   all when the pod is not injected.
//! - The response's `apiVersion` is the request's, and its `uid` the request's.

use std::collections::BTreeMap;

use base64::Engine as _;
use serde::Serialize;
use serde_json::Value;

use crate::decide::Namespace;
use crate::inject::{Outcome, inject};
use crate::patch;
use crate::settings::Settings;

/// Versions of AdmissionReview answered (the API server sends the first it finds in the
/// configuration's `admissionReviewVersions`).
const VERSIONS: [&str; 2] = ["admission.k8s.io/v1", "admission.k8s.io/v1beta1"];
/// Prefixes every warning, so `kubectl` users see where it came from.
const WARNING_PREFIX: &str = "sinew-injector: ";
/// Warnings sent at most (then "and N more"): the API server truncates long lists anyway, and a
/// pod with thousands of odd annotations must not make a megabyte of answer.
const MAX_WARNINGS: usize = 16;

/// The body is not an AdmissionReview that can be answered.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{0}")]
pub struct BadRequest(pub String);

/// Answers one review. `namespace_labels` gives a namespace's labels when the caller knows the
/// namespace (the control plane's registry), `None` when it does not (the API server already
/// filtered on them with the webhook's `namespaceSelector`).
pub fn review(
    body: &[u8],
    settings: &Settings,
    namespace_labels: &dyn Fn(&str) -> Option<BTreeMap<String, String>>,
) -> Result<Vec<u8>, BadRequest> {
    let review: Value = serde_json::from_slice(body)
        .map_err(|e| BadRequest(format!("the body is not JSON: {e}")))?;
    let api_version = review.get("apiVersion").and_then(Value::as_str);
    let api_version = match api_version {
        Some(v)
            if VERSIONS.contains(&v) && review.get("kind") == Some(&"AdmissionReview".into()) =>
        {
            v
        }
        _ => {
            return Err(BadRequest(
                "the body is not an AdmissionReview (kind AdmissionReview, apiVersion admission.k8s.io/v1)".into(),
            ));
        }
    };
    let request = review.get("request").unwrap_or(&Value::Null);
    let uid = match request.get("uid").and_then(Value::as_str) {
        Some(uid) if !uid.is_empty() => uid,
        _ => return Err(BadRequest("the AdmissionReview has no request.uid".into())),
    };
    let mut response = Response {
        uid: uid.to_string(),
        allowed: true,
        patch_type: None,
        patch: None,
        warnings: Vec::new(),
        status: None,
    };
    answer(request, settings, namespace_labels, &mut response);
    let extra = response.warnings.len().saturating_sub(MAX_WARNINGS);
    response.warnings.truncate(MAX_WARNINGS);
    if extra > 0 {
        response.warnings.push(format!("and {extra} more"));
    }
    response.warnings = response
        .warnings
        .iter()
        .map(|w| format!("{WARNING_PREFIX}{w}"))
        .collect();
    let out = Review {
        api_version,
        kind: "AdmissionReview",
        response,
    };
    Ok(serde_json::to_vec(&out).expect("invariant: the response serialises"))
}

/// Fills in `response` for `request`.
fn answer(
    request: &Value,
    settings: &Settings,
    namespace_labels: &dyn Fn(&str) -> Option<BTreeMap<String, String>>,
    response: &mut Response,
) {
    let text = |v: Option<&Value>| v.and_then(Value::as_str).unwrap_or_default().to_string();
    let kind = request.get("kind");
    let (group, kind) = (
        text(kind.and_then(|k| k.get("group"))),
        text(kind.and_then(|k| k.get("kind"))),
    );
    let operation = text(request.get("operation"));
    let sub_resource = text(request.get("subResource"));
    if (group.as_str(), kind.as_str()) != ("", "Pod") {
        response.warnings.push(format!(
            "only Pods are injected; this {} was admitted unchanged (check the webhook's rules)",
            if kind.is_empty() {
                "object".to_string()
            } else {
                kind
            }
        ));
        return;
    }
    if operation != "CREATE" || !sub_resource.is_empty() {
        return;
    }
    let Some(object) = request.get("object").filter(|o| !o.is_null()) else {
        response
            .warnings
            .push("no sidecar injected: the request has no object".into());
        return;
    };
    let namespace = match request.get("namespace").and_then(Value::as_str) {
        Some(ns) if !ns.is_empty() => ns.to_string(),
        _ => text(object.get("metadata").and_then(|m| m.get("namespace"))),
    };
    let labels = namespace_labels(&namespace);
    let target = Namespace {
        name: &namespace,
        labels: labels.as_ref(),
    };
    match inject(object, target, settings) {
        Outcome::Injected { pod, warnings } => {
            response.warnings = warnings;
            // Never empty: an injected pod has at least the sidecar more.
            let bytes = patch::to_bytes(&patch::between(object, &pod));
            response.patch_type = Some("JSONPatch");
            response.patch = Some(base64::engine::general_purpose::STANDARD.encode(bytes));
        }
        Outcome::Unchanged { warnings, .. } => response.warnings = warnings,
        Outcome::Refused { problems, warnings } => {
            response.warnings = warnings;
            response.allowed = false;
            let reasons: Vec<String> = problems.iter().map(ToString::to_string).collect();
            response.status = Some(Status {
                status: "Failure",
                message: format!(
                    "pod {} cannot get its sidecar: {} (fix the annotation, or opt the pod out with sinew.dev/inject: \"false\")",
                    subject(&namespace, object),
                    reasons.join("; ")
                ),
                reason: "Invalid",
                code: 422,
            });
        }
    }
}

/// `namespace/name`, or `namespace/generateName*` for a pod a controller is creating.
fn subject(namespace: &str, object: &Value) -> String {
    let meta = object.get("metadata");
    let field = |f: &str| {
        meta.and_then(|m| m.get(f))
            .and_then(Value::as_str)
            .filter(|s| !s.is_empty())
    };
    let name = match (field("name"), field("generateName")) {
        (Some(name), _) => name.to_string(),
        (None, Some(prefix)) => format!("{prefix}*"),
        (None, None) => "(unnamed)".to_string(),
    };
    if namespace.is_empty() {
        name
    } else {
        format!("{namespace}/{name}")
    }
}

#[derive(Serialize)]
#[serde(rename_all = "camelCase")]
struct Review<'a> {
    api_version: &'a str,
    kind: &'static str,
    response: Response,
}

#[derive(Serialize)]
#[serde(rename_all = "camelCase")]
struct Response {
    uid: String,
    allowed: bool,
    #[serde(skip_serializing_if = "Option::is_none")]
    patch_type: Option<&'static str>,
    #[serde(skip_serializing_if = "Option::is_none")]
    patch: Option<String>,
    #[serde(skip_serializing_if = "Vec::is_empty")]
    warnings: Vec<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    status: Option<Status>,
}

/// A `metav1.Status`, as the API server shows a refusal.
#[derive(Serialize)]
struct Status {
    status: &'static str,
    message: String,
    reason: &'static str,
    code: u16,
}
