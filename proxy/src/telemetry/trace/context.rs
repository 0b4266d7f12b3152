//! Trace context propagation: what the incoming request says about its trace, and the headers
//! this hop writes for the next one.
//!
//! Read: W3C `traceparent` (+ `tracestate`), B3 single (`b3`) and B3 multi (`x-b3-*`). When a
//! request carries several, the first valid one in that order wins: W3C is the standard and what
//! OpenTelemetry SDKs send; `b3` is the newer B3 form. A malformed header is ignored as if it
//! were absent (the next format is tried, else a new trace starts); nothing here fails or panics.
//!
//! Written: `traceparent` always (with `tracestate` passed through unchanged when the incoming
//! W3C context was used, removed otherwise: it belongs to the trace it came with); `b3` and/or
//! the `x-b3-*` set only when the request came with that form, so a B3-only app or proxy behind
//! us keeps its trace. `x-request-id` is kept when sane and generated otherwise.

use http::header::{HeaderMap, HeaderName, HeaderValue};

pub(crate) static TRACEPARENT: HeaderName = HeaderName::from_static("traceparent");
pub(crate) static TRACESTATE: HeaderName = HeaderName::from_static("tracestate");
pub(crate) static B3: HeaderName = HeaderName::from_static("b3");
pub(crate) static B3_TRACE_ID: HeaderName = HeaderName::from_static("x-b3-traceid");
pub(crate) static B3_SPAN_ID: HeaderName = HeaderName::from_static("x-b3-spanid");
pub(crate) static B3_PARENT_SPAN_ID: HeaderName = HeaderName::from_static("x-b3-parentspanid");
pub(crate) static B3_SAMPLED: HeaderName = HeaderName::from_static("x-b3-sampled");
pub(crate) static B3_FLAGS: HeaderName = HeaderName::from_static("x-b3-flags");
pub(crate) static REQUEST_ID: HeaderName = HeaderName::from_static("x-request-id");

/// The longest `x-request-id` kept as it came; Envoy's UUIDs are 36 bytes, and room is left for
/// the other generators' formats (ULIDs, prefixed ids).
pub const MAX_REQUEST_ID_LEN: usize = 128;

/// A sampling decision an upstream hop already made.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Decision {
    Sampled,
    NotSampled,
    /// B3 `d` / `x-b3-flags: 1`: sample, and say so downstream as debug.
    Debug,
}

impl Decision {
    pub fn is_sampled(self) -> bool {
        !matches!(self, Self::NotSampled)
    }
}

/// Which B3 forms the request came with (written back in the same forms).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct B3Forms {
    pub single: bool,
    pub multi: bool,
}

/// What the incoming headers say: the trace to join (if any valid one) and the decision made.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Incoming {
    /// The trace id and the caller's span id (our span's parent), when a valid context came.
    pub parent: Option<Parent>,
    /// A decision made upstream; `None`: ours to make.
    pub decision: Option<Decision>,
    /// The W3C context was the one used (so `tracestate` is passed through).
    pub w3c: bool,
    pub b3: B3Forms,
    /// The request came with a `tracestate` header (valid or not).
    pub tracestate: bool,
    /// The request came with an `x-request-id` header (sane or not).
    pub request_id: bool,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Parent {
    pub trace_id: u128,
    pub span_id: u64,
    /// The trace id came as 64 bits (B3): written back to B3 in 16 digits.
    pub short_trace_id: bool,
}

/// This hop's context, as written to the next hop.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Outgoing {
    pub trace_id: u128,
    pub span_id: u64,
    /// Our span's parent: the caller's span id, if a context came.
    pub parent_span_id: Option<u64>,
    pub decision: Decision,
    pub short_trace_id: bool,
}

/// Reads the incoming trace context; see the module doc for precedence.
pub fn read(headers: &HeaderMap) -> Incoming {
    let present = scan(headers);
    let base = Incoming {
        b3: present.b3,
        tracestate: present.tracestate,
        request_id: present.request_id,
        ..Incoming::default()
    };
    if present.traceparent
        && let Some((parent, sampled)) = single(headers, &TRACEPARENT).and_then(parse_traceparent)
    {
        return Incoming {
            parent: Some(parent),
            decision: Some(if sampled {
                Decision::Sampled
            } else {
                Decision::NotSampled
            }),
            w3c: true,
            ..base
        };
    }
    let from_b3 = if present.b3.single {
        single(headers, &B3).and_then(parse_b3_single)
    } else {
        None
    };
    let from_b3 = from_b3.or_else(|| {
        if present.b3.multi {
            parse_b3_multi(headers)
        } else {
            None
        }
    });
    match from_b3 {
        Some((parent, decision)) => Incoming {
            parent,
            decision,
            ..base
        },
        None => base,
    }
}

