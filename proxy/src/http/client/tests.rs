use super::*;
use std::num::NonZeroU32;
use tokio::net::{TcpListener, TcpStream};

const CONNECT: Duration = Duration::from_secs(5);

/// A loopback listener that accepts and holds connections (the client's options are what we
/// inspect, so the server side does nothing).
async fn listener() -> (SocketAddr, tokio::task::JoinHandle<()>) {
    let l = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = l.local_addr().unwrap();
    let task = tokio::spawn(async move {
        let mut held = Vec::new();
        while let Ok((s, _)) = l.accept().await {
            held.push(s);
        }
    });
    (addr, task)
}

fn sock(s: &TcpStream) -> socket2::SockRef<'_> {
    socket2::SockRef::from(s)
}

#[tokio::test]
async fn a_keepalive_block_turns_so_keepalive_on_with_its_fields() {
    let (addr, _srv) = listener().await;
    let ka = TcpKeepalive {
        time: Some(Duration::from_secs(31)),
        interval: Some(Duration::from_secs(7)),
        probes: NonZeroU32::new(4),
    };
    let s = connect_tcp(addr, CONNECT, Some(&ka)).await.unwrap();
    assert!(sock(&s).keepalive().unwrap());
    assert_eq!(
        sock(&s).tcp_keepalive_time().unwrap(),
        Duration::from_secs(31)
    );
    assert_eq!(
        sock(&s).tcp_keepalive_interval().unwrap(),
        Duration::from_secs(7)
    );
    assert_eq!(sock(&s).tcp_keepalive_retries().unwrap(), 4);
}

#[tokio::test]
async fn no_keepalive_block_leaves_so_keepalive_off() {
    let (addr, _srv) = listener().await;
    let s = connect_tcp(addr, CONNECT, None).await.unwrap();
    assert!(!sock(&s).keepalive().unwrap());
}

#[tokio::test]
async fn unset_keepalive_fields_keep_the_os_defaults() {
    let (addr, _srv) = listener().await;
    // The OS defaults, read from a socket nobody configured.
    let plain = connect_tcp(addr, CONNECT, None).await.unwrap();
    let ka = TcpKeepalive {
        time: Some(Duration::from_secs(45)),
        ..TcpKeepalive::default()
    };
    let s = connect_tcp(addr, CONNECT, Some(&ka)).await.unwrap();
    assert!(sock(&s).keepalive().unwrap());
    assert_eq!(
        sock(&s).tcp_keepalive_time().unwrap(),
        Duration::from_secs(45)
    );
    assert_ne!(
        sock(&plain).tcp_keepalive_time().unwrap(),
        Duration::from_secs(45),
        "the default must differ from the configured time for this test to mean anything"
    );
    assert_eq!(
        sock(&s).tcp_keepalive_interval().unwrap(),
        sock(&plain).tcp_keepalive_interval().unwrap()
    );
    assert_eq!(
        sock(&s).tcp_keepalive_retries().unwrap(),
        sock(&plain).tcp_keepalive_retries().unwrap()
    );

    // An empty block still turns keep-alive on, with every OS default.
    let empty = connect_tcp(addr, CONNECT, Some(&TcpKeepalive::default()))
        .await
        .unwrap();
    assert!(sock(&empty).keepalive().unwrap());
    assert_eq!(
        sock(&empty).tcp_keepalive_time().unwrap(),
        sock(&plain).tcp_keepalive_time().unwrap()
    );
}

#[tokio::test]
async fn sub_second_keepalive_durations_round_up_to_whole_seconds() {
    let (addr, _srv) = listener().await;
    let ka = TcpKeepalive {
        time: Some(Duration::from_millis(1500)),
        interval: Some(Duration::from_millis(200)),
        probes: None,
    };
    let s = connect_tcp(addr, CONNECT, Some(&ka)).await.unwrap();
    assert_eq!(
        sock(&s).tcp_keepalive_time().unwrap(),
        Duration::from_secs(2)
    );
    assert_eq!(
        sock(&s).tcp_keepalive_interval().unwrap(),
        Duration::from_secs(1)
    );
}

