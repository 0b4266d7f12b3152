//! The injector's side of the proxy contract, read by the proxy's own parsers: the env the
//! injected `sinew-proxy` container gets (`SINEW_PROXY_CONFIG`, `SINEW_APP_PROBERS`), as the
//! kubelet hands it over, is exactly what `sinew-proxy run` accepts, for a pod with every probe
//! kind, in both the native and the fallback mode; and no probe Kubernetes lets through makes
//! the proxy refuse to start.

use serde_json::{Value, json};
use sinew_injector::Settings;
use sinew_proxy::app_health::spec::{Action, HttpGet, Probe, Probers};
use sinew_proxy::config::bootstrap;
use std::time::Duration;

const POD_NAME: &str = "web-6b7c9d-q8z2m";

/// A Deployment's pod in `shop` with every kind of probe the injector rewrites: httpGet (named
/// and numeric ports, HTTPS, a query, headers with `$`), tcpSocket (a number, and a name that
/// is a number), grpc (with and without a service), on app containers and on a native sidecar
/// of the app's own; and one it does not rewrite (exec).
fn pod_with_every_probe() -> Value {
    json!({
        "apiVersion": "v1", "kind": "Pod",
        "metadata": {
            "generateName": "web-6b7c9d-", "namespace": "shop", "labels": {"app": "web"},
            "annotations": {"sinew.dev/inbound-mode": "STRICT"}
        },
        "spec": {
            "serviceAccountName": "web",
            "initContainers": [
                {"name": "migrate", "image": "migrate:1"},
                {"name": "log-shipper", "image": "fluent-bit:3", "restartPolicy": "Always",
                 "startupProbe": {"httpGet": {"path": "/api/v1/health", "port": 2020, "scheme": "HTTP"}}}
            ],
            "containers": [
                {"name": "api", "image": "api:1",
                 "ports": [{"name": "http", "containerPort": 8080}, {"name": "admin", "containerPort": 8443}],
                 "livenessProbe": {
                     "httpGet": {"path": "/healthz?full=1", "port": "http", "scheme": "HTTP",
                                 "httpHeaders": [{"name": "X-Probe", "value": "cost $5 $(NOT_A_VAR)"},
                                                 {"name": "Authorization", "value": "Bearer a.b.c"}]},
                     "timeoutSeconds": 3, "periodSeconds": 10},
                 "readinessProbe": {"httpGet": {"path": "/", "port": "admin", "scheme": "HTTPS"}},
                 "startupProbe": {"tcpSocket": {"port": 8080}, "failureThreshold": 30}},
                {"name": "cart", "image": "cart:1",
                 "livenessProbe": {"grpc": {"port": 9090, "service": "shop.Cart"}, "timeoutSeconds": 5},
                 "readinessProbe": {"grpc": {"port": 9091}},
                 "startupProbe": {"exec": {"command": ["cart", "check"]}}},
                {"name": "worker", "image": "worker:1",
                 "readinessProbe": {"tcpSocket": {"port": "9000"}}}
            ]
        }
    })
}

/// The pod injected with `settings` (which must inject it).
fn inject(pod: &Value, settings: &Settings) -> (Value, Vec<String>) {
    match sinew_injector::inject_object(pod, settings) {
        sinew_injector::Injected::Changed { object, warnings } => (object, warnings),
        other => panic!("the pod is injected: {other:?}"),
    }
}

/// The proxy container of an injected pod (a native sidecar or, in the fallback, a container).
fn sidecar(pod: &Value) -> &Value {
    ["initContainers", "containers"]
        .iter()
        .flat_map(|list| pod["spec"][list].as_array().into_iter().flatten())
        .find(|c| c["name"] == "sinew-proxy")
        .unwrap_or_else(|| panic!("no sinew-proxy container in {pod}"))
}

/// The proxy container's env as the kubelet hands it to the process of pod `POD_NAME`.
fn kubelet_env(pod: &Value) -> std::collections::BTreeMap<String, String> {
    sinew_injector::sidecar::kubelet_env(sidecar(pod), |path| match path {
        "metadata.name" => POD_NAME.to_string(),
        "metadata.namespace" => "shop".to_string(),
        "status.podIP" => "10.1.2.3".to_string(),
        "spec.serviceAccountName" => "web".to_string(),
        other => panic!("unexpected downward-API field {other}"),
    })
}

/// `SINEW_APP_PROBERS` through the proxy's parser.
fn probers(pod: &Value) -> Probers {
    let env = kubelet_env(pod);
    let text = env.get("SINEW_APP_PROBERS").expect("probes were rewritten");
    Probers::parse(text)
        .unwrap_or_else(|e| panic!("the proxy accepts SINEW_APP_PROBERS: {e}\n{text}"))
}

