//! The app-health prober as the kubelet reaches it: on a running proxy's metrics port, beside
//! `/metrics`.

mod support;

use sinew_proto::config::v1 as pb;
use sinew_proxy::app::Proxy;
use sinew_proxy::app_health::AppHealth;
use sinew_proxy::app_health::spec::Probers;
use sinew_proxy::config::Config;
use std::net::SocketAddr;
use tokio::io::{AsyncReadExt as _, AsyncWriteExt as _};
use tokio::net::{TcpListener, TcpStream};

/// A proxy on loopback ports only; with `probers`, it answers them.
async fn proxy(probers: Option<Probers>) -> (SocketAddr, tokio::task::JoinHandle<()>) {
    let msg = pb::ProxyConfig {
        listeners: vec![pb::Listener {
            address: "127.0.0.1:0".into(),
            direction: pb::Direction::Inbound as i32,
            app_port: 8080,
            ..Default::default()
        }],
        admin: support::local_admin(),
        ..Default::default()
    };
    let mut proxy = Proxy::bind(Config::from_proto(msg).expect("valid"), None)
        .await
        .expect("binds");
    if let Some(p) = probers {
        proxy = proxy.with_app_health(AppHealth::new(p, None));
    }
    let metrics = proxy.admin_addrs[2];
    let task = tokio::spawn(async move {
        let _ = proxy.run(std::future::pending()).await;
    });
    (metrics, task)
}

/// `GET path` as the kubelet sends it: (status, body).
async fn kubelet_get(addr: SocketAddr, path: &str) -> (u16, String) {
    let mut tcp = TcpStream::connect(addr).await.expect("connects");
    let req = format!(
        "GET {path} HTTP/1.1\r\nHost: {addr}\r\nUser-Agent: kube-probe/1.33\r\nConnection: close\r\n\r\n"
    );
    tcp.write_all(req.as_bytes()).await.unwrap();
    let mut rsp = String::new();
    tcp.read_to_string(&mut rsp).await.unwrap();
    let status = rsp
        .split(' ')
        .nth(1)
        .and_then(|s| s.parse().ok())
        .unwrap_or_else(|| panic!("not an HTTP answer: {rsp:?}"));
    let body = rsp
        .split_once("\r\n\r\n")
        .map_or("", |(_, b)| b)
        .to_string();
    (status, body)
}

#[tokio::test]
async fn the_metrics_port_answers_the_apps_probes_and_its_metrics() {
    let app = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let up = app.local_addr().unwrap().port();
    let down = {
        let l = TcpListener::bind("127.0.0.1:0").await.unwrap();
        l.local_addr().unwrap().port()
    };
    let probers = Probers::parse(&format!(
        r#"{{"/app-health/web/livez": {{"tcpSocket": {{"port": {up}}}}},
            "/app-health/web/readyz": {{"tcpSocket": {{"port": {down}}}}}}}"#
    ))
    .unwrap();
    let (metrics, task) = proxy(Some(probers)).await;
    assert_eq!(kubelet_get(metrics, "/app-health/web/livez").await.0, 200);
    let (status, body) = kubelet_get(metrics, "/app-health/web/readyz").await;
    assert_eq!(status, 503);
    assert!(body.contains(&format!("127.0.0.1:{down}")), "{body}");
    assert_eq!(kubelet_get(metrics, "/app-health/db/livez").await.0, 404);
    let (status, body) = kubelet_get(metrics, "/metrics").await;
    assert_eq!(status, 200);
    assert!(body.contains("sinew_ready"), "{body}");
    task.abort();
}

#[tokio::test]
async fn without_probes_every_app_health_path_is_404() {
    let (metrics, task) = proxy(None).await;
    assert_eq!(kubelet_get(metrics, "/app-health/web/livez").await.0, 404);
    assert_eq!(kubelet_get(metrics, "/metrics").await.0, 200);
    task.abort();
}
