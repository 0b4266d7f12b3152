//! The control plane against a Kubernetes API server (the fake one in `support/`, over real
//! HTTP): real proxies authenticate with service-account tokens checked by TokenReview, get
//! certificates from the CA kept in a Secret, and follow EndpointSlices, DestinationRules and an
//! API server outage.

mod support;

use serde_json::{Value, json};
use sinew_control_plane::app::{ControlPlane, Options, Source};
use sinew_control_plane::cluster::KubeOptions;
use sinew_proto::ca::v1 as ca;
use sinew_proto::ca::v1::certificate_service_client::CertificateServiceClient;
use sinew_proto::config::v1 as cfg;
use sinew_proxy::testing::TempDir;
use std::net::{IpAddr, SocketAddr};
use std::sync::Arc;
use std::time::Duration;
use support::fake_apiserver::FakeApiServer;
use support::proxies::{
    StartedProxy, control_plane_config, echo_app, http_get, inbound_proxy, outbound_proxy, request,
};
use support::{eventually, unique_ip};

const SIDECAR: &str = "sinew-proxy";
const CA_SECRET: &str = "/api/v1/namespaces/sinew-system/secrets/sinew-ca";
const SHOP_ROOT_CERT: &str = "/api/v1/namespaces/shop/configmaps/sinew-root-cert";
const WEB_SLICE: &str = "/apis/discovery.k8s.io/v1/namespaces/shop/endpointslices/web-abcde";

/// A namespace with injection on, the web service with one injected pod behind an EndpointSlice,
/// and the client's pod.
fn seed(web_ip: IpAddr, web_vip: IpAddr, app_port: u16) -> Vec<Value> {
    let pod = |name: &str, sa: &str, app: &str, ip: IpAddr| {
        json!({
            "apiVersion": "v1", "kind": "Pod",
            "metadata": {"name": name, "namespace": "shop", "labels": {"app": app}},
            "spec": {
                "serviceAccountName": sa,
                "containers": [
                    {"name": "app", "image": "app", "ports": [{"name": "http", "containerPort": app_port}]},
                    {"name": SIDECAR, "image": "sinew-proxy"}
                ]
            },
            "status": {"phase": "Running", "podIP": ip.to_string(), "podIPs": [{"ip": ip.to_string()}]}
        })
    };
    vec![
        json!({"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": "sinew-system"}}),
        json!({"apiVersion": "v1", "kind": "Namespace",
               "metadata": {"name": "shop", "labels": {"sinew-injection": "enabled"}}}),
        json!({"apiVersion": "v1", "kind": "ServiceAccount", "metadata": {"name": "web", "namespace": "shop"}}),
        json!({"apiVersion": "v1", "kind": "ServiceAccount", "metadata": {"name": "client", "namespace": "shop"}}),
        json!({
            "apiVersion": "v1", "kind": "Service",
            "metadata": {"name": "web", "namespace": "shop"},
            "spec": {"clusterIP": web_vip.to_string(), "selector": {"app": "web"},
                     "ports": [{"name": "http", "port": 8080, "targetPort": app_port}]}
        }),
        pod("web-0", "web", "web", web_ip),
        pod("client-0", "client", "client", unique_ip()),
        slice(&[(web_ip, true)], app_port),
        // As the chart installs it: no caBundle until the control plane sets it.
        json!({
            "apiVersion": "admissionregistration.k8s.io/v1", "kind": "ValidatingWebhookConfiguration",
            "metadata": {"name": "sinew-validator"},
            "webhooks": [{
                "name": "validation.sinew.dev",
                "clientConfig": {"service": {"name": "sinew-control-plane", "namespace": "sinew-system", "path": "/validate", "port": 15017}},
                "rules": [{"apiGroups": ["sinew.dev", "networking.istio.io"], "apiVersions": ["*"],
                           "operations": ["CREATE", "UPDATE"], "resources": ["destinationrules", "virtualservices"]}],
                "sideEffects": "None", "admissionReviewVersions": ["v1"], "failurePolicy": "Ignore"
            }]
        }),
        json!({
            "apiVersion": "admissionregistration.k8s.io/v1", "kind": "MutatingWebhookConfiguration",
            "metadata": {"name": "sinew-injector"},
            "webhooks": [{
                "name": "inject.sinew.dev",
                "clientConfig": {"service": {"name": "sinew-control-plane", "namespace": "sinew-system", "path": "/inject", "port": 15017}},
                "rules": [{"apiGroups": [""], "apiVersions": ["v1"], "operations": ["CREATE"], "resources": ["pods"]}],
                "namespaceSelector": {"matchLabels": {"sinew-injection": "enabled"}},
                "sideEffects": "None", "admissionReviewVersions": ["v1"], "failurePolicy": "Fail",
                "reinvocationPolicy": "Never", "timeoutSeconds": 10
            }]
        }),
    ]
}

/// The web service's EndpointSlice with `endpoints` (address, ready).
fn slice(endpoints: &[(IpAddr, bool)], app_port: u16) -> Value {
    let endpoints: Vec<Value> = endpoints
        .iter()
        .map(|(ip, ready)| {
            json!({"addresses": [ip.to_string()],
                   "conditions": {"ready": ready, "serving": ready, "terminating": false},
                   "targetRef": {"kind": "Pod", "namespace": "shop", "name": "web-0"}})
        })
        .collect();
    json!({
        "apiVersion": "discovery.k8s.io/v1", "kind": "EndpointSlice",
        "metadata": {"name": "web-abcde", "namespace": "shop",
                     "labels": {"kubernetes.io/service-name": "web"}},
        "addressType": "IPv4",
        "endpoints": endpoints,
        "ports": [{"name": "http", "port": app_port, "protocol": "TCP"}]
    })
}

