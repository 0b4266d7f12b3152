//! One Kubernetes object of the kinds the mesh reads from users, decoded strictly and validated
//! as the registry and the validating webhook do (`registry::object::decode`). The first input
//! byte picks the kind from [`KINDS`]; the rest is the object's `spec` as YAML or JSON.
//!
//! Adding a kind is one line in [`KINDS`].
//!
//! Contract checked:
//! - never panics, whatever the spec (wrong types, huge numbers, bad regexes, deep nesting);
//! - an accepted object is of the kind asked for, and decoding is deterministic (the same
//!   object gives the same answer twice).

use serde_json::{Value, json};
use sinew_control_plane::registry::object::decode;
use sinew_control_plane::registry::{Age, Origin};

/// (apiVersion, kind) of each kind fuzzed.
pub const KINDS: &[(&str, &str)] = &[
    ("networking.istio.io/v1", "DestinationRule"),
    ("networking.istio.io/v1", "VirtualService"),
    ("telemetry.istio.io/v1", "Telemetry"),
    ("sinew.dev/v1alpha1", "DestinationRule"),
    ("networking.istio.io/v1alpha3", "VirtualService"),
    ("security.istio.io/v1", "PeerAuthentication"),
    ("security.istio.io/v1", "AuthorizationPolicy"),
    ("security.istio.io/v1beta1", "AuthorizationPolicy"),
];

/// Checks one input; returns its outcome.
pub fn check(data: &[u8]) -> String {
    let Some((&pick, spec)) = data.split_first() else {
        return "empty".into();
    };
    let (api_version, kind) = KINDS[pick as usize % KINDS.len()];
    let Ok(spec) = std::str::from_utf8(spec) else {
        return "not utf-8".into();
    };
    let spec: Value = match serde_saphyr::from_str(spec) {
        Ok(v) => v,
        Err(e) => return format!("spec: {}", super::shape(&e.to_string())),
    };
    let object = json!({
        "apiVersion": api_version,
        "kind": kind,
        "metadata": {"name": "fuzz", "namespace": "default"},
        "spec": spec,
    });
    let origin = Origin::Object {
        kind: "fuzz",
        namespace: Some("default".into()),
        name: "fuzz".into(),
    };
    let run = || {
        let mut warnings = Vec::new();
        let r = decode(&object, &origin, Age::Order(0), &mut warnings);
        (format!("{r:?}"), r, warnings.len())
    };
    let (first, result, warnings) = run();
    assert_eq!(first, run().0, "decoding the same object twice differs");
    match result {
        Ok(Some(o)) => {
            let debug = format!("{o:?}");
            assert!(
                debug.starts_with(kind),
                "{kind} decoded as {}",
                &debug[..debug.len().min(40)]
            );
            format!("{kind}: ok, {} warnings", warnings.min(3))
        }
        Ok(None) => format!("{kind}: skipped"),
        Err(rejections) => {
            let reasons: Vec<String> = rejections
                .iter()
                .take(2)
                .map(|r| super::shape(&r.reason))
                .collect();
            format!("{kind}: {}", reasons.join("; "))
        }
    }
}
