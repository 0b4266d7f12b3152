//! In-process control plane on loopback with a registry directory, plus clients.

#![allow(dead_code)]

pub mod fake_apiserver;
pub mod proxies;

use sinew_control_plane::app::{ControlPlane, Options, Source, TRUST_BUNDLE_FILE};
use sinew_control_plane::auth::Caller;
use sinew_proxy::testing::TempDir;
use std::net::{IpAddr, Ipv4Addr, SocketAddr};
use std::path::PathBuf;
use std::sync::Arc;
use std::sync::atomic::{AtomicU32, Ordering};
use std::time::Duration;

pub struct Running {
    pub dir: Arc<TempDir>,
    pub grpc: SocketAddr,
    pub monitoring: SocketAddr,
    pub tokens: Arc<sinew_control_plane::auth::LocalTokens>,
    pub registry: PathBuf,
    pub state: PathBuf,
    pub assignments: PathBuf,
    /// Publishes a trust bundle to every connected proxy.
    pub bundle: tokio::sync::watch::Sender<Arc<sinew_control_plane::ca::TrustBundle>>,
    pub task: tokio::task::JoinHandle<()>,
}

impl Drop for Running {
    fn drop(&mut self) {
        self.task.abort();
    }
}

/// A loopback address unique to this test process and call (127.x.y.z), so tests can use fixed
/// ports such as 15006 without colliding.
pub fn unique_ip() -> IpAddr {
    static N: AtomicU32 = AtomicU32::new(1);
    let n = N.fetch_add(1, Ordering::Relaxed);
    let pid = std::process::id();
    IpAddr::V4(Ipv4Addr::new(
        127,
        100 + (pid % 100) as u8,
        (pid / 100 % 250) as u8,
        (n % 250) as u8 + 2,
    ))
}

pub const MESH_YAML: &str = r#"
apiVersion: v1
kind: Namespace
metadata: {name: shop, labels: {sinew-injection: enabled}}
---
apiVersion: v1
kind: ServiceAccount
metadata: {name: web, namespace: shop}
---
apiVersion: v1
kind: ServiceAccount
metadata: {name: client, namespace: shop}
---
apiVersion: v1
kind: Service
metadata: {name: web, namespace: shop}
spec:
  selector: {app: web}
  ports: [{name: http, port: 8080, targetPort: APP_PORT}]
---
apiVersion: v1
kind: Service
metadata: {name: other, namespace: shop}
spec:
  selector: {app: other}
  ports: [{name: http, port: 9090}]
---
apiVersion: v1
kind: Pod
metadata: {name: web-0, namespace: shop, labels: {app: web}}
spec:
  serviceAccountName: web
  containers: [{name: app, image: ignored}]
"#;

pub fn assignments_yaml(web_ip: IpAddr, web_vip: IpAddr, other_vip: IpAddr) -> String {
    format!(
        "pods:\n  - {{namespace: shop, name: web-0, ip: {web_ip}}}\nservices:\n  - {{namespace: shop, name: web, vip: {web_vip}}}\n  - {{namespace: shop, name: other, vip: {other_vip}}}\n"
    )
}

/// The service and pod ranges test control planes are started with (local mode's).
pub const MESH_RANGES: [&str; 2] = ["198.19.0.0/16", "198.18.0.0/16"];

pub async fn start(dir: Arc<TempDir>, yaml: &str, assignments: &str, grpc: SocketAddr) -> Running {
    let registry = dir.path().join("registry");
    let state = dir.path().join("state");
    std::fs::create_dir_all(&registry).unwrap();
    std::fs::write(registry.join("mesh.yaml"), yaml).unwrap();
    let assignments_file = dir.path().join("assignments.yaml");
    std::fs::write(&assignments_file, assignments).unwrap();
    let cp = ControlPlane::start(Options {
        source: Source::Files {
            registry: registry.clone(),
            assignments: Some(assignments_file.clone()),
            state_dir: state.clone(),
            plugin_ca: None,
        },
        trust_domain: "cluster.local".into(),
        listen: grpc,
        monitoring: "127.0.0.1:0".parse().unwrap(),
        dns_names: vec![],
        mesh_ranges: MESH_RANGES.iter().map(|r| r.parse().unwrap()).collect(),
        root_namespace: "sinew-system".into(),
        telemetry: Default::default(),
        webhook: None,
        injector: sinew_injector::Settings::default(),
    })
    .await
    .expect("control plane starts");
    let (grpc, monitoring) = (cp.grpc_addr, cp.monitoring_addr);
    let tokens = cp.tokens.clone().expect("local mode mints tokens");
    let bundle = cp.bundle.clone();
    let task = tokio::spawn(cp.serve());
    Running {
        dir,
        grpc,
        monitoring,
        tokens,
        registry,
        state,
        assignments: assignments_file,
        bundle,
        task,
    }
}

impl Running {
    pub fn token(&self, ns: &str, sa: &str) -> String {
        self.tokens.mint(
            &Caller {
                namespace: ns.into(),
                service_account: sa.into(),
                pod: Some(format!("{sa}-0")),
            },
            Duration::from_secs(3600),
        )
    }

    /// Writes a token file and returns the proxy-side control-plane config for it.
    pub fn proxy_config(&self, ns: &str, sa: &str) -> sinew_proto::config::v1::ControlPlane {
        let token_file = self.dir.path().join(format!("{ns}-{sa}.token"));
        std::fs::write(&token_file, self.token(ns, sa)).unwrap();
        sinew_proto::config::v1::ControlPlane {
            address: self.grpc.to_string(),
            root_cert_file: self.state.join(TRUST_BUNDLE_FILE).display().to_string(),
            token_file: token_file.display().to_string(),
            pod: format!("{sa}-0"),
            namespace: ns.into(),
            ..Default::default()
        }
    }

    pub fn channel(&self) -> sinew_proxy::control::Channel {
        let cp = sinew_proxy::config::Config::from_proto(sinew_proto::config::v1::ProxyConfig {
            control_plane: Some(self.proxy_config("shop", "client")),
            ..Default::default()
        })
        .unwrap()
        .control_plane
        .unwrap();
        sinew_proxy::control::Channel::new(&cp).unwrap()
    }

    /// GET on the monitoring port.
    pub async fn monitoring(&self, path: &str) -> String {
        use tokio::io::{AsyncReadExt, AsyncWriteExt};
        let mut tcp = tokio::net::TcpStream::connect(self.monitoring)
            .await
            .unwrap();
        tcp.write_all(
            format!("GET {path} HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n").as_bytes(),
        )
        .await
        .unwrap();
        let mut out = String::new();
        tcp.read_to_string(&mut out).await.unwrap();
        out
    }
}

/// Waits (bounded) until `f` holds.
pub async fn eventually<F, Fut>(what: &str, limit: Duration, mut f: F)
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = bool>,
{
    let deadline = tokio::time::Instant::now() + limit;
    while tokio::time::Instant::now() < deadline {
        if f().await {
            return;
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    panic!("timed out waiting for {what}");
}
