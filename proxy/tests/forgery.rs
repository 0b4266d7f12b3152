//! Identity that cannot be forged, whatever the bytes: each test sends an attacker's exact bytes
//! and looks at what the app received on the wire, so it fails whatever parser the app has.
//!
//! Before these fixes every attack below reached the app as an opaque byte stream carrying the
//! attacker's `x-forwarded-client-cert`, or bytes the proxy made up.

mod support;

use std::net::SocketAddr;
use std::sync::{Arc, Mutex};
use std::time::Duration;
use support::*;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::watch;

const FORGED: &str = "spiffe://forged/ns/kube-system/sa/admin";

/// An app that records every byte it receives and answers the first request head of each
/// connection with `200 ok` and `connection: close`, reading on until the proxy closes. Counts
/// open connections so a test can wait for the proxy to let go.
struct RawApp {
    addr: SocketAddr,
    seen: Arc<Mutex<Vec<u8>>>,
    open: watch::Receiver<usize>,
}

impl RawApp {
    async fn start(bind: &str) -> Self {
        let listener = TcpListener::bind(bind).await.unwrap();
        let addr = listener.local_addr().unwrap();
        let seen = Arc::new(Mutex::new(Vec::new()));
        let (open_tx, open) = watch::channel(0usize);
        let open_tx = Arc::new(open_tx);
        let record = seen.clone();
        tokio::spawn(async move {
            while let Ok((mut tcp, _)) = listener.accept().await {
                let record = record.clone();
                let open_tx = open_tx.clone();
                open_tx.send_modify(|n| *n += 1);
                tokio::spawn(async move {
                    let mut conn = Vec::new();
                    let mut buf = [0u8; 4096];
                    let mut answered = false;
                    while let Ok(n) = tcp.read(&mut buf).await {
                        if n == 0 {
                            break;
                        }
                        conn.extend_from_slice(&buf[..n]);
                        record.lock().unwrap().extend_from_slice(&buf[..n]);
                        if !answered && conn.windows(4).any(|w| w == b"\r\n\r\n") {
                            answered = true;
                            let _ = tcp
                                .write_all(b"HTTP/1.1 200 OK\r\ncontent-length: 2\r\nconnection: close\r\n\r\nok")
                                .await;
                        }
                    }
                    open_tx.send_modify(|n| *n -= 1);
                });
            }
        });
        Self { addr, seen, open }
    }

    fn seen(&self) -> String {
        String::from_utf8_lossy(&self.seen.lock().unwrap()).into_owned()
    }

    /// Waits until the proxy has closed every connection it opened to the app.
    async fn wait_idle(&mut self) {
        tokio::time::timeout(Duration::from_secs(10), self.open.wait_for(|n| *n == 0))
            .await
            .expect("the proxy lets go of the app within 10 s")
            .unwrap();
    }

    fn assert_no_forgery(&self, attack: &[u8]) {
        let seen = self.seen();
        assert!(
            !seen
                .to_ascii_lowercase()
                .contains(&FORGED.to_ascii_lowercase()),
            "the app saw the forged identity for {:?}:\n{seen}",
            String::from_utf8_lossy(&attack[..attack.len().min(120)])
        );
    }
}

/// Request lines that defeated protocol detection, each carrying a forged client certificate.
fn attacks() -> Vec<Vec<u8>> {
    let tail = format!(
        "Host: s\r\nX-Forwarded-Client-Cert: By=x;URI={FORGED}\r\nConnection: close\r\n\r\n"
    );
    let mut long = b"GET /".to_vec();
    long.extend(std::iter::repeat_n(b'a', 9000));
    let lines: Vec<Vec<u8>> = vec![
        long,
        b"GET /caf\xc3\xa9".to_vec(),
        b"GET /\xff".to_vec(),
        b"\r\nGET /".to_vec(),
        b"  GET /".to_vec(),
        b"GET\t/".to_vec(),
        b"get /".to_vec(),
        b"FOO /x".to_vec(),
    ];
    lines
        .into_iter()
        .map(|mut line| {
            if line.starts_with(b"GET\t") {
                line.extend_from_slice(b"\tHTTP/1.1\r\n");
            } else {
                line.extend_from_slice(b" HTTP/1.1\r\n");
            }
            line.extend_from_slice(tail.as_bytes());
            line
        })
        .collect()
}

