//! Bounded connections: the per-proxy connection limit and the idle timeouts, over real
//! sockets on loopback.

mod support;

use sinew_proto::config::v1 as pb;
use std::net::SocketAddr;
use std::time::Duration;
use support::tcp::{echo_on, ping_over, wait_closed};
use support::*;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;
use tokio::time::Instant;

fn duration(d: Duration) -> Option<pbjson_types::Duration> {
    Some(pbjson_types::Duration {
        seconds: d.as_secs() as i64,
        nanos: d.subsec_nanos() as i32,
    })
}

/// The service at [`SERVICE_ADDR`], served by `app` without a sidecar (plaintext).
fn service(app: SocketAddr, protocol: pb::Protocol) -> pb::Service {
    pb::Service {
        name: "server.default.svc.cluster.local".into(),
        addresses: vec![SERVICE_ADDR.into()],
        endpoints: vec![pb::Endpoint {
            address: app.to_string(),
            ..Default::default()
        }],
        protocol: protocol as i32,
        ..Default::default()
    }
}

/// A static proxy (no control plane) with one outbound listener "out" whose connections go to
/// the service at [`SERVICE_ADDR`].
async fn proxy(service: pb::Service, timeouts: pb::Timeouts, limits: pb::Limits) -> RunningProxy {
    start_proxy(pb::ProxyConfig {
        listeners: vec![outbound_listener("out")],
        services: vec![service],
        timeouts: Some(timeouts),
        limits: Some(limits),
        admin: Some(pb::AdminConfig {
            admin_address: "127.0.0.1:0".into(),
            health_address: "127.0.0.1:0".into(),
            metrics_address: "127.0.0.1:0".into(),
        }),
        ..Default::default()
    })
    .await
}

const LIMIT_REFUSED: &str =
    r#"sinew_tcp_connections_refused_total{direction="outbound",reason="limit"}"#;
const ACTIVE: &str = r#"sinew_tcp_connections_active{direction="outbound"}"#;
const IDLE_CLOSED: &str = r#"sinew_tcp_connections_idle_closed_total{direction="outbound"}"#;

/// Waits (bounded) until a metric reads `want`: the proxy's own account of what happened.
async fn metric_reaches(addr: SocketAddr, series: &str, want: f64) {
    let deadline = Instant::now() + Duration::from_secs(10);
    while metric(addr, series).await != want {
        assert!(Instant::now() < deadline, "{series} never reached {want}");
        tokio::task::yield_now().await;
    }
}

#[tokio::test]
async fn the_limit_refuses_the_next_connection_and_admits_again_once_one_closes() {
    let (echo, _) = echo_on("127.0.0.1").await;
    let p = proxy(
        service(echo, pb::Protocol::Tcp),
        pb::Timeouts::default(),
        pb::Limits {
            max_connections: 2,
            ..Default::default()
        },
    )
    .await;
    let out = p.addr("out");
    let mut first = TcpStream::connect(out).await.unwrap();
    let mut second = TcpStream::connect(out).await.unwrap();
    // Both answered: both hold their place under the limit.
    assert_eq!(ping_over(&mut first).await, b"ping");
    assert_eq!(ping_over(&mut second).await, b"ping");
    assert_eq!(metric(p.metrics, "sinew_tcp_connections_limit").await, 2.0);

    let mut third = TcpStream::connect(out).await.unwrap();
    assert_eq!(
        ping_over(&mut third).await,
        b"",
        "over the limit: closed unanswered"
    );
    assert_eq!(metric(p.metrics, LIMIT_REFUSED).await, 1.0);

    drop(first);
    metric_reaches(p.metrics, ACTIVE, 1.0).await;
    let mut fourth = TcpStream::connect(out).await.unwrap();
    assert_eq!(
        ping_over(&mut fourth).await,
        b"ping",
        "a freed place admits one more"
    );
    assert_eq!(metric(p.metrics, LIMIT_REFUSED).await, 1.0);
    assert_eq!(
        ping_over(&mut second).await,
        b"ping",
        "the others are untouched"
    );
}