/// Every `(container, probe field, path)` the kubelet will ask the prober for.
fn rewritten_paths(pod: &Value) -> Vec<(String, String, String)> {
    let mut out = Vec::new();
    for list in ["initContainers", "containers"] {
        for c in pod["spec"][list].as_array().into_iter().flatten() {
            for field in ["livenessProbe", "readinessProbe", "startupProbe"] {
                let get = &c[field]["httpGet"];
                if get["port"] == 15020 {
                    assert_eq!(get["scheme"], "HTTP", "{c}");
                    let path = get["path"].as_str().expect("a path").to_string();
                    out.push((
                        c["name"].as_str().unwrap().to_string(),
                        field.to_string(),
                        path,
                    ));
                }
            }
        }
    }
    out
}

fn http(port: u16, path: &str, https: bool, headers: &[(&str, &str)]) -> Action {
    Action::Http(HttpGet {
        port,
        path: path.parse().unwrap(),
        https,
        host: None,
        headers: headers
            .iter()
            .map(|(n, v)| (n.parse().unwrap(), v.parse().unwrap()))
            .collect(),
    })
}

fn probe(action: Action, timeout_seconds: u64) -> Probe {
    Probe {
        action,
        timeout: Duration::from_secs(timeout_seconds),
    }
}

#[test]
fn every_probe_kind_reaches_the_proxys_parser_as_the_app_wrote_it() {
    for settings in [
        Settings::default(),
        Settings::from_yaml("nativeSidecar: false\n").expect("valid"),
    ] {
        let (pod, _) = inject(&pod_with_every_probe(), &settings);
        let probers = probers(&pod);
        let expected = [
            (
                "/app-health/log-shipper/startupz",
                probe(http(2020, "/api/v1/health", false, &[]), 1),
            ),
            (
                "/app-health/api/livez",
                probe(
                    http(
                        8080,
                        "/healthz?full=1",
                        false,
                        &[
                            ("x-probe", "cost $5 $(NOT_A_VAR)"),
                            ("authorization", "Bearer a.b.c"),
                        ],
                    ),
                    3,
                ),
            ),
            (
                "/app-health/api/readyz",
                probe(http(8443, "/", true, &[]), 1),
            ),
            (
                "/app-health/api/startupz",
                probe(Action::Tcp { port: 8080 }, 1),
            ),
            (
                "/app-health/cart/livez",
                probe(
                    Action::Grpc {
                        port: 9090,
                        service: "shop.Cart".into(),
                    },
                    5,
                ),
            ),
            (
                "/app-health/cart/readyz",
                probe(
                    Action::Grpc {
                        port: 9091,
                        service: String::new(),
                    },
                    1,
                ),
            ),
            (
                "/app-health/worker/readyz",
                probe(Action::Tcp { port: 9000 }, 1),
            ),
        ];
        assert_eq!(probers.len(), expected.len());
        for (path, want) in &expected {
            let got = probers
                .get(path)
                .unwrap_or_else(|| panic!("no probe at {path}"));
            assert_eq!(**got, *want, "{path}");
        }
        // What the kubelet asks is what the prober answers: every rewritten probe's path has a
        // probe behind it, under the container and kind the path names.
        let asked = rewritten_paths(&pod);
        assert_eq!(asked.len(), expected.len(), "{asked:?}");
        for (container, field, path) in asked {
            let kind = match field.as_str() {
                "livenessProbe" => "livez",
                "readinessProbe" => "readyz",
                _ => "startupz",
            };
            assert_eq!(path, format!("/app-health/{container}/{kind}"));
            assert!(probers.get(&path).is_some(), "{path}");
        }
    }
}

#[test]
fn the_bootstrap_config_is_one_the_proxy_starts_with_in_either_mode() {
    for settings in [
        Settings::default(),
        Settings::from_yaml(
            "nativeSidecar: false\n\
             controlPlaneAddress: cp.mesh-system.svc:15013\n\
             controlPlaneIdentity: spiffe://example.org/ns/mesh/sa/cp\n\
             meshAddressRanges: [10.96.0.0/12, fd00:10:96::/112]\n",
        )
        .expect("valid"),
    ] {
        let (pod, _) = inject(&pod_with_every_probe(), &settings);
        let env = kubelet_env(&pod);
        let text = &env["SINEW_PROXY_CONFIG"];
        let config = bootstrap::from_json(text)
            .unwrap_or_else(|e| panic!("the proxy accepts SINEW_PROXY_CONFIG: {e}\n{text}"));
        let cp = config.control_plane.as_ref().expect("a control plane");
        assert_eq!(cp.address, settings.control_plane_address);
        assert_eq!(cp.identity.as_str(), settings.control_plane_identity);
        assert_eq!(cp.pod, POD_NAME);
        assert_eq!(cp.namespace, "shop");
        assert_eq!(
            cp.root_cert.to_str(),
            Some("/var/run/sinew/root-cert/root-cert.pem")
        );
        assert_eq!(cp.token_file.to_str(), Some("/var/run/sinew/token/token"));
        assert_eq!(
            config.inbound_mode,
            sinew_proxy::config::InboundMode::Strict,
            "sinew.dev/inbound-mode"
        );
        let ranges: Vec<String> = config.mesh_ranges.iter().map(|r| r.to_string()).collect();
        assert_eq!(ranges, settings.mesh_address_ranges);
        // The rest of the env is what `sinew-proxy run` reads too.
        assert_eq!(env["SINEW_LOG"], "info");
        assert_eq!(
            env["SINEW_POD_IP"].parse::<std::net::IpAddr>().ok(),
            Some([10, 1, 2, 3].into())
        );
    }
}

