//! Validating admission for DestinationRules and VirtualServices (`networking.istio.io` v1,
//! v1beta1, v1alpha3 and `sinew.dev/v1alpha1`), Telemetries (`telemetry.istio.io` v1,
//! v1alpha1) and PeerAuthentications and AuthorizationPolicies (`security.istio.io` v1,
//! v1beta1): the API server asks before it stores one, and the answer is the one
//! `sinewctl apply` would give.
//!
//! What it promises:
//! - **Same checks as local mode**: the object goes through `registry::object::decode`, strictly
//!   (unknown fields refused by path) and with the same value checks; nothing is checked here
//!   that the registry would not refuse, so an object the webhook admits is never refused later
//!   on its own merits (cross-object warnings stay warnings).
//! - **Every reason at once**: a refusal lists every reason, each naming its field
//!   (`spec.trafficPolicy.loadBalancer.simple: …`), in the message kubectl prints and as
//!   `details.causes` (one per field).
//! - **Warnings, not refusals**, for what is accepted but not applied (kubectl prints them as
//!   `Warning: …`).
//! - **Only what is ours**: deletions, `status` writes and every other kind are allowed without
//!   reading the object, so a misconfigured webhook rule cannot block unrelated writes.
//!
//! [`review`] is pure (one review in, one out); [`serve`] answers it over HTTPS, on the same
//! listener as the mutating webhook `/inject` ([`inject`], the sidecar injector).

use kube::core::admission::{AdmissionRequest, AdmissionResponse, AdmissionReview, Operation};
use kube::core::response::{StatusCause, StatusDetails};
use kube::core::{DynamicObject, Status};
use serde::de::DeserializeOwned;
use serde_json::Value;

use crate::registry::file::strict as file_strict;
use crate::registry::istio;
use crate::registry::object::{self, Rejection};
use crate::registry::{Age, Origin};

pub mod inject;
mod serve;

pub use self::inject::Injector;
pub use self::serve::{MAX_BODY, PATH, Webhooks, handle, serve};

/// The (group, kind)s Sinew validates.
const KINDS: [(&str, &str); 7] = [
    ("networking.istio.io", "DestinationRule"),
    ("networking.istio.io", "VirtualService"),
    ("sinew.dev", "DestinationRule"),
    ("sinew.dev", "VirtualService"),
    ("telemetry.istio.io", "Telemetry"),
    ("security.istio.io", "PeerAuthentication"),
    ("security.istio.io", "AuthorizationPolicy"),
];

/// Answers one AdmissionReview. A review without a request (not something an API server
/// sends) is answered as invalid rather than panicking.
pub fn review(review: AdmissionReview<DynamicObject>) -> AdmissionReview<DynamicObject> {
    let request: AdmissionRequest<DynamicObject> = match review.try_into() {
        Ok(request) => request,
        Err(_) => return AdmissionResponse::invalid("the review has no request").into_review(),
    };
    decide(&request).into_review()
}

/// [`review`] on the HTTP body as it arrives, answering with the body to send back. A body that
/// is not an AdmissionReview gets an "invalid" response (HTTP 200, as the API server expects).
pub fn review_json(body: &[u8]) -> Vec<u8> {
    let answer = match serde_json::from_slice::<AdmissionReview<DynamicObject>>(body) {
        Ok(request) => review(request),
        Err(e) => {
            let mut invalid =
                AdmissionResponse::invalid(format!("cannot read the AdmissionReview: {e}"));
            // The API server discards an answer whose uid is not its request's: answer to the
            // uid when the body has one, even though the rest could not be read.
            invalid.uid = serde_json::from_slice::<Value>(body)
                .ok()
                .and_then(|v| v.pointer("/request/uid")?.as_str().map(String::from))
                .unwrap_or_default();
            invalid.into_review()
        }
    };
    // Serialising our own response cannot fail (string keys, no non-finite floats).
    serde_json::to_vec(&answer).unwrap_or_default()
}

/// The answer to one request.
fn decide(request: &AdmissionRequest<DynamicObject>) -> AdmissionResponse {
    let mut response = AdmissionResponse::from(request);
    let ours = KINDS.contains(&(request.kind.group.as_str(), request.kind.kind.as_str()));
    let writes_spec = matches!(request.operation, Operation::Create | Operation::Update)
        && request.sub_resource.is_none();
    if !ours || !writes_spec {
        return response;
    }
    let Some(object) = &request.object else {
        return deny(
            response,
            request,
            vec![Rejection::whole("the request has no object")],
        );
    };
    let value = match as_api_object(object, request) {
        Ok(value) => value,
        Err(e) => {
            let reason = format!("cannot read the object: {e}");
            return deny(response, request, vec![Rejection::whole(reason)]);
        }
    };
    let kind: &'static str = match request.kind.kind.as_str() {
        "DestinationRule" => "DestinationRule",
        "Telemetry" => "Telemetry",
        "PeerAuthentication" => "PeerAuthentication",
        "AuthorizationPolicy" => "AuthorizationPolicy",
        _ => "VirtualService",
    };
    let origin = Origin::Object {
        kind,
        namespace: request.namespace.clone(),
        name: request.name.clone(),
    };
    let age = Age::Created {
        seconds: 0,
        name: request.name.clone(),
        namespace: request.namespace.clone().unwrap_or_default(),
    };
    let mut warnings = Vec::new();
    match object::decode(&value, &origin, age, &mut warnings) {
        Ok(_) => {
            if !warnings.is_empty() {
                response.warnings = Some(warnings.into_iter().map(|w| w.reason).collect());
            }
            response
        }
        Err(mut rejections) => {
            name_the_field(kind, &value, &mut rejections);
            deny(response, request, rejections)
        }
    }
}

