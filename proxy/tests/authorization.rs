//! AuthorizationPolicy and per-port mTLS modes between two real proxies over mesh mTLS: who
//! reaches the app, who gets `403 RBAC: access denied`, and TCP streams closed before the app.

mod support;

use sinew_proto::config::v1 as pb;
use support::*;

fn strings(v: &[&str]) -> Vec<String> {
    v.iter().map(|s| s.to_string()).collect()
}

/// GET /orders/* from the client's service account, nothing else.
fn orders_read_only() -> pb::Authorization {
    pb::Authorization {
        policies: vec![pb::AuthorizationPolicy {
            name: "default/orders-read".into(),
            action: pb::AuthorizationAction::Allow as i32,
            dry_run: false,
            rules: vec![pb::AuthorizationRule {
                from: vec![pb::AuthorizationSource {
                    principals: strings(&["cluster.local/ns/default/sa/client"]),
                    ..Default::default()
                }],
                to: vec![pb::AuthorizationOperation {
                    methods: strings(&["GET"]),
                    paths: strings(&["/orders/*"]),
                    ..Default::default()
                }],
                when: vec![],
            }],
        }],
    }
}

#[tokio::test]
async fn an_allow_policy_admits_its_caller_for_get_only_and_refuses_everything_else() {
    let (app, _t, seen) = start_recording_echo_app().await;
    let mut o = MeshOptions::new(app.port());
    o.b_authorization = Some(orders_read_only());
    let mesh = Mesh::with(o).await;

    let mut c = h1_client(mesh.outbound()).await;
    assert_eq!(
        c.send_request(get("/orders/1")).await.unwrap().status(),
        200
    );
    let mut post = get("/orders/1");
    *post.method_mut() = http::Method::POST;
    let rsp = c.send_request(post).await.unwrap();
    assert_eq!(rsp.status(), 403);
    assert_eq!(body_string(rsp).await, "RBAC: access denied");
    assert_eq!(c.send_request(get("/admin")).await.unwrap().status(), 403);
    // The bypasses, byte for byte through the client proxy: each is /admin once normalised.
    for attack in [
        &b"GET /orders/../admin HTTP/1.1\r\nHost: s\r\nConnection: close\r\n\r\n"[..],
        b"GET /orders/%2e%2e/admin HTTP/1.1\r\nHost: s\r\nConnection: close\r\n\r\n",
        b"GET /orders%2F..%2Fadmin HTTP/1.1\r\nHost: s\r\nConnection: close\r\n\r\n",
        b"GET /orders/..%5Cadmin HTTP/1.1\r\nHost: s\r\nConnection: close\r\n\r\n",
    ] {
        let out = raw_exchange(mesh.outbound(), attack).await;
        assert!(
            out.starts_with("HTTP/1.1 403"),
            "{} => {out}",
            String::from_utf8_lossy(attack)
        );
    }
    // A plaintext caller reaching the app's proxy directly has no principal.
    let out = raw_exchange(
        mesh.inbound(),
        b"GET /orders/1 HTTP/1.1\r\nHost: s\r\nConnection: close\r\n\r\n",
    )
    .await;
    assert!(out.starts_with("HTTP/1.1 403"), "{out}");
    // A path that normalises to an allowed one reaches the app in its normal form.
    let rsp = c.send_request(get("/orders//2")).await.unwrap();
    assert_eq!(rsp.status(), 200);
    assert_eq!(*seen.lock().unwrap(), ["GET /orders/1", "GET /orders/2"]);
    assert_eq!(
        metric(
            mesh.b.metrics,
            r#"sinew_authz_decisions_total{policy="default/orders-read",rule="0",decision="allowed",dry_run="false"}"#
        )
        .await,
        2.0
    );
}

#[tokio::test]
async fn a_denied_tcp_stream_is_closed_before_the_app() {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let (echo, _t) = start_tcp_echo().await;
    let mut o = MeshOptions::new(echo.port());
    o.protocol = pb::Protocol::Tcp;
    // An ALLOW rule that needs HTTP never matches a TCP stream: the stream is denied.
    o.b_authorization = Some(orders_read_only());
    let mesh = Mesh::with(o).await;
    let mut tcp = tokio::net::TcpStream::connect(mesh.outbound())
        .await
        .unwrap();
    tcp.write_all(b"\x00\x01not http").await.unwrap();
    let mut out = Vec::new();
    let read = tokio::time::timeout(
        std::time::Duration::from_secs(10),
        tcp.read_to_end(&mut out),
    )
    .await
    .expect("closed within 10 s");
    assert!(read.is_ok() || out.is_empty(), "{read:?}");
    assert!(out.is_empty(), "nothing echoed: {out:?}");
    assert_eq!(
        metric(
            mesh.b.metrics,
            r#"sinew_authz_decisions_total{policy="none",rule="",decision="denied",dry_run="false"}"#
        )
        .await,
        1.0
    );
}

#[tokio::test]
async fn a_port_level_strict_mode_refuses_plaintext_on_that_port_only() {
    let (app, _t) = start_echo_app().await;
    let mut o = MeshOptions::new(app.port());
    o.b_port_modes = [(u32::from(app.port()), pb::InboundMode::Strict as i32)].into();
    let strict_port = Mesh::with(o).await;
    let plain = b"GET / HTTP/1.1\r\nHost: s\r\nConnection: close\r\n\r\n";
    assert_eq!(raw_exchange(strict_port.inbound(), plain).await, "");
    let mut c = h1_client(strict_port.outbound()).await;
    assert_eq!(
        c.send_request(get("/")).await.unwrap().status(),
        200,
        "mTLS still works"
    );

    let mut o = MeshOptions::new(app.port());
    o.strict = true;
    o.b_port_modes = [(u32::from(app.port()), pb::InboundMode::Permissive as i32)].into();
    let permissive_port = Mesh::with(o).await;
    let out = raw_exchange(permissive_port.inbound(), plain).await;
    assert!(
        out.starts_with("HTTP/1.1 200"),
        "the port's PERMISSIVE wins over the workload's STRICT: {out}"
    );
}
