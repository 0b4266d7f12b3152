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
use support::proxies::{StartedProxy, admin, echo_app, http_get, request, start_proxy};
use support::{eventually, unique_ip};

const SIDECAR: &str = "sinew-proxy";

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
    })
    .await
    .unwrap_or_else(|e| panic!("control plane starts: {e:#}{}", api.log_tail()));
    let root_file = dir.path().join("root.pem");
    std::fs::write(&root_file, cp.ca.trust_bundle().join("\n")).unwrap();
    let (grpc, monitoring) = (cp.grpc_addr, cp.monitoring_addr);
    let task = tokio::spawn(cp.serve());
    Some(Cluster {
        dir,
        api,
        cp: ControlPlane2 {
            grpc,
            monitoring,
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
        cfg::ControlPlane {
            address: self.cp.grpc.to_string(),
            root_cert_file: self.cp.root_file.display().to_string(),
            token_file: token_file.display().to_string(),
            pod: pod.into(),
            namespace: "shop".into(),
            resolve_timeout: Some(pbjson_types::Duration {
                seconds: 5,
                nanos: 0,
            }),
            ..Default::default()
        }
    }

    /// The web pod's inbound proxy (on the pod's IP) and the client's outbound proxy to the web
    /// service; returns the client proxy and its listener.
    async fn proxies(&self, web_ip: IpAddr) -> (StartedProxy, StartedProxy, SocketAddr) {
        let web = start_proxy(cfg::ProxyConfig {
            control_plane: Some(self.proxy_cp("tok-web", "web-0")),
            listeners: vec![cfg::Listener {
                name: "inbound".into(),
                address: format!("{web_ip}:15006"),
                direction: cfg::Direction::Inbound as i32,
                ..Default::default()
            }],
            admin: admin(),
            ..Default::default()
        })
        .await;
        let client = start_proxy(cfg::ProxyConfig {
            control_plane: Some(self.proxy_cp("tok-client", "client-0")),
            listeners: vec![cfg::Listener {
                name: "outbound".into(),
                address: "127.0.0.1:0".into(),
                direction: cfg::Direction::Outbound as i32,
                fixed_destination: format!("{}:8080", self.web_vip),
                ..Default::default()
            }],
            admin: admin(),
            ..Default::default()
        })
        .await;
        let outbound = client.addrs[0].1;
        (web, client, outbound)
    }

    async fn monitoring(&self, path: &str) -> String {
        http_get(self.cp.monitoring, path).await
    }

    /// What the control plane resolves the web service to now (its endpoints and policy).
    async fn resolved_web(&self) -> Value {
        let rsp = self
            .monitoring(&format!(
                "/debug/resolve?name={}:8080&namespace=shop&pod=client-0",
                self.web_vip
            ))
            .await;
        body_json(&rsp)
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
    let Some(c) =
        cluster("proxies_authenticate_with_service_account_tokens_and_carry_mesh_traffic").await
    else {
        return;
    };
    // The CA root was created in its Secret on first start.
    let (status, secret) = c
        .api
        .request(
            "GET",
            "/api/v1/namespaces/sinew-system/secrets/sinew-ca",
            None,
        )
        .await;
    assert_eq!(status, 200, "{secret}");
    let (_, slice) = c
        .api
        .request(
            "GET",
            "/apis/discovery.k8s.io/v1/namespaces/shop/endpointslices/web-abcde",
            None,
        )
        .await;
    let (_web, _client, outbound) = c.proxies(web_ip_of(&slice)).await;
    let out = request(outbound).await.unwrap();
    assert!(
        out.contains("URI=spiffe://cluster.local/ns/shop/sa/client"),
        "{out}"
    );
    assert!(
        out.contains("By=spiffe://cluster.local/ns/shop/sa/web"),
        "{out}"
    );
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
    let Some(c) = cluster("endpoint_slice_and_destination_rule_changes_reach_the_proxy").await
    else {
        return;
    };
    let (_, seed_slice) = c
        .api
        .request(
            "GET",
            "/apis/discovery.k8s.io/v1/namespaces/shop/endpointslices/web-abcde",
            None,
        )
        .await;
    let web_ip = web_ip_of(&seed_slice);
    let (_web, client, outbound) = c.proxies(web_ip).await;
    request(outbound).await.unwrap();
    assert!(has_endpoint(&client).await);

    // The endpoint stops being ready: the proxy's config loses it.
    let path = "/apis/discovery.k8s.io/v1/namespaces/shop/endpointslices/web-abcde";
    let (status, body) = c
        .api
        .request("PUT", path, Some(&slice(&[(web_ip, false)], c.app_port)))
        .await;
    assert_eq!(status, 200, "{body}");
    eventually(
        "the proxy drops the endpoint that is not ready",
        Duration::from_secs(5),
        || async { !has_endpoint(&client).await },
    )
    .await;
    let (status, body) = c
        .api
        .request("PUT", path, Some(&slice(&[(web_ip, true)], c.app_port)))
        .await;
    assert_eq!(status, 200, "{body}");
    eventually("the endpoint is back", Duration::from_secs(5), || async {
        request(outbound).await.is_ok()
    })
    .await;

    // Our DestinationRule kind appears with its CRD, and a rule created through the API applies.
    let (status, body) = c
        .api
        .request(
            "POST",
            "/apis/apiextensions.k8s.io/v1/customresourcedefinitions",
            Some(&sinew_destination_rule_crd()),
        )
        .await;
    assert_eq!(status, 201, "{body}");
    let rule = json!({
        "apiVersion": "sinew.dev/v1alpha1", "kind": "DestinationRule",
        "metadata": {"name": "web", "namespace": "shop"},
        "spec": {"host": "web", "trafficPolicy": {"connectionPool": {"http": {"http2MaxRequests": 7}}}}
    });
    let rules = "/apis/sinew.dev/v1alpha1/namespaces/shop/destinationrules";
    let (status, body) = c.api.request("POST", rules, Some(&rule)).await;
    assert_eq!(status, 201, "{body}");
    eventually(
        "the rule's pool limit reaches the proxy",
        Duration::from_secs(5),
        || async {
            http_get(client.admin, "/config_dump")
                .await
                .contains("\"http2MaxRequests\": 7")
        },
    )
    .await;

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
    let (status, body) = c
        .api
        .request("PUT", &format!("{rules}/web"), Some(&invalid))
        .await;
    assert_eq!(status, 200, "{body}");
    eventually(
        "the invalid rule is reported",
        Duration::from_secs(5),
        || async {
            c.monitoring("/debug/registryz")
                .await
                .contains("ROUND_ROBBIN")
        },
    )
    .await;
    assert!(
        http_get(client.admin, "/config_dump")
            .await
            .contains("\"http2MaxRequests\": 7")
    );
    // The elected control plane says so on the object: Accepted=False, naming the value.
    eventually(
        "the rule's status says Accepted=False",
        Duration::from_secs(10),
        || async {
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
        },
    )
    .await;

    // Deleting the rule removes its policy.
    let (status, body) = c.api.request("DELETE", &format!("{rules}/web"), None).await;
    assert_eq!(status, 200, "{body}");
    eventually(
        "the rule's policy is gone",
        Duration::from_secs(5),
        || async {
            !http_get(client.admin, "/config_dump")
                .await
                .contains("\"http2MaxRequests\": 7")
        },
    )
    .await;
    let _ = c.resolved_web().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_api_server_restart_under_traffic_fails_no_request_and_watches_resume() {
    let Some(mut c) =
        cluster("an_api_server_restart_under_traffic_fails_no_request_and_watches_resume").await
    else {
        return;
    };
    let (_, seed_slice) = c
        .api
        .request(
            "GET",
            "/apis/discovery.k8s.io/v1/namespaces/shop/endpointslices/web-abcde",
            None,
        )
        .await;
    let web_ip = web_ip_of(&seed_slice);
    let (_web, client, outbound) = c.proxies(web_ip).await;
    request(outbound).await.unwrap();

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
    tokio::time::sleep(Duration::from_millis(300)).await;
    c.api.start_again().await;
    let failures = traffic.await.unwrap();
    assert!(
        failures.is_empty(),
        "requests failed during the outage: {failures:?}"
    );
    assert!(has_endpoint(&client).await);

    // The watches resumed: a change made after the restart reaches the proxy.
    let path = "/apis/discovery.k8s.io/v1/namespaces/shop/endpointslices/web-abcde";
    let (status, body) = c
        .api
        .request("PUT", path, Some(&slice(&[(web_ip, false)], c.app_port)))
        .await;
    assert_eq!(status, 200, "{body}");
    eventually(
        "a change after the restart reaches the proxy",
        Duration::from_secs(15),
        || async { !has_endpoint(&client).await },
    )
    .await;
    // It re-listed (the restarted server cannot resume the old watch: 410).
    let metrics = c.monitoring("/metrics").await;
    let relists = metrics
        .lines()
        .find_map(|l| l.strip_prefix("sinew_cp_kube_relists_total{kind=\"EndpointSlice\"} "))
        .and_then(|v| v.parse::<u64>().ok());
    assert!(relists.is_some_and(|n| n >= 1), "{metrics}");
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
