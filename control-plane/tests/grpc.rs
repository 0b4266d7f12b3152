//! The control plane over real gRPC on loopback: credentials, certificate issuance, discovery
//! subscriptions, ACK/NACK, hot reload and bad YAML.

mod support;

use sinew_proto::ca::v1 as ca;
use sinew_proto::ca::v1::certificate_service_client::CertificateServiceClient;
use sinew_proto::config::v1 as cfg;
use sinew_proto::discovery::v1 as pb;
use sinew_proto::discovery::v1::discovery_client::DiscoveryClient;
use sinew_proto::discovery::v1::discovery_request::Kind;
use sinew_proto::discovery::v1::resource::Kind as ResourceKind;
use sinew_proxy::testing::TempDir;
use std::net::IpAddr;
use std::sync::Arc;
use std::time::Duration;
use support::*;

fn csr_for(san: &str) -> String {
    let key = rcgen::KeyPair::generate().unwrap();
    let mut params = rcgen::CertificateParams::new(Vec::<String>::new()).unwrap();
    params.subject_alt_names = vec![rcgen::SanType::URI(san.try_into().unwrap())];
    params.serialize_request(&key).unwrap().pem().unwrap()
}

async fn create_certificate(
    cp: &Running,
    token: &str,
    csr: String,
) -> Result<ca::CreateCertificateResponse, tonic::Status> {
    let channel = cp.channel();
    let mut client = CertificateServiceClient::with_origin(channel.clone(), channel.origin());
    let mut req = tonic::Request::new(ca::CreateCertificateRequest {
        csr,
        validity: None,
    });
    req.metadata_mut()
        .insert("authorization", format!("Bearer {token}").parse().unwrap());
    client.create_certificate(req).await.map(|r| r.into_inner())
}

/// The mesh on port 18080 with fresh addresses: the control plane and the web pod's IP, the web
/// VIP and the other service's VIP.
async fn start_with_addresses() -> (Running, IpAddr, IpAddr, IpAddr) {
    let dir = Arc::new(TempDir::new("cp"));
    let (web_ip, web_vip, other_vip) = (unique_ip(), unique_ip(), unique_ip());
    let cp = start(
        dir,
        &MESH_YAML.replace("APP_PORT", "18080"),
        &assignments_yaml(web_ip, web_vip, other_vip),
        "127.0.0.1:0".parse().unwrap(),
    )
    .await;
    (cp, web_ip, web_vip, other_vip)
}

async fn start_default() -> Running {
    let dir = Arc::new(TempDir::new("cp"));
    let yaml = MESH_YAML.replace("APP_PORT", "18080");
    let a = assignments_yaml(unique_ip(), unique_ip(), unique_ip());
    start(dir, &yaml, &a, "127.0.0.1:0".parse().unwrap()).await
}

#[tokio::test]
async fn a_csr_naming_another_identity_still_gets_the_tokens_identity() {
    let cp = start_default().await;
    let token = cp.token("shop", "web");
    let rsp = create_certificate(
        &cp,
        &token,
        csr_for("spiffe://cluster.local/ns/kube-system/sa/admin"),
    )
    .await
    .unwrap();
    assert_eq!(rsp.identity, "spiffe://cluster.local/ns/shop/sa/web");
    let leaf =
        rustls::pki_types::pem::PemObject::from_pem_slice(rsp.cert_chain[0].as_bytes()).unwrap();
    let leaf: rustls::pki_types::CertificateDer<'static> = leaf;
    assert_eq!(
        sinew_proxy::tls::identity_of(&leaf).unwrap().as_str(),
        "spiffe://cluster.local/ns/shop/sa/web"
    );
    assert!(!rsp.trust_bundle.is_empty());
}

