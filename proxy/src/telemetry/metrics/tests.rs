use super::*;
use crate::metrics::Metrics;
use crate::telemetry::Workload;
use crate::telemetry::labels::{DestinationService, Reporter, Security};
use std::sync::Arc;

fn workload(name: &str, ns: &str) -> Workload {
    Workload {
        name: Arc::from(name),
        namespace: Arc::from(ns),
        app: Arc::from(name),
        version: Arc::from("v1"),
        canonical_service: Arc::from(name),
        canonical_revision: Arc::from("v1"),
    }
}

fn labels(reporter: Reporter) -> Labels {
    Labels {
        reporter,
        source: workload("productpage-v1", "default"),
        source_principal: Arc::from("spiffe://cluster.local/ns/default/sa/productpage"),
        destination: workload("reviews-v1", "default"),
        destination_principal: Arc::from("spiffe://cluster.local/ns/default/sa/reviews"),
        destination_service: DestinationService::from_host("reviews.default.svc.cluster.local"),
        security: Security::MutualTls,
    }
}

fn sample(code: u16, flags: ResponseFlags) -> HttpSample {
    HttpSample {
        protocol: RequestProtocol::Http,
        code,
        grpc: GrpcStatus::None,
        flags,
        duration: Duration::from_millis(7),
        request_bytes: 10,
        response_bytes: 300,
    }
}

/// The one line of `name` in `text` whose labels contain all of `has`.
fn line<'a>(text: &'a str, name: &str, has: &[&str]) -> Option<&'a str> {
    text.lines()
        .find(|l| l.starts_with(name) && has.iter().all(|h| l.contains(h)))
}

#[test]
fn a_request_is_counted_with_istios_full_label_set() {
    let m = Metrics::new();
    let l = m.istio.labels(labels(Reporter::Source));
    m.istio
        .record_http(&l, &sample(200, ResponseFlags::default()));
    let text = m.encode();
    let expected = "istio_requests_total{reporter=\"source\",\
        source_workload=\"productpage-v1\",source_canonical_service=\"productpage-v1\",\
        source_canonical_revision=\"v1\",source_workload_namespace=\"default\",\
        source_principal=\"spiffe://cluster.local/ns/default/sa/productpage\",\
        source_app=\"productpage-v1\",source_version=\"v1\",source_cluster=\"Kubernetes\",\
        destination_workload=\"reviews-v1\",destination_workload_namespace=\"default\",\
        destination_principal=\"spiffe://cluster.local/ns/default/sa/reviews\",\
        destination_app=\"reviews-v1\",destination_version=\"v1\",\
        destination_service=\"reviews.default.svc.cluster.local\",\
        destination_canonical_service=\"reviews-v1\",destination_canonical_revision=\"v1\",\
        destination_service_name=\"reviews\",destination_service_namespace=\"default\",\
        destination_cluster=\"Kubernetes\",connection_security_policy=\"mutual_tls\",\
        request_protocol=\"http\",response_code=\"200\",grpc_response_status=\"\",\
        response_flags=\"-\"} 1";
    assert!(text.lines().any(|l| l == expected), "{text}");
    assert!(
        line(
            &text,
            "istio_request_duration_milliseconds_sum",
            &["response_code=\"200\""]
        )
        .is_some_and(|l| l.ends_with(" 7.0")),
        "{text}"
    );
    assert!(
        line(
            &text,
            "istio_request_duration_milliseconds_bucket",
            &["le=\"10.0\""]
        )
        .is_some_and(|l| l.ends_with(" 1")),
        "{text}"
    );
    assert!(
        line(
            &text,
            "istio_request_duration_milliseconds_bucket",
            &["le=\"5.0\""]
        )
        .is_some_and(|l| l.ends_with(" 0")),
        "{text}"
    );
    assert!(
        line(&text, "istio_response_bytes_sum", &[]).is_some_and(|l| l.ends_with(" 300.0")),
        "{text}"
    );
    assert!(
        line(&text, "istio_request_bytes_sum", &[]).is_some_and(|l| l.ends_with(" 10.0")),
        "{text}"
    );
}

#[test]
fn each_response_flag_reads_as_envoy_prints_it() {
    let m = Metrics::new();
    let l = m.istio.labels(labels(Reporter::Source));
    let mut urx_uf = ResponseFlags::UF;
    urx_uf.insert(ResponseFlags::URX);
    for (code, flags, text) in [
        (503, ResponseFlags::UO, "UO"),
        (503, ResponseFlags::UH, "UH"),
        (503, ResponseFlags::UF, "UF"),
        (503, urx_uf, "UF,URX"),
        (504, ResponseFlags::UT, "UT"),
        (404, ResponseFlags::NR, "NR"),
        (503, ResponseFlags::UC, "UC"),
        (0, ResponseFlags::DC, "DC"),
    ] {
        m.istio.record_http(&l, &sample(code, flags));
        let out = m.encode();
        let want = [
            format!("response_code=\"{code}\""),
            format!("response_flags=\"{text}\""),
        ];
        let want: Vec<&str> = want.iter().map(String::as_str).collect();
        assert!(
            line(&out, "istio_requests_total", &want).is_some_and(|l| l.ends_with(" 1")),
            "{text}: {out}"
        );
    }
}

