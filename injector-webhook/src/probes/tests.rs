use serde_json::json;

use super::*;

/// Rewrites the probes of the container `json`; returns it, the probers and the warnings.
fn run(json: Value) -> (Value, AppProbers, Vec<String>) {
    let typed: Container = serde_json::from_value(json.clone()).expect("a container");
    let mut edited = json;
    let mut probers = AppProbers::new();
    let mut warnings = Vec::new();
    rewrite(&mut edited, &typed, &mut probers, &mut warnings);
    (edited, probers, warnings)
}

#[test]
fn an_http_probe_on_a_named_port_goes_to_the_prober_with_its_timing_kept() {
    let (c, probers, warnings) = run(json!({
        "name": "web",
        "ports": [{"name": "http", "containerPort": 8080}],
        "livenessProbe": {
            "httpGet": {"path": "/live", "port": "http", "httpHeaders": [{"name": "X-Probe", "value": "$1"}]},
            "initialDelaySeconds": 5, "periodSeconds": 7, "timeoutSeconds": 2,
            "successThreshold": 1, "failureThreshold": 9, "terminationGracePeriodSeconds": 11,
            "futureField": {"kept": true}
        }
    }));
    assert!(warnings.is_empty(), "{warnings:?}");
    assert_eq!(
        c["livenessProbe"],
        json!({
            "httpGet": {"path": "/app-health/web/livez", "port": 15020, "scheme": "HTTP"},
            "initialDelaySeconds": 5, "periodSeconds": 7, "timeoutSeconds": 2,
            "successThreshold": 1, "failureThreshold": 9, "terminationGracePeriodSeconds": 11,
            "futureField": {"kept": true}
        })
    );
    assert_eq!(
        serde_json::to_value(&probers).expect("JSON"),
        json!({"/app-health/web/livez": {
            "httpGet": {"path": "/live", "port": 8080, "scheme": "HTTP", "host": "",
                        "httpHeaders": [{"name": "X-Probe", "value": "$1"}]},
            "timeoutSeconds": 2
        }})
    );
}

#[test]
fn tcp_and_grpc_probes_become_http_and_keep_their_originals() {
    let (c, probers, _) = run(json!({
        "name": "db",
        "readinessProbe": {"tcpSocket": {"port": 5432}},
        "startupProbe": {"grpc": {"port": 9090, "service": "db.Health"}, "periodSeconds": 2}
    }));
    assert_eq!(
        c["readinessProbe"],
        json!({"httpGet": {"path": "/app-health/db/readyz", "port": 15020, "scheme": "HTTP"}})
    );
    assert_eq!(
        c["startupProbe"],
        json!({"httpGet": {"path": "/app-health/db/startupz", "port": 15020, "scheme": "HTTP"}, "periodSeconds": 2})
    );
    assert_eq!(
        serde_json::to_value(&probers).expect("JSON"),
        json!({
            "/app-health/db/readyz": {"tcpSocket": {"port": 5432}, "timeoutSeconds": 1},
            "/app-health/db/startupz": {"grpc": {"port": 9090, "service": "db.Health"}, "timeoutSeconds": 1}
        })
    );
}

#[test]
fn exec_host_and_proxy_port_probes_are_left_alone() {
    let original = json!({
        "name": "app",
        "livenessProbe": {"exec": {"command": ["true"]}},
        "readinessProbe": {"httpGet": {"host": "example.com", "path": "/", "port": 80}},
        "startupProbe": {"httpGet": {"path": "/healthz/ready", "port": 15021}}
    });
    let (c, probers, warnings) = run(original.clone());
    assert_eq!(c, original);
    assert!(probers.is_empty() && warnings.is_empty());
}

#[test]
fn a_named_port_the_container_lacks_is_a_warning_and_a_numeric_name_a_number() {
    let (c, probers, warnings) = run(json!({
        "name": "app",
        "livenessProbe": {"httpGet": {"port": "metrics"}},
        "readinessProbe": {"tcpSocket": {"port": "8081"}}
    }));
    assert_eq!(c["livenessProbe"], json!({"httpGet": {"port": "metrics"}}));
    assert_eq!(
        warnings,
        [
            "container app livenessProbe is not rewritten: the container has no port named \"metrics\""
        ]
    );
    assert_eq!(
        probers["/app-health/app/readyz"].action,
        Action::TcpSocket { port: 8081 }
    );
}

#[test]
fn a_probe_the_prober_could_not_send_as_the_kubelet_would_is_left_as_written_with_a_warning() {
    let long_path = format!("/{}", "a".repeat(MAX_PATH));
    for (probe, why) in [
        (
            json!({"httpGet": {"path": "/", "port": 8080, "scheme": "http"}}),
            "scheme \"http\" is not HTTP or HTTPS",
        ),
        (
            json!({"httpGet": {"path": "/", "port": 8080, "httpHeaders": [{"name": "X Probe", "value": "1"}]}}),
            "\"X Probe\" is not an HTTP header name",
        ),
        (
            json!({"httpGet": {"path": "/", "port": 8080, "httpHeaders": [{"name": "", "value": "1"}]}}),
            "\"\" is not an HTTP header name",
        ),
        (
            json!({"httpGet": {"path": "/", "port": 8080, "httpHeaders": [{"name": "X-Probe", "value": "a\r\nX-Injected: 1"}]}}),
            "the value of header X-Probe has a control character, which the kubelet cannot send either",
        ),
        (
            json!({"httpGet": {"path": long_path, "port": 8080}}),
            "its path is longer than 4096 bytes",
        ),
    ] {
        let original = json!({"name": "app", "readinessProbe": probe});
        let (c, probers, warnings) = run(original.clone());
        assert_eq!(c, original, "{why}");
        assert!(probers.is_empty(), "{why}");
        assert_eq!(
            warnings,
            [format!(
                "container app readinessProbe is not rewritten: {why}"
            )]
        );
    }
    // What Kubernetes accepts and the kubelet sends is rewritten: bytes past ASCII in a header
    // value, a path the proxy percent-encodes, the longest path, a tab.
    let (_, probers, warnings) = run(json!({
        "name": "app",
        "livenessProbe": {"httpGet": {"path": "/santé check", "port": 8080, "scheme": "HTTPS",
            "httpHeaders": [{"name": "X-User", "value": "José\tMaría"}]}},
        "readinessProbe": {"httpGet": {"path": format!("/{}", "a".repeat(MAX_PATH - 1)), "port": 8080}}
    }));
    assert!(warnings.is_empty(), "{warnings:?}");
    assert_eq!(probers.len(), 2);
}

#[test]
fn the_prober_json_round_trips() {
    let prober = AppProber {
        action: Action::HttpGet {
            path: "/x".into(),
            port: 8080,
            scheme: "HTTPS".into(),
            host: String::new(),
            headers: vec![Header {
                name: "n".into(),
                value: "v".into(),
            }],
        },
        timeout_seconds: 3,
    };
    let text = serde_json::to_string(&prober).expect("JSON");
    assert_eq!(
        text,
        r#"{"httpGet":{"path":"/x","port":8080,"scheme":"HTTPS","host":"","httpHeaders":[{"name":"n","value":"v"}]},"timeoutSeconds":3}"#
    );
    assert_eq!(
        serde_json::from_str::<AppProber>(&text).expect("back"),
        prober
    );
}
