//! Protocol detection: what does a client speak, judged from its first bytes?
//!
//! Promises: [`classify`] is a pure function of the bytes seen so far that never panics, answers
//! `NeedMore` only below [`MAX_DETECT_BYTES`], and never changes its answer as more bytes arrive.
//! [`detect`] reads until the answer is known or the timeout passes, and returns every byte it
//! read so nothing is lost.
//!
//! Security first, then availability. Bytes that *begin like* an HTTP/1 request — a token and a
//! space, after any leading whitespace — are HTTP, however malformed the rest: hyper and the
//! smuggling guard then judge them and answer 400, 408 or 431. Passing such bytes through as an
//! opaque stream would let any caller hand the app a request with a forged
//! `x-forwarded-client-cert` (an over-long request line, a non-ASCII path, a pause mid-line). So a
//! pause after the first bytes makes a connection HTTP, not opaque. Everything else that is not
//! HTTP/2's preface is opaque TCP. A client that sends nothing is not decided here: see
//! [`crate::first_speaker`].

use bytes::BytesMut;
use std::time::Duration;
use tokio::io::{AsyncRead, AsyncReadExt};

/// The HTTP/2 connection preface (RFC 9113 §3.4).
pub const H2_PREFACE: &[u8] = b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n";

/// Most leading whitespace we wait through before calling the stream HTTP (hyper answers 400).
pub const MAX_DETECT_BYTES: usize = 8 * 1024;

