//! The webhook's answers to AdmissionReviews shaped like a 1.33 API server's (fixtures in
//! `tests/fixtures/`): the patch is decoded from the response exactly as the API server does,
//! applied with `json-patch`, and the resulting pod checked field by field.

use std::collections::BTreeMap;

use base64::Engine as _;
use serde_json::{Value, json};
use sinew_injector::{Settings, review};

mod support;
use support::*;

#[test]
fn a_deployments_pod_with_only_a_generate_name_gets_the_native_sidecar() {
    let (before, pod, response) = injected("deployment-pod.json", &Settings::default());
    assert_eq!(
        response["response"]["uid"],
        "0d7f3a2e-4c1b-4b8e-9a57-6c2f1e8d9b01"
    );
    assert!(response["response"].get("warnings").is_none(), "{response}");

    // Init containers: ours, the proxy right after as a native sidecar.
    let inits = names(&pod["spec"]["initContainers"]);
    assert_eq!(inits, ["sinew-init", "sinew-proxy"]);
    let init = &pod["spec"]["initContainers"][0];
    assert_eq!(init["image"], "ghcr.io/sinew-mesh/sinew-proxy:0.1.0");
    assert_eq!(init["command"], json!(["sinew-proxy"]));
    assert_eq!(init["args"], json!(["init"]));
    assert_eq!(
        init["securityContext"],
        json!({
            "runAsUser": 0, "runAsGroup": 0, "runAsNonRoot": false, "privileged": false,
            "allowPrivilegeEscalation": false, "readOnlyRootFilesystem": false,
            "capabilities": {"add": ["NET_ADMIN", "NET_RAW"], "drop": ["ALL"]},
            "seccompProfile": {"type": "RuntimeDefault"}
        })
    );
    assert_eq!(
        init["resources"],
        json!({"requests": {"cpu": "10m", "memory": "10Mi"}, "limits": {"cpu": "100m", "memory": "50Mi"}})
    );

    let proxy = &pod["spec"]["initContainers"][1];
    assert_eq!(proxy["restartPolicy"], "Always");
    assert_eq!(proxy["args"], json!(["run"]));
    assert!(proxy.get("lifecycle").is_none());
    let ready = json!({"httpGet": {"path": "/healthz/ready", "port": 15021, "scheme": "HTTP"},
                       "periodSeconds": 1, "timeoutSeconds": 3, "failureThreshold": 600});
    assert_eq!(proxy["startupProbe"], ready);
    assert_eq!(proxy["readinessProbe"]["httpGet"], ready["httpGet"]);
    assert_eq!(
        proxy["securityContext"],
        json!({
            "runAsUser": 1337, "runAsGroup": 1337, "runAsNonRoot": true, "privileged": false,
            "allowPrivilegeEscalation": false, "readOnlyRootFilesystem": true,
            "capabilities": {"drop": ["ALL"]}, "seccompProfile": {"type": "RuntimeDefault"}
        })
    );
    assert_eq!(
        proxy["resources"],
        json!({"requests": {"cpu": "10m", "memory": "40Mi"}, "limits": {"cpu": "2", "memory": "256Mi"}})
    );
    assert_eq!(
        proxy["volumeMounts"],
        json!([
            {"name": "sinew-token", "mountPath": "/var/run/sinew/token", "readOnly": true},
            {"name": "sinew-root-cert", "mountPath": "/var/run/sinew/root-cert", "readOnly": true},
            {"name": "sinew-data", "mountPath": "/var/lib/sinew", "readOnly": false}
        ])
    );
    assert_eq!(
        proxy["ports"],
        json!([{"name": "sinew-metrics", "containerPort": 15020, "protocol": "TCP"},
               {"name": "sinew-health", "containerPort": 15021, "protocol": "TCP"}])
    );

    // The pod's name comes from the downward API: at admission it has none.
    let env = env_of(proxy);
    assert_eq!(
        env["SINEW_POD_NAME"],
        json!({"valueFrom": {"fieldRef": {"fieldPath": "metadata.name"}}})
    );
    assert_eq!(
        env["SINEW_POD_NAMESPACE"],
        json!({"valueFrom": {"fieldRef": {"fieldPath": "metadata.namespace"}}})
    );
    assert_eq!(
        env["SINEW_POD_IP"],
        json!({"valueFrom": {"fieldRef": {"fieldPath": "status.podIP"}}})
    );
    assert_eq!(
        env["SINEW_SERVICE_ACCOUNT"],
        json!({"valueFrom": {"fieldRef": {"fieldPath": "spec.serviceAccountName"}}})
    );
    assert_eq!(env["SINEW_LOG"], json!({"value": "info"}));
    assert_eq!(env["SINEW_OTLP_ENDPOINT"], json!({"value": ""}));
    assert_eq!(env["SINEW_TRACE_SAMPLING"], json!({"value": "1"}));
    let config = kubelet_env(
        proxy,
        "reviews-v1-7d9f8c6b5-x2x9k",
        "shop",
        "SINEW_PROXY_CONFIG",
    );
    let config: Value = serde_json::from_str(&config).expect("the config is JSON");
    assert_eq!(config["controlPlane"]["pod"], "reviews-v1-7d9f8c6b5-x2x9k");
    assert_eq!(config["controlPlane"]["namespace"], "shop");
    assert_eq!(
        config["controlPlane"]["address"],
        "sinew-control-plane.sinew-system.svc:15012"
    );
    assert_eq!(
        config["controlPlane"]["tokenFile"],
        "/var/run/sinew/token/token"
    );
    assert_eq!(
        config["controlPlane"]["rootCertFile"],
        "/var/run/sinew/root-cert/root-cert.pem"
    );

    // The app's container: only its probe changed, to the prober on 15020.
    let app = &pod["spec"]["containers"][0];
    let mut expected_app = before["spec"]["containers"][0].clone();
    expected_app["livenessProbe"]["httpGet"] =
        json!({"path": "/app-health/reviews/livez", "port": 15020, "scheme": "HTTP"});
    assert_eq!(app, &expected_app);
    assert_eq!(names(&pod["spec"]["containers"]), ["reviews"]);
    let probers = kubelet_env(proxy, "x", "shop", "SINEW_APP_PROBERS");
    assert_eq!(
        serde_json::from_str::<Value>(&probers).expect("JSON"),
        json!({"/app-health/reviews/livez": {
            "httpGet": {"path": "/health", "port": 9080, "scheme": "HTTP", "host": "", "httpHeaders": []},
            "timeoutSeconds": 1}})
    );

    // The pod's volumes kept, ours appended.
    assert_eq!(
        names(&pod["spec"]["volumes"]),
        [
            "config",
            "kube-api-access-x7k2p",
            "sinew-token",
            "sinew-root-cert",
            "sinew-data"
        ]
    );
    assert_eq!(
        pod["spec"]["volumes"][2],
        json!({"name": "sinew-token", "projected": {"sources": [{"serviceAccountToken":
            {"audience": "sinew-ca", "expirationSeconds": 3600, "path": "token"}}]}})
    );
    assert_eq!(
        pod["spec"]["volumes"][3],
        json!({"name": "sinew-root-cert", "configMap": {"name": "sinew-root-cert",
            "items": [{"key": "root-cert.pem", "path": "root-cert.pem"}]}})
    );
    assert_eq!(
        pod["spec"]["volumes"][4],
        json!({"name": "sinew-data", "emptyDir": {}})
    );

    // Labels and annotations: ours added, the pod's kept.
    assert_eq!(
        pod["metadata"]["labels"],
        json!({"app": "reviews", "version": "v1", "pod-template-hash": "7d9f8c6b5",
               "security.sinew.dev/tlsMode": "sinew"})
    );
    let annotations = &pod["metadata"]["annotations"];
    assert_eq!(
        annotations["kubectl.kubernetes.io/restartedAt"],
        "2026-12-01T10:00:00Z"
    );
    assert_eq!(annotations["prometheus.io/scrape"], "true");
    assert_eq!(annotations["prometheus.io/port"], "15020");
    assert_eq!(annotations["prometheus.io/path"], "/metrics");
    assert_eq!(
        annotations["kubectl.kubernetes.io/default-container"],
        "reviews"
    );
    let status: Value =
        serde_json::from_str(annotations["sinew.dev/status"].as_str().expect("a string"))
            .expect("JSON");
    assert_eq!(
        status,
        json!({"nativeSidecar": true, "initContainers": ["sinew-init", "sinew-proxy"], "containers": [],
               "volumes": ["sinew-token", "sinew-root-cert", "sinew-data"],
               "proxyImage": "ghcr.io/sinew-mesh/sinew-proxy:0.1.0"})
    );

    // Nothing else moved: ownerReferences, managedFields, defaults, status.
    for field in [
        "ownerReferences",
        "managedFields",
        "generateName",
        "namespace",
    ] {
        assert_eq!(pod["metadata"][field], before["metadata"][field], "{field}");
    }
    for field in [
        "tolerations",
        "serviceAccountName",
        "securityContext",
        "restartPolicy",
        "priority",
    ] {
        assert_eq!(pod["spec"][field], before["spec"][field], "{field}");
    }
    assert_eq!(pod["status"], before["status"]);
}

