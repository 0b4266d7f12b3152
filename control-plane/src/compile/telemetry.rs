//! Telemetry settings per proxy: the mesh defaults (the control plane's `--otlp-endpoint`,
//! `--trace-sampling`, `--access-log`, `--access-log-encoding`) with Istio's `Telemetry`
//! resources resolved over them, as `sinew.config.v1.Telemetry`.
//!
//! Scope and precedence are Istio's ("Telemetry API: scope, inheritance and overrides"):
//! 1. the mesh defaults (the flags);
//! 2. the Telemetry without a selector in the root namespace (`--root-namespace`): mesh-wide;
//! 3. the Telemetry without a selector in the proxy's namespace: namespace-wide;
//! 4. a Telemetry with a selector in the proxy's namespace whose `matchLabels` the pod has.
//!
//! Each level overrides, field by field, only what it sets: `randomSamplingPercentage`,
//! `disableSpanReporting`, and for access logging the entry as a whole (an entry means "log",
//! unless `disabled: true`) and its `providers` when it names any. Among Telemetries of one level
//! the oldest applies (Istio calls two of them invalid; the model warns). Only the first
//! `tracing[]` and `accessLogging[]` entry of a resource is applied, and a resource attached by
//! `targetRef(s)` is not applied at all (validation warns about both).
//!
//! Promises: the access log is left unset (the proxy's own flag decides) unless `--access-log` or
//! some Telemetry says something about it; the sampling percentage is left unset (the proxy's
//! bootstrap, else 1 %) unless `--trace-sampling` or a Telemetry sets it.

use std::collections::{BTreeMap, HashMap};

use sinew_proto::config::v1 as pb;

use crate::registry::istio::telemetry::{AccessLogging, Tracing};
use crate::registry::{ENVOY_PROVIDER, Snapshot, Telemetry};

/// The mesh-wide defaults, from the control plane's flags.
#[derive(Debug, Clone, PartialEq)]
pub struct MeshTelemetry {
    /// `--otlp-endpoint`: the OTLP/gRPC collector every proxy exports to; empty: the proxy's own
    /// (its bootstrap or `SINEW_OTLP_ENDPOINT`), else none.
    pub otlp_endpoint: String,
    /// `--trace-sampling`: percent (0–100) of requests without a sampling decision that are
    /// traced; `None`: the proxy's own default (1 %, Istio's).
    pub random_sampling_percentage: Option<f64>,
    /// `--access-log`: access logging on mesh-wide (Telemetries may still turn it off).
    pub access_log: bool,
    /// `--access-log-encoding`: what the `envoy` provider writes (Istio's
    /// `meshConfig.accessLogEncoding`).
    pub access_log_encoding: pb::AccessLogEncoding,
}

impl Default for MeshTelemetry {
    fn default() -> Self {
        Self {
            otlp_endpoint: String::new(),
            random_sampling_percentage: None,
            access_log: false,
            access_log_encoding: pb::AccessLogEncoding::Text,
        }
    }
}

/// What one Telemetry resource sets, for one level of the hierarchy.
#[derive(Debug, Clone, Default, PartialEq)]
struct Layer {
    sampling: Option<f64>,
    disable_span_reporting: Option<bool>,
    access_log: Option<AccessLogLayer>,
}

/// An `accessLogging` entry: log (unless disabled) with these providers (empty: inherited).
#[derive(Debug, Clone, Default, PartialEq)]
struct AccessLogLayer {
    disabled: bool,
    providers: Vec<String>,
}

/// A selecting Telemetry: its `matchLabels` and what it sets.
type Selecting = (BTreeMap<String, String>, Layer);

/// The Telemetries of one snapshot by scope, with the mesh defaults, ready to resolve per proxy.
#[derive(Debug, Default, PartialEq)]
pub struct TelemetryRules {
    mesh: MeshTelemetry,
    /// The root namespace's selector-less Telemetry (the oldest).
    root: Option<Layer>,
    root_namespace: String,
    /// Each other namespace's selector-less Telemetry (the oldest).
    namespaces: HashMap<String, Layer>,
    /// Each namespace's selecting Telemetries, oldest first.
    workloads: HashMap<String, Vec<Selecting>>,
}

// === impl TelemetryRules ===