#[tokio::test]
async fn odd_request_lines_from_outside_the_mesh_cannot_forge_a_client_cert() {
    let mut app = RawApp::start("127.0.0.1:0").await;
    let mesh = Mesh::start(app.addr.port()).await;
    for attack in attacks() {
        let out = raw_exchange(mesh.inbound(), &attack).await;
        assert!(out.starts_with("HTTP/1.1 "), "an HTTP answer: {out:?}");
        app.wait_idle().await;
        app.assert_no_forgery(&attack);
    }
}

#[tokio::test]
async fn odd_request_lines_from_a_meshed_app_cannot_forge_a_client_cert() {
    let mut app = RawApp::start("127.0.0.1:0").await;
    let mesh = Mesh::start(app.addr.port()).await;
    for attack in attacks() {
        let out = raw_exchange(mesh.outbound(), &attack).await;
        assert!(out.starts_with("HTTP/1.1 "), "an HTTP answer: {out:?}");
        app.wait_idle().await;
        app.assert_no_forgery(&attack);
    }
    // What the app did see of the mesh requests names the real caller.
    assert!(
        app.seen().contains(&format!("URI={CLIENT_ID}")),
        "{}",
        app.seen()
    );
}

/// Reads until the proxy closes, for at most 10 s (an attack that got through may leave the
/// connection open: the test then fails on what it read instead of hanging).
async fn read_to_close(tcp: &mut TcpStream) -> String {
    let mut out = Vec::new();
    let _ = tokio::time::timeout(Duration::from_secs(10), tcp.read_to_end(&mut out)).await;
    String::from_utf8_lossy(&out).into_owned()
}

/// Waits until the proxy's detection timeout has fired `n` times in total: a pause that is
/// proven by the proxy's own counter, not by sleeping for longer than it.
async fn wait_detect_timeouts(metrics: SocketAddr, n: f64) {
    let series = "sinew_protocol_detect_timeouts_total";
    for _ in 0..200 {
        if metric(metrics, series).await >= n {
            return;
        }
        tokio::time::sleep(Duration::from_millis(25)).await;
    }
    panic!("{series} never reached {n}");
}

#[tokio::test]
async fn a_pause_in_the_request_line_does_not_make_it_opaque() {
    let mut app = RawApp::start("127.0.0.1:0").await;
    let mesh = Mesh::start(app.addr.port()).await;
    for (proxy, metrics, n) in [
        (mesh.inbound(), mesh.b.metrics, 1.0),
        (mesh.outbound(), mesh.a.metrics, 1.0),
    ] {
        let mut tcp = TcpStream::connect(proxy).await.unwrap();
        tcp.write_all(b"GE").await.unwrap();
        wait_detect_timeouts(metrics, n).await;
        let rest = format!(
            "T / HTTP/1.1\r\nHost: s\r\nX-Forwarded-Client-Cert: URI={FORGED}\r\nConnection: close\r\n\r\n"
        );
        tcp.write_all(rest.as_bytes()).await.unwrap();
        let out = read_to_close(&mut tcp).await;
        assert!(out.starts_with("HTTP/1.1 200"), "served as HTTP: {out}");
        app.wait_idle().await;
        app.assert_no_forgery(rest.as_bytes());
    }
}

#[tokio::test]
async fn silence_before_the_first_byte_does_not_make_it_opaque() {
    let mut app = RawApp::start("127.0.0.1:0").await;
    let mesh = Mesh::start(app.addr.port()).await;
    for (proxy, metrics) in [
        (mesh.inbound(), mesh.b.metrics),
        (mesh.outbound(), mesh.a.metrics),
    ] {
        let mut tcp = TcpStream::connect(proxy).await.unwrap();
        wait_detect_timeouts(metrics, 1.0).await;
        let attack = format!(
            "GET / HTTP/1.1\r\nHost: s\r\nX-Forwarded-Client-Cert: URI={FORGED}\r\nConnection: close\r\n\r\n"
        );
        tcp.write_all(attack.as_bytes()).await.unwrap();
        let out = read_to_close(&mut tcp).await;
        assert!(out.starts_with("HTTP/1.1 200"), "served as HTTP: {out}");
        app.wait_idle().await;
        app.assert_no_forgery(attack.as_bytes());
    }
}

