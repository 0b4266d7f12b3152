//! A manifest file's documents: found with the YAML parser's own events rather than by looking
//! for `---` lines, so a marker inside a block scalar or after a directive cannot confuse the
//! count. Each document is then decoded from its own slice of the file, which keeps the
//! library's line numbers meaningful (shifted by where the slice starts).

use serde::de::DeserializeOwned;
use serde_saphyr::granit_parser::{Event, Marker, Parser};
use serde_saphyr::{MessageFormatter, UserMessageFormatter};

/// A document's slice of the file and the file line it starts on.
pub(super) struct RawDoc<'a> {
    pub text: &'a str,
    pub first_line: usize,
}

/// A syntax error that stopped the split.
pub(super) struct ScanFailure {
    pub line: usize,
    pub column: usize,
    pub message: String,
}

/// Splits `text` into documents using the parser's document events. Stops at the first syntax
/// error (the parser cannot resynchronise reliably), returning what came before it.
pub(super) fn split_documents(text: &str) -> (Vec<RawDoc<'_>>, Option<ScanFailure>) {
    let mut docs = Vec::new();
    let mut start: Option<(usize, usize)> = None;
    for event in Parser::new_from_str(text) {
        match event {
            Ok((Event::DocumentStart(..), span)) => {
                // From the start of the line, so the slice keeps the document's indentation.
                let at = byte_offset(text, &span.start);
                let line_start = text[..at].rfind('\n').map_or(0, |i| i + 1);
                start = Some((line_start, span.start.line()));
            }
            Ok((Event::DocumentEnd, span)) => {
                let Some((from, first_line)) = start.take() else {
                    continue;
                };
                let to = byte_offset(text, &span.end).max(from);
                match text.get(from..to) {
                    Some(slice) => docs.push(RawDoc {
                        text: slice,
                        first_line,
                    }),
                    None => {
                        let failure = ScanFailure {
                            line: first_line,
                            column: 1,
                            message: "cannot locate the document's text".into(),
                        };
                        return (docs, Some(failure));
                    }
                }
            }
            Ok(_) => {}
            Err(e) => {
                let failure = ScanFailure {
                    line: e.marker().line(),
                    column: e.marker().col() + 1,
                    message: one_line(&e.info()),
                };
                return (docs, Some(failure));
            }
        }
    }
    (docs, None)
}

/// A marker's byte offset: string input always has one, but fall back to counting characters.
fn byte_offset(text: &str, marker: &Marker) -> usize {
    marker
        .byte_offset()
        .or_else(|| text.char_indices().nth(marker.index()).map(|(b, _)| b))
        .unwrap_or(text.len())
        .min(text.len())
}

/// The first line of a document that holds content, for errors about the document as a whole
/// (pointing at `apiVersion:` rather than at `---` or a comment above it).
pub(super) fn content_line(doc: &RawDoc<'_>) -> usize {
    doc.text
        .lines()
        .position(|l| {
            let t = l.trim();
            !(t.is_empty() || t.starts_with('#') || t == "---" || t.starts_with("--- #"))
        })
        .map_or(doc.first_line, |i| doc.first_line + i)
}

/// Decodes a document's slice as `T`; errors carry the file line and the library's message,
/// with the column and the offending source line (the library's type errors, like "invalid
/// i32", say little on their own).
pub(super) fn decode<T: DeserializeOwned>(doc: &RawDoc<'_>) -> Result<T, (usize, String)> {
    let options = serde_saphyr::options! { with_snippet: false };
    serde_saphyr::from_str_with_options::<T>(doc.text, options).map_err(|e| {
        // The library's messages may carry line breaks for layout; ours are one line.
        let message = one_line(&UserMessageFormatter.format_message(e.without_snippet()));
        let at = e
            .location()
            .and_then(|l| {
                Some((
                    usize::try_from(l.line()).ok()?,
                    usize::try_from(l.column()).ok()?,
                ))
            })
            .filter(|(line, _)| *line > 0);
        match at {
            Some((line, column)) => {
                let line_text = doc.text.lines().nth(line - 1).unwrap_or_default();
                (
                    doc.first_line + line - 1,
                    with_source(&message, column, line_text),
                )
            }
            None => (content_line(doc), message),
        }
    })
}

/// `message at column C: "source line"`.
pub(super) fn with_source(message: &str, column: usize, line_text: &str) -> String {
    let excerpt = line_text.trim();
    if excerpt.is_empty() {
        format!("{message} at column {column}")
    } else {
        let excerpt: String = excerpt.chars().take(80).collect();
        format!("{message} at column {column}: {:?}", one_line(&excerpt))
    }
}

pub(super) fn one_line(s: &str) -> String {
    s.chars()
        .map(|c| if c.is_control() { ' ' } else { c })
        .collect()
}
