//! No plaintext by surprise: with the control plane unreachable, an outbound connection to an
//! address the proxy has not resolved is refused when the address is inside `meshAddressRanges`
//! and passed through when it is outside (or when no ranges are configured).

mod support;

use sinew_proto::config::v1 as pb;
use sinew_proxy::testing::{TempDir, TestCa};
use std::net::SocketAddr;
use std::sync::atomic::Ordering;
use support::tcp::{echo_on, ping};
use support::*;
use tokio::net::TcpListener;

/// A proxy whose control plane never answers (nothing listens at its address), with one
/// outbound listener per destination, named "to-<index>".
async fn proxy_without_control_plane(
    dir: &TempDir,
    ranges: &[&str],
    destinations: &[SocketAddr],
) -> RunningProxy {
    let ca = TestCa::new("unreachable-cp");
    let root = dir.path().join("root.pem");
    std::fs::write(&root, ca.root_pem()).unwrap();
    let token = dir.path().join("token");
    std::fs::write(&token, "unused").unwrap();
    // Bound then dropped: connections to it are refused, so the control plane is unreachable.
    let gone = TcpListener::bind("127.0.0.1:0")
        .await
        .unwrap()
        .local_addr()
        .unwrap();
    start_proxy(pb::ProxyConfig {
        control_plane: Some(pb::ControlPlane {
            address: gone.to_string(),
            root_cert_file: root.display().to_string(),
            token_file: token.display().to_string(),
            resolve_timeout: Some(pbjson_types::Duration {
                seconds: 0,
                nanos: 200_000_000,
            }),
            ..Default::default()
        }),
        listeners: destinations
            .iter()
            .enumerate()
            .map(|(i, d)| pb::Listener {
                name: format!("to-{i}"),
                address: "127.0.0.1:0".into(),
                direction: pb::Direction::Outbound as i32,
                fixed_destination: d.to_string(),
                app_port: 0,
            })
            .collect(),
        mesh_address_ranges: ranges.iter().map(|r| r.to_string()).collect(),
        admin: Some(pb::AdminConfig {
            admin_address: "127.0.0.1:0".into(),
            health_address: "127.0.0.1:0".into(),
            metrics_address: "127.0.0.1:0".into(),
        }),
        ..Default::default()
    })
    .await
}

const REFUSED: &str =
    r#"sinew_tcp_connections_refused_total{direction="outbound",reason="unresolved"}"#;
const PASSTHROUGH: &str =
    r#"sinew_tcp_connections_opened_total{direction="outbound",protocol="passthrough"}"#;

#[tokio::test]
async fn an_unresolved_address_inside_the_mesh_ranges_is_refused_not_sent_in_plaintext() {
    let dir = TempDir::new("unresolved-in");
    let (inside, accepted) = echo_on("127.0.0.2").await;
    let proxy = proxy_without_control_plane(&dir, &["127.0.0.2/32"], &[inside]).await;

    assert_eq!(
        ping(proxy.addr("to-0")).await,
        b"",
        "closed without an answer"
    );
    assert_eq!(metric(proxy.metrics, REFUSED).await, 1.0);
    assert_eq!(metric(proxy.metrics, PASSTHROUGH).await, 0.0);
    // The decision is made before any upstream connect, and the client saw the close.
    assert_eq!(
        accepted.load(Ordering::SeqCst),
        0,
        "nothing reached the destination"
    );
}

#[tokio::test]
async fn an_unresolved_address_outside_the_mesh_ranges_passes_through() {
    let dir = TempDir::new("unresolved-out");
    let (outside, accepted) = echo_on("127.0.0.1").await;
    let proxy = proxy_without_control_plane(&dir, &["127.0.0.2/32", "fd00::/8"], &[outside]).await;

    assert_eq!(ping(proxy.addr("to-0")).await, b"ping");
    assert_eq!(accepted.load(Ordering::SeqCst), 1);
    assert_eq!(metric(proxy.metrics, PASSTHROUGH).await, 1.0);
    assert_eq!(metric(proxy.metrics, REFUSED).await, 0.0);
}

#[tokio::test]
async fn without_mesh_ranges_an_unresolved_address_passes_through_as_before() {
    let dir = TempDir::new("unresolved-none");
    let (inside, _) = echo_on("127.0.0.2").await;
    let proxy = proxy_without_control_plane(&dir, &[], &[inside]).await;

    assert_eq!(ping(proxy.addr("to-0")).await, b"ping");
    assert_eq!(metric(proxy.metrics, REFUSED).await, 0.0);
}

#[tokio::test]
async fn a_refused_destination_stays_refused_and_each_refusal_is_counted() {
    let dir = TempDir::new("unresolved-again");
    let (inside, accepted) = echo_on("127.0.0.2").await;
    let (outside, _) = echo_on("127.0.0.1").await;
    let proxy = proxy_without_control_plane(&dir, &["127.0.0.0/30"], &[inside, outside]).await;

    assert_eq!(ping(proxy.addr("to-0")).await, b"");
    assert_eq!(ping(proxy.addr("to-0")).await, b"");
    // 127.0.0.1 is inside 127.0.0.0/30 too: the range, not the listener, decides.
    assert_eq!(ping(proxy.addr("to-1")).await, b"");
    assert_eq!(metric(proxy.metrics, REFUSED).await, 3.0);
    assert_eq!(accepted.load(Ordering::SeqCst), 0);
}
