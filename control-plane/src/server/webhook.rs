//! The validating webhook over HTTPS (15017): `POST /validate` with an `AdmissionReview` v1,
//! answered by [`crate::cluster::webhook::review_json`] (the same checks as `sinewctl apply`).
//! Served with a certificate from the mesh CA; the API server trusts it through the `caBundle`
//! the control plane keeps in the webhook configuration (`cluster::webhook_config`).

use std::convert::Infallible;
use std::sync::Arc;

use bytes::Bytes;
use http::{Method, Request, Response, StatusCode};
use http_body_util::{BodyExt, Full, Limited};
use hyper::body::Incoming;
use hyper_util::rt::TokioIo;
use tokio::net::TcpListener;

/// The path the webhook configuration names.
pub const VALIDATE_PATH: &str = "/validate";
/// Largest review accepted: the API server's own object limit is 3 MiB, plus the envelope.
const MAX_BODY: usize = 4 << 20;

/// Serves until the future is dropped.
pub async fn serve_webhook(listener: TcpListener, tls: Arc<rustls::ServerConfig>) {
    let acceptor = tokio_rustls::TlsAcceptor::from(tls);
    loop {
        let (tcp, peer) = match listener.accept().await {
            Ok(accepted) => accepted,
            Err(error) => {
                tracing::warn!(%error, "webhook accept failed");
                tokio::time::sleep(std::time::Duration::from_millis(50)).await;
                continue;
            }
        };
        let acceptor = acceptor.clone();
        tokio::spawn(async move {
            let handshake =
                tokio::time::timeout(std::time::Duration::from_secs(10), acceptor.accept(tcp));
            let tls = match handshake.await {
                Ok(Ok(tls)) => tls,
                Ok(Err(error)) => {
                    tracing::debug!(%peer, %error, "webhook TLS handshake failed");
                    return;
                }
                Err(_) => return,
            };
            let svc = hyper::service::service_fn(handle);
            let _ = hyper::server::conn::http1::Builder::new()
                .serve_connection(TokioIo::new(tls), svc)
                .await;
        });
    }
}

async fn handle(req: Request<Incoming>) -> Result<Response<Full<Bytes>>, Infallible> {
    if req.uri().path() != VALIDATE_PATH {
        return Ok(plain(StatusCode::NOT_FOUND, "not found\n"));
    }
    if req.method() != Method::POST {
        return Ok(plain(
            StatusCode::METHOD_NOT_ALLOWED,
            "POST an AdmissionReview\n",
        ));
    }
    let body = match Limited::new(req.into_body(), MAX_BODY).collect().await {
        Ok(body) => body.to_bytes(),
        Err(_) => {
            return Ok(plain(
                StatusCode::PAYLOAD_TOO_LARGE,
                "the review is larger than 4 MiB\n",
            ));
        }
    };
    let answer = crate::cluster::webhook::review_json(&body);
    let mut rsp = Response::new(Full::new(Bytes::from(answer)));
    rsp.headers_mut().insert(
        http::header::CONTENT_TYPE,
        http::HeaderValue::from_static("application/json"),
    );
    Ok(rsp)
}

fn plain(status: StatusCode, text: &'static str) -> Response<Full<Bytes>> {
    let mut rsp = Response::new(Full::new(Bytes::from_static(text.as_bytes())));
    *rsp.status_mut() = status;
    rsp
}
