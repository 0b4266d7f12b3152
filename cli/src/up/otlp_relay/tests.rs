use super::*;
use tokio::io::{AsyncReadExt as _, AsyncWriteExt as _};

#[test]
fn collector_urls_parse_or_say_why_not() {
    let ok = |url: &str, host: &str, port: u16| {
        assert_eq!(
            Collector::parse(url),
            Ok(Collector {
                host: host.into(),
                port
            }),
            "{url}"
        );
    };
    ok("http://127.0.0.1:4317", "127.0.0.1", 4317);
    ok("http://localhost:14317/", "localhost", 14317);
    ok("http://jaeger.local", "jaeger.local", 4317);
    ok("http://[::1]:4317", "::1", 4317);
    assert_eq!(
        Collector::parse("http://[::1]:4317").unwrap().to_string(),
        "http://[::1]:4317"
    );
    let refused = |url: &str, says: &str| {
        let e = Collector::parse(url).unwrap_err();
        assert!(e.contains(says), "{url}: {e}");
    };
    refused("https://127.0.0.1:4317", "use http://");
    refused("127.0.0.1:4317", "expected http://HOST:PORT");
    refused("grpc://x:1", "expected http://HOST:PORT");
    refused("http://x:0", "port");
    refused("http://x:99999", "port");
    refused("http://x:abc", "port");
    refused("http://x:4317/v1/traces", "no path");
    refused("http://user@x:4317", "no path");
    refused("http://", "no path");
    refused("http://[::1:4317", "unclosed");
    refused("http://a b:1", "host");
    refused("http://\u{e9}:1", "host");
}

async fn loopback() -> (TcpListener, SocketAddr) {
    let l = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let a = l.local_addr().unwrap();
    (l, a)
}

fn collector(addr: SocketAddr) -> Collector {
    Collector {
        host: addr.ip().to_string(),
        port: addr.port(),
    }
}

/// A relay in front of `target`, and where it listens.
async fn relay_to(target: SocketAddr, limits: Limits) -> (SocketAddr, mpsc::Receiver<String>) {
    let (listener, addr) = loopback().await;
    let (tx, rx) = mpsc::channel(16);
    tokio::spawn(serve(listener, collector(target), limits, tx));
    (addr, rx)
}

/// Connects and waits for the relay to close the connection (EOF or reset).
async fn closed_by_relay(addr: SocketAddr) {
    let mut c = TcpStream::connect(addr).await.unwrap();
    let mut buf = [0u8; 1];
    let n = c.read(&mut buf).await.unwrap_or(0);
    assert_eq!(n, 0, "the relay closes a connection it cannot carry");
}

#[tokio::test]
async fn bytes_cross_both_ways_unchanged() {
    let (collector, target) = loopback().await;
    tokio::spawn(async move {
        let (mut s, _) = collector.accept().await.unwrap();
        let mut buf = vec![0u8; 70_000];
        s.read_exact(&mut buf).await.unwrap();
        buf.reverse();
        s.write_all(&buf).await.unwrap();
    });
    let (relay, _events) = relay_to(target, Limits::default()).await;
    let mut c = TcpStream::connect(relay).await.unwrap();
    // More than one buffer's worth, every byte value.
    let sent: Vec<u8> = (0..70_000u32).map(|i| (i % 251) as u8).collect();
    c.write_all(&sent).await.unwrap();
    let mut got = vec![0u8; sent.len()];
    c.read_exact(&mut got).await.unwrap();
    got.reverse();
    assert_eq!(got, sent);
}

#[tokio::test]
async fn an_unreachable_collector_is_reported_once_per_outage() {
    // A port that was just free: nothing listens there.
    let (gone, target) = loopback().await;
    drop(gone);
    let (relay, mut events) = relay_to(target, Limits::default()).await;
    for _ in 0..3 {
        closed_by_relay(relay).await;
    }
    let said = events.try_recv().unwrap();
    assert!(
        said.contains(&format!("http://{target}")) && said.contains("cannot be reached"),
        "{said}"
    );
    assert!(events.try_recv().is_err(), "said once, not per connection");

    // The collector comes up: said once; its connections are carried.
    let back = TcpListener::bind(target).await.unwrap();
    let c = TcpStream::connect(relay).await.unwrap();
    let (_accepted, _) = back.accept().await.unwrap();
    assert!(events.recv().await.unwrap().contains("answers again"));
    drop((c, back));
    // And goes away again: a new outage, said again.
    closed_by_relay(relay).await;
    assert!(events.recv().await.unwrap().contains("cannot be reached"));
}

#[tokio::test]
async fn connections_beyond_the_limit_are_closed_at_once() {
    let (collector, target) = loopback().await;
    let limits = Limits {
        connections: 1,
        ..Limits::default()
    };
    let (relay, mut events) = relay_to(target, limits).await;
    let _first = TcpStream::connect(relay).await.unwrap();
    let (_held, _) = collector.accept().await.unwrap();
    closed_by_relay(relay).await;
    closed_by_relay(relay).await;
    let said = events.try_recv().unwrap();
    assert!(said.contains("limit of 1 connections"), "{said}");
    assert!(events.try_recv().is_err(), "said once");
}

#[tokio::test]
async fn aborting_the_relay_closes_what_it_carries() {
    let (collector, target) = loopback().await;
    let (listener, relay) = loopback().await;
    let (tx, _rx) = mpsc::channel(16);
    let task = tokio::spawn(serve(
        listener,
        self::collector(target),
        Limits::default(),
        tx,
    ));
    let mut c = TcpStream::connect(relay).await.unwrap();
    let (mut held, _) = collector.accept().await.unwrap();
    task.abort();
    let _ = task.await;
    // Both ends see the relay's side close.
    let mut buf = [0u8; 1];
    assert_eq!(c.read(&mut buf).await.unwrap_or(0), 0);
    assert_eq!(held.read(&mut buf).await.unwrap_or(0), 0);
    assert!(
        TcpStream::connect(relay).await.is_err(),
        "no longer listening"
    );
}
