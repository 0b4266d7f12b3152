//! Proxies that get their certificates and config from a running control plane: mesh traffic,
//! hot config changes, and a control-plane restart under traffic.

mod support;

use sinew_proto::config::v1 as cfg;
use sinew_proxy::testing::TempDir;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;
use support::proxies::*;
use support::*;

/// A control plane on its own runtime and thread, so "killing" it really closes every connection.
struct IsolatedCp {
    stop: Option<tokio::sync::oneshot::Sender<()>>,
    thread: Option<std::thread::JoinHandle<()>>,
}

impl IsolatedCp {
    fn start(
        dir: Arc<TempDir>,
        yaml: String,
        assignments: String,
        grpc: SocketAddr,
    ) -> (Self, Running2) {
        let (info_tx, info_rx) = std::sync::mpsc::channel();
        let (stop_tx, stop_rx) = tokio::sync::oneshot::channel::<()>();
        let thread = std::thread::spawn(move || {
            let rt = tokio::runtime::Builder::new_multi_thread()
                .worker_threads(1)
                .enable_all()
                .build()
                .unwrap();
            rt.block_on(async move {
                let cp = start(dir, &yaml, &assignments, grpc).await;
                info_tx
                    .send(Running2 {
                        grpc: cp.grpc,
                        monitoring: cp.monitoring,
                        state: cp.state.clone(),
                        registry: cp.registry.clone(),
                        tokens: cp.tokens.clone(),
                        bundle: cp.bundle.clone(),
                    })
                    .unwrap();
                let _ = stop_rx.await;
                drop(cp);
            });
            rt.shutdown_background();
        });
        let info = info_rx
            .recv_timeout(Duration::from_secs(30))
            .expect("control plane started");
        (
            Self {
                stop: Some(stop_tx),
                thread: Some(thread),
            },
            info,
        )
    }

    fn kill(&mut self) {
        if let Some(s) = self.stop.take() {
            let _ = s.send(());
        }
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
    }
}

impl Drop for IsolatedCp {
    fn drop(&mut self) {
        self.kill();
    }
}

#[derive(Clone)]
struct Running2 {
    grpc: SocketAddr,
    monitoring: SocketAddr,
    state: std::path::PathBuf,
    registry: std::path::PathBuf,
    tokens: Arc<sinew_control_plane::auth::LocalTokens>,
    bundle: tokio::sync::watch::Sender<Arc<sinew_control_plane::ca::TrustBundle>>,
}

impl Running2 {
    fn proxy_cp(&self, dir: &TempDir, sa: &str) -> cfg::ControlPlane {
        let token_file = dir.path().join(format!("{sa}.token"));
        let token = self.tokens.mint(
            &sinew_control_plane::auth::Caller {
                namespace: "shop".into(),
                service_account: sa.into(),
                pod: Some(format!("{sa}-0")),
            },
            Duration::from_secs(3600),
        );
        std::fs::write(&token_file, token).unwrap();
        control_plane_config(
            self.grpc,
            &self.state.join(sinew_control_plane::app::TRUST_BUNDLE_FILE),
            &token_file,
            &format!("{sa}-0"),
        )
    }

    async fn get(&self, path: &str) -> String {
        http_get(self.monitoring, path).await
    }
}

struct Mesh {
    _dir: Arc<TempDir>,
    cp: IsolatedCp,
    info: Running2,
    outbound: SocketAddr,
    a: StartedProxy,
    _b: StartedProxy,
    yaml: String,
    assignments: String,
}

