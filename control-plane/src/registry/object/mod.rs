//! Kubernetes object → registry entry, whatever the object came from: a document of a manifest
//! file or an object listed from the API server. Nothing here knows files or lines.
//!
//! Promise: one object is decoded strictly (every field the kind's schema lacks is reported by
//! its path, `spec.trafficPolicy.loadBalancer.simpel`), checked on its own as the API server and
//! istiod's webhook check it (`core.rs`, `validate.rs`), and becomes one [`Object`], or is refused
//! with every [`Rejection`] found. Checks that need other objects (declared namespaces,
//! duplicates, subsets routes name) belong to the model.
//!
//! [`decode`] is the entry point for API objects. The file source calls the same dispatch
//! (`decode_with`) with its own `Reader`, which decodes the typed form from the YAML text so
//! its errors can name lines; both see the same kinds, checks and messages.

use serde::de::DeserializeOwned;

use super::entry::{
    Age, AuthorizationPolicy, DeploymentDoc, DestinationRule, NamespaceEntry, PeerAuthentication,
    PodEntry, ServiceAccountEntry, ServiceEntry, Telemetry, VirtualService,
};
use super::error::{Origin, Problem};
use super::istio;

mod core;
pub(crate) mod kinds;
pub(crate) mod strict;
pub(crate) mod validate;

#[cfg(test)]
mod tests;

use self::core::{NameRule, json_type, name_of, namespace_of, str_at};
/// Typed entry points for core kinds an API source already holds as `k8s_openapi` objects (no
/// round trip through JSON; the API server has checked their schema): the same checks
/// [`decode`] applies after decoding.
pub use self::core::{namespace, pod, service, service_account};

/// The API versions whose `DestinationRule` (and `VirtualService`) we accept: Istio's three
/// (same schema) and ours.
pub(crate) const DESTINATION_RULE_VERSIONS: [&str; 4] = [
    "networking.istio.io/v1",
    "networking.istio.io/v1beta1",
    "networking.istio.io/v1alpha3",
    "sinew.dev/v1alpha1",
];

/// The API versions whose `Telemetry` we accept (Istio's two; same schema).
pub(crate) const TELEMETRY_VERSIONS: [&str; 2] =
    ["telemetry.istio.io/v1", "telemetry.istio.io/v1alpha1"];

/// The API versions whose `PeerAuthentication` and `AuthorizationPolicy` we accept (Istio's
/// two; same schema). Like `Telemetry`, they have no `sinew.dev` twin: Sinew adds no fields.
pub(crate) const SECURITY_VERSIONS: [&str; 2] =
    ["security.istio.io/v1", "security.istio.io/v1beta1"];

/// One decoded, individually valid object.
#[derive(Debug, Clone)]
pub enum Object {
    Namespace(Box<NamespaceEntry>),
    ServiceAccount(Box<ServiceAccountEntry>),
    Service(Box<ServiceEntry>),
    Pod(Box<PodEntry>),
    /// Files only (local mode runs Deployments as numbered pods; in a cluster the pods are listed).
    Deployment(Box<DeploymentDoc>),
    DestinationRule(Box<DestinationRule>),
    /// The service and whether it applies to mesh traffic (gateway-only ones are checked, then
    /// left out of the snapshot).
    VirtualService(Box<VirtualService>, bool),
    Telemetry(Box<Telemetry>),
    PeerAuthentication(Box<PeerAuthentication>),
    AuthorizationPolicy(Box<AuthorizationPolicy>),
}

/// One decoded object and where it came from: the unit the model builds from.
#[derive(Debug, Clone)]
pub struct Doc {
    pub origin: Origin,
    pub object: Object,
}

/// What a source read: the objects that decoded, what was wrong with the others (each naming
/// its origin), and what was skipped or accepted with a warning.
#[derive(Debug, Default)]
pub struct Parsed {
    pub docs: Vec<Doc>,
    pub problems: Vec<Problem>,
    pub warnings: Vec<String>,
}

