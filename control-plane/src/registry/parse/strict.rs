//! Strict decoding, as `kubectl apply --validate=strict` does it: a field the type does not have is
//! an error rather than silently dropped (`replica: 3` would otherwise leave one replica), and a
//! value of the wrong type is reported in the user's terms — the field path, the expected type and
//! the value as written — at its own line, never as the YAML library's Rust-flavoured message.

use serde::de::DeserializeOwned;
use serde_saphyr::Error as YamlError;
use serde_saphyr::granit_parser::{Event, Parser};

/// Decodes `text` (one document) as `T`, returning the paths of the fields `T` does not have
/// (`spec.template.spec.containers[0].imagePullPolice`) beside the value.
pub(super) fn decode<T: DeserializeOwned>(text: &str) -> Result<(T, Vec<String>), YamlError> {
    let options = serde_saphyr::options! { with_snippet: false };
    let mut unknown = Vec::new();
    let value = serde_saphyr::with_deserializer_from_str_with_options(text, options, |de| {
        serde_ignored::deserialize(de, |path| unknown.push(path_string(&path)))
    })?;
    Ok((value, unknown))
}

/// `a.b[0].c`: the way Kubernetes documentation and kubectl name fields.
fn path_string(path: &serde_ignored::Path<'_>) -> String {
    use serde_ignored::Path;
    match path {
        Path::Root => String::new(),
        Path::Seq { parent, index } => format!("{}[{index}]", path_string(parent)),
        Path::Map { parent, key } => match path_string(parent) {
            p if p.is_empty() => key.clone(),
            p => format!("{p}.{key}"),
        },
        Path::Some { parent }
        | Path::NewtypeStruct { parent }
        | Path::NewtypeVariant { parent } => path_string(parent),
    }
}

/// The fields the type at `path`'s parent has (`spec.replica` → the fields of `spec`), asked of
/// `T`'s own `Deserialize`: a stand-in document that holds only that path is decoded until the
/// parent's type names its fields. Empty when the parent is not a struct.
pub(super) fn sibling_fields<T: DeserializeOwned>(path: &str) -> Vec<&'static str> {
    let mut segments: Vec<Segment> = Vec::new();
    for part in path.split('.') {
        let (key, indexes) = part.split_once('[').map_or((part, ""), |(k, i)| (k, i));
        segments.push(Segment::Key(key.to_string()));
        segments.extend(indexes.matches(']').map(|_| Segment::Item));
    }
    segments.pop(); // the unknown field itself
    let found = std::cell::RefCell::new(Vec::new());
    let _ = T::deserialize(Probe {
        rest: &segments,
        found: &found,
    });
    found.into_inner()
}

enum Segment {
    Key(String),
    Item,
}

/// A deserializer that holds nothing but one path and records the fields of the struct at its end.
struct Probe<'p> {
    rest: &'p [Segment],
    found: &'p std::cell::RefCell<Vec<&'static str>>,
}

type ProbeError = serde::de::value::Error;

impl<'de> serde::Deserializer<'de> for Probe<'_> {
    type Error = ProbeError;

    fn deserialize_any<V: serde::de::Visitor<'de>>(
        self,
        visitor: V,
    ) -> Result<V::Value, ProbeError> {
        match self.rest.split_first() {
            Some((Segment::Key(key), rest)) => visitor.visit_map(OneEntry {
                key: Some(key.clone()),
                value: Some(Probe {
                    rest,
                    found: self.found,
                }),
            }),
            Some((Segment::Item, rest)) => visitor.visit_seq(OneItem(Some(Probe {
                rest,
                found: self.found,
            }))),
            None => Err(serde::de::Error::custom("end of the path")),
        }
    }

    fn deserialize_struct<V: serde::de::Visitor<'de>>(
        self,
        _name: &'static str,
        fields: &'static [&'static str],
        visitor: V,
    ) -> Result<V::Value, ProbeError> {
        if self.rest.is_empty() {
            *self.found.borrow_mut() = fields.to_vec();
            // Found: stop here, the value is never built.
            return Err(serde::de::Error::custom("found"));
        }
        self.deserialize_any(visitor)
    }

    fn deserialize_option<V: serde::de::Visitor<'de>>(
        self,
        visitor: V,
    ) -> Result<V::Value, ProbeError> {
        visitor.visit_some(self)
    }

    fn deserialize_newtype_struct<V: serde::de::Visitor<'de>>(
        self,
        _name: &'static str,
        visitor: V,
    ) -> Result<V::Value, ProbeError> {
        visitor.visit_newtype_struct(self)
    }

    serde::forward_to_deserialize_any! {
        bool i8 i16 i32 i64 i128 u8 u16 u32 u64 u128 f32 f64 char str string bytes byte_buf
        unit unit_struct seq tuple tuple_struct map enum identifier ignored_any
    }
}

struct OneEntry<'p> {
    key: Option<String>,
    value: Option<Probe<'p>>,
}

impl<'de> serde::de::MapAccess<'de> for OneEntry<'_> {
    type Error = ProbeError;

    fn next_key_seed<K: serde::de::DeserializeSeed<'de>>(
        &mut self,
        seed: K,
    ) -> Result<Option<K::Value>, ProbeError> {
        use serde::de::IntoDeserializer as _;
        self.key
            .take()
            .map(|k| seed.deserialize(k.into_deserializer()))
            .transpose()
    }

    fn next_value_seed<V: serde::de::DeserializeSeed<'de>>(
        &mut self,
        seed: V,
    ) -> Result<V::Value, ProbeError> {
        match self.value.take() {
            Some(probe) => seed.deserialize(probe),
            None => Err(serde::de::Error::custom("no value")),
        }
    }
}

struct OneItem<'p>(Option<Probe<'p>>);

impl<'de> serde::de::SeqAccess<'de> for OneItem<'_> {
    type Error = ProbeError;

    fn next_element_seed<T: serde::de::DeserializeSeed<'de>>(
        &mut self,
        seed: T,
    ) -> Result<Option<T::Value>, ProbeError> {
        self.0.take().map(|p| seed.deserialize(p)).transpose()
    }
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
pub(super) struct Nodes {
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
    pub(super) fn of(text: &str) -> Self {
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
    pub(super) fn line_of(&self, path: &str) -> Option<usize> {
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
    pub(super) fn explain(&self, error: &YamlError) -> Option<String> {
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
    fn the_fields_beside_an_unknown_one_come_from_the_type() {
        use k8s_openapi::api::apps::v1::Deployment;
        let fields = sibling_fields::<Deployment>("spec.replica");
        assert!(fields.contains(&"replicas"), "{fields:?}");
        let fields = sibling_fields::<Deployment>("spec.template.spec.containers[0].comand");
        assert!(fields.contains(&"command"), "{fields:?}");
        assert!(sibling_fields::<Deployment>("kind2").contains(&"apiVersion"));
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
