//! The prober against real apps on loopback (HTTP, HTTPS, TCP, gRPC), and its limits in paused
//! time.

use super::*;
use ::http::{HeaderMap, Request};
use http_body_util::BodyExt as _;
use hyper::body::Incoming;
use hyper_util::rt::TokioIo;
use std::convert::Infallible;
use std::sync::Mutex;
use tokio::io::AsyncReadExt as _;
use tokio::net::TcpListener;
use tokio::sync::mpsc;

/// What an app saw of one request.
#[derive(Debug)]
struct Seen {
    path: String,
    headers: HeaderMap,
}

/// An HTTP/1 app on 127.0.0.1: `respond` maps a path to (status, Location); every request is
/// recorded, and every connection's end is reported on `closed`.
struct App {
    port: u16,
    seen: Arc<Mutex<Vec<Seen>>>,
    closed: mpsc::UnboundedReceiver<()>,
}

async fn http_app(
    respond: fn(&str) -> (u16, Option<&'static str>),
    tls: Option<Arc<rustls::ServerConfig>>,
) -> App {
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let port = listener.local_addr().unwrap().port();
    let seen = Arc::new(Mutex::new(Vec::new()));
    let (closed_tx, closed) = mpsc::unbounded_channel();
    let record = seen.clone();
    tokio::spawn(async move {
        loop {
            let (tcp, _) = listener.accept().await.unwrap();
            let (record, closed_tx, tls) = (record.clone(), closed_tx.clone(), tls.clone());
            tokio::spawn(async move {
                let svc = hyper::service::service_fn(move |req: Request<Incoming>| {
                    record.lock().unwrap().push(Seen {
                        path: req.uri().to_string(),
                        headers: req.headers().clone(),
                    });
                    let (status, location) = respond(req.uri().path());
                    let mut rsp = Response::new(Full::new(Bytes::from_static(b"app body")));
                    *rsp.status_mut() = StatusCode::from_u16(status).unwrap();
                    if let Some(l) = location {
                        rsp.headers_mut()
                            .insert(header::LOCATION, HeaderValue::from_static(l));
                    }
                    async move { Ok::<_, Infallible>(rsp) }
                });
                let http = hyper::server::conn::http1::Builder::new();
                match tls {
                    Some(tls) => {
                        if let Ok(io) = tokio_rustls::TlsAcceptor::from(tls).accept(tcp).await {
                            let _ = http.serve_connection(TokioIo::new(io), svc).await;
                        }
                    }
                    None => {
                        let _ = http.serve_connection(TokioIo::new(tcp), svc).await;
                    }
                }
                let _ = closed_tx.send(());
            });
        }
    });
    App { port, seen, closed }
}

/// A self-signed server certificate nobody trusts.
fn untrusted_tls() -> Arc<rustls::ServerConfig> {
    use rustls::pki_types::pem::PemObject as _;
    use rustls::pki_types::{CertificateDer, PrivateKeyDer};
    let ca = crate::testing::TestCa::new("app-health");
    let (cert, key) = ca.leaf("spiffe://cluster.local/ns/default/sa/app");
    let chain = CertificateDer::pem_slice_iter(cert.as_bytes())
        .collect::<Result<Vec<_>, _>>()
        .unwrap();
    let key = PrivateKeyDer::from_pem_slice(key.as_bytes()).unwrap();
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    Arc::new(
        rustls::ServerConfig::builder_with_provider(provider)
            .with_safe_default_protocol_versions()
            .unwrap()
            .with_no_client_auth()
            .with_single_cert(chain, key)
            .unwrap(),
    )
}

fn prober(json: &str) -> AppHealth {
    AppHealth::new(
        Probers::parse(json).expect("valid probes"),
        Some("10.1.2.3".parse().unwrap()),
    )
}

async fn ask(prober: &AppHealth, path: &str) -> (StatusCode, String) {
    let kubelet = HeaderValue::from_static("kube-probe/1.30");
    let rsp = prober.answer(path, Some(&kubelet)).await;
    let status = rsp.status();
    let body = rsp.into_body().collect().await.unwrap().to_bytes();
    (status, String::from_utf8(body.to_vec()).unwrap())
}

/// A port nothing listens on (bound, then closed).
async fn closed_port() -> u16 {
    let l = TcpListener::bind("127.0.0.1:0").await.unwrap();
    l.local_addr().unwrap().port()
}

/// A port that accepts connections and never says anything.
async fn silent_port() -> (u16, tokio::task::JoinHandle<()>) {
    let l = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let port = l.local_addr().unwrap().port();
    let task = tokio::spawn(async move {
        let mut held = Vec::new();
        while let Ok((tcp, _)) = l.accept().await {
            held.push(tcp);
        }
    });
    (port, task)
}

// === httpGet ===

#[tokio::test]
async fn a_passing_http_probe_answers_200_and_sends_what_the_kubelet_sends() {
    let mut app = http_app(|_| (204, None), None).await;
    let p = prober(&format!(
        r#"{{"/app-health/web/readyz": {{"httpGet": {{"path": "/healthz?full=1", "port": {}, "scheme": "HTTP",
             "httpHeaders": [{{"name": "X-Probe", "value": "a"}}, {{"name": "X-Probe", "value": "b"}}]}},
             "timeoutSeconds": 1}}}}"#,
        app.port
    ));
    assert_eq!(ask(&p, "/app-health/web/readyz").await.0, StatusCode::OK);
    let seen = app.seen.lock().unwrap().remove(0);
    assert_eq!(seen.path, "/healthz?full=1");
    let h = &seen.headers;
    assert_eq!(h["user-agent"], "kube-probe/1.30", "the kubelet's own");
    assert_eq!(h["accept"], "*/*");
    assert_eq!(h["connection"], "close");
    assert_eq!(h["host"], format!("10.1.2.3:{}", app.port).as_str());
    let values: Vec<_> = h.get_all("x-probe").iter().collect();
    assert_eq!(values, ["a", "b"]);
    // Nothing is kept open after the answer.
    app.closed
        .recv()
        .await
        .expect("the probe's connection ends");
}