/// One thing wrong with an object (or, as a warning, accepted but probably not meant).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Rejection {
    /// The field the reason is about when one field is at fault and its position matters
    /// (`spec.subsets[0].name`); empty when the reason is about the object as a whole. A file
    /// source turns it into a line; an API source may show it as is.
    pub path: String,
    /// What is wrong, for a person: one line that names the field itself
    /// (`spec.host is required`).
    pub reason: String,
}

// === impl Rejection ===

impl Rejection {
    /// A reason about the object as a whole.
    pub(crate) fn whole(reason: impl Into<String>) -> Self {
        Self {
            path: String::new(),
            reason: reason.into(),
        }
    }

    /// An unknown field of `T` at `path`, with the field the user probably meant.
    pub(crate) fn unknown_field<T: DeserializeOwned>(path: &str) -> Self {
        let field = path.rsplit('.').next().unwrap_or(path);
        let field = field.split('[').next().unwrap_or(field);
        let reason = match kinds::closest(field, &strict::sibling_fields::<T>(path)) {
            Some(meant) => format!("{path}: unknown field; did you mean {meant}?"),
            None => format!("{path}: unknown field"),
        };
        Self {
            path: path.to_string(),
            reason,
        }
    }

    /// As a problem of the object at `origin`.
    pub fn at(self, origin: &Origin) -> Problem {
        Problem::new(origin.clone(), self.reason)
    }
}

// === the dispatch, for any source ===

/// Names the object in messages once its kind is known (`Service "reviews": …`).
#[derive(Debug, Clone, Copy)]
pub(crate) struct Subject<'a> {
    pub kind: &'a str,
    pub name: Option<&'a str>,
}

/// How a source reads an object's typed form and words what is wrong with it. The file source
/// decodes from the YAML text and answers with problems at lines; the API source decodes the
/// JSON value and answers with the rejections as they are.
pub(crate) trait Reader {
    type Error;

