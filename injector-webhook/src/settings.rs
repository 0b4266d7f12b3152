//! The injector's settings: the file the control plane reads with `--injector-config` (the chart
//! renders it from its values into the ConfigMap `sinew-injector`, key `config.yaml`) and
//! `sinewctl kube-inject --injector-config` reads too.
//!
//! What it promises: [`Settings::from_yaml`] either returns settings whose every value is usable
//! (an image name, a pull policy Kubernetes knows, a `host:port`, quantities with each request at
//! most its limit, a sampling percentage, CIDRs) or says which field is wrong; an unknown field is
//! an error naming it, so a typo never silently falls back to a default. Every field is optional;
//! [`Settings::default`] holds the defaults docs/injection.md lists.

use std::collections::BTreeMap;
use std::net::IpAddr;

use serde::{Deserialize, Serialize};

use crate::quantity::Quantity;

/// The validated settings.
#[derive(Debug, Clone, PartialEq)]
pub struct Settings {
    pub proxy_image: String,
    pub image_pull_policy: String,
    pub control_plane_address: String,
    pub control_plane_identity: String,
    pub trust_domain: String,
    /// `true`: the proxy is a native sidecar (init container with `restartPolicy: Always`,
    /// Kubernetes 1.29+); `false`: a regular container holding the app's start in `postStart`.
    pub native_sidecar: bool,
    pub log_level: String,
    pub proxy_resources: Resources,
    pub init_resources: Resources,
    pub tracing: Tracing,
    pub mesh_address_ranges: Vec<String>,
}

/// Requests and limits for CPU and memory; an absent one is not set on the container.
#[derive(Debug, Clone, PartialEq, Default)]
pub struct Resources {
    pub requests: Amounts,
    pub limits: Amounts,
}

#[derive(Debug, Clone, PartialEq, Default)]
pub struct Amounts {
    pub cpu: Option<Quantity>,
    pub memory: Option<Quantity>,
}

#[derive(Debug, Clone, PartialEq)]
pub struct Tracing {
    /// The OTLP endpoint the proxy exports spans to; empty: none.
    pub endpoint: String,
    /// The percentage of new traces sampled, 0 to 100, as Istio's `randomSamplingPercentage` and
    /// meshConfig `defaultConfig.tracing.sampling` (1.0: one request in a hundred; 100: every
    /// request). Never `-0.0`.
    pub sampling: f64,
}

/// Why the settings cannot be used: every problem, each naming its field.
#[derive(Debug, thiserror::Error)]
pub enum SettingsError {
    #[error("{0}")]
    Yaml(String),
    #[error("{}", .0.join("; "))]
    Invalid(Vec<String>),
}

/// Log levels the proxy's `SINEW_LOG` takes as a plain level.
pub const LOG_LEVELS: [&str; 6] = ["trace", "debug", "info", "warn", "error", "off"];
const PULL_POLICIES: [&str; 3] = ["Always", "IfNotPresent", "Never"];
/// `tracing.sampling` is a percentage (NaN and the infinities are out of range too).
const MAX_SAMPLING: f64 = 100.0;

// === impl Settings ===

impl Default for Settings {
    fn default() -> Settings {
        Settings::validate(File::default()).expect("invariant: the defaults are valid")
    }
}

impl Settings {
    /// Reads the YAML file's text (empty text: the defaults).
    pub fn from_yaml(text: &str) -> Result<Settings, SettingsError> {
        let file: File = if text.trim().is_empty() {
            File::default()
        } else {
            let options = serde_saphyr::options! { with_snippet: false };
            serde_saphyr::from_str_with_options::<Option<File>>(text, options)
                .map_err(|e| SettingsError::Yaml(e.to_string()))?
                .unwrap_or_default()
        };
        Settings::validate(file)
    }

