use super::*;

fn parse(yaml: &str) -> Result<Config, ConfigError> {
    let msg: pb::ProxyConfig = serde_saphyr::from_str(yaml).map_err(|e| ConfigError::Parse {
        path: "test.yaml".into(),
        reason: e.to_string(),
    })?;
    Config::from_proto(msg)
}

#[test]
fn empty_config_gets_every_default() {
    let c = parse("{}").unwrap();
    assert_eq!(c.inbound_mode, InboundMode::Permissive);
    assert_eq!(c.listeners.len(), 2);
    assert_eq!(c.listeners[0].addr.port(), DEFAULT_OUTBOUND_PORT);
    assert_eq!(c.listeners[1].addr.port(), DEFAULT_INBOUND_PORT);
    assert_eq!(c.timeouts.detect, DEFAULT_DETECT_TIMEOUT);
    assert_eq!(c.timeouts.drain, DEFAULT_DRAIN_TIMEOUT);
    assert_eq!(c.limits.max_header_bytes, DEFAULT_MAX_HEADER_BYTES);
    assert_eq!(c.admin.admin, DEFAULT_ADMIN_ADDR);
    assert!(c.is_opaque_port(3306) && c.is_opaque_port(5432) && !c.is_opaque_port(8080));
}

#[test]
fn full_yaml_form_of_the_message_parses() {
    let c = parse(
        r#"
inboundMode: STRICT
tls: {certFile: /c.crt, keyFile: /c.key, trustBundleFile: /ca.crt}
listeners:
  - {name: out, address: "127.0.0.1:18401", direction: OUTBOUND, fixedDestination: "10.0.0.1:80"}
  - {address: "127.0.0.1:18402", direction: INBOUND, appPort: 18080}
services:
  - name: reviews.default.svc.cluster.local
    addresses: ["10.0.0.1:80"]
    protocol: HTTP1
    endpoints:
      - address: "198.18.0.2:9080"
        identity: spiffe://cluster.local/ns/default/sa/reviews
        meshPort: 15006
        labels: {version: v1}
      - address: "198.18.0.3:9080"
opaquePorts: [9999]
timeouts: {protocolDetection: 0.25s, drain: 30s}
"#,
    )
    .unwrap();
    assert_eq!(c.inbound_mode, InboundMode::Strict);
    assert_eq!(c.timeouts.detect, Duration::from_millis(250));
    assert_eq!(c.timeouts.drain, Duration::from_secs(30));
    assert!(c.is_opaque_port(9999) && c.is_opaque_port(3306));
    let svc = c.service(&"10.0.0.1:80".parse().unwrap()).unwrap();
    assert_eq!(svc.protocol, ServiceProtocol::Http1);
    assert_eq!(
        svc.endpoints[0].mesh_addr,
        "198.18.0.2:15006".parse().unwrap()
    );
    assert_eq!(svc.endpoints[0].labels["version"], "v1");
    assert!(svc.endpoints[1].identity.is_none());
    assert!(matches!(
        c.listeners[1].kind,
        ListenerKind::Inbound {
            app_port: Some(18080)
        }
    ));
}

#[test]
fn errors_name_the_field_and_the_reason() {
    let cases = [
        (
            "services: [{name: a, addresses: [nope]}]",
            "services[0].addresses[0]",
        ),
        (
            "services: [{name: a, addresses: ['1.1.1.1:80'], endpoints: [{address: '1.2.3.4:80', identity: bob}]}]",
            "services[0].endpoints[0].identity",
        ),
        (
            "listeners: [{address: '0.0.0.0:1', fixedDestination: '9.9.9.9:9'}]",
            "listeners[0].fixedDestination",
        ),
        ("opaquePorts: [70000]", "opaquePorts[0]"),
        (
            "inboundPorts: [{port: 80, protocol: HTTP1}, {port: 80, protocol: TCP}]",
            "inboundPorts[1].port",
        ),
        ("inboundPorts: [{port: 0}]", "inboundPorts[0].port"),
        ("timeouts: {drain: 0s}", "timeouts.drain"),
        ("tls: {certFile: /x}", "tls.keyFile"),
        (
            "services: [{name: a, addresses: ['1.1.1.1:80']}, {name: b, addresses: ['1.1.1.1:80']}]",
            "services[1].addresses[0]",
        ),
    ];
    for (yaml, field) in cases {
        let err = parse(yaml)
            .err()
            .unwrap_or_else(|| panic!("accepted: {yaml}"))
            .to_string();
        assert!(err.starts_with(field), "{yaml}: {err}");
    }
}

#[test]
fn unknown_fields_and_enum_names_are_rejected() {
    assert!(parse("inboundMode: STRICTLY").is_err());
    assert!(parse("listners: []").is_err());
}