#[tokio::test]
async fn plaintext_http2_dials_carry_the_destination_keepalive() {
    let (addr, _srv) = listener().await;
    let ka = TcpKeepalive {
        time: Some(Duration::from_secs(12)),
        ..TcpKeepalive::default()
    };
    let s = plain::dial(addr, None, CONNECT, Some(&ka)).await.unwrap();
    assert!(sock(&s).keepalive().unwrap());
    assert_eq!(
        sock(&s).tcp_keepalive_time().unwrap(),
        Duration::from_secs(12)
    );
    let s = plain::dial(addr, None, CONNECT, None).await.unwrap();
    assert!(!sock(&s).keepalive().unwrap());
}

// --- the plaintext HTTP/1 pool against a real server ---

mod h1_server {
    use bytes::Bytes;
    use http::{Request, Response};
    use http_body_util::Full;
    use hyper::body::Incoming;
    use hyper_util::rt::TokioIo;
    use std::convert::Infallible;
    use std::net::SocketAddr;
    use std::sync::Arc;
    use std::sync::atomic::{AtomicUsize, Ordering};
    use tokio::net::TcpListener;

    /// An HTTP/1 keep-alive server counting connections and requests that asked to close.
    pub struct Server {
        pub addr: SocketAddr,
        accepted: Arc<AtomicUsize>,
        closing: Arc<AtomicUsize>,
    }

    impl Server {
        pub async fn start() -> Self {
            let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
            let addr = listener.local_addr().unwrap();
            let accepted = Arc::new(AtomicUsize::new(0));
            let closing = Arc::new(AtomicUsize::new(0));
            let (count, close) = (accepted.clone(), closing.clone());
            tokio::spawn(async move {
                while let Ok((tcp, _)) = listener.accept().await {
                    count.fetch_add(1, Ordering::SeqCst);
                    let close = close.clone();
                    let svc = hyper::service::service_fn(move |req: Request<Incoming>| {
                        if req
                            .headers()
                            .get(http::header::CONNECTION)
                            .is_some_and(|v| v == "close")
                        {
                            close.fetch_add(1, Ordering::SeqCst);
                        }
                        async {
                            Ok::<_, Infallible>(Response::new(Full::new(Bytes::from_static(b"ok"))))
                        }
                    });
                    tokio::spawn(
                        hyper::server::conn::http1::Builder::new()
                            .serve_connection(TokioIo::new(tcp), svc),
                    );
                }
            });
            Self {
                addr,
                accepted,
                closing,
            }
        }

        pub fn accepted(&self) -> usize {
            self.accepted.load(Ordering::SeqCst)
        }

        pub fn closing(&self) -> usize {
            self.closing.load(Ordering::SeqCst)
        }
    }
}

type Plain = PlainClient<http_body_util::Empty<bytes::Bytes>>;

fn plain() -> Plain {
    PlainClient::new(CONNECT, Duration::from_secs(300), None)
}

fn max_requests(n: u32) -> ConnPolicy {
    ConnPolicy {
        reuse: Reuse {
            max_requests: NonZeroU32::new(n),
            ..Reuse::default()
        },
        keepalive: None,
    }
}

/// Sends a GET and reads the whole response; then waits until the connection is back in the
/// pool (`pooled` idle connections), which happens on another task.
async fn get(client: &Plain, addr: SocketAddr, policy: ConnPolicy, pooled: usize) {
    use http_body_util::BodyExt;
    let req = http::Request::builder()
        .uri(format!("http://{addr}/"))
        .body(http_body_util::Empty::new())
        .unwrap();
    let rsp = client.send(addr, policy, req).await.unwrap();
    assert_eq!(rsp.status(), 200);
    let body = rsp.into_body().collect().await.unwrap().to_bytes();
    assert_eq!(&body[..], b"ok");
    for _ in 0..10_000 {
        if client.idle_h1(addr, policy) == pooled {
            return;
        }
        tokio::task::yield_now().await;
    }
    panic!(
        "expected {pooled} pooled connections, found {}",
        client.idle_h1(addr, policy)
    );
}

#[tokio::test]
async fn plaintext_http1_reuses_one_keepalive_connection() {
    let srv = h1_server::Server::start().await;
    let client = plain();
    for _ in 0..4 {
        get(&client, srv.addr, ConnPolicy::default(), 1).await;
    }
    assert_eq!(srv.accepted(), 1);
    assert_eq!(srv.closing(), 0);
}

