//! A client's malformed request is the client's error (400), never blamed on the upstream
//! (503 UC). Each case sends the exact bytes.

mod support;

use support::*;

/// The status line and the whole exchange.
async fn exchange(bytes: &[u8]) -> String {
    let (app, _task) = start_echo_app().await;
    let mesh = Mesh::start(app.port()).await;
    raw_exchange(mesh.outbound(), bytes).await
}

#[tokio::test]
async fn a_host_with_a_space_is_answered_400_not_503() {
    let out = exchange(b"GET / HTTP/1.1\r\nHost: bad host\r\n\r\n").await;
    assert!(out.starts_with("HTTP/1.1 400 "), "{out}");
    assert!(out.contains("sinew-response-flags: DPE"), "{out}");
    assert!(
        out.contains(r#"Host header "bad host" is not a valid host[:port]"#),
        "{out}"
    );
}

#[tokio::test]
async fn a_host_with_an_out_of_range_port_is_answered_400() {
    let out = exchange(b"GET / HTTP/1.1\r\nHost: server:99999\r\n\r\n").await;
    assert!(out.starts_with("HTTP/1.1 400 "), "{out}");
}

#[tokio::test]
async fn two_host_headers_are_answered_400() {
    let out = exchange(b"GET / HTTP/1.1\r\nHost: a\r\nHost: b\r\n\r\n").await;
    assert!(out.starts_with("HTTP/1.1 400 "), "{out}");
    assert!(out.contains("more than one Host header"), "{out}");
}

#[tokio::test]
async fn an_empty_host_still_reaches_the_service() {
    let out = exchange(b"GET / HTTP/1.1\r\nHost: \r\nConnection: close\r\n\r\n").await;
    assert!(out.starts_with("HTTP/1.1 200 "), "{out}");
}
