//! The tracer against a real OTLP/gRPC collector (the generated `TraceService`): what a
//! finished span looks like on arrival, that unsampled requests send nothing, and that a
//! collector that goes away and comes back costs only the spans sent while it was gone.

use http::{HeaderMap, HeaderValue};
use sinew_otlp_receiver::{AttrValue, Receiver, SpanKind as Kind, StatusCode};
use sinew_proxy::telemetry::trace::export::{Counters, DEFAULT_LIMITS, Limits};
use sinew_proxy::telemetry::trace::{Outcome, Settings, SpanKind, Tracer};
use sinew_proxy::telemetry::{RequestProtocol, Workload};
use sinew_proxy::traffic::ResponseFlags;
use std::sync::Arc;
use std::time::Duration;

const PATIENCE: Duration = Duration::from_secs(20);
const TRACE: &str = "4bf92f3577b34da6a3ce929d0e0e4736";
const APP_SPAN: &str = "00f067aa0ba902b7";

fn tracer(endpoint: String) -> Tracer {
    let tracer = Tracer::with_limits(
        Counters::default(),
        Limits {
            interval: Duration::from_millis(20),
            ..DEFAULT_LIMITS
        },
    );
    tracer.configure(&Settings {
        endpoint: Some(endpoint),
        sampling_percent: 0.0,
        workload: Workload {
            name: Arc::from("productpage-v1"),
            namespace: Arc::from("shop"),
            canonical_service: Arc::from("productpage"),
            canonical_revision: Arc::from("v1"),
            ..Workload::default()
        },
        pod: Arc::from("productpage-v1-abc"),
        ..Settings::default()
    });
    tracer
}

fn sampled(trace: &str, parent: &str) -> HeaderMap {
    let mut h = HeaderMap::new();
    h.insert(
        "traceparent",
        HeaderValue::from_str(&format!("00-{trace}-{parent}-01")).unwrap(),
    );
    h
}

struct Req {
    method: http::Method,
    uri: http::Uri,
}

/// A receiver on a free port, a tracer exporting to it, and a `GET path` to trace.
async fn exporting_to_a_receiver(path: &str) -> (Receiver, Tracer, Req) {
    let receiver = Receiver::start("127.0.0.1:0".parse().unwrap())
        .await
        .unwrap();
    let tracer = tracer(receiver.endpoint());
    let req = Req {
        method: http::Method::GET,
        uri: path.parse().unwrap(),
    };
    (receiver, tracer, req)
}

fn outcome(r: &Req, status: u16, flags: ResponseFlags) -> Outcome<'_> {
    Outcome {
        method: &r.method,
        uri: &r.uri,
        authority: Some("reviews.shop.svc.cluster.local:9080"),
        protocol: RequestProtocol::Http,
        version: http::Version::HTTP_11,
        status: Some(http::StatusCode::from_u16(status).unwrap()),
        grpc_status: None,
        flags,
        upstream_host: Some("10.1.0.7:15006".parse().unwrap()),
        upstream_cluster: Some("outbound|9080||reviews.shop.svc.cluster.local"),
        retries: 1,
        request_bytes: 0,
        response_bytes: 42,
        peer_identity: Some("spiffe://cluster.local/ns/shop/sa/reviews"),
        source: None,
        destination: None,
        destination_service: Some("reviews.shop.svc.cluster.local"),
    }
}

