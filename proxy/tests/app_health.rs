//! The app-health prober as the kubelet reaches it: on a running proxy's metrics port, beside
//! `/metrics`; and end to end, a kube-injected Deployment's probe through the real binary
//! started with the env the injected container gets.

mod support;

use bytes::Bytes;
use http_body_util::Full;
use hyper::body::Incoming;
use hyper_util::rt::TokioIo;
use serde_json::{Value, json};
use sinew_proto::config::v1 as pb;
use sinew_proxy::app::Proxy;
use sinew_proxy::app_health::AppHealth;
use sinew_proxy::app_health::spec::Probers;
use sinew_proxy::config::Config;
use sinew_proxy::testing::{TempDir, TestCa};
use std::net::SocketAddr;
use std::sync::atomic::{AtomicU16, Ordering};
use std::sync::{Arc, Mutex};
use support::process::{Running, free_port};
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

/// An HTTP app on 127.0.0.1 answering every request with the status in `status`, recording
/// each request's path and headers.
async fn status_app(status: Arc<AtomicU16>) -> (u16, Arc<Mutex<Vec<(String, hyper::HeaderMap)>>>) {
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let port = listener.local_addr().unwrap().port();
    let seen = Arc::new(Mutex::new(Vec::new()));
    let record = seen.clone();
    tokio::spawn(async move {
        loop {
            let Ok((tcp, _)) = listener.accept().await else {
                continue;
            };
            let (status, record) = (status.clone(), record.clone());
            tokio::spawn(async move {
                let svc = hyper::service::service_fn(move |req: hyper::Request<Incoming>| {
                    let path = req.uri().path_and_query().map(|p| p.to_string());
                    record
                        .lock()
                        .unwrap()
                        .push((path.unwrap_or_default(), req.headers().clone()));
                    let mut rsp = hyper::Response::new(Full::new(Bytes::from_static(b"app\n")));
                    *rsp.status_mut() =
                        hyper::StatusCode::from_u16(status.load(Ordering::SeqCst)).unwrap();
                    async move { Ok::<_, std::convert::Infallible>(rsp) }
                });
                let _ = hyper::server::conn::http1::Builder::new()
                    .serve_connection(TokioIo::new(tcp), svc)
                    .await;
            });
        }
    });
    (port, seen)
}

