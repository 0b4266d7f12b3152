//! The request-smuggling framer `sinew_proxy::http::guard::Framer`, fed one client byte stream
//! split at fuzzer-chosen points (see `common.rs`: the first input byte picks the split).
//!
//! The stream is fed three ways: in one piece, one byte at a time, and in the chosen pieces.
//! Contract checked for each way:
//! - never panics;
//! - without a violation the output is a prefix of the stream; after a violation it is a prefix
//!   of the stream followed by the poison line `\x01 / HTTP/1.1\r\n\r\n` exactly once, and
//!   nothing more is passed on however much is fed afterwards;
//! - `is_poisoned()` agrees with the violation.
//!
//! Across the three ways:
//! - the verdict (violation or not) is the same;
//! - without a violation the outputs are identical (only an incomplete head at the end is held).

use super::split::{MAX_HEAD, POISON};
use bytes::BytesMut;
use sinew_proxy::http::guard::{Framer, Violation};

struct Run {
    out: Vec<u8>,
    violation: Option<Violation>,
}

fn run(payload: &[u8], pieces: &[&[u8]], how: &str) -> Run {
    let mut f = Framer::new(MAX_HEAD);
    let mut out = BytesMut::new();
    let mut violation = None;
    for piece in pieces {
        if let Err(v) = f.feed(piece, &mut out) {
            assert!(
                violation.is_none(),
                "{how}: second violation {v:?} after {violation:?}"
            );
            violation = Some(v);
        }
    }
    assert_eq!(f.is_poisoned(), violation.is_some(), "{how}: is_poisoned");
    let out = out.to_vec();
    match &violation {
        None => assert!(
            payload.starts_with(&out),
            "{how}: output is not a prefix of the input"
        ),
        Some(v) => {
            assert!(
                out.ends_with(POISON),
                "{how}: {v:?} but output does not end in the poison line"
            );
            let passed = &out[..out.len() - POISON.len()];
            assert!(
                payload.starts_with(passed),
                "{how}: {v:?}; output before the poison line is not a prefix of the input"
            );
        }
    }
    Run { out, violation }
}

/// Checks one input; returns its outcome.
pub fn check(data: &[u8]) -> String {
    let split = super::split::split(data);
    let payload = split.payload;
    let whole = run(payload, &[payload], "whole");
    let bytewise = run(payload, &super::split::pieces(payload, &[1]), "bytewise");
    let chosen = run(
        payload,
        &super::split::pieces(payload, &split.sizes),
        "chosen",
    );
    if super::split::debug() {
        eprintln!(
            "sizes {:?}: whole {:?}, bytewise {:?}, chosen {:?}",
            split.sizes, whole.violation, bytewise.violation, chosen.violation
        );
    }
    for (how, r) in [("bytewise", &bytewise), ("chosen", &chosen)] {
        assert_eq!(
            whole.violation.is_some(),
            r.violation.is_some(),
            "verdict differs: whole {:?}, {how} (sizes {:?}) {:?}",
            whole.violation,
            split.sizes,
            r.violation
        );
        if whole.violation.is_none() {
            assert!(
                whole.out == r.out,
                "no violation but outputs differ: whole {} bytes, {how} {} bytes",
                whole.out.len(),
                r.out.len()
            );
        }
    }
    format!("{:?}", whole.violation)
}
