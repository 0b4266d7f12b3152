//! Accepted connections: where they were really going (`SO_ORIGINAL_DST`).

use std::io;
use std::net::SocketAddr;
use tokio::net::TcpStream;

/// The destination the client dialled before iptables redirected it to us.
///
/// Without a REDIRECT rule the kernel answers with the socket's own local address, which callers
/// must treat as "not intercepted" (see [`is_loop`]).
pub fn original_dst(stream: &TcpStream) -> io::Result<SocketAddr> {
    let sock = socket2::SockRef::from(stream);
    let addr = if stream.local_addr()?.is_ipv4() {
        sock.original_dst_v4()?
    } else {
        sock.original_dst_v6()?
    };
    addr.as_socket().ok_or_else(|| {
        io::Error::new(
            io::ErrorKind::InvalidData,
            "SO_ORIGINAL_DST returned a non-IP address",
        )
    })
}

/// True when `dst` is the listener itself: forwarding there would loop back into the proxy.
pub fn is_loop(dst: SocketAddr, local: SocketAddr) -> bool {
    dst == local
}

/// Closes an accepted connection with a reset (SO_LINGER 0): the client sees a refused
/// connection at once instead of an empty reply it might mistake for an answer. A zero linger
/// never blocks the close.
pub fn close_with_reset(stream: TcpStream) {
    let _ = socket2::SockRef::from(&stream).set_linger(Some(std::time::Duration::ZERO));
    drop(stream);
}
