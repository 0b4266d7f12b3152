use serde_json::json;

use super::*;

fn pod(labels: serde_json::Value, annotations: serde_json::Value, spec: serde_json::Value) -> Pod {
    serde_json::from_value(json!({
        "apiVersion": "v1", "kind": "Pod",
        "metadata": {"generateName": "web-7d9f-", "labels": labels, "annotations": annotations},
        "spec": spec,
    }))
    .expect("a pod")
}

fn app() -> Pod {
    pod(
        json!({}),
        json!({}),
        json!({"containers": [{"name": "app", "image": "app"}]}),
    )
}

fn labels(pairs: &[(&str, &str)]) -> BTreeMap<String, String> {
    pairs
        .iter()
        .map(|(k, v)| (k.to_string(), v.to_string()))
        .collect()
}

fn in_ns(pod: &Pod, name: &str, ns_labels: Option<&BTreeMap<String, String>>) -> Decision {
    decide(
        pod,
        Namespace {
            name,
            labels: ns_labels,
        },
    )
}

#[test]
fn a_pod_in_a_labelled_namespace_is_injected() {
    let enabled = labels(&[("sinew-injection", "enabled")]);
    assert_eq!(in_ns(&app(), "shop", Some(&enabled)), Decision::Inject);
}

#[test]
fn the_namespace_label_must_say_enabled() {
    for ns in [
        labels(&[]),
        labels(&[("sinew-injection", "disabled")]),
        labels(&[("sinew-injection", "Enabled")]),
    ] {
        assert_eq!(
            in_ns(&app(), "shop", Some(&ns)),
            Decision::Skip(Skip::NamespaceNotEnabled("shop".into())),
            "{ns:?}"
        );
    }
}

#[test]
fn a_pod_saying_true_is_not_enough_without_the_namespace_label() {
    let p = pod(
        json!({"sinew.dev/inject": "true"}),
        json!({"sinew.dev/inject": "true"}),
        json!({"containers": [{"name": "app"}]}),
    );
    assert_eq!(
        in_ns(&p, "shop", Some(&labels(&[]))),
        Decision::Skip(Skip::NamespaceNotEnabled("shop".into()))
    );
}

#[test]
fn istio_injection_enabled_and_any_revision_are_istios_even_beside_ours() {
    let istios = [
        (("istio-injection", "enabled"), "istio-injection=enabled"),
        (("istio.io/rev", "default"), "istio.io/rev=default"),
        (("istio.io/rev", "canary"), "istio.io/rev=canary"),
        (("istio.io/rev", ""), "istio.io/rev="),
    ];
    for ((key, value), named) in istios {
        let alone = labels(&[(key, value)]);
        let both = labels(&[(key, value), ("sinew-injection", "enabled")]);
        for ns in [alone, both] {
            let d = in_ns(&app(), "shop", Some(&ns));
            assert_eq!(
                d,
                Decision::Skip(Skip::IstioNamespace(named.into())),
                "{ns:?}"
            );
            let Decision::Skip(skip) = d else {
                unreachable!()
            };
            assert!(skip.is_surprising());
        }
    }
    // A revision beside istio-injection=disabled: Istio would not inject, but the label says
    // Istio is meant to be there; we keep out, as the webhook's selector does.
    let both = labels(&[
        ("istio-injection", "disabled"),
        ("istio.io/rev", "canary"),
        ("sinew-injection", "enabled"),
    ]);
    assert_eq!(
        in_ns(&app(), "shop", Some(&both)),
        Decision::Skip(Skip::IstioNamespace("istio.io/rev=canary".into()))
    );
}

#[test]
fn istio_injection_other_than_enabled_is_not_istios() {
    for value in ["disabled", "Enabled", "true", ""] {
        let ours = labels(&[("istio-injection", value), ("sinew-injection", "enabled")]);
        assert_eq!(
            in_ns(&app(), "shop", Some(&ours)),
            Decision::Inject,
            "{value:?}"
        );
        // Neither does it enable Sinew.
        let alone = labels(&[("istio-injection", value)]);
        assert_eq!(
            in_ns(&app(), "shop", Some(&alone)),
            Decision::Skip(Skip::NamespaceNotEnabled("shop".into())),
            "{value:?}"
        );
    }
}

