//! Reading what tcpdump captured: TCP streams out of a pcap file, TLS records out of a stream.
//!
//! Just enough to assert on the wire in end-to-end tests without tshark: classic pcap (not
//! pcapng; `tcpdump -w` writes classic), Ethernet framing, IPv4, TCP. Streams are reassembled by
//! sequence number, so retransmissions are not counted twice and a capture gap is reported rather
//! than silently glued over. A capture cut off mid-packet (read while tcpdump still writes) yields
//! the complete packets before the cut.

use std::collections::BTreeMap;
use std::net::{Ipv4Addr, SocketAddrV4};

const LINKTYPE_ETHERNET: u32 = 1;
const ETHERTYPE_IPV4: u16 = 0x0800;
const ETHERTYPE_VLAN: u16 = 0x8100;
const IPPROTO_TCP: u8 = 6;
const TCP_SYN: u8 = 0x02;

/// One captured TCP segment.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Segment {
    pub src: SocketAddrV4,
    pub dst: SocketAddrV4,
    pub seq: u32,
    pub syn: bool,
    pub payload: Vec<u8>,
}

/// (source, destination): one direction of a connection.
pub type Flow = (SocketAddrV4, SocketAddrV4);

/// The bytes of one direction of a connection, in sequence order.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Stream {
    pub bytes: Vec<u8>,
    /// Bytes missing from the capture (the stream has holes where they were).
    pub missing: u64,
}

/// Every IPv4 TCP segment in a classic pcap capture of an Ethernet interface, in capture order.
pub fn tcp_segments(pcap: &[u8]) -> Result<Vec<Segment>, String> {
    let header = pcap
        .get(..24)
        .ok_or("capture is shorter than a pcap file header")?;
    let magic = [header[0], header[1], header[2], header[3]];
    // Microsecond (a1b2c3d4) or nanosecond (a1b23c4d) timestamps, in either byte order.
    let little = match magic {
        [0xd4, 0xc3, 0xb2, 0xa1] | [0x4d, 0x3c, 0xb2, 0xa1] => true,
        [0xa1, 0xb2, 0xc3, 0xd4] | [0xa1, 0xb2, 0x3c, 0x4d] => false,
        _ => {
            return Err(format!(
                "not a classic pcap file (magic {magic:02x?}); pcapng is not supported"
            ));
        }
    };
    let u32_at = |b: &[u8], at: usize| {
        let w = [b[at], b[at + 1], b[at + 2], b[at + 3]];
        if little {
            u32::from_le_bytes(w)
        } else {
            u32::from_be_bytes(w)
        }
    };
    let linktype = u32_at(header, 20) & 0x0fff_ffff;
    if linktype != LINKTYPE_ETHERNET {
        return Err(format!(
            "link type {linktype} is not Ethernet; capture on the bridge, not 'any'"
        ));
    }
    let mut segments = Vec::new();
    let mut at = 24;
    while let Some(rec) = pcap.get(at..at + 16) {
        let caplen = u32_at(rec, 8) as usize;
        let Some(frame) = pcap.get(at + 16..at + 16 + caplen) else {
            break;
        };
        at += 16 + caplen;
        if let Some(seg) = parse_frame(frame) {
            segments.push(seg);
        }
    }
    Ok(segments)
}

