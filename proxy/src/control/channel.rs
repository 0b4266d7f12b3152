//! A gRPC channel to the control plane: one HTTP/2 connection over TLS, re-dialled when it dies.
//! The server must present the configured SPIFFE identity and chain to the bootstrap roots, or,
//! once the control plane has pushed a trust bundle, to the latest bundle's roots (so a root
//! rotation re-issues the control plane's certificate without restarting a proxy).

use crate::config::ControlPlane;
use crate::tls;
use futures_util::future::BoxFuture;
use hyper::body::Incoming;
use hyper::client::conn::http2::SendRequest;
use hyper_util::rt::{TokioExecutor, TokioIo, TokioTimer};
use rustls::pki_types::ServerName;
use std::sync::Arc;
use std::task::{Context, Poll};
use std::time::Duration;
use tokio::sync::Mutex;
use tonic::body::Body as GrpcBody;

type BoxError = Box<dyn std::error::Error + Send + Sync>;

#[derive(Clone)]
pub struct Channel {
    inner: Arc<Inner>,
}

struct Inner {
    address: String,
    tls: Arc<rustls::ClientConfig>,
    roots: tls::ControlRoots,
    conn: Mutex<Option<SendRequest<GrpcBody>>>,
}

// === impl Channel ===

impl Channel {
    pub fn new(cp: &ControlPlane) -> Result<Self, tls::TlsError> {
        let roots = tls::ControlRoots::new(tls::load_roots(&cp.root_cert)?);
        let tls = tls::control_client_config(roots.clone(), cp.identity.clone())?;
        Ok(Self {
            inner: Arc::new(Inner {
                address: cp.address.clone(),
                tls,
                roots,
                conn: Mutex::new(None),
            }),
        })
    }

    /// The roots the control plane is verified with: the bootstrap file's, until the discovery
    /// client installs a pushed trust bundle (see [`tls::ControlRoots`]).
    pub fn roots(&self) -> &tls::ControlRoots {
        &self.inner.roots
    }

    /// The URI tonic clients use as their origin.
    pub fn origin(&self) -> http::Uri {
        format!("https://{}", self.inner.address)
            .parse()
            .unwrap_or_else(|_| http::Uri::from_static("https://control-plane"))
    }

    async fn connection(&self) -> Result<SendRequest<GrpcBody>, BoxError> {
        let mut conn = self.inner.conn.lock().await;
        if let Some(c) = conn.as_ref()
            && !c.is_closed()
        {
            return Ok(c.clone());
        }
        let c = self.connect().await?;
        *conn = Some(c.clone());
        Ok(c)
    }

    async fn connect(&self) -> Result<SendRequest<GrpcBody>, BoxError> {
        let addr = tokio::net::lookup_host(&self.inner.address)
            .await?
            .next()
            .ok_or_else(|| format!("{} resolves to no address", self.inner.address))?;
        let tcp = tokio::time::timeout(
            Duration::from_secs(10),
            tokio::net::TcpStream::connect(addr),
        )
        .await
        .map_err(|_| format!("connecting to the control plane at {addr} timed out"))??;
        let _ = tcp.set_nodelay(true);
        let connector = tokio_rustls::TlsConnector::from(self.inner.tls.clone());
        let tls = connector
            .connect(ServerName::IpAddress(addr.ip().into()), tcp)
            .await
            .map_err(|e| {
                format!(
                    "TLS with the control plane at {addr}: {}",
                    crate::tls::describe_handshake_error(&e)
                )
            })?;
        let (send, conn) = hyper::client::conn::http2::Builder::new(TokioExecutor::new())
            .timer(TokioTimer::new())
            .keep_alive_interval(Duration::from_secs(30))
            .keep_alive_timeout(Duration::from_secs(10))
            .keep_alive_while_idle(true)
            .handshake(TokioIo::new(tls))
            .await?;
        tokio::spawn(async move {
            if let Err(e) = conn.await {
                tracing::debug!(error = %e, "control-plane connection closed");
            }
        });
        Ok(send)
    }
}

impl tower::Service<http::Request<GrpcBody>> for Channel {
    type Response = http::Response<Incoming>;
    type Error = BoxError;
    type Future = BoxFuture<'static, Result<http::Response<Incoming>, BoxError>>;

    fn poll_ready(&mut self, _: &mut Context<'_>) -> Poll<Result<(), BoxError>> {
        Poll::Ready(Ok(()))
    }

    fn call(&mut self, req: http::Request<GrpcBody>) -> Self::Future {
        let this = self.clone();
        Box::pin(async move {
            let mut send = this.connection().await?;
            Ok(send.send_request(req).await?)
        })
    }
}
