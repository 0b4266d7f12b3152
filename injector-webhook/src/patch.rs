//! The JSON patch (RFC 6902) from the pod as the API server sent it to the pod as injected.
//!
//! What it promises: applying [`between`]`(a, b)` to `a` gives exactly `b`. Objects are compared
//! member by member (`add` for new members, `remove` for gone ones, recursion into both); any
//! other difference, arrays included, is one `replace` of the whole value. Whole arrays keep the
//! patch readable (one operation for `initContainers`, not one per shifted element) and are safe
//! here: the API server applies the patch to the very object it sent. Keys are escaped as JSON
//! pointers require (`~0`, `~1`: `prometheus.io/port` is `/metadata/annotations/prometheus.io~1port`).

use json_patch::jsonptr::PointerBuf;
use json_patch::{AddOperation, Patch, PatchOperation, RemoveOperation, ReplaceOperation};
use serde_json::Value;

/// The operations that turn `from` into `to` (none when they are equal).
pub fn between(from: &Value, to: &Value) -> Patch {
    let mut ops = Vec::new();
    diff(from, to, &mut PointerBuf::new(), &mut ops);
    Patch(ops)
}

fn diff(from: &Value, to: &Value, at: &mut PointerBuf, ops: &mut Vec<PatchOperation>) {
    match (from, to) {
        (Value::Object(a), Value::Object(b)) => {
            for (key, b_value) in b {
                at.push_back(key.as_str());
                match a.get(key) {
                    Some(a_value) => diff(a_value, b_value, at, ops),
                    None => ops.push(PatchOperation::Add(AddOperation {
                        path: at.clone(),
                        value: b_value.clone(),
                    })),
                }
                at.pop_back();
            }
            for key in a.keys().filter(|k| !b.contains_key(*k)) {
                at.push_back(key.as_str());
                ops.push(PatchOperation::Remove(RemoveOperation { path: at.clone() }));
                at.pop_back();
            }
        }
        (a, b) if a == b => {}
        (_, b) => ops.push(PatchOperation::Replace(ReplaceOperation {
            path: at.clone(),
            value: b.clone(),
        })),
    }
}

/// The patch as the bytes of a JSON array.
pub fn to_bytes(patch: &Patch) -> Vec<u8> {
    serde_json::to_vec(patch).expect("invariant: a patch of JSON values serialises")
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::*;

    fn applied(from: &Value, patch: &Patch) -> Value {
        let mut doc = from.clone();
        json_patch::patch(&mut doc, patch).expect("the patch applies");
        doc
    }

    #[test]
    fn applying_the_patch_gives_the_target() {
        let from = json!({
            "metadata": {"labels": {"app": "web"}, "annotations": null, "gone": 1},
            "spec": {"containers": [{"name": "a"}], "volumes": [1, 2, 3]},
        });
        let to = json!({
            "metadata": {"labels": {"app": "web", "security.sinew.dev/tlsMode": "sinew"},
                         "annotations": {"prometheus.io/port": "15020", "a~b": "x"}},
            "spec": {"initContainers": [{"name": "i"}], "containers": [{"name": "p"}, {"name": "a"}],
                     "volumes": [1, 2]},
        });
        let patch = between(&from, &to);
        assert_eq!(applied(&from, &patch), to);
    }

    #[test]
    fn keys_are_escaped_and_arrays_replaced_whole() {
        let from = json!({"a": {"x/y": "1"}, "list": [1, 2]});
        let to = json!({"a": {"x/y": "2", "m~n": "3"}, "list": [0, 1, 2]});
        assert_eq!(
            serde_json::to_value(between(&from, &to)).expect("JSON"),
            json!([
                {"op": "add", "path": "/a/m~0n", "value": "3"},
                {"op": "replace", "path": "/a/x~1y", "value": "2"},
                {"op": "replace", "path": "/list", "value": [0, 1, 2]},
            ])
        );
    }

    #[test]
    fn equal_documents_need_no_operation() {
        let doc = json!({"a": [1, {"b": null}], "c": "d"});
        assert!(between(&doc, &doc).0.is_empty());
        assert_eq!(to_bytes(&between(&doc, &doc)), b"[]");
    }
}
