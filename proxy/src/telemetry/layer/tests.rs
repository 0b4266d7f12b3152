use super::*;
use crate::metrics::Metrics;
use crate::telemetry::access_log::AccessLog;
use crate::telemetry::access_log::Format;
use crate::telemetry::trace::Tracer;
use crate::telemetry::{UpstreamInfo, peer};
use bytes::Bytes;
use http::HeaderMap;
use http_body_util::BodyExt;
use prometheus_client::metrics::counter::Counter;
use std::io;
use std::time::Duration;
use tokio::sync::mpsc;
use tower::{Service, ServiceExt};

const CLIENT_ID: &str = "spiffe://cluster.local/ns/default/sa/productpage";
const SERVER_ID: &str = "spiffe://cluster.local/ns/default/sa/reviews";
const REVIEWS: &str = "reviews.default.svc.cluster.local";

/// A response body the test feeds frame by frame.
struct TestBody(mpsc::UnboundedReceiver<Result<Frame<Bytes>, io::Error>>);

impl Body for TestBody {
    type Data = Bytes;
    type Error = io::Error;

    fn poll_frame(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, io::Error>>> {
        self.0.poll_recv(cx)
    }
}

impl FromUpstream for TestBody {
    fn upstream(&self) -> Option<&Upstream> {
        None
    }
}

type Feed = mpsc::UnboundedSender<Result<Frame<Bytes>, io::Error>>;

/// What the inner services receive: the client's body, metered.
type ReqBody = RequestBytes<http_body_util::Full<Bytes>>;

fn req() -> Request<http_body_util::Full<Bytes>> {
    Request::new(http_body_util::Full::default())
}

fn workload(name: &str) -> Workload {
    Workload {
        name: Arc::from(name),
        namespace: Arc::from("default"),
        app: Arc::from(name),
        version: Arc::from("v1"),
        canonical_service: Arc::from(name),
        canonical_revision: Arc::from("v1"),
    }
}

/// A channel sink: the access-log writer's lines arrive here.
struct Lines(std::sync::mpsc::Sender<String>);

impl std::io::Write for Lines {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        let _ = self.0.send(String::from_utf8_lossy(buf).into_owned());
        Ok(buf.len())
    }
    fn flush(&mut self) -> io::Result<()> {
        Ok(())
    }
}

struct Harness {
    metrics: Arc<Metrics>,
    lines: std::sync::mpsc::Receiver<String>,
}

fn reports(own: &str, own_id: &str, log: Option<Format>) -> (Reports, Harness) {
    let metrics = Arc::new(Metrics::new());
    let (tx, lines) = std::sync::mpsc::channel();
    let log = Arc::new(AccessLog::with_sink(
        log,
        Counter::default(),
        Box::new(Lines(tx)),
        16,
    ));
    let r = Reports {
        metrics: metrics.clone(),
        tracer: Tracer::disabled(),
        log,
        own: Arc::new(workload(own)),
        own_principal: Arc::from(own_id),
    };
    (r, Harness { metrics, lines })
}

/// An inner service answering `status` with a body the test feeds, after recording the request
/// headers it saw.
#[allow(clippy::type_complexity)]
fn answering(
    status: u16,
    ext: Option<Upstream>,
    seen: mpsc::UnboundedSender<HeaderMap>,
) -> (
    impl tower::Service<
        Request<ReqBody>,
        Response = Response<TestBody>,
        Error = Infallible,
        Future = std::future::Ready<Result<Response<TestBody>, Infallible>>,
    > + Clone,
    mpsc::UnboundedReceiver<Feed>,
) {
    let (feeds_tx, feeds) = mpsc::unbounded_channel();
    let svc = tower::service_fn(move |req: Request<ReqBody>| {
        let _ = seen.send(req.headers().clone());
        let (tx, rx) = mpsc::unbounded_channel();
        let _ = feeds_tx.send(tx);
        let mut rsp = Response::new(TestBody(rx));
        *rsp.status_mut() = http::StatusCode::from_u16(status).expect("status");
        if let Some(u) = ext.clone() {
            rsp.extensions_mut().insert(u);
        }
        std::future::ready(Ok::<_, Infallible>(rsp))
    });
    (svc, feeds)
}

