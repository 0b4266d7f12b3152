//! Per-pod annotations that change what is injected, each with Istio's equivalent honoured where
//! one maps:
//!
//! | annotation | Istio's | what |
//! |---|---|---|
//! | `sinew.dev/proxy-image` | `sidecar.istio.io/proxyImage` | the proxy (and init) image |
//! | `sinew.dev/proxy-cpu` | `sidecar.istio.io/proxyCPU` | proxy CPU request |
//! | `sinew.dev/proxy-cpu-limit` | `sidecar.istio.io/proxyCPULimit` | proxy CPU limit |
//! | `sinew.dev/proxy-memory` | `sidecar.istio.io/proxyMemory` | proxy memory request |
//! | `sinew.dev/proxy-memory-limit` | `sidecar.istio.io/proxyMemoryLimit` | proxy memory limit |
//! | `sinew.dev/log-level` | `sidecar.istio.io/logLevel` | `SINEW_LOG` |
//! | `sinew.dev/native-sidecar` | `sidecar.istio.io/nativeSidecar` | native sidecar or the fallback |
//! | `sinew.dev/rewrite-app-probes` | `sidecar.istio.io/rewriteAppHTTPProbers` | probe rewriting |
//! | `sinew.dev/inbound-mode` | — | `PERMISSIVE` or `STRICT` (as in local mode) |
//!
//! What it promises: a value that cannot be used is a [`Problem`] naming the annotation (the
//! pod is refused rather than given a sidecar the user did not ask for); where both spellings
//! are set, Sinew's wins, with a warning when they differ; an unknown `sinew.dev/` annotation
//! and an Istio annotation Sinew does not implement are warnings, never silently ignored.

use std::collections::BTreeMap;
use std::fmt;

use crate::quantity::Quantity;
use crate::settings::{Amounts, LOG_LEVELS, Resources, Settings};

/// A per-pod annotation whose value cannot be used.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Problem {
    pub annotation: String,
    pub reason: String,
}

impl fmt::Display for Problem {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "annotation {}: {}", self.annotation, self.reason)
    }
}

/// What the proxy accepts inbound (the proxy config's `inboundMode`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum InboundMode {
    Permissive,
    Strict,
}

impl InboundMode {
    /// The value of `sinew.dev/inbound-mode`, in any case; `None` for anything else.
    pub fn parse(value: &str) -> Option<Self> {
        match value.to_ascii_uppercase().as_str() {
            "PERMISSIVE" => Some(Self::Permissive),
            "STRICT" => Some(Self::Strict),
            _ => None,
        }
    }
}

/// The settings as they apply to one pod: the file's, with the pod's annotations over them.
#[derive(Debug, Clone, PartialEq)]
pub struct Effective {
    pub proxy_image: String,
    pub proxy_resources: Resources,
    pub log_level: String,
    pub native_sidecar: bool,
    pub rewrite_app_probes: bool,
    /// `None`: not set, the proxy's default (PERMISSIVE).
    pub inbound_mode: Option<InboundMode>,
}

/// One override: our annotation and Istio's spelling of it.
struct Knob {
    ours: &'static str,
    istio: Option<&'static str>,
}

const IMAGE: Knob = Knob {
    ours: "sinew.dev/proxy-image",
    istio: Some("sidecar.istio.io/proxyImage"),
};
const CPU: Knob = Knob {
    ours: "sinew.dev/proxy-cpu",
    istio: Some("sidecar.istio.io/proxyCPU"),
};
const CPU_LIMIT: Knob = Knob {
    ours: "sinew.dev/proxy-cpu-limit",
    istio: Some("sidecar.istio.io/proxyCPULimit"),
};
const MEMORY: Knob = Knob {
    ours: "sinew.dev/proxy-memory",
    istio: Some("sidecar.istio.io/proxyMemory"),
};
const MEMORY_LIMIT: Knob = Knob {
    ours: "sinew.dev/proxy-memory-limit",
    istio: Some("sidecar.istio.io/proxyMemoryLimit"),
};
const LOG_LEVEL: Knob = Knob {
    ours: "sinew.dev/log-level",
    istio: Some("sidecar.istio.io/logLevel"),
};
const NATIVE: Knob = Knob {
    ours: "sinew.dev/native-sidecar",
    istio: Some("sidecar.istio.io/nativeSidecar"),
};
const REWRITE: Knob = Knob {
    ours: "sinew.dev/rewrite-app-probes",
    istio: Some("sidecar.istio.io/rewriteAppHTTPProbers"),
};
const INBOUND_MODE: Knob = Knob {
    ours: "sinew.dev/inbound-mode",
    istio: None,
};