/// Ethernet → IPv4 → TCP; `None` for anything else (ARP, IPv6, fragments, truncated frames).
fn parse_frame(frame: &[u8]) -> Option<Segment> {
    let mut ethertype = u16::from_be_bytes([*frame.get(12)?, *frame.get(13)?]);
    let mut l3 = 14;
    if ethertype == ETHERTYPE_VLAN {
        ethertype = u16::from_be_bytes([*frame.get(16)?, *frame.get(17)?]);
        l3 = 18;
    }
    if ethertype != ETHERTYPE_IPV4 {
        return None;
    }
    let ip = frame.get(l3..)?;
    let ihl = usize::from(ip.first()? & 0x0f) * 4;
    // The IP total length, not the frame length: short frames carry Ethernet padding.
    let total = usize::from(u16::from_be_bytes([*ip.get(2)?, *ip.get(3)?]));
    let frag = u16::from_be_bytes([*ip.get(6)?, *ip.get(7)?]);
    if *ip.get(9)? != IPPROTO_TCP || frag & 0x3fff != 0 || ihl < 20 || total < ihl {
        return None;
    }
    let src_ip = Ipv4Addr::new(ip[12], ip[13], ip[14], ip[15]);
    let dst_ip = Ipv4Addr::new(ip[16], ip[17], ip[18], ip[19]);
    let tcp = ip.get(ihl..total)?;
    let port = |at: usize| u16::from_be_bytes([tcp[at], tcp[at + 1]]);
    let data_offset = usize::from(tcp.get(12)? >> 4) * 4;
    if data_offset < 20 || tcp.len() < data_offset {
        return None;
    }
    Some(Segment {
        src: SocketAddrV4::new(src_ip, port(0)),
        dst: SocketAddrV4::new(dst_ip, port(2)),
        seq: u32::from_be_bytes([tcp[4], tcp[5], tcp[6], tcp[7]]),
        syn: tcp[13] & TCP_SYN != 0,
        payload: tcp[data_offset..].to_vec(),
    })
}

/// Reassembles each direction of each connection by sequence number.
pub fn streams(segments: &[Segment]) -> BTreeMap<Flow, Stream> {
    let mut out: BTreeMap<Flow, (Option<u32>, Stream)> = BTreeMap::new();
    for seg in segments {
        let (next, stream) = out.entry((seg.src, seg.dst)).or_default();
        if seg.syn {
            // The SYN takes one sequence number; data starts after it.
            *next = Some(seg.seq.wrapping_add(1));
            continue;
        }
        if seg.payload.is_empty() {
            continue;
        }
        let expected = *next.get_or_insert(seg.seq);
        // Signed distance, so sequence numbers wrapping past 2^32 still compare correctly.
        let ahead = seg.seq.wrapping_sub(expected) as i32;
        let data: &[u8] = if ahead < 0 {
            // Retransmission: keep only bytes beyond what we already have.
            let dup = ahead.unsigned_abs() as usize;
            if dup >= seg.payload.len() {
                continue;
            }
            &seg.payload[dup..]
        } else {
            stream.missing += ahead as u64;
            &seg.payload
        };
        stream.bytes.extend_from_slice(data);
        *next = Some(seg.seq.wrapping_add(seg.payload.len() as u32));
    }
    out.into_iter().map(|(flow, (_, s))| (flow, s)).collect()
}

/// True if `needle` occurs anywhere in `haystack`.
pub fn contains(haystack: &[u8], needle: &[u8]) -> bool {
    !needle.is_empty() && haystack.windows(needle.len()).any(|w| w == needle)
}

/// TLS records and hello messages, as far as a test needs to see them.
pub mod tls {
    pub const CHANGE_CIPHER_SPEC: u8 = 20;
    pub const ALERT: u8 = 21;
    pub const HANDSHAKE: u8 = 22;
    pub const APPLICATION_DATA: u8 = 23;
    /// The version number of TLS 1.3 in `supported_versions`.
    pub const TLS13: u16 = 0x0304;

    const CLIENT_HELLO: u8 = 1;
    const SERVER_HELLO: u8 = 2;
    const EXT_ALPN: u16 = 16;
    const EXT_SUPPORTED_VERSIONS: u16 = 43;

