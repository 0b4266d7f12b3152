//! Where `sinew-proxy run` takes its bootstrap `ProxyConfig` from: a file (`--config FILE`, or
//! env `SINEW_CONFIG`), or the message as JSON in env `SINEW_PROXY_CONFIG` (what the injector
//! gives a sidecar in a cluster, where no file of ours exists).
//!
//! Promises: exactly one source is accepted (both, or neither, is an error saying so); a value of
//! `SINEW_PROXY_CONFIG` that is not a valid ProxyConfig is an error naming the field that is wrong
//! (`controlPlane.tokenFile: invalid type …`), whether JSON decoding or validation refused it.

use super::{Config, ConfigError};
use serde_json::Value;
use sinew_proto::config::v1 as pb;
use std::ffi::OsStr;
use std::path::Path;

/// The env variable holding the bootstrap config as JSON (the injector's contract).
pub const ENV: &str = "SINEW_PROXY_CONFIG";

#[derive(Debug, thiserror::Error)]
pub enum BootstrapError {
    #[error(
        "the bootstrap config is given twice: use either --config FILE (or SINEW_CONFIG) or {ENV}, not both"
    )]
    Both,
    #[error(
        "no bootstrap config: give --config FILE (or SINEW_CONFIG), or the ProxyConfig as JSON in {ENV}"
    )]
    Neither,
    #[error("{ENV} is not valid UTF-8")]
    NotUtf8,
    #[error("{ENV} is set but empty (it must hold the ProxyConfig as JSON)")]
    Empty,
    #[error("{ENV} is not a ProxyConfig: {field}: {reason}")]
    Field { field: String, reason: String },
    #[error("{ENV} is not JSON: {0}")]
    NotJson(String),
    #[error("{ENV}: {0}")]
    Invalid(ConfigError),
    #[error(transparent)]
    File(ConfigError),
    #[error("{what}: {reason}")]
    Tracing { what: &'static str, reason: String },
}

/// The injector's tracing env (issue 11's contract); `sinew-proxy run --otlp-endpoint` and
/// `--trace-sampling` read them.
pub const OTLP_ENDPOINT_ENV: &str = "SINEW_OTLP_ENDPOINT";
pub const TRACE_SAMPLING_ENV: &str = "SINEW_TRACE_SAMPLING";

/// Sets the bootstrap's `telemetry.tracing` endpoint and sampling percentage from the flags (or
/// their env): a non-empty value wins over the config's; an empty one (the injector's "unset")
/// leaves it. The control plane's `ProxySettings.telemetry` is merged over the result later.
pub fn with_tracing(
    config: Config,
    endpoint: Option<&str>,
    sampling: Option<&str>,
) -> Result<Config, BootstrapError> {
    let endpoint = endpoint.map(str::trim).filter(|e| !e.is_empty());
    let sampling = sampling.map(str::trim).filter(|s| !s.is_empty());
    if endpoint.is_none() && sampling.is_none() {
        return Ok(config);
    }
    let mut msg = config.source;
    let tracing = msg
        .telemetry
        .get_or_insert_with(Default::default)
        .tracing
        .get_or_insert_with(Default::default);
    if let Some(e) = endpoint {
        super::trace::endpoint(e).map_err(|e| BootstrapError::Tracing {
            what: "--otlp-endpoint (SINEW_OTLP_ENDPOINT)",
            reason: e.to_string(),
        })?;
        tracing.otlp_endpoint = e.to_string();
    }
    if let Some(s) = sampling {
        let bad = || BootstrapError::Tracing {
            what: "--trace-sampling (SINEW_TRACE_SAMPLING)",
            reason: format!("{s:?} is not a percentage from 0 to 100"),
        };
        let p: f64 = s.parse().map_err(|_| bad())?;
        super::trace::percent(p).map_err(|_| bad())?;
        tracing.random_sampling_percentage = Some(p);
    }
    Config::from_proto(msg).map_err(BootstrapError::Invalid)
}