/// Every `sinew.dev/` annotation something reads (the rest are warned about as likely typos).
pub const KNOWN: [&str; 12] = [
    "sinew.dev/inject",
    "sinew.dev/status",
    "sinew.dev/skip-on-up",
    "sinew.dev/proxy-image",
    "sinew.dev/proxy-cpu",
    "sinew.dev/proxy-cpu-limit",
    "sinew.dev/proxy-memory",
    "sinew.dev/proxy-memory-limit",
    "sinew.dev/log-level",
    "sinew.dev/native-sidecar",
    "sinew.dev/rewrite-app-probes",
    "sinew.dev/inbound-mode",
];

/// Istio annotations that change what Istio injects and that Sinew does not implement.
const ISTIO_UNSUPPORTED: [&str; 7] = [
    "proxy.istio.io/config",
    "sidecar.istio.io/bootstrapOverride",
    "sidecar.istio.io/discoveryAddress",
    "sidecar.istio.io/userVolume",
    "sidecar.istio.io/userVolumeMount",
    "sidecar.istio.io/componentLogLevel",
    "inject.istio.io/templates",
];

/// The settings for a pod with these annotations, and the warnings to pass on; or every
/// annotation that cannot be used.
pub fn effective(
    settings: &Settings,
    annotations: &BTreeMap<String, String>,
    warnings: &mut Vec<String>,
) -> Result<Effective, Vec<Problem>> {
    let mut problems = Vec::new();
    let mut get = |knob: &Knob| lookup(annotations, knob, warnings);
    let image = get(&IMAGE);
    let cpu = get(&CPU);
    let cpu_limit = get(&CPU_LIMIT);
    let memory = get(&MEMORY);
    let memory_limit = get(&MEMORY_LIMIT);
    let log_level = get(&LOG_LEVEL);
    let native = get(&NATIVE);
    let rewrite = get(&REWRITE);
    let inbound = get(&INBOUND_MODE);

    let mut fail = |key: &str, reason: String| {
        problems.push(Problem {
            annotation: key.to_string(),
            reason,
        })
    };
    let proxy_image = match image {
        Some((key, v))
            if v.is_empty() || v.chars().any(|c| c.is_whitespace() || c.is_control()) =>
        {
            fail(key, format!("{v:?} is not an image reference"));
            settings.proxy_image.clone()
        }
        Some((_, v)) => v.to_string(),
        None => settings.proxy_image.clone(),
    };
    let mut quantity = |found: Option<(&str, &str)>, default: &Option<Quantity>| match found {
        Some((key, v)) => match Quantity::parse(v) {
            Ok(q) => Some((Some(key.to_string()), q)),
            Err(e) => {
                fail(key, e.to_string());
                None
            }
        },
        None => default.clone().map(|q| (None, q)),
    };
    let base = &settings.proxy_resources;
    let cpu = quantity(cpu, &base.requests.cpu);
    let cpu_limit = quantity(cpu_limit, &base.limits.cpu);
    let memory = quantity(memory, &base.requests.memory);
    let memory_limit = quantity(memory_limit, &base.limits.memory);
    for (what, request, limit) in [
        ("CPU", &cpu, &cpu_limit),
        ("memory", &memory, &memory_limit),
    ] {
        let (Some((request_key, request)), Some((limit_key, limit))) = (request, limit) else {
            continue;
        };
        if request <= limit {
            continue;
        }
        let (key, reason) = match (request_key, limit_key) {
            (_, Some(limit_key)) => (
                limit_key.clone(),
                format!("{limit} is less than the proxy's {what} request {request}"),
            ),
            (Some(request_key), None) => (
                request_key.clone(),
                format!(
                    "{request} is more than the proxy's {what} limit {limit} (the injector's setting); set a limit too"
                ),
            ),
            (None, None) => continue, // the settings were checked when read
        };
        fail(&key, reason);
    }
    let log_level = match log_level {
        Some((key, v)) => match level(v) {
            Some(level) => level.to_string(),
            None => {
                fail(
                    key,
                    format!(
                        "{v:?} is not a log level ({}; Istio's warning and critical too)",
                        LOG_LEVELS.join(", ")
                    ),
                );
                settings.log_level.clone()
            }
        },
        None => settings.log_level.clone(),
    };
    let mut flag = |found: Option<(&str, &str)>, default: bool| match found {
        Some((key, v)) => parse_bool(v).unwrap_or_else(|| {
            fail(key, format!("{v:?} is not true or false"));
            default
        }),
        None => default,
    };
    let native_sidecar = flag(native, settings.native_sidecar);
    let rewrite_app_probes = flag(rewrite, true);
    let inbound_mode = match inbound {
        Some((key, v)) => InboundMode::parse(v).or_else(|| {
            fail(key, format!("{v:?} is not PERMISSIVE or STRICT"));
            None
        }),
        None => None,
    };
    lint(annotations, warnings);
    if !problems.is_empty() {
        return Err(problems);
    }
    let amount = |q: Option<(Option<String>, Quantity)>| q.map(|(_, q)| q);
    Ok(Effective {
        proxy_image,
        proxy_resources: Resources {
            requests: Amounts {
                cpu: amount(cpu),
                memory: amount(memory),
            },
            limits: Amounts {
                cpu: amount(cpu_limit),
                memory: amount(memory_limit),
            },
        },
        log_level,
        native_sidecar,
        rewrite_app_probes,
        inbound_mode,
    })
}

