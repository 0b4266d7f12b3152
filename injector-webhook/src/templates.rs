//! Manual injection (`sinewctl kube-inject`): Pods, and the pod templates of the workload kinds,
//! injected with the same code as the webhook.
//!
//! What it promises:
//! - `Pod` (v1); the `spec.template` of `Deployment`, `StatefulSet`, `DaemonSet`, `ReplicaSet`
//!   (apps/v1), `Job` (batch/v1) and `ReplicationController` (v1); the
//!   `spec.jobTemplate.spec.template` of `CronJob` (batch/v1); and each item of a `List`.
//! - A template is injected as the pod it stamps out would be by the webhook (its labels,
//!   annotations and spec, in the object's namespace), so a pod created from the output needs
//!   nothing more from the webhook (it is already injected) and matches what the webhook would
//!   have made of the original.
//! - Namespace labels are not checked (`kube-inject` is the explicit ask); every other rule is:
//!   opted-out, hostNetwork and `kube-system` pods come back unchanged, with the reason, and
//!   every other kind passes through.

use serde_json::{Map, Value, json};

use crate::decide::Namespace;
use crate::inject::{Outcome, inject};
use crate::overrides::Problem;
use crate::settings::Settings;

/// What became of one object.
#[derive(Debug, Clone, PartialEq)]
pub enum Injected {
    /// The object with its pod (or pods, for a List) injected.
    Changed {
        object: Value,
        warnings: Vec<String>,
    },
    /// A pod, or an object with a pod template, that is not injected (the rules say no, or it
    /// cannot be read): the input is the output.
    Unchanged { why: String, warnings: Vec<String> },
    /// Not a kind with pods (a Service, a ConfigMap): the input is the output.
    PassThrough,
    /// A pod's annotations ask for something impossible.
    Refused {
        problems: Vec<Problem>,
        warnings: Vec<String>,
    },
}

/// Where a kind keeps its pod template.
fn template_path(api_version: &str, kind: &str) -> Option<&'static [&'static str]> {
    const SPEC_TEMPLATE: &[&str] = &["spec", "template"];
    const JOB_TEMPLATE: &[&str] = &["spec", "jobTemplate", "spec", "template"];
    match (api_version, kind) {
        ("apps/v1", "Deployment" | "StatefulSet" | "DaemonSet" | "ReplicaSet")
        | ("batch/v1", "Job")
        | ("v1", "ReplicationController") => Some(SPEC_TEMPLATE),
        ("batch/v1", "CronJob") => Some(JOB_TEMPLATE),
        _ => None,
    }
}

/// Injects `object` (a Kubernetes object's JSON).
pub fn inject_object(object: &Value, settings: &Settings) -> Injected {
    let text = |key: &str| object.get(key).and_then(Value::as_str).unwrap_or_default();
    let (api_version, kind) = (text("apiVersion"), text("kind"));
    let namespace = object
        .get("metadata")
        .and_then(|m| m.get("namespace"))
        .and_then(Value::as_str)
        .unwrap_or_default();
    let target = Namespace {
        name: namespace,
        labels: None,
    };
    if (api_version, kind) == ("v1", "Pod") {
        return from_outcome(inject(object, target, settings), |pod| pod);
    }
    if (api_version, kind) == ("v1", "List") {
        return inject_list(object, settings);
    }
    let Some(path) = template_path(api_version, kind) else {
        return Injected::PassThrough;
    };
    let Some(template) = path.iter().try_fold(object, |v, key| v.get(*key)) else {
        return Injected::Unchanged {
            why: format!("{kind} has no {}", path.join(".")),
            warnings: vec![format!(
                "{kind} has no {}: nothing injected",
                path.join(".")
            )],
        };
    };
    let pod = json!({
        "apiVersion": "v1",
        "kind": "Pod",
        "metadata": template.get("metadata").cloned().unwrap_or_else(|| json!({})),
        "spec": template.get("spec").cloned().unwrap_or(Value::Null),
    });
    from_outcome(inject(&pod, target, settings), |injected| {
        let mut out = object.clone();
        let mut slot = &mut out;
        for key in path {
            slot = &mut slot[*key];
        }
        let mut fields = Map::new();
        if let Value::Object(template) = slot.take() {
            fields = template;
        }
        if let Value::Object(pod) = injected {
            for key in ["metadata", "spec"] {
                if let Some(v) = pod.get(key) {
                    fields.insert(key.to_string(), v.clone());
                }
            }
        }
        *slot = Value::Object(fields);
        out
    })
}

fn inject_list(list: &Value, settings: &Settings) -> Injected {
    let Some(items) = list.get("items").and_then(Value::as_array) else {
        return Injected::PassThrough;
    };
    let mut out_items = Vec::with_capacity(items.len());
    let mut all_warnings = Vec::new();
    let mut all_problems = Vec::new();
    let mut reasons = Vec::new();
    let mut changed = false;
    for item in items {
        match inject_object(item, settings) {
            Injected::Changed { object, warnings } => {
                changed = true;
                all_warnings.extend(warnings);
                out_items.push(object);
            }
            Injected::Unchanged { why, warnings } => {
                all_warnings.extend(warnings);
                reasons.push(why);
                out_items.push(item.clone());
            }
            Injected::Refused { problems, warnings } => {
                all_warnings.extend(warnings);
                all_problems.extend(problems);
                out_items.push(item.clone());
            }
            Injected::PassThrough => out_items.push(item.clone()),
        }
    }
    if !all_problems.is_empty() {
        return Injected::Refused {
            problems: all_problems,
            warnings: all_warnings,
        };
    }
    if !changed {
        return if reasons.is_empty() {
            Injected::PassThrough
        } else {
            Injected::Unchanged {
                why: reasons.join("; "),
                warnings: all_warnings,
            }
        };
    }
    let mut out = list.clone();
    out["items"] = Value::Array(out_items);
    Injected::Changed {
        object: out,
        warnings: all_warnings,
    }
}

fn from_outcome(outcome: Outcome, place: impl FnOnce(Value) -> Value) -> Injected {
    match outcome {
        Outcome::Injected { pod, warnings } => Injected::Changed {
            object: place(pod),
            warnings,
        },
        Outcome::Unchanged { why, warnings } => Injected::Unchanged {
            why: why.to_string(),
            warnings,
        },
        Outcome::Refused { problems, warnings } => Injected::Refused { problems, warnings },
    }
}

#[cfg(test)]
mod tests;