/// A server-first app greets, then echoes. The client's command after the greeting looks like
/// the start of an HTTP request, and must still be carried as bytes.
#[tokio::test]
async fn server_first_protocols_still_work_after_the_silence() {
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let port = listener.local_addr().unwrap().port();
    tokio::spawn(async move {
        while let Ok((mut tcp, _)) = listener.accept().await {
            tokio::spawn(async move {
                tcp.write_all(b"220 ready\r\n").await.unwrap();
                let (mut r, mut w) = tcp.split();
                let _ = tokio::io::copy(&mut r, &mut w).await;
            });
        }
    });
    let mesh = Mesh::start(port).await;
    for proxy in [mesh.inbound(), mesh.outbound()] {
        let mut tcp = TcpStream::connect(proxy).await.unwrap();
        let mut greeting = [0u8; 11];
        tokio::time::timeout(Duration::from_secs(10), tcp.read_exact(&mut greeting))
            .await
            .expect("the greeting arrives")
            .unwrap();
        assert_eq!(&greeting, b"220 ready\r\n");
        tcp.write_all(b"EHLO client.example\r\n").await.unwrap();
        let mut echo = [0u8; 21];
        tcp.read_exact(&mut echo).await.unwrap();
        assert_eq!(&echo, b"EHLO client.example\r\n");
    }
}

/// Found by an attacker: after `Upgrade: foo` was answered 200, the smuggling guard stayed off
/// for the rest of the connection.
#[tokio::test]
async fn a_refused_upgrade_leaves_the_smuggling_guard_on() {
    // An app that answers every request 200, keeping the connection, and never upgrades.
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let port = listener.local_addr().unwrap().port();
    let paths = Arc::new(Mutex::new(Vec::new()));
    let record = paths.clone();
    tokio::spawn(async move {
        while let Ok((tcp, _)) = listener.accept().await {
            let record = record.clone();
            tokio::spawn(async move {
                let svc = hyper::service::service_fn(move |req: hyper::Request<_>| {
                    record.lock().unwrap().push(req.uri().path().to_owned());
                    async {
                        Ok::<_, std::convert::Infallible>(hyper::Response::new(String::from("ok")))
                    }
                });
                let io = hyper_util::rt::TokioIo::new(tcp);
                let _ = hyper::server::conn::http1::Builder::new()
                    .serve_connection(io, svc)
                    .await;
            });
        }
    });
    let mesh = Mesh::start(port).await;
    for proxy in [mesh.outbound(), mesh.inbound()] {
        let out = raw_exchange(
            proxy,
            b"GET / HTTP/1.1\r\nHost: s\r\nConnection: upgrade\r\nUpgrade: foo\r\n\r\n\
POST /echo HTTP/1.1\r\nHost: s\r\nContent-Length: 6\r\nTransfer-Encoding: chunked\r\n\r\n0\r\n\r\nGET /admin HTTP/1.1\r\nHost: s\r\n\r\n",
        )
        .await;
        let answers: Vec<&str> = out.split("HTTP/1.1 ").skip(1).map(|a| &a[..3]).collect();
        assert_eq!(answers, ["200", "400"], "{out}");
    }
    assert!(
        paths.lock().unwrap().iter().all(|p| p == "/"),
        "only the upgrade request reached the app: {paths:?}"
    );
}

