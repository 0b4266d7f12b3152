//! A 100 MiB body streams through both proxies without the proxies holding it back.
//!
//! Proven by order, not by memory or time: the client sends each chunk only once the app has
//! received all but the last [`AHEAD`] bytes sent. A proxy that buffered the body (or any part
//! of it larger than that) before forwarding would stall the upload. Peak memory while
//! streaming is a benchmark's measurement, not this test's.

mod support;

use bytes::Bytes;
use http_body_util::{BodyExt, Full, StreamBody};
use hyper::body::{Frame, Incoming};
use hyper::{Request, Response};
use hyper_util::rt::{TokioExecutor, TokioIo};
use std::time::Duration;
use support::*;
use tokio::sync::watch;

const TOTAL: u64 = 100 * 1024 * 1024;
const CHUNK: usize = 64 * 1024;
/// How far the client may run ahead of the app: far below the body's size, far above what
/// sockets and HTTP/2 windows hold in flight.
const AHEAD: u64 = 8 * 1024 * 1024;

/// An app that publishes how many body bytes it has received so far.
async fn start_progress_app() -> (std::net::SocketAddr, watch::Receiver<u64>) {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let (tx, rx) = watch::channel(0u64);
    tokio::spawn(async move {
        loop {
            let Ok((tcp, _)) = listener.accept().await else {
                continue;
            };
            let tx = tx.clone();
            tokio::spawn(async move {
                let svc = hyper::service::service_fn(move |req: Request<Incoming>| {
                    let tx = tx.clone();
                    async move {
                        let mut body = req.into_body();
                        let mut n = 0u64;
                        while let Some(frame) = body.frame().await {
                            if let Ok(d) = frame?.into_data() {
                                n += d.len() as u64;
                                tx.send_replace(n);
                            }
                        }
                        Ok::<_, hyper::Error>(Response::new(Full::<Bytes>::from(n.to_string())))
                    }
                });
                let _ = hyper_util::server::conn::auto::Builder::new(TokioExecutor::new())
                    .serve_connection(TokioIo::new(tcp), svc)
                    .await;
            });
        }
    });
    (addr, rx)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_100_mib_body_reaches_the_app_while_it_is_still_being_sent() {
    let (app, at_app) = start_progress_app().await;
    let mesh = Mesh::start(app.port()).await;
    let chunk = Bytes::from(vec![7u8; CHUNK]);
    let chunks = TOTAL / CHUNK as u64;
    let sent = std::sync::Arc::new(std::sync::atomic::AtomicU64::new(0));
    let sent_count = sent.clone();
    let stream = futures_util::stream::unfold((0u64, at_app.clone()), move |(k, mut at_app)| {
        let chunk = chunk.clone();
        let sent = sent_count.clone();
        async move {
            if k == chunks {
                return None;
            }
            let before = k * CHUNK as u64;
            at_app
                .wait_for(|&got| got + AHEAD >= before)
                .await
                .expect("the app is running");
            sent.store(before + CHUNK as u64, std::sync::atomic::Ordering::SeqCst);
            Some((
                Ok::<_, std::convert::Infallible>(Frame::data(chunk)),
                (k + 1, at_app),
            ))
        }
    });
    let req = Request::post("/count")
        .header("host", "server.default:8080")
        .body(StreamBody::new(stream))
        .unwrap();
    let tcp = tokio::net::TcpStream::connect(mesh.outbound())
        .await
        .unwrap();
    let (mut send, conn) = hyper::client::conn::http1::handshake(TokioIo::new(tcp))
        .await
        .unwrap();
    tokio::spawn(conn);
    // A stall never resolves; the bound only turns it into a failure with the numbers.
    let exchange = async {
        let rsp = send.send_request(req).await.unwrap();
        assert_eq!(rsp.status(), 200);
        body_string(rsp).await
    };
    let Ok(body) = tokio::time::timeout(Duration::from_secs(120), exchange).await else {
        panic!(
            "the upload stalled: {} bytes sent, {} at the app; something holds back more than {AHEAD}",
            sent.load(std::sync::atomic::Ordering::SeqCst),
            *at_app.borrow()
        );
    };
    assert_eq!(body, TOTAL.to_string());
}
