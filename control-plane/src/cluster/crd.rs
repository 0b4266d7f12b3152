//! The CustomResourceDefinitions Sinew reads, generated from the same Rust types the decoder
//! uses (`registry::istio`), so the API server's schema and `sinewctl apply` cannot disagree on
//! what a field is called or what it holds.
//!
//! What it promises:
//! - [`all_crds`] gives seven CRDs: `sinew.dev/v1alpha1` DestinationRule and VirtualService
//!   (short names `sdr`/`svs`: Istio already claims `dr`/`vs`), Istio's `networking.istio.io`
//!   ones (`v1` stored, `v1beta1` and `v1alpha3` served with the same schema; short names
//!   `dr`/`vs`, Istio's categories) and Istio's `telemetry.istio.io` Telemetry (`v1` stored,
//!   `v1alpha1` served; short name `telemetry`) and `security.istio.io` PeerAuthentication and
//!   AuthorizationPolicy (`v1` stored, `v1beta1` served; short names `pa`/`ap`), for clusters
//!   without Istio installed.
//! - Every schema is structural: enums are strings listing Istio's names, durations strings as
//!   written (`30s`), and only the fields Sinew keeps as raw JSON (accepted with a warning or
//!   refused by name) preserve unknown fields — plus the Istio kinds' `status`, which istiod and
//!   other controllers also write.
//! - Every CRD has the `status` subresource, with Istio-shaped `conditions` (type, status,
//!   reason, message, lastTransitionTime, observedGeneration), and the printer columns Istio's
//!   own CRDs have (host or gateways and hosts, age).
//! - [`to_yaml`] renders one CRD the way the chart holds it: `charts/sinew/crds/` (sinew.dev)
//!   and `charts/sinew/files/istio-crds/` (Istio's groups) (`tests/crds.rs` regenerates
//!   those files and fails on any difference).

use k8s_openapi::apiextensions_apiserver::pkg::apis::apiextensions::v1::{
    CustomResourceDefinition, JSONSchemaProps, JSONSchemaPropsOrArray, JSONSchemaPropsOrBool,
};
use kube::core::crd::{MergeError, merge_crds};
use kube::{CustomResource, CustomResourceExt};
use schemars::JsonSchema;
use serde::{Deserialize, Serialize};

/// What Sinew (or istiod) reports about one DestinationRule or VirtualService.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct RuleStatus {
    /// The latest observations of the object's state (`Accepted`, and a warning condition for
    /// cross-object problems), one per type.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    #[schemars(extend("x-kubernetes-list-type" = "map", "x-kubernetes-list-map-keys" = ["type"]))]
    pub conditions: Vec<Condition>,
    /// The `metadata.generation` the status as a whole was computed from.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub observed_generation: Option<i64>,
}

/// One condition, shaped like Istio's `IstioCondition` (and Kubernetes' own).
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct Condition {
    /// The condition's type (`Accepted`).
    #[serde(rename = "type")]
    pub type_: String,
    /// `True`, `False` or `Unknown`.
    #[schemars(extend("enum" = ["True", "False", "Unknown"]))]
    pub status: String,
    /// A one-word CamelCase reason for the last transition.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub reason: Option<String>,
    /// What a person should know: every reason an object is refused, each naming its field.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub message: Option<String>,
    /// When the status last changed (RFC 3339).
    #[serde(skip_serializing_if = "Option::is_none")]
    #[schemars(extend("format" = "date-time"))]
    pub last_transition_time: Option<String>,
    /// The `metadata.generation` this condition was computed from.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub observed_generation: Option<i64>,
}