#[tokio::test]
async fn the_probes_host_and_headers_win_over_the_defaults() {
    let app = http_app(|_| (200, None), None).await;
    let p = prober(&format!(
        r#"{{"/app-health/web/livez": {{"httpGet": {{"path": "/", "port": {}, "host": "web.local",
             "httpHeaders": [{{"name": "User-Agent", "value": "mine"}}, {{"name": "Accept", "value": "text/plain"}}]}}}}}}"#,
        app.port
    ));
    assert_eq!(ask(&p, "/app-health/web/livez").await.0, StatusCode::OK);
    let seen = app.seen.lock().unwrap().remove(0);
    assert_eq!(
        seen.headers["host"],
        format!("web.local:{}", app.port).as_str()
    );
    assert_eq!(seen.headers["user-agent"], "mine");
    assert_eq!(seen.headers["accept"], "text/plain");
}

#[tokio::test]
async fn an_http_failure_status_is_answered_as_the_apps_own() {
    let app = http_app(
        |path| match path {
            "/teapot" => (418, None),
            "/broken" => (500, None),
            _ => (399, None),
        },
        None,
    )
    .await;
    let p = prober(&format!(
        r#"{{"/app-health/a/livez": {{"httpGet": {{"path": "/teapot", "port": {0}}}}},
            "/app-health/a/readyz": {{"httpGet": {{"path": "/broken", "port": {0}}}}},
            "/app-health/a/startupz": {{"httpGet": {{"path": "/odd", "port": {0}}}}}}}"#,
        app.port
    ));
    let (status, body) = ask(&p, "/app-health/a/livez").await;
    assert_eq!(status.as_u16(), 418);
    assert!(body.contains("/teapot") && body.contains("418"), "{body}");
    assert_eq!(ask(&p, "/app-health/a/readyz").await.0.as_u16(), 500);
    // 3xx without a Location passes, as it does for the kubelet.
    assert_eq!(ask(&p, "/app-health/a/startupz").await.0, StatusCode::OK);
}

#[tokio::test]
async fn same_host_redirects_are_followed_and_others_pass_unfollowed() {
    let app = http_app(
        |path| match path {
            "/old" => (302, Some("/new")),
            "/new" => (503, None),
            "/away" => (301, Some("http://elsewhere.example/healthz")),
            "/loop" => (307, Some("/loop")),
            _ => (404, None),
        },
        None,
    )
    .await;
    let p = prober(&format!(
        r#"{{"/app-health/a/livez": {{"httpGet": {{"path": "/old", "port": {0}}}}},
            "/app-health/a/readyz": {{"httpGet": {{"path": "/away", "port": {0}}}}},
            "/app-health/a/startupz": {{"httpGet": {{"path": "/loop", "port": {0}}}}}}}"#,
        app.port
    ));
    // Followed: the answer is the second path's.
    assert_eq!(ask(&p, "/app-health/a/livez").await.0.as_u16(), 503);
    // Another host: not followed, and the 301 itself passes.
    assert_eq!(ask(&p, "/app-health/a/readyz").await.0, StatusCode::OK);
    let paths: Vec<String> = app.seen.lock().unwrap().drain(..).map(|s| s.path).collect();
    assert_eq!(paths, ["/old", "/new", "/away"]);
    let (status, body) = ask(&p, "/app-health/a/startupz").await;
    assert_eq!(status, StatusCode::SERVICE_UNAVAILABLE);
    assert!(body.contains("stopped after 10 redirects"), "{body}");
    assert_eq!(
        app.seen.lock().unwrap().len(),
        11,
        "the first request and 10 redirects"
    );
}

