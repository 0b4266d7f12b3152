//! Behaviour tests of Istio's standard metrics through two real proxies on loopback: the client's
//! proxy (A, reporter="source") and the server's (B, reporter="destination") label one request
//! alike, B learning A's workload from the peer metadata it can verify.

mod support;

use sinew_proto::config::v1 as pb;
use support::*;
use tokio::io::{AsyncReadExt, AsyncWriteExt};

const SERVICE: &str = "server.default.svc.cluster.local";

fn workload(name: &str, app: &str) -> pb::Workload {
    pb::Workload {
        name: name.into(),
        namespace: "default".into(),
        app: app.into(),
        version: "v1".into(),
        canonical_service: app.into(),
        canonical_revision: "v1".into(),
        pod: String::new(),
    }
}

fn options(app_port: u16, protocol: pb::Protocol) -> MeshOptions {
    let mut o = MeshOptions::new(app_port);
    o.protocol = protocol;
    o.a_telemetry = Some(pb::Telemetry {
        workload: Some(workload("client-v1", "client")),
        ..Default::default()
    });
    o.b_telemetry = Some(pb::Telemetry {
        workload: Some(workload("server-v1", "server")),
        services: vec![SERVICE.into()],
        ..Default::default()
    });
    o.endpoint_workload = Some(workload("server-v1", "server"));
    o
}

#[tokio::test]
async fn both_proxies_report_the_request_with_istios_labels() {
    let (app, _t) = start_echo_app().await;
    let mesh = Mesh::with(options(app.port(), pb::Protocol::Detect)).await;
    let mut c = h1_client(mesh.outbound()).await;
    for _ in 0..3 {
        let rsp = c.send_request(get("/status/201")).await.unwrap();
        assert_eq!(rsp.status(), 201);
        // The peer header never reaches the app.
        assert_eq!(rsp.headers()["x-seen-sinew"], "");
        body_string(rsp).await;
    }
    let source = [
        "reporter=\"source\"",
        "source_workload=\"client-v1\"",
        "source_principal=\"spiffe://cluster.local/ns/default/sa/client\"",
        "destination_workload=\"server-v1\"",
        "destination_principal=\"spiffe://cluster.local/ns/default/sa/server\"",
        "destination_service=\"server.default.svc.cluster.local\"",
        "destination_service_name=\"server\"",
        "destination_service_namespace=\"default\"",
        // Istio's value on the client's side: only the server reports the policy it enforced.
        "connection_security_policy=\"unknown\"",
        "request_protocol=\"http\"",
        "response_code=\"201\"",
        "response_flags=\"-\"",
    ];
    let destination = [
        "reporter=\"destination\"",
        "source_workload=\"client-v1\"",
        "source_app=\"client\"",
        "source_principal=\"spiffe://cluster.local/ns/default/sa/client\"",
        "destination_workload=\"server-v1\"",
        "destination_service=\"server.default.svc.cluster.local\"",
        "connection_security_policy=\"mutual_tls\"",
        "response_code=\"201\"",
    ];
    for (proxy, labels) in [(&mesh.a, &source[..]), (&mesh.b, &destination[..])] {
        let addr = proxy.metrics;
        eventually("three requests in istio_requests_total", || async move {
            series(&stats(addr).await, "istio_requests_total", labels) == Some(3.0)
        })
        .await;
        let text = stats(addr).await;
        assert_eq!(
            series(&text, "istio_request_duration_milliseconds_count", labels),
            Some(3.0),
            "{text}"
        );
        assert!(
            text.contains("istio_request_duration_milliseconds_bucket{"),
            "{text}"
        );
        // `/metrics` serves the same families.
        assert_eq!(
            metric(addr, "sinew_ready ").await,
            1.0,
            "the sinew_* metrics stay"
        );
    }
}

#[tokio::test]
async fn a_local_reply_is_reported_with_its_response_flag() {
    // Nothing listens behind B: B answers 503 UF and reports it so.
    let closed = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let port = closed.local_addr().unwrap().port();
    drop(closed);
    let mesh = Mesh::with(options(port, pb::Protocol::Detect)).await;
    let mut c = h1_client(mesh.outbound()).await;
    let rsp = c.send_request(get("/")).await.unwrap();
    assert_eq!(rsp.status(), 503);
    body_string(rsp).await;
    let addr = mesh.b.metrics;
    let labels = [
        "reporter=\"destination\"",
        "response_code=\"503\"",
        "response_flags=\"UF\"",
    ];
    eventually("B's UF in istio_requests_total", || async move {
        series(&stats(addr).await, "istio_requests_total", &labels) == Some(1.0)
    })
    .await;
}

#[tokio::test]
async fn a_mesh_tcp_stream_is_counted_on_both_sides() {
    let (app, _t) = start_tcp_echo().await;
    let mesh = Mesh::with(options(app.port(), pb::Protocol::Tcp)).await;
    let mut s = tokio::net::TcpStream::connect(mesh.outbound())
        .await
        .unwrap();
    s.write_all(b"hello tcp").await.unwrap();
    let mut buf = [0u8; 9];
    s.read_exact(&mut buf).await.unwrap();
    assert_eq!(&buf, b"hello tcp");
    drop(s);
    let source = [
        "reporter=\"source\"",
        "source_workload=\"client-v1\"",
        "destination_workload=\"server-v1\"",
        "destination_principal=\"spiffe://cluster.local/ns/default/sa/server\"",
        "connection_security_policy=\"unknown\"",
        "request_protocol=\"tcp\"",
    ];
    let destination = [
        "reporter=\"destination\"",
        // No workload metadata travels on a TCP stream: the verified principal does.
        "source_workload=\"unknown\"",
        "source_principal=\"spiffe://cluster.local/ns/default/sa/client\"",
        "destination_workload=\"server-v1\"",
        "destination_service=\"server.default.svc.cluster.local\"",
        "connection_security_policy=\"mutual_tls\"",
    ];
    for (proxy, labels) in [(&mesh.a, &source[..]), (&mesh.b, &destination[..])] {
        let addr = proxy.metrics;
        eventually("the stream's close", || async move {
            series(
                &stats(addr).await,
                "istio_tcp_connections_closed_total",
                labels,
            ) == Some(1.0)
        })
        .await;
        let text = stats(addr).await;
        for name in [
            "istio_tcp_connections_opened_total",
            "istio_tcp_received_bytes_total",
            "istio_tcp_sent_bytes_total",
        ] {
            let want = if name.contains("bytes") { 9.0 } else { 1.0 };
            assert_eq!(series(&text, name, labels), Some(want), "{name}: {text}");
        }
    }
}