#[tokio::test]
async fn forged_expired_and_wrong_audience_tokens_are_refused() {
    let cp = start_default().await;
    let good = cp.token("shop", "web");
    // Forged: the claims changed after signing.
    let mut parts: Vec<String> = good.split('.').map(str::to_string).collect();
    parts[1] = parts[1].chars().rev().collect();
    let forged = parts.join(".");
    let expired = cp.tokens.mint(
        &sinew_control_plane::auth::Caller {
            namespace: "shop".into(),
            service_account: "web".into(),
            pod: None,
        },
        Duration::ZERO,
    );
    // A token expires at `exp` (inclusive), so a zero lifetime is expired at once.
    let other_audience = sinew_control_plane::auth::LocalTokens::load_or_create(
        &cp.state.join(sinew_control_plane::app::TOKEN_KEY),
        "someone-else",
    )
    .unwrap()
    .mint(
        &sinew_control_plane::auth::Caller {
            namespace: "shop".into(),
            service_account: "web".into(),
            pod: None,
        },
        Duration::from_secs(600),
    );
    for (token, want) in [
        (forged, "signature"),
        (expired, "expired"),
        (other_audience, "audience"),
        ("garbage".to_string(), ""),
    ] {
        let err = create_certificate(&cp, &token, csr_for("spiffe://x/y"))
            .await
            .unwrap_err();
        assert_eq!(err.code(), tonic::Code::Unauthenticated, "{token}: {err:?}");
        assert!(err.message().contains(want), "{want}: {}", err.message());
    }
    let metrics = cp.monitoring("/metrics").await;
    assert!(
        metrics.contains("sinew_cp_certificates_refused_total 4"),
        "{metrics}"
    );
}

/// A raw discovery client: the stream and a sender for requests.
struct RawClient {
    tx: tokio::sync::mpsc::Sender<pb::DiscoveryRequest>,
    rx: tonic::Streaming<pb::DiscoveryResponse>,
}

impl RawClient {
    async fn connect(cp: &Running, hello: pb::Hello) -> Self {
        Self::connect_as(cp, "client", hello).await
    }

    /// Connects with the token of `<sa>-0` in namespace shop.
    async fn connect_as(cp: &Running, sa: &str, hello: pb::Hello) -> Self {
        let (tx, mut rx) = tokio::sync::mpsc::channel(16);
        tx.send(pb::DiscoveryRequest {
            kind: Some(Kind::Hello(hello)),
        })
        .await
        .unwrap();
        let channel = cp.channel();
        let mut client = DiscoveryClient::with_origin(channel.clone(), channel.origin());
        let mut req =
            tonic::Request::new(futures_util::stream::poll_fn(move |cx| rx.poll_recv(cx)));
        req.metadata_mut().insert(
            "authorization",
            format!("Bearer {}", cp.token("shop", sa)).parse().unwrap(),
        );
        let rx = client.stream(req).await.unwrap().into_inner();
        Self { tx, rx }
    }

    async fn next(&mut self) -> pb::DiscoveryResponse {
        tokio::time::timeout(Duration::from_secs(10), self.rx.message())
            .await
            .expect("a response in time")
            .unwrap()
            .unwrap()
    }

    async fn send(&self, kind: Kind) {
        self.tx
            .send(pb::DiscoveryRequest { kind: Some(kind) })
            .await
            .unwrap();
    }
}

#[tokio::test]
async fn resolve_says_which_names_discovery_serves() {
    let (cp, web_ip, web_vip, _) = start_with_addresses().await;
    let known = cp
        .monitoring(&format!("/debug/resolve?name={web_vip}:8080"))
        .await;
    assert!(known.starts_with("HTTP/1.1 200"), "{known}");
    assert!(known.contains("\"version\""), "{known}");
    assert!(
        known.contains(&format!("\"endpoints\":[\"{web_ip}:18080\"]")),
        "{known}"
    );
    let by_host = cp
        .monitoring("/debug/resolve?name=web.shop.svc.cluster.local:8080")
        .await;
    assert!(by_host.starts_with("HTTP/1.1 200"), "{by_host}");
    let escaped = cp
        .monitoring(&format!("/debug/resolve?name={web_vip}%3A8080"))
        .await;
    assert!(escaped.starts_with("HTTP/1.1 200"), "{escaped}");
    let unknown = cp.monitoring("/debug/resolve?name=198.18.9.9:1").await;
    assert!(unknown.starts_with("HTTP/1.1 404"), "{unknown}");
}

#[tokio::test]
async fn every_proxy_is_sent_the_mesh_address_ranges_in_its_settings() {
    let cp = start_default().await;
    let mut c = RawClient::connect(&cp, pb::Hello::default()).await;
    let base = c.next().await;
    let settings = base
        .resources
        .iter()
        .find(|r| r.name == "settings")
        .expect("settings in the first response");
    let Some(ResourceKind::Settings(s)) = &settings.kind else {
        panic!("{settings:?}")
    };
    assert_eq!(s.mesh_address_ranges, MESH_RANGES);
}

