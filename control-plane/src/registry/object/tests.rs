use serde_json::json;

use super::*;

fn api_origin(kind: &'static str, namespace: &str, name: &str) -> Origin {
    Origin::Object {
        kind,
        namespace: Some(namespace.into()),
        name: name.into(),
    }
}

fn created(seconds: i64, namespace: &str, name: &str) -> Age {
    Age::Created {
        seconds,
        name: name.into(),
        namespace: namespace.into(),
    }
}

/// Decodes `value` as an API object of `shop`, returning the object or the rejections and the
/// warnings.
fn decode_api(
    kind: &'static str,
    value: serde_json::Value,
) -> (Result<Option<Object>, Vec<Rejection>>, Vec<Rejection>) {
    let name = value["metadata"]["name"]
        .as_str()
        .unwrap_or_default()
        .to_string();
    let origin = api_origin(kind, "shop", &name);
    let mut warnings = Vec::new();
    let result = decode(
        &value,
        &origin,
        created(1_700_000_000, "shop", &name),
        &mut warnings,
    );
    (result, warnings)
}

fn reasons(rejections: &[Rejection]) -> Vec<&str> {
    rejections.iter().map(|r| r.reason.as_str()).collect()
}

#[test]
fn an_api_destination_rule_becomes_an_entry_with_its_origin_and_age() {
    let (result, warnings) = decode_api(
        "DestinationRule",
        json!({
            "apiVersion": "networking.istio.io/v1",
            "kind": "DestinationRule",
            "metadata": {"name": "reviews", "namespace": "shop", "creationTimestamp": "2023-11-14T22:13:20Z"},
            "spec": {"host": "reviews", "subsets": [{"name": "v1", "labels": {"version": "v1"}}]},
            "status": {"conditions": [{"type": "Accepted", "status": "True"}]},
        }),
    );
    let Ok(Some(Object::DestinationRule(rule))) = result else {
        panic!("expected a rule, got {result:?}");
    };
    assert_eq!(
        (rule.namespace.as_str(), rule.name.as_str()),
        ("shop", "reviews")
    );
    assert_eq!(rule.host, "reviews");
    assert_eq!(rule.age, created(1_700_000_000, "shop", "reviews"));
    assert_eq!(rule.origin.to_string(), "DestinationRule shop/reviews");
    assert_eq!(rule.typed.subsets.as_ref().map(Vec::len), Some(1));
    assert!(warnings.is_empty(), "{warnings:?}");
}

#[test]
fn unknown_api_fields_are_rejected_by_path_with_the_field_meant() {
    let (result, _) = decode_api(
        "DestinationRule",
        json!({
            "apiVersion": "networking.istio.io/v1",
            "kind": "DestinationRule",
            "metadata": {"name": "reviews", "namespace": "shop"},
            "spec": {"host": "reviews", "trafficPolicy": {"loadBalancer": {"simpel": "ROUND_ROBIN"}}},
        }),
    );
    let rejections = result.expect_err("an unknown field is refused");
    assert_eq!(
        rejections,
        [Rejection {
            path: "spec.trafficPolicy.loadBalancer.simpel".into(),
            reason: "spec.trafficPolicy.loadBalancer.simpel: unknown field; did you mean simple?"
                .into(),
        }]
    );
}

#[test]
fn validation_errors_keep_their_field_paths() {
    let (result, _) = decode_api(
        "DestinationRule",
        json!({
            "apiVersion": "networking.istio.io/v1",
            "kind": "DestinationRule",
            "metadata": {"name": "reviews", "namespace": "shop"},
            "spec": {"host": "reviews", "trafficPolicy": {"outlierDetection": {"interval": "0.5ms"}}},
        }),
    );
    let rejections = result.expect_err("a sub-millisecond interval is refused");
    assert_eq!(rejections.len(), 1, "{rejections:?}");
    assert_eq!(
        rejections[0].path,
        "spec.trafficPolicy.outlierDetection.interval"
    );
    assert!(
        rejections[0]
            .reason
            .starts_with("spec.trafficPolicy.outlierDetection.interval: "),
        "{rejections:?}"
    );
}

