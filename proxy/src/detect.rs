//! Protocol detection: what does a client speak, judged from its first bytes?
//!
//! Promises: [`classify`] is a pure function of the bytes seen so far that never panics and answers
//! `NeedMore` only while the bytes are still a plausible prefix of an HTTP request line or the
//! HTTP/2 preface, and never for more than [`MAX_DETECT_BYTES`]. [`detect`] reads until the answer is
//! known or the timeout passes, and returns every byte it read so nothing is lost.
//!
//! We bias towards availability: anything that is not clearly HTTP is proxied as opaque TCP, which
//! still works (without L7 features). A client that sends nothing (server-first protocols such as
//! MySQL) is opaque after the detection timeout; known server-first ports skip detection entirely.

use bytes::BytesMut;
use std::time::Duration;
use tokio::io::{AsyncRead, AsyncReadExt};

/// The HTTP/2 connection preface (RFC 9113 §3.4).
pub const H2_PREFACE: &[u8] = b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n";

/// Longest request line we wait for before giving up on HTTP/1 (8 KiB, like most servers' limit).
pub const MAX_DETECT_BYTES: usize = 8 * 1024;

/// Ports of protocols where the server speaks first, so waiting for the client would only add
/// the detection timeout to every connection (Linkerd's famous 10-second delay).
pub const SERVER_FIRST_PORTS: &[u16] = &[
    21, 22, 25, 110, 143, 587, 3306, 4222, 5432, 6379, 9042, 11211, 27017, 33060,
];

#[derive(Copy, Clone, Debug, PartialEq, Eq)]
pub enum Protocol {
    Http1,
    Http2,
    Opaque,
}

#[derive(Copy, Clone, Debug, PartialEq, Eq)]
pub enum Classification {
    Known(Protocol),
    NeedMore,
}

/// Classifies the first bytes of a client stream.
pub fn classify(buf: &[u8]) -> Classification {
    use Classification::*;
    if buf.is_empty() {
        return NeedMore;
    }
    // HTTP/2 prior knowledge: the whole preface, or a prefix of it.
    let n = buf.len().min(H2_PREFACE.len());
    if buf[..n] == H2_PREFACE[..n] {
        return if n == H2_PREFACE.len() {
            Known(Protocol::Http2)
        } else {
            NeedMore
        };
    }
    match request_line(buf) {
        Line::Valid => Known(Protocol::Http1),
        Line::Invalid => Known(Protocol::Opaque),
        Line::Partial if buf.len() >= MAX_DETECT_BYTES => Known(Protocol::Opaque),
        Line::Partial => NeedMore,
    }
}

enum Line {
    Valid,
    Partial,
    Invalid,
}

/// Checks `METHOD SP request-target SP HTTP/1.x CRLF` (RFC 9112 §3), accepting a bare LF.
fn request_line(buf: &[u8]) -> Line {
    let mut i = 0;
    // method = token
    while i < buf.len() && is_tchar(buf[i]) {
        i += 1;
    }
    if i == buf.len() {
        return Line::Partial;
    }
    if i == 0 || buf[i] != b' ' {
        return Line::Invalid;
    }
    i += 1;
    // request-target: visible ASCII (we are lenient about exactly which).
    let target_start = i;
    while i < buf.len() && buf[i] > b' ' && buf[i] < 0x7f {
        i += 1;
    }
    if i == buf.len() {
        return Line::Partial;
    }
    if i == target_start || buf[i] != b' ' {
        return Line::Invalid;
    }
    i += 1;
    const VERSION: &[u8] = b"HTTP/1.";
    let rest = &buf[i..];
    let n = rest.len().min(VERSION.len());
    if rest[..n] != VERSION[..n] {
        return Line::Invalid;
    }
    if rest.len() <= VERSION.len() {
        return Line::Partial;
    }
    if !matches!(rest[VERSION.len()], b'0' | b'1') {
        return Line::Invalid;
    }
    match rest.get(VERSION.len() + 1..) {
        None | Some([]) => Line::Partial,
        Some([b'\n', ..]) | Some([b'\r', b'\n', ..]) => Line::Valid,
        Some([b'\r']) => Line::Partial,
        Some(_) => Line::Invalid,
    }
}

fn is_tchar(b: u8) -> bool {
    b.is_ascii_alphanumeric() || b"!#$%&'*+-.^_`|~".contains(&b)
}

/// Outcome of [`detect`]: the protocol and every byte read while deciding.
#[derive(Debug)]
pub struct Detected {
    pub protocol: Protocol,
    pub buffered: BytesMut,
    /// True when the decision was forced by the timeout (metrics and logs say so).
    pub timed_out: bool,
}

