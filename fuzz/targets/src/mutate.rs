//! The mutator: a new input from a kept one by a few random edits, each cheap, chosen to reach
//! what parsers get wrong (lengths and numbers at their edges, truncation, repetition that
//! builds deep nesting or long fields, tokens of the input's language, two inputs spliced).

use fastrand::Rng;

/// Bytes worth trying in place of any byte.
const INTERESTING: [u8; 8] = [0x00, 0x01, 0x7f, 0x80, 0xff, b'\n', b'"', b'\\'];

/// A mutation of `base`, at most `max_len` bytes long. `corpus` gives splice partners, `dict`
/// tokens to insert.
pub fn mutate(
    rng: &mut Rng,
    base: &[u8],
    corpus: &[Vec<u8>],
    dict: &[Vec<u8>],
    max_len: usize,
) -> Vec<u8> {
    let mut data = base.to_vec();
    // Mostly one or two edits (small steps from valid inputs go deep); sometimes many.
    let edits = match rng.u8(..8) {
        0..=3 => 1,
        4..=5 => 2,
        6 => 4,
        _ => 1 + rng.usize(..16),
    };
    for _ in 0..edits {
        edit(rng, &mut data, corpus, dict, max_len);
    }
    data.truncate(max_len);
    data
}

fn edit(rng: &mut Rng, data: &mut Vec<u8>, corpus: &[Vec<u8>], dict: &[Vec<u8>], max_len: usize) {
    let at = |rng: &mut Rng, data: &Vec<u8>| rng.usize(..=data.len());
    match rng.u8(..12) {
        // Flip a bit.
        0 if !data.is_empty() => {
            let i = rng.usize(..data.len());
            data[i] ^= 1 << rng.u8(..8);
        }
        // An interesting or random byte in place of one.
        1 if !data.is_empty() => {
            let i = rng.usize(..data.len());
            data[i] = match rng.bool() {
                true => INTERESTING[rng.usize(..INTERESTING.len())],
                false => rng.u8(..),
            };
        }
        // Insert a few random bytes.
        2 => {
            let i = at(rng, data);
            let n = 1 + rng.usize(..8);
            let bytes: Vec<u8> = (0..n).map(|_| rng.u8(..)).collect();
            data.splice(i..i, bytes);
        }
        // Delete a range (often the tail: truncated inputs).
        3 if !data.is_empty() => {
            let i = rng.usize(..data.len());
            let n = 1 + rng.usize(..(data.len() - i).min(64));
            match rng.u8(..4) {
                0 => data.truncate(i),
                _ => {
                    data.drain(i..i + n);
                }
            }
        }
        // Copy a range elsewhere (a field, a document, a header twice).
        4 if !data.is_empty() => {
            let (from, n) = range(rng, data.len());
            let piece = data[from..from + n].to_vec();
            let i = at(rng, data);
            data.splice(i..i, piece);
        }
        // Repeat a short range many times: deep nesting, long fields, oversized inputs.
        5 if !data.is_empty() => {
            let (from, n) = range(rng, data.len().min(8));
            let piece = data[from..from + n].to_vec();
            let times = 1 + rng.usize(..(max_len / n.max(1)).clamp(1, 4096));
            let i = at(rng, data);
            data.splice(i..i, piece.iter().copied().cycle().take(n * times));
        }
        // Insert or overwrite with a dictionary token.
        6 | 7 if !dict.is_empty() => {
            let token = &dict[rng.usize(..dict.len())];
            let i = at(rng, data);
            if rng.bool() || i == data.len() {
                data.splice(i..i, token.iter().copied());
            } else {
                let end = (i + token.len()).min(data.len());
                data.splice(i..end, token.iter().copied());
            }
        }
        // Splice: our head, another input's tail (or the other way round).
        8 if !corpus.is_empty() => {
            let other = &corpus[rng.usize(..corpus.len())];
            let i = at(rng, data);
            let j = rng.usize(..=other.len());
            match rng.bool() {
                true => {
                    data.truncate(i);
                    data.extend_from_slice(&other[j..]);
                }
                false => {
                    let mut v = other[..j].to_vec();
                    v.extend_from_slice(&data[i..]);
                    *data = v;
                }
            }
        }
        // Replace a number (a run of ASCII digits) by one at a type's edge.
        9 => {
            if let Some((i, n)) = digits(rng, data) {
                let edge: &[u8] = match rng.u8(..6) {
                    0 => b"0",
                    1 => b"65536",
                    2 => b"4294967295",
                    3 => b"18446744073709551616",
                    4 => b"-1",
                    _ => b"99999999999999999999999999999",
                };
                data.splice(i..i + n, edge.iter().copied());
            }
        }
        // A big-endian length field at a random place set to an edge value.
        10 if data.len() >= 2 => {
            let i = rng.usize(..data.len() - 1);
            let v: u16 = match rng.u8(..4) {
                0 => 0,
                1 => u16::MAX,
                2 => data.len() as u16,
                _ => rng.u16(..),
            };
            data[i..i + 2].copy_from_slice(&v.to_be_bytes());
        }
        // Swap two bytes.
        _ if data.len() >= 2 => {
            let i = rng.usize(..data.len());
            let j = rng.usize(..data.len());
            data.swap(i, j);
        }
        _ => data.push(rng.u8(..)),
    }
}

/// A random non-empty range within `len` (> 0) bytes, at most 64 long.
fn range(rng: &mut Rng, len: usize) -> (usize, usize) {
    let from = rng.usize(..len);
    let n = 1 + rng.usize(..(len - from).min(64));
    (from, n)
}

/// A random run of ASCII digits in `data`: (start, length).
fn digits(rng: &mut Rng, data: &[u8]) -> Option<(usize, usize)> {
    if data.is_empty() {
        return None;
    }
    let start = rng.usize(..data.len());
    let i = start + data[start..].iter().position(u8::is_ascii_digit)?;
    let n = data[i..].iter().take_while(|b| b.is_ascii_digit()).count();
    Some((i, n))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn mutations_stay_within_max_len_and_change_inputs() {
        let mut rng = Rng::with_seed(7);
        let corpus = vec![b"GET / HTTP/1.1\r\n\r\n".to_vec(), b"key: [1, 2]".to_vec()];
        let dict = vec![b"chunked".to_vec()];
        let mut changed = 0;
        for i in 0..2000 {
            let base = &corpus[i % 2];
            let m = mutate(&mut rng, base, &corpus, &dict, 64);
            assert!(m.len() <= 64, "{} bytes", m.len());
            changed += usize::from(&m != base);
        }
        assert!(
            changed > 1800,
            "only {changed} of 2000 mutations changed the input"
        );
    }
}
