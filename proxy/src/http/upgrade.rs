//! Protocol upgrades (`Upgrade: websocket`, `CONNECT`): forward the handshake over a dedicated
//! HTTP/1.1 connection, then splice the two upgraded streams.

use super::{Body, ProxyError};
use http::{Request, Response, StatusCode};
use http_body_util::Either;
use hyper_util::rt::TokioIo;
use tokio::io::{AsyncRead, AsyncWrite};

/// Sends the upgrade request on `io` (a fresh connection to the next hop) and, if the upstream
/// agrees, splices the client's upgraded connection with the upstream's until both close.
pub async fn forward<I, B>(io: I, mut req: Request<B>) -> Result<Response<Body>, ProxyError>
where
    I: AsyncRead + AsyncWrite + Send + Unpin + 'static,
    B: http_body::Body + Send + 'static,
    B::Data: Send,
    B::Error: Into<Box<dyn std::error::Error + Send + Sync>>,
{
    let is_connect = req.method() == http::Method::CONNECT;
    let downstream = hyper::upgrade::on(&mut req);
    let (mut send, conn) = hyper::client::conn::http1::Builder::new()
        .handshake(TokioIo::new(io))
        .await
        .map_err(|e| ProxyError::Upstream(e.into()))?;
    tokio::spawn(async move {
        if let Err(e) = conn.with_upgrades().await {
            tracing::debug!(error = %e, "upgrade connection failed");
        }
    });
    let mut rsp = send
        .send_request(req)
        .await
        .map_err(|e| ProxyError::Upstream(e.into()))?;
    let upgraded = rsp.status() == StatusCode::SWITCHING_PROTOCOLS
        || (is_connect && rsp.status().is_success());
    if upgraded {
        let upstream = hyper::upgrade::on(&mut rsp);
        tokio::spawn(async move {
            let (d, u) = tokio::join!(downstream, upstream);
            match (d, u) {
                (Ok(d), Ok(u)) => {
                    let (mut d, mut u) = (TokioIo::new(d), TokioIo::new(u));
                    if let Err(e) = crate::io::copy_bidirectional(&mut d, &mut u).await {
                        tracing::debug!(error = %e, "upgraded stream ended with an error");
                    }
                }
                (d, u) => {
                    tracing::debug!(
                        downstream = d.is_ok(),
                        upstream = u.is_ok(),
                        "upgrade failed"
                    )
                }
            }
        });
    }
    Ok(rsp.map(|b| Either::Left(b.into())))
}
