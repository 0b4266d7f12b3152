//! The stream header a client's proxy sends first on a mesh TCP stream (`sinew/tcp`: magic and
//! target port; `sinew/tcp-peer`: the same, then the length and bytes of its peer metadata; the
//! layout is written by `outbound::tcp::header` / `header_with_peer`).
//!
//! Promises: [`parse`] is pure and total (any bytes give an answer, never a panic) and asks for
//! exactly the bytes the header has, never more, so [`read`] leaves the first byte of the app's
//! stream unread; metadata longer than [`peer::MAX_LEN`] makes the header invalid (the sender
//! leaves such metadata out, so only a broken or hostile peer sends it).

use crate::telemetry::peer;
use tokio::io::{AsyncRead, AsyncReadExt};

/// `sinew/tcp`: magic (4 bytes) and port (2).
const FIXED: usize = 6;
/// `sinew/tcp-peer`: then the metadata's length (2 bytes, big-endian).
const WITH_LEN: usize = FIXED + 2;

/// A complete, valid header.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Header {
    /// The app port the stream is for (0 is returned as is; the caller refuses it).
    pub port: u16,
    /// The client's peer metadata (`sinew/tcp-peer` only; empty otherwise).
    pub meta: Vec<u8>,
    /// How many bytes of the stream the header took.
    pub len: usize,
}

/// What the first bytes of a stream say.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Parse {
    /// The header is not complete: the stream must have this many bytes in all first.
    NeedMore(usize),
    /// Not a header this proxy accepts (wrong magic, oversized metadata).
    Invalid,
    Header(Header),
}

/// Parses the header at the start of `buf` (`with_peer`: the stream negotiated `sinew/tcp-peer`).
pub fn parse(buf: &[u8], with_peer: bool) -> Parse {
    let magic = match with_peer {
        true => crate::outbound::TCP_MAGIC_PEER,
        false => crate::outbound::TCP_MAGIC,
    };
    let Some(fixed) = buf.get(..FIXED) else {
        return Parse::NeedMore(FIXED);
    };
    if &fixed[..4] != magic {
        return Parse::Invalid;
    }
    let port = u16::from_be_bytes([fixed[4], fixed[5]]);
    if !with_peer {
        return Parse::Header(Header {
            port,
            meta: Vec::new(),
            len: FIXED,
        });
    }
    let Some(len) = buf.get(FIXED..WITH_LEN) else {
        return Parse::NeedMore(WITH_LEN);
    };
    let meta_len = u16::from_be_bytes([len[0], len[1]]) as usize;
    if meta_len > peer::MAX_LEN {
        return Parse::Invalid;
    }
    let end = WITH_LEN + meta_len;
    match buf.get(WITH_LEN..end) {
        Some(meta) => Parse::Header(Header {
            port,
            meta: meta.to_vec(),
            len: end,
        }),
        None => Parse::NeedMore(end),
    }
}

/// Reads the header from `io`, no byte past it; `Ok(None)` when it is invalid.
pub async fn read<I>(io: &mut I, with_peer: bool) -> std::io::Result<Option<Header>>
where
    I: AsyncRead + Unpin,
{
    let mut buf = Vec::with_capacity(WITH_LEN);
    loop {
        match parse(&buf, with_peer) {
            Parse::NeedMore(n) => {
                let have = buf.len();
                buf.resize(n, 0);
                io.read_exact(&mut buf[have..]).await?;
            }
            Parse::Invalid => return Ok(None),
            Parse::Header(h) => return Ok(Some(h)),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::outbound::TCP_MAGIC_PEER;

    #[test]
    fn a_peer_header_is_read_to_its_end_and_no_further() {
        let mut stream = TCP_MAGIC_PEER.to_vec();
        stream.extend_from_slice(&8080u16.to_be_bytes());
        stream.extend_from_slice(&3u16.to_be_bytes());
        stream.extend_from_slice(b"1;xapp bytes");
        let mut io = &stream[..];
        let h = futures_util::FutureExt::now_or_never(read(&mut io, true))
            .expect("a slice is always ready")
            .expect("no I/O error")
            .expect("a valid header");
        assert_eq!((h.port, &h.meta[..], h.len), (8080, &b"1;x"[..], 11));
        assert_eq!(io, b"app bytes");
    }

    #[test]
    fn oversized_metadata_and_wrong_magic_are_invalid() {
        let mut h = TCP_MAGIC_PEER.to_vec();
        h.extend_from_slice(&[0, 80]);
        h.extend_from_slice(&((peer::MAX_LEN + 1) as u16).to_be_bytes());
        assert_eq!(parse(&h, true), Parse::Invalid);
        assert_eq!(parse(&h, false), Parse::Invalid);
        assert_eq!(parse(&h[..3], true), Parse::NeedMore(FIXED));
    }
}
