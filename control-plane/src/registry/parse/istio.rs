//! The DestinationRule schema (Istio's `networking/v1alpha3/destination_rule.proto`, the same in
//! `v1`, `v1beta1` and our `sinew.dev/v1alpha1`), typed only to be checked strictly: a field the
//! schema does not have, or an enum value it does not list, is an error naming the field and its
//! line, where a loose read would fall back to the default (`simple: ROUND_ROBBIN` would quietly
//! balance by least requests). The rule itself is kept as written for the compiler.
//!
//! Enum values are Istio's: case-sensitive names, or the numbers protobuf assigns them (Istio's
//! JSON decoding accepts both). Durations stay strings here; their syntax is the compiler's.

use std::collections::BTreeMap;
use std::fmt;

use k8s_openapi::apimachinery::pkg::apis::meta::v1::ObjectMeta;
use serde::Deserialize;
use serde::de::{self, Deserializer, Visitor};

/// A DestinationRule document, whole, so every field of it is checked.
#[allow(dead_code)] // Read only by the decoder: what matters is what it refuses.
#[derive(Debug, Deserialize)]
#[serde(rename_all = "camelCase")]
pub(super) struct DestinationRuleDoc {
    api_version: String,
    kind: String,
    metadata: Option<ObjectMeta>,
    spec: Option<Spec>,
    status: Option<serde_json::Value>,
}

#[allow(dead_code)]
#[derive(Debug, Deserialize)]
#[serde(rename_all = "camelCase")]
struct Spec {
    host: Option<String>,
    traffic_policy: Option<TrafficPolicy>,
    subsets: Option<Vec<Subset>>,
    export_to: Option<Vec<String>>,
    workload_selector: Option<WorkloadSelector>,
}

#[allow(dead_code)]
#[derive(Debug, Deserialize)]
#[serde(rename_all = "camelCase")]
struct WorkloadSelector {
    match_labels: Option<BTreeMap<String, String>>,
}

#[allow(dead_code)]
#[derive(Debug, Deserialize)]
#[serde(rename_all = "camelCase")]
struct Subset {
    name: Option<String>,
    labels: Option<BTreeMap<String, String>>,
    traffic_policy: Option<TrafficPolicy>,
}

#[allow(dead_code)]
#[derive(Debug, Deserialize)]
#[serde(rename_all = "camelCase")]
struct TrafficPolicy {
    load_balancer: Option<LoadBalancer>,
    connection_pool: Option<ConnectionPool>,
    outlier_detection: Option<OutlierDetection>,
    tls: Option<ClientTls>,
    port_level_settings: Option<Vec<PortTrafficPolicy>>,
    tunnel: Option<Tunnel>,
    proxy_protocol: Option<ProxyProtocol>,
    retry_budget: Option<RetryBudget>,
}

#[allow(dead_code)]
#[derive(Debug, Deserialize)]
#[serde(rename_all = "camelCase")]
struct PortTrafficPolicy {
    port: Option<PortSelector>,
    load_balancer: Option<LoadBalancer>,
    connection_pool: Option<ConnectionPool>,
    outlier_detection: Option<OutlierDetection>,
    tls: Option<ClientTls>,
}

#[allow(dead_code)]
#[derive(Debug, Deserialize)]
struct PortSelector {
    number: Option<u32>,
}

#[allow(dead_code)]
#[derive(Debug, Deserialize)]
#[serde(rename_all = "camelCase")]
struct LoadBalancer {
    simple: Option<SimpleLb>,
    consistent_hash: Option<ConsistentHash>,
    locality_lb_setting: Option<LocalityLb>,
    // Newer than our reference's field list is detailed: checked for presence only.
    zone_aware_lb_setting: Option<serde_json::Value>,
    warmup_duration_secs: Option<String>,
    warmup: Option<Warmup>,
}

#[allow(dead_code)]
#[derive(Debug, Deserialize)]
#[serde(rename_all = "camelCase")]
struct ConsistentHash {
    http_header_name: Option<String>,
    http_cookie: Option<HttpCookie>,
    use_source_ip: Option<bool>,
    http_query_parameter_name: Option<String>,
    ring_hash: Option<RingHash>,
    maglev: Option<Maglev>,
    minimum_ring_size: Option<u64>,
}

#[allow(dead_code)]
#[derive(Debug, Deserialize)]
struct HttpCookie {
    name: Option<String>,
    path: Option<String>,
    ttl: Option<String>,
    attributes: Option<Vec<CookieAttribute>>,
}

#[allow(dead_code)]
#[derive(Debug, Deserialize)]
struct CookieAttribute {
    name: Option<String>,
    value: Option<String>,
}

#[allow(dead_code)]
#[derive(Debug, Deserialize)]
#[serde(rename_all = "camelCase")]
struct RingHash {
    minimum_ring_size: Option<u64>,
}