/// One derive makes one (group, version); the spec types are shared, wrapped transparently.
macro_rules! rule_kinds {
    (
        $group:literal, $version:literal, storage = $storage:literal,
        shortnames = ($dr:literal, $vs:literal), categories = [$($category:literal),*]
    ) => {
        /// A DestinationRule's spec, as the registry decodes it.
        #[derive(CustomResource, Debug, Clone, Default, PartialEq, Serialize, Deserialize, JsonSchema)]
        #[kube(
            group = $group,
            version = $version,
            kind = "DestinationRule",
            doc = "How traffic to a service is balanced, pooled, ejected and secured (Istio's DestinationRule).",
            namespaced,
            storage = $storage,
            shortname = $dr,
            $(category = $category,)*
            status = "crate::cluster::crd::RuleStatus",
            printcolumn(
                name = "Host",
                type_ = "string",
                description = "The name of a service from the service registry",
                json_path = ".spec.host"
            ),
            printcolumn(name = "Age", type_ = "date", json_path = ".metadata.creationTimestamp")
        )]
        #[serde(transparent)]
        pub struct DestinationRuleSpec(pub $crate::registry::istio::DestinationRuleSpec);

        /// A VirtualService's spec, as the registry decodes it.
        #[derive(CustomResource, Debug, Clone, Default, PartialEq, Serialize, Deserialize, JsonSchema)]
        #[kube(
            group = $group,
            version = $version,
            kind = "VirtualService",
            doc = "How requests to a host are matched and routed (Istio's VirtualService).",
            namespaced,
            storage = $storage,
            shortname = $vs,
            $(category = $category,)*
            status = "crate::cluster::crd::RuleStatus",
            printcolumn(
                name = "Gateways",
                type_ = "string",
                description = "The names of gateways and sidecars that should apply these routes",
                json_path = ".spec.gateways"
            ),
            printcolumn(
                name = "Hosts",
                type_ = "string",
                description = "The destination hosts to which traffic is being sent",
                json_path = ".spec.hosts"
            ),
            printcolumn(name = "Age", type_ = "date", json_path = ".metadata.creationTimestamp")
        )]
        #[serde(transparent)]
        pub struct VirtualServiceSpec(pub $crate::registry::istio::virtual_service::VirtualServiceSpec);
    };
}

/// Sinew's own group: `sdr`/`svs`, so both groups can be installed side by side.
pub mod sinew {
    use super::*;

    rule_kinds!(
        "sinew.dev",
        "v1alpha1",
        storage = true,
        shortnames = ("sdr", "svs"),
        categories = ["sinew"]
    );
}

/// Istio's group, version by version (same schema; `v1` is stored).
pub mod networking_istio_io {
    /// The stored version.
    pub mod v1 {
        use super::super::*;

        rule_kinds!(
            "networking.istio.io",
            "v1",
            storage = true,
            shortnames = ("dr", "vs"),
            categories = ["istio-io", "networking-istio-io"]
        );
    }

    /// Served, not stored.
    pub mod v1beta1 {
        use super::super::*;

        rule_kinds!(
            "networking.istio.io",
            "v1beta1",
            storage = false,
            shortnames = ("dr", "vs"),
            categories = ["istio-io", "networking-istio-io"]
        );
    }

    /// Served, not stored.
    pub mod v1alpha3 {
        use super::super::*;

        rule_kinds!(
            "networking.istio.io",
            "v1alpha3",
            storage = false,
            shortnames = ("dr", "vs"),
            categories = ["istio-io", "networking-istio-io"]
        );
    }
}

/// One derive makes one version of Istio's Telemetry; the spec type is the registry's.
macro_rules! telemetry_kind {
    ($version:literal, storage = $storage:literal) => {
        /// A Telemetry's spec, as the registry decodes it.
        #[derive(CustomResource, Debug, Clone, Default, PartialEq, Serialize, Deserialize, JsonSchema)]
        #[kube(
            group = "telemetry.istio.io",
            version = $version,
            kind = "Telemetry",
            plural = "telemetries",
            doc = "How traces, metrics and access logs are produced for workloads (Istio's Telemetry).",
            namespaced,
            storage = $storage,
            shortname = "telemetry",
            category = "istio-io",
            category = "telemetry-istio-io",
            status = "crate::cluster::crd::RuleStatus",
            printcolumn(name = "Age", type_ = "date", json_path = ".metadata.creationTimestamp")
        )]
        #[serde(transparent)]
        pub struct TelemetrySpec(pub $crate::registry::istio::telemetry::TelemetrySpec);
    };
}

/// Istio's telemetry group, version by version (same schema; `v1` is stored).
pub mod telemetry_istio_io {
    /// The stored version.
    pub mod v1 {
        use super::super::*;