fn settings_of(rsp: &pb::DiscoveryResponse) -> &pb::ProxySettings {
    let settings = rsp
        .resources
        .iter()
        .find(|r| r.name == "settings")
        .unwrap_or_else(|| panic!("no settings in {rsp:?}"));
    let Some(ResourceKind::Settings(s)) = &settings.kind else {
        panic!("{settings:?}")
    };
    s
}

#[tokio::test]
async fn a_proxy_is_told_how_its_pods_ports_are_declared_and_told_again_when_that_changes() {
    let cp = start_default().await;
    let mut web = RawClient::connect_as(&cp, "web", pb::Hello::default()).await;
    let base = web.next().await;
    let port = |protocol: cfg::Protocol| cfg::InboundPort {
        port: 18080,
        protocol: protocol as i32,
        ..Default::default()
    };
    assert_eq!(
        settings_of(&base).inbound_ports,
        [port(cfg::Protocol::Http1)]
    );
    web.send(Kind::Ack(pb::Ack { nonce: base.nonce })).await;
    // Another proxy's pod is selected by no Service: nothing is declared for it.
    let mut client = RawClient::connect(&cp, pb::Hello::default()).await;
    assert!(settings_of(&client.next().await).inbound_ports.is_empty());

    let yaml = MESH_YAML
        .replace("APP_PORT", "18080")
        .replace("[{name: http, port: 8080", "[{name: tcp-web, port: 8080");
    std::fs::write(cp.registry.join("mesh.yaml"), &yaml).unwrap();
    let changed = web.next().await;
    assert_eq!(
        settings_of(&changed).inbound_ports,
        [port(cfg::Protocol::Tcp)]
    );
}

#[tokio::test]
async fn a_protocol_error_ends_the_stream_with_its_reason() {
    let cp = start_default().await;
    let mut c = RawClient::connect(&cp, pb::Hello::default()).await;
    c.next().await;
    c.send(Kind::Hello(pb::Hello::default())).await;
    let end = tokio::time::timeout(Duration::from_secs(10), c.rx.message())
        .await
        .expect("the stream ends in time");
    let status = end.expect_err("an error status, not a clean end");
    assert_eq!(status.code(), tonic::Code::InvalidArgument);
    assert_eq!(status.message(), "hello sent twice");
}

#[tokio::test]
async fn a_proxy_receives_only_what_it_subscribed_to() {
    let (cp, web_ip, web_vip, other_vip) = start_with_addresses().await;
    let mut c = RawClient::connect(&cp, pb::Hello::default()).await;
    let base = c.next().await;
    let names: Vec<_> = base.resources.iter().map(|r| r.name.as_str()).collect();
    assert_eq!(names, ["settings", "trust-bundle"]);
    c.send(Kind::Ack(pb::Ack { nonce: base.nonce })).await;

    c.send(Kind::Subscribe(pb::Names {
        names: vec![format!("{web_vip}:8080"), "198.18.9.9:1".into()],
    }))
    .await;
    let rsp = c.next().await;
    assert_eq!(rsp.resources.len(), 2);
    let web = rsp
        .resources
        .iter()
        .find(|r| r.name == format!("{web_vip}:8080"))
        .unwrap();
    let Some(ResourceKind::Service(svc)) = &web.kind else {
        panic!("{web:?}")
    };
    assert_eq!(svc.name, "web.shop.svc.cluster.local");
    assert_eq!(svc.endpoints.len(), 1);
    assert_eq!(svc.endpoints[0].address, format!("{web_ip}:18080"));
    assert_eq!(
        svc.endpoints[0].identity,
        "spiffe://cluster.local/ns/shop/sa/web"
    );
    let unknown = rsp
        .resources
        .iter()
        .find(|r| r.name == "198.18.9.9:1")
        .unwrap();
    assert!(matches!(unknown.kind, Some(ResourceKind::NotFound(_))));
    // The other service exists but was not asked for: never sent.
    assert!(
        !rsp.resources
            .iter()
            .any(|r| r.name.contains(&other_vip.to_string()))
    );
    c.send(Kind::Ack(pb::Ack { nonce: rsp.nonce })).await;

    // A change to the unsubscribed service sends nothing; a change to the subscribed one does.
    // Proven by order: the unsubscribed change is compiled (discovery would serve it) before the
    // subscribed one is made, so had it been sent, it would arrive first.
    let yaml = MESH_YAML
        .replace("APP_PORT", "18080")
        .replace("port: 9090", "port: 9091");
    std::fs::write(cp.registry.join("mesh.yaml"), &yaml).unwrap();
    eventually(
        "the unsubscribed change compiled",
        Duration::from_secs(10),
        || async {
            cp.monitoring(&format!("/debug/resolve?name={other_vip}:9091"))
                .await
                .starts_with("HTTP/1.1 200")
        },
    )
    .await;
    let started = std::time::Instant::now();
    std::fs::write(
        cp.registry.join("mesh.yaml"),
        yaml.replace("targetPort: 18080", "targetPort: 18081"),
    )
    .unwrap();
    let rsp = c.next().await;
    eprintln!(
        "registry change reached the subscriber after {:?}",
        started.elapsed()
    );
    let names: Vec<_> = rsp.resources.iter().map(|r| r.name.clone()).collect();
    assert_eq!(
        (names, rsp.removed.clone()),
        (vec![format!("{web_vip}:8080")], vec![]),
        "the first response after both changes carries the subscribed one only"
    );
    let Some(ResourceKind::Service(svc)) = &rsp.resources[0].kind else {
        panic!()
    };
    assert_eq!(svc.endpoints[0].address, format!("{web_ip}:18081"));
    assert_ne!(rsp.resources[0].version, web.version);
}