fn count(h: &Harness, has: &[&str]) -> Option<String> {
    let text = h.metrics.encode();
    text.lines()
        .find(|l| l.starts_with("istio_requests_total") && has.iter().all(|x| l.contains(x)))
        .map(|l| l.rsplit(' ').next().unwrap_or("").to_string())
}

fn duration_sum(h: &Harness) -> Option<String> {
    let text = h.metrics.encode();
    text.lines()
        .find(|l| l.starts_with("istio_request_duration_milliseconds_sum"))
        .map(|l| l.rsplit(' ').next().unwrap_or("").to_string())
}

fn upstream() -> Upstream {
    let mut ep = crate::config::Endpoint::plain("10.1.0.7:9080".parse().expect("addr"));
    ep.identity = Some(crate::tls::Identity::parse(SERVER_ID).expect("id"));
    ep.workload = Some(Arc::new(workload("reviews-v1")));
    Upstream(Arc::new(UpstreamInfo::new(
        &ep,
        &Arc::from(REVIEWS),
        Some(9080),
        Some("v1"),
        true,
    )))
}

#[tokio::test(start_paused = true)]
async fn a_request_is_reported_when_its_body_ends_timed_to_the_last_byte() {
    let (r, h) = reports("productpage-v1", CLIENT_ID, None);
    let (seen_tx, _seen) = mpsc::unbounded_channel();
    let (inner, mut feeds) = answering(200, Some(upstream()), seen_tx);
    let conn = Conn::outbound(r, Arc::from(REVIEWS), None, None);
    let mut svc = Observe::new(inner, conn);
    let rsp = svc.ready().await.expect("ready").call(req()).await;
    let Ok(rsp) = rsp;
    let feed = feeds.recv().await.expect("feed");
    tokio::time::advance(Duration::from_millis(30)).await;
    feed.send(Ok(Frame::data(Bytes::from_static(b"hello"))))
        .expect("body");
    let mut body = rsp.into_body();
    let first = body.frame().await.expect("frame").expect("data");
    assert_eq!(first.data_ref().map(|d| d.len()), Some(5));
    // Not reported before the end.
    assert_eq!(count(&h, &[]), None);
    tokio::time::advance(Duration::from_millis(20)).await;
    feed.send(Ok(Frame::data(Bytes::from_static(b"!!"))))
        .expect("body");
    drop(feed);
    while body.frame().await.is_some() {}
    let reported = [
        "reporter=\"source\"",
        "source_workload=\"productpage-v1\"",
        "destination_workload=\"reviews-v1\"",
        "destination_principal=\"spiffe://cluster.local/ns/default/sa/reviews\"",
        "destination_service=\"reviews.default.svc.cluster.local\"",
        "connection_security_policy=\"unknown\"",
        "response_code=\"200\"",
        "response_flags=\"-\"",
    ];
    assert_eq!(
        count(&h, &reported).as_deref(),
        Some("1"),
        "{}",
        h.metrics.encode()
    );
    assert_eq!(duration_sum(&h).as_deref(), Some("50.0"));
    assert!(
        h.metrics
            .encode()
            .lines()
            .any(|l| l.starts_with("istio_response_bytes_sum") && l.ends_with(" 7.0"))
    );
    drop(body);
    // Dropping the finished body reports nothing more.
    assert_eq!(count(&h, &[]).as_deref(), Some("1"));
}

#[tokio::test(start_paused = true)]
async fn a_body_that_fails_is_reported_with_ur_and_one_dropped_early_with_dc() {
    let (r, h) = reports("productpage-v1", CLIENT_ID, None);
    let (seen_tx, _seen) = mpsc::unbounded_channel();
    let (inner, mut feeds) = answering(200, Some(upstream()), seen_tx);
    let conn = Conn::outbound(r, Arc::from(REVIEWS), None, None);
    let mut svc = Observe::new(inner, conn);

    let Ok(rsp) = svc.ready().await.expect("ready").call(req()).await;
    let feed = feeds.recv().await.expect("feed");
    feed.send(Err(io::Error::other("reset"))).expect("body");
    let mut body = rsp.into_body();
    assert!(body.frame().await.expect("frame").is_err());
    assert_eq!(count(&h, &["response_flags=\"UR\""]).as_deref(), Some("1"));

    let Ok(rsp) = svc.ready().await.expect("ready").call(req()).await;
    let feed = feeds.recv().await.expect("feed");
    feed.send(Ok(Frame::data(Bytes::from_static(b"part"))))
        .expect("body");
    let mut body = rsp.into_body();
    let _ = body.frame().await;
    drop(body);
    assert_eq!(count(&h, &["response_flags=\"DC\""]).as_deref(), Some("1"));
    assert_eq!(count(&h, &["response_flags=\"-\""]), None);
}