/// Which propagation headers a request carries.
#[derive(Clone, Copy, Default)]
struct Present {
    traceparent: bool,
    tracestate: bool,
    b3: B3Forms,
    request_id: bool,
}

/// One pass over the request's header names: cheaper than a hashed lookup per propagation
/// header (nine of them), since most requests carry none or only `traceparent` and
/// `x-request-id`.
fn scan(headers: &HeaderMap) -> Present {
    let mut p = Present::default();
    for name in headers.keys() {
        match name.as_str() {
            "traceparent" => p.traceparent = true,
            "tracestate" => p.tracestate = true,
            "b3" => p.b3.single = true,
            "x-b3-traceid" | "x-b3-spanid" | "x-b3-sampled" | "x-b3-flags" => p.b3.multi = true,
            "x-request-id" => p.request_id = true,
            _ => {}
        }
    }
    p
}

/// The value of a header that must appear once; several (or none) is `None`.
fn single<'a>(headers: &'a HeaderMap, name: &HeaderName) -> Option<&'a [u8]> {
    let mut values = headers.get_all(name).iter();
    let first = values.next()?;
    if values.next().is_some() {
        return None;
    }
    Some(first.as_bytes())
}

/// `version-traceid-parentid-flags`, W3C Trace Context level 1: version `00` is exactly 55
/// bytes; a later version (not `ff`) is parsed for these four fields as long as what follows
/// them starts with `-`, as the spec asks. Lowercase hex only; all-zero ids are invalid.
fn parse_traceparent(v: &[u8]) -> Option<(Parent, bool)> {
    if v.len() < 55 {
        return None;
    }
    let version = hex_lower(&v[0..2])? as u8;
    match version {
        0xff => return None,
        0 if v.len() != 55 => return None,
        0 => {}
        _ if v.len() > 55 && v[55] != b'-' => return None,
        _ => {}
    }
    if v[2] != b'-' || v[35] != b'-' || v[52] != b'-' {
        return None;
    }
    let trace_id = hex_lower(&v[3..35])?;
    let span_id = hex_lower(&v[36..52])? as u64;
    let flags = hex_lower(&v[53..55])? as u8;
    if trace_id == 0 || span_id == 0 {
        return None;
    }
    let parent = Parent {
        trace_id,
        span_id,
        short_trace_id: false,
    };
    Some((parent, flags & 1 == 1))
}

/// `b3: {traceid}-{spanid}[-{sampled}[-{parentspanid}]]`, or a lone decision `0`, `1`, `d`.
fn parse_b3_single(v: &[u8]) -> Option<(Option<Parent>, Option<Decision>)> {
    if v.len() == 1 {
        return b3_decision(v).map(|d| (None, Some(d)));
    }
    let mut parts = v.split(|b| *b == b'-');
    let (trace_id, short) = b3_trace_id(parts.next()?)?;
    let span_id = b3_span_id(parts.next()?)?;
    let decision = match parts.next() {
        None => None,
        Some(d) => Some(b3_decision(d)?),
    };
    if let Some(p) = parts.next() {
        // The caller's own parent: checked for shape, not used.
        b3_span_id(p)?;
    }
    if parts.next().is_some() {
        return None;
    }
    let parent = Parent {
        trace_id,
        span_id,
        short_trace_id: short,
    };
    Some((Some(parent), decision))
}

/// The `x-b3-*` set: both ids or neither (a decision alone is valid B3); each header once.
fn parse_b3_multi(headers: &HeaderMap) -> Option<(Option<Parent>, Option<Decision>)> {
    let flags = match headers.get_all(&B3_FLAGS).iter().count() {
        0 => None,
        1 => single(headers, &B3_FLAGS),
        _ => return None,
    };
    let decision = if flags == Some(b"1") {
        Some(Decision::Debug)
    } else {
        match headers.get_all(&B3_SAMPLED).iter().count() {
            0 => None,
            1 => match single(headers, &B3_SAMPLED)? {
                // "true"/"false": what early B3 implementations sent.
                b"1" | b"true" => Some(Decision::Sampled),
                b"0" | b"false" => Some(Decision::NotSampled),
                _ => return None,
            },
            _ => return None,
        }
    };
    let has_ids = headers.contains_key(&B3_TRACE_ID) || headers.contains_key(&B3_SPAN_ID);
    if !has_ids {
        return decision.map(|d| (None, Some(d)));
    }
    let (trace_id, short) = b3_trace_id(single(headers, &B3_TRACE_ID)?)?;
    let span_id = b3_span_id(single(headers, &B3_SPAN_ID)?)?;
    if headers.contains_key(&B3_PARENT_SPAN_ID) {
        b3_span_id(single(headers, &B3_PARENT_SPAN_ID)?)?;
    }
    let parent = Parent {
        trace_id,
        span_id,
        short_trace_id: short,
    };
    Some((Some(parent), decision))
}