        telemetry_kind!("v1", storage = true);
    }

    /// Served, not stored.
    pub mod v1alpha1 {
        use super::super::*;

        telemetry_kind!("v1alpha1", storage = false);
    }
}

/// One derive makes one version of Istio's security kinds; the spec types are the registry's.
macro_rules! security_kinds {
    ($version:literal, storage = $storage:literal) => {
        /// A PeerAuthentication's spec, as the registry decodes it.
        #[derive(CustomResource, Debug, Clone, Default, PartialEq, Serialize, Deserialize, JsonSchema)]
        #[kube(
            group = "security.istio.io",
            version = $version,
            kind = "PeerAuthentication",
            doc = "Which inbound traffic a workload accepts: mutual TLS only, plaintext too, or plaintext (Istio's PeerAuthentication).",
            namespaced,
            storage = $storage,
            shortname = "pa",
            category = "istio-io",
            category = "security-istio-io",
            status = "crate::cluster::crd::RuleStatus",
            printcolumn(
                name = "Mode",
                type_ = "string",
                description = "Defines the mTLS mode used for peer authentication.",
                json_path = ".spec.mtls.mode"
            ),
            printcolumn(name = "Age", type_ = "date", json_path = ".metadata.creationTimestamp")
        )]
        #[serde(transparent)]
        pub struct PeerAuthenticationSpec(
            pub $crate::registry::istio::peer_authentication::PeerAuthenticationSpec,
        );

        /// An AuthorizationPolicy's spec, as the registry decodes it.
        #[derive(CustomResource, Debug, Clone, Default, PartialEq, Serialize, Deserialize, JsonSchema)]
        #[kube(
            group = "security.istio.io",
            version = $version,
            kind = "AuthorizationPolicy",
            plural = "authorizationpolicies",
            doc = "Who may call a workload, and what (Istio's AuthorizationPolicy).",
            namespaced,
            storage = $storage,
            shortname = "ap",
            category = "istio-io",
            category = "security-istio-io",
            status = "crate::cluster::crd::RuleStatus",
            printcolumn(
                name = "Action",
                type_ = "string",
                description = "The operation to take.",
                json_path = ".spec.action"
            ),
            printcolumn(name = "Age", type_ = "date", json_path = ".metadata.creationTimestamp")
        )]
        #[serde(transparent)]
        pub struct AuthorizationPolicySpec(
            pub $crate::registry::istio::authorization_policy::AuthorizationPolicySpec,
        );
    };
}

/// Istio's security group, version by version (same schema; `v1` is stored).
pub mod security_istio_io {
    /// The stored version.
    pub mod v1 {
        use super::super::*;

        security_kinds!("v1", storage = true);
    }

    /// Served, not stored.
    pub mod v1beta1 {
        use super::super::*;

        security_kinds!("v1beta1", storage = false);
    }
}

/// Why the CRDs could not be put together (a mistake in this module, not in any input).
#[derive(Debug, thiserror::Error)]
pub enum CrdError {
    #[error("merging the versions of {name}: {source}")]
    Merge {
        name: &'static str,
        #[source]
        source: MergeError,
    },
    #[error("rendering {name} as YAML: {reason}")]
    Render { name: String, reason: String },
}

