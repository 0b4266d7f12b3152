//! Raw TCP helpers: a counting echo server and a one-shot ping.

use std::net::SocketAddr;
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Duration;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpListener;

/// A TCP echo server on `ip` that counts the connections it accepted.
pub async fn echo_on(ip: &str) -> (SocketAddr, Arc<AtomicUsize>) {
    let listener = TcpListener::bind((ip, 0)).await.unwrap();
    let addr = listener.local_addr().unwrap();
    let accepted = Arc::new(AtomicUsize::new(0));
    let count = accepted.clone();
    tokio::spawn(async move {
        while let Ok((mut tcp, _)) = listener.accept().await {
            count.fetch_add(1, Ordering::SeqCst);
            tokio::spawn(async move {
                let (mut r, mut w) = tcp.split();
                let _ = tokio::io::copy(&mut r, &mut w).await;
            });
        }
    });
    (addr, accepted)
}

/// Writes `ping` and returns what came back before the connection ended (a reset counts as
/// the end).
pub async fn ping(addr: SocketAddr) -> Vec<u8> {
    let mut tcp = tokio::net::TcpStream::connect(addr).await.unwrap();
    ping_over(&mut tcp).await
}

/// [`ping`] on a connection the caller keeps.
pub async fn ping_over(tcp: &mut tokio::net::TcpStream) -> Vec<u8> {
    let _ = tcp.write_all(b"ping").await;
    let mut got = vec![0; 4];
    let mut n = 0;
    while n < 4 {
        match tokio::time::timeout(Duration::from_secs(10), tcp.read(&mut got[n..])).await {
            Ok(Ok(0)) | Ok(Err(_)) => break,
            Ok(Ok(k)) => n += k,
            Err(_) => panic!("neither an answer nor a close within 10 s"),
        }
    }
    got.truncate(n);
    got
}

/// Waits (up to 10 s) until the peer closes `tcp`, discarding what it still sends; returns
/// whether the close came (a reset counts).
pub async fn wait_closed(tcp: &mut tokio::net::TcpStream) -> bool {
    let mut buf = [0u8; 1024];
    let until_close = async {
        loop {
            match tcp.read(&mut buf).await {
                Ok(0) | Err(_) => return,
                Ok(_) => {}
            }
        }
    };
    tokio::time::timeout(Duration::from_secs(10), until_close)
        .await
        .is_ok()
}
