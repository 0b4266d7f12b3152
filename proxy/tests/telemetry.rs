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
        // The `sinew/tcp-peer` stream header carried A's metadata.
        "source_workload=\"client-v1\"",
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

/// What a proxy that predates `sinew/tcp-peer` (or a forger) sends: a raw mTLS stream as
/// CLIENT_ID, offering `offer`, then `header`, then `payload`; returns what comes back.
async fn raw_mesh_tcp(
    mesh: &Mesh,
    offer: &'static [&'static [u8]],
    header: &[u8],
    payload: &[u8],
) -> Vec<u8> {
    let dir = mesh.dir.path().join("raw");
    std::fs::create_dir_all(&dir).unwrap();
    let files = mesh.ca.write_workload(&dir, "raw", CLIENT_ID);
    let creds =
        sinew_proxy::tls::Credentials::load(&files.cert, &files.key, &files.bundle).unwrap();
    let state = sinew_proxy::tls::TlsState::new(creds).unwrap();
    let config = state
        .client_config(
            &sinew_proxy::tls::Identity::parse(SERVER_ID).unwrap(),
            offer,
        )
        .unwrap();
    let addr = mesh.inbound();
    let tcp = tokio::net::TcpStream::connect(addr).await.unwrap();
    let name = rustls_pki_types::ServerName::IpAddress(addr.ip().into());
    let mut tls = tokio_rustls::TlsConnector::from(config)
        .connect(name, tcp)
        .await
        .unwrap();
    // A stream the server closes may refuse the writes: what comes back tells.
    let _ = tls.write_all(header).await;
    let _ = tls.write_all(payload).await;
    let mut back = vec![0u8; payload.len()];
    let _ = tokio::time::timeout(
        std::time::Duration::from_secs(10),
        tls.read_exact(&mut back),
    )
    .await;
    back
}

#[tokio::test]
async fn a_proxy_that_only_speaks_sinew_tcp_is_still_served() {
    const OLD: &[&[u8]] = &[sinew_proxy::tls::ALPN_TCP];
    let (app, _t) = start_tcp_echo().await;
    let mesh = Mesh::with(options(app.port(), pb::Protocol::Tcp)).await;
    let mut header = b"SNW\x01".to_vec();
    header.extend_from_slice(&app.port().to_be_bytes());
    assert_eq!(raw_mesh_tcp(&mesh, OLD, &header, b"old").await, b"old");
    closed_stream_of_an_unknown_workload(&mesh, "the old client's stream in the metrics").await;
}

/// Waits until the server's proxy counts one closed TCP stream from the client's verified
/// identity with the workload `unknown` (no claim believed).
async fn closed_stream_of_an_unknown_workload(mesh: &Mesh, what: &str) {
    let addr = mesh.b.metrics;
    let labels = [
        "reporter=\"destination\"",
        "source_workload=\"unknown\"",
        "source_principal=\"spiffe://cluster.local/ns/default/sa/client\"",
    ];
    eventually(what, || async move {
        series(
            &stats(addr).await,
            "istio_tcp_connections_closed_total",
            &labels,
        ) == Some(1.0)
    })
    .await;
}

#[tokio::test]
async fn tcp_peer_metadata_naming_another_identity_is_not_believed() {
    let (app, _t) = start_tcp_echo().await;
    let mesh = Mesh::with(options(app.port(), pb::Protocol::Tcp)).await;
    let forged = b"1;spiffe://cluster.local/ns/prod/sa/payments;prod;payments;payments;v1;payments;v1;server.default.svc.cluster.local";
    let mut header = b"SNW\x02".to_vec();
    header.extend_from_slice(&app.port().to_be_bytes());
    header.extend_from_slice(&(forged.len() as u16).to_be_bytes());
    header.extend_from_slice(forged);
    let back = raw_mesh_tcp(&mesh, sinew_proxy::tls::OFFER_TCP, &header, b"forged").await;
    assert_eq!(back, b"forged");
    closed_stream_of_an_unknown_workload(&mesh, "the forger's stream in the metrics").await;
    assert!(!stats(mesh.b.metrics).await.contains("payments"));
}

#[tokio::test]
async fn an_oversized_tcp_peer_header_closes_the_stream_before_the_app() {
    let (app, _t) = start_tcp_echo().await;
    let mesh = Mesh::with(options(app.port(), pb::Protocol::Tcp)).await;
    let mut header = b"SNW\x02".to_vec();
    header.extend_from_slice(&app.port().to_be_bytes());
    header.extend_from_slice(&u16::MAX.to_be_bytes());
    // The stream is closed: nothing echoes.
    let back = raw_mesh_tcp(&mesh, sinew_proxy::tls::OFFER_TCP, &header, b"x").await;
    assert_eq!(back, b"\0");
    let text = stats(mesh.b.metrics).await;
    assert!(
        !text.contains("istio_tcp_connections_opened_total{"),
        "{text}"
    );
}