fn b3_decision(v: &[u8]) -> Option<Decision> {
    match v {
        b"1" => Some(Decision::Sampled),
        b"0" => Some(Decision::NotSampled),
        b"d" => Some(Decision::Debug),
        _ => None,
    }
}

/// 16 or 32 lowercase hex digits, not all zero; `true` when 16.
fn b3_trace_id(v: &[u8]) -> Option<(u128, bool)> {
    if v.len() != 16 && v.len() != 32 {
        return None;
    }
    let id = hex_lower(v)?;
    (id != 0).then_some((id, v.len() == 16))
}

fn b3_span_id(v: &[u8]) -> Option<u64> {
    if v.len() != 16 {
        return None;
    }
    let id = hex_lower(v)? as u64;
    (id != 0).then_some(id)
}

/// Up to 32 lowercase hex digits (the specs say lowercase; `A-F` is refused).
fn hex_lower(v: &[u8]) -> Option<u128> {
    if v.is_empty() || v.len() > 32 {
        return None;
    }
    let mut n: u128 = 0;
    for b in v {
        let d = match b {
            b'0'..=b'9' => b - b'0',
            b'a'..=b'f' => b - b'a' + 10,
            _ => return None,
        };
        n = (n << 4) | u128::from(d);
    }
    Some(n)
}

/// Writes `n`'s low `out.len() / 2` bytes as lowercase hex.
fn put_hex(out: &mut [u8], n: u128) {
    const DIGITS: &[u8; 16] = b"0123456789abcdef";
    debug_assert!(out.len().is_multiple_of(2) && out.len() <= 32);
    let bytes = n.to_be_bytes();
    let low = &bytes[16 - out.len() / 2..];
    for (pair, b) in out.chunks_exact_mut(2).zip(low) {
        pair[0] = DIGITS[usize::from(b >> 4)];
        pair[1] = DIGITS[usize::from(b & 0xf)];
    }
}

/// Propagation values are new per request, so they are sent never-indexed: HPACK then does not
/// insert them into the connection's dynamic table, where a stream of unique values would only
/// evict the headers that do repeat (`x-sinew-peer`, `:authority`, `user-agent`). One value in
/// `INDEX_ONE_IN` is indexed all the same: that keeps its *name* in the table, so the others go
/// out with a name reference of a byte or two instead of a Huffman-coded literal name that the
/// next hop must decode and allocate again.
const INDEX_ONE_IN: u32 = 64;

/// Marks a propagation value never-indexed, but for one in `INDEX_ONE_IN` (see there).
fn mark(v: &mut HeaderValue) {
    v.set_sensitive(fastrand::u32(..INDEX_ONE_IN) != 0);
}

/// A propagation header value, marked for HPACK (see [`mark`]).
fn value(bytes: &[u8]) -> HeaderValue {
    let mut v = HeaderValue::from_bytes(bytes)
        .expect("invariant: hex digits and dashes are valid header bytes");
    mark(&mut v);
    v
}

/// Rewrites the propagation headers for the next hop: `traceparent` always, the B3 forms the
/// request came with, `tracestate` kept only with the W3C context it belongs to.
pub fn write(headers: &mut HeaderMap, incoming: &Incoming, out: &Outgoing) {
    let flags = if out.decision.is_sampled() { 1 } else { 0 };
    let mut tp = *b"00-00000000000000000000000000000000-0000000000000000-00";
    put_hex(&mut tp[3..35], out.trace_id);
    put_hex(&mut tp[36..52], u128::from(out.span_id));
    put_hex(&mut tp[53..55], flags);
    headers.insert(&TRACEPARENT, value(&tp));
    if !incoming.w3c && incoming.tracestate {
        headers.remove(&TRACESTATE);
    }
    if incoming.b3.single || incoming.b3.multi {
        write_b3(headers, incoming.b3, out);
    }
}