/// Every CRD Sinew reads, in a fixed order: `sinew.dev` DestinationRule and VirtualService,
/// then Istio's (DestinationRule, VirtualService, Telemetry, PeerAuthentication,
/// AuthorizationPolicy).
pub fn all_crds() -> Result<Vec<CustomResourceDefinition>, CrdError> {
    use networking_istio_io::{v1, v1alpha3, v1beta1};
    let istio_rule = merge_crds(
        vec![
            v1::DestinationRule::crd(),
            v1beta1::DestinationRule::crd(),
            v1alpha3::DestinationRule::crd(),
        ],
        "v1",
    )
    .map_err(|source| CrdError::Merge {
        name: v1::DestinationRule::crd_name(),
        source,
    })?;
    let istio_service = merge_crds(
        vec![
            v1::VirtualService::crd(),
            v1beta1::VirtualService::crd(),
            v1alpha3::VirtualService::crd(),
        ],
        "v1",
    )
    .map_err(|source| CrdError::Merge {
        name: v1::VirtualService::crd_name(),
        source,
    })?;
    let istio_telemetry = merge_crds(
        vec![
            telemetry_istio_io::v1::Telemetry::crd(),
            telemetry_istio_io::v1alpha1::Telemetry::crd(),
        ],
        "v1",
    )
    .map_err(|source| CrdError::Merge {
        name: telemetry_istio_io::v1::Telemetry::crd_name(),
        source,
    })?;
    use security_istio_io as security;
    let istio_peer_authentication = merge_crds(
        vec![
            security::v1::PeerAuthentication::crd(),
            security::v1beta1::PeerAuthentication::crd(),
        ],
        "v1",
    )
    .map_err(|source| CrdError::Merge {
        name: security::v1::PeerAuthentication::crd_name(),
        source,
    })?;
    let istio_authorization_policy = merge_crds(
        vec![
            security::v1::AuthorizationPolicy::crd(),
            security::v1beta1::AuthorizationPolicy::crd(),
        ],
        "v1",
    )
    .map_err(|source| CrdError::Merge {
        name: security::v1::AuthorizationPolicy::crd_name(),
        source,
    })?;
    let mut crds = vec![
        sinew::DestinationRule::crd(),
        sinew::VirtualService::crd(),
        istio_rule,
        istio_service,
        istio_telemetry,
        istio_peer_authentication,
        istio_authorization_policy,
    ];
    for crd in &mut crds[2..] {
        keep_others_status(crd);
    }
    for crd in &mut crds {
        let schemas = crd.spec.versions.iter_mut().filter_map(|v| {
            v.schema
                .as_mut()
                .and_then(|s| s.open_api_v3_schema.as_mut())
        });
        for schema in schemas {
            drop_null_from_enums(schema);
        }
    }
    Ok(crds)
}

/// schemars lists `null` among an optional enum's values; `nullable: true` already says it, and
/// the API server wants every enum value to be of the node's type.
fn drop_null_from_enums(node: &mut JSONSchemaProps) {
    if let Some(values) = node.enum_.as_mut() {
        values.retain(|v| !v.0.is_null());
    }
    for child in node.properties.iter_mut().flat_map(|p| p.values_mut()) {
        drop_null_from_enums(child);
    }
    if let Some(JSONSchemaPropsOrBool::Schema(child)) = node.additional_properties.as_mut() {
        drop_null_from_enums(child);
    }
    if let Some(JSONSchemaPropsOrArray::Schema(child)) = node.items.as_mut() {
        drop_null_from_enums(child);
    }
}

/// istiod (and other Istio tools) write their own fields into an Istio object's status
/// (`validationMessages`); a typed status would make the API server prune them.
fn keep_others_status(crd: &mut CustomResourceDefinition) {
    for version in &mut crd.spec.versions {
        let status = version
            .schema
            .as_mut()
            .and_then(|s| s.open_api_v3_schema.as_mut())
            .and_then(|s| s.properties.as_mut())
            .and_then(|p| p.get_mut("status"));
        if let Some(status) = status {
            status.x_kubernetes_preserve_unknown_fields = Some(true);
        }
    }
}

/// The file name a CRD has in the chart: its own name.
pub fn file_name(crd: &CustomResourceDefinition) -> String {
    format!("{}.yaml", crd.metadata.name.as_deref().unwrap_or("unnamed"))
}

/// One CRD as YAML, with a header saying where it comes from.
pub fn to_yaml(crd: &CustomResourceDefinition) -> Result<String, CrdError> {
    let body = serde_saphyr::to_string(crd).map_err(|e| CrdError::Render {
        name: crd.metadata.name.clone().unwrap_or_default(),
        reason: e.to_string(),
    })?;
    Ok(format!(
        "# Generated from control-plane/src/registry/istio.rs by control-plane/src/cluster/crd.rs.\n\
         # Do not edit: run `SINEW_UPDATE_CRDS=1 cargo test -p sinew-control-plane --test crds`.\n\
         {body}"
    ))
}
