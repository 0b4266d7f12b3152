use std::collections::BTreeMap;

use base64::Engine as _;
use serde_json::json;

use super::*;

const MANIFEST: &str = r#"# The shop's web tier.
apiVersion: v1
kind: Service
metadata:
  name: web     # a comment kept as written
  namespace: shop
spec:
  selector: {app: web}
  ports: [{port: 80, targetPort: http}]
---
apiVersion: apps/v1
kind: Deployment
metadata:
  name: web
  namespace: shop
spec:
  replicas: 2
  selector:
    matchLabels: {app: web}
  template:
    metadata:
      labels: {app: web}
      annotations:
        traffic.sidecar.istio.io/excludeOutboundPorts: "5432"
    spec:
      containers:
        - name: web
          image: web:1.2
          ports: [{name: http, containerPort: 8080}]
          readinessProbe:
            httpGet: {path: /ready, port: http}
---
apiVersion: batch/v1
kind: CronJob
metadata: {name: report, namespace: shop}
spec:
  schedule: "0 3 * * *"
  jobTemplate:
    spec:
      template:
        spec:
          restartPolicy: OnFailure
          containers: [{name: report, image: report:1}]
---
apiVersion: v1
kind: Pod
metadata:
  name: debug
  namespace: shop
  labels: {sinew.dev/inject: "false"}
spec:
  containers: [{name: sh, image: busybox}]
"#;

fn run(text: &str, settings: &Settings) -> (anyhow::Result<String>, String) {
    let mut err = Vec::new();
    let out = inject_text(text, "m.yaml", settings, &mut err);
    (out, String::from_utf8(err).expect("UTF-8"))
}

fn docs(text: &str) -> Vec<Value> {
    split(text)
        .iter()
        .filter(|d| !is_blank(d.text))
        .map(|d| serde_saphyr::from_str(d.text).expect("YAML"))
        .collect()
}

#[test]
fn workloads_are_injected_and_everything_else_printed_as_written() {
    let (out, err) = run(MANIFEST, &Settings::default());
    let out = out.expect("injected");
    let parts = split(&out);
    let inputs = split(MANIFEST);
    assert_eq!(parts.len(), 4);
    assert_eq!(
        parts[0].text, inputs[0].text,
        "the Service, comments and all"
    );
    assert_eq!(parts[3].text, inputs[3].text, "the opted-out pod");
    assert!(
        err.contains("Pod shop/debug: not injected: the pod opts out"),
        "{err}"
    );

    let out = docs(&out);
    let template = &out[1]["spec"]["template"];
    let names: Vec<&str> = template["spec"]["initContainers"]
        .as_array()
        .expect("init containers")
        .iter()
        .filter_map(|c| c["name"].as_str())
        .collect();
    assert_eq!(names, ["sinew-init", "sinew-proxy"]);
    assert_eq!(
        template["spec"]["initContainers"][0]["args"],
        json!(["init", "--exclude-outbound-ports=5432"])
    );
    assert_eq!(out[1]["spec"]["replicas"], 2);
    let job = &out[2]["spec"]["jobTemplate"]["spec"]["template"];
    assert_eq!(job["spec"]["initContainers"][1]["restartPolicy"], "Always");
    assert_eq!(job["spec"]["restartPolicy"], "OnFailure");
    // Strings stay strings through YAML: "true" and "15020" are not a bool and a number.
    assert_eq!(
        template["metadata"]["annotations"]["prometheus.io/scrape"],
        json!("true")
    );
    assert_eq!(
        template["metadata"]["annotations"]["prometheus.io/port"],
        json!("15020")
    );
    assert_eq!(
        template["metadata"]["labels"]["security.sinew.dev/tlsMode"],
        json!("sinew")
    );
}

#[test]
fn the_result_is_the_webhooks() {
    // The pod the Deployment's ReplicaSet would create, sent to the webhook's code as the API
    // server sends it; its patch applied as the API server applies it.
    let input = docs(MANIFEST);
    let template = &input[1]["spec"]["template"];
    let pod = json!({"apiVersion": "v1", "kind": "Pod",
        "metadata": {"generateName": "web-5d8f-", "namespace": "shop",
                     "labels": template["metadata"]["labels"], "annotations": template["metadata"]["annotations"]},
        "spec": template["spec"]});
    let review = json!({"apiVersion": "admission.k8s.io/v1", "kind": "AdmissionReview",
        "request": {"uid": "u-1", "kind": {"group": "", "version": "v1", "kind": "Pod"},
                    "namespace": "shop", "operation": "CREATE", "object": pod}});
    let labels = |_: &str| -> Option<BTreeMap<String, String>> {
        Some(BTreeMap::from([(
            "sinew-injection".into(),
            "enabled".into(),
        )]))
    };
    let answer =
        sinew_injector::review(review.to_string().as_bytes(), &Settings::default(), &labels)
            .expect("answered");
    let answer: Value = serde_json::from_slice(&answer).expect("JSON");
    let patch = base64::engine::general_purpose::STANDARD
        .decode(answer["response"]["patch"].as_str().expect("a patch"))
        .expect("base64");
    let patch: json_patch::Patch = serde_json::from_slice(&patch).expect("a patch");
    let mut by_webhook = pod.clone();
    json_patch::patch(&mut by_webhook, &patch).expect("applies");

    let (out, _) = run(MANIFEST, &Settings::default());
    let out = docs(&out.expect("injected"));
    let by_kube_inject = &out[1]["spec"]["template"];
    assert_eq!(by_kube_inject["spec"], by_webhook["spec"]);
    assert_eq!(
        by_kube_inject["metadata"]["labels"],
        by_webhook["metadata"]["labels"]
    );
    assert_eq!(
        by_kube_inject["metadata"]["annotations"],
        by_webhook["metadata"]["annotations"]
    );
}