#[tokio::test(start_paused = true)]
async fn a_request_dropped_before_its_response_is_code_0_dc() {
    let (r, h) = reports("productpage-v1", CLIENT_ID, None);
    let inner = tower::service_fn(|_req: Request<ReqBody>| {
        std::future::pending::<Result<Response<TestBody>, Infallible>>()
    });
    let conn = Conn::outbound(r, Arc::from(REVIEWS), None, None);
    let mut svc = Observe::new(inner, conn);
    let fut = svc.ready().await.expect("ready").call(req());
    drop(fut);
    let reported = [
        "response_code=\"0\"",
        "response_flags=\"DC\"",
        // No endpoint answered: the connection's service, destination unknown.
        "destination_service=\"reviews.default.svc.cluster.local\"",
        "destination_workload=\"unknown\"",
    ];
    assert_eq!(
        count(&h, &reported).as_deref(),
        Some("1"),
        "{}",
        h.metrics.encode()
    );
}

#[tokio::test(start_paused = true)]
async fn grpc_status_comes_from_trailers_or_a_trailers_only_response() {
    let (r, h) = reports("productpage-v1", CLIENT_ID, None);
    let (seen_tx, _seen) = mpsc::unbounded_channel();
    let (inner, mut feeds) = answering(200, Some(upstream()), seen_tx);
    let conn = Conn::outbound(r, Arc::from(REVIEWS), None, None);
    let mut svc = Observe::new(inner.clone(), conn.clone());
    let grpc = || {
        let mut req = req();
        req.headers_mut().insert(
            http::header::CONTENT_TYPE,
            HeaderValue::from_static("application/grpc+proto"),
        );
        req
    };
    let Ok(rsp) = svc.ready().await.expect("ready").call(grpc()).await;
    let feed = feeds.recv().await.expect("feed");
    let mut trailers = HeaderMap::new();
    trailers.insert(&GRPC_STATUS, HeaderValue::from_static("7"));
    feed.send(Ok(Frame::trailers(trailers))).expect("body");
    drop(feed);
    let _ = rsp.into_body().collect().await;
    let with = |s: &str| {
        count(
            &h,
            &[
                "request_protocol=\"grpc\"",
                &format!("grpc_response_status=\"{s}\""),
            ],
        )
    };
    assert_eq!(with("7").as_deref(), Some("1"), "{}", h.metrics.encode());

    // Trailers-only: the status is in the response head.
    let head_status = tower::service_fn(|_req: Request<ReqBody>| {
        let mut rsp = Response::new(http_body_util::Empty::<Bytes>::new());
        rsp.headers_mut()
            .insert(&GRPC_STATUS, HeaderValue::from_static("14"));
        std::future::ready(Ok::<_, Infallible>(rsp))
    });
    let mut svc = Observe::new(head_status, conn);
    let Ok(rsp) = svc.ready().await.expect("ready").call(grpc()).await;
    // hyper does not poll a body that is already at its end: dropping it ends the request.
    assert!(rsp.body().is_end_stream());
    drop(rsp);
    assert_eq!(with("14").as_deref(), Some("1"), "{}", h.metrics.encode());
    assert_eq!(count(&h, &["response_flags=\"DC\""]), None);
}

fn inbound_request(header: Option<HeaderValue>) -> Request<http_body_util::Full<Bytes>> {
    let mut req = req();
    if let Some(h) = header {
        req.headers_mut().insert(&peer::PEER, h);
    }
    req
}

