//! Behaviour-test harness: real sockets on loopback, a mesh CA, two proxies and test apps.
//!
//! Topology: test client → proxy A (explicit outbound listener standing in for iptables, with a
//! fixed destination) → mTLS → proxy B inbound → app on 127.0.0.1.

#![allow(dead_code)]

pub mod process;
pub mod tcp;

use bytes::Bytes;
use http_body_util::{BodyExt, Full};
use hyper::body::Incoming;
use hyper::{Request, Response};
use hyper_util::rt::{TokioExecutor, TokioIo};
use sinew_proto::config::v1 as pb;
use sinew_proxy::app::Proxy;
use sinew_proxy::config::Config;
use sinew_proxy::testing::{TempDir, TestCa, WorkloadFiles};
use std::convert::Infallible;
use std::net::SocketAddr;
use std::sync::{Arc, Mutex};
use tokio::net::TcpListener;
use tokio::sync::oneshot;
use tokio::task::JoinHandle;

pub const CLIENT_ID: &str = "spiffe://cluster.local/ns/default/sa/client";
pub const SERVER_ID: &str = "spiffe://cluster.local/ns/default/sa/server";
/// The service address clients "dial" (never bound: the outbound listener's fixed destination).
pub const SERVICE_ADDR: &str = "127.0.0.2:8080";

pub struct RunningProxy {
    pub bound: Vec<(String, SocketAddr)>,
    pub admin: SocketAddr,
    pub health: SocketAddr,
    pub metrics: SocketAddr,
    stop: Option<oneshot::Sender<()>>,
    pub task: JoinHandle<anyhow::Result<()>>,
}

impl RunningProxy {
    pub fn addr(&self, name: &str) -> SocketAddr {
        self.bound
            .iter()
            .find(|(n, _)| n == name)
            .expect("listener")
            .1
    }

    /// Starts draining (like SIGTERM) and returns the task to await.
    pub fn stop(&mut self) -> &mut JoinHandle<anyhow::Result<()>> {
        if let Some(s) = self.stop.take() {
            let _ = s.send(());
        }
        &mut self.task
    }
}

impl Drop for RunningProxy {
    fn drop(&mut self) {
        self.task.abort();
    }
}

pub async fn start_proxy(msg: pb::ProxyConfig) -> RunningProxy {
    let config = Config::from_proto(msg).expect("valid test config");
    let proxy = Proxy::bind(config, None).await.expect("proxy binds");
    let bound = proxy.bound.clone();
    let [admin, health, metrics] = proxy.admin_addrs;
    let (tx, rx) = oneshot::channel();
    let task = tokio::spawn(proxy.run(async move {
        let _ = rx.await;
    }));
    RunningProxy {
        bound,
        admin,
        health,
        metrics,
        stop: Some(tx),
        task,
    }
}

fn tls(f: &WorkloadFiles) -> Option<pb::TlsFiles> {
    Some(pb::TlsFiles {
        cert_file: f.cert.display().to_string(),
        key_file: f.key.display().to_string(),
        trust_bundle_file: f.bundle.display().to_string(),
    })
}

/// An outbound listener `name` on a free loopback port whose connections all go to
/// [`SERVICE_ADDR`].
pub fn outbound_listener(name: &str) -> pb::Listener {
    pb::Listener {
        name: name.into(),
        address: "127.0.0.1:0".into(),
        direction: pb::Direction::Outbound as i32,
        fixed_destination: SERVICE_ADDR.into(),
        app_port: 0,
    }
}

pub fn local_admin() -> Option<pb::AdminConfig> {
    Some(pb::AdminConfig {
        admin_address: "127.0.0.1:0".into(),
        health_address: "127.0.0.1:0".into(),
        metrics_address: "127.0.0.1:0".into(),
    })
}

/// A client proxy (A) and a server proxy (B) in front of the app at `app_port`.
pub struct Mesh {
    pub dir: TempDir,
    pub ca: TestCa,
    pub a: RunningProxy,
    pub b: RunningProxy,
}

