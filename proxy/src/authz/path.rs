//! The path a policy matches, and the app then receives: Istio's `DECODE_AND_MERGE_SLASHES`
//! normalisation, so `/a/../admin`, `/%61dmin`, `/admin%2F` or `//admin` cannot slip past a
//! rule written for `/admin`.
//!
//! In Envoy's order: `%2F` and `%5C` are decoded (UNESCAPE_AND_FORWARD), then RFC 3986
//! normalisation (percent-encoded unreserved characters decoded, other escapes upper-cased,
//! `\` read as `/`, `.` and `..` segments removed), then runs of slashes merged. The result has
//! no dot segment and no empty segment, so normalising it again changes nothing. A `%` not
//! followed by two hex digits is refused (400): a server could read it either way.

use std::borrow::Cow;

/// A path with a `%` that is not a percent-encoding.
#[derive(Debug, PartialEq, Eq, thiserror::Error)]
#[error("invalid percent-encoding in the request path")]
pub struct InvalidPath;

/// The normalised form of `path` (no query); borrowed when it is already normal.
pub fn normalize(path: &str) -> Result<Cow<'_, str>, InvalidPath> {
    if is_normal(path.as_bytes()) {
        return Ok(Cow::Borrowed(path));
    }
    let decoded = decode(path.as_bytes())?;
    let mut out = String::with_capacity(decoded.len() + 1);
    // Segments after decoding, `\` read as `/`; empty ones (`//`) dropped, dots resolved.
    let mut segments: Vec<&str> = Vec::new();
    let trailing = decoded.ends_with('/') || ends_with_dot_segment(&decoded);
    for seg in decoded.split('/') {
        match seg {
            "" | "." => {}
            ".." => {
                segments.pop();
            }
            s => segments.push(s),
        }
    }
    for s in &segments {
        out.push('/');
        out.push_str(s);
    }
    if trailing || segments.is_empty() {
        out.push('/');
    }
    Ok(Cow::Owned(out))
}

/// Already normal: starts with `/`, no `%`, no `\`, no empty or dot segment.
fn is_normal(p: &[u8]) -> bool {
    if p.first() != Some(&b'/') {
        return false;
    }
    let mut prev = b'/';
    let mut i = 1;
    while i < p.len() {
        let c = p[i];
        match c {
            b'%' if !is_kept_escape(&p[i..]) => return false,
            b'\\' => return false,
            b'/' if prev == b'/' => return false,
            b'.' if prev == b'/' => {
                // A segment "." or ".."?
                let rest = &p[i..];
                let seg_end = rest.iter().position(|&b| b == b'/').unwrap_or(rest.len());
                if matches!(&rest[..seg_end], b"." | b"..") {
                    return false;
                }
            }
            _ => {}
        }
        prev = c;
        i += 1;
    }
    true
}

/// `%XX` as [`decode`] leaves it: upper-case hex of a byte that is not decoded.
fn is_kept_escape(p: &[u8]) -> bool {
    let upper_hex = |c: &u8| c.is_ascii_digit() || (b'A'..=b'F').contains(c);
    match p {
        [b'%', hi, lo, ..] if upper_hex(hi) && upper_hex(lo) => {
            let byte = (hex(*hi).unwrap_or(0) << 4) | hex(*lo).unwrap_or(0);
            !(byte == b'/' || byte == b'\\' || is_unreserved(byte))
        }
        _ => false,
    }
}

fn is_unreserved(b: u8) -> bool {
    b.is_ascii_alphanumeric() || matches!(b, b'-' | b'.' | b'_' | b'~')
}

fn ends_with_dot_segment(p: &str) -> bool {
    p == "." || p == ".." || p.ends_with("/.") || p.ends_with("/..")
}

/// Percent-decoding of `%2F`, `%5C` and unreserved characters; `\` becomes `/`; other escapes
/// are kept, upper-cased.
fn decode(p: &[u8]) -> Result<String, InvalidPath> {
    let mut out = String::with_capacity(p.len());
    let mut i = 0;
    while i < p.len() {
        match p[i] {
            b'%' => {
                let hi = p.get(i + 1).and_then(|c| hex(*c)).ok_or(InvalidPath)?;
                let lo = p.get(i + 2).and_then(|c| hex(*c)).ok_or(InvalidPath)?;
                let byte = hi << 4 | lo;
                match byte {
                    b'/' | b'\\' => out.push('/'),
                    b if is_unreserved(b) => {
                        out.push(char::from(b));
                    }
                    b => {
                        const HEX: &[u8; 16] = b"0123456789ABCDEF";
                        out.push('%');
                        out.push(char::from(HEX[usize::from(b >> 4)]));
                        out.push(char::from(HEX[usize::from(b & 0xf)]));
                    }
                }
                i += 3;
            }
            b'\\' => {
                out.push('/');
                i += 1;
            }
            _ => {
                // Copy the run up to the next byte that needs work (keeps multi-byte UTF-8 whole).
                let run = p[i..]
                    .iter()
                    .position(|&b| b == b'%' || b == b'\\')
                    .map_or(p.len(), |n| i + n);
                out.push_str(&String::from_utf8_lossy(&p[i..run]));
                i = run;
            }
        }
    }
    Ok(out)
}

