//! Value checks of Istio's `Telemetry`, as istiod's webhook makes them (`ValidateTelemetry`):
//! sampling percentages 0–100, provider names present, label selectors well formed, one of
//! `selector` or `targetRef(s)`, tag overrides consistent, durations that parse. What Sinew
//! accepts but does not apply comes back as a warning naming the field, so nothing a user wrote
//! is dropped without a word.

use super::{Report, duration, labels};
use crate::registry::istio::telemetry::{
    AccessLogging, Metrics, ProviderRef, TagOperation, TelemetrySpec, Tracing, WorkloadMode,
    WorkloadModeSelector,
};

/// The access-log provider Sinew's proxy implements: Istio's built-in `envoy` (stdout).
pub(crate) const ENVOY_PROVIDER: &str = "envoy";

pub(crate) fn telemetry(spec: &TelemetrySpec) -> Report {
    let mut r = Report::default();
    let targeted =
        spec.target_ref.is_some() || spec.target_refs.as_ref().is_some_and(|t| !t.is_empty());
    if let Some(sel) = &spec.selector {
        labels(
            &mut r,
            "spec.selector.matchLabels",
            sel.match_labels.as_ref(),
        );
        if targeted {
            r.error(
                "spec.selector",
                "only one of selector or targetRef/targetRefs may be set",
            );
        }
    }
    if targeted {
        r.warn(
            "spec.targetRefs",
            "policy attachment by targetRef is not supported by Sinew; this Telemetry is not applied (use selector)",
        );
    }
    for (i, t) in spec.tracing.iter().flatten().enumerate() {
        tracing(&mut r, &format!("spec.tracing[{i}]"), t, i);
    }
    for (i, a) in spec.access_logging.iter().flatten().enumerate() {
        access_logging(&mut r, &format!("spec.accessLogging[{i}]"), a, i);
    }
    for (i, m) in spec.metrics.iter().flatten().enumerate() {
        metrics(&mut r, &format!("spec.metrics[{i}]"), m);
    }
    if spec.metrics.as_ref().is_some_and(|m| !m.is_empty()) {
        r.warn(
            "spec.metrics",
            "accepted and not applied: Sinew's proxies always report Istio's standard metrics, with the standard labels",
        );
    }
    r
}

fn tracing(r: &mut Report, path: &str, t: &Tracing, index: usize) {
    if index > 0 {
        r.warn(
            path,
            "not applied: Sinew applies the first tracing entry of a Telemetry to both directions",
        );
    }
    if let Some(p) = t.random_sampling_percentage
        && !(0.0..=100.0).contains(&p)
    {
        r.error(
            format!("{path}.randomSamplingPercentage"),
            format!("must be between 0 and 100, not {p}"),
        );
    }
    mode(r, path, t.match_.as_ref());
    if providers(r, path, t.providers.as_deref()) > 0 {
        r.warn(
            format!("{path}.providers"),
            "tracing providers are not looked up: spans go to the mesh's one OTLP collector (the control plane's --otlp-endpoint, else the proxy's own)",
        );
    }
    if t.custom_tags.is_some() {
        r.warn(
            format!("{path}.customTags"),
            "accepted and not applied: spans carry Sinew's standard attributes only",
        );
    }
    if t.enable_istio_tags.is_some() {
        r.warn(
            format!("{path}.enableIstioTags"),
            "accepted and not applied: spans always carry the mesh's attributes",
        );
    }
}

fn access_logging(r: &mut Report, path: &str, a: &AccessLogging, index: usize) {
    if index > 0 {
        r.warn(
            path,
            "not applied: Sinew applies the first accessLogging entry of a Telemetry to both directions",
        );
    }
    mode(r, path, a.match_.as_ref());
    providers(r, path, a.providers.as_deref());
    for (j, p) in a.providers.iter().flatten().enumerate() {
        if let Some(name) = p
            .name
            .as_deref()
            .filter(|n| *n != ENVOY_PROVIDER && !n.is_empty())
        {
            r.warn(
                format!("{path}.providers[{j}].name"),
                format!(
                    "provider {name:?} is not known to Sinew, which writes nothing for it (the proxy's access log is provider {ENVOY_PROVIDER:?})"
                ),
            );
        }
    }
    if a.filter.is_some() {
        r.warn(
            format!("{path}.filter"),
            "accepted and not applied: every request and connection is logged",
        );
    }
}

fn metrics(r: &mut Report, path: &str, m: &Metrics) {
    providers(r, path, m.providers.as_deref());
    duration(
        r,
        &format!("{path}.reportingInterval"),
        m.reporting_interval.as_ref(),
    );
    for (j, o) in m.overrides.iter().flatten().enumerate() {
        let at = format!("{path}.overrides[{j}]");
        if let Some(sel) = &o.match_
            && sel.metric.is_some()
            && sel.custom_metric.is_some()
        {
            r.error(
                format!("{at}.match"),
                "only one of metric or customMetric may be set",
            );
        }
        for (tag, t) in o.tag_overrides.iter().flatten() {
            let value = t.value.as_deref().unwrap_or_default();
            match t.operation.unwrap_or(TagOperation::UPSERT) {
                TagOperation::UPSERT if value.is_empty() => r.error(
                    format!("{at}.tagOverrides.{tag}.value"),
                    "is required for operation UPSERT",
                ),
                TagOperation::REMOVE if !value.is_empty() => r.error(
                    format!("{at}.tagOverrides.{tag}.value"),
                    "must not be set for operation REMOVE",
                ),
                _ => {}
            }
        }
    }
}

/// Checks the provider names; returns how many are named.
fn providers(r: &mut Report, path: &str, providers: Option<&[ProviderRef]>) -> usize {
    let mut named = 0;
    for (j, p) in providers.into_iter().flatten().enumerate() {
        if p.name.as_deref().unwrap_or_default().is_empty() {
            r.error(format!("{path}.providers[{j}].name"), "is required");
        } else {
            named += 1;
        }
    }
    named
}

/// `match.mode`: Sinew has one setting per proxy, for both directions.
fn mode(r: &mut Report, path: &str, selector: Option<&WorkloadModeSelector>) {
    if let Some(m @ (WorkloadMode::CLIENT | WorkloadMode::SERVER)) = selector.and_then(|s| s.mode) {
        r.warn(
            format!("{path}.match.mode"),
            format!(
                "{m:?} is applied as CLIENT_AND_SERVER: Sinew has one tracing and access-log setting per proxy, for both directions"
            ),
        );
    }
}

#[cfg(test)]
mod tests;
