use super::tls::{self, Hello};
use super::*;

const CLIENT: SocketAddrV4 = SocketAddrV4::new(Ipv4Addr::new(198, 18, 7, 2), 40000);
const SERVER: SocketAddrV4 = SocketAddrV4::new(Ipv4Addr::new(198, 18, 7, 3), 15006);

/// A little-endian microsecond pcap with one Ethernet frame per (src, dst, seq, flags, payload).
fn pcap(frames: &[(SocketAddrV4, SocketAddrV4, u32, u8, &[u8])]) -> Vec<u8> {
    let mut out = Vec::new();
    out.extend_from_slice(&0xa1b2_c3d4u32.to_le_bytes());
    out.extend_from_slice(&2u16.to_le_bytes());
    out.extend_from_slice(&4u16.to_le_bytes());
    out.extend_from_slice(&[0; 8]); // thiszone, sigfigs
    out.extend_from_slice(&262_144u32.to_le_bytes());
    out.extend_from_slice(&LINKTYPE_ETHERNET.to_le_bytes());
    for &(src, dst, seq, flags, payload) in frames {
        let mut f = vec![0u8; 12];
        f.extend_from_slice(&ETHERTYPE_IPV4.to_be_bytes());
        let total = (20 + 20 + payload.len()) as u16;
        f.extend_from_slice(&[0x45, 0]);
        f.extend_from_slice(&total.to_be_bytes());
        f.extend_from_slice(&[0, 0, 0x40, 0, 64, IPPROTO_TCP, 0, 0]);
        f.extend_from_slice(&src.ip().octets());
        f.extend_from_slice(&dst.ip().octets());
        f.extend_from_slice(&src.port().to_be_bytes());
        f.extend_from_slice(&dst.port().to_be_bytes());
        f.extend_from_slice(&seq.to_be_bytes());
        f.extend_from_slice(&[0, 0, 0, 0, 0x50, flags, 0xff, 0xff, 0, 0, 0, 0]);
        f.extend_from_slice(payload);
        // Minimum-size frames are padded; the padding is not TCP payload.
        while f.len() < 60 {
            f.push(0);
        }
        out.extend_from_slice(&[0; 8]); // timestamp
        out.extend_from_slice(&(f.len() as u32).to_le_bytes());
        out.extend_from_slice(&(f.len() as u32).to_le_bytes());
        out.extend_from_slice(&f);
    }
    out
}

fn handshake_record(kind: u8, body: &[u8]) -> Vec<u8> {
    let mut msg = vec![kind];
    msg.extend_from_slice(&(body.len() as u32).to_be_bytes()[1..]);
    msg.extend_from_slice(body);
    let mut rec = vec![tls::HANDSHAKE, 3, 1];
    rec.extend_from_slice(&(msg.len() as u16).to_be_bytes());
    rec.extend_from_slice(&msg);
    rec
}

fn ext(ty: u16, data: &[u8]) -> Vec<u8> {
    let mut e = ty.to_be_bytes().to_vec();
    e.extend_from_slice(&(data.len() as u16).to_be_bytes());
    e.extend_from_slice(data);
    e
}

fn with_exts(mut body: Vec<u8>, exts: &[Vec<u8>]) -> Vec<u8> {
    let all: Vec<u8> = exts.concat();
    body.extend_from_slice(&(all.len() as u16).to_be_bytes());
    body.extend_from_slice(&all);
    body
}

fn client_hello() -> Vec<u8> {
    let mut body = vec![3, 3];
    body.extend_from_slice(&[7; 32]);
    body.extend_from_slice(&[0]); // session id
    body.extend_from_slice(&[0, 2, 0x13, 0x01]); // one suite
    body.extend_from_slice(&[1, 0]); // null compression
    let body = with_exts(
        body,
        &[
            ext(43, &[4, 0x03, 0x04, 0x03, 0x03]),
            ext(16, &[0, 8, 7, b's', b'i', b'n', b'e', b'w', b'/', b'1']),
        ],
    );
    handshake_record(1, &body)
}

