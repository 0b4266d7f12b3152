//! Istio's traffic schemas as typed Rust: the DestinationRule (Istio's
//! `networking/v1alpha3/destination_rule.proto`, the same in `v1`, `v1beta1` and our
//! `sinew.dev/v1alpha1`) here, the VirtualService in [`virtual_service`], and Istio's
//! `Telemetry` in [`telemetry`], the security kinds in [`peer_authentication`] and
//! [`authorization_policy`]. Decoded strictly once
//! per document: a field the schema does not have, or an enum value it does not list, is an error
//! naming the field and its line, where a loose read would fall back to the default
//! (`simple: ROUND_ROBBIN` would quietly balance by least requests). The decoded value is what
//! the model keeps and the policy compiler reads; `registry::validate` checks its values.
//!
//! Enum values are Istio's: case-sensitive names, or the numbers protobuf assigns them (Istio's
//! JSON decoding accepts both). Durations stay strings here as written (`1m`, `30s`); `registry::validate` checks their
//! syntax and range and [`parse_duration`] reads them.

use std::collections::BTreeMap;
use std::fmt;

use k8s_openapi::apimachinery::pkg::apis::meta::v1::ObjectMeta;
use serde::Deserialize;
use serde::de::{self, Deserializer, Visitor};

/// A DestinationRule document, whole, so every field of it is checked.
#[derive(Debug, Clone, PartialEq, Default, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct DestinationRuleDoc {
    pub api_version: String,
    pub kind: String,
    pub metadata: Option<ObjectMeta>,
    pub spec: Option<DestinationRuleSpec>,
    pub status: Option<serde_json::Value>,
}

#[derive(Debug, Clone, PartialEq, Default, Deserialize)]
#[cfg_attr(feature = "kubernetes", derive(serde::Serialize, schemars::JsonSchema))]
#[serde(rename_all = "camelCase")]
pub struct DestinationRuleSpec {
    #[serde(skip_serializing_if = "Option::is_none")]
    pub host: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub traffic_policy: Option<TrafficPolicy>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub subsets: Option<Vec<Subset>>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub export_to: Option<Vec<String>>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub workload_selector: Option<WorkloadSelector>,
}

#[derive(Debug, Clone, PartialEq, Default, Deserialize)]
#[cfg_attr(feature = "kubernetes", derive(serde::Serialize, schemars::JsonSchema))]
#[serde(rename_all = "camelCase")]
pub struct WorkloadSelector {
    #[serde(skip_serializing_if = "Option::is_none")]
    pub match_labels: Option<BTreeMap<String, String>>,
}

#[derive(Debug, Clone, PartialEq, Default, Deserialize)]
#[cfg_attr(feature = "kubernetes", derive(serde::Serialize, schemars::JsonSchema))]
#[serde(rename_all = "camelCase")]
pub struct Subset {
    #[serde(skip_serializing_if = "Option::is_none")]
    pub name: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub labels: Option<BTreeMap<String, String>>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub traffic_policy: Option<TrafficPolicy>,
}

#[derive(Debug, Clone, PartialEq, Default, Deserialize)]
#[cfg_attr(feature = "kubernetes", derive(serde::Serialize, schemars::JsonSchema))]
#[serde(rename_all = "camelCase")]
pub struct TrafficPolicy {
    #[serde(skip_serializing_if = "Option::is_none")]
    pub load_balancer: Option<LoadBalancer>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub connection_pool: Option<ConnectionPool>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub outlier_detection: Option<OutlierDetection>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub tls: Option<ClientTls>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub port_level_settings: Option<Vec<PortTrafficPolicy>>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub tunnel: Option<Tunnel>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub proxy_protocol: Option<ProxyProtocol>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub retry_budget: Option<RetryBudget>,
}

#[derive(Debug, Clone, PartialEq, Default, Deserialize)]
#[cfg_attr(feature = "kubernetes", derive(serde::Serialize, schemars::JsonSchema))]
#[serde(rename_all = "camelCase")]
pub struct PortTrafficPolicy {
    #[serde(skip_serializing_if = "Option::is_none")]
    pub port: Option<PortSelector>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub load_balancer: Option<LoadBalancer>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub connection_pool: Option<ConnectionPool>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub outlier_detection: Option<OutlierDetection>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub tls: Option<ClientTls>,
}