#[allow(dead_code)]
#[derive(Debug, Deserialize)]
#[serde(rename_all = "camelCase")]
struct Maglev {
    table_size: Option<u64>,
}

#[allow(dead_code)]
#[derive(Debug, Deserialize)]
#[serde(rename_all = "camelCase")]
struct LocalityLb {
    distribute: Option<Vec<LocalityDistribute>>,
    failover: Option<Vec<LocalityFailover>>,
    failover_priority: Option<Vec<String>>,
    enabled: Option<bool>,
}

#[allow(dead_code)]
#[derive(Debug, Deserialize)]
struct LocalityDistribute {
    from: Option<String>,
    to: Option<BTreeMap<String, u32>>,
}

#[allow(dead_code)]
#[derive(Debug, Deserialize)]
struct LocalityFailover {
    from: Option<String>,
    to: Option<String>,
}

#[allow(dead_code)]
#[derive(Debug, Deserialize)]
#[serde(rename_all = "camelCase")]
struct Warmup {
    duration: Option<String>,
    minimum_percent: Option<f64>,
    aggression: Option<f64>,
}

#[allow(dead_code)]
#[derive(Debug, Deserialize)]
#[serde(rename_all = "camelCase")]
struct ConnectionPool {
    tcp: Option<TcpSettings>,
    http: Option<HttpSettings>,
}

#[allow(dead_code)]
#[derive(Debug, Deserialize)]
#[serde(rename_all = "camelCase")]
struct TcpSettings {
    max_connections: Option<i32>,
    connect_timeout: Option<String>,
    tcp_keepalive: Option<TcpKeepalive>,
    max_connection_duration: Option<String>,
    idle_timeout: Option<String>,
}

#[allow(dead_code)]
#[derive(Debug, Deserialize)]
struct TcpKeepalive {
    probes: Option<u32>,
    time: Option<String>,
    interval: Option<String>,
}

#[allow(dead_code)]
#[derive(Debug, Deserialize)]
#[serde(rename_all = "camelCase")]
struct HttpSettings {
    http1_max_pending_requests: Option<i32>,
    http2_max_requests: Option<i32>,
    max_requests_per_connection: Option<i32>,
    max_retries: Option<i32>,
    idle_timeout: Option<String>,
    h2_upgrade_policy: Option<H2UpgradePolicy>,
    use_client_protocol: Option<bool>,
    max_concurrent_streams: Option<i32>,
    http2_keep_alive: Option<Http2KeepAlive>,
}

#[allow(dead_code)]
#[derive(Debug, Deserialize)]
struct Http2KeepAlive {
    interval: Option<String>,
    timeout: Option<String>,
}

#[allow(dead_code)]
#[derive(Debug, Deserialize)]
#[serde(rename_all = "camelCase")]
struct OutlierDetection {
    consecutive_errors: Option<i32>,
    split_external_local_origin_errors: Option<bool>,
    consecutive_local_origin_failures: Option<u32>,
    consecutive_gateway_errors: Option<u32>,
    consecutive_5xx_errors: Option<u32>,
    interval: Option<String>,
    base_ejection_time: Option<String>,
    max_ejection_percent: Option<i32>,
    min_health_percent: Option<i32>,
    outlier_detection_http_error_codes: Option<Vec<u32>>,
}

#[allow(dead_code)]
#[derive(Debug, Deserialize)]
#[serde(rename_all = "camelCase")]
struct ClientTls {
    mode: Option<TlsMode>,
    client_certificate: Option<String>,
    private_key: Option<String>,
    ca_certificates: Option<String>,
    credential_name: Option<String>,
    subject_alt_names: Option<Vec<String>>,
    sni: Option<String>,
    insecure_skip_verify: Option<bool>,
    ca_crl: Option<String>,
}

#[allow(dead_code)]
#[derive(Debug, Deserialize)]
#[serde(rename_all = "camelCase")]
struct Tunnel {
    protocol: Option<String>,
    target_host: Option<String>,
    target_port: Option<u32>,
}

#[allow(dead_code)]
#[derive(Debug, Deserialize)]
struct ProxyProtocol {
    version: Option<ProxyProtocolVersion>,
}

#[allow(dead_code)]
#[derive(Debug, Deserialize)]
#[serde(rename_all = "camelCase")]
struct RetryBudget {
    percent: Option<f64>,
    min_retry_concurrency: Option<u32>,
    budget_interval: Option<String>,
}

/// A protobuf enum as Istio reads it from YAML: one of its names, exactly, or its number.
/// Names are listed in the order messages show them.
macro_rules! istio_enum {
    ($name:ident { $($variant:ident = $number:literal),+ $(,)? }) => {
        #[allow(dead_code, non_camel_case_types, clippy::upper_case_acronyms)]
        #[derive(Debug, Clone, Copy, PartialEq, Eq)]
        pub(super) enum $name { $($variant),+ }

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
