//! `AdmissionReview` bodies as the control plane's two webhooks receive them from the API
//! server (or anyone who reaches port 15017): the validating webhook
//! (`cluster::webhook::review_json`) and the sidecar injector (`sinew_injector::review`).
//!
//! Contract checked:
//! - never panics, whatever the body;
//! - every answer is an `AdmissionReview` in JSON with a `response`; when the body had a
//!   `request.uid`, the answer's `response.uid` is that uid;
//! - an injection patch decodes (base64 of a JSON patch) and applies cleanly to the pod in the
//!   request, as the API server would apply it.

use base64::Engine as _;
use serde_json::Value;
use sinew_control_plane::cluster::webhook::review_json;
use sinew_injector::{Settings, review};
use std::sync::OnceLock;

/// The validating webhook.
pub fn check_validate(data: &[u8]) -> String {
    let answer = review_json(data);
    let answer: Value = serde_json::from_slice(&answer).expect("the answer is JSON");
    let response = answered(data, &answer);
    let allowed = response.get("allowed").and_then(Value::as_bool);
    let message = response
        .pointer("/status/message")
        .and_then(Value::as_str)
        .map(super::shape)
        .unwrap_or_default();
    format!("allowed {allowed:?}: {}", &message[..message.len().min(60)])
}

/// The sidecar injector.
pub fn check_inject(data: &[u8]) -> String {
    static SETTINGS: OnceLock<Settings> = OnceLock::new();
    let settings = SETTINGS.get_or_init(Settings::default);
    let answer = match review(data, settings, &|_| None) {
        Ok(a) => a,
        Err(e) => return format!("bad request: {}", super::shape(&e.0)),
    };
    let answer: Value = serde_json::from_slice(&answer).expect("the answer is JSON");
    let response = answered(data, &answer);
    if let Some(patch) = response.get("patch") {
        let patch = patch.as_str().expect("the patch is a string");
        let bytes = base64::engine::general_purpose::STANDARD
            .decode(patch)
            .expect("the patch is base64");
        let patch: json_patch::Patch =
            serde_json::from_slice(&bytes).expect("the patch is a JSON patch");
        let request: Value = serde_json::from_slice(data).expect("an answered body is JSON");
        let mut pod = request
            .pointer("/request/object")
            .cloned()
            .unwrap_or(Value::Null);
        json_patch::patch(&mut pod, &patch)
            .unwrap_or_else(|e| panic!("the patch does not apply to the pod: {e}"));
        return "patched".into();
    }
    let warning = response
        .pointer("/warnings/0")
        .and_then(Value::as_str)
        .map(super::shape)
        .unwrap_or_default();
    format!(
        "allowed {:?}: {}",
        response.get("allowed").and_then(Value::as_bool),
        &warning[..warning.len().min(60)]
    )
}

/// The answer's `response`, checked against the request's kind and uid.
fn answered<'a>(body: &[u8], answer: &'a Value) -> &'a Value {
    let body: Option<Value> = serde_json::from_slice(body).ok();
    // The validating webhook echoes the review's type (it reads any `kind`), so only a review
    // that says AdmissionReview is sure to be answered as one.
    if body.as_ref().and_then(|b| b.get("kind")) == Some(&Value::from("AdmissionReview")) {
        assert_eq!(
            answer.get("kind").and_then(Value::as_str),
            Some("AdmissionReview"),
            "the answer is not an AdmissionReview"
        );
    }
    let response = answer.get("response").expect("the answer has a response");
    let uid = body
        .as_ref()
        .and_then(|b| b.pointer("/request/uid")?.as_str());
    if let Some(uid) = uid {
        assert_eq!(
            response.get("uid").and_then(Value::as_str),
            Some(uid),
            "the answer's uid is not the request's"
        );
    }
    response
}