#[derive(Debug, Clone, PartialEq, Default, Deserialize)]
#[cfg_attr(feature = "kubernetes", derive(serde::Serialize, schemars::JsonSchema))]
pub struct PortSelector {
    #[serde(skip_serializing_if = "Option::is_none")]
    pub number: Option<u32>,
}

#[derive(Debug, Clone, PartialEq, Default, Deserialize)]
#[cfg_attr(feature = "kubernetes", derive(serde::Serialize, schemars::JsonSchema))]
#[serde(rename_all = "camelCase")]
pub struct LoadBalancer {
    #[serde(skip_serializing_if = "Option::is_none")]
    pub simple: Option<SimpleLb>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub consistent_hash: Option<ConsistentHash>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub locality_lb_setting: Option<LocalityLb>,
    // Newer than our reference's field list is detailed: checked for presence only.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[cfg_attr(feature = "kubernetes", schemars(schema_with = "schema::any_object"))]
    pub zone_aware_lb_setting: Option<serde_json::Value>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub warmup_duration_secs: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub warmup: Option<Warmup>,
}

#[derive(Debug, Clone, PartialEq, Default, Deserialize)]
#[cfg_attr(feature = "kubernetes", derive(serde::Serialize, schemars::JsonSchema))]
#[serde(rename_all = "camelCase")]
pub struct ConsistentHash {
    #[serde(skip_serializing_if = "Option::is_none")]
    pub http_header_name: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub http_cookie: Option<HttpCookie>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub use_source_ip: Option<bool>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub http_query_parameter_name: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub ring_hash: Option<RingHash>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub maglev: Option<Maglev>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub minimum_ring_size: Option<u64>,
}

#[derive(Debug, Clone, PartialEq, Default, Deserialize)]
#[cfg_attr(feature = "kubernetes", derive(serde::Serialize, schemars::JsonSchema))]
pub struct HttpCookie {
    #[serde(skip_serializing_if = "Option::is_none")]
    pub name: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub path: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub ttl: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub attributes: Option<Vec<CookieAttribute>>,
}

#[derive(Debug, Clone, PartialEq, Default, Deserialize)]
#[cfg_attr(feature = "kubernetes", derive(serde::Serialize, schemars::JsonSchema))]
pub struct CookieAttribute {
    #[serde(skip_serializing_if = "Option::is_none")]
    pub name: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub value: Option<String>,
}

#[derive(Debug, Clone, PartialEq, Default, Deserialize)]
#[cfg_attr(feature = "kubernetes", derive(serde::Serialize, schemars::JsonSchema))]
#[serde(rename_all = "camelCase")]
pub struct RingHash {
    #[serde(skip_serializing_if = "Option::is_none")]
    pub minimum_ring_size: Option<u64>,
}

#[derive(Debug, Clone, PartialEq, Default, Deserialize)]
#[cfg_attr(feature = "kubernetes", derive(serde::Serialize, schemars::JsonSchema))]
#[serde(rename_all = "camelCase")]
pub struct Maglev {
    #[serde(skip_serializing_if = "Option::is_none")]
    pub table_size: Option<u64>,
}

#[derive(Debug, Clone, PartialEq, Default, Deserialize)]
#[cfg_attr(feature = "kubernetes", derive(serde::Serialize, schemars::JsonSchema))]
#[serde(rename_all = "camelCase")]
pub struct LocalityLb {
    #[serde(skip_serializing_if = "Option::is_none")]
    pub distribute: Option<Vec<LocalityDistribute>>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub failover: Option<Vec<LocalityFailover>>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub failover_priority: Option<Vec<String>>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub enabled: Option<bool>,
}

#[derive(Debug, Clone, PartialEq, Default, Deserialize)]
#[cfg_attr(feature = "kubernetes", derive(serde::Serialize, schemars::JsonSchema))]
pub struct LocalityDistribute {
    #[serde(skip_serializing_if = "Option::is_none")]
    pub from: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub to: Option<BTreeMap<String, u32>>,
}

