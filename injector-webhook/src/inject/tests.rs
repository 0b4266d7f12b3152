use serde_json::json;

use super::*;

fn pod(annotations: Value) -> Value {
    json!({
        "apiVersion": "v1", "kind": "Pod",
        "metadata": {"name": "web-0", "annotations": annotations},
        "spec": {"containers": [{"name": "web", "image": "web"}, {"name": "helper", "image": "h"}]},
    })
}

fn injected(pod: &Value) -> (Value, Vec<String>) {
    let ns = Namespace {
        name: "shop",
        labels: None,
    };
    match inject(pod, ns, &Settings::default()) {
        Outcome::Injected { pod, warnings } => (pod, warnings),
        other => panic!("not injected: {other:?}"),
    }
}

#[test]
fn the_apps_own_prometheus_annotations_are_kept_with_a_warning() {
    let (out, warnings) = injected(&pod(
        json!({"prometheus.io/scrape": "true", "prometheus.io/port": "9102"}),
    ));
    let annotations = &out["metadata"]["annotations"];
    assert_eq!(annotations["prometheus.io/port"], "9102");
    assert!(annotations.get("prometheus.io/path").is_none());
    assert_eq!(warnings.len(), 1, "{warnings:?}");
    assert!(
        warnings[0].contains("prometheus.io/* annotations are kept"),
        "{warnings:?}"
    );
}

#[test]
fn a_default_container_chosen_by_the_pod_is_kept() {
    let (out, _) = injected(&pod(
        json!({"kubectl.kubernetes.io/default-container": "helper"}),
    ));
    assert_eq!(
        out["metadata"]["annotations"]["kubectl.kubernetes.io/default-container"],
        "helper"
    );
    let (out, _) = injected(&pod(Value::Null));
    assert_eq!(
        out["metadata"]["annotations"]["kubectl.kubernetes.io/default-container"],
        "web"
    );
}

#[test]
fn warnings_from_annotations_come_with_the_injected_pod() {
    let (_, warnings) = injected(&pod(json!({
        "sidecar.istio.io/interceptionMode": "TPROXY",
        "sinew.dev/proxy-cpus": "1",
    })));
    assert_eq!(warnings.len(), 2, "{warnings:?}");
}

#[test]
fn the_same_pod_always_gives_the_same_result() {
    let p = pod(json!({}));
    assert_eq!(injected(&p), injected(&p));
}

#[test]
fn the_inbound_mode_annotation_reaches_the_proxy_config() {
    let (out, _) = injected(&pod(json!({"sinew.dev/inbound-mode": "STRICT"})));
    let env = &out["spec"]["initContainers"][1]["env"];
    let config = env
        .as_array()
        .and_then(|e| e.iter().find(|v| v["name"] == ENV_PROXY_CONFIG))
        .and_then(|v| v["value"].as_str())
        .expect("the config env");
    assert!(config.ends_with(",\"inboundMode\":\"STRICT\"}"), "{config}");
}

#[test]
fn unsurprising_skips_carry_no_warning_and_surprising_ones_do() {
    let mut opted = pod(json!({"sinew.dev/inject": "false"}));
    let ns = Namespace {
        name: "shop",
        labels: None,
    };
    let Outcome::Unchanged { why, warnings } = inject(&opted, ns, &Settings::default()) else {
        panic!("not skipped")
    };
    assert!(matches!(why, Unchanged::Skipped(Skip::OptedOut(_))));
    assert!(warnings.is_empty());
    opted["metadata"]["annotations"] = json!({});
    opted["spec"]["containers"][1]["name"] = json!("istio-proxy");
    let Outcome::Unchanged { warnings, .. } = inject(&opted, ns, &Settings::default()) else {
        panic!("not skipped")
    };
    assert_eq!(
        warnings,
        [
            "no sidecar injected: the pod already has Istio's sidecar (istio-proxy); one mesh per pod"
        ]
    );
}