#[test]
fn traffic_policy_is_typed_and_subsets_inherit_the_service_policy() {
    let c = parse(
        r#"
services:
  - name: reviews.shop.svc.cluster.local
    port: 9080
    addresses: ["10.0.0.1:9080"]
    trafficPolicy:
      loadBalancer: {simple: ROUND_ROBIN}
      tls: {mode: DISABLE}
    subsets:
      - {name: v1, labels: {version: v1}}
      - name: v2
        labels: {version: v2}
        trafficPolicy: {loadBalancer: {consistentHash: {httpHeaderName: X-User, algorithm: MAGLEV}}}
"#,
    )
    .unwrap();
    let s = c.service(&"10.0.0.1:9080".parse().unwrap()).unwrap();
    assert_eq!(&*s.key, "reviews.shop.svc.cluster.local:9080");
    assert_eq!(s.policy.load_balancer.name(), "ROUND_ROBIN");
    assert!(matches!(
        s.policy.tls,
        crate::tls::originate::ClientTls::Disable
    ));
    assert_eq!(s.subset("v1").unwrap().policy, s.policy);
    let v2 = &s.subset("v2").unwrap().policy.load_balancer;
    assert_eq!(
        v2.kind,
        crate::traffic::balance::Kind::Maglev {
            key: crate::traffic::balance::HashKey::Header(http::HeaderName::from_static("x-user")),
            table_size: 65537
        }
    );
}

#[test]
fn policy_errors_name_the_field() {
    let base = "services: [{name: a, addresses: ['1.1.1.1:80'], ";
    let cases = [
        ("subsets: [{name: V1}]}]", "services[0].subsets[0].name"),
        (
            "subsets: [{name: v1}, {name: v1}]}]",
            "services[0].subsets[1].name",
        ),
        (
            "trafficPolicy: {loadBalancer: {consistentHash: {algorithm: MAGLEV, httpHeaderName: a, tableSize: 65536}}}}]",
            "services[0].trafficPolicy.loadBalancer.consistentHash.tableSize",
        ),
        (
            "trafficPolicy: {loadBalancer: {consistentHash: {}}}}]",
            "services[0].trafficPolicy.loadBalancer.consistentHash",
        ),
        (
            "trafficPolicy: {loadBalancer: {simple: RANDOM, warmup: {duration: 10s}}}}]",
            "services[0].trafficPolicy.loadBalancer.warmup",
        ),
        (
            "subsets: [{name: v1, trafficPolicy: {loadBalancer: {warmup: {}}}}]}]",
            "services[0].subsets[0].trafficPolicy.loadBalancer.warmup.duration",
        ),
    ];
    for (rest, field) in cases {
        let yaml = format!("{base}{rest}");
        let err = parse(&yaml)
            .err()
            .unwrap_or_else(|| panic!("accepted: {yaml}"))
            .to_string();
        assert!(err.starts_with(field), "{yaml}: {err}");
    }
}

#[test]
fn inbound_ports_say_how_each_own_port_is_declared() {
    let c =
        parse("inboundPorts: [{port: 8080, protocol: GRPC}, {port: 5432, protocol: TCP}]").unwrap();
    assert_eq!(c.inbound_protocol(8080), ServiceProtocol::Http2);
    assert_eq!(c.inbound_protocol(5432), ServiceProtocol::Tcp);
    assert_eq!(c.inbound_protocol(9090), ServiceProtocol::Detect);
}