/// Our DestinationRule CRD, as the chart installs it (only what the fake needs to serve it).
fn sinew_destination_rule_crd() -> Value {
    json!({
        "apiVersion": "apiextensions.k8s.io/v1", "kind": "CustomResourceDefinition",
        "metadata": {"name": "destinationrules.sinew.dev"},
        "spec": {
            "group": "sinew.dev", "scope": "Namespaced",
            "names": {"plural": "destinationrules", "singular": "destinationrule",
                      "kind": "DestinationRule", "listKind": "DestinationRuleList"},
            "versions": [{"name": "v1alpha1", "served": true, "storage": true,
                          "schema": {"openAPIV3Schema": {"type": "object",
                              "x-kubernetes-preserve-unknown-fields": true}},
                          "subresources": {"status": {}}}]
        }
    })
}

/// Istio's Telemetry CRD, as the chart installs it (only what the fake needs to serve it).
/// The CRD of `security.istio.io/v1` `kind` (plural `plural`), schema-less as in the fake.
fn security_crd(kind: &str, plural: &str) -> Value {
    json!({
        "apiVersion": "apiextensions.k8s.io/v1", "kind": "CustomResourceDefinition",
        "metadata": {"name": format!("{plural}.security.istio.io")},
        "spec": {
            "group": "security.istio.io", "scope": "Namespaced",
            "names": {"plural": plural, "singular": kind.to_lowercase(),
                      "kind": kind, "listKind": format!("{kind}List")},
            "versions": [{"name": "v1", "served": true, "storage": true,
                          "schema": {"openAPIV3Schema": {"type": "object",
                              "x-kubernetes-preserve-unknown-fields": true}},
                          "subresources": {"status": {}}}]
        }
    })
}

fn telemetry_crd() -> Value {
    json!({
        "apiVersion": "apiextensions.k8s.io/v1", "kind": "CustomResourceDefinition",
        "metadata": {"name": "telemetries.telemetry.istio.io"},
        "spec": {
            "group": "telemetry.istio.io", "scope": "Namespaced",
            "names": {"plural": "telemetries", "singular": "telemetry",
                      "kind": "Telemetry", "listKind": "TelemetryList"},
            "versions": [{"name": "v1", "served": true, "storage": true,
                          "schema": {"openAPIV3Schema": {"type": "object",
                              "x-kubernetes-preserve-unknown-fields": true}},
                          "subresources": {"status": {}}}]
        }
    })
}

struct Cluster {
    dir: Arc<TempDir>,
    api: FakeApiServer,
    cp: ControlPlane2,
    web_vip: IpAddr,
    app_port: u16,
}

/// The control plane's addresses and CA, once started (it serves on its own task).
struct ControlPlane2 {
    grpc: SocketAddr,
    monitoring: SocketAddr,
    webhook: SocketAddr,
    root_file: std::path::PathBuf,
    task: tokio::task::JoinHandle<()>,
}

impl Drop for ControlPlane2 {
    fn drop(&mut self) {
        self.task.abort();
    }
}

async fn cluster(test: &str) -> Option<Cluster> {
    let dir = Arc::new(TempDir::new("kube"));
    let app = echo_app().await;
    let (web_ip, web_vip) = (unique_ip(), unique_ip());
    let api = FakeApiServer::start(test, dir.path(), &seed(web_ip, web_vip, app.port())).await?;
    api.set_tokens(&json!({
        "tok-web": {"namespace": "shop", "serviceAccount": "web", "pod": "web-0", "audiences": ["sinew-ca"]},
        "tok-client": {"namespace": "shop", "serviceAccount": "client", "pod": "client-0", "audiences": ["sinew-ca"]},
        "tok-other-audience": {"namespace": "shop", "serviceAccount": "client", "pod": "client-0", "audiences": ["vault"]},
    }));
    let cp = ControlPlane::start(Options {
        source: Source::Kubernetes(KubeOptions::new(Some(api.kubeconfig.clone()), None).unwrap()),
        trust_domain: "cluster.local".into(),
        listen: "127.0.0.1:0".parse().unwrap(),
        monitoring: "127.0.0.1:0".parse().unwrap(),
        dns_names: vec![],
        mesh_ranges: vec![],
        root_namespace: "sinew-system".into(),
        telemetry: Default::default(),
        webhook: Some("127.0.0.1:0".parse().unwrap()),
        injector: sinew_injector::Settings::default(),
    })
    .await
    .unwrap_or_else(|e| panic!("control plane starts: {e:#}{}", api.log_tail()));
    let root_file = dir.path().join("root.pem");
    std::fs::write(&root_file, cp.ca.current().trust_bundle().join("\n")).unwrap();
    let (grpc, monitoring) = (cp.grpc_addr, cp.monitoring_addr);
    let webhook = cp
        .webhook_addr
        .expect("a Kubernetes control plane serves the webhook");
    let task = tokio::spawn(cp.serve());
    Some(Cluster {
        dir,
        api,
        cp: ControlPlane2 {
            grpc,
            monitoring,
            webhook,
            root_file,
            task,
        },
        web_vip,
        app_port: app.port(),
    })
}

impl Cluster {
    fn proxy_cp(&self, token: &str, pod: &str) -> cfg::ControlPlane {
        let token_file = self.dir.path().join(format!("{pod}.token"));
        std::fs::write(&token_file, token).unwrap();
        control_plane_config(self.cp.grpc, &self.cp.root_file, &token_file, pod)
    }

    /// The web and client proxies, after one request through them; and the web pod's IP.
    async fn mesh(&self) -> (StartedProxy, StartedProxy, SocketAddr, IpAddr) {
        let (_, slice) = self.api.request("GET", WEB_SLICE, None).await;
        let web_ip = web_ip_of(&slice);
        let (web, client, outbound) = self.proxies(web_ip).await;
        request(outbound).await.unwrap();
        assert!(has_endpoint(&client).await);
        (web, client, outbound, web_ip)
    }