#[tokio::test]
async fn a_nack_is_visible_on_the_control_plane() {
    let cp = start_default().await;
    let mut c = RawClient::connect(
        &cp,
        pb::Hello {
            pod: "client-0".into(),
            ..Default::default()
        },
    )
    .await;
    let base = c.next().await;
    c.send(Kind::Nack(pb::Nack {
        nonce: base.nonce,
        reason: "cannot apply: test says no".into(),
    }))
    .await;
    eventually(
        "the NACK in /debug/proxies",
        Duration::from_secs(5),
        || async {
            cp.monitoring("/debug/proxies")
                .await
                .contains("cannot apply: test says no")
        },
    )
    .await;
    assert!(
        cp.monitoring("/metrics")
            .await
            .contains("sinew_cp_nacks_total 1")
    );
}

#[tokio::test]
async fn malformed_yaml_is_reported_and_the_last_good_config_stays() {
    let (cp, _, web_vip, _) = start_with_addresses().await;
    let mut c = RawClient::connect(
        &cp,
        pb::Hello {
            subscribe: vec![format!("{web_vip}:8080")],
            ..Default::default()
        },
    )
    .await;
    let _base = c.next().await;
    let first = c.next().await;
    assert!(matches!(
        first.resources[0].kind,
        Some(ResourceKind::Service(_))
    ));
    std::fs::write(
        cp.registry.join("broken.yaml"),
        "apiVersion: v1\nkind: Service\nmetadata: {name: [oops}\n",
    )
    .unwrap();
    eventually("the registry error", Duration::from_secs(5), || async {
        cp.monitoring("/debug/proxies")
            .await
            .contains("broken.yaml")
    })
    .await;
    // A reconnecting proxy still gets the last good service.
    let mut again = RawClient::connect(
        &cp,
        pb::Hello {
            subscribe: vec![format!("{web_vip}:8080")],
            ..Default::default()
        },
    )
    .await;
    let base = again.next().await;
    assert!(base.resources.iter().any(|r| r.name == "settings"));
    let rsp = again.next().await;
    assert!(matches!(
        rsp.resources[0].kind,
        Some(ResourceKind::Service(_))
    ));
    // The bad YAML sent subscribers nothing, proven by order: once the registry is good again
    // with a change to the subscribed service, that change is the next thing they get.
    std::fs::write(
        cp.registry.join("mesh.yaml"),
        MESH_YAML
            .replace("APP_PORT", "18081")
            .replace("port: 9090", "port: 9091"),
    )
    .unwrap();
    std::fs::remove_file(cp.registry.join("broken.yaml")).unwrap();
    let next = c.next().await;
    assert_eq!(next.resources.len(), 1, "{next:?}");
    assert!(next.removed.is_empty(), "{next:?}");
    let Some(ResourceKind::Service(svc)) = &next.resources[0].kind else {
        panic!("{next:?}")
    };
    assert!(svc.endpoints[0].address.ends_with(":18081"), "{next:?}");
    assert_ne!(next.resources[0].version, first.resources[0].version);
}