#[tokio::test(start_paused = true)]
async fn inbound_labels_believe_a_verified_peer_and_not_a_forged_one() {
    let client = workload("productpage-v1");
    let header = peer::encode(&client, CLIENT_ID, REVIEWS).expect("header");
    let services: Arc<[Arc<str>]> = Arc::from(vec![
        Arc::<str>::from(REVIEWS),
        Arc::<str>::from("reviews-canary.default.svc.cluster.local"),
    ]);
    for (verified, source) in [
        (CLIENT_ID, "productpage-v1"),
        ("spiffe://cluster.local/ns/evil/sa/mallory", "unknown"),
    ] {
        let (r, h) = reports("reviews-v1", SERVER_ID, None);
        let (seen_tx, mut seen) = mpsc::unbounded_channel();
        let (inner, mut feeds) = answering(200, None, seen_tx);
        let conn = Conn::inbound(r, Some(Arc::from(verified)), services.clone(), None, None);
        let mut svc = Observe::new(inner, conn);
        for _ in 0..2 {
            let req = inbound_request(Some(header.clone()));
            let Ok(rsp) = svc.ready().await.expect("ready").call(req).await;
            drop(feeds.recv().await.expect("feed"));
            let _ = rsp.into_body().collect().await;
            let headers = seen.recv().await.expect("request seen");
            assert!(
                !headers.contains_key(&peer::PEER),
                "stripped before the app"
            );
        }
        let verified_principal = format!("source_principal=\"{verified}\"");
        let source_workload = format!("source_workload=\"{source}\"");
        let dst = if source == "unknown" {
            "destination_service=\"unknown\""
        } else {
            "destination_service=\"reviews.default.svc.cluster.local\""
        };
        let want = [
            "reporter=\"destination\"",
            &source_workload,
            &verified_principal,
            "destination_workload=\"reviews-v1\"",
            "destination_principal=\"spiffe://cluster.local/ns/default/sa/reviews\"",
            dst,
            "connection_security_policy=\"mutual_tls\"",
        ];
        assert_eq!(
            count(&h, &want).as_deref(),
            Some("2"),
            "{}",
            h.metrics.encode()
        );
    }
}

#[tokio::test(start_paused = true)]
async fn a_plaintext_inbound_request_is_not_believed_and_loses_the_header() {
    let forged = peer::encode(&workload("productpage-v1"), CLIENT_ID, REVIEWS).expect("header");
    let (r, h) = reports("reviews-v1", SERVER_ID, None);
    let (seen_tx, mut seen) = mpsc::unbounded_channel();
    let (inner, mut feeds) = answering(200, None, seen_tx);
    let services: Arc<[Arc<str>]> = Arc::from(vec![Arc::<str>::from(REVIEWS)]);
    let conn = Conn::inbound(r, None, services, None, None);
    let mut svc = Observe::new(inner, conn);
    let Ok(rsp) = svc
        .ready()
        .await
        .expect("ready")
        .call(inbound_request(Some(forged)))
        .await;
    drop(feeds.recv().await.expect("feed"));
    let _ = rsp.into_body().collect().await;
    assert!(!seen.recv().await.expect("seen").contains_key(&peer::PEER));
    let want = [
        "source_workload=\"unknown\"",
        "source_principal=\"unknown\"",
        "connection_security_policy=\"none\"",
        // The pod's only service.
        "destination_service=\"reviews.default.svc.cluster.local\"",
    ];
    assert_eq!(
        count(&h, &want).as_deref(),
        Some("1"),
        "{}",
        h.metrics.encode()
    );
}

#[tokio::test(start_paused = true)]
async fn an_apps_own_peer_header_is_removed_on_the_outbound_side() {
    let (r, _h) = reports("productpage-v1", CLIENT_ID, None);
    let (seen_tx, mut seen) = mpsc::unbounded_channel();
    let (inner, mut feeds) = answering(200, None, seen_tx);
    let conn = Conn::outbound(r, Arc::from(REVIEWS), None, None);
    let mut svc = Observe::new(inner, conn);
    let forged = HeaderValue::from_static("1;spiffe://cluster.local/ns/x/sa/y;a;b;c;d;e;f;g");
    let Ok(rsp) = svc
        .ready()
        .await
        .expect("ready")
        .call(inbound_request(Some(forged)))
        .await;
    drop(feeds.recv().await.expect("feed"));
    drop(rsp);
    assert!(!seen.recv().await.expect("seen").contains_key(&peer::PEER));
}

