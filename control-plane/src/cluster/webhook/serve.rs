//! The webhooks over HTTPS, on a listener of their own (the API server dials
//! `sinew-control-plane.sinew-system.svc:15017`): `POST /validate` (DestinationRules and
//! VirtualServices) and `POST /inject` (pods), an AdmissionReview in, the answer out.
//!
//! What it promises: every well-formed call is answered 200 with an AdmissionReview (the API
//! server reads refusals from the body, never from the status code); a body `/inject` cannot
//! answer at all (not an AdmissionReview) gets a 400 saying why; bodies are bounded
//! ([`MAX_BODY`]) and read with a deadline, so a slow or huge caller costs one task, not the
//! listener.

use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use http::{Method, Request, Response, StatusCode, header};
use http_body_util::{BodyExt, Full, Limited};
use hyper_util::rt::{TokioExecutor, TokioIo, TokioTimer};
use tokio::net::TcpListener;

use super::inject::{self, Injector};

/// The path the ValidatingWebhookConfiguration's `clientConfig.service.path` names.
pub const PATH: &str = "/validate";

/// What the listener answers: the validating webhook always, the injector when there is one.
#[derive(Default)]
pub struct Webhooks {
    pub injector: Option<Injector>,
}

/// The largest AdmissionReview read: the object and its old version (the API server stores at
/// most ~1.5 MiB each), with room for JSON escaping.
pub const MAX_BODY: usize = 8 << 20;

/// How long a caller may take to send its request: the API server's own webhook timeout is at
/// most 30 s.
const READ_TIMEOUT: Duration = Duration::from_secs(30);

/// Answers one HTTP request (any body type, so tests need no sockets).
pub async fn handle<B>(request: Request<B>, hooks: &Webhooks) -> Response<Full<Bytes>>
where
    B: hyper::body::Body,
    B::Error: Into<Box<dyn std::error::Error + Send + Sync>>,
{
    let injector = match request.uri().path() {
        PATH => None,
        inject::PATH if hooks.injector.is_some() => hooks.injector.as_ref(),
        _ => return plain(StatusCode::NOT_FOUND, "not found"),
    };
    if request.method() != Method::POST {
        return plain(StatusCode::METHOD_NOT_ALLOWED, "POST an AdmissionReview");
    }
    let body = Limited::new(request.into_body(), MAX_BODY);
    let bytes = match tokio::time::timeout(READ_TIMEOUT, body.collect()).await {
        Ok(Ok(collected)) => collected.to_bytes(),
        Ok(Err(e)) if e.is::<http_body_util::LengthLimitError>() => {
            return plain(StatusCode::PAYLOAD_TOO_LARGE, "AdmissionReview too large");
        }
        Ok(Err(e)) => return plain(StatusCode::BAD_REQUEST, &format!("reading the body: {e}")),
        Err(_) => return plain(StatusCode::REQUEST_TIMEOUT, "body not sent in time"),
    };
    let answer = match injector {
        None => super::review_json(&bytes),
        Some(injector) => match injector.review(&bytes) {
            Ok(answer) => answer,
            Err(bad) => return plain(StatusCode::BAD_REQUEST, &bad.to_string()),
        },
    };
    let mut response = Response::new(Full::new(Bytes::from(answer)));
    response.headers_mut().insert(
        header::CONTENT_TYPE,
        header::HeaderValue::from_static("application/json"),
    );
    response
}

fn plain(code: StatusCode, text: &str) -> Response<Full<Bytes>> {
    let mut response = Response::new(Full::new(Bytes::from(format!("{text}\n"))));
    *response.status_mut() = code;
    response
}

/// Accepts TLS connections on `listener` and answers each request with [`handle`], HTTP/1.1 or
/// HTTP/2 as the client chose (offer both in `tls`'s ALPN), until the process exits.
pub async fn serve(listener: TcpListener, tls: Arc<rustls::ServerConfig>, hooks: Arc<Webhooks>) {
    let acceptor = tokio_rustls::TlsAcceptor::from(tls);
    loop {
        let (tcp, peer) = match listener.accept().await {
            Ok(accepted) => accepted,
            Err(e) => {
                // Out of file descriptors and the like: do not spin.
                tracing::warn!(error = %e, "webhook accept failed");
                tokio::time::sleep(Duration::from_millis(50)).await;
                continue;
            }
        };
        let acceptor = acceptor.clone();
        let hooks = hooks.clone();
        tokio::spawn(async move {
            let tls =
                match tokio::time::timeout(Duration::from_secs(10), acceptor.accept(tcp)).await {
                    Ok(Ok(tls)) => tls,
                    Ok(Err(e)) => {
                        tracing::debug!(%peer, error = %e, "webhook TLS handshake failed");
                        return;
                    }
                    Err(_) => return,
                };
            let service = hyper::service::service_fn(|request| {
                let hooks = hooks.clone();
                async move { Ok::<_, std::convert::Infallible>(handle(request, &hooks).await) }
            });
            let mut builder = hyper_util::server::conn::auto::Builder::new(TokioExecutor::new());
            builder
                .http1()
                .timer(TokioTimer::new())
                .header_read_timeout(READ_TIMEOUT);
            if let Err(e) = builder.serve_connection(TokioIo::new(tls), service).await {
                tracing::debug!(%peer, error = %e, "webhook connection ended");
            }
        });
    }
}
