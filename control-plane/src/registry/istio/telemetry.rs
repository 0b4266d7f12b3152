//! Istio's `Telemetry` schema (`telemetry/v1alpha1/telemetry.proto`, the same in
//! `telemetry.istio.io/v1` and `v1alpha1`), decoded strictly like the traffic kinds: an unknown
//! field or enum value is an error at its line. Sinew applies `selector`, `tracing[]`
//! (`randomSamplingPercentage`, `disableSpanReporting`) and `accessLogging[]` (`disabled`, the
//! `envoy` provider); every other field is typed so the validator can name it in a warning
//! (`object/validate/telemetry.rs`), never silently ignored.

use std::collections::BTreeMap;

use k8s_openapi::apimachinery::pkg::apis::meta::v1::ObjectMeta;
use serde::Deserialize;

use super::{Deserializer, EnumVisitor, WorkloadSelector};

/// A Telemetry document, whole, so every field of it is checked.
#[derive(Debug, Clone, PartialEq, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct TelemetryDoc {
    pub api_version: String,
    pub kind: String,
    pub metadata: Option<ObjectMeta>,
    pub spec: Option<TelemetrySpec>,
    pub status: Option<serde_json::Value>,
}

#[derive(Debug, Clone, PartialEq, Default, Deserialize)]
#[cfg_attr(feature = "kubernetes", derive(serde::Serialize, schemars::JsonSchema))]
#[serde(rename_all = "camelCase")]
pub struct TelemetrySpec {
    /// The workloads of the resource's namespace it applies to; none: the whole namespace (the
    /// whole mesh in the root namespace).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub selector: Option<WorkloadSelector>,
    /// Not supported: a Telemetry with one is not applied (a warning says so).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[cfg_attr(
        feature = "kubernetes",
        schemars(schema_with = "super::schema::any_object")
    )]
    pub target_ref: Option<serde_json::Value>,
    /// Not supported, like `targetRef`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[cfg_attr(
        feature = "kubernetes",
        schemars(schema_with = "super::schema::any_object_list")
    )]
    pub target_refs: Option<Vec<serde_json::Value>>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub tracing: Option<Vec<Tracing>>,
    /// Accepted and not applied (a warning says so): the proxies always report Istio's
    /// standard metrics.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub metrics: Option<Vec<Metrics>>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub access_logging: Option<Vec<AccessLogging>>,
}

#[derive(Debug, Clone, PartialEq, Default, Deserialize)]
#[cfg_attr(feature = "kubernetes", derive(serde::Serialize, schemars::JsonSchema))]
#[serde(rename_all = "camelCase")]
pub struct ProviderRef {
    #[serde(skip_serializing_if = "Option::is_none")]
    pub name: Option<String>,
}

#[derive(Debug, Clone, PartialEq, Default, Deserialize)]
#[cfg_attr(feature = "kubernetes", derive(serde::Serialize, schemars::JsonSchema))]
#[serde(rename_all = "camelCase")]
pub struct Tracing {
    /// Which direction the entry is for; Sinew has one tracing setting per proxy.
    #[serde(rename = "match", skip_serializing_if = "Option::is_none")]
    pub match_: Option<WorkloadModeSelector>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub providers: Option<Vec<ProviderRef>>,
    /// Percent (0–100) of requests without a sampling decision that are traced.
    #[serde(skip_serializing_if = "Option::is_none")]
    #[cfg_attr(feature = "kubernetes", schemars(range(min = 0.0, max = 100.0)))]
    pub random_sampling_percentage: Option<f64>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub disable_span_reporting: Option<bool>,
    /// Accepted and not applied (a warning says so).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[cfg_attr(
        feature = "kubernetes",
        schemars(schema_with = "super::schema::any_object")
    )]
    pub custom_tags: Option<serde_json::Value>,
    /// Accepted and not applied (a warning says so).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub enable_istio_tags: Option<bool>,
}

