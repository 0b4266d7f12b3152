//! Percentiles and formatting.

use std::time::Duration;

/// Nearest-rank percentile of an ascending slice.
pub fn percentile(sorted: &[u64], p: f64) -> Option<u64> {
    if sorted.is_empty() {
        return None;
    }
    let rank = ((p / 100.0) * sorted.len() as f64).ceil() as usize;
    Some(sorted[rank.clamp(1, sorted.len()) - 1])
}

/// Microseconds as a short human duration.
pub fn us(v: u64) -> String {
    if v >= 10_000_000 {
        format!("{:.1} s", v as f64 / 1e6)
    } else if v >= 1_000_000 {
        format!("{:.2} s", v as f64 / 1e6)
    } else if v >= 1_000 {
        format!("{:.0} ms", v as f64 / 1e3)
    } else {
        format!("{v} µs")
    }
}

pub fn opt_us(v: Option<u64>) -> String {
    v.map_or_else(|| "—".into(), us)
}

pub fn dur(d: Duration) -> String {
    us(d.as_micros() as u64)
}

pub fn mib(kib: u64) -> String {
    format!("{:.1} MiB", kib as f64 / 1024.0)
}

/// 12345 -> "12,345".
pub fn thousands(v: u64) -> String {
    let s = v.to_string();
    let mut out = String::new();
    for (i, c) in s.chars().enumerate() {
        if i > 0 && (s.len() - i).is_multiple_of(3) {
            out.push(',');
        }
        out.push(c);
    }
    out
}

pub fn verdict(ok: bool) -> &'static str {
    if ok { "met" } else { "**missed**" }
}
