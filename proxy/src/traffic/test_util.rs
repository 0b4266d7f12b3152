//! Test support for the traffic layers: a mock inner service speaking `ProxyError`, a body fed
//! from a channel, small constructors.

use crate::http::{Body, ProxyError};
use bytes::Bytes;
use http::{Request, Response, StatusCode};
use http_body::{Frame, SizeHint};
use http_body_util::{BodyExt, Either, Full};
use std::pin::Pin;
use std::task::{Context, Poll};
use tokio::sync::mpsc;
use tower_test::mock::{self, Handle, Mock};

pub type BoxError = Box<dyn std::error::Error + Send + Sync>;
pub type MockSvc<B> =
    tower::util::MapErr<Mock<Request<B>, Response<Body>>, fn(BoxError) -> ProxyError>;
pub type MockHandle<B> = Handle<Request<B>, Response<Body>>;

/// A mock inner service; errors sent through the handle as `ProxyError` come out unchanged.
pub fn mock<B>() -> (MockSvc<B>, MockHandle<B>) {
    let (svc, handle) = mock::pair();
    (
        tower::ServiceExt::map_err(svc, to_proxy_error as fn(BoxError) -> ProxyError),
        handle,
    )
}

fn to_proxy_error(e: BoxError) -> ProxyError {
    match e.downcast::<ProxyError>() {
        Ok(p) => *p,
        Err(e) => ProxyError::Upstream(e),
    }
}

pub fn rsp(status: u16) -> Response<Body> {
    let mut r = Response::new(Either::Right(Full::new(Bytes::new())));
    *r.status_mut() = StatusCode::from_u16(status).expect("test status");
    r
}

pub fn grpc_rsp(code: u8) -> Response<Body> {
    let mut r = rsp(200);
    r.headers_mut()
        .insert("grpc-status", u16::from(code).into());
    r
}

pub fn connect_err() -> ProxyError {
    ProxyError::Connect {
        addr: "198.18.0.1:80".parse().expect("addr"),
        source: std::io::ErrorKind::ConnectionRefused.into(),
    }
}

pub fn dur(ms: u64) -> pbjson_types::Duration {
    pbjson_types::Duration {
        seconds: (ms / 1000) as i64,
        nanos: ((ms % 1000) * 1_000_000) as i32,
    }
}

/// Reads a whole body.
pub async fn collect<B>(body: B) -> Result<Bytes, BoxError>
where
    B: http_body::Body<Data = Bytes>,
    B::Error: Into<BoxError>,
{
    Ok(body.collect().await.map_err(Into::into)?.to_bytes())
}

/// A streaming body the test feeds frame by frame; unknown length.
pub struct ChanBody {
    rx: mpsc::UnboundedReceiver<Result<Frame<Bytes>, BoxError>>,
}

pub fn chan_body() -> (
    mpsc::UnboundedSender<Result<Frame<Bytes>, BoxError>>,
    ChanBody,
) {
    let (tx, rx) = mpsc::unbounded_channel();
    (tx, ChanBody { rx })
}

impl http_body::Body for ChanBody {
    type Data = Bytes;
    type Error = BoxError;

    fn poll_frame(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, BoxError>>> {
        self.rx.poll_recv(cx)
    }

    fn size_hint(&self) -> SizeHint {
        SizeHint::default()
    }
}

pub fn data(s: &'static str) -> Result<Frame<Bytes>, BoxError> {
    Ok(Frame::data(Bytes::from_static(s.as_bytes())))
}

/// A real upstream response (hyper's HTTP/1 over an in-memory pipe) whose body streams what the
/// test sends, for layers that treat an upstream body differently from a local reply.
pub async fn streaming_upstream_response() -> (
    Response<Body>,
    mpsc::UnboundedSender<Result<Frame<Bytes>, BoxError>>,
) {
    let (client, server) = tokio::io::duplex(4096);
    let (tx, body) = chan_body();
    let body = std::sync::Mutex::new(Some(body));
    let svc = hyper::service::service_fn(move |_req| {
        let b = body.lock().expect("test lock").take().expect("one request");
        async move { Ok::<_, std::convert::Infallible>(Response::new(b)) }
    });
    tokio::spawn(
        hyper::server::conn::http1::Builder::new()
            .serve_connection(hyper_util::rt::TokioIo::new(server), svc),
    );
    let (mut send, conn) =
        hyper::client::conn::http1::handshake(hyper_util::rt::TokioIo::new(client))
            .await
            .expect("handshake");
    tokio::spawn(conn);
    let rsp = send
        .send_request(Request::new(http_body_util::Empty::<Bytes>::new()))
        .await
        .expect("response");
    (rsp.map(|b| Either::Left(b.into())), tx)
}