#[test]
fn a_jobs_pod_gets_a_native_sidecar_so_the_job_can_complete() {
    let (before, pod, _) = injected("job-pod.json", &Settings::default());
    assert_eq!(
        pod["spec"]["restartPolicy"], "Never",
        "the Job's policy stays"
    );
    assert_eq!(
        names(&pod["spec"]["initContainers"]),
        ["sinew-init", "sinew-proxy"]
    );
    assert_eq!(pod["spec"]["initContainers"][1]["restartPolicy"], "Always");
    assert_eq!(names(&pod["spec"]["containers"]), ["pi"]);
    assert_eq!(
        pod["spec"]["containers"][0],
        before["spec"]["containers"][0]
    );
    // The pod's own security context stays; the containers' own override it for ours.
    assert_eq!(
        pod["spec"]["securityContext"],
        json!({"runAsNonRoot": true, "runAsUser": 1000, "fsGroup": 2000})
    );
    assert_eq!(
        pod["spec"]["initContainers"][0]["securityContext"]["runAsNonRoot"],
        false
    );
    assert_eq!(
        pod["metadata"]["finalizers"],
        before["metadata"]["finalizers"]
    );
    assert!(
        env_of(&pod["spec"]["initContainers"][1])
            .get("SINEW_APP_PROBERS")
            .is_none(),
        "no probes, no probers"
    );
}