#[tokio::test]
async fn a_kube_injected_deployments_readiness_probe_reaches_the_app_through_the_real_proxy() {
    let status = Arc::new(AtomicU16::new(200));
    let (app_port, seen) = status_app(status.clone()).await;

    // The Deployment as its author writes it, through `sinewctl kube-inject`'s code.
    let deployment = json!({
        "apiVersion": "apps/v1", "kind": "Deployment",
        "metadata": {"name": "web", "namespace": "shop"},
        "spec": {
            "selector": {"matchLabels": {"app": "web"}},
            "template": {
                "metadata": {"labels": {"app": "web"}},
                "spec": {"containers": [{
                    "name": "web", "image": "web:1",
                    "ports": [{"name": "http", "containerPort": app_port}],
                    "readinessProbe": {
                        "httpGet": {"path": "/ready", "port": "http",
                                    "httpHeaders": [{"name": "X-Probe", "value": "cost $5"}]},
                        "timeoutSeconds": 2
                    }
                }]}
            }
        }
    });
    let sinew_injector::Injected::Changed { object, .. } =
        sinew_injector::inject_object(&deployment, &sinew_injector::Settings::default())
    else {
        panic!("the Deployment is injected");
    };
    let spec = &object["spec"]["template"]["spec"];
    // What the kubelet will ask: the prober on the metrics port.
    assert_eq!(
        spec["containers"][0]["readinessProbe"]["httpGet"],
        json!({"path": "/app-health/web/readyz", "port": 15020, "scheme": "HTTP"})
    );
    let sidecar = spec["initContainers"]
        .as_array()
        .into_iter()
        .flatten()
        .find(|c| c["name"] == "sinew-proxy")
        .expect("the native sidecar");

    // Its env as the kubelet hands it over for pod web-6b7c9d-q8z2m.
    let mut env = sinew_injector::sidecar::kubelet_env(sidecar, |path| match path {
        "metadata.name" => "web-6b7c9d-q8z2m".into(),
        "metadata.namespace" => "shop".into(),
        // Any address: the prober dials 127.0.0.1 and names the pod's IP in the Host header.
        "status.podIP" => "127.0.0.9".into(),
        "spec.serviceAccountName" => "web".into(),
        other => panic!("unexpected downward-API field {other}"),
    });
    // The bootstrap config as injected, with only what it binds and dials moved onto this
    // machine: the listeners and admin endpoints to loopback ports (15020 becomes `metrics`),
    // the control plane to a closed loopback port (so the proxy never becomes ready, which the
    // prober does not wait for), its files to a temporary directory.
    let dir = TempDir::new("injected-binary");
    let root = dir.path().join("root-cert.pem");
    std::fs::write(&root, TestCa::new("injected-binary").root_pem()).unwrap();
    let token = dir.path().join("token");
    std::fs::write(&token, "unused").unwrap();
    let mut bootstrap: Value = serde_json::from_str(&env["SINEW_PROXY_CONFIG"]).unwrap();
    assert_eq!(bootstrap["controlPlane"]["pod"], "web-6b7c9d-q8z2m");
    let metrics = SocketAddr::from(([127, 0, 0, 1], free_port()));
    bootstrap["controlPlane"]["address"] = json!(format!("127.0.0.1:{}", free_port()));
    bootstrap["controlPlane"]["rootCertFile"] = json!(root);
    bootstrap["controlPlane"]["tokenFile"] = json!(token);
    bootstrap["listeners"] = json!([
        {"name": "outbound", "address": "127.0.0.1:0", "direction": "OUTBOUND"},
        {"name": "inbound", "address": "127.0.0.1:0", "direction": "INBOUND"}
    ]);
    bootstrap["admin"] = json!({
        "adminAddress": "127.0.0.1:0",
        "healthAddress": format!("127.0.0.1:{}", free_port()),
        "metricsAddress": metrics.to_string(),
    });
    env.insert("SINEW_PROXY_CONFIG".into(), bootstrap.to_string());

    // `command` and `args` as injected, with nothing but that env.
    let command: Vec<String> = serde_json::from_value(sidecar["command"].clone()).unwrap();
    let args: Vec<String> = serde_json::from_value(sidecar["args"].clone()).unwrap();
    assert_eq!(command, ["sinew-proxy"]);
    let log = dir.path().join("proxy.log");
    let mut proxy = Running(
        std::process::Command::new(env!("CARGO_BIN_EXE_sinew-proxy"))
            .args(&args)
            .env_clear()
            .envs(&env)
            .stdout(std::process::Stdio::null())
            .stderr(std::fs::File::create(&log).unwrap())
            .spawn()
            .expect("the proxy runs"),
    );
    let log_text = || std::fs::read_to_string(&log).unwrap_or_default();
    let deadline = tokio::time::Instant::now() + std::time::Duration::from_secs(20);
    while TcpStream::connect(metrics).await.is_err() {
        if let Some(exit) = proxy.0.try_wait().unwrap() {
            panic!("the proxy exited ({exit}):\n{}", log_text());
        }
        assert!(
            tokio::time::Instant::now() < deadline,
            "the proxy never served {metrics}:\n{}",
            log_text()
        );
        tokio::time::sleep(std::time::Duration::from_millis(20)).await;
    }

    // The kubelet's probe: the app's answer, through the proxy.
    let (code, body) = kubelet_get(metrics, "/app-health/web/readyz").await;
    assert_eq!((code, body.as_str()), (200, "ok\n"), "{}", log_text());
    {
        let seen = seen.lock().unwrap();
        let (path, headers) = seen.last().expect("the app was asked");
        assert_eq!(path, "/ready");
        assert_eq!(headers["x-probe"], "cost $5", "the $ survived the kubelet");
        assert_eq!(headers["user-agent"], "kube-probe/1.33");
        assert_eq!(headers["host"], format!("127.0.0.9:{app_port}").as_str());
    }
    status.store(500, Ordering::SeqCst);
    let (code, body) = kubelet_get(metrics, "/app-health/web/readyz").await;
    assert_eq!(code, 500, "the app's own failure: {body}");
    assert_eq!(seen.lock().unwrap().len(), 2);
    // A probe the pod does not have.
    assert_eq!(kubelet_get(metrics, "/app-health/web/livez").await.0, 404);
}
