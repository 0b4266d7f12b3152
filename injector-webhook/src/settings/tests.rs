use super::*;

/// The file the chart renders with its default values (the contract's defaults, spelled out).
const CHART_DEFAULTS: &str = r#"
proxyImage: ghcr.io/sinew-mesh/sinew-proxy:0.1.0
imagePullPolicy: IfNotPresent
controlPlaneAddress: sinew-control-plane.sinew-system.svc:15012
controlPlaneIdentity: spiffe://cluster.local/ns/sinew-system/sa/sinew-control-plane
trustDomain: cluster.local
nativeSidecar: true
logLevel: info
proxyResources: {requests: {cpu: 10m, memory: 40Mi}, limits: {cpu: "2", memory: 256Mi}}
initResources: {requests: {cpu: 10m, memory: 10Mi}, limits: {cpu: 100m, memory: 50Mi}}
tracing: {endpoint: "", sampling: 1.0}
meshAddressRanges: []
"#;

fn problems(yaml: &str) -> Vec<String> {
    match Settings::from_yaml(yaml) {
        Err(SettingsError::Invalid(problems)) => problems,
        other => panic!("expected invalid settings, got {other:?}"),
    }
}

#[test]
fn the_chart_defaults_spelled_out_equal_the_built_in_defaults() {
    let settings = Settings::from_yaml(CHART_DEFAULTS).expect("valid");
    assert_eq!(settings, Settings::default());
    assert_eq!(
        Settings::from_yaml("").expect("empty is the defaults"),
        settings
    );
    assert_eq!(
        Settings::from_yaml("# only a comment\n").expect("defaults"),
        settings
    );
    assert_eq!(
        settings
            .proxy_resources
            .limits
            .cpu
            .as_ref()
            .map(Quantity::as_str),
        Some("2")
    );
    assert_eq!(
        settings
            .init_resources
            .requests
            .memory
            .as_ref()
            .map(Quantity::as_str),
        Some("10Mi")
    );
    assert!(settings.native_sidecar);
    assert_eq!(settings.tracing.sampling, 1.0);
}

#[test]
fn a_misspelled_field_is_an_error_naming_it() {
    let err = Settings::from_yaml("proxyImag: x\n").unwrap_err();
    assert!(matches!(err, SettingsError::Yaml(_)), "{err:?}");
    assert!(err.to_string().contains("proxyImag"), "{err}");
    let err = Settings::from_yaml("tracing: {endpont: x}\n").unwrap_err();
    assert!(err.to_string().contains("endpont"), "{err}");
    let err = Settings::from_yaml("proxyResources: {request: {cpu: 1}}\n").unwrap_err();
    assert!(err.to_string().contains("request"), "{err}");
}

#[test]
fn the_identity_follows_the_trust_domain_unless_given() {
    let s = Settings::from_yaml("trustDomain: mesh.example\n").expect("valid");
    assert_eq!(
        s.control_plane_identity,
        "spiffe://mesh.example/ns/sinew-system/sa/sinew-control-plane"
    );
    let s = Settings::from_yaml("controlPlaneIdentity: spiffe://x/ns/a/sa/b\n").expect("valid");
    assert_eq!(s.control_plane_identity, "spiffe://x/ns/a/sa/b");
}

#[test]
fn a_resources_block_replaces_the_default_whole() {
    let s = Settings::from_yaml("proxyResources: {requests: {cpu: 1, memory: 0.5Gi}}\n")
        .expect("valid");
    assert_eq!(
        s.proxy_resources
            .requests
            .cpu
            .as_ref()
            .map(Quantity::as_str),
        Some("1")
    );
    assert_eq!(
        s.proxy_resources
            .requests
            .memory
            .as_ref()
            .map(Quantity::as_str),
        Some("0.5Gi")
    );
    assert_eq!(
        s.proxy_resources.limits,
        Amounts::default(),
        "no limits now"
    );
    assert_eq!(s.init_resources, Settings::default().init_resources);
}

