use super::*;
use std::ffi::OsStr;
use std::os::unix::ffi::OsStrExt as _;

/// The contract's three shapes, as the injector writes them.
const CONTRACT: &str = r#"{
  "/app-health/web/livez": {"httpGet": {"path": "/x", "port": 8080, "scheme": "HTTP", "host": "",
                            "httpHeaders": [{"name": "n", "value": "v"}]}, "timeoutSeconds": 1},
  "/app-health/web/readyz": {"tcpSocket": {"port": 8080}, "timeoutSeconds": 1},
  "/app-health/api/startupz": {"grpc": {"port": 9090, "service": "svc"}, "timeoutSeconds": 5}
}"#;

fn entry_error(json: &str) -> (String, String) {
    match Probers::parse(json) {
        Err(SpecError::Entry { key, reason }) => (key, reason),
        other => panic!("expected an entry error for {json}, got {other:?}"),
    }
}

#[test]
fn the_contracts_probes_parse_into_what_they_say() {
    let p = Probers::parse(CONTRACT).expect("valid");
    assert_eq!(p.len(), 3);
    let live = p.get("/app-health/web/livez").expect("livez");
    assert_eq!(live.timeout, Duration::from_secs(1));
    let Action::Http(get) = &live.action else {
        panic!("{live:?}")
    };
    assert_eq!(
        (get.port, get.https, get.host.as_deref()),
        (8080, false, None)
    );
    assert_eq!(get.path, "/x");
    assert_eq!(get.headers.len(), 1);
    assert_eq!(get.headers[0].0, "n");
    assert_eq!(get.headers[0].1, "v");
    assert_eq!(
        p.get("/app-health/web/readyz").unwrap().action,
        Action::Tcp { port: 8080 }
    );
    let start = p.get("/app-health/api/startupz").unwrap();
    assert_eq!(
        start.action,
        Action::Grpc {
            port: 9090,
            service: "svc".into()
        }
    );
    assert_eq!(start.timeout, Duration::from_secs(5));
}

#[test]
fn defaults_are_the_kubelets() {
    let p = Probers::parse(
        r#"{"/app-health/a/livez": {"httpGet": {"port": 80}},
            "/app-health/a/readyz": {"httpGet": {"port": 80, "path": "ready"}, "timeoutSeconds": 0},
            "/app-health/a/startupz": {"grpc": {"port": 81}, "periodSeconds": 3, "failureThreshold": 30}}"#,
    )
    .expect("valid");
    let Action::Http(get) = &p.get("/app-health/a/livez").unwrap().action else {
        panic!()
    };
    assert_eq!(get.path, "/");
    assert_eq!(
        p.get("/app-health/a/livez").unwrap().timeout,
        DEFAULT_TIMEOUT
    );
    let ready = p.get("/app-health/a/readyz").unwrap();
    assert_eq!(ready.timeout, DEFAULT_TIMEOUT);
    let Action::Http(get) = &ready.action else {
        panic!()
    };
    assert_eq!(get.path, "/ready");
    assert_eq!(
        p.get("/app-health/a/startupz").unwrap().action,
        Action::Grpc {
            port: 81,
            service: String::new()
        }
    );
}

#[test]
fn a_host_may_be_a_name_or_an_address_of_either_family() {
    for host in ["web.shop.svc", "10.1.2.3", "fd00::1", "[fd00::1]"] {
        let p = Probers::parse(&format!(
            r#"{{"/app-health/a/livez": {{"httpGet": {{"port": 80, "host": "{host}"}}}}}}"#
        ))
        .unwrap_or_else(|e| panic!("{host}: {e}"));
        let Action::Http(get) = &p.get("/app-health/a/livez").unwrap().action else {
            panic!()
        };
        assert_eq!(get.host.as_deref(), Some(host));
    }
}

#[test]
fn unset_or_empty_means_no_probes() {
    assert!(Probers::from_env(None).unwrap().is_empty());
    assert!(Probers::from_env(Some(OsStr::new(""))).unwrap().is_empty());
    assert!(Probers::parse("{}").unwrap().is_empty());
}