#[derive(Debug, Clone, PartialEq, Default, Deserialize)]
#[cfg_attr(feature = "kubernetes", derive(serde::Serialize, schemars::JsonSchema))]
pub struct LocalityFailover {
    #[serde(skip_serializing_if = "Option::is_none")]
    pub from: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub to: Option<String>,
}

#[derive(Debug, Clone, PartialEq, Default, Deserialize)]
#[cfg_attr(feature = "kubernetes", derive(serde::Serialize, schemars::JsonSchema))]
#[serde(rename_all = "camelCase")]
pub struct Warmup {
    #[serde(skip_serializing_if = "Option::is_none")]
    pub duration: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub minimum_percent: Option<f64>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub aggression: Option<f64>,
}

#[derive(Debug, Clone, PartialEq, Default, Deserialize)]
#[cfg_attr(feature = "kubernetes", derive(serde::Serialize, schemars::JsonSchema))]
#[serde(rename_all = "camelCase")]
pub struct ConnectionPool {
    #[serde(skip_serializing_if = "Option::is_none")]
    pub tcp: Option<TcpSettings>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub http: Option<HttpSettings>,
}

#[derive(Debug, Clone, PartialEq, Default, Deserialize)]
#[cfg_attr(feature = "kubernetes", derive(serde::Serialize, schemars::JsonSchema))]
#[serde(rename_all = "camelCase")]
pub struct TcpSettings {
    #[serde(skip_serializing_if = "Option::is_none")]
    pub max_connections: Option<i32>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub connect_timeout: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub tcp_keepalive: Option<TcpKeepalive>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub max_connection_duration: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub idle_timeout: Option<String>,
}

#[derive(Debug, Clone, PartialEq, Default, Deserialize)]
#[cfg_attr(feature = "kubernetes", derive(serde::Serialize, schemars::JsonSchema))]
pub struct TcpKeepalive {
    #[serde(skip_serializing_if = "Option::is_none")]
    pub probes: Option<u32>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub time: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub interval: Option<String>,
}

#[derive(Debug, Clone, PartialEq, Default, Deserialize)]
#[cfg_attr(feature = "kubernetes", derive(serde::Serialize, schemars::JsonSchema))]
#[serde(rename_all = "camelCase")]
pub struct HttpSettings {
    #[serde(skip_serializing_if = "Option::is_none")]
    pub http1_max_pending_requests: Option<i32>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub http2_max_requests: Option<i32>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub max_requests_per_connection: Option<i32>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub max_retries: Option<i32>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub idle_timeout: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub h2_upgrade_policy: Option<H2UpgradePolicy>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub use_client_protocol: Option<bool>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub max_concurrent_streams: Option<i32>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub http2_keep_alive: Option<Http2KeepAlive>,
}

#[derive(Debug, Clone, PartialEq, Default, Deserialize)]
#[cfg_attr(feature = "kubernetes", derive(serde::Serialize, schemars::JsonSchema))]
pub struct Http2KeepAlive {
    #[serde(skip_serializing_if = "Option::is_none")]
    pub interval: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub timeout: Option<String>,
}

#[derive(Debug, Clone, PartialEq, Default, Deserialize)]
#[cfg_attr(feature = "kubernetes", derive(serde::Serialize, schemars::JsonSchema))]
#[serde(rename_all = "camelCase")]
pub struct OutlierDetection {
    #[serde(skip_serializing_if = "Option::is_none")]
    pub consecutive_errors: Option<i32>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub split_external_local_origin_errors: Option<bool>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub consecutive_local_origin_failures: Option<u32>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub consecutive_gateway_errors: Option<u32>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub consecutive_5xx_errors: Option<u32>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub interval: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub base_ejection_time: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub max_ejection_percent: Option<i32>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub min_health_percent: Option<i32>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub outlier_detection_http_error_codes: Option<Vec<u32>>,
}

