use super::*;
use crate::telemetry::trace::context::Decision;
use crate::traffic::ResponseFlags;
use std::sync::Arc;
use std::time::Duration;

fn started(kind: SpanKind) -> Started {
    Started {
        kind,
        context: Outgoing {
            trace_id: 0x4bf92f3577b34da6a3ce929d0e0e4736,
            span_id: 0x1111222233334444,
            parent_span_id: Some(0x00f067aa0ba902b7),
            decision: Decision::Sampled,
            short_trace_id: false,
        },
        start: SystemTime::UNIX_EPOCH + Duration::from_secs(1_000),
        request_id: http::HeaderValue::from_static("req-1"),
    }
}

fn workload(name: &str, ns: &str) -> Workload {
    Workload {
        name: Arc::from(name),
        namespace: Arc::from(ns),
        canonical_service: Arc::from(name),
        canonical_revision: Arc::from("v1"),
        ..Workload::default()
    }
}

struct Req {
    method: http::Method,
    uri: http::Uri,
    source: Workload,
    destination: Workload,
}

fn req(method: &str, uri: &str) -> Req {
    Req {
        method: method.parse().unwrap(),
        uri: uri.parse().unwrap(),
        source: workload("productpage-v1", "shop"),
        destination: workload("reviews-v2", "shop"),
    }
}

fn outcome<'a>(r: &'a Req, status: Option<u16>, flags: ResponseFlags) -> Outcome<'a> {
    Outcome {
        method: &r.method,
        uri: &r.uri,
        authority: Some("reviews.shop.svc.cluster.local:9080"),
        protocol: RequestProtocol::Http,
        version: http::Version::HTTP_11,
        status: status.map(|s| http::StatusCode::from_u16(s).unwrap()),
        grpc_status: None,
        flags,
        upstream_host: Some("10.1.0.7:9080".parse().unwrap()),
        upstream_cluster: Some("outbound|9080|v2|reviews.shop.svc.cluster.local"),
        retries: 0,
        request_bytes: 0,
        response_bytes: 295,
        peer_identity: Some("spiffe://cluster.local/ns/shop/sa/reviews"),
        source: Some(&r.source),
        destination: Some(&r.destination),
        destination_service: Some("reviews.shop.svc.cluster.local"),
    }
}

fn attr<'a>(s: &'a SpanData, key: &str) -> Option<&'a Value> {
    s.attributes
        .iter()
        .find(|kv| kv.key.as_str() == key)
        .map(|kv| &kv.value)
}

fn build_at(kind: SpanKind, o: &Outcome<'_>) -> SpanData {
    let st = started(kind);
    build(&st, o, st.start + Duration::from_millis(12), &scope())
}

#[test]
fn a_client_span_carries_the_http_and_mesh_attributes() {
    let r = req("GET", "/reviews/0?secret=1");
    let s = build_at(
        SpanKind::Client,
        &outcome(&r, Some(200), ResponseFlags::default()),
    );
    assert_eq!(s.name, "GET");
    assert_eq!(s.span_kind, OtelKind::Client);
    assert_eq!(
        s.span_context.trace_id(),
        TraceId::from(0x4bf92f3577b34da6a3ce929d0e0e4736)
    );
    assert_eq!(s.span_context.span_id(), SpanId::from(0x1111222233334444));
    assert_eq!(s.parent_span_id, SpanId::from(0x00f067aa0ba902b7));
    assert!(s.parent_span_is_remote);
    assert_eq!(s.status, Status::Unset);
    assert_eq!(
        s.end_time.duration_since(s.start_time).unwrap(),
        Duration::from_millis(12)
    );
    let expect: &[(&str, Value)] = &[
        ("http.request.method", "GET".into()),
        ("http.response.status_code", 200i64.into()),
        ("url.path", "/reviews/0".into()),
        ("server.address", "reviews.shop.svc.cluster.local".into()),
        ("server.port", 9080i64.into()),
        ("network.protocol.name", "http".into()),
        ("network.protocol.version", "1.1".into()),
        ("http.response.body.size", 295i64.into()),
        ("guid:x-request-id", "req-1".into()),
        ("response_flags", "-".into()),
        (
            "upstream_cluster",
            "outbound|9080|v2|reviews.shop.svc.cluster.local".into(),
        ),
        ("upstream_host", "10.1.0.7:9080".into()),
        ("network.peer.address", "10.1.0.7".into()),
        ("network.peer.port", 9080i64.into()),
        (
            "peer.identity",
            "spiffe://cluster.local/ns/shop/sa/reviews".into(),
        ),
        ("istio.source_workload", "productpage-v1".into()),
        ("istio.source_namespace", "shop".into()),
        ("istio.source_canonical_service", "productpage-v1".into()),
        ("istio.source_canonical_revision", "v1".into()),
        ("istio.destination_workload", "reviews-v2".into()),
        ("istio.destination_namespace", "shop".into()),
        ("istio.destination_canonical_service", "reviews-v2".into()),
        (
            "istio.destination_service",
            "reviews.shop.svc.cluster.local".into(),
        ),
    ];
    for (k, v) in expect {
        assert_eq!(attr(&s, k), Some(v), "{k}");
    }
    // The query string is not recorded; nothing about retries or errors on a clean 200.
    for k in [
        "url.query",
        "http.request.resend_count",
        "error.type",
        "rpc.system",
    ] {
        assert_eq!(attr(&s, k), None, "{k}");
    }
}

