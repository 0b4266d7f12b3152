//! Shared by the injector's integration tests: fixtures, the webhook's answer as the API server
//! reads it, and the injected pod as the kubelet would see it.

#![allow(dead_code)]

use std::collections::BTreeMap;
use std::path::PathBuf;

use base64::Engine as _;
use serde_json::Value;
use sinew_injector::Settings;
use sinew_injector::sidecar::kubelet_expand;

pub fn fixtures_dir() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures")
}

/// A fixture file's JSON.
pub fn fixture(name: &str) -> Value {
    let path = fixtures_dir().join(name);
    let text = std::fs::read_to_string(&path).unwrap_or_else(|e| panic!("{}: {e}", path.display()));
    serde_json::from_str(&text).unwrap_or_else(|e| panic!("{}: {e}", path.display()))
}

/// No namespace labels known (the API server filtered on them).
pub fn no_labels(_: &str) -> Option<BTreeMap<String, String>> {
    None
}

/// The webhook's answer to `review`, parsed.
pub fn answer(
    review: &Value,
    settings: &Settings,
    labels: &dyn Fn(&str) -> Option<BTreeMap<String, String>>,
) -> Value {
    let body = serde_json::to_vec(review).expect("JSON");
    let bytes = sinew_injector::review(&body, settings, labels).expect("answered");
    serde_json::from_slice(&bytes).expect("the answer is JSON")
}

/// Applies the response's patch to the request's object as the API server does: base64-decode
/// `patch`, read it as a JSON patch, apply it.
pub fn apply(review: &Value, response: &Value) -> Value {
    let r = &response["response"];
    assert_eq!(r["allowed"], true, "{response}");
    assert_eq!(r["patchType"], "JSONPatch", "{response}");
    let encoded = r["patch"].as_str().expect("patch is a string");
    let bytes = base64::engine::general_purpose::STANDARD
        .decode(encoded)
        .expect("patch is base64");
    let patch: json_patch::Patch = serde_json::from_slice(&bytes).expect("a JSON patch array");
    let mut pod = review["request"]["object"].clone();
    json_patch::patch(&mut pod, &patch).expect("the patch applies to the object sent");
    pod
}

/// The pod before, the pod after, and the response.
pub fn injected_review(review: &Value, settings: &Settings) -> (Value, Value, Value) {
    let response = answer(review, settings, &no_labels);
    let pod = apply(review, &response);
    (review["request"]["object"].clone(), pod, response)
}

pub fn injected(file: &str, settings: &Settings) -> (Value, Value, Value) {
    injected_review(&fixture(file), settings)
}

/// The `name`s of a list of containers or volumes.
pub fn names(list: &Value) -> Vec<&str> {
    list.as_array()
        .map(|l| l.iter().filter_map(|c| c["name"].as_str()).collect())
        .unwrap_or_default()
}

/// A container's env by name (each entry without its name).
pub fn env_of(container: &Value) -> serde_json::Map<String, Value> {
    container["env"]
        .as_array()
        .into_iter()
        .flatten()
        .map(|e| {
            let mut e = e.clone();
            let name = e["name"].as_str().unwrap_or_default().to_string();
            e.as_object_mut().map(|o| o.remove("name"));
            (name, e)
        })
        .collect()
}

/// The value of env `name` as the process in `container` sees it in pod `pod` of `namespace`:
/// downward-API fields filled in, `$(VAR)` references expanded in order, as the kubelet does.
pub fn kubelet_env(container: &Value, pod: &str, namespace: &str, name: &str) -> String {
    let mut vars = BTreeMap::new();
    for e in container["env"].as_array().into_iter().flatten() {
        let key = e["name"].as_str().unwrap_or_default().to_string();
        let value = match e["valueFrom"]["fieldRef"]["fieldPath"].as_str() {
            Some("metadata.name") => pod.to_string(),
            Some("metadata.namespace") => namespace.to_string(),
            Some(_) => "x".to_string(),
            None => kubelet_expand(e["value"].as_str().unwrap_or_default(), &vars),
        };
        vars.insert(key, value);
    }
    vars.remove(name)
        .unwrap_or_else(|| panic!("no env {name} in {container}"))
}