/// A pod whose container `app` (port 8080) has `probe` as its readiness probe.
fn pod_with_readiness(probe: Value) -> Value {
    json!({
        "apiVersion": "v1", "kind": "Pod",
        "metadata": {"name": "odd", "namespace": "shop"},
        "spec": {"containers": [{"name": "app", "image": "app:1",
            "ports": [{"name": "http", "containerPort": 8080}], "readinessProbe": probe}]}
    })
}

#[test]
fn no_probe_kubernetes_lets_through_stops_the_proxy_from_starting() {
    let get = |extra: Value| {
        let mut get = json!({"path": "/ready", "port": "http", "scheme": "HTTP"});
        get.as_object_mut()
            .unwrap()
            .extend(extra.as_object().unwrap().clone());
        json!({"httpGet": get})
    };
    // Rewritten, and the prober sends what the kubelet would have (path as sent, header value).
    let rewritten = [
        (
            get(json!({"path": "/health check"})),
            "/health%20check",
            None,
        ),
        (get(json!({"path": "/santé"})), "/sant%C3%A9", None),
        (get(json!({"path": "/a\u{1}b"})), "/a%01b", None),
        (get(json!({"path": "ready"})), "/ready", None),
        (
            get(json!({"path": "/a{b}|\"c\"?q=<1>"})),
            "/a%7Bb%7D%7C%22c%22?q=%3C1%3E",
            None,
        ),
        (
            get(json!({"httpHeaders": [{"name": "X-User", "value": "José\tMaría $(HOME) $$"}]})),
            "/ready",
            Some("José\tMaría $(HOME) $$"),
        ),
        (
            json!({"httpGet": {"path": "/ready", "port": 8080}, "timeoutSeconds": i32::MAX}),
            "/ready",
            None,
        ),
    ];
    for (probe, sent, header) in rewritten {
        let (pod, warnings) = inject(&pod_with_readiness(probe.clone()), &Settings::default());
        assert!(warnings.is_empty(), "{probe}: {warnings:?}");
        let probers = probers(&pod);
        let Action::Http(got) = &probers
            .get("/app-health/app/readyz")
            .expect("rewritten")
            .action
        else {
            panic!("an HTTP probe: {probe}");
        };
        // `PathAndQuery` keeps the request target whole.
        assert_eq!(got.path.as_str(), sent, "{probe}");
        if let Some(value) = header {
            assert_eq!(got.headers[0].1.as_bytes(), value.as_bytes(), "{probe}");
        }
    }
    // Left as written, with a warning: the API server refuses the first three as it would
    // without the mesh, the kubelet fails the fourth, and the last is too long to be worth it.
    let long = format!("/{}", "a".repeat(5000));
    let left = [
        get(json!({"scheme": "http"})),
        get(json!({"scheme": "https"})),
        get(json!({"httpHeaders": [{"name": "Bad Header", "value": "x"}]})),
        get(json!({"httpHeaders": [{"name": "X-Probe", "value": "a\r\nX-Injected: 1"}]})),
        get(json!({"path": long})),
    ];
    for probe in left {
        let (pod, warnings) = inject(&pod_with_readiness(probe.clone()), &Settings::default());
        assert_eq!(pod["spec"]["containers"][0]["readinessProbe"], probe);
        assert!(
            warnings
                .iter()
                .any(|w| w.starts_with("container app readinessProbe is not rewritten: ")),
            "{probe}: {warnings:?}"
        );
        let env = kubelet_env(&pod);
        assert!(!env.contains_key("SINEW_APP_PROBERS"), "{probe}");
        // The proxy still starts: its bootstrap config is whole.
        bootstrap::from_json(&env["SINEW_PROXY_CONFIG"]).expect("the proxy accepts it");
    }
}
