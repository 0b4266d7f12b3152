//! Probe rewriting: with STRICT mTLS the kubelet's plaintext probes cannot reach the app through
//! the proxy's inbound side, so each app probe goes to the proxy's prober instead, which runs the
//! original against the app on 127.0.0.1 (Istio's `app-health`).
//!
//! What it promises:
//! - Every `httpGet`, `tcpSocket` and `grpc` liveness, readiness and startup probe of the app's
//!   containers (and of its own native sidecars, the init containers with `restartPolicy:
//!   Always`) becomes `httpGet` on port 15020, path `/app-health/<container>/<livez|readyz|startupz>`,
//!   scheme HTTP; its timing fields (`initialDelaySeconds`, `periodSeconds`, `timeoutSeconds`,
//!   `successThreshold`, `failureThreshold`, `terminationGracePeriodSeconds`) and any field this
//!   code does not know are kept as they were.
//! - The originals go to the proxy as [`AppProbers`] (`SINEW_APP_PROBERS`), named ports resolved
//!   to numbers as the kubelet resolves them (the container's own port of that name, else the
//!   name read as a number).
//! - Left alone: `exec` probes; probes with a `host` (they do not go to the pod's address, so
//!   interception never sees them); probes of the proxy's own ports; with a warning, probes whose
//!   named port cannot be resolved (the kubelet fails them too), and `httpGet` probes the prober
//!   could not send as the kubelet would (see [`unsendable`]): whatever Kubernetes lets through,
//!   the proxy accepts the `SINEW_APP_PROBERS` it is given.

use std::collections::BTreeMap;

use k8s_openapi::api::core::v1::{Container, HTTPGetAction, Probe};
use k8s_openapi::apimachinery::pkg::util::intstr::IntOrString;
use serde::{Deserialize, Serialize};
use serde_json::{Value, json};

use crate::contract::{METRICS_PORT, PROXY_PORTS};

/// The app's original probes, keyed by the prober path that now stands for each: the value of
/// `SINEW_APP_PROBERS`. Sorted, so the same pod always gets the same bytes.
pub type AppProbers = BTreeMap<String, AppProber>;

