//! `sinew_proxy::detect::classify` on arbitrary first bytes of a client stream.
//!
//! Contract checked:
//! - never panics, on the input and on every prefix of it;
//! - `NeedMore` only below `MAX_DETECT_BYTES`;
//! - once a prefix is classified `Known(p)`, every longer prefix is `Known(p)` too (detection
//!   stops at the first `Known`, so a flip would make the answer depend on read boundaries).

use sinew_proxy::detect::{Classification, MAX_DETECT_BYTES, classify};

/// Checks one input; returns its outcome.
pub fn check(data: &[u8]) -> String {
    let full = classify(data);
    if full == Classification::NeedMore {
        assert!(
            data.len() < MAX_DETECT_BYTES,
            "NeedMore for {} bytes (cap {MAX_DETECT_BYTES})",
            data.len()
        );
    }
    let mut first_known: Option<(usize, Classification)> = None;
    for n in 0..=data.len() {
        let c = classify(&data[..n]);
        if c == Classification::NeedMore {
            assert!(n < MAX_DETECT_BYTES, "NeedMore for a {n}-byte prefix");
        }
        match first_known {
            None if c != Classification::NeedMore => first_known = Some((n, c)),
            Some((at, k)) => assert_eq!(
                c, k,
                "prefix of {at} bytes was {k:?}, prefix of {n} bytes is {c:?}"
            ),
            None => {}
        }
    }
    assert_eq!(
        first_known.map_or(Classification::NeedMore, |(_, k)| k),
        full
    );
    format!("{full:?}")
}