/// Found by an attacker: a chunk-size line the guard refuses but hyper accepts (17 hex digits)
/// was passed on before it was judged, so hyper read the guard's internal marker line as chunk
/// data and the app received `\x01 / H`.
#[tokio::test]
async fn a_rejected_chunk_never_shows_the_app_bytes_the_client_did_not_send() {
    let mut app = RawApp::start("127.0.0.1:0").await;
    let mesh = Mesh::start(app.addr.port()).await;
    for chunk in [&b"00000000000000005\r\nhello\r\n"[..], b"5\nhello\r\n"] {
        for proxy in [mesh.outbound(), mesh.inbound()] {
            let mut attack =
                b"POST / HTTP/1.1\r\nHost: s\r\nTransfer-Encoding: chunked\r\n\r\n".to_vec();
            attack.extend_from_slice(chunk);
            attack.extend_from_slice(b"0\r\n\r\n");
            let out = raw_exchange(proxy, &attack).await;
            assert!(!out.contains(" 200 "), "{out}");
            app.wait_idle().await;
            let seen = app.seen.lock().unwrap().clone();
            assert!(
                !seen.contains(&1u8),
                "the app read a byte the client never sent: {:?}",
                String::from_utf8_lossy(&seen)
            );
        }
    }
}

/// Istio stopped exposing localhost-only listeners through the pod IP in 1.10; so do we. B's
/// "pod IP" here is 127.0.0.3, and the app binds either 127.0.0.1 only or every address.
#[tokio::test]
async fn an_app_listening_on_localhost_only_is_not_reachable_through_the_pod_ip() {
    let private = RawApp::start("127.0.0.1:0").await;
    let mut o = MeshOptions::new(private.addr.port());
    o.pod_ip = "127.0.0.3";
    let mesh = Mesh::with(o).await;
    let plain = raw_exchange(
        mesh.inbound(),
        b"GET / HTTP/1.1\r\nHost: s\r\nConnection: close\r\n\r\n",
    )
    .await;
    let meshed = raw_exchange(
        mesh.outbound(),
        b"GET / HTTP/1.1\r\nHost: s\r\nConnection: close\r\n\r\n",
    )
    .await;
    for out in [&plain, &meshed] {
        assert!(out.starts_with("HTTP/1.1 503"), "{out}");
    }
    assert_eq!(private.seen(), "", "nothing reached the private listener");

    let public = RawApp::start("0.0.0.0:0").await;
    let mut o = MeshOptions::new(public.addr.port());
    o.pod_ip = "127.0.0.3";
    let mesh = Mesh::with(o).await;
    let out = raw_exchange(
        mesh.outbound(),
        b"GET / HTTP/1.1\r\nHost: s\r\nConnection: close\r\n\r\n",
    )
    .await;
    assert!(out.starts_with("HTTP/1.1 200"), "{out}");
    // The app sees the proxy's delivery address, as under Istio.
    assert!(
        public.seen().contains("GET / HTTP/1.1"),
        "{}",
        public.seen()
    );
}

/// A port its Services declare HTTP is HTTP whatever arrives: bytes that are not HTTP are
/// answered 400 by the proxy and never reach the app as a stream.
#[tokio::test]
async fn a_port_declared_http_never_passes_bytes_through() {
    let mut app = RawApp::start("127.0.0.1:0").await;
    let mut o = MeshOptions::new(app.addr.port());
    o.app_protocol = sinew_proto::config::v1::Protocol::Http1;
    o.header_read = Duration::from_millis(500);
    let mesh = Mesh::with(o).await;
    let out = raw_exchange(mesh.inbound(), b"\x00\x01\x02\x03 not http\r\n\r\n").await;
    assert!(out.starts_with("HTTP/1.1 400"), "{out:?}");
    // A silent client is not handed to the app either: the proxy closes it at the header timeout.
    let mut silent = TcpStream::connect(mesh.inbound()).await.unwrap();
    assert_eq!(read_to_close(&mut silent).await, "");
    app.wait_idle().await;
    assert_eq!(app.seen(), "", "nothing reached the app");
    // Mesh traffic to the port is HTTP as ever.
    let out = raw_exchange(
        mesh.outbound(),
        b"GET / HTTP/1.1\r\nHost: s\r\nConnection: close\r\n\r\n",
    )
    .await;
    assert!(out.starts_with("HTTP/1.1 200"), "{out}");
}