#[test]
fn mesh_address_ranges_parse_and_name_the_bad_entry() {
    let c = parse(r#"meshAddressRanges: ["198.18.0.0/15", "fd00::/8", "198.18.0.0/15"]"#).unwrap();
    assert_eq!(c.mesh_ranges.len(), 2, "duplicates collapse");
    assert!(c.in_mesh_range("198.19.0.7".parse().unwrap()));
    assert!(c.in_mesh_range("fd00::7".parse().unwrap()));
    assert!(!c.in_mesh_range("127.0.0.1".parse().unwrap()));
    let e = parse(r#"meshAddressRanges: ["10.0.0.0/8", "10.0.0.0/40"]"#)
        .err()
        .unwrap()
        .to_string();
    assert!(
        e.starts_with("meshAddressRanges[1]: '10.0.0.0/40' is not an address range"),
        "{e}"
    );
}

#[test]
fn idle_and_connection_limits_have_bounded_defaults_and_can_be_set() {
    let c = parse("{}").unwrap();
    assert_eq!(c.timeouts.idle, DEFAULT_IDLE_TIMEOUT);
    assert_eq!(c.timeouts.tcp_idle, DEFAULT_TCP_IDLE_TIMEOUT);
    assert_eq!(c.limits.max_connections, DEFAULT_MAX_CONNECTIONS);
    assert!(c.mesh_ranges.is_empty());
    let c = parse("{timeouts: {idle: 30s, tcpIdle: 120s}, limits: {maxConnections: 7}}").unwrap();
    assert_eq!(c.timeouts.idle, Duration::from_secs(30));
    assert_eq!(c.timeouts.tcp_idle, Duration::from_secs(120));
    assert_eq!(c.limits.max_connections, 7);
    let e = parse("{timeouts: {tcpIdle: 0s}}")
        .err()
        .unwrap()
        .to_string();
    assert_eq!(e, "timeouts.tcpIdle: must be positive");
}

fn telemetry_of(yaml: &str, env: &[(&str, &str)]) -> Result<Telemetry, ConfigError> {
    let msg: pb::ProxyConfig = serde_saphyr::from_str(yaml).expect("test yaml");
    let env = |k: &str| {
        env.iter()
            .find(|(name, _)| *name == k)
            .map(|(_, v)| v.to_string())
    };
    telemetry(msg.telemetry.as_ref(), msg.control_plane.as_ref(), &env)
}

#[test]
fn telemetry_defaults_are_istios_and_access_logs_are_off() {
    let t = telemetry_of("{}", &[]).unwrap();
    assert_eq!(t.tracing.sampling_percent, 1.0);
    assert_eq!(t.tracing.endpoint, None);
    assert!(t.tracing.report);
    assert_eq!(t.access_log, None);
    assert_eq!(&*t.workload.name, "unknown");
    assert!(t.services.is_empty());
}

#[test]
fn telemetry_fields_are_read_and_invalid_services_left_out() {
    let yaml = r#"
telemetry:
  workload: {name: reviews-v1, namespace: default, app: reviews, version: v1, canonicalService: reviews, canonicalRevision: v1, pod: reviews-v1-7b9f8c6d5-xbcdz}
  services: [reviews.default.svc.cluster.local, "bad host"]
  tracing: {otlpEndpoint: "http://collector:4317", randomSamplingPercentage: 25, disableSpanReporting: true}
  accessLog: {enabled: true, encoding: JSON}
"#;
    let env = [("SINEW_POD_NAME", "other-7b9f8c6d5-xbcdz")];
    let t = telemetry_of(yaml, &env).unwrap();
    assert_eq!(t.tracing.endpoint.as_deref(), Some("http://collector:4317"));
    assert_eq!(t.tracing.sampling_percent, 25.0);
    assert!(!t.tracing.report);
    assert_eq!(
        t.access_log,
        Some(crate::telemetry::access_log::Format::Json)
    );
    assert_eq!(&*t.workload.name, "reviews-v1");
    // The spans' resource names the same workload and pod.
    assert_eq!(t.tracing.workload, *t.workload);
    assert_eq!(&*t.tracing.pod, "reviews-v1-7b9f8c6d5-xbcdz");
    // An invalid service name is left out, not passed on as a label.
    assert_eq!(t.services.len(), 1);
    assert_eq!(&*t.services[0], "reviews.default.svc.cluster.local");
}

#[test]
fn an_unset_workload_comes_from_the_pod() {
    let env = [
        ("SINEW_POD_NAME", "reviews-v2-7b9f8c6d5-xbcdz"),
        ("SINEW_POD_NAMESPACE", "shop"),
    ];
    let t = telemetry_of("{}", &env).unwrap();
    assert_eq!(
        (&*t.workload.name, &*t.workload.namespace),
        ("reviews-v2", "shop")
    );
    assert_eq!(&*t.tracing.pod, "reviews-v2-7b9f8c6d5-xbcdz");
    // The control plane section's pod wins over the env.
    let yaml = r#"
controlPlane: {address: "cp:15012", rootCertFile: /r, tokenFile: /t, pod: ratings-v1-545db77b95-2ps7q, namespace: default, labels: {app: ratings, version: v1, pod-template-hash: 545db77b95}}
"#;
    let t = telemetry_of(yaml, &env).unwrap();
    assert_eq!(&*t.workload.name, "ratings-v1");
    assert_eq!(&*t.workload.canonical_service, "ratings");
    assert_eq!(&*t.tracing.workload.canonical_service, "ratings");
}

#[test]
fn bad_tracing_values_are_refused_naming_the_field() {
    for (yaml, field) in [
        (
            "telemetry: {tracing: {randomSamplingPercentage: 101}}",
            "telemetry.tracing.randomSamplingPercentage",
        ),
        (
            "telemetry: {tracing: {otlpEndpoint: 'https://collector:4317'}}",
            "telemetry.tracing.otlpEndpoint",
        ),
    ] {
        let e = telemetry_of(yaml, &[]).unwrap_err().to_string();
        assert!(e.contains(field), "{yaml}: {e}");
    }
}