#[tokio::test]
async fn a_client_and_a_server_span_arrive_parented_with_kinds_and_attributes() {
    let (receiver, tracer, req) = exporting_to_a_receiver("/reviews/1").await;

    // The app's request leaves through the caller's proxy…
    let mut headers = sampled(TRACE, APP_SPAN);
    let client = tracer.start(SpanKind::Client, &mut headers);
    // …and arrives at the callee's proxy with the headers the caller's wrote.
    let mut at_callee = headers.clone();
    let server = tracer.start(SpanKind::Server, &mut at_callee);
    server.finish(&outcome(&req, 200, ResponseFlags::default()));
    client.finish(&outcome(&req, 503, ResponseFlags::UF));

    let spans = receiver.wait_for(2, PATIENCE).await.unwrap();
    assert_eq!(spans.len(), 2, "{spans:?}");
    let c = spans
        .iter()
        .find(|s| s.kind == Kind::Client)
        .expect("client span");
    let s = spans
        .iter()
        .find(|s| s.kind == Kind::Server)
        .expect("server span");
    assert_eq!(c.trace_id, TRACE);
    assert_eq!(s.trace_id, TRACE);
    assert_eq!(c.parent_span_id.as_deref(), Some(APP_SPAN));
    assert_eq!(s.parent_span_id.as_deref(), Some(c.span_id.as_str()));
    let tp = headers["traceparent"].to_str().unwrap();
    assert_eq!(tp, format!("00-{TRACE}-{}-01", c.span_id));

    assert_eq!(c.name, "GET");
    assert_eq!(c.status, StatusCode::Error);
    assert_eq!(c.status_message, "UF");
    assert_eq!(s.status, StatusCode::Unset);
    assert_eq!(c.int("http.response.status_code"), Some(503));
    assert_eq!(s.int("http.response.status_code"), Some(200));
    assert_eq!(c.str("http.request.method"), Some("GET"));
    assert_eq!(c.str("url.path"), Some("/reviews/1"));
    assert_eq!(
        c.str("server.address"),
        Some("reviews.shop.svc.cluster.local")
    );
    assert_eq!(c.int("server.port"), Some(9080));
    assert_eq!(c.str("response_flags"), Some("UF"));
    assert_eq!(c.int("http.request.resend_count"), Some(1));
    assert_eq!(
        c.str("upstream_cluster"),
        Some("outbound|9080||reviews.shop.svc.cluster.local")
    );
    assert_eq!(
        c.str("peer.identity"),
        Some("spiffe://cluster.local/ns/shop/sa/reviews")
    );
    assert_eq!(
        c.str("guid:x-request-id"),
        headers["x-request-id"].to_str().ok()
    );
    assert_eq!(
        c.resource.get("service.name"),
        Some(&AttrValue::String("productpage.shop".into()))
    );
    assert_eq!(
        c.resource.get("k8s.pod.name"),
        Some(&AttrValue::String("productpage-v1-abc".into()))
    );
    assert_eq!(c.scope, "sinew-proxy");
    assert!(c.end_unix_nanos >= c.start_unix_nanos && c.start_unix_nanos > 0);
    assert_eq!(tracer.dropped_spans(), 0);
}

#[tokio::test]
async fn an_unsampled_request_sends_no_span() {
    let (receiver, tracer, req) = exporting_to_a_receiver("/").await;
    let mut unsampled = HeaderMap::new();
    unsampled.insert(
        "traceparent",
        HeaderValue::from_static("00-11111111111111111111111111111111-2222222222222222-00"),
    );
    let span = tracer.start(SpanKind::Server, &mut unsampled);
    assert!(!span.is_sampled());
    span.finish(&outcome(&req, 200, ResponseFlags::default()));
    // A sampled span finished after it: the queue is first-in first-out, so once this one has
    // arrived the unsampled one would have too.
    let span = tracer.start(SpanKind::Server, &mut sampled(TRACE, APP_SPAN));
    span.finish(&outcome(&req, 200, ResponseFlags::default()));
    let spans = receiver.wait_for(1, PATIENCE).await.unwrap();
    assert_eq!(spans.len(), 1);
    assert_eq!(spans[0].trace_id, TRACE);
}

#[tokio::test]
async fn spans_flow_again_once_a_stopped_collector_is_back() {
    let (receiver, tracer, req) = exporting_to_a_receiver("/").await;
    let send = |trace: &str| {
        let span = tracer.start(SpanKind::Client, &mut sampled(trace, APP_SPAN));
        span.finish(&outcome(&req, 200, ResponseFlags::default()));
    };
    send("aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa");
    receiver.wait_for(1, PATIENCE).await.unwrap();

    let addr = receiver.stop().await;
    // While it is gone: starting and finishing never wait, the spans are dropped and counted.
    for _ in 0..10 {
        send("bbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbb");
    }
    let deadline = tokio::time::Instant::now() + PATIENCE;
    while tracer.dropped_spans() < 10 {
        assert!(tokio::time::Instant::now() < deadline, "drops not counted");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    assert_eq!(tracer.exported_spans(), 1);

    let receiver = Receiver::start(addr).await.unwrap();
    // The exporter reconnects by itself; keep sending until one arrives.
    let mut got = Vec::new();
    for _ in 0..200 {
        send("cccccccccccccccccccccccccccccccc");
        if let Ok(spans) = receiver.wait_for(1, Duration::from_millis(100)).await {
            got = spans;
            break;
        }
    }
    assert!(!got.is_empty(), "no span after the collector came back");
    assert!(
        got.iter()
            .all(|s| s.trace_id == "cccccccccccccccccccccccccccccccc")
    );
}