#[derive(Debug, Clone, PartialEq, Default, Deserialize)]
#[cfg_attr(feature = "kubernetes", derive(serde::Serialize, schemars::JsonSchema))]
#[serde(rename_all = "camelCase")]
pub struct ClientTls {
    #[serde(skip_serializing_if = "Option::is_none")]
    pub mode: Option<TlsMode>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub client_certificate: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub private_key: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub ca_certificates: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub credential_name: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub subject_alt_names: Option<Vec<String>>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub sni: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub insecure_skip_verify: Option<bool>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub ca_crl: Option<String>,
}

#[derive(Debug, Clone, PartialEq, Default, Deserialize)]
#[cfg_attr(feature = "kubernetes", derive(serde::Serialize, schemars::JsonSchema))]
#[serde(rename_all = "camelCase")]
pub struct Tunnel {
    #[serde(skip_serializing_if = "Option::is_none")]
    pub protocol: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub target_host: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub target_port: Option<u32>,
}

#[derive(Debug, Clone, PartialEq, Default, Deserialize)]
#[cfg_attr(feature = "kubernetes", derive(serde::Serialize, schemars::JsonSchema))]
pub struct ProxyProtocol {
    #[serde(skip_serializing_if = "Option::is_none")]
    pub version: Option<ProxyProtocolVersion>,
}

#[derive(Debug, Clone, PartialEq, Default, Deserialize)]
#[cfg_attr(feature = "kubernetes", derive(serde::Serialize, schemars::JsonSchema))]
#[serde(rename_all = "camelCase")]
pub struct RetryBudget {
    #[serde(skip_serializing_if = "Option::is_none")]
    pub percent: Option<f64>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub min_retry_concurrency: Option<u32>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub budget_interval: Option<String>,
}

/// A protobuf enum as Istio reads it from YAML: one of its names, exactly, or its number.
/// Names are listed in the order messages show them.
macro_rules! istio_enum {
    ($name:ident { $($variant:ident = $number:literal),+ $(,)? }) => {
        #[allow(non_camel_case_types, clippy::upper_case_acronyms)]
        #[derive(Debug, Clone, Copy, PartialEq, Eq)]
        pub enum $name { $($variant),+ }

        impl $name {
            const NAMES: &'static [&'static str] = &[$(stringify!($variant)),+];

            fn from_name(s: &str) -> Option<Self> {
                match s { $(stringify!($variant) => Some(Self::$variant),)+ _ => None }
            }

            fn from_number(n: i64) -> Option<Self> {
                match n { $($number => Some(Self::$variant),)+ _ => None }
            }
        }

        impl<'de> Deserialize<'de> for $name {
            fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
                d.deserialize_any(EnumVisitor::<Self>::new(Self::NAMES, Self::from_name, Self::from_number))
            }
        }

        // Written back by name, the form Istio's own tools write.
        #[cfg(feature = "kubernetes")]
        impl serde::Serialize for $name {
            fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
                let name = match self { $(Self::$variant => stringify!($variant)),+ };
                s.serialize_str(name)
            }
        }

        #[cfg(feature = "kubernetes")]
        impl schemars::JsonSchema for $name {
            fn inline_schema() -> bool {
                true
            }

            fn schema_name() -> std::borrow::Cow<'static, str> {
                stringify!($name).into()
            }

            fn json_schema(_: &mut schemars::SchemaGenerator) -> schemars::Schema {
                $crate::registry::istio::schema::names(Self::NAMES)
            }
        }
    };
}

istio_enum!(SimpleLb {
    UNSPECIFIED = 0,
    LEAST_REQUEST = 5,
    RANDOM = 2,
    PASSTHROUGH = 3,
    ROUND_ROBIN = 4,
    LEAST_CONN = 1,
});

istio_enum!(TlsMode {
    DISABLE = 0,
    SIMPLE = 1,
    MUTUAL = 2,
    ISTIO_MUTUAL = 3,
});

istio_enum!(H2UpgradePolicy {
    DEFAULT = 0,
    DO_NOT_UPGRADE = 1,
    UPGRADE = 2,
});

istio_enum!(ProxyProtocolVersion { V1 = 0, V2 = 1 });