    fn validate(file: File) -> Result<Settings, SettingsError> {
        let mut problems = Vec::new();
        let mut check = |ok: bool, problem: String| {
            if !ok {
                problems.push(problem);
            }
        };
        check(
            is_image(&file.proxy_image),
            format!(
                "proxyImage: {:?} is not an image reference",
                file.proxy_image
            ),
        );
        check(
            PULL_POLICIES.contains(&file.image_pull_policy.as_str()),
            format!(
                "imagePullPolicy: {:?} is not one of {}",
                file.image_pull_policy,
                PULL_POLICIES.join(", ")
            ),
        );
        check(
            is_host_port(&file.control_plane_address),
            format!(
                "controlPlaneAddress: {:?} is not host:port",
                file.control_plane_address
            ),
        );
        check(
            is_dns_name(&file.trust_domain),
            format!("trustDomain: {:?} is not a DNS name", file.trust_domain),
        );
        let identity = file.control_plane_identity.clone().unwrap_or_else(|| {
            format!(
                "spiffe://{}/ns/sinew-system/sa/sinew-control-plane",
                file.trust_domain
            )
        });
        check(
            identity.starts_with("spiffe://") && identity.len() > "spiffe://".len(),
            format!("controlPlaneIdentity: {identity:?} is not a spiffe:// URI"),
        );
        check(
            LOG_LEVELS.contains(&file.log_level.as_str()),
            format!(
                "logLevel: {:?} is not one of {}",
                file.log_level,
                LOG_LEVELS.join(", ")
            ),
        );
        check(
            (0.0..=MAX_SAMPLING).contains(&file.tracing.sampling),
            format!(
                "tracing.sampling: {} is not a percentage from 0 to 100 (1.0 samples one request in a hundred, 100 every request)",
                file.tracing.sampling
            ),
        );
        check(
            !file.tracing.endpoint.chars().any(char::is_whitespace),
            format!(
                "tracing.endpoint: {:?} contains whitespace",
                file.tracing.endpoint
            ),
        );
        for (i, range) in file.mesh_address_ranges.iter().enumerate() {
            check(
                is_cidr(range),
                format!("meshAddressRanges[{i}]: {range:?} is not a CIDR (10.96.0.0/12)"),
            );
        }
        let proxy_resources = resources("proxyResources", &file.proxy_resources, &mut problems);
        let init_resources = resources("initResources", &file.init_resources, &mut problems);
        if !problems.is_empty() {
            return Err(SettingsError::Invalid(problems));
        }
        Ok(Settings {
            proxy_image: file.proxy_image,
            image_pull_policy: file.image_pull_policy,
            control_plane_address: file.control_plane_address,
            control_plane_identity: identity,
            trust_domain: file.trust_domain,
            native_sidecar: file.native_sidecar,
            log_level: file.log_level,
            proxy_resources,
            init_resources,
            tracing: Tracing {
                endpoint: file.tracing.endpoint,
                // -0.0 is in range, but would reach the proxy as "-0".
                sampling: if file.tracing.sampling == 0.0 {
                    0.0
                } else {
                    file.tracing.sampling
                },
            },
            mesh_address_ranges: file.mesh_address_ranges,
        })
    }
}

/// Checks one resources block: quantities, and each request at most its limit.
fn resources(field: &str, raw: &RawResources, problems: &mut Vec<String>) -> Resources {
    let mut amounts = |kind: &str, raw: &BTreeMap<String, Scalar>| {
        let mut out = Amounts::default();
        for (name, value) in raw {
            let value = value.text();
            let place = format!("{field}.{kind}.{name}");
            let slot = match name.as_str() {
                "cpu" => &mut out.cpu,
                "memory" => &mut out.memory,
                _ => {
                    problems.push(format!("{place}: only cpu and memory are set on the proxy"));
                    continue;
                }
            };
            match Quantity::parse(&value) {
                Ok(q) => *slot = Some(q),
                Err(e) => problems.push(format!("{place}: {e}")),
            }
        }
        out
    };
    let requests = amounts("requests", &raw.requests);
    let limits = amounts("limits", &raw.limits);
    for (name, request, limit) in [
        ("cpu", &requests.cpu, &limits.cpu),
        ("memory", &requests.memory, &limits.memory),
    ] {
        if let (Some(request), Some(limit)) = (request, limit)
            && request > limit
        {
            problems.push(format!(
                "{field}.requests.{name}: {request} is more than the limit {limit}"
            ));
        }
    }
    Resources { requests, limits }
}

/// `registry/name:tag` or `…@sha256:…`: no whitespace, nothing empty. The registry decides
/// the rest.
fn is_image(s: &str) -> bool {
    !s.is_empty() && s.len() <= 512 && !s.chars().any(|c| c.is_whitespace() || c.is_control())
}