#[test]
fn a_check_of_the_whole_object_has_no_path_and_no_file_words() {
    let (result, _) = decode_api(
        "Service",
        json!({
            "apiVersion": "v1",
            "kind": "Service",
            "metadata": {"name": "reviews", "namespace": "shop"},
            "spec": {"selector": {"app": "reviews"}},
        }),
    );
    let rejections = result.expect_err("a Service without ports is refused");
    assert_eq!(reasons(&rejections), ["spec.ports is required"]);
    assert_eq!(rejections[0].path, "");
}

#[test]
fn an_api_pod_keeps_its_declared_ip() {
    let (result, _) = decode_api(
        "Pod",
        json!({
            "apiVersion": "v1",
            "kind": "Pod",
            "metadata": {"name": "reviews-0", "namespace": "shop", "labels": {"app": "reviews"}},
            "spec": {"containers": [{"name": "app"}], "serviceAccountName": "reviews"},
            "status": {"podIP": "10.0.0.7", "phase": "Running"},
        }),
    );
    let Ok(Some(Object::Pod(pod))) = result else {
        panic!("expected a pod, got {result:?}");
    };
    assert_eq!(pod.declared_ip, Some("10.0.0.7".parse().expect("test IP")));
    assert_eq!(pod.ip, pod.declared_ip);
    assert_eq!(pod.service_account, "reviews");
}

#[test]
fn a_gateway_only_virtual_service_is_kept_out_of_the_mesh_with_a_warning() {
    let (result, warnings) = decode_api(
        "VirtualService",
        json!({
            "apiVersion": "networking.istio.io/v1",
            "kind": "VirtualService",
            "metadata": {"name": "edge", "namespace": "shop"},
            "spec": {"hosts": ["reviews"], "gateways": ["edge-gw"], "http": [{"route": [{"destination": {"host": "reviews"}}]}]},
        }),
    );
    let Ok(Some(Object::VirtualService(vs, mesh))) = result else {
        panic!("expected a VirtualService, got {result:?}");
    };
    assert!(!mesh);
    assert!(vs.lines.is_empty(), "API objects have no lines");
    assert_eq!(warnings.len(), 1, "{warnings:?}");
    assert!(
        warnings[0].reason.contains("does not include \"mesh\""),
        "{warnings:?}"
    );
}

#[test]
fn kinds_the_registry_does_not_use_are_skipped_and_misspelt_ones_refused() {
    let (result, _) = decode_api(
        "ConfigMap",
        json!({"apiVersion": "v1", "kind": "ConfigMap", "metadata": {"name": "c"}}),
    );
    assert!(matches!(result, Ok(None)), "{result:?}");
    let (result, _) = decode_api(
        "Deploymnet",
        json!({"apiVersion": "apps/v1", "kind": "Deploymnet", "metadata": {"name": "d"}}),
    );
    let rejections = result.expect_err("a kind apps/v1 lacks");
    assert!(
        rejections[0].reason.contains("Deployment"),
        "{rejections:?}"
    );
}

#[test]
fn a_typed_pod_gets_the_same_checks_as_a_decoded_one() {
    use k8s_openapi::api::core::v1::Pod;
    let value = json!({
        "apiVersion": "v1",
        "kind": "Pod",
        "metadata": {"name": "reviews-0", "namespace": "shop"},
        "spec": {"containers": [{"name": "app", "ports": [{"containerPort": 70000}]}]},
    });
    let typed: Pod = serde_json::from_value(value.clone()).expect("test pod");
    let origin = api_origin("Pod", "shop", "reviews-0");
    let direct = pod(typed, &origin).expect_err("port out of range");
    let (decoded, _) = decode_api("Pod", value);
    assert_eq!(decoded.expect_err("port out of range"), [direct]);
}