/// One original probe, as the proxy's prober runs it.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct AppProber {
    #[serde(flatten)]
    pub action: Action,
    pub timeout_seconds: i32,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub enum Action {
    HttpGet {
        path: String,
        port: u16,
        scheme: String,
        host: String,
        #[serde(rename = "httpHeaders")]
        headers: Vec<Header>,
    },
    TcpSocket {
        port: u16,
    },
    Grpc {
        port: u16,
        service: String,
    },
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Header {
    pub name: String,
    pub value: String,
}

/// Longer `httpGet` paths are left to the kubelet: a request line the prober can always build
/// (percent-encoding may triple it) and no app's health check needs more.
pub const MAX_PATH: usize = 4096;

/// The three probes and the path segment each is served under.
const KINDS: [(&str, &str); 3] = [
    ("livenessProbe", "livez"),
    ("readinessProbe", "readyz"),
    ("startupProbe", "startupz"),
];

/// Rewrites the probes of `container` (its JSON, edited in place; `typed` is the same container
/// decoded) and records the originals in `probers`.
pub fn rewrite(
    container: &mut Value,
    typed: &Container,
    probers: &mut AppProbers,
    warnings: &mut Vec<String>,
) {
    for (field, segment) in KINDS {
        let probe = match field {
            "livenessProbe" => typed.liveness_probe.as_ref(),
            "readinessProbe" => typed.readiness_probe.as_ref(),
            _ => typed.startup_probe.as_ref(),
        };
        let Some(probe) = probe else { continue };
        let action = match original(probe, typed) {
            Ok(Some(action)) => action,
            Ok(None) => continue,
            Err(why) => {
                warnings.push(format!(
                    "container {} {field} is not rewritten: {why}",
                    typed.name
                ));
                continue;
            }
        };
        let path = format!("/app-health/{}/{segment}", typed.name);
        let Some(Value::Object(json_probe)) = container.get_mut(field) else {
            continue;
        };
        json_probe.remove("tcpSocket");
        json_probe.remove("grpc");
        json_probe.insert(
            "httpGet".to_string(),
            json!({"path": path, "port": METRICS_PORT, "scheme": "HTTP"}),
        );
        probers.insert(
            path,
            AppProber {
                action,
                timeout_seconds: probe.timeout_seconds.unwrap_or(1),
            },
        );
    }
}

/// The probe's action for the prober: `Ok(None)` when it is not rewritten, `Err` when it should
/// be but cannot.
fn original(probe: &Probe, container: &Container) -> Result<Option<Action>, String> {
    if let Some(http) = &probe.http_get {
        if http.host.as_deref().is_some_and(|h| !h.is_empty()) {
            return Ok(None);
        }
        if let Some(why) = unsendable(http) {
            return Err(why);
        }
        let Some(port) = resolve(&http.port, container)? else {
            return Ok(None);
        };
        let headers = http
            .http_headers
            .iter()
            .flatten()
            .map(|h| Header {
                name: h.name.clone(),
                value: h.value.clone(),
            })
            .collect();
        let path = match http.path.as_deref() {
            None | Some("") => "/".to_string(),
            Some(p) => p.to_string(),
        };
        return Ok(Some(Action::HttpGet {
            path,
            port,
            scheme: http.scheme.clone().unwrap_or_else(|| "HTTP".to_string()),
            host: String::new(),
            headers,
        }));
    }
    if let Some(tcp) = &probe.tcp_socket {
        if tcp.host.as_deref().is_some_and(|h| !h.is_empty()) {
            return Ok(None);
        }
        let Some(port) = resolve(&tcp.port, container)? else {
            return Ok(None);
        };
        return Ok(Some(Action::TcpSocket { port }));
    }
    if let Some(grpc) = &probe.grpc {
        let Some(port) = resolve(&IntOrString::Int(grpc.port), container)? else {
            return Ok(None);
        };
        return Ok(Some(Action::Grpc {
            port,
            service: grpc.service.clone().unwrap_or_default(),
        }));
    }
    Ok(None)
}

/// Why the prober could not send this `httpGet` as the kubelet would, if so. Such a probe stays
/// as written: the API server then refuses what Kubernetes does not accept (a scheme other than
/// `HTTP`/`HTTPS`, a header name that is not a token), and the kubelet fails what it cannot send
/// (a control character in a header value), as without the mesh; a rewritten one would instead
/// stop the proxy from starting.
fn unsendable(http: &HTTPGetAction) -> Option<String> {
    let shown = |s: &str| s.chars().take(64).collect::<String>();
    if let Some(scheme) = http.scheme.as_deref()
        && !matches!(scheme, "HTTP" | "HTTPS")
    {
        return Some(format!("scheme {:?} is not HTTP or HTTPS", shown(scheme)));
    }
    if http.path.as_ref().is_some_and(|p| p.len() > MAX_PATH) {
        return Some(format!("its path is longer than {MAX_PATH} bytes"));
    }
    for h in http.http_headers.iter().flatten() {
        if h.name.is_empty() || !h.name.bytes().all(is_token_byte) {
            return Some(format!("{:?} is not an HTTP header name", shown(&h.name)));
        }
        if h.value
            .bytes()
            .any(|b| (b < 0x20 && b != b'\t') || b == 0x7f)
        {
            return Some(format!(
                "the value of header {} has a control character, which the kubelet cannot send either",
                shown(&h.name)
            ));
        }
    }
    None
}

/// RFC 9110 `tchar`: what a header name is made of.
fn is_token_byte(b: u8) -> bool {
    b.is_ascii_alphanumeric() || b"!#$%&'*+-.^_`|~".contains(&b)
}

/// The port number, as the kubelet finds it: a number, or the container's port of that name,
/// or the name read as a number. `Ok(None)`: one of the proxy's own ports, not rewritten.
fn resolve(port: &IntOrString, container: &Container) -> Result<Option<u16>, String> {
    let number = match port {
        IntOrString::Int(n) => *n,
        IntOrString::String(name) => container
            .ports
            .iter()
            .flatten()
            .find(|p| p.name.as_deref() == Some(name.as_str()))
            .map(|p| p.container_port)
            .or_else(|| name.parse().ok())
            .ok_or_else(|| format!("the container has no port named {name:?}"))?,
    };
    let port = u16::try_from(number)
        .ok()
        .filter(|p| *p > 0)
        .ok_or_else(|| format!("port {number} is not 1-65535"))?;
    Ok((!PROXY_PORTS.contains(&port)).then_some(port))
}

#[cfg(test)]
mod tests;