#[tokio::test]
async fn an_https_probe_does_not_verify_the_apps_certificate() {
    let app = http_app(|_| (200, None), Some(untrusted_tls())).await;
    let p = prober(&format!(
        r#"{{"/app-health/web/readyz": {{"httpGet": {{"path": "/", "port": {}, "scheme": "HTTPS"}}}}}}"#,
        app.port
    ));
    assert_eq!(
        ask(&p, "/app-health/web/readyz").await,
        (StatusCode::OK, "ok\n".into())
    );
    // The same port in plaintext is not HTTP: a failure, answered 503.
    let plain = prober(&format!(
        r#"{{"/app-health/web/readyz": {{"httpGet": {{"path": "/", "port": {}}}}}}}"#,
        app.port
    ));
    assert_eq!(
        ask(&plain, "/app-health/web/readyz").await.0,
        StatusCode::SERVICE_UNAVAILABLE
    );
}

#[tokio::test]
async fn a_refused_connection_is_503_with_the_reason() {
    let port = closed_port().await;
    let p = prober(&format!(
        r#"{{"/app-health/web/livez": {{"httpGet": {{"path": "/", "port": {port}}}}}}}"#
    ));
    let (status, body) = ask(&p, "/app-health/web/livez").await;
    assert_eq!(status, StatusCode::SERVICE_UNAVAILABLE);
    assert!(body.contains(&format!("127.0.0.1:{port}")), "{body}");
    assert!(body.to_lowercase().contains("refused"), "{body}");
    assert_eq!(body.lines().count(), 1, "{body}");
}

// === tcpSocket ===

#[tokio::test]
async fn a_tcp_probe_passes_when_the_port_accepts_and_closes_at_once() {
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let port = listener.local_addr().unwrap().port();
    let p = prober(&format!(
        r#"{{"/app-health/db/livez": {{"tcpSocket": {{"port": {port}}}, "timeoutSeconds": 2}}}}"#
    ));
    assert_eq!(ask(&p, "/app-health/db/livez").await.0, StatusCode::OK);
    let (mut conn, _) = listener.accept().await.unwrap();
    let mut buf = [0u8; 1];
    assert_eq!(
        conn.read(&mut buf).await.unwrap(),
        0,
        "closed without a byte"
    );
    drop(listener);
    let (status, _) = ask(&p, "/app-health/db/livez").await;
    assert_eq!(status, StatusCode::SERVICE_UNAVAILABLE);
}

// === grpc ===

/// A gRPC health server on 127.0.0.1: answers `status` (and `grpc_status`), and reports the
/// service name each request asked about.
async fn grpc_app(
    status: u8,
    grpc_status: &'static str,
) -> (u16, mpsc::UnboundedReceiver<Vec<u8>>) {
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let port = listener.local_addr().unwrap().port();
    let (asked_tx, asked) = mpsc::unbounded_channel();
    tokio::spawn(async move {
        loop {
            let (tcp, _) = listener.accept().await.unwrap();
            let asked_tx = asked_tx.clone();
            tokio::spawn(async move {
                let mut conn = h2::server::handshake(tcp).await.unwrap();
                while let Some(Ok((req, mut respond))) = conn.accept().await {
                    assert_eq!(req.uri().path(), "/grpc.health.v1.Health/Check");
                    assert_eq!(req.headers()["content-type"], "application/grpc");
                    let mut body = req.into_body();
                    let mut got = Vec::new();
                    while let Some(Ok(chunk)) = body.data().await {
                        got.extend_from_slice(&chunk);
                    }
                    let _ = asked_tx.send(got);
                    let rsp = Response::builder()
                        .header("content-type", "application/grpc")
                        .body(())
                        .unwrap();
                    let mut send = respond.send_response(rsp, false).unwrap();
                    send.send_data(Bytes::from(vec![0, 0, 0, 0, 2, 0x08, status]), false)
                        .unwrap();
                    let mut trailers = HeaderMap::new();
                    trailers.insert("grpc-status", HeaderValue::from_static(grpc_status));
                    send.send_trailers(trailers).unwrap();
                }
            });
        }
    });
    (port, asked)
}