/// The annotation that sets `knob` and its value: ours if set, else Istio's.
fn lookup<'a>(
    annotations: &'a BTreeMap<String, String>,
    knob: &Knob,
    warnings: &mut Vec<String>,
) -> Option<(&'static str, &'a str)> {
    let ours = annotations.get(knob.ours).map(|v| (knob.ours, v.as_str()));
    let istio = knob
        .istio
        .and_then(|key| annotations.get(key).map(|v| (key, v.as_str())));
    match (ours, istio) {
        (Some(ours), Some(istio)) => {
            if ours.1 != istio.1 {
                warnings.push(format!(
                    "annotations {} and {} disagree; {} is used",
                    ours.0, istio.0, ours.0
                ));
            }
            Some(ours)
        }
        (ours, istio) => ours.or(istio),
    }
}

/// A level `SINEW_LOG` takes, from ours or Istio's names.
fn level(v: &str) -> Option<&'static str> {
    match v {
        "warning" => Some("warn"),
        "critical" => Some("error"),
        v => LOG_LEVELS.iter().find(|l| **l == v).copied(),
    }
}

/// Go's `strconv.ParseBool`, which Istio's annotations follow.
fn parse_bool(v: &str) -> Option<bool> {
    match v {
        "1" | "t" | "T" | "true" | "TRUE" | "True" => Some(true),
        "0" | "f" | "F" | "false" | "FALSE" | "False" => Some(false),
        _ => None,
    }
}

/// Warnings for annotations that look meant for the injector but do nothing.
fn lint(annotations: &BTreeMap<String, String>, warnings: &mut Vec<String>) {
    for key in annotations.keys() {
        if key.starts_with("sinew.dev/") && !KNOWN.contains(&key.as_str()) {
            // Only near lengths can be near keys: bounds the work a pod full of long
            // annotations can cause.
            let hint = KNOWN
                .iter()
                .filter(|k| k.len().abs_diff(key.len()) <= 3)
                .map(|k| (distance(k, key), k))
                .filter(|(d, _)| *d <= 3)
                .min()
                .map(|(_, k)| format!("; did you mean {k}?"))
                .unwrap_or_default();
            warnings.push(format!("annotation {key} is not one Sinew reads{hint}"));
        }
        if ISTIO_UNSUPPORTED.contains(&key.as_str()) {
            warnings.push(format!(
                "annotation {key} is Istio's and not supported by Sinew: ignored"
            ));
        }
    }
}

/// Levenshtein distance (short strings only: annotation keys).
fn distance(a: &str, b: &str) -> usize {
    let b: Vec<char> = b.chars().take(128).collect();
    let mut row: Vec<usize> = (0..=b.len()).collect();
    for (i, ca) in a.chars().take(128).enumerate() {
        let mut diagonal = row[0];
        row[0] = i + 1;
        for (j, cb) in b.iter().enumerate() {
            let above = row[j + 1];
            row[j + 1] = (above + 1)
                .min(row[j] + 1)
                .min(diagonal + usize::from(ca != *cb));
            diagonal = above;
        }
    }
    row[b.len()]
}

#[cfg(test)]
mod tests;
