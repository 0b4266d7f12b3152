//! In-process proxies and a test app for end-to-end tests: start a sinew-proxy from a config
//! message and wait until it is ready, an app that echoes the client certificate header it saw,
//! and plain HTTP/1.1 requests.

use sinew_proto::config::v1 as cfg;
use sinew_proxy::app::Proxy;
use sinew_proxy::config::Config;
use std::net::SocketAddr;
use std::time::Duration;

use super::eventually;

pub async fn http_get(addr: SocketAddr, path: &str) -> String {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let Ok(mut tcp) = tokio::net::TcpStream::connect(addr).await else {
        return String::new();
    };
    let _ = tcp
        .write_all(
            format!("GET {path} HTTP/1.1\r\nHost: s\r\nConnection: close\r\n\r\n").as_bytes(),
        )
        .await;
    let mut out = String::new();
    let _ = tokio::time::timeout(Duration::from_secs(5), tcp.read_to_string(&mut out)).await;
    out
}

/// A proxy's control-plane settings for a pod of `shop` whose token is in `token_file`.
pub fn control_plane_config(
    grpc: SocketAddr,
    root_cert_file: &std::path::Path,
    token_file: &std::path::Path,
    pod: &str,
) -> cfg::ControlPlane {
    cfg::ControlPlane {
        address: grpc.to_string(),
        root_cert_file: root_cert_file.display().to_string(),
        token_file: token_file.display().to_string(),
        pod: pod.into(),
        namespace: "shop".into(),
        resolve_timeout: Some(pbjson_types::Duration {
            seconds: 5,
            nanos: 0,
        }),
        ..Default::default()
    }
}

/// A pod's inbound proxy on `pod_ip:15006`, ready.
pub async fn inbound_proxy(
    control_plane: cfg::ControlPlane,
    pod_ip: std::net::IpAddr,
) -> StartedProxy {
    start_proxy(cfg::ProxyConfig {
        control_plane: Some(control_plane),
        listeners: vec![cfg::Listener {
            name: "inbound".into(),
            address: format!("{pod_ip}:15006"),
            direction: cfg::Direction::Inbound as i32,
            ..Default::default()
        }],
        admin: admin(),
        ..Default::default()
    })
    .await
}

/// A client's outbound proxy on a loopback port that sends everything to `destination`
/// (`vip:port`), ready; its listener is `addrs[0]`.
pub async fn outbound_proxy(control_plane: cfg::ControlPlane, destination: &str) -> StartedProxy {
    start_proxy(cfg::ProxyConfig {
        control_plane: Some(control_plane),
        listeners: vec![cfg::Listener {
            name: "outbound".into(),
            address: "127.0.0.1:0".into(),
            direction: cfg::Direction::Outbound as i32,
            fixed_destination: destination.into(),
            ..Default::default()
        }],
        admin: admin(),
        ..Default::default()
    })
    .await
}

pub fn admin() -> Option<cfg::AdminConfig> {
    Some(cfg::AdminConfig {
        admin_address: "127.0.0.1:0".into(),
        health_address: "127.0.0.1:0".into(),
        metrics_address: "127.0.0.1:0".into(),
    })
}

pub struct StartedProxy {
    pub addrs: Vec<(String, SocketAddr)>,
    pub health: SocketAddr,
    pub admin: SocketAddr,
    pub metrics: SocketAddr,
    _task: tokio::task::JoinHandle<anyhow::Result<()>>,
}

pub async fn start_proxy(msg: cfg::ProxyConfig) -> StartedProxy {
    let proxy = Proxy::bind(Config::from_proto(msg).unwrap(), None)
        .await
        .unwrap();
    let addrs = proxy.bound.clone();
    let [admin, health, metrics] = proxy.admin_addrs;
    let task = tokio::spawn(proxy.run(std::future::pending()));
    let p = StartedProxy {
        addrs,
        health,
        admin,
        metrics,
        _task: task,
    };
    eventually(
        "proxy ready (certificate + first config)",
        Duration::from_secs(20),
        || async {
            http_get(p.health, "/healthz/ready")
                .await
                .starts_with("HTTP/1.1 200")
        },
    )
    .await;
    p
}

pub async fn echo_app() -> SocketAddr {
    // Every address: the inbound proxy delivers to the pod IP (a 127.127.x.x address here).
    let l = tokio::net::TcpListener::bind("0.0.0.0:0").await.unwrap();
    let addr = l.local_addr().unwrap();
    tokio::spawn(async move {
        loop {
            let Ok((mut tcp, _)) = l.accept().await else {
                continue;
            };
            tokio::spawn(async move {
                use tokio::io::{AsyncReadExt, AsyncWriteExt};
                let mut buf = vec![0u8; 8192];
                loop {
                    let Ok(n) = tcp.read(&mut buf).await else {
                        return;
                    };
                    if n == 0 {
                        return;
                    }
                    let req = String::from_utf8_lossy(&buf[..n]).to_string();
                    let xfcc = req
                        .lines()
                        .find(|l| {
                            l.to_ascii_lowercase()
                                .starts_with("x-forwarded-client-cert:")
                        })
                        .unwrap_or("none")
                        .to_string();
                    let body = format!("app saw {xfcc}");
                    let rsp = format!(
                        "HTTP/1.1 200 OK\r\ncontent-length: {}\r\n\r\n{body}",
                        body.len()
                    );
                    if tcp.write_all(rsp.as_bytes()).await.is_err() {
                        return;
                    }
                }
            });
        }
    });
    addr
}

/// One HTTP/1.1 request on a fresh connection through `outbound`.
pub async fn request(outbound: SocketAddr) -> Result<String, String> {
    let out = tokio::time::timeout(Duration::from_secs(10), http_get(outbound, "/"))
        .await
        .map_err(|_| "timeout".to_string())?;
    if out.starts_with("HTTP/1.1 200") {
        Ok(out)
    } else {
        Err(out)
    }
}