#[test]
fn reporter_and_grpc_status_labels() {
    let m = Metrics::new();
    let l = m.istio.labels(labels(Reporter::Destination));
    let grpc = |s: GrpcStatus| HttpSample {
        protocol: RequestProtocol::Grpc,
        grpc: s,
        ..sample(200, ResponseFlags::default())
    };
    m.istio.record_http(&l, &grpc(GrpcStatus::parse(b"14")));
    m.istio.record_http(&l, &grpc(GrpcStatus::parse(b"99")));
    m.istio.record_http(&l, &grpc(GrpcStatus::parse(b"\xff")));
    let out = m.encode();
    let base = ["reporter=\"destination\"", "request_protocol=\"grpc\""];
    let with = |s: &str| {
        let mut v = base.to_vec();
        v.push(s);
        line(&out, "istio_requests_total", &v).map(|l| l.rsplit(' ').next().unwrap_or(""))
    };
    assert_eq!(with("grpc_response_status=\"14\""), Some("1"), "{out}");
    assert_eq!(with("grpc_response_status=\"unknown\""), Some("2"), "{out}");
}

#[test]
fn series_past_the_cap_go_to_the_unknown_peer_set_and_are_counted() {
    let m = Metrics::with_series_cap(2, 100);
    let l = m.istio.labels(labels(Reporter::Source));
    for code in [200, 201, 202, 203, 200] {
        m.istio
            .record_http(&l, &sample(code, ResponseFlags::default()));
    }
    let out = m.encode();
    let known = ["source_workload=\"productpage-v1\""];
    assert!(
        line(
            &out,
            "istio_requests_total",
            &[known[0], "response_code=\"200\""]
        )
        .is_some_and(|l| l.ends_with(" 2"))
    );
    assert!(
        line(
            &out,
            "istio_requests_total",
            &[known[0], "response_code=\"202\""]
        )
        .is_none()
    );
    let overflow = |code: &str| {
        line(
            &out,
            "istio_requests_total",
            &[
                "source_workload=\"unknown\"",
                "destination_service=\"unknown\"",
                "reporter=\"source\"",
                code,
            ],
        )
        .is_some_and(|l| l.ends_with(" 1"))
    };
    assert!(overflow("response_code=\"202\""), "{out}");
    assert!(overflow("response_code=\"203\""), "{out}");
    assert!(
        out.contains("sinew_metrics_label_overflow_total 2"),
        "{out}"
    );
}

#[test]
fn peers_past_the_label_set_cap_read_unknown() {
    let m = Metrics::with_series_cap(100, 1);
    let a = m.istio.labels(labels(Reporter::Destination));
    let mut other = labels(Reporter::Destination);
    other.source = workload("attacker", "evil");
    let b = m.istio.labels(other);
    assert_ne!(a, b);
    m.istio
        .record_http(&b, &sample(200, ResponseFlags::default()));
    let out = m.encode();
    assert!(!out.contains("attacker"), "{out}");
    assert!(
        line(
            &out,
            "istio_requests_total",
            &["source_workload=\"unknown\""]
        )
        .is_some(),
        "{out}"
    );
    assert!(
        out.contains("sinew_metrics_label_overflow_total 1"),
        "{out}"
    );
}

#[test]
fn tcp_series_count_bytes_opens_and_closes() {
    let m = Metrics::new();
    let l = m.istio.labels(labels(Reporter::Source));
    let s = m.istio.tcp(&l, ResponseFlags::default());
    s.opened.inc();
    s.received.inc_by(5);
    s.sent.inc_by(9);
    m.istio.tcp(&l, ResponseFlags::UF).closed.inc();
    let out = m.encode();
    for (name, flags, value) in [
        ("istio_tcp_connections_opened_total", "-", "1"),
        ("istio_tcp_received_bytes_total", "-", "5"),
        ("istio_tcp_sent_bytes_total", "-", "9"),
        ("istio_tcp_connections_closed_total", "UF", "1"),
    ] {
        let f = format!("response_flags=\"{flags}\"");
        assert!(
            line(&out, name, &["request_protocol=\"tcp\"", &f])
                .is_some_and(|l| l.ends_with(&format!(" {value}"))),
            "{name}: {out}"
        );
    }
    // The sinew_* metrics stay beside Istio's.
    assert!(out.contains("sinew_ready"), "{out}");
    assert_eq!(out.matches("# EOF").count(), 1);
}
