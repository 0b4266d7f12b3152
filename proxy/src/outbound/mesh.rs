//! Dialling a peer proxy: TCP (with the destination's keep-alive), then mutual TLS that must
//! present the endpoint's identity.

use super::connect::Clients;
use crate::config::Timeouts;
use crate::http::ProxyError;
use crate::io::TcpKeepalive;
use crate::metrics::Direction;
use crate::tls::Identity;
use rustls::pki_types::ServerName;
use std::net::SocketAddr;
use tokio::net::TcpStream;
use tokio_rustls::client::TlsStream;

pub async fn connect(
    clients: &Clients,
    timeouts: &Timeouts,
    addr: SocketAddr,
    identity: &Identity,
    offer: &'static [&'static [u8]],
    keepalive: Option<&TcpKeepalive>,
) -> Result<TlsStream<TcpStream>, ProxyError> {
    let tls = clients.tls()?;
    let client_config = tls.client_config(identity, offer)?;
    let tcp = crate::http::client::connect_tcp(addr, timeouts.connect, keepalive).await?;
    let connector = tokio_rustls::TlsConnector::from(client_config);
    let handshake = connector.connect(ServerName::IpAddress(addr.ip().into()), tcp);
    let failures = &clients.metrics.tls_failures[Direction::Outbound as usize];
    let stream = match tokio::time::timeout(timeouts.tls_handshake, handshake).await {
        Ok(Ok(s)) => s,
        Ok(Err(e)) => {
            failures.inc();
            let reason = describe(&e);
            tracing::warn!(%addr, expected = %identity, "mesh TLS handshake failed: {reason}");
            return Err(ProxyError::Tls { addr, reason });
        }
        Err(_) => {
            failures.inc();
            return Err(ProxyError::Tls {
                addr,
                reason: format!("handshake timed out after {:?}", timeouts.tls_handshake),
            });
        }
    };
    match stream.get_ref().1.alpn_protocol() {
        Some(chosen) if offer.contains(&chosen) => {}
        _ => return Err(ProxyError::NoMeshAlpn { addr }),
    }
    Ok(stream)
}

pub use crate::tls::describe_handshake_error as describe;