#[test]
fn opt_out_by_label_or_annotation_only_with_false() {
    let enabled = labels(&[("sinew-injection", "enabled")]);
    let by_label = pod(
        json!({"sinew.dev/inject": "false"}),
        json!({}),
        json!({"containers": [{"name": "a"}]}),
    );
    let by_annotation = pod(
        json!({}),
        json!({"sinew.dev/inject": "false"}),
        json!({"containers": [{"name": "a"}]}),
    );
    assert_eq!(
        in_ns(&by_label, "shop", Some(&enabled)),
        Decision::Skip(Skip::OptedOut(Place::Label))
    );
    assert_eq!(
        in_ns(&by_annotation, "shop", Some(&enabled)),
        Decision::Skip(Skip::OptedOut(Place::Annotation))
    );
    // Kubernetes label values are case-sensitive, and the webhook's objectSelector matches
    // exactly "false": anything else is no opt-out, here too.
    for value in ["False", "no", "0", ""] {
        let p = pod(
            json!({"sinew.dev/inject": value}),
            json!({}),
            json!({"containers": [{"name": "a"}]}),
        );
        assert_eq!(
            in_ns(&p, "shop", Some(&enabled)),
            Decision::Inject,
            "{value:?}"
        );
    }
}

#[test]
fn host_network_and_system_namespaces_never_whatever_the_labels_say() {
    let enabled = labels(&[("sinew-injection", "enabled")]);
    let host = pod(
        json!({}),
        json!({}),
        json!({"hostNetwork": true, "containers": [{"name": "a"}]}),
    );
    assert_eq!(
        in_ns(&host, "shop", Some(&enabled)),
        Decision::Skip(Skip::HostNetwork)
    );
    assert_eq!(
        in_ns(&host, "shop", None),
        Decision::Skip(Skip::HostNetwork)
    );
    for ns in SYSTEM_NAMESPACES {
        assert_eq!(
            in_ns(&app(), ns, Some(&enabled)),
            Decision::Skip(Skip::SystemNamespace(ns.into()))
        );
        assert_eq!(
            in_ns(&app(), ns, None),
            Decision::Skip(Skip::SystemNamespace(ns.into()))
        );
    }
}

#[test]
fn an_injected_pod_is_recognised_by_its_status_or_its_container() {
    let enabled = labels(&[("sinew-injection", "enabled")]);
    let by_status = pod(
        json!({}),
        json!({"sinew.dev/status": "{}"}),
        json!({"containers": [{"name": "a"}]}),
    );
    let native = pod(
        json!({}),
        json!({}),
        json!({"initContainers": [{"name": "sinew-proxy", "restartPolicy": "Always"}], "containers": [{"name": "a"}]}),
    );
    let regular = pod(
        json!({}),
        json!({}),
        json!({"containers": [{"name": "sinew-proxy"}, {"name": "a"}]}),
    );
    for p in [by_status, native, regular] {
        assert_eq!(
            in_ns(&p, "shop", Some(&enabled)),
            Decision::Skip(Skip::AlreadyInjected)
        );
    }
    let istio = pod(
        json!({}),
        json!({}),
        json!({"containers": [{"name": "a"}, {"name": "istio-proxy"}]}),
    );
    assert_eq!(
        in_ns(&istio, "shop", Some(&enabled)),
        Decision::Skip(Skip::IstioSidecar)
    );
}

#[test]
fn unknown_namespace_labels_leave_the_namespace_rule_to_the_selector() {
    assert_eq!(in_ns(&app(), "shop", None), Decision::Inject);
}

#[test]
fn every_reason_says_why_in_words() {
    let cases = [
        (Skip::HostNetwork, "hostNetwork"),
        (Skip::SystemNamespace("kube-system".into()), "kube-system"),
        (
            Skip::OptedOut(Place::Label),
            "label sinew.dev/inject: \"false\"",
        ),
        (
            Skip::OptedOut(Place::Annotation),
            "annotation sinew.dev/inject",
        ),
        (Skip::AlreadyInjected, "already has the sidecar"),
        (Skip::IstioSidecar, "istio-proxy"),
        (
            Skip::IstioNamespace("istio.io/rev=canary".into()),
            "labelled istio.io/rev=canary, so Istio injects there",
        ),
        (
            Skip::NamespaceNotEnabled("shop".into()),
            "namespace shop is not labelled sinew-injection=enabled",
        ),
    ];
    for (skip, words) in cases {
        assert!(skip.to_string().contains(words), "{skip}");
    }
}