pub struct MeshOptions {
    pub app_port: u16,
    pub strict: bool,
    /// Identity proxy A expects of B (defaults to B's real one).
    pub expect: String,
    /// Make B's certificate come from a different CA.
    pub b_untrusted: bool,
    pub protocol: pb::Protocol,
    pub drain: std::time::Duration,
    pub max_header_bytes: u32,
    pub header_read: std::time::Duration,
    /// B's address, as a pod IP: its inbound listener binds it and A dials it.
    pub pod_ip: &'static str,
    /// How B's app port is declared (B's `inboundPorts`).
    pub app_protocol: pb::Protocol,
    /// A's policy for the service (a DestinationRule, resolved).
    pub traffic_policy: Option<pb::TrafficPolicy>,
    /// Each proxy's `telemetry` section.
    pub a_telemetry: Option<pb::Telemetry>,
    pub b_telemetry: Option<pb::Telemetry>,
    /// The workload A's config names for B's endpoint.
    pub endpoint_workload: Option<pb::Workload>,
    /// B's AuthorizationPolicies and per-port inbound modes.
    pub b_authorization: Option<pb::Authorization>,
    pub b_port_modes: std::collections::BTreeMap<u32, i32>,
}

impl MeshOptions {
    pub fn new(app_port: u16) -> Self {
        Self {
            app_port,
            strict: false,
            expect: SERVER_ID.into(),
            b_untrusted: false,
            protocol: pb::Protocol::Detect,
            drain: std::time::Duration::from_secs(5),
            max_header_bytes: 0,
            header_read: std::time::Duration::from_secs(10),
            pod_ip: "127.0.0.1",
            app_protocol: pb::Protocol::Detect,
            traffic_policy: None,
            a_telemetry: None,
            b_telemetry: None,
            endpoint_workload: None,
            b_authorization: None,
            b_port_modes: Default::default(),
        }
    }
}

impl Mesh {
    pub async fn start(app_port: u16) -> Self {
        Self::with(MeshOptions::new(app_port)).await
    }

    pub async fn with(o: MeshOptions) -> Self {
        let dir = TempDir::new("mesh");
        let ca = TestCa::new("mesh");
        let a_dir = dir.path().join("a");
        let b_dir = dir.path().join("b");
        std::fs::create_dir_all(&a_dir).unwrap();
        std::fs::create_dir_all(&b_dir).unwrap();
        let a_files = ca.write_workload(&a_dir, "client", CLIENT_ID);
        let other = TestCa::new("other");
        let b_files = if o.b_untrusted {
            other.write_workload(&b_dir, "server", SERVER_ID)
        } else {
            ca.write_workload(&b_dir, "server", SERVER_ID)
        };
        let timeouts = Some(pb::Timeouts {
            drain: Some(pbjson_types::Duration {
                seconds: o.drain.as_secs() as i64,
                nanos: o.drain.subsec_nanos() as i32,
            }),
            protocol_detection: Some(pbjson_types::Duration {
                seconds: 0,
                nanos: 300_000_000,
            }),
            header_read: Some(pbjson_types::Duration {
                seconds: o.header_read.as_secs() as i64,
                nanos: o.header_read.subsec_nanos() as i32,
            }),
            ..Default::default()
        });
        let limits = Some(pb::Limits {
            max_header_bytes: o.max_header_bytes,
            max_headers: 0,
            ..Default::default()
        });
        let b = start_proxy(pb::ProxyConfig {
            tls: tls(&b_files),
            inbound_mode: if o.strict {
                pb::InboundMode::Strict
            } else {
                pb::InboundMode::Permissive
            } as i32,
            listeners: vec![pb::Listener {
                name: "inbound".into(),
                address: format!("{}:0", o.pod_ip),
                direction: pb::Direction::Inbound as i32,
                fixed_destination: String::new(),
                app_port: o.app_port as u32,
            }],
            admin: local_admin(),
            timeouts,
            limits,
            inbound_ports: vec![pb::InboundPort {
                port: o.app_port as u32,
                protocol: o.app_protocol as i32,
                ..Default::default()
            }],
            telemetry: o.b_telemetry.clone(),
            authorization: o.b_authorization.clone(),
            port_inbound_modes: o.b_port_modes.clone(),
            ..Default::default()
        })
        .await;
        let b_inbound = b.addr("inbound");
        let a = start_proxy(pb::ProxyConfig {
            tls: tls(&a_files),
            listeners: vec![outbound_listener("outbound")],
            services: vec![pb::Service {
                name: "server.default.svc.cluster.local".into(),
                addresses: vec![SERVICE_ADDR.into()],
                protocol: o.protocol as i32,
                endpoints: vec![pb::Endpoint {
                    address: format!("{}:{}", o.pod_ip, o.app_port),
                    identity: o.expect.clone(),
                    mesh_port: b_inbound.port() as u32,
                    labels: Default::default(),
                    workload: o.endpoint_workload.clone(),
                }],
                traffic_policy: o.traffic_policy.clone(),
                ..Default::default()
            }],
            admin: local_admin(),
            timeouts,
            limits,
            telemetry: o.a_telemetry.clone(),
            ..Default::default()
        })
        .await;
        Self { dir, ca, a, b }
    }