async fn mesh() -> Mesh {
    let dir = Arc::new(TempDir::new("cpmesh"));
    let app = echo_app().await;
    let (web_ip, web_vip, other_vip) = (unique_ip(), unique_ip(), unique_ip());
    let yaml = MESH_YAML.replace("APP_PORT", &app.port().to_string());
    let assignments = assignments_yaml(web_ip, web_vip, other_vip);
    let (cp, info) = IsolatedCp::start(
        dir.clone(),
        yaml.clone(),
        assignments.clone(),
        "127.0.0.1:0".parse().unwrap(),
    );
    let b = inbound_proxy(info.proxy_cp(&dir, "web"), web_ip).await;
    let a = outbound_proxy(info.proxy_cp(&dir, "client"), &format!("{web_vip}:8080")).await;
    let outbound = a.addrs[0].1;
    Mesh {
        _dir: dir,
        cp,
        info,
        outbound,
        a,
        _b: b,
        yaml,
        assignments,
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn proxies_get_certificates_and_config_then_carry_mesh_traffic() {
    let m = mesh().await;
    let out = request(m.outbound).await.unwrap();
    assert!(
        out.contains("URI=spiffe://cluster.local/ns/shop/sa/client"),
        "{out}"
    );
    assert!(
        out.contains("By=spiffe://cluster.local/ns/shop/sa/web"),
        "{out}"
    );
    let dump = http_get(m.a.admin, "/config_dump").await;
    assert!(
        dump.contains("\"identity\": \"spiffe://cluster.local/ns/shop/sa/client\""),
        "{dump}"
    );
    assert!(dump.contains("certificateNotAfterUnix"), "{dump}");
    assert!(dump.contains("resourceVersions"), "{dump}");
    // Only what it talked to: the web service, not the other one.
    assert!(
        dump.contains("web.shop.svc.cluster.local")
            && !dump.contains("other.shop.svc.cluster.local"),
        "{dump}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_yaml_change_reaches_a_running_proxy() {
    let m = mesh().await;
    request(m.outbound).await.unwrap();
    let before = http_get(m.a.admin, "/config_dump").await;
    let started = std::time::Instant::now();
    // Label change on the pod: a new endpoint version for the subscribed service.
    std::fs::write(
        m.info.registry.join("mesh.yaml"),
        m.yaml
            .replace("labels: {app: web}", "labels: {app: web, version: v2}"),
    )
    .unwrap();
    eventually(
        "the new endpoint labels at the proxy",
        Duration::from_secs(10),
        || async {
            http_get(m.a.admin, "/config_dump")
                .await
                .contains("\"version\": \"v2\"")
        },
    )
    .await;
    eprintln!(
        "YAML change visible in the proxy's config after {:?}",
        started.elapsed()
    );
    assert!(!before.contains("\"version\": \"v2\""));
    request(m.outbound).await.unwrap();
}

/// One request on an open keep-alive connection: the status line and the body.
async fn request_on(tcp: &mut tokio::net::TcpStream) -> (String, String) {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    tcp.write_all(b"GET / HTTP/1.1\r\nHost: web\r\n\r\n")
        .await
        .unwrap();
    let mut buf = Vec::new();
    let mut chunk = [0u8; 4096];
    let read = async {
        loop {
            let n = tcp.read(&mut chunk).await.unwrap();
            assert!(n > 0, "the proxy closed the kept-alive connection");
            buf.extend_from_slice(&chunk[..n]);
            let text = String::from_utf8_lossy(&buf).to_string();
            if let Some((head, body)) = text.split_once("\r\n\r\n") {
                let len: usize = head
                    .lines()
                    .find_map(|l| {
                        let (k, v) = l.split_once(':')?;
                        k.eq_ignore_ascii_case("content-length")
                            .then(|| v.trim().parse().ok())?
                    })
                    .unwrap_or(0);
                if body.len() >= len {
                    let status = head.lines().next().unwrap_or_default().to_string();
                    return (status, body.to_string());
                }
            }
        }
    };
    tokio::time::timeout(Duration::from_secs(10), read)
        .await
        .expect("a response within 10 s")
}

/// The HTTP body of a response read by [`http_get`].
fn body(rsp: &str) -> &str {
    rsp.split_once("\r\n\r\n")
        .map(|(_, b)| b)
        .unwrap_or_default()
}

/// This proxy's entry in the control plane's `/debug/proxies`.
async fn proxy_state(info: &Running2, pod: &str) -> serde_json::Value {
    let rsp = info.get("/debug/proxies").await;
    let all: serde_json::Value = serde_json::from_str(body(&rsp)).unwrap_or_default();
    all["proxies"]
        .as_array()
        .and_then(|ps| ps.iter().find(|p| p["pod"] == pod).cloned())
        .unwrap_or_default()
}

async fn config_dump(p: &StartedProxy) -> serde_json::Value {
    serde_json::from_str(body(&http_get(p.admin, "/config_dump").await)).unwrap()
}

async fn config_rejections(p: &StartedProxy) -> String {
    let rsp = http_get(p.metrics, "/metrics").await;
    body(&rsp)
        .lines()
        .find_map(|l| l.strip_prefix("sinew_config_rejections_total "))
        .unwrap_or_else(|| panic!("no sinew_config_rejections_total in {rsp}"))
        .to_string()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_proxy_nacks_a_config_it_cannot_apply_and_keeps_serving_with_the_last_good_one() {
    let m = mesh().await;
    request(m.outbound).await.unwrap();
    assert_eq!(config_rejections(&m.a).await, "0");
    assert!(config_dump(&m.a).await["lastRejectedConfig"].is_null());
    let good = m.info.bundle.borrow().clone();

    // A trust bundle whose certificate does not parse (a broken plug-in CA reload, say).
    m.info.bundle.send_replace(Arc::new(
        vec![
            "-----BEGIN CERTIFICATE-----\nbm90IGEgY2VydGlmaWNhdGU=\n-----END CERTIFICATE-----\n"
                .to_string(),
        ]
        .into(),
    ));
    eventually(
        "the client proxy's NACK at the control plane",
        Duration::from_secs(10),
        || async { proxy_state(&m.info, "client-0").await["nacks"] == 1 },
    )
    .await;
    let state = proxy_state(&m.info, "client-0").await;
    let reason = state["last_nack"].as_str().unwrap_or_default().to_string();
    assert!(reason.contains("trust bundle"), "{state}");
    // The proxy says the same, counts it, and still serves with the config and roots it had.
    assert_eq!(config_rejections(&m.a).await, "1");
    let dump = config_dump(&m.a).await;
    assert_eq!(dump["lastRejectedConfig"], reason.as_str(), "{dump}");
    assert!(
        dump.to_string().contains("web.shop.svc.cluster.local"),
        "{dump}"
    );
    request(m.outbound).await.unwrap();

    // The CA's bundle again: applied and ACKed, and the rejection is cleared.
    let acks = state["acks"].as_u64().unwrap();
    m.info.bundle.send_replace(good);
    eventually(
        "the client proxy's ACK of the good bundle",
        Duration::from_secs(10),
        || async {
            proxy_state(&m.info, "client-0").await["acks"]
                .as_u64()
                .is_some_and(|n| n > acks)
        },
    )
    .await;
    assert!(config_dump(&m.a).await["lastRejectedConfig"].is_null());
    assert_eq!(proxy_state(&m.info, "client-0").await["nacks"], 1);
    assert_eq!(config_rejections(&m.a).await, "1");
    request(m.outbound).await.unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_kept_alive_connection_follows_endpoint_changes() {
    let m = mesh().await;
    let mut tcp = tokio::net::TcpStream::connect(m.outbound).await.unwrap();
    let (status, _) = request_on(&mut tcp).await;
    assert!(status.contains("200"), "{status}");
    let endpoints = || async {
        http_get(m.a.admin, "/config_dump")
            .await
            .contains("\"meshPort\"")
    };
    // The service loses its only pod, then gets it back. The app's connection stays open
    // throughout; each request must see the endpoints of that moment, not those of when the
    // connection was accepted.
    std::fs::write(
        m.info.registry.join("mesh.yaml"),
        m.yaml
            .replace("labels: {app: web}", "labels: {app: elsewhere}"),
    )
    .unwrap();
    eventually(
        "no endpoints at the proxy",
        Duration::from_secs(10),
        || async { !endpoints().await },
    )
    .await;
    let (status, body) = request_on(&mut tcp).await;
    assert!(
        status.contains("503") && body.contains("no healthy upstream"),
        "{status} {body}"
    );
    std::fs::write(m.info.registry.join("mesh.yaml"), &m.yaml).unwrap();
    eventually(
        "the endpoint back at the proxy",
        Duration::from_secs(10),
        endpoints,
    )
    .await;
    let (status, body) = request_on(&mut tcp).await;
    assert!(status.contains("200"), "{status} {body}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn control_plane_restart_under_traffic_fails_no_request_and_proxies_reconnect() {
    let mut m = mesh().await;
    let grpc = m.info.grpc;
    let outbound = m.outbound;
    let done = Arc::new(std::sync::atomic::AtomicUsize::new(0));
    let counter = done.clone();
    let traffic = tokio::spawn(async move {
        let mut failures = Vec::new();
        for _ in 0..150 {
            if let Err(e) = request(outbound).await {
                failures.push(e);
            }
            counter.fetch_add(1, std::sync::atomic::Ordering::SeqCst);
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
        failures
    });
    let at_least = |n: usize| {
        let done = done.clone();
        async move {
            eventually("requests in flight", Duration::from_secs(30), || {
                let done = done.clone();
                async move { done.load(std::sync::atomic::Ordering::SeqCst) >= n }
            })
            .await
        }
    };
    // Traffic flows, the control plane dies, traffic keeps flowing while it is away.
    at_least(20).await;
    m.cp.kill();
    at_least(60).await;
    // Same port, same state directory (so the same root): a restarted control plane.
    let (cp, info) = IsolatedCp::start(m._dir.clone(), m.yaml.clone(), m.assignments.clone(), grpc);
    m.cp = cp;
    let failures = traffic.await.unwrap();
    assert!(
        failures.is_empty(),
        "{} requests failed: {:?}",
        failures.len(),
        failures.first()
    );
    eventually(
        "both proxies reconnected",
        Duration::from_secs(40),
        || async {
            info.get("/metrics")
                .await
                .contains("sinew_cp_connected_proxies 2")
        },
    )
    .await;
    request(outbound).await.unwrap();
}
