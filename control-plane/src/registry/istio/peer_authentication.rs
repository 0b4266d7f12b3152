//! Istio's `PeerAuthentication` schema (`security/v1beta1/peer_authentication.proto`, the same in
//! `security.istio.io/v1` and `v1beta1`), decoded strictly like the other kinds: an unknown field
//! or mode is an error at its line. Every field is applied (`compile::peer_authentication`).

use std::collections::BTreeMap;
use std::fmt;

use k8s_openapi::apimachinery::pkg::apis::meta::v1::ObjectMeta;
use serde::Deserialize;
use serde::de::{self, Visitor};

use super::{Deserializer, EnumVisitor, WorkloadSelector};

/// A PeerAuthentication document, whole, so every field of it is checked.
#[derive(Debug, Clone, PartialEq, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct PeerAuthenticationDoc {
    pub api_version: String,
    pub kind: String,
    pub metadata: Option<ObjectMeta>,
    pub spec: Option<PeerAuthenticationSpec>,
    pub status: Option<serde_json::Value>,
}

#[derive(Debug, Clone, PartialEq, Default, Deserialize)]
#[cfg_attr(feature = "kubernetes", derive(serde::Serialize, schemars::JsonSchema))]
#[serde(rename_all = "camelCase")]
pub struct PeerAuthenticationSpec {
    /// The workloads of the resource's namespace it applies to; none: the whole namespace (the
    /// whole mesh in the root namespace).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub selector: Option<WorkloadSelector>,
    /// The workload-wide mode.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub mtls: Option<PeerMtls>,
    /// Per workload port (the port the app listens on, not a Service port); needs a selector.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[cfg_attr(
        feature = "kubernetes",
        schemars(schema_with = "port_level_mtls_schema")
    )]
    pub port_level_mtls: Option<BTreeMap<PortKey, PeerMtls>>,
}

#[derive(Debug, Clone, PartialEq, Default, Deserialize)]
#[cfg_attr(feature = "kubernetes", derive(serde::Serialize, schemars::JsonSchema))]
#[serde(rename_all = "camelCase")]
pub struct PeerMtls {
    /// Absent is `UNSET`: inherited.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub mode: Option<MtlsMode>,
}

istio_enum!(MtlsMode {
    UNSET = 0,
    DISABLE = 1,
    PERMISSIVE = 2,
    STRICT = 3,
});

/// A `portLevelMtls` key: a port number, written as a YAML integer or (as JSON object keys
/// always are) a string of digits. Out-of-range numbers decode so that validation can name them.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct PortKey(pub u64);

impl<'de> Deserialize<'de> for PortKey {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        struct PortVisitor;

        impl Visitor<'_> for PortVisitor {
            type Value = PortKey;

            fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str("a port number")
            }

            fn visit_u64<E: de::Error>(self, v: u64) -> Result<PortKey, E> {
                Ok(PortKey(v))
            }

            fn visit_i64<E: de::Error>(self, v: i64) -> Result<PortKey, E> {
                u64::try_from(v)
                    .map(PortKey)
                    .map_err(|_| E::custom(format!("port {v} is not a port number")))
            }

            fn visit_str<E: de::Error>(self, v: &str) -> Result<PortKey, E> {
                v.parse()
                    .map(PortKey)
                    .map_err(|_| E::custom(format!("port {v:?} is not a port number")))
            }
        }

        d.deserialize_any(PortVisitor)
    }
}

#[cfg(feature = "kubernetes")]
impl serde::Serialize for PortKey {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.collect_str(&self.0)
    }
}

/// `portLevelMtls` in the CRD: an object whose keys are ports (Kubernetes' structural schemas
/// cannot say "digits" of a key, so the webhook does).
#[cfg(feature = "kubernetes")]
fn port_level_mtls_schema(generator: &mut schemars::SchemaGenerator) -> schemars::Schema {
    let value = generator.subschema_for::<PeerMtls>();
    schemars::json_schema!({ "type": "object", "additionalProperties": value, "nullable": true })
}