#[tokio::test]
async fn a_grpc_probe_passes_only_when_the_service_is_serving() {
    let (serving, mut asked) = grpc_app(1, "0").await;
    let (not_serving, _) = grpc_app(2, "0").await;
    let (unimplemented, _) = grpc_app(1, "12").await;
    let p = prober(&format!(
        r#"{{"/app-health/api/livez": {{"grpc": {{"port": {serving}, "service": "shop.Cart"}}}},
            "/app-health/api/readyz": {{"grpc": {{"port": {not_serving}}}}},
            "/app-health/api/startupz": {{"grpc": {{"port": {unimplemented}}}}}}}"#
    ));
    assert_eq!(ask(&p, "/app-health/api/livez").await.0, StatusCode::OK);
    let request = asked.recv().await.unwrap();
    assert_eq!(
        request,
        [&[0u8, 0, 0, 0, 11, 0x0a, 9][..], b"shop.Cart"].concat()
    );
    let (status, body) = ask(&p, "/app-health/api/readyz").await;
    assert_eq!(status, StatusCode::SERVICE_UNAVAILABLE);
    assert!(body.contains("NOT_SERVING"), "{body}");
    let (status, body) = ask(&p, "/app-health/api/startupz").await;
    assert_eq!(status, StatusCode::SERVICE_UNAVAILABLE);
    assert!(body.contains("grpc-status 12"), "{body}");
}

#[tokio::test]
async fn a_grpc_probe_of_a_server_that_is_not_grpc_fails_plainly() {
    let app = http_app(|_| (200, None), None).await;
    let p = prober(&format!(
        r#"{{"/app-health/api/livez": {{"grpc": {{"port": {}}}}}}}"#,
        app.port
    ));
    let (status, body) = ask(&p, "/app-health/api/livez").await;
    assert_eq!(status, StatusCode::SERVICE_UNAVAILABLE);
    assert!(
        body.starts_with("gRPC health check on 127.0.0.1:"),
        "{body}"
    );
}

// === routing, timeouts, limits ===

#[tokio::test]
async fn a_path_without_a_probe_is_404() {
    let p = prober(r#"{"/app-health/web/livez": {"tcpSocket": {"port": 1}}}"#);
    for path in [
        "/app-health/web/readyz",
        "/app-health/other/livez",
        "/app-health/web/livez/",
        "/app-health/",
    ] {
        assert_eq!(ask(&p, path).await.0, StatusCode::NOT_FOUND, "{path}");
    }
}

#[tokio::test(start_paused = true)]
async fn a_probe_without_an_answer_fails_at_its_timeout() {
    let (port, _server) = silent_port().await;
    let p = prober(&format!(
        r#"{{"/app-health/web/livez": {{"httpGet": {{"path": "/", "port": {port}}}, "timeoutSeconds": 3}}}}"#
    ));
    let start = tokio::time::Instant::now();
    let (status, body) = ask(&p, "/app-health/web/livez").await;
    assert_eq!(status, StatusCode::SERVICE_UNAVAILABLE);
    assert!(body.contains("timed out after 3s"), "{body}");
    assert_eq!(start.elapsed(), Duration::from_secs(3));
}

#[tokio::test(start_paused = true)]
async fn probes_over_the_limit_wait_for_a_turn_within_their_own_timeout() {
    let (silent, _server) = silent_port().await;
    let open = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let open_port = open.local_addr().unwrap().port();
    let p = Arc::new(AppHealth::with_limit(
        Probers::parse(&format!(
            r#"{{"/app-health/slow/readyz": {{"httpGet": {{"port": {silent}}}, "timeoutSeconds": 10}},
                "/app-health/fast/livez": {{"tcpSocket": {{"port": {open_port}}}, "timeoutSeconds": 1}}}}"#
        ))
        .unwrap(),
        None,
        1,
    ));
    // The HTTP probe takes the only turn and waits 10 s for an answer that never comes.
    let holder = {
        let p = p.clone();
        tokio::spawn(async move { ask(&p, "/app-health/slow/readyz").await })
    };
    while p.permits.available_permits() > 0 {
        tokio::task::yield_now().await;
    }
    let (status, body) = ask(&p, "/app-health/fast/livez").await;
    assert_eq!(status, StatusCode::SERVICE_UNAVAILABLE);
    assert!(body.contains("too many probes in flight"), "{body}");
    let (status, body) = holder.await.unwrap();
    assert_eq!(status, StatusCode::SERVICE_UNAVAILABLE);
    assert!(body.contains("timed out after 10s"), "{body}");
    // The turn came back with the answer.
    assert_eq!(ask(&p, "/app-health/fast/livez").await.0, StatusCode::OK);
}