#[test]
fn every_bad_value_is_reported_with_its_field() {
    let p = problems(
        "proxyImage: 'a b'\nimagePullPolicy: Sometimes\ncontrolPlaneAddress: nohost\n\
         controlPlaneIdentity: https://x\ntrustDomain: 'bad domain'\nlogLevel: loud\n\
         tracing: {sampling: 100.5}\nmeshAddressRanges: [10.96.0.0/12, 10.0.0.0/33, fd00::/200, x]\n\
         proxyResources: {requests: {cpu: 3, memory: lots, gpu: 1}, limits: {cpu: 2}}\n",
    );
    let expect = [
        "proxyImage: \"a b\"",
        "imagePullPolicy: \"Sometimes\"",
        "controlPlaneAddress: \"nohost\"",
        "controlPlaneIdentity: \"https://x\"",
        "trustDomain: \"bad domain\"",
        "logLevel: \"loud\"",
        "tracing.sampling: 100.5 is not a percentage from 0 to 100",
        "meshAddressRanges[1]",
        "meshAddressRanges[2]",
        "meshAddressRanges[3]",
        "proxyResources.requests.memory: \"lots\" is not a resource quantity",
        "proxyResources.requests.gpu: only cpu and memory",
        "proxyResources.requests.cpu: 3 is more than the limit 2",
    ];
    for e in expect {
        assert!(
            p.iter().any(|p| p.starts_with(e)),
            "missing {e:?} in {p:#?}"
        );
    }
    assert_eq!(p.len(), expect.len(), "{p:#?}");
    assert!(
        !p.iter().any(|p| p.contains("[0]")),
        "10.96.0.0/12 is fine: {p:#?}"
    );
}

#[test]
fn sampling_is_a_percentage_from_0_to_100() {
    // Istio's meaning: 1.0 is one request in a hundred. Values a fraction would allow, and
    // values only a percentage allows, both pass.
    for (yaml, percent) in [
        ("0", 0.0),
        ("0.01", 0.01),
        ("0.5", 0.5),
        ("1", 1.0),
        ("12.5", 12.5),
        ("100", 100.0),
    ] {
        let s = Settings::from_yaml(&format!("tracing: {{sampling: {yaml}}}\n"))
            .unwrap_or_else(|e| panic!("{yaml}: {e}"));
        assert_eq!(s.tracing.sampling, percent, "{yaml}");
    }
    for yaml in ["-1", "-0.001", "100.001", "1000", ".nan", "-.inf", ".inf"] {
        let p = problems(&format!("tracing: {{sampling: {yaml}}}\n"));
        assert_eq!(p.len(), 1, "{yaml}: {p:?}");
        assert!(
            p[0].starts_with("tracing.sampling:") && p[0].contains("percentage from 0 to 100"),
            "{yaml}: {p:?}"
        );
    }
    let zero = Settings::from_yaml("tracing: {sampling: -0.0}\n").expect("zero");
    assert!(zero.tracing.sampling.is_sign_positive(), "-0.0 is 0");
}

#[test]
fn addresses_may_be_names_or_ip_literals() {
    for ok in [
        "cp.sinew-system.svc:15012",
        "10.0.0.1:15012",
        "[fd00::1]:15012",
    ] {
        let yaml = format!("controlPlaneAddress: '{ok}'\n");
        assert!(Settings::from_yaml(&yaml).is_ok(), "{ok}");
    }
    for bad in ["cp:0", "cp:65536", "cp:", ":15012", "cp:15o12", "-cp:1"] {
        let yaml = format!("controlPlaneAddress: '{bad}'\n");
        assert!(Settings::from_yaml(&yaml).is_err(), "{bad} accepted");
    }
}

#[test]
fn hostile_files_are_errors_not_panics() {
    for text in [
        "[1, 2]",
        "proxyImage: [a]",
        "nativeSidecar: maybe",
        "tracing: {sampling: .nan}",
        "tracing: {sampling: .inf}",
        "\u{0}",
        "a: &x [*x]",
        "proxyResources: {limits: {cpu: -1}}",
    ] {
        assert!(Settings::from_yaml(text).is_err(), "{text:?} accepted");
    }
}
