//! Istio's `AuthorizationPolicy` schema (`security/v1beta1/authorization_policy.proto`, the same
//! in `security.istio.io/v1` and `v1beta1`), decoded strictly like the other kinds: an unknown
//! field or action is an error at its line. Every field of Istio's is here, so validation
//! (`object/validate/authorization_policy.rs`) can refuse what Sinew cannot enforce by name.
//! Istio's `Source` has no `trustDomains`, so neither has this one.

use k8s_openapi::apimachinery::pkg::apis::meta::v1::ObjectMeta;
use serde::Deserialize;

use super::{Deserializer, EnumVisitor, WorkloadSelector};

/// An AuthorizationPolicy document, whole, so every field of it is checked.
#[derive(Debug, Clone, PartialEq, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct AuthorizationPolicyDoc {
    pub api_version: String,
    pub kind: String,
    pub metadata: Option<ObjectMeta>,
    pub spec: Option<AuthorizationPolicySpec>,
    pub status: Option<serde_json::Value>,
}

#[derive(Debug, Clone, PartialEq, Default, Deserialize)]
#[cfg_attr(feature = "kubernetes", derive(serde::Serialize, schemars::JsonSchema))]
#[serde(rename_all = "camelCase")]
pub struct AuthorizationPolicySpec {
    /// The workloads of the resource's namespace it applies to (of every namespace in the root
    /// namespace); none: the whole namespace (the whole mesh in the root namespace).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub selector: Option<WorkloadSelector>,
    /// Deprecated by Istio for `targetRefs`; the same meaning.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub target_ref: Option<PolicyTargetReference>,
    /// A `Service` of the policy's namespace: the pods it selects (a Sinew extension, enforced by
    /// their sidecars). Other kinds apply to nothing here (Sinew runs no gateways).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub target_refs: Option<Vec<PolicyTargetReference>>,
    /// None: the policy matches nothing (an ALLOW policy without rules denies everything).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub rules: Option<Vec<Rule>>,
    /// Absent is `ALLOW`.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub action: Option<AuthorizationAction>,
    /// `CUSTOM`'s external authorizer; refused with it.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub provider: Option<ExtensionProvider>,
}

/// Istio's `PolicyTargetReference` (Gateway API's shape).
#[derive(Debug, Clone, PartialEq, Default, Deserialize)]
#[cfg_attr(feature = "kubernetes", derive(serde::Serialize, schemars::JsonSchema))]
#[serde(rename_all = "camelCase")]
pub struct PolicyTargetReference {
    /// Empty: the core group.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub group: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub kind: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub name: Option<String>,
    /// Must be the policy's own namespace when set.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub namespace: Option<String>,
}

#[derive(Debug, Clone, PartialEq, Default, Deserialize)]
#[cfg_attr(feature = "kubernetes", derive(serde::Serialize, schemars::JsonSchema))]
pub struct ExtensionProvider {
    #[serde(skip_serializing_if = "Option::is_none")]
    pub name: Option<String>,
}

istio_enum!(AuthorizationAction {
    ALLOW = 0,
    DENY = 1,
    AUDIT = 2,
    CUSTOM = 3,
});

/// Matches when one of `from`, one of `to` and every `when` match (absent: anything).
#[derive(Debug, Clone, PartialEq, Default, Deserialize)]
#[cfg_attr(feature = "kubernetes", derive(serde::Serialize, schemars::JsonSchema))]
#[serde(rename_all = "camelCase")]
pub struct Rule {
    #[serde(skip_serializing_if = "Option::is_none")]
    pub from: Option<Vec<RuleFrom>>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub to: Option<Vec<RuleTo>>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub when: Option<Vec<Condition>>,
}

#[derive(Debug, Clone, PartialEq, Default, Deserialize)]
#[cfg_attr(feature = "kubernetes", derive(serde::Serialize, schemars::JsonSchema))]
pub struct RuleFrom {
    #[serde(skip_serializing_if = "Option::is_none")]
    pub source: Option<Source>,
}

#[derive(Debug, Clone, PartialEq, Default, Deserialize)]
#[cfg_attr(feature = "kubernetes", derive(serde::Serialize, schemars::JsonSchema))]
pub struct RuleTo {
    #[serde(skip_serializing_if = "Option::is_none")]
    pub operation: Option<Operation>,
}

/// Who is calling. Fields AND, values within one field OR.
#[derive(Debug, Clone, PartialEq, Default, Deserialize)]
#[cfg_attr(feature = "kubernetes", derive(serde::Serialize, schemars::JsonSchema))]
#[serde(rename_all = "camelCase")]
pub struct Source {
    #[serde(skip_serializing_if = "Option::is_none")]
    pub principals: Option<Vec<String>>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub not_principals: Option<Vec<String>>,
    /// JWT principals: refused (Sinew has no RequestAuthentication).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub request_principals: Option<Vec<String>>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub not_request_principals: Option<Vec<String>>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub namespaces: Option<Vec<String>>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub not_namespaces: Option<Vec<String>>,
    /// `namespace/serviceaccount`.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub service_accounts: Option<Vec<String>>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub not_service_accounts: Option<Vec<String>>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub ip_blocks: Option<Vec<String>>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub not_ip_blocks: Option<Vec<String>>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub remote_ip_blocks: Option<Vec<String>>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub not_remote_ip_blocks: Option<Vec<String>>,
}

/// What is called. Fields AND, values within one field OR.
#[derive(Debug, Clone, PartialEq, Default, Deserialize)]
#[cfg_attr(feature = "kubernetes", derive(serde::Serialize, schemars::JsonSchema))]
#[serde(rename_all = "camelCase")]
pub struct Operation {
    #[serde(skip_serializing_if = "Option::is_none")]
    pub hosts: Option<Vec<String>>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub not_hosts: Option<Vec<String>>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub ports: Option<Vec<String>>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub not_ports: Option<Vec<String>>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub methods: Option<Vec<String>>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub not_methods: Option<Vec<String>>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub paths: Option<Vec<String>>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub not_paths: Option<Vec<String>>,
}

#[derive(Debug, Clone, PartialEq, Default, Deserialize)]
#[cfg_attr(feature = "kubernetes", derive(serde::Serialize, schemars::JsonSchema))]
#[serde(rename_all = "camelCase")]
pub struct Condition {
    #[serde(skip_serializing_if = "Option::is_none")]
    pub key: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub values: Option<Vec<String>>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub not_values: Option<Vec<String>>,
}