/// Reads from `io` until the protocol is known, `timeout` passes, or the peer closes.
pub async fn detect<I: AsyncRead + Unpin>(
    io: &mut I,
    timeout: Duration,
) -> std::io::Result<Detected> {
    let deadline = tokio::time::Instant::now() + timeout;
    detect_buffered(io, BytesMut::with_capacity(1024), deadline).await
}

/// Like [`detect`], continuing from bytes already read (e.g. while looking for a TLS ClientHello).
pub async fn detect_buffered<I: AsyncRead + Unpin>(
    io: &mut I,
    mut buffered: BytesMut,
    deadline: tokio::time::Instant,
) -> std::io::Result<Detected> {
    loop {
        if let Classification::Known(protocol) = classify(&buffered) {
            return Ok(Detected {
                protocol,
                buffered,
                timed_out: false,
            });
        }
        if buffered.capacity() - buffered.len() < 512 {
            buffered.reserve(1024);
        }
        match tokio::time::timeout_at(deadline, io.read_buf(&mut buffered)).await {
            Ok(Ok(0)) => {
                // The client half-closed before we could tell: whatever it sent is opaque.
                return Ok(Detected {
                    protocol: Protocol::Opaque,
                    buffered,
                    timed_out: false,
                });
            }
            Ok(Ok(_)) => {}
            Ok(Err(e)) => return Err(e),
            Err(_elapsed) => {
                return Ok(Detected {
                    protocol: Protocol::Opaque,
                    buffered,
                    timed_out: true,
                });
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use Classification::*;

    #[test]
    fn http1_request_lines_are_http1() {
        for line in [
            &b"GET / HTTP/1.1\r\n"[..],
            b"POST /a?b=c HTTP/1.0\r\nHost: x\r\n",
            b"GET / HTTP/1.1\n",
            b"CONNECT example.com:443 HTTP/1.1\r\n",
            b"OPTIONS * HTTP/1.1\r\n",
        ] {
            assert_eq!(classify(line), Known(Protocol::Http1), "{line:?}");
        }
    }

    #[test]
    fn prefixes_of_http_need_more_bytes() {
        let full = b"GET /index.html HTTP/1.1\r\n";
        for n in 1..full.len() - 1 {
            assert_eq!(classify(&full[..n]), NeedMore, "prefix of {n} bytes");
        }
        for n in 1..H2_PREFACE.len() {
            assert_eq!(classify(&H2_PREFACE[..n]), NeedMore, "preface prefix {n}");
        }
    }

    #[test]
    fn h2_preface_is_http2() {
        let mut buf = H2_PREFACE.to_vec();
        buf.extend_from_slice(&[0, 0, 0, 4, 0]);
        assert_eq!(classify(&buf), Known(Protocol::Http2));
    }

    #[test]
    fn binary_and_tls_are_opaque() {
        assert_eq!(
            classify(&[0x16, 0x03, 0x01, 0x02, 0x00]),
            Known(Protocol::Opaque)
        );
        assert_eq!(classify(b"\x00\x00\x00"), Known(Protocol::Opaque));
        assert_eq!(classify(b"GET  / HTTP/1.1\r\n"), Known(Protocol::Opaque));
        assert_eq!(classify(b"GET / HTTP/2.0\r\n"), Known(Protocol::Opaque));
        assert_eq!(classify(b"GET / HTTP/1.1 x\r\n"), Known(Protocol::Opaque));
        assert_eq!(classify(b"PRI * HTTP/2.1"), Known(Protocol::Opaque));
    }

    #[test]
    fn endless_request_line_gives_up_at_the_cap() {
        let mut buf = b"GET /".to_vec();
        buf.resize(MAX_DETECT_BYTES, b'a');
        assert_eq!(classify(&buf), Known(Protocol::Opaque));
    }

    #[tokio::test(start_paused = true)]
    async fn silent_client_is_opaque_after_timeout() {
        let (_client, mut server) = tokio::io::duplex(64);
        let d = detect(&mut server, Duration::from_secs(1)).await.unwrap();
        assert_eq!(d.protocol, Protocol::Opaque);
        assert!(d.timed_out);
        assert!(d.buffered.is_empty());
    }

    #[tokio::test]
    async fn detection_keeps_every_byte_across_reads() {
        use tokio::io::AsyncWriteExt;
        let (mut client, mut server) = tokio::io::duplex(64);
        let task = tokio::spawn(async move {
            client.write_all(b"GET /slow").await.unwrap();
            tokio::task::yield_now().await;
            client.write_all(b" HTTP/1.1\r\nHost: a\r\n").await.unwrap();
            client
        });
        let d = detect(&mut server, Duration::from_secs(5)).await.unwrap();
        assert_eq!(d.protocol, Protocol::Http1);
        assert!(d.buffered.starts_with(b"GET /slow HTTP/1.1\r\n"));
        drop(task.await.unwrap());
    }
}