#[test]
fn the_pods_init_containers_run_after_the_proxy_and_every_probe_kind_is_handled() {
    let (before, pod, response) = injected("init-and-probes-pod.json", &Settings::default());
    assert!(response["response"].get("warnings").is_none(), "{response}");
    assert_eq!(
        names(&pod["spec"]["initContainers"]),
        ["sinew-init", "sinew-proxy", "migrate", "log-shipper"]
    );
    // The traffic annotation became an init flag, the memory override the proxy's request.
    assert_eq!(
        pod["spec"]["initContainers"][0]["args"],
        json!(["init", "--exclude-outbound-ports=5432"])
    );
    let proxy = &pod["spec"]["initContainers"][1];
    assert_eq!(proxy["resources"]["requests"]["memory"], "64Mi");
    // The migrate job is untouched; the app's own native sidecar has its probe rewritten too.
    assert_eq!(
        pod["spec"]["initContainers"][2],
        before["spec"]["initContainers"][0]
    );
    assert_eq!(
        pod["spec"]["initContainers"][3]["readinessProbe"],
        json!({"httpGet": {"path": "/app-health/log-shipper/readyz", "port": 15020, "scheme": "HTTP"}, "periodSeconds": 5})
    );
    let api = &pod["spec"]["containers"][0];
    assert_eq!(
        api["livenessProbe"],
        json!({"httpGet": {"path": "/app-health/api/livez", "port": 15020, "scheme": "HTTP"}, "periodSeconds": 10, "timeoutSeconds": 2})
    );
    assert_eq!(
        api["readinessProbe"],
        json!({"httpGet": {"path": "/app-health/api/readyz", "port": 15020, "scheme": "HTTP"}, "periodSeconds": 5})
    );
    assert_eq!(
        api["startupProbe"],
        json!({"httpGet": {"path": "/app-health/api/startupz", "port": 15020, "scheme": "HTTP"}, "failureThreshold": 30, "periodSeconds": 2})
    );
    assert_eq!(
        pod["spec"]["containers"][1], before["spec"]["containers"][1],
        "exec probes stay"
    );
    let probers: Value =
        serde_json::from_str(&kubelet_env(proxy, "api-0", "shop", "SINEW_APP_PROBERS"))
            .expect("JSON");
    assert_eq!(
        probers,
        json!({
            "/app-health/api/livez": {"httpGet": {"path": "/livez", "port": 8080, "scheme": "HTTP", "host": "",
                "httpHeaders": [{"name": "X-Probe", "value": "kubelet"}]}, "timeoutSeconds": 2},
            "/app-health/api/readyz": {"tcpSocket": {"port": 8080}, "timeoutSeconds": 1},
            "/app-health/api/startupz": {"grpc": {"port": 9090, "service": "api.v1.Api"}, "timeoutSeconds": 1},
            "/app-health/log-shipper/readyz": {"httpGet": {"path": "/api/v1/health", "port": 2020, "scheme": "HTTP",
                "host": "", "httpHeaders": []}, "timeoutSeconds": 1}
        })
    );
    // The pod's name is known here, and still comes from the downward API.
    let config = kubelet_env(proxy, "api-0", "shop", "SINEW_PROXY_CONFIG");
    assert!(config.contains("\"pod\":\"api-0\""), "{config}");
}