#[tokio::test]
async fn plaintext_max_requests_per_connection_1_means_no_keepalive() {
    let srv = h1_server::Server::start().await;
    let client = plain();
    for _ in 0..3 {
        get(&client, srv.addr, max_requests(1), 0).await;
    }
    assert_eq!(srv.accepted(), 3, "a connection per request");
    assert_eq!(srv.closing(), 3, "each request said connection: close");
}

#[tokio::test]
async fn plaintext_max_requests_per_connection_opens_a_new_connection_after_that_many() {
    let srv = h1_server::Server::start().await;
    let client = plain();
    // Two requests per connection: pooled after the 1st, 3rd, 5th; closed after the 2nd, 4th.
    for i in 0..5 {
        get(&client, srv.addr, max_requests(2), usize::from(i % 2 == 0)).await;
    }
    assert_eq!(srv.accepted(), 3);
    assert_eq!(srv.closing(), 2);
}

#[tokio::test]
async fn destinations_with_different_policies_do_not_share_plaintext_connections() {
    let srv = h1_server::Server::start().await;
    let client = plain();
    get(&client, srv.addr, ConnPolicy::default(), 1).await;
    get(&client, srv.addr, max_requests(5), 1).await;
    get(&client, srv.addr, ConnPolicy::default(), 1).await;
    assert_eq!(srv.accepted(), 2);
}

/// An upstream that answers the first request on a connection with two responses (the second
/// smuggled right behind the first) and every other request normally.
async fn smuggling_upstream() -> SocketAddr {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let l = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = l.local_addr().unwrap();
    tokio::spawn(async move {
        let mut first_connection = true;
        while let Ok((mut s, _)) = l.accept().await {
            let smuggle = std::mem::replace(&mut first_connection, false);
            tokio::spawn(async move {
                let mut buf = vec![0u8; 4096];
                let mut seen = Vec::new();
                let mut answered = 0;
                loop {
                    let Ok(n) = s.read(&mut buf).await else {
                        return;
                    };
                    if n == 0 {
                        return;
                    }
                    seen.extend_from_slice(&buf[..n]);
                    while let Some(end) = seen.windows(4).position(|w| w == b"\r\n\r\n") {
                        seen.drain(..end + 4);
                        let reply: &[u8] = if smuggle && answered == 0 {
                            b"HTTP/1.1 200 OK\r\ncontent-length: 2\r\n\r\nok\
                              HTTP/1.1 200 OK\r\ncontent-length: 7\r\n\r\nsmuggle"
                        } else {
                            b"HTTP/1.1 200 OK\r\ncontent-length: 5\r\n\r\nfresh"
                        };
                        answered += 1;
                        if s.write_all(reply).await.is_err() {
                            return;
                        }
                    }
                }
            });
        }
    });
    addr
}

#[tokio::test]
async fn a_response_smuggled_behind_another_never_reaches_the_next_request() {
    use http_body_util::BodyExt;
    let addr = smuggling_upstream().await;
    let client = plain();
    let policy = ConnPolicy::default();
    let mut bodies = Vec::new();
    for _ in 0..3 {
        let req = http::Request::builder()
            .uri(format!("http://{addr}/"))
            .body(http_body_util::Empty::new())
            .unwrap();
        match client.send(addr, policy, req).await {
            Ok(rsp) => bodies.push(rsp.into_body().collect().await.unwrap().to_bytes()),
            // A connection that went bad may fail the request that drew it; never with the
            // smuggled bytes.
            Err(e) => bodies.push(bytes::Bytes::from(format!("error: {e}"))),
        }
        // Give the connection every chance to be pooled (or dropped) before the next request.
        for _ in 0..1000 {
            tokio::task::yield_now().await;
        }
    }
    assert_eq!(bodies[0], "ok");
    assert!(
        bodies.iter().all(|b| b != "smuggle"),
        "a smuggled response was served: {bodies:?}"
    );
    assert!(
        bodies[1..].iter().any(|b| b == "fresh"),
        "later requests are served by a fresh connection: {bodies:?}"
    );
}