impl TelemetryRules {
    pub fn new(snapshot: &Snapshot, root_namespace: &str, mesh: &MeshTelemetry) -> Self {
        let mut rules = Self {
            mesh: mesh.clone(),
            root_namespace: root_namespace.to_string(),
            ..Self::default()
        };
        // Oldest first: the first of a scope stays.
        for t in snapshot.telemetries().iter().filter(|t| !t.is_targeted()) {
            let layer = layer(t);
            if t.has_selector() {
                let labels = t
                    .spec
                    .selector
                    .as_ref()
                    .and_then(|s| s.match_labels.clone())
                    .unwrap_or_default();
                rules
                    .workloads
                    .entry(t.namespace.clone())
                    .or_default()
                    .push((labels, layer));
            } else if t.namespace == root_namespace {
                rules.root.get_or_insert(layer);
            } else {
                rules.namespaces.entry(t.namespace.clone()).or_insert(layer);
            }
        }
        rules
    }

    /// The tracing and access-log settings of a proxy in `namespace` whose pod has `labels`.
    pub fn resolve(
        &self,
        namespace: &str,
        labels: &BTreeMap<String, String>,
    ) -> (pb::Tracing, Option<pb::AccessLog>) {
        let namespace_layer = match namespace == self.root_namespace {
            true => None,
            false => self.namespaces.get(namespace),
        };
        let workload_layer = self.workloads.get(namespace).and_then(|ts| {
            ts.iter()
                .find(|(sel, _)| sel.iter().all(|(k, v)| labels.get(k) == Some(v)))
                .map(|(_, layer)| layer)
        });
        let layers = [self.root.as_ref(), namespace_layer, workload_layer];

        let mut tracing = pb::Tracing {
            otlp_endpoint: self.mesh.otlp_endpoint.clone(),
            random_sampling_percentage: self.mesh.random_sampling_percentage,
            disable_span_reporting: false,
        };
        // The mesh default's provider is `envoy`: `--access-log` is Istio's `accessLogFile`.
        let mut logging = self.mesh.access_log.then(|| AccessLogLayer {
            disabled: false,
            providers: vec![ENVOY_PROVIDER.to_string()],
        });
        for layer in layers.into_iter().flatten() {
            if let Some(p) = layer.sampling {
                tracing.random_sampling_percentage = Some(p);
            }
            if let Some(d) = layer.disable_span_reporting {
                tracing.disable_span_reporting = d;
            }
            if let Some(entry) = &layer.access_log {
                let inherited = logging.take().map(|l| l.providers).unwrap_or_default();
                logging = Some(AccessLogLayer {
                    disabled: entry.disabled,
                    providers: match entry.providers.is_empty() {
                        true => inherited,
                        false => entry.providers.clone(),
                    },
                });
            }
        }
        let access_log = logging.map(|l| {
            // No provider named anywhere: Sinew's default provider is `envoy`.
            let envoy = l.providers.is_empty() || l.providers.iter().any(|p| p == ENVOY_PROVIDER);
            pb::AccessLog {
                enabled: !l.disabled && envoy,
                encoding: self.mesh.access_log_encoding as i32,
            }
        });
        (tracing, access_log)
    }

    /// A proxy's whole telemetry message: its workload, the services selecting it, and the
    /// resolved tracing and access log.
    pub fn telemetry(
        &self,
        namespace: &str,
        labels: &BTreeMap<String, String>,
        workload: Option<pb::Workload>,
        services: Vec<String>,
    ) -> pb::Telemetry {
        let (tracing, access_log) = self.resolve(namespace, labels);
        pb::Telemetry {
            workload,
            services,
            tracing: Some(tracing),
            access_log,
        }
    }
}

/// What a Telemetry sets: its first tracing and first access-logging entries.
fn layer(t: &Telemetry) -> Layer {
    let tracing: Option<&Tracing> = t.spec.tracing.as_ref().and_then(|t| t.first());
    let logging: Option<&AccessLogging> = t.spec.access_logging.as_ref().and_then(|a| a.first());
    Layer {
        sampling: tracing.and_then(|t| t.random_sampling_percentage),
        disable_span_reporting: tracing.and_then(|t| t.disable_span_reporting),
        access_log: logging.map(|a| AccessLogLayer {
            disabled: a.disabled.unwrap_or(false),
            providers: a
                .providers
                .iter()
                .flatten()
                .filter_map(|p| p.name.clone())
                .collect(),
        }),
    }
}

#[cfg(test)]
mod tests;