const POLICY_YAML: &str = "\
apiVersion: networking.istio.io/v1
kind: DestinationRule
metadata: {name: web, namespace: shop}
spec:
  host: web
  trafficPolicy:
    outlierDetection: {consecutive5xxErrors: CONSECUTIVE}
  subsets: [{name: v1, labels: {app: web}}]
---
apiVersion: networking.istio.io/v1
kind: VirtualService
metadata: {name: web, namespace: shop}
spec:
  hosts: [web]
  http:
  - name: frontend
    match: [{sourceLabels: {app: frontend}}]
    route: [{destination: {host: web, subset: v2}}]
  - name: everyone
    route: [{destination: {host: web, subset: v1}}]
";

#[tokio::test]
async fn a_proxy_receives_its_policy_and_an_invalid_rule_changes_nothing() {
    let cp = start_default().await;
    std::fs::write(
        cp.registry.join("policy.yaml"),
        POLICY_YAML.replace("CONSECUTIVE", "3"),
    )
    .unwrap();
    // The route to the undefined subset v2 is reported in the control plane's status.
    eventually(
        "the undefined-subset warning",
        Duration::from_secs(5),
        || async {
            cp.monitoring("/debug/proxies").await.contains(
                "subset \\\"v2\\\" of host \\\"web.shop.svc.cluster.local\\\" is not defined",
            )
        },
    )
    .await;
    let name = "web.shop.svc.cluster.local:8080".to_string();
    // The client pod is not in the registry: its hello's labels are what policy sees.
    let mut c = RawClient::connect(
        &cp,
        pb::Hello {
            subscribe: vec![name.clone()],
            labels: [("app".to_string(), "frontend".to_string())].into(),
            ..Default::default()
        },
    )
    .await;
    let _base = c.next().await;
    let first = c.next().await;
    let Some(ResourceKind::Service(svc)) = &first.resources[0].kind else {
        panic!("{first:?}")
    };
    let outlier = svc
        .traffic_policy
        .as_ref()
        .and_then(|p| p.outlier_detection)
        .expect("the rule's outlier detection");
    assert_eq!(outlier.consecutive_5xx_errors, Some(3));
    assert_eq!(svc.subsets[0].name, "v1");
    let routes: Vec<&str> = svc.http_routes.iter().map(|r| r.name.as_str()).collect();
    assert_eq!(routes, ["frontend", "everyone"]);
    assert_eq!(
        svc.http_routes[0].destinations[0].service, name,
        "destinations are resource names"
    );
    assert_eq!(
        svc.policy_sources,
        [
            "DestinationRule shop/web (networking.istio.io)",
            "VirtualService shop/web (networking.istio.io)"
        ]
    );
    // Another proxy without the label does not get the frontend route.
    let mut other = RawClient::connect(
        &cp,
        pb::Hello {
            subscribe: vec![name.clone()],
            ..Default::default()
        },
    )
    .await;
    let _base = other.next().await;
    let plain = other.next().await;
    let Some(ResourceKind::Service(plain_svc)) = &plain.resources[0].kind else {
        panic!("{plain:?}")
    };
    assert_eq!(plain_svc.http_routes.len(), 1);
    assert_ne!(plain.resources[0].version, first.resources[0].version);
    // The monitoring port shows the same resolution, at the same version.
    let shown = cp
        .monitoring(&format!(
            "/debug/resolve?name={name}&namespace=shop&pod=nobody-0"
        ))
        .await;
    assert!(
        shown.contains(&format!("\"version\":\"{}\"", plain.resources[0].version)),
        "{shown}"
    );
    assert!(shown.contains("DestinationRule shop/web"), "{shown}");

    // An invalid rule is refused whole, naming the field and its line.
    std::fs::write(
        cp.registry.join("bad.yaml"),
        "apiVersion: networking.istio.io/v1\nkind: DestinationRule\nmetadata: {name: bad, namespace: shop}\nspec:\n  host: web\n  trafficPolicy:\n    outlierDetection: {maxEjectionPercent: 150}\n",
    )
    .unwrap();
    eventually("the validation error", Duration::from_secs(5), || async {
        cp.monitoring("/debug/proxies").await.contains(
            "bad.yaml: document 1 (line 7): DestinationRule \\\"bad\\\": spec.trafficPolicy.outlierDetection.maxEjectionPercent: must be between 0 and 100, not 150",
        )
    })
    .await;
    // Nothing was sent for it, proven by order: the next message is the fixed policy.
    std::fs::remove_file(cp.registry.join("bad.yaml")).unwrap();
    std::fs::write(
        cp.registry.join("policy.yaml"),
        POLICY_YAML.replace("CONSECUTIVE", "4"),
    )
    .unwrap();
    let next = c.next().await;
    let Some(ResourceKind::Service(svc)) = &next.resources[0].kind else {
        panic!("{next:?}")
    };
    assert_eq!(
        svc.traffic_policy
            .as_ref()
            .and_then(|p| p.outlier_detection.as_ref())
            .and_then(|o| o.consecutive_5xx_errors),
        Some(4)
    );
}