/// The B3 forms the request came with, rewritten for the next hop.
fn write_b3(headers: &mut HeaderMap, forms: B3Forms, out: &Outgoing) {
    let mut trace = [0u8; 32];
    let trace: &[u8] = if out.short_trace_id {
        put_hex(&mut trace[..16], out.trace_id);
        &trace[..16]
    } else {
        put_hex(&mut trace, out.trace_id);
        &trace
    };
    let mut span = [0u8; 16];
    put_hex(&mut span, u128::from(out.span_id));
    let mut parent = [0u8; 16];
    if let Some(p) = out.parent_span_id {
        put_hex(&mut parent, u128::from(p));
    }
    let decision: &[u8] = match out.decision {
        Decision::Sampled => b"1",
        Decision::NotSampled => b"0",
        Decision::Debug => b"d",
    };
    if forms.single {
        // {trace}-{span}-{decision}[-{parent}]: at most 32+1+16+1+1+1+16 bytes.
        let mut b = [0u8; 68];
        let mut n = 0;
        for part in [trace, b"-", &span, b"-", decision] {
            b[n..n + part.len()].copy_from_slice(part);
            n += part.len();
        }
        if out.parent_span_id.is_some() {
            b[n] = b'-';
            b[n + 1..n + 17].copy_from_slice(&parent);
            n += 17;
        }
        headers.insert(&B3, value(&b[..n]));
    }
    if forms.multi {
        headers.insert(&B3_TRACE_ID, value(trace));
        headers.insert(&B3_SPAN_ID, value(&span));
        match out.parent_span_id {
            Some(_) => {
                headers.insert(&B3_PARENT_SPAN_ID, value(&parent));
            }
            None => {
                headers.remove(&B3_PARENT_SPAN_ID);
            }
        }
        if out.decision == Decision::Debug {
            // Debug implies sampled; B3 says not to send both.
            headers.insert(&B3_FLAGS, HeaderValue::from_static("1"));
            headers.remove(&B3_SAMPLED);
        } else {
            headers.insert(&B3_SAMPLED, value(decision));
            headers.remove(&B3_FLAGS);
        }
    }
}

/// Keeps a sane `x-request-id` (one value, 1 to [`MAX_REQUEST_ID_LEN`] visible ASCII bytes) and
/// replaces anything else with a new UUID v4, as Envoy does. Returns the id in force.
pub fn request_id(headers: &mut HeaderMap, incoming: &Incoming) -> HeaderValue {
    ensure_request_id(headers, incoming);
    headers
        .get(&REQUEST_ID)
        .cloned()
        .expect("invariant: just ensured")
}

/// [`request_id`] without the copy, for requests whose span records nothing. A kept id is
/// marked for HPACK like the values written here (see [`mark`]).
pub fn ensure_request_id(headers: &mut HeaderMap, incoming: &Incoming) {
    if incoming.request_id {
        let sane = single(headers, &REQUEST_ID).is_some_and(|v| {
            !v.is_empty()
                && v.len() <= MAX_REQUEST_ID_LEN
                && v.iter().all(|b| (0x21..=0x7e).contains(b))
        });
        if sane {
            if let Some(v) = headers.get_mut(&REQUEST_ID) {
                mark(v);
            }
            return;
        }
    }
    headers.insert(&REQUEST_ID, value(&uuid_v4(fastrand::u128(..))));
}

/// RFC 9562 version 4 text (`xxxxxxxx-xxxx-4xxx-Vxxx-xxxxxxxxxxxx`, V in 8..b) from 128 random bits.
pub fn uuid_v4(random: u128) -> [u8; 36] {
    let bits = (random & !(0xf << 76) & !(0x3 << 62)) | (0x4 << 76) | (0x2 << 62);
    let mut out = [b'-'; 36];
    let mut hex = [0u8; 32];
    put_hex(&mut hex, bits);
    out[0..8].copy_from_slice(&hex[0..8]);
    out[9..13].copy_from_slice(&hex[8..12]);
    out[14..18].copy_from_slice(&hex[12..16]);
    out[19..23].copy_from_slice(&hex[16..20]);
    out[24..36].copy_from_slice(&hex[20..32]);
    out
}

/// A random id that is not zero (zero means "invalid" in both W3C and B3).
pub fn new_span_id() -> u64 {
    fastrand::u64(1..)
}

pub fn new_trace_id() -> u128 {
    fastrand::u128(1..)
}

#[cfg(test)]
mod tests;
