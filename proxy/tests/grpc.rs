//! gRPC (HTTP/2 with trailers) through both proxies against a tonic service: unary, server
//! streaming and bidirectional streaming calls, and gRPC errors carried in trailers.

mod support;

use futures_util::{Stream, StreamExt};
use sinew_proto::testing::v1::echo_client::EchoClient;
use sinew_proto::testing::v1::echo_server::{Echo, EchoServer};
use sinew_proto::testing::v1::{EchoRequest, EchoResponse};
use std::pin::Pin;
use support::*;
use tonic::{Request, Response, Status, Streaming};

struct EchoSvc;

type RspStream = Pin<Box<dyn Stream<Item = Result<EchoResponse, Status>> + Send>>;

fn reply<T>(req: &Request<T>, message: String) -> EchoResponse {
    let mut seen = std::collections::BTreeMap::new();
    if let Some(v) = req.metadata().get("x-forwarded-client-cert") {
        seen.insert("xfcc".into(), v.to_str().unwrap_or("?").into());
    }
    EchoResponse { message, seen }
}

#[tonic::async_trait]
impl Echo for EchoSvc {
    async fn unary(&self, req: Request<EchoRequest>) -> Result<Response<EchoResponse>, Status> {
        if req.get_ref().message == "fail" {
            return Err(Status::failed_precondition("asked to fail"));
        }
        let m = req.get_ref().message.clone();
        Ok(Response::new(reply(&req, m)))
    }

    type ServerStreamStream = RspStream;

    async fn server_stream(
        &self,
        req: Request<EchoRequest>,
    ) -> Result<Response<RspStream>, Status> {
        let base = reply(&req, String::new());
        let m = req.into_inner().message;
        let items = (0..3).map(move |i| {
            Ok(EchoResponse {
                message: format!("{m}-{i}"),
                seen: base.seen.clone(),
            })
        });
        Ok(Response::new(Box::pin(futures_util::stream::iter(items))))
    }

    type BidiStreamStream = RspStream;

    async fn bidi_stream(
        &self,
        req: Request<Streaming<EchoRequest>>,
    ) -> Result<Response<RspStream>, Status> {
        let inbound = req.into_inner();
        let out = inbound.map(|r| {
            r.map(|r| EchoResponse {
                message: format!("echo:{}", r.message),
                seen: Default::default(),
            })
        });
        Ok(Response::new(Box::pin(out)))
    }
}

async fn start_grpc_app() -> std::net::SocketAddr {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    tokio::spawn(async move {
        loop {
            let Ok((tcp, _)) = listener.accept().await else {
                continue;
            };
            tokio::spawn(async move {
                let svc = hyper_util::service::TowerToHyperService::new(EchoServer::new(EchoSvc));
                let _ =
                    hyper::server::conn::http2::Builder::new(hyper_util::rt::TokioExecutor::new())
                        .serve_connection(hyper_util::rt::TokioIo::new(tcp), svc)
                        .await;
            });
        }
    });
    addr
}

type Channel = hyper_util::client::legacy::Client<
    hyper_util::client::legacy::connect::HttpConnector,
    tonic::body::Body,
>;

fn client(proxy: std::net::SocketAddr) -> EchoClient<Channel> {
    let http = hyper_util::client::legacy::Client::builder(hyper_util::rt::TokioExecutor::new())
        .http2_only(true)
        .build_http();
    EchoClient::with_origin(http, format!("http://{proxy}").parse().unwrap())
}

#[tokio::test]
async fn grpc_unary_and_errors_cross_the_mesh() {
    let app = start_grpc_app().await;
    let mesh = Mesh::start(app.port()).await;
    let mut c = client(mesh.outbound());
    let rsp = c
        .unary(EchoRequest {
            message: "hi".into(),
        })
        .await
        .unwrap()
        .into_inner();
    assert_eq!(rsp.message, "hi");
    assert!(
        rsp.seen["xfcc"].ends_with(&format!("URI={CLIENT_ID}")),
        "{:?}",
        rsp.seen
    );
    let err = c
        .unary(EchoRequest {
            message: "fail".into(),
        })
        .await
        .unwrap_err();
    assert_eq!(
        err.code(),
        tonic::Code::FailedPrecondition,
        "grpc-status travels in trailers"
    );
    assert_eq!(err.message(), "asked to fail");
}

#[tokio::test]
async fn grpc_server_and_bidirectional_streams_cross_the_mesh() {
    let app = start_grpc_app().await;
    let mesh = Mesh::start(app.port()).await;
    let mut c = client(mesh.outbound());
    let mut s = c
        .server_stream(EchoRequest {
            message: "s".into(),
        })
        .await
        .unwrap()
        .into_inner();
    let mut got = Vec::new();
    while let Some(m) = s.message().await.unwrap() {
        got.push(m.message);
    }
    assert_eq!(got, ["s-0", "s-1", "s-2"]);

    let (tx2, mut rx2) = tokio::sync::mpsc::channel::<EchoRequest>(4);
    let req_stream = futures_util::stream::poll_fn(move |cx| rx2.poll_recv(cx));
    let mut replies = c.bidi_stream(req_stream).await.unwrap().into_inner();
    for i in 0..3 {
        // Each reply arrives before the next request is sent: a real duplex stream.
        tx2.send(EchoRequest {
            message: format!("m{i}"),
        })
        .await
        .unwrap();
        let r = replies.message().await.unwrap().unwrap();
        assert_eq!(r.message, format!("echo:m{i}"));
    }
    drop(tx2);
    assert!(replies.message().await.unwrap().is_none());
}