#[test]
fn probe_rewriting_can_be_turned_off_per_pod() {
    for annotation in [
        "sinew.dev/rewrite-app-probes",
        "sidecar.istio.io/rewriteAppHTTPProbers",
    ] {
        let mut review = fixture("init-and-probes-pod.json");
        review["request"]["object"]["metadata"]["annotations"][annotation] = json!("false");
        let (before, pod, _) = injected_review(&review, &Settings::default());
        assert_eq!(
            pod["spec"]["containers"], before["spec"]["containers"],
            "{annotation}"
        );
        assert!(
            env_of(&pod["spec"]["initContainers"][1])
                .get("SINEW_APP_PROBERS")
                .is_none()
        );
    }
}

#[test]
fn the_fallback_puts_the_proxy_first_with_a_post_start_hold() {
    let settings = Settings::from_yaml("nativeSidecar: false\n").expect("valid");
    let (before, pod, _) = injected("init-and-probes-pod.json", &settings);
    // The app's init containers keep the plain network: ours run after them.
    assert_eq!(
        names(&pod["spec"]["initContainers"]),
        ["migrate", "log-shipper", "sinew-init"]
    );
    assert_eq!(
        names(&pod["spec"]["containers"]),
        ["sinew-proxy", "api", "cache"]
    );
    let proxy = &pod["spec"]["containers"][0];
    assert!(proxy.get("restartPolicy").is_none());
    assert_eq!(
        proxy["lifecycle"],
        json!({"postStart": {"exec": {"command": [
            "sinew-proxy", "wait",
            "--url=http://127.0.0.1:15021/healthz/ready", "--timeout-seconds=60",
        ]}}})
    );
    assert_eq!(
        pod["metadata"]["annotations"]["kubectl.kubernetes.io/default-container"],
        "api"
    );
    assert_eq!(
        pod["spec"]["initContainers"][0],
        before["spec"]["initContainers"][0]
    );
    // Per pod, the other way round.
    let mut review = fixture("init-and-probes-pod.json");
    review["request"]["object"]["metadata"]["annotations"]["sinew.dev/native-sidecar"] =
        json!("true");
    let (_, pod, _) = injected_review(&review, &settings);
    assert_eq!(
        names(&pod["spec"]["initContainers"])[..2],
        ["sinew-init", "sinew-proxy"]
    );
}

