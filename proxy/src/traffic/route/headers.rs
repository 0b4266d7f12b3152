//! Header operations (VirtualService `headers.request`/`headers.response`, per route and per
//! destination), validated once and applied as Envoy applies one level.

use super::invalid;
use crate::config::ConfigError;
use http::header::{HeaderMap, HeaderName, HeaderValue};
use sinew_proto::config::v1 as pb;

/// Envoy's header mutations for one level: removals first, then `set` (overwrite), then `add`
/// (append).
#[derive(Debug, Default)]
pub struct HeaderOps {
    set: Box<[(HeaderName, HeaderValue)]>,
    add: Box<[(HeaderName, HeaderValue)]>,
    remove: Box<[HeaderName]>,
}

// === impl HeaderOps ===

impl HeaderOps {
    pub(super) fn from_proto(
        field: &str,
        ops: Option<&pb::HeaderOps>,
    ) -> Result<Self, ConfigError> {
        let Some(ops) = ops else {
            return Ok(Self::default());
        };
        let pairs = |sub: &str, map: &std::collections::BTreeMap<String, String>| {
            let mut out = map
                .iter()
                .map(|(k, v)| {
                    let f = format!("{field}.{sub}[{k}]");
                    let name = HeaderName::from_bytes(k.to_ascii_lowercase().as_bytes())
                        .map_err(|_| invalid(&f, format!("{k:?} is not a header name")))?;
                    let value = HeaderValue::from_str(v)
                        .map_err(|_| invalid(&f, format!("{v:?} is not a header value")))?;
                    Ok((name, value))
                })
                .collect::<Result<Vec<_>, ConfigError>>()?;
            // Maps have no order; make application deterministic.
            out.sort_by(|a, b| a.0.as_str().cmp(b.0.as_str()));
            Ok::<_, ConfigError>(out.into_boxed_slice())
        };
        let remove = ops
            .remove
            .iter()
            .enumerate()
            .map(|(i, k)| {
                HeaderName::from_bytes(k.to_ascii_lowercase().as_bytes()).map_err(|_| {
                    invalid(
                        format!("{field}.remove[{i}]"),
                        format!("{k:?} is not a header name"),
                    )
                })
            })
            .collect::<Result<_, _>>()?;
        Ok(Self {
            set: pairs("set", &ops.set)?,
            add: pairs("add", &ops.add)?,
            remove,
        })
    }

    pub fn is_empty(&self) -> bool {
        self.set.is_empty() && self.add.is_empty() && self.remove.is_empty()
    }

    /// Removals, then `set` (replacing every value), then `add` (appending), as Envoy's header
    /// parser evaluates one level.
    pub fn apply(&self, headers: &mut HeaderMap) {
        for name in &self.remove {
            headers.remove(name);
        }
        for (name, value) in &self.set {
            headers.insert(name.clone(), value.clone());
        }
        for (name, value) in &self.add {
            headers.append(name.clone(), value.clone());
        }
    }
}
