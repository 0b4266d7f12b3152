//! A client that said nothing during protocol detection: whoever speaks first decides.
//!
//! Server-first protocols (MySQL, SMTP, …) wait for the server's greeting, so after the detection
//! timeout the proxy connects upstream. Treating the connection as opaque from then on would be a
//! hole: an HTTP client could wait out the timeout and then send a request with a forged
//! `x-forwarded-client-cert` straight to an HTTP app. An HTTP server never speaks first, so:
//!
//! Promises: [`settle`] answers [`Settled::Http`] when the client's first bytes are HTTP by
//! [`detect::classify`], before the upstream said anything; nothing the client sent has gone
//! upstream by then. Whatever the upstream sent first is already written to the client.

use crate::detect::{self, Classification, Protocol};
use bytes::BytesMut;
use std::io;
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt};

/// How a silent connection settled.
#[derive(Debug)]
pub enum Settled<U> {
    /// The client spoke first, in HTTP: serve it as such (the upstream connection is dropped).
    Http {
        protocol: Protocol,
        buffered: BytesMut,
    },
    /// The upstream spoke (or closed) first, or the client's bytes are not HTTP: splice, sending
    /// `pending` upstream first.
    Opaque { pending: BytesMut, upstream: U },
}

/// Waits until the client or the upstream sends something. A client that starts something that
/// could be a request line and then stalls for `patience` is HTTP (hyper's timeouts take over).
pub async fn settle<C, U>(
    client: &mut C,
    mut upstream: U,
    patience: std::time::Duration,
) -> io::Result<Settled<U>>
where
    C: AsyncRead + AsyncWrite + Unpin,
    U: AsyncRead + Unpin,
{
    let deadline = tokio::time::Instant::now() + patience;
    let mut buffered = BytesMut::with_capacity(1024);
    let mut greeting = [0u8; 4096];
    let protocol = loop {
        tokio::select! {
            read = client.read_buf(&mut buffered) => {
                if read? == 0 {
                    // Half-closed: nothing more can arrive to make it a request.
                    break Protocol::Opaque;
                }
                if let Classification::Known(protocol) = detect::classify(&buffered) {
                    break protocol;
                }
            }
            read = upstream.read(&mut greeting) => {
                let n = read?;
                client.write_all(&greeting[..n]).await?;
                break Protocol::Opaque;
            }
            _ = tokio::time::sleep_until(deadline), if !buffered.is_empty() => {
                break Protocol::Http1;
            }
        }
    };
    Ok(match protocol {
        Protocol::Opaque => Settled::Opaque {
            pending: buffered,
            upstream,
        },
        protocol => Settled::Http { protocol, buffered },
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::Duration;

    fn far() -> Duration {
        Duration::from_secs(3600)
    }

    #[tokio::test]
    async fn a_greeting_from_the_server_makes_it_opaque() {
        let (mut client, mut proxy_side) = tokio::io::duplex(1024);
        let (mut app, upstream) = tokio::io::duplex(1024);
        app.write_all(b"220 mail ready\r\n").await.unwrap();
        let settled = settle(&mut proxy_side, upstream, far()).await.unwrap();
        assert!(matches!(settled, Settled::Opaque { ref pending, .. } if pending.is_empty()));
        let mut got = [0u8; 16];
        client.read_exact(&mut got).await.unwrap();
        assert_eq!(&got, b"220 mail ready\r\n");
    }

    #[tokio::test]
    async fn a_late_http_request_is_http_and_nothing_went_upstream() {
        let (mut client, mut proxy_side) = tokio::io::duplex(1024);
        let (mut app, upstream) = tokio::io::duplex(1024);
        client
            .write_all(b"GET / HTTP/1.1\r\nx-forwarded-client-cert: URI=spiffe://forged\r\n\r\n")
            .await
            .unwrap();
        let settled = settle(&mut proxy_side, upstream, far()).await.unwrap();
        let Settled::Http { protocol, buffered } = settled else {
            panic!("the client spoke first: {settled:?}");
        };
        assert_eq!(protocol, Protocol::Http1);
        assert!(buffered.starts_with(b"GET / "));
        // The upstream was dropped having received nothing: the app side reads EOF at once.
        let mut seen = Vec::new();
        app.read_to_end(&mut seen).await.unwrap();
        assert!(seen.is_empty(), "{seen:?}");
    }

    #[tokio::test]
    async fn binary_from_the_client_is_opaque_and_kept_for_upstream() {
        let (mut client, mut proxy_side) = tokio::io::duplex(1024);
        let (_app, upstream) = tokio::io::duplex(1024);
        client.write_all(&[0, 1, 2, 3]).await.unwrap();
        let settled = settle(&mut proxy_side, upstream, far()).await.unwrap();
        assert!(
            matches!(settled, Settled::Opaque { ref pending, .. } if pending[..] == [0, 1, 2, 3])
        );
    }

    #[tokio::test(start_paused = true)]
    async fn a_stalled_method_becomes_http_at_the_deadline() {
        let (mut client, mut proxy_side) = tokio::io::duplex(1024);
        let (_app, upstream) = tokio::io::duplex(1024);
        client.write_all(b"GE").await.unwrap();
        let deadline = tokio::time::Instant::now() + Duration::from_secs(10);
        let settled = settle(&mut proxy_side, upstream, Duration::from_secs(10))
            .await
            .unwrap();
        assert!(matches!(
            settled,
            Settled::Http {
                protocol: Protocol::Http1,
                ..
            }
        ));
        assert!(tokio::time::Instant::now() >= deadline);
    }
}