/// `tracing[].match` and `accessLogging[].match`: the direction an entry is for.
#[derive(Debug, Clone, PartialEq, Default, Deserialize)]
#[cfg_attr(feature = "kubernetes", derive(serde::Serialize, schemars::JsonSchema))]
#[serde(rename_all = "camelCase")]
pub struct WorkloadModeSelector {
    #[serde(skip_serializing_if = "Option::is_none")]
    pub mode: Option<WorkloadMode>,
}

#[derive(Debug, Clone, PartialEq, Default, Deserialize)]
#[cfg_attr(feature = "kubernetes", derive(serde::Serialize, schemars::JsonSchema))]
#[serde(rename_all = "camelCase")]
pub struct AccessLogging {
    #[serde(rename = "match", skip_serializing_if = "Option::is_none")]
    pub match_: Option<WorkloadModeSelector>,
    /// `envoy` is Envoy's built-in stdout log (Sinew's proxy access log); others are not known.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub providers: Option<Vec<ProviderRef>>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub disabled: Option<bool>,
    /// Accepted and not applied: every request is logged (a warning says so).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub filter: Option<AccessLogFilter>,
}

#[derive(Debug, Clone, PartialEq, Default, Deserialize)]
#[cfg_attr(feature = "kubernetes", derive(serde::Serialize, schemars::JsonSchema))]
#[serde(rename_all = "camelCase")]
pub struct AccessLogFilter {
    #[serde(skip_serializing_if = "Option::is_none")]
    pub expression: Option<String>,
}

#[derive(Debug, Clone, PartialEq, Default, Deserialize)]
#[cfg_attr(feature = "kubernetes", derive(serde::Serialize, schemars::JsonSchema))]
#[serde(rename_all = "camelCase")]
pub struct Metrics {
    #[serde(skip_serializing_if = "Option::is_none")]
    pub providers: Option<Vec<ProviderRef>>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub overrides: Option<Vec<MetricsOverrides>>,
    /// A duration (`15s`).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub reporting_interval: Option<String>,
}

#[derive(Debug, Clone, PartialEq, Default, Deserialize)]
#[cfg_attr(feature = "kubernetes", derive(serde::Serialize, schemars::JsonSchema))]
#[serde(rename_all = "camelCase")]
pub struct MetricsOverrides {
    #[serde(rename = "match", skip_serializing_if = "Option::is_none")]
    pub match_: Option<MetricSelector>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub disabled: Option<bool>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub tag_overrides: Option<BTreeMap<String, TagOverride>>,
}

#[derive(Debug, Clone, PartialEq, Default, Deserialize)]
#[cfg_attr(feature = "kubernetes", derive(serde::Serialize, schemars::JsonSchema))]
#[serde(rename_all = "camelCase")]
pub struct MetricSelector {
    #[serde(skip_serializing_if = "Option::is_none")]
    pub metric: Option<IstioMetric>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub custom_metric: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub mode: Option<WorkloadMode>,
}

#[derive(Debug, Clone, PartialEq, Default, Deserialize)]
#[cfg_attr(feature = "kubernetes", derive(serde::Serialize, schemars::JsonSchema))]
#[serde(rename_all = "camelCase")]
pub struct TagOverride {
    #[serde(skip_serializing_if = "Option::is_none")]
    pub operation: Option<TagOperation>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub value: Option<String>,
}

istio_enum!(WorkloadMode {
    CLIENT_AND_SERVER = 0,
    CLIENT = 1,
    SERVER = 2,
});

istio_enum!(IstioMetric {
    ALL_METRICS = 0,
    REQUEST_COUNT = 1,
    REQUEST_DURATION = 2,
    REQUEST_SIZE = 3,
    RESPONSE_SIZE = 4,
    TCP_OPENED_CONNECTIONS = 5,
    TCP_CLOSED_CONNECTIONS = 6,
    TCP_SENT_BYTES = 7,
    TCP_RECEIVED_BYTES = 8,
    GRPC_REQUEST_MESSAGES = 9,
    GRPC_RESPONSE_MESSAGES = 10,
});

istio_enum!(TagOperation {
    UPSERT = 0,
    REMOVE = 1,
});