fn is_host_port(s: &str) -> bool {
    let Some((host, port)) = s.rsplit_once(':') else {
        return false;
    };
    let host = host
        .strip_prefix('[')
        .and_then(|h| h.strip_suffix(']'))
        .unwrap_or(host);
    let port_ok = !port.is_empty()
        && port.bytes().all(|b| b.is_ascii_digit())
        && port.parse::<u16>().is_ok_and(|p| p > 0);
    port_ok && (host.parse::<IpAddr>().is_ok() || is_dns_name(host))
}

fn is_dns_name(s: &str) -> bool {
    !s.is_empty()
        && s.len() <= 253
        && s.split('.').all(|label| {
            !label.is_empty()
                && label.len() <= 63
                && label
                    .bytes()
                    .all(|b| b.is_ascii_alphanumeric() || b == b'-')
                && !label.starts_with('-')
                && !label.ends_with('-')
        })
}

pub(crate) fn is_cidr(s: &str) -> bool {
    let Some((address, prefix)) = s.split_once('/') else {
        return false;
    };
    let Ok(address) = address.parse::<IpAddr>() else {
        return false;
    };
    let max = if address.is_ipv4() { 32 } else { 128 };
    !prefix.is_empty()
        && prefix.bytes().all(|b| b.is_ascii_digit())
        && prefix.parse::<u8>().is_ok_and(|p| p <= max)
}

// === the file ===

/// The file as written (camelCase, every field optional, unknown fields refused).
#[derive(Debug, Deserialize, Serialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields, default)]
struct File {
    proxy_image: String,
    image_pull_policy: String,
    control_plane_address: String,
    /// Default: the control plane's identity in `trustDomain`.
    control_plane_identity: Option<String>,
    trust_domain: String,
    native_sidecar: bool,
    log_level: String,
    proxy_resources: RawResources,
    init_resources: RawResources,
    tracing: RawTracing,
    mesh_address_ranges: Vec<String>,
}

/// A resources block replaces the default whole: an absent request or limit is not set.
#[derive(Debug, Deserialize, Serialize, Default)]
#[serde(deny_unknown_fields)]
struct RawResources {
    #[serde(default)]
    requests: BTreeMap<String, Scalar>,
    #[serde(default)]
    limits: BTreeMap<String, Scalar>,
}

/// A quantity as YAML may type it: `cpu: 2` is a number, `cpu: 250m` a string.
#[derive(Debug, Deserialize, Serialize)]
#[serde(untagged)]
enum Scalar {
    Text(String),
    Whole(u64),
    Real(f64),
}

impl Scalar {
    fn text(&self) -> String {
        match self {
            Scalar::Text(s) => s.clone(),
            Scalar::Whole(n) => n.to_string(),
            Scalar::Real(x) => x.to_string(),
        }
    }
}

#[derive(Debug, Deserialize, Serialize)]
#[serde(deny_unknown_fields, default)]
struct RawTracing {
    endpoint: String,
    sampling: f64,
}

impl Default for File {
    fn default() -> File {
        let amounts = |pairs: [(&str, &str); 2]| {
            pairs
                .iter()
                .map(|(k, v)| (k.to_string(), Scalar::Text(v.to_string())))
                .collect()
        };
        File {
            proxy_image: "ghcr.io/sinew-mesh/sinew-proxy:0.1.0".into(),
            image_pull_policy: "IfNotPresent".into(),
            control_plane_address: "sinew-control-plane.sinew-system.svc:15012".into(),
            control_plane_identity: None,
            trust_domain: "cluster.local".into(),
            native_sidecar: true,
            log_level: "info".into(),
            proxy_resources: RawResources {
                requests: amounts([("cpu", "10m"), ("memory", "40Mi")]),
                limits: amounts([("cpu", "2"), ("memory", "256Mi")]),
            },
            init_resources: RawResources {
                requests: amounts([("cpu", "10m"), ("memory", "10Mi")]),
                limits: amounts([("cpu", "100m"), ("memory", "50Mi")]),
            },
            tracing: RawTracing::default(),
            mesh_address_ranges: Vec::new(),
        }
    }
}

impl Default for RawTracing {
    fn default() -> RawTracing {
        RawTracing {
            endpoint: String::new(),
            sampling: 1.0,
        }
    }
}

#[cfg(test)]
mod tests;