#[tokio::test]
async fn an_idle_opaque_connection_is_closed_after_the_tcp_idle_timeout() {
    let tcp_idle = Duration::from_millis(300);
    let (echo, _) = echo_on("127.0.0.1").await;
    let p = proxy(
        service(echo, pb::Protocol::Tcp),
        pb::Timeouts {
            tcp_idle: duration(tcp_idle),
            ..Default::default()
        },
        pb::Limits::default(),
    )
    .await;
    let mut tcp = TcpStream::connect(p.addr("out")).await.unwrap();
    assert_eq!(ping_over(&mut tcp).await, b"ping", "open while fresh");
    let last = Instant::now();
    assert!(wait_closed(&mut tcp).await, "closed once idle");
    assert!(last.elapsed() >= tcp_idle, "not before the idle timeout");
    assert_eq!(metric(p.metrics, IDLE_CLOSED).await, 1.0);
}

/// A proxy in front of an echo app (HTTP, detected) with `timeouts.idle` set to `idle`.
async fn http_proxy_with_idle_timeout(
    idle: Duration,
) -> (RunningProxy, tokio::task::JoinHandle<()>) {
    let (app, task) = start_echo_app().await;
    let timeouts = pb::Timeouts {
        idle: duration(idle),
        ..Default::default()
    };
    let p = proxy(
        service(app, pb::Protocol::Detect),
        timeouts,
        pb::Limits::default(),
    )
    .await;
    (p, task)
}

#[tokio::test]
async fn an_idle_http1_keep_alive_connection_is_closed_after_the_idle_timeout() {
    let idle = Duration::from_millis(300);
    let (p, _app) = http_proxy_with_idle_timeout(idle).await;
    let mut tcp = TcpStream::connect(p.addr("out")).await.unwrap();
    tcp.write_all(b"GET / HTTP/1.1\r\nHost: server.default:8080\r\n\r\n")
        .await
        .unwrap();
    let mut head = [0u8; 12];
    tcp.read_exact(&mut head).await.unwrap();
    assert_eq!(&head, b"HTTP/1.1 200", "answered while fresh");
    let answered = Instant::now();
    assert!(wait_closed(&mut tcp).await, "closed once idle");
    assert!(answered.elapsed() >= idle, "not before the idle timeout");
    assert_eq!(metric(p.metrics, IDLE_CLOSED).await, 1.0);
}

#[tokio::test]
async fn a_request_slower_than_the_idle_timeout_is_not_cut_short() {
    let idle = Duration::from_millis(200);
    let (p, _app) = http_proxy_with_idle_timeout(idle).await;
    let mut tcp = TcpStream::connect(p.addr("out")).await.unwrap();
    // The app takes five idle periods to answer: no byte moves meanwhile, but a request is in
    // flight, so the connection is not idle.
    tcp.write_all(b"GET /slow/1000 HTTP/1.1\r\nHost: server.default:8080\r\n\r\n")
        .await
        .unwrap();
    let mut rsp = Vec::new();
    let answered = tokio::time::timeout(Duration::from_secs(10), async {
        let mut buf = [0u8; 1024];
        while !rsp.ends_with(b"slow done") {
            let n = tcp.read(&mut buf).await.unwrap();
            assert!(
                n > 0,
                "closed mid-request: {}",
                String::from_utf8_lossy(&rsp)
            );
            rsp.extend_from_slice(&buf[..n]);
        }
    })
    .await;
    assert!(answered.is_ok(), "no answer within 10 s");
    let text = String::from_utf8_lossy(&rsp).to_ascii_lowercase();
    assert!(text.starts_with("http/1.1 200"), "{text}");
    // Had the connection counted as idle, the proxy would have begun closing it mid-request
    // (the answer then says `connection: close` and no second request is read).
    assert!(!text.contains("connection: close"), "{text}");
    tcp.write_all(b"GET /status/204 HTTP/1.1\r\nHost: server.default:8080\r\n\r\n")
        .await
        .unwrap();
    let mut head = [0u8; 12];
    tcp.read_exact(&mut head).await.unwrap();
    assert_eq!(
        &head, b"HTTP/1.1 204",
        "the connection is still open for the next request"
    );
    assert!(wait_closed(&mut tcp).await, "then closed once idle");
    assert_eq!(metric(p.metrics, IDLE_CLOSED).await, 1.0);
}
