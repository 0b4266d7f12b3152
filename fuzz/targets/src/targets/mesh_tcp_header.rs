//! The header that opens a mesh TCP stream (`sinew_proxy::inbound::tcp_header`), as the inbound
//! proxy reads it from a peer, for both ALPNs (`sinew/tcp`, `sinew/tcp-peer`).
//!
//! Contract checked:
//! - never panics;
//! - `parse` asks for more only while the input is shorter than what it asks for, and its
//!   answer does not change once it has one (bytes after the header are the app's);
//! - a header takes exactly its own bytes, which are what the sending proxy writes for that
//!   port and metadata (magic, port, length, metadata), and the metadata fits the limit;
//! - `read` over the stream takes exactly those bytes and leaves the rest unread.

use sinew_proxy::inbound::tcp_header::{self, Header, Parse};
use sinew_proxy::outbound::{TCP_MAGIC, TCP_MAGIC_PEER};
use sinew_proxy::telemetry::peer::MAX_LEN;
use std::future::Future;
use std::task::{Context, Poll, Waker};

/// Checks one input; returns its outcome.
pub fn check(data: &[u8]) -> String {
    let mut outcome = String::new();
    for with_peer in [false, true] {
        let full = tcp_header::parse(data, with_peer);
        prefixes_agree(data, with_peer, &full);
        if let Parse::Header(h) = &full {
            assert_eq!(&data[..h.len], &encode(h, with_peer)[..], "header bytes");
            assert!(h.meta.len() <= MAX_LEN, "metadata over the limit");
        }
        let mut rest = data;
        let read = {
            let mut fut = std::pin::pin!(tcp_header::read(&mut rest, with_peer));
            match fut.as_mut().poll(&mut Context::from_waker(Waker::noop())) {
                Poll::Ready(r) => r,
                Poll::Pending => panic!("read is pending on a ready slice"),
            }
        };
        match (&full, read) {
            (Parse::Header(h), Ok(Some(r))) => {
                assert_eq!(h, &r, "read and parse disagree");
                assert_eq!(rest, &data[h.len..], "read took more than the header");
            }
            (Parse::Invalid, Ok(None)) => {}
            (Parse::NeedMore(_), Err(e)) if e.kind() == std::io::ErrorKind::UnexpectedEof => {}
            (p, r) => panic!("parse says {p:?}, read says {r:?}"),
        }
        outcome.push_str(match full {
            Parse::NeedMore(_) => "more ",
            Parse::Invalid => "invalid ",
            Parse::Header(_) => "header ",
        });
    }
    outcome
}

/// Every prefix: `NeedMore(n)` only with `n` past the prefix; a final answer never changes.
fn prefixes_agree(data: &[u8], with_peer: bool, full: &Parse) {
    let mut settled: Option<(usize, Parse)> = None;
    for n in 0..=data.len() {
        let p = tcp_header::parse(&data[..n], with_peer);
        match (&p, &settled) {
            (Parse::NeedMore(want), None) => assert!(*want > n, "NeedMore({want}) with {n} bytes"),
            (_, Some((at, first))) => {
                assert_eq!(&p, first, "answer at {n} bytes differs from {at}")
            }
            (_, None) => settled = Some((n, p)),
        }
    }
    if let Some((_, first)) = settled {
        assert_eq!(&first, full);
    }
}

/// What the sending proxy writes for `h`.
fn encode(h: &Header, with_peer: bool) -> Vec<u8> {
    let mut out = match with_peer {
        true => TCP_MAGIC_PEER.to_vec(),
        false => TCP_MAGIC.to_vec(),
    };
    out.extend_from_slice(&h.port.to_be_bytes());
    if with_peer {
        out.extend_from_slice(&(h.meta.len() as u16).to_be_bytes());
        out.extend_from_slice(&h.meta);
    }
    out
}
