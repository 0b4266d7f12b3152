//! Just enough of a TLS ClientHello parser to tell mesh mTLS from everything else on inbound.
//!
//! The inbound listener must decide, before any handshake, whether a connection is a peer proxy
//! (TLS with one of our ALPN protocols), some other TLS (the app's own HTTPS, passed through), or
//! plaintext. Promise: [`parse`] never panics and never reads past the first TLS record; it only
//! answers `Incomplete` while more bytes of that record are still missing.

/// Content type of a TLS handshake record.
const HANDSHAKE: u8 = 0x16;
const CLIENT_HELLO: u8 = 0x01;
const EXT_ALPN: u16 = 16;
/// Largest TLS plaintext record (RFC 8446 §5.1).
pub const MAX_RECORD: usize = 16 * 1024 + 5;

#[derive(Debug, PartialEq, Eq)]
pub enum Hello<'a> {
    /// Not a TLS handshake at all.
    NotTls,
    /// A TLS record whose first record is not yet complete.
    Incomplete,
    /// A ClientHello; the ALPN protocols it offers (empty when it offers none, or when the hello was
    /// malformed or split across records, which mesh peers never do).
    ClientHello { alpn: Vec<&'a [u8]> },
}

/// Parses the first TLS record in `buf`.
pub fn parse(buf: &[u8]) -> Hello<'_> {
    if buf.is_empty() {
        return Hello::Incomplete;
    }
    if buf[0] != HANDSHAKE {
        return Hello::NotTls;
    }
    if buf.len() < 5 {
        // Record version major must be 3 once we can see it.
        if buf.len() >= 2 && buf[1] != 0x03 {
            return Hello::NotTls;
        }
        return Hello::Incomplete;
    }
    if buf[1] != 0x03 {
        return Hello::NotTls;
    }
    let len = u16::from_be_bytes([buf[3], buf[4]]) as usize;
    if len == 0 || len + 5 > MAX_RECORD {
        return Hello::NotTls;
    }
    let Some(record) = buf.get(5..5 + len) else {
        return Hello::Incomplete;
    };
    let alpn = client_hello_alpn(record).unwrap_or_default();
    Hello::ClientHello { alpn }
}

/// Returns the ALPN list of a ClientHello handshake message, or None if malformed or truncated.
fn client_hello_alpn(record: &[u8]) -> Option<Vec<&[u8]>> {
    let mut r = Reader(record);
    if r.u8()? != CLIENT_HELLO {
        return None;
    }
    let body_len = r.u24()?;
    let mut body = Reader(r.take(body_len)?);
    body.take(2 + 32)?; // legacy_version, random
    let sid = body.u8()? as usize;
    body.take(sid)?;
    let suites = body.u16()? as usize;
    body.take(suites)?;
    let compression = body.u8()? as usize;
    body.take(compression)?;
    if body.0.is_empty() {
        return Some(Vec::new());
    }
    let ext_len = body.u16()? as usize;
    let mut exts = Reader(body.take(ext_len)?);
    while !exts.0.is_empty() {
        let ty = exts.u16()?;
        let len = exts.u16()? as usize;
        let data = exts.take(len)?;
        if ty == EXT_ALPN {
            let mut d = Reader(data);
            let list_len = d.u16()? as usize;
            let mut list = Reader(d.take(list_len)?);
            let mut out = Vec::new();
            while !list.0.is_empty() {
                let n = list.u8()? as usize;
                out.push(list.take(n)?);
            }
            return Some(out);
        }
    }
    Some(Vec::new())
}

struct Reader<'a>(&'a [u8]);

impl<'a> Reader<'a> {
    fn take(&mut self, n: usize) -> Option<&'a [u8]> {
        if self.0.len() < n {
            return None;
        }
        let (head, tail) = self.0.split_at(n);
        self.0 = tail;
        Some(head)
    }
    fn u8(&mut self) -> Option<u8> {
        self.take(1).map(|b| b[0])
    }
    fn u16(&mut self) -> Option<u16> {
        self.take(2).map(|b| u16::from_be_bytes([b[0], b[1]]))
    }
    fn u24(&mut self) -> Option<usize> {
        self.take(3)
            .map(|b| (b[0] as usize) << 16 | (b[1] as usize) << 8 | b[2] as usize)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Builds a minimal ClientHello record offering `alpn`.
    pub(crate) fn hello(alpn: &[&[u8]]) -> Vec<u8> {
        let mut ext = Vec::new();
        if !alpn.is_empty() {
            let mut list = Vec::new();
            for p in alpn {
                list.push(p.len() as u8);
                list.extend_from_slice(p);
            }
            ext.extend_from_slice(&EXT_ALPN.to_be_bytes());
            ext.extend_from_slice(&((list.len() + 2) as u16).to_be_bytes());
            ext.extend_from_slice(&(list.len() as u16).to_be_bytes());
            ext.extend_from_slice(&list);
        }
        // an unrelated extension first (server_name, empty)
        let mut exts = vec![0, 0, 0, 0];
        exts.extend_from_slice(&ext);
        let mut body = vec![3, 3];
        body.extend_from_slice(&[7; 32]);
        body.push(0); // session id
        body.extend_from_slice(&[0, 2, 0x13, 0x01]); // one suite
        body.extend_from_slice(&[1, 0]); // null compression
        body.extend_from_slice(&(exts.len() as u16).to_be_bytes());
        body.extend_from_slice(&exts);
        let mut hs = vec![CLIENT_HELLO];
        hs.extend_from_slice(&(body.len() as u32).to_be_bytes()[1..]);
        hs.extend_from_slice(&body);
        let mut rec = vec![HANDSHAKE, 3, 1];
        rec.extend_from_slice(&(hs.len() as u16).to_be_bytes());
        rec.extend_from_slice(&hs);
        rec
    }

    #[test]
    fn reads_alpn_from_client_hello() {
        let rec = hello(&[b"sinew/h2", b"sinew/tcp"]);
        assert_eq!(
            parse(&rec),
            Hello::ClientHello {
                alpn: vec![&b"sinew/h2"[..], b"sinew/tcp"]
            }
        );
    }

    #[test]
    fn every_truncation_is_incomplete() {
        let rec = hello(&[b"h2"]);
        for n in 0..rec.len() {
            assert_eq!(parse(&rec[..n]), Hello::Incomplete, "{n} bytes");
        }
    }

    #[test]
    fn plaintext_is_not_tls() {
        assert_eq!(parse(b"GET / HTTP/1.1\r\n"), Hello::NotTls);
        assert_eq!(parse(b"\x16\x01"), Hello::NotTls);
        assert_eq!(parse(b"\x16\x03\x01\x00\x00"), Hello::NotTls);
    }

    #[test]
    fn malformed_hello_offers_nothing() {
        let mut rec = hello(&[b"sinew/h2"]);
        let n = rec.len();
        rec[n - 9] = 200; // the ALPN entry length now runs past the list
        assert_eq!(parse(&rec), Hello::ClientHello { alpn: vec![] });
    }
}
