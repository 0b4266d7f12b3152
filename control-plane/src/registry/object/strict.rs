//! Strict decoding of API objects (`serde_json::Value`), as `kubectl apply --validate=strict`
//! does it: a field the type does not have is reported by its path rather than silently dropped,
//! exactly as the file source reports it (minus the line), with the field the user probably
//! meant. Also the type-driven helpers both sources share: field paths as Kubernetes writes them
//! and the fields a type has at a path.

use serde::de::DeserializeOwned;

/// Decodes `value` as `T`, returning the paths of the fields `T` does not have
/// (`spec.trafficPolicy.loadBalancer.simpel`) beside the value.
pub(crate) fn decode<T: DeserializeOwned>(
    value: &serde_json::Value,
) -> Result<(T, Vec<String>), serde_json::Error> {
    let mut unknown = Vec::new();
    let decoded = serde_ignored::deserialize(value, |path| unknown.push(path_string(&path)))?;
    Ok((decoded, unknown))
}

/// `a.b[0].c`: the way Kubernetes documentation and kubectl name fields.
pub(crate) fn path_string(path: &serde_ignored::Path<'_>) -> String {
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
pub(crate) fn sibling_fields<T: DeserializeOwned>(path: &str) -> Vec<&'static str> {
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

#[cfg(test)]
mod tests {
    use super::*;

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
    fn unknown_fields_of_a_json_object_are_reported_by_path() {
        use k8s_openapi::api::core::v1::Pod;
        let value = serde_json::json!({
            "apiVersion": "v1",
            "kind": "Pod",
            "metadata": {"name": "a", "labelz": {}},
            "spec": {"containers": [{"name": "c", "imagee": "x"}]},
        });
        let (pod, unknown) = decode::<Pod>(&value).expect("the known fields decode");
        assert_eq!(pod.metadata.name.as_deref(), Some("a"));
        assert_eq!(unknown, ["metadata.labelz", "spec.containers[0].imagee"]);
    }

    #[test]
    fn a_json_value_of_the_wrong_type_is_an_error() {
        use k8s_openapi::api::core::v1::Pod;
        let value = serde_json::json!({"metadata": {"name": 7}});
        assert!(decode::<Pod>(&value).is_err());
    }
}
