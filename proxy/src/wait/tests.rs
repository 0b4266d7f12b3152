//! The wait against loopback servers, in paused time: every duration below is exact.

use super::*;
use std::sync::Arc;
use std::sync::atomic::{AtomicU32, Ordering};
use tokio::io::{AsyncReadExt as _, AsyncWriteExt as _};
use tokio::net::TcpListener;
use tokio::sync::mpsc;

const NOT_READY: &[u8] =
    b"HTTP/1.1 503 Service Unavailable\r\ncontent-length: 10\r\n\r\nnot ready\n";
const READY: &[u8] = b"HTTP/1.1 200 OK\r\ncontent-length: 6\r\n\r\nready\n";

/// A readiness endpoint on 127.0.0.1: the n-th request (from 1) gets `answer(n)` (`None`: no
/// answer, the connection held open). It counts requests, keeps the first request's text, and
/// reports each connection the client closes.
struct Server {
    port: u16,
    requests: Arc<AtomicU32>,
    first_request: Arc<std::sync::Mutex<String>>,
    closed: mpsc::UnboundedReceiver<()>,
}

async fn server(answer: fn(u32) -> Option<&'static [u8]>) -> Server {
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let port = listener.local_addr().unwrap().port();
    let requests = Arc::new(AtomicU32::new(0));
    let first_request = Arc::new(std::sync::Mutex::new(String::new()));
    let (closed_tx, closed) = mpsc::unbounded_channel();
    let (count, first) = (requests.clone(), first_request.clone());
    tokio::spawn(async move {
        loop {
            let (mut tcp, _) = listener.accept().await.unwrap();
            let (count, first, closed_tx) = (count.clone(), first.clone(), closed_tx.clone());
            tokio::spawn(async move {
                let mut head = Vec::new();
                let mut buf = [0u8; 1024];
                while !head.windows(4).any(|w| w == b"\r\n\r\n") {
                    match tcp.read(&mut buf).await {
                        Ok(0) | Err(_) => return,
                        Ok(n) => head.extend_from_slice(&buf[..n]),
                    }
                }
                let n = count.fetch_add(1, Ordering::SeqCst) + 1;
                if n == 1 {
                    *first.lock().unwrap() = String::from_utf8_lossy(&head).into_owned();
                }
                if let Some(bytes) = answer(n) {
                    let _ = tcp.write_all(bytes).await;
                }
                // Until the client lets go.
                while let Ok(n) = tcp.read(&mut buf).await {
                    if n == 0 {
                        break;
                    }
                }
                let _ = closed_tx.send(());
            });
        }
    });
    Server {
        port,
        requests,
        first_request,
        closed,
    }
}

fn url(port: u16) -> ReadyUrl {
    format!("http://127.0.0.1:{port}/healthz/ready")
        .parse()
        .unwrap()
}

const INTERVAL: Duration = Duration::from_millis(250);

#[tokio::test(start_paused = true)]
async fn returns_at_the_first_200_after_polling_an_interval_apart() {
    let mut s = server(|n| Some(if n < 4 { NOT_READY } else { READY })).await;
    let start = Instant::now();
    let attempts = until_ready(&url(s.port), Duration::from_secs(60), INTERVAL)
        .await
        .expect("ready at the fourth poll");
    assert_eq!(attempts, 4);
    assert_eq!(s.requests.load(Ordering::SeqCst), 4);
    assert_eq!(start.elapsed(), 3 * INTERVAL);
    let first = s.first_request.lock().unwrap().to_ascii_lowercase();
    assert!(
        first.starts_with("get /healthz/ready http/1.1\r\n"),
        "{first}"
    );
    assert!(
        first.contains(&format!("host: 127.0.0.1:{}\r\n", s.port)),
        "{first}"
    );
    // Every connection it opened is closed by the time it returns.
    for _ in 0..4 {
        tokio::time::timeout(Duration::from_secs(5), s.closed.recv())
            .await
            .expect("each connection is closed")
            .expect("the server runs");
    }
}

#[tokio::test(start_paused = true)]
async fn a_proxy_never_ready_fails_at_the_deadline_with_its_last_answer() {
    let s = server(|_| Some(NOT_READY)).await;
    let start = Instant::now();
    let err = until_ready(&url(s.port), Duration::from_secs(2), INTERVAL)
        .await
        .expect_err("never ready");
    assert_eq!(start.elapsed(), Duration::from_secs(2));
    // At 0, 0.25, …, 1.75 s: one poll per interval, none after the deadline.
    assert_eq!(err.attempts, 8);
    assert_eq!(s.requests.load(Ordering::SeqCst), 8);
    assert_eq!(err.last, Attempt::Answered(StatusCode::SERVICE_UNAVAILABLE));
    let line = err.to_string();
    assert_eq!(line.lines().count(), 1, "{line}");
    assert!(
        line.starts_with(&format!(
            "not ready after 2s (8 attempts): GET http://127.0.0.1:{}/healthz/ready answered 503 Service Unavailable; ",
            s.port
        )),
        "{line}"
    );
    assert!(
        line.contains("log says what the proxy is waiting for"),
        "{line}"
    );
}