    pub fn outbound(&self) -> SocketAddr {
        self.a.addr("outbound")
    }

    pub fn inbound(&self) -> SocketAddr {
        self.b.addr("inbound")
    }
}

/// A test app: echoes request bodies (streamed, trailers included) and reports what it saw in
/// `x-seen-*` response headers. Serves HTTP/1.1 and HTTP/2 (prior knowledge) on one port.
pub async fn start_echo_app() -> (SocketAddr, JoinHandle<()>) {
    let (addr, task, _) = start_recording_echo_app().await;
    (addr, task)
}

/// Every request an app received, as "METHOD path", in order of arrival.
pub type Seen = Arc<Mutex<Vec<String>>>;

/// [`start_echo_app`], also recording every request that reaches it (to prove what did not).
pub async fn start_recording_echo_app() -> (SocketAddr, JoinHandle<()>, Seen) {
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let seen = Seen::default();
    let counter = seen.clone();
    let task = tokio::spawn(async move {
        loop {
            let Ok((tcp, _)) = listener.accept().await else {
                continue;
            };
            let counter = counter.clone();
            tokio::spawn(async move {
                let svc = hyper::service::service_fn(move |req: Request<Incoming>| {
                    let line = format!("{} {}", req.method(), req.uri().path());
                    counter.lock().unwrap().push(line);
                    echo(req)
                });
                let _ = hyper_util::server::conn::auto::Builder::new(TokioExecutor::new())
                    .serve_connection_with_upgrades(TokioIo::new(tcp), svc)
                    .await;
            });
        }
    });
    (addr, task, seen)
}

type EchoBody = http_body_util::Either<Incoming, Full<Bytes>>;

async fn echo(mut req: Request<Incoming>) -> Result<Response<EchoBody>, Infallible> {
    let mut rsp = Response::builder();
    let seen = |name: &str| {
        req.headers()
            .get(name)
            .map(|v| v.to_str().unwrap_or("?").to_string())
            .unwrap_or_default()
    };
    rsp = rsp
        .header("x-seen-xfcc", seen("x-forwarded-client-cert"))
        .header("x-seen-version", format!("{:?}", req.version()))
        .header(
            "x-seen-host",
            req.uri()
                .authority()
                .map(|a| a.to_string())
                .unwrap_or_else(|| seen("host")),
        )
        .header(
            "x-seen-sinew",
            format!(
                "{}{}{}",
                seen("sinew-orig-proto"),
                seen("sinew-dst-port"),
                seen("x-sinew-peer")
            ),
        )
        .header("x-seen-path", req.uri().path().to_string())
        .header("x-seen-expect", seen("expect"));
    if let Some(t) = req.headers().get("trailer") {
        // Declared trailers are echoed back (HTTP/1 servers only send declared ones).
        rsp = rsp.header("trailer", t.clone());
    }
    let path = req.uri().path().to_string();
    if req.headers().contains_key("upgrade") {
        let on = hyper::upgrade::on(&mut req);
        tokio::spawn(async move {
            if let Ok(up) = on.await {
                let mut io = TokioIo::new(up);
                let (mut r, mut w) = tokio::io::split(&mut io);
                let _ = tokio::io::copy(&mut r, &mut w).await;
            }
        });
        return Ok(rsp
            .status(101)
            .header("connection", "upgrade")
            .header("upgrade", "echo")
            .body(http_body_util::Either::Right(Full::default()))
            .unwrap());
    }
    if let Some(code) = path.strip_prefix("/status/") {
        let code: u16 = code.parse().unwrap_or(500);
        return Ok(rsp
            .status(code)
            .body(http_body_util::Either::Right(Full::default()))
            .unwrap());
    }
    if let Some(ms) = path.strip_prefix("/slow/") {
        let ms: u64 = ms.parse().unwrap_or(100);
        tokio::time::sleep(std::time::Duration::from_millis(ms)).await;
        return Ok(rsp
            .body(http_body_util::Either::Right(Full::from("slow done")))
            .unwrap());
    }
    if path == "/count" {
        // Drains the body and answers with its size: streaming without buffering on our side.
        let mut n: u64 = 0;
        let mut body = req.into_body();
        while let Some(frame) = body.frame().await {
            if let Ok(d) = frame.unwrap().into_data() {
                n += d.len() as u64;
            }
        }
        return Ok(rsp
            .body(http_body_util::Either::Right(Full::from(n.to_string())))
            .unwrap());
    }
    Ok(rsp
        .body(http_body_util::Either::Left(req.into_body()))
        .unwrap())
}