#[tokio::test]
async fn a_telemetry_file_sets_the_sampling_and_access_log_a_proxy_receives_with_its_workload() {
    let cp = start_default().await;
    let mut web = RawClient::connect_as(&cp, "web", pb::Hello::default()).await;
    let base = web.next().await;
    let telemetry = settings_of(&base).telemetry.clone().expect("telemetry");
    assert_eq!(
        telemetry.workload,
        Some(cfg::Workload {
            name: "web-0".into(),
            namespace: "shop".into(),
            app: "web".into(),
            version: String::new(),
            canonical_service: "web".into(),
            canonical_revision: "latest".into(),
            pod: "web-0".into(),
        })
    );
    assert_eq!(telemetry.services, ["web.shop.svc.cluster.local"]);
    // No flags and no Telemetry: the proxy's own sampling and access-log settings stand.
    let tracing = telemetry.tracing.expect("tracing");
    assert_eq!(tracing.random_sampling_percentage, None);
    assert_eq!(telemetry.access_log, None);
    web.send(Kind::Ack(pb::Ack { nonce: base.nonce })).await;

    std::fs::write(
        cp.registry.join("telemetry.yaml"),
        "apiVersion: telemetry.istio.io/v1\nkind: Telemetry\nmetadata: {name: shop, namespace: shop}\nspec:\n  tracing: [{randomSamplingPercentage: 25}]\n  accessLogging: [{providers: [{name: envoy}]}]\n",
    )
    .unwrap();
    let changed = web.next().await;
    let telemetry = settings_of(&changed).telemetry.clone().expect("telemetry");
    assert_eq!(
        telemetry.tracing.and_then(|t| t.random_sampling_percentage),
        Some(25.0)
    );
    assert_eq!(
        telemetry.access_log,
        Some(cfg::AccessLog {
            enabled: true,
            encoding: cfg::AccessLogEncoding::Text as i32,
        })
    );
    web.send(Kind::Ack(pb::Ack {
        nonce: changed.nonce,
    }))
    .await;

    // An invalid version is refused; the proxy keeps the last good settings and is sent nothing
    // until a valid change (which proves the invalid one was not sent first).
    std::fs::write(
        cp.registry.join("telemetry.yaml"),
        "apiVersion: telemetry.istio.io/v1\nkind: Telemetry\nmetadata: {name: shop, namespace: shop}\nspec:\n  tracing: [{randomSamplingPercentage: 150}]\n",
    )
    .unwrap();
    let refused = || async {
        cp.monitoring("/debug/proxies")
            .await
            .contains("must be between 0 and 100, not 150")
    };
    eventually(
        "the invalid Telemetry is reported",
        Duration::from_secs(10),
        refused,
    )
    .await;
    std::fs::write(
        cp.registry.join("telemetry.yaml"),
        "apiVersion: telemetry.istio.io/v1\nkind: Telemetry\nmetadata: {name: shop, namespace: shop}\nspec:\n  tracing: [{randomSamplingPercentage: 50}]\n",
    )
    .unwrap();
    let next = web.next().await;
    let telemetry = settings_of(&next).telemetry.clone().expect("telemetry");
    assert_eq!(
        telemetry.tracing.and_then(|t| t.random_sampling_percentage),
        Some(50.0)
    );
    assert_eq!(telemetry.access_log, None, "the access log entry is gone");
}

/// web-0's PeerAuthentication (STRICT, its app port 18080 DISABLE) and a dry-run DENY policy.
const SECURITY_YAML: &str = "\
apiVersion: security.istio.io/v1
kind: PeerAuthentication
metadata: {name: web, namespace: shop}
spec:
  selector: {matchLabels: {app: web}}
  mtls: {mode: STRICT}
  portLevelMtls: {18080: {mode: DISABLE}}
