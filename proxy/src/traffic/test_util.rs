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