fn server_hello(version_ext: Option<u16>) -> Vec<u8> {
    let mut body = vec![3, 3];
    body.extend_from_slice(&[9; 32]);
    body.extend_from_slice(&[0, 0x13, 0x01, 0]);
    let exts: Vec<Vec<u8>> = version_ext
        .map(|v| ext(43, &v.to_be_bytes()))
        .into_iter()
        .collect();
    handshake_record(2, &with_exts(body, &exts))
}

#[test]
fn reassembles_streams_and_reads_both_hellos() {
    let ch = client_hello();
    let sh = server_hello(Some(tls::TLS13));
    let (first, second) = ch.split_at(20);
    let app = [tls::APPLICATION_DATA, 3, 3, 0, 2, 0xaa, 0xbb];
    let cap = pcap(&[
        (CLIENT, SERVER, 99, TCP_SYN, b""),
        (SERVER, CLIENT, 499, TCP_SYN | 0x10, b""),
        (CLIENT, SERVER, 100, 0x18, first),
        // A retransmission overlapping what we have, then the rest.
        (CLIENT, SERVER, 100, 0x18, first),
        (CLIENT, SERVER, 120, 0x18, second),
        (SERVER, CLIENT, 500, 0x18, &sh),
        (CLIENT, SERVER, 100 + ch.len() as u32, 0x18, &app),
    ]);
    let segs = tcp_segments(&cap).unwrap();
    assert_eq!(segs.len(), 7);
    let streams = streams(&segs);
    let up = &streams[&(CLIENT, SERVER)];
    assert_eq!(up.missing, 0);
    assert_eq!(up.bytes, [ch.as_slice(), &app].concat());

    let (recs, trailing) = tls::records(&up.bytes).unwrap();
    assert_eq!((recs.len(), trailing), (2, 0));
    assert_eq!(
        tls::hello(&recs[0]),
        Some(Hello::Client {
            versions: vec![0x0304, 0x0303],
            alpn: vec![b"sinew/1".to_vec()],
        })
    );
    assert_eq!(recs[1].content_type, tls::APPLICATION_DATA);
    let (down, _) = tls::records(&streams[&(SERVER, CLIENT)].bytes).unwrap();
    assert_eq!(
        tls::hello(&down[0]),
        Some(Hello::Server {
            version: tls::TLS13
        })
    );
}

#[test]
fn server_hello_without_supported_versions_reports_the_legacy_version() {
    let sh = server_hello(None);
    let (recs, _) = tls::records(&sh).unwrap();
    assert_eq!(
        tls::hello(&recs[0]),
        Some(Hello::Server { version: 0x0303 })
    );
}

#[test]
fn plaintext_is_not_mistaken_for_tls() {
    let err = tls::records(b"GET / HTTP/1.1\r\nHost: x\r\n\r\n").unwrap_err();
    assert!(err.starts_with("byte 0: "), "{err}");
    assert!(contains(b"xxGET / HTTP/1.1", b"HTTP/1.1"));
    assert!(!contains(b"HTTP/1.0", b"HTTP/1.1"));
}

#[test]
fn a_capture_cut_mid_packet_yields_the_packets_before_the_cut() {
    let cap = pcap(&[
        (CLIENT, SERVER, 1, 0x18, b"hello"),
        (CLIENT, SERVER, 6, 0x18, b"world"),
    ]);
    let segs = tcp_segments(&cap[..cap.len() - 3]).unwrap();
    assert_eq!(segs.len(), 1);
    assert_eq!(segs[0].payload, b"hello");
}

#[test]
fn a_gap_in_the_capture_is_counted() {
    let cap = pcap(&[
        (CLIENT, SERVER, 1, 0x18, b"hello"),
        (CLIENT, SERVER, 10, 0x18, b"world"),
    ]);
    let s = &streams(&tcp_segments(&cap).unwrap())[&(CLIENT, SERVER)];
    assert_eq!(s.missing, 4);
}

#[test]
fn pcapng_and_other_link_types_are_refused_with_a_reason() {
    let ng = [0x0a, 0x0d, 0x0d, 0x0a].repeat(8);
    assert!(tcp_segments(&ng).unwrap_err().contains("pcapng"));
    let mut cooked = pcap(&[]);
    cooked[20] = 113; // LINKTYPE_LINUX_SLL
    assert!(tcp_segments(&cooked).unwrap_err().contains("not Ethernet"));
}