#[test]
fn pods_the_rules_leave_alone_are_allowed_without_a_patch() {
    for file in [
        "opted-out-pod.json",
        "host-network-pod.json",
        "kube-system-pod.json",
        "already-injected-pod.json",
    ] {
        let response = answer(&fixture(file), &Settings::default(), &no_labels);
        let r = &response["response"];
        assert_eq!(r["allowed"], true, "{file}: {response}");
        assert!(
            r.get("patch").is_none() && r.get("patchType").is_none(),
            "{file}: {response}"
        );
        assert!(
            r.get("warnings").is_none(),
            "{file}: a plain no needs no warning: {response}"
        );
    }
}

#[test]
fn injecting_an_injected_pod_again_changes_nothing() {
    for file in [
        "deployment-pod.json",
        "job-pod.json",
        "init-and-probes-pod.json",
    ] {
        for native in [true, false] {
            let settings =
                Settings::from_yaml(&format!("nativeSidecar: {native}\n")).expect("valid");
            let (_, pod, _) = injected(file, &settings);
            let mut again = fixture(file);
            again["request"]["object"] = pod;
            let response = answer(&again, &settings, &no_labels);
            assert_eq!(response["response"]["allowed"], true);
            assert!(
                response["response"].get("patch").is_none(),
                "{file} native={native}: {response}"
            );
        }
    }
}

#[test]
fn the_namespace_labels_are_checked_when_known() {
    let review = fixture("deployment-pod.json");
    let not_enabled = |_: &str| Some(BTreeMap::from([("team".to_string(), "shop".to_string())]));
    let response = answer(&review, &Settings::default(), &not_enabled);
    assert!(response["response"].get("patch").is_none(), "{response}");
    assert_eq!(
        response["response"]["warnings"],
        json!([
            "sinew-injector: no sidecar injected: namespace shop is not labelled sinew-injection=enabled"
        ])
    );
    let istio = |_: &str| {
        Some(BTreeMap::from([
            ("sinew-injection".to_string(), "enabled".to_string()),
            ("istio-injection".to_string(), "enabled".to_string()),
        ]))
    };
    let response = answer(&review, &Settings::default(), &istio);
    assert!(response["response"].get("patch").is_none());
    assert_eq!(
        response["response"]["warnings"],
        json!([
            "sinew-injector: no sidecar injected: the namespace is labelled istio-injection=enabled, so Istio injects there; remove that label to use Sinew"
        ])
    );
    let enabled = |ns: &str| {
        assert_eq!(ns, "shop", "asked about the request's namespace");
        Some(BTreeMap::from([(
            "sinew-injection".to_string(),
            "enabled".to_string(),
        )]))
    };
    let response = answer(&review, &Settings::default(), &enabled);
    assert_eq!(response["response"]["patchType"], "JSONPatch");
    // Istio's label saying anything but `enabled` leaves the namespace to us.
    let istio_disabled = |_: &str| {
        Some(BTreeMap::from([
            ("sinew-injection".to_string(), "enabled".to_string()),
            ("istio-injection".to_string(), "disabled".to_string()),
        ]))
    };
    let response = answer(&review, &Settings::default(), &istio_disabled);
    assert_eq!(response["response"]["patchType"], "JSONPatch", "{response}");
}