/// A run of token characters this long at the start is taken for an HTTP method: lenient servers
/// accept long methods, so the run is not allowed to decide "opaque" later.
const MAX_METHOD: usize = 64;

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
    // Servers skip empty lines before a request (RFC 9112 §2.2) and lenient ones (Python's
    // http.server) any whitespace, so none of it may hide a request.
    let lead = buf
        .iter()
        .take(MAX_DETECT_BYTES)
        .take_while(|b| matches!(b, b' ' | b'\t' | b'\r' | b'\n'))
        .count();
    if lead == MAX_DETECT_BYTES {
        return Known(Protocol::Http1);
    }
    let rest = &buf[lead..];
    let method = rest
        .iter()
        .take(MAX_METHOD)
        .take_while(|b| is_tchar(**b))
        .count();
    if method == MAX_METHOD {
        return Known(Protocol::Http1);
    }
    match rest.get(method) {
        None => NeedMore,
        _ if method == 0 => Known(Protocol::Opaque),
        // Python splits the request line on any whitespace, so a tab counts as much as a space.
        Some(b' ' | b'\t') => Known(Protocol::Http1),
        Some(_) => Known(Protocol::Opaque),
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

impl Detected {
    /// The client said nothing before the timeout: a server-first protocol, or an HTTP client
    /// that connected early. Only who speaks first can tell ([`crate::first_speaker`]).
    pub fn is_silent(&self) -> bool {
        self.timed_out && self.buffered.is_empty()
    }
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
                // The client half-closed before we could tell. What it sent holds no token and
                // space, so no request can hide in it: opaque.
                return Ok(Detected {
                    protocol: Protocol::Opaque,
                    buffered,
                    timed_out: false,
                });
            }
            Ok(Ok(_)) => {}
            Ok(Err(e)) => return Err(e),
            Err(_elapsed) => {
                // A pause mid-way through what could still become a request line is HTTP:
                // hyper's header timeout takes over from here.
                let protocol = if buffered.is_empty() {
                    Protocol::Opaque
                } else {
                    Protocol::Http1
                };
                return Ok(Detected {
                    protocol,
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
    fn a_method_and_a_space_are_enough_to_be_http() {
        let full = b"GET /index.html HTTP/1.1\r\n";
        for n in 1..=3 {
            assert_eq!(classify(&full[..n]), NeedMore, "prefix of {n} bytes");
        }
        for n in 4..=full.len() {
            assert_eq!(classify(&full[..n]), Known(Protocol::Http1), "prefix {n}");
        }
        for n in 1..H2_PREFACE.len() {
            assert_eq!(classify(&H2_PREFACE[..n]), NeedMore, "preface prefix {n}");
        }
    }

    /// Each of these reached the app as an opaque stream before, carrying whatever
    /// `x-forwarded-client-cert` the sender wrote. As HTTP, hyper answers or refuses them.
    #[test]
    fn malformed_request_lines_are_http_so_hyper_judges_them() {
        let mut long = b"GET /".to_vec();
        long.resize(MAX_DETECT_BYTES + 100, b'a');
        for line in [
            &b"GET  / HTTP/1.1\r\n"[..],
            b"GET / HTTP/2.0\r\n",
            b"GET / HTTP/1.1 x\r\n",
            b"PRI * HTTP/2.1",
            b"GET /caf\xc3\xa9 HTTP/1.1\r\n",
            b"GET /\xff HTTP/1.1\r\n",
            b"\r\nGET / HTTP/1.1\r\n",
            b"\r\n\r\n\nGET / HTTP/1.1\r\n",
            b"  GET / HTTP/1.1\r\n",
            b"GET\t/\tHTTP/1.1\r\n",
            b"get / http/1.1\r\n",
            b"FOO /x HTTP/1.1\r\n",
            b"GET /\r\n",
            &long,
        ] {
            assert_eq!(
                classify(line),
                Known(Protocol::Http1),
                "{}",
                String::from_utf8_lossy(line)
            );
        }
    }

    #[test]
    fn a_very_long_method_is_http() {
        let method = vec![b'A'; MAX_METHOD];
        assert_eq!(classify(&method), Known(Protocol::Http1));
        assert_eq!(classify(&method[..MAX_METHOD - 1]), NeedMore);
    }

    #[test]
    fn whitespace_alone_is_http_at_the_cap() {
        let ws = vec![b'\n'; MAX_DETECT_BYTES];
        assert_eq!(classify(&ws[..MAX_DETECT_BYTES - 1]), NeedMore);
        assert_eq!(classify(&ws), Known(Protocol::Http1));
    }

    #[test]
    fn h2_preface_is_http2() {
        let mut buf = H2_PREFACE.to_vec();
        buf.extend_from_slice(&[0, 0, 0, 4, 0]);
        assert_eq!(classify(&buf), Known(Protocol::Http2));
    }

    #[test]
    fn binary_tls_and_line_protocols_without_a_space_are_opaque() {
        for bytes in [
            &[0x16, 0x03, 0x01, 0x02, 0x00][..],
            b"\x00\x00\x00",
            b"*1\r\n$4\r\nPING\r\n",
            b"PING\r\n",
            b"AMQP\x00\x00\x09\x01",
            b"\r\n\x16\x03",
            b"{\"json\": 1}",
        ] {
            assert_eq!(classify(bytes), Known(Protocol::Opaque), "{bytes:?}");
        }
    }

    /// The fuzz target's contract, on inputs written to sit at each boundary: once known, the
    /// answer never changes as bytes arrive (so it cannot depend on how reads split the stream).
    #[test]
    fn the_answer_never_changes_as_bytes_arrive() {
        let mut long_ws = vec![b' '; MAX_DETECT_BYTES];
        long_ws.extend_from_slice(b"\x00");
        let mut long_method = vec![b'a'; MAX_METHOD + 3];
        long_method.push(0);
        let mut preface_then_http = H2_PREFACE[..10].to_vec();
        preface_then_http.extend_from_slice(b"x HTTP/1.1\r\n");
        for input in [
            long_ws,
            long_method,
            preface_then_http,
            b" \r\n GET\t/".to_vec(),
            b"PING\r\nGET / HTTP/1.1\r\n".to_vec(),
        ] {
            let mut known = None;
            for n in 0..=input.len() {
                match (classify(&input[..n]), known) {
                    (NeedMore, None) => assert!(n < MAX_DETECT_BYTES),
                    (c, None) => known = Some(c),
                    (c, Some(k)) => assert_eq!(c, k, "prefix {n} of {input:?}"),
                }
            }
        }
    }

    #[tokio::test(start_paused = true)]
    async fn silent_client_is_opaque_after_timeout() {
        let (_client, mut server) = tokio::io::duplex(64);
        let d = detect(&mut server, Duration::from_secs(1)).await.unwrap();
        assert_eq!(d.protocol, Protocol::Opaque);
        assert!(d.is_silent());
    }

    #[tokio::test(start_paused = true)]
    async fn a_pause_inside_a_method_makes_the_connection_http() {
        use tokio::io::AsyncWriteExt;
        let (mut client, mut server) = tokio::io::duplex(64);
        client.write_all(b"GE").await.unwrap();
        let d = detect(&mut server, Duration::from_secs(1)).await.unwrap();
        assert_eq!(d.protocol, Protocol::Http1);
        assert!(d.timed_out && !d.is_silent());
        assert_eq!(&d.buffered[..], b"GE");
    }

    #[tokio::test]
    async fn a_half_close_before_a_space_is_opaque() {
        use tokio::io::AsyncWriteExt;
        let (mut client, mut server) = tokio::io::duplex(64);
        client.write_all(b"QUIT").await.unwrap();
        drop(client);
        let d = detect(&mut server, Duration::from_secs(5)).await.unwrap();
        assert_eq!(d.protocol, Protocol::Opaque);
        assert_eq!(&d.buffered[..], b"QUIT");
    }

    #[tokio::test]
    async fn detection_keeps_every_byte_across_reads() {
        use tokio::io::AsyncWriteExt;
        let (mut client, mut server) = tokio::io::duplex(64);
        let task = tokio::spawn(async move {
            client.write_all(b"GE").await.unwrap();
            tokio::task::yield_now().await;
            client
                .write_all(b"T /slow HTTP/1.1\r\nHost: a\r\n")
                .await
                .unwrap();
            client
        });
        let d = detect(&mut server, Duration::from_secs(5)).await.unwrap();
        assert_eq!(d.protocol, Protocol::Http1);
        assert!(d.buffered.starts_with(b"GET /"));
        drop(task.await.unwrap());
    }
}