#[test]
fn each_mistake_names_its_entry_and_field() {
    let cases = [
        (
            r#"{"/app-health/web/livez": {"httpGet": {"port": "http"}}}"#,
            "httpGet.port",
            "named port",
        ),
        (
            r#"{"/app-health/web/livez": {"httpGet": {"port": 0}}}"#,
            "httpGet.port",
            "1-65535",
        ),
        (
            r#"{"/app-health/web/livez": {"httpGet": {"port": 70000}}}"#,
            "httpGet.port",
            "1-65535",
        ),
        (
            r#"{"/app-health/web/livez": {"tcpSocket": {"port": -1}}}"#,
            "tcpSocket.port",
            "1-65535",
        ),
        (
            r#"{"/app-health/web/livez": {"grpc": {"port": null}}}"#,
            "grpc.port",
            "not a port",
        ),
        (
            r#"{"/app-health/web/livez": {"httpGet": {"port": 1, "scheme": "FTP"}}}"#,
            "httpGet.scheme",
            "FTP",
        ),
        (
            r#"{"/app-health/web/livez": {"httpGet": {"port": 1, "host": "a b"}}}"#,
            "httpGet.host",
            "a b",
        ),
        (
            r#"{"/app-health/web/livez": {"httpGet": {"port": 1, "host": "h:80"}}}"#,
            "httpGet.host",
            "h:80",
        ),
        (
            r#"{"/app-health/web/livez": {"httpGet": {"port": 1, "httpHeaders": [{"name": "bad name", "value": "v"}]}}}"#,
            "httpHeaders[0].name",
            "bad name",
        ),
        (
            r#"{"/app-health/web/livez": {"httpGet": {"port": 1, "httpHeaders": [{"name": "n", "value": "a\nb"}]}}}"#,
            "httpHeaders[0].value",
            "header value",
        ),
        (
            r#"{"/app-health/web/livez": {"httpGet": {"port": 1}, "timeoutSeconds": -2}}"#,
            "timeoutSeconds",
            "negative",
        ),
        (
            r#"{"/app-health/web/livez": {"htpGet": {"port": 1}}}"#,
            "htpGet",
            "unknown field",
        ),
        (
            r#"{"/app-health/web/livez": {"httpGet": {"port": 1, "hots": "x"}}}"#,
            "hots",
            "unknown field",
        ),
        (
            r#"{"/app-health/web/livez": {"exec": {"command": ["true"]}}}"#,
            "exec",
            "unknown field",
        ),
        (
            r#"{"/app-health/web/livez": {}}"#,
            "one of httpGet",
            "required",
        ),
        (
            r#"{"/app-health/web/livez": {"httpGet": {"port": 1}, "tcpSocket": {"port": 1}}}"#,
            "only one",
            "may be set",
        ),
        (r#"{"/app-health/web/livez": 5}"#, "invalid type", "struct"),
        (
            r#"{"/app-health/web/healthz": {"tcpSocket": {"port": 1}}}"#,
            "livez|readyz|startupz",
            "key",
        ),
        (
            r#"{"/healthz": {"tcpSocket": {"port": 1}}}"#,
            "/app-health/<container>",
            "key",
        ),
        (
            r#"{"/app-health/Web_1/livez": {"tcpSocket": {"port": 1}}}"#,
            "Web_1",
            "container name",
        ),
        (
            r#"{"/app-health/a/b/livez": {"tcpSocket": {"port": 1}}}"#,
            "livez|readyz|startupz",
            "key",
        ),
    ];
    for (json, field, why) in cases {
        let (key, reason) = entry_error(json);
        assert!(key.starts_with('/'), "{json}: {key}");
        assert!(reason.contains(field), "{json}: {reason}");
        assert!(reason.contains(why), "{json}: {reason}");
        // The whole message names the variable and the entry.
        let text = Probers::parse(json).unwrap_err().to_string();
        assert!(text.starts_with(&format!("{ENV}[{key:?}]: ")), "{text}");
    }
}

#[test]
fn hostile_values_are_errors_never_panics() {
    let err = Probers::from_env(Some(OsStr::from_bytes(b"{\"\xff\": 1}"))).unwrap_err();
    assert!(matches!(err, SpecError::NotUtf8), "{err:?}");
    for bad in ["[]", "null", "{", "\"x\"", r#"{"a": 1"#] {
        assert!(
            matches!(Probers::parse(bad), Err(SpecError::NotObject(_))),
            "{bad}"
        );
    }
    let deep = format!(
        r#"{{"/app-health/a/livez": {}{}}}"#,
        "[".repeat(50_000),
        "]".repeat(50_000)
    );
    assert!(Probers::parse(&deep).is_err());
    let huge_header = format!(
        r#"{{"/app-health/a/livez": {{"httpGet": {{"port": 1, "httpHeaders": [{{"name": "{}", "value": "v"}}]}}}}}}"#,
        "x".repeat(1 << 20)
    );
    let (_, reason) = entry_error(&huge_header);
    assert!(reason.contains("httpHeaders[0].name"), "{reason}");
    // A path no request line can carry: an error of one short line, not the path again.
    let huge_path = format!(
        r#"{{"/app-health/a/livez": {{"httpGet": {{"port": 1, "path": "/{}"}}}}}}"#,
        "é".repeat(40_000)
    );
    let (_, reason) = entry_error(&huge_path);
    assert!(reason.starts_with("httpGet.path: "), "{reason}");
    assert!(reason.contains("(80001 bytes)"), "{reason}");
    assert!(reason.len() < 300, "{reason}");
}

#[test]
fn what_kubernetes_accepts_and_the_kubelet_sends_is_accepted_as_the_kubelet_sends_it() {
    let probers = Probers::parse(
        r#"{
        "/app-health/a/livez": {"httpGet": {"port": 1, "path": "/health check?verbose=1 2"}},
        "/app-health/a/readyz": {"httpGet": {"port": 1, "path": "/santé/<id>|\"x\"\u0001"}},
        "/app-health/b/readyz": {"httpGet": {"port": 1, "path": "/café/{id}"}},
        "/app-health/a/startupz": {"httpGet": {"port": 1, "path": "/ok!$&'()*+,;=:@%41~",
            "httpHeaders": [{"name": "X-User", "value": "José\tMaría"}]}}
    }"#,
    )
    .expect("accepted");
    let get = |path: &str| match &probers.get(path).expect(path).action {
        Action::Http(get) => get,
        other => panic!("{other:?}"),
    };
    assert_eq!(
        get("/app-health/a/livez").path.as_str(),
        "/health%20check?verbose=1%202"
    );
    assert_eq!(
        get("/app-health/a/readyz").path.as_str(),
        "/sant%C3%A9/%3Cid%3E%7C%22x%22%01"
    );
    // Even where `PathAndQuery` would take them raw, as the kubelet sends them.
    assert_eq!(
        get("/app-health/b/readyz").path.as_str(),
        "/caf%C3%A9/%7Bid%7D"
    );
    // A path the grammar takes is sent as written, escapes included.
    let startup = get("/app-health/a/startupz");
    assert_eq!(startup.path.as_str(), "/ok!$&'()*+,;=:@%41~");
    assert_eq!(startup.headers[0].1.as_bytes(), "José\tMaría".as_bytes());
}
