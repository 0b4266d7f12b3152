//! `sinew_proxy::http::guard::Guarded` as hyper sees it: an `AsyncRead` over a client stream that
//! arrives in fuzzer-chosen pieces (see `common.rs`), read by a caller whose buffer size is also
//! chosen (the second split cycle), and with `Pending` in between, until end of stream.
//!
//! Contract checked:
//! - never panics and reaches end of stream (no endless loop);
//! - when the framer (fed in one piece) finds no violation, the bytes read are exactly the input:
//!   the guard passes everything on unchanged, including an incomplete head released at EOF;
//! - otherwise they are a prefix of the input followed by the poison line.

use super::split::{MAX_HEAD, POISON};
use bytes::BytesMut;
use sinew_proxy::http::guard::{Framer, Guarded};
use std::pin::Pin;
use std::task::{Context, Poll, Waker};
use tokio::io::{AsyncRead, ReadBuf};

/// Hands out `payload` in pieces; every other poll first says `Pending` when `pending` is set.
struct Client<'a> {
    pieces: Vec<&'a [u8]>,
    next: usize,
    pending: bool,
    polls: usize,
}

impl AsyncRead for Client<'_> {
    fn poll_read(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<std::io::Result<()>> {
        self.polls += 1;
        if self.pending && self.polls % 2 == 1 {
            cx.waker().wake_by_ref();
            return Poll::Pending;
        }
        let Some(piece) = self.pieces.get(self.next).copied() else {
            return Poll::Ready(Ok(())); // EOF
        };
        let n = piece.len().min(buf.remaining());
        buf.put_slice(&piece[..n]);
        let next = self.next;
        if n == piece.len() {
            self.next += 1;
        } else {
            self.pieces[next] = &piece[n..];
        }
        Poll::Ready(Ok(()))
    }
}

/// Checks one input; returns its outcome.
pub fn check(data: &[u8]) -> String {
    let split = super::split::split(data);
    // A second split description picks the reader's buffer sizes.
    let reads = super::split::split(split.payload);
    let payload = reads.payload;
    let pending = data.first().is_some_and(|b| b & 0x40 != 0);

    let mut framer = Framer::new(MAX_HEAD);
    let violation = framer.feed(payload, &mut BytesMut::new()).err();

    let client = Client {
        pieces: super::split::pieces(payload, &split.sizes),
        next: 0,
        pending,
        polls: 0,
    };
    let mut io = Guarded::new(client, MAX_HEAD);
    let mut cx = Context::from_waker(Waker::noop());
    let mut got = Vec::new();
    let mut buf = vec![0u8; 256 + 1];
    let mut i = 0usize;
    let limit = 4 * payload.len() + 64;
    loop {
        assert!(i < limit, "no end of stream after {i} polls");
        let want = reads.sizes[i % reads.sizes.len()].min(buf.len());
        i += 1;
        let mut rb = ReadBuf::new(&mut buf[..want]);
        match Pin::new(&mut io).poll_read(&mut cx, &mut rb) {
            Poll::Pending => continue,
            Poll::Ready(Err(e)) => panic!("read error {e}"),
            Poll::Ready(Ok(())) if rb.filled().is_empty() => break,
            Poll::Ready(Ok(())) => got.extend_from_slice(rb.filled()),
        }
    }
    if super::split::debug() {
        eprintln!(
            "pieces {:?} reads {:?} pending {pending}: violation {violation:?}\n  got {:?}",
            split.sizes,
            reads.sizes,
            String::from_utf8_lossy(&got)
        );
    }
    let outcome = format!("{violation:?}");
    match violation {
        None => assert!(
            got == payload,
            "no violation, but the bytes read ({} bytes) are not the input ({} bytes)",
            got.len(),
            payload.len()
        ),
        Some(v) => {
            assert!(got.ends_with(POISON), "{v:?}: no poison line at the end");
            assert!(
                payload.starts_with(&got[..got.len() - POISON.len()]),
                "{v:?}: bytes before the poison line are not a prefix of the input"
            );
        }
    }
    outcome
}
