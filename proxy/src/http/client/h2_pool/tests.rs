use super::*;

#[tokio::test(start_paused = true)]
async fn reuse_retires_a_connection_after_max_requests_age_or_idleness() {
    let born = Instant::now();
    let unlimited = Reuse::default();
    assert!(unlimited.allows(born, born, u32::MAX - 1, born + Duration::from_secs(86400)));

    let ten = Reuse {
        max_requests: NonZeroU32::new(10),
        ..Reuse::default()
    };
    assert!(ten.allows(born, born, 9, born));
    assert!(
        !ten.allows(born, born, 10, born),
        "the 11th request needs a new connection"
    );

    let aged = Reuse {
        max_age: Some(Duration::from_secs(60)),
        ..Reuse::default()
    };
    tokio::time::advance(Duration::from_secs(59)).await;
    assert!(aged.allows(born, Instant::now(), 0, Instant::now()));
    tokio::time::advance(Duration::from_secs(1)).await;
    assert!(!aged.allows(born, Instant::now(), 0, Instant::now()));

    let idle = Reuse {
        idle: Some(Duration::from_secs(5)),
        ..Reuse::default()
    };
    let used = Instant::now();
    tokio::time::advance(Duration::from_secs(4)).await;
    assert!(idle.allows(born, used, 0, Instant::now()));
    tokio::time::advance(Duration::from_secs(1)).await;
    assert!(!idle.allows(born, used, 0, Instant::now()));
}

// --- a real HTTP/2 server on loopback ---

mod server {
    use bytes::Bytes;
    use http::{Request, Response};
    use http_body_util::combinators::BoxBody;
    use http_body_util::{BodyExt, Full, StreamBody};
    use hyper::body::{Frame, Incoming};
    use hyper_util::rt::{TokioExecutor, TokioIo};
    use std::convert::Infallible;
    use std::net::SocketAddr;
    use std::sync::Arc;
    use std::sync::atomic::{AtomicUsize, Ordering};
    use tokio::net::TcpListener;
    use tokio::sync::Barrier;

    /// Answers `x-hold` requests once `hold` is reached by that many of them, `x-endless`
    /// requests with headers and a body that never ends, others at once.
    pub struct Server {
        pub addr: SocketAddr,
        accepted: Arc<AtomicUsize>,
    }

    impl Server {
        pub async fn start(hold: usize) -> Self {
            let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
            let addr = listener.local_addr().unwrap();
            let accepted = Arc::new(AtomicUsize::new(0));
            let barrier = Arc::new(Barrier::new(hold));
            let count = accepted.clone();
            tokio::spawn(async move {
                while let Ok((tcp, _)) = listener.accept().await {
                    count.fetch_add(1, Ordering::SeqCst);
                    let barrier = barrier.clone();
                    let svc = hyper::service::service_fn(move |req: Request<Incoming>| {
                        let barrier = barrier.clone();
                        async move { Ok::<_, Infallible>(answer(req, &barrier).await) }
                    });
                    tokio::spawn(
                        hyper::server::conn::http2::Builder::new(TokioExecutor::new())
                            .serve_connection(TokioIo::new(tcp), svc),
                    );
                }
            });
            Self { addr, accepted }
        }

        /// Connections accepted so far.
        pub fn accepted(&self) -> usize {
            self.accepted.load(Ordering::SeqCst)
        }
    }

    async fn answer(
        req: Request<Incoming>,
        barrier: &Barrier,
    ) -> Response<BoxBody<Bytes, Infallible>> {
        if req.headers().contains_key("x-hold") {
            barrier.wait().await;
        }
        if req.headers().contains_key("x-endless") {
            let endless = futures_util::stream::pending::<Result<Frame<Bytes>, Infallible>>();
            return Response::new(StreamBody::new(endless).boxed());
        }
        Response::new(Full::new(Bytes::from_static(b"ok")).boxed())
    }
}

type TestBody = http_body_util::Empty<bytes::Bytes>;
type Pool = H2Pool<&'static str, TestBody>;

