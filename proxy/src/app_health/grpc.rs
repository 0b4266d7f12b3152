//! The kubelet's `grpc` probe: `grpc.health.v1.Health/Check` over plaintext HTTP/2, passing
//! only when the answer is `SERVING`.
//!
//! The two messages are one field each, so they are encoded and decoded here by hand rather
//! than generated: `HealthCheckRequest { string service = 1; }` and `HealthCheckResponse {
//! ServingStatus status = 1; }` (UNKNOWN 0, SERVING 1, NOT_SERVING 2, SERVICE_UNKNOWN 3).

use super::Failure;
use bytes::{Buf, BufMut, Bytes, BytesMut};
use http::{HeaderValue, Request};
use std::net::{Ipv4Addr, SocketAddr};
use tokio::net::TcpStream;

const PATH: &str = "/grpc.health.v1.Health/Check";
/// A health answer is a handful of bytes; anything past this is not one.
const MAX_RESPONSE_BYTES: usize = 4096;
const SERVING: u64 = 1;

pub async fn probe(port: u16, service: &str, user_agent: &HeaderValue) -> Result<(), Failure> {
    let addr = SocketAddr::new(Ipv4Addr::LOCALHOST.into(), port);
    let fail = |what: String| Failure::new(format!("gRPC health check on {addr}: {what}"));
    let tcp = TcpStream::connect(addr)
        .await
        .map_err(|e| fail(format!("connect: {e}")))?;
    let _ = tcp.set_nodelay(true);
    let (client, conn) = h2::client::Builder::new()
        .max_frame_size(16 * 1024)
        .max_header_list_size(16 * 1024)
        .initial_window_size(MAX_RESPONSE_BYTES as u32 * 2)
        .handshake::<_, Bytes>(tcp)
        .await
        .map_err(|e| fail(format!("HTTP/2 handshake: {e}")))?;
    // The connection is driven here, not spawned: it ends with the probe.
    tokio::pin!(conn);
    let exchange = check(client, addr, service, user_agent);
    tokio::pin!(exchange);
    let answer = tokio::select! {
        biased;
        answer = &mut exchange => answer,
        _ = &mut conn => exchange.await,
    };
    let status = answer.map_err(fail)?;
    if status == SERVING {
        Ok(())
    } else {
        Err(fail(format!(
            "service unhealthy (responded with {})",
            status_name(status)
        )))
    }
}

/// Sends the request and reads the serving status out of the answer.
async fn check(
    client: h2::client::SendRequest<Bytes>,
    addr: SocketAddr,
    service: &str,
    user_agent: &HeaderValue,
) -> Result<u64, String> {
    let mut client = client.ready().await.map_err(|e| e.to_string())?;
    let req = Request::post(format!("http://{addr}{PATH}"))
        .header(http::header::CONTENT_TYPE, "application/grpc")
        .header(http::header::TE, "trailers")
        .header(http::header::USER_AGENT, user_agent)
        .body(())
        .map_err(|e| e.to_string())?;
    let (answer, mut body) = client.send_request(req, false).map_err(|e| e.to_string())?;
    body.send_data(request_frame(service), true)
        .map_err(|e| e.to_string())?;
    let rsp = answer.await.map_err(|e| e.to_string())?;
    if rsp.status() != http::StatusCode::OK {
        return Err(format!("HTTP status {}", rsp.status()));
    }
    // Trailers-only: the status is in the head.
    grpc_status(rsp.headers())?;
    let mut recv = rsp.into_body();
    let mut data = BytesMut::new();
    while let Some(chunk) = recv.data().await {
        let chunk = chunk.map_err(|e| e.to_string())?;
        let _ = recv.flow_control().release_capacity(chunk.len());
        if data.len() + chunk.len() > MAX_RESPONSE_BYTES {
            return Err(format!("answer larger than {MAX_RESPONSE_BYTES} bytes"));
        }
        data.extend_from_slice(&chunk);
    }
    if let Some(trailers) = recv.trailers().await.map_err(|e| e.to_string())? {
        grpc_status(&trailers)?;
    }
    response_status(data.freeze())
}

/// An error for a `grpc-status` other than 0 (OK).
fn grpc_status(headers: &http::HeaderMap) -> Result<(), String> {
    match headers.get("grpc-status") {
        None => Ok(()),
        Some(v) if v == "0" => Ok(()),
        Some(v) => {
            let message = headers
                .get("grpc-message")
                .and_then(|m| m.to_str().ok())
                .unwrap_or("");
            Err(format!(
                "grpc-status {} {message}",
                String::from_utf8_lossy(v.as_bytes())
            )
            .trim_end()
            .to_string())
        }
    }
}

/// The length-prefixed `HealthCheckRequest`.
fn request_frame(service: &str) -> Bytes {
    let mut msg = BytesMut::new();
    if !service.is_empty() {
        msg.put_u8(0x0a); // field 1, length-delimited
        put_varint(&mut msg, service.len() as u64);
        msg.put_slice(service.as_bytes());
    }
    let mut frame = BytesMut::with_capacity(5 + msg.len());
    frame.put_u8(0); // not compressed
    frame.put_u32(msg.len() as u32);
    frame.put(msg);
    frame.freeze()
}