#[tokio::test(start_paused = true)]
async fn the_access_log_line_says_what_the_request_came_to() {
    let (r, h) = reports("productpage-v1", CLIENT_ID, Some(Format::Text));
    let (seen_tx, _seen) = mpsc::unbounded_channel();
    let (inner, mut feeds) = answering(503, Some(upstream()), seen_tx);
    let local = "10.0.0.9:9080".parse().ok();
    let remote = "10.1.0.3:40000".parse().ok();
    let conn = Conn::outbound(r, Arc::from(REVIEWS), local, remote);
    let mut svc = Observe::new(inner, conn);
    let mut req = req();
    *req.uri_mut() = Uri::from_static("http://reviews:9080/reviews/1?x=1");
    req.headers_mut().insert(
        http::header::USER_AGENT,
        HeaderValue::from_static("curl/8 \"x\""),
    );
    req.headers_mut()
        .insert(&X_REQUEST_ID, HeaderValue::from_static("req-1"));
    let Ok(rsp) = svc.ready().await.expect("ready").call(req).await;
    let feed = feeds.recv().await.expect("feed");
    tokio::time::advance(Duration::from_millis(12)).await;
    feed.send(Ok(Frame::data(Bytes::from_static(b"busy"))))
        .expect("body");
    drop(feed);
    let _ = rsp.into_body().collect().await;
    let line = h.lines.recv().expect("a line");
    let (_, rest) = line.split_once("] ").expect("start time");
    assert_eq!(
        rest,
        "\"GET /reviews/1?x=1 HTTP/1.1\" 503 - via_upstream - \"-\" 0 4 12 - \"-\" \
         \"curl/8 \\\"x\\\"\" \"req-1\" \"reviews:9080\" \"10.1.0.7:9080\" \
         outbound|9080|v1|reviews.default.svc.cluster.local - 10.0.0.9:9080 10.1.0.3:40000 \
         - default\n"
    );
}

type Streamed = http_body_util::StreamBody<
    futures_util::stream::Iter<std::vec::IntoIter<Result<Frame<Bytes>, Infallible>>>,
>;

fn streamed(chunks: &[&'static [u8]]) -> Request<Streamed> {
    let frames: Vec<_> = chunks
        .iter()
        .map(|c| Ok(Frame::data(Bytes::from_static(c))))
        .collect();
    Request::new(http_body_util::StreamBody::new(futures_util::stream::iter(
        frames,
    )))
}

#[tokio::test(start_paused = true)]
async fn request_bytes_are_counted_as_forwarded_or_read_from_content_length() {
    let (r, h) = reports("productpage-v1", CLIENT_ID, None);
    // The app reads the whole body before it answers.
    let inner = tower::service_fn(|req: Request<RequestBytes<Streamed>>| async move {
        let _ = req.into_body().collect().await;
        Ok::<_, Infallible>(Response::new(http_body_util::Empty::<Bytes>::new()))
    });
    let conn = Conn::outbound(r, Arc::from(REVIEWS), None, None);
    let mut svc = Observe::new(inner, conn);
    let sum = |h: &Harness| {
        h.metrics
            .encode()
            .lines()
            .find(|l| l.starts_with("istio_request_bytes_sum"))
            .map(|l| l.rsplit(' ').next().unwrap_or("").to_string())
    };
    let Ok(rsp) = svc
        .ready()
        .await
        .expect("ready")
        .call(streamed(&[b"abc", b"defg"]))
        .await;
    drop(rsp);
    assert_eq!(sum(&h).as_deref(), Some("7.0"));
    // A declared length is taken as it is (the body is not metered).
    let mut declared = streamed(&[b"abc"]);
    declared.headers_mut().insert(
        http::header::CONTENT_LENGTH,
        HeaderValue::from_static("100"),
    );
    let Ok(rsp) = svc.ready().await.expect("ready").call(declared).await;
    drop(rsp);
    assert_eq!(sum(&h).as_deref(), Some("107.0"));
}