fn streams(n: u32) -> Reuse {
    Reuse {
        max_streams: NonZeroU32::new(n),
        ..Reuse::default()
    }
}

/// Checks a connection out of `pool` (dialling `addr` if needed) and sends a request with
/// `header`; returns the response with its body holding the stream.
async fn request(
    pool: &Pool,
    addr: std::net::SocketAddr,
    reuse: Reuse,
    header: &'static str,
) -> http::Response<crate::http::body::UpstreamBody> {
    let Lease { mut send, stream } = pool
        .get_with(&"peer", reuse, move || async move {
            let io = tokio::net::TcpStream::connect(addr)
                .await
                .map_err(|source| ProxyError::Connect { addr, source })?;
            crate::http::client::h2_handshake(io, addr, Default::default()).await
        })
        .await
        .unwrap();
    let req = http::Request::builder()
        .uri("http://peer/")
        .version(http::Version::HTTP_2)
        .header(header, "1")
        .body(TestBody::new())
        .unwrap();
    let (req, _) = crate::http::body::track(req);
    let rsp = send.send_request(req).await.unwrap();
    rsp.map(|b| crate::http::body::UpstreamBody::new(b, stream))
}

async fn read_all(rsp: http::Response<crate::http::body::UpstreamBody>) {
    use http_body_util::BodyExt;
    let body = rsp.into_body().collect().await.unwrap().to_bytes();
    assert_eq!(&body[..], b"ok");
}

/// Five concurrent requests the server holds until all five have arrived, each read to its end.
async fn five_held_requests(pool: &Arc<Pool>, addr: std::net::SocketAddr, reuse: Reuse) {
    let tasks: Vec<_> = (0..5)
        .map(|_| {
            let pool = pool.clone();
            tokio::spawn(async move { read_all(request(&pool, addr, reuse, "x-hold").await).await })
        })
        .collect();
    for t in tasks {
        t.await.unwrap();
    }
}

#[tokio::test]
async fn max_concurrent_streams_opens_another_connection_when_every_one_is_full() {
    let srv = server::Server::start(5).await;
    let pool = Arc::new(Pool::new());
    // Five requests the server holds until all five have arrived: with two streams per
    // connection they need three connections.
    five_held_requests(&pool, srv.addr, streams(2)).await;
    assert_eq!(srv.accepted(), 3);
    assert_eq!(pool.connections(&"peer"), 3);

    // All streams are back: new requests, even two at once, reuse the open connections.
    for _ in 0..3 {
        read_all(request(&pool, srv.addr, streams(2), "x-quick").await).await;
    }
    let (a, b) = tokio::join!(
        request(&pool, srv.addr, streams(2), "x-quick"),
        request(&pool, srv.addr, streams(2), "x-quick"),
    );
    read_all(a).await;
    read_all(b).await;
    assert_eq!(srv.accepted(), 3);
}

#[tokio::test]
async fn without_max_concurrent_streams_concurrent_requests_share_one_connection() {
    let srv = server::Server::start(5).await;
    let pool = Arc::new(Pool::new());
    five_held_requests(&pool, srv.addr, Reuse::default()).await;
    assert_eq!(srv.accepted(), 1);
}

#[tokio::test]
async fn a_stream_counts_until_its_response_body_ends_or_is_dropped() {
    let srv = server::Server::start(1).await;
    let pool = Pool::new();
    // Headers are in, the body is still streaming: the only stream of connection 1 is taken.
    let open = request(&pool, srv.addr, streams(1), "x-endless").await;
    read_all(request(&pool, srv.addr, streams(1), "x-quick").await).await;
    assert_eq!(
        srv.accepted(),
        2,
        "a second connection while the first body streams"
    );

    // Dropping the unfinished body frees its stream; a finished body freed the other one.
    drop(open);
    for _ in 0..3 {
        read_all(request(&pool, srv.addr, streams(1), "x-quick").await).await;
    }
    assert_eq!(srv.accepted(), 2);
}
