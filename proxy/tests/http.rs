//! Behaviour tests of the HTTP data path through two real proxies on loopback.

mod support;

use bytes::Bytes;
use http_body_util::{BodyExt, Full, StreamBody};
use hyper::Request;
use support::*;

#[tokio::test]
async fn http1_keep_alive_requests_reach_the_app_over_mtls_with_the_callers_identity() {
    let (app, _t) = start_echo_app().await;
    let mesh = Mesh::start(app.port()).await;
    let mut c = h1_client(mesh.outbound()).await;
    for i in 0..5 {
        // Same client connection each time: keep-alive through the proxy.
        let req = Request::post(format!("/echo/{i}"))
            .header("host", "server.default:8080")
            .body(Full::from(format!("hello {i}")))
            .unwrap();
        let rsp = c.send_request(req).await.unwrap();
        assert_eq!(rsp.status(), 200);
        let h = rsp.headers().clone();
        assert_eq!(body_string(rsp).await, format!("hello {i}"));
        let xfcc = h["x-seen-xfcc"].to_str().unwrap();
        assert!(xfcc.starts_with(&format!("By={SERVER_ID};Hash=")), "{xfcc}");
        assert!(xfcc.ends_with(&format!(";URI={CLIENT_ID}")), "{xfcc}");
        // The app got HTTP/1.1 back, with its Host, and none of the proxies' own headers.
        assert_eq!(h["x-seen-version"], "HTTP/1.1");
        assert_eq!(h["x-seen-host"], "server.default:8080");
        assert_eq!(h["x-seen-sinew"], "");
    }
    assert_eq!(
        metric(
            mesh.b.metrics,
            r#"sinew_tcp_connections_opened_total{direction="inbound",protocol="mesh_h2"}"#
        )
        .await,
        1.0
    );
}

#[tokio::test]
async fn many_app_connections_share_one_http2_connection_between_proxies() {
    let (app, _t) = start_echo_app().await;
    let mesh = Mesh::start(app.port()).await;
    let mut tasks = Vec::new();
    for _ in 0..20 {
        let addr = mesh.outbound();
        tasks.push(tokio::spawn(async move {
            let mut c = h1_client(addr).await;
            for _ in 0..5 {
                let rsp = c.send_request(get("/x")).await.unwrap();
                assert_eq!(rsp.status(), 200);
                body_string(rsp).await;
            }
        }));
    }
    for t in tasks {
        t.await.unwrap();
    }
    let a_conns = metric(
        mesh.a.metrics,
        r#"sinew_tcp_connections_opened_total{direction="outbound",protocol="http1"}"#,
    )
    .await;
    let b_conns = metric(
        mesh.b.metrics,
        r#"sinew_tcp_connections_opened_total{direction="inbound",protocol="mesh_h2"}"#,
    )
    .await;
    assert_eq!(a_conns, 20.0);
    assert_eq!(
        b_conns, 1.0,
        "all 100 requests must share one mesh connection"
    );
    assert_eq!(
        metric(
            mesh.b.metrics,
            r#"sinew_requests_total{direction="inbound",status_class="2xx"}"#
        )
        .await,
        100.0
    );
}

#[tokio::test]
async fn chunked_request_and_response_bodies_stream_with_trailers() {
    let (app, _t) = start_echo_app().await;
    let mesh = Mesh::start(app.port()).await;
    let (tx, rx) = tokio::sync::mpsc::channel::<
        Result<hyper::body::Frame<Bytes>, std::convert::Infallible>,
    >(4);
    let body = StreamBody::new(tokio_stream_from(rx));
    let req = Request::post("/echo")
        .header("host", "server.default:8080")
        .header("te", "trailers")
        .header("trailer", "x-checksum")
        .body(body)
        .unwrap();
    let (mut send, conn) = {
        let tcp = tokio::net::TcpStream::connect(mesh.outbound())
            .await
            .unwrap();
        hyper::client::conn::http1::handshake(hyper_util::rt::TokioIo::new(tcp))
            .await
            .unwrap()
    };
    tokio::spawn(conn);
    let rsp_fut = tokio::spawn(async move { send.send_request(req).await.unwrap() });
    // The first chunk comes back before the request body is finished: nothing is buffered whole.
    tx.send(Ok(hyper::body::Frame::data(Bytes::from_static(
        b"first-chunk",
    ))))
    .await
    .unwrap();
    let rsp = rsp_fut.await.unwrap();
    assert_eq!(rsp.status(), 200);
    let mut body = rsp.into_body();
    let frame = body.frame().await.unwrap().unwrap();
    assert_eq!(frame.into_data().unwrap(), "first-chunk");
    tx.send(Ok(hyper::body::Frame::data(Bytes::from_static(b"second"))))
        .await
        .unwrap();
    let mut trailers = http::HeaderMap::new();
    trailers.insert("x-checksum", "abc123".parse().unwrap());
    tx.send(Ok(hyper::body::Frame::trailers(trailers)))
        .await
        .unwrap();
    drop(tx);
    let rest = body.collect().await.unwrap();
    let t = rest.trailers().cloned();
    assert_eq!(rest.to_bytes(), "second");
    assert_eq!(t.expect("trailers arrive")["x-checksum"], "abc123");
}

