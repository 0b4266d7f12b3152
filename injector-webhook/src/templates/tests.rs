use serde_json::json;

use super::*;

fn template(labels: Value) -> Value {
    json!({
        "metadata": {"labels": labels},
        "spec": {"containers": [{"name": "app", "image": "app", "readinessProbe": {"tcpSocket": {"port": 80}}}]},
    })
}

fn changed(object: &Value) -> Value {
    match inject_object(object, &Settings::default()) {
        Injected::Changed { object, .. } => object,
        other => panic!("not injected: {other:?}"),
    }
}

#[test]
fn every_workload_kind_has_its_template_injected_in_place() {
    let cases = [
        ("apps/v1", "Deployment", "/spec/template"),
        ("apps/v1", "StatefulSet", "/spec/template"),
        ("apps/v1", "DaemonSet", "/spec/template"),
        ("apps/v1", "ReplicaSet", "/spec/template"),
        ("batch/v1", "Job", "/spec/template"),
        ("v1", "ReplicationController", "/spec/template"),
        ("batch/v1", "CronJob", "/spec/jobTemplate/spec/template"),
    ];
    for (api_version, kind, at) in cases {
        let mut object = json!({"apiVersion": api_version, "kind": kind,
                                "metadata": {"name": "w", "namespace": "shop"}, "spec": {"replicas": 2}});
        let parts: Vec<&str> = at.trim_start_matches('/').split('/').collect();
        let mut slot = &mut object;
        for key in &parts {
            slot = &mut slot[*key];
        }
        *slot = json!({"metadata": {"labels": {"app": "w"}}, "spec": template(json!({}))["spec"].clone()});
        let out = changed(&object);
        let t = out.pointer(at).expect("the template is still there");
        assert_eq!(
            t["spec"]["initContainers"][1]["name"], "sinew-proxy",
            "{kind}"
        );
        assert_eq!(
            t["metadata"]["labels"]["security.sinew.dev/tlsMode"], "sinew",
            "{kind}"
        );
        assert_eq!(t["metadata"]["labels"]["app"], "w", "{kind}");
        assert!(
            t.get("apiVersion").is_none() && t.get("kind").is_none(),
            "{kind}: a template, not a pod"
        );
        assert_eq!(out["metadata"], object["metadata"], "{kind}");
        if kind != "CronJob" {
            assert_eq!(
                out["spec"]["replicas"], 2,
                "{kind}: the rest of the spec kept"
            );
        }
    }
}

#[test]
fn the_template_is_injected_as_the_webhook_injects_its_pod() {
    let deployment = json!({"apiVersion": "apps/v1", "kind": "Deployment",
        "metadata": {"name": "web", "namespace": "shop"},
        "spec": {"selector": {"matchLabels": {"app": "web"}}, "template": template(json!({"app": "web"}))}});
    let out = changed(&deployment);
    // The pod a ReplicaSet would create from the original template, injected by the webhook's code.
    let pod = json!({"apiVersion": "v1", "kind": "Pod",
        "metadata": {"generateName": "web-5f6d7-", "namespace": "shop", "labels": {"app": "web"}},
        "spec": deployment["spec"]["template"]["spec"].clone()});
    let ns = Namespace {
        name: "shop",
        labels: None,
    };
    let Outcome::Injected {
        pod: by_webhook, ..
    } = inject(&pod, ns, &Settings::default())
    else {
        panic!("injected")
    };
    assert_eq!(out["spec"]["template"]["spec"], by_webhook["spec"]);
    assert_eq!(
        out["spec"]["template"]["metadata"]["labels"],
        by_webhook["metadata"]["labels"]
    );
    assert_eq!(
        out["spec"]["template"]["metadata"]["annotations"],
        by_webhook["metadata"]["annotations"]
    );
    // And a pod stamped from the output is already injected: the webhook leaves it alone.
    let stamped = json!({"apiVersion": "v1", "kind": "Pod",
        "metadata": out["spec"]["template"]["metadata"].clone(), "spec": out["spec"]["template"]["spec"].clone()});
    assert!(matches!(
        inject(&stamped, ns, &Settings::default()),
        Outcome::Unchanged {
            why: crate::Unchanged::Skipped(crate::Skip::AlreadyInjected),
            ..
        }
    ));
}

#[test]
fn objects_that_are_not_injected_are_unchanged_with_the_reason() {
    let cases = [
        (
            json!({"apiVersion": "apps/v1", "kind": "Deployment", "metadata": {"name": "d"}, "spec": {}}),
            "Deployment has no spec.template",
        ),
        (
            json!({"apiVersion": "apps/v1", "kind": "Deployment", "metadata": {"name": "d"},
                "spec": {"template": {"metadata": {"labels": {"sinew.dev/inject": "false"}}, "spec": template(json!({}))["spec"].clone()}}}),
            "opts out",
        ),
        (
            json!({"apiVersion": "v1", "kind": "Pod", "metadata": {"name": "p", "namespace": "kube-system"},
                "spec": template(json!({}))["spec"].clone()}),
            "pods in kube-system are never injected",
        ),
        (
            json!({"apiVersion": "v1", "kind": "Pod", "metadata": {"name": "p"},
                "spec": {"hostNetwork": true, "containers": [{"name": "a"}]}}),
            "hostNetwork",
        ),
    ];
    for (object, why) in cases {
        match inject_object(&object, &Settings::default()) {
            Injected::Unchanged { why: reason, .. } => {
                assert!(reason.contains(why), "{object}: {reason}")
            }
            other => panic!("{object}: {other:?}"),
        }
    }
}

#[test]
fn kinds_without_pods_pass_through() {
    for object in [
        json!({"apiVersion": "v1", "kind": "Service", "metadata": {"name": "s"}}),
        json!({"apiVersion": "apps/v2", "kind": "Deployment", "metadata": {"name": "future"}}),
        json!("just a string"),
        json!(null),
    ] {
        assert_eq!(
            inject_object(&object, &Settings::default()),
            Injected::PassThrough,
            "{object}"
        );
    }
}

#[test]
fn a_list_is_injected_item_by_item() {
    let list = json!({"apiVersion": "v1", "kind": "List", "items": [
        {"apiVersion": "v1", "kind": "Service", "metadata": {"name": "s"}},
        {"apiVersion": "v1", "kind": "Pod", "metadata": {"name": "p"}, "spec": template(json!({}))["spec"].clone()},
    ]});
    let out = changed(&list);
    assert_eq!(out["items"][0], list["items"][0]);
    assert_eq!(
        out["items"][1]["spec"]["initContainers"][0]["name"],
        "sinew-init"
    );
}

#[test]
fn an_impossible_annotation_in_a_template_refuses_it() {
    let deployment = json!({"apiVersion": "apps/v1", "kind": "Deployment", "metadata": {"name": "d"},
        "spec": {"template": {"metadata": {"annotations": {"sinew.dev/log-level": "loud"}},
                              "spec": template(json!({}))["spec"].clone()}}});
    match inject_object(&deployment, &Settings::default()) {
        Injected::Refused { problems, .. } => {
            assert_eq!(problems[0].annotation, "sinew.dev/log-level")
        }
        other => panic!("{other:?}"),
    }
}
