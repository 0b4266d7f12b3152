//! `sinew_proxy::tls::client_hello::parse` on arbitrary first bytes of an inbound connection.
//!
//! Contract checked:
//! - never panics;
//! - every ALPN slice of a `ClientHello` is a sub-slice of the input, and lies inside the first
//!   TLS record (`data[5..5 + len]`): the parser never reads past that record;
//! - the answer does not depend on bytes after the first record;
//! - `Incomplete` only while the first record is still incomplete.

use sinew_proxy::tls::client_hello::{Hello, parse};

fn within(outer: &[u8], inner: &[u8]) -> bool {
    let o = outer.as_ptr_range();
    let i = inner.as_ptr_range();
    o.start as usize <= i.start as usize && i.end as usize <= o.end as usize
}

/// Checks one input; returns its outcome.
pub fn check(data: &[u8]) -> String {
    let hello = parse(data);
    // Length of the first record when its 5-byte header is there.
    let record_end = (data.len() >= 5).then(|| 5 + u16::from_be_bytes([data[3], data[4]]) as usize);
    match &hello {
        Hello::ClientHello { alpn } => {
            let end = record_end.expect("ClientHello without a record header");
            assert!(
                end <= data.len(),
                "ClientHello before the record is complete"
            );
            let record = &data[5..end];
            for p in alpn {
                assert!(within(data, p), "ALPN slice outside the input");
                assert!(within(record, p), "ALPN slice outside the first record");
            }
            // Bytes after the first record do not change the answer.
            assert_eq!(parse(&data[..end]), hello);
        }
        Hello::Incomplete => {
            if let Some(end) = record_end {
                assert!(
                    data.len() < end,
                    "Incomplete with the whole first record present"
                );
            }
        }
        Hello::NotTls => {}
    }
    match hello {
        Hello::ClientHello { alpn } => format!("hello with {} alpn", alpn.len().min(3)),
        other => format!("{other:?}"),
    }
}
