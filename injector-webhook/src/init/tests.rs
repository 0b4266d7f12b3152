use super::*;

fn run(pairs: &[(&str, &str)]) -> (Result<Vec<String>, Vec<Problem>>, Vec<String>) {
    let annotations = pairs
        .iter()
        .map(|(k, v)| (k.to_string(), v.to_string()))
        .collect();
    let mut warnings = Vec::new();
    (flags(&annotations, &mut warnings), warnings)
}

#[test]
fn each_traffic_annotation_becomes_its_init_flag() {
    let (args, warnings) = run(&[
        ("traffic.sidecar.istio.io/includeInboundPorts", "80, 8080"),
        ("traffic.sidecar.istio.io/excludeInboundPorts", "9090"),
        ("traffic.sidecar.istio.io/excludeOutboundPorts", "5432,6379"),
        ("traffic.sidecar.istio.io/includeOutboundIPRanges", "*"),
        (
            "traffic.sidecar.istio.io/excludeOutboundIPRanges",
            "169.254.169.254,10.0.0.0/8",
        ),
    ]);
    assert_eq!(
        args.expect("valid"),
        [
            "init",
            "--inbound-ports=80, 8080",
            "--exclude-inbound-ports=9090",
            "--exclude-outbound-ports=5432,6379",
            "--outbound-cidrs=*",
            "--exclude-outbound-cidrs=169.254.169.254,10.0.0.0/8",
        ]
    );
    assert!(warnings.is_empty());
    let (args, _) = run(&[]);
    assert_eq!(args.expect("valid"), ["init"]);
    // An empty include list redirects nothing, as `sinew-proxy init` takes it.
    let (args, _) = run(&[("traffic.sidecar.istio.io/includeInboundPorts", "")]);
    assert_eq!(args.expect("valid"), ["init", "--inbound-ports="]);
}

#[test]
fn values_init_would_refuse_are_problems_naming_the_annotation() {
    let cases = [
        (
            "traffic.sidecar.istio.io/excludeOutboundPorts",
            "abc",
            "\"abc\" is not a port",
        ),
        (
            "traffic.sidecar.istio.io/excludeOutboundPorts",
            "0",
            "\"0\" is not a port",
        ),
        (
            "traffic.sidecar.istio.io/excludeInboundPorts",
            "70000",
            "\"70000\" is not a port",
        ),
        (
            "traffic.sidecar.istio.io/excludeInboundPorts",
            "80,,81",
            "empty entry",
        ),
        (
            "traffic.sidecar.istio.io/excludeInboundPorts",
            "*",
            "'*' is not allowed here",
        ),
        (
            "traffic.sidecar.istio.io/includeInboundPorts",
            "80,*",
            "cannot be combined",
        ),
        (
            "traffic.sidecar.istio.io/includeOutboundIPRanges",
            "10.0.0.0/33",
            "not an IPv4 CIDR",
        ),
        (
            "traffic.sidecar.istio.io/excludeOutboundIPRanges",
            "fd00::/8",
            "not an IPv4 CIDR",
        ),
        (
            "traffic.sidecar.istio.io/excludeOutboundIPRanges",
            "10.0.0.0/",
            "not an IPv4 CIDR",
        ),
    ];
    for (annotation, value, reason) in cases {
        let (out, _) = run(&[(annotation, value)]);
        let problems = out.expect_err("refused");
        assert_eq!(problems.len(), 1);
        assert_eq!(problems[0].annotation, annotation);
        assert!(
            problems[0].reason.contains(reason),
            "{value}: {}",
            problems[0]
        );
    }
}

#[test]
fn unsupported_interception_annotations_are_warned_about() {
    let (out, warnings) = run(&[
        ("traffic.sidecar.istio.io/includeOutboundPorts", "80"),
        ("sidecar.istio.io/interceptionMode", "TPROXY"),
    ]);
    assert_eq!(out.expect("still injected"), ["init"]);
    assert_eq!(
        warnings,
        [
            "annotation traffic.sidecar.istio.io/includeOutboundPorts is not supported by Sinew's interception: ignored",
            "annotation sidecar.istio.io/interceptionMode: \"TPROXY\" is not supported; Sinew intercepts with REDIRECT",
        ]
    );
    let (_, warnings) = run(&[("sidecar.istio.io/interceptionMode", "REDIRECT")]);
    assert!(warnings.is_empty());
}
