//! A 100 MiB body streams through both proxies without the proxies buffering it.
//! (Its own test binary so the peak-RSS measurement sees only this test.)

mod support;

use bytes::Bytes;
use http_body_util::StreamBody;
use hyper::Request;
use hyper::body::Frame;
use support::*;

fn vm_hwm_kib() -> u64 {
    let status = std::fs::read_to_string("/proc/self/status").unwrap();
    status
        .lines()
        .find_map(|l| l.strip_prefix("VmHWM:"))
        .and_then(|v| v.trim().trim_end_matches(" kB").parse().ok())
        .unwrap()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_100_mib_body_streams_through_without_memory_growth() {
    const TOTAL: u64 = 100 * 1024 * 1024;
    const CHUNK: usize = 64 * 1024;
    let (app, _t) = start_echo_app().await;
    let mesh = Mesh::start(app.port()).await;
    // Warm up so connection set-up is not counted as growth.
    let mut c = h1_client(mesh.outbound()).await;
    let rsp = c.send_request(get("/")).await.unwrap();
    body_string(rsp).await;
    let before = vm_hwm_kib();

    let chunk = Bytes::from(vec![7u8; CHUNK]);
    let stream = futures_util::stream::iter(
        (0..TOTAL / CHUNK as u64)
            .map(move |_| Ok::<_, std::convert::Infallible>(Frame::data(chunk.clone()))),
    );
    let req = Request::post("/count")
        .header("host", "server.default:8080")
        .body(StreamBody::new(stream))
        .unwrap();
    let tcp = tokio::net::TcpStream::connect(mesh.outbound())
        .await
        .unwrap();
    let (mut send, conn) = hyper::client::conn::http1::handshake(hyper_util::rt::TokioIo::new(tcp))
        .await
        .unwrap();
    tokio::spawn(conn);
    let rsp = send.send_request(req).await.unwrap();
    assert_eq!(rsp.status(), 200);
    assert_eq!(body_string(rsp).await, TOTAL.to_string());
    let growth_mib = (vm_hwm_kib().saturating_sub(before)) / 1024;
    // Client, two proxies and the app share this process; buffering the body anywhere would
    // show up as ~100 MiB. Flow-control windows and buffers allow a few MiB.
    assert!(
        growth_mib < 32,
        "peak RSS grew by {growth_mib} MiB while streaming 100 MiB"
    );
}
