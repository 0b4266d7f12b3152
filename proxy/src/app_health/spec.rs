//! The app's original probes, as the injector passes them in env `SINEW_APP_PROBERS`: a JSON
//! object from the rewritten probe's path (`/app-health/<container>/<livez|readyz|startupz>`) to
//! the Kubernetes probe it replaced (`httpGet`, `tcpSocket` or `grpc`, plus `timeoutSeconds`),
//! named ports already resolved to numbers.
//!
//! Promises: [`Probers::parse`] either returns probes that can all be run as written (a port,
//! a path, header names and values, a timeout) or an error naming the entry and the field that
//! is wrong. What Kubernetes accepts and the kubelet can send is accepted: a path's bytes that a
//! request target cannot carry are sent percent-encoded (as the kubelet does), header values
//! may hold bytes past ASCII. Unknown fields are errors, except the probe's timing fields, which belong to
//! the kubelet and are ignored here.

use http::uri::PathAndQuery;
use http::{HeaderName, HeaderValue};
use serde::Deserialize;
use std::collections::HashMap;
use std::sync::Arc;
use std::time::Duration;

/// The env variable (the injector's contract).
pub const ENV: &str = "SINEW_APP_PROBERS";

/// The kubelet's default (and minimum) probe timeout.
pub const DEFAULT_TIMEOUT: Duration = Duration::from_secs(1);

/// The three kinds of probe a container can have, as the path's last segment names them.
const KINDS: [&str; 3] = ["livez", "readyz", "startupz"];

#[derive(Debug, thiserror::Error)]
pub enum SpecError {
    #[error("{ENV} is not valid UTF-8")]
    NotUtf8,
    #[error("{ENV} is not a JSON object of probes: {0}")]
    NotObject(String),
    #[error("{ENV}[{key:?}]: {reason}")]
    Entry { key: String, reason: String },
}

/// Every probe, by the path the kubelet now asks.
#[derive(Debug, Default)]
pub struct Probers {
    by_path: HashMap<String, Arc<Probe>>,
}

/// One of the app's probes.
#[derive(Debug, PartialEq)]
pub struct Probe {
    pub action: Action,
    /// The whole probe, connection included, must pass within this.
    pub timeout: Duration,
}

#[derive(Debug, PartialEq)]
pub enum Action {
    Http(HttpGet),
    Tcp { port: u16 },
    Grpc { port: u16, service: String },
}

#[derive(Debug, PartialEq)]
pub struct HttpGet {
    pub port: u16,
    pub path: PathAndQuery,
    pub https: bool,
    /// `host`: sent as the Host header (the connection always goes to 127.0.0.1).
    pub host: Option<String>,
    pub headers: Vec<(HeaderName, HeaderValue)>,
}

// The JSON as written (Kubernetes' field names).