fn tokio_stream_from<T: Send + 'static>(
    mut rx: tokio::sync::mpsc::Receiver<T>,
) -> impl futures_util::Stream<Item = T> {
    futures_util::stream::poll_fn(move |cx| rx.poll_recv(cx))
}

#[tokio::test]
async fn http2_prior_knowledge_stays_http2_to_the_app() {
    let (app, _t) = start_echo_app().await;
    let mesh = Mesh::start(app.port()).await;
    let mut c = h2_client(mesh.outbound()).await;
    let req = Request::post("http://server.default:8080/h2")
        .body(Full::from("over h2"))
        .unwrap();
    let rsp = c.send_request(req).await.unwrap();
    assert_eq!(rsp.status(), 200);
    assert_eq!(rsp.headers()["x-seen-version"], "HTTP/2.0");
    assert_eq!(rsp.headers()["x-seen-host"], "server.default:8080");
    assert_eq!(body_string(rsp).await, "over h2");
}

#[tokio::test]
async fn expect_100_continue_gets_a_continue_and_the_body() {
    let (app, _t) = start_echo_app().await;
    let mesh = Mesh::start(app.port()).await;
    let out = raw_exchange(
        mesh.outbound(),
        b"POST /echo HTTP/1.1\r\nHost: s\r\nExpect: 100-continue\r\nContent-Length: 5\r\nConnection: close\r\n\r\nhello",
    )
    .await;
    assert!(out.starts_with("HTTP/1.1 100 Continue\r\n"), "{out}");
    assert!(out.contains("HTTP/1.1 200 OK"), "{out}");
    assert!(out.ends_with("hello"), "{out}");
}

#[tokio::test]
async fn upgrade_request_is_spliced_end_to_end() {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let (app, _t) = start_echo_app().await;
    let mesh = Mesh::start(app.port()).await;
    let mut tcp = tokio::net::TcpStream::connect(mesh.outbound())
        .await
        .unwrap();
    tcp.write_all(b"GET /ws HTTP/1.1\r\nHost: s\r\nConnection: upgrade\r\nUpgrade: echo\r\n\r\n")
        .await
        .unwrap();
    let mut buf = vec![0u8; 1024];
    let n = tcp.read(&mut buf).await.unwrap();
    let head = String::from_utf8_lossy(&buf[..n]).to_string();
    assert!(head.starts_with("HTTP/1.1 101"), "{head}");
    assert!(
        head.to_ascii_lowercase().contains(&format!(
            "x-seen-xfcc: by={}",
            SERVER_ID.to_ascii_lowercase()
        )),
        "{head}"
    );
    for msg in [&b"ping"[..], b"a longer frame of bytes"] {
        tcp.write_all(msg).await.unwrap();
        let mut got = vec![0u8; msg.len()];
        tcp.read_exact(&mut got).await.unwrap();
        assert_eq!(got, msg);
    }
    assert_eq!(
        metric(
            mesh.b.metrics,
            r#"sinew_tcp_connections_opened_total{direction="inbound",protocol="mesh_h1"}"#
        )
        .await,
        1.0
    );
}

#[tokio::test]
async fn unreachable_app_is_a_503_not_a_hang() {
    let closed = tokio::net::TcpListener::bind("127.0.0.1:0")
        .await
        .unwrap()
        .local_addr()
        .unwrap();
    let mesh = Mesh::start(closed.port()).await;
    let mut c = h1_client(mesh.outbound()).await;
    let rsp = c.send_request(get("/")).await.unwrap();
    assert_eq!(rsp.status(), 503);
}

#[tokio::test]
async fn app_errors_pass_through_unchanged() {
    let (app, _t) = start_echo_app().await;
    let mesh = Mesh::start(app.port()).await;
    let mut c = h1_client(mesh.outbound()).await;
    let rsp = c.send_request(get("/status/418")).await.unwrap();
    assert_eq!(rsp.status(), 418);
    assert!(rsp.headers().get("sinew-response-flags").is_none());
    let _ = BodyExt::collect(rsp.into_body()).await;
}