#[tokio::test(start_paused = true)]
async fn nothing_listening_is_retried_once_per_interval_until_the_deadline() {
    // Bound then dropped: connecting is refused.
    let port = TcpListener::bind("127.0.0.1:0")
        .await
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    let start = Instant::now();
    let err = until_ready(&url(port), Duration::from_secs(2), INTERVAL)
        .await
        .expect_err("nothing there");
    assert_eq!(start.elapsed(), Duration::from_secs(2));
    assert_eq!(err.attempts, 8, "no spin: one connect per interval");
    let line = err.to_string();
    assert!(
        line.contains(&format!("failed: connect to 127.0.0.1:{port}: ")),
        "{line}"
    );
    assert!(line.contains("refused"), "{line}");
    assert!(line.contains("is `sinew-proxy run` running"), "{line}");
}

#[tokio::test(start_paused = true)]
async fn a_proxy_that_starts_listening_late_is_waited_for() {
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    drop(listener);
    let wait = tokio::spawn(async move {
        until_ready(&url(addr.port()), Duration::from_secs(60), INTERVAL).await
    });
    // The proxy binds its health port 1.1 s in, and is ready from the start.
    tokio::time::sleep(Duration::from_millis(1100)).await;
    let listener = TcpListener::bind(addr)
        .await
        .expect("the port is still free");
    let (mut tcp, _) = listener.accept().await.unwrap();
    let mut buf = [0u8; 1024];
    let _ = tcp.read(&mut buf).await.unwrap();
    tcp.write_all(READY).await.unwrap();
    // Refused at 0, 0.25, …, 1.0 s; answered at 1.25 s.
    assert_eq!(wait.await.unwrap().expect("ready"), 6);
}

#[tokio::test(start_paused = true)]
async fn a_server_that_never_answers_costs_one_attempt_timeout_per_attempt() {
    let mut s = server(|_| None).await;
    let start = Instant::now();
    let err = until_ready(&url(s.port), Duration::from_secs(3), INTERVAL)
        .await
        .expect_err("no answer");
    assert_eq!(start.elapsed(), Duration::from_secs(3));
    // 0–1 s, 1.25–2.25 s, then 2.5 s until the deadline: each on a fresh connection.
    assert_eq!(err.attempts, 3);
    assert_eq!(s.requests.load(Ordering::SeqCst), 3);
    assert_eq!(err.last, Attempt::NoAnswer(Duration::from_millis(500)));
    assert!(
        err.to_string().contains("had no answer within 500ms"),
        "{err}"
    );
    for _ in 0..3 {
        tokio::time::timeout(Duration::from_secs(5), s.closed.recv())
            .await
            .expect("each abandoned connection is closed")
            .expect("the server runs");
    }
}

#[tokio::test(start_paused = true)]
async fn an_answer_that_is_not_http_is_a_failed_attempt() {
    let s = server(|n| {
        Some(match n {
            1 => b"\x16\x03\x01\x00\x05hello\r\n\r\n".as_slice(),
            2 => b"HTTP/1.1 200 OK\r\nbad header\r\n\r\n".as_slice(),
            _ => READY,
        })
    })
    .await;
    assert_eq!(
        until_ready(&url(s.port), Duration::from_secs(60), INTERVAL)
            .await
            .expect("ready"),
        3
    );
}

#[tokio::test(start_paused = true)]
async fn only_200_is_ready() {
    let s = server(|n| {
        Some(match n {
            1 => b"HTTP/1.1 204 No Content\r\n\r\n".as_slice(),
            2 => b"HTTP/1.1 302 Found\r\nlocation: /\r\ncontent-length: 0\r\n\r\n".as_slice(),
            _ => READY,
        })
    })
    .await;
    assert_eq!(
        until_ready(&url(s.port), Duration::from_secs(60), INTERVAL)
            .await
            .expect("ready"),
        3
    );
}

#[test]
fn urls_are_checked_before_any_attempt() {
    let default: ReadyUrl = DEFAULT_URL.parse().unwrap();
    assert_eq!(
        (default.host.as_str(), default.port, default.path.as_str()),
        ("127.0.0.1", 15021, "/healthz/ready")
    );
    assert_eq!(default.to_string(), DEFAULT_URL);
    let v6: ReadyUrl = "http://[::1]:15021/healthz/ready?x=1".parse().unwrap();
    assert_eq!(
        (v6.host.as_str(), v6.authority.as_str()),
        ("::1", "[::1]:15021")
    );
    assert_eq!(v6.path.as_str(), "/healthz/ready?x=1");
    let bare: ReadyUrl = "http://localhost".parse().unwrap();
    assert_eq!((bare.port, bare.path.as_str()), (80, "/"));
    for (bad, says) in [
        ("https://127.0.0.1:15021/healthz/ready", "only http://"),
        ("127.0.0.1:15021", "only http://"),
        ("/healthz/ready", "only http://"),
        ("http://user@127.0.0.1:15021/", "user info"),
        ("http://127.0.0.1:0/", "\"0\" is not a port"),
        ("http://127.0.0.1:99999/", "\"99999\" is not a port"),
        ("http://[::1]:x/", "\"x\" is not a port"),
        ("http://127.0.0.1:15021/a b", "not a URL"),
        ("", "not a URL"),
    ] {
        let err = bad.parse::<ReadyUrl>().expect_err(bad);
        assert!(err.contains(says), "{bad}: {err}");
    }
}