    /// Writes an object through the API, expecting `status`.
    async fn write(&self, method: &str, path: &str, body: Option<&Value>, status: u16) {
        let (got, body) = self.api.request(method, path, body).await;
        assert_eq!(got, status, "{method} {path}: {body}");
    }

    /// Marks the web endpoint ready or not in its EndpointSlice.
    async fn set_web_ready(&self, web_ip: IpAddr, ready: bool) {
        let slice = slice(&[(web_ip, ready)], self.app_port);
        self.write("PUT", WEB_SLICE, Some(&slice), 200).await;
    }

    /// The web pod's inbound proxy (on the pod's IP) and the client's outbound proxy to the web
    /// service; returns the client proxy and its listener.
    async fn proxies(&self, web_ip: IpAddr) -> (StartedProxy, StartedProxy, SocketAddr) {
        let web = inbound_proxy(self.proxy_cp("tok-web", "web-0"), web_ip).await;
        let destination = format!("{}:8080", self.web_vip);
        let client = outbound_proxy(self.proxy_cp("tok-client", "client-0"), &destination).await;
        let outbound = client.addrs[0].1;
        (web, client, outbound)
    }

    async fn monitoring(&self, path: &str) -> String {
        http_get(self.cp.monitoring, path).await
    }
}

fn web_ip_of(seed_slice: &Value) -> IpAddr {
    seed_slice["endpoints"][0]["addresses"][0]
        .as_str()
        .unwrap()
        .parse()
        .unwrap()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn proxies_authenticate_with_service_account_tokens_and_carry_mesh_traffic() {
    let test = "proxies_authenticate_with_service_account_tokens_and_carry_mesh_traffic";
    let Some(c) = cluster(test).await else {
        return;
    };
    // The CA root was created in its Secret on first start.
    let (status, secret) = c.api.request("GET", CA_SECRET, None).await;
    assert_eq!(status, 200, "{secret}");
    // The leader publishes the trust bundle in every namespace.
    let root = std::fs::read_to_string(&c.cp.root_file).unwrap();
    let published = || async {
        let (status, cm) = c.api.request("GET", SHOP_ROOT_CERT, None).await;
        status == 200 && cm["data"]["root-cert.pem"] == root.as_str()
    };
    eventually("the root-cert ConfigMap in shop", WAIT, published).await;

    let (_web, _client, outbound, _) = c.mesh().await;
    let out = request(outbound).await.unwrap();
    assert!(
        out.contains("URI=spiffe://cluster.local/ns/shop/sa/client"),
        "{out}"
    );
    assert!(
        out.contains("By=spiffe://cluster.local/ns/shop/sa/web"),
        "{out}"
    );
    // Both streams, with the identities TokenReview gave them.
    let connections = body_json(&c.monitoring("/debug/connections").await);
    let mut seen: Vec<String> = connections["connections"]
        .as_array()
        .map(|all| {
            all.iter()
                .map(|p| {
                    format!(
                        "{} {}",
                        p["identity"].as_str().unwrap_or(""),
                        p["pod"].as_str().unwrap_or("")
                    )
                })
                .collect()
        })
        .unwrap_or_default();
    seen.sort();
    assert_eq!(seen, ["shop/client client-0", "shop/web web-0",]);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_token_for_another_audience_gets_no_certificate() {
    let Some(c) = cluster("a_token_for_another_audience_gets_no_certificate").await else {
        return;
    };
    let cp = sinew_proxy::config::Config::from_proto(cfg::ProxyConfig {
        control_plane: Some(c.proxy_cp("tok-other-audience", "client-0")),
        ..Default::default()
    })
    .unwrap()
    .control_plane
    .unwrap();
    let channel = sinew_proxy::control::Channel::new(&cp).unwrap();
    let csr = {
        let key = rcgen::KeyPair::generate().unwrap();
        let mut params = rcgen::CertificateParams::new(Vec::<String>::new()).unwrap();
        params.subject_alt_names = vec![rcgen::SanType::URI(
            "spiffe://cluster.local/ns/shop/sa/client"
                .try_into()
                .unwrap(),
        )];
        params.serialize_request(&key).unwrap().pem().unwrap()
    };
    let mut client = CertificateServiceClient::with_origin(channel.clone(), channel.origin());
    for (token, refused) in [("tok-other-audience", true), ("tok-client", false)] {
        let mut req = tonic::Request::new(ca::CreateCertificateRequest {
            csr: csr.clone(),
            validity: None,
        });
        req.metadata_mut()
            .insert("authorization", format!("Bearer {token}").parse().unwrap());
        let result = client.create_certificate(req).await;
        match (refused, result) {
            (true, Err(status)) => {
                assert_eq!(status.code(), tonic::Code::Unauthenticated, "{status}");
                assert!(status.message().contains("audience"), "{status}");
            }
            (false, Ok(_)) => {}
            (refused, other) => panic!("{token}: expected refused={refused}, got {other:?}"),
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn endpoint_slice_and_destination_rule_changes_reach_the_proxy() {
    let test = "endpoint_slice_and_destination_rule_changes_reach_the_proxy";
    let Some(c) = cluster(test).await else {
        return;
    };
    let (_web, client, outbound, web_ip) = c.mesh().await;

    // The endpoint stops being ready: the proxy's config loses it; ready again, it is back.
    c.set_web_ready(web_ip, false).await;
    let lost = || async { !has_endpoint(&client).await };
    eventually("the proxy drops the endpoint that is not ready", WAIT, lost).await;
    c.set_web_ready(web_ip, true).await;
    let back = || async { request(outbound).await.is_ok() };
    eventually("the endpoint is back", WAIT, back).await;

    // Our DestinationRule kind appears with its CRD, and a rule created through the API applies.
    let crds = "/apis/apiextensions.k8s.io/v1/customresourcedefinitions";
    c.write("POST", crds, Some(&sinew_destination_rule_crd()), 201)
        .await;
    let rule = json!({
        "apiVersion": "sinew.dev/v1alpha1", "kind": "DestinationRule",
        "metadata": {"name": "web", "namespace": "shop"},
        "spec": {"host": "web", "trafficPolicy": {"connectionPool": {"http": {"http2MaxRequests": 7}}}}
    });
    let rules = "/apis/sinew.dev/v1alpha1/namespaces/shop/destinationrules";
    c.write("POST", rules, Some(&rule), 201).await;
    let applied = || async { has_pool_limit(&client).await };
    eventually("the rule's pool limit reaches the proxy", WAIT, applied).await;

    eventually(
        "the rule's status says Accepted=True",
        Duration::from_secs(10),
        || async {
            let (_, body) = c.api.request("GET", &format!("{rules}/web"), None).await;
            body["status"]["conditions"]
                .as_array()
                .into_iter()
                .flatten()
                .any(|cond| cond["type"] == "Accepted" && cond["status"] == "True")
        },
    )
    .await;

    // An invalid version of it is refused and the accepted one stays in force.
    let mut invalid = rule.clone();
    invalid["spec"]["trafficPolicy"]["loadBalancer"] = json!({"simple": "ROUND_ROBBIN"});
    c.write("PUT", &format!("{rules}/web"), Some(&invalid), 200)
        .await;
    let reported = || async {
        c.monitoring("/debug/registryz")
            .await
            .contains("ROUND_ROBBIN")
    };
    eventually("the invalid rule is reported", WAIT, reported).await;
    assert!(has_pool_limit(&client).await);
    // The elected control plane says so on the object: Accepted=False, naming the value.
    let condition = || async {
        let (_, body) = c.api.request("GET", &format!("{rules}/web"), None).await;
        body["status"]["conditions"]
            .as_array()
            .into_iter()
            .flatten()
            .any(|cond| {
                cond["type"] == "Accepted"
                    && cond["status"] == "False"
                    && cond["reason"] == "Invalid"
                    && cond["message"]
                        .as_str()
                        .is_some_and(|m| m.contains("ROUND_ROBBIN"))
            })
    };
    eventually("the rule's status says Accepted=False", WAIT, condition).await;

    // Deleting the rule removes its policy.
    c.write("DELETE", &format!("{rules}/web"), None, 200).await;
    let removed = || async { !has_pool_limit(&client).await };
    eventually("the rule's policy is gone", WAIT, removed).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_api_server_restart_under_traffic_fails_no_request_and_watches_resume() {
    let test = "an_api_server_restart_under_traffic_fails_no_request_and_watches_resume";
    let Some(mut c) = cluster(test).await else {
        return;
    };
    let (_web, client, outbound, web_ip) = c.mesh().await;

    let traffic = tokio::spawn(async move {
        let mut failures = Vec::new();
        for _ in 0..200 {
            if let Err(e) = request(outbound).await {
                failures.push(e);
            }
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
        failures
    });
    c.api.stop().await;
    // Down until the control plane has felt it (a failed watch), not for a guessed time.
    let noticed = || async {
        let metrics = c.monitoring("/metrics").await;
        counter(
            &metrics,
            "sinew_cp_kube_watch_errors_total{kind=\"EndpointSlice\"}",
        ) > Some(0)
    };
    eventually("the control plane sees the API server gone", WAIT, noticed).await;
    c.api.start_again().await;
    let failures = traffic.await.unwrap();
    assert!(
        failures.is_empty(),
        "requests failed during the outage: {failures:?}"
    );
    assert!(has_endpoint(&client).await);

    // The watches resumed: a change made after the restart reaches the proxy.
    c.set_web_ready(web_ip, false).await;
    let lost = || async { !has_endpoint(&client).await };
    eventually(
        "a change after the restart reaches the proxy",
        Duration::from_secs(15),
        lost,
    )
    .await;
    // It re-listed (the restarted server cannot resume the old watch: 410).
    let metrics = c.monitoring("/metrics").await;
    let relists = counter(
        &metrics,
        "sinew_cp_kube_relists_total{kind=\"EndpointSlice\"}",
    );
    assert!(relists.is_some_and(|n| n >= 1), "{metrics}");
}

/// The value of one series in Prometheus text.
fn counter(metrics: &str, series: &str) -> Option<u64> {
    metrics
        .lines()
        .find_map(|l| l.strip_prefix(series)?.strip_prefix(' ')?.parse().ok())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_webhook_refuses_an_invalid_rule_over_tls_trusted_through_the_ca_bundle_it_set() {
    use base64::Engine as _;
    let test = "the_webhook_refuses_an_invalid_rule_over_tls_trusted_through_the_ca_bundle_it_set";
    let Some(c) = cluster(test).await else {
        return;
    };
    // The leader put the mesh root into the webhook configuration.
    let root = std::fs::read_to_string(&c.cp.root_file).unwrap();
    let encoded = base64::engine::general_purpose::STANDARD.encode(&root);
    let path =
        "/apis/admissionregistration.k8s.io/v1/validatingwebhookconfigurations/sinew-validator";
    let set = || async {
        let (_, config) = c.api.request("GET", path, None).await;
        config["webhooks"][0]["clientConfig"]["caBundle"] == encoded.as_str()
    };
    eventually("the caBundle set", WAIT, set).await;

    // The API server's call, trusting only that bundle, by the Service's name.
    let review = |simple: &str| {
        json!({
            "apiVersion": "admission.k8s.io/v1", "kind": "AdmissionReview",
            "request": {
                "uid": "4b1f0c1e-0000-4000-8000-000000000001",
                "kind": {"group": "sinew.dev", "version": "v1alpha1", "kind": "DestinationRule"},
                "resource": {"group": "sinew.dev", "version": "v1alpha1", "resource": "destinationrules"},
                "name": "web", "namespace": "shop", "operation": "CREATE",
                "userInfo": {"username": "kubernetes-admin"},
                "object": {
                    "apiVersion": "sinew.dev/v1alpha1", "kind": "DestinationRule",
                    "metadata": {"name": "web", "namespace": "shop"},
                    "spec": {"host": "web", "trafficPolicy": {"loadBalancer": {"simple": simple}}}
                },
                "dryRun": false
            }
        })
    };
    let denied = admission_call(c.cp.webhook, &encoded, &review("ROUND_ROBBIN")).await;
    let response = &denied["response"];
    assert_eq!(response["uid"], "4b1f0c1e-0000-4000-8000-000000000001");
    assert_eq!(response["allowed"], false, "{denied}");
    let message = response["status"]["message"].as_str().unwrap_or_default();
    assert!(
        message.contains("spec.trafficPolicy.loadBalancer.simple"),
        "{denied}"
    );
    let allowed = admission_call(c.cp.webhook, &encoded, &review("ROUND_ROBIN")).await;
    assert_eq!(allowed["response"]["allowed"], true, "{allowed}");
}

/// A Deployment's pod as the API server sends it to the injector, in `namespace`.
fn pod_review(namespace: &str) -> Value {
    json!({
        "apiVersion": "admission.k8s.io/v1", "kind": "AdmissionReview",
        "request": {
            "uid": "5d2a7e10-0000-4000-8000-000000000002",
            "kind": {"group": "", "version": "v1", "kind": "Pod"},
            "resource": {"group": "", "version": "v1", "resource": "pods"},
            "namespace": namespace, "operation": "CREATE",
            "userInfo": {"username": "system:serviceaccount:kube-system:replicaset-controller"},
            "object": {
                "apiVersion": "v1", "kind": "Pod",
                "metadata": {"generateName": "web-6b7c9d-", "namespace": namespace, "labels": {"app": "web"}},
                "spec": {
                    "serviceAccountName": "web",
                    "containers": [{"name": "web", "image": "web:1",
                        "ports": [{"name": "http", "containerPort": 8080}],
                        "readinessProbe": {"httpGet": {"path": "/ready", "port": "http"}}}]
                }
            },
            "dryRun": false
        }
    })
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_injector_answers_over_tls_trusted_through_the_ca_bundle_it_set() {
    use base64::Engine as _;
    use tokio::io::AsyncWriteExt;
    let test = "the_injector_answers_over_tls_trusted_through_the_ca_bundle_it_set";
    let Some(c) = cluster(test).await else {
        return;
    };
    let root = std::fs::read_to_string(&c.cp.root_file).unwrap();
    let encoded = base64::engine::general_purpose::STANDARD.encode(&root);
    let path = "/apis/admissionregistration.k8s.io/v1/mutatingwebhookconfigurations/sinew-injector";
    let set = || async {
        let (_, config) = c.api.request("GET", path, None).await;
        config["webhooks"][0]["clientConfig"]["caBundle"] == encoded.as_str()
    };
    eventually("the injector's caBundle set", WAIT, set).await;

    // A pod of a labelled namespace: the patch, base64 of a JSON patch, gives it the sidecar.
    let review = pod_review("shop");
    let text = webhook_call(
        c.cp.webhook,
        &encoded,
        "/inject",
        review.to_string().as_bytes(),
    )
    .await;
    assert!(text.starts_with("HTTP/1.1 200"), "{text}");
    let answer = body_json(&text);
    let response = &answer["response"];
    assert_eq!(response["uid"], "5d2a7e10-0000-4000-8000-000000000002");
    assert_eq!(response["allowed"], true, "{answer}");
    assert_eq!(response["patchType"], "JSONPatch");
    let patch = base64::engine::general_purpose::STANDARD
        .decode(response["patch"].as_str().expect("a patch"))
        .expect("base64");
    let patch: json_patch::Patch = serde_json::from_slice(&patch).expect("a JSON patch");
    let mut pod = review["request"]["object"].clone();
    json_patch::patch(&mut pod, &patch).expect("the patch applies");
    let proxy = &pod["spec"]["initContainers"][1];
    assert_eq!(proxy["name"], SIDECAR);
    assert_eq!(proxy["restartPolicy"], "Always");
    assert_eq!(
        pod["spec"]["containers"][0]["readinessProbe"]["httpGet"]["path"],
        "/app-health/web/readyz"
    );
    // What the proxy reads at start, after the kubelet filled in the pod's name: a ProxyConfig
    // the proxy's own loader accepts, pointing at the control plane by its Service name.
    let bootstrap = kubelet_env(proxy, "web-6b7c9d-q8z2m", "shop", "SINEW_PROXY_CONFIG");
    let message: cfg::ProxyConfig = serde_json::from_str(&bootstrap)
        .unwrap_or_else(|e| panic!("SINEW_PROXY_CONFIG is a ProxyConfig: {e}: {bootstrap}"));
    let control_plane = message.control_plane.clone().expect("a control plane");
    assert_eq!(control_plane.pod, "web-6b7c9d-q8z2m");
    assert_eq!(control_plane.namespace, "shop");
    assert_eq!(
        control_plane.address,
        "sinew-control-plane.sinew-system.svc:15012"
    );
    sinew_proxy::config::Config::from_proto(message).expect("the proxy accepts it");
    // And the app's probe, as the proxy's prober will run it: the named port resolved.
    let probers = kubelet_env(proxy, "web-6b7c9d-q8z2m", "shop", "SINEW_APP_PROBERS");
    let probers = sinew_proxy::app_health::spec::Probers::parse(&probers)
        .unwrap_or_else(|e| panic!("the proxy accepts SINEW_APP_PROBERS: {e}: {probers}"));
    let readyz = probers.get("/app-health/web/readyz").expect("the probe");
    let sinew_proxy::app_health::spec::Action::Http(get) = &readyz.action else {
        panic!("an HTTP probe: {readyz:?}");
    };
    assert_eq!(
        (get.port, get.path.as_str(), get.https),
        (8080, "/ready", false)
    );

    // A namespace the registry knows without the label: checked again here, not injected.
    let text = webhook_call(
        c.cp.webhook,
        &encoded,
        "/inject",
        pod_review("sinew-system").to_string().as_bytes(),
    )
    .await;
    let answer = body_json(&text);
    assert_eq!(answer["response"]["allowed"], true, "{text}");
    assert!(answer["response"].get("patch").is_none(), "{text}");
    assert!(
        answer["response"]["warnings"][0]
            .as_str()
            .is_some_and(|w| w.contains("not labelled sinew-injection=enabled")),
        "{text}"
    );

    // A body that is not a review: a clear 400, and the webhook keeps serving.
    let text = webhook_call(c.cp.webhook, &encoded, "/inject", b"{\"kind\": \"Pod\"").await;
    assert!(text.starts_with("HTTP/1.1 400"), "{text}");
    assert!(text.contains("the body is not JSON"), "{text}");

    // A slow client, half-way through its body, holds its own connection only: another call is
    // answered meanwhile, and the slow one's connection is still open (its deadline is the
    // handler's, tested with paused time in cluster::webhook).
    let mut slow = webhook_tls(c.cp.webhook, &encoded).await;
    let body = review.to_string();
    slow.write_all(webhook_head("/inject", body.len()).as_bytes())
        .await
        .unwrap();
    slow.write_all(&body.as_bytes()[..body.len() / 2])
        .await
        .unwrap();
    slow.flush().await.unwrap();
    let text = webhook_call(c.cp.webhook, &encoded, "/inject", body.as_bytes()).await;
    assert!(text.starts_with("HTTP/1.1 200"), "{text}");
    // Finishing the slow body gets it its answer.
    slow.write_all(&body.as_bytes()[body.len() / 2..])
        .await
        .unwrap();
    let mut out = Vec::new();
    let _ = tokio::io::AsyncReadExt::read_to_end(&mut slow, &mut out).await;
    let text = String::from_utf8_lossy(&out);
    assert!(text.starts_with("HTTP/1.1 200"), "{text}");
    assert_eq!(body_json(&text)["response"]["patchType"], "JSONPatch");
}

/// The value of env `name` of `container` as the kubelet hands it to the process: downward-API
/// fields filled in for pod `pod` in `namespace`, `$(VAR)` references expanded in order.
fn kubelet_env(container: &Value, pod: &str, namespace: &str, name: &str) -> String {
    let mut env = sinew_injector::sidecar::kubelet_env(container, |path| match path {
        "metadata.name" => pod.to_string(),
        "metadata.namespace" => namespace.to_string(),
        _ => "10.0.0.1".to_string(),
    });
    env.remove(name)
        .unwrap_or_else(|| panic!("no env {name} in {container}"))
}

/// POSTs `review` to the webhook's `/validate` over TLS as the API server does, expecting 200.
async fn admission_call(webhook: SocketAddr, ca_bundle: &str, review: &Value) -> Value {
    let text = webhook_call(
        webhook,
        ca_bundle,
        "/validate",
        review.to_string().as_bytes(),
    )
    .await;
    assert!(text.starts_with("HTTP/1.1 200"), "{text}");
    body_json(&text)
}

/// A TLS connection to the webhook as the API server opens it: trusting only `ca_bundle`
/// (base64 PEM), checking the name `sinew-control-plane.sinew-system.svc`.
async fn webhook_tls(
    webhook: SocketAddr,
    ca_bundle: &str,
) -> tokio_rustls::client::TlsStream<tokio::net::TcpStream> {
    use base64::Engine as _;
    use rustls::pki_types::{CertificateDer, ServerName, pem::PemObject};
    let pem = base64::engine::general_purpose::STANDARD
        .decode(ca_bundle)
        .unwrap();
    let mut roots = rustls::RootCertStore::empty();
    for cert in CertificateDer::pem_slice_iter(&pem) {
        roots.add(cert.unwrap()).unwrap();
    }
    let config = rustls::ClientConfig::builder_with_provider(Arc::new(
        rustls::crypto::ring::default_provider(),
    ))
    .with_safe_default_protocol_versions()
    .unwrap()
    .with_root_certificates(roots)
    .with_no_client_auth();
    let connector = tokio_rustls::TlsConnector::from(Arc::new(config));
    let tcp = tokio::net::TcpStream::connect(webhook).await.unwrap();
    let name = ServerName::try_from("sinew-control-plane.sinew-system.svc").unwrap();
    connector
        .connect(name, tcp)
        .await
        .expect("the webhook's certificate verifies")
}

/// The request line and headers of a POST of `length` bytes to `path`, as the API server sends
/// it (HTTP/1.1).
fn webhook_head(path: &str, length: usize) -> String {
    format!(
        "POST {path}?timeout=10s HTTP/1.1\r\nHost: sinew-control-plane.sinew-system.svc:15017\r\n\
         Content-Type: application/json\r\nContent-Length: {length}\r\nConnection: close\r\n\r\n"
    )
}

/// POSTs `body` to `path` over TLS and returns the whole HTTP response as text.
async fn webhook_call(webhook: SocketAddr, ca_bundle: &str, path: &str, body: &[u8]) -> String {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let mut tls = webhook_tls(webhook, ca_bundle).await;
    tls.write_all(webhook_head(path, body.len()).as_bytes())
        .await
        .unwrap();
    tls.write_all(body).await.unwrap();
    let mut out = Vec::new();
    let _ = tls.read_to_end(&mut out).await;
    String::from_utf8_lossy(&out).into_owned()
}

/// How long a change may take to reach a proxy here (it takes well under a second).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_telemetry_created_through_the_api_changes_the_sampling_the_proxy_receives() {
    let test = "a_telemetry_created_through_the_api_changes_the_sampling_the_proxy_receives";
    let Some(c) = cluster(test).await else {
        return;
    };
    let mut web = c.discovery("tok-web", "web-0").await;
    let first = web.settings().await;
    assert_eq!(
        first
            .workload
            .as_ref()
            .map(|w| (w.name.as_str(), w.pod.as_str())),
        Some(("web-0", "web-0"))
    );
    assert_eq!(first.services, ["web.shop.svc.cluster.local"]);
    let sampling = |t: &cfg::Telemetry| {
        t.tracing
            .as_ref()
            .and_then(|t| t.random_sampling_percentage)
    };
    assert_eq!(sampling(&first), None, "no flag and no Telemetry yet");

    // The kind appears with its CRD; a mesh-wide Telemetry in the root namespace applies.
    let crds = "/apis/apiextensions.k8s.io/v1/customresourcedefinitions";
    c.write("POST", crds, Some(&telemetry_crd()), 201).await;
    let telemetry = |percent: f64| {
        json!({
            "apiVersion": "telemetry.istio.io/v1", "kind": "Telemetry",
            "metadata": {"name": "mesh-default", "namespace": "sinew-system"},
            "spec": {"tracing": [{"randomSamplingPercentage": percent}]}
        })
    };
    let collection = "/apis/telemetry.istio.io/v1/namespaces/sinew-system/telemetries";
    let object = format!("{collection}/mesh-default");
    c.write("POST", collection, Some(&telemetry(25.0)), 201)
        .await;
    assert_eq!(sampling(&web.settings().await), Some(25.0));
    let registry = c.monitoring("/debug/registryz").await;
    assert!(
        registry.contains("\"telemetries\"") && registry.contains("\"mesh-default\""),
        "{registry}"
    );
    let accepted = |status: &'static str| {
        let object = object.clone();
        let api = &c.api;
        move || {
            let object = object.clone();
            async move {
                let (_, body) = api.request("GET", &object, None).await;
                body["status"]["conditions"]
                    .as_array()
                    .into_iter()
                    .flatten()
                    .any(|cond| cond["type"] == "Accepted" && cond["status"] == status)
            }
        }
    };
    eventually(
        "the Telemetry's status says Accepted=True",
        WAIT,
        accepted("True"),
    )
    .await;

    // 150 % got past the webhook (it is not called here): refused, its status says why, and the
    // proxy keeps 25 % — the next settings it gets are the next valid version's.
    c.write("PUT", &object, Some(&telemetry(150.0)), 200).await;
    eventually(
        "the Telemetry's status says Accepted=False",
        WAIT,
        accepted("False"),
    )
    .await;
    let (_, body) = c.api.request("GET", &object, None).await;
    assert!(
        body["status"]["conditions"].to_string().contains(
            "spec.tracing[0].randomSamplingPercentage: must be between 0 and 100, not 150"
        ),
        "{body}"
    );
    c.write("PUT", &object, Some(&telemetry(40.0)), 200).await;
    assert_eq!(sampling(&web.settings().await), Some(40.0));

    // Deleted: back to the proxy's own.
    c.write("DELETE", &object, None, 200).await;
    assert_eq!(sampling(&web.settings().await), None);
}

#[tokio::test]
async fn security_policies_created_through_the_api_reach_the_proxy_and_invalid_ones_keep_the_last_good()
 {
    let test = "security_policies_created_through_the_api_reach_the_proxy_and_invalid_ones_keep_the_last_good";
    let Some(c) = cluster(test).await else {
        return;
    };
    let mut web = c.discovery("tok-web", "web-0").await;
    let first = web.proxy_settings().await;
    assert_eq!(first.inbound_mode, cfg::InboundMode::Permissive as i32);
    assert_eq!(first.authorization, Some(cfg::Authorization::default()));

    let crds = "/apis/apiextensions.k8s.io/v1/customresourcedefinitions";
    for (kind, plural) in [
        ("PeerAuthentication", "peerauthentications"),
        ("AuthorizationPolicy", "authorizationpolicies"),
    ] {
        c.write("POST", crds, Some(&security_crd(kind, plural)), 201)
            .await;
    }
    // A mesh-wide STRICT from the root namespace.
    let peer = json!({
        "apiVersion": "security.istio.io/v1", "kind": "PeerAuthentication",
        "metadata": {"name": "default", "namespace": "sinew-system"},
        "spec": {"mtls": {"mode": "STRICT"}}
    });
    c.write(
        "POST",
        "/apis/security.istio.io/v1/namespaces/sinew-system/peerauthentications",
        Some(&peer),
        201,
    )
    .await;
    let strict = web.proxy_settings().await;
    assert_eq!(strict.inbound_mode, cfg::InboundMode::Strict as i32);

    let policy = |action: &str| {
        json!({
            "apiVersion": "security.istio.io/v1", "kind": "AuthorizationPolicy",
            "metadata": {"name": "web", "namespace": "shop"},
            "spec": {"selector": {"matchLabels": {"app": "web"}}, "action": action,
                     "rules": [{"from": [{"source": {"namespaces": ["shop"]}}]}]}
        })
    };
    let collection = "/apis/security.istio.io/v1/namespaces/shop/authorizationpolicies";
    let object = format!("{collection}/web");
    c.write("POST", collection, Some(&policy("DENY")), 201)
        .await;
    let denied = web.proxy_settings().await;
    let policies = denied.authorization.expect("authorization").policies;
    assert_eq!(policies.len(), 1, "{policies:?}");
    assert_eq!(policies[0].name, "shop/web");
    assert_eq!(policies[0].action, cfg::AuthorizationAction::Deny as i32);
    let accepted = |status: &'static str| {
        let object = object.clone();
        let api = &c.api;
        move || {
            let object = object.clone();
            async move {
                let (_, body) = api.request("GET", &object, None).await;
                body["status"]["conditions"]
                    .as_array()
                    .into_iter()
                    .flatten()
                    .any(|cond| cond["type"] == "Accepted" && cond["status"] == status)
            }
        }
    };
    eventually(
        "the AuthorizationPolicy's status says Accepted=True",
        WAIT,
        accepted("True"),
    )
    .await;
    // `/debug/registryz` lists both as the control plane holds them.
    let registry = body_json(&c.monitoring("/debug/registryz").await);
    assert_eq!(
        registry["peerAuthentications"],
        json!([{"apiVersion": "security.istio.io/v1", "namespace": "sinew-system",
                "name": "default", "selector": null, "mode": "STRICT", "portLevelMtls": {}}]),
        "{registry}"
    );
    assert_eq!(
        registry["authorizationPolicies"],
        json!([{"apiVersion": "security.istio.io/v1", "namespace": "shop", "name": "web",
                "selector": {"app": "web"}, "targetRefs": [], "action": "DENY", "rules": 1,
                "dryRun": false}]),
        "{registry}"
    );

    // CUSTOM got past the webhook (it is not called here): refused on its status; the proxy
    // keeps DENY, and the next settings it gets are the next valid version's.
    c.write("PUT", &object, Some(&policy("CUSTOM")), 200).await;
    eventually(
        "the AuthorizationPolicy's status says Accepted=False",
        WAIT,
        accepted("False"),
    )
    .await;
    let (_, body) = c.api.request("GET", &object, None).await;
    assert!(
        body["status"]["conditions"]
            .to_string()
            .contains("spec.action: CUSTOM (external authorization) is not supported by Sinew"),
        "{body}"
    );
    c.write("PUT", &object, Some(&policy("AUDIT")), 200).await;
    let audit = web.proxy_settings().await;
    let policies = audit.authorization.expect("authorization").policies;
    assert_eq!(policies[0].action, cfg::AuthorizationAction::Audit as i32);

    // Deleted: an empty Authorization lifts it.
    c.write("DELETE", &object, None, 200).await;
    let lifted = web.proxy_settings().await;
    assert_eq!(lifted.authorization, Some(cfg::Authorization::default()));
    assert_eq!(lifted.inbound_mode, cfg::InboundMode::Strict as i32);
}

/// A raw discovery stream, as a proxy holds it: only its settings are read here.
struct Discovery {
    _tx: tokio::sync::mpsc::Sender<sinew_proto::discovery::v1::DiscoveryRequest>,
    rx: tonic::Streaming<sinew_proto::discovery::v1::DiscoveryResponse>,
}

impl Cluster {
    /// Connects to discovery as the pod whose token is `token`, with an empty hello.
    async fn discovery(&self, token: &str, pod: &str) -> Discovery {
        use sinew_proto::discovery::v1 as pb;
        let cp = sinew_proxy::config::Config::from_proto(cfg::ProxyConfig {
            control_plane: Some(self.proxy_cp(token, pod)),
            ..Default::default()
        })
        .unwrap()
        .control_plane
        .unwrap();
        let channel = sinew_proxy::control::Channel::new(&cp).unwrap();
        let (tx, mut rx) = tokio::sync::mpsc::channel(4);
        tx.send(pb::DiscoveryRequest {
            kind: Some(pb::discovery_request::Kind::Hello(pb::Hello::default())),
        })
        .await
        .unwrap();
        let mut client =
            pb::discovery_client::DiscoveryClient::with_origin(channel.clone(), channel.origin());
        let mut req =
            tonic::Request::new(futures_util::stream::poll_fn(move |cx| rx.poll_recv(cx)));
        req.metadata_mut()
            .insert("authorization", format!("Bearer {token}").parse().unwrap());
        let rx = client.stream(req).await.unwrap().into_inner();
        Discovery { _tx: tx, rx }
    }
}

impl Discovery {
    /// The telemetry of the next response that carries settings.
    async fn settings(&mut self) -> cfg::Telemetry {
        self.proxy_settings()
            .await
            .telemetry
            .expect("settings carry telemetry")
    }

    /// The next settings sent.
    async fn proxy_settings(&mut self) -> sinew_proto::discovery::v1::ProxySettings {
        use sinew_proto::discovery::v1::resource::Kind;
        loop {
            let rsp = tokio::time::timeout(Duration::from_secs(10), self.rx.message())
                .await
                .expect("a response in time")
                .unwrap()
                .expect("the stream stays open");
            let settings = rsp.resources.into_iter().find_map(|r| match r.kind {
                Some(Kind::Settings(s)) => Some(s),
                _ => None,
            });
            if let Some(s) = settings {
                return s;
            }
        }
    }
}

/// Generous for a loaded machine: the status writer and the leader retry after 10 s, and
/// `eventually` returns as soon as the condition holds.
const WAIT: Duration = Duration::from_secs(30);

/// Whether the client proxy's config carries the test rule's pool limit.
async fn has_pool_limit(client: &StartedProxy) -> bool {
    http_get(client.admin, "/config_dump")
        .await
        .contains("\"http2MaxRequests\": 7")
}

/// Whether the client proxy's config has an endpoint for the web service (its only endpoint is
/// meshed, so it has a mesh port).
async fn has_endpoint(client: &StartedProxy) -> bool {
    http_get(client.admin, "/config_dump")
        .await
        .contains("\"meshPort\"")
}

fn body_json(rsp: &str) -> Value {
    let body = rsp.split_once("\r\n\r\n").map_or("", |(_, b)| b);
    serde_json::from_str(body).unwrap_or(Value::Null)
}