/// A TCP echo server.
pub async fn start_tcp_echo() -> (SocketAddr, JoinHandle<()>) {
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let task = tokio::spawn(async move {
        loop {
            let Ok((mut tcp, _)) = listener.accept().await else {
                continue;
            };
            tokio::spawn(async move {
                let (mut r, mut w) = tcp.split();
                let _ = tokio::io::copy(&mut r, &mut w).await;
            });
        }
    });
    (addr, task)
}

/// HTTP/1.1 client connection to `addr`.
pub async fn h1_client(addr: SocketAddr) -> hyper::client::conn::http1::SendRequest<Full<Bytes>> {
    let tcp = tokio::net::TcpStream::connect(addr).await.unwrap();
    let (send, conn) = hyper::client::conn::http1::handshake(TokioIo::new(tcp))
        .await
        .unwrap();
    tokio::spawn(conn.with_upgrades());
    send
}

/// HTTP/2 prior-knowledge client connection to `addr`.
pub async fn h2_client(addr: SocketAddr) -> hyper::client::conn::http2::SendRequest<Full<Bytes>> {
    let tcp = tokio::net::TcpStream::connect(addr).await.unwrap();
    let (send, conn) =
        hyper::client::conn::http2::handshake(TokioExecutor::new(), TokioIo::new(tcp))
            .await
            .unwrap();
    tokio::spawn(conn);
    send
}

pub fn get(path: &str) -> Request<Full<Bytes>> {
    Request::builder()
        .uri(path)
        .header("host", "server.default:8080")
        .body(Full::default())
        .unwrap()
}

pub async fn body_string(rsp: Response<Incoming>) -> String {
    String::from_utf8(rsp.into_body().collect().await.unwrap().to_bytes().to_vec()).unwrap()
}

/// Sends raw bytes to `addr` and reads until the peer closes; a peer that has not closed within
/// 10 s fails the test (every caller expects the proxy to close).
pub async fn raw_exchange(addr: SocketAddr, bytes: &[u8]) -> String {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let mut tcp = tokio::net::TcpStream::connect(addr).await.unwrap();
    tcp.write_all(bytes).await.unwrap();
    let mut out = Vec::new();
    let read = tokio::time::timeout(
        std::time::Duration::from_secs(10),
        tcp.read_to_end(&mut out),
    );
    match read.await {
        Ok(Ok(_)) => {}
        // A reset after the answer is still a close; what was read before it counts.
        Ok(Err(e)) if e.kind() == std::io::ErrorKind::ConnectionReset => {}
        Ok(Err(e)) => panic!("reading the answer: {e}"),
        Err(_) => panic!(
            "the peer did not close within 10 s; read so far: {}",
            String::from_utf8_lossy(&out)
        ),
    }
    String::from_utf8_lossy(&out).into_owned()
}

/// Reads a counter or gauge value from a Prometheus exposition. A series that is not exposed
/// fails the test, so a renamed metric or label cannot pass as a zero.
pub async fn metric(addr: SocketAddr, series: &str) -> f64 {
    let mut c = h1_client(addr).await;
    let rsp = c.send_request(get("/metrics")).await.unwrap();
    let text = body_string(rsp).await;
    text.lines()
        .find_map(|l| l.strip_prefix(series).and_then(|v| v.trim().parse().ok()))
        .unwrap_or_else(|| panic!("no series {series} in the exposition:\n{text}"))
}

/// The Prometheus exposition at Istio's path.
pub async fn stats(addr: SocketAddr) -> String {
    let mut c = h1_client(addr).await;
    let rsp = c.send_request(get("/stats/prometheus")).await.unwrap();
    assert_eq!(rsp.status(), 200);
    body_string(rsp).await
}

/// The value of the series of `name` whose labels include every one of `labels`, if exposed.
pub fn series(text: &str, name: &str, labels: &[&str]) -> Option<f64> {
    text.lines()
        .filter(|l| l.starts_with(&format!("{name}{{")))
        .find(|l| labels.iter().all(|x| l.contains(x)))
        .and_then(|l| l.rsplit(' ').next()?.parse().ok())
}

/// Waits (bounded) until `f` holds, and fails the test if it never does.
pub async fn eventually<F, Fut>(what: &str, mut f: F)
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = bool>,
{
    let deadline = tokio::time::Instant::now() + std::time::Duration::from_secs(10);
    while tokio::time::Instant::now() < deadline {
        if f().await {
            return;
        }
        tokio::time::sleep(std::time::Duration::from_millis(10)).await;
    }
    panic!("timed out waiting for {what}");
}
