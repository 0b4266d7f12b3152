//! Consistent hashing: a request key to an endpoint, so the same key keeps reaching the same
//! endpoint and adding or removing one moves only the keys it takes or gave.
//!
//! Both tables are built once per endpoint set (a destination version) from the endpoints'
//! addresses alone, so two proxies with the same endpoints agree on every key. Lookups never
//! allocate.

use std::net::SocketAddr;

/// 64-bit FNV-1a: stable across processes and Rust versions (std's hasher promises neither).
pub fn fnv1a(bytes: &[u8]) -> u64 {
    let mut h: u64 = 0xcbf2_9ce4_8422_2325;
    for b in bytes {
        h ^= u64::from(*b);
        h = h.wrapping_mul(0x0000_0100_0000_01b3);
    }
    mix(h)
}

/// splitmix64's finaliser: FNV's low bits are weak, and both tables use `hash % size`.
pub fn mix(mut z: u64) -> u64 {
    z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
    z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
    z ^ (z >> 31)
}

fn addr_hash(addr: &SocketAddr, salt: u64) -> u64 {
    let mut buf = [0u8; 64];
    let n = {
        use std::io::Write;
        let mut w = &mut buf[..];
        // An address prints in at most 47 bytes ("[v6]:port"); the buffer always fits it.
        let _ = write!(w, "{addr}");
        64 - w.len()
    };
    mix(fnv1a(&buf[..n]) ^ salt.wrapping_mul(0x9e37_79b9_7f4a_7c15))
}

/// Envoy's ring hash (Karger's consistent hashing): each endpoint owns at least
/// `ceil(min_size / n)` points on a 64-bit ring; a key goes to the first point at or after its
/// hash. The count is rounded up to a power of two so that adding or removing an endpoint
/// usually leaves the others' points where they were (Envoy rescales them, moving more keys).
#[derive(Debug)]
pub struct Ring {
    points: Vec<(u64, u32)>,
}

// === impl Ring ===

impl Ring {
    pub fn new(addrs: &[SocketAddr], min_size: usize) -> Self {
        if addrs.is_empty() {
            return Self { points: Vec::new() };
        }
        let per = min_size.div_ceil(addrs.len()).max(1).next_power_of_two();
        let mut points = Vec::with_capacity(per * addrs.len());
        for (i, a) in addrs.iter().enumerate() {
            for r in 0..per {
                points.push((addr_hash(a, r as u64), i as u32));
            }
        }
        points.sort_unstable();
        Self { points }
    }

    pub fn len(&self) -> usize {
        self.points.len()
    }

    pub fn is_empty(&self) -> bool {
        self.points.is_empty()
    }

    /// Endpoint indices in ring order from `hash`'s position (each point once, wrapping).
    pub fn walk(&self, hash: u64) -> impl Iterator<Item = usize> + '_ {
        let start = self.points.partition_point(|p| p.0 < hash);
        let (tail, head) = self.points.split_at(start.min(self.points.len()));
        head.iter().chain(tail).map(|p| p.1 as usize)
    }
}

/// Google's Maglev table: every endpoint fills slots in its own permutation order, in turns, so
/// the table is near-evenly split and a change of endpoints moves few slots.
#[derive(Debug)]
pub struct Maglev {
    table: Vec<u32>,
}

// === impl Maglev ===

impl Maglev {
    /// `size` must be prime (validated with the config).
    pub fn new(addrs: &[SocketAddr], size: usize) -> Self {
        if addrs.is_empty() || size == 0 {
            return Self { table: Vec::new() };
        }
        let m = size as u64;
        let perms: Vec<(u64, u64)> = addrs
            .iter()
            .map(|a| {
                let offset = addr_hash(a, 0xa11ce) % m;
                let skip = addr_hash(a, 0xb0b) % (m - 1).max(1) + 1;
                (offset, skip)
            })
            .collect();
        let mut next = vec![0u64; addrs.len()];
        let mut table = vec![u32::MAX; size];
        let mut filled = 0;
        'fill: loop {
            for (i, (offset, skip)) in perms.iter().enumerate() {
                let mut slot = (offset + next[i] * skip) % m;
                while table[slot as usize] != u32::MAX {
                    next[i] += 1;
                    slot = (offset + next[i] * skip) % m;
                }
                table[slot as usize] = i as u32;
                next[i] += 1;
                filled += 1;
                if filled == size {
                    break 'fill;
                }
            }
        }
        Self { table }
    }

    pub fn len(&self) -> usize {
        self.table.len()
    }

    pub fn is_empty(&self) -> bool {
        self.table.is_empty()
    }

    /// Endpoint indices from `hash`'s slot onwards (wrapping): the first is the key's endpoint,
    /// the rest a fallback order when it cannot be used.
    pub fn walk(&self, hash: u64) -> impl Iterator<Item = usize> + '_ {
        let start = if self.table.is_empty() {
            0
        } else {
            (hash % self.table.len() as u64) as usize
        };
        let (tail, head) = self.table.split_at(start);
        head.iter().chain(tail).map(|i| *i as usize)
    }
}

/// True when `n` is prime (Maglev's table size must be).
pub fn is_prime(n: u64) -> bool {
    if n < 2 {
        return false;
    }
    let mut d = 2;
    while d * d <= n {
        if n.is_multiple_of(d) {
            return false;
        }
        d += 1;
    }
    true
}
