//! Shared by the HTTP/1 targets (and the cargo-fuzz crate's copies of them): how an input chooses where the byte stream is split.
//!
//! The first byte picks the split:
//! - bit 7 clear: a fixed step of `(b & 0x7f) + 1` bytes;
//! - bit 7 set: a cycle of `(b & 0x07) + 1` piece sizes, taken from the next bytes (each `+ 1`).
//!
//! Everything after that is the payload (the bytes a client sends).

pub struct Split<'a> {
    pub sizes: Vec<usize>,
    pub payload: &'a [u8],
}

pub fn split(data: &[u8]) -> Split<'_> {
    let Some((&b0, rest)) = data.split_first() else {
        return Split {
            sizes: vec![1],
            payload: &[],
        };
    };
    if b0 & 0x80 == 0 {
        return Split {
            sizes: vec![(b0 & 0x7f) as usize + 1],
            payload: rest,
        };
    }
    let k = ((b0 & 0x07) as usize + 1).min(rest.len());
    let mut sizes: Vec<usize> = rest[..k].iter().map(|b| *b as usize + 1).collect();
    if sizes.is_empty() {
        sizes.push(1);
    }
    Split {
        sizes,
        payload: &rest[k..],
    }
}

/// `payload` cut into consecutive pieces whose lengths cycle through `sizes`.
pub fn pieces<'a>(payload: &'a [u8], sizes: &[usize]) -> Vec<&'a [u8]> {
    let mut out = Vec::new();
    let mut rest = payload;
    let mut i = 0;
    while !rest.is_empty() {
        let n = sizes[i % sizes.len()].max(1).min(rest.len());
        out.push(&rest[..n]);
        rest = &rest[n..];
        i += 1;
    }
    out
}

/// What the guard hands hyper in place of a rejected request head (private in the guard).
pub const POISON: &[u8] = b"\x01 / HTTP/1.1\r\n\r\n";

/// Max head size used by every target (the proxy's default `max_header_bytes` is in this range).
pub const MAX_HEAD: usize = 64 * 1024;

/// True when `SINEW_FUZZ_DEBUG` is set: targets print what they saw (for reproducing by hand).
pub fn debug() -> bool {
    std::env::var_os("SINEW_FUZZ_DEBUG").is_some()
}

/// True when `SINEW_FUZZ_NO_GUARD` is set: `request_head` serves without the guard (to compare).
pub fn no_guard() -> bool {
    std::env::var_os("SINEW_FUZZ_NO_GUARD").is_some()
}
