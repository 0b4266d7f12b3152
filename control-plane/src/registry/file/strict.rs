//! Strict decoding of YAML documents, as `kubectl apply --validate=strict` does it: a field the
//! type does not have is an error rather than silently dropped (`replica: 3` would otherwise leave
//! one replica), and a value of the wrong type is reported in the user's terms — the field path,
//! the expected type and the value as written — at its own line, never as the YAML library's
//! Rust-flavoured message. [`Nodes`] turns field paths into lines.

use serde::de::DeserializeOwned;
use serde_saphyr::Error as YamlError;
use serde_saphyr::granit_parser::{Event, Parser};

use crate::registry::object::strict;

/// Decodes `text` (one document) as `T`, returning the paths of the fields `T` does not have
/// (`spec.template.spec.containers[0].imagePullPolice`) beside the value.
pub(crate) fn decode<T: DeserializeOwned>(text: &str) -> Result<(T, Vec<String>), YamlError> {
    let options = serde_saphyr::options! { with_snippet: false };
    let mut unknown = Vec::new();
    let value = serde_saphyr::with_deserializer_from_str_with_options(text, options, |de| {
        serde_ignored::deserialize(de, |path| unknown.push(strict::path_string(&path)))
    })?;
    Ok((value, unknown))
}

/// What a node looks like, for "got …" in a message.
#[derive(Debug, Clone, PartialEq)]
enum Shape {
    Scalar(String),
    Mapping,
    Sequence,
}

/// One node of a document: its path, the line of its key (for a mapping value), and where its
/// value starts (1-based line and column, relative to the document's text).
#[derive(Debug, Clone)]
struct Node {
    path: String,
    key_line: Option<usize>,
    line: usize,
    column: usize,
    shape: Shape,
}

/// Every node of one document with its position: turns a path into a line and a position
/// into a path. Built from the parser's events, so it sees what the decoder saw.
#[derive(Debug, Default)]
pub(crate) struct Nodes {
    nodes: Vec<Node>,
}

enum Frame {
    Mapping {
        path: String,
        key: Option<(String, usize)>,
    },
    Sequence {
        path: String,
        next: usize,
    },
}

fn join(parent: &str, key: &str) -> String {
    if parent.is_empty() {
        key.to_string()
    } else {
        format!("{parent}.{key}")
    }
}

impl Nodes {
    /// The nodes of `text`; a syntax error ends the walk (the decoder reports it).
    pub(crate) fn of(text: &str) -> Self {
        let mut nodes = Vec::new();
        let mut stack: Vec<Frame> = Vec::new();
        for event in Parser::new_from_str(text) {
            let Ok((event, span)) = event else { break };
            let shape = match &event {
                Event::Scalar(text, ..) => Shape::Scalar(text.to_string()),
                Event::MappingStart(..) => Shape::Mapping,
                Event::SequenceStart(..) => Shape::Sequence,
                Event::Alias(_) => Shape::Scalar("*alias".into()),
                Event::MappingEnd | Event::SequenceEnd => {
                    stack.pop();
                    continue;
                }
                _ => continue,
            };
            let (line, column) = (span.start.line(), span.start.col() + 1);
            // Where this node sits: a key, a mapping value, an item, or the root.
            let (path, key_line) = match stack.last_mut() {
                Some(Frame::Mapping {
                    key: key @ None,
                    path,
                }) => {
                    let name = match &shape {
                        Shape::Scalar(s) => s.clone(),
                        _ => "?".to_string(),
                    };
                    let parent = path.clone();
                    *key = Some((name, line));
                    if matches!(shape, Shape::Scalar(_)) {
                        continue;
                    }
                    // A complex key: walk into it under a path no field has.
                    (join(&parent, "?"), None)
                }
                Some(Frame::Mapping { key, path }) => {
                    let (name, key_line) = key.take().unwrap_or_default();
                    (join(path, &name), Some(key_line))
                }
                Some(Frame::Sequence { path, next }) => {
                    *next += 1;
                    (format!("{path}[{}]", *next - 1), None)
                }
                None => (String::new(), None),
            };
            match shape {
                Shape::Mapping => stack.push(Frame::Mapping {
                    path: path.clone(),
                    key: None,
                }),
                Shape::Sequence => stack.push(Frame::Sequence {
                    path: path.clone(),
                    next: 0,
                }),
                Shape::Scalar(_) => {}
            }
            nodes.push(Node {
                path,
                key_line,
                line,
                column,
                shape,
            });
        }
        Self { nodes }
    }