    /// The whole object as `T`, strictly: every unknown field is its own error.
    fn typed<T: DeserializeOwned>(&mut self, subject: Subject<'_>) -> Result<T, Vec<Self::Error>>;

    /// A rejection of the object; `subject` is `None` while its kind is not known yet.
    fn reject(&mut self, subject: Option<Subject<'_>>, rejection: Rejection) -> Self::Error;

    /// A warning about an object that is kept.
    fn warn(&mut self, subject: Subject<'_>, warning: Rejection);
}

/// Decodes one API object. `Ok(None)` for kinds the registry does not use; warnings (accepted
/// but not applied, gateway-only VirtualServices) are added to `warnings`.
///
/// `value` is the object as the API server serves it (`apiVersion`, `kind`, `metadata`,
/// `spec`, …). A `status` the schema does not know is not an error (the API server keeps it
/// apart from the spec, and Sinew writes one itself). Wrong value types are reported without
/// a path (the API server has already checked types against the CRD's schema).
pub fn decode(
    value: &serde_json::Value,
    origin: &Origin,
    age: Age,
    warnings: &mut Vec<Rejection>,
) -> Result<Option<Object>, Vec<Rejection>> {
    let mut reader = ApiReader { value, warnings };
    decode_with(value, origin, age, &mut reader)
}

/// The API source's reader: the JSON value, strictly.
struct ApiReader<'a> {
    value: &'a serde_json::Value,
    warnings: &'a mut Vec<Rejection>,
}

impl Reader for ApiReader<'_> {
    type Error = Rejection;

    fn typed<T: DeserializeOwned>(&mut self, _: Subject<'_>) -> Result<T, Vec<Rejection>> {
        match strict::decode::<T>(self.value) {
            Ok((value, unknown)) => {
                let unknown: Vec<Rejection> = unknown
                    .iter()
                    .filter(|p| *p != "status" && !p.starts_with("status."))
                    .map(|p| Rejection::unknown_field::<T>(p))
                    .collect();
                if unknown.is_empty() {
                    Ok(value)
                } else {
                    Err(unknown)
                }
            }
            Err(e) => Err(vec![Rejection::whole(e.to_string())]),
        }
    }

    fn reject(&mut self, _: Option<Subject<'_>>, rejection: Rejection) -> Rejection {
        rejection
    }

    fn warn(&mut self, _: Subject<'_>, warning: Rejection) {
        self.warnings.push(warning);
    }
}

/// The `(apiVersion, kind)` dispatch both sources share. `Ok(None)` for kinds the registry does
/// not use (they exist in their group); a kind its group lacks is a rejection.
pub(crate) fn decode_with<R: Reader>(
    value: &serde_json::Value,
    origin: &Origin,
    age: Age,
    reader: &mut R,
) -> Result<Option<Object>, Vec<R::Error>> {
    let Some(map) = value.as_object() else {
        let reason = format!(
            "expected a mapping with apiVersion and kind, found {}",
            json_type(value)
        );
        return Err(vec![reader.reject(None, Rejection::whole(reason))]);
    };
    let field = |name: &str| match map.get(name) {
        Some(serde_json::Value::String(s)) if !s.is_empty() => Ok(s.as_str()),
        Some(serde_json::Value::String(_)) | None => {
            Err(Rejection::whole(format!("{name} is required")))
        }
        Some(other) => Err(Rejection::whole(format!(
            "{name} must be a string, not {}",
            json_type(other)
        ))),
    };
    let api_version = field("apiVersion").map_err(|r| vec![reader.reject(None, r)])?;
    let kind = field("kind").map_err(|r| vec![reader.reject(None, r)])?;
    let subject = Subject {
        kind,
        name: str_at(value, &["metadata", "name"]).filter(|n| !n.is_empty()),
    };
    // A check about the object as a whole, in the reader's words.
    macro_rules! checked {
        ($result:expr) => {
            $result.map_err(|r| vec![reader.reject(Some(subject), r)])?
        };
    }
    let object = match (api_version, kind) {
        ("v1", "Namespace") => {
            let typed = reader.typed(subject)?;
            Object::Namespace(Box::new(checked!(core::namespace(typed, origin))))
        }
        ("v1", "ServiceAccount") => {
            let typed = reader.typed(subject)?;
            Object::ServiceAccount(Box::new(checked!(core::service_account(typed, origin))))
        }
        ("v1", "Service") => {
            let typed = reader.typed(subject)?;
            Object::Service(Box::new(checked!(core::service(typed, origin))))
        }
        ("v1", "Pod") => {
            let typed: k8s_openapi::api::core::v1::Pod = reader.typed(subject)?;
            Object::Pod(Box::new(checked!(core::pod(typed, origin))))
        }
        ("apps/v1", "Deployment") => {
            let typed = reader.typed(subject)?;
            Object::Deployment(Box::new(checked!(core::deployment(typed))))
        }
        (v, "DestinationRule") if DESTINATION_RULE_VERSIONS.contains(&v) => {
            // Checked whole against the schema, then its values as istiod's webhook does.
            let typed = reader.typed::<istio::DestinationRuleDoc>(subject)?;
            let mut rule = checked!(core::destination_rule(v, value, origin, age));
            rule.typed = typed.spec.unwrap_or_default();
            let report = validate::destination_rule(&rule.typed, &rule.namespace);
            settle(report, subject, reader)?;
            Object::DestinationRule(Box::new(rule))
        }
        (v, "VirtualService") if DESTINATION_RULE_VERSIONS.contains(&v) => {
            let typed = reader.typed::<istio::virtual_service::VirtualServiceDoc>(subject)?;
            let meta = typed.metadata.clone().unwrap_or_default();
            let name = checked!(name_of(&meta, NameRule::Subdomain));
            let Some(spec) = typed.spec else {
                return Err(vec![
                    reader.reject(Some(subject), Rejection::whole("spec is required")),
                ]);
            };
            let gateways = spec.gateways.as_deref().unwrap_or_default();
            let mesh = gateways.is_empty() || gateways.iter().any(|g| g == "mesh");
            if !mesh {
                reader.warn(subject, Rejection::whole(format!(
                    "spec.gateways {gateways:?} does not include \"mesh\": it configures gateways only, which Sinew does not run; skipped"
                )));
            }
            settle(validate::virtual_service(&spec), subject, reader)?;
            Object::VirtualService(
                Box::new(VirtualService {
                    api_version: v.to_string(),
                    namespace: namespace_of(&meta),
                    name,
                    age,
                    origin: origin.clone(),
                    spec,
                    lines: Default::default(),
                }),
                mesh,
            )
        }
        (v, "Telemetry") if TELEMETRY_VERSIONS.contains(&v) => {
            let typed = reader.typed::<istio::telemetry::TelemetryDoc>(subject)?;
            let meta = typed.metadata.clone().unwrap_or_default();
            let name = checked!(name_of(&meta, NameRule::Subdomain));
            // An empty spec is valid (and does nothing), as in Istio.
            let spec = typed.spec.unwrap_or_default();
            settle(validate::telemetry(&spec), subject, reader)?;
            Object::Telemetry(Box::new(Telemetry {
                api_version: v.to_string(),
                namespace: namespace_of(&meta),
                name,
                age,
                origin: origin.clone(),
                spec,
            }))
        }
        (v, "PeerAuthentication") if SECURITY_VERSIONS.contains(&v) => {
            let typed =
                reader.typed::<istio::peer_authentication::PeerAuthenticationDoc>(subject)?;
            let meta = typed.metadata.clone().unwrap_or_default();
            let name = checked!(name_of(&meta, NameRule::Subdomain));
            // An empty spec is valid: UNSET everywhere, it inherits (Istio).
            let spec = typed.spec.unwrap_or_default();
            settle(validate::peer_authentication(&spec), subject, reader)?;
            Object::PeerAuthentication(Box::new(PeerAuthentication {
                api_version: v.to_string(),
                namespace: namespace_of(&meta),
                name,
                age,
                origin: origin.clone(),
                spec,
            }))
        }
        (v, "AuthorizationPolicy") if SECURITY_VERSIONS.contains(&v) => {
            let typed =
                reader.typed::<istio::authorization_policy::AuthorizationPolicyDoc>(subject)?;
            let meta = typed.metadata.clone().unwrap_or_default();
            let name = checked!(name_of(&meta, NameRule::Subdomain));
            let namespace = namespace_of(&meta);
            let annotation = meta
                .annotations
                .as_ref()
                .and_then(|a| a.get(validate::DRY_RUN_ANNOTATION));
            let dry_run = checked!(
                validate::dry_run(annotation.map(String::as_str)).map_err(Rejection::whole)
            );
            // An empty spec is valid: an ALLOW policy without rules, which denies everything.
            let spec = typed.spec.unwrap_or_default();
            settle(
                validate::authorization_policy(&spec, &namespace),
                subject,
                reader,
            )?;
            Object::AuthorizationPolicy(Box::new(AuthorizationPolicy {
                api_version: v.to_string(),
                namespace,
                name,
                age,
                origin: origin.clone(),
                dry_run,
                spec,
            }))
        }
        _ => match kinds::check(api_version, kind) {
            Ok(()) => return Ok(None),
            Err(reason) => return Err(vec![reader.reject(None, Rejection::whole(reason))]),
        },
    };
    Ok(Some(object))
}

/// A validation report's errors refuse the object; otherwise its warnings are passed on.
fn settle<R: Reader>(
    report: validate::Report,
    subject: Subject<'_>,
    reader: &mut R,
) -> Result<(), Vec<R::Error>> {
    match report.into_rejections() {
        Ok(warnings) => {
            for w in warnings {
                reader.warn(subject, w);
            }
            Ok(())
        }
        Err(errors) => Err(errors
            .into_iter()
            .map(|r| reader.reject(Some(subject), r))
            .collect()),
    }
}
