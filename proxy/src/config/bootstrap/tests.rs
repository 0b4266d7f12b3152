use super::*;
use std::ffi::OsStr;
use std::os::unix::ffi::OsStrExt as _;

/// What the injector puts in the sidecar's env (the contract's fields, in a cluster's shape).
const INJECTED: &str = r#"{
  "controlPlane": {
    "address": "sinew-control-plane.sinew-system.svc:15012",
    "rootCertFile": "/var/run/sinew/root-cert/root-cert.pem",
    "identity": "spiffe://cluster.local/ns/sinew-system/sa/sinew-control-plane",
    "tokenFile": "/var/run/sinew/token/token",
    "pod": "web-7d4b9c-x2x9q",
    "namespace": "shop"
  },
  "meshAddressRanges": ["10.96.0.0/12", "10.244.0.0/16"]
}"#;

fn field_error(text: &str) -> (String, String) {
    match from_json(text) {
        Err(BootstrapError::Field { field, reason }) => (field, reason),
        other => panic!("expected a field error for {text:?}, got {other:?}"),
    }
}

#[test]
fn the_injected_json_becomes_the_config() {
    let config = load(None, Some(OsStr::new(INJECTED))).expect("valid");
    let cp = config.control_plane.as_ref().expect("a control plane");
    assert_eq!(cp.address, "sinew-control-plane.sinew-system.svc:15012");
    assert_eq!(
        cp.root_cert,
        Path::new("/var/run/sinew/root-cert/root-cert.pem")
    );
    assert_eq!(cp.token_file, Path::new("/var/run/sinew/token/token"));
    assert_eq!(
        cp.identity.as_str(),
        "spiffe://cluster.local/ns/sinew-system/sa/sinew-control-plane"
    );
    assert_eq!(
        (cp.pod.as_str(), cp.namespace.as_str()),
        ("web-7d4b9c-x2x9q", "shop")
    );
    assert!(config.in_mesh_range("10.96.3.4".parse().unwrap()));
    assert!(config.in_mesh_range("10.244.0.9".parse().unwrap()));
    assert!(!config.in_mesh_range("192.168.0.1".parse().unwrap()));
}

#[test]
fn a_file_and_the_env_value_together_are_refused() {
    let err = load(
        Some(Path::new("/etc/sinew/proxy.yaml")),
        Some(OsStr::new(INJECTED)),
    )
    .expect_err("two sources");
    assert!(matches!(err, BootstrapError::Both), "{err:?}");
    let text = err.to_string();
    assert!(text.contains("--config") && text.contains(ENV), "{text}");
}

#[test]
fn no_source_at_all_says_how_to_give_one() {
    let err = load(None, None).expect_err("no source");
    assert!(matches!(err, BootstrapError::Neither), "{err:?}");
    assert!(err.to_string().contains(ENV), "{err}");
}

#[test]
fn a_file_alone_is_read_as_before() {
    let err = load(Some(Path::new("/nonexistent/sinew/proxy.yaml")), None).expect_err("missing");
    assert!(
        err.to_string().contains("/nonexistent/sinew/proxy.yaml"),
        "{err}"
    );
}

#[test]
fn an_unknown_nested_field_is_named_with_its_path() {
    let (field, reason) =
        field_error(r#"{"controlPlane": {"address": "cp:15012", "tokenFiel": "/t"}}"#);
    assert_eq!(field, "controlPlane.tokenFiel");
    assert!(reason.contains("tokenFiel"), "{reason}");
}

#[test]
fn a_wrong_type_inside_a_list_is_named_with_its_index() {
    let (field, _) = field_error(
        r#"{"services": [
            {"name": "a", "addresses": ["10.0.0.1:80"]},
            {"name": "b", "addresses": ["10.0.0.2:80"], "endpoints": [{"address": "10.1.0.1:80"}, {"meshPort": "many"}]}
        ]}"#,
    );
    assert_eq!(field, "services[1].endpoints[1].meshPort");
}

