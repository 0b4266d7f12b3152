use super::*;
use std::num::NonZeroU32;
use tokio::net::{TcpListener, TcpStream};

const CONNECT: Duration = Duration::from_secs(5);

/// A loopback listener that accepts and holds connections (the client's options are what we
/// inspect, so the server side does nothing).
async fn listener() -> (SocketAddr, tokio::task::JoinHandle<()>) {
    let l = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = l.local_addr().unwrap();
    let task = tokio::spawn(async move {
        let mut held = Vec::new();
        while let Ok((s, _)) = l.accept().await {
            held.push(s);
        }
    });
    (addr, task)
}

fn sock(s: &TcpStream) -> socket2::SockRef<'_> {
    socket2::SockRef::from(s)
}

#[tokio::test]
async fn a_keepalive_block_turns_so_keepalive_on_with_its_fields() {
    let (addr, _srv) = listener().await;
    let ka = TcpKeepalive {
        time: Some(Duration::from_secs(31)),
        interval: Some(Duration::from_secs(7)),
        probes: NonZeroU32::new(4),
    };
    let s = connect_tcp(addr, CONNECT, Some(&ka)).await.unwrap();
    assert!(sock(&s).keepalive().unwrap());
    assert_eq!(
        sock(&s).tcp_keepalive_time().unwrap(),
        Duration::from_secs(31)
    );
    assert_eq!(
        sock(&s).tcp_keepalive_interval().unwrap(),
        Duration::from_secs(7)
    );
    assert_eq!(sock(&s).tcp_keepalive_retries().unwrap(), 4);
}

#[tokio::test]
async fn no_keepalive_block_leaves_so_keepalive_off() {
    let (addr, _srv) = listener().await;
    let s = connect_tcp(addr, CONNECT, None).await.unwrap();
    assert!(!sock(&s).keepalive().unwrap());
}

#[tokio::test]
async fn unset_keepalive_fields_keep_the_os_defaults() {
    let (addr, _srv) = listener().await;
    // The OS defaults, read from a socket nobody configured.
    let plain = connect_tcp(addr, CONNECT, None).await.unwrap();
    let ka = TcpKeepalive {
        time: Some(Duration::from_secs(45)),
        ..TcpKeepalive::default()
    };
    let s = connect_tcp(addr, CONNECT, Some(&ka)).await.unwrap();
    assert!(sock(&s).keepalive().unwrap());
    assert_eq!(
        sock(&s).tcp_keepalive_time().unwrap(),
        Duration::from_secs(45)
    );
    assert_ne!(
        sock(&plain).tcp_keepalive_time().unwrap(),
        Duration::from_secs(45),
        "the default must differ from the configured time for this test to mean anything"
    );
    assert_eq!(
        sock(&s).tcp_keepalive_interval().unwrap(),
        sock(&plain).tcp_keepalive_interval().unwrap()
    );
    assert_eq!(
        sock(&s).tcp_keepalive_retries().unwrap(),
        sock(&plain).tcp_keepalive_retries().unwrap()
    );

    // An empty block still turns keep-alive on, with every OS default.
    let empty = connect_tcp(addr, CONNECT, Some(&TcpKeepalive::default()))
        .await
        .unwrap();
    assert!(sock(&empty).keepalive().unwrap());
    assert_eq!(
        sock(&empty).tcp_keepalive_time().unwrap(),
        sock(&plain).tcp_keepalive_time().unwrap()
    );
}

#[tokio::test]
async fn sub_second_keepalive_durations_round_up_to_whole_seconds() {
    let (addr, _srv) = listener().await;
    let ka = TcpKeepalive {
        time: Some(Duration::from_millis(1500)),
        interval: Some(Duration::from_millis(200)),
        probes: None,
    };
    let s = connect_tcp(addr, CONNECT, Some(&ka)).await.unwrap();
    assert_eq!(
        sock(&s).tcp_keepalive_time().unwrap(),
        Duration::from_secs(2)
    );
    assert_eq!(
        sock(&s).tcp_keepalive_interval().unwrap(),
        Duration::from_secs(1)
    );
}

#[tokio::test]
async fn plaintext_http2_dials_carry_the_destination_keepalive() {
    let (addr, _srv) = listener().await;
    let ka = TcpKeepalive {
        time: Some(Duration::from_secs(12)),
        ..TcpKeepalive::default()
    };
    let s = plain::dial(addr, None, CONNECT, Some(&ka)).await.unwrap();
    assert!(sock(&s).keepalive().unwrap());
    assert_eq!(
        sock(&s).tcp_keepalive_time().unwrap(),
        Duration::from_secs(12)
    );
    let s = plain::dial(addr, None, CONNECT, None).await.unwrap();
    assert!(!sock(&s).keepalive().unwrap());
}