#[test]
fn the_response_is_the_review_the_api_server_reads_byte_for_byte() {
    let review = fixture("job-pod.json");
    let body = serde_json::to_vec(&review).expect("JSON");
    let bytes = review::review(&body, &Settings::default(), &no_labels).expect("answered");
    // Recompute the patch the same way and compare the whole response's bytes: the patch is the
    // base64 of the JSON patch array (kube-rs #1781 sends a list of numbers instead).
    let object = &review["request"]["object"];
    let sinew_injector::Outcome::Injected { pod, .. } = sinew_injector::inject(
        object,
        sinew_injector::Namespace {
            name: "batch",
            labels: None,
        },
        &Settings::default(),
    ) else {
        panic!("injected")
    };
    let patch = sinew_injector::patch::to_bytes(&sinew_injector::patch::between(object, &pod));
    assert!(
        patch.starts_with(b"[{\"op\":"),
        "a JSON array of operations"
    );
    let expected = format!(
        r#"{{"apiVersion":"admission.k8s.io/v1","kind":"AdmissionReview","response":{{"uid":"3a1c9e70-55d2-4f0b-8e21-9f4a6b7c8d02","allowed":true,"patchType":"JSONPatch","patch":"{}"}}}}"#,
        base64::engine::general_purpose::STANDARD.encode(&patch)
    );
    assert_eq!(String::from_utf8(bytes).expect("UTF-8"), expected);
}

#[test]
fn a_v1beta1_review_is_answered_as_v1beta1() {
    let mut review = fixture("job-pod.json");
    review["apiVersion"] = json!("admission.k8s.io/v1beta1");
    let response = answer(&review, &Settings::default(), &no_labels);
    assert_eq!(response["apiVersion"], "admission.k8s.io/v1beta1");
    assert_eq!(response["response"]["patchType"], "JSONPatch");
}

#[test]
fn an_impossible_annotation_refuses_the_pod_naming_it() {
    let mut review = fixture("deployment-pod.json");
    let annotations = &mut review["request"]["object"]["metadata"]["annotations"];
    annotations["sinew.dev/proxy-cpu"] = json!("lots");
    annotations["traffic.sidecar.istio.io/excludeOutboundPorts"] = json!("5432,db");
    let response = answer(&review, &Settings::default(), &no_labels);
    let r = &response["response"];
    assert_eq!(r["allowed"], false, "{response}");
    assert!(r.get("patch").is_none());
    assert_eq!(r["status"]["code"], 422);
    assert_eq!(r["status"]["reason"], "Invalid");
    let message = r["status"]["message"].as_str().expect("a message");
    assert!(
        message.starts_with("pod shop/reviews-v1-7d9f8c6b5-* cannot get its sidecar: "),
        "{message}"
    );
    assert!(
        message.contains("annotation sinew.dev/proxy-cpu: \"lots\" is not a resource quantity"),
        "{message}"
    );
    assert!(
        message.contains(
            "annotation traffic.sidecar.istio.io/excludeOutboundPorts: \"db\" is not a port"
        ),
        "{message}"
    );
}

#[test]
fn other_kinds_and_operations_pass_untouched() {
    let mut update = fixture("deployment-pod.json");
    update["request"]["operation"] = json!("UPDATE");
    let response = answer(&update, &Settings::default(), &no_labels);
    assert_eq!(response["response"]["allowed"], true);
    assert!(
        response["response"].get("patch").is_none()
            && response["response"].get("warnings").is_none()
    );

    let mut status = fixture("deployment-pod.json");
    status["request"]["subResource"] = json!("status");
    let response = answer(&status, &Settings::default(), &no_labels);
    assert!(response["response"].get("patch").is_none());

    let mut deployment = fixture("deployment-pod.json");
    deployment["request"]["kind"] = json!({"group": "apps", "version": "v1", "kind": "Deployment"});
    let response = answer(&deployment, &Settings::default(), &no_labels);
    assert_eq!(response["response"]["allowed"], true);
    assert!(response["response"].get("patch").is_none());
    assert_eq!(
        response["response"]["warnings"],
        json!([
            "sinew-injector: only Pods are injected; this Deployment was admitted unchanged (check the webhook's rules)"
        ])
    );
}