fn hex(c: u8) -> Option<u8> {
    match c {
        b'0'..=b'9' => Some(c - b'0'),
        b'a'..=b'f' => Some(c - b'a' + 10),
        b'A'..=b'F' => Some(c - b'A' + 10),
        _ => None,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn n(p: &str) -> String {
        normalize(p).unwrap().into_owned()
    }

    #[test]
    fn a_normal_path_is_borrowed_as_is() {
        for p in [
            "/",
            "/orders/1",
            "/a.b/c..d/.e",
            "/orders/1/",
            "/caf\u{e9}",
            "/a%20b%C3%A9",
        ] {
            assert!(matches!(normalize(p), Ok(Cow::Borrowed(_))), "{p}");
        }
    }

    /// The bypasses Envoy and Istio have had advisories for (dot segments, encoded slashes
    /// and dots, backslashes, doubled slashes), each reaching the path a rule for `/admin`
    /// is written against.
    #[test]
    fn known_bypasses_all_normalise_to_the_guarded_path() {
        for p in [
            "/admin",
            "/orders/../admin",
            "/./admin",
            "//admin",
            "/a/b/../../admin",
            "/%61dmin",
            "/%2e%2e/admin",
            "/%2E%2E/admin",
            "/orders%2F..%2Fadmin",
            "/orders%2f..%2fadmin",
            "/orders\\..\\admin",
            "/orders%5C..%5Cadmin",
            "/orders/.%2e/admin",
            "///admin",
            "/../admin",
            "/../../../admin",
        ] {
            assert_eq!(n(p), "/admin", "{p}");
        }
        assert_eq!(n("/admin//"), "/admin/");
        assert_eq!(n("/admin/./"), "/admin/");
        assert_eq!(
            n("/admin/."),
            "/admin/",
            "RFC 3986: a final dot segment leaves its slash"
        );
        assert_eq!(n("/admin/x/.."), "/admin/");
    }

    #[test]
    fn other_escapes_are_kept_and_upper_cased() {
        assert_eq!(n("/a%20b"), "/a%20b");
        assert_eq!(n("/a%3fb"), "/a%3Fb");
        assert_eq!(n("/a%252F"), "/a%252F", "decoded once, never twice");
        assert_eq!(n("/caf%C3%A9"), "/caf%C3%A9");
    }

    #[test]
    fn a_stray_percent_is_refused() {
        for p in ["/a%", "/a%2", "/a%zz", "/a%2g/b"] {
            assert_eq!(normalize(p), Err(InvalidPath), "{p}");
        }
    }

    #[test]
    fn a_path_not_starting_with_a_slash_is_made_absolute() {
        assert_eq!(n(""), "/");
        assert_eq!(n("."), "/");
        assert_eq!(n("a/b"), "/a/b");
        assert_eq!(n(".."), "/");
    }

    /// What the app receives is what the policy saw: normalising twice changes nothing.
    #[test]
    fn normalising_a_normalised_path_changes_nothing() {
        const ALPHABET: &[u8] = b"/./\\%2e%2F%5ca%41z~-_";
        let mut rng = fastrand::Rng::with_seed(0x5eed_0013);
        for _ in 0..20_000 {
            let len = rng.usize(0..24);
            let p: String = (0..len)
                .map(|_| char::from(ALPHABET[rng.usize(..ALPHABET.len())]))
                .collect();
            let Ok(once) = normalize(&p) else { continue };
            let twice = normalize(&once).unwrap();
            assert_eq!(once, twice, "input {p:?}");
            assert!(
                matches!(twice, Cow::Borrowed(_)),
                "input {p:?} gave {once:?}"
            );
            assert!(!once.contains("//") && !once.contains("/./") && !once.contains("/../"));
        }
    }
}