/// The serving status in a length-prefixed `HealthCheckResponse` (proto3: absent means 0).
fn response_status(mut data: Bytes) -> Result<u64, String> {
    if data.len() < 5 {
        return Err("no health answer in the response".into());
    }
    if data.get_u8() != 0 {
        return Err("compressed answer (no compression was offered)".into());
    }
    let len = data.get_u32() as usize;
    if len > data.len() {
        return Err("truncated answer".into());
    }
    let mut msg = data.split_to(len);
    let mut status = 0;
    while msg.has_remaining() {
        let key = varint(&mut msg)?;
        match (key >> 3, key & 7) {
            (1, 0) => status = varint(&mut msg)?,
            (_, 0) => {
                varint(&mut msg)?;
            }
            (_, 1) => skip(&mut msg, 8)?,
            (_, 2) => {
                let n = varint(&mut msg)?;
                skip(&mut msg, usize::try_from(n).map_err(|_| "bad length")?)?
            }
            (_, 5) => skip(&mut msg, 4)?,
            (_, wire) => return Err(format!("malformed answer (wire type {wire})")),
        }
    }
    Ok(status)
}

fn put_varint(buf: &mut BytesMut, mut v: u64) {
    while v >= 0x80 {
        buf.put_u8((v as u8) | 0x80);
        v >>= 7;
    }
    buf.put_u8(v as u8);
}

fn varint(buf: &mut Bytes) -> Result<u64, String> {
    let mut v = 0u64;
    for shift in (0..64).step_by(7) {
        if !buf.has_remaining() {
            return Err("truncated answer".into());
        }
        let b = buf.get_u8();
        v |= u64::from(b & 0x7f) << shift;
        if b & 0x80 == 0 {
            return Ok(v);
        }
    }
    Err("malformed answer (varint too long)".into())
}

fn skip(buf: &mut Bytes, n: usize) -> Result<(), String> {
    if buf.remaining() < n {
        return Err("truncated answer".into());
    }
    buf.advance(n);
    Ok(())
}

fn status_name(status: u64) -> String {
    match status {
        0 => "UNKNOWN".into(),
        1 => "SERVING".into(),
        2 => "NOT_SERVING".into(),
        3 => "SERVICE_UNKNOWN".into(),
        n => format!("status {n}"),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A length-prefixed message with `body` as its bytes.
    fn framed(body: &[u8]) -> Bytes {
        let mut f = BytesMut::new();
        f.put_u8(0);
        f.put_u32(body.len() as u32);
        f.put_slice(body);
        f.freeze()
    }

    #[test]
    fn the_request_carries_the_service_name_as_field_one() {
        assert_eq!(&request_frame("")[..], [0, 0, 0, 0, 0]);
        assert_eq!(
            &request_frame("shop.Cart")[..],
            [&[0u8, 0, 0, 0, 11, 0x0a, 9][..], b"shop.Cart"].concat()
        );
        let long = "s".repeat(300);
        let frame = request_frame(&long);
        // 300 = 0b10_0101100: two varint bytes.
        assert_eq!(&frame[5..8], [0x0a, 0xac, 0x02]);
        assert_eq!(frame.len(), 5 + 3 + 300);
    }

    #[test]
    fn reads_the_status_and_skips_fields_it_does_not_know() {
        assert_eq!(response_status(framed(&[0x08, 0x01])), Ok(1));
        assert_eq!(response_status(framed(&[])), Ok(0), "absent means UNKNOWN");
        // Unknown fields of every wire type around it.
        let msg = [
            0x10, 0x05, // field 2 varint
            0x19, 1, 2, 3, 4, 5, 6, 7, 8, // field 3 fixed64
            0x22, 0x02, b'h', b'i', // field 4 bytes
            0x2d, 1, 2, 3, 4, // field 5 fixed32
            0x08, 0x02, // status NOT_SERVING
        ];
        assert_eq!(response_status(framed(&msg)), Ok(2));
    }

    #[test]
    fn malformed_answers_are_errors_not_panics() {
        for bad in [
            &b""[..],
            &[0, 0, 0][..],
            &[1, 0, 0, 0, 0][..],                   // compressed
            &[0, 0, 0, 0, 9, 0x08][..],             // length past the data
            &[0, 0, 0, 0, 1, 0x08][..],             // value missing
            &[0, 0, 0, 0, 2, 0x08, 0x80][..],       // varint cut short
            &[0, 0, 0, 0, 2, 0x0b, 0x00][..],       // wire type 3
            &[0, 0, 0, 0, 3, 0x12, 0xff, 0x7f][..], // length past the message
            &[
                0, 0, 0, 0, 11, 0x08, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff,
            ][..],
        ] {
            assert!(
                response_status(Bytes::copy_from_slice(bad)).is_err(),
                "{bad:?}"
            );
        }
    }
}