// === hostile input ===

#[test]
fn bodies_that_are_not_reviews_are_bad_requests_not_panics() {
    let valid = serde_json::to_vec(&fixture("deployment-pod.json")).expect("JSON");
    let nested = format!("{}{}", "[".repeat(100_000), "]".repeat(100_000));
    let cases: Vec<(&str, Vec<u8>, &str)> = vec![
        ("empty", vec![], "not JSON"),
        ("not JSON", b"hello".to_vec(), "not JSON"),
        ("truncated", valid[..valid.len() / 2].to_vec(), "not JSON"),
        ("non-UTF-8", vec![0xff, 0xfe, b'{', 0x80], "not JSON"),
        ("deeply nested", nested.into_bytes(), "not JSON"),
        (
            "another kind",
            br#"{"apiVersion":"v1","kind":"Pod"}"#.to_vec(),
            "not an AdmissionReview",
        ),
        ("an array", b"[1,2]".to_vec(), "not an AdmissionReview"),
        (
            "no request",
            br#"{"apiVersion":"admission.k8s.io/v1","kind":"AdmissionReview"}"#.to_vec(),
            "no request.uid",
        ),
        (
            "a numeric uid",
            br#"{"apiVersion":"admission.k8s.io/v1","kind":"AdmissionReview","request":{"uid":7}}"#
                .to_vec(),
            "no request.uid",
        ),
    ];
    for (what, body, says) in cases {
        let err = review::review(&body, &Settings::default(), &no_labels).expect_err(what);
        assert!(err.to_string().contains(says), "{what}: {err}");
    }
}

/// A change made to a fixture's pod.
type Edit = Box<dyn Fn(&mut Value)>;

#[test]
fn reviews_of_pods_that_cannot_be_read_are_allowed_unchanged_with_a_warning() {
    let cases: Vec<(&str, Edit, &str)> = vec![
        (
            "containers null",
            Box::new(|o| o["spec"]["containers"] = Value::Null),
            "spec.containers is empty",
        ),
        (
            "no spec",
            Box::new(|o| {
                o.as_object_mut().expect("object").remove("spec");
            }),
            "it has no spec",
        ),
        (
            "a Deployment as the object",
            Box::new(|o| o["kind"] = json!("Deployment")),
            "the pod cannot be read",
        ),
        (
            "containers a string",
            Box::new(|o| o["spec"]["containers"] = json!("app")),
            "the pod cannot be read",
        ),
        (
            "hostNetwork a string",
            Box::new(|o| o["spec"]["hostNetwork"] = json!("yes")),
            "the pod cannot be read",
        ),
        (
            "labels a list",
            Box::new(|o| o["metadata"]["labels"] = json!(["a"])),
            "the pod cannot be read",
        ),
        (
            "the object a number",
            Box::new(|o| *o = json!(42)),
            "not a JSON object",
        ),
        (
            "a nameless container",
            Box::new(|o| o["spec"]["containers"][0]["name"] = json!("")),
            "no name",
        ),
        (
            "a Windows pod",
            Box::new(|o| o["spec"]["os"] = json!({"name": "windows"})),
            "only Linux",
        ),
        (
            "our volume name taken",
            Box::new(|o| o["spec"]["volumes"][0]["name"] = json!("sinew-data")),
            "already has a volume named sinew-data",
        ),
        (
            "our init container name taken",
            Box::new(|o| {
                o["spec"]["initContainers"] = json!([{"name": "sinew-init", "image": "x"}])
            }),
            "already has a container named sinew-init",
        ),
    ];
    for (what, edit, says) in cases {
        let mut review = fixture("deployment-pod.json");
        edit(&mut review["request"]["object"]);
        let response = answer(&review, &Settings::default(), &no_labels);
        let r = &response["response"];
        assert_eq!(r["allowed"], true, "{what}: {response}");
        assert!(r.get("patch").is_none(), "{what}: {response}");
        let warning = r["warnings"][0].as_str().unwrap_or_default();
        assert!(
            warning.starts_with("sinew-injector: no sidecar injected: "),
            "{what}: {response}"
        );
        assert!(warning.contains(says), "{what}: {warning}");
    }
    let mut no_object = fixture("deployment-pod.json");
    no_object["request"]["object"] = Value::Null;
    let response = answer(&no_object, &Settings::default(), &no_labels);
    assert_eq!(response["response"]["allowed"], true);
    assert_eq!(
        response["response"]["warnings"],
        json!(["sinew-injector: no sidecar injected: the request has no object"])
    );
}

