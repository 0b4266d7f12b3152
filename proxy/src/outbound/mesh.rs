//! Dialling a peer proxy: TCP, then mutual TLS that must present the endpoint's identity.

use crate::ctx::Ctx;
use crate::http::ProxyError;
use crate::tls::Identity;
use rustls::pki_types::ServerName;
use std::net::SocketAddr;
use tokio::net::TcpStream;
use tokio_rustls::client::TlsStream;

pub async fn connect(
    ctx: &Ctx,
    addr: SocketAddr,
    identity: &Identity,
    alpn: &'static [u8],
) -> Result<TlsStream<TcpStream>, ProxyError> {
    let config = ctx.config();
    let tls = ctx.tls()?;
    let client_config = tls.client_config(identity, alpn)?;
    let tcp = crate::http::client::connect_tcp(addr, config.timeouts.connect).await?;
    let connector = tokio_rustls::TlsConnector::from(client_config);
    let handshake = connector.connect(ServerName::IpAddress(addr.ip().into()), tcp);
    let stream = match tokio::time::timeout(config.timeouts.tls_handshake, handshake).await {
        Ok(Ok(s)) => s,
        Ok(Err(e)) => {
            ctx.metrics.tls_failures[crate::metrics::Direction::Outbound as usize].inc();
            let reason = describe(&e);
            tracing::warn!(%addr, expected = %identity, "mesh TLS handshake failed: {reason}");
            return Err(ProxyError::Tls { addr, reason });
        }
        Err(_) => {
            ctx.metrics.tls_failures[crate::metrics::Direction::Outbound as usize].inc();
            return Err(ProxyError::Tls {
                addr,
                reason: format!(
                    "handshake timed out after {:?}",
                    config.timeouts.tls_handshake
                ),
            });
        }
    };
    if stream.get_ref().1.alpn_protocol() != Some(alpn) {
        return Err(ProxyError::NoMeshAlpn { addr });
    }
    Ok(stream)
}

pub use crate::tls::describe_handshake_error as describe;