#[test]
fn a_server_5xx_is_an_error_described_by_its_flags() {
    let r = req("POST", "/cart");
    let mut flags = ResponseFlags::default();
    flags.insert(ResponseFlags::UF);
    flags.insert(ResponseFlags::URX);
    let mut o = outcome(&r, Some(503), flags);
    o.retries = 2;
    let s = build_at(SpanKind::Server, &o);
    assert_eq!(s.span_kind, OtelKind::Server);
    assert_eq!(s.status, Status::error("UF,URX"));
    assert_eq!(attr(&s, "response_flags"), Some(&"UF,URX".into()));
    assert_eq!(attr(&s, "http.request.resend_count"), Some(&2i64.into()));
    assert_eq!(attr(&s, "error.type"), Some(&"503".into()));
}

#[test]
fn each_response_flag_reaches_the_span() {
    for name in [
        "UO", "UF", "URX", "UH", "NR", "UT", "UC", "DI", "FI", "DPE", "UR",
    ] {
        let r = req("GET", "/");
        let flag = ResponseFlags::from_name(name).unwrap();
        let status = if name == "DI" { 200 } else { 503 };
        let s = build_at(SpanKind::Client, &outcome(&r, Some(status), flag));
        assert_eq!(attr(&s, "response_flags"), Some(&name.into()), "{name}");
        if status == 503 {
            assert_eq!(s.status, Status::error(name), "{name}");
        } else {
            assert_eq!(s.status, Status::Unset, "a delayed 200 is no error");
        }
    }
}

#[test]
fn a_5xx_without_flags_is_described_by_its_code_and_a_4xx_is_not_an_error() {
    let r = req("GET", "/");
    let s = build_at(
        SpanKind::Client,
        &outcome(&r, Some(500), ResponseFlags::default()),
    );
    assert_eq!(s.status, Status::error("500"));
    for kind in [SpanKind::Client, SpanKind::Server] {
        let s = build_at(kind, &outcome(&r, Some(404), ResponseFlags::default()));
        assert_eq!(s.status, Status::Unset);
        assert_eq!(attr(&s, "http.response.status_code"), Some(&404i64.into()));
    }
}

#[test]
fn no_response_is_an_error_without_a_status_code() {
    let r = req("GET", "/");
    let s = build_at(SpanKind::Server, &outcome(&r, None, ResponseFlags::UC));
    assert_eq!(s.status, Status::error("UC"));
    assert_eq!(attr(&s, "http.response.status_code"), None);
    let s = build_at(
        SpanKind::Server,
        &outcome(&r, None, ResponseFlags::default()),
    );
    assert_eq!(s.status, Status::error("no response"));
    assert_eq!(attr(&s, "error.type"), Some(&"_OTHER".into()));
}

#[test]
fn grpc_spans_carry_the_grpc_status_and_server_failures_are_errors() {
    let r = req("POST", "/reviews.Reviews/Get");
    let mut o = outcome(&r, Some(200), ResponseFlags::default());
    o.protocol = RequestProtocol::Grpc;
    o.version = http::Version::HTTP_2;
    o.grpc_status = Some(14);
    let s = build_at(SpanKind::Client, &o);
    assert_eq!(attr(&s, "rpc.system"), Some(&"grpc".into()));
    assert_eq!(attr(&s, "rpc.grpc.status_code"), Some(&14i64.into()));
    assert_eq!(attr(&s, "network.protocol.version"), Some(&"2".into()));
    assert_eq!(s.status, Status::error("grpc-status 14"));
    // NOT_FOUND is the caller's problem, not the server's.
    o.grpc_status = Some(5);
    assert_eq!(build_at(SpanKind::Server, &o).status, Status::Unset);
}

#[test]
fn an_unknown_method_is_named_http_with_the_original_kept() {
    let r = req("PURGE", "/");
    let s = build_at(
        SpanKind::Client,
        &outcome(&r, Some(200), ResponseFlags::default()),
    );
    assert_eq!(s.name, "HTTP");
    assert_eq!(attr(&s, "http.request.method"), Some(&"_OTHER".into()));
    assert_eq!(
        attr(&s, "http.request.method_original"),
        Some(&"PURGE".into())
    );
}

#[test]
fn a_long_path_is_cut_at_a_character_boundary() {
    let path = format!("/{}", "é".repeat(MAX_PATH_LEN));
    let r = req("GET", &path);
    let s = build_at(
        SpanKind::Client,
        &outcome(&r, Some(200), ResponseFlags::default()),
    );
    let Some(Value::String(p)) = attr(&s, "url.path") else {
        panic!("no url.path")
    };
    assert!(p.as_str().len() <= MAX_PATH_LEN);
    assert!(p.as_str().len() >= MAX_PATH_LEN - 3);
}

#[test]
fn authorities_split_into_host_and_port() {
    assert_eq!(authority("reviews:9080"), Some(("reviews", 9080)));
    assert_eq!(authority("reviews"), Some(("reviews", 80)));
    assert_eq!(authority("[::1]:8080"), Some(("::1", 8080)));
    assert_eq!(authority("user@host:81"), Some(("host", 81)));
    assert_eq!(authority("bad host"), None);
    assert_eq!(authority("host:99999"), None);
}