#[test]
fn a_huge_pod_is_answered() {
    // Near the API server's own object size limit: 3,000 env variables of 400 bytes.
    let mut review = fixture("deployment-pod.json");
    let env: Vec<Value> = (0..3000)
        .map(|i| json!({"name": format!("V{i}"), "value": "x".repeat(400)}))
        .collect();
    review["request"]["object"]["spec"]["containers"][0]["env"] = Value::Array(env);
    let (before, pod, _) = injected_review(&review, &Settings::default());
    assert_eq!(
        pod["spec"]["containers"][0]["env"],
        before["spec"]["containers"][0]["env"]
    );
}

#[test]
fn fields_of_wrong_types_elsewhere_in_the_request_do_not_matter() {
    let mut review = fixture("deployment-pod.json");
    review["request"]["dryRun"] = json!("maybe");
    review["request"]["options"] = json!(12);
    review["request"]["userInfo"] = Value::Null;
    let response = answer(&review, &Settings::default(), &no_labels);
    assert_eq!(response["response"]["patchType"], "JSONPatch");
    let mut review = fixture("deployment-pod.json");
    review["request"]["operation"] = json!(5);
    let response = answer(&review, &Settings::default(), &no_labels);
    assert_eq!(response["response"]["allowed"], true);
    assert!(
        response["response"].get("patch").is_none(),
        "not a CREATE it knows"
    );
}

#[test]
fn dollar_signs_in_probe_headers_survive_the_kubelets_expansion() {
    let mut review = fixture("init-and-probes-pod.json");
    review["request"]["object"]["spec"]["containers"][0]["livenessProbe"]["httpGet"]["httpHeaders"] =
        json!([{"name": "Authorization", "value": "Bearer $(SINEW_POD_NAME)$$"}]);
    let (_, pod, _) = injected_review(&review, &Settings::default());
    let probers = kubelet_env(
        &pod["spec"]["initContainers"][1],
        "api-0",
        "shop",
        "SINEW_APP_PROBERS",
    );
    let probers: Value = serde_json::from_str(&probers).expect("JSON");
    assert_eq!(
        probers["/app-health/api/livez"]["httpGet"]["httpHeaders"][0]["value"],
        "Bearer $(SINEW_POD_NAME)$$"
    );
}

#[test]
fn a_pod_full_of_odd_annotations_gets_a_bounded_answer() {
    // The API server allows 256 KiB of annotations: 2,000 long `sinew.dev/` keys.
    let mut review = fixture("deployment-pod.json");
    let annotations = &mut review["request"]["object"]["metadata"]["annotations"];
    for i in 0..2000 {
        annotations[format!("sinew.dev/{i:0>100}")] = json!("x");
    }
    annotations["sinew.dev/proxy-cpus"] = json!("1");
    let response = answer(&review, &Settings::default(), &no_labels);
    let warnings = response["response"]["warnings"]
        .as_array()
        .expect("warnings");
    assert_eq!(warnings.len(), 17, "16 and a count");
    assert_eq!(warnings[16], "sinew-injector: and 1985 more");
    assert_eq!(
        response["response"]["patchType"], "JSONPatch",
        "still injected"
    );
}