/// The object as the registry decodes API objects: `apiVersion` and `kind` as requested (the
/// API server sends them; a test or an older server may not), and its namespace.
fn as_api_object(
    object: &DynamicObject,
    request: &AdmissionRequest<DynamicObject>,
) -> Result<Value, serde_json::Error> {
    let mut value = serde_json::to_value(object)?;
    if let Value::Object(map) = &mut value {
        let gvk = &request.kind;
        map.entry("apiVersion")
            .or_insert_with(|| Value::String(format!("{}/{}", gvk.group, gvk.version)));
        map.entry("kind")
            .or_insert_with(|| Value::String(gvk.kind.clone()));
        if let (Some(namespace), Some(Value::Object(meta))) =
            (&request.namespace, map.get_mut("metadata"))
        {
            meta.entry("namespace")
                .or_insert_with(|| Value::String(namespace.clone()));
        }
    }
    Ok(value)
}

/// A value of the wrong type stops the JSON decode with a message that names no field; the
/// file source's decoder, which knows positions, finds the field. Only the error path pays.
fn name_the_field(kind: &str, value: &Value, rejections: &mut [Rejection]) {
    let [only] = rejections else { return };
    if !only.path.is_empty() {
        return;
    }
    let named = match kind {
        "DestinationRule" => explain::<istio::DestinationRuleDoc>(value),
        "Telemetry" => explain::<istio::telemetry::TelemetryDoc>(value),
        "PeerAuthentication" => explain::<istio::peer_authentication::PeerAuthenticationDoc>(value),
        "AuthorizationPolicy" => {
            explain::<istio::authorization_policy::AuthorizationPolicyDoc>(value)
        }
        _ => explain::<istio::virtual_service::VirtualServiceDoc>(value),
    };
    if let Some(named) = named {
        // `path: reason`, or the reason alone when the error is about the document itself.
        only.path = named
            .split_once(": ")
            .map(|(p, _)| p)
            .filter(|p| !p.is_empty() && !p.contains(' '))
            .unwrap_or_default()
            .to_string();
        only.reason = named;
    }
}

/// The decode error of `value` as `T`, worded with its field path, if it is about one field.
fn explain<T: DeserializeOwned>(value: &Value) -> Option<String> {
    let text = serde_saphyr::to_string(value).ok()?;
    let error = file_strict::decode::<T>(&text).err()?;
    file_strict::Nodes::of(&text).explain(&error)
}

/// Refuses the request with every reason: joined in the message kubectl prints, and one cause
/// per reason for clients that read fields.
fn deny(
    mut response: AdmissionResponse,
    request: &AdmissionRequest<DynamicObject>,
    rejections: Vec<Rejection>,
) -> AdmissionResponse {
    let reasons: Vec<&str> = rejections.iter().map(|r| r.reason.as_str()).collect();
    let message = format!(
        "{} {} is invalid: {}",
        request.kind.kind,
        subject(request),
        reasons.join("; ")
    );
    let causes = rejections
        .iter()
        .map(|r| StatusCause {
            reason: "FieldValueInvalid".to_string(),
            message: r.reason.clone(),
            field: r.path.clone(),
        })
        .collect();
    let details = StatusDetails {
        name: request.name.clone(),
        group: request.kind.group.clone(),
        kind: request.kind.kind.clone(),
        uid: String::new(),
        causes,
        retry_after_seconds: 0,
    };
    response.allowed = false;
    response.result = Status::failure(&message, "Invalid")
        .with_code(422)
        .with_details(details);
    response
}

/// `namespace/name`; a create with `generateName` has its name only in the object.
fn subject(request: &AdmissionRequest<DynamicObject>) -> String {
    let from_object = request
        .object
        .as_ref()
        .and_then(|o| o.metadata.name.as_deref());
    let name = match (request.name.as_str(), from_object) {
        ("", Some(name)) => name,
        ("", None) => "(unnamed)",
        (name, _) => name,
    };
    match &request.namespace {
        Some(ns) => format!("{ns}/{name}"),
        None => name.to_string(),
    }
}

#[cfg(test)]
mod tests;