#[test]
fn the_settings_file_is_the_webhooks() {
    let settings =
        Settings::from_yaml("nativeSidecar: false\nproxyImage: registry.local/proxy:dev\n")
            .expect("valid");
    let (out, _) = run(MANIFEST, &settings);
    let out = docs(&out.expect("injected"));
    let proxy = &out[1]["spec"]["template"]["spec"]["containers"][0];
    assert_eq!(proxy["name"], "sinew-proxy");
    assert_eq!(proxy["image"], "registry.local/proxy:dev");
}

#[test]
fn any_problem_prints_nothing_and_names_every_document_at_fault() {
    let bad = format!(
        "{MANIFEST}---\nkind: [unclosed\n---\napiVersion: v1\nkind: Pod\nmetadata: {{name: p, annotations: {{sinew.dev/proxy-cpu: lots}}}}\nspec: {{containers: [{{name: a}}]}}\n"
    );
    let (out, _) = run(&bad, &Settings::default());
    let message = format!("{:#}", out.expect_err("refused"));
    assert!(message.starts_with("nothing printed:"), "{message}");
    assert!(
        message.contains("m.yaml: document 5 (line 54): not YAML"),
        "{message}"
    );
    assert!(
        message.contains("m.yaml: document 6 (line 56): Pod p: annotation sinew.dev/proxy-cpu: \"lots\" is not a resource quantity"),
        "{message}"
    );
}

#[test]
fn hostile_input_is_an_error_not_a_hang_or_a_panic() {
    let bomb = "a: &a [x, x, x, x, x, x, x, x, x, x]\nb: &b [*a, *a, *a, *a, *a, *a, *a, *a, *a, *a]\nc: &c [*b, *b, *b, *b, *b, *b, *b, *b, *b, *b]\nd: &d [*c, *c, *c, *c, *c, *c, *c, *c, *c, *c]\ne: &e [*d, *d, *d, *d, *d, *d, *d, *d, *d, *d]\nf: &f [*e, *e, *e, *e, *e, *e, *e, *e, *e, *e]\ng: &g [*f, *f, *f, *f, *f, *f, *f, *f, *f, *f]\nh: [*g, *g, *g, *g, *g, *g, *g, *g, *g, *g]\n";
    let deep = format!("{}{}", "[".repeat(10_000), "]".repeat(10_000));
    for text in [bomb, deep.as_str(), "key: value: other\n", "{a: 1, a: 2}"] {
        let (out, _) = run(text, &Settings::default());
        assert!(out.is_err(), "{:.40}", text);
    }
    // Non-UTF-8 and missing files, through the command's own entry.
    let dir = std::env::temp_dir().join(format!("sinewctl-kube-inject-{}", std::process::id()));
    std::fs::create_dir_all(&dir).expect("a temp dir");
    let latin1 = dir.join("latin1.yaml");
    std::fs::write(&latin1, b"kind: Pod\nmetadata: {name: caf\xe9}\n").expect("written");
    let mut out = Vec::new();
    let e = kube_inject(&latin1, None, &mut out, &mut Vec::new()).expect_err("not UTF-8");
    assert!(e.to_string().contains("is not UTF-8 text (byte 30)"), "{e}");
    let e = kube_inject(&dir.join("missing.yaml"), None, &mut out, &mut Vec::new())
        .expect_err("missing");
    assert!(format!("{e:#}").contains("cannot read"), "{e:#}");
    let config = dir.join("config.yaml");
    std::fs::write(&config, "proxyImag: x\n").expect("written");
    let e = kube_inject(&latin1, Some(&config), &mut out, &mut Vec::new()).expect_err("bad config");
    assert!(format!("{e:#}").contains("proxyImag"), "{e:#}");
    assert!(out.is_empty());
    let _ = std::fs::remove_dir_all(&dir);
}

#[test]
fn documents_split_where_kubectl_splits_them() {
    let text = "---\na: 1\n--- # second\nb: 2\r\n---\r\nc: 3\n...\n---x\nstill: c\n";
    let d = split(text);
    let texts: Vec<&str> = d.iter().map(|d| d.text).collect();
    assert_eq!(texts, ["a: 1\n", "b: 2\r\n", "c: 3\n...\n---x\nstill: c\n"]);
    let lines: Vec<usize> = d.iter().map(|d| d.line).collect();
    assert_eq!(lines, [2, 4, 6]);
    assert_eq!(join(&["a: 1".into(), "b: 2\n".into()]), "a: 1\n---\nb: 2\n");
}