/// The config from whichever source was given: `file` (the `--config` flag) or `env` (the value
/// of [`ENV`], if set).
pub fn load(file: Option<&Path>, env: Option<&OsStr>) -> Result<Config, BootstrapError> {
    match (file, env) {
        (Some(_), Some(_)) => Err(BootstrapError::Both),
        (None, None) => Err(BootstrapError::Neither),
        (Some(path), None) => Config::load(path).map_err(BootstrapError::File),
        (None, Some(value)) => {
            let text = value.to_str().ok_or(BootstrapError::NotUtf8)?;
            from_json(text)
        }
    }
}

/// Decodes and validates the JSON form of a ProxyConfig (protobuf-JSON field names).
pub fn from_json(text: &str) -> Result<Config, BootstrapError> {
    if text.trim().is_empty() {
        return Err(BootstrapError::Empty);
    }
    let msg: pb::ProxyConfig = match serde_json::from_str(text) {
        Ok(msg) => msg,
        Err(e) => {
            // Decoding stops at the first problem, but serde's message says only the innermost
            // name; the path to it comes from decoding smaller and smaller parts of the document.
            let Ok(doc) = serde_json::from_str::<Value>(text) else {
                return Err(BootstrapError::NotJson(e.to_string()));
            };
            let path = failing_path(&doc, |d| {
                serde_json::from_value::<pb::ProxyConfig>(d.clone()).is_err()
            });
            let field = if path.is_empty() {
                "(the whole value)".to_string()
            } else {
                path
            };
            return Err(BootstrapError::Field {
                field,
                reason: e.to_string(),
            });
        }
    };
    Config::from_proto(msg).map_err(BootstrapError::Invalid)
}

/// One step into a JSON document.
#[derive(Clone, Debug)]
enum Step {
    Key(String),
    Index(usize),
}

/// The path (`services[0].endpoints[1].address`) to the innermost part of `doc` that is still
/// refused on its own: at each level, the first child that `fails` when it is the only thing
/// left there. Empty when the document fails only as a whole.
fn failing_path(doc: &Value, fails: impl Fn(&Value) -> bool) -> String {
    let mut path: Vec<Step> = Vec::new();
    // Deep documents end in serde's recursion limit long before this matters; the bound only
    // keeps this loop finite by construction.
    while path.len() < 64 {
        let Some(node) = at(doc, &path) else { break };
        let children: Vec<Step> = match node {
            Value::Object(map) => map.keys().cloned().map(Step::Key).collect(),
            Value::Array(items) => (0..items.len()).map(Step::Index).collect(),
            _ => break,
        };
        let culprit = children.into_iter().find(|child| {
            let mut candidate = path.clone();
            candidate.push(child.clone());
            fails(&only(doc, &candidate))
        });
        match culprit {
            Some(child) => path.push(child),
            None => break,
        }
    }
    let mut out = String::new();
    for step in &path {
        match step {
            Step::Key(k) if out.is_empty() => out.push_str(k),
            Step::Key(k) => {
                out.push('.');
                out.push_str(k);
            }
            Step::Index(i) => out.push_str(&format!("[{i}]")),
        }
    }
    out
}

fn at<'a>(doc: &'a Value, path: &[Step]) -> Option<&'a Value> {
    path.iter().try_fold(doc, |node, step| match step {
        Step::Key(k) => node.get(k),
        Step::Index(i) => node.get(i),
    })
}

/// `doc` with everything but `path` removed: each object keeps only the key on the path, each
/// array only the element on it (then at index 0), and the end of the path stays whole.
fn only(doc: &Value, path: &[Step]) -> Value {
    let Some((step, rest)) = path.split_first() else {
        return doc.clone();
    };
    match step {
        Step::Key(k) => {
            let inner = doc.get(k).map_or(Value::Null, |v| only(v, rest));
            let mut map = serde_json::Map::new();
            map.insert(k.clone(), inner);
            Value::Object(map)
        }
        Step::Index(i) => {
            let inner = doc.get(i).map_or(Value::Null, |v| only(v, rest));
            Value::Array(vec![inner])
        }
    }
}

#[cfg(test)]
mod tests;