#[derive(Deserialize)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
struct RawProbe {
    http_get: Option<RawHttpGet>,
    tcp_socket: Option<RawPort>,
    grpc: Option<RawGrpc>,
    timeout_seconds: Option<i64>,
    // The kubelet's business (when and how often to ask), not the prober's: accepted so that a
    // probe copied whole is not an error, and ignored.
    #[serde(rename = "initialDelaySeconds")]
    _initial_delay: Option<serde::de::IgnoredAny>,
    #[serde(rename = "periodSeconds")]
    _period: Option<serde::de::IgnoredAny>,
    #[serde(rename = "successThreshold")]
    _success: Option<serde::de::IgnoredAny>,
    #[serde(rename = "failureThreshold")]
    _failure: Option<serde::de::IgnoredAny>,
    #[serde(rename = "terminationGracePeriodSeconds")]
    _grace: Option<serde::de::IgnoredAny>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
struct RawHttpGet {
    port: serde_json::Value,
    #[serde(default)]
    path: String,
    #[serde(default)]
    scheme: String,
    #[serde(default)]
    host: String,
    #[serde(default)]
    http_headers: Vec<RawHeader>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawHeader {
    name: String,
    value: String,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawPort {
    port: serde_json::Value,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawGrpc {
    port: serde_json::Value,
    #[serde(default)]
    service: Option<String>,
}

// === impl Probers ===

impl Probers {
    /// Reads the env value (as `std::env::var_os` returns it).
    pub fn from_env(value: Option<&std::ffi::OsStr>) -> Result<Self, SpecError> {
        match value {
            None => Ok(Self::default()),
            Some(v) => Self::parse(v.to_str().ok_or(SpecError::NotUtf8)?),
        }
    }

    /// Parses the JSON object. Empty text means no probes (as an unset variable does).
    pub fn parse(text: &str) -> Result<Self, SpecError> {
        if text.trim().is_empty() {
            return Ok(Self::default());
        }
        let entries: serde_json::Map<String, serde_json::Value> =
            serde_json::from_str(text).map_err(|e| SpecError::NotObject(e.to_string()))?;
        let mut by_path = HashMap::with_capacity(entries.len());
        for (key, value) in entries {
            let entry = |reason: String| SpecError::Entry {
                key: key.clone(),
                reason,
            };
            check_key(&key).map_err(entry)?;
            let raw: RawProbe = serde_json::from_value(value).map_err(|e| entry(e.to_string()))?;
            let probe = probe(raw).map_err(entry)?;
            by_path.insert(key, Arc::new(probe));
        }
        Ok(Self { by_path })
    }

    /// The probe the kubelet asks for with `path`.
    pub fn get(&self, path: &str) -> Option<&Arc<Probe>> {
        self.by_path.get(path)
    }

    pub fn len(&self) -> usize {
        self.by_path.len()
    }

    pub fn is_empty(&self) -> bool {
        self.by_path.is_empty()
    }
}

/// `/app-health/<container>/<livez|readyz|startupz>`, the container a DNS-1123 label.
fn check_key(key: &str) -> Result<(), String> {
    let shape = || {
        format!(
            "the key must be /app-health/<container>/<{}>",
            KINDS.join("|")
        )
    };
    let rest = key.strip_prefix("/app-health/").ok_or_else(shape)?;
    let (container, kind) = rest.split_once('/').ok_or_else(shape)?;
    if !KINDS.contains(&kind) {
        return Err(shape());
    }
    if !sinew_proto::names::is_dns1123_label(container) {
        return Err(format!(
            "{container:?} is not a container name (a DNS-1123 label)"
        ));
    }
    Ok(())
}

fn probe(raw: RawProbe) -> Result<Probe, String> {
    let timeout = match raw.timeout_seconds {
        None | Some(0) => DEFAULT_TIMEOUT,
        Some(s) if s < 0 => return Err(format!("timeoutSeconds: {s} is negative")),
        Some(s) => Duration::from_secs(s as u64),
    };
    let action = match (raw.http_get, raw.tcp_socket, raw.grpc) {
        (Some(h), None, None) => Action::Http(http_get(h)?),
        (None, Some(t), None) => Action::Tcp {
            port: port("tcpSocket.port", &t.port)?,
        },
        (None, None, Some(g)) => Action::Grpc {
            port: port("grpc.port", &g.port)?,
            service: g.service.unwrap_or_default(),
        },
        (None, None, None) => return Err("one of httpGet, tcpSocket or grpc is required".into()),
        _ => return Err("only one of httpGet, tcpSocket or grpc may be set".into()),
    };
    Ok(Probe { action, timeout })
}

fn http_get(raw: RawHttpGet) -> Result<HttpGet, String> {
    let https = match raw.scheme.as_str() {
        "" | "HTTP" => false,
        "HTTPS" => true,
        other => return Err(format!("httpGet.scheme: {other:?} is not HTTP or HTTPS")),
    };
    // The kubelet asks for `/` when the path is empty, and adds the leading slash.
    let path = if raw.path.starts_with('/') {
        raw.path
    } else {
        format!("/{}", raw.path)
    };
    // Kubernetes takes any string as a path, and the kubelet (Go's url.URL) sends what a request
    // target cannot carry percent-encoded; so does the prober, rather than refusing to start or
    // sending raw bytes past ASCII (which `PathAndQuery` would take).
    let path: PathAndQuery =
        percent_encode_refused(&path)
            .parse()
            .map_err(|e: http::uri::InvalidUri| {
                let shown: String = path.chars().take(64).collect();
                format!("httpGet.path: {shown:?} ({} bytes): {e}", path.len())
            })?;
    let host = match raw.host.as_str() {
        "" => None,
        h => {
            // Whatever goes into the Host header must be a host: a name or an address (an IPv6
            // one with or without brackets, as Kubernetes accepts it), without a port.
            let address = h.parse::<std::net::IpAddr>().is_ok();
            let name = h
                .parse::<http::uri::Authority>()
                .is_ok_and(|a| a.port().is_none() && a.as_str() == h && !h.contains('@'));
            if !address && !name {
                return Err(format!("httpGet.host: {h:?} is not a host name or address"));
            }
            Some(raw.host)
        }
    };
    let mut headers = Vec::with_capacity(raw.http_headers.len());
    for (i, h) in raw.http_headers.into_iter().enumerate() {
        let name = HeaderName::from_bytes(h.name.as_bytes()).map_err(|_| {
            let shown: String = h.name.chars().take(64).collect();
            format!("httpGet.httpHeaders[{i}].name: {shown:?} is not a header name")
        })?;
        // Bytes past ASCII are fine (Kubernetes allows any string, and the kubelet sends them
        // as they are); control characters other than tab are not.
        let value = HeaderValue::from_bytes(h.value.as_bytes()).map_err(|_| {
            format!(
                "httpGet.httpHeaders[{i}].value: not a valid header value (a control character)"
            )
        })?;
        headers.push((name, value));
    }
    Ok(HttpGet {
        port: port("httpGet.port", &raw.port)?,
        path,
        https,
        host,
        headers,
    })
}

/// `path` with every byte a request target cannot carry as it is written `%XX`: controls,
/// space, bytes past ASCII, and `"` `<` `>` `\` `^` `{` `|` `}` and the backtick.
fn percent_encode_refused(path: &str) -> String {
    let mut out = String::with_capacity(path.len());
    for &b in path.as_bytes() {
        if b.is_ascii_graphic() && !b"\"<>\\^`{|}".contains(&b) {
            out.push(char::from(b));
        } else {
            out.push_str(&format!("%{b:02X}"));
        }
    }
    out
}

/// A port number (named ports are the injector's to resolve).
fn port(field: &str, v: &serde_json::Value) -> Result<u16, String> {
    match v {
        serde_json::Value::Number(n) => n
            .as_u64()
            .and_then(|n| u16::try_from(n).ok())
            .filter(|p| *p != 0)
            .ok_or_else(|| format!("{field}: {n} is not a TCP port (1-65535)")),
        serde_json::Value::String(s) => Err(format!(
            "{field}: {s:?} is a named port; the injector resolves names to numbers"
        )),
        other => Err(format!("{field}: {other} is not a port number")),
    }
}

#[cfg(test)]
mod tests;