    /// One TLS record (the 5-byte header and its fragment).
    #[derive(Clone, Debug, PartialEq, Eq)]
    pub struct Record<'a> {
        pub content_type: u8,
        pub version: u16,
        pub fragment: &'a [u8],
    }

    /// The first handshake message of either side.
    #[derive(Clone, Debug, PartialEq, Eq)]
    pub enum Hello {
        Client {
            /// `supported_versions`, or the legacy version alone when the extension is absent.
            versions: Vec<u16>,
            alpn: Vec<Vec<u8>>,
        },
        Server {
            /// The negotiated version: `supported_versions` if present, else the legacy field.
            version: u16,
        },
    }

    /// Splits a stream into records. `Err` names the offset where the bytes stop looking like TLS;
    /// an incomplete last record (the capture ended) is returned as the count of trailing bytes.
    pub fn records(stream: &[u8]) -> Result<(Vec<Record<'_>>, usize), String> {
        let mut out = Vec::new();
        let mut at = 0;
        while stream.len() - at >= 5 {
            let h = &stream[at..at + 5];
            let (content_type, version) = (h[0], u16::from_be_bytes([h[1], h[2]]));
            let len = usize::from(u16::from_be_bytes([h[3], h[4]]));
            if !(CHANGE_CIPHER_SPEC..=APPLICATION_DATA).contains(&content_type) || h[1] != 3 {
                return Err(format!(
                    "byte {at}: {:02x?} is not a TLS record header",
                    &stream[at..(at + 16).min(stream.len())]
                ));
            }
            let Some(fragment) = stream.get(at + 5..at + 5 + len) else {
                break;
            };
            out.push(Record {
                content_type,
                version,
                fragment,
            });
            at += 5 + len;
        }
        Ok((out, stream.len() - at))
    }

    /// The ClientHello or ServerHello at the start of a handshake record, if that is what it holds.
    pub fn hello(record: &Record<'_>) -> Option<Hello> {
        if record.content_type != HANDSHAKE {
            return None;
        }
        let mut r = Reader(record.fragment);
        let kind = r.u8()?;
        let len = r.u24()?;
        let mut body = Reader(r.take(len)?);
        let legacy_version = body.u16()?;
        body.take(32)?; // random
        let session_id = usize::from(body.u8()?);
        body.take(session_id)?;
        match kind {
            CLIENT_HELLO => {
                let suites = usize::from(body.u16()?);
                body.take(suites)?;
                let compression = usize::from(body.u8()?);
                body.take(compression)?;
                let mut versions = vec![legacy_version];
                let mut alpn = Vec::new();
                for (ty, mut data) in extensions(&mut body)? {
                    match ty {
                        EXT_SUPPORTED_VERSIONS => {
                            let n = usize::from(data.u8()?);
                            let mut list = Reader(data.take(n)?);
                            versions.clear();
                            while let Some(v) = list.u16() {
                                versions.push(v);
                            }
                        }
                        EXT_ALPN => {
                            let n = usize::from(data.u16()?);
                            let mut list = Reader(data.take(n)?);
                            while let Some(len) = list.u8() {
                                alpn.push(list.take(usize::from(len))?.to_vec());
                            }
                        }
                        _ => {}
                    }
                }
                Some(Hello::Client { versions, alpn })
            }
            SERVER_HELLO => {
                body.u16()?; // cipher suite
                body.u8()?; // compression
                let mut version = legacy_version;
                for (ty, mut data) in extensions(&mut body)? {
                    if ty == EXT_SUPPORTED_VERSIONS {
                        version = data.u16()?;
                    }
                }
                Some(Hello::Server { version })
            }
            _ => None,
        }
    }

    /// The extension block at the end of a hello: (type, data) pairs. Absent block → none.
    fn extensions<'a>(body: &mut Reader<'a>) -> Option<Vec<(u16, Reader<'a>)>> {
        let mut out = Vec::new();
        let Some(n) = body.u16() else {
            return Some(out);
        };
        let mut exts = Reader(body.take(usize::from(n))?);
        while let Some(ty) = exts.u16() {
            let len = usize::from(exts.u16()?);
            out.push((ty, Reader(exts.take(len)?)));
        }
        Some(out)
    }

    /// A cursor over big-endian fields; every read is `None` past the end.
    struct Reader<'a>(&'a [u8]);

    impl<'a> Reader<'a> {
        fn take(&mut self, n: usize) -> Option<&'a [u8]> {
            if self.0.len() < n {
                return None;
            }
            let (head, rest) = self.0.split_at(n);
            self.0 = rest;
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
                .map(|b| usize::from(b[0]) << 16 | usize::from(b[1]) << 8 | usize::from(b[2]))
        }
    }
}

#[cfg(test)]
mod tests;
