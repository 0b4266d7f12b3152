//! Where a target's inputs live (`fuzz/` of the repository) and how they are read: kept inputs
//! one file each, dictionaries in libFuzzer's format (`name="value"` with `\xNN`, `\\`, `\"`).

use std::path::{Path, PathBuf};

/// The kinds of kept inputs, in the order they are replayed.
pub const KINDS: [&str; 3] = ["seeds", "regressions", "corpus"];

/// `fuzz/` of this repository.
pub fn root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .parent()
        .expect("invariant: the crate lives in fuzz/targets")
        .to_path_buf()
}

/// Every kept input of `target`: (path, bytes), sorted by path within each kind.
pub fn inputs(target: &str) -> std::io::Result<Vec<(PathBuf, Vec<u8>)>> {
    let mut out = Vec::new();
    for kind in KINDS {
        let dir = root().join(kind).join(target);
        let Ok(entries) = std::fs::read_dir(&dir) else {
            continue; // no inputs of this kind yet
        };
        let mut paths: Vec<PathBuf> = entries
            .map(|e| e.map(|e| e.path()))
            .collect::<Result<_, _>>()?;
        paths.retain(|p| p.is_file());
        paths.sort();
        for p in paths {
            let bytes = std::fs::read(&p)?;
            out.push((p, bytes));
        }
    }
    Ok(out)
}

/// The tokens of the dictionaries `names` (files of `fuzz/dicts/`), plus tokens every target
/// gets (numbers at type edges, separators, NUL, invalid UTF-8).
pub fn dictionary(names: &[&str]) -> std::io::Result<Vec<Vec<u8>>> {
    let mut tokens: Vec<Vec<u8>> = COMMON.iter().map(|t| t.to_vec()).collect();
    for name in names {
        let text = std::fs::read_to_string(root().join("dicts").join(name))?;
        tokens.extend(text.lines().filter_map(dict_line));
    }
    Ok(tokens)
}

const COMMON: &[&[u8]] = &[
    b"\0",
    b"\xff\xfe",
    b"\xc3\x28",
    b"0",
    b"-1",
    b"65535",
    b"65536",
    b"4294967296",
    b"18446744073709551616",
    b"-9223372036854775809",
    b"1e999",
    b"NaN",
    b"\r\n",
    b"\n",
    b" ",
    b"\"",
    b":",
    b",",
    b"{",
    b"}",
    b"[",
    b"]",
];

/// One dictionary line's token; `None` for comments, blank or malformed lines.
fn dict_line(line: &str) -> Option<Vec<u8>> {
    let line = line.trim();
    if line.is_empty() || line.starts_with('#') {
        return None;
    }
    let start = line.find('"')?;
    let body = line[start + 1..].strip_suffix('"')?;
    let mut out = Vec::new();
    let mut bytes = body.bytes();
    while let Some(b) = bytes.next() {
        if b != b'\\' {
            out.push(b);
            continue;
        }
        match bytes.next()? {
            b'x' => {
                let hi = (bytes.next()? as char).to_digit(16)?;
                let lo = (bytes.next()? as char).to_digit(16)?;
                out.push((hi * 16 + lo) as u8);
            }
            other => out.push(other),
        }
    }
    Some(out)
}

/// A file name for an input: its FNV-1a hash, so the same input is kept once.
pub fn name_of(input: &[u8]) -> String {
    let mut h: u64 = 0xcbf2_9ce4_8422_2325;
    for b in input {
        h ^= u64::from(*b);
        h = h.wrapping_mul(0x0100_0000_01b3);
    }
    format!("{h:016x}")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn dictionary_lines_decode_escapes_and_skip_comments() {
        assert_eq!(dict_line(r#"kw="a\x00\"\\b""#), Some(b"a\0\"\\b".to_vec()));
        assert_eq!(dict_line(r#""plain""#), Some(b"plain".to_vec()));
        assert_eq!(dict_line("# comment"), None);
        assert_eq!(dict_line(r#"bad="\x0""#), None);
    }
}