    /// The line of the field at `path` (its key's line), relative to the document.
    pub(crate) fn line_of(&self, path: &str) -> Option<usize> {
        self.nodes
            .iter()
            .find(|n| n.path == path)
            .map(|n| n.key_line.unwrap_or(n.line))
    }

    /// The node a decode error points at: the one starting there, else the last one starting
    /// before it on the same line.
    fn at(&self, line: usize, column: usize) -> Option<&Node> {
        self.nodes
            .iter()
            .filter(|n| n.line == line && n.column <= column)
            .max_by_key(|n| n.column)
    }

    /// A decode error in the user's terms, or `None` when it is not about one field's value
    /// (the caller then shows the library's message with the source line).
    pub(crate) fn explain(&self, error: &YamlError) -> Option<String> {
        let location = error.location()?;
        let line = usize::try_from(location.line()).ok()?;
        let column = usize::try_from(location.column()).ok()?;
        let node = self.at(line, column)?;
        let got = match &node.shape {
            Shape::Scalar(s) => format!("{s:?}"),
            Shape::Mapping => "a mapping".to_string(),
            Shape::Sequence => "a list".to_string(),
        };
        let reason = match error.without_snippet() {
            YamlError::InvalidScalar { ty, .. } => {
                format!("expected {}, got {got}", expected_type(ty))
            }
            YamlError::Unexpected { expected, .. } => {
                format!("expected {}, got {got}", expected_type(expected))
            }
            YamlError::SerdeInvalidType { expected, .. }
            | YamlError::SerdeInvalidValue { expected, .. } => {
                format!("expected {}, got {got}", expected_type(expected))
            }
            YamlError::SerdeUnknownVariant {
                variant, expected, ..
            } => format!(
                "unknown value {variant:?}; expected one of {}",
                expected.join(", ")
            ),
            // Our own types' messages (DestinationRule enums) are already in the user's terms.
            YamlError::Message { msg, .. } => msg.clone(),
            _ => return None,
        };
        Some(if node.path.is_empty() {
            reason
        } else {
            format!("{}: {reason}", node.path)
        })
    }
}

/// Rust and serde type names as a person reading YAML would call them.
fn expected_type(rust: &str) -> String {
    let t = rust.trim();
    let integer = [
        "i8", "i16", "i32", "i64", "i128", "isize", "u8", "u16", "u32", "u64", "u128", "usize",
    ];
    if integer.contains(&t) || t.contains("integer") {
        "an integer".into()
    } else if matches!(t, "f32" | "f64") || t.contains("float") {
        "a number".into()
    } else if t.contains("bool") {
        "true or false".into()
    } else if matches!(
        t,
        "a string" | "string" | "str" | "char" | "a borrowed string"
    ) {
        "a string".into()
    } else if t.starts_with("struct ") || t.contains("map") {
        "a mapping".into()
    } else if t.contains("seq") || t.contains("list") || t.contains("vec") {
        "a list".into()
    } else {
        t.to_string()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn paths_name_keys_and_items_with_their_lines() {
        let text = "a:\n  b: 1\n  c:\n    - {d: x}\n    - e: y\n";
        let nodes = Nodes::of(text);
        assert_eq!(nodes.line_of("a.b"), Some(2));
        assert_eq!(nodes.line_of("a.c"), Some(3));
        assert_eq!(nodes.line_of("a.c[0].d"), Some(4));
        assert_eq!(nodes.line_of("a.c[1].e"), Some(5));
        assert_eq!(nodes.line_of("a.x"), None);
    }

    #[test]
    fn rust_type_names_become_yaml_words() {
        assert_eq!(expected_type("i32"), "an integer");
        assert_eq!(expected_type("u16"), "an integer");
        assert_eq!(expected_type("f64"), "a number");
        assert_eq!(expected_type("bool"), "true or false");
        assert_eq!(expected_type("a string"), "a string");
        assert_eq!(expected_type("struct PodSpec"), "a mapping");
    }
}