#[test]
fn an_unknown_enum_value_is_named() {
    let (field, reason) = field_error(r#"{"inboundMode": "STRICTER"}"#);
    assert_eq!(field, "inboundMode");
    assert!(reason.contains("STRICTER"), "{reason}");
}

#[test]
fn a_value_that_decodes_but_is_invalid_names_the_field_too() {
    let err = from_json(r#"{"controlPlane": {"address": "cp:15012", "tokenFile": "/t"}}"#)
        .expect_err("rootCertFile is required");
    assert!(matches!(err, BootstrapError::Invalid(_)), "{err:?}");
    assert_eq!(
        err.to_string(),
        format!("{ENV}: controlPlane.rootCertFile: required")
    );
    let err = from_json(r#"{"meshAddressRanges": ["10.96.0.0/12", "10.244.0.0/33"]}"#)
        .expect_err("bad CIDR");
    assert!(err.to_string().contains("meshAddressRanges[1]"), "{err}");
}

#[test]
fn hostile_values_get_plain_errors_and_never_a_panic() {
    // Not UTF-8.
    let err = load(
        None,
        Some(OsStr::from_bytes(b"{\"version\": \"\xff\xfe\"}")),
    )
    .unwrap_err();
    assert!(matches!(err, BootstrapError::NotUtf8), "{err:?}");
    // Empty, blank, truncated, not an object, YAML instead of JSON.
    for text in ["", "  \n", r#"{"controlPlane": {"address": "#] {
        let err = from_json(text).unwrap_err();
        assert!(
            matches!(err, BootstrapError::Empty | BootstrapError::NotJson(_)),
            "{text:?}: {err:?}"
        );
    }
    for text in ["[]", "42", "null", "\"x\""] {
        let (field, _) = field_error(text);
        assert_eq!(field, "(the whole value)", "{text}");
    }
    let err = from_json("controlPlane:\n  address: cp:15012\n").unwrap_err();
    assert!(matches!(err, BootstrapError::NotJson(_)), "{err:?}");
    // Nesting past serde_json's recursion limit.
    let deep = format!("{}{}", "[".repeat(100_000), "]".repeat(100_000));
    assert!(matches!(from_json(&deep), Err(BootstrapError::NotJson(_))));
    let deep = format!(
        r#"{{"version": {}{}}}"#,
        "{\"a\":".repeat(10_000),
        "}".repeat(10_000)
    );
    assert!(from_json(&deep).is_err());
    // Large: a 1 MiB string where a number belongs.
    let big = format!(
        r#"{{"limits": {{"maxConnections": "{}"}}}}"#,
        "9".repeat(1 << 20)
    );
    let (field, _) = field_error(&big);
    assert_eq!(field, "limits.maxConnections");
}

#[test]
fn the_injectors_tracing_env_sets_the_bootstrap_tracing() {
    let config = from_json(INJECTED).expect("valid");
    let config =
        with_tracing(config, Some("http://10.0.0.9:4317"), Some("2.5")).expect("valid env");
    assert_eq!(
        config.telemetry.tracing.endpoint.as_deref(),
        Some("http://10.0.0.9:4317")
    );
    assert_eq!(config.telemetry.tracing.sampling_percent, 2.5);
    let tracing = config
        .source
        .telemetry
        .as_ref()
        .unwrap()
        .tracing
        .as_ref()
        .unwrap();
    assert_eq!(
        tracing.otlp_endpoint, "http://10.0.0.9:4317",
        "what the merge starts from"
    );
}

#[test]
fn empty_tracing_env_keeps_the_configs_values() {
    let json = INJECTED.replacen(
        "\"meshAddressRanges\"",
        "\"telemetry\": {\"tracing\": {\"otlpEndpoint\": \"http://jaeger:4317\", \"randomSamplingPercentage\": 7}},\n  \"meshAddressRanges\"",
        1,
    );
    let config = with_tracing(from_json(&json).expect("valid"), Some(""), Some(" ")).unwrap();
    assert_eq!(
        config.telemetry.tracing.endpoint.as_deref(),
        Some("http://jaeger:4317")
    );
    assert_eq!(config.telemetry.tracing.sampling_percent, 7.0);
}

#[test]
fn bad_tracing_env_is_an_error_naming_the_flag_and_variable() {
    for (endpoint, sampling, says) in [
        (
            None,
            Some("1%"),
            "--trace-sampling (SINEW_TRACE_SAMPLING): \"1%\" is not a percentage",
        ),
        (
            None,
            Some("150"),
            "--trace-sampling (SINEW_TRACE_SAMPLING): \"150\"",
        ),
        (None, Some("NaN"), "SINEW_TRACE_SAMPLING"),
        (
            Some("jaeger:4317"),
            None,
            "--otlp-endpoint (SINEW_OTLP_ENDPOINT): telemetry.tracing.otlpEndpoint",
        ),
    ] {
        let config = from_json(INJECTED).expect("valid");
        let e = with_tracing(config, endpoint, sampling)
            .unwrap_err()
            .to_string();
        assert!(e.contains(says), "{e}");
    }
}