struct EnumVisitor<T> {
    names: &'static [&'static str],
    from_name: fn(&str) -> Option<T>,
    from_number: fn(i64) -> Option<T>,
}

impl<T> EnumVisitor<T> {
    fn new(
        names: &'static [&'static str],
        from_name: fn(&str) -> Option<T>,
        from_number: fn(i64) -> Option<T>,
    ) -> Self {
        Self {
            names,
            from_name,
            from_number,
        }
    }

    fn unknown<E: de::Error>(&self, shown: impl fmt::Display) -> E {
        E::custom(format!(
            "unknown value {shown}; expected one of {}",
            self.names.join(", ")
        ))
    }
}

impl<T> Visitor<'_> for EnumVisitor<T> {
    type Value = T;

    fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "one of {}", self.names.join(", "))
    }

    fn visit_str<E: de::Error>(self, v: &str) -> Result<T, E> {
        (self.from_name)(v).ok_or_else(|| self.unknown(format_args!("{v:?}")))
    }

    fn visit_i64<E: de::Error>(self, v: i64) -> Result<T, E> {
        (self.from_number)(v).ok_or_else(|| self.unknown(v))
    }

    fn visit_u64<E: de::Error>(self, v: u64) -> Result<T, E> {
        i64::try_from(v)
            .ok()
            .and_then(self.from_number)
            .ok_or_else(|| self.unknown(v))
    }
}

/// A duration as Istio's YAML writes it (Go's syntax: `1m`, `1.5s`, `1h30m`, `250ms`; `0` alone
/// is zero). `None` when it does not parse or is negative.
pub fn parse_duration(s: &str) -> Option<std::time::Duration> {
    let s = s.trim();
    if s == "0" {
        return Some(std::time::Duration::ZERO);
    }
    if s.is_empty() || s.starts_with('-') {
        return None;
    }
    let mut rest = s.strip_prefix('+').unwrap_or(s);
    let mut nanos: f64 = 0.0;
    while !rest.is_empty() {
        let digits = rest
            .find(|c: char| !(c.is_ascii_digit() || c == '.'))
            .unwrap_or(rest.len());
        let (number, tail) = rest.split_at(digits);
        let number: f64 = number.parse().ok()?;
        let unit_len = tail
            .find(|c: char| c.is_ascii_digit() || c == '.')
            .unwrap_or(tail.len());
        let (unit, tail) = tail.split_at(unit_len);
        let scale = match unit {
            "ns" => 1.0,
            "us" | "\u{b5}s" | "\u{3bc}s" => 1e3,
            "ms" => 1e6,
            "s" => 1e9,
            "m" => 60e9,
            "h" => 3600e9,
            _ => return None,
        };
        nanos += number * scale;
        rest = tail;
    }
    // Whole nanoseconds: `0.1s` must not become 99,999,999 ns.
    Some(std::time::Duration::from_nanos(nanos.round() as u64))
}

pub mod authorization_policy;
pub mod peer_authentication;
pub mod telemetry;
pub mod virtual_service;

/// Schemas for the parts the derive cannot see: enum names, loosely typed objects.
#[cfg(feature = "kubernetes")]
pub(crate) mod schema {
    use schemars::{Schema, SchemaGenerator, json_schema};

    /// An Istio enum as its CRD has it: a string, one of the names. Our decoder also takes the
    /// protobuf numbers, as Istio's does; Istio's CRDs refuse them too, so kubectl users never
    /// depend on them.
    pub(crate) fn names(names: &[&str]) -> Schema {
        json_schema!({ "type": "string", "enum": names })
    }

    /// A field Sinew keeps as raw JSON (accepted with a warning, or refused by name by
    /// validation): any object, its fields kept as written so the refusal can name them.
    pub(crate) fn any_object(_: &mut SchemaGenerator) -> Schema {
        json_schema!({ "type": "object", "x-kubernetes-preserve-unknown-fields": true, "nullable": true })
    }

    /// A list of [`any_object`]s.
    pub(crate) fn any_object_list(generator: &mut SchemaGenerator) -> Schema {
        json_schema!({ "type": "array", "items": any_object(generator), "nullable": true })
    }
}