---
apiVersion: security.istio.io/v1
kind: AuthorizationPolicy
metadata: {name: deny-admin, namespace: shop, annotations: {istio.io/dry-run: \"true\"}}
spec:
  selector: {matchLabels: {app: web}}
  action: DENY
  rules: [{to: [{operation: {paths: [/admin/*]}}]}]
";

/// The one endpoint of `web.shop.svc.cluster.local:8080` in a response.
fn web_endpoint(rsp: &pb::DiscoveryResponse) -> cfg::Endpoint {
    let found = rsp
        .resources
        .iter()
        .find_map(|r| match &r.kind {
            Some(ResourceKind::Service(s)) if r.name == "web.shop.svc.cluster.local:8080" => {
                Some(s.endpoints.clone())
            }
            _ => None,
        })
        .unwrap_or_else(|| panic!("no web service in {rsp:?}"));
    assert_eq!(found.len(), 1, "{found:?}");
    found[0].clone()
}

#[tokio::test]
async fn security_files_set_a_proxys_modes_and_policies_and_its_clients_endpoints() {
    let cp = start_default().await;
    let mut web = RawClient::connect_as(&cp, "web", pb::Hello::default()).await;
    let base = web.next().await;
    let settings = settings_of(&base);
    assert_eq!(settings.inbound_mode, cfg::InboundMode::Permissive as i32);
    assert!(settings.port_inbound_modes.is_empty());
    // Always sent, empty when no policy applies.
    assert_eq!(settings.authorization, Some(cfg::Authorization::default()));
    web.send(Kind::Ack(pb::Ack { nonce: base.nonce })).await;

    let subscribe = pb::Hello {
        subscribe: vec!["web.shop.svc.cluster.local:8080".into()],
        ..Default::default()
    };
    let mut client = RawClient::connect(&cp, subscribe).await;
    let first = client.next().await;
    let first = match first.resources.iter().any(|r| r.name.ends_with(":8080")) {
        true => first,
        false => client.next().await,
    };
    let meshed = web_endpoint(&first);
    assert_eq!(meshed.identity, "spiffe://cluster.local/ns/shop/sa/web");
    assert_ne!(meshed.mesh_port, 0);

    std::fs::write(cp.registry.join("security.yaml"), SECURITY_YAML).unwrap();
    let changed = web.next().await;
    let settings = settings_of(&changed);
    assert_eq!(settings.inbound_mode, cfg::InboundMode::Strict as i32);
    assert_eq!(
        settings.port_inbound_modes,
        [(18080, cfg::InboundMode::Disable as i32)].into()
    );
    let policies = &settings
        .authorization
        .as_ref()
        .expect("authorization")
        .policies;
    assert_eq!(policies.len(), 1, "{policies:?}");
    assert_eq!(policies[0].name, "shop/deny-admin");
    assert_eq!(policies[0].action, cfg::AuthorizationAction::Deny as i32);
    assert!(policies[0].dry_run);
    web.send(Kind::Ack(pb::Ack {
        nonce: changed.nonce,
    }))
    .await;
    // web-0 disables mTLS on the port the Service targets: clients are told plaintext.
    let plaintext = web_endpoint(&client.next().await);
    assert_eq!((plaintext.identity.as_str(), plaintext.mesh_port), ("", 0));
    assert_eq!(plaintext.address, meshed.address);

    // An invalid version is refused; nothing is sent until a valid change.
    std::fs::write(
        cp.registry.join("security.yaml"),
        SECURITY_YAML.replace("action: DENY", "action: CUSTOM"),
    )
    .unwrap();
    let refused = || async {
        cp.monitoring("/debug/proxies")
            .await
            .contains("CUSTOM (external authorization) is not supported by Sinew")
    };
    eventually(
        "the invalid AuthorizationPolicy is reported",
        Duration::from_secs(10),
        refused,
    )
    .await;
    // Removing every policy lifts them: the settings say so, and the endpoint is meshed again.
    std::fs::remove_file(cp.registry.join("security.yaml")).unwrap();
    let lifted = web.next().await;
    let settings = settings_of(&lifted);
    assert_eq!(settings.inbound_mode, cfg::InboundMode::Permissive as i32);
    assert!(settings.port_inbound_modes.is_empty());
    assert_eq!(settings.authorization, Some(cfg::Authorization::default()));
    assert_eq!(web_endpoint(&client.next().await), meshed);
}
